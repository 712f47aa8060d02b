//! Live response results through the download engine: command `index`'s result of a session,
//! behind a SAS link to Azure Blob storage, is a download like a package (temporary file,
//! resume, fresh links, MD5), of any file (no ZIP check), kept as its bytes came when the store
//! holds it gzip-compressed; and many files off many devices at once (`get_files`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::batch::{check_folder, status_name};
use super::{Kind, destination, destination_lock, download_slot, lossy_path, millis, to_json};
use crate::error::{DefenderStatus, Error, Result};
use crate::runtime::{self, DefenderLogLevel};
use crate::service::Api;
use crate::service::live_response::{self as service, CommandFields, Session};
use crate::service::machine_actions::{ActionStatus, DEFAULT_WAIT};

/// A result on disk: `{"action_id", "index", "path", "bytes", "resumed_from", "sha256",
/// "command_type", "content_encoding", "elapsed_ms"}`, `content_encoding` `"gzip"` when the bytes are
/// gzip-compressed as the store held them, else null.
#[derive(Debug, Serialize)]
pub(crate) struct ResultDownloaded {
    pub action_id: String,
    pub index: u32,
    #[serde(serialize_with = "lossy_path")]
    pub path: PathBuf,
    pub bytes: u64,
    /// Bytes an earlier, interrupted call for the same destination left and that were kept.
    pub resumed_from: u64,
    pub sha256: String,
    pub command_type: String,
    pub content_encoding: Option<String>,
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    pub elapsed: Duration,
}

/// Downloads command `index`'s result of session `action_id` to `destination` (a file path, or
/// a folder where it is named `<action_id>-<index><extension>`). With `wait_timeout_ms`, first
/// waits for the session to end.
pub(crate) async fn download_result(
    api: Api<'_>,
    action_id: &str,
    index: u32,
    destination: &str,
) -> Result<ResultDownloaded> {
    let deadline = service::deadline(api, None);
    let session = match deadline {
        Some(deadline) => service::wait(api, action_id, deadline).await?,
        None => service::get(api, action_id).await?,
    };
    save_result(api, &session, action_id, index, destination, 0, None).await
}

/// The name of a result in a folder: `<action_id>-<index>` and the extension of its type (the
/// GetFile path's, `.json` for a RunScript transcript); letters, digits, `.`, `_` and `-` only.
fn result_file_name(action_id: &str, index: u32, command: &CommandFields) -> String {
    let extension = match command.kind() {
        "RunScript" => ".json".to_owned(),
        "GetFile" => command
            .param("Path")
            .and_then(|path| path.rsplit(['\\', '/']).next())
            .and_then(|name| name.rsplit_once('.').map(|(_, extension)| extension))
            .filter(|extension| {
                !extension.is_empty() && extension.len() <= 16 && extension.chars().all(|c| c.is_ascii_alphanumeric())
            })
            .map(|extension| format!(".{extension}"))
            .unwrap_or_default(),
        _ => String::new(),
    };
    let safe_id: String =
        action_id.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') { c } else { '_' }).collect();
    format!("{safe_id}-{index}{extension}")
}

/// Saves command `index`'s result of `session` (looked up, or waited for) to `destination`,
/// reporting as item `item`; with `slots`, the link and transfer wait for one.
async fn save_result(
    api: Api<'_>,
    session: &Session,
    action_id: &str,
    index: u32,
    destination: &str,
    item: usize,
    slots: Option<&Semaphore>,
) -> Result<ResultDownloaded> {
    let started = Instant::now();
    let command = session.command(index).ok_or_else(|| service::why_no_result(session, action_id, index))?;
    if matches!(session.action.status, ActionStatus::Ended(_)) || command.command_status.as_deref() == Some("Failed") {
        return Err(session.failure());
    }
    let overwrite = api.session.settings.overwrite;
    let into_folder = Path::new(destination).is_dir();
    let path = destination::resolve(destination, &result_file_name(action_id, index, command), overwrite)?;
    let what = format!("downloading result {index} of live response session {action_id}");
    // One writer per destination, as for a package.
    let _lock = destination_lock(api, &path, &what).await?;
    if !overwrite && path.exists() {
        return Err(destination::exists(&path));
    }
    let _slot = download_slot(api, slots).await?;
    // Waits for a result that is not there yet only when the call waits (wait_timeout_ms).
    let link = service::result_link(api, action_id, index, service::deadline(api, None)).await?;
    api.reporter.log(DefenderLogLevel::Info, format!("{what} to '{}'", path.display()));
    let kind = Kind::LiveResponseResult { action_id, index };
    let (part, received) = super::transfer(api, &kind, &what, item, link, &path).await?;
    let path = match &received.content_encoding {
        // The bytes stay compressed, and the name says so.
        Some(encoding) if into_folder && encoding.eq_ignore_ascii_case("gzip") => {
            let mut name = path.clone().into_os_string();
            name.push(".gz");
            destination::resolve(&PathBuf::from(name).to_string_lossy(), "", overwrite)?
        }
        _ => path,
    };
    tokio::task::block_in_place(|| part.persist(&path, overwrite))?;
    let saved = ResultDownloaded {
        action_id: action_id.to_owned(),
        index,
        path,
        bytes: received.bytes,
        resumed_from: received.resumed_from,
        sha256: hex::encode(received.sha256),
        command_type: command.kind().to_owned(),
        content_encoding: received.content_encoding.map(|encoding| encoding.to_ascii_lowercase()),
        elapsed: started.elapsed(),
    };
    api.reporter.log(
        DefenderLogLevel::Info,
        format!("saved {} bytes to '{}' (SHA-256 {})", saved.bytes, saved.path.display(), saved.sha256),
    );
    Ok(saved)
}

/// One file to bring back: `{"machine": "<id or computer name>", "path": "C:\\..."}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRequest {
    machine: String,
    path: String,
}

/// The requests of `defender_get_files`, checked before any request.
pub(crate) fn parse_requests(json: &str) -> Result<Vec<FileRequest>> {
    let requests: Vec<FileRequest> = serde_json::from_str(json).map_err(|err| {
        Error::invalid_argument(format!(
            "requests_json must be a JSON array of {{\"machine\": \"<id or name>\", \"path\": \"C:\\\\...\"}} ({err})"
        ))
    })?;
    for (index, request) in requests.iter().enumerate() {
        if request.machine.trim().is_empty() || request.path.trim().is_empty() {
            return Err(Error::invalid_argument(format!("requests_json[{index}] has an empty machine or path")));
        }
    }
    Ok(requests)
}

/// One item's result: its status by name and number, what was asked, then the file saved or why not.
#[derive(Debug, Serialize)]
pub(crate) struct FileItem {
    #[serde(serialize_with = "status_name")]
    status: DefenderStatus,
    code: i32,
    machine: String,
    remote_path: String,
    #[serde(flatten)]
    outcome: FileOutcome,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum FileOutcome {
    Saved(ResultDownloaded),
    Failed {
        /// The session, when one started.
        action_id: Option<String>,
        message: String,
        #[serde(rename = "elapsed_ms", serialize_with = "millis")]
        elapsed: Duration,
    },
}

/// For each request, in a session of its own: starts a GetFile on the device (waiting for a
/// session when the tenant or the device has none free), waits for it, and downloads the file
/// into `folder`. Up to `max_concurrent_downloads` items download at once; the sessions and
/// waits all run together, within `wait_timeout_ms` (default: an hour) each.
pub(crate) async fn get_files(api: Api<'_>, requests: &[FileRequest], folder: &str) -> Result<Vec<FileItem>> {
    check_folder(folder)?;
    api.reporter.log(DefenderLogLevel::Info, format!("getting {} file(s) into '{folder}'", requests.len()));
    let slots = Semaphore::new(api.session.settings.max_concurrent_downloads);
    let items: Vec<_> =
        requests.iter().enumerate().map(|(index, request)| get_one(api, index, request, folder, &slots)).collect();
    Ok(futures_util::future::join_all(items).await)
}

async fn get_one(api: Api<'_>, index: usize, request: &FileRequest, folder: &str, slots: &Semaphore) -> FileItem {
    let started = Instant::now();
    let mut action_id = None;
    let outcome = runtime::as_item(index, async {
        let deadline = service::deadline(api, Some(DEFAULT_WAIT)).expect("a default is given");
        let comment = service::unique_comment(&format!("GetFile {}", request.path));
        let commands = service::get_file_commands(&request.path);
        let session = service::start(api, &request.machine, &commands, &comment, Some(deadline)).await?;
        let id = session.action.fields().id.clone().ok_or_else(|| Error::protocol("the new session has no id"))?;
        action_id = Some(id.clone());
        let session = service::wait(api, &id, deadline).await?;
        save_result(api, &session, &id, 0, folder, index, Some(slots)).await
    })
    .await;
    let (status, outcome) = match outcome {
        Ok(saved) => (DefenderStatus::Ok, FileOutcome::Saved(saved)),
        Err(error) => {
            let message = api.reporter.scrub(error.message());
            api.reporter.log(DefenderLogLevel::Info, format!("item {index} ({}): {message}", request.machine));
            (error.status(), FileOutcome::Failed { action_id, message, elapsed: started.elapsed() })
        }
    };
    let item = FileItem {
        status,
        code: status as i32,
        machine: request.machine.clone(),
        remote_path: request.path.clone(),
        outcome,
    };
    api.reporter.item_done(index, status, to_json(&item));
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(json: &str) -> CommandFields {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_result_is_named_after_its_session_index_and_type() {
        let get_file =
            command(r#"{"command":{"type":"GetFile","params":[{"key":"Path","value":"C:\\Windows\\Temp\\x.EXE"}]}}"#);
        assert_eq!(result_file_name("a1", 0, &get_file), "a1-0.EXE");
        let no_extension =
            command(r#"{"command":{"type":"GetFile","params":[{"key":"Path","value":"/var/log/syslog"}]}}"#);
        assert_eq!(result_file_name("a1", 1, &no_extension), "a1-1");
        let odd = command(r#"{"command":{"type":"GetFile","params":[{"key":"Path","value":"C:\\a.b c"}]}}"#);
        assert_eq!(result_file_name("a/1", 2, &odd), "a_1-2");
        let script = command(r#"{"command":{"type":"RunScript","params":[]}}"#);
        assert_eq!(result_file_name("a1", 3, &script), "a1-3.json");
    }
}
