//! The sync state in DynamoDB: one head item, written only conditionally on its revision, and
//! the dedup memory's spilled part in immutable chunk items beside it.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use tracing::warn;
use xdr_core::{ChunkLimits, Revision, StateStore, StoreError, SyncState};

use crate::failure;

/// DynamoDB's item size limit (400 KB, attribute names and values together).
pub const ITEM_LIMIT_BYTES: usize = 400 * 1024;
/// The head must stay this far below the limit: its other attributes and their names.
const HEAD_MARGIN_BYTES: usize = 1024;

/// Head item: `pk` (S), `revision` (N), `state` (S, the state's JSON), `updated_at` (S). A save
/// succeeds only if `revision` is still what this run read.
///
/// Chunk items: `pk` = `seen#<head pk>#<revision>-<nonce>-<n>` (S), `entries` (B, the encoded
/// fingerprints). Each is written once, before the head that references it, and deleted after
/// the head that no longer does, so a head never points at a chunk that is missing or changed.
/// A save whose head write is refused deletes them again; a process killed between the two, or a
/// head write whose outcome is unknown, leaves an unreferenced chunk behind (a few hundred KB at
/// most, never read).
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

    fn unavailable(
        &self,
        action: &str,
        key: &str,
        error: impl aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        permission: &str,
    ) -> StoreError {
        let message = format!(
            "{action} on table {} ({key}): {}",
            self.table,
            failure(&error, "STATE_TABLE", permission)
        );
        StoreError::unavailable_because(message, error)
    }

    async fn read_chunk(&self, id: String) -> Result<(String, Vec<u8>), StoreError> {
        let item = read_item(&self.client, &self.table, &id).await?;
        let bytes = item
            .as_ref()
            .and_then(|item| item.get("entries"))
            .and_then(|value| value.as_b().ok())
            .map(|blob| blob.as_ref().to_vec())
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "item {} in {} references the dedup chunk {id}, which is missing",
                    self.pk, self.table
                ))
            })?;
        Ok((id, bytes))
    }

    async fn put_chunk(&self, id: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(id.to_owned()))
            .item("entries", AttributeValue::B(Blob::new(bytes.to_vec())))
            .send()
            .await
            .map(|_| ())
            .map_err(|error| self.unavailable("PutItem", id, error, "dynamodb:PutItem"))
    }

    /// Best effort: a chunk left behind costs a little storage and is never read.
    async fn delete_chunks(&self, ids: &[String]) {
        for id in ids {
            let deleted = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(id.clone()))
                .send()
                .await;
            if let Err(error) = deleted {
                warn!(chunk = %id, error = %crate::describe(&error), "Could not delete an unreferenced dedup chunk.");
            }
        }
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
            StoreError::unavailable_because(format!("GetItem on table {table} ({pk}): {problem}"), error)
        })?;
    Ok(output.item)
}

impl StateStore for DynamoStateStore {
    fn location(&self) -> String {
        format!("dynamodb:{}/{}", self.table, self.pk)
    }

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
        let mut state = SyncState::from_head_json(text)
            .map_err(|error| StoreError::Corrupt(format!("item {} in {}: {error}", self.pk, self.table)))?;
        let ids: Vec<String> = state.seen_chunks.iter().map(|chunk| chunk.id.clone()).collect();
        let chunks: Vec<(String, Vec<u8>)> =
            stream::iter(ids).map(|id| self.read_chunk(id)).buffer_unordered(8).try_collect().await?;
        for (id, bytes) in chunks {
            state.absorb_chunk(&id, &bytes).map_err(|error| {
                StoreError::Corrupt(format!("item {} in {}: {error}", self.pk, self.table))
            })?;
        }
        Ok(Some((state, Revision(revision))))
    }

    async fn save(&self, state: &mut SyncState, expected: Option<&Revision>) -> Result<Revision, StoreError> {
        let next = expected.map_or(1, |revision| revision.0 + 1);
        let nonce = fastrand::u32(..);
        let mut n = 0;
        let save = state.plan_chunked_save(ChunkLimits::DYNAMODB, || {
            n += 1;
            format!("seen#{}#{next}-{nonce:08x}-{n}", self.pk)
        });
        // Checked before anything is written: a limit is a specific error, never DynamoDB's
        // ValidationException after half a save.
        let head_bytes = save.head.len() + self.pk.len() + HEAD_MARGIN_BYTES;
        if head_bytes > ITEM_LIMIT_BYTES {
            return Err(StoreError::TooLarge {
                item: self.pk.clone(),
                bytes: head_bytes,
                limit: ITEM_LIMIT_BYTES,
            });
        }
        let written: Vec<String> = save.new_chunks.iter().map(|(id, _)| id.clone()).collect();
        // A spill is usually one chunk (the head's entries past its limit), so one at a time.
        for (id, bytes) in &save.new_chunks {
            if let Err(error) = self.put_chunk(id, bytes).await {
                self.delete_chunks(&written).await;
                return Err(error);
            }
        }

        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(self.pk.clone()))
            .item("revision", AttributeValue::N(next.to_string()))
            .item("state", AttributeValue::S(save.head.clone()))
            .item("updated_at", AttributeValue::S(Utc::now().to_rfc3339()));
        request = match expected {
            None => request.condition_expression("attribute_not_exists(pk)"),
            Some(revision) => request
                .condition_expression("revision = :expected")
                .expression_attribute_values(":expected", AttributeValue::N(revision.0.to_string())),
        };
        let outcome = match request.send().await {
            Ok(_) => Ok(Revision(next)),
            Err(error)
                if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::Conflict)
            }
            Err(error) => Err(self.unavailable("PutItem", &self.pk, error, "dynamodb:PutItem")),
        };
        match outcome {
            Ok(revision) => {
                state.chunked_save_done(&save);
                self.delete_chunks(&save.dropped_chunks).await;
                Ok(revision)
            }
            // The conditional write was refused: the head does not reference them, nobody will.
            Err(StoreError::Conflict) => {
                self.delete_chunks(&written).await;
                Err(StoreError::Conflict)
            }
            // Outcome unknown (a timeout, a lost response): the head may have been written and
            // reference them, so they stay (at worst unreferenced, never read).
            Err(error) => Err(error),
        }
    }
}
