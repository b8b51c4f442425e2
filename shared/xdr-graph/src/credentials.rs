//! The Entra app's identity, from wherever it is kept (environment, Secrets Manager).

use std::future::Future;

use secrecy::SecretString;

/// An app registration's client id and secret. The secret never prints (`SecretString`).
#[derive(Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: SecretString,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

pub trait CredentialProvider: Send + Sync {
    /// Current credentials. Called before each token request, so a rotated secret is used.
    fn credentials(&self) -> impl Future<Output = Result<ClientCredentials, String>> + Send;

    /// Forgets cached credentials (Entra rejected them; a rotated secret may be waiting).
    fn invalidate(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// One provider shared by several clients (a stack's shared app secret, read once for all the
/// tenants a container serves).
impl<T: CredentialProvider> CredentialProvider for std::sync::Arc<T> {
    fn credentials(&self) -> impl Future<Output = Result<ClientCredentials, String>> + Send {
        self.as_ref().credentials()
    }

    fn invalidate(&self) -> impl Future<Output = ()> + Send {
        self.as_ref().invalidate()
    }
}

/// Fixed credentials (local runs, tests).
#[derive(Clone, Debug)]
pub struct StaticCredentials(pub ClientCredentials);

impl CredentialProvider for StaticCredentials {
    async fn credentials(&self) -> Result<ClientCredentials, String> {
        Ok(self.0.clone())
    }
}
