//! In-memory adapters for tests, demos and benchmarks: a state store, an object sink and a
//! manual clock. Each can be told to fail so tests can cut a run at any step.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

use crate::ports::{Clock, ObjectSink, Revision, SinkError, StateStore, StoreError};
use crate::state::SyncState;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A state store with revision checks; `fail_after_saves(n)` makes the (n+1)-th save fail.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Option<(SyncState, u64)>>,
    saves: AtomicUsize,
    largest: AtomicUsize,
    fail_from_save: Mutex<Option<usize>>,
}

impl MemoryStore {
    pub fn state(&self) -> Option<SyncState> {
        lock(&self.inner).as_ref().map(|(state, _)| state.clone())
    }

    pub fn saves(&self) -> usize {
        self.saves.load(Ordering::SeqCst)
    }

    /// The largest state saved so far, in bytes of its stored (JSON) form.
    pub fn largest_state_bytes(&self) -> usize {
        self.largest.load(Ordering::SeqCst)
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
    async fn load(&self) -> Result<Option<(SyncState, Revision)>, StoreError> {
        Ok(lock(&self.inner).as_ref().map(|(state, revision)| (state.clone(), Revision(*revision))))
    }

    async fn save(&self, state: &SyncState, expected: Option<&Revision>) -> Result<Revision, StoreError> {
        if lock(&self.fail_from_save).is_some_and(|from| self.saves() >= from) {
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        let mut inner = lock(&self.inner);
        let current = inner.as_ref().map(|(_, revision)| *revision);
        if current != expected.map(|revision| revision.0) {
            return Err(StoreError::Conflict);
        }
        let next = current.unwrap_or(0) + 1;
        // Round-trip through the stored form so tests exercise it.
        let text = state.to_json();
        self.largest.fetch_max(text.len(), Ordering::SeqCst);
        let stored = SyncState::from_json(&text).map_err(|error| StoreError::Corrupt(error.to_string()))?;
        *inner = Some((stored, next));
        self.saves.fetch_add(1, Ordering::SeqCst);
        Ok(Revision(next))
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
            return Err(SinkError("injected put failure".into()));
        }
        lock(&self.objects).insert(key.to_owned(), body);
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool, SinkError> {
        Ok(lock(&self.objects).contains_key(key))
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
