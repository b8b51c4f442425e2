//! `xdr-backfill`: what a backfill request means. Parsing the event, fixing the window, and
//! keeping clear of what the live sync covers, so the two never write the same version.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tracing::info;
use xdr_core::timeutil::{format_human, parse_instant};
use xdr_core::{
    AlertSource, Clock, EngineError, ObjectSink, Ports, RunRequest, RunSummary, StateStore, run_sync,
};

use crate::config::SyncConfig;
use crate::error::AppError;

/// A backfill request that makes sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillRequest {
    pub start: DateTime<Utc>,
    /// `None`: up to where the live sync's coverage begins (or now if it never ran).
    pub end: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackfillEventError {
    #[error(
        "the event is not a JSON object; send {{\"start\": \"2026-11-01T00:00:00Z\", \"end\": \"2026-11-08T00:00:00Z\"}} (end optional)"
    )]
    NotAnObject,
    #[error("the event has no `start`; send {{\"start\": \"2026-11-01T00:00:00Z\"}} and optionally `end`")]
    MissingStart,
    #[error("`{field}` is `{value}`, which is not an RFC 3339 time like 2026-11-01T00:00:00Z")]
    NotRfc3339 { field: &'static str, value: String },
    #[error("`start` ({start}) is not before `end` ({end})")]
    StartNotBeforeEnd { start: String, end: String },
    #[error("`start` ({start}) is in the future")]
    StartInFuture { start: String },
}

impl BackfillRequest {
    pub fn from_event(event: &Value, now: DateTime<Utc>) -> Result<Self, BackfillEventError> {
        let object = event.as_object().ok_or(BackfillEventError::NotAnObject)?;
        let read = |field: &'static str| -> Result<Option<DateTime<Utc>>, BackfillEventError> {
            match object.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => parse_instant(text)
                    .map(Some)
                    .ok_or_else(|| BackfillEventError::NotRfc3339 { field, value: text.clone() }),
                Some(other) => Err(BackfillEventError::NotRfc3339 { field, value: other.to_string() }),
            }
        };
        let start = read("start")?.ok_or(BackfillEventError::MissingStart)?;
        let end = read("end")?;
        if start > now {
            return Err(BackfillEventError::StartInFuture { start: format_human(start) });
        }
        if let Some(end) = end
            && start >= end
        {
            return Err(BackfillEventError::StartNotBeforeEnd {
                start: format_human(start),
                end: format_human(end),
            });
        }
        Ok(Self { start, end })
    }

    /// The name of this request's progress: the same event always resumes the same backfill.
    pub fn state_key(&self, tenant_id: &str) -> String {
        let end = self.end.map_or_else(|| "open".to_owned(), format_human);
        format!("backfill#{tenant_id}#{}#{end}", format_human(self.start))
    }
}

/// The window a backfill actually reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackfillPlan {
    Read {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        note: Option<String>,
    },
    /// Nothing of the window is left for a backfill to read.
    Nothing {
        reason: String,
    },
}

/// Fixes the window: an earlier invocation's `fixed_end` wins (resuming); the end never reaches
/// into what the live sync covers (from `live_floor` on); the end is never in the future.
pub fn plan(
    request: &BackfillRequest,
    fixed_end: Option<DateTime<Utc>>,
    live_floor: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> BackfillPlan {
    if let Some(end) = fixed_end {
        return BackfillPlan::Read { start: request.start, end, note: None };
    }
    let wanted = request.end.unwrap_or_else(|| live_floor.unwrap_or(now)).min(now);
    let end = live_floor.map_or(wanted, |floor| wanted.min(floor));
    if end <= request.start {
        let reason = match live_floor {
            Some(floor) if request.start >= floor => format!(
                "the live sync already covers everything from {} on, so this window is written by it",
                format_human(floor)
            ),
            _ => "the window is empty".to_owned(),
        };
        return BackfillPlan::Nothing { reason };
    }
    let note = (end < wanted).then(|| {
        format!("clipped to end at {}: the live sync covers everything from there on", format_human(end))
    });
    BackfillPlan::Read { start: request.start, end, note }
}

/// What one backfill invocation did.
#[derive(Debug, Clone)]
pub enum BackfillOutcome {
    /// Nothing of the window was left for a backfill to read.
    Nothing { request: BackfillRequest, reason: String },
    /// The window `[start, end)` was read (maybe not to its end yet).
    Read {
        request: BackfillRequest,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        note: Option<String>,
        summary: RunSummary,
    },
}

impl BackfillOutcome {
    pub fn complete(&self) -> bool {
        match self {
            BackfillOutcome::Nothing { .. } => true,
            BackfillOutcome::Read { summary, .. } => summary.complete,
        }
    }

    /// The invocation's JSON result.
    pub fn to_json(&self) -> Value {
        let requested = |request: &BackfillRequest| json!({"start": format_human(request.start), "end": request.end.map(format_human)});
        match self {
            BackfillOutcome::Nothing { request, reason } => json!({
                "complete": true,
                "requested": requested(request),
                "alerts_written": 0,
                "objects": [],
                "progress": 1.0,
                "nothing_to_do": reason,
            }),
            BackfillOutcome::Read { request, start, end, note, summary } => {
                let mut value = serde_json::to_value(summary).unwrap_or_else(|_| json!({}));
                if let Value::Object(fields) = &mut value {
                    fields.insert("requested".into(), requested(request));
                    fields.insert(
                        "covered".into(),
                        json!({"start": format_human(*start), "end": format_human(*end)}),
                    );
                    fields.insert("progress".into(), json!(summary.progress.unwrap_or(0.0)));
                    if let Some(note) = note {
                        fields.insert("note".into(), json!(note));
                    }
                }
                value
            }
        }
    }
}

/// One backfill invocation: fix the window (clear of the live sync), then read it with the
/// engine under its own state, which the live sync never sees.
#[allow(clippy::too_many_arguments)]
pub async fn run_backfill<S, T, O, C>(
    config: &SyncConfig,
    request: &BackfillRequest,
    source: &S,
    live_state: &T,
    backfill_state: &T,
    sink: &O,
    clock: &C,
    run: RunRequest,
) -> Result<BackfillOutcome, AppError>
where
    S: AlertSource,
    T: StateStore,
    O: ObjectSink,
    C: Clock,
{
    // Credentials first: a run that cannot authenticate reads and changes nothing.
    let fetch_deadline = run.deadline.map(|deadline| deadline - config.engine.finish_reserve);
    source.authenticate(fetch_deadline).await.map_err(EngineError::Source)?;
    let live_floor = live_state.load().await.map_err(EngineError::State)?.map(|(state, _)| state.floor);
    let fixed_end =
        backfill_state.load().await.map_err(EngineError::State)?.and_then(|(state, _)| state.window_end);
    let request = request.clone();
    match plan(&request, fixed_end, live_floor, clock.now()) {
        BackfillPlan::Nothing { reason } => {
            info!(reason = %reason, "Nothing to backfill.");
            Ok(BackfillOutcome::Nothing { request, reason })
        }
        BackfillPlan::Read { start, end, note } => {
            if let Some(note) = &note {
                info!(note = %note, "Backfill window clipped.");
            }
            let mut settings = config.engine.clone();
            settings.backfill_start = Some(start);
            settings.window_end = Some(end);
            let ports = Ports { source, store: backfill_state, sink, clock };
            let summary = run_sync(&settings, ports, run).await?;
            info!(
                alerts = summary.alerts_written,
                objects = summary.objects.len(),
                progress = summary.progress.unwrap_or(0.0),
                complete = summary.complete,
                "Backfill progress."
            );
            Ok(BackfillOutcome::Read { request, start, end, note, summary })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(text: &str) -> DateTime<Utc> {
        parse_instant(text).unwrap()
    }

    fn now() -> DateTime<Utc> {
        t("2026-11-28T06:00:00Z")
    }

    #[test]
    fn parses_and_validates_events() {
        let ok = BackfillRequest::from_event(
            &json!({"start": "2026-11-01T00:00:00Z", "end": "2026-11-08T00:00:00Z"}),
            now(),
        )
        .unwrap();
        assert_eq!(ok.end, Some(t("2026-11-08T00:00:00Z")));
        assert_eq!(
            BackfillRequest::from_event(&json!({"start": "2026-11-01T00:00:00Z"}), now()).unwrap().end,
            None
        );
        let bad = |event: Value| BackfillRequest::from_event(&event, now()).unwrap_err();
        assert_eq!(bad(json!([1])), BackfillEventError::NotAnObject);
        assert_eq!(bad(json!({})), BackfillEventError::MissingStart);
        assert!(matches!(
            bad(json!({"start": "last monday"})),
            BackfillEventError::NotRfc3339 { field: "start", .. }
        ));
        assert!(matches!(
            bad(json!({"start": "2026-11-01T00:00:00Z", "end": 5})),
            BackfillEventError::NotRfc3339 { field: "end", .. }
        ));
        assert!(matches!(
            bad(json!({"start": "2026-11-08T00:00:00Z", "end": "2026-11-01T00:00:00Z"})),
            BackfillEventError::StartNotBeforeEnd { .. }
        ));
        assert!(matches!(
            bad(json!({"start": "2026-12-01T00:00:00Z"})),
            BackfillEventError::StartInFuture { .. }
        ));
    }

    #[test]
    fn the_same_event_names_the_same_state() {
        let request = BackfillRequest { start: t("2026-11-01T00:00:00Z"), end: None };
        assert_eq!(request.state_key("contoso"), "backfill#contoso#2026-11-01T00:00:00Z#open");
    }

    #[test]
    fn windows_stop_where_the_live_sync_begins() {
        let request =
            BackfillRequest { start: t("2026-11-01T00:00:00Z"), end: Some(t("2026-11-20T00:00:00Z")) };
        let floor = t("2026-11-15T00:00:00Z");
        match plan(&request, None, Some(floor), now()) {
            BackfillPlan::Read { end, note, .. } => {
                assert_eq!(end, floor);
                assert!(note.unwrap().contains("clipped"));
            }
            other => panic!("{other:?}"),
        }
        let open = BackfillRequest { start: t("2026-11-01T00:00:00Z"), end: None };
        assert_eq!(
            plan(&open, None, None, now()),
            BackfillPlan::Read { start: open.start, end: now(), note: None }
        );
        assert_eq!(
            plan(&open, None, Some(floor), now()),
            BackfillPlan::Read { start: open.start, end: floor, note: None }
        );
        let inside =
            BackfillRequest { start: t("2026-11-16T00:00:00Z"), end: Some(t("2026-11-20T00:00:00Z")) };
        assert!(matches!(plan(&inside, None, Some(floor), now()), BackfillPlan::Nothing { .. }));
        // Resuming keeps the window fixed at the first invocation.
        let fixed = t("2026-11-10T00:00:00Z");
        assert_eq!(
            plan(&open, Some(fixed), Some(floor), now()),
            BackfillPlan::Read { start: open.start, end: fixed, note: None }
        );
    }
}
