//! Configuration and run wiring shared by the `xdr-sync` and `xdr-backfill` binaries.

// The Lambda runtime's future wraps the handlers' (AWS SDK calls inside): deeper than the
// default limit of the compiler's layout query.
#![recursion_limit = "256"]

pub mod backfill;
pub mod config;
pub mod demo;
pub mod entry;
pub mod error;
pub mod lambda;
pub mod local;
pub mod logging;
pub mod metrics;
pub mod report;
pub mod state_admin;

pub use config::{ConfigError, LocalConfig, SyncConfig};
pub use error::AppError;
