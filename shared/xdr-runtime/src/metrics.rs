//! Run metrics as CloudWatch Embedded Metric Format (EMF): one JSON line on stdout per stream
//! run, which CloudWatch Logs turns into metrics. Each metric is published by `Function`,
//! `Stream` and `Tenant` (one line per tenant and stream on the dashboard, and each stream's
//! alarms); the alerts stream's also by `Function` alone (what the first release's alarms and
//! the dashboard's totals watch, so they keep their meaning). Names match `infra/template.yaml`.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::error::AppError;
use crate::response::Measured;

/// Which run the metrics are about: the dimensions.
#[derive(Debug, Clone, Copy)]
pub struct MetricsScope<'a> {
    /// `xdr-sync` or `xdr-backfill`.
    pub function: &'a str,
    /// `alerts` or `incidents`.
    pub stream: &'a str,
    /// `TENANT_ID` as configured.
    pub tenant: &'a str,
}

/// One run's numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunMetrics {
    /// Versions written (alerts or incidents); published as `VersionsWritten` and, as before
    /// there were streams, `AlertsWritten`.
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
    /// Incident reads made without `$expand=alerts` although it was asked for (Graph failed it).
    pub expand_fallbacks: u64,
}

impl RunMetrics {
    /// One invocation's metrics, from what it answered (or the error it failed with).
    pub fn of<R: Measured>(result: &Result<R, AppError>, duration_ms: u64, now: DateTime<Utc>) -> Self {
        let mut metrics = RunMetrics { duration_ms, ..RunMetrics::default() };
        match result {
            Ok(response) => {
                let requests = response.requests();
                metrics.graph_requests = requests.graph_requests;
                metrics.throttled_requests = requests.throttled_responses;
                metrics.expand_fallbacks = requests.expand_fallbacks;
                metrics.alerts_written = response.alerts_written();
                metrics.objects_written = response.objects_written();
                metrics.complete = u64::from(response.complete());
                if let Some(counters) = response.summary() {
                    metrics.slices_split = counters.slices_split;
                    metrics.slices_reread = counters.slices_reread;
                    metrics.instants_split = counters.instants_split;
                    metrics.lag_seconds = counters
                        .covered_until
                        .map(|covered| (now - covered).num_milliseconds() as f64 / 1000.0);
                }
            }
            Err(error) => {
                metrics.errors = 1;
                metrics.instants_held = u64::from(error.kind() == "InstantUnreadableError");
                metrics.state_too_large = u64::from(error.kind() == "StateTooLargeError");
                metrics.state_refused = u64::from(error.kind() == "TenantStateError");
            }
        }
        metrics
    }
}

/// The EMF document for one run.
pub fn emf_line(
    namespace: &str,
    scope: MetricsScope<'_>,
    metrics: &RunMetrics,
    now: DateTime<Utc>,
) -> String {
    let mut definitions = vec![
        json!({"Name": "AlertsWritten", "Unit": "Count"}),
        json!({"Name": "VersionsWritten", "Unit": "Count"}),
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
        json!({"Name": "ExpandFallbacks", "Unit": "Count"}),
    ];
    let mut document = Map::new();
    document.insert("Function".into(), json!(scope.function));
    document.insert("Stream".into(), json!(scope.stream));
    document.insert("Tenant".into(), json!(scope.tenant));
    document.insert("AlertsWritten".into(), json!(metrics.alerts_written));
    document.insert("VersionsWritten".into(), json!(metrics.alerts_written));
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
    document.insert("ExpandFallbacks".into(), json!(metrics.expand_fallbacks));
    if let Some(lag) = metrics.lag_seconds {
        definitions.push(json!({"Name": "LagSeconds", "Unit": "Seconds"}));
        document.insert("LagSeconds".into(), json!(lag.max(0.0).round()));
    }
    document.insert(
        "_aws".into(),
        json!({
            "Timestamp": now.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": if scope.stream == xdr_core::stream::ALERTS.name {
                    json!([["Function"], ["Function", "Stream", "Tenant"]])
                } else {
                    json!([["Function", "Stream", "Tenant"]])
                },
                "Metrics": definitions,
            }],
        }),
    );
    Value::Object(document).to_string()
}

/// The EMF document of a fan-out's tenant report: `StaleTenants` (what the stale-tenants alarm
/// watches), `RegisteredTenants` and `TenantsRun`, by `Function`.
pub fn report_line(
    namespace: &str,
    report: &crate::tenant_report::TenantReport,
    now: DateTime<Utc>,
) -> String {
    json!({
        "Function": "xdr-sync",
        "StaleTenants": report.stale,
        "RegisteredTenants": report.tenants,
        "TenantsRun": report.runs,
        "_aws": {
            "Timestamp": now.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Function"]],
                "Metrics": [
                    {"Name": "StaleTenants", "Unit": "Count"},
                    {"Name": "RegisteredTenants", "Unit": "Count"},
                    {"Name": "TenantsRun", "Unit": "Count"},
                ],
            }],
        },
    })
    .to_string()
}

/// Prints the EMF line on stdout (logs go to stderr, so the line stands alone).
pub fn emit(namespace: &str, scope: MetricsScope<'_>, metrics: &RunMetrics) {
    print_line(&emf_line(namespace, scope, metrics, Utc::now()));
}

/// Prints one EMF line on stdout, whole.
pub fn print_line(line: &str) {
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
            expand_fallbacks: 0,
        };
        let now = DateTime::parse_from_rfc3339("2026-11-28T06:00:00Z").unwrap().with_timezone(&Utc);
        let scope =
            MetricsScope { function: "xdr-sync", stream: "alerts", tenant: "contoso.onmicrosoft.com" };
        let line = emf_line("XdrLake/prod", scope, &metrics, now);
        assert!(!line.contains('\n'));
        let value: Value = serde_json::from_str(&line).unwrap();
        let directive = &value["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "XdrLake/prod");
        assert_eq!(directive["Dimensions"], json!([["Function"], ["Function", "Stream", "Tenant"]]));
        assert_eq!(value["Stream"], "alerts");
        assert_eq!(value["Tenant"], "contoso.onmicrosoft.com");
        assert_eq!(value["_aws"]["Timestamp"], json!(now.timestamp_millis()));
        assert_eq!(value["Function"], "xdr-sync");
        for definition in directive["Metrics"].as_array().unwrap() {
            let name = definition["Name"].as_str().unwrap();
            assert!(value[name].is_number(), "{name} is declared and present");
        }
        assert_eq!(value["LagSeconds"], json!(61.0));
        assert_eq!(value["AlertsWritten"], json!(12));
        let without_lag =
            emf_line("N", MetricsScope { function: "xdr-backfill", ..scope }, &RunMetrics::default(), now);
        assert!(!without_lag.contains("LagSeconds"));
        // Another stream's runs do not count in the alerts' per-function totals.
        let incidents =
            emf_line("N", MetricsScope { stream: "incidents", ..scope }, &RunMetrics::default(), now);
        let value: Value = serde_json::from_str(&incidents).unwrap();
        assert_eq!(
            value["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function", "Stream", "Tenant"]])
        );
    }
}
