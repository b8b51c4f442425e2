//! A deployment of the functions against the local AWS stand-in and the simulated tenant,
//! driven through the Lambda Runtime API emulator.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use xdr_simulator::{SimOptions, SimTenant, Simulator};

use crate::aws::Aws;
use crate::function::FunctionProcess;
use crate::runtime_api::{Outcome, RuntimeApi};

pub struct Deployment {
    pub sim: Simulator,
    pub aws: Aws,
    /// `xdr-sync`'s Runtime API (each function has its own, as on AWS).
    pub api: RuntimeApi,
    /// `xdr-backfill`'s Runtime API.
    pub backfill_api: RuntimeApi,
    pub env: Vec<(String, String)>,
    pub processes: Vec<FunctionProcess>,
    /// What stopped sandboxes printed (checked for secrets with the rest).
    stopped_output: String,
}

impl Deployment {
    pub async fn new(tenant: SimTenant, options: SimOptions, secret: Option<Value>) -> Self {
        let secret = secret.unwrap_or_else(|| Self::secret_of(&tenant));
        let aws = Aws::fresh(&secret.to_string()).await;
        Self::with_aws(tenant, options, aws).await
    }

    /// The secret value that lets the functions in as the simulated tenant's app.
    pub fn secret_of(tenant: &SimTenant) -> Value {
        json!({"client_id": tenant.client_id, "client_secret": tenant.client_secret})
    }

    /// A deployment on resources made elsewhere (for example in a stand-in that enforces IAM).
    pub async fn with_aws(tenant: SimTenant, options: SimOptions, aws: Aws) -> Self {
        let start = tenant.versions.iter().map(|v| v.last_update).min().unwrap_or_else(Utc::now)
            - TimeDelta::seconds(1);
        let sim = Simulator::start(tenant, options).await.unwrap();
        let api = RuntimeApi::start().await;
        let backfill_api = RuntimeApi::start().await;
        let mut env = aws.function_env();
        for (key, value) in [
            ("TENANT_ID", sim.tenant_id()),
            ("LOGIN_BASE_URL", sim.base_url().to_owned()),
            ("GRAPH_BASE_URL", sim.base_url().to_owned()),
            ("BACKFILL_START", start.to_rfc3339()),
            ("PAGE_SIZE", "100".into()),
            (crate::NO_REQUEST_LIMIT.0, crate::NO_REQUEST_LIMIT.1.into()),
        ] {
            env.push((key.into(), value));
        }
        Self { sim, aws, api, backfill_api, env, processes: Vec::new(), stopped_output: String::new() }
    }

    pub fn set(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    pub fn unset(&mut self, key: &str) {
        self.env.retain(|(k, _)| k != key);
    }

    /// Starts one more warm `xdr-sync` sandbox polling the Runtime API.
    pub fn start(&mut self) {
        self.start_function("xdr-sync");
    }

    /// Starts one more warm sandbox of `name` polling the Runtime API.
    pub fn start_function(&mut self, name: &str) {
        let api = if name == "xdr-backfill" { &self.backfill_api } else { &self.api };
        self.processes.push(FunctionProcess::start(name, api, &self.env));
    }

    /// Stops every sandbox (the next invocation needs a cold start).
    pub fn stop_all(&mut self) {
        for process in self.processes.drain(..) {
            self.stopped_output.push_str(&process.finish());
        }
    }

    /// Everything every sandbox printed so far, stopped ones included.
    pub fn output(&self) -> String {
        let mut output = self.stopped_output.clone();
        for process in &self.processes {
            output.push_str(&process.output());
        }
        output
    }

    /// Invokes `xdr-sync`.
    pub async fn invoke(&self, event: &Value, timeout: Duration) -> Outcome {
        self.api.invoke(event, timeout).await
    }

    /// Invokes `xdr-backfill`.
    pub async fn invoke_backfill(&self, event: &Value, timeout: Duration) -> Outcome {
        self.backfill_api.invoke(event, timeout).await
    }

    pub fn visible_now(&self) -> Vec<String> {
        self.sim.tenant().current_versions(Utc::now()).into_iter().map(|v| v.body.clone()).collect()
    }

    /// The incident versions Graph lists now.
    pub fn incidents_now(&self) -> Vec<String> {
        self.sim.tenant().current_incidents(Utc::now()).into_iter().map(|v| v.body).collect()
    }

    /// The versions Graph lists now whose `lastUpdateDateTime` is in `[start, end)`.
    pub fn visible_in(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<String> {
        let tenant = self.sim.tenant();
        let versions = tenant.current_versions(Utc::now()).into_iter();
        versions.filter(|v| v.last_update >= start && v.last_update < end).map(|v| v.body.clone()).collect()
    }

    /// Fails if the client secret or any access token shows up in logs or payloads. Runs by
    /// itself when a deployment is dropped, so every end-to-end test checks everything printed
    /// and returned (the processes log at `trace` unless a test says otherwise).
    pub fn assert_no_secrets(&self, extra: &[&str]) {
        let haystack = self.api.transcript() + &self.backfill_api.transcript() + &self.output();
        let secret = self.sim.client_secret();
        assert!(!haystack.contains(&secret), "the client secret was printed");
        for token in self.sim.access_tokens() {
            assert!(!haystack.contains(&token), "an access token was printed");
        }
        for value in extra {
            assert!(!haystack.contains(value), "a secret value was printed");
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.assert_no_secrets(&[]);
        }
    }
}
