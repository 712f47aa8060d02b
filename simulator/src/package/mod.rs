//! The investigation package: a real ZIP laid out like the one Defender collects.
//!
//! Every entry is stored (not compressed) and its content is a short head followed by one of a
//! few precomputed blocks repeated, so the whole layout (local headers, offsets, CRC-32s, central
//! directory, ZIP64 records) follows from the action id and the size alone. Any byte range can
//! then be produced without generating what precedes it, as cheap slices of shared [`Bytes`], and
//! memory stays flat whatever the size.

mod entries;
mod layouts;
mod records;

pub use layouts::PackageLayout;

use std::ops::Range;

use bytes::Bytes;
use crc32fast::Hasher;
use md5::{Digest, Md5};

use entries::{SUMMARY_PATH, Share, TEMPLATES, summary_report};
use records::{EntryRecord, central_header, end_records, local_header};

/// The smallest package the simulator makes: room for every entry's headers, the central
/// directory and the collection summary.
pub const MIN_PACKAGE_SIZE: u64 = 4096;

/// The layout is computed once per download; the content blocks are built once per process.
pub(crate) struct Package {
    size: u64,
    /// Local headers, entry data and the trailer (central directory and end records), in order.
    segments: Vec<Segment>,
    etag: String,
}

struct Segment {
    offset: u64,
    content: Content,
}

impl Package {
    /// The package of the action `action_id`, exactly `size` bytes long.
    ///
    /// # Panics
    /// When `size` is below [`MIN_PACKAGE_SIZE`]; sizes are validated where they are configured.
    pub(crate) fn generate(action_id: &str, size: u64) -> Package {
        assert!(size >= MIN_PACKAGE_SIZE, "package size {size} is below the minimum");
        // Every offset and size is below the total size, so only packages of 4 GiB and more
        // need ZIP64 records; they then get them for every entry.
        let zip64 = size > u64::from(u32::MAX);
        let entries = entry_contents(action_id, size, zip64);

        let mut segments = Vec::with_capacity(entries.len() * 2 + 1);
        let mut central_directory = Vec::new();
        let mut offset = 0;
        for (path, content) in entries {
            let entry = EntryRecord { path, crc: content.crc32(), size: content.len, offset };
            let header = Content::fixed(Bytes::from(local_header(&entry, zip64)));
            central_directory.extend(central_header(&entry, zip64));
            let data_offset = offset + header.len;
            offset = data_offset + content.len;
            segments.push(Segment { offset: entry.offset, content: header });
            segments.push(Segment { offset: data_offset, content });
        }
        let entry_count = segments.len() as u64 / 2;
        let central_directory_size = central_directory.len() as u64;
        let mut trailer = central_directory;
        trailer.extend(end_records(entry_count, offset, central_directory_size, zip64));
        let trailer_crc = crc32fast::hash(&trailer);
        let trailer = Content::fixed(Bytes::from(trailer));
        assert_eq!(offset + trailer.len, size, "package layout does not add up");
        segments.push(Segment { offset, content: trailer });

        Package { size, segments, etag: format!("\"0x{trailer_crc:08X}{size:X}\"") }
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Changes whenever the content does (the trailer holds every entry's CRC and size).
    pub(crate) fn etag(&self) -> &str {
        &self.etag
    }

    /// The bytes of `range` (within the package), as slices of shared blocks.
    pub(crate) fn chunks(&self, range: Range<u64>) -> impl Iterator<Item = Bytes> + '_ {
        let first = self.segments.partition_point(|segment| segment.offset + segment.content.len <= range.start);
        self.segments[first..].iter().take_while(move |segment| segment.offset < range.end).flat_map(move |segment| {
            let start = range.start.saturating_sub(segment.offset);
            let end = (range.end - segment.offset).min(segment.content.len);
            segment.content.chunks(start..end)
        })
    }

    /// MD5 of the whole package: reads all of it, so callers cache it.
    pub(crate) fn md5(&self) -> [u8; 16] {
        let mut md5 = Md5::new();
        for chunk in self.chunks(0..self.size) {
            md5.update(&chunk);
        }
        md5.finalize().into()
    }
}

/// `len` bytes: `head`, then `body` over and over (cut where `len` ends).
#[derive(Clone)]
struct Content {
    head: Bytes,
    body: Bytes,
    len: u64,
}

impl Content {
    fn fixed(bytes: Bytes) -> Content {
        Content { len: bytes.len() as u64, head: bytes, body: Bytes::new() }
    }

    fn repeating(head: &Bytes, body: &Bytes, len: u64) -> Content {
        assert!(!body.is_empty(), "repeating content needs a body");
        Content { head: head.clone(), body: body.clone(), len }
    }

    fn head_len(&self) -> u64 {
        (self.head.len() as u64).min(self.len)
    }

    /// The CRC-32 of the content without reading it all: the body's CRC is combined with
    /// itself by doubling, `log2(repetitions)` steps.
    fn crc32(&self) -> u32 {
        let mut crc = Hasher::new();
        crc.update(&self.head[..self.head_len() as usize]);
        let rest = self.len - self.head_len();
        if rest > 0 {
            let body_len = self.body.len() as u64;
            let mut block = Hasher::new();
            block.update(&self.body);
            let mut repetitions = rest / body_len;
            // Every repetition is the same bytes, so the order of combining does not matter.
            while repetitions > 0 {
                if repetitions & 1 == 1 {
                    crc.combine(&block);
                }
                let copy = block.clone();
                block.combine(&copy);
                repetitions >>= 1;
            }
            crc.update(&self.body[..(rest % body_len) as usize]);
        }
        crc.finalize()
    }

    fn chunks(&self, range: Range<u64>) -> impl Iterator<Item = Bytes> + '_ {
        let mut position = range.start;
        std::iter::from_fn(move || {
            if position >= range.end {
                return None;
            }
            let head_len = self.head.len() as u64;
            let chunk = if position < head_len {
                self.head.slice(position as usize..range.end.min(head_len) as usize)
            } else {
                let body_len = self.body.len() as u64;
                let offset = (position - head_len) % body_len;
                let take = (body_len - offset).min(range.end - position);
                self.body.slice(offset as usize..(offset + take) as usize)
            };
            position += chunk.len() as u64;
            Some(chunk)
        })
    }
}

/// The entries of every package and their sizes for a package of `size` bytes.
fn entry_contents(action_id: &str, size: u64, zip64: bool) -> Vec<(&'static str, Content)> {
    let templates = &*TEMPLATES;
    let summary = Bytes::from(summary_report(action_id));

    let overhead: u64 = templates
        .iter()
        .map(|template| template.path)
        .chain([SUMMARY_PATH])
        .map(|path| {
            let placeholder = EntryRecord { path, crc: 0, size: 0, offset: 0 };
            (local_header(&placeholder, zip64).len() + central_header(&placeholder, zip64).len()) as u64
        })
        .sum::<u64>()
        + end_records(0, 0, 0, zip64).len() as u64;
    let data = size.checked_sub(overhead).expect("MIN_PACKAGE_SIZE leaves room for the headers");
    let summary_len = data.min(summary.len() as u64);
    let shared = data - summary_len;

    let shares: Vec<u64> = templates
        .iter()
        .map(|template| match template.share {
            Share::PerMille { per_mille, cap } => {
                (shared / 1000 * per_mille + shared % 1000 * per_mille / 1000).min(cap)
            }
            Share::Rest => 0,
        })
        .collect();
    let rest = shared - shares.iter().sum::<u64>();

    let mut entries: Vec<_> = templates
        .iter()
        .zip(shares)
        .map(|(template, share)| {
            let len = match template.share {
                Share::PerMille { .. } => share,
                Share::Rest => rest,
            };
            (template.path, Content::repeating(&template.head, &template.body, len))
        })
        .collect();
    entries.push((SUMMARY_PATH, Content { len: summary_len, head: summary, body: Bytes::new() }));
    entries
}

#[cfg(test)]
mod tests {
    use std::io::{self, Read, Seek, SeekFrom};

    use super::*;

    /// Reads a package through [`Package::chunks`], as a download of ranges would.
    struct PackageReader<'a> {
        package: &'a Package,
        position: u64,
    }

    impl Read for PackageReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let end = (self.position + buf.len() as u64).min(self.package.size());
            let mut written = 0;
            for chunk in self.package.chunks(self.position..end) {
                buf[written..written + chunk.len()].copy_from_slice(&chunk);
                written += chunk.len();
            }
            self.position += written as u64;
            Ok(written)
        }
    }

    impl Seek for PackageReader<'_> {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            self.position = match to {
                SeekFrom::Start(offset) => offset,
                SeekFrom::End(delta) => self.package.size().saturating_add_signed(delta),
                SeekFrom::Current(delta) => self.position.saturating_add_signed(delta),
            };
            Ok(self.position)
        }
    }

    fn all_bytes(package: &Package) -> Vec<u8> {
        package.chunks(0..package.size()).flatten().collect()
    }

    /// Opens the package with the `zip` crate and reads every entry to its end, which checks
    /// each CRC-32; answers the entry names and sizes.
    fn read_back(package: &Package, skip_larger_than: u64) -> Vec<(String, u64)> {
        let reader = PackageReader { package, position: 0 };
        let mut archive = zip::ZipArchive::new(reader).expect("a readable ZIP");
        (0..archive.len())
            .map(|index| {
                let mut entry = archive.by_index(index).unwrap();
                let name = entry.name().unwrap().into_owned();
                if entry.size() <= skip_larger_than {
                    let read = io::copy(&mut entry, &mut io::sink()).unwrap_or_else(|error| panic!("{name}: {error}"));
                    assert_eq!(read, entry.size());
                }
                (name, entry.size())
            })
            .collect()
    }

    #[test]
    fn packages_are_exactly_the_requested_size_and_valid_zips() {
        for size in [MIN_PACKAGE_SIZE, MIN_PACKAGE_SIZE + 1, 100_003, 3 << 20] {
            let package = Package::generate("action-1", size);
            assert_eq!(all_bytes(&package).len() as u64, size);
            let entries = read_back(&package, u64::MAX);
            assert_eq!(entries.len(), TEMPLATES.len() + 1);
            assert!(entries.iter().any(|(name, _)| name == SUMMARY_PATH));
        }
    }

    #[test]
    fn the_minimum_size_still_holds_the_whole_summary() {
        let package = Package::generate("2e9da30d-27f6-4208-81f2-9cd3d67893ba", MIN_PACKAGE_SIZE);
        let entries = read_back(&package, u64::MAX);
        let summary = entries.iter().find(|(name, _)| name == SUMMARY_PATH).unwrap();
        assert_eq!(summary.1, summary_report("2e9da30d-27f6-4208-81f2-9cd3d67893ba").len() as u64);
    }

    #[test]
    fn any_range_equals_the_same_slice_of_the_whole() {
        let package = Package::generate("ranges", 1 << 20);
        let whole = all_bytes(&package);
        for range in [0..1, 0..30, 1000..70_000, 500_000..(1 << 20), 123_456..123_457] {
            let part: Vec<u8> = package.chunks(range.clone()).flatten().collect();
            assert_eq!(part, whole[range.start as usize..range.end as usize], "{range:?}");
        }
    }

    #[test]
    fn packages_depend_on_the_action_id_and_nothing_else() {
        let first = Package::generate("same", 64 << 10);
        let again = Package::generate("same", 64 << 10);
        let other = Package::generate("other", 64 << 10);
        assert_eq!(first.md5(), again.md5());
        assert_eq!(first.etag(), again.etag());
        assert_ne!(first.md5(), other.md5());
        assert_ne!(first.etag(), other.etag());
    }

    #[test]
    fn packages_over_4_gib_use_zip64_and_read_back() {
        let size = 5 << 30;
        let package = Package::generate("zip64", size);
        // Everything but the two big binary entries is read in full, CRCs included.
        let entries = read_back(&package, 64 << 20);
        let event_log = entries.iter().find(|(name, _)| name == "Security event log/Security.evtx").unwrap();
        assert!(event_log.1 > u64::from(u32::MAX), "{event_log:?}");
        let trailer: Vec<u8> = package.chunks(size - 98..size).flatten().collect();
        assert_eq!(trailer[..4], 0x0606_4b50u32.to_le_bytes(), "ZIP64 end record");
    }
}
