//! Performance by the shape of the work. A user's first sync and every backfill look
//! different from one week of alerts: a month or more of history, one object or more per day.
//! Three shapes, each at 0 and 300 ms per Graph page, in the strict Graph mode (no nextLink,
//! `$skip` at most 500, scrambled order), with AWS's latency modelled in front of the local
//! stand-in (`AwsFaultProxy::model_region_latency`: about 30 ms and transfer time per S3 put,
//! 8 ms per DynamoDB write), so that storing objects costs what it costs in a region:
//! - `week`: 100k alerts over 7 days, one initial sync (the README's end-to-end run);
//! - `month`: a 30-day backlog of 100k alerts, one initial sync (an object or more per day);
//! - `backfill90`: 90 days of history through `xdr-backfill`, invoked until it is complete.
//!
//! The baseline is a plain sequential reader of the same records in the same mode: one request
//! after another, 1,000 a page. The strict Graph has no nextLinks, so it reads time slices; it
//! is told where every run of 1,000 records starts (which no real client knows), so each slice
//! is one full page: the lower bound on requests and on wall time. A benchmark that prints
//! numbers, not a test.
//!
//!     cargo run --release -p xdr-tests --bin bench-shapes -- [week] [month] [backfill90] [--latencies 0,300] [--alerts N] [--no-aws-latency]
//!
//! `--no-aws-latency` keeps the proxy in front of moto (it still counts the calls) but adds no
//! latency: what the model itself costs the function.
//!
//! Needs the moto venv (`.venv-moto`, made by `.ci/run`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use xdr_core::query::Query;
use xdr_simulator::{GraphMode, SimOptions, SimTenant, Simulator};
use xdr_tests::aws::Aws;
use xdr_tests::aws_fault_proxy::AwsFaultProxy;
use xdr_tests::function::{FunctionProcess, release_binary};
use xdr_tests::runtime_api::{Outcome, RuntimeApi};

const PAGE_SIZE: usize = 1000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Function {
    Sync,
    Backfill,
}

#[derive(Clone, Copy)]
struct Shape {
    name: &'static str,
    days: i64,
    function: Function,
}

const SHAPES: [Shape; 3] = [
    Shape { name: "week", days: 7, function: Function::Sync },
    Shape { name: "month", days: 30, function: Function::Sync },
    Shape { name: "backfill90", days: 90, function: Function::Backfill },
];

struct Row {
    shape: &'static str,
    latency_ms: u64,
    what: &'static str,
    wall: f64,
    cpu: Option<f64>,
    rss_mb: Option<f64>,
    graph_requests: usize,
    token_requests: usize,
    puts: Option<usize>,
    state_writes: Option<usize>,
    objects: Option<usize>,
    megabytes: Option<f64>,
    gzip6_megabytes: Option<f64>,
    versions: u64,
    invocations: usize,
    /// A sync's next run with nothing new (the warm container again): wall and CPU seconds.
    idle: Option<(f64, f64)>,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value_of = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let latencies: Vec<u64> = value_of("--latencies")
        .map(|text| text.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![0, 300]);
    let alerts: u64 = value_of("--alerts").and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let aws_latency = !args.iter().any(|a| a == "--no-aws-latency");
    let named: Vec<&str> =
        args.iter().map(String::as_str).filter(|a| SHAPES.iter().any(|s| s.name == *a)).collect();
    let shapes: Vec<Shape> =
        SHAPES.iter().copied().filter(|s| named.is_empty() || named.contains(&s.name)).collect();

    let mut rows = Vec::new();
    let mut lower_bounds = BTreeMap::new();
    for shape in &shapes {
        let now = Utc::now();
        let built = Instant::now();
        let tenant = SimTenant::with_history(
            17 + shape.days as u64,
            now - TimeDelta::minutes(30),
            TimeDelta::days(shape.days),
            alerts,
        );
        let start =
            tenant.versions.iter().map(|v| v.last_update).min().unwrap_or(now) - TimeDelta::seconds(1);
        let sim = Simulator::start(tenant, SimOptions::mode(GraphMode::Strict)).await.expect("simulator");
        let slices = oracle_slices(&sim);
        let listed: usize = slices.iter().map(|(_, _, n)| n).sum();
        lower_bounds.insert(shape.name, (listed, listed.div_ceil(PAGE_SIZE), slices.len()));
        eprintln!(
            "{}: {listed} alerts over {} days built in {:.1} s",
            shape.name,
            shape.days,
            built.elapsed().as_secs_f64()
        );
        let secret = json!({"client_id": sim.client_id(), "client_secret": sim.client_secret()}).to_string();
        for latency_ms in &latencies {
            sim.options(|o| o.page_latency = Duration::from_millis(*latency_ms));
            rows.push(sequential(&sim, shape, *latency_ms, &slices).await);
            rows.push(run_function(&sim, shape, *latency_ms, start, now, &secret, aws_latency).await);
        }
    }
    print_table(&rows, &lower_bounds, alerts, aws_latency);
}

/// Where every run of (at most) 1,000 records starts, by `lastUpdateDateTime`, with whole
/// instants in one slice: `[from, to)` and how many records it holds.
fn oracle_slices(sim: &Simulator) -> Vec<(DateTime<Utc>, DateTime<Utc>, usize)> {
    let mut times: Vec<DateTime<Utc>> =
        sim.with_tenant(|t| t.current_versions(Utc::now()).iter().map(|v| v.last_update).collect());
    times.sort();
    let mut slices = Vec::new();
    let mut i = 0;
    while i < times.len() {
        let from = times[i];
        let mut end = (i + PAGE_SIZE).min(times.len());
        // Never cut an instant in two: back off to its first record (or, for an instant of more
        // than a page, take it whole and page it with $skip).
        while end < times.len() && end > i + 1 && times[end] == times[end - 1] {
            end -= 1;
        }
        if end < times.len() && times[end] == times[end - 1] {
            end = i + times[i..].iter().take_while(|t| **t == from).count();
        }
        let to = if end < times.len() { times[end] } else { times[end - 1] + TimeDelta::microseconds(1) };
        slices.push((from, to, end - i));
        i = end;
    }
    slices
}

#[derive(serde::Deserialize)]
struct Page {
    value: Vec<serde::de::IgnoredAny>,
}

/// The baseline: a token, then each oracle slice in one request (or, for an instant of more
/// than a page, pages by `$skip`), one after another.
async fn sequential(
    sim: &Simulator,
    shape: &Shape,
    latency_ms: u64,
    slices: &[(DateTime<Utc>, DateTime<Utc>, usize)],
) -> Row {
    let http = reqwest::Client::new();
    let before = sim.requests().len();
    let clock = Instant::now();
    let token = xdr_tests::bench::token(&http, sim).await;
    let mut received = 0usize;
    for (from, to, count) in slices {
        let filter = Query::slice(*from, *to, PAGE_SIZE as u32).filter();
        let mut skip = 0;
        while skip < *count {
            let mut query = vec![("$filter", filter.clone()), ("$top", PAGE_SIZE.to_string())];
            if skip > 0 {
                query.push(("$skip", skip.to_string()));
            }
            let request = http.get(format!("{}/v1.0/security/alerts_v2", sim.base_url())).query(&query);
            let body = xdr_tests::bench::get_page(request, &token).await;
            let page: Page = serde_json::from_slice(&body).expect("page JSON");
            assert!(!page.value.is_empty() || *count == 0, "an oracle slice came back empty");
            received += page.value.len();
            skip += PAGE_SIZE;
        }
    }
    let wall = clock.elapsed().as_secs_f64();
    let expected: usize = slices.iter().map(|(_, _, n)| n).sum();
    assert_eq!(received, expected, "the sequential reader read every alert");
    let requests = sim.requests();
    Row {
        shape: shape.name,
        latency_ms,
        what: "sequential",
        wall,
        cpu: None,
        rss_mb: None,
        graph_requests: requests[before..].iter().filter(|r| r.endpoint == "alerts").count(),
        token_requests: requests[before..].iter().filter(|r| r.endpoint == "token").count(),
        puts: None,
        state_writes: None,
        objects: None,
        megabytes: None,
        gzip6_megabytes: None,
        versions: received as u64,
        invocations: 0,
        idle: None,
    }
}

/// The real function (release build) under the Runtime API emulator, against moto behind the
/// AWS latency model: one invocation for a sync, as many as it takes for a backfill.
async fn run_function(
    sim: &Simulator,
    shape: &Shape,
    latency_ms: u64,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
    secret: &str,
    aws_latency: bool,
) -> Row {
    let aws = Aws::fresh(secret).await;
    let proxy = AwsFaultProxy::start(&aws.endpoint).await;
    if aws_latency {
        proxy.model_region_latency();
    }
    let mut env = xdr_tests::bench::function_env(&aws, sim, start, PAGE_SIZE);
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    env.push(("AWS_ENDPOINT_URL".into(), proxy.endpoint.clone()));
    let name = match shape.function {
        Function::Sync => "xdr-sync",
        Function::Backfill => "xdr-backfill",
    };
    let api = RuntimeApi::start().await;
    let process = FunctionProcess::start_binary(&release_binary(name), name, &api, &env);
    let before = sim.requests().len();
    let cpu_before = process.cpu_seconds();
    let clock = Instant::now();
    let mut invocations = 0;
    let mut versions = 0;
    loop {
        let event = match shape.function {
            Function::Sync => json!({}),
            // The window ends before the live sync's start: a backfill of the tenant's history.
            Function::Backfill => {
                json!({"start": start.to_rfc3339(), "end": (now - TimeDelta::minutes(20)).to_rfc3339()})
            }
        };
        invocations += 1;
        let outcome = api.invoke(&event, Duration::from_secs(900)).await;
        let Outcome::Response(answer) = outcome else { panic!("{name} failed: {outcome:?}") };
        versions += answer["alerts_written"].as_u64().unwrap_or(0);
        if answer["complete"] == json!(true) {
            break;
        }
        assert!(invocations < 50, "{name} never completed: {answer}");
    }
    let wall = clock.elapsed().as_secs_f64();
    let cpu = process.cpu_seconds() - cpu_before;
    let requests = sim.requests();
    let calls = proxy.calls();
    let (objects, bytes, gzip6) = xdr_tests::bench::objects_and_bytes(&aws).await;
    // The next scheduled run, with nothing new: what every interval costs at least.
    let idle = if shape.function == Function::Sync {
        let cpu_before = process.cpu_seconds();
        let clock = Instant::now();
        let outcome = api.invoke(&json!({}), Duration::from_secs(900)).await;
        assert!(matches!(outcome, Outcome::Response(_)), "the idle run failed: {outcome:?}");
        Some((clock.elapsed().as_secs_f64(), process.cpu_seconds() - cpu_before))
    } else {
        None
    };
    Row {
        shape: shape.name,
        latency_ms,
        what: name,
        wall,
        cpu: Some(cpu),
        rss_mb: Some(process.peak_rss_bytes() as f64 / (1024.0 * 1024.0)),
        graph_requests: requests[before..].iter().filter(|r| r.endpoint == "alerts").count(),
        token_requests: requests[before..].iter().filter(|r| r.endpoint == "token").count(),
        puts: Some(calls.get("s3:PutObject").copied().unwrap_or(0)),
        state_writes: Some(calls.get("dynamodb:state-write").copied().unwrap_or(0)),
        objects: Some(objects),
        megabytes: Some(bytes as f64 / 1e6),
        gzip6_megabytes: gzip6.map(|b| b as f64 / 1e6),
        versions,
        invocations,
        idle,
    }
}

fn print_table(
    rows: &[Row],
    lower_bounds: &BTreeMap<&'static str, (usize, usize, usize)>,
    alerts: u64,
    aws_latency: bool,
) {
    let aws = if aws_latency {
        "moto behind a model of AWS's latency (S3 put 30 ms + 10 ms/MB, S3 get 15 ms, DynamoDB write 8 ms, \
         read 4 ms, Secrets Manager 15 ms)"
    } else {
        "moto behind the same proxy without the latency model (--no-aws-latency)"
    };
    println!(
        "Shapes of work ({alerts} alerts each), strict Graph mode (no nextLink, $skip <= 500, scrambled order), \
         release builds under the Lambda Runtime API emulator, {aws}; \
         the baseline reads the same records one full page after another"
    );
    println!(
        "{:<10} | {:>7} | {:<12} | {:>8} | {:>7} | {:>10} | {:>8} | {:>16} | {:>4} | {:>5} | {:>6} | {:>7} | {:>14} | {:>5} | {:>6}",
        "shape",
        "latency",
        "run",
        "wall (s)",
        "CPU (s)",
        "CPU s/100k",
        "RSS (MB)",
        "requests (bound)",
        "tok",
        "puts",
        "writes",
        "objects",
        "MB (gzip -6)",
        "calls",
        "vs seq"
    );
    println!("{}", "-".repeat(160));
    let mut baseline = 0.0;
    for row in rows {
        let dash = || "-".to_owned();
        if row.what == "sequential" {
            baseline = row.wall;
        }
        let bound = lower_bounds.get(row.shape).map_or(0, |(_, pages, _)| *pages);
        println!(
            "{:<10} | {:>5}ms | {:<12} | {:>8.2} | {:>7} | {:>10} | {:>8} | {:>16} | {:>4} | {:>5} | {:>6} | {:>7} | {:>14} | {:>5} | {:>5.2}x",
            row.shape,
            row.latency_ms,
            row.what,
            row.wall,
            row.cpu.map_or_else(dash, |c| format!("{c:.2}")),
            row.cpu.map_or_else(dash, |c| format!("{:.2}", c * 100_000.0 / row.versions.max(1) as f64)),
            row.rss_mb.map_or_else(dash, |m| format!("{m:.1}")),
            format!("{} ({bound})", row.graph_requests),
            row.token_requests,
            row.puts.map_or_else(dash, |n| n.to_string()),
            row.state_writes.map_or_else(dash, |n| n.to_string()),
            row.objects.map_or_else(dash, |n| n.to_string()),
            match (row.megabytes, row.gzip6_megabytes) {
                (Some(m), Some(g)) => format!("{m:.1} ({g:.1})"),
                (Some(m), None) => format!("{m:.1}"),
                _ => dash(),
            },
            if row.invocations == 0 { dash() } else { row.invocations.to_string() },
            row.wall / if baseline > 0.0 { baseline } else { f64::MIN_POSITIVE },
        );
    }
    print_bill(rows);
    for (shape, (listed, pages, slices)) in lower_bounds {
        println!(
            "{shape}: {listed} alerts listed; lower bound ceil({listed} / {PAGE_SIZE}) = {pages} Graph requests (+ 1 token request); the sequential reader's oracle slices: {slices}"
        );
    }
}

/// The bill, modelled from the measured runs with Lambda's published arm64 price and CPU in
/// proportion to memory (`xdr_tests::bench::lambda_seconds`): GB-seconds per 100k alerts for
/// each sync shape and latency, and for an idle run; then a month of a 5-minute schedule for
/// 10k, 100k and 1M alerts a day, from the 30-day backlog at 300 ms per page (each alert costs
/// what it cost there; every run costs at least an idle run).
fn print_bill(rows: &[Row]) {
    use xdr_tests::bench::{PRICE_PER_GB_SECOND, PRICE_PER_REQUEST, lambda_seconds};
    const MEMORY: [f64; 4] = [128.0, 256.0, 512.0, 1024.0];
    let synced: Vec<&Row> = rows.iter().filter(|row| row.what == "xdr-sync").collect();
    if synced.is_empty() {
        return;
    }
    println!(
        "\nThe bill, modelled from these measurements with Lambda's published arm64 price (${PRICE_PER_GB_SECOND}/GB-s, $0.20 per million requests) and CPU in proportion to memory (1,769 MB = 1 vCPU):"
    );
    println!(
        "{:<10} | {:>7} | {:<22} | {:>12} | {:>12} | {:>12} | {:>12}",
        "shape", "latency", "GB-s", "128 MB", "256 MB", "512 MB", "1024 MB"
    );
    for row in &synced {
        let cpu = row.cpu.unwrap_or(0.0);
        let per_100k = |memory: f64| {
            lambda_seconds(row.wall, cpu, memory) * memory / 1024.0 * 100_000.0 / row.versions.max(1) as f64
        };
        println!(
            "{:<10} | {:>5}ms | {:<22} | {:>12.2} | {:>12.2} | {:>12.2} | {:>12.2}",
            row.shape,
            row.latency_ms,
            "per 100k alerts",
            per_100k(MEMORY[0]),
            per_100k(MEMORY[1]),
            per_100k(MEMORY[2]),
            per_100k(MEMORY[3])
        );
        if let Some((wall, cpu)) = row.idle {
            let idle = |memory: f64| lambda_seconds(wall, cpu, memory) * memory / 1024.0;
            println!(
                "{:<10} | {:>5}ms | {:<22} | {:>12.4} | {:>12.4} | {:>12.4} | {:>12.4}",
                row.shape,
                row.latency_ms,
                format!("idle run ({wall:.2} s)"),
                idle(MEMORY[0]),
                idle(MEMORY[1]),
                idle(MEMORY[2]),
                idle(MEMORY[3])
            );
        }
    }
    let Some(model) = synced.iter().rev().find(|row| row.shape == "month").or(synced.last()) else { return };
    let Some((idle_wall, idle_cpu)) = model.idle else { return };
    let runs = 30.0 * 24.0 * 12.0;
    println!(
        "\nA month of runs every 5 minutes ({runs:.0} runs), from `{}` at {} ms per page: dollars of Lambda (GB-s and requests)",
        model.shape, model.latency_ms
    );
    println!(
        "{:>16} | {:>10} | {:>10} | {:>10} | {:>10}",
        "alerts a day", "128 MB", "256 MB", "512 MB", "1024 MB"
    );
    for per_day in [10_000.0, 100_000.0, 1_000_000.0] {
        let cost = |memory: f64| {
            let idle = lambda_seconds(idle_wall, idle_cpu, memory) * memory / 1024.0;
            let work = lambda_seconds(model.wall, model.cpu.unwrap_or(0.0), memory) * memory
                / 1024.0
                / model.versions.max(1) as f64;
            let gb_seconds = runs * idle + 30.0 * per_day * work;
            gb_seconds * PRICE_PER_GB_SECOND + runs * PRICE_PER_REQUEST
        };
        println!(
            "{:>16} | {:>10.2} | {:>10.2} | {:>10.2} | {:>10.2}",
            per_day as u64,
            cost(MEMORY[0]),
            cost(MEMORY[1]),
            cost(MEMORY[2]),
            cost(MEMORY[3])
        );
    }
}
