//! The handlers with local adapters: Graph (real or simulated) into a folder, state and leases
//! in files. The live sync's state is the one file `STATE_FILE` names; backfill manifests, day
//! ledgers and leases sit beside it, one file per key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;
use serde_json::Value;
use xdr_config::{LocalConfig, SyncConfig};
use xdr_core::{RunSummary, SystemClock};
use xdr_graph::{ClientCredentials, GraphClient, GraphStats, StaticCredentials, http_client};
use xdr_local::{DirSink, FileLease, FileStateStore, file_name_for_key};

use crate::error::AppError;
use crate::handler::{HandlerPorts, Invocation, handle_backfill, handle_sync};
use crate::response::{BackfillOutcome, BackfillResponse, LeaseHeld, SyncOutcome};

/// A new run id: short, random, safe in object names.
pub fn new_run_id() -> String {
    format!("{:08x}", fastrand::u32(..))
}

/// Where a local run keeps things.
pub struct Folders<'a> {
    pub output_dir: &'a Path,
    pub state_file: &'a Path,
}

impl Folders<'_> {
    fn state_dir(&self) -> PathBuf {
        self.state_file.parent().map(Path::to_path_buf).unwrap_or_default()
    }

    /// The live sync's state is `STATE_FILE` (whatever its key); every other item is a file
    /// named for its key beside it.
    fn state_for(&self) -> impl Fn(&str) -> FileStateStore + '_ {
        let dir = self.state_dir();
        move |key: &str| {
            if key.starts_with("sync#") {
                FileStateStore::new(self.state_file)
            } else {
                FileStateStore::new(dir.join(format!("{}.json", file_name_for_key(key))))
            }
        }
    }
}

/// The local adapters of one run: Graph with static credentials, the folder, the file lease.
struct LocalAdapters<'a> {
    graph: GraphClient<StaticCredentials>,
    sink: DirSink,
    lease: FileLease,
    folders: &'a Folders<'a>,
}

impl<'a> LocalAdapters<'a> {
    fn new(
        config: &SyncConfig,
        client_id: &str,
        client_secret: &SecretString,
        folders: &'a Folders<'a>,
    ) -> Result<Self, AppError> {
        let http = http_client().map_err(AppError::Http)?;
        let credentials = StaticCredentials(ClientCredentials {
            client_id: client_id.to_owned(),
            client_secret: client_secret.clone(),
        });
        Ok(Self {
            graph: GraphClient::new(http, config.graph_settings(), credentials),
            sink: DirSink::new(folders.output_dir),
            lease: FileLease::new(folders.state_dir()),
            folders,
        })
    }

    fn ports(
        &self,
    ) -> HandlerPorts<
        '_,
        GraphClient<StaticCredentials>,
        impl Fn(&str) -> FileStateStore + '_,
        DirSink,
        FileLease,
        SystemClock,
    > {
        HandlerPorts {
            source: &self.graph,
            state_for: self.folders.state_for(),
            sink: &self.sink,
            lease: &self.lease,
            clock: &SystemClock,
        }
    }
}

fn invocation(run_timeout: Option<Duration>) -> Invocation {
    let deadline = run_timeout
        .and_then(|timeout| chrono::TimeDelta::from_std(timeout).ok())
        .map(|timeout| Utc::now() + timeout);
    Invocation { request_id: new_run_id(), deadline }
}

fn held(held: LeaseHeld) -> AppError {
    AppError::LeaseHeld(held.stopped_because)
}

/// One sync of the configured tenant into `output_dir`, with state in `state_file`.
pub async fn sync_into_folder(
    config: &SyncConfig,
    client_id: &str,
    client_secret: &SecretString,
    folders: &Folders<'_>,
    run_timeout: Option<Duration>,
) -> Result<(RunSummary, GraphStats), AppError> {
    let adapters = LocalAdapters::new(config, client_id, client_secret, folders)?;
    let response = handle_sync(config, adapters.ports(), &invocation(run_timeout)).await?;
    match response.outcome {
        SyncOutcome::Ran(summary) => Ok((*summary, adapters.graph.stats())),
        SyncOutcome::LeaseHeld(lease) => Err(held(lease)),
    }
}

/// `xdr-sync` outside Lambda: one sync as configured by the environment.
pub async fn run_local(
    config: &SyncConfig,
    local: &LocalConfig,
) -> Result<(RunSummary, GraphStats), AppError> {
    let folders = Folders { output_dir: &local.output_dir, state_file: &local.state_file };
    sync_into_folder(config, &local.client_id, &local.client_secret, &folders, local.run_timeout).await
}

/// `xdr-backfill` outside Lambda: one invocation's worth for `event`, into the local folder and
/// beside the local state of `xdr-sync`.
pub async fn backfill_local(
    config: &SyncConfig,
    local: &LocalConfig,
    event: &Value,
) -> Result<BackfillResponse, AppError> {
    let folders = Folders { output_dir: &local.output_dir, state_file: &local.state_file };
    let adapters = LocalAdapters::new(config, &local.client_id, &local.client_secret, &folders)?;
    let response = handle_backfill(config, adapters.ports(), event, &invocation(local.run_timeout)).await?;
    match response.outcome {
        BackfillOutcome::LeaseHeld(lease) => Err(held(lease)),
        BackfillOutcome::Ran(_) => Ok(response),
    }
}
