//! The download host: packages, ranges, checksums, link expiry, download faults, TLS.

use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use defender_simulator::{ActionSpec, ConfigPatch, Fault, FaultRule, MIN_PACKAGE_SIZE, Options, RouteKind, Simulator};
use md5::{Digest, Md5};
use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use reqwest::header::{ACCEPT_RANGES, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, ETAG, IF_RANGE, RANGE};

use crate::common::{access_token, client, client_trusting, json, package_link, ready_action, start_unlimited};

/// A simulator, a client, and a link to a ready package of `size` bytes.
struct Download {
    simulator: Simulator,
    client: Client,
    token: String,
    action_id: String,
}

impl Download {
    fn new(spec: ActionSpec) -> Download {
        let simulator = start_unlimited();
        let client = client();
        let token = access_token(&client, &simulator);
        let action_id = ready_action(&simulator, spec);
        Download { simulator, client, token, action_id }
    }

    fn of_size(size: u64) -> Download {
        Download::new(ActionSpec { package_size: Some(size), ..ActionSpec::default() })
    }

    fn link(&self) -> String {
        package_link(&self.client, &self.simulator, &self.token, &self.action_id)
    }

    fn get(&self, range: Option<&str>) -> Response {
        let request = self.client.get(self.link());
        let request = match range {
            Some(range) => request.header(RANGE, range),
            None => request,
        };
        request.send().expect("the download host answers")
    }

    fn with_fault(&self, fault: Fault) -> &Download {
        self.simulator.add_fault(FaultRule::new(RouteKind::Download, fault)).unwrap();
        self
    }
}

/// Reads a body to its end; answers the bytes that arrived and whether the body was complete.
fn read_body(mut response: Response) -> (Vec<u8>, io::Result<()>) {
    let mut body = Vec::new();
    let outcome = response.read_to_end(&mut body).map(|_| ());
    (body, outcome)
}

fn whole(download: &Download) -> Vec<u8> {
    let response = download.get(None);
    assert_eq!(response.status(), StatusCode::OK);
    response.bytes().unwrap().to_vec()
}

/// Opens the ZIP with the `zip` crate and reads every entry, which checks every CRC-32.
fn assert_valid_zip(bytes: &[u8]) -> Vec<String> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("a ZIP");
    (0..archive.len())
        .map(|index| {
            let mut entry = archive.by_index(index).unwrap();
            let name = entry.name().unwrap().into_owned();
            io::copy(&mut entry, &mut io::sink()).unwrap_or_else(|error| panic!("{name}: {error}"));
            name
        })
        .collect()
}

#[test]
fn packages_are_valid_zips_of_exactly_the_action_size() {
    let size = 300_001;
    let download = Download::of_size(size);
    let response = download.get(None);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_LENGTH], size.to_string().as_str());
    assert_eq!(response.headers()[ACCEPT_RANGES], "bytes");
    let etag = response.headers()[ETAG].clone();
    let bytes = response.bytes().unwrap();
    assert_eq!(bytes.len() as u64, size);
    let names = assert_valid_zip(&bytes);
    for expected in [
        "Autoruns/Logon.txt",
        "Processes/Processes.csv",
        "Security event log/Security.evtx",
        "WdSupportLogs/MpSupportFiles.cab",
        "CollectionSummaryReport.xls",
    ] {
        assert!(names.iter().any(|name| name == expected), "{expected} in {names:?}");
    }
    assert_eq!(whole(&download), bytes, "the same action gives the same bytes");
    assert_eq!(download.get(None).headers()[ETAG], etag);

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    match Command::new("unzip").arg("-tq").arg(file.path()).output() {
        Ok(output) => assert!(output.status.success(), "unzip -t: {}", String::from_utf8_lossy(&output.stdout)),
        Err(error) => eprintln!("unzip is not available ({error}); the zip crate checked the package"),
    }
}

#[test]
fn the_smallest_package_is_still_a_zip() {
    let download = Download::of_size(MIN_PACKAGE_SIZE);
    let bytes = whole(&download);
    assert_eq!(bytes.len() as u64, MIN_PACKAGE_SIZE);
    assert_valid_zip(&bytes);
}

#[test]
fn ranges_answer_206_and_the_same_bytes() {
    let size = 200_000u64;
    let download = Download::of_size(size);
    let all = whole(&download);

    let part = download.get(Some("bytes=1000-69999"));
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.headers()[CONTENT_RANGE], "bytes 1000-69999/200000");
    assert_eq!(part.headers()[CONTENT_LENGTH], "69000");
    assert_eq!(part.bytes().unwrap(), all[1000..70000]);

    let rest = download.get(Some("bytes=199990-"));
    assert_eq!(rest.headers()[CONTENT_RANGE], "bytes 199990-199999/200000");
    assert_eq!(rest.bytes().unwrap(), all[199_990..]);
    let suffix = download.get(Some("bytes=-5"));
    assert_eq!(suffix.bytes().unwrap(), all[all.len() - 5..]);
    let past_the_end = download.get(Some("bytes=199999-999999"));
    assert_eq!(past_the_end.bytes().unwrap(), all[199_999..]);

    let unsatisfiable = download.get(Some("bytes=200000-"));
    assert_eq!(unsatisfiable.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(unsatisfiable.headers()[CONTENT_RANGE], "bytes */200000");

    let stale = download
        .client
        .get(download.link())
        .header(RANGE, "bytes=0-9")
        .header(IF_RANGE, "\"an old etag\"")
        .send()
        .unwrap();
    assert_eq!(stale.status(), StatusCode::OK, "a stale If-Range gets the whole package");
    let head = download.client.head(download.link()).send().unwrap();
    assert_eq!(head.headers()[CONTENT_LENGTH], "200000");
}

#[test]
fn content_md5_is_the_md5_of_the_whole_package() {
    let download = Download::of_size(150_000);
    assert!(!download.get(None).headers().contains_key("content-md5"), "off by default");
    download.simulator.configure(ConfigPatch { content_md5: Some(true), ..ConfigPatch::default() }).unwrap();
    let response = download.get(None);
    let announced = response.headers()["content-md5"].to_str().unwrap().to_owned();
    let bytes = response.bytes().unwrap();
    assert_eq!(announced, BASE64.encode(Md5::digest(&bytes)));
    let range = download.get(Some("bytes=0-99"));
    assert!(!range.headers().contains_key("content-md5"));
    assert_eq!(range.headers()["x-ms-blob-content-md5"], announced.as_str());
}

#[test]
fn cut_after_and_short_body_close_the_connection_after_exactly_n_bytes() {
    let download = Download::of_size(1 << 20);
    let all = whole(&download);
    for fault in [Fault::CutAfter { bytes: 100_000 }, Fault::ShortBody { bytes: 3 }, Fault::CutAfter { bytes: 0 }] {
        let bytes = match fault {
            Fault::CutAfter { bytes } | Fault::ShortBody { bytes } => bytes as usize,
            _ => unreachable!(),
        };
        let response = download.with_fault(fault.clone()).get(None);
        assert_eq!(response.headers()[CONTENT_LENGTH], (1u64 << 20).to_string().as_str());
        let (received, outcome) = read_body(response);
        assert!(outcome.is_err(), "{fault:?}: the client sees an incomplete body");
        assert_eq!(received, all[..bytes], "{fault:?}");
        let record = download.simulator.requests().pop().unwrap();
        assert_eq!(record.fault, Some(fault));
        assert_eq!(record.body_bytes, bytes as u64);
    }
}

#[test]
fn corrupt_byte_flips_one_byte_and_keeps_the_real_md5() {
    let download =
        Download::new(ActionSpec { package_size: Some(100_000), content_md5: Some(true), ..ActionSpec::default() });
    let all = whole(&download);
    let response = download.with_fault(Fault::CorruptByte { offset: 5000 }).get(None);
    assert_eq!(response.headers()["content-md5"], BASE64.encode(Md5::digest(&all)).as_str());
    let corrupted = response.bytes().unwrap();
    let differences: Vec<usize> = (0..all.len()).filter(|&i| all[i] != corrupted[i]).collect();
    assert_eq!(differences, [5000]);
    assert_eq!(corrupted[5000], !all[5000]);
}

#[test]
fn stall_and_slow_body_delay_the_body() {
    let download = Download::of_size(100_000);
    let started = Instant::now();
    let response = download.with_fault(Fault::Stall { after_bytes: 10, ms: 400 }).get(None);
    assert_eq!(response.bytes().unwrap().len(), 100_000);
    assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());

    // 60 000 bytes at 200 000 a second take at least 0.3 s.
    let started = Instant::now();
    let response = download.with_fault(Fault::SlowBody { bytes_per_sec: 200_000 }).get(Some("bytes=0-59999"));
    assert_eq!(response.bytes().unwrap().len(), 60_000);
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
}

#[test]
fn links_expire_and_faults_can_expire_them_early() {
    let download = Download::of_size(MIN_PACKAGE_SIZE);
    let link = download.link();
    let refused = download.with_fault(Fault::ExpiredLink).client.get(&link).send().unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().unwrap().contains("<Code>AuthenticationFailed</Code>"));
    assert_eq!(download.client.get(&link).send().unwrap().status(), StatusCode::OK);

    download.simulator.configure(ConfigPatch { link_ttl_secs: Some(1), ..ConfigPatch::default() }).unwrap();
    let short_lived = download.link();
    sleep(Duration::from_millis(1100));
    let expired = download.client.get(&short_lived).send().unwrap();
    assert_eq!(expired.status(), StatusCode::FORBIDDEN);
    assert_eq!(expired.headers()["x-ms-error-code"], "AuthenticationFailed");

    let unknown = download
        .client
        .get(format!("{}/safedownload/package.zip?token=made-up", download.simulator.download_url()))
        .send()
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::FORBIDDEN);
}

#[test]
fn an_authorization_header_is_refused_and_logged_by_name() {
    let download = Download::of_size(MIN_PACKAGE_SIZE);
    let response = download
        .client
        .get(download.link())
        .header(AUTHORIZATION, format!("Bearer {}", download.token))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().unwrap().contains("<Code>InvalidAuthenticationInfo</Code>"));
    let record = download.simulator.requests().pop().unwrap();
    assert_eq!(record.endpoint, Some(RouteKind::Download));
    assert!(record.headers.contains(&"authorization".to_owned()));
    assert_eq!(record.action_id.as_deref(), Some(download.action_id.as_str()));
    let log = serde_json::to_string(&download.simulator.requests()).unwrap();
    assert!(!log.contains(&download.token), "no token value in the log");
}

#[test]
fn no_ranges_drop_not_found_and_status_faults() {
    let download = Download::of_size(MIN_PACKAGE_SIZE);

    let response = download.with_fault(Fault::NoRanges).get(Some("bytes=0-9"));
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!response.headers().contains_key(ACCEPT_RANGES));
    assert_eq!(response.bytes().unwrap().len() as u64, MIN_PACKAGE_SIZE);

    let dropped = download.with_fault(Fault::Drop).client.get(download.link()).send();
    assert!(dropped.is_err(), "no answer at all");
    assert_eq!(download.simulator.requests().pop().unwrap().status, None);

    let missing = download.with_fault(Fault::NotFound).get(None);
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing.text().unwrap().contains("<Code>ResourceNotFound</Code>"));

    let unavailable = download
        .with_fault(Fault::Status { status: 503, code: Some("ServerBusy".to_owned()), retry_after_secs: Some(7) })
        .get(None);
    assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unavailable.headers()["retry-after"], "7");
    assert_eq!(unavailable.headers()["x-ms-error-code"], "ServerBusy");
}

#[test]
fn no_length_sends_the_package_chunked() {
    let download = Download::of_size(MIN_PACKAGE_SIZE);
    let response = download.with_fault(Fault::NoLength).get(None);
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!response.headers().contains_key(CONTENT_LENGTH));
    assert_eq!(response.headers()["transfer-encoding"], "chunked");
    assert_eq!(response.bytes().unwrap().len() as u64, MIN_PACKAGE_SIZE);
}

#[test]
fn raw_answers_go_out_byte_for_byte_and_close_the_connection() {
    let download = Download::of_size(MIN_PACKAGE_SIZE);
    let raw =
        "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nPK\u{3}\u{4}\r\n0\r\n\r\n";
    download.with_fault(Fault::Raw { response: raw.to_owned() });
    let link = reqwest::Url::parse(&download.link()).unwrap();
    let mut stream = std::net::TcpStream::connect((link.host_str().unwrap(), link.port().unwrap())).unwrap();
    let request = format!("GET {}?{} HTTP/1.1\r\nHost: x\r\n\r\n", link.path(), link.query().unwrap());
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("the connection closes after the answer");
    assert_eq!(answer, raw);
    let record = download.simulator.requests().pop().unwrap();
    assert_eq!(record.status, Some(200), "the status the raw answer names");
}

/// Reads a download through range requests, so the `zip` crate can look at a package far too
/// big to fetch whole.
struct RangeReader<'a> {
    client: &'a Client,
    link: String,
    size: u64,
    position: u64,
    requests: usize,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let end = (self.position + buf.len() as u64).min(self.size);
        if end == self.position {
            return Ok(0);
        }
        self.requests += 1;
        let response = self
            .client
            .get(&self.link)
            .header(RANGE, format!("bytes={}-{}", self.position, end - 1))
            .send()
            .map_err(io::Error::other)?;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        let bytes = response.bytes().map_err(io::Error::other)?;
        buf[..bytes.len()].copy_from_slice(&bytes);
        self.position += bytes.len() as u64;
        Ok(bytes.len())
    }
}

impl Seek for RangeReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.position = match to {
            SeekFrom::Start(offset) => offset,
            SeekFrom::End(delta) => self.size.saturating_add_signed(delta),
            SeekFrom::Current(delta) => self.position.saturating_add_signed(delta),
        };
        Ok(self.position)
    }
}

#[test]
fn packages_over_4_gib_are_zip64_and_readable_through_ranges() {
    let size = 5u64 << 30;
    let download = Download::of_size(size);
    let head = download.client.head(download.link()).send().unwrap();
    assert_eq!(head.headers()[CONTENT_LENGTH], size.to_string().as_str());

    let mut reader = RangeReader { client: &download.client, link: download.link(), size, position: 0, requests: 0 };
    let mut archive = zip::ZipArchive::new(&mut reader).expect("the central directory parses");
    let event_log = archive.by_name("Security event log/Security.evtx").unwrap();
    assert!(event_log.size() > u64::from(u32::MAX), "an entry over 4 GiB");
    let event_log_start = event_log.data_start().unwrap();
    drop(event_log);
    let last = archive.len() - 1;
    let mut summary = archive.by_index(last).unwrap();
    assert_eq!(summary.name().unwrap(), "CollectionSummaryReport.xls");
    assert!(summary.header_start() > u64::from(u32::MAX), "an offset over 4 GiB");
    let mut report = String::new();
    summary.read_to_string(&mut report).expect("the summary reads, CRC included");
    assert!(report.contains(&download.action_id), "{report}");
    drop(summary);

    // The event log's first bytes are where its local header says.
    let start = download.get(Some(&format!("bytes={event_log_start}-{}", event_log_start + 7)));
    assert_eq!(start.bytes().unwrap().as_ref(), b"ElfFile\0");
    assert!(reader.requests < 100, "{} range requests", reader.requests);
}

#[test]
fn tls_serves_both_ports_with_a_certificate_from_ca_file() {
    let simulator = Simulator::start(Options { tls: true, ..Options::default() }).unwrap();
    assert!(simulator.base_url().starts_with("https://127.0.0.1:"));
    assert!(simulator.download_url().starts_with("https://127.0.0.1:"));
    let ca_file = simulator.ca_file().expect("a CA file").to_owned();
    let client = client_trusting(Some(&ca_file));
    let token = access_token(&client, &simulator);
    let action_id = ready_action(&simulator, ActionSpec::default());
    let link = package_link(&client, &simulator, &token, &action_id);
    assert!(link.starts_with("https://"));
    let response = client.get(&link).header(RANGE, "bytes=0-3").send().unwrap();
    assert_eq!(response.bytes().unwrap().as_ref(), b"PK\x03\x04");

    let untrusting = crate::common::client();
    assert!(untrusting.get(format!("{}/_sim/config", simulator.base_url())).send().is_err());
    let body = json(client.get(format!("{}/_sim/config", simulator.base_url())).send().unwrap());
    assert_eq!(body["clock_scale"], 1.0);
    drop(simulator);
    assert!(!ca_file.exists(), "the temporary CA file goes with the simulator");
}
