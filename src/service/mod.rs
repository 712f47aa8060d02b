//! The Defender for Endpoint API: how one request is made (URL, token, errors) and the typed
//! calls on machine actions built on it.

pub mod machine_actions;

use std::fmt;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::client::Session;
use crate::error::{DefenderStatus, Error, Result};
use crate::http::{describe_transport_error, read_limited};
use crate::runtime::{DefenderLogLevel, Reporter};

/// API answers are small JSON documents; anything larger is not one of them.
const MAX_API_RESPONSE: usize = 4 * 1024 * 1024;

/// The API calls the library makes. They differ in rate limits and in the permission they need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    GetPackageUri,
    MachineAction,
    ListMachineActions,
    CollectInvestigationPackage,
}

impl Endpoint {
    /// The application permission the call needs, named in 403 messages.
    fn permission(self) -> &'static str {
        match self {
            Self::GetPackageUri | Self::CollectInvestigationPackage => "Machine.CollectForensics",
            Self::MachineAction | Self::ListMachineActions => "Machine.Read.All",
        }
    }
}

/// One request's context: the session it belongs to and where it reports.
#[derive(Clone, Copy)]
pub struct Api<'a> {
    pub session: &'a Session,
    pub reporter: &'a Reporter,
}

/// An answer with its status, whatever the status was.
pub struct ApiResponse {
    pub status: StatusCode,
    pub body: Vec<u8>,
    endpoint: Endpoint,
}

/// The service's error body: `{"error": {"code", "message", "target"}}`.
#[derive(Debug, Default, Deserialize)]
pub struct ServiceError {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    /// The correlation id support asks for.
    #[serde(default)]
    pub target: Option<String>,
}

impl ApiResponse {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    pub fn service_error(&self) -> ServiceError {
        #[derive(Deserialize)]
        struct Envelope {
            error: ServiceError,
        }
        serde_json::from_slice::<Envelope>(&self.body).map(|e| e.error).unwrap_or_default()
    }

    /// The body as `T`; a body that does not parse is a `PROTOCOL` error.
    pub fn json<T: DeserializeOwned>(&self, what: impl fmt::Display) -> Result<T> {
        serde_json::from_slice(&self.body)
            .map_err(|err| Error::protocol(format!("{what}: the service's answer could not be understood ({err})")))
    }

    /// This answer as an error: the status mapped to a `DefenderStatus`, with the service's code,
    /// correlation id and message in the sentence.
    pub fn into_error(self, what: impl fmt::Display) -> Error {
        let service = self.service_error();
        let status = match self.status.as_u16() {
            401 => DefenderStatus::Unauthorized,
            403 => DefenderStatus::Forbidden,
            404 => DefenderStatus::NotFound,
            429 => DefenderStatus::RateLimited,
            _ => DefenderStatus::Http,
        };
        let mut sentence = format!("{what}: HTTP {}", self.status);
        let details: Vec<String> = [
            service.code.as_ref().map(|code| format!("code {code}")),
            service.target.as_ref().map(|target| format!("correlation id {target}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !details.is_empty() {
            sentence.push_str(&format!(" ({})", details.join(", ")));
        }
        if let Some(message) = service.message.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
            sentence.push_str(": ");
            sentence.push_str(&truncate(message, 300));
        }
        if status == DefenderStatus::Forbidden {
            sentence.push_str(&format!(
                "; the app needs the '{}' permission and access to the device's group",
                self.endpoint.permission()
            ));
        }
        Error::new(status, sentence)
    }

    /// `Ok(self)` for a 2xx answer, the mapped error otherwise.
    pub fn success(self, what: impl fmt::Display) -> Result<Self> {
        if self.is_success() { Ok(self) } else { Err(self.into_error(what)) }
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Refuses ids that cannot be one path segment of a request: empty, too long, control
/// characters, or `.` / `..` (a URL parser resolves those, even percent-encoded).
pub fn check_id(kind: &str, id: &str) -> Result<()> {
    const MAX_LEN: usize = 256;
    if id.is_empty() || id.len() > MAX_LEN || id.chars().any(char::is_control) || id == "." || id == ".." {
        return Err(Error::invalid_argument(format!(
            "{kind} '{}' is not an id: it must be 1 to {MAX_LEN} characters without control characters",
            id.escape_debug()
        )));
    }
    Ok(())
}

/// Characters kept as they are in a path segment: RFC 3986's unreserved ones. Everything else,
/// `/`, `?`, `#` and `%` included, is percent-encoded, so an id stays one segment.
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

impl Api<'_> {
    /// `{api root}/api/{segments...}?{query}`, each segment percent-encoded.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<url::Url> {
        let root = self.session.settings.api_root();
        let mut text = root.as_str().trim_end_matches('/').to_owned();
        text.push_str("/api");
        for segment in segments {
            text.push('/');
            text.extend(percent_encoding::utf8_percent_encode(segment, SEGMENT));
        }
        let mut url = url::Url::parse(&text).map_err(|err| Error::internal(format!("bad request URL: {err}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// Sends one API request with the client's token and returns the answer whatever its status.
    /// A 401 is answered once by renewing the token and sending again.
    pub async fn send(
        &self,
        method: Method,
        endpoint: Endpoint,
        url: url::Url,
        body: Option<&serde_json::Value>,
        what: &str,
    ) -> Result<ApiResponse> {
        let session = self.session;
        let mut renewed = false;
        loop {
            let token = session.tokens.token(&session.http, &session.settings, self.reporter).await?;
            let mut request = session.http.request(method.clone(), url.clone()).bearer_auth(token.expose());
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(timeout) = session.settings.timeout {
                request = request.timeout(timeout);
            }
            let response = request.send().await.map_err(|err| describe_transport_error(&err).context(what))?;
            let status = response.status();
            self.reporter.log(DefenderLogLevel::Debug, format!("{method} {}: HTTP {status}", url.path()));
            let body = read_limited(response, MAX_API_RESPONSE).await.map_err(|err| err.context(what))?;
            if status == StatusCode::UNAUTHORIZED && !renewed && session.tokens.can_renew() {
                self.reporter
                    .log(DefenderLogLevel::Warn, format!("{what}: the token was refused (HTTP 401); signing in again"));
                session.tokens.reject(&token).await;
                renewed = true;
                continue;
            }
            return Ok(ApiResponse { status, body, endpoint });
        }
    }
}
