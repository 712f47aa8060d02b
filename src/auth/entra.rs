//! Microsoft Entra ID's token endpoint: the OAuth 2.0 client-credentials grant.

use std::time::Duration;

use serde::Deserialize;

use super::AccessToken;
use crate::config::Settings;
use crate::error::{DefenderStatus, Error, Result};
use crate::http::{describe_transport_error, read_limited};
use crate::redact::Secret;

/// How the app proves who it is.
pub enum ClientProof<'a> {
    Secret(&'a Secret),
}

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
}

/// `expires_in` is a number from Entra and a string from some managed-identity endpoints.
pub(super) fn seconds<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
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

/// `POST {authority}/{tenant}/oauth2/v2.0/token` with `grant_type=client_credentials`.
pub async fn client_credentials(
    http: &reqwest::Client,
    settings: &Settings,
    tenant_id: &str,
    client_id: &str,
    proof: ClientProof<'_>,
) -> Result<AccessToken> {
    let mut url = settings.authority();
    url.path_segments_mut()
        .map_err(|()| Error::invalid_argument("authority_url cannot take a path"))?
        .pop_if_empty()
        .extend([tenant_id, "oauth2", "v2.0", "token"]);
    let scope = settings.scope();
    let mut form = vec![("grant_type", "client_credentials"), ("client_id", client_id), ("scope", scope.as_str())];
    match &proof {
        ClientProof::Secret(secret) => form.push(("client_secret", secret.expose())),
    }
    let what = format!("signing in to tenant {tenant_id} as app {client_id}");

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

/// 400 and 401 from the token endpoint mean the credentials (or tenant, or app) were refused.
fn token_error(status: reqwest::StatusCode, body: &[u8]) -> Error {
    let detail = match serde_json::from_slice::<TokenError>(body) {
        Ok(err) => format!("{}: {}", err.error, first_line(&err.error_description)),
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
