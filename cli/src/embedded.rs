//! The simulator the command line starts for a run without credentials, so that the job runs on
//! a fresh machine: cargo feature `simulator`, on by default. Built without it
//! (`cargo build -p defender-cli --no-default-features`), such a run stops and says what to pass
//! instead.

use defender_native::{Client, Failure};

/// A simulator started in this process for the run, stopped when dropped.
#[cfg(feature = "simulator")]
pub struct EmbeddedSimulator(defender_simulator::Simulator);

/// None: this build has no simulator.
#[cfg(not(feature = "simulator"))]
pub enum EmbeddedSimulator {}

/// The simulator's clock runs this much faster than real time, so that a simulated collection
/// (5 s Pending, 30 s InProgress) finishes in well under a second; the client is told the same.
#[cfg(feature = "simulator")]
const CLOCK_SCALE: u32 = 60;

#[cfg(feature = "simulator")]
impl EmbeddedSimulator {
    /// A simulator for this run; for a subcommand, with sample devices to find.
    pub fn start(with_devices: bool) -> Result<Self, Failure> {
        let mut options = defender_simulator::Options::default();
        options.config.clock_scale = f64::from(CLOCK_SCALE);
        if with_devices {
            options.seed_machines = 10;
        }
        defender_simulator::Simulator::start(options).map(Self).map_err(|err| Failure {
            status: defender_native::DefenderStatus::Io,
            message: format!("could not start the simulator: {err}"),
        })
    }

    pub fn base_url(&self) -> &str {
        self.0.base_url()
    }

    /// The device the main job collects from when no --machine-id is given.
    pub fn machine_id(&self) -> &'static str {
        defender_simulator::DEFAULT_MACHINE_ID
    }

    /// Points `client` at this simulator, signed in as its app, on its clock.
    pub fn connect(&self, client: &Client) -> Result<(), Failure> {
        for (key, value) in [
            ("base_url", self.base_url()),
            ("authority_url", self.base_url()),
            ("tenant_id", defender_simulator::DEFAULT_TENANT_ID),
            ("client_id", defender_simulator::DEFAULT_CLIENT_ID),
            ("client_secret", defender_simulator::DEFAULT_CLIENT_SECRET),
            ("clock_scale", &CLOCK_SCALE.to_string()),
        ] {
            client.set(key, Some(value))?;
        }
        Ok(())
    }
}

#[cfg(not(feature = "simulator"))]
impl EmbeddedSimulator {
    pub fn start(_with_devices: bool) -> Result<Self, Failure> {
        Err(crate::usage(
            "this defender-package was built without the simulator (cargo feature 'simulator'): set \
             AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH) for your \
             tenant, or pass --base-url and --authority-url of a simulator you started (defender-simulator) with \
             its app's credentials in those variables",
        ))
    }

    pub fn base_url(&self) -> &str {
        match *self {}
    }

    pub fn machine_id(&self) -> &'static str {
        match *self {}
    }

    pub fn connect(&self, _client: &Client) -> Result<(), Failure> {
        match *self {}
    }
}
