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
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub bucket: String,
    pub table: String,
    pub secret_id: String,
}

impl Aws {
    /// Fresh, uniquely named resources in the stand-in.
    pub async fn fresh(secret_value: &str) -> Self {
        let endpoint = moto::endpoint().to_owned();
        let credentials = aws_credential_types::Credentials::new("test", "test", None, None, "tests");
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .credentials_provider(credentials)
            .load()
            .await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&shared).force_path_style(true).build(),
        );
        let dynamodb = aws_sdk_dynamodb::Client::new(&shared);
        let secrets = aws_sdk_secretsmanager::Client::new(&shared);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let unique = format!("{}-{n}", std::process::id());
        let aws = Self {
            endpoint,
            s3,
            dynamodb,
            secrets,
            bucket: format!("xdr-lake-{unique}"),
            table: format!("xdr-state-{unique}"),
            secret_id: format!("xdr/credentials-{unique}"),
        };
        aws.s3.create_bucket().bucket(&aws.bucket).send().await.expect("create bucket");
        aws.dynamodb
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
        aws.secrets
            .create_secret()
            .name(&aws.secret_id)
            .secret_string(secret_value)
            .send()
            .await
            .expect("create secret");
        aws
    }

    /// The variables a deployed function gets, pointed at the stand-in.
    pub fn function_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
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
