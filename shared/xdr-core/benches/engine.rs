//! Engine throughput: realistic alerts (~4 KB, from the simulated tenant) from pages already in
//! memory, through key parsing, dedup and gzip NDJSON, to a sink that only counts bytes.
//! Prints alerts/s and CPU seconds per 100k alerts. A benchmark, not a test.
//!
//!     cargo bench -p xdr-core --bench engine [-- alerts]

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test target: a panic is a failed test

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use xdr_core::memory::{ManualClock, MemoryStore};
use xdr_core::timeutil::{format_filter_instant, parse_instant};
use xdr_core::{
    AlertSource, FetchedPage, ObjectSink, PageRequest, Ports, RunRequest, SinkError, SourceError,
    SourceErrorKind, SyncSettings, run_sync,
};
use xdr_simulator::SimTenant;

const PAGE: usize = 1000;

/// Answers time-slice queries over evenly spaced alerts (`start + step * n`), with
/// `@odata.count` and no nextLink, as the strict Graph does.
struct Records {
    alerts: Vec<String>,
    start: DateTime<Utc>,
    step: TimeDelta,
}

impl Records {
    /// The index of the first alert at or after `at`.
    fn index(&self, at: DateTime<Utc>) -> usize {
        let offset = (at - self.start).num_nanoseconds().unwrap_or(0).max(0);
        let step = self.step.num_nanoseconds().unwrap_or(1).max(1);
        ((offset as u64).div_ceil(step as u64) as usize).min(self.alerts.len())
    }
}

impl AlertSource for Records {
    async fn authenticate(
        &self,
        _deadline: Option<DateTime<Utc>>,
    ) -> Result<xdr_core::Identity, SourceError> {
        Ok(xdr_core::Identity { tenant: "0f6a3c21-5d0e-4c7b-9f2a-3b8d6e1c4a70".into() })
    }

    async fn fetch(
        &self,
        request: PageRequest<'_>,
        _deadline: Option<DateTime<Utc>>,
    ) -> Result<FetchedPage, SourceError> {
        let PageRequest::Query(query) = request else {
            return Err(SourceError::new(SourceErrorKind::Refused, "no nextLinks here"));
        };
        let (first, end) = (self.index(query.from), self.index(query.to));
        let listed = &self.alerts[first..end];
        let page = &listed[(query.skip as usize).min(listed.len())..];
        let page = &page[..page.len().min(query.top as usize)];
        let mut body = format!(r#"{{"@odata.context":"bench","@odata.count":{},"value":["#, listed.len());
        body.push_str(&page.join(","));
        body.push_str("]}");
        Ok(FetchedPage { body: body.into_bytes(), request_id: None })
    }
}

#[derive(Default)]
struct CountingSink {
    objects: AtomicU64,
    bytes: AtomicU64,
}

impl ObjectSink for CountingSink {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), SinkError> {
        if !key.ends_with(".gz") {
            return Ok(()); // the tenant marker, not output
        }
        self.objects.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn exists(&self, _key: &str) -> Result<bool, SinkError> {
        Ok(false)
    }

    async fn read(&self, _key: &str) -> Result<Option<Vec<u8>>, SinkError> {
        Ok(None)
    }
}

/// User + system CPU seconds of this process (Linux `/proc/self/stat`, clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn main() {
    let alerts: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100_000);
    let now = parse_instant("2026-11-28T06:00:00Z").unwrap();
    // Realistic bodies from the simulator, reused with fresh ids and timestamps.
    let tenant = SimTenant::with_history(3, now - TimeDelta::hours(1), TimeDelta::days(1), 500);
    let templates: Vec<String> = tenant.versions.iter().map(|v| v.body.clone()).collect();
    let start = now - TimeDelta::days(2);
    let step = TimeDelta::days(1) / (alerts.max(1) as i32);
    let mut pages = Vec::new();
    let mut records = Vec::with_capacity(alerts);
    let mut bytes = 0usize;
    for page_start in (0..alerts).step_by(PAGE) {
        let mut body = String::from(r#"{"@odata.context":"bench","value":["#);
        for n in page_start..(page_start + PAGE).min(alerts) {
            let template = &templates[n % templates.len()];
            // Members stay in Graph's order (serde_json's `preserve_order`, as in the simulator).
            let mut value: serde_json::Value = serde_json::from_str(template).unwrap();
            value["id"] = format!("bench-{n:08}").into();
            value["lastUpdateDateTime"] = format_filter_instant(start + step * (n as i32)).into();
            let alert = value.to_string();
            if n > page_start {
                body.push(',');
            }
            bytes += alert.len();
            body.push_str(&alert);
            records.push(alert);
        }
        body.push(']');
        let next = page_start / PAGE + 1;
        if page_start + PAGE < alerts {
            body.push_str(&format!(r#","@odata.nextLink":"{next}""#));
        }
        body.push('}');
        pages.push(body.into_bytes());
    }

    let mut settings = SyncSettings::with_defaults();
    settings.backfill_start = Some(start);
    let source = Records { alerts: records, start, step };
    let store = MemoryStore::default();
    let sink = CountingSink::default();
    let clock = ManualClock::new(now);
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let summary = runtime
        .block_on(run_sync(
            &settings,
            Ports { source: &source, store: &store, sink: &sink, clock: &clock },
            RunRequest { run_id: "bench".into(), deadline: None, identity: None },
        ))
        .expect("bench run");
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    assert_eq!(summary.alerts_written as usize, alerts);
    let compressed = sink.bytes.load(Ordering::Relaxed);
    let stages = stage_costs(&pages);
    println!("engine: {alerts} alerts, {:.0} bytes each on average", bytes as f64 / alerts as f64);
    println!("  wall {wall:.2} s, {:.0} alerts/s", alerts as f64 / wall);
    println!("  CPU {cpu:.2} s in all, {:.2} CPU s per 100k alerts", cpu * 100_000.0 / alerts as f64);
    println!(
        "  {} objects, {:.1} MB gzip from {:.1} MB NDJSON (ratio {:.1})",
        sink.objects.load(Ordering::Relaxed),
        compressed as f64 / 1e6,
        bytes as f64 / 1e6,
        bytes as f64 / compressed.max(1) as f64
    );
    let per_100k = |seconds: f64| seconds * 100_000.0 / alerts as f64;
    println!("  what each stage costs alone, CPU s per 100k alerts:");
    for (stage, seconds) in &stages.timings {
        println!("    {stage:<48} {:>6.2}", per_100k(*seconds));
    }
    for (encoder, size) in &stages.sizes {
        println!("    {encoder:<48} {:>6.1} MB", *size as f64 / 1e6);
    }
}

struct Stages {
    timings: Vec<(&'static str, f64)>,
    sizes: Vec<(&'static str, usize)>,
}

/// Each stage of the engine's work on its own, over the same pages: parsing, reading the version
/// keys, building lines, and gzip by the engine's encoder and by zlib (flate2) for comparison.
fn stage_costs(pages: &[Vec<u8>]) -> Stages {
    use std::io::Write;
    let mut timings = Vec::new();
    let mut sizes = Vec::new();
    let mut time = |stage: &'static str, work: &mut dyn FnMut()| {
        let before = cpu_seconds();
        let started = Instant::now();
        work();
        let wall = started.elapsed().as_secs_f64();
        // Short stages fall below the 10 ms tick of the CPU clock: wall time (one thread) instead.
        timings.push((stage, (cpu_seconds() - before).max(wall)));
    };
    let mut parsed = Vec::new();
    time("parse pages (alerts kept as raw JSON)", &mut || {
        parsed = pages.iter().map(|page| xdr_core::page::parse_page(page).expect("page")).collect();
    });
    let mut keys = 0usize;
    time("read id and lastUpdateDateTime", &mut || {
        for page in &parsed {
            for raw in &page.alerts {
                keys += usize::from(xdr_core::page::version_key(raw).is_ok());
            }
        }
    });
    assert!(keys > 0);
    let mut ndjson = Vec::new();
    time("build NDJSON lines", &mut || {
        for page in &parsed {
            for raw in &page.alerts {
                ndjson.extend_from_slice(xdr_core::page::as_ndjson_line(raw).as_bytes());
                ndjson.push(b'\n');
            }
        }
    });
    if let Ok(path) = std::env::var("BENCH_DUMP_NDJSON") {
        std::fs::write(path, &ndjson).expect("dump");
    }
    let mut engine_size = 0;
    time("gzip, engine's encoder (libdeflate, level 6)", &mut || {
        let start = parse_instant("2026-01-01T00:00:00Z").unwrap();
        let mut batch = xdr_core::batch::Batch::new(start);
        for line in ndjson.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            batch.push_line(std::str::from_utf8(line).unwrap(), start).unwrap();
        }
        engine_size = batch.finish().unwrap().0.len();
    });
    sizes.push(("gzip size, engine's encoder", engine_size));
    let mut zlib_size = 0;
    time("gzip, flate2 (miniz_oxide, level 6, streaming)", &mut || {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        encoder.write_all(&ndjson).unwrap();
        zlib_size = encoder.finish().unwrap().len();
    });
    sizes.push(("gzip size, flate2 (miniz_oxide) level 6", zlib_size));
    // The reference the size target names: the system's `gzip -6` (zlib), if installed.
    let started = Instant::now();
    if let Some(size) = system_gzip_6(&ndjson) {
        timings.push(("gzip -6, the system's gzip (wall time)", started.elapsed().as_secs_f64()));
        sizes.push(("gzip size, system gzip -6", size));
    }
    Stages { timings, sizes }
}

fn system_gzip_6(data: &[u8]) -> Option<usize> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child =
        Command::new("gzip").args(["-6", "-c"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().ok()?;
    let mut stdin = child.stdin.take()?;
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let output = child.wait_with_output().ok()?;
    writer.join().ok()?.ok()?;
    Some(output.stdout.len())
}
