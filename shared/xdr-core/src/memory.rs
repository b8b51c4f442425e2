//! In-memory adapters for tests, demos and benchmarks: a state store, an object sink and a
//! manual clock. Each can be told to fail so tests can cut a run at any step.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

use crate::ports::{Clock, Lease, LeaseOutcome, ObjectSink, Revision, SinkError, StateStore, StoreError};
use crate::state::{ChunkLimits, SyncState};
use std::sync::Arc;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A state store with revision checks; `fail_after_saves(n)` makes the (n+1)-th save fail. It
/// stores the head-and-chunks form (`ChunkedSave`) with small limits, so every engine test also
/// proves the engine across spills, chunk reads and chunk drops.
pub struct MemoryStore {
    inner: Mutex<Option<(String, u64)>>,
    chunks: Mutex<BTreeMap<String, Vec<u8>>>,
    limits: ChunkLimits,
    next_chunk: AtomicUsize,
    saves: AtomicUsize,
    largest: AtomicUsize,
    fail_from_save: Mutex<Option<usize>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_limits(ChunkLimits { head_entries: 200, chunk_bytes: 1_000 })
    }
}

impl MemoryStore {
    pub fn with_limits(limits: ChunkLimits) -> Self {
        Self {
            inner: Mutex::new(None),
            chunks: Mutex::new(BTreeMap::new()),
            limits,
            next_chunk: AtomicUsize::new(0),
            saves: AtomicUsize::new(0),
            largest: AtomicUsize::new(0),
            fail_from_save: Mutex::new(None),
        }
    }

    fn read(&self) -> Result<Option<(SyncState, u64)>, StoreError> {
        let Some((head, revision)) = lock(&self.inner).clone() else { return Ok(None) };
        let mut state =
            SyncState::from_head_json(&head).map_err(|error| StoreError::Corrupt(error.to_string()))?;
        let chunks = lock(&self.chunks);
        for chunk in state.seen_chunks.clone() {
            let bytes = chunks
                .get(&chunk.id)
                .ok_or_else(|| StoreError::Corrupt(format!("dedup chunk {} is missing", chunk.id)))?;
            state.absorb_chunk(&chunk.id, bytes).map_err(|error| StoreError::Corrupt(error.to_string()))?;
        }
        Ok(Some((state, revision)))
    }

    pub fn state(&self) -> Option<SyncState> {
        self.read().ok().flatten().map(|(state, _)| state)
    }

    pub fn saves(&self) -> usize {
        self.saves.load(Ordering::SeqCst)
    }

    /// The largest head saved so far, in bytes of its stored (JSON) form.
    pub fn largest_state_bytes(&self) -> usize {
        self.largest.load(Ordering::SeqCst)
    }

    /// Chunks stored now.
    pub fn chunk_count(&self) -> usize {
        lock(&self.chunks).len()
    }

    /// Saves after the first `n` (counted from now) fail, as if the process died.
    pub fn fail_after_saves(&self, n: usize) {
        *lock(&self.fail_from_save) = Some(self.saves() + n);
    }

    pub fn heal(&self) {
        *lock(&self.fail_from_save) = None;
    }
}

impl StateStore for MemoryStore {
    fn location(&self) -> String {
        "memory".into()
    }

    async fn load(&self) -> Result<Option<(SyncState, Revision)>, StoreError> {
        Ok(self.read()?.map(|(state, revision)| (state, Revision(revision))))
    }

    async fn save(&self, state: &mut SyncState, expected: Option<&Revision>) -> Result<Revision, StoreError> {
        if lock(&self.fail_from_save).is_some_and(|from| self.saves() >= from) {
            return Err(StoreError::unavailable("injected failure"));
        }
        let save = state.plan_chunked_save(self.limits, || {
            format!("chunk-{}", self.next_chunk.fetch_add(1, Ordering::SeqCst))
        });
        let mut inner = lock(&self.inner);
        let current = inner.as_ref().map(|(_, revision)| *revision);
        if current != expected.map(|revision| revision.0) {
            return Err(StoreError::Conflict);
        }
        let next = current.unwrap_or(0) + 1;
        self.largest.fetch_max(save.head.len(), Ordering::SeqCst);
        let mut chunks = lock(&self.chunks);
        chunks.extend(save.new_chunks.iter().cloned());
        *inner = Some((save.head.clone(), next));
        for id in &save.dropped_chunks {
            chunks.remove(id);
        }
        state.chunked_save_done(&save);
        self.saves.fetch_add(1, Ordering::SeqCst);
        Ok(Revision(next))
    }
}

/// Many in-memory stores by key, as a table holds items: what a handler's `state_for` hands out.
#[derive(Default)]
pub struct MemoryStates {
    stores: Mutex<BTreeMap<String, Arc<MemoryStore>>>,
}

impl MemoryStates {
    /// The store under `key` (created empty on first use).
    pub fn store(&self, key: &str) -> Arc<MemoryStore> {
        lock(&self.stores).entry(key.to_owned()).or_default().clone()
    }

    /// Deletes the state under `key`, chunks and all.
    pub fn remove(&self, key: &str) {
        lock(&self.stores).remove(key);
    }

    /// The keys that hold a state.
    pub fn keys(&self) -> Vec<String> {
        lock(&self.stores)
            .iter()
            .filter(|(_, store)| store.state().is_some())
            .map(|(key, _)| key.clone())
            .collect()
    }
}

/// Leases in memory, with the adapters' rules (expired leases are free; the holder may renew).
#[derive(Default)]
pub struct MemoryLease {
    held: Mutex<BTreeMap<String, (String, DateTime<Utc>)>>,
}

impl MemoryLease {
    /// Who holds `key`'s lease, and until when.
    pub fn holder(&self, key: &str) -> Option<(String, DateTime<Utc>)> {
        lock(&self.held).get(key).cloned()
    }
}

impl Lease for MemoryLease {
    async fn acquire(
        &self,
        key: &str,
        holder: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<LeaseOutcome, StoreError> {
        let mut held = lock(&self.held);
        if let Some((other, other_until)) = held.get(key)
            && other != holder
            && *other_until >= now
        {
            return Ok(LeaseOutcome::Held { holder: other.clone(), until: *other_until });
        }
        held.insert(key.to_owned(), (holder.to_owned(), until));
        Ok(LeaseOutcome::Acquired)
    }

    async fn release(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        let mut held = lock(&self.held);
        if held.get(key).is_some_and(|(current, _)| current == holder) {
            held.remove(key);
        }
        Ok(())
    }
}

/// An object sink keeping objects in a map; `fail_puts_after(n)` makes later puts fail.
#[derive(Default)]
pub struct MemorySink {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
    puts: AtomicUsize,
    fail_from_put: Mutex<Option<usize>>,
}

impl MemorySink {
    pub fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        lock(&self.objects).clone()
    }

    pub fn fail_puts_after(&self, n: usize) {
        *lock(&self.fail_from_put) = Some(self.puts.load(Ordering::SeqCst) + n);
    }

    pub fn heal(&self) {
        *lock(&self.fail_from_put) = None;
    }
}

impl ObjectSink for MemorySink {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), SinkError> {
        let attempt = self.puts.fetch_add(1, Ordering::SeqCst);
        if lock(&self.fail_from_put).is_some_and(|from| attempt >= from) {
            return Err(SinkError::new("injected put failure"));
        }
        lock(&self.objects).insert(key.to_owned(), body);
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool, SinkError> {
        Ok(lock(&self.objects).contains_key(key))
    }

    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, SinkError> {
        Ok(lock(&self.objects).get(key).cloned())
    }
}

/// A clock that moves only when told to (and optionally a fixed step on every reading).
pub struct ManualClock {
    nanos: AtomicI64,
    step_nanos: AtomicI64,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            nanos: AtomicI64::new(start.timestamp_nanos_opt().unwrap_or(0)),
            step_nanos: AtomicI64::new(0),
        }
    }

    pub fn advance(&self, by: TimeDelta) {
        self.nanos.fetch_add(by.num_nanoseconds().unwrap_or(0), Ordering::SeqCst);
    }

    pub fn set(&self, to: DateTime<Utc>) {
        self.nanos.store(to.timestamp_nanos_opt().unwrap_or(0), Ordering::SeqCst);
    }

    /// Every reading advances the clock by `step` (simulates work taking time).
    pub fn step_on_read(&self, step: TimeDelta) {
        self.step_nanos.store(step.num_nanoseconds().unwrap_or(0), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        let step = self.step_nanos.load(Ordering::SeqCst);
        DateTime::from_timestamp_nanos(self.nanos.fetch_add(step, Ordering::SeqCst))
    }
}
