//! The sync state as one DynamoDB item, written only conditionally on its revision.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use xdr_core::{Revision, StateStore, StoreError, SyncState};

use crate::failure;

/// Item layout: `pk` (S, the item's name), `revision` (N), `state` (S, the state's JSON),
/// `updated_at` (S). A save succeeds only if `revision` is still what this run read.
#[derive(Clone)]
pub struct DynamoStateStore {
    client: Client,
    table: String,
    pk: String,
}

impl DynamoStateStore {
    pub fn new(client: Client, table: impl Into<String>, pk: impl Into<String>) -> Self {
        Self { client, table: table.into(), pk: pk.into() }
    }

    pub fn key(&self) -> &str {
        &self.pk
    }
}

/// One item by its `pk`, read consistently (the latest write, not an eventually consistent copy).
pub(crate) async fn read_item(
    client: &Client,
    table: &str,
    pk: &str,
) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
    let output = client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|error| {
            let problem = failure(&error, "STATE_TABLE", "dynamodb:GetItem");
            StoreError::Unavailable(format!("GetItem on table {table} ({pk}): {problem}"))
        })?;
    Ok(output.item)
}

impl StateStore for DynamoStateStore {
    async fn load(&self) -> Result<Option<(SyncState, Revision)>, StoreError> {
        let item = read_item(&self.client, &self.table, &self.pk).await?;
        let Some(item) = item else { return Ok(None) };
        let revision = item
            .get("revision")
            .and_then(|value| value.as_n().ok())
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| {
                StoreError::Corrupt(format!("item {} in {} has no numeric `revision`", self.pk, self.table))
            })?;
        let text = item.get("state").and_then(|value| value.as_s().ok()).ok_or_else(|| {
            StoreError::Corrupt(format!("item {} in {} has no `state` string", self.pk, self.table))
        })?;
        let state = SyncState::from_json(text)
            .map_err(|error| StoreError::Corrupt(format!("item {} in {}: {error}", self.pk, self.table)))?;
        Ok(Some((state, Revision(revision))))
    }

    async fn save(&self, state: &SyncState, expected: Option<&Revision>) -> Result<Revision, StoreError> {
        let next = expected.map_or(1, |revision| revision.0 + 1);
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(self.pk.clone()))
            .item("revision", AttributeValue::N(next.to_string()))
            .item("state", AttributeValue::S(state.to_json()))
            .item("updated_at", AttributeValue::S(Utc::now().to_rfc3339()));
        request = match expected {
            None => request.condition_expression("attribute_not_exists(pk)"),
            Some(revision) => request
                .condition_expression("revision = :expected")
                .expression_attribute_values(":expected", AttributeValue::N(revision.0.to_string())),
        };
        match request.send().await {
            Ok(_) => Ok(Revision(next)),
            Err(error)
                if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::Conflict)
            }
            Err(error) => Err(StoreError::Unavailable(format!(
                "PutItem on table {} ({}): {}",
                self.table,
                self.pk,
                failure(&error, "STATE_TABLE", "dynamodb:PutItem")
            ))),
        }
    }
}
