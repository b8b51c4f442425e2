//! Everything the Graph client can report, each with what to do about it.

use xdr_core::{SourceError, SourceErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error(
        "Entra ID rejected the client secret for app {client_id} (AADSTS7000215). Store the secret's Value, not its Secret ID: the Value is shown once, when the secret is created under 'Certificates & secrets'."
    )]
    InvalidSecret { client_id: String },
    #[error(
        "the client secret for app {client_id} has expired (AADSTS7000222). Create a new secret in the app registration and store its Value in the credentials."
    )]
    ExpiredSecret { client_id: String },
    #[error(
        "application {client_id} was not found in tenant {tenant} (AADSTS700016). Check the client id and TENANT_ID, and that an administrator consented to the app in this tenant."
    )]
    AppNotFound { client_id: String, tenant: String },
    #[error(
        "tenant {tenant} was not found at {login} (AADSTS90002). Check TENANT_ID, and that CLOUD matches the tenant's cloud."
    )]
    TenantNotFound { tenant: String, login: String },
    #[error("Entra ID refused the token request (HTTP {status}, {code}): {summary} [trace id {trace_id}]")]
    Entra { status: u16, code: String, summary: String, trace_id: String },
    #[error("the credentials could not be read: {0}")]
    Credentials(String),
    #[error(
        "Graph refused access (HTTP {status}, {code}, request-id {request_id}): {message}. The app needs the application permission {permission} with admin consent."
    )]
    Forbidden { status: u16, code: String, message: String, request_id: String, permission: &'static str },
    #[error(
        "Graph kept throttling after {attempts} attempts (last HTTP {status}, request-id {request_id}){detail}"
    )]
    Throttled { attempts: u32, status: u16, request_id: String, detail: String },
    #[error("Graph asked this client to back off for {wait_ms} ms more, past the invocation deadline")]
    BackingOff { wait_ms: u64 },
    #[error(
        "GRAPH_REQUESTS_PER_MINUTE allows {requests} Graph requests per {per_seconds} s, and the next would go out in {wait_ms} ms, past the invocation deadline"
    )]
    RateLimited { requests: u32, per_seconds: u64, wait_ms: u64 },
    #[error("stopped before the invocation deadline: {0}")]
    OutOfTime(String),
    #[error("Graph is unavailable after {attempts} attempts: {last}")]
    Unavailable { attempts: u32, last: String },
    #[error("Graph rejected the request (HTTP {status}, {code}, request-id {request_id}): {message}")]
    Rejected { status: u16, code: String, message: String, request_id: String },
    #[error(
        "Graph returned a nextLink to `{found}`, not to the Graph host in use (`{expected}`); refused so the access token is never sent elsewhere"
    )]
    ForeignNextLink { found: String, expected: String },
    #[error("the token endpoint answered with an unexpected body (HTTP {status}): {detail}")]
    BadTokenResponse { status: u16, detail: String },
    #[error(
        "the {request} was answered with a redirect (HTTP {status}) to `{location}`; redirects are never followed, so the client secret and access tokens go only to the configured hosts. Check {setting} and any proxy in between"
    )]
    Redirected { request: &'static str, status: u16, location: String, setting: &'static str },
    #[error("refused to send the {request} to `{url}`: {problem}")]
    NotAllowed { request: &'static str, url: String, problem: String },
    #[error(
        "the answer to the {request} is too large: {detail}. MAX_RESPONSE_MB ({limit_mb} MiB) bounds every answer before and after decompression; raise it if Graph's pages really are that large"
    )]
    TooLarge { request: &'static str, limit_mb: usize, detail: String },
    #[error("the answer to the {request} could not be read: {detail}")]
    Unreadable { request: &'static str, detail: String },
    #[error(
        "the {request} to `{origin}` was refused: its TLS certificate is not trusted ({reason}). Trusted roots come from the system's store (the CA bundle, or SSL_CERT_FILE and SSL_CERT_DIR when set); behind a TLS-inspecting proxy, its authority must be added there"
    )]
    UntrustedCertificate { request: &'static str, origin: String, reason: String },
}

impl GraphError {
    pub fn source_kind(&self) -> SourceErrorKind {
        match self {
            GraphError::InvalidSecret { .. }
            | GraphError::ExpiredSecret { .. }
            | GraphError::AppNotFound { .. }
            | GraphError::TenantNotFound { .. }
            | GraphError::Entra { .. }
            | GraphError::Credentials(_)
            | GraphError::Forbidden { .. } => SourceErrorKind::Credentials,
            GraphError::Throttled { .. } | GraphError::BackingOff { .. } | GraphError::RateLimited { .. } => {
                SourceErrorKind::Throttled
            }
            GraphError::OutOfTime(_) => SourceErrorKind::OutOfTime,
            GraphError::Unavailable { .. } | GraphError::BadTokenResponse { .. } => {
                SourceErrorKind::Unavailable
            }
            GraphError::Rejected { status: 400, .. } => SourceErrorKind::QueryRejected,
            GraphError::Rejected { .. }
            | GraphError::ForeignNextLink { .. }
            | GraphError::Redirected { .. }
            | GraphError::NotAllowed { .. }
            | GraphError::TooLarge { .. }
            | GraphError::Unreadable { .. }
            | GraphError::UntrustedCertificate { .. } => SourceErrorKind::Refused,
        }
    }
}

impl From<GraphError> for SourceError {
    fn from(error: GraphError) -> Self {
        SourceError::new(error.source_kind(), error.to_string()).caused_by(error)
    }
}
