//! Parsing one Graph page without touching the alerts' text.
//!
//! Each alert is kept as the exact bytes Graph sent (`RawValue`), so unknown properties and new
//! evidence types pass through untouched. Only `id` and `lastUpdateDateTime` are read from it.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::timeutil::parse_instant;

/// A page of `alerts_v2`: `{"value": [...], "@odata.nextLink": "...", "@odata.count": n}`.
#[derive(Debug)]
pub struct Page<'a> {
    pub alerts: Vec<&'a RawValue>,
    pub next_link: Option<String>,
    pub count: Option<u64>,
}

/// The page as parsed on the fast path: one pass over the body.
#[derive(Deserialize)]
struct PageBody<'a> {
    #[serde(borrow)]
    value: Option<Vec<&'a RawValue>>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
    #[serde(rename = "@odata.count")]
    count: Option<u64>,
}

/// The same page with `value` left unparsed, to tell what is wrong with a page that failed.
#[derive(Deserialize)]
struct LoosePageBody<'a> {
    #[serde(borrow)]
    value: Option<&'a RawValue>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PageError {
    #[error("the page is not valid JSON ({detail}); it may have been truncated in transit")]
    NotJson { detail: String },
    #[error("the page has no `value` array; Graph answered with an unexpected shape")]
    NoValue,
    #[error("the page's `value` is not an array")]
    ValueNotArray,
}

pub fn parse_page(body: &[u8]) -> Result<Page<'_>, PageError> {
    match serde_json::from_slice::<PageBody<'_>>(body) {
        Ok(PageBody { value: Some(alerts), next_link, count }) => Ok(Page { alerts, next_link, count }),
        Ok(PageBody { value: None, .. }) => Err(PageError::NoValue),
        Err(error) => Err(diagnose(body, error)),
    }
}

/// Says what is wrong with a page the fast path could not read (a second pass, on errors only).
fn diagnose(body: &[u8], error: serde_json::Error) -> PageError {
    match serde_json::from_slice::<LoosePageBody<'_>>(body) {
        Err(error) => PageError::NotJson { detail: where_json_failed(&error) },
        Ok(LoosePageBody { value: None, .. }) => PageError::NoValue,
        Ok(LoosePageBody { value: Some(value), .. }) if !value.get().starts_with('[') => {
            PageError::ValueNotArray
        }
        Ok(_) => PageError::NotJson { detail: where_json_failed(&error) },
    }
}

/// What kind of JSON error, and where: never serde's own text, which quotes the offending
/// value (alert content, or whatever a stranger sent) into the error.
pub fn where_json_failed(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match error.classify() {
        Category::Io => "a read error",
        Category::Syntax => "a syntax error",
        Category::Data => "a member of an unexpected type",
        Category::Eof => "an unexpected end",
    };
    format!("{what} at line {} column {}", error.line(), error.column())
}

/// How a quarantined record is named in logs, without its content: its size, its hash (xxh3,
/// as 16 hex digits) and its `id` when that is a plain short string (else `-`).
pub fn quarantine_log_fields(raw: &RawValue) -> (usize, String, String) {
    #[derive(Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow, default)]
        id: Option<Cow<'a, str>>,
    }
    let text = raw.get();
    let id = serde_json::from_str::<IdOnly<'_>>(text)
        .ok()
        .and_then(|fields| fields.id)
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 128
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        })
        .map_or_else(|| "-".to_owned(), Cow::into_owned);
    (text.len(), format!("{:016x}", crate::fingerprint::content_fingerprint(text.as_bytes())), id)
}

/// What identifies one alert version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionKey<'a> {
    pub id: Cow<'a, str>,
    pub last_update: DateTime<Utc>,
}

/// Why a record cannot be placed in the data lake and goes to quarantine instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuarantineReason {
    NotAnObject,
    MissingId,
    MissingLastUpdate,
    UnparseableLastUpdate,
}

impl QuarantineReason {
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineReason::NotAnObject => "record is not a JSON object",
            QuarantineReason::MissingId => "record has no string `id`",
            QuarantineReason::MissingLastUpdate => "record has no string `lastUpdateDateTime`",
            QuarantineReason::UnparseableLastUpdate => "`lastUpdateDateTime` is not an ISO 8601 instant",
        }
    }
}

#[derive(Deserialize)]
struct KeyFields<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(rename = "lastUpdateDateTime", borrow, default)]
    last_update: Option<Cow<'a, str>>,
}

/// Reads the version key of one raw alert.
pub fn version_key(raw: &RawValue) -> Result<VersionKey<'_>, QuarantineReason> {
    if !raw.get().trim_start().starts_with('{') {
        return Err(QuarantineReason::NotAnObject);
    }
    if let Some((Some(id), Some(text))) = scan::key_members(raw.get())
        && let (Some(id), Some(text)) = (scan::string_value(id), scan::string_value(text))
        && !id.is_empty()
    {
        let last_update = parse_instant(&text).ok_or(QuarantineReason::UnparseableLastUpdate)?;
        return Ok(VersionKey { id, last_update });
    }
    // Anything unusual (a key missing, a value of another type, escapes in keys): the full
    // parse decides, and names the problem.
    // A non-string `id` (or other type surprise) fails here; treat it as missing.
    let fields: KeyFields<'_> = match serde_json::from_str(raw.get()) {
        Ok(fields) => fields,
        Err(_) => return Err(shape_problem(raw)),
    };
    let id = fields.id.filter(|id| !id.is_empty()).ok_or(QuarantineReason::MissingId)?;
    let text = fields.last_update.ok_or(QuarantineReason::MissingLastUpdate)?;
    let last_update = parse_instant(&text).ok_or(QuarantineReason::UnparseableLastUpdate)?;
    Ok(VersionKey { id, last_update })
}

fn shape_problem(raw: &RawValue) -> QuarantineReason {
    #[derive(Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow, default)]
        id: Option<Cow<'a, str>>,
    }
    match serde_json::from_str::<IdOnly<'_>>(raw.get()) {
        Ok(IdOnly { id: Some(_) }) => QuarantineReason::MissingLastUpdate,
        _ => QuarantineReason::MissingId,
    }
}

/// The record as one NDJSON line. Graph sends compact JSON, which is kept byte for byte; if a
/// server pretty-printed it, the line breaks (only possible between tokens) are dropped so the
/// record stays on one line.
pub fn as_ndjson_line(raw: &RawValue) -> Cow<'_, str> {
    let text = raw.get();
    if memchr::memchr2(b'\n', b'\r', text.as_bytes()).is_some() {
        Cow::Owned(text.chars().filter(|c| *c != '\n' && *c != '\r').collect())
    } else {
        Cow::Borrowed(text)
    }
}

/// Finding `id` and `lastUpdateDateTime` among an alert's top-level members without parsing the
/// rest: the alert's text was already checked as JSON when the page was parsed, so a byte scanner
/// that skips nested values and strings is enough, and it stops once both members are found.
/// Anything it does not expect makes it give up (`None`), and the full parse takes over.
mod scan {
    use std::borrow::Cow;

    /// The raw (quoted) values of the top-level `id` and `lastUpdateDateTime` members.
    pub(super) fn key_members(text: &str) -> Option<(Option<&str>, Option<&str>)> {
        let bytes = text.as_bytes();
        let mut at = skip_whitespace(bytes, 0);
        if bytes.get(at) != Some(&b'{') {
            return None;
        }
        at += 1;
        let (mut id, mut last_update) = (None, None);
        loop {
            at = skip_whitespace(bytes, at);
            match bytes.get(at)? {
                b'}' => return Some((id, last_update)),
                b'"' => {}
                _ => return None,
            }
            let key_end = string_end(bytes, at)?;
            let key = &bytes[at + 1..key_end - 1];
            if key.contains(&b'\\') {
                return None;
            }
            at = skip_whitespace(bytes, key_end);
            if bytes.get(at) != Some(&b':') {
                return None;
            }
            at = skip_whitespace(bytes, at + 1);
            let value_end = value_end(bytes, at)?;
            let slot = match key {
                b"id" => &mut id,
                b"lastUpdateDateTime" => &mut last_update,
                _ => &mut None,
            };
            if slot.is_some() {
                return None; // a repeated member: let the full parse judge it
            }
            *slot = Some(text.get(at..value_end)?);
            if id.is_some() && last_update.is_some() {
                return Some((id, last_update));
            }
            at = skip_whitespace(bytes, value_end);
            match bytes.get(at)? {
                b',' => at += 1,
                b'}' => return Some((id, last_update)),
                _ => return None,
            }
        }
    }

    /// The text of a quoted JSON string value, unescaped only if it has escapes.
    pub(super) fn string_value(raw: &str) -> Option<Cow<'_, str>> {
        let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
        if inner.contains('\\') {
            serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(inner))
        }
    }

    fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
        while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            at += 1;
        }
        at
    }

    /// Position just after the string that starts (with its quote) at `at`.
    fn string_end(bytes: &[u8], at: usize) -> Option<usize> {
        let mut at = at + 1;
        loop {
            at += memchr::memchr2(b'"', b'\\', bytes.get(at..)?)?;
            if bytes[at] == b'"' {
                return Some(at + 1);
            }
            at += 2; // an escape: skip the escaped character
        }
    }

    /// Position just after the value that starts at `at`.
    fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
        match bytes.get(at)? {
            b'"' => string_end(bytes, at),
            b'{' | b'[' => {
                let mut depth = 0usize;
                let mut at = at;
                loop {
                    match bytes.get(at)? {
                        b'"' => {
                            at = string_end(bytes, at)?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                return Some(at + 1);
                            }
                        }
                        _ => {}
                    }
                    at += 1;
                }
            }
            _ => {
                let rest = bytes.get(at..)?;
                let length = rest
                    .iter()
                    .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                    .unwrap_or(rest.len());
                Some(at + length)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_alert_text_verbatim() {
        let body = br##"{"@odata.context":"x","value":[{"id":"a","lastUpdateDateTime":"2026-01-01T00:00:00.1234567Z","z":1,  "evidence":[{"@odata.type":"#new.kind"}]}],"@odata.nextLink":"https://graph/next"}"##;
        let page = parse_page(body).unwrap();
        assert_eq!(page.alerts.len(), 1);
        assert_eq!(
            page.alerts[0].get(),
            r##"{"id":"a","lastUpdateDateTime":"2026-01-01T00:00:00.1234567Z","z":1,  "evidence":[{"@odata.type":"#new.kind"}]}"##
        );
        assert_eq!(page.next_link.as_deref(), Some("https://graph/next"));
        let key = version_key(page.alerts[0]).unwrap();
        assert_eq!(key.id, "a");
    }

    #[test]
    fn rejects_unexpected_page_shapes() {
        assert!(matches!(parse_page(b"{\"value\": [ {\"id\": "), Err(PageError::NotJson { .. })));
        assert_eq!(parse_page(b"{\"error\": {}}").unwrap_err(), PageError::NoValue);
        assert_eq!(parse_page(b"{\"value\": {}}").unwrap_err(), PageError::ValueNotArray);
        assert!(parse_page(b"{\"value\": []}").unwrap().alerts.is_empty());
    }

    #[test]
    fn page_errors_quote_no_content() {
        let error = parse_page(
            br#"{"value":[{"id":"a","title":"jane.doe@contoso.com"}],"@odata.count":"jane.doe@contoso.com"}"#,
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("unexpected type at line 1 column"), "{text}");
        assert!(!text.contains("jane.doe"), "{text}");
    }

    #[test]
    fn quarantined_records_are_logged_by_size_hash_and_plain_id() {
        let raw: Box<RawValue> =
            serde_json::from_str(r#"{"id":"da637_1-x","title":"jane.doe@contoso.com"}"#).unwrap();
        let (bytes, hash, id) = quarantine_log_fields(&raw);
        assert_eq!((bytes, id.as_str()), (raw.get().len(), "da637_1-x"));
        assert_eq!(hash.len(), 16);
        for odd in [r#"{"title":"x"}"#, r#"{"id":"a\nb"}"#, r#"{"id":7}"#, "[1]", r#"{"id":"jane doe"}"#] {
            let raw: Box<RawValue> = serde_json::from_str(odd).unwrap();
            assert_eq!(quarantine_log_fields(&raw).2, "-", "{odd}");
        }
    }

    #[test]
    fn classifies_records_that_cannot_be_keyed() {
        let page = parse_page(
            br#"{"value":[1,{"lastUpdateDateTime":"2026-01-01T00:00:00Z"},{"id":"a"},{"id":"b","lastUpdateDateTime":"soon"},{"id":7,"lastUpdateDateTime":"2026-01-01T00:00:00Z"},{"id":"c","lastUpdateDateTime":null}]}"#,
        )
        .unwrap();
        let reasons: Vec<_> = page.alerts.iter().map(|raw| version_key(raw).unwrap_err()).collect();
        assert_eq!(
            reasons,
            vec![
                QuarantineReason::NotAnObject,
                QuarantineReason::MissingId,
                QuarantineReason::MissingLastUpdate,
                QuarantineReason::UnparseableLastUpdate,
                QuarantineReason::MissingId,
                QuarantineReason::MissingLastUpdate,
            ]
        );
    }

    #[test]
    fn the_scanner_agrees_with_a_full_parse() {
        let cases = [
            r#"{"id":"a","lastUpdateDateTime":"2026-01-01T00:00:00Z"}"#,
            r#"{ "evidence": [{"id":"nested","lastUpdateDateTime":"2020-01-01T00:00:00Z"}], "x": {"id": "deep"}, "n": -1.5e3, "t": true, "lastUpdateDateTime" : "2026-01-01T00:00:00Z", "id" : "top" }"#,
            r#"{"title":"quote \" and brace } and bracket ] in a string","id":"q","lastUpdateDateTime":"2026-01-01T00:00:00.1234567Z"}"#,
            r#"{"id":"a\u0062\"c","lastUpdateDateTime":"2026-01-01T00:00:00Z"}"#,
            r#"{"i\u0064":"escaped-key","lastUpdateDateTime":"2026-01-01T00:00:00Z"}"#,
            r#"{"id":"dup","id":"dup2","lastUpdateDateTime":"2026-01-01T00:00:00Z"}"#,
            r#"{"id":"","lastUpdateDateTime":"2026-01-01T00:00:00Z"}"#,
            r#"{"id":null,"lastUpdateDateTime":"2026-01-01T00:00:00Z"}"#,
            r#"{}"#,
        ];
        for case in cases {
            let raw: &RawValue = serde_json::from_str(case).unwrap();
            let full: Result<KeyFields<'_>, _> = serde_json::from_str(case);
            let expected = match full {
                Ok(KeyFields { id: Some(id), last_update: Some(text) }) if !id.is_empty() => {
                    parse_instant(&text).map(|at| (id.into_owned(), at))
                }
                _ => None,
            };
            let got = version_key(raw).ok().map(|key| (key.id.into_owned(), key.last_update));
            assert_eq!(got, expected, "{case}");
        }
    }

    #[test]
    fn escaped_ids_are_unescaped_for_identity() {
        let page = parse_page(br#"{"value":[{"id":"a\u0062","lastUpdateDateTime":"2026-01-01T00:00:00Z"}]}"#)
            .unwrap();
        assert_eq!(version_key(page.alerts[0]).unwrap().id, "ab");
    }

    #[test]
    fn pretty_printed_records_become_one_line() {
        let page = parse_page(b"{\"value\":[{\n  \"id\": \"a\\nb\",\r\n  \"x\": 1\n}]}").unwrap();
        assert_eq!(as_ndjson_line(page.alerts[0]), "{  \"id\": \"a\\nb\",  \"x\": 1}");
    }
}
