//! What the product reads: one descriptor per Graph collection it syncs. Everything that used to
//! assume alerts (the Graph path, the permission a 403 names, the default output prefix, the
//! Athena table, the state keys) takes it from here.

/// One Graph collection synced as its own stream: own state, lease, output and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    /// The name in state keys, events, metrics and logs (`alerts`).
    pub name: &'static str,
    /// The collection's path under the Graph base URL.
    pub resource_path: &'static str,
    /// The application permission Graph wants for it (named when it answers 403).
    pub permission: &'static str,
    /// Where its objects go unless configured otherwise (`OUTPUT_PREFIX` for alerts).
    pub default_prefix: &'static str,
    /// The Athena table over that prefix (`infra/template.yaml`).
    pub table: &'static str,
}

/// Alerts (`/security/alerts_v2`): the one stream today.
pub const ALERTS: Stream = Stream {
    name: "alerts",
    resource_path: "v1.0/security/alerts_v2",
    permission: "SecurityAlert.Read.All",
    default_prefix: crate::layout::DEFAULT_OUTPUT_PREFIX,
    table: "alerts",
};

/// Every stream the product knows.
pub const STREAMS: &[Stream] = &[ALERTS];

/// The stream called `name`, if there is one.
pub fn by_name(name: &str) -> Option<Stream> {
    STREAMS.iter().copied().find(|stream| stream.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_found_by_name() {
        assert_eq!(by_name("alerts"), Some(ALERTS));
        assert_eq!(by_name("Alerts"), None);
        assert_eq!(ALERTS.default_prefix, "defender-xdr/alerts");
    }
}
