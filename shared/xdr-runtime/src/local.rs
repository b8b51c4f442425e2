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
use crate::handler::{HandlerPorts, Invocation, Sources, handle_backfill, handle_sync};
use crate::response::{BackfillOutcome, BackfillResponse, LeaseHeld, StreamRun, SyncOutcome};

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

    /// The live sync's state of alerts is `STATE_FILE` (whatever its key), another stream's
    /// is `STATE_FILE` with the stream's name (`sync-state-incidents.json`); every other item is
    /// a file named for its key beside it.
    fn state_for(&self) -> impl Fn(&str) -> FileStateStore + '_ {
        let dir = self.state_dir();
        move |key: &str| match key.strip_prefix("sync#") {
            Some(rest) => match xdr_core::stream::STREAMS.iter().find(|stream| {
                **stream != xdr_core::stream::ALERTS && rest.ends_with(&format!("#{}", stream.name))
            }) {
                Some(stream) => FileStateStore::new(stream_state_file(self.state_file, stream.name)),
                None => FileStateStore::new(self.state_file),
            },
            None => FileStateStore::new(dir.join(format!("{}.json", file_name_for_key(key)))),
        }
    }
}

/// `state_file` with `-<stream>` before its extension.
pub fn stream_state_file(state_file: &Path, stream: &str) -> PathBuf {
    let stem = state_file.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match state_file.extension() {
        Some(extension) => format!("{stem}-{stream}.{}", extension.to_string_lossy()),
        None => format!("{stem}-{stream}"),
    };
    state_file.with_file_name(name)
}

/// The local adapters of one run: Graph with static credentials, the folder, the file lease.
struct LocalAdapters<'a> {
    graph: Sources<GraphClient<StaticCredentials>>,
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
            graph: Sources::graph(GraphClient::new(http, config.graph_settings(), credentials)),
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
            sources: &self.graph,
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

/// One stream's local run: its summary and what its Graph client asked.
pub struct LocalRun {
    pub stream: xdr_core::Stream,
    pub result: Result<(RunSummary, GraphStats), AppError>,
}

/// One sync of the configured tenant into `output_dir`, with state beside `state_file`, for every
/// served stream (or the one `event` names, as the Lambda takes it). Fails as a whole only when
/// nothing could start; each stream's failure is its own result.
pub async fn sync_streams_into_folder(
    config: &SyncConfig,
    client_id: &str,
    client_secret: &SecretString,
    folders: &Folders<'_>,
    event: &Value,
    run_timeout: Option<Duration>,
) -> Result<Vec<LocalRun>, AppError> {
    let adapters = LocalAdapters::new(config, client_id, client_secret, folders)?;
    let runs = handle_sync(config, adapters.ports(), event, &invocation(run_timeout)).await?;
    Ok(runs
        .into_iter()
        .map(|StreamRun { stream, result, .. }| {
            let stats = adapters.graph.get(stream).map(GraphClient::stats).unwrap_or_default();
            let result = result.and_then(|response| match response.outcome {
                SyncOutcome::Ran(summary) => Ok((*summary, stats)),
                SyncOutcome::LeaseHeld(lease) => Err(held(lease)),
            });
            LocalRun { stream, result }
        })
        .collect())
}

/// One sync of the first served stream (alerts, unless only other streams are served) into
/// `output_dir`, with state in `state_file`: the summary and what Graph was asked.
pub async fn sync_into_folder(
    config: &SyncConfig,
    client_id: &str,
    client_secret: &SecretString,
    folders: &Folders<'_>,
    run_timeout: Option<Duration>,
) -> Result<(RunSummary, GraphStats), AppError> {
    let Some(first) = config.streams.first() else {
        return Err(AppError::InvalidEvent("no stream to sync".into()));
    };
    let event = serde_json::json!({"stream": first.name});
    let runs =
        sync_streams_into_folder(config, client_id, client_secret, folders, &event, run_timeout).await?;
    runs.into_iter()
        .next()
        .map_or_else(|| Err(AppError::InvalidEvent("no stream to sync".into())), |run| run.result)
}

/// `xdr-sync` outside Lambda: one sync of every served stream, as configured by the environment.
pub async fn run_local(config: &SyncConfig, local: &LocalConfig) -> Result<Vec<LocalRun>, AppError> {
    let folders = Folders { output_dir: &local.output_dir, state_file: &local.state_file };
    let event = serde_json::json!({});
    sync_streams_into_folder(
        config,
        &local.client_id,
        &local.client_secret,
        &folders,
        &event,
        local.run_timeout,
    )
    .await
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
