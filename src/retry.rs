//! The one retry engine: when something that failed is tried again, after how long, when to
//! give up with which error, and how a retry is announced.
//!
//! A loop plugs in a [`Policy`] (which failures are worth another try, the pause before it, when
//! the budget is spent) and hands each failure to [`Retry`], which announces every retry in one
//! wording (a warning and the `Retrying` phase) and says when to stop. The policies:
//!
//! - [`RetryPolicy`], for requests to the API and to sign-in endpoints:
//!   - A 429 is always worth another try: the service refused the request without acting on it.
//!     Its `Retry-After` (seconds or an HTTP date) is honoured, up to `MAX_THROTTLED_RETRIES`.
//!   - Network errors and 408/500/502/503/504 are retried with capped exponential back-off and
//!     jitter (or after the `Retry-After` the answer carries), up to `MAX_TRANSIENT_RETRIES` and
//!     within the `timeout_ms` budget, but only for requests that are safe to repeat. A request
//!     that starts something (the collection POST) is repeated only when it certainly never
//!     reached the service: the connection could not be made.
//!   - Every other answer is final: 4xx other than 401 (answered by renewing the token,
//!     elsewhere), 408 and 429 is never retried.
//! - The transfer's budget (`download::transfer`), which counts progress: tries that brought
//!   bytes go on at once.
//! - [`Polling`], for waiting until something is done (a machine action, its link): not a
//!   failure, so it is announced by its caller, not as a retry.
//!
//! Waits are in the service's time (a server-announced delay, the back-off), so they are divided
//! by `clock_scale` like the rate-limit windows. [`Retry::decide`] does not sleep: the API's loop
//! hands a throttled pause to its rate-limit queue instead (`Limiter::pause`), which holds every
//! call of its class, this one included, until the pause is over.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use tokio::time::Instant;

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::runtime::{DefenderLogLevel, Phase, Reporter};

/// Retries after network errors and 5xx answers, at most.
const MAX_TRANSIENT_RETRIES: u32 = 5;
/// Retries after 429 answers, at most.
const MAX_THROTTLED_RETRIES: u32 = 5;
/// The longest `Retry-After` waited for: the longest rate-limit window. A service asking for
/// more is not going to serve this call soon.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);

/// Capped exponential back-off with jitter.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Backoff {
    pub first: Duration,
    pub cap: Duration,
}

/// After a network error or a 5xx answer: 1 s, 2 s, 4 s, ... up to 30 s.
const TRANSIENT_BACKOFF: Backoff = Backoff { first: Duration::from_secs(1), cap: Duration::from_secs(30) };
/// After a 429 that does not say how long to wait: 10 s, 20 s, 40 s, then a minute (the
/// shortest rate-limit window).
const THROTTLED_BACKOFF: Backoff = Backoff { first: Duration::from_secs(10), cap: Duration::from_secs(60) };

impl Backoff {
    /// The pause before retry `retry` (0 for the first): `first` doubled `retry` times, at most
    /// `cap`, then a random point in its upper half, so that callers that failed together do
    /// not all come back together, and none comes back at once.
    pub(crate) fn delay(&self, retry: u32) -> Duration {
        let full = self.first.saturating_mul(1 << retry.min(20)).min(self.cap);
        full.mul_f64(0.5 + fastrand::f64() / 2.0)
    }
}

/// Whether repeating a request could do something twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Repeat {
    /// Reading, or asking for a token: repeating it is harmless.
    Safe,
    /// Starting something (a collection): repeated only when it certainly never reached the
    /// service, or the service refused it with 429.
    OnlyIfNotSent,
}

/// A failed attempt, as the policy sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Failure {
    /// No answer. `sent` is false when the request certainly took no effect: no connection could
    /// be made, so it never left (or, for a collection, none was found started after all).
    Transport { sent: bool },
    /// An answer with this status, and the delay its `Retry-After` asked for (service time).
    Status { status: StatusCode, retry_after: Option<Duration> },
}

/// What to do after a failed attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Send it again after this long (real time: `clock_scale` applied).
    RetryIn(Duration),
    /// The failure is final: repeating would not help, or would not be safe.
    Final,
    /// Worth repeating, but the budget is spent; the text says how, for the error message.
    Exhausted(String),
}

/// The hook each retry loop plugs into the engine: which failures are worth another try, how
/// long to pause before it, and when the budget is spent.
pub(crate) trait Policy {
    /// A failed try, as the policy sees it.
    type Failure;
    /// Decides about the try that just failed; a `RetryIn` counts as a retry taken.
    fn verdict(&mut self, failure: Self::Failure) -> Verdict;
    /// Retries taken so far.
    fn retries(&self) -> u32;
}

/// Why a retry loop stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The failure is final.
    Final,
    /// The budget is spent; the text says how.
    Exhausted(String),
}

impl Stop {
    /// The error that ends the loop, made from the last try's: as it is when the failure is
    /// final, with why no more tries are made when the budget is spent.
    pub(crate) fn error(self, last: Error) -> Error {
        match self {
            Self::Final => last,
            Self::Exhausted(why) => Error::new(last.status(), format!("{}; {why}", last.message())),
        }
    }
}

/// The retry engine of one loop: its policy, what the loop does and where it reports.
pub(crate) struct Retry<'a, P> {
    pub policy: P,
    what: &'a str,
    reporter: &'a Reporter,
}

impl<'a, P: Policy> Retry<'a, P> {
    /// The engine for a loop doing `what` ("looking up machine action X"), reporting to `reporter`.
    pub(crate) fn new(policy: P, what: &'a str, reporter: &'a Reporter) -> Self {
        Self { policy, what, reporter }
    }

    /// Decides about a failed try; `problem` says what went wrong. A retry is announced and its
    /// pause returned, for the caller to wait out; else why the loop stops.
    pub(crate) fn decide(&mut self, failure: P::Failure, problem: &str) -> std::result::Result<Duration, Stop> {
        match self.policy.verdict(failure) {
            Verdict::RetryIn(pause) => {
                self.announce(problem, pause);
                Ok(pause)
            }
            Verdict::Final => Err(Stop::Final),
            Verdict::Exhausted(why) => Err(Stop::Exhausted(why)),
        }
    }

    /// After a try that failed with `err`: waits out the pause and returns `Ok` to try again, or
    /// the error that ends the loop. A `failure` of `None` is final whatever the policy says.
    pub(crate) async fn after(&mut self, failure: Option<P::Failure>, err: Error) -> Result<()> {
        let Some(failure) = failure else { return Err(err) };
        match self.decide(failure, err.message()) {
            Ok(pause) => {
                tokio::time::sleep(pause).await;
                Ok(())
            }
            Err(stop) => Err(stop.error(err)),
        }
    }

    /// The one wording of a retry: a warning, "{what}: {problem}; retrying in 1.5 s (retry 2)",
    /// and the `Retrying` phase.
    fn announce(&self, problem: &str, pause: Duration) {
        let retry = self.policy.retries();
        let when = if pause.is_zero() {
            "at once".to_owned()
        } else if pause < Duration::from_secs(1) {
            format!("in {} ms", pause.as_millis())
        } else {
            format!("in {:.1} s", pause.as_secs_f64())
        };
        let what = self.what;
        self.reporter.log(DefenderLogLevel::Warn, format!("{what}: {problem}; retrying {when} (retry {retry})"));
        self.reporter.phase(Phase::Retrying { attempt: retry, wait: pause, reason: format!("{what}: {problem}") });
    }
}

/// Whether a status means the service had a passing problem, so that a read may be repeated.
pub(crate) fn is_transient(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 500 | 502 | 503 | 504)
}

/// The retries of one request: its budgets and how much of them is spent.
#[derive(Debug)]
pub(crate) struct RetryPolicy {
    repeat: Repeat,
    clock_scale: f64,
    /// Transient failures are retried while the time spent on the attempts and the pauses
    /// between them stays within it (`timeout_ms`; `None`: only the number of retries counts).
    budget: Option<Duration>,
    /// Time since `started` that does not count against `budget`: waits for a turn.
    set_aside: Duration,
    /// No pause reaches past it (the call's wait limit).
    deadline: Option<Instant>,
    started: Instant,
    transient_retries: u32,
    throttled_retries: u32,
}

impl RetryPolicy {
    /// A policy for one request sent with `settings`, starting now.
    pub(crate) fn new(settings: &Settings, repeat: Repeat) -> Self {
        Self {
            repeat,
            clock_scale: settings.clock_scale,
            budget: settings.timeout,
            deadline: None,
            started: Instant::now(),
            set_aside: Duration::ZERO,
            transient_retries: 0,
            throttled_retries: 0,
        }
    }

    /// No pause of this policy reaches past `deadline`.
    pub(crate) fn until(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Time spent waiting for a turn to send (sign-in, the rate limit): it does not count against
    /// the time budget, which is for the attempts and the pauses between them.
    pub(crate) fn set_aside(&mut self, waited: Duration) {
        self.set_aside += waited;
    }

    /// Attempts made so far, counting the one that just failed.
    pub(crate) fn attempts(&self) -> u32 {
        1 + self.transient_retries + self.throttled_retries
    }

    fn throttled(&mut self, retry_after: Option<Duration>) -> Verdict {
        if self.throttled_retries >= MAX_THROTTLED_RETRIES {
            return Verdict::Exhausted(format!("still throttled after {} attempts", self.attempts()));
        }
        if let Some(asked) = retry_after.filter(|asked| *asked > MAX_RETRY_AFTER) {
            return Verdict::Exhausted(format!("the service asks to wait {} s before the next call", asked.as_secs()));
        }
        let wait = retry_after.unwrap_or_else(|| THROTTLED_BACKOFF.delay(self.throttled_retries));
        let delay = self.scaled(wait);
        if self.past_deadline(delay) {
            return Verdict::Exhausted(format!(
                "the service asks to wait {} s, longer than the call may still wait (wait_timeout_ms)",
                wait.as_secs_f64().ceil()
            ));
        }
        self.throttled_retries += 1;
        Verdict::RetryIn(delay)
    }

    fn transient(&mut self, retry_after: Option<Duration>) -> Verdict {
        if self.transient_retries >= MAX_TRANSIENT_RETRIES {
            return Verdict::Exhausted(format!("gave up after {} attempts", self.attempts()));
        }
        if let Some(asked) = retry_after.filter(|asked| *asked > MAX_RETRY_AFTER) {
            return Verdict::Exhausted(format!("the service asks to wait {} s before the next call", asked.as_secs()));
        }
        let delay = self.scaled(retry_after.unwrap_or_else(|| TRANSIENT_BACKOFF.delay(self.transient_retries)));
        let spent = self.started.elapsed().saturating_sub(self.set_aside);
        let limit = if self.budget.is_some_and(|budget| spent.saturating_add(delay) > budget) {
            Some("timeout_ms")
        } else if self.past_deadline(delay) {
            Some("wait_timeout_ms")
        } else {
            None
        };
        if let Some(limit) = limit {
            return Verdict::Exhausted(format!(
                "gave up after {} attempts in {:.1} s: another would pass the time allowed ({limit})",
                self.attempts(),
                spent.as_secs_f64()
            ));
        }
        self.transient_retries += 1;
        Verdict::RetryIn(delay)
    }

    fn scaled(&self, service_time: Duration) -> Duration {
        crate::config::scale(service_time, self.clock_scale)
    }

    fn past_deadline(&self, delay: Duration) -> bool {
        self.deadline.is_some_and(|deadline| Instant::now().checked_add(delay).is_none_or(|at| at > deadline))
    }
}

/// One attempt of a request: its value, or its error with what the policy needs to know about
/// it (`None`: the failure is final whatever the policy says).
pub(crate) type Attempt<T> = std::result::Result<T, (Option<Failure>, Error)>;

impl Policy for RetryPolicy {
    type Failure = Failure;

    fn verdict(&mut self, failure: Failure) -> Verdict {
        let safe = self.repeat == Repeat::Safe;
        match failure {
            Failure::Status { status: StatusCode::TOO_MANY_REQUESTS, retry_after } => self.throttled(retry_after),
            Failure::Status { status, retry_after } if safe && is_transient(status) => self.transient(retry_after),
            Failure::Status { .. } => Verdict::Final,
            Failure::Transport { sent } if safe || !sent => self.transient(None),
            Failure::Transport { .. } => Verdict::Final,
        }
    }

    fn retries(&self) -> u32 {
        self.transient_retries + self.throttled_retries
    }
}

/// Waiting until something is done (a machine action, its link): polls start `first` apart and
/// grow by `growth` up to `cap` (the service's time, divided by `clock_scale`); the last poll is
/// made at the deadline, not a poll interval before it. A poll that finds it not done yet is its
/// failure; the budget is spent at the deadline.
pub(crate) struct Polling {
    interval: Duration,
    growth: f64,
    cap: Duration,
    clock_scale: f64,
    deadline: Instant,
    polls: u32,
}

impl Polling {
    pub(crate) fn new(settings: &Settings, first: Duration, growth: f64, cap: Duration, deadline: Instant) -> Self {
        Self { interval: first, growth, cap, clock_scale: settings.clock_scale, deadline, polls: 0 }
    }
}

impl Policy for Polling {
    /// Not done yet.
    type Failure = ();

    fn verdict(&mut self, (): ()) -> Verdict {
        let now = Instant::now();
        if now >= self.deadline {
            return Verdict::Exhausted("the time allowed ran out".to_owned());
        }
        let pause = crate::config::scale(self.interval, self.clock_scale).min(self.deadline - now);
        self.interval = self.interval.mul_f64(self.growth).min(self.cap);
        self.polls += 1;
        Verdict::RetryIn(pause)
    }

    fn retries(&self) -> u32 {
        self.polls
    }
}

/// How the policy sees a request that got no answer: whether it could have reached the server;
/// `None` when sending it again cannot help (a refused certificate or redirect).
pub(crate) fn transport_failure(err: &reqwest::Error) -> Option<Failure> {
    match crate::http::final_transport_error(err) {
        Some(_) => None,
        None => Some(Failure::Transport { sent: !err.is_connect() }),
    }
}

/// The delay a `Retry-After` header asks for, in the service's time: whole seconds, or an HTTP
/// date (zero when it has passed). `None` when there is none or it cannot be read.
/// A delay beyond `MAX_RETRY_AFTER` is never waited for; larger values (up to `u64::MAX`
/// seconds) are kept only up to a day, so that nothing computed from them can overflow.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    parse_retry_after(headers.get(RETRY_AFTER)?.to_str().ok()?)
}

/// `retry_after` for the header's text.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    const LONGEST_KEPT: Duration = Duration::from_secs(24 * 60 * 60);
    let value = value.trim();
    let asked = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(SystemTime::now()).unwrap_or_default()
        }
    };
    Some(asked.min(LONGEST_KEPT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn policy(repeat: Repeat) -> RetryPolicy {
        RetryPolicy::new(&Settings { timeout: None, ..Settings::default() }, repeat)
    }

    fn status(code: u16) -> Failure {
        Failure::Status { status: StatusCode::from_u16(code).unwrap(), retry_after: None }
    }

    fn headers(retry_after: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(retry_after).unwrap());
        headers
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        assert_eq!(retry_after(&headers("42")), Some(Duration::from_secs(42)));
        assert_eq!(retry_after(&headers(" 7 ")), Some(Duration::from_secs(7)));
        let in_a_minute = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(61));
        let waited = retry_after(&headers(&in_a_minute)).unwrap();
        assert!(waited > Duration::from_secs(58) && waited <= Duration::from_secs(61), "{waited:?}");
        let passed = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(10));
        assert_eq!(retry_after(&headers(&passed)), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers("soon")), None);
        assert_eq!(retry_after(&headers("-5")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn extreme_retry_after_values_are_refused_without_overflow() {
        let huge = retry_after(&headers("18446744073709551615")).unwrap();
        assert!(huge > MAX_RETRY_AFTER, "{huge:?}");
        assert_eq!(retry_after(&headers("18446744073709551616")), None, "past u64 is not a number of seconds");
        for code in [429, 503] {
            for clock_scale in [1.0, 1e-9, 1e9] {
                let settings = Settings { clock_scale, timeout: None, ..Settings::default() };
                let mut policy = RetryPolicy::new(&settings, Repeat::Safe).until(Some(Instant::now()));
                let failure = Failure::Status { status: StatusCode::from_u16(code).unwrap(), retry_after: Some(huge) };
                assert!(matches!(policy.verdict(failure), Verdict::Exhausted(_)), "{code} at {clock_scale}");
            }
        }
        // A delay that is not refused, scaled by an extreme clock, saturates instead of panicking.
        assert_eq!(crate::config::scale(Duration::MAX, 1e-9), Duration::MAX);
        let settings = Settings { clock_scale: 1e-9, timeout: Some(Duration::MAX), ..Settings::default() };
        let mut policy = RetryPolicy::new(&settings, Repeat::Safe).until(Some(Instant::now()));
        assert!(matches!(policy.verdict(status(503)), Verdict::Exhausted(_)));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter_in_the_upper_half() {
        for retry in 0..10 {
            let full = Duration::from_secs(1 << retry).min(Duration::from_secs(30));
            let delay = TRANSIENT_BACKOFF.delay(retry);
            assert!(delay >= full / 2 && delay <= full, "retry {retry}: {delay:?}");
        }
        assert!(TRANSIENT_BACKOFF.delay(u32::MAX) <= Duration::from_secs(30));
    }

    #[test]
    fn reads_are_retried_after_network_errors_and_5xx_until_the_count_runs_out() {
        for failure in
            [Failure::Transport { sent: true }, status(500), status(502), status(503), status(504), status(408)]
        {
            let mut policy = policy(Repeat::Safe);
            for _ in 0..MAX_TRANSIENT_RETRIES {
                assert!(matches!(policy.verdict(failure), Verdict::RetryIn(_)), "{failure:?}");
            }
            let Verdict::Exhausted(why) = policy.verdict(failure) else { panic!("{failure:?} not exhausted") };
            assert!(why.contains(&format!("{} attempts", MAX_TRANSIENT_RETRIES + 1)), "{why}");
        }
    }

    #[test]
    fn other_4xx_are_final_and_429_always_retried() {
        for code in [400, 401, 403, 404, 405, 409, 410, 501] {
            assert_eq!(policy(Repeat::Safe).verdict(status(code)), Verdict::Final, "{code}");
        }
        assert!(matches!(policy(Repeat::OnlyIfNotSent).verdict(status(429)), Verdict::RetryIn(_)));
    }

    #[test]
    fn a_request_that_starts_something_is_repeated_only_when_it_never_left() {
        let mut policy = policy(Repeat::OnlyIfNotSent);
        assert_eq!(policy.verdict(status(503)), Verdict::Final);
        assert_eq!(policy.verdict(status(500)), Verdict::Final);
        assert_eq!(policy.verdict(Failure::Transport { sent: true }), Verdict::Final);
        assert!(matches!(policy.verdict(Failure::Transport { sent: false }), Verdict::RetryIn(_)));
    }

    #[test]
    fn retry_after_is_honoured_and_scaled_by_the_clock() {
        let settings = Settings { clock_scale: 60.0, ..Settings::default() };
        let mut policy = RetryPolicy::new(&settings, Repeat::Safe);
        let throttled =
            Failure::Status { status: StatusCode::TOO_MANY_REQUESTS, retry_after: Some(Duration::from_secs(30)) };
        assert_eq!(policy.verdict(throttled), Verdict::RetryIn(Duration::from_millis(500)));
        let unavailable =
            Failure::Status { status: StatusCode::SERVICE_UNAVAILABLE, retry_after: Some(Duration::from_secs(6)) };
        assert_eq!(policy.verdict(unavailable), Verdict::RetryIn(Duration::from_millis(100)));
        assert_eq!(policy.attempts(), 3);
    }

    #[test]
    fn throttling_has_its_own_budget() {
        let mut policy = policy(Repeat::Safe);
        let throttled = Failure::Status { status: StatusCode::TOO_MANY_REQUESTS, retry_after: Some(Duration::ZERO) };
        for _ in 0..MAX_THROTTLED_RETRIES {
            assert_eq!(policy.verdict(throttled), Verdict::RetryIn(Duration::ZERO));
        }
        let Verdict::Exhausted(why) = policy.verdict(throttled) else { panic!("not exhausted") };
        assert!(why.contains("still throttled after 6 attempts"), "{why}");
        let forever = Failure::Status {
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after: Some(MAX_RETRY_AFTER + Duration::from_secs(1)),
        };
        assert!(matches!(RetryPolicy::new(&Settings::default(), Repeat::Safe).verdict(forever), Verdict::Exhausted(_)));
    }

    #[test]
    fn waits_for_a_turn_do_not_count_against_the_time_budget() {
        let budget = Settings { timeout: Some(Duration::from_secs(10)), ..Settings::default() };
        let mut policy = RetryPolicy::new(&budget, Repeat::Safe);
        policy.started -= Duration::from_secs(60); // a minute in the rate-limit queue
        assert!(matches!(policy.verdict(status(503)), Verdict::Exhausted(_)));
        policy.set_aside(Duration::from_secs(60));
        assert!(matches!(policy.verdict(status(503)), Verdict::RetryIn(_)));
    }

    #[test]
    fn no_pause_reaches_past_the_time_budget_or_the_deadline() {
        let tight = Settings { timeout: Some(Duration::from_millis(100)), ..Settings::default() };
        let mut policy = RetryPolicy::new(&tight, Repeat::Safe);
        assert!(matches!(policy.verdict(status(503)), Verdict::Exhausted(_)), "a 1 s back-off exceeds 100 ms");

        let mut policy =
            RetryPolicy::new(&Settings::default(), Repeat::Safe).until(Some(Instant::now() + Duration::from_secs(5)));
        let throttled =
            Failure::Status { status: StatusCode::TOO_MANY_REQUESTS, retry_after: Some(Duration::from_secs(30)) };
        let Verdict::Exhausted(why) = policy.verdict(throttled) else { panic!("waited past the deadline") };
        assert!(why.contains("30 s"), "{why}");
    }

    #[test]
    fn a_retry_is_announced_in_one_wording_and_the_end_says_why() {
        let (reporter, lines) = Reporter::for_test();
        let throttled =
            Failure::Status { status: StatusCode::TOO_MANY_REQUESTS, retry_after: Some(Duration::from_millis(300)) };
        let mut retry = Retry::new(policy(Repeat::Safe), "looking up machine action a", &reporter);
        assert_eq!(retry.decide(throttled, "HTTP 429"), Ok(Duration::from_millis(300)));
        let slow =
            Failure::Status { status: StatusCode::SERVICE_UNAVAILABLE, retry_after: Some(Duration::from_secs(2)) };
        assert_eq!(retry.decide(slow, "HTTP 503"), Ok(Duration::from_secs(2)));
        let now = Failure::Status { status: StatusCode::SERVICE_UNAVAILABLE, retry_after: Some(Duration::ZERO) };
        assert_eq!(retry.decide(now, "HTTP 503"), Ok(Duration::ZERO));
        let said: Vec<String> = lines.try_iter().collect();
        assert_eq!(
            said,
            [
                "looking up machine action a: HTTP 429; retrying in 300 ms (retry 1)",
                "looking up machine action a: HTTP 503; retrying in 2.0 s (retry 2)",
                "looking up machine action a: HTTP 503; retrying at once (retry 3)",
            ]
        );
        assert_eq!(retry.decide(status(404), "HTTP 404"), Err(Stop::Final));
        assert!(lines.try_iter().next().is_none(), "a final failure is not announced");

        let last = Error::new(crate::error::DefenderStatus::Http, "HTTP 503");
        assert_eq!(Stop::Final.error(last.clone()).message(), "HTTP 503");
        let spent = Stop::Exhausted("gave up after 6 attempts".into()).error(last);
        assert_eq!(
            (spent.status(), spent.message()),
            (crate::error::DefenderStatus::Http, "HTTP 503; gave up after 6 attempts")
        );
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn polls_back_off_to_their_cap_and_the_last_is_at_the_deadline() {
        let settings = Settings { clock_scale: 2.0, ..Settings::default() };
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut polls = Polling::new(&settings, Duration::from_secs(4), 1.5, Duration::from_secs(8), deadline);
        let mut pauses = Vec::new();
        while let Verdict::RetryIn(pause) = polls.verdict(()) {
            pauses.push(pause);
            tokio::time::sleep(pause).await;
        }
        let expected = [2.0, 3.0, 4.0, 4.0, 4.0, 3.0].map(Duration::from_secs_f64);
        assert_eq!(pauses, expected, "halved by the clock, capped at 8 s, the last cut to the deadline");
        assert_eq!(Instant::now(), deadline);
        assert_eq!(polls.retries(), 6);
    }
}
