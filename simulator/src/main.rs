//! `defender-simulator`: runs the simulator until Ctrl+C or SIGTERM. Prints one JSON ready line
//! on standard output, then logs to standard error (`RUST_LOG` filters, default `info`).

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use defender_simulator::{
    ChaosConfig, ChaosKind, Config, ConfigPatch, Options, RouteKind, Schedule, Simulator, parse_byte_size,
};
use tracing_subscriber::EnvFilter;

/// Local simulator of the Microsoft Defender for Endpoint API, its download host and Entra ID
/// sign-in. Listens on loopback only.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// API port (API, sign-in, managed identity, control); must be a loopback address
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Download host port [default: the IP of --listen, any free port]
    #[arg(long, value_name = "ADDR")]
    download_listen: Option<SocketAddr>,
    /// Simulated time runs N times faster: rate-limit windows, Retry-After, action schedules [default: 1]
    #[arg(long, value_name = "N")]
    clock_scale: Option<f64>,
    /// Default package size: 123, 64KiB, 8MiB, 4GiB, ... [default: 8MiB]
    #[arg(long, value_name = "SIZE", value_parser = parse_byte_size)]
    package_size: Option<u64>,
    /// Download links expire after N real seconds [default: 300]
    #[arg(long, value_name = "N")]
    link_ttl_secs: Option<u64>,
    /// Access tokens live N real seconds [default: 3600]
    #[arg(long, value_name = "N")]
    token_lifetime_secs: Option<u64>,
    /// A collection stays Pending P and InProgress I simulated seconds, then ends [default: 5,30]
    #[arg(long, value_name = "P,I", value_parser = parse_schedule)]
    collect_schedule: Option<Schedule>,
    /// Enforce the documented rate limits [default: on]
    #[arg(long, value_name = "on|off")]
    rate_limit: Option<Switch>,
    /// Send Content-MD5 on downloads
    #[arg(long)]
    content_md5: bool,
    /// Wrap links from getPackageUri in literal double quotes, as the published example does
    #[arg(long)]
    quoted_links: bool,
    /// At most N entities in one page of a list; the rest follow @odata.nextLink [default: 10000]
    #[arg(long, value_name = "N")]
    page_size: Option<usize>,
    /// Register N devices (names, tags, groups, health, OS; a few duplicate names) at start
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed_machines: usize,
    /// Create N already-succeeded actions and list their ids in the ready line
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed_actions: usize,
    /// Serve both ports over HTTPS with a generated certificate; its CA goes to ca_file
    #[arg(long)]
    tls: bool,
    /// Where --tls writes its CA certificate (PEM) [default: a temporary file]
    #[arg(long, value_name = "PATH", requires = "tls")]
    ca_out: Option<PathBuf>,
    /// Azure Blob storage account for live response results, e.g. Azurite's
    /// http://127.0.0.1:10000/devstoreaccount1 (the emulator's well-known key signs)
    #[arg(long, value_name = "URL")]
    blob_endpoint: Option<String>,
    /// Size of the file a live response GetFile brings back [default: 64KiB]
    #[arg(long, value_name = "SIZE", value_parser = parse_byte_size)]
    live_response_file_size: Option<u64>,
    /// Store GetFile results gzip-compressed (Content-Encoding: gzip)
    #[arg(long)]
    gzip_results: bool,
    /// Live response result links (SAS) expire after N real seconds [default: 1800]
    #[arg(long, value_name = "N")]
    result_link_ttl_secs: Option<u64>,
    /// Chaos mode: a fault for some requests, drawn from a generator seeded with SEED
    #[arg(long, value_name = "SEED")]
    chaos: Option<u64>,
    /// The share of requests that get a fault in chaos mode, 0 to 1 [default: 0.2]
    #[arg(long, value_name = "R", requires = "chaos")]
    chaos_rate: Option<f64>,
    /// At most K faults for the requests about one action in chaos mode [default: 3]
    #[arg(long, value_name = "K", requires = "chaos")]
    chaos_max_per_action: Option<u32>,
    /// The faults chaos mode draws from, comma-separated (status, rate_limit, drop, delay, cut_after,
    /// short_body, corrupt_byte, stall, slow_body, expired_link, no_ranges, no_length) [default: all]
    #[arg(long, value_name = "KINDS", requires = "chaos", value_delimiter = ',', value_parser = parse_name::<ChaosKind>)]
    chaos_kinds: Option<Vec<ChaosKind>>,
    /// The endpoints chaos mode applies to, comma-separated [default: download,get_package_uri,machine_action]
    #[arg(long, value_name = "ENDPOINTS", requires = "chaos", value_delimiter = ',', value_parser = parse_name::<RouteKind>)]
    chaos_endpoints: Option<Vec<RouteKind>>,
}

/// A name, as it is in JSON (one of a comma-separated list).
fn parse_name<T: serde::de::DeserializeOwned>(name: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(name.trim().to_owned()))
        .map_err(|_| format!("'{}' is not one of the names listed in --help", name.trim()))
}

#[derive(Clone, Copy, ValueEnum)]
enum Switch {
    On,
    Off,
}

fn parse_schedule(text: &str) -> Result<Schedule, String> {
    let (pending, in_progress) =
        text.split_once(',').ok_or_else(|| format!("'{text}' is not P,I (two numbers of seconds, such as 5,30)"))?;
    let seconds = |part: &str| {
        part.trim().parse::<u64>().map_err(|_| format!("'{part}' in '{text}' is not a whole number of seconds"))
    };
    Ok(Schedule { pending_secs: seconds(pending)?, in_progress_secs: seconds(in_progress)? })
}

impl Cli {
    fn options(self) -> Result<Options, String> {
        // The command line is a patch over the defaults: one place validates settings.
        let patch = ConfigPatch {
            clock_scale: self.clock_scale,
            token_lifetime_secs: self.token_lifetime_secs,
            link_ttl_secs: self.link_ttl_secs,
            package_size: self.package_size,
            collect_schedule: self.collect_schedule,
            rate_limit: self.rate_limit.map(|switch| matches!(switch, Switch::On)),
            content_md5: self.content_md5.then_some(true),
            quoted_links: self.quoted_links.then_some(true),
            page_size: self.page_size,
            live_response_file_size: self.live_response_file_size,
            gzip_results: self.gzip_results.then_some(true),
            result_link_ttl_secs: self.result_link_ttl_secs,
            chaos: self.chaos.map(|seed| {
                let defaults = ChaosConfig::seeded(seed);
                Some(ChaosConfig {
                    rate: self.chaos_rate.unwrap_or(defaults.rate),
                    max_per_action: self.chaos_max_per_action.unwrap_or(defaults.max_per_action),
                    kinds: self.chaos_kinds.clone().unwrap_or(defaults.kinds.clone()),
                    endpoints: self.chaos_endpoints.clone().unwrap_or(defaults.endpoints.clone()),
                    ..defaults
                })
            }),
            ..ConfigPatch::default()
        };
        Ok(Options {
            listen: self.listen,
            download_listen: self.download_listen,
            config: Config::default().patched(patch).map_err(|error| error.to_string())?,
            seed_actions: self.seed_actions,
            seed_machines: self.seed_machines,
            tls: self.tls,
            ca_out: self.ca_out,
            blob_endpoint: self.blob_endpoint,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let started = cli.options().and_then(|options| Simulator::start(options).map_err(|error| error.to_string()));
    let simulator = match started {
        Ok(simulator) => simulator,
        Err(error) => {
            eprintln!("defender-simulator: {error}");
            return ExitCode::FAILURE;
        }
    };
    let ready = serde_json::to_string(&simulator.ready_info()).expect("the ready line serializes");
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{ready}").and_then(|()| stdout.flush()).is_err() {
        eprintln!("defender-simulator: cannot write the ready line to standard output");
        return ExitCode::FAILURE;
    }
    drop(stdout);

    if let Err(error) = wait_for_shutdown_signal() {
        eprintln!("defender-simulator: cannot wait for a shutdown signal: {error}");
        return ExitCode::FAILURE;
    }
    tracing::info!("shutting down");
    drop(simulator);
    ExitCode::SUCCESS
}

/// Blocks until Ctrl+C, or SIGTERM on Unix.
fn wait_for_shutdown_signal() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    runtime.block_on(async {
        #[cfg(unix)]
        {
            let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                interrupted = tokio::signal::ctrl_c() => interrupted,
                _ = terminate.recv() => Ok(()),
            }
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c().await
    })
}
