//! The live sync's persisted state and its storage form.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::seen::SeenVersions;
use crate::split::InstantProgress;
use crate::timeutil::floor_to_tick;

/// What the live sync remembers between runs.
///
/// Invariant: every alert version with `floor <= lastUpdateDateTime < cursor - overlap` that will
/// ever be visible has been written, and `seen` holds every written version at or after
/// `cursor - overlap`, so the next window `[cursor - overlap, now)` writes each version once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncState {
    /// Nothing before this instant is ever read: `BACKFILL_START`, or the first run's start.
    pub floor: DateTime<Utc>,
    /// Reading is complete up to here (exclusive).
    pub cursor: DateTime<Utc>,
    /// Versions already written that a later window may read again.
    pub seen: SeenVersions,
    /// An object announced before its put. On recovery it counts as written if it exists.
    pub pending: Option<PendingObject>,
    /// A bounded window's end (backfill): reading stops here. `None`: the live sync, up to now.
    pub window_end: Option<DateTime<Utc>>,
    /// Alert versions and objects this state has stored in all, over every run.
    pub written_alerts: u64,
    pub written_objects: u64,
    /// Set when a run stopped early: the slice length the next run starts with (one that fitted
    /// in one answer, or half of one that did not), so a short invocation still completes a
    /// slice and moves the cursor.
    pub slice_hint: Option<TimeDelta>,
    /// An instant too dense to page through, whose split was under way when a run stopped: the
    /// next run reads only the parts still pending. Always at or after the cursor.
    pub instant: Option<InstantProgress>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingObject {
    pub key: String,
    pub entries: SeenVersions,
}

impl SyncState {
    pub fn first_run(floor: DateTime<Utc>) -> Self {
        let floor = floor_to_tick(floor);
        Self {
            floor,
            cursor: floor,
            seen: SeenVersions::default(),
            pending: None,
            window_end: None,
            written_alerts: 0,
            written_objects: 0,
            slice_hint: None,
            instant: None,
        }
    }

    /// A bounded window `[start, end)`, as a backfill reads it.
    pub fn bounded(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        Self { window_end: Some(floor_to_tick(end)), ..Self::first_run(start) }
    }

    /// How much of a bounded window is done, from 0 to 1 (`None` for the live sync).
    pub fn progress(&self) -> Option<f64> {
        let end = self.window_end?;
        let total = (end - self.floor).num_milliseconds().max(1) as f64;
        Some(((self.cursor - self.floor).num_milliseconds() as f64 / total).clamp(0.0, 1.0))
    }

    /// Where the next window starts: the overlap before the cursor, never before the floor.
    pub fn next_window_start(&self, overlap: TimeDelta) -> DateTime<Utc> {
        (self.cursor - overlap).max(self.floor)
    }
}

/// The stored form: JSON with the dedup sets as base64 of their compact binary encoding.
#[derive(Serialize, Deserialize)]
struct StoredSyncState {
    schema: u32,
    floor: DateTime<Utc>,
    cursor: DateTime<Utc>,
    seen: String,
    seen_count: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<StoredPending>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    slice_hint_nanos: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    window_end: Option<DateTime<Utc>>,
    #[serde(default)]
    written_alerts: u64,
    #[serde(default)]
    written_objects: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instant: Option<InstantProgress>,
}

#[derive(Serialize, Deserialize)]
struct StoredPending {
    key: String,
    seen: String,
}

#[derive(Debug, thiserror::Error)]
#[error("stored sync state is unreadable: {0}")]
pub struct StateDecodeError(String);

const SCHEMA: u32 = 1;

impl SyncState {
    pub fn to_json(&self) -> String {
        let stored = StoredSyncState {
            schema: SCHEMA,
            floor: self.floor,
            cursor: self.cursor,
            seen: BASE64.encode(self.seen.to_bytes()),
            seen_count: self.seen.len(),
            pending: self.pending.as_ref().map(|pending| StoredPending {
                key: pending.key.clone(),
                seen: BASE64.encode(pending.entries.to_bytes()),
            }),
            slice_hint_nanos: self.slice_hint.and_then(|hint| hint.num_nanoseconds()),
            window_end: self.window_end,
            written_alerts: self.written_alerts,
            written_objects: self.written_objects,
            instant: self.instant.clone(),
        };
        // Serialising plain strings, numbers and timestamps cannot fail.
        serde_json::to_string(&stored).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Self, StateDecodeError> {
        let stored: StoredSyncState =
            serde_json::from_str(text).map_err(|error| StateDecodeError(error.to_string()))?;
        if stored.schema != SCHEMA {
            return Err(StateDecodeError(format!("unknown schema {}", stored.schema)));
        }
        let decode = |text: &str| -> Result<SeenVersions, StateDecodeError> {
            let bytes = BASE64.decode(text).map_err(|error| StateDecodeError(error.to_string()))?;
            SeenVersions::from_bytes(&bytes).map_err(|error| StateDecodeError(error.to_string()))
        };
        Ok(Self {
            floor: stored.floor,
            cursor: stored.cursor,
            seen: decode(&stored.seen)?,
            pending: match stored.pending {
                Some(pending) => Some(PendingObject { entries: decode(&pending.seen)?, key: pending.key }),
                None => None,
            },
            slice_hint: stored.slice_hint_nanos.filter(|nanos| *nanos > 0).map(TimeDelta::nanoseconds),
            window_end: stored.window_end,
            written_alerts: stored.written_alerts,
            written_objects: stored.written_objects,
            instant: stored.instant,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seen::SeenEntry;
    use crate::timeutil::parse_instant;

    #[test]
    fn json_round_trip_keeps_everything() {
        let t = parse_instant("2026-11-28T06:00:00.1234567Z").unwrap();
        let mut state = SyncState::first_run(t);
        state.cursor = t + TimeDelta::minutes(20);
        state.seen.insert(SeenEntry::new("a", t));
        let mut pending = SeenVersions::default();
        pending.insert(SeenEntry::new("b", t));
        state.pending = Some(PendingObject { key: "p/dt=2026-11-28/x.gz".into(), entries: pending });
        state.window_end = Some(t + TimeDelta::days(1));
        state.written_alerts = 12;
        state.written_objects = 3;
        state.slice_hint = Some(TimeDelta::seconds(90));
        let mut plan = InstantProgress::new(t, t + TimeDelta::minutes(1));
        let check = plan.new_check_id();
        plan.pending.push(crate::split::PendingPart {
            narrowed: vec![crate::query::Constraint::Is {
                property: crate::query::Property::Severity,
                value: "high".into(),
            }],
            avoid: vec![crate::split::SplitBy::Created],
            check: Some(check),
        });
        plan.checks.push(crate::split::SplitCheck {
            id: check,
            whole: Vec::new(),
            whole_avoid: Vec::new(),
            by: crate::split::SplitBy::Values { property: crate::query::Property::Severity, with_null: true },
            expected: 900,
            open: 2,
            sum: 310,
        });
        state.instant = Some(plan);
        let back = SyncState::from_json(&state.to_json()).unwrap();
        assert_eq!(back, state);
        assert!(SyncState::from_json("{}").is_err());
    }

    #[test]
    fn a_bounded_window_reports_its_progress() {
        let start = parse_instant("2026-11-01T00:00:00Z").unwrap();
        let mut state = SyncState::bounded(start, start + TimeDelta::days(10));
        assert_eq!(state.progress(), Some(0.0));
        state.cursor = start + TimeDelta::days(4);
        assert_eq!(state.progress(), Some(0.4));
        assert_eq!(SyncState::first_run(start).progress(), None);
    }

    #[test]
    fn next_window_never_starts_before_the_floor() {
        let t = parse_instant("2026-11-28T06:00:00Z").unwrap();
        let mut state = SyncState::first_run(t);
        assert_eq!(state.next_window_start(TimeDelta::minutes(15)), t);
        state.cursor = t + TimeDelta::hours(1);
        assert_eq!(state.next_window_start(TimeDelta::minutes(15)), t + TimeDelta::minutes(45));
    }
}
