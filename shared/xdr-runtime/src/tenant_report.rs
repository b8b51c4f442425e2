//! After each fan-out, which registered tenants are stale: their run failed (a bad secret, no
//! consent, throttled past the deadline, Graph down), a stream of theirs lags more than
//! `STALE_AFTER_SECONDS`, or they were not run at all. One number for one alarm
//! (`StaleTenants`), and the list, with reasons, in the log and the answer.
//!
//! The fan-out hands over what each tenant's invocation answered, as the state machine's Map
//! collects it: `{"tenant": "<guid>", "answer": {"health": {...}}}` for an answer (its compact
//! `health`, so the results of hundreds of tenants stay within a state's 256 KB) and
//! `{"tenant": "<guid>", "failure": {"Error": "<type>", "Cause": "<Lambda's error JSON>"}}` for
//! a failed invocation.
//!
//! The template's Map writes those results to S3 (its `ResultWriter`), and the report is handed
//! where (`ResultWriterDetails`: the bucket and the key of the map run's `manifest.json`), so
//! no state holds them all. `manifest_files` and `runs_in_results` read what Step Functions
//! wrote there: the manifest lists result files by status, and each file holds the child
//! executions, each with its `Input` and, when it succeeded, its `Output` (JSON text).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use xdr_core::tenants::TenantEntry;
use xdr_core::timeutil::parse_instant;

use crate::error::AppError;
use crate::response::SyncAnswer;

/// One stale tenant, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StaleTenant {
    pub tenant: String,
    pub name: String,
    /// Every reason, one per failed or lagging stream (or one for the invocation).
    pub reasons: Vec<String>,
}

/// The report's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantReport {
    /// Enabled tenants in the registry.
    pub tenants: usize,
    /// Of those, how many the fan-out ran.
    pub runs: usize,
    pub stale: usize,
    pub stale_tenants: Vec<StaleTenant>,
}

/// What the fan-out reported of one tenant.
enum Outcome<'a> {
    Answered(&'a Value),
    Failed { error: String, message: String },
}

fn outcome_of(run: &Value) -> Option<(String, Outcome<'_>)> {
    let tenant = run.get("tenant")?.as_str()?.trim().to_ascii_lowercase();
    if let Some(answer) = run.get("answer").filter(|answer| answer.is_object()) {
        return Some((tenant, Outcome::Answered(answer)));
    }
    let failure = run.get("failure");
    let text = |name: &str| failure.and_then(|f| f.get(name)).and_then(Value::as_str).unwrap_or_default();
    let error = if text("Error").is_empty() { "UnknownError".to_owned() } else { text("Error").to_owned() };
    // Lambda's errors come as `{"errorMessage": ..., "errorType": ...}` in `Cause`; Step
    // Functions' own (a timeout) as plain text.
    let cause = text("Cause");
    let message = serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|value| value.get("errorMessage").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| cause.to_owned());
    Some((tenant, Outcome::Failed { error, message: one_line(&message) }))
}

/// At most 300 characters on one line (the reasons reach logs and alarms' readers).
fn one_line(text: &str) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    flat.chars().take(300).collect()
}

/// What the report needs of a registry-driven answer, per stream: `covered_until`, and when
/// the stream failed, `error_type` and `error` (at most 300 characters): about 100 bytes.
pub fn health(answer: &SyncAnswer) -> Value {
    let streams: serde_json::Map<String, Value> = answer
        .streams
        .iter()
        .map(|(name, entry)| {
            let mut health = serde_json::Map::new();
            if let Some(covered) = &entry.covered_until {
                health.insert("covered_until".into(), json!(covered));
            }
            if let Some(error) = &entry.error {
                health.insert("error".into(), json!(one_line(error)));
                health.insert("error_type".into(), json!(entry.error_type));
            }
            ((*name).to_owned(), Value::Object(health))
        })
        .collect();
    Value::Object(streams)
}

/// Why a tenant's answer makes it stale (empty: fresh, or still catching up in time). Reads its
/// `health` (what the state machine keeps), or its `streams` (a whole answer).
fn answer_reasons(answer: &Value, now: DateTime<Utc>, stale_after: TimeDelta) -> Vec<String> {
    let Some(streams) = answer.get("health").or_else(|| answer.get("streams")).and_then(Value::as_object)
    else {
        return Vec::new();
    };
    let mut reasons = Vec::new();
    for (stream, entry) in streams {
        if let Some(error) = entry.get("error").and_then(Value::as_str) {
            let kind = entry.get("error_type").and_then(Value::as_str).unwrap_or("Error");
            reasons.push(format!("{stream}: {kind}: {}", one_line(error)));
            continue;
        }
        let covered = entry.get("covered_until").and_then(Value::as_str).and_then(parse_instant);
        if let Some(covered) = covered
            && now - covered > stale_after
        {
            let behind = (now - covered).num_minutes();
            reasons
                .push(format!("{stream}: covered until {} ({behind} minutes behind)", covered.to_rfc3339()));
        }
    }
    reasons
}

/// The report over the registry's `entries` and the fan-out's `runs`.
pub fn report(
    entries: &[TenantEntry],
    runs: &Value,
    now: DateTime<Utc>,
    stale_after: TimeDelta,
) -> Result<TenantReport, AppError> {
    let runs = runs.as_array().ok_or_else(|| {
        AppError::InvalidEvent("`report.runs` must be the fan-out's list of tenant outcomes".into())
    })?;
    let mut by_tenant: BTreeMap<String, Outcome<'_>> = BTreeMap::new();
    for run in runs {
        if let Some((tenant, outcome)) = outcome_of(run) {
            by_tenant.insert(tenant, outcome);
        }
    }
    let enabled: Vec<&TenantEntry> = entries.iter().filter(|entry| entry.enabled).collect();
    let mut stale_tenants = Vec::new();
    let mut ran = 0;
    for entry in &enabled {
        let reasons = match by_tenant.get(&entry.tenant_id) {
            None => vec!["not run by this fan-out".to_owned()],
            Some(Outcome::Failed { error, message }) => {
                ran += 1;
                vec![format!("{error}: {message}")]
            }
            Some(Outcome::Answered(answer)) => {
                ran += 1;
                answer_reasons(answer, now, stale_after)
            }
        };
        if !reasons.is_empty() {
            stale_tenants.push(StaleTenant {
                tenant: entry.tenant_id.clone(),
                name: entry.display_name.clone(),
                reasons,
            });
        }
    }
    Ok(TenantReport { tenants: enabled.len(), runs: ran, stale: stale_tenants.len(), stale_tenants })
}

/// Where the Map wrote the fan-out's results: `ResultWriterDetails`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultsLocation {
    pub bucket: String,
    pub manifest: String,
}

/// The report event's `results` (the Map's `ResultWriterDetails`), checked to be in the
/// function's own bucket under the fan-out's prefix: the report reads only what the state
/// machine wrote.
pub fn results_location(results: &Value, bucket: &str, prefix: &str) -> Result<ResultsLocation, AppError> {
    let field = |name: &str| results.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let location = ResultsLocation { bucket: field("Bucket"), manifest: field("Key") };
    if location.bucket != bucket {
        return Err(AppError::InvalidEvent(format!(
            "`results.Bucket` is `{}`; the fan-out writes its results to OUTPUT_BUCKET `{bucket}`",
            location.bucket
        )));
    }
    if !location.manifest.starts_with(prefix) || !location.manifest.ends_with("/manifest.json") {
        return Err(AppError::InvalidEvent(format!(
            "`results.Key` is `{}`; the fan-out's manifest is `{prefix}<map run>/manifest.json`",
            location.manifest
        )));
    }
    Ok(location)
}

/// The result files a map run's manifest lists: those of the child executions that succeeded
/// and that failed. Pending ones never ran; the report finds their tenants not run.
pub fn manifest_files(manifest: &[u8], prefix: &str) -> Result<Vec<String>, AppError> {
    let manifest: Value = serde_json::from_slice(manifest)
        .map_err(|error| AppError::FanOutResults(format!("the map run's manifest is not JSON: {error}")))?;
    let files = manifest
        .get("ResultFiles")
        .ok_or_else(|| AppError::FanOutResults("the map run's manifest has no `ResultFiles`".into()))?;
    let mut keys = Vec::new();
    for status in ["SUCCEEDED", "FAILED"] {
        for file in files.get(status).and_then(Value::as_array).into_iter().flatten() {
            let key = file.get("Key").and_then(Value::as_str).unwrap_or_default();
            if !key.starts_with(prefix) {
                return Err(AppError::FanOutResults(format!(
                    "the manifest lists `{key}`, outside the fan-out's prefix `{prefix}`"
                )));
            }
            keys.push(key.to_owned());
        }
    }
    Ok(keys)
}

/// The runs one result file holds, in the shape the report takes (`{"tenant", "answer"}` or
/// `{"tenant", "failure"}`). A JSON array of execution records (or JSON Lines of them), each
/// with its `Output` as JSON text (or, with a `COMPACT` writer, the output itself); a failed
/// child execution has no output: its tenant comes from its `Input`, and its `Error` and
/// `Cause` are the failure.
pub fn runs_in_results(file: &[u8]) -> Result<Vec<Value>, AppError> {
    let records: Vec<Value> = match serde_json::from_slice::<Value>(file) {
        Ok(Value::Array(records)) => records,
        Ok(other) => vec![other],
        Err(_) => file
            .split(|byte| *byte == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .map(serde_json::from_slice)
            .collect::<Result<_, _>>()
            .map_err(|error| {
                AppError::FanOutResults(format!("a result file is neither JSON nor JSON Lines: {error}"))
            })?,
    };
    let text_or_value = |value: Option<&Value>| match value {
        Some(Value::String(text)) => serde_json::from_str::<Value>(text).ok(),
        Some(value @ Value::Object(_)) => Some(value.clone()),
        _ => None,
    };
    let mut runs = Vec::with_capacity(records.len());
    for record in records {
        if record.get("tenant").is_some() {
            runs.push(record); // COMPACT: the child's output itself
        } else if let Some(output) = text_or_value(record.get("Output")).filter(|o| o.get("tenant").is_some())
        {
            runs.push(output);
        } else if let Some(input) = text_or_value(record.get("Input")) {
            let text = |name: &str| record.get(name).and_then(Value::as_str).unwrap_or_default();
            let error = if text("Error").is_empty() { "States.ExecutionFailed" } else { text("Error") };
            runs.push(
                json!({"tenant": input.get("tenant"), "failure": {"Error": error, "Cause": text("Cause")}}),
            );
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_runs_results_are_read_as_step_functions_writes_them() {
        let prefix = "defender-xdr/control/fan-out/";
        let results = json!({"Bucket": "lake", "Key": "defender-xdr/control/fan-out/3f2a/manifest.json"});
        let location = results_location(&results, "lake", prefix).unwrap();
        assert_eq!(location.manifest, "defender-xdr/control/fan-out/3f2a/manifest.json");
        assert!(results_location(&results, "other", prefix).is_err());
        let elsewhere = json!({"Bucket": "lake", "Key": "defender-xdr/alerts/manifest.json"});
        assert!(results_location(&elsewhere, "lake", prefix).is_err());

        let manifest = json!({
            "DestinationBucket": "lake",
            "MapRunArn": "arn:aws:states:us-east-1:123456789012:mapRun:xdr-fan-out/SyncEachTenant:3f2a",
            "ResultFiles": {
                "FAILED": [{"Key": "defender-xdr/control/fan-out/3f2a/FAILED_0.json", "Size": 10}],
                "PENDING": [{"Key": "defender-xdr/control/fan-out/3f2a/PENDING_0.json", "Size": 10}],
                "SUCCEEDED": [{"Key": "defender-xdr/control/fan-out/3f2a/SUCCEEDED_0.json", "Size": 10}]
            }
        });
        let keys = manifest_files(manifest.to_string().as_bytes(), prefix).unwrap();
        assert_eq!(
            keys,
            [
                "defender-xdr/control/fan-out/3f2a/SUCCEEDED_0.json",
                "defender-xdr/control/fan-out/3f2a/FAILED_0.json"
            ]
        );
        let outside = manifest.to_string().replace("3f2a/FAILED", "../../alerts/FAILED");
        assert!(manifest_files(outside.as_bytes(), "defender-xdr/control/fan-out/3f2a/").is_err());

        let answered = json!({"tenant": "a", "answer": {"health": {"alerts": {"covered_until": "2026-11-28T05:59:00Z"}}}});
        let caught = json!({"tenant": "b", "failure": {"Error": "CredentialsError", "Cause": "{}"}});
        let succeeded = json!([
            {"ExecutionArn": "arn:1", "Input": "{\"tenant\":\"a\"}", "Output": answered.to_string(), "Status": "SUCCEEDED"},
            {"ExecutionArn": "arn:2", "Input": "{\"tenant\":\"b\"}", "Output": caught.to_string(), "Status": "SUCCEEDED"}
        ]);
        let failed = json!([{"ExecutionArn": "arn:3", "Input": "{\"tenant\":\"c\"}", "Status": "TIMED_OUT", "Error": "States.Timeout", "Cause": "The execution timed out."}]);
        let mut runs = runs_in_results(succeeded.to_string().as_bytes()).unwrap();
        runs.extend(runs_in_results(failed.to_string().as_bytes()).unwrap());
        assert_eq!(runs[0], answered);
        assert_eq!(runs[1], caught);
        assert_eq!(
            runs[2],
            json!({"tenant": "c", "failure": {"Error": "States.Timeout", "Cause": "The execution timed out."}})
        );
        // JSON Lines, and COMPACT records, read the same.
        let lines = format!("{answered}\n{caught}\n");
        assert_eq!(runs_in_results(lines.as_bytes()).unwrap(), vec![answered, caught]);
        assert!(runs_in_results(b"not json").is_err());
    }

    fn now() -> DateTime<Utc> {
        parse_instant("2026-11-28T06:00:00Z").unwrap()
    }

    fn entry(n: u8, enabled: bool) -> TenantEntry {
        TenantEntry {
            tenant_id: format!("00000000-0000-4000-8000-0000000000{n:02}"),
            display_name: format!("Tenant {n}"),
            secret_id: None,
            streams: None,
            backfill_start: None,
            enabled,
            updated_at: now(),
        }
    }

    #[test]
    fn failed_lagging_and_missing_tenants_are_stale_with_their_reasons() {
        let entries: Vec<TenantEntry> = (1..=6).map(|n| entry(n, n != 6)).collect();
        let fresh = json!({"complete": true, "streams": {"alerts": {"complete": true, "covered_until": "2026-11-28T05:59:00Z"}}});
        let runs = json!([
            {"tenant": entries[0].tenant_id, "answer": fresh},
            {"tenant": entries[1].tenant_id.to_uppercase(), "failure": {"Error": "CredentialsError", "Cause": "{\"errorMessage\":\"AADSTS7000215: Invalid client secret provided.\\nTrace\",\"errorType\":\"CredentialsError\"}"}},
            {"tenant": entries[2].tenant_id, "answer": {"complete": false, "streams": {
                "alerts": {"complete": true, "covered_until": "2026-11-28T05:59:00Z"},
                "incidents": {"complete": false, "error": "Graph refused: 403", "error_type": "CredentialsError"}}}},
            {"tenant": entries[3].tenant_id, "answer": {"health": {"alerts": {"covered_until": "2026-11-28T04:00:00Z"}}}},
            {"tenant": entries[5].tenant_id, "failure": {"Error": "States.Timeout", "Cause": "timed out"}},
        ]);
        let report = report(&entries, &runs, now(), TimeDelta::hours(1)).unwrap();
        assert_eq!((report.tenants, report.runs, report.stale), (5, 4, 4));
        let reasons: Vec<(&str, String)> =
            report.stale_tenants.iter().map(|t| (t.name.as_str(), t.reasons.join("; "))).collect();
        assert_eq!(
            reasons[0],
            ("Tenant 2", "CredentialsError: AADSTS7000215: Invalid client secret provided. Trace".into())
        );
        assert_eq!(reasons[1], ("Tenant 3", "incidents: CredentialsError: Graph refused: 403".into()));
        assert_eq!(
            reasons[2],
            ("Tenant 4", "alerts: covered until 2026-11-28T04:00:00+00:00 (120 minutes behind)".into())
        );
        assert_eq!(reasons[3], ("Tenant 5", "not run by this fan-out".into()));
        // A disabled tenant is never stale.
        assert!(report.stale_tenants.iter().all(|t| t.name != "Tenant 6"));
    }

    #[test]
    fn runs_must_be_a_list() {
        let error = report(&[], &json!({"tenant": "x"}), now(), TimeDelta::hours(1)).unwrap_err();
        assert_eq!(error.kind(), "InvalidEventError");
    }
}
