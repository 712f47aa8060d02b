//! One request on its way through the simulator: find its endpoint, work out who and what it is
//! about, apply a fault if a rule picks it, answer, and log it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, RANGE};
use hyper::{HeaderMap, Method, Request, StatusCode};

use crate::auth::{IdentityRequest, TokenRequest};
use crate::faults::{Fault, RequestKey};
use crate::request_log::{Port, RequestRecord, SentBytes, header_names, redact_query};
use crate::responses::{ErrorStyle, HttpResponse};
use crate::routes::{ApiCall, NoRoute, Route, route};
use crate::server::ConnectionControl;
use crate::simulation::Simulation;
use crate::state::{Caller, LinkTarget, TokenProblem};
use crate::{api, auth, control, download, lock};

/// Request bodies (forms, small JSON) are never larger than this...
const MAX_REQUEST_BODY: usize = 1 << 20;
/// ... but the control API's may carry an answer of many megabytes (an `answer` fault's body).
const MAX_CONTROL_BODY: usize = 256 << 20;

pub(crate) struct Exchange {
    pub(crate) method: Method,
    pub(crate) path: String,
    /// As sent: it may hold secrets, so it never reaches the log or a message.
    query: Option<String>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) connection: Arc<ConnectionControl>,
    /// What the request log will say; filled in as the request is understood.
    pub(crate) record: RequestRecord,
}

impl Exchange {
    pub(crate) fn header(&self, name: impl hyper::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The first value of query parameter `name`, decoded.
    pub(crate) fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs().into_iter().find(|(key, _)| key == name).map(|(_, value)| value)
    }

    pub(crate) fn query_pairs(&self) -> Vec<(String, String)> {
        self.query.as_deref().and_then(|query| serde_urlencoded::from_str(query).ok()).unwrap_or_default()
    }
}

/// The connection is to be closed without an answer (the `drop` fault).
#[derive(Debug)]
pub(crate) struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("connection dropped by a fault rule")
    }
}

impl std::error::Error for DropConnection {}

pub(crate) async fn handle(
    sim: Arc<Simulation>,
    port: Port,
    connection: Arc<ConnectionControl>,
    request: Request<Incoming>,
) -> Result<HttpResponse, DropConnection> {
    let arrived_at = sim.clock.now();
    let (parts, body) = request.into_parts();
    let control = port == Port::Api && parts.uri.path().starts_with("/_sim/");
    // The live response library takes files (scripts, tools) of up to 250 MB.
    let upload = port == Port::Api && parts.uri.path().eq_ignore_ascii_case("/api/libraryfiles");
    let limit = if control || upload { MAX_CONTROL_BODY } else { MAX_REQUEST_BODY };
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(ErrorStyle::Api.error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                "The request body could not be read, or is larger than the simulator accepts (1 MiB; 256 MiB for /_sim/ and /api/libraryfiles).",
            ));
        }
    };
    let path = parts.uri.path().to_owned();
    if control {
        return Ok(control::handle(&sim, &parts.method, &path, parts.uri.query(), &body));
    }

    let query = parts.uri.query().map(str::to_owned);
    let mut exchange = Exchange {
        record: RequestRecord {
            seq: 0,
            time_ms: arrived_at.as_millis(),
            port,
            method: parts.method.to_string(),
            path: path.clone(),
            query: query.as_deref().map(redact_query),
            endpoint: None,
            headers: header_names(&parts.headers),
            status: None,
            action_id: None,
            tenant_id: None,
            client_id: None,
            credential: None,
            fault: None,
            range: None,
            body_bytes: 0,
            claims: None,
        },
        method: parts.method,
        path,
        query,
        headers: parts.headers,
        body,
        connection,
    };
    let answer = answer(&sim, port, &mut exchange).await;
    let sent = match &answer {
        Ok(response) => {
            exchange.record.status = Some(response.status().as_u16());
            response.body().sent_bytes()
        }
        Err(DropConnection) => SentBytes::default(),
    };
    let record = exchange.record;
    tracing::info!(
        endpoint = record.endpoint.map(tracing::field::debug),
        fault = record.fault.as_ref().map(tracing::field::debug),
        "{} {} -> {}",
        record.method,
        record.path,
        record.status.map_or_else(|| "dropped".to_owned(), |status| status.to_string()),
    );
    sim.log.record(record, sent);
    answer
}

/// Who and what a request is about, worked out before faults apply (rules match on it).
enum Target {
    Token(TokenRequest),
    ManagedIdentity(IdentityRequest),
    Api(ApiCall, Result<Caller, TokenProblem>),
    Download(Option<LinkTarget>),
}

async fn answer(sim: &Simulation, port: Port, exchange: &mut Exchange) -> Result<HttpResponse, DropConnection> {
    let route = match route(port, &exchange.method, &exchange.path) {
        Ok(route) => route,
        Err(no_route) => return Ok(no_route_answer(port, no_route)),
    };
    let endpoint = route.kind();
    exchange.record.endpoint = Some(endpoint);
    let target = identify(sim, route, exchange);

    let action_id = exchange.record.action_id.as_deref();
    let fault = lock(&sim.faults)
        .pick(&RequestKey { endpoint, action_id, client_id: exchange.record.client_id.as_deref() })
        .or_else(|| {
            let package_size = match &target {
                Target::Download(Some(link)) => Some(link.package_size),
                _ => None,
            };
            lock(&sim.chaos).as_mut()?.pick(endpoint, action_id, package_size)
        });
    exchange.record.fault = fault.clone();
    match &fault {
        Some(Fault::Drop) => return Err(DropConnection),
        Some(Fault::Delay { ms }) => tokio::time::sleep(Duration::from_millis(*ms)).await,
        Some(Fault::Page { items, item }) => return Ok(api::page_fault(sim, exchange, *items, item)),
        Some(Fault::Raw { response }) => return Ok(exchange.connection.replace_answer(response.as_bytes())),
        Some(fault) => {
            if let Some(response) = fault.error_answer(endpoint.error_style()) {
                return Ok(response);
            }
        }
        None => {}
    }

    Ok(match target {
        Target::Token(request) => auth::issue_token(sim, &request, exchange),
        Target::ManagedIdentity(request) => auth::issue_identity_token(sim, &request, exchange),
        Target::Api(call, caller) => api::answer(sim, call, caller, exchange).await,
        Target::Download(link) => download::serve(sim, link, fault.as_ref(), exchange).await,
    })
}

fn identify(sim: &Simulation, route: Route, exchange: &mut Exchange) -> Target {
    match route {
        Route::Token { tenant } => Target::Token(TokenRequest::new(tenant, exchange)),
        Route::Imds => Target::ManagedIdentity(IdentityRequest::imds(exchange)),
        Route::AppServiceIdentity => Target::ManagedIdentity(IdentityRequest::app_service(exchange)),
        Route::Api(call) => {
            let caller = lock(&sim.state).authenticate(exchange.header(AUTHORIZATION));
            if let Ok(caller) = &caller {
                exchange.record.tenant_id = Some(caller.tenant_id.clone());
                exchange.record.client_id = Some(caller.client_id.clone());
            }
            if let ApiCall::MachineAction { action_id }
            | ApiCall::GetPackageUri { action_id }
            | ApiCall::CancelAction { action_id }
            | ApiCall::LiveResponseResultLink { action_id, .. } = &call
            {
                exchange.record.action_id = Some(action_id.clone());
            }
            Target::Api(call, caller)
        }
        Route::Download => {
            let link = exchange.query_param("token").and_then(|token| lock(&sim.state).link(&token));
            if let Some(link) = &link {
                exchange.record.action_id = Some(link.action_id.clone());
                exchange.record.tenant_id = Some(link.caller.tenant_id.clone());
                exchange.record.client_id = Some(link.caller.client_id.clone());
            }
            exchange.record.range = exchange.header(RANGE).map(str::to_owned);
            Target::Download(link)
        }
    }
}

fn no_route_answer(port: Port, no_route: NoRoute) -> HttpResponse {
    let (status, code, message) = match no_route {
        NoRoute::NotFound => (StatusCode::NOT_FOUND, "ResourceNotFound", "The simulator serves no such path."),
        NoRoute::MethodNotAllowed => (
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The simulator does not serve this method on this path.",
        ),
    };
    let style = match port {
        Port::Api => ErrorStyle::Api,
        Port::Download => ErrorStyle::Storage,
    };
    style.error(status, code, message)
}
