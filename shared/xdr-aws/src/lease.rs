//! A lease that keeps two invocations from working on the same state at once. It ends at its
//! holder's invocation deadline at the latest, so a crashed holder blocks nobody past it, and
//! is released as soon as the holder finishes.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use xdr_core::{Lease, LeaseOutcome, StoreError};

use crate::dynamo_state::read_item;
use crate::failure;

/// Leases as items beside the state: `lease#{state key}`.
#[derive(Clone)]
pub struct DynamoLease {
    client: Client,
    table: String,
}

impl DynamoLease {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

fn lease_pk(state_key: &str) -> String {
    format!("lease#{state_key}")
}

impl Lease for DynamoLease {
    async fn acquire(
        &self,
        key: &str,
        holder: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<LeaseOutcome, StoreError> {
        let pk = lease_pk(key);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(pk.clone()))
            .item("holder", AttributeValue::S(holder.to_owned()))
            .item("expires_at_ms", AttributeValue::N(until.timestamp_millis().to_string()))
            .item("acquired_at", AttributeValue::S(now.to_rfc3339()))
            .condition_expression("attribute_not_exists(pk) OR expires_at_ms < :now OR holder = :holder")
            .expression_attribute_values(":now", AttributeValue::N(now.timestamp_millis().to_string()))
            .expression_attribute_values(":holder", AttributeValue::S(holder.to_owned()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(LeaseOutcome::Acquired),
            Err(error)
                if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                // Who holds it is only for the message; a failed read leaves "unknown".
                let current = read_item(&self.client, &self.table, &pk).await.ok().flatten();
                let holder = current
                    .as_ref()
                    .and_then(|item| item.get("holder")?.as_s().ok().cloned())
                    .unwrap_or_else(|| "unknown".into());
                let until = current
                    .as_ref()
                    .and_then(|item| item.get("expires_at_ms")?.as_n().ok()?.parse::<i64>().ok())
                    .and_then(DateTime::from_timestamp_millis)
                    .unwrap_or(now);
                Ok(LeaseOutcome::Held { holder, until })
            }
            Err(error) => Err(StoreError::unavailable_because(
                format!(
                    "taking the run lease in {}: {}",
                    self.table,
                    failure(&error, "STATE_TABLE", "dynamodb:PutItem and dynamodb:GetItem")
                ),
                error,
            )),
        }
    }

    async fn release(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(lease_pk(key)))
            .condition_expression("holder = :holder")
            .expression_attribute_values(":holder", AttributeValue::S(holder.to_owned()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Expired and taken over by another invocation: nothing of ours to release.
            Err(error)
                if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(error) => Err(StoreError::unavailable_because(
                format!(
                    "releasing the run lease in {}: {}",
                    self.table,
                    failure(&error, "STATE_TABLE", "dynamodb:DeleteItem")
                ),
                error,
            )),
        }
    }
}
