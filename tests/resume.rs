//! A package on disk survives its process: a download killed mid-body (SIGKILL) is resumed by
//! the next call for the same destination, from the bytes it left, when the download host
//! vouches that they are the same package, and started over when it does not; and one
//! destination has one writer at a time, in one process or several. All through the C ABI,
//! against the simulator over loopback HTTP; the killed downloads run in child processes (this
//! test binary, started again to run `child_download`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use defender::*;
use defender_simulator::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, Simulator};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The size of the blocks the library writes: a part file grows by this much at a time.
const BLOCK: u64 = 1024 * 1024;
const PACKAGE_SIZE: u64 = 3_000_000;

fn fault(simulator: &Simulator, action_id: &str, times: u64, fault: Value) {
    add_fault(simulator, json!({ "endpoint": "download", "action_id": action_id, "times": times, "fault": fault }));
}

/// The files a download keeps beside `<folder>/<action_id>.zip` while it runs.
fn beside(folder: &Path, action_id: &str, suffix: &str) -> PathBuf {
    folder.join(format!(".{action_id}.zip{suffix}"))
}

/// The download requests for `action_id`: (Range header, status, body bytes served).
fn downloads(simulator: &Simulator, action_id: &str) -> Vec<(Option<String>, Option<u64>, u64)> {
    requests_to(simulator, "download")
        .into_iter()
        .filter(|request| request["action_id"] == action_id)
        .map(|request| {
            let range = request["range"].as_str().map(str::to_owned);
            (range, request["status"].as_u64(), request["body_bytes"].as_u64().unwrap())
        })
        .collect()
}

/// The file is the package, the result says so, and nothing else is in the folder.
fn assert_intact(simulator: &Simulator, action_id: &str, folder: &Path, result: &Value) {
    let expected = simulator.package(action_id).unwrap();
    let bytes = std::fs::read(folder.join(format!("{action_id}.zip"))).unwrap();
    assert!(bytes == expected, "the file differs from the package ({} vs {} bytes)", bytes.len(), expected.len());
    assert_eq!(result["bytes"], expected.len());
    assert_eq!(result["sha256"], hex::encode(Sha256::digest(&expected)));
    assert_eq!(entries(folder), vec![format!("{action_id}.zip")], "no part, record or lock is left");
}

// --- the child process ----------------------------------------------------------------------

/// Not a test of its own: the download a child process runs (`start_child`), told what to do
/// through the environment. Prints the result, or the failure's status and message.
#[test]
#[ignore = "run by the other tests in a child process"]
fn child_download() {
    let Ok(base_url) = std::env::var("RESUME_CHILD_BASE_URL") else { return };
    let client = Client::new();
    for (key, value) in [
        ("base_url", base_url.as_str()),
        ("authority_url", base_url.as_str()),
        ("tenant_id", DEFAULT_TENANT_ID),
        ("client_id", DEFAULT_CLIENT_ID),
        ("client_secret", DEFAULT_CLIENT_SECRET),
        ("rate_limit", "off"),
    ] {
        client.set(key, Some(value)).unwrap();
    }
    let action_id = std::env::var("RESUME_CHILD_ACTION").unwrap();
    let destination = PathBuf::from(std::env::var("RESUME_CHILD_DESTINATION").unwrap());
    match client.download(&action_id, &destination, None) {
        Ok(result) => println!("RESULT {result}"),
        Err(failure) => println!("FAILED {}", failure.status as i32),
    }
}

/// This test binary, started again to run `child_download` for `action_id` into `folder`.
fn start_child(simulator: &Simulator, action_id: &str, folder: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child_download", "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("RESUME_CHILD_BASE_URL", simulator.base_url())
        .env("RESUME_CHILD_ACTION", action_id)
        .env("RESUME_CHILD_DESTINATION", folder)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the test binary starts again")
}

/// Waits until `path` holds at least `bytes`.
fn wait_for_bytes(path: &Path, bytes: u64) {
    let started = Instant::now();
    while std::fs::metadata(path).map_or(0, |metadata| metadata.len()) < bytes {
        assert!(started.elapsed() < Duration::from_secs(60), "'{}' never reached {bytes} bytes", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the download into `path`'s folder has created `path` (its part: the first call
/// holds the destination's lock and is downloading; its body takes seconds more).
fn wait_for_file(path: &Path) {
    let started = Instant::now();
    while !path.exists() {
        assert!(started.elapsed() < Duration::from_secs(60), "'{}' never appeared", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A child process that downloads `action_id`'s package into `folder` is killed (SIGKILL on
/// Unix) once its part file holds a block: the first answer stalls after a block and a bit. Returns the
/// bytes it left in the part.
fn killed_midway(simulator: &Simulator, action_id: &str, folder: &Path) -> u64 {
    fault(simulator, action_id, 1, json!({ "kind": "stall", "after_bytes": BLOCK + 100_000, "ms": 60_000 }));
    let mut child = start_child(simulator, action_id, folder);
    let part = beside(folder, action_id, ".part");
    wait_for_bytes(&part, BLOCK);
    child.kill().unwrap();
    child.wait().unwrap();
    // What a killed run leaves: its part, the part's record, and its (no longer held) lock file.
    let mut left = entries(folder);
    left.sort();
    let expected: Vec<String> =
        [".lock", ".part", ".part.json"].iter().map(|suffix| format!(".{action_id}.zip{suffix}")).collect();
    assert_eq!(left, expected, "what the killed run left");
    std::fs::metadata(&part).unwrap().len()
}

// --- resume across processes ----------------------------------------------------------------

#[test]
fn a_download_killed_midway_is_resumed_by_the_next_call_from_the_bytes_it_left() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": PACKAGE_SIZE, "content_md5": true }));
    let folder = tempfile::tempdir().unwrap();
    let kept = killed_midway(&simulator, &id, folder.path());
    assert!(kept >= BLOCK, "{kept}");

    let client = client_for(&simulator);
    capture_log_lines(&client);
    let result = client.download(&id, folder.path(), None).unwrap();

    assert_intact(&simulator, &id, folder.path(), &result);
    assert_eq!(result["resumed_from"], kept);
    let requests = downloads(&simulator, &id);
    assert_eq!(requests.len(), 2, "{requests:?}");
    // The rerun asked for the rest only, and the simulator served exactly that: no byte the
    // killed run had on disk was fetched again (only what it had in flight when killed).
    assert_eq!(requests[1], (Some(format!("bytes={kept}-")), Some(206), PACKAGE_SIZE - kept));
    let log = take_log_lines();
    assert!(
        log.iter().any(|(_, line)| line.contains(&format!("holds {kept} bytes of it from an earlier call; resuming"))),
        "{log:?}"
    );
}

#[test]
fn a_batch_resumes_the_items_a_killed_run_left() {
    let simulator = simulator();
    let left = create_action(&simulator, json!({ "package_size": PACKAGE_SIZE }));
    let fresh = create_action(&simulator, json!({ "package_size": 200_000 }));
    let folder = tempfile::tempdir().unwrap();
    let kept = killed_midway(&simulator, &left, folder.path());

    let results = client_for(&simulator).download_many(&[&left, &fresh], folder.path(), BatchCallbacks::default());

    let results = results.unwrap();
    assert_eq!(
        (results[0]["code"].as_i64(), results[0]["resumed_from"].as_u64()),
        (Some(0), Some(kept)),
        "{results:?}"
    );
    assert_eq!((results[1]["code"].as_i64(), results[1]["resumed_from"].as_u64()), (Some(0), Some(0)), "{results:?}");
    assert_eq!(downloads(&simulator, &left)[1], (Some(format!("bytes={kept}-")), Some(206), PACKAGE_SIZE - kept));
    let mut expected = vec![format!("{left}.zip"), format!("{fresh}.zip")];
    expected.sort();
    assert_eq!(entries(folder.path()), expected);
}

#[test]
fn a_whole_part_killed_before_its_rename_is_confirmed_with_its_last_byte() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": PACKAGE_SIZE }));
    let folder = tempfile::tempdir().unwrap();
    killed_midway(&simulator, &id, folder.path());
    // Killed while the whole was being synced and checked.
    std::fs::write(beside(folder.path(), &id, ".part"), simulator.package(&id).unwrap()).unwrap();

    let result = client_for(&simulator).download(&id, folder.path(), None).unwrap();

    assert_intact(&simulator, &id, folder.path(), &result);
    assert_eq!(result["resumed_from"], PACKAGE_SIZE - 1);
    assert_eq!(downloads(&simulator, &id)[1..], [(Some(format!("bytes={}-", PACKAGE_SIZE - 1)), Some(206), 1)]);
}

#[test]
fn a_part_whose_validator_no_longer_matches_is_downloaded_again_from_the_start() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": PACKAGE_SIZE }));
    let folder = tempfile::tempdir().unwrap();
    let kept = killed_midway(&simulator, &id, folder.path());
    // The package the part came from is not the one the download host has now (another ETag).
    let record_path = beside(folder.path(), &id, ".part.json");
    let mut record: Value = serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    assert!(record["etag"].is_string(), "{record}");
    record["etag"] = json!("\"0x8DOTHERVERSION\"");
    std::fs::write(&record_path, record.to_string()).unwrap();

    let result = client_for(&simulator).download(&id, folder.path(), None).unwrap();

    assert_intact(&simulator, &id, folder.path(), &result);
    assert_eq!(result["resumed_from"], 0);
    // Asked for the rest if it was still the same; the whole came back, and was followed.
    let requests = downloads(&simulator, &id);
    assert_eq!(requests[1..], [(Some(format!("bytes={kept}-")), Some(200), PACKAGE_SIZE)]);
}

#[test]
fn a_server_that_ignores_ranges_gets_the_part_replaced_from_the_start() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": PACKAGE_SIZE }));
    let folder = tempfile::tempdir().unwrap();
    let kept = killed_midway(&simulator, &id, folder.path());
    fault(&simulator, &id, 1, json!({ "kind": "no_ranges" }));

    let result = client_for(&simulator).download(&id, folder.path(), None).unwrap();

    assert_intact(&simulator, &id, folder.path(), &result);
    assert_eq!(result["resumed_from"], 0);
    let requests = downloads(&simulator, &id);
    assert_eq!(requests[1..], [(Some(format!("bytes={kept}-")), Some(200), PACKAGE_SIZE)]);
}

#[test]
fn a_part_with_a_garbage_record_is_removed_and_the_package_downloaded_from_byte_0() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": PACKAGE_SIZE }));
    let folder = tempfile::tempdir().unwrap();
    killed_midway(&simulator, &id, folder.path());
    std::fs::write(beside(folder.path(), &id, ".part.json"), b"{\"format\":1,\"act").unwrap();

    let client = client_for(&simulator);
    capture_log_lines(&client);
    let result = client.download(&id, folder.path(), None).unwrap();

    assert_intact(&simulator, &id, folder.path(), &result);
    assert_eq!(result["resumed_from"], 0);
    assert_eq!(downloads(&simulator, &id)[1..], [(None, Some(200), PACKAGE_SIZE)], "no range asked for");
    let log = take_log_lines();
    assert!(
        log.iter().any(|(level, line)| *level == DefenderLogLevel::Warn
            && line.contains("cannot be resumed (its record does not parse")),
        "{log:?}"
    );
}

#[test]
fn a_call_that_finds_the_file_saved_removes_what_a_killed_one_left_beside_it() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": PACKAGE_SIZE }));
    let folder = tempfile::tempdir().unwrap();
    killed_midway(&simulator, &id, folder.path());
    // Killed after its rename, before it removed its lock file; or saved since by another call.
    std::fs::write(folder.path().join(format!("{id}.zip")), b"saved").unwrap();
    std::fs::write(beside(folder.path(), &id, ".lock"), b"{\"pid\":1}").unwrap();

    let failure = client_for(&simulator).download(&id, folder.path(), None).unwrap_err();

    assert_eq!(failure.status, DefenderStatus::Exists, "{failure}");
    assert_eq!(entries(folder.path()), vec![format!("{id}.zip")], "no part, record or lock is left");
}

#[test]
fn leftovers_beside_a_saved_file_stay_while_another_call_holds_its_lock() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": PACKAGE_SIZE }));
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join(format!("{id}.zip")), b"saved").unwrap();
    std::fs::write(beside(folder.path(), &id, ".part"), b"in progress").unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(beside(folder.path(), &id, ".lock"))
        .unwrap();
    fs4::FileExt::try_lock(&lock).unwrap();

    let failure = client_for(&simulator).download(&id, folder.path(), None).unwrap_err();

    assert_eq!(failure.status, DefenderStatus::Exists, "{failure}");
    assert_eq!(
        std::fs::read(beside(folder.path(), &id, ".part")).unwrap(),
        b"in progress",
        "the holder's part is its own"
    );
}

#[test]
fn a_part_for_another_action_is_not_resumed_and_a_failed_call_leaves_nothing() {
    let simulator = simulator();
    let first = create_action(&simulator, json!({ "package_size": PACKAGE_SIZE }));
    let second = create_action(&simulator, json!({ "package_size": PACKAGE_SIZE }));
    let folder = tempfile::tempdir().unwrap();
    killed_midway(&simulator, &first, folder.path());
    // The same file name, another action: the part is not its package.
    let destination = folder.path().join(format!("{first}.zip"));
    fault(&simulator, &second, 0, json!({ "kind": "not_found" }));

    let failure = client_for(&simulator).download(&second, &destination, None).unwrap_err();

    assert_eq!(failure.status, DefenderStatus::NotFound, "{failure}");
    assert!(
        entries(folder.path()).is_empty(),
        "the call that owned the destination removed it all: {:?}",
        entries(folder.path())
    );
}

// --- one writer per destination -------------------------------------------------------------

#[test]
fn a_second_call_in_this_process_waits_for_the_first_then_finds_the_package_there() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 2_000_000 }));
    fault(&simulator, &id, 1, json!({ "kind": "slow_body", "bytes_per_sec": 400_000 }));
    let folder = Arc::new(tempfile::tempdir().unwrap());
    let first = {
        let (client, id, folder) = (client_for(&simulator), id.clone(), Arc::clone(&folder));
        std::thread::spawn(move || client.download(&id, folder.path(), None))
    };
    wait_for_file(&beside(folder.path(), &id, ".part"));

    // Within its own wait_timeout_ms: too short, TIMEOUT; long enough, EXISTS after the first.
    let impatient = client_for(&simulator);
    impatient.set("wait_timeout_ms", Some("200")).unwrap();
    let failure = impatient.download(&id, folder.path(), None).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Timeout, "{failure}");
    assert!(failure.message.contains(&holder(std::process::id())), "{failure}");
    assert!(failure.message.ends_with("it did not finish in the time allowed (wait_timeout_ms = 200)"), "{failure}");
    let failure = client_for(&simulator).download(&id, folder.path(), None).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Timeout, "without wait_timeout_ms, at once: {failure}");
    assert!(failure.message.ends_with("set the option wait_timeout_ms to wait for it"), "{failure}");
    let patient = client_for(&simulator);
    patient.set("wait_timeout_ms", Some("60000")).unwrap();
    capture_log_lines(&patient);
    let failure = patient.download(&id, folder.path(), None).unwrap_err();

    let result = first.join().unwrap().unwrap();
    assert_eq!(failure.status, DefenderStatus::Exists, "{failure}");
    assert_intact(&simulator, &id, folder.path(), &result);
    assert_eq!(downloads(&simulator, &id).len(), 1, "downloaded once");
    let log = take_log_lines();
    let waited = format!("is being downloaded by {}", holder(std::process::id()));
    assert!(log.iter().any(|(_, line)| line.contains(&waited)), "{log:?}");
}

#[test]
fn a_call_waiting_for_another_is_cancelled_at_once_and_touches_nothing() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 2_000_000 }));
    fault(&simulator, &id, 1, json!({ "kind": "slow_body", "bytes_per_sec": 400_000 }));
    let folder = Arc::new(tempfile::tempdir().unwrap());
    let first = {
        let (client, id, folder) = (client_for(&simulator), id.clone(), Arc::clone(&folder));
        std::thread::spawn(move || client.download(&id, folder.path(), None))
    };
    wait_for_file(&beside(folder.path(), &id, ".part"));
    let waiting = Arc::new(client_for(&simulator));
    waiting.set("wait_timeout_ms", Some("60000")).unwrap();
    let canceller = {
        let waiting = Arc::clone(&waiting);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            waiting.cancel();
            Instant::now()
        })
    };

    let failure = waiting.download(&id, folder.path(), None).unwrap_err();

    let cancelled = canceller.join().unwrap();
    assert_eq!(failure.status, DefenderStatus::Cancelled, "{failure}");
    assert!(cancelled.elapsed() < Duration::from_millis(500), "cancel took {:?}", cancelled.elapsed());
    let result = first.join().unwrap().unwrap();
    assert_intact(&simulator, &id, folder.path(), &result);
    assert_eq!(downloads(&simulator, &id).len(), 1, "the waiting call fetched nothing");
}

#[test]
fn a_second_call_with_overwrite_waits_then_replaces_the_package() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 2_000_000 }));
    fault(&simulator, &id, 1, json!({ "kind": "slow_body", "bytes_per_sec": 400_000 }));
    let folder = Arc::new(tempfile::tempdir().unwrap());
    let first = {
        let (client, id, folder) = (client_for(&simulator), id.clone(), Arc::clone(&folder));
        std::thread::spawn(move || client.download(&id, folder.path(), None))
    };
    wait_for_file(&beside(folder.path(), &id, ".part"));
    let second = client_for(&simulator);
    second.set("wait_timeout_ms", Some("60000")).unwrap();
    second.set("overwrite", Some("true")).unwrap();

    let result = second.download(&id, folder.path(), None).unwrap();

    first.join().unwrap().unwrap();
    assert_intact(&simulator, &id, folder.path(), &result);
    assert_eq!(result["resumed_from"], 0);
    let requests = downloads(&simulator, &id);
    assert_eq!(requests.len(), 2, "one after the other, never side by side: {requests:?}");
}

#[test]
fn a_second_process_waits_for_the_first_and_names_it() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 2_000_000 }));
    fault(&simulator, &id, 1, json!({ "kind": "slow_body", "bytes_per_sec": 400_000 }));
    let folder = tempfile::tempdir().unwrap();
    let child = start_child(&simulator, &id, folder.path());
    wait_for_file(&beside(folder.path(), &id, ".part"));
    let client = client_for(&simulator);
    client.set("wait_timeout_ms", Some("60000")).unwrap();
    capture_log_lines(&client);

    let failure = client.download(&id, folder.path(), None).unwrap_err();

    let child_pid = child.id();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: Value = stdout
        .lines()
        .find_map(|line| line.split_once("RESULT ").map(|(_, json)| json))
        .map(|json| serde_json::from_str(json).unwrap())
        .unwrap_or_else(|| panic!("the child did not download: {stdout}"));
    assert_eq!(failure.status, DefenderStatus::Exists, "{failure}");
    assert_intact(&simulator, &id, folder.path(), &result);
    let log = take_log_lines();
    let waited = format!("is being downloaded by {}", holder(child_pid));
    assert!(log.iter().any(|(_, line)| line.contains(&waited)), "{log:?}");
}

/// How a waiting call names the holder of a destination's lock, process `pid` on this host.
/// On Windows a locked file cannot be read by others: the holder is "another call" there.
fn holder(pid: u32) -> String {
    if cfg!(windows) { "another call".to_owned() } else { format!("another call (process {pid} on ") }
}
