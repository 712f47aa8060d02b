//! Live Response through the C ABI, against the simulator keeping results in Azurite (a real
//! Azure Storage implementation: its SAS checks, expiry answers, ranges and MD5 headers): files
//! and script transcripts off devices, failed commands, the service's session limits, offline
//! devices, the library, and the SAS link never in a message. See tests/common/azurite.rs for
//! how the store is found or started.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;

use common::*;
use defender::*;
use defender_simulator::{MachineRegistration, Simulator};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const MACHINE: &str = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07";
const OTHER_MACHINE: &str = "2e5bc9d7e413ddd7902c2932e418702b84d0cc07";

fn get_file(path: &str) -> String {
    json!([{ "type": "GetFile", "params": [{ "key": "Path", "value": path }] }]).to_string()
}

fn run_script(name: &str, args: &str) -> String {
    json!([{ "type": "RunScript", "params": [{ "key": "ScriptName", "value": name }, { "key": "Args", "value": args }] }])
        .to_string()
}

/// A client for `simulator` whose waits (sessions, their end) last at most `wait_ms`, its clock as
/// fast as the simulator's, its log kept.
fn waiting_client(simulator: &Simulator, wait_ms: u64) -> Client {
    let client = client_for(simulator);
    capture_log_lines(&client);
    client.set("wait_timeout_ms", Some(&wait_ms.to_string())).unwrap();
    client.set("clock_scale", Some(&simulator.config().clock_scale.to_string())).unwrap();
    client
}

/// A simulator with the store, its clock `scale` times faster, and `config` on top.
fn simulator_at(scale: f64, config: Value) -> Simulator {
    let simulator = simulator_with_store(json!({ "rate_limit": false, "clock_scale": scale }));
    simulator.configure(serde_json::from_value(config).unwrap()).unwrap();
    simulator
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The log lines of this thread's calls so far, each checked for secrets (a SAS `sig=` too).
fn checked_log() -> Vec<String> {
    take_log_lines().into_iter().map(|(_, line)| assert_no_sas(line)).collect()
}

fn assert_no_sas(text: String) -> String {
    assert_no_secret(&text, &[]);
    if let Some(at) = text.find("sig=") {
        assert!(text[at..].starts_with("sig=REDACTED"), "a SAS signature leaked into: {text}");
    }
    text
}

#[test]
fn a_get_file_result_comes_from_the_store_intact_and_named_after_its_path() {
    let simulator = simulator_at(50.0, json!({ "live_response_file_size": "3MiB" }));
    let client = waiting_client(&simulator, 60_000);
    let action = client.run_live_response(MACHINE, &get_file("C:\\Windows\\Temp\\evidence.log"), None).unwrap();
    assert_eq!(action["type"], "LiveResponse");
    assert_eq!(action["status"], "Succeeded");
    assert_eq!(action["commands"][0]["commandStatus"], "Completed");
    let id = action["id"].as_str().unwrap();

    let folder = tempfile::tempdir().unwrap();
    let result = client.download_live_response_result(id, 0, folder.path(), None).unwrap();
    let expected = simulator.live_response_result(id, 0).unwrap();
    let name = format!("{id}-0.log");
    assert_eq!(entries(folder.path()), vec![name.clone()], "only the file is left");
    assert!(std::fs::read(folder.path().join(&name)).unwrap() == expected, "the file differs from the result");
    assert_eq!(result["bytes"], expected.len());
    assert_eq!(result["sha256"], sha256(&expected));
    assert_eq!(result["command_type"], "GetFile");
    assert_eq!(result["content_encoding"], Value::Null);
    assert_eq!(result["index"], 0);
    checked_log();

    // The link itself: an Azure Blob storage SAS URL to the emulator.
    let link = client.live_response_result_uri(id, 0).unwrap();
    assert!(link.starts_with(&azurite::blob_endpoint()) && link.contains("sig="), "{link}");
}

#[test]
fn a_gzip_compressed_result_is_kept_as_it_came_and_named_so() {
    let simulator = simulator_at(50.0, json!({ "gzip_results": true, "live_response_file_size": "200KiB" }));
    let client = waiting_client(&simulator, 60_000);
    let action = client.run_live_response(MACHINE, &get_file("/var/log/auth.log"), Some("gzip")).unwrap();
    let id = action["id"].as_str().unwrap();
    let folder = tempfile::tempdir().unwrap();
    let result = client.download_live_response_result(id, 0, folder.path(), None).unwrap();
    let stored = simulator.live_response_result(id, 0).unwrap();
    assert_eq!(&stored[..2], [0x1f, 0x8b], "the store holds gzip");
    assert_eq!(result["content_encoding"], "gzip");
    assert_eq!(entries(folder.path()), vec![format!("{id}-0.log.gz")]);
    assert!(std::fs::read(folder.path().join(format!("{id}-0.log.gz"))).unwrap() == stored);
}

#[test]
fn a_run_script_transcript_is_saved_as_json() {
    let simulator = simulator_at(50.0, json!({}));
    let client = waiting_client(&simulator, 60_000);
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("triage.ps1");
    std::fs::write(&script, "param([switch]$Quick)\nGet-Process\n").unwrap();
    client.upload_library_file(&script, "Triage", Some("-Quick: faster"), true, false).unwrap();

    let action = client.run_live_response(MACHINE, &run_script("triage.ps1", "-Quick"), None).unwrap();
    let id = action["id"].as_str().unwrap();
    let folder = tempfile::tempdir().unwrap();
    let result = client.download_live_response_result(id, 0, folder.path(), None).unwrap();
    assert_eq!(result["command_type"], "RunScript");
    let path = folder.path().join(format!("{id}-0.json"));
    assert_eq!(result["path"], path.to_str().unwrap());
    let transcript: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(transcript["script_name"], "triage.ps1");
    assert_eq!(transcript["exit_code"], 0);
    assert!(transcript["script_output"].as_str().unwrap().contains("-Quick"), "{transcript}");
}

#[test]
fn a_failed_command_ends_the_call_with_its_errors() {
    let simulator = simulator_at(50.0, json!({}));
    let client = waiting_client(&simulator, 60_000);
    let failure = client.run_live_response(MACHINE, &get_file("C:\\missing\\x.dll"), None).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::ActionFailed, "{failure}");
    assert!(failure.message.contains("ended Failed"), "{failure}");
    assert!(failure.message.contains("command 0 (GetFile) failed: File C:\\missing\\x.dll was not found"), "{failure}");

    // A script that is not in the library fails the same way; its result is ACTION_FAILED too.
    let client = waiting_client(&simulator, 0);
    let action = client.run_live_response(OTHER_MACHINE, &run_script("absent.ps1", ""), None).unwrap();
    assert_eq!(action["status"], "Pending", "without wait_timeout_ms the session is returned as started");
    let id = action["id"].as_str().unwrap();
    let waiting = waiting_client(&simulator, 60_000);
    let failure = waiting.download_live_response_result(id, 0, tempfile::tempdir().unwrap().path(), None).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::ActionFailed, "{failure}");
    assert!(failure.message.contains("absent.ps1 is not in the live response library"), "{failure}");
}

#[test]
fn commands_are_checked_before_any_request() {
    let simulator = simulator_at(1.0, json!({}));
    let client = client_for(&simulator);
    for bad in ["{}", "[]", r#"[{"params":[]}]"#, "not json"] {
        let failure = client.run_live_response(MACHINE, bad, None).unwrap_err();
        assert_eq!(failure.status, DefenderStatus::InvalidArgument, "{bad}: {failure}");
    }
    assert!(requests_to(&simulator, "run_live_response").is_empty());
}

/// The phases the calls on this thread reported: (phase, detail).
fn take_phases() -> Vec<(DefenderPhase, String)> {
    PHASES.with(|phases| std::mem::take(&mut *phases.borrow_mut()))
}

std::thread_local! {
    static PHASES: std::cell::RefCell<Vec<(DefenderPhase, String)>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn capture_phases(client: &Client) {
    unsafe extern "C" fn keep(_: *mut std::ffi::c_void, event: *const DefenderPhaseEvent) -> i32 {
        let event = unsafe { &*event };
        let detail = unsafe { std::ffi::CStr::from_ptr(event.detail) }.to_string_lossy().into_owned();
        PHASES.with(|phases| phases.borrow_mut().push((event.phase, detail)));
        0
    }
    unsafe { client.set_phase_callback(Some(keep), std::ptr::null_mut()) };
}

#[test]
fn a_full_tenant_is_waited_for_and_said_so() {
    let simulator = simulator_at(
        20.0,
        json!({ "max_live_response_sessions": 1, "live_response_schedule": { "pending_secs": 0, "in_progress_secs": 20 } }),
    );
    let first = client_for(&simulator);
    first.run_live_response(MACHINE, &get_file("C:\\a.txt"), None).unwrap();

    let client = waiting_client(&simulator, 60_000);
    let immediate = waiting_client(&simulator, 0);
    let failure = immediate.run_live_response(OTHER_MACHINE, &get_file("C:\\b.txt"), None).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::RateLimited, "{failure}");
    assert!(failure.message.contains("wait_timeout_ms"), "{failure}");

    capture_phases(&client);
    let action = client.run_live_response(OTHER_MACHINE, &get_file("C:\\b.txt"), None).unwrap();
    assert_eq!(action["status"], "Succeeded");
    let waits: Vec<String> = take_phases()
        .into_iter()
        .filter(|(phase, _)| *phase == DefenderPhase::WaitingForSession)
        .map(|(_, detail)| detail)
        .collect();
    assert!(!waits.is_empty(), "no WAITING_FOR_SESSION phase");
    assert!(waits[0].contains("(HTTP 429): the tenant runs the 25 live response sessions"), "{waits:?}");
    assert!(statuses_at(&simulator, "run_live_response").contains(&Some(429)));
    checked_log();
}

#[test]
fn a_device_busy_with_another_session_is_waited_for() {
    let simulator =
        simulator_at(20.0, json!({ "live_response_schedule": { "pending_secs": 0, "in_progress_secs": 20 } }));
    client_for(&simulator).run_live_response(MACHINE, &get_file("C:\\a.txt"), Some("someone else's")).unwrap();

    let failure = waiting_client(&simulator, 0).run_live_response(MACHINE, &get_file("C:\\b.txt"), None).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Http, "{failure}");
    assert!(failure.message.contains("ActiveRequestAlreadyExists"), "{failure}");

    let client = waiting_client(&simulator, 60_000);
    capture_phases(&client);
    let action = client.run_live_response(MACHINE, &get_file("C:\\b.txt"), None).unwrap();
    assert_eq!(action["status"], "Succeeded");
    assert_ne!(action["requestorComment"], "someone else's", "its own session, not the one it waited for");
    let waits: Vec<String> = take_phases()
        .into_iter()
        .filter(|(phase, _)| *phase == DefenderPhase::WaitingForSession)
        .map(|(_, d)| d)
        .collect();
    assert!(waits.iter().any(|detail| detail.contains("ActiveRequestAlreadyExists")), "{waits:?}");
}

#[test]
fn an_offline_device_s_session_starts_when_it_comes_back() {
    let simulator = Arc::new(simulator_at(20.0, json!({})));
    let offline = "0ff1e5bc9d7e413ddd7902c2932e418702b84d0c";
    simulator
        .configure_machine(MachineRegistration { id: offline.into(), offline: true, ..MachineRegistration::default() })
        .unwrap();
    let back = {
        let simulator = Arc::clone(&simulator);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            simulator.set_machine_online(offline, true);
        })
    };
    let client = waiting_client(&simulator, 120_000);
    capture_phases(&client);
    let action = client.run_live_response(offline, &get_file("C:\\a.txt"), None).unwrap();
    back.join().unwrap();
    assert_eq!(action["status"], "Succeeded");
    let waited: Vec<String> = take_phases()
        .into_iter()
        .filter(|(phase, _)| *phase == DefenderPhase::WaitingForCollection)
        .map(|(_, detail)| detail)
        .collect();
    assert!(waited.iter().any(|status| status == "Pending"), "queued while the device was away: {waited:?}");
}

#[test]
fn the_library_takes_lists_and_removes_files_and_refuses_a_second_without_override() {
    let simulator = simulator_at(1.0, json!({}));
    let client = client_for(&simulator);
    let folder = tempfile::tempdir().unwrap();
    let script = folder.path().join("collect.ps1");
    std::fs::write(&script, "Get-ChildItem C:\\Temp\n").unwrap();

    let file = client.upload_library_file(&script, "Collects", None, false, false).unwrap();
    assert_eq!(file["fileName"], "collect.ps1");
    assert_eq!(file["sha256"], sha256(b"Get-ChildItem C:\\Temp\n"));
    let again = client.upload_library_file(&script, "Collects", None, false, false).unwrap_err();
    assert_eq!(again.status, DefenderStatus::Exists, "{again}");
    assert!(again.message.contains("override_if_exists"), "{again}");
    std::fs::write(&script, "Get-ChildItem C:\\Windows\\Temp\n").unwrap();
    let replaced = client.upload_library_file(&script, "Collects more", Some("none"), false, true).unwrap();
    assert_eq!(replaced["description"], "Collects more");

    let listed = client.library_files().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["fileName"], "collect.ps1");
    client.delete_library_file("collect.ps1").unwrap();
    assert!(client.library_files().unwrap().is_empty());
    assert_eq!(client.delete_library_file("collect.ps1").unwrap_err().status, DefenderStatus::NotFound);
    let missing = client.upload_library_file(&folder.path().join("nope.ps1"), "x", None, false, false).unwrap_err();
    assert_eq!(missing.status, DefenderStatus::Io, "{missing}");
}

#[test]
fn files_come_off_several_devices_in_one_batch_each_told_as_it_ends() {
    let simulator = simulator_at(50.0, json!({ "live_response_file_size": "100KiB" }));
    let client = waiting_client(&simulator, 120_000);
    let folder = tempfile::tempdir().unwrap();
    let requests = json!([
        { "machine": MACHINE, "path": "C:\\Windows\\Temp\\one.exe" },
        { "machine": "desktop-2e5bc9d", "path": "C:\\Windows\\Temp\\missing.exe" },
        { "machine": MACHINE, "path": "C:\\Windows\\Temp\\two.dll" },
    ]);
    simulator
        .configure_machine(MachineRegistration { id: OTHER_MACHINE.into(), ..MachineRegistration::default() })
        .unwrap();
    let mut told = Vec::new();
    let mut item_done = |index: usize, status: DefenderStatus, _: Value| told.push((index, status));
    let callbacks = BatchCallbacks { item_done: Some(&mut item_done), ..BatchCallbacks::default() };
    let results = client.get_files(&requests.to_string(), folder.path(), callbacks).unwrap();
    let statuses: Vec<&str> = results.iter().map(|result| result["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["OK", "ACTION_FAILED", "OK"], "{results:?}");
    told.sort_by_key(|(index, _)| *index);
    assert_eq!(
        told,
        [(0, DefenderStatus::Ok), (1, DefenderStatus::ActionFailed), (2, DefenderStatus::Ok)],
        "each item told once"
    );
    assert!(results[1]["message"].as_str().unwrap().contains("missing.exe was not found"), "{}", results[1]);
    assert_eq!(results[1]["machine"], "desktop-2e5bc9d");
    for result in [&results[0], &results[2]] {
        let id = result["action_id"].as_str().unwrap();
        let bytes = std::fs::read(result["path"].as_str().unwrap()).unwrap();
        assert!(bytes == simulator.live_response_result(id, 0).unwrap());
    }
    assert!(
        results[0]["path"].as_str().unwrap().ends_with(".exe")
            && results[2]["path"].as_str().unwrap().ends_with(".dll")
    );
    assert_eq!(entries(folder.path()).len(), 2, "{:?}", entries(folder.path()));
    checked_log();
}

/// A loopback proxy in front of the store that sees each request's head, and can cut the body
/// of the first download after some bytes, or hold the first download back for a while.
struct StoreProxy {
    endpoint: String,
    heads: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone, Copy)]
enum Trouble {
    CutFirstDownloadAfter(usize),
    HoldFirstDownload(Duration),
    /// Flips a byte of the first download's body, well past its head.
    CorruptFirstDownload,
    /// Sends that many bytes of the first download's answer, then nothing for a long while.
    StallFirstDownloadAfter(usize),
}

impl StoreProxy {
    fn start(trouble: Trouble) -> StoreProxy {
        let upstream = azurite::blob_endpoint();
        let rest = upstream.strip_prefix("http://").unwrap();
        let (address, path) = rest.split_once('/').unwrap();
        let address = address.to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}/{path}", listener.local_addr().unwrap());
        let heads = Arc::new(Mutex::new(Vec::new()));
        let troubled = Arc::new(AtomicBool::new(false));
        let recorded = Arc::clone(&heads);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (address, heads, troubled) = (address.clone(), Arc::clone(&recorded), Arc::clone(&troubled));
                std::thread::spawn(move || relay(client, &address, heads, troubled, trouble));
            }
        });
        StoreProxy { endpoint, heads }
    }

    /// The heads of the GET requests the proxy relayed (downloads: the simulator only writes).
    fn downloads(&self) -> Vec<String> {
        self.heads.lock().unwrap().iter().filter(|head| head.starts_with("GET ")).cloned().collect()
    }
}

fn relay(
    mut client: TcpStream,
    upstream: &str,
    heads: Arc<Mutex<Vec<String>>>,
    troubled: Arc<AtomicBool>,
    trouble: Trouble,
) {
    let Ok(mut server) = TcpStream::connect(upstream) else { return };
    let (mut client_reader, mut server_writer) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    // Whether this connection's first request is a download (a GET).
    let first_is_download = Arc::new(Mutex::new(None::<bool>));
    let (is_download, held) = (Arc::clone(&first_is_download), Arc::clone(&troubled));
    let upward = std::thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(read) = client_reader.read(&mut buffer) {
            if read == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&buffer[..read]);
            if let Some(end) = text.find("\r\n\r\n") {
                if ["GET ", "PUT ", "HEAD "].iter().any(|method| text.starts_with(method)) {
                    heads.lock().unwrap().push(text[..end].to_owned());
                    let download = text.starts_with("GET ");
                    is_download.lock().unwrap().get_or_insert(download);
                    if let Trouble::HoldFirstDownload(pause) = trouble {
                        if download && !held.swap(true, Ordering::SeqCst) {
                            std::thread::sleep(pause);
                        }
                    }
                }
            }
            if server_writer.write_all(&buffer[..read]).is_err() {
                break;
            }
        }
        let _ = server_writer.shutdown(Shutdown::Write);
    });
    let mut buffer = vec![0u8; 64 * 1024];
    let mut sent = 0usize;
    while let Ok(read) = server.read(&mut buffer) {
        if read == 0 {
            break;
        }
        let download = first_is_download.lock().unwrap().unwrap_or(false);
        if let Trouble::CutFirstDownloadAfter(bytes) = trouble {
            if download && sent + read >= bytes && !troubled.swap(true, Ordering::SeqCst) {
                let _ = client.write_all(&buffer[..bytes - sent]);
                let _ = server.shutdown(Shutdown::Both);
                break;
            }
        }
        if let Trouble::StallFirstDownloadAfter(bytes) = trouble {
            if download && sent + read >= bytes && !troubled.swap(true, Ordering::SeqCst) {
                let _ = client.write_all(&buffer[..bytes - sent]);
                std::thread::sleep(Duration::from_secs(60));
                break;
            }
        }
        if let Trouble::CorruptFirstDownload = trouble {
            if download && sent >= 64 * 1024 && !troubled.swap(true, Ordering::SeqCst) {
                buffer[0] ^= 0xff;
            }
        }
        if client.write_all(&buffer[..read]).is_err() {
            break;
        }
        sent += read;
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = upward.join();
}

fn simulator_behind(proxy: &StoreProxy, config: Value) -> Simulator {
    let options = defender_simulator::Options { blob_endpoint: Some(proxy.endpoint.clone()), ..Default::default() };
    let simulator = Simulator::start(options).unwrap();
    simulator.configure(serde_json::from_value(json!({ "rate_limit": false, "clock_scale": 50.0 })).unwrap()).unwrap();
    simulator.configure(serde_json::from_value(config).unwrap()).unwrap();
    simulator
}

#[test]
fn a_large_get_file_resumes_after_a_cut_with_a_range_request_and_no_authorization() {
    let proxy = StoreProxy::start(Trouble::CutFirstDownloadAfter(40 << 20));
    let size: u64 = 300 << 20;
    let simulator = simulator_behind(&proxy, json!({ "live_response_file_size": size }));
    let client = waiting_client(&simulator, 120_000);
    let action = client.run_live_response(MACHINE, &get_file("D:\\dumps\\lsass.dmp"), None).unwrap();
    let id = action["id"].as_str().unwrap();
    let folder = tempfile::tempdir().unwrap();
    let result = client.download_live_response_result(id, 0, folder.path(), None).unwrap();
    assert_eq!(result["bytes"], size);
    let expected = simulator.live_response_result(id, 0).unwrap();
    assert_eq!(result["sha256"], sha256(&expected));
    let saved = std::fs::read(folder.path().join(format!("{id}-0.dmp"))).unwrap();
    assert!(saved == expected, "the file differs from the result");

    let downloads = proxy.downloads();
    assert_eq!(downloads.len(), 2, "one cut, one resume: {downloads:#?}");
    let range = downloads[1].lines().find(|line| line.to_ascii_lowercase().starts_with("range:")).expect("a Range");
    let from: u64 = range.split('=').nth(1).unwrap().trim_end_matches('-').parse().unwrap();
    assert!(from > 0 && from <= 40 << 20, "resumed at {from}");
    for head in &downloads {
        let lower = head.to_ascii_lowercase();
        assert!(!lower.contains("\nauthorization:"), "an Authorization header went to the store: {head}");
        assert!(lower.contains("\nx-ms-version:"), "no x-ms-version: {head}");
    }
    let warnings = checked_log();
    assert!(warnings.iter().any(|line| line.contains("resuming at byte")), "{warnings:#?}");
}

#[test]
fn a_link_that_expired_before_the_download_is_replaced_by_a_fresh_one() {
    let proxy = StoreProxy::start(Trouble::HoldFirstDownload(Duration::from_millis(2500)));
    let simulator = simulator_behind(&proxy, json!({ "result_link_ttl_secs": 1 }));
    let client = waiting_client(&simulator, 60_000);
    let action = client.run_live_response(MACHINE, &get_file("C:\\x.txt"), None).unwrap();
    let id = action["id"].as_str().unwrap();
    let folder = tempfile::tempdir().unwrap();
    let result = client.download_live_response_result(id, 0, folder.path(), None).unwrap();
    assert_eq!(result["sha256"], sha256(&simulator.live_response_result(id, 0).unwrap()));
    assert_eq!(requests_to(&simulator, "live_response_result_link").len(), 2, "a fresh link after the refusal");
    let log = checked_log();
    // Azurite says AuthorizationFailure where Azure says AuthenticationFailed: both are a 403.
    assert!(
        log.iter().any(|line| line.contains("HTTP 403") && line.contains("AuthorizationFailure")),
        "the store's refusal is in the log: {log:#?}"
    );
    assert_eq!(entries(folder.path()), vec![format!("{id}-0.txt")]);
}

#[test]
fn the_sas_signature_is_never_in_a_message_or_a_log_line() {
    let proxy = StoreProxy::start(Trouble::HoldFirstDownload(Duration::from_millis(2500)));
    // The first link expires before it is used: a refusal, a fresh link, then a failure of another kind.
    let simulator = simulator_behind(&proxy, json!({ "result_link_ttl_secs": 1 }));
    let client = waiting_client(&simulator, 60_000);
    let action = client.run_live_response(MACHINE, &get_file("C:\\x.txt"), None).unwrap();
    let id = action["id"].as_str().unwrap();
    let link = client.live_response_result_uri(id, 0).unwrap();
    let signature = link.split("sig=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    client.download_live_response_result(id, 0, tempfile::tempdir().unwrap().path(), None).unwrap();
    let failure = client.download_live_response_result(id, 7, Path::new("/nonexistent-folder/x"), None).unwrap_err();
    for text in checked_log().into_iter().chain([failure.message.clone()]) {
        assert!(!text.contains(&signature), "the SAS signature leaked into: {text}");
    }
}

#[test]
fn a_session_start_whose_answer_was_lost_is_looked_up_not_sent_again() {
    let simulator = simulator();
    // The service started the session, then the answer was lost to a 503.
    let running = create_action(
        &simulator,
        json!({ "machine_id": OTHER_MACHINE, "type": "LiveResponse", "comment": "case 4711: x.exe",
                "schedule": { "pending_secs": 3600, "in_progress_secs": 0 } }),
    );
    add_fault(
        &simulator,
        json!({ "endpoint": "run_live_response", "times": 1, "fault": { "kind": "status", "status": 503 } }),
    );
    let client = client_for(&simulator);
    capture_log_lines(&client);
    let action = client.run_live_response(OTHER_MACHINE, &get_file("C:\\x.exe"), Some("case 4711: x.exe")).unwrap();
    assert_eq!(action["id"], running.as_str());
    assert_eq!(requests_to(&simulator, "run_live_response").len(), 1, "the POST was repeated");
    let log = checked_log();
    assert!(log.iter().any(|line| line.contains("looking whether the session started anyway")), "{log:#?}");
}

#[test]
fn a_session_start_is_sent_again_only_after_a_look_shows_none_of_its_own() {
    for lost in [json!({ "kind": "status", "status": 503 }), json!({ "kind": "drop" })] {
        let simulator = simulator();
        // The answer lost before the service acted: nothing runs, so the request goes again.
        add_fault(&simulator, json!({ "endpoint": "run_live_response", "times": 1, "fault": lost.clone() }));
        let action = client_for(&simulator).run_live_response(MACHINE, &get_file("C:\\x.exe"), None).unwrap();
        assert_eq!(action["status"], "Pending", "{lost}");
        assert_eq!(statuses_at(&simulator, "run_live_response").len(), 2, "{lost}");
        assert_eq!(requests_to(&simulator, "list_actions").len(), 1, "one look before the repeat: {lost}");
    }
}

#[test]
fn a_result_damaged_on_the_way_fails_the_store_s_md5_and_is_fetched_again() {
    let proxy = StoreProxy::start(Trouble::CorruptFirstDownload);
    let simulator = simulator_behind(&proxy, json!({ "live_response_file_size": "2MiB" }));
    let client = waiting_client(&simulator, 60_000);
    let action = client.run_live_response(MACHINE, &get_file("C:\\x.bin"), None).unwrap();
    let id = action["id"].as_str().unwrap();
    let folder = tempfile::tempdir().unwrap();
    let result = client.download_live_response_result(id, 0, folder.path(), None).unwrap();
    assert_eq!(result["sha256"], sha256(&simulator.live_response_result(id, 0).unwrap()));
    assert_eq!(proxy.downloads().len(), 2, "downloaded again after the MD5 failed");
    let log = checked_log();
    assert!(log.iter().any(|line| line.contains("does not match its Content-MD5")), "{log:#?}");
}

#[test]
fn a_script_that_runs_past_the_service_s_ten_minutes_ends_the_session_timed_out() {
    let simulator = simulator_at(200.0, json!({}));
    // In the service's time, as every wait (divided by clock_scale): 15 minutes.
    let client = waiting_client(&simulator, 900_000);
    let folder = tempfile::tempdir().unwrap();
    let script = folder.path().join("hang-forever.ps1");
    std::fs::write(&script, "while ($true) { Start-Sleep 1 }\n").unwrap();
    client.upload_library_file(&script, "Never ends", None, false, false).unwrap();
    let failure = client.run_live_response(MACHINE, &run_script("hang-forever.ps1", ""), None).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::ActionFailed, "{failure}");
    assert!(failure.message.contains("ended TimeOut"), "{failure}");
    assert!(
        failure.message.contains("command 0 (RunScript) failed: The command timed out after 10 minutes"),
        "{failure}"
    );
}

/// Not a test of its own: the download a child process runs for
/// `a_result_download_killed_midway_is_resumed_by_the_next_call`, told what to do through the
/// environment.
#[test]
#[ignore = "run by another test in a child process"]
fn child_result_download() {
    let Ok(base_url) = std::env::var("LR_CHILD_BASE_URL") else { return };
    let client = Client::new();
    for (key, value) in [
        ("base_url", base_url.as_str()),
        ("authority_url", base_url.as_str()),
        ("tenant_id", defender_simulator::DEFAULT_TENANT_ID),
        ("client_id", defender_simulator::DEFAULT_CLIENT_ID),
        ("client_secret", defender_simulator::DEFAULT_CLIENT_SECRET),
        ("rate_limit", "off"),
    ] {
        client.set(key, Some(value)).unwrap();
    }
    let action_id = std::env::var("LR_CHILD_ACTION").unwrap();
    let folder = PathBuf::from(std::env::var("LR_CHILD_FOLDER").unwrap());
    let _ = client.download_live_response_result(&action_id, 0, &folder, None);
}

#[test]
fn a_result_download_killed_midway_is_resumed_by_the_next_call_from_the_bytes_it_left() {
    const BLOCK: usize = 1 << 20;
    let proxy = StoreProxy::start(Trouble::StallFirstDownloadAfter(2 * BLOCK + 100_000));
    let simulator = simulator_behind(&proxy, json!({ "live_response_file_size": "6MiB" }));
    let client = waiting_client(&simulator, 60_000);
    let action = client.run_live_response(MACHINE, &get_file("C:\\big.bin"), None).unwrap();
    let id = action["id"].as_str().unwrap().to_owned();
    let folder = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_result_download", "--exact", "--ignored", "--test-threads", "1"])
        .env("LR_CHILD_BASE_URL", simulator.base_url())
        .env("LR_CHILD_ACTION", &id)
        .env("LR_CHILD_FOLDER", folder.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let part = folder.path().join(format!(".{id}-0.bin.part"));
    let started = Instant::now();
    while std::fs::metadata(&part).map_or(0, |metadata| metadata.len()) < BLOCK as u64 {
        assert!(started.elapsed() < Duration::from_secs(60), "the child's part never grew");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(folder.path().join(format!(".{id}-0.bin.part.json")).exists(), "{:?}", entries(folder.path()));

    let result = client.download_live_response_result(&id, 0, folder.path(), None).unwrap();
    let kept = result["resumed_from"].as_u64().unwrap();
    assert!(kept >= BLOCK as u64, "resumed from {kept}");
    assert_eq!(result["sha256"], sha256(&simulator.live_response_result(&id, 0).unwrap()));
    let downloads = proxy.downloads();
    assert_eq!(downloads.len(), 2, "{downloads:#?}");
    assert!(downloads[1].to_ascii_lowercase().contains(&format!("range: bytes={kept}-")), "{}", downloads[1]);
    assert_eq!(entries(folder.path()), vec![format!("{id}-0.bin")], "nothing else is left");
}
