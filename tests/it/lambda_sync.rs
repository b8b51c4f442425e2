//! `xdr-sync` end to end: the real binary under a Lambda Runtime API, against the local AWS
//! stand-in (S3, DynamoDB, Secrets Manager) and the simulated tenant.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};
use xdr_simulator::{Activity, Fault, SimOptions, SimTenant};
use xdr_tests::assert_exactly;
use xdr_tests::aws_fault_proxy::{AwsFaultProxy, PutFault};
use xdr_tests::deployment::Deployment;
use xdr_tests::runtime_api::Outcome;
use xdr_tests::tls_front::{TestAuthority, TlsFront, address_of};

const PREFIX: &str = "defender-xdr/alerts/";

fn scheduled_event() -> Value {
    json!({
        "version": "0", "id": "0c1d2e3f-0000-4000-8000-000000000001", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": Utc::now().to_rfc3339(), "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/xdr-sync-schedule"], "detail": {}
    })
}

fn settled_tenant(seed: u64, alerts: u64) -> SimTenant {
    SimTenant::with_history(seed, Utc::now() - TimeDelta::hours(1), TimeDelta::days(3), alerts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scheduled_invocations_write_each_version_once() {
    if xdr_tests::moto::unavailable("scheduled_invocations_write_each_version_once") {
        return;
    }
    let mut deployment = Deployment::new(settled_tenant(41, 500), SimOptions::default(), None).await;
    deployment.start();
    let mut expected = deployment.visible_now();

    let first = deployment.invoke(&scheduled_event(), Duration::from_secs(60)).await;
    let summary = first.response();
    assert_eq!(summary["complete"], json!(true), "{summary}");
    assert_eq!(summary["alerts_written"].as_u64(), Some(expected.len() as u64));
    assert!(summary["graph_requests"].as_u64().unwrap() >= 5);
    assert_exactly(&deployment.aws.lines(PREFIX).await, &expected);
    let items = deployment.aws.items().await;
    assert_eq!(items.len(), 1, "only the state item; the lease was released: {items:?}");
    assert!(items.keys().next().unwrap().starts_with("sync#"));

    let applied = deployment
        .sim
        .with_tenant(|t| t.produce(Utc::now(), Activity { new_alerts: 4, updates: 7, late: 1, bulk: 3 }));
    expected.extend(deployment.visible_now());
    expected.sort();
    expected.dedup();
    // EventBridge Scheduler sends `{}`; any JSON is accepted.
    let second = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
    assert_eq!(second.response()["alerts_written"].as_u64(), Some(applied.new_alerts + applied.updates));
    assert_exactly(&deployment.aws.lines(PREFIX).await, &expected);

    let keys_before = deployment.aws.keys("").await;
    let third = deployment.invoke(&json!({"anything": [1, 2, 3]}), Duration::from_secs(60)).await;
    assert_eq!(third.response()["alerts_written"], json!(0));
    assert_eq!(deployment.aws.keys("").await, keys_before, "an idle run writes no object");

    // Objects are gzip with a content type, and only data objects live under the prefix.
    let key = &keys_before[0];
    let head = deployment.aws.s3.head_object().bucket(&deployment.aws.bucket).key(key).send().await.unwrap();
    assert_eq!(head.content_type(), Some("application/gzip"));
    let marker = format!("defender-xdr/control/tenants/{}/sync.json", deployment.sim.tenant_id());
    assert!(
        keys_before.iter().all(|k| (k.starts_with(PREFIX) && k.ends_with(".ndjson.gz")) || *k == marker),
        "{keys_before:?}"
    );
    // One EMF metrics line per invocation, declaring what the dashboard and alarms use.
    let logs = deployment.processes[0].output();
    let emf: Vec<Value> = logs
        .lines()
        .filter(|line| line.contains("\"_aws\""))
        .map(|line| serde_json::from_str(line).expect("EMF lines are JSON"))
        .collect();
    assert_eq!(emf.len(), 3, "one metrics line per invocation");
    assert_eq!(emf[0]["Function"], json!("xdr-sync"));
    assert_eq!(emf[0]["AlertsWritten"].as_u64(), summary["alerts_written"].as_u64());
    assert_eq!(emf[0]["RunsComplete"], json!(1));
    assert_eq!(emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"], json!("XdrLake"));
    assert!(emf[2]["LagSeconds"].as_f64().unwrap() < 60.0);
    // JSON logs that carry the invocation's request id.
    let logs = deployment.processes[0].output();
    assert!(logs.lines().any(|line| line.starts_with('{') && line.contains("6f0c0001")), "{logs:.2000}");
    deployment.assert_no_secrets(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_overlapping_invocations_never_duplicate() {
    if xdr_tests::moto::unavailable("two_overlapping_invocations_never_duplicate") {
        return;
    }
    // About 3 s of paging, so the two invocations surely overlap even on a loaded machine.
    let options = SimOptions { page_latency: Duration::from_millis(300), ..SimOptions::default() };
    let mut deployment = Deployment::new(settled_tenant(43, 1000), options, None).await;
    deployment.start();
    deployment.start();
    let expected = deployment.visible_now();
    let event = scheduled_event();
    let (a, b) = tokio::join!(
        deployment.invoke(&event, Duration::from_secs(60)),
        deployment.invoke(&event, Duration::from_secs(60))
    );
    let responses = [a.response().clone(), b.response().clone()];
    let busy: Vec<&Value> = responses.iter().filter(|r| r["complete"] == json!(false)).collect();
    assert_eq!(busy.len(), 1, "one ran, the other stood aside: {responses:?}");
    assert!(busy[0]["stopped_because"].as_str().unwrap().contains("another invocation"), "{}", busy[0]);
    assert_exactly(&deployment.aws.lines(PREFIX).await, &expected);
    deployment.assert_no_secrets(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_secret_fails_with_its_message_and_changes_nothing() {
    if xdr_tests::moto::unavailable("a_wrong_secret_fails_with_its_message_and_changes_nothing") {
        return;
    }
    let mut deployment = Deployment::new(settled_tenant(47, 120), SimOptions::default(), None).await;
    deployment.start();
    deployment.invoke(&scheduled_event(), Duration::from_secs(60)).await.response();
    deployment
        .sim
        .with_tenant(|t| t.produce(Utc::now(), Activity { new_alerts: 3, updates: 2, late: 0, bulk: 0 }));
    let items_before = deployment.aws.items().await;
    let keys_before = deployment.aws.keys("").await;

    // An operator pastes the secret's ID instead of its value.
    let wrong = "8f2d9c1e-7b3a-4c5d-9e8f-0a1b2c3d4e5f";
    let value = json!({"client_id": deployment.sim.client_id(), "client_secret": wrong}).to_string();
    deployment
        .aws
        .secrets
        .put_secret_value()
        .secret_id(&deployment.aws.secret_id)
        .secret_string(value)
        .send()
        .await
        .unwrap();
    deployment.stop_all();
    deployment.start();
    let outcome = deployment.invoke(&scheduled_event(), Duration::from_secs(60)).await;
    let Outcome::Error { error_type, message, .. } = outcome else {
        panic!("expected an error, got {outcome:?}")
    };
    assert_eq!(error_type, "CredentialsError");
    assert!(message.contains("AADSTS7000215") && message.contains("Value, not its Secret ID"), "{message}");
    assert_eq!(deployment.aws.items().await, items_before, "state unchanged, no lease left behind");
    assert_eq!(deployment.aws.keys("").await, keys_before, "nothing written");
    deployment.assert_no_secrets(&[wrong]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_secret_names_the_missing_field() {
    if xdr_tests::moto::unavailable("a_malformed_secret_names_the_missing_field") {
        return;
    }
    let secret = json!({"client_id": "whatever"});
    let mut deployment = Deployment::new(settled_tenant(53, 30), SimOptions::default(), Some(secret)).await;
    deployment.start();
    let outcome = deployment.invoke(&scheduled_event(), Duration::from_secs(60)).await;
    let Outcome::Error { error_type, message, .. } = outcome else {
        panic!("expected an error, got {outcome:?}")
    };
    assert_eq!(error_type, "CredentialsError");
    assert!(message.contains(&deployment.aws.secret_id) && message.contains("`client_secret`"), "{message}");
    assert!(deployment.aws.items().await.is_empty(), "no state written");
    assert!(deployment.aws.keys("").await.is_empty(), "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_deadline_returns_in_time_and_later_invocations_finish() {
    if xdr_tests::moto::unavailable("a_short_deadline_returns_in_time_and_later_invocations_finish") {
        return;
    }
    let options = SimOptions { page_latency: Duration::from_millis(300), ..SimOptions::default() };
    let mut deployment = Deployment::new(settled_tenant(59, 1500), options, None).await;
    deployment.start();
    let expected = deployment.visible_now();
    let mut invocations = 0;
    loop {
        invocations += 1;
        let started = Instant::now();
        // Lambda's default timeout.
        let outcome = deployment.invoke(&scheduled_event(), Duration::from_secs(3)).await;
        assert!(started.elapsed() < Duration::from_secs(3), "answered within the 3 s deadline");
        let summary = outcome.response().clone();
        assert!(summary["alerts_written"].as_u64().is_some(), "{summary}");
        if summary["complete"] == json!(true) {
            break;
        }
        assert!(summary["stopped_because"].as_str().unwrap().starts_with("deadline"), "{summary}");
        assert!(invocations < 30, "no progress");
    }
    assert!(invocations >= 3, "the deadline cut invocations short ({invocations})");
    assert_exactly(&deployment.aws.lines(PREFIX).await, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_invocation_blocks_nobody_past_its_deadline_and_loses_nothing() {
    if xdr_tests::moto::unavailable("a_killed_invocation_blocks_nobody_past_its_deadline_and_loses_nothing") {
        return;
    }
    let options = SimOptions { page_latency: Duration::from_millis(250), ..SimOptions::default() };
    let mut deployment = Deployment::new(settled_tenant(61, 2000), options, None).await;
    deployment.set("MAX_OBJECT_MB", "1");
    deployment.start();
    let expected = deployment.visible_now();
    let event = scheduled_event();
    let killed_deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    {
        // Invoke with a 5 s timeout and kill the sandbox mid-run, as soon as it stored an object.
        let invocation = deployment.api.invoke(&event, Duration::from_secs(5));
        tokio::pin!(invocation);
        loop {
            tokio::select! {
                outcome = &mut invocation => panic!("the run should still be going: {outcome:?}"),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            if !deployment.aws.keys(PREFIX).await.is_empty() {
                break;
            }
        }
    }
    deployment.processes[0].kill();
    let partial = deployment.aws.lines(PREFIX).await.len();
    assert!(partial > 0, "the killed run had stored objects");
    // Cold start while the dead holder's lease is still valid: stands aside.
    deployment.start();
    let busy = deployment.invoke(&scheduled_event(), Duration::from_secs(60)).await;
    assert_eq!(busy.response()["complete"], json!(false), "{:?}", busy);
    // After its deadline the lease is gone.
    tokio::time::sleep_until(killed_deadline + Duration::from_millis(500)).await;
    let done = deployment.invoke(&scheduled_event(), Duration::from_secs(60)).await;
    assert_eq!(done.response()["complete"], json!(true), "{:?}", done);
    assert_exactly(&deployment.aws.lines(PREFIX).await, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_setting_fails_start_up_naming_it() {
    if xdr_tests::moto::unavailable("a_missing_setting_fails_start_up_naming_it") {
        return;
    }
    let mut deployment = Deployment::new(settled_tenant(67, 10), SimOptions::default(), None).await;
    deployment.unset("STATE_TABLE");
    deployment.start();
    let status = deployment.processes[0].wait_exit(Duration::from_secs(20)).expect("the process exits");
    assert!(!status.success());
    let errors = deployment.api.init_errors();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("ConfigurationError") && errors[0].contains("STATE_TABLE"), "{}", errors[0]);
    deployment.set("STATE_TABLE", &deployment.aws.table.clone());
    deployment.set("OVERLAP_MINUTES", "fifteen");
    deployment.start();
    deployment.processes[1].wait_exit(Duration::from_secs(20)).expect("the process exits");
    assert!(deployment.api.init_errors()[1].contains("OVERLAP_MINUTES"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_table_or_bucket_is_named_with_what_to_check() {
    if xdr_tests::moto::unavailable("a_missing_table_or_bucket_is_named_with_what_to_check") {
        return;
    }
    let mut deployment = Deployment::new(settled_tenant(97, 20), SimOptions::default(), None).await;
    deployment.set("STATE_TABLE", "no-such-table");
    deployment.start();
    let outcome = deployment.invoke(&json!({}), Duration::from_secs(30)).await;
    let Outcome::Error { error_type, message, .. } = outcome else {
        panic!("expected an error: {outcome:?}")
    };
    assert_eq!(error_type, "StateError");
    assert!(message.contains("no-such-table") && message.contains("check STATE_TABLE"), "{message}");

    deployment.stop_all();
    let table = deployment.aws.table.clone();
    deployment.set("STATE_TABLE", &table);
    deployment.set("OUTPUT_BUCKET", "no-such-bucket");
    deployment.start();
    let outcome = deployment.invoke(&json!({}), Duration::from_secs(30)).await;
    let Outcome::Error { error_type, message, .. } = outcome else {
        panic!("expected an error: {outcome:?}")
    };
    assert_eq!(error_type, "OutputError");
    assert!(message.contains("no-such-bucket") && message.contains("check OUTPUT_BUCKET"), "{message}");
    // The announced object is pending in the state; nothing was written anywhere.
    assert!(deployment.aws.keys("").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unexpected_graph_answers_fail_clearly_and_lose_nothing() {
    if xdr_tests::moto::unavailable("unexpected_graph_answers_fail_clearly_and_lose_nothing") {
        return;
    }
    let mut deployment = Deployment::new(settled_tenant(101, 500), SimOptions::default(), None).await;
    deployment.start();
    let mut expected = deployment.visible_now();

    // The third page comes back without `value`: the run fails, keeping what it had.
    deployment.sim.push_fault(Fault::Pass);
    deployment.sim.push_fault(Fault::Pass);
    deployment.sim.push_fault(Fault::UnexpectedShape);
    let outcome = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
    let Outcome::Error { error_type, message, .. } = outcome else {
        panic!("expected an error: {outcome:?}")
    };
    assert_eq!(error_type, "GraphMalformedPageError");
    assert!(message.contains("no `value` array"), "{message}");
    let done = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
    assert_eq!(done.response()["complete"], json!(true));
    assert_exactly(&deployment.aws.lines(PREFIX).await, &expected);

    // A nextLink to another host: time slices never follow nextLinks (each is read in one
    // answer), so the token never goes there and nothing is lost. (The client's own refusal of
    // such a link is `requests_ask_for_unknown_enum_members_and_stay_on_the_graph_host`.)
    deployment
        .sim
        .with_tenant(|t| t.produce(Utc::now(), Activity { new_alerts: 250, updates: 0, late: 0, bulk: 0 }));
    expected.extend(deployment.visible_now());
    expected.sort();
    expected.dedup();
    deployment.sim.push_fault(Fault::ForeignNextLink);
    let done = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
    assert_eq!(done.response()["complete"], json!(true));
    assert_exactly(&deployment.aws.lines(PREFIX).await, &expected);
    deployment.assert_no_secrets(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_puts_landed_or_not_lose_and_duplicate_nothing() {
    if xdr_tests::moto::unavailable("failed_puts_landed_or_not_lose_and_duplicate_nothing") {
        return;
    }
    let mut deployment = Deployment::new(settled_tenant(103, 900), SimOptions::default(), None).await;
    let proxy = AwsFaultProxy::start(&deployment.aws.endpoint).await;
    deployment.set("AWS_ENDPOINT_URL_S3", &proxy.endpoint);
    deployment.set("MAX_OBJECT_MB", "1");
    deployment.start();
    let expected = deployment.visible_now();

    // The first object's put never lands, through all three attempts of the SDK's retries.
    proxy.fail_puts(&[PutFault::FailBefore; 3]);
    let outcome = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
    let Outcome::Error { error_type, message, .. } = outcome else {
        panic!("expected an error: {outcome:?}")
    };
    assert_eq!(error_type, "OutputError", "{message}");
    assert!(deployment.aws.keys(PREFIX).await.is_empty(), "the put never landed");
    let done = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
    assert_eq!(done.response()["complete"], json!(true), "{:?}", done);
    assert!(done.response()["recovered"].as_str().unwrap_or_default().contains("never landed"), "{:?}", done);
    assert_exactly(&deployment.aws.lines(PREFIX).await, &expected);

    // Now an object lands but every attempt is answered with an error (a lost response).
    deployment
        .sim
        .with_tenant(|t| t.produce(Utc::now(), Activity { new_alerts: 300, updates: 40, late: 0, bulk: 5 }));
    let mut expected = expected;
    expected.extend(deployment.visible_now());
    expected.sort();
    expected.dedup();
    proxy.fail_puts(&[PutFault::FailAfter; 3]);
    let outcome = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
    let Outcome::Error { error_type, .. } = outcome else { panic!("expected an error: {outcome:?}") };
    assert_eq!(error_type, "OutputError");
    assert!(proxy.puts().iter().any(|(_, status)| *status == 500));
    let done = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
    assert_eq!(done.response()["complete"], json!(true), "{:?}", done);
    assert!(done.response()["recovered"].as_str().unwrap_or_default().contains("had landed"), "{:?}", done);
    assert_exactly(&deployment.aws.lines(PREFIX).await, &expected);
}

/// TENANT_ID changed from the tenant's domain to its GUID is the same tenant: the state is keyed
/// by the GUID Entra names, so the sync goes on. The state item deleted would start over
/// silently: the tenant's marker beside the output makes the run refuse with
/// `TenantStateError`, writing nothing, until `xdr-sync state reset` starts over on purpose.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_renamed_tenant_goes_on_and_a_lost_state_is_refused_with_nothing_written() {
    if xdr_tests::moto::unavailable(
        "a_renamed_tenant_goes_on_and_a_lost_state_is_refused_with_nothing_written",
    ) {
        return;
    }
    let tenant = settled_tenant(47, 200);
    let domain = tenant.domain();
    let mut deployment = Deployment::new(tenant, SimOptions::default(), None).await;
    let guid = deployment.sim.tenant_id();
    deployment.set("TENANT_ID", &domain);
    deployment.start();
    let first = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
    assert_eq!(first.response()["complete"], json!(true), "{first:?}");
    let marker = format!("defender-xdr/control/tenants/{guid}/sync.json");
    assert_eq!(deployment.aws.keys("defender-xdr/control/").await, vec![marker.clone()]);
    let keys = deployment.aws.keys(PREFIX).await;
    let pk = format!("sync#{guid}#alerts");
    assert!(deployment.aws.items().await.contains_key(&pk), "keyed by the GUID Entra names");

    // Same tenant, named by its GUID now: the same state, nothing read again.
    deployment.stop_all();
    deployment.set("TENANT_ID", &guid);
    deployment.start();
    let renamed = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
    assert_eq!(renamed.response()["complete"], json!(true), "{renamed:?}");
    assert_eq!(renamed.response()["alerts_written"], json!(0), "{renamed:?}");
    assert_eq!(deployment.aws.keys(PREFIX).await, keys, "nothing written again");

    // Back to the domain, then the state item lost.
    deployment.stop_all();
    deployment.set("TENANT_ID", &domain);
    deployment.start();
    deployment
        .aws
        .dynamodb
        .delete_item()
        .table_name(&deployment.aws.table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(pk.clone()))
        .send()
        .await
        .unwrap();
    let lost = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
    let Outcome::Error { error_type, message, .. } = &lost else { panic!("refused: {lost:?}") };
    assert_eq!(error_type, "TenantStateError");
    assert!(message.contains("is missing") && message.contains("state reset"), "{message}");
    assert_eq!(deployment.aws.keys(PREFIX).await, keys, "nothing written");
    let logs = deployment.output();
    assert!(logs.contains("\"StateRefused\":1"), "the refusal is a metric too");

    // Starting over on purpose: the command, with the function's own settings, on DynamoDB.
    let cli = |args: &[&str]| {
        let mut command = std::process::Command::new(xdr_tests::function::binary("xdr-sync"));
        command.args(args).env_clear().envs(deployment.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let output = command.env("RUST_LOG", "trace").output().unwrap();
        let printed =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(!printed.contains(&deployment.sim.client_secret()), "the client secret was printed");
        output
    };
    let shown = cli(&["state", "show"]);
    let stdout = String::from_utf8_lossy(&shown.stdout);
    assert!(
        stdout.contains("\"exists\": false") && stdout.contains(&pk),
        "found by the GUID Entra names: {stdout}"
    );
    let reset = cli(&["state", "reset", "--yes"]);
    let stdout = String::from_utf8_lossy(&reset.stdout);
    assert!(
        reset.status.success() && stdout.contains("Reset."),
        "{stdout} {}",
        String::from_utf8_lossy(&reset.stderr)
    );
    let again = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
    assert_eq!(again.response()["complete"], json!(true), "{again:?}");
    deployment.assert_no_secrets(&[]);
}

/// Graph, Entra and AWS are reached over HTTPS only, and the two HTTP stacks of a function
/// (reqwest for Entra and Graph, the AWS SDK's) share the roots read once from the system's
/// store (`xdr_graph::trust_roots`). Here the store is a test authority's certificate
/// (`SSL_CERT_FILE`, honoured as the system's store is found): with it both stacks connect;
/// without it each one refuses the server, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_http_stacks_trust_the_system_store_and_nothing_else() {
    if xdr_tests::moto::unavailable("both_http_stacks_trust_the_system_store_and_nothing_else") {
        return;
    }
    let authority = TestAuthority::new();
    let store = tempfile::tempdir().unwrap();
    let bundle = store.path().join("test-authority.pem");
    authority.write_ca(&bundle);
    let mut deployment = Deployment::new(settled_tenant(53, 150), SimOptions::default(), None).await;
    let graph = TlsFront::start(&authority, address_of(deployment.sim.base_url())).await;
    let aws = TlsFront::start(&authority, address_of(&deployment.aws.endpoint)).await;
    let plain_aws = deployment.aws.endpoint.clone();
    let refused = async |deployment: &mut Deployment, what: &str| {
        deployment.stop_all();
        deployment.start();
        let outcome = deployment.invoke(&scheduled_event(), Duration::from_secs(60)).await;
        let Outcome::Error { message, .. } = outcome else {
            panic!("{what}: a server the store does not trust was accepted: {outcome:?}")
        };
        assert!(message.to_lowercase().contains("certificate"), "{what}: {message}");
        assert!(deployment.aws.keys("").await.is_empty(), "{what}: nothing written");
    };

    // The system's own store: neither stack knows the test authority.
    deployment.set("AWS_ENDPOINT_URL", &aws.url());
    refused(&mut deployment, "the AWS SDK with the system's store").await;
    deployment.set("AWS_ENDPOINT_URL", &plain_aws);
    deployment.set("LOGIN_BASE_URL", &graph.url());
    deployment.set("GRAPH_BASE_URL", &graph.url());
    refused(&mut deployment, "Entra and Graph with the system's store").await;
    // Refused during the handshake: no request reached either stand-in through its front.
    assert_eq!((graph.handshakes(), aws.handshakes()), (0, 0));

    // A store of the test authority alone: both connect, and the sync is whole.
    deployment.sim.serve_as(&graph.url());
    deployment.set("SSL_CERT_FILE", bundle.to_str().unwrap());
    deployment.set("SSL_CERT_DIR", store.path().join("none").to_str().unwrap());
    deployment.set("AWS_ENDPOINT_URL", &aws.url());
    deployment.stop_all();
    deployment.start();
    let expected = deployment.visible_now();
    let outcome = deployment.invoke(&scheduled_event(), Duration::from_secs(60)).await;
    assert_eq!(outcome.response()["complete"], json!(true), "{outcome:?}");
    assert_exactly(&deployment.aws.lines(PREFIX).await, &expected);
    assert!(graph.handshakes() > 0 && aws.handshakes() > 0, "both went through the TLS fronts");
}
