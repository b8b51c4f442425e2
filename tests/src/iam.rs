//! A stand-in that enforces IAM: a moto server of its own, with users whose policies are the
//! template's own (resolved by `tests/infra/template_policy.py`), and a proxy in front that
//! answers as S3 does where moto does not: HeadObject/GetObject on a missing key is 403, not
//! 404, for a caller without `s3:ListBucket` on the bucket (for that key's prefix).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::aws::Aws;
use crate::aws_fault_proxy::AwsFaultProxy;
use crate::moto::{self, OwnMoto};

pub struct IamStandIn {
    pub moto: OwnMoto,
    pub aws: Aws,
    /// In front of moto; the functions talk to it.
    pub proxy: AwsFaultProxy,
    /// Per function (`SyncFunction`, `BackfillFunction`): its access key.
    pub keys: Vec<(String, (String, String))>,
}

fn python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv-athena/bin/python")
}

/// The template's policy for `function`, resolved for `aws`'s names, less the statements `without`.
pub fn template_policy(function: &str, aws: &Aws, without: &[&str], parameters: &[(&str, &str)]) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("infra/template_policy.py");
    let mut command = Command::new(python());
    command.arg(script).arg(function);
    command.args(["--bucket", &aws.bucket, "--table-arn", &aws.table_arn, "--secret-arn", &aws.secret_arn]);
    for sid in without {
        command.args(["--without-sid", sid]);
    }
    for (name, value) in parameters {
        command.args(["--parameter", &format!("{name}={value}")]);
    }
    let output = command.output().unwrap_or_else(|error| {
        panic!(
            "{} could not run ({error}): run `bash .ci/run`, which creates .venv-athena",
            python().display()
        )
    });
    assert!(output.status.success(), "template_policy.py: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("a policy document")
}

/// One IAM Query API call, before IAM is enforced (moto routes it by the credential scope).
async fn iam(endpoint: &str, params: &[(&str, &str)]) -> String {
    let mut form: Vec<(&str, &str)> = vec![("Version", "2010-05-08")];
    form.extend_from_slice(params);
    let response = reqwest::Client::new()
        .post(format!("{endpoint}/"))
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20261201/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
        )
        .form(&form)
        .send()
        .await
        .expect("IAM call");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "IAM {params:?}: {status} {text}");
    text
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> &'a str {
    let start = text.find(open).map(|i| i + open.len()).expect("element present");
    let end = text[start..].find(close).map(|i| start + i).expect("element closed");
    &text[start..end]
}

/// The policy as moto can evaluate it: moto checks resources only for S3 (for DynamoDB and
/// Secrets Manager it authorises against `*`), so there the actions are checked and the ARNs are
/// left to `tests/infra/test_iam.py`.
fn as_moto_evaluates(policy: &Value) -> Value {
    let mut policy = policy.clone();
    if let Some(statements) = policy["Statement"].as_array_mut() {
        for statement in statements {
            let actions: Vec<String> = match &statement["Action"] {
                Value::String(action) => vec![action.clone()],
                Value::Array(items) => items.iter().filter_map(|a| a.as_str().map(str::to_owned)).collect(),
                _ => Vec::new(),
            };
            if actions.iter().all(|action| !action.starts_with("s3:")) {
                statement["Resource"] = Value::String("*".into());
            }
        }
    }
    policy
}

async fn user_with_policy(endpoint: &str, name: &str, policy: &Value) -> (String, String) {
    iam(endpoint, &[("Action", "CreateUser"), ("UserName", name)]).await;
    let document = as_moto_evaluates(policy).to_string();
    iam(
        endpoint,
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", name),
            ("PolicyName", "p"),
            ("PolicyDocument", &document),
        ],
    )
    .await;
    let key = iam(endpoint, &[("Action", "CreateAccessKey"), ("UserName", name)]).await;
    (
        between(&key, "<AccessKeyId>", "</AccessKeyId>").to_owned(),
        between(&key, "<SecretAccessKey>", "</SecretAccessKey>").to_owned(),
    )
}

impl IamStandIn {
    /// Resources for one deployment, a user per function with the template's policy for it
    /// (less the statements named in `without`), then IAM enforced for every later request.
    pub async fn start(secret_value: &str, without: &[&str]) -> Self {
        Self::start_with(secret_value, without, &[]).await
    }

    /// The same, with the template's `parameters` (`Streams=alerts,incidents`) deciding the policies.
    pub async fn start_with(secret_value: &str, without: &[&str], parameters: &[(&str, &str)]) -> Self {
        let moto = moto::start_own();
        let mut aws = Aws::fresh_at(&moto.endpoint, secret_value).await;
        let mut keys = Vec::new();
        let mut policies = Vec::new();
        for (user, function) in [("sync", "SyncFunction"), ("backfill", "BackfillFunction")] {
            let policy = template_policy(function, &aws, without, parameters);
            let user_keys = user_with_policy(&moto.endpoint, user, &policy).await;
            policies.push((user_keys.0.clone(), policy));
            keys.push((function.to_owned(), user_keys));
        }
        let admin_policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
        let admin = user_with_policy(&moto.endpoint, "test-admin", &admin_policy).await;
        // From here on every request is authenticated and authorised.
        let enforced = reqwest::Client::new()
            .post(format!("{}/moto-api/reset-auth", moto.endpoint))
            .body("0")
            .send()
            .await
            .expect("enable IAM");
        assert!(enforced.status().is_success());
        aws.use_keys(&admin, keys[0].1.clone()).await;
        let proxy = AwsFaultProxy::start_enforcing(&moto.endpoint, policies).await;
        aws.endpoint = proxy.endpoint.clone();
        Self { moto, aws, proxy, keys }
    }

    pub fn keys_of(&self, function: &str) -> (String, String) {
        self.keys.iter().find(|(name, _)| name == function).map(|(_, keys)| keys.clone()).expect("a user")
    }
}
