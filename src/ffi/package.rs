//! The core of the ABI: the package's download link, and the package itself.

use std::ffi::{c_char, c_void};

use super::client::{DefenderClient, client_ref};
use super::{boundary, required_out, required_str, write_string};
use crate::error::DefenderStatus;
use crate::runtime::ProgressFn;
use crate::service::{Api, machine_actions};

/// Reports download progress. Return non-zero to cancel the download (the call then returns
/// `DEFENDER_STATUS_CANCELLED` and leaves no file).
///
/// `bytes_total` is 0 while the size is unknown. Called on the thread that called
/// `defender_download_package`, only while it runs: as bytes arrive (at most about ten times a
/// second) and once at the end with `bytes_done == bytes_total`. The callback must not call the
/// library, except `defender_client_cancel`.
pub type DefenderProgressCallback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, bytes_done: u64, bytes_total: u64) -> i32>;

/// Gets a fresh, short-lived download link for the investigation package of machine action
/// `action_id` (`GET /api/machineactions/{id}/getPackageUri`) into `*uri_out`, to be freed with
/// `defender_string_free`. Download it at once: links expire within minutes.
///
/// When the option `wait_timeout_ms` is above 0, first waits up to that long for the collection
/// to finish (see `defender_wait_for_action`).
///
/// The id is sent percent-encoded as one path segment. The link is unwrapped from literal
/// quotes when the service wraps it, and is always an absolute https URL (http only to
/// loopback). The link's query is a credential: do not log it.
///
/// Blocks until done. Returns:
/// - `DEFENDER_STATUS_OK`;
/// - `DEFENDER_STATUS_NOT_READY`: the collection is still Pending or InProgress;
/// - `DEFENDER_STATUS_NOT_FOUND`: no such machine action (or it is not a package collection);
/// - `DEFENDER_STATUS_ACTION_FAILED`: the collection ended Failed, TimeOut or Cancelled;
/// - `DEFENDER_STATUS_UNAUTHORIZED`, `DEFENDER_STATUS_FORBIDDEN`, `DEFENDER_STATUS_RATE_LIMITED`,
///   `DEFENDER_STATUS_HTTP`, `DEFENDER_STATUS_NETWORK`, `DEFENDER_STATUS_TIMEOUT`,
///   `DEFENDER_STATUS_PROTOCOL`, `DEFENDER_STATUS_CANCELLED`;
/// - `DEFENDER_STATUS_INVALID_ARGUMENT`: a NULL or non-UTF-8 argument, an id that cannot be
///   one path segment, no sign-in configured, or a call from inside a callback.
///
/// # Safety
/// `client` is NULL or live; `action_id` is NULL or NUL-terminated; `uri_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_get_package_uri(
    client: *const DefenderClient,
    action_id: *const c_char,
    uri_out: *mut *mut c_char,
) -> DefenderStatus {
    boundary("defender_get_package_uri", || {
        let client = unsafe { client_ref(client) }?;
        let action_id = unsafe { required_str(action_id, "action_id") }?.to_owned();
        required_out(uri_out, "uri_out")?;
        let link = client.run("defender_get_package_uri", None, |session, reporter| async move {
            let api = Api { session: &session, reporter: &reporter };
            machine_actions::package_link(api, &action_id).await.map(String::from)
        })?;
        unsafe { write_string(uri_out, link) }
    })
}

/// Downloads the investigation package of machine action `action_id` to `destination`: gets a
/// fresh link and streams the package to disk at once.
///
/// - `destination` is a file path; when it names an existing folder, the file is
///   `<action_id>.zip` inside it.
/// - The bytes go to a temporary file beside the destination, are synced to disk and renamed
///   into place. On any failure or cancellation the temporary file is removed and the
///   destination is untouched: nothing partial is ever left under its name.
/// - An existing file is replaced only when the option `overwrite` is `true`; otherwise
///   `DEFENDER_STATUS_EXISTS`, checked before any request is made.
/// - No `Authorization` header goes to the download host; the link never appears in messages.
/// - A body shorter or longer than its `Content-Length`, one that fails its `Content-MD5`, or one
///   that is not a ZIP gives `DEFENDER_STATUS_INTEGRITY`.
/// - Memory stays flat whatever the package size.
/// - `progress` (may be NULL) is called on this thread with `user_data`; see
///   `DefenderProgressCallback`.
/// - `result_json_out` (may be NULL) receives
///   `{"path": "...", "bytes": N, "sha256": "<hex>", "action_id": "...", "elapsed_ms": N}`,
///   to be freed with `defender_string_free`. `path` is absolute.
///
/// Blocks until done. Returns `DEFENDER_STATUS_OK`, the statuses of `defender_get_package_uri`,
/// or `DEFENDER_STATUS_EXISTS`, `DEFENDER_STATUS_IO`, `DEFENDER_STATUS_INTEGRITY`,
/// `DEFENDER_STATUS_CANCELLED`.
///
/// # Safety
/// `client` is NULL or live; `action_id` and `destination` are NULL or NUL-terminated;
/// `progress` is NULL or callable with `user_data`; `result_json_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_download_package(
    client: *const DefenderClient,
    action_id: *const c_char,
    destination: *const c_char,
    progress: DefenderProgressCallback,
    user_data: *mut c_void,
    result_json_out: *mut *mut c_char,
) -> DefenderStatus {
    boundary("defender_download_package", || {
        let client = unsafe { client_ref(client) }?;
        let action_id = unsafe { required_str(action_id, "action_id") }?.to_owned();
        let destination = unsafe { required_str(destination, "destination") }?.to_owned();
        // SAFETY: the caller vouches that `progress` may be called with `user_data` on this thread.
        let mut report = progress
            .map(|progress| move |_item: usize, done: u64, total: u64| unsafe { progress(user_data, done, total) } != 0);
        let progress = report.as_mut().map(|report| report as ProgressFn<'_>);
        let downloaded = client.run("defender_download_package", progress, |session, reporter| async move {
            let api = Api { session: &session, reporter: &reporter };
            crate::download::download_package(api, &action_id, &destination).await
        })?;
        unsafe { write_string(result_json_out, downloaded.to_json().to_string()) }
    })
}
