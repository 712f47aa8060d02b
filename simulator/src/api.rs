//! The Defender for Endpoint API: collect an investigation package, read and list machine
//! actions, and get a package's download link.

use std::time::Duration;

use hyper::StatusCode;
use hyper::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use serde_json::{Map, Value, json};

use crate::clock::{SimClock, SimTime};
use crate::exchange::Exchange;
use crate::lock;
use crate::rate_limit::LimitClass;
use crate::responses::{HttpResponse, api_error, iso_timestamp, json, retry_after};
use crate::routes::ApiCall;
use crate::simulation::Simulation;
use crate::state::{Action, ActionStatus, Caller, NewAction, Outcome, TokenProblem};

/// Where the real service says its entities are described.
const METADATA: &str = "https://api.security.microsoft.com/api/$metadata";
/// The file name real download links carry.
const PACKAGE_FILE_NAME: &str = "WDATP_Investigation_Package.zip";

pub(crate) fn answer(
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
        ApiCall::MachineAction { action_id } => {
            let state = lock(&sim.state);
            match state.action(&action_id, now) {
                Some(action) => json(StatusCode::OK, &machine_action_entity(action, now, &sim.clock)),
                None => action_not_found(&action_id),
            }
        }
        ApiCall::GetPackageUri { action_id } => get_package_uri(sim, &caller, &action_id, now),
    }
}

fn collect(sim: &Simulation, caller: &Caller, machine_id: &str, exchange: &mut Exchange, now: SimTime) -> HttpResponse {
    let comment = serde_json::from_slice::<Value>(&exchange.body)
        .ok()
        .and_then(|body| body.get("Comment")?.as_str().map(str::to_owned));
    let Some(comment) = comment else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestBody",
            "The request body must be JSON with a string 'Comment'.",
        );
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
        machine_id: machine_id.to_owned(),
        computer_dns_name: machine.computer_dns_name,
        requestor: caller.client_id.clone(),
        comment,
        schedule: machine.schedule.unwrap_or(config.collect_schedule),
        outcome: machine.outcome,
        package_size: machine.package_size.unwrap_or(config.package_size),
        quoted_link: None,
        content_md5: None,
        visible_after: Duration::ZERO,
    };
    match state.add_action(new, now) {
        Ok(action) => {
            exchange.record.action_id = Some(action.id.clone());
            json(StatusCode::CREATED, &machine_action_entity(action, now, &sim.clock))
        }
        Err(conflict) => api_error(StatusCode::CONFLICT, "Conflict", &conflict.to_string()),
    }
}

fn list_actions(sim: &Simulation, exchange: &Exchange, now: SimTime) -> HttpResponse {
    let mut filter = Vec::new();
    let mut top = None;
    for (name, value) in exchange.query_pairs() {
        let parsed = match name.as_str() {
            "$filter" => parse_filter(&value).map(|clauses| filter = clauses),
            "$top" => value
                .parse::<usize>()
                .map(|count| top = Some(count))
                .map_err(|_| format!("$top must be a whole number, not '{value}'")),
            option if option.starts_with('$') => {
                Err(format!("The simulator supports the query options $filter and $top, not {option}"))
            }
            _ => Ok(()),
        };
        if let Err(message) = parsed {
            return api_error(StatusCode::BAD_REQUEST, "BadRequest", &message);
        }
    }
    let state = lock(&sim.state);
    let value: Vec<Value> = state
        .actions_newest_first(now)
        .into_iter()
        .filter(|action| {
            filter.iter().all(|(field, expected)| {
                let actual = match field {
                    FilterField::MachineId => action.machine_id.as_str(),
                    FilterField::Type => ACTION_TYPE,
                    FilterField::Status => action.status(now).as_str(),
                };
                actual.eq_ignore_ascii_case(expected)
            })
        })
        .take(top.unwrap_or(usize::MAX))
        .map(|action| Value::Object(machine_action(action, now, &sim.clock)))
        .collect();
    json(StatusCode::OK, &json!({"@odata.context": format!("{METADATA}#MachineActions"), "value": value}))
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

const ACTION_TYPE: &str = "CollectInvestigationPackage";

/// A MachineAction as a single entity (with its `@odata.context`).
pub(crate) fn machine_action_entity(action: &Action, now: SimTime, clock: &SimClock) -> Value {
    let mut entity = machine_action(action, now, clock);
    entity.insert("@odata.context".to_owned(), Value::String(format!("{METADATA}#MachineActions/$entity")));
    Value::Object(entity)
}

/// A MachineAction as the service documents it, at simulated time `now`.
fn machine_action(action: &Action, now: SimTime, clock: &SimClock) -> Map<String, Value> {
    let status = action.status(now);
    let last_update = iso_timestamp(clock.wall_time(action.last_update(now)));
    let cancelled = status == ActionStatus::Finished(Outcome::Cancelled);
    let error_hresult: i32 = match status {
        ActionStatus::Finished(Outcome::Failed) => 0x8000_4005_u32 as i32, // E_FAIL
        ActionStatus::Finished(Outcome::TimeOut) => 0x8007_05B4_u32 as i32, // ERROR_TIMEOUT
        _ => 0,
    };
    let fields = json!({
        "id": action.id,
        "type": ACTION_TYPE,
        "title": null,
        "requestor": action.requestor,
        "requestorComment": action.comment,
        "status": status.as_str(),
        "machineId": action.machine_id,
        "computerDnsName": action.computer_dns_name,
        "creationDateTimeUtc": iso_timestamp(clock.wall_time(action.created_at)),
        "lastUpdateDateTimeUtc": last_update,
        "cancellationRequestor": cancelled.then(|| action.requestor.clone()),
        "cancellationComment": cancelled.then_some("Cancelled in the simulator"),
        "cancellationDateTimeUtc": cancelled.then(|| last_update.clone()),
        "errorHResult": error_hresult,
        "scope": null,
        "externalId": null,
        "requestSource": "PublicApi",
        "relatedFileInfo": null,
        "commands": [],
        "troubleshootInfo": null,
    });
    match fields {
        Value::Object(fields) => fields,
        _ => unreachable!("a JSON object literal"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FilterField {
    MachineId,
    Type,
    Status,
}

/// OData `$filter`: `field eq 'value'` clauses joined by `and`; `''` is a quote inside a value.
fn parse_filter(filter: &str) -> Result<Vec<(FilterField, String)>, String> {
    let unsupported = || {
        format!(
            "The simulator supports $filter clauses such as machineId eq '...' joined by 'and' (fields machineId, type, status), not: {filter}"
        )
    };
    let mut clauses = Vec::new();
    let mut rest = filter.trim();
    loop {
        let (field, after_field) = rest.split_once(' ').ok_or_else(unsupported)?;
        let field = match field {
            "machineId" => FilterField::MachineId,
            "type" => FilterField::Type,
            "status" => FilterField::Status,
            _ => return Err(unsupported()),
        };
        let literal = after_field
            .trim_start()
            .strip_prefix("eq ")
            .map(str::trim_start)
            .and_then(|after_eq| after_eq.strip_prefix('\''))
            .ok_or_else(unsupported)?;
        let mut value = String::new();
        let mut characters = literal.char_indices().peekable();
        let mut literal_end = None;
        while let Some((index, character)) = characters.next() {
            if character != '\'' {
                value.push(character);
            } else if characters.next_if(|&(_, next)| next == '\'').is_some() {
                value.push('\'');
            } else {
                literal_end = Some(index + 1);
                break;
            }
        }
        clauses.push((field, value));
        rest = literal[literal_end.ok_or_else(unsupported)?..].trim_start();
        if rest.is_empty() {
            return Ok(clauses);
        }
        rest = rest.strip_prefix("and ").map(str::trim_start).ok_or_else(unsupported)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_clauses_joined_by_and() {
        assert_eq!(
            parse_filter("machineId eq 'abc' and status eq 'Succeeded'"),
            Ok(vec![(FilterField::MachineId, "abc".to_owned()), (FilterField::Status, "Succeeded".to_owned()),])
        );
        assert_eq!(parse_filter("type eq 'it''s and more'"), Ok(vec![(FilterField::Type, "it's and more".to_owned())]));
        for unsupported in [
            "machineId ne 'x'",
            "computerDnsName eq 'x'",
            "status eq 'x' or type eq 'y'",
            "status eq 'unterminated",
            "status eq Succeeded",
        ] {
            assert!(parse_filter(unsupported).is_err(), "{unsupported}");
        }
    }
}
