//! Backfill throughput: one-day parts read concurrently vs one at a time, against the simulated
//! tenant with a Graph-like latency on every page. A benchmark that prints numbers, not a test.
//!
//!     cargo run --release -p xdr-tests --bin bench-backfill [days] [alerts_per_day] [page_latency_ms]

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use secrecy::SecretString;
use serde_json::json;
use xdr_config::SyncConfig;
use xdr_core::backfill::{BackfillPorts, BackfillRequest, run_backfill};
use xdr_core::memory::{MemorySink, MemoryStates, MemoryStore};
use xdr_core::{RunRequest, SystemClock};
use xdr_graph::{ClientCredentials, GraphClient, StaticCredentials, http_client};
use xdr_simulator::{SimOptions, SimTenant, Simulator};

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let days = args.first().copied().unwrap_or(14);
    let per_day = args.get(1).copied().unwrap_or(400);
    let latency_ms = args.get(2).copied().unwrap_or(300);
    let now = Utc::now();
    let tenant =
        SimTenant::with_history(7, now - TimeDelta::hours(1), TimeDelta::days(days as i64), days * per_day);
    let options = SimOptions { page_latency: Duration::from_millis(latency_ms), ..SimOptions::default() };
    let sim = Simulator::start(tenant, options).await.expect("simulator");
    let start = now - TimeDelta::days(days as i64) - TimeDelta::hours(2);
    println!(
        "Backfill of {days} days ({} alerts listed, page size 100, {latency_ms} ms per page) against the simulated tenant",
        sim.tenant().current_versions(Utc::now()).len()
    );
    println!(
        "{:>11} | {:>9} | {:>6} | {:>7} | {:>9} | {:>7}",
        "concurrency", "wall (s)", "pages", "alerts", "alerts/s", "speedup"
    );
    println!("{:->11}-+-{:->9}-+-{:->6}-+-{:->7}-+-{:->9}-+-{:->7}", "", "", "", "", "", "");
    let mut sequential = None;
    for concurrency in [1usize, 2, 4, 8] {
        let base = sim.base_url().to_owned();
        let tenant_id = sim.tenant_id();
        let mut config = SyncConfig::from_lookup(
            |name| match name {
                "TENANT_ID" => Some(tenant_id.clone()),
                "LOGIN_BASE_URL" | "GRAPH_BASE_URL" => Some(base.clone()),
                "PAGE_SIZE" => Some("100".into()),
                name if name == xdr_tests::NO_REQUEST_LIMIT.0 => Some(xdr_tests::NO_REQUEST_LIMIT.1.into()),
                _ => None,
            },
            Utc::now(),
        )
        .expect("config");
        config.backfill_concurrency = concurrency;
        let credentials = StaticCredentials(ClientCredentials {
            client_id: sim.client_id(),
            client_secret: SecretString::from(sim.client_secret()),
        });
        let graph = GraphClient::new(http_client().expect("http"), config.graph_settings(), credentials);
        let request = BackfillRequest::from_event(
            &json!({"start": start.to_rfc3339(), "end": (now - TimeDelta::hours(1)).to_rfc3339()}),
            Utc::now(),
        )
        .expect("request");
        let sink = MemorySink::default();
        let live = MemoryStore::default();
        let states = MemoryStates::default();
        let (keys, previous) = config.keys(&tenant_id);
        let started = Instant::now();
        let ports = BackfillPorts {
            source: &graph,
            live_state: &live,
            state_for: |key: &str| states.store(key),
            sink: &sink,
            clock: &SystemClock,
        };
        let run = RunRequest { run_id: format!("bench{concurrency}"), deadline: None, identity: None };
        let outcome =
            run_backfill(&config.backfill_settings(&tenant_id), &keys, &previous, &request, ports, run)
                .await
                .expect("backfill");
        let wall = started.elapsed().as_secs_f64();
        assert!(outcome.complete());
        let result = serde_json::to_value(outcome.report()).expect("report");
        let alerts = result["alerts_written"].as_u64().unwrap_or(0);
        let pages = result["pages"].as_u64().unwrap_or(0);
        let base_wall = *sequential.get_or_insert(wall);
        println!(
            "{concurrency:>11} | {wall:>9.2} | {pages:>6} | {alerts:>7} | {:>9.0} | {:>6.2}x",
            alerts as f64 / wall,
            base_wall / wall
        );
    }
}
