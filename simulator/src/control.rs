//! The control API under `/_sim/`: the HTTP face of the control methods of
//! [`Simulator`](crate::Simulator), for tests in other languages. It is neither logged nor
//! subject to faults.

use hyper::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::ControlError;
use crate::request_log::RequestFilter;
use crate::responses::{HttpResponse, api_error, json, no_content, with_body};
use crate::simulation::Simulation;
use crate::state::MachineRegistration;

pub(crate) fn handle(sim: &Simulation, method: &Method, path: &str, query: Option<&str>, body: &[u8]) -> HttpResponse {
    let answer = match (method.as_str(), path) {
        ("POST", "/_sim/reset") => {
            sim.reset();
            Ok(no_content())
        }
        ("GET", "/_sim/config") => Ok(json(StatusCode::OK, &sim.config())),
        ("POST", "/_sim/config") => {
            parse(body).and_then(|patch| sim.configure(patch)).map(|config| json(StatusCode::OK, &config))
        }
        ("POST", "/_sim/apps") => parse(body).and_then(|app| sim.register_app(app)).map(|()| no_content()),
        ("POST", "/_sim/identities") => {
            parse(body).and_then(|identity| sim.register_identity(identity)).map(|()| no_content())
        }
        ("POST", "/_sim/machines") => one_or_many::<MachineRegistration>(body)
            .and_then(|machines| machines.into_iter().try_for_each(|machine| sim.configure_machine(machine)))
            .map(|()| no_content()),
        ("POST", "/_sim/actions") => {
            parse(body).and_then(|spec| sim.create_action(spec)).map(|action| json(StatusCode::CREATED, &action))
        }
        ("POST", path) if path.starts_with("/_sim/machines/") && path.ends_with("/online") => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Online {
                online: bool,
            }
            let machine_id = &path["/_sim/machines/".len()..path.len() - "/online".len()];
            parse::<Online>(body).map(|online| {
                sim.set_machine_online(machine_id, online.online);
                no_content()
            })
        }
        ("GET", path) if path.starts_with("/_sim/live_response/") => {
            let rest = &path["/_sim/live_response/".len()..];
            match rest.split_once('/').map(|(action_id, index)| (action_id, index.parse::<usize>())) {
                Some((action_id, Ok(index))) => sim
                    .live_response_result(action_id, index)
                    .map(|bytes| with_body(StatusCode::OK, "application/octet-stream", bytes)),
                _ => Err(ControlError::invalid("use /_sim/live_response/{action_id}/{index}")),
            }
        }
        ("GET", path) if path.starts_with("/_sim/actions/") && path.ends_with("/package") => {
            let action_id = &path["/_sim/actions/".len()..path.len() - "/package".len()];
            sim.package(action_id).map(|bytes| with_body(StatusCode::OK, "application/zip", bytes))
        }
        ("POST", "/_sim/faults") => {
            parse(body).and_then(|rule| sim.add_fault(rule)).map(|id| json(StatusCode::CREATED, &json!({ "id": id })))
        }
        ("DELETE", "/_sim/faults") => {
            sim.clear_faults();
            Ok(no_content())
        }
        ("POST", "/_sim/tokens/revoke") => {
            sim.revoke_tokens();
            Ok(no_content())
        }
        ("GET", "/_sim/requests") => serde_urlencoded::from_str::<RequestFilter>(query.unwrap_or(""))
            .map_err(|error| ControlError::invalid(format!("request log filter: {error}")))
            .map(|filter| {
                let records: Vec<_> = sim.requests().into_iter().filter(|record| filter.matches(record)).collect();
                json(StatusCode::OK, &records)
            }),
        ("DELETE", "/_sim/requests") => {
            sim.clear_requests();
            Ok(no_content())
        }
        _ => {
            return api_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                &format!("There is no control call {method} {path}; see the simulator's README."),
            );
        }
    };
    answer.unwrap_or_else(|error| {
        let status = match error {
            ControlError::Invalid(_) => StatusCode::BAD_REQUEST,
            ControlError::Conflict(_) => StatusCode::CONFLICT,
        };
        api_error(status, "InvalidControlRequest", &error.to_string())
    })
}

/// A body that holds one object or an array of them.
fn one_or_many<T: DeserializeOwned>(body: &[u8]) -> Result<Vec<T>, ControlError> {
    if body.trim_ascii_start().starts_with(b"[") { parse(body) } else { parse(body).map(|one| vec![one]) }
}

/// A JSON body; an empty one counts as `{}` (every field optional).
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ControlError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    serde_json::from_slice(body).map_err(|error| ControlError::invalid(format!("request body: {error}")))
}
