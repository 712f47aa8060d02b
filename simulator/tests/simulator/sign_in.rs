//! Sign-in: secrets, client assertions, managed identity, and what the API makes of the tokens.

use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use defender_simulator::{
    AppRegistration, ConfigPatch, Credential, DEFAULT_CLIENT_ID, DEFAULT_IDENTITY_HEADER, DEFAULT_SCOPE,
    DEFAULT_TENANT_ID, IdentityRegistration, RouteKind, SYSTEM_IDENTITY_CLIENT_ID, Simulator,
};
use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

use crate::certificate::test_certificate;
use crate::common::{
    access_token, api_error_code, api_get, client, json, request_token, start, start_unlimited, token_url,
};

/// AADSTS number and description of an Entra-shaped error.
fn sign_in_error(response: Response) -> (StatusCode, u64, String) {
    let status = response.status();
    let body = json(response);
    let code = body["error_codes"][0].as_u64().expect("error_codes");
    let description = body["error_description"].as_str().unwrap().to_owned();
    assert!(description.starts_with(&format!("AADSTS{code}: ")), "{description}");
    for field in ["error", "timestamp", "trace_id", "correlation_id"] {
        assert!(body[field].is_string(), "{field} in {body}");
    }
    (status, code, description)
}

#[test]
fn a_secret_signs_in_and_the_token_opens_the_api() {
    let simulator = start_unlimited();
    let client = client();
    let response = request_token(
        &client,
        &simulator,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", "simulator-secret"),
            ("scope", DEFAULT_SCOPE),
        ],
    );
    assert_eq!(response.status(), StatusCode::OK);
    let body = json(response);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["ext_expires_in"], 3600);
    let token = body["access_token"].as_str().unwrap();

    let listed = api_get(&client, &simulator, token, "/api/machineactions");
    assert_eq!(listed.status(), StatusCode::OK);
    let record = &simulator.requests()[0];
    assert_eq!(record.endpoint, Some(RouteKind::Token));
    assert_eq!(record.credential, Some(Credential::Secret));
    assert_eq!(record.client_id.as_deref(), Some(DEFAULT_CLIENT_ID));
}

#[test]
fn refusals_name_what_was_wrong() {
    let simulator = start_unlimited();
    let client = client();
    let form = |client_id, secret, scope| {
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", scope),
        ]
    };

    let wrong_secret = request_token(&client, &simulator, &form(DEFAULT_CLIENT_ID, "nope", DEFAULT_SCOPE));
    let (status, code, description) = sign_in_error(wrong_secret);
    assert_eq!((status, code), (StatusCode::UNAUTHORIZED, 7000215));
    assert!(description.contains("Invalid client secret"), "{description}");

    let unknown_client = request_token(&client, &simulator, &form("someone-else", "x", DEFAULT_SCOPE));
    assert_eq!(sign_in_error(unknown_client).1, 700016);

    let wrong_scope = request_token(
        &client,
        &simulator,
        &form(DEFAULT_CLIENT_ID, "simulator-secret", "https://graph.microsoft.com/.default"),
    );
    assert_eq!(sign_in_error(wrong_scope).0, StatusCode::BAD_REQUEST);

    let unknown_tenant = client
        .post(token_url(&simulator, "contoso.onmicrosoft.com"))
        .form(&form(DEFAULT_CLIENT_ID, "simulator-secret", DEFAULT_SCOPE))
        .send()
        .unwrap();
    let (status, code, _) = sign_in_error(unknown_tenant);
    assert_eq!((status, code), (StatusCode::BAD_REQUEST, 90002));

    let no_grant = request_token(&client, &simulator, &[("client_id", DEFAULT_CLIENT_ID)]);
    let (status, code, description) = sign_in_error(no_grant);
    assert_eq!((status, code), (StatusCode::BAD_REQUEST, 900144));
    assert!(description.contains("'grant_type'"), "{description}");

    let log = serde_json::to_string(&simulator.requests()).unwrap();
    assert!(!log.contains("simulator-secret") && !log.contains("nope"), "{log}");
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn sign_in_with_assertion(client: &Client, simulator: &Simulator, client_id: &str, assertion: &str) -> Response {
    request_token(
        client,
        simulator,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion),
            ("scope", DEFAULT_SCOPE),
        ],
    )
}

#[test]
fn client_assertions_are_verified_against_the_registered_certificate() {
    let simulator = start_unlimited();
    let client = client();
    let credential = test_certificate();
    let app_id = "00000000-0000-4000-8000-0000000000c2";
    simulator
        .register_app(AppRegistration {
            tenant_id: DEFAULT_TENANT_ID.to_owned(),
            client_id: app_id.to_owned(),
            certificate_pem: Some(credential.certificate_pem.clone()),
            ..AppRegistration::default()
        })
        .unwrap();
    let header = json!({"alg": "RS256", "typ": "JWT", "x5t": credential.x5t});
    let claims = json!({
        "aud": token_url(&simulator, DEFAULT_TENANT_ID),
        "iss": app_id,
        "sub": app_id,
        "jti": uuid::Uuid::new_v4().to_string(),
        "nbf": unix_now() - 10,
        "exp": unix_now() + 600,
    });

    let good = credential.sign_jwt(&header, &claims);
    let response = sign_in_with_assertion(&client, &simulator, app_id, &good);
    assert_eq!(response.status(), StatusCode::OK);
    let record = simulator.requests().pop().unwrap();
    assert_eq!(record.credential, Some(Credential::Assertion));
    let recorded = record.claims.expect("the claims are logged");
    assert_eq!(recorded.x5t.as_deref(), Some(credential.x5t.as_str()));
    assert_eq!(recorded.iss.as_deref(), Some(app_id));
    assert_eq!(recorded.exp, claims["exp"].as_i64());

    let with_claim = |name: &str, value: Value| {
        let mut changed = claims.clone();
        changed[name] = value;
        credential.sign_jwt(&header, &changed)
    };
    let mut without_jti = claims.clone();
    without_jti.as_object_mut().unwrap().remove("jti");
    let mut other_certificate = header.clone();
    other_certificate["x5t"] = json!(URL_SAFE_NO_PAD.encode([7u8; 20]));
    let (signed, _) = good.rsplit_once('.').unwrap();
    let (header_part, _) = signed.split_once('.').unwrap();
    let other_claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json!({"iss": "forged"})).unwrap());
    let tampered = format!("{header_part}.{other_claims}.{}", good.rsplit_once('.').unwrap().1);

    let cases = [
        (
            "wrong audience",
            with_claim("aud", json!("https://login.microsoftonline.com/x/oauth2/v2.0/token")),
            50012,
            "audience",
        ),
        ("unknown thumbprint", credential.sign_jwt(&other_certificate, &claims), 700027, "not registered"),
        ("expired", with_claim("exp", json!(unix_now() - 3600)), 700024, "valid time range"),
        ("not yet valid", with_claim("nbf", json!(unix_now() + 3600)), 700024, "valid time range"),
        ("other issuer", with_claim("iss", json!("someone")), 700021, "'iss'"),
        ("no jti", credential.sign_jwt(&header, &without_jti), 50027, "jti"),
        ("tampered claims", tampered, 700027, "signature validation"),
        ("not a JWT", "not-a-jwt".to_owned(), 50027, "malformed"),
    ];
    for (case, assertion, expected_code, expected_text) in cases {
        let (status, code, description) =
            sign_in_error(sign_in_with_assertion(&client, &simulator, app_id, &assertion));
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}");
        assert_eq!(code, expected_code, "{case}: {description}");
        assert!(description.contains(expected_text), "{case}: {description}");
    }
    let log = serde_json::to_string(&simulator.requests()).unwrap();
    assert!(!log.contains(good.rsplit_once('.').unwrap().1), "no signature in the log");
}

#[test]
fn imds_requires_its_header_and_answers_numbers_as_strings() {
    let simulator = start_unlimited();
    let client = client();
    let imds = |query: &str, metadata: bool| {
        let request = client
            .get(format!("{}/metadata/identity/oauth2/token?api-version=2018-02-01&{query}", simulator.base_url()));
        let request = if metadata { request.header("Metadata", "true") } else { request };
        request.send().unwrap()
    };
    let resource = "resource=https%3A%2F%2Fapi.securitycenter.microsoft.com";

    let without_header = imds(resource, false);
    assert_eq!(without_header.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(without_header)["error"], "invalid_request");

    let response = imds(resource, true);
    assert_eq!(response.status(), StatusCode::OK);
    let body = json(response);
    assert!(body["expires_in"].is_string() && body["expires_on"].is_string(), "{body}");
    assert_eq!(body["client_id"], SYSTEM_IDENTITY_CLIENT_ID);
    assert_eq!(body["resource"], "https://api.securitycenter.microsoft.com");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(api_get(&client, &simulator, token, "/api/machineactions").status(), StatusCode::OK);

    let user_assigned = "11111111-2222-4333-8444-555555555555";
    let unknown = imds(&format!("{resource}&client_id={user_assigned}"), true);
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    simulator.register_identity(IdentityRegistration { client_id: user_assigned.to_owned() }).unwrap();
    let registered = imds(&format!("{resource}&client_id={user_assigned}"), true);
    assert_eq!(json(registered)["client_id"], user_assigned);

    let wrong_resource = imds("resource=https%3A%2F%2Fgraph.microsoft.com", true);
    assert_eq!(json(wrong_resource)["error"], "invalid_resource");
    assert_eq!(simulator.requests()[1].credential, Some(Credential::Imds));
}

#[test]
fn app_service_identity_checks_the_identity_header() {
    let simulator = start_unlimited();
    let client = client();
    let url = format!(
        "{}?api-version=2019-08-01&resource=https://api.securitycenter.microsoft.com",
        simulator.identity_endpoint()
    );
    let refused = client.get(&url).header("X-IDENTITY-HEADER", "wrong").send().unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let missing = client.get(&url).send().unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);

    let response = client.get(&url).header("X-IDENTITY-HEADER", DEFAULT_IDENTITY_HEADER).send().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = json(response);
    assert!(body["expires_on"].as_str().unwrap().parse::<u64>().is_ok(), "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(api_get(&client, &simulator, token, "/api/machineactions").status(), StatusCode::OK);
    let log = simulator.requests();
    assert_eq!(log[2].credential, Some(Credential::AppService));
    assert!(log[2].headers.contains(&"x-identity-header".to_owned()));
}

#[test]
fn unknown_expired_and_revoked_tokens_get_401_and_forbidden_apps_403() {
    let simulator =
        start(ConfigPatch { rate_limit: Some(false), token_lifetime_secs: Some(1), ..ConfigPatch::default() });
    let client = client();
    let unauthorized = |token: &str| {
        let response = api_get(&client, &simulator, token, "/api/machineactions");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(api_error_code(&json(response)), "Unauthorized");
    };
    unauthorized("made-up");
    let missing_header = client.get(format!("{}/api/machineactions", simulator.base_url())).send().unwrap();
    assert_eq!(missing_header.status(), StatusCode::UNAUTHORIZED);

    let expiring = access_token(&client, &simulator);
    sleep(Duration::from_millis(1100));
    unauthorized(&expiring);

    simulator.configure(ConfigPatch { token_lifetime_secs: Some(3600), ..ConfigPatch::default() }).unwrap();
    let revoked = access_token(&client, &simulator);
    simulator.revoke_tokens();
    unauthorized(&revoked);
    assert_eq!(
        api_get(&client, &simulator, &access_token(&client, &simulator), "/api/machineactions").status(),
        StatusCode::OK,
        "tokens issued after the revocation work"
    );

    simulator
        .register_app(AppRegistration {
            tenant_id: DEFAULT_TENANT_ID.to_owned(),
            client_id: "forbidden-app".to_owned(),
            client_secret: Some("forbidden-secret".to_owned()),
            forbidden: true,
            ..AppRegistration::default()
        })
        .unwrap();
    let token = json(request_token(
        &client,
        &simulator,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "forbidden-app"),
            ("client_secret", "forbidden-secret"),
            ("scope", DEFAULT_SCOPE),
        ],
    ))["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let forbidden = api_get(&client, &simulator, &token, "/api/machineactions");
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    assert_eq!(api_error_code(&json(forbidden)), "Forbidden");
}
