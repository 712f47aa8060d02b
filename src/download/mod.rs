//! The download engine: a fresh link, streamed straight to a temporary file beside the
//! destination while it is hashed, resumed or restarted when the transfer breaks, checked, then
//! renamed into place.

pub(crate) mod batch;
mod destination;
pub(crate) mod file_name;
mod limits;
pub(crate) mod live_response;
mod lock;
mod sink;
mod transfer;
pub(crate) mod zip_check;

pub(crate) use transfer::parse_content_range;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::{DefenderStatus, Error, Result};
use crate::runtime::{DefenderLogLevel, Phase};
use crate::service::{Api, machine_actions};
use destination::{Leftover, PartFile};
use lock::DestinationLock;
use transfer::Transfer;

/// A package on disk: the JSON `defender_download_package` returns, and the body of a batch
/// item that was saved (`batch::ItemResult`):
/// `{"action_id", "machine_id", "computer_dns_name", "path", "bytes", "resumed_from", "sha256", "elapsed_ms"}`,
/// the device's id and name only when the download looked the action up (it waited for it, or
/// `file_name_pattern` names the file after the device).
#[derive(Debug, Serialize)]
pub(crate) struct Downloaded {
    pub action_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub computer_dns_name: Option<String>,
    #[serde(serialize_with = "lossy_path")]
    pub path: PathBuf,
    pub bytes: u64,
    /// The bytes an earlier, interrupted call for the same destination left and this one kept
    /// (0 when it downloaded from byte 0).
    pub resumed_from: u64,
    pub sha256: String,
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    pub elapsed: Duration,
}

/// A result (`Downloaded`, `batch::ItemResult`, a list of them) as the JSON text the caller
/// gets. They hold only strings and numbers, which always serialize.
pub(crate) fn to_json(result: &impl Serialize) -> String {
    serde_json::to_string(result).expect("results hold only strings and numbers")
}

/// A path as text, whatever its encoding (a non-UTF-8 byte becomes U+FFFD).
fn lossy_path<S: Serializer>(path: &Path, serializer: S) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_str(&path.to_string_lossy())
}

/// A duration as whole milliseconds.
fn millis<S: Serializer>(duration: &Duration, serializer: S) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

/// Gets a fresh link for `action_id`'s package and downloads it to `destination` (a file path,
/// or a folder that then gets the name `file_name_pattern` gives it, `<action_id>.zip` by
/// default). Progress goes to the call's item 0.
pub(crate) async fn download_package(api: Api<'_>, action_id: &str, destination: &str) -> Result<Downloaded> {
    download_item(api, action_id, destination, 0, None).await
}

/// As `download_package`, reporting progress as item `item` of the call. With `slots`, the link
/// and the transfer wait for one of them (a batch's `max_concurrent_downloads`); waiting for the
/// collection does not, so that collections still running hold no download back.
async fn download_item(
    api: Api<'_>,
    action_id: &str,
    destination: &str,
    item: usize,
    slots: Option<&Semaphore>,
) -> Result<Downloaded> {
    let started = Instant::now();
    let settings = &api.session.settings;
    let overwrite = settings.overwrite;
    let deadline = machine_actions::link_deadline(settings);
    let pattern = &settings.file_name_pattern;
    let (path, action) = if pattern.names_the_device() && Path::new(destination).is_dir() {
        // The name needs the device: the action first (waited for, or looked up once).
        let action = match deadline {
            Some(deadline) => machine_actions::wait_until(api, action_id, deadline).await?,
            None => machine_actions::get(api, action_id).await?,
        };
        (destination::resolve(destination, &pattern.file_name(action_id, Some(&action))?, overwrite)?, Some(action))
    } else {
        // Named at once, so that an existing file is refused before any wait.
        let path = destination::resolve(destination, &pattern.file_name(action_id, None)?, overwrite)?;
        let action = match deadline {
            Some(deadline) => Some(machine_actions::wait_until(api, action_id, deadline).await?),
            None => None,
        };
        (path, action)
    };
    let what = format!("downloading the package of machine action {action_id}");
    // One writer per destination: a second call waits here for the first, then goes on as if it
    // came after it.
    let _lock = destination_lock(api, &path, &what).await?;
    if !overwrite && path.exists() {
        return Err(destination::exists(&path));
    }
    // The link is asked for only once a slot is free: it is short-lived, and it goes to work at once.
    let (link, _slot) =
        machine_actions::finished_package_link(api, action_id, deadline, download_slot(api, slots)).await?;
    api.reporter.log(DefenderLogLevel::Info, format!("{what} to '{}'", path.display()));

    let kind = Kind::Package { action_id };
    let (part, received) = transfer(api, &kind, &what, item, link, &path).await?;
    tokio::task::block_in_place(|| part.persist(&path, overwrite))?;
    let device = action.as_ref().map(machine_actions::MachineAction::fields);
    let downloaded = Downloaded {
        action_id: action_id.to_owned(),
        machine_id: device.and_then(|device| device.machine_id.clone()),
        computer_dns_name: device.and_then(|device| device.computer_dns_name.clone()),
        path,
        bytes: received.bytes,
        resumed_from: received.resumed_from,
        sha256: hex::encode(received.sha256),
        elapsed: started.elapsed(),
    };
    api.reporter.log(
        DefenderLogLevel::Info,
        format!("saved {} bytes to '{}' (SHA-256 {})", downloaded.bytes, downloaded.path.display(), downloaded.sha256),
    );
    Ok(downloaded)
}

/// What is downloaded: where its fresh links come from, and what its bytes must be.
pub(crate) enum Kind<'a> {
    /// An investigation package: a ZIP, behind getPackageUri's links.
    Package { action_id: &'a str },
    /// The result of command `index` of a live response session: any file, in Azure Blob
    /// storage behind GetLiveResponseResultDownloadLink's SAS links. A gzip-compressed one is
    /// kept as its bytes came.
    LiveResponseResult { action_id: &'a str, index: u32 },
}

impl Kind<'_> {
    /// A fresh link, when the download host refused the last one (it expired).
    pub(crate) async fn fresh_link(&self, api: Api<'_>) -> Result<url::Url> {
        match *self {
            Kind::Package { action_id } => {
                machine_actions::package_link(api, action_id, None, async { Ok(()) }).await.map(|(link, ())| link)
            }
            Kind::LiveResponseResult { action_id, index } => {
                crate::service::live_response::result_link(api, action_id, index, None).await
            }
        }
    }

    /// The `x-ms-version` a download from Azure Blob storage asks for.
    fn storage_version(&self) -> Option<&'static str> {
        match self {
            Kind::Package { .. } => None,
            Kind::LiveResponseResult { .. } => Some("2023-11-03"),
        }
    }

    /// What an interrupted download's record beside its part file names, so that a later call
    /// resumes only the same thing: the action id, and the command's index for a result.
    fn record_id(&self) -> String {
        match *self {
            Kind::Package { action_id } => action_id.to_owned(),
            Kind::LiveResponseResult { action_id, index } => format!("{action_id}/{index}"),
        }
    }

    /// Whether the bytes must be a readable ZIP.
    fn is_zip(&self) -> bool {
        matches!(self, Kind::Package { .. })
    }
}

/// Streams `link` into the part file beside `path` (going on from what an earlier call left
/// there, when it was downloading the same thing), checks it as `kind` requires and syncs it:
/// the part file, ready to be persisted, and what came.
async fn transfer(
    api: Api<'_>,
    kind: &Kind<'_>,
    what: &str,
    item: usize,
    link: url::Url,
    path: &Path,
) -> Result<(PartFile, transfer::Received)> {
    let (mut part, leftover) = PartFile::open_beside(path, &kind.record_id())?;
    let leftover = match leftover {
        Leftover::Nothing => None,
        Leftover::Resumable { record, bytes } => {
            let line =
                format!("{what}: '{}' holds {bytes} bytes of it from an earlier call; resuming", part.path().display());
            api.reporter.log(DefenderLogLevel::Info, line);
            Some((record, bytes))
        }
        Leftover::Discarded { bytes, why } => {
            let line = format!(
                "{what}: '{}' holds {bytes} bytes from an earlier call that cannot be resumed ({why}); starting over",
                part.path().display()
            );
            api.reporter.log(DefenderLogLevel::Warn, line);
            None
        }
    };
    let transfer = Transfer::new(api, kind, what, item, link).run(&mut part, leftover);
    let received = limits::within_deadline(&api.session.settings, what, transfer).await?;
    // Every byte is in: the transfer's last figures, then the checks.
    api.reporter.item_progress(item, received.bytes, received.bytes, true);
    api.reporter.phase(Phase::Verifying { bytes: received.bytes });
    sync(&part).await.map_err(|err| err.context(what))?;
    Ok((part, received))
}

/// The lock of `path`, waiting for the call that holds it within `wait_timeout_ms` (and saying
/// so in the log).
async fn destination_lock(api: Api<'_>, path: &Path, what: &str) -> Result<DestinationLock> {
    let deadline = machine_actions::link_deadline(&api.session.settings);
    let mut waited = None;
    let lock = DestinationLock::acquire(path, deadline, |waiting| {
        api.reporter.log(
            DefenderLogLevel::Info,
            format!("{what}: '{}' is being downloaded by {}; waiting for it", path.display(), waiting.holder),
        );
        waited = Some(Instant::now());
    })
    .await
    .map_err(|err| {
        let advice = match api.session.settings.wait_timeout {
            Some(limit) => format!("it did not finish in the time allowed (wait_timeout_ms = {})", limit.as_millis()),
            None => "set the option wait_timeout_ms to wait for it".to_owned(),
        };
        let err = match err.status() {
            DefenderStatus::Timeout => Error::new(DefenderStatus::Timeout, format!("{}; {advice}", err.message())),
            _ => err,
        };
        err.context(what)
    })?;
    if let Some(since) = waited {
        let line = format!(
            "{what}: the other call for '{}' is done, after {} ms",
            path.display(),
            since.elapsed().as_millis()
        );
        api.reporter.log(DefenderLogLevel::Info, line);
    }
    Ok(lock)
}

/// One of a batch's `slots`, waited for when none is free; nothing without `slots`.
async fn download_slot<'s>(api: Api<'_>, slots: Option<&'s Semaphore>) -> Result<Option<SemaphorePermit<'s>>> {
    let Some(slots) = slots else { return Ok(None) };
    match slots.try_acquire() {
        Ok(slot) => Ok(Some(slot)),
        Err(_) => {
            api.reporter.phase(Phase::WaitingForDownloadSlot);
            slots.acquire().await.map(Some).map_err(|_| Error::internal("the download slots were closed"))
        }
    }
}

/// Flushes the finished part file to disk, on a blocking thread (this can take seconds for a
/// large package, and other downloads of a batch go on meanwhile). Its bytes were checked as a
/// ZIP archive while they streamed (`zip_check.rs`).
async fn sync(part: &PartFile) -> Result<()> {
    let file = part.duplicate()?;
    let path = part.path().to_owned();
    tokio::task::spawn_blocking(move || {
        file.sync_all().map_err(|err| Error::io(format!("flushing '{}' to disk", path.display()), &err))
    })
    .await
    .map_err(|err| Error::internal(format!("syncing the download failed unexpectedly: {err}")))?
}
