//! Incidents, the second stream, held to the alerts' guarantees: through the real `xdr-sync` and
//! `xdr-backfill` binaries against the AWS stand-in (kills around puts and state writes,
//! throttling, token expiry, updates while paging), and locally in every Graph mode, with
//! `$expand=alerts` off and on. What lands is checked against the tenant's ground truth.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use xdr_simulator::{Activity, Fault, GraphMode, SimOptions, SimTenant};
use xdr_tests::aws_fault_proxy::{AwsFaultProxy, Call, Moment, Trap};
use xdr_tests::deployment::Deployment;
use xdr_tests::{
    Harness, assert_exactly, assert_observed, assert_observed_incidents, incident_bodies, lines_under,
};

const ALERTS: &str = "defender-xdr/alerts/";
const INCIDENTS: &str = "defender-xdr/incidents/";

fn settled_tenant(seed: u64, alerts: u64) -> SimTenant {
    SimTenant::with_history(seed, Utc::now() - TimeDelta::hours(1), TimeDelta::days(3), alerts)
}

type Run = (DateTime<Utc>, DateTime<Utc>);

/// Invokes until a run of both streams completes, noting when it started and ended.
async fn invoke_until_complete(deployment: &Deployment, runs: &mut Vec<Run>) -> Value {
    for _ in 0..20 {
        let started = Utc::now();
        let outcome = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
        let answer = outcome.response().clone();
        if answer["complete"] == json!(true) {
            runs.push((started, Utc::now()));
            return answer;
        }
    }
    panic!("no run completed");
}

async fn assert_both_landed(deployment: &Deployment, runs: &[Run]) -> usize {
    let tenant = deployment.sim.tenant();
    assert_observed(&deployment.aws.lines(ALERTS).await, &tenant, runs);
    assert_observed_incidents(&deployment.aws.lines(INCIDENTS).await, &tenant, runs)
}

/// The kill, throttling and update scenarios of the alerts' fault suite, with both streams served
/// by each invocation: the process killed around a random S3 put or state write (of either
/// stream), Graph throttling and failing, the token expiring, the tenant changing while pages
/// are read. Every incident version and every alert version lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_streams_survive_kills_throttling_and_updates_exactly_once() {
    if xdr_tests::moto::unavailable("both_streams_survive_kills_throttling_and_updates_exactly_once") {
        return;
    }
    let expanded = survive_faults(SimOptions::default(), false).await;
    assert_eq!(expanded, 0, "no expansion unless asked for");
}

/// The same with `$expand=alerts` on a Graph that expands (the lenient mode): each incident line
/// carries its alerts as read, and kills between a put and its state write never make a version
/// land twice, whatever its alerts were when it was read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expanded_incidents_survive_kills_throttling_and_updates_exactly_once() {
    if xdr_tests::moto::unavailable("expanded_incidents_survive_kills_throttling_and_updates_exactly_once") {
        return;
    }
    let expanded = survive_faults(SimOptions::mode(GraphMode::Lenient), true).await;
    assert!(expanded > 0, "lines carry their alerts");
}

/// The fault rounds, then the ground truth of both streams; the number of expanded lines.
async fn survive_faults(options: SimOptions, expand: bool) -> usize {
    let seed = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Utc::now().timestamp_micros() as u64);
    eprintln!("incidents faults (expand={expand}): FAULT_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let options = SimOptions { page_latency: Duration::from_millis(20), ..options };
    let mut deployment = Deployment::new(settled_tenant(307, 900), options, None).await;
    let proxy = AwsFaultProxy::start(&deployment.aws.endpoint).await;
    deployment.set("AWS_ENDPOINT_URL", &proxy.endpoint);
    deployment.set("STREAMS", "alerts,incidents");
    deployment.set("INCIDENTS_EXPAND_ALERTS", if expand { "true" } else { "false" });
    deployment.set("MAX_OBJECT_MB", "1");
    let mut runs = Vec::new();
    let mut kills = 0;
    for round in 0..6 {
        if round > 0 {
            deployment.sim.with_tenant(|t| {
                t.produce(Utc::now(), Activity { new_alerts: 120, updates: 80, late: 4, bulk: 12 })
            });
        }
        for fault in [
            Fault::Pass,
            Fault::Status { status: 429, retry_after: Some(1) },
            Fault::Pass,
            Fault::Status { status: 503, retry_after: None },
            Fault::ExpireTokens,
        ] {
            if rng.bool() {
                deployment.sim.push_fault(fault);
            }
        }
        let call = if rng.bool() { Call::ObjectPut } else { Call::StateWrite };
        let moment = if rng.bool() { Moment::Before } else { Moment::After };
        // Both streams make several such calls a run: the trap may fall in either one's.
        let trap = Trap { call, nth: 1 + rng.usize(0..6), moment };
        let held = proxy.arm(trap);
        deployment.start();
        let timeout = Duration::from_secs(6);
        let deadline = tokio::time::Instant::now() + timeout;
        let started = Utc::now();
        let event = json!({});
        tokio::select! {
            outcome = deployment.invoke(&event, timeout) => {
                if outcome.response()["complete"] == json!(true) {
                    runs.push((started, Utc::now()));
                }
                proxy.disarm();
            }
            held = held => {
                let held = held.expect("the trap reports the held call");
                deployment.stop_all();
                drop(held);
                kills += 1;
                eprintln!("killed at {trap:?}");
                tokio::time::sleep_until(deadline + Duration::from_millis(300)).await;
            }
        }
        deployment.stop_all();
    }
    assert!(kills >= 2, "some rounds killed the process mid-run");
    deployment.start();
    let answer = invoke_until_complete(&deployment, &mut runs).await;
    assert_eq!(answer["streams"]["incidents"]["complete"], json!(true), "{answer}");

    // Updates while an invocation pages through slow pages of both streams.
    deployment.sim.options(|options| options.page_latency = Duration::from_millis(100));
    let busy = async {
        for _ in 0..15 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let activity = Activity { new_alerts: 2, updates: 5, late: 1, bulk: 3 };
            deployment.sim.with_tenant(|t| t.produce(Utc::now(), activity));
        }
    };
    let event = json!({});
    let (_, ()) = tokio::join!(deployment.invoke(&event, Duration::from_secs(120)), busy);
    invoke_until_complete(&deployment, &mut runs).await;
    let expanded = assert_both_landed(&deployment, &runs).await;
    let items = deployment.aws.items().await;
    assert!(items.keys().any(|key| key.starts_with("sync#") && key.ends_with("#incidents")), "its own state");
    deployment.assert_no_secrets(&[]);
    expanded
}

/// `INCIDENTS_EXPAND_ALERTS=true` where Graph answers 500 to every expanded read with a filter
/// (the strict mode, as large tenants see it): each read falls back to no expansion, the
/// response and the metrics count it, and nothing is lost. Where Graph expands (the lenient
/// mode), each line is the incident version with its alerts as read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expanded_incidents_fall_back_when_graph_keeps_failing_and_inline_alerts_when_it_does_not() {
    if xdr_tests::moto::unavailable(
        "expanded_incidents_fall_back_when_graph_keeps_failing_and_inline_alerts_when_it_does_not",
    ) {
        return;
    }
    for mode in [GraphMode::Strict, GraphMode::Lenient] {
        let mut deployment = Deployment::new(settled_tenant(311, 400), SimOptions::mode(mode), None).await;
        deployment.set("STREAMS", "alerts,incidents");
        deployment.set("INCIDENTS_EXPAND_ALERTS", "true");
        deployment.start();
        let mut runs = Vec::new();
        let answer = invoke_until_complete(&deployment, &mut runs).await;
        let fallbacks = answer["streams"]["incidents"]["expand_fallbacks"].as_u64().unwrap_or(0);
        let output = deployment.output();
        deployment.sim.with_tenant(|t| {
            t.produce(Utc::now(), Activity { new_alerts: 9, updates: 12, late: 1, bulk: 4 })
        });
        invoke_until_complete(&deployment, &mut runs).await;
        let expanded = assert_both_landed(&deployment, &runs).await;
        let lines = deployment.aws.lines(INCIDENTS).await.len();
        match mode {
            GraphMode::Strict => {
                assert!(fallbacks > 0, "{answer}");
                assert_eq!(expanded, 0);
                assert!(output.contains("\"ExpandFallbacks\":"), "the metric is published");
                assert!(output.contains("reading it without the expansion"), "and logged");
            }
            _ => {
                assert_eq!(fallbacks, 0, "{answer}");
                assert_eq!(expanded, lines, "every line carries its alerts");
            }
        }
    }
}

/// The app has `SecurityAlert.Read.All` but not `SecurityIncident.Read.All`: Graph answers the
/// incidents with 403. The alerts are synced as ever, the invocation answers normally with the
/// incidents' error naming the permission, and once it is granted the next run reads the
/// incidents from the start of their history.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_incidents_permission_fails_that_stream_alone() {
    if xdr_tests::moto::unavailable("a_missing_incidents_permission_fails_that_stream_alone") {
        return;
    }
    let options = SimOptions { incidents_forbidden: true, ..SimOptions::default() };
    let mut deployment = Deployment::new(settled_tenant(319, 300), options, None).await;
    deployment.set("STREAMS", "alerts,incidents");
    deployment.start();
    let outcome = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
    let answer = outcome.response().clone();
    assert_eq!(answer["complete"], json!(false), "{answer}");
    assert_eq!(answer["streams"]["alerts"]["complete"], json!(true), "{answer}");
    let incidents = &answer["streams"]["incidents"];
    assert_eq!(incidents["complete"], json!(false));
    assert_eq!(incidents["error_type"], json!("CredentialsError"), "{incidents}");
    assert!(incidents["error"].as_str().unwrap().contains("SecurityIncident.Read.All"), "{incidents}");
    assert!(incidents["graph_requests"].as_u64() >= Some(1), "the refused request counts: {incidents}");
    assert_exactly(&deployment.aws.lines(ALERTS).await, &deployment.visible_now());
    assert!(deployment.aws.lines(INCIDENTS).await.is_empty());
    assert!(deployment.output().contains("\"Stream\":\"incidents\""), "the incidents' metrics line");

    deployment.sim.options(|options| options.incidents_forbidden = false);
    let outcome = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
    assert_eq!(outcome.response()["complete"], json!(true), "{:?}", outcome);
    assert_exactly(&deployment.aws.lines(INCIDENTS).await, &deployment.incidents_now());
}

/// An incidents backfill through the real `xdr-backfill`, with `$expand=alerts` off (the strict
/// mode) and on (a Graph that expands): its own keys, the window written once, a second
/// invocation writes nothing, and the alerts are not touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_incidents_backfill_writes_its_window_once_and_leaves_alerts_alone() {
    if xdr_tests::moto::unavailable("an_incidents_backfill_writes_its_window_once_and_leaves_alerts_alone") {
        return;
    }
    backfill_incidents(SimOptions::default(), false).await;
    backfill_incidents(SimOptions::mode(GraphMode::Lenient), true).await;
}

async fn backfill_incidents(options: SimOptions, expand: bool) {
    let mut deployment = Deployment::new(settled_tenant(313, 500), options, None).await;
    deployment.set("STREAMS", "alerts,incidents");
    deployment.set("INCIDENTS_EXPAND_ALERTS", if expand { "true" } else { "false" });
    deployment.start_function("xdr-backfill");
    let start = (Utc::now() - TimeDelta::days(3)).date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    // Between 12 and 36 hours ago whatever the time of day, so the window holds incident versions
    // and leaves newer ones out (a fixed "one day ago" left it empty late in the UTC day).
    let end = (Utc::now() - TimeDelta::hours(12)).date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let event = json!({"start": start.to_rfc3339(), "end": end.to_rfc3339(), "stream": "incidents"});
    let mut done = Value::Null;
    for _ in 0..10 {
        done = deployment.invoke_backfill(&event, Duration::from_secs(60)).await.response().clone();
        if done["complete"] == json!(true) {
            break;
        }
    }
    assert_eq!(done["complete"], json!(true), "{done}");
    let tenant = deployment.sim.tenant();
    let current = tenant.current_incidents(Utc::now());
    let expected: Vec<String> = current
        .iter()
        .filter(|v| v.last_update >= start && v.last_update < end)
        .map(|v| v.body.clone())
        .collect();
    assert!(
        !expected.is_empty() && expected.len() < current.len(),
        "the window holds some incidents, not all"
    );
    let (lines, expanded) = incident_bodies(&deployment.aws.lines(INCIDENTS).await, &tenant);
    assert_exactly(&lines, &expected);
    assert_eq!(expanded == lines.len(), expand, "every line expanded exactly when asked for");
    assert!(deployment.aws.lines(ALERTS).await.is_empty(), "no alert read or written");
    let again = deployment.invoke_backfill(&event, Duration::from_secs(60)).await.response().clone();
    assert_eq!(again["alerts_written"], json!(0), "{again}");
    let keys: Vec<String> = deployment.aws.items().await.into_keys().collect();
    assert!(keys.iter().any(|key| key.starts_with("backfill#") && key.contains("#incidents#")), "{keys:?}");
    assert!(!keys.iter().any(|key| key.contains("#alerts")), "{keys:?}");
}

/// Incidents in every Graph mode (strict in full; the others are the same model with other
/// paging), with an instant shared by many incident versions: an initial and an incremental
/// sync write each version once. `$top` never passes 50.
#[tokio::test]
async fn incidents_in_every_graph_mode_with_and_without_expansion() {
    for mode in GraphMode::ALL {
        for expand in [false, true] {
            let clock = std::time::Instant::now();
            let mut harness = Harness::start(settled_tenant(317, 700), SimOptions::mode(mode)).await;
            harness.set("STREAMS", "incidents");
            harness.set("INCIDENTS_EXPAND_ALERTS", if expand { "true" } else { "false" });
            let started = Utc::now();
            harness.sync().await;
            let mut runs = vec![(started, Utc::now())];
            // A bulk action on many alerts: incident versions at one shared instant.
            harness.sim.with_tenant(|t| {
                t.produce(Utc::now(), Activity { new_alerts: 30, updates: 90, late: 3, bulk: 80 })
            });
            let started = Utc::now();
            harness.sync().await;
            runs.push((started, Utc::now()));
            let lines = lines_under(&harness.output_dir(), INCIDENTS.trim_end_matches('/'));
            let expanded = assert_observed_incidents(&lines, &harness.sim.tenant(), &runs);
            let expands_here = expand && !mode.behaviour().expand_with_filter_fails;
            assert_eq!(expanded > 0, expands_here, "{mode} expand={expand}");
            for request in harness.sim.requests().iter().filter(|r| r.endpoint == "incidents") {
                assert!(request.status != 400, "{mode}: a request Graph refused: {}", request.query);
            }
            assert!(lines_under(&harness.output_dir(), ALERTS.trim_end_matches('/')).is_empty());
            let requests = harness.sim.requests().iter().filter(|r| r.endpoint == "incidents").count();
            eprintln!(
                "{mode} expand={expand}: {} lines, {requests} requests, {:?}",
                lines.len(),
                clock.elapsed()
            );
        }
    }
}
