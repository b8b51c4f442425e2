//! The tenant registry of a stack that syncs many tenants: one entry per Entra tenant, which the
//! operator edits without redeploying (`xdr-sync tenants ...`). The fan-out reads it each
//! interval and invokes the sync once per enabled tenant; the sync reads the entry it is named.

use chrono::{DateTime, Utc};

use crate::stream::Stream;

/// One registered tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantEntry {
    /// The Entra tenant's GUID, lower case: the registry's key, the state keys' and the output's
    /// `tenant=` partition.
    pub tenant_id: String,
    /// A name for people (dashboards, the stale-tenants list).
    pub display_name: String,
    /// The Secrets Manager secret holding this tenant's app credentials; `None`: the stack's
    /// shared secret (one multi-tenant app, consented in every customer tenant).
    pub secret_id: Option<String>,
    /// The streams to sync for this tenant; `None`: every stream the stack serves.
    pub streams: Option<Vec<Stream>>,
    /// Where this tenant's first run starts; `None`: the stack's `BACKFILL_START`, or now.
    pub backfill_start: Option<DateTime<Utc>>,
    /// A disabled tenant keeps its entry, state and data, and is not synced.
    pub enabled: bool,
    /// When the entry was last written.
    pub updated_at: DateTime<Utc>,
}

/// Whether `text` is a GUID (`72f988bf-86f1-41af-91ab-2d7cd011db47`, any case).
pub fn is_guid(text: &str) -> bool {
    text.len() == 36
        && text
            .char_indices()
            .all(|(at, c)| if matches!(at, 8 | 13 | 18 | 23) { c == '-' } else { c.is_ascii_hexdigit() })
}

/// A tenant id as the registry keys it: a GUID, lower case. Anything else is refused with what
/// is wrong (a registry keyed by domain names could hold one tenant twice).
pub fn registry_key(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    if is_guid(trimmed) {
        Ok(trimmed.to_ascii_lowercase())
    } else {
        Err(format!(
            "`{}` is not a tenant id; the registry takes the tenant's GUID (like 72f988bf-86f1-41af-91ab-2d7cd011db47), not its domain",
            trimmed.escape_debug()
        ))
    }
}

/// `alerts,incidents`: known stream names, at least one, in the product's order.
pub fn parse_stream_list(text: &str) -> Result<Vec<Stream>, String> {
    let mut wanted = Vec::new();
    for name in text.split(',').map(str::trim).filter(|name| !name.is_empty()) {
        let stream = crate::stream::by_name(&name.to_ascii_lowercase()).ok_or_else(|| {
            format!("`{name}` is not a stream; use a comma-separated list of {}", crate::stream::names())
        })?;
        wanted.push(stream);
    }
    if wanted.is_empty() {
        return Err(format!("names no stream; use one or more of {}", crate::stream::names()));
    }
    Ok(crate::stream::STREAMS.iter().copied().filter(|stream| wanted.contains(stream)).collect())
}

/// The list as `parse_stream_list` reads it.
pub fn stream_list(streams: &[Stream]) -> String {
    streams.iter().map(|stream| stream.name).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{ALERTS, INCIDENTS};

    #[test]
    fn keys_are_lower_case_guids() {
        assert_eq!(
            registry_key(" 72F988BF-86F1-41AF-91AB-2D7CD011DB47 ").unwrap(),
            "72f988bf-86f1-41af-91ab-2d7cd011db47"
        );
        let error = registry_key("contoso.onmicrosoft.com").unwrap_err();
        assert!(error.contains("not its domain"), "{error}");
        assert!(registry_key("72f988bf-86f1-41af-91ab-2d7cd011db4").is_err());
    }

    #[test]
    fn stream_lists_are_checked_and_ordered() {
        assert_eq!(parse_stream_list("incidents, alerts").unwrap(), vec![ALERTS, INCIDENTS]);
        assert_eq!(stream_list(&[ALERTS, INCIDENTS]), "alerts,incidents");
        assert!(parse_stream_list("alerts,incident").unwrap_err().contains("`incident` is not a stream"));
        assert!(parse_stream_list(" , ").unwrap_err().contains("names no stream"));
    }
}
