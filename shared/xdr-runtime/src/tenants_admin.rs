//! `xdr-sync tenants ...`: the operator's tool for the tenant registry. A tenant is saved only
//! after its credentials worked: Entra issued a token for it, the token names that tenant, and
//! Graph let it read one record of each stream it will sync.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use xdr_aws::{AwsClients, DynamoRegistry, SecretsManagerCredentials};
use xdr_config::{Settings, SyncConfig};
use xdr_core::AlertSource;
use xdr_core::tenants::{TenantEntry, parse_stream_list, registry_key, stream_list};
use xdr_core::timeutil::parse_instant;
use xdr_graph::{GraphClient, http_client};

use crate::error::AppError;

/// What `tenants add` was asked to register.
#[derive(Debug, Clone)]
pub struct AddRequest {
    pub tenant: String,
    pub name: Option<String>,
    /// A per-tenant secret; `None`: the stack's shared secret (`CREDENTIALS_SECRET_ID`).
    pub secret_id: Option<String>,
    /// `alerts,incidents`; `None`: every stream the stack serves.
    pub streams: Option<String>,
    pub backfill_start: Option<String>,
    /// Register it disabled (it is not synced until enabled).
    pub disabled: bool,
}

/// The registry and what checking a tenant needs.
pub struct TenantsAdmin {
    config: SyncConfig,
    /// `CREDENTIALS_SECRET_ID`: the stack's shared app, for tenants registered without a secret.
    shared_secret: String,
    clients: AwsClients,
    registry: DynamoRegistry,
}

impl TenantsAdmin {
    /// From the functions' settings it needs (not the state table or the bucket):
    /// `TENANTS_TABLE`, `CREDENTIALS_SECRET_ID`, `STREAMS`, `CLOUD` (or the base URLs), and the
    /// SDK's region and credentials.
    pub async fn from_env() -> Result<Self, AppError> {
        let env = |name: &str| std::env::var(name).ok();
        let config = SyncConfig::from_lookup(env, Utc::now())?;
        let settings = Settings::new(env);
        let table = settings.required(
            "TENANTS_TABLE",
            "set it to the stack's tenant registry (the TenantsTableName output)",
        )?;
        let shared_secret = settings.required(
            "CREDENTIALS_SECRET_ID",
            "set it to the stack's shared secret (the CredentialsSecretArn output)",
        )?;
        let clients = AwsClients::from_env(false).await;
        let registry = DynamoRegistry::new(clients.dynamodb.clone(), table);
        Ok(Self { config, shared_secret, clients, registry })
    }

    /// Checks the tenant's credentials against Entra and Graph, then registers it.
    pub async fn add(&self, request: &AddRequest, now: DateTime<Utc>) -> Result<String, AppError> {
        let invalid = AppError::InvalidArgument;
        let tenant_id = registry_key(&request.tenant).map_err(invalid)?;
        let streams = request.streams.as_deref().map(parse_stream_list).transpose().map_err(invalid)?;
        let backfill_start = match request.backfill_start.as_deref() {
            None => None,
            Some(text) => {
                let start = parse_instant(text).ok_or_else(|| {
                    invalid(format!(
                        "--backfill-start `{text}` is not an RFC 3339 time like 2026-11-01T00:00:00Z"
                    ))
                })?;
                if start > now {
                    return Err(invalid(format!("--backfill-start {text} is in the future")));
                }
                Some(start)
            }
        };
        let entry = TenantEntry {
            display_name: request
                .name
                .clone()
                .filter(|name| !name.trim().is_empty())
                .unwrap_or(tenant_id.clone()),
            tenant_id,
            secret_id: request.secret_id.clone().filter(|id| !id.trim().is_empty()),
            streams,
            backfill_start,
            enabled: !request.disabled,
            updated_at: now,
        };
        let checked = self.check(&entry).await?;
        self.registry.add(&entry).await?;
        let start = match entry.backfill_start.or(self.config.engine.backfill_start) {
            Some(start) => format!("from {}", start.to_rfc3339()),
            None => "from the time of its first run".into(),
        };
        Ok(format!(
            "Registered {} ({}){}.\n  Checked: {checked}.\n  Its first sync reads {start}; its data goes under tenant={}/.\n",
            entry.display_name,
            entry.tenant_id,
            if entry.enabled { "" } else { ", disabled" },
            entry.tenant_id
        ))
    }

    /// Signs in as the tenant's app and reads one record of each stream it will sync.
    async fn check(&self, entry: &TenantEntry) -> Result<String, AppError> {
        let config = self.config.for_tenant(entry)?;
        let (secret, origin) = match &entry.secret_id {
            Some(id) => (id.clone(), "--secret"),
            None => (self.shared_secret.clone(), "CREDENTIALS_SECRET_ID"),
        };
        let credentials = Arc::new(
            SecretsManagerCredentials::new(
                self.clients.secrets.clone(),
                secret.clone(),
                // One check, one read: nothing to keep.
                std::time::Duration::ZERO,
            )
            .named_by(origin),
        );
        let http = http_client().map_err(AppError::Http)?;
        let client = GraphClient::new(http, config.graph_settings(), credentials);
        let deadline = Some(Utc::now() + TimeDelta::seconds(60));
        // Which tenant and which secret, before what went wrong: nothing is saved.
        let failed = |error: xdr_core::SourceError| {
            let error = AppError::Engine(xdr_core::EngineError::Source(error));
            AppError::CheckFailed {
                kind: error.kind(),
                message: format!(
                    "{} was not registered: checking it with secret `{secret}` failed: {error}",
                    entry.tenant_id
                ),
            }
        };
        let identity = client.authenticate(deadline).await.map_err(failed)?;
        if !identity.tenant.eq_ignore_ascii_case(&entry.tenant_id) {
            return Err(AppError::InvalidArgument(format!(
                "Entra issued a token for tenant {}, not {}; check the tenant id",
                identity.tenant, entry.tenant_id
            )));
        }
        let mut readable = Vec::new();
        for stream in &config.streams {
            client.for_stream(*stream).probe(deadline).await.map_err(failed)?;
            readable.push(format!("{} readable ({})", stream.name, stream.permission));
        }
        Ok(format!("signed in with secret `{secret}`, {}", readable.join(", ")))
    }

    /// Every registered tenant, as a table.
    pub async fn list(&self) -> Result<String, AppError> {
        let entries = self.registry.list().await?;
        let mut text = format!(
            "{:<36}  {:<24}  {:<8}  {:<16}  {:<25}  SECRET\n",
            "TENANT", "NAME", "ENABLED", "STREAMS", "BACKFILL START"
        );
        for entry in &entries {
            text.push_str(&format!(
                "{:<36}  {:<24}  {:<8}  {:<16}  {:<25}  {}\n",
                entry.tenant_id,
                entry.display_name.chars().take(24).collect::<String>(),
                if entry.enabled { "yes" } else { "no" },
                entry.streams.as_deref().map_or_else(|| "(stack's)".to_owned(), stream_list),
                entry.backfill_start.map_or_else(|| "(stack's)".to_owned(), |start| start.to_rfc3339()),
                entry.secret_id.as_deref().unwrap_or("(shared)"),
            ));
        }
        let enabled = entries.iter().filter(|entry| entry.enabled).count();
        text.push_str(&format!("{} tenants, {enabled} enabled.\n", entries.len()));
        Ok(text)
    }

    pub async fn set_enabled(&self, tenant: &str, enabled: bool) -> Result<String, AppError> {
        let tenant = registry_key(tenant).map_err(AppError::InvalidArgument)?;
        self.registry.set_enabled(&tenant, enabled).await?;
        Ok(if enabled {
            format!("Enabled {tenant}: the next fan-out syncs it, from where its state stands.\n")
        } else {
            format!("Disabled {tenant}: fan-outs skip it; its state and data stay.\n")
        })
    }

    /// Removes the entry; without `yes`, says what that means and changes nothing.
    pub async fn remove(&self, tenant: &str, yes: bool) -> Result<String, AppError> {
        let tenant = registry_key(tenant).map_err(AppError::InvalidArgument)?;
        let Some(entry) = self.registry.get(&tenant).await? else {
            return Err(AppError::Registry(xdr_aws::RegistryError::NotRegistered {
                table: self.registry.table().to_owned(),
                tenant,
            }));
        };
        let what = format!(
            "{} ({tenant}) leaves the registry: fan-outs no longer sync it. Its state (sync#{tenant}#...) and its data under tenant={tenant}/ stay; registering it again goes on from that state.",
            entry.display_name
        );
        if !yes {
            return Ok(format!("{what}\nNothing changed; run again with --yes to remove it.\n"));
        }
        self.registry.remove(&tenant).await?;
        Ok(format!("Removed. {what}\n"))
    }
}
