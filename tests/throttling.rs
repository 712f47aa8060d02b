//! Rate limits and 429s, end to end through the C ABI against a simulator that enforces the
//! documented limits: the library keeps within them so that the service never has to throttle
//! it, waits no longer than they force, and rides out the 429s it gets anyway.
//!
//! The simulator's clock and the client's run 600 times faster (a minute lasts 100 ms) unless a
//! test needs real minutes, so each test takes a few seconds at most.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use defender::{DefenderLogLevel, DefenderStatus};
use defender_simulator::{DEFAULT_TENANT_ID, MIN_PACKAGE_SIZE};
use serde_json::json;
use sha2::{Digest, Sha256};

const CLOCK_SCALE: f64 = 600.0;
/// The documented limits of getPackageUri.
const LINKS_PER_MINUTE: usize = 2;
const LINKS_PER_HOUR: usize = 120;

/// The least time `calls` getPackageUri calls can take without exceeding the limits: the first
/// minute's two go at once, and every minute after lets two more through.
fn minimum_time_for(calls: usize) -> Duration {
    assert!(calls <= LINKS_PER_HOUR, "the hour's limit would count too");
    let minutes = (calls - 1) / LINKS_PER_MINUTE;
    Duration::from_secs(60 * minutes as u64).div_f64(CLOCK_SCALE)
}

fn no_429s(simulator: &defender_simulator::Simulator) -> bool {
    simulator.requests().iter().all(|request| request.status != Some(429))
}

#[test]
fn fifty_packages_arrive_intact_with_no_429_in_the_least_time_the_limits_allow() {
    const PACKAGES: usize = 50;
    const THREADS: usize = 10;
    let simulator = fast_simulator(CLOCK_SCALE);
    let ids: Vec<String> =
        (0..PACKAGES).map(|_| create_action(&simulator, json!({ "package_size": MIN_PACKAGE_SIZE }))).collect();
    let folder = tempfile::tempdir().unwrap();
    // Two clients of the same app: they share the process's limiter.
    let clients = [limited_client_for(&simulator), limited_client_for(&simulator)];
    let to_do = Mutex::new(ids.clone());

    let started = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (client, to_do, folder) = (&clients[thread % clients.len()], &to_do, folder.path());
            scope.spawn(move || {
                while let Some(id) = to_do.lock().unwrap().pop() {
                    client.download(&id, folder, None).unwrap_or_else(|failure| panic!("{id}: {failure}"));
                }
            });
        }
    });
    let took = started.elapsed();

    for id in &ids {
        let downloaded = std::fs::read(folder.path().join(format!("{id}.zip"))).unwrap();
        let expected = simulator.package(id).unwrap();
        assert_eq!(Sha256::digest(&downloaded), Sha256::digest(&expected), "package {id} differs");
    }
    assert_eq!(requests_to(&simulator, "get_package_uri").len(), PACKAGES, "one link per package");
    assert!(no_429s(&simulator), "the service had to throttle the library");
    let minimum = minimum_time_for(PACKAGES);
    println!("{PACKAGES} packages in {took:?}; the limits allow no less than {minimum:?}");
    assert!(took >= minimum, "faster than the limits allow: {took:?} < {minimum:?}");
    // Each minute adds one round trip to the minimum; the margin is for a busy machine.
    assert!(took <= minimum * 2 + Duration::from_secs(1), "{took:?} is far above the minimum {minimum:?}");
}

#[test]
fn clients_of_one_app_share_its_limits_across_the_process() {
    let simulator = fast_simulator(CLOCK_SCALE);
    let ids: Vec<String> = (0..6).map(|_| create_action(&simulator, json!({}))).collect();
    let (one, two) = (limited_client_for(&simulator), limited_client_for(&simulator));

    let started = Instant::now();
    std::thread::scope(|scope| {
        for (client, ids) in [(&one, &ids[..3]), (&two, &ids[3..])] {
            scope.spawn(move || ids.iter().for_each(|id| drop(client.package_uri(id).unwrap())));
        }
    });
    let took = started.elapsed();

    // Each client alone would send three in the first minute; together they keep to two a minute.
    assert!(no_429s(&simulator), "{:?}", statuses_at(&simulator, "get_package_uri"));
    assert!(took >= minimum_time_for(6), "{took:?}");
}

#[test]
fn another_app_is_not_held_by_this_one_and_a_wait_past_the_time_limit_ends_at_once() {
    // Real minutes: the simulator and the client run at real time.
    let simulator = simulator_with(json!({ "rate_limit": true }));
    let other_app = "00000000-0000-4000-8000-0000000000c2";
    simulator
        .register_app(
            serde_json::from_value(
                json!({ "tenant_id": DEFAULT_TENANT_ID, "client_id": other_app, "client_secret": "other-secret" }),
            )
            .unwrap(),
        )
        .unwrap();
    let id = create_action(&simulator, json!({}));
    let app = limited_client_for(&simulator);
    app.package_uri(&id).unwrap();
    app.package_uri(&id).unwrap();

    // The minute's two are spent: a third call would wait about a minute, past its time limit.
    app.set("wait_timeout_ms", Some("2000")).unwrap();
    let started = Instant::now();
    let failure = app.package_uri(&id).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Timeout, "{failure}");
    assert!(started.elapsed() < Duration::from_secs(1), "waited in vain for {:?}", started.elapsed());
    assert!(failure.message.contains("rate limit of getPackageUri"), "{failure}");

    let other = limited_client_for(&simulator);
    other.set("client_id", Some(other_app)).unwrap();
    other.set("client_secret", Some("other-secret")).unwrap();
    let started = Instant::now();
    other.package_uri(&id).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "held by another app's limits");
    assert_eq!(requests_to(&simulator, "get_package_uri").len(), 3);
    assert!(no_429s(&simulator));
}

#[test]
fn cancel_during_a_rate_limit_wait_returns_cancelled_promptly() {
    let simulator = simulator_with(json!({ "rate_limit": true }));
    let id = create_action(&simulator, json!({}));
    let client = limited_client_for(&simulator);
    client.package_uri(&id).unwrap();
    client.package_uri(&id).unwrap();

    let (failure, lines, cancelled_at) = std::thread::scope(|scope| {
        let waiting = scope.spawn(|| {
            capture_log_lines(&client);
            let failure = client.package_uri(&id).unwrap_err();
            (failure, Instant::now(), take_log_lines())
        });
        std::thread::sleep(Duration::from_millis(300));
        let cancelled_at = Instant::now();
        client.cancel();
        let (failure, returned_at, lines) = waiting.join().unwrap();
        (failure, lines, returned_at - cancelled_at)
    });

    assert_eq!(failure.status, DefenderStatus::Cancelled, "{failure}");
    assert!(cancelled_at < Duration::from_secs(1), "returned {cancelled_at:?} after the cancel");
    assert!(
        lines.iter().any(|(_, line)| line.contains("rate limit of getPackageUri") && line.contains("waiting")),
        "the wait was not logged: {lines:?}"
    );
    assert_eq!(requests_to(&simulator, "get_package_uri").len(), 2, "the cancelled call was sent");
    client.machine_action(&id).unwrap(); // later calls run normally
}

#[test]
fn a_429_storm_is_ridden_out_within_its_budget_and_rate_limited_after_it() {
    let simulator = fast_simulator(CLOCK_SCALE);
    let client = limited_client_for(&simulator);
    capture_log_lines(&client);
    let storm = |times: u32| {
        let rule = json!({ "endpoint": "get_package_uri", "times": times,
                           "fault": { "kind": "rate_limit", "retry_after_secs": 30 } });
        add_fault(&simulator, rule);
    };

    storm(3);
    let id = create_action(&simulator, json!({}));
    let started = Instant::now();
    client.package_uri(&id).unwrap();
    let took = started.elapsed();
    assert_eq!(statuses_at(&simulator, "get_package_uri"), [Some(429), Some(429), Some(429), Some(200)]);
    let asked = Duration::from_secs(3 * 30).div_f64(CLOCK_SCALE);
    assert!(took >= asked, "Retry-After was not honoured: {took:?} < {asked:?}");
    let lines = take_log_lines();
    let throttled: Vec<&String> = lines
        .iter()
        .filter(|(level, line)| *level == DefenderLogLevel::Warn && line.contains("429"))
        .map(|(_, l)| l)
        .collect();
    assert_eq!(throttled.len(), 3, "{lines:?}");
    lines.iter().for_each(|(_, line)| assert_no_secret(line, &[]));

    simulator.clear_faults();
    simulator.clear_requests();
    storm(0);
    let failure = client.package_uri(&id).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::RateLimited, "{failure}");
    assert!(failure.message.contains("still throttled after 6 attempts"), "{failure}");
    assert_eq!(statuses_at(&simulator, "get_package_uri"), [Some(429); 6]);
    assert_no_secret(&failure.message, &[]);
}

#[test]
fn a_retry_after_given_as_an_http_date_is_honoured() {
    let simulator = fast_simulator(CLOCK_SCALE);
    let client = limited_client_for(&simulator);
    let id = create_action(&simulator, json!({}));
    add_fault(
        &simulator,
        json!({ "endpoint": "machine_action", "fault": { "kind": "rate_limit", "retry_after_secs": 120, "http_date": true } }),
    );
    let started = Instant::now();
    client.machine_action(&id).unwrap();
    let took = started.elapsed();
    // Two minutes of the service's time; a 429 without Retry-After would wait a few milliseconds.
    let asked = Duration::from_secs(120).div_f64(CLOCK_SCALE);
    assert!(took >= asked.mul_f64(0.9), "{took:?} < {asked:?}");
    assert_eq!(statuses_at(&simulator, "machine_action"), [Some(429), Some(200)]);
}

#[test]
fn with_the_limiter_off_a_429_is_still_honoured_and_retried() {
    let simulator = fast_simulator(CLOCK_SCALE);
    let client = limited_client_for(&simulator);
    client.set("rate_limit", Some("off")).unwrap();
    let id = create_action(&simulator, json!({}));
    let links: Vec<String> = (0..3).map(|_| client.package_uri(&id).unwrap()).collect();
    assert_eq!(links.len(), 3);
    // Unlimited, the third call hits the service's limit and waits out its Retry-After.
    assert_eq!(statuses_at(&simulator, "get_package_uri"), [Some(200), Some(200), Some(429), Some(200)]);
}

#[test]
fn a_429_holds_every_call_of_its_kind_until_its_retry_after() {
    let simulator = fast_simulator(CLOCK_SCALE);
    let client = limited_client_for(&simulator);
    let id = create_action(&simulator, json!({}));
    client.machine_action(&id).unwrap(); // signed in
    simulator.clear_requests();
    // Ten minutes of the service's time: one real second.
    add_fault(
        &simulator,
        json!({ "endpoint": "machine_action", "fault": { "kind": "rate_limit", "retry_after_secs": 600 } }),
    );

    std::thread::scope(|scope| {
        scope.spawn(|| client.machine_action(&id).unwrap());
        while statuses_at(&simulator, "machine_action").is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        }
        // The 429 is logged as it is sent; give the first caller time to read it (a loaded
        // machine may take a while) but not to wait it out: its pause lasts a real second.
        std::thread::sleep(Duration::from_millis(300));
        // Another caller of the same kind, while the first waits out the Retry-After.
        scope.spawn(|| client.machine_action(&id).unwrap());
    });

    let records = requests_to(&simulator, "machine_action");
    let statuses: Vec<Option<u64>> = records.iter().map(|record| record["status"].as_u64()).collect();
    assert_eq!(statuses, [Some(429), Some(200), Some(200)], "the second caller was throttled too");
    let throttled_at = records[0]["time_ms"].as_u64().unwrap();
    for record in &records[1..] {
        let after = record["time_ms"].as_u64().unwrap() - throttled_at;
        assert!(after >= 600_000, "a call went {after} ms of service time after the 429, before its Retry-After");
    }
}
