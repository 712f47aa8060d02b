//! One running simulation: settings, clock, tenant state, rate-limit windows, fault rules and
//! request log, and the control operations on them. [`Simulator`](crate::Simulator)'s methods
//! and the HTTP control API both call these.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use crate::api::{COLLECT_ACTION_TYPE, machine_action_entity};
use crate::assertion::RegisteredCertificate;
use crate::chaos::Chaos;
use crate::clock::SimClock;
use crate::config::{Config, ConfigPatch, validate_package_size};
use crate::faults::{FaultRule, FaultRules};
use crate::package::Package;
use crate::rate_limit::RateLimiter;
use crate::request_log::{RequestLog, RequestRecord};
use crate::state::{
    ActionSpec, App, AppRegistration, Caller, IdentityRegistration, MachineRegistration, NewAction, State,
};
use crate::{ControlError, DEFAULT_CLIENT_ID, DEFAULT_MACHINE_ID, lock};

pub(crate) struct Simulation {
    pub(crate) base_url: String,
    pub(crate) download_url: String,
    /// What `reset` returns to.
    initial_config: Config,
    config: Mutex<Config>,
    pub(crate) clock: SimClock,
    pub(crate) state: Mutex<State>,
    pub(crate) rate_limiter: Mutex<RateLimiter>,
    pub(crate) faults: Mutex<FaultRules>,
    /// Chaos mode's generator, when the configuration has `chaos`.
    pub(crate) chaos: Mutex<Option<Chaos>>,
    pub(crate) log: RequestLog,
    /// Where live response results are kept.
    pub(crate) blob_store: Option<crate::blob_store::BlobStore>,
}

impl Simulation {
    pub(crate) fn new(
        base_url: String,
        download_url: String,
        config: Config,
        blob_store: Option<crate::blob_store::BlobStore>,
    ) -> Simulation {
        Simulation {
            base_url,
            download_url,
            clock: SimClock::new(config.clock_scale),
            initial_config: config.clone(),
            chaos: Mutex::new(config.chaos.clone().map(Chaos::new)),
            config: Mutex::new(config),
            state: Mutex::new(State::new()),
            rate_limiter: Mutex::default(),
            faults: Mutex::default(),
            log: RequestLog::default(),
            blob_store,
        }
    }

    pub(crate) fn config(&self) -> Config {
        lock(&self.config).clone()
    }

    /// Forgets actions, links, tokens, rate windows, fault rules, the request log and config
    /// changes; registered apps, identities and machines stay.
    pub(crate) fn reset(&self) {
        *lock(&self.config) = self.initial_config.clone();
        self.clock.set_scale(self.initial_config.clock_scale);
        lock(&self.state).forget_activity();
        lock(&self.rate_limiter).clear();
        lock(&self.faults).clear();
        *lock(&self.chaos) = self.initial_config.chaos.clone().map(Chaos::new);
        self.log.clear();
    }

    pub(crate) fn configure(&self, patch: ConfigPatch) -> Result<Config, ControlError> {
        let mut config = lock(&self.config);
        let chaos_set = patch.chaos.is_some();
        let patched = config.patched(patch)?;
        if chaos_set {
            *lock(&self.chaos) = patched.chaos.clone().map(Chaos::new);
        }
        if patched.clock_scale != config.clock_scale {
            self.clock.set_scale(patched.clock_scale);
        }
        *config = patched.clone();
        Ok(patched)
    }

    pub(crate) fn register_app(&self, app: AppRegistration) -> Result<(), ControlError> {
        if app.tenant_id.is_empty() || app.client_id.is_empty() {
            return Err(ControlError::invalid("an app needs a tenant_id and a client_id"));
        }
        let certificate = app
            .certificate_pem
            .as_deref()
            .map(RegisteredCertificate::from_pem)
            .transpose()
            .map_err(ControlError::Invalid)?;
        lock(&self.state).register_app(
            Caller { tenant_id: app.tenant_id, client_id: app.client_id },
            App { secret: app.client_secret, certificate, forbidden: app.forbidden },
        );
        Ok(())
    }

    pub(crate) fn register_identity(&self, identity: IdentityRegistration) -> Result<(), ControlError> {
        if identity.client_id.is_empty() {
            return Err(ControlError::invalid("an identity needs a client_id"));
        }
        lock(&self.state).register_identity(identity.client_id);
        Ok(())
    }

    pub(crate) fn configure_machine(&self, machine: MachineRegistration) -> Result<(), ControlError> {
        if machine.id.is_empty() {
            return Err(ControlError::invalid("a machine needs an id"));
        }
        if let Some(size) = machine.package_size {
            validate_package_size(size)?;
        }
        if let Some(last_seen) = &machine.last_seen {
            chrono::DateTime::parse_from_rfc3339(last_seen).map_err(|error| {
                ControlError::invalid(format!("last_seen '{last_seen}' is not an RFC 3339 date-time: {error}"))
            })?;
        }
        let now = self.clock.now();
        lock(&self.state).register_machine(machine, now);
        Ok(())
    }

    /// Creates an action directly and answers its MachineAction.
    pub(crate) fn create_action(&self, spec: ActionSpec) -> Result<Value, ControlError> {
        let config = self.config();
        let package_size = spec.package_size.unwrap_or(config.package_size);
        validate_package_size(package_size)?;
        let id = spec.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if id.is_empty() {
            return Err(ControlError::invalid("an action id cannot be empty"));
        }
        let machine_id = spec.machine_id.unwrap_or_else(|| DEFAULT_MACHINE_ID.to_owned());
        let mut state = lock(&self.state);
        let computer_dns_name = state
            .machine(&machine_id)
            .map(|machine| machine.computer_dns_name)
            .unwrap_or_else(|| format!("{machine_id}.simulated"));
        let new = NewAction {
            id,
            action_type: spec.action_type.unwrap_or_else(|| COLLECT_ACTION_TYPE.to_owned()),
            machine_id,
            computer_dns_name,
            requestor: spec.requestor.unwrap_or_else(|| DEFAULT_CLIENT_ID.to_owned()),
            comment: spec.comment.unwrap_or_else(|| "Created through the simulator's control API".to_owned()),
            age: Duration::from_secs(spec.age_secs.unwrap_or(0)),
            schedule: spec.schedule.unwrap_or_default(),
            outcome: spec.outcome.unwrap_or_default(),
            package_size,
            package_layout: spec.package_layout.unwrap_or_default(),
            quoted_link: spec.quoted_link,
            content_md5: spec.content_md5,
            visible_after: Duration::from_secs(spec.visible_after_secs.unwrap_or(0)),
            queued: false,
            live_response: None,
        };
        let now = self.clock.now();
        let action = state.add_action(new, now)?;
        Ok(machine_action_entity(action, now, &self.clock))
    }

    /// The action's package bytes, as the download host serves them.
    pub(crate) fn package(&self, action_id: &str) -> Result<Vec<u8>, ControlError> {
        /// Held whole in memory: this is for tests comparing files, not for large packages.
        const MAX_SIZE: u64 = 256 << 20;
        let (size, layout) = lock(&self.state)
            .action(action_id, self.clock.now())
            .map(|action| (action.package_size, action.package_layout.clone()))
            .ok_or_else(|| ControlError::invalid(format!("there is no action {action_id}")))?;
        let package = Package::with_layout(action_id, size, &layout);
        let size = package.size();
        if size > MAX_SIZE {
            return Err(ControlError::invalid(format!(
                "the package of {action_id} is {size} bytes; this call serves packages up to {MAX_SIZE} bytes"
            )));
        }
        Ok(package.chunks(0..size).flat_map(|chunk| chunk.to_vec()).collect())
    }

    pub(crate) fn add_fault(&self, rule: FaultRule) -> Result<u64, ControlError> {
        lock(&self.faults).add(rule)
    }

    pub(crate) fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    pub(crate) fn revoke_tokens(&self) {
        lock(&self.state).revoke_tokens();
    }

    pub(crate) fn requests(&self) -> Vec<RequestRecord> {
        self.log.records()
    }

    pub(crate) fn clear_requests(&self) {
        self.log.clear();
    }
}
