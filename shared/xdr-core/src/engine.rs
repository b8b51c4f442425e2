//! The live sync: read `[cursor - overlap, now)` slice by slice, write each new alert version
//! once, and save state that never runs ahead of the data it covers.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::value::RawValue;
use tracing::{info, warn};

use crate::batch::Batch;
use crate::error::EngineError;
use crate::fingerprint::content_fingerprint;
use crate::layout::ObjectName;
use crate::marker::{TenantMarker, refusal};
use crate::page::{QuarantineReason, as_ndjson_line, quarantine_log_fields, version_key};
use crate::ports::{AlertSource, Clock, Identity, ObjectSink, Revision, StateStore};
use crate::seen::{SeenEntry, SeenVersions};
use crate::settings::SyncSettings;
use crate::split::InstantProgress;
use crate::state::{PendingObject, SyncState};
use crate::summary::{ObjectSummary, RunSummary, WindowSummary};
use crate::timeutil::{floor_to_tick, format_filter_instant, format_human};

mod reading;

use reading::{Paging, WindowEnd};

/// The adapters one run works with.
pub struct Ports<'a, S, T, O, C> {
    pub source: &'a S,
    pub store: &'a T,
    pub sink: &'a O,
    pub clock: &'a C,
}

/// Per-invocation inputs.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// Unique per run; part of every object name.
    pub run_id: String,
    /// The run must have returned by then (Lambda's deadline); `None`: no limit.
    pub deadline: Option<DateTime<Utc>>,
    /// Who the source said we are, when the caller authenticated already this invocation (a
    /// handler does, to find the tenant's keys); `None`: the run authenticates first.
    pub identity: Option<Identity>,
}

/// Runs one live sync.
pub async fn run_sync<S, T, O, C>(
    settings: &SyncSettings,
    ports: Ports<'_, S, T, O, C>,
    request: RunRequest,
) -> Result<RunSummary, EngineError>
where
    S: AlertSource,
    T: StateStore,
    O: ObjectSink,
    C: Clock,
{
    let started = floor_to_tick(ports.clock.now());
    let fetch_deadline = settings.fetch_deadline(request.deadline);

    // Credentials first: a run that cannot authenticate changes nothing.
    let identity = match &request.identity {
        Some(identity) => identity.clone(),
        None => ports.source.authenticate(fetch_deadline).await.map_err(EngineError::Source)?,
    };

    let loaded = ports.store.load().await?;
    let (state, revision) = match loaded {
        Some((mut state, revision)) if state.reset.is_none() => {
            // A bounded window may be asked to reach further (a backfill day read up to "now"
            // earlier, or by a window that ended inside it): it goes on from its cursor.
            if let (Some(wanted), Some(end)) = (settings.window_end, state.window_end)
                && floor_to_tick(wanted) > end
            {
                state.window_end = Some(floor_to_tick(wanted));
            }
            if settings.window_end.is_none() {
                ensure_marker(&ports, &settings.layout, &identity, &state).await?;
            }
            (state, Some(revision))
        }
        loaded => {
            let reset = loaded.as_ref().and_then(|(state, _)| state.reset);
            let expected = loaded.map(|(_, revision)| revision);
            let start = settings.backfill_start.unwrap_or(started);
            let mut state = match settings.window_end {
                Some(end) => SyncState::bounded(start, end),
                None => SyncState::first_run(start),
            };
            state.lineage = Some(format!("{}-{}", started.format("%Y%m%dT%H%M%S%.fZ"), request.run_id));
            if settings.window_end.is_none() {
                refuse_silent_reset(&ports, &settings.layout, &identity, reset).await?;
            }
            // The live state is saved before the marker is written: a run that stops between
            // the two leaves a state without a marker (written next time), never a marker
            // without a state. A bounded window (a backfill day) is first saved when it has
            // something to keep (its first objects' announcement, or the run's end), so that
            // starting one costs no write: its first save creates it, or finds a rival's.
            let revision = match settings.window_end {
                None => Some(ports.store.save(&mut state, expected.as_ref()).await?),
                Some(_) => expected,
            };
            if let Some(at) = reset {
                warn!(reset = %format_human(at), from = %format_human(start), "Starting over after a reset.");
            }
            if settings.window_end.is_none() {
                ensure_marker(&ports, &settings.layout, &identity, &state).await?;
            }
            (state, revision)
        }
    };
    // The start applies to a first run only; a change after it is said, never silently ignored.
    let start_changed = if settings.window_end.is_none() {
        start_changed(settings.backfill_start, state.floor)
    } else {
        None
    };
    if let Some(note) = &start_changed {
        warn!(note = %note, "The configured start changed after the first run.");
    }
    let mut run = Run::new(settings, &ports, request, started, fetch_deadline, state, revision);
    if run.revision.is_some() {
        // As loaded, it is what the store holds: a run that changes nothing writes nothing.
        run.last_saved = Some(run.saved_form());
    }
    run.summary.start_changed = start_changed;
    run.recover_pending().await?;

    let window_from = run.state.next_window_start(settings.overlap);
    // The live sync reads up to now; a bounded window stops at its end.
    let window_to = run.state.window_end.map_or(started, |end| end.min(started)).max(window_from);
    run.summary.window = WindowSummary { from: format_human(window_from), to: format_human(window_to) };
    info!(run_id = %run.request.run_id, from = %run.summary.window.from, to = %run.summary.window.to, "Sync window.");

    run.forget_stale_instant(window_from, window_to);
    match run.read_window(window_from, window_to).await {
        Ok(WindowEnd::Held(held)) => {
            // Everything before the instant is kept; the cursor stays before it.
            run.summary.instants_held = 1;
            run.finish().await?;
            warn!(
                instant = %format_filter_instant(held.at),
                reached = held.reached,
                listed = ?held.listed,
                covered_until = %run.summary.covered_until,
                "An instant holds more versions than Graph's paging reaches and no filter splits it; holding the cursor before it."
            );
            Err(EngineError::InstantUnreadable {
                at: format_filter_instant(held.at),
                listed: held.listed.map_or_else(|| format!("more than {}", held.reached), |n| n.to_string()),
                reached: held.reached,
                max_skip: settings.max_skip,
            })
        }
        Ok(end) => {
            let stop = match end {
                WindowEnd::Stopped(reason) => Some(reason),
                _ => None,
            };
            run.finish().await?;
            run.summary.complete = stop.is_none();
            run.summary.stopped_because = stop;
            info!(
                alerts = run.summary.alerts_written,
                objects = run.summary.objects.len(),
                complete = run.summary.complete,
                covered_until = %run.summary.covered_until,
                "Sync run finished."
            );
            Ok(run.summary)
        }
        // Graph failed but storage is healthy: keep what was read, then report the failure.
        Err(error @ (EngineError::Source(_) | EngineError::MalformedPage { .. })) => {
            if let Err(finish_error) = run.finish().await {
                warn!(error = %finish_error, "Could not save progress after a Graph failure.");
            }
            Err(error)
        }
        // Storage failed: touch nothing more, so the announced object stays pending for recovery.
        Err(error) => Err(error),
    }
}

/// The operator's way to start over, named in refusals.
const RESET_HINT: &str = "xdr-sync state reset";

async fn read_marker<S, T, O, C>(
    ports: &Ports<'_, S, T, O, C>,
    key: &str,
) -> Result<Option<TenantMarker>, EngineError>
where
    O: ObjectSink,
{
    let bytes = ports.sink.read(key).await.map_err(|error| match error.forbidden {
        true => {
            EngineError::ExistenceCheckForbidden { key: key.to_owned(), purpose: "the tenant marker", error }
        }
        false => EngineError::Output { key: key.to_owned(), error },
    })?;
    Ok(bytes.map(|bytes| {
        // A marker nobody can read still says the tenant was synced here.
        TenantMarker::from_json(&bytes).unwrap_or(TenantMarker {
            tenant: String::new(),
            state: "(unreadable marker)".into(),
            lineage: None,
            floor: DateTime::<Utc>::MIN_UTC,
            written: DateTime::<Utc>::MIN_UTC,
        })
    }))
}

/// No state (or a reset one): refused if the tenant's marker says it was synced before, unless
/// an operator reset this state on purpose.
async fn refuse_silent_reset<S, T, O, C>(
    ports: &Ports<'_, S, T, O, C>,
    layout: &crate::layout::OutputLayout,
    identity: &Identity,
    reset: Option<DateTime<Utc>>,
) -> Result<(), EngineError>
where
    T: StateStore,
    O: ObjectSink,
{
    if reset.is_some() {
        return Ok(());
    }
    let key = layout.tenant_marker_key(&identity.tenant);
    match read_marker(ports, &key).await? {
        Some(marker) => {
            let message = refusal(&marker, &ports.store.location(), RESET_HINT);
            warn!(marker = %key, "Refusing to start over: {message}");
            Err(EngineError::TenantState { message })
        }
        None => Ok(()),
    }
}

/// Writes the tenant's marker if it is missing or names another state of this tenant that an
/// operator has reset away from.
async fn ensure_marker<S, T, O, C>(
    ports: &Ports<'_, S, T, O, C>,
    layout: &crate::layout::OutputLayout,
    identity: &Identity,
    state: &SyncState,
) -> Result<(), EngineError>
where
    T: StateStore,
    O: ObjectSink,
{
    let key = layout.tenant_marker_key(&identity.tenant);
    let location = ports.store.location();
    let existing = read_marker(ports, &key).await?;
    match existing {
        Some(marker) if marker.state == location && marker.lineage == state.lineage => return Ok(()),
        // The same state: its lineage recorded for the first time, or a copy restored elsewhere
        // (a point-in-time restore into a new table). The marker follows it.
        Some(marker)
            if marker.state == location || (state.lineage.is_some() && marker.lineage == state.lineage) => {}
        // A state that has read nothing yet (just reset) takes over.
        Some(_) if state.written_objects == 0 && state.cursor == state.floor => {}
        // Another state of this tenant is the live one: this one would write it all again.
        Some(marker) => {
            let message = refusal(&marker, &location, RESET_HINT);
            return Err(EngineError::TenantState { message });
        }
        None => {}
    }
    let marker = TenantMarker {
        tenant: identity.tenant.clone(),
        state: location,
        lineage: state.lineage.clone(),
        floor: state.floor,
        written: Utc::now(),
    };
    ports
        .sink
        .put(&key, marker.to_json())
        .await
        .map_err(|error| EngineError::Output { key: key.clone(), error })?;
    info!(marker = %key, tenant = %identity.tenant, "Wrote the tenant marker.");
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum BatchKind {
    Data,
    Quarantine,
}

struct Run<'a, S, T, O, C> {
    settings: &'a SyncSettings,
    ports: &'a Ports<'a, S, T, O, C>,
    request: RunRequest,
    started: DateTime<Utc>,
    fetch_deadline: Option<DateTime<Utc>>,
    state: SyncState,
    revision: Option<Revision>,
    /// The cursor as loaded: the saved cursor never goes below it.
    loaded_cursor: DateTime<Utc>,
    /// End of the last fully read slice.
    completed_cursor: DateTime<Utc>,
    /// Versions written into open batches but not yet stored.
    buffered: HashSet<SeenEntry>,
    quarantined_this_run: HashSet<u64>,
    batches: BTreeMap<(BatchKind, NaiveDate), Batch>,
    /// Lowest slice start of the batch being stored (it is out of `batches` meanwhile).
    storing_from: Option<DateTime<Utc>>,
    sequence: u32,
    newest_last_update: Option<DateTime<Utc>>,
    partitions: BTreeSet<String>,
    summary: RunSummary,
    /// What this run has learnt about Graph's paging.
    paging: Paging,
    /// The split of a dense instant under way. Copied into the state only while nothing is
    /// buffered, so a saved plan never omits a part whose records are not yet stored.
    instant_plan: Option<InstantProgress>,
    /// The cursor may not pass this (an instant read over several runs; see `read_instant`).
    cursor_cap: Option<DateTime<Utc>>,
    /// What the last save stored (see `Run::saved_form`): a save that would store the same
    /// again is not made.
    last_saved: Option<(SyncState, usize)>,
}

impl<'a, S, T, O, C> Run<'a, S, T, O, C>
where
    S: AlertSource,
    T: StateStore,
    O: ObjectSink,
    C: Clock,
{
    fn new(
        settings: &'a SyncSettings,
        ports: &'a Ports<'a, S, T, O, C>,
        request: RunRequest,
        started: DateTime<Utc>,
        fetch_deadline: Option<DateTime<Utc>>,
        state: SyncState,
        revision: Option<Revision>,
    ) -> Self {
        let cursor = state.cursor;
        let instant_plan = state.instant.clone();
        let summary = RunSummary { run_id: request.run_id.clone(), ..RunSummary::default() };
        Self {
            settings,
            ports,
            request,
            started,
            fetch_deadline,
            state,
            revision,
            loaded_cursor: cursor,
            completed_cursor: cursor,
            buffered: HashSet::new(),
            quarantined_this_run: HashSet::new(),
            batches: BTreeMap::new(),
            storing_from: None,
            sequence: 0,
            newest_last_update: None,
            partitions: BTreeSet::new(),
            summary,
            paging: Paging::default(),
            instant_plan,
            cursor_cap: None,
            last_saved: None,
        }
    }

    /// Objects announced by a run that then stopped: those that landed have their versions
    /// written; the others' are read again.
    async fn recover_pending(&mut self) -> Result<(), EngineError> {
        let mut notes = Vec::new();
        for pending in std::mem::take(&mut self.state.pending) {
            let landed =
                self.ports.sink.exists(&pending.key).await.map_err(|error| match error.forbidden {
                    true => EngineError::ExistenceCheckForbidden {
                        key: pending.key.clone(),
                        purpose: "did an object of an interrupted run land?",
                        error,
                    },
                    false => EngineError::Output { key: pending.key.clone(), error },
                })?;
            notes.push(if landed {
                self.state.seen.extend(pending.entries.entries());
                // Quarantine objects announce no versions; only data objects count as written.
                if !pending.entries.is_empty() {
                    self.state.written_alerts += pending.entries.len() as u64;
                    self.state.written_objects += 1;
                }
                format!(
                    "object {} from an interrupted run had landed; its alerts count as written",
                    pending.key
                )
            } else {
                format!(
                    "object {} from an interrupted run never landed; its alerts are read again",
                    pending.key
                )
            });
            warn!(key = %pending.key, landed, "Recovered an interrupted object write.");
        }
        if !notes.is_empty() {
            self.summary.recovered = Some(notes.join("; "));
        }
        Ok(())
    }

    async fn write_records(
        &mut self,
        records: &[&RawValue],
        slice_start: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        for raw in records {
            self.summary.alerts_received += 1;
            match version_key(raw) {
                Ok(key) => {
                    let entry = SeenEntry::new(&key.id, key.last_update);
                    if self.state.seen.contains(entry) || self.buffered.contains(&entry) {
                        self.summary.duplicates_skipped += 1;
                        continue;
                    }
                    self.newest_last_update = self.newest_last_update.max(Some(key.last_update));
                    let date = key.last_update.date_naive();
                    let batch = self
                        .batches
                        .entry((BatchKind::Data, date))
                        .or_insert_with(|| Batch::new(slice_start));
                    batch.push_line(&as_ndjson_line(raw), slice_start)?;
                    batch.entries.push(entry);
                    self.buffered.insert(entry);
                    self.summary.alerts_written += 1;
                    if batch.uncompressed_bytes() >= self.settings.max_object_bytes
                        || batch.records() >= self.settings.max_object_records
                    {
                        self.store_batches(vec![(BatchKind::Data, date)]).await?;
                    }
                }
                Err(reason) => self.quarantine(raw, reason, slice_start).await?,
            }
        }
        Ok(())
    }

    async fn quarantine(
        &mut self,
        raw: &RawValue,
        reason: QuarantineReason,
        slice_start: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        if !self.quarantined_this_run.insert(content_fingerprint(raw.get().as_bytes())) {
            return Ok(());
        }
        self.summary.quarantined += 1;
        // Alert content (often personal data) stays out of logs: the record is named by its
        // size, its hash and, when it has a plain one, its id.
        let (bytes, hash, id) = quarantine_log_fields(raw);
        warn!(reason = reason.as_str(), bytes, xxh3 = %hash, id = %id, "Quarantined a record that cannot be placed.");
        let date = self.started.date_naive();
        let batch =
            self.batches.entry((BatchKind::Quarantine, date)).or_insert_with(|| Batch::new(slice_start));
        batch.push_line(&as_ndjson_line(raw), slice_start)?;
        if batch.uncompressed_bytes() >= self.settings.max_object_bytes {
            self.store_batches(vec![(BatchKind::Quarantine, date)]).await?;
        }
        Ok(())
    }

    /// Open objects hold the cursor back to the slice of their first record. Slices go forward
    /// in time: a date the read has left behind gets no more records, so its object is complete;
    /// storing it at once lets the cursor follow the read (and the dedup memory, which reaches
    /// back to the overlap before the cursor, stay near the overlap's size) instead of holding
    /// it back for the rest of the run. Within one date an object closes at
    /// `max_object_records`. What the overlap itself holds has no bound (a bulk job can put
    /// 100k versions in it); a store with bounded items keeps that in chunks (`ChunkedSave`).
    async fn keep_state_small(&mut self) -> Result<(), EngineError> {
        self.store_dates_before(self.completed_cursor).await
    }

    /// Stores the data objects of every date before `read_until`'s: once every record below
    /// `read_until` is written, they get no more.
    async fn store_dates_before(&mut self, read_until: DateTime<Utc>) -> Result<(), EngineError> {
        let today = read_until.date_naive();
        let finished: Vec<_> = self
            .batches
            .keys()
            .copied()
            .filter(|(kind, date)| *kind == BatchKind::Data && *date < today)
            .collect();
        self.store_batches(finished).await
    }

    /// The cursor that may be saved now: never past a slice whose records are still buffered.
    fn savable_cursor(&self) -> DateTime<Utc> {
        let buffered_from =
            self.batches.values().map(|batch| batch.lowest_slice_start).chain(self.storing_from).min();
        let safe = match buffered_from {
            Some(start) => self.completed_cursor.min(start),
            None => self.completed_cursor,
        };
        let safe = self.cursor_cap.map_or(safe, |cap| safe.min(cap));
        safe.max(self.loaded_cursor)
    }

    async fn save(&mut self) -> Result<(), EngineError> {
        self.state.cursor = self.savable_cursor();
        if self.batches.is_empty() && self.storing_from.is_none() {
            self.state.instant = self.instant_plan.clone();
        }
        // A plan for an instant the next window no longer reaches is done with.
        let next_window = self.state.next_window_start(self.settings.overlap);
        if self.state.instant.as_ref().is_some_and(|plan| plan.at < next_window) {
            self.state.instant = None;
        }
        let keep_from = self.state.next_window_start(self.settings.overlap);
        self.state.seen.prune_before(keep_from);
        let form = self.saved_form();
        if self.revision.is_some() && self.last_saved.as_ref() == Some(&form) {
            // Typically the end of a run whose last object's commit saved all of it already.
            return Ok(());
        }
        let revision = self.ports.store.save(&mut self.state, self.revision.as_ref()).await?;
        self.revision = Some(revision);
        self.last_saved = Some(self.saved_form());
        Ok(())
    }

    /// The state as a save stores it, with the dedup memory stood for by its size: between two
    /// saves that memory only grows (commits, each of which saves); it shrinks only in `save`.
    fn saved_form(&mut self) -> (SyncState, usize) {
        let seen = std::mem::take(&mut self.state.seen);
        let form = self.state.clone();
        self.state.seen = seen;
        (form, self.state.seen.len())
    }

    /// Stores batches that close together in groups: one state write announcing a group, its
    /// puts at once, one state write committing it. A group announces at most
    /// `max_object_records` versions (unless one batch alone holds more), the most one object
    /// ever announced, so the state stays within the bounds it was sized for.
    async fn store_batches(&mut self, which: Vec<(BatchKind, NaiveDate)>) -> Result<(), EngineError> {
        let mut group = Vec::new();
        let mut announced = 0;
        for one in which {
            let Some(batch) = self.batches.get(&one) else { continue };
            let records = batch.records();
            if !group.is_empty() && announced + records > self.settings.max_object_records {
                self.store_group(std::mem::take(&mut group)).await?;
                announced = 0;
            }
            announced += records;
            group.push(one);
        }
        if !group.is_empty() {
            self.store_group(group).await?;
        }
        Ok(())
    }

    /// Announce, put, commit: a crash between any two steps neither loses nor duplicates. Of a
    /// group whose puts fail in part, some objects may have landed: all stay announced, and the
    /// next run settles each (`recover_pending`).
    async fn store_group(&mut self, which: Vec<(BatchKind, NaiveDate)>) -> Result<(), EngineError> {
        let mut closing = Vec::with_capacity(which.len());
        for (kind, date) in which {
            let Some(batch) = self.batches.remove(&(kind, date)) else { continue };
            let name = ObjectName::new(self.started, &self.request.run_id, self.sequence);
            self.sequence += 1;
            let key = match kind {
                BatchKind::Data => self.settings.layout.data_key(date, &name),
                BatchKind::Quarantine => self.settings.layout.quarantine_key(date, &name),
            };
            let (records, lowest_slice_start) = (batch.records(), batch.lowest_slice_start);
            let (body, entries) = batch.finish()?;
            closing.push(Closing { kind, date, key, records, lowest_slice_start, body, entries });
        }
        if closing.is_empty() {
            return Ok(());
        }

        self.state.pending = closing
            .iter()
            .map(|object| {
                let mut announced = SeenVersions::default();
                announced.extend(object.entries.iter().copied());
                PendingObject { key: object.key.clone(), entries: announced }
            })
            .collect();
        // Until committed, the cursor must stay below these batches' records.
        self.storing_from = closing.iter().map(|object| object.lowest_slice_start).min();
        self.save().await?;

        let bytes: Vec<usize> = closing.iter().map(|object| object.body.len()).collect();
        let sink = self.ports.sink;
        let puts = closing.iter_mut().map(|object| {
            let (key, body) = (object.key.as_str(), std::mem::take(&mut object.body));
            async move {
                sink.put(key, body).await.map_err(|error| EngineError::Output { key: key.to_owned(), error })
            }
        });
        for result in futures_util::future::join_all(puts).await {
            result?;
        }

        for object in &closing {
            for entry in &object.entries {
                self.buffered.remove(entry);
            }
            self.state.seen.extend(object.entries.iter().copied());
            if object.kind == BatchKind::Data {
                self.state.written_alerts += object.records as u64;
                self.state.written_objects += 1;
            }
        }
        self.state.pending.clear();
        self.storing_from = None;
        self.save().await?;

        for (object, bytes) in closing.into_iter().zip(bytes) {
            let (key, records) = (object.key, object.records);
            info!(key = %key, records, bytes, "Wrote object.");
            if object.kind == BatchKind::Data {
                self.partitions.insert(format!("dt={}", object.date.format("%Y-%m-%d")));
            }
            self.summary.objects.push(ObjectSummary { key, records, bytes });
        }
        Ok(())
    }

    /// Stores every open batch and saves the final state.
    async fn finish(&mut self) -> Result<(), EngineError> {
        let open: Vec<_> = self.batches.keys().copied().collect();
        self.store_batches(open).await?;
        self.save().await?;
        self.summary.covered_until = format_human(self.state.cursor);
        self.summary.cursor = Some(self.state.cursor);
        self.summary.partitions = self.partitions.iter().cloned().collect();
        self.summary.newest_last_update = self.newest_last_update.map(format_human);
        self.summary.progress = self.state.progress();
        Ok(())
    }
}

/// What a configured start that differs from where the live state began means: the start
/// applies to a first run only (`None` when they agree, or when none is configured).
pub fn start_changed(configured: Option<DateTime<Utc>>, floor: DateTime<Utc>) -> Option<String> {
    let (wanted, floor) = (floor_to_tick(configured?), floor_to_tick(floor));
    if wanted == floor {
        return None;
    }
    let (wanted_text, floor_text) = (format_human(wanted), format_human(floor));
    Some(if wanted < floor {
        format!(
            "the configured start ({wanted_text}, BACKFILL_START or the tenant's backfill start) is before where this state began ({floor_text}); it applies to a first run only, so nothing before {floor_text} is read: fill that span with xdr-backfill (start {wanted_text}), or reset the state to start over from it"
        )
    } else {
        format!(
            "the configured start ({wanted_text}, BACKFILL_START or the tenant's backfill start) is after where this state began ({floor_text}); it applies to a first run only, so the sync goes on from its cursor and what it read before stays"
        )
    })
}

/// A batch on its way to the output: finished, announced, put, then committed.
struct Closing {
    kind: BatchKind,
    date: NaiveDate,
    key: String,
    records: usize,
    lowest_slice_start: DateTime<Utc>,
    body: Vec<u8>,
    entries: Vec<SeenEntry>,
}
