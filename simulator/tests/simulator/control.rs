//! The control API over HTTP, fault rules on API and sign-in endpoints, the request log.

use std::time::{Duration, Instant};

use defender_simulator::{
    ActionSpec, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_SCOPE, Fault, RequestRecord, RouteKind,
};
use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

use crate::common::{
    access_token, api_error_code, api_get, client, json, package_link, ready_action, request_token, start_unlimited,
};

fn control(client: &Client, base_url: &str, method: &str, path: &str, body: Option<Value>) -> Response {
    let request = client.request(method.parse().unwrap(), format!("{base_url}/_sim/{path}"));
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    request.send().expect("the control API answers")
}

#[test]
fn the_control_api_speaks_json() {
    let simulator = start_unlimited();
    let client = client();
    let base = simulator.base_url();

    let config = json(control(&client, base, "GET", "config", None));
    assert_eq!(config["package_size"], 8 << 20);
    assert_eq!(config["collect_schedule"], json!({"pending_secs": 5, "in_progress_secs": 30}));
    assert_eq!(config["rate_limits"]["get_package_uri"], json!({"per_minute": 2, "per_hour": 120}));
    let patched =
        control(&client, base, "POST", "config", Some(json!({"package_size": "64KiB", "quoted_links": true})));
    assert_eq!(patched.status(), StatusCode::OK);
    assert_eq!(json(patched)["package_size"], 65536);
    let typo = control(&client, base, "POST", "config", Some(json!({"quoted_link": true})));
    assert_eq!(typo.status(), StatusCode::BAD_REQUEST);
    assert!(json(typo)["error"]["message"].as_str().unwrap().contains("quoted_link"));

    let created = control(&client, base, "POST", "actions", Some(json!({"id": "a-1", "outcome": "Cancelled"})));
    assert_eq!(created.status(), StatusCode::CREATED);
    let action = json(created);
    assert_eq!(action["id"], "a-1");
    assert_eq!(action["status"], "Cancelled");
    assert_eq!(action["cancellationRequestor"], DEFAULT_CLIENT_ID);
    let duplicate = control(&client, base, "POST", "actions", Some(json!({"id": "a-1"})));
    assert_eq!(duplicate.status(), StatusCode::CONFLICT);
    let defaults = json(control(&client, base, "POST", "actions", None));
    assert_eq!(defaults["status"], "Succeeded");

    let app = control(
        &client,
        base,
        "POST",
        "apps",
        Some(json!({"tenant_id": "t2", "client_id": "c2", "client_secret": "s2"})),
    );
    assert_eq!(app.status(), StatusCode::NO_CONTENT);
    let bad_certificate = control(
        &client,
        base,
        "POST",
        "apps",
        Some(json!({"tenant_id": "t2", "client_id": "c3", "certificate_pem": "nope"})),
    );
    assert_eq!(bad_certificate.status(), StatusCode::BAD_REQUEST);
    let machine = control(&client, base, "POST", "machines", Some(json!({"id": "m", "package_size": 10})));
    assert_eq!(machine.status(), StatusCode::BAD_REQUEST, "below the minimum package size");

    let fault =
        control(&client, base, "POST", "faults", Some(json!({"endpoint": "collect", "fault": {"kind": "not_found"}})));
    assert_eq!(fault.status(), StatusCode::CREATED);
    assert_eq!(json(fault)["id"], 1);
    let misplaced = control(
        &client,
        base,
        "POST",
        "faults",
        Some(json!({"endpoint": "token", "fault": {"kind": "cut_after", "bytes": 1}})),
    );
    assert_eq!(misplaced.status(), StatusCode::BAD_REQUEST);
    assert_eq!(control(&client, base, "DELETE", "faults", None).status(), StatusCode::NO_CONTENT);
    assert_eq!(control(&client, base, "GET", "nothing", None).status(), StatusCode::NOT_FOUND);
    assert!(simulator.requests().is_empty(), "control calls are not logged");
}

#[test]
fn faults_apply_to_the_chosen_requests_in_the_endpoint_shape() {
    let simulator = start_unlimited();
    let client = client();
    let base = simulator.base_url();
    let token = access_token(&client, &simulator);
    let add = |rule: Value| {
        assert_eq!(control(&client, base, "POST", "faults", Some(rule)).status(), StatusCode::CREATED);
    };

    // The 2nd and 3rd listing get 503; the others go through.
    add(json!({"endpoint": "list_actions", "after": 1, "times": 2,
               "fault": {"kind": "status", "status": 503, "retry_after_secs": 3}}));
    let statuses: Vec<u16> =
        (0..4).map(|_| api_get(&client, &simulator, &token, "/api/machineactions").status().as_u16()).collect();
    assert_eq!(statuses, [200, 503, 503, 200]);
    assert!(matches!(simulator.requests()[2].fault, Some(Fault::Status { status: 503, .. })));

    add(json!({"endpoint": "machine_action", "fault": {"kind": "status", "status": 500}}));
    let failed = api_get(&client, &simulator, &token, "/api/machineactions/x");
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(api_error_code(&json(failed)), "InternalServerError");

    add(json!({"endpoint": "token", "fault": {"kind": "rate_limit", "retry_after_secs": 30, "http_date": true}}));
    let throttled = request_token(
        &client,
        &simulator,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("scope", DEFAULT_SCOPE),
        ],
    );
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    let date = throttled.headers()["retry-after"].to_str().unwrap().to_owned();
    assert!(date.ends_with(" GMT"), "{date}");
    assert!(json(throttled)["error_description"].as_str().unwrap().starts_with("AADSTS"));

    add(json!({"endpoint": "machine_action", "fault": {"kind": "delay", "ms": 300}}));
    let started = Instant::now();
    let delayed = api_get(&client, &simulator, &token, "/api/machineactions/x");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(delayed.status(), StatusCode::NOT_FOUND, "answered normally after the delay");

    add(json!({"endpoint": "machine_action", "fault": {"kind": "drop"}}));
    let dropped = client.get(format!("{base}/api/machineactions/x")).bearer_auth(&token).send();
    assert!(dropped.is_err(), "no answer");

    // Filters: only the named action.
    let id = crate::common::ready_action(&simulator, Default::default());
    add(json!({"endpoint": "get_package_uri", "action_id": "other", "times": 0, "fault": {"kind": "not_found"}}));
    package_link(&client, &simulator, &token, &id);
    add(
        json!({"endpoint": "get_package_uri", "action_id": id, "client_id": DEFAULT_CLIENT_ID, "fault": {"kind": "not_found"}}),
    );
    let hidden = api_get(&client, &simulator, &token, &format!("/api/machineactions/{id}/getPackageUri"));
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
    assert_eq!(api_error_code(&json(hidden)), "ResourceNotFound");
}

#[test]
fn the_request_log_shows_requests_without_secrets() {
    let simulator = start_unlimited();
    let client = client();
    let token = access_token(&client, &simulator);
    let id = crate::common::ready_action(&simulator, Default::default());
    let link = package_link(&client, &simulator, &token, &id);
    let link_token = link.split_once("token=").unwrap().1.to_owned();
    client.get(&link).send().unwrap().bytes().unwrap();
    client.get(format!("{}/nowhere?client_secret=hush", simulator.base_url())).send().unwrap();

    let response = client.get(format!("{}/_sim/requests", simulator.base_url())).send().unwrap();
    let text = response.text().unwrap();
    for secret in [DEFAULT_CLIENT_SECRET, token.as_str(), link_token.as_str(), "hush"] {
        assert!(!text.contains(secret), "{secret} leaked into {text}");
    }
    let records: Vec<RequestRecord> = serde_json::from_str(&text).unwrap();
    let endpoints: Vec<Option<RouteKind>> = records.iter().map(|record| record.endpoint).collect();
    assert_eq!(endpoints, [Some(RouteKind::Token), Some(RouteKind::GetPackageUri), Some(RouteKind::Download), None]);
    assert!(records.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    let [sign_in, get_uri, download, unknown] = &records[..] else { unreachable!() };
    assert_eq!(sign_in.method, "POST");
    assert_eq!(sign_in.query, None);
    assert!(get_uri.headers.contains(&"authorization".to_owned()));
    assert_eq!(get_uri.action_id.as_deref(), Some(id.as_str()));
    assert_eq!(download.query.as_deref(), Some("token=REDACTED"));
    assert_eq!(download.path, "/safedownload/WDATP_Investigation_Package.zip");
    assert_eq!(download.body_bytes, 8 << 20);
    assert_eq!(download.client_id.as_deref(), Some(DEFAULT_CLIENT_ID));
    assert!(!download.headers.contains(&"authorization".to_owned()));
    assert_eq!((unknown.status, unknown.query.as_deref()), (Some(404), Some("client_secret=REDACTED")));

    let filtered: Vec<RequestRecord> = client
        .get(format!("{}/_sim/requests?endpoint=download&action_id={id}", simulator.base_url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(filtered, std::slice::from_ref(download));

    client.delete(format!("{}/_sim/requests", simulator.base_url())).send().unwrap();
    assert!(simulator.requests().is_empty());
}

#[test]
fn reset_forgets_activity_but_keeps_registrations() {
    let simulator = start_unlimited();
    let client = client();
    let token = access_token(&client, &simulator);
    let id = crate::common::ready_action(&simulator, Default::default());
    simulator.configure(defender_simulator::ConfigPatch { quoted_links: Some(true), ..Default::default() }).unwrap();
    let response = client.post(format!("{}/_sim/reset", simulator.base_url())).send().unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    assert!(simulator.requests().is_empty());
    assert!(!simulator.config().quoted_links);
    assert_eq!(
        api_get(&client, &simulator, &token, "/api/machineactions").status(),
        StatusCode::UNAUTHORIZED,
        "tokens are forgotten"
    );
    let token = access_token(&client, &simulator);
    let forgotten = api_get(&client, &simulator, &token, &format!("/api/machineactions/{id}"));
    assert_eq!(forgotten.status(), StatusCode::NOT_FOUND);
}

#[test]
fn the_package_control_call_serves_the_bytes_the_download_host_serves() {
    let simulator = start_unlimited();
    let client = client();
    let token = access_token(&client, &simulator);
    let id = ready_action(&simulator, ActionSpec { package_size: Some(70_000), ..ActionSpec::default() });

    let downloaded = client.get(package_link(&client, &simulator, &token, &id)).send().unwrap().bytes().unwrap();
    let control_bytes = control(&client, simulator.base_url(), "GET", &format!("actions/{id}/package"), None);
    assert_eq!(control_bytes.status(), StatusCode::OK);
    assert_eq!(control_bytes.bytes().unwrap(), downloaded);
    assert_eq!(simulator.package(&id).unwrap(), downloaded.to_vec());
    assert_eq!(
        control(&client, simulator.base_url(), "GET", "actions/no-such-action/package", None).status(),
        StatusCode::BAD_REQUEST
    );
}
