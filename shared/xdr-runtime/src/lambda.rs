//! Serving the Runtime API: configuration read and AWS clients built once per container, each
//! invocation handed to the function's handler with the AWS adapters, its metrics emitted, its
//! error given a stable type.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tracing::warn;
use xdr_aws::{
    AwsClients, DynamoClient, DynamoLease, DynamoRegistry, DynamoStateStore, S3Sink, SecretsClient,
    SecretsManagerCredentials,
};
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

/// A Graph client per stream, on one session (one sign-in per invocation).
type Graph = Sources<GraphClient<Arc<SecretsManagerCredentials>>>;

/// The tenants a container of this stack syncs.
enum Tenancy {
    /// `TENANT_ID`, with the stack's secret.
    Single(Arc<Graph>),
    /// The tenants registered in `TENANTS_TABLE`, one per invocation.
    Registry(RegistryTenants),
}

/// A registry-driven stack's tenants: the registry, and the Graph sessions of the tenants this
/// container has served (a warm container reuses a tenant's token and its secret, as a
/// single-tenant one does).
struct RegistryTenants {
    registry: DynamoRegistry,
    secrets: SecretsClient,
    /// `CREDENTIALS_SECRET_ID`: the multi-tenant app's secret, for entries that name none.
    shared_secret: Arc<SecretsManagerCredentials>,
    secret_cache: std::time::Duration,
    http: reqwest::Client,
    /// By tenant: the secret its client was built with, and the client.
    sessions: Mutex<HashMap<String, TenantSession>>,
}

/// A tenant's Graph session, and the registry's `secret_id` it was built with (a changed entry
/// gets a new one).
type TenantSession = (Option<String>, Arc<Graph>);

/// Stale tenants the report's answer lists (at most 300 characters of reasons each); the log
/// lists them all.
const MAX_STALE_LISTED: usize = 200;

/// Sessions kept per container; past that the oldest are dropped (a token is cheap to ask for).
const MAX_SESSIONS: usize = 256;

impl RegistryTenants {
    /// The registered, enabled tenant an event names, its configuration and its Graph session.
    async fn tenant(&self, config: &SyncConfig, event: &Value) -> Result<(SyncConfig, Arc<Graph>), AppError> {
        let named = event.get("tenant").and_then(Value::as_str).ok_or_else(|| {
            AppError::InvalidEvent(format!(
                "this stack syncs the tenants registered in `{}` (TENANTS_TABLE): the event must name one, as {{\"tenant\": \"<tenant GUID>\"}}",
                self.registry.table()
            ))
        })?;
        let tenant = xdr_core::tenants::registry_key(named).map_err(AppError::InvalidEvent)?;
        let entry = self.registry.get(&tenant).await?.ok_or_else(|| {
            AppError::TenantNotSynced(format!(
                "tenant {tenant} is not registered in `{}`; add it with `xdr-sync tenants add`",
                self.registry.table()
            ))
        })?;
        if !entry.enabled {
            return Err(AppError::TenantNotSynced(format!(
                "tenant {tenant} ({}) is disabled in `{}`; enable it with `xdr-sync tenants enable`",
                entry.display_name,
                self.registry.table()
            )));
        }
        let config = config.for_tenant(&entry)?;
        let mut sessions = self.sessions.lock().await;
        if let Some((secret, graph)) = sessions.get(&tenant)
            && *secret == entry.secret_id
        {
            return Ok((config, graph.clone()));
        }
        let credentials = match &entry.secret_id {
            Some(id) => Arc::new(
                SecretsManagerCredentials::new(self.secrets.clone(), id.clone(), self.secret_cache)
                    .named_by(format!("the secret_id of tenant {tenant} in TENANTS_TABLE")),
            ),
            None => self.shared_secret.clone(),
        };
        let graph = Arc::new(Sources::graph(GraphClient::new(
            self.http.clone(),
            config.graph_settings(),
            credentials,
        )));
        if sessions.len() >= MAX_SESSIONS {
            sessions.clear();
        }
        sessions.insert(tenant, (entry.secret_id.clone(), graph.clone()));
        Ok((config, graph))
    }
}

/// The AWS adapters, built once per container.
pub struct AwsPorts {
    config: SyncConfig,
    tenancy: Tenancy,
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
        let credentials = Arc::new(SecretsManagerCredentials::new(
            clients.secrets.clone(),
            aws.credentials_secret_id.clone(),
            aws.secret_cache,
        ));
        let tenancy = match &aws.tenants_table {
            None => Tenancy::Single(Arc::new(Sources::graph(GraphClient::new(
                http,
                config.graph_settings(),
                credentials,
            )))),
            Some(table) => Tenancy::Registry(RegistryTenants {
                registry: DynamoRegistry::new(clients.dynamodb.clone(), table.clone()),
                secrets: clients.secrets.clone(),
                shared_secret: credentials,
                secret_cache: aws.secret_cache,
                http,
                sessions: Mutex::new(HashMap::new()),
            }),
        };
        Ok(Self {
            tenancy,
            lease: DynamoLease::new(clients.dynamodb.clone(), aws.state_table.clone()),
            dynamodb: clients.dynamodb,
            table: aws.state_table,
            sink: S3Sink::new(clients.s3, aws.output_bucket),
            metrics_namespace: aws.metrics_namespace,
            config,
        })
    }

    fn ports<'a>(
        &'a self,
        sources: &'a Graph,
    ) -> HandlerPorts<
        'a,
        GraphClient<Arc<SecretsManagerCredentials>>,
        impl Fn(&str) -> DynamoStateStore + 'a,
        S3Sink,
        DynamoLease,
        SystemClock,
    > {
        HandlerPorts {
            sources,
            state_for: move |key: &str| DynamoStateStore::new(self.dynamodb.clone(), self.table.clone(), key),
            sink: &self.sink,
            lease: &self.lease,
            clock: &SystemClock,
        }
    }

    /// The configuration and Graph session of the tenant this invocation syncs.
    async fn tenant(&self, event: &Value) -> Result<(SyncConfig, Arc<Graph>), AppError> {
        match &self.tenancy {
            Tenancy::Single(graph) => Ok((self.config.clone(), graph.clone())),
            Tenancy::Registry(tenants) => tenants.tenant(&self.config, event).await,
        }
    }

    /// The `Tenant` dimension of an invocation that failed before its tenant was known: the
    /// event's tenant when it is a GUID (never any text an event carries), else `TENANT_ID`, else
    /// `unknown` (CloudWatch refuses an empty dimension).
    fn tenant_dimension(&self, event: &Value) -> String {
        let named = event.get("tenant").and_then(Value::as_str);
        match named.and_then(|text| xdr_core::tenants::registry_key(text).ok()) {
            Some(guid) => guid,
            None if !self.config.tenant_id.is_empty() => self.config.tenant_id.clone(),
            None => "unknown".to_owned(),
        }
    }

    /// Emits one stream run's metrics; `requests`, when known, counts a failed run's requests too.
    fn emit<R: Measured>(
        &self,
        scope: MetricsScope<'_>,
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
        emit(&self.metrics_namespace, scope, &metrics);
    }

    /// `xdr-sync`: one scheduled invocation, for every served stream (or the event's `stream`).
    /// Any other JSON payload is accepted. A registry-driven stack's event names the tenant
    /// (`{"tenant": "<guid>"}`), or is a step of the fan-out (`{"fan_out": "list"}`,
    /// `{"fan_out": "report", "runs": [...]}`).
    pub async fn sync(&self, event: LambdaEvent<Value>) -> Result<Value, AppError> {
        let invocation = invocation(&event);
        let started = std::time::Instant::now();
        if let Tenancy::Registry(tenants) = &self.tenancy
            && let Some(step) = event.payload.get("fan_out")
        {
            return match step.as_str() {
                Some("list") => self.list_tenants(tenants).await,
                Some("report") => {
                    let runs = self.fan_out_runs(&event.payload).await?;
                    self.report(tenants, &runs).await
                }
                _ => Err(AppError::InvalidEvent(format!("`fan_out` is {step}; use \"list\" or \"report\""))),
            };
        }
        let (config, graph) = match self.tenant(&event.payload).await {
            Ok(tenant) => tenant,
            Err(error) => {
                let tenant = self.tenant_dimension(&event.payload);
                let scope = MetricsScope { function: "xdr-sync", stream: "alerts", tenant: &tenant };
                let failed: Result<crate::response::SyncResponse, AppError> = Err(error);
                self.emit(scope, &failed, None, started);
                return failed.map(|response| to_value(&response));
            }
        };
        let tenant = config.tenant_id.as_str();
        match handle_sync(&config, self.ports(&graph), &event.payload, &invocation).await {
            Ok(runs) => {
                for run in &runs {
                    let scope = MetricsScope { function: "xdr-sync", stream: run.stream.name, tenant };
                    self.emit(scope, &run.result, Some(run.requests), started);
                }
                let answer = SyncAnswer::from_runs(runs)?;
                let health = crate::tenant_report::health(&answer);
                let mut answer = to_value(&answer);
                if config.registry_driven
                    && let Some(object) = answer.as_object_mut()
                {
                    object.insert("tenant".into(), json!(tenant));
                    object.insert("health".into(), health);
                }
                Ok(answer)
            }
            Err(error) => {
                // Nothing started (a bad event, the credentials): the first stream's run failed.
                let stream = config.streams.first().map_or("alerts", |stream| stream.name);
                let scope = MetricsScope { function: "xdr-sync", stream, tenant };
                let failed: Result<crate::response::SyncResponse, AppError> = Err(error);
                self.emit(scope, &failed, None, started);
                failed.map(|response| to_value(&response))
            }
        }
    }

    /// The fan-out's first step: the enabled tenants, in a new random order each time, so a
    /// fan-out cut short (a deadline, a limit) never leaves the same tenants last.
    async fn list_tenants(&self, tenants: &RegistryTenants) -> Result<Value, AppError> {
        let mut enabled: Vec<String> =
            tenants.registry.list().await?.into_iter().filter(|e| e.enabled).map(|e| e.tenant_id).collect();
        fastrand::shuffle(&mut enabled);
        tracing::info!(tenants = enabled.len(), "Tenants to sync.");
        let listed: Vec<Value> = enabled.iter().map(|tenant| json!({"tenant": tenant})).collect();
        Ok(json!({"count": listed.len(), "tenants": listed}))
    }

    /// The fan-out's runs: inline (`runs`: a Map's results in the state) or where the template's
    /// Map wrote them (`results`: its `ResultWriterDetails`), read from S3.
    async fn fan_out_runs(&self, payload: &Value) -> Result<Value, AppError> {
        if let Some(runs) = payload.get("runs") {
            return Ok(runs.clone());
        }
        let Some(results) = payload.get("results") else {
            return Err(AppError::InvalidEvent(
                "`\"fan_out\": \"report\"` takes `runs` (the Map's results) or `results` (where its ResultWriter put them)".into(),
            ));
        };
        let prefix = self.config.engine.layout.fan_out_results_prefix();
        let location = crate::tenant_report::results_location(results, self.sink.bucket(), &prefix)?;
        let manifest = self.read_results(&location.manifest).await?;
        let mut runs = Vec::new();
        for key in crate::tenant_report::manifest_files(&manifest, &prefix)? {
            runs.extend(crate::tenant_report::runs_in_results(&self.read_results(&key).await?)?);
        }
        Ok(Value::Array(runs))
    }

    async fn read_results(&self, key: &str) -> Result<Vec<u8>, AppError> {
        match xdr_core::ObjectSink::read(&self.sink, key).await {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => {
                Err(AppError::FanOutResults(format!("s3://{}/{key} does not exist", self.sink.bucket())))
            }
            Err(error) => Err(AppError::FanOutResults(error.to_string())),
        }
    }

    /// The fan-out's last step: which registered tenants are stale, as one metric and a list.
    async fn report(&self, tenants: &RegistryTenants, runs: &Value) -> Result<Value, AppError> {
        let entries = tenants.registry.list().await?;
        let now = Utc::now();
        let report = crate::tenant_report::report(&entries, runs, now, self.config.stale_after)?;
        crate::metrics::print_line(&crate::metrics::report_line(&self.metrics_namespace, &report, now));
        for stale in &report.stale_tenants {
            warn!(tenant = %stale.tenant, name = %stale.name, reasons = %stale.reasons.join("; "), "Stale tenant.");
        }
        let listed: Vec<String> =
            report.stale_tenants.iter().map(|t| format!("{} ({})", t.name, t.tenant)).collect();
        tracing::info!(
            tenants = report.tenants,
            runs = report.runs,
            stale = report.stale,
            stale_tenants = %listed.join(", "),
            "Tenant report."
        );
        // The answer stays within a state's 256 KB however many tenants are stale (the log
        // lines above list every one).
        let mut answer = to_value(&report);
        if let Some(object) = answer.as_object_mut()
            && let Some(listed) = object.get_mut("stale_tenants").and_then(Value::as_array_mut)
            && listed.len() > MAX_STALE_LISTED
        {
            listed.truncate(MAX_STALE_LISTED);
            object.insert("stale_tenants_not_listed".into(), json!(report.stale - MAX_STALE_LISTED));
        }
        Ok(answer)
    }

    /// `xdr-backfill`: one invocation for `{"start": ..., "end": ..., "stream": ...}` (and, in a
    /// registry-driven stack, `"tenant"`); re-invoke to continue.
    pub async fn backfill(&self, event: LambdaEvent<Value>) -> Result<Value, AppError> {
        let invocation = invocation(&event);
        let started = std::time::Instant::now();
        let stream = event
            .payload
            .get("stream")
            .and_then(Value::as_str)
            .and_then(xdr_core::stream::by_name)
            .map_or("alerts", |stream| stream.name);
        let result = match self.tenant(&event.payload).await {
            Ok((config, graph)) => {
                // The tenant is this invocation's, not part of the window's request.
                let mut request = event.payload.clone();
                if let Some(object) = request.as_object_mut().filter(|_| config.registry_driven) {
                    object.remove("tenant");
                }
                let result = handle_backfill(&config, self.ports(&graph), &request, &invocation).await;
                (config.tenant_id, result)
            }
            Err(error) => (self.tenant_dimension(&event.payload), Err(error)),
        };
        let (tenant, result) = result;
        self.emit(MetricsScope { function: "xdr-backfill", stream, tenant: &tenant }, &result, None, started);
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
