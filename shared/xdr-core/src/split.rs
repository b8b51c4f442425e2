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

    pub fn value(&self, property: Property) -> Option<&str> {
        let index = Property::ALL.iter().position(|p| *p == property).unwrap_or(0);
        self.values[index].as_deref()
    }
}

/// How a part was split, so a split that proved not exhaustive is not made again the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum SplitBy {
    /// Two `createdDateTime` ranges.
    Created,
    /// One `eq` part per value seen, a `ne` catch-all and, with `with_null`, an `eq null` part.
    Values { property: Property, with_null: bool },
}

/// The parts to read instead of one that is too big, and how they were chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub by: SplitBy,
    pub parts: Vec<Vec<Constraint>>,
}

/// The parts to read instead of the query narrowed by `narrowed`, chosen from a `sample` of its
/// records, never in a way listed in `avoid`; `None` when nothing left tells the records apart.
pub fn choose_split(
    properties: &[Property],
    narrowed: &[Constraint],
    sample: &[SplitFields],
    avoid: &[SplitBy],
) -> Option<Split> {
    let created = (!avoid.contains(&SplitBy::Created))
        .then(|| split_by_created(narrowed, sample))
        .flatten()
        .map(|parts| Split { by: SplitBy::Created, parts });
    created.or_else(|| {
        properties.iter().copied().find_map(|property| {
            if avoid.contains(&SplitBy::Values { property, with_null: true }) {
                return None;
            }
            // Once a split without a null part fell short, the next one asks for nulls apart.
            let force_null = avoid.contains(&SplitBy::Values { property, with_null: false });
            split_by_values(narrowed, sample, property, force_null)
        })
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

/// One `eq` part per frequent value seen, a catch-all of `ne` clauses for the rest, and an
/// `eq null` part when nulls were seen (or `force_null`). OData counts a null as `ne` every
/// string, so the catch-all holds the nulls too and they are read twice (dedup keeps that free);
/// a back end that compares as SQL does leaves nulls out of every `ne`, and only the `eq null`
/// part finds them. Either way the parts cover the whole.
fn split_by_values(
    narrowed: &[Constraint],
    sample: &[SplitFields],
    property: Property,
    force_null: bool,
) -> Option<Split> {
    let pinned = narrowed.iter().any(|c| match c {
        Constraint::Is { property: p, .. } | Constraint::IsNull { property: p } => *p == property,
        _ => false,
    });
    if pinned {
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
    let with_null = force_null || frequency.contains_key(&None);
    if frequency.len() < 2 && !force_null {
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
    if with_null {
        let mut part = others.clone();
        part.push(Constraint::IsNull { property });
        parts.push(part);
    }
    let mut rest = others;
    let mut all_excluded = excluded;
    all_excluded.extend(values.iter().map(|(value, _)| (*value).to_owned()));
    rest.push(Constraint::IsNoneOf { property, values: all_excluded });
    parts.push(rest);
    Some(Split { by: SplitBy::Values { property, with_null }, parts })
}

/// One part of a split instant still to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPart {
    /// The constraints that narrow the instant to this part.
    pub narrowed: Vec<Constraint>,
    /// Ways of splitting this part that proved not exhaustive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub avoid: Vec<SplitBy>,
    /// The check this part's count adds to (see `SplitCheck`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<u32>,
}

impl PendingPart {
    pub fn whole() -> Self {
        Self { narrowed: Vec::new(), avoid: Vec::new(), check: None }
    }
}

/// A split is exhaustive by construction; this checks it by counts. The parts' first counts must
/// add up to at least the whole's count. If they fall short, the whole is counted again (alerts
/// updated meanwhile leave the instant); still short, the split lost records and the whole is
/// read again another way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitCheck {
    pub id: u32,
    /// The part that was split, and how.
    pub whole: Vec<Constraint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub whole_avoid: Vec<SplitBy>,
    pub by: SplitBy,
    /// The whole's count when it was split.
    pub expected: u64,
    /// Parts not yet counted, and the sum of those that were.
    pub open: u32,
    pub sum: u64,
}

/// A split instant's remaining parts, saved so a run cut short (a 3 s deadline) resumes where it
/// stopped instead of reading the instant from its start again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstantProgress {
    pub at: DateTime<Utc>,
    /// When the run that began reading it started. Parts read across runs are only as fresh as
    /// this: a version that became visible later may be missing from a part read earlier.
    pub started: DateTime<Utc>,
    /// The parts not yet read completely (a stack: the last is read next).
    pub pending: Vec<PendingPart>,
    /// The splits whose counts are still to be checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<SplitCheck>,
    /// The next check's id. Ids are never reused: parts of a check dropped as moot still name it.
    #[serde(default)]
    pub next_check: u32,
}

impl InstantProgress {
    pub fn new(at: DateTime<Utc>, started: DateTime<Utc>) -> Self {
        Self { at, started, pending: vec![PendingPart::whole()], checks: Vec::new(), next_check: 0 }
    }

    pub fn new_check_id(&mut self) -> u32 {
        let id = self.next_check;
        self.next_check += 1;
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[Property] = crate::stream::ALERTS.split_properties;

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
        let split = choose_split(ALL, &[], &sample, &[]).unwrap();
        assert_eq!(split.by, SplitBy::Created);
        let parts = split.parts;
        let middle = parse_instant("2026-11-02T00:00:00Z").unwrap();
        assert_eq!(
            parts,
            vec![
                vec![Constraint::CreatedBefore { at: middle }],
                vec![Constraint::CreatedFrom { at: middle }]
            ]
        );
        // A narrower range replaces the bound it tightens.
        let again = choose_split(ALL, &parts[1], &sample[1..], &[]).unwrap().parts;
        assert_eq!(
            again[1],
            vec![Constraint::CreatedFrom { at: parse_instant("2026-11-03T00:00:00Z").unwrap() }]
        );
    }

    #[test]
    fn values_split_into_eq_parts_a_null_part_and_a_catch_all() {
        let same = "2026-11-01T00:00:00Z";
        let sample =
            vec![record(same, "a", Some("high")), record(same, "a", None), record(same, "a", Some("low"))];
        // serviceSource has one value: severity (with a null) splits instead.
        let split = choose_split(ALL, &[], &sample, &[]).unwrap();
        let severity = Property::Severity;
        assert_eq!(split.by, SplitBy::Values { property: severity, with_null: true });
        let parts = split.parts;
        assert_eq!(
            parts,
            vec![
                vec![Constraint::Is { property: severity, value: "high".into() }],
                vec![Constraint::Is { property: severity, value: "low".into() }],
                vec![Constraint::IsNull { property: severity }],
                vec![Constraint::IsNoneOf { property: severity, values: vec!["high".into(), "low".into()] }],
            ]
        );
        // Inside the catch-all, newly seen values extend the exclusions.
        let inside = vec![record(same, "a", Some("medium")), record(same, "a", Some("urgent"))];
        let split = choose_split(ALL, &parts[3], &inside, &[]).unwrap();
        assert_eq!(split.by, SplitBy::Values { property: severity, with_null: false });
        assert_eq!(
            split.parts[2],
            vec![Constraint::IsNoneOf {
                property: severity,
                values: vec!["high".into(), "low".into(), "medium".into(), "urgent".into()]
            }]
        );
        // A part pinned to one value, or to null, is never split by that property again.
        for pinned in [
            Constraint::Is { property: severity, value: "high".into() },
            Constraint::IsNull { property: severity },
        ] {
            let sample = vec![record(same, "a", Some("high")), record(same, "a", None)];
            assert_eq!(choose_split(ALL, &[pinned], &sample, &[]), None);
        }
    }

    #[test]
    fn a_split_that_fell_short_is_made_again_with_nulls_apart_then_avoided() {
        let same = "2026-11-01T00:00:00Z";
        let sample = vec![record(same, "a", Some("high")), record(same, "a", Some("low"))];
        let severity = Property::Severity;
        let first = choose_split(ALL, &[], &sample, &[]).unwrap();
        assert_eq!(first.by, SplitBy::Values { property: severity, with_null: false });
        let again = choose_split(ALL, &[], &sample, &[first.by]).unwrap();
        assert_eq!(again.by, SplitBy::Values { property: severity, with_null: true });
        assert!(again.parts.contains(&vec![Constraint::IsNull { property: severity }]));
        // Both ways failed: severity is not used again (status has one value: nothing left).
        assert_eq!(choose_split(ALL, &[], &sample, &[first.by, again.by]), None);
        let created = vec![record(same, "a", None), record("2026-11-02T00:00:00Z", "a", None)];
        assert_ne!(
            choose_split(ALL, &[], &created, &[SplitBy::Created]).map(|s| s.by),
            Some(SplitBy::Created)
        );
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
