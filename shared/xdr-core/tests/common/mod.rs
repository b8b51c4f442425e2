//! Shared by the engine tests: an in-memory Graph with Graph's paging semantics, and a world
//! (clock, Graph, state, sink) to run the engine in and check its output.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use flate2::read::MultiGzDecoder;
use xdr_core::memory::{ManualClock, MemorySink, MemoryStore};
use xdr_core::timeutil::{format_filter_instant, parse_instant};
use xdr_core::{
    AlertSource, Clock, EngineError, FetchedPage, PageRequest, Ports, RunRequest, RunSummary, SourceError,
    SourceErrorKind, SyncSettings, run_sync,
};

#[derive(Clone)]
pub struct Version {
    pub id: String,
    pub last_update: DateTime<Utc>,
    pub visible_at: DateTime<Utc>,
    pub body: String,
}

pub type Hook = Box<dyn FnMut(&mut Vec<Version>, usize, DateTime<Utc>) + Send>;

pub struct FakeGraph {
    pub clock: Arc<ManualClock>,
    pub versions: Mutex<Vec<Version>>,
    pub latency: TimeDelta,
    pub with_count: bool,
    pub requests: Mutex<Vec<String>>,
    /// Called after each page is served, with the number of pages served so far.
    pub after_page: Mutex<Option<Hook>>,
    pub throttle_after: Mutex<Option<usize>>,
}

impl FakeGraph {
    pub fn new(clock: Arc<ManualClock>) -> Self {
        Self {
            clock,
            versions: Mutex::new(Vec::new()),
            latency: TimeDelta::milliseconds(300),
            with_count: true,
            requests: Mutex::new(Vec::new()),
            after_page: Mutex::new(None),
            throttle_after: Mutex::new(None),
        }
    }

    pub fn add(&self, id: &str, last_update: DateTime<Utc>, visible_at: DateTime<Utc>) -> String {
        let body = format!(
            r##"{{"id":"{id}","status":"new","lastUpdateDateTime":"{}","unknownFutureProperty":{{"x":[1,2]}},"evidence":[{{"@odata.type":"#microsoft.graph.security.brandNewEvidence","v":"{}"}}]}}"##,
            format_filter_instant(last_update),
            visible_at.timestamp_micros()
        );
        self.versions.lock().unwrap().push(Version {
            id: id.into(),
            last_update,
            visible_at,
            body: body.clone(),
        });
        body
    }

    pub fn requests(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// The alerts as Graph would list them now: each alert's newest visible version.
    pub fn current(
        versions: &[Version],
        now: DateTime<Utc>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<Version> {
        let mut latest: HashMap<&str, &Version> = HashMap::new();
        for version in versions.iter().filter(|v| v.visible_at <= now) {
            let entry = latest.entry(&version.id).or_insert(version);
            if version.last_update > entry.last_update {
                *entry = version;
            }
        }
        let mut list: Vec<Version> =
            latest.into_values().filter(|v| v.last_update >= from && v.last_update < to).cloned().collect();
        list.sort_by(|a, b| b.last_update.cmp(&a.last_update).then(a.id.cmp(&b.id)));
        list
    }
}

impl AlertSource for FakeGraph {
    async fn authenticate(&self, _deadline: Option<DateTime<Utc>>) -> Result<(), SourceError> {
        Ok(())
    }

    async fn fetch(
        &self,
        request: PageRequest<'_>,
        deadline: Option<DateTime<Utc>>,
    ) -> Result<FetchedPage, SourceError> {
        tokio::task::yield_now().await;
        if deadline.is_some_and(|d| self.clock.now() + self.latency > d) {
            return Err(SourceError::new(SourceErrorKind::OutOfTime, "no time for another page"));
        }
        let served = self.requests();
        if self.throttle_after.lock().unwrap().is_some_and(|n| served >= n) {
            return Err(SourceError::new(SourceErrorKind::Throttled, "429 beyond the deadline"));
        }
        let (from, to, top, skip, count) = match request {
            PageRequest::First { from, to, page_size, with_count } => {
                (from, to, page_size as usize, 0, with_count)
            }
            PageRequest::Next { link } => {
                let parts: Vec<&str> = link.split('|').collect();
                (
                    parse_instant(parts[0]).unwrap(),
                    parse_instant(parts[1]).unwrap(),
                    parts[2].parse().unwrap(),
                    parts[3].parse().unwrap(),
                    false,
                )
            }
        };
        self.clock.advance(self.latency);
        let now = self.clock.now();
        let list = Self::current(&self.versions.lock().unwrap(), now, from, to);
        let page: Vec<&str> = list.iter().skip(skip).take(top).map(|v| v.body.as_str()).collect();
        let mut body = format!(r#"{{"@odata.context":"ctx","value":[{}]"#, page.join(","));
        if count && self.with_count {
            body.push_str(&format!(r#","@odata.count":{}"#, list.len()));
        }
        if skip + top < list.len() {
            body.push_str(&format!(
                r#","@odata.nextLink":"{}|{}|{}|{}""#,
                format_filter_instant(from),
                format_filter_instant(to),
                top,
                skip + top
            ));
        }
        body.push('}');
        self.requests.lock().unwrap().push(format!("{from}..{to} skip {skip}"));
        if let Some(hook) = self.after_page.lock().unwrap().as_mut() {
            hook(&mut self.versions.lock().unwrap(), served + 1, now);
        }
        Ok(FetchedPage { body: body.into_bytes(), request_id: Some(format!("req-{served}")) })
    }
}

pub struct World {
    pub clock: Arc<ManualClock>,
    pub graph: FakeGraph,
    pub store: MemoryStore,
    pub sink: MemorySink,
    pub settings: SyncSettings,
    pub runs: u32,
}

pub fn t(text: &str) -> DateTime<Utc> {
    parse_instant(text).unwrap()
}

pub const T0: &str = "2026-11-28T06:00:00Z";

impl World {
    pub fn new() -> Self {
        let clock = Arc::new(ManualClock::new(t(T0)));
        let mut settings = SyncSettings::with_defaults();
        settings.page_size = 100;
        settings.max_pages_per_slice = 5;
        settings.backfill_start = Some(t(T0) - TimeDelta::days(2));
        Self {
            graph: FakeGraph::new(clock.clone()),
            clock,
            store: MemoryStore::default(),
            sink: MemorySink::default(),
            settings,
            runs: 0,
        }
    }

    pub async fn run_with_deadline(
        &mut self,
        deadline: Option<DateTime<Utc>>,
    ) -> Result<RunSummary, EngineError> {
        self.runs += 1;
        let ports = Ports { source: &self.graph, store: &self.store, sink: &self.sink, clock: &*self.clock };
        run_sync(&self.settings, ports, RunRequest { run_id: format!("run{}", self.runs), deadline }).await
    }

    pub async fn run(&mut self) -> RunSummary {
        let summary = self.run_with_deadline(None).await.expect("run succeeds");
        assert!(summary.complete, "{summary:?}");
        summary
    }

    /// Every line of every data object, with the key it is in.
    pub fn lines(&self) -> Vec<(String, String)> {
        let mut lines = Vec::new();
        for (key, body) in self.sink.objects() {
            if !key.starts_with(self.settings.layout.data_prefix()) {
                continue;
            }
            let mut text = String::new();
            MultiGzDecoder::new(&body[..]).read_to_string(&mut text).unwrap();
            for line in text.lines() {
                lines.push((key.clone(), line.to_owned()));
            }
        }
        lines
    }

    /// Asserts each of `expected` bodies is written exactly once, nothing else is, and each
    /// lands in the partition of its own lastUpdateDateTime.
    pub fn assert_exactly(&self, expected: &[String]) {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for (key, line) in self.lines() {
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            let date = &value["lastUpdateDateTime"].as_str().unwrap()[..10];
            assert!(key.contains(&format!("/dt={date}/")), "{key} holds a record of {date}");
            *counts.entry(line).or_default() += 1;
        }
        let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(duplicates.is_empty(), "duplicated lines: {}", duplicates.len());
        let missing: Vec<_> = expected.iter().filter(|body| !counts.contains_key(*body)).collect();
        assert!(missing.is_empty(), "{} versions missing, e.g. {:?}", missing.len(), missing.first());
        assert_eq!(counts.len(), expected.len(), "unexpected extra lines");
    }
}
