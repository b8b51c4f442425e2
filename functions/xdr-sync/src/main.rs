//! `xdr-sync`: pulls new and updated Microsoft Defender XDR alerts (and incidents) from Graph.
//!
//! Under Lambda (`AWS_LAMBDA_RUNTIME_API` set) it serves scheduled invocations: credentials from
//! Secrets Manager, state in DynamoDB, objects in S3. Outside Lambda it runs locally: `xdr-sync`
//! syncs the tenant configured by the environment into a folder, and `xdr-sync state` shows or
//! resets the state. Local builds (the `demo` feature, on by default; the Lambda build leaves it
//! out) add `xdr-sync demo`, the whole job against a simulated tenant, and `xdr-sync simulate`,
//! which serves the simulated tenant for your own experiments.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;
use clap::{Parser, Subcommand};
use xdr_aws::{AwsClients, DynamoStateStore};
use xdr_config::defaults::DEFAULT_STATE_FILE;
use xdr_core::adopt::{Adopting, FirstFound};
#[cfg(feature = "demo")]
use xdr_demo::{DemoOptions, GraphMode, run_demo, simulate};
use xdr_local::FileStateStore;
use xdr_runtime::entry::{run_main, under_lambda};
use xdr_runtime::lambda::{Function, serve};
use xdr_runtime::local::{run_local, stream_state_file};
use xdr_runtime::report::{describe_folder, describe_run};
use xdr_runtime::state_admin;
use xdr_runtime::tenants_admin::{AddRequest, TenantsAdmin};
use xdr_runtime::{AppError, LocalConfig, SyncConfig, logging};

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
    #[cfg(feature = "demo")]
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
        /// The tenant's GUID, when TENANT_ID is a domain and the credentials should not be asked
        /// for it (DynamoDB only; the state's key is named by the GUID).
        #[arg(long)]
        tenant: Option<String>,
        /// Which stream's state: alerts or incidents.
        #[arg(long, default_value = "alerts")]
        stream: String,
        #[command(subcommand)]
        action: StateAction,
    },
    /// The tenant registry of a stack that syncs many tenants (TENANTS_TABLE): add, list,
    /// enable, disable, remove.
    Tenants {
        #[command(subcommand)]
        action: TenantsAction,
    },
    /// Serve a simulated tenant (Entra token endpoint + Graph alerts_v2 and incidents) until
    /// interrupted.
    #[cfg(feature = "demo")]
    Simulate {
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Alerts in the tenant's history (the last three days).
        #[arg(long, default_value_t = 1000)]
        alerts: u64,
        /// How the simulated Graph pages (see `demo --help`).
        #[arg(long, default_value = "strict")]
        graph_mode: GraphMode,
        /// Serve this many tenants behind one login and Graph host, all consented to one
        /// multi-tenant app (for a registry-driven stack).
        #[arg(long, default_value_t = 1)]
        tenants: u64,
    },
}

#[derive(Subcommand)]
enum TenantsAction {
    /// Register a tenant, once its credentials worked: a token from Entra for that tenant, and
    /// one record of each stream it will sync read from Graph.
    Add {
        /// The tenant's GUID.
        tenant: String,
        /// A name for people (dashboards, the stale-tenants list).
        #[arg(long)]
        name: Option<String>,
        /// A Secrets Manager secret with this tenant's own app credentials; without it, the
        /// stack's shared secret (CREDENTIALS_SECRET_ID: one multi-tenant app).
        #[arg(long)]
        secret: Option<String>,
        /// Streams to sync for it (`alerts,incidents`); without it, every stream the stack serves.
        #[arg(long)]
        streams: Option<String>,
        /// Where its first sync starts (RFC 3339); without it, the stack's BACKFILL_START or now.
        #[arg(long)]
        backfill_start: Option<String>,
        /// Register it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Every registered tenant.
    List,
    /// Sync the tenant again from the next fan-out.
    Enable { tenant: String },
    /// Stop syncing the tenant; its state and data stay.
    Disable { tenant: String },
    /// Remove the tenant's entry (its state and data stay); with --yes, do it.
    Remove {
        tenant: String,
        #[arg(long)]
        yes: bool,
    },
    /// Make the Athena tables (GLUE_DATABASE) list every registered tenant: `add` and `remove`
    /// do it themselves; run it after a stack update that changed a table.
    SyncTables,
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
    /// Move the cursor: back to read a span again, forward to skip one; say what that means,
    /// and with --yes, do it.
    Move {
        /// Where the next run reads from (RFC 3339), between where the state began and now.
        #[arg(long)]
        to: String,
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
            #[cfg(feature = "demo")]
            Some(Command::Demo { dir, throttle, graph_mode }) => {
                logging::init("warn");
                let output = run_demo(&DemoOptions { dir, throttle, graph_mode }).await?;
                print!("{output}");
                Ok(())
            }
            #[cfg(feature = "demo")]
            Some(Command::Simulate { port, alerts, graph_mode, tenants }) => {
                logging::init("info");
                simulate(port, alerts, graph_mode, tenants).await
            }
            Some(Command::State { tenant, stream, action }) => state(tenant, &stream, action).await,
            Some(Command::Tenants { action }) => tenants(action).await,
        }
    })
}

async fn sync() -> Result<(), AppError> {
    logging::init("info");
    let env = |name: &str| std::env::var(name).ok();
    let config = SyncConfig::from_lookup(env, Utc::now())?;
    let local = LocalConfig::from_lookup(env)?;
    let mut failed = None;
    for run in run_local(&config, &local).await? {
        let stream = run.stream;
        match run.result {
            Ok((summary, stats)) => {
                print!(
                    "{}",
                    describe_run(&format!("Sync of {}", stream.name), stream.noun, &summary, &stats)
                );
                let layout = config.for_stream(stream)?.engine.layout;
                print!("{}", describe_folder(&local.output_dir.join(layout.data_prefix()), stream.noun));
            }
            Err(error) => {
                println!("Sync of {}: failed ({}): {error}", stream.name, error.kind());
                failed = failed.or(Some(error));
            }
        }
    }
    // Every stream ran; the command fails if one of them did.
    failed.map_or(Ok(()), Err)
}

async fn tenants(action: TenantsAction) -> Result<(), AppError> {
    logging::init("warn");
    let admin = TenantsAdmin::from_env().await?;
    let (output, changed) = match action {
        TenantsAction::Add { tenant, name, secret, streams, backfill_start, disabled } => {
            let request = AddRequest { tenant, name, secret_id: secret, streams, backfill_start, disabled };
            (admin.add(&request, Utc::now()).await?, true)
        }
        TenantsAction::List => (admin.list().await?, false),
        TenantsAction::Enable { tenant } => (admin.set_enabled(&tenant, true).await?, false),
        TenantsAction::Disable { tenant } => (admin.set_enabled(&tenant, false).await?, false),
        TenantsAction::Remove { tenant, yes } => (admin.remove(&tenant, yes).await?, yes),
        TenantsAction::SyncTables => (admin.sync_tables(false).await?, false),
    };
    print!("{output}");
    // The registry changed: Athena's tables follow it (what changed is said first, whatever
    // happens to the tables).
    if changed {
        print!("{}", admin.sync_tables(true).await?);
    }
    Ok(())
}

async fn state(tenant: Option<String>, stream: &str, action: StateAction) -> Result<(), AppError> {
    logging::init("warn");
    let env = |name: &str| std::env::var(name).ok();
    let config = SyncConfig::from_lookup(env, Utc::now())?;
    let stream = xdr_core::stream::by_name(stream).ok_or_else(|| {
        AppError::InvalidEvent(format!(
            "--stream `{stream}` is not a stream; use one of {}",
            xdr_core::stream::names()
        ))
    })?;
    let config = config.for_stream(stream)?;
    match env("STATE_TABLE").filter(|table| !table.is_empty()) {
        Some(table) => {
            // Only the table is needed; the SDK finds region, credentials and endpoints as usual.
            let clients = AwsClients::from_env(false).await;
            let (config, guid) = if config.registry_driven {
                // A registry's tenant: named by --tenant, with its own settings from its entry.
                let guid = tenant.ok_or_else(|| {
                    AppError::InvalidArgument(
                        "--tenant <GUID> is required with TENANTS_TABLE: the state is per tenant".into(),
                    )
                })?;
                let guid = xdr_core::tenants::registry_key(&guid).map_err(AppError::InvalidArgument)?;
                let table = env("TENANTS_TABLE").unwrap_or_default();
                let registry = xdr_aws::DynamoRegistry::new(clients.dynamodb.clone(), table);
                let config = match registry.get(&guid).await? {
                    Some(entry) => config.for_tenant(&entry)?.for_stream(stream)?,
                    None => config,
                };
                (config, guid)
            } else {
                let guid = match tenant {
                    Some(guid) => guid,
                    None => state_admin::tenant_guid(&config, &clients, env).await?,
                };
                (config, guid)
            };
            let (keys, previous) = config.keys(&guid);
            let store = |key: String| DynamoStateStore::new(clients.dynamodb.clone(), table.clone(), key);
            let current = store(keys.sync());
            let earlier = || previous.iter().map(|keys| store(keys.sync())).collect::<Vec<_>>();
            match action {
                // Shown wherever it is (an earlier release's key until a run carries it over).
                StateAction::Show => {
                    let mut stores = vec![current];
                    stores.extend(earlier());
                    state_action(&FirstFound::new(stores), &config, action).await
                }
                StateAction::Reset { .. } | StateAction::Move { .. } => {
                    state_action(&Adopting::new(current, earlier()), &config, action).await
                }
            }
        }
        None => {
            let path = PathBuf::from(env("STATE_FILE").unwrap_or_else(|| DEFAULT_STATE_FILE.into()));
            let path =
                if stream == xdr_core::stream::ALERTS { path } else { stream_state_file(&path, stream.name) };
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
        StateAction::Move { to, yes } => {
            let to = xdr_core::timeutil::parse_instant(&to).ok_or_else(|| {
                AppError::InvalidArgument(format!(
                    "--to `{to}` is not an RFC 3339 time like 2026-11-01T00:00:00Z"
                ))
            })?;
            print!("{}", state_admin::move_cursor(store, to, Utc::now(), yes).await?)
        }
    }
    Ok(())
}
