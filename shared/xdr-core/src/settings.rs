//! Engine settings, with their defaults in one place.

use chrono::{DateTime, TimeDelta, Utc};

use crate::layout::{DEFAULT_OUTPUT_PREFIX, DEFAULT_QUARANTINE_PREFIX, OutputLayout};

pub const DEFAULT_OVERLAP_MINUTES: i64 = 15;
pub const DEFAULT_PAGE_SIZE: u32 = 1000;
pub const MAX_PAGE_SIZE: u32 = 1000;
pub const DEFAULT_MAX_PAGES_PER_SLICE: u32 = 10;
pub const DEFAULT_MAX_OBJECT_BYTES: usize = 32 * 1024 * 1024;
pub const DEFAULT_FINISH_RESERVE_MILLIS: i64 = 800;

#[derive(Debug, Clone)]
pub struct SyncSettings {
    pub layout: OutputLayout,
    /// How far each window re-reads before the cursor, to catch versions that became visible late.
    pub overlap: TimeDelta,
    /// `$top` for each request (at most 1000).
    pub page_size: u32,
    /// Pages one slice may take before it is split; bounds `$skip` depth and unsaved progress.
    pub max_pages_per_slice: u32,
    /// Uncompressed size at which an object is closed and stored.
    pub max_object_bytes: usize,
    /// Where the first run starts; `None`: at the first run's start, reading no past records.
    pub backfill_start: Option<DateTime<Utc>>,
    /// Time kept back before the deadline to store buffered objects and save state.
    pub finish_reserve: TimeDelta,
    /// For a bounded window (backfill): where reading stops, fixed in the state at the first run.
    pub window_end: Option<DateTime<Utc>>,
}

impl SyncSettings {
    pub fn with_defaults() -> Self {
        Self {
            // The default prefixes are valid and disjoint by construction.
            layout: OutputLayout::new(DEFAULT_OUTPUT_PREFIX, DEFAULT_QUARANTINE_PREFIX)
                .unwrap_or_else(|_| unreachable!("default prefixes are valid")),
            overlap: TimeDelta::minutes(DEFAULT_OVERLAP_MINUTES),
            page_size: DEFAULT_PAGE_SIZE,
            max_pages_per_slice: DEFAULT_MAX_PAGES_PER_SLICE,
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            backfill_start: None,
            finish_reserve: TimeDelta::milliseconds(DEFAULT_FINISH_RESERVE_MILLIS),
            window_end: None,
        }
    }

    /// Records one slice may hold before it is split.
    pub(crate) fn slice_capacity(&self) -> u64 {
        u64::from(self.page_size.max(1)) * u64::from(self.max_pages_per_slice.max(1))
    }
}
