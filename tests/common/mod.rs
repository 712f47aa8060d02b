//! What the integration tests share: an in-process simulator, and a `DefenderClient` driven
//! through the exported C functions exactly as a C caller would drive it (`defender-native`,
//! the command line's binding, in `bindings/rust`).
#![allow(dead_code, unused_imports)] // each test file uses a different part of this

pub mod azurite;

use std::path::Path;

use defender_simulator::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, Options, Simulator};
use serde_json::Value;

pub use defender_native::{BatchCallbacks, Client, Failure, last_error, status_name};

/// A client signed in to `simulator` as its own app with its secret, rate limiting off.
pub fn client_for(simulator: &Simulator) -> Client {
    let client = Client::new();
    for (key, value) in [
        ("base_url", simulator.base_url()),
        ("authority_url", simulator.base_url()),
        ("tenant_id", DEFAULT_TENANT_ID),
        ("client_id", DEFAULT_CLIENT_ID),
        ("client_secret", DEFAULT_CLIENT_SECRET),
        ("rate_limit", "off"),
    ] {
        client.set(key, Some(value)).unwrap();
    }
    client
}

/// A simulator on loopback with the given config (as JSON, like `POST /_sim/config`), started
/// in this process on its own threads.
pub fn simulator_with(config: Value) -> Simulator {
    let simulator = Simulator::start(Options::default()).expect("the simulator starts");
    simulator
        .configure(serde_json::from_value(config).expect("a valid config patch"))
        .expect("the simulator takes the config");
    simulator
}

/// A simulator that keeps live response results in Azurite (see `azurite`), with `config`.
pub fn simulator_with_store(config: Value) -> Simulator {
    let options = Options { blob_endpoint: Some(azurite::blob_endpoint()), ..Options::default() };
    let simulator = Simulator::start(options).expect("the simulator starts");
    simulator
        .configure(serde_json::from_value(config).expect("a valid config patch"))
        .expect("the simulator takes the config");
    simulator
}

/// A simulator that limits nothing: for tests that are not about rate limits.
pub fn simulator() -> Simulator {
    simulator_with(serde_json::json!({ "rate_limit": false }))
}

/// Creates an action (spec as for `POST /_sim/actions`) and returns its id.
pub fn create_action(simulator: &Simulator, spec: Value) -> String {
    let action = simulator.create_action(serde_json::from_value(spec).expect("a valid action spec")).unwrap();
    action["id"].as_str().expect("the action has an id").to_owned()
}

pub fn add_fault(simulator: &Simulator, rule: Value) {
    simulator.add_fault(serde_json::from_value(rule).expect("a valid fault rule")).unwrap();
}

/// How many requests the simulator saw at `endpoint` (e.g. "token", "get_package_uri").
pub fn requests_to(simulator: &Simulator, endpoint: &str) -> Vec<Value> {
    simulator
        .requests()
        .into_iter()
        .map(|record| serde_json::to_value(record).unwrap())
        .filter(|record| record["endpoint"] == endpoint)
        .collect()
}

/// The names of the entries in `folder`, sorted: a test asserts that no partial or temporary
/// file is left.
pub fn entries(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(folder).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Asserts that `text` holds none of the secrets a test used, nor anything shaped like one.
pub fn assert_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets.iter().chain([&DEFAULT_CLIENT_SECRET]) {
        assert!(!text.contains(secret), "a secret leaked into: {text}");
    }
    assert!(!text.contains("Bearer "), "a bearer token leaked into: {text}");
    if let Some(at) = text.find("token=") {
        assert!(text[at..].starts_with("token=REDACTED"), "a SAS token leaked into: {text}");
    }
}

/// A simulator whose clock runs `clock_scale` times faster, enforcing the documented rate limits.
pub fn fast_simulator(clock_scale: f64) -> Simulator {
    simulator_with(serde_json::json!({ "clock_scale": clock_scale, "rate_limit": true }))
}

/// `client_for`, with the rate limiter on and the client's clock as fast as the simulator's.
pub fn limited_client_for(simulator: &Simulator) -> Client {
    let client = client_for(simulator);
    client.set("rate_limit", Some("on")).unwrap();
    client.set("clock_scale", Some(&simulator.config().clock_scale.to_string())).unwrap();
    client
}

/// The statuses the simulator answered at `endpoint`, oldest first (`None`: connection dropped).
pub fn statuses_at(simulator: &Simulator, endpoint: &str) -> Vec<Option<u64>> {
    requests_to(simulator, endpoint).iter().map(|record| record["status"].as_u64()).collect()
}

std::thread_local! {
    /// The log lines of the calls made on this thread (log callbacks run on the calling thread).
    static LOG_LINES: std::cell::RefCell<Vec<(defender::DefenderLogLevel, String)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Keeps `client`'s log lines for `take_log_lines`, on the thread that makes each call.
pub fn capture_log_lines(client: &Client) {
    unsafe extern "C" fn keep(
        _: *mut std::ffi::c_void,
        level: defender::DefenderLogLevel,
        line: *const std::ffi::c_char,
    ) {
        let line = unsafe { std::ffi::CStr::from_ptr(line) }.to_string_lossy().into_owned();
        LOG_LINES.with(|lines| lines.borrow_mut().push((level, line)));
    }
    client.set_log_callback(Some(keep));
}

/// The log lines kept on this thread so far, leaving none.
pub fn take_log_lines() -> Vec<(defender::DefenderLogLevel, String)> {
    LOG_LINES.with(|lines| std::mem::take(&mut *lines.borrow_mut()))
}
