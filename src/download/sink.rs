//! Where a download's bytes go. The chunks the connection gives are gathered into blocks, and
//! each block is handed (not copied again) to threads that work side by side with the receiving
//! one: one hashes it (SHA-256), one computes the MD5 when there is one to check. Another
//! flushes what is written to the disk as the download goes, so that the disk works alongside
//! too and the final sync has little left to do. On a fast link the costs of a download then
//! overlap instead of adding up, and memory stays at a few blocks in flight whatever the
//! package size.
//!
//! The receiving task writes each block to the file itself, as soon as it is gathered: its bytes
//! are still in this core's cache, so the write costs about an eighth less CPU than from a block
//! another core reads back, and no writer thread is woken for every MiB. That made downloads on
//! a fast link about 6% faster than with a writer thread (docs/benchmarks.md). A write into the
//! page cache takes well under a millisecond, but a slow destination (a busy disk, a hung
//! network share) can hold one for seconds, and with it the runtime worker it runs on. So a
//! write slower than [`SLOW_WRITE`] moves the download's writes to a thread of their own for the
//! rest of it, and fewer downloads than there are workers write on them at a time: one worker
//! always stays free for timers, cancellations and other calls.
//!
//! The blocks come from a small pool and go back to it, so a download reuses the same few MiB
//! from start to end. The connection's own buffer is freed as soon as its bytes are copied into
//! a block, and the next read fills that same, cache-hot memory again. Handing the connection's
//! buffers themselves to the stages (as this did before) cost more than the copy saves: each was
//! a fresh allocation of up to 400 KiB that the allocator got from the kernel as zeroed pages
//! and gave back (see the notes in docs/benchmarks.md).
//!
//! SHA-256 (about half a CPU second per GiB with the CPU's SHA instructions) has a thread: on
//! the receiving one, or on one with the write, it made the slowest stage, as slow as all of curl.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use md5::Md5;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// Blocks queued for each thread: with `BLOCK`, this bounds the memory a download holds to about
/// ten MiB. SHA-256's queue lets the receiving task go on through the moments the hashing thread
/// waits for a core; 8 measured at least as fast as 4 (docs/benchmarks.md).
const CHUNKS_IN_FLIGHT: usize = 8;
/// The body is gathered into blocks of this size: one write and one hand-off to each stage per
/// MiB. Each hand-off can wake a sleeping thread; with 256 KiB blocks those wake-ups cost about
/// 0.05 CPU s/GiB more (see docs/benchmarks.md), and the blocks still fit the cores' caches.
const BLOCK: usize = 1024 * 1024;
/// The file is written through a buffer of this size: whole blocks go straight through.
const WRITE_BUFFER: usize = BLOCK;
/// Written bytes after which the flusher is asked to push them to the disk.
const FLUSH_EVERY: u64 = 64 * 1024 * 1024;
/// A write on the receiving task that takes longer than this moves the download's writes to a
/// thread of their own: a write of one block into the page cache takes well under a millisecond.
const SLOW_WRITE: Duration = Duration::from_millis(20);

/// The digests of every byte pushed, in order.
pub(super) struct Digests {
    pub sha256: [u8; 32],
    /// Only when the sink was asked for it (the server sent an MD5 to check against).
    pub md5: Option<[u8; 16]>,
}

/// Receives a body in order and writes it to a file from its current position.
///
/// Dropping a sink (a cancelled download) lets its threads finish what they hold on their own;
/// the file's name belongs to the `PartFile`, which removes it.
pub(super) struct Sink {
    sha256: Stage<Sha256>,
    /// Writes to the file.
    writes: Writes,
    /// Only when the server sent an MD5 to check against.
    md5: Option<Stage<Md5>>,
    /// The block being gathered.
    filling: Vec<u8>,
    pool: Arc<Pool>,
    received: u64,
}

impl Sink {
    /// A sink writing to `file` (positioned where the body starts), computing MD5 as well as
    /// SHA-256 when `with_md5`. `path` names the file in messages.
    pub(super) fn new(file: File, path: PathBuf, with_md5: bool) -> Result<Self> {
        Self::writing(file, path, with_md5, WorkerSlot::claim(), SLOW_WRITE)
    }

    /// A sink whose writes start on the receiving task when it has a `slot`, and move to a
    /// thread after a write as slow as `slow_write`.
    fn writing(
        file: File,
        path: PathBuf,
        with_md5: bool,
        slot: Option<WorkerSlot>,
        slow_write: Duration,
    ) -> Result<Self> {
        let writer = FileWriter::new(file, path)?;
        let writes = match slot {
            Some(slot) => Writes::OnWorker { writer, slow_write, _slot: slot },
            None => Writes::OnThread(Stage::start(writer)),
        };
        let pool = Arc::new(Pool::default());
        Ok(Self {
            sha256: Stage::start(Sha256::new()),
            writes,
            md5: with_md5.then(|| Stage::start(Md5::new())),
            filling: pool.take(),
            pool,
            received: 0,
        })
    }

    /// A sink going on from the first `have` bytes of a part file an earlier download left:
    /// they are read back from `path` and fed to every stage but the writer (the hashes, and
    /// whatever else checks the body), exactly as if they had just arrived, so that the digests
    /// at the end are those of the whole. `file` is positioned at `have`, where the rest is
    /// written. The one way to start from bytes already on disk: a stage added to the pipeline
    /// gets them too.
    pub(super) async fn resuming(file: File, path: PathBuf, have: u64, with_md5: bool) -> Result<Self> {
        let reading = |err: &std::io::Error| Error::io(format!("reading back '{}'", path.display()), err);
        let mut sink = Self::new(file, path.clone(), with_md5)?;
        let mut earlier = std::io::Read::take(File::open(&path).map_err(|err| reading(&err))?, have);
        while sink.received < have {
            let mut bytes = sink.pool.take();
            // Read off the async workers: a slow disk must not hold one.
            let (read, back) = tokio::task::spawn_blocking(move || {
                let read = std::io::Read::read_to_end(&mut std::io::Read::take(&mut earlier, BLOCK as u64), &mut bytes);
                (read.map(|_| bytes), earlier)
            })
            .await
            .map_err(|err| Error::internal(format!("reading back the download failed unexpectedly: {err}")))?;
            earlier = back;
            let bytes = read.map_err(|err| reading(&err))?;
            if bytes.is_empty() {
                return Err(Error::new(
                    crate::error::DefenderStatus::Io,
                    format!("'{}' ended after {} of the {have} bytes kept in it", path.display(), sink.received),
                ));
            }
            sink.received += bytes.len() as u64;
            sink.check(Arc::new(Block { bytes, pool: Arc::clone(&sink.pool) })).await?;
        }
        Ok(sink)
    }

    /// Bytes received so far (written, or on their way).
    pub(super) fn received(&self) -> u64 {
        self.received
    }

    /// Takes the next chunk of the body. Waits only when a hasher or the disk is behind.
    pub(super) async fn push(&mut self, chunk: Bytes) -> Result<()> {
        self.received += chunk.len() as u64;
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let (now, later) = rest.split_at(rest.len().min(BLOCK - self.filling.len()));
            self.filling.extend_from_slice(now);
            rest = later;
            if self.filling.len() == BLOCK {
                self.send_block().await?;
            }
        }
        Ok(())
    }

    /// Hands the gathered block to the stages and starts another.
    async fn send_block(&mut self) -> Result<()> {
        let next = self.pool.take();
        let block = Arc::new(Block { bytes: std::mem::replace(&mut self.filling, next), pool: Arc::clone(&self.pool) });
        // Hashing starts on its thread while the block is written here.
        self.check(Arc::clone(&block)).await?;
        self.writes.push(block).await
    }

    /// Hands a block to every stage but the writer: whatever hashes or checks the body.
    async fn check(&mut self, block: Arc<Block>) -> Result<()> {
        // The stages share the block: a clone is a reference count.
        if let Some(md5) = &mut self.md5 {
            md5.push(Arc::clone(&block)).await?;
        }
        self.sha256.push(block).await
    }

    /// Waits until every byte is hashed and written, and returns the digests of them all.
    pub(super) async fn finish(mut self) -> Result<Digests> {
        if !self.filling.is_empty() {
            self.send_block().await?;
        }
        let md5 = match self.md5 {
            Some(md5) => Some(md5.finish().await?),
            None => None,
        };
        self.writes.finish().await?;
        let sha256 = self.sha256.finish().await?;
        Ok(Digests { sha256, md5 })
    }
}

/// What a stage does with every chunk, in order, and what it gives at the end.
trait Consumer: Send + 'static {
    type Output: Send + 'static;
    fn take(&mut self, chunk: &[u8]) -> Result<()>;
    fn finish(self) -> Result<Self::Output>;
}

impl Consumer for Sha256 {
    type Output = [u8; 32];

    fn take(&mut self, chunk: &[u8]) -> Result<()> {
        self.update(chunk);
        Ok(())
    }

    fn finish(self) -> Result<[u8; 32]> {
        Ok(self.finalize().into())
    }
}

impl Consumer for Md5 {
    type Output = [u8; 16];

    fn take(&mut self, chunk: &[u8]) -> Result<()> {
        self.update(chunk);
        Ok(())
    }

    fn finish(self) -> Result<[u8; 16]> {
        Ok(self.finalize().into())
    }
}

/// Writes the blocks to the file.
struct FileWriter {
    file: BufWriter<File>,
    path: PathBuf,
    /// None once handed to the writer that goes on elsewhere.
    flusher: Option<Flusher>,
    written: u64,
    flushed: u64,
}

impl FileWriter {
    fn new(file: File, path: PathBuf) -> Result<Self> {
        Ok(Self {
            flusher: Some(Flusher::start(&path)?),
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            path,
            written: 0,
            flushed: 0,
        })
    }

    /// A writer going on from where this one is, through a second handle to the same open file
    /// (which shares its position), for a thread. It takes the flusher along.
    fn go_on_elsewhere(&mut self) -> Result<Self> {
        self.file.flush().map_err(|err| self.failed(&err))?;
        let file = self.file.get_ref().try_clone().map_err(|err| self.failed(&err))?;
        let flusher = match self.flusher.take() {
            Some(flusher) => flusher,
            None => Flusher::start(&self.path)?,
        };
        Ok(Self {
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            path: self.path.clone(),
            flusher: Some(flusher),
            written: self.written,
            flushed: self.flushed,
        })
    }

    fn failed(&self, err: &std::io::Error) -> Error {
        Error::io(format!("writing '{}'", self.path.display()), err)
    }
}

impl Consumer for FileWriter {
    /// The flusher, to stop once the writer's own handle is closed (see `Writes::finish`).
    type Output = Option<Flusher>;

    fn take(&mut self, chunk: &[u8]) -> Result<()> {
        self.file.write_all(chunk).map_err(|err| self.failed(&err))?;
        self.written += chunk.len() as u64;
        if self.written - self.flushed >= FLUSH_EVERY {
            self.file.flush().map_err(|err| self.failed(&err))?;
            if let Some(flusher) = &self.flusher {
                flusher.nudge();
            }
            self.flushed = self.written;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Option<Flusher>> {
        self.file.flush().map_err(|err| self.failed(&err))?;
        Ok(self.flusher.take())
    }
}

/// Where a download's writes happen.
enum Writes {
    /// On the receiving task, right after each block is gathered.
    OnWorker { writer: FileWriter, slow_write: Duration, _slot: WorkerSlot },
    /// On a thread of their own, through a short queue.
    OnThread(Stage<FileWriter>),
}

impl Writes {
    async fn push(&mut self, block: Arc<Block>) -> Result<()> {
        match self {
            Writes::OnThread(stage) => stage.push(block).await,
            Writes::OnWorker { writer, slow_write, .. } => {
                let started = Instant::now();
                writer.take(&block.bytes)?;
                if started.elapsed() >= *slow_write {
                    // Moving is only for the workers' sake: when it cannot be done (no handle
                    // left, or a flush failed, which the next write or the last flush reports),
                    // the writes stay here.
                    if let Ok(moved) = writer.go_on_elsewhere() {
                        *self = Writes::OnThread(Stage::start(moved));
                    }
                }
                Ok(())
            }
        }
    }

    /// Waits until every byte is written and every handle to the file but the `PartFile`'s is
    /// closed.
    async fn finish(self) -> Result<()> {
        let flusher = match self {
            Writes::OnWorker { writer, .. } => writer.finish()?,
            Writes::OnThread(stage) => stage.finish().await?,
        };
        if let Some(flusher) = flusher {
            flusher.stop().await;
        }
        Ok(())
    }

    #[cfg(test)]
    fn on_worker(&self) -> bool {
        matches!(self, Writes::OnWorker { .. })
    }
}

/// Downloads writing on the runtime's workers right now.
static WRITING_ON_WORKERS: AtomicUsize = AtomicUsize::new(0);

/// A download's turn to write on the runtime's workers. Turns are fewer than the workers, so
/// that one worker is always free whatever the destinations do.
struct WorkerSlot(&'static AtomicUsize);

impl WorkerSlot {
    /// A turn on the current runtime's workers, when one is free. None outside a runtime, or on
    /// a runtime of one worker.
    fn claim() -> Option<Self> {
        let workers = tokio::runtime::Handle::try_current().map_or(0, |runtime| runtime.metrics().num_workers());
        Self::claim_from(&WRITING_ON_WORKERS, workers)
    }

    /// A turn among `workers`, counted in `writing`.
    fn claim_from(writing: &'static AtomicUsize, workers: usize) -> Option<Self> {
        writing
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| (now + 1 < workers).then_some(now + 1))
            .ok()
            .map(|_| Self(writing))
    }
}

impl Drop for WorkerSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Blocks of the body, kept for reuse while the download runs.
#[derive(Default)]
struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl Pool {
    fn take(&self) -> Vec<u8> {
        let reused = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        reused.unwrap_or_else(|| Vec::with_capacity(BLOCK))
    }
}

/// A gathered block on its way through the stages; back to the pool when the last is done.
struct Block {
    bytes: Vec<u8>,
    pool: Arc<Pool>,
}

impl Drop for Block {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.bytes);
        bytes.clear();
        self.pool.free.lock().unwrap_or_else(|e| e.into_inner()).push(bytes);
    }
}

/// A consumer on a blocking thread of its own, fed through a short queue.
struct Stage<C: Consumer> {
    chunks: mpsc::Sender<Arc<Block>>,
    done: JoinHandle<Result<C::Output>>,
}

impl<C: Consumer> Stage<C> {
    fn start(mut consumer: C) -> Self {
        let (chunks, mut incoming) = mpsc::channel::<Arc<Block>>(CHUNKS_IN_FLIGHT);
        let done = tokio::task::spawn_blocking(move || {
            while let Some(block) = incoming.blocking_recv() {
                consumer.take(&block.bytes)?;
            }
            consumer.finish()
        });
        Self { chunks, done }
    }

    async fn push(&mut self, block: Arc<Block>) -> Result<()> {
        if self.chunks.send(block).await.is_err() {
            // The thread stopped early: its error says why.
            let stopped = (&mut self.done).await;
            return Err(stopped.map_or_else(stage_panicked, |result| result.err().unwrap_or_else(lost)));
        }
        Ok(())
    }

    async fn finish(self) -> Result<C::Output> {
        drop(self.chunks);
        self.done.await.map_err(stage_panicked)?
    }
}

/// Pushes written bytes to the disk on its own thread while the writer goes on. It stops when
/// dropped (once the sync it is doing, if any, is done), or with `stop`.
struct Flusher {
    nudges: std::sync::mpsc::SyncSender<()>,
    thread: JoinHandle<()>,
}

impl Flusher {
    fn start(path: &Path) -> Result<Self> {
        // Its own open file, not a clone of the writer's handle: a write-back error is reported
        // once per open file, and the final sync must still see one that a flush ran into.
        let file = File::options()
            .write(true)
            .open(path)
            .map_err(|err| Error::io(format!("opening '{}' again", path.display()), &err))?;
        let (nudges, incoming) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = tokio::task::spawn_blocking(move || {
            while incoming.recv().is_ok() {
                // Only a head start: the final sync (which is checked) flushes whatever this missed.
                let _ = file.sync_data();
            }
        });
        Ok(Self { nudges, thread })
    }

    /// Stops the thread and waits until it has closed its handle to the file. On Windows a
    /// handle open for writing keeps other programs from opening the file to read it (they
    /// share reading, not writing): the finished package must have none left when the download
    /// returns.
    async fn stop(self) {
        drop(self.nudges);
        let _ = self.thread.await;
    }

    /// Asks for a flush, unless one is already waiting to start.
    fn nudge(&self) {
        let _ = self.nudges.try_send(());
    }
}

fn stage_panicked(err: tokio::task::JoinError) -> Error {
    Error::internal(format!("hashing or writing the download failed unexpectedly: {err}"))
}

fn lost() -> Error {
    Error::internal("a stage of the download stopped without an error")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where a test sink writes: on a thread from the start, on the worker throughout, or on the
    /// worker until its first write, then (every write being "slow") on a thread.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Place {
        Thread,
        Worker,
        WorkerThenThread,
    }

    const PLACES: [Place; 3] = [Place::Thread, Place::Worker, Place::WorkerThenThread];

    fn sink(file: File, path: &Path, with_md5: bool, place: Place) -> Sink {
        // A counter of the test's own, with room for every test at once: the library's counter
        // is for the library's runtime.
        static WRITING: AtomicUsize = AtomicUsize::new(0);
        let slot = (place != Place::Thread).then(|| WorkerSlot::claim_from(&WRITING, usize::MAX).unwrap());
        let slow_write = if place == Place::WorkerThenThread { Duration::ZERO } else { Duration::from_secs(3600) };
        Sink::writing(file, path.to_path_buf(), with_md5, slot, slow_write).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_every_byte_in_order_and_hashes_them_wherever_it_writes() {
        let folder = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..(3 * WRITE_BUFFER + 12_345)).map(|i| (i * 7 % 251) as u8).collect();
        for place in PLACES {
            let path = folder.path().join(format!("{place:?}"));
            let mut sink = sink(File::create(&path).unwrap(), &path, true, place);
            // Pieces of awkward sizes, smaller and larger than the write buffer.
            for piece in bytes[..100_000].chunks(999).chain(bytes[100_000..].chunks(300_001)) {
                sink.push(Bytes::copy_from_slice(piece)).await.unwrap();
            }
            assert_eq!(sink.received(), bytes.len() as u64);
            assert_eq!(sink.writes.on_worker(), place == Place::Worker, "{place:?}");
            let digests = sink.finish().await.unwrap();
            assert!(std::fs::read(&path).unwrap() == bytes, "{place:?}: the file differs");
            assert_eq!(digests.sha256, <[u8; 32]>::from(Sha256::digest(&bytes)), "{place:?}");
            assert_eq!(digests.md5, Some(<[u8; 16]>::from(Md5::digest(&bytes))), "{place:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sink_resuming_from_bytes_on_disk_hashes_them_and_writes_only_the_rest() {
        let folder = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..(2 * BLOCK + 5_000)).map(|i| (i * 13 % 251) as u8).collect();
        for have in [1, BLOCK, BLOCK + 4_321] {
            let path = folder.path().join(format!("part-{have}"));
            // What the earlier download left, then a handle where it goes on.
            std::fs::write(&path, &bytes[..have]).unwrap();
            let mut file = File::options().write(true).open(&path).unwrap();
            std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(have as u64)).unwrap();
            let mut sink = Sink::resuming(file, path.clone(), have as u64, true).await.unwrap();
            assert_eq!(sink.received(), have as u64);
            for piece in bytes[have..].chunks(70_001) {
                sink.push(Bytes::copy_from_slice(piece)).await.unwrap();
            }
            let digests = sink.finish().await.unwrap();
            assert!(std::fs::read(&path).unwrap() == bytes, "{have}: the file differs");
            assert_eq!(digests.sha256, <[u8; 32]>::from(Sha256::digest(&bytes)), "{have}");
            assert_eq!(digests.md5, Some(<[u8; 16]>::from(Md5::digest(&bytes))), "{have}");
        }
        // Fewer bytes on disk than said: an error, not a wrong digest.
        let path = folder.path().join("short");
        std::fs::write(&path, b"abc").unwrap();
        let file = File::options().append(true).open(&path).unwrap();
        let error = Sink::resuming(file, path, 10, false).await.err().expect("too short");
        assert!(error.message().contains("ended after 3 of the 10 bytes"), "{error}");
    }

    /// The sink's handles to `path` still open (Linux: the process's descriptors that name it).
    #[cfg(target_os = "linux")]
    fn open_handles(path: &Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter(|target| target == path)
            .count()
    }

    /// When the sink is finished, none of its handles to the file is left: on Windows one open
    /// for writing (the flusher's, closed by its thread when it notices) kept other programs from
    /// reading the package just saved, until it went.
    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_handle_to_the_file_is_left_when_finished() {
        let folder = tempfile::tempdir().unwrap();
        for place in PLACES {
            let path = folder.path().join(format!("{place:?}"));
            // The sink's own handle (as PartFile::start_over gives it) and the flusher's.
            let mut sink = sink(File::create(&path).unwrap(), &path, false, place);
            for _ in 0..8 {
                sink.push(Bytes::from(vec![7; 100_000])).await.unwrap();
            }
            sink.finish().await.unwrap();
            assert_eq!(open_handles(&path), 0, "{place:?}");
        }
    }

    #[test]
    fn one_worker_is_always_left_free_of_writes() {
        static WRITING: AtomicUsize = AtomicUsize::new(0);
        assert!(WorkerSlot::claim_from(&WRITING, 1).is_none(), "a runtime of one worker writes on threads");
        let first = WorkerSlot::claim_from(&WRITING, 3).expect("three workers: two may write");
        let second = WorkerSlot::claim_from(&WRITING, 3).expect("three workers: two may write");
        assert!(WorkerSlot::claim_from(&WRITING, 3).is_none(), "the third worker stays free");
        drop(first);
        let third = WorkerSlot::claim_from(&WRITING, 3).expect("a finished download gives its turn back");
        drop((second, third));
        assert_eq!(WRITING.load(Ordering::Acquire), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_fails_is_an_io_error_wherever_it_writes() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("out");
        std::fs::write(&path, b"").unwrap();
        for place in PLACES {
            // A handle that cannot write.
            let mut sink = sink(File::open(&path).unwrap(), &path, false, place);
            let mut outcome = Ok(());
            for _ in 0..(4 * CHUNKS_IN_FLIGHT) {
                outcome = sink.push(Bytes::from(vec![0u8; WRITE_BUFFER])).await;
                if outcome.is_err() {
                    break;
                }
            }
            let error = match outcome {
                Err(error) => error,
                Ok(()) => sink.finish().await.err().expect("the write fails"),
            };
            assert_eq!(error.status(), crate::DefenderStatus::Io, "{place:?}: {error}");
            assert!(error.message().contains("writing"), "{place:?}: {error}");
        }
    }
}
