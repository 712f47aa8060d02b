//! Proxies: with `HTTP_PROXY` and `HTTPS_PROXY` set, loopback destinations (a simulator, a local
//! endpoint) are reached directly, other destinations through the proxy. A test binary of its
//! own: the environment is the process's, and no other test may see these variables.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use defender::DefenderStatus;
use serde_json::json;

/// A "proxy" on loopback that records the first line of each request it gets, then hangs up.
fn recording_proxy() -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            let _ = BufReader::new(stream).read_line(&mut line);
            let _ = sender.send(line.trim().to_owned());
        }
    });
    (url, lines)
}

#[test]
fn loopback_goes_direct_and_other_hosts_through_the_environment_proxy() {
    let (proxy, seen) = recording_proxy();
    // SAFETY: this binary's only test; no other thread reads the environment meanwhile.
    unsafe {
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"] {
            std::env::set_var(name, &proxy);
        }
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");
    }

    let simulator = simulator();
    let action_id = create_action(&simulator, json!({}));
    let client = client_for(&simulator);
    let folder = tempfile::tempdir().unwrap();
    client.download(&action_id, folder.path(), None).expect("the simulator is reached directly");
    assert_eq!(seen.try_recv().ok(), None, "loopback traffic went through the proxy");

    // Not loopback: through the proxy (which hangs up), never resolved or reached directly.
    let remote = Client::new();
    for (key, value) in [
        ("base_url", "https://api.defender.invalid"),
        ("access_token", "not-a-real-token"),
        ("rate_limit", "off"),
        ("timeout_ms", "500"),
    ] {
        remote.set(key, Some(value)).unwrap();
    }
    let failure = remote.machine_action("a").unwrap_err();
    assert!(matches!(failure.status, DefenderStatus::Network | DefenderStatus::Timeout), "{failure}");
    let line = seen.recv_timeout(Duration::from_secs(10)).expect("the proxy was asked");
    assert_eq!(line, "CONNECT api.defender.invalid:443 HTTP/1.1");
}
