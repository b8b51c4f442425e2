//! Whole syncs: engine + Graph client + simulated tenant + local folder and state file.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use xdr_simulator::{Activity, Fault, ListOrder, SimOptions, SimTenant};
use xdr_tests::{Harness, assert_exactly};

/// A tenant whose history ended an hour ago, so every version in it is visible now.
fn settled_tenant(seed: u64, alerts: u64) -> SimTenant {
    SimTenant::with_history(seed, Utc::now() - TimeDelta::hours(1), TimeDelta::days(3), alerts)
}

#[tokio::test]
async fn initial_then_incremental_syncs_write_each_version_once_byte_for_byte() {
    let harness = Harness::start(settled_tenant(21, 600), SimOptions::default()).await;
    let mut expected = harness.visible_now();
    let first = harness.sync().await;
    assert_eq!(first.alerts_written as usize, expected.len());
    assert!(first.pages >= 6, "600 alerts in pages of 100");
    assert_exactly(&harness.data_lines(), &expected);

    // The tenant moves on: new alerts, updates (some at one shared instant), one shown late.
    let applied = harness
        .sim
        .with_tenant(|t| t.produce(Utc::now(), Activity { new_alerts: 7, updates: 12, late: 2, bulk: 5 }));
    assert_eq!(applied.updates, 12);
    expected.extend(harness.visible_now());
    expected.sort();
    expected.dedup();
    let second = harness.sync().await;
    assert_eq!(second.alerts_written, 19, "exactly the new versions");
    assert_exactly(&harness.data_lines(), &expected);

    // Nothing changed: nothing written.
    let third = harness.sync().await;
    assert_eq!(third.alerts_written, 0);
    assert!(third.objects.is_empty());
    assert_exactly(&harness.data_lines(), &expected);
}

#[tokio::test]
async fn unknown_properties_and_evidence_types_pass_through_untouched() {
    let harness = Harness::start(settled_tenant(5, 200), SimOptions::default()).await;
    harness.sync().await;
    let lines = harness.data_lines();
    assert!(
        lines.iter().any(|(_, line)| line.contains("#microsoft.graph.security.quantumEntanglementEvidence"))
    );
    assert!(lines.iter().any(|(_, line)| line.contains("\"investigationPriorityScore\"")));
    assert!(lines.iter().any(|(_, line)| line.contains("\"serviceSource\":\"microsoftThreatIntelligence\"")));
    assert_exactly(&lines, &harness.visible_now());
}

#[tokio::test]
async fn many_alerts_sharing_one_instant_across_page_boundaries() {
    let mut tenant = settled_tenant(8, 150);
    let shared = Utc::now() - TimeDelta::minutes(90) + TimeDelta::nanoseconds(4_321_000);
    for _ in 0..1_250 {
        tenant.add_alert(shared, TimeDelta::zero());
    }
    let harness = Harness::start(tenant, SimOptions::default()).await;
    let summary = harness.sync().await;
    assert!(summary.slices_split > 0, "the oversized slice was split down to the shared instant");
    assert_eq!(summary.instants_split, 1, "1,250 at one instant are more than $skip reaches");
    assert_exactly(&harness.data_lines(), &harness.visible_now());
}

#[tokio::test]
async fn correctness_does_not_depend_on_the_server_order() {
    for order in [ListOrder::NewestFirst, ListOrder::OldestFirst, ListOrder::Scrambled] {
        let mut options = SimOptions::default();
        options.graph.order = order;
        let harness = Harness::start(settled_tenant(9, 400), options).await;
        let mut expected = harness.visible_now();
        harness.sync().await;
        harness
            .sim
            .with_tenant(|t| t.produce(Utc::now(), Activity { new_alerts: 3, updates: 6, late: 1, bulk: 2 }));
        expected.extend(harness.visible_now());
        expected.sort();
        expected.dedup();
        harness.sync().await;
        assert_exactly(&harness.data_lines(), &expected);
    }
}

#[tokio::test]
async fn a_version_visible_ten_minutes_late_is_captured_once() {
    let harness = Harness::start(settled_tenant(13, 100), SimOptions::default()).await;
    let mut expected = harness.visible_now();
    harness.sync().await;
    // Stamped ten minutes ago, but only visible from now on.
    let late = harness.sim.with_tenant(|t| {
        let version = t.add_alert(Utc::now() - TimeDelta::minutes(10), TimeDelta::minutes(10));
        version.body.clone()
    });
    expected.push(late.clone());
    let summary = harness.sync().await;
    assert_eq!(summary.alerts_written, 1);
    harness.sync().await;
    assert_exactly(&harness.data_lines(), &expected);
}

#[tokio::test]
async fn a_deadline_stops_the_run_early_and_the_next_runs_complete_it() {
    let mut harness = Harness::start(
        settled_tenant(17, 900),
        SimOptions { page_latency: Duration::from_millis(250), ..SimOptions::default() },
    )
    .await;
    harness.set("FINISH_RESERVE_MS", "300");
    let expected = harness.visible_now();
    let mut runs = 0;
    loop {
        runs += 1;
        let started = std::time::Instant::now();
        let (summary, _) = harness
            .sync_with(&harness.sim.client_secret(), Some(Duration::from_millis(1500)))
            .await
            .expect("no error");
        assert!(started.elapsed() < Duration::from_millis(1500), "returned before its deadline");
        if summary.complete {
            break;
        }
        assert!(summary.stopped_because.unwrap_or_default().starts_with("deadline"));
        assert!(runs < 40, "no progress");
    }
    assert!(runs >= 3, "the deadline cut runs short ({runs} runs)");
    assert_exactly(&harness.data_lines(), &expected);
}

#[tokio::test]
async fn a_wrong_secret_fails_with_its_message_and_changes_nothing() {
    let harness = Harness::start(settled_tenant(3, 50), SimOptions::default()).await;
    let error = harness.sync_with("wrong-secret-value", None).await.unwrap_err();
    assert_eq!(error.kind(), "CredentialsError");
    assert!(error.to_string().contains("AADSTS7000215"));
    assert!(!error.to_string().contains(&harness.sim.client_secret()));
    assert!(!harness.state_file().exists(), "no state was written");
    assert!(!harness.output_dir().exists(), "no output was written");
}

#[tokio::test]
async fn throttling_a_truncated_page_and_an_expired_token_lose_nothing() {
    let harness = Harness::start(settled_tenant(29, 700), SimOptions::default()).await;
    let expected = harness.visible_now();
    harness.sim.push_fault(Fault::Pass);
    harness.sim.push_fault(Fault::Status { status: 429, retry_after: Some(1) });
    harness.sim.push_fault(Fault::Pass);
    harness.sim.push_fault(Fault::ExpireTokens);
    harness.sim.push_fault(Fault::Pass);
    harness.sim.push_fault(Fault::TruncatedPage);
    let error = harness.sync_with(&harness.sim.client_secret(), None).await.unwrap_err();
    assert_eq!(error.kind(), "GraphMalformedPageError", "{error}");
    // Progress up to the bad page was kept; the next run finishes without duplicates.
    harness.sync().await;
    assert_exactly(&harness.data_lines(), &expected);
}

#[tokio::test]
async fn records_without_an_id_are_quarantined_outside_the_data_prefix() {
    let mut tenant = settled_tenant(31, 40);
    let at = Utc::now() - TimeDelta::hours(2);
    tenant.versions.push(xdr_simulator::SimVersion {
        id: "broken".into(),
        last_update: at,
        visible_at: at,
        body: format!(r#"{{"title":"no id here","lastUpdateDateTime":"{}"}}"#, at.to_rfc3339()),
    });
    let harness = Harness::start(tenant, SimOptions::default()).await;
    let summary = harness.sync().await;
    assert_eq!(summary.quarantined, 1);
    let quarantined = xdr_tests::lines_under(&harness.output_dir(), "defender-xdr/quarantine");
    assert_eq!(quarantined.len(), 1);
    assert!(quarantined[0].1.contains("no id here"));
    let expected: Vec<String> =
        harness.visible_now().into_iter().filter(|b| !b.contains("no id here")).collect();
    assert_exactly(&harness.data_lines(), &expected);
}
