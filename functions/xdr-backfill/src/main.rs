//! `xdr-backfill`: writes the alert versions of a past window, resumably, without touching the
//! live sync's state.
//!
//! Under Lambda (`AWS_LAMBDA_RUNTIME_API` set) each invocation takes `{"start": ..., "end": ...}`
//! and continues where the previous one with the same event stopped. Outside Lambda,
//! `xdr-backfill --start ... [--end ...]` does the same into the local folder and state of
//! `xdr-sync`'s local mode.

use std::process::ExitCode;

use chrono::Utc;
use clap::Parser;
use serde_json::json;
use xdr_app::backfill::{BackfillRequest, run_backfill};
use xdr_app::entry::{run_main, under_lambda};
use xdr_app::lambda::{Function, serve};
use xdr_app::local::new_run_id;
use xdr_app::{AppError, LocalConfig, SyncConfig, logging};
use xdr_core::{RunRequest, SystemClock};
use xdr_graph::{ClientCredentials, GraphClient, StaticCredentials, http_client};
use xdr_local::{DirSink, FileStateStore};

#[derive(Parser)]
#[command(
    name = "xdr-backfill",
    version,
    about = "Backfill a past window of Defender XDR alerts; run again to resume."
)]
struct Cli {
    /// Start of the window (RFC 3339, inclusive).
    #[arg(long)]
    start: String,
    /// End of the window (RFC 3339, exclusive). Default: where the live sync's coverage begins, or now.
    #[arg(long)]
    end: Option<String>,
}

fn main() -> ExitCode {
    // Under Lambda no arguments are needed (nor read): the same binary serves invocations.
    let cli = if under_lambda() { None } else { Some(Cli::parse()) };
    run_main(async {
        match cli {
            None => serve(Function::Backfill).await,
            Some(cli) => local(cli).await,
        }
    })
}

async fn local(cli: Cli) -> Result<(), AppError> {
    logging::init("info");
    let env = |name: &str| std::env::var(name).ok();
    let config = SyncConfig::from_lookup(env, Utc::now())?;
    let local = LocalConfig::from_lookup(env)?;
    let request = BackfillRequest::from_event(&json!({"start": cli.start, "end": cli.end}), Utc::now())?;

    let http = http_client().map_err(|error| AppError::Http(error.to_string()))?;
    let credentials = StaticCredentials(ClientCredentials {
        client_id: local.client_id.clone(),
        client_secret: local.client_secret.clone(),
    });
    let graph = GraphClient::new(http, config.graph_settings(), credentials);
    let live = FileStateStore::new(&local.state_file);
    // Progress is kept per requested window, next to the live state but never in it.
    let state_dir = local.state_file.parent().map(|dir| dir.to_path_buf()).unwrap_or_default();
    let state_for = |key: &str| {
        let file_name: String =
            key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        FileStateStore::new(state_dir.join(format!("{file_name}.json")))
    };
    let sink = DirSink::new(&local.output_dir);
    let deadline = local
        .run_timeout
        .and_then(|timeout| chrono::TimeDelta::from_std(timeout).ok())
        .map(|timeout| Utc::now() + timeout);
    let run = RunRequest { run_id: new_run_id(), deadline };
    let outcome = run_backfill(&config, &request, &graph, &live, state_for, &sink, &SystemClock, run).await?;
    println!("{}", serde_json::to_string_pretty(&outcome.to_json()).unwrap_or_default());
    Ok(())
}
