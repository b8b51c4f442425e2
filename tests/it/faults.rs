//! The fault-injection suite: the real `xdr-sync` binary under the Runtime API emulator, against
//! the AWS stand-in (behind a fault proxy where a scenario needs one) and the simulated tenant,
//! with faults on both sides. After each scenario, what landed in S3 is checked against the
//! tenant's ground truth: every visible version exactly once, byte for byte, nothing else.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use xdr_simulator::{Activity, Fault, SimOptions, SimTenant, SimVersion};
use xdr_tests::aws_fault_proxy::{AwsFaultProxy, Call, Moment, Trap};
use xdr_tests::deployment::Deployment;
use xdr_tests::runtime_api::Outcome;
use xdr_tests::{assert_exactly, assert_observed};

const PREFIX: &str = "defender-xdr/alerts/";

fn scheduled_event() -> Value {
    json!({})
}

fn settled_tenant(seed: u64, alerts: u64) -> SimTenant {
    SimTenant::with_history(seed, Utc::now() - TimeDelta::hours(1), TimeDelta::days(3), alerts)
}

/// A seed for the random choices of a scenario: `FAULT_SEED` to replay one, else the clock.
/// It is printed, so a failure can be replayed.
fn seed(scenario: &str) -> u64 {
    let seed = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| Utc::now().timestamp_micros() as u64);
    eprintln!("{scenario}: FAULT_SEED={seed}");
    seed
}

/// SplitMix64: enough randomness to pick fault points, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

fn expect_error(outcome: Outcome) -> (String, String) {
    match outcome {
        Outcome::Error { error_type, message, .. } => (error_type, message),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// No line is in S3 twice, at any moment (not only once the runs are done).
fn assert_no_duplicate_lines(lines: &[(String, String)]) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, line) in lines {
        *counts.entry(line).or_default() += 1;
    }
    let duplicated = counts.values().filter(|n| **n > 1).count();
    assert_eq!(duplicated, 0, "{duplicated} lines are in S3 twice");
}

/// Invokes until a run completes (deadlines and kills leave work for later runs), and notes when
/// that complete run started and ended.
async fn invoke_until_complete(deployment: &Deployment, runs: &mut Vec<Run>) -> Value {
    for _ in 0..20 {
        let started = Utc::now();
        let outcome = deployment.invoke(&scheduled_event(), Duration::from_secs(60)).await;
        let summary = outcome.response().clone();
        if summary["complete"] == json!(true) {
            runs.push((started, Utc::now()));
            return summary;
        }
    }
    panic!("no run completed");
}

/// When a complete run started and ended.
type Run = (DateTime<Utc>, DateTime<Utc>);

/// What landed against the tenant's ground truth, given the complete runs.
async fn assert_landed(deployment: &Deployment, runs: &[Run]) {
    let tenant = deployment.sim.tenant();
    assert_observed(&deployment.aws.lines(PREFIX).await, &tenant, runs);
}

/// The process is killed while one of its S3 puts or state writes is in flight, before it reached
/// the stand-in or after it took effect, at a random one of a run's first few such calls, eight
/// times over with new alert activity in between. Later runs lose and duplicate nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_at_random_points_around_puts_and_state_writes_loses_nothing() {
    if xdr_tests::moto::unavailable("killed_at_random_points_around_puts_and_state_writes_loses_nothing") {
        return;
    }
    let mut rng = Rng(seed("kills"));
    let mut deployment = Deployment::new(settled_tenant(211, 1500), SimOptions::default(), None).await;
    let proxy = AwsFaultProxy::start(&deployment.aws.endpoint).await;
    deployment.set("AWS_ENDPOINT_URL", &proxy.endpoint);
    deployment.set("MAX_OBJECT_MB", "1");
    let points = [
        (Call::ObjectPut, Moment::Before),
        (Call::ObjectPut, Moment::After),
        (Call::StateWrite, Moment::Before),
        (Call::StateWrite, Moment::After),
    ];
    let mut kills = Vec::new();
    let mut runs = Vec::new();
    for round in 0..8 {
        if round > 0 {
            deployment.sim.with_tenant(|t| {
                t.produce(Utc::now(), Activity { new_alerts: 350, updates: 100, late: 5, bulk: 20 })
            });
        }
        let (call, moment) = points[(round + rng.below(4) as usize) % 4];
        // About 450 versions a round make two objects (five state writes) per run.
        let calls = if call == Call::ObjectPut { 2 } else { 5 };
        let trap = Trap { call, nth: 1 + rng.below(calls) as usize, moment };
        let held = proxy.arm(trap);
        deployment.start();
        let timeout = Duration::from_secs(4);
        let deadline = tokio::time::Instant::now() + timeout;
        let event = scheduled_event();
        let started = Utc::now();
        let invocation = deployment.invoke(&event, timeout);
        tokio::select! {
            outcome = invocation => {
                // The run made fewer such calls than the trap waited for (or met its deadline).
                if outcome.response()["complete"] == json!(true) {
                    runs.push((started, Utc::now()));
                }
                eprintln!("not killed: {trap:?}");
                proxy.disarm();
            }
            held = held => {
                let held = held.expect("the trap reports the held call");
                deployment.stop_all();
                drop(held);
                kills.push(trap);
                eprintln!("killed at {trap:?}");
                assert_no_duplicate_lines(&deployment.aws.lines(PREFIX).await);
                // The dead holder's lease ends at its deadline.
                tokio::time::sleep_until(deadline + Duration::from_millis(300)).await;
                // Sometimes the next kill comes before any run could finish the work.
                if rng.below(2) == 0 {
                    deployment.start();
                    invoke_until_complete(&deployment, &mut runs).await;
                }
            }
        }
        deployment.stop_all();
    }
    assert!(kills.len() >= 4, "most rounds killed the process mid-run: {kills:?}");
    deployment.start();
    invoke_until_complete(&deployment, &mut runs).await;
    assert_landed(&deployment, &runs).await;
    deployment.assert_no_secrets(&[]);
}

/// Another writer changes the state item while a run is between reading and writing it (what a
/// concurrent invocation would do without the lease): the run's conditional write fails, it
/// stops with a conflict, and the next run carries on without loss or duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_concurrent_state_write_mid_run_is_a_conflict_that_loses_nothing() {
    if xdr_tests::moto::unavailable("a_concurrent_state_write_mid_run_is_a_conflict_that_loses_nothing") {
        return;
    }
    let mut deployment = Deployment::new(settled_tenant(223, 600), SimOptions::default(), None).await;
    let proxy = AwsFaultProxy::start(&deployment.aws.endpoint).await;
    deployment.set("AWS_ENDPOINT_URL", &proxy.endpoint);
    deployment.set("MAX_OBJECT_MB", "1");
    deployment.start();
    let mut runs = Vec::new();
    invoke_until_complete(&deployment, &mut runs).await;
    let pk = deployment.aws.items().await.into_keys().find(|k| k.starts_with("sync#")).expect("state item");

    for nth in 1..=3 {
        deployment.sim.with_tenant(|t| {
            t.produce(Utc::now(), Activity { new_alerts: 300, updates: 50, late: 2, bulk: 10 })
        });
        let held = proxy.arm(Trap { call: Call::StateWrite, nth, moment: Moment::Before });
        let interfere = async {
            let held = held.await.expect("the state write is held");
            deployment
                .aws
                .dynamodb
                .update_item()
                .table_name(&deployment.aws.table)
                .key("pk", AttributeValue::S(pk.clone()))
                .update_expression("SET revision = revision + :one")
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .send()
                .await
                .expect("the other writer's update");
            held.release();
        };
        let event = scheduled_event();
        let (outcome, ()) = tokio::join!(deployment.invoke(&event, Duration::from_secs(60)), interfere);
        let (error_type, message) = expect_error(outcome);
        assert_eq!(error_type, "StateConflictError", "write {nth}: {message}");
        assert_no_duplicate_lines(&deployment.aws.lines(PREFIX).await);
        invoke_until_complete(&deployment, &mut runs).await;
    }
    assert_landed(&deployment, &runs).await;
    deployment.assert_no_secrets(&[]);
}

/// A 429 storm with `Retry-After`, 503 and 504, slow pages and a token that expires mid-run, in
/// one invocation: it completes, honours `Retry-After`, and writes each version once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttling_server_errors_slow_pages_and_token_expiry_in_one_run() {
    if xdr_tests::moto::unavailable("throttling_server_errors_slow_pages_and_token_expiry_in_one_run") {
        return;
    }
    let mut deployment = Deployment::new(settled_tenant(227, 1200), SimOptions::default(), None).await;
    deployment.start();
    let expected = deployment.visible_now();
    for fault in [
        Fault::Pass,
        Fault::Status { status: 429, retry_after: Some(1) },
        Fault::Status { status: 429, retry_after: Some(1) },
        Fault::Status { status: 429, retry_after: Some(2) },
        Fault::Pass,
        Fault::Status { status: 503, retry_after: None },
        Fault::Pass,
        Fault::Status { status: 504, retry_after: None },
        Fault::Delay(Duration::from_millis(1500)),
        Fault::ExpireTokens,
        Fault::Pass,
        Fault::Delay(Duration::from_millis(1500)),
        Fault::Status { status: 429, retry_after: Some(1) },
    ] {
        deployment.sim.push_fault(fault);
    }
    let outcome = deployment.invoke(&json!({}), Duration::from_secs(90)).await;
    let summary = outcome.response();
    assert_eq!(summary["complete"], json!(true), "{summary}");
    assert!(summary["throttled_responses"].as_u64() >= Some(4), "{summary}");
    assert!(summary["token_requests"].as_u64() >= Some(2), "the expired token was replaced: {summary}");
    assert_exactly(&deployment.aws.lines(PREFIX).await, &expected);

    // Each answer with `Retry-After: n` was followed by at least n seconds of silence.
    let requests: Vec<_> = deployment.sim.requests().into_iter().filter(|r| r.endpoint == "alerts").collect();
    let throttled: Vec<usize> = (0..requests.len()).filter(|i| requests[*i].status == 429).collect();
    assert_eq!(throttled.len(), 4);
    for (index, wanted) in throttled.iter().zip([1, 1, 2, 1]) {
        let next = requests.get(index + 1).expect("a request follows each 429");
        let gap = next.at - requests[*index].at;
        assert!(gap >= Duration::from_millis(wanted * 1000 - 50), "waited only {gap:?} after a 429");
    }
    deployment.assert_no_secrets(&[]);
}

/// Alerts are created, updated (several at one instant) and shown late while an invocation is
/// paging through slow pages, so records move between pages and slices under its feet; the later
/// runs close every gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alerts_updated_between_pages_of_a_run_are_all_captured_once() {
    if xdr_tests::moto::unavailable("alerts_updated_between_pages_of_a_run_are_all_captured_once") {
        return;
    }
    let mut rng = Rng(seed("updates between pages"));
    let options = SimOptions { page_latency: Duration::from_millis(120), ..SimOptions::default() };
    let mut deployment = Deployment::new(settled_tenant(229, 3000), options, None).await;
    deployment.start();
    let busy = async {
        for _ in 0..25 {
            tokio::time::sleep(Duration::from_millis(100 + rng.below(200))).await;
            let activity = Activity {
                new_alerts: rng.below(4),
                updates: 1 + rng.below(8),
                late: rng.below(2),
                bulk: rng.below(4),
            };
            deployment.sim.with_tenant(|t| t.produce(Utc::now(), activity));
        }
    };
    let event = scheduled_event();
    let started = Utc::now();
    let (first, ()) = tokio::join!(deployment.invoke(&event, Duration::from_secs(120)), busy);
    assert_eq!(first.response()["complete"], json!(true), "{first:?}");
    let mut runs = vec![(started, Utc::now())];
    assert_no_duplicate_lines(&deployment.aws.lines(PREFIX).await);
    invoke_until_complete(&deployment, &mut runs).await;
    assert_landed(&deployment, &runs).await;
}

/// Graph answers that cannot be used: each fails the run with its own error type and message,
/// keeps the progress made before it, and the next run completes without loss or duplicate.
/// Records without an `id` or `lastUpdateDateTime` are quarantined, not lost, and not in the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unusable_graph_answers_and_records_fail_clearly_or_are_quarantined() {
    if xdr_tests::moto::unavailable("unusable_graph_answers_and_records_fail_clearly_or_are_quarantined") {
        return;
    }
    let mut tenant = settled_tenant(233, 700);
    let at = Utc::now() - TimeDelta::hours(5);
    for (id, body) in [
        ("no-id", format!(r#"{{"title":"record without id","lastUpdateDateTime":"{}"}}"#, at.to_rfc3339())),
        (
            "no-time",
            r#"{"id":"da0000000000000000_1","title":"record without lastUpdateDateTime"}"#.to_owned(),
        ),
    ] {
        tenant.versions.push(SimVersion { id: id.into(), last_update: at, visible_at: at, body });
    }
    let mut deployment = Deployment::new(tenant, SimOptions::default(), None).await;
    deployment.start();
    let cases = [
        (Fault::TruncatedPage, "GraphMalformedPageError", "not valid JSON"),
        (Fault::ValueNotAnArray, "GraphMalformedPageError", "`value` is not an array"),
        (Fault::UnexpectedShape, "GraphMalformedPageError", "no `value` array"),
        (Fault::Status { status: 400, retry_after: None }, "GraphRefusedError", "400"),
    ];
    for (fault, kind, words) in cases {
        deployment.sim.push_fault(Fault::Pass);
        deployment.sim.push_fault(fault.clone());
        let (error_type, message) =
            expect_error(deployment.invoke(&json!({}), Duration::from_secs(60)).await);
        assert_eq!(error_type, kind, "{fault:?}: {message}");
        assert!(message.contains(words), "{fault:?}: {message}");
        assert_no_duplicate_lines(&deployment.aws.lines(PREFIX).await);
    }
    let summary = invoke_until_complete(&deployment, &mut Vec::new()).await;
    assert!(summary["quarantined"].as_u64() <= Some(2), "{summary}");
    let quarantined = deployment.aws.lines("defender-xdr/quarantine/").await;
    for title in ["record without id", "record without lastUpdateDateTime"] {
        assert_eq!(quarantined.iter().filter(|(_, line)| line.contains(title)).count(), 1, "{title}");
    }
    let expected: Vec<String> =
        deployment.visible_now().into_iter().filter(|body| !body.contains("record without")).collect();
    assert_exactly(&deployment.aws.lines(PREFIX).await, &expected);
    // The logs name quarantined records by reason, size, hash and id, never by their content.
    let output = deployment.output();
    assert!(output.contains("Quarantined a record") && output.contains("xxh3"), "quarantine is logged");
    assert!(output.contains("da0000000000000000_1"), "a plain id is logged");
    assert!(!output.contains("record without"), "alert content reached the logs");
    deployment.assert_no_secrets(&[]);
}

/// Each function setting missing or malformed: the process fails its start-up with an init error
/// that names the setting, before touching anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_bad_setting_fails_start_up_naming_it() {
    if xdr_tests::moto::unavailable("each_bad_setting_fails_start_up_naming_it") {
        return;
    }
    let mut deployment = Deployment::new(settled_tenant(239, 10), SimOptions::default(), None).await;
    let cases: &[(&str, Option<&str>)] = &[
        ("CREDENTIALS_SECRET_ID", None),
        ("STATE_TABLE", None),
        ("OUTPUT_BUCKET", None),
        ("TENANT_ID", None),
        ("TENANT_ID", Some("contoso/evil")),
        // A backslash would send the token request, and the secret, to evil.example.
        ("TENANT_ID", Some("\\\\evil.example")),
        ("CLOUD", Some("mars")),
        ("GRAPH_BASE_URL", Some("graph.microsoft.com")),
        ("GRAPH_BASE_URL", Some("http://graph.microsoft.com")),
        ("LOGIN_BASE_URL", Some("ftp://login.example")),
        ("LOGIN_BASE_URL", Some("http://login.example:8080")),
        ("MAX_RESPONSE_MB", Some("0")),
        ("BACKFILL_START", Some("last week")),
        ("BACKFILL_START", Some("2999-01-01T00:00:00Z")),
        ("OVERLAP_MINUTES", Some("-5")),
        ("PAGE_SIZE", Some("0")),
        ("PAGE_SIZE", Some("many")),
        ("MAX_PAGES_PER_SLICE", Some("1000")),
        ("MAX_OBJECT_MB", Some("0")),
        ("FINISH_RESERVE_MS", Some("5")),
        ("HTTP_TIMEOUT_SECONDS", Some("0")),
        ("MAX_ATTEMPTS", Some("99")),
        ("BACKFILL_CONCURRENCY", Some("64")),
        ("OUTPUT_PREFIX", Some("a//b")),
        ("QUARANTINE_PREFIX", Some("defender-xdr/alerts/quarantine")),
        ("S3_FORCE_PATH_STYLE", Some("perhaps")),
        ("SECRET_CACHE_SECONDS", Some("forever")),
        // A stack syncs one TENANT_ID or a registry's tenants, not both.
        ("TENANTS_TABLE", Some("xdr-tenants")),
        ("STALE_AFTER_SECONDS", Some("5")),
    ];
    let good = deployment.env.clone();
    for function in ["xdr-sync", "xdr-backfill"] {
        for (setting, value) in cases {
            deployment.env = good.clone();
            match value {
                Some(value) => deployment.set(setting, value),
                None => deployment.unset(setting),
            }
            deployment.start_function(function);
            let process = deployment.processes.last_mut().expect("started");
            let status = process.wait_exit(Duration::from_secs(20)).expect("the process exits by itself");
            assert!(!status.success(), "{function} with {setting}={value:?}");
            let api = if function == "xdr-sync" { &deployment.api } else { &deployment.backfill_api };
            let error = api.init_errors().pop().expect("an init error was posted");
            assert!(error.contains("ConfigurationError"), "{function} {setting}: {error}");
            assert!(error.contains(setting), "{function} with {setting}={value:?}: {error}");
        }
        let api = if function == "xdr-sync" { &deployment.api } else { &deployment.backfill_api };
        assert_eq!(api.init_errors().len(), cases.len(), "one init error per bad setting");
    }
    deployment.env = good;
    assert!(deployment.aws.items().await.is_empty() && deployment.aws.keys("").await.is_empty());
    deployment.assert_no_secrets(&[]);
}

/// The credentials secret missing, not JSON, of the wrong shape, or holding wrong values: each
/// gets a CredentialsError that says what is wrong and where, never quotes the value, and
/// changes nothing (no state, no lease, no object).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_bad_secret_fails_clearly_and_changes_nothing() {
    if xdr_tests::moto::unavailable("each_bad_secret_fails_clearly_and_changes_nothing") {
        return;
    }
    let mut deployment = Deployment::new(settled_tenant(241, 40), SimOptions::default(), None).await;
    deployment.start();
    invoke_until_complete(&deployment, &mut Vec::new()).await;
    deployment
        .sim
        .with_tenant(|t| t.produce(Utc::now(), Activity { new_alerts: 5, updates: 3, late: 0, bulk: 0 }));
    let items = deployment.aws.items().await;
    let keys = deployment.aws.keys("").await;
    let client_id = deployment.sim.client_id();
    let secret_id = deployment.aws.secret_id.clone();
    let leaked = "s3cr3t-Value~that-must-never-print";
    let cases: Vec<(String, &str)> = vec![
        ("client_id=abc, client_secret=xyz".into(), "is not JSON"),
        (json!(["a", "b"]).to_string(), "is not a JSON object"),
        (json!({"client_secret": leaked}).to_string(), "no `client_id` field"),
        (json!({"client_id": client_id, "client_secret": ""}).to_string(), "empty `client_secret`"),
        (
            json!({"client_id": client_id, "client_secret": 42}).to_string(),
            "`client_secret` field that is not a string",
        ),
        (
            json!({"client_id": "00000000-1111-2222-3333-444444444444", "client_secret": leaked}).to_string(),
            "AADSTS700016",
        ),
        (json!({"client_id": client_id, "client_secret": leaked}).to_string(), "AADSTS7000215"),
    ];
    for (value, words) in &cases {
        deployment
            .aws
            .secrets
            .put_secret_value()
            .secret_id(&secret_id)
            .secret_string(value)
            .send()
            .await
            .expect("update the secret");
        deployment.stop_all();
        deployment.start();
        let (error_type, message) =
            expect_error(deployment.invoke(&json!({}), Duration::from_secs(30)).await);
        assert_eq!(error_type, "CredentialsError", "{words}: {message}");
        assert!(message.contains(words), "{words}: {message}");
        if !words.starts_with("AADSTS") {
            assert!(message.contains(&secret_id), "names the secret: {message}");
        }
        assert_eq!(deployment.aws.items().await, items, "{words}: state and lease unchanged");
        assert_eq!(deployment.aws.keys("").await, keys, "{words}: nothing written");
    }
    // A secret that does not exist is named, with what to do.
    deployment.stop_all();
    deployment.set("CREDENTIALS_SECRET_ID", "xdr/no-such-secret");
    deployment.start();
    let (error_type, message) = expect_error(deployment.invoke(&json!({}), Duration::from_secs(30)).await);
    assert_eq!(error_type, "CredentialsError");
    assert!(message.contains("xdr/no-such-secret") && message.contains("was not found"), "{message}");
    assert_eq!(deployment.aws.items().await, items);
    deployment.assert_no_secrets(&[leaked, "client_id=abc, client_secret=xyz"]);
}
