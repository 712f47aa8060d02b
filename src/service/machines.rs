//! Devices: one by id or by computer name, and lists of them.

use std::cmp::Reverse;

use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::entity::Entity;
use super::lists::{self, Collection};
use super::{Api, Operation, Request, check_id};
use crate::error::{DefenderStatus, Error, Result};
use crate::runtime::DefenderLogLevel;

pub(crate) const MACHINES: Collection =
    Collection { segment: "machines", endpoint: Operation::ListMachines, entities: "machines" };

/// A device id: 40 hexadecimal characters.
pub(crate) fn is_machine_id(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// An OData string literal: `text` in single quotes, each quote in it doubled, so no value can
/// end the literal and change the filter.
pub(crate) fn odata_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The fields of a Machine the library reads; serde skips the others as it reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MachineFields {
    pub id: Option<String>,
    /// ISO 8601: of several devices with one name, the one seen last is chosen.
    pub last_seen: Option<String>,
}

/// `GET /api/machines`, every page: the devices as the service sent them.
pub(crate) async fn list(api: Api<'_>, filter: Option<&str>, max_items: u32) -> Result<Vec<Entity<IgnoredAny>>> {
    lists::list(api, &MACHINES, filter, max_items).await
}

/// The device with id `id_or_name` (`GET /api/machines/{id}`), or the one named so
/// (`computerDnsName eq '<name>'`; when none is, and the name has no dot, the one whose name
/// starts with `<name>.`, so that a host name finds its fully qualified device). Several devices
/// with that name (re-imaged machines keep their old records): the one seen last, with a warning
/// naming the others.
pub(crate) async fn get(api: Api<'_>, id_or_name: &str) -> Result<Entity<MachineFields>> {
    if is_machine_id(id_or_name) {
        return by_id(api, id_or_name).await;
    }
    check_id("machine name", id_or_name)?;
    let name = id_or_name;
    let named = |filter: String| async move { lists::list::<MachineFields>(api, &MACHINES, Some(&filter), 0).await };
    let mut found = named(format!("computerDnsName eq {}", odata_string(name))).await?;
    if found.is_empty() && !name.contains('.') {
        found = named(format!("startswith(computerDnsName, {})", odata_string(&format!("{name}.")))).await?;
    }
    let last_seen = |machine: &Entity<MachineFields>| machine.fields.last_seen.clone().unwrap_or_default();
    // ISO 8601 timestamps in one format sort as text.
    found.sort_by_key(|machine| Reverse(last_seen(machine)));
    let mut found = found.into_iter();
    let Some(chosen) = found.next() else {
        return Err(Error::new(DefenderStatus::NotFound, format!("there is no machine named '{name}'")));
    };
    let id = |machine: &Entity<MachineFields>| machine.fields.id.clone().unwrap_or_else(|| "?".to_owned());
    let others: Vec<String> =
        found.map(|machine| format!("{} (last seen {})", id(&machine), last_seen(&machine))).collect();
    if !others.is_empty() {
        api.reporter.log(
            DefenderLogLevel::Warn,
            format!(
                "{} machines are named '{name}' (re-imaged devices keep their old records): using {}, the one seen last ({}); not {}",
                others.len() + 1,
                id(&chosen),
                last_seen(&chosen),
                others.join(", ")
            ),
        );
    }
    Ok(chosen)
}

async fn by_id(api: Api<'_>, machine_id: &str) -> Result<Entity<MachineFields>> {
    let what = format!("looking up machine {machine_id}");
    let url = api.url(&["machines", machine_id], &[])?;
    let response = api.send(Request::get(Operation::Machine, url, &what)).await?;
    if response.status == StatusCode::NOT_FOUND {
        return Err(Error::new(DefenderStatus::NotFound, format!("there is no machine {machine_id}")));
    }
    response.success(&what)?.entity(&what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_in_a_value_are_doubled() {
        assert_eq!(odata_string("O'Brien-PC"), "'O''Brien-PC'");
        assert_eq!(odata_string("x' or healthStatus eq 'Active"), "'x'' or healthStatus eq ''Active'");
    }

    #[test]
    fn machine_ids_are_40_hex_characters() {
        assert!(is_machine_id("1e5bc9d7e413ddd7902c2932e418702b84d0cc07"));
        assert!(!is_machine_id("ws-0001.contoso.test"));
        assert!(!is_machine_id("1e5bc9d7e413ddd7902c2932e418702b84d0cc0"));
    }
}
