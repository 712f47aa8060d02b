//! Devices, action lists and cancel through the C ABI against the simulator: name lookups
//! (quotes, duplicates, host names), filters passed through, every page followed (only to the
//! API host), caps, and a thousand devices listed within the "other calls" rate limit.

mod common;

use std::time::{Duration, Instant};

use common::*;
use defender::{DefenderLogLevel, DefenderStatus};
use defender_simulator::{MachineRegistration, Simulator};
use serde_json::{Value, json};

fn register(simulator: &Simulator, machine: Value) {
    simulator.configure_machine(serde_json::from_value(machine).expect("a valid machine")).unwrap();
}

fn ids(entities: &[Value]) -> Vec<&str> {
    entities.iter().map(|entity| entity["id"].as_str().unwrap()).collect()
}

fn hex_id(n: usize) -> String {
    format!("{n:040x}")
}

fn fault(simulator: &Simulator, endpoint: &str, fault: Value) {
    add_fault(simulator, json!({ "endpoint": endpoint, "fault": fault }));
}

#[test]
fn a_device_is_found_by_id_or_by_name() {
    let simulator = simulator();
    let client = client_for(&simulator);
    register(
        &simulator,
        json!({"id": hex_id(1), "computer_dns_name": "ws-0001.contoso.test", "machine_tags": ["VIP"]}),
    );
    register(&simulator, json!({"id": "c0ffee", "computer_dns_name": "O'Brien-PC"}));

    let by_id = client.machine(&hex_id(1)).unwrap();
    assert_eq!(by_id["computerDnsName"], "ws-0001.contoso.test");
    assert_eq!(by_id["machineTags"], json!(["VIP"]));
    assert_eq!(client.machine("WS-0001.CONTOSO.TEST").unwrap()["id"], hex_id(1), "names ignore case");
    assert_eq!(client.machine("ws-0001").unwrap()["id"], hex_id(1), "a host name finds its FQDN");
    assert_eq!(client.machine("O'Brien-PC").unwrap()["id"], "c0ffee", "a quote in a name is doubled");

    let missing = client.machine("nobody").unwrap_err();
    assert_eq!(missing.status, DefenderStatus::NotFound);
    assert_eq!(missing.message, "there is no machine named 'nobody'");
    // A name that tries to widen the filter finds nothing rather than every device.
    let crafted = client.machine("x' or healthStatus eq 'Active").unwrap_err();
    assert_eq!(crafted.status, DefenderStatus::NotFound, "{crafted}");

    fault(&simulator, "machine", json!({"kind": "status", "status": 404}));
    let missing = client.machine(&hex_id(2)).unwrap_err();
    assert_eq!(missing.status, DefenderStatus::NotFound);
    assert_eq!(missing.message, format!("there is no machine {}", hex_id(2)));
}

#[test]
fn of_several_devices_with_one_name_the_one_seen_last_wins_and_the_others_are_logged() {
    let simulator = simulator();
    let client = client_for(&simulator);
    capture_log_lines(&client);
    for (n, seen) in [(1, "2024-01-01T00:00:00Z"), (2, "2024-06-01T00:00:00Z"), (3, "2023-06-01T00:00:00Z")] {
        register(&simulator, json!({"id": hex_id(n), "computer_dns_name": "reimaged.contoso.test", "last_seen": seen}));
    }
    let chosen = client.machine("reimaged.contoso.test").unwrap();
    assert_eq!(chosen["id"], hex_id(2));
    let warnings: Vec<String> =
        take_log_lines().into_iter().filter(|(level, _)| *level == DefenderLogLevel::Warn).map(|(_, l)| l).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let warning = &warnings[0];
    assert!(warning.starts_with("3 machines are named 'reimaged.contoso.test'"), "{warning}");
    assert!(warning.contains(&format!("using {}", hex_id(2))), "{warning}");
    assert!(warning.contains(&hex_id(1)) && warning.contains(&hex_id(3)), "{warning}");
}

#[test]
fn lists_pass_the_filter_follow_every_page_and_stop_at_the_cap() {
    let simulator = simulator_with(json!({"rate_limit": false, "page_size": 3}));
    let client = client_for(&simulator);
    for n in 0..10 {
        let tags = if n % 2 == 0 { json!(["Incident4711"]) } else { json!([]) };
        register(&simulator, json!({"id": hex_id(n), "computer_dns_name": format!("pc-{n}"), "machine_tags": tags}));
    }
    let all = client.machines(None, 0).unwrap();
    assert_eq!(ids(&all), (0..10).map(hex_id).collect::<Vec<_>>());
    assert_eq!(requests_to(&simulator, "list_machines").len(), 4, "3 + 3 + 3 + 1");

    let tagged = client.machines(Some("machineTags/any(t: t eq 'Incident4711')"), 0).unwrap();
    assert_eq!(ids(&tagged), [0, 2, 4, 6, 8].map(hex_id));
    simulator.clear_requests();
    let capped = client.machines(None, 4).unwrap();
    assert_eq!(ids(&capped), (0..4).map(hex_id).collect::<Vec<_>>());
    let pages = requests_to(&simulator, "list_machines");
    assert_eq!(pages.len(), 2, "no page after the cap is reached");
    assert!(pages[0]["query"].as_str().unwrap().contains("top=4"), "{}", pages[0]["query"]);

    let refused = client.machines(Some("contains(computerDnsName, 'pc')"), 0).unwrap_err();
    assert_eq!(refused.status, DefenderStatus::Http);
    assert!(
        refused
            .message
            .starts_with("listing the machines that match contains(computerDnsName, 'pc') (page 1): HTTP 400"),
        "{refused}"
    );
    assert!(refused.message.contains("Invalid filter clause"), "{refused}");
    let empty = client.machines(Some(" "), 0).unwrap_err();
    assert_eq!(empty.status, DefenderStatus::InvalidArgument);
}

#[test]
fn next_page_links_are_followed_only_to_the_api_host() {
    let simulator = simulator_with(json!({"rate_limit": false, "page_size": 1}));
    let client = client_for(&simulator);
    for n in 0..2 {
        register(&simulator, json!({"id": hex_id(n)}));
    }
    let elsewhere = "http://127.0.0.2:9";
    simulator.configure(serde_json::from_value(json!({"next_link_base": elsewhere})).unwrap()).unwrap();
    let refused = client.machines(None, 0).unwrap_err();
    assert_eq!(refused.status, DefenderStatus::Protocol);
    assert!(refused.message.contains("leads to http://127.0.0.2, not to the API host"), "{refused}");
    assert_eq!(requests_to(&simulator, "list_machines").len(), 1);
}

#[test]
fn machine_actions_are_listed_with_filters_across_pages() {
    let simulator = simulator_with(json!({"rate_limit": false, "page_size": 2}));
    let client = client_for(&simulator);
    let old = create_action(&simulator, json!({"age_secs": 3 * 86_400}));
    let failed = create_action(&simulator, json!({"outcome": "Failed"}));
    let isolate = create_action(&simulator, json!({"type": "Isolate", "requestor": "o'neil@contoso.test"}));
    let newest = create_action(&simulator, json!({}));

    let all = client.machine_actions(None, 0).unwrap();
    assert_eq!(ids(&all), [&newest, &isolate, &failed, &old].map(String::as_str), "newest first");
    let succeeded =
        client.machine_actions(Some("type eq 'CollectInvestigationPackage' and status eq 'Succeeded'"), 0).unwrap();
    assert_eq!(ids(&succeeded), [&newest, &old].map(String::as_str));
    let by = client.machine_actions(Some("requestor eq 'o''neil@contoso.test'"), 0).unwrap();
    assert_eq!(ids(&by), [isolate.as_str()]);
    assert_eq!(client.machine_actions(None, 1).unwrap().len(), 1);
}

#[test]
fn only_actions_that_have_not_ended_can_be_cancelled() {
    let simulator = simulator();
    let client = client_for(&simulator);
    let running = create_action(&simulator, json!({"schedule": {"pending_secs": 600, "in_progress_secs": 600}}));
    let done = create_action(&simulator, json!({}));

    let cancelled = client.cancel_action(&running, Some("wrong device")).unwrap();
    assert_eq!(cancelled["status"], "Cancelled");
    assert_eq!(cancelled["cancellationComment"], "wrong device");
    let waited = client.wait(&running).unwrap_err();
    assert_eq!(waited.status, DefenderStatus::ActionFailed, "{waited}");

    let refused = client.cancel_action(&done, None).unwrap_err();
    assert_eq!(refused.status, DefenderStatus::Http);
    assert!(refused.message.starts_with(&format!("cancelling machine action {done}: HTTP 400")), "{refused}");
    assert!(refused.message.contains("already in a final state (Succeeded)"), "{refused}");
    let missing = client.cancel_action("no-such-action", None).unwrap_err();
    assert_eq!(missing.status, DefenderStatus::NotFound);

    let running = create_action(&simulator, json!({"schedule": {"pending_secs": 600, "in_progress_secs": 0}}));
    let cancelled = client.cancel_action(&running, None).unwrap();
    assert!(cancelled["cancellationComment"].as_str().unwrap().starts_with("Cancelled with defender "));
}

#[test]
fn bad_arguments_are_refused_before_any_request() {
    let simulator = simulator();
    let client = client_for(&simulator);
    unsafe {
        let mut out = std::ptr::null_mut();
        let status = defender::defender_get_machine(client.raw(), std::ptr::null(), &mut out);
        assert_eq!(status, DefenderStatus::InvalidArgument);
        assert_eq!(last_error(), "machine_id_or_name is NULL");
        let status = defender::defender_list_machines(client.raw(), std::ptr::null(), 0, std::ptr::null_mut());
        assert_eq!(status, DefenderStatus::InvalidArgument);
        assert_eq!(last_error(), "machines_json_out is NULL");
        let status = defender::defender_list_machine_actions(std::ptr::null(), std::ptr::null(), 0, &mut out);
        assert_eq!(status, DefenderStatus::InvalidArgument);
        let status =
            defender::defender_cancel_machine_action(client.raw(), std::ptr::null(), std::ptr::null(), &mut out);
        assert_eq!(status, DefenderStatus::InvalidArgument);
        assert!(out.is_null(), "nothing written on failure");
    }
    assert!(client.machine("").is_err());
    assert!(simulator.requests().is_empty(), "no request was sent");
}

#[test]
fn every_status_has_its_name() {
    for status in DefenderStatus::ALL {
        assert_eq!(status_name(status as i32), status.name());
    }
    assert_eq!(status_name(2), "NOT_READY");
    for unknown in [-1, 17, 98, 100, i32::MIN, i32::MAX] {
        assert_eq!(status_name(unknown), "UNKNOWN");
    }
}

/// A thousand devices, five to a page: 200 list requests, twice what the service allows in a
/// minute. The rate limiter spreads them over the minutes the limit needs, and the service never
/// answers 429. The clocks run 600 times faster (a minute is 100 ms).
#[test]
fn a_thousand_devices_across_pages_stay_within_the_other_calls_limit() {
    const DEVICES: usize = 1000;
    const CLOCK_SCALE: f64 = 600.0;
    let simulator = simulator_with(json!({"clock_scale": CLOCK_SCALE, "rate_limit": true, "page_size": 5}));
    for n in 0..DEVICES {
        simulator
            .configure_machine(MachineRegistration {
                id: hex_id(n),
                computer_dns_name: Some(format!("ws-{n:04}.contoso.test")),
                ..MachineRegistration::default()
            })
            .unwrap();
    }
    let client = limited_client_for(&simulator);
    let started = Instant::now();
    let machines = client.machines(None, 0).unwrap();
    let elapsed = started.elapsed();

    assert_eq!(ids(&machines), (0..DEVICES).map(hex_id).collect::<Vec<_>>());
    let statuses = statuses_at(&simulator, "list_machines");
    assert_eq!(statuses.len(), DEVICES / 5);
    assert!(statuses.iter().all(|status| *status == Some(200)), "{statuses:?}");
    // 200 calls at 100 a minute: the last ones wait for the first minute's window to pass.
    let minute = Duration::from_secs(60).div_f64(CLOCK_SCALE);
    assert!(elapsed >= minute, "{elapsed:?}: the limit was not kept");
    println!("{DEVICES} devices in {} pages in {elapsed:.2?} (a service minute is {minute:?}), no 429", statuses.len());
}
