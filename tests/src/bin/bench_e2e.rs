//! End to end: the real `xdr-sync` binary (release build) under the Lambda Runtime API emulator,
//! against the simulated tenant and the local AWS stand-in (moto), next to a plain HTTP client
//! fetching the same pages (the lower bound). Prints wall time, CPU seconds and peak RSS of the
//! function process, Graph requests, S3 objects and bytes, and the cold start. A benchmark that
//! prints numbers, not a test.
//!
//!     cargo run --release -p xdr-tests --bin bench-e2e -- [alerts] [latency_ms...]
//!
//! Defaults: 100000 alerts, page latencies 0 and 300 ms. Needs the moto venv (`.venv-moto`,
//! made by `.ci/run`). The one-million-alert run is a manual one:
//! `cargo run --release -p xdr-tests --bin bench-e2e -- 1000000 0` (about 6 GB of memory for
//! the simulated tenant and moto, in the bench process, not in the function).

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use serde_json::json;
use xdr_simulator::{GraphMode, SimOptions, SimTenant, Simulator};
use xdr_tests::aws::Aws;
use xdr_tests::function::{FunctionProcess, release_binary};
use xdr_tests::runtime_api::{Outcome, RuntimeApi};

const PAGE_SIZE: usize = 1000;
const COLD_STARTS: usize = 7;

struct Row {
    latency_ms: u64,
    what: &'static str,
    wall: f64,
    cpu: Option<f64>,
    rss_mb: Option<f64>,
    alert_requests: usize,
    token_requests: usize,
    objects: Option<usize>,
    megabytes: Option<f64>,
    /// The same objects' NDJSON compressed by the system's `gzip -6`, for comparison.
    gzip6_megabytes: Option<f64>,
    alerts: u64,
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let alerts = args.first().copied().unwrap_or(100_000);
    let latencies: Vec<u64> = if args.len() > 1 { args[1..].to_vec() } else { vec![0, 300] };
    let now = Utc::now();
    let started = Instant::now();
    let tenant = SimTenant::with_history(11, now - TimeDelta::minutes(30), TimeDelta::days(7), alerts);
    let backfill_start =
        tenant.versions.iter().map(|v| v.last_update).min().unwrap_or(now) - TimeDelta::seconds(1);
    let sim = Simulator::start(tenant, SimOptions::mode(GraphMode::Strict)).await.expect("simulator");
    let (listed, average) = sim.with_tenant(|t| {
        let current = t.current_versions(Utc::now());
        let bytes: usize = current.iter().map(|v| v.body.len()).sum();
        (current.len(), bytes as f64 / current.len().max(1) as f64)
    });
    eprintln!("tenant of {listed} alerts built in {:.1} s", started.elapsed().as_secs_f64());
    let secret = json!({"client_id": sim.client_id(), "client_secret": sim.client_secret()}).to_string();
    let binary = release_binary("xdr-sync");

    let mut rows = Vec::new();
    for latency_ms in &latencies {
        sim.options(|o| o.page_latency = Duration::from_millis(*latency_ms));
        // The baseline reads the same records one page after another through the textbook
        // Graph's nextLinks (the lower bound); xdr-sync reads the strict Graph, which has none.
        sim.options(|o| o.graph = GraphMode::Lenient.behaviour());
        rows.push(raw_fetch(&sim, *latency_ms, listed as u64).await);
        sim.options(|o| o.graph = GraphMode::Strict.behaviour());
        let aws = Aws::fresh(&secret).await;
        let api = RuntimeApi::start().await;
        let env = xdr_tests::bench::function_env(&aws, &sim, backfill_start, PAGE_SIZE);
        let process = FunctionProcess::start_binary(&binary, "xdr-sync", &api, &env);
        let before = sim.requests().len();
        // BENCH_PROFILE=<file>: a `perf` profile of the function during the invocation.
        let profiler = std::env::var("BENCH_PROFILE").ok().and_then(|file| {
            std::process::Command::new("perf")
                .args(["record", "-F", "999", "-g", "-o", &file, "-p", &process.pid().to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .ok()
        });
        let cpu_before = process.cpu_seconds();
        let clock = Instant::now();
        let outcome = api.invoke(&json!({}), Duration::from_secs(900)).await;
        let wall = clock.elapsed().as_secs_f64();
        let cpu = process.cpu_seconds() - cpu_before;
        if let Some(profiler) = profiler {
            let _ = std::process::Command::new("kill").args(["-INT", &profiler.id().to_string()]).status();
            let _ = profiler.wait_with_output();
        }
        let Outcome::Response(summary) = outcome else { panic!("the sync failed: {outcome:?}") };
        assert_eq!(summary["complete"], json!(true), "{summary}");
        eprintln!(
            "latency {latency_ms} ms: {} pages, {} slices split, {} objects",
            summary["pages"],
            summary["slices_split"],
            summary["objects"].as_array().map_or(0, Vec::len)
        );
        let requests = sim.requests();
        if std::env::var("BENCH_SHOW_REQUESTS").is_ok() {
            for request in &requests[before..] {
                eprintln!("{} {}", request.endpoint, request.query);
            }
        }
        let (objects, bytes, gzip6) = xdr_tests::bench::objects_and_bytes(&aws).await;
        rows.push(Row {
            latency_ms: *latency_ms,
            what: "xdr-sync",
            wall,
            cpu: Some(cpu),
            rss_mb: Some(process.peak_rss_bytes() as f64 / (1024.0 * 1024.0)),
            alert_requests: requests[before..].iter().filter(|r| r.endpoint == "alerts").count(),
            token_requests: requests[before..].iter().filter(|r| r.endpoint == "token").count(),
            objects: Some(objects),
            megabytes: Some(bytes as f64 / 1e6),
            gzip6_megabytes: gzip6.map(|b| b as f64 / 1e6),
            alerts: summary["alerts_written"].as_u64().unwrap_or(0),
        });
    }
    let cold = cold_starts(&binary, &sim, backfill_start, &secret).await;

    println!(
        "End to end: xdr-sync (release build) under the Lambda Runtime API emulator, against the simulated tenant \
         ({listed} alerts, {average:.0} bytes each on average, page size {PAGE_SIZE}) and moto (S3, DynamoDB, \
         Secrets Manager), in the strict Graph mode (no nextLink, $skip <= 500, scrambled order); the raw fetch \
         is a plain HTTP client reading the same records one page after another through nextLinks"
    );
    println!(
        "{:>7} | {:<9} | {:>8} | {:>7} | {:>10} | {:>8} | {:>14} | {:>6} | {:>7} | {:>6} | {:>9} | {:>6}",
        "latency",
        "run",
        "wall (s)",
        "CPU (s)",
        "CPU s/100k",
        "RSS (MB)",
        "Graph requests",
        "tokens",
        "objects",
        "S3 MB",
        "gzip -6 MB",
        "vs raw"
    );
    println!("{}", "-".repeat(128));
    let mut raw_wall = 0.0;
    for row in &rows {
        let dash = || "-".to_owned();
        if row.what == "raw fetch" {
            raw_wall = row.wall;
        }
        println!(
            "{:>5}ms | {:<9} | {:>8.2} | {:>7} | {:>10} | {:>8} | {:>14} | {:>6} | {:>7} | {:>6} | {:>10} | {:>5.2}x",
            row.latency_ms,
            row.what,
            row.wall,
            row.cpu.map_or_else(dash, |c| format!("{c:.2}")),
            row.cpu.map_or_else(dash, |c| format!("{:.2}", c * 100_000.0 / row.alerts.max(1) as f64)),
            row.rss_mb.map_or_else(dash, |m| format!("{m:.1}")),
            row.alert_requests,
            row.token_requests,
            row.objects.map_or_else(dash, |o| o.to_string()),
            row.megabytes.map_or_else(dash, |m| format!("{m:.1}")),
            row.gzip6_megabytes.map_or_else(dash, |m| format!("{m:.1}")),
            row.wall / raw_wall.max(f64::MIN_POSITIVE),
        );
    }
    let pages = listed.div_ceil(PAGE_SIZE);
    println!("Lower bound: ceil({listed} / {PAGE_SIZE}) = {pages} Graph requests (+ 1 token request).");
    let mut sorted = cold.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "Cold start (spawn to first GET /runtime/invocation/next), {COLD_STARTS} starts: median {:.1} ms, min {:.1} ms, max {:.1} ms",
        sorted[sorted.len() / 2],
        sorted[0],
        sorted[sorted.len() - 1]
    );
}

/// What the raw fetch reads of a page: how many alerts, and where the next page is.
#[derive(serde::Deserialize)]
struct RawPage {
    value: Vec<serde::de::IgnoredAny>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

/// The lower bound: a token, then every page of the whole window, by a plain HTTP client.
async fn raw_fetch(sim: &Simulator, latency_ms: u64, listed: u64) -> Row {
    let http = reqwest::Client::new();
    let before = sim.requests().len();
    let clock = Instant::now();
    let token = xdr_tests::bench::token(&http, sim).await;
    let mut url = format!("{}/v1.0/security/alerts_v2?$top={PAGE_SIZE}", sim.base_url());
    let mut received = 0u64;
    loop {
        let body = xdr_tests::bench::get_page(http.get(&url), &token).await;
        let page: RawPage = serde_json::from_slice(&body).expect("page JSON");
        received += page.value.len() as u64;
        match page.next_link {
            Some(next) => url = next,
            None => break,
        }
    }
    assert_eq!(received, listed, "the raw fetch read every alert");
    let requests = sim.requests();
    Row {
        latency_ms,
        what: "raw fetch",
        wall: clock.elapsed().as_secs_f64(),
        cpu: None,
        rss_mb: None,
        alert_requests: requests[before..].iter().filter(|r| r.endpoint == "alerts").count(),
        token_requests: requests[before..].iter().filter(|r| r.endpoint == "token").count(),
        objects: None,
        megabytes: None,
        gzip6_megabytes: None,
        alerts: received,
    }
}

/// Milliseconds from spawning the process to its first poll of the Runtime API.
async fn cold_starts(
    binary: &std::path::Path,
    sim: &Simulator,
    backfill_start: chrono::DateTime<Utc>,
    secret: &str,
) -> Vec<f64> {
    let aws = Aws::fresh(secret).await;
    let env = xdr_tests::bench::function_env(&aws, sim, backfill_start, PAGE_SIZE);
    let mut times = Vec::new();
    for _ in 0..COLD_STARTS {
        let api = RuntimeApi::start().await;
        let process = FunctionProcess::start_binary(binary, "xdr-sync", &api, &env);
        let waited = Instant::now();
        loop {
            if let Some(time) = process.time_to_first_poll() {
                times.push(time.as_secs_f64() * 1000.0);
                break;
            }
            assert!(waited.elapsed() < Duration::from_secs(10), "the function never polled");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    times
}
