//! The command line end to end: the real binary against a simulator over loopback, its `--json`
//! output parsed and its exit codes checked.

use std::path::Path;

use assert_cmd::Command;
use defender_simulator::{
    ActionSpec, ConfigPatch, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, Options, Outcome, Schedule,
    Simulator,
};
use serde_json::Value;

/// The simulator's and the client's clocks run this much faster.
const CLOCK_SCALE: f64 = 600.0;

fn simulator() -> Simulator {
    let mut options = Options { seed_machines: 10, ..Options::default() };
    options.config.clock_scale = CLOCK_SCALE;
    Simulator::start(options).unwrap()
}

/// The binary, pointed at `simulator` through the environment as a script would point it.
fn cli(simulator: &Simulator) -> Command {
    Command::from_std(cli_process(simulator))
}

/// `cli`, as a process to start and stop.
fn cli_process(simulator: &Simulator) -> std::process::Command {
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("defender-package"));
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

/// Runs it; returns the exit code and the JSON it printed.
fn run(mut command: Command, args: &[&str]) -> (i32, Value) {
    let output = command.args(args).output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let json =
        serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("{args:?}: not JSON ({err}): {stdout}\n{stderr}"));
    assert!(!stderr.contains(DEFAULT_CLIENT_SECRET), "{stderr}");
    (output.status.code().unwrap(), json)
}

fn ids(json: &Value) -> Vec<&str> {
    json.as_array().unwrap().iter().map(|item| item["id"].as_str().unwrap()).collect()
}

#[test]
fn machines_are_found_by_tag_name_group_and_filter() {
    let simulator = simulator();
    let (code, tagged) = run(cli(&simulator), &["machines", "--tag", "Incident4711", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(ids(&tagged).len(), 3);
    assert!(tagged.as_array().unwrap().iter().all(|m| m["machineTags"] == serde_json::json!(["Incident4711"])));

    let (_, servers) = run(cli(&simulator), &["machines", "--name", "srv-*", "--json"]);
    assert!(ids(&servers).len() == 2 && servers[0]["computerDnsName"] == "srv-0003.contoso.test", "{servers}");
    let (_, by_pattern) =
        run(cli(&simulator), &["machines", "--name", "*-000?.contoso.test", "--group", "servers", "--json"]);
    assert_eq!(by_pattern.as_array().unwrap().len(), 2, "{by_pattern}");
    let (_, inactive) = run(cli(&simulator), &["machines", "--health", "Inactive", "--os", "Windows10", "--json"]);
    assert!(
        inactive.as_array().unwrap().iter().all(|m| m["healthStatus"] == "Inactive" && m["osPlatform"] == "Windows10")
    );
    // A quote in a name stays in the value: it finds nothing instead of everything.
    let (code, none) = run(cli(&simulator), &["machines", "--name", "x' or healthStatus eq 'Active", "--json"]);
    assert_eq!((code, none), (0, serde_json::json!([])));

    let (code, refused) = run(cli(&simulator), &["machines", "--filter", "contains(computerDnsName, 'ws')", "--json"]);
    assert_eq!(code, 7, "HTTP");
    assert_eq!(refused["status"], "HTTP");
    assert!(refused["message"].as_str().unwrap().contains("Invalid filter clause"), "{refused}");
}

#[test]
fn collect_then_download_from_standard_input_and_exit_codes_follow_the_statuses() {
    let simulator = simulator();
    simulator.configure(ConfigPatch { package_size: Some(64 << 10), ..ConfigPatch::default() }).unwrap();
    let (code, collected) =
        run(cli(&simulator), &["collect", "ws-0001", "srv-0003.contoso.test", "no-such-pc", "--json"]);
    assert_eq!(code, 3, "the first failure: NOT_FOUND");
    let items = collected.as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["status"], "OK");
    assert_eq!(items[0]["action"]["computerDnsName"], "ws-0001.contoso.test");
    assert_eq!(items[2]["status"], "NOT_FOUND");
    assert_eq!(items[2]["code"], 3);

    let ok: Vec<Value> = items[..2].to_vec();
    let folder = tempfile::tempdir().unwrap();
    let mut download = cli(&simulator);
    download.write_stdin(Value::Array(ok.clone()).to_string());
    let output = folder.path().to_str().unwrap();
    let pattern = "{computer_name}_{action_id}.zip";
    let (code, saved) = run(download, &["download", "-", "--output", output, "--file-name-pattern", pattern, "--json"]);
    assert_eq!(code, 0, "{saved}");
    for (item, collected) in saved.as_array().unwrap().iter().zip(&ok) {
        let action_id = collected["action"]["id"].as_str().unwrap();
        let device = collected["action"]["computerDnsName"].as_str().unwrap();
        assert_eq!(item["id"], action_id);
        assert_eq!(
            (item["computer_dns_name"].as_str(), &item["machine_id"]),
            (Some(device), &collected["action"]["machineId"])
        );
        let path = Path::new(item["path"].as_str().unwrap());
        let host = device.split('.').next().unwrap();
        assert_eq!(path.file_name().unwrap().to_str().unwrap(), format!("{host}_{action_id}.zip"));
        assert_eq!(std::fs::read(path).unwrap(), simulator.package(action_id).unwrap());
    }

    let action_id = ok[0]["action"]["id"].as_str().unwrap();
    let (code, again) =
        run(cli(&simulator), &["download", action_id, "-o", output, "--file-name-pattern", pattern, "--json"]);
    assert_eq!(code, 15, "EXISTS: {again}");
    let (code, unsafe_pattern) =
        run(cli(&simulator), &["download", action_id, "-o", output, "--file-name-pattern", "../{action_id}", "--json"]);
    assert_eq!((code, &unsafe_pattern["status"]), (1, &Value::from("INVALID_ARGUMENT")), "{unsafe_pattern}");
}

#[test]
fn actions_are_listed_waited_for_and_cancelled() {
    let simulator = simulator();
    let failed =
        simulator.create_action(ActionSpec { outcome: Some(Outcome::Failed), ..ActionSpec::default() }).unwrap();
    let failed = failed["id"].as_str().unwrap();
    let old = simulator.create_action(ActionSpec { age_secs: Some(3 * 86_400), ..ActionSpec::default() }).unwrap();
    let running = simulator
        .create_action(ActionSpec {
            schedule: Some(Schedule { pending_secs: 86_400, in_progress_secs: 0 }),
            ..ActionSpec::default()
        })
        .unwrap();
    let running = running["id"].as_str().unwrap();

    let (code, recent) =
        run(cli(&simulator), &["actions", "--type", "CollectInvestigationPackage", "--since", "1d", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(ids(&recent), [running, failed], "newest first, not the old one");
    assert!(!ids(&recent).contains(&old["id"].as_str().unwrap()));
    let (_, failures) = run(cli(&simulator), &["actions", "--status", "Failed", "--json"]);
    assert_eq!(ids(&failures), [failed]);

    let (code, waited) = run(cli(&simulator), &["wait", failed, "--json"]);
    assert_eq!(code, 13, "ACTION_FAILED: {waited}");
    assert_eq!(waited[0]["status"], "ACTION_FAILED");

    let (code, cancelled) = run(cli(&simulator), &["cancel", running, "--json"]);
    assert_eq!(code, 0);
    assert_eq!(cancelled[0]["action"]["status"], "Cancelled");
    let (code, refused) = run(cli(&simulator), &["cancel", running, "--json"]);
    assert_eq!(code, 7, "HTTP: {refused}");
    assert!(refused[0]["message"].as_str().unwrap().contains("final state"));

    let (code, link) = run(cli(&simulator), &["link", "no-such-action", "--json"]);
    assert_eq!(code, 3, "NOT_FOUND: {link}");
}

#[test]
fn usage_errors_exit_with_invalid_argument_and_help_lists_the_exit_codes() {
    let simulator = simulator();
    let output = cli(&simulator).args(["actions", "--since", "yesterday"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--since 'yesterday'"));
    assert_eq!(cli(&simulator).args(["wait"]).output().unwrap().status.code(), Some(1), "no ids");
    let help = cli(&simulator).arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("13 ACTION_FAILED") && help.contains("machines"), "{help}");
}

#[cfg(feature = "simulator")]
#[test]
fn the_main_job_runs_as_the_readme_shows_it() {
    let folder = tempfile::tempdir().unwrap();
    let output = Command::cargo_bin("defender-package")
        .unwrap()
        .current_dir(folder.path())
        .env_remove("AZURE_CLIENT_ID")
        .env_remove("DEFENDER_BASE_URL")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("path:    ") && lines[0].ends_with(".zip"), "{stdout}");
    assert_eq!(lines[1], "size:    8388608 bytes");
    assert!(lines[2].starts_with("sha256:  ") && lines[2].len() == "sha256:  ".len() + 64, "{stdout}");
    assert!(Path::new(&lines[0]["path:    ".len()..]).exists());
    assert!(lines[3].starts_with("device:  ") && lines[3].ends_with(')'), "the device it collected on: {stdout}");
}

#[test]
fn help_lists_every_cloud_of_the_library_and_every_status_as_an_exit_code() {
    let help = Command::cargo_bin("defender-package").unwrap().arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    let help = String::from_utf8(help.stdout).unwrap();
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(help.contains("commercial, us, eu, uk, au, swa, ina, gcc, gcc-high or dod"), "{help}");
    for status in defender_native::DefenderStatus::ALL {
        let line = format!("{} {} ", status as i32, status.name());
        assert!(help.contains(&line), "the exit codes lack {line:?}: {help}");
    }
}

/// Built without the simulator (`--no-default-features`), a run without credentials starts
/// nothing and says what to pass instead.
#[cfg(not(feature = "simulator"))]
#[test]
fn without_the_simulator_a_run_without_credentials_says_what_to_pass() {
    let folder = tempfile::tempdir().unwrap();
    for args in [&[][..], &["machines"][..], &["--simulator", "--action-id", "a1"][..]] {
        let output = Command::cargo_bin("defender-package")
            .unwrap()
            .args(args)
            .current_dir(folder.path())
            .env_remove("AZURE_CLIENT_ID")
            .env_remove("DEFENDER_BASE_URL")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: INVALID_ARGUMENT: {stderr}");
        assert!(stderr.contains("built without the simulator"), "{args:?}: {stderr}");
        for what in ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "--base-url", "--authority-url"] {
            assert!(stderr.contains(what), "{args:?}: {what} is not named: {stderr}");
        }
        assert!(output.stdout.is_empty() && std::fs::read_dir(folder.path()).unwrap().next().is_none());
    }
}

/// A `defender-package download` killed mid-download (SIGKILL on Unix) leaves its part; the
/// same command again goes on from it, says so, and leaves only the package.
#[test]
fn a_download_killed_midway_is_resumed_by_the_same_command_again() {
    use defender_simulator::{Fault, FaultRule};
    const BLOCK: u64 = 1024 * 1024;
    let simulator = simulator();
    let action =
        simulator.create_action(ActionSpec { package_size: Some(3_000_000), ..ActionSpec::default() }).unwrap();
    let action_id = action["id"].as_str().unwrap();
    // The first answer stalls after a block and a bit: the kill lands mid-body.
    let stall = Fault::Stall { after_bytes: BLOCK + 100_000, ms: 60_000 };
    let rule = serde_json::json!({ "endpoint": "download", "action_id": action_id, "times": 1, "fault": stall });
    simulator.add_fault(serde_json::from_value::<FaultRule>(rule).unwrap()).unwrap();
    let folder = tempfile::tempdir().unwrap();
    let output = folder.path().to_str().unwrap();
    let args = ["download", action_id, "-o", output, "--json"];
    let mut child = cli_process(&simulator)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let part = folder.path().join(format!(".{action_id}.zip.part"));
    let started = std::time::Instant::now();
    while std::fs::metadata(&part).map_or(0, |metadata| metadata.len()) < BLOCK {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "the part never reached a block");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = std::fs::metadata(&part).unwrap().len();

    let (code, saved) = run(cli(&simulator), &args);

    assert_eq!(code, 0, "{saved}");
    assert_eq!(saved[0]["resumed_from"], kept, "{saved}");
    let path = folder.path().join(format!("{action_id}.zip"));
    assert_eq!(std::fs::read(&path).unwrap(), simulator.package(action_id).unwrap());
    let left: Vec<String> =
        std::fs::read_dir(folder.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    assert_eq!(left, [format!("{action_id}.zip")], "no part, record or lock is left");
}
