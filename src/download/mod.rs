//! The download engine: a fresh link, streamed straight to a temporary file beside the
//! destination while it is hashed and checked, then renamed into place.

mod destination;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::StreamExt;
use md5::Md5;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, HeaderMap};
use sha2::{Digest, Sha256};

use crate::error::{DefenderStatus, Error, Result};
use crate::http::describe_transport_error;
use crate::runtime::DefenderLogLevel;
use crate::service::{Api, machine_actions};
use destination::PartFile;

/// Bytes gathered before each write: large enough that the disk sees few large writes, small
/// enough that memory stays flat whatever the package size.
const WRITE_BUFFER: usize = 1024 * 1024;

/// A package on disk.
#[derive(Debug)]
pub struct Downloaded {
    pub action_id: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    pub elapsed: Duration,
}

impl Downloaded {
    /// `{"path", "bytes", "sha256", "action_id", "elapsed_ms"}`, as `defender_download_package` returns it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "path": self.path.to_string_lossy(),
            "bytes": self.bytes,
            "sha256": self.sha256,
            "action_id": self.action_id,
            "elapsed_ms": u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// Gets a fresh link for `action_id`'s package and downloads it to `destination` (a file path,
/// or a folder that then gets `<action_id>.zip`).
pub async fn download_package(api: Api<'_>, action_id: &str, destination: &str) -> Result<Downloaded> {
    let started = Instant::now();
    let overwrite = api.session.settings.overwrite;
    let path = destination::resolve(destination, action_id, overwrite)?;
    let link = machine_actions::package_link(api, action_id).await?;
    let what = format!("downloading the package of machine action {action_id}");
    api.reporter.log(DefenderLogLevel::Info, format!("{what} to '{}'", path.display()));

    // The link carries its own credential (a SAS token): no Authorization header goes with it.
    let response =
        api.session.http.get(link).send().await.map_err(|err| describe_transport_error(&err).context(&what))?;
    let status = response.status();
    if status != StatusCode::OK {
        return Err(download_refused(status).context(&what));
    }
    let expected_length = content_length(response.headers());
    let expected_md5 = content_md5(response.headers()).map_err(|err| err.context(&what))?;

    let mut part = PartFile::create_beside(&path)?;
    let mut sha256 = Sha256::new();
    let mut md5 = expected_md5.map(|_| Md5::new());
    let mut buffer = Vec::with_capacity(WRITE_BUFFER);
    let mut received: u64 = 0;
    let total_for_progress = expected_length.unwrap_or(0);
    api.reporter.item_progress(0, 0, total_for_progress, false);

    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|err| body_error(&err, received, expected_length).context(&what))?;
        received += chunk.len() as u64;
        if expected_length.is_some_and(|expected| received > expected) {
            return Err(Error::integrity(format!(
                "{what}: the body is longer than the {} bytes announced",
                expected_length.unwrap_or_default()
            )));
        }
        buffer.extend_from_slice(&chunk);
        if buffer.len() >= WRITE_BUFFER {
            write_block(&mut part, &buffer, &mut sha256, md5.as_mut())?;
            buffer.clear();
        }
        api.reporter.item_progress(0, received, total_for_progress, false);
    }
    write_block(&mut part, &buffer, &mut sha256, md5.as_mut())?;

    if let Some(expected) = expected_length.filter(|expected| *expected != received) {
        return Err(Error::integrity(format!("{what}: the body ended after {received} of {expected} bytes")));
    }
    if let (Some(expected), Some(md5)) = (expected_md5, md5) {
        if md5.finalize().as_slice() != expected {
            return Err(Error::integrity(format!("{what}: the body does not match its Content-MD5")));
        }
    }
    tokio::task::block_in_place(|| {
        part.sync_and_close()?;
        check_zip(part.path()).map_err(|err| err.context(&what))?;
        part.persist(&path, overwrite)
    })?;
    api.reporter.item_progress(0, received, received, true);
    let downloaded = Downloaded {
        action_id: action_id.to_owned(),
        path,
        bytes: received,
        sha256: hex::encode(sha256.finalize()),
        elapsed: started.elapsed(),
    };
    api.reporter.log(
        DefenderLogLevel::Info,
        format!("saved {} bytes to '{}' (SHA-256 {})", downloaded.bytes, downloaded.path.display(), downloaded.sha256),
    );
    Ok(downloaded)
}

/// Hashes and writes one block. The write may block on the disk, so it runs where blocking is allowed.
fn write_block(part: &mut PartFile, block: &[u8], sha256: &mut Sha256, md5: Option<&mut Md5>) -> Result<()> {
    tokio::task::block_in_place(|| {
        sha256.update(block);
        if let Some(md5) = md5 {
            md5.update(block);
        }
        part.write_all(block)
    })
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// The `Content-MD5` header (base64 of the 16-byte digest), when the server sends one.
fn content_md5(headers: &HeaderMap) -> Result<Option<[u8; 16]>> {
    let Some(value) = headers.get("content-md5") else { return Ok(None) };
    let digest = value
        .to_str()
        .ok()
        .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text.trim()).ok())
        .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok())
        .ok_or_else(|| Error::protocol("the Content-MD5 header is not a base64 MD5 digest"))?;
    Ok(Some(digest))
}

/// The download host refused the link.
fn download_refused(status: StatusCode) -> Error {
    match status.as_u16() {
        403 => Error::new(
            DefenderStatus::Forbidden,
            "the download host refused the link (HTTP 403); links expire within minutes of being issued",
        ),
        404 => Error::new(DefenderStatus::NotFound, "the download host has no such package (HTTP 404)"),
        _ => Error::new(DefenderStatus::Http, format!("the download host answered HTTP {status}")),
    }
}

/// A body that broke off: shorter than announced is `INTEGRITY`, a timeout `TIMEOUT`, the rest `NETWORK`.
fn body_error(err: &reqwest::Error, received: u64, expected: Option<u64>) -> Error {
    let transport = describe_transport_error(err);
    match expected {
        Some(expected) if transport.status() != DefenderStatus::Timeout => Error::new(
            DefenderStatus::Integrity,
            format!("the body ended after {received} of {expected} bytes ({})", transport.message()),
        ),
        _ => transport,
    }
}

/// A package is a ZIP: its central directory must be readable.
fn check_zip(path: &std::path::Path) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|err| Error::io(format!("reopening '{}'", path.display()), &err))?;
    zip::ZipArchive::new(std::io::BufReader::new(file))
        .map(drop)
        .map_err(|err| Error::integrity(format!("the download is not a readable ZIP ({err})")))
}
