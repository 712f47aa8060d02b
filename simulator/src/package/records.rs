//! ZIP records (APPNOTE.TXT 4.3): entries are stored, with UTF-8 names and a fixed timestamp;
//! ZIP64 records where the archive needs them.

const VERSION_STORED: u16 = 20;
const VERSION_ZIP64: u16 = 45;
const FLAG_UTF8_NAMES: u16 = 1 << 11;
const METHOD_STORED: u16 = 0;
/// 2024-01-01 00:00:00 in MS-DOS format.
const DOS_TIME: u16 = 0;
const DOS_DATE: u16 = ((2024 - 1980) << 9) | (1 << 5) | 1;
const ZIP64_EXTRA_ID: u16 = 0x0001;
/// Stands for "see the ZIP64 record" in a 32-bit field.
const ZIP64_MARKER: u32 = u32::MAX;

pub(super) struct EntryRecord<'a> {
    pub(super) path: &'a str,
    pub(super) crc: u32,
    pub(super) size: u64,
    pub(super) offset: u64,
}

/// Little-endian record builder.
#[derive(Default)]
pub(super) struct Record(pub(super) Vec<u8>);

impl Record {
    pub(super) fn u16(mut self, value: u16) -> Record {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub(super) fn u32(mut self, value: u32) -> Record {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub(super) fn u64(mut self, value: u64) -> Record {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub(super) fn bytes(mut self, value: &[u8]) -> Record {
        self.0.extend_from_slice(value);
        self
    }
}

fn version_needed(zip64: bool) -> u16 {
    if zip64 { VERSION_ZIP64 } else { VERSION_STORED }
}

/// A 32-bit field, or the ZIP64 marker when the archive uses ZIP64 records.
fn field32(value: u64, zip64: bool) -> u32 {
    if zip64 { ZIP64_MARKER } else { u32::try_from(value).expect("non-ZIP64 packages are below 4 GiB") }
}

pub(super) fn local_header(entry: &EntryRecord, zip64: bool) -> Vec<u8> {
    let extra = if zip64 {
        Record::default().u16(ZIP64_EXTRA_ID).u16(16).u64(entry.size).u64(entry.size).0
    } else {
        Vec::new()
    };
    Record::default()
        .u32(0x0403_4b50)
        .u16(version_needed(zip64))
        .u16(FLAG_UTF8_NAMES)
        .u16(METHOD_STORED)
        .u16(DOS_TIME)
        .u16(DOS_DATE)
        .u32(entry.crc)
        .u32(field32(entry.size, zip64))
        .u32(field32(entry.size, zip64))
        .u16(entry.path.len() as u16)
        .u16(extra.len() as u16)
        .bytes(entry.path.as_bytes())
        .bytes(&extra)
        .0
}

pub(super) fn central_header(entry: &EntryRecord, zip64: bool) -> Vec<u8> {
    let extra = if zip64 {
        Record::default().u16(ZIP64_EXTRA_ID).u16(24).u64(entry.size).u64(entry.size).u64(entry.offset).0
    } else {
        Vec::new()
    };
    Record::default()
        .u32(0x0201_4b50)
        .u16(VERSION_ZIP64) // made by: MS-DOS host, spec 4.5
        .u16(version_needed(zip64))
        .u16(FLAG_UTF8_NAMES)
        .u16(METHOD_STORED)
        .u16(DOS_TIME)
        .u16(DOS_DATE)
        .u32(entry.crc)
        .u32(field32(entry.size, zip64))
        .u32(field32(entry.size, zip64))
        .u16(entry.path.len() as u16)
        .u16(extra.len() as u16)
        .u16(0) // comment length
        .u16(0) // disk number
        .u16(0) // internal attributes
        .u32(0) // external attributes
        .u32(field32(entry.offset, zip64))
        .bytes(entry.path.as_bytes())
        .bytes(&extra)
        .0
}

/// ZIP64 end of central directory record and locator (when `zip64`), then the classic end record.
pub(super) fn end_records(entries: u64, directory_offset: u64, directory_size: u64, zip64: bool) -> Vec<u8> {
    let mut records = Record::default();
    if zip64 {
        let zip64_end_offset = directory_offset + directory_size;
        records = records
            .u32(0x0606_4b50)
            .u64(44) // size of the rest of this record
            .u16(VERSION_ZIP64)
            .u16(VERSION_ZIP64)
            .u32(0)
            .u32(0)
            .u64(entries)
            .u64(entries)
            .u64(directory_size)
            .u64(directory_offset)
            .u32(0x0706_4b50)
            .u32(0)
            .u64(zip64_end_offset)
            .u32(1);
    }
    let entries = u16::try_from(entries).expect("a package has a handful of entries");
    records
        .u32(0x0605_4b50)
        .u16(0)
        .u16(0)
        .u16(entries)
        .u16(entries)
        .u32(u32::try_from(directory_size).expect("the central directory is small"))
        .u32(field32(directory_offset, zip64))
        .u16(0)
        .0
}
