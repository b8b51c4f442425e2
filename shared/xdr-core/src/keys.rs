//! The one key scheme for every item the product keeps in its state store, decided once here.
//!
//! | item                         | key                                               |
//! |------------------------------|---------------------------------------------------|
//! | live sync state              | `sync#{tenant}#{stream}`                          |
//! | live sync lease              | `lease#sync#{tenant}#{stream}`                    |
//! | backfill manifest (a window) | `backfill#{tenant}#{stream}#{start}#{end\|open}`  |
//! | backfill day ledger          | `backfill#{tenant}#{stream}#day#{YYYY-MM-DD}`     |
//! | backfill lease               | `lease#backfill#{tenant}#{stream}`                |
//! | dedup chunks of a state      | `seen#{state key}#{revision}-{nonce}-{n}`         |
//!
//! `{tenant}` is the tenant's GUID as Entra's token names it (lower case), so a tenant configured
//! by its domain and by its GUID is one tenant. The lease adapters add `lease#`; the DynamoDB
//! store names the chunks. Each function's role may write only its own family (the template's
//! `dynamodb:LeadingKeys` conditions: `sync#*`, `seen#sync#*`, `lease#sync#*` for the sync,
//! `backfill#*`, `seen#backfill#*`, `lease#backfill#*` for the backfill), which every key here
//! and every earlier key below falls into.
//!
//! The first release keyed items by `TENANT_ID` as typed and had no stream segment
//! (`sync#{TENANT_ID}`, `backfill#{TENANT_ID}#{start}#{end}`, `backfill#{TENANT_ID}#day#{day}`);
//! [`StateKeys::previous`] names those, and [`crate::adopt`] carries them over.

use chrono::{DateTime, NaiveDate, Utc};

use crate::stream::{ALERTS, Stream};
use crate::timeutil::format_human;

/// The keys of one tenant's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateKeys {
    tenant: String,
    /// `None`: the first release's layout, which had no stream segment.
    stream: Option<&'static str>,
}

impl StateKeys {
    /// The keys of `stream` for the tenant with this GUID.
    pub fn new(tenant_guid: &str, stream: Stream) -> Self {
        Self { tenant: tenant_guid.to_ascii_lowercase(), stream: Some(stream.name) }
    }

    fn first_release(tenant_as_configured: &str) -> Self {
        Self { tenant: tenant_as_configured.to_owned(), stream: None }
    }

    fn scope(&self) -> String {
        match self.stream {
            Some(stream) => format!("{}#{stream}", self.tenant),
            None => self.tenant.clone(),
        }
    }

    /// The live sync's state (and, with `lease#` in front, its lease).
    pub fn sync(&self) -> String {
        format!("sync#{}", self.scope())
    }

    /// The lease every backfill of this tenant's stream holds: one backfill invocation at a time,
    /// so two windows that share days never read the same day at once.
    pub fn backfill(&self) -> String {
        format!("backfill#{}", self.scope())
    }

    /// The manifest of one requested window: the same event always resumes the same backfill.
    pub fn manifest(&self, start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> String {
        let end = end.map_or_else(|| "open".to_owned(), format_human);
        format!("backfill#{}#{}#{end}", self.scope(), format_human(start))
    }

    /// The ledger of one UTC day, shared by every backfill of this tenant's stream.
    pub fn day(&self, day: NaiveDate) -> String {
        format!("backfill#{}#day#{}", self.scope(), day.format("%Y-%m-%d"))
    }

    /// Where earlier releases kept these items, newest first: for alerts, the first release's
    /// keys under `TENANT_ID` as configured and under the GUID (either spelling may have been
    /// used). Other streams are new, so nothing.
    pub fn previous(&self, tenant_as_configured: &str) -> Vec<StateKeys> {
        if self.stream != Some(ALERTS.name) {
            return Vec::new();
        }
        let mut previous = vec![Self::first_release(tenant_as_configured)];
        if !tenant_as_configured.eq_ignore_ascii_case(&self.tenant) {
            previous.push(Self::first_release(&self.tenant));
        }
        previous
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeutil::parse_instant;

    const GUID: &str = "5db5d7e5-4c1e-4a31-9c5e-0123456789ab";

    #[test]
    fn every_item_has_one_key_under_its_roles_family() {
        let keys = StateKeys::new(&GUID.to_ascii_uppercase(), ALERTS);
        let start = parse_instant("2026-11-01T00:00:00Z").unwrap();
        let end = parse_instant("2026-11-08T00:00:00Z");
        assert_eq!(keys.sync(), format!("sync#{GUID}#alerts"));
        assert_eq!(keys.backfill(), format!("backfill#{GUID}#alerts"));
        assert_eq!(keys.manifest(start, None), format!("backfill#{GUID}#alerts#2026-11-01T00:00:00Z#open"));
        assert_eq!(
            keys.manifest(start, end),
            format!("backfill#{GUID}#alerts#2026-11-01T00:00:00Z#2026-11-08T00:00:00Z")
        );
        assert_eq!(keys.day(start.date_naive()), format!("backfill#{GUID}#alerts#day#2026-11-01"));
    }

    #[test]
    fn the_first_releases_keys_are_named_for_the_migration() {
        let keys = StateKeys::new(GUID, ALERTS);
        let start = parse_instant("2026-11-01T00:00:00Z").unwrap();
        let by_domain = keys.previous("contoso.onmicrosoft.com");
        let names: Vec<String> = by_domain.iter().map(StateKeys::sync).collect();
        assert_eq!(names, vec!["sync#contoso.onmicrosoft.com".to_owned(), format!("sync#{GUID}")]);
        assert_eq!(by_domain[0].backfill(), "backfill#contoso.onmicrosoft.com");
        assert_eq!(
            by_domain[0].manifest(start, None),
            "backfill#contoso.onmicrosoft.com#2026-11-01T00:00:00Z#open"
        );
        assert_eq!(by_domain[0].day(start.date_naive()), "backfill#contoso.onmicrosoft.com#day#2026-11-01");
        // Configured by its GUID (in any case): one earlier spelling, as typed.
        let by_guid = keys.previous(&GUID.to_ascii_uppercase());
        assert_eq!(
            by_guid.iter().map(StateKeys::sync).collect::<Vec<_>>(),
            vec![format!("sync#{}", GUID.to_ascii_uppercase())]
        );
    }
}
