//! `xdr-sync`: pulls new and updated Microsoft Defender XDR alerts from Graph.
//!
//! Under Lambda (`AWS_LAMBDA_RUNTIME_API` set) it serves scheduled invocations: credentials from
//! Secrets Manager, state in DynamoDB, objects in S3. Outside Lambda it runs locally: `xdr-sync` syncs the tenant configured by the environment
//! into a folder, `xdr-sync demo` shows the whole job against a simulated tenant, and
//! `xdr-sync simulate` serves the simulated tenant for your own experiments.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{TimeDelta, Utc};
use clap::{Parser, Subcommand};
use xdr_app::config::DEFAULT_STATE_FILE;
use xdr_app::demo::{DemoOptions, run_demo};
use xdr_app::entry::{run_main, under_lambda};
use xdr_app::lambda::{Function, live_state_key, serve};
use xdr_app::local::run_local;
use xdr_app::report::{describe_folder, describe_run};
use xdr_app::state_admin;
use xdr_app::{AppError, LocalConfig, SyncConfig, logging};
use xdr_aws::{AwsClients, DynamoStateStore};
use xdr_local::FileStateStore;
use xdr_simulator::{GraphMode, SimOptions, SimTenant, Simulator};

#[derive(Parser)]
#[command(
    name = "xdr-sync",
    version,
    about = "Sync Microsoft Defender XDR alerts from Graph into a data lake (S3 under Lambda, a folder locally)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// One local sync as configured by the environment (the default; see the README's table).
    Sync,
    /// The whole job with nothing configured: a simulated tenant synced into a folder, twice.
    Demo {
        /// Where the demo keeps the simulated tenant, the sync state and the output.
        #[arg(long, default_value = "xdr-demo")]
        dir: PathBuf,
        /// Let Graph throttle a few requests to show the backoff.
        #[arg(long)]
        throttle: bool,
        /// How the simulated Graph pages: strict (no nextLink, $skip <= 500, $top <= 1000,
        /// scrambled order), skip-links, skiptoken, no-count, clamped, sql-nulls or lenient.
        #[arg(long, default_value = "strict")]
        graph_mode: GraphMode,
    },
    /// Show the live sync's state, or reset it to start over (DynamoDB when STATE_TABLE is set,
    /// else the local STATE_FILE).
    State {
        #[command(subcommand)]
        action: StateAction,
    },
    /// Serve a simulated tenant (Entra token endpoint + Graph alerts_v2) until interrupted.
    Simulate {
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Alerts in the tenant's history (the last three days).
        #[arg(long, default_value_t = 1000)]
        alerts: u64,
        /// How the simulated Graph pages (see `demo --help`).
        #[arg(long, default_value = "strict")]
        graph_mode: GraphMode,
    },
}

#[derive(Subcommand)]
enum StateAction {
    /// What the state holds: where reading began, how far it is covered, what is remembered.
    Show,
    /// Start over: say what the next run will read again or leave out; with --yes, do it.
    Reset {
        #[arg(long)]
        yes: bool,
    },
}

fn main() -> ExitCode {
    // Under Lambda no arguments are needed (nor read): the same binary serves invocations.
    let command = if under_lambda() { None } else { Some(Cli::parse().command.unwrap_or(Command::Sync)) };
    run_main(async {
        match command {
            None => serve(Function::Sync).await,
            Some(Command::Sync) => sync().await,
            Some(Command::Demo { dir, throttle, graph_mode }) => {
                logging::init("warn");
                let output = run_demo(&DemoOptions { dir, throttle, graph_mode }).await?;
                print!("{output}");
                Ok(())
            }
            Some(Command::Simulate { port, alerts, graph_mode }) => simulate(port, alerts, graph_mode).await,
            Some(Command::State { action }) => state(action).await,
        }
    })
}

async fn sync() -> Result<(), AppError> {
    logging::init("info");
    let env = |name: &str| std::env::var(name).ok();
    let config = SyncConfig::from_lookup(env, Utc::now())?;
    let local = LocalConfig::from_lookup(env)?;
    let (summary, stats) = run_local(&config, &local).await?;
    print!("{}", describe_run("Sync", &summary, &stats));
    print!("{}", describe_folder(&local.output_dir.join(config.engine.layout.data_prefix())));
    Ok(())
}

async fn state(action: StateAction) -> Result<(), AppError> {
    logging::init("warn");
    let env = |name: &str| std::env::var(name).ok();
    let config = SyncConfig::from_lookup(env, Utc::now())?;
    match env("STATE_TABLE").filter(|table| !table.is_empty()) {
        Some(table) => {
            // Only the table is needed; the SDK finds region, credentials and endpoints as usual.
            let clients = AwsClients::from_env(false).await;
            let store = DynamoStateStore::new(clients.dynamodb, table, live_state_key(&config.tenant_id));
            state_action(&store, &config, action).await
        }
        None => {
            let path = env("STATE_FILE").unwrap_or_else(|| DEFAULT_STATE_FILE.into());
            state_action(&FileStateStore::new(path), &config, action).await
        }
    }
}

async fn state_action(
    store: &impl xdr_core::StateStore,
    config: &SyncConfig,
    action: StateAction,
) -> Result<(), AppError> {
    match action {
        StateAction::Show => {
            let shown = state_admin::show(store).await?;
            println!("{}", serde_json::to_string_pretty(&shown).unwrap_or_default());
        }
        StateAction::Reset { yes } => print!("{}", state_admin::reset(store, config, Utc::now(), yes).await?),
    }
    Ok(())
}

async fn simulate(port: u16, alerts: u64, graph_mode: GraphMode) -> Result<(), AppError> {
    logging::init("info");
    let tenant = SimTenant::with_history(seed_from_clock(), Utc::now(), TimeDelta::days(3), alerts);
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let simulator = Simulator::start_on(tenant, SimOptions::mode(graph_mode), address)
        .await
        .map_err(|error| AppError::Io { action: format!("listening on {address}"), error })?;
    let base = simulator.base_url();
    println!(
        "Simulated tenant listening on {base} (Graph mode: {graph_mode}). To sync it from another shell:\n"
    );
    println!(
        "  TENANT_ID={} CLIENT_ID={} CLIENT_SECRET='{}' \\",
        simulator.tenant_id(),
        simulator.client_id(),
        simulator.client_secret()
    );
    println!(
        "  LOGIN_BASE_URL={base} GRAPH_BASE_URL={base} BACKFILL_START={} \\",
        (Utc::now() - TimeDelta::days(3)).format("%Y-%m-%dT%H:%M:%SZ")
    );
    println!("  xdr-sync\n\nPress Ctrl-C to stop.");
    tokio::signal::ctrl_c()
        .await
        .map_err(|error| AppError::Io { action: "waiting for Ctrl-C".into(), error })?;
    simulator.stop().await;
    Ok(())
}

fn seed_from_clock() -> u64 {
    Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64
}
