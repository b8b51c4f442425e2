//! `xdr-backfill`: writes the alert (or incident) versions of a past window, resumably, without
//! touching the live sync's state.
//!
//! Under Lambda (`AWS_LAMBDA_RUNTIME_API` set) each invocation takes `{"start": ..., "end": ...,
//! "stream": ...}` and continues where the previous one with the same event stopped. Outside
//! Lambda, `xdr-backfill --start ... [--end ...] [--stream incidents]` does the same into the
//! local folder and state of `xdr-sync`'s local mode.

use std::process::ExitCode;

use chrono::Utc;
use clap::Parser;
use serde_json::json;
use xdr_runtime::entry::{run_main, under_lambda};
use xdr_runtime::lambda::{Function, serve};
use xdr_runtime::local::backfill_local;
use xdr_runtime::{AppError, LocalConfig, SyncConfig, logging};

#[derive(Parser)]
#[command(
    name = "xdr-backfill",
    version,
    about = "Backfill a past window of Defender XDR alerts or incidents; run again to resume."
)]
struct Cli {
    /// Start of the window (RFC 3339, inclusive).
    #[arg(long)]
    start: String,
    /// End of the window (RFC 3339, exclusive). Default: where the live sync's coverage begins, or now.
    #[arg(long)]
    end: Option<String>,
    /// What to backfill: alerts or incidents (it must be in STREAMS).
    #[arg(long, default_value = "alerts")]
    stream: String,
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
    let response =
        backfill_local(&config, &local, &json!({"start": cli.start, "end": cli.end, "stream": cli.stream}))
            .await?;
    println!("{}", serde_json::to_string_pretty(&response).unwrap_or_default());
    Ok(())
}
