//! `defender-package`: the whole job from the command line, through the library's C ABI.
//!
//! With credentials in the environment (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and
//! `AZURE_CLIENT_SECRET` or `AZURE_CLIENT_CERTIFICATE_PATH`, as Azure Identity reads them) it
//! works against that tenant. Without them it starts the simulator in this process and works
//! against it, so that anyone can see the job run on a fresh machine.

#[allow(dead_code)] // shared with the integration tests, which use all of it
mod native;

use std::ffi::{CStr, c_char, c_void};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use defender::DefenderLogLevel;
use defender_simulator::{Options, Simulator};
use native::{Client, Failure};

/// Collects a Microsoft Defender for Endpoint investigation package and downloads it.
///
/// Against a real tenant when AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or
/// AZURE_CLIENT_CERTIFICATE_PATH) are set; otherwise against a simulator started for the run.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Download the package of this collection (machine action id); waits for it to finish.
    #[arg(long, conflicts_with = "machine_id")]
    action_id: Option<String>,
    /// Start a collection on this machine (device id), wait for it, and download its package.
    #[arg(long)]
    machine_id: Option<String>,
    /// Where to save: a file, or a folder that gets <action id>.zip.
    #[arg(long, short, default_value = ".")]
    output: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    overwrite: bool,
    /// The comment recorded with a new collection.
    #[arg(long, default_value = "Collected with defender-package")]
    comment: String,
    /// commercial, us, eu, uk, au, gcc, gcc-high or dod.
    #[arg(long, env = "DEFENDER_CLOUD", default_value = "commercial")]
    cloud: String,
    /// How long to wait for a collection to finish, in minutes.
    #[arg(long, default_value_t = 60)]
    wait_minutes: u64,
    /// Use the simulator even when credentials are in the environment.
    #[arg(long)]
    simulator: bool,
    /// Show what the library does: waits, retries, throttling.
    #[arg(long, short)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Failure> {
    let client = Client::new();
    let real_tenant = !args.simulator && std::env::var_os("AZURE_CLIENT_ID").is_some();
    // Kept alive until the download is done.
    let _simulator;
    let machine_id = if real_tenant {
        if args.action_id.is_none() && args.machine_id.is_none() {
            return Err(usage("against a real tenant, give --action-id or --machine-id"));
        }
        client.set("environment", Some("true"))?;
        client.set("cloud", Some(&args.cloud))?;
        eprintln!("signing in with the app in AZURE_TENANT_ID and AZURE_CLIENT_ID");
        client.sign_in()?;
        args.machine_id.clone()
    } else {
        let simulator = start_simulator()?;
        eprintln!(
            "no credentials in the environment: using a simulator at {} (set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET for a real tenant)",
            simulator.base_url()
        );
        for (key, value) in [
            ("base_url", simulator.base_url()),
            ("authority_url", simulator.base_url()),
            ("tenant_id", defender_simulator::DEFAULT_TENANT_ID),
            ("client_id", defender_simulator::DEFAULT_CLIENT_ID),
            ("client_secret", defender_simulator::DEFAULT_CLIENT_SECRET),
            ("clock_scale", &SIMULATOR_CLOCK_SCALE.to_string()),
        ] {
            client.set(key, Some(value))?;
        }
        _simulator = simulator;
        Some(args.machine_id.clone().unwrap_or_else(|| defender_simulator::DEFAULT_MACHINE_ID.to_owned()))
    };
    client.set("wait_timeout_ms", Some(&(args.wait_minutes * 60_000).to_string()))?;
    client.set("overwrite", Some(if args.overwrite { "true" } else { "false" }))?;
    if args.verbose {
        client.set_log_callback(Some(print_log_line));
    }

    let action_id = match (&args.action_id, &machine_id) {
        (Some(action_id), _) => action_id.clone(),
        (None, Some(machine_id)) => {
            let action = client.collect(machine_id, Some(&args.comment))?;
            let action_id = action["id"].as_str().unwrap_or_default().to_owned();
            eprintln!("collecting on machine {machine_id}: machine action {action_id}");
            action_id
        }
        (None, None) => unreachable!("checked above"),
    };
    eprintln!("waiting for machine action {action_id} to finish");
    let action = client.wait(&action_id)?;
    eprintln!("machine action {action_id} is {}", action["status"].as_str().unwrap_or("finished"));

    let show_progress = std::io::stderr().is_terminal();
    let mut progress = |done: u64, total: u64| {
        if show_progress && total > 0 {
            eprint!("\rdownloading: {:3}% of {} bytes", done * 100 / total, total);
            let _ = std::io::stderr().flush();
        }
        false
    };
    let result = client.download(&action_id, &args.output, Some(&mut progress))?;
    if show_progress {
        eprintln!();
    }
    println!("path:    {}", result["path"].as_str().unwrap_or_default());
    println!("size:    {} bytes", result["bytes"]);
    println!("sha256:  {}", result["sha256"].as_str().unwrap_or_default());
    Ok(())
}

/// The simulator's clock runs this much faster than real time, so that a simulated collection
/// (5 s Pending, 30 s InProgress) finishes in well under a second; the client is told the same.
const SIMULATOR_CLOCK_SCALE: u32 = 60;

fn start_simulator() -> Result<Simulator, Failure> {
    let mut options = Options::default();
    options.config.clock_scale = f64::from(SIMULATOR_CLOCK_SCALE);
    Simulator::start(options).map_err(|err| Failure {
        status: defender::DefenderStatus::Io,
        message: format!("could not start the simulator: {err}"),
    })
}

fn usage(message: &str) -> Failure {
    Failure { status: defender::DefenderStatus::InvalidArgument, message: message.to_owned() }
}

unsafe extern "C" fn print_log_line(_: *mut c_void, level: DefenderLogLevel, message: *const c_char) {
    if level <= DefenderLogLevel::Info {
        let message = unsafe { CStr::from_ptr(message) }.to_string_lossy();
        eprintln!("  {message}");
    }
}
