//! What the local modes print for people.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;
use xdr_core::RunSummary;
use xdr_graph::GraphStats;

/// A short account of one run.
pub fn describe_run(title: &str, noun: &str, summary: &RunSummary, stats: &GraphStats) -> String {
    let mut text = format!(
        "{title}: {} {noun} versions written in {} object(s) ({} pages, {} Graph requests, {} throttled, {} already written and skipped, {} quarantined) - {}\n",
        summary.alerts_written,
        summary.objects.len(),
        summary.pages,
        stats.graph_requests,
        stats.throttled_responses,
        summary.duplicates_skipped,
        summary.quarantined,
        if summary.complete {
            "complete".to_owned()
        } else {
            format!("more remains ({})", summary.stopped_because.as_deref().unwrap_or("stopped"))
        },
    );
    text.push_str(&format!(
        "  window {} -> {}; covered until {}\n",
        summary.window.from, summary.window.to, summary.covered_until
    ));
    for object in &summary.objects {
        text.push_str(&format!("  + {} ({} {noun}s, {} bytes)\n", object.key, object.records, object.bytes));
    }
    if let Some(recovered) = &summary.recovered {
        text.push_str(&format!("  recovered: {recovered}\n"));
    }
    text
}

/// Partitions, objects and lines under a data prefix folder.
pub fn describe_folder(data_dir: &Path, noun: &str) -> String {
    let mut partitions: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(data_dir) {
        for partition in entries.flatten() {
            let name = partition.file_name().to_string_lossy().into_owned();
            let Ok(files) = std::fs::read_dir(partition.path()) else { continue };
            for file in files.flatten() {
                if !file.file_name().to_string_lossy().ends_with(".gz") {
                    continue;
                }
                let lines = std::fs::read(file.path())
                    .ok()
                    .and_then(|bytes| {
                        let mut text = String::new();
                        MultiGzDecoder::new(&bytes[..])
                            .read_to_string(&mut text)
                            .ok()
                            .map(|_| text.lines().count())
                    })
                    .unwrap_or(0);
                let entry = partitions.entry(name.clone()).or_default();
                entry.0 += 1;
                entry.1 += lines;
            }
        }
    }
    let objects: usize = partitions.values().map(|(objects, _)| objects).sum();
    let lines: usize = partitions.values().map(|(_, lines)| lines).sum();
    let mut text = format!(
        "Output in {}: {} partitions, {} objects, {} {noun} versions in all\n",
        data_dir.display(),
        partitions.len(),
        objects,
        lines
    );
    for (name, (objects, lines)) in &partitions {
        text.push_str(&format!("  {name}: {objects} object(s), {lines} {noun} versions\n"));
    }
    text
}
