//! The Defender for Endpoint API: read and list machines, collect an investigation package,
//! read, list and cancel machine actions, and get a package's download link.

use std::time::Duration;

use hyper::StatusCode;
use hyper::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use serde_json::{Map, Value, json};

use crate::clock::{SimClock, SimTime};
use crate::config::MAX_PAGE_SIZE;
use crate::exchange::Exchange;
use crate::live_response;
use crate::lock;
use crate::rate_limit::LimitClass;
use crate::responses::{HttpResponse, api_error, iso_timestamp, json, retry_after, with_body};
use crate::routes::ApiCall;
use crate::simulation::Simulation;
use crate::state::{
    Action, ActionStatus, Caller, MachineRegistration, NewAction, Outcome, TokenProblem, default_computer_name,
};

/// Where the real service says its entities are described.
const METADATA: &str = "https://api.security.microsoft.com/api/$metadata";
/// The file name real download links carry.
const PACKAGE_FILE_NAME: &str = "WDATP_Investigation_Package.zip";

pub(crate) async fn answer(
    sim: &Simulation,
    call: ApiCall,
    caller: Result<Caller, TokenProblem>,
    exchange: &mut Exchange,
) -> HttpResponse {
    let caller = match caller {
        Ok(caller) => caller,
        Err(problem) => {
            let mut response = api_error(StatusCode::UNAUTHORIZED, "Unauthorized", problem.message());
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    };
    let forbidden = lock(&sim.state).app(&caller.tenant_id, &caller.client_id).is_some_and(|app| app.forbidden);
    if forbidden {
        return api_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "The application '{}' is not allowed to perform this call (it needs Machine.Read.All and Machine.CollectForensics, and access to the machine's device group).",
                caller.client_id
            ),
        );
    }
    let config = sim.config();
    if config.rate_limit {
        let class = match call {
            ApiCall::GetPackageUri { .. } => LimitClass::GetPackageUri,
            ApiCall::RunLiveResponse { .. } => LimitClass::RunLiveResponse,
            ApiCall::LiveResponseResultLink { .. } => LimitClass::LiveResponseLink,
            ApiCall::ListLibraryFiles | ApiCall::UploadLibraryFile | ApiCall::DeleteLibraryFile { .. } => {
                LimitClass::Library
            }
            _ => LimitClass::Other,
        };
        let admitted = lock(&sim.rate_limiter).admit(&caller, class, &config.rate_limits, sim.clock.now());
        if let Err(seconds) = admitted {
            let mut response = api_error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                &format!("Rate limit is exceeded. Try again in {seconds} seconds."),
            );
            response.headers_mut().insert(RETRY_AFTER, retry_after(seconds, false));
            return response;
        }
    }

    let now = sim.clock.now();
    match call {
        ApiCall::Collect { machine_id } => collect(sim, &caller, &machine_id, exchange, now),
        ApiCall::ListActions => list_actions(sim, exchange, now),
        ApiCall::ListMachines => list_machines(sim, exchange),
        ApiCall::Machine { machine_id } => get_machine(sim, &machine_id),
        ApiCall::CancelAction { action_id } => cancel(sim, &caller, &action_id, exchange, now),
        ApiCall::MachineAction { action_id } => {
            let state = lock(&sim.state);
            match state.action(&action_id, now) {
                Some(action) => json(StatusCode::OK, &machine_action_entity(action, now, &sim.clock)),
                None => action_not_found(&action_id),
            }
        }
        ApiCall::GetPackageUri { action_id } => get_package_uri(sim, &caller, &action_id, now),
        ApiCall::RunLiveResponse { machine_id } => live_response::run(sim, &caller, &machine_id, exchange, now),
        ApiCall::LiveResponseResultLink { action_id, index } => {
            live_response::result_link(sim, &action_id, index, now).await
        }
        ApiCall::ListLibraryFiles => live_response::list_library(sim),
        ApiCall::UploadLibraryFile => live_response::upload_library_file(sim, &caller, exchange),
        ApiCall::DeleteLibraryFile { file_name } => live_response::delete_library_file(sim, &file_name),
    }
}

/// The `Comment` that collect and cancel require in their JSON body.
fn request_comment(exchange: &Exchange) -> Option<String> {
    serde_json::from_slice::<Value>(&exchange.body)
        .ok()
        .and_then(|body| body.get("Comment")?.as_str().map(str::to_owned))
}

/// The answer when `request_comment` finds none.
fn comment_required() -> HttpResponse {
    api_error(StatusCode::BAD_REQUEST, "InvalidRequestBody", "The request body must be JSON with a string 'Comment'.")
}

fn collect(sim: &Simulation, caller: &Caller, machine_id: &str, exchange: &mut Exchange, now: SimTime) -> HttpResponse {
    let Some(comment) = request_comment(exchange) else {
        return comment_required();
    };
    let config = sim.config();
    let mut state = lock(&sim.state);
    let Some(machine) = state.machine(machine_id) else {
        return api_error(StatusCode::NOT_FOUND, "ResourceNotFound", &format!("Machine {machine_id} was not found."));
    };
    if state.has_running_action(machine_id, now) {
        return api_error(StatusCode::BAD_REQUEST, "ActiveRequestAlreadyExists", "Action is already in progress");
    }
    let new = NewAction {
        id: uuid::Uuid::new_v4().to_string(),
        action_type: COLLECT_ACTION_TYPE.to_owned(),
        age: Duration::ZERO,
        machine_id: machine_id.to_owned(),
        computer_dns_name: machine.computer_dns_name,
        requestor: caller.client_id.clone(),
        comment,
        schedule: machine.schedule.unwrap_or(config.collect_schedule),
        outcome: machine.outcome,
        package_size: machine.package_size.unwrap_or(config.package_size),
        package_layout: Default::default(),
        quoted_link: None,
        content_md5: None,
        visible_after: Duration::ZERO,
        queued: false,
        live_response: None,
    };
    match state.add_action(new, now) {
        Ok(action) => {
            exchange.record.action_id = Some(action.id.clone());
            json(StatusCode::CREATED, &machine_action_entity(action, now, &sim.clock))
        }
        Err(conflict) => api_error(StatusCode::CONFLICT, "Conflict", &conflict.to_string()),
    }
}

/// The properties the service lets `$filter` use on machines (`rbacGroupName` is not one: filter
/// on `rbacGroupId`).
const MACHINE_FILTER_PROPERTIES: &[&str] = &[
    "computerDnsName",
    "id",
    "version",
    "deviceValue",
    "aadDeviceId",
    "machineTags",
    "lastSeen",
    "exposureLevel",
    "onboardingStatus",
    "lastIpAddress",
    "healthStatus",
    "osPlatform",
    "riskScore",
    "rbacGroupId",
];

/// The properties the service lets `$filter` use on machine actions.
const ACTION_FILTER_PROPERTIES: &[&str] =
    &["id", "status", "machineId", "type", "requestor", "creationDateTimeUtc", "computerDnsName"];

fn list_machines(sim: &Simulation, exchange: &Exchange) -> HttpResponse {
    let machines: Vec<Value> = {
        let state = lock(&sim.state);
        state.registered_machines().map(|machine| machine_entity(machine, &sim.clock)).collect()
    };
    list(sim, exchange, "/api/machines", "Machines", MACHINE_FILTER_PROPERTIES, machines)
}

fn list_actions(sim: &Simulation, exchange: &Exchange, now: SimTime) -> HttpResponse {
    let actions: Vec<Value> = {
        let state = lock(&sim.state);
        let actions = state.actions_newest_first(now);
        actions.into_iter().map(|action| Value::Object(machine_action(action, now, &sim.clock))).collect()
    };
    list(sim, exchange, "/api/machineactions", "MachineActions", ACTION_FILTER_PROPERTIES, actions)
}

/// One page of `entities` that pass the request's `$filter`: `$top` of them (at most the
/// configured page size) from `$skip` on, with an `@odata.nextLink` to the rest.
fn list(
    sim: &Simulation,
    exchange: &Exchange,
    path: &str,
    entity_set: &str,
    properties: &[&str],
    entities: Vec<Value>,
) -> HttpResponse {
    let bad_request = |message: String| api_error(StatusCode::BAD_REQUEST, "BadRequest", &message);
    let count = |name: &str, value: &str| {
        value.parse::<usize>().map_err(|_| format!("{name} must be a whole number, not '{value}'"))
    };
    let mut filter = None;
    let mut top = None;
    let mut skip = 0;
    for (name, value) in exchange.query_pairs() {
        let parsed = match name.as_str() {
            "$filter" => crate::odata::parse(&value, properties)
                .map(|parsed| filter = Some(parsed))
                .map_err(|why| format!("Invalid filter clause: {why}")),
            "$top" => count("$top", &value).and_then(|n| {
                if !(1..=MAX_PAGE_SIZE).contains(&n) {
                    return Err(format!("$top must be 1 to {MAX_PAGE_SIZE}, not {n}"));
                }
                top = Some(n);
                Ok(())
            }),
            "$skip" => count("$skip", &value).map(|n| skip = n),
            option if option.starts_with('$') => {
                Err(format!("The simulator supports the query options $filter, $top and $skip, not {option}"))
            }
            _ => Ok(()),
        };
        if let Err(message) = parsed {
            return bad_request(message);
        }
    }
    let config = sim.config();
    let page_size = top.unwrap_or(config.page_size).min(config.page_size);
    let mut passing =
        entities.into_iter().filter(|entity| filter.as_ref().is_none_or(|f| f.matches(entity))).skip(skip);
    let value: Vec<Value> = passing.by_ref().take(page_size).collect();
    let mut page = json!({"@odata.context": format!("{METADATA}#{entity_set}"), "value": value});
    if passing.next().is_some() {
        page["@odata.nextLink"] = Value::String(next_link(sim, exchange, path, skip + page_size));
    }
    json(StatusCode::OK, &page)
}

/// The link to the page of this request's list that starts at `skip`.
fn next_link(sim: &Simulation, exchange: &Exchange, path: &str, skip: usize) -> String {
    let mut query: Vec<(String, String)> =
        exchange.query_pairs().into_iter().filter(|(name, _)| name != "$skip").collect();
    query.push(("$skip".to_owned(), skip.to_string()));
    let config = sim.config();
    let root = if config.next_link_base.is_empty() { &sim.base_url } else { &config.next_link_base };
    let query = serde_urlencoded::to_string(&query).expect("strings encode");
    format!("{}{path}?{query}", root.trim_end_matches('/'))
}

/// The `page` fault's answer: `items` copies of `item` as it was given, whatever `$top` asked
/// for, and a link to the next page, so that with the fault on every request a list never ends.
pub(crate) fn page_fault(sim: &Simulation, exchange: &Exchange, items: u64, item: &str) -> HttpResponse {
    let skip = exchange.query_param("$skip").and_then(|skip| skip.parse::<usize>().ok()).unwrap_or(0);
    let next = next_link(sim, exchange, &exchange.path, skip.saturating_add(items as usize));
    let copies = usize::try_from(items).unwrap_or(usize::MAX);
    let mut body = String::with_capacity(copies.saturating_mul(item.len() + 1).min(1 << 30) + next.len() + 64);
    body.push_str(r#"{"value":["#);
    for copy in 0..copies {
        if copy > 0 {
            body.push(',');
        }
        body.push_str(item);
    }
    body.push_str(r#"],"@odata.nextLink":"#);
    body.push_str(&serde_json::to_string(&next).expect("strings serialize"));
    body.push('}');
    with_body(StatusCode::OK, "application/json; charset=utf-8", body.into_bytes())
}

fn get_machine(sim: &Simulation, machine_id: &str) -> HttpResponse {
    let record = lock(&sim.state).machine_record(machine_id);
    match record {
        Some(machine) => {
            let mut entity = machine_entity(&machine, &sim.clock);
            entity["@odata.context"] = Value::String(format!("{METADATA}#Machines/$entity"));
            json(StatusCode::OK, &entity)
        }
        None => api_error(StatusCode::NOT_FOUND, "ResourceNotFound", &format!("Machine {machine_id} was not found.")),
    }
}

/// `POST /api/machineactions/{id}/cancel`: only an action that has not ended can be cancelled.
fn cancel(sim: &Simulation, caller: &Caller, action_id: &str, exchange: &Exchange, now: SimTime) -> HttpResponse {
    let Some(comment) = request_comment(exchange) else {
        return comment_required();
    };
    let mut state = lock(&sim.state);
    let Some(action) = state.action_mut(action_id, now) else {
        return action_not_found(action_id);
    };
    match action.cancel(&caller.client_id, &comment, now) {
        Ok(()) => json(StatusCode::OK, &machine_action_entity(action, now, &sim.clock)),
        Err(status) => api_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            &format!(
                "Machine action {action_id} cannot be cancelled: it is already in a final state ({}).",
                status.as_str()
            ),
        ),
    }
}

/// A Machine as the service documents it.
fn machine_entity(machine: &MachineRegistration, clock: &SimClock) -> Value {
    let started = iso_timestamp(clock.wall_time(SimTime::default()));
    let last_seen = machine
        .last_seen
        .as_deref()
        .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
        .map(|time| iso_timestamp(time.into()))
        .unwrap_or_else(|| started.clone());
    let name = machine.computer_dns_name.clone().unwrap_or_else(|| default_computer_name(&machine.id));
    let os = machine.os_platform.as_deref().unwrap_or("Windows11");
    json!({
        "id": machine.id,
        "computerDnsName": name,
        "firstSeen": started,
        "lastSeen": last_seen,
        "osPlatform": os,
        "osVersion": null,
        "osProcessor": "x64",
        "version": if os.starts_with("Windows") { "22H2" } else { "" },
        "lastIpAddress": "10.0.0.4",
        "lastExternalIpAddress": "203.0.113.4",
        "agentVersion": "10.8760.22621.1105",
        "osBuild": 22621,
        "healthStatus": machine.health_status.as_deref().unwrap_or("Active"),
        "deviceValue": "Normal",
        "rbacGroupId": machine.rbac_group_id.unwrap_or(0),
        "rbacGroupName": machine.rbac_group_name.as_deref().unwrap_or("UnassignedGroup"),
        "riskScore": "None",
        "exposureLevel": "Low",
        "isAadJoined": true,
        "aadDeviceId": null,
        "machineTags": machine.machine_tags,
        "onboardingStatus": "Onboarded",
    })
}

fn get_package_uri(sim: &Simulation, caller: &Caller, action_id: &str, now: SimTime) -> HttpResponse {
    let config = sim.config();
    let mut state = lock(&sim.state);
    let Some(action) = state.action(action_id, now) else {
        return action_not_found(action_id);
    };
    let status = action.status(now);
    if status != ActionStatus::Finished(Outcome::Succeeded) {
        // The service answers 404 for a package that is not (or never will be) there.
        return api_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!(
                "The investigation package of machine action {action_id} is not available (status {}).",
                status.as_str()
            ),
        );
    }
    let quoted = action.quoted_link.unwrap_or(config.quoted_links);
    let token = state.create_link(action_id, caller, Duration::from_secs(config.link_ttl_secs));
    let link = format!("{}/safedownload/{PACKAGE_FILE_NAME}?token={token}", sim.download_url);
    let value = if quoted { format!("\"{link}\"") } else { link };
    json(StatusCode::OK, &json!({"@odata.context": format!("{METADATA}#Edm.String"), "value": value}))
}

fn action_not_found(action_id: &str) -> HttpResponse {
    api_error(StatusCode::NOT_FOUND, "ResourceNotFound", &format!("Machine action {action_id} was not found."))
}

pub(crate) const COLLECT_ACTION_TYPE: &str = "CollectInvestigationPackage";

/// A MachineAction as a single entity (with its `@odata.context`).
pub(crate) fn machine_action_entity(action: &Action, now: SimTime, clock: &SimClock) -> Value {
    let mut entity = machine_action(action, now, clock);
    entity.insert("@odata.context".to_owned(), Value::String(format!("{METADATA}#MachineActions/$entity")));
    Value::Object(entity)
}

/// A MachineAction as the service documents it, at simulated time `now`.
fn machine_action(action: &Action, now: SimTime, clock: &SimClock) -> Map<String, Value> {
    let status = action.status(now);
    let last_update = iso_timestamp(action.last_update(now, clock));
    let cancellation = action.cancellation.as_ref().filter(|cancellation| now >= cancellation.at);
    let cancelled = status == ActionStatus::Finished(Outcome::Cancelled);
    let (cancellation_requestor, cancellation_comment) = match cancellation {
        Some(cancellation) => (Some(cancellation.requestor.clone()), Some(cancellation.comment.clone())),
        None if cancelled => (Some(action.requestor.clone()), Some("Cancelled in the simulator".to_owned())),
        None => (None, None),
    };
    let error_hresult: i32 = match status {
        ActionStatus::Finished(Outcome::Failed) => 0x8000_4005_u32 as i32, // E_FAIL
        ActionStatus::Finished(Outcome::TimeOut) => 0x8007_05B4_u32 as i32, // ERROR_TIMEOUT
        _ => 0,
    };
    let fields = json!({
        "id": action.id,
        "type": action.action_type,
        "title": null,
        "requestor": action.requestor,
        "requestorComment": action.comment,
        "status": status.as_str(),
        "machineId": action.machine_id,
        "computerDnsName": action.computer_dns_name,
        "creationDateTimeUtc": iso_timestamp(action.created(clock)),
        "lastUpdateDateTimeUtc": last_update,
        "cancellationRequestor": cancellation_requestor,
        "cancellationComment": cancellation_comment,
        "cancellationDateTimeUtc": cancelled.then(|| last_update.clone()),
        "errorHResult": error_hresult,
        "scope": null,
        "externalId": null,
        "requestSource": "PublicApi",
        "relatedFileInfo": null,
        "commands": live_response::commands_json(action, now, clock),
        "troubleshootInfo": null,
    });
    match fields {
        Value::Object(fields) => fields,
        _ => unreachable!("a JSON object literal"),
    }
}
