//! What the command line prints: tables for people, JSON for scripts, and exit codes that are
//! the library's statuses.

use std::process::ExitCode;

use serde_json::{Value, json};

use defender_native::{DefenderStatus, Failure, status_name};

pub const EXIT_CODES_HELP: &str = "\
Exit codes (the library's statuses):
  0  OK              every item succeeded
  1  INVALID_ARGUMENT  bad arguments or options (also usage errors)
  2  NOT_READY       the package is not ready yet (Pending / InProgress)
  3  NOT_FOUND       no such device or machine action
  4  UNAUTHORIZED    sign-in refused, or HTTP 401
  5  FORBIDDEN       HTTP 403: permission or device-group access missing
  6  RATE_LIMITED    still throttled after the retries
  7  HTTP            another HTTP status (a refused filter, cancelling an action that has ended)
  8  NETWORK         DNS, connection, TLS
  9  TIMEOUT         a time limit ran out (--wait-minutes; also waiting for another run saving the same file)
  10 IO              local file system
  11 INTEGRITY       a download failed its checks
  12 CANCELLED       the call was cancelled
  13 ACTION_FAILED   the collection or live response session ended Failed, TimeOut or Cancelled
  14 PROTOCOL        the service answered something unexpected
  15 EXISTS          the file exists (use --overwrite)
  16 UNKNOWN_OPTION  an option the library does not have
  99 INTERNAL        a bug; please report it
When several items fail, the exit code is the status of the first one that failed.

--json prints one JSON document on standard output: lists print the service's objects as they
came; collect, wait, link, download, cancel, getfile, runscript, library upload and library
delete print one result per item, in the order given:
{\"id\": \"...\", \"status\": \"OK\", \"code\": 0, ...} (with \"message\" when it failed). A failure
before any item prints {\"status\": \"...\", \"code\": N, \"message\": \"...\"}. Messages also go to
standard error; they never hold a secret.
";

pub fn exit_code(status: DefenderStatus) -> ExitCode {
    ExitCode::from(u8::try_from(status as i32).unwrap_or(1))
}

/// Reports a failure that stopped the command: on standard error, and as JSON on standard
/// output when scripts asked for it.
pub fn fail(failure: &Failure, json: bool) -> ExitCode {
    eprintln!("error: {}", failure.message);
    if json {
        println!("{}", error_json(failure));
    }
    exit_code(failure.status)
}

fn error_json(failure: &Failure) -> Value {
    json!({"status": status_name(failure.status as i32), "code": failure.status as i32, "message": failure.message})
}

/// One item's result for `--json`: `{"id", "status", "code", key: value}` or, failed,
/// `{"id", "status", "code", "message"}`.
pub fn item_json(id: &str, key: &str, result: &Result<Value, Failure>) -> Value {
    match result {
        Ok(value) => json!({"id": id, "status": "OK", "code": 0, key: value}),
        Err(failure) => {
            let mut item = error_json(failure);
            item["id"] = json!(id);
            item
        }
    }
}

/// The status a batch of results exits with: the first failure's, else OK.
pub fn first_failure(statuses: impl IntoIterator<Item = DefenderStatus>) -> DefenderStatus {
    statuses.into_iter().find(|status| *status != DefenderStatus::Ok).unwrap_or(DefenderStatus::Ok)
}

/// Prints `rows` of `entities` as an aligned table: each column a header and the JSON field it shows.
pub fn table(entities: &[Value], columns: &[(&str, &str)]) {
    let cell = |entity: &Value, field: &str| match &entity[field] {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map_or_else(|| item.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> =
        entities.iter().map(|entity| columns.iter().map(|(_, field)| cell(entity, field)).collect()).collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (header, _))| rows.iter().map(|row| row[i].chars().count()).chain([header.len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(columns.iter().map(|(header, _)| *header).collect());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A status's name, from the library: `"NOT_FOUND"`.
pub fn name(status: DefenderStatus) -> &'static str {
    status_name(status as i32)
}
