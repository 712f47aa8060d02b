//! The streaming ZIP check: every byte of a package, as it arrives, against what the package's
//! producer wrote about it. A stage of the sink's pipeline (`sink.rs`), on a thread of its own.
//!
//! It reads the archive front to back, as a stream of records (APPNOTE.TXT 4.3), and holds no
//! more than one record's fixed part, name and extra field (at most 128 KiB, bounded by the
//! format) plus a fixed-size note per entry:
//!
//! - the archive starts with a local file header (no leading junk);
//! - each entry's data, stored or deflated (inflated as it streams), has the CRC-32 and the
//!   sizes its local header (or its data descriptor) gives, ZIP64 fields included;
//! - the central directory follows the entries and agrees with their local headers (the same
//!   entries, each once: offset, name, CRC-32, sizes), and ends where the end record says (its
//!   offset, size and entry count, ZIP64 end record and locator when present);
//! - nothing follows the end record but its comment (no trailing junk).
//!
//! Entries of another method (deflate64, bzip2, LZMA, ...) and encrypted ones are checked for
//! structure and sizes, not CRC-32 (the check would need their decoder, or their key): the
//! summary counts them and the download logs it. An entry whose size only its data descriptor
//! gives is followed to its end by the deflate stream when deflated; when stored (as Python's
//! zipfile writes to a stream), by the first signed descriptor whose CRC-32 and sizes are those
//! of the bytes before it. Such an entry of another method cannot be delimited, and is refused.
//!
//! What it keeps is bounded by ceilings that no investigation package comes near (a few
//! thousand entries, a directory of a megabyte or so): [`MAX_ENTRIES`] entries (40 bytes each,
//! 5 MiB at most, as the list grows by doubling), a central directory of
//! [`MAX_DIRECTORY_BYTES`], and [`MAX_INFLATED_BYTES`] inflated in all. Passing one is
//! `INTEGRITY` naming it (docs/hostile-servers.md, Limits).

use std::hash::{DefaultHasher, Hash, Hasher};

use flate2::{Decompress, FlushDecompress, Status};

use crate::error::{Error, Result};
use crate::redact::printable;

/// The most entries an archive may have: each costs a note of 40 bytes until the central
/// directory is checked.
pub(crate) const MAX_ENTRIES: usize = 100_000;
/// The largest central directory (with its comments) an archive may have.
pub(crate) const MAX_DIRECTORY_BYTES: u64 = 64 << 20;
/// The most bytes an archive's deflated entries may inflate to, in all: the same as the largest
/// package a download accepts (1 TiB), and far beyond any package.
pub(crate) const MAX_INFLATED_BYTES: u64 = 1 << 40;
/// An entry's name in a message: at most this many characters.
const NAME_CHARS: usize = 200;
/// Inflated bytes are checked through a buffer of this size.
const SCRATCH: usize = 64 * 1024;

const LOCAL: u32 = 0x0403_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const DESCRIPTOR: u32 = 0x0807_4b50;
const ZIP64_END: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const END: u32 = 0x0605_4b50;
const DIGITAL_SIGNATURE: u32 = 0x0505_4b50;
const ZIP64_EXTRA: u16 = 0x0001;
const STORED: u16 = 0;
const DEFLATED: u16 = 8;
const FLAG_ENCRYPTED: u16 = 1;
const FLAG_DESCRIPTOR: u16 = 1 << 3;
const MARK16: u16 = u16::MAX;
const MARK32: u32 = u32::MAX;

/// What the check found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ZipSummary {
    pub entries: u64,
    /// Entries whose CRC-32 could not be computed (another method, or encrypted).
    pub unchecked: u64,
    /// The first of them, and why.
    pub first_unchecked: Option<String>,
}

/// An entry, as its local header and data said: what the central directory must repeat.
struct Entry {
    offset: u64,
    compressed: u64,
    uncompressed: u64,
    name: u64,
    crc: u32,
    listed: bool,
}

/// How an entry's data is read.
enum Reader {
    /// Stored: this many bytes left.
    Stored(u64),
    /// Deflated: inflated until the stream ends.
    Inflate,
    /// Not checked: this many bytes left.
    Skip(u64),
    /// Stored, its size only in the data descriptor after it: read until a signed descriptor
    /// whose CRC-32 and sizes are those of the bytes before it. `pending`: the last bytes seen,
    /// which may be the start of that descriptor (a descriptor's length at most).
    Scan(Vec<u8>),
}

/// The entry being read.
struct Current {
    offset: u64,
    method: u16,
    name: String,
    name_hash: u64,
    flags: u16,
    crc: u32,
    compressed: u64,
    uncompressed: u64,
    zip64: bool,
    checked: bool,
    reader: Reader,
    computed: crc32fast::Hasher,
    consumed: u64,
    produced: u64,
}

impl Current {
    fn what(&self) -> String {
        format!("entry '{}' (at byte {})", self.name, self.offset)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Signature,
    LocalFixed,
    LocalNames { name: usize },
    Data,
    Descriptor,
    DescriptorRest { signed: bool },
    CentralFixed,
    CentralNames { name: usize, comment: u16 },
    SignatureLength,
    Zip64End,
    Zip64Locator,
    End,
    Skip { remaining: u64, then_done: bool },
    Done,
}

/// Where the archive is, as far as the order of records goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Entries,
    Directory,
    /// After a digital signature: only end records follow.
    Signed,
    Zip64End,
    Zip64Locator,
}

/// What the ZIP64 end record said.
struct Zip64End {
    entries: u64,
    size: u64,
    offset: u64,
    at: u64,
}

/// The check, fed the archive's bytes in order from byte 0 (see the module's documentation).
pub(crate) struct ZipCheck {
    position: u64,
    /// Where the record being read starts.
    mark: u64,
    state: State,
    need: usize,
    buf: Vec<u8>,
    phase: Phase,
    entries: Vec<Entry>,
    current: Option<Current>,
    /// The fixed part of the central directory header being read.
    central_head: [u8; 42],
    listed: usize,
    directory_start: Option<u64>,
    directory_end: Option<u64>,
    zip64_end: Option<Zip64End>,
    inflate: Option<Box<Decompress>>,
    scratch: Vec<u8>,
    inflated: u64,
    summary: ZipSummary,
}

impl Default for ZipCheck {
    fn default() -> Self {
        Self::new()
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

fn name_hash(name: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    name.hash(&mut hasher);
    hasher.finish()
}

fn shown(name: &[u8]) -> String {
    printable(&String::from_utf8_lossy(name), NAME_CHARS)
}

fn broken(message: impl std::fmt::Display) -> Error {
    Error::integrity(format!("the package is not a sound ZIP archive: {message}"))
}

/// The ZIP64 extended information of an extra field, for the fields that hold the marker: each
/// of `wanted` (in the order of the record) is `Some(value)` to replace, `None` to leave.
fn zip64_values(extra: &[u8], wanted: &mut [(bool, &mut u64)], what: &str) -> Result<bool> {
    let mut rest = extra;
    while rest.len() >= 4 {
        let id = u16_at(rest, 0);
        let size = usize::from(u16_at(rest, 2));
        let Some(data) = rest.get(4..4 + size) else {
            return Err(broken(format!("{what}: its extra field is cut short")));
        };
        if id == ZIP64_EXTRA {
            let mut at = 0;
            for (marked, value) in wanted.iter_mut() {
                if *marked {
                    let Some(bytes) = data.get(at..at + 8) else {
                        return Err(broken(format!("{what}: its ZIP64 extra field is too short")));
                    };
                    **value = u64_at(bytes, 0);
                    at += 8;
                }
            }
            return Ok(true);
        }
        rest = &rest[4 + size..];
    }
    if wanted.iter().any(|(marked, _)| *marked) {
        return Err(broken(format!("{what}: a size or offset says see ZIP64, and there is no ZIP64 extra field")));
    }
    Ok(false)
}

impl ZipCheck {
    pub(crate) fn new() -> Self {
        Self {
            position: 0,
            mark: 0,
            state: State::Signature,
            need: 4,
            buf: Vec::with_capacity(64),
            phase: Phase::Entries,
            entries: Vec::new(),
            current: None,
            central_head: [0; 42],
            listed: 0,
            directory_start: None,
            directory_end: None,
            zip64_end: None,
            inflate: None,
            scratch: Vec::new(),
            inflated: 0,
            summary: ZipSummary::default(),
        }
    }

    /// Takes the next bytes of the archive.
    pub(crate) fn take(&mut self, mut input: &[u8]) -> Result<()> {
        while !input.is_empty() {
            let used = match self.state {
                State::Data => self.data(input)?,
                State::Skip { remaining, then_done } => {
                    let used = remaining.min(input.len() as u64);
                    let remaining = remaining - used;
                    self.position += used;
                    if remaining == 0 {
                        self.expect_signature_or_done(then_done);
                    } else {
                        self.state = State::Skip { remaining, then_done };
                    }
                    self.check_directory_size()?;
                    used as usize
                }
                State::Done => {
                    return Err(broken(format!(
                        "bytes follow the end of the archive (its end record and comment end at byte {})",
                        self.position
                    )));
                }
                _ => {
                    let used = (self.need - self.buf.len()).min(input.len());
                    self.buf.extend_from_slice(&input[..used]);
                    self.position += used as u64;
                    if self.buf.len() == self.need {
                        let mut record = std::mem::take(&mut self.buf);
                        let parsed = self.parsed(&record);
                        record.clear();
                        self.buf = record;
                        parsed?;
                    }
                    used
                }
            };
            input = &input[used..];
        }
        Ok(())
    }

    /// Checks that the archive is whole: it ended with its end record (and comment).
    pub(crate) fn finish(mut self) -> Result<ZipSummary> {
        if self.state == State::Done {
            self.summary.entries = self.entries.len() as u64;
            return Ok(self.summary);
        }
        if self.position == 0 {
            return Err(broken("the download is empty"));
        }
        let inside = match (&self.current, self.phase) {
            (Some(current), _) => current.what(),
            (None, Phase::Entries) => "the entries".to_owned(),
            (None, _) => "the central directory or its end records".to_owned(),
        };
        Err(broken(format!("it ends at byte {} in the middle of {inside}", self.position)))
    }

    fn expect(&mut self, state: State, need: usize) {
        self.state = state;
        self.need = need;
        self.buf.clear();
    }

    fn expect_signature_or_done(&mut self, done: bool) {
        if done {
            self.state = State::Done;
        } else {
            self.mark = self.position;
            self.expect(State::Signature, 4);
        }
    }

    fn check_directory_size(&self) -> Result<()> {
        if let (Some(start), Phase::Directory | Phase::Signed) = (self.directory_start, self.phase) {
            if self.position - start > MAX_DIRECTORY_BYTES {
                return Err(broken(format!(
                    "its central directory is larger than {MAX_DIRECTORY_BYTES} bytes, the most a package is checked \
                     with (a directory bomb?)"
                )));
            }
        }
        Ok(())
    }

    /// A record's part, gathered whole in `record`.
    fn parsed(&mut self, record: &[u8]) -> Result<()> {
        match self.state {
            State::Signature => self.signature(u32_at(record, 0)),
            State::LocalFixed => self.local_fixed(record),
            State::LocalNames { name } => self.local_names(&record[..name], &record[name..]),
            State::Descriptor => {
                let first = u32_at(record, 0);
                let current = self.current.as_mut().expect("a descriptor follows an entry");
                let sizes = if current.zip64 { 16 } else { 8 };
                if first == DESCRIPTOR {
                    self.expect(State::DescriptorRest { signed: true }, 4 + sizes);
                } else {
                    current.crc = first;
                    self.expect(State::DescriptorRest { signed: false }, sizes);
                }
                Ok(())
            }
            State::DescriptorRest { signed } => {
                let current = self.current.as_mut().expect("a descriptor follows an entry");
                let sizes = if signed {
                    current.crc = u32_at(record, 0);
                    &record[4..]
                } else {
                    record
                };
                if current.zip64 {
                    current.compressed = u64_at(sizes, 0);
                    current.uncompressed = u64_at(sizes, 8);
                } else {
                    current.compressed = u64::from(u32_at(sizes, 0));
                    current.uncompressed = u64::from(u32_at(sizes, 4));
                }
                self.end_entry()
            }
            State::CentralFixed => self.central_fixed(record),
            State::CentralNames { name, comment } => {
                self.central_names(&record[..name], &record[name..])?;
                self.skip(u64::from(comment), false);
                self.check_directory_size()
            }
            State::SignatureLength => {
                self.skip(u64::from(u16_at(record, 0)), false);
                Ok(())
            }
            State::Zip64End => self.zip64_end(record),
            State::Zip64Locator => {
                let at = self.zip64_end.as_ref().map(|end| end.at);
                if u32_at(record, 0) != 0 || u32_at(record, 12) > 1 || Some(u64_at(record, 4)) != at {
                    return Err(broken(format!(
                        "its ZIP64 end locator (at byte {}) does not point at the ZIP64 end record",
                        self.mark
                    )));
                }
                self.phase = Phase::Zip64Locator;
                self.expect_signature_or_done(false);
                Ok(())
            }
            State::End => self.end(record),
            State::Data | State::Skip { .. } | State::Done => unreachable!("not gathered"),
        }
    }

    fn skip(&mut self, bytes: u64, then_done: bool) {
        if bytes == 0 {
            self.expect_signature_or_done(then_done);
        } else {
            self.state = State::Skip { remaining: bytes, then_done };
        }
    }

    fn signature(&mut self, signature: u32) -> Result<()> {
        let phase = self.phase;
        match signature {
            LOCAL if phase == Phase::Entries => self.expect(State::LocalFixed, 26),
            CENTRAL if matches!(phase, Phase::Entries | Phase::Directory) => {
                if self.entries.is_empty() {
                    return Err(broken("it starts with a central directory, without any entry before it"));
                }
                if phase == Phase::Entries {
                    self.directory_start = Some(self.mark);
                    self.phase = Phase::Directory;
                }
                self.expect(State::CentralFixed, 42);
            }
            DIGITAL_SIGNATURE if phase == Phase::Directory => {
                self.phase = Phase::Signed;
                self.expect(State::SignatureLength, 2);
            }
            ZIP64_END | END if matches!(phase, Phase::Entries | Phase::Directory | Phase::Signed) => {
                if self.entries.is_empty() {
                    return Err(broken("it holds no entry"));
                }
                if phase == Phase::Entries {
                    return Err(broken(format!("it has no central directory (an end record at byte {})", self.mark)));
                }
                self.directory_end = Some(self.mark);
                if signature == ZIP64_END {
                    self.expect(State::Zip64End, 52);
                } else {
                    self.expect(State::End, 18);
                }
            }
            END if phase == Phase::Zip64Locator => self.expect(State::End, 18),
            ZIP64_LOCATOR if phase == Phase::Zip64End => self.expect(State::Zip64Locator, 16),
            _ if self.mark == 0 => {
                let gzip = signature & 0xFFFF == 0x8b1f;
                return Err(broken(format!(
                    "it does not start with a ZIP local file header (its first bytes are {:02x} {:02x} {:02x} {:02x}{})",
                    signature & 0xFF,
                    (signature >> 8) & 0xFF,
                    (signature >> 16) & 0xFF,
                    signature >> 24,
                    if gzip { ": a gzip stream" } else { "" }
                )));
            }
            _ => {
                let place = match (phase, self.entries.last()) {
                    (Phase::Entries, Some(_)) => "after the last entry's data".to_owned(),
                    (Phase::Entries, None) => "after the first header".to_owned(),
                    _ => "in the central directory or its end records".to_owned(),
                };
                return Err(broken(format!(
                    "unexpected bytes at byte {} {place}, where a ZIP record should start (signature {signature:#010x})",
                    self.mark
                )));
            }
        }
        Ok(())
    }

    fn local_fixed(&mut self, record: &[u8]) -> Result<()> {
        if self.entries.len() >= MAX_ENTRIES {
            return Err(broken(format!(
                "it has more than {MAX_ENTRIES} entries, the most a package is checked with (a directory bomb?)"
            )));
        }
        let name = usize::from(u16_at(record, 22));
        let extra = usize::from(u16_at(record, 24));
        self.current = Some(Current {
            offset: self.mark,
            method: u16_at(record, 4),
            name: String::new(),
            name_hash: 0,
            flags: u16_at(record, 2),
            crc: u32_at(record, 10),
            compressed: u64::from(u32_at(record, 14)),
            uncompressed: u64::from(u32_at(record, 18)),
            zip64: false,
            checked: false,
            reader: Reader::Skip(0),
            computed: crc32fast::Hasher::new(),
            consumed: 0,
            produced: 0,
        });
        if name + extra == 0 {
            self.local_names(&[], &[])
        } else {
            self.expect(State::LocalNames { name }, name + extra);
            Ok(())
        }
    }

    fn local_names(&mut self, name: &[u8], extra: &[u8]) -> Result<()> {
        let mut current = self.current.take().expect("a local header is being read");
        current.name = shown(name);
        current.name_hash = name_hash(name);
        let method = current.method;
        let what = current.what();
        let (mut compressed, mut uncompressed) = (current.compressed, current.uncompressed);
        current.zip64 = zip64_values(
            extra,
            &mut [
                (uncompressed == u64::from(MARK32), &mut uncompressed),
                (compressed == u64::from(MARK32), &mut compressed),
            ],
            &what,
        )?;
        current.compressed = compressed;
        current.uncompressed = uncompressed;
        let descriptor = current.flags & FLAG_DESCRIPTOR != 0;
        // With a descriptor, the local sizes are usually zero: the descriptor has them.
        let known = (!descriptor || compressed != 0).then_some(compressed);
        let encrypted = current.flags & FLAG_ENCRYPTED != 0;
        current.reader = match (method, known) {
            (DEFLATED, _) if !encrypted => {
                current.checked = true;
                Reader::Inflate
            }
            (STORED, Some(size)) if !encrypted => {
                current.checked = true;
                Reader::Stored(size)
            }
            // Stored, its size only in the descriptor (as a stream writer stores): read until
            // the descriptor that describes the bytes before it.
            (STORED, None) if !encrypted => {
                current.checked = true;
                Reader::Scan(Vec::new())
            }
            (_, Some(size)) => {
                self.summary.unchecked += 1;
                if self.summary.first_unchecked.is_none() {
                    let why = if encrypted { "encrypted".to_owned() } else { format!("compression method {method}") };
                    self.summary.first_unchecked = Some(format!("{what}: {why}"));
                }
                Reader::Skip(size)
            }
            (_, None) => {
                return Err(broken(format!(
                    "{what} gives its size only after its data (in a data descriptor), and its method ({method}{}) \
                     cannot be followed to its end as it streams",
                    if encrypted { ", encrypted" } else { "" }
                )));
            }
        };
        let empty = matches!(current.reader, Reader::Stored(0) | Reader::Skip(0));
        self.current = Some(current);
        if matches!(self.current.as_ref().map(|c| &c.reader), Some(Reader::Inflate)) {
            match &mut self.inflate {
                Some(inflate) => inflate.reset(false),
                None => self.inflate = Some(Box::new(Decompress::new(false))),
            }
            if self.scratch.is_empty() {
                self.scratch = vec![0; SCRATCH];
            }
        }
        self.state = State::Data;
        if empty { self.end_of_data() } else { Ok(()) }
    }

    /// Reads entry data from `input`; answers how much it used.
    fn data(&mut self, input: &[u8]) -> Result<usize> {
        let current = self.current.as_mut().expect("data belongs to an entry");
        match &mut current.reader {
            Reader::Stored(remaining) | Reader::Skip(remaining) => {
                let used = (*remaining).min(input.len() as u64);
                let bytes = &input[..used as usize];
                *remaining -= used;
                let done = *remaining == 0;
                if current.checked {
                    current.computed.update(bytes);
                    current.produced += used;
                }
                current.consumed += used;
                self.position += used;
                if done {
                    self.end_of_data()?;
                }
                Ok(used as usize)
            }
            Reader::Inflate => self.inflate(input),
            Reader::Scan(_) => self.scan(input),
        }
    }

    /// Reads a stored entry of unknown size from `input` (see `Reader::Scan`); answers how much of
    /// `input` it used: all of it, or up to the end of the descriptor when it came.
    fn scan(&mut self, input: &[u8]) -> Result<usize> {
        let current = self.current.as_mut().expect("data belongs to an entry");
        let Reader::Scan(pending) = &mut current.reader else { unreachable!("scanning a stored entry") };
        let carried = pending.len();
        let mut window = std::mem::take(pending);
        window.extend_from_slice(input);
        let descriptor = if current.zip64 { 24 } else { 16 };
        let signature = DESCRIPTOR.to_le_bytes();
        let mut committed = 0;
        let mut from = 0;
        let found = loop {
            let Some(at) = window[from..].windows(4).position(|bytes| bytes == signature).map(|at| from + at) else {
                // No signature: all but the last three bytes (the start of one, perhaps) are data.
                break None;
            };
            if window.len() - at < descriptor {
                break Some((at, false));
            }
            current.computed.update(&window[committed..at]);
            current.consumed += (at - committed) as u64;
            committed = at;
            let record = &window[at + 4..at + descriptor];
            let crc = u32_at(record, 0);
            let (compressed, uncompressed) = if current.zip64 {
                (u64_at(record, 4), u64_at(record, 12))
            } else {
                (u64::from(u32_at(record, 4)), u64::from(u32_at(record, 8)))
            };
            let size = current.consumed;
            if compressed == size && uncompressed == size && current.computed.clone().finalize() == crc {
                break Some((at, true));
            }
            // Data that looks like a signature.
            from = at + 1;
        };
        let keep_from = match found {
            Some((at, true)) => {
                current.crc = u32_at(&window, at + 4);
                current.compressed = current.consumed;
                current.uncompressed = current.consumed;
                current.produced = current.consumed;
                let used = at + descriptor - carried;
                self.position += used as u64;
                self.end_entry()?;
                return Ok(used);
            }
            Some((at, false)) => at,
            None => window.len().saturating_sub(3).max(committed),
        };
        current.computed.update(&window[committed..keep_from]);
        current.consumed += (keep_from - committed) as u64;
        window.drain(..keep_from);
        current.reader = Reader::Scan(window);
        self.position += input.len() as u64;
        Ok(input.len())
    }

    fn inflate(&mut self, input: &[u8]) -> Result<usize> {
        let current = self.current.as_mut().expect("data belongs to an entry");
        let inflate = self.inflate.as_mut().expect("set for a deflated entry");
        let descriptor = current.flags & FLAG_DESCRIPTOR != 0;
        let known = (!descriptor || current.compressed != 0).then_some(current.compressed);
        // Never past the compressed size, when it is known: what follows is the next record.
        let input = match known {
            Some(size) => &input[..(size - current.consumed).min(input.len() as u64) as usize],
            None => input,
        };
        let mut used = 0;
        loop {
            let (before_in, before_out) = (inflate.total_in(), inflate.total_out());
            let status = inflate
                .decompress(&input[used..], &mut self.scratch, FlushDecompress::None)
                .map_err(|err| broken(format!("{}: its deflated data is corrupt ({err})", current.what())))?;
            let took = (inflate.total_in() - before_in) as usize;
            let gave = (inflate.total_out() - before_out) as usize;
            used += took;
            current.consumed += took as u64;
            current.produced += gave as u64;
            current.computed.update(&self.scratch[..gave]);
            self.inflated += gave as u64;
            if !descriptor && current.produced > current.uncompressed {
                return Err(broken(format!(
                    "{}: its data inflates to more than the {} bytes its header says",
                    current.what(),
                    current.uncompressed
                )));
            }
            if self.inflated > MAX_INFLATED_BYTES {
                return Err(broken(format!(
                    "its entries inflate to more than {MAX_INFLATED_BYTES} bytes, the most a package is checked with"
                )));
            }
            if status == Status::StreamEnd {
                self.position += used as u64;
                self.end_of_data()?;
                return Ok(used);
            }
            let input_done = used == input.len();
            if input_done && known.is_some_and(|size| current.consumed == size) && gave < self.scratch.len() {
                return Err(broken(format!(
                    "{}: its deflated data does not end within the {} bytes its header says",
                    current.what(),
                    current.compressed
                )));
            }
            if (input_done && gave < self.scratch.len()) || (took == 0 && gave == 0) {
                if !input_done && took == 0 && gave == 0 {
                    return Err(broken(format!("{}: its deflated data is corrupt", current.what())));
                }
                self.position += used as u64;
                return Ok(used);
            }
        }
    }

    fn end_of_data(&mut self) -> Result<()> {
        let current = self.current.as_ref().expect("data belongs to an entry");
        if current.flags & FLAG_DESCRIPTOR != 0 {
            self.expect(State::Descriptor, 4);
            Ok(())
        } else {
            self.end_entry()
        }
    }

    fn end_entry(&mut self) -> Result<()> {
        let current = self.current.take().expect("an entry ends");
        let what = current.what();
        if current.consumed != current.compressed {
            return Err(broken(format!(
                "{what}: its data is {} bytes, its header says {}",
                current.consumed, current.compressed
            )));
        }
        if current.checked {
            if current.produced != current.uncompressed {
                return Err(broken(format!(
                    "{what}: its data is {} bytes once inflated, its header says {}",
                    current.produced, current.uncompressed
                )));
            }
            let computed = current.computed.finalize();
            if computed != current.crc {
                return Err(Error::integrity(format!(
                    "{what} is damaged: its data's CRC-32 is {computed:08x}, the package's producer wrote {:08x}",
                    current.crc
                )));
            }
        }
        self.entries.push(Entry {
            offset: current.offset,
            compressed: current.compressed,
            uncompressed: current.uncompressed,
            name: current.name_hash,
            crc: current.crc,
            listed: false,
        });
        self.expect_signature_or_done(false);
        Ok(())
    }

    fn central_fixed(&mut self, record: &[u8]) -> Result<()> {
        let name = usize::from(u16_at(record, 24));
        let extra = usize::from(u16_at(record, 26));
        let comment = u16_at(record, 28);
        self.central_head.copy_from_slice(record);
        if name + extra == 0 {
            self.central_names(&[], &[])?;
            self.skip(u64::from(comment), false);
            return self.check_directory_size();
        }
        self.expect(State::CentralNames { name, comment }, name + extra);
        Ok(())
    }

    fn central_names(&mut self, name: &[u8], extra: &[u8]) -> Result<()> {
        let head = self.central_head;
        let fixed = &head[..];
        let at = self.mark;
        let what = format!("the central directory's entry '{}' (at byte {at})", shown(name));
        let crc = u32_at(fixed, 12);
        let mut compressed = u64::from(u32_at(fixed, 16));
        let mut uncompressed = u64::from(u32_at(fixed, 20));
        let disk = u16_at(fixed, 30);
        let mut offset = u64::from(u32_at(fixed, 38));
        let mut disk64 = u64::from(disk);
        zip64_values(
            extra,
            &mut [
                (uncompressed == u64::from(MARK32), &mut uncompressed),
                (compressed == u64::from(MARK32), &mut compressed),
                (offset == u64::from(MARK32), &mut offset),
                (disk == MARK16, &mut disk64),
            ],
            &what,
        )?;
        if disk64 != 0 {
            return Err(broken(format!("{what} is on disk {disk64}: packages are single archives")));
        }
        if self.listed >= self.entries.len() {
            return Err(broken(format!(
                "{what}: the central directory lists more entries than the {} the archive holds",
                self.entries.len()
            )));
        }
        let Ok(index) = self.entries.binary_search_by_key(&offset, |entry| entry.offset) else {
            return Err(broken(format!("{what} points at byte {offset}, where no entry starts")));
        };
        let entry = &mut self.entries[index];
        if entry.listed {
            return Err(broken(format!("{what} lists the entry at byte {offset} a second time")));
        }
        let mut differs = Vec::new();
        if entry.name != name_hash(name) {
            differs.push("name");
        }
        if entry.crc != crc {
            differs.push("CRC-32");
        }
        if entry.compressed != compressed {
            differs.push("compressed size");
        }
        if entry.uncompressed != uncompressed {
            differs.push("size");
        }
        if !differs.is_empty() {
            return Err(broken(format!(
                "{what} does not agree with the local header at byte {offset}: {} differ",
                differs.join(", ")
            )));
        }
        entry.listed = true;
        self.listed += 1;
        Ok(())
    }

    fn zip64_end(&mut self, record: &[u8]) -> Result<()> {
        let size = u64_at(record, 0);
        if size < 44 {
            return Err(broken(format!("its ZIP64 end record (at byte {}) is too short", self.mark)));
        }
        if u32_at(record, 12) != 0 || u32_at(record, 16) != 0 || u64_at(record, 20) != u64_at(record, 28) {
            return Err(broken("its ZIP64 end record speaks of several disks: packages are single archives"));
        }
        self.zip64_end = Some(Zip64End {
            entries: u64_at(record, 28),
            size: u64_at(record, 36),
            offset: u64_at(record, 44),
            at: self.mark,
        });
        self.phase = Phase::Zip64End;
        self.skip(size - 44, false);
        Ok(())
    }

    fn end(&mut self, record: &[u8]) -> Result<()> {
        let at = self.mark;
        let (disk, directory_disk) = (u16_at(record, 0), u16_at(record, 2));
        let (on_disk, total) = (u16_at(record, 4), u16_at(record, 6));
        let (size, offset) = (u32_at(record, 8), u32_at(record, 12));
        let comment = u16_at(record, 16);
        let zip64 = self.zip64_end.as_ref();
        if (disk != 0 && disk != MARK16) || (directory_disk != 0 && directory_disk != MARK16) || on_disk != total {
            return Err(broken(format!(
                "its end record (at byte {at}) speaks of several disks: packages are single archives"
            )));
        }
        let value = |classic: u64, marker: bool, wide: Option<u64>| match (marker, wide) {
            (true, Some(wide)) => Ok(wide),
            (true, None) => {
                Err(broken(format!("its end record (at byte {at}) says see the ZIP64 end record, and there is none")))
            }
            (false, _) => Ok(classic),
        };
        let total = value(u64::from(total), total == MARK16, zip64.map(|end| end.entries))?;
        let size = value(u64::from(size), size == MARK32, zip64.map(|end| end.size))?;
        let offset = value(u64::from(offset), offset == MARK32, zip64.map(|end| end.offset))?;
        let start = self.directory_start.expect("a directory was read");
        let end = self.directory_end.expect("the directory ended");
        let mut said = vec![(total, self.entries.len() as u64, "entries"), (offset, start, "central directory offset")];
        said.push((size, end - start, "central directory size"));
        if let Some(wide) = zip64 {
            said.push((wide.entries, self.entries.len() as u64, "entries (ZIP64)"));
            said.push((wide.offset, start, "central directory offset (ZIP64)"));
            said.push((wide.size, end - start, "central directory size (ZIP64)"));
        }
        for (says, is, what) in said {
            if says != is {
                return Err(broken(format!("its end record (at byte {at}) says {what} {says}, the archive has {is}")));
            }
        }
        if self.listed != self.entries.len() {
            return Err(broken(format!(
                "its central directory lists {} of the {} entries",
                self.listed,
                self.entries.len()
            )));
        }
        self.skip(u64::from(comment), true);
        Ok(())
    }
}

/// Checks a whole archive held in memory, fed in pieces of `piece` bytes (fuzzing, tests).
pub(crate) fn check_bytes(archive: &[u8], piece: usize) -> Result<ZipSummary> {
    let mut check = ZipCheck::new();
    for chunk in archive.chunks(piece.max(1)) {
        check.take(chunk)?;
    }
    check.finish()
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use zip::CompressionMethod;
    use zip::write::{SimpleFileOptions, ZipWriter};

    use super::*;
    use crate::error::DefenderStatus;

    /// Text that deflates well, and bytes that do not.
    fn contents() -> Vec<(&'static str, Vec<u8>)> {
        let text: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("{i},C:\\Windows\\System32\\svchost.exe,Running\r\n").into_bytes())
            .collect();
        let noise: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        vec![("Processes/ProcessList.csv", text), ("Prefetch/NOTEPAD.EXE-1.pf", noise), ("empty.txt", Vec::new())]
    }

    /// An archive of `contents` with each method in turn (seekable: sizes in the local headers).
    fn archive(large: bool) -> Vec<u8> {
        let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
        for (index, (name, data)) in contents().into_iter().enumerate() {
            let method = if index % 2 == 0 { CompressionMethod::Deflated } else { CompressionMethod::Stored };
            let options = SimpleFileOptions::default().compression_method(method).large_file(large);
            writer.start_file(name, options).unwrap();
            writer.write_all(&data).unwrap();
        }
        writer.set_comment("collected by the simulator").unwrap();
        writer.finish().unwrap().into_inner()
    }

    /// The same, written to a stream: deflated entries with data descriptors.
    fn streamed_archive() -> Vec<u8> {
        let mut writer = ZipWriter::new_stream(Vec::new());
        for (name, data) in contents() {
            let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
            writer.start_file(name, options).unwrap();
            writer.write_all(&data).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    fn check_in_pieces(archive: &[u8]) -> Result<ZipSummary> {
        let mut verdicts = [1, 7, 4096, 1 << 20].map(|piece| check_bytes(archive, piece));
        for other in &verdicts[1..] {
            assert_eq!(other.as_ref().map_err(Error::message), verdicts[0].as_ref().map_err(Error::message));
        }
        std::mem::replace(&mut verdicts[0], Err(Error::internal("taken")))
    }

    fn refused(archive: &[u8]) -> String {
        let error = check_in_pieces(archive).expect_err("refused");
        assert_eq!(error.status(), DefenderStatus::Integrity, "{error}");
        error.message().to_owned()
    }

    fn position(haystack: &[u8], needle: &[u8]) -> usize {
        haystack.windows(needle.len()).position(|window| window == needle).unwrap()
    }

    #[test]
    fn stored_deflated_zip64_and_streamed_archives_pass_however_they_arrive() {
        for archive in [archive(false), archive(true), streamed_archive()] {
            let summary = check_in_pieces(&archive).unwrap();
            assert_eq!(summary, ZipSummary { entries: 3, unchecked: 0, first_unchecked: None });
        }
        let streamed = streamed_archive();
        assert_ne!(u16_at(&streamed, 6) & FLAG_DESCRIPTOR, 0, "the stream has data descriptors");
    }

    /// Archives another writer made (Python's zipfile, to a file and to a stream), as the fuzz
    /// corpus holds them (after the byte that chooses the pieces).
    #[test]
    fn archives_of_another_writer_pass() {
        for archive in [
            &include_bytes!("../../fuzz/corpus/zip_check/deflated_and_stored")[1..],
            &include_bytes!("../../fuzz/corpus/zip_check/data_descriptor")[1..],
        ] {
            assert!(check_in_pieces(archive).is_ok(), "{:?}", check_in_pieces(archive));
        }
        // A damaged byte in the stored entry of unknown size: no descriptor describes the bytes.
        let mut damaged = include_bytes!("../../fuzz/corpus/zip_check/data_descriptor")[1..].to_vec();
        damaged[100] ^= 1;
        let message = refused(&damaged);
        assert!(message.contains("in the middle of entry 'WdSupportLogs/MpLog.txt'"), "{message}");
    }

    /// The fuzz target's checks (the same verdict whole and in pieces, a printable message) over
    /// its committed corpus, and over every one-byte damage of each input.
    #[test]
    fn the_fuzz_target_holds_over_its_corpus_and_every_damaged_byte() {
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/zip_check");
        for entry in std::fs::read_dir(corpus).unwrap() {
            let input = std::fs::read(entry.unwrap().path()).unwrap();
            crate::fuzzing::zip_check(&input);
            for at in 1..input.len() {
                let mut damaged = input.clone();
                damaged[at] ^= 0xA5;
                crate::fuzzing::zip_check(&damaged);
            }
        }
    }

    #[test]
    fn a_damaged_byte_in_any_entry_names_that_entry() {
        for archive in [archive(false), streamed_archive()] {
            for (name, data) in contents().into_iter().filter(|(_, data)| !data.is_empty()) {
                let mut damaged = archive.clone();
                let start = position(&damaged, name.as_bytes()) + name.len();
                // A byte well inside the entry's data.
                let at = start + 40 + (data.len() / 50).min(2000);
                damaged[at] ^= 0x55;
                let message = refused(&damaged);
                assert!(message.contains(&format!("entry '{name}'")), "{message}");
            }
        }
        let mut stored = archive(false);
        let at = position(&stored, b"Prefetch/NOTEPAD.EXE-1.pf") + 100;
        stored[at] ^= 1;
        let message = refused(&stored);
        assert!(message.contains("CRC-32") && message.contains("is damaged"), "{message}");
    }

    #[test]
    fn junk_before_or_after_and_a_cut_are_refused() {
        let whole = archive(false);
        let mut before = b"MZ junk".to_vec();
        before.extend(&whole);
        assert!(refused(&before).contains("does not start with a ZIP local file header"), "{}", refused(&before));
        let gzip = refused(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
        assert!(gzip.contains("a gzip stream"), "{gzip}");
        let mut after = whole.clone();
        after.extend(b"\0\0junk");
        assert!(refused(&after).contains("bytes follow the end of the archive"), "{}", refused(&after));
        let cut = refused(&whole[..whole.len() - 10]);
        assert!(cut.contains(&format!("ends at byte {}", whole.len() - 10)), "{cut}");
        assert!(refused(&[]).contains("empty"));
    }

    #[test]
    fn a_central_directory_that_disagrees_is_refused() {
        let whole = archive(false);
        let directory = position(&whole, &CENTRAL.to_le_bytes());
        // The first central header's CRC-32.
        let mut crc = whole.clone();
        crc[directory + 16] ^= 1;
        let message = refused(&crc);
        assert!(message.contains("does not agree with the local header at byte 0: CRC-32 differ"), "{message}");
        // Its offset.
        let mut offset = whole.clone();
        offset[directory + 42] ^= 1;
        assert!(refused(&offset).contains("where no entry starts"), "{}", refused(&offset));
        // The end record's directory offset and entry count.
        let end = position(&whole, &END.to_le_bytes());
        let mut moved = whole.clone();
        moved[end + 16] ^= 1;
        assert!(refused(&moved).contains("says central directory offset"), "{}", refused(&moved));
        let mut count = whole.clone();
        count[end + 8] = 2;
        count[end + 10] = 2;
        assert!(refused(&count).contains("says entries 2, the archive has 3"), "{}", refused(&count));
        // The same entry listed twice instead of the last one (a directory bomb's shape).
        let second = directory + 4 + position(&whole[directory + 4..], &CENTRAL.to_le_bytes());
        let mut twice = whole[..second].to_vec();
        twice.extend_from_slice(&whole[directory..second]);
        assert!(refused(&twice).contains("a second time"), "{}", refused(&twice));
    }

    /// A stored, empty entry's local header named `name`.
    fn empty_local(name: &[u8]) -> Vec<u8> {
        let mut record = LOCAL.to_le_bytes().to_vec();
        record.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        record.extend([0; 12]);
        record.extend((name.len() as u16).to_le_bytes());
        record.extend([0, 0]);
        record.extend(name);
        record
    }

    fn central(name: &[u8], offset: u32, comment: u16) -> Vec<u8> {
        let mut record = CENTRAL.to_le_bytes().to_vec();
        record.extend([20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        record.extend([0; 12]);
        record.extend((name.len() as u16).to_le_bytes());
        record.extend([0, 0]);
        record.extend(comment.to_le_bytes());
        record.extend([0; 8]);
        record.extend(offset.to_le_bytes());
        record.extend(name);
        record
    }

    #[test]
    fn entries_and_directory_size_have_ceilings() {
        let mut check = ZipCheck::new();
        let local = empty_local(b"a");
        let error = (0..=MAX_ENTRIES).try_for_each(|_| check.take(&local)).unwrap_err();
        assert!(error.message().contains(&format!("more than {MAX_ENTRIES} entries")), "{error}");
        assert!(check.entries.capacity() * std::mem::size_of::<Entry>() <= 8 << 20, "notes of 40 bytes, 8 MiB at most");
        assert_eq!(std::mem::size_of::<Entry>(), 40);

        // Entries with the longest comments, until the directory passes its ceiling.
        let mut check = ZipCheck::new();
        let count = (MAX_DIRECTORY_BYTES / 65_535 + 2) as u32;
        for index in 0..count {
            check.take(&empty_local(format!("{index:05}").as_bytes())).unwrap();
        }
        let comment = vec![b'x'; 65_535];
        let error = (0..count)
            .try_for_each(|index| {
                check.take(&central(format!("{index:05}").as_bytes(), index * 35, 65_535))?;
                check.take(&comment)
            })
            .unwrap_err();
        assert!(error.message().contains(&format!("larger than {MAX_DIRECTORY_BYTES} bytes")), "{error}");
    }

    #[test]
    fn another_method_is_checked_for_structure_only() {
        let mut archive = archive(false);
        // The stored entry (the second) becomes bzip2 (12), in its local and central headers.
        let local = position(&archive, b"Prefetch/NOTEPAD.EXE-1.pf") - 30;
        archive[local + 8] = 12;
        let directory = position(&archive, &CENTRAL.to_le_bytes());
        let central = directory + position(&archive[directory..], b"Prefetch/NOTEPAD.EXE-1.pf") - 46;
        archive[central + 10] = 12;
        let summary = check_in_pieces(&archive).unwrap();
        assert_eq!(summary.unchecked, 1);
        assert!(summary.first_unchecked.unwrap().contains("'Prefetch/NOTEPAD.EXE-1.pf' (at byte"));
    }

    #[test]
    fn a_name_in_a_message_is_printable() {
        let mut archive = archive(false);
        let at = position(&archive, b"Processes/ProcessList.csv");
        // The name in the local header only: the central directory no longer agrees.
        archive[at] = 0x1b;
        let message = refused(&archive);
        assert!(!message.contains('\u{1b}'), "{message}");
    }
}
