//! A simulated Microsoft Defender tenant: a local Entra token endpoint and Graph `alerts_v2` and
//! `incidents`, serving realistic alerts and the incidents that group them, with updates, late
//! visibility, shared timestamps and faults on request. Used by the demo and by the project's tests.

pub mod alerts;
pub mod elsewhere;
pub mod graph;
pub mod incidents;
pub mod rng;
pub mod server;
pub mod tenant;

pub use elsewhere::Elsewhere;
pub use graph::{GraphBehaviour, GraphMode, ListOrder, ListRequest, Listed, NextLinks};
pub use server::{Fault, Fleet, Quota, RequestRecord, SimOptions, Simulator, TenantHandle};
pub use tenant::{Activity, SimTenant, SimVersion};
