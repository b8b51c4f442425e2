//! The Athena tables of a registry-driven stack partition by `tenant` and `dt`. Athena's
//! `injected` projection would refuse every query that does not name one tenant, so `tenant` is
//! an `enum` projection: Athena reads exactly the tenants the table lists, and that list
//! (`projection.tenant.values`) follows the registry. Glue's optimistic lock (the table's
//! `VersionId`) keeps two operators' updates, or an update racing a stack update, from losing one.

use std::collections::HashMap;

use aws_sdk_glue::Client;
use aws_sdk_glue::error::ProvideErrorMetadata;
use aws_sdk_glue::types::{Table, TableInput};

use crate::failure;

/// The table parameter Athena reads the tenants from.
pub const TENANT_VALUES: &str = "projection.tenant.values";
/// What the list holds while no tenant is registered (Athena needs one value): the nil GUID,
/// which no tenant has, so it reads nothing. The template starts the tables with it.
pub const NO_TENANT: &str = "00000000-0000-0000-0000-000000000000";
/// Updates tried before giving up when the table keeps changing under us.
const ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    #[error("Glue table `{database}.{table}` (GLUE_DATABASE): {message}")]
    Unavailable { database: String, table: String, message: String },
    #[error(
        "Glue table `{database}.{table}` is not partitioned by tenant (no `enum` projection of a `tenant` partition key): GLUE_DATABASE must name the GlueDatabaseName of a stack deployed with Tenancy=registry"
    )]
    NotPerTenant { database: String, table: String },
    #[error(
        "Glue table `{database}.{table}` changed under each of {ATTEMPTS} updates (another `xdr-sync tenants` command, or a stack update?); run `xdr-sync tenants sync-tables` again"
    )]
    Contended { database: String, table: String },
}

/// What a table lists, and whether an update changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableTenants {
    pub table: String,
    /// The tenants Athena reads, sorted (without the placeholder).
    pub listed: Vec<String>,
    /// Whether this call wrote a new list.
    pub changed: bool,
}

#[derive(Clone)]
pub struct GlueTables {
    client: Client,
    database: String,
}

impl GlueTables {
    pub fn new(client: Client, database: impl Into<String>) -> Self {
        Self { client, database: database.into() }
    }

    /// A client from the standard AWS configuration chain (as `AwsClients::from_env`).
    pub async fn from_env(database: impl Into<String>) -> Self {
        let shared = crate::https_client::load_config().await;
        Self::new(Client::new(&shared), database)
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    fn unavailable(
        &self,
        table: &str,
        error: &(impl ProvideErrorMetadata + std::error::Error + 'static),
        action: &str,
    ) -> TablesError {
        TablesError::Unavailable {
            database: self.database.clone(),
            table: table.to_owned(),
            message: failure(error, "GLUE_DATABASE", action),
        }
    }

    async fn get(&self, table: &str) -> Result<Table, TablesError> {
        let output = self
            .client
            .get_table()
            .database_name(&self.database)
            .name(table)
            .send()
            .await
            .map_err(|error| self.unavailable(table, &error, "glue:GetTable"))?;
        let found = output.table.ok_or_else(|| TablesError::Unavailable {
            database: self.database.clone(),
            table: table.to_owned(),
            message: "GetTable answered without the table".into(),
        })?;
        if !is_per_tenant(&found) {
            return Err(TablesError::NotPerTenant {
                database: self.database.clone(),
                table: table.to_owned(),
            });
        }
        Ok(found)
    }

    /// The tenants `table` lists now.
    pub async fn listed(&self, table: &str) -> Result<Vec<String>, TablesError> {
        Ok(tenants_of(&self.get(table).await?))
    }

    /// Makes `table` list exactly `tenants` (GUIDs), unless it already does.
    pub async fn set(&self, table: &str, tenants: &[String]) -> Result<TableTenants, TablesError> {
        let wanted = values_text(tenants);
        let listed = parse_values(&wanted);
        for _ in 0..ATTEMPTS {
            let current = self.get(table).await?;
            if current.parameters().and_then(|p| p.get(TENANT_VALUES)).map(String::as_str) == Some(&wanted) {
                return Ok(TableTenants { table: table.to_owned(), listed: listed.clone(), changed: false });
            }
            let version = current.version_id().map(str::to_owned);
            let input = with_values(current, &wanted).map_err(|message| TablesError::Unavailable {
                database: self.database.clone(),
                table: table.to_owned(),
                message,
            })?;
            let mut update = self
                .client
                .update_table()
                .database_name(&self.database)
                .table_input(input)
                // A list of tenants is not a schema change worth a table version of its own.
                .skip_archive(true);
            if let Some(version) = version {
                update = update.version_id(version);
            }
            match update.send().await {
                Ok(_) => {
                    return Ok(TableTenants {
                        table: table.to_owned(),
                        listed: listed.clone(),
                        changed: true,
                    });
                }
                Err(error)
                    if error.as_service_error().is_some_and(|e| e.is_concurrent_modification_exception()) =>
                {
                    // Someone else changed it since we read it: read it again, decide again.
                    tokio::time::sleep(std::time::Duration::from_millis(200 + fastrand::u64(0..300))).await;
                }
                Err(error) => return Err(self.unavailable(table, &error, "glue:UpdateTable")),
            }
        }
        Err(TablesError::Contended { database: self.database.clone(), table: table.to_owned() })
    }
}

fn is_per_tenant(table: &Table) -> bool {
    let keyed = table.partition_keys().iter().any(|column| column.name() == "tenant");
    let projected = table
        .parameters()
        .and_then(|parameters| parameters.get("projection.tenant.type"))
        .is_some_and(|kind| kind.trim().eq_ignore_ascii_case("enum"));
    keyed && projected
}

fn tenants_of(table: &Table) -> Vec<String> {
    table.parameters().and_then(|p| p.get(TENANT_VALUES)).map(|text| parse_values(text)).unwrap_or_default()
}

/// The list as Athena reads it: comma-separated, no spaces (a space would be part of a value).
pub fn values_text(tenants: &[String]) -> String {
    let mut tenants: Vec<String> = tenants.iter().map(|tenant| tenant.trim().to_ascii_lowercase()).collect();
    tenants.sort();
    tenants.dedup();
    tenants.retain(|tenant| !tenant.is_empty() && tenant != NO_TENANT);
    if tenants.is_empty() { NO_TENANT.to_owned() } else { tenants.join(",") }
}

/// The tenants a list names, without the placeholder.
pub fn parse_values(text: &str) -> Vec<String> {
    let mut tenants: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|tenant| !tenant.is_empty() && *tenant != NO_TENANT)
        .map(str::to_owned)
        .collect();
    tenants.sort();
    tenants
}

/// The table as it is, with another tenant list. UpdateTable replaces the whole definition, so
/// every field goes back as GetTable gave it (but a view's or a federated table's: these tables
/// are neither).
fn with_values(table: Table, values: &str) -> Result<TableInput, String> {
    let mut parameters: HashMap<String, String> = table.parameters.unwrap_or_default();
    parameters.insert(TENANT_VALUES.to_owned(), values.to_owned());
    TableInput::builder()
        .name(table.name)
        .set_description(table.description)
        .set_owner(table.owner)
        .set_last_access_time(table.last_access_time)
        .set_last_analyzed_time(table.last_analyzed_time)
        .retention(table.retention)
        .set_storage_descriptor(table.storage_descriptor)
        .set_partition_keys(table.partition_keys)
        .set_view_original_text(table.view_original_text)
        .set_view_expanded_text(table.view_expanded_text)
        .set_table_type(table.table_type)
        .set_target_table(table.target_table)
        .set_parameters(Some(parameters))
        .build()
        .map_err(|error| format!("could not carry the table's definition over: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_lower_case_without_duplicates_and_never_empty() {
        let tenants = vec![
            "B2C3D4E5-0000-4000-8000-000000000002".to_owned(),
            "a1b2c3d4-0000-4000-8000-000000000001".to_owned(),
            "b2c3d4e5-0000-4000-8000-000000000002".to_owned(),
        ];
        assert_eq!(
            values_text(&tenants),
            "a1b2c3d4-0000-4000-8000-000000000001,b2c3d4e5-0000-4000-8000-000000000002"
        );
        assert_eq!(values_text(&[]), NO_TENANT);
        assert_eq!(parse_values(NO_TENANT), Vec::<String>::new());
        assert_eq!(parse_values(&values_text(&tenants)).len(), 2);
    }
}
