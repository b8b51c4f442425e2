//! The live sync: read `[cursor - overlap, now)` slice by slice, write each new alert version
//! once, and save state that never runs ahead of the data it covers.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use futures_util::future::join;
use serde_json::value::RawValue;
use tracing::{debug, info, warn};

use crate::batch::Batch;
use crate::error::EngineError;
use crate::fingerprint::content_fingerprint;
use crate::layout::ObjectName;
use crate::page::{QuarantineReason, as_ndjson_line, parse_page, version_key};
use crate::ports::{
    AlertSource, Clock, ObjectSink, PageRequest, Revision, SourceError, SourceErrorKind, StateStore,
};
use crate::seen::{SeenEntry, SeenVersions};
use crate::settings::SyncSettings;
use crate::state::{PendingObject, SyncState};
use crate::summary::{ObjectSummary, RunSummary, WindowSummary};
use crate::timeutil::{TICK, floor_to_tick, format_human};

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
    let fetch_deadline = request.deadline.map(|deadline| deadline - settings.finish_reserve);

    // Credentials first: a run that cannot authenticate changes nothing.
    ports.source.authenticate(fetch_deadline).await.map_err(EngineError::Source)?;

    let (state, revision) = match ports.store.load().await? {
        Some((state, revision)) => (state, Some(revision)),
        None => {
            let start = settings.backfill_start.unwrap_or(started);
            let state = match settings.window_end {
                Some(end) => SyncState::bounded(start, end),
                None => SyncState::first_run(start),
            };
            (state, None)
        }
    };
    let mut run = Run::new(settings, &ports, request, started, fetch_deadline, state, revision);
    run.recover_pending().await?;

    let window_from = run.state.next_window_start(settings.overlap);
    // The live sync reads up to now; a bounded window stops at its end.
    let window_to = run.state.window_end.map_or(started, |end| end.min(started)).max(window_from);
    run.summary.window = WindowSummary { from: format_human(window_from), to: format_human(window_to) };
    info!(run_id = %run.request.run_id, from = %run.summary.window.from, to = %run.summary.window.to, "Sync window.");

    match run.read_window(window_from, window_to).await {
        Ok(stop) => {
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

enum SliceOutcome {
    /// Every page of the slice was read; `records` came back. `next`: the following slice's
    /// first page, fetched while this slice's last page was written.
    Done { records: u64, next: Option<Prefetched> },
    /// Re-read the slice with this length.
    Resize { length: TimeDelta },
    /// Stop the run here (deadline, throttling); the reason is reported.
    Stop(String),
}

/// The first page of the slice that starts where the last one ended, fetched ahead.
struct Prefetched {
    /// The slice's end (it starts at the previous slice's end).
    to: DateTime<Utc>,
    /// `None`: not fetched, the deadline had come.
    fetched: Option<Result<crate::ports::FetchedPage, SourceError>>,
}

/// Where a slice of `length` from `start` ends: on a 100 ns tick (`$filter` literals carry
/// ticks, so bounds off a tick would query a different range than the one marked as read), at
/// least one tick long, and not past the window.
fn end_of_slice(start: DateTime<Utc>, length: TimeDelta, window_end: DateTime<Utc>) -> DateTime<Utc> {
    floor_to_tick(start + length).max(start + TICK).min(window_end)
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
    buffered: SeenVersions,
    quarantined_this_run: HashSet<u64>,
    batches: BTreeMap<(BatchKind, NaiveDate), Batch>,
    /// Lowest slice start of the batch being stored (it is out of `batches` meanwhile).
    storing_from: Option<DateTime<Utc>>,
    sequence: u32,
    newest_last_update: Option<DateTime<Utc>>,
    partitions: BTreeSet<String>,
    summary: RunSummary,
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
            buffered: SeenVersions::default(),
            quarantined_this_run: HashSet::new(),
            batches: BTreeMap::new(),
            storing_from: None,
            sequence: 0,
            newest_last_update: None,
            partitions: BTreeSet::new(),
            summary,
        }
    }

    /// An object announced by a run that then stopped: if it landed, its versions are written.
    async fn recover_pending(&mut self) -> Result<(), EngineError> {
        let Some(pending) = self.state.pending.take() else { return Ok(()) };
        let landed = self
            .ports
            .sink
            .exists(&pending.key)
            .await
            .map_err(|error| EngineError::Output { key: pending.key.clone(), error })?;
        let note = if landed {
            self.state.seen.extend(pending.entries.entries());
            // Quarantine objects announce no versions; only data objects count as written.
            if !pending.entries.is_empty() {
                self.state.written_alerts += pending.entries.len() as u64;
                self.state.written_objects += 1;
            }
            format!("object {} from an interrupted run had landed; its alerts count as written", pending.key)
        } else {
            format!("object {} from an interrupted run never landed; its alerts are read again", pending.key)
        };
        warn!(key = %pending.key, landed, "Recovered an interrupted object write.");
        self.summary.recovered = Some(note);
        Ok(())
    }

    async fn read_window(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Option<String>, EngineError> {
        let mut slice_start = from;
        let mut length = self.state.slice_hint.unwrap_or(to - from).max(TICK);
        let mut short_rereads = 0;
        let mut prefetched: Option<Prefetched> = None;
        while slice_start < to {
            let slice_end =
                prefetched.as_ref().map_or_else(|| end_of_slice(slice_start, length, to), |p| p.to);
            let first_page = prefetched.take().map(|p| p.fetched);
            match self.read_slice(slice_start, slice_end, to, first_page, &mut short_rereads).await {
                Ok(SliceOutcome::Done { records, next }) => {
                    self.completed_cursor = self.completed_cursor.max(slice_end);
                    self.keep_state_small().await?;
                    length = self.next_slice_length(slice_end - slice_start, records);
                    slice_start = slice_end;
                    short_rereads = 0;
                    prefetched = next;
                }
                Ok(SliceOutcome::Resize { length: new_length }) => {
                    self.summary.slices_resized += 1;
                    length = new_length.max(TICK);
                }
                Ok(SliceOutcome::Stop(reason)) => return Ok(Some(reason)),
                Err(error) => return Err(error),
            }
        }
        self.state.slice_hint = None;
        Ok(None)
    }

    /// The next slice's length, from the density of the last one (`records` in `width`): sized
    /// for the slice target, growing at most twofold and shrinking at most to a quarter, so a
    /// denser stretch ahead rarely costs a split.
    fn next_slice_length(&self, width: TimeDelta, records: u64) -> TimeDelta {
        let scale = if records == 0 {
            2.0
        } else {
            (self.settings.slice_target() as f64 / records as f64).clamp(0.25, 2.0)
        };
        let nanos =
            (width.num_nanoseconds().unwrap_or(i64::MAX / 8) as f64 * scale).min(i64::MAX as f64 / 2.0);
        TimeDelta::nanoseconds(nanos as i64).max(TICK)
    }

    /// A run stopped inside a slice of `width` after `pages` pages: next time, start with a slice
    /// that fits in what this run managed (half of it, for margin).
    fn remember_slice_hint(&mut self, width: TimeDelta, pages: u32, expected: Option<u64>) {
        let needed_pages = expected
            .map(|count| count.div_ceil(u64::from(self.settings.page_size.max(1))).max(1))
            .unwrap_or(2);
        let fraction = (f64::from(pages.max(1)) / needed_pages as f64).min(1.0) / 2.0;
        let nanos = (width.num_nanoseconds().unwrap_or(i64::MAX) as f64 * fraction) as i64;
        self.state.slice_hint = Some(TimeDelta::nanoseconds(nanos).max(TICK));
    }

    async fn read_slice(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        window_end: DateTime<Utc>,
        first_page: Option<Option<Result<crate::ports::FetchedPage, SourceError>>>,
        short_rereads: &mut u32,
    ) -> Result<SliceOutcome, EngineError> {
        let width = to - from;
        let splittable = width > TICK;
        let capacity = self.settings.slice_capacity();
        let page_size = self.settings.page_size;
        let first_page = match first_page {
            Some(fetched) => self.settle_fetch(fetched)?,
            None => self.fetch(PageRequest::First { from, to, page_size, with_count: true }).await?,
        };
        let mut next_slice = None;
        let Some(mut page) = first_page else {
            if self.summary.pages > 0 {
                // Earlier slices fit but this one did not start: keep its size as the hint.
                self.state.slice_hint = Some(width);
            }
            return Ok(SliceOutcome::Stop(self.stop_reason()));
        };
        let mut pages = 1u32;
        let mut received = 0u64;
        let mut expected: Option<u64> = None;
        loop {
            let parsed = parse_page(&page.body).map_err(|problem| EngineError::MalformedPage {
                request_id: page.request_id.clone().unwrap_or_else(|| "unknown".into()),
                problem,
            })?;
            if pages == 1 {
                expected = parsed.count;
                if let Some(count) = parsed.count
                    && count > capacity
                    && splittable
                {
                    let fraction = self.settings.slice_target() as f64 / count as f64;
                    let nanos = (width.num_nanoseconds().unwrap_or(i64::MAX) as f64 * fraction) as i64;
                    debug!(count, capacity, "Slice too big; splitting before reading it.");
                    return Ok(SliceOutcome::Resize { length: TimeDelta::nanoseconds(nanos) });
                }
            }
            received += parsed.alerts.len() as u64;
            if parsed.next_link.is_some() && pages >= self.settings.max_pages_per_slice && splittable {
                // No count from the server, or it grew while we read: read a narrower slice.
                self.write_records(&parsed.alerts, from).await?;
                return Ok(SliceOutcome::Resize { length: width / 2 });
            }
            let Some(link) = parsed.next_link.as_deref() else {
                let short = expected.is_some_and(|expected| received < expected) && *short_rereads < 2;
                if short || to >= window_end {
                    self.write_records(&parsed.alerts, from).await?;
                    break;
                }
                // The last page: the next slice's first page is on its way while it is written,
                // so the slice boundary costs no latency either.
                let next_to = end_of_slice(to, self.next_slice_length(width, received), window_end);
                let request = PageRequest::First { from: to, to: next_to, page_size, with_count: true };
                let fetched = self.write_while_fetching(&parsed.alerts, from, request).await?;
                next_slice = Some(Prefetched { to: next_to, fetched });
                break;
            };
            let fetched = self.write_while_fetching(&parsed.alerts, from, PageRequest::Next { link }).await?;
            match self.settle_fetch(fetched)? {
                Some(next) => page = next,
                None => {
                    self.remember_slice_hint(width, pages, expected);
                    return Ok(SliceOutcome::Stop(self.stop_reason()));
                }
            }
            pages += 1;
        }
        // Offset paging skips a record when an alert ahead of the offset leaves the slice (it was
        // updated) while we page. Fewer records than counted at the start is the sign: read the
        // slice again (dedup makes that free of duplicates), a bounded number of times.
        if let Some(expected) = expected
            && received < expected
            && *short_rereads < 2
        {
            *short_rereads += 1;
            warn!(expected, received, "Slice came back short; reading it again.");
            return Ok(SliceOutcome::Resize { length: width });
        }
        Ok(SliceOutcome::Done { records: received, next: next_slice })
    }

    /// Writes a page's records while the next page (`request`) is on its way, so Graph's latency
    /// hides the compression and the uploads. The fetch is polled first, so its request goes out
    /// before the CPU-bound writing. Its result is for `settle_fetch`; `None`: not made, the
    /// deadline had come.
    async fn write_while_fetching(
        &mut self,
        records: &[&RawValue],
        slice_start: DateTime<Utc>,
        request: PageRequest<'_>,
    ) -> Result<Option<Result<crate::ports::FetchedPage, SourceError>>, EngineError> {
        if self.out_of_time() {
            self.write_records(records, slice_start).await?;
            return Ok(None);
        }
        let source = self.ports.source;
        let (fetched, written) =
            join(source.fetch(request, self.fetch_deadline), self.write_records(records, slice_start)).await;
        written?;
        Ok(Some(fetched))
    }

    /// Fetches one page; `Ok(None)` means stop gracefully (deadline or throttling).
    async fn fetch(
        &mut self,
        request: PageRequest<'_>,
    ) -> Result<Option<crate::ports::FetchedPage>, EngineError> {
        let fetched = if self.out_of_time() {
            None
        } else {
            Some(self.ports.source.fetch(request, self.fetch_deadline).await)
        };
        self.settle_fetch(fetched)
    }

    /// Accounts for one fetch (`None`: not made, the deadline had come); `Ok(None)` means stop
    /// gracefully (deadline or throttling).
    fn settle_fetch(
        &mut self,
        fetched: Option<Result<crate::ports::FetchedPage, SourceError>>,
    ) -> Result<Option<crate::ports::FetchedPage>, EngineError> {
        let Some(fetched) = fetched else {
            self.summary.stopped_because = Some("deadline: stopped before the next page".into());
            return Ok(None);
        };
        match fetched {
            Ok(page) => {
                self.summary.pages += 1;
                Ok(Some(page))
            }
            Err(SourceError { kind: SourceErrorKind::OutOfTime, message }) => {
                self.summary.stopped_because = Some(format!("deadline: {message}"));
                Ok(None)
            }
            Err(SourceError { kind: SourceErrorKind::Throttled, message }) => {
                self.summary.stopped_because = Some(format!("throttled: {message}"));
                Ok(None)
            }
            Err(error) => Err(EngineError::Source(error)),
        }
    }

    fn stop_reason(&mut self) -> String {
        self.summary.stopped_because.take().unwrap_or_else(|| "stopped".into())
    }

    fn out_of_time(&self) -> bool {
        self.fetch_deadline.is_some_and(|deadline| self.ports.clock.now() >= deadline)
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
                    if self.state.seen.contains(entry) || self.buffered.contains(entry) {
                        self.summary.duplicates_skipped += 1;
                        continue;
                    }
                    self.newest_last_update = self.newest_last_update.max(Some(key.last_update));
                    let date = key.last_update.date_naive();
                    let batch = self
                        .batches
                        .entry((BatchKind::Data, date))
                        .or_insert_with(|| Batch::new(date, slice_start));
                    batch.push_line(&as_ndjson_line(raw), slice_start)?;
                    batch.entries.push(entry);
                    self.buffered.insert(entry);
                    self.summary.alerts_written += 1;
                    if batch.uncompressed_bytes() >= self.settings.max_object_bytes
                        || batch.records() >= self.settings.max_object_records
                    {
                        self.store_batch((BatchKind::Data, date)).await?;
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
        let preview: String = raw.get().chars().take(120).collect();
        warn!(reason = reason.as_str(), record = %preview, "Quarantined a record that cannot be placed.");
        let date = self.started.date_naive();
        let batch = self
            .batches
            .entry((BatchKind::Quarantine, date))
            .or_insert_with(|| Batch::new(date, slice_start));
        batch.push_line(&as_ndjson_line(raw), slice_start)?;
        if batch.uncompressed_bytes() >= self.settings.max_object_bytes {
            self.store_batch((BatchKind::Quarantine, date)).await?;
        }
        Ok(())
    }

    /// Open objects hold the cursor back to the slice of their first record, and the dedup
    /// memory must reach back to the overlap before the cursor. In a long backlog that memory
    /// would grow with the run (and the state past DynamoDB's 400 KB item): past a bound, store
    /// every open object, so the cursor moves up to the last complete slice and the memory
    /// shrinks to the overlap.
    async fn keep_state_small(&mut self) -> Result<(), EngineError> {
        // Slices go forward in time: a date the read has left behind gets no more records, so
        // its object is complete (and it would hold the cursor back for the rest of the run).
        let today = self.completed_cursor.date_naive();
        let finished: Vec<_> = self
            .batches
            .keys()
            .copied()
            .filter(|(kind, date)| *kind == BatchKind::Data && *date < today)
            .collect();
        for which in finished {
            self.store_batch(which).await?;
        }
        if self.state.seen.len() + self.buffered.len() <= self.settings.max_remembered_versions {
            return Ok(());
        }
        let open: Vec<_> = self.batches.keys().copied().collect();
        for which in open {
            self.store_batch(which).await?;
        }
        if self.state.seen.len() > self.settings.max_remembered_versions {
            // Stored nothing (no open object) or still above: save, which prunes the memory.
            self.save().await?;
        }
        Ok(())
    }

    /// The cursor that may be saved now: never past a slice whose records are still buffered.
    fn savable_cursor(&self) -> DateTime<Utc> {
        let buffered_from =
            self.batches.values().map(|batch| batch.lowest_slice_start).chain(self.storing_from).min();
        let safe = match buffered_from {
            Some(start) => self.completed_cursor.min(start),
            None => self.completed_cursor,
        };
        safe.max(self.loaded_cursor)
    }

    async fn save(&mut self) -> Result<(), EngineError> {
        self.state.cursor = self.savable_cursor();
        let keep_from = self.state.next_window_start(self.settings.overlap);
        self.state.seen.prune_before(keep_from);
        let revision = self.ports.store.save(&self.state, self.revision.as_ref()).await?;
        self.revision = Some(revision);
        Ok(())
    }

    /// Announce, put, commit: a crash between any two steps neither loses nor duplicates.
    async fn store_batch(&mut self, which: (BatchKind, NaiveDate)) -> Result<(), EngineError> {
        let Some(batch) = self.batches.remove(&which) else { return Ok(()) };
        let records = batch.records();
        let name = ObjectName::new(self.started, &self.request.run_id, self.sequence);
        self.sequence += 1;
        let key = match which.0 {
            BatchKind::Data => self.settings.layout.data_key(which.1, &name),
            BatchKind::Quarantine => self.settings.layout.quarantine_key(which.1, &name),
        };
        let lowest_slice_start = batch.lowest_slice_start;
        let (body, entries) = batch.finish()?;
        let bytes = body.len();

        let mut announced = SeenVersions::default();
        announced.extend(entries.iter().copied());
        self.state.pending = Some(PendingObject { key: key.clone(), entries: announced });
        // Until committed, the cursor must stay below this batch's records.
        self.storing_from = Some(lowest_slice_start);
        self.save().await?;

        self.ports
            .sink
            .put(&key, body)
            .await
            .map_err(|error| EngineError::Output { key: key.clone(), error })?;

        for entry in &entries {
            self.buffered.remove(*entry);
        }
        self.state.seen.extend(entries);
        self.state.pending = None;
        if which.0 == BatchKind::Data {
            self.state.written_alerts += records as u64;
            self.state.written_objects += 1;
        }
        self.storing_from = None;
        self.save().await?;

        info!(key = %key, records, bytes, "Wrote object.");
        if which.0 == BatchKind::Data {
            self.partitions.insert(format!("dt={}", which.1.format("%Y-%m-%d")));
        }
        self.summary.objects.push(ObjectSummary { key, records, bytes });
        Ok(())
    }

    /// Stores every open batch and saves the final state.
    async fn finish(&mut self) -> Result<(), EngineError> {
        let open: Vec<_> = self.batches.keys().copied().collect();
        for which in open {
            self.store_batch(which).await?;
        }
        self.save().await?;
        self.summary.covered_until = format_human(self.state.cursor);
        self.summary.partitions = self.partitions.iter().cloned().collect();
        self.summary.newest_last_update = self.newest_last_update.map(format_human);
        self.summary.progress = self.state.progress();
        Ok(())
    }
}
