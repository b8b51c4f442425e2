//! Integration tests: the real Graph client and engine, over HTTP, against the simulated
//! tenant, writing into local folders. One test binary, several modules.

mod faults;
mod graph_client;
mod graph_modes;
mod hostile;
mod iam;
mod incidents;
mod lambda_backfill;
mod lambda_sync;
mod state_bounds;
mod sync;
mod tenants;
mod upgrade;
