//! A minimal Lambda Runtime API: `GET /runtime/invocation/next`, `POST .../response`,
//! `POST .../error`, `POST /runtime/init/error`, with the deadline and request-id headers.
//!
//! Each sandbox polls its own endpoint, so that a killed sandbox's `next` request, which may
//! still be waiting when the next invocation comes, hands that invocation back instead of
//! sending it to a dead socket.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// How an invocation ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Response(Value),
    Error {
        error_type: String,
        message: String,
        raw: String,
    },
    /// No answer in time (the function crashed, hung or was killed).
    NoAnswer,
}

impl Outcome {
    pub fn response(&self) -> &Value {
        match self {
            Outcome::Response(value) => value,
            other => panic!("expected a response, got {other:?}"),
        }
    }
}

struct Pending {
    request_id: String,
    body: String,
    deadline_ms: i64,
}

#[derive(Default)]
struct Shared {
    waiters: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_errors: Mutex<Vec<String>>,
    /// Every payload posted back (responses and errors), for secret-hygiene checks.
    transcript: Mutex<Vec<String>>,
    /// Invocations handed back by the endpoint of a sandbox that died; served first.
    returned: Mutex<VecDeque<Pending>>,
}

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>>,
    /// False once the sandbox polling this endpoint is gone.
    alive: Arc<AtomicBool>,
    first_poll: Arc<OnceLock<Instant>>,
}

pub struct RuntimeApi {
    shared: Arc<Shared>,
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>>,
    sender: mpsc::UnboundedSender<Pending>,
    counter: Mutex<u64>,
}

/// One sandbox's endpoint: its `AWS_LAMBDA_RUNTIME_API` and a switch to mark the sandbox gone.
pub struct SandboxEndpoint {
    pub address: String,
    alive: Arc<AtomicBool>,
    first_poll: Arc<OnceLock<Instant>>,
}

impl SandboxEndpoint {
    /// The sandbox is gone: an invocation its endpoint receives goes back to the queue.
    pub fn close(&self) {
        self.alive.store(false, Ordering::SeqCst);
    }

    /// When the sandbox first asked for an invocation.
    pub fn first_poll(&self) -> Option<Instant> {
        self.first_poll.get().copied()
    }
}

impl RuntimeApi {
    pub async fn start() -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        Self {
            shared: Arc::new(Shared::default()),
            queue: Arc::new(tokio::sync::Mutex::new(receiver)),
            sender,
            counter: Mutex::new(0),
        }
    }

    /// A new endpoint for one more sandbox of this function.
    pub fn endpoint(&self) -> SandboxEndpoint {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind runtime api");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let address = listener.local_addr().expect("address").to_string();
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let alive = Arc::new(AtomicBool::new(true));
        let first_poll = Arc::new(OnceLock::new());
        let state = AppState {
            shared: self.shared.clone(),
            queue: self.queue.clone(),
            alive: alive.clone(),
            first_poll: first_poll.clone(),
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        SandboxEndpoint { address, alive, first_poll }
    }

    /// Queues one invocation with `timeout` (the function's configured timeout) and waits for
    /// its answer (or up to `timeout` + 10 s).
    pub async fn invoke(&self, event: &Value, timeout: Duration) -> Outcome {
        let request_id = {
            let mut counter = self.counter.lock().unwrap();
            *counter += 1;
            format!("6f0c{:04}-aaaa-4bbb-8ccc-{:012}", *counter, *counter)
        };
        let (tell, answer) = oneshot::channel();
        self.shared.waiters.lock().unwrap().insert(request_id.clone(), tell);
        let deadline_ms = chrono::Utc::now().timestamp_millis() + timeout.as_millis() as i64;
        self.sender
            .send(Pending { request_id, body: event.to_string(), deadline_ms })
            .expect("runtime api is running");
        match tokio::time::timeout(timeout + Duration::from_secs(10), answer).await {
            Ok(Ok(outcome)) => outcome,
            _ => Outcome::NoAnswer,
        }
    }

    pub fn init_errors(&self) -> Vec<String> {
        self.shared.init_errors.lock().unwrap().clone()
    }

    pub fn transcript(&self) -> String {
        self.shared.transcript.lock().unwrap().join("\n")
    }
}

async fn next(State(state): State<AppState>) -> Response {
    state.first_poll.get_or_init(Instant::now);
    let pending = {
        let mut queue = state.queue.lock().await;
        let returned = state.shared.returned.lock().unwrap().pop_front();
        match returned {
            Some(pending) => Some(pending),
            None => queue.recv().await,
        }
    };
    let Some(pending) = pending else { return StatusCode::GONE.into_response() };
    if !state.alive.load(Ordering::SeqCst) {
        state.shared.returned.lock().unwrap().push_back(pending);
        return StatusCode::GONE.into_response();
    }
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("lambda-runtime-aws-request-id", pending.request_id.clone());
    set("lambda-runtime-deadline-ms", pending.deadline_ms.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:xdr-sync".into(),
    );
    set(
        "lambda-runtime-trace-id",
        format!("Root=1-00000000-{}", pending.request_id.replace('-', "")[..24].to_owned()),
    );
    set("content-type", "application/json".into());
    (StatusCode::OK, headers, pending.body).into_response()
}

async fn response(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let text = String::from_utf8_lossy(&body).into_owned();
    state.shared.transcript.lock().unwrap().push(text.clone());
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if let Some(waiter) = state.shared.waiters.lock().unwrap().remove(&id) {
        let _ = waiter.send(Outcome::Response(value));
    }
    StatusCode::ACCEPTED
}

async fn error(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let raw = String::from_utf8_lossy(&body).into_owned();
    state.shared.transcript.lock().unwrap().push(raw.clone());
    let parsed: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
    let error_type = parsed["errorType"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| {
            headers.get("lambda-runtime-function-error-type").and_then(|v| v.to_str().ok()).map(str::to_owned)
        })
        .unwrap_or_default();
    let message = parsed["errorMessage"].as_str().unwrap_or_default().to_owned();
    if let Some(waiter) = state.shared.waiters.lock().unwrap().remove(&id) {
        let _ = waiter.send(Outcome::Error { error_type, message, raw });
    }
    StatusCode::ACCEPTED
}

async fn init_error(State(state): State<AppState>, body: Bytes) -> StatusCode {
    let text = String::from_utf8_lossy(&body).into_owned();
    state.shared.transcript.lock().unwrap().push(text.clone());
    state.shared.init_errors.lock().unwrap().push(text);
    StatusCode::ACCEPTED
}
