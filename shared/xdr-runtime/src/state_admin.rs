//! `xdr-sync state show|reset|move`: what the live sync's state holds, starting over on
//! purpose, and moving its cursor.
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
use xdr_core::timeutil::{floor_to_tick, format_human};
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
        "pending_objects": state.pending.iter().map(|pending| pending.key.as_str()).collect::<Vec<_>>(),
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

/// What moving the live state's cursor to `to` would do, and with `confirmed`, does it: back, to
/// read a span again; forward, to skip one (a gap `xdr-backfill` can fill). Refused, changing
/// nothing, where it cannot be done safely.
pub async fn move_cursor(
    store: &impl StateStore,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
    confirmed: bool,
) -> Result<String, AppError> {
    let location = store.location();
    let refused = |problem: String| {
        Err(AppError::InvalidArgument(format!("{location}: {problem}; nothing was changed")))
    };
    let loaded = store.load().await.map_err(EngineError::State)?;
    let Some((mut state, revision)) = loaded.filter(|(state, _)| state.reset.is_none()) else {
        return refused("there is no live state to move (never run, or reset): the next run starts at the configured start".into());
    };
    let to = floor_to_tick(to);
    if state.window_end.is_some() {
        return refused("this is a backfill's state, not the live sync's".into());
    }
    if to > now {
        return refused(format!("--to {} is in the future", format_human(to)));
    }
    if to < state.floor {
        return refused(format!(
            "--to {} is before where this state began ({}), which the live sync never reads before: backfill that span with xdr-backfill (start {}, end {})",
            format_human(to),
            format_human(state.floor),
            format_human(to),
            format_human(state.floor)
        ));
    }
    if !state.pending.is_empty() {
        let keys: Vec<&str> = state.pending.iter().map(|pending| pending.key.as_str()).collect();
        return refused(format!(
            "an interrupted run left the object(s) {} pending; let the next run settle them first",
            keys.join(", ")
        ));
    }
    let (from, cursor) = (format_human(state.floor), format_human(state.cursor));
    let mut text = format!("{location} covers {from} to {cursor}.\n");
    if to == state.cursor {
        text.push_str("The cursor is already there; nothing to do.\n");
        return Ok(text);
    }
    let target = format_human(to);
    if to < state.cursor {
        text.push_str(&format!(
            "Moving the cursor back to {target}: the next run reads from there (less the overlap) again. Versions it still remembers (those inside the overlap) are skipped; older ones are written again (duplicates of what is in the output from {target} to {cursor}).\n"
        ));
    } else {
        text.push_str(&format!(
            "Moving the cursor forward to {target}: the live sync never reads {cursor} to {target} (a gap); `xdr-backfill` with start {cursor} and end {target} fills it.\n"
        ));
    }
    if !confirmed {
        text.push_str("Nothing was changed. Run again with --yes to move it.\n");
        return Ok(text);
    }
    state.cursor = to;
    // Progress inside a dense instant, and the slice size it suggested, belong to the old cursor.
    state.instant = None;
    state.slice_hint = None;
    store.save(&mut state, Some(&revision)).await.map_err(EngineError::State)?;
    text.push_str("Moved. The next run reads from the new cursor.\n");
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use xdr_core::memory::MemoryStore;
    use xdr_core::timeutil::parse_instant;

    fn at(text: &str) -> DateTime<Utc> {
        parse_instant(text).unwrap()
    }

    #[tokio::test]
    async fn the_cursor_moves_back_or_forward_only_when_confirmed_and_safe() {
        let store = MemoryStore::default();
        let now = at("2026-11-28T06:00:00Z");
        let error = move_cursor(&store, now, now, true).await.unwrap_err();
        assert!(error.to_string().contains("no live state"), "{error}");
        let mut state = SyncState::first_run(at("2026-11-20T00:00:00Z"));
        state.cursor = at("2026-11-28T05:50:00Z");
        store.save(&mut state, None).await.unwrap();

        let back = at("2026-11-27T00:00:00Z");
        let said = move_cursor(&store, back, now, false).await.unwrap();
        assert!(said.contains("back to 2026-11-27") && said.contains("Nothing was changed"), "{said}");
        assert_eq!(store.load().await.unwrap().unwrap().0.cursor, state.cursor);
        let moved = move_cursor(&store, back, now, true).await.unwrap();
        assert!(moved.contains("Moved."), "{moved}");
        assert_eq!(store.load().await.unwrap().unwrap().0.cursor, back);

        let forward = move_cursor(&store, now - TimeDelta::minutes(1), now, true).await.unwrap();
        assert!(forward.contains("a gap") && forward.contains("xdr-backfill"), "{forward}");
        for (to, problem) in [
            (now + TimeDelta::minutes(1), "in the future"),
            (at("2026-11-19T00:00:00Z"), "before where this state began"),
        ] {
            let error = move_cursor(&store, to, now, true).await.unwrap_err();
            assert!(
                error.to_string().contains(problem) && error.to_string().contains("nothing was changed"),
                "{error}"
            );
        }
        assert_eq!(store.load().await.unwrap().unwrap().0.cursor, now - TimeDelta::minutes(1));
    }
}
