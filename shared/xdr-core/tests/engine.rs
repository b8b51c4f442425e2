//! The engine against an in-memory Graph that behaves like the real one where it matters:
//! a live result set, offset paging, newest first, late visibility, optional `$count`.

mod common;

use std::sync::{Arc, Mutex};

use chrono::TimeDelta;
use common::*;
use xdr_core::timeutil::format_filter_instant;
use xdr_core::{Clock, EngineError, Ports, RunRequest, run_sync};

fn ids(prefix: &str, n: usize) -> impl Iterator<Item = String> + '_ {
    (0..n).map(move |i| format!("{prefix}-{i:05}"))
}

#[tokio::test]
async fn pages_through_shared_timestamps_on_page_boundaries() {
    let mut world = World::new();
    let base = t(T0) - TimeDelta::hours(30);
    let mut expected = Vec::new();
    // 730 alerts on one instant (more than one slice may hold), groups of 150 around it.
    let shared = base + TimeDelta::nanoseconds(1_234_500);
    for id in ids("same", 730) {
        expected.push(world.graph.add(&id, shared, shared));
    }
    for (i, id) in ids("group", 900).enumerate() {
        let at = base + TimeDelta::minutes((i / 150) as i64 * 7);
        expected.push(world.graph.add(&id, at, at));
    }
    let summary = world.run().await;
    world.assert_exactly(&expected);
    assert_eq!(summary.alerts_written, expected.len() as u64);
    assert!(summary.slices_resized > 0, "the window had to be split");

    // Re-running writes nothing new.
    world.clock.advance(TimeDelta::minutes(5));
    let again = world.run().await;
    assert_eq!(again.alerts_written, 0);
    assert!(again.objects.is_empty());
    world.assert_exactly(&expected);
}

#[tokio::test]
async fn without_count_slices_are_split_by_page_limit() {
    let mut world = World::new();
    world.graph.with_count = false;
    let mut expected = Vec::new();
    for (i, id) in ids("a", 1800).enumerate() {
        let at = t(T0) - TimeDelta::minutes(2000) + TimeDelta::seconds(i as i64 * 60);
        expected.push(world.graph.add(&id, at, at));
    }
    world.run().await;
    world.assert_exactly(&expected);
}

#[tokio::test]
async fn a_version_visible_ten_minutes_late_is_captured_once() {
    let mut world = World::new();
    let mut expected =
        vec![world.graph.add("early", t(T0) - TimeDelta::hours(1), t(T0) - TimeDelta::hours(1))];
    world.run().await;
    // Updated at T0+1m, but Graph only shows it from T0+11m.
    let late_at = t(T0) + TimeDelta::minutes(1);
    expected.push(world.graph.add("late", late_at, late_at + TimeDelta::minutes(10)));
    for minutes in [5, 5, 5, 5, 5] {
        world.clock.advance(TimeDelta::minutes(minutes));
        world.run().await;
    }
    world.assert_exactly(&expected);
}

#[tokio::test]
async fn an_update_is_written_as_a_new_line() {
    let mut world = World::new();
    let created = t(T0) - TimeDelta::hours(3);
    let mut expected = vec![world.graph.add("alert", created, created)];
    world.run().await;
    world.clock.advance(TimeDelta::minutes(5));
    let resolved = world.clock.now() - TimeDelta::seconds(30);
    expected.push(world.graph.add("alert", resolved, resolved));
    let summary = world.run().await;
    assert_eq!(summary.alerts_written, 1);
    world.assert_exactly(&expected);
}

#[tokio::test]
async fn first_run_without_backfill_reads_nothing_from_the_past() {
    let mut world = World::new();
    world.settings.backfill_start = None;
    world.graph.add("old", t(T0) - TimeDelta::minutes(5), t(T0) - TimeDelta::minutes(5));
    let first = world.run().await;
    assert_eq!(first.alerts_written, 0);
    world.clock.advance(TimeDelta::minutes(5));
    let fresh = world.clock.now() - TimeDelta::minutes(1);
    let expected = vec![world.graph.add("new", fresh, fresh)];
    world.clock.advance(TimeDelta::minutes(20));
    world.run().await;
    world.assert_exactly(&expected);
}

/// Builds a world with enough data for several objects per run.
fn busy_world() -> (World, Vec<String>) {
    let mut world = World::new();
    world.settings.max_object_bytes = 8 * 1024;
    let mut expected = Vec::new();
    for (i, id) in ids("busy", 400).enumerate() {
        let at = t(T0) - TimeDelta::hours(40) + TimeDelta::minutes(i as i64 * 6);
        expected.push(world.graph.add(&id, at, at));
    }
    (world, expected)
}

#[tokio::test]
async fn a_crash_at_any_state_write_loses_and_duplicates_nothing() {
    let (mut probe, _) = busy_world();
    probe.run().await;
    let saves = probe.store.saves();
    assert!(saves > 6, "expected several objects, got {saves} saves");
    for crash_at in 0..saves {
        let (mut world, expected) = busy_world();
        world.store.fail_after_saves(crash_at);
        let error = world.run_with_deadline(None).await.expect_err("the injected failure stops the run");
        assert!(matches!(error, EngineError::State(_)), "{error}");
        world.store.heal();
        world.clock.advance(TimeDelta::minutes(5));
        let recovered = world.run().await;
        if crash_at % 2 == 1 {
            assert!(recovered.recovered.is_some(), "crash after the put at save {crash_at} is recovered");
        }
        world.assert_exactly(&expected);
        let state = world.store.state().unwrap();
        assert_eq!(state.written_alerts, expected.len() as u64, "lifetime totals count each version once");
        assert_eq!(state.written_objects as usize, world.sink.objects().len());
    }
}

#[tokio::test]
async fn a_failed_put_at_any_point_loses_and_duplicates_nothing() {
    for failing_put in 0..6 {
        let (mut world, expected) = busy_world();
        world.sink.fail_puts_after(failing_put);
        let error = world.run_with_deadline(None).await.expect_err("the put failure stops the run");
        assert_eq!(error.kind(), "OutputError");
        world.sink.heal();
        world.clock.advance(TimeDelta::minutes(5));
        world.run().await;
        world.assert_exactly(&expected);
    }
}

#[tokio::test]
async fn a_deadline_stops_early_and_the_next_runs_finish() {
    let (mut world, expected) = busy_world();
    world.settings.max_object_bytes = 1024 * 1024;
    let mut incomplete = 0;
    loop {
        // Room for about three pages per run.
        let deadline = world.clock.now() + world.settings.finish_reserve + TimeDelta::milliseconds(1000);
        let summary = world.run_with_deadline(Some(deadline)).await.unwrap();
        if summary.complete {
            break;
        }
        incomplete += 1;
        assert!(summary.stopped_because.as_deref().unwrap_or("").starts_with("deadline"), "{summary:?}");
        assert!(incomplete < 50, "no progress");
        world.clock.advance(TimeDelta::seconds(30));
    }
    assert!(incomplete >= 2, "the deadline cut at least two runs short");
    world.assert_exactly(&expected);
}

#[tokio::test]
async fn throttling_beyond_the_deadline_saves_progress_and_reports_more_remains() {
    let (mut world, expected) = busy_world();
    *world.graph.throttle_after.lock().unwrap() = Some(3);
    let summary = world.run_with_deadline(None).await.unwrap();
    assert!(!summary.complete);
    assert!(summary.stopped_because.unwrap().starts_with("throttled"));
    *world.graph.throttle_after.lock().unwrap() = None;
    world.run().await;
    world.assert_exactly(&expected);
}

#[tokio::test]
async fn an_alert_updated_between_pages_does_not_hide_another() {
    let (mut world, _) = busy_world();
    // After the second page, the newest alert read so far is updated: it leaves the window and
    // every later alert shifts one place toward the front.
    let updated = Arc::new(Mutex::new(None));
    let record = updated.clone();
    *world.graph.after_page.lock().unwrap() = Some(Box::new(move |versions, served, now| {
        if served == 2 {
            let mut body = versions[399].body.clone();
            body = body.replace("\"status\":\"new\"", "\"status\":\"resolved\"");
            let old = format_filter_instant(versions[399].last_update);
            body = body.replace(&old, &format_filter_instant(now));
            versions.push(Version {
                id: versions[399].id.clone(),
                last_update: now,
                visible_at: now,
                body: body.clone(),
            });
            *record.lock().unwrap() = Some(body);
        }
    }));
    world.run().await;
    world.clock.advance(TimeDelta::minutes(5));
    world.run().await;
    let all: Vec<String> = world.graph.versions.lock().unwrap().iter().map(|v| v.body.clone()).collect();
    assert!(updated.lock().unwrap().is_some());
    world.assert_exactly(&all);
}

#[tokio::test]
async fn records_without_identity_are_quarantined_not_lost() {
    let mut world = World::new();
    let at = t(T0) - TimeDelta::hours(1);
    let good = world.graph.add("good", at, at);
    world.graph.versions.lock().unwrap().push(Version {
        id: "no-id".into(),
        last_update: at,
        visible_at: at,
        body: r#"{"status":"new","lastUpdateDateTime":"2026-11-28T05:00:00Z"}"#.into(),
    });
    let summary = world.run().await;
    assert_eq!(summary.quarantined, 1);
    world.assert_exactly(&[good]);
    let quarantine: Vec<_> = world
        .sink
        .objects()
        .into_keys()
        .filter(|key| key.starts_with(world.settings.layout.quarantine_prefix()))
        .collect();
    assert_eq!(quarantine.len(), 1);
}

#[tokio::test]
async fn two_overlapping_runs_never_both_write() {
    let (world, expected) = busy_world();
    let ports =
        || Ports { source: &world.graph, store: &world.store, sink: &world.sink, clock: &*world.clock };
    let request = |id: &str| RunRequest { run_id: id.into(), deadline: None };
    let (a, b) = tokio::join!(
        run_sync(&world.settings, ports(), request("a")),
        run_sync(&world.settings, ports(), request("b"))
    );
    let failures: Vec<_> = [&a, &b].into_iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(failures.len(), 1, "exactly one run loses: {a:?} {b:?}");
    assert_eq!(failures[0].kind(), "StateConflictError");
    world.assert_exactly(&expected);
}

#[tokio::test]
async fn a_bounded_window_writes_only_its_range_and_then_nothing() {
    let (mut world, _) = busy_world();
    let start = t(T0) - TimeDelta::hours(30);
    let end = t(T0) - TimeDelta::hours(10);
    world.settings.backfill_start = Some(start);
    world.settings.window_end = Some(end);
    let expected: Vec<String> = world
        .graph
        .versions
        .lock()
        .unwrap()
        .iter()
        .filter(|v| v.last_update >= start && v.last_update < end)
        .map(|v| v.body.clone())
        .collect();
    assert!(expected.len() > 100);
    let summary = world.run().await;
    assert_eq!(summary.progress, Some(1.0));
    world.assert_exactly(&expected);
    world.clock.advance(TimeDelta::hours(1));
    let again = world.run().await;
    assert_eq!(again.alerts_written, 0);
    assert!(again.objects.is_empty());
    world.assert_exactly(&expected);
}

/// A long backlog in one run: open objects hold the cursor back, and the dedup memory reaches
/// back to the overlap before the cursor. Without a bound the state grows with the objects (on
/// AWS, past DynamoDB's 400 KB item, and every run would then fail). With it, it stays small.
#[tokio::test]
async fn a_long_backlog_keeps_the_state_small() {
    async fn largest_state(max_remembered_versions: usize) -> usize {
        let mut world = World::new();
        world.settings.max_object_records = 4_000;
        world.settings.max_remembered_versions = max_remembered_versions;
        let mut expected = Vec::new();
        // 12,000 versions in 12 hours of one day: large objects fill slowly, slice after slice.
        let start = t("2026-11-27T02:00:00Z");
        for (i, id) in ids("backlog", 12_000).enumerate() {
            let at = start + TimeDelta::milliseconds(i as i64 * 3_600);
            expected.push(world.graph.add(&id, at, at));
        }
        world.run().await;
        world.assert_exactly(&expected);
        world.store.largest_state_bytes()
    }
    let bounded = largest_state(1_000).await;
    let unbounded = largest_state(usize::MAX).await;
    assert!(unbounded > 2 * bounded, "bounded {bounded} bytes, unbounded {unbounded} bytes");
}
