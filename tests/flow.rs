//! The flow functions (collect, look up, wait) and the retries under them, end to end through
//! the C ABI against the simulator: what is retried and what never is, a collection request that
//! is never sent twice blindly, and waits that end as soon as the outcome is known.
//!
//! The simulator's clock and the client's run 600 times faster, so a collection's minute of
//! Pending and InProgress takes 100 ms.

mod common;

use std::time::{Duration, Instant};

use common::*;
use defender::{DefenderLogLevel, DefenderStatus};
use defender_simulator::Simulator;
use serde_json::{Value, json};

const CLOCK_SCALE: f64 = 600.0;

/// Service time in the test's real time.
fn scaled(service_time: Duration) -> Duration {
    service_time.div_f64(CLOCK_SCALE)
}

fn setup() -> (Simulator, Client) {
    let simulator = fast_simulator(CLOCK_SCALE);
    let client = limited_client_for(&simulator);
    (simulator, client)
}

/// A machine id of 40 hex characters (every such id is a machine the simulator knows), new for
/// each call so that tests do not share collections.
fn new_machine() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{:040x}", 0xfeed_0000_0000 + NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The endpoints of the API requests the simulator saw, in order.
fn api_calls(simulator: &Simulator) -> Vec<String> {
    simulator
        .requests()
        .into_iter()
        .map(|record| serde_json::to_value(record).unwrap())
        .filter_map(|record| record["endpoint"].as_str().map(str::to_owned))
        .filter(|endpoint| endpoint != "token")
        .collect()
}

fn fault(simulator: &Simulator, endpoint: &str, times: u32, fault: Value) {
    add_fault(simulator, json!({ "endpoint": endpoint, "times": times, "fault": fault }));
}

#[test]
fn collect_wait_and_download_is_the_whole_job() {
    let (simulator, client) = setup();
    let machine = new_machine();
    let action = client.collect(&machine, Some("incident 4711")).unwrap();
    assert_eq!(action["status"], "Pending");
    assert_eq!(action["machineId"], machine.as_str());
    assert_eq!(action["requestorComment"], "incident 4711");
    let id = action["id"].as_str().unwrap();

    let started = Instant::now();
    let done = client.wait(id).unwrap();
    assert_eq!(done["status"], "Succeeded");
    assert_eq!(done["id"], id);
    // The collection takes 5 + 30 s of service time; polling starts 5 s apart and grows by half.
    assert!(started.elapsed() < scaled(Duration::from_secs(60)) + Duration::from_secs(1), "{:?}", started.elapsed());

    let folder = tempfile::tempdir().unwrap();
    let result = client.download(id, folder.path(), None).unwrap();
    assert_eq!(std::fs::read(folder.path().join(format!("{id}.zip"))).unwrap(), simulator.package(id).unwrap());
    assert_eq!(result["action_id"], id);
}

#[test]
fn with_wait_timeout_get_uri_and_download_first_wait_for_the_collection() {
    let (simulator, client) = setup();
    client.set("wait_timeout_ms", Some("600000")).unwrap();
    let id = client.collect(&new_machine(), None).unwrap()["id"].as_str().unwrap().to_owned();
    let link = client.package_uri(&id).unwrap();
    assert!(link.starts_with(simulator.download_url()), "{link}");
    let folder = tempfile::tempdir().unwrap();
    client.download(&id, folder.path(), None).unwrap();
    // Not a getPackageUri before the collection had Succeeded: no 404 spent a slot of 2 a minute.
    assert_eq!(statuses_at(&simulator, "get_package_uri"), [Some(200), Some(200)]);
}

#[test]
fn a_running_collection_is_returned_instead_of_an_error() {
    let (simulator, client) = setup();
    let machine = new_machine();
    let first = client.collect(&machine, None).unwrap();
    let second = client.collect(&machine, Some("again")).unwrap();
    assert_eq!(second["id"], first["id"]);
    assert_eq!(statuses_at(&simulator, "collect"), [Some(201), Some(400)]);
}

#[test]
fn a_collection_request_that_failed_after_sending_is_looked_up_not_sent_again() {
    let (simulator, client) = setup();
    let machine = new_machine();
    // The service started the collection, then the answer was lost to a 503.
    let running = create_action(
        &simulator,
        json!({ "machine_id": machine, "schedule": { "pending_secs": 3600, "in_progress_secs": 0 } }),
    );
    fault(&simulator, "collect", 1, json!({ "kind": "status", "status": 503 }));
    capture_log_lines(&client);

    let action = client.collect(&machine, None).unwrap();

    assert_eq!(action["id"], running.as_str());
    assert_eq!(api_calls(&simulator), ["collect", "list_actions"], "the POST was repeated");
    let lines = take_log_lines();
    assert!(lines.iter().any(|(_, line)| line.contains("looking whether the collection started")), "{lines:?}");
}

#[test]
fn a_collection_request_is_sent_again_only_after_a_look_shows_none_running() {
    for lost in [json!({ "kind": "status", "status": 503 }), json!({ "kind": "drop" })] {
        let (simulator, client) = setup();
        fault(&simulator, "collect", 1, lost.clone());
        let action = client.collect(&new_machine(), None).unwrap();
        assert_eq!(action["status"], "Pending", "{lost}");
        assert_eq!(api_calls(&simulator), ["collect", "list_actions", "collect"], "{lost}");
        assert_eq!(requests_to(&simulator, "collect").len(), 2);
    }
}

#[test]
fn a_collection_request_that_keeps_failing_is_reported_and_each_repeat_follows_a_look() {
    let (simulator, client) = setup();
    fault(&simulator, "collect", 0, json!({ "kind": "status", "status": 500 }));
    let failure = client.collect(&new_machine(), None).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Http, "{failure}");
    assert!(failure.message.contains("500"), "{failure}");
    let calls = api_calls(&simulator);
    assert_eq!(calls.iter().filter(|call| *call == "collect").count(), 6, "{calls:?}");
    for (n, pair) in calls.chunks(2).enumerate() {
        assert_eq!(pair, ["collect", "list_actions"], "request pair {n} of {calls:?}");
    }
}

#[test]
fn a_collection_request_is_not_retried_on_a_client_error() {
    let (simulator, client) = setup();
    fault(&simulator, "collect", 1, json!({ "kind": "status", "status": 400, "code": "InvalidRequestBody" }));
    let failure = client.collect(&new_machine(), None).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Http, "{failure}");
    assert!(failure.message.contains("InvalidRequestBody"), "{failure}");
    assert_eq!(api_calls(&simulator), ["collect"]);
}

#[test]
fn a_503_or_a_dropped_connection_on_a_read_is_retried_and_logged() {
    let (simulator, client) = setup();
    let id = create_action(&simulator, json!({}));
    capture_log_lines(&client);

    fault(&simulator, "machine_action", 2, json!({ "kind": "status", "status": 503 }));
    assert_eq!(client.machine_action(&id).unwrap()["id"], id.as_str());
    assert_eq!(statuses_at(&simulator, "machine_action"), [Some(503), Some(503), Some(200)]);

    simulator.clear_requests();
    fault(&simulator, "get_package_uri", 2, json!({ "kind": "drop" }));
    client.package_uri(&id).unwrap();
    assert_eq!(statuses_at(&simulator, "get_package_uri"), [None, None, Some(200)]);

    let lines = take_log_lines();
    let retries: Vec<&String> = lines
        .iter()
        .filter(|(level, line)| *level == DefenderLogLevel::Warn && line.contains("retrying in"))
        .map(|(_, line)| line)
        .collect();
    assert_eq!(retries.len(), 4, "{lines:?}");
    assert!(retries[0].contains("503") && retries[0].contains(&id), "{}", retries[0]);
    lines.iter().for_each(|(_, line)| assert_no_secret(line, &[]));
}

#[test]
fn a_503_with_retry_after_is_retried_after_that_long() {
    let (simulator, client) = setup();
    let id = create_action(&simulator, json!({}));
    fault(&simulator, "machine_action", 1, json!({ "kind": "status", "status": 503, "retry_after_secs": 120 }));
    let started = Instant::now();
    client.machine_action(&id).unwrap();
    // Two minutes of service time, where the back-off alone would wait about one second.
    assert!(started.elapsed() >= scaled(Duration::from_secs(120)), "{:?}", started.elapsed());
    assert_eq!(statuses_at(&simulator, "machine_action"), [Some(503), Some(200)]);
}

#[test]
fn a_read_that_keeps_failing_gives_up_after_its_budget() {
    let (simulator, client) = setup();
    let id = create_action(&simulator, json!({}));
    fault(&simulator, "machine_action", 0, json!({ "kind": "status", "status": 503 }));
    let failure = client.machine_action(&id).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Http, "{failure}");
    assert!(failure.message.contains("503") && failure.message.contains("after 6 attempts"), "{failure}");
    assert_eq!(requests_to(&simulator, "machine_action").len(), 6);

    // The time budget (timeout_ms) ends the retries before the count does.
    simulator.clear_requests();
    client.set("clock_scale", Some("1")).unwrap();
    client.set("timeout_ms", Some("2500")).unwrap();
    let started = Instant::now();
    let failure = client.machine_action(&id).unwrap_err();
    // Bounded by the budget (and one last attempt's answer), not 1 + 2 + 4 + 8 + 16 s of back-off.
    assert!(started.elapsed() < Duration::from_millis(3500), "{:?}", started.elapsed());
    assert!(failure.message.contains("timeout_ms"), "{failure}");
    let attempts = requests_to(&simulator, "machine_action").len();
    assert!((2..6).contains(&attempts), "{attempts} attempts in 2.5 s with back-off from 1 s");
}

#[test]
fn client_errors_are_never_retried() {
    let (simulator, client) = setup();
    let id = create_action(&simulator, json!({}));
    for (status, expected) in [
        (400, DefenderStatus::Http),
        (403, DefenderStatus::Forbidden),
        (404, DefenderStatus::NotFound),
        (409, DefenderStatus::Http),
    ] {
        simulator.clear_requests();
        fault(&simulator, "machine_action", 1, json!({ "kind": "status", "status": status }));
        let failure = client.machine_action(&id).unwrap_err();
        assert_eq!(failure.status, expected, "{status}: {failure}");
        assert_eq!(statuses_at(&simulator, "machine_action"), [Some(status)], "{status} was retried");
    }
}

#[test]
fn a_failed_action_ends_the_wait_at_once_without_spinning() {
    let (simulator, client) = setup();
    for outcome in ["Failed", "TimeOut", "Cancelled"] {
        simulator.clear_requests();
        let id = create_action(&simulator, json!({ "outcome": outcome }));
        let failure = client.wait(&id).unwrap_err();
        assert_eq!(failure.status, DefenderStatus::ActionFailed, "{outcome}: {failure}");
        assert!(failure.message.contains(outcome), "{failure}");
        assert_eq!(requests_to(&simulator, "machine_action").len(), 1, "{outcome}: more than one look");
    }

    // One that fails after a minute of InProgress: polled with back-off, and no poll after the end.
    simulator.clear_requests();
    let id = create_action(
        &simulator,
        json!({ "outcome": "Failed", "schedule": { "pending_secs": 0, "in_progress_secs": 60 } }),
    );
    let started = Instant::now();
    let failure = client.wait(&id).unwrap_err();
    let took = started.elapsed();
    assert_eq!(failure.status, DefenderStatus::ActionFailed, "{failure}");
    let polls = statuses_at(&simulator, "machine_action").len();
    // Polls 5 s apart, growing by half: at 0, 5, 12.5, 23.8, 40.6 and 65.9 s.
    assert!((4..=8).contains(&polls), "{polls} polls for one minute");
    assert!(took < scaled(Duration::from_secs(120)) + Duration::from_secs(1), "{took:?}");
}

#[test]
fn the_wait_tolerates_the_brief_404s_right_after_a_collection_is_created() {
    let (simulator, client) = setup();
    // The 30 s of grace count from the collection's creation: half a second at this clock, so
    // that a busy machine still polls twice within it.
    client.set("clock_scale", Some("60")).unwrap();
    let id = client.collect(&new_machine(), None).unwrap()["id"].as_str().unwrap().to_owned();
    fault(&simulator, "machine_action", 2, json!({ "kind": "not_found" }));
    let action = client.wait(&id).unwrap();
    assert_eq!(action["status"], "Succeeded");
    assert_eq!(statuses_at(&simulator, "machine_action")[..3], [Some(404), Some(404), Some(200)]);

    // A clone (a PowerShell command's own client) tolerates them too: the process created it.
    let id = client.collect(&new_machine(), None).unwrap()["id"].as_str().unwrap().to_owned();
    simulator.clear_requests();
    fault(&simulator, "machine_action", 2, json!({ "kind": "not_found" }));
    assert_eq!(client.try_clone().unwrap().wait(&id).unwrap()["status"], "Succeeded");

    // Unknown for longer than a new action can be: it does not exist.
    let ghost = client.collect(&new_machine(), None).unwrap()["id"].as_str().unwrap().to_owned();
    fault(&simulator, "machine_action", 0, json!({ "kind": "not_found" }));
    let failure = client.wait(&ghost).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::NotFound, "{failure}");
}

#[test]
fn an_action_this_process_did_not_create_is_not_found_at_once_even_while_waiting() {
    let (simulator, client) = setup();
    client.set("wait_timeout_ms", Some("3600000")).unwrap();
    // A mistyped id, and an action the API does not show (yet), both unknown to this process.
    for unknown in [
        "00000000-0000-4000-8000-00000000dead".to_owned(),
        create_action(&simulator, json!({ "visible_after_secs": 3600 })),
    ] {
        simulator.clear_requests();
        let started = Instant::now();
        let failure = client.wait(&unknown).unwrap_err();
        assert_eq!(failure.status, DefenderStatus::NotFound, "{failure}");
        assert_eq!(statuses_at(&simulator, "machine_action"), [Some(404)], "one look, no polling");
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());

        let folder = tempfile::tempdir().unwrap();
        let failure = client.download(&unknown, folder.path(), None).unwrap_err();
        assert_eq!(failure.status, DefenderStatus::NotFound, "{failure}");
    }
}

#[test]
fn the_wait_ends_at_its_time_limit_with_timeout() {
    let (simulator, client) = setup();
    let id = create_action(&simulator, json!({ "schedule": { "pending_secs": 3600, "in_progress_secs": 0 } }));
    client.set("wait_timeout_ms", Some("120000")).unwrap();
    let started = Instant::now();
    let failure = client.wait(&id).unwrap_err();
    let took = started.elapsed();
    assert_eq!(failure.status, DefenderStatus::Timeout, "{failure}");
    assert!(failure.message.contains("Pending") && failure.message.contains("wait_timeout_ms"), "{failure}");
    // Two minutes of service time, the last look at the limit itself.
    let limit = scaled(Duration::from_secs(120));
    assert!(took >= limit && took < limit + Duration::from_secs(1), "{took:?}");
}

#[test]
fn cancel_during_a_wait_returns_cancelled_promptly() {
    let (simulator, client) = setup();
    let id = create_action(&simulator, json!({ "schedule": { "pending_secs": 3600, "in_progress_secs": 0 } }));
    let (failure, after_cancel) = std::thread::scope(|scope| {
        let waiting = scope.spawn(|| (client.wait(&id).unwrap_err(), Instant::now()));
        // A cancel reaches the calls in flight only: on a busy machine the thread may not have
        // started its wait 200 ms later, so cancel once the wait has looked at the action.
        let in_flight = Instant::now();
        while requests_to(&simulator, "machine_action").is_empty() {
            assert!(in_flight.elapsed() < Duration::from_secs(30), "the wait never looked at the action");
            std::thread::sleep(Duration::from_millis(20));
        }
        let cancelled_at = Instant::now();
        client.cancel();
        let (failure, returned_at) = waiting.join().unwrap();
        (failure, returned_at - cancelled_at)
    });
    assert_eq!(failure.status, DefenderStatus::Cancelled, "{failure}");
    assert!(after_cancel < Duration::from_secs(1), "{after_cancel:?}");
}
