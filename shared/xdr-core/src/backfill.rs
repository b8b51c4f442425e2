//! The backfill use case: what a backfill request means (parsing the event, fixing the window,
//! keeping clear of what the live sync covers, so the two never write the same version), its
//! parts (one per UTC day, each with a ledger shared by every window), its manifest, and what
//! one invocation reports.

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::Value;
use tracing::info;

use crate::adopt::Adopting;
use crate::engine::{Ports, RunRequest, run_sync};
pub use crate::error::BackfillEventError;
use crate::error::EngineError;
use crate::keys::StateKeys;
use crate::ports::{AlertSource, Clock, ObjectSink, StateStore};
use crate::settings::SyncSettings;
use crate::state::SyncState;
use crate::summary::{ObjectSummary, RunSummary};
use crate::timeutil::{floor_to_tick, format_human, parse_instant};

/// A backfill request that makes sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillRequest {
    pub start: DateTime<Utc>,
    /// `None`: up to where the live sync's coverage begins (or now if it never ran).
    pub end: Option<DateTime<Utc>>,
    /// What is backfilled (`"stream"`; alerts when the event does not say).
    pub stream: crate::stream::Stream,
}

impl BackfillRequest {
    pub fn from_event(event: &Value, now: DateTime<Utc>) -> Result<Self, BackfillEventError> {
        let object = event.as_object().ok_or(BackfillEventError::NotAnObject)?;
        // A typo (`"End"`) must not silently become an open-ended window.
        if let Some(key) = object.keys().find(|key| !matches!(key.as_str(), "start" | "end" | "stream")) {
            return Err(BackfillEventError::UnknownKey { key: key.clone() });
        }
        let stream = match object.get("stream") {
            None | Some(Value::Null) => crate::stream::ALERTS,
            Some(value) => value.as_str().and_then(crate::stream::by_name).ok_or_else(|| {
                BackfillEventError::UnknownStream {
                    value: value.as_str().map_or_else(|| value.to_string(), str::to_owned),
                    known: crate::stream::names(),
                }
            })?,
        };
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
        Ok(Self { start, end, stream })
    }

    /// This request's manifest: the same event always resumes the same backfill.
    pub fn manifest_key(&self, keys: &StateKeys) -> String {
        keys.manifest(self.start, self.end)
    }
}

/// How far back Graph holds alerts: Defender XDR keeps its data for 180 days. A backfill that
/// starts earlier reads nothing there, and an absurd start would plan thousands of parts.
pub const RETENTION: TimeDelta = TimeDelta::days(180);

/// The most one-day parts one backfill plans: the retention period, with a day of slack at each
/// end for a window that does not start or end at midnight.
pub const MAX_PARTS: usize = 182;

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
/// into what the live sync covers (from `live_floor` on); the end is never in the future. The
/// start goes down to midnight UTC, so every part is a whole UTC day (or the end of the window)
/// and windows that share a day share its ledger. A new window must start within Defender's
/// retention and span at most `MAX_PARTS` days; a resumed one was checked when it began.
pub fn plan(
    request: &BackfillRequest,
    fixed_end: Option<DateTime<Utc>>,
    live_floor: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<BackfillPlan, BackfillEventError> {
    let start = start_of_day(request.start);
    if let Some(end) = fixed_end {
        return Ok(BackfillPlan::Read { start, end: floor_to_tick(end), note: None });
    }
    let floor = now - RETENTION;
    if request.start < floor {
        return Err(BackfillEventError::StartBeforeRetention {
            start: format_human(request.start),
            floor: format_human(floor),
            retention_days: RETENTION.num_days(),
        });
    }
    let wanted = request.end.unwrap_or_else(|| live_floor.unwrap_or(now)).min(now);
    // On Graph's 100 ns tick, as every window the engine reads and saves.
    let end = floor_to_tick(live_floor.map_or(wanted, |floor| wanted.min(floor)));
    if end <= request.start {
        let reason = match live_floor {
            Some(floor) if request.start >= floor => format!(
                "the live sync already covers everything from {} on, so this window is written by it",
                format_human(floor)
            ),
            _ => "the window is empty".to_owned(),
        };
        return Ok(BackfillPlan::Nothing { reason });
    }
    let days = parts(start, end).len();
    if days > MAX_PARTS {
        return Err(BackfillEventError::TooManyParts { days, max: MAX_PARTS });
    }
    let mut notes = Vec::new();
    if start < request.start {
        notes.push(format!("starts at {}: backfills read whole UTC days", format_human(start)));
    }
    if end < wanted {
        notes.push(format!(
            "clipped to end at {}: the live sync covers everything from there on",
            format_human(end)
        ));
    }
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    Ok(BackfillPlan::Read { start, end, note })
}

fn start_of_day(at: DateTime<Utc>) -> DateTime<Utc> {
    at.date_naive().and_time(NaiveTime::MIN).and_utc()
}

/// The parts of `[start, end)`: one per UTC day, `[midnight, next midnight)`, the first one from
/// `start` and the last one cut at `end`. A part's day names its ledger.
pub fn parts(start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<(NaiveDate, DateTime<Utc>, DateTime<Utc>)> {
    let mut parts = Vec::new();
    let mut from = start;
    while from < end {
        let to = (start_of_day(from) + TimeDelta::days(1)).min(end);
        parts.push((from.date_naive(), from, to));
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

    /// What the invocation answers (the backfill state machine reads its `complete`).
    pub fn report(&self) -> BackfillReport {
        let requested = |request: &BackfillRequest| Requested {
            start: format_human(request.start),
            end: request.end.map(format_human),
        };
        match self {
            BackfillOutcome::Nothing { request, reason } => BackfillReport::Nothing(NothingReport {
                complete: true,
                requested: requested(request),
                alerts_written: 0,
                objects: Vec::new(),
                progress: 1.0,
                nothing_to_do: reason.clone(),
            }),
            BackfillOutcome::Read { request, start, end, note, invocation, tally } => {
                BackfillReport::Read(Box::new(ReadReport {
                    complete: self.complete(),
                    requested: requested(request),
                    covered: Covered { start: format_human(*start), end: format_human(*end) },
                    progress: tally.progress,
                    parts: PartCount { total: tally.parts, complete: tally.parts_complete },
                    alerts_written_total: tally.alerts_written_total,
                    objects_written_total: tally.objects_written_total,
                    alerts_written: invocation.alerts_written,
                    objects: invocation.objects.clone(),
                    pages: invocation.pages,
                    duplicates_skipped: invocation.duplicates_skipped,
                    quarantined: invocation.quarantined,
                    partitions: invocation.partitions.clone(),
                    slices_split: invocation.slices_split,
                    slices_reread: invocation.slices_reread,
                    instants_split: invocation.instants_split,
                    stopped_because: invocation.stopped_because.clone(),
                    note: note.clone(),
                }))
            }
        }
    }
}

/// One backfill invocation's answer, in the fields and formats operators script against.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum BackfillReport {
    Nothing(NothingReport),
    Read(Box<ReadReport>),
}

impl BackfillReport {
    pub fn complete(&self) -> bool {
        match self {
            BackfillReport::Nothing(report) => report.complete,
            BackfillReport::Read(report) => report.complete,
        }
    }

    pub fn alerts_written(&self) -> u64 {
        match self {
            BackfillReport::Nothing(report) => report.alerts_written,
            BackfillReport::Read(report) => report.alerts_written,
        }
    }

    pub fn objects(&self) -> &[ObjectSummary] {
        match self {
            BackfillReport::Nothing(report) => &report.objects,
            BackfillReport::Read(report) => &report.objects,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Requested {
    pub start: String,
    /// `null` for an open window.
    pub end: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Covered {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartCount {
    pub total: usize,
    pub complete: usize,
}

/// Nothing of the window was left for a backfill to read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NothingReport {
    pub complete: bool,
    pub requested: Requested,
    pub alerts_written: u64,
    pub objects: Vec<ObjectSummary>,
    pub progress: f64,
    pub nothing_to_do: String,
}

/// The window was read, maybe not to its end yet: the tally over every invocation, and what
/// this one did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadReport {
    pub complete: bool,
    pub requested: Requested,
    pub covered: Covered,
    pub progress: f64,
    pub parts: PartCount,
    pub alerts_written_total: u64,
    pub objects_written_total: u64,
    pub alerts_written: u64,
    pub objects: Vec<ObjectSummary>,
    pub pages: u64,
    pub duplicates_skipped: u64,
    pub quarantined: u64,
    pub partitions: Vec<String>,
    pub slices_split: u64,
    pub slices_reread: u64,
    pub instants_split: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_because: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Whether a day's ledger has read this window's part of the day, up to `to`.
fn covers(state: &SyncState, to: DateTime<Utc>) -> bool {
    state.window_end.is_some_and(|end| end >= to) && state.cursor >= to
}

/// Whether there is still time to start more work: before the fetch deadline.
fn in_time<C: Clock>(clock: &C, fetch_deadline: Option<DateTime<Utc>>) -> bool {
    fetch_deadline.is_none_or(|deadline| clock.now() < deadline)
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

/// Where a backfill reads and writes.
pub struct BackfillPorts<'a, S, L, O, C, F> {
    pub source: &'a S,
    /// The live sync's state, read (never written) for where its coverage begins.
    pub live_state: &'a L,
    /// The state store for a key (manifests and day ledgers).
    pub state_for: F,
    pub sink: &'a O,
    pub clock: &'a C,
}

/// How a backfill runs: the engine's settings for each part, and how many parts at once.
#[derive(Debug, Clone)]
pub struct BackfillSettings {
    pub sync: SyncSettings,
    /// Parts read at once (each one request at a time).
    pub concurrency: usize,
}

/// One backfill invocation: fix the window (clear of the live sync), then read its incomplete
/// days, up to `concurrency` at a time. Each day has one ledger (its own state) shared by every
/// backfill of the tenant's stream, which the live sync never sees: windows that overlap read a
/// shared day once, and a later window that reaches further into a day goes on from where the
/// ledger stands. A manifest under the request's own key fixes the window at the first
/// invocation and keeps the tally. Manifests and ledgers an earlier release kept under
/// `previous` keys are carried over on first use. The caller holds the stream's backfill lease.
pub async fn run_backfill<S, L, T, O, C, F>(
    settings: &BackfillSettings,
    keys: &StateKeys,
    previous: &[StateKeys],
    request: &BackfillRequest,
    ports: BackfillPorts<'_, S, L, O, C, F>,
    mut run: RunRequest,
) -> Result<BackfillOutcome, EngineError>
where
    S: AlertSource,
    L: StateStore,
    T: StateStore,
    O: ObjectSink,
    C: Clock,
    F: Fn(&str) -> T,
{
    let BackfillPorts { source, live_state, state_for, sink, clock } = ports;
    let fetch_deadline = settings.sync.fetch_deadline(run.deadline);
    // Credentials first (unless this invocation proved them already): a run that cannot
    // authenticate reads and changes nothing. The parts reuse the identity.
    if run.identity.is_none() {
        run.identity = Some(source.authenticate(fetch_deadline).await.map_err(EngineError::Source)?);
    }
    let adopting = |key_of: &dyn Fn(&StateKeys) -> String| {
        Adopting::new(
            state_for(&key_of(keys)),
            previous.iter().map(|keys| state_for(&key_of(keys))).collect(),
        )
    };
    let live_floor = live_state.load().await.map_err(EngineError::State)?.map(|(state, _)| state.floor);
    let manifest_store = adopting(&|keys: &StateKeys| request.manifest_key(keys));
    let manifest = manifest_store.load().await.map_err(EngineError::State)?;
    let fixed_end = manifest.as_ref().and_then(|(state, _)| state.window_end);
    let request = request.clone();
    let (start, end, note) = match plan(&request, fixed_end, live_floor, clock.now())? {
        BackfillPlan::Nothing { reason } => {
            info!(reason = %reason, "Nothing to backfill.");
            return Ok(BackfillOutcome::Nothing { request, reason });
        }
        BackfillPlan::Read { start, end, note } => (start, end, note),
    };
    let parts = parts(start, end);
    if parts.len() > MAX_PARTS {
        return Err(BackfillEventError::TooManyParts { days: parts.len(), max: MAX_PARTS }.into());
    }
    if let Some(note) = &note {
        info!(note = %note, "Backfill window adjusted.");
    }
    // The manifest fixes the window before any part is read.
    let (mut manifest_state, revision) = match manifest {
        Some((state, revision)) => (state, revision),
        None => {
            let mut state = SyncState::bounded(start, end);
            let revision = manifest_store.save(&mut state, None).await.map_err(EngineError::State)?;
            (state, revision)
        }
    };

    let stores: Vec<Adopting<T>> =
        parts.iter().map(|(day, _, _)| adopting(&|keys: &StateKeys| keys.day(*day))).collect();
    // Parts before the manifest's cursor are known to be complete; the rest are checked.
    let candidates: Vec<usize> =
        (0..parts.len()).filter(|index| parts[*index].2 > manifest_state.cursor).collect();
    let part_settings = &settings.sync;
    let stores_ref = &stores;
    let parts_ref = &parts;
    let run_ref = &run;
    let results: Vec<Result<Option<RunSummary>, EngineError>> = stream::iter(candidates)
        .map(|index| async move {
            // Checked before every load too: a window of many days must not spend the
            // invocation finding out which of them are done.
            if !in_time(clock, fetch_deadline) {
                return Ok(Some(RunSummary {
                    stopped_because: Some("deadline: no time to start this part".into()),
                    ..RunSummary::default()
                }));
            }
            let (_, from, to) = parts_ref[index];
            let store = &stores_ref[index];
            if let Some((state, _)) = store.load().await?
                && covers(&state, to)
            {
                return Ok(None);
            }
            let mut part_settings = part_settings.clone();
            part_settings.backfill_start = Some(from);
            part_settings.window_end = Some(to);
            let ports = Ports { source, store, sink, clock };
            let part_run = RunRequest {
                run_id: format!("{}p{index}", run_ref.run_id),
                deadline: run_ref.deadline,
                identity: run_ref.identity.clone(),
            };
            run_sync(&part_settings, ports, part_run).await.map(Some)
        })
        .buffer_unordered(settings.concurrency.max(1))
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
    // Ledgers are read a few at a time and only while there is time; a part left unread counts
    // as done only if it lies before the manifest's cursor, and the next invocation counts it.
    let ledgers: Vec<Option<Option<SyncState>>> = stream::iter(stores.iter())
        .map(|store| async move {
            if !in_time(clock, fetch_deadline) {
                return Ok(None);
            }
            store.load().await.map(|loaded| Some(loaded.map(|(state, _)| state)))
        })
        .buffered(16)
        .collect::<Vec<Result<_, _>>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(EngineError::State)?;
    let mut tally = BackfillTally { parts: parts.len(), ..BackfillTally::default() };
    let total_millis = (end - start).num_milliseconds().max(1) as f64;
    let mut prefix_complete = true;
    let all_read = ledgers.iter().all(Option::is_some);
    for (index, ledger) in ledgers.into_iter().enumerate() {
        let (_, from, to) = parts[index];
        let share = (to - from).num_milliseconds() as f64 / total_millis;
        let done = match &ledger {
            None => to <= manifest_state.cursor,
            Some(None) => false,
            Some(Some(state)) => covers(state, to),
        };
        if let Some(Some(state)) = &ledger {
            tally.alerts_written_total += state.written_alerts;
            tally.objects_written_total += state.written_objects;
            let read = (state.cursor.min(to) - from).num_milliseconds().max(0) as f64;
            tally.progress += read / total_millis;
        } else if done {
            tally.progress += share;
        }
        if done {
            tally.parts_complete += 1;
        }
        prefix_complete &= done;
        if prefix_complete {
            manifest_state.cursor = manifest_state.cursor.max(to);
        }
    }
    // In billionths, and never below what the last invocation reported: short of time, some
    // ledgers go unread and count only up to the manifest's cursor.
    let progress_ppb =
        ((tally.progress.clamp(0.0, 1.0) * 1e9).round() as u64).max(manifest_state.progress_ppb);
    manifest_state.progress_ppb = progress_ppb;
    tally.progress = progress_ppb as f64 / 1e9;
    // Short of time, some ledgers went unread: the totals saved last time are the better count.
    if !all_read {
        tally.alerts_written_total = tally.alerts_written_total.max(manifest_state.written_alerts);
        tally.objects_written_total = tally.objects_written_total.max(manifest_state.written_objects);
    }
    manifest_state.written_alerts = tally.alerts_written_total;
    manifest_state.written_objects = tally.objects_written_total;
    manifest_store.save(&mut manifest_state, Some(&revision)).await.map_err(EngineError::State)?;
    info!(
        alerts = invocation.alerts_written,
        alerts_total = tally.alerts_written_total,
        parts_complete = tally.parts_complete,
        parts = tally.parts,
        progress = tally.progress,
        "Backfill progress."
    );
    if let Some(error) = first_error {
        return Err(error);
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
        assert!(matches!(
            bad(json!({"start": "2026-11-01T00:00:00Z", "stream": "incident"})),
            BackfillEventError::UnknownStream { .. }
        ));
        let incidents = BackfillRequest::from_event(
            &json!({"start": "2026-11-01T00:00:00Z", "stream": "incidents"}),
            now(),
        );
        assert_eq!(incidents.unwrap().stream, crate::stream::INCIDENTS);
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
        let request =
            BackfillRequest { start: t("2026-11-01T00:00:00Z"), end: None, stream: crate::stream::ALERTS };
        let keys = StateKeys::new("5db5d7e5-4c1e-4a31-9c5e-0123456789ab", crate::stream::ALERTS);
        assert_eq!(
            request.manifest_key(&keys),
            "backfill#5db5d7e5-4c1e-4a31-9c5e-0123456789ab#alerts#2026-11-01T00:00:00Z#open"
        );
    }

    #[test]
    fn unknown_keys_and_starts_beyond_retention_are_refused() {
        let bad = |event: Value| BackfillRequest::from_event(&event, now()).unwrap_err();
        assert_eq!(
            bad(json!({"start": "2026-11-01T00:00:00Z", "End": "2026-11-08T00:00:00Z"})),
            BackfillEventError::UnknownKey { key: "End".into() }
        );
        let ancient =
            BackfillRequest { start: t("0001-01-01T00:00:00Z"), end: None, stream: crate::stream::ALERTS };
        assert!(matches!(
            plan(&ancient, None, None, now()),
            Err(BackfillEventError::StartBeforeRetention { retention_days: 180, .. })
        ));
        let oldest = BackfillRequest { start: now() - RETENTION, end: None, stream: crate::stream::ALERTS };
        match plan(&oldest, None, None, now()).unwrap() {
            BackfillPlan::Read { start, end, .. } => assert!(parts(start, end).len() <= MAX_PARTS),
            other => panic!("{other:?}"),
        }
        // A resumed window was checked when it began; time passing does not stop it.
        let resumed = BackfillRequest { start: now() - RETENTION, end: None, stream: crate::stream::ALERTS };
        let later = now() + TimeDelta::days(3);
        assert!(plan(&resumed, Some(now()), None, later).is_ok());
    }

    #[test]
    fn parts_are_whole_utc_days() {
        let start = t("2026-11-01T00:00:00Z");
        let split = parts(start, t("2026-11-03T12:00:00Z"));
        assert_eq!(
            split,
            vec![
                (start.date_naive(), start, t("2026-11-02T00:00:00Z")),
                (
                    t("2026-11-02T00:00:00Z").date_naive(),
                    t("2026-11-02T00:00:00Z"),
                    t("2026-11-03T00:00:00Z")
                ),
                (
                    t("2026-11-03T00:00:00Z").date_naive(),
                    t("2026-11-03T00:00:00Z"),
                    t("2026-11-03T12:00:00Z")
                ),
            ]
        );
        assert!(parts(start, start).is_empty());
        // A window that starts mid-day reads the whole day, and says so.
        let request = BackfillRequest {
            start: t("2026-11-01T06:00:00Z"),
            end: Some(t("2026-11-02T00:00:00Z")),
            stream: crate::stream::ALERTS,
        };
        match plan(&request, None, None, now()).unwrap() {
            BackfillPlan::Read { start: planned, note, .. } => {
                assert_eq!(planned, start);
                assert!(note.unwrap().contains("whole UTC days"));
            }
            other => panic!("{other:?}"),
        }
    }
    #[test]
    fn windows_stop_where_the_live_sync_begins() {
        let request = BackfillRequest {
            start: t("2026-11-01T00:00:00Z"),
            end: Some(t("2026-11-20T00:00:00Z")),
            stream: crate::stream::ALERTS,
        };
        let floor = t("2026-11-15T00:00:00Z");
        match plan(&request, None, Some(floor), now()).unwrap() {
            BackfillPlan::Read { end, note, .. } => {
                assert_eq!(end, floor);
                assert!(note.unwrap().contains("clipped"));
            }
            other => panic!("{other:?}"),
        }
        let open =
            BackfillRequest { start: t("2026-11-01T00:00:00Z"), end: None, stream: crate::stream::ALERTS };
        assert_eq!(
            plan(&open, None, None, now()).unwrap(),
            BackfillPlan::Read { start: open.start, end: now(), note: None }
        );
        assert_eq!(
            plan(&open, None, Some(floor), now()).unwrap(),
            BackfillPlan::Read { start: open.start, end: floor, note: None }
        );
        let inside = BackfillRequest {
            start: t("2026-11-16T00:00:00Z"),
            end: Some(t("2026-11-20T00:00:00Z")),
            stream: crate::stream::ALERTS,
        };
        assert!(matches!(plan(&inside, None, Some(floor), now()), Ok(BackfillPlan::Nothing { .. })));
        // Resuming keeps the window fixed at the first invocation.
        let fixed = t("2026-11-10T00:00:00Z");
        assert_eq!(
            plan(&open, Some(fixed), Some(floor), now()).unwrap(),
            BackfillPlan::Read { start: open.start, end: fixed, note: None }
        );
    }
}
