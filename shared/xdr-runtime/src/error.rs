use xdr_config::ConfigError;
use xdr_core::EngineError;

/// Why an invocation, a local run or a command failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the HTTP client could not be built: {0}")]
    Http(#[source] reqwest::Error),
    #[error("the Lambda runtime stopped: {0}")]
    Runtime(String),
    #[error("{action}: {error}")]
    Io {
        action: String,
        #[source]
        error: std::io::Error,
    },
    #[error("the demo tenant file {path} is unreadable: {problem}; delete the demo folder to start over")]
    DemoTenant { path: String, problem: String },
    /// An invocation's event that does not make sense (which field, what is wrong).
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// Locally a held lease is an error (the command did nothing); under Lambda it is an answer.
    #[error("{0}")]
    LeaseHeld(String),
    /// The tenant registry could not be read or changed, or an entry is malformed.
    #[error(transparent)]
    Registry(#[from] xdr_aws::RegistryError),
    /// A check before a change failed (its cause's type, and the whole story); nothing changed.
    #[error("{message}")]
    CheckFailed { kind: &'static str, message: String },
    /// A command's argument that does not make sense (which one, what is wrong).
    #[error("{0}")]
    InvalidArgument(String),
    /// An invocation named a tenant the registry does not sync (unknown, or disabled).
    #[error("{0}")]
    TenantNotSynced(String),
    /// The Athena tables' tenant list could not be read or brought in step with the registry.
    #[error("{0}")]
    Tables(String),
    /// The fan-out's results (its Map's result files in S3) could not be read.
    #[error("the fan-out's results: {0}")]
    FanOutResults(String),
}

impl AppError {
    /// A stable name for the failure (Lambda's error type, exit messages).
    pub fn kind(&self) -> &'static str {
        match self {
            AppError::Config(_) => "ConfigurationError",
            AppError::Engine(error) => error.kind(),
            AppError::LeaseHeld(_) => "LeaseHeldError",
            AppError::InvalidEvent(_) => "InvalidEventError",
            AppError::Registry(_) => "RegistryError",
            AppError::TenantNotSynced(_) => "TenantNotSyncedError",
            AppError::InvalidArgument(_) => "InvalidArgumentError",
            AppError::Tables(_) => "TablesError",
            AppError::FanOutResults(_) => "FanOutResultsError",
            AppError::CheckFailed { kind, .. } => kind,
            AppError::Http(_) | AppError::Runtime(_) | AppError::Io { .. } | AppError::DemoTenant { .. } => {
                "InternalError"
            }
        }
    }
}
