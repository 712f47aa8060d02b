//! `DefenderClient`: creating, configuring, cancelling and freeing it.

use std::ffi::{CStr, CString, c_char, c_void};
use std::future::Future;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use super::{boundary, optional_str, required_out, required_str, write_string};
use crate::client::{CallStart, Client, Session};
use crate::config::OPTIONS;
use crate::error::{DefenderStatus, Error, Result};
use crate::runtime::{
    self, AssertionFn, Callbacks, DefenderLogLevel, ItemDoneFn, LogFn, Phase, PhaseFn, ProgressFn, Reporter,
};

/// A connection to the Defender for Endpoint API: options, sign-in and a connection pool.
///
/// Opaque. Create it with `defender_client_new`, configure it with `defender_client_set`, free
/// it with `defender_client_free`. One client may be used from many threads at once; it caches
/// its access token, so reuse one client rather than creating one per call.
pub struct DefenderClient {
    client: Client,
    callbacks: RwLock<Registered>,
}

/// The callbacks registered on a client, each with its `user_data`.
#[derive(Clone, Copy, Default)]
struct Registered {
    log: Option<Sink<LogCallbackFn>>,
    phase: Option<Sink<PhaseCallbackFn>>,
    assertion: Option<Sink<AssertionCallbackFn>>,
}

type LogCallbackFn = unsafe extern "C" fn(*mut c_void, DefenderLogLevel, *const c_char);
type PhaseCallbackFn = unsafe extern "C" fn(*mut c_void, *const DefenderPhaseEvent) -> i32;
type AssertionCallbackFn = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char, *mut c_char, usize) -> i32;

#[derive(Clone, Copy)]
struct Sink<F> {
    callback: F,
    user_data: *mut c_void,
}

// SAFETY: a sink is only ever called on the thread that makes a call (see runtime::run); the
// caller who registered it vouches for `user_data` on every thread that calls the library.
unsafe impl<F> Send for Sink<F> {}
unsafe impl<F> Sync for Sink<F> {}

/// Receives the library's log lines: waits, retries, throttling, each request's status. Never a secret.
///
/// `message` is NUL-terminated UTF-8.
pub type DefenderLogCallback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, level: DefenderLogLevel, message: *const c_char)>;

/// What an item of a call is doing (`DefenderPhaseEvent.phase`). The numbers are fixed; new
/// phases may be added, so treat an unknown number as "busy".
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefenderPhase {
    /// The collection (or the live response session) is not finished yet (the call waits
    /// because `wait_timeout_ms` is set): `detail` is its status as last seen (`Pending`,
    /// `InProgress`; a session for an offline device stays `Pending` until it is back),
    /// `elapsed_ms` how long the item has waited so far, `remaining_ms` when the library looks again.
    WaitingForCollection = 1,
    /// Queued behind the API's rate limit (getPackageUri: 2 a minute, 120 an hour per app):
    /// `queue_position` is the call's place (1: next to go), `remaining_ms` about how long until
    /// it goes (0 when it waits for calls in flight to be answered), `elapsed_ms` how long it has
    /// been queued.
    QueuedForRateLimit = 2,
    /// A batch item whose package is ready waits for one of the `max_concurrent_downloads` slots.
    WaitingForDownloadSlot = 3,
    /// Bytes arriving: `bytes_done`, `bytes_total` (0 while unknown), `bytes_per_second` (the
    /// average since the transfer started; 0 at first), `elapsed_ms` since the transfer started.
    Downloading = 4,
    /// The whole package is on disk and being checked (synced, its MD5 and ZIP directory):
    /// `bytes_done` and `bytes_total` are its size.
    Verifying = 5,
    /// A request or transfer failed and is tried again: `detail` says what failed (never a
    /// secret), `attempt` counts the retries so far, `remaining_ms` is the pause before the next.
    Retrying = 6,
    /// A live response session could not start yet and the call waits to try again (within
    /// `wait_timeout_ms`): the tenant runs the 25 sessions the service allows at once (HTTP 429),
    /// or the device runs a session already (HTTP 400 `ActiveRequestAlreadyExists`). `detail`
    /// says which, `elapsed_ms` how long the item has waited so far, `remaining_ms` the pause
    /// before the next try.
    WaitingForSession = 7,
}

/// One report of what an item of a call is doing. Fields that do not apply to a phase are 0
/// (`detail`: an empty string). Later versions may append fields, never change these.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DefenderPhaseEvent {
    pub phase: DefenderPhase,
    /// The item: the position in `action_ids` of `defender_download_packages`, 0 for other calls.
    pub index: usize,
    /// How long the item has been in this phase (see `DefenderPhase`).
    pub elapsed_ms: u64,
    /// About how long until the item moves on; 0 when unknown or not applicable.
    pub remaining_ms: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub bytes_per_second: u64,
    /// The place in the rate limit's queue, 1 being next.
    pub queue_position: u32,
    /// The retries so far.
    pub attempt: u32,
    /// NUL-terminated UTF-8, valid only during the callback; never NULL.
    pub detail: *const c_char,
}

/// Reports what an item of a call is doing, so that a progress bar can say it: waiting for the
/// collection, queued for the rate limit, waiting for a download slot, downloading (with bytes
/// and rate), verifying, retrying after a fault. Return non-zero to cancel the call (it then
/// returns `DEFENDER_STATUS_CANCELLED`); the callback is not called again after that, nor after
/// `defender_client_cancel`.
///
/// Called on every change of phase, at each look at a collection and each retry, and while
/// downloading as often as the progress callback (at most about ten times a second per item).
/// The progress callbacks (`DefenderProgressCallback`, `DefenderBatchProgressCallback`) are
/// called as before; this one adds to them.
pub type DefenderPhaseCallback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const DefenderPhaseEvent) -> i32>;

/// Signs a client assertion (an RFC 7523 JWT, RS256, with the certificate's `x5t`) for the app
/// `client_id` and the token endpoint `audience` (its `aud` claim), with a key that stays where
/// it is (a certificate store, a smart card, an HSM).
///
/// Write the assertion, NUL-terminated, into `assertion_out` (`assertion_capacity` bytes, at
/// least 16 KiB) and return 0. Return non-zero when it cannot be signed: the call then fails with
/// `DEFENDER_STATUS_UNAUTHORIZED`. The library wipes the buffer after use.
///
/// Called whenever the client needs a new token (at the first call, and again before the token
/// expires, also in the middle of a long call such as a wait for a collection), so each
/// assertion may be short-lived (a few minutes) and is used once.
pub type DefenderAssertionCallback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        audience: *const c_char,
        client_id: *const c_char,
        assertion_out: *mut c_char,
        assertion_capacity: usize,
    ) -> i32,
>;

/// The buffer an assertion callback writes into: a JWT signed with a 4096-bit key and a
/// certificate chain in `x5c` still fits.
const ASSERTION_CAPACITY: usize = 16 * 1024;

impl DefenderClient {
    /// Runs one call on the client (see `Client::call`) with the caller's progress callback, if
    /// any, and the client's log callback.
    pub(crate) fn run<T, F>(
        &self,
        name: &str,
        progress: Option<ProgressFn<'_>>,
        work: impl FnOnce(Arc<Session>, Arc<Reporter>) -> F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        self.run_with(name, Callbacks { progress, ..Callbacks::default() }, work)
    }

    /// As `run`, with any of the caller's callbacks (`callbacks.log` is replaced by the
    /// client's log callback).
    pub(crate) fn run_with<T, F>(
        &self,
        name: &str,
        callbacks: Callbacks<'_>,
        work: impl FnOnce(Arc<Session>, Arc<Reporter>) -> F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let registered = *self.callbacks.read().unwrap_or_else(|e| e.into_inner());
        let mut log = registered.log.map(|sink| {
            move |level: DefenderLogLevel, line: &str| {
                let line = CString::new(line.replace('\0', " ")).unwrap_or_default();
                // SAFETY: the caller registered this callback for this purpose; the string lives
                // until it returns.
                unsafe { (sink.callback)(sink.user_data, level, line.as_ptr()) }
            }
        });
        let mut phase = registered.phase.map(|sink| {
            move |index: usize, phase: &Phase| {
                let (event, _detail) = phase_event(index, phase);
                // SAFETY: as for the log callback; the event and its detail live until it returns.
                unsafe { (sink.callback)(sink.user_data, &event) != 0 }
            }
        });
        let mut assertion =
            registered.assertion.map(|sink| move |audience: &str, client_id: &str| sign(sink, audience, client_id));
        let callbacks = Callbacks {
            // Shortens the trait objects' lifetimes to this call's, like the client's callbacks'.
            progress: callbacks.progress.map(|progress| progress as ProgressFn<'_>),
            item_done: callbacks.item_done.map(|item_done| item_done as ItemDoneFn<'_>),
            log: log.as_mut().map(|log| log as LogFn<'_>),
            phase: phase.as_mut().map(|phase| phase as PhaseFn<'_>),
            assertion: assertion.as_mut().map(|assertion| assertion as AssertionFn<'_>),
        };
        let CallStart { session, cancel, secrets } = self.client.start_call()?;
        runtime::run(name, cancel, secrets, callbacks, |reporter| work(session, reporter))
    }
}

/// The C form of `phase` for item `index`, and the detail string it points into (keep it alive
/// while the event is used).
fn phase_event(index: usize, phase: &Phase) -> (DefenderPhaseEvent, CString) {
    let millis = |duration: &Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let mut event = DefenderPhaseEvent {
        phase: DefenderPhase::Downloading,
        index,
        elapsed_ms: 0,
        remaining_ms: 0,
        bytes_done: 0,
        bytes_total: 0,
        bytes_per_second: 0,
        queue_position: 0,
        attempt: 0,
        detail: std::ptr::null(),
    };
    let mut detail = String::new();
    match phase {
        Phase::WaitingForCollection { status, waited, next_look_in } => {
            event.phase = DefenderPhase::WaitingForCollection;
            event.elapsed_ms = millis(waited);
            event.remaining_ms = millis(next_look_in);
            detail.clone_from(status);
        }
        Phase::QueuedForRateLimit { position, wait, queued } => {
            event.phase = DefenderPhase::QueuedForRateLimit;
            event.queue_position = u32::try_from(*position).unwrap_or(u32::MAX);
            event.remaining_ms = wait.as_ref().map_or(0, millis);
            event.elapsed_ms = millis(queued);
        }
        Phase::WaitingForDownloadSlot => event.phase = DefenderPhase::WaitingForDownloadSlot,
        Phase::Downloading { bytes_done, bytes_total, bytes_per_second, elapsed } => {
            event.bytes_done = *bytes_done;
            event.bytes_total = *bytes_total;
            event.bytes_per_second = *bytes_per_second;
            event.elapsed_ms = millis(elapsed);
        }
        Phase::Verifying { bytes } => {
            event.phase = DefenderPhase::Verifying;
            event.bytes_done = *bytes;
            event.bytes_total = *bytes;
        }
        Phase::Retrying { attempt, wait, reason } => {
            event.phase = DefenderPhase::Retrying;
            event.attempt = *attempt;
            event.remaining_ms = millis(wait);
            detail.clone_from(reason);
        }
        Phase::WaitingForSession { reason, waited, next_try_in } => {
            event.phase = DefenderPhase::WaitingForSession;
            event.elapsed_ms = millis(waited);
            event.remaining_ms = millis(next_try_in);
            detail.clone_from(reason);
        }
    }
    let detail = CString::new(detail.replace('\0', " ")).unwrap_or_default();
    event.detail = detail.as_ptr();
    (event, detail)
}

/// Asks the caller's assertion callback for an assertion, in a buffer wiped afterwards.
fn sign(sink: Sink<AssertionCallbackFn>, audience: &str, client_id: &str) -> Result<String> {
    let audience = CString::new(audience).map_err(|_| Error::internal("the token endpoint holds a NUL"))?;
    let client_id = CString::new(client_id).map_err(|_| Error::invalid_argument("client_id holds a NUL"))?;
    let mut buffer = vec![0u8; ASSERTION_CAPACITY];
    // SAFETY: the caller registered this callback for this purpose; every pointer lives until it
    // returns, and the buffer has ASSERTION_CAPACITY bytes.
    let returned = unsafe {
        (sink.callback)(sink.user_data, audience.as_ptr(), client_id.as_ptr(), buffer.as_mut_ptr().cast(), buffer.len())
    };
    let assertion = if returned != 0 {
        Err(Error::new(
            DefenderStatus::Unauthorized,
            format!("the assertion callback could not sign a client assertion (it returned {returned})"),
        ))
    } else {
        match CStr::from_bytes_until_nul(&buffer) {
            Err(_) => Err(Error::invalid_argument(format!(
                "the assertion callback wrote no NUL-terminated assertion within its {ASSERTION_CAPACITY} bytes"
            ))),
            Ok(text) => match text.to_str() {
                Ok("") => Err(Error::invalid_argument("the assertion callback returned an empty assertion")),
                Ok(text) => Ok(text.trim().to_owned()),
                Err(_) => Err(Error::invalid_argument("the assertion callback wrote an assertion that is not UTF-8")),
            },
        }
    };
    buffer.fill(0);
    assertion
}

/// Turns a client pointer into a reference.
///
/// # Safety
/// `client` is NULL or a live pointer from `defender_client_new`.
pub(crate) unsafe fn client_ref<'a>(client: *const DefenderClient) -> Result<&'a DefenderClient> {
    // SAFETY: the caller guarantees the pointer is NULL or live.
    unsafe { client.as_ref() }.ok_or_else(|| Error::invalid_argument("client is NULL"))
}

/// Creates a client with default options (commercial cloud, no sign-in yet) into `*client_out`.
///
/// Returns `DEFENDER_STATUS_OK`, or `DEFENDER_STATUS_INVALID_ARGUMENT` when `client_out` is NULL.
///
/// # Safety
/// `client_out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_client_new(client_out: *mut *mut DefenderClient) -> DefenderStatus {
    boundary("defender_client_new", || {
        required_out(client_out, "client_out")?;
        let client = Box::new(DefenderClient { client: Client::new(), callbacks: RwLock::default() });
        // SAFETY: checked non-NULL; the caller guarantees it is writable.
        unsafe { client_out.write(Box::into_raw(client)) };
        Ok(())
    })
}

/// Creates into `*clone_out` a client for calls of their own, cheaply: it starts with
/// `client`'s options and registered callbacks (log, phase, assertion) as they are now, and
/// shares `client`'s signed-in token (and its renewals), its connection pool and, like every
/// client in the process, the rate limiters. Options and callbacks set on either afterwards
/// apply to that one only, so a caller can give one call settings of its own (`overwrite`,
/// `wait_timeout_ms`) without touching the client others use. Changing a sign-in option on the
/// clone gives it a token cache of its own. `defender_client_cancel` cancels the calls of the
/// client it is given, not those of its clones or of the client it was cloned from.
///
/// Free the clone with `defender_client_free`, before or after `client`: each owns what it
/// shares with the other.
///
/// Returns `DEFENDER_STATUS_OK`, or `DEFENDER_STATUS_INVALID_ARGUMENT` when `client` or
/// `clone_out` is NULL.
///
/// # Safety
/// `client` is NULL or live; `clone_out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_client_clone(
    client: *const DefenderClient,
    clone_out: *mut *mut DefenderClient,
) -> DefenderStatus {
    boundary("defender_client_clone", || {
        let client = unsafe { client_ref(client) }?;
        required_out(clone_out, "clone_out")?;
        let registered = *client.callbacks.read().unwrap_or_else(|e| e.into_inner());
        let clone = Box::new(DefenderClient { client: client.client.duplicate(), callbacks: RwLock::new(registered) });
        // SAFETY: checked non-NULL; the caller guarantees it is writable.
        unsafe { clone_out.write(Box::into_raw(clone)) };
        Ok(())
    })
}

/// Frees a client. NULL is fine; freeing twice is not. No call may be running on it: cancel them
/// with `defender_client_cancel` and wait for them to return first.
///
/// # Safety
/// `client` is NULL or a pointer from `defender_client_new` not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_client_free(client: *mut DefenderClient) {
    if !client.is_null() {
        // SAFETY: the caller passes a pointer from Box::into_raw, once.
        let _ = std::panic::catch_unwind(|| drop(unsafe { Box::from_raw(client) }));
    }
}

/// Sets the option `key` to `value`, both NUL-terminated UTF-8; a NULL `value` restores the
/// option's default. Calls already running keep the options they started with.
///
/// Keys (`defender_option_name` and `defender_option_doc` list them at run time):
/// - `base_url`: API root instead of the cloud's; plain http only to localhost
/// - `cloud`: the API and sign-in hosts: commercial, us, eu, uk, au, swa, ina, gcc, gcc-high or dod
///   (default commercial)
/// - `authority_url`: sign-in host instead of the cloud's
/// - `scope`: token scope instead of the cloud's API resource + /.default
/// - `tenant_id`: the app's Entra ID tenant: a GUID or a domain name
/// - `client_id`: the app's client id: with client_secret, client_certificate_path or
///   client_assertion
/// - `client_secret`: signs in as the app with this secret
/// - `client_certificate_path`: signs in as the app with this PEM file: certificate and unencrypted
///   private key
/// - `client_assertion`: signs in as the app with this signed JWT, signed outside the library
/// - `access_token`: a bearer token, used as it is
/// - `managed_identity`: signs in as a managed identity: system, or a user-assigned identity's
///   client id
/// - `managed_identity_endpoint`: token endpoint instead of Azure's IMDS (plain http to this host
///   only)
/// - `managed_identity_header`: with managed_identity_endpoint: App Service's IDENTITY_HEADER, for
///   its IDENTITY_ENDPOINT, instead of reading both from the environment
/// - `environment`: true: signs in from the AZURE_* variables, as Azure Identity's
///   EnvironmentCredential does (default false)
/// - `timeout_ms`: milliseconds per request, and for its retries; 0 for no limit (default 60000)
/// - `connect_timeout_ms`: milliseconds to connect; 0 for no limit (default 15000)
/// - `wait_timeout_ms`: above 0: get-URI and download wait this long at most for the collection to
///   finish, and a download for another call saving to the same file (default 0)
/// - `overwrite`: true: a download may replace an existing file (default false)
/// - `ca_file`: PEM file of extra trust roots (a TLS-inspecting proxy's)
/// - `user_agent`: text appended to the library's User-Agent
/// - `rate_limit`: on: keep within the service's rate limits; off only for a server that has none
///   (default on)
/// - `clock_scale`: N: limits, back-off, Retry-After and waits run N times faster (for a fast
///   simulator) (default 1)
/// - `max_concurrent_downloads`: 1 to 64: packages defender_download_packages downloads at once
///   (default 4)
/// - `file_name_pattern`: a package's file name in a destination folder: {action_id} (required),
///   {machine_id}, {computer_dns_name}, {computer_name}, letters, digits, '.', '_', '-' (default
///   {action_id}.zip)
/// - `min_speed_bytes`: a download that brings fewer bytes in min_speed_window_ms is a stall,
///   retried as one; 0 for no minimum (default 65536)
/// - `min_speed_window_ms`: milliseconds over which min_speed_bytes is counted (default 60000)
/// - `download_timeout_ms`: above 0: a download, its resumes and fresh links included, ends with
///   TIMEOUT after this long (default 0)
/// - `max_bytes_without_length`: a download whose host announces no length ends with PROTOCOL past
///   this many bytes (default 17179869184)
/// - `list_max_items`: a list called with max_items 0 ends with PROTOCOL past this many entities
///   (default 100000)
/// - `list_max_pages`: a list ends with PROTOCOL past this many pages (default 1000)
/// - `list_timeout_ms`: a list ends with TIMEOUT after this long; 0 for no limit (default 1800000)
///
/// Sign-in: exactly one of `client_secret`, `client_certificate_path` or `client_assertion`
/// (each with `tenant_id` and `client_id`), `managed_identity`, `environment=true` or
/// `access_token`; otherwise the next call fails with `DEFENDER_STATUS_INVALID_ARGUMENT` naming
/// the keys. Replacing the secret, certificate path or assertion of the same app keeps the cached
/// token: a caller that signs its own assertions can set a fresh one before every call.
///
/// Returns `DEFENDER_STATUS_OK`; `DEFENDER_STATUS_UNKNOWN_OPTION` for a key not in the list
/// (the message names it and the keys); or `DEFENDER_STATUS_INVALID_ARGUMENT` for a NULL client
/// or key, or a malformed value (the message names the key and what it accepts, and never
/// repeats a secret value).
///
/// # Safety
/// `client` is NULL or live; `key` and `value` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_client_set(
    client: *mut DefenderClient,
    key: *const c_char,
    value: *const c_char,
) -> DefenderStatus {
    boundary("defender_client_set", || {
        let client = unsafe { client_ref(client) }?;
        let key = unsafe { required_str(key, "key") }?;
        let value = unsafe { optional_str(value, "value") }?;
        client.client.set(key, value)
    })
}

/// The key of option number `index` (0, 1, 2, ...) of `defender_client_set`, or NULL past the
/// last one: a static string, never freed. The keys and their order are those of the list at
/// `defender_client_set`; later versions may add keys. To list them:
/// `for (size_t i = 0; defender_option_name(i) != NULL; i++) puts(defender_option_name(i));`
#[unsafe(no_mangle)]
pub extern "C" fn defender_option_name(index: usize) -> *const c_char {
    OPTION_TEXTS.get(index).map_or(std::ptr::null(), |(name, _)| name.as_ptr())
}

/// One line about option number `index` (as for `defender_option_name`): what it does, what it
/// takes and its default, for help text and completion; NULL past the last one. A static string,
/// never freed.
#[unsafe(no_mangle)]
pub extern "C" fn defender_option_doc(index: usize) -> *const c_char {
    OPTION_TEXTS.get(index).map_or(std::ptr::null(), |(_, doc)| doc.as_ptr())
}

/// The key and doc of each option, as C strings that live as long as the process.
static OPTION_TEXTS: LazyLock<Vec<(CString, CString)>> = LazyLock::new(|| {
    let c_string = |text: &str| CString::new(text).unwrap_or_default();
    OPTIONS.iter().map(|option| (c_string(option.name), c_string(&option.description()))).collect()
});

/// Signs in now with the configured sign-in, or finds the cached token still good, so that wrong
/// credentials show at once (a `Connect` step) rather than at the first call. Every other call
/// signs in by itself when it needs to; calling this is never required.
///
/// A bearer token given as `access_token` is not checked here (only the API can tell whether it
/// is good). Blocks until done. Returns `DEFENDER_STATUS_OK`, `DEFENDER_STATUS_UNAUTHORIZED`
/// (the credentials were refused, with the service's text), `DEFENDER_STATUS_INVALID_ARGUMENT`
/// (no sign-in, or more than one, is configured; a certificate file that cannot be used), or
/// `NETWORK`, `TIMEOUT`, `HTTP`, `PROTOCOL`, `CANCELLED`.
///
/// # Safety
/// `client` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_client_sign_in(client: *const DefenderClient) -> DefenderStatus {
    boundary("defender_client_sign_in", || {
        let client = unsafe { client_ref(client) }?;
        client.run("defender_client_sign_in", None, |session, reporter| async move {
            session.tokens.token(&session.sign_in_http, &session.settings, &reporter).await.map(drop)
        })
    })
}

/// Signs in when the client holds no token yet (as `defender_client_sign_in`) and writes to
/// `*info_json_out` what it is connected to, for a "connected as" display (it holds no secret):
/// `{"api_root": "...", "authority": "..." or null, "sign_in": "client_secret", "tenant_id": "..."
/// or null, "client_id": "..." or null, "token_expires_at": N or null}`. `sign_in` is the option
/// that signs in (`client_secret`, `client_certificate_path`, `client_assertion`,
/// `assertion_callback`, `managed_identity`, `environment`, `access_token`); with `environment`,
/// `proof` says which the environment holds and the ids are the environment's. `token_expires_at`
/// is when the token in use expires, in seconds since 1970 (the library renews it by itself
/// before then); null for a bearer token given as `access_token`, whose expiry is not read. Free
/// it with `defender_string_free`.
///
/// Blocks until done. Returns `DEFENDER_STATUS_OK`, `DEFENDER_STATUS_INVALID_ARGUMENT` for a NULL
/// argument, or the statuses of `defender_client_sign_in`.
///
/// # Safety
/// `client` is NULL or live; `info_json_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_client_connection_info(
    client: *const DefenderClient,
    info_json_out: *mut *mut c_char,
) -> DefenderStatus {
    boundary("defender_client_connection_info", || {
        let client = unsafe { client_ref(client) }?;
        required_out(info_json_out, "info_json_out")?;
        let info = client.run("defender_client_connection_info", None, |session, reporter| async move {
            session.tokens.token(&session.sign_in_http, &session.settings, &reporter).await?;
            session.tokens.describe(&session.settings).await
        })?;
        let json =
            serde_json::to_string(&info).map_err(|err| Error::internal(format!("describing the connection: {err}")))?;
        unsafe { write_string(info_json_out, json) }
    })
}

/// Writes to `*audience_out` the URL that a client assertion for this client must name as its
/// `aud` claim: the token endpoint `{authority}/{tenant_id}/oauth2/v2.0/token`, from the options
/// `tenant_id`, `cloud` and `authority_url` as they are now. For callers that sign assertions
/// themselves (with a key that never leaves a certificate store) and hand them over with the
/// option `client_assertion`. Free it with `defender_string_free`.
///
/// Returns `DEFENDER_STATUS_OK`, or `DEFENDER_STATUS_INVALID_ARGUMENT` for a NULL argument or
/// when `tenant_id` is not set.
///
/// # Safety
/// `client` is NULL or live; `audience_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_client_assertion_audience(
    client: *const DefenderClient,
    audience_out: *mut *mut c_char,
) -> DefenderStatus {
    boundary("defender_client_assertion_audience", || {
        let client = unsafe { client_ref(client) }?;
        required_out(audience_out, "audience_out")?;
        let audience = crate::auth::assertion_audience(&client.client.settings())?;
        unsafe { write_string(audience_out, audience) }
    })
}

/// Registers a log callback for every later call on this client (NULL `callback` removes it).
/// `user_data` is passed back to it as it is.
///
/// Returns `DEFENDER_STATUS_OK`, or `DEFENDER_STATUS_INVALID_ARGUMENT` for a NULL client.
///
/// # Safety
/// `client` is NULL or live; `callback` stays callable, and `user_data` valid, while calls run.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_client_set_log_callback(
    client: *mut DefenderClient,
    callback: DefenderLogCallback,
    user_data: *mut c_void,
) -> DefenderStatus {
    boundary("defender_client_set_log_callback", || {
        let client = unsafe { client_ref(client) }?;
        client.callbacks.write().unwrap_or_else(|e| e.into_inner()).log =
            callback.map(|callback| Sink { callback, user_data });
        Ok(())
    })
}

/// Registers a phase callback for every later call on this client (NULL `callback` removes it):
/// see `DefenderPhaseCallback`. `user_data` is passed back to it as it is.
///
/// Returns `DEFENDER_STATUS_OK`, or `DEFENDER_STATUS_INVALID_ARGUMENT` for a NULL client.
///
/// # Safety
/// `client` is NULL or live; `callback` stays callable, and `user_data` valid, while calls run.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_client_set_phase_callback(
    client: *mut DefenderClient,
    callback: DefenderPhaseCallback,
    user_data: *mut c_void,
) -> DefenderStatus {
    boundary("defender_client_set_phase_callback", || {
        let client = unsafe { client_ref(client) }?;
        client.callbacks.write().unwrap_or_else(|e| e.into_inner()).phase =
            callback.map(|callback| Sink { callback, user_data });
        Ok(())
    })
}

/// Makes the client sign in with client assertions that `callback` signs (see
/// `DefenderAssertionCallback`), with the options `tenant_id` and `client_id`: the way to sign
/// in with a key that never leaves a certificate store, also in calls that outlive one assertion
/// (the token is renewed with a fresh one). It counts as the client's one way to sign in, like
/// `client_secret`. NULL `callback` removes it. `user_data` is passed back to it as it is.
///
/// Replacing the callback keeps the cached token. Returns `DEFENDER_STATUS_OK`, or
/// `DEFENDER_STATUS_INVALID_ARGUMENT` for a NULL client.
///
/// # Safety
/// `client` is NULL or live; `callback` stays callable, and `user_data` valid, while calls run.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_client_set_assertion_callback(
    client: *mut DefenderClient,
    callback: DefenderAssertionCallback,
    user_data: *mut c_void,
) -> DefenderStatus {
    boundary("defender_client_set_assertion_callback", || {
        let client = unsafe { client_ref(client) }?;
        client.callbacks.write().unwrap_or_else(|e| e.into_inner()).assertion =
            callback.map(|callback| Sink { callback, user_data });
        client.client.set_assertion_callback(callback.is_some());
        Ok(())
    })
}

/// Cancels every call running on this client: each returns `DEFENDER_STATUS_CANCELLED` promptly,
/// leaving no partial file. Calls started afterwards run normally.
///
/// May be called from any thread, including from inside a progress or log callback.
/// Returns `DEFENDER_STATUS_OK`, or `DEFENDER_STATUS_INVALID_ARGUMENT` for a NULL client.
///
/// # Safety
/// `client` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_client_cancel(client: *const DefenderClient) -> DefenderStatus {
    boundary("defender_client_cancel", || {
        unsafe { client_ref(client) }?.client.cancel();
        Ok(())
    })
}
