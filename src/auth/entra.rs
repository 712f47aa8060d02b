//! Microsoft Entra ID's token endpoint: the OAuth 2.0 client-credentials grant, with a client
//! secret or a client assertion.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::certificate::ClientCertificate;
use super::{AccessToken, App, Proof, seconds};
use crate::config::Settings;
use crate::error::{DefenderStatus, Error, Result};
use crate::http::{describe_transport_error, read_limited};
use crate::redact::Secret;
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
pub fn token_endpoint(authority: &Url, tenant_id: &str) -> Result<Url> {
    let mut url = authority.clone();
    url.path_segments_mut()
        .map_err(|()| Error::invalid_argument("the sign-in authority URL cannot take a path"))?
        .pop_if_empty()
        .extend([tenant_id, "oauth2", "v2.0", "token"]);
    Ok(url)
}

/// `POST {token endpoint}` with `grant_type=client_credentials` and the app's proof.
pub async fn client_credentials(
    http: &reqwest::Client,
    settings: &Settings,
    app: &App,
    reporter: &Reporter,
) -> Result<AccessToken> {
    let url = token_endpoint(&app.authority, &app.tenant_id)?;
    let what = format!("signing in to tenant {} as app {}", app.tenant_id, app.client_id);
    // An assertion signed here lives only as long as this request.
    let assertion: Secret;
    let (proof_fields, described) = match &app.proof {
        Proof::Secret(secret) => (vec![("client_secret", secret.expose())], "a client secret".to_owned()),
        Proof::Certificate(path) => {
            let certificate = ClientCertificate::read(path).map_err(|err| err.context(&what))?;
            assertion = certificate.sign_assertion(&app.client_id, url.as_str())?;
            let described =
                format!("the certificate in '{}' (thumbprint {})", path.display(), certificate.thumbprint());
            (assertion_fields(&assertion), described)
        }
        Proof::Assertion(assertion) => (assertion_fields(assertion), "a client assertion".to_owned()),
    };
    reporter.log(DefenderLogLevel::Debug, format!("{what} with {described}"));

    let scope = settings.scope();
    let mut form = vec![("grant_type", "client_credentials"), ("client_id", app.client_id.as_str()), ("scope", &scope)];
    form.extend(proof_fields);
    let mut request = http.post(url).form(&form);
    if let Some(timeout) = settings.timeout {
        request = request.timeout(timeout);
    }
    let response = request.send().await.map_err(|err| describe_transport_error(&err).context(&what))?;
    let status = response.status();
    let body = read_limited(response, MAX_TOKEN_RESPONSE).await.map_err(|err| err.context(&what))?;

    if status.is_success() {
        let token: TokenResponse = serde_json::from_slice(&body)
            .map_err(|err| Error::protocol(format!("{what}: the token endpoint's answer is not a token ({err})")))?;
        return Ok(AccessToken::expiring_in(Secret::new(token.access_token), Duration::from_secs(token.expires_in)));
    }
    Err(token_error(status, &body).context(what))
}

fn assertion_fields(assertion: &Secret) -> Vec<(&'static str, &str)> {
    vec![("client_assertion_type", JWT_BEARER), ("client_assertion", assertion.expose())]
}

/// 400 and 401 from the token endpoint mean the credentials (or tenant, or app) were refused.
fn token_error(status: reqwest::StatusCode, body: &[u8]) -> Error {
    let detail = match serde_json::from_slice::<TokenError>(body) {
        Ok(err) => {
            let correlation = err.correlation_id.map(|id| format!(" (correlation id {id})")).unwrap_or_default();
            format!("{}{correlation}: {}", err.error, first_line(&err.error_description))
        }
        Err(_) => "no error details".to_owned(),
    };
    let code = if matches!(status.as_u16(), 400 | 401) { DefenderStatus::Unauthorized } else { DefenderStatus::Http };
    Error::new(code, format!("the token endpoint answered HTTP {status}, {detail}"))
}

/// Entra appends trace and correlation ids and a timestamp on further lines; the first line says
/// what was wrong.
fn first_line(description: &str) -> &str {
    description.lines().next().unwrap_or_default().trim()
}
