//! A simulated tenant: alerts, each with the versions Graph has shown over time.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::alerts::{alert_id, new_alert, next_version};
use crate::rng::Rng;

/// One version of one alert: what Graph lists for it from `visible_at` on, until a newer one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimVersion {
    pub id: String,
    pub last_update: DateTime<Utc>,
    /// Graph shows a version some time after its `lastUpdateDateTime` (late visibility).
    pub visible_at: DateTime<Utc>,
    /// The exact JSON text Graph sends for it.
    pub body: String,
}

impl crate::graph::Listed for SimVersion {
    fn id(&self) -> &str {
        &self.id
    }

    fn last_update(&self) -> DateTime<Utc> {
        self.last_update
    }

    fn body(&self) -> &str {
        &self.body
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimTenant {
    pub tenant_id: String,
    pub client_id: String,
    /// The simulated app's secret (a fake one; never a real credential).
    pub client_secret: String,
    pub seed: u64,
    /// Alerts created so far (the next alert's number).
    pub created: u64,
    /// Until when the tenant's activity has been generated.
    pub active_until: DateTime<Utc>,
    pub versions: Vec<SimVersion>,
    /// Index of each alert's newest version in `versions` (rebuilt after loading).
    #[serde(skip)]
    latest: HashMap<String, usize>,
}

/// How busy the tenant is when it produces activity on its own.
#[derive(Debug, Clone, Copy)]
pub struct Activity {
    pub new_alerts: u64,
    pub updates: u64,
    /// Of those, how many become visible late (up to 10 minutes after their timestamp).
    pub late: u64,
    /// Of the updates, how many share one instant (a bulk action by an analyst).
    pub bulk: u64,
}

impl SimTenant {
    pub fn new(seed: u64, now: DateTime<Utc>) -> Self {
        let mut rng = Rng::new(seed);
        Self {
            tenant_id: rng.guid(),
            client_id: rng.guid(),
            client_secret: format!("sim~{:016x}{:016x}", rng.next_u64(), rng.next_u64()),
            seed,
            created: 0,
            active_until: now,
            versions: Vec::new(),
            latest: HashMap::new(),
        }
    }

    /// A tenant with `alerts` alerts created over `[now - history, now)`, many updated since,
    /// groups of them in bulk at one shared instant, and some visible late (a few not yet).
    pub fn with_history(seed: u64, now: DateTime<Utc>, history: TimeDelta, alerts: u64) -> Self {
        let mut tenant = Self::new(seed, now - history);
        let mut rng = Rng::new(seed ^ 0x5eed);
        let step = history / (alerts.max(1) as i32);
        for n in 0..alerts {
            let created = now - history + step * (n as i32) + jitter(&mut rng, step);
            let created = created.min(now - TimeDelta::seconds(1));
            let delay = visible_after(&mut rng, 5);
            let id = tenant.add_alert(created, delay).id.clone();
            let mut at = created;
            for _ in 0..rng.below(3) {
                at += TimeDelta::milliseconds(rng.below(6 * 3600 * 1000) as i64 + 1);
                if at >= now {
                    break;
                }
                let delay = visible_after(&mut rng, 5);
                tenant.add_update(&id, at, delay, &mut rng);
            }
        }
        // Bulk actions: an analyst closes a batch of alerts at once, so they share one instant.
        let history_millis = history.num_milliseconds().max(1) as u64;
        // The set of alerts does not change below (only their versions): sort their ids once.
        let mut ids: Vec<String> = tenant.latest.keys().cloned().collect();
        ids.sort();
        // At most about a thousand bulk actions: each scans the alerts, and a million-alert tenant
        // (the memory benchmark) would otherwise take hours to build.
        for _ in 0..(alerts / 100 + 1).min(1_001) {
            let at = now - history
                + TimeDelta::milliseconds(rng.below(history_millis) as i64)
                + TimeDelta::nanoseconds(1_234_500);
            let chosen: Vec<String> = ids
                .iter()
                .filter(|id| {
                    tenant.latest.get(*id).is_some_and(|index| tenant.versions[*index].last_update < at)
                })
                .filter(|_| rng.chance(40))
                .take(60)
                .cloned()
                .collect();
            for id in chosen {
                tenant.add_update(&id, at.min(now - TimeDelta::milliseconds(1)), TimeDelta::zero(), &mut rng);
            }
        }
        // In time order, as they happened: the incidents are derived in this order (see
        // `incidents`), and an alert's history generated at once would make them jump around.
        tenant.versions.sort_by(|a, b| a.last_update.cmp(&b.last_update).then(a.id.cmp(&b.id)));
        tenant.latest.clear();
        tenant.rebuild_index_if_needed();
        tenant.active_until = now;
        tenant
    }

    /// The tenant's incidents, derived from its alert versions (see [`crate::incidents`]).
    pub fn incidents(&self) -> crate::incidents::Incidents {
        crate::incidents::derive(&self.tenant_id, &self.versions)
    }

    /// What Graph lists of the incidents at `now` (see [`SimTenant::current_versions`]).
    pub fn current_incidents(&self, now: DateTime<Utc>) -> Vec<SimVersion> {
        current_of(&self.incidents().versions, now).into_iter().cloned().collect()
    }

    /// The incident versions Graph lists during all of `[start, end]` (see
    /// [`SimTenant::listed_throughout`]).
    pub fn incidents_listed_throughout(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<SimVersion> {
        listed_throughout_of(&self.incidents().versions, start, end).into_iter().cloned().collect()
    }

    /// The tenant's primary domain: Entra accepts it in place of the GUID in the token URL.
    pub fn domain(&self) -> String {
        format!("sim{:x}.onmicrosoft.com", self.seed)
    }

    /// Creates a new alert at `created`, visible `delay` later.
    pub fn add_alert(&mut self, created: DateTime<Utc>, delay: TimeDelta) -> &SimVersion {
        self.rebuild_index_if_needed();
        let n = self.created;
        self.created += 1;
        let created = tick(created);
        let body = new_alert(self.seed, n, created, &self.tenant_id).to_string();
        let id = alert_id(self.seed, n);
        self.latest.insert(id.clone(), self.versions.len());
        self.versions.push(SimVersion { id, last_update: created, visible_at: created + delay, body });
        &self.versions[self.versions.len() - 1]
    }

    /// Adds the next lifecycle version of alert `id` at `at`, visible `delay` later.
    pub fn add_update(
        &mut self,
        id: &str,
        at: DateTime<Utc>,
        delay: TimeDelta,
        rng: &mut Rng,
    ) -> Option<&SimVersion> {
        let at = tick(at);
        self.rebuild_index_if_needed();
        let latest = &self.versions[*self.latest.get(id)?];
        if at <= latest.last_update {
            return None;
        }
        let previous: Value = serde_json::from_str(&latest.body).ok()?;
        let body = next_version(&previous, at, rng).to_string();
        self.latest.insert(id.to_owned(), self.versions.len());
        self.versions.push(SimVersion { id: id.to_owned(), last_update: at, visible_at: at + delay, body });
        self.versions.last()
    }

    fn rebuild_index_if_needed(&mut self) {
        if self.latest.is_empty() && !self.versions.is_empty() {
            for (index, version) in self.versions.iter().enumerate() {
                let newer = self
                    .latest
                    .get(&version.id)
                    .is_none_or(|known| self.versions[*known].last_update < version.last_update);
                if newer {
                    self.latest.insert(version.id.clone(), index);
                }
            }
        }
    }

    /// Activity "now": new alerts and updates (each to a different, older open alert) with timestamps
    /// just before `now`, some shown late. Returns what was actually applied.
    pub fn produce(&mut self, now: DateTime<Utc>, activity: Activity) -> Activity {
        let mut rng = Rng::new(self.seed ^ self.versions.len() as u64 ^ now.timestamp_micros() as u64);
        let mut applied = Activity { new_alerts: 0, updates: 0, late: 0, bulk: 0 };
        let first_new = self.versions.len();
        // Updates go to alerts that existed before this burst: a version superseded within the
        // same instant would never be visible to anyone, and the counts would not add up.
        let mut ids = self.open_alert_ids(now);
        ids.sort();
        for i in 0..activity.new_alerts {
            let late = i < activity.late;
            // A late one carries an older timestamp that Graph only shows now.
            let (created, delay) = if late {
                (now - TimeDelta::minutes(9), TimeDelta::minutes(9))
            } else {
                (now - TimeDelta::milliseconds(rng.below(20_000) as i64 + 1), TimeDelta::zero())
            };
            self.add_alert(created, delay);
            applied.new_alerts += 1;
            applied.late += u64::from(late);
        }
        let bulk_at = now - TimeDelta::milliseconds(rng.below(5_000) as i64 + 1);
        while applied.updates < activity.updates && !ids.is_empty() {
            let id = ids.swap_remove(rng.below(ids.len() as u64) as usize);
            let bulk = applied.bulk < activity.bulk;
            let at = if bulk { bulk_at } else { now - TimeDelta::milliseconds(rng.below(20_000) as i64 + 1) };
            if self.add_update(&id, at, TimeDelta::zero(), &mut rng).is_some() {
                applied.updates += 1;
                applied.bulk += u64::from(bulk);
            }
        }
        // Timestamps lie in the past, but nothing produced now was listed before now: the
        // ground truth of what a run could have seen depends on it.
        for version in &mut self.versions[first_new..] {
            version.visible_at = version.visible_at.max(now);
        }
        self.active_until = self.active_until.max(now);
        applied
    }

    /// Activity for the time that passed since `active_until` (about one new alert every two
    /// minutes and an update every three), so a tenant left alone has news when it is back.
    pub fn catch_up(&mut self, now: DateTime<Utc>) -> Activity {
        let elapsed = (now - self.active_until).max(TimeDelta::zero()).min(TimeDelta::days(7));
        let minutes = elapsed.num_minutes() as u64;
        let activity =
            Activity { new_alerts: (minutes / 2).max(3), updates: (minutes / 3).max(4), late: 1, bulk: 2 };
        self.produce(now, activity);
        activity
    }

    fn open_alert_ids(&self, now: DateTime<Utc>) -> Vec<String> {
        self.current_versions(now)
            .into_iter()
            .filter(|v| !v.body.contains("\"status\":\"resolved\""))
            .map(|v| v.id.clone())
            .collect()
    }

    /// What Graph lists at `now`: each alert's newest version that is visible.
    pub fn current_versions(&self, now: DateTime<Utc>) -> Vec<&SimVersion> {
        current_of(&self.versions, now)
    }

    /// The versions Graph lists during all of `[start, end]`: visible by `start`, and not
    /// superseded by a newer version of the same alert visible by `end`. A run over that interval
    /// that reports itself complete must have written each of these.
    pub fn listed_throughout(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<&SimVersion> {
        listed_throughout_of(&self.versions, start, end)
    }
}

/// Each record's newest version visible at `now`.
pub fn current_of(versions: &[SimVersion], now: DateTime<Utc>) -> Vec<&SimVersion> {
    let mut latest: HashMap<&str, &SimVersion> = HashMap::new();
    for version in versions.iter().filter(|v| v.visible_at <= now) {
        let entry = latest.entry(version.id.as_str()).or_insert(version);
        if version.last_update > entry.last_update {
            *entry = version;
        }
    }
    latest.into_values().collect()
}

/// The versions listed during all of `[start, end]`: visible by `start`, and not superseded by a
/// newer version of the same record visible by `end`.
pub fn listed_throughout_of(
    versions: &[SimVersion],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<&SimVersion> {
    let mut newest_by_end: HashMap<&str, DateTime<Utc>> = HashMap::new();
    for version in versions.iter().filter(|v| v.visible_at <= end) {
        let newest = newest_by_end.entry(version.id.as_str()).or_insert(version.last_update);
        *newest = (*newest).max(version.last_update);
    }
    versions
        .iter()
        .filter(|v| v.visible_at <= start && newest_by_end.get(v.id.as_str()) == Some(&v.last_update))
        .collect()
}

fn jitter(rng: &mut Rng, step: TimeDelta) -> TimeDelta {
    let nanos = step.num_nanoseconds().unwrap_or(0).max(1) as u64;
    TimeDelta::nanoseconds((rng.below(nanos) / 2) as i64)
}

/// Most versions show at once; `late_percent` of them up to 10 minutes late.
fn visible_after(rng: &mut Rng, late_percent: u64) -> TimeDelta {
    if rng.chance(late_percent) { TimeDelta::seconds(rng.below(600) as i64 + 1) } else { TimeDelta::zero() }
}

/// Graph's 100 ns tick.
fn tick(instant: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = instant.timestamp_subsec_nanos();
    instant - TimeDelta::nanoseconds(i64::from(nanos % 100))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-28T06:00:00Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn history_is_deterministic_and_realistic() {
        let a = SimTenant::with_history(7, now(), TimeDelta::days(2), 300);
        let b = SimTenant::with_history(7, now(), TimeDelta::days(2), 300);
        assert!(a.versions == b.versions, "the same seed gives the same tenant");
        assert!(a.versions.len() > 350, "updates were generated: {}", a.versions.len());
        let sizes: usize = a.versions.iter().map(|v| v.body.len()).sum();
        let average = sizes / a.versions.len();
        assert!((2500..6000).contains(&average), "average alert size {average}");
        let mut instants: HashMap<DateTime<Utc>, usize> = HashMap::new();
        for version in &a.versions {
            *instants.entry(version.last_update).or_default() += 1;
            let parsed: Value = serde_json::from_str(&version.body).unwrap();
            assert_eq!(parsed["id"], Value::String(version.id.clone()));
        }
        assert!(instants.values().any(|n| *n > 3), "some versions share one instant");
        assert!(a.versions.iter().any(|v| v.visible_at > v.last_update), "some are visible late");
        assert!(a.versions.iter().any(|v| v.body.contains("quantumEntanglementEvidence")));
    }

    #[test]
    fn produced_activity_shows_up_as_current_versions() {
        let mut tenant = SimTenant::with_history(1, now(), TimeDelta::hours(6), 50);
        let before = tenant.current_versions(now()).len();
        let versions = tenant.versions.len();
        let applied = tenant.produce(
            now() + TimeDelta::minutes(1),
            Activity { new_alerts: 5, updates: 10, late: 1, bulk: 3 },
        );
        assert_eq!((applied.new_alerts, applied.updates, applied.late, applied.bulk), (5, 10, 1, 3));
        assert_eq!(tenant.versions.len(), versions + 15);
        assert_eq!(tenant.current_versions(now() + TimeDelta::minutes(1)).len(), before + 5);
    }

    #[test]
    fn a_tenant_loaded_from_json_keeps_updating_old_alerts() {
        let tenant = SimTenant::with_history(3, now(), TimeDelta::hours(6), 40);
        let mut loaded: SimTenant = serde_json::from_str(&serde_json::to_string(&tenant).unwrap()).unwrap();
        let applied = loaded
            .produce(now() + TimeDelta::minutes(1), Activity { new_alerts: 2, updates: 8, late: 0, bulk: 0 });
        assert_eq!(applied.updates, 8, "updates reach alerts created before the save");
    }
}
