//! Part 5: the answers of a hostile server (issue 19), each case in a process of its own (this
//! program again, `--hostile-child`) against a simulator process taught the answer, with hard
//! caps: the parent samples the child's peak resident memory (`VmHWM` in `/proc/<pid>/status`)
//! and the bytes in its download folder, and kills it when it passes the time, memory or disk
//! cap. Each case runs with the library's default options, except where the case says.

use std::ffi::{CStr, CString, c_char};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use defender_native::Client;
use serde_json::{Value, json};

use crate::{MIB, SimulatorProcess, curl};

/// A hostile answer, and the call that meets it.
struct Case {
    name: &'static str,
    /// What the server does, for the table.
    what: &'static str,
    call: Call,
    /// Options set on the client on top of the defaults.
    options: &'static [(&'static str, &'static str)],
    /// Kill the child after this long.
    time_cap: Duration,
    /// The action's package size, when the case needs its own.
    package_size: Option<u64>,
    /// Fault rules for the simulator: `{action}` in them is the action's id.
    faults: fn(&str) -> Vec<Value>,
}

#[derive(Clone, Copy)]
enum Call {
    MachineAction,
    ListMachines,
    Download,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::MachineAction => "machine_action",
            Call::ListMachines => "list_machines",
            Call::Download => "download",
        }
    }
}

/// `{"x":[{"":0},{"":0},...]}`-like JSON of about `bytes` bytes: many tiny values, after `head`.
fn tiny_values(head: &str, bytes: usize, tail: &str) -> String {
    const VALUE: &str = r#"{"":0},"#;
    let copies = bytes.saturating_sub(head.len() + tail.len() + 16) / VALUE.len();
    let mut text = String::with_capacity(bytes);
    text.push_str(head);
    text.push_str(r#""x":["#);
    text.push_str(&VALUE.repeat(copies));
    text.push_str(r#"{"":0}]"#);
    text.push_str(tail);
    text
}

fn answer(endpoint: &str, times: u64, status: u16, headers: Value, body: &str) -> Value {
    json!({ "endpoint": endpoint, "times": times, "fault": { "kind": "answer", "status": status, "headers": headers, "body": body } })
}

fn raw(endpoint: &str, response: &str) -> Value {
    json!({ "endpoint": endpoint, "times": 0, "fault": { "kind": "raw", "response": response } })
}

const JUST_UNDER_4_MIB: usize = 4 * 1024 * 1024 - 64;
const JUST_UNDER_1_MIB: usize = 1024 * 1024 - 64;

fn cases() -> Vec<Case> {
    let forty = Duration::from_secs(40);
    vec![
        Case {
            name: "action-tiny-values-4mib",
            what: "a machine action just under 4 MiB of tiny values",
            call: Call::MachineAction,
            options: &[],
            time_cap: forty,
            package_size: None,
            faults: |action| {
                let body = tiny_values(&format!(r#"{{"id":"{action}","status":"Succeeded","#), JUST_UNDER_4_MIB, "}");
                vec![answer("machine_action", 0, 200, json!({}), &body)]
            },
        },
        Case {
            name: "action-tiny-values-1mib",
            what: "a machine action just under 1 MiB of tiny values",
            call: Call::MachineAction,
            options: &[],
            time_cap: forty,
            package_size: None,
            faults: |action| {
                let body = tiny_values(&format!(r#"{{"id":"{action}","status":"Succeeded","#), JUST_UNDER_1_MIB, "}");
                vec![answer("machine_action", 0, 200, json!({}), &body)]
            },
        },
        Case {
            name: "page-tiny-values-4mib",
            what: "a list page just under 4 MiB of tiny values",
            call: Call::ListMachines,
            options: &[],
            time_cap: forty,
            package_size: None,
            faults: |_| {
                vec![answer(
                    "list_machines",
                    0,
                    200,
                    json!({}),
                    &tiny_values(r#"{"value":[{"#, JUST_UNDER_4_MIB, "}]}"),
                )]
            },
        },
        Case {
            name: "endless-pages-1-item",
            what: "every page one item and a new nextLink",
            call: Call::ListMachines,
            options: &[],
            time_cap: forty,
            package_size: None,
            faults: |_| {
                vec![json!({ "endpoint": "list_machines", "times": 0, "fault": { "kind": "page", "items": 1 } })]
            },
        },
        Case {
            name: "endless-pages-1m-items",
            what: "every page a million items and a new nextLink",
            call: Call::ListMachines,
            options: &[],
            time_cap: forty,
            package_size: None,
            faults: |_| {
                vec![
                    json!({ "endpoint": "list_machines", "times": 0, "fault": { "kind": "page", "items": 1_000_000 } }),
                ]
            },
        },
        Case {
            name: "trickle",
            what: "the package at one byte every half second",
            call: Call::Download,
            options: &[],
            time_cap: Duration::from_secs(600),
            package_size: None,
            faults: |_| {
                vec![
                    json!({ "endpoint": "download", "times": 0, "fault": { "kind": "slow_body", "bytes_per_sec": 2 } }),
                ]
            },
        },
        Case {
            name: "no-length",
            what: "a 64 GiB body without Content-Length; max_bytes_without_length 1 GiB",
            call: Call::Download,
            options: &[("max_bytes_without_length", "1073741824")],
            time_cap: forty,
            package_size: Some(64 << 30),
            faults: |_| vec![json!({ "endpoint": "download", "times": 0, "fault": { "kind": "no_length" } })],
        },
        Case {
            name: "announced-1tib",
            what: "Content-Length 1 TiB - 1 and the body to match",
            call: Call::Download,
            options: &[],
            time_cap: forty,
            package_size: Some((1 << 40) - 1),
            faults: |_| Vec::new(),
        },
        Case {
            name: "unusable-link",
            what: "getPackageUri's link has a '{' in its host",
            call: Call::Download,
            options: &[],
            time_cap: forty,
            package_size: None,
            faults: |_| {
                vec![answer("get_package_uri", 0, 200, json!({}), r#"{"value":"https://a{b.example/p.zip?token=x"}"#)]
            },
        },
        Case {
            name: "invalid-content-length",
            what: "Content-Length: 12abc",
            call: Call::Download,
            options: &[],
            time_cap: forty,
            package_size: None,
            faults: |_| vec![raw("download", "HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\nPK\u{3}\u{4}")],
        },
        Case {
            name: "oversized-headers",
            what: "a 512 KiB header",
            call: Call::Download,
            options: &[],
            time_cap: forty,
            package_size: None,
            faults: |_| vec![answer("download", 0, 200, json!({ "x-padding": "a".repeat(512 * 1024) }), "PK")],
        },
        Case {
            name: "length-and-chunked",
            what: "Content-Length and Transfer-Encoding: chunked",
            call: Call::Download,
            options: &[],
            time_cap: forty,
            package_size: None,
            faults: |_| {
                vec![raw(
                    "download",
                    "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nPK\u{3}\u{4}\r\n0\r\n\r\n",
                )]
            },
        },
    ]
}

/// What a case's child measured, or the cap that stopped it.
struct Outcome {
    status: String,
    message: String,
    peak: u64,
    took: Duration,
    requests: usize,
}

/// Runs every case (or those named in `only`), each against a fresh simulator, and prints a table.
pub fn run(
    simulator_binary: &Path,
    work_dir: &Path,
    only: &[String],
    memory_cap: u64,
    disk_cap: u64,
) -> Result<(), String> {
    println!(
        "\nhostile answers: each case in its own process, killed past its time cap, {:.0} MiB resident or {:.0} MiB on disk",
        memory_cap as f64 / MIB,
        disk_cap as f64 / MIB
    );
    println!("  {:<24} {:>10} {:>9} {:>9}  {:<9} message", "case", "peak MiB", "time s", "requests", "status");
    for case in cases().into_iter().filter(|case| only.is_empty() || only.iter().any(|name| name == case.name)) {
        let outcome = run_case(&case, simulator_binary, work_dir, memory_cap, disk_cap)?;
        let mut message: String = outcome.message.chars().take(160).collect();
        if outcome.message.chars().count() > 160 {
            message.push('…');
        }
        println!(
            "  {:<24} {:>10.1} {:>9.1} {:>9}  {:<9} {message}",
            case.name,
            outcome.peak as f64 / MIB,
            outcome.took.as_secs_f64(),
            outcome.requests,
            outcome.status
        );
        println!("  {:<24} ({})", "", case.what);
    }
    Ok(())
}

fn run_case(case: &Case, binary: &Path, work_dir: &Path, memory_cap: u64, disk_cap: u64) -> Result<Outcome, String> {
    let simulator = SimulatorProcess::start(binary, &["--rate-limit", "off"])?;
    let base = simulator.ready.base_url.clone();
    let mut spec = json!({});
    if let Some(size) = case.package_size {
        spec["package_size"] = json!(size);
    }
    let action: Value = serde_json::from_slice(&post(&format!("{base}/_sim/actions"), &spec)?)
        .map_err(|err| format!("the simulator's action is not JSON: {err}"))?;
    let action_id = action["id"].as_str().ok_or("the simulator's action has no id")?.to_owned();
    for fault in (case.faults)(&action_id) {
        post(&format!("{base}/_sim/faults"), &fault)?;
    }
    let folder = tempfile::tempdir_in(work_dir).map_err(|err| format!("cannot create a folder: {err}"))?;
    let request = json!({
        "call": case.call.name(),
        "base_url": base,
        "action_id": action_id,
        "folder": folder.path(),
        "options": case.options,
    });
    let exe = std::env::current_exe().map_err(|err| format!("cannot tell where this program is: {err}"))?;
    let mut child = Command::new(exe)
        .arg("--hostile-child")
        .arg(request.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|err| format!("cannot start the case's process: {err}"))?;
    let started = Instant::now();
    let mut peak = 0;
    let stopped = loop {
        if let Some(hwm) = status_field(child.id(), "VmHWM:") {
            peak = peak.max(hwm);
        }
        if child.try_wait().map_err(|err| format!("waiting for the case's process: {err}"))?.is_some() {
            break None;
        }
        let cap = if started.elapsed() > case.time_cap {
            Some(format!("still running at {:.0} s", case.time_cap.as_secs_f64()))
        } else if peak > memory_cap {
            Some(format!("passed {:.0} MiB resident", memory_cap as f64 / MIB))
        } else if folder_bytes(folder.path()) > disk_cap {
            Some(format!("passed {:.0} MiB on disk", disk_cap as f64 / MIB))
        } else {
            None
        };
        if let Some(cap) = cap {
            stop(&mut child);
            break Some(cap);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let requests = simulator.requests(endpoint(case.call))?.len();
    let (status, message) = match stopped {
        Some(cap) => {
            ("KILLED".to_owned(), format!("{cap}; {:.0} MiB on disk", folder_bytes(folder.path()) as f64 / MIB))
        }
        None => {
            let mut line = String::new();
            let mut stdout = child.stdout.take().ok_or("the child's output is piped")?;
            std::io::Read::read_to_string(&mut stdout, &mut line).map_err(|err| format!("reading the child: {err}"))?;
            let said: Value =
                serde_json::from_str(line.trim()).unwrap_or_else(|_| json!({ "status": "CRASHED", "message": line }));
            if let Some(hwm) = said["peak"].as_u64() {
                peak = peak.max(hwm);
            }
            (said["status"].as_str().unwrap_or("?").to_owned(), said["message"].as_str().unwrap_or_default().to_owned())
        }
    };
    Ok(Outcome { status, message, peak, took, requests })
}

fn endpoint(call: Call) -> &'static str {
    match call {
        Call::MachineAction => "machine_action",
        Call::ListMachines => "list_machines",
        Call::Download => "download",
    }
}

/// POSTs `body` (megabytes, for some faults) to the simulator's control API.
fn post(url: &str, body: &Value) -> Result<Vec<u8>, String> {
    let file = tempfile::NamedTempFile::new().map_err(|err| format!("cannot create a temporary file: {err}"))?;
    std::fs::write(file.path(), body.to_string()).map_err(|err| format!("cannot write a temporary file: {err}"))?;
    let data = format!("@{}", file.path().display());
    curl(&["-X", "POST", "-H", "content-type: application/json", "--data-binary", &data, url])
}

/// Only the process this benchmark started, by its handle.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A `kB` field of `/proc/<pid>/status`, in bytes.
fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: u64 = line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// Bytes in the files of `folder` (the part file a download writes).
fn folder_bytes(folder: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(folder) else { return 0 };
    entries.flatten().filter_map(|entry| entry.metadata().ok()).map(|metadata| metadata.len()).sum()
}

/// The child: makes the case's call and prints `{"status", "message", "peak"}` on one line.
pub fn child(request: &str) -> Result<(), String> {
    let request: Value = serde_json::from_str(request).map_err(|err| format!("the case is not JSON: {err}"))?;
    let text = |name: &str| request[name].as_str().unwrap_or_default().to_owned();
    let client = Client::new();
    let base = text("base_url");
    let sign_in = [
        ("base_url", base.as_str()),
        ("authority_url", base.as_str()),
        ("tenant_id", defender_simulator::DEFAULT_TENANT_ID),
        ("client_id", defender_simulator::DEFAULT_CLIENT_ID),
        ("client_secret", defender_simulator::DEFAULT_CLIENT_SECRET),
        ("rate_limit", "off"),
    ];
    for (key, value) in sign_in {
        client.set(key, Some(value)).map_err(|failure| failure.to_string())?;
    }
    for pair in request["options"].as_array().into_iter().flatten() {
        let (key, value) = (pair[0].as_str().unwrap_or_default(), pair[1].as_str().unwrap_or_default());
        match client.set(key, Some(value)) {
            // A library from before the option: the case runs without it.
            Err(failure) if failure.status == defender::DefenderStatus::UnknownOption => {}
            set => set.map_err(|failure| failure.to_string())?,
        }
    }
    let action_id = CString::new(text("action_id")).map_err(|_| "a NUL in the action id")?;
    // The JSON answers are measured, not parsed: a parse here would count against the library.
    let mut json: *mut c_char = std::ptr::null_mut();
    let status = match text("call").as_str() {
        "machine_action" => unsafe {
            defender::defender_get_machine_action(client.raw(), action_id.as_ptr(), &mut json)
        },
        "list_machines" => unsafe { defender::defender_list_machines(client.raw(), std::ptr::null(), 0, &mut json) },
        _ => {
            let folder = CString::new(text("folder")).map_err(|_| "a NUL in the folder")?;
            unsafe {
                defender::defender_download_package(
                    client.raw(),
                    action_id.as_ptr(),
                    folder.as_ptr(),
                    None,
                    std::ptr::null_mut(),
                    &mut json,
                )
            }
        }
    };
    let (status, message) = if status == defender::DefenderStatus::Ok {
        // SAFETY: the library returned this NUL-terminated string, freed with its function.
        let length = unsafe { CStr::from_ptr(json) }.to_bytes().len();
        unsafe { defender::defender_string_free(json) };
        ("OK".to_owned(), format!("{length} bytes of JSON"))
    } else {
        (defender_native::status_name(status as i32).to_owned(), defender_native::last_error())
    };
    let peak = status_field(std::process::id(), "VmHWM:");
    println!("{}", json!({ "status": status, "message": message, "peak": peak }));
    Ok(())
}
