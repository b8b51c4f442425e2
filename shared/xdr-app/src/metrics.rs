//! Run metrics as CloudWatch Embedded Metric Format (EMF): one JSON line on stdout per run,
//! which CloudWatch Logs turns into metrics. Names and the `Function` dimension match the
//! dashboard and alarms in `infra/template.yaml`.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

pub const DEFAULT_NAMESPACE: &str = "XdrLake";

/// One run's numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunMetrics {
    pub alerts_written: u64,
    pub objects_written: u64,
    /// Seconds between now and the end of what is covered (the saved cursor).
    pub lag_seconds: Option<f64>,
    pub graph_requests: u64,
    pub throttled_requests: u64,
    pub duration_ms: u64,
    /// 1 when the run covered everything up to its end, else 0.
    pub complete: u64,
    /// 1 when the run failed, else 0.
    pub errors: u64,
    /// Time slices split because one answer did not hold them.
    pub slices_split: u64,
    /// Reads of a dense instant repeated because its pages came back short.
    pub slices_reread: u64,
    /// Dense instants split by another filterable property.
    pub instants_split: u64,
    /// 1 when an instant no filter could split holds the cursor, else 0.
    pub instants_held: u64,
    /// 1 when a state write was refused before it was made because it would not fit the store's
    /// item limit (`StateTooLargeError`), else 0.
    pub state_too_large: u64,
    /// 1 when the run refused to start over (`TenantStateError`: a lost or re-keyed state).
    pub state_refused: u64,
}

/// The EMF document for one run of `function` (`xdr-sync` or `xdr-backfill`).
pub fn emf_line(namespace: &str, function: &str, metrics: &RunMetrics, now: DateTime<Utc>) -> String {
    let mut definitions = vec![
        json!({"Name": "AlertsWritten", "Unit": "Count"}),
        json!({"Name": "ObjectsWritten", "Unit": "Count"}),
        json!({"Name": "GraphRequests", "Unit": "Count"}),
        json!({"Name": "ThrottledRequests", "Unit": "Count"}),
        json!({"Name": "RunDuration", "Unit": "Milliseconds"}),
        json!({"Name": "RunsComplete", "Unit": "Count"}),
        json!({"Name": "RunErrors", "Unit": "Count"}),
        json!({"Name": "SlicesSplit", "Unit": "Count"}),
        json!({"Name": "SlicesReread", "Unit": "Count"}),
        json!({"Name": "InstantsSplit", "Unit": "Count"}),
        json!({"Name": "InstantsHeld", "Unit": "Count"}),
        json!({"Name": "StateTooLarge", "Unit": "Count"}),
        json!({"Name": "StateRefused", "Unit": "Count"}),
    ];
    let mut document = Map::new();
    document.insert("Function".into(), json!(function));
    document.insert("AlertsWritten".into(), json!(metrics.alerts_written));
    document.insert("ObjectsWritten".into(), json!(metrics.objects_written));
    document.insert("GraphRequests".into(), json!(metrics.graph_requests));
    document.insert("ThrottledRequests".into(), json!(metrics.throttled_requests));
    document.insert("RunDuration".into(), json!(metrics.duration_ms));
    document.insert("RunsComplete".into(), json!(metrics.complete));
    document.insert("RunErrors".into(), json!(metrics.errors));
    document.insert("SlicesSplit".into(), json!(metrics.slices_split));
    document.insert("SlicesReread".into(), json!(metrics.slices_reread));
    document.insert("InstantsSplit".into(), json!(metrics.instants_split));
    document.insert("InstantsHeld".into(), json!(metrics.instants_held));
    document.insert("StateTooLarge".into(), json!(metrics.state_too_large));
    document.insert("StateRefused".into(), json!(metrics.state_refused));
    if let Some(lag) = metrics.lag_seconds {
        definitions.push(json!({"Name": "LagSeconds", "Unit": "Seconds"}));
        document.insert("LagSeconds".into(), json!(lag.max(0.0).round()));
    }
    document.insert(
        "_aws".into(),
        json!({
            "Timestamp": now.timestamp_millis(),
            "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": [["Function"]], "Metrics": definitions}],
        }),
    );
    Value::Object(document).to_string()
}

/// Prints the EMF line on stdout (logs go to stderr, so the line stands alone).
pub fn emit(namespace: &str, function: &str, metrics: &RunMetrics) {
    let line = emf_line(namespace, function, metrics, Utc::now());
    let mut stdout = std::io::stdout().lock();
    // A lost metric line must not fail the run.
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_documents_declare_every_metric_they_carry() {
        let metrics = RunMetrics {
            alerts_written: 12,
            objects_written: 2,
            lag_seconds: Some(61.4),
            graph_requests: 5,
            throttled_requests: 1,
            duration_ms: 830,
            complete: 1,
            errors: 0,
            slices_split: 3,
            slices_reread: 0,
            instants_split: 1,
            instants_held: 0,
            state_too_large: 0,
            state_refused: 0,
        };
        let now = DateTime::parse_from_rfc3339("2026-11-28T06:00:00Z").unwrap().with_timezone(&Utc);
        let line = emf_line("XdrLake/prod", "xdr-sync", &metrics, now);
        assert!(!line.contains('\n'));
        let value: Value = serde_json::from_str(&line).unwrap();
        let directive = &value["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "XdrLake/prod");
        assert_eq!(directive["Dimensions"], json!([["Function"]]));
        assert_eq!(value["_aws"]["Timestamp"], json!(now.timestamp_millis()));
        assert_eq!(value["Function"], "xdr-sync");
        for definition in directive["Metrics"].as_array().unwrap() {
            let name = definition["Name"].as_str().unwrap();
            assert!(value[name].is_number(), "{name} is declared and present");
        }
        assert_eq!(value["LagSeconds"], json!(61.0));
        assert_eq!(value["AlertsWritten"], json!(12));
        let without_lag = emf_line("N", "xdr-backfill", &RunMetrics::default(), now);
        assert!(!without_lag.contains("LagSeconds"));
    }
}
