use xdr_core::EngineError;

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the HTTP client could not be built: {0}")]
    Http(String),
    #[error("{action}: {error}")]
    Io { action: String, error: std::io::Error },
    #[error("bad backfill event: {0}")]
    BadEvent(#[from] crate::backfill::BackfillEventError),
    #[error("the demo tenant file {path} is unreadable: {problem}; delete the demo folder to start over")]
    DemoTenant { path: String, problem: String },
}

impl AppError {
    /// A stable name for the failure (Lambda's error type, exit messages).
    pub fn kind(&self) -> &'static str {
        match self {
            AppError::Config(_) => "ConfigurationError",
            AppError::BadEvent(_) => "InvalidEventError",
            AppError::Engine(error) => error.kind(),
            AppError::Http(_) | AppError::Io { .. } | AppError::DemoTenant { .. } => "InternalError",
        }
    }
}
