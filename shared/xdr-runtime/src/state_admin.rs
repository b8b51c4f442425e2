//! `xdr-sync state show|reset`: what the live sync's state holds, and starting over on purpose.
//!
//! A run that finds no state for a tenant it has synced before refuses to start over (see
//! `xdr_core::marker`). Starting over is this command's job: it replaces the state with a reset
//! record (revision-checked, so a run in progress is not overwritten), and says what the next
//! run will read again or leave out.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use xdr_aws::{AwsClients, SecretsManagerCredentials};
use xdr_config::{LocalConfig, SyncConfig, is_guid};
use xdr_core::timeutil::format_human;
use xdr_core::{AlertSource, EngineError, StateStore, SyncState};
use xdr_graph::{ClientCredentials, GraphClient, StaticCredentials, http_client};

use crate::error::AppError;

/// The tenant's GUID, which names its state: `TENANT_ID` itself when it is one; else what Entra
/// names when the configured credentials sign in (the Secrets Manager secret of
/// `CREDENTIALS_SECRET_ID` when set, else `CLIENT_ID` and `CLIENT_SECRET`).
pub async fn tenant_guid(
    config: &SyncConfig,
    clients: &AwsClients,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, AppError> {
    if is_guid(&config.tenant_id) {
        return Ok(config.tenant_id.to_ascii_lowercase());
    }
    let http = http_client().map_err(AppError::Http)?;
    let identity = match lookup("CREDENTIALS_SECRET_ID").filter(|id| !id.trim().is_empty()) {
        Some(secret_id) => {
            let credentials =
                SecretsManagerCredentials::new(clients.secrets.clone(), secret_id, Duration::ZERO);
            GraphClient::new(http, config.graph_settings(), credentials).authenticate(None).await
        }
        None => {
            let local = LocalConfig::from_lookup(lookup)?;
            let credentials = StaticCredentials(ClientCredentials {
                client_id: local.client_id,
                client_secret: local.client_secret,
            });
            GraphClient::new(http, config.graph_settings(), credentials).authenticate(None).await
        }
    };
    Ok(identity.map_err(EngineError::Source)?.tenant)
}

/// The state as an operator reads it.
pub async fn show(store: &impl StateStore) -> Result<Value, AppError> {
    let loaded = store.load().await.map_err(EngineError::State)?;
    let Some((state, revision)) = loaded else {
        return Ok(json!({"state": store.location(), "exists": false}));
    };
    Ok(json!({
        "state": store.location(),
        "exists": true,
        "revision": revision.0,
        "reset": state.reset.map(format_human),
        "floor": format_human(state.floor),
        "covered_until": format_human(state.cursor),
        "remembered_versions": state.seen.len(),
        "dedup_chunks": state.seen_chunks.len(),
        "pending_object": state.pending.as_ref().map(|pending| pending.key.clone()),
        "instant_in_progress": state.instant.as_ref().map(|plan| format_human(plan.at)),
        "written_alerts": state.written_alerts,
        "written_objects": state.written_objects,
    }))
}

/// What a reset would do, and with `confirmed`, does it.
pub async fn reset(
    store: &impl StateStore,
    config: &SyncConfig,
    now: DateTime<Utc>,
    confirmed: bool,
) -> Result<String, AppError> {
    let loaded = store.load().await.map_err(EngineError::State)?;
    let location = store.location();
    let mut text = match &loaded {
        Some((state, _)) if state.reset.is_none() => format!(
            "{location} covers {} to {} ({} alert versions in {} objects written so far).\n",
            format_human(state.floor),
            format_human(state.cursor),
            state.written_alerts,
            state.written_objects
        ),
        Some(_) => format!("{location} is already reset; the next run starts over.\n"),
        None => format!("{location} does not exist (lost, or never written under this TENANT_ID).\n"),
    };
    let covered = loaded.as_ref().filter(|(state, _)| state.reset.is_none()).map(|(state, _)| state.cursor);
    text.push_str(&consequences(config, covered, now));
    if !confirmed {
        text.push_str("Nothing was changed. Run again with --yes to reset.\n");
        return Ok(text);
    }
    let mut record = SyncState::reset_at(now);
    let expected = loaded.map(|(_, revision)| revision);
    store.save(&mut record, expected.as_ref()).await.map_err(EngineError::State)?;
    text.push_str("Reset. The next run starts over.\n");
    Ok(text)
}

/// What the next run reads after a reset.
fn consequences(config: &SyncConfig, covered: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match (config.engine.backfill_start, covered) {
        (Some(start), Some(covered)) if start < covered => format!(
            "After a reset the next run starts at BACKFILL_START ({}): the versions from there to {} that are already in the output are written again (duplicates). To avoid them, set BACKFILL_START to {} first.\n",
            format_human(start),
            format_human(covered),
            format_human(covered)
        ),
        (Some(start), _) => {
            format!("After a reset the next run starts at BACKFILL_START ({}).\n", format_human(start))
        }
        (None, Some(covered)) => format!(
            "After a reset the next run starts when it runs and reads nothing before it: versions from {} to then are not read unless you backfill them (xdr-backfill with start {}), or set BACKFILL_START to {} first.\n",
            format_human(covered),
            format_human(covered),
            format_human(covered)
        ),
        (None, None) => format!(
            "After a reset the next run starts when it runs (about {}) and reads nothing before it; set BACKFILL_START to start earlier.\n",
            format_human(now)
        ),
    }
}
