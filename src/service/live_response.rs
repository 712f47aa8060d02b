//! Live Response: a session of commands on a device (`POST /api/machines/{id}/runliveresponse`),
//! the links to its commands' results (`GetLiveResponseResultDownloadLink(index=N)`), and the
//! library of scripts and files its commands use (`/api/libraryfiles`).
//!
//! A session start is refused while the tenant runs the 25 sessions the service allows at once
//! (429) and while the device runs one (400 `ActiveRequestAlreadyExists`); within the call's
//! `wait_timeout_ms` the start waits and tries again, saying so in the `WaitingForSession`
//! phase. A start whose answer was lost is not repeated blindly (see `start`).

use std::fmt;
use std::marker::PhantomData;
use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use tokio::time::Instant;
use url::Url;

use super::entity::Entity;
use super::lists;
use super::machine_actions::{self, ActionStatus, MACHINE_ACTIONS, MachineAction, NewActions};
use super::machines::{self, odata_string};
use super::{Api, Body, Operation, Request, check_id};
use crate::config::after;
use crate::error::{DefenderStatus, Error, Result};
use crate::redact::{SERVICE_TEXT_CHARS, printable};
use crate::retry::{self, Failure, Policy, Polling, Repeat, Retry, RetryPolicy, Verdict};
use crate::runtime::{DefenderLogLevel, Phase};

/// The comment the API requires, when the caller gives none.
pub(crate) const DEFAULT_COMMENT: &str = concat!("Live response with defender ", env!("CARGO_PKG_VERSION"));

/// The type of a live response session's machine action.
const ACTION_TYPE: &str = "LiveResponse";
/// Commands read of an action, and errors of a command, at most: a session has a handful.
const MAX_COMMANDS: usize = 100;
const MAX_ERRORS: usize = 20;
const MAX_PARAMS: usize = 20;
/// The largest `commands_json` taken.
const MAX_COMMANDS_JSON: usize = 64 * 1024;
/// The largest library file the service takes (250 MB).
pub(crate) const MAX_LIBRARY_FILE: u64 = 250 * 1000 * 1000;
/// Files read of the library's list, at most.
const MAX_LIBRARY_FILES: usize = 10_000;

/// Pauses between tries of a refused session start: 5 s growing to a minute (in the service's time).
const FIRST_TRY_AGAIN: Duration = Duration::from_secs(5);
const MAX_TRY_AGAIN: Duration = Duration::from_secs(60);

/// A JSON array read up to `N` items; the rest is skipped as it is read, keeping nothing of it.
#[derive(Debug)]
pub(crate) struct Capped<T, const N: usize>(pub Vec<T>);

impl<T, const N: usize> Default for Capped<T, N> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for Capped<T, N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Reader<T, const N: usize>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for Reader<T, N> {
            type Value = Capped<T, N>;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("an array")
            }

            fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
                Ok(Capped(Vec::new()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> std::result::Result<Self::Value, A::Error> {
                let mut read = Vec::new();
                while read.len() < N {
                    match items.next_element()? {
                        Some(item) => read.push(item),
                        None => return Ok(Capped(read)),
                    }
                }
                while items.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Capped(read))
            }
        }
        deserializer.deserialize_any(Reader::<T, N>(PhantomData))
    }
}

/// The fields of a live response action the library reads: its commands.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SessionFields {
    #[serde(default)]
    pub commands: Capped<CommandFields, MAX_COMMANDS>,
}

/// One of `commands[]`: `index`, `commandStatus`, `errors`, and the command as it was asked for.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CommandFields {
    pub index: Option<u32>,
    pub command_status: Option<String>,
    #[serde(default)]
    pub errors: Capped<Option<String>, MAX_ERRORS>,
    pub command: Option<CommandRequest>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CommandRequest {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub params: Capped<Param, MAX_PARAMS>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Param {
    pub key: Option<String>,
    pub value: Option<String>,
}

impl CommandFields {
    /// The command's type (`GetFile`, `RunScript`, ...), "unknown" when not given.
    pub(crate) fn kind(&self) -> &str {
        self.command.as_ref().and_then(|command| command.kind.as_deref()).unwrap_or("unknown")
    }

    /// The value of parameter `key` (ignoring case), as the command was asked for.
    pub(crate) fn param(&self, key: &str) -> Option<&str> {
        let params = &self.command.as_ref()?.params.0;
        params.iter().find(|param| param.key.as_deref().is_some_and(|k| k.eq_ignore_ascii_case(key)))?.value.as_deref()
    }

    fn describe_errors(&self) -> String {
        let errors: Vec<String> = self
            .errors
            .0
            .iter()
            .flatten()
            .map(|error| printable(error.trim(), SERVICE_TEXT_CHARS))
            .filter(|error| !error.is_empty())
            .collect();
        if errors.is_empty() { "no error given".to_owned() } else { errors.join("; ") }
    }
}

/// A live response action as the service sent it, with its commands read.
pub(crate) struct Session {
    pub action: MachineAction,
    pub commands: Vec<CommandFields>,
}

impl Session {
    pub(crate) fn read(action: MachineAction, what: &str) -> Result<Self> {
        let fields: SessionFields =
            serde_json::from_str(action.entity.json.get()).map_err(|err| super::not_understood(what, &err))?;
        Ok(Self { action, commands: fields.commands.0 })
    }

    fn id(&self) -> &str {
        self.action.fields().id.as_deref().unwrap_or("unknown")
    }

    /// Command `index`, by its `index` field (or its place when it has none).
    pub(crate) fn command(&self, index: u32) -> Option<&CommandFields> {
        self.commands
            .iter()
            .enumerate()
            .find(|(place, command)| command.index.unwrap_or(*place as u32) == index)
            .map(|(_, command)| command)
    }

    /// Why the session ended without its results: its status, and each failed command's errors.
    pub(crate) fn failure(&self) -> Error {
        let status = self.action.fields().status.as_deref().unwrap_or("unknown");
        let failed: Vec<String> = self
            .commands
            .iter()
            .enumerate()
            .filter(|(_, command)| command.command_status.as_deref() == Some("Failed"))
            .map(|(place, command)| {
                let index = command.index.unwrap_or(place as u32);
                format!("command {index} ({}) failed: {}", printable(command.kind(), 64), command.describe_errors())
            })
            .collect();
        let detail = if failed.is_empty() { String::new() } else { format!(": {}", failed.join("; ")) };
        Error::new(
            DefenderStatus::ActionFailed,
            format!("live response session {} ended {}{detail}", self.id(), printable(status, 64)),
        )
    }

    pub(crate) fn into_json(self) -> String {
        self.action.into_json()
    }
}

/// Checks `commands_json` (a JSON array of objects with a string `type`) before any request.
pub(crate) fn check_commands(commands_json: &str) -> Result<()> {
    #[derive(Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        _kind: String,
    }
    if commands_json.len() > MAX_COMMANDS_JSON {
        return Err(Error::invalid_argument(format!(
            "commands_json is {} bytes; a session's commands take at most {MAX_COMMANDS_JSON}",
            commands_json.len()
        )));
    }
    let commands: Vec<Typed> = serde_json::from_str(commands_json).map_err(|err| {
        Error::invalid_argument(format!(
            "commands_json must be a JSON array of commands such as [{{\"type\":\"GetFile\",\"params\":[{{\"key\":\"Path\",\"value\":\"C:\\\\x.log\"}}]}}] ({err})"
        ))
    })?;
    if commands.is_empty() || commands.len() > MAX_COMMANDS {
        return Err(Error::invalid_argument(format!(
            "commands_json holds {} commands; a session takes 1 to {MAX_COMMANDS}",
            commands.len()
        )));
    }
    Ok(())
}

/// A comment no other session has: the library's default with `what` and a request id, so
/// that a start whose answer was lost finds its own session (see `start`).
pub(crate) fn unique_comment(what: &str) -> String {
    format!("{DEFAULT_COMMENT}: {what} (request {:016x})", fastrand::u64(..))
}

/// The commands of one GetFile of `path`, as `commands_json`.
pub(crate) fn get_file_commands(path: &str) -> String {
    serde_json::json!([{ "type": "GetFile", "params": [{ "key": "Path", "value": path }] }]).to_string()
}

/// The device id of `machine_id_or_name` (as `defender_get_machine` resolves it).
async fn machine_id(api: Api<'_>, machine_id_or_name: &str) -> Result<String> {
    if machines::is_machine_id(machine_id_or_name) {
        return Ok(machine_id_or_name.to_owned());
    }
    let machine = machines::get(api, machine_id_or_name).await?;
    machine.fields.id.ok_or_else(|| Error::protocol(format!("the machine named '{machine_id_or_name}' has no id")))
}

/// Why a session start was refused in a way that passes: the tenant's sessions are all taken,
/// or the device runs one.
enum Refusal {
    TenantFull,
    DeviceBusy,
}

/// Starts a live response session of `commands_json` (checked by `check_commands`) on the
/// device `machine_id_or_name`, and returns its action as the service answered it.
///
/// Refused because 25 sessions run in the tenant (429) or the device runs one (400
/// `ActiveRequestAlreadyExists`): with a `deadline`, waits and tries again until then (the
/// `WaitingForSession` phase); without one, fails at once (`RATE_LIMITED`, `HTTP`).
///
/// The POST is never repeated blindly, since a repeat could run the commands twice. When its
/// outcome is unknown (a 5xx, a timeout, a connection lost after sending), the device's running
/// LiveResponse session with this very comment, if there is one, is taken as the one started;
/// the POST is sent again only when the device runs none (then the service itself refuses a
/// second one while the first runs: a device takes one session at a time). A session that
/// started and already ended before it was looked for is not found: the commands then run twice.
pub(crate) async fn start(
    api: Api<'_>,
    machine_id_or_name: &str,
    commands_json: &str,
    comment: &str,
    deadline: Option<Instant>,
) -> Result<Session> {
    check_commands(commands_json)?;
    let machine_id = machine_id(api, machine_id_or_name).await?;
    check_id("machine id", &machine_id)?;
    let what = format!("starting a live response session on machine {machine_id}");
    let url = api.url(&["machines", &machine_id, "runliveresponse"], &[])?;
    let body = format!(
        "{{\"Commands\":{},\"Comment\":{}}}",
        commands_json.trim(),
        serde_json::to_string(comment).map_err(|err| Error::internal(err.to_string()))?
    );
    let body = bytes::Bytes::from(body);
    let settings = &api.session.settings;
    let mut resends = Retry::new(RetryPolicy::new(settings, Repeat::Safe), &what, api.reporter);
    let started = Instant::now();
    let mut waits = deadline.map(|deadline| Polling::new(settings, FIRST_TRY_AGAIN, 1.5, MAX_TRY_AGAIN, deadline));
    let mut sent_unknown = false;
    loop {
        let request = Request::new(
            Method::POST,
            Operation::RunLiveResponse,
            url.clone(),
            Body::Bytes { content_type: "application/json".to_owned(), bytes: body.clone() },
            &what,
        )
        .returning_throttling()
        .until(deadline);
        let (refusal, answer) = match api.send(request).await {
            Ok(response) if response.is_success() => {
                let action = MachineAction::new(response.entity(&what)?, &what)?;
                NewActions::remember(&action);
                return Session::read(action, &what);
            }
            Ok(response) if response.status == StatusCode::NOT_FOUND => {
                return Err(Error::new(DefenderStatus::NotFound, format!("there is no machine {machine_id}")));
            }
            Ok(response) if response.status == StatusCode::TOO_MANY_REQUESTS => {
                (Some(Refusal::TenantFull), response.into_error(&what))
            }
            Ok(response)
                if response.status == StatusCode::BAD_REQUEST
                    && response.service_error().code.as_deref() == Some("ActiveRequestAlreadyExists") =>
            {
                (Some(Refusal::DeviceBusy), response.into_error(&what))
            }
            Ok(response) if retry::is_transient(response.status) => (None, response.into_error(&what)),
            Ok(response) => return Err(response.into_error(&what)),
            Err(err) if matches!(err.status(), DefenderStatus::Network | DefenderStatus::Timeout) => (None, err),
            Err(err) => return Err(err),
        };
        if refusal.is_none() || sent_unknown {
            // The outcome of this POST (or of an earlier one) is unknown: did a session start?
            if refusal.is_none() {
                api.reporter
                    .log(DefenderLogLevel::Warn, format!("{answer}; looking whether the session started anyway"));
            }
            sent_unknown = true;
            if let Some(session) = running_session(api, &machine_id, comment).await.map_err(|err| err.context(&what))? {
                api.reporter.log(DefenderLogLevel::Info, format!("it did: using machine action {}", session.id()));
                return Ok(session);
            }
        }
        let Some(refusal) = refusal else {
            // Nothing of ours runs: the POST did not take effect, as if it had never left.
            let problem = "no session of this request runs on the device, so the request did not take effect";
            let Ok(pause) = resends.decide(Failure::Transport { sent: false }, problem) else { return Err(answer) };
            tokio::time::sleep(pause).await;
            continue;
        };
        let reason = match refusal {
            // The service says 429 for both: the tenant's sessions, and (from another process
            // of the same app, which this one's limiter cannot see) its starts a minute.
            Refusal::TenantFull => "the service refused a new session (HTTP 429): the tenant runs the 25 live \
                                    response sessions it allows at once, or the app used its 10 starts a minute; \
                                    waiting to try again"
                .to_owned(),
            Refusal::DeviceBusy => format!(
                "machine {machine_id} runs another live response session or action (ActiveRequestAlreadyExists); \
                 waiting for it to end"
            ),
        };
        let Some(polls) = waits.as_mut() else {
            return Err(Error::new(
                answer.status(),
                format!("{}; set the option wait_timeout_ms to wait for a session", answer.message()),
            ));
        };
        let Verdict::RetryIn(pause) = polls.verdict(()) else {
            return Err(Error::new(
                DefenderStatus::Timeout,
                format!("{what}: {reason}, but the call's time limit (wait_timeout_ms) ran out ({})", answer.message()),
            ));
        };
        api.reporter
            .log(DefenderLogLevel::Info, format!("{what}: {reason}; trying again in {:.1} s", pause.as_secs_f64()));
        api.reporter.phase(Phase::WaitingForSession { reason, waited: started.elapsed(), next_try_in: pause });
        tokio::time::sleep(pause).await;
    }
}

/// The device's Pending or InProgress live response session with `comment`, if there is one.
async fn running_session(api: Api<'_>, machine_id: &str, comment: &str) -> Result<Option<Session>> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Comment {
        requestor_comment: Option<String>,
    }
    let filter = format!("machineId eq {} and type eq '{ACTION_TYPE}'", odata_string(machine_id));
    let listed = lists::list::<machine_actions::ActionFields>(api, &MACHINE_ACTIONS, Some(&filter), 0).await?;
    for entity in listed {
        let same_comment = serde_json::from_str::<Comment>(entity.json.get())
            .is_ok_and(|fields| fields.requestor_comment.as_deref() == Some(comment));
        let Ok(action) = MachineAction::new(entity, "a listed live response session") else { continue };
        if same_comment && matches!(action.status, ActionStatus::Pending | ActionStatus::InProgress) {
            return Session::read(action, "a listed live response session").map(Some);
        }
    }
    Ok(None)
}

/// The deadline of a call that waits: `wait_timeout_ms` from now, else `default` from now
/// (`None`: the call does not wait).
pub(crate) fn deadline(api: Api<'_>, default: Option<Duration>) -> Option<Instant> {
    let settings = &api.session.settings;
    settings.wait_timeout.or(default).map(|limit| after(settings.scaled(limit)))
}

/// Waits until the session `action_id` ends, by `deadline`: the session when it Succeeded,
/// `ACTION_FAILED` with each failed command's errors when it ended otherwise.
pub(crate) async fn wait(api: Api<'_>, action_id: &str, deadline: Instant) -> Result<Session> {
    let action = machine_actions::wait_for_end(api, action_id, deadline).await?;
    let session = Session::read(action, &format!("waiting for live response session {action_id}"))?;
    match session.action.status {
        ActionStatus::Succeeded => Ok(session),
        _ => Err(session.failure()),
    }
}

/// Looks up the session `action_id`.
pub(crate) async fn get(api: Api<'_>, action_id: &str) -> Result<Session> {
    let action = machine_actions::get(api, action_id).await?;
    Session::read(action, &format!("looking up live response session {action_id}"))
}

/// The link to command `index`'s result (`GET .../GetLiveResponseResultDownloadLink(index=N)`),
/// validated as a package's is. A 404 is told apart by looking the session up: `NOT_READY`
/// (still running), `ACTION_FAILED` (the command or session failed), `NOT_FOUND` (no such
/// session or command, or a command without a result).
pub(crate) async fn result_link(api: Api<'_>, action_id: &str, index: u32, deadline: Option<Instant>) -> Result<Url> {
    check_id("action id", action_id)?;
    let what = format!("getting the link to result {index} of live response session {action_id}");
    let mut url = api.url(&["machineactions", action_id], &[])?;
    // Unencoded, as the service's documentation writes it: an OData function call.
    url.path_segments_mut()
        .map_err(|()| Error::internal("the API root cannot have a path"))?
        .push(&format!("GetLiveResponseResultDownloadLink(index={index})"));
    let response = api.send(Request::get(Operation::LiveResponseResultLink, url, &what).until(deadline)).await?;
    if response.status == StatusCode::NOT_FOUND {
        let session = get(api, action_id).await?;
        return Err(why_no_result(&session, action_id, index));
    }
    let link = machine_actions::link_from_answer(&response.success(&what)?.body).map_err(|err| err.context(&what))?;
    Ok(link)
}

/// Why command `index` of `session` has no result (yet).
pub(crate) fn why_no_result(session: &Session, action_id: &str, index: u32) -> Error {
    let kind = session.action.fields().kind.as_deref().unwrap_or("unknown");
    if kind != ACTION_TYPE {
        return Error::new(
            DefenderStatus::NotFound,
            format!("machine action {action_id} is a {} action, not a live response session", printable(kind, 64)),
        );
    }
    let Some(command) = session.command(index) else {
        return Error::new(
            DefenderStatus::NotFound,
            format!(
                "live response session {action_id} has {} commands: there is no command {index}",
                session.commands.len()
            ),
        );
    };
    match (&session.action.status, command.command_status.as_deref()) {
        (_, Some("Failed")) | (ActionStatus::Ended(_), _) => session.failure(),
        (ActionStatus::Succeeded, _) if matches!(command.kind(), "GetFile" | "RunScript") => Error::new(
            DefenderStatus::NotReady,
            format!(
                "live response session {action_id} succeeded but result {index} is not available yet; try again shortly"
            ),
        ),
        (ActionStatus::Succeeded, _) => Error::new(
            DefenderStatus::NotFound,
            format!(
                "command {index} of live response session {action_id} is a {} command, which has no result",
                printable(command.kind(), 64)
            ),
        ),
        _ => {
            let status = session.action.fields().status.as_deref().unwrap_or("unknown");
            Error::new(
                DefenderStatus::NotReady,
                format!(
                    "live response session {action_id} is {}: its results are not ready yet",
                    printable(status, 64)
                ),
            )
        }
    }
}

/// `POST /api/libraryfiles`: puts the file at `path` into the library, as multipart/form-data.
/// A file of that name already there, without `override_if_exists`: `EXISTS`.
pub(crate) async fn upload_library_file(
    api: Api<'_>,
    path: &str,
    description: &str,
    parameters_description: Option<&str>,
    has_parameters: bool,
    override_if_exists: bool,
) -> Result<Entity<IgnoredAny>> {
    let file_name = Path::new(path)
        .file_name()
        .and_then(|name| name.to_str())
        .filter(|name| !name.is_empty())
        .ok_or_else(|| Error::invalid_argument(format!("'{path}' does not name a file")))?
        .to_owned();
    if description.trim().is_empty() {
        return Err(Error::invalid_argument("the description is empty; the library requires one"));
    }
    let what = format!("putting '{file_name}' in the live response library");
    let size = std::fs::metadata(path).map_err(|err| Error::io(format!("reading '{path}'"), &err))?.len();
    if size > MAX_LIBRARY_FILE {
        return Err(Error::invalid_argument(format!(
            "'{path}' is {size} bytes; the live response library takes files of up to {MAX_LIBRARY_FILE} bytes"
        )));
    }
    let file = tokio::fs::read(path).await.map_err(|err| Error::io(format!("reading '{path}'"), &err))?;
    let boundary = format!("defender-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let mut form = Vec::with_capacity(file.len() + 1024);
    let mut field = |name: &str, value: &str| {
        form.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    };
    field("Description", description);
    if let Some(parameters) = parameters_description {
        field("ParametersDescription", parameters);
    }
    field("HasParameters", if has_parameters { "true" } else { "false" });
    field("OverrideIfExists", if override_if_exists { "true" } else { "false" });
    let quoted_name = file_name.replace(['"', '\r', '\n'], "_");
    form.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{quoted_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    form.extend_from_slice(&file);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let body = Body::Bytes { content_type: format!("multipart/form-data; boundary={boundary}"), bytes: form.into() };
    let url = api.url(&["libraryfiles"], &[])?;
    let response = api.send(Request::new(Method::POST, Operation::UploadLibraryFile, url, body, &what)).await?;
    let exists = response.status == StatusCode::CONFLICT
        || (response.status == StatusCode::BAD_REQUEST
            && response
                .service_error()
                .message
                .is_some_and(|message| message.to_ascii_lowercase().contains("already exist")));
    if exists {
        let err = response.into_error(&what);
        return Err(Error::new(
            DefenderStatus::Exists,
            format!("{}; pass override_if_exists to replace it", err.message()),
        ));
    }
    response.success(&what)?.entity(&what)
}

/// `GET /api/libraryfiles`: the library's files as the service describes them.
pub(crate) async fn list_library_files(api: Api<'_>) -> Result<Vec<Entity<IgnoredAny>>> {
    let what = "listing the live response library";
    let url = api.url(&["libraryfiles"], &[])?;
    let response = api.send(Request::get(Operation::ListLibraryFiles, url, what)).await?.success(what)?;
    let page = lists::parse_page::<IgnoredAny>(&response.body, MAX_LIBRARY_FILES)
        .map_err(|err| super::not_understood(what, &err))?;
    if page.more {
        return Err(Error::protocol(format!("{what}: the library lists more than {MAX_LIBRARY_FILES} files")));
    }
    Ok(page.items)
}

/// `DELETE /api/libraryfiles/{fileName}`. No such file: `NOT_FOUND`.
pub(crate) async fn delete_library_file(api: Api<'_>, file_name: &str) -> Result<()> {
    check_id("library file name", file_name)?;
    let what = format!("removing '{file_name}' from the live response library");
    let url = api.url(&["libraryfiles", file_name], &[])?;
    let response = api.send(Request::new(Method::DELETE, Operation::DeleteLibraryFile, url, Body::None, &what)).await?;
    if response.status == StatusCode::NOT_FOUND {
        return Err(Error::new(
            DefenderStatus::NotFound,
            format!("there is no file '{file_name}' in the live response library"),
        ));
    }
    response.success(&what).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_checked_before_any_request() {
        assert!(check_commands(r#"[{"type":"GetFile","params":[{"key":"Path","value":"C:\\x"}]}]"#).is_ok());
        for bad in ["", "{}", "[]", r#"[{"params":[]}]"#, r#"[{"type":5}]"#, "[1]"] {
            assert_eq!(check_commands(bad).unwrap_err().status(), DefenderStatus::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn commands_and_their_errors_are_read_up_to_their_caps() {
        let errors: Vec<String> = (0..1000).map(|n| format!("\"e{n}\"")).collect();
        let text = format!(
            r#"{{"commands":[{{"index":0,"commandStatus":"Failed","errors":[{}],"command":{{"type":"GetFile","params":[{{"key":"path","value":"C:\\a.txt"}}]}}}}]}}"#,
            errors.join(",")
        );
        let fields: SessionFields = serde_json::from_str(&text).unwrap();
        let command = &fields.commands.0[0];
        assert_eq!(command.errors.0.len(), MAX_ERRORS);
        assert_eq!(command.param("Path"), Some("C:\\a.txt"));
        assert_eq!(command.kind(), "GetFile");
        let none: SessionFields = serde_json::from_str(r#"{"commands":null}"#).unwrap();
        assert!(none.commands.0.is_empty());
    }
}
