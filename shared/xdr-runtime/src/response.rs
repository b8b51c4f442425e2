//! What the handlers answer, typed. They serialise to the fields and formats operators script
//! against (the backfill state machine reads `$.result.complete`), and the metrics are built
//! from the same values.

use serde::Serialize;
use xdr_core::backfill::BackfillReport;
use xdr_core::summary::ObjectSummary;
use xdr_core::{RunSummary, SourceCounts};

/// Another invocation holds the lease: this one did nothing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeaseHeld {
    pub complete: bool,
    pub stopped_because: String,
    pub alerts_written: u64,
    pub objects: Vec<ObjectSummary>,
}

impl LeaseHeld {
    pub fn new(holder: &str, until: &str) -> Self {
        Self {
            complete: false,
            stopped_because: format!(
                "another invocation ({holder}) is running until {until}; this one did nothing"
            ),
            alerts_written: 0,
            objects: Vec::new(),
        }
    }
}

/// What one sync invocation did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SyncOutcome {
    Ran(Box<RunSummary>),
    LeaseHeld(LeaseHeld),
}

/// `xdr-sync`'s answer: the run (or the held lease) and what it asked of Graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncResponse {
    #[serde(flatten)]
    pub outcome: SyncOutcome,
    #[serde(flatten)]
    pub requests: SourceCounts,
}

/// What one backfill invocation did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum BackfillOutcome {
    Ran(BackfillReport),
    LeaseHeld(LeaseHeld),
}

/// `xdr-backfill`'s answer: the tally and this invocation's work (or the held lease) and what
/// it asked of Graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackfillResponse {
    #[serde(flatten)]
    pub outcome: BackfillOutcome,
    #[serde(flatten)]
    pub requests: SourceCounts,
}

/// The numbers every response carries, for the metrics.
pub trait Measured {
    fn complete(&self) -> bool;
    fn alerts_written(&self) -> u64;
    fn objects_written(&self) -> u64;
    fn requests(&self) -> SourceCounts;
    /// The engine's counters, when it ran (a held lease has none).
    fn summary(&self) -> Option<RunCounters>;
}

/// The engine's counters that become metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunCounters {
    pub slices_split: u64,
    pub slices_reread: u64,
    pub instants_split: u64,
    /// Where reading is complete up to (the live sync's cursor), for the lag.
    pub covered_until: Option<chrono::DateTime<chrono::Utc>>,
}

impl Measured for SyncResponse {
    fn complete(&self) -> bool {
        match &self.outcome {
            SyncOutcome::Ran(summary) => summary.complete,
            SyncOutcome::LeaseHeld(held) => held.complete,
        }
    }

    fn alerts_written(&self) -> u64 {
        match &self.outcome {
            SyncOutcome::Ran(summary) => summary.alerts_written,
            SyncOutcome::LeaseHeld(held) => held.alerts_written,
        }
    }

    fn objects_written(&self) -> u64 {
        match &self.outcome {
            SyncOutcome::Ran(summary) => summary.objects.len() as u64,
            SyncOutcome::LeaseHeld(held) => held.objects.len() as u64,
        }
    }

    fn requests(&self) -> SourceCounts {
        self.requests
    }

    fn summary(&self) -> Option<RunCounters> {
        match &self.outcome {
            SyncOutcome::Ran(summary) => Some(RunCounters {
                slices_split: summary.slices_split,
                slices_reread: summary.slices_reread,
                instants_split: summary.instants_split,
                covered_until: summary.cursor,
            }),
            SyncOutcome::LeaseHeld(_) => None,
        }
    }
}

impl Measured for BackfillResponse {
    fn complete(&self) -> bool {
        match &self.outcome {
            BackfillOutcome::Ran(report) => report.complete(),
            BackfillOutcome::LeaseHeld(held) => held.complete,
        }
    }

    fn alerts_written(&self) -> u64 {
        match &self.outcome {
            BackfillOutcome::Ran(report) => report.alerts_written(),
            BackfillOutcome::LeaseHeld(held) => held.alerts_written,
        }
    }

    fn objects_written(&self) -> u64 {
        match &self.outcome {
            BackfillOutcome::Ran(report) => report.objects().len() as u64,
            BackfillOutcome::LeaseHeld(held) => held.objects.len() as u64,
        }
    }

    fn requests(&self) -> SourceCounts {
        self.requests
    }

    fn summary(&self) -> Option<RunCounters> {
        match &self.outcome {
            BackfillOutcome::Ran(BackfillReport::Read(report)) => Some(RunCounters {
                slices_split: report.slices_split,
                slices_reread: report.slices_reread,
                instants_split: report.instants_split,
                // A backfill covers the past: no lag to report.
                covered_until: None,
            }),
            _ => None,
        }
    }
}
