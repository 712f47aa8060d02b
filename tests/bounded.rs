//! Bounded: no answer from a server can make a call use unbounded memory, time or disk. Each
//! hostile answer is a fault of the simulator (`answer`, `page`, `raw`, `no_length`,
//! `slow_body`), driven through the C ABI. Where memory is the point, the call runs in a process
//! of its own (this test binary again, `measured_call`) whose peak resident memory is read; a
//! call that does not end is killed at a hard cap and fails the test. docs/hostile-servers.md
//! lists the limits.

mod common;

use std::ffi::{CStr, CString, c_char};
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use defender::*;
use defender_simulator::Simulator;
use serde_json::{Value, json};

/// Runs `call` on a thread of its own and returns what it returned with how long it took,
/// failing the test when it has not returned within `limit`.
fn within<T: Send + 'static>(limit: Duration, call: impl FnOnce() -> T + Send + 'static) -> (T, Duration) {
    let (sender, receiver) = mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        let _ = sender.send(call());
    });
    let value = receiver.recv_timeout(limit).unwrap_or_else(|_| panic!("the call did not return within {limit:?}"));
    (value, started.elapsed())
}

fn fault(simulator: &Simulator, endpoint: &str, times: u64, fault: Value) {
    add_fault(simulator, json!({ "endpoint": endpoint, "times": times, "fault": fault }));
}

/// `{"x":[{"":0},{"":0},...]}`-like JSON of `bytes` bytes: many tiny values, after `head`
/// (which opens an object) and before `tail` (which closes it and what encloses it).
fn tiny_values(head: &str, bytes: usize, tail: &str) -> String {
    const VALUE: &str = r#"{"":0},"#;
    let copies = (bytes - head.len() - tail.len() - r#""x":[{"":0}]"#.len()) / VALUE.len();
    let text = format!(r#"{head}"x":[{}{{"":0}}]{tail}"#, VALUE.repeat(copies));
    assert!(text.len() <= bytes && text.len() + VALUE.len() > bytes);
    text
}

fn digest(text: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// What a call did in a process of its own.
#[derive(Debug)]
struct Measured {
    status: DefenderStatus,
    message: String,
    /// The result's length and `digest`, on success.
    result: Option<(u64, u64)>,
    /// The process's peak resident memory in MiB (Linux only), and its resident memory before
    /// the call.
    peak_mib: Option<f64>,
    before_mib: Option<f64>,
    took: Duration,
}

impl Measured {
    /// What the call added to the process's resident memory at its peak, in MiB.
    fn added_mib(&self) -> Option<f64> {
        Some(self.peak_mib? - self.before_mib?)
    }
}

/// Makes `call` ("machine_action", "list_machines" or "download") against `simulator` in a
/// process of its own, with `options` on top of `client_for`'s; kills it and fails the test when
/// it runs past `limit`.
fn measured(simulator: &Simulator, call: &str, action_id: &str, options: &[(&str, &str)], limit: Duration) -> Measured {
    let folder = tempfile::tempdir().unwrap();
    let request = json!({
        "call": call,
        "base_url": simulator.base_url(),
        "action_id": action_id,
        "folder": folder.path(),
        "options": options,
    });
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["measured_call", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("DEFENDER_MEASURED_CALL", request.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            // Only the process this test started, by its handle.
            let _ = child.kill();
            let _ = child.wait();
            panic!("the {call} call did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = started.elapsed();
    let mut output = String::new();
    child.stdout.take().unwrap().read_to_string(&mut output).unwrap();
    let line =
        output.lines().find_map(|line| Some(line.split_once("MEASURED ")?.1)).unwrap_or_else(|| panic!("{output}"));
    let said: Value = serde_json::from_str(line).unwrap();
    assert!(entries(folder.path()).is_empty(), "a download that failed left {:?}", entries(folder.path()));
    let status = DefenderStatus::ALL.into_iter().find(|status| said["code"].as_i64() == Some(*status as i64)).unwrap();
    Measured {
        status,
        message: said["message"].as_str().unwrap().to_owned(),
        result: said["length"].as_u64().zip(said["digest"].as_u64()),
        peak_mib: said["peak_mib"].as_f64(),
        before_mib: said["before_mib"].as_f64(),
        took,
    }
}

/// A `kB` field of this process's `/proc/self/status`, in MiB (Linux only).
fn memory_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: f64 = line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}

/// The other side of `measured`: the call, through the C ABI. The JSON it returns is measured,
/// not parsed: a parse here would count against the library.
#[test]
#[ignore = "run by `measured`, in a process of its own"]
fn measured_call() {
    let request: Value = serde_json::from_str(&std::env::var("DEFENDER_MEASURED_CALL").unwrap()).unwrap();
    let text = |name: &str| request[name].as_str().unwrap().to_owned();
    let simulator_url = text("base_url");
    let client = Client::new();
    for (key, value) in [
        ("base_url", simulator_url.as_str()),
        ("authority_url", simulator_url.as_str()),
        ("tenant_id", defender_simulator::DEFAULT_TENANT_ID),
        ("client_id", defender_simulator::DEFAULT_CLIENT_ID),
        ("client_secret", defender_simulator::DEFAULT_CLIENT_SECRET),
        ("rate_limit", "off"),
    ] {
        client.set(key, Some(value)).unwrap();
    }
    for pair in request["options"].as_array().unwrap() {
        client.set(pair[0].as_str().unwrap(), pair[1].as_str()).unwrap();
    }
    client.sign_in().unwrap();
    let before_mib = memory_mib("VmRSS:");
    let action_id = CString::new(text("action_id")).unwrap();
    let folder = CString::new(text("folder")).unwrap();
    let mut json: *mut c_char = std::ptr::null_mut();
    let status = unsafe {
        match text("call").as_str() {
            "machine_action" => defender_get_machine_action(client.raw(), action_id.as_ptr(), &mut json),
            "list_machines" => defender_list_machines(client.raw(), std::ptr::null(), 0, &mut json),
            "download" => defender_download_package(
                client.raw(),
                action_id.as_ptr(),
                folder.as_ptr(),
                None,
                std::ptr::null_mut(),
                &mut json,
            ),
            other => panic!("no call {other}"),
        }
    };
    let message = last_error();
    let mut said = json!({ "code": status as i32, "message": message, "before_mib": before_mib });
    if status == DefenderStatus::Ok {
        let result = unsafe { CStr::from_ptr(json) }.to_str().unwrap();
        said["length"] = json!(result.len());
        said["digest"] = json!(digest(result));
        unsafe { defender_string_free(json) };
    }
    said["peak_mib"] = json!(memory_mib("VmHWM:"));
    println!("MEASURED {said}");
}

/// The memory a call may add to its process, in MiB, when reading an answer of `answer_mib`:
/// its text a few times over (the body, the caller's copy, the C string), never a tree of it.
fn lean(answer_mib: f64) -> f64 {
    8.0 + 4.0 * answer_mib
}

#[test]
fn an_action_of_a_million_tiny_values_is_read_without_a_tree_and_returned_as_it_came() {
    let simulator = simulator();
    let action_id = create_action(&simulator, json!({}));
    // Just under the 1 MiB an answer about one entity may be: a tree of it took 105 MiB.
    let head = format!(r#"{{"id":"{action_id}","status":"Succeeded","#);
    let body = tiny_values(&head, 1024 * 1024 - 64, "}");
    fault(&simulator, "machine_action", 0, json!({ "kind": "answer", "status": 200, "body": body }));
    let call = measured(&simulator, "machine_action", &action_id, &[], Duration::from_secs(60));
    assert_eq!(call.status, DefenderStatus::Ok, "{call:?}");
    assert_eq!(call.result, Some((body.len() as u64, digest(&body))), "the service's text, byte for byte");
    if let Some(added) = call.added_mib() {
        assert!(added < lean(1.0), "the call added {added:.1} MiB: {call:?}");
    }

    // Past the entity cap: refused before it is read.
    let larger = tiny_values(&head, 4 * 1024 * 1024 - 64, "}");
    simulator.clear_faults();
    fault(&simulator, "machine_action", 0, json!({ "kind": "answer", "status": 200, "body": larger }));
    let failure = client_for(&simulator).machine_action(&action_id).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Protocol, "{failure}");
    assert!(failure.message.contains("larger than the 1048576 bytes expected"), "{failure}");
    assert_eq!(requests_to(&simulator, "machine_action").len(), 2, "a refused answer is not asked for again");
}

#[test]
fn a_page_of_tiny_values_is_read_without_a_tree() {
    let simulator = simulator();
    // One item of just under 4 MiB of tiny values: a tree of the page took 396 MiB.
    let body = tiny_values(r#"{"value":[{"id":"a","#, 4 * 1024 * 1024 - 64, "}]}");
    fault(&simulator, "list_machines", 0, json!({ "kind": "answer", "status": 200, "body": body }));
    let call = measured(&simulator, "list_machines", "", &[], Duration::from_secs(60));
    assert_eq!(call.status, DefenderStatus::Ok, "{call:?}");
    let item = &body[r#"{"value":["#.len()..body.len() - "]}".len()];
    let array = format!("[{item}]");
    assert_eq!(call.result, Some((array.len() as u64, digest(&array))), "the item as it came, in an array");
    if let Some(added) = call.added_mib() {
        assert!(added < lean(4.0), "the call added {added:.1} MiB: {call:?}");
    }
}

#[test]
fn a_page_with_more_items_than_top_asked_for_is_protocol_at_once() {
    let simulator = simulator();
    // A million items a page, each with a next link: 2 GiB in 8 s, and no end.
    fault(&simulator, "list_machines", 0, json!({ "kind": "page", "items": 1_000_000 }));
    let call = measured(&simulator, "list_machines", "", &[], Duration::from_secs(60));
    assert_eq!(call.status, DefenderStatus::Protocol, "{call:?}");
    assert!(call.message.contains("the page holds more than the 10000 machines asked for ($top)"), "{call:?}");
    assert_eq!(requests_to(&simulator, "list_machines").len(), 1);
    assert!(call.took < Duration::from_secs(20), "{call:?}");
    if let Some(added) = call.added_mib() {
        // The page is 3 MB of `{},`.
        assert!(added < lean(3.0), "the call added {added:.1} MiB: {call:?}");
    }

    simulator.clear_faults();
    fault(&simulator, "list_machines", 0, json!({ "kind": "page", "items": 3 }));
    let failure = client_for(&simulator).machines(None, 2).unwrap_err();
    assert!(failure.message.contains("more than the 2 machines asked for ($top)"), "{failure}");
}

#[test]
fn a_list_that_never_ends_stops_at_its_page_item_and_time_limits_saying_which() {
    let simulator = simulator();
    let client = client_for(&simulator);
    fault(&simulator, "list_machines", 0, json!({ "kind": "page", "items": 1 }));
    // Every page one item and a new link: this ran until cancelled (402 MiB at 40 s).
    let (failure, took) = within(Duration::from_secs(120), move || client.machines(None, 0).unwrap_err());
    assert_eq!(failure.status, DefenderStatus::Protocol, "{failure}");
    assert!(
        failure.message.contains("more than 1000 pages (the option list_max_pages; 1000 machines so far)"),
        "{failure}"
    );
    assert_eq!(requests_to(&simulator, "list_machines").len(), 1000);
    println!("a thousand pages of one item: {took:?}");

    simulator.clear_faults();
    simulator.clear_requests();
    fault(&simulator, "list_machines", 0, json!({ "kind": "page", "items": 10 }));
    let client = client_for(&simulator);
    client.set("list_max_items", Some("25")).unwrap();
    let failure = client.machines(None, 0).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Protocol, "{failure}");
    assert!(failure.message.contains("more than 25 machines (the option list_max_items)"), "{failure}");
    assert!(failure.message.contains("pass max_items"), "{failure}");
    assert_eq!(requests_to(&simulator, "list_machines").len(), 3);
    assert_eq!(client.machines(None, 25).unwrap().len(), 25, "the caller's max_items takes the first ones");

    simulator.clear_faults();
    fault(&simulator, "list_machines", 0, json!({ "kind": "page", "items": 1 }));
    client.set("list_max_items", None).unwrap();
    client.set("list_max_pages", Some("4000000000")).unwrap();
    client.set("list_timeout_ms", Some("1000")).unwrap();
    let (failure, took) = within(Duration::from_secs(30), move || client.machines(None, 0).unwrap_err());
    assert_eq!(failure.status, DefenderStatus::Timeout, "{failure}");
    assert!(
        failure.message.contains("not done after 1.0 s (") && failure.message.contains("list_timeout_ms"),
        "{failure}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn a_list_hands_back_each_item_as_the_service_sent_it() {
    let simulator = simulator();
    let page = r#"{"value":[ {"b" : 1, "a":"\u00e9"} ,{"id":"x","lastSeen":null} ]}"#;
    fault(&simulator, "list_actions", 1, json!({ "kind": "answer", "status": 200, "body": page }));
    let client = client_for(&simulator);
    let mut json: *mut c_char = std::ptr::null_mut();
    let status = unsafe { defender_list_machine_actions(client.raw(), std::ptr::null(), 0, &mut json) };
    assert_eq!(status, DefenderStatus::Ok, "{}", last_error());
    let text = unsafe { CStr::from_ptr(json) }.to_str().unwrap().to_owned();
    unsafe { defender_string_free(json) };
    assert_eq!(text, r#"[{"b" : 1, "a":"\u00e9"},{"id":"x","lastSeen":null}]"#);
}

#[test]
fn a_trickling_download_ends_as_a_stall_that_makes_no_progress() {
    let simulator = simulator();
    let action_id = create_action(&simulator, json!({}));
    // One byte every half second: this ran until cancelled.
    fault(&simulator, "download", 0, json!({ "kind": "slow_body", "bytes_per_sec": 2 }));
    let client = client_for(&simulator);
    for (key, value) in [("min_speed_bytes", "100"), ("min_speed_window_ms", "500"), ("clock_scale", "1000")] {
        client.set(key, Some(value)).unwrap();
    }
    capture_log_lines(&client);
    let folder = tempfile::tempdir().unwrap();
    let destination = folder.path().to_owned();
    let (failure, took) = within(Duration::from_secs(60), move || {
        let failure = client.download(&action_id, &destination, None).unwrap_err();
        (failure, take_log_lines())
    });
    let (failure, lines) = failure;
    assert_eq!(failure.status, DefenderStatus::Timeout, "{failure}");
    assert!(
        failure.message.contains("fewer than the 100 the options min_speed_bytes and min_speed_window_ms ask for"),
        "{failure}"
    );
    assert!(failure.message.contains("5 retries in a row without progress"), "{failure}");
    assert_eq!(requests_to(&simulator, "download").len(), 6, "retried as a stall: {lines:?}");
    assert!(took < Duration::from_secs(10), "six windows of half a second: {took:?}");
    assert!(entries(folder.path()).is_empty());
}

#[test]
fn a_steady_download_at_the_minimum_speed_is_not_cut_and_the_deadline_ends_any() {
    let simulator = simulator_with(json!({ "rate_limit": false, "package_size": 65536 }));
    let action_id = create_action(&simulator, json!({}));
    fault(&simulator, "download", 1, json!({ "kind": "slow_body", "bytes_per_sec": 40_000 }));
    let client = client_for(&simulator);
    client.set("min_speed_bytes", Some("10000")).unwrap();
    client.set("min_speed_window_ms", Some("500")).unwrap();
    let folder = tempfile::tempdir().unwrap();
    client.download(&action_id, folder.path(), None).expect("20,000 bytes every half second, twice the minimum");
    assert_eq!(requests_to(&simulator, "download").len(), 1);

    fault(&simulator, "download", 0, json!({ "kind": "slow_body", "bytes_per_sec": 20_000 }));
    client.set("min_speed_bytes", None).unwrap();
    client.set("overwrite", Some("true")).unwrap();
    client.set("download_timeout_ms", Some("1000")).unwrap();
    let destination = folder.path().to_owned();
    let (failure, took) = within(Duration::from_secs(30), move || client.download(&action_id, &destination, None));
    let failure = failure.unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Timeout, "{failure}");
    assert!(failure.message.contains("not done within 1000 ms (the option download_timeout_ms)"), "{failure}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(entries(folder.path()).len(), 1, "only the first download's file");
}

#[test]
fn a_length_beyond_the_free_space_is_io_before_any_byte_is_written() {
    let simulator = simulator();
    let action_id = create_action(&simulator, json!({}));
    let folder = tempfile::tempdir().unwrap();
    let free = fs4::available_space(folder.path()).unwrap();
    let length = free + (1 << 30);
    if length > 1 << 40 {
        println!("skipped: {free} bytes free, more than a package may announce");
        return;
    }
    // Announced, and a body that never comes: before, it was written until the disk was full.
    let headers = json!({ "content-length": length.to_string(), "accept-ranges": "bytes", "etag": "\"x\"" });
    fault(&simulator, "download", 0, json!({ "kind": "answer", "status": 200, "headers": headers, "body": "PK" }));
    let client = client_for(&simulator);
    let destination = folder.path().to_owned();
    let (failure, took) = within(Duration::from_secs(30), move || client.download(&action_id, &destination, None));
    let failure = failure.unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Io, "{failure}");
    assert!(failure.message.contains(&format!("the package is {length} bytes, but the file system of")), "{failure}");
    assert!(failure.message.contains("bytes free"), "{failure}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(requests_to(&simulator, "download").len(), 1, "not retried");
    assert!(entries(folder.path()).is_empty());
}

#[test]
fn a_body_without_a_length_stops_at_its_ceiling() {
    let simulator = simulator_with(json!({ "rate_limit": false, "package_size": 1 << 20 }));
    let action_id = create_action(&simulator, json!({}));
    fault(&simulator, "download", 0, json!({ "kind": "no_length" }));
    let client = client_for(&simulator);
    let folder = tempfile::tempdir().unwrap();
    let saved =
        client.download(&action_id, folder.path(), None).expect("a package without a length, under the ceiling");
    assert_eq!(saved["bytes"], 1 << 20);

    client.set("overwrite", Some("true")).unwrap();
    client.set("max_bytes_without_length", Some("65536")).unwrap();
    std::fs::remove_file(saved["path"].as_str().unwrap()).unwrap();
    let failure = client.download(&action_id, folder.path(), None).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Protocol, "{failure}");
    assert!(failure.message.contains("announced no length and sent more than 65536 bytes"), "{failure}");
    assert!(entries(folder.path()).is_empty());
}

/// The head of an answer that no HTTP library writes: `raw` bytes.
fn raw(head: &str, body: &str) -> Value {
    json!({ "kind": "raw", "response": format!("HTTP/1.1 200 OK\r\n{head}\r\n\r\n{body}") })
}

#[test]
fn answers_that_are_not_valid_http_are_protocol_at_once() {
    let chunked_zip = "4\r\nPK\u{3}\u{4}\r\n0\r\n\r\n";
    let cases = [
        ("an invalid Content-Length", raw("Content-Length: 12abc", "PK\u{3}\u{4}"), "not valid HTTP"),
        (
            "Content-Length and Transfer-Encoding",
            raw("Content-Length: 4\r\nTransfer-Encoding: chunked", chunked_zip),
            "both Content-Length and Transfer-Encoding",
        ),
        (
            "a 512 KiB header",
            json!({ "kind": "answer", "status": 200, "headers": { "x-padding": "a".repeat(512 * 1024) }, "body": "PK" }),
            "not valid HTTP (message head is too large)",
        ),
    ];
    for (what, answer, said) in cases {
        let simulator = simulator();
        let action_id = create_action(&simulator, json!({}));
        let client = client_for(&simulator);

        fault(&simulator, "download", 0, answer.clone());
        let folder = tempfile::tempdir().unwrap();
        let destination = folder.path().to_owned();
        let download = client.try_clone().unwrap();
        let (failure, took) =
            within(Duration::from_secs(30), move || download.download(&action_id, &destination, None));
        let failure = failure.unwrap_err();
        assert_eq!(failure.status, DefenderStatus::Protocol, "{what}: {failure}");
        assert!(failure.message.contains(said), "{what}: {failure}");
        assert_eq!(requests_to(&simulator, "download").len(), 1, "{what} was retried");
        assert!(took < Duration::from_secs(5), "{what}: {took:?}");
        assert!(entries(folder.path()).is_empty());

        let action_id = create_action(&simulator, json!({}));
        fault(&simulator, "machine_action", 0, answer);
        let failure = client.machine_action(&action_id).unwrap_err();
        assert_eq!(failure.status, DefenderStatus::Protocol, "{what}: {failure}");
        assert_eq!(requests_to(&simulator, "machine_action").len(), 1, "{what} was asked for again");
    }
}

#[test]
fn a_link_http_cannot_request_is_protocol_before_any_request() {
    let simulator = simulator();
    let action_id = create_action(&simulator, json!({}));
    let body = json!({ "value": "https://a{b.example/p.zip?token=secret-sas" }).to_string();
    fault(&simulator, "get_package_uri", 0, json!({ "kind": "answer", "status": 200, "body": body }));
    let client = client_for(&simulator);
    let folder = tempfile::tempdir().unwrap();
    let destination = folder.path().to_owned();
    // Before: NETWORK "the connection failed", after 5 retries and 12 s.
    let (failure, took) = within(Duration::from_secs(30), move || client.download(&action_id, &destination, None));
    let failure = failure.unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Protocol, "{failure}");
    assert!(failure.message.contains("not a URL that HTTP can request"), "{failure}");
    assert!(!failure.message.contains("secret-sas"), "{failure}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(requests_to(&simulator, "get_package_uri").len(), 1);
}

/// A ZIP directory bomb: one entry listed again and again in the central directory. The check
/// that loaded the whole directory took hundreds of MiB for it and said OK; the streaming check
/// keeps a note per entry of the archive, refuses the listing of more entries than it has at once, and the download
/// holds what any download holds.
#[test]
fn a_zip_directory_bomb_is_refused_with_memory_flat() {
    let simulator = simulator();
    for (entries, comment_bytes) in [(400_000, 0), (1_500, 65_000)] {
        let layout = json!({ "kind": "directory_bomb", "entries": entries, "comment_bytes": comment_bytes });
        let action_id = create_action(&simulator, json!({ "package_layout": layout }));
        let call = measured(&simulator, "download", &action_id, &[], Duration::from_secs(120));
        assert_eq!(call.status, DefenderStatus::Integrity, "{call:?}");
        assert!(call.message.contains("lists more entries than the 1 the archive holds"), "{call:?}");
        if let Some(added) = call.added_mib() {
            assert!(
                added < 24.0,
                "{entries} entries, comments of {comment_bytes}: the call added {added:.1} MiB: {call:?}"
            );
        }
    }
}
