//! `xdr-sync tenants ...`: the operator's tool for the tenant registry. A tenant is saved only
//! after its credentials worked: Entra issued a token for it, the token names that tenant, and
//! Graph let it read one record of each stream it will sync. The tool also keeps the Athena
//! tables' tenant list (`GLUE_DATABASE`) in step with the registry: Athena reads a tenant's
//! `tenant=` folder only once its table lists that tenant.

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
    /// `GLUE_DATABASE`: the stack's Athena tables; `None`: not set, the tool leaves them alone.
    #[cfg(feature = "glue")]
    tables: Option<xdr_aws::GlueTables>,
    /// This build has no Glue client (the Lambda build): the database named, if any.
    #[cfg(not(feature = "glue"))]
    tables: Option<String>,
}

/// The Athena tables, one per stream, named as the template names them.
#[cfg(feature = "glue")]
const TABLES: [&str; 2] = ["alerts", "incidents"];
const NO_DATABASE: &str = "GLUE_DATABASE is not set (the stack's GlueDatabaseName output)";

impl TenantsAdmin {
    /// From the functions' settings it needs (not the state table or the bucket):
    /// `TENANTS_TABLE`, `CREDENTIALS_SECRET_ID`, `STREAMS`, `CLOUD` (or the base URLs), the
    /// SDK's region and credentials, and `GLUE_DATABASE` for the Athena tables.
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
        let database = settings.optional("GLUE_DATABASE");
        #[cfg(feature = "glue")]
        let tables = match database {
            Some(database) => Some(xdr_aws::GlueTables::from_env(database).await),
            None => None,
        };
        #[cfg(not(feature = "glue"))]
        let tables = database;
        Ok(Self { config, shared_secret, clients, registry, tables })
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
        text.push_str(&self.tables_status(&entries).await);
        Ok(text)
    }

    /// Whether Athena reads every registered tenant: one line for `list`. A problem is reported,
    /// not raised: the registry listed above is what was asked for.
    #[cfg(feature = "glue")]
    async fn tables_status(&self, entries: &[TenantEntry]) -> String {
        let Some(tables) = &self.tables else {
            return format!("Athena tables not checked: {NO_DATABASE}.\n");
        };
        let mut missing = Vec::new();
        for table in TABLES {
            match tables.listed(table).await {
                Ok(listed) => {
                    let absent = entries.iter().filter(|e| !listed.contains(&e.tenant_id)).count();
                    if absent > 0 {
                        missing.push(format!("{table} lacks {absent} registered tenants"));
                    }
                }
                Err(error) => return format!("Athena tables not checked: {error}.\n"),
            }
        }
        if missing.is_empty() {
            format!("Athena tables ({}): {} list every tenant.\n", tables.database(), TABLES.join(" and "))
        } else {
            format!(
                "Athena tables ({}): {}; run `xdr-sync tenants sync-tables` (a stack update that changed a table resets its list).\n",
                tables.database(),
                missing.join(", ")
            )
        }
    }

    #[cfg(not(feature = "glue"))]
    async fn tables_status(&self, _entries: &[TenantEntry]) -> String {
        "Athena tables not checked: this build has no Glue client (use a local build of xdr-sync).\n".into()
    }

    /// Makes each Athena table list every registered tenant, enabled or not (a disabled
    /// tenant's data stays queryable; a removed tenant's leaves Athena, not S3). `after_change`:
    /// called after `add` or `remove` changed the registry, when an unset `GLUE_DATABASE` is a
    /// warning rather than an error.
    #[cfg(feature = "glue")]
    pub async fn sync_tables(&self, after_change: bool) -> Result<String, AppError> {
        let Some(tables) = &self.tables else {
            return if after_change {
                Ok(format!(
                    "Athena tables not updated: {NO_DATABASE}; set it and run `xdr-sync tenants sync-tables`, or Athena will not read the tenant's data.\n"
                ))
            } else {
                Err(AppError::InvalidArgument(format!(
                    "{NO_DATABASE}; set it to the database of the stack's Athena tables"
                )))
            };
        };
        let failed = |error: xdr_aws::TablesError| {
            AppError::Tables(if after_change {
                format!(
                    "the registry changed, but the Athena tables did not: {error}; run `xdr-sync tenants sync-tables` once that is fixed"
                )
            } else {
                error.to_string()
            })
        };
        let tenants: Vec<String> =
            self.registry.list().await?.into_iter().map(|entry| entry.tenant_id).collect();
        let mut outcomes = Vec::new();
        for table in TABLES {
            let outcome = tables.set(table, &tenants).await.map_err(failed)?;
            outcomes.push(format!("{table} {}", if outcome.changed { "updated" } else { "already did" }));
        }
        Ok(format!(
            "Athena tables ({}) list the {} registered tenants: {}.\n",
            tables.database(),
            tenants.len(),
            outcomes.join(", ")
        ))
    }

    #[cfg(not(feature = "glue"))]
    pub async fn sync_tables(&self, after_change: bool) -> Result<String, AppError> {
        let why = "this build has no Glue client (the Lambda build); run a local build of xdr-sync";
        match (&self.tables, after_change) {
            (None, true) => Ok(format!("Athena tables not updated: {NO_DATABASE}.\n")),
            (Some(_), true) => Ok(format!("Athena tables not updated: {why} `tenants sync-tables`.\n")),
            (_, false) => Err(AppError::InvalidArgument(format!("Athena tables not updated: {why}"))),
        }
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
        Ok(format!("Removed. {what} Athena no longer reads its data once the tables are updated.\n"))
    }
}
