//! The handlers with in-memory adapters: state, lease and objects in memory, Graph answered by
//! the simulated tenant's pure paging logic (strict mode) without HTTP. Milliseconds per test;
//! the end-to-end tests run the same handlers in the real binaries against moto.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use xdr_config::SyncConfig;
use xdr_core::backfill::{BackfillPorts, BackfillRequest, BackfillSettings, run_backfill};
use xdr_core::memory::{MemoryLease, MemorySink, MemoryStates};
use xdr_core::stream::{ALERTS, INCIDENTS, Stream};
use xdr_core::{
    AlertSource, FetchedPage, Identity, Lease, PageRequest, Ports, RunRequest, SourceCounts, SourceError,
    SourceErrorKind, SystemClock, run_sync,
};
use xdr_runtime::AppError;
use xdr_runtime::handler::{HandlerPorts, Invocation, Sources, handle_backfill, handle_sync};
use xdr_runtime::response::{BackfillOutcome, SyncAnswer, SyncOutcome};
use xdr_simulator::graph::{self, GraphMode, ListRequest, answer_for};
use xdr_simulator::{Activity, SimTenant, SimVersion};

const DOMAIN: &str = "contoso.onmicrosoft.com";

/// Graph's collection of one stream as the simulated tenant answers it, in memory, counting
/// what it is asked. The streams' sources share the tenant.
struct TenantSource {
    tenant: Arc<Mutex<SimTenant>>,
    stream: Stream,
    authentications: AtomicU64,
    requests: AtomicU64,
    refuse_credentials: bool,
    /// Graph answers 403 (the app lacks the stream's permission).
    forbidden: bool,
}

impl TenantSource {
    fn new(tenant: Arc<Mutex<SimTenant>>, stream: Stream) -> Self {
        Self {
            tenant,
            stream,
            authentications: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            refuse_credentials: false,
            forbidden: false,
        }
    }

    fn guid(&self) -> String {
        self.tenant.lock().unwrap().tenant_id.clone()
    }

    /// What Graph lists of this stream now.
    fn current(&self) -> Vec<SimVersion> {
        let tenant = self.tenant.lock().unwrap();
        if self.stream == INCIDENTS {
            tenant.current_incidents(Utc::now())
        } else {
            tenant.current_versions(Utc::now()).into_iter().cloned().collect()
        }
    }

    /// Every (id, lastUpdateDateTime) Graph lists now.
    fn listed_now(&self) -> Vec<(String, String)> {
        let mut listed: Vec<(String, String)> = self
            .current()
            .into_iter()
            .map(|v| (v.id.clone(), xdr_core::timeutil::format_filter_instant(v.last_update)))
            .collect();
        listed.sort();
        listed
    }
}

impl AlertSource for TenantSource {
    fn counts(&self) -> SourceCounts {
        SourceCounts {
            graph_requests: self.requests.load(Ordering::SeqCst),
            throttled_responses: 0,
            token_requests: self.authentications.load(Ordering::SeqCst),
            expand_fallbacks: 0,
        }
    }

    async fn authenticate(&self, _deadline: Option<DateTime<Utc>>) -> Result<Identity, SourceError> {
        self.authentications.fetch_add(1, Ordering::SeqCst);
        if self.refuse_credentials {
            return Err(SourceError::new(SourceErrorKind::Credentials, "invalid client secret"));
        }
        Ok(Identity { tenant: self.guid() })
    }

    async fn fetch(
        &self,
        request: PageRequest<'_>,
        _deadline: Option<DateTime<Utc>>,
    ) -> Result<FetchedPage, SourceError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if self.forbidden {
            return Err(SourceError::new(
                SourceErrorKind::Credentials,
                format!(
                    "Graph answered 403 Forbidden: the app lacks the application permission {}",
                    self.stream.permission
                ),
            ));
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
        // Oldest first, ties by id: the order `answer_for` pages from (and scrambles in strict mode).
        let mut current = self.current();
        current.sort_by(|a, b| a.last_update.cmp(&b.last_update).then_with(|| a.id.cmp(&b.id)));
        let listing: Vec<&SimVersion> = current.iter().collect();
        let collection = if self.stream == INCIDENTS { graph::INCIDENTS } else { graph::ALERTS_V2 };
        let body = answer_for(
            &listing,
            &list_request,
            &GraphMode::Strict.behaviour(),
            &collection,
            "https://graph.fake",
            None,
        )
        .map_err(|message| SourceError::new(SourceErrorKind::QueryRejected, message))?;
        Ok(FetchedPage { body: body.into_bytes(), request_id: None })
    }
}

struct World {
    sources: Sources<TenantSource>,
    states: MemoryStates,
    sink: MemorySink,
    lease: MemoryLease,
    config: SyncConfig,
}

impl World {
    /// A tenant of `alerts` alerts over the last two days (settled an hour ago), configured by
    /// its domain, as many users do.
    fn new(seed: u64, alerts: u64) -> Self {
        Self::serving(seed, alerts, "alerts")
    }

    /// The same, serving `streams` (`STREAMS`).
    fn serving(seed: u64, alerts: u64, streams: &str) -> Self {
        let now = Utc::now();
        let tenant = SimTenant::with_history(seed, now - TimeDelta::hours(1), TimeDelta::days(2), alerts);
        let tenant = Arc::new(Mutex::new(tenant));
        let start = (now - TimeDelta::days(3)).to_rfc3339();
        let config = SyncConfig::from_lookup(
            |name| match name {
                "TENANT_ID" => Some(DOMAIN.into()),
                "BACKFILL_START" => Some(start.clone()),
                "PAGE_SIZE" => Some("100".into()),
                "STREAMS" => Some(streams.into()),
                _ => None,
            },
            now,
        )
        .unwrap();
        let sources = Sources::new(vec![
            (ALERTS, TenantSource::new(Arc::clone(&tenant), ALERTS)),
            (INCIDENTS, TenantSource::new(tenant, INCIDENTS)),
        ]);
        Self {
            sources,
            states: MemoryStates::default(),
            sink: MemorySink::default(),
            lease: MemoryLease::default(),
            config,
        }
    }

    fn ports(
        &self,
    ) -> HandlerPorts<
        '_,
        TenantSource,
        impl Fn(&str) -> std::sync::Arc<xdr_core::memory::MemoryStore> + '_,
        MemorySink,
        MemoryLease,
        SystemClock,
    > {
        HandlerPorts {
            sources: &self.sources,
            state_for: |key: &str| self.states.store(key),
            sink: &self.sink,
            lease: &self.lease,
            clock: &SystemClock,
        }
    }

    fn source(&self) -> &TenantSource {
        self.sources.get(ALERTS).unwrap()
    }

    fn incidents(&self) -> &TenantSource {
        self.sources.get(INCIDENTS).unwrap()
    }

    fn source_mut(&mut self, stream: Stream) -> &mut TenantSource {
        self.sources.get_mut(stream).unwrap()
    }

    /// One sync invocation for `event`, answered as the Lambda answers it.
    async fn sync(&self, event: Value, id: &str) -> Result<SyncAnswer, AppError> {
        let runs = handle_sync(&self.config, self.ports(), &event, &invocation(id)).await?;
        SyncAnswer::from_runs(runs)
    }

    /// Every alert line written, as (id, lastUpdateDateTime), sorted, duplicates kept.
    fn written(&self) -> Vec<(String, String)> {
        self.written_under("defender-xdr/alerts/")
    }

    /// Every line written under `prefix`, as (id, lastUpdateDateTime), sorted, duplicates kept.
    fn written_under(&self, prefix: &str) -> Vec<(String, String)> {
        let mut lines = Vec::new();
        for (key, body) in self.sink.objects() {
            if !key.starts_with(prefix) {
                continue;
            }
            let mut text = String::new();
            flate2::read::MultiGzDecoder::new(&body[..]).read_to_string(&mut text).unwrap();
            for line in text.lines() {
                let value: Value = serde_json::from_str(line).unwrap();
                lines.push((
                    value["id"].as_str().unwrap().to_owned(),
                    value["lastUpdateDateTime"].as_str().unwrap().to_owned(),
                ));
            }
        }
        lines.sort();
        lines
    }

    fn produce(&self, activity: Activity) {
        self.source().tenant.lock().unwrap().produce(Utc::now(), activity);
    }
}

fn invocation(id: &str) -> Invocation {
    Invocation { request_id: id.into(), deadline: Some(Utc::now() + TimeDelta::minutes(5)) }
}

fn keys_of(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

fn distinct(mut lines: Vec<(String, String)>) -> Vec<(String, String)> {
    lines.sort();
    lines.dedup();
    lines
}

#[tokio::test]
async fn a_sync_answers_todays_fields_keyed_by_the_tokens_guid_and_authenticates_once() {
    let world = World::new(3, 300);
    let response = world.sync(json!({"source": "aws.events"}), "req-1").await.unwrap();
    let value = serde_json::to_value(&response).unwrap();
    assert_eq!(
        keys_of(&value),
        [
            "alerts_received",
            "alerts_written",
            "complete",
            "covered_until",
            "duplicates_skipped",
            "graph_requests",
            "instants_held",
            "instants_split",
            "newest_last_update",
            "objects",
            "pages",
            "partitions",
            "quarantined",
            "run_id",
            "slices_reread",
            "slices_split",
            "streams",
            "throttled_responses",
            "token_requests",
            "window",
        ]
    );
    assert_eq!(keys_of(&value["streams"]), ["alerts"], "one entry per stream served");
    assert_eq!(value["streams"]["alerts"]["complete"], json!(true));
    assert!(value["streams"]["alerts"].get("error").is_none());
    assert_eq!(value["complete"], json!(true));
    assert_eq!(value["token_requests"], json!(1), "one authentication per invocation");
    assert_eq!(world.source().authentications.load(Ordering::SeqCst), 1);
    assert!(value["run_id"].as_str().unwrap().ends_with("-req-1"));
    assert_eq!(value["graph_requests"].as_u64(), Some(world.source().requests.load(Ordering::SeqCst)));
    let guid = world.source().guid();
    assert_eq!(world.states.keys(), vec![format!("sync#{guid}#alerts")], "keyed by the GUID, not the domain");
    assert!(world.lease.holder(&format!("sync#{guid}#alerts")).is_none(), "the lease is released");
    assert_eq!(world.written(), world.source().listed_now(), "every version once");

    world.produce(Activity { new_alerts: 5, updates: 7, late: 0, bulk: 3 });
    let before = world.written();
    let second = world.sync(json!({}), "req-2").await.unwrap();
    let SyncOutcome::Ran(summary) = &second.primary.outcome else { panic!("{second:?}") };
    assert!(summary.complete);
    assert_eq!(summary.alerts_written, 12);
    let written = world.written();
    assert_eq!(written, distinct(written.clone()), "no duplicates");
    assert!(before.iter().all(|line| written.contains(line)));
    assert!(world.source().listed_now().iter().all(|line| written.contains(line)));
}

#[tokio::test]
async fn a_held_lease_is_an_answer_that_changes_nothing_also_an_earlier_releases() {
    let world = World::new(4, 50);
    let guid = world.source().guid();
    let until = Utc::now() + TimeDelta::minutes(3);
    for key in [format!("sync#{guid}#alerts"), format!("sync#{DOMAIN}")] {
        world.lease.acquire(&key, "other-run", until, Utc::now()).await.unwrap();
        let response = world.sync(json!({}), "req-1").await.unwrap();
        let value = serde_json::to_value(&response).unwrap();
        assert_eq!(
            keys_of(&value),
            [
                "alerts_written",
                "complete",
                "graph_requests",
                "objects",
                "stopped_because",
                "streams",
                "throttled_responses",
                "token_requests"
            ]
        );
        assert_eq!(value["complete"], json!(false));
        assert_eq!(value["alerts_written"], json!(0));
        assert_eq!(value["objects"], json!([]));
        assert_eq!(value["graph_requests"], json!(0));
        assert!(
            value["stopped_because"].as_str().unwrap().contains("another invocation (other-run)"),
            "{value}"
        );
        assert!(world.states.keys().is_empty() && world.sink.objects().is_empty(), "nothing written");
        assert_eq!(world.lease.holder(&key).unwrap().0, "other-run", "theirs kept");
        if key != format!("sync#{guid}#alerts") {
            assert!(world.lease.holder(&format!("sync#{guid}#alerts")).is_none(), "ours released");
        }
        world.lease.release(&key, "other-run").await.unwrap();
    }
    let ran = world.sync(json!({}), "req-2").await.unwrap();
    assert!(matches!(ran.primary.outcome, SyncOutcome::Ran(_)));
}

#[tokio::test]
async fn refused_credentials_change_nothing_not_even_the_lease() {
    let mut world = World::new(5, 20);
    world.source_mut(ALERTS).refuse_credentials = true;
    let error = world.sync(json!({}), "req-1").await.unwrap_err();
    assert_eq!(error.kind(), "CredentialsError");
    let bad =
        handle_backfill(&world.config, world.ports(), &json!({"start": "yesterday"}), &invocation("req-2"))
            .await;
    assert_eq!(bad.unwrap_err().kind(), "InvalidEventError");
    assert_eq!(
        world.source().authentications.load(Ordering::SeqCst),
        1,
        "a bad event is refused before signing in"
    );
    assert!(world.states.keys().is_empty() && world.sink.objects().is_empty());
}

/// What the first release wrote: its engine with its keys (`sync#{TENANT_ID}`), which the
/// store adapters write as they always did.
async fn sync_as_the_first_release(world: &World) {
    let legacy = world.config.keys(&world.source().guid()).1.remove(0);
    assert_eq!(legacy.sync(), format!("sync#{DOMAIN}"));
    let store = world.states.store(&legacy.sync());
    let ports = Ports { source: world.source(), store: &store, sink: &world.sink, clock: &SystemClock };
    let run = RunRequest { run_id: "first".into(), deadline: None, identity: None };
    let summary = run_sync(&world.config.engine, ports, run).await.unwrap();
    assert!(summary.complete);
}

#[tokio::test]
async fn the_first_releases_state_is_carried_over_without_rereading_or_skipping() {
    let world = World::new(6, 400);
    sync_as_the_first_release(&world).await;
    let first = world.written();
    assert_eq!(first, world.source().listed_now());
    let legacy_state = world.states.store(&format!("sync#{DOMAIN}")).state().unwrap();

    world.produce(Activity { new_alerts: 8, updates: 6, late: 0, bulk: 2 });
    let response = world.sync(json!({}), "req-1").await.unwrap();
    let SyncOutcome::Ran(summary) = &response.primary.outcome else { panic!("{response:?}") };
    assert!(summary.complete);
    assert_eq!(summary.alerts_written, 14, "only what changed since the first release's last run");
    let written = world.written();
    assert_eq!(written, distinct(written.clone()), "no duplicates");
    assert!(world.source().listed_now().iter().all(|line| written.contains(line)), "nothing skipped");
    let guid = world.source().guid();
    let adopted = world.states.store(&format!("sync#{guid}#alerts")).state().unwrap();
    assert_eq!(adopted.floor, legacy_state.floor);
    assert_eq!(adopted.lineage, legacy_state.lineage, "the same sync, so its tenant marker still matches");
    assert_eq!(
        world.states.store(&format!("sync#{DOMAIN}")).state().unwrap().cursor,
        legacy_state.cursor,
        "the earlier item is left as it was"
    );

    // The earlier items deleted (as an operator may): the carried-over state stands on its own,
    // its dedup memory included.
    world.states.remove(&format!("sync#{DOMAIN}"));
    let again = world.sync(json!({}), "req-2").await.unwrap();
    let SyncOutcome::Ran(summary) = &again.primary.outcome else { panic!("{again:?}") };
    assert!(summary.complete && summary.alerts_written == 0, "{summary:?}");
    assert_eq!(world.written(), written);
}

#[tokio::test]
async fn an_in_progress_backfill_of_the_first_release_goes_on_from_its_ledgers() {
    let world = World::new(7, 600);
    let guid = world.source().guid();
    let legacy = world.config.keys(&guid).1.remove(0);
    let day = |n: i64| (Utc::now() - TimeDelta::days(n)).date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    // The first release backfilled [3 days ago, 1 day ago), with its keys.
    let early = BackfillRequest { start: day(3), end: Some(day(1)), stream: xdr_core::stream::ALERTS };
    let live = world.states.store("no-live-state");
    let ports = BackfillPorts {
        source: world.source(),
        live_state: &live,
        state_for: |key: &str| world.states.store(key),
        sink: &world.sink,
        clock: &SystemClock,
    };
    let settings = BackfillSettings { sync: world.config.engine.clone(), concurrency: 2 };
    let run = RunRequest { run_id: "legacy".into(), deadline: None, identity: None };
    let outcome = run_backfill(&settings, &legacy, &[], &early, ports, run).await.unwrap();
    assert!(outcome.complete());
    let first = world.written();
    assert!(!first.is_empty());
    assert!(
        world
            .states
            .keys()
            .iter()
            .any(|key| key == &format!("backfill#{DOMAIN}#day#{}", day(2).format("%Y-%m-%d")))
    );

    // This release resumes the same window: carried over, complete, nothing read again.
    let event = json!({"start": day(3).to_rfc3339(), "end": day(1).to_rfc3339()});
    let same = handle_backfill(&world.config, world.ports(), &event, &invocation("req-1")).await.unwrap();
    let value = serde_json::to_value(&same).unwrap();
    assert_eq!(
        keys_of(&value),
        [
            "alerts_written",
            "alerts_written_total",
            "complete",
            "covered",
            "duplicates_skipped",
            "graph_requests",
            "instants_split",
            "objects",
            "objects_written_total",
            "pages",
            "partitions",
            "parts",
            "progress",
            "quarantined",
            "requested",
            "slices_reread",
            "slices_split",
            "throttled_responses",
            "token_requests",
        ]
    );
    assert_eq!(value["complete"], json!(true), "{value}");
    assert_eq!(value["parts"], json!({"total": 2, "complete": 2}));
    assert_eq!(value["alerts_written"], json!(0));
    assert_eq!(value["alerts_written_total"].as_u64(), Some(first.len() as u64));
    assert_eq!(world.written(), first);

    // A wider window goes on from the carried-over day ledgers: only the new days are read.
    let wider = json!({"start": day(3).to_rfc3339(), "end": Utc::now().to_rfc3339()});
    let response = handle_backfill(&world.config, world.ports(), &wider, &invocation("req-2")).await.unwrap();
    let BackfillOutcome::Ran(report) = &response.outcome else { panic!("{response:?}") };
    assert!(report.complete());
    let written = world.written();
    assert_eq!(written, distinct(written.clone()), "no duplicates");
    assert!(world.source().listed_now().iter().all(|line| written.contains(line)), "nothing skipped");
    let keys = world.states.keys();
    assert!(keys.contains(&format!("backfill#{guid}#alerts#day#{}", day(2).format("%Y-%m-%d"))), "{keys:?}");
    assert_eq!(response.requests.token_requests, 1, "one authentication for every part");
}

#[tokio::test]
async fn both_streams_sync_on_one_sign_in_each_with_its_own_state_and_prefix() {
    let world = World::serving(8, 300, "alerts,incidents");
    let guid = world.source().guid();
    let answer = world.sync(json!({}), "req-1").await.unwrap();
    let value = serde_json::to_value(&answer).unwrap();
    assert_eq!(keys_of(&value["streams"]), ["alerts", "incidents"]);
    assert_eq!(value["complete"], json!(true), "{value}");
    assert_eq!(value["streams"]["incidents"]["complete"], json!(true));
    assert_eq!(
        value["alerts_written"], value["streams"]["alerts"]["written"],
        "the top level is the alerts'"
    );
    assert_eq!(world.source().authentications.load(Ordering::SeqCst), 1, "one sign-in for both");
    assert_eq!(world.incidents().authentications.load(Ordering::SeqCst), 0);
    assert_eq!(world.states.keys(), vec![format!("sync#{guid}#alerts"), format!("sync#{guid}#incidents")]);
    assert_eq!(world.written(), world.source().listed_now());
    let incidents = world.written_under("defender-xdr/incidents/");
    assert!(incidents.len() > 50, "more than one page of incidents: {}", incidents.len());
    assert_eq!(incidents, world.incidents().listed_now(), "every incident version once");

    world.produce(Activity { new_alerts: 7, updates: 9, late: 1, bulk: 4 });
    let second = world.sync(json!({}), "req-2").await.unwrap();
    let value = serde_json::to_value(&second).unwrap();
    assert_eq!(value["complete"], json!(true));
    assert!(value["streams"]["incidents"]["written"].as_u64().unwrap() > 0, "the changed incidents: {value}");
    let written = world.written_under("defender-xdr/incidents/");
    assert_eq!(written, distinct(written.clone()), "no duplicates");
    assert!(world.incidents().listed_now().iter().all(|line| written.contains(line)), "nothing skipped");
}

#[tokio::test]
async fn an_event_naming_a_stream_syncs_that_one_only_and_a_bad_name_is_refused() {
    let world = World::serving(9, 120, "alerts,incidents");
    let answer = world.sync(json!({"stream": "incidents"}), "req-1").await.unwrap();
    let value = serde_json::to_value(&answer).unwrap();
    assert_eq!(keys_of(&value["streams"]), ["incidents"]);
    assert_eq!(value["complete"], json!(true));
    assert_eq!(world.source().requests.load(Ordering::SeqCst), 0, "no request for alerts");
    assert!(world.written().is_empty());
    assert_eq!(world.written_under("defender-xdr/incidents/"), world.incidents().listed_now());
    for bad in [json!({"stream": "incident"}), json!({"stream": 7})] {
        let error = world.sync(bad, "req-2").await.unwrap_err();
        assert_eq!(error.kind(), "InvalidEventError");
        assert!(error.to_string().contains("alerts, incidents"), "{error}");
    }

    let alerts_only = World::serving(9, 20, "alerts");
    let error = alerts_only.sync(json!({"stream": "incidents"}), "req-3").await.unwrap_err();
    assert_eq!(error.kind(), "InvalidEventError");
    assert!(error.to_string().contains("STREAMS"), "{error}");
    let error = handle_backfill(
        &alerts_only.config,
        alerts_only.ports(),
        &json!({"start": (Utc::now() - TimeDelta::days(1)).to_rfc3339(), "stream": "incidents"}),
        &invocation("req-4"),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), "InvalidEventError");
    assert_eq!(alerts_only.source().authentications.load(Ordering::SeqCst), 0, "refused before signing in");
    assert!(alerts_only.states.keys().is_empty() && alerts_only.sink.objects().is_empty());
}

#[tokio::test]
async fn a_stream_without_its_permission_fails_alone_and_is_tried_again() {
    let mut world = World::serving(10, 200, "alerts,incidents");
    world.source_mut(INCIDENTS).forbidden = true;
    let answer = world.sync(json!({}), "req-1").await.unwrap();
    let value = serde_json::to_value(&answer).unwrap();
    assert_eq!(value["streams"]["alerts"]["complete"], json!(true));
    assert_eq!(value["streams"]["incidents"]["complete"], json!(false));
    let error = value["streams"]["incidents"]["error"].as_str().unwrap();
    assert!(error.contains("SecurityIncident.Read.All"), "{error}");
    assert_eq!(
        value["streams"]["incidents"]["graph_requests"],
        json!(1),
        "a failed stream's requests count too"
    );
    assert_eq!(value["complete"], json!(false), "complete only when every stream is");
    assert!(value["stopped_because"].as_str().unwrap().contains("incidents"), "{value}");
    assert_eq!(world.written(), world.source().listed_now(), "the alerts are all there");
    assert!(world.written_under("defender-xdr/incidents/").is_empty());

    // Granted: the next run reads the incidents from the start of their history.
    world.source_mut(INCIDENTS).forbidden = false;
    let answer = world.sync(json!({}), "req-2").await.unwrap();
    assert!(serde_json::to_value(&answer).unwrap()["complete"] == json!(true));
    assert_eq!(world.written_under("defender-xdr/incidents/"), world.incidents().listed_now());

    // When alerts fail, the invocation fails with their error, but incidents still ran.
    let mut world = World::serving(11, 100, "alerts,incidents");
    world.source_mut(ALERTS).forbidden = true;
    let error = world.sync(json!({}), "req-3").await.unwrap_err();
    assert_eq!(error.kind(), "CredentialsError");
    assert_eq!(world.written_under("defender-xdr/incidents/"), world.incidents().listed_now());
}

#[tokio::test]
async fn a_stream_enabled_later_starts_where_a_first_run_starts_not_where_the_other_is() {
    let world = World::serving(12, 150, "alerts");
    world.sync(json!({}), "req-1").await.unwrap();
    // The same tenant and stores, now serving incidents too.
    let config = World::serving(12, 1, "alerts,incidents").config;
    let later = World { config, ..world };
    let answer = later.sync(json!({}), "req-2").await.unwrap();
    let value = serde_json::to_value(&answer).unwrap();
    assert_eq!(value["streams"]["alerts"]["written"], json!(0), "alerts go on from their cursor");
    assert_eq!(
        later.written_under("defender-xdr/incidents/"),
        later.incidents().listed_now(),
        "incidents read from BACKFILL_START"
    );
}

#[tokio::test]
async fn incidents_are_backfilled_on_their_own_keys() {
    let world = World::serving(13, 300, "alerts,incidents");
    let guid = world.source().guid();
    let start = (Utc::now() - TimeDelta::days(3)).date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let event = json!({"start": start.to_rfc3339(), "stream": "incidents"});
    let response = handle_backfill(&world.config, world.ports(), &event, &invocation("req-1")).await.unwrap();
    let BackfillOutcome::Ran(report) = &response.outcome else { panic!("{response:?}") };
    assert!(report.complete());
    assert_eq!(world.source().requests.load(Ordering::SeqCst), 0);
    assert!(world.written().is_empty());
    assert_eq!(world.written_under("defender-xdr/incidents/"), world.incidents().listed_now());
    let keys = world.states.keys();
    assert!(keys.iter().all(|key| key.starts_with(&format!("backfill#{guid}#incidents#"))), "{keys:?}");
}
