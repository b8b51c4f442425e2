//! `xdr-backfill` run locally, as a user runs it: against a tenant (here the simulated one),
//! into the local output folder, resumable.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test target: a panic is a failed test

use std::process::Command;

use chrono::{TimeDelta, Utc};
use serde_json::Value;
use xdr_simulator::{SimOptions, SimTenant, Simulator};

#[tokio::test(flavor = "multi_thread")]
async fn a_local_backfill_writes_its_window_and_a_second_run_nothing() {
    let tenant = SimTenant::with_history(5, Utc::now() - TimeDelta::hours(1), TimeDelta::days(4), 300);
    let sim = Simulator::start(tenant, SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let (start, end) = (now - TimeDelta::days(3), now - TimeDelta::days(1));
    // Backfills read whole UTC days: from midnight before `start`.
    let day_start = start.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_xdr-backfill"))
            .current_dir(dir.path())
            .env_clear()
            .env("TENANT_ID", sim.tenant_id())
            .env("CLIENT_ID", sim.client_id())
            .env("CLIENT_SECRET", sim.client_secret())
            .env("LOGIN_BASE_URL", sim.base_url())
            .env("GRAPH_BASE_URL", sim.base_url())
            // Every level: a secret printed only by a debug or trace line is caught too.
            .env("RUST_LOG", "trace")
            .args(["--start", &start.to_rfc3339(), "--end", &end.to_rfc3339()])
            .output()
            .unwrap()
    };
    let expected = sim
        .tenant()
        .current_versions(Utc::now())
        .into_iter()
        .filter(|v| v.last_update >= day_start && v.last_update < end)
        .count() as u64;
    let first = tokio::task::block_in_place(run);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let result: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(result["complete"], Value::Bool(true), "{result}");
    assert_eq!(result["alerts_written_total"].as_u64(), Some(expected));
    let days = (end.date_naive() - start.date_naive()).num_days() as u64 + 1;
    assert_eq!(result["parts"]["total"].as_u64(), Some(days), "one part per UTC day");
    assert!(dir.path().join("xdr-output/defender-xdr/alerts").is_dir());
    assert!(!dir.path().join("xdr-state/sync-state.json").exists(), "the live sync's state is not touched");

    let second = tokio::task::block_in_place(run);
    let again: Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(again["alerts_written"].as_u64(), Some(0));
    assert_eq!(again["alerts_written_total"].as_u64(), Some(expected));
    for output in [&first, &second] {
        let printed =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(!printed.contains(&sim.client_secret()), "the client secret was printed");
        for token in sim.access_tokens() {
            assert!(!printed.contains(&token), "an access token was printed");
        }
    }

    let bad = Command::new(env!("CARGO_BIN_EXE_xdr-backfill"))
        .current_dir(dir.path())
        .env_clear()
        .env("TENANT_ID", "t.example")
        .env("CLIENT_ID", "c")
        .env("CLIENT_SECRET", "s")
        .args(["--start", "yesterday"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("InvalidEventError"));
}
