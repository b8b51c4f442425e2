//! What the engine asks Graph for: a time slice of `lastUpdateDateTime`, optionally narrowed by
//! other filterable properties (to split one instant that holds more versions than a page), with
//! `$top`, `$skip` and `$count`. `Query::filter` is the one place that writes the OData
//! `$filter`, so the Graph client and the simulated Graph read the same text.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::timeutil::{TICK, format_filter_instant};

/// The string-valued properties Graph's security collections document as filterable with
/// `eq`/`ne`. Each stream lists the ones it has, in the order an instant is split by them
/// (`Stream::split_properties`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Property {
    ServiceSource,
    Severity,
    Status,
    Classification,
    Determination,
    AssignedTo,
}

impl Property {
    pub const ALL: [Property; 6] = [
        Property::ServiceSource,
        Property::Severity,
        Property::Status,
        Property::Classification,
        Property::Determination,
        Property::AssignedTo,
    ];

    /// The property's name in Graph's JSON and in `$filter`.
    pub fn name(self) -> &'static str {
        match self {
            Property::ServiceSource => "serviceSource",
            Property::Severity => "severity",
            Property::Status => "status",
            Property::Classification => "classification",
            Property::Determination => "determination",
            Property::AssignedTo => "assignedTo",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|property| property.name() == name)
    }
}

/// One clause that narrows a query beyond its `lastUpdateDateTime` range.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Constraint {
    /// `createdDateTime lt at`
    CreatedBefore { at: DateTime<Utc> },
    /// `createdDateTime ge at`
    CreatedFrom { at: DateTime<Utc> },
    /// `property eq 'value'`
    Is { property: Property, value: String },
    /// `property eq null`
    IsNull { property: Property },
    /// `property ne 'a' and property ne 'b' ...`: the catch-all next to the `Is` parts of a split.
    /// In OData a null is `ne` every string, so records without a value land here too.
    IsNoneOf { property: Property, values: Vec<String> },
}

impl Constraint {
    fn write_filter(&self, out: &mut String) {
        match self {
            Constraint::CreatedBefore { at } => {
                out.push_str(&format!("createdDateTime lt {}", format_filter_instant(*at)))
            }
            Constraint::CreatedFrom { at } => {
                out.push_str(&format!("createdDateTime ge {}", format_filter_instant(*at)))
            }
            Constraint::Is { property, value } => {
                out.push_str(&format!("{} eq {}", property.name(), quote(value)))
            }
            Constraint::IsNull { property } => out.push_str(&format!("{} eq null", property.name())),
            Constraint::IsNoneOf { property, values } => {
                let clauses: Vec<String> =
                    values.iter().map(|value| format!("{} ne {}", property.name(), quote(value))).collect();
                out.push_str(&clauses.join(" and "));
            }
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Constraint::IsNoneOf { values, .. } if values.is_empty())
    }
}

/// An OData string literal: single quotes, an inner quote doubled.
pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// One request for alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Inclusive lower bound on `lastUpdateDateTime`.
    pub from: DateTime<Utc>,
    /// Exclusive upper bound on `lastUpdateDateTime`.
    pub to: DateTime<Utc>,
    /// Further clauses (only when one instant is split).
    pub narrowed: Vec<Constraint>,
    /// `$top`.
    pub top: u32,
    /// `$skip` (0: not sent).
    pub skip: u32,
    /// `$count=true`.
    pub count: bool,
}

impl Query {
    /// A time slice `[from, to)`, asking for the count.
    pub fn slice(from: DateTime<Utc>, to: DateTime<Utc>, top: u32) -> Self {
        Self { from, to, narrowed: Vec::new(), top, skip: 0, count: true }
    }

    /// The versions at exactly `at` (one 100 ns tick), narrowed by `narrowed`.
    pub fn instant(at: DateTime<Utc>, narrowed: Vec<Constraint>, top: u32) -> Self {
        Self { from: at, to: at + TICK, narrowed, top, skip: 0, count: true }
    }

    pub fn width(&self) -> TimeDelta {
        self.to - self.from
    }

    /// The `$filter` text, e.g. `lastUpdateDateTime ge 2026-11-28T06:00:00.0000000Z and
    /// lastUpdateDateTime lt 2026-11-28T07:00:00.0000000Z and severity eq 'high'`.
    pub fn filter(&self) -> String {
        let mut out = format!(
            "lastUpdateDateTime ge {} and lastUpdateDateTime lt {}",
            format_filter_instant(self.from),
            format_filter_instant(self.to)
        );
        for constraint in self.narrowed.iter().filter(|constraint| !constraint.is_empty()) {
            out.push_str(" and ");
            constraint.write_filter(&mut out);
        }
        out
    }
}

/// What a `@odata.nextLink` carries, which decides whether following it is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextLinkKind {
    /// An opaque server cursor (`$skiptoken`): no offset limit applies.
    SkipToken,
    /// A plain offset (`$skip`), subject to the server's cap.
    Skip(u64),
    /// Neither: nothing says what following it costs or whether the server accepts it.
    Unknown,
}

/// Reads the paging parameter of a nextLink (`$skiptoken` or `$skip`, also percent-encoded).
pub fn classify_next_link(link: &str) -> NextLinkKind {
    let Some((_, query)) = link.split_once('?') else { return NextLinkKind::Unknown };
    let mut skip = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = key.to_ascii_lowercase();
        let key = key.strip_prefix("%24").or_else(|| key.strip_prefix('$')).unwrap_or(&key);
        match key {
            "skiptoken" => return NextLinkKind::SkipToken,
            "skip" => {
                skip = value.parse::<u64>().ok().map(NextLinkKind::Skip).or(Some(NextLinkKind::Unknown))
            }
            _ => {}
        }
    }
    skip.unwrap_or(NextLinkKind::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeutil::parse_instant;

    #[test]
    fn the_filter_narrows_the_time_slice_with_every_constraint() {
        let at = parse_instant("2026-11-28T06:00:00.1234567Z").unwrap();
        let query = Query::instant(
            at,
            vec![
                Constraint::CreatedFrom { at: parse_instant("2026-11-01T00:00:00Z").unwrap() },
                Constraint::Is { property: Property::Severity, value: "high".into() },
                Constraint::IsNoneOf {
                    property: Property::AssignedTo,
                    values: vec!["o'brien@contoso.com".into(), "x".into()],
                },
                Constraint::IsNoneOf { property: Property::Status, values: vec![] },
                Constraint::IsNull { property: Property::Classification },
            ],
            500,
        );
        assert_eq!(
            query.filter(),
            "lastUpdateDateTime ge 2026-11-28T06:00:00.1234567Z and lastUpdateDateTime lt 2026-11-28T06:00:00.1234568Z \
             and createdDateTime ge 2026-11-01T00:00:00.0000000Z and severity eq 'high' \
             and assignedTo ne 'o''brien@contoso.com' and assignedTo ne 'x' and classification eq null"
        );
    }

    #[test]
    fn next_links_are_classified_by_their_paging_parameter() {
        let base = "https://graph.microsoft.com/v1.0/security/alerts_v2";
        assert_eq!(
            classify_next_link(&format!("{base}?$filter=x&$top=100&$skip=400")),
            NextLinkKind::Skip(400)
        );
        assert_eq!(classify_next_link(&format!("{base}?%24top=100&%24skip=600")), NextLinkKind::Skip(600));
        assert_eq!(classify_next_link(&format!("{base}?$top=100&$skiptoken=abc")), NextLinkKind::SkipToken);
        assert_eq!(classify_next_link(&format!("{base}?%24skipToken=abc")), NextLinkKind::SkipToken);
        assert_eq!(classify_next_link(&format!("{base}?$top=100")), NextLinkKind::Unknown);
        assert_eq!(classify_next_link(&format!("{base}?$skip=lots")), NextLinkKind::Unknown);
        assert_eq!(classify_next_link(base), NextLinkKind::Unknown);
    }
}
