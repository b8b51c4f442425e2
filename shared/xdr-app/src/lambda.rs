//! The Lambda side: configuration of the AWS adapters, the `xdr-sync` handler, error types,
//! and reporting a failed start-up to the Runtime API.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::{Value, json};
use tracing::{info, warn};
use xdr_aws::{AwsClients, DynamoLease, DynamoStateStore, LeaseOutcome, S3Sink, SecretsManagerCredentials};
use xdr_core::{AlertSource, EngineError, Ports, RunRequest, SystemClock, run_sync};

use crate::backfill::{BackfillRequest, backfill_lease_key, run_backfill};
use xdr_graph::{GraphClient, http_client};

use crate::config::{ConfigError, Settings, SyncConfig};
use crate::error::AppError;
use crate::local::new_run_id;
use crate::metrics::{RunMetrics, emit};

pub const DEFAULT_SECRET_CACHE_SECONDS: u64 = 300;
/// Kept back from Lambda's deadline for releasing the lease and answering the Runtime API.
const HANDLER_MARGIN: TimeDelta = TimeDelta::milliseconds(250);

/// Where the functions keep things on AWS.
#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub credentials_secret_id: String,
    pub state_table: String,
    pub output_bucket: String,
    pub s3_force_path_style: bool,
    pub secret_cache: Duration,
    /// CloudWatch namespace of the run metrics (EMF on stdout).
    pub metrics_namespace: String,
}

impl AwsConfig {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let settings = Settings::new(lookup);
        Ok(Self {
            credentials_secret_id: settings.required(
                "CREDENTIALS_SECRET_ID",
                "set it to the name or ARN of the Secrets Manager secret holding {\"client_id\", \"client_secret\"}",
            )?,
            state_table: settings.required("STATE_TABLE", "set it to the DynamoDB table (string partition key `pk`)")?,
            output_bucket: settings.required("OUTPUT_BUCKET", "set it to the S3 bucket for the alerts")?,
            s3_force_path_style: settings.flag("S3_FORCE_PATH_STYLE", false)?,
            secret_cache: Duration::from_secs(settings.number(
                "SECRET_CACHE_SECONDS",
                DEFAULT_SECRET_CACHE_SECONDS,
                0,
                86_400,
            )?),
            metrics_namespace: settings
                .optional("METRICS_NAMESPACE")
                .unwrap_or_else(|| crate::metrics::DEFAULT_NAMESPACE.to_owned()),
        })
    }
}

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

/// Everything the functions need, built once per container.
pub struct Services {
    config: SyncConfig,
    graph: GraphClient<SecretsManagerCredentials>,
    dynamodb: xdr_aws::DynamoClient,
    table: String,
    sink: S3Sink,
    metrics_namespace: String,
}

impl Services {
    pub async fn from_env() -> Result<Self, AppError> {
        let env = |name: &str| std::env::var(name).ok();
        let config = SyncConfig::from_lookup(env, Utc::now())?;
        let aws = AwsConfig::from_lookup(env)?;
        let clients = AwsClients::from_env(aws.s3_force_path_style).await;
        let http = http_client().map_err(|error| AppError::Http(error.to_string()))?;
        let credentials = SecretsManagerCredentials::new(
            clients.secrets.clone(),
            aws.credentials_secret_id.clone(),
            aws.secret_cache,
        );
        Ok(Self {
            graph: GraphClient::new(http, config.graph_settings(), credentials),
            dynamodb: clients.dynamodb,
            table: aws.state_table,
            sink: S3Sink::new(clients.s3, aws.output_bucket),
            metrics_namespace: aws.metrics_namespace,
            config,
        })
    }

    fn store(&self, key: &str) -> DynamoStateStore {
        DynamoStateStore::new(self.dynamodb.clone(), self.table.clone(), key)
    }

    fn live_key(&self) -> String {
        live_state_key(&self.config.tenant_id)
    }

    /// The invocation's deadline, less what the handler needs after the engine returns.
    fn deadline(event: &LambdaEvent<Value>) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(event.context.deadline as i64)
            .map(|deadline| deadline - HANDLER_MARGIN)
    }

    /// Proves the credentials work before anything is changed, not even the lease.
    async fn authenticate(&self, deadline: Option<DateTime<Utc>>) -> Result<(), AppError> {
        let fetch_deadline = self.config.engine.fetch_deadline(deadline);
        self.graph
            .authenticate(fetch_deadline)
            .await
            .map(|_| ())
            .map_err(|error| AppError::Engine(EngineError::Source(error)))
    }

    /// Runs `work` holding the lease on `key`; if another invocation holds it, says so instead.
    async fn with_lease<F>(
        &self,
        key: &str,
        request_id: &str,
        deadline: Option<DateTime<Utc>>,
        work: F,
    ) -> Result<Value, AppError>
    where
        F: Future<Output = Result<Value, AppError>>,
    {
        let lease = DynamoLease::new(self.dynamodb.clone(), self.table.clone(), key);
        let until = deadline.unwrap_or_else(|| Utc::now() + TimeDelta::minutes(15));
        match lease.acquire(request_id, until, Utc::now()).await.map_err(EngineError::State)? {
            LeaseOutcome::Acquired => {}
            LeaseOutcome::Held { holder, until } => {
                info!(holder = %holder, until = %until, "Another run holds the lease.");
                let reason = format!(
                    "another invocation ({holder}) is running until {}; this one did nothing",
                    until.to_rfc3339()
                );
                return Ok(
                    json!({"complete": false, "stopped_because": reason, "alerts_written": 0, "objects": []}),
                );
            }
        }
        let result = work.await;
        if let Err(error) = lease.release(request_id).await {
            warn!(error = %error, "Could not release the run lease; it ends at the invocation deadline.");
        }
        result
    }

    fn run_request(event: &LambdaEvent<Value>, deadline: Option<DateTime<Utc>>) -> RunRequest {
        let request_id: String = event.context.request_id.chars().take(8).collect();
        RunRequest { run_id: format!("{}-{request_id}", new_run_id()), deadline }
    }

    /// Runs one invocation's work, adds its Graph counters to the response, and emits its
    /// metrics, whatever the outcome.
    async fn measured(
        &self,
        function: &str,
        work: impl Future<Output = Result<Value, AppError>>,
    ) -> Result<Value, AppError> {
        let started = std::time::Instant::now();
        let before = self.graph.stats();
        let mut result = work.await;
        let after = self.graph.stats();
        // The response says what this invocation asked of Graph, as the metrics do.
        if let Ok(Value::Object(fields)) = &mut result {
            fields.insert("graph_requests".into(), json!(after.graph_requests - before.graph_requests));
            fields.insert(
                "throttled_responses".into(),
                json!(after.throttled_responses - before.throttled_responses),
            );
            fields.insert("token_requests".into(), json!(after.token_requests - before.token_requests));
        }
        let mut metrics = RunMetrics {
            graph_requests: after.graph_requests - before.graph_requests,
            throttled_requests: after.throttled_responses - before.throttled_responses,
            duration_ms: started.elapsed().as_millis() as u64,
            ..RunMetrics::default()
        };
        match &result {
            Ok(response) => {
                metrics.alerts_written = response["alerts_written"].as_u64().unwrap_or(0);
                metrics.objects_written =
                    response["objects"].as_array().map_or(0, |objects| objects.len() as u64);
                metrics.complete = u64::from(response["complete"] == json!(true));
                let number = |name: &str| response[name].as_u64().unwrap_or(0);
                metrics.slices_split = number("slices_split");
                metrics.slices_reread = number("slices_reread");
                metrics.instants_split = number("instants_split");
                metrics.lag_seconds = response["covered_until"]
                    .as_str()
                    .and_then(xdr_core::timeutil::parse_instant)
                    .map(|covered| (Utc::now() - covered).num_milliseconds() as f64 / 1000.0);
            }
            Err(error) => {
                metrics.errors = 1;
                metrics.instants_held = u64::from(error.kind() == "InstantUnreadableError");
                metrics.state_too_large = u64::from(error.kind() == "StateTooLargeError");
                metrics.state_refused = u64::from(error.kind() == "TenantStateError");
            }
        }
        emit(&self.metrics_namespace, function, &metrics);
        result
    }

    /// `xdr-sync`: one scheduled invocation. Any JSON payload is accepted.
    pub async fn sync(&self, event: LambdaEvent<Value>) -> Result<Value, AppError> {
        self.measured("xdr-sync", self.sync_run(event)).await
    }

    async fn sync_run(&self, event: LambdaEvent<Value>) -> Result<Value, AppError> {
        let deadline = Self::deadline(&event);
        self.authenticate(deadline).await?;
        let key = self.live_key();
        let store = self.store(&key);
        let work = async {
            let ports = Ports { source: &self.graph, store: &store, sink: &self.sink, clock: &SystemClock };
            let summary = run_sync(&self.config.engine, ports, Self::run_request(&event, deadline)).await?;
            Ok(serde_json::to_value(&summary).unwrap_or_else(|_| json!({})))
        };
        self.with_lease(&key, &event.context.request_id, deadline, work).await
    }

    /// `xdr-backfill`: one invocation for `{"start": ..., "end": ...}`; re-invoke to continue.
    pub async fn backfill(&self, event: LambdaEvent<Value>) -> Result<Value, AppError> {
        self.measured("xdr-backfill", self.backfill_run(event)).await
    }

    async fn backfill_run(&self, event: LambdaEvent<Value>) -> Result<Value, AppError> {
        // A bad event is refused before anything is read or written.
        let request = BackfillRequest::from_event(&event.payload, Utc::now())?;
        let deadline = Self::deadline(&event);
        self.authenticate(deadline).await?;
        // One backfill at a time per tenant: windows that share days share their ledgers.
        let key = backfill_lease_key(&self.config.tenant_id);
        let live = self.store(&self.live_key());
        let work = async {
            let outcome = run_backfill(
                &self.config,
                &request,
                &self.graph,
                &live,
                |key: &str| self.store(key),
                &self.sink,
                &SystemClock,
                Self::run_request(&event, deadline),
            )
            .await?;
            Ok(outcome.to_json())
        };
        self.with_lease(&key, &event.context.request_id, deadline, work).await
    }
}

/// The live sync's state item for a tenant, as `TENANT_ID` names it.
pub fn live_state_key(tenant_id: &str) -> String {
    format!("sync#{tenant_id}")
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
    let services = match Services::from_env().await {
        Ok(services) => services,
        Err(error) => {
            tracing::error!(error = %error, error_type = error.kind(), "Start-up failed.");
            report_init_error(&error).await;
            return Err(error);
        }
    };
    let services = &services;
    let handler = lambda_runtime::service_fn(move |event: LambdaEvent<Value>| async move {
        match function {
            Function::Sync => services.sync(event).await,
            Function::Backfill => services.backfill(event).await,
        }
    });
    lambda_runtime::run(handler)
        .await
        .map_err(|error| AppError::Http(format!("the Lambda runtime stopped: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn aws_settings_are_named_when_missing_or_wrong() {
        let parse = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> =
                pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            AwsConfig::from_lookup(|name| map.get(name).cloned())
        };
        assert_eq!(parse(&[]).unwrap_err().setting, "CREDENTIALS_SECRET_ID");
        assert_eq!(parse(&[("CREDENTIALS_SECRET_ID", "s")]).unwrap_err().setting, "STATE_TABLE");
        assert_eq!(
            parse(&[("CREDENTIALS_SECRET_ID", "s"), ("STATE_TABLE", "t")]).unwrap_err().setting,
            "OUTPUT_BUCKET"
        );
        let full = [
            ("CREDENTIALS_SECRET_ID", "s"),
            ("STATE_TABLE", "t"),
            ("OUTPUT_BUCKET", "b"),
            ("S3_FORCE_PATH_STYLE", "maybe"),
        ];
        assert_eq!(parse(&full).unwrap_err().setting, "S3_FORCE_PATH_STYLE");
        let ok = parse(&[
            ("CREDENTIALS_SECRET_ID", "s"),
            ("STATE_TABLE", "t"),
            ("OUTPUT_BUCKET", "b"),
            ("S3_FORCE_PATH_STYLE", "true"),
        ])
        .unwrap();
        assert!(ok.s3_force_path_style);
        assert_eq!(ok.secret_cache, Duration::from_secs(300));
    }
}
