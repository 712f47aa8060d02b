//! The machine action API: collections and their schedule, listing, getPackageUri, rate limits.

use std::thread::sleep;
use std::time::Duration;

use defender_simulator::{
    ActionSpec, ConfigPatch, Fault, FaultRule, MachineRegistration, Outcome, RateLimit, RateLimitsPatch, RouteKind,
    Schedule, Simulator,
};
use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use reqwest::header::RETRY_AFTER;
use serde_json::{Value, json};

use crate::common::{
    access_token, api_error_code, api_get, client, json, package_link, ready_action, start, start_unlimited,
};

const MACHINE: &str = "0123456789abcdef0123456789abcdef01234567";

fn collect(client: &Client, simulator: &Simulator, token: &str, machine_id: &str) -> Response {
    client
        .post(format!("{}/api/machines/{machine_id}/collectInvestigationPackage", simulator.base_url()))
        .bearer_auth(token)
        .json(&json!({"Comment": "collected by a test"}))
        .send()
        .unwrap()
}

fn status_of(client: &Client, simulator: &Simulator, token: &str, action_id: &str) -> String {
    let action = json(api_get(client, simulator, token, &format!("/api/machineactions/{action_id}")));
    action["status"].as_str().unwrap().to_owned()
}

#[test]
fn a_collection_runs_its_schedule_on_the_simulated_clock() {
    // 5 s Pending and 30 s InProgress take 50 ms and 300 ms of real time.
    let simulator = start(ConfigPatch { clock_scale: Some(100.0), rate_limit: Some(false), ..ConfigPatch::default() });
    let client = client();
    let token = access_token(&client, &simulator);

    let created = collect(&client, &simulator, &token, MACHINE);
    assert_eq!(created.status(), StatusCode::CREATED);
    let action = json(created);
    assert_eq!(action["type"], "CollectInvestigationPackage");
    assert_eq!(action["machineId"], MACHINE);
    assert_eq!(action["requestorComment"], "collected by a test");
    assert_eq!(action["status"], "Pending");
    let id = action["id"].as_str().unwrap();
    let package_uri = format!("/api/machineactions/{id}/getPackageUri");
    assert_eq!(
        api_get(&client, &simulator, &token, &package_uri).status(),
        StatusCode::NOT_FOUND,
        "no package while Pending"
    );

    let again = collect(&client, &simulator, &token, MACHINE);
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert_eq!(api_error_code(&json(again)), "ActiveRequestAlreadyExists");

    sleep(Duration::from_millis(150));
    assert_eq!(status_of(&client, &simulator, &token, id), "InProgress");
    sleep(Duration::from_millis(300));
    assert_eq!(status_of(&client, &simulator, &token, id), "Succeeded");
    assert_eq!(api_get(&client, &simulator, &token, &package_uri).status(), StatusCode::OK);
    assert_eq!(
        collect(&client, &simulator, &token, MACHINE).status(),
        StatusCode::CREATED,
        "a finished collection no longer blocks the machine"
    );
}

#[test]
fn machines_decide_how_collections_end() {
    let simulator = start_unlimited();
    let client = client();
    let token = access_token(&client, &simulator);

    let unknown = collect(&client, &simulator, &token, "not-a-machine");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(api_error_code(&json(unknown)), "ResourceNotFound");

    simulator
        .configure_machine(MachineRegistration {
            id: "failing-machine".to_owned(),
            computer_dns_name: Some("broken.contoso.local".to_owned()),
            outcome: Some(Outcome::Failed),
            schedule: Some(Schedule::default()),
            ..MachineRegistration::default()
        })
        .unwrap();
    let action = json(collect(&client, &simulator, &token, "failing-machine"));
    assert_eq!(action["computerDnsName"], "broken.contoso.local");
    let id = action["id"].as_str().unwrap();
    assert_eq!(status_of(&client, &simulator, &token, id), "Failed");
    let package = api_get(&client, &simulator, &token, &format!("/api/machineactions/{id}/getPackageUri"));
    assert_eq!(package.status(), StatusCode::NOT_FOUND, "a failed action has no package");
}

#[test]
fn get_package_uri_answers_fresh_links_plain_or_quoted() {
    let simulator = start_unlimited();
    let client = client();
    let token = access_token(&client, &simulator);
    let id = ready_action(&simulator, ActionSpec::default());

    let response = api_get(&client, &simulator, &token, &format!("/api/machineactions/{id}/GetPackageUri"));
    assert_eq!(response.status(), StatusCode::OK, "the path ignores case, as documented both ways");
    let body = json(response);
    assert_eq!(body["@odata.context"], "https://api.security.microsoft.com/api/$metadata#Edm.String");
    let first = body["value"].as_str().unwrap();
    let prefix = format!("{}/safedownload/", simulator.download_url());
    assert!(first.starts_with(&prefix) && first.contains(".zip?token="), "{first}");
    assert_ne!(first, package_link(&client, &simulator, &token, &id), "every call makes a new link");

    simulator.configure(ConfigPatch { quoted_links: Some(true), ..ConfigPatch::default() }).unwrap();
    let quoted = package_link(&client, &simulator, &token, &id);
    assert!(quoted.starts_with(&format!("\"{prefix}")) && quoted.ends_with('"'), "{quoted}");

    let unknown = api_get(&client, &simulator, &token, "/api/machineactions/nope/getPackageUri");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[test]
fn actions_stay_unknown_until_visible() {
    let simulator = start(ConfigPatch { clock_scale: Some(100.0), rate_limit: Some(false), ..ConfigPatch::default() });
    let client = client();
    let token = access_token(&client, &simulator);
    let id = ready_action(&simulator, ActionSpec { visible_after_secs: Some(10), ..ActionSpec::default() });
    let path = format!("/api/machineactions/{id}");
    assert_eq!(api_get(&client, &simulator, &token, &path).status(), StatusCode::NOT_FOUND);
    sleep(Duration::from_millis(150));
    assert_eq!(api_get(&client, &simulator, &token, &path).status(), StatusCode::OK);
}

#[test]
fn listing_filters_newest_first() {
    let simulator = start_unlimited();
    let client = client();
    let token = access_token(&client, &simulator);
    let failed = ready_action(
        &simulator,
        ActionSpec { machine_id: Some(MACHINE.to_owned()), outcome: Some(Outcome::Failed), ..ActionSpec::default() },
    );
    let older = ready_action(&simulator, ActionSpec { machine_id: Some(MACHINE.to_owned()), ..ActionSpec::default() });
    let newer = ready_action(&simulator, ActionSpec { machine_id: Some(MACHINE.to_owned()), ..ActionSpec::default() });
    ready_action(&simulator, ActionSpec::default());

    let list = |query: &str| {
        let response = api_get(&client, &simulator, &token, &format!("/api/machineactions?{query}"));
        (response.status(), json(response))
    };
    let ids = |body: &Value| -> Vec<String> {
        body["value"].as_array().unwrap().iter().map(|action| action["id"].as_str().unwrap().to_owned()).collect()
    };
    let filter =
        format!("machineId eq '{MACHINE}' and status eq 'Succeeded' and type eq 'CollectInvestigationPackage'");
    let (status, body) = list(&format!("$filter={}", urlencode(&filter)));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["@odata.context"], "https://api.security.microsoft.com/api/$metadata#MachineActions");
    assert_eq!(ids(&body), [newer.clone(), older]);
    let (_, body) = list(&format!("$filter={}&$top=1", urlencode(&filter)));
    assert_eq!(ids(&body), [newer]);
    let (_, body) = list(&format!("$filter={}", urlencode("status eq 'Failed'")));
    assert_eq!(ids(&body), [failed]);

    let (status, body) = list(&format!("$filter={}", urlencode("contains(status, 'Fail')")));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(api_error_code(&body), "BadRequest");
    assert_eq!(list("$orderby=creationDateTimeUtc").0, StatusCode::BAD_REQUEST);
}

#[test]
fn the_page_fault_serves_any_number_of_items_and_a_next_link_for_ever() {
    let simulator = start_unlimited();
    let client = client();
    let token = access_token(&client, &simulator);
    let fault = Fault::Page { items: 3, item: r#"{"id":"x"}"#.to_owned() };
    simulator.add_fault(FaultRule { times: 0, ..FaultRule::new(RouteKind::ListMachines, fault) }).unwrap();
    let mut path = "/api/machines?$top=2".to_owned();
    for skip in [3, 6, 9] {
        let page = json(api_get(&client, &simulator, &token, &path));
        assert_eq!(page["value"], json!([{ "id": "x" }, { "id": "x" }, { "id": "x" }]), "more than $top asked for");
        let next = page["@odata.nextLink"].as_str().unwrap();
        assert_eq!(next, format!("{}/api/machines?%24top=2&%24skip={skip}", simulator.base_url()));
        path = next.strip_prefix(simulator.base_url()).unwrap().to_owned();
    }
    let refused = FaultRule::new(RouteKind::MachineAction, Fault::Page { items: 1, item: "{}".to_owned() });
    assert!(simulator.add_fault(refused).is_err(), "only lists have pages");
}

pub(crate) fn urlencode(text: &str) -> String {
    text.replace('%', "%25").replace(' ', "%20").replace('\'', "%27").replace('&', "%26")
}

#[test]
fn get_package_uri_is_rate_limited_per_app_in_simulated_time() {
    // A simulated minute is 100 ms.
    let simulator = start(ConfigPatch { clock_scale: Some(600.0), ..ConfigPatch::default() });
    let client = client();
    let token = access_token(&client, &simulator);
    let id = ready_action(&simulator, ActionSpec::default());
    let path = format!("/api/machineactions/{id}/getPackageUri");

    for _ in 0..2 {
        assert_eq!(api_get(&client, &simulator, &token, &path).status(), StatusCode::OK);
    }
    let refused = api_get(&client, &simulator, &token, &path);
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(api_error_code(&json(refused)), "TooManyRequests");
    assert_eq!(
        api_get(&client, &simulator, &token, &format!("/api/machineactions/{id}")).status(),
        StatusCode::OK,
        "other calls have their own limits"
    );

    // Waiting the simulated Retry-After (plus a little) frees a slot.
    sleep(Duration::from_secs_f64(retry_after as f64 / 600.0) + Duration::from_millis(20));
    assert_eq!(api_get(&client, &simulator, &token, &path).status(), StatusCode::OK);
}

#[test]
fn rate_limits_can_be_configured_and_switched_off() {
    let simulator = start(ConfigPatch {
        rate_limits: Some(RateLimitsPatch {
            other: Some(RateLimit { per_minute: 1, per_hour: 10 }),
            ..RateLimitsPatch::default()
        }),
        ..ConfigPatch::default()
    });
    let client = client();
    let token = access_token(&client, &simulator);
    assert_eq!(api_get(&client, &simulator, &token, "/api/machineactions").status(), StatusCode::OK);
    let refused = api_get(&client, &simulator, &token, "/api/machineactions");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key(RETRY_AFTER));

    simulator.configure(ConfigPatch { rate_limit: Some(false), ..ConfigPatch::default() }).unwrap();
    assert_eq!(api_get(&client, &simulator, &token, "/api/machineactions").status(), StatusCode::OK);
}
