//! Live Response: sessions of commands on a device (`POST /api/machines/{id}/runliveresponse`),
//! their results in Azure Blob storage behind SAS links
//! (`GET /api/machineactions/{id}/GetLiveResponseResultDownloadLink(index=N)`), and the library of
//! scripts and files they use (`/api/libraryfiles`).
//!
//! What a command does is decided when the session starts, from what it asks:
//! - `GetFile` (`Path`) brings back `live_response_file_size` deterministic bytes (stored
//!   gzip-compressed with `gzip_results`); a path containing `missing` fails with an error.
//! - `RunScript` (`ScriptName`, `Args`) needs the script in the library (else it fails); it
//!   brings back a JSON transcript. A script whose name starts with `fail` exits with 1 and
//!   writes to its error stream; one whose name starts with `hang` never ends, and the session
//!   ends TimeOut after the service's 10 minutes.
//! - `PutFile` (`FileName`) needs the file in the library; it brings back nothing.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::StatusCode;
use hyper::header::{CONTENT_TYPE, RETRY_AFTER};
use serde_json::{Value, json};

use crate::blob_store::{BLOCK, BlobProperties};
use crate::clock::{SimClock, SimTime};
use crate::config::Schedule;
use crate::exchange::Exchange;
use crate::lock;
use crate::responses::{HttpResponse, api_error, iso_timestamp, json, no_content, retry_after};
use crate::simulation::Simulation;
use crate::state::{Action, ActionStatus, Caller, NewAction, Outcome};

pub(crate) const LIVE_RESPONSE_ACTION_TYPE: &str = "LiveResponse";
/// Where the real service says its entities are described.
const METADATA: &str = "https://api.security.microsoft.com/api/$metadata";
/// The service ends a RunScript after this long.
const SCRIPT_TIMEOUT_SECS: u64 = 600;

/// What the commands of a session do.
pub(crate) struct Session {
    pub(crate) commands: Vec<Command>,
    /// The blob of each command's result, once written to the store.
    stored: Vec<tokio::sync::OnceCell<String>>,
}

pub(crate) struct Command {
    /// `{"type", "params"}` as the request gave it.
    request: Value,
    outcome: CommandOutcome,
}

#[derive(Clone)]
pub(crate) enum CommandOutcome {
    /// A GetFile: `size` bytes, stored gzip-compressed or not.
    File { size: u64, gzip: bool },
    /// A RunScript's transcript (JSON).
    Transcript(Vec<u8>),
    /// Done, with no result to download (PutFile).
    NoResult,
    /// The command fails with these errors, ending the session Failed.
    Failed(Vec<String>),
    /// The command never ends: the session ends TimeOut.
    Hangs,
}

/// A file in the live response library.
#[derive(Clone)]
pub(crate) struct LibraryFile {
    pub(crate) bytes: Vec<u8>,
    description: String,
    parameters_description: Option<String>,
    has_parameters: bool,
    created_by: String,
    created: SystemTime,
    updated: SystemTime,
}

/// `POST /api/machines/{id}/runliveresponse` with `{"Commands": [...], "Comment": "..."}`.
pub(crate) fn run(
    sim: &Simulation,
    caller: &Caller,
    machine_id: &str,
    exchange: &mut Exchange,
    now: SimTime,
) -> HttpResponse {
    let bad_request = |message: &str| api_error(StatusCode::BAD_REQUEST, "InvalidRequestBody", message);
    let Ok(body) = serde_json::from_slice::<Value>(&exchange.body) else {
        return bad_request("The request body must be JSON: {\"Commands\": [...], \"Comment\": \"...\"}.");
    };
    let Some(comment) = body.get("Comment").and_then(Value::as_str) else {
        return bad_request("The request body must have a string 'Comment'.");
    };
    let requested = match body.get("Commands").and_then(Value::as_array) {
        Some(commands) if !commands.is_empty() => commands,
        _ => return bad_request("The request body must have a non-empty array 'Commands'."),
    };
    let config = sim.config();
    let mut state = lock(&sim.state);
    let Some(machine) = state.machine(machine_id) else {
        return api_error(StatusCode::NOT_FOUND, "ResourceNotFound", &format!("Machine {machine_id} was not found."));
    };
    let mut commands = Vec::with_capacity(requested.len());
    for (index, command) in requested.iter().enumerate() {
        match plan(command, &state.library, &config) {
            Ok(outcome) => commands.push(Command { request: command.clone(), outcome }),
            Err(message) => return bad_request(&format!("Command {index}: {message}")),
        }
    }
    if state.has_running_action(machine_id, now) {
        return api_error(
            StatusCode::BAD_REQUEST,
            "ActiveRequestAlreadyExists",
            "Action is already in progress: the device runs another live response session or action.",
        );
    }
    let running = state.running_sessions(now);
    if running >= config.max_live_response_sessions {
        let mut response = api_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            &format!(
                "The tenant runs {running} live response sessions, the most allowed at once ({}). Try again when one has ended.",
                config.max_live_response_sessions
            ),
        );
        response.headers_mut().insert(RETRY_AFTER, retry_after(30, false));
        return response;
    }
    // The first command that fails or hangs decides how the session ends.
    let (outcome, in_progress_secs) = commands
        .iter()
        .find_map(|command| match command.outcome {
            CommandOutcome::Failed(_) => Some((Outcome::Failed, config.live_response_schedule.in_progress_secs)),
            CommandOutcome::Hangs => Some((Outcome::TimeOut, SCRIPT_TIMEOUT_SECS)),
            _ => None,
        })
        .unwrap_or((Outcome::Succeeded, config.live_response_schedule.in_progress_secs));
    let stored = commands.iter().map(|_| tokio::sync::OnceCell::new()).collect();
    let new = NewAction {
        id: uuid::Uuid::new_v4().to_string(),
        action_type: LIVE_RESPONSE_ACTION_TYPE.to_owned(),
        age: Duration::ZERO,
        machine_id: machine_id.to_owned(),
        computer_dns_name: machine.computer_dns_name,
        requestor: caller.client_id.clone(),
        comment: comment.to_owned(),
        schedule: Schedule { pending_secs: config.live_response_schedule.pending_secs, in_progress_secs },
        outcome,
        package_size: config.package_size,
        package_layout: Default::default(),
        quoted_link: None,
        content_md5: None,
        visible_after: Duration::ZERO,
        queued: !state.is_online(machine_id),
        live_response: Some(Arc::new(Session { commands, stored })),
    };
    match state.add_action(new, now) {
        Ok(action) => {
            exchange.record.action_id = Some(action.id.clone());
            json(StatusCode::CREATED, &crate::api::machine_action_entity(action, now, &sim.clock))
        }
        Err(conflict) => api_error(StatusCode::CONFLICT, "Conflict", &conflict.to_string()),
    }
}

/// What `command` will do, or why the service refuses it.
fn plan(
    command: &Value,
    library: &std::collections::BTreeMap<String, LibraryFile>,
    config: &crate::Config,
) -> Result<CommandOutcome, String> {
    let kind = command.get("type").and_then(Value::as_str).ok_or("a command needs a string 'type'")?;
    let param = |key: &str| -> Option<String> {
        command.get("params")?.as_array()?.iter().find_map(|param| {
            let found = param.get("key")?.as_str()?.eq_ignore_ascii_case(key);
            found.then(|| param.get("value")?.as_str().map(str::to_owned)).flatten()
        })
    };
    match kind {
        "GetFile" => {
            let path = param("Path").ok_or("GetFile needs the parameter 'Path'")?;
            if path.to_ascii_lowercase().contains("missing") {
                return Ok(CommandOutcome::Failed(vec![format!("File {path} was not found on the device.")]));
            }
            Ok(CommandOutcome::File { size: config.live_response_file_size, gzip: config.gzip_results })
        }
        "RunScript" => {
            let name = param("ScriptName").ok_or("RunScript needs the parameter 'ScriptName'")?;
            let args = param("Args").unwrap_or_default();
            if !library.contains_key(&name) {
                return Ok(CommandOutcome::Failed(vec![format!("Script {name} is not in the live response library.")]));
            }
            let lower = name.to_ascii_lowercase();
            if lower.starts_with("hang") {
                return Ok(CommandOutcome::Hangs);
            }
            let failing = lower.starts_with("fail");
            let transcript = json!({
                "script_name": name,
                "exit_code": if failing { 1 } else { 0 },
                "script_output": format!("Ran {name} with arguments '{args}' on the simulated device.\n"),
                "script_errors": if failing { format!("{name}: something went wrong (simulated)\n") } else { String::new() },
            });
            Ok(CommandOutcome::Transcript(serde_json::to_vec(&transcript).expect("JSON serializes")))
        }
        "PutFile" => {
            let name = param("FileName").ok_or("PutFile needs the parameter 'FileName'")?;
            if !library.contains_key(&name) {
                return Ok(CommandOutcome::Failed(vec![format!("File {name} is not in the live response library.")]));
            }
            Ok(CommandOutcome::NoResult)
        }
        other => Err(format!("the simulator runs GetFile, RunScript and PutFile commands, not '{other}'")),
    }
}

/// The `commands` of a live response MachineAction at `now`.
pub(crate) fn commands_json(action: &Action, now: SimTime, clock: &SimClock) -> Value {
    let Some(session) = &action.live_response else { return json!([]) };
    let status = action.status(now);
    let failing = session
        .commands
        .iter()
        .position(|command| matches!(command.outcome, CommandOutcome::Failed(_) | CommandOutcome::Hangs));
    let (started, ended) = action.command_times(now, clock);
    let commands: Vec<Value> = session
        .commands
        .iter()
        .enumerate()
        .map(|(index, command)| {
            let (command_status, errors) = command_status(status, failing, index, &command.outcome);
            json!({
                "index": index,
                "startTime": started.map(iso_timestamp),
                "endTime": ended.filter(|_| command_status != "InProgress" && command_status != "Created").map(iso_timestamp),
                "commandStatus": command_status,
                "errors": errors,
                "command": command.request,
            })
        })
        .collect();
    Value::Array(commands)
}

/// A command's `commandStatus` and `errors`, from its session's status.
fn command_status(
    status: ActionStatus,
    failing: Option<usize>,
    index: usize,
    outcome: &CommandOutcome,
) -> (&'static str, Vec<String>) {
    match status {
        ActionStatus::Pending => ("Created", Vec::new()),
        ActionStatus::InProgress => ("InProgress", Vec::new()),
        ActionStatus::Finished(Outcome::Succeeded) => ("Completed", Vec::new()),
        ActionStatus::Finished(_) => match failing {
            Some(failing) if index < failing => ("Completed", Vec::new()),
            Some(failing) if index == failing => match outcome {
                CommandOutcome::Failed(errors) => ("Failed", errors.clone()),
                _ => ("Failed", vec![format!("The command timed out after {} minutes.", SCRIPT_TIMEOUT_SECS / 60)]),
            },
            _ => ("Created", Vec::new()),
        },
    }
}

/// `GET /api/machineactions/{id}/GetLiveResponseResultDownloadLink(index=N)`: writes the result
/// to the blob store the first time it is asked for, and answers a fresh SAS link to it.
pub(crate) async fn result_link(sim: &Simulation, action_id: &str, index: Option<usize>, now: SimTime) -> HttpResponse {
    let Some(index) = index else {
        return api_error(StatusCode::BAD_REQUEST, "BadRequest", "index must be a whole number: (index=0)");
    };
    let (session, status) = {
        let state = lock(&sim.state);
        let Some(action) = state.action(action_id, now) else {
            return api_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                &format!("Machine action {action_id} was not found."),
            );
        };
        let Some(session) = action.live_response.clone() else {
            return api_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                &format!("Machine action {action_id} is not a live response session."),
            );
        };
        (session, action.status(now))
    };
    let Some(command) = session.commands.get(index) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!(
                "Machine action {action_id} has {} commands; there is no command {index}.",
                session.commands.len()
            ),
        );
    };
    let failing =
        session.commands.iter().position(|c| matches!(c.outcome, CommandOutcome::Failed(_) | CommandOutcome::Hangs));
    let (command_status, _) = command_status(status, failing, index, &command.outcome);
    let has_result = matches!(command.outcome, CommandOutcome::File { .. } | CommandOutcome::Transcript(_));
    if command_status != "Completed" || !has_result {
        return api_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!("Command {index} of machine action {action_id} has no result (status {command_status})."),
        );
    }
    let Some(store) = &sim.blob_store else {
        return api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "The simulator was started without a blob store (--blob-endpoint), where live response results are kept.",
        );
    };
    let name = format!("{action_id}/{index}");
    let stored = session.stored[index]
        .get_or_try_init(|| async {
            let (size, blocks, properties) = result_content(action_id, index, &command.outcome);
            store.put(&name, size, blocks, properties).await.map(|()| name.clone())
        })
        .await;
    match stored {
        Ok(name) => {
            let link = store.sas_link(name, Duration::from_secs(sim.config().result_link_ttl_secs));
            json(StatusCode::OK, &json!({"@odata.context": format!("{METADATA}#Edm.String"), "value": link}))
        }
        Err(message) => {
            tracing::error!("{message}");
            api_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", &message)
        }
    }
}

/// Command `index`'s result as stored: its size, its blocks, and the blob's properties.
fn result_content(
    action_id: &str,
    index: usize,
    outcome: &CommandOutcome,
) -> (u64, Box<dyn Iterator<Item = Vec<u8>> + Send>, BlobProperties<'static>) {
    match outcome {
        CommandOutcome::File { size, gzip: false } => {
            let blocks = file_blocks(action_id, index, *size);
            (
                *size,
                Box::new(blocks),
                BlobProperties { content_type: "application/octet-stream", content_encoding: None },
            )
        }
        CommandOutcome::File { size, gzip: true } => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            for block in file_blocks(action_id, index, *size) {
                encoder.write_all(&block).expect("writing to memory");
            }
            let bytes = encoder.finish().expect("writing to memory");
            let size = bytes.len() as u64;
            let blocks: Vec<Vec<u8>> = bytes.chunks(BLOCK).map(<[u8]>::to_vec).collect();
            let properties =
                BlobProperties { content_type: "application/octet-stream", content_encoding: Some("gzip") };
            (size, Box::new(blocks.into_iter()), properties)
        }
        CommandOutcome::Transcript(bytes) => {
            let properties = BlobProperties { content_type: "application/json", content_encoding: None };
            (bytes.len() as u64, Box::new(std::iter::once(bytes.clone())), properties)
        }
        CommandOutcome::NoResult | CommandOutcome::Failed(_) | CommandOutcome::Hangs => {
            let properties = BlobProperties { content_type: "application/octet-stream", content_encoding: None };
            (0, Box::new(std::iter::empty()), properties)
        }
    }
}

/// The bytes of a GetFile's file, in blocks: deterministic for the action and command.
fn file_blocks(action_id: &str, index: usize, size: u64) -> impl Iterator<Item = Vec<u8>> + Send + use<> {
    let mut seed = 0xcbf2_9ce4_8422_2325_u64;
    for byte in action_id.bytes().chain(index.to_le_bytes()) {
        seed = (seed ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let block = BLOCK as u64;
    (0..size.div_ceil(block)).map(move |number| {
        let start = number * block;
        let length = (size - start).min(block) as usize;
        let mut bytes = Vec::with_capacity(length + 8);
        let mut word = start / 8;
        while bytes.len() < length {
            // splitmix64 of the word's position: any block can be made on its own.
            let mut z = seed.wrapping_add(word.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            bytes.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
            word += 1;
        }
        bytes.truncate(length);
        bytes
    })
}

impl Simulation {
    /// Command `index`'s result of live response action `action_id`, exactly as the store holds
    /// it (gzip-compressed when it was stored so).
    pub(crate) fn live_response_result(&self, action_id: &str, index: usize) -> Result<Vec<u8>, crate::ControlError> {
        let session = lock(&self.state)
            .action(action_id, self.clock.now())
            .and_then(|action| action.live_response.clone())
            .ok_or_else(|| crate::ControlError::invalid(format!("there is no live response action {action_id}")))?;
        let command = session
            .commands
            .get(index)
            .ok_or_else(|| crate::ControlError::invalid(format!("action {action_id} has no command {index}")))?;
        let (_, blocks, _) = result_content(action_id, index, &command.outcome);
        Ok(blocks.flatten().collect())
    }

    /// Takes device `machine_id` offline or brings it back online.
    pub(crate) fn set_machine_online(&self, machine_id: &str, online: bool) {
        let now = self.clock.now();
        lock(&self.state).set_online(machine_id, online, now);
    }
}

/// A LibraryFile entity as the service documents it.
fn library_file_entity(name: &str, file: &LibraryFile) -> Value {
    json!({
        "fileName": name,
        "sha256": sha256_hex(&file.bytes),
        "description": file.description,
        "creationTime": iso_timestamp(file.created),
        "lastUpdatedTime": iso_timestamp(file.updated),
        "createdBy": file.created_by,
        "hasParameters": file.has_parameters,
        "parametersDescription": file.parameters_description,
    })
}

/// `GET /api/libraryfiles`.
pub(crate) fn list_library(sim: &Simulation) -> HttpResponse {
    let state = lock(&sim.state);
    let files: Vec<Value> = state.library.iter().map(|(name, file)| library_file_entity(name, file)).collect();
    json(StatusCode::OK, &json!({"@odata.context": format!("{METADATA}#LibraryFiles"), "value": files}))
}

/// `DELETE /api/libraryfiles/{fileName}`.
pub(crate) fn delete_library_file(sim: &Simulation, file_name: &str) -> HttpResponse {
    match lock(&sim.state).library.remove(file_name) {
        Some(_) => no_content(),
        None => api_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!("There is no file {file_name} in the live response library."),
        ),
    }
}

/// `POST /api/libraryfiles`: multipart/form-data with `file`, `Description`,
/// `ParametersDescription`, `HasParameters` and `OverrideIfExists`.
pub(crate) fn upload_library_file(sim: &Simulation, caller: &Caller, exchange: &Exchange) -> HttpResponse {
    let bad_request = |message: &str| api_error(StatusCode::BAD_REQUEST, "InvalidRequestBody", message);
    let boundary = exchange
        .header(CONTENT_TYPE)
        .filter(|content_type| content_type.to_ascii_lowercase().starts_with("multipart/form-data"))
        .and_then(|content_type| content_type.split(';').find_map(|part| part.trim().strip_prefix("boundary=")))
        .map(|boundary| boundary.trim_matches('"').to_owned());
    let Some(boundary) = boundary else {
        return bad_request("The request must be multipart/form-data with a boundary.");
    };
    let Some(parts) = multipart_parts(&exchange.body, &boundary) else {
        return bad_request("The multipart/form-data body could not be read.");
    };
    let text = |name: &str| {
        parts.iter().find(|part| part.name == name).map(|part| String::from_utf8_lossy(&part.body).trim().to_owned())
    };
    let flag = |name: &str| text(name).is_some_and(|value| value.eq_ignore_ascii_case("true"));
    let Some(file) = parts.iter().find(|part| part.name == "file") else {
        return bad_request("The form has no part 'file'.");
    };
    let Some(file_name) = file.file_name.clone().filter(|name| !name.is_empty() && !name.contains(['/', '\\'])) else {
        return bad_request("The part 'file' has no file name (Content-Disposition filename).");
    };
    let Some(description) = text("Description").filter(|description| !description.is_empty()) else {
        return bad_request("The form's 'Description' is required.");
    };
    let mut state = lock(&sim.state);
    let previous = state.library.get(&file_name).cloned();
    if previous.is_some() && !flag("OverrideIfExists") {
        return api_error(
            StatusCode::CONFLICT,
            "Conflict",
            &format!(
                "A file named {file_name} is already in the live response library; set OverrideIfExists to replace it."
            ),
        );
    }
    let now = SystemTime::now();
    let library_file = LibraryFile {
        bytes: file.body.clone(),
        description,
        parameters_description: text("ParametersDescription").filter(|text| !text.is_empty()),
        has_parameters: flag("HasParameters"),
        created_by: caller.client_id.clone(),
        created: previous.map_or(now, |previous| previous.created),
        updated: now,
    };
    let mut entity = library_file_entity(&file_name, &library_file);
    entity["@odata.context"] = Value::String(format!("{METADATA}#LibraryFiles/$entity"));
    state.library.insert(file_name, library_file);
    json(StatusCode::OK, &entity)
}

struct Part {
    name: String,
    file_name: Option<String>,
    body: Vec<u8>,
}

/// The parts of a multipart/form-data body.
fn multipart_parts(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delimiter = format!("--{boundary}").into_bytes();
    let find = |haystack: &[u8], needle: &[u8], from: usize| {
        haystack.get(from..)?.windows(needle.len()).position(|window| window == needle).map(|at| at + from)
    };
    let mut parts = Vec::new();
    let mut at = find(body, &delimiter, 0)? + delimiter.len();
    loop {
        if body.get(at..at + 2) == Some(b"--") {
            return Some(parts);
        }
        let head_start = at + 2; // past CRLF
        let head_end = find(body, b"\r\n\r\n", head_start)?;
        let head = std::str::from_utf8(body.get(head_start..head_end)?).ok()?;
        let next = find(body, &[b"\r\n".as_slice(), &delimiter].concat(), head_end + 4)?;
        let disposition = head.lines().find(|line| line.to_ascii_lowercase().starts_with("content-disposition:"))?;
        let attribute = |key: &str| {
            disposition.split(';').find_map(|piece| {
                let (name, value) = piece.trim().split_once('=')?;
                name.eq_ignore_ascii_case(key).then(|| value.trim().trim_matches('"').to_owned())
            })
        };
        parts.push(Part {
            name: attribute("name")?,
            file_name: attribute("filename"),
            body: body[head_end + 4..next].to_vec(),
        });
        at = next + 2 + delimiter.len();
    }
}

/// A library file's SHA-256, as its entity shows it.
fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_parts_are_read_with_their_names_and_files() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"Description\"\r\n\r\nTriage\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"triage.ps1\"\r\nContent-Type: application/octet-stream\r\n\r\nWrite-Output 1\r\n\r\n--XyZ--\r\n";
        let parts = multipart_parts(body, "XyZ").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "Description");
        assert_eq!(parts[0].body, b"Triage");
        assert_eq!(parts[1].file_name.as_deref(), Some("triage.ps1"));
        assert_eq!(parts[1].body, b"Write-Output 1\r\n");
    }

    #[test]
    fn file_blocks_are_deterministic_and_of_the_right_size() {
        let size = BLOCK as u64 + 13;
        let first: Vec<u8> = file_blocks("a", 0, size).flatten().collect();
        assert_eq!(first.len() as u64, size);
        assert_eq!(first, file_blocks("a", 0, size).flatten().collect::<Vec<u8>>());
        assert_ne!(first[..64], file_blocks("a", 1, 64).flatten().collect::<Vec<u8>>()[..]);
    }
}
