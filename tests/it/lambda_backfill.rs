//! `xdr-backfill` end to end: the real binary under the Runtime API, against the local AWS
//! stand-in and the simulated tenant, next to the live sync.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use xdr_simulator::{SimOptions, SimTenant};
use xdr_tests::assert_exactly;
use xdr_tests::deployment::Deployment;
use xdr_tests::runtime_api::Outcome;

const PREFIX: &str = "defender-xdr/alerts/";

fn settled_tenant(seed: u64, alerts: u64) -> SimTenant {
    SimTenant::with_history(seed, Utc::now() - TimeDelta::hours(1), TimeDelta::days(3), alerts)
}

/// Midnight UTC before `at`: backfills read whole UTC days.
fn day_start(at: DateTime<Utc>) -> DateTime<Utc> {
    at.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc()
}

fn window(start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> Value {
    match end {
        Some(end) => json!({"start": start.to_rfc3339(), "end": end.to_rfc3339()}),
        None => json!({"start": start.to_rfc3339()}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_past_window_is_written_once_and_re_invoking_writes_nothing() {
    if xdr_tests::moto::unavailable("a_past_window_is_written_once_and_re_invoking_writes_nothing") {
        return;
    }
    let mut deployment = Deployment::new(settled_tenant(71, 600), SimOptions::default(), None).await;
    deployment.start_function("xdr-backfill");
    let (start, end) = (Utc::now() - TimeDelta::hours(70), Utc::now() - TimeDelta::hours(10));
    let expected = deployment.visible_in(day_start(start), end);
    assert!(expected.len() > 300);
    let days = (end.date_naive() - start.date_naive()).num_days() + 1;

    let first = deployment.invoke_backfill(&window(start, Some(end)), Duration::from_secs(60)).await;
    let result = first.response();
    assert_eq!(result["complete"], json!(true), "{result}");
    assert_eq!(result["progress"], json!(1.0));
    assert_eq!(result["alerts_written"].as_u64(), Some(expected.len() as u64));
    assert_eq!(result["alerts_written_total"].as_u64(), Some(expected.len() as u64));
    assert_eq!(result["parts"], json!({"total": days, "complete": days}), "one part per UTC day");
    assert!(result["note"].as_str().unwrap().contains("whole UTC days"), "{result}");
    assert_exactly(&deployment.aws.lines(PREFIX).await, &expected);

    let keys = deployment.aws.keys("").await;
    let again = deployment.invoke_backfill(&window(start, Some(end)), Duration::from_secs(60)).await;
    assert_eq!(again.response()["alerts_written"], json!(0));
    assert_eq!(again.response()["pages"], json!(0), "a finished backfill does not even read");
    assert_eq!(again.response()["alerts_written_total"].as_u64(), Some(expected.len() as u64));
    assert_eq!(deployment.aws.keys("").await, keys, "a finished backfill writes no object at all");
    let items = deployment.aws.items().await;
    assert!(
        items.keys().all(|key| key.starts_with("backfill#")),
        "the live sync's state is never touched: {items:?}"
    );
    deployment.assert_no_secrets(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_bad_event_gets_its_own_error_and_writes_nothing() {
    if xdr_tests::moto::unavailable("each_bad_event_gets_its_own_error_and_writes_nothing") {
        return;
    }
    let mut deployment = Deployment::new(settled_tenant(73, 50), SimOptions::default(), None).await;
    deployment.start_function("xdr-backfill");
    let future = (Utc::now() + TimeDelta::days(1)).to_rfc3339();
    let cases = [
        (json!({}), "no `start`"),
        (json!({"start": "last tuesday"}), "not an RFC 3339 time"),
        (json!({"start": "2026-11-01T00:00:00Z", "end": "soon"}), "`end` is `soon`"),
        (json!({"start": "2026-11-08T00:00:00Z", "end": "2026-11-01T00:00:00Z"}), "is not before `end`"),
        (json!({"start": future}), "is in the future"),
        (json!("2026-11-01"), "not a JSON object"),
        // Unbounded: ~739,000 one-day parts once; now refused at once.
        (json!({"start": "0001-01-01T00:00:00Z"}), "keeps alerts for 180 days"),
        // A typo must not become an open-ended window.
        (json!({"start": "2026-11-01T00:00:00Z", "End": "2026-11-08T00:00:00Z"}), "unknown key `End`"),
    ];
    for (event, expected) in cases {
        let started = Instant::now();
        let outcome = deployment.invoke_backfill(&event, Duration::from_secs(30)).await;
        assert!(started.elapsed() < Duration::from_secs(10), "{event} answered at once");
        let Outcome::Error { error_type, message, .. } = outcome else {
            panic!("expected an error for {event}: {outcome:?}")
        };
        assert_eq!(error_type, "InvalidEventError");
        assert!(message.contains(expected), "{event}: {message}");
    }
    assert!(deployment.aws.items().await.is_empty(), "no state written");
    assert!(deployment.aws.keys("").await.is_empty(), "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backfill_cut_short_by_deadlines_resumes_without_gap_or_duplicate() {
    if xdr_tests::moto::unavailable("a_backfill_cut_short_by_deadlines_resumes_without_gap_or_duplicate") {
        return;
    }
    let options = SimOptions { page_latency: Duration::from_millis(300), ..SimOptions::default() };
    let mut deployment = Deployment::new(settled_tenant(79, 1500), options, None).await;
    deployment.start_function("xdr-backfill");
    let start = Utc::now() - TimeDelta::days(3);
    let end = Utc::now() - TimeDelta::hours(2);
    let expected = deployment.visible_in(day_start(start), end);
    let mut invocations = 0;
    let mut last_progress = -1.0;
    loop {
        invocations += 1;
        let started = Instant::now();
        let outcome = deployment.invoke_backfill(&window(start, Some(end)), Duration::from_secs(3)).await;
        assert!(started.elapsed() < Duration::from_secs(3), "answered within the deadline");
        let result = outcome.response().clone();
        let progress = result["progress"].as_f64().unwrap();
        assert!(progress >= last_progress, "progress never goes back: {result}");
        last_progress = progress;
        if result["complete"] == json!(true) {
            assert_eq!(result["alerts_written_total"].as_u64(), Some(expected.len() as u64), "{result}");
            break;
        }
        assert!(invocations < 30, "no progress: {result}");
    }
    assert!(invocations >= 2, "the deadline cut invocations short ({invocations})");
    assert_exactly(&deployment.aws.lines(PREFIX).await, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backfill_and_live_sync_never_overlap() {
    if xdr_tests::moto::unavailable("backfill_and_live_sync_never_overlap") {
        return;
    }
    let mut deployment = Deployment::new(settled_tenant(83, 800), SimOptions::default(), None).await;
    let live_start = Utc::now() - TimeDelta::days(1);
    deployment.set("BACKFILL_START", &live_start.to_rfc3339());
    deployment.start();
    deployment.start_function("xdr-backfill");
    let all_since =
        |deployment: &Deployment, start| deployment.visible_in(start, Utc::now() + TimeDelta::hours(1));

    // The live sync covers [live_start, now).
    let live = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
    assert_eq!(live.response()["complete"], json!(true));
    assert_exactly(&deployment.aws.lines(PREFIX).await, &all_since(&deployment, live_start));

    // A window wholly inside the live coverage: nothing to do, and it says why.
    let inside = window(live_start + TimeDelta::hours(2), Some(live_start + TimeDelta::hours(5)));
    let outcome = deployment.invoke_backfill(&inside, Duration::from_secs(60)).await;
    let nothing = outcome.response();
    assert_eq!(nothing["complete"], json!(true));
    assert!(nothing["nothing_to_do"].as_str().unwrap().contains("live sync already covers"));

    // An open-ended backfill from three days back stops where the live sync begins.
    let start = Utc::now() - TimeDelta::days(3);
    let outcome = deployment.invoke_backfill(&window(start, None), Duration::from_secs(60)).await;
    let result = outcome.response();
    assert_eq!(result["complete"], json!(true), "{result}");
    assert_eq!(
        DateTime::parse_from_rfc3339(result["covered"]["end"].as_str().unwrap()).unwrap().timestamp(),
        live_start.timestamp()
    );
    assert_exactly(&deployment.aws.lines(PREFIX).await, &all_since(&deployment, day_start(start)));

    // The live sync's next run neither skips nor repeats anything.
    let next = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
    assert_eq!(next.response()["alerts_written"], json!(0), "{:?}", next);
    assert_exactly(&deployment.aws.lines(PREFIX).await, &all_since(&deployment, day_start(start)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_windows_write_each_version_once() {
    if xdr_tests::moto::unavailable("overlapping_windows_write_each_version_once") {
        return;
    }
    let mut deployment = Deployment::new(settled_tenant(97, 900), SimOptions::default(), None).await;
    deployment.start_function("xdr-backfill");
    let now = Utc::now();
    // Different windows that share days, and one that reaches further into a day the first
    // read only part of.
    let first = window(now - TimeDelta::hours(70), Some(now - TimeDelta::hours(30)));
    let second = window(now - TimeDelta::hours(50), Some(now - TimeDelta::hours(2)));
    let third = window(now - TimeDelta::hours(60), Some(now - TimeDelta::hours(40)));
    for event in [&first, &second, &third] {
        let outcome = deployment.invoke_backfill(event, Duration::from_secs(60)).await;
        assert_eq!(outcome.response()["complete"], json!(true), "{event}: {outcome:?}");
    }
    let expected = deployment.visible_in(day_start(now - TimeDelta::hours(70)), now - TimeDelta::hours(2));
    assert!(expected.len() > 500);
    assert_exactly(&deployment.aws.lines(PREFIX).await, &expected);
    let third_again = deployment.invoke_backfill(&third, Duration::from_secs(60)).await;
    assert_eq!(third_again.response()["pages"], json!(0), "its days were all read: {third_again:?}");
    deployment.assert_no_secrets(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_secret_fails_the_backfill_and_changes_nothing() {
    if xdr_tests::moto::unavailable("a_wrong_secret_fails_the_backfill_and_changes_nothing") {
        return;
    }
    let secret = json!({"client_id": "11111111-2222-3333-4444-555555555555", "client_secret": "Q~wrong-but-well-formed"});
    let mut deployment = Deployment::new(settled_tenant(89, 60), SimOptions::default(), Some(secret)).await;
    deployment.start_function("xdr-backfill");
    let outcome = deployment
        .invoke_backfill(&window(Utc::now() - TimeDelta::days(2), None), Duration::from_secs(30))
        .await;
    let Outcome::Error { error_type, message, .. } = outcome else {
        panic!("expected an error: {outcome:?}")
    };
    assert_eq!(error_type, "CredentialsError");
    assert!(message.contains("AADSTS700016"), "{message}");
    assert!(deployment.aws.items().await.is_empty(), "no state, no lease left behind");
    assert!(deployment.aws.keys("").await.is_empty(), "nothing written");
    deployment.assert_no_secrets(&["Q~wrong-but-well-formed"]);
}
