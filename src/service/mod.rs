//! The Defender for Endpoint API: how one request is made (URL, token, rate limits, retries,
//! errors) and the typed calls on machine actions built on it.

pub(crate) mod entity;
pub(crate) mod lists;
pub(crate) mod live_response;
pub(crate) mod machine_actions;
pub(crate) mod machines;
pub(crate) mod rate_limit;

use std::fmt;
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::client::Session;
use crate::error::{DefenderStatus, Error, Result};
use crate::http::{describe_transport_error, read_limited};
use crate::redact::{SERVICE_TEXT_CHARS, Secret, printable};
use crate::retry::{self, Failure, Repeat, Retry, RetryPolicy, Stop};
use crate::runtime::{DefenderLogLevel, Reporter};
use entity::Entity;
use rate_limit::{Limiter, Slot, Waiter};

/// The largest answer about one entity (a machine action, a machine, a link, an error): they
/// are a few KiB.
const MAX_ENTITY_ANSWER: usize = 1024 * 1024;
/// The largest page of a list: 10,000 of the simulator's machines take 6 MB, a real tenant's
/// (with their IP addresses) several times that.
const MAX_PAGE_ANSWER: usize = 64 * 1024 * 1024;

/// The API calls the library makes. They differ in rate limits and in the permission they need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Operation {
    GetPackageUri,
    MachineAction,
    ListMachineActions,
    CollectInvestigationPackage,
    Machine,
    ListMachines,
    CancelMachineAction,
    RunLiveResponse,
    LiveResponseResultLink,
    ListLibraryFiles,
    UploadLibraryFile,
    DeleteLibraryFile,
}

impl Operation {
    /// The application permission the call needs, named in 403 messages.
    fn permission(self) -> &'static str {
        match self {
            Self::GetPackageUri | Self::CollectInvestigationPackage => "Machine.CollectForensics",
            Self::MachineAction | Self::ListMachineActions | Self::Machine | Self::ListMachines => "Machine.Read.All",
            // The service asks for the permission of the action's own type.
            Self::CancelMachineAction => "Machine.CollectForensics (or that of the action's type)",
            Self::RunLiveResponse | Self::LiveResponseResultLink => "Machine.LiveResponse",
            Self::ListLibraryFiles | Self::UploadLibraryFile | Self::DeleteLibraryFile => "Library.Manage",
        }
    }

    /// The largest answer this call takes: a page for lists, one entity for the rest.
    fn answer_cap(self) -> usize {
        match self {
            Self::ListMachineActions | Self::ListMachines | Self::ListLibraryFiles => MAX_PAGE_ANSWER,
            Self::GetPackageUri
            | Self::MachineAction
            | Self::CollectInvestigationPackage
            | Self::Machine
            | Self::CancelMachineAction
            | Self::RunLiveResponse
            | Self::LiveResponseResultLink
            | Self::UploadLibraryFile
            | Self::DeleteLibraryFile => MAX_ENTITY_ANSWER,
        }
    }
}

/// One request's context: the session it belongs to and where it reports.
#[derive(Clone, Copy)]
pub(crate) struct Api<'a> {
    pub session: &'a Session,
    pub reporter: &'a Reporter,
}

/// An answer with its status, whatever the status was.
pub(crate) struct ApiResponse {
    pub status: StatusCode,
    pub body: Vec<u8>,
    endpoint: Operation,
    /// Why the retries stopped, when this answer is the last of several attempts.
    gave_up: Option<String>,
}

/// The service's error body: `{"error": {"code", "message", "target"}}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ServiceError {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    /// The correlation id support asks for.
    #[serde(default)]
    pub target: Option<String>,
}

impl ApiResponse {
    pub(crate) fn new(status: StatusCode, body: Vec<u8>, endpoint: Operation) -> Self {
        Self { status, body, endpoint, gave_up: None }
    }

    pub(crate) fn is_success(&self) -> bool {
        self.status.is_success()
    }

    pub(crate) fn service_error(&self) -> ServiceError {
        #[derive(Deserialize)]
        struct Envelope {
            error: ServiceError,
        }
        serde_json::from_slice::<Envelope>(&self.body).map(|e| e.error).unwrap_or_default()
    }

    /// The body as one entity: its text as it came and its fields `T`; a body that does not parse
    /// is a `PROTOCOL` error.
    pub(crate) fn entity<T: DeserializeOwned>(self, what: impl fmt::Display) -> Result<Entity<T>> {
        String::from_utf8(self.body)
            .map_err(serde::de::Error::custom)
            .and_then(Entity::parse)
            .map_err(|err| not_understood(what, &err))
    }

    /// This answer as an error: the status mapped to a `DefenderStatus`, with the service's code,
    /// correlation id and message in the sentence.
    pub(crate) fn into_error(self, what: impl fmt::Display) -> Error {
        let service = self.service_error();
        let status = match self.status.as_u16() {
            401 => DefenderStatus::Unauthorized,
            403 => DefenderStatus::Forbidden,
            404 => DefenderStatus::NotFound,
            429 => DefenderStatus::RateLimited,
            _ => DefenderStatus::Http,
        };
        let mut sentence = format!("{what}: HTTP {}", self.status);
        let shown = |text: &String| printable(text, SERVICE_TEXT_CHARS);
        let details: Vec<String> = [
            service.code.as_ref().map(|code| format!("code {}", shown(code))),
            service.target.as_ref().map(|target| format!("correlation id {}", shown(target))),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !details.is_empty() {
            sentence.push_str(&format!(" ({})", details.join(", ")));
        }
        if let Some(message) = service.message.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
            sentence.push_str(": ");
            sentence.push_str(&printable(message, SERVICE_TEXT_CHARS));
        }
        if status == DefenderStatus::Forbidden {
            sentence.push_str(&format!(
                "; the app needs the '{}' permission and access to the device's group",
                self.endpoint.permission()
            ));
        }
        if let Some(gave_up) = &self.gave_up {
            sentence.push_str("; ");
            sentence.push_str(gave_up);
        }
        Error::new(status, sentence)
    }

    /// `Ok(self)` for a 2xx answer, the mapped error otherwise.
    pub(crate) fn success(self, what: impl fmt::Display) -> Result<Self> {
        if self.is_success() { Ok(self) } else { Err(self.into_error(what)) }
    }
}

/// An answer that does not parse, as the `PROTOCOL` error of `what`.
pub(crate) fn not_understood(what: impl fmt::Display, err: &serde_json::Error) -> Error {
    Error::protocol(format!("{what}: the service's answer could not be understood ({err})"))
}

/// Refuses ids that cannot be one path segment of a request: empty, too long, control
/// characters, or `.` / `..` (a URL parser resolves those, even percent-encoded).
pub(crate) fn check_id(kind: &str, id: &str) -> Result<()> {
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
    pub(crate) fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<url::Url> {
        // The root is parsed already: only the path is set (parsing a whole URL again, host
        // and all, was a tenth of a call's instructions).
        let mut url = self.session.settings.api_root();
        let mut path = url.path().trim_end_matches('/').to_owned();
        path.push_str("/api");
        for segment in segments {
            path.push('/');
            path.extend(percent_encoding::utf8_percent_encode(segment, SEGMENT));
        }
        url.set_path(&path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// Sends one API request with the client's token and returns the answer whatever its status.
    ///
    /// On the way: a slot in the rate limiter (unless `rate_limit` is off), a 401 answered once
    /// by renewing the token, and the retries of `retry::RetryPolicy` (429s after their
    /// `Retry-After`; network errors and 5xx when the request is safe to repeat). The answer
    /// returned is the last one; an error only when no answer came at all.
    pub(crate) async fn send(&self, request: Request<'_>) -> Result<ApiResponse> {
        let what = request.what;
        let repeat = if request.method == Method::GET { Repeat::Safe } else { Repeat::OnlyIfNotSent };
        let policy = RetryPolicy::new(&self.session.settings, repeat).until(request.deadline);
        let mut retries = Retry::new(policy, what, self.reporter);
        let mut renewed = false;
        loop {
            let waiting = Instant::now();
            let turn = self.take_turn(&request).await?;
            retries.policy.set_aside(waiting.elapsed());
            let (failure, answer) = self.attempt(&request, &turn.token, turn.slot).await?;
            if let (Some(limiter), Failure::Status { status: StatusCode::TOO_MANY_REQUESTS, retry_after: Some(wait) }) =
                (&turn.limiter, failure)
            {
                // The service said when it takes such calls again: nobody in the queue goes
                // sooner, whatever becomes of this call.
                let wait = self.session.settings.scaled(wait.min(retry::MAX_RETRY_AFTER));
                limiter.pause(request.endpoint, crate::config::after(wait));
            }
            let refused = answer.as_ref().is_ok_and(|response| response.status == StatusCode::UNAUTHORIZED);
            if refused && !renewed && self.session.tokens.can_renew() {
                self.reporter
                    .log(DefenderLogLevel::Warn, format!("{what}: the token was refused (HTTP 401); signing in again"));
                self.session.tokens.reject(&turn.token).await;
                renewed = true;
                continue;
            }
            if answer.as_ref().is_ok_and(ApiResponse::is_success) {
                return answer;
            }
            let throttled = matches!(failure, Failure::Status { status: StatusCode::TOO_MANY_REQUESTS, .. });
            if throttled && request.returns_throttling {
                return answer;
            }
            let problem = match &answer {
                Ok(response) if throttled => format!("HTTP {}, throttled by the service", response.status),
                Ok(response) => format!("HTTP {}", response.status),
                Err(err) => err.message().to_owned(),
            };
            let pause = match retries.decide(failure, &problem) {
                Ok(pause) => pause,
                // The last answer is returned, its status mapped by the caller.
                Err(Stop::Exhausted(why)) if answer.is_ok() => {
                    return answer.map(|response| ApiResponse { gave_up: Some(why), ..response });
                }
                Err(stop) => return answer.map_err(|err| stop.error(err).context(what)),
            };
            match (&turn.limiter, throttled) {
                // The queue waits with it (also when the 429 did not say how long), and this call
                // waits back in the queue.
                (Some(limiter), true) => limiter.pause(request.endpoint, crate::config::after(pause)),
                _ => tokio::time::sleep(pause).await,
            }
        }
    }

    /// The token and, unless `rate_limit` is off, a slot in the rate limiter: the request may go.
    async fn take_turn(&self, request: &Request<'_>) -> Result<Turn> {
        let session = self.session;
        let settings = &session.settings;
        let token = session.tokens.token(&session.sign_in_http, settings, self.reporter).await?;
        if !settings.rate_limit {
            return Ok(Turn { token, limiter: None, slot: None });
        }
        let limiter = rate_limit::shared(settings, token.expose());
        let waiter = Waiter { what: request.what, deadline: request.deadline, reporter: self.reporter };
        let slot = limiter.acquire(request.endpoint, settings, waiter).await?;
        // A wait in the queue can outlast the token: take it again (from the cache, unless it is
        // due for renewal by now). Nothing is sent when that fails, so the slot is given back.
        match session.tokens.token(&session.sign_in_http, settings, self.reporter).await {
            Ok(token) => Ok(Turn { token, limiter: Some(limiter), slot: Some(slot) }),
            Err(err) => {
                slot.not_counted();
                Err(err)
            }
        }
    }

    /// Sends the request once and tells how it went: the failure as the retry policy sees it
    /// (when it is one), and the answer or the transport error (without `what` in front yet).
    /// Finishes the slot as soon as the outcome is known.
    async fn attempt(
        &self,
        request: &Request<'_>,
        token: &Secret,
        slot: Option<Slot>,
    ) -> Result<(Failure, Result<ApiResponse>)> {
        let Request { method, endpoint, url, body, what, .. } = request;
        let mut http = self.session.http.request(method.clone(), url.clone()).bearer_auth(token.expose());
        match body {
            Body::None => {}
            Body::Json(body) => http = http.json(body),
            Body::Bytes { content_type, bytes } => {
                http = http.header(reqwest::header::CONTENT_TYPE, content_type.as_str()).body(bytes.clone());
            }
        }
        if let Some(timeout) = self.session.settings.timeout {
            http = http.timeout(timeout);
        }
        let response = match http.send().await {
            Ok(response) => response,
            Err(err) => {
                // A connection that could not be made, or a request that could not be built,
                // carried nothing: the service never saw it.
                let sent = !err.is_connect() && !err.is_builder();
                if let Some(final_error) = crate::http::final_transport_error(&err) {
                    if let Some(slot) = slot {
                        if sent { slot.answered() } else { slot.not_counted() }
                    }
                    return Err(final_error.context(what));
                }
                if let Some(slot) = slot {
                    if sent { slot.answered() } else { slot.not_counted() }
                }
                return Ok((Failure::Transport { sent }, Err(describe_transport_error(&err))));
            }
        };
        let status = response.status();
        if let Some(slot) = slot {
            if status == StatusCode::TOO_MANY_REQUESTS { slot.not_counted() } else { slot.answered() }
        }
        self.reporter.log(DefenderLogLevel::Debug, format!("{method} {}: HTTP {status}", url.path()));
        let retry_after = retry::retry_after(response.headers());
        match read_limited(response, endpoint.answer_cap()).await {
            Ok(body) => Ok((Failure::Status { status, retry_after }, Ok(ApiResponse::new(status, body, *endpoint)))),
            // The answer broke off: as if none had come.
            Err(err) if err.status() == DefenderStatus::Network => Ok((Failure::Transport { sent: true }, Err(err))),
            Err(err) => Err(err.context(what)),
        }
    }
}

/// What a request needs before it goes: the token, and its slot in the rate limiter.
struct Turn {
    token: Secret,
    limiter: Option<Arc<Limiter>>,
    slot: Option<Slot>,
}

/// One API request, as `Api::send` takes it.
pub(crate) struct Request<'a> {
    method: Method,
    endpoint: Operation,
    url: url::Url,
    body: Body<'a>,
    /// A 429 is returned to the caller at once, not retried here: the caller waits its own way
    /// (a live response session start, refused while 25 sessions run).
    returns_throttling: bool,
    /// What is being done, for messages: "looking up machine action X".
    what: &'a str,
    /// Waits for the rate limits and for retries never reach past it.
    deadline: Option<Instant>,
}

/// What a request carries.
pub(crate) enum Body<'a> {
    None,
    Json(&'a serde_json::Value),
    /// Bytes of this type (a multipart form); a clone shares them, so a resend copies nothing.
    Bytes {
        content_type: String,
        bytes: bytes::Bytes,
    },
}

impl<'a> Request<'a> {
    pub(crate) fn get(endpoint: Operation, url: url::Url, what: &'a str) -> Self {
        Self::new(Method::GET, endpoint, url, Body::None, what)
    }

    pub(crate) fn post(endpoint: Operation, url: url::Url, body: &'a serde_json::Value, what: &'a str) -> Self {
        Self::new(Method::POST, endpoint, url, Body::Json(body), what)
    }

    pub(crate) fn new(method: Method, endpoint: Operation, url: url::Url, body: Body<'a>, what: &'a str) -> Self {
        Self { method, endpoint, url, body, returns_throttling: false, what, deadline: None }
    }

    /// A 429 comes back to the caller at once (see `returns_throttling`).
    pub(crate) fn returning_throttling(self) -> Self {
        Self { returns_throttling: true, ..self }
    }

    /// Waits for this request (rate limits, retries) end by `deadline`: the call's wait limit.
    pub(crate) fn until(self, deadline: Option<Instant>) -> Self {
        Self { deadline, ..self }
    }
}
