//! Machine actions: starting a collection, looking one up, waiting for it to finish, and asking
//! for its package's download link.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio::time::Instant;
use url::Url;

use super::entity::Entity;
use super::lists::{self, Collection};
use super::machines::odata_string;
use super::{Api, ApiResponse, Operation, Request, check_id};
use crate::config::{Settings, after, is_loopback};
use crate::error::{DefenderStatus, Error, Result};
use crate::retry::{self, Failure, Policy, Polling, Repeat, Retry, RetryPolicy, Verdict};
use crate::runtime::{DefenderLogLevel, Phase};

/// Where a machine action is in its life, from its `status` field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ActionStatus {
    Pending,
    InProgress,
    Succeeded,
    /// Failed, TimeOut or Cancelled: no package will come.
    Ended(String),
    /// A status this library does not know; treated as still running.
    Unknown(String),
}

impl ActionStatus {
    fn parse(status: &str) -> Self {
        match status {
            "Pending" => Self::Pending,
            "InProgress" => Self::InProgress,
            "Succeeded" => Self::Succeeded,
            "Failed" | "TimeOut" | "Cancelled" => Self::Ended(status.to_owned()),
            other => Self::Unknown(other.to_owned()),
        }
    }
}

/// The fields of a MachineAction the library acts on; serde skips the others as it reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ActionFields {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub status: Option<String>,
    pub creation_date_time_utc: Option<String>,
    #[serde(rename = "errorHResult")]
    pub error_hresult: Option<i64>,
    /// The device, for a package's file name (`file_name_pattern`).
    pub machine_id: Option<String>,
    pub computer_dns_name: Option<String>,
}

/// A MachineAction as the service sent it (the caller's JSON), with the fields the library acts on.
#[derive(Debug)]
pub(crate) struct MachineAction {
    pub entity: Entity<ActionFields>,
    pub status: ActionStatus,
}

impl MachineAction {
    pub(crate) fn new(entity: Entity<ActionFields>, what: &str) -> Result<Self> {
        let status = entity
            .fields
            .status
            .as_deref()
            .map(ActionStatus::parse)
            .ok_or_else(|| Error::protocol(format!("{what}: the machine action has no status")))?;
        Ok(Self { entity, status })
    }

    /// The action as a JSON answer, `what` it was for.
    fn from_answer(response: ApiResponse, what: &str) -> Result<Self> {
        Self::new(response.entity(what)?, what)
    }

    /// The fields the library reads of it.
    pub(crate) fn fields(&self) -> &ActionFields {
        &self.entity.fields
    }

    /// The caller's JSON: the action as the service sent it.
    pub(crate) fn into_json(self) -> String {
        self.entity.into_json()
    }
}

/// The comment the API requires, when the caller gives none.
pub(crate) const DEFAULT_COMMENT: &str =
    concat!("Investigation package collected with defender ", env!("CARGO_PKG_VERSION"));

/// The comment of a cancellation, when the caller gives none.
pub(crate) const DEFAULT_CANCEL_COMMENT: &str = concat!("Cancelled with defender ", env!("CARGO_PKG_VERSION"));

/// `POST /api/machines/{id}/collectInvestigationPackage`: starts a collection and returns its action.
///
/// When one is already running on that machine (400 `ActiveRequestAlreadyExists`), that one is
/// returned instead: it yields the same package. The POST is never repeated blindly, since a
/// repeat could start a second collection: when its outcome is unknown (a 5xx, a timeout, a
/// connection lost after sending), the running collection is looked up as for
/// `ActiveRequestAlreadyExists`, and the POST is sent again only when none is running. Then a
/// repeat cannot start a second one: the service refuses it while one runs.
pub(crate) async fn collect(api: Api<'_>, machine_id: &str, comment: &str) -> Result<MachineAction> {
    check_id("machine id", machine_id)?;
    let what = format!("starting an investigation package collection on machine {machine_id}");
    let url = api.url(&["machines", machine_id, "collectInvestigationPackage"], &[])?;
    let body = serde_json::json!({ "Comment": comment });
    let mut resends = Retry::new(RetryPolicy::new(&api.session.settings, Repeat::Safe), &what, api.reporter);
    loop {
        let request = Request::post(Operation::CollectInvestigationPackage, url.clone(), &body, &what);
        let unknown_outcome = match api.send(request).await {
            Ok(response) if response.is_success() => {
                let action = MachineAction::from_answer(response, &what)?;
                NewActions::remember(&action);
                return Ok(action);
            }
            Ok(response) if response.status == StatusCode::NOT_FOUND => {
                return Err(Error::new(DefenderStatus::NotFound, format!("there is no machine {machine_id}")));
            }
            Ok(response)
                if response.status == StatusCode::BAD_REQUEST
                    && response.service_error().code.as_deref() == Some("ActiveRequestAlreadyExists") =>
            {
                api.reporter.log(
                    DefenderLogLevel::Info,
                    format!("a collection is already running on machine {machine_id}; using it"),
                );
                None
            }
            Ok(response) if retry::is_transient(response.status) => Some(response.into_error(&what)),
            Ok(response) => return Err(response.into_error(&what)),
            Err(err) if matches!(err.status(), DefenderStatus::Network | DefenderStatus::Timeout) => Some(err),
            Err(err) => return Err(err),
        };
        if let Some(err) = &unknown_outcome {
            api.reporter.log(DefenderLogLevel::Warn, format!("{err}; looking whether the collection started anyway"));
        }
        if let Some(action) = running_collection(api, machine_id).await.map_err(|err| err.context(&what))? {
            if unknown_outcome.is_some() {
                let id = action.fields().id.as_deref().unwrap_or("unknown");
                api.reporter.log(DefenderLogLevel::Info, format!("it did: using machine action {id}"));
            }
            return Ok(action);
        }
        // Nothing runs: the POST did not take effect (or the collection it found has just ended),
        // as if it had never left.
        let problem = "no collection is running on the machine, so the request did not take effect";
        let Ok(pause) = resends.decide(Failure::Transport { sent: false }, problem) else {
            return Err(unknown_outcome.unwrap_or_else(|| {
                Error::protocol(format!(
                    "{what}: the service says a collection is running, but lists none that is Pending or InProgress"
                ))
            }));
        };
        tokio::time::sleep(pause).await;
    }
}

/// The newest Pending or InProgress collection on `machine_id`, if there is one.
async fn running_collection(api: Api<'_>, machine_id: &str) -> Result<Option<MachineAction>> {
    let filter = format!("machineId eq {} and type eq 'CollectInvestigationPackage'", odata_string(machine_id));
    let mut running: Vec<MachineAction> = lists::list::<ActionFields>(api, &MACHINE_ACTIONS, Some(&filter), 0)
        .await?
        .into_iter()
        .filter_map(|entity| MachineAction::new(entity, "a listed collection").ok())
        .filter(|action| matches!(action.status, ActionStatus::Pending | ActionStatus::InProgress))
        .collect();
    // ISO 8601 timestamps in one format sort as text.
    running.sort_by(|a, b| b.fields().creation_date_time_utc.cmp(&a.fields().creation_date_time_utc));
    Ok(running.into_iter().next())
}

pub(crate) const MACHINE_ACTIONS: Collection =
    Collection { segment: "machineactions", endpoint: Operation::ListMachineActions, entities: "machine actions" };

/// `GET /api/machineactions`, every page: the actions as the service sent them.
pub(crate) async fn list(api: Api<'_>, filter: Option<&str>, max_items: u32) -> Result<Vec<Entity<IgnoredAny>>> {
    lists::list(api, &MACHINE_ACTIONS, filter, max_items).await
}

/// `POST /api/machineactions/{id}/cancel`: the action, Cancelled. 404 is `NOT_FOUND`; an action
/// that has already ended is refused by the service (400, `HTTP` with its message).
pub(crate) async fn cancel(api: Api<'_>, action_id: &str, comment: &str) -> Result<MachineAction> {
    check_id("action id", action_id)?;
    let what = format!("cancelling machine action {action_id}");
    let url = api.url(&["machineactions", action_id, "cancel"], &[])?;
    let body = serde_json::json!({ "Comment": comment });
    let response = api.send(Request::post(Operation::CancelMachineAction, url, &body, &what)).await?;
    if response.status == StatusCode::NOT_FOUND {
        return Err(Error::new(DefenderStatus::NotFound, format!("there is no machine action {action_id}")));
    }
    MachineAction::from_answer(response.success(&what)?, &what)
}

/// `GET /api/machineactions/{id}`. A 404 is `NOT_FOUND`.
pub(crate) async fn get(api: Api<'_>, action_id: &str) -> Result<MachineAction> {
    look_up(api, action_id, None).await
}

/// `get`, with rate-limit and retry waits ending by `deadline`.
async fn look_up(api: Api<'_>, action_id: &str, deadline: Option<Instant>) -> Result<MachineAction> {
    check_id("action id", action_id)?;
    let what = format!("looking up machine action {action_id}");
    let url = api.url(&["machineactions", action_id], &[])?;
    let response = api.send(Request::get(Operation::MachineAction, url, &what).until(deadline)).await?;
    if response.status == StatusCode::NOT_FOUND {
        return Err(Error::new(DefenderStatus::NotFound, format!("there is no machine action {action_id}")));
    }
    MachineAction::from_answer(response.success(&what)?, &what)
}

/// How long `wait` keeps polling when `wait_timeout_ms` is not set.
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(60 * 60);
/// A new action can be unknown to the API for a little while after it was created.
const NEW_ACTION_GRACE: Duration = Duration::from_secs(30);

/// The actions this process started, and when. Only these can be unknown to the API because
/// they are new: a wait tolerates their 404s for `NEW_ACTION_GRACE` after they were created,
/// while any other id the API does not know is `NOT_FOUND` at once (a mistyped id must not be
/// polled until the wait's time limit). Process-wide, like the rate limiters: the clone that
/// waits is rarely the client that collected.
pub(crate) struct NewActions;

static NEW_ACTIONS: LazyLock<Mutex<HashMap<String, std::time::Instant>>> = LazyLock::new(Default::default);

impl NewActions {
    /// Entries are dropped an hour after their action was created: far beyond any grace, so
    /// that a long-running process keeps only a few.
    const KEPT: Duration = Duration::from_secs(60 * 60);

    pub(crate) fn remember(action: &MachineAction) {
        let Some(id) = action.fields().id.as_deref() else { return };
        let mut created = NEW_ACTIONS.lock().unwrap_or_else(|e| e.into_inner());
        created.retain(|_, at| at.elapsed() < Self::KEPT);
        created.insert(id.to_owned(), std::time::Instant::now());
    }

    /// Until when a 404 for `action_id` means "not visible yet": `NEW_ACTION_GRACE` (in the
    /// client's clock) after this process created it; `None` for an action it did not create.
    fn grace_until(action_id: &str, settings: &Settings) -> Option<Instant> {
        let created = *NEW_ACTIONS.lock().unwrap_or_else(|e| e.into_inner()).get(action_id)?;
        Instant::from_std(created).checked_add(settings.scaled(NEW_ACTION_GRACE))
    }
}
const FIRST_POLL: Duration = Duration::from_secs(5);
const MAX_POLL: Duration = Duration::from_secs(60);

/// Polls the action until it has Succeeded (returned at once), ended Failed / TimeOut /
/// Cancelled (`ACTION_FAILED` at once), or `wait_timeout_ms` (default one hour) ran out
/// (`TIMEOUT`). Polls start 5 s apart and back off to a minute, all divided by `clock_scale`.
/// An id the API does not know is `NOT_FOUND` at once, unless this process created that action
/// moments ago (see `NewActions`).
pub(crate) async fn wait(api: Api<'_>, action_id: &str) -> Result<MachineAction> {
    let settings = &api.session.settings;
    let deadline = after(settings.scaled(settings.wait_timeout.unwrap_or(DEFAULT_WAIT)));
    wait_until(api, action_id, deadline).await
}

/// `wait`, giving up at `deadline`. The last poll is made at the deadline, not a poll interval
/// before it.
pub(crate) async fn wait_until(api: Api<'_>, action_id: &str, deadline: Instant) -> Result<MachineAction> {
    let action = wait_for_end(api, action_id, deadline).await?;
    match &action.status {
        ActionStatus::Ended(status) => Err(Error::new(
            DefenderStatus::ActionFailed,
            format!("machine action {action_id} ended {status}: no package will come"),
        )),
        _ => Ok(action),
    }
}

/// `wait_until`, returning the action however it ended (Succeeded, Failed, TimeOut or
/// Cancelled): for a caller that reads more of a failed action than its status (the errors of
/// a live response session's commands).
pub(crate) async fn wait_for_end(api: Api<'_>, action_id: &str, deadline: Instant) -> Result<MachineAction> {
    let settings = &api.session.settings;
    let started = Instant::now();
    let grace_until = NewActions::grace_until(action_id, settings);
    let mut polls = Polling::new(settings, FIRST_POLL, 1.5, MAX_POLL, deadline);
    loop {
        let status = match look_up(api, action_id, Some(deadline)).await {
            Ok(action) => match &action.status {
                ActionStatus::Succeeded | ActionStatus::Ended(_) => return Ok(action),
                ActionStatus::Pending | ActionStatus::InProgress | ActionStatus::Unknown(_) => {
                    action.fields().status.clone().unwrap_or_else(|| "unknown".to_owned())
                }
            },
            Err(err)
                if err.status() == DefenderStatus::NotFound && grace_until.is_some_and(|end| Instant::now() < end) =>
            {
                "not visible yet".to_owned()
            }
            Err(err) => return Err(err),
        };
        let Verdict::RetryIn(pause) = polls.verdict(()) else {
            let limit = match settings.wait_timeout {
                Some(limit) => format!("wait_timeout_ms = {}", limit.as_millis()),
                None => "one hour, the default of wait_timeout_ms".to_owned(),
            };
            return Err(Error::new(
                DefenderStatus::Timeout,
                format!(
                    "machine action {action_id} is still {status}: it did not finish in the time allowed ({limit})"
                ),
            ));
        };
        api.reporter.log(
            DefenderLogLevel::Info,
            format!("machine action {action_id} is {status}; looking again in {:.1} s", pause.as_secs_f64()),
        );
        api.reporter.phase(Phase::WaitingForCollection { status, waited: started.elapsed(), next_look_in: pause });
        tokio::time::sleep(pause).await;
    }
}

/// The deadline `wait_timeout_ms` sets, from now, for a call that yields a package link; `None`
/// when it is not set: the link is then asked for once, without waiting for the collection.
pub(crate) fn link_deadline(settings: &Settings) -> Option<Instant> {
    settings.wait_timeout.map(|limit| after(settings.scaled(limit)))
}

/// The package's short-lived download link (`GET /api/machineactions/{id}/getPackageUri`): the
/// one step that yields it.
///
/// The service answers 404 both for an unknown action and for one whose package is not ready;
/// the action is then looked up to say which (`NOT_FOUND`, `NOT_READY` or `ACTION_FAILED`).
///
/// Without a `deadline`, the link is asked for once. With one (see `link_deadline`), the step
/// first waits for the collection to finish, then asks again while the service still says
/// `NOT_READY` right after it succeeded; every wait (for the collection, for the link's turn in
/// the rate limit, for retries) ends by the deadline. `before_asking` is awaited in between (a
/// batch's download slot: collections still running hold none) and what it yields comes back
/// with the link.
pub(crate) async fn package_link<T>(
    api: Api<'_>,
    action_id: &str,
    deadline: Option<Instant>,
    before_asking: impl Future<Output = Result<T>>,
) -> Result<(Url, T)> {
    check_id("action id", action_id)?;
    if let Some(deadline) = deadline {
        wait_until(api, action_id, deadline).await?;
    }
    finished_package_link(api, action_id, deadline, before_asking).await
}

/// `package_link` for an action already waited for (or that is not to be waited for): the link,
/// asked for again until `deadline` while the service says `NOT_READY`.
pub(crate) async fn finished_package_link<T>(
    api: Api<'_>,
    action_id: &str,
    deadline: Option<Instant>,
    before_asking: impl Future<Output = Result<T>>,
) -> Result<(Url, T)> {
    check_id("action id", action_id)?;
    let held = before_asking.await?;
    let what = format!("getting the package link of machine action {action_id}");
    let url = api.url(&["machineactions", action_id, "getPackageUri"], &[])?;
    // The action has Succeeded by then; the link follows within moments.
    let mut polls = deadline.map(|deadline| Polling::new(&api.session.settings, FIRST_POLL, 1.0, FIRST_POLL, deadline));
    loop {
        let response = api.send(Request::get(Operation::GetPackageUri, url.clone(), &what).until(deadline)).await?;
        if response.status != StatusCode::NOT_FOUND {
            let link = link_from_answer(&response.success(&what)?.body).map_err(|err| err.context(&what))?;
            return Ok((link, held));
        }
        let err = why_no_package(api, action_id, deadline).await;
        let again = polls.as_mut().filter(|_| err.status() == DefenderStatus::NotReady).map(|polls| polls.verdict(()));
        let Some(Verdict::RetryIn(pause)) = again else { return Err(err) };
        api.reporter.log(DefenderLogLevel::Info, format!("{err}; asking again in {:.1} s", pause.as_secs_f64()));
        tokio::time::sleep(pause).await;
    }
}

/// The link in getPackageUri's answer, `{"value": "<link>"}` (see `parse_package_link`).
pub(crate) fn link_from_answer(body: &[u8]) -> Result<Url> {
    #[derive(Deserialize)]
    struct Answer {
        value: String,
    }
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|err| Error::protocol(format!("the service's answer could not be understood ({err})")))?;
    parse_package_link(&answer.value)
}

/// What a 404 from getPackageUri means for this action.
async fn why_no_package(api: Api<'_>, action_id: &str, deadline: Option<Instant>) -> Error {
    let action = match look_up(api, action_id, deadline).await {
        Ok(action) => action,
        Err(err) => return err,
    };
    let kind = action.fields().kind.as_deref().unwrap_or("unknown");
    if kind != "CollectInvestigationPackage" {
        return Error::new(
            DefenderStatus::NotFound,
            format!("machine action {action_id} is a {kind} action, not an investigation package collection"),
        );
    }
    match &action.status {
        ActionStatus::Ended(status) => {
            let hresult = action.fields().error_hresult.filter(|h| *h != 0);
            let detail = hresult.map(|h| format!(" (errorHResult {h})")).unwrap_or_default();
            Error::new(
                DefenderStatus::ActionFailed,
                format!("the collection {action_id} ended {status}{detail}: no package will come"),
            )
        }
        ActionStatus::Succeeded => Error::new(
            DefenderStatus::NotReady,
            format!("the collection {action_id} succeeded but its package is not available yet; try again shortly"),
        ),
        ActionStatus::Pending | ActionStatus::InProgress | ActionStatus::Unknown(_) => {
            let status = action.fields().status.as_deref().unwrap_or("unknown");
            Error::new(
                DefenderStatus::NotReady,
                format!("the collection {action_id} is {status}: its package is not ready yet"),
            )
        }
    }
}

/// The link from getPackageUri's `value`: unwrapped from a pair of literal double quotes (the
/// published example has them), and only an absolute `https` URL (`http` only to loopback).
/// Messages never show the link: its query holds the download's credential.
pub(crate) fn parse_package_link(value: &str) -> Result<Url> {
    let trimmed = value.trim();
    let unquoted = trimmed.strip_prefix('"').and_then(|rest| rest.strip_suffix('"')).unwrap_or(trimmed);
    let link = Url::parse(unquoted)
        .map_err(|err| Error::protocol(format!("the package link is not an absolute URL ({err})")))?;
    let allowed = link.scheme() == "https" || (link.scheme() == "http" && is_loopback(&link));
    if !allowed || link.host().is_none() {
        return Err(Error::protocol(format!(
            "the package link must be an https URL, not a{} {} URL",
            if link.scheme().starts_with(['a', 'e', 'i', 'o', 'u']) { "n" } else { "" },
            link.scheme()
        )));
    }
    if !link.username().is_empty() || link.password().is_some() {
        // Credentials in a URL end up in logs and proxies; a download link has its own (the SAS token).
        return Err(Error::protocol(format!(
            "the package link to {} carries user information (user:password@), which is refused",
            crate::http::shown_origin(&link)
        )));
    }
    if !crate::http::requestable(&link) {
        return Err(Error::protocol("the package link is not a URL that HTTP can request"));
    }
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_is_unwrapped_from_literal_quotes() {
        let link = parse_package_link("\"https://host.example/safedownload/a.zip?token=x\"").unwrap();
        assert_eq!(link.as_str(), "https://host.example/safedownload/a.zip?token=x");
        let plain = parse_package_link("https://host.example/a.zip").unwrap();
        assert_eq!(plain.as_str(), "https://host.example/a.zip");
    }

    #[test]
    fn only_https_links_except_to_loopback() {
        assert!(parse_package_link("http://127.0.0.1:9/a.zip").is_ok());
        for bad in [
            "http://evil.example/a.zip",
            "file:///etc/passwd",
            "/relative/a.zip",
            "",
            "\"",
            "https://user:pw@host.example/a.zip",
            "https://user@host.example/a.zip",
            "https://:pw@host.example/a.zip",
            "https://a{b.example/a.zip",
        ] {
            let err = parse_package_link(bad).unwrap_err();
            assert_eq!(err.status(), DefenderStatus::Protocol, "{bad}");
        }
    }

    #[test]
    fn a_bad_link_is_not_repeated_in_the_message() {
        let err = parse_package_link("http://evil.example/a.zip?token=SECRETSAS").unwrap_err();
        assert!(!err.message().contains("SECRETSAS"), "{err}");
    }

    #[test]
    fn ids_that_cannot_be_one_segment_are_refused() {
        for bad in ["", ".", "..", "a\nb"] {
            assert!(check_id("action id", bad).is_err(), "{bad:?}");
        }
        assert!(check_id("action id", "../x/y?z#").is_ok(), "encoded, not refused");
    }
}
