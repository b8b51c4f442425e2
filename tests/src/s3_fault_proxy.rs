//! A fault proxy in front of the S3 stand-in: forwards every request, but can make object
//! `PUT`s fail, either before they reach S3 (the object never lands) or after (it lands, and the
//! caller sees an error anyway, as when a response is lost).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutFault {
    /// Answer 503 without forwarding: the object does not land.
    FailBefore,
    /// Forward, then answer 500: the object landed but the caller is told it failed.
    FailAfter,
}

#[derive(Clone)]
struct Shared {
    upstream: String,
    http: reqwest::Client,
    faults: Arc<Mutex<VecDeque<PutFault>>>,
    puts: Arc<Mutex<Vec<(String, u16)>>>,
}

pub struct S3FaultProxy {
    pub endpoint: String,
    shared: Shared,
}

impl S3FaultProxy {
    pub async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let shared = Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            faults: Arc::default(),
            puts: Arc::default(),
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
}

async fn forward(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let is_object_put = parts.method == Method::PUT && parts.uri.path().matches('/').count() >= 2;
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
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    let answer = match upstream.body(body).send().await {
        Ok(answer) => answer,
        Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
    };
    let status = answer.status();
    let headers: HeaderMap = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap_or_default();
    if is_object_put {
        let answered = if fault == Some(PutFault::FailAfter) { 500 } else { status.as_u16() };
        shared.puts.lock().unwrap().push((parts.uri.path().to_owned(), answered));
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
