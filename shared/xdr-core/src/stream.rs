//! What the product reads: one descriptor per Graph collection it syncs. Everything that used to
//! assume alerts (the Graph path, the permission a 403 names, the default output prefix, the
//! Athena table, the state keys, the page size, the properties an instant is split by) takes it
//! from here.

use crate::query::Property;

/// One Graph collection synced as its own stream: own state, lease, output and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    /// The name in state keys, events, metrics and logs (`alerts`).
    pub name: &'static str,
    /// What one record is called in messages (`alert`).
    pub noun: &'static str,
    /// The collection's path under the Graph base URL.
    pub resource_path: &'static str,
    /// The application permission Graph wants for it (named when it answers 403).
    pub permission: &'static str,
    /// Where its objects go unless configured otherwise (`OUTPUT_PREFIX` for alerts).
    pub default_prefix: &'static str,
    /// The Athena table over that prefix (`infra/template.yaml`).
    pub table: &'static str,
    /// The largest `$top` Graph accepts for it (`PAGE_SIZE` is clamped to it).
    pub max_page_size: u32,
    /// The string properties Graph filters it by with `eq`/`ne`, in the order one instant that
    /// holds too many versions is split by them (after `createdDateTime` ranges).
    pub split_properties: &'static [Property],
    /// The file name of its tenant marker (`<control>/tenants/<guid>/<file>`).
    pub marker_file: &'static str,
    /// A sub-folder of `QUARANTINE_PREFIX` for its quarantine (`None`: the prefix itself).
    pub quarantine_folder: Option<&'static str>,
}

/// Alerts (`/security/alerts_v2`).
pub const ALERTS: Stream = Stream {
    name: "alerts",
    noun: "alert",
    resource_path: "v1.0/security/alerts_v2",
    permission: "SecurityAlert.Read.All",
    default_prefix: crate::layout::DEFAULT_OUTPUT_PREFIX,
    table: "alerts",
    max_page_size: 1000,
    // Every property, those with many values first.
    split_properties: &Property::ALL,
    marker_file: "sync.json",
    quarantine_folder: None,
};

/// Incidents (`/security/incidents`): `$top` is at most 50 (Graph answers 400 above it), and
/// `serviceSource` is not one of its properties.
pub const INCIDENTS: Stream = Stream {
    name: "incidents",
    noun: "incident",
    resource_path: "v1.0/security/incidents",
    permission: "SecurityIncident.Read.All",
    default_prefix: crate::layout::DEFAULT_INCIDENTS_PREFIX,
    table: "incidents",
    max_page_size: 50,
    split_properties: &[
        Property::Severity,
        Property::Status,
        Property::Classification,
        Property::Determination,
        Property::AssignedTo,
    ],
    marker_file: "sync-incidents.json",
    quarantine_folder: Some("incidents"),
};

/// Every stream the product knows, in the order a run serves them.
pub const STREAMS: &[Stream] = &[ALERTS, INCIDENTS];

/// The stream called `name`, if there is one.
pub fn by_name(name: &str) -> Option<Stream> {
    STREAMS.iter().copied().find(|stream| stream.name == name)
}

/// The names of every stream, for messages (`alerts, incidents`).
pub fn names() -> String {
    STREAMS.iter().map(|stream| stream.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_found_by_name() {
        assert_eq!(by_name("alerts"), Some(ALERTS));
        assert_eq!(by_name("incidents"), Some(INCIDENTS));
        assert_eq!(by_name("Alerts"), None);
        assert_eq!(ALERTS.default_prefix, "defender-xdr/alerts");
        assert_eq!(INCIDENTS.default_prefix, "defender-xdr/incidents");
        assert_eq!(names(), "alerts, incidents");
    }

    #[test]
    fn incidents_are_never_split_by_a_property_they_do_not_have() {
        assert!(!INCIDENTS.split_properties.contains(&Property::ServiceSource));
        assert_eq!(INCIDENTS.max_page_size, 50);
    }
}
