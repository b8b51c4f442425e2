//! The engine's view of the outside world: small traits that adapters implement.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::query::Query;
use crate::state::SyncState;

/// One request for alerts: a query the engine built, or a `@odata.nextLink` to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageRequest<'a> {
    Query(Query),
    Next { link: &'a str },
}

/// A page body as received, plus the server's request id for the logs.
#[derive(Debug, Clone)]
pub struct FetchedPage {
    pub body: Vec<u8>,
    pub request_id: Option<String>,
}

/// How the engine must treat a failed fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceErrorKind {
    /// The tenant refused our identity (bad secret, unknown app or tenant, no permission).
    Credentials,
    /// Stopped because the invocation deadline is too close to wait or retry.
    OutOfTime,
    /// Still throttled after the allowed retries.
    Throttled,
    /// The server kept failing or could not be reached after the allowed retries.
    Unavailable,
    /// The request or its answer is wrong in a way retrying will not fix.
    Refused,
    /// Graph rejected the request as formed (HTTP 400), for example a `$skip` beyond its cap.
    /// For a nextLink or a deeper page the engine reads another way; otherwise it is `Refused`.
    QueryRejected,
}

/// The error an adapter met underneath (an SDK, HTTP or I/O error), kept so a caller can walk
/// `source()` to it; the message above it already says what it means for the run.
pub type Cause = std::sync::Arc<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone)]
pub struct SourceError {
    pub kind: SourceErrorKind,
    pub message: String,
    pub cause: Option<Cause>,
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        cause_of(&self.cause)
    }
}

/// The cause itself (not the `Arc` around it), so a caller can downcast it.
fn cause_of(cause: &Option<Cause>) -> Option<&(dyn std::error::Error + 'static)> {
    cause.as_deref().map(|cause| cause as &(dyn std::error::Error + 'static))
}

impl SourceError {
    pub fn new(kind: SourceErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), cause: None }
    }

    /// The same error, with what the adapter met underneath as its `source()`.
    pub fn caused_by(self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self { cause: Some(std::sync::Arc::new(cause)), ..self }
    }
}

/// Who the source says we are, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The tenant's GUID (Entra's `tid`), whatever name the configuration used for it.
    pub tenant: String,
}

/// What a source has asked of its server so far (for responses and metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SourceCounts {
    pub graph_requests: u64,
    pub throttled_responses: u64,
    pub token_requests: u64,
    /// Incident reads made without `$expand` although it was asked for (Graph failed it).
    #[serde(skip_serializing_if = "is_zero")]
    pub expand_fallbacks: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl SourceCounts {
    /// What was asked between `earlier` and `self`.
    pub fn since(&self, earlier: &SourceCounts) -> SourceCounts {
        SourceCounts {
            graph_requests: self.graph_requests.saturating_sub(earlier.graph_requests),
            throttled_responses: self.throttled_responses.saturating_sub(earlier.throttled_responses),
            token_requests: self.token_requests.saturating_sub(earlier.token_requests),
            expand_fallbacks: self.expand_fallbacks.saturating_sub(earlier.expand_fallbacks),
        }
    }
}

/// Where alerts come from (Graph, or anything that speaks its paging).
pub trait AlertSource: Send + Sync {
    /// What this source has asked of its server since it was built.
    fn counts(&self) -> SourceCounts {
        SourceCounts::default()
    }

    /// Proves the credentials work before anything is changed. `deadline` bounds waiting.
    fn authenticate(
        &self,
        deadline: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<Identity, SourceError>> + Send;

    fn fetch(
        &self,
        request: PageRequest<'_>,
        deadline: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<FetchedPage, SourceError>> + Send;
}

/// An opaque token for optimistic concurrency: a save succeeds only if nobody saved since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision(pub u64);

#[derive(Debug)]
pub enum StoreError {
    Conflict,
    Unavailable {
        message: String,
        cause: Option<Cause>,
    },
    Corrupt(String),
    /// Checked before the write, so a limit is this error, never the store's refusal.
    TooLarge {
        item: String,
        bytes: usize,
        limit: usize,
    },
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Conflict => f.write_str("another run changed the sync state since this run read it"),
            StoreError::Unavailable { message, .. } => {
                write!(f, "the sync state could not be read or written: {message}")
            }
            StoreError::Corrupt(problem) => write!(f, "the stored sync state is corrupt: {problem}"),
            StoreError::TooLarge { item, bytes, limit } => write!(
                f,
                "the sync state item {item} would be {bytes} bytes, over the store's limit of {limit}; nothing was written"
            ),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Unavailable { cause, .. } => cause_of(cause),
            _ => None,
        }
    }
}

impl StoreError {
    pub fn unavailable(message: impl Into<String>) -> Self {
        StoreError::Unavailable { message: message.into(), cause: None }
    }

    /// Unavailable, with what the adapter met underneath as its `source()`.
    pub fn unavailable_because(
        message: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Unavailable { message: message.into(), cause: Some(std::sync::Arc::new(cause)) }
    }
}

/// Where the sync state lives. Every save is conditional on the revision last seen.
pub trait StateStore: Send + Sync {
    /// Where the state lives, for messages and markers (`dynamodb:<table>/<key>`, a file path).
    fn location(&self) -> String;

    fn load(&self) -> impl Future<Output = Result<Option<(SyncState, Revision)>, StoreError>> + Send;

    /// Saves `state` if the stored revision is still `expected` (`None`: nothing stored yet).
    /// A store that keeps the dedup memory in chunks records them in `state.seen_chunks`.
    fn save(
        &self,
        state: &mut SyncState,
        expected: Option<&Revision>,
    ) -> impl Future<Output = Result<Revision, StoreError>> + Send;
}

#[derive(Debug, Clone)]
pub struct SinkError {
    pub message: String,
    /// The store refused the caller (S3's 403). For an existence check this is how S3 answers a
    /// missing object to a caller without `s3:ListBucket`, so the engine says exactly that.
    pub forbidden: bool,
    pub cause: Option<Cause>,
}

impl std::fmt::Display for SinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        cause_of(&self.cause)
    }
}

impl SinkError {
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), forbidden: false, cause: None }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self { message: message.into(), forbidden: true, cause: None }
    }

    /// The same error, with what the adapter met underneath as its `source()`.
    pub fn caused_by(self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self { cause: Some(std::sync::Arc::new(cause)), ..self }
    }
}

/// Where objects go (S3, a local folder).
pub trait ObjectSink: Send + Sync {
    fn put(&self, key: &str, body: Vec<u8>) -> impl Future<Output = Result<(), SinkError>> + Send;
    fn exists(&self, key: &str) -> impl Future<Output = Result<bool, SinkError>> + Send;
    /// A small object's content (markers), `None` if there is none.
    fn read(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, SinkError>> + Send;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Whether a lease was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    Acquired,
    /// Another run holds it until `until`.
    Held {
        holder: String,
        until: DateTime<Utc>,
    },
}

/// Keeps two runs from working on the same state at once. A lease ends at its holder's deadline
/// at the latest, so a crashed holder blocks nobody past it, and is released when the holder
/// finishes. `key` is the state's key; adapters keep the lease beside it (`lease#{key}`).
pub trait Lease: Send + Sync {
    /// Takes the lease for `holder` until `until`, unless someone else holds an unexpired one.
    fn acquire(
        &self,
        key: &str,
        holder: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<LeaseOutcome, StoreError>> + Send;

    /// Gives the lease back, if `holder` still has it.
    fn release(&self, key: &str, holder: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A shared store is a store (handlers hand out stores by key; tests keep them to look inside).
impl<T: StateStore> StateStore for std::sync::Arc<T> {
    fn location(&self) -> String {
        self.as_ref().location()
    }

    fn load(&self) -> impl Future<Output = Result<Option<(SyncState, Revision)>, StoreError>> + Send {
        self.as_ref().load()
    }

    fn save(
        &self,
        state: &mut SyncState,
        expected: Option<&Revision>,
    ) -> impl Future<Output = Result<Revision, StoreError>> + Send {
        self.as_ref().save(state, expected)
    }
}
