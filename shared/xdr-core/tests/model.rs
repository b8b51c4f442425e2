//! Model-based test of the engine, in a Graph paging mode drawn per case: random interleavings of alert arrivals, updates, late
//! visibility (up to the overlap), clock moves, runs cut short by deadlines, and crashes at any
//! state write or object put. After every scenario, each version that was visible (and not yet
//! superseded) for the whole of some completed run is written exactly once, nothing is written
//! twice, and every line is a version exactly as Graph sent it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test target: a panic is a failed test

mod common;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use common::{FakeGraph, Version, World};
use proptest::prelude::*;
use xdr_core::Clock;
use xdr_simulator::graph::GraphMode;

#[derive(Debug, Clone)]
enum Op {
    /// New alerts stamped `age` seconds ago, shown `lateness` seconds after their stamp.
    Arrive {
        count: u8,
        age: u16,
        lateness: u16,
    },
    /// A new version of an existing alert.
    Update {
        pick: u16,
        age: u16,
        lateness: u16,
    },
    Advance {
        seconds: u16,
    },
    /// A run, maybe cut by a deadline (in pages), maybe crashing at a state save or a put.
    Run {
        deadline_pages: Option<u8>,
        crash: Option<Crash>,
    },
}

#[derive(Debug, Clone, Copy)]
enum Crash {
    Save(u8),
    Put(u8),
}

const OVERLAP_SECONDS: u16 = 15 * 60;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u8..40, 0u16..600, 0u16..=OVERLAP_SECONDS).prop_map(|(count, age, lateness)| Op::Arrive { count, age, lateness }),
        3 => (any::<u16>(), 0u16..300, 0u16..=OVERLAP_SECONDS).prop_map(|(pick, age, lateness)| Op::Update { pick, age, lateness }),
        2 => (0u16..1800).prop_map(|seconds| Op::Advance { seconds }),
        3 => (proptest::option::of(1u8..6), proptest::option::of(prop_oneof![
            (0u8..12).prop_map(Crash::Save),
            (0u8..6).prop_map(Crash::Put),
        ])).prop_map(|(deadline_pages, crash)| Op::Run { deadline_pages, crash }),
    ]
}

/// Bodies of the versions Graph lists at `now`.
fn listed(graph: &FakeGraph, now: DateTime<Utc>) -> BTreeSet<String> {
    let versions = graph.versions.lock().unwrap();
    let all = DateTime::<Utc>::MIN_UTC;
    let end = DateTime::<Utc>::MAX_UTC;
    FakeGraph::current(&versions, now, all, end).into_iter().map(|v| v.body).collect()
}

async fn scenario(mode: GraphMode, in_flight: usize, ops: Vec<Op>) {
    let mut world = World::in_mode(mode);
    world.settings.slices_in_flight = in_flight;
    world.settings.max_object_bytes = 6 * 1024;
    world.settings.page_size = 20;
    world.settings.max_pages_per_slice = 4;
    let mut next_alert = 0u32;
    let mut required: BTreeSet<String> = BTreeSet::new();

    let run = |world: &mut World, deadline_pages: Option<u8>, crash: Option<Crash>| {
        let deadline = deadline_pages.map(|pages| {
            world.clock.now() + world.settings.finish_reserve + world.graph.latency * i32::from(pages)
        });
        match crash {
            Some(Crash::Save(n)) => world.store.fail_after_saves(usize::from(n)),
            Some(Crash::Put(n)) => world.sink.fail_puts_after(usize::from(n)),
            None => {}
        }
        deadline
    };

    for op in ops {
        let now = world.clock.now();
        match op {
            Op::Arrive { count, age, lateness } => {
                for _ in 0..count {
                    let stamp = now
                        - TimeDelta::seconds(i64::from(age))
                        - TimeDelta::nanoseconds(i64::from(next_alert) * 100);
                    world.graph.add(
                        &format!("alert-{next_alert:05}"),
                        stamp,
                        stamp + TimeDelta::seconds(i64::from(lateness)),
                    );
                    next_alert += 1;
                }
            }
            Op::Update { pick, age, lateness } => {
                if next_alert == 0 {
                    continue;
                }
                let id = format!("alert-{:05}", u32::from(pick) % next_alert);
                let latest = world
                    .graph
                    .versions
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|v| v.id == id)
                    .map(|v| v.last_update)
                    .max();
                let stamp = now - TimeDelta::seconds(i64::from(age));
                if latest.is_some_and(|latest| stamp > latest) {
                    world.graph.add(&id, stamp, stamp + TimeDelta::seconds(i64::from(lateness)));
                }
            }
            Op::Advance { seconds } => world.clock.advance(TimeDelta::seconds(i64::from(seconds))),
            Op::Run { deadline_pages, crash } => {
                let deadline = run(&mut world, deadline_pages, crash);
                let before = listed(&world.graph, world.clock.now());
                let result = world.run_with_deadline(deadline).await;
                let after = listed(&world.graph, world.clock.now());
                world.store.heal();
                world.sink.heal();
                if let Ok(summary) = result
                    && summary.complete
                {
                    required.extend(before.intersection(&after).cloned());
                }
                world.clock.advance(TimeDelta::seconds(1));
            }
        }
    }
    // Let every late version show, then one clean run to the end.
    world.clock.advance(TimeDelta::seconds(i64::from(OVERLAP_SECONDS) + 60));
    loop {
        let before = listed(&world.graph, world.clock.now());
        let summary = world.run_with_deadline(None).await.expect("a healthy run succeeds");
        let after = listed(&world.graph, world.clock.now());
        if summary.complete {
            required.extend(before.intersection(&after).cloned());
            break;
        }
    }

    let all_bodies: BTreeSet<String> =
        world.graph.versions.lock().unwrap().iter().map(|v: &Version| v.body.clone()).collect();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (_, line) in world.lines() {
        assert!(all_bodies.contains(&line), "a line is not a version as Graph sent it: {line:.120}");
        *counts.entry(line).or_default() += 1;
    }
    let duplicated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).map(|(line, _)| line.clone()).collect();
    assert!(duplicated.is_empty(), "{} lines written twice, e.g. {:.120}", duplicated.len(), duplicated[0]);
    let lost: Vec<_> = required.iter().filter(|body| !counts.contains_key(*body)).collect();
    assert!(lost.is_empty(), "{} versions lost, e.g. {:.160}", lost.len(), lost[0]);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(96),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_observable_version_is_written_exactly_once(
        mode in proptest::sample::select(GraphMode::ALL.to_vec()),
        in_flight in 1usize..=3,
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(scenario(mode, in_flight, ops));
    }
}
