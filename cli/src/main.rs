//! `defender-package`: the whole job from the command line, through the library's C ABI.
//!
//! Without a subcommand it runs the main job: collect (or take a collection), wait, download.
//! The subcommands do one step each for many devices or actions, for scripts and cron jobs:
//! `machines`, `actions`, `collect`, `wait`, `link`, `download`, `cancel`, and for Live Response
//! `getfile`, `runscript`, `library`; `--json` prints what
//! a script parses, and the exit code is the status of the first failure (see `--help`).
//!
//! With credentials in the environment (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and
//! `AZURE_CLIENT_SECRET` or `AZURE_CLIENT_CERTIFICATE_PATH`, as Azure Identity reads them) it
//! works against that tenant. Without them it starts the simulator in this process and works
//! against it, so that anyone can see the job run on a fresh machine (cargo feature `simulator`,
//! see `embedded.rs`).

mod commands;
mod embedded;
mod live_response;
mod output;
mod progress;

use std::ffi::{CStr, c_char, c_void};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args as ClapArgs, Parser};
use defender_native::{Client, DefenderLogLevel, DefenderStatus, Failure};
use embedded::EmbeddedSimulator;

/// Collects Microsoft Defender for Endpoint investigation packages and downloads them; finds
/// devices and machine actions, and cancels actions.
///
/// Without a subcommand: starts a collection on --machine-id (or takes the collection
/// --action-id), waits for it, and downloads its package to --output.
///
/// Against a real tenant when AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or
/// AZURE_CLIENT_CERTIFICATE_PATH) are set; otherwise against a simulator started for the run
/// (with ten sample devices, three of them tagged Incident4711).
#[derive(Parser)]
#[command(version, about, long_about, args_conflicts_with_subcommands = true, after_long_help = output::EXIT_CODES_HELP)]
#[cfg_attr(not(feature = "simulator"), command(long_about = WITHOUT_SIMULATOR_ABOUT))]
struct Args {
    #[command(subcommand)]
    command: Option<commands::Command>,
    /// Download the package of this collection (machine action id); waits for it to finish.
    #[arg(long, conflicts_with = "machine_id")]
    action_id: Option<String>,
    /// Start a collection on this machine (device id), wait for it, and download its package.
    #[arg(long)]
    machine_id: Option<String>,
    /// Where to save: a file, or a folder that gets <action id>.zip (see --file-name-pattern).
    #[arg(long, short, default_value = ".")]
    output: PathBuf,
    #[command(flatten)]
    file_name: commands::FileNameArgs,
    /// Replace an existing file.
    #[arg(long)]
    overwrite: bool,
    /// The comment recorded with a new collection.
    #[arg(long, default_value = "Collected with defender-package")]
    comment: String,
    #[command(flatten)]
    connection: Connection,
}

/// `--help` of a build without the simulator (cargo feature `simulator`).
#[cfg(not(feature = "simulator"))]
const WITHOUT_SIMULATOR_ABOUT: &str = "\
Collects Microsoft Defender for Endpoint investigation packages and downloads them; finds devices and machine actions, \
and cancels actions.

Without a subcommand: starts a collection on --machine-id (or takes the collection --action-id), waits for it, and \
downloads its package to --output.

Against the tenant in AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH), \
or against a simulator started on its own (--base-url, --authority-url). This build has no simulator of its own.";

/// Where and how to connect; every subcommand takes these too.
#[derive(ClapArgs)]
pub struct Connection {
    #[arg(long, env = "DEFENDER_CLOUD", default_value = "commercial", global = true, help = cloud_help())]
    cloud: String,
    /// API root instead of the cloud's (such as a simulator's base_url); signs in with the
    /// credentials in the environment.
    #[arg(long, env = "DEFENDER_BASE_URL", global = true, value_name = "URL")]
    base_url: Option<String>,
    /// Sign-in host instead of the cloud's (such as a simulator's base_url).
    #[arg(long, env = "DEFENDER_AUTHORITY_URL", global = true, value_name = "URL")]
    authority_url: Option<String>,
    /// Run rate-limit windows, back-off and polling N times faster, to match a simulator
    /// started with --clock-scale N.
    #[arg(long, env = "DEFENDER_CLOCK_SCALE", global = true, value_name = "N", hide_short_help = true)]
    clock_scale: Option<String>,
    /// How long to wait for a collection to finish, and for another run saving the same file, in
    /// minutes.
    #[arg(long, default_value_t = 60, global = true)]
    wait_minutes: u64,
    /// Use a simulator started for the run, even when credentials are in the environment.
    #[cfg_attr(not(feature = "simulator"), arg(hide = true))]
    #[arg(long, global = true)]
    simulator: bool,
    /// Show what the library does: waits, retries, throttling.
    #[arg(long, short, global = true)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        // --help and --version print and exit 0; a usage error is INVALID_ARGUMENT.
        Err(err) if !err.use_stderr() => err.exit(),
        Err(err) => {
            let _ = err.print();
            return output::exit_code(DefenderStatus::InvalidArgument);
        }
    };
    let json = args.command.as_ref().is_some_and(commands::Command::json);
    let result = Session::open(&args.connection, args.command.is_some()).and_then(|session| match &args.command {
        Some(command) => command.run(&session),
        None => main_job(&args, &session).map(|()| DefenderStatus::Ok),
    });
    match result {
        Ok(status) => output::exit_code(status),
        Err(failure) => output::fail(&failure, json),
    }
}

/// A client ready for calls, and the simulator it talks to when there is one (kept alive).
pub struct Session {
    pub client: Client,
    simulator: Option<EmbeddedSimulator>,
}

impl Session {
    fn open(connection: &Connection, subcommand: bool) -> Result<Session, Failure> {
        let client = Client::new();
        let credentials = std::env::var_os("AZURE_CLIENT_ID").is_some() || connection.base_url.is_some();
        let simulator = if credentials && !connection.simulator {
            client.set("environment", Some("true"))?;
            client.set("cloud", Some(&connection.cloud))?;
            client.set("base_url", connection.base_url.as_deref())?;
            client.set("authority_url", connection.authority_url.as_deref())?;
            None
        } else {
            let simulator = EmbeddedSimulator::start(subcommand)?;
            eprintln!(
                "no credentials in the environment: using a simulator at {} (set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET for a real tenant)",
                simulator.base_url()
            );
            simulator.connect(&client)?;
            Some(simulator)
        };
        if let Some(scale) = &connection.clock_scale {
            client.set("clock_scale", Some(scale))?;
        }
        client.set("wait_timeout_ms", Some(&(connection.wait_minutes * 60_000).to_string()))?;
        if connection.verbose {
            client.set_log_callback(Some(print_log_line));
        }
        Ok(Session { client, simulator })
    }
}

fn main_job(args: &Args, session: &Session) -> Result<(), Failure> {
    let client = &session.client;
    let machine_id = if let Some(simulator) = &session.simulator {
        Some(args.machine_id.clone().unwrap_or_else(|| simulator.machine_id().to_owned()))
    } else {
        if args.action_id.is_none() && args.machine_id.is_none() {
            return Err(usage("against a real tenant, give --action-id or --machine-id"));
        }
        eprintln!("signing in with the app in AZURE_TENANT_ID and AZURE_CLIENT_ID");
        client.sign_in()?;
        args.machine_id.clone()
    };
    client.set("overwrite", Some(if args.overwrite { "true" } else { "false" }))?;
    args.file_name.apply(client)?;

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
    println!("size:    {} bytes{}", result["bytes"], commands::resumed(&result));
    println!("sha256:  {}", result["sha256"].as_str().unwrap_or_default());
    if let Some(device) = result["computer_dns_name"].as_str() {
        println!("device:  {device} ({})", result["machine_id"].as_str().unwrap_or_default());
    }
    Ok(())
}

pub fn usage(message: &str) -> Failure {
    Failure { status: DefenderStatus::InvalidArgument, message: message.to_owned() }
}

/// `--cloud`'s help: the library's line about its option `cloud`, which names every cloud it has.
fn cloud_help() -> String {
    let doc = defender_native::options().into_iter().find(|(key, _)| *key == "cloud").map_or("", |(_, doc)| doc);
    format!("The Microsoft cloud (the library's option cloud): {doc}")
}

unsafe extern "C" fn print_log_line(_: *mut c_void, level: DefenderLogLevel, message: *const c_char) {
    if level <= DefenderLogLevel::Info {
        let message = unsafe { CStr::from_ptr(message) }.to_string_lossy();
        eprintln!("  {message}");
    }
}
