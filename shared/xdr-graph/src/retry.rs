//! When and how long to wait before trying again. One classifier, one backoff.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// First backoff when the server gives no `Retry-After`; doubles per attempt.
    pub base_delay: Duration,
    /// Longest single backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 6, base_delay: Duration::from_millis(500), max_delay: Duration::from_secs(30) }
    }
}

/// Statuses worth retrying: throttling and the transient server errors Graph documents.
pub fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// Errors worth retrying: the request may not have reached Graph, or the answer was cut off.
pub fn is_retryable_transport(error: &reqwest::Error) -> bool {
    error.is_timeout() || error.is_connect() || error.is_request() || error.is_body() || error.is_decode()
}

/// The TLS verifier's reason, when the server's certificate was refused: asking again would
/// be refused again, and "kept failing" would hide why. rustls's error sits inside `io::Error`s
/// (one in another, as hyper wraps it), whose `source()` skips what they wrap, so each one is
/// looked into as well.
pub fn refused_certificate(error: &reqwest::Error) -> Option<String> {
    certificate_reason(error, 0)
}

fn certificate_reason(error: &(dyn std::error::Error + 'static), depth: usize) -> Option<String> {
    // Error chains are short; the bound only keeps a cyclic one from recursing for ever.
    if depth > 16 {
        return None;
    }
    if let Some(rustls::Error::InvalidCertificate(reason)) = error.downcast_ref::<rustls::Error>() {
        return Some(format!("{reason:?}"));
    }
    let wrapped = error.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
    if let Some(reason) = wrapped.and_then(|inner| certificate_reason(inner, depth + 1)) {
        return Some(reason);
    }
    error.source().and_then(|source| certificate_reason(source, depth + 1))
}

/// The longest `Retry-After` taken as given: a Lambda invocation lasts at most 15 minutes, and a
/// larger value (or one too large for `Duration` and `Instant` arithmetic) is waited as this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// `Retry-After` as seconds or as an HTTP date, at most [`MAX_RETRY_AFTER`]. Any header value
/// gives an answer or `None`, never a panic.
pub fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        if seconds.is_nan() || seconds < 0.0 {
            return None;
        }
        let capped = seconds.min(MAX_RETRY_AFTER.as_secs_f64());
        return Some(
            Duration::try_from_secs_f64(capped).map_or(MAX_RETRY_AFTER, |wait| wait.min(MAX_RETRY_AFTER)),
        );
    }
    let when = DateTime::parse_from_rfc2822(text).ok()?.with_timezone(&Utc);
    let wait = when.signed_duration_since(now).to_std().unwrap_or(Duration::ZERO);
    Some(wait.min(MAX_RETRY_AFTER))
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`: at least `Retry-After` when given (plus a little
    /// jitter so parallel clients don't return in lockstep), else capped exponential backoff
    /// with full jitter in its upper half.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(wait) => {
                let wait = wait.min(MAX_RETRY_AFTER);
                wait.saturating_add(wait.mul_f64(0.1 * fastrand::f64()))
                    .saturating_add(Duration::from_millis(fastrand::u64(0..100)))
            }
            None => {
                let exponent = attempt.saturating_sub(1).min(16);
                let full = self.base_delay.saturating_mul(1 << exponent).min(self.max_delay);
                full.mul_f64(0.5 + 0.5 * fastrand::f64())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn reads_retry_after_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2026-11-28T04:30:00Z").unwrap().with_timezone(&Utc);
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(2)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Sat, 28 Nov 2026 04:30:07 GMT"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn no_retry_after_value_can_overflow() {
        let now = DateTime::parse_from_rfc3339("2026-11-28T04:30:00Z").unwrap().with_timezone(&Utc);
        let policy = RetryPolicy::default();
        for text in [
            "1e300",
            "1e19",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999999",
            "inf",
            "Infinity",
            "NaN",
            "-1",
            "-0",
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "Mon, 01 Jan 1900 00:00:00 GMT",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_str(text).unwrap());
            let wait = retry_after(&headers, now);
            assert!(wait.is_none_or(|wait| wait <= MAX_RETRY_AFTER), "{text}: {wait:?}");
            let delay = policy.delay(3, wait);
            assert!(delay <= MAX_RETRY_AFTER.mul_f64(1.1) + Duration::from_millis(100), "{text}");
            assert!(std::time::Instant::now().checked_add(delay).is_some());
        }
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("1e19"));
        assert_eq!(retry_after(&headers, now), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn never_waits_less_than_retry_after_and_backs_off_without_it() {
        let policy = RetryPolicy::default();
        for attempt in 1..6 {
            assert!(policy.delay(attempt, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        }
        let first = policy.delay(1, None);
        assert!(first >= Duration::from_millis(250) && first <= Duration::from_millis(500));
        let fifth = policy.delay(5, None);
        assert!(fifth >= Duration::from_secs(4) && fifth <= Duration::from_secs(8));
        assert!(policy.delay(30, None) <= policy.max_delay);
    }

    #[test]
    fn classifies_statuses() {
        for code in [429, 500, 502, 503, 504] {
            assert!(is_retryable_status(StatusCode::from_u16(code).unwrap()));
        }
        for code in [400, 401, 403, 404] {
            assert!(!is_retryable_status(StatusCode::from_u16(code).unwrap()));
        }
    }
}
