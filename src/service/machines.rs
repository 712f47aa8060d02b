//! Devices: one by id or by computer name, and lists of them.

use std::cmp::Reverse;

use reqwest::StatusCode;

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

/// `GET /api/machines`, every page.
pub(crate) async fn list(api: Api<'_>, filter: Option<&str>, max_items: u32) -> Result<Vec<serde_json::Value>> {
    lists::list(api, &MACHINES, filter, max_items).await
}

/// The device with id `id_or_name` (`GET /api/machines/{id}`), or the one named so
/// (`computerDnsName eq '<name>'`; when none is, and the name has no dot, the one whose name
/// starts with `<name>.`, so that a host name finds its fully qualified device). Several devices
/// with that name (re-imaged machines keep their old records): the one seen last, with a warning
/// naming the others.
pub(crate) async fn get(api: Api<'_>, id_or_name: &str) -> Result<serde_json::Value> {
    if is_machine_id(id_or_name) {
        return by_id(api, id_or_name).await;
    }
    check_id("machine name", id_or_name)?;
    let name = id_or_name;
    let mut found = list(api, Some(&format!("computerDnsName eq {}", odata_string(name))), 0).await?;
    if found.is_empty() && !name.contains('.') {
        let prefix = odata_string(&format!("{name}."));
        found = list(api, Some(&format!("startswith(computerDnsName, {prefix})")), 0).await?;
    }
    let last_seen = |machine: &serde_json::Value| machine["lastSeen"].as_str().unwrap_or_default().to_owned();
    // ISO 8601 timestamps in one format sort as text.
    found.sort_by_key(|machine| Reverse(last_seen(machine)));
    let mut found = found.into_iter();
    let Some(chosen) = found.next() else {
        return Err(Error::new(DefenderStatus::NotFound, format!("there is no machine named '{name}'")));
    };
    let others: Vec<String> = found
        .map(|machine| format!("{} (last seen {})", machine["id"].as_str().unwrap_or("?"), last_seen(&machine)))
        .collect();
    if !others.is_empty() {
        api.reporter.log(
            DefenderLogLevel::Warn,
            format!(
                "{} machines are named '{name}' (re-imaged devices keep their old records): using {}, the one seen last ({}); not {}",
                others.len() + 1,
                chosen["id"].as_str().unwrap_or("?"),
                last_seen(&chosen),
                others.join(", ")
            ),
        );
    }
    Ok(chosen)
}

async fn by_id(api: Api<'_>, machine_id: &str) -> Result<serde_json::Value> {
    let what = format!("looking up machine {machine_id}");
    let url = api.url(&["machines", machine_id], &[])?;
    let response = api.send(Request::get(Operation::Machine, url, &what)).await?;
    if response.status == StatusCode::NOT_FOUND {
        return Err(Error::new(DefenderStatus::NotFound, format!("there is no machine {machine_id}")));
    }
    response.success(&what)?.json(&what)
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
