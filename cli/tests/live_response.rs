//! The Live Response subcommands end to end: the real binary against a simulator whose results
//! are in Azurite (the Azure Storage emulator: see `tests/common/azurite.rs`), its `--json` parsed
//! and its exit codes checked.

use std::path::PathBuf;

use assert_cmd::Command;
use defender_simulator::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, Options, Simulator};
use serde_json::Value;
use sha2::{Digest, Sha256};

const CLOCK_SCALE: f64 = 600.0;

// The one Azurite of the test binary (or the one tests/run-all.sh started), as the library's tests find it.
#[path = "../../tests/common/azurite.rs"]
mod azurite;

fn simulator() -> Simulator {
    let mut options =
        Options { seed_machines: 10, blob_endpoint: Some(azurite::blob_endpoint()), ..Options::default() };
    options.config.clock_scale = CLOCK_SCALE;
    Simulator::start(options).unwrap()
}

fn cli(simulator: &Simulator) -> Command {
    let mut command = Command::cargo_bin("defender-package").unwrap();
    command
        .env("AZURE_TENANT_ID", DEFAULT_TENANT_ID)
        .env("AZURE_CLIENT_ID", DEFAULT_CLIENT_ID)
        .env("AZURE_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
        .env("DEFENDER_BASE_URL", simulator.base_url())
        .env("DEFENDER_AUTHORITY_URL", simulator.base_url())
        .env("DEFENDER_CLOCK_SCALE", CLOCK_SCALE.to_string())
        .env_remove("AZURE_CLIENT_CERTIFICATE_PATH");
    command
}

/// Runs it; returns the exit code, the JSON it printed, and its standard error.
fn run(mut command: Command, args: &[&str]) -> (i32, Value, String) {
    let output = command.args(args).output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let json =
        serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("{args:?}: not JSON ({err}): {stdout}\n{stderr}"));
    assert!(!stderr.contains(DEFAULT_CLIENT_SECRET), "{stderr}");
    assert!(!stderr.contains("sig="), "a SAS reached a message: {stderr}");
    (output.status.code().unwrap(), json, stderr)
}

/// The SHA-256 of a command's result exactly as the store holds it.
fn stored_sha256(simulator: &Simulator, action_id: &str, index: usize) -> String {
    hex(&simulator.live_response_result(action_id, index).unwrap())
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
fn getfile_saves_each_file_from_each_device_and_reports_a_missing_one() {
    let simulator = simulator();
    let folder = tempfile::tempdir().unwrap();
    let output = folder.path().to_str().unwrap();

    let (code, items, stderr) = run(
        cli(&simulator),
        &[
            "getfile",
            "ws-0001",
            "ws-0002",
            "--path",
            r"C:\Windows\Temp\x.exe",
            "--path",
            r"C:\missing.log",
            "-o",
            output,
            "--json",
        ],
    );

    assert_eq!(code, 13, "ACTION_FAILED for the missing file: {items} {stderr}");
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 4);
    for item in items.iter().filter(|item| item["remote_path"] == r"C:\Windows\Temp\x.exe") {
        assert_eq!(item["code"], 0, "{item}");
        let action_id = item["action_id"].as_str().unwrap();
        assert_eq!(item["sha256"], stored_sha256(&simulator, action_id, 0));
        let path = PathBuf::from(item["path"].as_str().unwrap());
        assert_eq!(path, folder.path().join(format!("{action_id}-0.exe")));
        assert_eq!(hex(&std::fs::read(&path).unwrap()), item["sha256"].as_str().unwrap());
    }
    let missing: Vec<&Value> = items.iter().filter(|item| item["remote_path"] == r"C:\missing.log").collect();
    assert_eq!(missing.len(), 2);
    for item in missing {
        assert_eq!(item["status"], "ACTION_FAILED");
        assert!(item["message"].as_str().unwrap().contains("was not found on the device"), "{item}");
    }
    assert_eq!(
        items.iter().map(|item| item["id"].as_str().unwrap()).collect::<Vec<_>>(),
        ["ws-0001", "ws-0001", "ws-0002", "ws-0002"]
    );
}

#[test]
fn runscript_prints_each_transcript_and_library_lists_uploads_and_deletes() {
    let simulator = simulator();
    let folder = tempfile::tempdir().unwrap();
    let script = folder.path().join("triage.ps1");
    std::fs::write(&script, "param([switch] $Quick) 'triage'").unwrap();
    let script = script.to_str().unwrap();

    let (code, uploaded, _) = run(
        cli(&simulator),
        &["library", "upload", script, "--description", "CLI: triage", "--has-parameters", "--json"],
    );
    assert_eq!(code, 0, "{uploaded}");
    assert_eq!(uploaded[0]["library_file"]["fileName"], "triage.ps1");
    let (code, again, _) = run(cli(&simulator), &["library", "upload", script, "--description", "again", "--json"]);
    assert_eq!((code, &again[0]["status"]), (15, &Value::from("EXISTS")), "{again}");
    let (_, listed, _) = run(cli(&simulator), &["library", "list", "--json"]);
    assert_eq!(listed[0]["description"], "CLI: triage");

    let (code, runs, _) = run(
        cli(&simulator),
        &["runscript", "ws-0004", "ws-0005", "--script", "triage.ps1", "--args", "-Quick", "--json"],
    );
    assert_eq!(code, 0, "{runs}");
    for run in runs.as_array().unwrap() {
        assert_eq!(run["transcript"]["script_name"], "triage.ps1");
        assert_eq!(run["transcript"]["exit_code"], 0);
        assert!(run["transcript"]["script_output"].as_str().unwrap().contains("-Quick"), "{run}");
        assert!(run["action_id"].is_string());
    }
    let text = cli(&simulator).args(["runscript", "ws-0006", "--script", "triage.ps1"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("== ws-0006.contoso.test: triage.ps1 exited with 0 =="), "{stdout}");

    let (code, unknown, _) = run(cli(&simulator), &["runscript", "ws-0008", "--script", "nowhere.ps1", "--json"]);
    assert_eq!(code, 13, "{unknown}");
    assert!(unknown[0]["message"].as_str().unwrap().contains("nowhere.ps1"), "{unknown}");

    let (code, deleted, _) = run(cli(&simulator), &["library", "delete", "triage.ps1", "--json"]);
    assert_eq!((code, &deleted[0]["deleted"]), (0, &Value::Bool(true)));
    let (code, _, _) = run(cli(&simulator), &["library", "delete", "triage.ps1", "--json"]);
    assert_eq!(code, 3);
    let (_, listed, _) = run(cli(&simulator), &["library", "list", "--json"]);
    assert_eq!(listed, Value::Array(Vec::new()));
}
