//! Microsoft Entra ID's token endpoint: the OAuth 2.0 client-credentials grant, with a client
//! secret or a client assertion.

use std::time::Duration;

use serde::Deserialize;
use url::Url;
use zeroize::Zeroizing;

use super::certificate::ClientCertificate;
use super::{AccessToken, App, Proof, seconds};
use crate::config::Settings;
use crate::error::{DefenderStatus, Error, Result};
use crate::http::{describe_transport_error, read_limited, refused_sign_in_redirect};
use crate::redact::{SERVICE_TEXT_CHARS, Secret, printable};
use crate::retry::{Attempt, Failure, Repeat, Retry, RetryPolicy, retry_after, transport_failure};
use crate::runtime::{DefenderLogLevel, Reporter};

/// `client_assertion_type` for a JWT assertion (RFC 7523).
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The token endpoint's answers are small; anything larger is not one of them.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(deserialize_with = "seconds")]
    expires_in: u64,
}

/// Entra's error body.
#[derive(Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: String,
    /// The id support asks for.
    #[serde(default)]
    correlation_id: Option<String>,
}

/// `{authority}/{tenant}/oauth2/v2.0/token`: where an app signs in, and an assertion's `aud`.
pub(super) fn token_endpoint(authority: &Url, tenant_id: &str) -> Result<Url> {
    let mut url = authority.clone();
    url.path_segments_mut()
        .map_err(|()| Error::invalid_argument("the sign-in authority URL cannot take a path"))?
        .pop_if_empty()
        .extend([tenant_id, "oauth2", "v2.0", "token"]);
    Ok(url)
}

/// `POST {token endpoint}` with `grant_type=client_credentials` and the app's proof.
pub(super) async fn client_credentials(
    http: &reqwest::Client,
    settings: &Settings,
    app: &App,
    reporter: &Reporter,
) -> Result<AccessToken> {
    let url = token_endpoint(&app.authority, &app.tenant_id)?;
    let what = format!("signing in to tenant {} as app {}", app.tenant_id, app.client_id);
    let certificate = match &app.proof {
        Proof::Certificate(path) => Some(ClientCertificate::read(path).map_err(|err| err.context(&what))?),
        Proof::Secret(_) | Proof::Assertion(_) | Proof::Callback => None,
    };
    let described = match (&app.proof, &certificate) {
        (Proof::Certificate(path), Some(certificate)) => {
            format!("the certificate in '{}' (thumbprint {})", path.display(), certificate.thumbprint())
        }
        (Proof::Assertion(_), _) => "a client assertion".to_owned(),
        (Proof::Callback, _) => "a client assertion from the assertion callback".to_owned(),
        _ => "a client secret".to_owned(),
    };
    reporter.log(DefenderLogLevel::Debug, format!("{what} with {described}"));
    let scope = settings.scope();

    // A token request changes nothing: it is safe to send again after a 5xx, a 429 or a lost
    // connection.
    let mut retry = Retry::new(RetryPolicy::new(settings, Repeat::Safe), &what, reporter);
    loop {
        match request_token(http, settings, app, certificate.as_ref(), &url, &scope, reporter).await {
            Ok(token) => return Ok(token),
            Err((failure, err)) => retry.after(failure, err).await.map_err(|err| err.context(&what))?,
        }
    }
}

/// One request to the token endpoint. A certificate, or the caller's assertion callback, signs
/// a new assertion for each: an assertion's `jti` is single-use.
async fn request_token(
    http: &reqwest::Client,
    settings: &Settings,
    app: &App,
    certificate: Option<&ClientCertificate>,
    url: &Url,
    scope: &str,
    reporter: &Reporter,
) -> Attempt<AccessToken> {
    let signed: Secret;
    let proof_fields = match (&app.proof, certificate) {
        (Proof::Secret(secret), _) => vec![("client_secret", secret.expose())],
        (Proof::Assertion(assertion), _) => assertion_fields(assertion),
        (Proof::Certificate(_), certificate) => {
            let certificate = certificate.expect("the certificate is read before the first attempt");
            signed = certificate.sign_assertion(&app.client_id, url.as_str()).map_err(|err| (None, err))?;
            assertion_fields(&signed)
        }
        (Proof::Callback, _) => {
            signed = reporter.sign_assertion(url.as_str(), &app.client_id).await.map_err(|err| (None, err))?;
            assertion_fields(&signed)
        }
    };
    let mut form = vec![("grant_type", "client_credentials"), ("client_id", app.client_id.as_str()), ("scope", scope)];
    form.extend(proof_fields);
    let mut request = http.post(url.clone()).form(&form);
    if let Some(timeout) = settings.timeout {
        request = request.timeout(timeout);
    }
    let response = request.send().await.map_err(|err| (transport_failure(&err), describe_transport_error(&err)))?;
    let status = response.status();
    if status.is_redirection() {
        return Err((None, refused_sign_in_redirect("the token endpoint", &response)));
    }
    let retry_after = retry_after(response.headers());
    // Zeroed when dropped: it holds the token.
    let body = Zeroizing::new(read_limited(response, MAX_TOKEN_RESPONSE).await.map_err(|err| (None, err))?);
    if !status.is_success() {
        return Err((Some(Failure::Status { status, retry_after }), token_error(status, &body)));
    }
    token_from_answer(&body).map_err(|err| (None, err))
}

/// The token in the token endpoint's (successful) answer.
pub(crate) fn token_from_answer(body: &[u8]) -> Result<AccessToken> {
    let token: TokenResponse = serde_json::from_slice(body)
        .map_err(|err| Error::protocol(format!("the token endpoint's answer is not a token ({err})")))?;
    Ok(AccessToken::expiring_in(Secret::new(token.access_token), Duration::from_secs(token.expires_in)))
}

fn assertion_fields(assertion: &Secret) -> Vec<(&'static str, &str)> {
    vec![("client_assertion_type", JWT_BEARER), ("client_assertion", assertion.expose())]
}

/// The token endpoint's refusal. Its OAuth `error` says whose fault it is: the credentials
/// (`invalid_client`, `unauthorized_client`, `invalid_grant`, and any 401) are `UNAUTHORIZED`;
/// a request the endpoint cannot serve at all (`invalid_request`: a tenant that does not exist
/// or a wrong cloud; `invalid_scope`, `unsupported_grant_type`) is `INVALID_ARGUMENT`, so that a
/// mistyped tenant is not taken for a wrong secret.
pub(crate) fn token_error(status: reqwest::StatusCode, body: &[u8]) -> Error {
    let parsed = serde_json::from_slice::<TokenError>(body).ok();
    let detail = match &parsed {
        Some(err) => {
            let correlation = err
                .correlation_id
                .as_ref()
                .map(|id| format!(" (correlation id {})", printable(id, SERVICE_TEXT_CHARS)))
                .unwrap_or_default();
            format!(
                "{}{correlation}: {}",
                printable(&err.error, SERVICE_TEXT_CHARS),
                printable(what_was_wrong(&err.error_description), DESCRIPTION_CHARS)
            )
        }
        None => "no error details".to_owned(),
    };
    let request_refused = parsed.as_ref().is_some_and(|err| {
        matches!(err.error.as_str(), "invalid_request" | "invalid_scope" | "unsupported_grant_type")
    });
    let code = match status.as_u16() {
        400 if request_refused => DefenderStatus::InvalidArgument,
        400 | 401 => DefenderStatus::Unauthorized,
        _ => DefenderStatus::Http,
    };
    Error::new(code, format!("the token endpoint answered HTTP {status}, {detail}"))
}

/// Entra's descriptions run to a few hundred characters (AADSTS700016 names the app and the
/// tenant, then says why); they are shown whole up to this.
const DESCRIPTION_CHARS: usize = 1000;

/// Entra appends trace and correlation ids and a timestamp, on further lines or on the same one
/// (" Trace ID: ..."); the text before them says what was wrong.
fn what_was_wrong(description: &str) -> &str {
    let first = first_line(description);
    first.find(" Trace ID:").map_or(first, |end| &first[..end]).trim()
}

fn first_line(description: &str) -> &str {
    description.lines().next().unwrap_or_default().trim()
}
