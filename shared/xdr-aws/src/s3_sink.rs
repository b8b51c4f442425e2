//! Objects in S3.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use xdr_core::{ObjectSink, SinkError};

use crate::failure;

/// `PutObject` into one bucket. Objects carry `Content-Type: application/gzip` and no
/// `Content-Encoding`: with `Content-Encoding: gzip`, browsers and some HTTP clients decompress
/// on download and save NDJSON under a `.gz` name, which then fails to open. Athena and the
/// AWS CLI read the `.gz` extension and need no header.
#[derive(Clone)]
pub struct S3Sink {
    client: Client,
    bucket: String,
}

impl S3Sink {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into() }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

impl ObjectSink for S3Sink {
    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, SinkError> {
        match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(object) => {
                let bytes = object.body.collect().await.map_err(|error| {
                    SinkError::new(format!("reading s3://{}/{key}: {}", self.bucket, crate::describe(&error)))
                        .caused_by(error)
                })?;
                Ok(Some(bytes.into_bytes().to_vec()))
            }
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(error) if error.raw_response().is_some_and(|raw| raw.status().as_u16() == 403) => {
                Err(SinkError::forbidden(format!(
                    "GetObject s3://{}/{key} was answered 403 Forbidden: {}",
                    self.bucket,
                    crate::describe(&error)
                ))
                .caused_by(error))
            }
            Err(error) => {
                let problem = failure(&error, "OUTPUT_BUCKET", "s3:GetObject");
                Err(SinkError::new(format!("GetObject s3://{}/{key}: {problem}", self.bucket))
                    .caused_by(error))
            }
        }
    }

    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), SinkError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/gzip")
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|error| {
                let problem = failure(&error, "OUTPUT_BUCKET", "s3:PutObject");
                SinkError::new(format!("PutObject s3://{}/{key}: {problem}", self.bucket)).caused_by(error)
            })
    }

    async fn exists(&self, key: &str) -> Result<bool, SinkError> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(_) => Ok(true),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(false),
            // S3 answers a missing key with 403 when the caller may not list the bucket.
            Err(error) if error.raw_response().is_some_and(|raw| raw.status().as_u16() == 403) => {
                Err(SinkError::forbidden(format!(
                    "HeadObject s3://{}/{key} was answered 403 Forbidden: {}",
                    self.bucket,
                    crate::describe(&error)
                ))
                .caused_by(error))
            }
            Err(error) => {
                let problem = failure(&error, "OUTPUT_BUCKET", "s3:GetObject (for HeadObject)");
                Err(SinkError::new(format!("HeadObject s3://{}/{key}: {problem}", self.bucket))
                    .caused_by(error))
            }
        }
    }
}
