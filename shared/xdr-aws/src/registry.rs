//! The tenant registry in its own DynamoDB table (`TENANTS_TABLE`, string partition key
//! `tenant_id`): one item per tenant, plain attributes an operator can read in the console and
//! the fan-out's state machine can scan (`enabled = true`, projecting `tenant_id`).

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use xdr_core::tenants::{TenantEntry, parse_stream_list, registry_key, stream_list};
use xdr_core::timeutil::parse_instant;

use crate::failure;

/// What went wrong with the registry, for the operator.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("tenant registry `{table}` (TENANTS_TABLE): {message}")]
    Unavailable { table: String, message: String },
    #[error("tenant registry `{table}`: the item of tenant `{tenant}` is malformed: {problem}")]
    Malformed { table: String, tenant: String, problem: String },
    #[error("tenant {tenant} is already registered in `{table}`; remove it first, or enable or disable it")]
    AlreadyRegistered { table: String, tenant: String },
    #[error("tenant {tenant} is not registered in `{table}`")]
    NotRegistered { table: String, tenant: String },
}

#[derive(Clone)]
pub struct DynamoRegistry {
    client: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

impl DynamoRegistry {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn unavailable(
        &self,
        error: &(impl ProvideErrorMetadata + std::error::Error + 'static),
        action: &str,
    ) -> RegistryError {
        RegistryError::Unavailable {
            table: self.table.clone(),
            message: failure(error, "TENANTS_TABLE", action),
        }
    }

    /// The entry of `tenant_id` (a GUID), read consistently.
    pub async fn get(&self, tenant_id: &str) -> Result<Option<TenantEntry>, RegistryError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("tenant_id", AttributeValue::S(tenant_id.to_ascii_lowercase()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| self.unavailable(&error, "dynamodb:GetItem"))?;
        output.item.map(|item| self.entry_of(&item)).transpose()
    }

    /// Every entry, enabled or not, by tenant id.
    pub async fn list(&self) -> Result<Vec<TenantEntry>, RegistryError> {
        let mut entries = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|error| self.unavailable(&error, "dynamodb:Scan"))?;
            for item in output.items() {
                entries.push(self.entry_of(item)?);
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        entries.sort_by(|a, b| a.display_name.cmp(&b.display_name).then(a.tenant_id.cmp(&b.tenant_id)));
        Ok(entries)
    }

    /// Registers a tenant that is not registered yet.
    pub async fn add(&self, entry: &TenantEntry) -> Result<(), RegistryError> {
        let sent = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item_of(entry)))
            .condition_expression("attribute_not_exists(tenant_id)")
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(error)
                if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(RegistryError::AlreadyRegistered {
                    table: self.table.clone(),
                    tenant: entry.tenant_id.clone(),
                })
            }
            Err(error) => Err(self.unavailable(&error, "dynamodb:PutItem")),
        }
    }

    /// Turns a registered tenant on or off (its state and data stay).
    pub async fn set_enabled(&self, tenant_id: &str, enabled: bool) -> Result<(), RegistryError> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("tenant_id", AttributeValue::S(tenant_id.to_ascii_lowercase()))
            .update_expression("SET enabled = :enabled, updated_at = :now")
            .condition_expression("attribute_exists(tenant_id)")
            .expression_attribute_values(":enabled", AttributeValue::Bool(enabled))
            .expression_attribute_values(":now", AttributeValue::S(Utc::now().to_rfc3339()))
            .send()
            .await;
        self.existing(sent.map(|_| ()), tenant_id, "dynamodb:UpdateItem")
    }

    /// Removes a tenant's entry (its state and data stay where they are).
    pub async fn remove(&self, tenant_id: &str) -> Result<(), RegistryError> {
        let sent = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("tenant_id", AttributeValue::S(tenant_id.to_ascii_lowercase()))
            .condition_expression("attribute_exists(tenant_id)")
            .send()
            .await;
        self.existing(sent.map(|_| ()), tenant_id, "dynamodb:DeleteItem")
    }

    fn existing<E>(
        &self,
        sent: Result<(), aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>>,
        tenant_id: &str,
        action: &str,
    ) -> Result<(), RegistryError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match sent {
            Ok(()) => Ok(()),
            Err(error) if error.code() == Some("ConditionalCheckFailedException") => {
                Err(RegistryError::NotRegistered { table: self.table.clone(), tenant: tenant_id.to_owned() })
            }
            Err(error) => Err(self.unavailable(&error, action)),
        }
    }

    fn entry_of(&self, item: &Item) -> Result<TenantEntry, RegistryError> {
        let text = |name: &str| item.get(name).and_then(|value| value.as_s().ok()).map(String::as_str);
        let tenant = text("tenant_id").unwrap_or("?").to_owned();
        let malformed = |problem: String| RegistryError::Malformed {
            table: self.table.clone(),
            tenant: tenant.clone(),
            problem,
        };
        let tenant_id =
            registry_key(&tenant).map_err(|problem| malformed(format!("tenant_id: {problem}")))?;
        let streams = text("streams")
            .map(parse_stream_list)
            .transpose()
            .map_err(|problem| malformed(format!("streams: {problem}")))?;
        let backfill_start = text("backfill_start")
            .map(|value| {
                parse_instant(value)
                    .ok_or_else(|| malformed(format!("backfill_start `{value}` is not RFC 3339")))
            })
            .transpose()?;
        let enabled = match item.get("enabled") {
            Some(AttributeValue::Bool(enabled)) => *enabled,
            None => true,
            Some(_) => return Err(malformed("enabled is not a boolean".into())),
        };
        Ok(TenantEntry {
            display_name: text("display_name").unwrap_or(&tenant_id).to_owned(),
            secret_id: text("secret_id").filter(|id| !id.trim().is_empty()).map(str::to_owned),
            streams,
            backfill_start,
            enabled,
            updated_at: text("updated_at").and_then(parse_instant).unwrap_or_default(),
            tenant_id,
        })
    }
}

fn item_of(entry: &TenantEntry) -> Item {
    let mut item = Item::new();
    item.insert("tenant_id".into(), AttributeValue::S(entry.tenant_id.clone()));
    item.insert("display_name".into(), AttributeValue::S(entry.display_name.clone()));
    item.insert("enabled".into(), AttributeValue::Bool(entry.enabled));
    item.insert("updated_at".into(), AttributeValue::S(entry.updated_at.to_rfc3339()));
    if let Some(secret) = &entry.secret_id {
        item.insert("secret_id".into(), AttributeValue::S(secret.clone()));
    }
    if let Some(streams) = &entry.streams {
        item.insert("streams".into(), AttributeValue::S(stream_list(streams)));
    }
    if let Some(start) = entry.backfill_start {
        item.insert("backfill_start".into(), AttributeValue::S(start.to_rfc3339()));
    }
    item
}
