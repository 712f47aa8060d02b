//! Where a package is written: a temporary file beside the destination, renamed into place only
//! when it is complete, so nothing partial ever stands under the destination's name.
//!
//! A package holds a device's processes, connections and event logs: on Unix the file is
//! created readable and writable by its owner only (0600, whatever the umask). On Windows it
//! inherits the folder's ACL, as every new file does; choose the folder accordingly.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};

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
        return Err(exists(&path));
    }
    Ok(path)
}

fn exists(path: &Path) -> Error {
    Error::new(
        DefenderStatus::Exists,
        format!("'{}' exists; set the option 'overwrite' to 'true' to replace it", path.display()),
    )
}

/// A `.part` file beside the destination. Dropping it before `persist` removes it.
pub(super) struct PartFile {
    file: Option<File>,
    path: PathBuf,
}

impl PartFile {
    /// Creates `.<name>.<random>.part` in the destination's folder, which must not exist yet.
    pub(super) fn create_beside(destination: &Path) -> Result<Self> {
        let folder = destination.parent().expect("resolve() returns a path with a parent");
        let name = destination.file_name().unwrap_or_default().to_string_lossy();
        loop {
            let path = folder.join(format!(".{name}.{:016x}.part", fastrand::u64(..)));
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(&path) {
                Ok(file) => return Ok(Self { file: Some(file), path }),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => {
                    return Err(Error::io(format!("creating a temporary file in '{}'", folder.display()), &err));
                }
            }
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Empties the file and returns a second handle to it, positioned at its start, to write
    /// the body through. The two handles share the position, and the file stays this one's:
    /// dropping the `PartFile` removes it even while the other handle is still open.
    pub(super) fn start_over(&mut self) -> Result<File> {
        let path = &self.path;
        let file = self.file.as_mut().expect("the part file is open until it is synced");
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
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

    /// Moves the (synced) file to `destination`. Without `overwrite`, an existing destination is
    /// never replaced, even one that appeared during the download: `EXISTS`.
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
        sync_folder(destination);
        self.path = PathBuf::new(); // moved: nothing to remove on drop
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        // Close before removing: Windows cannot remove an open file.
        drop(self.file.take());
        if !self.path.as_os_str().is_empty() {
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

/// Makes the rename itself durable (Unix: the folder's entry is flushed too). Best effort: the
/// file's bytes are already synced, and Windows has no equivalent.
fn sync_folder(path: &Path) {
    #[cfg(unix)]
    if let Some(folder) = path.parent() {
        if let Ok(folder) = File::open(folder) {
            let _ = folder.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
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
        let mut part = PartFile::create_beside(&destination).unwrap();
        part.start_over().unwrap().write_all(b"partial").unwrap();
        let part_path = part.path().to_path_buf();
        drop(part);
        assert!(!part_path.exists());

        let mut part = PartFile::create_beside(&destination).unwrap();
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
        let mut part = PartFile::create_beside(&destination).unwrap();
        assert_eq!(std::fs::metadata(part.path()).unwrap().permissions().mode() & 0o777, 0o600);
        part.start_over().unwrap().write_all(b"whole").unwrap();
        part.persist(&destination, false).unwrap();
        assert_eq!(std::fs::metadata(&destination).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn persist_never_replaces_a_file_that_appeared_meanwhile_unless_overwrite() {
        let folder = tempfile::tempdir().unwrap();
        let destination = folder.path().join("p.zip");
        let mut part = PartFile::create_beside(&destination).unwrap();
        part.start_over().unwrap().write_all(b"new").unwrap();
        std::fs::write(&destination, b"theirs").unwrap();
        assert_eq!(part.persist(&destination, false).unwrap_err().status(), DefenderStatus::Exists);
        assert_eq!(std::fs::read(&destination).unwrap(), b"theirs");
        assert_eq!(std::fs::read_dir(folder.path()).unwrap().count(), 1, "the part file is gone");

        let mut part = PartFile::create_beside(&destination).unwrap();
        part.start_over().unwrap().write_all(b"new").unwrap();
        part.persist(&destination, true).unwrap();
        assert_eq!(std::fs::read(&destination).unwrap(), b"new");
    }
}
