//! Devices, action lists with `$filter` and paging, and cancel.

use std::time::{Duration, SystemTime};

use defender_simulator::{
    ActionSpec, ConfigPatch, MachineRegistration, RateLimit, RateLimitsPatch, Schedule, Simulator,
};
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::api::urlencode;
use crate::common::{access_token, api_error_code, api_get, client, json, ready_action, start, start_unlimited};

fn machine(id: &str, name: &str) -> MachineRegistration {
    MachineRegistration {
        id: id.to_owned(),
        computer_dns_name: Some(name.to_owned()),
        ..MachineRegistration::default()
    }
}

fn get(client: &Client, simulator: &Simulator, token: &str, path: &str) -> (StatusCode, Value) {
    let response = api_get(client, simulator, token, path);
    (response.status(), json(response))
}

fn filtered(client: &Client, simulator: &Simulator, token: &str, collection: &str, filter: &str) -> Vec<String> {
    let (status, body) = get(client, simulator, token, &format!("/api/{collection}?$filter={}", urlencode(filter)));
    assert_eq!(status, StatusCode::OK, "{filter}: {body}");
    assert!(body.get("@odata.nextLink").is_none());
    body["value"].as_array().unwrap().iter().map(|entity| entity["id"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn machines_are_listed_looked_up_and_filtered() {
    let simulator = start_unlimited();
    let client = client();
    let token = access_token(&client, &simulator);
    simulator
        .configure_machine(MachineRegistration {
            os_platform: Some("WindowsServer2022".to_owned()),
            health_status: Some("Inactive".to_owned()),
            rbac_group_name: Some("Servers".to_owned()),
            rbac_group_id: Some(2),
            machine_tags: vec!["Incident4711".to_owned(), "VIP".to_owned()],
            last_seen: Some("2024-05-01T10:00:00Z".to_owned()),
            ..machine("a1", "srv-01.contoso.test")
        })
        .unwrap();
    simulator.configure_machine(machine("b2", "O'Brien-PC.contoso.test")).unwrap();
    simulator.configure_machine(machine("c3", "srv-02.contoso.test")).unwrap();

    let (status, one) = get(&client, &simulator, &token, "/api/machines/a1");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["computerDnsName"], "srv-01.contoso.test");
    assert_eq!(one["osPlatform"], "WindowsServer2022");
    assert_eq!(one["healthStatus"], "Inactive");
    assert_eq!(one["rbacGroupName"], "Servers");
    assert_eq!(one["rbacGroupId"], 2);
    assert_eq!(one["machineTags"], json!(["Incident4711", "VIP"]));
    assert_eq!(one["lastSeen"], "2024-05-01T10:00:00.0000000Z");
    let (status, missing) = get(&client, &simulator, &token, "/api/machines/nope");
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(api_error_code(&missing), "ResourceNotFound");

    let (_, all) = get(&client, &simulator, &token, "/api/machines");
    assert_eq!(all["value"].as_array().unwrap().len(), 3);
    assert_eq!(all["@odata.context"], "https://api.security.microsoft.com/api/$metadata#Machines");

    let ids = |filter: &str| filtered(&client, &simulator, &token, "machines", filter);
    assert_eq!(ids("computerDnsName eq 'o''brien-pc.contoso.test'"), ["b2"]);
    assert_eq!(ids("startswith(computerDnsName, 'srv-')"), ["a1", "c3"]);
    assert_eq!(ids("machineTags/any(tag: tag eq 'Incident4711')"), ["a1"]);
    assert_eq!(ids("healthStatus eq 'Active' and not (osPlatform eq 'Windows10')"), ["b2", "c3"]);
    assert_eq!(ids("rbacGroupId eq 2 or computerDnsName eq 'srv-02.contoso.test'"), ["a1", "c3"]);
    assert_eq!(ids("lastSeen le 2024-05-02T00:00:00Z"), ["a1"]);
    // A quote cannot end the literal early: the whole text is one name, which no device has.
    assert!(ids("computerDnsName eq 'x'' or healthStatus eq ''Active'").is_empty());

    for unsupported in ["rbacGroupName eq 'Servers'", "contains(computerDnsName, 'srv')", "healthStatus eq Active"] {
        let (status, body) =
            get(&client, &simulator, &token, &format!("/api/machines?$filter={}", urlencode(unsupported)));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{unsupported}");
        assert_eq!(api_error_code(&body), "BadRequest");
        assert!(body["error"]["message"].as_str().unwrap().starts_with("Invalid filter clause"), "{body}");
    }
}

#[test]
fn lists_page_with_next_links_and_top() {
    let simulator = start(ConfigPatch { rate_limit: Some(false), page_size: Some(3), ..ConfigPatch::default() });
    let client = client();
    let token = access_token(&client, &simulator);
    for index in 0..8 {
        simulator.configure_machine(machine(&format!("m{index}"), &format!("pc-{index}"))).unwrap();
    }
    let mut seen = Vec::new();
    let mut next = Some(format!(
        "{}/api/machines?$filter={}",
        simulator.base_url(),
        urlencode("startswith(computerDnsName, 'pc-')")
    ));
    let mut pages = 0;
    while let Some(url) = next {
        let page: Value = client.get(url).bearer_auth(&token).send().unwrap().json().unwrap();
        pages += 1;
        seen.extend(page["value"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()));
        next = page["@odata.nextLink"].as_str().map(str::to_owned);
        if let Some(link) = &next {
            assert!(link.starts_with(simulator.base_url()), "{link}");
        }
    }
    assert_eq!(pages, 3, "3 + 3 + 2");
    assert_eq!(seen, (0..8).map(|i| format!("m{i}")).collect::<Vec<_>>());

    let (_, page) = get(&client, &simulator, &token, "/api/machines?$top=2");
    assert_eq!(page["value"].as_array().unwrap().len(), 2, "$top below the page size is the page");
    assert!(page["@odata.nextLink"].as_str().unwrap().contains("skip=2"));
    let (_, page) = get(&client, &simulator, &token, "/api/machines?$top=100");
    assert_eq!(page["value"].as_array().unwrap().len(), 3, "the page size caps $top");
    assert_eq!(get(&client, &simulator, &token, "/api/machines?$top=10001").0, StatusCode::BAD_REQUEST);
    assert_eq!(get(&client, &simulator, &token, "/api/machines?$top=x").0, StatusCode::BAD_REQUEST);

    simulator
        .configure(ConfigPatch { next_link_base: Some("http://127.0.0.2:9".to_owned()), ..ConfigPatch::default() })
        .unwrap();
    let (_, page) = get(&client, &simulator, &token, "/api/machines");
    assert!(page["@odata.nextLink"].as_str().unwrap().starts_with("http://127.0.0.2:9/api/machines?"));
}

#[test]
fn actions_filter_on_type_status_machine_requestor_and_time() {
    let simulator = start_unlimited();
    let client = client();
    let token = access_token(&client, &simulator);
    let old = ready_action(&simulator, ActionSpec { age_secs: Some(2 * 86_400), ..ActionSpec::default() });
    let isolate = ready_action(
        &simulator,
        ActionSpec {
            action_type: Some("Isolate".to_owned()),
            requestor: Some("analyst@contoso.test".to_owned()),
            machine_id: Some("m1".to_owned()),
            ..ActionSpec::default()
        },
    );
    let recent = ready_action(&simulator, ActionSpec { age_secs: Some(3600), ..ActionSpec::default() });

    let ids = |filter: &str| filtered(&client, &simulator, &token, "machineactions", filter);
    assert_eq!(ids("type eq 'CollectInvestigationPackage'"), [recent.clone(), old.clone()], "newest first");
    assert_eq!(ids("requestor eq 'analyst@contoso.test'"), [isolate.as_str()]);
    assert_eq!(ids("machineId eq 'm1' and status eq 'Succeeded'"), [isolate.as_str()]);
    let (_, action) = get(&client, &simulator, &token, &format!("/api/machineactions/{old}"));
    let created = action["creationDateTimeUtc"].as_str().unwrap();
    let day_ago = chrono::DateTime::<chrono::Utc>::from(SystemTime::now() - Duration::from_secs(86_400));
    assert!(created < day_ago.to_rfc3339().as_str(), "backdated: {created}");
    let since = day_ago.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    assert_eq!(ids(&format!("creationDateTimeUtc ge {since}")), [isolate.clone(), recent]);
    assert_eq!(ids(&format!("creationDateTimeUtc le {since}")), [old]);
}

#[test]
fn only_actions_that_have_not_ended_can_be_cancelled() {
    let simulator = start_unlimited();
    let client = client();
    let token = access_token(&client, &simulator);
    let running = ready_action(
        &simulator,
        ActionSpec { schedule: Some(Schedule { pending_secs: 600, in_progress_secs: 600 }), ..ActionSpec::default() },
    );
    let done = ready_action(&simulator, ActionSpec::default());
    let cancel = |id: &str, body: Value| {
        let response = client
            .post(format!("{}/api/machineactions/{id}/cancel", simulator.base_url()))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .unwrap();
        (response.status(), json(response))
    };

    let (status, action) = cancel(&running, json!({"Comment": "wrong device"}));
    assert_eq!(status, StatusCode::OK, "{action}");
    assert_eq!(action["status"], "Cancelled");
    assert_eq!(action["cancellationComment"], "wrong device");
    assert_eq!(action["cancellationRequestor"], defender_simulator::DEFAULT_CLIENT_ID);
    let (_, looked_up) = get(&client, &simulator, &token, &format!("/api/machineactions/{running}"));
    assert_eq!(looked_up["status"], "Cancelled", "it stays cancelled");
    let (_, link) = get(&client, &simulator, &token, &format!("/api/machineactions/{running}/getPackageUri"));
    assert_eq!(api_error_code(&link), "ResourceNotFound");

    for id in [&done, &running] {
        let (status, error) = cancel(id, json!({"Comment": "again"}));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        assert!(error["error"]["message"].as_str().unwrap().contains("final state"), "{error}");
    }
    assert_eq!(cancel("nope", json!({"Comment": "x"})).0, StatusCode::NOT_FOUND);
    assert_eq!(cancel(&done, json!({})).0, StatusCode::BAD_REQUEST);
}

#[test]
fn the_new_calls_count_against_the_other_calls_limit() {
    let simulator = start(ConfigPatch {
        rate_limits: Some(RateLimitsPatch {
            other: Some(RateLimit { per_minute: 2, per_hour: 10 }),
            ..RateLimitsPatch::default()
        }),
        ..ConfigPatch::default()
    });
    let client = client();
    let token = access_token(&client, &simulator);
    simulator.configure_machine(machine("a1", "pc")).unwrap();
    assert_eq!(api_get(&client, &simulator, &token, "/api/machines").status(), StatusCode::OK);
    assert_eq!(api_get(&client, &simulator, &token, "/api/machines/a1").status(), StatusCode::OK);
    assert_eq!(api_get(&client, &simulator, &token, "/api/machines").status(), StatusCode::TOO_MANY_REQUESTS);
    let cancel = client
        .post(format!("{}/api/machineactions/x/cancel", simulator.base_url()))
        .bearer_auth(&token)
        .json(&json!({"Comment": "x"}))
        .send()
        .unwrap();
    assert_eq!(cancel.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[test]
fn seeded_devices_include_an_incident_and_a_duplicate_name() {
    let machines = defender_simulator::seeded_machines(10);
    assert_eq!(machines.len(), 10);
    let tagged = machines.iter().filter(|m| m.machine_tags.contains(&"Incident4711".to_owned())).count();
    assert_eq!(tagged, 3);
    let name = machines[0].computer_dns_name.clone();
    assert_eq!(machines.iter().filter(|m| m.computer_dns_name == name).count(), 2);
    assert!(machines[9].last_seen < machines[0].last_seen, "the duplicate is the older record");
}
