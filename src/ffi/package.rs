//! The core of the ABI: the package's download link, the package itself, and many packages at once.

use std::ffi::{CString, c_char, c_void};

use super::client::{DefenderClient, client_ref};
use super::{boundary, required_out, required_str, write_string};
use crate::error::{DefenderStatus, Error, Result};
use crate::runtime::{Callbacks, ItemDoneFn, ProgressFn};
use crate::service::{Api, machine_actions};

/// Reports download progress. Return non-zero to cancel the download (the call then returns
/// `DEFENDER_STATUS_CANCELLED` and leaves no file); the callback is not called again after that,
/// nor after `defender_client_cancel`.
///
/// `bytes_total` is 0 while the size is unknown. Called as bytes arrive (at most about ten times a
/// second) and once at the end with `bytes_done == bytes_total`.
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
            let deadline = machine_actions::link_deadline(&session.settings);
            let (link, ()) = machine_actions::package_link(api, &action_id, deadline, async { Ok(()) }).await?;
            Ok(String::from(link))
        })?;
        unsafe { write_string(uri_out, link) }
    })
}

/// Downloads the investigation package of machine action `action_id` to `destination`: gets a
/// fresh link and streams the package to disk at once. Temporary file, retries and resume,
/// expired links, checks and the no-replace rename: see "Downloads" at the top of this header.
///
/// - `destination` is a file path; when it names an existing folder, the file inside it is named
///   by the option `file_name_pattern` (default `<action_id>.zip`; a pattern with the device's
///   name or id looks the action up first). An existing file is replaced only when the option
///   `overwrite` is `true`. With `wait_timeout_ms` above 0, first waits for the collection to
///   finish.
/// - `progress` (may be NULL) is called on this thread with `user_data`; see
///   `DefenderProgressCallback`. After a restart from the start, `bytes_done` starts again from 0;
///   a download resumed from what an earlier call left starts from the bytes kept.
/// - `result_json_out` (may be NULL) receives
///   `{"action_id": "...", "machine_id": "...", "computer_dns_name": "...", "path": "...", "bytes": N, "resumed_from": N, "sha256": "<hex>", "elapsed_ms": N}`,
///   to be freed with `defender_string_free`. `path` is absolute; `sha256` is lowercase hex (of
///   the whole file); `resumed_from` is the number of bytes an earlier call for the same
///   destination left (a process killed mid-download) that this one kept and completed, 0 when
///   it downloaded from byte 0; `machine_id` and `computer_dns_name` (the device) are there only
///   when the call looked the action up: it waited for it, or `file_name_pattern` names the file
///   after the device.
///
/// Blocks until done. Returns:
/// - `DEFENDER_STATUS_OK`;
/// - the statuses of `defender_get_package_uri`, which also say why a transfer failed after its
///   retries (`DEFENDER_STATUS_NETWORK`, `DEFENDER_STATUS_TIMEOUT`, `DEFENDER_STATUS_HTTP`,
///   `DEFENDER_STATUS_FORBIDDEN`, `DEFENDER_STATUS_NOT_FOUND`, `DEFENDER_STATUS_PROTOCOL`);
/// - `DEFENDER_STATUS_EXISTS`: the destination exists and `overwrite` is not `true` (also when
///   another call for the same destination saved it while this one waited for it);
/// - `DEFENDER_STATUS_TIMEOUT` also when another call is downloading to the same destination and
///   does not finish within `wait_timeout_ms` (at once when it is 0);
/// - `DEFENDER_STATUS_IO`: the local file system failed (creating, writing or moving the file);
/// - `DEFENDER_STATUS_INTEGRITY`: the package failed its checks;
/// - `DEFENDER_STATUS_CANCELLED`: `progress` returned non-zero or `defender_client_cancel` was
///   called; no file is left.
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
        let mut report = progress.map(|progress| {
            move |_item: usize, done: u64, total: u64| unsafe { progress(user_data, done, total) } != 0
        });
        let progress = report.as_mut().map(|report| report as ProgressFn<'_>);
        let downloaded = client.run("defender_download_package", progress, |session, reporter| async move {
            let api = Api { session: &session, reporter: &reporter };
            crate::download::download_package(api, &action_id, &destination).await
        })?;
        unsafe { write_string(result_json_out, crate::download::to_json(&downloaded)) }
    })
}

/// Reports the progress of one item of `defender_download_packages`. Return non-zero to cancel
/// the whole batch (it then returns `DEFENDER_STATUS_CANCELLED`); the callback is not called
/// again after that, nor after `defender_client_cancel`.
///
/// `index` is the item's position in `action_ids`; `bytes_total` is 0 while its size is unknown.
/// Called as bytes arrive (at most about ten times a second per item) and once at the end of
/// each item that succeeds, with `bytes_done == bytes_total`. Items run concurrently, so calls
/// for different items interleave.
pub type DefenderBatchProgressCallback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, index: usize, bytes_done: u64, bytes_total: u64) -> i32>;

/// Tells that one item of `defender_download_packages` is finished, as soon as it is: `index` is
/// its position in `action_ids`, `status` its outcome, and `item_json` its result (the same
/// object as in the batch's results; see `defender_download_packages`), NUL-terminated UTF-8.
///
/// Called exactly once per item that finishes (not for items a cancellation stopped), in the
/// order they finish.
pub type DefenderBatchItemCallback = Option<
    unsafe extern "C" fn(user_data: *mut c_void, index: usize, status: DefenderStatus, item_json: *const c_char),
>;

/// Runs `call` with a batch call's `progress` and `item_done` (each may be NULL) as its
/// `Callbacks` (`defender_download_packages`, `defender_get_files`).
///
/// # Safety
/// Both callbacks, when not NULL, may be called with `user_data` on this thread.
pub(super) unsafe fn with_batch_callbacks<T>(
    progress: DefenderBatchProgressCallback,
    item_done: DefenderBatchItemCallback,
    user_data: *mut c_void,
    call: impl FnOnce(Callbacks<'_>) -> T,
) -> T {
    let mut report = progress.map(|progress| {
        // SAFETY: as the function's caller vouched.
        move |index: usize, done: u64, total: u64| unsafe { progress(user_data, index, done, total) } != 0
    });
    let mut tell = item_done.map(|item_done| {
        move |index: usize, status: DefenderStatus, json: &str| {
            let json = CString::new(json).unwrap_or_default();
            // SAFETY: as the function's caller vouched.
            unsafe { item_done(user_data, index, status, json.as_ptr()) }
        }
    });
    call(Callbacks {
        progress: report.as_mut().map(|report| report as ProgressFn<'_>),
        item_done: tell.as_mut().map(|tell| tell as ItemDoneFn<'_>),
        ..Callbacks::default()
    })
}

/// Downloads the investigation packages of the `count` machine actions in `action_ids` into
/// `destination_folder`, several at once, each under the name the option `file_name_pattern`
/// gives it (default `<action_id>.zip`).
///
/// - Each item is what `defender_download_package` does for its id with the folder as
///   destination ("Downloads" at the top of this header), with the same `overwrite` and
///   `wait_timeout_ms` options. The link requests of all items go through the
///   client's rate limiter, so a large batch runs at the pace the service allows, without 429s.
/// - Up to the option `max_concurrent_downloads` (default 4) items get their link and download at
///   once. Waiting for collections to finish (`wait_timeout_ms`) takes no such slot: every item
///   waits at the same time, and a package that is ready never queues behind one still coming.
/// - One item's failure does not stop the others. An id given twice is downloaded once; its
///   repeat gets `DEFENDER_STATUS_INVALID_ARGUMENT`.
/// - `progress` and `item_done` (each may be NULL) are called on this thread with `user_data`;
///   see `DefenderBatchProgressCallback` and `DefenderBatchItemCallback`.
/// - `results_json_out` (may be NULL) receives a JSON array with one object per item, in the
///   order of `action_ids`, to be freed with `defender_string_free`:
///   `{"status": "OK", "code": 0, "action_id": "...", "path": "...", "bytes": N, "resumed_from": N, "sha256": "<hex>", "elapsed_ms": N}`
///   for a package saved (`path` absolute; the rest, with `machine_id` and `computer_dns_name`
///   when known, is `defender_download_package`'s result), and
///   `{"status": "NOT_READY", "code": 2, "action_id": "...", "message": "...", "elapsed_ms": N}`
///   for one that failed: `status` is the name of its `DefenderStatus` without the
///   `DEFENDER_STATUS_` prefix, `code` its number, `message` what `defender_last_error_message`
///   would have said. No message holds a secret.
///
/// Blocks until every item is done. Returns:
/// - `DEFENDER_STATUS_OK` when the batch ran, whatever its items' outcomes (read them in the
///   results or the `item_done` calls); `count` 0 gives an empty array;
/// - `DEFENDER_STATUS_INVALID_ARGUMENT`: a NULL client or folder, `action_ids` NULL while `count`
///   is above 0, an id that is NULL or not UTF-8, a folder that is not a folder, or a call from
///   inside a callback;
/// - `DEFENDER_STATUS_IO`: `destination_folder` does not exist;
/// - `DEFENDER_STATUS_CANCELLED`: the progress callback returned non-zero or
///   `defender_client_cancel` was called. Items still running stop and leave no file; packages
///   already saved (reported through `item_done`) stay. `results_json_out` is not written.
///
/// # Safety
/// `client` is NULL or live; `action_ids` is NULL or points to `count` pointers, each NULL or
/// NUL-terminated; `destination_folder` is NULL or NUL-terminated; `progress` and `item_done`
/// are NULL or callable with `user_data`; `results_json_out` is NULL or writable.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)] // the C signature: one call, no struct to fill
pub unsafe extern "C" fn defender_download_packages(
    client: *const DefenderClient,
    action_ids: *const *const c_char,
    count: usize,
    destination_folder: *const c_char,
    progress: DefenderBatchProgressCallback,
    item_done: DefenderBatchItemCallback,
    user_data: *mut c_void,
    results_json_out: *mut *mut c_char,
) -> DefenderStatus {
    boundary("defender_download_packages", || {
        let client = unsafe { client_ref(client) }?;
        let ids: &[*const c_char] = match (action_ids.is_null(), count) {
            (_, 0) => &[],
            (true, _) => return Err(Error::invalid_argument(format!("action_ids is NULL but count is {count}"))),
            // SAFETY: the caller vouches for `count` readable pointers.
            (false, _) => unsafe { std::slice::from_raw_parts(action_ids, count) },
        };
        let ids = ids
            .iter()
            .enumerate()
            .map(|(index, &id)| unsafe { required_str(id, &format!("action_ids[{index}]")) }.map(str::to_owned))
            .collect::<Result<Vec<String>>>()?;
        let folder = unsafe { required_str(destination_folder, "destination_folder") }?.to_owned();

        // SAFETY: the caller vouches that both callbacks may be called with `user_data` on this thread.
        let results = unsafe {
            with_batch_callbacks(progress, item_done, user_data, |callbacks| {
                client.run_with("defender_download_packages", callbacks, |session, reporter| async move {
                    let api = Api { session: &session, reporter: &reporter };
                    crate::download::batch::download_packages(api, &ids, &folder).await
                })
            })
        }?;
        unsafe { write_string(results_json_out, crate::download::to_json(&results)) }
    })
}
