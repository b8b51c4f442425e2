//! Graph timestamps: parsed as instants, formatted for `$filter`, and rounded to Graph's 100 ns tick.

use chrono::{DateTime, SecondsFormat, TimeDelta, Timelike, Utc};

/// Graph's finest time unit: timestamps carry at most 7 fractional digits.
pub const TICK: TimeDelta = TimeDelta::nanoseconds(100);

/// Parses an ISO 8601 / RFC 3339 timestamp as sent by Graph (`2025-08-11T23:46:41.1234567Z`).
/// Any number of fractional digits is accepted; offsets other than `Z` are normalised to UTC.
pub fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim()).ok().map(|parsed| parsed.with_timezone(&Utc))
}

/// Rounds down to Graph's 100 ns tick so window bounds are exactly representable in `$filter`.
pub fn floor_to_tick(instant: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = instant.nanosecond();
    let floored = nanos - nanos % 100;
    instant.with_nanosecond(floored).unwrap_or(instant)
}

/// Formats an instant as a `$filter` DateTimeOffset literal with 7 fractional digits,
/// e.g. `2026-11-28T06:00:00.1234567Z`.
pub fn format_filter_instant(instant: DateTime<Utc>) -> String {
    let instant = floor_to_tick(instant);
    format!("{}.{:07}Z", instant.format("%Y-%m-%dT%H:%M:%S"), instant.nanosecond() % 1_000_000_000 / 100)
}

/// RFC 3339 with whole seconds or milliseconds, for summaries and logs.
pub fn format_human(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seven_digit_fractions_as_instants() {
        let a = parse_instant("2025-08-11T23:46:41.1234567Z").unwrap();
        let b = parse_instant("2025-08-11T23:46:41.12345670Z").unwrap();
        let c = parse_instant("2025-08-11T23:46:41.1234568Z").unwrap();
        assert_eq!(a, b);
        assert!(a < c);
        // String order would say "...41.9Z" > "...41.10Z"; instants disagree correctly.
        assert!(parse_instant("2025-08-11T23:46:41.9Z") > parse_instant("2025-08-11T23:46:41.10Z"));
    }

    #[test]
    fn normalises_offsets_and_rejects_garbage() {
        assert_eq!(parse_instant("2025-08-12T01:46:41+02:00"), parse_instant("2025-08-11T23:46:41Z"));
        assert!(parse_instant("yesterday").is_none());
        assert!(parse_instant("").is_none());
        assert!(parse_instant("2025-08-11").is_none());
    }

    #[test]
    fn filter_literal_round_trips_at_tick_precision() {
        let t = parse_instant("2025-08-11T23:46:41.123456789Z").unwrap();
        let text = format_filter_instant(t);
        assert_eq!(text, "2025-08-11T23:46:41.1234567Z");
        assert_eq!(parse_instant(&text), Some(floor_to_tick(t)));
        assert_eq!(
            format_filter_instant(parse_instant("2025-08-11T23:46:41Z").unwrap()),
            "2025-08-11T23:46:41.0000000Z"
        );
    }
}
