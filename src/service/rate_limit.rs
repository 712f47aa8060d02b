//! Keeping within the API's rate limits, so that the service never has to throttle the library.
//!
//! The service allows each app, in each tenant, 2 getPackageUri calls a minute and 120 an hour,
//! 10 live response session starts (runliveresponse) a minute, 100 live response result links a
//! minute and 1500 an hour, as many library calls, and 100 other calls a minute and 1500 an hour,
//! each class counted on its own in sliding windows. One [`Limiter`] per
//! (API host, tenant, app) is shared by every client in the process. Each class of call has a
//! first-come, first-served queue whose head is sent as soon as both windows have room for it:
//! no fixed sleeps, no polling. The windows run `clock_scale` times faster, like the service's
//! clock in a fast simulator.
//!
//! The library cannot know when the service counted a request: at some point between sending
//! it and getting its answer. So a request holds its slot from the moment it is sent until one
//! window after its answer arrived. However long the network takes, the service never sees
//! more than the limit in any window. A request the service certainly did not count (a 429, or
//! one that never left because no connection could be made) gives its slot back at once.
//!
//! A wait in the queue ends early in two ways: the call is cancelled (the call's future is
//! dropped, which leaves the queue), or the call's deadline would pass first (`TIMEOUT` at once
//! rather than a wait in vain).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Operation;
use crate::config::Settings;
use crate::error::{DefenderStatus, Error, Result};
use crate::runtime::{DefenderLogLevel, Phase, Reporter};

/// How many calls of one class an app may make in any minute and in any hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Limits {
    per_minute: u32,
    per_hour: u32,
}

/// The documented limits of `GET /api/machineactions/{id}/getPackageUri`.
const GET_PACKAGE_URI_LIMITS: Limits = Limits { per_minute: 2, per_hour: 120 };
/// The documented limits of every other API call.
const OTHER_LIMITS: Limits = Limits { per_minute: 100, per_hour: 1500 };
/// The documented limit of `POST /api/machines/{id}/runliveresponse`: 10 a minute (the hour's
/// is the minute's, sixty times).
const RUN_LIVE_RESPONSE_LIMITS: Limits = Limits { per_minute: 10, per_hour: 600 };
/// The documented limits of a live response result's link, and of the library's calls.
const LIVE_RESPONSE_LINK_LIMITS: Limits = Limits { per_minute: 100, per_hour: 1500 };
const LIBRARY_LIMITS: Limits = Limits { per_minute: 100, per_hour: 1500 };

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(60 * 60);

/// Calls counted together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    GetPackageUri,
    Other,
    RunLiveResponse,
    LiveResponseLink,
    Library,
}

impl Class {
    fn of(endpoint: Operation) -> Self {
        match endpoint {
            Operation::GetPackageUri => Self::GetPackageUri,
            Operation::MachineAction
            | Operation::ListMachineActions
            | Operation::CollectInvestigationPackage
            | Operation::Machine
            | Operation::ListMachines
            | Operation::CancelMachineAction => Self::Other,
            Operation::RunLiveResponse => Self::RunLiveResponse,
            Operation::LiveResponseResultLink => Self::LiveResponseLink,
            Operation::ListLibraryFiles | Operation::UploadLibraryFile | Operation::DeleteLibraryFile => Self::Library,
        }
    }

    fn limits(self) -> Limits {
        match self {
            Self::GetPackageUri => GET_PACKAGE_URI_LIMITS,
            Self::Other => OTHER_LIMITS,
            Self::RunLiveResponse => RUN_LIVE_RESPONSE_LIMITS,
            Self::LiveResponseLink => LIVE_RESPONSE_LINK_LIMITS,
            Self::Library => LIBRARY_LIMITS,
        }
    }

    /// (window length, calls allowed in it), the windows in the client's clock.
    fn windows(self, settings: &Settings) -> [(Duration, u32); 2] {
        let limits = self.limits();
        [(settings.scaled(MINUTE), limits.per_minute), (settings.scaled(HOUR), limits.per_hour)]
    }
}

impl fmt::Display for Class {
    /// "the rate limit of getPackageUri (2 a minute, 120 an hour per app)"
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let calls = match self {
            Self::GetPackageUri => "getPackageUri",
            Self::Other => "API calls other than getPackageUri and live response",
            Self::RunLiveResponse => "runliveresponse",
            Self::LiveResponseLink => "GetLiveResponseResultDownloadLink",
            Self::Library => "the live response library's calls",
        };
        let Limits { per_minute, per_hour } = self.limits();
        write!(f, "the rate limit of {calls} ({per_minute} a minute, {per_hour} an hour per app)")
    }
}

/// When a new request may be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admission {
    At(Instant),
    /// Requests in flight fill a window: one of them must be answered first.
    WhenAnswered,
}

/// A request that holds a slot: sent at some point, answered at `answered` (or still in flight).
#[derive(Clone, Copy, Debug)]
struct Held {
    id: u64,
    answered: Option<Instant>,
}

/// The slots of one class of call, and a pause the service asked for.
#[derive(Debug, Default)]
struct Slots {
    held: VecDeque<Held>,
    next_id: u64,
    /// No request before this (a 429's `Retry-After`).
    paused_until: Option<Instant>,
}

impl Slots {
    /// Takes a slot when `windows` have room at `now`, else says when they will.
    fn try_take(&mut self, now: Instant, windows: &[(Duration, u32)]) -> Result<u64, Admission> {
        let longest = windows.iter().map(|&(length, _)| length).max().unwrap_or_default();
        self.held.retain(|slot| slot.answered.is_none_or(|at| at + longest > now));
        let mut earliest = self.paused_until.filter(|&until| until > now);
        for &(length, allowed) in windows {
            let in_window: Vec<Option<Instant>> = self
                .held
                .iter()
                .map(|slot| slot.answered.map(|at| at + length))
                .filter(|leaves| leaves.is_none_or(|leaves| leaves > now))
                .collect();
            let Some(must_leave) = (in_window.len() + 1).checked_sub(allowed as usize).filter(|&n| n > 0) else {
                continue;
            };
            let mut leaving: Vec<Instant> = in_window.into_iter().flatten().collect();
            if leaving.len() < must_leave {
                return Err(Admission::WhenAnswered);
            }
            leaving.sort_unstable();
            earliest = earliest.max(Some(leaving[must_leave - 1]));
        }
        if let Some(at) = earliest {
            return Err(Admission::At(at));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.held.push_back(Held { id, answered: None });
        Ok(id)
    }

    fn answered(&mut self, id: u64, at: Instant) {
        if let Some(slot) = self.held.iter_mut().find(|slot| slot.id == id) {
            slot.answered = Some(at);
        }
    }

    fn give_back(&mut self, id: u64) {
        self.held.retain(|slot| slot.id != id);
    }
}

/// One class of call of one app: its slots, and the queue of calls waiting for one.
struct Queue {
    class: Class,
    /// Fair (FIFO): whoever holds it is the head of the queue, the only caller taking slots.
    turnstile: tokio::sync::Mutex<()>,
    slots: Mutex<Slots>,
    /// Told when a slot is answered or given back, so the head can look again.
    changed: Notify,
    /// Calls in the queue, the head included (for the log).
    waiting: AtomicUsize,
}

impl Queue {
    fn new(class: Class) -> Self {
        Self {
            class,
            turnstile: tokio::sync::Mutex::new(()),
            slots: Mutex::new(Slots::default()),
            changed: Notify::new(),
            waiting: AtomicUsize::new(0),
        }
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The rate limits of one app in one tenant at one API host.
pub(crate) struct Limiter {
    get_package_uri: Queue,
    other: Queue,
    run_live_response: Queue,
    live_response_link: Queue,
    library: Queue,
}

/// A request's place in the window, from when it is sent. Dropping it counts the request as
/// answered now (the conservative choice when the call was cancelled mid-request).
pub(crate) struct Slot {
    limiter: Arc<Limiter>,
    class: Class,
    id: u64,
    finished: bool,
}

impl Slot {
    /// The request ended in a way the service may have counted: the slot stays taken for one
    /// window from now.
    pub(crate) fn answered(mut self) {
        self.finish(true);
    }

    /// The service certainly did not count the request (it answered 429, or no connection was
    /// made): the slot is free again.
    pub(crate) fn not_counted(mut self) {
        self.finish(false);
    }

    fn finish(&mut self, counted: bool) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let queue = self.limiter.queue(self.class);
        let mut slots = queue.slots();
        if counted {
            slots.answered(self.id, Instant::now())
        } else {
            slots.give_back(self.id)
        }
        drop(slots);
        queue.changed.notify_one();
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.finish(true);
    }
}

/// Decrements the queue's count of waiting calls however the wait ends.
struct InQueue<'a>(&'a AtomicUsize);

impl Drop for InQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a wait in the queue is for: the request's description, its deadline, where to log.
pub(crate) struct Waiter<'a> {
    pub what: &'a str,
    pub deadline: Option<Instant>,
    pub reporter: &'a Reporter,
}

impl Limiter {
    fn new() -> Self {
        Self {
            get_package_uri: Queue::new(Class::GetPackageUri),
            other: Queue::new(Class::Other),
            run_live_response: Queue::new(Class::RunLiveResponse),
            live_response_link: Queue::new(Class::LiveResponseLink),
            library: Queue::new(Class::Library),
        }
    }

    fn queue(&self, class: Class) -> &Queue {
        match class {
            Class::GetPackageUri => &self.get_package_uri,
            Class::Other => &self.other,
            Class::RunLiveResponse => &self.run_live_response,
            Class::LiveResponseLink => &self.live_response_link,
            Class::Library => &self.library,
        }
    }

    /// Waits in `endpoint`'s queue until the windows have room, and takes a slot: send the
    /// request at once, and finish the slot when its answer comes.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        endpoint: Operation,
        settings: &Settings,
        waiter: Waiter<'_>,
    ) -> Result<Slot> {
        let queue = self.queue(Class::of(endpoint));
        let windows = queue.class.windows(settings);
        let ahead = queue.waiting.fetch_add(1, Ordering::Relaxed);
        let _in_queue = InQueue(&queue.waiting);
        let queued = Instant::now();

        let _turn = match queue.turnstile.try_lock() {
            Ok(turn) => turn,
            Err(_) => {
                waiter.reporter.log(
                    DefenderLogLevel::Info,
                    format!("{}: queued behind {ahead} earlier call(s) for {}", waiter.what, queue.class),
                );
                // About one minute's share of the limit per call ahead: the windows' steady pace.
                let [(minute, per_minute), _] = windows;
                let pace = minute / per_minute.max(1);
                waiter.reporter.phase(Phase::QueuedForRateLimit {
                    position: ahead + 1,
                    wait: Some(pace * u32::try_from(ahead).unwrap_or(u32::MAX)),
                    queued: Duration::ZERO,
                });
                let turn = queue.turnstile.lock();
                match waiter.deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline, turn).await.map_err(|_| {
                        Error::new(
                            DefenderStatus::Timeout,
                            format!(
                                "{}: the call's time limit (wait_timeout_ms) ran out while it waited behind \
                                 earlier calls for {}",
                                waiter.what, queue.class
                            ),
                        )
                    })?,
                    None => turn.await,
                }
            }
        };

        let mut announced = false;
        loop {
            // Made before looking, so that an answer arriving in between still wakes us.
            let changed = queue.changed.notified();
            let now = Instant::now();
            let admission = match queue.slots().try_take(now, &windows) {
                Ok(id) => return Ok(Slot { limiter: Arc::clone(self), class: queue.class, id, finished: false }),
                Err(admission) => admission,
            };
            if let (Admission::At(at), Some(deadline)) = (admission, waiter.deadline) {
                if at > deadline {
                    return Err(Error::new(
                        DefenderStatus::Timeout,
                        format!(
                            "{}: {} allows the next call in {:.1} s, after the call's time limit \
                             (wait_timeout_ms) runs out",
                            waiter.what,
                            queue.class,
                            (at - now).as_secs_f64()
                        ),
                    ));
                }
            }
            if !announced {
                announced = true;
                let until = match admission {
                    Admission::At(at) => format!("waiting {:.1} s for a free slot", (at - now).as_secs_f64()),
                    Admission::WhenAnswered => "waiting for calls in flight to be answered".to_owned(),
                };
                waiter
                    .reporter
                    .log(DefenderLogLevel::Info, format!("{}: {} is reached; {until}", waiter.what, queue.class));
                waiter.reporter.phase(Phase::QueuedForRateLimit {
                    position: 1,
                    wait: match admission {
                        Admission::At(at) => Some(at - now),
                        Admission::WhenAnswered => None,
                    },
                    queued: now - queued,
                });
            }
            let free_at = match admission {
                Admission::At(at) => Some(at),
                Admission::WhenAnswered => None,
            };
            tokio::select! {
                () = changed => {}
                () = sleep_until(free_at) => {}
                () = sleep_until(waiter.deadline) => {
                    return Err(Error::new(
                        DefenderStatus::Timeout,
                        format!("{}: the call's time limit (wait_timeout_ms) ran out while it waited for {}",
                            waiter.what, queue.class),
                    ));
                }
            }
        }
    }

    /// Holds every call of `endpoint`'s class until `until`: the service answered 429 and said
    /// when to come back, so the others in the queue would only be refused too.
    pub(crate) fn pause(&self, endpoint: Operation, until: Instant) {
        let queue = self.queue(Class::of(endpoint));
        let mut slots = queue.slots();
        slots.paused_until = slots.paused_until.max(Some(until));
    }
}

/// Sleeps until `at`, or forever when there is no `at`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whose limits a request counts against: the API host (scheme, host and port), and the app
/// and tenant when they are known.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    api: String,
    /// (tenant id, client id); `None` when the token and the options do not tell, so every
    /// such client of the host shares one limiter: that may wait longer than needed, never
    /// provoke a 429.
    app: Option<(String, String)>,
}

static LIMITERS: LazyLock<Mutex<HashMap<Key, Arc<Limiter>>>> = LazyLock::new(Mutex::default);

/// The process-wide limiter for requests sent with `settings` and `token`.
///
/// The app is the one the token names (claims `tid` and `appid`, or `azp`, read without checking
/// the signature: the service checks it) when the token is a JWT, as Entra ID's are. Else, when
/// the client signs in itself with `tenant_id` and `client_id`, those. Else (an opaque token
/// given as `access_token`) the API host alone.
pub(crate) fn shared(settings: &Settings, token: &str) -> Arc<Limiter> {
    let app =
        app_of_token(token).or_else(|| match (&settings.access_token, &settings.tenant_id, &settings.client_id) {
            (None, Some(tenant), Some(client)) => Some((tenant.to_ascii_lowercase(), client.to_ascii_lowercase())),
            _ => None,
        });
    let key = Key { api: settings.api_root().origin().ascii_serialization(), app };
    let mut limiters = LIMITERS.lock().unwrap_or_else(|e| e.into_inner());
    Arc::clone(limiters.entry(key).or_insert_with(|| Arc::new(Limiter::new())))
}

/// The (tenant id, client id) a JWT access token was issued to, lower case.
fn app_of_token(token: &str) -> Option<(String, String)> {
    #[derive(Deserialize)]
    struct Claims {
        tid: Option<String>,
        appid: Option<String>,
        azp: Option<String>,
    }
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Claims = serde_json::from_slice(&json).ok()?;
    Some((claims.tid?.to_ascii_lowercase(), claims.appid.or(claims.azp)?.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOWS: [(Duration, u32); 2] = [(MINUTE, 2), (HOUR, 3)];

    fn seconds(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_slot_is_held_from_sending_until_one_window_after_its_answer() {
        let start = Instant::now();
        let mut slots = Slots::default();
        let first = slots.try_take(start, &WINDOWS).unwrap();
        let second = slots.try_take(start, &WINDOWS).unwrap();
        assert_eq!(slots.try_take(start, &WINDOWS), Err(Admission::WhenAnswered), "both in flight");
        slots.answered(first, start + seconds(5));
        assert_eq!(slots.try_take(start + seconds(5), &WINDOWS), Err(Admission::At(start + seconds(65))));
        slots.answered(second, start + seconds(7));
        assert_eq!(slots.try_take(start + seconds(64), &WINDOWS), Err(Admission::At(start + seconds(65))));
        assert!(slots.try_take(start + seconds(65), &WINDOWS).is_ok());
    }

    #[test]
    fn the_hour_window_counts_too_and_a_slot_given_back_is_free_at_once() {
        let start = Instant::now();
        let mut slots = Slots::default();
        for minute in 0..3 {
            let at = start + seconds(minute * 60);
            let id = slots.try_take(at, &WINDOWS).unwrap();
            slots.answered(id, at);
        }
        let later = start + seconds(600);
        assert_eq!(slots.try_take(later, &WINDOWS), Err(Admission::At(start + HOUR)), "3 an hour");
        let id = slots.try_take(start + HOUR, &WINDOWS).unwrap();
        slots.give_back(id);
        assert!(slots.try_take(start + HOUR, &WINDOWS).is_ok(), "a slot given back is free");
    }

    #[test]
    fn a_pause_holds_every_call_until_it_ends() {
        let start = Instant::now();
        let mut slots = Slots { paused_until: Some(start + seconds(30)), ..Slots::default() };
        assert_eq!(slots.try_take(start, &WINDOWS), Err(Admission::At(start + seconds(30))));
        assert!(slots.try_take(start + seconds(30), &WINDOWS).is_ok());
    }

    #[test]
    fn the_app_comes_from_a_jwt_and_never_from_anything_else() {
        let encode = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let v1 = format!("{}.{}.sig", encode("{}"), encode(r#"{"tid":"T-1","appid":"App-1"}"#));
        assert_eq!(app_of_token(&v1), Some(("t-1".into(), "app-1".into())));
        let v2 = format!("{}.{}.sig", encode("{}"), encode(r#"{"tid":"t","azp":"a"}"#));
        assert_eq!(app_of_token(&v2), Some(("t".into(), "a".into())));
        let no_app = format!("{}.{}.sig", encode("{}"), encode(r#"{"tid":"t"}"#));
        for opaque in ["opaque-token", "a.b", "a.!!!.c", no_app.as_str(), "a.b.c.d"] {
            assert_eq!(app_of_token(opaque), None, "{opaque}");
        }
    }

    #[test]
    fn clients_of_the_same_app_share_a_limiter_and_other_apps_do_not() {
        let settings = |tenant: &str, client: &str| Settings {
            base_url: Some(url::Url::parse("https://limits.example:8443/").unwrap()),
            tenant_id: Some(tenant.into()),
            client_id: Some(client.into()),
            ..Settings::default()
        };
        let one = shared(&settings("t", "a"), "opaque");
        assert!(Arc::ptr_eq(&one, &shared(&settings("T", "A"), "other-opaque")));
        assert!(!Arc::ptr_eq(&one, &shared(&settings("t", "b"), "opaque")));
        let mut elsewhere = settings("t", "a");
        elsewhere.base_url = Some(url::Url::parse("https://limits.example:9443/").unwrap());
        assert!(!Arc::ptr_eq(&one, &shared(&elsewhere, "opaque")));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn callers_are_served_first_come_first_served_as_soon_as_the_window_allows() {
        let settings = Settings::default();
        let limiter = Arc::new(Limiter::new());
        let (reporter, _events) = Reporter::for_test();
        let start = Instant::now();
        let mut callers = Vec::new();
        for n in 0..5u32 {
            let (limiter, reporter, settings) = (Arc::clone(&limiter), Arc::clone(&reporter), settings.clone());
            callers.push(tokio::spawn(async move {
                let waiter = Waiter { what: "test", deadline: None, reporter: &reporter };
                let slot = limiter.acquire(Operation::GetPackageUri, &settings, waiter).await.unwrap();
                let sent = Instant::now() - start;
                slot.answered();
                (n, sent)
            }));
            tokio::task::yield_now().await; // each caller is in the queue before the next
        }
        let mut served = Vec::new();
        for caller in callers {
            served.push(caller.await.unwrap());
        }
        let expected: Vec<(u32, Duration)> =
            vec![(0, seconds(0)), (1, seconds(0)), (2, MINUTE), (3, MINUTE), (4, 2 * MINUTE)];
        assert_eq!(served, expected);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_wait_that_would_pass_the_deadline_ends_at_once_with_timeout() {
        let settings = Settings::default();
        let limiter = Arc::new(Limiter::new());
        let (reporter, _events) = Reporter::for_test();
        for _ in 0..2 {
            let waiter = Waiter { what: "test", deadline: None, reporter: &reporter };
            limiter.acquire(Operation::GetPackageUri, &settings, waiter).await.unwrap().answered();
        }
        let start = Instant::now();
        let waiter = Waiter { what: "test", deadline: Some(start + seconds(30)), reporter: &reporter };
        let err = limiter.acquire(Operation::GetPackageUri, &settings, waiter).await.err().unwrap();
        assert_eq!(err.status(), DefenderStatus::Timeout);
        assert_eq!(Instant::now(), start, "no wait in vain");
        assert!(err.message().contains("getPackageUri (2 a minute"), "{err}");
        let waiter = Waiter { what: "test", deadline: None, reporter: &reporter };
        limiter.acquire(Operation::MachineAction, &settings, waiter).await.unwrap();
        assert_eq!(Instant::now(), start, "other calls have their own window");
    }
}
