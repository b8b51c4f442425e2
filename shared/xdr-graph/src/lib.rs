//! Microsoft Entra client-credentials tokens and the Graph `alerts_v2` client, as an
//! [`xdr_core::AlertSource`].

pub mod body;
pub mod client;
pub mod cloud;
pub mod credentials;
pub mod error;
pub mod origin;
pub mod pace;
pub mod retry;
pub mod trust_roots;
pub mod upstream_text;

pub use client::{GraphClient, GraphSettings, GraphStats, http_client};
pub use cloud::{Cloud, Endpoints};
pub use credentials::{ClientCredentials, CredentialProvider, StaticCredentials};
pub use error::GraphError;
pub use pace::RequestRate;
pub use retry::RetryPolicy;
