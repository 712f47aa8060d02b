//! Live response as the service answers it, without a blob store: sessions, their refusals, the
//! commands' statuses and errors, the library. (Results through Azurite are driven by the
//! library's tests, tests/live_response.rs.)

use defender_simulator::{ConfigPatch, MachineRegistration, Schedule};
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::common::*;

const MACHINE: &str = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07";

fn run(client: &Client, base_url: &str, token: &str, machine: &str, body: &Value) -> (StatusCode, Value) {
    let response = client
        .post(format!("{base_url}/api/machines/{machine}/runliveresponse"))
        .bearer_auth(token)
        .json(body)
        .send()
        .unwrap();
    (response.status(), response.json().unwrap())
}

fn get_file(path: &str) -> Value {
    json!({ "Commands": [{ "type": "GetFile", "params": [{ "key": "Path", "value": path }] }], "Comment": "test" })
}

#[test]
fn sessions_are_refused_while_the_device_or_the_tenant_is_busy() {
    let simulator = start(ConfigPatch {
        rate_limit: Some(false),
        max_live_response_sessions: Some(2),
        live_response_schedule: Some(Schedule { pending_secs: 3600, in_progress_secs: 0 }),
        ..ConfigPatch::default()
    });
    let (client, base) = (client(), simulator.base_url().to_owned());
    let token = access_token(&client, &simulator);
    let (status, action) = run(&client, &base, &token, MACHINE, &get_file("C:\\a.log"));
    assert_eq!(status, StatusCode::CREATED, "{action}");
    assert_eq!(action["type"], "LiveResponse");
    assert_eq!(action["commands"][0]["commandStatus"], "Created");
    assert_eq!(action["commands"][0]["command"]["type"], "GetFile");

    let (status, body) = run(&client, &base, &token, MACHINE, &get_file("C:\\b.log"));
    assert_eq!((status, api_error_code(&body)), (StatusCode::BAD_REQUEST, "ActiveRequestAlreadyExists".to_owned()));
    let other = "2e5bc9d7e413ddd7902c2932e418702b84d0cc07";
    assert_eq!(run(&client, &base, &token, other, &get_file("C:\\b.log")).0, StatusCode::CREATED);
    let third = "3e5bc9d7e413ddd7902c2932e418702b84d0cc07";
    let (status, body) = run(&client, &base, &token, third, &get_file("C:\\c.log"));
    assert_eq!((status, api_error_code(&body)), (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests".to_owned()));

    let bad = json!({ "Commands": [{ "type": "Format", "params": [] }], "Comment": "x" });
    assert_eq!(run(&client, &base, &token, third, &bad).0, StatusCode::BAD_REQUEST);
    // Without a blob store, a result's link says what is missing.
    let quick = ConfigPatch {
        live_response_schedule: Some(Schedule::default()),
        max_live_response_sessions: Some(25),
        ..ConfigPatch::default()
    };
    simulator.configure(quick).unwrap();
    let id = run(&client, &base, &token, "4e5bc9d7e413ddd7902c2932e418702b84d0cc07", &get_file("C:\\d.log")).1["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let link = api_get(
        &client,
        &simulator,
        &token,
        &format!("/api/machineactions/{id}/GetLiveResponseResultDownloadLink(index=0)"),
    );
    assert_eq!(link.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(json(link)["error"]["message"].as_str().unwrap().contains("--blob-endpoint"));
}

#[test]
fn a_failed_command_carries_its_errors_and_an_offline_device_queues_its_session() {
    let simulator = start(ConfigPatch {
        rate_limit: Some(false),
        live_response_schedule: Some(Schedule::default()),
        ..ConfigPatch::default()
    });
    let (client, base) = (client(), simulator.base_url().to_owned());
    let token = access_token(&client, &simulator);
    let (_, action) = run(&client, &base, &token, MACHINE, &get_file("C:\\missing.txt"));
    assert_eq!(action["status"], "Failed");
    assert_eq!(action["commands"][0]["commandStatus"], "Failed");
    assert!(action["commands"][0]["errors"][0].as_str().unwrap().contains("was not found"), "{action}");

    let offline = "0ff1e5bc9d7e413ddd7902c2932e418702b84d0c";
    simulator
        .configure_machine(MachineRegistration { id: offline.into(), offline: true, ..Default::default() })
        .unwrap();
    let (_, queued) = run(&client, &base, &token, offline, &get_file("C:\\a.log"));
    let path = format!("/api/machineactions/{}", queued["id"].as_str().unwrap());
    assert_eq!(json(api_get(&client, &simulator, &token, &path))["status"], "Pending");
    simulator.set_machine_online(offline, true);
    assert_eq!(json(api_get(&client, &simulator, &token, &path))["status"], "Succeeded");
}

#[test]
fn the_library_takes_a_multipart_upload_and_refuses_a_second_without_override() {
    let simulator = start_unlimited();
    let client = client();
    let token = access_token(&client, &simulator);
    let url = format!("{}/api/libraryfiles", simulator.base_url());
    let upload = |override_if_exists: bool| {
        let boundary = "b0undary";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"Description\"\r\n\r\nTriage\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"OverrideIfExists\"\r\n\r\n{override_if_exists}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.ps1\"\r\n\r\nGet-Process\r\n\
             --{boundary}--\r\n"
        );
        client
            .post(&url)
            .bearer_auth(&token)
            .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
            .unwrap()
    };
    let first = upload(false);
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(json(first)["fileName"], "t.ps1");
    assert_eq!(upload(false).status(), StatusCode::CONFLICT);
    assert_eq!(upload(true).status(), StatusCode::OK);
    let listed = json(api_get(&client, &simulator, &token, "/api/libraryfiles"));
    assert_eq!(listed["value"].as_array().unwrap().len(), 1);
    let delete = |client: &Client| client.delete(format!("{url}/t.ps1")).bearer_auth(&token).send().unwrap().status();
    assert_eq!(delete(&client), StatusCode::NO_CONTENT);
    assert_eq!(delete(&client), StatusCode::NOT_FOUND);
}
