use crate::page::PageError;
use crate::ports::{SinkError, SourceError, SourceErrorKind, StoreError};

/// Why a run failed. Progress made before the failure is saved when that is safe.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Source(#[source] SourceError),
    #[error("Graph returned a malformed page (request-id {request_id}): {problem}")]
    MalformedPage { request_id: String, problem: PageError },
    #[error(transparent)]
    State(#[from] StoreError),
    #[error(
        "storing object `{key}` failed: {error}; the next run checks whether it landed and writes nothing twice"
    )]
    Output {
        key: String,
        #[source]
        error: SinkError,
    },
    #[error(
        "checking whether `{key}` exists ({purpose}) was refused (403). Without s3:ListBucket on the bucket, S3 answers 403 instead of 404 for an object that does not exist, so the run cannot tell. Grant the function's role s3:ListBucket on the bucket (limited with an s3:prefix condition to the output, quarantine and control prefixes, as the template does); nothing was changed, and the next run goes on once it can tell. ({error})"
    )]
    ExistenceCheckForbidden {
        key: String,
        purpose: &'static str,
        #[source]
        error: SinkError,
    },
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
    BadBackfill(#[from] BackfillEventError),
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

/// A backfill event that does not make sense (see `crate::backfill`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackfillEventError {
    #[error(
        "the event is not a JSON object; send {{\"start\": \"2026-11-01T00:00:00Z\", \"end\": \"2026-11-08T00:00:00Z\"}} (end optional)"
    )]
    NotAnObject,
    #[error("the event has no `start`; send {{\"start\": \"2026-11-01T00:00:00Z\"}} and optionally `end`")]
    MissingStart,
    #[error("`{field}` is `{value}`, which is not an RFC 3339 time like 2026-11-01T00:00:00Z")]
    NotRfc3339 { field: &'static str, value: String },
    #[error("`start` ({start}) is not before `end` ({end})")]
    StartNotBeforeEnd { start: String, end: String },
    #[error("`start` ({start}) is in the future")]
    StartInFuture { start: String },
    #[error(
        "the event has an unknown key `{key}`; a backfill event has only `start` and optionally `end` and `stream`"
    )]
    UnknownKey { key: String },
    #[error("`stream` is `{value}`, which is not a stream; use one of {known}")]
    UnknownStream { value: String, known: String },
    #[error(
        "`start` ({start}) is before {floor}: Defender XDR keeps alerts for {retention_days} days, so Graph has nothing older to read"
    )]
    StartBeforeRetention { start: String, floor: String, retention_days: i64 },
    #[error("the window spans {days} UTC days; a backfill reads at most {max} (Defender XDR's retention)")]
    TooManyParts { days: usize, max: usize },
}
