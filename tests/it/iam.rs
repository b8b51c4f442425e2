//! The functions under the template's own IAM policies, in a stand-in that enforces IAM (moto)
//! and answers a missing key with 403 to a caller that may not list the bucket (as S3 does).

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::json;
use xdr_simulator::{SimOptions, SimTenant};
use xdr_tests::assert_exactly;
use xdr_tests::aws_fault_proxy::PutFault;
use xdr_tests::deployment::Deployment;
use xdr_tests::iam::IamStandIn;
use xdr_tests::runtime_api::Outcome;

const PREFIX: &str = "defender-xdr/alerts/";

fn tenant(seed: u64) -> SimTenant {
    SimTenant::with_history(seed, Utc::now() - TimeDelta::hours(1), TimeDelta::days(2), 300)
}

/// Every call both functions make is one the template grants (moto refuses any other), and the
/// recovery after a failed put can tell "never landed" (404) from "forbidden". The stack serves
/// both streams (`Streams=alerts,incidents`), so the incidents' prefix is granted as the
/// template grants it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_functions_run_under_the_templates_own_policies() {
    if xdr_tests::moto::unavailable("both_functions_run_under_the_templates_own_policies") {
        return;
    }
    let tenant = tenant(501);
    let streams = [("Streams", "alerts,incidents")];
    let stand_in = IamStandIn::start_with(&Deployment::secret_of(&tenant).to_string(), &[], &streams).await;
    let backfill_keys = stand_in.keys_of("BackfillFunction");
    let IamStandIn { moto: _moto, aws, proxy, .. } = stand_in;
    let mut deployment = Deployment::with_aws(tenant, SimOptions::default(), aws).await;
    deployment.set("BACKFILL_START", &(Utc::now() - TimeDelta::hours(20)).to_rfc3339());
    deployment.set("STREAMS", "alerts,incidents");
    deployment.start();

    // A put that never lands: the run fails, and the next one checks the pending object.
    proxy.fail_puts(&[PutFault::FailBefore; 3]);
    let failed = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
    let Outcome::Error { error_type, .. } = &failed else { panic!("the put failed: {failed:?}") };
    assert_eq!(error_type, "OutputError");
    for _ in 0..2 {
        let outcome = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
        let Outcome::Response(summary) = &outcome else { panic!("under the template's policy: {outcome:?}") };
        assert_eq!(summary["complete"], json!(true), "{summary}");
    }
    let live = deployment.visible_now();

    // The backfill, under its own policy, for the day before the live sync's start.
    deployment.set("AWS_ACCESS_KEY_ID", &backfill_keys.0);
    deployment.set("AWS_SECRET_ACCESS_KEY", &backfill_keys.1);
    deployment.start_function("xdr-backfill");
    let window = json!({"start": (Utc::now() - TimeDelta::days(2)).to_rfc3339()});
    let outcome = deployment.invoke_backfill(&window, Duration::from_secs(60)).await;
    let Outcome::Response(result) = &outcome else {
        panic!("backfill under the template's policy: {outcome:?}")
    };
    assert_eq!(result["complete"], json!(true), "{result}");
    let incidents = json!({"start": (Utc::now() - TimeDelta::days(2)).to_rfc3339(), "stream": "incidents"});
    let outcome = deployment.invoke_backfill(&incidents, Duration::from_secs(60)).await;
    let Outcome::Response(result) = &outcome else {
        panic!("incidents backfill under the template's policy: {outcome:?}")
    };
    assert_eq!(result["complete"], json!(true), "{result}");
    assert!(!live.is_empty());
    assert_exactly(&deployment.aws.lines(PREFIX).await, &deployment.visible_now());
    assert_exactly(&deployment.aws.lines("defender-xdr/incidents/").await, &deployment.incidents_now());
    deployment.assert_no_secrets(&[]);
}

/// Without `s3:ListBucket` (a stack deployed from an older template, or a hand-made role), S3
/// answers a missing key with 403: the marker check and the recovery check after a failed put
/// cannot tell "missing" from "forbidden". Every run says what to grant, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_list_bucket_every_run_is_refused_with_advice_and_changes_nothing() {
    if xdr_tests::moto::unavailable(
        "without_list_bucket_every_run_is_refused_with_advice_and_changes_nothing",
    ) {
        return;
    }
    let tenant = tenant(503);
    let stand_in =
        IamStandIn::start(&Deployment::secret_of(&tenant).to_string(), &["TellMissingFromForbidden"]).await;
    let IamStandIn { moto: _moto, aws, .. } = stand_in;
    let mut deployment = Deployment::with_aws(tenant, SimOptions::default(), aws).await;
    deployment.start();
    let mut state_before = None;
    for _ in 0..2 {
        let outcome = deployment.invoke(&json!({}), Duration::from_secs(60)).await;
        let Outcome::Error { error_type, message, .. } = &outcome else { panic!("refused: {outcome:?}") };
        assert_eq!(error_type, "ExistenceCheckForbiddenError");
        assert!(message.contains("s3:ListBucket") && message.contains("403"), "{message}");
        let state: Vec<_> =
            deployment.aws.items().await.into_iter().filter(|(k, _)| !k.starts_with("lease#")).collect();
        assert_eq!(*state_before.get_or_insert_with(|| state.clone()), state, "the state is unchanged");
        assert!(deployment.aws.keys(PREFIX).await.is_empty(), "nothing written");
    }
    deployment.assert_no_secrets(&[]);
}

/// A registry-driven stack (`Tenancy=registry`) under the template's own policies: the fan-out's
/// list, each tenant's sync (one with a secret of its own under `TenantSecretsPrefix`) and the
/// report make only the calls the template grants.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registry_driven_fan_out_runs_under_the_templates_own_policies() {
    if xdr_tests::moto::unavailable("a_registry_driven_fan_out_runs_under_the_templates_own_policies") {
        return;
    }
    let app = SimTenant::new(520, Utc::now());
    let shared = json!({"client_id": app.client_id, "client_secret": app.client_secret});
    let tenants: Vec<(SimTenant, SimOptions)> = (0..3)
        .map(|n| {
            let mut tenant = tenant(521 + n);
            if n < 2 {
                tenant.client_id = app.client_id.clone();
                tenant.client_secret = app.client_secret.clone();
            }
            (tenant, SimOptions::default())
        })
        .collect();
    let own = json!({"client_id": tenants[2].0.client_id, "client_secret": tenants[2].0.client_secret});
    let parameters = [("Tenancy", "registry"), ("Streams", "alerts,incidents")];
    let stand_in = IamStandIn::start_with(&shared.to_string(), &[], &parameters).await;
    let IamStandIn { moto: _moto, aws, .. } = stand_in;
    let mut deployment = xdr_tests::fleet::FleetDeployment::with_aws(tenants, aws).await;
    deployment.set("STREAMS", "alerts,incidents");
    deployment.register_all().await;
    // The third tenant's own app, in a secret under the template's TenantSecretsPrefix.
    let secret = "xdr-lake/tenants/customer-2";
    deployment.aws.secrets.create_secret().name(secret).secret_string(own.to_string()).send().await.unwrap();
    let third = deployment.fleet.tenants()[2].tenant_id();
    deployment
        .aws
        .dynamodb
        .update_item()
        .table_name(&deployment.tenants_table)
        .key("tenant_id", aws_sdk_dynamodb::types::AttributeValue::S(third.clone()))
        .update_expression("SET secret_id = :s")
        .expression_attribute_values(":s", aws_sdk_dynamodb::types::AttributeValue::S(secret.into()))
        .send()
        .await
        .unwrap();
    deployment.start(2);
    let (runs, report) = deployment.fan_out(2, Duration::from_secs(60)).await;
    assert_eq!(runs.len(), 3);
    for (tenant, run) in &runs {
        let Outcome::Response(answer) = &run.outcome else {
            panic!("{tenant} under the template's policy: {:?}", run.outcome)
        };
        assert_eq!(answer["complete"], json!(true), "{answer}");
        let handle = deployment.fleet.by_id(tenant).unwrap();
        let expected: Vec<String> =
            handle.tenant().current_versions(Utc::now()).into_iter().map(|v| v.body.clone()).collect();
        assert_exactly(&deployment.aws.lines(&format!("{PREFIX}tenant={tenant}/")).await, &expected);
    }
    assert_eq!(report.response()["stale"], json!(0), "{:?}", report);
}
