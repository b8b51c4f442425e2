//! What a run reports.

use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RunSummary {
    pub run_id: String,
    /// False when more remains (deadline, throttling): the next run continues.
    pub complete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_because: Option<String>,
    pub window: WindowSummary,
    /// Reading is complete up to here (the saved cursor).
    pub covered_until: String,
    /// The same instant, typed (for the lag metric).
    #[serde(skip)]
    pub cursor: Option<DateTime<Utc>>,
    pub pages: u64,
    pub alerts_received: u64,
    pub alerts_written: u64,
    pub duplicates_skipped: u64,
    pub quarantined: u64,
    /// Time slices split because one answer did not hold all of them.
    pub slices_split: u64,
    /// Reads of one instant repeated because its pages came back with fewer versions than counted.
    pub slices_reread: u64,
    /// Instants too dense to page through, split by another filterable property.
    pub instants_split: u64,
    /// Instants no filter could split, held before (0 or 1: the run stops there).
    pub instants_held: u64,
    pub objects: Vec<ObjectSummary>,
    pub partitions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_last_update: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<String>,
    /// For a bounded window (backfill): the fraction of it done, 0 to 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    /// The configured start (`BACKFILL_START`, or a registered tenant's) differs from where this
    /// state began: what that means, since it applies to a first run only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_changed: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct WindowSummary {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ObjectSummary {
    pub key: String,
    pub records: usize,
    pub bytes: usize,
}
