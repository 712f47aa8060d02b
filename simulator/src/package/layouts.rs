//! Packages laid out otherwise than the standard one, for tests of a client's ZIP check: junk
//! around the archive, deflated entries (one with a data descriptor), a central directory that
//! disagrees with the entries, and a directory bomb. Each is generated from the action id alone,
//! like the standard package, and the bomb without holding its directory in memory.

use std::io::Write as _;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::DeflateEncoder;
use serde::{Deserialize, Serialize};

use super::records::Record;
use super::{Content, Package, Segment};

/// How an action's package is laid out (`package_layout` of `POST /_sim/actions`). JSON:
/// `{"kind": "...", ...}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PackageLayout {
    /// The investigation package, `package_size` bytes.
    #[default]
    Standard,
    /// The standard package with `before` junk bytes in front of it and `after` behind it.
    Junk {
        #[serde(default)]
        before: u64,
        #[serde(default)]
        after: u64,
    },
    /// A small package (about 200 KB, whatever `package_size`) of three entries: a deflated one,
    /// a stored one, and a deflated one written as a stream writes it (sizes and CRC-32 in a data
    /// descriptor after its data).
    Deflated,
    /// The standard package, its central directory's first entry with another CRC-32 than the
    /// entry's local header.
    BadDirectory,
    /// One small stored entry, listed `entries` times in the central directory, each time with
    /// a comment of `comment_bytes`: a directory bomb (ZIP64 end records when the count or the
    /// size needs them).
    DirectoryBomb { entries: u64, comment_bytes: u16 },
}

const LOCAL: u32 = 0x0403_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const DESCRIPTOR: u32 = 0x0807_4b50;
/// 2024-01-01 00:00:00 in MS-DOS format.
const DOS_DATE: u16 = ((2024 - 1980) << 9) | (1 << 5) | 1;
const FLAG_UTF8: u16 = 1 << 11;
const FLAG_DESCRIPTOR: u16 = 1 << 3;

struct Entry {
    name: String,
    method: u16,
    descriptor: bool,
    crc: u32,
    compressed: u32,
    size: u32,
    offset: u32,
}

fn local(entry: &Entry) -> Vec<u8> {
    let flags = FLAG_UTF8 | if entry.descriptor { FLAG_DESCRIPTOR } else { 0 };
    let (crc, compressed, size) = if entry.descriptor { (0, 0, 0) } else { (entry.crc, entry.compressed, entry.size) };
    Record::default()
        .u32(LOCAL)
        .u16(20)
        .u16(flags)
        .u16(entry.method)
        .u16(0)
        .u16(DOS_DATE)
        .u32(crc)
        .u32(compressed)
        .u32(size)
        .u16(entry.name.len() as u16)
        .u16(0)
        .bytes(entry.name.as_bytes())
        .0
}

fn central(entry: &Entry, comment: &[u8]) -> Vec<u8> {
    let flags = FLAG_UTF8 | if entry.descriptor { FLAG_DESCRIPTOR } else { 0 };
    Record::default()
        .u32(CENTRAL)
        .u16(45)
        .u16(20)
        .u16(flags)
        .u16(entry.method)
        .u16(0)
        .u16(DOS_DATE)
        .u32(entry.crc)
        .u32(entry.compressed)
        .u32(entry.size)
        .u16(entry.name.len() as u16)
        .u16(0)
        .u16(comment.len() as u16)
        .u16(0)
        .u16(0)
        .u32(0)
        .u32(entry.offset)
        .bytes(entry.name.as_bytes())
        .bytes(comment)
        .0
}

/// The end records of a directory of `entries` entries, `size` bytes at `offset`: ZIP64 ones
/// too when a classic field cannot hold a value.
fn end(entries: u64, offset: u64, size: u64) -> Vec<u8> {
    let zip64 = entries >= 0xFFFF || size >= 0xFFFF_FFFF || offset >= 0xFFFF_FFFF;
    let mut records = Record::default();
    if zip64 {
        records = records
            .u32(0x0606_4b50)
            .u64(44)
            .u16(45)
            .u16(45)
            .u32(0)
            .u32(0)
            .u64(entries)
            .u64(entries)
            .u64(size)
            .u64(offset)
            .u32(0x0706_4b50)
            .u32(0)
            .u64(offset + size)
            .u32(1);
    }
    let narrow16 = |value: u64| u16::try_from(value).ok().filter(|_| !zip64).unwrap_or(u16::MAX);
    let narrow32 = |value: u64| u32::try_from(value).ok().filter(|_| !zip64).unwrap_or(u32::MAX);
    records
        .u32(0x0605_4b50)
        .u16(0)
        .u16(0)
        .u16(narrow16(entries))
        .u16(narrow16(entries))
        .u32(narrow32(size))
        .u32(narrow32(offset))
        .u16(0)
        .0
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// The `deflated` layout's bytes.
fn deflated(action_id: &str) -> Vec<u8> {
    let text: Vec<u8> = (0..4000)
        .flat_map(|i| format!("{i},C:\\Windows\\System32\\svchost.exe,Running,{action_id}\r\n").into_bytes())
        .collect();
    let noise: Vec<u8> = (0..65_536u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let log: Vec<u8> =
        (0..3000).flat_map(|i| format!("MpLog line {i}: scan of {action_id} done\r\n").into_bytes()).collect();
    let mut archive = Vec::new();
    let mut entries = Vec::new();
    for (name, data, method, descriptor) in [
        ("Processes/ProcessList.csv", text, 8, false),
        ("Prefetch/NOTEPAD.EXE-1.pf", noise, 0, false),
        ("WdSupportLogs/MpLog.txt", log, 8, true),
    ] {
        let stored = if method == 8 { deflate(&data) } else { data.clone() };
        let entry = Entry {
            name: name.to_owned(),
            method,
            descriptor,
            crc: crc32fast::hash(&data),
            compressed: stored.len() as u32,
            size: data.len() as u32,
            offset: archive.len() as u32,
        };
        archive.extend(local(&entry));
        archive.extend(&stored);
        if descriptor {
            archive.extend(Record::default().u32(DESCRIPTOR).u32(entry.crc).u32(entry.compressed).u32(entry.size).0);
        }
        entries.push(entry);
    }
    let offset = archive.len() as u64;
    for entry in &entries {
        archive.extend(central(entry, &[]));
    }
    let size = archive.len() as u64 - offset;
    archive.extend(end(entries.len() as u64, offset, size));
    archive
}

impl Package {
    /// The package of `action_id` laid out as `layout` (`size` is the standard package's).
    pub(crate) fn with_layout(action_id: &str, size: u64, layout: &PackageLayout) -> Package {
        match layout {
            PackageLayout::Standard => Package::generate(action_id, size),
            PackageLayout::Junk { before, after } => {
                let mut package = Package::generate(action_id, size);
                let junk = |len: u64| Content::repeating(&Bytes::new(), &Bytes::from_static(b"JUNK\0\xff"), len);
                if *before > 0 {
                    for segment in &mut package.segments {
                        segment.offset += before;
                    }
                    package.segments.insert(0, Segment { offset: 0, content: junk(*before) });
                }
                if *after > 0 {
                    package.segments.push(Segment { offset: before + size, content: junk(*after) });
                }
                package.size += before + after;
                package
            }
            PackageLayout::Deflated => Package::from_segments(vec![Content::fixed(Bytes::from(deflated(action_id)))]),
            PackageLayout::BadDirectory => {
                let mut package = Package::generate(action_id, size);
                let trailer = package.segments.last_mut().expect("a package has a trailer");
                let mut bytes = trailer.content.head.to_vec();
                // The first central header's CRC-32.
                bytes[16] ^= 0x01;
                trailer.content = Content::fixed(Bytes::from(bytes));
                package
            }
            PackageLayout::DirectoryBomb { entries, comment_bytes } => {
                let entry = Entry {
                    name: "x".to_owned(),
                    method: 0,
                    descriptor: false,
                    crc: crc32fast::hash(b"x"),
                    compressed: 1,
                    size: 1,
                    offset: 0,
                };
                let mut first = local(&entry);
                first.push(b'x');
                let offset = first.len() as u64;
                let listed = central(&entry, &vec![b'c'; usize::from(*comment_bytes)]);
                let size = listed.len() as u64 * entries;
                let directory = Content::repeating(&Bytes::new(), &Bytes::from(listed), size);
                Package::from_segments(vec![
                    Content::fixed(Bytes::from(first)),
                    directory,
                    Content::fixed(Bytes::from(end(*entries, offset, size))),
                ])
            }
        }
    }

    /// A package of these contents, one after the other.
    fn from_segments(contents: Vec<Content>) -> Package {
        let mut offset = 0;
        let mut etag = crc32fast::Hasher::new();
        let segments = contents
            .into_iter()
            .map(|content| {
                etag.update(&content.head);
                etag.update(&content.len.to_le_bytes());
                let segment = Segment { offset, content };
                offset += segment.content.len;
                segment
            })
            .collect();
        Package { size: offset, segments, etag: format!("\"0x{:08X}{offset:X}\"", etag.finalize()) }
    }
}
