//! Many packages at once: each item is what `download_package` does for it, into `folder` under
//! the name `file_name_pattern` gives it (`<action_id>.zip` by default), with up to `max_concurrent_downloads` running together. Their
//! link requests queue in the rate limiter like any others; one item's failure is its own.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};
use tokio::sync::Semaphore;

use super::{Downloaded, download_item, millis, to_json};
use crate::error::{DefenderStatus, Error, Result};
use crate::runtime::{self, DefenderLogLevel};
use crate::service::Api;

/// Downloads the package of every action in `action_ids` into `folder` and returns one result
/// per item, in input order (see `download_one`). Each item's result also goes to the caller as
/// soon as that item is done, and its progress as item `index`.
pub(crate) async fn download_packages(api: Api<'_>, action_ids: &[String], folder: &str) -> Result<Vec<ItemResult>> {
    check_folder(folder)?;
    let at_once = api.session.settings.max_concurrent_downloads;
    api.reporter.log(
        DefenderLogLevel::Info,
        format!("downloading {} to '{folder}', up to {at_once} at once", packages(action_ids.len())),
    );
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    // Collected first: a lazy iterator's closure would make the future's lifetimes too general for `Send`.
    // Every item runs from the start (waiting for its collection, when asked to); the slots
    // bound only the links and transfers.
    let slots = Semaphore::new(at_once);
    let items: Vec<_> = action_ids
        .iter()
        .enumerate()
        .map(|(index, action_id)| {
            let first = *first_index.entry(action_id.as_str()).or_insert(index);
            download_one(api, index, action_id, folder, (first != index).then_some(first), &slots)
        })
        .collect();
    let results: Vec<ItemResult> = futures_util::future::join_all(items).await;

    let saved = results.iter().filter(|result| result.status == DefenderStatus::Ok).count();
    api.reporter.log(DefenderLogLevel::Info, format!("downloaded {saved} of {}", packages(action_ids.len())));
    Ok(results)
}

/// "1 package", "3 packages".
fn packages(count: usize) -> String {
    format!("{count} package{}", if count == 1 { "" } else { "s" })
}

/// One item's result, in the batch's results and in its `item_done` call: its status by name and
/// number, then the package saved (`Downloaded`) or why not (`Failed`).
#[derive(Debug, Serialize)]
pub(crate) struct ItemResult {
    /// The name of the item's `DefenderStatus` without the `DEFENDER_STATUS_` prefix.
    #[serde(serialize_with = "status_name")]
    status: DefenderStatus,
    /// Its number.
    code: i32,
    #[serde(flatten)]
    outcome: ItemOutcome,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum ItemOutcome {
    Saved(Downloaded),
    Failed(Failed),
}

/// Why an item was not saved: `{"action_id", "message", "elapsed_ms"}`.
#[derive(Debug, Serialize)]
struct Failed {
    action_id: String,
    /// What `defender_last_error_message` would have said; already fit for the caller
    /// (`Reporter::scrub`).
    message: String,
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    elapsed: Duration,
}

impl ItemResult {
    fn saved(downloaded: Downloaded) -> Self {
        Self::new(DefenderStatus::Ok, ItemOutcome::Saved(downloaded))
    }

    /// A failed item's result; `message` is already fit for the caller (`Reporter::scrub`).
    pub(crate) fn failed(action_id: &str, status: DefenderStatus, message: String, elapsed: Duration) -> Self {
        Self::new(status, ItemOutcome::Failed(Failed { action_id: action_id.to_owned(), message, elapsed }))
    }

    fn new(status: DefenderStatus, outcome: ItemOutcome) -> Self {
        Self { status, code: status as i32, outcome }
    }
}

pub(super) fn status_name<S: Serializer>(
    status: &DefenderStatus,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_str(status.name())
}

/// The folder must exist: every item would fail the same way otherwise.
pub(super) fn check_folder(folder: &str) -> Result<()> {
    let path = Path::new(folder);
    if folder.is_empty() {
        Err(Error::invalid_argument("the destination folder is empty"))
    } else if path.is_dir() {
        Ok(())
    } else if path.exists() {
        Err(Error::invalid_argument(format!("'{folder}' is not a folder; give the folder the packages go to")))
    } else {
        Err(Error::new(DefenderStatus::Io, format!("the folder '{folder}' does not exist")))
    }
}

/// One item, from start to result; tells the caller when it is done.
async fn download_one(
    api: Api<'_>,
    index: usize,
    action_id: &str,
    folder: &str,
    repeated: Option<usize>,
    slots: &Semaphore,
) -> ItemResult {
    let started = Instant::now();
    let outcome = match repeated {
        Some(first) => Err(Error::invalid_argument(format!(
            "action id {action_id} is already item {first} of this batch; it is downloaded once"
        ))),
        None => runtime::as_item(index, download_item(api, action_id, folder, index, Some(slots))).await,
    };
    let result = match outcome {
        Ok(downloaded) => ItemResult::saved(downloaded),
        Err(error) => {
            let message = api.reporter.scrub(error.message());
            // Info, not Warn: the caller hears of this failure as the item's result; a warning
            // would announce it twice.
            api.reporter.log(DefenderLogLevel::Info, format!("item {index} (machine action {action_id}): {message}"));
            ItemResult::failed(action_id, error.status(), message, started.elapsed())
        }
    };
    api.reporter.item_done(index, result.status, to_json(&result));
    result
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::{Downloaded, ItemResult, to_json};
    use crate::error::DefenderStatus;

    fn downloaded() -> Downloaded {
        Downloaded {
            action_id: "a1".into(),
            machine_id: None,
            computer_dns_name: None,
            path: PathBuf::from("/cases/a1.zip"),
            bytes: 42,
            resumed_from: 0,
            sha256: "ab".into(),
            elapsed: Duration::from_micros(1_999),
        }
    }

    /// A saved item is the download's own result after its status: one shape, one key order.
    #[test]
    fn a_saved_item_is_the_download_result_after_its_status() {
        let single = to_json(&downloaded());
        assert_eq!(
            single,
            r#"{"action_id":"a1","path":"/cases/a1.zip","bytes":42,"resumed_from":0,"sha256":"ab","elapsed_ms":1}"#
        );
        let item = to_json(&ItemResult::saved(downloaded()));
        assert_eq!(item, format!(r#"{{"status":"OK","code":0,{}"#, &single[1..]));
    }

    #[test]
    fn a_saved_item_names_its_device_when_the_download_knew_it() {
        let item = to_json(&ItemResult::saved(Downloaded {
            machine_id: Some("5eed01".into()),
            computer_dns_name: Some("ws-0001.contoso.test".into()),
            ..downloaded()
        }));
        assert!(
            item.contains(
                r#""action_id":"a1","machine_id":"5eed01","computer_dns_name":"ws-0001.contoso.test","path""#
            ),
            "{item}"
        );
        assert_eq!(super::packages(1), "1 package");
        assert_eq!(super::packages(2), "2 packages");
    }

    #[test]
    fn a_failed_item_says_why() {
        let item =
            ItemResult::failed("a2", DefenderStatus::NotReady, "still \"running\"".into(), Duration::from_secs(3));
        assert_eq!(
            to_json(&item),
            r#"{"status":"NOT_READY","code":2,"action_id":"a2","message":"still \"running\"","elapsed_ms":3000}"#
        );
    }
}
