//! Downloads that survive: every download fault of the simulator, recovered (the file is the
//! package, byte for byte) or reported with the right status and no file left behind; and the
//! batch call, many packages at once. All through the C ABI, over loopback HTTP.

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char};
use std::path::Path;
use std::ptr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use defender::*;
use defender_simulator::Simulator;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A client for `simulator` with its log kept (see `warnings`), and `options` set.
fn client_with(simulator: &Simulator, options: &[(&str, &str)]) -> Client {
    let client = client_for(simulator);
    capture_log_lines(&client);
    for (key, value) in options {
        client.set(key, Some(value)).unwrap();
    }
    client
}

/// The log lines of this thread's calls so far, after checking that none holds a secret.
fn take_log() -> Vec<(DefenderLogLevel, String)> {
    let lines = take_log_lines();
    for (_, line) in &lines {
        assert_no_secret(line, &[]);
    }
    lines
}

fn warnings() -> Vec<String> {
    take_log().into_iter().filter(|(level, _)| *level == DefenderLogLevel::Warn).map(|(_, line)| line).collect()
}

/// The `Range` header of each download request, in order (`None`: the whole package).
fn ranges(simulator: &Simulator, action_id: &str) -> Vec<Option<String>> {
    requests_to(simulator, "download")
        .into_iter()
        .filter(|request| request["action_id"] == action_id)
        .map(|request| request["range"].as_str().map(str::to_owned))
        .collect()
}

fn fault(simulator: &Simulator, action_id: &str, times: u64, fault: Value) {
    add_fault(simulator, json!({ "endpoint": "download", "action_id": action_id, "times": times, "fault": fault }));
}

/// The file is the package, byte for byte, the result says so, and nothing else is in the folder.
fn assert_intact(simulator: &Simulator, action_id: &str, folder: &Path, result: &Value) {
    let expected = simulator.package(action_id).unwrap();
    let path = folder.join(format!("{action_id}.zip"));
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes == expected, "the file differs from the package ({} vs {} bytes)", bytes.len(), expected.len());
    assert_eq!(result["bytes"], expected.len());
    assert_eq!(result["sha256"], hex::encode(Sha256::digest(&expected)));
    assert_eq!(entries(folder), vec![format!("{action_id}.zip")], "only the package is left");
}

fn assert_failed_cleanly(failure: &Failure, status: DefenderStatus, folder: &Path) {
    assert_eq!(failure.status, status, "{failure}");
    assert!(entries(folder).is_empty(), "left behind: {:?}", entries(folder));
    assert_no_secret(&failure.message, &[]);
}

#[test]
fn a_cut_connection_resumes_with_a_range_request_and_the_file_is_intact() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 1_000_000 }));
    fault(&simulator, &id, 1, json!({ "kind": "cut_after", "bytes": 300_000 }));
    let folder = tempfile::tempdir().unwrap();

    let result = client_with(&simulator, &[]).download(&id, folder.path(), None).unwrap();

    assert_intact(&simulator, &id, folder.path(), &result);
    assert_eq!(ranges(&simulator, &id), [None, Some("bytes=300000-".to_owned())]);
    let downloads = requests_to(&simulator, "download");
    assert_eq!(downloads[1]["status"], 206);
    assert_eq!(downloads[1]["body_bytes"], 700_000, "only the rest was sent again");
    assert!(downloads[1]["headers"].as_array().unwrap().contains(&json!("if-range")), "{downloads:?}");
    let warnings = warnings();
    assert!(warnings.iter().any(|line| line.contains("resuming at byte 300000")), "{warnings:?}");
}

#[test]
fn a_body_that_ends_early_resumes_each_time() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 200_000 }));
    fault(&simulator, &id, 2, json!({ "kind": "short_body", "bytes": 1000 }));
    let folder = tempfile::tempdir().unwrap();

    let result = client_with(&simulator, &[]).download(&id, folder.path(), None).unwrap();

    assert_intact(&simulator, &id, folder.path(), &result);
    let expected = [None, Some("bytes=1000-".to_owned()), Some("bytes=2000-".to_owned())];
    assert_eq!(ranges(&simulator, &id), expected);
}

#[test]
fn a_body_that_never_completes_is_integrity_after_the_retry_budget_and_leaves_no_file() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 200_000 }));
    fault(&simulator, &id, 0, json!({ "kind": "short_body", "bytes": 1000 }));
    let folder = tempfile::tempdir().unwrap();

    let failure = client_with(&simulator, &[]).download(&id, folder.path(), None).unwrap_err();

    assert_failed_cleanly(&failure, DefenderStatus::Integrity, folder.path());
    assert!(failure.message.contains("gave up after 25 retries"), "{failure}");
    assert_eq!(ranges(&simulator, &id).len(), 26, "the first try and 25 retries");
}

/// A byte of the package that only its MD5 covers: the first local header's modification time,
/// which the ZIP check does not compare (every entry's data, sizes, CRC-32 and name, and the
/// archive's structure, it does).
const UNCHECKED_BY_ZIP: u64 = 10;

#[test]
fn a_corrupted_byte_fails_the_md5_and_the_package_is_downloaded_again() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 300_000, "content_md5": true }));
    fault(&simulator, &id, 1, json!({ "kind": "corrupt_byte", "offset": UNCHECKED_BY_ZIP }));
    let folder = tempfile::tempdir().unwrap();

    let result = client_with(&simulator, &[]).download(&id, folder.path(), None).unwrap();

    assert_intact(&simulator, &id, folder.path(), &result);
    assert_eq!(ranges(&simulator, &id), [None, None], "downloaded again from the start");
    let warnings = warnings();
    assert!(warnings.iter().any(|line| line.contains("Content-MD5")), "{warnings:?}");
}

#[test]
fn a_package_that_fails_its_md5_twice_is_integrity_and_leaves_no_file() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 300_000, "content_md5": true }));
    fault(&simulator, &id, 0, json!({ "kind": "corrupt_byte", "offset": UNCHECKED_BY_ZIP }));
    let folder = tempfile::tempdir().unwrap();

    let failure = client_with(&simulator, &[]).download(&id, folder.path(), None).unwrap_err();

    assert_failed_cleanly(&failure, DefenderStatus::Integrity, folder.path());
    assert!(failure.message.contains("Content-MD5"), "{failure}");
    assert_eq!(ranges(&simulator, &id).len(), 2);
}

#[test]
fn after_a_resume_the_whole_file_is_checked_against_the_package_md5() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 1_000_000, "content_md5": true }));
    // The first answer breaks off; the resumed part carries a damaged byte.
    fault(&simulator, &id, 1, json!({ "kind": "cut_after", "bytes": 100_000 }));
    fault(&simulator, &id, 1, json!({ "kind": "corrupt_byte", "offset": 500_000 }));
    let folder = tempfile::tempdir().unwrap();

    let result = client_with(&simulator, &[]).download(&id, folder.path(), None).unwrap();

    assert_intact(&simulator, &id, folder.path(), &result);
    assert_eq!(ranges(&simulator, &id), [None, Some("bytes=100000-".to_owned()), None]);
}

#[test]
fn a_download_that_is_not_a_zip_is_integrity_and_leaves_no_file() {
    let simulator = simulator();
    let size = 200_000;
    let id = create_action(&simulator, json!({ "package_size": size }));
    // The first byte of the end-of-central-directory record, the last 22 bytes of the package.
    fault(&simulator, &id, 0, json!({ "kind": "corrupt_byte", "offset": size - 22 }));
    let folder = tempfile::tempdir().unwrap();

    let failure = client_with(&simulator, &[]).download(&id, folder.path(), None).unwrap_err();

    assert_failed_cleanly(&failure, DefenderStatus::Integrity, folder.path());
    assert!(failure.message.contains("not a sound ZIP archive"), "{failure}");
    assert_eq!(
        ranges(&simulator, &id),
        [None, None],
        "downloaded once more from the start, in case the damage was on the way"
    );
}

#[test]
fn a_stalled_body_is_caught_by_the_idle_timeout_and_resumed() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 1_000_000 }));
    fault(&simulator, &id, 1, json!({ "kind": "stall", "after_bytes": 100_000, "ms": 30_000 }));
    let folder = tempfile::tempdir().unwrap();
    let started = Instant::now();

    let result = client_with(&simulator, &[("timeout_ms", "500")]).download(&id, folder.path(), None).unwrap();

    assert!(started.elapsed() < Duration::from_secs(15), "waited out the stall: {:?}", started.elapsed());
    assert_intact(&simulator, &id, folder.path(), &result);
    assert_eq!(ranges(&simulator, &id), [None, Some("bytes=100000-".to_owned())]);
    let warnings = warnings();
    assert!(warnings.iter().any(|line| line.contains("timed out")), "{warnings:?}");
}

#[test]
fn a_slow_but_steady_body_is_not_taken_for_a_stall() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 600_000 }));
    fault(&simulator, &id, 1, json!({ "kind": "slow_body", "bytes_per_sec": 1_000_000 }));
    let folder = tempfile::tempdir().unwrap();

    let result = client_with(&simulator, &[("timeout_ms", "1000")]).download(&id, folder.path(), None).unwrap();

    assert_intact(&simulator, &id, folder.path(), &result);
    assert_eq!(ranges(&simulator, &id), [None], "one steady transfer");
    assert!(warnings().is_empty());
}

#[test]
fn an_expired_link_is_replaced_by_a_fresh_one_and_the_download_resumes() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 1_000_000 }));
    fault(&simulator, &id, 1, json!({ "kind": "cut_after", "bytes": 100_000 }));
    fault(&simulator, &id, 1, json!({ "kind": "expired_link" }));
    let folder = tempfile::tempdir().unwrap();

    let result = client_with(&simulator, &[]).download(&id, folder.path(), None).unwrap();

    assert_intact(&simulator, &id, folder.path(), &result);
    let resumed = Some("bytes=100000-".to_owned());
    assert_eq!(ranges(&simulator, &id), [None, resumed.clone(), resumed]);
    assert_eq!(statuses_at(&simulator, "download"), [Some(200), Some(403), Some(206)]);
    assert_eq!(requests_to(&simulator, "get_package_uri").len(), 2, "one fresh link");
    let warnings = warnings();
    assert!(warnings.iter().any(|line| line.contains("getting a fresh link")), "{warnings:?}");
}

#[test]
fn links_refused_right_after_they_are_issued_end_in_forbidden() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 100_000 }));
    fault(&simulator, &id, 0, json!({ "kind": "expired_link" }));
    let folder = tempfile::tempdir().unwrap();

    let failure = client_with(&simulator, &[]).download(&id, folder.path(), None).unwrap_err();

    assert_failed_cleanly(&failure, DefenderStatus::Forbidden, folder.path());
    assert!(failure.message.contains("AuthenticationFailed"), "Storage's error code is named: {failure}");
    assert_eq!(requests_to(&simulator, "get_package_uri").len(), 3, "the first link and two fresh ones");
    assert_eq!(ranges(&simulator, &id).len(), 3);
}

#[test]
fn a_server_that_ignores_the_range_is_followed_from_the_start() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 1_000_000 }));
    fault(&simulator, &id, 1, json!({ "kind": "cut_after", "bytes": 300_000 }));
    fault(&simulator, &id, 1, json!({ "kind": "no_ranges" }));
    let folder = tempfile::tempdir().unwrap();

    let result = client_with(&simulator, &[]).download(&id, folder.path(), None).unwrap();

    assert_intact(&simulator, &id, folder.path(), &result);
    let downloads = requests_to(&simulator, "download");
    assert_eq!(downloads[1]["range"], "bytes=300000-");
    assert_eq!(downloads[1]["status"], 200, "the whole package came back");
    assert_eq!(downloads.len(), 2, "its body was used: no third request");
    let warnings = warnings();
    assert!(warnings.iter().any(|line| line.contains("whole package again")), "{warnings:?}");
}

#[test]
fn server_errors_from_the_download_host_are_retried_after_a_pause() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 100_000 }));
    fault(&simulator, &id, 2, json!({ "kind": "status", "status": 503, "code": "ServerBusy" }));
    let folder = tempfile::tempdir().unwrap();

    let result = client_with(&simulator, &[("clock_scale", "100")]).download(&id, folder.path(), None).unwrap();

    assert_intact(&simulator, &id, folder.path(), &result);
    assert_eq!(ranges(&simulator, &id), [None, None, None]);
    let warnings = warnings();
    assert!(warnings.iter().any(|line| line.contains("HTTP 503") && line.contains("ServerBusy")), "{warnings:?}");
}

#[test]
fn a_retry_after_from_the_download_host_is_honoured() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 100_000 }));
    fault(&simulator, &id, 1, json!({ "kind": "status", "status": 503, "retry_after_secs": 3 }));
    let folder = tempfile::tempdir().unwrap();

    let result = client_with(&simulator, &[("clock_scale", "10")]).download(&id, folder.path(), None).unwrap();

    assert_intact(&simulator, &id, folder.path(), &result);
    let warnings = warnings();
    assert!(warnings.iter().any(|line| line.contains("in 300 ms")), "3 s at 10 times the speed: {warnings:?}");
}

#[test]
fn a_download_host_that_keeps_failing_gives_up_after_five_retries_without_a_byte() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 100_000 }));
    fault(&simulator, &id, 0, json!({ "kind": "status", "status": 500 }));
    let folder = tempfile::tempdir().unwrap();

    let failure = client_with(&simulator, &[("clock_scale", "100")]).download(&id, folder.path(), None).unwrap_err();

    assert_failed_cleanly(&failure, DefenderStatus::Http, folder.path());
    assert!(failure.message.contains("HTTP 500") && failure.message.contains("5 retries in a row"), "{failure}");
    assert_eq!(ranges(&simulator, &id).len(), 6);
}

#[test]
fn a_dropped_connection_is_retried() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 100_000 }));
    fault(&simulator, &id, 1, json!({ "kind": "drop" }));
    let folder = tempfile::tempdir().unwrap();

    let result = client_with(&simulator, &[("clock_scale", "100")]).download(&id, folder.path(), None).unwrap();

    assert_intact(&simulator, &id, folder.path(), &result);
    assert_eq!(statuses_at(&simulator, "download"), [None, Some(200)], "the first connection was dropped");
}

#[test]
fn a_download_host_that_never_answers_is_a_network_error() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 100_000 }));
    fault(&simulator, &id, 0, json!({ "kind": "drop" }));
    let folder = tempfile::tempdir().unwrap();

    let failure = client_with(&simulator, &[("clock_scale", "100")]).download(&id, folder.path(), None).unwrap_err();

    assert_failed_cleanly(&failure, DefenderStatus::Network, folder.path());
    assert_eq!(ranges(&simulator, &id).len(), 6);
    // The message names the host that failed, never the link's path or token.
    assert!(failure.message.contains(&format!("to {}", simulator.download_url())), "{failure}");
    assert!(!failure.message.contains("safedownload"), "{failure}");
}

#[test]
fn a_package_missing_from_the_download_host_is_not_found_at_once() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 100_000 }));
    fault(&simulator, &id, 0, json!({ "kind": "not_found" }));
    let folder = tempfile::tempdir().unwrap();

    let failure = client_with(&simulator, &[]).download(&id, folder.path(), None).unwrap_err();

    assert_failed_cleanly(&failure, DefenderStatus::NotFound, folder.path());
    assert_eq!(ranges(&simulator, &id).len(), 1, "a 404 is not retried");
}

#[test]
fn a_slow_answer_is_waited_for() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 100_000 }));
    fault(&simulator, &id, 1, json!({ "kind": "delay", "ms": 300 }));
    let folder = tempfile::tempdir().unwrap();

    let result = client_with(&simulator, &[]).download(&id, folder.path(), None).unwrap();

    assert_intact(&simulator, &id, folder.path(), &result);
    assert_eq!(ranges(&simulator, &id), [None]);
}

#[test]
fn cancel_during_a_retry_pause_returns_promptly_and_leaves_no_file() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 100_000 }));
    fault(&simulator, &id, 0, json!({ "kind": "status", "status": 503 }));
    let folder = tempfile::tempdir().unwrap();
    // Real-time pauses: 0.5 s, 1 s, 2 s, ...
    let client = Arc::new(client_with(&simulator, &[]));
    let canceller = {
        let client = Arc::clone(&client);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1200));
            client.cancel();
            Instant::now()
        })
    };

    let failure = client.download(&id, folder.path(), None).unwrap_err();

    let cancelled = canceller.join().unwrap();
    assert!(cancelled.elapsed() < Duration::from_millis(500), "cancel took {:?}", cancelled.elapsed());
    assert_failed_cleanly(&failure, DefenderStatus::Cancelled, folder.path());
}

// --- many at once ---------------------------------------------------------------------------

/// Everything a batch told its caller, in the order it was told.
#[derive(Default)]
struct Heard {
    /// `(index, done, total)` or, for a finished item, `(index, status, result)`.
    events: Vec<Event>,
}

#[derive(Debug)]
enum Event {
    Progress(usize, u64, u64),
    Done(usize, DefenderStatus, Value),
}

/// Runs a batch, recording its callbacks (and checking they run on this thread); `cancel_when`
/// sees every progress report and returns true to cancel.
fn run_batch(
    client: &Client,
    ids: &[&str],
    folder: &Path,
    mut cancel_when: impl FnMut(&[Event]) -> bool,
) -> (Result<Vec<Value>, Failure>, Vec<Event>) {
    let caller = std::thread::current().id();
    let heard = RefCell::new(Heard::default());
    let mut progress = |index: usize, done: u64, total: u64| {
        assert_eq!(std::thread::current().id(), caller, "progress on another thread");
        heard.borrow_mut().events.push(Event::Progress(index, done, total));
        cancel_when(&heard.borrow().events)
    };
    let mut item_done = |index: usize, status: DefenderStatus, result: Value| {
        assert_eq!(std::thread::current().id(), caller, "item_done on another thread");
        heard.borrow_mut().events.push(Event::Done(index, status, result));
    };
    let callbacks = BatchCallbacks { progress: Some(&mut progress), item_done: Some(&mut item_done) };
    let result = client.download_many(ids, folder, callbacks);
    (result, heard.into_inner().events)
}

#[test]
fn a_batch_downloads_every_package_and_reports_each_item_as_it_finishes() {
    let simulator = simulator();
    let good: Vec<String> = [150_000, 400_000, 90_000]
        .iter()
        .map(|size| create_action(&simulator, json!({ "package_size": size })))
        .collect();
    let failed = create_action(&simulator, json!({ "outcome": "Failed" }));
    let unknown = "00000000-0000-4000-8000-00000000dead";
    let existing = create_action(&simulator, json!({ "package_size": 10_000 }));
    fault(&simulator, &good[1], 1, json!({ "kind": "cut_after", "bytes": 100_000 }));
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join(format!("{existing}.zip")), b"a previous case").unwrap();
    let client = client_with(&simulator, &[("max_concurrent_downloads", "3")]);
    let ids = [good[0].as_str(), failed.as_str(), good[1].as_str(), unknown, existing.as_str(), good[2].as_str()];

    let (results, events) = run_batch(&client, &ids, folder.path(), |_| false);
    let results = results.unwrap();

    assert_eq!(results.len(), ids.len());
    for (index, (result, id)) in results.iter().zip(ids).enumerate() {
        assert_eq!(result["action_id"], id, "item {index} is in input order");
        assert!(result["elapsed_ms"].is_u64());
        let done: Vec<&Event> =
            events.iter().filter(|event| matches!(event, Event::Done(i, ..) if *i == index)).collect();
        assert!(
            matches!(done.as_slice(), [Event::Done(_, status, heard)] if heard == result && result["code"] == *status as i32),
            "item {index} was reported once, as in the results: {done:?}"
        );
    }
    for (index, id) in [(0, &good[0]), (2, &good[1]), (5, &good[2])] {
        let result = &results[index];
        assert_eq!((result["status"].as_str(), result["code"].as_i64()), (Some("OK"), Some(0)), "{result}");
        let expected = simulator.package(id).unwrap();
        assert_eq!(std::fs::read(result["path"].as_str().unwrap()).unwrap(), expected);
        assert_eq!(result["sha256"], hex::encode(Sha256::digest(&expected)));
        let last = events.iter().rev().find_map(|event| match event {
            Event::Progress(i, done, total) if *i == index => Some((*done, *total)),
            _ => None,
        });
        assert_eq!(last, Some((expected.len() as u64, expected.len() as u64)), "item {index}'s last progress");
    }
    let failures = [(1, "ACTION_FAILED", 13), (3, "NOT_FOUND", 3), (4, "EXISTS", 15)];
    for (index, status, code) in failures {
        let result = &results[index];
        assert_eq!((result["status"].as_str(), result["code"].as_i64()), (Some(status), Some(code)), "{result}");
        assert!(result["message"].as_str().is_some_and(|m| !m.is_empty()), "{result}");
        assert!(result.get("path").is_none(), "{result}");
    }
    assert_eq!(ranges(&simulator, &good[1]), [None, Some("bytes=100000-".to_owned())], "resumed inside the batch");
    let mut expected_files: Vec<String> = good.iter().chain([&existing]).map(|id| format!("{id}.zip")).collect();
    expected_files.sort();
    assert_eq!(entries(folder.path()), expected_files, "no part file, nothing for the failed items");
    assert_eq!(std::fs::read(folder.path().join(format!("{existing}.zip"))).unwrap(), b"a previous case");
    assert_no_secret(&serde_json::to_string(&results).unwrap(), &[]);
    take_log();
}

#[test]
fn max_concurrent_downloads_bounds_how_many_items_run_at_once() {
    let simulator = simulator();
    let folder = tempfile::tempdir().unwrap();
    for at_once in [1, 2] {
        let ids: Vec<String> = (0..4).map(|_| create_action(&simulator, json!({ "package_size": 200_000 }))).collect();
        for id in &ids {
            fault(&simulator, id, 1, json!({ "kind": "slow_body", "bytes_per_sec": 1_000_000 }));
        }
        let client = client_with(&simulator, &[("max_concurrent_downloads", &at_once.to_string())]);
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();

        let (results, events) = run_batch(&client, &ids, folder.path(), |_| false);

        assert!(results.unwrap().iter().all(|result| result["code"] == 0));
        // An item runs from its first progress report to its result; the reports arrive in order.
        let mut running = std::collections::HashSet::new();
        let mut most = 0;
        for event in &events {
            match event {
                Event::Progress(index, ..) => running.insert(*index),
                Event::Done(index, ..) => running.remove(index),
            };
            most = most.max(running.len());
        }
        assert_eq!(most, at_once, "{events:?}");
    }
    take_log();
}

#[test]
fn collections_still_running_hold_no_download_slot_back() {
    // The simulator's clock runs 600 times faster: a collection 3000 s InProgress ends in 5 s.
    let simulator = simulator_with(json!({ "rate_limit": false, "clock_scale": 600.0 }));
    let running = create_action(&simulator, json!({ "schedule": { "pending_secs": 0, "in_progress_secs": 3000 } }));
    let ready = create_action(&simulator, json!({ "package_size": 20_000 }));
    let folder = tempfile::tempdir().unwrap();
    // One slot, and the item that waits for its collection comes first; wait_timeout_ms is in
    // the service's time too (10 s real).
    let client = client_with(
        &simulator,
        &[("max_concurrent_downloads", "1"), ("wait_timeout_ms", "6000000"), ("clock_scale", "600")],
    );

    let (results, events) = run_batch(&client, &[&running, &ready], folder.path(), |_| false);

    let results = results.unwrap();
    assert!(results.iter().all(|result| result["code"] == 0), "{results:?}");
    let finished: Vec<usize> = events
        .iter()
        .filter_map(|event| if let Event::Done(index, ..) = event { Some(*index) } else { None })
        .collect();
    assert_eq!(finished, [1, 0], "the ready package did not wait for the running collection");
    assert!(results[1]["elapsed_ms"].as_u64().unwrap() < results[0]["elapsed_ms"].as_u64().unwrap(), "{results:?}");
    take_log();
}

#[test]
fn cancelling_a_batch_stops_every_item_and_leaves_only_whole_packages() {
    let simulator = simulator();
    let quick = create_action(&simulator, json!({ "package_size": 50_000 }));
    let slow: Vec<String> = (0..3).map(|_| create_action(&simulator, json!({ "package_size": 2_000_000 }))).collect();
    for id in &slow {
        fault(&simulator, id, 1, json!({ "kind": "slow_body", "bytes_per_sec": 500_000 }));
    }
    let folder = tempfile::tempdir().unwrap();
    let client = client_with(&simulator, &[]);
    let ids: Vec<&str> = [quick.as_str()].into_iter().chain(slow.iter().map(String::as_str)).collect();
    let started = Instant::now();

    // Cancel once the quick one is saved and a slow one has bytes on disk.
    let (results, events) = run_batch(&client, &ids, folder.path(), |events| {
        let quick_done = events.iter().any(|event| matches!(event, Event::Done(0, DefenderStatus::Ok, _)));
        quick_done && events.iter().any(|event| matches!(event, Event::Progress(i, done, _) if *i > 0 && *done > 0))
    });

    let failure = results.unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Cancelled, "{failure}");
    assert!(started.elapsed() < Duration::from_secs(3), "cancel took {:?}", started.elapsed());
    assert_eq!(entries(folder.path()), vec![format!("{quick}.zip")], "the saved package stays, no part file");
    let finished: Vec<usize> = events
        .iter()
        .filter_map(|event| match event {
            Event::Done(index, ..) => Some(*index),
            Event::Progress(..) => None,
        })
        .collect();
    assert_eq!(finished, [0], "stopped items are not reported as finished");
    // The client is still usable.
    let (results, _) = run_batch(&client, &[slow[0].as_str()], folder.path(), |_| false);
    assert_eq!(results.unwrap()[0]["code"], 0);
    take_log();
}

#[test]
fn an_id_given_twice_is_downloaded_once() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 50_000 }));
    let folder = tempfile::tempdir().unwrap();

    let results = client_with(&simulator, &[]).download_many(&[&id, &id], folder.path(), BatchCallbacks::default());

    let results = results.unwrap();
    assert_eq!(results[0]["code"], 0);
    assert_eq!(results[1]["status"], "INVALID_ARGUMENT");
    assert!(results[1]["message"].as_str().unwrap().contains("already item 0"), "{}", results[1]);
    assert_eq!(ranges(&simulator, &id).len(), 1);
    assert_eq!(entries(folder.path()), vec![format!("{id}.zip")]);
    take_log();
}

#[test]
fn bad_batch_arguments_are_refused_and_write_nothing() {
    let simulator = simulator();
    let client = client_for(&simulator);
    let folder = tempfile::tempdir().unwrap();
    let folder_text = CString::new(folder.path().to_str().unwrap()).unwrap();
    let id = CString::new("00000000-0000-4000-8000-000000000001").unwrap();
    let not_utf8 = CString::new(vec![0xC3, 0x28]).unwrap();
    let file = folder.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let file_text = CString::new(file.to_str().unwrap()).unwrap();
    let missing = CString::new(folder.path().join("missing").to_str().unwrap()).unwrap();
    let sentinel = ptr::dangling_mut::<c_char>();

    let call = |ids: *const *const c_char, count: usize, folder: *const c_char| {
        let mut results = sentinel;
        let status = unsafe {
            defender_download_packages(client.raw(), ids, count, folder, None, None, ptr::null_mut(), &mut results)
        };
        let message = last_error();
        if status != DefenderStatus::Ok {
            assert_eq!(results, sentinel, "results written on failure");
        }
        (status, message, results)
    };
    let good = [id.as_ptr()];
    let cases: [(&str, *const *const c_char, usize, *const c_char, DefenderStatus, &str); 6] = [
        ("ids NULL", ptr::null(), 2, folder_text.as_ptr(), DefenderStatus::InvalidArgument, "action_ids is NULL"),
        (
            "an id NULL",
            [id.as_ptr(), ptr::null()].as_ptr(),
            2,
            folder_text.as_ptr(),
            DefenderStatus::InvalidArgument,
            "action_ids[1]",
        ),
        (
            "an id not UTF-8",
            [not_utf8.as_ptr()].as_ptr(),
            1,
            folder_text.as_ptr(),
            DefenderStatus::InvalidArgument,
            "action_ids[0]",
        ),
        ("folder NULL", good.as_ptr(), 1, ptr::null(), DefenderStatus::InvalidArgument, "destination_folder"),
        ("folder a file", good.as_ptr(), 1, file_text.as_ptr(), DefenderStatus::InvalidArgument, "not a folder"),
        ("folder missing", good.as_ptr(), 1, missing.as_ptr(), DefenderStatus::Io, "does not exist"),
    ];
    for (case, ids, count, folder, status, says) in cases {
        let (got, message, _) = call(ids, count, folder);
        assert_eq!(got, status, "{case}: {message}");
        assert!(message.contains(says), "{case}: {message}");
    }
    let (status, _, results) = call(ptr::null(), 0, folder_text.as_ptr());
    assert_eq!(status, DefenderStatus::Ok, "an empty batch is fine");
    assert_eq!(unsafe { CStr::from_ptr(results) }.to_str().unwrap(), "[]");
    unsafe { defender_string_free(results) };
    assert!(requests_to(&simulator, "get_package_uri").is_empty(), "no request for a refused batch");
    assert_eq!(entries(folder.path()), vec!["a-file".to_owned()]);
}

#[test]
fn every_item_of_a_large_batch_gets_its_own_progress_figures() {
    let simulator = simulator();
    let sizes = [120_000u64, 250_000, 60_000, 500_000, 80_000, 330_000];
    let ids: Vec<String> =
        sizes.iter().map(|size| create_action(&simulator, json!({ "package_size": size }))).collect();
    let folder = tempfile::tempdir().unwrap();
    let client = client_with(&simulator, &[("max_concurrent_downloads", "4")]);
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();

    let (results, events) = run_batch(&client, &id_refs, folder.path(), |_| false);

    assert!(results.unwrap().iter().all(|result| result["code"] == 0));
    let mut totals: HashMap<usize, u64> = HashMap::new();
    for event in &events {
        if let Event::Progress(index, done, total) = event {
            assert!(*done <= *total || *total == 0, "{event:?}");
            if *total > 0 {
                assert_eq!(*totals.entry(*index).or_insert(*total), *total, "item {index}'s total changed");
            }
        }
    }
    let expected: HashMap<usize, u64> = sizes.iter().copied().enumerate().collect();
    assert_eq!(totals, expected);
    take_log();
}

/// The least time `calls` getPackageUri calls take at 2 a minute (the documented limit; fewer
/// than 120, so the hour's limit does not count), with both clocks `clock_scale` times faster.
fn least_time_for_links(calls: usize, clock_scale: f64) -> Duration {
    let minutes = (calls - 1) / 2;
    Duration::from_secs(60 * minutes as u64).div_f64(clock_scale)
}

#[test]
fn fifty_packages_in_one_batch_arrive_intact_with_no_429_in_about_the_least_time_the_limits_allow() {
    const CLOCK_SCALE: f64 = 600.0;
    let simulator = fast_simulator(CLOCK_SCALE);
    let ids: Vec<String> = (0..50).map(|_| create_action(&simulator, json!({ "package_size": 20_000 }))).collect();
    let folder = tempfile::tempdir().unwrap();
    let client = limited_client_for(&simulator);
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let started = Instant::now();

    let results = client.download_many(&id_refs, folder.path(), BatchCallbacks::default()).unwrap();

    let took = started.elapsed();
    for (result, id) in results.iter().zip(&ids) {
        assert_eq!(result["code"], 0, "{result}");
        let saved = std::fs::read(folder.path().join(format!("{id}.zip"))).unwrap();
        assert!(saved == simulator.package(id).unwrap(), "package {id} differs");
    }
    assert_eq!(statuses_at(&simulator, "get_package_uri"), vec![Some(200); 50], "one link each, none throttled");
    let least = least_time_for_links(50, CLOCK_SCALE);
    assert!(took >= least, "faster than the limits allow: {took:?} < {least:?}");
    assert!(took <= least * 2 + Duration::from_secs(1), "{took:?} is far above the least time {least:?}");
}

#[test]
fn fresh_links_for_expired_ones_wait_their_turn_in_the_rate_limit() {
    const CLOCK_SCALE: f64 = 600.0;
    let simulator = fast_simulator(CLOCK_SCALE);
    let ids: Vec<String> = (0..3).map(|_| create_action(&simulator, json!({ "package_size": 20_000 }))).collect();
    for id in &ids {
        fault(&simulator, id, 1, json!({ "kind": "expired_link" }));
    }
    let folder = tempfile::tempdir().unwrap();
    let client = limited_client_for(&simulator);
    capture_log_lines(&client);
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let started = Instant::now();

    let results = client.download_many(&id_refs, folder.path(), BatchCallbacks::default()).unwrap();

    assert!(results.iter().all(|result| result["code"] == 0), "{results:?}");
    assert_eq!(statuses_at(&simulator, "get_package_uri"), vec![Some(200); 6], "two links each, none throttled");
    let least = least_time_for_links(6, CLOCK_SCALE);
    assert!(started.elapsed() >= least, "the fresh links did not wait their turn");
    assert_eq!(warnings().iter().filter(|line| line.contains("getting a fresh link")).count(), 3);
}

#[test]
fn a_file_name_pattern_names_each_package_after_its_device_and_the_result_names_the_device() {
    let simulator = simulator();
    let machine = "5eed00000000000000000000000000000000000a";
    let ids: Vec<String> =
        (0..2).map(|_| create_action(&simulator, json!({ "package_size": 20_000, "machine_id": machine }))).collect();
    let folder = tempfile::tempdir().unwrap();
    let client = client_with(&simulator, &[("file_name_pattern", "{ComputerName}_{action_id}.zip")]);
    let name = "desktop-5eed000";

    // One package, then a batch: each file named after its device, each result naming it.
    let single = client.download(&ids[0], folder.path(), None).unwrap();
    assert_eq!(single["path"], folder.path().join(format!("{name}_{}.zip", ids[0])).to_str().unwrap());
    assert_eq!((single["machine_id"].as_str(), single["computer_dns_name"].as_str()), (Some(machine), Some(name)));
    let batch = client.download_many(&[ids[1].as_str()], folder.path(), BatchCallbacks::default()).unwrap();
    assert_eq!(batch[0]["path"], folder.path().join(format!("{name}_{}.zip", ids[1])).to_str().unwrap());
    assert_eq!(batch[0]["computer_dns_name"], name);
    let mut expected: Vec<String> = ids.iter().map(|id| format!("{name}_{id}.zip")).collect();
    expected.sort();
    assert_eq!(entries(folder.path()), expected);
    assert_eq!(
        std::fs::read(folder.path().join(format!("{name}_{}.zip", ids[0]))).unwrap(),
        simulator.package(&ids[0]).unwrap()
    );

    // A second download of the same package is refused before its link is asked for.
    simulator.clear_requests();
    let failure = client.download(&ids[0], folder.path(), None).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Exists, "{failure}");
    assert!(requests_to(&simulator, "get_package_uri").is_empty());

    // The default name; a file path is used as it is; the device is named when the call waited.
    let plain = client_with(&simulator, &[("wait_timeout_ms", "60000")]);
    let waited = plain.download(&ids[0], folder.path(), None).unwrap();
    assert_eq!(waited["path"], folder.path().join(format!("{}.zip", ids[0])).to_str().unwrap());
    assert_eq!(waited["computer_dns_name"], name);
    let file = folder.path().join("case.zip");
    let to_file = client.download(&ids[1], &file, None).unwrap();
    assert_eq!(to_file["path"], file.to_str().unwrap());
    let unwaited = client_for(&simulator).download(&ids[1], &folder.path().join("again.zip"), None).unwrap();
    assert!(unwaited.get("machine_id").is_none(), "{unwaited}");

    // Unsafe patterns are refused when set.
    let failure = client.set("file_name_pattern", Some("../{action_id}.zip")).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::InvalidArgument, "{failure}");
    take_log();
}

/// The first entry's name in the simulator's standard package, and where its data lies.
fn first_entry(simulator: &Simulator, action_id: &str) -> (String, u64) {
    let package = simulator.package(action_id).unwrap();
    let name_len = u16::from_le_bytes([package[26], package[27]]) as usize;
    let extra_len = u16::from_le_bytes([package[28], package[29]]) as usize;
    (String::from_utf8(package[30..30 + name_len].to_vec()).unwrap(), (30 + name_len + extra_len) as u64)
}

#[test]
fn a_damaged_entry_without_an_md5_is_downloaded_again_then_integrity_naming_it() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 300_000 }));
    let (name, data) = first_entry(&simulator, &id);
    fault(&simulator, &id, 0, json!({ "kind": "corrupt_byte", "offset": data + 100 }));
    let folder = tempfile::tempdir().unwrap();

    let failure = client_with(&simulator, &[]).download(&id, folder.path(), None).unwrap_err();

    assert_failed_cleanly(&failure, DefenderStatus::Integrity, folder.path());
    assert!(failure.message.contains(&format!("entry '{name}' (at byte 0) is damaged")), "{failure}");
    assert!(failure.message.contains("CRC-32"), "{failure}");
    assert_eq!(ranges(&simulator, &id), [None, None], "downloaded once more from the start");
}

#[test]
fn a_damaged_entry_once_is_downloaded_again_and_the_file_is_intact() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 300_000 }));
    let (name, data) = first_entry(&simulator, &id);
    fault(&simulator, &id, 1, json!({ "kind": "corrupt_byte", "offset": data }));
    let folder = tempfile::tempdir().unwrap();

    let result = client_with(&simulator, &[]).download(&id, folder.path(), None).unwrap();

    assert_intact(&simulator, &id, folder.path(), &result);
    assert_eq!(ranges(&simulator, &id), [None, None]);
    let warnings = warnings();
    assert!(warnings.iter().any(|line| line.contains(&format!("entry '{name}'"))), "{warnings:?}");
}

#[test]
fn junk_around_the_archive_or_a_directory_that_disagrees_is_integrity() {
    let simulator = simulator();
    let folder = tempfile::tempdir().unwrap();
    for (layout, says) in [
        (json!({ "kind": "junk", "before": 16 }), "does not start with a ZIP local file header"),
        (json!({ "kind": "junk", "after": 1000 }), "bytes follow the end of the archive"),
        (json!({ "kind": "bad_directory" }), "does not agree with the local header at byte 0: CRC-32 differ"),
    ] {
        let id = create_action(&simulator, json!({ "package_size": 200_000, "package_layout": layout }));
        let failure = client_with(&simulator, &[]).download(&id, folder.path(), None).unwrap_err();
        assert_failed_cleanly(&failure, DefenderStatus::Integrity, folder.path());
        assert!(failure.message.contains(says), "{layout}: {failure}");
        assert_eq!(ranges(&simulator, &id), [None, None], "{layout}");
    }
}

#[test]
fn deflated_and_stored_entries_are_checked_as_they_stream() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_layout": { "kind": "deflated" } }));
    let folder = tempfile::tempdir().unwrap();
    let result = client_with(&simulator, &[]).download(&id, folder.path(), None).unwrap();
    assert_intact(&simulator, &id, folder.path(), &result);
    std::fs::remove_dir_all(folder.path()).unwrap();
    std::fs::create_dir(folder.path()).unwrap();

    // A byte of each entry's data damaged: the deflated one (its data descriptor after it), the
    // stored one, then the one whose sizes come after its data.
    let package = simulator.package(&id).unwrap();
    for name in ["Processes/ProcessList.csv", "Prefetch/NOTEPAD.EXE-1.pf", "WdSupportLogs/MpLog.txt"] {
        let at = package.windows(name.len()).position(|window| window == name.as_bytes()).unwrap() + name.len() + 50;
        simulator.clear_faults();
        simulator.clear_requests();
        fault(&simulator, &id, 0, json!({ "kind": "corrupt_byte", "offset": at }));
        let failure = client_with(&simulator, &[]).download(&id, folder.path(), None).unwrap_err();
        assert_failed_cleanly(&failure, DefenderStatus::Integrity, folder.path());
        assert!(failure.message.contains(&format!("entry '{name}'")), "{failure}");
        assert_eq!(ranges(&simulator, &id), [None, None], "{name}");
    }
}

#[test]
fn a_package_sent_with_a_content_encoding_is_protocol_at_once() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 200_000 }));
    let answer = json!({ "kind": "answer", "status": 200, "headers": { "content-encoding": "gzip", "content-type": "application/zip" }, "body": "\u{1f}" });
    fault(&simulator, &id, 0, answer);
    let folder = tempfile::tempdir().unwrap();

    let failure = client_with(&simulator, &[]).download(&id, folder.path(), None).unwrap_err();

    assert_failed_cleanly(&failure, DefenderStatus::Protocol, folder.path());
    assert!(failure.message.contains("Content-Encoding: gzip"), "{failure}");
    let requests = requests_to(&simulator, "download");
    assert_eq!(requests.len(), 1, "not retried");
    let headers = requests[0]["headers"].as_array().unwrap();
    assert!(!headers.iter().any(|name| name == "accept-encoding"), "no Accept-Encoding is sent: {headers:?}");

    // identity is what no encoding means.
    simulator.clear_faults();
    let identity =
        json!({ "kind": "answer", "status": 200, "headers": { "content-encoding": "identity" }, "body": "x" });
    fault(&simulator, &id, 0, identity);
    let failure = client_with(&simulator, &[]).download(&id, folder.path(), None).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Integrity, "read, then found to be no ZIP: {failure}");
}
