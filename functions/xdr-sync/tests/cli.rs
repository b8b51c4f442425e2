//! The `xdr-sync` binary as a user runs it: the demo, a local sync configured by the
//! environment, and the errors a user sees for bad settings or a bad secret.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test target: a panic is a failed test

use std::path::Path;
use std::process::{Command, Output};

use chrono::{TimeDelta, Utc};
use xdr_simulator::{SimOptions, SimTenant, Simulator};

/// The binary with a clean environment, logging at every level (so a secret printed only by a
/// debug or trace line is caught too).
fn xdr_sync(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xdr-sync"));
    command.current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    command.env("RUST_LOG", "trace");
    command
}

/// Neither the client secret nor any access token the tenant issued is in `printed`.
fn assert_no_secrets(printed: &str, sim: &Simulator) {
    assert!(!printed.contains(&sim.client_secret()), "the client secret was printed");
    for token in sim.access_tokens() {
        assert!(!printed.contains(&token), "an access token was printed");
    }
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
    let printed_first = format!("{stdout}{stderr}");

    let state_before = std::fs::read(dir.path().join("xdr-state/sync-state.json")).unwrap();
    let wrong = "Zx8Q~this-is-the-wrong-secret-value";
    let output = tokio::task::block_in_place(|| run(wrong));
    let (stdout, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("CredentialsError") && stderr.contains("AADSTS7000215"), "{stderr}");
    assert!(!stdout.contains(wrong) && !stderr.contains(wrong), "the secret is never printed");
    let state_after = std::fs::read(dir.path().join("xdr-state/sync-state.json")).unwrap();
    assert_eq!(state_before, state_after, "a credentials failure changes no state");
    assert_no_secrets(&format!("{stdout}{stderr}{}", printed_first), &sim);
}

/// The https-only rule is about where requests go, not how: an `http://` proxy in `HTTPS_PROXY`
/// still carries them (a tunnel, `CONNECT host:443`, so the proxy sees no secret). A recording
/// proxy that refuses every tunnel shows the request went through it.
#[test]
fn an_http_proxy_in_https_proxy_carries_the_requests() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let recorder = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            recorder.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
            let _ = stream.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let secret = "Zx8Q~a-secret-that-stays-inside-tls";
    let output = xdr_sync(dir.path())
        .env("TENANT_ID", "contoso.onmicrosoft.com")
        .env("CLIENT_ID", "00000000-1111-2222-3333-444444444444")
        .env("CLIENT_SECRET", secret)
        .env("HTTPS_PROXY", &proxy)
        .env("MAX_ATTEMPTS", "1")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(!output.status.success(), "the proxy refused the tunnel: {stdout}{stderr}");
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.first().is_some_and(|head| head.starts_with("CONNECT login.microsoftonline.com:443 ")),
        "the token request went through the proxy: {seen:?}"
    );
    assert!(!seen.concat().contains(secret) && !format!("{stdout}{stderr}").contains(secret));
}

#[test]
fn bad_settings_fail_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "TENANT_ID"),
        (&[("TENANT_ID", "contoso.onmicrosoft.com")], "CLIENT_ID"),
        (&[("TENANT_ID", "contoso.onmicrosoft.com"), ("CLIENT_ID", "app")], "CLIENT_SECRET"),
        (&[("TENANT_ID", "t.example"), ("CLOUD", "moon")], "CLOUD"),
        (&[("TENANT_ID", "t.example"), ("BACKFILL_START", "yesterday")], "BACKFILL_START"),
        (&[("TENANT_ID", "t.example"), ("OVERLAP_MINUTES", "ten")], "OVERLAP_MINUTES"),
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

/// A lost state, or the same tenant under another state (TENANT_ID changed from the domain to
/// the GUID, another STATE_FILE), would start over silently: everything since BACKFILL_START
/// written again. The tenant's marker beside the output makes the run refuse; `state reset`
/// starts over on purpose, saying what it will read again.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_or_moved_state_is_refused_until_reset_on_purpose() {
    let tenant = SimTenant::with_history(79, Utc::now() - TimeDelta::hours(1), TimeDelta::days(1), 120);
    let sim = Simulator::start(tenant, SimOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backfill_start = (Utc::now() - TimeDelta::days(2)).to_rfc3339();
    let printed = std::cell::RefCell::new(String::new());
    let run = |args: &[&str], state_file: &str| {
        let mut command = xdr_sync(dir.path());
        command
            .args(args)
            .env("TENANT_ID", sim.tenant_id())
            .env("CLIENT_ID", sim.client_id())
            .env("CLIENT_SECRET", sim.client_secret())
            .env("LOGIN_BASE_URL", sim.base_url())
            .env("GRAPH_BASE_URL", sim.base_url())
            .env("BACKFILL_START", &backfill_start)
            .env("STATE_FILE", state_file);
        let output = tokio::task::block_in_place(|| command.output().unwrap());
        let (stdout, stderr) = text(&output);
        printed.borrow_mut().push_str(&format!("{stdout}{stderr}"));
        output
    };
    let objects = || {
        let mut keys: Vec<_> = walk(&dir.path().join("xdr-output/defender-xdr/alerts"));
        keys.sort();
        keys
    };
    let first = run(&[], "state/live.json");
    assert!(first.status.success(), "{:?}", text(&first));
    let marker =
        dir.path().join(format!("xdr-output/defender-xdr/control/tenants/{}/sync.json", sim.tenant_id()));
    assert!(marker.is_file(), "the tenant's marker is beside the output");

    // The same state moved elsewhere (a restored copy): recognised by its lineage, accepted.
    std::fs::rename(dir.path().join("state/live.json"), dir.path().join("state/moved.json")).unwrap();
    let moved = run(&[], "state/moved.json");
    assert!(moved.status.success(), "{:?}", text(&moved));
    assert!(std::fs::read_to_string(&marker).unwrap().contains("moved.json"), "the marker follows it");
    std::fs::rename(dir.path().join("state/moved.json"), dir.path().join("state/live.json")).unwrap();
    let back = run(&[], "state/live.json");
    assert!(back.status.success(), "{:?}", text(&back));
    let written = objects();

    // Another state for the same tenant: refused, nothing written, no state created.
    let moved = run(&[], "state/other.json");
    let (_, stderr) = text(&moved);
    assert!(!moved.status.success());
    assert!(stderr.contains("TenantStateError") && stderr.contains("live.json"), "{stderr}");
    assert!(!dir.path().join("state/other.json").exists());
    assert_eq!(objects(), written);

    // The state lost: refused the same way.
    std::fs::remove_file(dir.path().join("state/live.json")).unwrap();
    let lost = run(&[], "state/live.json");
    let (_, stderr) = text(&lost);
    assert!(!lost.status.success());
    assert!(stderr.contains("TenantStateError") && stderr.contains("is missing"), "{stderr}");
    assert!(stderr.contains("xdr-sync state reset"), "{stderr}");
    assert_eq!(objects(), written);

    let shown = run(&["state", "show"], "state/live.json");
    assert!(text(&shown).0.contains("\"exists\": false"), "{:?}", text(&shown));
    let dry = run(&["state", "reset"], "state/live.json");
    let (stdout, _) = text(&dry);
    assert!(stdout.contains("Nothing was changed") && stdout.contains("BACKFILL_START"), "{stdout}");
    assert!(!dir.path().join("state/live.json").exists());
    let reset = run(&["state", "reset", "--yes"], "state/live.json");
    assert!(text(&reset).0.contains("Reset."), "{:?}", text(&reset));

    let again = run(&[], "state/live.json");
    assert!(again.status.success(), "{:?}", text(&again));
    let shown = run(&["state", "show"], "state/live.json");
    let (stdout, _) = text(&shown);
    assert!(stdout.contains("\"exists\": true") && stdout.contains("\"reset\": null"), "{stdout}");
    assert_no_secrets(&printed.borrow(), &sim);
}

fn walk(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(walk(&path));
            } else {
                found.push(path.display().to_string());
            }
        }
    }
    found
}
