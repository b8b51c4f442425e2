//! Taking over state an earlier release kept under another key (see [`crate::keys`]).
//!
//! The first time a state is loaded under its current key and nothing is there, the earlier
//! keys are read in turn; the first state found is saved under the current key (conditionally,
//! as a new item) and used from then on. The earlier items are left as they were: nothing reads them
//! again once the current one exists (it shares none of their dedup chunks), and an operator
//! may delete them. The engine, the backfill
//! and the state command all load through this, so every kind of item moves the same way, on
//! first use, with no separate migration step to forget.

use tracing::info;

use crate::ports::{Revision, StateStore, StoreError};
use crate::state::SyncState;

/// A store that adopts an earlier release's state on first load.
pub struct Adopting<T> {
    current: T,
    previous: Vec<T>,
}

impl<T: StateStore> Adopting<T> {
    pub fn new(current: T, previous: Vec<T>) -> Self {
        Self { current, previous }
    }
}

impl<T: StateStore> StateStore for Adopting<T> {
    fn location(&self) -> String {
        self.current.location()
    }

    async fn load(&self) -> Result<Option<(SyncState, Revision)>, StoreError> {
        if let Some(loaded) = self.current.load().await? {
            return Ok(Some(loaded));
        }
        for previous in &self.previous {
            let Some((mut state, _)) = previous.load().await? else { continue };
            // Stored anew under the current key, its dedup memory included: nothing of it stays
            // in the earlier items, which an operator may then delete.
            state.detach_chunks();
            return match self.current.save(&mut state, None).await {
                Ok(revision) => {
                    info!(from = %previous.location(), to = %self.current.location(), "Carried over the state an earlier release kept.");
                    Ok(Some((state, revision)))
                }
                // Another run carried it over first: use theirs.
                Err(StoreError::Conflict) => self.current.load().await,
                Err(error) => Err(error),
            };
        }
        Ok(None)
    }

    async fn save(&self, state: &mut SyncState, expected: Option<&Revision>) -> Result<Revision, StoreError> {
        self.current.save(state, expected).await
    }
}

/// A read-only view of a state kept under its current key or, before it was carried over, an
/// earlier one: for readers that may not write it (the backfill reads the live sync's floor).
pub struct FirstFound<T> {
    stores: Vec<T>,
}

impl<T: StateStore> FirstFound<T> {
    pub fn new(stores: Vec<T>) -> Self {
        Self { stores }
    }
}

impl<T: StateStore> StateStore for FirstFound<T> {
    fn location(&self) -> String {
        self.stores.first().map(StateStore::location).unwrap_or_default()
    }

    async fn load(&self) -> Result<Option<(SyncState, Revision)>, StoreError> {
        for store in &self.stores {
            if let Some(loaded) = store.load().await? {
                return Ok(Some(loaded));
            }
        }
        Ok(None)
    }

    async fn save(
        &self,
        _state: &mut SyncState,
        _expected: Option<&Revision>,
    ) -> Result<Revision, StoreError> {
        Err(StoreError::unavailable(format!("{} is read-only here", self.location())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::timeutil::parse_instant;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        futures_util::FutureExt::now_or_never(future).expect("in-memory stores never wait")
    }

    #[test]
    fn an_earlier_state_is_carried_over_once_and_then_left_alone() {
        let start = parse_instant("2026-11-01T00:00:00Z").unwrap();
        let earlier = MemoryStore::default();
        let mut state = SyncState::first_run(start);
        state.written_alerts = 42;
        block_on(earlier.save(&mut state, None)).unwrap();

        let store = Adopting::new(MemoryStore::default(), vec![MemoryStore::default(), earlier]);
        let (adopted, revision) = block_on(store.load()).unwrap().unwrap();
        assert_eq!(adopted.written_alerts, 42);
        assert_eq!(adopted.floor, start);
        assert_eq!(store.current.state().unwrap().written_alerts, 42, "saved under the current key");
        // From now on the current item is the state; the earlier one is not read or changed.
        let mut next = adopted.clone();
        next.written_alerts = 50;
        block_on(store.save(&mut next, Some(&revision))).unwrap();
        assert_eq!(block_on(store.load()).unwrap().unwrap().0.written_alerts, 50);
        assert_eq!(store.previous[1].state().unwrap().written_alerts, 42);
    }

    #[test]
    fn a_carried_over_state_shares_no_dedup_chunk_with_the_earlier_one() {
        let start = parse_instant("2026-11-01T00:00:00Z").unwrap();
        let limits = crate::state::ChunkLimits { head_entries: 2, chunk_bytes: 100 };
        let earlier = MemoryStore::with_limits(limits);
        let mut state = SyncState::first_run(start);
        for n in 0..50 {
            state.seen.insert(crate::seen::SeenEntry::new(
                &format!("alert-{n}"),
                start + chrono::TimeDelta::minutes(n),
            ));
        }
        block_on(earlier.save(&mut state, None)).unwrap();
        assert!(earlier.chunk_count() > 1, "the earlier state's memory is in chunks");

        let store = Adopting::new(MemoryStore::with_limits(limits), vec![earlier]);
        let (adopted, _) = block_on(store.load()).unwrap().unwrap();
        assert_eq!(adopted.seen, state.seen);
        // The current store alone (the earlier one deleted) holds all of it.
        assert!(store.current.chunk_count() > 1);
        let (reloaded, _) = block_on(store.current.load()).unwrap().unwrap();
        assert_eq!(reloaded.seen, state.seen);
    }

    #[test]
    fn nothing_anywhere_is_nothing_and_the_read_only_view_refuses_writes() {
        let store = Adopting::new(MemoryStore::default(), vec![MemoryStore::default()]);
        assert!(block_on(store.load()).unwrap().is_none());
        assert_eq!(store.current.saves(), 0, "nothing written");
        let view = FirstFound::new(vec![MemoryStore::default()]);
        let mut state = SyncState::first_run(parse_instant("2026-11-01T00:00:00Z").unwrap());
        assert!(block_on(view.save(&mut state, None)).is_err());
    }
}
