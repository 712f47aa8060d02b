//! `defender-bench`: how fast and how lean the library downloads, measured against the
//! simulator, which runs as its own process (its release binary) so that it shares neither
//! memory nor runtime with the library.
//!
//! 1. Throughput: one large package, downloaded by the library through the C ABI and by curl on
//!    the same machine, each with a fresh link, runs alternating; prints both throughputs (the
//!    median run), their ratio, and this process's peak memory before and after.
//! 2. Fifty packages: a simulator with the documented rate limits and a fast clock, and a client
//!    with the same clock, downloading them all through `defender_download_packages`; prints the
//!    total time against the least the limits allow, and how many 429s the simulator answered.
//!
//! `cargo run --release -p defender-bench -- --help` lists the options.

#[path = "../../cli/src/native.rs"]
#[allow(dead_code)] // shared with the CLI and the tests; the benchmark uses part of it
mod native;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use defender_simulator::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, ReadyInfo, parse_byte_size};
use native::{BatchCallbacks, Client};
use serde_json::Value;

/// Download throughput and memory of the defender library next to curl, and a batch of
/// packages against the time the rate limits allow, all against the simulator.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Size of the package in the throughput runs (such as 512MiB, 2GiB, 4GB)
    #[arg(long, default_value = "2GiB", value_parser = parse_byte_size)]
    size: u64,
    /// Have the simulator send Content-MD5, so that the library checks it too (curl does not)
    #[arg(long)]
    content_md5: bool,
    /// Runs of each downloader in the throughput part; the median is shown
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    runs: u32,
    /// Packages in the batch part
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    actions: u32,
    /// How much faster than real time the clocks of the batch part run (simulator and library)
    #[arg(long, default_value_t = 60.0)]
    clock_scale: f64,
    /// Size of each package in the batch part
    #[arg(long, default_value = "1MiB", value_parser = parse_byte_size)]
    batch_package_size: u64,
    /// Folder the downloads go to (default: a new temporary folder, removed at the end)
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Only the throughput part
    #[arg(long, conflicts_with = "only_batch")]
    only_throughput: bool,
    /// Only the batch part
    #[arg(long)]
    only_batch: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("defender-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    if cfg!(debug_assertions) {
        eprintln!("defender-bench: this is a debug build; measure with `cargo run --release -p defender-bench`");
    }
    let simulator_binary = simulator_binary()?;
    let work_dir = match &args.work_dir {
        Some(folder) => tempfile::tempdir_in(folder),
        None => tempfile::tempdir(),
    }
    .map_err(|err| format!("cannot create a work folder: {err}"))?;
    if !args.only_batch {
        throughput(args, &simulator_binary, work_dir.path())?;
    }
    if !args.only_throughput {
        batch(args, &simulator_binary, work_dir.path())?;
    }
    Ok(())
}

/// The simulator's release binary beside this one, built first when run through cargo.
fn simulator_binary() -> Result<PathBuf, String> {
    let folder = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .ok_or("cannot tell where this program is")?;
    let binary = folder.join(format!("defender-simulator{}", std::env::consts::EXE_SUFFIX));
    // `cargo run` says where cargo is: keep the simulator as fresh as this program.
    if let Some(cargo) = std::env::var_os("CARGO") {
        let profile = if cfg!(debug_assertions) { [].as_slice() } else { ["--release"].as_slice() };
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "defender-simulator", "--bin", "defender-simulator"])
            .args(profile)
            .status()
            .map_err(|err| format!("cannot run cargo to build the simulator: {err}"))?;
        if !status.success() {
            return Err("building the simulator failed".into());
        }
    }
    if !binary.is_file() {
        return Err(format!(
            "no simulator at '{}'; build it with `cargo build --release -p defender-simulator`",
            binary.display()
        ));
    }
    Ok(binary)
}

/// A simulator in its own process, stopped when dropped.
struct SimulatorProcess {
    child: Child,
    ready: ReadyInfo,
}

impl SimulatorProcess {
    fn start(binary: &Path, args: &[&str]) -> Result<Self, String> {
        let mut child = Command::new(binary)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|err| format!("cannot start '{}': {err}", binary.display()))?;
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout is piped");
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|err| format!("reading the simulator's ready line: {err}"))?;
        match serde_json::from_str(&line) {
            Ok(ready) => Ok(Self { child, ready }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err("the simulator did not start; its error is above".into())
            }
        }
    }

    /// A client signed in to this simulator as its own app, with `options` on top.
    fn client(&self, options: &[(&str, &str)]) -> Result<Client, String> {
        let client = Client::new();
        let base = self.ready.base_url.as_str();
        let sign_in = [
            ("base_url", base),
            ("authority_url", base),
            ("tenant_id", DEFAULT_TENANT_ID),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
        ];
        for (key, value) in sign_in.iter().chain(options) {
            client.set(key, Some(value)).map_err(|failure| failure.to_string())?;
        }
        Ok(client)
    }

    /// The simulator's request log for one endpoint (`GET /_sim/requests`), read with curl.
    fn requests(&self, endpoint: &str) -> Result<Vec<Value>, String> {
        let log = curl(&[&format!("{}/_sim/requests?endpoint={endpoint}", self.ready.base_url)])?;
        serde_json::from_slice(&log).map_err(|err| format!("the request log is not JSON: {err}"))
    }
}

impl Drop for SimulatorProcess {
    fn drop(&mut self) {
        // Only the process this benchmark started, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn throughput(args: &Args, simulator_binary: &Path, work_dir: &Path) -> Result<(), String> {
    let mut simulator_args = vec!["--rate-limit", "off", "--seed-actions", "1"];
    if args.content_md5 {
        simulator_args.push("--content-md5");
    }
    let package_size = args.size.to_string();
    simulator_args.extend(["--package-size", &package_size]);
    let simulator = SimulatorProcess::start(simulator_binary, &simulator_args)?;
    let action_id = simulator.ready.seeded_action_ids[0].clone();
    let client = simulator.client(&[("rate_limit", "off")])?;
    // Signs in and starts the library's workers, so that the baseline memory includes them.
    let link = client.package_uri(&action_id).map_err(|failure| failure.to_string())?;
    if args.content_md5 {
        // The simulator computes a package's MD5 on the first request that needs it: not in a run.
        curl(&["--head", "--output", "/dev/null", &link])?;
    }
    let memory_before = peak_memory();
    let checked = if args.content_md5 { ", Content-MD5 sent and checked by the library" } else { "" };
    println!(
        "download throughput: a {} package from the simulator{checked}, {} runs each, median",
        size(args.size),
        args.runs
    );

    let mut library = Vec::new();
    let mut curl = Vec::new();
    let mut curl_synced = Vec::new();
    for _ in 0..args.runs {
        let started = Instant::now();
        let result = client.download(&action_id, work_dir, None).map_err(|failure| failure.to_string())?;
        library.push(started.elapsed());
        let path = PathBuf::from(result["path"].as_str().unwrap_or_default());
        check_size(&path, args.size)?;
        remove(&path)?;

        let link = client.package_uri(&action_id).map_err(|failure| failure.to_string())?;
        let path = work_dir.join("curl.zip");
        let started = Instant::now();
        self::curl(&["--output", path.to_str().ok_or("the work folder's path is not UTF-8")?, &link])?;
        curl.push(started.elapsed());
        // The library syncs the file before renaming it into place; the same for curl's file.
        std::fs::File::open(&path)
            .and_then(|file| file.sync_all())
            .map_err(|err| format!("syncing curl's file: {err}"))?;
        curl_synced.push(started.elapsed());
        check_size(&path, args.size)?;
        remove(&path)?;
    }
    let memory_after = peak_memory();

    let rate = |runs: &mut Vec<Duration>| args.size as f64 / median(runs).as_secs_f64() / MIB;
    let (library, curl, curl_synced) = (rate(&mut library), rate(&mut curl), rate(&mut curl_synced));
    println!("  library, defender_download_package (file synced)   {library:8.0} MiB/s");
    println!("  curl -o FILE, then fsync                           {curl_synced:8.0} MiB/s");
    println!("  curl -o FILE (bytes left in the page cache)        {curl:8.0} MiB/s");
    println!("  library / (curl + fsync)                           {:8.2}", library / curl_synced);
    println!("  library / curl                                     {:8.2}", library / curl);
    match (memory_before, memory_after) {
        (Some(before), Some(after)) => println!(
            "  peak memory of the library's process (VmHWM)       {:8.1} MiB before the downloads, {:.1} MiB after",
            before as f64 / MIB,
            after as f64 / MIB
        ),
        _ => println!("  peak memory: not available on this system (Linux /proc/self/status)"),
    }
    Ok(())
}

fn batch(args: &Args, simulator_binary: &Path, work_dir: &Path) -> Result<(), String> {
    let (scale, actions, package_size) =
        (args.clock_scale.to_string(), args.actions.to_string(), args.batch_package_size.to_string());
    let simulator = SimulatorProcess::start(
        simulator_binary,
        &["--clock-scale", &scale, "--seed-actions", &actions, "--package-size", &package_size],
    )?;
    let client = simulator.client(&[("clock_scale", &scale)])?;
    let ids: Vec<&str> = simulator.ready.seeded_action_ids.iter().map(String::as_str).collect();
    println!(
        "\n{} packages of {} through defender_download_packages: rate limits on, clocks {}x faster",
        ids.len(),
        size(args.batch_package_size),
        args.clock_scale
    );

    let started = Instant::now();
    let results = client.download_many(&ids, work_dir, BatchCallbacks::default()).map_err(|f| f.to_string())?;
    let took = started.elapsed();

    let saved = results.iter().filter(|result| result["code"] == 0).count();
    let mut failures: Vec<String> = results
        .iter()
        .filter(|result| result["code"] != 0)
        .map(|result| result["status"].as_str().unwrap_or("?").to_owned())
        .collect();
    failures.dedup();
    let link_requests = simulator.requests("get_package_uri")?;
    let throttled = link_requests.iter().filter(|request| request["status"] == 429).count();
    // getPackageUri: 2 a minute and 120 an hour (the service's documented limits).
    let least = Duration::from_secs_f64(least_time(ids.len(), 2, 120) / args.clock_scale);
    println!("  saved                                              {saved:8} of {}", ids.len());
    if !failures.is_empty() {
        println!("  failed items' statuses                             {}", failures.join(", "));
    }
    println!("  link requests (getPackageUri) / answered 429       {:8} / {throttled}", link_requests.len());
    println!("  total time                                         {:8.1} s", took.as_secs_f64());
    println!("  least time the limits allow (2/min, 120/h)         {:8.1} s", least.as_secs_f64());
    println!("  total / least                                      {:8.2}", took.as_secs_f64() / least.as_secs_f64());
    Ok(())
}

/// Runs curl quietly (failing on an HTTP error) and returns what it wrote to standard output.
fn curl(args: &[&str]) -> Result<Vec<u8>, String> {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--fail"])
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .map_err(|err| format!("cannot run curl (is it installed?): {err}"))?;
    if !output.status.success() {
        return Err(format!("curl failed: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(output.stdout)
}

const MIB: f64 = 1024.0 * 1024.0;

fn size(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", bytes as f64 / MIB / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / MIB)
    }
}

fn median(runs: &mut [Duration]) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn check_size(path: &Path, expected: u64) -> Result<(), String> {
    let actual = std::fs::metadata(path).map_err(|err| format!("'{}': {err}", path.display()))?.len();
    if actual != expected {
        return Err(format!("'{}' has {actual} bytes, not {expected}", path.display()));
    }
    Ok(())
}

fn remove(path: &Path) -> Result<(), String> {
    std::fs::remove_file(path).map_err(|err| format!("removing '{}': {err}", path.display()))
}

/// This process's peak resident memory in bytes (`VmHWM`), where the system tells it.
fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// Seconds from the first to the last of `calls` requests made as early as sliding windows of
/// `per_minute` requests a minute and `per_hour` an hour allow.
fn least_time(calls: usize, per_minute: usize, per_hour: usize) -> f64 {
    let mut times: Vec<f64> = Vec::with_capacity(calls);
    for call in 0..calls {
        let after_minute = call.checked_sub(per_minute).map_or(0.0, |earlier| times[earlier] + 60.0);
        let after_hour = call.checked_sub(per_hour).map_or(0.0, |earlier| times[earlier] + 3600.0);
        times.push(after_minute.max(after_hour));
    }
    times.last().copied().unwrap_or(0.0)
}
