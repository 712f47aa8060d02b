//! What the simulated tenant holds: registered apps, identities and machines, machine actions,
//! issued access tokens and download links.

use crate::package::PackageLayout;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::assertion::RegisteredCertificate;
use crate::clock::{SimClock, SimTime};
use crate::config::{Schedule, optional_byte_size};
use crate::{ControlError, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, SYSTEM_IDENTITY_CLIENT_ID};

/// `POST /_sim/apps`: an app registration that can sign in with a secret, a certificate or both.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRegistration {
    pub tenant_id: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// PEM; the first `CERTIFICATE` block is used, anything else (such as a key) is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
    /// Its API calls get 403 (it signs in normally).
    #[serde(default)]
    pub forbidden: bool,
}

/// `POST /_sim/identities`: a user-assigned managed identity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityRegistration {
    pub client_id: String,
}

/// `POST /_sim/machines`: a device as `GET /api/machines` shows it, and what collections started
/// through the API on it do.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineRegistration {
    pub id: String,
    /// Default: `desktop-<first 7 characters of the id>`. Several devices may share one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer_dns_name: Option<String>,
    /// `osPlatform`, default `Windows11`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_platform: Option<String>,
    /// `healthStatus`, default `Active`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status: Option<String>,
    /// `rbacGroupName`, default `UnassignedGroup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rbac_group_name: Option<String>,
    /// `rbacGroupId`, default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rbac_group_id: Option<u64>,
    /// `machineTags`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub machine_tags: Vec<String>,
    /// `lastSeen`, an RFC 3339 date-time; default: when the simulator started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// How its collections end (default `Succeeded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Default: the configured `collect_schedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Default: the configured `package_size`.
    #[serde(default, deserialize_with = "optional_byte_size", skip_serializing_if = "Option::is_none")]
    pub package_size: Option<u64>,
    /// The device is offline: live response sessions started on it stay Pending (queued, for up
    /// to three days) until it comes back (`POST /_sim/machines/{id}/online`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub offline: bool,
}

/// `POST /_sim/actions`: a machine action created directly. Every field is optional; the
/// default is a collection that has already succeeded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    /// Default: a new GUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Default: [`DEFAULT_MACHINE_ID`](crate::DEFAULT_MACHINE_ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Default: no time Pending or InProgress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Default: the configured `package_size`.
    #[serde(default, deserialize_with = "optional_byte_size", skip_serializing_if = "Option::is_none")]
    pub package_size: Option<u64>,
    /// Default: the standard investigation package; else junk around it, deflated entries, a
    /// central directory that disagrees, or a directory bomb (tests of a client's ZIP check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_layout: Option<PackageLayout>,
    /// Overrides the configured `quoted_links` for this action's links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted_link: Option<bool>,
    /// Overrides the configured `content_md5` for this action's downloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_md5: Option<bool>,
    /// The action is unknown (404) for this many simulated seconds after its creation, as
    /// right after a collection request to the real service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible_after_secs: Option<u64>,
    /// `type`, default `CollectInvestigationPackage` (`Isolate`, `RunAntiVirusScan`, ...).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub action_type: Option<String>,
    /// `requestor`, default the simulator's own app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requestor: Option<String>,
    /// `requestorComment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The action was created this many simulated seconds ago (its schedule runs from then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_secs: Option<u64>,
}

/// How a machine action ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    #[default]
    Succeeded,
    Failed,
    TimeOut,
    Cancelled,
}

/// A machine action's `status` at some moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ActionStatus {
    Pending,
    InProgress,
    Finished(Outcome),
}

impl ActionStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Pending => "Pending",
            ActionStatus::InProgress => "InProgress",
            ActionStatus::Finished(Outcome::Succeeded) => "Succeeded",
            ActionStatus::Finished(Outcome::Failed) => "Failed",
            ActionStatus::Finished(Outcome::TimeOut) => "TimeOut",
            ActionStatus::Finished(Outcome::Cancelled) => "Cancelled",
        }
    }
}

pub(crate) struct App {
    pub(crate) secret: Option<String>,
    pub(crate) certificate: Option<RegisteredCertificate>,
    pub(crate) forbidden: bool,
}

/// The app or managed identity an access token was issued to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Caller {
    pub(crate) tenant_id: String,
    pub(crate) client_id: String,
}

pub(crate) struct Action {
    pub(crate) id: String,
    pub(crate) action_type: String,
    /// Creation order, for "newest first".
    sequence: u64,
    pub(crate) machine_id: String,
    pub(crate) computer_dns_name: String,
    pub(crate) requestor: String,
    pub(crate) comment: String,
    /// When the action was added; it counts as `age` older than that.
    added_at: SimTime,
    age: Duration,
    /// Who cancelled it, why and when (`POST /api/machineactions/{id}/cancel`).
    pub(crate) cancellation: Option<Cancellation>,
    schedule: Schedule,
    outcome: Outcome,
    pub(crate) package_size: u64,
    pub(crate) package_layout: PackageLayout,
    pub(crate) quoted_link: Option<bool>,
    pub(crate) content_md5: Option<bool>,
    visible_at: SimTime,
    /// MD5 of the package, computed on the first download that needs it.
    pub(crate) package_md5: Arc<OnceLock<[u8; 16]>>,
    /// When its schedule started: when it was added, or, for a live response session queued for
    /// an offline device, when the device came back (`None` while it is queued).
    started_at: Option<SimTime>,
    /// The commands of a live response session.
    pub(crate) live_response: Option<Arc<crate::live_response::Session>>,
}

/// How long a session for an offline device stays queued before it ends TimeOut.
pub(crate) const QUEUED_SESSION_LIFETIME: Duration = Duration::from_secs(3 * 24 * 3600);

pub(crate) struct Cancellation {
    pub(crate) requestor: String,
    pub(crate) comment: String,
    pub(crate) at: SimTime,
}

/// A moment in an action's life, counted from when it was added; the action's `age` is added
/// when it is shown (`Action::wall_time`), so a backdated action's times lie in the past.
impl Action {
    /// `None` while the action is queued for an offline device.
    fn in_progress_at(&self) -> Option<SimTime> {
        Some(self.started_at? + Duration::from_secs(self.schedule.pending_secs))
    }

    fn finished_at(&self) -> Option<SimTime> {
        Some(self.in_progress_at()? + Duration::from_secs(self.schedule.in_progress_secs))
    }

    /// `now` on the action's own timeline, where it was created at `added_at`.
    fn local(&self, now: SimTime) -> SimTime {
        now + self.age
    }

    pub(crate) fn status(&self, now: SimTime) -> ActionStatus {
        if let Some(cancellation) = &self.cancellation {
            if now >= cancellation.at {
                return ActionStatus::Finished(Outcome::Cancelled);
            }
        }
        let now = self.local(now);
        let (Some(in_progress_at), Some(finished_at)) = (self.in_progress_at(), self.finished_at()) else {
            // Queued for an offline device.
            return if now - self.added_at >= QUEUED_SESSION_LIFETIME {
                ActionStatus::Finished(Outcome::TimeOut)
            } else {
                ActionStatus::Pending
            };
        };
        if now < in_progress_at {
            ActionStatus::Pending
        } else if now < finished_at {
            ActionStatus::InProgress
        } else {
            ActionStatus::Finished(self.outcome)
        }
    }

    /// When the status last changed, as a calendar time.
    pub(crate) fn last_update(&self, now: SimTime, clock: &SimClock) -> SystemTime {
        if let Some(cancellation) = self.cancellation.as_ref().filter(|c| now >= c.at) {
            return clock.wall_time(cancellation.at);
        }
        let changed = match self.status(now) {
            ActionStatus::Pending => self.added_at,
            ActionStatus::InProgress => self.in_progress_at().unwrap_or(self.added_at),
            ActionStatus::Finished(_) => self.finished_at().unwrap_or(self.added_at + QUEUED_SESSION_LIFETIME),
        };
        self.wall_time(changed, clock)
    }

    /// When it was created, as a calendar time.
    pub(crate) fn created(&self, clock: &SimClock) -> SystemTime {
        self.wall_time(self.added_at, clock)
    }

    fn wall_time(&self, local: SimTime, clock: &SimClock) -> SystemTime {
        clock.wall_time(local) - self.age
    }

    /// Cancels it at `now`: `Err` with its status when it has already ended.
    pub(crate) fn cancel(&mut self, requestor: &str, comment: &str, now: SimTime) -> Result<(), ActionStatus> {
        match self.status(now) {
            status @ ActionStatus::Finished(_) => Err(status),
            ActionStatus::Pending | ActionStatus::InProgress => {
                self.cancellation =
                    Some(Cancellation { requestor: requestor.to_owned(), comment: comment.to_owned(), at: now });
                Ok(())
            }
        }
    }

    /// The action's status changes at these simulated times (the real service's command start
    /// and end times): when it went InProgress, and when it ended, as far as known at `now`.
    pub(crate) fn command_times(&self, now: SimTime, clock: &SimClock) -> (Option<SystemTime>, Option<SystemTime>) {
        let status = self.status(now);
        let started = self.in_progress_at().filter(|_| status != ActionStatus::Pending);
        let ended = match status {
            ActionStatus::Finished(_) => Some(self.last_update(now, clock)),
            _ => None,
        };
        (started.map(|at| self.wall_time(at, clock)), ended)
    }

    pub(crate) fn is_running(&self, now: SimTime) -> bool {
        !matches!(self.status(now), ActionStatus::Finished(_))
    }
}

/// Everything needed to create an action.
pub(crate) struct NewAction {
    pub(crate) id: String,
    pub(crate) action_type: String,
    pub(crate) machine_id: String,
    pub(crate) computer_dns_name: String,
    pub(crate) requestor: String,
    pub(crate) comment: String,
    pub(crate) schedule: Schedule,
    pub(crate) outcome: Outcome,
    pub(crate) package_size: u64,
    pub(crate) package_layout: PackageLayout,
    pub(crate) quoted_link: Option<bool>,
    pub(crate) content_md5: Option<bool>,
    pub(crate) visible_after: Duration,
    pub(crate) age: Duration,
    /// Queued until its device comes back online.
    pub(crate) queued: bool,
    pub(crate) live_response: Option<Arc<crate::live_response::Session>>,
}

/// How collections on a machine behave, from its registration or the defaults.
pub(crate) struct MachineProfile {
    pub(crate) computer_dns_name: String,
    pub(crate) outcome: Outcome,
    pub(crate) schedule: Option<Schedule>,
    pub(crate) package_size: Option<u64>,
}

pub(crate) enum TokenProblem {
    Missing,
    Unknown,
    Expired,
    Revoked,
}

impl TokenProblem {
    pub(crate) fn message(&self) -> &'static str {
        match self {
            TokenProblem::Missing => {
                "Authorization has been denied for this request: no 'Authorization: Bearer' header."
            }
            TokenProblem::Unknown => {
                "Authorization has been denied for this request: the access token is not one the simulator issued."
            }
            TokenProblem::Expired => "Authorization has been denied for this request: the access token has expired.",
            TokenProblem::Revoked => "Authorization has been denied for this request: the access token was revoked.",
        }
    }
}

struct IssuedToken {
    caller: Caller,
    expires_at: Instant,
    revoked: bool,
}

struct Link {
    action_id: String,
    caller: Caller,
    expires_at: Instant,
}

/// What a download link leads to.
pub(crate) struct LinkTarget {
    pub(crate) action_id: String,
    /// Who asked for the link.
    pub(crate) caller: Caller,
    pub(crate) expired: bool,
    pub(crate) package_size: u64,
    pub(crate) package_layout: PackageLayout,
    pub(crate) content_md5: Option<bool>,
    pub(crate) package_md5: Arc<OnceLock<[u8; 16]>>,
}

pub(crate) struct State {
    apps: HashMap<Caller, App>,
    user_assigned_identities: HashSet<String>,
    /// By id: listed in that order.
    machines: BTreeMap<String, MachineRegistration>,
    actions: HashMap<String, Action>,
    next_action_sequence: u64,
    tokens: HashMap<String, IssuedToken>,
    links: HashMap<String, Link>,
    /// Devices that are offline (live response sessions queue for them).
    offline: HashSet<String>,
    /// The live response library, by file name.
    pub(crate) library: BTreeMap<String, crate::live_response::LibraryFile>,
}

impl State {
    /// A tenant that knows the simulator's own app.
    pub(crate) fn new() -> State {
        let mut state = State {
            apps: HashMap::new(),
            user_assigned_identities: HashSet::new(),
            machines: BTreeMap::new(),
            actions: HashMap::new(),
            next_action_sequence: 0,
            tokens: HashMap::new(),
            links: HashMap::new(),
            offline: HashSet::new(),
            library: BTreeMap::new(),
        };
        state.apps.insert(
            Caller { tenant_id: DEFAULT_TENANT_ID.to_owned(), client_id: DEFAULT_CLIENT_ID.to_owned() },
            App { secret: Some(DEFAULT_CLIENT_SECRET.to_owned()), certificate: None, forbidden: false },
        );
        state
    }

    /// Forgets what happened (actions, tokens, links) but not what was registered.
    pub(crate) fn forget_activity(&mut self) {
        self.actions.clear();
        self.tokens.clear();
        self.links.clear();
        self.library.clear();
    }

    pub(crate) fn tenant_exists(&self, tenant_id: &str) -> bool {
        self.apps.keys().any(|app| app.tenant_id == tenant_id)
    }

    pub(crate) fn app(&self, tenant_id: &str, client_id: &str) -> Option<&App> {
        self.apps.get(&Caller { tenant_id: tenant_id.to_owned(), client_id: client_id.to_owned() })
    }

    pub(crate) fn register_app(&mut self, caller: Caller, app: App) {
        self.apps.insert(caller, app);
    }

    pub(crate) fn identity_exists(&self, client_id: &str) -> bool {
        client_id == SYSTEM_IDENTITY_CLIENT_ID || self.user_assigned_identities.contains(client_id)
    }

    pub(crate) fn register_identity(&mut self, client_id: String) {
        self.user_assigned_identities.insert(client_id);
    }

    pub(crate) fn register_machine(&mut self, machine: MachineRegistration, now: SimTime) {
        self.set_online(&machine.id, !machine.offline, now);
        self.machines.insert(machine.id.clone(), machine);
    }

    /// Takes device `id` offline, or brings it back: the sessions queued for it start now.
    pub(crate) fn set_online(&mut self, id: &str, online: bool, now: SimTime) {
        if !online {
            self.offline.insert(id.to_owned());
            return;
        }
        if self.offline.remove(id) {
            for action in self.actions.values_mut().filter(|action| action.machine_id == id) {
                if action.started_at.is_none() && action.status(now) == ActionStatus::Pending {
                    action.started_at = Some(now);
                }
            }
        }
    }

    pub(crate) fn is_online(&self, id: &str) -> bool {
        !self.offline.contains(id)
    }

    /// Live response sessions that have not ended, in every tenant.
    pub(crate) fn running_sessions(&self, now: SimTime) -> usize {
        self.actions.values().filter(|action| action.live_response.is_some() && action.is_running(now)).count()
    }

    /// A registered machine, or a default one for any id that looks like a real machine id
    /// (40 hex digits).
    pub(crate) fn machine(&self, id: &str) -> Option<MachineProfile> {
        let registered = self.machine_record(id)?;
        Some(MachineProfile {
            computer_dns_name: registered.computer_dns_name.clone().unwrap_or_else(|| default_computer_name(id)),
            outcome: registered.outcome.unwrap_or_default(),
            schedule: registered.schedule,
            package_size: registered.package_size,
        })
    }

    /// What `machine` is built from: the registration, or a default one with only the id.
    pub(crate) fn machine_record(&self, id: &str) -> Option<MachineRegistration> {
        match self.machines.get(id) {
            Some(registered) => Some(registered.clone()),
            None if id.len() == 40 && id.bytes().all(|byte| byte.is_ascii_hexdigit()) => {
                Some(MachineRegistration { id: id.to_owned(), ..MachineRegistration::default() })
            }
            None => None,
        }
    }

    /// The registered machines, in id order (the default ones are not listed).
    pub(crate) fn registered_machines(&self) -> impl Iterator<Item = &MachineRegistration> {
        self.machines.values()
    }

    pub(crate) fn has_running_action(&self, machine_id: &str, now: SimTime) -> bool {
        self.actions.values().any(|action| action.machine_id == machine_id && action.is_running(now))
    }

    pub(crate) fn add_action(&mut self, new: NewAction, now: SimTime) -> Result<&Action, ControlError> {
        if self.actions.contains_key(&new.id) {
            return Err(ControlError::Conflict(format!("a machine action with id '{}' already exists", new.id)));
        }
        self.next_action_sequence += 1;
        let action = Action {
            action_type: new.action_type,
            added_at: now,
            age: new.age,
            cancellation: None,
            sequence: self.next_action_sequence,
            machine_id: new.machine_id,
            computer_dns_name: new.computer_dns_name,
            requestor: new.requestor,
            comment: new.comment,
            schedule: new.schedule,
            outcome: new.outcome,
            package_size: new.package_size,
            package_layout: new.package_layout,
            quoted_link: new.quoted_link,
            content_md5: new.content_md5,
            visible_at: now + new.visible_after,
            package_md5: Arc::default(),
            started_at: (!new.queued).then_some(now),
            live_response: new.live_response,
            id: new.id.clone(),
        };
        Ok(self.actions.entry(new.id).or_insert(action))
    }

    /// The action, once it is visible.
    pub(crate) fn action(&self, id: &str, now: SimTime) -> Option<&Action> {
        self.actions.get(id).filter(|action| action.visible_at <= now)
    }

    pub(crate) fn action_mut(&mut self, id: &str, now: SimTime) -> Option<&mut Action> {
        self.actions.get_mut(id).filter(|action| action.visible_at <= now)
    }

    pub(crate) fn actions_newest_first(&self, now: SimTime) -> Vec<&Action> {
        let mut actions: Vec<&Action> = self.actions.values().filter(|action| action.visible_at <= now).collect();
        // By creation time (backdated actions among the others), then by the order they were added.
        let created = |action: &Action| i128::from(action.added_at.as_millis()) - action.age.as_millis() as i128;
        actions.sort_by_key(|action| std::cmp::Reverse((created(action), action.sequence)));
        actions
    }

    pub(crate) fn issue_token(&mut self, caller: Caller, lifetime: Duration) -> String {
        let token = random_token();
        self.tokens
            .insert(token.clone(), IssuedToken { caller, expires_at: Instant::now() + lifetime, revoked: false });
        token
    }

    pub(crate) fn revoke_tokens(&mut self) {
        for token in self.tokens.values_mut() {
            token.revoked = true;
        }
    }

    /// Who an `Authorization` header value speaks for.
    pub(crate) fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, TokenProblem> {
        let token = authorization
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or(TokenProblem::Missing)?;
        let issued = self.tokens.get(token).ok_or(TokenProblem::Unknown)?;
        if issued.revoked {
            Err(TokenProblem::Revoked)
        } else if Instant::now() >= issued.expires_at {
            Err(TokenProblem::Expired)
        } else {
            Ok(issued.caller.clone())
        }
    }

    pub(crate) fn create_link(&mut self, action_id: &str, caller: &Caller, ttl: Duration) -> String {
        let token = random_token();
        self.links.insert(
            token.clone(),
            Link { action_id: action_id.to_owned(), caller: caller.clone(), expires_at: Instant::now() + ttl },
        );
        token
    }

    /// What a link token leads to; `None` for a token the simulator never issued (or forgot).
    pub(crate) fn link(&self, token: &str) -> Option<LinkTarget> {
        let link = self.links.get(token)?;
        let action = self.actions.get(&link.action_id)?;
        Some(LinkTarget {
            action_id: action.id.clone(),
            caller: link.caller.clone(),
            expired: Instant::now() >= link.expires_at,
            package_size: action.package_size,
            package_layout: action.package_layout.clone(),
            content_md5: action.content_md5,
            package_md5: action.package_md5.clone(),
        })
    }
}

/// The devices `--seed-machines N` registers: `ws-0000.contoso.test`, ... (every fourth a server,
/// `srv-0003.contoso.test`), Windows 11 / 10 workstations in group `Workstations` (id 1),
/// Windows Server 2022 in `Servers` (id 2), every fifth `Inactive`, the first three of every ten
/// tagged `Incident4711`, each seen a minute before the one before it. With two or more, the last
/// one is a re-imaged machine's old record: the name of the first, `Inactive`, seen long ago.
pub fn seeded_machines(count: usize) -> Vec<MachineRegistration> {
    let now = std::time::SystemTime::now();
    (0..count)
        .map(|index| {
            let server = index % 4 == 3;
            let name =
                if server { format!("srv-{index:04}.contoso.test") } else { format!("ws-{index:04}.contoso.test") };
            let (os, group, group_id) = match (server, index % 2) {
                (true, _) => ("WindowsServer2022", "Servers", 2),
                (false, 0) => ("Windows11", "Workstations", 1),
                (false, _) => ("Windows10", "Workstations", 1),
            };
            let duplicate = count >= 2 && index == count - 1;
            let seen = now - Duration::from_secs(if duplicate { 90 * 24 * 3600 } else { 60 * index as u64 });
            MachineRegistration {
                id: format!("5eed{index:036x}"),
                computer_dns_name: Some(if duplicate { "ws-0000.contoso.test".to_owned() } else { name }),
                os_platform: Some(os.to_owned()),
                health_status: Some(if index % 5 == 4 || duplicate { "Inactive" } else { "Active" }.to_owned()),
                rbac_group_name: Some(group.to_owned()),
                rbac_group_id: Some(group_id),
                machine_tags: if index % 10 < 3 && !duplicate { vec!["Incident4711".to_owned()] } else { Vec::new() },
                last_seen: Some(chrono::DateTime::<chrono::Utc>::from(seen).to_rfc3339()),
                ..MachineRegistration::default()
            }
        })
        .collect()
}

pub(crate) fn default_computer_name(machine_id: &str) -> String {
    let short: String = machine_id.chars().take(7).collect();
    format!("desktop-{}", short.to_lowercase())
}

/// An unguessable opaque token (access tokens, link tokens).
fn random_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}
