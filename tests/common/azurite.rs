//! Azurite, the Azure Storage emulator, where the simulator keeps live response results: the
//! real Blob REST API, its SAS checks, ranges and MD5 headers.
//!
//! `tests/run-all.sh` installs it (npm package `azurite`, the version it pins) outside the work
//! tree, starts one for the suites and names it in `DEFENDER_AZURITE_BLOB_ENDPOINT`. A plain
//! `cargo test` starts one itself from that install (once per test binary; it stops when the
//! binary exits), and fails saying how to get it when it is not installed: a missing store
//! never lets a test pass.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// Where run-all.sh installs Azurite: `<cache>/defender-package/tools/azurite`.
fn installed_azurite_blob() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_default();
    cache.join("defender-package/tools/azurite/node_modules/.bin/azurite-blob")
}

/// The blob endpoint of the emulator's account (`http://127.0.0.1:PORT/devstoreaccount1`).
pub fn blob_endpoint() -> String {
    if let Ok(endpoint) = std::env::var("DEFENDER_AZURITE_BLOB_ENDPOINT") {
        return endpoint;
    }
    static STARTED: OnceLock<String> = OnceLock::new();
    STARTED.get_or_init(start).clone()
}

/// Keeps the wrapper's standard input open while the test binary lives: when the binary exits,
/// it closes, and the wrapper stops Azurite.
static KEEP_ALIVE: Mutex<Option<Child>> = Mutex::new(None);

fn start() -> String {
    let azurite = std::env::var_os("DEFENDER_AZURITE").map(PathBuf::from).unwrap_or_else(installed_azurite_blob);
    assert!(
        azurite.exists(),
        "Azurite (the Azure Storage emulator the live response tests need) is not installed at {}: run \
         `tests/run-all.sh rust`, which installs and starts it, or install it with \
         `npm install --prefix ~/.cache/defender-package/tools/azurite azurite@3.37.0`, or set \
         DEFENDER_AZURITE_BLOB_ENDPOINT to a running one's http://127.0.0.1:PORT/devstoreaccount1",
        azurite.display()
    );
    if cfg!(not(unix)) {
        panic!("set DEFENDER_AZURITE_BLOB_ENDPOINT (tests/run-all.sh starts Azurite and sets it)");
    }
    // In memory, on a free loopback port, its output in a file (a pipe would break when this
    // binary exits first); the shell stops it when its standard input closes.
    let log = std::env::temp_dir().join(format!("defender-azurite-{}.log", std::process::id()));
    let script = r#""$0" --blobHost 127.0.0.1 --blobPort 0 --inMemoryPersistence --extentMemoryLimit 2048 \
        --disableTelemetry --silent --skipApiVersionCheck >"$1" 2>&1 & child=$!
        cat >/dev/null; kill $child; wait $child; rm -f "$1""#;
    let child = Command::new("sh")
        .args(["-c", script])
        .arg(&azurite)
        .arg(&log)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("the shell starts Azurite");
    let started = std::time::Instant::now();
    let endpoint = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(at) = text.find("listens on ") {
            let url = text[at + "listens on ".len()..].lines().next().unwrap_or_default().trim();
            break format!("{url}/devstoreaccount1");
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "Azurite did not start: {text}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    *KEEP_ALIVE.lock().unwrap() = Some(child);
    endpoint
}
