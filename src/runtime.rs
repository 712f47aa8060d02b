//! One process-wide tokio runtime, and blocking calls on it whose callbacks run on the caller's
//! thread.
//!
//! A call's work runs as a task on the runtime. The calling thread waits for it by pumping a
//! channel of events (progress, log lines, the result) and runs the caller's callbacks itself,
//! so callbacks only ever run on the thread that made the call, and only while it runs.
//! PowerShell and .NET depend on that: a script block invoked from a foreign thread crashes
//! the process.

use std::any::Any;
use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use once_cell::sync::OnceCell;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use crate::error::{DefenderStatus, Error, Result};
use crate::redact::Secret;

static RUNTIME: OnceCell<Runtime> = OnceCell::new();

/// The runtime, started on first use. Failing to start it (no threads left, for instance) is an
/// error the next call may retry, not a panic.
fn runtime() -> Result<&'static Runtime> {
    RUNTIME.get_or_try_init(|| {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("defender-worker")
            .enable_all()
            .build()
            .map_err(|err| Error::internal(format!("could not start the library's worker threads: {err}")))
    })
}

/// How important a log line is. The numbers are part of the ABI (`DefenderLogLevel`).
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DefenderLogLevel {
    /// The call is about to fail.
    Error = 1,
    /// Something went wrong and was handled: a retry, a throttled request, a renewed link.
    Warn = 2,
    /// A step of the job: waiting for the collection, downloading, done.
    Info = 3,
    /// Each request and its status.
    Debug = 4,
}

/// What one item of a call is doing, for the caller's phase callback (`DefenderPhaseEvent`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Phase {
    /// The collection is not finished: it had `status` when last looked at, the item has waited
    /// `waited` so far, and looks again in `next_look_in`.
    WaitingForCollection { status: String, waited: Duration, next_look_in: Duration },
    /// Queued for an API rate limit: `position` 1 is next; `wait` is about how long until this
    /// call may go (`None`: until calls in flight are answered); queued for `queued` so far.
    QueuedForRateLimit { position: usize, wait: Option<Duration>, queued: Duration },
    /// A batch item whose package is ready waits for one of `max_concurrent_downloads` slots.
    WaitingForDownloadSlot,
    /// Bytes arriving: made on the caller's thread from the item's progress figures.
    Downloading { bytes_done: u64, bytes_total: u64, bytes_per_second: u64, elapsed: Duration },
    /// The whole package is on disk and being checked (synced, its MD5 and ZIP directory).
    Verifying { bytes: u64 },
    /// Something failed and is tried again in `wait`: `attempt` counts the retries so far, and
    /// `reason` says what failed (scrubbed of secrets).
    Retrying { attempt: u32, wait: Duration, reason: String },
    /// A live response session could not start yet (the tenant runs 25, or the device runs
    /// one): `reason` says which, the item has waited `waited` so far and tries again in `next_try_in`.
    WaitingForSession { reason: String, waited: Duration, next_try_in: Duration },
}

tokio::task_local! {
    /// The batch item the work running in this task's current scope belongs to (see `as_item`).
    static ITEM: usize;
}

/// Runs `work` as item `index` of its call: what it reports (phases) is about that item.
/// Outside of it, reports are about item 0.
pub(crate) async fn as_item<F: Future>(index: usize, work: F) -> F::Output {
    ITEM.scope(index, work).await
}

fn current_item() -> usize {
    ITEM.try_with(|item| *item).unwrap_or(0)
}

/// Progress is reported at most this often (plus once at the end): enough for a smooth bar,
/// little enough that a slow callback (PowerShell's `Write-Progress`) does not slow the download.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

enum Event<T> {
    /// New progress figures for this item are in the reporter's progress slots.
    Progress(usize),
    Log(DefenderLogLevel, String),
    /// One item of a batch is finished.
    ItemDone(usize, DefenderStatus, String),
    Phase(usize, Phase),
    /// The sign-in needs a client assertion from the caller's assertion callback.
    SignAssertion(AssertionRequest),
    Done(Result<T>),
}

/// A request for a signed client assertion, answered on `reply`.
struct AssertionRequest {
    audience: String,
    client_id: String,
    reply: tokio::sync::oneshot::Sender<Result<String>>,
}

/// The worker side of a call: where its work reports progress, log lines and finished items,
/// and how it learns that it should stop.
pub(crate) struct Reporter {
    sender: Box<dyn Fn(ReporterEvent) + Send + Sync>,
    /// One per item of the call (a single download is item 0), grown on first use.
    progress: Mutex<Vec<ProgressSlot>>,
    /// The call's secrets; an assertion signed during the call joins them.
    secrets: Mutex<Vec<Secret>>,
    /// The caller takes log lines: without a log callback, none is scrubbed and sent for nothing.
    logs: bool,
}

/// The latest progress figures of one item, and whether the caller's thread has heard of them.
#[derive(Clone, Copy, Default)]
struct ProgressSlot {
    bytes_done: u64,
    bytes_total: u64,
    /// An event for this slot is on its way and will read the figures when it arrives.
    pending: bool,
    last_sent: Option<Instant>,
}

/// What a reporter sends, before it is wrapped into the call's typed event.
enum ReporterEvent {
    Progress(usize),
    Log(DefenderLogLevel, String),
    ItemDone(usize, DefenderStatus, String),
    Phase(usize, Phase),
    SignAssertion(AssertionRequest),
}

impl Reporter {
    /// Records progress of item `item` (0 for a call with one item, such as a download); the
    /// caller's thread hears of it at most every `PROGRESS_INTERVAL` per item, unless `last`
    /// (the item's final figures) is set.
    pub(crate) fn item_progress(&self, item: usize, bytes_done: u64, bytes_total: u64, last: bool) {
        let mut slots = self.progress_slots();
        if slots.len() <= item {
            slots.resize(item + 1, ProgressSlot::default());
        }
        let slot = &mut slots[item];
        slot.bytes_done = bytes_done;
        slot.bytes_total = bytes_total;
        let due = last || slot.last_sent.is_none_or(|at| at.elapsed() >= PROGRESS_INTERVAL);
        if due && !slot.pending {
            slot.pending = true;
            slot.last_sent = Some(Instant::now());
            (self.sender)(ReporterEvent::Progress(item));
        }
    }

    /// Tells the caller's thread that item `item` is finished, with its status and result
    /// JSON (built from text already passed through `scrub`).
    pub(crate) fn item_done(&self, item: usize, status: DefenderStatus, result_json: String) {
        (self.sender)(ReporterEvent::ItemDone(item, status, result_json));
    }

    /// A line for the caller's log callback, scrubbed of secrets.
    pub(crate) fn log(&self, level: DefenderLogLevel, message: impl AsRef<str>) {
        if !self.logs {
            return;
        }
        (self.sender)(ReporterEvent::Log(level, self.scrub(message.as_ref())));
    }

    /// Tells the caller's phase callback what the current item (see `as_item`) is doing now.
    pub(crate) fn phase(&self, phase: Phase) {
        // Their text may come from the service: scrubbed and made printable like log lines.
        let phase = match phase {
            Phase::Retrying { attempt, wait, reason } => Phase::Retrying { attempt, wait, reason: self.scrub(&reason) },
            Phase::WaitingForCollection { status, waited, next_look_in } => {
                Phase::WaitingForCollection { status: self.scrub(&status), waited, next_look_in }
            }
            Phase::WaitingForSession { reason, waited, next_try_in } => {
                Phase::WaitingForSession { reason: self.scrub(&reason), waited, next_try_in }
            }
            phase => phase,
        };
        (self.sender)(ReporterEvent::Phase(current_item(), phase));
    }

    /// A client assertion for app `client_id` at the token endpoint `audience`, signed by the
    /// caller's assertion callback on the caller's thread. It is a secret of the call from then on.
    pub(crate) async fn sign_assertion(&self, audience: &str, client_id: &str) -> Result<Secret> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = AssertionRequest { audience: audience.to_owned(), client_id: client_id.to_owned(), reply };
        (self.sender)(ReporterEvent::SignAssertion(request));
        let assertion =
            Secret::new(answer.await.map_err(|_| {
                Error::internal("the caller's thread stopped before the assertion callback answered")
            })??);
        self.secrets.lock().unwrap_or_else(|e| e.into_inner()).push(assertion.clone());
        Ok(assertion)
    }

    /// `text` without the call's secrets and made printable, for text that goes back to the
    /// caller (log lines, phases, batch results).
    pub(crate) fn scrub(&self, text: &str) -> String {
        let secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        let secrets: Vec<&str> = secrets.iter().map(Secret::expose).collect();
        crate::redact::for_caller(text, &secrets)
    }

    fn progress_slots(&self) -> MutexGuard<'_, Vec<ProgressSlot>> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
impl Reporter {
    /// A reporter for unit tests of code that reports: its log lines arrive on the receiver.
    pub(crate) fn for_test() -> (Arc<Reporter>, mpsc::Receiver<String>) {
        let (sender, lines) = mpsc::channel();
        let reporter = Reporter {
            sender: Box::new(move |event| {
                if let ReporterEvent::Log(_, line) = event {
                    let _ = sender.send(line);
                }
            }),
            progress: Mutex::new(Vec::new()),
            secrets: Mutex::new(Vec::new()),
            logs: true,
        };
        (Arc::new(reporter), lines)
    }
}

/// Called with (item, bytes done, bytes total); returns `true` to cancel the whole call.
/// A call with one item (a single download) reports it as item 0.
pub(crate) type ProgressFn<'a> = &'a mut dyn FnMut(usize, u64, u64) -> bool;
/// Called with each log line.
pub(crate) type LogFn<'a> = &'a mut dyn FnMut(DefenderLogLevel, &str);
/// Called once per finished item of a batch with (item, status, result JSON).
pub(crate) type ItemDoneFn<'a> = &'a mut dyn FnMut(usize, DefenderStatus, &str);
/// Called with (item, what it is doing); returns `true` to cancel the whole call.
pub(crate) type PhaseFn<'a> = &'a mut dyn FnMut(usize, &Phase) -> bool;
/// Called with (audience, client id); returns a signed client assertion.
pub(crate) type AssertionFn<'a> = &'a mut dyn FnMut(&str, &str) -> Result<String>;

/// The caller's side of a call: what to do with progress, log lines, finished items and
/// phases, and how to sign a client assertion.
#[derive(Default)]
pub(crate) struct Callbacks<'a> {
    pub progress: Option<ProgressFn<'a>>,
    pub log: Option<LogFn<'a>>,
    pub item_done: Option<ItemDoneFn<'a>>,
    pub phase: Option<PhaseFn<'a>>,
    pub assertion: Option<AssertionFn<'a>>,
}

/// An item's download rate, from the progress figures the caller's thread hears.
struct Transfer {
    started: Instant,
    bytes_at_start: u64,
    last_done: u64,
}

impl Transfer {
    fn start(bytes_done: u64) -> Self {
        Self { started: Instant::now(), bytes_at_start: bytes_done, last_done: bytes_done }
    }

    /// Bytes a second since the transfer (re)started: a restart from the start begins again.
    fn update(&mut self, bytes_done: u64) -> u64 {
        if bytes_done < self.last_done {
            *self = Self::start(bytes_done);
        }
        self.last_done = bytes_done;
        let seconds = self.started.elapsed().as_secs_f64();
        if seconds < 0.05 { 0 } else { ((bytes_done - self.bytes_at_start) as f64 / seconds) as u64 }
    }
}

/// What a caught panic said, for the message of the INTERNAL status it becomes.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

thread_local! {
    /// Set while this thread runs one of the caller's callbacks.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` as a callback: a library call made from inside it is refused (see `run`).
fn as_callback<R>(f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            IN_CALLBACK.with(|flag| flag.set(false));
        }
    }
    IN_CALLBACK.with(|flag| flag.set(true));
    let _reset = Reset;
    f()
}

/// Runs the work that `start` returns on the runtime and blocks the calling thread until it is
/// done, running `callbacks` on this thread meanwhile.
///
/// `cancel` stops the work: it then returns `CANCELLED` as soon as the work has cleaned up
/// (dropped its temporary files). `secrets` are scrubbed from log lines and the error message.
pub(crate) fn run<T, F>(
    name: &str,
    cancel: CancellationToken,
    secrets: Vec<Secret>,
    mut callbacks: Callbacks<'_>,
    start: impl FnOnce(Arc<Reporter>) -> F,
) -> Result<T>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    if IN_CALLBACK.with(Cell::get) {
        return Err(Error::invalid_argument(format!(
            "{name} was called from inside a progress or log callback; \
             return from the callback first (only defender_client_cancel may be called there)"
        )));
    }
    let runtime = runtime()?;
    let (sender, events) = mpsc::channel::<Event<T>>();
    let event_sender = sender.clone();
    let reporter = Arc::new(Reporter {
        sender: Box::new(move |event| {
            // The caller stops listening only once the work is done: a failed send is harmless.
            let _ = event_sender.send(match event {
                ReporterEvent::Progress(item) => Event::Progress(item),
                ReporterEvent::Log(level, line) => Event::Log(level, line),
                ReporterEvent::ItemDone(item, status, json) => Event::ItemDone(item, status, json),
                ReporterEvent::Phase(item, phase) => Event::Phase(item, phase),
                ReporterEvent::SignAssertion(request) => Event::SignAssertion(request),
            });
        }),
        progress: Mutex::new(Vec::new()),
        secrets: Mutex::new(secrets),
        logs: callbacks.log.is_some(),
    });
    let mut transfers: HashMap<usize, Transfer> = HashMap::new();
    let work = start(Arc::clone(&reporter));
    let task_cancel = cancel.clone();
    let task_name = name.to_owned();
    runtime.spawn(async move {
        // A panic in the work ends the call with INTERNAL instead of leaving the caller waiting
        // for a result that never comes; the runtime and the process go on.
        let work = AssertUnwindSafe(work).catch_unwind();
        let result = tokio::select! {
            biased;
            () = task_cancel.cancelled() => Err(Error::cancelled()),
            result = work => result.unwrap_or_else(|panic| Err(Error::internal(format!(
                "{task_name} failed: internal error: {}; this is a bug, please report it",
                panic_message(panic.as_ref())
            )))),
        };
        // The work future is dropped by now, so its temporary files are gone before the caller hears.
        let _ = sender.send(Event::Done(result));
    });

    loop {
        match events.recv() {
            Ok(Event::Progress(item)) => {
                let slot = {
                    let mut slots = reporter.progress_slots();
                    slots[item].pending = false;
                    slots[item]
                };
                // Once the call is cancelled (by this callback or by the client), progress queued
                // before that is not reported: a callback that asked to stop is not called again.
                if let Some(progress) = callbacks.progress.as_mut().filter(|_| !cancel.is_cancelled()) {
                    if as_callback(|| progress(item, slot.bytes_done, slot.bytes_total)) {
                        cancel.cancel();
                    }
                }
                if let Some(phase) = callbacks.phase.as_mut().filter(|_| !cancel.is_cancelled()) {
                    let transfer = transfers.entry(item).or_insert_with(|| Transfer::start(slot.bytes_done));
                    let bytes_per_second = transfer.update(slot.bytes_done);
                    let downloading = Phase::Downloading {
                        bytes_done: slot.bytes_done,
                        bytes_total: slot.bytes_total,
                        bytes_per_second,
                        elapsed: transfer.started.elapsed(),
                    };
                    if as_callback(|| phase(item, &downloading)) {
                        cancel.cancel();
                    }
                }
            }
            Ok(Event::Phase(item, reported)) => {
                if let Some(phase) = callbacks.phase.as_mut().filter(|_| !cancel.is_cancelled()) {
                    if as_callback(|| phase(item, &reported)) {
                        cancel.cancel();
                    }
                }
            }
            Ok(Event::SignAssertion(request)) => {
                let signed = match callbacks.assertion.as_mut() {
                    Some(sign) => as_callback(|| sign(&request.audience, &request.client_id)),
                    None => Err(Error::invalid_argument(
                        "the sign-in needs a client assertion from the assertion callback, but none is registered",
                    )),
                };
                // The work stopped waiting only when it was cancelled: nothing to tell then.
                let _ = request.reply.send(signed);
            }
            Ok(Event::ItemDone(item, status, json)) => {
                if let Some(item_done) = callbacks.item_done.as_mut() {
                    as_callback(|| item_done(item, status, &json));
                }
            }
            Ok(Event::Log(level, line)) => {
                if let Some(log) = callbacks.log.as_mut() {
                    as_callback(|| log(level, &line));
                }
            }
            Ok(Event::Done(result)) => {
                // Events are delivered in order, so the final progress has been reported by now.
                return result.map_err(|err| Error::new(err.status(), reporter.scrub(err.message())));
            }
            Err(mpsc::RecvError) => {
                return Err(Error::new(
                    DefenderStatus::Internal,
                    format!("{name} stopped unexpectedly (its worker task panicked); this is a bug"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_callbacks() -> Callbacks<'static> {
        Callbacks::default()
    }

    #[test]
    fn returns_the_work_result() {
        let result = run("test", CancellationToken::new(), vec![], no_callbacks(), |_| async { Ok(42) });
        assert_eq!(result, Ok(42));
    }

    #[test]
    fn a_panic_in_the_work_ends_the_call_with_internal_and_the_next_call_works() {
        let result: Result<()> =
            run("test", CancellationToken::new(), vec![], no_callbacks(), |_| async { panic!("worker went wrong") });
        let err = result.unwrap_err();
        assert_eq!(err.status(), DefenderStatus::Internal);
        assert!(err.message().contains("worker went wrong"), "{err}");
        assert_eq!(run("test", CancellationToken::new(), vec![], no_callbacks(), |_| async { Ok(7) }), Ok(7));
    }

    #[test]
    fn callbacks_run_on_the_calling_thread_and_a_nested_call_is_refused() {
        let caller = std::thread::current().id();
        let mut nested = None;
        let mut seen = Vec::new();
        let mut progress = |_: usize, done: u64, total: u64| {
            assert_eq!(std::thread::current().id(), caller);
            seen.push((done, total));
            nested = Some(run("nested", CancellationToken::new(), vec![], no_callbacks(), |_| async { Ok(()) }));
            false
        };
        let result = run(
            "outer",
            CancellationToken::new(),
            vec![],
            Callbacks { progress: Some(&mut progress), ..Callbacks::default() },
            |reporter| async move {
                reporter.item_progress(0, 10, 10, true);
                Ok(())
            },
        );
        assert_eq!(result, Ok(()));
        assert_eq!(seen, vec![(10, 10)]);
        assert_eq!(nested.unwrap().unwrap_err().status(), DefenderStatus::InvalidArgument);
    }

    /// A call whose work reports the first byte of a hundred for each of `items` items at once,
    /// then runs until it is cancelled.
    fn progress_then_until_cancelled(progress: ProgressFn<'_>, items: usize) -> Result<()> {
        run(
            "test",
            CancellationToken::new(),
            vec![],
            Callbacks { progress: Some(progress), ..Callbacks::default() },
            move |reporter| async move {
                for item in 0..items {
                    reporter.item_progress(item, 1, 100, true);
                }
                std::future::pending::<()>().await;
                Ok(())
            },
        )
    }

    #[test]
    fn progress_callback_returning_true_cancels() {
        let mut progress = |_: usize, _: u64, _: u64| true;
        let result = progress_then_until_cancelled(&mut progress, 1);
        assert_eq!(result.unwrap_err().status(), DefenderStatus::Cancelled);
    }

    #[test]
    fn a_progress_callback_that_asked_to_stop_is_not_called_again() {
        let mut calls = 0;
        let mut progress = |_: usize, _: u64, _: u64| {
            calls += 1;
            true
        };
        // Two items' figures queued before the caller's thread hears of the first.
        let result = progress_then_until_cancelled(&mut progress, 2);
        assert_eq!(result.unwrap_err().status(), DefenderStatus::Cancelled);
        assert_eq!(calls, 1);
    }

    #[test]
    fn log_lines_and_errors_are_scrubbed_of_the_given_secrets() {
        let mut lines = Vec::new();
        let mut log = |_: DefenderLogLevel, line: &str| lines.push(line.to_owned());
        let result: Result<()> = run(
            "test",
            CancellationToken::new(),
            vec![Secret::new("hunter22")],
            Callbacks { log: Some(&mut log), ..Callbacks::default() },
            |reporter| async move {
                reporter.log(DefenderLogLevel::Info, "using hunter22");
                Err(Error::internal("failed with hunter22"))
            },
        );
        assert_eq!(lines, vec!["using REDACTED"]);
        assert_eq!(result.unwrap_err().message(), "failed with REDACTED");
    }

    #[test]
    fn items_report_progress_and_completion_in_order_on_the_calling_thread() {
        let caller = std::thread::current().id();
        // Progress is coalesced per item, so only the order of what is heard and each item's
        // final figures are certain.
        let events = std::cell::RefCell::new(Vec::new());
        let mut progress = |item: usize, done: u64, total: u64| {
            assert_eq!(std::thread::current().id(), caller);
            events.borrow_mut().push(format!("progress {item} {done}/{total}"));
            false
        };
        let mut item_done = |item: usize, status: DefenderStatus, json: &str| {
            assert_eq!(std::thread::current().id(), caller);
            events.borrow_mut().push(format!("done {item} {status:?} {json}"));
        };
        let result = run(
            "test",
            CancellationToken::new(),
            vec![Secret::new("hunter22")],
            Callbacks { progress: Some(&mut progress), item_done: Some(&mut item_done), ..Callbacks::default() },
            |reporter| async move {
                reporter.item_progress(1, 5, 10, false);
                reporter.item_progress(0, 7, 7, true);
                reporter.item_done(0, DefenderStatus::Ok, "{}".into());
                reporter.item_progress(1, 10, 10, true);
                let message = reporter.scrub("failed with hunter22");
                reporter.item_done(1, DefenderStatus::Integrity, message);
                Ok(())
            },
        );
        assert_eq!(result, Ok(()));
        let events = events.into_inner();
        let position = |event: &str| events.iter().position(|e| e == event).unwrap_or_else(|| panic!("{events:?}"));
        assert!(position("progress 0 7/7") < position("done 0 Ok {}"), "{events:?}");
        assert!(position("progress 1 10/10") < position("done 1 Integrity failed with REDACTED"), "{events:?}");
        assert_eq!(events.len(), 4 + usize::from(events.contains(&"progress 1 5/10".to_owned())), "{events:?}");
    }
}
