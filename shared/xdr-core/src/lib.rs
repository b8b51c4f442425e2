//! The pure core of the Defender XDR alert sync: window and cursor rules, dedup, batching,
//! gzip NDJSON and the object key layout. No AWS and no HTTP here: adapters implement the
//! traits in [`ports`].

pub mod adopt;
pub mod backfill;
pub mod batch;
pub mod engine;
pub mod error;
pub mod fingerprint;
pub mod keys;
pub mod layout;
pub mod marker;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;
pub mod page;
pub mod ports;
pub mod query;
pub mod seen;
pub mod settings;
pub mod split;
pub mod state;
pub mod stream;
pub mod summary;
pub mod tenants;
pub mod timeutil;

pub use engine::{Ports, RunRequest, run_sync};
pub use error::EngineError;
pub use keys::StateKeys;
pub use layout::OutputLayout;
pub use ports::{
    AlertSource, Clock, FetchedPage, Identity, Lease, LeaseOutcome, ObjectSink, PageRequest, Revision,
    SinkError, SourceCounts, SourceError, SourceErrorKind, StateStore, StoreError, SystemClock,
};
pub use query::{Constraint, NextLinkKind, Property, Query, classify_next_link};
pub use settings::SyncSettings;
pub use state::{ChunkLimits, ChunkedSave, SeenChunk, SyncState};
pub use stream::Stream;
pub use summary::RunSummary;
