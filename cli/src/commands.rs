//! The subcommands: find devices and actions, and collect, wait, link, download and cancel for
//! many ids at once.

use std::cell::RefCell;
use std::ffi::{CStr, c_void};
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::live_response::{self, GetFileArgs, LibraryArgs, RunScriptArgs};
use crate::output::{self, first_failure, item_json, table};
use crate::progress::BatchProgress;
use crate::{Session, usage};
use defender_native::{BatchCallbacks, Client, DefenderPhase, DefenderPhaseEvent, DefenderStatus, Failure};

#[derive(Subcommand)]
pub enum Command {
    /// List or find devices: by name (wildcards * and ?), tag, group, health, OS, or a raw OData filter.
    ///
    /// A name without wildcards is matched exactly (ignoring case); `ws-*` becomes
    /// startswith(computerDnsName, 'ws-') on the service; other patterns (`*-db-?`) are asked of
    /// the service by their part before the first wildcard and matched here. The service cannot
    /// filter on the group's name, so --group is matched here. Every value is quoted for OData,
    /// each quote doubled: no value can change the filter.
    Machines(MachinesArgs),
    /// List machine actions, newest first: by type, status, device, age, requestor, or a raw OData filter.
    Actions(ActionsArgs),
    /// Start an investigation package collection on devices (ids or computer names).
    ///
    /// A device already collecting returns its running collection. The computer name of several
    /// devices (a re-imaged machine's old records) picks the one seen last.
    Collect(CollectArgs),
    /// Wait for machine actions to finish (up to --wait-minutes).
    Wait(IdsArgs),
    /// Print the short-lived download links of collections (download them at once: they expire).
    Link(IdsArgs),
    /// Download the packages of collections into a folder, several at once, waiting for
    /// collections still running (up to --wait-minutes).
    Download(DownloadArgs),
    /// Cancel machine actions that have not finished.
    Cancel(CancelArgs),
    /// Fetch files from devices with live response (GetFile): a session per file, waited for
    /// (also while the device runs another session or the tenant runs 25), its file saved and
    /// checked; several at once.
    #[command(name = "getfile")]
    GetFile(GetFileArgs),
    /// Run a script of the live response library on devices, wait, and print its output (its
    /// errors on standard error); --json gives each transcript (script_name, exit_code,
    /// script_output, script_errors).
    #[command(name = "runscript")]
    RunScript(RunScriptArgs),
    /// The tenant's live response library of scripts and files: list, upload, delete.
    Library(LibraryArgs),
}

#[derive(Args)]
pub struct Output {
    /// Print JSON for scripts (see --help for its shape).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct MachinesArgs {
    /// Computer name; * and ? are wildcards.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// A tag the device carries (repeat for several: all must be there).
    #[arg(long, value_name = "TAG")]
    tag: Vec<String>,
    /// Device group name (rbacGroupName), matched here ignoring case.
    #[arg(long, value_name = "NAME")]
    group: Option<String>,
    /// Active, Inactive, ImpairedCommunication, NoSensorData, ...
    #[arg(long, value_name = "STATUS")]
    health: Option<String>,
    /// Windows11, Windows10, WindowsServer2022, Linux, macOS, ...
    #[arg(long, value_name = "PLATFORM")]
    os: Option<String>,
    /// An OData $filter of your own, combined with the options above by `and`.
    #[arg(long, value_name = "ODATA")]
    filter: Option<String>,
    /// Stop after N devices (0: all).
    #[arg(long, value_name = "N", default_value_t = 0)]
    max: u32,
    #[command(flatten)]
    output: Output,
}

#[derive(Args)]
pub struct ActionsArgs {
    /// CollectInvestigationPackage, Isolate, Unisolate, RunAntiVirusScan, ...
    #[arg(long = "type", value_name = "TYPE")]
    action_type: Option<String>,
    /// Pending, InProgress, Succeeded, Failed, TimeOut, Cancelled.
    #[arg(long, value_name = "STATUS")]
    status: Option<String>,
    /// The device: an id or a computer name.
    #[arg(long, value_name = "ID_OR_NAME")]
    machine: Option<String>,
    /// Created since: a date-time (2024-05-01T08:00:00Z), a date (2024-05-01, UTC), or an age
    /// (90m, 24h, 7d).
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Who asked for it (a user's UPN or an app's id).
    #[arg(long, value_name = "WHO")]
    requestor: Option<String>,
    /// An OData $filter of your own, combined with the options above by `and`.
    #[arg(long, value_name = "ODATA")]
    filter: Option<String>,
    /// Stop after N actions (0: all).
    #[arg(long, value_name = "N", default_value_t = 0)]
    max: u32,
    #[command(flatten)]
    output: Output,
}

#[derive(Args)]
pub struct IdsArgs {
    /// Machine action ids; `-` reads them from standard input (whitespace-separated, or the
    /// JSON another subcommand printed).
    #[arg(required = true, value_name = "ACTION_ID")]
    ids: Vec<String>,
    #[command(flatten)]
    output: Output,
}

#[derive(Args)]
pub struct CollectArgs {
    /// Device ids or computer names; `-` reads them from standard input (whitespace-separated,
    /// or the JSON of `machines --json`).
    #[arg(required = true, value_name = "MACHINE")]
    machines: Vec<String>,
    /// The comment recorded with the collections.
    #[arg(long, default_value = "Collected with defender-package")]
    comment: String,
    #[command(flatten)]
    output: Output,
}

/// How packages saved into a folder are named.
#[derive(Args)]
pub struct FileNameArgs {
    /// The file name of each package in the folder: {action_id} (required), {machine_id},
    /// {computer_dns_name}, {computer_name}, and letters, digits, '.', '_', '-'; e.g.
    /// {computer_name}_{action_id}.zip (the library's option file_name_pattern; default
    /// {action_id}.zip).
    #[arg(long, value_name = "PATTERN")]
    file_name_pattern: Option<String>,
}

impl FileNameArgs {
    pub fn apply(&self, client: &Client) -> Result<(), Failure> {
        client.set("file_name_pattern", self.file_name_pattern.as_deref())
    }
}

#[derive(Args)]
pub struct DownloadArgs {
    #[command(flatten)]
    ids: IdsArgs,
    /// The folder that gets <action id>.zip for each (see --file-name-pattern).
    #[arg(long, short, default_value = ".")]
    output: PathBuf,
    #[command(flatten)]
    file_name: FileNameArgs,
    /// Replace existing files.
    #[arg(long)]
    overwrite: bool,
    /// Packages downloaded at once (1 to 64).
    #[arg(long, default_value_t = 4)]
    parallel: u32,
}

#[derive(Args)]
pub struct CancelArgs {
    #[command(flatten)]
    ids: IdsArgs,
    /// Why (recorded with the cancellation).
    #[arg(long, default_value = "Cancelled with defender-package")]
    comment: String,
}

impl Command {
    pub fn json(&self) -> bool {
        match self {
            Command::Machines(args) => args.output.json,
            Command::Actions(args) => args.output.json,
            Command::Collect(args) => args.output.json,
            Command::Wait(args) | Command::Link(args) => args.output.json,
            Command::Download(args) => args.ids.output.json,
            Command::Cancel(args) => args.ids.output.json,
            Command::GetFile(args) => args.json(),
            Command::RunScript(args) => args.json(),
            Command::Library(args) => args.json(),
        }
    }

    /// Runs the command; the status is what the process exits with.
    pub fn run(&self, session: &Session) -> Result<DefenderStatus, Failure> {
        let client = &session.client;
        match self {
            Command::Machines(args) => machines(client, args),
            Command::Actions(args) => actions(client, args),
            Command::Collect(args) => {
                let machines = expand(&args.machines)?;
                per_item(&machines, args.output.json, "action", |machine| {
                    let id = machine_id(client, machine)?;
                    client.collect(&id, Some(&args.comment))
                })
            }
            Command::Wait(args) => per_item(&expand(&args.ids)?, args.output.json, "action", |id| client.wait(id)),
            Command::Link(args) => {
                per_item(&expand(&args.ids)?, args.output.json, "link", |id| client.package_uri(id).map(Value::String))
            }
            Command::Download(args) => download(client, args),
            Command::Cancel(args) => per_item(&expand(&args.ids.ids)?, args.ids.output.json, "action", |id| {
                client.cancel_action(id, Some(&args.comment))
            }),
            Command::GetFile(args) => live_response::get_files(client, args),
            Command::RunScript(args) => live_response::run_script(client, args),
            Command::Library(args) => live_response::library(client, args),
        }
    }
}

const MACHINE_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("NAME", "computerDnsName"),
    ("OS", "osPlatform"),
    ("HEALTH", "healthStatus"),
    ("GROUP", "rbacGroupName"),
    ("LAST SEEN", "lastSeen"),
    ("TAGS", "machineTags"),
];

const ACTION_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("TYPE", "type"),
    ("STATUS", "status"),
    ("DEVICE", "computerDnsName"),
    ("REQUESTOR", "requestor"),
    ("CREATED", "creationDateTimeUtc"),
];

fn machines(client: &Client, args: &MachinesArgs) -> Result<DefenderStatus, Failure> {
    let mut clauses = Vec::new();
    let mut name_here = None;
    if let Some(name) = &args.name {
        let (clause, pattern) = name_filter(name);
        clauses.extend(clause);
        name_here = pattern;
    }
    clauses.extend(args.tag.iter().map(|tag| format!("machineTags/any(tag: tag eq {})", odata(tag))));
    clauses.extend(args.health.iter().map(|health| format!("healthStatus eq {}", odata(health))));
    clauses.extend(args.os.iter().map(|os| format!("osPlatform eq {}", odata(os))));
    clauses.extend(args.filter.iter().map(|filter| format!("({filter})")));
    let filter = (!clauses.is_empty()).then(|| clauses.join(" and "));
    let local = name_here.is_some() || args.group.is_some();
    // Matching here: the cap applies to what passes, so the service is asked for everything.
    let found = client.machines(filter.as_deref(), if local { 0 } else { args.max })?;
    let mut found: Vec<Value> = found
        .into_iter()
        .filter(|machine| {
            let name = machine["computerDnsName"].as_str().unwrap_or_default();
            name_here.as_ref().is_none_or(|pattern| wildcard_match(pattern, name))
        })
        .filter(|machine| {
            let group = machine["rbacGroupName"].as_str().unwrap_or_default();
            args.group.as_ref().is_none_or(|wanted| group.eq_ignore_ascii_case(wanted))
        })
        .collect();
    if local && args.max > 0 {
        found.truncate(args.max as usize);
    }
    list_output(&found, args.output.json, MACHINE_COLUMNS, "devices")
}

fn actions(client: &Client, args: &ActionsArgs) -> Result<DefenderStatus, Failure> {
    let mut clauses = Vec::new();
    clauses.extend(args.action_type.iter().map(|kind| format!("type eq {}", odata(kind))));
    clauses.extend(args.status.iter().map(|status| format!("status eq {}", odata(status))));
    if let Some(machine) = &args.machine {
        clauses.push(format!("machineId eq {}", odata(&machine_id(client, machine)?)));
    }
    if let Some(since) = &args.since {
        clauses.push(format!("creationDateTimeUtc ge {}", since_filter(since, SystemTime::now())?));
    }
    clauses.extend(args.requestor.iter().map(|who| format!("requestor eq {}", odata(who))));
    clauses.extend(args.filter.iter().map(|filter| format!("({filter})")));
    let filter = (!clauses.is_empty()).then(|| clauses.join(" and "));
    let found = client.machine_actions(filter.as_deref(), args.max)?;
    list_output(&found, args.output.json, ACTION_COLUMNS, "machine actions")
}

fn list_output(found: &[Value], json: bool, columns: &[(&str, &str)], what: &str) -> Result<DefenderStatus, Failure> {
    if json {
        println!("{}", Value::Array(found.to_vec()));
    } else if found.is_empty() {
        eprintln!("no {what} found");
    } else {
        table(found, columns);
    }
    Ok(DefenderStatus::Ok)
}

/// Does `call` for each id, going on after failures; prints a line per id (or the JSON array)
/// and returns the first failure's status.
fn per_item(
    ids: &[String],
    json: bool,
    key: &str,
    call: impl Fn(&str) -> Result<Value, Failure>,
) -> Result<DefenderStatus, Failure> {
    per_item_shown(ids, json, key, call, |id, result| match result {
        Value::String(text) => text.clone(),
        action => format!(
            "{id}  {}  {}  {}",
            action["id"].as_str().unwrap_or_default(),
            action["status"].as_str().unwrap_or_default(),
            action["computerDnsName"].as_str().unwrap_or_default()
        ),
    })
}

/// `per_item` with each success's line as `show` makes it from the id and the result.
pub(crate) fn per_item_shown(
    ids: &[String],
    json: bool,
    key: &str,
    call: impl Fn(&str) -> Result<Value, Failure>,
    show: impl Fn(&str, &Value) -> String,
) -> Result<DefenderStatus, Failure> {
    let mut items = Vec::new();
    let mut statuses = Vec::new();
    for id in ids {
        let result = call(id);
        statuses.push(result.as_ref().map_or_else(|failure| failure.status, |_| DefenderStatus::Ok));
        match &result {
            Err(failure) => eprintln!("{id}: {} ({})", failure.message, output::name(failure.status)),
            Ok(value) if !json => println!("{}", show(id, value)),
            Ok(_) => {}
        }
        items.push(item_json(id, key, &result));
    }
    if json {
        println!("{}", Value::Array(items));
    }
    Ok(first_failure(statuses))
}

fn download(client: &Client, args: &DownloadArgs) -> Result<DefenderStatus, Failure> {
    let ids = expand(&args.ids.ids)?;
    client.set("overwrite", Some(if args.overwrite { "true" } else { "false" }))?;
    client.set("max_concurrent_downloads", Some(&args.parallel.to_string()))?;
    args.file_name.apply(client)?;
    std::fs::create_dir_all(&args.output).map_err(|err| Failure {
        status: DefenderStatus::Io,
        message: format!("cannot create the folder {}: {err}", args.output.display()),
    })?;
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let bars = RefCell::new(BatchProgress::new(ids.clone()));
    let mut on_progress = |index: usize, done: u64, total: u64| {
        bars.borrow_mut().bytes(index, done, total);
        false
    };
    let mut on_item = |index: usize, status: DefenderStatus, item: Value| {
        let line = if status == DefenderStatus::Ok {
            format!("saved {} ({} bytes{})", item["path"].as_str().unwrap_or_default(), item["bytes"], resumed(&item))
        } else {
            format!("{}: {} ({})", ids[index], item["message"].as_str().unwrap_or_default(), output::name(status))
        };
        bars.borrow_mut().done(index, Some(&line));
    };
    let callbacks = BatchCallbacks { progress: Some(&mut on_progress), item_done: Some(&mut on_item) };
    // SAFETY: `bars` outlives the batch call, and the callback is removed right after it.
    unsafe { client.set_phase_callback(Some(on_phase), std::ptr::from_ref(&bars).cast_mut().cast()) };
    let results = client.download_many(&id_refs, &args.output, callbacks);
    unsafe { client.set_phase_callback(None, std::ptr::null_mut()) };
    bars.into_inner().finish();
    let results = results?;
    let statuses = results.iter().map(|item| {
        let code = item["code"].as_i64().unwrap_or(99) as i32;
        DefenderStatus::ALL.into_iter().find(|status| *status as i32 == code).unwrap_or(DefenderStatus::Internal)
    });
    let status = first_failure(statuses.collect::<Vec<_>>());
    if args.ids.output.json {
        let items: Vec<Value> = results
            .into_iter()
            .map(|mut item| {
                item["id"] = item["action_id"].clone();
                item
            })
            .collect();
        println!("{}", Value::Array(items));
    } else {
        let saved: Vec<Value> = results.into_iter().filter(|item| item["code"] == 0).collect();
        if !saved.is_empty() {
            let columns = [
                ("ACTION ID", "action_id"),
                ("DEVICE", "computer_dns_name"),
                ("BYTES", "bytes"),
                ("RESUMED FROM", "resumed_from"),
                ("SHA256", "sha256"),
                ("PATH", "path"),
            ];
            table(&saved, &columns);
        }
    }
    Ok(status)
}

/// ", resumed from byte N" for a download that went on from what an interrupted one left.
pub fn resumed(result: &Value) -> String {
    match result["resumed_from"].as_u64() {
        Some(from) if from > 0 => format!(", resumed from byte {from}"),
        _ => String::new(),
    }
}

/// Shows each item's phase on its bar.
pub(crate) unsafe extern "C" fn on_phase(user_data: *mut c_void, event: *const DefenderPhaseEvent) -> i32 {
    // SAFETY: registered below with a pointer to the batch's bars, only for the batch call,
    // which runs callbacks on this thread one at a time.
    let bars = unsafe { &*user_data.cast::<RefCell<BatchProgress>>() };
    let event = unsafe { &*event };
    let detail = unsafe { CStr::from_ptr(event.detail) }.to_string_lossy();
    let awaited = bars.borrow().awaited;
    bars.borrow_mut().phase(event.index, &phase_text(event, &detail, awaited));
    0
}

/// What an item is doing, for its bar: "collection InProgress" (`awaited`: what a wait is for),
/// "queued (2 ahead)", ...
fn phase_text(event: &DefenderPhaseEvent, detail: &str, awaited: &str) -> String {
    let seconds = |ms: u64| format!("{:.0} s", ms as f64 / 1000.0);
    match event.phase {
        DefenderPhase::WaitingForCollection => format!("{awaited} {detail}"),
        DefenderPhase::QueuedForRateLimit if event.remaining_ms > 0 => {
            format!("rate limit: #{} in queue, ~{}", event.queue_position, seconds(event.remaining_ms))
        }
        DefenderPhase::QueuedForRateLimit => format!("rate limit: #{} in queue", event.queue_position),
        DefenderPhase::WaitingForDownloadSlot => "ready, waiting for a slot".to_owned(),
        DefenderPhase::Downloading => "downloading".to_owned(),
        DefenderPhase::Verifying => "verifying".to_owned(),
        DefenderPhase::Retrying => format!("retrying in {} (retry {})", seconds(event.remaining_ms), event.attempt),
        DefenderPhase::WaitingForSession => {
            format!("waiting for a live response session, next try in {}", seconds(event.remaining_ms))
        }
    }
}

/// The ids as given, with `-` replaced by those on standard input: whitespace-separated, or a
/// JSON array of strings or of objects as the subcommands print them (a result's `action.id`,
/// else `action_id`, else `id`; results that failed are left out).
pub(crate) fn expand(given: &[String]) -> Result<Vec<String>, Failure> {
    let mut ids = Vec::new();
    for id in given {
        if id != "-" {
            ids.push(id.clone());
            continue;
        }
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|err| Failure {
            status: DefenderStatus::Io,
            message: format!("cannot read standard input: {err}"),
        })?;
        ids.extend(ids_in(&text)?);
    }
    if ids.is_empty() {
        return Err(usage("no ids: give them as arguments, or `-` with them on standard input"));
    }
    Ok(ids)
}

fn ids_in(text: &str) -> Result<Vec<String>, Failure> {
    if !text.trim_start().starts_with('[') {
        return Ok(text.split_whitespace().map(str::to_owned).collect());
    }
    let items: Vec<Value> = serde_json::from_str(text)
        .map_err(|err| usage(&format!("standard input starts with '[' but is not a JSON array: {err}")))?;
    items
        .iter()
        // A result of an earlier subcommand that failed: already reported there, nothing to go on with.
        .filter(|item| item["code"].as_i64().is_none_or(|code| code == 0))
        .map(|item| {
            let id = match item {
                Value::String(id) => Some(id.as_str()),
                _ => item["action"]["id"].as_str().or(item["action_id"].as_str()).or(item["id"].as_str()),
            };
            id.map(str::to_owned).ok_or_else(|| usage(&format!("no id in {item}")))
        })
        .collect()
}

/// A device id as given, or the id of the device with that computer name.
fn machine_id(client: &Client, id_or_name: &str) -> Result<String, Failure> {
    if id_or_name.len() == 40 && id_or_name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(id_or_name.to_owned());
    }
    let machine = client.machine(id_or_name)?;
    Ok(machine["id"].as_str().unwrap_or_default().to_owned())
}

/// An OData string literal: quoted, each quote doubled.
fn odata(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The service's clause for `--name`, and the pattern to match here when the service cannot.
fn name_filter(pattern: &str) -> (Option<String>, Option<String>) {
    let Some(first_wildcard) = pattern.find(['*', '?']) else {
        return (Some(format!("computerDnsName eq {}", odata(pattern))), None);
    };
    let prefix = &pattern[..first_wildcard];
    let clause = (!prefix.is_empty()).then(|| format!("startswith(computerDnsName, {})", odata(prefix)));
    let only_trailing_star = &pattern[first_wildcard..] == "*";
    (clause, (!only_trailing_star).then(|| pattern.to_owned()))
}

/// `*` any run of characters, `?` one; ASCII case ignored.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.to_lowercase().chars().collect();
    let text: Vec<char> = text.to_lowercase().chars().collect();
    let (mut p, mut t, mut star, mut resume) = (0, 0, None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            resume = t;
            p += 1;
        } else if let Some(at) = star {
            p = at + 1;
            resume += 1;
            t = resume;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// `--since` as an OData date-time literal: a date-time, a date (midnight UTC), or an age before `now`.
fn since_filter(since: &str, now: SystemTime) -> Result<String, Failure> {
    use chrono::{DateTime, NaiveDate, Utc};
    let format = |time: DateTime<Utc>| time.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    if let Ok(time) = DateTime::parse_from_rfc3339(since) {
        return Ok(format(time.with_timezone(&Utc)));
    }
    if let Ok(date) = NaiveDate::parse_from_str(since, "%Y-%m-%d") {
        return Ok(format(date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()));
    }
    let split = since.find(|c: char| !c.is_ascii_digit()).unwrap_or(since.len());
    let (number, unit) = since.split_at(split);
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match number.parse::<u64>() {
        Ok(number) if seconds > 0 => {
            Ok(format(DateTime::<Utc>::from(now - Duration::from_secs(number.saturating_mul(seconds)))))
        }
        _ => Err(usage(&format!(
            "--since '{since}' is not a date-time (2024-05-01T08:00:00Z), a date (2024-05-01) or an age (90m, 24h, 7d)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_filters_with_quotes_doubled() {
        assert_eq!(name_filter("O'Brien-PC"), (Some("computerDnsName eq 'O''Brien-PC'".to_owned()), None));
        assert_eq!(name_filter("ws-*"), (Some("startswith(computerDnsName, 'ws-')".to_owned()), None));
        assert_eq!(
            name_filter("ws-*.contoso.test"),
            (Some("startswith(computerDnsName, 'ws-')".to_owned()), Some("ws-*.contoso.test".to_owned()))
        );
        assert_eq!(name_filter("*db?"), (None, Some("*db?".to_owned())));
    }

    #[test]
    fn wildcards_match_like_powershell_like() {
        assert!(wildcard_match("ws-*.contoso.test", "WS-0001.contoso.test"));
        assert!(wildcard_match("*db?", "sql-db1"));
        assert!(!wildcard_match("*db?", "sql-db12"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("a*b", "acbd"));
    }

    #[test]
    fn since_takes_dates_times_and_ages() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_550_400); // 2024-05-01T08:00:00Z
        assert_eq!(since_filter("24h", now).unwrap(), "2024-04-30T08:00:00Z");
        assert_eq!(since_filter("2024-05-01", now).unwrap(), "2024-05-01T00:00:00Z");
        assert_eq!(since_filter("2024-05-01T10:00:00+02:00", now).unwrap(), "2024-05-01T08:00:00Z");
        assert_eq!(since_filter("yesterday", now).unwrap_err().status, DefenderStatus::InvalidArgument);
        assert!(since_filter("5y", now).is_err());
    }

    #[test]
    fn ids_come_as_words_or_as_the_json_of_another_subcommand() {
        assert_eq!(ids_in(" a\nb  c\n").unwrap(), ["a", "b", "c"]);
        let collected = r#"[{"id":"machine","status":"OK","code":0,"action":{"id":"act-1"}},{"action_id":"act-2"},{"id":"m3"},"s4"]"#;
        assert_eq!(ids_in(collected).unwrap(), ["act-1", "act-2", "m3", "s4"]);
        let failed =
            r#"[{"id":"pc","status":"NOT_FOUND","code":3,"message":"..."},{"id":"m","code":0,"action":{"id":"a"}}]"#;
        assert_eq!(ids_in(failed).unwrap(), ["a"]);
        assert!(ids_in("[{}]").is_err());
    }
}
