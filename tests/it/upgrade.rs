//! Upgrading from the first release: its items (state keyed by `TENANT_ID` as typed, backfill
//! manifests and day ledgers without a stream, leases beside them) are written here by its own
//! code paths (the engine and the backfill with the first release's keys, through the same
//! DynamoDB and S3 adapters), then the real binaries of this release take over.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use serde_json::json;
use xdr_aws::{DynamoLease, DynamoStateStore, S3Sink};
use xdr_config::SyncConfig;
use xdr_core::backfill::{BackfillPorts, BackfillRequest, run_backfill};
use xdr_core::{Lease, ObjectSink, Ports, RunRequest, SinkError, StateKeys, SystemClock, run_sync};
use xdr_graph::{ClientCredentials, GraphClient, StaticCredentials, http_client};
use xdr_simulator::{Activity, SimOptions, SimTenant};
use xdr_tests::assert_exactly;
use xdr_tests::deployment::Deployment;

const PREFIX: &str = "defender-xdr/alerts/";

fn settled_tenant(seed: u64, alerts: u64) -> SimTenant {
    SimTenant::with_history(seed, Utc::now() - TimeDelta::hours(1), TimeDelta::days(3), alerts)
}

fn config(deployment: &Deployment) -> SyncConfig {
    let env = |name: &str| deployment.env.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone());
    SyncConfig::from_lookup(env, Utc::now()).unwrap()
}

fn graph(deployment: &Deployment, config: &SyncConfig) -> GraphClient<StaticCredentials> {
    let credentials = StaticCredentials(ClientCredentials {
        client_id: deployment.sim.client_id(),
        client_secret: SecretString::from(deployment.sim.client_secret()),
    });
    GraphClient::new(http_client().unwrap(), config.graph_settings(), credentials)
}

/// The first release's keys for this deployment's `TENANT_ID`.
fn first_release_keys(deployment: &Deployment, config: &SyncConfig) -> StateKeys {
    let previous = config.keys(&deployment.sim.tenant_id()).1;
    let keys = previous.into_iter().next().unwrap();
    assert_eq!(keys.sync(), format!("sync#{}", config.tenant_id));
    keys
}

fn store(deployment: &Deployment, key: &str) -> DynamoStateStore {
    DynamoStateStore::new(deployment.aws.dynamodb.clone(), deployment.aws.table.clone(), key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_releases_live_state_and_lease_are_taken_over() {
    if xdr_tests::moto::unavailable("the_first_releases_live_state_and_lease_are_taken_over") {
        return;
    }
    let tenant = settled_tenant(91, 1500);
    let domain = tenant.domain();
    let mut deployment = Deployment::new(tenant, SimOptions::default(), None).await;
    deployment.set("TENANT_ID", &domain);
    let config = config(&deployment);
    let legacy = first_release_keys(&deployment, &config);

    // The first release's scheduled run: its engine, state item `sync#<domain>`.
    let graph = graph(&deployment, &config);
    let live = store(&deployment, &legacy.sync());
    let sink = S3Sink::new(deployment.aws.s3.clone(), deployment.aws.bucket.clone());
    let ports = Ports { source: &graph, store: &live, sink: &sink, clock: &SystemClock };
    let run = RunRequest { run_id: "release1".into(), deadline: None, identity: None };
    let first = run_sync(&config.engine, ports, run).await.unwrap();
    assert!(first.complete && first.alerts_written >= 1500, "{first:?}");
    let mut expected = deployment.visible_now();

    // The tenant moves on; a first-release invocation is still running when this one starts.
    deployment.sim.with_tenant(|tenant| {
        tenant.produce(Utc::now(), Activity { new_alerts: 9, updates: 14, late: 0, bulk: 5 })
    });
    let lease = DynamoLease::new(deployment.aws.dynamodb.clone(), deployment.aws.table.clone());
    let until = Utc::now() + TimeDelta::minutes(5);
    lease.acquire(&legacy.sync(), "release1-invocation", until, Utc::now()).await.unwrap();
    deployment.start();
    let waiting = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
    assert_eq!(waiting.response()["complete"], json!(false), "{waiting:?}");
    assert!(waiting.response()["stopped_because"].as_str().unwrap().contains("release1-invocation"));
    let guid = deployment.sim.tenant_id();
    assert!(
        !deployment.aws.items().await.contains_key(&format!("sync#{guid}#alerts")),
        "nothing carried over yet"
    );

    // It ends; the next invocation carries the state over and reads only what changed.
    lease.release(&legacy.sync(), "release1-invocation").await.unwrap();
    let taken_over = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
    let response = taken_over.response();
    assert_eq!(response["complete"], json!(true), "{response}");
    assert_eq!(response["alerts_written"], json!(23), "{response}");
    // Every version once: what the first release wrote, and what changed since.
    expected.extend(deployment.visible_now());
    expected.sort();
    expected.dedup();
    assert_exactly(&deployment.aws.lines(PREFIX).await, &expected);
    let items = deployment.aws.items().await;
    assert!(
        items.contains_key(&format!("sync#{guid}#alerts")) && items.contains_key(&legacy.sync()),
        "{items:?}"
    );
    assert!(deployment.output().contains("Carried over the state an earlier release kept."));

    // From now on the new item is the state.
    let next = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
    assert_eq!(next.response()["alerts_written"], json!(0), "{next:?}");
    assert_exactly(&deployment.aws.lines(PREFIX).await, &expected);
    deployment.assert_no_secrets(&[]);
}

/// S3 until `puts_left` puts have gone through; every later put fails.
struct FailingAfter {
    inner: S3Sink,
    puts_left: AtomicUsize,
}

impl ObjectSink for FailingAfter {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), SinkError> {
        if self
            .puts_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1))
            .is_err()
        {
            return Err(SinkError::new("the first release's invocation ended here"));
        }
        self.inner.put(key, body).await
    }

    async fn exists(&self, key: &str) -> Result<bool, SinkError> {
        self.inner.exists(key).await
    }

    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, SinkError> {
        self.inner.read(key).await
    }
}

fn day_start(at: DateTime<Utc>) -> DateTime<Utc> {
    at.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_in_progress_backfill_of_the_first_release_carries_on() {
    if xdr_tests::moto::unavailable("an_in_progress_backfill_of_the_first_release_carries_on") {
        return;
    }
    let tenant = settled_tenant(93, 900);
    let domain = tenant.domain();
    let mut deployment = Deployment::new(tenant, SimOptions::default(), None).await;
    deployment.set("TENANT_ID", &domain);
    let config = config(&deployment);
    let legacy = first_release_keys(&deployment, &config);

    // The first release was backfilling the window, one day at a time, when a put failed (the
    // invocation ended there): its manifest fixed the window, two day ledgers are complete and
    // the third has an object pending.
    let (start, end) = (day_start(Utc::now() - TimeDelta::days(3)), Utc::now() - TimeDelta::hours(2));
    let graph = graph(&deployment, &config);
    let sink = FailingAfter {
        inner: S3Sink::new(deployment.aws.s3.clone(), deployment.aws.bucket.clone()),
        puts_left: AtomicUsize::new(2),
    };
    let no_live_state = store(&deployment, &legacy.sync());
    let ports = BackfillPorts {
        source: &graph,
        live_state: &no_live_state,
        state_for: |key: &str| store(&deployment, key),
        sink: &sink,
        clock: &SystemClock,
    };
    let request = BackfillRequest { start, end: Some(end), stream: xdr_core::stream::ALERTS };
    let run = RunRequest { run_id: "release1".into(), deadline: None, identity: None };
    let mut settings = config.backfill_settings(&domain);
    settings.concurrency = 1;
    let interrupted = run_backfill(&settings, &legacy, &[], &request, ports, run).await;
    assert!(interrupted.is_err(), "the put failed");
    let written_before = deployment.aws.lines(PREFIX).await.len();
    assert!(written_before > 100);
    let items = deployment.aws.items().await;
    assert!(items.contains_key(&legacy.manifest(start, Some(end))), "{items:?}");
    assert!(items.contains_key(&legacy.day(start.date_naive())), "{items:?}");

    // This release, invoked with the same event, finishes it: nothing read twice, nothing skipped.
    deployment.start_function("xdr-backfill");
    let event = json!({"start": start.to_rfc3339(), "end": end.to_rfc3339()});
    let resumed = deployment.invoke_backfill(&event, Duration::from_secs(60)).await;
    let result = resumed.response();
    assert_eq!(result["complete"], json!(true), "{result}");
    let expected = deployment.visible_in(start, end);
    assert_eq!(result["alerts_written"].as_u64(), Some((expected.len() - written_before) as u64), "{result}");
    assert_eq!(result["alerts_written_total"].as_u64(), Some(expected.len() as u64), "{result}");
    assert_exactly(&deployment.aws.lines(PREFIX).await, &expected);
    let guid = deployment.sim.tenant_id();
    let items = deployment.aws.items().await;
    assert!(
        items.contains_key(&format!("backfill#{guid}#alerts#day#{}", start.format("%Y-%m-%d"))),
        "{items:?}"
    );

    // Done: invoking again reads nothing.
    let again = deployment.invoke_backfill(&event, Duration::from_secs(60)).await;
    assert_eq!(again.response()["pages"], json!(0), "{again:?}");
    assert_exactly(&deployment.aws.lines(PREFIX).await, &expected);
    deployment.assert_no_secrets(&[]);
}
