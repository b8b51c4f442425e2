//! Reading a window completely, whatever Graph's paging does.
//!
//! Public reports and Graph's documented constraints disagree with the textbook: `alerts_v2` may
//! send no `@odata.nextLink`, answers `$skip` above 500 with HTTP 400, clamps `$top`, and promises
//! neither an order nor `@odata.count` on every answer. So nothing here depends on them:
//! - A time slice counts as read only when **one answer holds all of it**: `@odata.count` no
//!   larger than what came back, or (without a count) an answer smaller than the largest Graph has
//!   given in this run, or one a `$skip` probe shows has nothing after it. Otherwise the slice is
//!   split in time and read again (dedup makes re-reading free of duplicates).
//! - One 100 ns instant cannot be split in time. It is paged through safe nextLinks (a
//!   `$skiptoken`, or a `$skip` within `max_skip`) or the engine's own `$skip` within the cap, and
//!   past that split by other filterable properties (`split.rs`), with its progress saved.
//! - An instant no property can split holds the cursor, and the run says which instant it is.

use std::collections::{HashSet, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::value::RawValue;
use tracing::{debug, info, warn};

use super::Run;
use crate::error::EngineError;
use crate::fingerprint::content_fingerprint;
use crate::page::{Page, parse_page, version_key};
use crate::ports::{
    AlertSource, Clock, FetchedPage, ObjectSink, PageRequest, SourceError, SourceErrorKind, StateStore,
};
use crate::query::{NextLinkKind, Query, classify_next_link};
use crate::split::{InstantProgress, PendingPart, Split, SplitCheck, SplitFields, choose_split};
use crate::timeutil::{TICK, floor_to_tick, format_filter_instant};

/// How reading a window ended (errors aside).
pub(super) enum WindowEnd {
    Complete,
    /// Stopped early (deadline, throttling): the reason is reported, the next run continues.
    Stopped(String),
    /// An instant no filter could split: the cursor stays before it.
    Held(HeldInstant),
}

pub(super) struct HeldInstant {
    pub at: DateTime<Utc>,
    /// How many versions Graph counted at the instant (in the parts it could not read).
    pub listed: Option<u64>,
    /// How many of them paging reached.
    pub reached: u64,
}

/// What this run has learnt about Graph's paging.
pub(super) struct Paging {
    /// The largest answer Graph has given in this run.
    largest: u32,
    /// Graph returned fewer than asked while more existed: its `$top` clamp.
    clamp: Option<u32>,
    /// Cleared when Graph rejects a nextLink or a `$skip` request (HTTP 400): read another way.
    links_usable: bool,
    skip_usable: bool,
    /// What splits have counted ahead, for each split slice still being read (innermost last).
    ahead: Vec<Ahead>,
}

/// A split slice still being read: what its count and its answer said about the rest of it.
struct Ahead {
    end: DateTime<Utc>,
    /// Its count, less what has been read of it since.
    remaining: u64,
    /// The timestamps of its answer, sorted, where that answer was in no time order (so they
    /// sample the slice at random); empty otherwise.
    sample: Vec<DateTime<Utc>>,
}

impl Ahead {
    /// Where a slice from `start` should end to hold about `target` records, read off the
    /// sample: each sampled timestamp stands for `remaining / sampled` records. `None` when the
    /// sample is too coarse for that (fewer than ten points per slice, where density sizing
    /// does better) or runs out.
    fn planned_end(&self, start: DateTime<Utc>, target: u64) -> Option<DateTime<Utc>> {
        let first = self.sample.partition_point(|stamp| *stamp < start);
        let last = self.sample.partition_point(|stamp| *stamp < self.end);
        let points = &self.sample[first..last.max(first)];
        let per_point = self.remaining as f64 / points.len().max(1) as f64;
        if points.is_empty() || per_point * 10.0 > target as f64 {
            return None;
        }
        // Below the target by about one standard deviation of the sampling noise (at most 15%),
        // so the noise rarely tips a slice over one answer.
        let target = target as f64;
        let planned = (target - (target * per_point).sqrt()).max(0.85 * target);
        let rank = (planned / per_point) as usize;
        points.get(rank).copied()
    }
}

impl Default for Paging {
    fn default() -> Self {
        Self { largest: 0, clamp: None, links_usable: true, skip_usable: true, ahead: Vec::new() }
    }
}

/// What one answer says about the query it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The answer holds every record of the query.
    Complete,
    /// More records exist.
    More,
    /// No count, no nextLink, and as many records as Graph has ever given at once: it may be
    /// Graph's page limit. A probe decides.
    Unsure,
}

/// A fetch started ahead, while a page was written.
pub(super) enum Attempt {
    Made(Result<FetchedPage, SourceError>),
    /// Not sent: the deadline had come.
    OutOfTime,
}

/// A fetch's result, as the engine acts on it.
enum Fetched {
    Page(FetchedPage),
    /// Graph rejected the request as formed (HTTP 400).
    Rejected(SourceError),
    /// Stop gracefully (deadline, throttling); the reason is in the summary.
    Stop,
}

/// A later time slice's first answer, fetched while an earlier one was written.
struct Prefetched {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    attempt: Attempt,
}

enum SliceOutcome {
    /// The slice up to `end` is read; `records` came back. `next`: the answers of the slices
    /// that follow it, fetched meanwhile (in order, from `end` on).
    Done {
        end: DateTime<Utc>,
        records: u64,
        next: Vec<Prefetched>,
    },
    /// One answer did not hold the slice: read a shorter one.
    Split {
        length: TimeDelta,
    },
    Stop(String),
    Held(HeldInstant),
}

enum InstantOutcome {
    Done,
    Stop(String),
    Held(HeldInstant),
}

/// How reading one part of a dense instant ended. `count`: the part's `@odata.count`, which its
/// split's check adds up.
enum PartOutcome {
    Complete {
        count: Option<u64>,
    },
    /// Read these parts instead.
    Split {
        count: Option<u64>,
        split: Split,
    },
    /// Stopped (deadline, throttling); `split`: the parts to save in its place, when paging was
    /// cut short and the records seen show how to split it.
    Stop {
        reason: String,
        split: Option<(Option<u64>, Split)>,
    },
    /// Too many versions for paging and nothing to split by: how many were counted and reached.
    Unreadable {
        listed: Option<u64>,
        reached: u64,
    },
}

/// Where a slice of `length` from `start` ends: on a 100 ns tick (`$filter` literals carry
/// ticks, so bounds off a tick would query a different range than the one marked as read), at
/// least one tick long, and not past `limit`.
fn end_of_slice(start: DateTime<Utc>, length: TimeDelta, limit: DateTime<Utc>) -> DateTime<Utc> {
    floor_to_tick(start + length).max(start + TICK).min(limit)
}

fn scaled(width: TimeDelta, factor: f64) -> TimeDelta {
    let nanos = (width.num_nanoseconds().unwrap_or(i64::MAX / 8) as f64 * factor).min(i64::MAX as f64 / 2.0);
    TimeDelta::nanoseconds(nanos as i64).max(TICK)
}

impl<S, T, O, C> Run<'_, S, T, O, C>
where
    S: AlertSource,
    T: StateStore,
    O: ObjectSink,
    C: Clock,
{
    /// A saved instant plan outside this window cannot be resumed here (the cursor only passes
    /// an instant once it is read, so this is defensive): read it from the start if it comes up.
    pub(super) fn forget_stale_instant(&mut self, from: DateTime<Utc>, to: DateTime<Utc>) {
        if self.instant_plan.as_ref().is_some_and(|plan| plan.at < from || plan.at >= to) {
            self.instant_plan = None;
        }
    }

    fn resume_at(&self) -> Option<DateTime<Utc>> {
        self.instant_plan.as_ref().map(|plan| plan.at)
    }

    pub(super) async fn read_window(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<WindowEnd, EngineError> {
        let mut slice_start = from;
        // The first slice is the whole window, whose answer sizes the rest; after a run that
        // stopped early, a length that fitted then.
        let mut length = self.state.slice_hint.unwrap_or(to - from).max(TICK);
        // Answers of later slices, fetched ahead, in order and without gaps between them (a gap
        // opens before the first when a slice ahead of it is split; it is read first).
        let mut queued: VecDeque<Prefetched> = VecDeque::new();
        // The last slice that fitted in one answer with records in it.
        let mut fitted: Option<TimeDelta> = None;
        while slice_start < to {
            let outcome = if self.resume_at() == Some(slice_start) {
                // A split instant the last run did not finish: its pending parts, as saved.
                match self.read_instant(slice_start, None).await? {
                    InstantOutcome::Done => {
                        self.passed(slice_start + TICK, 0);
                        SliceOutcome::Done { end: slice_start + TICK, records: 0, next: Vec::new() }
                    }
                    InstantOutcome::Stop(reason) => SliceOutcome::Stop(reason),
                    InstantOutcome::Held(held) => SliceOutcome::Held(held),
                }
            } else {
                // Defensive: the loop only moves forward over what it has read.
                queued.retain(|slice| slice.from >= slice_start);
                let (slice_end, first) = match queued.pop_front_if(|ahead| ahead.from == slice_start) {
                    Some(ahead) => (ahead.to, Some(ahead.attempt)),
                    None => {
                        let limit = queued.front().map_or(to, |next| next.from);
                        (self.slice_end(slice_start, length, limit), None)
                    }
                };
                let queued_from = queued.front().map(|next| next.from);
                let outcome = self.read_slice(slice_start, slice_end, to, first, queued_from).await?;
                if let SliceOutcome::Done { records, .. } = &outcome {
                    length = match fitted {
                        // A crowded instant read on its own says nothing of the density around
                        // it (sizing from it would creep up from one tick): start again from the
                        // last slice that fitted.
                        Some(fitted) if slice_end - slice_start <= TICK => fitted,
                        _ => self.next_length(slice_end, slice_end - slice_start, *records),
                    };
                }
                outcome
            };
            match outcome {
                SliceOutcome::Done { end, next, records } => {
                    if records > 0 && end - slice_start > TICK {
                        fitted = Some(end - slice_start);
                    }
                    self.completed_cursor = self.completed_cursor.max(end);
                    self.keep_state_small().await?;
                    slice_start = end;
                    for slice in next.into_iter().rev() {
                        queued.push_front(slice);
                    }
                }
                SliceOutcome::Split { length: shorter } => {
                    self.summary.slices_split += 1;
                    length = shorter.max(TICK);
                }
                SliceOutcome::Stop(reason) => {
                    self.state.slice_hint = Some(fitted.unwrap_or(length / 2).max(TICK));
                    return Ok(WindowEnd::Stopped(reason));
                }
                SliceOutcome::Held(held) => return Ok(WindowEnd::Held(held)),
            }
        }
        self.state.slice_hint = None;
        Ok(WindowEnd::Complete)
    }

    /// Where a slice from `start` ends: `length` on, but never past the window or a split
    /// instant waiting to be resumed (that instant is read on its own).
    fn slice_end(&self, start: DateTime<Utc>, length: TimeDelta, window_end: DateTime<Utc>) -> DateTime<Utc> {
        let limit = match self.resume_at() {
            Some(at) if at > start => window_end.min(at),
            _ => window_end,
        };
        end_of_slice(start, length, limit)
    }

    /// Up to `count` slices from `start`, each `length` long (the first as given; the others
    /// alike, as nothing newer is known of the density by the time they are sent), ending at
    /// `limit`, a split instant waiting to be resumed, or where a counted split slice needs its
    /// rest read first.
    fn plan_ahead(
        &self,
        start: DateTime<Utc>,
        length: TimeDelta,
        limit: DateTime<Utc>,
        count: usize,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let mut planned = Vec::with_capacity(count);
        let mut from = start;
        while planned.len() < count && from < limit && self.resume_at() != Some(from) {
            let to = self.slice_end(from, length, limit);
            planned.push((from, to));
            // Where a counted split sizes the slices, the next one depends on what this one holds.
            if self.split_sizes(to) {
                break;
            }
            from = to;
        }
        planned
    }

    /// Records one answer may hold: the page size asked for, or less where Graph clamps `$top`.
    fn page_limit(&self) -> u32 {
        let asked = self.settings.page_size.max(1);
        self.paging.clamp.map_or(asked, |clamp| clamp.clamp(1, asked))
    }

    /// Records a slice is sized for: a tenth below the page limit, which absorbs late arrivals
    /// and uneven density without tipping the slice over one answer.
    fn slice_target(&self) -> u64 {
        let page = u64::from(self.page_limit());
        (page - page / 10).max(1)
    }

    /// The next slice's length, from the density of the last one (`records` in `width`): sized
    /// for the slice target, growing at most twofold and shrinking at most to a quarter.
    fn next_slice_length(&self, width: TimeDelta, records: u64) -> TimeDelta {
        let scale =
            if records == 0 { 2.0 } else { (self.slice_target() as f64 / records as f64).clamp(0.25, 2.0) };
        scaled(width, scale)
    }

    /// The length of the slice from `start`, after one of `width` that held `records`. Inside a
    /// split slice whose count is known: when its rest fits one answer, the rest and as much
    /// after it as the density allows; else where its sample says a slice fills; else sized by
    /// density.
    fn next_length(&self, start: DateTime<Utc>, width: TimeDelta, records: u64) -> TimeDelta {
        let target = self.slice_target();
        let Some(ahead) = self.paging.ahead.last().filter(|ahead| ahead.end > start) else {
            return self.next_slice_length(width, records);
        };
        if ahead.remaining <= target {
            let room = (target - ahead.remaining) as f64;
            let after = if records == 0 { width } else { scaled(width, room / records as f64) };
            return (ahead.end - start) + after;
        }
        match ahead.planned_end(start, target) {
            Some(end) => (end - start).max(TICK),
            None => self.next_slice_length(width, records),
        }
    }

    /// Whether the slice from `start` is sized by a counted split around it (see
    /// [`Self::next_length`]) rather than by density alone.
    fn split_sizes(&self, start: DateTime<Utc>) -> bool {
        let target = self.slice_target();
        self.paging
            .ahead
            .last()
            .filter(|ahead| ahead.end > start)
            .is_some_and(|ahead| ahead.remaining <= target || ahead.planned_end(start, target).is_some())
    }

    /// The read has passed `end`, with `records` read since the last call: counted splits ahead
    /// hold that many fewer, and those that end here are done.
    fn passed(&mut self, end: DateTime<Utc>, records: u64) {
        self.paging.ahead.retain(|ahead| ahead.end > end);
        for ahead in &mut self.paging.ahead {
            ahead.remaining = ahead.remaining.saturating_sub(records);
        }
    }

    /// What an answer of `len` records says about its query.
    fn judge(&mut self, len: u32, count: Option<u64>, has_next_link: bool) -> Verdict {
        let largest_before = self.paging.largest;
        self.paging.largest = largest_before.max(len);
        let asked = self.settings.page_size;
        let verdict = match count {
            Some(count) => {
                if count <= u64::from(len) {
                    Verdict::Complete
                } else {
                    Verdict::More
                }
            }
            None if has_next_link || len >= asked => Verdict::More,
            None if len == 0 || len < largest_before => Verdict::Complete,
            None => Verdict::Unsure,
        };
        if verdict == Verdict::More && len > 0 && len < asked {
            // More exists than came back, though we asked for more: Graph's page limit.
            self.paging.clamp = Some(self.paging.clamp.map_or(len, |clamp| clamp.max(len)));
        }
        verdict
    }

    /// Reads the slice `[from, to)` from its first answer (`first`, when fetched ahead).
    /// `queued_from`: where the next answer fetched ahead starts, if any; slices fetched from
    /// here on end there.
    async fn read_slice(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        window_end: DateTime<Utc>,
        first: Option<Attempt>,
        queued_from: Option<DateTime<Utc>>,
    ) -> Result<SliceOutcome, EngineError> {
        let width = to - from;
        let query = Query::slice(from, to, self.settings.page_size);
        let fetched = match first {
            Some(attempt) => self.settle(attempt)?,
            None => self.request(PageRequest::Query(query.clone())).await?,
        };
        let page = match fetched {
            Fetched::Page(page) => page,
            Fetched::Rejected(error) => return Err(EngineError::Source(error)),
            Fetched::Stop => return Ok(SliceOutcome::Stop(self.stop_reason())),
        };
        let parsed = parse(&page)?;
        let len = parsed.alerts.len() as u32;
        let mut verdict = self.judge(len, parsed.count, parsed.next_link.is_some());
        if verdict == Verdict::Unsure {
            self.write_records(&parsed.alerts, from).await?;
            verdict = match self.probe(&query, len).await? {
                Some(verdict) => verdict,
                None => return Ok(SliceOutcome::Stop(self.stop_reason())),
            };
            if verdict == Verdict::Complete {
                self.passed(to, u64::from(len));
                return Ok(SliceOutcome::Done { end: to, records: u64::from(len), next: Vec::new() });
            }
        }
        match verdict {
            Verdict::Complete => {
                let records = u64::from(len);
                self.passed(to, records);
                self.finish_slice(&parsed.alerts, (from, to), records, window_end, queued_from).await
            }
            _ if width > TICK => {
                let stamps: Vec<DateTime<Utc>> = parsed
                    .alerts
                    .iter()
                    .filter_map(|raw| version_key(raw).ok())
                    .map(|key| key.last_update)
                    .collect();
                let count = parsed.count;
                // A slice a little over one answer: one page more, by `$skip` within the cap,
                // reads it whole when the versions told apart reach its count (the check a
                // crowded instant's pages pass), for one request where a split takes two. Only
                // past the overlap (never less than the default's 15 minutes, whatever an
                // operator set): there no version shows up late, so a version that leaves the
                // slice between the two pages (an update) makes them come back short, whereas a
                // late one arriving as another leaves could hide a third.
                let settled_before = self.started
                    - self.settings.overlap.max(TimeDelta::minutes(crate::settings::DEFAULT_OVERLAP_MINUTES));
                let within_a_page_more = count.is_some_and(|count| {
                    len > 0
                        && to <= settled_before
                        && count <= u64::from(len) + u64::from(len.min(self.settings.max_skip))
                        && count <= self.reach(parsed.next_link.as_deref(), len)
                });
                if within_a_page_more {
                    let link = parsed.next_link.clone();
                    let (mut distinct, mut sample) = (HashSet::new(), Vec::new());
                    self.take_in(&parsed.alerts, from, &mut distinct, &mut sample).await?;
                    drop(parsed);
                    match self.page_on(&query, count, len, link, &mut distinct, &mut sample).await? {
                        Paged::Complete => {
                            let records = distinct.len() as u64;
                            self.passed(to, records);
                            return self
                                .finish_slice(&[], (from, to), records, window_end, queued_from)
                                .await;
                        }
                        Paged::Stop => return Ok(SliceOutcome::Stop(self.stop_reason())),
                        // Shifted by an update while paging, or Graph refused the page: split.
                        Paged::Short | Paged::Beyond => {}
                    }
                }
                debug!(count = ?count, received = len, "One answer does not hold the slice; splitting it.");
                Ok(SliceOutcome::Split { length: self.split_length(from, width, count, &stamps) })
            }
            _ => {
                drop(parsed);
                let outcome = match self.read_instant(from, Some(page)).await? {
                    InstantOutcome::Done => {
                        self.passed(to, u64::from(len));
                        SliceOutcome::Done { end: to, records: u64::from(len), next: Vec::new() }
                    }
                    InstantOutcome::Stop(reason) => SliceOutcome::Stop(reason),
                    InstantOutcome::Held(held) => SliceOutcome::Held(held),
                };
                Ok(outcome)
            }
        }
    }

    /// Ends a slice read whole (`records` versions in `span`): writes what its answer held
    /// (`answer`; nothing when paging wrote it already) while the next slices' answers are on
    /// their way, so the slice boundary costs no latency and the slices after it share theirs.
    async fn finish_slice(
        &mut self,
        answer: &[&RawValue],
        span: (DateTime<Utc>, DateTime<Utc>),
        records: u64,
        window_end: DateTime<Utc>,
        queued_from: Option<DateTime<Utc>>,
    ) -> Result<SliceOutcome, EngineError> {
        let (from, to) = span;
        let limit = queued_from.unwrap_or(window_end);
        if to >= limit || self.resume_at() == Some(to) {
            self.write_records(answer, from).await?;
            return Ok(SliceOutcome::Done { end: to, records, next: Vec::new() });
        }
        let ahead = if queued_from.is_some() { 1 } else { self.settings.slices_in_flight.max(1) };
        let planned = self.plan_ahead(to, self.next_length(to, to - from, records), limit, ahead);
        let page_size = self.settings.page_size;
        let requests =
            planned.iter().map(|(a, b)| PageRequest::Query(Query::slice(*a, *b, page_size))).collect();
        let attempts = self.write_while_fetching(answer, from, to, requests).await?;
        let next = planned
            .into_iter()
            .zip(attempts)
            .map(|((from, to), attempt)| Prefetched { from, to, attempt })
            .collect();
        Ok(SliceOutcome::Done { end: to, records, next })
    }

    /// How long the first part of a slice that one answer did not hold should be, from the
    /// answer itself. Its records' timestamps are a sample of the slice: where most of them sit at
    /// one instant, that instant holds more than a page and is read on its own (its plan is set
    /// now, so a run cut short resumes right there); in an oldest-first answer the page limit's
    /// rank is exact; in an unordered one the rank scaled by the count is a fair estimate. Only a
    /// newest-first answer says nothing about the slice's start: it is split by its count.
    fn split_length(
        &mut self,
        from: DateTime<Utc>,
        width: TimeDelta,
        count: Option<u64>,
        stamps: &[DateTime<Utc>],
    ) -> TimeDelta {
        let target = self.slice_target() as usize;
        let proportional = match count {
            Some(count) if count > 0 => scaled(width, (target as f64 / count as f64).min(0.9)),
            _ => scaled(width, 0.5),
        };
        let Some(&first) = stamps.first() else { return proportional };
        let mut sorted = stamps.to_vec();
        sorted.sort();
        // The instant most of the sample shares, if it likely holds more than a page.
        let (mut dense, mut most, mut run) = (first, 0usize, 0usize);
        for (i, stamp) in sorted.iter().enumerate() {
            run = if i > 0 && sorted[i - 1] == *stamp { run + 1 } else { 1 };
            if run > most {
                (dense, most) = (*stamp, run);
            }
        }
        let estimated = count.map_or(most as f64, |count| most as f64 * count as f64 / sorted.len() as f64);
        if most == sorted.len() || estimated > f64::from(self.page_limit()) {
            if self.resume_at().is_none_or(|planned| dense < planned) {
                self.instant_plan = Some(InstantProgress::new(dense, self.started));
            }
            return (dense - from).max(TICK);
        }
        let descending = stamps.windows(2).all(|pair| pair[0] >= pair[1]);
        let ascending = stamps.windows(2).all(|pair| pair[0] <= pair[1]);
        let unordered = !ascending && !descending;
        if let Some(count) = count {
            let sample = if unordered { sorted.clone() } else { Vec::new() };
            self.paging.ahead.push(Ahead { end: from + width, remaining: count, sample });
        }
        let rank = if ascending {
            target.min(sorted.len() - 1)
        } else if descending {
            return proportional;
        } else if let Some(end) = self.paging.ahead.last().and_then(|a| a.planned_end(from, target as u64)) {
            return (end - from).max(TICK);
        } else {
            match count {
                Some(count) if count > 0 => (sorted.len() * target / count as usize).min(sorted.len() - 1),
                _ => sorted.len() / 2,
            }
        };
        (sorted[rank] - from).max(TICK)
    }

    /// Asks for what follows an answer of `len` records (`$skip` within the cap): nothing there
    /// means the answer held the whole query. `None`: stopped (deadline, throttling).
    async fn probe(&mut self, query: &Query, len: u32) -> Result<Option<Verdict>, EngineError> {
        let skip = len.min(self.settings.max_skip);
        if !self.paging.skip_usable || skip == 0 {
            return Ok(Some(Verdict::More));
        }
        let probe = Query { skip, ..query.clone() };
        let page = match self.request(PageRequest::Query(probe)).await? {
            Fetched::Page(page) => page,
            Fetched::Stop => return Ok(None),
            Fetched::Rejected(error) => {
                warn!(error = %error, "Graph refused a $skip request; reading by time slices alone.");
                self.paging.skip_usable = false;
                return Ok(Some(Verdict::More));
            }
        };
        let parsed = parse(&page)?;
        let more = parsed.alerts.len() as u32;
        self.paging.largest = self.paging.largest.max(more);
        self.write_records(&parsed.alerts, query.from).await?;
        if skip + more <= len && parsed.next_link.is_none() {
            Ok(Some(Verdict::Complete))
        } else {
            self.paging.clamp = Some(self.paging.clamp.map_or(len, |clamp| clamp.max(len)).max(1));
            Ok(Some(Verdict::More))
        }
    }

    /// Reads every version at the instant `at`, which one answer did not hold: part by part,
    /// resuming a saved plan, checking each split by counts. `first`: the answer that showed the
    /// instant is too big.
    async fn read_instant(
        &mut self,
        at: DateTime<Utc>,
        first: Option<FetchedPage>,
    ) -> Result<InstantOutcome, EngineError> {
        let mut plan = match self.instant_plan.take() {
            Some(plan) if plan.at == at => {
                info!(instant = %format_filter_instant(at), parts = plan.pending.len(), "Resuming a split instant.");
                plan
            }
            _ => InstantProgress::new(at, self.started),
        };
        let mut first = first;
        let mut counted_split = false;
        let mut unreadable: Vec<PendingPart> = Vec::new();
        let (mut listed, mut reached) = (Some(0u64), 0u64);
        loop {
            // The parts run first; those that cannot be read wait at the bottom for the next run.
            let mut saved = plan.clone();
            saved.pending.splice(0..0, unreadable.iter().cloned());
            self.instant_plan = Some(saved);
            if let Some(index) = plan.checks.iter().position(|check| check.open == 0) {
                let check = plan.checks.remove(index);
                match self.verify_split(at, &check).await? {
                    Verified::Holds => {}
                    Verified::FellShort => {
                        let mut avoid = check.whole_avoid;
                        avoid.push(check.by);
                        plan.pending.push(PendingPart { narrowed: check.whole, avoid, check: None });
                    }
                    Verified::Stop(reason) => return Ok(InstantOutcome::Stop(reason)),
                }
                continue;
            }
            let Some(part) = plan.pending.pop() else { break };
            match self.read_part(at, &part, first.take()).await? {
                PartOutcome::Complete { count } => account(&mut plan, part.check, count),
                PartOutcome::Split { count, split } => {
                    account(&mut plan, part.check, count);
                    push_split(&mut plan, &part, count, split);
                    if !counted_split {
                        counted_split = true;
                        self.summary.instants_split += 1;
                        info!(instant = %format_filter_instant(at), "Splitting a dense instant by other filterable properties.");
                    }
                }
                PartOutcome::Stop { reason, split } => {
                    match split {
                        // Paging was cut short: the next run reads the part's split instead.
                        Some((count, split)) => {
                            account(&mut plan, part.check, count);
                            push_split(&mut plan, &part, count, split);
                        }
                        None => plan.pending.push(part),
                    }
                    plan.pending.splice(0..0, unreadable);
                    self.instant_plan = Some(plan);
                    return Ok(InstantOutcome::Stop(reason));
                }
                PartOutcome::Unreadable { listed: part_listed, reached: part_reached } => {
                    account(&mut plan, part.check, part_listed);
                    unreadable.push(PendingPart { check: None, ..part });
                    listed = listed.zip(part_listed).map(|(a, b)| a + b);
                    reached += part_reached;
                }
            }
        }
        if unreadable.is_empty() {
            if plan.started >= at + self.settings.overlap {
                // Read from a start after the overlap had passed: every version that can still
                // show was visible, so later windows that reach back over it skip it (a plan
                // with nothing pending) instead of paging through it again.
                self.instant_plan = Some(plan);
            } else {
                self.instant_plan = None;
                // Read over several runs, the instant is complete only as of the first of them.
                // A version shown late may be missing from a part read before it showed: keep
                // the cursor low enough that the next run reads the instant again.
                if plan.started < self.started {
                    let started = plan.started;
                    self.cursor_cap = Some(self.cursor_cap.map_or(started, |cap| cap.min(started)));
                }
            }
            return Ok(InstantOutcome::Done);
        }
        // The next run retries just the parts that could not be read.
        plan.pending = unreadable;
        self.instant_plan = Some(plan);
        Ok(InstantOutcome::Held(HeldInstant { at, listed, reached }))
    }

    /// Checks a split whose parts are all counted: their counts must add up to the whole's. If
    /// they fall short, the whole is counted again, since alerts updated meanwhile leave the
    /// instant. If it still counts more, the split lost records.
    async fn verify_split(&mut self, at: DateTime<Utc>, check: &SplitCheck) -> Result<Verified, EngineError> {
        if check.sum >= check.expected {
            return Ok(Verified::Holds);
        }
        let recount = Query { top: 1, ..Query::instant(at, check.whole.clone(), self.settings.page_size) };
        let page = match self.request(PageRequest::Query(recount)).await? {
            Fetched::Page(page) => page,
            Fetched::Stop => return Ok(Verified::Stop(self.stop_reason())),
            Fetched::Rejected(error) => return Err(EngineError::Source(error)),
        };
        let now = parse(&page)?.count;
        if now.is_none_or(|count| count <= check.sum) {
            return Ok(Verified::Holds);
        }
        self.summary.slices_reread += 1;
        warn!(
            instant = %format_filter_instant(at),
            counted = check.expected,
            recounted = ?now,
            parts_counted = check.sum,
            by = ?check.by,
            "A split's parts hold fewer versions than the whole: reading the whole again another way."
        );
        Ok(Verified::FellShort)
    }

    /// Reads one part of an instant: one answer, else paging within the limits, else a split.
    /// Paging is preferred where it can reach the whole part (fewer requests); a part it cannot
    /// reach is split at once, and a part whose paging a stop cut short is saved as its split,
    /// so the next run moves forward even when it cannot page through the whole part.
    async fn read_part(
        &mut self,
        at: DateTime<Utc>,
        part: &PendingPart,
        first: Option<FetchedPage>,
    ) -> Result<PartOutcome, EngineError> {
        let narrowed = part.narrowed.as_slice();
        let query = Query::instant(at, narrowed.to_vec(), self.settings.page_size);
        let mut first = first;
        let mut sample: Vec<SplitFields> = Vec::new();
        let mut rereads = 0;
        let (count, reached) = loop {
            let page = match first.take() {
                Some(page) => page,
                None => match self.request(PageRequest::Query(query.clone())).await? {
                    Fetched::Page(page) => page,
                    Fetched::Stop => {
                        return Ok(PartOutcome::Stop { reason: self.stop_reason(), split: None });
                    }
                    Fetched::Rejected(error) => return Err(EngineError::Source(error)),
                },
            };
            let parsed = parse(&page)?;
            let len = parsed.alerts.len() as u32;
            let count = parsed.count;
            let mut distinct = HashSet::new();
            self.take_in(&parsed.alerts, at, &mut distinct, &mut sample).await?;
            if self.judge(len, count, parsed.next_link.is_some()) == Verdict::Complete {
                return Ok(PartOutcome::Complete { count });
            }
            let step = len.max(1);
            let link = parsed.next_link.clone();
            drop(parsed);
            if count.is_some_and(|count| count > self.reach(link.as_deref(), step))
                && let Some(split) =
                    choose_split(self.settings.stream.split_properties, narrowed, &sample, &part.avoid)
            {
                return Ok(PartOutcome::Split { count, split });
            }
            match self.page_on(&query, count, step, link, &mut distinct, &mut sample).await? {
                Paged::Complete => return Ok(PartOutcome::Complete { count }),
                Paged::Stop => {
                    let reason = self.stop_reason();
                    let split =
                        choose_split(self.settings.stream.split_properties, narrowed, &sample, &part.avoid)
                            .map(|split| (count, split));
                    return Ok(PartOutcome::Stop { reason, split });
                }
                // Fewer versions than counted although the pages ran out: an alert updated while we
                // paged shifted the offsets. Read the part again (dedup keeps that free).
                Paged::Short if rereads < 2 => {
                    rereads += 1;
                    self.summary.slices_reread += 1;
                    warn!(counted = ?count, received = distinct.len(), "An instant's pages came back short; reading it again.");
                }
                Paged::Short | Paged::Beyond => break (count, distinct.len() as u64),
            }
        };
        if let Some(split) =
            choose_split(self.settings.stream.split_properties, narrowed, &sample, &part.avoid)
        {
            return Ok(PartOutcome::Split { count, split });
        }
        if self.settings.accept_incomplete_instants.contains(&at) {
            warn!(
                instant = %format_filter_instant(at),
                counted = ?count,
                reached,
                "Moving past an instant accepted as read as far as Graph's paging reaches (ACCEPT_INCOMPLETE_INSTANTS)."
            );
            return Ok(PartOutcome::Complete { count });
        }
        Ok(PartOutcome::Unreadable { listed: count, reached })
    }

    /// How many records paging can reach from an answer of `step` records with this nextLink.
    fn reach(&self, link: Option<&str>, step: u32) -> u64 {
        let token_paging =
            self.paging.links_usable && link.map(classify_next_link) == Some(NextLinkKind::SkipToken);
        if token_paging {
            u64::from(step) * u64::from(self.settings.max_pages_per_slice.max(1))
        } else if self.paging.skip_usable {
            u64::from(self.settings.max_skip) + u64::from(step)
        } else {
            u64::from(step)
        }
    }

    /// Writes an answer's records and notes them for the completeness check and the split.
    async fn take_in(
        &mut self,
        records: &[&RawValue],
        at: DateTime<Utc>,
        distinct: &mut HashSet<u64>,
        sample: &mut Vec<SplitFields>,
    ) -> Result<(), EngineError> {
        for raw in records {
            if distinct.insert(content_fingerprint(raw.get().as_bytes())) {
                sample.push(SplitFields::of(raw));
            }
        }
        self.write_records(records, at).await
    }

    /// Pages on through one query as far as is safe: nextLinks that carry a `$skiptoken` or a
    /// `$skip` within the cap, else the engine's own `$skip` up to the cap, at most
    /// `max_pages_per_slice` pages in all.
    async fn page_on(
        &mut self,
        query: &Query,
        count: Option<u64>,
        step: u32,
        mut link: Option<String>,
        distinct: &mut HashSet<u64>,
        sample: &mut Vec<SplitFields>,
    ) -> Result<Paged, EngineError> {
        let max_skip = self.settings.max_skip;
        let mut offset = 0u32;
        let mut pages = 1u32;
        loop {
            if pages >= self.settings.max_pages_per_slice.max(1) {
                return Ok(Paged::Beyond);
            }
            let safe_link = link.take().filter(|link| {
                self.paging.links_usable
                    && match classify_next_link(link) {
                        NextLinkKind::SkipToken => true,
                        NextLinkKind::Skip(skip) => skip <= u64::from(max_skip),
                        NextLinkKind::Unknown => false,
                    }
            });
            let (fetched, by_link) = match safe_link {
                Some(next) => {
                    if let NextLinkKind::Skip(skip) = classify_next_link(&next) {
                        offset = u32::try_from(skip).unwrap_or(u32::MAX);
                    }
                    (self.request(PageRequest::Next { link: &next }).await?, true)
                }
                None if self.paging.skip_usable && offset < max_skip => {
                    offset = offset.saturating_add(step).min(max_skip);
                    (self.request(PageRequest::Query(Query { skip: offset, ..query.clone() })).await?, false)
                }
                None => return Ok(Paged::Beyond),
            };
            let page = match fetched {
                Fetched::Page(page) => page,
                Fetched::Stop => return Ok(Paged::Stop),
                Fetched::Rejected(error) => {
                    // Graph's limits are tighter than assumed: read this instant another way.
                    warn!(error = %error, by_link, "Graph refused a deeper page; splitting instead.");
                    if by_link {
                        self.paging.links_usable = false;
                    } else {
                        self.paging.skip_usable = false;
                    }
                    return Ok(Paged::Beyond);
                }
            };
            pages += 1;
            let parsed = parse(&page)?;
            let len = parsed.alerts.len() as u32;
            self.paging.largest = self.paging.largest.max(len);
            self.take_in(&parsed.alerts, query.from, distinct, sample).await?;
            link = parsed.next_link.clone();
            let last = len < step && link.is_none();
            match count {
                Some(count) if distinct.len() as u64 >= count => return Ok(Paged::Complete),
                Some(_) if last => return Ok(Paged::Short),
                None if last => return Ok(Paged::Complete),
                _ => {}
            }
        }
    }

    /// Writes a page's records, the slice `[slice_start, slice_end)` in full, while the next
    /// request is on its way, so Graph's latency hides the compression and the uploads; the
    /// dates the slice leaves behind are stored then too (announce, put, commit), not between
    /// two requests. The fetch is polled first, so its request goes out before the writing.
    async fn write_while_fetching(
        &mut self,
        records: &[&RawValue],
        slice_start: DateTime<Utc>,
        slice_end: DateTime<Utc>,
        requests: Vec<PageRequest<'_>>,
    ) -> Result<Vec<Attempt>, EngineError> {
        if self.out_of_time() {
            self.write_records(records, slice_start).await?;
            return Ok(requests.iter().map(|_| Attempt::OutOfTime).collect());
        }
        let source = self.ports.source;
        let deadline = self.fetch_deadline;
        let fetches = futures_util::future::join_all(
            requests.into_iter().map(|request| source.fetch(request, deadline)),
        );
        let (fetched, written) = futures_util::future::join(fetches, async {
            self.write_records(records, slice_start).await?;
            self.store_dates_before(slice_end).await
        })
        .await;
        written?;
        Ok(fetched.into_iter().map(Attempt::Made).collect())
    }

    async fn request(&mut self, request: PageRequest<'_>) -> Result<Fetched, EngineError> {
        let attempt = if self.out_of_time() {
            Attempt::OutOfTime
        } else {
            Attempt::Made(self.ports.source.fetch(request, self.fetch_deadline).await)
        };
        self.settle(attempt)
    }

    /// Accounts for one fetch and decides what it means for the run.
    fn settle(&mut self, attempt: Attempt) -> Result<Fetched, EngineError> {
        let fetched = match attempt {
            Attempt::OutOfTime => {
                self.summary.stopped_because = Some("deadline: stopped before the next page".into());
                return Ok(Fetched::Stop);
            }
            Attempt::Made(fetched) => fetched,
        };
        match fetched {
            Ok(page) => {
                self.summary.pages += 1;
                Ok(Fetched::Page(page))
            }
            Err(SourceError { kind: SourceErrorKind::OutOfTime, message, .. }) => {
                self.summary.stopped_because = Some(format!("deadline: {message}"));
                Ok(Fetched::Stop)
            }
            Err(SourceError { kind: SourceErrorKind::Throttled, message, .. }) => {
                self.summary.stopped_because = Some(format!("throttled: {message}"));
                Ok(Fetched::Stop)
            }
            Err(error) if error.kind == SourceErrorKind::QueryRejected => Ok(Fetched::Rejected(error)),
            Err(error) => Err(EngineError::Source(error)),
        }
    }

    fn stop_reason(&mut self) -> String {
        self.summary.stopped_because.take().unwrap_or_else(|| "stopped".into())
    }

    pub(super) fn out_of_time(&self) -> bool {
        self.fetch_deadline.is_some_and(|deadline| self.ports.clock.now() >= deadline)
    }
}

enum Verified {
    Holds,
    /// The parts hold fewer versions than the whole, counted twice: read it another way.
    FellShort,
    Stop(String),
}

/// Adds a part's count to its split's check; a part without a count makes the check moot.
fn account(plan: &mut InstantProgress, check: Option<u32>, count: Option<u64>) {
    let Some(index) = check.and_then(|id| plan.checks.iter().position(|c| c.id == id)) else { return };
    match count {
        Some(count) => {
            let check = &mut plan.checks[index];
            check.open = check.open.saturating_sub(1);
            check.sum += count;
        }
        None => {
            plan.checks.remove(index);
        }
    }
}

/// Queues a split's parts (read in the order chosen), with a check when the whole was counted.
fn push_split(plan: &mut InstantProgress, whole: &PendingPart, count: Option<u64>, split: Split) {
    let check = count.map(|expected| {
        let id = plan.new_check_id();
        plan.checks.push(SplitCheck {
            id,
            whole: whole.narrowed.clone(),
            whole_avoid: whole.avoid.clone(),
            by: split.by,
            expected,
            open: split.parts.len() as u32,
            sum: 0,
        });
        id
    });
    for narrowed in split.parts.into_iter().rev() {
        plan.pending.push(PendingPart { narrowed, avoid: whole.avoid.clone(), check });
    }
}

/// How paging through one query ended.
enum Paged {
    Complete,
    /// The pages ran out with fewer versions than counted.
    Short,
    /// Paging reached as far as it may (the `$skip` cap, the page bound, or Graph refused).
    Beyond,
    Stop,
}

fn parse(page: &FetchedPage) -> Result<Page<'_>, EngineError> {
    parse_page(&page.body).map_err(|problem| EngineError::MalformedPage {
        request_id: page.request_id.clone().unwrap_or_else(|| "unknown".into()),
        problem,
    })
}
