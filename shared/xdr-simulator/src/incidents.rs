//! Incidents (`/security/incidents`), derived from the tenant's alert versions: every alert names
//! its incident (`incidentId`), and each alert version makes a new version of its incident, as
//! Defender updates an incident when one of its alerts changes. The derivation reads the alert
//! versions in the order they were added, so versions added later never change incident versions
//! derived earlier (a run that read one must find the same bytes again).
//!
//! What an incident carries: its status, severity, classification, determination and assignment
//! from its alerts, their comments, custom and system tags, and, on some, a property this
//! connector has never seen. `alerts` is only there when a read asks for `$expand=alerts`, and
//! then holds the alerts as they are when read (see the server).

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::alerts::graph_time;
use crate::tenant::SimVersion;

/// The incidents of a tenant, and which alerts each one groups.
#[derive(Debug, Clone, Default)]
pub struct Incidents {
    /// Every incident version, in the order they were made.
    pub versions: Vec<SimVersion>,
    /// The ids of each incident's alerts, in the order they joined it.
    pub members: HashMap<String, Vec<String>>,
}

/// What an incident needs to know of one alert's latest version.
#[derive(Debug, Clone, Deserialize)]
struct AlertFacts {
    #[serde(rename = "incidentId", default)]
    incident: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    classification: Option<String>,
    #[serde(default)]
    determination: Option<String>,
    #[serde(rename = "assignedTo", default)]
    assigned_to: Option<String>,
    #[serde(rename = "createdDateTime", default)]
    created: Option<String>,
    #[serde(default)]
    comments: Vec<Value>,
    #[serde(rename = "systemTags", default)]
    system_tags: Vec<String>,
}

const SEVERITY_ORDER: &[&str] = &["informational", "low", "medium", "high"];

/// Derives the incidents of `tenant_id` from `alerts` (in the order they were added).
pub fn derive(tenant_id: &str, alerts: &[SimVersion]) -> Incidents {
    let mut incidents = Incidents::default();
    let mut facts: HashMap<String, AlertFacts> = HashMap::new();
    // Each incident's newest version, as an index into `incidents.versions`.
    let mut newest: HashMap<String, usize> = HashMap::new();
    for alert in alerts {
        let Ok(alert_facts) = serde_json::from_str::<AlertFacts>(&alert.body) else { continue };
        let Some(incident) = alert_facts.incident.clone() else { continue };
        if !facts.contains_key(&alert.id) {
            incidents.members.entry(incident.clone()).or_default().push(alert.id.clone());
        }
        facts.insert(alert.id.clone(), alert_facts);
        let members: Vec<&AlertFacts> =
            incidents.members[&incident].iter().filter_map(|id| facts.get(id)).collect();
        let previous = newest.get(&incident).map(|index| &incidents.versions[*index]);
        let (at, visible_at, replace) = match previous {
            // The same bulk action touched two alerts of the incident: one incident version.
            Some(previous)
                if alert.last_update == previous.last_update && alert.visible_at == previous.visible_at =>
            {
                (alert.last_update, alert.visible_at, true)
            }
            // An alert version older than the incident's newest (it showed late): the incident
            // changes now, one tick after its newest version.
            Some(previous) if alert.last_update <= previous.last_update => (
                previous.last_update + TimeDelta::nanoseconds(100),
                alert.visible_at.max(previous.visible_at),
                false,
            ),
            _ => (alert.last_update, alert.visible_at, false),
        };
        let body = incident_body(tenant_id, &incident, &members, at).to_string();
        let version = SimVersion { id: incident.clone(), last_update: at, visible_at, body };
        match (replace, newest.get(&incident)) {
            (true, Some(index)) => incidents.versions[*index] = version,
            _ => {
                newest.insert(incident, incidents.versions.len());
                incidents.versions.push(version);
            }
        }
    }
    incidents
}

fn incident_body(tenant_id: &str, id: &str, members: &[&AlertFacts], at: DateTime<Utc>) -> Value {
    let number: u64 = id.parse().unwrap_or(0);
    let statuses: Vec<&str> = members.iter().filter_map(|alert| alert.status.as_deref()).collect();
    let status = if !statuses.is_empty() && statuses.iter().all(|status| *status == "resolved") {
        "resolved"
    } else if statuses.contains(&"inProgress") {
        "inProgress"
    } else {
        "active"
    };
    let severity = members
        .iter()
        .filter_map(|alert| alert.severity.as_deref())
        .max_by_key(|severity| SEVERITY_ORDER.iter().position(|known| known == severity))
        .unwrap_or("unknown");
    let assigned = members.iter().rev().find_map(|alert| alert.assigned_to.clone());
    let resolved = status == "resolved";
    let first = members.first();
    let classification = first.and_then(|alert| alert.classification.clone()).filter(|_| resolved);
    let determination = first.and_then(|alert| alert.determination.clone()).filter(|_| resolved);
    let created = first.and_then(|alert| alert.created.clone()).unwrap_or_else(|| graph_time(at));
    let title = first.and_then(|alert| alert.title.clone()).unwrap_or_else(|| "Suspicious activity".into());
    let comments: Vec<Value> = members.iter().flat_map(|alert| alert.comments.iter().cloned()).collect();
    let mut system_tags: Vec<String> =
        members.iter().flat_map(|alert| alert.system_tags.iter().cloned()).collect();
    system_tags.sort();
    system_tags.dedup();
    let custom_tags = match number % 4 {
        0 => json!(["VIP", "Finance"]),
        1 => json!(["Pen test window"]),
        _ => json!([]),
    };
    let mut incident = json!({
        "@odata.type": "#microsoft.graph.security.incident",
        "id": id,
        "tenantId": tenant_id,
        "status": status,
        "severity": severity,
        "classification": classification,
        "determination": determination,
        "assignedTo": assigned,
        "displayName": format!("'{title}' involving {} alert(s)", members.len()),
        "description": null,
        "summary": null,
        "createdDateTime": created,
        "lastUpdateDateTime": graph_time(at),
        "redirectIncidentId": null,
        "incidentWebUrl": format!("https://security.microsoft.com/incidents/{id}?tid={tenant_id}"),
        "customTags": custom_tags,
        "systemTags": system_tags,
        "comments": comments,
        "resolvingComment": if resolved { json!("Resolved by the SOC.") } else { Value::Null },
        "lastModifiedBy": if assigned.is_some() { json!("API-App:xdr-simulator") } else { Value::Null },
    });
    if number.is_multiple_of(5) {
        // A property this connector has never seen: it must pass through untouched.
        incident["threatIntelligenceContext"] =
            json!({"campaign": format!("Storm-{}", 1000 + number % 97), "confidence": "medium"});
    }
    incident
}

/// An incident version's body with `alerts` inlined, as `$expand=alerts` answers: `alerts` are
/// the exact JSON texts of its alerts' versions Graph lists at the time of the read.
pub fn expanded(body: &str, alerts: &[&str]) -> String {
    let Some(open) = body.strip_suffix('}') else { return body.to_owned() };
    format!("{open},\"alerts\":[{}]}}", alerts.join(","))
}

/// The incident body and the alert texts of a line written from an expanded read, or `None`
/// when the line has no `alerts` appended the way [`expanded`] appends them.
pub fn split_expanded(line: &str) -> Option<(String, Vec<String>)> {
    let at = line.rfind(",\"alerts\":[")?;
    let value: Value = serde_json::from_str(line).ok()?;
    let alerts = value.get("alerts")?.as_array()?.iter().map(Value::to_string).collect();
    Some((format!("{}}}", &line[..at]), alerts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::SimTenant;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-28T06:00:00Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn incidents_group_alerts_and_follow_their_changes() {
        let tenant = SimTenant::with_history(11, now(), TimeDelta::days(2), 90);
        let incidents = derive(&tenant.tenant_id, &tenant.versions);
        assert_eq!(incidents.members.len(), 30, "three alerts per incident");
        assert!(incidents.versions.len() > 90, "an incident changes with each of its alerts");
        let mut keys = std::collections::HashSet::new();
        for version in &incidents.versions {
            assert!(keys.insert((version.id.clone(), version.last_update)), "one body per version");
            let value: Value = serde_json::from_str(&version.body).unwrap();
            assert_eq!(value["lastUpdateDateTime"], json!(graph_time(version.last_update)));
            assert!(value.get("alerts").is_none());
        }
        let bodies: String = incidents.versions.iter().map(|v| v.body.as_str()).collect();
        for expected in [
            "\"status\":\"resolved\"",
            "\"comments\":[{",
            "\"customTags\":[\"VIP\"",
            "threatIntelligenceContext",
            "\"assignedTo\":\"",
        ] {
            assert!(bodies.contains(expected), "{expected}");
        }
        // Versions added later never change what was derived before (versions are added a
        // batch at a time: a bulk action's versions, at one instant, all at once).
        let mut cut = tenant.versions.len() / 2;
        while tenant.versions[cut - 1].last_update == tenant.versions[cut].last_update {
            cut += 1;
        }
        let earlier = derive(&tenant.tenant_id, &tenant.versions[..cut]);
        let later: HashMap<(&str, DateTime<Utc>), &str> =
            incidents.versions.iter().map(|v| ((v.id.as_str(), v.last_update), v.body.as_str())).collect();
        for version in &earlier.versions {
            if let Some(body) = later.get(&(version.id.as_str(), version.last_update)) {
                assert_eq!(*body, version.body);
            }
        }
    }

    #[test]
    fn an_expanded_line_splits_back_into_the_incident_and_its_alerts() {
        let body = r#"{"id":"1","lastUpdateDateTime":"2026-11-28T06:00:00.0000000Z"}"#;
        let line = expanded(body, &[r#"{"id":"a"}"#, r#"{"id":"b"}"#]);
        assert_eq!(
            line,
            r#"{"id":"1","lastUpdateDateTime":"2026-11-28T06:00:00.0000000Z","alerts":[{"id":"a"},{"id":"b"}]}"#
        );
        let (incident, alerts) = split_expanded(&line).unwrap();
        assert_eq!(incident, body);
        assert_eq!(alerts, vec![r#"{"id":"a"}"#, r#"{"id":"b"}"#]);
        assert_eq!(split_expanded(body), None);
    }
}
