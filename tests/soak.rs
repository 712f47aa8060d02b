//! Soak: many packages through the simulator's chaos mode in one process (every one intact,
//! memory and descriptors flat), then a batch whose process is killed (SIGKILL) at random
//! instants again and again, each rerun going on from what the killed one left: at the end
//! every package is there, whole, no part is left, and no byte that was on disk was fetched
//! again. Through the C ABI, against the simulator over loopback HTTP.
//!
//! Run by `tests/run-all.sh soak` (the tests are ignored by a plain `cargo test`: a couple of
//! minutes). A longer run: `DEFENDER_SOAK_PACKAGES=3000 DEFENDER_SOAK_KILLS=30
//! DEFENDER_SOAK_BATCH=240 tests/run-all.sh soak` (a batch large enough that 30 kills still find
//! downloads running; docs/benchmarks.md has its figures); `DEFENDER_SOAK_SEED` changes the
//! draw. Linux only: it reads `/proc` and glibc's heap figures.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use defender_simulator::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, Simulator};
use serde_json::{Value, json};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// A `kB` field of this process's `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with(field)).unwrap();
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().unwrap()
}

/// Resident memory (KiB) once the allocator has handed back the free memory it keeps
/// (`malloc_trim`), open descriptors, and the heap in use (KiB).
fn measure() -> (u64, usize, u64) {
    // A moment for the threads of the calls just made to close what they hold.
    std::thread::sleep(Duration::from_millis(200));
    unsafe { libc::malloc_trim(0) };
    (status_kib("VmRSS:"), open_descriptors(), heap_in_use_kib())
}

/// The heap in use, in KiB (glibc's count over every arena, mmapped blocks included): what the
/// process holds, without what the allocator keeps of freed memory.
fn heap_in_use_kib() -> u64 {
    let info = unsafe { libc::mallinfo2() };
    ((info.uordblks + info.hblkhd) / 1024) as u64
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Checks that `folder` holds exactly the packages of `ids`, each the simulator's bytes: no part,
/// record or lock file left.
fn assert_all_intact(simulator: &Simulator, ids: &[String], folder: &Path) {
    let mut expected: Vec<String> = ids.iter().map(|id| format!("{id}.zip")).collect();
    expected.sort();
    let mut left = entries(folder);
    left.sort();
    let extra: Vec<&String> = left.iter().filter(|name| !expected.contains(name)).collect();
    let missing: Vec<&String> = expected.iter().filter(|name| !left.contains(name)).collect();
    assert!(extra.is_empty() && missing.is_empty(), "left behind: {extra:?}; missing: {missing:?}");
    for id in ids {
        let package = simulator.package(id).unwrap();
        let saved = std::fs::read(folder.join(format!("{id}.zip"))).unwrap();
        assert!(
            saved == package,
            "{id}: the file differs from the package ({} vs {} bytes)",
            saved.len(),
            package.len()
        );
    }
}

fn empty(folder: &Path) {
    for entry in std::fs::read_dir(folder).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
}

/// Many packages through chaos in this process: every one arrives intact, and the process's
/// resident memory and open descriptors are the same after the last round as after the first.
#[test]
#[ignore = "run by tests/run-all.sh soak"]
fn packages_through_chaos_all_arrive_intact_with_memory_and_descriptors_flat() {
    const ROUND: u64 = 50;
    /// Rounds before the first measure: the pools, caches and connections a process keeps, and
    /// the allocator's arenas, are made by then.
    const WARM_UP: u64 = 2;
    let packages = setting("DEFENDER_SOAK_PACKAGES", 400).max((WARM_UP + 2) * ROUND);
    let seed = setting("DEFENDER_SOAK_SEED", 18);
    // One simulator, reset each round (it forgets its actions, links and tokens), and a fresh
    // client, as a runbook's next run meets the service: the process's memory is then the
    // library's and this test's, not what the simulator remembers.
    let simulator = simulator();
    let start = |round: u64| {
        simulator.reset();
        let chaos = json!({
            "seed": seed + round, "rate": 0.3, "max_per_action": 3, "stall_ms": 2500, "delay_ms": 100,
            "slow_bytes_per_sec": 8_000_000,
        });
        let patch = json!({ "clock_scale": 60.0, "rate_limit": false, "content_md5": true, "chaos": chaos });
        simulator.configure(serde_json::from_value(patch).unwrap()).unwrap();
        let client = client_for(&simulator);
        // timeout_ms bounds a request and its retries (documented): room for three faults in a
        // row, and a stall (2.5 s) still breaks off as one.
        for (key, value) in [("clock_scale", "60"), ("timeout_ms", "1500"), ("max_concurrent_downloads", "4")] {
            client.set(key, Some(value)).unwrap();
        }
        client
    };
    let folder = tempfile::tempdir().unwrap();
    let mut sizes = fastrand::Rng::with_seed(seed);
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    let mut first = None;
    let started = Instant::now();
    for round in 0..packages.div_ceil(ROUND) {
        let count = ROUND.min(packages - round * ROUND);
        let client = start(round);
        let ids: Vec<String> = (0..count)
            .map(|_| create_action(&simulator, json!({ "package_size": sizes.u64(64 << 10..256 << 10) })))
            .collect();
        let names: Vec<&str> = ids.iter().map(String::as_str).collect();
        let results = client.download_many(&names, folder.path(), BatchCallbacks::default()).unwrap();
        for (id, result) in ids.iter().zip(&results) {
            assert_eq!(result["status"], "OK", "{id}: {result}");
        }
        assert_all_intact(&simulator, &ids, folder.path());
        for request in simulator.requests() {
            if let Some(fault) = request.fault {
                let kind = serde_json::to_value(fault).unwrap()["kind"].as_str().unwrap().to_owned();
                *faults.entry(kind).or_default() += 1;
            }
        }
        drop(client);
        empty(folder.path());
        let now = measure();
        if round + 1 >= WARM_UP {
            first.get_or_insert(now);
        }
        eprintln!("round {round}: {count} packages, RSS {} KiB, {} descriptors, heap {} KiB", now.0, now.1, now.2);
    }
    let (rss_first, fds_first, heap_first) = first.unwrap();
    let (rss_last, fds_last, heap_last) = measure();
    let total: u64 = faults.values().sum();
    println!(
        "SOAK chaos: {packages} packages (seed {seed}) in {:.1} s, {total} faults {faults:?}; RSS {rss_first} -> \
         {rss_last} KiB, heap in use {heap_first} -> {heap_last} KiB, descriptors {fds_first} -> {fds_last}",
        started.elapsed().as_secs_f64()
    );
    assert!(total >= packages / 4, "chaos drew too few faults: {total}");
    // Flat: a few MiB of slack for the allocator's fragmentation (the packages alone are 60 MB
    // and more), and for the heap's slow growth (about half a KiB a package over 3,000, slowing).
    assert!(rss_last <= rss_first + 8 * 1024, "RSS grew from {rss_first} to {rss_last} KiB");
    assert!(heap_last <= heap_first + 2 * 1024, "the heap in use grew from {heap_first} to {heap_last} KiB");
    assert!(fds_last <= fds_first + 4, "descriptors grew from {fds_first} to {fds_last}");
}

// --- killed batches -------------------------------------------------------------------------

/// Not a test of its own: the batch a child process runs (`run_child`), told what to do through
/// the environment. Prints each item's status.
#[test]
#[ignore = "run by the soak in a child process"]
fn child_batch() {
    let Ok(base_url) = std::env::var("SOAK_CHILD_BASE_URL") else { return };
    let client = Client::new();
    for (key, value) in [
        ("base_url", base_url.as_str()),
        ("authority_url", base_url.as_str()),
        ("tenant_id", DEFAULT_TENANT_ID),
        ("client_id", DEFAULT_CLIENT_ID),
        ("client_secret", DEFAULT_CLIENT_SECRET),
        ("rate_limit", "off"),
        ("max_concurrent_downloads", "4"),
    ] {
        client.set(key, Some(value)).unwrap();
    }
    let ids = std::env::var("SOAK_CHILD_IDS").unwrap();
    let ids: Vec<&str> = ids.split(',').collect();
    let folder = PathBuf::from(std::env::var("SOAK_CHILD_FOLDER").unwrap());
    let results = client.download_many(&ids, &folder, BatchCallbacks::default()).unwrap();
    let statuses: Vec<&Value> = results.iter().map(|result| &result["status"]).collect();
    println!("STATUSES {}", serde_json::to_string(&statuses).unwrap());
}

/// The batch in a child process (this test binary again); killed after `kill_after`, or waited
/// for. Returns the statuses it printed, when it finished.
fn run_child(
    simulator: &Simulator,
    ids: &[String],
    folder: &Path,
    kill_after: Option<Duration>,
) -> Option<Vec<String>> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_batch", "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("SOAK_CHILD_BASE_URL", simulator.base_url())
        .env("SOAK_CHILD_IDS", ids.join(","))
        .env("SOAK_CHILD_FOLDER", folder)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the test binary starts again");
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if kill_after.is_some_and(|after| started.elapsed() >= after) {
            // SIGKILL, to the child this test started, by its handle.
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the batch did not end");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut output = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut output).unwrap();
    let line =
        output.lines().find_map(|line| Some(line.split_once("STATUSES ")?.1)).unwrap_or_else(|| panic!("{output}"));
    Some(serde_json::from_str(line).unwrap())
}

/// Where a download request for a part of `size` bytes starts (`Range: bytes=N-`; 0 without).
fn range_start(request: &Value) -> u64 {
    request["range"]
        .as_str()
        .and_then(|range| range.strip_prefix("bytes="))
        .and_then(|range| range.split('-').next())
        .and_then(|start| start.parse().ok())
        .unwrap_or(0)
}

/// A batch killed at random instants, again and again: each rerun goes on from what the killed
/// one left, the last finishes it, and no byte that was on disk when a run was killed is fetched
/// again (the simulator counts the bytes it served for each request).
#[test]
#[ignore = "run by tests/run-all.sh soak"]
fn a_batch_killed_again_and_again_finishes_with_nothing_lost_and_nothing_fetched_twice() {
    const SIZE: u64 = 3_000_000;
    let kills = setting("DEFENDER_SOAK_KILLS", 5);
    let count = setting("DEFENDER_SOAK_BATCH", 40);
    let seed = setting("DEFENDER_SOAK_SEED", 18);
    let simulator = simulator_with(json!({ "rate_limit": false }));
    // Slow enough that a kill finds downloads in flight: 4 at once, each at 6 MB/s.
    add_fault(
        &simulator,
        json!({ "endpoint": "download", "times": 0, "fault": { "kind": "slow_body", "bytes_per_sec": 6_000_000 } }),
    );
    let ids: Vec<String> = (0..count).map(|_| create_action(&simulator, json!({ "package_size": SIZE }))).collect();
    let folder = tempfile::tempdir().unwrap();
    let mut instants = fastrand::Rng::with_seed(seed);
    // What each killed run left on disk, by action: the next run must not fetch it again.
    let mut on_disk: HashMap<String, u64> = HashMap::new();
    let (mut served, mut fetched_twice, mut confirmations, mut resumed) = (0u64, 0u64, 0u64, 0u64);
    let mut finished_early = 0;
    for run in 0..=kills {
        simulator.clear_requests();
        let kill_after = (run < kills).then(|| Duration::from_millis(instants.u64(200..1500)));
        let statuses = run_child(&simulator, &ids, folder.path(), kill_after);
        let requests = requests_to(&simulator, "download");
        for request in &requests {
            let id = request["action_id"].as_str().unwrap().to_owned();
            served += request["body_bytes"].as_u64().unwrap();
            let kept = on_disk.get(&id).copied().unwrap_or(0);
            let start = range_start(request);
            // A whole part is confirmed with its last byte (the one byte asked for again).
            if kept == SIZE && start == SIZE - 1 {
                confirmations += 1;
            } else {
                fetched_twice += kept.saturating_sub(start);
            }
            if kept > 0 && start > 0 {
                resumed += 1;
            }
        }
        on_disk = ids
            .iter()
            .map(|id| {
                let part = folder.path().join(format!(".{id}.zip.part"));
                (id.clone(), std::fs::metadata(part).map_or(0, |metadata| metadata.len()))
            })
            .collect();
        match statuses {
            Some(statuses) if run == kills => {
                assert!(statuses.iter().all(|status| status == "OK" || status == "EXISTS"), "{statuses:?}");
            }
            Some(_) => finished_early += 1,
            None => {}
        }
    }
    // A run killed after a rename and before it removed its lock file leaves that file beside the
    // package; the next run, which finds the package there (EXISTS), removes it.
    assert_all_intact(&simulator, &ids, folder.path());
    println!(
        "SOAK kills: {count} packages of {SIZE} bytes, {kills} kills ({finished_early} runs ended before their kill), \
         {resumed} requests resumed a killed run's part, {served} bytes served for {} of packages, bytes fetched \
         twice: {fetched_twice} (and {confirmations} whole parts confirmed with their last byte); nothing left \
         beside the packages",
        count * SIZE
    );
    assert_eq!(fetched_twice, 0, "bytes that were on disk when a run was killed were fetched again");
    assert!(resumed > 0, "no run was killed mid-download");
}
