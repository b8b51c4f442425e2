//! Configuration and run wiring shared by the `xdr-sync` and `xdr-backfill` binaries.

pub mod config;
pub mod demo;
pub mod error;
pub mod lambda;
pub mod local;
pub mod logging;
pub mod report;

pub use config::{ConfigError, LocalConfig, SyncConfig};
pub use error::AppError;
