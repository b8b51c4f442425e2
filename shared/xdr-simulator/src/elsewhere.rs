//! Another listener: where an attacker in the path would like the client's requests to go. It
//! records every request whole (method, path, headers, body) and answers as if it were Entra or
//! Graph (a token for a POST, an empty page for a GET), so a client that followed a redirect
//! there would believe it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A running listener. Dropping it stops it.
pub struct Elsewhere {
    base_url: String,
    seen: Arc<Mutex<Vec<String>>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Elsewhere {
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = seen.clone();
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let recorder = recorder.clone();
            async move { record_and_answer(&recorder, method, uri, headers, body) }
        });
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self { base_url, seen, shutdown: Some(shutdown) })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Every request received, each as one text: request line, headers, body.
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

impl Drop for Elsewhere {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

fn record_and_answer(
    seen: &Mutex<Vec<String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut text = format!("{method} {uri}\n");
    for (name, value) in &headers {
        text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
    }
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(&body));
    seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(text);
    let answer = if method == Method::POST {
        r#"{"token_type":"Bearer","expires_in":3599,"access_token":"forged-token"}"#
    } else {
        r#"{"@odata.context":"forged","value":[]}"#
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], answer).into_response()
}
