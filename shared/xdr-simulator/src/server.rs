//! The simulated Entra token endpoint and Graph `alerts_v2`, over real HTTP on loopback.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, RawForm, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, TimeDelta, Utc};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::graph::{ALERTS_V2, Collection, GraphBehaviour, GraphMode, INCIDENTS, ListRequest, answer_for};
use crate::incidents::Incidents;
use crate::tenant::{SimTenant, SimVersion};

/// A fault applied to the next Graph request(s), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// No fault for this request (to place a later fault at the n-th request).
    Pass,
    /// Answer with this status (429, 503, 504, 500...) and optional `Retry-After` seconds.
    Status { status: u16, retry_after: Option<u32> },
    /// Answer 200 with a body cut in the middle.
    TruncatedPage,
    /// Answer 200 with JSON of an unexpected shape (no `value`).
    UnexpectedShape,
    /// Answer 200 with a `value` that is an object, not an array.
    ValueNotAnArray,
    /// Treat every token issued so far as expired (the request gets a 401).
    ExpireTokens,
    /// Answer normally but with a nextLink pointing at another host.
    ForeignNextLink,
    /// Wait this long before answering.
    Delay(Duration),
    /// Answer 206 Partial Content with a `Warning` header, one provider's alerts left out (the
    /// security API's documented way of saying a provider behind it failed).
    PartialContent,
    /// Answer with a redirect (`status`: 301, 302, 303, 307, 308) to `location`, as an attacker
    /// in the path (or a misconfigured proxy) would.
    Redirect { status: u16, location: String },
    /// Answer `status` with this `Retry-After` text, whatever it says (`1e19`, a date in 9999).
    RetryAfterText { status: u16, value: String },
    /// Answer 200 with the real answer padded (a JSON member) to about `bytes` bytes.
    Oversized { bytes: usize },
    /// Answer 200 with the real answer followed by whitespace up to `bytes` bytes, gzipped at
    /// the best level whatever the request asked for (a decompression bomb that parses).
    GzipBomb { bytes: usize },
    /// Answer `status` with an error whose text is long and carries control characters, a
    /// forged log line and terminal escapes.
    HostileError { status: u16 },
}

/// The error text [`Fault::HostileError`] sends (before it is made long).
pub const HOSTILE_TEXT: &str = "Access denied.\r\n{\"level\":\"INFO\",\"fields\":{\"message\":\"forged log line\"}}\u{1b}[2J\u{1b}[31mRED\u{202e}txt.exe\u{0}";

/// One request the simulator served.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub at: std::time::Instant,
    pub endpoint: &'static str,
    pub query: String,
    pub status: u16,
    pub prefer: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub token_lifetime: TimeDelta,
    /// Added to every Graph page (Graph's own latency is ~100-500 ms).
    pub page_latency: Duration,
    /// How Graph pages, counts and orders (strict by default: see `GraphMode`).
    pub graph: GraphBehaviour,
    /// The client secret has expired (Entra answers AADSTS7000222).
    pub secret_expired: bool,
    /// The app lacks `SecurityIncident.Read.All`: incidents are answered with 403, as Graph
    /// answers a missing application role.
    pub incidents_forbidden: bool,
    /// The app lacks `SecurityAlert.Read.All` (no admin consent in this tenant): alerts are
    /// answered with 403. Entra still issues a token, without the role.
    pub alerts_forbidden: bool,
    /// Until then, every Graph request is answered 429 with a `Retry-After` of the time left
    /// (a tenant throttled for minutes).
    pub throttled_until: Option<DateTime<Utc>>,
    /// Graph's quota: at most this many requests in any window; past it, 429 with a
    /// `Retry-After` of the whole seconds until the window has room (requests answered 429 do
    /// not count).
    pub quota: Option<Quota>,
}

/// At most `requests` Graph requests in any `per` (the published security quota is 150 a
/// minute per app and tenant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub requests: usize,
    pub per: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            token_lifetime: TimeDelta::seconds(3599),
            page_latency: Duration::ZERO,
            graph: GraphMode::from_env().behaviour(),
            secret_expired: false,
            incidents_forbidden: false,
            alerts_forbidden: false,
            throttled_until: None,
            quota: None,
        }
    }
}

impl SimOptions {
    /// The defaults, with Graph paging as `mode` says.
    pub fn mode(mode: GraphMode) -> Self {
        Self { graph: mode.behaviour(), ..Self::default() }
    }
}

pub(crate) struct SimState {
    pub tenant: SimTenant,
    pub options: SimOptions,
    pub tokens: HashMap<String, DateTime<Utc>>,
    pub faults: VecDeque<Fault>,
    /// Faults for the token endpoint, in order.
    pub token_faults: VecDeque<Fault>,
    pub log: Vec<RequestRecord>,
    pub issued: u64,
    pub base_url: String,
    /// What Graph lists, kept between requests until the tenant changes or a late version
    /// becomes visible (so a million-alert tenant does not rebuild it for every page).
    pub listing: Option<Listing>,
    /// The incidents derived from the tenant's alerts, and their listing, kept the same way.
    pub incidents: Option<(Incidents, Listing)>,
    /// When the authenticated Graph requests inside the quota's window came.
    pub quota_log: VecDeque<std::time::Instant>,
}

pub(crate) struct Listing {
    /// Indices into the tenant's versions: each alert's current version, by time then id.
    by_time: Vec<usize>,
    /// The listing changes when this instant comes (the next late version shows).
    valid_until: Option<DateTime<Utc>>,
}

impl Listing {
    fn build(versions: &[SimVersion], now: DateTime<Utc>) -> Self {
        let mut latest: HashMap<&str, usize> = HashMap::new();
        let mut valid_until: Option<DateTime<Utc>> = None;
        for (index, version) in versions.iter().enumerate() {
            if version.visible_at > now {
                valid_until = Some(valid_until.map_or(version.visible_at, |t| t.min(version.visible_at)));
                continue;
            }
            let entry = latest.entry(version.id.as_str()).or_insert(index);
            if version.last_update > versions[*entry].last_update {
                *entry = index;
            }
        }
        let mut by_time: Vec<usize> = latest.into_values().collect();
        by_time.sort_by(|a, b| {
            let (a, b) = (&versions[*a], &versions[*b]);
            a.last_update.cmp(&b.last_update).then(a.id.cmp(&b.id))
        });
        Self { by_time, valid_until }
    }
}

type Shared = Arc<Mutex<SimState>>;

fn lock(state: &Shared) -> MutexGuard<'_, SimState> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One simulated tenant as a server serves it: its data, options, faults and request log.
#[derive(Clone)]
pub struct TenantHandle {
    state: Shared,
}

impl TenantHandle {
    fn new(tenant: SimTenant, options: SimOptions, base_url: &str) -> Self {
        let state = Arc::new(Mutex::new(SimState {
            tenant,
            options,
            tokens: HashMap::new(),
            faults: VecDeque::new(),
            token_faults: VecDeque::new(),
            log: Vec::new(),
            issued: 0,
            base_url: base_url.to_owned(),
            listing: None,
            incidents: None,
            quota_log: VecDeque::new(),
        }));
        Self { state }
    }

    pub fn tenant_id(&self) -> String {
        lock(&self.state).tenant.tenant_id.clone()
    }

    pub fn client_id(&self) -> String {
        lock(&self.state).tenant.client_id.clone()
    }

    pub fn client_secret(&self) -> String {
        lock(&self.state).tenant.client_secret.clone()
    }

    /// Changes the tenant (add alerts, updates...) while serving.
    pub fn with_tenant<R>(&self, change: impl FnOnce(&mut SimTenant) -> R) -> R {
        let mut sim = lock(&self.state);
        sim.listing = None;
        sim.incidents = None;
        change(&mut sim.tenant)
    }

    pub fn tenant(&self) -> SimTenant {
        lock(&self.state).tenant.clone()
    }

    pub fn options(&self, change: impl FnOnce(&mut SimOptions)) {
        change(&mut lock(&self.state).options);
    }

    /// Clients reach this tenant at `url` (behind a TLS front, say): Graph's scope, the tokens'
    /// audience and nextLinks name it, as the real services name their public hosts.
    pub fn serve_as(&self, url: &str) {
        lock(&self.state).base_url = url.trim_end_matches('/').to_owned();
    }

    pub fn push_fault(&self, fault: Fault) {
        lock(&self.state).faults.push_back(fault);
    }

    /// A fault for the next token request (`Redirect`, `RetryAfterText`, `Oversized`, `GzipBomb`,
    /// `HostileError`, `Status`, `Delay`; others pass).
    pub fn push_token_fault(&self, fault: Fault) {
        lock(&self.state).token_faults.push_back(fault);
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.state).log.clone()
    }

    pub fn access_tokens(&self) -> Vec<String> {
        lock(&self.state).tokens.keys().cloned().collect()
    }

    /// Whether `path_tenant` (a token URL's tenant segment) names this tenant.
    fn answers_to(&self, path_tenant: &str) -> bool {
        let sim = lock(&self.state);
        path_tenant == sim.tenant.tenant_id || path_tenant == sim.tenant.domain()
    }

    fn issued(&self, token: &str) -> bool {
        lock(&self.state).tokens.contains_key(token)
    }
}

/// A running simulator of one tenant. Dropping it stops the server.
pub struct Simulator {
    base_url: String,
    handle: TenantHandle,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::ops::Deref for Simulator {
    type Target = TenantHandle;

    fn deref(&self) -> &TenantHandle {
        &self.handle
    }
}

/// Serves `app` on `listener` until the sender is used or dropped.
fn serve(listener: TcpListener, app: Router) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let (shutdown, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(error) = server.await {
            tracing::error!(%error, "Simulator stopped with an error.");
        }
    });
    (shutdown, task)
}

impl Simulator {
    /// Serves `tenant` on a free loopback port.
    pub async fn start(tenant: SimTenant, options: SimOptions) -> std::io::Result<Self> {
        Self::start_on(tenant, options, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(
        tenant: SimTenant,
        options: SimOptions,
        address: SocketAddr,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let handle = TenantHandle::new(tenant, options, &base_url);
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/v1.0/security/alerts_v2", get(alerts))
            .route("/v1.0/security/incidents", get(incidents))
            .with_state(handle.state.clone());
        let (shutdown, task) = serve(listener, app);
        Ok(Self { base_url, handle, shutdown: Some(shutdown), task: Some(task) })
    }

    /// `http://127.0.0.1:<port>`: both the login and the Graph base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Many simulated tenants behind one login host and one Graph host, as Entra and Graph are:
/// the token URL's path names the tenant, and Graph serves the tenant whose token it is given.
/// Tenants may share one app (a multi-tenant app consented in each), or each have their own.
pub struct Fleet {
    base_url: String,
    tenants: Vec<TenantHandle>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

type Tenants = Arc<Vec<TenantHandle>>;

impl Fleet {
    /// Serves every tenant, each with its own options, on a free loopback port.
    pub async fn start(tenants: Vec<(SimTenant, SimOptions)>) -> std::io::Result<Self> {
        Self::start_on(tenants, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(
        tenants: Vec<(SimTenant, SimOptions)>,
        address: SocketAddr,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let handles: Vec<TenantHandle> = tenants
            .into_iter()
            .map(|(tenant, options)| TenantHandle::new(tenant, options, &base_url))
            .collect();
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(fleet_token))
            .route("/v1.0/security/alerts_v2", get(fleet_alerts))
            .route("/v1.0/security/incidents", get(fleet_incidents))
            .with_state(Arc::new(handles.clone()));
        let (shutdown, task) = serve(listener, app);
        Ok(Self { base_url, tenants: handles, shutdown: Some(shutdown), task: Some(task) })
    }

    /// Both the login and the Graph base URL of every tenant.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn tenants(&self) -> &[TenantHandle] {
        &self.tenants
    }

    /// The tenant whose GUID is `tenant_id`.
    pub fn by_id(&self, tenant_id: &str) -> Option<&TenantHandle> {
        self.tenants.iter().find(|handle| handle.tenant_id() == tenant_id)
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

async fn fleet_token(State(tenants): State<Tenants>, Path(tenant): Path<String>, form: RawForm) -> Response {
    match tenants.iter().find(|handle| handle.answers_to(&tenant)) {
        Some(handle) => token(State(handle.state.clone()), Path(tenant), form).await,
        None => entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        ),
    }
}

/// The tenant whose token a Graph request carries (Graph knows the tenant from the token).
fn token_owner(tenants: &Tenants, headers: &HeaderMap) -> Option<Shared> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))?;
    tenants.iter().find(|handle| handle.issued(token)).map(|handle| handle.state.clone())
}

fn unauthenticated() -> Response {
    graph_error(
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationToken",
        "Access token validation failure. Invalid audience.",
        "00000000-sim0-4000-8000-000000000000",
    )
}

async fn fleet_alerts(
    State(tenants): State<Tenants>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    fleet_list(tenants, headers, query, &ALERTS_V2).await
}

async fn fleet_incidents(
    State(tenants): State<Tenants>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    fleet_list(tenants, headers, query, &INCIDENTS).await
}

/// A list request, served by the tenant whose token it carries.
async fn fleet_list(
    tenants: Tenants,
    headers: HeaderMap,
    query: HashMap<String, String>,
    collection: &'static Collection,
) -> Response {
    match token_owner(&tenants, &headers) {
        Some(state) => list(state, headers, query, collection).await,
        None => unauthenticated(),
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// Like Graph, answers gzip when the request accepts it.
fn maybe_gzipped(status: StatusCode, body: String, headers: &HeaderMap) -> Response {
    let accepts_gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|part| part.trim().starts_with("gzip")));
    if !accepts_gzip {
        return json_response(status, body);
    }
    gzip_response(status, body.as_bytes(), 0, flate2::Compression::fast())
}

/// `body` then `padding` spaces, gzipped.
fn gzip_response(status: StatusCode, body: &[u8], padding: usize, level: flate2::Compression) -> Response {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), level);
    let spaces = vec![b' '; padding.min(1 << 20)];
    let mut written = encoder.write_all(body).is_ok();
    let mut left = padding;
    while written && left > 0 {
        let n = left.min(spaces.len());
        written = encoder.write_all(&spaces[..n]).is_ok();
        left -= n;
    }
    let Ok(compressed) = encoder.finish() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
        ],
        compressed,
    )
        .into_response()
}

/// `body` (a JSON object) with one more member that pads it to about `bytes` bytes.
fn padded(mut body: String, bytes: usize) -> String {
    let Some(end) = body.rfind('}') else { return body };
    body.truncate(end);
    body.push_str(r#","@sim.padding":""#);
    let fill = bytes.saturating_sub(body.len() + 2);
    body.extend(std::iter::repeat_n('x', fill));
    body.push_str("\"}");
    body
}

/// A misbehaviour that does not depend on the endpoint, if `fault` is one.
fn misbehaviour(fault: &Fault, request_id: &str) -> Option<Response> {
    match fault {
        Fault::Redirect { status, location } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::TEMPORARY_REDIRECT);
            let location = HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/"));
            Some((status, [(header::LOCATION, location)]).into_response())
        }
        Fault::RetryAfterText { status, value } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
            let mut response = graph_error(status, "TooManyRequests", "Simulated fault.", request_id);
            if let Ok(value) = HeaderValue::from_str(value) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            Some(response)
        }
        Fault::HostileError { status } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::FORBIDDEN);
            Some(graph_error(status, HOSTILE_TEXT, &HOSTILE_TEXT.repeat(300), request_id))
        }
        _ => None,
    }
}

/// [`Fault::HostileError`] as the token endpoint sends it: Entra-shaped, with a long,
/// control-laden description and trace id.
fn hostile_entra_error(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let body = serde_json::json!({
        "error": "invalid_request",
        "error_description": HOSTILE_TEXT.repeat(300),
        "trace_id": HOSTILE_TEXT,
        "error_codes": [],
    });
    json_response(status, body.to_string())
}

fn entra_error(status: StatusCode, error: &str, code: u64, description: &str) -> Response {
    let trace = "5f1c0000-0000-4000-8000-00000000beef";
    let body = serde_json::json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description} Trace ID: {trace} Correlation ID: 00000000-0000-0000-0000-000000000000 Timestamp: {}", Utc::now().format("%Y-%m-%d %H:%M:%SZ")),
        "error_codes": [code],
        "timestamp": Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
        "trace_id": trace,
        "correlation_id": "00000000-0000-0000-0000-000000000000",
    });
    json_response(status, body.to_string())
}

fn graph_error(status: StatusCode, code: &str, message: &str, request_id: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message, "innerError": {"request-id": request_id, "date": Utc::now().to_rfc3339()}}});
    let mut response = json_response(status, body.to_string());
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("request-id", value);
    }
    response
}

async fn token(State(state): State<Shared>, Path(tenant): Path<String>, RawForm(form): RawForm) -> Response {
    let fields: HashMap<String, String> = url::form_urlencoded::parse(&form).into_owned().collect();
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or("");
    let fault = lock(&state).token_faults.pop_front();
    if let Some(Fault::Delay(wait)) = &fault {
        tokio::time::sleep(*wait).await;
    }
    let mut sim = lock(&state);
    let answered = fault.as_ref().and_then(|fault| match fault {
        Fault::Status { status, retry_after } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut response = entra_error(status, "temporarily_unavailable", 50196, "Simulated fault.");
            if let Some(seconds) = retry_after {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*seconds));
            }
            Some(response)
        }
        Fault::HostileError { status } => Some(hostile_entra_error(*status)),
        other => misbehaviour(other, ""),
    });
    let response = if let Some(response) = answered {
        response
    } else if tenant != sim.tenant.tenant_id && tenant != sim.tenant.domain() {
        entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        )
    } else if field("grant_type") != "client_credentials" {
        entra_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        )
    } else if field("client_id") != sim.tenant.client_id {
        entra_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{}' was not found in the directory '{tenant}'.",
                field("client_id")
            ),
        )
    } else if field("client_secret") != sim.tenant.client_secret {
        entra_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                sim.tenant.client_id
            ),
        )
    } else if sim.options.secret_expired {
        entra_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000222,
            "The provided client secret keys for app are expired.",
        )
    } else if field("scope") != format!("{}/.default", sim.base_url) {
        entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!("The provided value for scope {} is not valid.", field("scope")),
        )
    } else {
        sim.issued += 1;
        // Shaped like Entra's tokens (a JWT whose payload names the tenant in `tid`); the
        // signature part is random, and only this simulator checks tokens.
        let value = {
            use base64::Engine as _;
            let encode = |text: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
            let claims = serde_json::json!({
                "aud": sim.base_url, "iss": format!("https://sts.windows.net/{}/", sim.tenant.tenant_id),
                "tid": sim.tenant.tenant_id, "appid": sim.tenant.client_id, "n": sim.issued,
            });
            format!(
                "{}.{}.{:016x}{:016x}",
                encode(r#"{"typ":"JWT","alg":"RS256"}"#.to_owned()),
                encode(claims.to_string()),
                fastish_random(sim.issued),
                fastish_random(sim.issued ^ 0x9e37_79b9)
            )
        };
        let lifetime = sim.options.token_lifetime;
        sim.tokens.insert(value.clone(), Utc::now() + lifetime);
        let body = serde_json::json!({"token_type": "Bearer", "expires_in": lifetime.num_seconds(), "ext_expires_in": lifetime.num_seconds(), "access_token": value}).to_string();
        match fault {
            Some(Fault::Oversized { bytes }) => json_response(StatusCode::OK, padded(body, bytes)),
            Some(Fault::GzipBomb { bytes }) => gzip_response(
                StatusCode::OK,
                body.as_bytes(),
                bytes.saturating_sub(body.len()),
                flate2::Compression::best(),
            ),
            _ => json_response(StatusCode::OK, body),
        }
    };
    sim.log.push(RequestRecord {
        at: std::time::Instant::now(),
        endpoint: "token",
        query: String::new(),
        status: response.status().as_u16(),
        prefer: None,
    });
    response
}

fn fastish_random(salt: u64) -> u64 {
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64;
    crate::rng::Rng::new(nanos ^ salt.rotate_left(17)).next_u64()
}

async fn alerts(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    list(state, headers, query, &ALERTS_V2).await
}

async fn incidents(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    list(state, headers, query, &INCIDENTS).await
}

/// One list request of either collection: faults first (they are shared, in order, by every
/// Graph request), then the listing.
async fn list(
    state: Shared,
    headers: HeaderMap,
    query: HashMap<String, String>,
    collection: &'static Collection,
) -> Response {
    let request_id = format!(
        "{:08x}-sim0-4000-8000-{:012x}",
        fastish_random(1) >> 32,
        fastish_random(2) & 0xffff_ffff_ffff
    );
    let (fault, latency) = {
        let mut sim = lock(&state);
        (sim.faults.pop_front(), sim.options.page_latency)
    };
    let mut delay = latency;
    if let Some(Fault::Delay(extra)) = &fault {
        delay += *extra;
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut sim = lock(&state);
    let prefer = headers.get("prefer").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let query_text = {
        let mut pairs: Vec<_> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.sort();
        pairs.join("&")
    };
    let response = serve_list(&mut sim, &headers, &query, fault, &request_id, collection);
    sim.log.push(RequestRecord {
        at: std::time::Instant::now(),
        endpoint: if *collection == INCIDENTS { "incidents" } else { "alerts" },
        query: query_text,
        status: response.status().as_u16(),
        prefer,
    });
    response
}

/// Graph's throttling answer: 429, its error body, and `Retry-After` in seconds.
fn too_many_requests(request_id: &str, retry_after_seconds: u64) -> Response {
    let mut response = graph_error(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        "Too many requests. Please try again later.",
        request_id,
    );
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
    response
}

fn serve_list(
    sim: &mut SimState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    fault: Option<Fault>,
    request_id: &str,
    collection: &Collection,
) -> Response {
    if fault == Some(Fault::ExpireTokens) {
        let past = Utc::now() - TimeDelta::seconds(1);
        sim.tokens.values_mut().for_each(|expiry| *expiry = past);
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let valid = token.and_then(|token| sim.tokens.get(token)).is_some_and(|expiry| *expiry > Utc::now());
    if !valid {
        return graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Lifetime validation failed, the token is expired.",
            request_id,
        );
    }
    if let Some(quota) = sim.options.quota {
        let now = std::time::Instant::now();
        while sim.quota_log.front().is_some_and(|at| now.saturating_duration_since(*at) >= quota.per) {
            sim.quota_log.pop_front();
        }
        if sim.quota_log.len() >= quota.requests {
            let room_in = sim.quota_log.front().map(|at| (*at + quota.per).saturating_duration_since(now));
            let seconds = room_in.map_or(1, |wait| wait.as_millis().div_ceil(1000).max(1) as u64);
            return too_many_requests(request_id, seconds);
        }
        sim.quota_log.push_back(now);
    }
    if let Some(response) = fault.as_ref().and_then(|fault| misbehaviour(fault, request_id)) {
        return response;
    }
    if let Some(Fault::Status { status, retry_after }) = fault {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut response = graph_error(
            status,
            if status == StatusCode::TOO_MANY_REQUESTS { "TooManyRequests" } else { "ServiceUnavailable" },
            "Simulated fault.",
            request_id,
        );
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        return response;
    }
    if fault == Some(Fault::UnexpectedShape) {
        return json_response(StatusCode::OK, r#"{"@odata.context":"x","items":[]}"#.into());
    }
    if fault == Some(Fault::ValueNotAnArray) {
        return json_response(StatusCode::OK, r#"{"@odata.context":"x","value":{"id":"a"}}"#.into());
    }
    if let Some(until) = sim.options.throttled_until.filter(|until| *until > Utc::now()) {
        let left = (until - Utc::now()).num_seconds().max(0) as u64 + 1;
        return too_many_requests(request_id, left);
    }
    if *collection == ALERTS_V2 && sim.options.alerts_forbidden {
        return graph_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Missing application roles. API required roles: SecurityAlert.Read.All, SecurityAlert.ReadWrite.All. Application roles: .",
            request_id,
        );
    }
    if *collection == INCIDENTS && sim.options.incidents_forbidden {
        return graph_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Missing application roles. API required roles: SecurityIncident.Read.All, SecurityIncident.ReadWrite.All. Application roles: SecurityAlert.Read.All.",
            request_id,
        );
    }
    if *collection == INCIDENTS
        && sim.options.graph.expand_with_filter_fails
        && query.contains_key("$expand")
        && query.contains_key("$filter")
    {
        // What large tenants get for good (elastic/integrations#18144).
        return graph_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "An unexpected error occurred while processing the request.",
            request_id,
        );
    }
    let now = Utc::now();
    if sim.listing.as_ref().is_none_or(|listing| listing.valid_until.is_some_and(|t| t <= now)) {
        sim.listing = Some(Listing::build(&sim.tenant.versions, now));
    }
    if *collection == INCIDENTS
        && sim.incidents.as_ref().is_none_or(|(_, listing)| listing.valid_until.is_some_and(|t| t <= now))
    {
        let incidents = sim.tenant.incidents();
        let listing = Listing::build(&incidents.versions, now);
        sim.incidents = Some((incidents, listing));
    }
    let Some(alerts) = sim.listing.as_ref() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let no_incidents = Incidents::default();
    let (versions, listing, incidents) = if *collection == INCIDENTS {
        let Some((incidents, listing)) = sim.incidents.as_ref() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        (&incidents.versions, listing, incidents)
    } else {
        (&sim.tenant.versions, alerts, &no_incidents)
    };
    let mut listed: Vec<&SimVersion> = listing.by_time.iter().map(|i| &versions[*i]).collect();
    // One provider behind the API failed: its alerts are missing from this answer.
    let missing_provider = "microsoftDefenderForEndpoint";
    if fault == Some(Fault::PartialContent) {
        listed.retain(|v| !v.body.contains(&format!("\"serviceSource\":\"{missing_provider}\"")));
    }
    let graph_url = if fault == Some(Fault::ForeignNextLink) {
        "http://graph.attacker.example".to_owned()
    } else {
        sim.base_url.clone()
    };
    // `$expand=alerts`: each incident with its alerts as listed now.
    let current_alerts: HashMap<&str, &str> = if query.contains_key("$expand") {
        alerts
            .by_time
            .iter()
            .map(|i| (sim.tenant.versions[*i].id.as_str(), sim.tenant.versions[*i].body.as_str()))
            .collect()
    } else {
        HashMap::new()
    };
    let expand = |incident: &SimVersion| {
        let members = incidents.members.get(&incident.id).map(Vec::as_slice).unwrap_or_default();
        let bodies: Vec<&str> =
            members.iter().filter_map(|id| current_alerts.get(id.as_str()).copied()).collect();
        crate::incidents::expanded(&incident.body, &bodies)
    };
    let request = ListRequest::new(query.clone());
    let answered = answer_for(&listed, &request, &sim.options.graph, collection, &graph_url, Some(&expand));
    let mut body = match answered {
        Ok(body) => body,
        Err(message) => return graph_error(StatusCode::BAD_REQUEST, "BadRequest", &message, request_id),
    };
    if fault == Some(Fault::ForeignNextLink) && !body.contains("@odata.nextLink") {
        // The fault is a nextLink to another host, whatever the mode.
        body.truncate(body.len() - 1);
        body.push_str(&format!(
            r#","@odata.nextLink":"http://graph.attacker.example/{}?$skip=1"}}"#,
            collection.path
        ));
    }
    if fault == Some(Fault::TruncatedPage) {
        body.truncate(body.len() / 2);
    }
    let status =
        if fault == Some(Fault::PartialContent) { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    let mut response = match fault {
        Some(Fault::Oversized { bytes }) => json_response(status, padded(body, bytes)),
        Some(Fault::GzipBomb { bytes }) => gzip_response(
            status,
            body.as_bytes(),
            bytes.saturating_sub(body.len()),
            flate2::Compression::best(),
        ),
        _ => maybe_gzipped(status, body, headers),
    };
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("request-id", value);
    }
    if fault == Some(Fault::PartialContent)
        && let Ok(value) = HeaderValue::from_str(&format!("199 - \"MDE/{missing_provider}/503/10000\""))
    {
        response.headers_mut().insert(header::WARNING, value);
    }
    response
}
