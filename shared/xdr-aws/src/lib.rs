//! AWS adapters for the engine: credentials from Secrets Manager, state and a run lease in
//! DynamoDB, objects in S3. Clients are built once per Lambda container and shared.

mod dynamo_state;
mod lease;
mod s3_sink;
mod secrets;

pub use dynamo_state::DynamoStateStore;
pub use lease::{DynamoLease, LeaseOutcome};
pub use s3_sink::S3Sink;
pub use secrets::SecretsManagerCredentials;

/// The three service clients, built from the standard AWS configuration chain (region,
/// credentials, `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>`).
#[derive(Clone)]
pub struct AwsClients {
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl AwsClients {
    pub async fn from_env(s3_force_path_style: bool) -> Self {
        let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let s3_config =
            aws_sdk_s3::config::Builder::from(&shared).force_path_style(s3_force_path_style).build();
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            dynamodb: aws_sdk_dynamodb::Client::new(&shared),
            secrets: aws_sdk_secretsmanager::Client::new(&shared),
        }
    }
}

/// An SDK error with its whole cause chain, on one line.
pub(crate) fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
