//! Sign-in: which credential the options describe, and the access token it yields, cached per
//! client and renewed before it expires.
//!
//! - [`entra`]: Entra ID's token endpoint, with a client secret or a client assertion;
//! - [`certificate`]: client assertions signed with a certificate's RSA key;
//! - [`environment`]: app credentials from Azure Identity's environment variables;
//! - [`managed_identity`]: IMDS, and the local endpoint of App Service, Functions and Automation.

mod certificate;
mod entra;
mod environment;
mod managed_identity;

// The parsers of the sign-in endpoints' answers, for `crate::fuzzing`.
pub(crate) use entra::{token_error as entra_token_error, token_from_answer as entra_token_from_answer};
pub(crate) use managed_identity::{
    endpoint_error as identity_endpoint_error, token_from_answer as identity_token_from_answer,
};

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use url::Url;

use crate::config::{ManagedIdentity, Settings};
use crate::error::{Error, Result};
use crate::redact::Secret;
use crate::runtime::Reporter;

/// One way to sign in, as the options describe it.
#[derive(Clone, Debug)]
enum SignIn {
    /// A bearer token the caller got elsewhere, used as it is.
    AccessToken(Secret),
    /// An app registration given by the options.
    App(App),
    /// An app registration given by Azure Identity's environment variables, read when a token
    /// is needed.
    Environment,
    /// The managed identity of the Azure resource this runs on.
    ManagedIdentity(ManagedIdentity),
}

/// An app registration that signs in with the client-credentials grant.
#[derive(Clone, Debug)]
struct App {
    /// The sign-in host, e.g. `https://login.microsoftonline.com`.
    authority: Url,
    tenant_id: String,
    client_id: String,
    proof: Proof,
}

/// How an app proves who it is.
#[derive(Clone, Debug)]
enum Proof {
    Secret(Secret),
    /// A PEM file with the certificate and its private key. It is read at each sign-in, so a
    /// renewed certificate is picked up without restarting.
    Certificate(PathBuf),
    /// A client assertion signed elsewhere (a key that never leaves a certificate store).
    Assertion(Secret),
    /// Client assertions that the caller's assertion callback signs on the caller's thread, a
    /// fresh one for each token request: a key in a certificate store, and tokens renewed
    /// however long a call runs.
    Callback,
}

/// The sign-in keys: exactly one of them names the way to sign in.
const WAYS: &str = "client_secret, client_certificate_path, client_assertion or an assertion callback (each with \
                    tenant_id and client_id), managed_identity, environment=true, or access_token";

impl SignIn {
    /// The sign-in the settings describe. Exactly one way must be configured, and completely.
    fn from_settings(settings: &Settings) -> Result<Self> {
        let configured: Vec<&str> = [
            ("access_token", settings.access_token.is_some()),
            ("client_secret", settings.client_secret.is_some()),
            ("client_certificate_path", settings.client_certificate_path.is_some()),
            ("client_assertion", settings.client_assertion.is_some()),
            ("an assertion callback", settings.client_assertion_callback),
            ("managed_identity", settings.managed_identity.is_some()),
            ("environment", settings.environment),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(key, _)| key)
        .collect();
        let key = match configured.as_slice() {
            [] => return Err(Error::invalid_argument(format!("no sign-in is configured: set {WAYS}"))),
            [key] => *key,
            keys => {
                return Err(Error::invalid_argument(format!(
                    "more than one sign-in is configured ({}); set only one",
                    keys.join(", ")
                )));
            }
        };
        let app = |proof| {
            Ok(SignIn::App(App {
                authority: settings.authority(),
                tenant_id: required(&settings.tenant_id, "tenant_id", key)?,
                client_id: required(&settings.client_id, "client_id", key)?,
                proof,
            }))
        };
        // Exactly one of these is set.
        if let Some(token) = &settings.access_token {
            return Ok(SignIn::AccessToken(token.clone()));
        }
        if let Some(secret) = &settings.client_secret {
            return app(Proof::Secret(secret.clone()));
        }
        if let Some(path) = &settings.client_certificate_path {
            return app(Proof::Certificate(path.clone()));
        }
        if let Some(assertion) = &settings.client_assertion {
            return app(Proof::Assertion(assertion.clone()));
        }
        if settings.client_assertion_callback {
            return app(Proof::Callback);
        }
        if let Some(identity) = &settings.managed_identity {
            refuse_app_ids(
                settings,
                "managed_identity",
                "a managed identity signs in to its own tenant; choose a user-assigned identity with \
                 managed_identity=<its client id>",
            )?;
            return Ok(SignIn::ManagedIdentity(identity.clone()));
        }
        refuse_app_ids(settings, "environment=true", "it reads the ids from AZURE_TENANT_ID and AZURE_CLIENT_ID")?;
        Ok(SignIn::Environment)
    }
}

fn required(value: &Option<String>, key: &str, needed_by: &str) -> Result<String> {
    value.clone().ok_or_else(|| Error::invalid_argument(format!("option '{needed_by}' needs '{key}' to be set too")))
}

/// `tenant_id` and `client_id` belong to an app's sign-in; with a way that would ignore them, a
/// value left there would mislead, so it is refused rather than ignored.
fn refuse_app_ids(settings: &Settings, way: &str, hint: &str) -> Result<()> {
    let set: Vec<&str> = [("tenant_id", &settings.tenant_id), ("client_id", &settings.client_id)]
        .into_iter()
        .filter(|(_, value)| value.is_some())
        .map(|(key, _)| key)
        .collect();
    if set.is_empty() {
        return Ok(());
    }
    Err(Error::invalid_argument(format!("{way} does not use {}: {hint}", set.join(" or "))))
}

impl Proof {
    /// The option (or callback) that gives it, as `ConnectionInfo` names it.
    fn kind(&self) -> &'static str {
        match self {
            Proof::Secret(_) => "client_secret",
            Proof::Certificate(_) => "client_certificate_path",
            Proof::Assertion(_) => "client_assertion",
            Proof::Callback => "assertion_callback",
        }
    }
}

/// What a client is connected to and how it signs in (no secret): the JSON of
/// `defender_client_connection_info`.
#[derive(Debug, serde::Serialize)]
pub(crate) struct ConnectionInfo {
    api_root: String,
    /// The sign-in host; none for a managed identity or a bearer token.
    authority: Option<String>,
    /// The option that signs in: `client_secret`, `client_certificate_path`, `client_assertion`,
    /// `assertion_callback`, `managed_identity`, `environment` or `access_token`.
    sign_in: &'static str,
    /// With `environment`: which of the app's proofs the environment holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    proof: Option<&'static str>,
    tenant_id: Option<String>,
    /// The app's client id, or a user-assigned managed identity's.
    client_id: Option<String>,
    /// Seconds since 1970.
    token_expires_at: Option<u64>,
}

/// A sign-in ready to fetch a token: the environment it depends on has been read.
enum Source {
    App(App),
    ManagedIdentity(managed_identity::TokenService),
}

/// Who a token was issued to, for what, and by which endpoint. A cached token is used again only
/// for the same principal: a new secret, certificate file or assertion of the same app keeps it
/// (so a caller that signs its own assertions can hand over a fresh one before every call without
/// causing a token request); anything else fetches a new token.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Principal {
    App { token_endpoint: Url, client_id: String, scope: String },
    ManagedIdentity { endpoint: Url, identity: ManagedIdentity, resource: String },
}

impl Source {
    fn principal(&self, settings: &Settings) -> Result<Principal> {
        Ok(match self {
            Source::App(app) => Principal::App {
                token_endpoint: entra::token_endpoint(&app.authority, &app.tenant_id)?,
                client_id: app.client_id.clone(),
                scope: settings.scope(),
            },
            Source::ManagedIdentity(endpoint) => Principal::ManagedIdentity {
                endpoint: endpoint.url().clone(),
                identity: endpoint.identity().clone(),
                resource: settings.resource(),
            },
        })
    }

    async fn fetch(&self, http: &reqwest::Client, settings: &Settings, reporter: &Reporter) -> Result<AccessToken> {
        match self {
            Source::App(app) => entra::client_credentials(http, settings, app, reporter).await,
            Source::ManagedIdentity(endpoint) => endpoint.token(settings, reporter).await,
        }
    }
}

/// A token and when to stop using it.
#[derive(Clone, Debug)]
pub(crate) struct AccessToken {
    value: Secret,
    /// After this instant the token is renewed before use: a few minutes before it expires.
    renew_at: Instant,
    /// When it expires, for the caller to show (`defender_client_token_expiry`).
    expires_at: SystemTime,
}

impl AccessToken {
    /// A token that expires `lifetime` from now is renewed 5 minutes before that, or halfway
    /// through a lifetime shorter than 10 minutes.
    /// A lifetime longer than a day (Entra's tokens last about an hour; a server may announce
    /// `u64::MAX` seconds) counts as a day.
    fn expiring_in(value: Secret, lifetime: Duration) -> Self {
        const RENEWAL_MARGIN: Duration = Duration::from_secs(5 * 60);
        const LONGEST_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
        let lifetime = lifetime.min(LONGEST_LIFETIME);
        let margin = RENEWAL_MARGIN.min(lifetime / 2);
        Self {
            value,
            renew_at: crate::config::after(lifetime - margin).into_std(),
            expires_at: SystemTime::now() + lifetime,
        }
    }

    fn is_fresh(&self) -> bool {
        Instant::now() < self.renew_at
    }
}

#[derive(Clone)]
struct CachedToken {
    principal: Principal,
    token: AccessToken,
}

/// The client's token. One request at a time: when many threads need a token at once, one
/// fetches it and the others wait for that one.
pub(crate) struct TokenCache {
    sign_in: Result<SignIn>,
    current: tokio::sync::Mutex<Option<CachedToken>>,
}

impl TokenCache {
    pub(crate) fn new(settings: &Settings) -> Self {
        Self { sign_in: SignIn::from_settings(settings), current: tokio::sync::Mutex::new(None) }
    }

    /// The cache for changed sign-in options. It keeps the current token, which `token` uses
    /// again only for the same principal.
    pub(crate) fn reconfigured(&self, settings: &Settings) -> Self {
        // A fetch in progress holds the lock: its token goes to the old cache only.
        let current = self.current.try_lock().ok().and_then(|current| current.clone());
        Self { sign_in: SignIn::from_settings(settings), current: tokio::sync::Mutex::new(current) }
    }

    /// A token that is not about to expire, from the cache or freshly fetched.
    pub(crate) async fn token(
        &self,
        http: &reqwest::Client,
        settings: &Settings,
        reporter: &Reporter,
    ) -> Result<Secret> {
        let source = match self.sign_in.as_ref().map_err(Clone::clone)? {
            // Its expiry is unknown: it is used until the API refuses it.
            SignIn::AccessToken(token) => return Ok(token.clone()),
            SignIn::App(app) => Source::App(app.clone()),
            SignIn::Environment => Source::App(environment::app(settings)?),
            SignIn::ManagedIdentity(identity) => {
                Source::ManagedIdentity(managed_identity::TokenService::find(settings, identity)?)
            }
        };
        let principal = source.principal(settings)?;
        let mut current = self.current.lock().await;
        if let Some(cached) = current.as_ref().filter(|cached| cached.principal == principal && cached.token.is_fresh())
        {
            return Ok(cached.token.value.clone());
        }
        let token = source.fetch(http, settings, reporter).await?;
        let value = token.value.clone();
        *current = Some(CachedToken { principal, token });
        Ok(value)
    }

    /// What this sign-in is, as `defender_client_connection_info` tells it: the hosts, who signs
    /// in and how, and when the token `token` gave last expires (`None` before any, and for a
    /// bearer token given as `access_token`: its expiry is not read).
    pub(crate) async fn describe(&self, settings: &Settings) -> Result<ConnectionInfo> {
        let sign_in = self.sign_in.as_ref().map_err(Clone::clone)?;
        let (kind, tenant_id, client_id, authority) = match sign_in {
            SignIn::AccessToken(_) => ("access_token", None, None, None),
            SignIn::ManagedIdentity(identity) => {
                let client_id = match identity {
                    ManagedIdentity::SystemAssigned => None,
                    ManagedIdentity::UserAssigned { client_id } => Some(client_id.clone()),
                };
                ("managed_identity", None, client_id, None)
            }
            SignIn::App(app) => {
                (app.proof.kind(), Some(app.tenant_id.clone()), Some(app.client_id.clone()), Some(&app.authority))
            }
            SignIn::Environment => ("environment", None, None, None),
        };
        // The environment's app, as it is read when a token is needed.
        let from_environment =
            matches!(sign_in, SignIn::Environment).then(|| environment::app(settings)).transpose()?;
        let (tenant_id, client_id, authority) = match &from_environment {
            Some(app) => (Some(app.tenant_id.clone()), Some(app.client_id.clone()), Some(app.authority.clone())),
            None => (tenant_id, client_id, authority.cloned()),
        };
        let expires_at = match sign_in {
            SignIn::AccessToken(_) => None,
            _ => self.current.lock().await.as_ref().map(|cached| cached.token.expires_at),
        };
        Ok(ConnectionInfo {
            api_root: settings.api_root().to_string(),
            authority: authority.map(|url| url.to_string()),
            sign_in: kind,
            proof: from_environment.map(|app| app.proof.kind()),
            tenant_id,
            client_id,
            token_expires_at: expires_at
                .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|since| since.as_secs()),
        })
    }

    /// Drops `rejected` (the API answered 401 to it) so that the next `token` fetches a new one.
    /// When another thread already replaced it, its replacement stays.
    pub(crate) async fn reject(&self, rejected: &Secret) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|cached| &cached.token.value == rejected) {
            *current = None;
        }
    }

    /// Whether a rejected token can be replaced by a new one at all.
    pub(crate) fn can_renew(&self) -> bool {
        !matches!(self.sign_in, Ok(SignIn::AccessToken(_)))
    }
}

/// The `aud` a client assertion for these settings must carry: the token endpoint of `tenant_id`
/// at the sign-in authority (`authority_url`, else the cloud's).
pub(crate) fn assertion_audience(settings: &Settings) -> Result<String> {
    let tenant_id = settings.tenant_id.as_deref().ok_or_else(|| {
        Error::invalid_argument("an assertion's audience is the tenant's token endpoint: set 'tenant_id' first")
    })?;
    Ok(entra::token_endpoint(&settings.authority(), tenant_id)?.into())
}

/// Every secret value a call with these settings may send, for scrubbing text meant for people:
/// the configured ones, and those the sign-in reads from the environment.
pub(crate) fn secrets(settings: &Settings) -> Vec<Secret> {
    let configured = [
        &settings.client_secret,
        &settings.client_assertion,
        &settings.access_token,
        &settings.managed_identity_header,
    ]
    .into_iter()
    .flatten()
    .cloned();
    let from_environment = [
        (settings.environment, environment::CLIENT_SECRET),
        (settings.managed_identity.is_some(), managed_identity::IDENTITY_HEADER),
    ]
    .into_iter()
    .filter(|(read, _)| *read)
    .filter_map(|(_, name)| std::env::var(name).ok().map(Secret::new));
    configured.chain(from_environment).collect()
}

/// An environment variable's value; unset and empty are the same (as for Azure Identity).
fn environment_variable(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(value) if value.trim().is_empty() => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(Error::invalid_argument(format!("environment variable {name} is not valid UTF-8")))
        }
    }
}

/// A number of seconds, sent as a number by Entra and as a string by managed-identity endpoints.
fn seconds<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(u64),
        Text(String),
    }
    match NumberOrText::deserialize(deserializer)? {
        NumberOrText::Number(n) => Ok(n),
        NumberOrText::Text(text) => text.trim().parse().map_err(serde::de::Error::custom),
    }
}
