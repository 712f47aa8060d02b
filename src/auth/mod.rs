//! Sign-in: which credential the options describe, and the access token they yield, cached per
//! client and renewed before it expires.

mod entra;

use std::time::{Duration, Instant};

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::redact::Secret;
use crate::runtime::{DefenderLogLevel, Reporter};

/// One way to sign in, as the options describe it.
#[derive(Clone, Debug)]
pub enum Credential {
    /// A bearer token the caller got elsewhere, used as it is.
    AccessToken(Secret),
    /// App-only client credentials with a client secret.
    ClientSecret { tenant_id: String, client_id: String, secret: Secret },
}

impl Credential {
    /// The credential the settings describe. Exactly one way must be configured, and completely.
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        let mut ways = Vec::new();
        if settings.access_token.is_some() {
            ways.push("access_token");
        }
        if settings.client_secret.is_some() {
            ways.push("client_secret");
        }
        match ways.as_slice() {
            [] => Err(Error::invalid_argument(
                "no sign-in is configured: set access_token, or tenant_id, client_id and client_secret",
            )),
            ["access_token"] => Ok(Self::AccessToken(settings.access_token.clone().expect("checked above"))),
            ["client_secret"] => Ok(Self::ClientSecret {
                tenant_id: required(&settings.tenant_id, "tenant_id", "client_secret")?,
                client_id: required(&settings.client_id, "client_id", "client_secret")?,
                secret: settings.client_secret.clone().expect("checked above"),
            }),
            several => Err(Error::invalid_argument(format!(
                "more than one sign-in is configured ({}); set only one",
                several.join(", ")
            ))),
        }
    }
}

fn required(value: &Option<String>, key: &str, needed_by: &str) -> Result<String> {
    value.clone().ok_or_else(|| Error::invalid_argument(format!("option '{needed_by}' needs '{key}' to be set too")))
}

/// A token and when to stop using it.
#[derive(Clone, Debug)]
pub struct AccessToken {
    pub value: Secret,
    /// After this instant the token is renewed before use: a few minutes before it expires.
    pub renew_at: Instant,
}

impl AccessToken {
    /// A token that expires `lifetime` from now is renewed 5 minutes before that, or halfway
    /// through a lifetime shorter than 10 minutes.
    pub fn expiring_in(value: Secret, lifetime: Duration) -> Self {
        const RENEWAL_MARGIN: Duration = Duration::from_secs(5 * 60);
        let margin = RENEWAL_MARGIN.min(lifetime / 2);
        Self { value, renew_at: Instant::now() + (lifetime - margin) }
    }

    fn is_fresh(&self) -> bool {
        Instant::now() < self.renew_at
    }
}

/// The client's token for its credential. One request at a time: when many threads need a
/// token at once, one fetches it and the others wait for that one.
pub struct TokenCache {
    credential: Result<Credential>,
    current: tokio::sync::Mutex<Option<AccessToken>>,
}

impl TokenCache {
    pub fn new(settings: &Settings) -> Self {
        Self { credential: Credential::from_settings(settings), current: tokio::sync::Mutex::new(None) }
    }

    /// A token that is not about to expire, from the cache or freshly fetched.
    pub async fn token(&self, http: &reqwest::Client, settings: &Settings, reporter: &Reporter) -> Result<Secret> {
        let credential = self.credential.as_ref().map_err(Clone::clone)?;
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref().filter(|token| token.is_fresh()) {
            return Ok(token.value.clone());
        }
        let token = fetch(credential, http, settings, reporter).await?;
        *current = Some(token.clone());
        Ok(token.value)
    }

    /// Drops `rejected` (the API answered 401 to it) so that the next `token` fetches a new one.
    /// When another thread already replaced it, its replacement stays.
    pub async fn reject(&self, rejected: &Secret) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|token| &token.value == rejected) {
            *current = None;
        }
    }

    /// Whether a rejected token can be replaced by a new one at all.
    pub fn can_renew(&self) -> bool {
        !matches!(self.credential, Ok(Credential::AccessToken(_)))
    }
}

async fn fetch(
    credential: &Credential,
    http: &reqwest::Client,
    settings: &Settings,
    reporter: &Reporter,
) -> Result<AccessToken> {
    match credential {
        Credential::AccessToken(token) => {
            // Its expiry is unknown: use it until the API refuses it.
            Ok(AccessToken { value: token.clone(), renew_at: Instant::now() + Duration::from_secs(u32::MAX.into()) })
        }
        Credential::ClientSecret { tenant_id, client_id, secret } => {
            reporter.log(
                DefenderLogLevel::Debug,
                format!("signing in to tenant {tenant_id} as app {client_id} with a client secret"),
            );
            entra::client_credentials(http, settings, tenant_id, client_id, entra::ClientProof::Secret(secret)).await
        }
    }
}
