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
    /// Objects announced before their puts (several when they closed together). On recovery
    /// each counts as written if it exists.
    pub pending: Vec<PendingObject>,
    /// A bounded window's end (backfill): reading stops here. `None`: the live sync, up to now.
    pub window_end: Option<DateTime<Utc>>,
    /// Alert versions and objects this state has stored in all, over every run.
    pub written_alerts: u64,
    pub written_objects: u64,
    /// A backfill manifest's progress through its window, in billionths: what it reported
    /// last, so the next invocation, short of time to read every ledger, never reports less.
    pub progress_ppb: u64,
    /// Set when a run stopped early: the slice length the next run starts with (one that fitted
    /// in one answer, or half of one that did not), so a short invocation still completes a
    /// slice and moves the cursor.
    pub slice_hint: Option<TimeDelta>,
    /// An instant too dense to page through, whose split was under way when a run stopped: the
    /// next run reads only the parts still pending. Always at or after the cursor.
    pub instant: Option<InstantProgress>,
    /// Where the spilled part of `seen` is stored, for stores that keep it apart (see
    /// `ChunkedSave`). Empty for stores that keep everything in one place.
    pub seen_chunks: Vec<SeenChunk>,
    /// Names this state for its whole life (set by its first run): a copy restored elsewhere is
    /// still the same state; a state started over is not. `None` for states from before.
    pub lineage: Option<String>,
    /// Set by an operator's reset (`xdr-sync state reset`): the next run starts over as a first
    /// run would, and says so. Nothing else in a reset state means anything.
    pub reset: Option<DateTime<Utc>>,
    /// With chunks: the first minute the memory held at the last save. A chunk may reach back
    /// before it (pruning drops whole chunks only); its older entries are not read back.
    seen_from_minute: Option<i64>,
}

/// One immutable piece of the dedup memory, stored apart from the state's head item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenChunk {
    /// The store's name for it (unique: never reused, never rewritten).
    pub id: String,
    /// The newest minute it holds: once the memory is pruned past it, the chunk is dropped.
    pub last_minute: i64,
    pub entries: usize,
}

/// Limits for the head-and-chunks form of the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// At most this many unspilled entries stay in the head; more are spilled into chunks.
    pub head_entries: usize,
    /// Encoded bytes per chunk.
    pub chunk_bytes: usize,
}

impl ChunkLimits {
    /// For DynamoDB (400 KB per item): the head keeps up to 12,000 entries (~128 KB of base64)
    /// beside an announced object (6,000 entries, ~64 KB) and the rest of the state; a chunk is a
    /// binary attribute of at most 350,000 bytes.
    pub const DYNAMODB: ChunkLimits = ChunkLimits { head_entries: 12_000, chunk_bytes: 350_000 };
}

/// One save in the head-and-chunks form: put the new chunks, then the head (conditionally), then
/// delete the dropped chunks. Chunks are immutable and named once, so a save that fails after
/// putting chunks leaves only unreferenced chunks behind, never a head that points at something
/// else; and the head never references a chunk that was not stored first.
#[derive(Debug, Clone)]
pub struct ChunkedSave {
    /// The head's stored form (JSON).
    pub head: String,
    /// Chunks to store before the head: (id, encoded entries).
    pub new_chunks: Vec<(String, Vec<u8>)>,
    /// Chunks the head no longer references (all their minutes are pruned): delete after it.
    pub dropped_chunks: Vec<String>,
    directory: Vec<SeenChunk>,
    spilled: bool,
    seen_from_minute: Option<i64>,
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
            pending: Vec::new(),
            window_end: None,
            written_alerts: 0,
            written_objects: 0,
            progress_ppb: 0,
            slice_hint: None,
            instant: None,
            seen_chunks: Vec::new(),
            seen_from_minute: None,
            lineage: None,
            reset: None,
        }
    }

    /// What a reset leaves: a state that tells the next run to start over.
    pub fn reset_at(at: DateTime<Utc>) -> Self {
        Self { reset: Some(at), ..Self::first_run(at) }
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
    pending: Option<StoredPendingObjects>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    slice_hint_nanos: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    window_end: Option<DateTime<Utc>>,
    #[serde(default)]
    written_alerts: u64,
    #[serde(default)]
    written_objects: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    progress_ppb: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instant: Option<InstantProgress>,
    /// The head-and-chunks form: `seen` holds only the unspilled entries, these the rest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    seen_chunks: Vec<SeenChunk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seen_from_minute: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reset: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lineage: Option<String>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

#[derive(Serialize, Deserialize)]
struct StoredPending {
    key: String,
    seen: String,
}

/// One pending object is stored as it always was; several as a list, which a release that
/// knows only one refuses as unreadable rather than settling the first and forgetting the rest.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum StoredPendingObjects {
    One(StoredPending),
    Many(Vec<StoredPending>),
}

#[derive(Debug, thiserror::Error)]
#[error("stored sync state is unreadable: {0}")]
pub struct StateDecodeError(String);

const SCHEMA: u32 = 1;

impl SyncState {
    /// The whole state in one JSON document (a store without a size limit).
    pub fn to_json(&self) -> String {
        self.stored_json(self.seen.to_bytes(), self.seen.len(), Vec::new(), None)
    }

    fn stored_json(
        &self,
        seen: Vec<u8>,
        seen_count: usize,
        seen_chunks: Vec<SeenChunk>,
        seen_from_minute: Option<i64>,
    ) -> String {
        let stored = StoredSyncState {
            schema: SCHEMA,
            floor: self.floor,
            cursor: self.cursor,
            seen: BASE64.encode(seen),
            seen_count,
            pending: {
                let mut stored: Vec<StoredPending> = self
                    .pending
                    .iter()
                    .map(|pending| StoredPending {
                        key: pending.key.clone(),
                        seen: BASE64.encode(pending.entries.to_bytes()),
                    })
                    .collect();
                match stored.len() {
                    0 => None,
                    1 => stored.pop().map(StoredPendingObjects::One),
                    _ => Some(StoredPendingObjects::Many(stored)),
                }
            },
            slice_hint_nanos: self.slice_hint.and_then(|hint| hint.num_nanoseconds()),
            window_end: self.window_end,
            written_alerts: self.written_alerts,
            written_objects: self.written_objects,
            progress_ppb: self.progress_ppb,
            instant: self.instant.clone(),
            seen_chunks,
            seen_from_minute,
            reset: self.reset,
            lineage: self.lineage.clone(),
        };
        // Serialising plain strings, numbers and timestamps cannot fail.
        serde_json::to_string(&stored).unwrap_or_default()
    }

    /// Plans a save in the head-and-chunks form: the head keeps the entries spilled into no
    /// chunk yet while they are few; past `limits.head_entries` they become new chunks. Chunks
    /// whose every minute the memory has pruned are dropped. `new_id` names each new chunk.
    pub fn plan_chunked_save(&self, limits: ChunkLimits, mut new_id: impl FnMut() -> String) -> ChunkedSave {
        // Pruning is by whole minutes, so a chunk is dead exactly when its newest minute is
        // older than the oldest one still remembered.
        let first_minute = self.seen.first_minute();
        // Entries of kept chunks older than this are not read back.
        let from_minute = first_minute;
        let (mut directory, dropped): (Vec<SeenChunk>, Vec<SeenChunk>) = self
            .seen_chunks
            .iter()
            .cloned()
            .partition(|chunk| first_minute.is_some_and(|first| chunk.last_minute >= first));
        let unspilled = self.seen.unspilled();
        let spilled = unspilled.len() > limits.head_entries;
        let mut new_chunks = Vec::new();
        let head = if spilled {
            for piece in SeenVersions::encode_in_pieces(unspilled, limits.chunk_bytes) {
                let id = new_id();
                directory.push(SeenChunk {
                    id: id.clone(),
                    last_minute: piece.last_minute,
                    entries: piece.entries,
                });
                new_chunks.push((id, piece.bytes));
            }
            self.stored_json(SeenVersions::default().to_bytes(), 0, directory.clone(), from_minute)
        } else {
            self.stored_json(
                SeenVersions::encode_entries(unspilled),
                unspilled.len(),
                directory.clone(),
                from_minute,
            )
        };
        ChunkedSave {
            head,
            new_chunks,
            dropped_chunks: dropped.into_iter().map(|chunk| chunk.id).collect(),
            directory,
            spilled,
            seen_from_minute: from_minute,
        }
    }

    /// Forgets where the remembered versions are stored, so the next save stores every one of
    /// them anew, in chunks the saving store names: a state carried over to another key then
    /// shares no item with the one it came from, which may be deleted.
    pub fn detach_chunks(&mut self) {
        self.seen.mark_all_unspilled();
        self.seen_chunks.clear();
    }

    /// Records a chunked save that succeeded: its chunks are now where the memory's spilled part
    /// lives.
    pub fn chunked_save_done(&mut self, save: &ChunkedSave) {
        if save.spilled {
            self.seen.mark_spilled();
        }
        self.seen_chunks = save.directory.clone();
        self.seen_from_minute = save.seen_from_minute;
    }

    /// Reads a head written by `plan_chunked_save` (or a whole state from `to_json`). Its
    /// `seen_chunks` name the chunks to read back with `absorb_chunk`.
    pub fn from_head_json(text: &str) -> Result<Self, StateDecodeError> {
        Self::from_json(text)
    }

    /// Adds a chunk's entries (read back from the store) to the memory.
    pub fn absorb_chunk(&mut self, id: &str, bytes: &[u8]) -> Result<(), StateDecodeError> {
        let mut chunk = SeenVersions::from_bytes(bytes)
            .map_err(|error| StateDecodeError(format!("dedup chunk {id}: {error}")))?;
        if let Some(first) = self.seen_from_minute {
            chunk.prune_before_minute(first);
        }
        self.seen.absorb_spilled(chunk);
        Ok(())
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
                None => Vec::new(),
                Some(StoredPendingObjects::One(pending)) => vec![pending],
                Some(StoredPendingObjects::Many(pending)) => pending,
            }
            .into_iter()
            .map(|pending| Ok(PendingObject { entries: decode(&pending.seen)?, key: pending.key }))
            .collect::<Result<_, StateDecodeError>>()?,
            slice_hint: stored.slice_hint_nanos.filter(|nanos| *nanos > 0).map(TimeDelta::nanoseconds),
            window_end: stored.window_end,
            written_alerts: stored.written_alerts,
            written_objects: stored.written_objects,
            progress_ppb: stored.progress_ppb,
            instant: stored.instant,
            seen_chunks: stored.seen_chunks,
            seen_from_minute: stored.seen_from_minute,
            reset: stored.reset,
            lineage: stored.lineage,
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
        state.pending = vec![PendingObject { key: "p/dt=2026-11-28/x.gz".into(), entries: pending }];
        state.window_end = Some(t + TimeDelta::days(1));
        state.written_alerts = 12;
        state.written_objects = 3;
        state.slice_hint = Some(TimeDelta::seconds(90));
        state.lineage = Some("20261128T060000Z-ab12".into());
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

    /// One pending object keeps the form every release reads; several (objects that closed
    /// together) are a list, which a release knowing one refuses instead of half-settling.
    #[test]
    fn pending_objects_keep_the_one_object_form_and_list_several() {
        #[derive(serde::Deserialize)]
        struct FirstRelease {
            #[allow(dead_code)]
            pending: Option<StoredPending>,
        }
        let t = parse_instant("2026-11-28T06:00:00Z").unwrap();
        let object = |key: &str, id: &str| {
            let mut entries = SeenVersions::default();
            entries.insert(SeenEntry::new(id, t));
            PendingObject { key: key.into(), entries }
        };
        let mut state = SyncState::first_run(t);
        state.pending = vec![object("p/dt=2026-11-27/a.gz", "a")];
        let one = state.to_json();
        assert!(serde_json::from_str::<FirstRelease>(&one).is_ok(), "{one}");
        assert_eq!(SyncState::from_json(&one).unwrap(), state);

        state.pending.push(object("p/dt=2026-11-28/b.gz", "b"));
        let two = state.to_json();
        assert!(serde_json::from_str::<FirstRelease>(&two).is_err(), "{two}");
        assert_eq!(SyncState::from_json(&two).unwrap(), state);
        state.pending.clear();
        assert!(!state.to_json().contains("pending"));
    }

    #[test]
    fn a_chunked_save_spills_reloads_and_drops_chunks() {
        let t = parse_instant("2026-11-28T06:00:00Z").unwrap();
        let limits = ChunkLimits { head_entries: 100, chunk_bytes: 2_000 };
        let mut stored_chunks: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
        let mut n = 0;
        let mut state = SyncState::first_run(t);
        let mut save = |state: &mut SyncState, chunks: &mut std::collections::BTreeMap<String, Vec<u8>>| {
            let save = state.plan_chunked_save(limits, || {
                n += 1;
                format!("c{n}")
            });
            chunks.extend(save.new_chunks.iter().cloned());
            for id in &save.dropped_chunks {
                chunks.remove(id);
            }
            state.chunked_save_done(&save);
            save.head
        };
        let reload = |head: &str, chunks: &std::collections::BTreeMap<String, Vec<u8>>| {
            let mut back = SyncState::from_head_json(head).unwrap();
            for chunk in back.seen_chunks.clone() {
                back.absorb_chunk(&chunk.id, &chunks[&chunk.id]).unwrap();
            }
            back
        };
        // Below the limit: everything stays in the head.
        for i in 0..50 {
            state.seen.insert(SeenEntry::new(&format!("a{i}"), t + TimeDelta::seconds(i)));
        }
        let head = save(&mut state, &mut stored_chunks);
        assert!(stored_chunks.is_empty());
        assert_eq!(reload(&head, &stored_chunks), state);
        // Past it: spilled into chunks of at most 2,000 bytes, the head keeps none.
        for i in 0..1_000 {
            state.seen.insert(SeenEntry::new(&format!("b{i}"), t + TimeDelta::seconds(i)));
        }
        let head = save(&mut state, &mut stored_chunks);
        assert!(stored_chunks.len() >= 5 && stored_chunks.values().all(|c| c.len() <= 2_000));
        assert!(head.len() < 1_000, "{}", head.len());
        assert!(state.seen.unspilled().is_empty());
        let back = reload(&head, &stored_chunks);
        assert_eq!(back, state);
        assert_eq!(back.seen.len(), 1_050);
        // New entries go to the head again; pruning drops the chunks it has passed.
        state.seen.insert(SeenEntry::new("late", t + TimeDelta::hours(2)));
        state.seen.prune_before(t + TimeDelta::minutes(10));
        let head = save(&mut state, &mut stored_chunks);
        let back = reload(&head, &stored_chunks);
        assert_eq!(back, state);
        assert!(stored_chunks.len() < 5, "chunks wholly before the cutoff are dropped");
        state.seen.prune_before(t + TimeDelta::hours(1));
        save(&mut state, &mut stored_chunks);
        assert!(stored_chunks.is_empty());
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
