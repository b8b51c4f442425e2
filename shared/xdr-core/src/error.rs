use crate::page::PageError;
use crate::ports::{SinkError, SourceError, SourceErrorKind, StoreError};

/// Why a run failed. Progress made before the failure is saved when that is safe.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Source(SourceError),
    #[error("Graph returned a malformed page (request-id {request_id}): {problem}")]
    MalformedPage { request_id: String, problem: PageError },
    #[error(transparent)]
    State(#[from] StoreError),
    #[error(
        "storing object `{key}` failed: {error}; the next run checks whether it landed and writes nothing twice"
    )]
    Output { key: String, error: SinkError },
    #[error("compressing a batch failed: {0}")]
    Compression(#[from] std::io::Error),
}

impl EngineError {
    /// A stable name for the failure, for Lambda's error type and for alarms.
    pub fn kind(&self) -> &'static str {
        match self {
            EngineError::Source(error) => match error.kind {
                SourceErrorKind::Credentials => "CredentialsError",
                SourceErrorKind::Throttled => "ThrottledError",
                SourceErrorKind::OutOfTime => "DeadlineError",
                SourceErrorKind::Unavailable => "GraphUnavailableError",
                SourceErrorKind::Refused => "GraphRefusedError",
            },
            EngineError::MalformedPage { .. } => "GraphMalformedPageError",
            EngineError::State(StoreError::Conflict) => "StateConflictError",
            EngineError::State(_) => "StateError",
            EngineError::Output { .. } => "OutputError",
            EngineError::Compression(_) => "OutputError",
        }
    }
}
