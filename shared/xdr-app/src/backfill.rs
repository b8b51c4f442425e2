//! `xdr-backfill`: what a backfill request means. Parsing the event, fixing the window, and
//! keeping clear of what the live sync covers, so the two never write the same version.

use chrono::{DateTime, TimeDelta, Utc};
use futures::stream::{self, StreamExt};
use serde_json::{Value, json};
use tracing::info;
use xdr_core::timeutil::{format_human, parse_instant};
use xdr_core::{
    AlertSource, Clock, EngineError, ObjectSink, Ports, RunRequest, RunSummary, StateStore, SyncState,
    run_sync,
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

/// A backfill window is read as fixed one-day parts, each an independent bounded run with its
/// own small state. Parts are disjoint in `lastUpdateDateTime`, so they can be read concurrently
/// without ever writing one version twice, and the part layout depends only on the window, so
/// every invocation of the same request finds the same parts.
pub const PART_LENGTH: TimeDelta = TimeDelta::days(1);

/// The parts of `[start, end)`: `[start + i days, start + (i + 1) days)`, the last one cut at `end`.
pub fn parts(start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut parts = Vec::new();
    let mut from = start;
    while from < end {
        let to = (from + PART_LENGTH).min(end);
        parts.push((from, to));
        from = to;
    }
    parts
}

/// Where one backfill stands, over all its invocations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackfillTally {
    pub parts: usize,
    pub parts_complete: usize,
    /// Fraction of the window read, 0 to 1.
    pub progress: f64,
    pub alerts_written_total: u64,
    pub objects_written_total: u64,
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
        /// This invocation's work, summed over the parts it read.
        invocation: Box<RunSummary>,
        tally: BackfillTally,
    },
}

impl BackfillOutcome {
    pub fn complete(&self) -> bool {
        match self {
            BackfillOutcome::Nothing { .. } => true,
            BackfillOutcome::Read { tally, .. } => tally.parts_complete == tally.parts,
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
            BackfillOutcome::Read { request, start, end, note, invocation, tally } => {
                let mut value = json!({
                    "complete": self.complete(),
                    "requested": requested(request),
                    "covered": {"start": format_human(*start), "end": format_human(*end)},
                    "progress": tally.progress,
                    "parts": {"total": tally.parts, "complete": tally.parts_complete},
                    "alerts_written_total": tally.alerts_written_total,
                    "objects_written_total": tally.objects_written_total,
                    "alerts_written": invocation.alerts_written,
                    "objects": invocation.objects,
                    "pages": invocation.pages,
                    "duplicates_skipped": invocation.duplicates_skipped,
                    "quarantined": invocation.quarantined,
                    "partitions": invocation.partitions,
                    "slices_split": invocation.slices_split,
                    "slices_reread": invocation.slices_reread,
                    "instants_split": invocation.instants_split,
                });
                if let Some(reason) = &invocation.stopped_because {
                    value["stopped_because"] = json!(reason);
                }
                if let Some(note) = note {
                    value["note"] = json!(note);
                }
                value
            }
        }
    }
}

fn is_complete(state: &SyncState) -> bool {
    state.window_end.is_some_and(|end| state.cursor >= end)
}

/// Adds one part's run to the invocation's sum.
fn add_run(total: &mut RunSummary, run: RunSummary) {
    total.pages += run.pages;
    total.alerts_received += run.alerts_received;
    total.alerts_written += run.alerts_written;
    total.duplicates_skipped += run.duplicates_skipped;
    total.quarantined += run.quarantined;
    total.slices_split += run.slices_split;
    total.slices_reread += run.slices_reread;
    total.instants_split += run.instants_split;
    total.instants_held += run.instants_held;
    total.objects.extend(run.objects);
    total.partitions.extend(run.partitions);
    if total.stopped_because.is_none() {
        total.stopped_because = run.stopped_because;
    }
}

/// One backfill invocation: fix the window (clear of the live sync), then read its incomplete
/// parts, up to `concurrency` at a time, each under its own state, which the live sync never
/// sees. A manifest under the request's own key fixes the window at the first invocation and
/// keeps the tally.
#[allow(clippy::too_many_arguments)]
pub async fn run_backfill<S, T, O, C, F>(
    config: &SyncConfig,
    request: &BackfillRequest,
    source: &S,
    live_state: &T,
    state_for: F,
    sink: &O,
    clock: &C,
    run: RunRequest,
) -> Result<BackfillOutcome, AppError>
where
    S: AlertSource,
    T: StateStore,
    O: ObjectSink,
    C: Clock,
    F: Fn(&str) -> T,
{
    // Credentials first: a run that cannot authenticate reads and changes nothing.
    let fetch_deadline = run.deadline.map(|deadline| deadline - config.engine.finish_reserve);
    source.authenticate(fetch_deadline).await.map_err(EngineError::Source)?;
    let live_floor = live_state.load().await.map_err(EngineError::State)?.map(|(state, _)| state.floor);
    let key = request.state_key(&config.tenant_id);
    let manifest_store = state_for(&key);
    let manifest = manifest_store.load().await.map_err(EngineError::State)?;
    let fixed_end = manifest.as_ref().and_then(|(state, _)| state.window_end);
    let request = request.clone();
    let (start, end, note) = match plan(&request, fixed_end, live_floor, clock.now()) {
        BackfillPlan::Nothing { reason } => {
            info!(reason = %reason, "Nothing to backfill.");
            return Ok(BackfillOutcome::Nothing { request, reason });
        }
        BackfillPlan::Read { start, end, note } => (start, end, note),
    };
    if let Some(note) = &note {
        info!(note = %note, "Backfill window clipped.");
    }
    // The manifest fixes the window before any part is read.
    let (mut manifest_state, revision) = match manifest {
        Some((state, revision)) => (state, revision),
        None => {
            let state = SyncState::bounded(start, end);
            let revision = manifest_store.save(&state, None).await.map_err(EngineError::State)?;
            (state, revision)
        }
    };

    let parts = parts(start, end);
    let stores: Vec<T> = (0..parts.len()).map(|index| state_for(&format!("{key}#part{index:04}"))).collect();
    // Parts before the manifest's cursor are known to be complete; the rest are checked.
    let candidates: Vec<usize> =
        (0..parts.len()).filter(|index| parts[*index].1 > manifest_state.cursor).collect();
    let settings = &config.engine;
    let stores_ref = &stores;
    let parts_ref = &parts;
    let run_ref = &run;
    let results: Vec<Result<Option<RunSummary>, EngineError>> = stream::iter(candidates)
        .map(|index| async move {
            let store = &stores_ref[index];
            if let Some((state, _)) = store.load().await?
                && is_complete(&state)
            {
                return Ok(None);
            }
            if run_ref.deadline.is_some_and(|deadline| clock.now() + settings.finish_reserve >= deadline) {
                return Ok(Some(RunSummary {
                    stopped_because: Some("deadline: no time to start this part".into()),
                    ..RunSummary::default()
                }));
            }
            let (from, to) = parts_ref[index];
            let mut part_settings = settings.clone();
            part_settings.backfill_start = Some(from);
            part_settings.window_end = Some(to);
            let ports = Ports { source, store, sink, clock };
            let part_run =
                RunRequest { run_id: format!("{}p{index}", run_ref.run_id), deadline: run_ref.deadline };
            run_sync(&part_settings, ports, part_run).await.map(Some)
        })
        .buffer_unordered(config.backfill_concurrency.max(1))
        .collect()
        .await;

    let mut invocation = RunSummary { run_id: run.run_id.clone(), ..RunSummary::default() };
    let mut first_error = None;
    for result in results {
        match result {
            Ok(Some(summary)) => add_run(&mut invocation, summary),
            Ok(None) => {}
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    invocation.partitions.sort();
    invocation.partitions.dedup();

    // The tally over all parts, and the manifest's cursor at the end of the completed prefix.
    let mut tally = BackfillTally { parts: parts.len(), ..BackfillTally::default() };
    let total_millis = (end - start).num_milliseconds().max(1) as f64;
    let mut prefix_complete = true;
    for (index, store) in stores.iter().enumerate() {
        let state = store.load().await.map_err(EngineError::State)?.map(|(state, _)| state);
        let (from, to) = parts[index];
        let done = match &state {
            Some(state) => is_complete(state),
            None => to <= manifest_state.cursor,
        };
        if let Some(state) = &state {
            tally.alerts_written_total += state.written_alerts;
            tally.objects_written_total += state.written_objects;
            tally.progress +=
                state.progress().unwrap_or(0.0) * (to - from).num_milliseconds() as f64 / total_millis;
        } else if done {
            tally.progress += (to - from).num_milliseconds() as f64 / total_millis;
        }
        if done {
            tally.parts_complete += 1;
        }
        prefix_complete &= done;
        if prefix_complete {
            manifest_state.cursor = manifest_state.cursor.max(to);
        }
    }
    tally.progress = tally.progress.clamp(0.0, 1.0);
    manifest_state.written_alerts = tally.alerts_written_total;
    manifest_state.written_objects = tally.objects_written_total;
    manifest_store.save(&manifest_state, Some(&revision)).await.map_err(EngineError::State)?;
    info!(
        alerts = invocation.alerts_written,
        alerts_total = tally.alerts_written_total,
        parts_complete = tally.parts_complete,
        parts = tally.parts,
        progress = tally.progress,
        "Backfill progress."
    );
    if let Some(error) = first_error {
        return Err(error.into());
    }
    Ok(BackfillOutcome::Read { request, start, end, note, invocation: Box::new(invocation), tally })
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
    fn parts_are_whole_days_from_the_start() {
        let start = t("2026-11-01T06:00:00Z");
        let split = parts(start, t("2026-11-03T12:00:00Z"));
        assert_eq!(
            split,
            vec![
                (start, t("2026-11-02T06:00:00Z")),
                (t("2026-11-02T06:00:00Z"), t("2026-11-03T06:00:00Z")),
                (t("2026-11-03T06:00:00Z"), t("2026-11-03T12:00:00Z")),
            ]
        );
        assert!(parts(start, start).is_empty());
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
