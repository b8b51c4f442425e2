//! Configuration: every setting of the functions and the local runs, parsed once into typed
//! values. Every default is named in [`defaults`] (the engine's own come from `xdr-core`, which
//! tests use without this crate), and the README's table lists them. Parsing takes a lookup
//! function so tests pass a map instead of changing the environment.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use xdr_core::backfill::BackfillSettings;
use xdr_core::settings::{MAX_PAGE_SIZE, SyncSettings};
use xdr_core::stream::{ALERTS, INCIDENTS, Stream};
use xdr_core::tenants::TenantEntry;
pub use xdr_core::tenants::is_guid;
use xdr_core::timeutil::parse_instant;
use xdr_core::{OutputLayout, StateKeys};
use xdr_graph::{Cloud, Endpoints, GraphSettings, RequestRate, RetryPolicy};

use defaults::*;

/// Every setting's default, in one place.
pub mod defaults {
    // The engine's (`xdr-core` keeps them beside the settings they fill, for its own tests).
    pub use xdr_core::layout::{
        DEFAULT_CONTROL_PREFIX, DEFAULT_INCIDENTS_PREFIX, DEFAULT_OUTPUT_PREFIX, DEFAULT_QUARANTINE_PREFIX,
    };
    pub use xdr_core::settings::{
        DEFAULT_FINISH_RESERVE_MILLIS, DEFAULT_MAX_OBJECT_BYTES, DEFAULT_MAX_PAGES_PER_SLICE,
        DEFAULT_MAX_SKIP, DEFAULT_OVERLAP_MINUTES, DEFAULT_PAGE_SIZE, DEFAULT_SLICES_IN_FLIGHT,
    };
    // The Graph client's.
    pub use xdr_graph::client::DEFAULT_MAX_RESPONSE_BYTES;

    pub const DEFAULT_HTTP_TIMEOUT_SECONDS: u64 = 30;
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;
    pub const DEFAULT_BACKFILL_CONCURRENCY: usize = 4;
    /// Graph's only published security quota: 150 requests a minute per app and tenant.
    pub const DEFAULT_GRAPH_REQUESTS_PER_MINUTE: u32 = 150;
    pub const DEFAULT_TENANT_PARTITION: bool = false;
    /// Which streams the functions serve: alerts alone, so an update of an existing stack
    /// changes nothing until incidents are enabled.
    pub const DEFAULT_STREAMS: &str = "alerts";
    pub const DEFAULT_INCIDENTS_EXPAND_ALERTS: bool = false;
    pub const DEFAULT_OUTPUT_DIR: &str = "xdr-output";
    pub const DEFAULT_STATE_FILE: &str = "xdr-state/sync-state.json";
    pub const DEFAULT_SECRET_CACHE_SECONDS: u64 = 300;
    pub const DEFAULT_METRICS_NAMESPACE: &str = "XdrLake";
    /// A registered tenant whose data lags more than this (or whose run failed) is stale.
    pub const DEFAULT_STALE_AFTER_SECONDS: i64 = 3600;
}

/// A setting that is missing or malformed: which one, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {setting}: {problem}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

impl ConfigError {
    fn new(setting: &'static str, problem: impl Into<String>) -> Self {
        Self { setting, problem: problem.into() }
    }
}

/// What every mode needs: where the tenant is, and how the engine behaves.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// `TENANT_ID` as configured (a GUID or a domain); state keys use the GUID from the token.
    /// Empty in a registry-driven stack until [`SyncConfig::for_tenant`] names the tenant.
    pub tenant_id: String,
    /// The tenants come from a registry (`TENANTS_TABLE` is set), one per invocation.
    pub registry_driven: bool,
    /// A registered tenant is stale when its data lags more than this (`STALE_AFTER_SECONDS`).
    pub stale_after: TimeDelta,
    /// The streams the functions serve (`STREAMS`), in the order a run serves them.
    pub streams: Vec<Stream>,
    /// The stream this configuration reads (alerts unless made [`SyncConfig::for_stream`]).
    pub stream: Stream,
    /// The incidents' layout (`INCIDENTS_PREFIX` beside the alerts' settings), when served.
    pub incidents_layout: Option<OutputLayout>,
    /// `$expand=alerts` on incidents (`INCIDENTS_EXPAND_ALERTS`).
    pub expand_alerts: bool,
    /// Output under `tenant=<guid>/dt=...` (`TENANT_PARTITION`), for a lake of many tenants.
    pub tenant_partition: bool,
    pub cloud: Cloud,
    pub endpoints: Endpoints,
    pub engine: SyncSettings,
    pub http_timeout: Duration,
    pub max_attempts: u32,
    /// Backfill parts read at once (each one request at a time).
    pub backfill_concurrency: usize,
    /// The largest Graph answer read, before and after decompression.
    pub max_response_bytes: usize,
    /// At most this many Graph requests a minute per tenant, in this process
    /// (`GRAPH_REQUESTS_PER_MINUTE`; 0: no limit).
    pub graph_requests_per_minute: u32,
}

/// What a local run needs on top: credentials and the local places for output and state.
#[derive(Clone)]
pub struct LocalConfig {
    pub client_id: String,
    pub client_secret: SecretString,
    pub output_dir: PathBuf,
    pub state_file: PathBuf,
    /// Stop (and save progress) after this long; `None`: run to completion.
    pub run_timeout: Option<Duration>,
}

/// Reads settings: empty values count as unset.
pub struct Settings<F> {
    lookup: F,
}

impl<F: Fn(&str) -> Option<String>> Settings<F> {
    pub fn new(lookup: F) -> Self {
        Self { lookup }
    }

    pub fn optional(&self, name: &str) -> Option<String> {
        (self.lookup)(name).map(|value| value.trim().to_owned()).filter(|value| !value.is_empty())
    }

    pub fn required(&self, name: &'static str, hint: &str) -> Result<String, ConfigError> {
        self.optional(name).ok_or_else(|| ConfigError::new(name, format!("is not set; {hint}")))
    }

    pub fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy>(
        &self,
        name: &'static str,
        default: T,
        min: T,
        max: T,
    ) -> Result<T, ConfigError> {
        let Some(text) = self.optional(name) else { return Ok(default) };
        let value: T = text.parse().map_err(|_| {
            ConfigError::new(name, format!("`{text}` is not a whole number between {min} and {max}"))
        })?;
        if value < min || value > max {
            return Err(ConfigError::new(name, format!("{value} is out of range; use {min} to {max}")));
        }
        Ok(value)
    }

    pub fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(name).map(|value| value.to_ascii_lowercase()) {
            None => Ok(default),
            Some(value) if matches!(value.as_str(), "true" | "1" | "yes") => Ok(true),
            Some(value) if matches!(value.as_str(), "false" | "0" | "no") => Ok(false),
            Some(value) => Err(ConfigError::new(name, format!("`{value}` is not true or false"))),
        }
    }
}

impl SyncConfig {
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Self, ConfigError> {
        let settings = Settings::new(lookup);
        let registry_driven = settings.optional("TENANTS_TABLE").is_some();
        let tenant_id = if registry_driven {
            if settings.optional("TENANT_ID").is_some() {
                return Err(ConfigError::new(
                    "TENANT_ID",
                    "is set together with TENANTS_TABLE; a stack syncs either the one TENANT_ID or the tenants registered in TENANTS_TABLE, so unset one of them",
                ));
            }
            String::new()
        } else {
            let tenant_id = settings.required(
                "TENANT_ID",
                "set it to the Entra tenant id (a GUID) or its primary domain (or TENANTS_TABLE, for many tenants)",
            )?;
            check_tenant_id(&tenant_id).map_err(|problem| ConfigError::new("TENANT_ID", problem))?;
            tenant_id
        };
        let cloud = match settings.optional("CLOUD") {
            Some(text) => {
                text.parse::<Cloud>().map_err(|error| ConfigError::new("CLOUD", error.to_string()))?
            }
            None => Cloud::Global,
        };
        let endpoints = Endpoints::for_cloud(
            cloud,
            settings.optional("LOGIN_BASE_URL").as_deref(),
            settings.optional("GRAPH_BASE_URL").as_deref(),
        )
        .map_err(|error| ConfigError::new(error.setting, error.to_string()))?;

        let layout = OutputLayout::new(
            &settings.optional("OUTPUT_PREFIX").unwrap_or_else(|| ALERTS.default_prefix.into()),
            &settings.optional("QUARANTINE_PREFIX").unwrap_or_else(|| DEFAULT_QUARANTINE_PREFIX.into()),
        )
        .and_then(|layout| {
            layout.with_control_prefix(
                &settings.optional("CONTROL_PREFIX").unwrap_or_else(|| DEFAULT_CONTROL_PREFIX.into()),
            )
        })
        .map_err(|error| {
            let setting = match &error {
                xdr_core::layout::LayoutError::Empty { setting }
                | xdr_core::layout::LayoutError::BadSegment { setting, .. } => setting,
                xdr_core::layout::LayoutError::Overlap { .. } => "QUARANTINE_PREFIX",
                xdr_core::layout::LayoutError::ControlOverlap { .. } => "CONTROL_PREFIX",
            };
            ConfigError::new(setting, error.to_string())
        })?;
        let backfill_start = match settings.optional("BACKFILL_START") {
            None => None,
            Some(text) => {
                let start = parse_instant(&text).ok_or_else(|| {
                    ConfigError::new(
                        "BACKFILL_START",
                        format!("`{text}` is not an RFC 3339 time like 2026-11-01T00:00:00Z"),
                    )
                })?;
                if start > now {
                    return Err(ConfigError::new("BACKFILL_START", format!("{text} is in the future")));
                }
                Some(start)
            }
        };
        let overlap_minutes = settings.number("OVERLAP_MINUTES", DEFAULT_OVERLAP_MINUTES, 0, 24 * 60)?;
        let page_size = settings.number("PAGE_SIZE", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)?;
        let max_pages_per_slice =
            settings.number("MAX_PAGES_PER_SLICE", DEFAULT_MAX_PAGES_PER_SLICE, 1, 100)?;
        let max_skip = settings.number("MAX_SKIP", DEFAULT_MAX_SKIP, 0, 100_000)?;
        let slices_in_flight = settings.number(
            "GRAPH_SLICES_IN_FLIGHT",
            DEFAULT_SLICES_IN_FLIGHT,
            1,
            xdr_core::settings::MAX_SLICES_IN_FLIGHT,
        )?;
        let accept_incomplete_instants = match settings.optional("ACCEPT_INCOMPLETE_INSTANTS") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|text| !text.is_empty())
                .map(|text| {
                    parse_instant(text).ok_or_else(|| {
                        ConfigError::new(
                            "ACCEPT_INCOMPLETE_INSTANTS",
                            format!("`{text}` is not an RFC 3339 instant; copy it from the InstantUnreadableError message"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let max_object_mb =
            settings.number("MAX_OBJECT_MB", (DEFAULT_MAX_OBJECT_BYTES / (1024 * 1024)) as u64, 1, 1024)?;
        let finish_reserve_ms =
            settings.number("FINISH_RESERVE_MS", DEFAULT_FINISH_RESERVE_MILLIS, 100, 60_000)?;
        let http_timeout = settings.number("HTTP_TIMEOUT_SECONDS", DEFAULT_HTTP_TIMEOUT_SECONDS, 1, 900)?;
        let max_attempts = settings.number("MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS, 1, 20)?;
        let backfill_concurrency =
            settings.number("BACKFILL_CONCURRENCY", DEFAULT_BACKFILL_CONCURRENCY, 1, 16)?;
        let graph_requests_per_minute =
            settings.number("GRAPH_REQUESTS_PER_MINUTE", DEFAULT_GRAPH_REQUESTS_PER_MINUTE, 0, 100_000)?;
        let max_response_mb = settings.number(
            "MAX_RESPONSE_MB",
            (DEFAULT_MAX_RESPONSE_BYTES / (1024 * 1024)) as u64,
            1,
            1024,
        )?;

        let tenant_partition =
            settings.flag("TENANT_PARTITION", registry_driven || DEFAULT_TENANT_PARTITION)?;
        if registry_driven && !tenant_partition {
            return Err(ConfigError::new(
                "TENANT_PARTITION",
                "is false with TENANTS_TABLE set; the tenants of a registry share the prefixes, so each one's data goes under tenant=<guid>/ (leave TENANT_PARTITION unset)",
            ));
        }
        let stale_after = TimeDelta::seconds(settings.number(
            "STALE_AFTER_SECONDS",
            DEFAULT_STALE_AFTER_SECONDS,
            60,
            7 * 86_400,
        )?);
        let streams = parse_streams(&settings.optional("STREAMS").unwrap_or_else(|| DEFAULT_STREAMS.into()))?;
        // Checked only when incidents are served: a stack that syncs alerts alone keeps working
        // whatever its OUTPUT_PREFIX (`defender-xdr` would hold the default incidents prefix).
        let incidents_layout = if streams.contains(&INCIDENTS) {
            let prefix =
                settings.optional("INCIDENTS_PREFIX").unwrap_or_else(|| DEFAULT_INCIDENTS_PREFIX.into());
            Some(incidents_layout(&layout, &prefix)?)
        } else {
            None
        };
        let expand_alerts = settings.flag("INCIDENTS_EXPAND_ALERTS", DEFAULT_INCIDENTS_EXPAND_ALERTS)?;

        Ok(Self {
            tenant_id,
            registry_driven,
            stale_after,
            streams,
            stream: ALERTS,
            incidents_layout,
            expand_alerts,
            tenant_partition,
            cloud,
            endpoints,
            engine: SyncSettings {
                stream: ALERTS,
                layout,
                overlap: TimeDelta::minutes(overlap_minutes),
                page_size,
                max_pages_per_slice,
                max_skip,
                accept_incomplete_instants,
                max_object_bytes: (max_object_mb as usize) * 1024 * 1024,
                // Not settings: they keep the state inside one DynamoDB item.
                max_object_records: xdr_core::settings::DEFAULT_MAX_OBJECT_RECORDS,
                backfill_start,
                finish_reserve: TimeDelta::milliseconds(finish_reserve_ms),
                window_end: None,
                slices_in_flight,
            },
            http_timeout: Duration::from_secs(http_timeout),
            max_attempts,
            backfill_concurrency,
            max_response_bytes: (max_response_mb as usize) * 1024 * 1024,
            graph_requests_per_minute,
        })
    }

    /// The same configuration reading `stream`: its layout, its page size (`PAGE_SIZE` clamped
    /// to what Graph accepts for it), its keys and its Graph path.
    /// A stream the functions do not serve is refused, naming `STREAMS`.
    pub fn for_stream(&self, stream: Stream) -> Result<SyncConfig, ConfigError> {
        if !self.serves(stream) {
            let served: Vec<&str> = self.streams.iter().map(|stream| stream.name).collect();
            return Err(ConfigError::new(
                "STREAMS",
                format!(
                    "`{}` is not served (STREAMS is `{}`); add it to STREAMS to sync or backfill it",
                    stream.name,
                    served.join(",")
                ),
            ));
        }
        let mut config = self.clone();
        config.stream = stream;
        config.engine.stream = stream;
        config.engine.page_size = self.engine.page_size.min(stream.max_page_size);
        if stream == INCIDENTS
            && let Some(layout) = &self.incidents_layout
        {
            config.engine.layout = layout.clone();
        }
        Ok(config)
    }

    /// The configuration of one registered tenant: its GUID, the streams it asks for (of those
    /// the stack serves), its own backfill start, and its data under `tenant=<guid>/`.
    pub fn for_tenant(&self, entry: &TenantEntry) -> Result<SyncConfig, ConfigError> {
        let mut config = self.clone();
        config.tenant_id = entry.tenant_id.clone();
        config.tenant_partition = true;
        if let Some(wanted) = &entry.streams {
            let streams: Vec<Stream> = self.streams.iter().copied().filter(|s| wanted.contains(s)).collect();
            if streams.is_empty() {
                return Err(ConfigError::new(
                    "STREAMS",
                    format!(
                        "tenant {} asks for `{}`, which this stack does not serve (STREAMS is `{}`)",
                        entry.tenant_id,
                        xdr_core::tenants::stream_list(wanted),
                        xdr_core::tenants::stream_list(&self.streams)
                    ),
                ));
            }
            config.streams = streams;
        }
        if entry.backfill_start.is_some() {
            config.engine.backfill_start = entry.backfill_start;
        }
        Ok(config)
    }

    /// Whether the functions serve `stream` (`STREAMS`).
    pub fn serves(&self, stream: Stream) -> bool {
        self.streams.contains(&stream)
    }

    /// The keys of this stream's items for the tenant Entra named (`tenant` is the token's
    /// GUID), and where earlier releases kept them.
    pub fn keys(&self, tenant: &str) -> (StateKeys, Vec<StateKeys>) {
        let keys = StateKeys::new(tenant, self.stream);
        // The first release served one TENANT_ID; a registry's tenants were never under its keys.
        let previous = if self.registry_driven { Vec::new() } else { keys.previous(&self.tenant_id) };
        (keys, previous)
    }

    /// The engine's settings for the tenant Entra named: its layout gets the `tenant=`
    /// partition when configured.
    pub fn engine_for(&self, tenant: &str) -> SyncSettings {
        let mut engine = self.engine.clone();
        if self.tenant_partition {
            engine.layout = engine.layout.with_tenant_partition(tenant);
        }
        engine
    }

    pub fn backfill_settings(&self, tenant: &str) -> BackfillSettings {
        BackfillSettings { sync: self.engine_for(tenant), concurrency: self.backfill_concurrency }
    }

    pub fn graph_settings(&self) -> GraphSettings {
        GraphSettings {
            stream: self.stream,
            tenant_id: self.tenant_id.clone(),
            endpoints: self.endpoints.clone(),
            request_timeout: self.http_timeout,
            retry: RetryPolicy { max_attempts: self.max_attempts, ..RetryPolicy::default() },
            max_response_bytes: self.max_response_bytes,
            expand_alerts: self.expand_alerts,
            request_rate: (self.graph_requests_per_minute > 0)
                .then(|| RequestRate::per_minute(self.graph_requests_per_minute)),
        }
    }
}

/// The incidents' layout beside the alerts' `layout`: `prefix` must be outside the alerts' data,
/// the quarantine and the control prefix.
fn incidents_layout(layout: &OutputLayout, prefix: &str) -> Result<OutputLayout, ConfigError> {
    let incidents = layout.for_stream(INCIDENTS, "INCIDENTS_PREFIX", prefix).map_err(|error| {
        let problem = match error {
            xdr_core::layout::LayoutError::Overlap { data, quarantine } => format!(
                "`{data}` overlaps the quarantine `{quarantine}`; the incidents' data must live outside QUARANTINE_PREFIX"
            ),
            other => other.to_string(),
        };
        ConfigError::new("INCIDENTS_PREFIX", problem)
    })?;
    let (alerts_data, incidents_data) = (layout.data_prefix(), incidents.data_prefix());
    let inside = |outer: &str, inner: &str| inner == outer || inner.starts_with(&format!("{outer}/"));
    if inside(alerts_data, incidents_data) || inside(incidents_data, alerts_data) {
        return Err(ConfigError::new(
            "INCIDENTS_PREFIX",
            format!(
                "`{incidents_data}` overlaps OUTPUT_PREFIX `{alerts_data}`; each Athena table reads everything under its prefix, so the two streams need disjoint folders"
            ),
        ));
    }
    Ok(incidents)
}

/// `STREAMS`: stream names separated by commas, each known, at least one, in the product's order.
fn parse_streams(text: &str) -> Result<Vec<Stream>, ConfigError> {
    xdr_core::tenants::parse_stream_list(text).map_err(|problem| ConfigError::new("STREAMS", problem))
}

/// Where the functions keep things on AWS.
#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub credentials_secret_id: String,
    pub state_table: String,
    pub output_bucket: String,
    pub s3_force_path_style: bool,
    pub secret_cache: Duration,
    /// CloudWatch namespace of the run metrics (EMF on stdout).
    pub metrics_namespace: String,
    /// The tenant registry (`TENANTS_TABLE`, a DynamoDB table keyed by `tenant_id`), when the
    /// stack syncs many tenants.
    pub tenants_table: Option<String>,
}

impl AwsConfig {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let settings = Settings::new(lookup);
        Ok(Self {
            credentials_secret_id: settings.required(
                "CREDENTIALS_SECRET_ID",
                "set it to the name or ARN of the Secrets Manager secret holding {\"client_id\", \"client_secret\"}",
            )?,
            state_table: settings.required("STATE_TABLE", "set it to the DynamoDB table (string partition key `pk`)")?,
            output_bucket: settings.required("OUTPUT_BUCKET", "set it to the S3 bucket for the alerts")?,
            s3_force_path_style: settings.flag("S3_FORCE_PATH_STYLE", false)?,
            secret_cache: Duration::from_secs(settings.number(
                "SECRET_CACHE_SECONDS",
                DEFAULT_SECRET_CACHE_SECONDS,
                0,
                86_400,
            )?),
            metrics_namespace: settings
                .optional("METRICS_NAMESPACE")
                .unwrap_or_else(|| DEFAULT_METRICS_NAMESPACE.to_owned()),
            tenants_table: settings.optional("TENANTS_TABLE"),
        })
    }
}

/// `TENANT_ID` goes into the token URL's path: only a GUID or a DNS name may (no `/`, `\`, `@`,
/// `%`, `..` or anything else that could move the request, and the secret, to another host).
fn check_tenant_id(text: &str) -> Result<(), String> {
    if is_guid(text) {
        return Ok(());
    }
    let labels: Vec<&str> = text.split('.').collect();
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let is_domain = text.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(label_ok)
        && labels.last().is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()));
    if is_domain {
        Ok(())
    } else {
        Err(format!(
            "`{}` is neither a tenant id (a GUID like 72f988bf-86f1-41af-91ab-2d7cd011db47) nor a domain name (like contoso.onmicrosoft.com)",
            text.escape_debug()
        ))
    }
}

impl LocalConfig {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let settings = Settings::new(lookup);
        let client_id =
            settings.required("CLIENT_ID", "set it to the app registration's Application (client) ID")?;
        let client_secret = SecretString::from(settings.required(
            "CLIENT_SECRET",
            "set it to the Value of a client secret of the app registration (not its Secret ID)",
        )?);
        let run_timeout = match settings.number("RUN_TIMEOUT_SECONDS", 0u64, 0, 7 * 24 * 3600)? {
            0 => None,
            seconds => Some(Duration::from_secs(seconds)),
        };
        Ok(Self {
            client_id,
            client_secret,
            output_dir: PathBuf::from(
                settings.optional("OUTPUT_DIR").unwrap_or_else(|| DEFAULT_OUTPUT_DIR.into()),
            ),
            state_file: PathBuf::from(
                settings.optional("STATE_FILE").unwrap_or_else(|| DEFAULT_STATE_FILE.into()),
            ),
            run_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn now() -> DateTime<Utc> {
        parse_instant("2026-11-28T06:00:00Z").unwrap()
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<SyncConfig, ConfigError> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        SyncConfig::from_lookup(|name| map.get(name).cloned(), now())
    }

    #[test]
    fn defaults_apply_when_only_the_tenant_is_set() {
        let config = parse(&[("TENANT_ID", "contoso.onmicrosoft.com")]).unwrap();
        assert_eq!(config.cloud, Cloud::Global);
        assert_eq!(config.endpoints.graph.as_str(), "https://graph.microsoft.com/");
        assert_eq!(config.engine.layout.data_prefix(), "defender-xdr/alerts");
        assert_eq!(config.engine.overlap, TimeDelta::minutes(15));
        assert_eq!(config.engine.page_size, 1000);
        assert_eq!(config.engine.max_object_bytes, 32 * 1024 * 1024);
        assert_eq!(config.engine.backfill_start, None);
        assert_eq!(config.engine.max_skip, 500);
        assert_eq!(config.engine.slices_in_flight, 2);
        assert!(config.engine.accept_incomplete_instants.is_empty());
        assert_eq!(config.streams, vec![ALERTS]);
        assert!(!config.expand_alerts);
        assert!(config.for_stream(INCIDENTS).unwrap_err().to_string().contains("STREAMS"));
        assert_eq!(config.graph_settings().request_rate, Some(RequestRate::per_minute(150)));
        let unlimited = parse(&[("TENANT_ID", "t.example"), ("GRAPH_REQUESTS_PER_MINUTE", "0")]).unwrap();
        assert_eq!(unlimited.graph_settings().request_rate, None);
    }

    #[test]
    fn incidents_have_their_own_prefix_page_size_and_keys() {
        let config = parse(&[
            ("TENANT_ID", "t.example"),
            ("STREAMS", " incidents , ALERTS"),
            ("INCIDENTS_EXPAND_ALERTS", "true"),
            ("TENANT_PARTITION", "true"),
        ])
        .unwrap();
        assert_eq!(config.streams, vec![ALERTS, INCIDENTS], "the product's order, whatever the setting's");
        let incidents = config.for_stream(INCIDENTS).unwrap();
        assert_eq!(incidents.engine.layout.data_prefix(), "defender-xdr/incidents");
        assert_eq!(incidents.engine.layout.quarantine_prefix(), "defender-xdr/quarantine/incidents");
        assert_eq!(incidents.engine.page_size, 50, "Graph answers 400 to a larger $top on incidents");
        assert_eq!(incidents.engine.stream, INCIDENTS);
        assert_eq!(incidents.graph_settings().stream, INCIDENTS);
        assert!(incidents.graph_settings().expand_alerts);
        assert_eq!(incidents.keys("g").0.sync(), "sync#g#incidents");
        assert!(incidents.keys("g").1.is_empty(), "the first release had no incidents");
        assert!(
            incidents
                .engine_for("AB")
                .layout
                .data_key(
                    chrono::NaiveDate::from_ymd_opt(2026, 11, 28).unwrap(),
                    &xdr_core::layout::ObjectName::new(now(), "r", 1)
                )
                .starts_with("defender-xdr/incidents/tenant=ab/dt=2026-11-28/")
        );
        let alerts = config.for_stream(ALERTS).unwrap();
        assert_eq!(alerts.engine.page_size, 1000);
        assert_eq!(alerts.engine.layout.data_prefix(), "defender-xdr/alerts");
        // Alerts alone: an OUTPUT_PREFIX that would hold the incidents' default is fine.
        assert!(
            parse(&[("TENANT_ID", "t.example"), ("OUTPUT_PREFIX", "defender-xdr/incidents/old")]).is_ok()
        );
    }

    #[test]
    fn each_bad_setting_is_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "TENANT_ID"),
            (&[("TENANT_ID", "t.example"), ("CLOUD", "mars")], "CLOUD"),
            (&[("TENANT_ID", "t.example"), ("GRAPH_BASE_URL", "graph")], "GRAPH_BASE_URL"),
            (&[("TENANT_ID", "t.example"), ("LOGIN_BASE_URL", "ftp://x")], "LOGIN_BASE_URL"),
            (&[("TENANT_ID", "t.example"), ("BACKFILL_START", "last week")], "BACKFILL_START"),
            (&[("TENANT_ID", "t.example"), ("BACKFILL_START", "2027-01-01T00:00:00Z")], "BACKFILL_START"),
            (&[("TENANT_ID", "t.example"), ("PAGE_SIZE", "5000")], "PAGE_SIZE"),
            (&[("TENANT_ID", "t.example"), ("PAGE_SIZE", "many")], "PAGE_SIZE"),
            (&[("TENANT_ID", "t.example"), ("OVERLAP_MINUTES", "-1")], "OVERLAP_MINUTES"),
            (&[("TENANT_ID", "t.example"), ("OUTPUT_PREFIX", "a//b")], "OUTPUT_PREFIX"),
            (
                &[("TENANT_ID", "t.example"), ("OUTPUT_PREFIX", "x"), ("QUARANTINE_PREFIX", "x/q")],
                "QUARANTINE_PREFIX",
            ),
            (&[("TENANT_ID", "t.example"), ("MAX_OBJECT_MB", "0")], "MAX_OBJECT_MB"),
            (&[("TENANT_ID", "t.example"), ("STREAMS", "alerts,incident")], "STREAMS"),
            (&[("TENANT_ID", "t.example"), ("STREAMS", " , ")], "STREAMS"),
            (&[("TENANT_ID", "t.example"), ("INCIDENTS_EXPAND_ALERTS", "maybe")], "INCIDENTS_EXPAND_ALERTS"),
            (
                &[
                    ("TENANT_ID", "t.example"),
                    ("STREAMS", "alerts,incidents"),
                    ("INCIDENTS_PREFIX", "defender-xdr/alerts/inc"),
                ],
                "INCIDENTS_PREFIX",
            ),
            (
                &[
                    ("TENANT_ID", "t.example"),
                    ("STREAMS", "incidents"),
                    ("OUTPUT_PREFIX", "defender-xdr/incidents/old"),
                ],
                "INCIDENTS_PREFIX",
            ),
            (
                &[
                    ("TENANT_ID", "t.example"),
                    ("STREAMS", "incidents"),
                    ("INCIDENTS_PREFIX", "defender-xdr/quarantine/i"),
                ],
                "INCIDENTS_PREFIX",
            ),
            (&[("TENANT_ID", "a/b")], "TENANT_ID"),
            (&[("TENANT_ID", "\\\\evil.example")], "TENANT_ID"),
            (&[("TENANT_ID", "evil.example\\x")], "TENANT_ID"),
            (&[("TENANT_ID", "contoso")], "TENANT_ID"),
            (&[("TENANT_ID", "user@evil.example")], "TENANT_ID"),
            (&[("TENANT_ID", "evil.example%2f")], "TENANT_ID"),
            (&[("TENANT_ID", "..")], "TENANT_ID"),
            (&[("TENANT_ID", "10.0.0.1")], "TENANT_ID"),
            (&[("TENANT_ID", "-a.example")], "TENANT_ID"),
            (&[("TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db4g")], "TENANT_ID"),
            (
                &[("TENANT_ID", "t.example"), ("GRAPH_BASE_URL", "http://graph.microsoft.com")],
                "GRAPH_BASE_URL",
            ),
            (&[("TENANT_ID", "t.example"), ("LOGIN_BASE_URL", "http://10.1.2.3:8080")], "LOGIN_BASE_URL"),
            (&[("TENANT_ID", "t.example"), ("MAX_RESPONSE_MB", "0")], "MAX_RESPONSE_MB"),
            (&[("TENANT_ID", "t.example"), ("MAX_SKIP", "-5")], "MAX_SKIP"),
            (&[("TENANT_ID", "t.example"), ("GRAPH_SLICES_IN_FLIGHT", "0")], "GRAPH_SLICES_IN_FLIGHT"),
            (&[("TENANT_ID", "t.example"), ("GRAPH_SLICES_IN_FLIGHT", "5")], "GRAPH_SLICES_IN_FLIGHT"),
            (
                &[("TENANT_ID", "t.example"), ("GRAPH_REQUESTS_PER_MINUTE", "150/min")],
                "GRAPH_REQUESTS_PER_MINUTE",
            ),
            (
                &[("TENANT_ID", "t.example"), ("ACCEPT_INCOMPLETE_INSTANTS", "2026-11-28T06:00:00Z, soon")],
                "ACCEPT_INCOMPLETE_INSTANTS",
            ),
        ];
        for (pairs, setting) in cases {
            let error = parse(pairs).expect_err(setting);
            assert_eq!(error.setting, *setting, "{error}");
            assert!(error.to_string().contains(setting));
        }
    }

    #[test]
    fn backfill_start_and_overrides_are_read() {
        let config = parse(&[
            ("TENANT_ID", "t.example"),
            ("CLOUD", "usgov"),
            ("GRAPH_BASE_URL", "http://127.0.0.1:9000"),
            ("BACKFILL_START", "2026-11-01T00:00:00Z"),
            ("OUTPUT_PREFIX", "/lake/xdr/"),
        ])
        .unwrap();
        assert_eq!(config.endpoints.login.as_str(), "https://login.microsoftonline.us/");
        assert_eq!(config.endpoints.graph.as_str(), "http://127.0.0.1:9000/");
        assert_eq!(config.engine.backfill_start, parse_instant("2026-11-01T00:00:00Z"));
        assert_eq!(config.engine.layout.data_prefix(), "lake/xdr");
    }

    #[test]
    fn tenant_ids_are_guids_or_domain_names() {
        for good in [
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "72F988BF-86F1-41AF-91AB-2D7CD011DB47",
            "contoso.onmicrosoft.com",
            "contoso.onmicrosoft.us",
            "sub-1.contoso.co.uk",
        ] {
            assert_eq!(check_tenant_id(good), Ok(()), "{good}");
        }
        let error = parse(&[("TENANT_ID", "\\\\evil.example")]).unwrap_err();
        assert!(error.problem.contains(r"`\\\\evil.example`"), "{error}");
        let config = parse(&[("TENANT_ID", "t.example")]).unwrap();
        assert_eq!(config.max_response_bytes, 128 * 1024 * 1024);
        assert!(config.max_response_bytes > 1000 * 100 * 1000, "a page of 1,000 alerts of 100 KB fits");
    }

    #[test]
    fn aws_settings_are_named_when_missing_or_wrong() {
        let parse = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> =
                pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            AwsConfig::from_lookup(|name| map.get(name).cloned())
        };
        assert_eq!(parse(&[]).unwrap_err().setting, "CREDENTIALS_SECRET_ID");
        assert_eq!(parse(&[("CREDENTIALS_SECRET_ID", "s")]).unwrap_err().setting, "STATE_TABLE");
        assert_eq!(
            parse(&[("CREDENTIALS_SECRET_ID", "s"), ("STATE_TABLE", "t")]).unwrap_err().setting,
            "OUTPUT_BUCKET"
        );
        let full = [
            ("CREDENTIALS_SECRET_ID", "s"),
            ("STATE_TABLE", "t"),
            ("OUTPUT_BUCKET", "b"),
            ("S3_FORCE_PATH_STYLE", "maybe"),
        ];
        assert_eq!(parse(&full).unwrap_err().setting, "S3_FORCE_PATH_STYLE");
        let ok = parse(&[
            ("CREDENTIALS_SECRET_ID", "s"),
            ("STATE_TABLE", "t"),
            ("OUTPUT_BUCKET", "b"),
            ("S3_FORCE_PATH_STYLE", "true"),
        ])
        .unwrap();
        assert!(ok.s3_force_path_style);
        assert_eq!(ok.secret_cache, Duration::from_secs(300));
        assert_eq!(ok.metrics_namespace, "XdrLake");
    }

    #[test]
    fn the_tenant_partition_goes_into_the_layout_and_keys_use_the_guid() {
        let guid = "5db5d7e5-4c1e-4a31-9c5e-0123456789ab";
        let plain = parse(&[("TENANT_ID", "contoso.onmicrosoft.com")]).unwrap();
        assert!(!plain.tenant_partition);
        assert_eq!(plain.engine_for(guid).layout, plain.engine.layout);
        let (keys, previous) = plain.keys(guid);
        assert_eq!(keys.sync(), format!("sync#{guid}#alerts"));
        assert_eq!(previous.len(), 2);
        let many = parse(&[("TENANT_ID", guid), ("TENANT_PARTITION", "true")]).unwrap();
        let date = chrono::NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        let name = xdr_core::layout::ObjectName::new(now(), "r", 1);
        assert!(many.engine_for(guid).layout.data_key(date, &name).contains(&format!("/tenant={guid}/dt=")));
        assert_eq!(
            parse(&[("TENANT_ID", guid), ("TENANT_PARTITION", "2")]).unwrap_err().setting,
            "TENANT_PARTITION"
        );
    }

    #[test]
    fn a_registry_driven_stack_takes_each_tenant_from_its_entry() {
        let guid = "5db5d7e5-4c1e-4a31-9c5e-0123456789ab";
        let stack = parse(&[("TENANTS_TABLE", "tenants"), ("STREAMS", "alerts,incidents")]).unwrap();
        assert!(stack.registry_driven && stack.tenant_partition);
        assert_eq!(stack.stale_after, TimeDelta::hours(1));
        let start = parse_instant("2026-11-01T00:00:00Z");
        let entry = TenantEntry {
            tenant_id: guid.into(),
            display_name: "Contoso".into(),
            secret_id: None,
            streams: Some(vec![INCIDENTS]),
            backfill_start: start,
            enabled: true,
            updated_at: now(),
        };
        let tenant = stack.for_tenant(&entry).unwrap();
        assert_eq!(tenant.tenant_id, guid);
        assert_eq!(tenant.streams, vec![INCIDENTS]);
        assert_eq!(tenant.engine.backfill_start, start);
        let (keys, previous) = tenant.keys(guid);
        assert_eq!(keys.sync(), format!("sync#{guid}#alerts"));
        assert!(previous.is_empty(), "a registry's tenants have no first-release keys");
        let date = chrono::NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        let name = xdr_core::layout::ObjectName::new(now(), "r", 1);
        assert!(
            tenant.engine_for(guid).layout.data_key(date, &name).contains(&format!("/tenant={guid}/dt="))
        );
        // Every stream the stack serves when the entry names none; none it does not serve.
        let all = stack.for_tenant(&TenantEntry { streams: None, ..entry.clone() }).unwrap();
        assert_eq!(all.streams, vec![ALERTS, INCIDENTS]);
        let alerts_only = parse(&[("TENANTS_TABLE", "tenants")]).unwrap();
        let error = alerts_only.for_tenant(&entry).unwrap_err();
        assert!(error.problem.contains("does not serve"), "{error}");

        let both = parse(&[("TENANTS_TABLE", "tenants"), ("TENANT_ID", guid)]).unwrap_err();
        assert_eq!(both.setting, "TENANT_ID");
        let flat = parse(&[("TENANTS_TABLE", "tenants"), ("TENANT_PARTITION", "false")]).unwrap_err();
        assert_eq!(flat.setting, "TENANT_PARTITION");
        assert_eq!(parse(&[]).unwrap_err().setting, "TENANT_ID");
    }

    #[test]
    fn local_settings_need_credentials() {
        let error = LocalConfig::from_lookup(|_| None).err().unwrap();
        assert_eq!(error.setting, "CLIENT_ID");
        let error =
            LocalConfig::from_lookup(|name| (name == "CLIENT_ID").then(|| "id".into())).err().unwrap();
        assert_eq!(error.setting, "CLIENT_SECRET");
    }
}
