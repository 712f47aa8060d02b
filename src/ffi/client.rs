//! `DefenderClient`: creating, configuring, cancelling and freeing it.

use std::ffi::{CString, c_char, c_void};
use std::future::Future;
use std::sync::{Arc, RwLock};

use super::{boundary, optional_str, required_out, required_str, write_string};
use crate::client::{Client, Session};
use crate::error::{DefenderStatus, Error, Result};
use crate::runtime::{Callbacks, DefenderLogLevel, ItemDoneFn, LogFn, ProgressFn, Reporter};

/// A connection to the Defender for Endpoint API: options, sign-in and a connection pool.
///
/// Opaque. Create it with `defender_client_new`, configure it with `defender_client_set`, free
/// it with `defender_client_free`. One client may be used from many threads at once; it caches
/// its access token, so reuse one client rather than creating one per call.
pub struct DefenderClient {
    client: Client,
    log: RwLock<Option<LogSink>>,
}

/// Receives the library's log lines: waits, retries, throttling, each request's status. Never a secret.
///
/// Called only on the thread that made the call, and only while that call runs. `message` is
/// NUL-terminated UTF-8, valid only during the callback. The callback must not call the library,
/// except `defender_client_cancel`.
pub type DefenderLogCallback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, level: DefenderLogLevel, message: *const c_char)>;

#[derive(Clone, Copy)]
struct LogSink {
    callback: unsafe extern "C" fn(*mut c_void, DefenderLogLevel, *const c_char),
    user_data: *mut c_void,
}

// SAFETY: the sink is only ever called on the thread that makes a call (see runtime::run); the
// caller who registered it vouches for `user_data` on every thread that calls the library.
unsafe impl Send for LogSink {}
unsafe impl Sync for LogSink {}

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
        let sink = *self.log.read().unwrap_or_else(|e| e.into_inner());
        let mut log = sink.map(|sink| {
            move |level: DefenderLogLevel, line: &str| {
                let line = CString::new(line.replace('\0', " ")).unwrap_or_default();
                // SAFETY: the caller registered this callback for this purpose; the string lives
                // until it returns.
                unsafe { (sink.callback)(sink.user_data, level, line.as_ptr()) }
            }
        });
        let callbacks = Callbacks {
            // Shortens the trait objects' lifetimes to this call's, like the log callback's.
            progress: callbacks.progress.map(|progress| progress as ProgressFn<'_>),
            item_done: callbacks.item_done.map(|item_done| item_done as ItemDoneFn<'_>),
            log: log.as_mut().map(|log| log as LogFn<'_>),
        };
        self.client.call(name, callbacks, work)
    }
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
        let client = Box::new(DefenderClient { client: Client::new(), log: RwLock::new(None) });
        // SAFETY: checked non-NULL; the caller guarantees it is writable.
        unsafe { client_out.write(Box::into_raw(client)) };
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
/// Keys (see the README for the full table): `base_url`, `cloud`, `authority_url`, `scope`,
/// `tenant_id`, `client_id`, `client_secret`, `client_certificate_path`, `client_assertion`,
/// `access_token`, `managed_identity`, `managed_identity_endpoint`, `environment`, `timeout_ms`,
/// `connect_timeout_ms`, `wait_timeout_ms`, `overwrite`, `ca_file`, `user_agent`, `rate_limit`,
/// `clock_scale`, `max_concurrent_downloads`.
///
/// Sign-in: exactly one of `client_secret`, `client_certificate_path` or `client_assertion`
/// (each with `tenant_id` and `client_id`), `managed_identity`, `environment=true` or
/// `access_token`; otherwise the next call fails with `DEFENDER_STATUS_INVALID_ARGUMENT` naming
/// the keys. Replacing the secret, certificate path or assertion of the same app keeps the cached
/// token: a caller that signs its own assertions can set a fresh one before every call.
///
/// Returns `DEFENDER_STATUS_OK`, or `DEFENDER_STATUS_INVALID_ARGUMENT` for a NULL client or key,
/// an unknown key or a malformed value (the message names the key and what it accepts, and
/// never repeats a secret value).
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
        *client.log.write().unwrap_or_else(|e| e.into_inner()) =
            callback.map(|callback| LogSink { callback, user_data });
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
