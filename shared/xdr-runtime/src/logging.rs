//! Logs: human-readable to stderr by default, JSON when Lambda asks (`AWS_LAMBDA_LOG_FORMAT=JSON`).
//! `RUST_LOG` (or `AWS_LAMBDA_LOG_LEVEL`) overrides the level.

use tracing_subscriber::EnvFilter;

pub fn init(default_level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().map(|level| level.to_ascii_lowercase()))
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new(default_level));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = if json {
        builder.json().with_current_span(true).flatten_event(true).with_target(false).try_init()
    } else {
        builder.with_target(false).compact().try_init()
    };
    // A second init (tests) keeps the first subscriber.
    drop(result);
}
