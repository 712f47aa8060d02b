//! Machine actions: starting a collection, looking one up, waiting for it.
//!
//! Each returns the service's MachineAction object as JSON, as it came (every field optional):
//! `id`, `type`, `status` (Pending, InProgress, Succeeded, Failed, TimeOut, Cancelled),
//! `machineId`, `computerDnsName`, `requestor`, `requestorComment`, `creationDateTimeUtc`,
//! `lastUpdateDateTimeUtc`, `errorHResult`, ...
//!
//! Like every API call of the library, their requests keep within the service's rate limits
//! (unless the option `rate_limit` is `off`), wait out a 429's `Retry-After`, and retry reads
//! after network errors and 5xx answers; see docs/limits-and-retries.md.

use std::ffi::c_char;

use super::client::{DefenderClient, client_ref};
use super::{boundary, optional_str, required_out, required_str, write_string};
use crate::error::DefenderStatus;
use crate::service::{Api, entity, machine_actions};

/// Looks up machine action `action_id` (`GET /api/machineactions/{id}`) into
/// `*action_json_out`, to be freed with `defender_string_free`.
///
/// Blocks until done (also while the rate limit holds the call). Returns `DEFENDER_STATUS_OK`,
/// `DEFENDER_STATUS_NOT_FOUND`, or the request statuses (`UNAUTHORIZED`, `FORBIDDEN`,
/// `RATE_LIMITED` (still 429 after the retries), `HTTP`, `NETWORK`, `TIMEOUT`, `PROTOCOL`,
/// `CANCELLED`, `INVALID_ARGUMENT`).
///
/// # Safety
/// `client` is NULL or live; `action_id` is NULL or NUL-terminated; `action_json_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_get_machine_action(
    client: *const DefenderClient,
    action_id: *const c_char,
    action_json_out: *mut *mut c_char,
) -> DefenderStatus {
    boundary("defender_get_machine_action", || {
        let client = unsafe { client_ref(client) }?;
        let action_id = unsafe { required_str(action_id, "action_id") }?.to_owned();
        required_out(action_json_out, "action_json_out")?;
        let action = client.run("defender_get_machine_action", None, |session, reporter| async move {
            machine_actions::get(Api { session: &session, reporter: &reporter }, &action_id).await
        })?;
        unsafe { write_string(action_json_out, action.into_json()) }
    })
}

/// Starts collecting an investigation package on machine `machine_id`
/// (`POST /api/machines/{id}/collectInvestigationPackage`) and returns the new machine action
/// into `*action_json_out` (free it with `defender_string_free`); its `id` is what
/// `defender_wait_for_action` and `defender_download_package` take.
///
/// `comment` is recorded with the action (the API requires one; NULL gives a default). When a
/// collection is already running on that machine, that action is returned instead of an error:
/// it yields the same package.
///
/// The request is never repeated blindly, since a repeat could start a second collection. When
/// its outcome is unknown (a 5xx, a timeout, a connection lost after sending), the machine's
/// running collection is looked up: that one is returned if there is one, and the request is
/// sent again only when none is running (then the service itself refuses a second one).
///
/// Blocks until done. Returns `DEFENDER_STATUS_OK`, `DEFENDER_STATUS_NOT_FOUND` (no such
/// machine), or the request statuses.
///
/// # Safety
/// `client` is NULL or live; `machine_id` and `comment` are NULL or NUL-terminated;
/// `action_json_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_collect_investigation_package(
    client: *const DefenderClient,
    machine_id: *const c_char,
    comment: *const c_char,
    action_json_out: *mut *mut c_char,
) -> DefenderStatus {
    boundary("defender_collect_investigation_package", || {
        let client = unsafe { client_ref(client) }?;
        let machine_id = unsafe { required_str(machine_id, "machine_id") }?.to_owned();
        let comment =
            unsafe { optional_str(comment, "comment") }?.unwrap_or(machine_actions::DEFAULT_COMMENT).to_owned();
        required_out(action_json_out, "action_json_out")?;
        let action = client.run("defender_collect_investigation_package", None, |session, reporter| async move {
            machine_actions::collect(Api { session: &session, reporter: &reporter }, &machine_id, &comment).await
        })?;
        unsafe { write_string(action_json_out, action.into_json()) }
    })
}

/// Waits for machine action `action_id` to finish and returns it, Succeeded, into
/// `*action_json_out` (free it with `defender_string_free`).
///
/// Polls with back-off (5 s growing to 60 s, divided by the option `clock_scale`). Returns at
/// once when the action has Succeeded; when it ends Failed, TimeOut or Cancelled, returns
/// `DEFENDER_STATUS_ACTION_FAILED` at once. An id the API does not know is
/// `DEFENDER_STATUS_NOT_FOUND` at once, unless this process started that collection in the last
/// 30 s (a new action can be briefly unknown): that 404 is waited out. Gives up with `DEFENDER_STATUS_TIMEOUT` after the option
/// `wait_timeout_ms` (default: one hour), with a last look at that moment; waits for the rate
/// limit or a retry never reach past it. `defender_client_cancel` stops it promptly.
///
/// Blocks until done. Returns `DEFENDER_STATUS_OK`, `DEFENDER_STATUS_ACTION_FAILED`,
/// `DEFENDER_STATUS_NOT_FOUND`, `DEFENDER_STATUS_TIMEOUT`, `DEFENDER_STATUS_CANCELLED`, or the
/// request statuses.
///
/// # Safety
/// `client` is NULL or live; `action_id` is NULL or NUL-terminated; `action_json_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_wait_for_action(
    client: *const DefenderClient,
    action_id: *const c_char,
    action_json_out: *mut *mut c_char,
) -> DefenderStatus {
    boundary("defender_wait_for_action", || {
        let client = unsafe { client_ref(client) }?;
        let action_id = unsafe { required_str(action_id, "action_id") }?.to_owned();
        required_out(action_json_out, "action_json_out")?;
        let action = client.run("defender_wait_for_action", None, |session, reporter| async move {
            machine_actions::wait(Api { session: &session, reporter: &reporter }, &action_id).await
        })?;
        unsafe { write_string(action_json_out, action.into_json()) }
    })
}

/// Lists machine actions (`GET /api/machineactions`), newest first, into `*actions_json_out`:
/// one JSON array of the service's MachineAction objects, each exactly as the service sent it
/// (free it with `defender_string_free`).
///
/// `odata_filter` is passed verbatim as `$filter` (NULL: every action), for instance
/// `type eq 'CollectInvestigationPackage' and status eq 'Succeeded' and creationDateTimeUtc ge 2024-05-01T00:00:00Z`;
/// the service filters on `id`, `status`, `machineId`, `type`, `requestor` and
/// `creationDateTimeUtc`. Quote values that come from users, doubling each quote in them. Every
/// page is followed (`@odata.nextLink`, only to the API host; up to 10000 actions a page);
/// `max_items` above 0 stops after that many. A list has limits, each passed with a message that
/// names the option that raises it: with `max_items` 0, more than the option `list_max_items`
/// (100000) actions is `DEFENDER_STATUS_PROTOCOL`, as are more than `list_max_pages` (1000)
/// pages and a page with more actions than were asked for; the option `list_timeout_ms` (30
/// minutes) bounds the call (`DEFENDER_STATUS_TIMEOUT`).
///
/// Blocks until done. Returns `DEFENDER_STATUS_OK` or the request statuses (a filter the service
/// does not support: `DEFENDER_STATUS_HTTP`, 400, with its message).
///
/// # Safety
/// `client` is NULL or live; `odata_filter` is NULL or NUL-terminated; `actions_json_out` is NULL
/// or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_list_machine_actions(
    client: *const DefenderClient,
    odata_filter: *const c_char,
    max_items: u32,
    actions_json_out: *mut *mut c_char,
) -> DefenderStatus {
    boundary("defender_list_machine_actions", || {
        let client = unsafe { client_ref(client) }?;
        let filter = unsafe { optional_str(odata_filter, "odata_filter") }?.map(str::to_owned);
        required_out(actions_json_out, "actions_json_out")?;
        let actions = client.run("defender_list_machine_actions", None, |session, reporter| async move {
            machine_actions::list(Api { session: &session, reporter: &reporter }, filter.as_deref(), max_items).await
        })?;
        unsafe { write_string(actions_json_out, entity::json_array(&actions)) }
    })
}

/// Cancels machine action `action_id` (`POST /api/machineactions/{id}/cancel`) and returns it
/// after the cancellation into `*action_json_out` (free it with `defender_string_free`).
///
/// `comment` is recorded with the cancellation (the API requires one; NULL gives a default).
/// Only an action that has not ended (Pending, InProgress) can be cancelled: for one in a final
/// state the service answers 400, returned as `DEFENDER_STATUS_HTTP` with the service's message.
/// The request is not repeated after a reply that may have been lost.
///
/// Blocks until done. Returns `DEFENDER_STATUS_OK`, `DEFENDER_STATUS_NOT_FOUND`,
/// `DEFENDER_STATUS_HTTP`, or the request statuses.
///
/// # Safety
/// `client` is NULL or live; `action_id` and `comment` are NULL or NUL-terminated;
/// `action_json_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_cancel_machine_action(
    client: *const DefenderClient,
    action_id: *const c_char,
    comment: *const c_char,
    action_json_out: *mut *mut c_char,
) -> DefenderStatus {
    boundary("defender_cancel_machine_action", || {
        let client = unsafe { client_ref(client) }?;
        let action_id = unsafe { required_str(action_id, "action_id") }?.to_owned();
        let comment =
            unsafe { optional_str(comment, "comment") }?.unwrap_or(machine_actions::DEFAULT_CANCEL_COMMENT).to_owned();
        required_out(action_json_out, "action_json_out")?;
        let action = client.run("defender_cancel_machine_action", None, |session, reporter| async move {
            machine_actions::cancel(Api { session: &session, reporter: &reporter }, &action_id, &comment).await
        })?;
        unsafe { write_string(action_json_out, action.into_json()) }
    })
}
