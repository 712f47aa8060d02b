//! `defender-bench`: how fast and how lean the library is, each figure measured against its
//! comparison in the same run, the two sides alternating. The simulator runs as its own process
//! (its release binary), so that it shares neither memory nor runtime with the library.
//!
//! 1. Memory: one large package (default 4 GiB) through the C ABI; the process's peak resident
//!    memory against the 32 MiB goal.
//! 2. Throughput: one package (default 1 GiB) downloaded by the library with SHA-256 against
//!    `curl -o FILE`; then with the server's Content-MD5 checked as well, against
//!    `curl | tee FILE | sha256sum` with `md5sum` beside it, then `sync FILE`. Median
//!    throughputs, spread, CPU seconds per GiB, ratios.
//! 3. Cost of a call: `defender_get_machine_action` against a minimal HTTP server in this
//!    process, and the same request with the same HTTP client directly (see `calls.rs`); the
//!    medians, what the ABI adds, sixteen threads against one, and callgrind's instruction
//!    counts per call.
//! 4. Fifty packages: a simulator with the documented rate limits and a fast clock, and a client
//!    with the same clock, downloading them all through `defender_download_packages`; the total
//!    time against the least the limits allow, and how many 429s the simulator answered.
//! 5. Hostile answers (only with `--only hostile`: it takes minutes): each answer of a hostile
//!    server that issue 19 names, in a process of its own with caps on time, memory and disk;
//!    its peak memory, time, requests and outcome (see `hostile.rs`).
//!
//! `cargo run --release -p defender-bench -- --help` lists the options.

mod calls;
mod hostile;
mod throughput;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use defender_native::{BatchCallbacks, Client};
use defender_simulator::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, ReadyInfo, parse_byte_size};
use serde_json::Value;
use throughput::{Runs, Tools};

/// The library's throughput, memory and cost per call, each against its comparison measured in
/// the same run, and a batch of packages against the time the rate limits allow.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Parts to run (all but hostile when not given); may be repeated
    #[arg(long, value_enum)]
    only: Vec<Part>,
    /// Cases of the hostile part to run (all when not given); may be repeated
    #[arg(long)]
    case: Vec<String>,
    /// Kill a hostile case's process past this resident memory
    #[arg(long, default_value = "2GiB", value_parser = parse_byte_size)]
    memory_cap: u64,
    /// Kill a hostile case's process past this many bytes in its download folder
    #[arg(long, default_value = "2GiB", value_parser = parse_byte_size)]
    disk_cap: u64,
    /// Size of the package in the throughput runs (such as 512MiB, 2GiB, 4GB)
    #[arg(long, default_value = "1GiB", value_parser = parse_byte_size)]
    size: u64,
    /// Runs of each side in the throughput comparisons; the median is shown
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    runs: u32,
    /// Leave out the throughput comparison with Content-MD5 checked (quicker when working on
    /// the SHA-256 path)
    #[arg(long)]
    no_md5_comparison: bool,
    /// Size of the package whose download's peak memory is measured
    #[arg(long, default_value = "4GiB", value_parser = parse_byte_size)]
    memory_size: u64,
    /// Alternating rounds of each side in the cost-of-a-call part
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    call_rounds: u32,
    /// Calls of each side per round
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    calls_per_round: u32,
    /// Threads sharing one client, against one thread
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(2..=256))]
    threads: u32,
    /// How long the server of the call part takes to answer in the scaling runs, in
    /// milliseconds, as a service does (the calls then wait rather than compute)
    #[arg(long, default_value_t = 2)]
    server_latency_ms: u64,
    /// Calls of each side counted under valgrind's callgrind (0: none)
    #[arg(long, default_value_t = 200)]
    callgrind_calls: u32,
    /// Packages in the batch part
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    actions: u32,
    /// How much faster than real time the clocks of the batch part run (simulator and library)
    #[arg(long, default_value_t = 60.0)]
    clock_scale: f64,
    /// Size of each package in the batch part
    #[arg(long, default_value = "1MiB", value_parser = parse_byte_size)]
    batch_package_size: u64,
    /// Folder the downloads go to (default: a new folder in /dev/shm where there is one, else
    /// in the temporary folder; removed at the end)
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// (internal) the client side of the call part, run under callgrind against this server
    #[arg(long, hide = true)]
    callgrind_child: Option<String>,
    #[arg(long, hide = true, default_value_t = 0)]
    calls_under_callgrind: u32,
    /// (internal) one case of the hostile part, as JSON
    #[arg(long, hide = true)]
    hostile_child: Option<String>,
}

impl Args {
    fn server_latency(&self) -> Duration {
        Duration::from_millis(self.server_latency_ms)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    Memory,
    Throughput,
    Calls,
    Batch,
    Hostile,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = match (&args.callgrind_child, &args.hostile_child) {
        (Some(base_url), _) => calls::callgrind_child(base_url, args.calls_under_callgrind),
        (None, Some(case)) => hostile::child(case),
        (None, None) => run(&args),
    };
    match outcome {
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
    let shm = Path::new("/dev/shm");
    let work_dir = match &args.work_dir {
        Some(folder) => tempfile::tempdir_in(folder),
        None if shm.is_dir() => tempfile::tempdir_in(shm),
        None => tempfile::tempdir(),
    }
    .map_err(|err| format!("cannot create a work folder: {err}"))?;
    println!("work folder: {}", work_dir.path().display());
    let wanted = |part: Part| (args.only.is_empty() && part != Part::Hostile) || args.only.contains(&part);
    // First: the peak is the process's, and nothing else has raised it yet.
    if wanted(Part::Memory) {
        memory(args, &simulator_binary, work_dir.path())?;
    }
    if wanted(Part::Throughput) {
        throughput(args, &simulator_binary, work_dir.path())?;
    }
    if wanted(Part::Calls) {
        call_cost(args, work_dir.path())?;
    }
    if wanted(Part::Batch) {
        batch(args, &simulator_binary, work_dir.path())?;
    }
    if args.only.contains(&Part::Hostile) {
        hostile::run(&simulator_binary, work_dir.path(), &args.case, args.memory_cap, args.disk_cap)?;
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

/// A simulator serving one package of `size` (with Content-MD5 when `md5`), a client signed in
/// to it, and the package's action id.
fn package_server(binary: &Path, size: u64, md5: bool) -> Result<(SimulatorProcess, Client, String), String> {
    let size = size.to_string();
    let mut simulator_args = vec!["--rate-limit", "off", "--seed-actions", "1", "--package-size", &size];
    if md5 {
        simulator_args.push("--content-md5");
    }
    let simulator = SimulatorProcess::start(binary, &simulator_args)?;
    let action_id = simulator.ready.seeded_action_ids[0].clone();
    let client = simulator.client(&[("rate_limit", "off")])?;
    // Signs in and starts the library's workers; with MD5, the simulator computes the package's
    // MD5 on the first request that needs it: not in a run.
    let link = client.package_uri(&action_id).map_err(|failure| failure.to_string())?;
    if md5 {
        curl(&["--head", "--output", "/dev/null", &link])?;
    }
    Ok((simulator, client, action_id))
}

fn memory(args: &Args, simulator_binary: &Path, work_dir: &Path) -> Result<(), String> {
    let (_simulator, client, action_id) = package_server(simulator_binary, args.memory_size, true)?;
    let before = peak_memory();
    let mut runs = Runs::default();
    throughput::library_run(&client, &action_id, work_dir, args.memory_size, &mut runs)?;
    let after = peak_memory();
    println!("memory: a {} package through defender_download_package, SHA-256 and MD5 checked", size(args.memory_size));
    match (before, after) {
        (Some(before), Some(after)) => {
            println!("  peak resident memory (VmHWM) before the download     {:8.1} MiB", before as f64 / MIB);
            println!("  peak resident memory (VmHWM) after                   {:8.1} MiB", after as f64 / MIB);
            println!("  after / goal of 32 MiB                               {:8.2}", after as f64 / MIB / 32.0);
        }
        _ => println!("  peak memory: not available on this system (Linux /proc/self/status)"),
    }
    Ok(())
}

fn throughput(args: &Args, simulator_binary: &Path, work_dir: &Path) -> Result<(), String> {
    let comparisons: &[bool] = if args.no_md5_comparison { &[false] } else { &[false, true] };
    for &md5 in comparisons {
        let (_simulator, client, action_id) = package_server(simulator_binary, args.size, md5)?;
        let (tools, library_name, tools_name) = if md5 {
            (
                Tools::Pipeline { md5: true },
                "library, SHA-256 + Content-MD5 checked, ZIP check, sync, rename",
                "curl | tee FILE | sha256sum, md5sum beside, sync FILE",
            )
        } else {
            (Tools::Curl, "library, SHA-256, ZIP check, sync, rename", "curl -o FILE")
        };
        println!(
            "\nthroughput: a {} package from the simulator{}, {} runs each, alternating; median (slowest-fastest)",
            size(args.size),
            if md5 { " sending Content-MD5" } else { "" },
            args.runs
        );
        let (mut library, mut others) = (Runs::default(), Runs::default());
        for _ in 0..args.runs {
            throughput::library_run(&client, &action_id, work_dir, args.size, &mut library)?;
            let link = client.package_uri(&action_id).map_err(|failure| failure.to_string())?;
            throughput::tools_run(tools, &link, work_dir, args.size, &mut others)?;
        }
        let show = |name: &str, runs: &Runs| {
            let (median, slowest, fastest) = runs.rates(args.size);
            println!(
                "  {name:<58} {median:6.0} MiB/s ({slowest:.0}-{fastest:.0}), {:.2} CPU s/GiB",
                runs.cpu_per_gib(args.size)
            );
        };
        show(library_name, &library);
        show(tools_name, &others);
        println!(
            "  library / {:<48} {:6.2}",
            if md5 { "pipeline" } else { "curl" },
            library.rates(args.size).0 / others.rates(args.size).0
        );
    }
    Ok(())
}

fn call_cost(args: &Args, work_dir: &Path) -> Result<(), String> {
    let instant = calls::start_server(Duration::ZERO)?;
    let threads = args.threads as usize;
    println!(
        "\ncost of a call: GET /api/machineactions/{{id}} against a minimal keep-alive server in this process; \
         defender_get_machine_action against the same request with the same reqwest client, directly"
    );
    println!(
        "  one thread, {} rounds of {} calls a side, alternating call by call:",
        args.call_rounds, args.calls_per_round
    );
    let figures = calls::latency(&instant, args.call_rounds, args.calls_per_round)?;
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let spread = |(low, high): (Duration, Duration)| format!("({:.0}-{:.0} over rounds)", micros(low), micros(high));
    println!(
        "  library, median                                       {:8.1} µs {}",
        micros(figures.library_median),
        spread(figures.library_spread)
    );
    println!(
        "  direct, median                                        {:8.1} µs {}",
        micros(figures.direct_median),
        spread(figures.direct_spread)
    );
    println!(
        "  what the C ABI adds, median (goal: under 50 µs)       {:8.1} µs",
        micros(figures.library_median) - micros(figures.direct_median)
    );
    if args.callgrind_calls > 0 {
        match calls::callgrind_counts(&instant, args.callgrind_calls, work_dir)? {
            Some((library, direct)) => {
                println!(
                    "  instructions per call, callgrind ({} calls a side, all the client's threads, not the server's):",
                    args.callgrind_calls
                );
                println!("    library {library:8.0}, direct {direct:8.0}, library / direct {:.2}", library / direct);
            }
            None => println!("  instructions per call: valgrind is not installed"),
        }
    }
    let latencies = [(Duration::ZERO, instant), (args.server_latency(), calls::start_server(args.server_latency())?)];
    for (latency, base_url) in latencies {
        let [(library_1, library_n), (direct_1, direct_n)] =
            calls::scaling(&base_url, args.call_rounds, args.calls_per_round, threads)?;
        println!(
            "  {threads} threads sharing one client against one thread, the server answering after {} ms:",
            latency.as_millis()
        );
        println!(
            "    library {library_1:6.0} -> {library_n:6.0} calls/s: {:5.1}x   direct {direct_1:6.0} -> {direct_n:6.0} calls/s: {:5.1}x",
            library_n / library_1,
            direct_n / direct_1
        );
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
