//! A hostile network between the sync and Microsoft: redirects to another listener, absurd
//! `Retry-After` values, oversized answers and decompression bombs, error text made to forge
//! log lines. First against the Graph client, then through the real `xdr-sync` binary, where
//! the process must live on, nothing may be lost and nothing may reach the other listener.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;
use xdr_core::{AlertSource, PageRequest, Query, SourceError, SourceErrorKind};
use xdr_graph::{
    ClientCredentials, Cloud, Endpoints, GraphClient, GraphSettings, RetryPolicy, StaticCredentials,
    http_client,
};
use xdr_simulator::server::HOSTILE_TEXT;
use xdr_simulator::{Activity, Elsewhere, Fault, SimOptions, SimTenant, Simulator};
use xdr_tests::assert_observed;
use xdr_tests::deployment::Deployment;
use xdr_tests::runtime_api::Outcome;

const MIB: usize = 1024 * 1024;

fn tenant() -> SimTenant {
    SimTenant::with_history(13, Utc::now() - TimeDelta::hours(1), TimeDelta::hours(12), 250)
}

fn settings(sim: &Simulator, max_response_bytes: usize) -> GraphSettings {
    let base = sim.base_url();
    GraphSettings {
        stream: xdr_core::stream::ALERTS,
        tenant_id: sim.tenant_id(),
        endpoints: Endpoints::for_cloud(Cloud::Global, Some(base), Some(base)).unwrap(),
        request_timeout: Duration::from_secs(20),
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
        },
        max_response_bytes,
        expand_alerts: false,
        request_rate: None,
    }
}

fn client_with(sim: &Simulator, settings: GraphSettings) -> GraphClient<StaticCredentials> {
    let credentials = StaticCredentials(ClientCredentials {
        client_id: sim.client_id(),
        client_secret: SecretString::from(sim.client_secret()),
    });
    GraphClient::new(http_client().unwrap(), settings, credentials)
}

fn first_page() -> PageRequest<'static> {
    PageRequest::Query(Query::slice(Utc::now() - TimeDelta::days(2), Utc::now(), 100))
}

/// Upstream text in an error: one line, no control or formatting characters, bounded.
fn assert_clean(message: &str) {
    assert!(
        !message.chars().any(|c| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}')),
        "control characters in {message:?}"
    );
    assert!(message.chars().count() < 1500, "{} characters: {message:.200}", message.chars().count());
}

#[tokio::test]
async fn redirects_are_refused_and_nothing_reaches_the_other_listener() {
    let sim = Simulator::start(tenant(), SimOptions::default()).await.unwrap();
    let elsewhere = Elsewhere::start().await.unwrap();
    let host = elsewhere.base_url().to_owned();
    for status in [307, 308, 301, 302, 303] {
        // The token request: a 307/308 would replay the form, client secret included.
        sim.push_token_fault(Fault::Redirect { status, location: format!("{host}/steal/oauth2/v2.0/token") });
        let error = client_with(&sim, settings(&sim, 8 * MIB)).authenticate(None).await.unwrap_err();
        assert_eq!(error.kind, SourceErrorKind::Refused, "{}", error.message);
        assert!(error.message.contains("redirect") && error.message.contains(&host), "{}", error.message);
        assert!(!error.message.contains("/steal"), "only the origin is named: {}", error.message);

        // A page request: a stranger's empty page must not pass for Graph's.
        let client = client_with(&sim, settings(&sim, 8 * MIB));
        client.authenticate(None).await.unwrap();
        sim.push_fault(Fault::Redirect { status, location: format!("{host}/v1.0/security/alerts_v2") });
        let error = client.fetch(first_page(), None).await.unwrap_err();
        assert_eq!(error.kind, SourceErrorKind::Refused, "{}", error.message);
        assert!(error.message.contains(&format!("HTTP {status}")), "{}", error.message);
    }
    assert_eq!(elsewhere.requests(), Vec::<String>::new(), "nothing was sent to the other listener");
}

#[tokio::test]
async fn only_https_or_loopback_and_only_the_configured_hosts_get_requests() {
    let sim = Simulator::start(tenant(), SimOptions::default()).await.unwrap();
    let elsewhere = Elsewhere::start().await.unwrap();
    // Endpoints made by hand, past the settings' checks: the client applies the rule itself.
    let mut plain_http = settings(&sim, 8 * MIB);
    plain_http.endpoints.login = Url::parse("http://login.example/").unwrap();
    let error = client_with(&sim, plain_http).authenticate(None).await.unwrap_err();
    assert!(error.message.contains("https"), "{}", error.message);

    // A tenant id with a backslash would move the token request to another host.
    let port = Url::parse(elsewhere.base_url()).unwrap().port().unwrap();
    let mut moved = settings(&sim, 8 * MIB);
    moved.tenant_id = format!("\\\\127.0.0.1:{port}");
    let error = client_with(&sim, moved).authenticate(None).await.unwrap_err();
    assert_eq!(error.kind, SourceErrorKind::Refused, "{}", error.message);
    assert!(error.message.contains("token request"), "{}", error.message);
    assert_eq!(elsewhere.requests(), Vec::<String>::new());
}

#[tokio::test]
async fn no_retry_after_value_panics_or_waits_past_the_deadline() {
    let sim = Simulator::start(tenant(), SimOptions::default()).await.unwrap();
    // Too large for any arithmetic: taken as the longest wait, which passes the deadline.
    // Unreadable (negative, not a number): ignored, the usual backoff, and the retry succeeds.
    // A client each time: a warm one would keep honouring the backoff it was told before.
    for (value, huge) in [
        ("1e19", true),
        ("18446744073709551615", true),
        ("1e300", true),
        ("inf", true),
        ("Fri, 31 Dec 9999 23:59:59 GMT", true),
        ("-5", false),
        ("NaN", false),
    ] {
        let client = client_with(&sim, settings(&sim, 8 * MIB));
        client.authenticate(None).await.unwrap();
        sim.push_fault(Fault::RetryAfterText { status: 429, value: value.into() });
        let started = std::time::Instant::now();
        let outcome = client.fetch(first_page(), Some(Utc::now() + TimeDelta::seconds(3))).await;
        match outcome {
            Err(SourceError { kind: SourceErrorKind::Throttled, .. }) if huge => {}
            Ok(_) if !huge => {}
            other => panic!("{value}: {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(3), "{value}: gave up within the deadline");
    }
    // On the token endpoint too.
    sim.push_token_fault(Fault::RetryAfterText { status: 429, value: "1e19".into() });
    let fresh = client_with(&sim, settings(&sim, 8 * MIB));
    let error = fresh.authenticate(Some(Utc::now() + TimeDelta::seconds(3))).await.unwrap_err();
    assert_eq!(error.kind, SourceErrorKind::OutOfTime, "{}", error.message);
}

#[tokio::test]
async fn oversized_answers_and_gzip_bombs_stop_at_the_cap() {
    let sim = Simulator::start(tenant(), SimOptions::default()).await.unwrap();
    let client = client_with(&sim, settings(&sim, 4 * MIB));
    // Graph's gzip, within the cap, is read as usual.
    let page = client.fetch(first_page(), None).await.unwrap();
    let body: Value = serde_json::from_slice(&page.body).unwrap();
    assert_eq!(body["value"].as_array().map(Vec::len), Some(100));

    sim.push_fault(Fault::Oversized { bytes: 6 * MIB });
    let error = client.fetch(first_page(), None).await.unwrap_err();
    assert_eq!(error.kind, SourceErrorKind::Refused, "{}", error.message);
    assert!(error.message.contains("MAX_RESPONSE_MB (4 MiB)"), "{}", error.message);

    // 256 MiB of JSON (the page, then whitespace) in about 256 KiB of gzip.
    sim.push_fault(Fault::GzipBomb { bytes: 256 * MIB });
    let error = client.fetch(first_page(), None).await.unwrap_err();
    assert_eq!(error.kind, SourceErrorKind::Refused, "{}", error.message);
    assert!(error.message.contains("once decompressed"), "{}", error.message);

    // The token endpoint's answers have their own, small cap.
    for fault in [Fault::Oversized { bytes: 3 * MIB }, Fault::GzipBomb { bytes: 64 * MIB }] {
        sim.push_token_fault(fault);
        let error = client_with(&sim, settings(&sim, 4 * MIB)).authenticate(None).await.unwrap_err();
        assert_eq!(error.kind, SourceErrorKind::Refused, "{}", error.message);
        assert!(error.message.contains("too large"), "{}", error.message);
    }
}

#[tokio::test]
async fn upstream_error_text_is_bounded_and_on_one_line() {
    let sim = Simulator::start(tenant(), SimOptions::default()).await.unwrap();
    let client = client_with(&sim, settings(&sim, 8 * MIB));
    client.authenticate(None).await.unwrap();
    for status in [403, 404] {
        sim.push_fault(Fault::HostileError { status });
        let error = client.fetch(first_page(), None).await.unwrap_err();
        assert!(error.message.contains("Access denied."), "{}", error.message);
        assert_clean(&error.message);
    }
    sim.push_token_fault(Fault::HostileError { status: 400 });
    let error = client_with(&sim, settings(&sim, 8 * MIB)).authenticate(None).await.unwrap_err();
    assert!(error.message.contains("Access denied."), "{}", error.message);
    assert_clean(&error.message);
}

/// What the state says: each item's `state` (or chunk entries), without leases (they come and
/// go with each run), revisions and write times (a run may rewrite its state unchanged), or the
/// slicing hint (what a run learned about Graph's density, not progress).
async fn state_items(deployment: &Deployment) -> Vec<(String, String)> {
    let scan = deployment.aws.dynamodb.scan().table_name(&deployment.aws.table).consistent_read(true);
    let output = scan.send().await.expect("scan");
    let mut items: Vec<(String, String)> = output
        .items()
        .iter()
        .filter_map(|item| {
            let key = item.get("pk")?.as_s().ok()?.clone();
            if key.starts_with("lease#") {
                return None;
            }
            let kept = match item.get("state").and_then(|v| v.as_s().ok()) {
                Some(text) => {
                    let mut state: std::collections::BTreeMap<String, Value> =
                        serde_json::from_str(text).expect("state is a JSON object");
                    state.remove("slice_hint_nanos");
                    format!("{state:?}")
                }
                None => format!("{:?}", item.get("entries")),
            };
            Some((key, kept))
        })
        .collect();
    items.sort();
    items
}

fn expect_error(outcome: Outcome) -> (String, String) {
    match outcome {
        Outcome::Error { error_type, message, .. } => (error_type, message),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The real binary, warm, through every misbehaviour in turn, with new alerts arriving between
/// them: each invocation fails with a specific error (or stops, for throttling) and changes no
/// state; the process never dies; nothing reaches the other listener; the next clean run writes
/// every version exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_network_kills_nothing_leaks_nothing_and_loses_nothing() {
    if xdr_tests::moto::unavailable("a_hostile_network_kills_nothing_leaks_nothing_and_loses_nothing") {
        return;
    }
    let mut deployment = Deployment::new(tenant(), SimOptions::default(), None).await;
    let elsewhere = Elsewhere::start().await.unwrap();
    let host = elsewhere.base_url().to_owned();
    deployment.set("MAX_RESPONSE_MB", "16");
    deployment.start();
    let mut runs = Vec::new();
    let started = Utc::now();
    let complete = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
    assert_eq!(complete.response()["complete"], json!(true), "{complete:?}");
    runs.push((started, Utc::now()));

    let page_faults = [
        (Fault::Redirect { status: 302, location: format!("{host}/v1.0/security/alerts_v2") }, "redirect"),
        (Fault::Redirect { status: 308, location: format!("{host}/v1.0/security/alerts_v2") }, "redirect"),
        (Fault::Oversized { bytes: 40 * MIB }, "MAX_RESPONSE_MB (16 MiB)"),
        (Fault::GzipBomb { bytes: 512 * MIB }, "once decompressed"),
        (Fault::HostileError { status: 403 }, "Access denied."),
    ];
    for (round, (fault, words)) in page_faults.into_iter().enumerate() {
        deployment.sim.with_tenant(|t| {
            t.produce(Utc::now(), Activity { new_alerts: 20, updates: 10, late: 2, bulk: 3 })
        });
        let before = state_items(&deployment).await;
        deployment.sim.push_fault(fault.clone());
        let (error_type, message) =
            expect_error(deployment.invoke(&json!({}), Duration::from_secs(60)).await);
        assert_eq!(
            error_type,
            if round == 4 { "CredentialsError" } else { "GraphRefusedError" },
            "{message}"
        );
        assert!(message.contains(words), "{fault:?}: {message}");
        assert_clean(&message);
        assert_eq!(state_items(&deployment).await, before, "{fault:?} changed the state");
    }

    let warm = deployment.processes.last_mut().expect("a sandbox");
    assert!(warm.wait_exit(Duration::ZERO).is_none(), "one warm process lived through all of it");

    // Throttling with a `Retry-After` no arithmetic can hold: the run stops in time, incomplete,
    // and the process lives on. (A fresh process each time: a warm one would respect the backoff
    // it was told, and not ask again.)
    for value in ["1e19", "1e300", "Fri, 31 Dec 9999 23:59:59 GMT"] {
        deployment.stop_all();
        deployment.start();
        deployment.sim.push_fault(Fault::RetryAfterText { status: 429, value: value.into() });
        let before = state_items(&deployment).await;
        let outcome = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
        assert_eq!(outcome.response()["complete"], json!(false), "{value}: {outcome:?}");
        assert!(outcome.response()["stopped_because"].as_str().unwrap_or("").contains("throttled"));
        assert_eq!(state_items(&deployment).await, before, "{value} changed the state");
        let process = deployment.processes.last_mut().expect("a sandbox");
        assert!(process.wait_exit(Duration::ZERO).is_none(), "{value}: the process is alive");
        let again = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
        assert!(again.response()["stopped_because"].as_str().unwrap_or("").contains("back off"), "{again:?}");
    }

    // The token request, on a cold start: redirected, bombed, oversized, hostile.
    let token_faults = [
        (Fault::Redirect { status: 307, location: format!("{host}/steal/oauth2/v2.0/token") }, "redirect"),
        (Fault::GzipBomb { bytes: 256 * MIB }, "too large"),
        (Fault::Oversized { bytes: 4 * MIB }, "too large"),
        (Fault::HostileError { status: 400 }, "Access denied."),
    ];
    for (fault, words) in token_faults {
        deployment.stop_all();
        deployment.start();
        deployment.sim.push_token_fault(fault.clone());
        let before = state_items(&deployment).await;
        let (_, message) = expect_error(deployment.invoke(&json!({}), Duration::from_secs(60)).await);
        assert!(message.contains(words), "{fault:?}: {message}");
        assert_clean(&message);
        assert_eq!(state_items(&deployment).await, before, "{fault:?} changed the state");
    }
    let process = deployment.processes.last_mut().expect("a sandbox");
    assert!(process.wait_exit(Duration::ZERO).is_none(), "the process is alive");

    let started = Utc::now();
    let complete = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
    assert_eq!(complete.response()["complete"], json!(true), "{complete:?}");
    runs.push((started, Utc::now()));
    let lines = deployment.aws.lines("defender-xdr/alerts/").await;
    assert_observed(&lines, &deployment.sim.tenant(), &runs);
    assert_eq!(elsewhere.requests(), Vec::<String>::new(), "nothing reached the other listener");
    let output = deployment.output();
    // The secret checks below (and at every deployment's end) read every level.
    assert!(output.contains(r#""level":"TRACE""#) && output.contains(r#""level":"DEBUG""#));
    assert!(
        !output.contains('\u{1b}') && !output.contains("\"forged log line\""),
        "upstream text reached the logs raw"
    );
    assert!(!output.contains(&HOSTILE_TEXT[..40]), "upstream text reached the logs with its line breaks");
    deployment.assert_no_secrets(&[]);
}
