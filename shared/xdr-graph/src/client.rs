//! The Graph client: client-credentials tokens, paging, retries, deadlines. One client reads one
//! stream; the clients of one invocation share a [`Session`] (token, backoff), so the handler
//! authenticates once and Graph's throttling of one stream holds back the others too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::{Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tracing::{debug, info, warn};
use url::Url;
use xdr_core::{AlertSource, FetchedPage, Identity, PageRequest, Query, SourceCounts, SourceError, Stream};

use crate::body::{BodyError, read_capped};
use crate::cloud::Endpoints;
use crate::credentials::CredentialProvider;
use crate::error::GraphError;
use crate::origin::check_origin;
use crate::pace::{Pacer, RequestRate};
use crate::retry::{
    RetryPolicy, is_retryable_status, is_retryable_transport, refused_certificate, retry_after,
};
use crate::upstream_text;

/// Less than this left before the deadline: don't start a request.
const MIN_REQUEST_TIME: Duration = Duration::from_millis(200);
/// The default for [`GraphSettings::max_response_bytes`]: a page of 1,000 alerts of 100 KB
/// each (about 95 MiB) fits under it.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 128 * 1024 * 1024;
/// A token answer is a few KB; Entra's error answers are smaller still.
const TOKEN_BODY_LIMIT: usize = 1024 * 1024;
/// Error answers are read only for their code and message.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct GraphSettings {
    pub tenant_id: String,
    /// The collection read (its path, and the permission a 403 names).
    pub stream: Stream,
    pub endpoints: Endpoints,
    /// Upper bound for one HTTP request (also bounded by the deadline).
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// The largest page answer read, before and after decompression (`MAX_RESPONSE_MB`).
    pub max_response_bytes: usize,
    /// `$expand=alerts` on incidents (`INCIDENTS_EXPAND_ALERTS`): a read Graph fails with a 5xx
    /// is made again at once without it (see `get_expanded`).
    pub expand_alerts: bool,
    /// At most this many Graph requests in any window, over the session
    /// (`GRAPH_REQUESTS_PER_MINUTE`; `None`: no limit). See [`crate::pace`].
    pub request_rate: Option<RequestRate>,
}

/// After Graph failed an expanded read, reads go without `$expand` for this long (in this
/// container) before it is tried again: Graph answers 500 to `$expand` with `$filter` for good
/// on large tenants (elastic/integrations#18144), and a failed attempt per page would double the
/// requests and the time.
const EXPAND_PAUSE: Duration = Duration::from_secs(10 * 60);

/// Counters for metrics and summaries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct GraphStats {
    pub graph_requests: u64,
    pub throttled_responses: u64,
    pub token_requests: u64,
    /// Reads made without `$expand` although it was asked for: after Graph failed them, or
    /// while the expansion is paused after such a failure.
    pub expand_fallbacks: u64,
    /// Times a request waited for room under `GRAPH_REQUESTS_PER_MINUTE`.
    pub paced_waits: u64,
}

/// One client's own counts (token requests are the session's).
#[derive(Default)]
struct Counters {
    graph_requests: AtomicU64,
    throttled_responses: AtomicU64,
    expand_fallbacks: AtomicU64,
    paced_waits: AtomicU64,
}

struct CachedToken {
    value: SecretString,
    refresh_at: Instant,
    /// The tenant's GUID, as the token names it.
    tenant: String,
}

/// The `tid` claim of an Entra access token (a JWT), if it has one. The token came from Entra
/// over TLS, so it is read, not verified; only Graph verifies it. Only a GUID-shaped value is
/// taken.
fn token_tenant(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let tid = claims.get("tid")?.as_str()?;
    let guid_shaped = tid.len() == 36 && tid.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    guid_shaped.then(|| tid.to_ascii_lowercase())
}

/// What the clients of one tenant share: the HTTP pool, the credentials, the token, the backoff.
struct Session<P> {
    http: reqwest::Client,
    credentials: P,
    token: Mutex<Option<CachedToken>>,
    token_requests: AtomicU64,
    /// When Graph tells one request to back off, every concurrent request waits too (every
    /// stream's): retrying sooner from a sibling task would only count against the same quota.
    backoff_until: std::sync::Mutex<Option<Instant>>,
    /// The operator's limit on Graph requests, shared the same way.
    pacer: Option<Pacer>,
}

pub struct GraphClient<P> {
    session: Arc<Session<P>>,
    settings: GraphSettings,
    counters: Counters,
    /// Until when reads go without `$expand` after Graph failed one (see [`EXPAND_PAUSE`]).
    expand_paused_until: std::sync::Mutex<Option<Instant>>,
}

/// What one attempt at a request came to (see `GraphClient::after_attempt`).
enum Step<T> {
    /// An answer, or an error that retrying will not fix.
    Finished(Result<T, GraphError>),
    /// Worth another attempt after `wait`: `exhausted` is the error when no attempt is left,
    /// `late` the error when waiting would pass the deadline.
    Retry { wait: Duration, exhausted: GraphError, late: GraphError },
    /// Again at once, not counted as an attempt (after refreshing the token).
    Again,
}

/// Builds the HTTP client: rustls, proxy from `HTTPS_PROXY`/`NO_PROXY` (reqwest's default).
/// Redirects are never followed: a 307 on the token request would replay the form, client
/// secret included, to wherever `Location` points, and a followed page request would take a
/// stranger's answer for Graph's. Decompression is done here, within a size limit
/// ([`crate::body`]), not by reqwest. The trusted roots are the system's, read once for this
/// client and the AWS SDK's ([`crate::trust_roots`]).
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    let roots = crate::trust_roots::platform_roots();
    let builder = reqwest::Client::builder();
    // No roots at all: reqwest's own platform verifier then says so when the client is built.
    let builder = if roots.is_empty() {
        builder
    } else {
        builder.tls_certs_only(roots.iter().filter_map(|der| reqwest::Certificate::from_der(der).ok()))
    };
    builder
        .user_agent(concat!("xdr-sync/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .no_gzip()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(50))
        .build()
}

/// `url` without its `$expand` parameter (a nextLink of an expanded read carries it too).
fn without_expand(url: &Url) -> Url {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(name, _)| name != "$expand")
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect();
    let mut plain = url.clone();
    let text: Vec<String> =
        kept.iter().map(|(name, value)| format!("{name}={}", encode_query_value(value))).collect();
    plain.set_query(Some(&text.join("&")));
    plain
}

/// `scheme://host[:port]` of a URL (no path, query or user info), bounded for messages.
fn origin_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    let text = match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    };
    upstream_text::identifier(&text)
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The error for an answer that is a redirect (any 3xx) or came from another origin than the
/// request went to: redirects are never followed, whatever the HTTP client would do.
fn redirect_refusal(
    response: &Response,
    sent_to: &Url,
    request: &'static str,
    setting: &'static str,
) -> Option<GraphError> {
    let status = response.status();
    (status.is_redirection() || !same_origin(response.url(), sent_to)).then(|| GraphError::Redirected {
        request,
        status: status.as_u16(),
        location: redirect_target(response),
        setting,
    })
}

/// Where a redirect points: its origin only (the path and query may carry anything), or the raw
/// header bounded when it is not a URL.
fn redirect_target(response: &Response) -> String {
    let Some(location) = response.headers().get(reqwest::header::LOCATION) else {
        return "(no Location header)".into();
    };
    let text = String::from_utf8_lossy(location.as_bytes());
    match response.url().join(&text) {
        Ok(url) => origin_of(&url),
        Err(_) => upstream_text::identifier(&text),
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(deserialize_with = "number_or_string")]
    expires_in: u64,
}

#[derive(Deserialize, Default)]
struct EntraErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
    #[serde(default)]
    error_codes: Vec<u64>,
    #[serde(default)]
    trace_id: String,
}

#[derive(Deserialize, Default)]
struct GraphErrorBody {
    #[serde(default)]
    error: GraphErrorDetail,
}

#[derive(Deserialize, Default)]
struct GraphErrorDetail {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

fn number_or_string<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u64),
        Text(String),
    }
    match Either::deserialize(deserializer)? {
        Either::Number(number) => Ok(number),
        Either::Text(text) => text.parse().map_err(serde::de::Error::custom),
    }
}

/// What stays unencoded in a query value: RFC 3986's unreserved characters, and `:` (OData's
/// instants read better with it). Spaces become `%20`, never `+` (OData reads `+` literally in
/// some places).
const QUERY_VALUE: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b':');

fn encode_query_value(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, QUERY_VALUE).to_string()
}

fn request_id(response: &Response) -> String {
    ["request-id", "client-request-id", "x-ms-request-id"]
        .iter()
        .find_map(|name| response.headers().get(*name).and_then(|value| value.to_str().ok()))
        .map_or_else(|| "none".to_owned(), upstream_text::identifier)
}

/// Everything before "Trace ID:" in Entra's description, on one bounded line.
fn entra_summary(description: &str) -> String {
    let head = description.split(" Trace ID:").next().unwrap_or(description);
    upstream_text::message(head)
}

fn entra_code(body: &EntraErrorBody) -> Option<u64> {
    body.error_codes.first().copied().or_else(|| {
        let rest = body.error_description.split("AADSTS").nth(1)?;
        rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
    })
}

impl<P: CredentialProvider> GraphClient<P> {
    pub fn new(http: reqwest::Client, settings: GraphSettings, credentials: P) -> Self {
        let session = Session {
            http,
            credentials,
            token: Mutex::new(None),
            token_requests: AtomicU64::new(0),
            backoff_until: std::sync::Mutex::new(None),
            pacer: settings.request_rate.map(Pacer::new),
        };
        Self {
            session: Arc::new(session),
            settings,
            counters: Counters::default(),
            expand_paused_until: std::sync::Mutex::new(None),
        }
    }

    /// A client for `stream` in the same session: the same token (no second sign-in), the same
    /// backoff, its own counts.
    pub fn for_stream(&self, stream: Stream) -> Self {
        let settings = GraphSettings { stream, ..self.settings.clone() };
        Self {
            session: Arc::clone(&self.session),
            settings,
            counters: Counters::default(),
            expand_paused_until: std::sync::Mutex::new(None),
        }
    }

    pub fn stats(&self) -> GraphStats {
        GraphStats {
            graph_requests: self.counters.graph_requests.load(Ordering::Relaxed),
            throttled_responses: self.counters.throttled_responses.load(Ordering::Relaxed),
            token_requests: self.session.token_requests.load(Ordering::Relaxed),
            expand_fallbacks: self.counters.expand_fallbacks.load(Ordering::Relaxed),
            paced_waits: self.counters.paced_waits.load(Ordering::Relaxed),
        }
    }

    pub fn settings(&self) -> &GraphSettings {
        &self.settings
    }

    /// The stream's collection on the Graph host in use.
    fn collection_url(&self) -> Url {
        let graph = &self.settings.endpoints.graph;
        graph.join(self.settings.stream.resource_path).unwrap_or_else(|_| graph.clone())
    }

    /// The URL of a query the engine built: its `$filter`, `$top`, `$skip` and `$count`.
    pub fn query_url(&self, query: &Query) -> Url {
        let mut url = self.collection_url();
        let top = query.top.clamp(1, self.settings.stream.max_page_size.max(1));
        let mut text = format!("$filter={}&$top={top}", encode_query_value(&query.filter()));
        if query.skip > 0 {
            text.push_str(&format!("&$skip={}", query.skip));
        }
        if query.count {
            text.push_str("&$count=true");
        }
        if self.expands() {
            text.push_str("&$expand=alerts");
        }
        url.set_query(Some(&text));
        url
    }

    /// Reads one record (`$top=1`): proves the token carries the permission this stream needs
    /// (Graph answers 403 without it), before a tenant is registered.
    pub async fn probe(&self, deadline: Option<DateTime<Utc>>) -> Result<(), SourceError> {
        let mut url = self.collection_url();
        url.set_query(Some("$top=1"));
        self.get(url, deadline, false).await.map(|_| ()).map_err(SourceError::from)
    }

    /// Whether reads inline each incident's alerts.
    fn expands(&self) -> bool {
        self.settings.expand_alerts && self.settings.stream == xdr_core::stream::INCIDENTS
    }

    /// Whether expansion is paused after a failed expanded read (see [`EXPAND_PAUSE`]).
    fn expansion_paused(&self) -> bool {
        let paused = self.expand_paused_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        paused.is_some_and(|until| Instant::now() < until)
    }

    /// A nextLink is followed verbatim, but only to the Graph host in use.
    pub fn check_next_link(&self, link: &str) -> Result<Url, GraphError> {
        let graph = &self.settings.endpoints.graph;
        let expected = origin_of(graph);
        let url = Url::parse(link).map_err(|_| GraphError::ForeignNextLink {
            found: "(not a URL)".into(),
            expected: expected.clone(),
        })?;
        if !same_origin(&url, graph) || !url.username().is_empty() || url.password().is_some() {
            return Err(GraphError::ForeignNextLink { found: origin_of(&url), expected });
        }
        Ok(url)
    }

    /// The client's own check before a request leaves: an allowed scheme and host (whatever the
    /// settings said), on the origin the request belongs to.
    fn check_destination(&self, url: &Url, request: &'static str, home: &Url) -> Result<(), GraphError> {
        let refused = |problem: String| GraphError::NotAllowed { request, url: origin_of(url), problem };
        check_origin(url).map_err(|error| refused(error.to_string()))?;
        if !same_origin(url, home) {
            return Err(refused(format!("it is not on {}", origin_of(home))));
        }
        Ok(())
    }

    /// How long the next request may take, or `OutOfTime` if it cannot start.
    fn request_timeout(&self, deadline: Option<DateTime<Utc>>) -> Result<Duration, GraphError> {
        let Some(deadline) = deadline else { return Ok(self.settings.request_timeout) };
        let left = (deadline - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        if left < MIN_REQUEST_TIME {
            return Err(GraphError::OutOfTime("no time left for another request".into()));
        }
        Ok(left.min(self.settings.request_timeout))
    }

    /// Waits `wait` unless that would pass the deadline.
    async fn wait_or_give_up(&self, wait: Duration, deadline: Option<DateTime<Utc>>) -> bool {
        if let Some(deadline) = deadline {
            let left = (deadline - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            if wait.saturating_add(MIN_REQUEST_TIME) > left {
                return false;
            }
        }
        tokio::time::sleep(wait).await;
        true
    }

    /// Extends the shared backoff to at least `wait` from now.
    fn back_off_all(&self, wait: Duration) {
        let now = Instant::now();
        // `wait` is bounded by `MAX_RETRY_AFTER`; checked all the same, as no wait may panic.
        let until = now.checked_add(wait).unwrap_or(now);
        let mut shared = self.session.backoff_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *shared = Some(shared.map_or(until, |current| current.max(until)));
    }

    /// Waits for room under the operator's limit on requests, unless that passes the deadline.
    async fn take_request_slot(&self, deadline: Option<DateTime<Utc>>) -> Result<(), GraphError> {
        let Some(pacer) = &self.session.pacer else { return Ok(()) };
        while let Some(wait) = pacer.try_take(Instant::now()) {
            self.counters.paced_waits.fetch_add(1, Ordering::Relaxed);
            debug!(wait_ms = wait.as_millis() as u64, "Waiting for room under GRAPH_REQUESTS_PER_MINUTE.");
            if !self.wait_or_give_up(wait, deadline).await {
                let rate = pacer.rate();
                return Err(GraphError::RateLimited {
                    requests: rate.requests,
                    per_seconds: rate.per.as_secs(),
                    wait_ms: wait.as_millis() as u64,
                });
            }
        }
        Ok(())
    }

    /// Waits out a backoff another request was told to observe, unless that passes the deadline.
    async fn respect_shared_backoff(&self, deadline: Option<DateTime<Utc>>) -> Result<(), GraphError> {
        let until = *self.session.backoff_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(wait) = until.and_then(|until| until.checked_duration_since(Instant::now())) else {
            return Ok(());
        };
        if self.wait_or_give_up(wait, deadline).await {
            Ok(())
        } else {
            Err(GraphError::BackingOff { wait_ms: wait.as_millis() as u64 })
        }
    }

    /// A cached token, or a new one.
    async fn token(&self, deadline: Option<DateTime<Utc>>) -> Result<SecretString, GraphError> {
        self.token_and_tenant(deadline).await.map(|(token, _)| token)
    }

    async fn token_and_tenant(
        &self,
        deadline: Option<DateTime<Utc>>,
    ) -> Result<(SecretString, String), GraphError> {
        let mut cached = self.session.token.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok((token.value.clone(), token.tenant.clone()));
        }
        let fresh = self.request_token(deadline).await?;
        let found = (fresh.value.clone(), fresh.tenant.clone());
        *cached = Some(fresh);
        Ok(found)
    }

    async fn forget_token(&self) {
        *self.session.token.lock().await = None;
    }

    async fn request_token(&self, deadline: Option<DateTime<Utc>>) -> Result<CachedToken, GraphError> {
        let credentials = self.session.credentials.credentials().await.map_err(GraphError::Credentials)?;
        let endpoints = &self.settings.endpoints;
        let url = endpoints.login.join(&format!("{}/oauth2/v2.0/token", self.settings.tenant_id)).map_err(
            |error| GraphError::Credentials(format!("TENANT_ID makes an invalid token URL: {error}")),
        )?;
        // `TENANT_ID` is checked when settings are read; this holds for any caller.
        self.check_destination(&url, "token request", &endpoints.login)?;
        let scope = endpoints.scope();
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", credentials.client_id.as_str()),
            ("client_secret", credentials.client_secret.expose_secret()),
            ("scope", scope.as_str()),
        ];
        let mut attempt = 0;
        loop {
            attempt += 1;
            let step = self.token_attempt(&url, &form, &credentials.client_id, deadline, attempt).await;
            if let Some(result) = self.after_attempt(step, &mut attempt, deadline).await {
                return result;
            }
        }
    }

    /// One token request, and what it comes to.
    async fn token_attempt(
        &self,
        url: &Url,
        form: &[(&str, &str)],
        client_id: &str,
        deadline: Option<DateTime<Utc>>,
        attempt: u32,
    ) -> Step<CachedToken> {
        let timeout = match self.request_timeout(deadline) {
            Ok(timeout) => timeout,
            Err(error) => return Step::Finished(Err(error)),
        };
        self.session.token_requests.fetch_add(1, Ordering::Relaxed);
        let retry = |wait: Duration| Step::Retry {
            wait,
            exhausted: GraphError::Unavailable {
                attempts: attempt,
                last: "the token endpoint kept failing".into(),
            },
            late: GraphError::OutOfTime("waiting for the token endpoint would pass the deadline".into()),
        };
        let response = match self.session.http.post(url.clone()).form(form).timeout(timeout).send().await {
            Ok(response) => response,
            Err(error) if let Some(reason) = refused_certificate(&error) => {
                let (request, origin) = ("token request", origin_of(url));
                return Step::Finished(Err(GraphError::UntrustedCertificate { request, origin, reason }));
            }
            Err(error) if is_retryable_transport(&error) => {
                warn!(error = %error.without_url(), attempt, "Token request failed; retrying.");
                return retry(self.settings.retry.delay(attempt, None));
            }
            Err(error) => {
                return Step::Finished(Err(GraphError::Unavailable {
                    attempts: attempt,
                    last: error.without_url().to_string(),
                }));
            }
        };
        if let Some(refused) =
            redirect_refusal(&response, url, "token request", "LOGIN_BASE_URL and TENANT_ID")
        {
            return Step::Finished(Err(refused));
        }
        let status = response.status();
        if status.is_success() {
            return Step::Finished(self.read_token(response).await);
        }
        if is_retryable_status(status) {
            let after = retry_after(response.headers(), Utc::now());
            return retry(self.settings.retry.delay(attempt, after));
        }
        let error = self.token_error(response, client_id).await;
        self.session.credentials.invalidate().await;
        Step::Finished(Err(error))
    }

    /// A token answer, read within its limit.
    async fn read_token(&self, response: Response) -> Result<CachedToken, GraphError> {
        let status = response.status().as_u16();
        let body = read_capped(response, TOKEN_BODY_LIMIT).await.map_err(|error| match error {
            BodyError::TooLarge { .. } => GraphError::TooLarge {
                request: "token request",
                limit_mb: TOKEN_BODY_LIMIT / (1024 * 1024),
                detail: error.to_string(),
            },
            error => GraphError::BadTokenResponse { status, detail: error.to_string() },
        })?;
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|error| GraphError::BadTokenResponse {
                status,
                // Where, not serde's text: that would quote the value, token and all.
                detail: format!("not a token response ({})", xdr_core::page::where_json_failed(&error)),
            })?;
        // Refresh a little early: 5 minutes, or a fifth of a short lifetime. A lifetime beyond a
        // day is taken as a day (no value can overflow `Instant`).
        let lifetime = Duration::from_secs(parsed.expires_in.min(24 * 3600));
        let early = Duration::from_secs(300).min(lifetime / 5);
        info!(expires_in = parsed.expires_in, "Got an access token.");
        // An opaque token (not Entra's JWT) names no tenant: the configured one.
        let tenant = token_tenant(&parsed.access_token)
            .unwrap_or_else(|| self.settings.tenant_id.to_ascii_lowercase());
        Ok(CachedToken {
            value: SecretString::from(parsed.access_token),
            refresh_at: Instant::now().checked_add(lifetime - early).unwrap_or_else(Instant::now),
            tenant,
        })
    }

    /// The one retry rule, for token and page requests alike: what follows attempt `attempt`
    /// (`Some`: the result; `None`: attempt again). Attempts go up to the policy's maximum, and
    /// a wait is made only if it ends before the deadline.
    async fn after_attempt<T>(
        &self,
        step: Step<T>,
        attempt: &mut u32,
        deadline: Option<DateTime<Utc>>,
    ) -> Option<Result<T, GraphError>> {
        match step {
            Step::Finished(result) => Some(result),
            Step::Again => {
                *attempt -= 1;
                None
            }
            Step::Retry { wait, exhausted, late } => {
                if *attempt >= self.settings.retry.max_attempts {
                    return Some(Err(exhausted));
                }
                if !self.wait_or_give_up(wait, deadline).await {
                    return Some(Err(late));
                }
                None
            }
        }
    }

    async fn token_error(&self, response: Response, client_id: &str) -> GraphError {
        let status = response.status().as_u16();
        let body: EntraErrorBody = read_capped(response, ERROR_BODY_LIMIT)
            .await
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let tenant = self.settings.tenant_id.clone();
        match entra_code(&body) {
            Some(7_000_215) => GraphError::InvalidSecret { client_id: client_id.to_owned() },
            Some(7_000_222) => GraphError::ExpiredSecret { client_id: client_id.to_owned() },
            Some(700_016) => GraphError::AppNotFound { client_id: client_id.to_owned(), tenant },
            Some(90_002) => GraphError::TenantNotFound {
                tenant,
                login: self.settings.endpoints.login.as_str().trim_end_matches('/').to_owned(),
            },
            code => GraphError::Entra {
                status,
                code: match code {
                    Some(code) => format!("AADSTS{code}"),
                    None if body.error.is_empty() => "no error code".into(),
                    None => upstream_text::identifier(&body.error),
                },
                summary: match entra_summary(&body.error_description) {
                    summary if summary.is_empty() => "no description".into(),
                    summary => summary,
                },
                trace_id: match upstream_text::identifier(&body.trace_id) {
                    id if id.is_empty() => "none".into(),
                    id => id,
                },
            },
        }
    }

    /// GET with retries, token refresh on 401 (once), and deadline awareness.
    async fn get(
        &self,
        url: Url,
        deadline: Option<DateTime<Utc>>,
        expanded: bool,
    ) -> Result<FetchedPage, GraphError> {
        self.check_destination(&url, "page request", &self.settings.endpoints.graph)?;
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let step = self.page_attempt(&url, deadline, attempt, &mut refreshed, expanded).await;
            if let Some(result) = self.after_attempt(step, &mut attempt, deadline).await {
                return result;
            }
        }
    }

    /// A read with `$expand`: if Graph fails it with a 5xx, the same read without the expansion
    /// (with the full retry budget), and reads go without it for [`EXPAND_PAUSE`]. The records
    /// are the same either way, only without their alerts inlined; the alerts stream has those.
    async fn get_expanded(
        &self,
        url: Url,
        deadline: Option<DateTime<Utc>>,
    ) -> Result<FetchedPage, GraphError> {
        let failed = if self.expansion_paused() {
            None
        } else {
            match self.get(url.clone(), deadline, true).await {
                Err(GraphError::Unavailable { last, .. }) => Some(last),
                other => return other,
            }
        };
        self.counters.expand_fallbacks.fetch_add(1, Ordering::Relaxed);
        if let Some(last) = failed {
            let now = Instant::now();
            *self.expand_paused_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                Some(now.checked_add(EXPAND_PAUSE).unwrap_or(now));
            warn!(
                stream = self.settings.stream.name,
                last = %last,
                pause_minutes = EXPAND_PAUSE.as_secs() / 60,
                "Graph failed a read with $expand=alerts; reading it without the expansion, and the next reads too for a while."
            );
        }
        self.get(without_expand(&url), deadline, false).await
    }

    /// Another attempt after `problem`, `wait` from now.
    fn retry_after_problem<T>(&self, attempt: u32, wait: Duration, problem: String) -> Step<T> {
        Step::Retry {
            wait,
            late: GraphError::OutOfTime(format!("retrying after `{problem}` would pass the deadline")),
            exhausted: GraphError::Unavailable { attempts: attempt, last: problem },
        }
    }

    /// One page request, and what it comes to.
    /// An `expanded` read that Graph fails with a 5xx is not retried nor made to hold back other
    /// requests: that failure is about the expansion, not Graph's load (see `get_expanded`).
    async fn page_attempt(
        &self,
        url: &Url,
        deadline: Option<DateTime<Utc>>,
        attempt: u32,
        refreshed: &mut bool,
        expanded: bool,
    ) -> Step<FetchedPage> {
        if let Err(error) = self.respect_shared_backoff(deadline).await {
            return Step::Finished(Err(error));
        }
        let token = match self.token(deadline).await {
            Ok(token) => token,
            Err(error) => return Step::Finished(Err(error)),
        };
        // After the token: a token request is Entra's, not counted against Graph's quota.
        if let Err(error) = self.take_request_slot(deadline).await {
            return Step::Finished(Err(error));
        }
        let timeout = match self.request_timeout(deadline) {
            Ok(timeout) => timeout,
            Err(error) => return Step::Finished(Err(error)),
        };
        self.counters.graph_requests.fetch_add(1, Ordering::Relaxed);
        let sent = self
            .session
            .http
            .get(url.clone())
            .bearer_auth(token.expose_secret())
            .header("Prefer", "include-unknown-enum-members")
            .header("Accept", "application/json")
            .header("Accept-Encoding", "gzip")
            .timeout(timeout)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) if let Some(reason) = refused_certificate(&error) => {
                let (request, origin) = ("page request", origin_of(url));
                return Step::Finished(Err(GraphError::UntrustedCertificate { request, origin, reason }));
            }
            Err(error) if is_retryable_transport(&error) => {
                let problem = error.without_url().to_string();
                warn!(attempt, problem = %problem, "Graph request failed; retrying.");
                return self.retry_after_problem(attempt, self.settings.retry.delay(attempt, None), problem);
            }
            Err(error) => {
                return Step::Finished(Err(GraphError::Unavailable {
                    attempts: attempt,
                    last: error.without_url().to_string(),
                }));
            }
        };
        if let Some(refused) = redirect_refusal(&response, url, "page request", "GRAPH_BASE_URL") {
            return Step::Finished(Err(refused));
        }
        let status = response.status();
        let request_id = request_id(&response);
        if status == StatusCode::PARTIAL_CONTENT {
            // One provider behind the security API failed: records may be missing.
            let warning = response
                .headers()
                .get(reqwest::header::WARNING)
                .and_then(|value| value.to_str().ok())
                .map_or_else(|| "no Warning header".to_owned(), upstream_text::message);
            let problem = format!(
                "Graph answered 206 Partial Content (request-id {request_id}, Warning: {warning}): a provider behind it failed and the page may be missing alerts"
            );
            warn!(request_id = %request_id, attempt, warning = %warning, "Graph answered 206 Partial Content; retrying.");
            let wait = self.settings.retry.delay(attempt, retry_after(response.headers(), Utc::now()));
            self.back_off_all(wait);
            return self.retry_after_problem(attempt, wait, problem);
        }
        if status.is_success() {
            return match read_capped(response, self.settings.max_response_bytes).await {
                Ok(body) => {
                    debug!(request_id = %request_id, bytes = body.len(), "Got a page.");
                    Step::Finished(Ok(FetchedPage { body, request_id: Some(request_id) }))
                }
                Err(error) if error.is_transient() => {
                    let problem = format!("reading the page failed: {error}");
                    warn!(request_id = %request_id, attempt, problem = %problem, "Retrying.");
                    self.retry_after_problem(attempt, self.settings.retry.delay(attempt, None), problem)
                }
                Err(error @ BodyError::TooLarge { .. }) => Step::Finished(Err(GraphError::TooLarge {
                    request: "page request",
                    limit_mb: self.settings.max_response_bytes / (1024 * 1024),
                    detail: format!("{error} (request-id {request_id})"),
                })),
                Err(error) => Step::Finished(Err(GraphError::Unreadable {
                    request: "page request",
                    detail: format!("{error} (request-id {request_id})"),
                })),
            };
        }
        if status == StatusCode::UNAUTHORIZED && !*refreshed {
            // The token may have expired early or been revoked: one fresh token.
            warn!(request_id = %request_id, "Graph answered 401; refreshing the token once.");
            *refreshed = true;
            self.forget_token().await;
            return Step::Again;
        }
        if expanded && status.is_server_error() {
            return Step::Finished(Err(GraphError::Unavailable {
                attempts: attempt,
                last: format!("HTTP {} (request-id {request_id})", status.as_u16()),
            }));
        }
        if is_retryable_status(status) {
            if status == StatusCode::TOO_MANY_REQUESTS {
                self.counters.throttled_responses.fetch_add(1, Ordering::Relaxed);
            }
            let after = retry_after(response.headers(), Utc::now());
            let wait = self.settings.retry.delay(attempt, after);
            self.back_off_all(wait);
            warn!(
                status = status.as_u16(),
                request_id = %request_id,
                retry_after_ms = after.map(|a| a.as_millis() as u64),
                wait_ms = wait.as_millis() as u64,
                attempt,
                "Graph asked us to back off."
            );
            let throttled = |detail: String| GraphError::Throttled {
                attempts: attempt,
                status: status.as_u16(),
                request_id: request_id.clone(),
                detail,
            };
            let exhausted = if status == StatusCode::TOO_MANY_REQUESTS {
                throttled(String::new())
            } else {
                GraphError::Unavailable {
                    attempts: attempt,
                    last: format!("HTTP {} (request-id {request_id})", status.as_u16()),
                }
            };
            let late = throttled(format!("; waiting {} ms would pass the deadline", wait.as_millis()));
            return Step::Retry { wait, exhausted, late };
        }
        Step::Finished(Err(self.graph_error(response, request_id).await))
    }

    async fn graph_error(&self, response: Response, request_id: String) -> GraphError {
        let status = response.status().as_u16();
        let body: GraphErrorBody = read_capped(response, ERROR_BODY_LIMIT)
            .await
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        // Graph's words, bounded and on one line: they reach logs, Lambda error payloads and the
        // dead-letter queue.
        let code = match upstream_text::identifier(&body.error.code) {
            code if code.is_empty() => "no error code".to_owned(),
            code => code,
        };
        let message = match upstream_text::message(&body.error.message) {
            message if message.is_empty() => "no message".to_owned(),
            message => message,
        };
        if status == 401 || status == 403 {
            GraphError::Forbidden {
                status,
                code,
                message,
                request_id,
                permission: self.settings.stream.permission,
            }
        } else {
            GraphError::Rejected { status, code, message, request_id }
        }
    }
}

impl<P: CredentialProvider> AlertSource for GraphClient<P> {
    fn counts(&self) -> SourceCounts {
        let stats = self.stats();
        SourceCounts {
            graph_requests: stats.graph_requests,
            throttled_responses: stats.throttled_responses,
            token_requests: stats.token_requests,
            expand_fallbacks: stats.expand_fallbacks,
        }
    }

    async fn authenticate(&self, deadline: Option<DateTime<Utc>>) -> Result<Identity, SourceError> {
        let (_, tenant) = self.token_and_tenant(deadline).await.map_err(SourceError::from)?;
        Ok(Identity { tenant })
    }

    async fn fetch(
        &self,
        request: PageRequest<'_>,
        deadline: Option<DateTime<Utc>>,
    ) -> Result<FetchedPage, SourceError> {
        let url = match request {
            PageRequest::Query(query) => self.query_url(&query),
            PageRequest::Next { link } => self.check_next_link(link)?,
        };
        let expanded = url.query_pairs().any(|(name, _)| name == "$expand");
        if expanded {
            Ok(self.get_expanded(url, deadline).await?)
        } else {
            Ok(self.get(url, deadline, false).await?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::Cloud;
    use crate::credentials::{ClientCredentials, StaticCredentials};

    fn client() -> GraphClient<StaticCredentials> {
        let settings = GraphSettings {
            tenant_id: "contoso".into(),
            stream: xdr_core::stream::ALERTS,
            endpoints: Endpoints::for_cloud(Cloud::Global, None, None).unwrap(),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            expand_alerts: false,
            request_rate: None,
        };
        let credentials = StaticCredentials(ClientCredentials {
            client_id: "app".into(),
            client_secret: SecretString::from("s3cr3t-value"),
        });
        GraphClient::new(http_client().unwrap(), settings, credentials)
    }

    #[test]
    fn query_urls_filter_on_last_update_with_tick_precision() {
        let from = xdr_core::timeutil::parse_instant("2026-11-28T06:00:00.1234567Z").unwrap();
        let to = xdr_core::timeutil::parse_instant("2026-11-28T07:00:00Z").unwrap();
        let url = client().query_url(&Query::slice(from, to, 1000));
        assert_eq!(
            url.as_str(),
            "https://graph.microsoft.com/v1.0/security/alerts_v2?$filter=lastUpdateDateTime%20ge%202026-11-28T06:00:00.1234567Z%20and%20lastUpdateDateTime%20lt%202026-11-28T07:00:00.0000000Z&$top=1000&$count=true"
        );
        let narrowed = Query {
            skip: 500,
            ..Query::instant(
                from,
                vec![xdr_core::Constraint::Is {
                    property: xdr_core::Property::AssignedTo,
                    value: "o'brien@contoso.com".into(),
                }],
                1000,
            )
        };
        assert_eq!(
            client().query_url(&narrowed).as_str(),
            "https://graph.microsoft.com/v1.0/security/alerts_v2?$filter=lastUpdateDateTime%20ge%202026-11-28T06:00:00.1234567Z%20and%20lastUpdateDateTime%20lt%202026-11-28T06:00:00.1234568Z%20and%20assignedTo%20eq%20%27o%27%27brien%40contoso.com%27&$top=1000&$skip=500&$count=true"
        );
    }

    #[test]
    fn incidents_ask_for_at_most_fifty_and_expand_only_when_told() {
        let from = xdr_core::timeutil::parse_instant("2026-11-28T06:00:00Z").unwrap();
        let to = xdr_core::timeutil::parse_instant("2026-11-28T07:00:00Z").unwrap();
        let alerts = client();
        let incidents = alerts.for_stream(xdr_core::stream::INCIDENTS);
        let url = incidents.query_url(&Query::slice(from, to, 1000));
        assert!(url.as_str().starts_with("https://graph.microsoft.com/v1.0/security/incidents?$filter="));
        assert!(url.as_str().ends_with("&$top=50&$count=true"), "{url}");
        let mut settings = alerts.settings().clone();
        settings.expand_alerts = true;
        let expanding = GraphClient::new(
            http_client().unwrap(),
            settings,
            StaticCredentials(ClientCredentials {
                client_id: "app".into(),
                client_secret: SecretString::from("s3cr3t-value"),
            }),
        );
        assert!(
            !expanding.query_url(&Query::slice(from, to, 10)).as_str().contains("$expand"),
            "alerts never expand"
        );
        let url = expanding.for_stream(xdr_core::stream::INCIDENTS).query_url(&Query::slice(from, to, 10));
        assert!(url.as_str().ends_with("&$top=10&$count=true&$expand=alerts"), "{url}");
        let plain = without_expand(&url);
        assert!(!plain.as_str().contains("expand"), "{plain}");
        assert_eq!(plain.query_pairs().count(), 3);
        assert_eq!(
            plain.query_pairs().find(|(name, _)| name == "$filter"),
            url.query_pairs().find(|(name, _)| name == "$filter")
        );
        // Both streams' clients share one session: one token, one backoff.
        assert!(Arc::ptr_eq(&alerts.session, &incidents.session));
    }

    #[test]
    fn next_links_must_stay_on_the_graph_host() {
        let client = client();
        assert!(
            client.check_next_link("https://graph.microsoft.com/v1.0/security/alerts_v2?$skip=1000").is_ok()
        );
        for foreign in [
            "https://evil.example/v1.0/security/alerts_v2?$skip=1000",
            "http://graph.microsoft.com/v1.0/security/alerts_v2?$skip=1000",
            "https://graph.microsoft.com:8443/v1.0/security/alerts_v2",
            "https://graph.microsoft.com.evil.example/x",
            "/relative",
        ] {
            assert!(
                matches!(client.check_next_link(foreign), Err(GraphError::ForeignNextLink { .. })),
                "{foreign}"
            );
        }
    }

    #[test]
    fn entra_codes_come_from_the_list_or_the_description() {
        let body = EntraErrorBody {
            error_description: "AADSTS7000222: expired. Trace ID: x".into(),
            ..Default::default()
        };
        assert_eq!(entra_code(&body), Some(7_000_222));
        assert_eq!(entra_summary("AADSTS50011: bad. Trace ID: 1 Correlation ID: 2"), "AADSTS50011: bad.");
    }

    #[test]
    fn credentials_debug_hides_the_secret() {
        let text = format!("{:?}", client().session.credentials.0);
        assert!(!text.contains("s3cr3t-value"));
    }
}
