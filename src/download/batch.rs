//! Many packages at once: each item is what `download_package` does for it, into
//! `<folder>/<action_id>.zip`, with up to `max_concurrent_downloads` running together. Their
//! link requests queue in the rate limiter like any others; one item's failure is its own.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::{download_item, millis};
use crate::error::{DefenderStatus, Error, Result};
use crate::runtime::{self, DefenderLogLevel};
use crate::service::Api;

/// Downloads the package of every action in `action_ids` into `folder` and returns one result
/// per item, in input order (see `download_one`). Each item's result also goes to the caller as
/// soon as that item is done, and its progress as item `index`.
pub(crate) async fn download_packages(api: Api<'_>, action_ids: &[String], folder: &str) -> Result<Vec<Value>> {
    check_folder(folder)?;
    let at_once = api.session.settings.max_concurrent_downloads;
    api.reporter.log(
        DefenderLogLevel::Info,
        format!("downloading {} packages to '{folder}', up to {at_once} at once", action_ids.len()),
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
    let results: Vec<(usize, Value)> = futures_util::future::join_all(items).await;

    let saved = results.iter().filter(|(_, result)| result["code"] == 0).count();
    api.reporter.log(DefenderLogLevel::Info, format!("downloaded {saved} of {} packages", action_ids.len()));
    Ok(results.into_iter().map(|(_, result)| result).collect())
}

/// A failed item's result; `message` is already fit for the caller (`Reporter::scrub`).
pub(crate) fn failed_item(action_id: &str, status: DefenderStatus, message: &str, elapsed: Duration) -> Value {
    json!({
        "action_id": action_id,
        "status": status.name(),
        "code": status as i32,
        "message": message,
        "elapsed_ms": millis(elapsed),
    })
}

/// The folder must exist: every item would fail the same way otherwise.
fn check_folder(folder: &str) -> Result<()> {
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
) -> (usize, Value) {
    let started = Instant::now();
    let outcome = match repeated {
        Some(first) => Err(Error::invalid_argument(format!(
            "action id {action_id} is already item {first} of this batch; it is downloaded once"
        ))),
        None => runtime::as_item(index, download_item(api, action_id, folder, index, Some(slots))).await,
    };
    let status = outcome.as_ref().map_or_else(Error::status, |_| DefenderStatus::Ok);
    let result = match outcome {
        Ok(downloaded) => json!({
            "action_id": action_id,
            "status": status.name(),
            "code": status as i32,
            "path": downloaded.path.to_string_lossy(),
            "bytes": downloaded.bytes,
            "sha256": downloaded.sha256,
            "elapsed_ms": millis(downloaded.elapsed),
        }),
        Err(error) => {
            let message = api.reporter.scrub(error.message());
            // Info, not Warn: the caller hears of this failure as the item's result; a warning
            // would announce it twice.
            api.reporter.log(DefenderLogLevel::Info, format!("item {index} (machine action {action_id}): {message}"));
            failed_item(action_id, status, &message, started.elapsed())
        }
    };
    api.reporter.item_done(index, status, result.to_string());
    (index, result)
}
