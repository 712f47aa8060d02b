//! A hostile or broken server: answers that once hung a caller, leaked a secret or made the
//! library write where it should not. Each case is a fault of the simulator (`answer` and
//! friends), driven through the C ABI; docs/hostile-servers.md lists them.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::*;
use defender::*;
use defender_simulator::Options;
use serde_json::json;

/// Runs `call` on a thread of its own and returns what it returned, failing the test when it
/// has not returned within `limit`: a call that hangs is the failure these tests look for.
fn returns_within<T: Send + 'static>(limit: Duration, call: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(call());
    });
    receiver.recv_timeout(limit).unwrap_or_else(|_| panic!("the call did not return within {limit:?}"))
}

const PROMPTLY: Duration = Duration::from_secs(30);

/// Every request to `endpoint` is answered with this status, headers and body from now on.
fn answer(simulator: &defender_simulator::Simulator, endpoint: &str, times: u64, answer: serde_json::Value) {
    let mut fault = answer;
    fault["kind"] = json!("answer");
    add_fault(simulator, json!({ "endpoint": endpoint, "times": times, "fault": fault }));
}

#[test]
fn a_token_that_never_expires_neither_panics_nor_hangs_the_call() {
    let simulator = simulator();
    let action_id = create_action(&simulator, json!({}));
    // Not a token the simulator knows: the API refuses it once (401), the library signs in again.
    answer(
        &simulator,
        "token",
        1,
        json!({ "status": 200, "body": r#"{"access_token":"made-up","token_type":"Bearer","expires_in":18446744073709551615}"# }),
    );
    let client = client_for(&simulator);
    let link = returns_within(PROMPTLY, move || client.package_uri(&action_id));
    assert!(link.is_ok(), "{link:?}");
    assert_eq!(requests_to(&simulator, "token").len(), 2, "the made-up token was replaced");
}

#[test]
fn a_retry_after_of_u64_max_ends_the_call_at_once() {
    let simulator = simulator();
    let action_id = create_action(&simulator, json!({}));
    answer(
        &simulator,
        "get_package_uri",
        0,
        json!({ "status": 503, "headers": { "retry-after": "18446744073709551615" }, "body": r#"{"error":{"code":"ServiceUnavailable","message":"later"}}"# }),
    );
    let client = client_for(&simulator);
    let failure = returns_within(PROMPTLY, move || client.package_uri(&action_id)).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Http, "{failure}");
    assert!(failure.message.contains("asks to wait"), "{failure}");
    assert_eq!(requests_to(&simulator, "get_package_uri").len(), 1, "no retry for a wait nobody can make");
}

#[test]
fn a_download_host_asking_to_wait_for_ever_ends_the_download_at_once() {
    let simulator = simulator();
    let action_id = create_action(&simulator, json!({}));
    answer(&simulator, "download", 0, json!({ "status": 503, "headers": { "retry-after": "18446744073709551615" } }));
    let client = client_for(&simulator);
    let folder = tempfile::tempdir().unwrap();
    let destination = folder.path().to_owned();
    let failure = returns_within(PROMPTLY, move || client.download(&action_id, &destination, None)).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Http, "{failure}");
    assert!(failure.message.contains("asks to wait"), "{failure}");
    assert!(entries(folder.path()).is_empty());
}

#[test]
fn a_content_length_no_package_can_have_is_protocol() {
    let simulator = simulator();
    let action_id = create_action(&simulator, json!({}));
    answer(
        &simulator,
        "download",
        0,
        json!({ "status": 200, "headers": { "content-length": "1099511627777", "accept-ranges": "bytes", "etag": "\"x\"", "content-type": "application/zip" }, "body": "PK" }),
    );
    let client = client_for(&simulator);
    let folder = tempfile::tempdir().unwrap();
    let destination = folder.path().to_owned();
    let failure = returns_within(PROMPTLY, move || client.download(&action_id, &destination, None)).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Protocol, "{failure}");
    assert!(failure.message.contains("1099511627777 bytes"), "{failure}");
    assert!(entries(folder.path()).is_empty());
}

#[test]
fn the_longest_wait_timeout_neither_panics_nor_hangs() {
    let simulator = simulator();
    let action_id = create_action(&simulator, json!({}));
    let client = client_for(&simulator);
    client.set("wait_timeout_ms", Some("18446744073709551615")).unwrap();
    // A slow clock makes the limit longer still: beyond what a Duration or an Instant holds.
    client.set("clock_scale", Some("0.000001")).unwrap();
    let link = returns_within(PROMPTLY, move || client.package_uri(&action_id));
    assert!(link.is_ok(), "{link:?}");
}

/// A second simulator on another loopback address (another host, as far as URLs go).
fn other_host() -> defender_simulator::Simulator {
    let options = Options { listen: "127.0.0.2:0".parse().unwrap(), ..Options::default() };
    let simulator = defender_simulator::Simulator::start(options).expect("a simulator on 127.0.0.2");
    simulator.configure(serde_json::from_value(json!({ "rate_limit": false })).unwrap()).unwrap();
    simulator
}

/// A simulator over https, and a client that trusts its CA.
fn tls_simulator_and_client() -> (defender_simulator::Simulator, Client) {
    let simulator = defender_simulator::Simulator::start(Options { tls: true, ..Options::default() }).unwrap();
    simulator.configure(serde_json::from_value(json!({ "rate_limit": false })).unwrap()).unwrap();
    let client = client_for(&simulator);
    client.set("ca_file", Some(simulator.ca_file().unwrap().to_str().unwrap())).unwrap();
    (simulator, client)
}

#[test]
fn the_token_endpoint_redirecting_elsewhere_is_protocol_and_the_secret_goes_nowhere() {
    let simulator = simulator();
    let elsewhere = other_host();
    let action_id = create_action(&simulator, json!({}));
    let target =
        format!("{}/{}/oauth2/v2.0/token?secret=1", elsewhere.base_url(), defender_simulator::DEFAULT_TENANT_ID);
    answer(&simulator, "token", 0, json!({ "status": 307, "headers": { "location": target } }));
    let client = client_for(&simulator);
    let failure = client.package_uri(&action_id).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Protocol, "{failure}");
    assert!(failure.message.contains(elsewhere.base_url()), "names the target host: {failure}");
    assert!(!failure.message.contains("secret=1"), "not its query: {failure}");
    assert!(elsewhere.requests().is_empty(), "the form went to the other host: {:?}", elsewhere.requests());
    assert_eq!(requests_to(&simulator, "token").len(), 1, "a refused redirect is not retried");
}

#[test]
fn an_api_call_redirected_to_another_host_carries_no_authorization_there() {
    let simulator = simulator();
    let elsewhere = other_host();
    let action_id = create_action(&simulator, json!({}));
    let target = format!("{}/api/machineactions/{action_id}/getPackageUri", elsewhere.base_url());
    answer(&simulator, "get_package_uri", 1, json!({ "status": 307, "headers": { "location": target } }));
    let client = client_for(&simulator);
    let _ = client.package_uri(&action_id);
    let there = elsewhere.requests();
    assert!(!there.is_empty(), "the redirect was followed");
    for record in there {
        assert!(!record.headers.iter().any(|name| name == "authorization"), "{record:?}");
    }
}

#[test]
fn a_link_redirecting_from_https_to_http_is_protocol_and_nothing_is_saved() {
    let (simulator, client) = tls_simulator_and_client();
    let plain = other_host();
    let action_id = create_action(&simulator, json!({}));
    let target = format!("{}/safedownload/{action_id}.zip?token=abc", plain.download_url());
    answer(&simulator, "download", 0, json!({ "status": 302, "headers": { "location": target } }));
    let folder = tempfile::tempdir().unwrap();
    let failure = client.download(&action_id, folder.path(), None).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Protocol, "{failure}");
    assert!(failure.message.contains(plain.download_url()) && failure.message.contains("https"), "{failure}");
    assert!(plain.requests().is_empty(), "followed to http: {:?}", plain.requests());
    assert!(entries(folder.path()).is_empty());
    assert_eq!(requests_to(&simulator, "download").len(), 1, "a refused redirect is not retried");
}

#[test]
fn a_link_redirecting_to_another_host_sends_neither_referer_nor_authorization() {
    let simulator = simulator();
    let elsewhere = other_host();
    let action_id = create_action(&simulator, json!({}));
    let target = format!("{}/safedownload/{action_id}.zip?token=abc", elsewhere.download_url());
    answer(&simulator, "download", 1, json!({ "status": 302, "headers": { "location": target } }));
    let client = client_for(&simulator);
    let folder = tempfile::tempdir().unwrap();
    let _ = client.download(&action_id, folder.path(), None);
    let there = elsewhere.requests();
    assert!(!there.is_empty(), "the redirect was followed");
    for record in there {
        assert!(!record.headers.iter().any(|name| name == "referer" || name == "authorization"), "{record:?}");
    }
}

#[test]
fn links_that_are_not_plain_https_urls_are_protocol_before_any_request_to_them() {
    let simulator = simulator();
    let action_id = create_action(&simulator, json!({}));
    let host = simulator.download_url().trim_start_matches("http://").to_owned();
    for link in [
        format!("http://user:hunter22@{host}/safedownload/{action_id}.zip?token=abc"),
        format!("http://user@{host}/safedownload/{action_id}.zip"),
        format!("ftp://{host}/safedownload/{action_id}.zip"),
        "http://download.example/safedownload/a.zip".to_owned(),
        "/safedownload/relative.zip".to_owned(),
    ] {
        simulator.clear_faults();
        simulator.clear_requests();
        let body = json!({ "value": link }).to_string();
        answer(&simulator, "get_package_uri", 0, json!({ "status": 200, "body": body }));
        let client = client_for(&simulator);
        let failure = client.package_uri(&action_id).unwrap_err();
        assert_eq!(failure.status, DefenderStatus::Protocol, "{link}: {failure}");
        assert!(!failure.message.contains("hunter22"), "{failure}");
        let folder = tempfile::tempdir().unwrap();
        let failure = client.download(&action_id, folder.path(), None).unwrap_err();
        assert_eq!(failure.status, DefenderStatus::Protocol, "{link}: {failure}");
        assert!(requests_to(&simulator, "download").is_empty(), "{link} was asked for");
    }
}

#[test]
fn an_untrusted_certificate_is_not_retried_and_says_why() {
    let (simulator, client) = tls_simulator_and_client();
    client.set("ca_file", None).unwrap();
    capture_log_lines(&client);
    let action_id = create_action(&simulator, json!({}));
    let failure = client.package_uri(&action_id).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Network, "{failure}");
    assert!(failure.message.contains("certificate") && failure.message.contains("unknown issuer"), "{failure}");
    let retries: Vec<_> = take_log_lines().into_iter().filter(|(_, line)| line.contains("retrying")).collect();
    assert!(retries.is_empty(), "{retries:?}");
}

/// A TLS server on 127.0.0.1 that completes handshakes only: it records the protocol each
/// client agreed on (ALPN), then hangs up. Its certificate is signed by a CA written to the
/// returned file, valid for `names` from `not_before` to `not_after` (years).
struct HandshakeServer {
    url: String,
    ca_file: tempfile::TempPath,
    agreed: mpsc::Receiver<Option<Vec<u8>>>,
}

fn handshake_server(names: &[&str], not_before: i32, not_after: i32) -> HandshakeServer {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params = CertificateParams::new(names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>()).unwrap();
    params.not_before = rcgen::date_time_ymd(not_before, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after, 1, 1);
    let key = KeyPair::generate().unwrap();
    let certificate = params.signed_by(&key, &issuer).unwrap();
    let mut config =
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![certificate.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let config = std::sync::Arc::new(config);

    let mut ca_file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut ca_file, ca.pem().as_bytes()).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let (sender, agreed) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut connection = rustls::ServerConnection::new(config.clone()).unwrap();
            while connection.is_handshaking() {
                if connection.complete_io(&mut stream).is_err() {
                    break;
                }
            }
            if !connection.is_handshaking() {
                let _ = sender.send(connection.alpn_protocol().map(<[u8]>::to_vec));
            }
        }
    });
    HandshakeServer { url, ca_file: ca_file.into_temp_path(), agreed }
}

fn client_of(server: &HandshakeServer) -> Client {
    let client = Client::new();
    for (key, value) in [
        ("base_url", server.url.as_str()),
        ("access_token", "not-a-real-token"),
        ("rate_limit", "off"),
        ("ca_file", server.ca_file.to_str().unwrap()),
        ("timeout_ms", "2000"),
    ] {
        client.set(key, Some(value)).unwrap();
    }
    client
}

#[test]
fn alpn_offers_h2_and_a_server_that_speaks_it_gets_it() {
    let server = handshake_server(&["127.0.0.1"], 2020, 2100);
    let _ = client_of(&server).machine_action("a");
    let agreed = server.agreed.recv_timeout(PROMPTLY).expect("a handshake");
    assert_eq!(agreed.as_deref(), Some(b"h2".as_slice()));
}

#[test]
fn an_expired_or_misnamed_certificate_is_not_retried_and_says_which() {
    for (names, from, to, why) in
        [(&["127.0.0.1"][..], 2000, 2001, "expired"), (&["other.example"][..], 2020, 2100, "name mismatch")]
    {
        let server = handshake_server(names, from, to);
        let client = client_of(&server);
        capture_log_lines(&client);
        let failure = client.machine_action("a").unwrap_err();
        assert_eq!(failure.status, DefenderStatus::Network, "{failure}");
        assert!(failure.message.contains("certificate") && failure.message.contains(why), "{failure}");
        let retries: Vec<_> = take_log_lines().into_iter().filter(|(_, line)| line.contains("retrying")).collect();
        assert!(retries.is_empty(), "{retries:?}");
    }
}

#[test]
fn a_ca_file_of_another_authority_does_not_make_a_certificate_trusted() {
    let server = handshake_server(&["127.0.0.1"], 2020, 2100);
    let other = handshake_server(&["127.0.0.1"], 2020, 2100);
    let client = client_of(&server);
    client.set("ca_file", Some(other.ca_file.to_str().unwrap())).unwrap();
    let failure = client.machine_action("a").unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Network, "{failure}");
    // Both authorities have the same name: the certificate names a root of ca_file as its
    // issuer, whose key did not sign it.
    assert!(failure.message.contains("certificate verification failed"), "{failure}");
}

#[test]
fn a_ca_file_whose_certificate_cannot_be_a_root_is_refused_saying_so() {
    let garbage = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        garbage.path(),
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let simulator = simulator();
    let client = client_for(&simulator);
    client.set("ca_file", Some(garbage.path().to_str().unwrap())).unwrap();
    let failure = client.machine_action("a").unwrap_err();
    assert_eq!(failure.status, DefenderStatus::InvalidArgument, "{failure}");
    assert!(failure.message.contains("ca_file") && failure.message.contains("trust root"), "{failure}");
}

/// Whether `text` holds a character a terminal or a log file would act on.
fn has_control(text: &str) -> bool {
    text.chars().any(|c| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
}

/// A service error whose code, message and correlation id try terminal escapes, a forged log
/// line and sheer length.
fn hostile_error_body() -> String {
    let message = format!("\u{1b}]0;pwned\u{7}\u{1b}[2J\r\n[Error] forged line \u{202e}{}", "x".repeat(50_000));
    json!({ "error": { "code": "Bad\u{1b}[31m", "message": message, "target": "id\u{85}\u{0}" } }).to_string()
}

#[test]
fn control_characters_from_the_service_are_escaped_in_messages_log_lines_and_batch_results() {
    let simulator = simulator();
    let action_id = create_action(&simulator, json!({}));
    answer(&simulator, "get_package_uri", 0, json!({ "status": 400, "body": hostile_error_body() }));
    let client = client_for(&simulator);
    capture_log_lines(&client);

    let failure = client.package_uri(&action_id).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Http, "{failure}");
    assert!(!has_control(&failure.message), "{failure:?}");
    assert!(
        failure.message.contains("\\u001b]0;pwned\\u0007") && failure.message.contains("code Bad\\u001b[31m"),
        "{failure}"
    );
    assert!(failure.message.chars().count() < 4_000, "capped: {} characters", failure.message.chars().count());

    let folder = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    let mut item_done = |_: usize, _: DefenderStatus, result: serde_json::Value| results.push(result);
    let all = client
        .download_many(
            &[&action_id],
            folder.path(),
            BatchCallbacks { item_done: Some(&mut item_done), ..Default::default() },
        )
        .unwrap();
    for result in all.iter().chain(&results) {
        let message = result["message"].as_str().expect("a failed item has a message");
        assert!(!has_control(message) && message.contains("\\u001b"), "{message:?}");
    }
    let lines = take_log_lines();
    assert!(lines.iter().any(|(_, line)| line.contains("\\u001b")), "{lines:?}");
    for (_, line) in lines {
        assert!(!has_control(&line), "{line:?}");
    }
}

#[test]
fn control_characters_in_a_sign_in_refusal_are_escaped() {
    let simulator = simulator();
    let action_id = create_action(&simulator, json!({}));
    let body = json!({ "error": "invalid_client\u{1b}[5m", "error_description": "AADSTS7000215\u{7}: bad\u{1b}[2J", "correlation_id": "c\u{1b}" });
    answer(&simulator, "token", 0, json!({ "status": 401, "body": body.to_string() }));
    let failure = client_for(&simulator).package_uri(&action_id).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Unauthorized, "{failure}");
    assert!(!has_control(&failure.message) && failure.message.contains("invalid_client\\u001b[5m"), "{failure:?}");
}

#[cfg(unix)]
#[test]
fn a_package_is_saved_readable_by_its_owner_only_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let simulator = simulator();
    let action_id = create_action(&simulator, json!({}));
    let folder = tempfile::tempdir().unwrap();
    let result = client_for(&simulator).download(&action_id, folder.path(), None).unwrap();
    let mode = std::fs::metadata(result["path"].as_str().unwrap()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}
