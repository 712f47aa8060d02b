//! Where a package is written: a temporary file beside the destination (`.<name>.part`, with
//! its record `.<name>.part.json`), renamed into place only when it is complete, so nothing
//! partial ever stands under the destination's name. Its name is fixed so that a later call for
//! the same destination finds what a killed one left and goes on from it (docs/downloads.md,
//! "Resuming after a crash").
//!
//! A package holds a device's processes, connections and event logs: on Unix the file is
//! created readable and writable by its owner only (0600, whatever the umask). On Windows it
//! inherits the folder's ACL, as every new file does; choose the folder accordingly.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DefenderStatus, Error, Result};

/// The file a download ends up in: `destination` itself, or `file_name` inside it when it names
/// an existing directory. Fails early with `EXISTS` when that file exists and may not be
/// replaced, so that no rate-limited link request is spent on a download that cannot land.
pub(super) fn resolve(destination: &str, file_name: &str, overwrite: bool) -> Result<PathBuf> {
    if destination.is_empty() {
        return Err(Error::invalid_argument("the destination path is empty"));
    }
    let given = Path::new(destination);
    let path = if given.is_dir() { given.join(file_name) } else { given.to_path_buf() };
    let path = std::path::absolute(&path).map_err(|err| Error::io(format!("resolving '{}'", path.display()), &err))?;
    let parent = path
        .parent()
        .filter(|p| p.is_dir())
        .ok_or_else(|| Error::new(DefenderStatus::Io, format!("the folder for '{}' does not exist", path.display())))?;
    debug_assert!(parent.is_absolute());
    if path.is_dir() {
        return Err(Error::new(DefenderStatus::Exists, format!("'{}' is a directory", path.display())));
    }
    if !overwrite && path.exists() {
        remove_stale_leftovers(&path);
        return Err(exists(&path));
    }
    Ok(path)
}

/// Removes what a killed call left beside `destination`, which is there now (saved by a later
/// call, or renamed just before the kill): its part, the part's record and the lock file. A part
/// of a file already saved is never resumed, and a call that stops at `EXISTS` is the last to
/// look at this destination, so it cleans up, when no other call holds the destination's lock
/// (that one cleans up after itself). Best effort: `EXISTS` is the answer whatever happens here.
fn remove_stale_leftovers(destination: &Path) {
    let leftovers = [".part", ".part.json", ".part.json.new", ".lock"].map(|suffix| beside(destination, suffix));
    if !leftovers.iter().any(|path| path.symlink_metadata().is_ok()) {
        return;
    }
    if let Ok(Some(_lock)) = super::lock::DestinationLock::try_take(destination) {
        for path in &leftovers[..3] {
            let _ = std::fs::remove_file(path);
        }
        // Dropping the lock removes the lock file.
    }
}

pub(super) fn exists(path: &Path) -> Error {
    Error::new(
        DefenderStatus::Exists,
        format!("'{}' exists; set the option 'overwrite' to 'true' to replace it", path.display()),
    )
}

/// The name of a file kept beside `destination` while it is downloaded: `.<name><suffix>`,
/// hidden, in the same folder (so that the final rename stays on one file system).
pub(super) fn beside(destination: &Path, suffix: &str) -> PathBuf {
    let folder = destination.parent().expect("resolve() returns a path with a parent");
    let name = destination.file_name().unwrap_or_default().to_string_lossy();
    folder.join(format!(".{name}{suffix}"))
}

/// The version of `PartRecord`'s layout. A record of another version is not read: its part is
/// downloaded again.
const RECORD_FORMAT: u32 = 1;

/// What proves that the bytes of a part file are the start of one package, as the download host
/// described that package when they came: kept beside the part (`.<name>.part.json`) so that a
/// later call, in another process, can go on from them. Written whole under a temporary name,
/// then renamed over the last one: a crash leaves the old record, the new one, or none, never
/// half of one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PartRecord {
    pub format: u32,
    /// The machine action whose package this is: a later call for another action to the same
    /// file name starts over.
    pub action_id: String,
    /// The package's length (`Content-Length` of the whole).
    pub length: u64,
    /// The validators a resumed request sends in `If-Range` (the ETag, else Last-Modified) and
    /// checks in the answer.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The whole package's MD5 (base64) when the download host sent one: the resumed download
    /// is checked against it.
    pub md5: Option<String>,
}

impl PartRecord {
    pub(super) fn new(action_id: &str, length: u64) -> Self {
        Self {
            format: RECORD_FORMAT,
            action_id: action_id.to_owned(),
            length,
            etag: None,
            last_modified: None,
            md5: None,
        }
    }
}

/// What `PartFile::open_beside` found from an earlier call.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Leftover {
    /// No part, or an empty one.
    Nothing,
    /// `bytes` of the package its record describes: the download may go on from there.
    Resumable { record: PartRecord, bytes: u64 },
    /// A part nobody can resume (`why`): it was emptied and its record removed.
    Discarded { bytes: u64, why: String },
}

/// The part file beside a destination (`.<name>.part`), where the package is written until it
/// is whole, and its record. Its name is fixed, so that a later call for the same destination
/// finds what a killed one left; only the holder of the destination's lock
/// (`lock::DestinationLock`) opens it. Dropping it before `persist` removes both: a call that
/// returns, whatever its outcome, leaves nothing behind; only a process that dies mid-download
/// leaves its part, for the next call to resume or remove.
pub(super) struct PartFile {
    file: Option<File>,
    path: PathBuf,
    record: PathBuf,
    persisted: bool,
}

impl PartFile {
    /// Opens (creating when missing) the part file of `destination`, with what an earlier call
    /// left in it for `action_id`. A part whose record is missing, does not parse, is of another
    /// format or another action, or that is longer than its package, cannot be resumed: it is
    /// emptied and its record removed (`Leftover::Discarded` says why).
    pub(super) fn open_beside(destination: &Path, action_id: &str) -> Result<(Self, Leftover)> {
        let path = beside(destination, ".part");
        let record = beside(destination, ".part.json");
        // A record being written when its process died.
        let _ = std::fs::remove_file(temporary_record(&record));
        let mut options = OpenOptions::new();
        owner_only(options.read(true).write(true).create(true).truncate(false));
        let opening = |err: &io::Error| Error::io(format!("opening the temporary file '{}'", path.display()), err);
        let file = open_retrying(&options, &path).map_err(|err| opening(&err))?;
        let metadata = file.metadata().map_err(|err| opening(&err))?;
        if !metadata.is_file() {
            return Err(Error::new(DefenderStatus::Io, format!("'{}' is not a file", path.display())));
        }
        #[cfg(unix)]
        if std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o077 != 0 {
            // Left by something else with wider permissions: the package may not be read by others.
            let owner_only = std::os::unix::fs::PermissionsExt::from_mode(0o600);
            file.set_permissions(owner_only).map_err(|err| opening(&err))?;
        }
        let mut part = Self { file: Some(file), path, record, persisted: false };
        let bytes = metadata.len();
        let leftover = match (bytes, part.read_record()) {
            (0, _) => Leftover::Nothing,
            (bytes, Ok(record)) if record.action_id == action_id && bytes <= record.length => {
                Leftover::Resumable { record, bytes }
            }
            (bytes, Ok(record)) if record.action_id != action_id => {
                Leftover::Discarded { bytes, why: format!("its record is for machine action {}", record.action_id) }
            }
            (bytes, Ok(record)) => {
                Leftover::Discarded { bytes, why: format!("it is longer than its package ({} bytes)", record.length) }
            }
            (bytes, Err(why)) => Leftover::Discarded { bytes, why },
        };
        if !matches!(leftover, Leftover::Resumable { .. }) {
            part.start_over()?;
        }
        Ok((part, leftover))
    }

    /// The record beside the part, or why it cannot be used.
    fn read_record(&self) -> std::result::Result<PartRecord, String> {
        // A record is a few hundred bytes: what is longer (or endless, through a link someone
        // put in the folder) is not one.
        const MAX_RECORD: u64 = 64 * 1024;
        let mut text = Vec::new();
        let read = owner_only(OpenOptions::new().read(true))
            .open(&self.record)
            .and_then(|file| io::Read::read_to_end(&mut io::Read::take(file, MAX_RECORD), &mut text));
        match read {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Err("it has no record".to_owned()),
            Err(err) => return Err(format!("its record cannot be read ({err})")),
        }
        let record: PartRecord =
            serde_json::from_slice(&text).map_err(|err| format!("its record does not parse ({err})"))?;
        if record.format != RECORD_FORMAT {
            return Err(format!("its record is of format {}, not {RECORD_FORMAT}", record.format));
        }
        Ok(record)
    }

    /// Replaces the record beside the part: written whole under a temporary name and flushed,
    /// then renamed over the last.
    pub(super) fn write_record(&self, record: &PartRecord) -> Result<()> {
        let temporary = temporary_record(&self.record);
        let text = serde_json::to_vec(record).expect("a record holds only strings and numbers");
        owner_only(OpenOptions::new().write(true).create(true).truncate(true))
            .open(&temporary)
            .and_then(|mut file| file.write_all(&text).and_then(|()| file.sync_data()))
            .and_then(|()| std::fs::rename(&temporary, &self.record))
            .map_err(|err| {
                let _ = std::fs::remove_file(&temporary);
                Error::io(format!("writing '{}'", self.record.display()), &err)
            })
    }

    /// Removes the record: the part can no longer be resumed.
    pub(super) fn remove_record(&self) -> Result<()> {
        match std::fs::remove_file(&self.record) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(Error::io(format!("removing '{}'", self.record.display()), &err)),
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the record, empties the file and returns a second handle to it, positioned at its
    /// start, to write the body through. The two handles share the position, and the file stays
    /// this one's: dropping the `PartFile` removes it even while the other handle is still open.
    pub(super) fn start_over(&mut self) -> Result<File> {
        // The record first: a crash in between must not leave it describing other bytes.
        self.remove_record()?;
        self.keep_first(0)
    }

    /// Cuts the file to its first `bytes` and returns a second handle to it positioned there,
    /// to write the rest of the body through (see `start_over`).
    pub(super) fn keep_first(&mut self, bytes: u64) -> Result<File> {
        let path = &self.path;
        let file = self.file.as_mut().expect("the part file is open until it is synced");
        file.set_len(bytes)
            .and_then(|()| file.seek(SeekFrom::Start(bytes)))
            .and_then(|_| file.try_clone())
            .map_err(|err| Error::io(format!("preparing '{}'", path.display()), &err))
    }

    /// A second handle to the file, to sync and check it off the async workers.
    pub(super) fn duplicate(&self) -> Result<File> {
        let file = self.file.as_ref().expect("the part file is open until it is synced");
        file.try_clone().map_err(|err| Error::io(format!("opening '{}' again", self.path.display()), &err))
    }

    /// Flushes the bytes to the disk and closes the file.
    pub(super) fn sync_and_close(&mut self) -> Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_all().map_err(|err| Error::io(format!("flushing '{}' to disk", self.path.display()), &err))?;
        }
        Ok(())
    }

    /// Moves the file to `destination` durably: its bytes are flushed to the disk before the
    /// rename, and (on Unix) the folder after it, so that a power cut cannot leave a renamed but
    /// empty package. Without `overwrite`, an existing destination is never replaced, even one
    /// that appeared during the download: `EXISTS`. The record goes last.
    pub(super) fn persist(mut self, destination: &Path, overwrite: bool) -> Result<()> {
        self.sync_and_close()?;
        let moving = |err: &io::Error| Error::io(format!("moving the download to '{}'", destination.display()), err);
        if overwrite {
            std::fs::rename(&self.path, destination).map_err(|err| moving(&err))?;
        } else {
            match rename_no_replace(&self.path, destination) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => return Err(exists(destination)),
                Err(err) => return Err(moving(&err)),
            }
        }
        self.persisted = true; // moved: the part's name is free
        let _ = sync_folder(destination);
        // Left behind only by a crash right here; the next call for the destination removes it.
        let _ = self.remove_record();
        Ok(())
    }
}

/// `options`, for the files kept beside a destination: on Unix never opened through a link
/// someone put in the folder, and created readable by their owner only.
pub(super) fn owner_only(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    options
}

/// Opens `path`. On Windows the part a call just removed keeps its name until the last handle
/// to it closes (a thread of the finished download may still hold one for a moment), and opening
/// it meanwhile is refused: tried again for up to a second.
fn open_retrying(options: &OpenOptions, path: &Path) -> io::Result<File> {
    let mut tries = 0;
    loop {
        match options.open(path) {
            Err(err) if cfg!(windows) && err.kind() == io::ErrorKind::PermissionDenied && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            opened => return opened,
        }
    }
}

/// Where `write_record` writes the record before renaming it into place.
fn temporary_record(record: &Path) -> PathBuf {
    let mut name = record.as_os_str().to_owned();
    name.push(".new");
    PathBuf::from(name)
}

impl Drop for PartFile {
    fn drop(&mut self) {
        // Close before removing: Windows cannot remove an open file.
        drop(self.file.take());
        if !self.persisted {
            let _ = std::fs::remove_file(&self.record);
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Renames `from` to `to` unless `to` exists (`AlreadyExists` then), with the platform's
/// atomic no-replace rename: `renameat2(RENAME_NOREPLACE)` on Linux, `renamex_np(RENAME_EXCL)`
/// on macOS, `MoveFileExW` without `MOVEFILE_REPLACE_EXISTING` on Windows. Where the file
/// system does not offer it (Linux answers EINVAL for some network and FUSE file systems, ENOSYS
/// before 3.15), `claim_then_rename`.
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    match platform::rename_no_replace(from, to) {
        Err(err) if platform::is_unsupported(&err) => claim_then_rename(from, to),
        done => done,
    }
}

/// Claims `to` by creating it exclusively (`O_EXCL`, which every file system has, FAT and
/// network shares included), then renames `from` over that empty claim. What another program
/// wrote is never replaced; a crash between the two steps leaves an empty file, never a partial
/// package.
fn claim_then_rename(from: &Path, to: &Path) -> io::Result<()> {
    OpenOptions::new().write(true).create_new(true).open(to)?;
    std::fs::rename(from, to).inspect_err(|_| {
        let _ = std::fs::remove_file(to);
    })
}

#[cfg(target_os = "linux")]
mod platform {
    use std::ffi::CString;
    use std::io;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    pub(super) fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
        let c_path = |path: &Path| CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other);
        let (from, to) = (c_path(from)?, c_path(to)?);
        // The system call, not glibc's wrapper: that one only exists from glibc 2.28 (and musl 1.2.?).
        // SAFETY: two NUL-terminated paths that outlive the call; AT_FDCWD resolves them as given.
        let result = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if result == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }

    pub(super) fn is_unsupported(err: &io::Error) -> bool {
        matches!(err.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP))
    }
}

#[cfg(target_os = "macos")]
mod platform {
    use std::ffi::CString;
    use std::io;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    pub(super) fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
        let c_path = |path: &Path| CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other);
        let (from, to) = (c_path(from)?, c_path(to)?);
        // SAFETY: two NUL-terminated paths that outlive the call.
        let result = unsafe { libc::renamex_np(from.as_ptr(), to.as_ptr(), libc::RENAME_EXCL) };
        if result == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }

    pub(super) fn is_unsupported(err: &io::Error) -> bool {
        matches!(err.raw_os_error(), Some(libc::EINVAL | libc::ENOTSUP))
    }
}

#[cfg(windows)]
mod platform {
    use std::io;
    use std::os::windows::ffi::OsStrExt;
    use std::path::Path;

    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn MoveFileExW(existing: *const u16, new: *const u16, flags: u32) -> i32;
    }
    /// Flushes the move to disk before returning; without MOVEFILE_REPLACE_EXISTING (1), an
    /// existing destination fails the move with ERROR_ALREADY_EXISTS.
    const MOVEFILE_WRITE_THROUGH: u32 = 0x8;

    pub(super) fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (verbatim(from), verbatim(to));
        // SAFETY: two NUL-terminated UTF-16 paths that outlive the call.
        if unsafe { MoveFileExW(from.as_ptr(), to.as_ptr(), MOVEFILE_WRITE_THROUGH) } != 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub(super) fn is_unsupported(err: &io::Error) -> bool {
        err.kind() == io::ErrorKind::Unsupported
    }

    /// `path`, NUL-terminated UTF-16, as MoveFileExW takes it past MAX_PATH (260 characters)
    /// whatever the system's long path setting: with the `\\?\` prefix (`\\?\UNC\` for a
    /// share). std adds it by itself to its own calls; this call is ours. The paths come from
    /// `resolve`, absolute and normalised by `std::path::absolute` (GetFullPathNameW), as a
    /// prefixed path must be.
    fn verbatim(path: &Path) -> Vec<u16> {
        use std::path::{Component, Prefix};
        let (replaced, prefix) = match path.components().next() {
            Some(Component::Prefix(prefix)) => match prefix.kind() {
                Prefix::Disk(_) => (0, r"\\?\"),
                // \\server\share\... becomes \\?\UNC\server\share\...
                Prefix::UNC(..) => (1, r"\\?\UNC"),
                _ => (0, ""), // already \\?\ or a device path
            },
            _ => (0, ""),
        };
        prefix.encode_utf16().chain(path.as_os_str().encode_wide().skip(replaced)).chain([0]).collect()
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
mod platform {
    use std::io;
    use std::path::Path;

    pub(super) fn rename_no_replace(_: &Path, _: &Path) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub(super) fn is_unsupported(err: &io::Error) -> bool {
        err.kind() == io::ErrorKind::Unsupported
    }
}

/// Makes the rename of `path` itself durable: on Unix the folder's entries are flushed too, so
/// that after a power cut the name leads to the synced file. `persist` takes this as best
/// effort (some network file systems refuse to sync a folder; the file's bytes are already on
/// the disk by then). Windows has no equivalent: its no-replace rename is `MOVEFILE_WRITE_THROUGH`.
fn sync_folder(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let folder = path.parent().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        File::open(folder)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_folder_destination_gets_the_file_name() {
        let folder = tempfile::tempdir().unwrap();
        let path = resolve(folder.path().to_str().unwrap(), "abc-123.zip", false).unwrap();
        assert_eq!(path, folder.path().join("abc-123.zip"));
    }

    #[test]
    fn an_existing_file_is_refused_without_overwrite_and_a_missing_folder_is_io() {
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("p.zip");
        std::fs::write(&file, b"old").unwrap();
        assert_eq!(resolve(file.to_str().unwrap(), "a", false).unwrap_err().status(), DefenderStatus::Exists);
        assert_eq!(resolve(file.to_str().unwrap(), "a", true).unwrap(), file);
        let nowhere = folder.path().join("missing").join("p.zip");
        assert_eq!(resolve(nowhere.to_str().unwrap(), "a", false).unwrap_err().status(), DefenderStatus::Io);
    }

    #[test]
    fn part_file_is_removed_when_dropped_and_moved_when_persisted() {
        let folder = tempfile::tempdir().unwrap();
        let destination = folder.path().join("p.zip");
        let (mut part, leftover) = PartFile::open_beside(&destination, "a1").unwrap();
        assert_eq!(leftover, Leftover::Nothing);
        part.start_over().unwrap().write_all(b"partial").unwrap();
        part.write_record(&PartRecord::new("a1", 100)).unwrap();
        let part_path = part.path().to_path_buf();
        assert_eq!(part_path, folder.path().join(".p.zip.part"));
        drop(part);
        assert!(!part_path.exists());
        assert_eq!(std::fs::read_dir(folder.path()).unwrap().count(), 0, "the record went with it");

        let (mut part, _) = PartFile::open_beside(&destination, "a1").unwrap();
        part.start_over().unwrap().write_all(b"a first try").unwrap();
        part.start_over().unwrap().write_all(b"whole").unwrap();
        part.persist(&destination, false).unwrap();
        assert_eq!(std::fs::read(&destination).unwrap(), b"whole");
        assert_eq!(std::fs::read_dir(folder.path()).unwrap().count(), 1, "only the destination is left");
    }

    #[test]
    fn without_a_no_replace_rename_the_name_is_claimed_first_and_nothing_is_replaced() {
        let folder = tempfile::tempdir().unwrap();
        let (from, to) = (folder.path().join("part"), folder.path().join("p.zip"));
        std::fs::write(&from, b"new").unwrap();
        std::fs::write(&to, b"theirs").unwrap();
        assert_eq!(claim_then_rename(&from, &to).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&to).unwrap(), b"theirs");
        std::fs::remove_file(&to).unwrap();
        claim_then_rename(&from, &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"new");
        assert!(!from.exists());
    }

    #[test]
    fn the_platform_rename_refuses_an_existing_destination() {
        let folder = tempfile::tempdir().unwrap();
        let (from, to) = (folder.path().join("part"), folder.path().join("p.zip"));
        std::fs::write(&from, b"new").unwrap();
        std::fs::write(&to, b"theirs").unwrap();
        assert_eq!(rename_no_replace(&from, &to).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&to).unwrap(), b"theirs");
        // On Linux: the system call itself, not the fallback, refused it.
        #[cfg(target_os = "linux")]
        assert_eq!(platform::rename_no_replace(&from, &to).unwrap_err().raw_os_error(), Some(libc::EEXIST));
    }

    #[cfg(unix)]
    #[test]
    fn the_package_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let folder = tempfile::tempdir().unwrap();
        let destination = folder.path().join("p.zip");
        let mut part = PartFile::open_beside(&destination, "a1").unwrap().0;
        assert_eq!(std::fs::metadata(part.path()).unwrap().permissions().mode() & 0o777, 0o600);
        part.start_over().unwrap().write_all(b"whole").unwrap();
        part.persist(&destination, false).unwrap();
        assert_eq!(std::fs::metadata(&destination).unwrap().permissions().mode() & 0o777, 0o600);
    }

    /// The rename is made durable: the destination's folder is opened and synced (on Unix; a
    /// folder that cannot be opened shows that it really is).
    #[cfg(unix)]
    #[test]
    fn the_folder_of_a_persisted_file_is_synced() {
        let folder = tempfile::tempdir().unwrap();
        sync_folder(&folder.path().join("p.zip")).unwrap();
        let gone = folder.path().join("gone");
        assert_eq!(sync_folder(&gone.join("p.zip")).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn persist_never_replaces_a_file_that_appeared_meanwhile_unless_overwrite() {
        let folder = tempfile::tempdir().unwrap();
        let destination = folder.path().join("p.zip");
        let mut part = PartFile::open_beside(&destination, "a1").unwrap().0;
        part.start_over().unwrap().write_all(b"new").unwrap();
        std::fs::write(&destination, b"theirs").unwrap();
        assert_eq!(part.persist(&destination, false).unwrap_err().status(), DefenderStatus::Exists);
        assert_eq!(std::fs::read(&destination).unwrap(), b"theirs");
        assert_eq!(std::fs::read_dir(folder.path()).unwrap().count(), 1, "the part file is gone");

        let mut part = PartFile::open_beside(&destination, "a1").unwrap().0;
        part.start_over().unwrap().write_all(b"new").unwrap();
        part.persist(&destination, true).unwrap();
        assert_eq!(std::fs::read(&destination).unwrap(), b"new");
    }
}

#[cfg(test)]
mod leftovers {
    use std::io::Write;

    use super::*;

    /// What a killed call leaves: `bytes` in the part, and `record` (as text) beside it.
    fn left(folder: &Path, bytes: &[u8], record: Option<&str>) -> PathBuf {
        let destination = folder.join("p.zip");
        std::fs::write(beside(&destination, ".part"), bytes).unwrap();
        if let Some(record) = record {
            std::fs::write(beside(&destination, ".part.json"), record).unwrap();
        }
        destination
    }

    fn record_text(action_id: &str, length: u64) -> String {
        let record = PartRecord {
            etag: Some("\"0x8D\"".into()),
            md5: Some("AAAA".into()),
            ..PartRecord::new(action_id, length)
        };
        serde_json::to_string(&record).unwrap()
    }

    #[test]
    fn a_part_with_its_record_is_resumable_from_its_length() {
        let folder = tempfile::tempdir().unwrap();
        let destination = left(folder.path(), b"0123456789", Some(&record_text("a1", 100)));
        let (mut part, leftover) = PartFile::open_beside(&destination, "a1").unwrap();
        let Leftover::Resumable { record, bytes: 10 } = leftover else { panic!("{leftover:?}") };
        assert_eq!((record.length, record.etag.as_deref()), (100, Some("\"0x8D\"")));
        // Going on from byte 4 keeps exactly those.
        part.keep_first(4).unwrap().write_all(b"XY").unwrap();
        assert_eq!(std::fs::read(part.path()).unwrap(), b"0123XY");
    }

    #[test]
    fn a_part_nobody_can_resume_is_emptied_and_its_record_removed() {
        let cases = [
            (None, "it has no record"),
            (Some("{\"format\":1,\"action_id\":"), "its record does not parse"),
            (Some("garbage"), "its record does not parse"),
            (
                Some(r#"{"format":2,"action_id":"a1","length":100,"etag":null,"last_modified":null,"md5":null}"#),
                "format 2",
            ),
            (Some(&*record_text("another", 100)), "for machine action another"),
            (Some(&*record_text("a1", 5)), "longer than its package"),
        ];
        for (record, why) in cases {
            let folder = tempfile::tempdir().unwrap();
            let destination = left(folder.path(), b"0123456789", record);
            std::fs::write(beside(&destination, ".part.json.new"), b"half a rec").unwrap();
            let (part, leftover) = PartFile::open_beside(&destination, "a1").unwrap();
            let Leftover::Discarded { bytes: 10, why: said } = &leftover else { panic!("{leftover:?}") };
            assert!(said.contains(why), "{said} should say {why}");
            assert_eq!(std::fs::metadata(part.path()).unwrap().len(), 0, "{why}: emptied");
            assert_eq!(std::fs::read_dir(folder.path()).unwrap().count(), 1, "{why}: only the part is left");
        }
    }

    #[test]
    fn the_record_is_replaced_whole() {
        let folder = tempfile::tempdir().unwrap();
        let destination = folder.path().join("p.zip");
        let (part, _) = PartFile::open_beside(&destination, "a1").unwrap();
        let mut record = PartRecord::new("a1", 7);
        part.write_record(&record).unwrap();
        record.etag = Some("e2".into());
        part.write_record(&record).unwrap();
        assert_eq!(part.read_record().unwrap(), record);
        let mut names: Vec<_> = std::fs::read_dir(folder.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, [".p.zip.part", ".p.zip.part.json"]);
        part.remove_record().unwrap();
        assert_eq!(part.read_record().unwrap_err(), "it has no record");
    }

    #[cfg(unix)]
    #[test]
    fn a_link_in_place_of_the_part_is_not_followed() {
        let folder = tempfile::tempdir().unwrap();
        let destination = folder.path().join("p.zip");
        let elsewhere = folder.path().join("elsewhere");
        std::fs::write(&elsewhere, b"not yours").unwrap();
        std::os::unix::fs::symlink(&elsewhere, beside(&destination, ".part")).unwrap();
        let error = PartFile::open_beside(&destination, "a1").err().expect("refused");
        assert_eq!(error.status(), DefenderStatus::Io, "{error}");
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"not yours");

        // A record that is a link (to something endless) is not read.
        std::fs::remove_file(beside(&destination, ".part")).unwrap();
        std::fs::write(beside(&destination, ".part"), b"0123").unwrap();
        std::os::unix::fs::symlink("/dev/zero", beside(&destination, ".part.json")).unwrap();
        let (_, leftover) = PartFile::open_beside(&destination, "a1").unwrap();
        let Leftover::Discarded { why, .. } = &leftover else { panic!("{leftover:?}") };
        assert!(why.contains("its record cannot be read"), "{why}");
    }
}
