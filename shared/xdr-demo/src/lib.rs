//! `xdr-sync demo`: the whole job with nothing configured. A simulated tenant (kept in the demo
//! folder, so it lives on between runs) is served over HTTP on loopback; the real Graph client,
//! handler and engine sync both streams (alerts and the incidents that group them) into a folder,
//! once as it is and once more after the tenant has moved on. And `xdr-sync simulate`: the simulated tenant alone, for your own experiments.
//!
//! Local builds only: the simulated tenant brings an HTTP server (axum) that the Lambda build
//! leaves out (the `demo` feature of `xdr-sync`).

use std::path::{Path, PathBuf};

use chrono::{TimeDelta, Utc};
use secrecy::SecretString;
use xdr_config::SyncConfig;
use xdr_runtime::AppError;
use xdr_runtime::local::{Folders, LocalRun, sync_streams_into_folder};
use xdr_runtime::report::{describe_folder, describe_run};
pub use xdr_simulator::GraphMode;
use xdr_simulator::{Activity, Fault, SimOptions, SimTenant, Simulator};

pub struct DemoOptions {
    pub dir: PathBuf,
    /// Make Graph throttle a few requests (429 with Retry-After) to show the backoff.
    pub throttle: bool,
    /// How the simulated Graph pages (strict by default).
    pub graph_mode: GraphMode,
}

const HISTORY_DAYS: i64 = 3;
const HISTORY_ALERTS: u64 = 800;

fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> AppError {
    let action = action.into();
    move |error| AppError::Io { action, error }
}

fn load_tenant(path: &Path) -> Result<Option<SimTenant>, AppError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|error| AppError::DemoTenant {
            path: path.display().to_string(),
            problem: error.to_string(),
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io(format!("reading {}", path.display()))(error)),
    }
}

fn save_tenant(path: &Path, tenant: &SimTenant) -> Result<(), AppError> {
    let text = serde_json::to_string(tenant).map_err(|error| AppError::DemoTenant {
        path: path.display().to_string(),
        problem: error.to_string(),
    })?;
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, text).map_err(io(format!("writing {}", partial.display())))?;
    std::fs::rename(&partial, path).map_err(io(format!("replacing {}", path.display())))
}

/// Runs the demo and returns what it printed.
pub async fn run_demo(options: &DemoOptions) -> Result<String, AppError> {
    let mut out = String::new();
    let dir = &options.dir;
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let tenant_file = dir.join("tenant.json");
    let output_dir = dir.join("output");
    let state_file = dir.join("state").join("sync-state.json");
    let now = Utc::now();

    let (tenant, first_time) = match load_tenant(&tenant_file)? {
        Some(mut tenant) => {
            let produced = tenant.catch_up(now);
            out.push_str(&format!(
                "Simulated tenant {} is back: meanwhile it raised {} new alerts and {} updates.\n",
                tenant.tenant_id, produced.new_alerts, produced.updates
            ));
            (tenant, false)
        }
        None => {
            let tenant = SimTenant::with_history(
                fastrand::u64(..),
                now,
                TimeDelta::days(HISTORY_DAYS),
                HISTORY_ALERTS,
            );
            out.push_str(&format!(
                "Created simulated tenant {} with {HISTORY_ALERTS} alerts over the last {HISTORY_DAYS} days ({} alert versions, every service source, late arrivals, shared timestamps) in {} incidents ({} incident versions).\n",
                tenant.tenant_id,
                tenant.versions.len(),
                tenant.incidents().members.len(),
                tenant.incidents().versions.len(),
            ));
            (tenant, true)
        }
    };
    // The tenant's history starts here: the first sync backfills from it.
    let backfill_start =
        tenant.versions.iter().map(|v| v.last_update).min().unwrap_or(now) - TimeDelta::seconds(1);
    save_tenant(&tenant_file, &tenant)?;

    let simulator = Simulator::start(tenant, SimOptions::mode(options.graph_mode))
        .await
        .map_err(io("starting the simulated tenant on 127.0.0.1"))?;
    out.push_str(&format!(
        "Simulated Entra ID + Graph listening on {} (Graph mode: {})\n\n",
        simulator.base_url(),
        options.graph_mode
    ));
    if options.throttle {
        simulator.push_fault(Fault::Status { status: 429, retry_after: Some(1) });
        simulator.push_fault(Fault::Status { status: 503, retry_after: None });
    }

    let base = simulator.base_url().to_owned();
    let tenant_id = simulator.tenant_id();
    let config = SyncConfig::from_lookup(
        |name| match name {
            "TENANT_ID" => Some(tenant_id.clone()),
            "LOGIN_BASE_URL" | "GRAPH_BASE_URL" => Some(base.clone()),
            "BACKFILL_START" => Some(backfill_start.to_rfc3339()),
            // Small pages so the demo shows paging across many pages.
            "PAGE_SIZE" => Some("100".into()),
            "STREAMS" => Some("alerts,incidents".into()),
            _ => None,
        },
        Utc::now(),
    )?;
    let client_id = simulator.client_id();
    let secret = SecretString::from(simulator.client_secret());
    let folders = Folders { output_dir: &output_dir, state_file: &state_file };

    let result = async {
        let title = if first_time { "Sync 1 (initial, from the start of the tenant's history)" } else { "Sync 1 (incremental)" };
        let runs = sync_streams_into_folder(&config, &client_id, &secret, &folders, &serde_json::json!({}), None).await?;
        describe_runs(&mut out, title, runs)?;

        let wanted = Activity { new_alerts: 6, updates: 9, late: 1, bulk: 4 };
        let activity = simulator.with_tenant(|tenant| tenant.produce(Utc::now(), wanted));
        out.push_str(&format!(
            "\nMeanwhile the tenant raised {} alerts ({} of them visible 9 minutes late) and updated {} ({} at one shared instant).\n",
            activity.new_alerts, activity.late, activity.updates, activity.bulk
        ));
        let runs = sync_streams_into_folder(&config, &client_id, &secret, &folders, &serde_json::json!({}), None).await?;
        describe_runs(&mut out, "Sync 2 (incremental)", runs)?;
        Ok::<(), AppError>(())
    }
    .await;
    let tenant = simulator.tenant();
    simulator.stop().await;
    save_tenant(&tenant_file, &tenant)?;
    result?;

    out.push('\n');
    for stream in &config.streams {
        let layout = config.for_stream(*stream)?.engine.layout;
        out.push_str(&describe_folder(&output_dir.join(layout.data_prefix()), stream.noun));
    }
    out.push_str(&format!(
        "State: {}\nTenant: {}\nRun the same command again: the tenant keeps producing alerts, and the sync writes only what changed.\n",
        state_file.display(),
        tenant_file.display()
    ));
    Ok(out)
}

/// Adds each stream's run to `out`; the first failure fails the demo.
fn describe_runs(out: &mut String, title: &str, runs: Vec<LocalRun>) -> Result<(), AppError> {
    for run in runs {
        let (summary, stats) = run.result?;
        out.push_str(&describe_run(
            &format!("{title}, {}", run.stream.name),
            run.stream.noun,
            &summary,
            &stats,
        ));
    }
    Ok(())
}

/// `xdr-sync simulate`: serves a simulated tenant (Entra token endpoint + Graph alerts_v2 and
/// incidents) on
/// loopback until interrupted, and says how to sync it.
pub async fn simulate(port: u16, alerts: u64, graph_mode: GraphMode, tenants: u64) -> Result<(), AppError> {
    let seed = Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64;
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let start = (Utc::now() - TimeDelta::days(3)).format("%Y-%m-%dT%H:%M:%SZ");
    if tenants > 1 {
        return simulate_many(address, seed, alerts, graph_mode, tenants).await;
    }
    let tenant = SimTenant::with_history(seed, Utc::now(), TimeDelta::days(3), alerts);
    let simulator = Simulator::start_on(tenant, SimOptions::mode(graph_mode), address)
        .await
        .map_err(io(format!("listening on {address}")))?;
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
        "  LOGIN_BASE_URL={base} GRAPH_BASE_URL={base} STREAMS=alerts,incidents BACKFILL_START={start} \\"
    );
    println!("  xdr-sync\n\nPress Ctrl-C to stop.");
    tokio::signal::ctrl_c().await.map_err(io("waiting for Ctrl-C"))?;
    simulator.stop().await;
    Ok(())
}

/// Many simulated tenants behind one login and Graph host, all consented to one multi-tenant
/// app (the MSSP's): what a registry-driven stack syncs.
async fn simulate_many(
    address: std::net::SocketAddr,
    seed: u64,
    alerts: u64,
    graph_mode: GraphMode,
    tenants: u64,
) -> Result<(), AppError> {
    let app = SimTenant::new(seed, Utc::now());
    let fleet: Vec<(SimTenant, SimOptions)> = (0..tenants)
        .map(|n| {
            let mut tenant = SimTenant::with_history(seed ^ (n + 1), Utc::now(), TimeDelta::days(3), alerts);
            tenant.client_id = app.client_id.clone();
            tenant.client_secret = app.client_secret.clone();
            (tenant, SimOptions::mode(graph_mode))
        })
        .collect();
    let fleet = xdr_simulator::Fleet::start_on(fleet, address)
        .await
        .map_err(io(format!("listening on {address}")))?;
    let base = fleet.base_url();
    println!(
        "{tenants} simulated tenants listening on {base} (Graph mode: {graph_mode}), one multi-tenant app:"
    );
    println!("  client_id {}  client_secret '{}'\n", app.client_id, app.client_secret);
    for tenant in fleet.tenants() {
        println!("  {}", tenant.tenant_id());
    }
    println!(
        "\nStore the app in the stack's secret, then register each tenant with\n  LOGIN_BASE_URL={base} GRAPH_BASE_URL={base} xdr-sync tenants add <tenant id>\n\nPress Ctrl-C to stop."
    );
    tokio::signal::ctrl_c().await.map_err(io("waiting for Ctrl-C"))?;
    fleet.stop().await;
    Ok(())
}
