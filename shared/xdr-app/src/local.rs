//! The engine with local adapters: Graph (real or simulated) into a folder, state in a file.

use std::path::Path;

use chrono::Utc;
use secrecy::SecretString;
use xdr_core::{Ports, RunRequest, RunSummary, SystemClock, run_sync};
use xdr_graph::{ClientCredentials, GraphClient, GraphStats, StaticCredentials, http_client};
use xdr_local::{DirSink, FileStateStore};

use crate::config::{LocalConfig, SyncConfig};
use crate::error::AppError;

/// A new run id: short, random, safe in object names.
pub fn new_run_id() -> String {
    format!("{:08x}", fastrand::u32(..))
}

/// One sync of the configured tenant into `output_dir`, with state in `state_file`.
pub async fn sync_into_folder(
    config: &SyncConfig,
    client_id: &str,
    client_secret: &SecretString,
    output_dir: &Path,
    state_file: &Path,
    run_timeout: Option<std::time::Duration>,
) -> Result<(RunSummary, GraphStats), AppError> {
    let http = http_client().map_err(|error| AppError::Http(error.to_string()))?;
    let credentials = StaticCredentials(ClientCredentials {
        client_id: client_id.to_owned(),
        client_secret: client_secret.clone(),
    });
    let graph = GraphClient::new(http, config.graph_settings(), credentials);
    let sink = DirSink::new(output_dir);
    let store = FileStateStore::new(state_file);
    let deadline =
        run_timeout.and_then(|timeout| chrono::TimeDelta::from_std(timeout).ok()).map(|t| Utc::now() + t);
    let ports = Ports { source: &graph, store: &store, sink: &sink, clock: &SystemClock };
    let summary = run_sync(&config.engine, ports, RunRequest { run_id: new_run_id(), deadline }).await?;
    Ok((summary, graph.stats()))
}

/// `xdr-sync` outside Lambda: one sync as configured by the environment.
pub async fn run_local(
    config: &SyncConfig,
    local: &LocalConfig,
) -> Result<(RunSummary, GraphStats), AppError> {
    sync_into_folder(
        config,
        &local.client_id,
        &local.client_secret,
        &local.output_dir,
        &local.state_file,
        local.run_timeout,
    )
    .await
}
