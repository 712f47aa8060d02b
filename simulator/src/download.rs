//! The download host: serves packages behind the links getPackageUri hands out, as Azure Storage
//! serves a blob behind a SAS link (ranges, ETag, optional Content-MD5), and applies the
//! download faults to the body.

use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::BytesMut;
use hyper::header::{
    ACCEPT_RANGES, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, HeaderValue, IF_RANGE, RANGE,
};
use hyper::{Method, Response, StatusCode};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until};

use crate::exchange::Exchange;
use crate::faults::Fault;
use crate::package::Package;
use crate::responses::{HttpResponse, storage_error};
use crate::server::{BodyEvent, ResponseBody};
use crate::simulation::Simulation;
use crate::state::LinkTarget;

const AUTHENTICATION_FAILED: &str = "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.";

pub(crate) async fn serve(
    sim: &Simulation,
    link: Option<LinkTarget>,
    fault: Option<&Fault>,
    exchange: &Exchange,
) -> HttpResponse {
    if exchange.headers.contains_key(AUTHORIZATION) {
        // A SAS link is the credential; storage refuses a request that also carries another.
        return storage_error(
            StatusCode::BAD_REQUEST,
            "InvalidAuthenticationInfo",
            "Authentication information is not given in the correct format. Check the value of Authorization header.",
            Some("A download link must be fetched without an Authorization header."),
        );
    }
    let link = match link {
        None => {
            return storage_error(
                StatusCode::FORBIDDEN,
                "AuthenticationFailed",
                AUTHENTICATION_FAILED,
                Some("Signature did not match: the link's token is not one the simulator issued."),
            );
        }
        Some(link) if link.expired || fault == Some(&Fault::ExpiredLink) => {
            return storage_error(
                StatusCode::FORBIDDEN,
                "AuthenticationFailed",
                AUTHENTICATION_FAILED,
                Some("Signature not valid in the specified time frame: the link has expired."),
            );
        }
        Some(link) => link,
    };

    let package = Arc::new(Package::with_layout(&link.action_id, link.package_size, &link.package_layout));
    let size = package.size();
    let honour_ranges = fault != Some(&Fault::NoRanges);
    let range = if honour_ranges { requested_range(exchange, package.etag(), size) } else { Requested::Whole };
    let range = match range {
        Requested::Whole => None,
        Requested::Part(range) => Some(range),
        Requested::Unsatisfiable => {
            let mut response = storage_error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "InvalidRange",
                "The range specified is invalid for the current size of the resource.",
                None,
            );
            response.headers_mut().insert(CONTENT_RANGE, header_value(format!("bytes */{size}")));
            return response;
        }
    };
    let content_md5 = link.content_md5.unwrap_or(sim.config().content_md5);
    let md5 = if content_md5 { Some(cached_md5(link.package_md5.clone(), package.clone()).await) } else { None };

    let body_range = range.clone().unwrap_or(0..size);
    let body = if exchange.method == Method::HEAD {
        ResponseBody::empty()
    } else {
        let (events, receiver) = mpsc::channel(4);
        let shaping = Shaping::from_fault(fault);
        tokio::spawn(send_body(package.clone(), body_range.clone(), shaping, events));
        ResponseBody::stream(receiver, exchange.connection.clone())
    };

    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/zip"));
    if fault != Some(&Fault::NoLength) {
        headers.insert(CONTENT_LENGTH, header_value((body_range.end - body_range.start).to_string()));
    }
    headers.insert(ETAG, header_value(package.etag().to_owned()));
    if honour_ranges {
        headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    if let Some(md5) = md5 {
        // As Storage does: the whole blob's MD5 as Content-MD5 for a whole read, and as
        // x-ms-blob-content-md5 for a range (whose bytes it does not describe).
        let name = if range.is_some() { "x-ms-blob-content-md5" } else { "content-md5" };
        headers.insert(name, header_value(BASE64.encode(md5)));
    }
    if let Some(range) = &range {
        headers.insert(CONTENT_RANGE, header_value(format!("bytes {}-{}/{size}", range.start, range.end - 1)));
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    response
}

fn header_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).expect("numbers and base64 are valid header values")
}

async fn cached_md5(cache: Arc<OnceLock<[u8; 16]>>, package: Arc<Package>) -> [u8; 16] {
    if let Some(md5) = cache.get() {
        return *md5;
    }
    // Hashing gigabytes takes seconds: off the async workers.
    tokio::task::spawn_blocking(move || *cache.get_or_init(|| package.md5()))
        .await
        .expect("hashing a package does not panic")
}

enum Requested {
    Whole,
    Part(Range<u64>),
    Unsatisfiable,
}

/// The single byte range asked for (RFC 9110 14.2): `bytes=a-b`, `bytes=a-` or `bytes=-n`.
/// Several ranges, a malformed header, or an `If-Range` that no longer matches get the whole
/// package, as the RFC allows.
fn requested_range(exchange: &Exchange, etag: &str, size: u64) -> Requested {
    let Some(spec) = exchange.header(RANGE).and_then(|header| header.trim().strip_prefix("bytes=")) else {
        return Requested::Whole;
    };
    if exchange.header(IF_RANGE).is_some_and(|validator| validator != etag) {
        return Requested::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Requested::Whole;
    };
    if spec.contains(',') {
        return Requested::Whole;
    }
    let parse = |text: &str| text.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), parse(first), parse(last)) {
        (true, _, Some(0)) => Requested::Unsatisfiable,
        (true, _, Some(suffix)) => Requested::Part(size.saturating_sub(suffix)..size),
        (false, Some(start), _) if start >= size => Requested::Unsatisfiable,
        (false, Some(start), None) if last.trim().is_empty() => Requested::Part(start..size),
        (false, Some(start), Some(end)) if start <= end => Requested::Part(start..end.saturating_add(1).min(size)),
        _ => Requested::Whole,
    }
}

/// What the download faults do to a body.
#[derive(Default)]
struct Shaping {
    /// Body bytes to send before the connection is closed (`cut_after`, `short_body`).
    close_after: Option<u64>,
    /// Package offset of the byte to corrupt.
    corrupt_offset: Option<u64>,
    /// Body bytes before a pause, and the pause.
    stall: Option<(u64, Duration)>,
    bytes_per_sec: Option<u64>,
}

impl Shaping {
    fn from_fault(fault: Option<&Fault>) -> Shaping {
        match fault {
            // On HTTP/1.1 with a Content-Length, an abort and an early end of the body look the
            // same to the client: the connection closes before the announced length.
            Some(Fault::CutAfter { bytes } | Fault::ShortBody { bytes }) => {
                Shaping { close_after: Some(*bytes), ..Shaping::default() }
            }
            Some(Fault::CorruptByte { offset }) => Shaping { corrupt_offset: Some(*offset), ..Shaping::default() },
            Some(Fault::Stall { after_bytes, ms }) => {
                Shaping { stall: Some((*after_bytes, Duration::from_millis(*ms))), ..Shaping::default() }
            }
            Some(Fault::SlowBody { bytes_per_sec }) => {
                Shaping { bytes_per_sec: Some(*bytes_per_sec), ..Shaping::default() }
            }
            _ => Shaping::default(),
        }
    }
}

/// Sends `range` of the package as body events, shaped by the fault. Ends early when the client
/// goes away (the receiver is dropped).
async fn send_body(package: Arc<Package>, range: Range<u64>, shaping: Shaping, events: mpsc::Sender<BodyEvent>) {
    let mut stall = shaping.stall;
    let mut pacer = shaping.bytes_per_sec.map(Pacer::new);
    let mut sent = 0u64;
    let mut offset = range.start;
    for chunk in package.chunks(range) {
        let chunk_offset = offset;
        offset += chunk.len() as u64;
        let mut chunk = match shaping.corrupt_offset {
            Some(corrupt) if (chunk_offset..offset).contains(&corrupt) => {
                let mut copy = BytesMut::from(&chunk[..]);
                copy[(corrupt - chunk_offset) as usize] ^= 0xFF;
                copy.freeze()
            }
            _ => chunk,
        };
        while !chunk.is_empty() {
            if shaping.close_after == Some(sent) {
                let _ = events.send(BodyEvent::CloseConnection).await;
                return;
            }
            if let Some((after, pause)) = stall {
                if after == sent {
                    sleep(pause).await;
                    stall = None;
                }
            }
            // Split pieces at the points where something happens, and to the pacer's size.
            let mut piece = chunk.len() as u64;
            for boundary in [shaping.close_after, stall.map(|(after, _)| after)]
                .into_iter()
                .flatten()
                .filter(|&boundary| boundary > sent)
            {
                piece = piece.min(boundary - sent);
            }
            if let Some(pacer) = &mut pacer {
                piece = piece.min(pacer.largest_piece());
                pacer.wait_turn(piece).await;
            }
            let piece = chunk.split_to(piece as usize);
            sent += piece.len() as u64;
            if events.send(BodyEvent::Data(piece)).await.is_err() {
                return;
            }
        }
    }
}

/// Keeps a body at or below a rate: small pieces, each sent when its turn comes.
struct Pacer {
    bytes_per_sec: u64,
    started: Instant,
    sent: u64,
}

impl Pacer {
    fn new(bytes_per_sec: u64) -> Pacer {
        Pacer { bytes_per_sec, started: Instant::now(), sent: 0 }
    }

    /// A tenth of a second's worth, so the rate holds over short spans too.
    fn largest_piece(&self) -> u64 {
        (self.bytes_per_sec / 10).max(1)
    }

    /// Waits until sending `piece` more keeps the total within the rate since the start.
    async fn wait_turn(&mut self, piece: u64) {
        let total = (self.sent + piece) as f64;
        sleep_until(self.started + Duration::from_secs_f64(total / self.bytes_per_sec as f64)).await;
        self.sent += piece;
    }
}
