//! What the handlers answer, typed. They serialise to the fields and formats operators script
//! against (the backfill state machine reads `$.result.complete`), and the metrics are built
//! from the same values.

use std::collections::BTreeMap;

use serde::Serialize;
use xdr_core::backfill::BackfillReport;
use xdr_core::stream::{ALERTS, Stream};
use xdr_core::summary::ObjectSummary;
use xdr_core::{RunSummary, SourceCounts};

use crate::error::AppError;

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

/// One stream's run in a sync invocation: what it answered, or why it failed.
#[derive(Debug)]
pub struct StreamRun {
    pub stream: Stream,
    pub result: Result<SyncResponse, AppError>,
    /// What the stream's source was asked during its run, failed or not.
    pub requests: SourceCounts,
}

/// One stream's entry in the answer's `streams`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamEntry {
    pub complete: bool,
    /// Why the stream failed (its message; `error_type` is its stable type).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_because: Option<String>,
    /// Versions written (alerts or incidents).
    pub written: u64,
    pub objects: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub covered_until: Option<String>,
    pub graph_requests: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub expand_fallbacks: u64,
    /// The configured start changed after the stream's first run (what that means).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_changed: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl StreamEntry {
    fn of(run: &StreamRun) -> Self {
        match &run.result {
            Ok(response) => {
                let (stopped_because, covered_until, start_changed) = match &response.outcome {
                    SyncOutcome::Ran(summary) => (
                        summary.stopped_because.clone(),
                        Some(summary.covered_until.clone()),
                        summary.start_changed.clone(),
                    ),
                    SyncOutcome::LeaseHeld(held) => (Some(held.stopped_because.clone()), None, None),
                };
                Self {
                    complete: response.complete(),
                    error: None,
                    error_type: None,
                    stopped_because,
                    written: response.alerts_written(),
                    objects: response.objects_written(),
                    covered_until,
                    graph_requests: run.requests.graph_requests,
                    expand_fallbacks: run.requests.expand_fallbacks,
                    start_changed,
                }
            }
            Err(error) => Self {
                complete: false,
                error: Some(error.to_string()),
                error_type: Some(error.kind()),
                stopped_because: None,
                written: 0,
                objects: 0,
                covered_until: None,
                graph_requests: run.requests.graph_requests,
                expand_fallbacks: run.requests.expand_fallbacks,
                start_changed: None,
            },
        }
    }
}

/// `xdr-sync`'s answer: the first stream's run at the top level (alerts when served, so the
/// fields operators script against stay as they were), and every stream's outcome in `streams`.
/// The top-level `complete` is true exactly when every stream served is complete.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncAnswer {
    #[serde(flatten)]
    pub primary: SyncResponse,
    pub streams: BTreeMap<&'static str, StreamEntry>,
}

impl SyncAnswer {
    /// The answer to the runs of one invocation. When the first stream failed, the invocation
    /// fails with its error (as a sync of that stream alone would); the others ran all the same.
    pub fn from_runs(runs: Vec<StreamRun>) -> Result<Self, AppError> {
        let streams: BTreeMap<&'static str, StreamEntry> =
            runs.iter().map(|run| (run.stream.name, StreamEntry::of(run))).collect();
        let primary_index = runs.iter().position(|run| run.stream == ALERTS).unwrap_or(0);
        let Some(primary) = runs.into_iter().nth(primary_index) else {
            return Err(AppError::InvalidEvent("no stream to sync".into()));
        };
        let mut primary = primary.result?;
        let unfinished = streams.iter().find(|(_, entry)| !entry.complete);
        if let (Some((name, entry)), SyncOutcome::Ran(summary)) = (unfinished, &mut primary.outcome)
            && summary.complete
        {
            summary.complete = false;
            let why = entry.error.clone().or_else(|| entry.stopped_because.clone()).unwrap_or_default();
            summary.stopped_because = Some(format!("the {name} stream is not complete: {why}"));
        }
        Ok(Self { primary, streams })
    }
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
