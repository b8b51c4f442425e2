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
    #[error(
        "checking whether `{key}` exists ({purpose}) was refused (403). Without s3:ListBucket on the bucket, S3 answers 403 instead of 404 for an object that does not exist, so the run cannot tell. Grant the function's role s3:ListBucket on the bucket (limited with an s3:prefix condition to the output, quarantine and control prefixes, as the template does); nothing was changed, and the next run goes on once it can tell. ({error})"
    )]
    ExistenceCheckForbidden { key: String, purpose: &'static str, error: SinkError },
    /// The state is missing or is not the one this tenant is synced with: starting over would
    /// write everything again (or leave a gap), so only an operator's reset may do it.
    #[error("{message}")]
    TenantState { message: String },
    #[error("compressing a batch failed: {0}")]
    Compression(#[from] std::io::Error),
    #[error(
        "{listed} alert versions share the instant {at} and no filterable property tells them apart, so Graph's paging reaches only {reached} of them (`$skip` is capped at {max_skip}); everything before this instant is written and the cursor is held before it. If your Graph accepts a deeper `$skip`, raise MAX_SKIP; or accept the versions read so far and move past the instant with ACCEPT_INCOMPLETE_INSTANTS={at} (see the README, \"An instant Graph cannot page through\")"
    )]
    InstantUnreadable { at: String, listed: String, reached: u64, max_skip: u32 },
    /// A backfill event that does not make sense; refused before anything is read or written.
    #[error("bad backfill event: {0}")]
    BadBackfill(#[from] crate::backfill::BackfillEventError),
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
                SourceErrorKind::Refused | SourceErrorKind::QueryRejected => "GraphRefusedError",
            },
            EngineError::MalformedPage { .. } => "GraphMalformedPageError",
            EngineError::State(StoreError::Conflict) => "StateConflictError",
            EngineError::State(StoreError::TooLarge { .. }) => "StateTooLargeError",
            EngineError::State(_) => "StateError",
            EngineError::Output { .. } => "OutputError",
            EngineError::ExistenceCheckForbidden { .. } => "ExistenceCheckForbiddenError",
            EngineError::TenantState { .. } => "TenantStateError",
            EngineError::Compression(_) => "OutputError",
            EngineError::InstantUnreadable { .. } => "InstantUnreadableError",
            EngineError::BadBackfill(_) => "InvalidEventError",
        }
    }
}
