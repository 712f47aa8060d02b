//! Every way to sign in, end to end through the C ABI against the simulator: a certificate, a
//! ready-signed assertion, managed identity (IMDS), and what they share: one token per client
//! and principal, renewed before it expires and once after a 401, never a secret in a message.
//! The ways that read environment variables are in `sign_in_environment.rs`.

#[path = "../simulator/tests/fixtures/certificate.rs"]
mod certificate;
mod common;
#[path = "common/sign_in.rs"]
mod sign_in;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use certificate::test_certificate;
use common::*;
use defender::DefenderStatus;
use defender_simulator::{DEFAULT_CLIENT_ID, DEFAULT_TENANT_ID, IdentityRegistration, SYSTEM_IDENTITY_CLIENT_ID};
use serde_json::json;
use sign_in::*;

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A client that signs in as `CERTIFICATE_APP_ID` with `certificate_path`.
fn certificate_client(simulator: &defender_simulator::Simulator, certificate_path: &std::path::Path) -> Client {
    let client = client_without_sign_in(simulator);
    set_all(
        &client,
        &[
            ("tenant_id", DEFAULT_TENANT_ID),
            ("client_id", CERTIFICATE_APP_ID),
            ("client_certificate_path", certificate_path.to_str().unwrap()),
        ],
    );
    client
}

/// A client that signs in with the system-assigned identity through the simulator's IMDS.
fn managed_identity_client(simulator: &defender_simulator::Simulator) -> Client {
    let client = client_without_sign_in(simulator);
    let imds = format!("{}/metadata/identity/oauth2/token", simulator.base_url());
    set_all(&client, &[("managed_identity", "system"), ("managed_identity_endpoint", &imds)]);
    client
}

#[test]
fn a_certificate_signs_a_fresh_assertion_for_each_sign_in_and_its_token_is_reused() {
    let simulator = simulator();
    register_certificate_app(&simulator);
    let folder = tempfile::tempdir().unwrap();
    let client = certificate_client(&simulator, &certificate_file(folder.path()));
    let id = create_action(&simulator, json!({ "package_size": 20_000 }));

    let result = client.download(&id, folder.path(), None).unwrap();
    assert_eq!(result["bytes"], 20_000);
    client.package_uri(&id).unwrap();
    client.machine_action(&id).unwrap();

    let sign_ins = requests_to(&simulator, "token");
    assert_eq!(sign_ins.len(), 1, "one token for three calls: {sign_ins:?}");
    let sign_in = &sign_ins[0];
    assert_eq!(sign_in["status"], 200);
    assert_eq!(sign_in["credential"], "assertion");
    let claims = &sign_in["claims"];
    assert_eq!(claims["x5t"], test_certificate().x5t.as_str());
    assert_eq!(claims["aud"], token_url(&simulator).as_str());
    assert_eq!(claims["iss"], CERTIFICATE_APP_ID);
    assert_eq!(claims["sub"], CERTIFICATE_APP_ID);
    let (nbf, exp) = (claims["nbf"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
    assert!((nbf - unix_now()).abs() < 60, "nbf {nbf} is now");
    assert!((120..=600).contains(&(exp - nbf)), "nbf and exp a few minutes apart: {claims}");

    // Another client signs a new assertion: its jti differs.
    let other = certificate_client(&simulator, &certificate_file(folder.path()));
    other.package_uri(&id).unwrap();
    let sign_ins = requests_to(&simulator, "token");
    assert_eq!(sign_ins.len(), 2);
    assert_ne!(sign_ins[0]["claims"]["jti"], sign_ins[1]["claims"]["jti"]);
    assert!(sign_ins[1]["claims"]["jti"].as_str().is_some_and(|jti| jti.len() >= 16));

    let lines = take_log_lines();
    let thumbprint = hex::encode_upper(
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &test_certificate().x5t).unwrap(),
    );
    assert!(lines.iter().any(|(_, line)| line.contains(&thumbprint)), "the thumbprint is logged: {lines:?}");
    for (_, line) in &lines {
        assert_no_sign_in_secret(line, &[]);
    }
}

#[test]
fn a_pkcs1_key_among_other_certificates_finds_its_own_certificate() {
    let simulator = simulator();
    register_certificate_app(&simulator);
    let folder = tempfile::tempdir().unwrap();
    // An unrelated certificate (as in a chain) comes first; the key is PKCS#1 and comes last.
    let unrelated = rcgen::generate_simple_self_signed(vec!["ca.example".to_owned()]).unwrap();
    let certificate = test_certificate();
    let path = write_pem(
        folder.path(),
        "chain.pem",
        &[&unrelated.cert.pem(), &certificate.certificate_pem, &certificate.key_pkcs1_pem],
    );
    let client = certificate_client(&simulator, &path);
    let id = create_action(&simulator, json!({ "package_size": 10_000 }));
    client.download(&id, folder.path(), None).unwrap();
    let sign_ins = requests_to(&simulator, "token");
    assert_eq!(sign_ins[0]["claims"]["x5t"], certificate.x5t.as_str());
}

#[test]
fn certificate_files_that_cannot_sign_are_invalid_arguments_naming_the_file_and_nothing_of_the_key() {
    let simulator = simulator();
    register_certificate_app(&simulator);
    let folder = tempfile::tempdir().unwrap();
    let certificate = test_certificate();
    let other = rcgen::generate_simple_self_signed(vec!["other.example".to_owned()]).unwrap();
    let (other_certificate, other_key) = (other.cert.pem(), other.signing_key.serialize_pem());
    let cases = [
        ("missing.pem", None, "could not be read"),
        ("certificate-only.pem", Some(vec![certificate.certificate_pem.as_str()]), "holds no private key"),
        ("key-only.pem", Some(vec![certificate.key_pkcs8_pem.as_str()]), "holds no certificate"),
        ("not-pem.pfx", Some(vec!["0\u{82}\u{1}binary"]), "holds no private key"),
        ("ec.pem", Some(vec![other_certificate.as_str(), other_key.as_str()]), "not an RSA key"),
        ("mismatched.pem", Some(vec![other_certificate.as_str(), certificate.key_pkcs8_pem.as_str()]), "none of them"),
    ];
    for (name, parts, expected) in cases {
        let path = match parts {
            Some(parts) => write_pem(folder.path(), name, &parts),
            None => folder.path().join(name),
        };
        let client = certificate_client(&simulator, &path);
        let failure = client.package_uri("any-action").unwrap_err();
        assert_eq!(failure.status, DefenderStatus::InvalidArgument, "{name}: {failure}");
        assert!(failure.message.contains(path.to_str().unwrap()), "{name}: {failure}");
        assert!(failure.message.contains(expected), "{name}: {failure}");
        assert_no_sign_in_secret(&failure.message, &[]);
    }
    assert!(simulator.requests().is_empty(), "nothing was sent");
}

#[test]
fn a_certificate_the_app_does_not_have_is_unauthorized_with_the_service_text() {
    let simulator = simulator();
    let folder = tempfile::tempdir().unwrap();
    // The simulator's own app has a secret and no certificate.
    let client = certificate_client(&simulator, &certificate_file(folder.path()));
    client.set("client_id", Some(DEFAULT_CLIENT_ID)).unwrap();
    let failure = client.package_uri("any-action").unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Unauthorized);
    assert!(failure.message.contains("AADSTS700027"), "{failure}");
    assert!(failure.message.contains("correlation id"), "{failure}");
    assert_no_sign_in_secret(&failure.message, &[]);
}

#[test]
fn connection_info_says_where_and_as_whom_and_until_when_signing_in_first() {
    let simulator = simulator();
    simulator.configure(serde_json::from_value(json!({ "token_lifetime_secs": 1800 })).unwrap()).unwrap();
    let client = client_for(&simulator);
    let before = unix_now() as u64;
    let info = client.connection_info().unwrap();
    assert_eq!(info["api_root"], format!("{}/", simulator.base_url()));
    assert_eq!(info["authority"], format!("{}/", simulator.base_url()));
    assert_eq!(
        (&info["sign_in"], &info["tenant_id"], &info["client_id"]),
        (&json!("client_secret"), &json!(DEFAULT_TENANT_ID), &json!(DEFAULT_CLIENT_ID))
    );
    let expires = info["token_expires_at"].as_u64().unwrap();
    assert!((before + 1800..=unix_now() as u64 + 1800).contains(&expires), "{expires} for a 30 min token at {before}");
    assert_eq!(requests_to(&simulator, "token").len(), 1, "signed in once");
    assert_eq!(client.try_clone().unwrap().connection_info().unwrap(), info, "the same token, not a new one");
    assert_eq!(requests_to(&simulator, "token").len(), 1);
    assert_no_sign_in_secret(&info.to_string(), &[]);

    let bearer = client_without_sign_in(&simulator);
    bearer.set("access_token", Some("a-token-from-elsewhere")).unwrap();
    let info = bearer.connection_info().unwrap();
    assert_eq!(
        (&info["sign_in"], &info["token_expires_at"], &info["tenant_id"]),
        (&json!("access_token"), &json!(null), &json!(null))
    );
    assert!(!info.to_string().contains("a-token-from-elsewhere"));
    let imds = managed_identity_client(&simulator);
    let info = imds.connection_info().unwrap();
    assert_eq!((&info["sign_in"], &info["client_id"]), (&json!("managed_identity"), &json!(null)));
    assert!(info["token_expires_at"].is_u64());
    let wrong = client_for(&simulator);
    wrong.set("client_secret", Some("wrong-secret")).unwrap();
    assert_eq!(wrong.connection_info().unwrap_err().status, DefenderStatus::Unauthorized);
}

#[test]
fn a_tenant_that_does_not_exist_is_invalid_argument_with_entra_s_whole_sentence() {
    let simulator = simulator();
    let client = client_for(&simulator);
    client.set("tenant_id", Some("00000000-0000-4000-8000-00000000bad0")).unwrap();
    let failure = client.sign_in().unwrap_err();
    assert_eq!(failure.status, DefenderStatus::InvalidArgument, "not a wrong secret: {failure}");
    assert!(failure.message.contains("invalid_request"), "{failure}");
    assert!(
        failure
            .message
            .ends_with("Check to make sure you have the correct tenant ID and are signing into the correct cloud."),
        "the sentence whole, without the trace that follows it: {failure}"
    );
}

/// An assertion for `CERTIFICATE_APP_ID` with audience `audience`, signed with the test
/// certificate as a certificate store would sign it.
fn signed_assertion(audience: &str, jti: &str) -> String {
    let header = json!({ "alg": "RS256", "typ": "JWT", "x5t": test_certificate().x5t });
    let claims = json!({
        "aud": audience,
        "iss": CERTIFICATE_APP_ID,
        "sub": CERTIFICATE_APP_ID,
        "jti": jti,
        "nbf": unix_now() - 5,
        "exp": unix_now() + 300,
    });
    test_certificate().sign_jwt(&header, &claims)
}

#[test]
fn a_ready_signed_assertion_is_sent_as_it_is_and_replacing_it_keeps_the_token() {
    let simulator = simulator();
    register_certificate_app(&simulator);
    let client = client_without_sign_in(&simulator);
    // The library says what to sign for: the token endpoint it will post the assertion to.
    assert_eq!(client.assertion_audience().unwrap_err().status, DefenderStatus::InvalidArgument);
    set_all(&client, &[("tenant_id", DEFAULT_TENANT_ID), ("client_id", CERTIFICATE_APP_ID)]);
    let audience = client.assertion_audience().unwrap();
    assert_eq!(audience, token_url(&simulator));
    let first = signed_assertion(&audience, "first-assertion");
    client.set("client_assertion", Some(&first)).unwrap();
    let id = create_action(&simulator, json!({ "package_size": 10_000 }));
    let folder = tempfile::tempdir().unwrap();
    client.download(&id, folder.path(), None).unwrap();

    // A caller that signs its own assertions hands over a fresh one before a call: the token stays.
    let second = signed_assertion(&audience, "second-assertion");
    client.set("client_assertion", Some(&second)).unwrap();
    client.package_uri(&id).unwrap();
    let sign_ins = requests_to(&simulator, "token");
    assert_eq!(sign_ins.len(), 1, "{sign_ins:?}");
    assert_eq!(sign_ins[0]["claims"]["jti"], "first-assertion");

    // When the token is refused, the renewal uses the assertion of now.
    simulator.revoke_tokens();
    client.package_uri(&id).unwrap();
    let sign_ins = requests_to(&simulator, "token");
    assert_eq!(sign_ins.len(), 2);
    assert_eq!(sign_ins[1]["claims"]["jti"], "second-assertion");

    // Another app is another principal: its own sign-in (refused: it has no certificate).
    client.set("client_id", Some(DEFAULT_CLIENT_ID)).unwrap();
    let failure = client.package_uri(&id).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Unauthorized, "{failure}");
    assert_eq!(requests_to(&simulator, "token").len(), 3);
    assert_no_sign_in_secret(&failure.message, &[&first, &second]);
    for (_, line) in take_log_lines() {
        assert_no_sign_in_secret(&line, &[&first, &second]);
    }
}

#[test]
fn managed_identity_through_imds_downloads_a_package_with_one_token() {
    let simulator = simulator();
    let folder = tempfile::tempdir().unwrap();
    let client = managed_identity_client(&simulator);
    let id = create_action(&simulator, json!({ "package_size": 20_000 }));
    client.download(&id, folder.path(), None).unwrap();
    client.package_uri(&id).unwrap();

    let sign_ins = requests_to(&simulator, "imds");
    assert_eq!(sign_ins.len(), 1, "{sign_ins:?}");
    let sign_in = &sign_ins[0];
    assert_eq!(sign_in["method"], "GET");
    assert_eq!(sign_in["credential"], "imds");
    assert!(sign_in["headers"].as_array().unwrap().contains(&json!("metadata")), "{sign_in}");
    assert_eq!(
        query(sign_in),
        [
            ("api-version".to_owned(), "2018-02-01".to_owned()),
            ("resource".to_owned(), "https://api.securitycenter.microsoft.com".to_owned())
        ]
    );
    assert_eq!(sign_in["client_id"], SYSTEM_IDENTITY_CLIENT_ID);
    let api_calls = requests_to(&simulator, "get_package_uri");
    assert!(api_calls.iter().all(|call| call["client_id"] == SYSTEM_IDENTITY_CLIENT_ID), "{api_calls:?}");
    assert!(requests_to(&simulator, "token").is_empty());
}

#[test]
fn app_service_managed_identity_can_be_given_by_options_instead_of_the_environment() {
    // What a host whose environment variables the library cannot see (.NET's on Linux) does with
    // the IDENTITY_ENDPOINT and IDENTITY_HEADER it was given.
    let simulator = simulator();
    let id = create_action(&simulator, json!({ "package_size": 20_000 }));
    let client = client_without_sign_in(&simulator);
    set_all(
        &client,
        &[
            ("managed_identity", "system"),
            ("managed_identity_endpoint", &simulator.identity_endpoint()),
            ("managed_identity_header", defender_simulator::DEFAULT_IDENTITY_HEADER),
        ],
    );
    client.package_uri(&id).unwrap();
    let sign_ins = requests_to(&simulator, "app_service_identity");
    assert_eq!(sign_ins.len(), 1, "{sign_ins:?}");
    assert_eq!(sign_ins[0]["credential"], "app_service");
    assert!(requests_to(&simulator, "imds").is_empty());

    let wrong = "not-the-identity-header";
    let client = client_without_sign_in(&simulator);
    set_all(&client, &[("managed_identity", "system"), ("managed_identity_endpoint", &simulator.identity_endpoint())]);
    client.set("managed_identity_header", Some(wrong)).unwrap();
    let failure = client.package_uri(&id).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Unauthorized, "{failure}");
    assert_no_sign_in_secret(&failure.message, &[wrong]);

    let client = client_without_sign_in(&simulator);
    set_all(&client, &[("managed_identity", "system"), ("managed_identity_header", wrong)]);
    let failure = client.package_uri(&id).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::InvalidArgument, "{failure}");
    assert!(failure.message.contains("managed_identity_endpoint"), "{failure}");
}

#[test]
fn a_user_assigned_identity_is_chosen_by_its_client_id() {
    let simulator = simulator();
    let identity = "11111111-2222-4333-8444-555555555555";
    let client = managed_identity_client(&simulator);
    client.set("managed_identity", Some(identity)).unwrap();

    let failure = client.package_uri("any-action").unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Unauthorized);
    assert!(failure.message.contains("Identity not found"), "{failure}");
    assert!(failure.message.contains(identity), "{failure}");

    simulator.register_identity(IdentityRegistration { client_id: identity.to_owned() }).unwrap();
    let id = create_action(&simulator, json!({}));
    client.package_uri(&id).unwrap();
    let sign_in = requests_to(&simulator, "imds").pop().unwrap();
    assert!(query(&sign_in).contains(&("client_id".to_owned(), identity.to_owned())), "{sign_in}");
    assert_eq!(requests_to(&simulator, "get_package_uri")[0]["client_id"], identity);
}

#[test]
fn a_machine_without_a_managed_identity_endpoint_fails_fast_and_says_so() {
    let simulator = simulator();
    let client = managed_identity_client(&simulator);

    // Nothing listens: the connection is refused at once.
    let closed_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let nowhere = format!("http://127.0.0.1:{closed_port}/metadata/identity/oauth2/token");
    client.set("managed_identity_endpoint", Some(&nowhere)).unwrap();
    let started = Instant::now();
    let failure = client.package_uri("any-action").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert_eq!(failure.status, DefenderStatus::Network, "{failure}");
    assert!(failure.message.contains("no managed identity endpoint answered"), "{failure}");
    assert!(failure.message.contains("Azure VM"), "{failure}");
    assert!(failure.message.contains(&nowhere), "{failure}");

    // Something accepts connections and never answers: the managed identity's own bound (a few
    // seconds) ends the wait, not the client's 60-second default.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/metadata/identity/oauth2/token", silent.local_addr().unwrap());
    client.set("managed_identity_endpoint", Some(&silent_url)).unwrap();
    let started = Instant::now();
    let failure = client.package_uri("any-action").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    assert_eq!(failure.status, DefenderStatus::Timeout, "{failure}");
    assert!(failure.message.contains("no managed identity endpoint answered"), "{failure}");
    assert!(simulator.requests().is_empty());
}

#[test]
fn a_token_is_renewed_before_it_expires_not_after_a_refusal() {
    let simulator = simulator_with(json!({ "rate_limit": false, "token_lifetime_secs": 2 }));
    let id = create_action(&simulator, json!({}));
    for client in [client_for(&simulator), managed_identity_client(&simulator)] {
        simulator.clear_requests();
        client.package_uri(&id).unwrap();
        // Renewal is due halfway through a lifetime this short.
        std::thread::sleep(Duration::from_millis(1300));
        client.package_uri(&id).unwrap();
        let sign_ins = requests_to(&simulator, "token").len() + requests_to(&simulator, "imds").len();
        assert_eq!(sign_ins, 2);
        assert_eq!(refused_api_calls(&simulator), 0, "the token was renewed before the API refused it");
    }
}

#[test]
fn a_refused_token_is_renewed_once_and_the_call_retried_once() {
    let simulator = simulator();
    let folder = tempfile::tempdir().unwrap();
    register_certificate_app(&simulator);
    let id = create_action(&simulator, json!({}));
    let clients = [
        client_for(&simulator),
        certificate_client(&simulator, &certificate_file(folder.path())),
        managed_identity_client(&simulator),
    ];
    for client in clients {
        simulator.clear_requests();
        client.package_uri(&id).unwrap();
        simulator.revoke_tokens();
        client.package_uri(&id).unwrap();
        let sign_ins = || requests_to(&simulator, "token").len() + requests_to(&simulator, "imds").len();
        assert_eq!(sign_ins(), 2);
        assert_eq!(refused_api_calls(&simulator), 1);

        // Refused again after the renewal: the call fails, with no third try.
        simulator.clear_requests();
        add_fault(
            &simulator,
            json!({ "endpoint": "get_package_uri", "times": 2, "fault": { "kind": "status", "status": 401 } }),
        );
        let failure = client.package_uri(&id).unwrap_err();
        assert_eq!(failure.status, DefenderStatus::Unauthorized, "{failure}");
        assert!(failure.message.contains("401"), "{failure}");
        assert_eq!(requests_to(&simulator, "get_package_uri").len(), 2);
        assert_eq!(sign_ins(), 1);
        simulator.clear_faults();
    }
}

#[test]
fn many_threads_wanting_a_token_cause_one_request_for_each_way() {
    let simulator = simulator();
    register_certificate_app(&simulator);
    let folder = tempfile::tempdir().unwrap();
    let id = create_action(&simulator, json!({}));
    // A slow sign-in makes sure the threads overlap while it runs.
    for endpoint in ["token", "imds"] {
        add_fault(&simulator, json!({ "endpoint": endpoint, "times": 0, "fault": { "kind": "delay", "ms": 300 } }));
    }
    let ways = [
        ("token", certificate_client(&simulator, &certificate_file(folder.path()))),
        ("imds", managed_identity_client(&simulator)),
    ];
    for (endpoint, client) in ways {
        let client = Arc::new(client);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (client, id) = (Arc::clone(&client), id.clone());
                std::thread::spawn(move || client.package_uri(&id))
            })
            .collect();
        for thread in threads {
            thread.join().unwrap().unwrap();
        }
        assert_eq!(requests_to(&simulator, endpoint).len(), 1, "{endpoint}");
    }
}

#[test]
fn a_slow_token_endpoint_ends_in_timeout_after_timeout_ms() {
    let simulator = simulator();
    add_fault(&simulator, json!({ "endpoint": "token", "fault": { "kind": "delay", "ms": 5000 } }));
    let client = client_for(&simulator);
    client.set("timeout_ms", Some("300")).unwrap();
    let started = Instant::now();
    let failure = client.package_uri("any-action").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert_eq!(failure.status, DefenderStatus::Timeout, "{failure}");
    assert!(failure.message.contains("signing in to tenant"), "{failure}");
}

#[test]
fn exactly_one_sign_in_is_configured_and_completely() {
    let simulator = simulator();
    let assertion = signed_assertion(&token_url(&simulator), "unused");
    // The options set, and what the message says.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case; 7] = [
        (&[], &["no sign-in is configured", "managed_identity", "environment=true"]),
        (
            &[
                ("tenant_id", "t"),
                ("client_id", "c"),
                ("client_secret", "s3cret-value"),
                ("client_certificate_path", "/app.pem"),
            ],
            &["more than one sign-in", "client_secret, client_certificate_path"],
        ),
        (&[("managed_identity", "system"), ("client_assertion", &assertion)], &["client_assertion, managed_identity"]),
        (&[("environment", "true"), ("access_token", "t0ken-value")], &["access_token, environment"]),
        (
            &[("client_certificate_path", "/app.pem"), ("client_id", "c")],
            &["'client_certificate_path' needs 'tenant_id'"],
        ),
        (
            &[("managed_identity", "system"), ("client_id", "c")],
            &["managed_identity does not use client_id", "managed_identity=<its client id>"],
        ),
        (
            &[("environment", "true"), ("tenant_id", "t")],
            &["environment=true does not use tenant_id", "AZURE_TENANT_ID"],
        ),
    ];
    for (options, expected) in cases {
        let client = client_without_sign_in(&simulator);
        set_all(&client, options);
        let failure = client.package_uri("any-action").unwrap_err();
        assert_eq!(failure.status, DefenderStatus::InvalidArgument, "{options:?}: {failure}");
        for text in expected {
            assert!(failure.message.contains(text), "{options:?}: {failure}");
        }
        assert_no_sign_in_secret(&failure.message, &["s3cret-value", "t0ken-value", &assertion]);
    }
    assert!(simulator.requests().is_empty());
}

#[test]
fn a_cloud_names_the_scope_and_explicit_hosts_send_it_to_the_simulator() {
    let simulator = simulator();
    let folder = tempfile::tempdir().unwrap();
    let id = create_action(&simulator, json!({ "package_size": 10_000 }));
    let government = "https://api-gov.securitycenter.microsoft.us";

    // GCC High's token is for its own API host, which this simulator does not accept yet.
    let client = client_for(&simulator);
    client.set("cloud", Some("gcc-high")).unwrap();
    let failure = client.package_uri(&id).unwrap_err();
    assert_eq!(failure.status, DefenderStatus::InvalidArgument, "a wrong cloud is a setting to fix: {failure}");
    assert!(failure.message.contains("AADSTS70011") && failure.message.contains(government), "{failure}");

    simulator
        .configure(serde_json::from_value(json!({ "accepted_scopes": [format!("{government}/.default")] })).unwrap())
        .unwrap();
    client.download(&id, folder.path(), None).unwrap();

    let identity = managed_identity_client(&simulator);
    identity.set("cloud", Some("dod")).unwrap();
    identity.package_uri(&id).unwrap();
    let sign_in = requests_to(&simulator, "imds").pop().unwrap();
    assert!(query(&sign_in).contains(&("resource".to_owned(), government.to_owned())), "{sign_in}");

    // An explicit scope wins over the cloud's.
    simulator
        .configure(serde_json::from_value(json!({ "accepted_scopes": [defender_simulator::DEFAULT_SCOPE] })).unwrap())
        .unwrap();
    let client = client_for(&simulator);
    client.set("cloud", Some("gcc-high")).unwrap();
    client.set("scope", Some(defender_simulator::DEFAULT_SCOPE)).unwrap();
    client.package_uri(&id).unwrap();
}

#[test]
fn passing_failures_of_the_sign_in_endpoints_are_retried_and_refusals_are_not() {
    // A fast clock on both sides keeps the back-off short.
    let simulator = fast_simulator(600.0);
    let id = create_action(&simulator, json!({ "package_size": 10_000 }));

    // The token endpoint: a 503 and a 429 are retried, with one log line each and no secret.
    add_fault(&simulator, json!({ "endpoint": "token", "fault": { "kind": "status", "status": 503 } }));
    add_fault(&simulator, json!({ "endpoint": "token", "fault": { "kind": "rate_limit", "retry_after_secs": 2 } }));
    let client = client_for(&simulator);
    client.set("clock_scale", Some("600")).unwrap();
    capture_log_lines(&client);
    client.package_uri(&id).unwrap();
    assert_eq!(statuses_at(&simulator, "token"), vec![Some(503), Some(429), Some(200)]);
    let retries: Vec<String> =
        take_log_lines().into_iter().map(|(_, line)| line).filter(|l| l.contains("retrying")).collect();
    assert_eq!(retries.len(), 2, "{retries:?}");
    for line in &retries {
        assert_no_sign_in_secret(line, &[]);
    }

    // A refusal is final: one request, UNAUTHORIZED.
    simulator.clear_requests();
    let refused = client_for(&simulator);
    refused.set("client_secret", Some("wrong-secret")).unwrap();
    assert_eq!(refused.package_uri(&id).unwrap_err().status, DefenderStatus::Unauthorized);
    assert_eq!(statuses_at(&simulator, "token"), vec![Some(401)]);

    // IMDS: a 500 and a 410 (IMDS updating itself) are retried.
    simulator.clear_requests();
    add_fault(&simulator, json!({ "endpoint": "imds", "fault": { "kind": "status", "status": 500 } }));
    add_fault(&simulator, json!({ "endpoint": "imds", "fault": { "kind": "status", "status": 410 } }));
    let identity = managed_identity_client(&simulator);
    identity.set("clock_scale", Some("600")).unwrap();
    identity.package_uri(&id).unwrap();
    assert_eq!(statuses_at(&simulator, "imds"), vec![Some(500), Some(410), Some(200)]);
}

#[test]
fn signing_in_up_front_shows_wrong_credentials_at_once_and_its_token_serves_later_calls() {
    let simulator = simulator();
    let id = create_action(&simulator, json!({}));

    let wrong = client_for(&simulator);
    wrong.set("client_secret", Some("wrong-secret")).unwrap();
    let failure = wrong.sign_in().unwrap_err();
    assert_eq!(failure.status, DefenderStatus::Unauthorized);
    assert!(failure.message.contains("AADSTS"), "{}", failure.message);
    assert_no_sign_in_secret(&failure.message, &["wrong-secret"]);
    assert!(requests_to(&simulator, "get_package_uri").is_empty(), "signing in calls no API");

    let client = client_for(&simulator);
    client.sign_in().unwrap();
    client.sign_in().unwrap();
    client.package_uri(&id).unwrap();
    assert_eq!(statuses_at(&simulator, "token"), vec![Some(401), Some(200)], "one token for the good client");

    let unconfigured = Client::new();
    assert_eq!(unconfigured.sign_in().unwrap_err().status, DefenderStatus::InvalidArgument);
}
