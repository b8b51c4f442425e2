//! What the benchmarks measure of their output, shared by them.

use serde_json::Value;
use xdr_simulator::Simulator;

use crate::aws::Aws;

/// Data objects and their bytes in the bucket, and what `gzip -6` makes of the same objects' NDJSON (if
/// `gzip` is installed).
pub async fn objects_and_bytes(aws: &Aws) -> (usize, u64, Option<u64>) {
    let mut objects = 0;
    let mut bytes = 0u64;
    let mut gzip6 = Some(0u64);
    let mut pages = aws.s3.list_objects_v2().bucket(&aws.bucket).into_paginator().send();
    while let Some(page) = pages.next().await {
        for object in page.expect("list objects").contents() {
            let key = object.key().unwrap_or_default();
            // Data objects only (not the tenant marker under the control prefix).
            if !key.ends_with(".ndjson.gz") {
                continue;
            }
            objects += 1;
            bytes += object.size().unwrap_or(0) as u64;
            let body = aws.s3.get_object().bucket(&aws.bucket).key(key).send().await.expect("get object");
            let compressed = body.body.collect().await.expect("object body").into_bytes();
            let mut ndjson = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&compressed[..]), &mut ndjson)
                .expect("gunzip");
            gzip6 = gzip6.zip(gzip_level_6(&ndjson)).map(|(sum, size)| sum + size);
        }
    }
    (objects, bytes, gzip6)
}

pub fn gzip_level_6(data: &[u8]) -> Option<u64> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child =
        Command::new("gzip").arg("-6").arg("-c").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().ok()?;
    let mut stdin = child.stdin.take()?;
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let output = child.wait_with_output().ok()?;
    writer.join().ok()?.ok()?;
    Some(output.stdout.len() as u64)
}

/// A token from the simulated Entra, as a plain client asks for it (the baselines' first request).
pub async fn token(http: &reqwest::Client, sim: &Simulator) -> String {
    let body = http
        .post(format!("{}/{}/oauth2/v2.0/token", sim.base_url(), sim.tenant_id()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &sim.client_id()),
            ("client_secret", &sim.client_secret()),
            ("scope", &format!("{}/.default", sim.base_url())),
        ])
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("token")
        .bytes()
        .await
        .expect("token body");
    let token: Value = serde_json::from_slice(&body).expect("token JSON");
    token["access_token"].as_str().expect("access_token").to_owned()
}

/// One Graph request of a baseline reader, with its token: the answer's body.
pub async fn get_page(request: reqwest::RequestBuilder, token: &str) -> Vec<u8> {
    request
        .bearer_auth(token)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("page")
        .bytes()
        .await
        .expect("page body")
        .to_vec()
}

/// The variables a benchmark's function gets: the stand-in, the simulated tenant, where its
/// history starts, the page size; `BENCH_FUNCTION_ENV="NAME=value,..."` adds more.
pub fn function_env(
    aws: &Aws,
    sim: &Simulator,
    backfill_start: chrono::DateTime<chrono::Utc>,
    page_size: usize,
) -> Vec<(String, String)> {
    let mut env = aws.function_env();
    for (key, value) in [
        ("TENANT_ID", sim.tenant_id()),
        ("LOGIN_BASE_URL", sim.base_url().to_owned()),
        ("GRAPH_BASE_URL", sim.base_url().to_owned()),
        ("BACKFILL_START", backfill_start.to_rfc3339()),
        ("PAGE_SIZE", page_size.to_string()),
        ("RUST_LOG", "warn".into()),
        // The engine's speed, measured against a baseline that is not paced either; what
        // Graph's quota means for a backlog is arithmetic (README, "Performance").
        (crate::NO_REQUEST_LIMIT.0, crate::NO_REQUEST_LIMIT.1.into()),
    ] {
        env.push((key.to_owned(), value));
    }
    // BENCH_FUNCTION_ENV="NAME=value,NAME=value": more variables for the function.
    if let Ok(extra) = std::env::var("BENCH_FUNCTION_ENV") {
        for (key, value) in extra.split(',').filter_map(|pair| pair.split_once('=')) {
            env.push((key.to_owned(), value.to_owned()));
        }
    }
    env
}

/// Lambda's published prices (us-east-1, arm64) and CPU allocation: the cost models' inputs.
pub const PRICE_PER_GB_SECOND: f64 = 0.000_013_333_4;
pub const PRICE_PER_REQUEST: f64 = 0.20 / 1_000_000.0;
/// Lambda gives a function one full vCPU at 1,769 MB and CPU in proportion to memory below it.
pub const MB_PER_VCPU: f64 = 1769.0;

/// A run's billed seconds at `memory_mb`, from its measured wall time and CPU seconds on a full
/// core: the run waits on Graph and AWS for the wall time less its CPU, and its CPU work takes
/// longer on a fraction of a vCPU. A model, not a measurement on Lambda.
pub fn lambda_seconds(wall: f64, cpu: f64, memory_mb: f64) -> f64 {
    let vcpu = (memory_mb / MB_PER_VCPU).min(1.0);
    let cpu = cpu.min(wall);
    (wall - cpu) + cpu / vcpu
}
