//! Helpers shared by the tests: a simulator, an HTTP client, a signed-in token.

use std::path::Path;
use std::sync::Arc;

use defender_simulator::{
    ActionSpec, Config, ConfigPatch, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_SCOPE, DEFAULT_TENANT_ID,
    Options, Simulator,
};
use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

pub fn start(patch: ConfigPatch) -> Simulator {
    Simulator::start(Options {
        config: Config::default().patched(patch).expect("a valid test configuration"),
        ..Options::default()
    })
    .expect("the simulator starts")
}

/// A simulator without rate limits, for tests about something else.
pub fn start_unlimited() -> Simulator {
    start(ConfigPatch { rate_limit: Some(false), ..ConfigPatch::default() })
}

pub fn client() -> Client {
    client_trusting(None)
}

/// A client with the ring provider (no process-wide default), trusting only `ca_file`.
pub fn client_trusting(ca_file: Option<&Path>) -> Client {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca_file) = ca_file {
        for certificate in CertificateDer::pem_file_iter(ca_file).expect("a readable CA file") {
            roots.add(certificate.expect("a PEM certificate")).unwrap();
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Client::builder().tls_backend_preconfigured(tls).no_proxy().build().unwrap()
}

pub fn token_url(simulator: &Simulator, tenant: &str) -> String {
    format!("{}/{tenant}/oauth2/v2.0/token", simulator.base_url())
}

pub fn request_token(client: &Client, simulator: &Simulator, form: &[(&str, &str)]) -> Response {
    client.post(token_url(simulator, DEFAULT_TENANT_ID)).form(form).send().expect("the token endpoint answers")
}

/// Signs in as the simulator's own app.
pub fn access_token(client: &Client, simulator: &Simulator) -> String {
    let response = request_token(
        client,
        simulator,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("scope", DEFAULT_SCOPE),
        ],
    );
    assert_eq!(response.status(), StatusCode::OK);
    json(response)["access_token"].as_str().expect("an access token").to_owned()
}

pub fn api_get(client: &Client, simulator: &Simulator, token: &str, path: &str) -> Response {
    client.get(format!("{}{path}", simulator.base_url())).bearer_auth(token).send().expect("the API answers")
}

pub fn json(response: Response) -> Value {
    response.json().expect("a JSON body")
}

/// A fresh download link for an action whose package is ready.
pub fn package_link(client: &Client, simulator: &Simulator, token: &str, action_id: &str) -> String {
    let response = api_get(client, simulator, token, &format!("/api/machineactions/{action_id}/getPackageUri"));
    assert_eq!(response.status(), StatusCode::OK);
    json(response)["value"].as_str().unwrap().to_owned()
}

/// An action whose package can be downloaded at once.
pub fn ready_action(simulator: &Simulator, spec: ActionSpec) -> String {
    simulator.create_action(spec).unwrap()["id"].as_str().unwrap().to_owned()
}

/// The service's error shape, with a correlation GUID as `target`; answers `error.code`.
pub fn api_error_code(body: &Value) -> String {
    let target = body["error"]["target"].as_str().expect("an error target");
    assert!(uuid::Uuid::parse_str(target).is_ok(), "target {target} is a GUID");
    assert!(body["error"]["message"].is_string(), "{body}");
    body["error"]["code"].as_str().unwrap().to_owned()
}
