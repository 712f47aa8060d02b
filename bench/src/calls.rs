//! What a call through the C ABI costs beyond its HTTP round trip.
//!
//! A minimal keep-alive HTTP server in this process (a thread per connection, one fixed
//! MachineAction answer) takes `GET /api/machineactions/{id}` from two sides, in alternating
//! rounds: `defender_get_machine_action` (token through `access_token`, `rate_limit` off) and the
//! same request made directly with the same HTTP client (`defender::fuzzing::api_http_client`, the
//! library's own settings) on a runtime like the library's. The difference of the medians is what
//! the ABI adds: entering the runtime, pumping the call's channel, JSON, strings, last-error.
//! Then sixteen threads share one client, against one thread's rate.
//!
//! Under valgrind, the same calls are counted in instructions: this program runs itself under
//! callgrind as the client (the server stays in this process, so its instructions are not
//! counted), marking the start and end of each side with `defender_bench_callgrind_mark`.

use std::ffi::{CString, c_char};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::ptr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use defender::{DefenderClient, DefenderStatus};

pub const ACTION_ID: &str = "7f3b9c1e-2d4a-4e8f-9a6b-1c2d3e4f5a6b";
const TOKEN: &str = "bench-access-token-not-a-secret";

/// A MachineAction as the service documents it.
const ACTION_JSON: &str = r#"{"@odata.context":"https://api.security.microsoft.com/api/$metadata#MachineActions/$entity","id":"7f3b9c1e-2d4a-4e8f-9a6b-1c2d3e4f5a6b","type":"CollectInvestigationPackage","scope":null,"requestor":"Analyst@contoso.com","requestorComment":"Collect forensics for the incident","status":"Succeeded","machineId":"1e5bc9d7e413ddd7902c2932e418702b84d0cc07","computerDnsName":"desktop-test","creationDateTimeUtc":"2026-12-01T10:47:29.0000000Z","lastUpdateDateTimeUtc":"2026-12-01T10:55:53.0000000Z","relatedFileInfo":null,"errorHResult":0,"externalID":null,"requestSource":"PublicApi","commands":[],"troubleshootInfo":null}"#;

/// Serves the fixed answer on `127.0.0.1`, `latency` after each request (a service's time to
/// answer; zero for the cost of a call itself), keep-alive, a thread per connection, for ever
/// (the threads end with the process).
pub fn start_server(latency: Duration) -> Result<String, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|err| format!("cannot listen on loopback: {err}"))?;
    let address = listener.local_addr().map_err(|err| err.to_string())?;
    let answer = Arc::new(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json; odata.metadata=minimal\r\ncontent-length: {}\r\n\r\n{ACTION_JSON}",
            ACTION_JSON.len()
        )
        .into_bytes(),
    );
    std::thread::spawn(move || {
        for connection in listener.incoming().flatten() {
            let answer = Arc::clone(&answer);
            std::thread::spawn(move || serve(connection, &answer, latency));
        }
    });
    Ok(format!("http://{address}"))
}

/// Answers every request head (`GET`, no body) on the connection until the client closes it.
fn serve(mut connection: TcpStream, answer: &[u8], latency: Duration) {
    let _ = connection.set_nodelay(true);
    let mut buffer = vec![0u8; 16 * 1024];
    let mut filled = 0;
    loop {
        match connection.read(&mut buffer[filled..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
        while let Some(end) = buffer[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            if !latency.is_zero() {
                std::thread::sleep(latency);
            }
            if connection.write_all(answer).is_err() {
                return;
            }
            buffer.copy_within(end + 4..filled, 0);
            filled -= end + 4;
        }
        if filled == buffer.len() {
            return; // a head this large is not one of ours
        }
    }
}

/// A library client for the server: the token as `access_token`, no rate limit.
pub struct LibraryClient(*mut DefenderClient);

// SAFETY: the C ABI allows one client to be used from many threads at once.
unsafe impl Send for LibraryClient {}
unsafe impl Sync for LibraryClient {}

impl LibraryClient {
    pub fn new(base_url: &str) -> Result<Self, String> {
        let mut raw = ptr::null_mut();
        // SAFETY: a valid out-pointer.
        if unsafe { defender::defender_client_new(&mut raw) } != DefenderStatus::Ok {
            return Err("defender_client_new failed".into());
        }
        let client = Self(raw);
        for (key, value) in [("base_url", base_url), ("access_token", TOKEN), ("rate_limit", "off")] {
            let (key, value) = (CString::new(key).unwrap(), CString::new(value).unwrap());
            // SAFETY: live client, NUL-terminated strings.
            if unsafe { defender::defender_client_set(client.0, key.as_ptr(), value.as_ptr()) } != DefenderStatus::Ok {
                return Err(format!("setting {key:?} failed"));
            }
        }
        Ok(client)
    }

    /// One `defender_get_machine_action`, its string freed as a caller frees it.
    pub fn call(&self, action_id: &CString) -> Result<(), String> {
        let mut json: *mut c_char = ptr::null_mut();
        // SAFETY: live client, NUL-terminated id, valid out-pointer; the string is freed once.
        let status = unsafe { defender::defender_get_machine_action(self.0, action_id.as_ptr(), &mut json) };
        if status != DefenderStatus::Ok {
            return Err(format!("defender_get_machine_action: {status:?}: {}", defender_native::last_error()));
        }
        unsafe { defender::defender_string_free(json) };
        Ok(())
    }
}

impl Drop for LibraryClient {
    fn drop(&mut self) {
        unsafe { defender::defender_client_free(self.0) }
    }
}

/// The same request with the same HTTP client, built by the library's own code from its
/// default settings, on a runtime shaped like the library's.
pub struct DirectClient {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    url: String,
    timeout: Option<Duration>,
}

impl DirectClient {
    pub fn new(base_url: &str) -> Result<Self, String> {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .map_err(|err| err.to_string())?;
        let (http, timeout) = defender::fuzzing::api_http_client()?;
        Ok(Self { runtime, http, url: format!("{base_url}/api/machineactions/{ACTION_ID}"), timeout })
    }

    pub fn call(&self) -> Result<(), String> {
        self.runtime.block_on(async {
            let mut request = self.http.get(&self.url).bearer_auth(TOKEN);
            if let Some(timeout) = self.timeout {
                request = request.timeout(timeout);
            }
            let response = request.send().await.map_err(|err| err.to_string())?;
            if !response.status().is_success() {
                return Err(format!("HTTP {}", response.status()));
            }
            response.bytes().await.map(drop).map_err(|err| err.to_string())
        })
    }
}

/// Time per call on one thread: each side's median and the spread of the rounds' medians.
pub struct Latency {
    pub library_median: Duration,
    pub direct_median: Duration,
    pub library_spread: (Duration, Duration),
    pub direct_spread: (Duration, Duration),
}

/// `rounds` rounds of `calls_per_round` pairs of calls, library then direct, on one thread:
/// the two sides alternate call by call, so that both see the same load on the machine.
pub fn latency(base_url: &str, rounds: u32, calls_per_round: u32) -> Result<Latency, String> {
    let (library, direct, id) = clients(base_url)?;
    let (mut library_times, mut direct_times) = (Vec::new(), Vec::new());
    let (mut library_round_medians, mut direct_round_medians) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (mut library_round, mut direct_round) = (Vec::new(), Vec::new());
        for _ in 0..calls_per_round {
            library_round.push(timed(|| library.call(&id))?);
            direct_round.push(timed(|| direct.call())?);
        }
        library_round_medians.push(median(&library_round));
        direct_round_medians.push(median(&direct_round));
        library_times.extend(library_round);
        direct_times.extend(direct_round);
    }
    Ok(Latency {
        library_median: median(&library_times),
        direct_median: median(&direct_times),
        library_spread: min_max(&library_round_medians),
        direct_spread: min_max(&direct_round_medians),
    })
}

/// Calls a second on one thread and on `threads` threads sharing one client, for each side
/// (library, direct): the median of `rounds` alternating rounds of `calls` calls.
pub fn scaling(base_url: &str, rounds: u32, calls: u32, threads: usize) -> Result<[(f64, f64); 2], String> {
    let (library, direct, id) = clients(base_url)?;
    let mut rates = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
    for _ in 0..rounds {
        for (side, many) in [(0, 1), (0, threads), (1, 1), (1, threads)] {
            let per_thread = (calls / many as u32).max(1);
            let rate = if side == 0 {
                parallel_rate(many, per_thread, || library.call(&id))?
            } else {
                parallel_rate(many, per_thread, || direct.call())?
            };
            rates[side][usize::from(many > 1)].push(rate);
        }
    }
    let [[mut library_1, mut library_n], [mut direct_1, mut direct_n]] = rates;
    Ok([
        (median_f64(&mut library_1), median_f64(&mut library_n)),
        (median_f64(&mut direct_1), median_f64(&mut direct_n)),
    ])
}

/// Both clients, their connections opened and their code paged in.
fn clients(base_url: &str) -> Result<(LibraryClient, DirectClient, CString), String> {
    let library = LibraryClient::new(base_url)?;
    let direct = DirectClient::new(base_url)?;
    let id = CString::new(ACTION_ID).unwrap();
    for _ in 0..20 {
        library.call(&id)?;
        direct.call()?;
    }
    Ok((library, direct, id))
}

fn timed(call: impl FnOnce() -> Result<(), String>) -> Result<Duration, String> {
    let started = Instant::now();
    call()?;
    Ok(started.elapsed())
}

fn parallel_rate(threads: usize, per_thread: u32, call: impl Fn() -> Result<(), String> + Sync) -> Result<f64, String> {
    let started = Instant::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    for _ in 0..per_thread {
                        call()?;
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|worker| worker.join().map_err(|_| "a calling thread panicked".to_owned())?)
    })?;
    Ok(f64::from(per_thread) * threads as f64 / started.elapsed().as_secs_f64())
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn median_f64(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn min_max(values: &[Duration]) -> (Duration, Duration) {
    (values.iter().copied().min().unwrap_or_default(), values.iter().copied().max().unwrap_or_default())
}

/// Where callgrind starts a new count (`--dump-before`): each call dumps what was counted since
/// the previous one.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn defender_bench_callgrind_mark() {
    std::hint::black_box(());
}

/// The client side under callgrind: warm-up, mark, `calls` library calls, mark, `calls` direct
/// calls, mark.
pub fn callgrind_child(base_url: &str, calls: u32) -> Result<(), String> {
    let (library, direct, id) = clients(base_url)?;
    defender_bench_callgrind_mark();
    for _ in 0..calls {
        library.call(&id)?;
    }
    defender_bench_callgrind_mark();
    for _ in 0..calls {
        direct.call()?;
    }
    defender_bench_callgrind_mark();
    Ok(())
}

/// Instructions per call (library, direct), counted by callgrind over all of the client's
/// threads; `None` when valgrind is not installed.
pub fn callgrind_counts(base_url: &str, calls: u32, folder: &Path) -> Result<Option<(f64, f64)>, String> {
    if Command::new("valgrind").arg("--version").output().is_err() {
        return Ok(None);
    }
    let exe = std::env::current_exe().map_err(|err| err.to_string())?;
    let out = folder.join("callgrind.out");
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg("--dump-before=defender_bench_callgrind_mark")
        .arg("--quiet")
        .arg(&exe)
        .args(["--callgrind-child", base_url, "--calls-under-callgrind", &calls.to_string()])
        .status()
        .map_err(|err| format!("cannot run valgrind: {err}"))?;
    if !status.success() {
        return Err("the run under callgrind failed".into());
    }
    // Dump 1 is the start-up and warm-up, 2 the library's calls, 3 the direct calls.
    let totals = |dump: u32| -> Result<f64, String> {
        let path = format!("{}.{dump}", out.display());
        let text = std::fs::read_to_string(&path).map_err(|err| format!("'{path}': {err}"))?;
        text.lines()
            .find_map(|line| line.strip_prefix("summary: ").or_else(|| line.strip_prefix("totals: ")))
            .and_then(|count| count.split_whitespace().next()?.parse::<f64>().ok())
            .ok_or_else(|| format!("'{path}' holds no instruction count"))
    };
    Ok(Some((totals(2)? / f64::from(calls), totals(3)? / f64::from(calls))))
}
