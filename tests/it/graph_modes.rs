//! The reduced matrix over real HTTP: the Graph client and engine against the simulated tenant in
//! every paging mode (no nextLink, `$skip` links capped at 500, `$skiptoken`, no `@odata.count`,
//! `$top` clamped, the textbook Graph), with a bulk job of 5,000 versions at one instant, updates
//! and late versions. The fault suite through the real binaries runs in the strict mode; the full
//! matrix is `bash scripts/test-graph-modes.sh`.

use chrono::{TimeDelta, Utc};
use xdr_simulator::{Activity, Fault, GraphMode, SimOptions, SimTenant};
use xdr_tests::{Harness, assert_exactly};

fn settled_tenant(seed: u64, alerts: u64) -> SimTenant {
    SimTenant::with_history(seed, Utc::now() - TimeDelta::hours(1), TimeDelta::days(3), alerts)
}

/// A tenant with a bulk job: 5,000 alerts created at one 100 ns instant, among ordinary history.
fn tenant_with_bulk_job(seed: u64) -> SimTenant {
    let mut tenant = settled_tenant(seed, 300);
    let at = Utc::now() - TimeDelta::hours(5) + TimeDelta::nanoseconds(7_654_300);
    for _ in 0..5_000 {
        tenant.add_alert(at, TimeDelta::zero());
    }
    tenant
}

#[tokio::test]
async fn initial_and_incremental_syncs_with_a_bulk_instant_lose_and_duplicate_nothing_in_every_mode() {
    for mode in GraphMode::ALL {
        let mut harness = Harness::start(tenant_with_bulk_job(61), SimOptions::mode(mode)).await;
        harness.set("PAGE_SIZE", "1000");
        let mut expected = harness.visible_now();
        let first = harness.sync().await;
        assert_exactly(&harness.data_lines(), &expected);
        // Only `$skiptoken` pages reach past the `$skip` cap; everywhere else the instant is split.
        let split = u64::from(mode != GraphMode::SkipToken);
        assert_eq!(first.instants_split, split, "{mode}: the bulk instant was split or paged through");
        let page = mode.behaviour().max_top.min(1000);
        let pages_needed = expected.len().div_ceil(page) as u64;
        assert!(
            first.pages < pages_needed * 4 + 40,
            "{mode}: {} requests for {} versions",
            first.pages,
            expected.len()
        );

        // The tenant moves on: another bulk update at one instant, updates, late versions.
        harness.sim.with_tenant(|t| {
            t.produce(Utc::now(), Activity { new_alerts: 40, updates: 900, late: 5, bulk: 700 })
        });
        expected.extend(harness.visible_now());
        expected.sort();
        expected.dedup();
        harness.sync().await;
        assert_exactly(&harness.data_lines(), &expected);
        let idle = harness.sync().await;
        assert_eq!(idle.alerts_written, 0, "{mode}");
    }
}

/// Small pages, where nextLinks within the `$skip` cap are safe to follow: each mode still
/// reads each version once, and nothing ever asks for a `$skip` beyond the cap.
#[tokio::test]
async fn small_pages_never_ask_beyond_the_skip_cap_in_any_mode() {
    for mode in GraphMode::ALL {
        let mut tenant = settled_tenant(67, 500);
        let at = Utc::now() - TimeDelta::hours(7) + TimeDelta::nanoseconds(300);
        for _ in 0..900 {
            tenant.add_alert(at, TimeDelta::zero());
        }
        let harness = Harness::start(tenant, SimOptions::mode(mode)).await;
        let expected = harness.visible_now();
        harness.sync().await;
        assert_exactly(&harness.data_lines(), &expected);
        let refused =
            harness.sim.requests().iter().filter(|r| r.endpoint == "alerts" && r.status == 400).count();
        assert_eq!(refused, 0, "{mode}: no request was refused");
    }
}

/// HTTP 206 with a `Warning` header: one provider behind the API failed and its alerts are
/// missing. Never taken as a complete page: retried, and if it persists, a failed run that keeps
/// the cursor, after which the next run writes everything once.
#[tokio::test]
async fn a_partial_answer_is_retried_and_never_taken_as_complete() {
    let harness = Harness::start(settled_tenant(71, 300), SimOptions::default()).await;
    let expected = harness.visible_now();
    harness.sim.push_fault(Fault::PartialContent);
    harness.sync().await;
    assert_exactly(&harness.data_lines(), &expected);

    let harness = Harness::start(settled_tenant(73, 300), SimOptions::default()).await;
    let expected = harness.visible_now();
    for _ in 0..6 {
        harness.sim.push_fault(Fault::PartialContent);
    }
    let error = harness.sync_with(&harness.sim.client_secret(), None).await.unwrap_err();
    assert_eq!(error.kind(), "GraphUnavailableError", "{error}");
    assert!(error.to_string().contains("206 Partial Content"), "{error}");
    harness.sync().await;
    assert_exactly(&harness.data_lines(), &expected);
}

/// Identical alerts at one instant, more than `$skip` reaches: the run fails naming the instant,
/// holds the cursor before it and writes what comes before; the setting moves past it.
#[tokio::test]
async fn an_unsplittable_instant_holds_the_cursor_until_the_operator_accepts_it() {
    let mut tenant = settled_tenant(79, 200);
    let at = Utc::now() - TimeDelta::hours(2) + TimeDelta::nanoseconds(100);
    let template = tenant.add_alert(at, TimeDelta::zero()).body.clone();
    let template: serde_json::Value = serde_json::from_str(&template).unwrap();
    for n in 0..1_700 {
        let mut copy = template.clone();
        copy["id"] = format!("clone-{n:05}").into();
        tenant.versions.push(xdr_simulator::SimVersion {
            id: format!("clone-{n:05}"),
            last_update: at,
            visible_at: at,
            body: copy.to_string(),
        });
    }
    let mut harness = Harness::start(tenant, SimOptions::default()).await;
    harness.set("PAGE_SIZE", "1000");
    let error = harness.sync_with(&harness.sim.client_secret(), None).await.unwrap_err();
    assert_eq!(error.kind(), "InstantUnreadableError");
    let instant = xdr_core::timeutil::format_filter_instant(at);
    assert!(error.to_string().contains(&instant), "{error}");
    let before: Vec<String> = harness
        .visible_now()
        .into_iter()
        .filter(|body| body.contains("lastUpdateDateTime") && !body.contains(&instant))
        .collect();
    let lines: Vec<String> = harness.data_lines().into_iter().map(|(_, line)| line).collect();
    let older = before.iter().filter(|body| lines.contains(body)).count();
    assert!(older > 0, "what comes before the instant is written");

    harness.set("ACCEPT_INCOMPLETE_INSTANTS", &instant);
    let summary = harness.sync().await;
    assert!(summary.complete);
    let lines = harness.data_lines();
    let at_instant = lines.iter().filter(|(_, line)| line.contains(&instant)).count();
    assert!((1_500..1_701).contains(&at_instant), "{at_instant} read at the instant");
    // Every version outside the instant is there once.
    let outside: Vec<String> = harness.visible_now().into_iter().filter(|b| !b.contains(&instant)).collect();
    let written: Vec<(String, String)> =
        lines.into_iter().filter(|(_, line)| !line.contains(&instant)).collect();
    assert_exactly(&written, &outside);
}
