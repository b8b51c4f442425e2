//! The state stays within DynamoDB's item limit whatever the burst: the real `xdr-sync` binary
//! against the local AWS stand-in (which enforces the 400 KB item limit as DynamoDB does).

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::json;
use xdr_simulator::{Activity, SimOptions, SimTenant};
use xdr_tests::assert_observed;
use xdr_tests::deployment::Deployment;
use xdr_tests::runtime_api::Outcome;

const PREFIX: &str = "defender-xdr/alerts/";

/// A bulk job touched 100,000 alerts inside ten minutes: every version is inside the overlap,
/// so the dedup memory cannot shrink below it. The first run and every scheduled run after it
/// succeed; nothing is lost or written twice; no item is near the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_thousand_versions_inside_ten_minutes_then_scheduled_runs() {
    if xdr_tests::moto::unavailable("a_hundred_thousand_versions_inside_ten_minutes_then_scheduled_runs") {
        return;
    }
    let now = Utc::now();
    let tenant = SimTenant::with_history(401, now, TimeDelta::minutes(10), 100_000);
    let mut deployment = Deployment::new(tenant, SimOptions::default(), None).await;
    deployment.set("PAGE_SIZE", "1000");
    deployment.start();

    let mut runs = Vec::new();
    let mut first_complete = false;
    for invocation in 0..6 {
        let started = Utc::now();
        let outcome = deployment.invoke(&json!({}), Duration::from_secs(240)).await;
        let Outcome::Response(summary) = &outcome else { panic!("run {invocation} failed: {outcome:?}") };
        if summary["complete"] == json!(true) {
            runs.push((started, Utc::now()));
            first_complete = true;
            break;
        }
    }
    assert!(first_complete, "the burst was read to its end");

    // Scheduled runs after it: more activity, each run succeeds, the burst stays remembered.
    for _ in 0..3 {
        deployment.sim.with_tenant(|t| {
            t.produce(Utc::now(), Activity { new_alerts: 20, updates: 30, late: 2, bulk: 10 })
        });
        let started = Utc::now();
        let outcome = deployment.invoke(&json!({}), Duration::from_secs(240)).await;
        let Outcome::Response(summary) = &outcome else { panic!("a scheduled run failed: {outcome:?}") };
        assert_eq!(summary["complete"], json!(true), "{summary}");
        runs.push((started, Utc::now()));
    }
    let lines = deployment.aws.lines(PREFIX).await;
    assert!(lines.len() >= 95_000, "{} lines", lines.len());
    assert_observed(&lines, &deployment.sim.tenant(), &runs);

    let sizes = deployment.aws.item_sizes().await;
    let chunks = sizes.keys().filter(|pk| pk.starts_with("seen#")).count();
    assert!(chunks >= 4, "the dedup memory is in chunks beside the state item: {sizes:?}");
    let largest = sizes.values().max().copied().unwrap_or(0);
    assert!(largest < 380 * 1024, "an item of {largest} bytes: {sizes:?}");
    deployment.assert_no_secrets(&[]);
}
