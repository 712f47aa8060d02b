//! The core of the C ABI, end to end: getting a link and downloading a package from the
//! simulator over loopback HTTP, through the exported functions.

mod common;

use std::ffi::{CStr, CString, c_char, c_void};
use std::path::Path;
use std::ptr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use defender::*;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Reads every entry of the ZIP at `path` (the zip crate checks each CRC-32 as it reads).
fn assert_valid_package(path: &Path) {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).expect("a ZIP");
    assert!(archive.len() >= 10, "an investigation package has its folders, this has {}", archive.len());
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        std::io::copy(&mut entry, &mut std::io::sink()).unwrap_or_else(|e| panic!("entry {i}: {e}"));
    }
}

#[test]
fn download_writes_the_package_and_reports_its_size_and_digest() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 300_000 }));
    let folder = tempfile::tempdir().unwrap();
    let client = client_for(&simulator);

    let result = client.download(&id, folder.path(), None).unwrap();

    let path = folder.path().join(format!("{id}.zip"));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 300_000);
    assert_eq!(result["path"], path.to_str().unwrap());
    assert_eq!(result["bytes"], 300_000);
    assert_eq!(result["action_id"], id.as_str());
    assert_eq!(result["sha256"], hex::encode(Sha256::digest(&bytes)));
    assert!(result["elapsed_ms"].is_u64());
    assert_valid_package(&path);
    assert_eq!(entries(folder.path()), vec![format!("{id}.zip")]);
}

#[test]
fn the_link_goes_to_the_download_host_and_literal_quotes_are_removed() {
    let simulator = simulator();
    let client = client_for(&simulator);
    for quoted in [false, true] {
        let id = create_action(&simulator, json!({ "quoted_link": quoted }));
        let link = client.package_uri(&id).unwrap();
        assert!(link.starts_with(&format!("{}/safedownload/", simulator.download_url())), "{link}");
        assert!(!link.contains('"'), "{link}");
    }
}

#[test]
fn a_missing_package_says_whether_it_is_not_ready_unknown_or_never_coming() {
    let simulator = simulator();
    let client = client_for(&simulator);
    let pending = create_action(&simulator, json!({ "schedule": { "pending_secs": 3600, "in_progress_secs": 0 } }));
    let running = create_action(&simulator, json!({ "schedule": { "pending_secs": 0, "in_progress_secs": 3600 } }));
    assert_eq!(client.package_uri(&pending).unwrap_err().status, DefenderStatus::NotReady);
    assert_eq!(client.package_uri(&running).unwrap_err().status, DefenderStatus::NotReady);
    let unknown = client.package_uri("00000000-0000-4000-8000-00000000dead").unwrap_err();
    assert_eq!(unknown.status, DefenderStatus::NotFound);
    assert!(unknown.message.contains("00000000-0000-4000-8000-00000000dead"), "{}", unknown.message);
    for outcome in ["Failed", "TimeOut", "Cancelled"] {
        let id = create_action(&simulator, json!({ "outcome": outcome }));
        let failure = client.package_uri(&id).unwrap_err();
        assert_eq!(failure.status, DefenderStatus::ActionFailed, "{outcome}");
        assert!(failure.message.contains(outcome), "{}", failure.message);
    }
}

#[test]
fn an_id_is_sent_as_one_percent_encoded_path_segment() {
    let simulator = simulator();
    let client = client_for(&simulator);
    let failure = client.package_uri("../machines/x?y#z").unwrap_err();
    assert_eq!(failure.status, DefenderStatus::NotFound);
    let paths: Vec<String> = simulator
        .requests()
        .into_iter()
        .map(|r| serde_json::to_value(r).unwrap()["path"].as_str().unwrap().to_owned())
        .collect();
    assert!(paths.iter().any(|p| p == "/api/machineactions/..%2Fmachines%2Fx%3Fy%23z/getPackageUri"), "{paths:?}");
}

#[test]
fn wrong_credentials_are_unauthorized_with_the_service_text_and_never_the_secret() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({}));
    let client = client_for(&simulator);
    client.set("client_secret", Some("not-the-real-secret")).unwrap();
    let failure = client.package_uri(&id).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Unauthorized);
    assert!(failure.message.contains("AADSTS"), "{}", failure.message);
    assert_no_secret(&failure.message, &["not-the-real-secret"]);

    let client = client_for(&simulator);
    client.set("client_secret", None).unwrap();
    client.set("access_token", Some("made-up-token")).unwrap();
    let failure = client.package_uri(&id).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Unauthorized);
    assert!(failure.message.contains("401"), "{}", failure.message);
    assert_no_secret(&failure.message, &["made-up-token"]);
}

#[test]
fn an_app_without_permission_is_forbidden_with_the_correlation_id() {
    let simulator = simulator();
    simulator
        .register_app(
            serde_json::from_value(json!({
                "tenant_id": defender_simulator::DEFAULT_TENANT_ID,
                "client_id": "no-permission-app",
                "client_secret": "no-permission-secret",
                "forbidden": true
            }))
            .unwrap(),
        )
        .unwrap();
    let id = create_action(&simulator, json!({}));
    let client = client_for(&simulator);
    client.set("client_id", Some("no-permission-app")).unwrap();
    client.set("client_secret", Some("no-permission-secret")).unwrap();
    let failure = client.package_uri(&id).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Forbidden);
    assert!(failure.message.contains("correlation id"), "{}", failure.message);
    assert!(failure.message.contains("Machine.CollectForensics"), "{}", failure.message);
    assert_no_secret(&failure.message, &["no-permission-secret"]);
}

#[test]
fn an_existing_file_is_kept_and_no_link_is_spent_unless_overwrite_is_true() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 50_000 }));
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("case.zip");
    std::fs::write(&path, "keep me").unwrap();
    let client = client_for(&simulator);

    let failure = client.download(&id, &path, None).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Exists);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    assert!(requests_to(&simulator, "get_package_uri").is_empty(), "a link was requested for nothing");

    client.set("overwrite", Some("true")).unwrap();
    client.download(&id, &path, None).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 50_000);
    assert_eq!(entries(folder.path()), vec!["case.zip"]);
}

#[test]
fn a_destination_in_a_missing_folder_is_an_io_error_before_any_request() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({}));
    let folder = tempfile::tempdir().unwrap();
    let client = client_for(&simulator);
    let failure = client.download(&id, &folder.path().join("no").join("such.zip"), None).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Io);
    assert!(simulator.requests().is_empty());
}

#[test]
fn progress_runs_on_the_calling_thread_and_ends_at_the_total() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 4_000_000 }));
    let folder = tempfile::tempdir().unwrap();
    let client = client_for(&simulator);
    let caller = std::thread::current().id();
    let mut seen = Vec::new();
    let mut progress = |done: u64, total: u64| {
        assert_eq!(std::thread::current().id(), caller, "a callback on another thread");
        seen.push((done, total));
        false
    };
    client.download(&id, folder.path(), Some(&mut progress)).unwrap();
    assert!(seen.len() >= 2, "{seen:?}");
    assert_eq!(seen.last(), Some(&(4_000_000, 4_000_000)));
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "progress went backwards: {seen:?}");
}

#[test]
fn a_progress_callback_that_returns_non_zero_cancels_and_leaves_no_file() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 4_000_000 }));
    add_fault(
        &simulator,
        json!({ "endpoint": "download", "action_id": id, "fault": { "kind": "slow_body", "bytes_per_sec": 1_000_000 } }),
    );
    let folder = tempfile::tempdir().unwrap();
    let client = client_for(&simulator);
    let mut calls = 0;
    let mut progress = |done: u64, _total: u64| {
        calls += 1;
        done > 0
    };
    let started = Instant::now();
    let failure = client.download(&id, folder.path(), Some(&mut progress)).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(3), "cancel took {:?}", started.elapsed());
    assert!(entries(folder.path()).is_empty(), "{:?}", entries(folder.path()));
    let calls_at_cancel = calls;
    assert!(calls_at_cancel >= 1);

    // The client is still usable.
    let id = create_action(&simulator, json!({ "package_size": 10_000 }));
    client.download(&id, folder.path(), None).unwrap();
}

#[test]
fn defender_client_cancel_from_another_thread_stops_a_download_promptly() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 8_000_000 }));
    add_fault(
        &simulator,
        json!({ "endpoint": "download", "action_id": id, "fault": { "kind": "slow_body", "bytes_per_sec": 500_000 } }),
    );
    let folder = tempfile::tempdir().unwrap();
    let client = Arc::new(client_for(&simulator));
    let canceller = {
        let client = Arc::clone(&client);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(700));
            client.cancel();
            Instant::now()
        })
    };
    let failure = client.download(&id, folder.path(), None).unwrap_err();
    let returned = Instant::now();
    let cancelled = canceller.join().unwrap();
    assert_eq!(failure.status, DefenderStatus::Cancelled);
    assert!(returned.duration_since(cancelled) < Duration::from_millis(500), "cancel was slow");
    assert!(entries(folder.path()).is_empty(), "{:?}", entries(folder.path()));
}

#[test]
fn a_body_shorter_than_announced_is_an_integrity_error_and_leaves_no_file() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 200_000 }));
    add_fault(
        &simulator,
        json!({ "endpoint": "download", "action_id": id, "times": 0, "fault": { "kind": "short_body", "bytes": 1000 } }),
    );
    let folder = tempfile::tempdir().unwrap();
    let failure = client_for(&simulator).download(&id, folder.path(), None).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Integrity);
    assert!(entries(folder.path()).is_empty(), "{:?}", entries(folder.path()));
    assert_no_secret(&failure.message, &[]);
}

#[test]
fn no_authorization_header_reaches_the_download_host() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 10_000 }));
    let folder = tempfile::tempdir().unwrap();
    client_for(&simulator).download(&id, folder.path(), None).unwrap();
    let downloads = requests_to(&simulator, "download");
    assert_eq!(downloads.len(), 1);
    let headers = downloads[0]["headers"].as_array().unwrap();
    assert!(!headers.contains(&json!("authorization")), "{headers:?}");
    let api_calls = requests_to(&simulator, "get_package_uri");
    assert!(api_calls[0]["headers"].as_array().unwrap().contains(&json!("authorization")));
}

#[test]
fn null_and_non_utf8_arguments_are_invalid_and_out_parameters_stay_untouched() {
    let client = Client::new();
    let bad = c"\xff\xfe".as_ptr();
    let id = CString::new("id").unwrap();
    let sentinel = std::ptr::dangling_mut::<c_char>();
    let mut out = sentinel;
    unsafe {
        assert_eq!(defender_client_new(ptr::null_mut()), DefenderStatus::InvalidArgument);
        assert_eq!(defender_client_set(ptr::null_mut(), id.as_ptr(), id.as_ptr()), DefenderStatus::InvalidArgument);
        assert_eq!(defender_client_set(client.raw(), ptr::null(), id.as_ptr()), DefenderStatus::InvalidArgument);
        assert_eq!(defender_client_set(client.raw(), bad, id.as_ptr()), DefenderStatus::InvalidArgument);
        assert!(last_error().contains("UTF-8"), "{}", last_error());
        assert_eq!(defender_get_package_uri(ptr::null(), id.as_ptr(), &mut out), DefenderStatus::InvalidArgument);
        assert_eq!(defender_get_package_uri(client.raw(), ptr::null(), &mut out), DefenderStatus::InvalidArgument);
        assert_eq!(defender_get_package_uri(client.raw(), bad, &mut out), DefenderStatus::InvalidArgument);
        assert_eq!(
            defender_get_package_uri(client.raw(), id.as_ptr(), ptr::null_mut()),
            DefenderStatus::InvalidArgument
        );
        assert_eq!(
            defender_download_package(client.raw(), id.as_ptr(), bad, None, ptr::null_mut(), &mut out),
            DefenderStatus::InvalidArgument
        );
        assert_eq!(
            defender_download_package(client.raw(), ptr::null(), id.as_ptr(), None, ptr::null_mut(), &mut out),
            DefenderStatus::InvalidArgument
        );
        assert_eq!(defender_client_cancel(ptr::null()), DefenderStatus::InvalidArgument);
        defender_string_free(ptr::null_mut());
        defender_client_free(ptr::null_mut());
    }
    assert_eq!(out, sentinel, "an out-parameter was written on failure");
}

#[test]
fn no_sign_in_configured_is_invalid_argument_with_a_hint() {
    let client = Client::new();
    client.set("base_url", Some("http://127.0.0.1:9")).unwrap();
    let failure = client.package_uri("x").unwrap_err();
    assert_eq!(failure.status, DefenderStatus::InvalidArgument);
    assert!(failure.message.contains("access_token"), "{}", failure.message);
}

#[test]
fn an_unknown_option_names_the_key_and_the_known_ones() {
    let client = Client::new();
    let failure = client.set("base_uri", Some("https://x.example")).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::UnknownOption);
    assert!(failure.message.contains("'base_uri'") && failure.message.contains("base_url"), "{}", failure.message);
    assert_eq!(client.set("timeout_ms", Some("soon")).unwrap_err().status, DefenderStatus::InvalidArgument);
    client.set("timeout_ms", None).unwrap();
}

#[test]
fn the_option_keys_can_be_listed_each_with_a_line_and_each_is_accepted() {
    let text = |ptr: *const c_char| (!ptr.is_null()).then(|| unsafe { CStr::from_ptr(ptr) }.to_str().unwrap());
    let keys: Vec<&str> = (0..).map_while(|i| text(defender_option_name(i))).collect();
    assert!(keys.len() >= 22 && keys.contains(&"max_concurrent_downloads"), "{keys:?}");
    assert!(text(defender_option_doc(keys.len())).is_none() && text(defender_option_name(usize::MAX)).is_none());
    let client = Client::new();
    for (i, key) in keys.iter().enumerate() {
        let doc = text(defender_option_doc(i)).unwrap();
        assert!(!doc.is_empty() && !doc.contains('\n'), "{key}: {doc:?}");
        assert_eq!(defender_option_name(i), defender_option_name(i), "{key}: one static string");
        // A known key: a NULL value restores its default, whatever the key.
        client.set(key, None).unwrap_or_else(|failure| panic!("{key}: {failure}"));
    }
    assert!(text(defender_option_doc(1)).unwrap().contains("gcc-high"), "cloud lists the clouds");
}

#[test]
fn a_long_message_is_cut_at_a_character_boundary_and_its_full_length_returned() {
    let client = Client::new();
    let _ = client.set("é-unknown-é", Some("x"));
    let full = last_error();
    let mut small = [0x55u8; 4]; // "'é" is 3 bytes: the cut must not split the é
    let len = unsafe { defender_last_error_message(small.as_mut_ptr().cast(), small.len()) };
    assert_eq!(len, full.len());
    let copied = CStr::from_bytes_until_nul(&small).unwrap().to_str().expect("a cut message stays UTF-8");
    assert!(full.starts_with(copied));
}

#[test]
fn sixteen_threads_share_one_client_and_one_token() {
    let simulator = simulator();
    let client = Arc::new(client_for(&simulator));
    let folder = Arc::new(tempfile::tempdir().unwrap());
    let ids: Vec<String> = (0..16).map(|_| create_action(&simulator, json!({ "package_size": 100_000 }))).collect();
    let threads: Vec<_> = ids
        .iter()
        .cloned()
        .map(|id| {
            let (client, folder) = (Arc::clone(&client), Arc::clone(&folder));
            std::thread::spawn(move || client.download(&id, folder.path(), None))
        })
        .collect();
    for thread in threads {
        thread.join().unwrap().unwrap();
    }
    assert_eq!(entries(folder.path()).len(), 16);
    for id in &ids {
        assert_valid_package(&folder.path().join(format!("{id}.zip")));
    }
    assert_eq!(requests_to(&simulator, "token").len(), 1, "one token for one client");
}

#[test]
fn calling_the_library_from_inside_a_callback_is_refused_not_a_crash() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 100_000 }));
    let folder = tempfile::tempdir().unwrap();
    let client = client_for(&simulator);
    let mut nested = None;
    let raw = client.raw();
    let mut progress = |_: u64, _: u64| {
        if nested.is_none() {
            let id = CString::new("x").unwrap();
            let mut uri = ptr::null_mut();
            let status = unsafe { defender_get_package_uri(raw, id.as_ptr(), &mut uri) };
            nested = Some((status, last_error()));
        }
        false
    };
    client.download(&id, folder.path(), Some(&mut progress)).unwrap();
    let (status, message) = nested.expect("the callback ran");
    assert_eq!(status, DefenderStatus::InvalidArgument);
    assert!(message.contains("callback"), "{message}");
}

#[test]
fn log_lines_arrive_on_the_calling_thread_without_secrets() {
    unsafe extern "C" fn collect(user_data: *mut c_void, level: DefenderLogLevel, message: *const c_char) {
        let lines = unsafe { &mut *user_data.cast::<Vec<(std::thread::ThreadId, DefenderLogLevel, String)>>() };
        let text = unsafe { CStr::from_ptr(message) }.to_str().unwrap().to_owned();
        lines.push((std::thread::current().id(), level, text));
    }
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 10_000 }));
    let folder = tempfile::tempdir().unwrap();
    let client = client_for(&simulator);
    let mut lines: Vec<(std::thread::ThreadId, DefenderLogLevel, String)> = Vec::new();
    let status =
        unsafe { defender_client_set_log_callback(client.raw(), Some(collect), (&mut lines as *mut Vec<_>).cast()) };
    assert_eq!(status, DefenderStatus::Ok);
    client.download(&id, folder.path(), None).unwrap();
    unsafe { defender_client_set_log_callback(client.raw(), None, ptr::null_mut()) };

    assert!(
        lines.iter().any(|(_, level, line)| *level == DefenderLogLevel::Info && line.contains("saved")),
        "{lines:?}"
    );
    for (thread, _, line) in &lines {
        assert_eq!(*thread, std::thread::current().id());
        assert_no_secret(line, &[]);
    }
}

#[test]
fn the_version_is_the_crate_version() {
    let version = unsafe { CStr::from_ptr(defender_version()) }.to_str().unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
}
