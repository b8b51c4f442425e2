//! Splitting one 100 ns instant that holds more versions than Graph lets us page through.
//!
//! A time slice cannot be narrower than one tick, and `$skip` is capped (500 on Graph's security
//! API), so a bulk job that creates or updates thousands of alerts at one instant can only be read
//! by narrowing the query with other filterable properties: `createdDateTime` ranges first, then
//! the string properties. A split by values is exhaustive by construction: one `eq` part per value
//! seen, plus a catch-all of `ne` clauses for everything else (nulls included, as OData compares
//! them). Parts that are still too big are split again; a part whose every property is pinned
//! down cannot be, and holds the cursor (see the engine).

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::query::{Constraint, Property};
use crate::timeutil::parse_instant;

/// At most this many `eq` parts per split; rarer values stay in the catch-all and are split
/// again if it is still too big, so a property with hundreds of values costs no more requests
/// than the records need.
const MAX_VALUES_PER_SPLIT: usize = 16;
/// A catch-all lists at most this many values (each an `ne` clause in the URL).
const MAX_EXCLUDED_VALUES: usize = 48;

/// The properties of one record that a split can filter on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitFields {
    pub created: Option<DateTime<Utc>>,
    pub values: [Option<String>; 6],
}

#[derive(Deserialize)]
struct RawFields<'a> {
    #[serde(rename = "createdDateTime", borrow, default)]
    created: Option<Cow<'a, str>>,
    #[serde(rename = "serviceSource", borrow, default)]
    service_source: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    severity: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    classification: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    determination: Option<Cow<'a, str>>,
    #[serde(rename = "assignedTo", borrow, default)]
    assigned_to: Option<Cow<'a, str>>,
}

impl SplitFields {
    /// Reads the filterable properties of a raw alert (none, if they are not strings or null).
    pub fn of(raw: &RawValue) -> Self {
        let Ok(fields) = serde_json::from_str::<RawFields<'_>>(raw.get()) else { return Self::default() };
        let own = |value: Option<Cow<'_, str>>| value.map(Cow::into_owned);
        Self {
            created: fields.created.as_deref().and_then(parse_instant),
            values: [
                own(fields.service_source),
                own(fields.severity),
                own(fields.status),
                own(fields.classification),
                own(fields.determination),
                own(fields.assigned_to),
            ],
        }
    }

    fn value(&self, property: Property) -> Option<&str> {
        let index = Property::SPLIT_ORDER.iter().position(|p| *p == property).unwrap_or(0);
        self.values[index].as_deref()
    }
}

/// The parts to read instead of the query narrowed by `narrowed`, chosen from a `sample` of its
/// records; `None` when no filterable property tells the sampled records apart.
pub fn choose_split(narrowed: &[Constraint], sample: &[SplitFields]) -> Option<Vec<Vec<Constraint>>> {
    split_by_created(narrowed, sample).or_else(|| {
        Property::SPLIT_ORDER.into_iter().find_map(|property| split_by_values(narrowed, sample, property))
    })
}

/// Two `createdDateTime` ranges around the median of the distinct values seen.
fn split_by_created(narrowed: &[Constraint], sample: &[SplitFields]) -> Option<Vec<Vec<Constraint>>> {
    // A record without `createdDateTime` would match neither range.
    let mut created: Vec<DateTime<Utc>> =
        sample.iter().map(|fields| fields.created).collect::<Option<_>>()?;
    created.sort();
    created.dedup();
    if created.len() < 2 {
        return None;
    }
    let middle = created[created.len() / 2];
    let mut before: Vec<Constraint> =
        narrowed.iter().filter(|c| !matches!(c, Constraint::CreatedBefore { .. })).cloned().collect();
    before.push(Constraint::CreatedBefore { at: middle });
    let mut from: Vec<Constraint> =
        narrowed.iter().filter(|c| !matches!(c, Constraint::CreatedFrom { .. })).cloned().collect();
    from.push(Constraint::CreatedFrom { at: middle });
    Some(vec![before, from])
}

/// One `eq` part per frequent value seen, and a catch-all of `ne` clauses for the rest.
fn split_by_values(
    narrowed: &[Constraint],
    sample: &[SplitFields],
    property: Property,
) -> Option<Vec<Vec<Constraint>>> {
    if narrowed.iter().any(|c| matches!(c, Constraint::Is { property: p, .. } if *p == property)) {
        return None;
    }
    let excluded: Vec<String> = narrowed
        .iter()
        .find_map(|c| match c {
            Constraint::IsNoneOf { property: p, values } if *p == property => Some(values.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let mut frequency: BTreeMap<Option<&str>, usize> = BTreeMap::new();
    for fields in sample {
        *frequency.entry(fields.value(property)).or_default() += 1;
    }
    if frequency.len() < 2 {
        return None;
    }
    let mut values: Vec<(&str, usize)> =
        frequency.iter().filter_map(|(value, n)| value.map(|value| (value, *n))).collect();
    values.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let room = MAX_EXCLUDED_VALUES.saturating_sub(excluded.len()).min(MAX_VALUES_PER_SPLIT);
    values.truncate(room);
    if values.is_empty() {
        return None;
    }
    let others: Vec<Constraint> = narrowed
        .iter()
        .filter(|c| !matches!(c, Constraint::IsNoneOf { property: p, .. } if *p == property))
        .cloned()
        .collect();
    let mut parts: Vec<Vec<Constraint>> = values
        .iter()
        .map(|(value, _)| {
            let mut part = others.clone();
            part.push(Constraint::Is { property, value: (*value).to_owned() });
            part
        })
        .collect();
    let mut rest = others;
    let mut all_excluded = excluded;
    all_excluded.extend(values.iter().map(|(value, _)| (*value).to_owned()));
    rest.push(Constraint::IsNoneOf { property, values: all_excluded });
    parts.push(rest);
    Some(parts)
}

/// A split instant's remaining parts, saved so a run cut short (a 3 s deadline) resumes where it
/// stopped instead of reading the instant from its start again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstantProgress {
    pub at: DateTime<Utc>,
    /// When the run that began reading it started. Parts read across runs are only as fresh as
    /// this: a version that became visible later may be missing from a part read earlier.
    pub started: DateTime<Utc>,
    /// The parts not yet read completely, each the constraints that narrow the instant.
    pub pending: Vec<Vec<Constraint>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(created: &str, source: &str, severity: Option<&str>) -> SplitFields {
        SplitFields {
            created: parse_instant(created),
            values: [Some(source.into()), severity.map(Into::into), Some("new".into()), None, None, None],
        }
    }

    #[test]
    fn created_ranges_come_first_and_cover_both_sides_of_the_median() {
        let sample = vec![
            record("2026-11-01T00:00:00Z", "a", None),
            record("2026-11-02T00:00:00Z", "a", None),
            record("2026-11-03T00:00:00Z", "b", None),
        ];
        let parts = choose_split(&[], &sample).unwrap();
        let middle = parse_instant("2026-11-02T00:00:00Z").unwrap();
        assert_eq!(
            parts,
            vec![
                vec![Constraint::CreatedBefore { at: middle }],
                vec![Constraint::CreatedFrom { at: middle }]
            ]
        );
        // A narrower range replaces the bound it tightens.
        let again = choose_split(&parts[1], &sample[1..]).unwrap();
        assert_eq!(
            again[1],
            vec![Constraint::CreatedFrom { at: parse_instant("2026-11-03T00:00:00Z").unwrap() }]
        );
    }

    #[test]
    fn values_split_into_eq_parts_and_a_catch_all_that_keeps_nulls() {
        let same = "2026-11-01T00:00:00Z";
        let sample =
            vec![record(same, "a", Some("high")), record(same, "a", None), record(same, "a", Some("low"))];
        // serviceSource has one value: severity (with a null) splits instead.
        let parts = choose_split(&[], &sample).unwrap();
        let severity = Property::Severity;
        assert_eq!(
            parts,
            vec![
                vec![Constraint::Is { property: severity, value: "high".into() }],
                vec![Constraint::Is { property: severity, value: "low".into() }],
                vec![Constraint::IsNoneOf { property: severity, values: vec!["high".into(), "low".into()] }],
            ]
        );
        // Inside the catch-all, newly seen values extend the exclusions.
        let inside = vec![record(same, "a", Some("medium")), record(same, "a", None)];
        let parts = choose_split(&parts[2], &inside).unwrap();
        assert_eq!(
            parts[1],
            vec![Constraint::IsNoneOf {
                property: severity,
                values: vec!["high".into(), "low".into(), "medium".into()]
            }]
        );
        // A part pinned to one value is never split by that property again.
        let pinned = vec![Constraint::Is { property: severity, value: "high".into() }];
        let sample = vec![record(same, "a", Some("high")), record(same, "a", Some("high"))];
        assert_eq!(choose_split(&pinned, &sample), None);
    }

    #[test]
    fn fields_are_read_from_the_raw_record() {
        let raw: Box<RawValue> = serde_json::from_str(
            r#"{"id":"x","createdDateTime":"2026-11-01T00:00:00.1234567Z","serviceSource":"microsoftSentinel","severity":"high","status":"new","classification":null,"assignedTo":"ann@contoso.com"}"#,
        )
        .unwrap();
        let fields = SplitFields::of(&raw);
        assert_eq!(fields.created, parse_instant("2026-11-01T00:00:00.1234567Z"));
        assert_eq!(fields.value(Property::ServiceSource), Some("microsoftSentinel"));
        assert_eq!(fields.value(Property::Classification), None);
        assert_eq!(fields.value(Property::AssignedTo), Some("ann@contoso.com"));
    }
}
