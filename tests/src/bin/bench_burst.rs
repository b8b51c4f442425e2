//! A bulk job touched `N` alerts inside ten minutes (default one million): every version is
//! inside the overlap, so the dedup memory cannot shrink below it. The real `xdr-sync` binary
//! (release build) reads the burst under Lambda's 240 s deadline, invocation after invocation,
//! then three scheduled runs follow. Prints each invocation's wall time, CPU, peak RSS, pages and
//! versions written, the largest state item and the number of dedup chunks, then checks that
//! every version is in S3 exactly once. A benchmark that prints numbers, not a test.
//!
//!     cargo run --release -p xdr-tests --bin bench-burst -- [versions]
//!
//! Needs the moto venv (`.venv-moto`, made by `.ci/run`); a million versions take several GB of
//! memory in the bench process (the simulated tenant and moto), not in the function.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use serde_json::json;
use xdr_simulator::{Activity, GraphMode, SimOptions, SimTenant, Simulator};
use xdr_tests::aws::Aws;
use xdr_tests::function::{FunctionProcess, release_binary};
use xdr_tests::runtime_api::{Outcome, RuntimeApi};

#[tokio::main]
async fn main() {
    let versions: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1_000_000);
    let now = Utc::now();
    let built = Instant::now();
    let tenant = SimTenant::with_history(13, now, TimeDelta::minutes(10), versions);
    let start = now - TimeDelta::minutes(11);
    let sim = Simulator::start(tenant, SimOptions::mode(GraphMode::Strict)).await.expect("simulator");
    eprintln!(
        "tenant of {versions} alerts inside ten minutes built in {:.1} s",
        built.elapsed().as_secs_f64()
    );
    let secret = json!({"client_id": sim.client_id(), "client_secret": sim.client_secret()}).to_string();
    let aws = Aws::fresh(&secret).await;
    let api = RuntimeApi::start().await;
    let mut env = aws.function_env();
    for (key, value) in [
        ("TENANT_ID", sim.tenant_id()),
        ("LOGIN_BASE_URL", sim.base_url().to_owned()),
        ("GRAPH_BASE_URL", sim.base_url().to_owned()),
        ("BACKFILL_START", start.to_rfc3339()),
        ("RUST_LOG", "warn".into()),
        (xdr_tests::NO_REQUEST_LIMIT.0, xdr_tests::NO_REQUEST_LIMIT.1.into()),
    ] {
        env.push((key.to_owned(), value));
    }
    let process = FunctionProcess::start_binary(&release_binary("xdr-sync"), "xdr-sync", &api, &env);

    println!(
        "| invocation | wall s | CPU s | peak RSS MB | pages | versions written | complete | largest item KB | dedup chunks |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut scheduled = 0;
    for invocation in 1..=40 {
        if scheduled > 0 {
            sim.with_tenant(|t| {
                t.produce(Utc::now(), Activity { new_alerts: 50, updates: 100, late: 5, bulk: 20 })
            });
        }
        let cpu = process.cpu_seconds();
        let clock = Instant::now();
        let outcome = api.invoke(&json!({}), Duration::from_secs(240)).await;
        let wall = clock.elapsed().as_secs_f64();
        let Outcome::Response(summary) = outcome else {
            panic!("invocation {invocation} failed: {outcome:?}")
        };
        let sizes = aws.item_sizes().await;
        let chunks = sizes.keys().filter(|pk| pk.starts_with("seen#")).count();
        let largest = sizes.values().max().copied().unwrap_or(0);
        let complete = summary["complete"] == json!(true);
        println!(
            "| {invocation}{} | {wall:.1} | {:.1} | {:.0} | {} | {} | {complete} | {:.0} | {chunks} |",
            if scheduled > 0 { " (scheduled)" } else { "" },
            process.cpu_seconds() - cpu,
            process.peak_rss_bytes() as f64 / (1024.0 * 1024.0),
            summary["pages"],
            summary["alerts_written"],
            largest as f64 / 1024.0,
        );
        if complete {
            scheduled += 1;
            if scheduled > 3 {
                break;
            }
        }
    }
    let lines = aws.lines("defender-xdr/alerts/").await;
    let distinct: HashSet<&str> = lines.iter().map(|(_, line)| line.as_str()).collect();
    let listed = sim.with_tenant(|t| t.current_versions(Utc::now()).len());
    println!(
        "\n{} lines in S3, {} distinct (duplicates: {}); the tenant lists {listed} current versions now",
        lines.len(),
        distinct.len(),
        lines.len() - distinct.len()
    );
    assert_eq!(lines.len(), distinct.len(), "no version twice");
}
