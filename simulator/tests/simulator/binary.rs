//! The `defender-simulator` binary: its ready line, its shutdown, its refusals.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use defender_simulator::{DEFAULT_CLIENT_ID, DEFAULT_IDENTITY_HEADER, DEFAULT_TENANT_ID, ReadyInfo};

use crate::common::{client, json};

const BINARY: &str = env!("CARGO_BIN_EXE_defender-simulator");

/// Kills the child if a test fails before it exits.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_ready_line_tells_where_everything_is() {
    let mut child = Running(
        Command::new(BINARY)
            .args(["--seed-actions", "2", "--clock-scale", "10", "--package-size", "64KiB"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let ready: ReadyInfo = serde_json::from_str(&line).expect("one JSON line");
    assert!(ready.base_url.starts_with("http://127.0.0.1:"), "{line}");
    assert_ne!(ready.base_url, ready.download_url);
    assert_eq!(ready.tenant_id, DEFAULT_TENANT_ID);
    assert_eq!(ready.client_id, DEFAULT_CLIENT_ID);
    assert_eq!(ready.ca_file, None);
    assert_eq!(ready.identity_endpoint, format!("{}/msi/token", ready.base_url));
    assert_eq!(ready.identity_header, DEFAULT_IDENTITY_HEADER);
    assert_eq!(ready.seeded_action_ids.len(), 2);

    let client = client();
    let config = json(client.get(format!("{}/_sim/config", ready.base_url)).send().unwrap());
    assert_eq!(config["clock_scale"], 10.0);
    assert_eq!(config["package_size"], 65536);
    let created = json(
        client
            .post(format!("{}/_sim/actions", ready.base_url))
            .json(&serde_json::json!({"id": ready.seeded_action_ids[0]}))
            .send()
            .unwrap(),
    );
    assert_eq!(created["error"]["code"], "InvalidControlRequest", "the seeded id exists");

    #[cfg(unix)]
    stops_on_sigterm(child, &client, &ready.base_url);
}

/// SIGTERM (as a service manager sends it) stops the simulator with status 0, its port closed.
#[cfg(unix)]
fn stops_on_sigterm(mut child: Running, client: &reqwest::blocking::Client, base_url: &str) {
    use std::time::{Duration, Instant};
    let terminated = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    assert!(terminated.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the simulator did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let gone = client.get(format!("{base_url}/_sim/config")).send();
    assert!(gone.is_err() || gone.unwrap().status() != reqwest::StatusCode::OK);
}

#[test]
fn non_loopback_addresses_are_refused() {
    let output = Command::new(BINARY).args(["--listen", "0.0.0.0:0"]).output().unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "no ready line");
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("loopback"), "{message}");

    let bad_size = Command::new(BINARY).args(["--package-size", "100"]).output().unwrap();
    assert!(!bad_size.status.success());
    assert!(String::from_utf8_lossy(&bad_size.stderr).contains("package_size"));
}
