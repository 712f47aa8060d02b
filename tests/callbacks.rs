//! What the PowerShell module (and any caller that runs one command per call) needs of the C ABI,
//! end to end against the simulator: a clone of a client for one call's own settings, sharing
//! its sign-in; client assertions signed by the caller's callback on the caller's thread, renewed
//! in the middle of a long call; and the phases of each item (waiting for the collection, queued
//! for the rate limit, downloading, verifying, retrying), reported on the caller's thread.

#[path = "../simulator/tests/fixtures/certificate.rs"]
mod certificate;
mod common;
#[path = "common/sign_in.rs"]
mod sign_in;

use std::ffi::{CStr, c_char, c_void};
use std::sync::Mutex;
use std::thread::ThreadId;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use certificate::test_certificate;
use common::*;
use defender::{DefenderPhase, DefenderPhaseEvent, DefenderStatus};
use defender_simulator::DEFAULT_TENANT_ID;
use serde_json::json;
use sign_in::*;

/// A phase event as a test keeps it: owned, with the thread it arrived on.
#[derive(Clone, Debug)]
struct Seen {
    phase: DefenderPhase,
    index: usize,
    elapsed_ms: u64,
    remaining_ms: u64,
    bytes_done: u64,
    bytes_total: u64,
    bytes_per_second: u64,
    queue_position: u32,
    attempt: u32,
    detail: String,
    thread: ThreadId,
}

unsafe extern "C" fn record_phase(user_data: *mut c_void, event: *const DefenderPhaseEvent) -> i32 {
    let seen = unsafe { &*user_data.cast::<Mutex<Vec<Seen>>>() };
    let event = unsafe { &*event };
    seen.lock().unwrap().push(Seen {
        phase: event.phase,
        index: event.index,
        elapsed_ms: event.elapsed_ms,
        remaining_ms: event.remaining_ms,
        bytes_done: event.bytes_done,
        bytes_total: event.bytes_total,
        bytes_per_second: event.bytes_per_second,
        queue_position: event.queue_position,
        attempt: event.attempt,
        detail: unsafe { CStr::from_ptr(event.detail) }.to_str().unwrap().to_owned(),
        thread: std::thread::current().id(),
    });
    0
}

/// Registers `record_phase` on `client`, filling `seen`.
fn record_phases(client: &Client, seen: &Mutex<Vec<Seen>>) {
    unsafe { client.set_phase_callback(Some(record_phase), std::ptr::from_ref(seen).cast_mut().cast()) };
}

fn phases(seen: &Mutex<Vec<Seen>>) -> Vec<Seen> {
    seen.lock().unwrap().clone()
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

// ---- a clone for one call's settings ----

#[test]
fn a_clone_has_its_own_options_and_shares_the_sign_in() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 20_000 }));
    let folder = tempfile::tempdir().unwrap();
    let client = client_for(&simulator);
    client.download(&id, folder.path(), None).unwrap();

    // The clone may replace the file; the client it came from still may not.
    let clone = client.try_clone().unwrap();
    clone.set("overwrite", Some("true")).unwrap();
    clone.download(&id, folder.path(), None).unwrap();
    assert_eq!(client.download(&id, folder.path(), None).unwrap_err().status, DefenderStatus::Exists);

    // One sign-in for both: the clone used the token the client had.
    assert_eq!(requests_to(&simulator, "token").len(), 1);

    // A clone of a clone, freed before and after the client it came from, keeps working.
    let grandchild = clone.try_clone().unwrap();
    drop(clone);
    grandchild.package_uri(&id).unwrap();
    drop(client);
    grandchild.package_uri(&id).unwrap();
    assert_eq!(requests_to(&simulator, "token").len(), 1);
}

#[test]
fn cancelling_a_clone_cancels_its_calls_only() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "schedule": { "pending_secs": 3600, "in_progress_secs": 0 } }));
    let client = client_for(&simulator);
    let clone = client.try_clone().unwrap();
    clone.set("wait_timeout_ms", Some("60000")).unwrap();
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| clone.package_uri(&id));
        std::thread::sleep(Duration::from_millis(300));
        client.cancel();
        std::thread::sleep(Duration::from_millis(300));
        assert!(!waiting.is_finished(), "cancelling the client cancelled its clone's call");
        let started = Instant::now();
        clone.cancel();
        assert_eq!(waiting.join().unwrap().unwrap_err().status, DefenderStatus::Cancelled);
        assert!(started.elapsed() < Duration::from_secs(2));
    });
    // The client it came from never waits: its own options have no wait_timeout_ms.
    assert_eq!(client.package_uri(&id).unwrap_err().status, DefenderStatus::NotReady);
}

#[test]
fn clone_refuses_null_arguments() {
    let mut out = std::ptr::null_mut();
    let status = unsafe { defender::defender_client_clone(std::ptr::null(), &mut out) };
    assert_eq!(status, DefenderStatus::InvalidArgument);
    assert!(out.is_null());
    let client = Client::new();
    let status = unsafe { defender::defender_client_clone(client.raw(), std::ptr::null_mut()) };
    assert_eq!(status, DefenderStatus::InvalidArgument);
    assert!(last_error().contains("clone_out"), "{}", last_error());
}

// ---- client assertions signed by the caller ----

/// What the assertion callback of a test saw and does.
struct Signer {
    calls: Mutex<Vec<(String, String, ThreadId)>>,
    /// Non-zero: refuse to sign, returning this.
    refuse_with: i32,
}

unsafe extern "C" fn sign_assertion(
    user_data: *mut c_void,
    audience: *const c_char,
    client_id: *const c_char,
    assertion_out: *mut c_char,
    capacity: usize,
) -> i32 {
    let signer = unsafe { &*user_data.cast::<Signer>() };
    let audience = unsafe { CStr::from_ptr(audience) }.to_str().unwrap().to_owned();
    let client_id = unsafe { CStr::from_ptr(client_id) }.to_str().unwrap().to_owned();
    let calls = {
        let mut calls = signer.calls.lock().unwrap();
        calls.push((audience.clone(), client_id.clone(), std::thread::current().id()));
        calls.len()
    };
    if signer.refuse_with != 0 {
        return signer.refuse_with;
    }
    // Signed with the test certificate, as a certificate store would sign it; each jti once.
    let header = json!({ "alg": "RS256", "typ": "JWT", "x5t": test_certificate().x5t });
    let claims = json!({
        "aud": audience, "iss": client_id, "sub": client_id, "jti": format!("assertion-{calls}"),
        "nbf": unix_now() - 5, "exp": unix_now() + 60,
    });
    let assertion = test_certificate().sign_jwt(&header, &claims);
    assert!(assertion.len() < capacity);
    unsafe {
        std::ptr::copy_nonoverlapping(assertion.as_ptr(), assertion_out.cast::<u8>(), assertion.len());
        assertion_out.add(assertion.len()).write(0);
    }
    0
}

/// A client that signs in as `CERTIFICATE_APP_ID` with assertions from `signer`.
fn assertion_client(simulator: &defender_simulator::Simulator, signer: &Signer) -> Client {
    let client = client_without_sign_in(simulator);
    set_all(&client, &[("tenant_id", DEFAULT_TENANT_ID), ("client_id", CERTIFICATE_APP_ID)]);
    unsafe { client.set_assertion_callback(Some(sign_assertion), std::ptr::from_ref(signer).cast_mut().cast()) };
    client
}

#[test]
fn the_assertion_callback_signs_on_the_calling_thread_for_the_token_endpoint() {
    let simulator = simulator();
    register_certificate_app(&simulator);
    let id = create_action(&simulator, json!({}));
    let signer = Signer { calls: Mutex::default(), refuse_with: 0 };
    let client = assertion_client(&simulator, &signer);
    // Signed in through a clone that registers the callback again (as a binding's clone does):
    // the token is the client's too.
    let clone = client.try_clone().unwrap();
    unsafe { clone.set_assertion_callback(Some(sign_assertion), std::ptr::from_ref(&signer).cast_mut().cast()) };
    clone.sign_in().unwrap();
    client.package_uri(&id).unwrap();

    let calls = signer.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "one assertion for one token: {calls:?}");
    assert_eq!(calls[0].0, token_url(&simulator));
    assert_eq!(calls[0].1, CERTIFICATE_APP_ID);
    assert_eq!(calls[0].2, std::thread::current().id());
    let sign_ins = requests_to(&simulator, "token");
    assert_eq!(sign_ins.len(), 1);
    assert_eq!(sign_ins[0]["credential"], "assertion");
    assert_no_sign_in_secret(&take_log_lines().into_iter().map(|(_, line)| line).collect::<Vec<_>>().join("\n"), &[]);
}

#[test]
fn a_long_wait_renews_its_token_with_a_fresh_assertion_instead_of_failing() {
    // Tokens live 2 s; the collection takes about 5 s: the token is renewed twice during the wait.
    let simulator = simulator_with(json!({ "rate_limit": false, "token_lifetime_secs": 2 }));
    register_certificate_app(&simulator);
    let id = create_action(&simulator, json!({ "schedule": { "pending_secs": 2, "in_progress_secs": 3 } }));
    let signer = Signer { calls: Mutex::default(), refuse_with: 0 };
    let client = assertion_client(&simulator, &signer);
    client.set("clock_scale", Some("10")).unwrap();
    client.set("wait_timeout_ms", Some("600000")).unwrap();
    let folder = tempfile::tempdir().unwrap();

    client.download(&id, folder.path(), None).unwrap();
    let calls = signer.calls.lock().unwrap().clone();
    assert!(calls.len() >= 3, "the token was renewed with fresh assertions during the wait: {calls:?}");
    assert!(calls.iter().all(|call| call.2 == std::thread::current().id()), "{calls:?}");
    assert_eq!(refused_api_calls(&simulator), 0, "no call was refused for an expired token");
}

#[test]
fn an_assertion_callback_that_cannot_sign_fails_the_call_unauthorized() {
    let simulator = simulator();
    register_certificate_app(&simulator);
    let signer = Signer { calls: Mutex::default(), refuse_with: 7 };
    let client = assertion_client(&simulator, &signer);
    let failure = client.sign_in().unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Unauthorized, "{failure}");
    assert!(failure.message.contains("assertion callback") && failure.message.contains('7'), "{failure}");
    assert!(requests_to(&simulator, "token").is_empty(), "nothing was sent without an assertion");

    // It is one way to sign in: with a secret as well, the call names both.
    client.set("client_secret", Some("s3cret-value")).unwrap();
    let failure = client.sign_in().unwrap_err();
    assert_eq!(failure.status, DefenderStatus::InvalidArgument);
    assert!(
        failure.message.contains("an assertion callback") && failure.message.contains("client_secret"),
        "{failure}"
    );
    assert_no_sign_in_secret(&failure.message, &["s3cret-value"]);

    // Removed, the secret alone signs in.
    unsafe { client.set_assertion_callback(None, std::ptr::null_mut()) };
    client.set("client_secret", None).unwrap();
    assert_eq!(client.sign_in().unwrap_err().status, DefenderStatus::InvalidArgument, "no sign-in is left");
}

// ---- phases ----

#[test]
fn a_download_reports_waiting_for_the_collection_then_downloading_then_verifying() {
    let simulator = simulator();
    let id = create_action(
        &simulator,
        json!({ "package_size": 2_000_000, "schedule": { "pending_secs": 2, "in_progress_secs": 1 } }),
    );
    add_fault(
        &simulator,
        json!({ "endpoint": "download", "action_id": id, "fault": { "kind": "slow_body", "bytes_per_sec": 4_000_000 } }),
    );
    let client = client_for(&simulator);
    client.set("clock_scale", Some("10")).unwrap();
    client.set("wait_timeout_ms", Some("600000")).unwrap();
    let seen = Mutex::new(Vec::new());
    record_phases(&client, &seen);
    let folder = tempfile::tempdir().unwrap();
    client.download(&id, folder.path(), None).unwrap();

    let seen = phases(&seen);
    assert!(seen.iter().all(|event| event.thread == std::thread::current().id() && event.index == 0), "{seen:?}");
    let order: Vec<DefenderPhase> = seen.iter().map(|event| event.phase).fold(Vec::new(), |mut order, phase| {
        if order.last() != Some(&phase) {
            order.push(phase);
        }
        order
    });
    assert_eq!(
        order,
        [DefenderPhase::WaitingForCollection, DefenderPhase::Downloading, DefenderPhase::Verifying],
        "{seen:?}"
    );
    let waits: Vec<&Seen> = seen.iter().filter(|e| e.phase == DefenderPhase::WaitingForCollection).collect();
    assert!(waits.iter().all(|e| ["Pending", "InProgress"].contains(&e.detail.as_str()) && e.remaining_ms > 0));
    assert!(waits.windows(2).all(|w| w[0].elapsed_ms <= w[1].elapsed_ms), "{waits:?}");
    let downloading: Vec<&Seen> = seen.iter().filter(|e| e.phase == DefenderPhase::Downloading).collect();
    let last = downloading.last().unwrap();
    assert_eq!((last.bytes_done, last.bytes_total), (2_000_000, 2_000_000));
    assert!(downloading.iter().any(|e| e.bytes_per_second > 0), "{downloading:?}");
    let verifying = seen.last().unwrap();
    assert_eq!((verifying.phase, verifying.bytes_total), (DefenderPhase::Verifying, 2_000_000));
}

#[test]
fn a_fault_reports_retrying_with_its_reason_and_pause() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 50_000 }));
    add_fault(
        &simulator,
        json!({ "endpoint": "get_package_uri", "times": 1, "fault": { "kind": "status", "status": 503 } }),
    );
    add_fault(
        &simulator,
        json!({ "endpoint": "download", "action_id": id, "times": 1, "fault": { "kind": "status", "status": 500 } }),
    );
    let client = client_for(&simulator);
    client.set("clock_scale", Some("20")).unwrap();
    let seen = Mutex::new(Vec::new());
    record_phases(&client, &seen);
    let folder = tempfile::tempdir().unwrap();
    client.download(&id, folder.path(), None).unwrap();

    let retries: Vec<Seen> = phases(&seen).into_iter().filter(|e| e.phase == DefenderPhase::Retrying).collect();
    assert_eq!(retries.len(), 2, "{retries:?}");
    assert!(retries[0].detail.contains("503") && retries[0].detail.contains("link"), "{retries:?}");
    assert!(retries[1].detail.contains("500"), "{retries:?}");
    assert!(retries.iter().all(|e| e.attempt >= 1 && e.remaining_ms > 0), "{retries:?}");
    for retry in &retries {
        assert_no_secret(&retry.detail, &[]);
    }
}

#[test]
fn a_batch_reports_queued_for_the_rate_limit_with_each_items_place() {
    // getPackageUri allows 2 a minute: of four packages, two get their link at once and the
    // others queue, the third first. The clock runs 60 times faster.
    let simulator = fast_simulator(60.0);
    let ids: Vec<String> = (0..4).map(|_| create_action(&simulator, json!({ "package_size": 10_000 }))).collect();
    let client = limited_client_for(&simulator);
    let seen = Mutex::new(Vec::new());
    record_phases(&client, &seen);
    let folder = tempfile::tempdir().unwrap();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let results = client.download_many(&refs, folder.path(), BatchCallbacks::default()).unwrap();
    assert!(results.iter().all(|result| result["code"] == 0), "{results:?}");

    let seen = phases(&seen);
    assert!(seen.iter().all(|event| event.thread == std::thread::current().id()));
    let queued: Vec<&Seen> = seen.iter().filter(|e| e.phase == DefenderPhase::QueuedForRateLimit).collect();
    let queued_items: std::collections::BTreeSet<usize> = queued.iter().map(|e| e.index).collect();
    assert!(queued_items.len() >= 2, "two items waited for the limit: {queued:?}");
    assert!(queued.iter().all(|e| e.queue_position >= 1), "{queued:?}");
    // The one queued behind another knows its place and about how long (the limit's pace); the
    // head of the queue may be waiting for calls in flight to be answered (0: unknown).
    assert!(queued.iter().any(|e| e.queue_position >= 2 && e.remaining_ms > 0), "{queued:?}");
    // Each item reported its own download, to the end.
    for index in 0..ids.len() {
        let last = seen.iter().rev().find(|e| e.index == index && e.phase == DefenderPhase::Downloading);
        assert_eq!(last.map(|e| e.bytes_done), Some(10_000), "item {index}: {seen:?}");
    }
}

#[test]
fn a_phase_callback_that_returns_non_zero_cancels_the_call() {
    unsafe extern "C" fn stop(_: *mut c_void, _: *const DefenderPhaseEvent) -> i32 {
        1
    }
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "schedule": { "pending_secs": 3600, "in_progress_secs": 0 } }));
    let client = client_for(&simulator);
    client.set("wait_timeout_ms", Some("600000")).unwrap();
    unsafe { client.set_phase_callback(Some(stop), std::ptr::null_mut()) };
    let started = Instant::now();
    assert_eq!(client.package_uri(&id).unwrap_err().status, DefenderStatus::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}
