//! One package's bytes, from the download host to the part file, through every fault a
//! transfer meets: a cut connection resumes with `Range` (or starts over when the server cannot
//! resume), an expired link is replaced by a fresh one, a stalled body is caught by the
//! idle-read timeout, and the whole is checked against the server's MD5 and, for a package, as a
//! ZIP archive while it streams (`zip_check.rs`). Retries are bounded.
//! What callers are promised is the header's "Downloads" section (in `cbindgen.toml`): keep the
//! two in step.

use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{
    ACCEPT_RANGES, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, ETAG, HeaderMap, IF_RANGE, LAST_MODIFIED, RANGE,
};
use reqwest::{Response, StatusCode};
use url::Url;

use super::Kind;
use super::destination::{PartFile, PartRecord};
use super::limits::{self, Pace};
use super::sink::Sink;
use super::zip_check::ZipSummary;
use crate::error::{DefenderStatus, Error, Result};
use crate::http::describe_transport_error;
use crate::retry::{self, Backoff, MAX_RETRY_AFTER, Policy, Retry, Verdict};
use crate::runtime::DefenderLogLevel;
use crate::service::Api;

/// Broken transfers in a row that brought no new byte before giving up...
const MAX_RETRIES_WITHOUT_PROGRESS: u32 = 5;
/// ... and broken transfers in all, progress or not: a server that breaks every transfer after
/// a few bytes would otherwise be followed for ever.
const MAX_RETRIES: u32 = 25;
/// Fresh links in a row that were refused before a byte came through them: a link refused
/// right after it was issued is refused for another reason than its age.
const MAX_FRESH_LINKS_WITHOUT_PROGRESS: u32 = 2;
/// The pause before retrying a transfer that brought nothing, unless the server said how long to
/// wait: 0.5 s doubling up to 16 s, with jitter (divided by `clock_scale`).
const PAUSES: Backoff = Backoff { first: Duration::from_millis(500), cap: Duration::from_secs(16) };

/// A `Content-Length` above this is refused: packages are megabytes to a few gigabytes, and a
/// server announcing more is not serving one.
const MAX_PACKAGE_BYTES: u64 = 1 << 40;

/// The whole package, in the part file.
pub(super) struct Received {
    pub bytes: u64,
    pub sha256: [u8; 32],
    /// The body's `Content-Encoding` other than identity (`gzip`): its bytes are kept as they came.
    pub content_encoding: Option<String>,
    /// The bytes an earlier call left in the part file that were kept (0 when it started over).
    pub resumed_from: u64,
}

/// A response's `Content-Encoding`, when `kind` refuses it: a package is sent as it is. No
/// `Accept-Encoding` is sent, so a `Content-Encoding` other than `identity` is `PROTOCOL` at
/// once: a proxy that re-encodes the package would have it saved as something else. A live
/// response result is kept as the store serves it (gzip, perhaps), and says so.
fn check_encoding(kind: &Kind<'_>, headers: &HeaderMap) -> Result<()> {
    if !matches!(kind, Kind::Package { .. }) {
        return Ok(());
    }
    let Some(value) = headers.get(CONTENT_ENCODING) else { return Ok(()) };
    let encoding = value.to_str().unwrap_or("?").trim();
    if encoding.is_empty() || encoding.eq_ignore_ascii_case("identity") {
        return Ok(());
    }
    Err(Error::protocol(format!(
        "the download host sent the package with Content-Encoding: {} although none was asked for (no \
         Accept-Encoding is sent); a proxy that re-encodes downloads must leave them as they are",
        crate::redact::printable(encoding, 40)
    )))
}

/// What the download host said about the package in its last whole (200) answer.
struct Package {
    length: Option<u64>,
    etag: Option<String>,
    last_modified: Option<String>,
    accepts_ranges: bool,
    md5: Option<[u8; 16]>,
    content_encoding: Option<String>,
}

impl Package {
    fn from_headers(headers: &HeaderMap) -> Result<Self> {
        crate::http::check_framing(headers)?;
        let length = match header_text(headers, CONTENT_LENGTH.as_str()) {
            Some(text) => Some(
                text.parse::<u64>()
                    .map_err(|_| Error::protocol("the download host's Content-Length is not a number of bytes"))?,
            ),
            None => None,
        };
        if let Some(length) = length.filter(|length| *length > MAX_PACKAGE_BYTES) {
            return Err(Error::protocol(format!(
                "the download host announces {length} bytes, more than any investigation package \
                 ({MAX_PACKAGE_BYTES} bytes at most)"
            )));
        }
        Ok(Self {
            length,
            etag: header_text(headers, ETAG.as_str()).map(str::to_owned),
            last_modified: header_text(headers, LAST_MODIFIED.as_str()).map(str::to_owned),
            accepts_ranges: header_text(headers, ACCEPT_RANGES.as_str())
                .is_some_and(|value| value.eq_ignore_ascii_case("bytes")),
            // Blob storage sends the blob's MD5 as Content-MD5 on a whole answer, and some
            // answers carry it only as x-ms-blob-content-md5.
            md5: match md5_header(headers, "content-md5")? {
                Some(md5) => Some(md5),
                None => md5_header(headers, "x-ms-blob-content-md5")?,
            },
            content_encoding: header_text(headers, CONTENT_ENCODING.as_str())
                .filter(|encoding| !encoding.eq_ignore_ascii_case("identity"))
                .map(|encoding| crate::redact::printable(encoding, 32)),
        })
    }

    /// What an earlier call recorded beside its part file; `None` when it cannot be used.
    fn from_record(record: &PartRecord) -> Option<Self> {
        let md5 = match &record.md5 {
            Some(text) => {
                Some(base64::engine::general_purpose::STANDARD.decode(text).ok().and_then(|md5| md5.try_into().ok())?)
            }
            None => None,
        };
        let package = Self {
            length: Some(record.length),
            etag: record.etag.clone(),
            last_modified: record.last_modified.clone(),
            accepts_ranges: true,
            md5,
            // Not recorded: the resumed answer says it again (see `check_range`).
            content_encoding: None,
        };
        package.resumable().then_some(package)
    }

    /// What a later call needs to go on from the part file: `None` for a package that cannot
    /// be resumed.
    fn record(&self, action_id: &str) -> Option<PartRecord> {
        let length = self.length.filter(|_| self.resumable())?;
        Some(PartRecord {
            etag: self.etag.clone(),
            last_modified: self.last_modified.clone(),
            md5: self.md5.map(|md5| base64::engine::general_purpose::STANDARD.encode(md5)),
            ..PartRecord::new(action_id, length)
        })
    }

    /// The `If-Range` validator: the ETag, else Last-Modified.
    fn validator(&self) -> Option<&str> {
        self.etag.as_deref().or(self.last_modified.as_deref())
    }

    /// A broken transfer can go on from where it stopped: the server takes ranges, and the
    /// validator and length make sure the rest belongs to the same package.
    fn resumable(&self) -> bool {
        self.accepts_ranges && self.validator().is_some() && self.length.is_some()
    }
}

/// Why an attempt did not bring the whole package.
enum Interruption {
    /// Try again, resuming where possible; after the delay the server asked for, if it did
    /// (`Retry-After`, in the service's time).
    Broken(Error, Option<Duration>),
    /// Slower than the minimum speed: a stall, tried again as a broken transfer, but one that
    /// brought less than the minimum is no progress.
    TooSlow(Error),
    /// The ZIP check found the package damaged: downloaded once more from the start.
    Damaged(Error),
    /// The download host refused the link (403): get a fresh one, then try again.
    LinkRefused(Error),
    /// Retrying cannot help.
    Fatal(Error),
}

/// What set a transfer back, as its budget sees it.
enum Setback {
    /// The attempt broke; `progressed` when it brought bytes; the pause the server asked for, if
    /// it did (`Retry-After`, in the service's time).
    Broken { progressed: bool, retry_after: Option<Duration> },
    /// The download host refused the link.
    LinkRefused { progressed: bool },
    /// The whole package arrived but does not match its MD5, or the ZIP check found it damaged.
    Checksum,
}

/// The transfer's retry policy, which counts progress: tries that brought bytes go on at once
/// and restore the count of tries without a byte.
#[derive(Default)]
struct Budget {
    clock_scale: f64,
    retries: u32,
    retries_without_progress: u32,
    fresh_links_without_progress: u32,
    /// The package failed its MD5 or its ZIP check once and was downloaded again from the start.
    fetched_again_for_checksum: bool,
}

impl Budget {
    fn new(clock_scale: f64) -> Self {
        Self { clock_scale, ..Self::default() }
    }

    /// Records a broken attempt: the pause before the next, or why there is none.
    fn spend(&mut self, progressed: bool, retry_after: Option<Duration>) -> Verdict {
        self.retries += 1;
        if progressed {
            self.retries_without_progress = 0;
            self.fresh_links_without_progress = 0;
        } else {
            self.retries_without_progress += 1;
        }
        if self.retries > MAX_RETRIES {
            return Verdict::Exhausted(format!("gave up after {MAX_RETRIES} retries"));
        }
        if self.retries_without_progress > MAX_RETRIES_WITHOUT_PROGRESS {
            return Verdict::Exhausted(format!(
                "gave up after {MAX_RETRIES_WITHOUT_PROGRESS} retries in a row without progress (no byte, or \
                 fewer than min_speed_bytes)"
            ));
        }
        // Bytes came: the connection was fine until it broke, so go on at once.
        if progressed {
            return Verdict::RetryIn(Duration::ZERO);
        }
        let pause = match retry_after {
            Some(asked) if asked > MAX_RETRY_AFTER => {
                return Verdict::Exhausted(format!(
                    "the download host asks to wait {} s before the next try",
                    asked.as_secs()
                ));
            }
            Some(asked) => asked,
            None => PAUSES.delay(self.retries_without_progress - 1),
        };
        Verdict::RetryIn(crate::config::scale(pause, self.clock_scale))
    }
}

impl Policy for Budget {
    type Failure = Setback;

    fn verdict(&mut self, setback: Setback) -> Verdict {
        match setback {
            Setback::Broken { progressed, retry_after } => self.spend(progressed, retry_after),
            Setback::LinkRefused { progressed } => match self.spend(progressed, None) {
                Verdict::RetryIn(_) => {
                    self.fresh_links_without_progress += 1;
                    if self.fresh_links_without_progress > MAX_FRESH_LINKS_WITHOUT_PROGRESS {
                        return Verdict::Exhausted(format!(
                            "{MAX_FRESH_LINKS_WITHOUT_PROGRESS} fresh links were refused too"
                        ));
                    }
                    Verdict::RetryIn(Duration::ZERO)
                }
                stop => stop,
            },
            // Downloaded once more from the start (a byte may have been damaged on the way).
            Setback::Checksum if self.fetched_again_for_checksum => {
                Verdict::Exhausted("downloaded twice, it failed both times".to_owned())
            }
            Setback::Checksum => {
                self.fetched_again_for_checksum = true;
                Verdict::RetryIn(Duration::ZERO)
            }
        }
    }

    fn retries(&self) -> u32 {
        self.retries
    }
}

pub(super) struct Transfer<'a> {
    api: Api<'a>,
    /// What is downloaded, and where its fresh links come from.
    kind: &'a Kind<'a>,
    what: &'a str,
    item: usize,
    link: Url,
    /// `None` until the first whole answer, and again when the next request must not resume.
    package: Option<Package>,
    /// Body bytes the current attempt brought.
    delivered: u64,
    /// Bytes kept from an earlier call's part file, until the transfer starts over.
    resumed_from: u64,
    retry: Retry<'a, Budget>,
}

impl<'a> Transfer<'a> {
    pub(super) fn new(api: Api<'a>, kind: &'a Kind<'a>, what: &'a str, item: usize, link: Url) -> Self {
        let retry = Retry::new(Budget::new(api.session.settings.clock_scale), what, api.reporter);
        Self { api, kind, what, item, link, package: None, delivered: 0, resumed_from: 0, retry }
    }

    /// Downloads the whole package into `part`, trying again within the budget. With
    /// `leftover` (the record and length of what an earlier call left in `part`), goes on from
    /// there when the download host confirms it is the same package, else starts over.
    pub(super) async fn run(mut self, part: &mut PartFile, leftover: Option<(PartRecord, u64)>) -> Result<Received> {
        let mut sink: Option<Sink> = None;
        if let Some((record, bytes)) = leftover {
            match Package::from_record(&record) {
                Some(package) => {
                    // A whole part goes on from its last byte: the download host still vouches
                    // for it (the validator), and the range asked for is never empty.
                    let kept = bytes.min(record.length.saturating_sub(1));
                    let file = part.keep_first(kept)?;
                    let with_md5 = package.md5.is_some();
                    match Sink::resuming(file, part.path().to_owned(), kept, with_md5, self.kind.is_zip()).await {
                        Ok(resumed) => {
                            sink = Some(resumed);
                            self.package = Some(package);
                            self.resumed_from = kept;
                        }
                        // The bytes kept fail the ZIP check: they are not kept.
                        Err(damage) if damage.status() == DefenderStatus::Integrity => {
                            self.api.reporter.log(
                                DefenderLogLevel::Warn,
                                format!(
                                    "{}: the bytes an earlier call left fail the ZIP check ({damage}); starting over",
                                    self.what
                                ),
                            );
                            drop(part.start_over()?);
                        }
                        Err(error) => return Err(error),
                    }
                }
                None => drop(part.start_over()?),
            }
        }
        loop {
            self.delivered = 0;
            match self.attempt(part, &mut sink).await {
                Ok(()) => {
                    let finished = sink.take().expect("a complete attempt has a sink");
                    let bytes = finished.received();
                    let digests = finished.finish().await?;
                    let expected_md5 = self.package.as_ref().and_then(|package| package.md5);
                    let zip = match digests.zip {
                        Some(Ok(summary)) => Some(summary),
                        Some(Err(damage)) => {
                            self.again(Setback::Checksum, damage, "downloading it again from the start")?;
                            self.package = None;
                            continue;
                        }
                        None => None,
                    };
                    let content_encoding = self.package.as_ref().and_then(|package| package.content_encoding.clone());
                    match expected_md5 {
                        Some(expected) if digests.md5 != Some(expected) => {
                            let error = Error::integrity("the package does not match its Content-MD5");
                            self.again(Setback::Checksum, error, "downloading it again from the start")?;
                            self.package = None;
                        }
                        _ => {
                            self.log_unchecked(zip.as_ref());
                            let resumed_from = self.resumed_from;
                            return Ok(Received { bytes, sha256: digests.sha256, content_encoding, resumed_from });
                        }
                    }
                }
                Err(Interruption::Fatal(error)) => return Err(error.context(self.what)),
                Err(Interruption::Damaged(damage)) => {
                    self.again(Setback::Checksum, damage, "downloading it again from the start")?;
                    self.package = None;
                }
                Err(Interruption::Broken(error, retry_after)) => {
                    self.resume(&sink, error, Setback::Broken { progressed: self.delivered > 0, retry_after }).await?;
                }
                Err(Interruption::TooSlow(error)) => {
                    let progressed = limits::made_progress(&self.api.session.settings, self.delivered);
                    self.resume(&sink, error, Setback::Broken { progressed, retry_after: None }).await?;
                }
                Err(Interruption::LinkRefused(error)) => {
                    self.again(Setback::LinkRefused { progressed: self.delivered > 0 }, error, "getting a fresh link")?;
                    self.link = self.kind.fresh_link(self.api).await?;
                }
            }
        }
    }

    /// Says which entries the ZIP check could not compute the CRC-32 of (another method than
    /// stored or deflated, or encrypted).
    fn log_unchecked(&self, zip: Option<&ZipSummary>) {
        let Some(zip) = zip.filter(|zip| zip.unchecked > 0) else { return };
        self.api.reporter.log(
            DefenderLogLevel::Warn,
            format!(
                "{}: the CRC-32 of {} of its {} entries could not be checked (their structure and sizes were), \
                 the first {}",
                self.what,
                zip.unchecked,
                zip.entries,
                zip.first_unchecked.as_deref().unwrap_or("?")
            ),
        );
    }

    /// After a broken attempt: waits before the next, which resumes where `sink` stopped when it
    /// can; or the error that ends the transfer.
    async fn resume(&mut self, sink: &Option<Sink>, error: Error, setback: Setback) -> Result<()> {
        let offset = sink.as_ref().map_or(0, Sink::received);
        let next = match &self.package {
            Some(package) if package.resumable() && offset > 0 => format!("resuming at byte {offset}"),
            _ => "starting over".to_owned(),
        };
        let pause = self.again(setback, error, &next)?;
        tokio::time::sleep(pause).await;
        Ok(())
    }

    /// Hands a setback to the retry engine: the pause before trying again (`next` says how), or
    /// the error that ends the transfer.
    fn again(&mut self, setback: Setback, error: Error, next: &str) -> Result<Duration> {
        let problem = format!("{error}; {next}");
        self.retry.decide(setback, &problem).map_err(|stop| stop.error(error).context(self.what))
    }

    /// One request for the package, or for the rest of it when `sink` holds a resumable start.
    async fn attempt(&mut self, part: &mut PartFile, sink: &mut Option<Sink>) -> Result<(), Interruption> {
        let offset = sink.as_ref().map_or(0, Sink::received);
        let resume = self.package.as_ref().filter(|package| package.resumable() && offset > 0);
        // The link carries its own credential (a SAS token): no Authorization header goes with it.
        let mut request = self.api.session.http.get(self.link.clone());
        if let Some(version) = self.kind.storage_version() {
            // Blob storage answers in the version asked for: one that sends the blob's MD5 with
            // ranges (x-ms-blob-content-md5) and keeps its Content-Encoding.
            request = request.header("x-ms-version", version);
        }
        if let Some(package) = resume {
            let validator = package.validator().unwrap_or_default();
            request = request.header(RANGE, format!("bytes={offset}-")).header(IF_RANGE, validator);
        }
        let resuming = resume.is_some();
        let response = request.send().await.map_err(|err| match crate::http::final_transport_error(&err) {
            Some(final_error) => Interruption::Fatal(final_error),
            None => Interruption::Broken(describe_transport_error(&err), None),
        })?;
        match response.status() {
            StatusCode::OK => {
                if offset > 0 {
                    self.api.reporter.log(
                        DefenderLogLevel::Warn,
                        format!("{}: the download host sent the whole package again; starting over", self.what),
                    );
                }
                check_encoding(self.kind, response.headers()).map_err(Interruption::Fatal)?;
                let package = Package::from_headers(response.headers()).map_err(Interruption::Fatal)?;
                if let Some(abandoned) = sink.take() {
                    // Its writer shares the file's position: it must be done before the file is
                    // emptied. What it wrote, or failed to write, no longer matters.
                    let _ = abandoned.finish().await;
                }
                let file = part.start_over().map_err(Interruption::Fatal)?;
                self.resumed_from = 0;
                if let Some(length) = package.length {
                    limits::check_room(part.path(), length).map_err(Interruption::Fatal)?;
                }
                // Before the first byte: a crash from now on leaves a part a later call can resume.
                if let Some(record) = package.record(&self.kind.record_id()) {
                    part.write_record(&record).map_err(Interruption::Fatal)?;
                }
                let check_zip = self.kind.is_zip();
                *sink = Some(
                    Sink::new(file, part.path().to_owned(), package.md5.is_some(), check_zip)
                        .map_err(Interruption::Fatal)?,
                );
                self.package = Some(package);
            }
            StatusCode::PARTIAL_CONTENT if resuming => {
                crate::http::check_framing(response.headers()).map_err(Interruption::Fatal)?;
                check_encoding(self.kind, response.headers()).map_err(Interruption::Fatal)?;
                self.check_range(response.headers(), offset)?;
            }
            StatusCode::FORBIDDEN => return Err(Interruption::LinkRefused(refused(&response))),
            StatusCode::RANGE_NOT_SATISFIABLE => {
                self.package = None;
                return Err(Interruption::Broken(refused(&response), None));
            }
            status if status == StatusCode::TOO_MANY_REQUESTS || retry::is_transient(status) => {
                return Err(Interruption::Broken(refused(&response), retry::retry_after(response.headers())));
            }
            _ => return Err(Interruption::Fatal(refused(&response))),
        }
        let sink = sink.as_mut().expect("a sink is in place for a 200 or 206 answer");
        self.stream(response, sink).await
    }

    /// A 206 must be the rest of the same package; if it is not, the next request starts over.
    fn check_range(&mut self, headers: &HeaderMap, offset: u64) -> Result<(), Interruption> {
        let package = self.package.as_ref().expect("a resumed request has a package");
        let length = package.length.expect("a resumable package has a length");
        let range = header_text(headers, CONTENT_RANGE.as_str()).and_then(parse_content_range);
        let range_matches =
            range == Some(ContentRange { first: offset, last: length.saturating_sub(1), total: length });
        let md5 = md5_header(headers, "x-ms-blob-content-md5").map_err(Interruption::Fatal)?;
        let md5_matches = md5.is_none() || package.md5.is_none() || md5 == package.md5;
        // A validator the answer carries must be the one the package had.
        let same = |name: &str, known: &Option<String>| {
            header_text(headers, name).is_none_or(|sent| known.as_deref().is_none_or(|known| known == sent))
        };
        let validators_match =
            same(ETAG.as_str(), &package.etag) && same(LAST_MODIFIED.as_str(), &package.last_modified);
        if range_matches && md5_matches && validators_match {
            // A part resumed from an earlier call's record learns its encoding here.
            if let Some(package) = self.package.as_mut().filter(|package| package.content_encoding.is_none()) {
                package.content_encoding = header_text(headers, CONTENT_ENCODING.as_str())
                    .filter(|encoding| !encoding.eq_ignore_ascii_case("identity"))
                    .map(|encoding| crate::redact::printable(encoding, 32));
            }
            return Ok(());
        }
        self.package = None;
        Err(Interruption::Broken(
            Error::protocol(
                "the download host answered the resumed request with another part or another version of the package",
            ),
            None,
        ))
    }

    /// Streams the body into `sink`, reporting progress.
    async fn stream(&mut self, response: Response, sink: &mut Sink) -> Result<(), Interruption> {
        let length = self.package.as_ref().and_then(|package| package.length);
        self.api.reporter.item_progress(self.item, sink.received(), length.unwrap_or(0), false);
        let settings = &self.api.session.settings;
        let mut pace = Pace::new(settings);
        let mut body = response.bytes_stream();
        while let Some(chunk) = pace.next(&mut body).await.map_err(|slow| {
            Interruption::TooSlow(slow.context(format!("the body slowed down after {} bytes", sink.received())))
        })? {
            let chunk = chunk.map_err(|err| Interruption::Broken(body_error(&err, sink.received(), length), None))?;
            self.delivered += chunk.len() as u64;
            if let Err(error) = sink.push(chunk).await {
                return Err(if sink.damaged() { Interruption::Damaged(error) } else { Interruption::Fatal(error) });
            }
            match length {
                Some(length) if sink.received() > length => {
                    return Err(Interruption::Fatal(Error::integrity(format!(
                        "the body is longer than the {length} bytes announced"
                    ))));
                }
                Some(_) => {}
                None => limits::check_unannounced(settings, sink.received()).map_err(Interruption::Fatal)?,
            }
            self.api.reporter.item_progress(self.item, sink.received(), length.unwrap_or(0), false);
        }
        match length {
            Some(length) if sink.received() < length => Err(Interruption::Broken(
                Error::integrity(format!("the body ended after {} of {length} bytes", sink.received())),
                None,
            )),
            _ => Ok(()),
        }
    }
}

/// A `Content-Range: bytes first-last/total` header of a 206 answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ContentRange {
    pub first: u64,
    pub last: u64,
    pub total: u64,
}

/// Reads `bytes first-last/total`; `None` for anything else (an unknown total `*`, a range whose
/// end is before its start or past the total, numbers that do not fit in 64 bits).
pub(crate) fn parse_content_range(text: &str) -> Option<ContentRange> {
    let (unit, rest) = text.trim().split_once(' ')?;
    let (range, total) = rest.trim().split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let number = |digits: &str| digits.bytes().all(|b| b.is_ascii_digit()).then(|| digits.parse::<u64>().ok())?;
    let range = ContentRange { first: number(first)?, last: number(last)?, total: number(total)? };
    (unit.eq_ignore_ascii_case("bytes") && range.first <= range.last && range.last < range.total).then_some(range)
}

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

/// An MD5 header (base64 of the 16-byte digest), when the server sends one.
fn md5_header(headers: &HeaderMap, name: &str) -> Result<Option<[u8; 16]>> {
    let Some(value) = headers.get(name) else { return Ok(None) };
    let digest = value
        .to_str()
        .ok()
        .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text.trim()).ok())
        .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok())
        .ok_or_else(|| Error::protocol(format!("the {name} header is not a base64 MD5 digest")))?;
    Ok(Some(digest))
}

/// The download host refused the request: its status, with Azure Storage's error code and
/// request id (what its support asks for) when it sends them.
fn refused(response: &Response) -> Error {
    let status = response.status();
    let headers = response.headers();
    let details: Vec<String> = [
        header_text(headers, "x-ms-error-code").map(|code| format!("code {code}")),
        header_text(headers, "x-ms-request-id").map(|id| format!("request id {id}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let details = if details.is_empty() { String::new() } else { format!(" ({})", details.join(", ")) };
    match status.as_u16() {
        403 => Error::new(
            DefenderStatus::Forbidden,
            format!(
                "the download host refused the link (HTTP 403{details}); links expire within minutes of being issued"
            ),
        ),
        404 => {
            Error::new(DefenderStatus::NotFound, format!("the download host has no such package (HTTP 404{details})"))
        }
        _ => Error::new(DefenderStatus::Http, format!("the download host answered HTTP {status}{details}")),
    }
}

/// A body that broke off: shorter than announced is `INTEGRITY`, a stall `TIMEOUT`, the rest `NETWORK`.
fn body_error(err: &reqwest::Error, received: u64, length: Option<u64>) -> Error {
    let transport = describe_transport_error(err);
    match length {
        Some(length) if transport.status() != DefenderStatus::Timeout => Error::new(
            DefenderStatus::Integrity,
            format!("the body ended after {received} of {length} bytes ({})", transport.message()),
        ),
        _ => Error::new(
            transport.status(),
            format!("the body broke off after {received} bytes ({})", transport.message()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_is_read_only_when_whole_and_consistent() {
        assert_eq!(parse_content_range("bytes 5-9/10"), Some(ContentRange { first: 5, last: 9, total: 10 }));
        let max = u64::MAX;
        assert_eq!(
            parse_content_range(&format!("bytes 0-{}/{max}", max - 1)),
            Some(ContentRange { first: 0, last: max - 1, total: max })
        );
        for bad in [
            "bytes 9-5/10",
            "bytes 5-10/10",
            "bytes 0-0/0",
            "bytes 5-9/*",
            "bytes */10",
            "bytes +5-9/10",
            "items 5-9/10",
            "bytes 0-1/18446744073709551616",
            "",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_record_resumes_with_its_etag_else_its_last_modified_and_never_without_either() {
        let record = |etag: Option<&str>, last_modified: Option<&str>| PartRecord {
            etag: etag.map(str::to_owned),
            last_modified: last_modified.map(str::to_owned),
            md5: Some("1B2M2Y8AsgTpgAmY7PhCfg==".to_owned()),
            ..PartRecord::new("a1", 10)
        };
        let date = "Sun, 06 Dec 2026 07:40:00 GMT";
        let both = Package::from_record(&record(Some("\"e\""), Some(date))).unwrap();
        assert_eq!(both.validator(), Some("\"e\""));
        assert_eq!(both.md5, Some(<[u8; 16]>::from(<md5::Md5 as sha2::Digest>::digest(b""))));
        let dated = Package::from_record(&record(None, Some(date))).unwrap();
        assert_eq!(dated.validator(), Some(date));
        assert_eq!(dated.record("a1"), Some(record(None, Some(date))), "recorded as it was read");
        assert!(Package::from_record(&record(None, None)).is_none());
        let bad_md5 = PartRecord { md5: Some("not base64".to_owned()), ..record(Some("\"e\""), None) };
        assert!(Package::from_record(&bad_md5).is_none());
    }

    fn broken(progressed: bool) -> Setback {
        Setback::Broken { progressed, retry_after: None }
    }

    #[test]
    fn tries_that_bring_bytes_go_on_at_once_and_restore_the_count_without_progress() {
        let mut budget = Budget::new(1.0);
        for _ in 0..MAX_RETRIES_WITHOUT_PROGRESS {
            let Verdict::RetryIn(pause) = budget.verdict(broken(false)) else { panic!("gave up too soon") };
            assert!(pause > Duration::ZERO && pause <= PAUSES.cap, "{pause:?}");
        }
        assert_eq!(budget.verdict(broken(true)), Verdict::RetryIn(Duration::ZERO));
        assert!(matches!(budget.verdict(broken(false)), Verdict::RetryIn(_)), "the count started again");
        while budget.retries() < MAX_RETRIES {
            assert_eq!(budget.verdict(broken(true)), Verdict::RetryIn(Duration::ZERO));
        }
        let Verdict::Exhausted(why) = budget.verdict(broken(true)) else { panic!("no end") };
        assert_eq!(why, "gave up after 25 retries");

        let mut budget = Budget::new(1.0);
        let asked = Setback::Broken { progressed: false, retry_after: Some(Duration::from_secs(3)) };
        assert_eq!(budget.verdict(asked), Verdict::RetryIn(Duration::from_secs(3)));
        let forever = Setback::Broken { progressed: false, retry_after: Some(MAX_RETRY_AFTER * 2) };
        assert!(matches!(budget.verdict(forever), Verdict::Exhausted(why) if why.contains("asks to wait")));
    }

    #[test]
    fn refused_links_and_a_bad_checksum_have_their_own_counts() {
        let mut budget = Budget::new(1.0);
        for _ in 0..MAX_FRESH_LINKS_WITHOUT_PROGRESS {
            assert_eq!(budget.verdict(Setback::LinkRefused { progressed: false }), Verdict::RetryIn(Duration::ZERO));
        }
        assert_eq!(
            budget.verdict(Setback::LinkRefused { progressed: false }),
            Verdict::Exhausted("2 fresh links were refused too".into())
        );
        let mut budget = Budget::new(1.0);
        assert_eq!(budget.verdict(Setback::Checksum), Verdict::RetryIn(Duration::ZERO));
        assert_eq!(
            budget.verdict(Setback::Checksum),
            Verdict::Exhausted("downloaded twice, it failed both times".into())
        );
    }
}
