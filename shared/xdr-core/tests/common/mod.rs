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
use xdr_simulator::graph::{GraphBehaviour, GraphMode, ListRequest, answer};

/// One version of one alert, as the simulated tenant keeps it.
pub use xdr_simulator::SimVersion as Version;

pub type Hook = Box<dyn FnMut(&mut Vec<Version>, usize, DateTime<Utc>) + Send>;

const SOURCES: [&str; 6] = [
    "microsoftDefenderForEndpoint",
    "microsoftDefenderForIdentity",
    "microsoftDefenderForOffice365",
    "microsoftSentinel",
    "dataLossPrevention",
    "microsoftDefenderForCloudApps",
];
const SEVERITIES: [&str; 4] = ["informational", "low", "medium", "high"];

fn hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The filterable properties of one test alert version.
pub struct Shape {
    pub created: DateTime<Utc>,
    pub service_source: String,
    pub severity: String,
    pub assigned_to: Option<String>,
}

/// An in-memory Graph over a live result set, answering through the simulator's Graph model
/// (the same one the HTTP simulator serves), in any of its modes.
pub struct FakeGraph {
    pub clock: Arc<ManualClock>,
    pub versions: Mutex<Vec<Version>>,
    pub latency: TimeDelta,
    pub behaviour: GraphBehaviour,
    pub requests: Mutex<Vec<String>>,
    /// Called after each page is served, with the number of pages served so far.
    pub after_page: Mutex<Option<Hook>>,
    pub throttle_after: Mutex<Option<usize>>,
    /// Requests being answered now, and the most there ever were at once.
    pub in_flight: std::sync::atomic::AtomicUsize,
    pub most_in_flight: std::sync::atomic::AtomicUsize,
}

impl FakeGraph {
    pub fn new(clock: Arc<ManualClock>) -> Self {
        Self {
            clock,
            versions: Mutex::new(Vec::new()),
            latency: TimeDelta::milliseconds(300),
            behaviour: GraphBehaviour::default(),
            requests: Mutex::new(Vec::new()),
            after_page: Mutex::new(None),
            throttle_after: Mutex::new(None),
            in_flight: Default::default(),
            most_in_flight: Default::default(),
        }
    }

    /// A version of alert `id`: created at its first version's time, with a service source and
    /// severity that vary by id (so a dense instant can be split by them).
    pub fn add(&self, id: &str, last_update: DateTime<Utc>, visible_at: DateTime<Utc>) -> String {
        let created = self
            .versions
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v.id == id)
            .map(|v| v.last_update)
            .min()
            .unwrap_or(last_update);
        let h = hash(id);
        let shape = Shape {
            created,
            service_source: SOURCES[(h % 6) as usize].into(),
            severity: SEVERITIES[(h / 6 % 4) as usize].into(),
            assigned_to: h.is_multiple_of(3).then(|| format!("analyst{}@contoso.com", h / 24 % 5)),
        };
        self.add_shaped(id, last_update, visible_at, &shape)
    }

    pub fn add_shaped(
        &self,
        id: &str,
        last_update: DateTime<Utc>,
        visible_at: DateTime<Utc>,
        shape: &Shape,
    ) -> String {
        let assigned = shape.assigned_to.as_ref().map_or_else(|| "null".to_owned(), |a| format!("\"{a}\""));
        let body = format!(
            r##"{{"id":"{id}","status":"new","severity":"{}","serviceSource":"{}","assignedTo":{assigned},"classification":null,"createdDateTime":"{}","lastUpdateDateTime":"{}","unknownFutureProperty":{{"x":[1,2]}},"evidence":[{{"@odata.type":"#microsoft.graph.security.brandNewEvidence","v":"{}"}}]}}"##,
            shape.severity,
            shape.service_source,
            format_filter_instant(shape.created),
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
        list.sort_by(|a, b| a.last_update.cmp(&b.last_update).then(a.id.cmp(&b.id)));
        list
    }
}

impl AlertSource for FakeGraph {
    async fn authenticate(
        &self,
        _deadline: Option<DateTime<Utc>>,
    ) -> Result<xdr_core::Identity, SourceError> {
        Ok(xdr_core::Identity { tenant: "0f6a3c21-5d0e-4c7b-9f2a-3b8d6e1c4a70".into() })
    }

    async fn fetch(
        &self,
        request: PageRequest<'_>,
        deadline: Option<DateTime<Utc>>,
    ) -> Result<FetchedPage, SourceError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now_in_flight = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.most_in_flight.fetch_max(now_in_flight, SeqCst);
        // Another request sent meanwhile is answered while this one is (see `most_in_flight`).
        tokio::task::yield_now().await;
        self.in_flight.fetch_sub(1, SeqCst);
        if deadline.is_some_and(|d| self.clock.now() + self.latency > d) {
            return Err(SourceError::new(SourceErrorKind::OutOfTime, "no time for another page"));
        }
        let served = self.requests();
        if self.throttle_after.lock().unwrap().is_some_and(|n| served >= n) {
            return Err(SourceError::new(SourceErrorKind::Throttled, "429 beyond the deadline"));
        }
        let list_request = match &request {
            PageRequest::Query(query) => {
                let mut params = HashMap::from([
                    ("$filter".to_owned(), query.filter()),
                    ("$top".to_owned(), query.top.to_string()),
                ]);
                if query.skip > 0 {
                    params.insert("$skip".into(), query.skip.to_string());
                }
                if query.count {
                    params.insert("$count".into(), "true".into());
                }
                ListRequest::new(params)
            }
            PageRequest::Next { link } => ListRequest::from_link(link),
        };
        self.clock.advance(self.latency);
        let now = self.clock.now();
        let list = Self::current(
            &self.versions.lock().unwrap(),
            now,
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
        );
        let refs: Vec<&Version> = list.iter().collect();
        let answer = answer(&refs, &list_request, &self.behaviour, "https://graph.fake");
        self.requests.lock().unwrap().push(format!("{request:?}"));
        let body = answer.map_err(|message| SourceError::new(SourceErrorKind::QueryRejected, message))?;
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
        Self::in_mode(GraphMode::Strict)
    }

    /// A world whose Graph pages as `mode` says.
    pub fn in_mode(mode: GraphMode) -> Self {
        let clock = Arc::new(ManualClock::new(t(T0)));
        let mut settings = SyncSettings::with_defaults();
        settings.page_size = 100;
        settings.max_pages_per_slice = 5;
        settings.backfill_start = Some(t(T0) - TimeDelta::days(2));
        let mut graph = FakeGraph::new(clock.clone());
        graph.behaviour = mode.behaviour();
        Self { graph, clock, store: MemoryStore::default(), sink: MemorySink::default(), settings, runs: 0 }
    }

    pub async fn run_with_deadline(
        &mut self,
        deadline: Option<DateTime<Utc>>,
    ) -> Result<RunSummary, EngineError> {
        self.runs += 1;
        let ports = Ports { source: &self.graph, store: &self.store, sink: &self.sink, clock: &*self.clock };
        run_sync(
            &self.settings,
            ports,
            RunRequest { run_id: format!("run{}", self.runs), deadline, identity: None },
        )
        .await
    }

    pub async fn run(&mut self) -> RunSummary {
        let summary = self.run_with_deadline(None).await.expect("run succeeds");
        assert!(summary.complete, "{summary:?}");
        summary
    }

    /// How many data objects were stored.
    pub fn data_objects(&self) -> usize {
        self.sink.objects().keys().filter(|key| key.starts_with(self.settings.layout.data_prefix())).count()
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
