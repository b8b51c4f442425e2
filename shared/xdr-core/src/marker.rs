//! The tenant marker: a small object beside the output that says which state the live sync of a
//! tenant (by its GUID) keeps. Without it, a state item that disappears, or a `TENANT_ID` that
//! changes from the domain to the GUID (same tenant, new state key), would make the next run
//! start over silently: everything since `BACKFILL_START` written again, or a gap.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The marker's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantMarker {
    /// The tenant's GUID, from the token.
    pub tenant: String,
    /// The state's location (`StateStore::location`).
    pub state: String,
    /// The state's lineage (`SyncState::lineage`): a restored copy elsewhere has the same one.
    #[serde(default)]
    pub lineage: Option<String>,
    /// Where that state's reading began.
    pub floor: DateTime<Utc>,
    /// When the marker was written.
    pub written: DateTime<Utc>,
}

impl TenantMarker {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// Why a run refuses to start over.
pub fn refusal(marker: &TenantMarker, location: &str, reset_hint: &str) -> String {
    if marker.state == location {
        format!(
            "the sync state {location} is missing, but tenant {} was synced with it (reading from {}): starting over would write everything since BACKFILL_START again, or leave a gap. Restore the state (DynamoDB point-in-time recovery, or the state file), or start over on purpose with `{reset_hint}` (see the README, \"Starting over\")",
            marker.tenant, marker.floor
        )
    } else {
        format!(
            "tenant {} is synced with the state {}, not {location} (TENANT_ID changed from the domain to the GUID, or the other way?): a new state would read everything again. Set TENANT_ID back to what it was, or start this state over on purpose with `{reset_hint}`",
            marker.tenant, marker.state
        )
    }
}
