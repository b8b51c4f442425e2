//! The Entra app's credentials from one Secrets Manager secret, cached with a TTL so a rotated
//! secret is picked up by warm containers.

use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client;
use secrecy::SecretString;
use serde_json::Value;
use tokio::sync::Mutex;
use xdr_graph::{ClientCredentials, CredentialProvider};

use crate::failure;

pub struct SecretsManagerCredentials {
    client: Client,
    secret_id: String,
    ttl: Duration,
    /// What names the secret, for messages (`CREDENTIALS_SECRET_ID`, or a registry entry).
    origin: String,
    cached: Mutex<Option<(ClientCredentials, Instant)>>,
}

impl SecretsManagerCredentials {
    pub fn new(client: Client, secret_id: impl Into<String>, ttl: Duration) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
            ttl,
            origin: "CREDENTIALS_SECRET_ID".into(),
            cached: Mutex::new(None),
        }
    }

    /// The same, saying in messages that `origin` names the secret (a registry entry).
    pub fn named_by(self, origin: impl Into<String>) -> Self {
        Self { origin: origin.into(), ..self }
    }

    async fn fetch(&self) -> Result<ClientCredentials, String> {
        let (id, origin) = (&self.secret_id, &self.origin);
        let output = self.client.get_secret_value().secret_id(id).send().await.map_err(|error| {
            let not_found = error.as_service_error().is_some_and(|e| e.is_resource_not_found_exception());
            if not_found {
                format!(
                    "secret `{id}` ({origin}) was not found in Secrets Manager; create it or fix the name/ARN"
                )
            } else {
                let problem = failure(&error, origin, "secretsmanager:GetSecretValue");
                format!("reading secret `{id}` ({origin}) failed: {problem}")
            }
        })?;
        let text = output.secret_string().ok_or_else(|| {
            format!("secret `{id}` has no SecretString (binary secrets are not supported); store {{\"client_id\": \"...\", \"client_secret\": \"...\"}}")
        })?;
        parse_credentials(id, text)
    }
}

/// Reads `{"client_id": "...", "client_secret": "..."}`. Messages name the secret and the field
/// but never quote the value (serde's own messages can, so they are not passed on).
pub fn parse_credentials(secret_id: &str, text: &str) -> Result<ClientCredentials, String> {
    let shape =
        "store it as JSON: {\"client_id\": \"<application id>\", \"client_secret\": \"<secret Value>\"}";
    let value: Value =
        serde_json::from_str(text).map_err(|_| format!("secret `{secret_id}` is not JSON; {shape}"))?;
    let object =
        value.as_object().ok_or_else(|| format!("secret `{secret_id}` is not a JSON object; {shape}"))?;
    let field = |name: &str| -> Result<String, String> {
        match object.get(name) {
            Some(Value::String(text)) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
            Some(Value::String(_)) => {
                Err(format!("secret `{secret_id}` has an empty `{name}` field; {shape}"))
            }
            Some(_) => {
                Err(format!("secret `{secret_id}` has a `{name}` field that is not a string; {shape}"))
            }
            None => Err(format!("secret `{secret_id}` has no `{name}` field; {shape}")),
        }
    };
    Ok(ClientCredentials {
        client_id: field("client_id")?,
        client_secret: SecretString::from(field("client_secret")?),
    })
}

impl CredentialProvider for SecretsManagerCredentials {
    async fn credentials(&self) -> Result<ClientCredentials, String> {
        let mut cached = self.cached.lock().await;
        if let Some((credentials, fetched)) = cached.as_ref()
            && fetched.elapsed() < self.ttl
        {
            return Ok(credentials.clone());
        }
        let fresh = self.fetch().await?;
        *cached = Some((fresh.clone(), Instant::now()));
        Ok(fresh)
    }

    async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn reads_the_two_fields() {
        let credentials =
            parse_credentials("s", r#"{"client_id": " app ", "client_secret": "v@lue"}"#).unwrap();
        assert_eq!(credentials.client_id, "app");
        assert_eq!(credentials.client_secret.expose_secret(), "v@lue");
    }

    #[test]
    fn names_the_secret_and_field_without_quoting_the_value() {
        let cases = [
            ("SuperSecretValue123", "is not JSON"),
            (r#""SuperSecretValue123""#, "is not a JSON object"),
            (r#"{"client_id": "app"}"#, "no `client_secret` field"),
            (r#"{"client_secret": "SuperSecretValue123"}"#, "no `client_id` field"),
            (r#"{"client_id": "app", "client_secret": ""}"#, "empty `client_secret`"),
            (r#"{"client_id": "app", "client_secret": ["SuperSecretValue123"]}"#, "not a string"),
        ];
        for (text, expected) in cases {
            let error = parse_credentials("xdr/creds", text).err().unwrap();
            assert!(error.contains("xdr/creds") && error.contains(expected), "{error}");
            assert!(!error.contains("SuperSecretValue123"), "{error}");
        }
    }
}
