//! Test-side AWS clients pointed at the stand-in, and fixtures: a bucket, a state table and a
//! credentials secret per test, and reading back what the functions wrote.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use flate2::read::MultiGzDecoder;

use crate::moto;

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Aws {
    pub endpoint: String,
    /// The access key the functions get (moto takes any unless it enforces IAM).
    pub function_keys: (String, String),
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub bucket: String,
    pub table: String,
    pub secret_id: String,
    pub table_arn: String,
    pub secret_arn: String,
}

/// The SDK's configuration for the stand-in at `endpoint`, signing with `keys`.
pub async fn sdk_config(endpoint: &str, keys: &(String, String)) -> aws_config::SdkConfig {
    let credentials = aws_credential_types::Credentials::new(&keys.0, &keys.1, None, None, "tests");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .load()
        .await
}

async fn clients(
    endpoint: &str,
    keys: &(String, String),
) -> (aws_sdk_s3::Client, aws_sdk_dynamodb::Client, aws_sdk_secretsmanager::Client) {
    let shared = sdk_config(endpoint, keys).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&shared).force_path_style(true).build(),
    );
    (s3, aws_sdk_dynamodb::Client::new(&shared), aws_sdk_secretsmanager::Client::new(&shared))
}

impl Aws {
    /// Fresh, uniquely named resources in the shared stand-in.
    pub async fn fresh(secret_value: &str) -> Self {
        Self::fresh_at(moto::endpoint(), secret_value).await
    }

    /// Fresh, uniquely named resources in the stand-in at `endpoint`.
    pub async fn fresh_at(endpoint: &str, secret_value: &str) -> Self {
        let keys = ("test".to_owned(), "test".to_owned());
        let (s3, dynamodb, secrets) = clients(endpoint, &keys).await;
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let unique = format!("{}-{n}", std::process::id());
        let mut aws = Self {
            endpoint: endpoint.to_owned(),
            function_keys: keys,
            s3,
            dynamodb,
            secrets,
            bucket: format!("xdr-lake-{unique}"),
            table: format!("xdr-state-{unique}"),
            secret_id: format!("xdr/credentials-{unique}"),
            table_arn: String::new(),
            secret_arn: String::new(),
        };
        aws.s3.create_bucket().bucket(&aws.bucket).send().await.expect("create bucket");
        let table = aws
            .dynamodb
            .create_table()
            .table_name(&aws.table)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build().unwrap(),
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .expect("create table");
        aws.table_arn = table.table_description().and_then(|t| t.table_arn()).expect("table ARN").to_owned();
        let secret = aws
            .secrets
            .create_secret()
            .name(&aws.secret_id)
            .secret_string(secret_value)
            .send()
            .await
            .expect("create secret");
        aws.secret_arn = secret.arn().expect("secret ARN").to_owned();
        aws
    }

    /// From now on the test's own calls use `keys`, and the functions `function_keys`.
    pub async fn use_keys(&mut self, test_keys: &(String, String), function_keys: (String, String)) {
        let (s3, dynamodb, secrets) = clients(&self.endpoint, test_keys).await;
        (self.s3, self.dynamodb, self.secrets) = (s3, dynamodb, secrets);
        self.function_keys = function_keys;
    }

    /// The variables a deployed function gets, pointed at the stand-in.
    pub fn function_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", self.function_keys.0.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.function_keys.1.as_str()),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("S3_FORCE_PATH_STYLE", "true"),
            ("CREDENTIALS_SECRET_ID", self.secret_id.as_str()),
            ("STATE_TABLE", self.table.as_str()),
            ("OUTPUT_BUCKET", self.bucket.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Every (key, line) of every object under `prefix`.
    pub async fn lines(&self, prefix: &str) -> Vec<(String, String)> {
        let mut lines = Vec::new();
        for key in self.keys(prefix).await {
            let object =
                self.s3.get_object().bucket(&self.bucket).key(&key).send().await.expect("get object");
            let bytes = object.body.collect().await.expect("read object").into_bytes();
            let mut text = String::new();
            MultiGzDecoder::new(&bytes[..]).read_to_string(&mut text).expect("gzip");
            lines.extend(text.lines().map(|line| (key.clone(), line.to_owned())));
        }
        lines
    }

    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut pages = self.s3.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            keys.extend(
                page.expect("list objects").contents().iter().filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        keys
    }

    /// Each item's size as DynamoDB counts it (names plus values, binary as raw bytes).
    pub async fn item_sizes(&self) -> BTreeMap<String, usize> {
        let mut sizes = BTreeMap::new();
        let mut pages = self.dynamodb.scan().table_name(&self.table).into_paginator().send();
        while let Some(page) = pages.next().await {
            for item in page.expect("scan").items() {
                let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                let size = item
                    .iter()
                    .map(|(name, value)| {
                        name.len()
                            + match value {
                                aws_sdk_dynamodb::types::AttributeValue::S(text) => text.len(),
                                aws_sdk_dynamodb::types::AttributeValue::N(number) => number.len(),
                                aws_sdk_dynamodb::types::AttributeValue::B(blob) => blob.as_ref().len(),
                                other => format!("{other:?}").len(),
                            }
                    })
                    .sum();
                sizes.insert(pk, size);
            }
        }
        sizes
    }

    /// The state table, item by item (`pk` -> all attributes, rendered).
    pub async fn items(&self) -> BTreeMap<String, String> {
        let output =
            self.dynamodb.scan().table_name(&self.table).consistent_read(true).send().await.expect("scan");
        output
            .items()
            .iter()
            .map(|item| {
                let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                let mut fields: Vec<String> = item.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                fields.sort();
                (pk, fields.join(","))
            })
            .collect()
    }
}
