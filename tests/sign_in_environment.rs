//! The sign-in ways that read environment variables, through the C ABI against the simulator:
//! managed identity on App Service / Functions / Automation (`IDENTITY_ENDPOINT`,
//! `IDENTITY_HEADER`) and `environment=true` (`AZURE_*`, as Azure Identity reads them).
//!
//! The environment belongs to the whole process, so this binary has a single test that runs its
//! cases one after another and changes variables only between calls.

#[path = "../simulator/tests/fixtures/certificate.rs"]
mod certificate;
mod common;
#[path = "common/sign_in.rs"]
mod sign_in;

use common::*;
use defender::DefenderStatus;
use defender_simulator::{DEFAULT_CLIENT_ID, DEFAULT_IDENTITY_HEADER, DEFAULT_TENANT_ID, Simulator};
use serde_json::json;
use sign_in::*;

/// Every variable a case may set.
const VARIABLES: &[&str] = &[
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_AUTHORITY_HOST",
];

/// Sets exactly `variables` of `VARIABLES`, removing the others.
fn set_environment(variables: &[(&str, &str)]) {
    for name in VARIABLES {
        let value = variables.iter().find(|(set, _)| set == name).map(|(_, value)| value);
        // SAFETY: this binary's only test runs on one thread, and no call into the library (whose
        // threads read the environment during a call) is running while the environment changes.
        unsafe {
            match value {
                Some(value) => std::env::set_var(name, value),
                None => std::env::remove_var(name),
            }
        }
    }
}

#[test]
fn sign_in_from_the_environment() {
    let simulator = simulator();
    register_certificate_app(&simulator);
    let folder = tempfile::tempdir().unwrap();
    let id = create_action(&simulator, json!({ "package_size": 20_000 }));

    app_service_managed_identity(&simulator, &id, folder.path());
    environment_with_a_secret(&simulator, &id, folder.path());
    environment_with_a_certificate(&simulator, &id, folder.path());
    incomplete_environments_name_what_is_missing(&simulator);
    set_environment(&[]);
}

/// `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` win over IMDS: a package downloads with one token;
/// a wrong header is refused without being shown.
fn app_service_managed_identity(simulator: &Simulator, id: &str, folder: &std::path::Path) {
    simulator.clear_requests();
    let client = client_without_sign_in(simulator);
    set_all(&client, &[("managed_identity", "system"), ("managed_identity_endpoint", "http://127.0.0.1:9/nothing")]);
    set_environment(&[
        ("IDENTITY_ENDPOINT", &simulator.identity_endpoint()),
        ("IDENTITY_HEADER", DEFAULT_IDENTITY_HEADER),
    ]);
    client.download(id, folder, None).unwrap();
    client.package_uri(id).unwrap();
    let sign_ins = requests_to(simulator, "app_service_identity");
    assert_eq!(sign_ins.len(), 1, "{sign_ins:?}");
    assert_eq!(sign_ins[0]["credential"], "app_service");
    assert!(sign_ins[0]["headers"].as_array().unwrap().contains(&json!("x-identity-header")));
    assert_eq!(
        query(&sign_ins[0]),
        [
            ("api-version".to_owned(), "2019-08-01".to_owned()),
            ("resource".to_owned(), "https://api.securitycenter.microsoft.com".to_owned())
        ]
    );
    assert!(requests_to(simulator, "imds").is_empty());

    let wrong_header = "not-the-identity-header";
    set_environment(&[("IDENTITY_ENDPOINT", &simulator.identity_endpoint()), ("IDENTITY_HEADER", wrong_header)]);
    let client = client_without_sign_in(simulator);
    client.set("managed_identity", Some("system")).unwrap();
    let failure = client.package_uri(id).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Unauthorized, "{failure}");
    assert!(failure.message.contains("IDENTITY_ENDPOINT"), "{failure}");
    assert_no_sign_in_secret(&failure.message, &[wrong_header, DEFAULT_IDENTITY_HEADER]);
    for (_, line) in take_log_lines() {
        assert_no_sign_in_secret(&line, &[wrong_header, DEFAULT_IDENTITY_HEADER]);
    }
}

/// `environment=true` with `AZURE_CLIENT_SECRET`: the sign-in host from `AZURE_AUTHORITY_HOST`
/// unless `authority_url` is set; a wrong secret is refused with Entra's text and never shown.
fn environment_with_a_secret(simulator: &Simulator, id: &str, folder: &std::path::Path) {
    simulator.clear_requests();
    set_environment(&[
        ("AZURE_TENANT_ID", DEFAULT_TENANT_ID),
        ("AZURE_CLIENT_ID", DEFAULT_CLIENT_ID),
        ("AZURE_CLIENT_SECRET", defender_simulator::DEFAULT_CLIENT_SECRET),
        ("AZURE_AUTHORITY_HOST", simulator.base_url()),
    ]);
    let client = Client::new();
    set_all(&client, &[("base_url", simulator.base_url()), ("rate_limit", "off"), ("environment", "true")]);
    client.download(id, &folder.join("environment.zip"), None).unwrap();
    client.package_uri(id).unwrap();
    let sign_ins = requests_to(simulator, "token");
    assert_eq!(sign_ins.len(), 1);
    assert_eq!(sign_ins[0]["credential"], "secret");
    assert_eq!(sign_ins[0]["client_id"], DEFAULT_CLIENT_ID);
    // What it is connected to: the environment's app and sign-in host.
    let info = client.connection_info().unwrap();
    assert_eq!((&info["sign_in"], &info["proof"]), (&json!("environment"), &json!("client_secret")), "{info}");
    assert_eq!(
        (&info["tenant_id"], &info["client_id"]),
        (&json!(DEFAULT_TENANT_ID), &json!(DEFAULT_CLIENT_ID)),
        "{info}"
    );
    assert_eq!(info["authority"], format!("{}/", simulator.base_url()));

    // The option wins over the variable.
    let client = client_without_sign_in(simulator);
    client.set("environment", Some("true")).unwrap();
    set_environment(&[
        ("AZURE_TENANT_ID", DEFAULT_TENANT_ID),
        ("AZURE_CLIENT_ID", DEFAULT_CLIENT_ID),
        ("AZURE_CLIENT_SECRET", "wrong-secret-value"),
        ("AZURE_AUTHORITY_HOST", "https://login.invalid"),
    ]);
    let failure = client.package_uri(id).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Unauthorized, "{failure}");
    assert!(failure.message.contains("AADSTS7000215"), "{failure}");
    assert_no_sign_in_secret(&failure.message, &["wrong-secret-value"]);
    for (_, line) in take_log_lines() {
        assert_no_sign_in_secret(&line, &["wrong-secret-value"]);
    }
}

/// `AZURE_CLIENT_CERTIFICATE_PATH` signs an assertion; with a secret set too, the secret wins,
/// as in Azure Identity.
fn environment_with_a_certificate(simulator: &Simulator, id: &str, folder: &std::path::Path) {
    simulator.clear_requests();
    let certificate_path = certificate_file(folder);
    let certificate = certificate_path.to_str().unwrap();
    let base = [
        ("AZURE_TENANT_ID", DEFAULT_TENANT_ID),
        ("AZURE_CLIENT_ID", CERTIFICATE_APP_ID),
        ("AZURE_CLIENT_CERTIFICATE_PATH", certificate),
    ];
    set_environment(&base);
    let client = client_without_sign_in(simulator);
    client.set("environment", Some("true")).unwrap();
    client.download(id, &folder.join("certificate.zip"), None).unwrap();
    let sign_ins = requests_to(simulator, "token");
    assert_eq!(sign_ins[0]["credential"], "assertion");
    assert_eq!(sign_ins[0]["claims"]["iss"], CERTIFICATE_APP_ID);

    set_environment(&[base[0], base[1], base[2], ("AZURE_CLIENT_SECRET", "a-secret-that-wins")]);
    let client = client_without_sign_in(simulator);
    client.set("environment", Some("true")).unwrap();
    let failure = client.package_uri(id).unwrap_err();
    assert!(failure.message.contains("AADSTS7000215"), "the secret was used: {failure}");
    assert_eq!(requests_to(simulator, "token")[1]["credential"], "secret");
    assert_no_sign_in_secret(&failure.message, &["a-secret-that-wins"]);
}

fn incomplete_environments_name_what_is_missing(simulator: &Simulator) {
    simulator.clear_requests();
    let client = client_without_sign_in(simulator);
    client.set("environment", Some("true")).unwrap();

    set_environment(&[("AZURE_TENANT_ID", DEFAULT_TENANT_ID), ("AZURE_CLIENT_SECRET", "")]);
    let failure = client.package_uri("any-action").unwrap_err();
    assert_eq!(failure.status, DefenderStatus::InvalidArgument);
    assert!(
        failure.message.ends_with("not set: AZURE_CLIENT_ID, AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH"),
        "{failure}"
    );

    set_environment(&[
        ("AZURE_TENANT_ID", "contoso.onmicrosoft.com/../x"),
        ("AZURE_CLIENT_ID", DEFAULT_CLIENT_ID),
        ("AZURE_CLIENT_SECRET", "s3cret-value"),
    ]);
    let failure = client.package_uri("any-action").unwrap_err();
    assert_eq!(failure.status, DefenderStatus::InvalidArgument);
    assert!(failure.message.contains("AZURE_TENANT_ID takes a GUID or a domain name"), "{failure}");
    assert_no_sign_in_secret(&failure.message, &["s3cret-value"]);
    assert!(simulator.requests().is_empty());
}
