//! Many tenants in one deployment: the registry tool, and the fan-out as the template's state
//! machine runs it (registry scan, one real `xdr-sync` invocation per tenant through the Runtime
//! API with a concurrency bound, the report), over 23 simulated tenants behind one Entra and
//! Graph, three of them failing in different ways and one disabled.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};
use xdr_simulator::{Activity, SimOptions, SimTenant};
use xdr_tests::assert_exactly;
use xdr_tests::fleet::FleetDeployment;
use xdr_tests::runtime_api::Outcome;

const TENANTS: u64 = 23;
const WRONG_SECRET: usize = 4;
const NO_CONSENT: usize = 11;
const THROTTLED: usize = 17;
const DISABLED: usize = 20;
/// Has its own app and secret (the others share one multi-tenant app).
const OWN_APP: usize = 22;

fn prefix(tenant: &str) -> String {
    format!("defender-xdr/alerts/tenant={tenant}/")
}

fn settled(seed: u64, alerts: u64) -> SimTenant {
    SimTenant::with_history(seed, Utc::now() - TimeDelta::hours(1), TimeDelta::days(1), alerts)
}

/// The tenants: one multi-tenant app consented in all but one, which has its own app.
fn tenants() -> (Vec<(SimTenant, SimOptions)>, Value) {
    let app = SimTenant::new(7000, Utc::now());
    let shared = json!({"client_id": app.client_id, "client_secret": app.client_secret});
    let tenants = (0..TENANTS as usize)
        .map(|n| {
            let mut tenant = settled(7100 + n as u64, 40 + 7 * n as u64);
            if n != OWN_APP {
                tenant.client_id = app.client_id.clone();
                tenant.client_secret = app.client_secret.clone();
            }
            (tenant, SimOptions::default())
        })
        .collect();
    (tenants, shared)
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fan_out_over_many_tenants_isolates_the_failing_ones_and_writes_each_healthy_version_once() {
    if xdr_tests::moto::unavailable("a_fan_out_over_many_tenants_isolates_the_failing_ones") {
        return;
    }
    let (tenants, shared) = tenants();
    let mut deployment = FleetDeployment::new(tenants, &shared).await;
    let handles = deployment.fleet.tenants().to_vec();
    let ids: Vec<String> = handles.iter().map(|t| t.tenant_id()).collect();
    let own =
        json!({"client_id": handles[OWN_APP].client_id(), "client_secret": handles[OWN_APP].client_secret()});
    let own_secret = deployment.put_secret("own", &own).await;
    let stale_secret = deployment.put_secret("rotated", &shared).await;

    // Every tenant registered with the tool, which checks each one against Entra and Graph.
    for (n, id) in ids.iter().enumerate() {
        let name = format!("Customer {n:02}");
        let mut args = vec!["add", id.as_str(), "--name", name.as_str()];
        if n == OWN_APP {
            args.extend(["--secret", own_secret.as_str()]);
        }
        if n == WRONG_SECRET {
            args.extend(["--secret", stale_secret.as_str()]);
        }
        if n == DISABLED {
            args.push("--disabled");
        }
        let output = deployment.tenants_command(&args);
        assert!(output.status.success(), "{}", stdout(&output));
        assert!(stdout(&output).contains("alerts readable (SecurityAlert.Read.All)"), "{}", stdout(&output));
    }
    let listed = deployment.tenants_command(&["list"]);
    assert!(
        stdout(&listed).contains(&format!("{TENANTS} tenants, {} enabled.", TENANTS - 1)),
        "{}",
        stdout(&listed)
    );

    // Since then: the secret one tenant uses was replaced by a wrong one, another tenant's
    // admin revoked the consent, and a third is throttled for ten minutes.
    deployment
        .aws
        .secrets
        .put_secret_value()
        .secret_id(&stale_secret)
        .secret_string(
            json!({"client_id": handles[0].client_id(), "client_secret": "wrong~value"}).to_string(),
        )
        .send()
        .await
        .unwrap();
    handles[NO_CONSENT].options(|o| o.alerts_forbidden = true);
    handles[THROTTLED].options(|o| o.throttled_until = Some(Utc::now() + TimeDelta::minutes(10)));
    let failing = [WRONG_SECRET, NO_CONSENT, THROTTLED];
    let healthy: Vec<usize> =
        (0..TENANTS as usize).filter(|n| !failing.contains(n) && *n != DISABLED).collect();

    deployment.start(4);
    let mut expected: Vec<Vec<String>> = handles
        .iter()
        .map(|t| t.tenant().current_versions(Utc::now()).into_iter().map(|v| v.body.clone()).collect())
        .collect();
    for interval in 0..2 {
        let (runs, report) = deployment.fan_out(4, Duration::from_secs(30)).await;
        assert_eq!(runs.len(), TENANTS as usize - 1, "every enabled tenant once, the disabled one never");
        assert!(!runs.contains_key(&ids[DISABLED]));
        for n in &healthy {
            let run = &runs[&ids[*n]];
            let answer = run.outcome.response();
            assert_eq!(answer["complete"], json!(true), "tenant {n}: {answer}");
            assert_eq!(answer["tenant"], json!(ids[*n]));
            // What the state machine keeps of each answer stays small (hundreds of tenants
            // must fit in one state's 256 KB).
            let health = answer["health"].to_string();
            assert!(health.contains("covered_until") && health.len() < 200, "{health}");
            // No healthy tenant waits on a failing one: each run takes what its own work takes.
            let took = run.ended - run.started;
            assert!(took < Duration::from_secs(8), "tenant {n} took {took:?}");
            assert_exactly(&deployment.aws.lines(&prefix(&ids[*n])).await, &expected[*n]);
        }
        match &runs[&ids[WRONG_SECRET]].outcome {
            Outcome::Error { error_type, message, .. } => {
                assert_eq!(error_type, "CredentialsError");
                assert!(message.contains("AADSTS7000215"), "{message}");
            }
            other => panic!("the wrong secret: {other:?}"),
        }
        match &runs[&ids[NO_CONSENT]].outcome {
            Outcome::Error { message, .. } => {
                assert!(message.contains("SecurityAlert.Read.All"), "{message}")
            }
            other => panic!("no consent: {other:?}"),
        }
        let throttled = format!("{:?}", runs[&ids[THROTTLED]].outcome);
        assert!(throttled.contains("hrottl"), "{throttled}");
        for n in failing.iter().chain([&DISABLED]) {
            assert!(deployment.aws.keys(&prefix(&ids[*n])).await.is_empty(), "tenant {n} wrote nothing");
        }

        // One number for the alarm, and the list with reasons.
        let report = report.response().clone();
        assert_eq!(report["stale"], json!(3), "{report}");
        assert_eq!(report["tenants"], json!(TENANTS - 1));
        let stale: Vec<&str> = report["stale_tenants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["tenant"].as_str().unwrap())
            .collect();
        let mut wanted: Vec<&str> = failing.iter().map(|n| ids[*n].as_str()).collect();
        wanted.sort();
        let mut stale_sorted = stale.clone();
        stale_sorted.sort();
        assert_eq!(stale_sorted, wanted);
        let emf: Vec<Value> = deployment
            .output()
            .lines()
            .filter(|line| line.contains("\"StaleTenants\""))
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(emf.len(), interval + 1, "one report line per fan-out");
        assert_eq!(emf[interval]["StaleTenants"], json!(3));
        let logs = deployment.output();
        assert!(logs.contains("Stale tenant.") && logs.contains("Customer 11"), "the log lists them");

        // The next interval: new alerts and updates in every tenant.
        for (n, tenant) in handles.iter().enumerate() {
            tenant.with_tenant(|t| {
                t.produce(Utc::now(), Activity { new_alerts: 3, updates: 4, late: 0, bulk: 2 })
            });
            let now: Vec<String> =
                tenant.tenant().current_versions(Utc::now()).into_iter().map(|v| v.body.clone()).collect();
            expected[n].extend(now);
            expected[n].sort();
            expected[n].dedup();
        }
    }
    // Each tenant's metrics carry its GUID.
    let logs = deployment.output();
    assert!(logs.contains(&format!("\"Tenant\":\"{}\"", ids[0])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_registry_tool_refuses_credentials_that_do_not_work_and_saves_nothing() {
    if xdr_tests::moto::unavailable("the_registry_tool_refuses_credentials_that_do_not_work") {
        return;
    }
    let app = SimTenant::new(7500, Utc::now());
    let shared = json!({"client_id": app.client_id, "client_secret": app.client_secret});
    let mut tenants: Vec<(SimTenant, SimOptions)> = (0..3)
        .map(|n| {
            let mut tenant = settled(7600 + n, 20);
            tenant.client_id = app.client_id.clone();
            tenant.client_secret = app.client_secret.clone();
            (tenant, SimOptions::default())
        })
        .collect();
    tenants[1].1.alerts_forbidden = true;
    let deployment = FleetDeployment::new(tenants, &shared).await;
    let ids: Vec<String> = deployment.fleet.tenants().iter().map(|t| t.tenant_id()).collect();
    let wrong =
        deployment.put_secret("wrong", &json!({"client_id": app.client_id, "client_secret": "nope"})).await;

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["add", &ids[0], "--secret", &wrong], "AADSTS7000215"),
        (vec!["add", &ids[1]], "SecurityAlert.Read.All"),
        (vec!["add", "contoso.onmicrosoft.com"], "not its domain"),
        (vec!["add", "00000000-0000-4000-8000-00000000dead"], "AADSTS90002"),
        (vec!["add", &ids[2], "--streams", "alert"], "`alert` is not a stream"),
        (vec!["add", &ids[2], "--backfill-start", "yesterday"], "--backfill-start `yesterday`"),
        (vec!["add", &ids[2], "--secret", "no-such-secret"], "was not found"),
    ];
    for (args, expected) in cases {
        let output = deployment.tenants_command(&args);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(stdout(&output).contains(expected), "{args:?}: {}", stdout(&output));
    }
    assert!(deployment.enabled_tenants().await.is_empty(), "nothing was saved");

    let added = deployment.tenants_command(&["add", &ids[2], "--name", "Fabrikam"]);
    assert!(added.status.success(), "{}", stdout(&added));
    let again = deployment.tenants_command(&["add", &ids[2]]);
    assert!(stdout(&again).contains("already registered"), "{}", stdout(&again));
    let disabled = deployment.tenants_command(&["disable", &ids[2]]);
    assert!(disabled.status.success() && deployment.enabled_tenants().await.is_empty());
    let kept = deployment.tenants_command(&["remove", &ids[2]]);
    assert!(stdout(&kept).contains("Nothing changed"), "{}", stdout(&kept));
    assert!(stdout(&deployment.tenants_command(&["list"])).contains("Fabrikam"));
    let removed = deployment.tenants_command(&["remove", &ids[2], "--yes"]);
    assert!(removed.status.success(), "{}", stdout(&removed));
    assert!(stdout(&deployment.tenants_command(&["list"])).contains("0 tenants, 0 enabled."));
    let gone = deployment.tenants_command(&["enable", &ids[2]]);
    assert!(stdout(&gone).contains("is not registered"), "{}", stdout(&gone));
}

/// Invocations a registry-driven stack cannot serve: no tenant named, a tenant not registered,
/// a disabled one. Each fails with its own type and message, and nothing is read or written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invocation_for_no_tenant_an_unknown_or_a_disabled_one_is_refused() {
    if xdr_tests::moto::unavailable("an_invocation_for_no_tenant_an_unknown_or_a_disabled_one_is_refused") {
        return;
    }
    let app = SimTenant::new(7700, Utc::now());
    let shared = json!({"client_id": app.client_id, "client_secret": app.client_secret});
    let mut tenant = settled(7701, 30);
    tenant.client_id = app.client_id.clone();
    tenant.client_secret = app.client_secret.clone();
    let mut deployment = FleetDeployment::new(vec![(tenant, SimOptions::default())], &shared).await;
    let id = deployment.fleet.tenants()[0].tenant_id();
    let added = deployment.tenants_command(&["add", &id, "--disabled"]);
    assert!(added.status.success(), "{}", stdout(&added));
    deployment.start(1);
    let cases = [
        (json!({}), "InvalidEventError", "must name one"),
        (json!({"tenant": "contoso.onmicrosoft.com"}), "InvalidEventError", "not its domain"),
        (
            json!({"tenant": "00000000-0000-4000-8000-00000000beef"}),
            "TenantNotSyncedError",
            "is not registered",
        ),
        (json!({"tenant": id}), "TenantNotSyncedError", "is disabled"),
    ];
    let requests = deployment.fleet.tenants()[0].requests().len();
    for (event, kind, expected) in cases {
        match deployment.api.invoke(&event, Duration::from_secs(20)).await {
            Outcome::Error { error_type, message, .. } => {
                assert_eq!(error_type, kind, "{event}: {message}");
                assert!(message.contains(expected), "{event}: {message}");
            }
            other => panic!("{event}: {other:?}"),
        }
    }
    assert_eq!(
        deployment.fleet.tenants()[0].requests().len(),
        requests,
        "nothing was asked of Entra or Graph"
    );
    assert!(deployment.aws.items().await.is_empty(), "no state, no lease");
    assert!(deployment.aws.keys("").await.is_empty(), "no object");
    // Enabled, the same event syncs it.
    let enabled = deployment.tenants_command(&["enable", &id]);
    assert!(enabled.status.success(), "{}", stdout(&enabled));
    let answer = deployment.api.invoke(&json!({"tenant": id}), Duration::from_secs(20)).await;
    assert_eq!(answer.response()["complete"], json!(true));
    assert!(!deployment.aws.keys(&prefix(&id)).await.is_empty());
}

/// A registered tenant's backfill: `xdr-backfill` takes `"tenant"` next to the window, fills what
/// the live sync never read (its first run started after the history), and writes each version
/// once under the tenant's own folder. Without a tenant the event is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registered_tenant_is_backfilled_under_its_own_folder() {
    if xdr_tests::moto::unavailable("a_registered_tenant_is_backfilled_under_its_own_folder") {
        return;
    }
    let app = SimTenant::new(7800, Utc::now());
    let shared = json!({"client_id": app.client_id, "client_secret": app.client_secret});
    let tenants: Vec<(SimTenant, SimOptions)> = (0..2)
        .map(|n| {
            let mut tenant = settled(7801 + n, 60);
            tenant.client_id = app.client_id.clone();
            tenant.client_secret = app.client_secret.clone();
            (tenant, SimOptions::default())
        })
        .collect();
    let mut deployment = FleetDeployment::new(tenants, &shared).await;
    // The live sync starts now: the history is the backfill's.
    deployment.set("BACKFILL_START", &Utc::now().to_rfc3339());
    let ids: Vec<String> = deployment.fleet.tenants().iter().map(|t| t.tenant_id()).collect();
    for id in &ids {
        let added = deployment.tenants_command(&["add", id]);
        assert!(added.status.success(), "{}", stdout(&added));
    }
    deployment.start(1);
    deployment.start_backfill();
    let (runs, _) = deployment.fan_out(2, Duration::from_secs(30)).await;
    assert!(runs.values().all(|run| run.outcome.response()["alerts_written"] == json!(0)));

    let refused = deployment
        .backfill_api
        .invoke(&json!({"start": (Utc::now() - TimeDelta::days(2)).to_rfc3339()}), Duration::from_secs(30))
        .await;
    match refused {
        Outcome::Error { error_type, message, .. } => {
            assert_eq!(error_type, "InvalidEventError");
            assert!(message.contains("must name one"), "{message}");
        }
        other => panic!("a backfill without a tenant: {other:?}"),
    }
    let window = json!({"tenant": ids[0], "start": (Utc::now() - TimeDelta::days(2)).to_rfc3339()});
    let mut complete = false;
    for _ in 0..10 {
        let answer = deployment.backfill_api.invoke(&window, Duration::from_secs(60)).await;
        if answer.response()["complete"] == json!(true) {
            complete = true;
            break;
        }
    }
    assert!(complete, "the backfill completes");
    let expected: Vec<String> = deployment.fleet.tenants()[0]
        .tenant()
        .current_versions(Utc::now())
        .into_iter()
        .map(|v| v.body.clone())
        .collect();
    assert_exactly(&deployment.aws.lines(&prefix(&ids[0])).await, &expected);
    assert!(deployment.aws.keys(&prefix(&ids[1])).await.is_empty(), "the other tenant is not touched");
    let items = deployment.aws.items().await;
    assert!(items.keys().any(|key| key.starts_with(&format!("backfill#{}#alerts#", ids[0]))), "{items:?}");
}

/// The Athena tables of a registry-driven stack read exactly the tenants their `enum`
/// projection lists: the tool keeps that list equal to the registry on `add` and `remove`, puts
/// it back with `sync-tables` after a stack update reset it, leaves the rest of each table as
/// it was, and refuses a single-tenant stack's tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_registry_tool_keeps_the_athena_tables_listing_every_registered_tenant() {
    if xdr_tests::moto::unavailable(
        "the_registry_tool_keeps_the_athena_tables_listing_every_registered_tenant",
    ) {
        return;
    }
    let app = SimTenant::new(7700, Utc::now());
    let shared = json!({"client_id": app.client_id, "client_secret": app.client_secret});
    let tenants: Vec<(SimTenant, SimOptions)> = (0..3)
        .map(|n| {
            let mut tenant = settled(7800 + n, 10);
            tenant.client_id = app.client_id.clone();
            tenant.client_secret = app.client_secret.clone();
            (tenant, SimOptions::default())
        })
        .collect();
    let mut deployment = FleetDeployment::new(tenants, &shared).await;
    let mut ids: Vec<String> = deployment.fleet.tenants().iter().map(|t| t.tenant_id()).collect();

    // Without GLUE_DATABASE a tenant is registered, with a warning; sync-tables is refused.
    let added = deployment.tenants_command(&["add", &ids[2]]);
    assert!(added.status.success(), "{}", stdout(&added));
    assert!(
        stdout(&added).contains("Athena tables not updated: GLUE_DATABASE is not set"),
        "{}",
        stdout(&added)
    );
    let refused = deployment.tenants_command(&["sync-tables"]);
    assert!(!refused.status.success() && stdout(&refused).contains("GLUE_DATABASE is not set"));

    let (glue, database) = deployment.athena_tables(true).await;
    let table = |name: &'static str| {
        let glue = glue.clone();
        let database = database.clone();
        async move {
            glue.get_table()
                .database_name(database)
                .name(name)
                .send()
                .await
                .expect("table")
                .table
                .expect("table")
        }
    };
    let listed = |table: &aws_sdk_glue::types::Table| {
        table.parameters().and_then(|p| p.get("projection.tenant.values")).cloned().unwrap_or_default()
    };
    let before = table("alerts").await;
    assert_eq!(listed(&before), xdr_aws::NO_TENANT);

    let added = deployment.tenants_command(&["add", &ids[0], "--name", "Contoso"]);
    assert!(added.status.success(), "{}", stdout(&added));
    assert!(
        stdout(&added).contains(&format!(
            "Athena tables ({database}) list the 2 registered tenants: alerts updated, incidents updated."
        )),
        "{}",
        stdout(&added)
    );
    let added = deployment.tenants_command(&["add", &ids[1], "--disabled"]);
    assert!(added.status.success(), "{}", stdout(&added));
    ids.sort();
    for name in ["alerts", "incidents"] {
        let now = table(name).await;
        // Every registered tenant, disabled ones too (their data stays queryable), sorted.
        assert_eq!(listed(&now), ids.join(","), "{name}");
    }
    // Nothing else of the table changed.
    let after = table("alerts").await;
    assert_eq!(after.storage_descriptor(), before.storage_descriptor());
    assert_eq!(after.partition_keys(), before.partition_keys());
    assert_eq!(after.table_type(), before.table_type());
    assert_eq!(after.description(), before.description());
    let others = |t: &aws_sdk_glue::types::Table| {
        let mut parameters = t.parameters().cloned().unwrap_or_default();
        parameters.remove("projection.tenant.values");
        parameters
    };
    assert_eq!(others(&after), others(&before));
    let list = stdout(&deployment.tenants_command(&["list"]));
    assert!(list.contains("alerts and incidents list every tenant"), "{list}");

    // A stack update that changed a table puts the template's list back: `list` says so, and
    // sync-tables restores it.
    glue.update_table()
        .database_name(&database)
        .table_input(
            aws_sdk_glue::types::TableInput::builder()
                .name("alerts")
                .table_type("EXTERNAL_TABLE")
                .set_storage_descriptor(before.storage_descriptor().cloned())
                .set_partition_keys(Some(before.partition_keys().to_vec()))
                .set_parameters(before.parameters().cloned())
                .build()
                .expect("table"),
        )
        .send()
        .await
        .expect("reset the list");
    let list = stdout(&deployment.tenants_command(&["list"]));
    assert!(list.contains("alerts lacks 3") && list.contains("sync-tables"), "{list}");
    let synced = deployment.tenants_command(&["sync-tables"]);
    assert!(synced.status.success(), "{}", stdout(&synced));
    assert!(stdout(&synced).contains("alerts updated, incidents already did"), "{}", stdout(&synced));
    assert_eq!(listed(&table("alerts").await), ids.join(","));

    // A removed tenant leaves the tables (its objects stay in S3).
    let gone = deployment.fleet.tenants()[1].tenant_id();
    let removed = deployment.tenants_command(&["remove", &gone, "--yes"]);
    assert!(removed.status.success(), "{}", stdout(&removed));
    let left: Vec<String> = ids.iter().filter(|id| **id != gone).cloned().collect();
    assert_eq!(listed(&table("incidents").await), left.join(","));

    // A single-tenant stack's tables are not per tenant: refused, and left alone.
    let (_, single) = deployment.athena_tables(false).await;
    let refused = deployment.tenants_command(&["sync-tables"]);
    assert!(!refused.status.success());
    assert!(
        stdout(&refused).contains(&format!("Glue table `{single}.alerts` is not partitioned by tenant")),
        "{}",
        stdout(&refused)
    );
}
