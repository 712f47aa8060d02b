//! One process-wide tokio runtime, and blocking calls on it whose callbacks run on the caller's
//! thread.
//!
//! A call's work runs as a task on the runtime. The calling thread waits for it by pumping a
//! channel of events (progress, log lines, the result) and runs the caller's callbacks itself,
//! so callbacks only ever run on the thread that made the call, and only while it runs.
//! PowerShell and .NET depend on that: a script block invoked from a foreign thread crashes
//! the process.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use once_cell::sync::OnceCell;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use crate::error::{DefenderStatus, Error, Result};

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

/// Progress is reported at most this often (plus once at the end): enough for a smooth bar,
/// little enough that a slow callback (PowerShell's `Write-Progress`) does not slow the download.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

enum Event<T> {
    /// New progress figures are in the reporter's atomics.
    Progress,
    Log(DefenderLogLevel, String),
    Done(Result<T>),
}

/// The worker side of a call: where its work reports progress and log lines, and how it learns
/// that it should stop.
pub struct Reporter {
    sender: Box<dyn Fn(ReporterEvent) + Send + Sync>,
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
    progress_pending: AtomicBool,
    last_progress: Mutex<Option<Instant>>,
    secrets: Vec<String>,
    cancel: CancellationToken,
}

/// What a reporter sends, before it is wrapped into the call's typed event.
enum ReporterEvent {
    Progress,
    Log(DefenderLogLevel, String),
}

impl Reporter {
    /// Records progress; the caller's thread hears of it at most every `PROGRESS_INTERVAL`,
    /// unless `last` (the final figures) is set.
    pub fn progress(&self, bytes_done: u64, bytes_total: u64, last: bool) {
        self.bytes_done.store(bytes_done, Ordering::Relaxed);
        self.bytes_total.store(bytes_total, Ordering::Relaxed);
        let mut last_sent = self.last_progress.lock().unwrap_or_else(|e| e.into_inner());
        let due = last || last_sent.is_none_or(|at| at.elapsed() >= PROGRESS_INTERVAL);
        if due && !self.progress_pending.swap(true, Ordering::AcqRel) {
            *last_sent = Some(Instant::now());
            (self.sender)(ReporterEvent::Progress);
        }
    }

    /// A line for the caller's log callback, scrubbed of secrets.
    pub fn log(&self, level: DefenderLogLevel, message: impl AsRef<str>) {
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        (self.sender)(ReporterEvent::Log(level, crate::redact::scrub(message.as_ref(), &secrets)));
    }

    /// Fires when the call is cancelled (by the client or by the progress callback).
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }
}

#[cfg(test)]
impl Reporter {
    /// A reporter for unit tests of code that reports: its log lines arrive on the receiver.
    pub fn for_test() -> (Arc<Reporter>, mpsc::Receiver<String>) {
        let (sender, lines) = mpsc::channel();
        let reporter = Reporter {
            sender: Box::new(move |event| {
                if let ReporterEvent::Log(_, line) = event {
                    let _ = sender.send(line);
                }
            }),
            bytes_done: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            progress_pending: AtomicBool::new(false),
            last_progress: Mutex::new(None),
            secrets: Vec::new(),
            cancel: CancellationToken::new(),
        };
        (Arc::new(reporter), lines)
    }
}

/// Called with (bytes done, bytes total); returns `true` to cancel.
pub type ProgressFn<'a> = &'a mut dyn FnMut(u64, u64) -> bool;
/// Called with each log line.
pub type LogFn<'a> = &'a mut dyn FnMut(DefenderLogLevel, &str);

/// The caller's side of a call: what to do with progress and log lines.
pub struct Callbacks<'a> {
    pub progress: Option<ProgressFn<'a>>,
    pub log: Option<LogFn<'a>>,
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
pub fn run<T, F>(
    name: &str,
    cancel: CancellationToken,
    secrets: Vec<String>,
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
                ReporterEvent::Progress => Event::Progress,
                ReporterEvent::Log(level, line) => Event::Log(level, line),
            });
        }),
        bytes_done: AtomicU64::new(0),
        bytes_total: AtomicU64::new(0),
        progress_pending: AtomicBool::new(false),
        last_progress: Mutex::new(None),
        secrets: secrets.clone(),
        cancel: cancel.clone(),
    });
    let work = start(Arc::clone(&reporter));
    let task_cancel = cancel.clone();
    runtime.spawn(async move {
        let result = tokio::select! {
            biased;
            () = task_cancel.cancelled() => Err(Error::cancelled()),
            result = work => result,
        };
        // The work future is dropped by now, so its temporary files are gone before the caller hears.
        let _ = sender.send(Event::Done(result));
    });

    loop {
        match events.recv() {
            Ok(Event::Progress) => {
                reporter.progress_pending.store(false, Ordering::Release);
                let done = reporter.bytes_done.load(Ordering::Relaxed);
                let total = reporter.bytes_total.load(Ordering::Relaxed);
                if let Some(progress) = callbacks.progress.as_mut() {
                    if as_callback(|| progress(done, total)) {
                        cancel.cancel();
                    }
                }
            }
            Ok(Event::Log(level, line)) => {
                if let Some(log) = callbacks.log.as_mut() {
                    as_callback(|| log(level, &line));
                }
            }
            Ok(Event::Done(result)) => {
                // Events are delivered in order, so the final progress has been reported by now.
                let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
                return result.map_err(|err| Error::new(err.status(), crate::redact::scrub(err.message(), &refs)));
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
        Callbacks { progress: None, log: None }
    }

    #[test]
    fn returns_the_work_result() {
        let result = run("test", CancellationToken::new(), vec![], no_callbacks(), |_| async { Ok(42) });
        assert_eq!(result, Ok(42));
    }

    #[test]
    fn callbacks_run_on_the_calling_thread_and_a_nested_call_is_refused() {
        let caller = std::thread::current().id();
        let mut nested = None;
        let mut seen = Vec::new();
        let mut progress = |done: u64, total: u64| {
            assert_eq!(std::thread::current().id(), caller);
            seen.push((done, total));
            nested = Some(run("nested", CancellationToken::new(), vec![], no_callbacks(), |_| async { Ok(()) }));
            false
        };
        let result = run(
            "outer",
            CancellationToken::new(),
            vec![],
            Callbacks { progress: Some(&mut progress), log: None },
            |reporter| async move {
                reporter.progress(10, 10, true);
                Ok(())
            },
        );
        assert_eq!(result, Ok(()));
        assert_eq!(seen, vec![(10, 10)]);
        assert_eq!(nested.unwrap().unwrap_err().status(), DefenderStatus::InvalidArgument);
    }

    #[test]
    fn progress_callback_returning_true_cancels() {
        let mut progress = |_: u64, _: u64| true;
        let result: Result<()> = run(
            "test",
            CancellationToken::new(),
            vec![],
            Callbacks { progress: Some(&mut progress), log: None },
            |reporter| async move {
                reporter.progress(1, 100, true);
                std::future::pending::<()>().await;
                Ok(())
            },
        );
        assert_eq!(result.unwrap_err().status(), DefenderStatus::Cancelled);
    }

    #[test]
    fn log_lines_and_errors_are_scrubbed_of_the_given_secrets() {
        let mut lines = Vec::new();
        let mut log = |_: DefenderLogLevel, line: &str| lines.push(line.to_owned());
        let result: Result<()> = run(
            "test",
            CancellationToken::new(),
            vec!["hunter22".into()],
            Callbacks { progress: None, log: Some(&mut log) },
            |reporter| async move {
                reporter.log(DefenderLogLevel::Info, "using hunter22");
                Err(Error::internal("failed with hunter22"))
            },
        );
        assert_eq!(lines, vec!["using REDACTED"]);
        assert_eq!(result.unwrap_err().message(), "failed with REDACTED");
    }
}
