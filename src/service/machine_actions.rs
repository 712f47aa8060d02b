//! Machine actions: looking one up, and asking for its package's download link.

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use url::Url;

use super::{Api, Endpoint, check_id};
use crate::config::is_loopback;
use crate::error::{DefenderStatus, Error, Result};

/// Where a machine action is in its life, from its `status` field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionStatus {
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

/// A MachineAction as the service sent it, with the fields the library acts on.
#[derive(Clone, Debug)]
pub struct MachineAction {
    /// The whole object, as it came: callers get this JSON.
    pub json: serde_json::Value,
    pub status: ActionStatus,
}

impl MachineAction {
    fn from_json(json: serde_json::Value, what: &str) -> Result<Self> {
        let status = json
            .get("status")
            .and_then(|s| s.as_str())
            .map(ActionStatus::parse)
            .ok_or_else(|| Error::protocol(format!("{what}: the machine action has no status")))?;
        Ok(Self { json, status })
    }

    fn text(&self, field: &str) -> Option<&str> {
        self.json.get(field).and_then(|v| v.as_str())
    }
}

/// `GET /api/machineactions/{id}`. A 404 is `NOT_FOUND`.
pub async fn get(api: Api<'_>, action_id: &str) -> Result<MachineAction> {
    check_id("action id", action_id)?;
    let what = format!("looking up machine action {action_id}");
    let url = api.url(&["machineactions", action_id], &[])?;
    let response = api.send(Method::GET, Endpoint::MachineAction, url, None, &what).await?;
    if response.status == StatusCode::NOT_FOUND {
        return Err(Error::new(DefenderStatus::NotFound, format!("there is no machine action {action_id}")));
    }
    MachineAction::from_json(response.success(&what)?.json(&what)?, &what)
}

/// `GET /api/machineactions/{id}/getPackageUri`: the package's short-lived download link.
///
/// The service answers 404 both for an unknown action and for one whose package is not ready;
/// the action is then looked up to say which (`NOT_FOUND`, `NOT_READY` or `ACTION_FAILED`).
pub async fn get_package_uri(api: Api<'_>, action_id: &str) -> Result<Url> {
    check_id("action id", action_id)?;
    let what = format!("getting the package link of machine action {action_id}");
    let url = api.url(&["machineactions", action_id, "getPackageUri"], &[])?;
    let response = api.send(Method::GET, Endpoint::GetPackageUri, url, None, &what).await?;
    if response.status == StatusCode::NOT_FOUND {
        return Err(why_no_package(api, action_id).await);
    }
    #[derive(Deserialize)]
    struct PackageUri {
        value: String,
    }
    let answer: PackageUri = response.success(&what)?.json(&what)?;
    parse_package_link(&answer.value).map_err(|err| err.context(&what))
}

/// What a 404 from getPackageUri means for this action.
async fn why_no_package(api: Api<'_>, action_id: &str) -> Error {
    let action = match get(api, action_id).await {
        Ok(action) => action,
        Err(err) => return err,
    };
    let kind = action.text("type").unwrap_or("unknown");
    if kind != "CollectInvestigationPackage" {
        return Error::new(
            DefenderStatus::NotFound,
            format!("machine action {action_id} is a {kind} action, not an investigation package collection"),
        );
    }
    match &action.status {
        ActionStatus::Ended(status) => {
            let hresult = action.json.get("errorHResult").and_then(|v| v.as_i64()).filter(|h| *h != 0);
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
            let status = action.text("status").unwrap_or("unknown");
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
pub fn parse_package_link(value: &str) -> Result<Url> {
    let trimmed = value.trim();
    let unquoted = trimmed
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(trimmed);
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
        for bad in ["http://evil.example/a.zip", "file:///etc/passwd", "/relative/a.zip", "", "\""] {
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
