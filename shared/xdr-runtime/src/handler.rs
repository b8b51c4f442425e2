//! The two functions' handlers: plain async functions generic over the ports, so the Lambda
//! (Graph, DynamoDB, S3), the local runs (Graph, files, a folder) and the tests (in memory)
//! run the same code.
//!
//! Each invocation authenticates once (the token names the tenant's GUID, which names its
//! state), takes the lease on its state, carries over what an earlier release kept under other
//! keys, and runs the engine or the backfill with the identity it already has.
//!
//! A sync serves each enabled stream (or the one its event names) in turn, each with its own
//! state, lease and share of the deadline. One stream's failure (a missing permission, Graph
//! failing) is that stream's outcome: the others run all the same.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use tracing::{info, warn};
use xdr_config::SyncConfig;
use xdr_core::adopt::{Adopting, FirstFound};
use xdr_core::backfill::{BackfillPorts, BackfillRequest, run_backfill};
use xdr_core::stream::Stream;
use xdr_core::{
    AlertSource, Clock, EngineError, Identity, Lease, LeaseOutcome, ObjectSink, Ports, RunRequest, StateKeys,
    StateStore, run_sync,
};

use crate::error::AppError;
use crate::response::{BackfillOutcome, BackfillResponse, LeaseHeld, StreamRun, SyncOutcome, SyncResponse};

/// One source per stream. Graph's clients of one invocation share their sign-in, so
/// authenticating with any of them authenticates them all.
pub struct Sources<S> {
    by_stream: Vec<(Stream, S)>,
}

impl<S> Sources<S> {
    pub fn new(by_stream: Vec<(Stream, S)>) -> Self {
        Self { by_stream }
    }

    /// The source of `stream`, if there is one.
    pub fn get(&self, stream: Stream) -> Option<&S> {
        self.by_stream.iter().find(|(known, _)| *known == stream).map(|(_, source)| source)
    }

    pub fn get_mut(&mut self, stream: Stream) -> Option<&mut S> {
        self.by_stream.iter_mut().find(|(known, _)| *known == stream).map(|(_, source)| source)
    }
}

impl<P: xdr_graph::CredentialProvider> Sources<xdr_graph::GraphClient<P>> {
    /// A client per stream the product knows, all on `client`'s session.
    pub fn graph(client: xdr_graph::GraphClient<P>) -> Self {
        let mut by_stream: Vec<(Stream, xdr_graph::GraphClient<P>)> = xdr_core::stream::STREAMS
            .iter()
            .filter(|stream| **stream != client.settings().stream)
            .map(|stream| (*stream, client.for_stream(*stream)))
            .collect();
        by_stream.insert(0, (client.settings().stream, client));
        Self { by_stream }
    }
}

/// What a handler works with. `state_for` hands out the state store under a key.
pub struct HandlerPorts<'a, S, F, O, L, C> {
    pub sources: &'a Sources<S>,
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

/// The source of `stream` (the wiring builds one for every stream the product knows).
fn source_of<S>(sources: &Sources<S>, stream: Stream) -> Result<&S, AppError> {
    sources.get(stream).ok_or_else(|| {
        AppError::Config(xdr_config::ConfigError {
            setting: "STREAMS",
            problem: format!("no source for `{}`", stream.name),
        })
    })
}

/// The streams a sync event asks for: every served one, or the one its `stream` names. Any
/// other payload (a scheduled event, `{}`, anything) is accepted and ignored.
pub fn requested_streams(config: &SyncConfig, event: &Value) -> Result<Vec<Stream>, AppError> {
    let Some(named) = event.as_object().and_then(|object| object.get("stream")).filter(|v| !v.is_null())
    else {
        return Ok(config.streams.clone());
    };
    let stream = named.as_str().and_then(xdr_core::stream::by_name).ok_or_else(|| {
        AppError::InvalidEvent(format!(
            "`stream` is {named}, which is not a stream; use one of {}",
            xdr_core::stream::names()
        ))
    })?;
    config.for_stream(stream).map_err(|error| AppError::InvalidEvent(error.problem))?;
    Ok(vec![stream])
}

/// When the stream at `index` of `count` must be done: an equal share of what is left, so a
/// stream that finishes early leaves its time to the next, and none starves another.
fn share_of(invocation: &Invocation, now: DateTime<Utc>, index: usize, count: usize) -> Invocation {
    let deadline = invocation.deadline.map(|deadline| {
        let left = (deadline - now).max(TimeDelta::zero());
        now + left / (count.saturating_sub(index).max(1) as i32)
    });
    Invocation { request_id: invocation.request_id.clone(), deadline }
}

/// `xdr-sync`: one invocation, for every served stream or the one the event names. Fails as a
/// whole only when nothing could start (a bad event, the credentials); each stream's own
/// outcome, failures included, is in the answer.
pub async fn handle_sync<S, T, F, O, L, C>(
    config: &SyncConfig,
    ports: HandlerPorts<'_, S, F, O, L, C>,
    event: &Value,
    invocation: &Invocation,
) -> Result<Vec<StreamRun>, AppError>
where
    S: AlertSource,
    T: StateStore,
    F: Fn(&str) -> T,
    O: ObjectSink,
    L: Lease,
    C: Clock,
{
    let HandlerPorts { sources, state_for, sink, lease, clock } = ports;
    let streams = requested_streams(config, event)?;
    // `STREAMS` names at least one stream, and an event one.
    let first = source_of(sources, *streams.first().unwrap_or(&xdr_core::stream::ALERTS))?;
    let before = first.counts();
    let identity = authenticate(config, first, invocation).await?;
    let signed_in = first.counts().since(&before);
    let mut runs = Vec::with_capacity(streams.len());
    for (index, stream) in streams.iter().enumerate() {
        let share = share_of(invocation, clock.now(), index, streams.len());
        let counted_from = sources.get(*stream).map(AlertSource::counts).unwrap_or_default();
        let result = match (config.for_stream(*stream), source_of(sources, *stream)) {
            (Ok(config), Ok(source)) => {
                let ports = HandlerPorts { sources, state_for: &state_for, sink, lease, clock };
                sync_stream(&config, source, ports, &identity, &share).await
            }
            (Err(error), _) => Err(AppError::Config(error)),
            (_, Err(error)) => Err(error),
        };
        if let Err(error) = &result {
            warn!(stream = stream.name, error = %error, error_type = error.kind(), "The stream's run failed; the other streams go on.");
        }
        // Counted whatever the outcome: a failed stream's requests are reported too.
        let requests = sources.get(*stream).map(AlertSource::counts).unwrap_or_default().since(&counted_from);
        runs.push(StreamRun { stream: *stream, result, requests });
    }
    // The sign-in is the first stream's.
    if let Some(first) = runs.first_mut() {
        first.requests.token_requests += signed_in.token_requests;
        if let Ok(response) = &mut first.result {
            response.requests.token_requests += signed_in.token_requests;
        }
    }
    Ok(runs)
}

/// One stream's sync under its own lease and state.
async fn sync_stream<S, T, F, O, L, C>(
    config: &SyncConfig,
    source: &S,
    ports: HandlerPorts<'_, S, F, O, L, C>,
    identity: &Identity,
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
    let HandlerPorts { state_for, sink, lease, clock, .. } = ports;
    let before = source.counts();
    let (keys, previous) = config.keys(&identity.tenant);
    let lease_keys = every_key(&keys, &previous, StateKeys::sync);
    let store =
        Adopting::new(state_for(&keys.sync()), previous.iter().map(|keys| state_for(&keys.sync())).collect());
    let settings = config.engine_for(&identity.tenant);
    let run = invocation.run_request(identity.clone());
    let work = async {
        let ports = Ports { source, store: &store, sink, clock };
        Ok(run_sync(&settings, ports, run).await?)
    };
    let outcome = match with_lease(lease, clock, &lease_keys, invocation, work).await? {
        Ok(summary) => SyncOutcome::Ran(Box::new(summary)),
        Err(held) => SyncOutcome::LeaseHeld(held),
    };
    // Tokens asked for during this stream's run (a refresh after a 401): the session's count
    // moved by them alone, as the streams run one after another.
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
    let HandlerPorts { sources, state_for, sink, lease, clock } = ports;
    // A bad event is refused before anything is read or written.
    let request = BackfillRequest::from_event(event, clock.now()).map_err(EngineError::from)?;
    let config = &config.for_stream(request.stream).map_err(|error| AppError::InvalidEvent(error.problem))?;
    let source = source_of(sources, request.stream)?;
    let before = source.counts();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stream_gets_an_equal_share_of_what_is_left() {
        let now = DateTime::parse_from_rfc3339("2026-11-28T06:00:00Z").unwrap().with_timezone(&Utc);
        let invocation = Invocation { request_id: "r".into(), deadline: Some(now + TimeDelta::seconds(60)) };
        assert_eq!(share_of(&invocation, now, 0, 2).deadline, Some(now + TimeDelta::seconds(30)));
        // The first stream finished after 10 s: the second has the remaining 50 s.
        let later = now + TimeDelta::seconds(10);
        assert_eq!(share_of(&invocation, later, 1, 2).deadline, invocation.deadline);
        assert_eq!(share_of(&invocation, now, 0, 1).deadline, invocation.deadline);
        let open = Invocation { request_id: "r".into(), deadline: None };
        assert_eq!(share_of(&open, now, 0, 2).deadline, None);
        // Past the deadline already: no time, never a time before now.
        assert_eq!(
            share_of(&invocation, now + TimeDelta::seconds(90), 0, 2).deadline,
            Some(now + TimeDelta::seconds(90))
        );
    }
}
