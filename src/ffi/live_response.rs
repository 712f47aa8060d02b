//! Live Response: files and script output off a device, and the library of scripts and files
//! its commands use.
//!
//! A session runs a list of commands on one device (`GetFile`, `RunScript`, `PutFile`, ...) and
//! is a machine action of type `LiveResponse` whose `commands` carry each command's `index`,
//! `commandStatus` and `errors`. The result of a GetFile (the file's bytes, possibly
//! gzip-compressed) or a RunScript (a JSON transcript: `script_name`, `exit_code`,
//! `script_output`, `script_errors`) is kept in Azure Blob storage, behind a short-lived SAS link
//! that can be asked for again at any time. The app needs the permission `Machine.LiveResponse`
//! (and `Library.Manage` for the library). The service's rules, which the library keeps: 10
//! session starts a minute; 25 sessions at once per tenant; one at a time per device; a session
//! for an offline device is queued for up to three days; RunScript times out after 10 minutes;
//! result links: 100 a minute, 1500 an hour. See docs/live-response.md.

use std::ffi::{c_char, c_void};

use super::client::{DefenderClient, client_ref};
use super::package::{
    DefenderBatchItemCallback, DefenderBatchProgressCallback, DefenderProgressCallback, with_batch_callbacks,
};
use super::{boundary, optional_str, required_out, required_str, write_string};
use crate::error::DefenderStatus;
use crate::runtime::ProgressFn;
use crate::service::{Api, entity, live_response};

/// Starts a live response session on a device (`POST /api/machines/{id}/runliveresponse` with
/// `{"Commands": commands_json, "Comment": comment}`) and returns its machine action into
/// `*action_json_out` (free it with `defender_string_free`).
///
/// - `machine_id_or_name`: a device id or computer name, as `defender_get_machine` resolves it.
/// - `commands_json`: the service's array of commands, checked before any request (a JSON array
///   of 1 to 100 objects with a string `"type"`), for example
///   `[{"type":"GetFile","params":[{"key":"Path","value":"C:\\Windows\\Temp\\a.log"}]},
///   {"type":"RunScript","params":[{"key":"ScriptName","value":"triage.ps1"},{"key":"Args","value":"-Quick"}]}]`.
/// - `comment`: recorded with the session (NULL: a default one, unique to this call).
///
/// A start refused because the tenant runs the 25 sessions the service allows at once (HTTP
/// 429), or because the device runs one (HTTP 400 `ActiveRequestAlreadyExists`), waits and
/// tries again while the option `wait_timeout_ms` allows, reporting the phase
/// `DEFENDER_PHASE_WAITING_FOR_SESSION`; without `wait_timeout_ms` it fails at once
/// (`DEFENDER_STATUS_RATE_LIMITED`, `DEFENDER_STATUS_HTTP`).
///
/// With `wait_timeout_ms` above 0 the call then waits, as for a collection, until the session
/// ends (a session for an offline device stays Pending until the device is back): one that ends
/// Failed, TimeOut or Cancelled is `DEFENDER_STATUS_ACTION_FAILED`, the message naming each
/// failed command with its errors. Without it, the session is returned as started (Pending).
///
/// The request is never repeated blindly: when its answer is lost (a 5xx, a timeout, a
/// connection lost after sending), the device's running session with this comment, if any, is
/// taken as the one started, and the request is sent again only when the device runs none.
///
/// Blocks until done. Returns `DEFENDER_STATUS_OK`, `DEFENDER_STATUS_NOT_FOUND` (no such device),
/// `DEFENDER_STATUS_ACTION_FAILED`, `DEFENDER_STATUS_TIMEOUT`, or the request statuses
/// (`UNAUTHORIZED`, `FORBIDDEN`: the app lacks `Machine.LiveResponse`, `RATE_LIMITED`, `HTTP`,
/// `NETWORK`, `PROTOCOL`, `CANCELLED`, `INVALID_ARGUMENT`).
///
/// # Safety
/// `client` is NULL or live; `machine_id_or_name`, `commands_json` and `comment` are NULL or
/// NUL-terminated; `action_json_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_run_live_response(
    client: *const DefenderClient,
    machine_id_or_name: *const c_char,
    commands_json: *const c_char,
    comment: *const c_char,
    action_json_out: *mut *mut c_char,
) -> DefenderStatus {
    boundary("defender_run_live_response", || {
        let client = unsafe { client_ref(client) }?;
        let machine = unsafe { required_str(machine_id_or_name, "machine_id_or_name") }?.to_owned();
        let commands = unsafe { required_str(commands_json, "commands_json") }?.to_owned();
        let comment = unsafe { optional_str(comment, "comment") }?.map(str::to_owned);
        required_out(action_json_out, "action_json_out")?;
        live_response::check_commands(&commands)?;
        let session = client.run("defender_run_live_response", None, |session, reporter| async move {
            let api = Api { session: &session, reporter: &reporter };
            let comment = comment.unwrap_or_else(|| live_response::unique_comment("commands"));
            let deadline = live_response::deadline(api, None);
            let started = live_response::start(api, &machine, &commands, &comment, deadline).await?;
            match (deadline, started.action.fields().id.clone()) {
                (Some(deadline), Some(id)) => live_response::wait(api, &id, deadline).await,
                _ => Ok(started),
            }
        })?;
        unsafe { write_string(action_json_out, session.into_json()) }
    })
}

/// Gets a fresh link to the result of command `index` of live response session `action_id`
/// (`GET /api/machineactions/{id}/GetLiveResponseResultDownloadLink(index=N)`) into `*uri_out`
/// (free it with `defender_string_free`): an Azure Blob storage URL whose SAS query is a
/// credential valid about 30 minutes. Do not log it; a fresh one may be asked for at any time.
///
/// The link is validated as the package's is (https, no user information; http only to
/// loopback). Blocks until done. Returns `DEFENDER_STATUS_OK`, `DEFENDER_STATUS_NOT_READY` (the
/// session is still Pending or InProgress), `DEFENDER_STATUS_ACTION_FAILED` (the command or
/// session failed: the message has the errors), `DEFENDER_STATUS_NOT_FOUND` (no such session or
/// command, or a command without a result, such as PutFile), or the request statuses.
///
/// # Safety
/// `client` is NULL or live; `action_id` is NULL or NUL-terminated; `uri_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_get_live_response_result_uri(
    client: *const DefenderClient,
    action_id: *const c_char,
    index: u32,
    uri_out: *mut *mut c_char,
) -> DefenderStatus {
    boundary("defender_get_live_response_result_uri", || {
        let client = unsafe { client_ref(client) }?;
        let action_id = unsafe { required_str(action_id, "action_id") }?.to_owned();
        required_out(uri_out, "uri_out")?;
        let link = client.run("defender_get_live_response_result_uri", None, |session, reporter| async move {
            let api = Api { session: &session, reporter: &reporter };
            live_response::result_link(api, &action_id, index, None).await.map(String::from)
        })?;
        unsafe { write_string(uri_out, link) }
    })
}

/// Downloads the result of command `index` of live response session `action_id` to
/// `destination`, with everything `defender_download_package` promises ("Downloads" at the top
/// of this header: temporary file, resume with Range, a fresh link when the store refuses an
/// expired one, MD5 from `Content-MD5` / `x-ms-blob-content-md5`, no-replace rename, 0600),
/// except the ZIP check: a result is any file.
///
/// - `destination` is a file path, or an existing folder where the file is named
///   `<action_id>-<index>` plus the extension of the result's type: the GetFile path's
///   extension, `.json` for a RunScript transcript. A result the store holds gzip-compressed
///   (`Content-Encoding: gzip`) is saved as its bytes came, compressed, and in a folder gets
///   `.gz` added. `overwrite` applies as for packages.
/// - With `wait_timeout_ms` above 0, first waits for the session to end.
/// - `progress` (may be NULL): see `DefenderProgressCallback`.
/// - `result_json_out` (may be NULL) receives
///   `{"action_id": "...", "index": N, "path": "...", "bytes": N, "resumed_from": N, "sha256": "<hex>", "command_type": "GetFile", "content_encoding": "gzip" or null, "elapsed_ms": N}`,
///   to be freed with `defender_string_free`; `resumed_from` as for a package (bytes an earlier,
///   interrupted call for the same destination left and that were kept).
///
/// Blocks until done. Returns the statuses of `defender_get_live_response_result_uri` and of
/// `defender_download_package` (`EXISTS`, `IO`, `INTEGRITY`, `CANCELLED`, ...).
///
/// # Safety
/// `client` is NULL or live; `action_id` and `destination` are NULL or NUL-terminated;
/// `progress` is NULL or callable with `user_data`; `result_json_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_download_live_response_result(
    client: *const DefenderClient,
    action_id: *const c_char,
    index: u32,
    destination: *const c_char,
    progress: DefenderProgressCallback,
    user_data: *mut c_void,
    result_json_out: *mut *mut c_char,
) -> DefenderStatus {
    boundary("defender_download_live_response_result", || {
        let client = unsafe { client_ref(client) }?;
        let action_id = unsafe { required_str(action_id, "action_id") }?.to_owned();
        let destination = unsafe { required_str(destination, "destination") }?.to_owned();
        // SAFETY: the caller vouches that `progress` may be called with `user_data` on this thread.
        let mut report = progress.map(|progress| {
            move |_item: usize, done: u64, total: u64| unsafe { progress(user_data, done, total) } != 0
        });
        let progress = report.as_mut().map(|report| report as ProgressFn<'_>);
        let saved = client.run("defender_download_live_response_result", progress, |session, reporter| async move {
            let api = Api { session: &session, reporter: &reporter };
            crate::download::live_response::download_result(api, &action_id, index, &destination).await
        })?;
        unsafe { write_string(result_json_out, crate::download::to_json(&saved)) }
    })
}

/// Brings files back from devices into `destination_folder`, each in a live response session of
/// its own: starts a GetFile of the path on the device, waits for it, and downloads the file
/// (result 0) as `defender_download_live_response_result` does into a folder.
///
/// - `requests_json`: `[{"machine": "<device id or computer name>", "path": "C:\\Windows\\Temp\\x.exe"}, ...]`,
///   checked before any request.
/// - The sessions start together, as the service allows (10 starts a minute through the
///   client's rate limiter; a start refused because the tenant runs 25 sessions or the device
///   runs one waits: `DEFENDER_PHASE_WAITING_FOR_SESSION`); each item waits for its session
///   within the option `wait_timeout_ms` (default: one hour); up to `max_concurrent_downloads`
///   items download at once. One item's failure does not stop the others.
/// - `progress` and `item_done` (each may be NULL) are called on this thread with `user_data`,
///   `index` being the item's position in `requests_json`; see `DefenderBatchProgressCallback`
///   and `DefenderBatchItemCallback`.
/// - `results_json_out` (may be NULL) receives a JSON array, one object per item in the order of
///   the requests: `{"status": "OK", "code": 0, "machine": "...", "remote_path": "...", "action_id": "...", "index": 0, "path": "...", "bytes": N, "resumed_from": N, "sha256": "<hex>", "command_type": "GetFile", "content_encoding": null, "elapsed_ms": N}`
///   for a file saved, and `{"status": "ACTION_FAILED", "code": 13, "machine": "...", "remote_path": "...", "action_id": "..." or null, "message": "...", "elapsed_ms": N}`
///   for one that was not (the message as `defender_last_error_message` would say it).
///
/// Blocks until every item is done. Returns `DEFENDER_STATUS_OK` when the batch ran, whatever
/// its items' outcomes; `DEFENDER_STATUS_INVALID_ARGUMENT` for malformed requests or a folder
/// that is not one; `DEFENDER_STATUS_IO` when the folder does not exist;
/// `DEFENDER_STATUS_CANCELLED` (results not written; files already saved stay).
///
/// # Safety
/// `client` is NULL or live; `requests_json` and `destination_folder` are NULL or
/// NUL-terminated; `progress` and `item_done` are NULL or callable with `user_data`;
/// `results_json_out` is NULL or writable.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)] // the C signature, as defender_download_packages'
pub unsafe extern "C" fn defender_get_files(
    client: *const DefenderClient,
    requests_json: *const c_char,
    destination_folder: *const c_char,
    progress: DefenderBatchProgressCallback,
    item_done: DefenderBatchItemCallback,
    user_data: *mut c_void,
    results_json_out: *mut *mut c_char,
) -> DefenderStatus {
    boundary("defender_get_files", || {
        let client = unsafe { client_ref(client) }?;
        let requests = unsafe { required_str(requests_json, "requests_json") }?;
        let requests = crate::download::live_response::parse_requests(requests)?;
        let folder = unsafe { required_str(destination_folder, "destination_folder") }?.to_owned();
        // SAFETY: the caller vouches that both callbacks may be called with `user_data` on this thread.
        let results = unsafe {
            with_batch_callbacks(progress, item_done, user_data, |callbacks| {
                client.run_with("defender_get_files", callbacks, |session, reporter| async move {
                    let api = Api { session: &session, reporter: &reporter };
                    crate::download::live_response::get_files(api, &requests, &folder).await
                })
            })
        }?;
        unsafe { write_string(results_json_out, crate::download::to_json(&results)) }
    })
}

/// Puts the file at `path` into the tenant's live response library (`POST /api/libraryfiles`,
/// multipart/form-data: the file, `Description`, `ParametersDescription`, `HasParameters`,
/// `OverrideIfExists`), under its file name, and returns the library file as the service
/// describes it into `*library_file_json_out` (may be NULL; free it with `defender_string_free`).
///
/// `description` is required; `parameters_description` may be NULL; `has_parameters` and
/// `override_if_exists`: non-zero is true. The library takes files of up to 250 MB. The app
/// needs the permission `Library.Manage`.
///
/// Blocks until done. Returns `DEFENDER_STATUS_OK`; `DEFENDER_STATUS_EXISTS` when a file of that
/// name is in the library and `override_if_exists` is 0; `DEFENDER_STATUS_IO` when the file
/// cannot be read; `DEFENDER_STATUS_INVALID_ARGUMENT`; or the request statuses. The request is
/// not repeated after an answer that may have been lost.
///
/// # Safety
/// `client` is NULL or live; `path`, `description` and `parameters_description` are NULL or
/// NUL-terminated; `library_file_json_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_upload_library_file(
    client: *const DefenderClient,
    path: *const c_char,
    description: *const c_char,
    parameters_description: *const c_char,
    has_parameters: i32,
    override_if_exists: i32,
    library_file_json_out: *mut *mut c_char,
) -> DefenderStatus {
    boundary("defender_upload_library_file", || {
        let client = unsafe { client_ref(client) }?;
        let path = unsafe { required_str(path, "path") }?.to_owned();
        let description = unsafe { required_str(description, "description") }?.to_owned();
        let parameters = unsafe { optional_str(parameters_description, "parameters_description") }?.map(str::to_owned);
        let file = client.run("defender_upload_library_file", None, |session, reporter| async move {
            let api = Api { session: &session, reporter: &reporter };
            live_response::upload_library_file(
                api,
                &path,
                &description,
                parameters.as_deref(),
                has_parameters != 0,
                override_if_exists != 0,
            )
            .await
        })?;
        unsafe { write_string(library_file_json_out, file.into_json()) }
    })
}

/// Lists the tenant's live response library (`GET /api/libraryfiles`) into
/// `*library_files_json_out`: one JSON array of the library's files, each exactly as the service
/// describes it (`fileName`, `sha256`, `description`, `creationTime`, `lastUpdatedTime`,
/// `createdBy`, `hasParameters`, `parametersDescription`, ...). Free it with
/// `defender_string_free`.
///
/// Blocks until done. Returns `DEFENDER_STATUS_OK` or the request statuses.
///
/// # Safety
/// `client` is NULL or live; `library_files_json_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_list_library_files(
    client: *const DefenderClient,
    library_files_json_out: *mut *mut c_char,
) -> DefenderStatus {
    boundary("defender_list_library_files", || {
        let client = unsafe { client_ref(client) }?;
        required_out(library_files_json_out, "library_files_json_out")?;
        let files = client.run("defender_list_library_files", None, |session, reporter| async move {
            live_response::list_library_files(Api { session: &session, reporter: &reporter }).await
        })?;
        unsafe { write_string(library_files_json_out, entity::json_array(&files)) }
    })
}

/// Removes the file `file_name` from the tenant's live response library
/// (`DELETE /api/libraryfiles/{fileName}`).
///
/// Blocks until done. Returns `DEFENDER_STATUS_OK`, `DEFENDER_STATUS_NOT_FOUND` (no such file),
/// or the request statuses.
///
/// # Safety
/// `client` is NULL or live; `file_name` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_delete_library_file(
    client: *const DefenderClient,
    file_name: *const c_char,
) -> DefenderStatus {
    boundary("defender_delete_library_file", || {
        let client = unsafe { client_ref(client) }?;
        let file_name = unsafe { required_str(file_name, "file_name") }?.to_owned();
        client.run("defender_delete_library_file", None, |session, reporter| async move {
            live_response::delete_library_file(Api { session: &session, reporter: &reporter }, &file_name).await
        })
    })
}
