//! Where a download's bytes go. The chunks the connection gives are gathered into blocks, and
//! each block is handed (not copied again) to threads that work side by side with the receiving
//! one: one hashes it (SHA-256), one writes it to the file, one computes the MD5 when there is
//! one to check. Another flushes what is written to the disk as the download goes, so that the
//! disk works alongside too and the final sync has little left to do. On a fast link the costs
//! of a download then overlap instead of adding up, and memory stays at a few blocks in flight
//! whatever the package size.
//!
//! The blocks come from a small pool and go back to it, so a download reuses the same few MiB
//! from start to end. The connection's own buffer is freed as soon as its bytes are copied into
//! a block, and the next read fills that same, cache-hot memory again. Handing the connection's
//! buffers themselves to the stages (as this did before) cost more than the copy saves: each was
//! a fresh allocation of up to 400 KiB that the allocator got from the kernel as zeroed pages
//! and gave back (see the notes in docs/benchmarks.md).
//!
//! SHA-256 (about half a CPU second per GiB with the CPU's SHA instructions) and the write each
//! have a thread: on one thread together they were the slowest stage, as slow as all of curl.
//! Measured both ways in alternating runs, apart they use the same CPU time and finish sooner.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use md5::Md5;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// Blocks queued for each stage: with `BLOCK`, this bounds the memory a download holds to a few MiB.
const CHUNKS_IN_FLIGHT: usize = 4;
/// The body is gathered into blocks of this size: one write and one hand-off to each stage per
/// MiB. Each hand-off can wake a sleeping thread; with 256 KiB blocks those wake-ups cost about
/// 0.05 CPU s/GiB more (see docs/benchmarks.md), and the blocks still fit the cores' caches.
const BLOCK: usize = 1024 * 1024;
/// The file is written through a buffer of this size: whole blocks go straight through.
const WRITE_BUFFER: usize = BLOCK;
/// Written bytes after which the flusher is asked to push them to the disk.
const FLUSH_EVERY: u64 = 64 * 1024 * 1024;

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
    writer: Stage<FileWriter>,
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
        let writer = FileWriter {
            flusher: Flusher::start(&path)?,
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            path,
            written: 0,
            flushed: 0,
        };
        let pool = Arc::new(Pool::default());
        Ok(Self {
            sha256: Stage::start(Sha256::new()),
            writer: Stage::start(writer),
            md5: with_md5.then(|| Stage::start(Md5::new())),
            filling: pool.take(),
            pool,
            received: 0,
        })
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
        // The stages share the block: a clone is a reference count.
        if let Some(md5) = &mut self.md5 {
            md5.push(Arc::clone(&block)).await?;
        }
        self.sha256.push(Arc::clone(&block)).await?;
        self.writer.push(block).await
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
        self.writer.finish().await?;
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
    flusher: Flusher,
    written: u64,
    flushed: u64,
}

impl FileWriter {
    fn failed(&self, err: &std::io::Error) -> Error {
        Error::io(format!("writing '{}'", self.path.display()), err)
    }
}

impl Consumer for FileWriter {
    type Output = ();

    fn take(&mut self, chunk: &[u8]) -> Result<()> {
        self.file.write_all(chunk).map_err(|err| self.failed(&err))?;
        self.written += chunk.len() as u64;
        if self.written - self.flushed >= FLUSH_EVERY {
            self.file.flush().map_err(|err| self.failed(&err))?;
            self.flusher.nudge();
            self.flushed = self.written;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.file.flush().map_err(|err| self.failed(&err))
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
/// dropped (once the sync it is doing, if any, is done).
struct Flusher {
    nudges: std::sync::mpsc::SyncSender<()>,
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
        tokio::task::spawn_blocking(move || {
            while incoming.recv().is_ok() {
                // Only a head start: the final sync (which is checked) flushes whatever this missed.
                let _ = file.sync_data();
            }
        });
        Ok(Self { nudges })
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_every_byte_in_order_and_hashes_them() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("out");
        let bytes: Vec<u8> = (0..(3 * WRITE_BUFFER + 12_345)).map(|i| (i * 7 % 251) as u8).collect();
        let mut sink = Sink::new(File::create(&path).unwrap(), path.clone(), true).unwrap();
        // Pieces of awkward sizes, smaller and larger than the write buffer.
        for piece in bytes[..100_000].chunks(999).chain(bytes[100_000..].chunks(300_001)) {
            sink.push(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        assert_eq!(sink.received(), bytes.len() as u64);
        let digests = sink.finish().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert_eq!(digests.sha256, <[u8; 32]>::from(Sha256::digest(&bytes)));
        assert_eq!(digests.md5, Some(<[u8; 16]>::from(Md5::digest(&bytes))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_fails_is_an_io_error() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("out");
        std::fs::write(&path, b"").unwrap();
        // A handle that cannot write.
        let mut sink = Sink::new(File::open(&path).unwrap(), path.clone(), false).unwrap();
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
        assert_eq!(error.status(), crate::DefenderStatus::Io, "{error}");
        assert!(error.message().contains("writing"), "{error}");
    }
}
