//! The `xdr-sync` binary as a user runs it: the demo, a local sync configured by the
//! environment, and the errors a user sees for bad settings or a bad secret.

use std::path::Path;
use std::process::{Command, Output};

use chrono::{TimeDelta, Utc};
use xdr_simulator::{SimOptions, SimTenant, Simulator};

fn xdr_sync(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xdr-sync"));
    command.current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn number_before(haystack: &str, marker: &str) -> u64 {
    let head = haystack.split(marker).next().unwrap_or("");
    head.rsplit(|c: char| !c.is_ascii_digit()).find(|s| !s.is_empty()).unwrap_or("0").parse().unwrap_or(0)
}

#[test]
fn the_demo_syncs_and_a_second_demo_writes_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let first = xdr_sync(dir.path()).arg("demo").output().unwrap();
    let (stdout, stderr) = text(&first);
    assert!(first.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("Sync 1 (initial"), "{stdout}");
    let initial = number_before(stdout.split("Sync 1").nth(1).unwrap(), " alert versions written");
    assert!(initial >= 700, "the initial sync wrote the tenant's alerts: {stdout}");
    assert!(stdout.contains("Output in"));
    assert!(dir.path().join("xdr-demo/output/defender-xdr/alerts").is_dir());

    let second = xdr_sync(dir.path()).arg("demo").output().unwrap();
    let (stdout, stderr) = text(&second);
    assert!(second.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("is back"), "{stdout}");
    assert!(stdout.contains("Sync 1 (incremental)"), "{stdout}");
    let rerun =
        number_before(stdout.split("Sync 1 (incremental)").nth(1).unwrap(), " alert versions written");
    assert!(rerun > 0 && rerun < 100, "only what changed meanwhile: {stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_sync_is_configured_by_the_environment() {
    let tenant = SimTenant::with_history(77, Utc::now() - TimeDelta::hours(1), TimeDelta::days(1), 150);
    let sim = Simulator::start(tenant, SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = sim.client_secret();
    let run = |secret: &str| {
        xdr_sync(dir.path())
            .env("TENANT_ID", sim.tenant_id())
            .env("CLIENT_ID", sim.client_id())
            .env("CLIENT_SECRET", secret)
            .env("LOGIN_BASE_URL", sim.base_url())
            .env("GRAPH_BASE_URL", sim.base_url())
            .env("BACKFILL_START", (Utc::now() - TimeDelta::days(2)).to_rfc3339())
            .env("OUTPUT_DIR", "lake")
            .output()
            .unwrap()
    };
    let output = tokio::task::block_in_place(|| run(&secret));
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("150 alert versions written")
            || number_before(&stdout, " alert versions written") >= 150,
        "{stdout}"
    );
    assert!(dir.path().join("lake/defender-xdr/alerts").is_dir());
    assert!(dir.path().join("xdr-state/sync-state.json").is_file());
    assert!(!stdout.contains(&secret) && !stderr.contains(&secret), "the secret is never printed");

    let state_before = std::fs::read(dir.path().join("xdr-state/sync-state.json")).unwrap();
    let wrong = "Zx8Q~this-is-the-wrong-secret-value";
    let output = tokio::task::block_in_place(|| run(wrong));
    let (stdout, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("CredentialsError") && stderr.contains("AADSTS7000215"), "{stderr}");
    assert!(!stdout.contains(wrong) && !stderr.contains(wrong), "the secret is never printed");
    let state_after = std::fs::read(dir.path().join("xdr-state/sync-state.json")).unwrap();
    assert_eq!(state_before, state_after, "a credentials failure changes no state");
    for token in sim.access_tokens() {
        assert!(!stdout.contains(&token) && !stderr.contains(&token), "no access token in the output");
    }
}

#[test]
fn bad_settings_fail_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "TENANT_ID"),
        (&[("TENANT_ID", "contoso.onmicrosoft.com")], "CLIENT_ID"),
        (&[("TENANT_ID", "contoso.onmicrosoft.com"), ("CLIENT_ID", "app")], "CLIENT_SECRET"),
        (&[("TENANT_ID", "t"), ("CLOUD", "moon")], "CLOUD"),
        (&[("TENANT_ID", "t"), ("BACKFILL_START", "yesterday")], "BACKFILL_START"),
        (&[("TENANT_ID", "t"), ("OVERLAP_MINUTES", "ten")], "OVERLAP_MINUTES"),
    ];
    for (env, setting) in cases {
        let mut command = xdr_sync(dir.path());
        command.envs(env.iter().copied());
        let output = command.output().unwrap();
        let (_, stderr) = text(&output);
        assert!(!output.status.success());
        assert!(stderr.contains("ConfigurationError") && stderr.contains(setting), "{setting}: {stderr}");
    }
    assert!(!dir.path().join("xdr-state").exists(), "nothing written on bad settings");
}
