//! Where a download's bytes go: gathered into blocks, and each block hashed and written on a
//! blocking thread while the next one arrives. Hashing then costs no throughput as long as it
//! keeps up with the network, and memory stays at two blocks whatever the package size.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use md5::Md5;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// Bytes gathered before each write: few large writes for the disk, few hand-overs between
/// threads, and little memory (two blocks per download).
const BLOCK: usize = 1024 * 1024;

/// The digests of every byte written, in order.
pub struct Digests {
    pub sha256: [u8; 32],
    /// Only when the sink was asked for it (the server sent an MD5 to check against).
    pub md5: Option<[u8; 16]>,
}

/// Receives a body in order and writes it to a file from its current position.
///
/// Dropping a sink (a cancelled download) leaves at most one block being written on its own;
/// the file's name belongs to the `PartFile`, which removes it.
pub struct Sink {
    /// Bytes waiting for the next hand-over, at most `BLOCK`.
    block: Vec<u8>,
    writer: WriterState,
    received: u64,
}

enum WriterState {
    Idle(Box<Writer>),
    /// Writing a block; gives the writer back with the block's outcome.
    Busy(JoinHandle<(Box<Writer>, Result<()>)>),
    /// Only while switching between the two.
    Switching,
}

/// What the blocking side owns: the file, the hashers and the spare block.
struct Writer {
    file: File,
    path: PathBuf,
    sha256: Sha256,
    md5: Option<Md5>,
    spare: Vec<u8>,
}

impl Writer {
    fn write(&mut self, block: &[u8]) -> Result<()> {
        self.sha256.update(block);
        if let Some(md5) = &mut self.md5 {
            md5.update(block);
        }
        self.file.write_all(block).map_err(|err| Error::io(format!("writing '{}'", self.path.display()), &err))
    }
}

impl Sink {
    /// A sink writing to `file` (positioned where the body starts), computing MD5 as well as
    /// SHA-256 when `with_md5`. `path` names the file in messages.
    pub fn new(file: File, path: PathBuf, with_md5: bool) -> Self {
        let writer = Box::new(Writer {
            file,
            path,
            sha256: Sha256::new(),
            md5: with_md5.then(Md5::new),
            spare: Vec::with_capacity(BLOCK),
        });
        Self { block: Vec::with_capacity(BLOCK), writer: WriterState::Idle(writer), received: 0 }
    }

    /// Bytes received so far (written, or on their way).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Takes the next bytes of the body. Waits only when the previous block is still being written.
    pub async fn push(&mut self, mut bytes: &[u8]) -> Result<()> {
        self.received += bytes.len() as u64;
        while !bytes.is_empty() {
            let (now, later) = bytes.split_at((BLOCK - self.block.len()).min(bytes.len()));
            self.block.extend_from_slice(now);
            bytes = later;
            if self.block.len() == BLOCK {
                self.hand_over().await?;
            }
        }
        Ok(())
    }

    /// Writes what is left and returns the digests of everything written.
    pub async fn finish(mut self) -> Result<Digests> {
        if !self.block.is_empty() {
            self.hand_over().await?;
        }
        let writer = self.idle_writer().await?;
        Ok(Digests { sha256: writer.sha256.finalize().into(), md5: writer.md5.map(|md5| md5.finalize().into()) })
    }

    /// Starts writing the gathered block on a blocking thread; the spare block takes its place.
    async fn hand_over(&mut self) -> Result<()> {
        let mut writer = self.idle_writer().await?;
        let block = std::mem::replace(&mut self.block, std::mem::take(&mut writer.spare));
        self.writer = WriterState::Busy(tokio::task::spawn_blocking(move || {
            let result = writer.write(&block);
            writer.spare = block;
            writer.spare.clear();
            (writer, result)
        }));
        Ok(())
    }

    /// The writer, once the block it is writing (if any) is written.
    async fn idle_writer(&mut self) -> Result<Box<Writer>> {
        match std::mem::replace(&mut self.writer, WriterState::Switching) {
            WriterState::Idle(writer) => Ok(writer),
            WriterState::Busy(job) => {
                let (writer, result) =
                    job.await.map_err(|err| Error::internal(format!("writing a block failed unexpectedly: {err}")))?;
                result.map(|()| writer)
            }
            WriterState::Switching => Err(Error::internal("the download's writer was lost after an earlier failure")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_every_byte_in_order_and_hashes_them() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("out");
        let bytes: Vec<u8> = (0..(3 * BLOCK + 12_345)).map(|i| (i * 7 % 251) as u8).collect();
        let mut sink = Sink::new(File::create(&path).unwrap(), path.clone(), true);
        // Pieces of awkward sizes, across block boundaries.
        for piece in bytes.chunks(65_537) {
            sink.push(piece).await.unwrap();
        }
        assert_eq!(sink.received(), bytes.len() as u64);
        let digests = sink.finish().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert_eq!(digests.sha256, <[u8; 32]>::from(Sha256::digest(&bytes)));
        assert_eq!(digests.md5, Some(<[u8; 16]>::from(Md5::digest(&bytes))));
    }
}
