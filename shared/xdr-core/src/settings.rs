//! Engine settings, with their defaults in one place.

use chrono::{DateTime, TimeDelta, Utc};

use crate::layout::{DEFAULT_OUTPUT_PREFIX, DEFAULT_QUARANTINE_PREFIX, OutputLayout};
use crate::stream::{ALERTS, Stream};

pub const DEFAULT_OVERLAP_MINUTES: i64 = 15;
pub const DEFAULT_PAGE_SIZE: u32 = 1000;
pub const MAX_PAGE_SIZE: u32 = 1000;
pub const DEFAULT_MAX_PAGES_PER_SLICE: u32 = 10;
/// The Graph security API's documented `$skip` limit (`$skip=501` is answered with HTTP 400).
pub const DEFAULT_MAX_SKIP: u32 = 500;
pub const DEFAULT_MAX_OBJECT_BYTES: usize = 32 * 1024 * 1024;
/// An object's versions are announced in the state's head before its put (8 bytes each), and
/// the head must fit one DynamoDB item (400 KB) beside the unspilled dedup entries
/// (`ChunkLimits`). At most one object is announced at a time: 6,000 records (24 MB of typical
/// 4 KB alerts), about 64 KB of the head.
pub const DEFAULT_MAX_OBJECT_RECORDS: usize = 6_000;
pub const DEFAULT_FINISH_RESERVE_MILLIS: i64 = 800;
/// Time slices whose requests are out at once: the next slice's answer is on its way while one
/// is written, and the one after it while that one travels, so Graph's latency is paid about
/// once per two slices (the request rate limit still applies).
pub const DEFAULT_SLICES_IN_FLIGHT: usize = 2;
pub const MAX_SLICES_IN_FLIGHT: usize = 4;

#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// What is read: its properties split a crowded instant, its page size bounds `page_size`.
    pub stream: Stream,
    pub layout: OutputLayout,
    /// How far each window re-reads before the cursor, to catch versions that became visible late.
    pub overlap: TimeDelta,
    /// `$top` for each request (at most the stream's `max_page_size`).
    pub page_size: u32,
    /// Pages one instant may take through nextLinks or `$skip` before it is split by another
    /// property. (Time slices are always read in one answer each.)
    pub max_pages_per_slice: u32,
    /// The largest `$skip` sent, or accepted in a nextLink.
    pub max_skip: u32,
    /// Instants an operator has accepted as read as far as Graph's paging reaches (see
    /// `EngineError::InstantUnreadable`): the cursor moves past them.
    pub accept_incomplete_instants: Vec<DateTime<Utc>>,
    /// Uncompressed size at which an object is closed and stored.
    pub max_object_bytes: usize,
    /// Records at which an object is closed and stored: an object's versions are announced in
    /// the state before its put, and the state must fit one DynamoDB item (400 KB).
    pub max_object_records: usize,
    /// Where the first run starts; `None`: at the first run's start, reading no past records.
    pub backfill_start: Option<DateTime<Utc>>,
    /// Time kept back before the deadline to store buffered objects and save state.
    pub finish_reserve: TimeDelta,
    /// For a bounded window (backfill): where reading stops, fixed in the state at the first run.
    pub window_end: Option<DateTime<Utc>>,
    /// Time slices requested ahead at once (1: one request after another).
    pub slices_in_flight: usize,
}

impl SyncSettings {
    pub fn with_defaults() -> Self {
        Self {
            stream: ALERTS,
            // The default prefixes are valid and disjoint by construction.
            layout: OutputLayout::new(DEFAULT_OUTPUT_PREFIX, DEFAULT_QUARANTINE_PREFIX)
                .unwrap_or_else(|_| unreachable!("default prefixes are valid")),
            overlap: TimeDelta::minutes(DEFAULT_OVERLAP_MINUTES),
            page_size: DEFAULT_PAGE_SIZE,
            max_pages_per_slice: DEFAULT_MAX_PAGES_PER_SLICE,
            max_skip: DEFAULT_MAX_SKIP,
            accept_incomplete_instants: Vec::new(),
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            max_object_records: DEFAULT_MAX_OBJECT_RECORDS,
            backfill_start: None,
            finish_reserve: TimeDelta::milliseconds(DEFAULT_FINISH_RESERVE_MILLIS),
            window_end: None,
            slices_in_flight: DEFAULT_SLICES_IN_FLIGHT,
        }
    }

    /// When fetching must stop for the run to end by `deadline`: the finish reserve before it,
    /// kept for storing objects and saving state. The one place this is computed.
    pub fn fetch_deadline(&self, deadline: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        deadline.map(|deadline| deadline - self.finish_reserve)
    }
}
