//! What the benchmarks measure of their output, shared by them.

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
