//! The operator's limit on Graph requests (`GRAPH_REQUESTS_PER_MINUTE`): at most `requests` in
//! any `per`, shared by every request of a session (each stream and every backfill part of one
//! tenant in this process), so reads that run at once stay inside the tenant's quota instead of
//! finding it with 429s. Graph's only published security quota is 150 requests a minute per app
//! and tenant; a 429 still makes every request of the session wait (`Session::backoff_until`).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most `requests` Graph requests in any `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRate {
    pub requests: u32,
    pub per: Duration,
}

impl RequestRate {
    pub const fn per_minute(requests: u32) -> Self {
        Self { requests, per: Duration::from_secs(60) }
    }
}

/// A sliding window: when the last `requests` requests went out.
pub(crate) struct Pacer {
    rate: RequestRate,
    sent: Mutex<VecDeque<Instant>>,
}

impl Pacer {
    pub(crate) fn new(rate: RequestRate) -> Self {
        Self { rate, sent: Mutex::new(VecDeque::with_capacity(rate.requests as usize)) }
    }

    pub(crate) fn rate(&self) -> RequestRate {
        self.rate
    }

    /// How long a request holds its place: the window, and a little more, because Graph counts
    /// a request when it arrives, which may be later than it was sent (a fiftieth of the
    /// window, at least 100 ms).
    fn held_for(&self) -> Duration {
        self.rate.per + (self.rate.per / 50).max(Duration::from_millis(100))
    }

    /// Takes a place for a request sent `now` (`None`), or says how long until one frees up.
    pub(crate) fn try_take(&self, now: Instant) -> Option<Duration> {
        let held_for = self.held_for();
        let mut sent = self.sent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while sent.front().is_some_and(|at| now.saturating_duration_since(*at) >= held_for) {
            sent.pop_front();
        }
        if sent.len() < self.rate.requests.max(1) as usize {
            sent.push_back(now);
            return None;
        }
        let oldest = *sent.front()?;
        Some((oldest + held_for).saturating_duration_since(now).max(Duration::from_millis(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_the_rate_in_any_window() {
        let pacer = Pacer::new(RequestRate { requests: 3, per: Duration::from_secs(10) });
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(pacer.try_take(at(0)), None);
        assert_eq!(pacer.try_take(at(1_000)), None);
        assert_eq!(pacer.try_take(at(2_000)), None);
        // The fourth waits for the first to leave the window (10 s, and 200 ms to spare for
        // the time it took to reach Graph), and takes nothing meanwhile.
        assert_eq!(pacer.try_take(at(2_500)), Some(Duration::from_millis(7_700)));
        assert_eq!(pacer.try_take(at(10_199)), Some(Duration::from_millis(1)));
        assert_eq!(pacer.try_take(at(10_200)), None);
        assert_eq!(pacer.try_take(at(10_700)), Some(Duration::from_millis(500)));
        assert_eq!(pacer.try_take(at(11_200)), None);
        assert_eq!(pacer.try_take(at(12_200)), None);
        assert_eq!(pacer.try_take(at(12_201)), Some(Duration::from_millis(8_199)));
        let minute = Pacer::new(RequestRate::per_minute(150));
        assert_eq!(minute.held_for(), Duration::from_millis(61_200));
    }
}
