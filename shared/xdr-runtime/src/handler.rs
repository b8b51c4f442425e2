//! The two functions' handlers: plain async functions generic over the ports, so the Lambda
//! (Graph, DynamoDB, S3), the local runs (Graph, files, a folder) and the tests (in memory)
//! run the same code.
//!
//! Each invocation authenticates once (the token names the tenant's GUID, which names its
//! state), takes the lease on its state, carries over what an earlier release kept under other
//! keys, and runs the engine or the backfill with the identity it already has.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use tracing::{info, warn};
use xdr_config::SyncConfig;
use xdr_core::adopt::{Adopting, FirstFound};
use xdr_core::backfill::{BackfillPorts, BackfillRequest, run_backfill};
use xdr_core::{
    AlertSource, Clock, EngineError, Identity, Lease, LeaseOutcome, ObjectSink, Ports, RunRequest, StateKeys,
    StateStore, run_sync,
};

use crate::error::AppError;
use crate::response::{BackfillOutcome, BackfillResponse, LeaseHeld, SyncOutcome, SyncResponse};

/// What a handler works with. `state_for` hands out the state store under a key.
pub struct HandlerPorts<'a, S, F, O, L, C> {
    pub source: &'a S,
    pub state_for: F,
    pub sink: &'a O,
    pub lease: &'a L,
    pub clock: &'a C,
}

/// One invocation: who it is, and when it must have answered.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Unique per invocation (Lambda's request id); the lease holder, and part of the run id.
    pub request_id: String,
    /// When the handler must have returned, less what it needs after the work (releasing the
    /// lease, answering); `None`: no limit.
    pub deadline: Option<DateTime<Utc>>,
}

impl Invocation {
    /// A run id: short, random, safe in object names, with the request id's start.
    fn run_request(&self, identity: Identity) -> RunRequest {
        let request: String = self.request_id.chars().take(8).collect();
        RunRequest {
            run_id: format!("{:08x}-{request}", fastrand::u32(..)),
            deadline: self.deadline,
            identity: Some(identity),
        }
    }
}

/// One item's key under today's scheme, then under each earlier one.
fn every_key(keys: &StateKeys, previous: &[StateKeys], key_of: fn(&StateKeys) -> String) -> Vec<String> {
    std::iter::once(keys).chain(previous).map(key_of).collect()
}

/// Proves the credentials work before anything is changed, not even the lease.
async fn authenticate<S: AlertSource>(
    config: &SyncConfig,
    source: &S,
    invocation: &Invocation,
) -> Result<Identity, AppError> {
    let fetch_deadline = config.engine.fetch_deadline(invocation.deadline);
    source.authenticate(fetch_deadline).await.map_err(|error| AppError::Engine(EngineError::Source(error)))
}

/// Runs `work` holding the lease on `keys[0]` and on the keys earlier releases used (`keys[1..]`):
/// if another run holds any of them, says who instead. An earlier release's invocation may still
/// be running while the first invocation of this one carries its state over; taking its lease
/// too keeps the two apart. (Two more conditional writes a run, which cost next to nothing,
/// rather than a rule about when they can stop.)
async fn with_lease<L, C, T, W>(
    lease: &L,
    clock: &C,
    keys: &[String],
    invocation: &Invocation,
    work: W,
) -> Result<Result<T, LeaseHeld>, AppError>
where
    L: Lease,
    C: Clock,
    W: Future<Output = Result<T, AppError>>,
{
    let now = clock.now();
    let until = invocation.deadline.unwrap_or(now + TimeDelta::minutes(15));
    let holder = invocation.request_id.as_str();
    let mut taken: Vec<&String> = Vec::new();
    let mut held = None;
    for key in keys {
        match lease.acquire(key, holder, until, now).await.map_err(EngineError::State) {
            Ok(LeaseOutcome::Acquired) => taken.push(key),
            Ok(LeaseOutcome::Held { holder, until }) => {
                info!(holder = %holder, until = %until, lease = %key, "Another run holds the lease.");
                held = Some(Ok(LeaseHeld::new(&holder, &until.to_rfc3339())));
                break;
            }
            Err(error) => {
                held = Some(Err(AppError::Engine(error)));
                break;
            }
        }
    }
    let result = match held {
        Some(Ok(held)) => Ok(Err(held)),
        Some(Err(error)) => Err(error),
        None => work.await.map(Ok),
    };
    for key in taken {
        if let Err(error) = lease.release(key, holder).await {
            warn!(error = %error, lease = %key, "Could not release the run lease; it ends at the invocation deadline.");
        }
    }
    result
}

/// `xdr-sync`: one scheduled invocation. Any payload is accepted (and ignored).
pub async fn handle_sync<S, T, F, O, L, C>(
    config: &SyncConfig,
    ports: HandlerPorts<'_, S, F, O, L, C>,
    invocation: &Invocation,
) -> Result<SyncResponse, AppError>
where
    S: AlertSource,
    T: StateStore,
    F: Fn(&str) -> T,
    O: ObjectSink,
    L: Lease,
    C: Clock,
{
    let HandlerPorts { source, state_for, sink, lease, clock } = ports;
    let before = source.counts();
    let identity = authenticate(config, source, invocation).await?;
    let (keys, previous) = config.keys(&identity.tenant);
    let lease_keys = every_key(&keys, &previous, StateKeys::sync);
    let store =
        Adopting::new(state_for(&keys.sync()), previous.iter().map(|keys| state_for(&keys.sync())).collect());
    let settings = config.engine_for(&identity.tenant);
    let run = invocation.run_request(identity);
    let work = async {
        let ports = Ports { source, store: &store, sink, clock };
        Ok(run_sync(&settings, ports, run).await?)
    };
    let outcome = match with_lease(lease, clock, &lease_keys, invocation, work).await? {
        Ok(summary) => SyncOutcome::Ran(Box::new(summary)),
        Err(held) => SyncOutcome::LeaseHeld(held),
    };
    Ok(SyncResponse { outcome, requests: source.counts().since(&before) })
}

/// `xdr-backfill`: one invocation for `{"start": ..., "end": ...}`; invoke again with the same
/// event to continue.
pub async fn handle_backfill<S, T, F, O, L, C>(
    config: &SyncConfig,
    ports: HandlerPorts<'_, S, F, O, L, C>,
    event: &Value,
    invocation: &Invocation,
) -> Result<BackfillResponse, AppError>
where
    S: AlertSource,
    T: StateStore,
    F: Fn(&str) -> T,
    O: ObjectSink,
    L: Lease,
    C: Clock,
{
    let HandlerPorts { source, state_for, sink, lease, clock } = ports;
    let before = source.counts();
    // A bad event is refused before anything is read or written.
    let request = BackfillRequest::from_event(event, clock.now()).map_err(EngineError::from)?;
    let identity = authenticate(config, source, invocation).await?;
    let (keys, previous) = config.keys(&identity.tenant);
    // One backfill at a time per tenant and stream: windows that share days share ledgers.
    let lease_keys = every_key(&keys, &previous, StateKeys::backfill);
    // The live sync's state is read for its floor, never written (nor carried over) here.
    let live = FirstFound::new(
        every_key(&keys, &previous, StateKeys::sync).iter().map(|key| state_for(key)).collect(),
    );
    let settings = config.backfill_settings(&identity.tenant);
    let run = invocation.run_request(identity);
    let work = async {
        let ports = BackfillPorts { source, live_state: &live, state_for: &state_for, sink, clock };
        Ok(run_backfill(&settings, &keys, &previous, &request, ports, run).await?)
    };
    let outcome = match with_lease(lease, clock, &lease_keys, invocation, work).await? {
        Ok(outcome) => BackfillOutcome::Ran(outcome.report()),
        Err(held) => BackfillOutcome::LeaseHeld(held),
    };
    Ok(BackfillResponse { outcome, requests: source.counts().since(&before) })
}

/// The deadline of an invocation whose Runtime API deadline is `deadline_ms`, less `margin`.
pub fn invocation_deadline(deadline_ms: u64, margin: TimeDelta) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(i64::try_from(deadline_ms).ok()?).map(|deadline| deadline - margin)
}
