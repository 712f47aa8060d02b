//! What the sign-in tests share (`tests/sign_in.rs`, `tests/sign_in_environment.rs`): clients
//! without a sign-in, an app with the test certificate, and the log lines a call wrote.
#![allow(dead_code)] // each test binary uses a different part of this

use std::path::{Path, PathBuf};

use defender_simulator::{AppRegistration, DEFAULT_TENANT_ID, Simulator};
use serde_json::Value;

use crate::certificate::test_certificate;
use crate::common::{Client, capture_log_lines};

/// The app the certificate tests sign in as; it has a certificate and no secret.
pub const CERTIFICATE_APP_ID: &str = "00000000-0000-4000-8000-0000000000c2";

/// A client pointed at `simulator` for the API and sign-in, with no sign-in configured yet,
/// keeping its log lines for `take_log_lines`.
pub fn client_without_sign_in(simulator: &Simulator) -> Client {
    let client = Client::new();
    for (key, value) in
        [("base_url", simulator.base_url()), ("authority_url", simulator.base_url()), ("rate_limit", "off")]
    {
        client.set(key, Some(value)).unwrap();
    }
    capture_log_lines(&client);
    client
}

/// Sets several options at once.
pub fn set_all(client: &Client, options: &[(&str, &str)]) {
    for (key, value) in options {
        client.set(key, Some(value)).unwrap_or_else(|failure| panic!("{key}: {failure}"));
    }
}

/// Registers `CERTIFICATE_APP_ID` in the default tenant with the test certificate.
pub fn register_certificate_app(simulator: &Simulator) {
    simulator
        .register_app(AppRegistration {
            tenant_id: DEFAULT_TENANT_ID.to_owned(),
            client_id: CERTIFICATE_APP_ID.to_owned(),
            certificate_pem: Some(test_certificate().certificate_pem.clone()),
            ..AppRegistration::default()
        })
        .unwrap();
}

/// Writes `parts` (PEM texts) one after another into `folder/name`, as an admin's PEM file holds them.
pub fn write_pem(folder: &Path, name: &str, parts: &[&str]) -> PathBuf {
    let path = folder.join(name);
    std::fs::write(&path, parts.concat()).unwrap();
    path
}

/// The test certificate with its PKCS#8 key, as `client_certificate_path` takes it.
pub fn certificate_file(folder: &Path) -> PathBuf {
    let certificate = test_certificate();
    write_pem(folder, "app.pem", &[&certificate.certificate_pem, &certificate.key_pkcs8_pem])
}

pub fn token_url(simulator: &Simulator) -> String {
    format!("{}/{DEFAULT_TENANT_ID}/oauth2/v2.0/token", simulator.base_url())
}

/// The API requests that got 401.
pub fn refused_api_calls(simulator: &Simulator) -> usize {
    simulator.requests().iter().filter(|record| record.status == Some(401) && record.path.starts_with("/api/")).count()
}

/// A request's query as name-value pairs (values decoded).
pub fn query(record: &Value) -> Vec<(String, String)> {
    let query = record["query"].as_str().unwrap_or_default();
    url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

/// Asserts that `text` holds no secret of the sign-in tests: none of `assert_no_secret`'s or
/// `secrets`, nothing shaped like a JWT (an assertion, a token), nothing of the private key.
pub fn assert_no_sign_in_secret(text: &str, secrets: &[&str]) {
    crate::common::assert_no_secret(text, secrets);
    assert!(!text.contains("eyJ"), "something shaped like a JWT leaked into: {text}");
    let certificate = test_certificate();
    for key in [&certificate.key_pkcs8_pem, &certificate.key_pkcs1_pem] {
        let first_line_of_key = key.lines().nth(1).unwrap();
        assert!(!text.contains(first_line_of_key), "the private key leaked into: {text}");
    }
    assert!(!text.contains("PRIVATE KEY-----"), "a private key leaked into: {text}");
}
