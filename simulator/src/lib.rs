//! A local stand-in for the parts of Microsoft Defender for Endpoint and Microsoft Entra ID that
//! the `defender` library talks to: sign-in (secret, client assertion, managed identity), the
//! machine action API, and the download host that serves investigation packages. Every test and
//! benchmark of the project runs against it over loopback HTTP; see `README.md` for the
//! endpoints, the control API and the fault rules.
//!
//! Rust tests start it in-process:
//!
//! ```no_run
//! use defender_simulator::{ActionSpec, Options, Simulator};
//!
//! let simulator = Simulator::start(Options::default())?;
//! let action = simulator.create_action(ActionSpec::default())?;
//! println!("{} serves action {}", simulator.base_url(), action["id"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod api;
mod assertion;
mod auth;
mod blob_store;
mod clock;
mod config;
mod control;
mod download;
mod exchange;
mod faults;
mod live_response;
mod odata;
mod chaos;
mod package;
mod rate_limit;
mod request_log;
mod responses;
mod routes;
mod server;
mod simulation;
mod state;
mod tls;

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

pub use blob_store::{DEVSTORE_ACCOUNT, DEVSTORE_KEY};
pub use chaos::{ChaosConfig, ChaosKind};
pub use config::{
    Config, ConfigPatch, DEFAULT_SCOPE, MAX_PAGE_SIZE, RateLimit, RateLimits, RateLimitsPatch, Schedule,
    parse_byte_size,
};
pub use faults::{Fault, FaultRule};
pub use package::{MIN_PACKAGE_SIZE, PackageLayout};
pub use request_log::{AssertionClaims, Credential, Port, RequestFilter, RequestRecord};
pub use routes::RouteKind;
pub use state::{ActionSpec, AppRegistration, IdentityRegistration, MachineRegistration, Outcome, seeded_machines};

use simulation::Simulation;
use tls::CaFile;

/// The tenant of the simulator's own app and of its managed identities.
pub const DEFAULT_TENANT_ID: &str = "00000000-0000-4000-8000-000000000001";
/// The simulator's own app, registered at start with [`DEFAULT_CLIENT_SECRET`].
pub const DEFAULT_CLIENT_ID: &str = "00000000-0000-4000-8000-0000000000c1";
/// The secret of the simulator's own app: a published constant, not a secret.
pub const DEFAULT_CLIENT_SECRET: &str = "simulator-secret";
/// The `X-IDENTITY-HEADER` value (`IDENTITY_HEADER`) of the App Service identity endpoint.
pub const DEFAULT_IDENTITY_HEADER: &str = "simulator-identity-header";
/// The client id of the system-assigned managed identity, which always exists.
pub const SYSTEM_IDENTITY_CLIENT_ID: &str = "00000000-0000-4000-8000-0000000000a1";
/// The machine of actions created without a `machine_id` (the control API, `--seed-actions`).
pub const DEFAULT_MACHINE_ID: &str = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07";

/// How to start a simulator; the command line sets the same things.
#[derive(Clone, Debug)]
pub struct Options {
    /// API port: API, sign-in, managed identity and control. Must be a loopback address.
    pub listen: SocketAddr,
    /// Download host; default: the IP of `listen`, any free port. Must be a loopback address.
    pub download_listen: Option<SocketAddr>,
    pub config: Config,
    /// Already-succeeded actions to create at start.
    pub seed_actions: usize,
    /// Devices to register at start (see [`seeded_machines`]).
    pub seed_machines: usize,
    /// Serve both ports over HTTPS with a generated certificate.
    pub tls: bool,
    /// Where `tls` writes its CA certificate; default: a temporary file removed on drop.
    pub ca_out: Option<PathBuf>,
    /// The Azure Blob storage account where live response results are kept, such as Azurite's
    /// `http://127.0.0.1:10000/devstoreaccount1` (signed with the emulator's well-known key).
    /// Without it, asking for a result's link answers 500.
    pub blob_endpoint: Option<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            download_listen: None,
            config: Config::default(),
            seed_actions: 0,
            seed_machines: 0,
            tls: false,
            ca_out: None,
            blob_endpoint: None,
        }
    }
}

/// The ready line the binary prints: where a client finds the simulator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyInfo {
    pub base_url: String,
    pub download_url: String,
    pub tenant_id: String,
    pub client_id: String,
    pub ca_file: Option<String>,
    pub identity_endpoint: String,
    pub identity_header: String,
    pub seeded_action_ids: Vec<String>,
    /// Where live response results are kept (`--blob-endpoint`), if anywhere.
    #[serde(default)]
    pub blob_endpoint: Option<String>,
}

/// A control call that was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlError {
    /// The request is malformed or asks for something the simulator cannot do (HTTP 400).
    Invalid(String),
    /// It clashes with what exists, such as an action id in use (HTTP 409).
    Conflict(String),
}

impl ControlError {
    pub(crate) fn invalid(message: impl Into<String>) -> ControlError {
        ControlError::Invalid(message.into())
    }
}

impl fmt::Display for ControlError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Invalid(message) | ControlError::Conflict(message) => formatter.write_str(message),
        }
    }
}

impl std::error::Error for ControlError {}

/// A running simulator. It serves from its own threads (callers may block in synchronous calls
/// while it answers them) and stops when dropped.
pub struct Simulator {
    simulation: Arc<Simulation>,
    /// `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
    ca_file: Option<CaFile>,
    seeded_action_ids: Vec<String>,
}

impl Simulator {
    /// Binds both ports and starts serving.
    pub fn start(options: Options) -> io::Result<Simulator> {
        let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
        let download_listen = options.download_listen.unwrap_or_else(|| SocketAddr::new(options.listen.ip(), 0));
        for address in [options.listen, download_listen] {
            if !address.ip().is_loopback() {
                return Err(invalid(format!(
                    "refusing to listen on {address}: the simulator listens on loopback addresses only (127.0.0.0/8 or ::1)"
                )));
            }
        }
        options.config.validate().map_err(|error| invalid(error.to_string()))?;

        let api_listener = std::net::TcpListener::bind(options.listen)?;
        let download_listener = std::net::TcpListener::bind(download_listen)?;
        let tls = if options.tls {
            let ips = [options.listen.ip(), download_listen.ip()];
            Some(tls::generate(&ips, options.ca_out.as_deref())?)
        } else {
            None
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let blob_store =
            options.blob_endpoint.as_deref().map(blob_store::BlobStore::new).transpose().map_err(invalid)?;
        let simulation = Arc::new(Simulation::new(
            format!("{scheme}://{}", api_listener.local_addr()?),
            format!("{scheme}://{}", download_listener.local_addr()?),
            options.config,
            blob_store,
        ));
        for machine in seeded_machines(options.seed_machines) {
            simulation.configure_machine(machine).map_err(|error| invalid(error.to_string()))?;
        }
        let seeded_action_ids = (0..options.seed_actions)
            .map(|_| {
                let id = uuid::Uuid::new_v4().to_string();
                let spec = ActionSpec { id: Some(id.clone()), ..ActionSpec::default() };
                simulation.create_action(spec).map(|_| id).map_err(|error| invalid(error.to_string()))
            })
            .collect::<io::Result<_>>()?;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            // Plenty for loopback, and tests start many simulators at once.
            .worker_threads(std::thread::available_parallelism().map_or(2, |cores| cores.get().clamp(2, 4)))
            .thread_name("defender-simulator")
            .enable_all()
            .build()?;
        let acceptor = tls.as_ref().map(|tls| tls.acceptor.clone());
        for (listener, port) in [(api_listener, Port::Api), (download_listener, Port::Download)] {
            listener.set_nonblocking(true)?;
            let listener = {
                let _runtime = runtime.enter();
                tokio::net::TcpListener::from_std(listener)?
            };
            runtime.spawn(server::serve(listener, port, acceptor.clone(), simulation.clone()));
        }
        tracing::info!(base_url = simulation.base_url, download_url = simulation.download_url, "simulator started");
        Ok(Simulator { simulation, runtime: Some(runtime), ca_file: tls.map(|tls| tls.ca_file), seeded_action_ids })
    }

    /// `http://127.0.0.1:PORT` (or `https://`): API, sign-in authority, managed identity, control.
    pub fn base_url(&self) -> &str {
        &self.simulation.base_url
    }

    /// The download host's root.
    pub fn download_url(&self) -> &str {
        &self.simulation.download_url
    }

    /// The CA certificate to trust, with `tls`.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_ref().map(CaFile::path)
    }

    /// `IDENTITY_ENDPOINT` for the App Service / Automation managed identity.
    pub fn identity_endpoint(&self) -> String {
        format!("{}/msi/token", self.base_url())
    }

    pub fn seeded_action_ids(&self) -> &[String] {
        &self.seeded_action_ids
    }

    /// What the binary prints on its ready line.
    pub fn ready_info(&self) -> ReadyInfo {
        ReadyInfo {
            base_url: self.base_url().to_owned(),
            download_url: self.download_url().to_owned(),
            tenant_id: DEFAULT_TENANT_ID.to_owned(),
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            ca_file: self.ca_file().map(|path| path.to_string_lossy().into_owned()),
            identity_endpoint: self.identity_endpoint(),
            identity_header: DEFAULT_IDENTITY_HEADER.to_owned(),
            seeded_action_ids: self.seeded_action_ids.clone(),
            blob_endpoint: self.simulation.blob_store.as_ref().map(|store| store.endpoint().to_owned()),
        }
    }

    /// `POST /_sim/reset`: forgets actions, links, tokens, rate windows, fault rules, the request
    /// log and config changes. Registered apps, identities and machines stay.
    pub fn reset(&self) {
        self.simulation.reset();
    }

    /// `GET /_sim/config`.
    pub fn config(&self) -> Config {
        self.simulation.config()
    }

    /// `POST /_sim/config`: applies the patch and answers the whole new configuration.
    pub fn configure(&self, patch: ConfigPatch) -> Result<Config, ControlError> {
        self.simulation.configure(patch)
    }

    /// `POST /_sim/apps`.
    pub fn register_app(&self, app: AppRegistration) -> Result<(), ControlError> {
        self.simulation.register_app(app)
    }

    /// `POST /_sim/identities`.
    pub fn register_identity(&self, identity: IdentityRegistration) -> Result<(), ControlError> {
        self.simulation.register_identity(identity)
    }

    /// `POST /_sim/machines`.
    pub fn configure_machine(&self, machine: MachineRegistration) -> Result<(), ControlError> {
        self.simulation.configure_machine(machine)
    }

    /// `POST /_sim/actions`: answers the MachineAction as the API would.
    pub fn create_action(&self, spec: ActionSpec) -> Result<serde_json::Value, ControlError> {
        self.simulation.create_action(spec)
    }

    /// `GET /_sim/actions/{id}/package`: the action's package, exactly as the download host
    /// serves it (up to 256 MiB), for comparing a downloaded file with it.
    pub fn package(&self, action_id: &str) -> Result<Vec<u8>, ControlError> {
        self.simulation.package(action_id)
    }

    /// `POST /_sim/machines/{id}/online` with `{"online": false}` or `{"online": true}`: takes a
    /// device offline (live response sessions for it queue) or brings it back (they start now).
    pub fn set_machine_online(&self, machine_id: &str, online: bool) {
        self.simulation.set_machine_online(machine_id, online);
    }

    /// `GET /_sim/live_response/{action_id}/{index}`: command `index`'s result, exactly as the
    /// blob store holds it (gzip-compressed when `gzip_results` was on when the session started).
    pub fn live_response_result(&self, action_id: &str, index: usize) -> Result<Vec<u8>, ControlError> {
        self.simulation.live_response_result(action_id, index)
    }

    /// `POST /_sim/faults`: answers the rule's id.
    pub fn add_fault(&self, rule: FaultRule) -> Result<u64, ControlError> {
        self.simulation.add_fault(rule)
    }

    /// `DELETE /_sim/faults`.
    pub fn clear_faults(&self) {
        self.simulation.clear_faults();
    }

    /// `POST /_sim/tokens/revoke`: every token issued so far gets 401 from now on.
    pub fn revoke_tokens(&self) {
        self.simulation.revoke_tokens();
    }

    /// `GET /_sim/requests`, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.simulation.requests()
    }

    /// `DELETE /_sim/requests`.
    pub fn clear_requests(&self) {
        self.simulation.clear_requests();
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Not a blocking shutdown: a Simulator may be dropped inside a caller's async test,
            // where blocking on the runtime's threads would panic.
            runtime.shutdown_background();
        }
    }
}

/// Locks a mutex even after a panic elsewhere: no critical section leaves its data half
/// changed, and one failed request should not take every later one down.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
