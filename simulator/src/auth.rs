//! Sign-in: the Entra ID token endpoint (client secret or client assertion) and the two managed
//! identity endpoints (IMDS, and App Service / Functions / Automation).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::StatusCode;
use hyper::header::{CONTENT_TYPE, HOST};
use serde_json::json;

use crate::assertion::{DecodedAssertion, Expectations};
use crate::config::Config;
use crate::exchange::Exchange;
use crate::request_log::Credential;
use crate::responses::{HttpResponse, json, managed_identity_error, sign_in_error};
use crate::simulation::Simulation;
use crate::state::Caller;
use crate::{DEFAULT_IDENTITY_HEADER, DEFAULT_TENANT_ID, SYSTEM_IDENTITY_CLIENT_ID, lock};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const APP_SERVICE_API_VERSION: &str = "2019-08-01";

/// `POST /{tenant}/oauth2/v2.0/token`, its form read once.
pub(crate) struct TokenRequest {
    tenant: String,
    form: HashMap<String, String>,
}

impl TokenRequest {
    /// Reads the form (only a form-encoded body counts, as for Entra) and notes who signs in.
    pub(crate) fn new(tenant: String, exchange: &mut Exchange) -> TokenRequest {
        let is_form = exchange.header(CONTENT_TYPE).is_some_and(|content_type| {
            content_type.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded")
        });
        let mut form = HashMap::new();
        if is_form {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&exchange.body).unwrap_or_default();
            for (name, value) in pairs {
                form.entry(name).or_insert(value);
            }
        }
        let record = &mut exchange.record;
        record.tenant_id = Some(tenant.clone());
        record.client_id = form.get("client_id").cloned();
        record.credential = if form.contains_key("client_assertion") {
            Some(Credential::Assertion)
        } else if form.contains_key("client_secret") {
            Some(Credential::Secret)
        } else {
            None
        };
        TokenRequest { tenant, form }
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.form.get(name).map(String::as_str)
    }

    fn required(&self, name: &str) -> Result<&str, SignInFailure> {
        self.param(name).ok_or_else(|| {
            SignInFailure::bad_request(
                "invalid_request",
                900144,
                format!("The request body must contain the following parameter: '{name}'."),
            )
        })
    }
}

/// A refusal from the token endpoint.
struct SignInFailure {
    status: StatusCode,
    error: &'static str,
    aadsts: u32,
    description: String,
}

impl SignInFailure {
    fn bad_request(error: &'static str, aadsts: u32, description: String) -> SignInFailure {
        SignInFailure { status: StatusCode::BAD_REQUEST, error, aadsts, description }
    }

    fn invalid_client(aadsts: u32, description: String) -> SignInFailure {
        SignInFailure { status: StatusCode::UNAUTHORIZED, error: "invalid_client", aadsts, description }
    }
}

pub(crate) fn issue_token(sim: &Simulation, request: &TokenRequest, exchange: &mut Exchange) -> HttpResponse {
    sign_in(sim, request, exchange)
        .unwrap_or_else(|failure| sign_in_error(failure.status, failure.error, failure.aadsts, &failure.description))
}

fn sign_in(sim: &Simulation, request: &TokenRequest, exchange: &mut Exchange) -> Result<HttpResponse, SignInFailure> {
    let config = sim.config();
    let tenant = request.tenant.as_str();
    let mut state = lock(&sim.state);
    if !state.tenant_exists(tenant) {
        return Err(SignInFailure::bad_request(
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        ));
    }
    let grant_type = request.required("grant_type")?;
    if grant_type != "client_credentials" {
        return Err(SignInFailure::bad_request(
            "unsupported_grant_type",
            70003,
            format!(
                "The app requested an unsupported grant type '{grant_type}'; the simulator serves 'client_credentials'."
            ),
        ));
    }
    let client_id = request.required("client_id")?;
    let app = state.app(tenant, client_id).ok_or_else(|| {
        SignInFailure::bad_request(
            "unauthorized_client",
            700016,
            format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'."),
        )
    })?;
    let scope = request.required("scope")?;
    if !config.accepted_scopes.iter().any(|accepted| accepted == scope) {
        return Err(SignInFailure::bad_request(
            "invalid_scope",
            70011,
            format!(
                "The provided value for the input parameter 'scope' is not valid. The scope '{scope}' is not valid; accepted: {:?}.",
                config.accepted_scopes
            ),
        ));
    }

    match (request.param("client_secret"), request.param("client_assertion")) {
        (Some(secret), None) => {
            if app.secret.as_deref() != Some(secret) {
                return Err(SignInFailure::invalid_client(
                    7000215,
                    format!(
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                    ),
                ));
            }
        }
        (None, Some(assertion)) => {
            if request.required("client_assertion_type")? != JWT_BEARER {
                return Err(SignInFailure::bad_request(
                    "invalid_request",
                    70002,
                    format!("Error validating credentials: 'client_assertion_type' must be '{JWT_BEARER}'."),
                ));
            }
            let decoded = DecodedAssertion::parse(assertion)
                .map_err(|rejection| SignInFailure::invalid_client(rejection.code, rejection.description))?;
            exchange.record.claims = Some(decoded.summary());
            let audiences = token_endpoint_urls(sim, tenant, exchange);
            let expectations = Expectations { client_id, certificate: app.certificate.as_ref(), audiences: &audiences };
            decoded
                .verify(&expectations, SystemTime::now())
                .map_err(|rejection| SignInFailure::invalid_client(rejection.code, rejection.description))?;
        }
        (secret, _) => {
            let which = if secret.is_some() { "both" } else { "neither" };
            return Err(SignInFailure::bad_request(
                "invalid_request",
                7000218,
                format!(
                    "The request body must contain exactly one of the following parameters: 'client_assertion' or 'client_secret'; it has {which}."
                ),
            ));
        }
    }

    let caller = Caller { tenant_id: tenant.to_owned(), client_id: client_id.to_owned() };
    let lifetime = config.token_lifetime_secs;
    let access_token = state.issue_token(caller, Duration::from_secs(lifetime));
    Ok(json(
        StatusCode::OK,
        &json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        }),
    ))
}

/// The URLs an assertion's `aud` may name: this endpoint under the simulator's base URL, and
/// under the host name the client used (`localhost` instead of `127.0.0.1`, say).
fn token_endpoint_urls(sim: &Simulation, tenant: &str, exchange: &Exchange) -> Vec<String> {
    let path = format!("/{tenant}/oauth2/v2.0/token");
    let mut urls = vec![format!("{}{path}", sim.base_url)];
    if let Some(host) = exchange.header(HOST) {
        let scheme = sim.base_url.split_once("://").map_or("http", |(scheme, _)| scheme);
        urls.push(format!("{scheme}://{host}{path}"));
    }
    urls
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum IdentityEndpoint {
    Imds,
    AppService,
}

/// A managed identity token request (IMDS or App Service shape).
pub(crate) struct IdentityRequest {
    endpoint: IdentityEndpoint,
    client_id: String,
}

impl IdentityRequest {
    pub(crate) fn imds(exchange: &mut Exchange) -> IdentityRequest {
        IdentityRequest::new(IdentityEndpoint::Imds, exchange)
    }

    pub(crate) fn app_service(exchange: &mut Exchange) -> IdentityRequest {
        IdentityRequest::new(IdentityEndpoint::AppService, exchange)
    }

    fn new(endpoint: IdentityEndpoint, exchange: &mut Exchange) -> IdentityRequest {
        let client_id = exchange.query_param("client_id").unwrap_or_else(|| SYSTEM_IDENTITY_CLIENT_ID.to_owned());
        let record = &mut exchange.record;
        record.tenant_id = Some(DEFAULT_TENANT_ID.to_owned());
        record.client_id = Some(client_id.clone());
        record.credential = Some(match endpoint {
            IdentityEndpoint::Imds => Credential::Imds,
            IdentityEndpoint::AppService => Credential::AppService,
        });
        IdentityRequest { endpoint, client_id }
    }
}

pub(crate) fn issue_identity_token(sim: &Simulation, request: &IdentityRequest, exchange: &Exchange) -> HttpResponse {
    let refuse =
        |status: StatusCode, error: &str, description: &str| managed_identity_error(status, error, description);
    match request.endpoint {
        IdentityEndpoint::Imds => {
            if exchange.header("metadata") != Some("true") {
                return refuse(StatusCode::BAD_REQUEST, "invalid_request", "Required metadata header not specified");
            }
            if exchange.query_param("api-version").is_none() {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Required query variable 'api-version' is missing",
                );
            }
        }
        IdentityEndpoint::AppService => {
            if exchange.header("x-identity-header") != Some(DEFAULT_IDENTITY_HEADER) {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "invalid_request",
                    "The X-IDENTITY-HEADER header is missing or does not match IDENTITY_HEADER",
                );
            }
            if exchange.query_param("api-version").as_deref() != Some(APP_SERVICE_API_VERSION) {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "The query variable 'api-version' must be 2019-08-01",
                );
            }
        }
    }
    if let Some(selector) = ["object_id", "principal_id", "mi_res_id", "msi_res_id"]
        .into_iter()
        .find(|name| exchange.query_param(name).is_some())
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("The simulator selects user-assigned identities by 'client_id' only, not '{selector}'"),
        );
    }
    let config = sim.config();
    let Some(resource) = exchange.query_param("resource") else {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request", "Required query variable 'resource' is missing");
    };
    if !resource_accepted(&config, &resource) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            &format!(
                "AADSTS500011: The resource principal named {resource} was not found in the tenant named {DEFAULT_TENANT_ID}."
            ),
        );
    }

    let mut state = lock(&sim.state);
    if !state.identity_exists(&request.client_id) {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request", "Identity not found");
    }
    let lifetime = config.token_lifetime_secs;
    let caller = Caller { tenant_id: DEFAULT_TENANT_ID.to_owned(), client_id: request.client_id.clone() };
    let access_token = state.issue_token(caller, Duration::from_secs(lifetime));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let expires_on = (now + lifetime).to_string();
    // Both services send numbers as strings.
    let body = match request.endpoint {
        IdentityEndpoint::Imds => json!({
            "access_token": access_token,
            "refresh_token": "",
            "expires_in": lifetime.to_string(),
            "expires_on": expires_on,
            "ext_expires_in": lifetime.to_string(),
            "not_before": now.to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": request.client_id,
        }),
        IdentityEndpoint::AppService => json!({
            "access_token": access_token,
            "expires_on": expires_on,
            "resource": resource,
            "token_type": "Bearer",
            "client_id": request.client_id,
        }),
    };
    json(StatusCode::OK, &body)
}

/// Managed identity asks for a resource, not a scope: an accepted scope without `/.default`
/// (a trailing `/` on the resource is fine).
fn resource_accepted(config: &Config, resource: &str) -> bool {
    let resource = resource.trim_end_matches('/');
    config
        .accepted_scopes
        .iter()
        .any(|scope| scope.strip_suffix("/.default").is_some_and(|scope_resource| scope_resource == resource))
}
