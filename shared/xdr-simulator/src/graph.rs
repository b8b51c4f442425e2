//! Graph's `alerts_v2` and `incidents` listings as a pure function, behaving in each of the ways the real service
//! is documented or reported to behave. The HTTP simulator and the engine's in-memory test Graph
//! both answer through it, so the product is proven against one model of Graph, not two.
//!
//! What is modelled, and where it comes from:
//! - `@odata.nextLink` absent altogether (elastic/integrations #20234; Microsoft Q&A 1611210), or
//!   carrying a plain `$skip`, or an opaque `$skiptoken` (OData server-driven paging).
//! - `$skip` above 500 answered with HTTP 400 "The limit of '500' for Skip query has been
//!   exceeded" (Graph security API constraints), for nextLinks and first requests alike.
//! - `$top` clamped, not rejected (documented at 1000; alerts_v2's own value is undocumented).
//! - `@odata.count` honoured, or absent although asked for.
//! - No documented order: newest first, oldest first, or scrambled.
//! - `$filter` on every documented filterable property: `lastUpdateDateTime` and
//!   `createdDateTime` with `eq ne ge gt le lt`; `serviceSource`, `severity`, `status`,
//!   `classification`, `determination`, `assignedTo` with `eq` and `ne`, joined by `and`, with
//!   OData's null rules (a null is `ne` every string), or SQL's (`ne` leaves nulls out).
//! - Incidents: `$top` above 50 answered with HTTP 400; `serviceSource` not a property;
//!   `$expand=alerts` inlining each incident's alerts, and, with a `$filter`, answered with HTTP
//!   500 every time (as on large tenants: elastic/integrations#18144) unless the mode says not.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// Order in which alerts are listed (the docs say newest first; don't rely on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListOrder {
    NewestFirst,
    OldestFirst,
    /// A fixed order unrelated to time (by a hash of the id).
    #[default]
    Scrambled,
}

/// What Graph offers for the next page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NextLinks {
    /// No `@odata.nextLink`, ever.
    #[default]
    Never,
    /// A nextLink carrying `$skip` (subject to the cap like any other request).
    Skip,
    /// A nextLink carrying an opaque `$skiptoken`.
    SkipToken,
}

/// How the simulated Graph pages and counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphBehaviour {
    pub order: ListOrder,
    pub next_links: NextLinks,
    /// `$skip` above this is answered with HTTP 400; `None`: no limit.
    pub max_skip: Option<usize>,
    /// `$top` above this is clamped.
    pub max_top: usize,
    /// `$top` when none is given.
    pub default_top: usize,
    /// `$count=true` is answered with `@odata.count`.
    pub count: bool,
    /// Whether a null is `ne` every string (OData) or `ne` nothing (as a SQL back end compares).
    pub null_is_ne: bool,
    /// `$expand` together with `$filter` is answered with HTTP 500, every time.
    pub expand_with_filter_fails: bool,
}

/// One Graph collection the simulator lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Collection {
    /// The path under the Graph base URL (`v1.0/security/alerts_v2`).
    pub path: &'static str,
    /// The entity type named in errors.
    pub entity: &'static str,
    /// The string properties filterable with `eq`/`ne`.
    pub string_properties: &'static [&'static str],
    /// `$top` above this is answered with HTTP 400 (`None`: clamped as the mode says).
    pub max_top: Option<usize>,
    /// What `$expand` may name.
    pub expandable: Option<&'static str>,
}

pub const ALERTS_V2: Collection = Collection {
    path: "v1.0/security/alerts_v2",
    entity: "microsoft.graph.security.alert",
    string_properties: &[
        "serviceSource",
        "severity",
        "status",
        "classification",
        "determination",
        "assignedTo",
    ],
    max_top: None,
    expandable: None,
};

pub const INCIDENTS: Collection = Collection {
    path: "v1.0/security/incidents",
    entity: "microsoft.graph.security.incident",
    string_properties: &["severity", "status", "classification", "determination", "assignedTo"],
    max_top: Some(50),
    expandable: Some("alerts"),
};

impl Default for GraphBehaviour {
    /// The strictest plausible Graph: no nextLink, `$skip` at most 500, `$top` at most 1000,
    /// scrambled order (with `@odata.count`, which is documented).
    fn default() -> Self {
        GraphMode::Strict.behaviour()
    }
}

/// Named combinations, for tests, the demo and `xdr-sync simulate --graph-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GraphMode {
    /// No nextLink, `$skip` ≤ 500, `$top` ≤ 1000, scrambled order, count honoured.
    #[default]
    Strict,
    /// nextLinks carrying a plain `$skip`, capped at 500; newest first.
    SkipLinks,
    /// nextLinks carrying an opaque `$skiptoken`; oldest first.
    SkipToken,
    /// Like strict, but `@odata.count` is never sent.
    NoCount,
    /// Like strict, but `$top` is clamped at 64.
    Clamped,
    /// Like strict, but `ne` leaves nulls out, as a SQL back end would (`null <> 'x'` is unknown).
    SqlNulls,
    /// The textbook Graph: nextLinks with an unbounded `$skip`, newest first, and
    /// `$expand=alerts` on incidents that works with a `$filter`.
    Lenient,
}

impl GraphMode {
    pub const ALL: [GraphMode; 7] = [
        GraphMode::Strict,
        GraphMode::SkipLinks,
        GraphMode::SkipToken,
        GraphMode::NoCount,
        GraphMode::Clamped,
        GraphMode::SqlNulls,
        GraphMode::Lenient,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GraphMode::Strict => "strict",
            GraphMode::SkipLinks => "skip-links",
            GraphMode::SkipToken => "skiptoken",
            GraphMode::NoCount => "no-count",
            GraphMode::Clamped => "clamped",
            GraphMode::SqlNulls => "sql-nulls",
            GraphMode::Lenient => "lenient",
        }
    }

    pub fn behaviour(self) -> GraphBehaviour {
        let strict = GraphBehaviour {
            order: ListOrder::Scrambled,
            next_links: NextLinks::Never,
            max_skip: Some(500),
            max_top: 1000,
            default_top: 100,
            count: true,
            null_is_ne: true,
            expand_with_filter_fails: true,
        };
        match self {
            GraphMode::Strict => strict,
            GraphMode::SkipLinks => {
                GraphBehaviour { next_links: NextLinks::Skip, order: ListOrder::NewestFirst, ..strict }
            }
            GraphMode::SkipToken => {
                GraphBehaviour { next_links: NextLinks::SkipToken, order: ListOrder::OldestFirst, ..strict }
            }
            GraphMode::NoCount => GraphBehaviour { count: false, ..strict },
            GraphMode::Clamped => GraphBehaviour { max_top: 64, ..strict },
            GraphMode::SqlNulls => GraphBehaviour { null_is_ne: false, ..strict },
            GraphMode::Lenient => GraphBehaviour {
                next_links: NextLinks::Skip,
                max_skip: None,
                order: ListOrder::NewestFirst,
                expand_with_filter_fails: false,
                ..strict
            },
        }
    }

    /// `XDR_GRAPH_MODE` if it names a mode, else strict: the mode a simulator starts in unless
    /// told otherwise, so the whole test suite can run against another Graph
    /// (`scripts/test-graph-modes.sh` runs it in each).
    pub fn from_env() -> Self {
        std::env::var("XDR_GRAPH_MODE").ok().and_then(|name| name.trim().parse().ok()).unwrap_or_default()
    }
}

impl FromStr for GraphMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|mode| mode.name() == text).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|mode| mode.name()).collect();
            format!("unknown Graph mode `{text}`; use one of {}", names.join(", "))
        })
    }
}

impl std::fmt::Display for GraphMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One listed alert version, as the model needs to see it.
pub trait Listed {
    fn id(&self) -> &str;
    fn last_update(&self) -> DateTime<Utc>;
    /// The exact JSON Graph sends for it.
    fn body(&self) -> &str;
}

/// A list request's parameters, as they arrived (a first request or a followed nextLink).
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    pub params: HashMap<String, String>,
}

impl ListRequest {
    pub fn new(params: HashMap<String, String>) -> Self {
        Self { params }
    }

    /// The parameters of a link (`...alerts_v2?$filter=...&$skip=...`), percent-decoded.
    pub fn from_link(link: &str) -> Self {
        let query = link.split_once('?').map_or("", |(_, query)| query);
        Self { params: url::form_urlencoded::parse(query.as_bytes()).into_owned().collect() }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Graph's answer: HTTP 200 with this body, or HTTP 400 with this message.
pub type ListAnswer = Result<String, String>;

/// Answers one list request for alerts over `listing`: each alert's current version, oldest first
/// (ties by id). `graph_url` is where nextLinks point (`http://127.0.0.1:<port>`).
pub fn answer<R: Listed>(
    listing: &[&R],
    request: &ListRequest,
    behaviour: &GraphBehaviour,
    graph_url: &str,
) -> ListAnswer {
    answer_for(listing, request, behaviour, &ALERTS_V2, graph_url, None)
}

/// How an expanded record is written: its body with the expansion inlined.
pub type Expand<'a, R> = &'a dyn Fn(&R) -> String;

/// Answers one list request over `listing` of `collection`. `expand` writes a record when the
/// request asks for `$expand` (the server knows what to inline; the model does not).
pub fn answer_for<R: Listed>(
    listing: &[&R],
    request: &ListRequest,
    behaviour: &GraphBehaviour,
    collection: &Collection,
    graph_url: &str,
    expand: Option<Expand<'_, R>>,
) -> ListAnswer {
    let filter = Filter::parse(request.get("$filter").unwrap_or(""), collection)?;
    let expanding = match request.get("$expand") {
        None => false,
        Some(name) if Some(name) == collection.expandable => true,
        Some(name) => {
            return Err(format!(
                "Could not find a navigation property named '{name}' on type '{}'.",
                collection.entity
            ));
        }
    };
    let top = match request.get("$top") {
        None => behaviour.default_top.min(collection.max_top.unwrap_or(usize::MAX)),
        Some(text) => text.parse::<usize>().map_err(|_| format!("Invalid value '{text}' for $top."))?,
    };
    if let Some(max) = collection.max_top
        && top > max
    {
        return Err(format!(
            "The limit of '{max}' for Top query has been exceeded. The value from the incoming request is '{top}'."
        ));
    }
    let top = top.clamp(1, behaviour.max_top.max(1));
    let skip = match (request.get("$skiptoken"), request.get("$skip")) {
        (Some(token), _) => decode_token(token).ok_or_else(|| "The $skiptoken is not valid.".to_owned())?,
        (None, Some(text)) => {
            let skip = text.parse::<usize>().map_err(|_| format!("Invalid value '{text}' for $skip."))?;
            if let Some(max) = behaviour.max_skip
                && skip > max
            {
                return Err(format!(
                    "The limit of '{max}' for Skip query has been exceeded. The value from the incoming request is '{skip}'."
                ));
            }
            skip
        }
        (None, None) => 0,
    };

    let from = listing.partition_point(|v| filter.below(v.last_update()));
    let to = listing.partition_point(|v| !filter.above(v.last_update()));
    let mut listed: Vec<&R> = listing[from..to.max(from)]
        .iter()
        .copied()
        .filter(|version| filter.others_match(version.body(), version.last_update(), behaviour.null_is_ne))
        .collect();
    match behaviour.order {
        ListOrder::NewestFirst => {
            listed.reverse();
            // Ties stay by ascending id.
            let mut start = 0;
            while start < listed.len() {
                let at = listed[start].last_update();
                let end = start + listed[start..].iter().take_while(|v| v.last_update() == at).count();
                listed[start..end].reverse();
                start = end;
            }
        }
        ListOrder::OldestFirst => {}
        ListOrder::Scrambled => listed.sort_by_key(|v| scramble(v.id())),
    }
    let total = listed.len();
    let page: Vec<std::borrow::Cow<'_, str>> = listed
        .iter()
        .skip(skip)
        .take(top)
        .map(|v| match expand.filter(|_| expanding) {
            Some(expand) => std::borrow::Cow::Owned(expand(v)),
            None => std::borrow::Cow::Borrowed(v.body()),
        })
        .collect();
    let set = collection.path.rsplit_once("v1.0/").map_or(collection.path, |(_, set)| set);
    let mut body = format!(r#"{{"@odata.context":"{graph_url}/v1.0/$metadata#{set}","#);
    if behaviour.count && request.get("$count").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        body.push_str(&format!(r#""@odata.count":{total},"#));
    }
    body.push_str(r#""value":["#);
    body.push_str(&page.join(","));
    body.push(']');
    if skip + top < total {
        let mut query = vec![("$top", top.to_string())];
        if let Some(filter) = request.get("$filter") {
            query.insert(0, ("$filter", filter.to_owned()));
        }
        if let Some(expand) = request.get("$expand") {
            query.push(("$expand", expand.to_owned()));
        }
        match behaviour.next_links {
            NextLinks::Never => {}
            NextLinks::Skip => query.push(("$skip", (skip + top).to_string())),
            NextLinks::SkipToken => query.push(("$skiptoken", encode_token(skip + top))),
        }
        if behaviour.next_links != NextLinks::Never {
            let encoded: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
            body.push_str(&format!(
                r#","@odata.nextLink":"{graph_url}/{}?{}""#,
                collection.path,
                encoded.join("&")
            ));
        }
    }
    body.push('}');
    Ok(body)
}

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>().replace('+', "%20")
}

/// An opaque-looking token for an offset (the server keeps no cursor state).
fn encode_token(offset: usize) -> String {
    format!("RFNwdAoCAAAA{:x}", (offset as u64) ^ 0x5eed_cafe)
}

fn decode_token(token: &str) -> Option<usize> {
    let hex = token.strip_prefix("RFNwdAoCAAAA")?;
    u64::from_str_radix(hex, 16).ok().map(|value| (value ^ 0x5eed_cafe) as usize)
}

fn scramble(id: &str) -> u64 {
    id.bytes()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Eq,
    Ne,
    Ge,
    Gt,
    Le,
    Lt,
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Instant(DateTime<Utc>),
    Text(String),
    Null,
}

#[derive(Debug, Clone)]
struct Clause {
    property: &'static str,
    operator: Operator,
    value: Literal,
}

/// A parsed `$filter`: clauses joined by `and`.
#[derive(Debug, Default)]
struct Filter {
    clauses: Vec<Clause>,
}

const DATE_PROPERTIES: [&str; 2] = ["lastUpdateDateTime", "createdDateTime"];

/// Splits a filter into tokens: words, and `'quoted strings'` with `''` for a quote.
fn tokens(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' {
            chars.next();
            let mut literal = String::from("'");
            loop {
                match chars.next() {
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        literal.push('\'');
                    }
                    Some('\'') => break,
                    Some(other) => literal.push(other),
                    None => return Err("Unterminated string literal in $filter.".into()),
                }
            }
            out.push(literal);
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
            out.push(word);
        }
    }
    Ok(out)
}

impl Filter {
    fn parse(text: &str, collection: &Collection) -> Result<Self, String> {
        let tokens = tokens(text)?;
        let mut clauses = Vec::new();
        let mut rest = tokens.as_slice();
        while !rest.is_empty() {
            let [property, operator, value, tail @ ..] = rest else {
                return Err(format!("Invalid filter clause near '{}'.", rest.join(" ")));
            };
            let Some(property) = DATE_PROPERTIES
                .iter()
                .chain(collection.string_properties.iter())
                .find(|p| **p == property.as_str())
            else {
                return Err(format!(
                    "Could not find a property named '{property}' on type '{}'.",
                    collection.entity
                ));
            };
            let operator = match operator.as_str() {
                "eq" => Operator::Eq,
                "ne" => Operator::Ne,
                "ge" => Operator::Ge,
                "gt" => Operator::Gt,
                "le" => Operator::Le,
                "lt" => Operator::Lt,
                other => return Err(format!("Operator '{other}' is not supported.")),
            };
            let is_date = DATE_PROPERTIES.contains(property);
            let value = if value == "null" {
                Literal::Null
            } else if let Some(text) = value.strip_prefix('\'') {
                if is_date {
                    return Err(format!("'{property}' is compared with a DateTimeOffset, not a string."));
                }
                Literal::Text(text.to_owned())
            } else if is_date {
                Literal::Instant(
                    DateTime::parse_from_rfc3339(value)
                        .map_err(|_| format!("'{value}' is not a valid DateTimeOffset."))?
                        .with_timezone(&Utc),
                )
            } else {
                return Err(format!("'{value}' is not a valid literal for '{property}'."));
            };
            if !is_date && !matches!(operator, Operator::Eq | Operator::Ne) {
                return Err(format!("Only 'eq' and 'ne' are supported on '{property}'."));
            }
            clauses.push(Clause { property, operator, value });
            rest = match tail {
                [and, more @ ..] if and == "and" && !more.is_empty() => more,
                [] => tail,
                _ => return Err(format!("Expected 'and' near '{}'.", tail.join(" "))),
            };
        }
        Ok(Self { clauses })
    }

    fn last_update_clauses(&self) -> impl Iterator<Item = (Operator, DateTime<Utc>)> + '_ {
        self.clauses.iter().filter(|c| c.property == "lastUpdateDateTime").filter_map(|c| match c.value {
            Literal::Instant(at) => Some((c.operator, at)),
            _ => None,
        })
    }

    /// Before every lower bound on `lastUpdateDateTime` (the listing is sorted by it).
    fn below(&self, instant: DateTime<Utc>) -> bool {
        self.last_update_clauses().any(|(operator, bound)| match operator {
            Operator::Ge => instant < bound,
            Operator::Gt => instant <= bound,
            Operator::Eq => instant < bound,
            _ => false,
        })
    }

    /// Past an upper bound on `lastUpdateDateTime`.
    fn above(&self, instant: DateTime<Utc>) -> bool {
        self.last_update_clauses().any(|(operator, bound)| match operator {
            Operator::Le => instant > bound,
            Operator::Lt => instant >= bound,
            Operator::Eq => instant > bound,
            _ => false,
        })
    }

    /// Every clause the range search did not settle (`ne` on `lastUpdateDateTime`, the other
    /// properties). The body is parsed only when such a clause exists.
    fn others_match(&self, body: &str, last_update: DateTime<Utc>, null_is_ne: bool) -> bool {
        let others: Vec<&Clause> = self
            .clauses
            .iter()
            .filter(|c| c.property != "lastUpdateDateTime" || c.operator == Operator::Ne)
            .collect();
        if others.is_empty() {
            return true;
        }
        let fields: Fields = serde_json::from_str(body).unwrap_or_default();
        others.iter().all(|clause| {
            let actual = match clause.property {
                "lastUpdateDateTime" => Literal::Instant(last_update),
                "createdDateTime" => fields
                    .created
                    .as_deref()
                    .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
                    .map_or(Literal::Null, |at| Literal::Instant(at.with_timezone(&Utc))),
                name => fields.string(name).map_or(Literal::Null, |text| Literal::Text(text.to_owned())),
            };
            if actual == Literal::Null && clause.operator == Operator::Ne && !null_is_ne {
                return false;
            }
            compare(&actual, clause.operator, &clause.value)
        })
    }
}

/// OData comparison: `eq`/`ne` treat null as a value; ordering against null is false.
fn compare(actual: &Literal, operator: Operator, expected: &Literal) -> bool {
    match operator {
        Operator::Eq => actual == expected,
        Operator::Ne => actual != expected,
        _ => match (actual, expected) {
            (Literal::Instant(a), Literal::Instant(b)) => match operator {
                Operator::Ge => a >= b,
                Operator::Gt => a > b,
                Operator::Le => a <= b,
                Operator::Lt => a < b,
                _ => false,
            },
            _ => false,
        },
    }
}

#[derive(Deserialize, Default)]
struct Fields {
    #[serde(rename = "createdDateTime", default)]
    created: Option<String>,
    #[serde(rename = "serviceSource", default)]
    service_source: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    classification: Option<String>,
    #[serde(default)]
    determination: Option<String>,
    #[serde(rename = "assignedTo", default)]
    assigned_to: Option<String>,
}

impl Fields {
    fn string(&self, name: &str) -> Option<&str> {
        match name {
            "serviceSource" => self.service_source.as_deref(),
            "severity" => self.severity.as_deref(),
            "status" => self.status.as_deref(),
            "classification" => self.classification.as_deref(),
            "determination" => self.determination.as_deref(),
            "assignedTo" => self.assigned_to.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct V(String, DateTime<Utc>, String);

    impl Listed for V {
        fn id(&self) -> &str {
            &self.0
        }
        fn last_update(&self) -> DateTime<Utc> {
            self.1
        }
        fn body(&self) -> &str {
            &self.2
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn listing() -> Vec<V> {
        (0..10)
            .map(|i| {
                let stamp = at("2026-11-28T06:00:00Z") + chrono::TimeDelta::seconds(i / 5);
                let severity = if i % 2 == 0 { "\"high\"" } else { "null" };
                let body = format!(
                    r#"{{"id":"a{i}","createdDateTime":"2026-11-0{}T00:00:00Z","severity":{severity},"assignedTo":"o'brien","lastUpdateDateTime":"{}"}}"#,
                    1 + i % 3,
                    stamp.to_rfc3339()
                );
                V(format!("a{i}"), stamp, body)
            })
            .collect()
    }

    fn ask(pairs: &[(&str, &str)], behaviour: &GraphBehaviour) -> ListAnswer {
        let versions = listing();
        let refs: Vec<&V> = versions.iter().collect();
        let params = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        answer(&refs, &ListRequest::new(params), behaviour, "http://graph")
    }

    fn ids(body: &str) -> Vec<String> {
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        value["value"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap().to_owned()).collect()
    }

    #[test]
    fn filters_on_every_documented_property_with_odata_null_rules() {
        let strict = GraphBehaviour::default();
        let filter = |f: &str| ids(&ask(&[("$filter", f), ("$top", "50")], &strict).unwrap()).len();
        assert_eq!(filter("lastUpdateDateTime ge 2026-11-28T06:00:01Z"), 5);
        assert_eq!(
            filter(
                "lastUpdateDateTime ge 2026-11-28T06:00:00Z and lastUpdateDateTime lt 2026-11-28T06:00:01.0000000Z"
            ),
            5
        );
        assert_eq!(filter("severity eq 'high'"), 5);
        assert_eq!(filter("severity ne 'high'"), 5, "nulls are `ne` a string");
        assert_eq!(filter("severity eq null"), 5);
        assert_eq!(filter("assignedTo eq 'o''brien'"), 10);
        assert_eq!(filter("createdDateTime lt 2026-11-02T00:00:00Z"), 4);
        assert_eq!(filter("createdDateTime ge 2026-11-02T00:00:00Z and severity ne 'high'"), 3);
        assert_eq!(filter("classification ne 'truePositive' and determination eq null"), 10);
        for bad in [
            "title eq 'x'",
            "severity gt 'a'",
            "createdDateTime eq 'x'",
            "severity eq high",
            "severity eq 'a' or status eq 'b'",
        ] {
            assert!(ask(&[("$filter", bad)], &strict).is_err(), "{bad}");
        }
    }

    #[test]
    fn pages_as_each_mode_says() {
        let strict = GraphBehaviour::default();
        let body = ask(&[("$top", "4"), ("$count", "true")], &strict).unwrap();
        assert!(body.contains(r#""@odata.count":10"#) && !body.contains("nextLink"));
        assert!(ask(&[("$skip", "501")], &strict).unwrap_err().contains("The limit of '500' for Skip query"));
        assert_eq!(ids(&ask(&[("$top", "4"), ("$skip", "8")], &strict).unwrap()).len(), 2);

        let tokens = GraphMode::SkipToken.behaviour();
        let body = ask(&[("$top", "4")], &tokens).unwrap();
        let link: serde_json::Value = serde_json::from_str(&body).unwrap();
        let link = link["@odata.nextLink"].as_str().unwrap();
        assert!(link.contains("$skiptoken=") && !link.contains("$skip="));
        let next = ListRequest::from_link(link);
        let versions = listing();
        let refs: Vec<&V> = versions.iter().collect();
        assert_eq!(
            ids(&answer(&refs, &next, &tokens, "http://graph").unwrap()),
            vec!["a4", "a5", "a6", "a7"]
        );

        let no_count = GraphMode::NoCount.behaviour();
        assert!(!ask(&[("$count", "true")], &no_count).unwrap().contains("@odata.count"));
        let clamped = GraphMode::Clamped.behaviour();
        assert_eq!(clamped.max_top, 64);
        let lenient = GraphMode::Lenient.behaviour();
        assert!(ask(&[("$top", "1"), ("$skip", "5000")], &lenient).is_ok());
        let sql = GraphMode::SqlNulls.behaviour();
        let filter = |f: &str| ids(&ask(&[("$filter", f), ("$top", "50")], &sql).unwrap()).len();
        assert_eq!(filter("severity ne 'high'"), 0, "SQL: a null is not `ne` anything");
        assert_eq!(filter("severity eq null"), 5);
        assert_eq!("no-count".parse::<GraphMode>(), Ok(GraphMode::NoCount));
        assert!("fast".parse::<GraphMode>().is_err());
    }

    #[test]
    fn incidents_reject_a_large_top_and_alert_properties_and_carry_expand_in_next_links() {
        let versions = listing();
        let refs: Vec<&V> = versions.iter().collect();
        let ask = |pairs: &[(&str, &str)], behaviour: &GraphBehaviour| {
            let params = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let expand = |v: &V| format!("{}+", v.2);
            answer_for(&refs, &ListRequest::new(params), behaviour, &INCIDENTS, "http://graph", Some(&expand))
        };
        let strict = GraphBehaviour::default();
        assert!(ask(&[("$top", "51")], &strict).unwrap_err().contains("The limit of '50' for Top query"));
        assert_eq!(ids(&ask(&[("$top", "50")], &strict).unwrap()).len(), 10);
        assert!(
            ask(&[("$filter", "serviceSource eq 'x'")], &strict)
                .unwrap_err()
                .contains("microsoft.graph.security.incident")
        );
        assert!(ask(&[("$expand", "evidence")], &strict).is_err());
        let links = GraphMode::SkipLinks.behaviour();
        let body = ask(&[("$top", "4"), ("$expand", "alerts")], &links).unwrap();
        assert!(body.contains("\"@odata.context\":\"http://graph/v1.0/$metadata#security/incidents\""));
        assert!(body.contains("}+,"), "expanded records are written by the caller");
        let value: serde_json::Value = serde_json::from_str(&body.replace("}+", "}")).unwrap();
        let link = value["@odata.nextLink"].as_str().unwrap();
        assert!(
            link.starts_with("http://graph/v1.0/security/incidents?") && link.contains("$expand=alerts"),
            "{link}"
        );
        assert!(
            ask(&[("$expand", "alerts"), ("$filter", "severity eq 'high'")], &strict).is_ok(),
            "the server fails those, not the model"
        );
        assert!(strict.expand_with_filter_fails && !GraphMode::Lenient.behaviour().expand_with_filter_fails);
    }
}
