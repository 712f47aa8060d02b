//! Managed identity: a token for the identity Azure gives the resource this runs on, from the
//! platform's endpoint on the same machine, with no secret to keep.
//!
//! - App Service, Functions, Container Apps and Automation set `IDENTITY_ENDPOINT` and
//!   `IDENTITY_HEADER`: `GET $IDENTITY_ENDPOINT?api-version=2019-08-01&resource=...` with the
//!   header `X-IDENTITY-HEADER`.
//! - Virtual machines and scale sets have IMDS:
//!   `GET http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=...`
//!   with `Metadata: true`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use serde::Deserialize;
use url::Url;
use zeroize::Zeroizing;

use super::{AccessToken, environment_variable, seconds};
use crate::config::{self, ManagedIdentity, PlainHttp, Settings};
use crate::error::{DefenderStatus, Error, Result};
use crate::http::{self, chain, read_limited};
use crate::redact::{SERVICE_TEXT_CHARS, Secret, printable};
use crate::retry::{Attempt, Failure, Repeat, Retry, RetryPolicy, retry_after};
use crate::runtime::{DefenderLogLevel, Reporter};

pub(super) const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
const IMDS_API_VERSION: &str = "2018-02-01";
const APP_SERVICE_API_VERSION: &str = "2019-08-01";
const IDENTITY_ENDPOINT: &str = "IDENTITY_ENDPOINT";
pub(super) const IDENTITY_HEADER: &str = "IDENTITY_HEADER";

/// The endpoint is on this machine, so it answers at once or not at all: a machine without one
/// fails within these, whatever the client's own (longer) timeouts.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(5);

/// Its answers are small; anything larger is not one of them.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// Where this process gets its managed identity's token, and for which identity.
#[derive(Clone, Debug)]
pub(super) struct TokenService {
    url: Url,
    shape: Shape,
    identity: ManagedIdentity,
}

#[derive(Clone, Debug)]
enum Shape {
    Imds,
    /// App Service, Functions, Container Apps, Automation.
    AppService {
        header: Secret,
    },
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    /// Seconds from now (IMDS).
    #[serde(default, deserialize_with = "optional_seconds")]
    expires_in: Option<u64>,
    /// Seconds since 1970 (both shapes).
    #[serde(default, deserialize_with = "optional_seconds")]
    expires_on: Option<u64>,
}

/// IMDS's error body; App Service sends `message` in some versions.
#[derive(Deserialize)]
struct TokenServiceError {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl TokenService {
    /// App Service's endpoint: `managed_identity_endpoint` with `managed_identity_header` when
    /// that is set (a host whose own environment variables the library cannot see, such as .NET's
    /// on Linux, passes them so), else `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` when they are set
    /// (read now: the platform sets them for the process); else IMDS at `managed_identity_endpoint`.
    pub(super) fn find(settings: &Settings, identity: &ManagedIdentity) -> Result<Self> {
        let identity = identity.clone();
        if let Some(header) = &settings.managed_identity_header {
            let url = settings.managed_identity_endpoint.clone().ok_or_else(|| {
                Error::invalid_argument(
                    "option 'managed_identity_header' needs 'managed_identity_endpoint' too: the IDENTITY_ENDPOINT it goes with",
                )
            })?;
            return Ok(Self { url, shape: Shape::AppService { header: header.clone() }, identity });
        }
        if let (Some(endpoint), Some(header)) =
            (environment_variable(IDENTITY_ENDPOINT)?, environment_variable(IDENTITY_HEADER)?)
        {
            let url = Url::parse(endpoint.trim())
                .ok()
                .filter(|url| config::is_service_url(url, PlainHttp::ThisHost))
                .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "environment variable {IDENTITY_ENDPOINT} is not an https URL or an http URL on this machine: '{}'",
                    endpoint.escape_debug()
                ))
            })?;
            return Ok(Self { url, shape: Shape::AppService { header: Secret::new(header) }, identity });
        }
        let url = settings
            .managed_identity_endpoint
            .clone()
            .unwrap_or_else(|| Url::parse(DEFAULT_IMDS_ENDPOINT).expect("a valid URL"));
        Ok(Self { url, shape: Shape::Imds, identity })
    }

    pub(super) fn url(&self) -> &Url {
        &self.url
    }

    pub(super) fn identity(&self) -> &ManagedIdentity {
        &self.identity
    }

    /// Asks the endpoint for a token for the settings' resource. Its passing failures (429,
    /// 5xx, and 410 while IMDS updates itself) are retried as Microsoft advises; no answer at
    /// all is final at once, so that a machine without managed identity fails fast.
    pub(super) async fn token(&self, settings: &Settings, reporter: &Reporter) -> Result<AccessToken> {
        let source = match self.shape {
            Shape::Imds => format!("IMDS at {}", self.url),
            Shape::AppService { .. } => format!("{IDENTITY_ENDPOINT} {}", self.url),
        };
        let what = format!("signing in with {} through {source}", self.identity);
        reporter.log(DefenderLogLevel::Debug, &what);
        let client = local_client(settings)?;
        let mut retry = Retry::new(RetryPolicy::new(settings, Repeat::Safe), &what, reporter);
        loop {
            match self.request_token(&client, settings).await {
                Ok(token) => return Ok(token),
                Err((failure, err)) => retry.after(failure, err).await.map_err(|err| err.context(&what))?,
            }
        }
    }

    async fn request_token(&self, client: &reqwest::Client, settings: &Settings) -> Attempt<AccessToken> {
        let api_version = match self.shape {
            Shape::Imds => IMDS_API_VERSION,
            Shape::AppService { .. } => APP_SERVICE_API_VERSION,
        };
        let mut url = self.url.clone();
        url.query_pairs_mut().append_pair("api-version", api_version).append_pair("resource", &settings.resource());
        if let ManagedIdentity::UserAssigned { client_id } = &self.identity {
            url.query_pairs_mut().append_pair("client_id", client_id);
        }
        let mut request = client.get(url);
        request = match &self.shape {
            Shape::Imds => request.header("Metadata", "true"),
            Shape::AppService { header } => {
                let mut value = HeaderValue::from_str(header.expose()).map_err(|_| {
                    let message =
                        format!("environment variable {IDENTITY_HEADER} holds characters an HTTP header cannot carry");
                    (None, Error::invalid_argument(message))
                })?;
                value.set_sensitive(true);
                request.header("X-IDENTITY-HEADER", value)
            }
        };
        let response = request.send().await.map_err(|err| {
            let status = if err.is_timeout() { DefenderStatus::Timeout } else { DefenderStatus::Network };
            let hint = match self.shape {
                Shape::Imds => {
                    "; managed identity needs an Azure VM or scale set with an identity assigned, or App Service, \
                     Functions, Container Apps or Automation (which set IDENTITY_ENDPOINT and IDENTITY_HEADER)"
                }
                Shape::AppService { .. } => "",
            };
            (None, Error::new(status, format!("no managed identity endpoint answered ({}){hint}", chain(&err))))
        })?;
        let status = response.status();
        if status.is_redirection() {
            return Err((None, http::refused_sign_in_redirect("the managed identity endpoint", &response)));
        }
        let retry_after = retry_after(response.headers());
        // Zeroed when dropped: it holds the token.
        let body = Zeroizing::new(read_limited(response, MAX_TOKEN_RESPONSE).await.map_err(|err| (None, err))?);
        if !status.is_success() {
            // IMDS answers 410 while it updates itself, for up to 70 s: a passing failure.
            let passing = if status == StatusCode::GONE { StatusCode::SERVICE_UNAVAILABLE } else { status };
            return Err((Some(Failure::Status { status: passing, retry_after }), endpoint_error(status, &body)));
        }
        token_from_answer(&body).map_err(|err| (None, err))
    }
}

/// The token in a managed identity endpoint's (successful) answer.
pub(crate) fn token_from_answer(body: &[u8]) -> Result<AccessToken> {
    let token: TokenResponse =
        serde_json::from_slice(body).map_err(|err| Error::protocol(format!("the answer is not a token ({err})")))?;
    let lifetime = match (token.expires_in, token.expires_on) {
        // Relative time does not depend on this machine's clock being right.
        (Some(expires_in), _) => Duration::from_secs(expires_in),
        (None, Some(expires_on)) => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            Duration::from_secs(expires_on.saturating_sub(now))
        }
        (None, None) => return Err(Error::protocol("the answer says neither expires_in nor expires_on")),
    };
    Ok(AccessToken::expiring_in(Secret::new(token.access_token), lifetime))
}

/// An HTTP client for the endpoint: no proxy (the endpoint is on this machine or its host, where
/// a proxy cannot reach it, or would reach its own), no redirects, and short timeouts.
fn local_client(settings: &Settings) -> Result<reqwest::Client> {
    let bounded = |limit: Duration, option: Option<Duration>| option.map_or(limit, |option| option.min(limit));
    reqwest::Client::builder()
        .user_agent(http::USER_AGENT)
        .tls_backend_preconfigured(http::tls_config(settings)?)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(bounded(CONNECT_TIMEOUT, settings.connect_timeout))
        .timeout(bounded(TIMEOUT, settings.timeout))
        .build()
        .map_err(|err| Error::internal(format!("could not set up HTTP for managed identity: {}", chain(&err))))
}

/// 400, 401 and 403 mean the identity was refused (none assigned, an unknown user-assigned one,
/// a wrong header).
pub(crate) fn endpoint_error(status: reqwest::StatusCode, body: &[u8]) -> Error {
    let detail = serde_json::from_slice::<TokenServiceError>(body)
        .ok()
        .and_then(|err| {
            let parts: Vec<String> = [err.error, err.error_description.or(err.message)].into_iter().flatten().collect();
            (!parts.is_empty()).then(|| printable(&parts.join(": "), SERVICE_TEXT_CHARS))
        })
        .unwrap_or_else(|| "no error details".to_owned());
    let code =
        if matches!(status.as_u16(), 400 | 401 | 403) { DefenderStatus::Unauthorized } else { DefenderStatus::Http };
    Error::new(code, format!("the managed identity endpoint answered HTTP {status}, {detail}"))
}

fn optional_seconds<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    seconds(deserializer).map(Some)
}
