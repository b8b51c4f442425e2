//! Serving the Runtime API: configuration read and AWS clients built once per container, each
//! invocation handed to the function's handler with the AWS adapters, its metrics emitted, its
//! error given a stable type.

use chrono::{TimeDelta, Utc};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::{Value, json};
use tracing::warn;
use xdr_aws::{AwsClients, DynamoClient, DynamoLease, DynamoStateStore, S3Sink, SecretsManagerCredentials};
use xdr_config::{AwsConfig, SyncConfig};
use xdr_core::SystemClock;
use xdr_graph::{GraphClient, http_client};

use crate::error::AppError;
use crate::handler::{HandlerPorts, Invocation, Sources, handle_backfill, handle_sync};
use crate::metrics::{MetricsScope, RunMetrics, emit};
use crate::response::{Measured, SyncAnswer};

/// Kept back from Lambda's deadline for releasing the lease and answering the Runtime API.
const HANDLER_MARGIN: TimeDelta = TimeDelta::milliseconds(250);

impl From<AppError> for Diagnostic {
    fn from(error: AppError) -> Self {
        Diagnostic { error_type: error.kind().to_owned(), error_message: error.to_string() }
    }
}

/// Reports a start-up failure to `/runtime/init/error`, as Lambda expects, so the message
/// naming the bad setting shows up in the invocation's error and the logs.
pub async fn report_init_error(error: &AppError) {
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else { return };
    let Ok(http) = http_client() else { return };
    let body = json!({"errorType": error.kind(), "errorMessage": error.to_string()});
    let sent = http
        .post(format!("http://{api}/2018-06-01/runtime/init/error"))
        .header("Lambda-Runtime-Function-Error-Type", error.kind())
        .body(body.to_string())
        .send()
        .await;
    if let Err(problem) = sent {
        warn!(error = %problem, "Could not report the start-up error to the Runtime API.");
    }
}

/// The AWS adapters, built once per container.
pub struct AwsPorts {
    config: SyncConfig,
    /// A Graph client per stream, on one session (one sign-in per invocation).
    graph: Sources<GraphClient<SecretsManagerCredentials>>,
    dynamodb: DynamoClient,
    table: String,
    sink: S3Sink,
    lease: DynamoLease,
    metrics_namespace: String,
}

impl AwsPorts {
    pub async fn from_env() -> Result<Self, AppError> {
        let env = |name: &str| std::env::var(name).ok();
        let config = SyncConfig::from_lookup(env, Utc::now())?;
        let aws = AwsConfig::from_lookup(env)?;
        let clients = AwsClients::from_env(aws.s3_force_path_style).await;
        let http = http_client().map_err(AppError::Http)?;
        let credentials = SecretsManagerCredentials::new(
            clients.secrets.clone(),
            aws.credentials_secret_id.clone(),
            aws.secret_cache,
        );
        Ok(Self {
            graph: Sources::graph(GraphClient::new(http, config.graph_settings(), credentials)),
            lease: DynamoLease::new(clients.dynamodb.clone(), aws.state_table.clone()),
            dynamodb: clients.dynamodb,
            table: aws.state_table,
            sink: S3Sink::new(clients.s3, aws.output_bucket),
            metrics_namespace: aws.metrics_namespace,
            config,
        })
    }

    fn ports(
        &self,
    ) -> HandlerPorts<
        '_,
        GraphClient<SecretsManagerCredentials>,
        impl Fn(&str) -> DynamoStateStore + '_,
        S3Sink,
        DynamoLease,
        SystemClock,
    > {
        HandlerPorts {
            sources: &self.graph,
            state_for: move |key: &str| DynamoStateStore::new(self.dynamodb.clone(), self.table.clone(), key),
            sink: &self.sink,
            lease: &self.lease,
            clock: &SystemClock,
        }
    }

    /// Emits one stream run's metrics; `requests`, when known, counts a failed run's requests too.
    fn emit<R: Measured>(
        &self,
        function: &str,
        stream: &str,
        result: &Result<R, AppError>,
        requests: Option<xdr_core::SourceCounts>,
        started: std::time::Instant,
    ) {
        let mut metrics = RunMetrics::of(result, started.elapsed().as_millis() as u64, Utc::now());
        if let Some(requests) = requests {
            metrics.graph_requests = requests.graph_requests;
            metrics.throttled_requests = requests.throttled_responses;
            metrics.expand_fallbacks = requests.expand_fallbacks;
        }
        let scope = MetricsScope { function, stream, tenant: &self.config.tenant_id };
        emit(&self.metrics_namespace, scope, &metrics);
    }

    /// `xdr-sync`: one scheduled invocation, for every served stream (or the event's `stream`).
    /// Any other JSON payload is accepted.
    pub async fn sync(&self, event: LambdaEvent<Value>) -> Result<Value, AppError> {
        let invocation = invocation(&event);
        let started = std::time::Instant::now();
        match handle_sync(&self.config, self.ports(), &event.payload, &invocation).await {
            Ok(runs) => {
                for run in &runs {
                    self.emit("xdr-sync", run.stream.name, &run.result, Some(run.requests), started);
                }
                Ok(to_value(&SyncAnswer::from_runs(runs)?))
            }
            Err(error) => {
                // Nothing started (a bad event, the credentials): the first stream's run failed.
                let stream = self.config.streams.first().map_or("alerts", |stream| stream.name);
                let failed: Result<crate::response::SyncResponse, AppError> = Err(error);
                self.emit("xdr-sync", stream, &failed, None, started);
                failed.map(|response| to_value(&response))
            }
        }
    }

    /// `xdr-backfill`: one invocation for `{"start": ..., "end": ..., "stream": ...}`; re-invoke
    /// to continue.
    pub async fn backfill(&self, event: LambdaEvent<Value>) -> Result<Value, AppError> {
        let invocation = invocation(&event);
        let started = std::time::Instant::now();
        let result = handle_backfill(&self.config, self.ports(), &event.payload, &invocation).await;
        let stream = event
            .payload
            .get("stream")
            .and_then(Value::as_str)
            .and_then(xdr_core::stream::by_name)
            .map_or("alerts", |stream| stream.name);
        self.emit("xdr-backfill", stream, &result, None, started);
        Ok(to_value(&result?))
    }
}

fn invocation(event: &LambdaEvent<Value>) -> Invocation {
    let deadline = i64::try_from(event.context.deadline)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|deadline| deadline - HANDLER_MARGIN);
    Invocation { request_id: event.context.request_id.clone(), deadline }
}

/// The response as the Runtime API takes it. The types serialise to plain JSON (no maps with
/// non-string keys), so this cannot fail; an empty object would only hide a bug, never a run.
fn to_value(response: &impl Serialize) -> Value {
    serde_json::to_value(response).unwrap_or_else(|_| json!({}))
}

/// Which function a binary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Sync,
    Backfill,
}

/// Serves invocations under the Lambda Runtime API: configuration read and clients built once;
/// a bad setting fails the start-up with a message naming it. The future is boxed (type-erased)
/// so the binaries don't have to lay out the runtime's deep future type themselves.
pub fn serve(function: Function) -> std::pin::Pin<Box<dyn Future<Output = Result<(), AppError>>>> {
    Box::pin(serve_inner(function))
}

async fn serve_inner(function: Function) -> Result<(), AppError> {
    crate::logging::init("info");
    let ports = match AwsPorts::from_env().await {
        Ok(ports) => ports,
        Err(error) => {
            tracing::error!(error = %error, error_type = error.kind(), "Start-up failed.");
            report_init_error(&error).await;
            return Err(error);
        }
    };
    let ports = &ports;
    let handler = lambda_runtime::service_fn(move |event: LambdaEvent<Value>| async move {
        match function {
            Function::Sync => ports.sync(event).await,
            Function::Backfill => ports.backfill(event).await,
        }
    });
    lambda_runtime::run(handler).await.map_err(|error| AppError::Runtime(error.to_string()))
}
