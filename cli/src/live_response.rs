//! The Live Response subcommands: `getfile` (files off devices), `runscript` (a library script's
//! transcript) and `library` (the tenant's scripts and files).

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::commands::{Output, expand, on_phase, per_item_shown};
use crate::output::{self, first_failure, item_json, table};
use crate::progress::BatchProgress;
use defender_native::{BatchCallbacks, Client, DefenderStatus, Failure};

#[derive(Args)]
pub struct GetFileArgs {
    /// Device ids or computer names; `-` reads them from standard input (whitespace-separated,
    /// or the JSON of `machines --json`).
    #[arg(required = true, value_name = "MACHINE")]
    machines: Vec<String>,
    /// The file's path on the device, e.g. 'C:\Windows\Temp\x.exe' (repeat for several: each is
    /// fetched from every device).
    #[arg(long = "path", required = true, value_name = "REMOTE_PATH")]
    paths: Vec<String>,
    /// The folder that gets each file as <action id>-<index> with its extension (.gz added when
    /// the store keeps it compressed).
    #[arg(long, short, default_value = ".")]
    output: PathBuf,
    /// Files downloaded at once (1 to 64).
    #[arg(long, default_value_t = 4)]
    parallel: u32,
    #[command(flatten)]
    json: Output,
}

#[derive(Args)]
pub struct RunScriptArgs {
    /// Device ids or computer names; `-` reads them from standard input.
    #[arg(required = true, value_name = "MACHINE")]
    machines: Vec<String>,
    /// The script's name in the tenant's live response library (see `library list`).
    #[arg(long, value_name = "NAME")]
    script: String,
    /// The script's arguments, as one string.
    #[arg(long = "args", value_name = "ARGS", allow_hyphen_values = true)]
    arguments: Option<String>,
    /// The comment recorded with each session.
    #[arg(long, default_value = "Run with defender-package")]
    comment: String,
    #[command(flatten)]
    json: Output,
}

#[derive(Args)]
pub struct LibraryArgs {
    #[command(subcommand)]
    command: LibraryCommand,
}

#[derive(Subcommand)]
pub enum LibraryCommand {
    /// List the library's scripts and files.
    List {
        #[command(flatten)]
        json: Output,
    },
    /// Upload scripts or files to the library (each under its file name).
    Upload {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// What the file is (the service requires one).
        #[arg(long)]
        description: String,
        /// The script takes parameters (runscript --args).
        #[arg(long)]
        has_parameters: bool,
        /// What the script's parameters are (with --has-parameters).
        #[arg(long, requires = "has_parameters", value_name = "TEXT")]
        parameters_description: Option<String>,
        /// Replace a file of the same name in the library.
        #[arg(long)]
        overwrite: bool,
        #[command(flatten)]
        json: Output,
    },
    /// Delete files from the library.
    Delete {
        #[arg(required = true, value_name = "FILE_NAME")]
        names: Vec<String>,
        #[command(flatten)]
        json: Output,
    },
}

impl LibraryArgs {
    pub fn json(&self) -> bool {
        match &self.command {
            LibraryCommand::List { json }
            | LibraryCommand::Upload { json, .. }
            | LibraryCommand::Delete { json, .. } => json.json,
        }
    }
}

impl GetFileArgs {
    pub fn json(&self) -> bool {
        self.json.json
    }
}

impl RunScriptArgs {
    pub fn json(&self) -> bool {
        self.json.json
    }
}

/// `getfile`: a GetFile session per (device, path), waited for, its file saved; several at once.
pub fn get_files(client: &Client, args: &GetFileArgs) -> Result<DefenderStatus, Failure> {
    let machines = expand(&args.machines)?;
    client.set("max_concurrent_downloads", Some(&args.parallel.to_string()))?;
    std::fs::create_dir_all(&args.output).map_err(|err| Failure {
        status: DefenderStatus::Io,
        message: format!("cannot create the folder {}: {err}", args.output.display()),
    })?;
    let requests: Vec<(&str, &str)> = machines
        .iter()
        .flat_map(|machine| args.paths.iter().map(move |path| (machine.as_str(), path.as_str())))
        .collect();
    let requests_json =
        Value::Array(requests.iter().map(|(machine, path)| json!({"machine": machine, "path": path})).collect());
    let labels = requests.iter().map(|(machine, path)| format!("{machine} {path}")).collect();
    let bars = RefCell::new(BatchProgress::of("files", "session", labels));
    let mut on_progress = |index: usize, done: u64, total: u64| {
        bars.borrow_mut().bytes(index, done, total);
        false
    };
    let mut on_item = |index: usize, status: DefenderStatus, item: Value| {
        let (machine, path) = requests[index];
        let line = if status == DefenderStatus::Ok {
            format!(
                "saved {} from {machine} as {} ({} bytes)",
                path,
                item["path"].as_str().unwrap_or_default(),
                item["bytes"]
            )
        } else {
            format!("{machine} {path}: {} ({})", item["message"].as_str().unwrap_or_default(), output::name(status))
        };
        bars.borrow_mut().done(index, Some(&line));
    };
    let callbacks = BatchCallbacks { progress: Some(&mut on_progress), item_done: Some(&mut on_item) };
    // SAFETY: `bars` outlives the batch call, and the callback is removed right after it.
    unsafe { client.set_phase_callback(Some(on_phase), std::ptr::from_ref(&bars).cast_mut().cast()) };
    let results = client.get_files(&requests_json.to_string(), &args.output, callbacks);
    unsafe { client.set_phase_callback(None, std::ptr::null_mut()) };
    bars.into_inner().finish();
    let results = results?;
    let status = first_failure(results.iter().map(status_of).collect::<Vec<_>>());
    if args.json.json {
        let items: Vec<Value> = results
            .into_iter()
            .zip(&requests)
            .map(|(mut item, (machine, _))| {
                item["id"] = json!(machine);
                item
            })
            .collect();
        println!("{}", Value::Array(items));
    } else {
        let saved: Vec<Value> = results.into_iter().filter(|item| item["code"] == 0).collect();
        if !saved.is_empty() {
            let columns = [
                ("DEVICE", "machine"),
                ("REMOTE PATH", "remote_path"),
                ("BYTES", "bytes"),
                ("SHA256", "sha256"),
                ("PATH", "path"),
            ];
            table(&saved, &columns);
        }
    }
    Ok(status)
}

/// An item's status from its `code`.
fn status_of(item: &Value) -> DefenderStatus {
    let code = item["code"].as_i64().unwrap_or(99) as i32;
    DefenderStatus::ALL.into_iter().find(|status| *status as i32 == code).unwrap_or(DefenderStatus::Internal)
}

/// `runscript`: on each device in turn, the script's session, waited for, and its transcript.
pub fn run_script(client: &Client, args: &RunScriptArgs) -> Result<DefenderStatus, Failure> {
    let machines = expand(&args.machines)?;
    let mut params = vec![json!({"key": "ScriptName", "value": args.script})];
    if let Some(arguments) = &args.arguments {
        params.push(json!({"key": "Args", "value": arguments}));
    }
    let commands = json!([{"type": "RunScript", "params": params}]).to_string();
    let mut items = Vec::new();
    let mut statuses = Vec::new();
    for machine in &machines {
        let result = client
            .run_live_response(machine, &commands, Some(&args.comment))
            .and_then(|action| transcript(client, &action).map(|transcript| (action, transcript)));
        statuses.push(result.as_ref().map_or_else(|failure| failure.status, |_| DefenderStatus::Ok));
        match &result {
            Err(failure) => eprintln!("{machine}: {} ({})", failure.message, output::name(failure.status)),
            Ok((action, transcript)) if !args.json.json => {
                let device = action["computerDnsName"].as_str().unwrap_or(machine);
                println!("== {device}: {} exited with {} ==", args.script, transcript["exit_code"]);
                print!("{}", transcript["script_output"].as_str().unwrap_or_default());
                eprint!("{}", transcript["script_errors"].as_str().unwrap_or_default());
            }
            Ok(_) => {}
        }
        let mut item = item_json(machine, "transcript", &result.as_ref().map(|(_, t)| t.clone()).map_err(clone));
        if let Ok((action, _)) = &result {
            item["action_id"] = action["id"].clone();
            item["computer_dns_name"] = action["computerDnsName"].clone();
        }
        items.push(item);
    }
    if args.json.json {
        println!("{}", Value::Array(items));
    }
    Ok(first_failure(statuses))
}

fn clone(failure: &Failure) -> Failure {
    Failure { status: failure.status, message: failure.message.clone() }
}

/// The transcript of the session's RunScript (its command 0), read from its downloaded result.
fn transcript(client: &Client, action: &Value) -> Result<Value, Failure> {
    let action_id = action["id"].as_str().unwrap_or_default();
    let folder = std::env::temp_dir().join(format!("defender-script-{}-{action_id}", std::process::id()));
    let io =
        |err: std::io::Error| Failure { status: DefenderStatus::Io, message: format!("{}: {err}", folder.display()) };
    std::fs::create_dir_all(&folder).map_err(io)?;
    let read = client.download_live_response_result(action_id, 0, &folder, None).and_then(|saved| {
        let path = Path::new(saved["path"].as_str().unwrap_or_default());
        let text = std::fs::read(path).map_err(io)?;
        serde_json::from_slice::<Value>(&text).ok().filter(Value::is_object).ok_or_else(|| Failure {
            status: DefenderStatus::Protocol,
            message: format!("the result of machine action {action_id} is not a script transcript (JSON)"),
        })
    });
    let _ = std::fs::remove_dir_all(&folder);
    read
}

const LIBRARY_COLUMNS: &[(&str, &str)] = &[
    ("FILE NAME", "fileName"),
    ("PARAMETERS", "hasParameters"),
    ("DESCRIPTION", "description"),
    ("CREATED BY", "createdBy"),
    ("UPDATED", "lastUpdatedTime"),
];

/// `library list|upload|delete`.
pub fn library(client: &Client, args: &LibraryArgs) -> Result<DefenderStatus, Failure> {
    match &args.command {
        LibraryCommand::List { json } => {
            let files = client.library_files()?;
            if json.json {
                println!("{}", Value::Array(files));
            } else if files.is_empty() {
                eprintln!("the live response library is empty");
            } else {
                table(&files, LIBRARY_COLUMNS);
            }
            Ok(DefenderStatus::Ok)
        }
        LibraryCommand::Upload { files, description, has_parameters, parameters_description, overwrite, json } => {
            let paths: Vec<String> = files.iter().map(|file| file.display().to_string()).collect();
            per_item_shown(
                &paths,
                json.json,
                "library_file",
                |path| {
                    client.upload_library_file(
                        Path::new(path),
                        description,
                        parameters_description.as_deref(),
                        *has_parameters,
                        *overwrite,
                    )
                },
                |path, file| format!("uploaded {path} as {}", file["fileName"].as_str().unwrap_or_default()),
            )
        }
        LibraryCommand::Delete { names, json } => per_item_shown(
            names,
            json.json,
            "deleted",
            |name| client.delete_library_file(name).map(|()| Value::Bool(true)),
            |name, _| format!("deleted {name}"),
        ),
    }
}
