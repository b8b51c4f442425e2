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

#[derive(Deserialize)]
struct PageBody<'a> {
    #[serde(borrow)]
    value: Option<&'a RawValue>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
    #[serde(rename = "@odata.count")]
    count: Option<u64>,
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
    let parsed: PageBody<'_> =
        serde_json::from_slice(body).map_err(|error| PageError::NotJson { detail: error.to_string() })?;
    let value = parsed.value.ok_or(PageError::NoValue)?;
    let alerts: Vec<&RawValue> = serde_json::from_str(value.get()).map_err(|_| PageError::ValueNotArray)?;
    Ok(Page { alerts, next_link: parsed.next_link, count: parsed.count })
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
    if text.contains(['\n', '\r']) {
        Cow::Owned(text.chars().filter(|c| *c != '\n' && *c != '\r').collect())
    } else {
        Cow::Borrowed(text)
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
