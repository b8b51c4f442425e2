//! Shared helpers for the integration tests: a simulated tenant plus a local output folder,
//! the local AWS stand-in, a Lambda Runtime API, and the function binaries; and checks of what
//! landed against the tenant's ground truth.

/// The simulated Graph enforces no quota unless a test asks for one (`SimOptions::quota`), so
/// the functions under test run without `GRAPH_REQUESTS_PER_MINUTE`'s pacing (its default, 150
/// a minute, would only slow the tests that read hundreds of small pages). The pacing itself is
/// tested against a simulated quota (`graph_client.rs`).
pub const NO_REQUEST_LIMIT: (&str, &str) = ("GRAPH_REQUESTS_PER_MINUTE", "0");

pub mod aws;
pub mod aws_fault_proxy;
pub mod bench;
pub mod deployment;
pub mod fleet;
pub mod function;
pub mod iam;
pub mod moto;
pub mod runtime_api;
pub mod tls_front;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use flate2::read::MultiGzDecoder;
use secrecy::SecretString;
use xdr_config::SyncConfig;
use xdr_core::RunSummary;
use xdr_graph::GraphStats;
use xdr_runtime::local::{Folders, sync_into_folder};
use xdr_simulator::{SimOptions, SimTenant, Simulator};

pub struct Harness {
    pub sim: Simulator,
    pub dir: tempfile::TempDir,
    pub backfill_start: DateTime<Utc>,
    pub extra: Vec<(String, String)>,
}

impl Harness {
    pub async fn start(tenant: SimTenant, options: SimOptions) -> Self {
        let backfill_start = tenant.versions.iter().map(|v| v.last_update).min().unwrap_or_else(Utc::now)
            - chrono::TimeDelta::seconds(1);
        let sim = Simulator::start(tenant, options).await.expect("simulator starts");
        Self { sim, dir: tempfile::tempdir().expect("temp dir"), backfill_start, extra: Vec::new() }
    }

    pub fn output_dir(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir.path().join("state.json")
    }

    /// The configuration a user would give, pointed at the simulator.
    pub fn config(&self) -> SyncConfig {
        let base = self.sim.base_url().to_owned();
        let tenant = self.sim.tenant_id();
        let start = self.backfill_start.to_rfc3339();
        let extra = self.extra.clone();
        SyncConfig::from_lookup(
            move |name| {
                if let Some((_, value)) = extra.iter().find(|(key, _)| key == name) {
                    return Some(value.clone());
                }
                match name {
                    "TENANT_ID" => Some(tenant.clone()),
                    "LOGIN_BASE_URL" | "GRAPH_BASE_URL" => Some(base.clone()),
                    "BACKFILL_START" => Some(start.clone()),
                    "PAGE_SIZE" => Some("100".into()),
                    name if name == crate::NO_REQUEST_LIMIT.0 => Some(crate::NO_REQUEST_LIMIT.1.into()),
                    _ => None,
                }
            },
            Utc::now(),
        )
        .expect("valid configuration")
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.extra.retain(|(key, _)| key != name);
        self.extra.push((name.into(), value.into()));
    }

    pub async fn sync_with(
        &self,
        secret: &str,
        timeout: Option<std::time::Duration>,
    ) -> Result<(RunSummary, GraphStats), xdr_runtime::AppError> {
        let (output_dir, state_file) = (self.output_dir(), self.state_file());
        sync_into_folder(
            &self.config(),
            &self.sim.client_id(),
            &SecretString::from(secret.to_owned()),
            &Folders { output_dir: &output_dir, state_file: &state_file },
            timeout,
        )
        .await
    }

    pub async fn sync(&self) -> RunSummary {
        let (summary, _) = self.sync_with(&self.sim.client_secret(), None).await.expect("sync succeeds");
        assert!(summary.complete, "{summary:?}");
        summary
    }

    /// Bodies of what Graph lists right now (the versions a sync now can see).
    pub fn visible_now(&self) -> Vec<String> {
        let tenant = self.sim.tenant();
        tenant.current_versions(Utc::now()).into_iter().map(|v| v.body.clone()).collect()
    }

    pub fn data_lines(&self) -> Vec<(String, String)> {
        let prefix = self.config().engine.layout.data_prefix().to_owned();
        lines_under(&self.output_dir(), &prefix)
    }
}

/// Every line of every `.gz` object under `root/prefix`, with its key.
pub fn lines_under(root: &Path, prefix: &str) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    let base = root.join(prefix);
    let mut stack = vec![base.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let key = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            assert!(key.ends_with(".gz"), "only data objects under the prefix, found {key}");
            let mut text = String::new();
            MultiGzDecoder::new(&std::fs::read(&path).unwrap()[..]).read_to_string(&mut text).unwrap();
            for line in text.lines() {
                lines.push((key.clone(), line.to_owned()));
            }
        }
    }
    lines
}

/// Each expected body is present exactly once, byte for byte, in the partition of its own
/// `lastUpdateDateTime`, and nothing else is there.
pub fn assert_exactly(lines: &[(String, String)], expected: &[String]) {
    let counts = count_lines(lines);
    let missing: Vec<&String> = expected.iter().filter(|body| !counts.contains_key(body.as_str())).collect();
    assert!(missing.is_empty(), "{} expected versions missing, e.g. {:.200}", missing.len(), missing[0]);
    assert_eq!(counts.len(), expected.len(), "lines that no expected version explains");
}

/// The ground truth when the tenant changed while runs were going on: every version Graph listed
/// throughout one of the complete `runs` (start, end) is present exactly once, and every line
/// is, byte for byte, some version the tenant ever had (none altered, none invented).
pub fn assert_observed(
    lines: &[(String, String)],
    tenant: &SimTenant,
    runs: &[(DateTime<Utc>, DateTime<Utc>)],
) {
    let counts = count_lines(lines);
    let ever: std::collections::HashSet<&str> = tenant.versions.iter().map(|v| v.body.as_str()).collect();
    let unknown = counts.keys().filter(|line| !ever.contains(*line)).count();
    assert_eq!(unknown, 0, "lines that are no version the tenant ever had");
    let mut missing = Vec::new();
    for (start, end) in runs {
        let listed = tenant.listed_throughout(*start, *end);
        missing.extend(
            listed
                .into_iter()
                .filter(|v| !counts.contains_key(v.body.as_str()))
                .map(|v| {
                    let stored: Vec<&str> = lines
                        .iter()
                        .filter(|(_, line)| line.contains(&format!("\"id\":\"{}\"", v.id)))
                        .map(|(key, _)| key.as_str())
                        .collect();
                    let versions: Vec<String> = tenant
                        .versions
                        .iter()
                        .filter(|w| w.id == v.id)
                        .map(|w| format!("{}/{}", w.last_update, w.visible_at))
                        .collect();
                    format!(
                        "{} updated {} visible {} (run {start} to {end}); all versions {versions:?}; in S3 under {stored:?}",
                        v.id, v.last_update, v.visible_at
                    )
                }),
        );
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "{} versions listed throughout a complete run are missing: {missing:#?}",
        missing.len()
    );
}

/// Incident lines as the versions they were written from, and how many were expanded: a line
/// written from an expanded read (`$expand=alerts`) loses the alerts Graph inlined, each of which
/// must be, byte for byte, a version of an alert the tenant ever had.
pub fn incident_bodies(lines: &[(String, String)], tenant: &SimTenant) -> (Vec<(String, String)>, usize) {
    let alert_versions: std::collections::HashSet<&str> =
        tenant.versions.iter().map(|v| v.body.as_str()).collect();
    let mut expanded = 0;
    let bodies = lines
        .iter()
        .map(|(key, line)| match xdr_simulator::incidents::split_expanded(line) {
            Some((body, alerts)) => {
                expanded += 1;
                for alert in &alerts {
                    assert!(
                        alert_versions.contains(alert.as_str()),
                        "an inlined alert that no alert version explains: {alert:.200}"
                    );
                }
                (key.clone(), body)
            }
            None => (key.clone(), line.clone()),
        })
        .collect();
    (bodies, expanded)
}

/// The incidents' ground truth, as [`assert_observed`] for alerts: every incident version Graph
/// listed throughout one of the complete `runs` is present exactly once, and every line is, byte
/// for byte, an incident version the tenant ever had. A line written from an expanded read
/// (`$expand=alerts`) is that version with its alerts appended as Graph inlined them when it was
/// read: each of those must be, byte for byte, a version of an alert the tenant ever had.
pub fn assert_observed_incidents(
    lines: &[(String, String)],
    tenant: &SimTenant,
    runs: &[(DateTime<Utc>, DateTime<Utc>)],
) -> usize {
    let (bodies, expanded) = incident_bodies(lines, tenant);
    let counts = count_lines(&bodies);
    let incidents = tenant.incidents();
    let ever: std::collections::HashSet<&str> = incidents.versions.iter().map(|v| v.body.as_str()).collect();
    let unknown: Vec<&&str> = counts.keys().filter(|line| !ever.contains(*line)).collect();
    assert!(
        unknown.is_empty(),
        "{} lines are no incident version the tenant ever had, e.g. {:.300}",
        unknown.len(),
        unknown[0]
    );
    let mut missing: Vec<String> = Vec::new();
    for (start, end) in runs {
        for version in tenant.incidents_listed_throughout(*start, *end) {
            if !counts.contains_key(version.body.as_str()) {
                missing.push(format!(
                    "{} updated {} visible {} (run {start} to {end})",
                    version.id, version.last_update, version.visible_at
                ));
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "{} incident versions listed throughout a complete run are missing: {missing:#?}",
        missing.len()
    );
    expanded
}

/// Counts each line, checking on the way that none is there twice and that each is JSON in the
/// partition of its own `lastUpdateDateTime`.
fn count_lines(lines: &[(String, String)]) -> BTreeMap<&str, usize> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, line) in lines {
        let value: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        let date = &value["lastUpdateDateTime"].as_str().expect("has lastUpdateDateTime")[..10];
        assert!(key.contains(&format!("/dt={date}/")), "{key} holds a record of {date}");
        *counts.entry(line).or_default() += 1;
    }
    let duplicated = counts.values().filter(|n| **n > 1).count();
    assert_eq!(duplicated, 0, "{duplicated} lines are duplicated");
    counts
}
