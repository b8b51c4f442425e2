//! Many tenants per interval: the fan-out as the template's state machine runs it (the list from
//! `xdr-sync`, one invocation per tenant, at most `concurrency` at a time, the report), with the
//! release `xdr-sync` under the Lambda Runtime API emulator, against simulated tenants behind one
//! Entra and Graph (with a Graph latency on every page) and the local AWS stand-in (moto).
//! Prints, per interval: the fan-out's wall time, invocations, duration per tenant-run (p50,
//! p95, max), CPU per tenant-run and peak RSS of the sandboxes; then the Lambda GB-seconds and a
//! monthly cost modelled from them. A benchmark that prints numbers, not a test.
//!
//!     cargo run --release -p xdr-tests --bin bench-tenants -- [tenants] [concurrency] [latency_ms] [alerts_per_tenant]
//!
//! Defaults: 500 tenants, 40 at a time, 150 ms per Graph page, 30 alerts per tenant (a day of
//! history). Needs the moto venv (`.venv-moto`, made by `.ci/run`).

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};
use xdr_simulator::{Activity, GraphMode, SimOptions, SimTenant};
use xdr_tests::bench::{PRICE_PER_GB_SECOND, PRICE_PER_REQUEST, lambda_seconds};
use xdr_tests::fleet::FleetDeployment;
use xdr_tests::runtime_api::Outcome;

/// Tenants whose runs are measured alone for the model.
const SAMPLE: usize = 40;

/// Step Functions: Standard state transitions, Express requests and duration (64 MB billed).
const PRICE_PER_TRANSITION: f64 = 0.025 / 1000.0;
const PRICE_PER_EXPRESS_REQUEST: f64 = 1.0 / 1_000_000.0;
const PRICE_PER_EXPRESS_GB_SECOND: f64 = 0.000_016_67;

struct Interval {
    what: &'static str,
    wall: f64,
    runs: usize,
    failed: usize,
    durations: Vec<f64>,
    cpu_per_run: f64,
    rss_mb: f64,
    requests_per_run: f64,
    written: u64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let tenants = args.first().copied().unwrap_or(500);
    let concurrency = args.get(1).copied().unwrap_or(40) as usize;
    let latency_ms = args.get(2).copied().unwrap_or(150);
    let alerts = args.get(3).copied().unwrap_or(30);
    let now = Utc::now();
    let app = SimTenant::new(90_000, now);
    let shared = json!({"client_id": app.client_id, "client_secret": app.client_secret});
    let options =
        SimOptions { page_latency: Duration::from_millis(latency_ms), ..SimOptions::mode(GraphMode::Strict) };
    let fleet: Vec<(SimTenant, SimOptions)> = (0..tenants)
        .map(|n| {
            let mut tenant =
                SimTenant::with_history(90_001 + n, now - TimeDelta::minutes(10), TimeDelta::days(1), alerts);
            tenant.client_id = app.client_id.clone();
            tenant.client_secret = app.client_secret.clone();
            (tenant, options.clone())
        })
        .collect();
    let mut deployment = FleetDeployment::new(fleet, &shared).await;
    deployment.set("RUST_LOG", "info");
    deployment.set("PAGE_SIZE", "1000");
    deployment.set("STREAMS", "alerts,incidents");
    deployment.register_all().await;
    deployment.start_release(concurrency);
    println!(
        "Fan-out of {tenants} tenants, {concurrency} at a time, both streams, {latency_ms} ms per Graph page (strict mode), release xdr-sync under the Runtime API emulator, moto for AWS"
    );

    let mut intervals = Vec::new();
    for what in ["first sync (a day each)", "next interval (new activity)", "idle interval"] {
        let cpu_before: f64 = deployment.processes.iter().map(|p| p.cpu_seconds()).sum();
        let started = Instant::now();
        let (runs, report) = deployment.fan_out(concurrency, Duration::from_secs(240)).await;
        let wall = started.elapsed().as_secs_f64();
        let cpu: f64 = deployment.processes.iter().map(|p| p.cpu_seconds()).sum::<f64>() - cpu_before;
        let mut durations: Vec<f64> =
            runs.values().map(|run| (run.ended - run.started).as_secs_f64()).collect();
        durations.sort_by(f64::total_cmp);
        let answers: Vec<&Value> = runs
            .values()
            .filter_map(|run| match &run.outcome {
                Outcome::Response(answer) => Some(answer),
                _ => None,
            })
            .collect();
        let requests: u64 = answers
            .iter()
            .map(|answer| {
                answer["streams"].as_object().map_or(0, |streams| {
                    streams.values().map(|s| s["graph_requests"].as_u64().unwrap_or(0)).sum::<u64>()
                }) + answer["token_requests"].as_u64().unwrap_or(0)
            })
            .sum();
        let written: u64 = answers
            .iter()
            .map(|answer| {
                answer["streams"]
                    .as_object()
                    .map_or(0, |streams| streams.values().map(|s| s["written"].as_u64().unwrap_or(0)).sum())
            })
            .sum();
        let stale = report.response()["stale"].as_u64().unwrap_or(u64::MAX);
        eprintln!("{what}: {wall:.1} s, {} runs, report: {stale} stale", runs.len());
        intervals.push(Interval {
            what,
            wall,
            runs: runs.len(),
            failed: runs.len() - answers.len(),
            cpu_per_run: cpu / runs.len().max(1) as f64,
            rss_mb: deployment.processes.iter().map(|p| p.peak_rss_bytes()).max().unwrap_or(0) as f64
                / (1024.0 * 1024.0),
            requests_per_run: requests as f64 / runs.len().max(1) as f64,
            durations,
            written,
        });
        for tenant in deployment.fleet.tenants() {
            if what.starts_with("first") {
                tenant.with_tenant(|t| {
                    t.produce(Utc::now(), Activity { new_alerts: 2, updates: 3, late: 0, bulk: 0 })
                });
            }
        }
    }

    println!(
        "\n{:<30} | {:>8} | {:>5} | {:>6} | {:>9} | {:>9} | {:>9} | {:>10} | {:>8} | {:>8} | {:>8}",
        "interval",
        "wall (s)",
        "runs",
        "failed",
        "p50 (s)",
        "p95 (s)",
        "max (s)",
        "CPU/run(s)",
        "RSS (MB)",
        "req/run",
        "written"
    );
    println!(
        "{:-<31}+{:-<10}+{:-<7}+{:-<8}+{:-<11}+{:-<11}+{:-<11}+{:-<12}+{:-<10}+{:-<10}+{:-<9}",
        "", "", "", "", "", "", "", "", "", "", ""
    );
    for row in &intervals {
        println!(
            "{:<30} | {:>8.1} | {:>5} | {:>6} | {:>9.3} | {:>9.3} | {:>9.3} | {:>10.4} | {:>8.1} | {:>8.1} | {:>8}",
            row.what,
            row.wall,
            row.runs,
            row.failed,
            percentile(&row.durations, 0.5),
            percentile(&row.durations, 0.95),
            percentile(&row.durations, 1.0),
            row.cpu_per_run,
            row.rss_mb,
            row.requests_per_run,
            row.written
        );
    }

    // Here every sandbox shares two cores, one moto process and the simulator, so the runs
    // above wait on each other. On Lambda each has its own CPU, and DynamoDB and S3 scale: a
    // tenant-run is measured alone, one after another, for the model.
    let sample = deployment.fleet.tenants().iter().take(SAMPLE).cloned().collect::<Vec<_>>();
    for tenant in &sample {
        tenant
            .with_tenant(|t| t.produce(Utc::now(), Activity { new_alerts: 2, updates: 3, late: 0, bulk: 0 }));
    }
    let cpu_before: f64 = deployment.processes.iter().map(|p| p.cpu_seconds()).sum();
    let mut durations = Vec::new();
    for tenant in &sample {
        let started = Instant::now();
        let outcome =
            deployment.api.invoke(&json!({"tenant": tenant.tenant_id()}), Duration::from_secs(240)).await;
        durations.push(started.elapsed().as_secs_f64());
        assert!(matches!(outcome, Outcome::Response(_)), "{outcome:?}");
    }
    let cpu = deployment.processes.iter().map(|p| p.cpu_seconds()).sum::<f64>() - cpu_before;
    durations.sort_by(f64::total_cmp);
    let steady = Interval {
        what: "one at a time (new activity)",
        wall: durations.iter().sum(),
        runs: sample.len(),
        failed: 0,
        cpu_per_run: cpu / sample.len().max(1) as f64,
        rss_mb: 0.0,
        requests_per_run: 0.0,
        durations,
        written: 0,
    };
    println!(
        "{:<30} |          | {:>5} |        | {:>9.3} | {:>9.3} | {:>9.3} | {:>10.4} |",
        steady.what,
        steady.runs,
        percentile(&steady.durations, 0.5),
        percentile(&steady.durations, 0.95),
        percentile(&steady.durations, 1.0),
        steady.cpu_per_run
    );

    // The model: a steady-state run every 5 minutes for every tenant.
    let mean = steady.durations.iter().sum::<f64>() / steady.durations.len().max(1) as f64;
    let waves = (tenants as f64 / concurrency as f64).ceil();
    println!(
        "\nOn Lambda, where runs do not share CPU or stand-ins, a fan-out of {tenants} tenants {concurrency} at a time is about {waves:.0} waves of {mean:.2} s: {:.0} s.",
        waves * mean
    );
    let runs_per_month = tenants as f64 * 30.0 * 24.0 * 12.0;
    println!(
        "\nModelled from the measured steady-state runs (mean {mean:.3} s wall, {:.4} CPU-s each) with Lambda's published",
        steady.cpu_per_run
    );
    println!(
        "arm64 prices (${PRICE_PER_GB_SECOND}/GB-s, $0.20 per million requests) and CPU in proportion to memory (1,769 MB = 1 vCPU):"
    );
    println!("{tenants} tenants every 5 minutes = {runs_per_month:.0} runs a month.");
    println!(
        "{:>8} | {:>10} | {:>12} | {:>14} | {:>14}",
        "memory", "s per run", "GB-s per run", "GB-s per month", "Lambda $/month"
    );
    for memory in [128.0, 256.0, 512.0, 1024.0] {
        let seconds = lambda_seconds(mean, steady.cpu_per_run, memory);
        let gb_seconds = seconds * memory / 1024.0;
        let monthly = runs_per_month * (gb_seconds * PRICE_PER_GB_SECOND + PRICE_PER_REQUEST);
        println!(
            "{:>5} MB | {:>10.3} | {:>12.4} | {:>14.0} | {:>14.2}",
            memory as u32,
            seconds,
            gb_seconds,
            gb_seconds * runs_per_month,
            monthly
        );
    }
    let executions = 30.0 * 24.0 * 12.0;
    let transitions = executions * 4.0;
    let express = runs_per_month * (PRICE_PER_EXPRESS_REQUEST + mean * 0.0625 * PRICE_PER_EXPRESS_GB_SECOND);
    println!(
        "Step Functions: {executions:.0} Standard executions a month (about 4 transitions each: ${:.2}) and {runs_per_month:.0} Express child runs (${express:.2}, 64 MB for {mean:.3} s each).",
        transitions * PRICE_PER_TRANSITION
    );
    drop(deployment);
}
