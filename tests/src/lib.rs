//! Shared helpers for the integration tests: a simulated tenant plus a local output folder,
//! the local AWS stand-in, a Lambda Runtime API, and the function binaries; and checks of what
//! landed against the tenant's ground truth.

pub mod aws;
pub mod deployment;
pub mod function;
pub mod moto;
pub mod runtime_api;
pub mod s3_fault_proxy;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use flate2::read::GzDecoder;
use secrecy::SecretString;
use xdr_app::SyncConfig;
use xdr_app::local::sync_into_folder;
use xdr_core::RunSummary;
use xdr_graph::GraphStats;
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
    ) -> Result<(RunSummary, GraphStats), xdr_app::AppError> {
        sync_into_folder(
            &self.config(),
            &self.sim.client_id(),
            &SecretString::from(secret.to_owned()),
            &self.output_dir(),
            &self.state_file(),
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
            GzDecoder::new(&std::fs::read(&path).unwrap()[..]).read_to_string(&mut text).unwrap();
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
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, line) in lines {
        let value: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        let date = &value["lastUpdateDateTime"].as_str().expect("has lastUpdateDateTime")[..10];
        assert!(key.contains(&format!("/dt={date}/")), "{key} holds a record of {date}");
        *counts.entry(line).or_default() += 1;
    }
    let duplicated = counts.values().filter(|n| **n > 1).count();
    assert_eq!(duplicated, 0, "{duplicated} lines are duplicated");
    let missing: Vec<&String> = expected.iter().filter(|body| !counts.contains_key(body.as_str())).collect();
    assert!(missing.is_empty(), "{} expected versions missing, e.g. {:.200}", missing.len(), missing[0]);
    assert_eq!(counts.len(), expected.len(), "lines that no expected version explains");
}
