//! A hostile or broken server: answers that once hung a caller, leaked a secret or made the
//! library write where it should not. Each case is a fault of the simulator (`answer` and
//! friends), driven through the C ABI; the README's "hostile" section lists them.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::*;
use defender::*;
use serde_json::json;

/// Runs `call` on a thread of its own and returns what it returned, failing the test when it
/// has not returned within `limit`: a call that hangs is the failure these tests look for.
fn returns_within<T: Send + 'static>(limit: Duration, call: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(call());
    });
    receiver.recv_timeout(limit).unwrap_or_else(|_| panic!("the call did not return within {limit:?}"))
}

const PROMPTLY: Duration = Duration::from_secs(30);

/// Every request to `endpoint` is answered with this status, headers and body from now on.
fn answer(simulator: &defender_simulator::Simulator, endpoint: &str, times: u64, answer: serde_json::Value) {
    let mut fault = answer;
    fault["kind"] = json!("answer");
    add_fault(simulator, json!({ "endpoint": endpoint, "times": times, "fault": fault }));
}

#[test]
fn a_token_that_never_expires_neither_panics_nor_hangs_the_call() {
    let simulator = simulator();
    let action_id = create_action(&simulator, json!({}));
    // Not a token the simulator knows: the API refuses it once (401), the library signs in again.
    answer(
        &simulator,
        "token",
        1,
        json!({ "status": 200, "body": r#"{"access_token":"made-up","token_type":"Bearer","expires_in":18446744073709551615}"# }),
    );
    let client = client_for(&simulator);
    let link = returns_within(PROMPTLY, move || client.package_uri(&action_id));
    assert!(link.is_ok(), "{link:?}");
    assert_eq!(requests_to(&simulator, "token").len(), 2, "the made-up token was replaced");
}

#[test]
fn a_retry_after_of_u64_max_ends_the_call_at_once() {
    let simulator = simulator();
    let action_id = create_action(&simulator, json!({}));
    answer(
        &simulator,
        "get_package_uri",
        0,
        json!({ "status": 503, "headers": { "retry-after": "18446744073709551615" }, "body": r#"{"error":{"code":"ServiceUnavailable","message":"later"}}"# }),
    );
    let client = client_for(&simulator);
    let failure = returns_within(PROMPTLY, move || client.package_uri(&action_id)).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Http, "{failure}");
    assert!(failure.message.contains("asks to wait"), "{failure}");
    assert_eq!(requests_to(&simulator, "get_package_uri").len(), 1, "no retry for a wait nobody can make");
}

#[test]
fn a_download_host_asking_to_wait_for_ever_ends_the_download_at_once() {
    let simulator = simulator();
    let action_id = create_action(&simulator, json!({}));
    answer(&simulator, "download", 0, json!({ "status": 503, "headers": { "retry-after": "18446744073709551615" } }));
    let client = client_for(&simulator);
    let folder = tempfile::tempdir().unwrap();
    let destination = folder.path().to_owned();
    let failure = returns_within(PROMPTLY, move || client.download(&action_id, &destination, None)).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Http, "{failure}");
    assert!(failure.message.contains("asks to wait"), "{failure}");
    assert!(entries(folder.path()).is_empty());
}

#[test]
fn a_content_length_no_package_can_have_is_protocol() {
    let simulator = simulator();
    let action_id = create_action(&simulator, json!({}));
    answer(
        &simulator,
        "download",
        0,
        json!({ "status": 200, "headers": { "content-length": "1099511627777", "accept-ranges": "bytes", "etag": "\"x\"", "content-type": "application/zip" }, "body": "PK" }),
    );
    let client = client_for(&simulator);
    let folder = tempfile::tempdir().unwrap();
    let destination = folder.path().to_owned();
    let failure = returns_within(PROMPTLY, move || client.download(&action_id, &destination, None)).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Protocol, "{failure}");
    assert!(failure.message.contains("1099511627777 bytes"), "{failure}");
    assert!(entries(folder.path()).is_empty());
}

#[test]
fn the_longest_wait_timeout_neither_panics_nor_hangs() {
    let simulator = simulator();
    let action_id = create_action(&simulator, json!({}));
    let client = client_for(&simulator);
    client.set("wait_timeout_ms", Some("18446744073709551615")).unwrap();
    // A slow clock makes the limit longer still: beyond what a Duration or an Instant holds.
    client.set("clock_scale", Some("0.000001")).unwrap();
    let link = returns_within(PROMPTLY, move || client.package_uri(&action_id));
    assert!(link.is_ok(), "{link:?}");
}
