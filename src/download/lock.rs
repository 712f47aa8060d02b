//! One writer per destination: a lock file beside it (`.<name>.lock`), locked (`flock` on Unix,
//! `LockFileEx` on Windows, through fs4) from before the download's link is asked for until the
//! package is in place or the call gives up. A second call for the same destination, in this
//! process or another, waits for the first (within its own `wait_timeout_ms`) and then goes on as
//! if it came after it: it finds the package there (`EXISTS`, or replaces it with `overwrite`),
//! or the part the first one left, to resume.
//!
//! The holder writes who it is into the file (process id, host, since when), so that a call that
//! waits can say whom it waits for. It removes the file when done, while still holding the lock.
//! That makes the classic race: a waiter that opened the file before it was removed then gets the
//! lock on a file no longer under that name, while a third call creates a new one and locks that.
//! So whoever gets the lock checks that the name still leads to the very file it locked (same
//! device and inode on Unix, volume and file index on Windows, through same-file), and starts
//! again when it does not. On Windows a file removed while others have it open is "delete
//! pending" until they close it, and opening it is refused meanwhile: that, too, means "held".

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::destination::{beside, owner_only};
use crate::error::{DefenderStatus, Error, Result};

/// Pauses between tries while another call holds the lock: short at first, so that a call
/// waiting for one just finishing goes on at once, then at most this.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const LONGEST_PAUSE: Duration = Duration::from_millis(250);

/// The destination's lock, held until dropped. Dropping it removes the lock file, then unlocks.
#[derive(Debug)]
pub(super) struct DestinationLock {
    file: Option<File>,
    path: PathBuf,
}

/// Who holds a lock, as its holder wrote it into the lock file.
#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    pid: u32,
    host: String,
    /// When it took the lock, as an HTTP date.
    since: String,
}

impl Holder {
    fn this_process() -> Self {
        Self { pid: std::process::id(), host: host_name(), since: httpdate::fmt_http_date(SystemTime::now()) }
    }
}

/// A call that found the lock held: whom it waits for, for the log.
pub(super) struct Waiting {
    pub holder: String,
}

impl DestinationLock {
    /// Takes the lock of `destination`. While another call holds it, tells `waiting` once whom
    /// it waits for, then tries again until `deadline` (`TIMEOUT` after it; without a deadline,
    /// `TIMEOUT` at once). Cancelled by dropping the future.
    pub(super) async fn acquire(
        destination: &Path,
        deadline: Option<Instant>,
        mut waiting: impl FnMut(Waiting),
    ) -> Result<Self> {
        let path = beside(destination, ".lock");
        let mut pause = FIRST_PAUSE;
        let mut told = false;
        loop {
            if let Some(lock) = Self::try_acquire(&path)? {
                return Ok(lock);
            }
            let holder = read_holder(&path);
            let Some(deadline) = deadline.filter(|deadline| Instant::now() < *deadline) else {
                let message = format!("'{}' is being downloaded by {holder}", destination.display());
                return Err(Error::new(DefenderStatus::Timeout, message));
            };
            if !told {
                waiting(Waiting { holder });
                told = true;
            }
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }

    /// The lock of `destination` when it is free, `None` while another call holds it.
    pub(super) fn try_take(destination: &Path) -> Result<Option<Self>> {
        Self::try_acquire(&beside(destination, ".lock"))
    }

    /// The lock when it is free, `None` while another call holds it.
    fn try_acquire(path: &Path) -> Result<Option<Self>> {
        let locking = |err: &io::Error| Error::io(format!("locking '{}'", path.display()), err);
        loop {
            let file = match open(path) {
                Ok(file) => file,
                Err(err) if platform::removed_while_open(&err) => return Ok(None),
                Err(err) => return Err(locking(&err)),
            };
            match fs4::FileExt::try_lock(&file) {
                Ok(()) => {}
                Err(fs4::TryLockError::WouldBlock) => return Ok(None),
                Err(fs4::TryLockError::Error(err)) => return Err(locking(&err)),
            }
            // Locked; but the holder before may have removed the file meanwhile (see the module's
            // comment): then this lock guards nothing, and another try opens the file now there.
            if !names_this_file(path, &file) {
                continue;
            }
            let mut lock = Self { file: Some(file), path: path.to_owned() };
            lock.write_holder().map_err(|err| locking(&err))?;
            return Ok(Some(lock));
        }
    }

    fn write_holder(&mut self) -> io::Result<()> {
        let file = self.file.as_mut().expect("held until dropped");
        let text = serde_json::to_vec(&Holder::this_process()).expect("a holder is strings and numbers");
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&text)
    }
}

impl Drop for DestinationLock {
    fn drop(&mut self) {
        // Removed while still locked, so that nobody takes a lock on it that then guards nothing
        // without noticing (`names_this_file`); closing the file then unlocks it.
        let _ = std::fs::remove_file(&self.path);
        drop(self.file.take());
    }
}

fn open(path: &Path) -> io::Result<File> {
    owner_only(OpenOptions::new().read(true).write(true).create(true).truncate(false)).open(path)
}

/// Whether `path` still names the file open as `file`.
fn names_this_file(path: &Path, file: &File) -> bool {
    let (Ok(named), Ok(open)) = (same_file::Handle::from_path(path), file.try_clone()) else { return false };
    same_file::Handle::from_file(open).is_ok_and(|open| open == named)
}

/// Whom the lock file says holds it, for a message.
fn read_holder(path: &Path) -> String {
    let mut text = String::new();
    // On Windows a locked file cannot be read by others: its holder stays unnamed there.
    let read = File::open(path).and_then(|mut file| file.read_to_string(&mut text));
    match read.ok().and_then(|_| serde_json::from_str::<Holder>(&text).ok()) {
        Some(holder) => format!("another call (process {} on {}, since {})", holder.pid, holder.host, holder.since),
        None => "another call".to_owned(),
    }
}

fn host_name() -> String {
    platform::host_name().unwrap_or_else(|| "this host".to_owned())
}

#[cfg(unix)]
mod platform {
    use std::io;

    pub(super) fn removed_while_open(_: &io::Error) -> bool {
        false
    }

    pub(super) fn host_name() -> Option<String> {
        let mut name = [0u8; 256];
        // SAFETY: the buffer is writable for its length; the name is NUL-terminated unless cut.
        if unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) } != 0 {
            return None;
        }
        let end = name.iter().position(|&byte| byte == 0).unwrap_or(name.len());
        Some(String::from_utf8_lossy(&name[..end]).into_owned()).filter(|name| !name.is_empty())
    }
}

#[cfg(not(unix))]
mod platform {
    use std::io;

    /// Windows refuses to open a file that was removed while others still had it open (access
    /// denied, until the last closes it).
    pub(super) fn removed_while_open(err: &io::Error) -> bool {
        err.kind() == io::ErrorKind::PermissionDenied
    }

    pub(super) fn host_name() -> Option<String> {
        std::env::var("COMPUTERNAME").ok().filter(|name| !name.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soon(ms: u64) -> Option<Instant> {
        Some(Instant::now() + Duration::from_millis(ms))
    }

    #[tokio::test]
    async fn a_second_call_waits_for_the_first_and_names_it() {
        let folder = tempfile::tempdir().unwrap();
        let destination = folder.path().join("p.zip");
        let first = DestinationLock::acquire(&destination, None, |_| panic!("free")).await.unwrap();
        let lock_file = folder.path().join(".p.zip.lock");
        assert!(lock_file.exists());

        // Without a deadline: at once. With one: after it.
        let refused = DestinationLock::acquire(&destination, None, |_| panic!("no wait")).await.unwrap_err();
        assert_eq!(refused.status(), DefenderStatus::Timeout);
        #[cfg(unix)] // a locked file cannot be read by others on Windows
        assert!(refused.message().contains(&format!("process {}", std::process::id())), "{refused}");
        let mut heard = Vec::new();
        let started = std::time::Instant::now();
        let refused =
            DestinationLock::acquire(&destination, soon(300), |waiting| heard.push(waiting.holder)).await.unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(200), "{:?}", started.elapsed());
        assert!(refused.message().contains("is being downloaded by another call"), "{refused}");
        assert_eq!(heard.len(), 1);
        #[cfg(unix)]
        assert!(heard[0].starts_with(&format!("another call (process {} on ", std::process::id())), "{heard:?}");

        // Freed meanwhile: the waiter gets it, and its own lock file.
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(first);
        });
        let second = DestinationLock::acquire(&destination, soon(5000), |_| {}).await.unwrap();
        release.await.unwrap();
        assert!(names_this_file(&lock_file, second.file.as_ref().unwrap()));
        drop(second);
        assert_eq!(std::fs::read_dir(folder.path()).unwrap().count(), 0, "no lock file left");
    }

    #[cfg(unix)] // Windows refuses to open a removed file still open elsewhere: no such race there
    #[test]
    fn a_lock_on_a_file_removed_meanwhile_is_not_taken_for_the_lock() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join(".p.zip.lock");
        // A waiter opened the lock file; its holder then removed it, and a third created another.
        let stale = open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let third = DestinationLock::try_acquire(&path).unwrap().expect("free");
        assert!(!names_this_file(&path, &stale));
        fs4::FileExt::try_lock(&stale).expect("the stale file is not locked by anyone");
        assert!(DestinationLock::try_acquire(&path).unwrap().is_none(), "the third still holds the real one");
        drop(third);
    }
}
