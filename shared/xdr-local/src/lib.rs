//! Local adapters: a folder as the object sink, files as the state store and the run lease.
//! They let the same engine and handlers run with no AWS at all (demo, tests, trying it on a
//! real tenant first).

mod dir_sink;
mod file_lease;
mod file_state;

pub use dir_sink::DirSink;
pub use file_lease::FileLease;
pub use file_state::FileStateStore;

/// A state key as a file name: letters, digits and `-` kept, anything else `_`
/// (`backfill#<tenant>#alerts#day#2026-11-01` → `backfill_<tenant>_alerts_day_2026-11-01`).
pub fn file_name_for_key(key: &str) -> String {
    key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}
