//! AWS adapters for the engine: credentials from Secrets Manager, state and a run lease in
//! DynamoDB, objects in S3. Clients are built once per Lambda container and shared.

mod dynamo_state;
#[cfg(feature = "glue")]
mod glue_tables;
mod https_client;
mod lease;
mod registry;
mod s3_sink;
mod secrets;

pub use aws_sdk_dynamodb::Client as DynamoClient;
pub use aws_sdk_secretsmanager::Client as SecretsClient;
pub use dynamo_state::DynamoStateStore;
#[cfg(feature = "glue")]
pub use glue_tables::{GlueTables, NO_TENANT, TableTenants, TablesError};
pub use lease::DynamoLease;
pub use registry::{DynamoRegistry, RegistryError};
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
        let shared = https_client::load_config().await;
        let s3_config =
            aws_sdk_s3::config::Builder::from(&shared).force_path_style(s3_force_path_style).build();
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            dynamodb: aws_sdk_dynamodb::Client::new(&shared),
            secrets: aws_sdk_secretsmanager::Client::new(&shared),
        }
    }
}

/// What to do about an AWS error code, for the message a user reads.
pub(crate) fn advice(code: Option<&str>, setting: &str, action: &str) -> String {
    match code {
        Some("ResourceNotFoundException") | Some("NoSuchBucket") => {
            format!(" (check {setting}: it names something that does not exist in this account and region)")
        }
        Some("AccessDeniedException") | Some("AccessDenied") | Some("UnauthorizedOperation") => {
            format!(" (the function's role needs {action} on the resource named by {setting})")
        }
        Some("KMSAccessDeniedException") | Some("KMS.AccessDeniedException") => {
            format!(" (the function's role needs kms:Decrypt on the key that encrypts {setting})")
        }
        Some("ProvisionedThroughputExceededException") | Some("ThrottlingException") | Some("SlowDown") => {
            " (AWS throttled the request; the next run retries)".to_owned()
        }
        _ => String::new(),
    }
}

/// An SDK error as a user reads it: the cause chain, then what to do about its code.
pub(crate) fn failure(
    error: &(impl aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static),
    setting: &str,
    action: &str,
) -> String {
    format!("{}{}", describe(error), advice(error.code(), setting, action))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_names_the_setting_and_the_permission() {
        let missing = advice(Some("ResourceNotFoundException"), "STATE_TABLE", "dynamodb:GetItem");
        assert!(missing.contains("check STATE_TABLE"));
        let denied = advice(Some("AccessDenied"), "OUTPUT_BUCKET", "s3:PutObject");
        assert!(denied.contains("s3:PutObject") && denied.contains("OUTPUT_BUCKET"));
        assert_eq!(advice(Some("SomethingElse"), "X", "y"), "");
        assert_eq!(advice(None, "X", "y"), "");
    }
}
