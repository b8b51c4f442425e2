//! Where objects go. Athena reads every file under the data prefix, so only data objects live
//! there: `<prefix>/dt=<YYYY-MM-DD>/<file>.gz`. Quarantine lives under a separate prefix.

use chrono::{DateTime, NaiveDate, Utc};

pub const DEFAULT_OUTPUT_PREFIX: &str = "defender-xdr/alerts";
pub const DEFAULT_INCIDENTS_PREFIX: &str = "defender-xdr/incidents";
pub const DEFAULT_QUARANTINE_PREFIX: &str = "defender-xdr/quarantine";
/// Markers the sync keeps beside its output (outside the data prefix, which Athena reads).
pub const DEFAULT_CONTROL_PREFIX: &str = "defender-xdr/control";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLayout {
    data_prefix: String,
    quarantine_prefix: String,
    control_prefix: String,
    /// `tenant=<guid>` between the prefix and `dt=`, for a lake that holds many tenants.
    tenant_partition: Option<String>,
    /// The tenant marker's file name (each stream has its own).
    marker_file: &'static str,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("{setting} is empty; it must name a folder such as `defender-xdr/alerts`")]
    Empty { setting: &'static str },
    #[error("{setting} `{value}` has an empty path segment (`//`) or a `.`/`..` segment")]
    BadSegment { setting: &'static str, value: String },
    #[error(
        "OUTPUT_PREFIX `{data}` and QUARANTINE_PREFIX `{quarantine}` overlap; Athena reads everything under the output prefix, so quarantine must live outside it"
    )]
    Overlap { data: String, quarantine: String },
    #[error(
        "CONTROL_PREFIX `{control}` overlaps OUTPUT_PREFIX or QUARANTINE_PREFIX; markers must live outside the data and the quarantine"
    )]
    ControlOverlap { control: String },
}

/// Normalises a folder-like prefix: no leading or trailing slash, no empty or dot segments.
pub fn normalise_prefix(setting: &'static str, value: &str) -> Result<String, LayoutError> {
    let trimmed = value.trim().trim_matches('/');
    if trimmed.is_empty() {
        return Err(LayoutError::Empty { setting });
    }
    if trimmed.split('/').any(|segment| segment.is_empty() || segment == "." || segment == "..") {
        return Err(LayoutError::BadSegment { setting, value: value.to_owned() });
    }
    Ok(trimmed.to_owned())
}

impl OutputLayout {
    pub fn new(data_prefix: &str, quarantine_prefix: &str) -> Result<Self, LayoutError> {
        let data = normalise_prefix("OUTPUT_PREFIX", data_prefix)?;
        let quarantine = normalise_prefix("QUARANTINE_PREFIX", quarantine_prefix)?;
        let inside = |outer: &str, inner: &str| inner == outer || inner.starts_with(&format!("{outer}/"));
        if inside(&data, &quarantine) || inside(&quarantine, &data) {
            return Err(LayoutError::Overlap { data, quarantine });
        }
        Ok(Self {
            data_prefix: data,
            quarantine_prefix: quarantine,
            control_prefix: DEFAULT_CONTROL_PREFIX.to_owned(),
            tenant_partition: None,
            marker_file: crate::stream::ALERTS.marker_file,
        })
    }

    /// The layout of another stream beside this one (which is the alerts' layout): its data under
    /// `data_prefix` (checked as `setting`), its quarantine in its own folder of the quarantine
    /// prefix, its own tenant marker, the same control prefix and tenant partition.
    pub fn for_stream(
        &self,
        stream: crate::stream::Stream,
        setting: &'static str,
        data_prefix: &str,
    ) -> Result<Self, LayoutError> {
        let data = normalise_prefix(setting, data_prefix)?;
        let quarantine = match stream.quarantine_folder {
            Some(folder) => format!("{}/{folder}", self.quarantine_prefix),
            None => self.quarantine_prefix.clone(),
        };
        let inside = |outer: &str, inner: &str| inner == outer || inner.starts_with(&format!("{outer}/"));
        if inside(&data, &quarantine) || inside(&self.quarantine_prefix, &data) {
            return Err(LayoutError::Overlap { data, quarantine });
        }
        if inside(&data, &self.control_prefix) || inside(&self.control_prefix, &data) {
            return Err(LayoutError::ControlOverlap { control: self.control_prefix.clone() });
        }
        Ok(Self {
            data_prefix: data,
            quarantine_prefix: quarantine,
            control_prefix: self.control_prefix.clone(),
            tenant_partition: self.tenant_partition.clone(),
            marker_file: stream.marker_file,
        })
    }

    /// The same layout with markers under `control_prefix`.
    pub fn with_control_prefix(self, control_prefix: &str) -> Result<Self, LayoutError> {
        let control = normalise_prefix("CONTROL_PREFIX", control_prefix)?;
        let inside = |outer: &str, inner: &str| inner == outer || inner.starts_with(&format!("{outer}/"));
        for other in [&self.data_prefix, &self.quarantine_prefix] {
            if inside(other, &control) || inside(&control, other) {
                return Err(LayoutError::ControlOverlap { control });
            }
        }
        Ok(Self { control_prefix: control, ..self })
    }

    /// The same layout with a `tenant=<guid>` partition before `dt=` (data and quarantine).
    pub fn with_tenant_partition(self, tenant: &str) -> Self {
        let safe: String = tenant.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        Self { tenant_partition: Some(safe.to_ascii_lowercase()), ..self }
    }

    fn partition(&self, date: NaiveDate) -> String {
        match &self.tenant_partition {
            Some(tenant) => format!("tenant={tenant}/dt={}", date.format("%Y-%m-%d")),
            None => format!("dt={}", date.format("%Y-%m-%d")),
        }
    }

    pub fn control_prefix(&self) -> &str {
        &self.control_prefix
    }

    /// Where a registry-driven stack's fan-out writes its tenants' results (the template's
    /// Map `ResultWriter`), under the control prefix: `<control>/fan-out/`.
    pub fn fan_out_results_prefix(&self) -> String {
        format!("{}/fan-out/", self.control_prefix)
    }

    /// The live sync's marker for a tenant (by its GUID): which state it syncs with.
    pub fn tenant_marker_key(&self, tenant: &str) -> String {
        let safe: String =
            tenant.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')).collect();
        format!("{}/tenants/{safe}/{}", self.control_prefix, self.marker_file)
    }

    pub fn data_prefix(&self) -> &str {
        &self.data_prefix
    }

    pub fn quarantine_prefix(&self) -> &str {
        &self.quarantine_prefix
    }

    pub fn data_key(&self, date: NaiveDate, file: &ObjectName) -> String {
        format!("{}/{}/{}", self.data_prefix, self.partition(date), file.0)
    }

    pub fn quarantine_key(&self, date: NaiveDate, file: &ObjectName) -> String {
        format!("{}/{}/{}", self.quarantine_prefix, self.partition(date), file.0)
    }
}

/// A file name unique to one run and one object: `<run start>-<run id>-<seq>.ndjson.gz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectName(String);

impl ObjectName {
    pub fn new(run_started: DateTime<Utc>, run_id: &str, sequence: u32) -> Self {
        let safe_id: String =
            run_id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(36).collect();
        Self(format!("{}-{}-{:05}.ndjson.gz", run_started.format("%Y%m%dT%H%M%SZ"), safe_id, sequence))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeutil::parse_instant;

    fn name() -> ObjectName {
        ObjectName::new(parse_instant("2026-11-28T06:05:01.5Z").unwrap(), "ab12/cd", 3)
    }

    #[test]
    fn keys_are_prefix_partition_file_with_no_empty_segment() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        for prefix in ["defender-xdr/alerts", "defender-xdr/alerts/", "/defender-xdr/alerts/"] {
            let layout = OutputLayout::new(prefix, DEFAULT_QUARANTINE_PREFIX).unwrap();
            let key = layout.data_key(date, &name());
            assert_eq!(key, "defender-xdr/alerts/dt=2026-11-28/20261128T060501Z-ab12cd-00003.ndjson.gz");
            assert!(!key.contains("//"));
            let file = key.strip_prefix("defender-xdr/alerts/dt=2026-11-28/").unwrap();
            assert!(!file.contains('/'));
        }
        let layout = OutputLayout::new("alerts", "quarantine").unwrap();
        assert_eq!(
            layout.quarantine_key(date, &name()),
            "quarantine/dt=2026-11-28/20261128T060501Z-ab12cd-00003.ndjson.gz"
        );
        // A lake of many tenants: `tenant=` before `dt=`, from the token's GUID.
        let layout = layout.with_tenant_partition("5DB5D7E5-4C1E-4A31-9C5E-0123456789AB");
        assert_eq!(
            layout.data_key(date, &name()),
            "alerts/tenant=5db5d7e5-4c1e-4a31-9c5e-0123456789ab/dt=2026-11-28/20261128T060501Z-ab12cd-00003.ndjson.gz"
        );
        assert!(layout.quarantine_key(date, &name()).starts_with("quarantine/tenant=5db5d7e5-"));
    }

    #[test]
    fn rejects_bad_or_overlapping_prefixes() {
        assert_eq!(OutputLayout::new("", "q").unwrap_err(), LayoutError::Empty { setting: "OUTPUT_PREFIX" });
        assert!(matches!(OutputLayout::new("a//b", "q"), Err(LayoutError::BadSegment { .. })));
        assert!(matches!(OutputLayout::new("a/../b", "q"), Err(LayoutError::BadSegment { .. })));
        assert!(matches!(OutputLayout::new("xdr", "xdr/quarantine"), Err(LayoutError::Overlap { .. })));
        assert!(matches!(OutputLayout::new("xdr/alerts", "xdr"), Err(LayoutError::Overlap { .. })));
        assert!(matches!(OutputLayout::new("xdr/a", "xdr/a/"), Err(LayoutError::Overlap { .. })));
        assert!(OutputLayout::new("xdr/alerts", "xdr/alerts-quarantine").is_ok());
        let layout = OutputLayout::new("xdr/alerts", "xdr/q").unwrap();
        assert!(matches!(
            layout.clone().with_control_prefix("xdr/alerts/c"),
            Err(LayoutError::ControlOverlap { .. })
        ));
        assert!(matches!(layout.clone().with_control_prefix("xdr"), Err(LayoutError::ControlOverlap { .. })));
        let layout = layout.with_control_prefix("xdr/control/").unwrap();
        assert_eq!(layout.tenant_marker_key("0f6a-../x"), "xdr/control/tenants/0f6a-..x/sync.json");
    }

    #[test]
    fn another_stream_has_its_own_data_quarantine_and_marker() {
        use crate::stream::INCIDENTS;
        let date = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        let alerts = OutputLayout::new("xdr/alerts", "xdr/q").unwrap().with_tenant_partition("AB-1");
        let incidents = alerts.for_stream(INCIDENTS, "INCIDENTS_PREFIX", "/xdr/incidents/").unwrap();
        assert_eq!(
            incidents.data_key(date, &name()),
            format!("xdr/incidents/tenant=ab-1/dt=2026-11-28/{}", name().0)
        );
        assert_eq!(incidents.quarantine_prefix(), "xdr/q/incidents");
        assert_eq!(incidents.tenant_marker_key("g"), "defender-xdr/control/tenants/g/sync-incidents.json");
        assert_eq!(alerts.tenant_marker_key("g"), "defender-xdr/control/tenants/g/sync.json");
        for bad in ["xdr/q", "xdr/q/incidents/x", "xdr", "defender-xdr/control/i"] {
            assert!(alerts.for_stream(INCIDENTS, "INCIDENTS_PREFIX", bad).is_err(), "{bad}");
        }
    }
}
