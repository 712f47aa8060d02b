//! Devices: one by id or computer name, and lists of them.
//!
//! Each returns the service's Machine objects as JSON, as they came (every field optional):
//! `id`, `computerDnsName`, `firstSeen`, `lastSeen`, `osPlatform`, `osVersion`, `version`,
//! `healthStatus`, `rbacGroupId`, `rbacGroupName`, `riskScore`, `exposureLevel`, `machineTags`,
//! `lastIpAddress`, `onboardingStatus`, ...
//!
//! Their requests count against the service's "other calls" limit (100 a minute, 1500 an hour)
//! in the shared rate limiter, with the same retries as every call; see
//! docs/limits-and-retries.md.

use std::ffi::c_char;

use super::client::{DefenderClient, client_ref};
use super::{boundary, optional_str, required_out, required_str, write_string};
use crate::error::DefenderStatus;
use crate::service::{Api, entity, machines};

/// Looks up one device into `*machine_json_out` (free it with `defender_string_free`).
///
/// `machine_id_or_name` is a device id (40 hexadecimal characters: `GET /api/machines/{id}`) or
/// a computer name (`GET /api/machines?$filter=computerDnsName eq '<name>'`, quotes in the name
/// doubled, so a name cannot change the filter; the service compares ignoring case). When no
/// device has that name and it has no dot, a host name such as `ws-0042` finds the device whose
/// name starts with `ws-0042.` (its fully qualified name).
///
/// Several devices with one name (a re-imaged machine keeps its old record): the one seen most
/// recently (`lastSeen`), with a `DEFENDER_LOG_LEVEL_WARN` log line naming the ids of the others.
///
/// Blocks until done. Returns `DEFENDER_STATUS_OK`, `DEFENDER_STATUS_NOT_FOUND` (no such device),
/// or the request statuses (`UNAUTHORIZED`, `FORBIDDEN`, `RATE_LIMITED`, `HTTP`, `NETWORK`,
/// `TIMEOUT`, `PROTOCOL`, `CANCELLED`, `INVALID_ARGUMENT`).
///
/// # Safety
/// `client` is NULL or live; `machine_id_or_name` is NULL or NUL-terminated; `machine_json_out`
/// is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_get_machine(
    client: *const DefenderClient,
    machine_id_or_name: *const c_char,
    machine_json_out: *mut *mut c_char,
) -> DefenderStatus {
    boundary("defender_get_machine", || {
        let client = unsafe { client_ref(client) }?;
        let id_or_name = unsafe { required_str(machine_id_or_name, "machine_id_or_name") }?.to_owned();
        required_out(machine_json_out, "machine_json_out")?;
        let machine = client.run("defender_get_machine", None, |session, reporter| async move {
            machines::get(Api { session: &session, reporter: &reporter }, &id_or_name).await
        })?;
        unsafe { write_string(machine_json_out, machine.into_json()) }
    })
}

/// Lists devices (`GET /api/machines`) into `*machines_json_out`: one JSON array of the
/// service's Machine objects, each exactly as the service sent it (free it with
/// `defender_string_free`).
///
/// `odata_filter` is passed verbatim as `$filter` (NULL: every device), for instance
/// `machineTags/any(t: t eq 'Incident4711')`, `startswith(computerDnsName, 'srv-')`,
/// `healthStatus eq 'Active' and osPlatform eq 'Windows11'`, `rbacGroupId eq 2`. Values that
/// come from users must be quoted, with each quote in them doubled (`'O''Brien'`); the service
/// refuses a filter it does not support (`DEFENDER_STATUS_HTTP`, 400, with its message).
/// Every page is followed (`@odata.nextLink`, only to the API host; up to 10000 devices a page);
/// `max_items` above 0 stops after that many. The limits of `defender_list_machine_actions`
/// apply (`list_max_items`, `list_max_pages`, `list_timeout_ms`).
///
/// Blocks until done. Returns `DEFENDER_STATUS_OK` or the request statuses; a next-page link to
/// another host, and a list past its limits, is `DEFENDER_STATUS_PROTOCOL`.
///
/// # Safety
/// `client` is NULL or live; `odata_filter` is NULL or NUL-terminated; `machines_json_out` is
/// NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_list_machines(
    client: *const DefenderClient,
    odata_filter: *const c_char,
    max_items: u32,
    machines_json_out: *mut *mut c_char,
) -> DefenderStatus {
    boundary("defender_list_machines", || {
        let client = unsafe { client_ref(client) }?;
        let filter = unsafe { optional_str(odata_filter, "odata_filter") }?.map(str::to_owned);
        required_out(machines_json_out, "machines_json_out")?;
        let found = client.run("defender_list_machines", None, |session, reporter| async move {
            machines::list(Api { session: &session, reporter: &reporter }, filter.as_deref(), max_items).await
        })?;
        unsafe { write_string(machines_json_out, entity::json_array(&found)) }
    })
}
