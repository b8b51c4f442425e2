//! A fault proxy in front of the AWS stand-in. It forwards every request, and can:
//! - make object `PUT`s fail, either before they reach S3 (the object never lands) or after (it
//!   lands, and the caller sees an error anyway, as when a response is lost);
//! - hold the n-th object put or state write, before or after it reaches the stand-in, and tell
//!   the test, which can then kill the process at exactly that point, or write to the table
//!   itself (a concurrent invocation) before letting the request go on;
//! - (`start_enforcing`, in front of a moto that enforces IAM) answer as S3 does where moto does
//!   not: a HeadObject/GetObject on a missing key is 403, not 404, for a caller whose policy
//!   does not grant `s3:ListBucket` on the bucket for that key. Requests keep their `Host`, so
//!   their signatures still verify;
//! - (`model_region_latency`, for benchmarks) take as long as AWS does from a function in its
//!   region, and count the calls by kind.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutFault {
    /// Answer 503 without forwarding: the object does not land.
    FailBefore,
    /// Forward, then answer 500: the object landed but the caller is told it failed.
    FailAfter,
}

/// The calls a trap can catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// An S3 `PutObject` of an output object.
    ObjectPut,
    /// A DynamoDB `PutItem` of a state item (not the lease).
    StateWrite,
}

/// When a trap holds the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// Before forwarding: the call has not reached the stand-in.
    Before,
    /// After forwarding, before answering: the call took effect, the caller does not know yet.
    After,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trap {
    pub call: Call,
    /// 1 for the first matching call after the trap is set.
    pub nth: usize,
    pub moment: Moment,
}

/// A call held by a trap. Dropping it without `release` answers the call with a 502.
pub struct Held {
    pub trap: Trap,
    release: oneshot::Sender<()>,
}

impl Held {
    /// Lets the held call go on.
    pub fn release(self) {
        let _ = self.release.send(());
    }
}

struct Armed {
    trap: Trap,
    seen: usize,
    notify: oneshot::Sender<Held>,
}

#[derive(Clone)]
struct Shared {
    upstream: String,
    http: reqwest::Client,
    faults: Arc<Mutex<VecDeque<PutFault>>>,
    puts: Arc<Mutex<Vec<(String, u16)>>>,
    armed: Arc<Mutex<Option<Armed>>>,
    /// Access key -> policy document, when the upstream enforces IAM.
    policies: Option<Arc<Vec<(String, serde_json::Value)>>>,
    /// Whether each call waits as long as it would in a region (`model_region_latency`).
    region_latency: Arc<std::sync::atomic::AtomicBool>,
    /// Calls seen, by kind (`s3:PutObject`, `dynamodb:state-write`, ...).
    calls: Arc<Mutex<BTreeMap<String, usize>>>,
}

pub struct AwsFaultProxy {
    pub endpoint: String,
    shared: Shared,
}

impl AwsFaultProxy {
    pub async fn start(upstream: &str) -> Self {
        Self::start_with(upstream, None).await
    }

    /// In front of a moto that enforces IAM, for callers with these (access key, policy) pairs.
    pub async fn start_enforcing(upstream: &str, policies: Vec<(String, serde_json::Value)>) -> Self {
        Self::start_with(upstream, Some(Arc::new(policies))).await
    }

    async fn start_with(upstream: &str, policies: Option<Arc<Vec<(String, serde_json::Value)>>>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let shared = Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            faults: Arc::default(),
            puts: Arc::default(),
            armed: Arc::default(),
            policies,
            region_latency: Arc::default(),
            calls: Arc::default(),
        };
        let app = Router::new().fallback(forward).with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { endpoint, shared }
    }

    /// The next object `PUT`s meet these faults, in order.
    pub fn fail_puts(&self, faults: &[PutFault]) {
        self.shared.faults.lock().unwrap().extend(faults.iter().copied());
    }

    /// Every object `PUT` seen: (path, status answered).
    pub fn puts(&self) -> Vec<(String, u16)> {
        self.shared.puts.lock().unwrap().clone()
    }

    /// Sets a trap (replacing any other); the receiver gets the call once it is held.
    pub fn arm(&self, trap: Trap) -> oneshot::Receiver<Held> {
        let (notify, held) = oneshot::channel();
        *self.shared.armed.lock().unwrap() = Some(Armed { trap, seen: 0, notify });
        held
    }

    pub fn disarm(&self) {
        self.shared.armed.lock().unwrap().take();
    }

    /// From now on each call takes about as long as it does from a Lambda function in the
    /// bucket's and table's region (published figures and common measurements, not a promise):
    /// an S3 put 30 ms plus 10 ms a MB, an S3 get or head 15 ms, a DynamoDB write 8 ms and a
    /// read 4 ms, a Secrets Manager read 15 ms. The stand-in's own time comes on top (small).
    pub fn model_region_latency(&self) {
        self.shared.region_latency.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The calls seen so far, by kind: `s3:PutObject` (output objects), `s3:PutObject(other)`,
    /// `s3:GetObject`, `s3:HeadObject`, `dynamodb:state-write` (a state item's PutItem),
    /// `dynamodb:lease-write`, `dynamodb:<Operation>` for the rest, `secretsmanager:<Operation>`.
    pub fn calls(&self) -> BTreeMap<String, usize> {
        self.shared.calls.lock().unwrap().clone()
    }
}

/// What kind of call this is, for counting and for the latency model.
fn kind_of(method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> String {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if let Some((service, operation)) = target.split_once('.') {
        let service = if service.starts_with("DynamoDB") { "dynamodb" } else { "secretsmanager" };
        if service == "dynamodb" && operation == "PutItem" {
            let is_lease = body.windows(7).any(|w| w == b"\"lease#");
            return if is_lease { "dynamodb:lease-write" } else { "dynamodb:state-write" }.to_owned();
        }
        return format!("{service}:{operation}");
    }
    match *method {
        Method::PUT if path.ends_with(".ndjson.gz") => "s3:PutObject".to_owned(),
        Method::PUT => "s3:PutObject(other)".to_owned(),
        Method::HEAD => "s3:HeadObject".to_owned(),
        Method::GET => "s3:GetObject".to_owned(),
        _ => format!("s3:{method}"),
    }
}

/// How long a call of this kind takes in a region, by the model `model_region_latency` describes.
fn region_latency(kind: &str, bytes: usize) -> Duration {
    let ms = |n: u64| Duration::from_millis(n);
    if kind.starts_with("s3:PutObject") {
        ms(30) + Duration::from_micros(bytes as u64 / 100)
    } else if kind.starts_with("s3:") || kind.starts_with("secretsmanager:") {
        ms(15)
    } else if kind.ends_with("-write")
        || ["PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"]
            .iter()
            .any(|write| kind.ends_with(write))
    {
        ms(8)
    } else {
        ms(4)
    }
}

/// The calls a trap can catch, from the call's kind (`kind_of`).
fn classify(kind: &str, path: &str) -> Option<Call> {
    match kind {
        // Output objects (data and quarantine); the tenant marker is not one.
        "s3:PutObject" if path.matches('/').count() >= 2 => Some(Call::ObjectPut),
        "dynamodb:state-write" => Some(Call::StateWrite),
        _ => None,
    }
}

/// If the armed trap catches this call, hands it to the test and waits for its release.
async fn maybe_hold(shared: &Shared, call: Option<Call>, moment: Moment) -> Result<(), ()> {
    let Some(call) = call else { return Ok(()) };
    let sprung = {
        let mut armed = shared.armed.lock().unwrap();
        let catches = match armed.as_mut() {
            Some(a) if a.trap.call == call && a.trap.moment == moment => {
                a.seen += 1;
                a.seen == a.trap.nth
            }
            _ => false,
        };
        if catches { armed.take() } else { None }
    };
    let Some(armed) = sprung else { return Ok(()) };
    let (release, released) = oneshot::channel();
    if armed.notify.send(Held { trap: armed.trap, release }).is_err() {
        return Ok(());
    }
    released.await.map_err(|_| ())
}

async fn forward(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let kind = kind_of(&parts.method, parts.uri.path(), &parts.headers, &body);
    let call = classify(&kind, parts.uri.path());
    *shared.calls.lock().unwrap().entry(kind.clone()).or_default() += 1;
    if shared.region_latency.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::time::sleep(region_latency(&kind, body.len())).await;
    }
    let is_object_put = call == Some(Call::ObjectPut);
    if maybe_hold(&shared, call, Moment::Before).await.is_err() {
        return StatusCode::BAD_GATEWAY.into_response();
    }
    let fault = if is_object_put { shared.faults.lock().unwrap().pop_front() } else { None };
    if fault == Some(PutFault::FailBefore) {
        shared.puts.lock().unwrap().push((parts.uri.path().to_owned(), 503));
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "<Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>",
        )
            .into_response();
    }
    let mut upstream =
        shared.http.request(parts.method.clone(), format!("{}{}", shared.upstream, path_and_query));
    // With IAM enforced the signature covers `Host`: keep it.
    let keep_host = shared.policies.is_some();
    for (name, value) in &parts.headers {
        if (name != "host" || keep_host) && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    let answer = match upstream.body(body).send().await {
        Ok(answer) => answer,
        Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
    };
    let status = answer.status();
    if status == StatusCode::NOT_FOUND
        && (parts.method == Method::HEAD || parts.method == Method::GET)
        && let Some(policies) = &shared.policies
        && let Some((bucket, key)) = parts.uri.path().trim_start_matches('/').split_once('/')
        && !key.is_empty()
    {
        let caller = access_key(&parts.headers);
        let allowed = policies
            .iter()
            .find(|(id, _)| Some(id.as_str()) == caller.as_deref())
            .is_some_and(|(_, policy)| grants_list_bucket(policy, bucket, key));
        if !allowed {
            // What S3 answers: it will not say whether a key exists to one who may not list.
            let body = if parts.method == Method::HEAD {
                String::new()
            } else {
                "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>".to_owned()
            };
            return (StatusCode::FORBIDDEN, body).into_response();
        }
    }
    let headers: HeaderMap = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap_or_default();
    if is_object_put {
        let answered = if fault == Some(PutFault::FailAfter) { 500 } else { status.as_u16() };
        shared.puts.lock().unwrap().push((parts.uri.path().to_owned(), answered));
    }
    if maybe_hold(&shared, call, Moment::After).await.is_err() {
        return StatusCode::BAD_GATEWAY.into_response();
    }
    if fault == Some(PutFault::FailAfter) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "<Error><Code>InternalError</Code><Message>injected</Message></Error>",
        )
            .into_response();
    }
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if name != "content-length" && name != "transfer-encoding" {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

/// The access key id in a SigV4 `Authorization` header.
fn access_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let credential = value.split("Credential=").nth(1)?;
    credential.split('/').next().map(str::to_owned)
}

fn as_strings(value: &serde_json::Value) -> Vec<&str> {
    match value {
        serde_json::Value::String(text) => vec![text.as_str()],
        serde_json::Value::Array(items) => items.iter().filter_map(|item| item.as_str()).collect(),
        _ => Vec::new(),
    }
}

/// IAM's wildcards: `*` any run of characters, `?` one.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// Whether `policy` allows `s3:ListBucket` on `bucket` with `s3:prefix` = `key` (the rule S3
/// applies to tell a caller that a key does not exist).
fn grants_list_bucket(policy: &serde_json::Value, bucket: &str, key: &str) -> bool {
    let statements = match &policy["Statement"] {
        serde_json::Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    statements.iter().any(|statement| {
        statement["Effect"] == "Allow"
            && as_strings(&statement["Action"]).iter().any(|action| glob(action, "s3:ListBucket"))
            && as_strings(&statement["Resource"])
                .iter()
                .any(|resource| glob(resource, &format!("arn:aws:s3:::{bucket}")))
            && match statement.get("Condition") {
                None => true,
                Some(condition) => {
                    as_strings(&condition["StringLike"]["s3:prefix"]).iter().any(|prefix| glob(prefix, key))
                }
            }
    })
}
