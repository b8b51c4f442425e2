//! A registry-driven deployment: many simulated tenants behind one login and Graph host, the
//! tenant registry in the stand-in's DynamoDB, and a driver that does what the template's state
//! machine does each interval (scan the registry for enabled tenants, invoke `xdr-sync` once per
//! tenant with a concurrency bound, catch each failure, hand the outcomes to the report).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use xdr_simulator::{Fleet, SimOptions, SimTenant};

use crate::aws::Aws;
use crate::function::FunctionProcess;
use crate::runtime_api::{Outcome, RuntimeApi};

pub struct FleetDeployment {
    pub fleet: Fleet,
    pub aws: Aws,
    pub tenants_table: String,
    pub api: RuntimeApi,
    /// `xdr-backfill`'s Runtime API.
    pub backfill_api: RuntimeApi,
    pub env: Vec<(String, String)>,
    pub processes: Vec<FunctionProcess>,
    /// Secret values the functions must never print (every app's client secret).
    pub secrets: Vec<String>,
}

/// One tenant's invocation in a fan-out, timed.
#[derive(Debug, Clone)]
pub struct TenantRun {
    pub tenant: String,
    pub outcome: Outcome,
    pub started: Instant,
    pub ended: Instant,
}

impl TenantRun {
    /// A child execution's output in the state machine's Map: the answer, or the caught error.
    pub fn as_map_result(&self) -> Value {
        match &self.outcome {
            // What the template's Map keeps of an answer (its ResultSelector).
            Outcome::Response(answer) => {
                json!({"tenant": self.tenant, "answer": {"health": answer["health"]}})
            }
            Outcome::Error { error_type, message, .. } => json!({
                "tenant": self.tenant,
                "failure": {"Error": error_type, "Cause": json!({"errorType": error_type, "errorMessage": message}).to_string()},
            }),
            Outcome::NoAnswer => {
                json!({"tenant": self.tenant, "failure": {"Error": "States.Timeout", "Cause": "no answer"}})
            }
        }
    }
}

impl FleetDeployment {
    /// Serves `tenants` and makes the stack's resources; `shared` is the multi-tenant app's
    /// secret value (`CREDENTIALS_SECRET_ID`).
    pub async fn new(tenants: Vec<(SimTenant, SimOptions)>, shared: &Value) -> Self {
        let aws = Aws::fresh(&shared.to_string()).await;
        Self::with_aws(tenants, aws).await
    }

    /// The same on resources made elsewhere (a stand-in that enforces IAM); the stack's secret
    /// there holds the multi-tenant app.
    pub async fn with_aws(tenants: Vec<(SimTenant, SimOptions)>, aws: Aws) -> Self {
        let start = tenants
            .iter()
            .flat_map(|(tenant, _)| tenant.versions.iter().map(|v| v.last_update))
            .min()
            .unwrap_or_else(chrono::Utc::now)
            - chrono::TimeDelta::seconds(1);
        let mut secrets: Vec<String> =
            tenants.iter().map(|(tenant, _)| tenant.client_secret.clone()).collect();
        secrets.sort();
        secrets.dedup();
        let fleet = Fleet::start(tenants).await.expect("fleet starts");
        let tenants_table = aws.bucket.replace("xdr-lake-", "xdr-tenants-");
        aws.dynamodb
            .create_table()
            .table_name(&tenants_table)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("tenant_id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("attribute"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("tenant_id")
                    .key_type(KeyType::Hash)
                    .build()
                    .expect("key"),
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .expect("create the tenants table");
        let mut env = aws.function_env();
        for (key, value) in [
            ("TENANTS_TABLE", tenants_table.clone()),
            ("LOGIN_BASE_URL", fleet.base_url().to_owned()),
            ("GRAPH_BASE_URL", fleet.base_url().to_owned()),
            ("BACKFILL_START", start.to_rfc3339()),
            ("PAGE_SIZE", "100".into()),
            (crate::NO_REQUEST_LIMIT.0, crate::NO_REQUEST_LIMIT.1.into()),
        ] {
            env.push((key.into(), value));
        }
        let api = RuntimeApi::start().await;
        let backfill_api = RuntimeApi::start().await;
        Self { fleet, aws, tenants_table, api, backfill_api, env, processes: Vec::new(), secrets }
    }

    pub fn set(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    /// Starts `n` more warm `xdr-sync` sandboxes (Lambda's concurrency for the fan-out).
    pub fn start(&mut self, n: usize) {
        for _ in 0..n {
            self.processes.push(FunctionProcess::start("xdr-sync", &self.api, &self.env));
        }
    }

    /// Starts one warm `xdr-backfill` sandbox.
    pub fn start_backfill(&mut self) {
        self.processes.push(FunctionProcess::start("xdr-backfill", &self.backfill_api, &self.env));
    }

    /// Starts `n` more sandboxes of the release build (what Lambda runs), for measurements.
    pub fn start_release(&mut self, n: usize) {
        let binary = crate::function::release_binary("xdr-sync");
        for _ in 0..n {
            self.processes.push(FunctionProcess::start_binary(&binary, "xdr-sync", &self.api, &self.env));
        }
    }

    /// Registers every tenant the fleet serves directly in the registry (the tool checks each
    /// one against Entra and Graph first; a benchmark of hundreds of tenants skips that).
    pub async fn register_all(&self) {
        let registry = xdr_aws::DynamoRegistry::new(self.aws.dynamodb.clone(), self.tenants_table.clone());
        for (n, tenant) in self.fleet.tenants().iter().enumerate() {
            let entry = xdr_core::tenants::TenantEntry {
                tenant_id: tenant.tenant_id(),
                display_name: format!("Customer {n:03}"),
                secret_id: None,
                streams: None,
                backfill_start: None,
                enabled: true,
                updated_at: chrono::Utc::now(),
            };
            registry.add(&entry).await.expect("register a tenant");
        }
    }

    /// The stack's `alerts` and `incidents` tables as a registry-driven stack defines them
    /// (partitioned by `tenant` and `dt`, an `enum` tenant projection that lists no tenant yet),
    /// in a fresh Glue database that GLUE_DATABASE names from now on. With `per_tenant` false,
    /// a single-tenant stack's tables instead (by `dt` only), for the tool to refuse.
    pub async fn athena_tables(&mut self, per_tenant: bool) -> (aws_sdk_glue::Client, String) {
        use aws_sdk_glue::types::{Column, DatabaseInput, SerDeInfo, StorageDescriptor, TableInput};
        let keys = ("test".to_owned(), "test".to_owned());
        let glue = aws_sdk_glue::Client::new(&crate::aws::sdk_config(&self.aws.endpoint, &keys).await);
        let database = self.aws.bucket.replace("xdr-lake-", "xdr_lake_").replace('-', "_")
            + if per_tenant { "" } else { "_single" };
        glue.create_database()
            .database_input(DatabaseInput::builder().name(&database).build().expect("database"))
            .send()
            .await
            .expect("create the Glue database");
        let column =
            |name: &str, kind: &str| Column::builder().name(name).r#type(kind).build().expect("column");
        for table in ["alerts", "incidents"] {
            let location = format!("s3://{}/defender-xdr/{table}/", self.aws.bucket);
            let mut input = TableInput::builder()
                .name(table)
                .description("Every version, one JSON object per line")
                .table_type("EXTERNAL_TABLE")
                .parameters("classification", "json")
                .parameters("projection.enabled", "true")
                .parameters("projection.dt.type", "date")
                .parameters("projection.dt.range", "2015-01-01,NOW")
                .storage_descriptor(
                    StorageDescriptor::builder()
                        .location(&location)
                        .columns(column("id", "string"))
                        .columns(column("tenantid", "string"))
                        .columns(column("mitretechniques", "array<string>"))
                        .input_format("org.apache.hadoop.mapred.TextInputFormat")
                        .serde_info(
                            SerDeInfo::builder()
                                .serialization_library("org.openx.data.jsonserde.JsonSerDe")
                                .parameters("mapping.odata_type", "@odata.type")
                                .build(),
                        )
                        .build(),
                );
            if per_tenant {
                input = input
                    .partition_keys(column("tenant", "string"))
                    .partition_keys(column("dt", "string"))
                    .parameters("projection.tenant.type", "enum")
                    .parameters("projection.tenant.values", xdr_aws::NO_TENANT)
                    .parameters(
                        "storage.location.template",
                        format!("{location}tenant=${{tenant}}/dt=${{dt}}"),
                    );
            } else {
                input = input
                    .partition_keys(column("dt", "string"))
                    .parameters("storage.location.template", format!("{location}dt=${{dt}}"));
            }
            glue.create_table()
                .database_name(&database)
                .table_input(input.build().expect("table"))
                .send()
                .await
                .expect("create a Glue table");
        }
        self.set("GLUE_DATABASE", &database);
        (glue, database)
    }

    /// Stores a secret in the stand-in and returns its name.
    pub async fn put_secret(&self, name: &str, value: &Value) -> String {
        let name = format!("{}-{name}", self.aws.secret_id);
        self.aws
            .secrets
            .create_secret()
            .name(&name)
            .secret_string(value.to_string())
            .send()
            .await
            .expect("secret");
        name
    }

    /// Runs `xdr-sync tenants <args>` (the operator's tool) with the stack's settings, less what
    /// the README does not ask the operator to set for it (the state table, the bucket).
    pub fn tenants_command(&self, args: &[&str]) -> std::process::Output {
        let unasked = ["STATE_TABLE", "OUTPUT_BUCKET", "S3_FORCE_PATH_STYLE"];
        std::process::Command::new(crate::function::binary("xdr-sync"))
            .arg("tenants")
            .args(args)
            .env_clear()
            .envs(
                self.env
                    .iter()
                    .filter(|(k, _)| !unasked.contains(&k.as_str()))
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .output()
            .expect("xdr-sync tenants runs")
    }

    /// The registry's enabled tenants, read directly (a Scan filtered on `enabled = true`,
    /// page after page): what the tests check the functions against.
    pub async fn enabled_tenants(&self) -> Vec<String> {
        let mut tenants = Vec::new();
        let mut start: Option<std::collections::HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .aws
                .dynamodb
                .scan()
                .table_name(&self.tenants_table)
                .filter_expression("enabled = :yes")
                .expression_attribute_values(":yes", AttributeValue::Bool(true))
                .projection_expression("tenant_id")
                .set_exclusive_start_key(start.take())
                .limit(7)
                .send()
                .await
                .expect("scan the registry");
            tenants
                .extend(page.items().iter().filter_map(|item| item.get("tenant_id")?.as_s().ok().cloned()));
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        tenants
    }

    /// One interval's fan-out, step by step as the template's state machine runs it: the list
    /// of enabled tenants from `xdr-sync`, every one of them invoked once, at most
    /// `concurrency` at a time, each with `timeout`, then the report over their outcomes.
    /// Returns the runs by tenant and the report's outcome.
    pub async fn fan_out(
        &self,
        concurrency: usize,
        timeout: Duration,
    ) -> (BTreeMap<String, TenantRun>, Outcome) {
        let listed = self.api.invoke(&json!({"fan_out": "list"}), timeout).await;
        let tenants: Vec<String> = listed.response()["tenants"]
            .as_array()
            .expect("a list of tenants")
            .iter()
            .map(|item| item["tenant"].as_str().expect("a tenant id").to_owned())
            .collect();
        let runs: Vec<TenantRun> = futures_util::stream::iter(tenants)
            .map(|tenant| async move {
                let started = Instant::now();
                let outcome = self.api.invoke(&json!({"tenant": tenant}), timeout).await;
                TenantRun { tenant, outcome, started, ended: Instant::now() }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let results = self.write_map_results(&runs).await;
        let report = self.api.invoke(&json!({"fan_out": "report", "results": results}), timeout).await;
        (runs.into_iter().map(|run| (run.tenant.clone(), run)).collect(), report)
    }

    /// What the template's Map does with its children's results (`ResultWriter`): one JSON
    /// file per status of execution records under `<prefix>/<map run>/`, a `manifest.json`
    /// listing them, and `ResultWriterDetails` as its output. A child that answered or whose
    /// error its Catch took succeeded, with its output as JSON text; one that timed out (no
    /// answer: an Express child's 5 minutes) failed, with no output.
    async fn write_map_results(&self, runs: &[TenantRun]) -> Value {
        let map_run = format!("{:016x}-{:08x}", fastrand::u64(..), fastrand::u32(..));
        let folder = format!("defender-xdr/control/fan-out/{map_run}");
        let machine = "arn:aws:states:us-east-1:123456789012:stateMachine:xdr-fan-out/SyncEachTenant";
        let (mut succeeded, mut failed) = (Vec::new(), Vec::new());
        for (n, run) in runs.iter().enumerate() {
            let mut record = json!({
                "ExecutionArn": format!("arn:aws:states:us-east-1:123456789012:express:xdr-fan-out/SyncEachTenant:{map_run}:{n}"),
                "Input": json!({"tenant": run.tenant}).to_string(),
                "InputDetails": {"Included": true},
                "Name": format!("{map_run}:{n}"),
                "RedriveCount": 0,
                "RedriveStatus": "NOT_REDRIVABLE",
                "StateMachineArn": machine,
            });
            if matches!(run.outcome, Outcome::NoAnswer) {
                record["Status"] = json!("TIMED_OUT");
                record["Error"] = json!("States.Timeout");
                record["Cause"] = json!("The execution timed out.");
                failed.push(record);
            } else {
                record["Status"] = json!("SUCCEEDED");
                record["Output"] = json!(run.as_map_result().to_string());
                record["OutputDetails"] = json!({"Included": true});
                succeeded.push(record);
            }
        }
        let mut files = serde_json::Map::new();
        for (status, records) in [("SUCCEEDED", succeeded), ("FAILED", failed), ("PENDING", Vec::new())] {
            let mut listed = Vec::new();
            if !records.is_empty() {
                let key = format!("{folder}/{status}_0.json");
                let body = serde_json::to_vec(&records).expect("records");
                listed.push(json!({"Key": key, "Size": body.len()}));
                self.aws
                    .s3
                    .put_object()
                    .bucket(&self.aws.bucket)
                    .key(&key)
                    .body(body.into())
                    .send()
                    .await
                    .expect("result file");
            }
            files.insert(status.into(), Value::Array(listed));
        }
        let manifest_key = format!("{folder}/manifest.json");
        let manifest = json!({
            "DestinationBucket": self.aws.bucket,
            "MapRunArn": format!("arn:aws:states:us-east-1:123456789012:mapRun:xdr-fan-out/SyncEachTenant:{map_run}"),
            "ResultFiles": files,
        });
        self.aws
            .s3
            .put_object()
            .bucket(&self.aws.bucket)
            .key(&manifest_key)
            .body(manifest.to_string().into_bytes().into())
            .send()
            .await
            .expect("manifest");
        json!({"Bucket": self.aws.bucket, "Key": manifest_key})
    }

    /// Everything every sandbox printed so far.
    pub fn output(&self) -> String {
        self.processes.iter().map(FunctionProcess::output).collect()
    }

    /// Fails if any client secret or access token shows up in what the functions printed or
    /// answered.
    pub fn assert_no_secrets(&self) {
        let haystack = self.api.transcript() + &self.backfill_api.transcript() + &self.output();
        for secret in &self.secrets {
            assert!(!haystack.contains(secret.as_str()), "a client secret was printed");
        }
        for tenant in self.fleet.tenants() {
            for token in tenant.access_tokens() {
                assert!(!haystack.contains(&token), "an access token was printed");
            }
        }
    }
}

impl Drop for FleetDeployment {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.assert_no_secrets();
        }
    }
}
