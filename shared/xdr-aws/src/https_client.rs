//! The AWS SDK's HTTPS client, trusting the roots Graph's client already read.

use aws_sdk_dynamodb::config::SharedHttpClient;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, ConnectorBuilder};

/// The client the SDK would build by default (rustls on aws-lc, the proxy from the
/// environment, the SDK's timeouts and sleep), except that its trusted roots are the ones
/// [`xdr_graph::trust_roots`] read once for both stacks instead of a second reading of the
/// system's store. `None` when the system has no roots: the SDK's default then stands.
pub(crate) fn https_client() -> Option<SharedHttpClient> {
    let roots = xdr_graph::trust_roots::platform_roots_pem();
    if roots.is_empty() {
        return None;
    }
    let trust = TrustStore::empty().with_native_roots(false).with_pem_certificate(roots.into_bytes());
    let context = TlsContext::builder().with_trust_store(trust).build().ok()?;
    // As aws-smithy-runtime's `default_https_client` builds it (the SDK's own default).
    Some(Builder::new().build_with_connector_fn(move |settings, components| {
        // Each service client, when built, asks for a connector without runtime components only
        // to load the system's certificates early, and drops it; they are loaded already, and
        // building a TLS connector parses every root again (a quarter of the cold start for
        // four clients). The connectors that send requests come with components, one per
        // distinct set of settings, kept by the SDK for every later request.
        let Some(components) = components else {
            return ConnectorBuilder::default().build_http();
        };
        let mut connector = ConnectorBuilder::default()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(context.clone());
        connector.set_connector_settings(settings.cloned());
        connector.set_sleep_impl(components.sleep_impl());
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    }))
}

/// The standard AWS configuration chain (region, credentials, endpoints), with that client.
pub(crate) async fn load_config() -> aws_config::SdkConfig {
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    match https_client() {
        Some(client) => loader.http_client(client).load().await,
        None => loader.load().await,
    }
}
