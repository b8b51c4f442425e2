//! The Graph client against the simulated Entra + Graph: tokens, errors, throttling, paging.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use secrecy::SecretString;
use xdr_core::{AlertSource, PageRequest, Query, SourceErrorKind};
use xdr_graph::{
    ClientCredentials, Cloud, Endpoints, GraphClient, GraphSettings, RequestRate, RetryPolicy,
    StaticCredentials, http_client,
};
use xdr_simulator::{Fault, GraphMode, Quota, SimOptions, SimTenant, Simulator};

fn tenant() -> SimTenant {
    SimTenant::with_history(11, Utc::now() - TimeDelta::hours(1), TimeDelta::hours(12), 250)
}

fn client_for(
    sim: &Simulator,
    tenant_id: &str,
    client_id: &str,
    secret: &str,
) -> GraphClient<StaticCredentials> {
    client_with(sim, tenant_id, client_id, secret, None)
}

fn client_with(
    sim: &Simulator,
    tenant_id: &str,
    client_id: &str,
    secret: &str,
    request_rate: Option<RequestRate>,
) -> GraphClient<StaticCredentials> {
    let base = sim.base_url();
    let settings = GraphSettings {
        stream: xdr_core::stream::ALERTS,
        tenant_id: tenant_id.into(),
        endpoints: Endpoints::for_cloud(Cloud::Global, Some(base), Some(base)).unwrap(),
        request_timeout: Duration::from_secs(10),
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(400),
        },
        max_response_bytes: xdr_graph::client::DEFAULT_MAX_RESPONSE_BYTES,
        expand_alerts: false,
        request_rate,
    };
    let credentials = StaticCredentials(ClientCredentials {
        client_id: client_id.into(),
        client_secret: SecretString::from(secret.to_owned()),
    });
    GraphClient::new(http_client().unwrap(), settings, credentials)
}

fn client(sim: &Simulator) -> GraphClient<StaticCredentials> {
    client_for(sim, &sim.tenant_id(), &sim.client_id(), &sim.client_secret())
}

fn first_page() -> PageRequest<'static> {
    PageRequest::Query(Query::slice(Utc::now() - TimeDelta::days(2), Utc::now(), 100))
}

#[tokio::test]
async fn each_entra_error_gets_its_own_message() {
    let sim = Simulator::start(tenant(), SimOptions::default()).await.unwrap();
    let (tenant_id, client_id, secret) = (sim.tenant_id(), sim.client_id(), sim.client_secret());
    let cases = [
        (
            client_for(&sim, &tenant_id, &client_id, "3f1e0c2a-0000-4000-8000-secret-id"),
            "AADSTS7000215",
            "Value, not its Secret ID",
        ),
        (
            client_for(&sim, &tenant_id, "00000000-1111-2222-3333-444444444444", &secret),
            "AADSTS700016",
            "was not found in tenant",
        ),
        (
            client_for(&sim, "contoso-typo.onmicrosoft.com", &client_id, &secret),
            "AADSTS90002",
            "Check TENANT_ID",
        ),
    ];
    for (client, code, hint) in cases {
        let error = client.authenticate(None).await.expect_err(code);
        assert_eq!(error.kind, SourceErrorKind::Credentials);
        assert!(error.message.contains(code) && error.message.contains(hint), "{}", error.message);
    }
    sim.options(|options| options.secret_expired = true);
    let error = client(&sim).authenticate(None).await.unwrap_err();
    assert!(
        error.message.contains("AADSTS7000222") && error.message.contains("has expired"),
        "{}",
        error.message
    );
    sim.options(|options| options.secret_expired = false);

    // Anything else: Entra's own code and trace id. Here: a scope for the wrong Graph host.
    let mut settings = client(&sim).settings().clone();
    settings.endpoints.graph = "http://127.0.0.2:1/".parse().unwrap();
    let odd = GraphClient::new(
        http_client().unwrap(),
        settings,
        StaticCredentials(ClientCredentials { client_id, client_secret: SecretString::from(secret.clone()) }),
    );
    let error = odd.authenticate(None).await.unwrap_err();
    assert!(
        error.message.contains("AADSTS1002012") && error.message.contains("trace id"),
        "{}",
        error.message
    );
    assert!(!error.message.contains(&secret));
}

#[tokio::test]
async fn retry_after_two_seconds_is_honoured() {
    let sim = Simulator::start(tenant(), SimOptions::default()).await.unwrap();
    sim.push_fault(Fault::Status { status: 429, retry_after: Some(2) });
    let client = client(&sim);
    client.fetch(first_page(), None).await.expect("the retry succeeds");
    let alerts: Vec<_> = sim.requests().into_iter().filter(|r| r.endpoint == "alerts").collect();
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0].status, 429);
    assert_eq!(alerts[1].status, 200);
    let waited = alerts[1].at - alerts[0].at;
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
    assert_eq!(client.stats().throttled_responses, 1);
}

#[tokio::test]
async fn throttling_past_the_deadline_gives_up_in_time() {
    let sim = Simulator::start(tenant(), SimOptions::default()).await.unwrap();
    sim.push_fault(Fault::Status { status: 429, retry_after: Some(30) });
    let started = std::time::Instant::now();
    let error = client(&sim).fetch(first_page(), Some(Utc::now() + TimeDelta::seconds(3))).await.unwrap_err();
    assert_eq!(error.kind, SourceErrorKind::Throttled, "{}", error.message);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "gave up at once instead of waiting past the deadline"
    );
}

#[tokio::test]
async fn server_errors_and_503_are_retried_with_backoff() {
    let sim = Simulator::start(tenant(), SimOptions::default()).await.unwrap();
    sim.push_fault(Fault::Status { status: 503, retry_after: None });
    sim.push_fault(Fault::Status { status: 504, retry_after: None });
    client(&sim).fetch(first_page(), None).await.expect("third attempt succeeds");
    sim.push_fault(Fault::Status { status: 503, retry_after: None });
    sim.push_fault(Fault::Status { status: 503, retry_after: None });
    sim.push_fault(Fault::Status { status: 503, retry_after: None });
    sim.push_fault(Fault::Status { status: 503, retry_after: None });
    let error = client(&sim).fetch(first_page(), None).await.unwrap_err();
    assert_eq!(error.kind, SourceErrorKind::Unavailable, "{}", error.message);
}

#[tokio::test]
async fn a_401_mid_run_refreshes_the_token_once() {
    // A Graph that offers nextLinks, so the second request follows one.
    let sim = Simulator::start(tenant(), SimOptions::mode(GraphMode::SkipLinks)).await.unwrap();
    let client = client(&sim);
    let page = client.fetch(first_page(), None).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&page.body).unwrap();
    let next = body["@odata.nextLink"].as_str().unwrap().to_owned();
    sim.push_fault(Fault::ExpireTokens);
    client.fetch(PageRequest::Next { link: &next }, None).await.expect("refreshed and retried");
    let log = sim.requests();
    assert_eq!(log.iter().filter(|r| r.endpoint == "token").count(), 2, "one token, then one refresh");
    let statuses: Vec<u16> = log.iter().filter(|r| r.endpoint == "alerts").map(|r| r.status).collect();
    assert_eq!(statuses, vec![200, 401, 200]);
}

#[tokio::test]
async fn requests_ask_for_unknown_enum_members_and_stay_on_the_graph_host() {
    let sim = Simulator::start(tenant(), SimOptions::default()).await.unwrap();
    let client = client(&sim);
    sim.push_fault(Fault::ForeignNextLink);
    let page = client.fetch(first_page(), None).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&page.body).unwrap();
    let next = body["@odata.nextLink"].as_str().unwrap();
    assert!(next.starts_with("http://graph.attacker.example/"));
    let error = client.fetch(PageRequest::Next { link: next }, None).await.unwrap_err();
    assert_eq!(error.kind, SourceErrorKind::Refused);
    assert!(error.message.contains("never sent elsewhere"), "{}", error.message);
    let log = sim.requests();
    assert!(
        log.iter()
            .filter(|r| r.endpoint == "alerts")
            .all(|r| r.prefer.as_deref() == Some("include-unknown-enum-members"))
    );
    assert_eq!(
        log.iter().filter(|r| r.endpoint == "alerts").count(),
        1,
        "the foreign link was never requested"
    );
}

#[tokio::test]
async fn concurrent_requests_share_one_backoff() {
    let sim = Simulator::start(tenant(), SimOptions::default()).await.unwrap();
    let client = client(&sim);
    client.authenticate(None).await.unwrap();
    sim.push_fault(Fault::Status { status: 429, retry_after: Some(2) });
    let second = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.fetch(first_page(), None).await
    };
    let (a, b) = tokio::join!(client.fetch(first_page(), None), second);
    a.unwrap();
    b.unwrap();
    let alerts: Vec<_> = sim.requests().into_iter().filter(|r| r.endpoint == "alerts").collect();
    assert_eq!(alerts[0].status, 429);
    for later in &alerts[1..] {
        let after = later.at - alerts[0].at;
        assert!(after >= Duration::from_secs(2), "a sibling request went out {after:?} after the 429");
    }
}

/// `GRAPH_REQUESTS_PER_MINUTE` keeps reads that run at once (backfill parts, streams) inside
/// Graph's quota: none is answered 429, and they go out no faster than the limit allows. Without
/// it, the same reads run into the quota (429s) and still all succeed, backing off together.
#[tokio::test]
async fn a_request_rate_keeps_concurrent_reads_inside_the_quota() {
    let per = Duration::from_secs(2);
    let quota = Quota { requests: 5, per };
    let sim =
        Simulator::start(tenant(), SimOptions { quota: Some(quota), ..SimOptions::default() }).await.unwrap();
    let (tenant_id, client_id, secret) = (sim.tenant_id(), sim.client_id(), sim.client_secret());
    async fn four_reads(client: &GraphClient<StaticCredentials>) {
        for _ in 0..4 {
            client.fetch(first_page(), None).await.unwrap();
        }
    }
    let alert_requests = |sim: &Simulator| -> Vec<xdr_simulator::RequestRecord> {
        sim.requests().into_iter().filter(|r| r.endpoint == "alerts").collect()
    };

    // A little below the quota, as an operator would set it: Graph counts a request when it
    // arrives, which is not quite when it was sent.
    let paced = client_with(&sim, &tenant_id, &client_id, &secret, Some(RequestRate { requests: 4, per }));
    paced.authenticate(None).await.unwrap();
    let started = std::time::Instant::now();
    tokio::join!(four_reads(&paced), four_reads(&paced), four_reads(&paced), four_reads(&paced));
    let elapsed = started.elapsed();
    let requests = alert_requests(&sim);
    assert_eq!(requests.len(), 16, "no request was answered 429, so none was made again");
    assert!(requests.iter().all(|r| r.status == 200));
    // 16 requests, 4 in any 2 s: the last cannot go before 6 s.
    assert!(elapsed >= Duration::from_secs(6), "{elapsed:?}");
    assert!(paced.stats().paced_waits > 0);

    tokio::time::sleep(per).await;
    let unpaced = client(&sim);
    unpaced.authenticate(None).await.unwrap();
    tokio::join!(four_reads(&unpaced), four_reads(&unpaced), four_reads(&unpaced), four_reads(&unpaced));
    let requests = alert_requests(&sim);
    let throttled = requests[16..].iter().filter(|r| r.status == 429).count();
    assert!(throttled > 0, "the quota bites without the limit");
    assert_eq!(requests[16..].iter().filter(|r| r.status == 200).count(), 16);
    assert_eq!(unpaced.stats().throttled_responses, throttled as u64);
}
