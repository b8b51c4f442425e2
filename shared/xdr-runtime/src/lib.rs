//! What the two functions run: the handlers (generic over the ports), their typed responses and
//! metrics, serving them under the Lambda Runtime API with the AWS adapters, running them
//! locally with files, the state command, logging and the process entry.

// The Lambda runtime's future wraps the handlers' (AWS SDK calls inside): deeper than the
// default limit of the compiler's layout query.
#![recursion_limit = "256"]

pub mod entry;
pub mod error;
pub mod handler;
pub mod lambda;
pub mod local;
pub mod logging;
pub mod metrics;
pub mod report;
pub mod response;
pub mod state_admin;
pub mod tenant_report;
pub mod tenants_admin;

pub use error::AppError;
pub use xdr_config::{ConfigError, LocalConfig, SyncConfig};
