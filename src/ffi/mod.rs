//! The C ABI. Every export goes through `boundary` (no panic crosses it, every failure leaves a
//! message for the calling thread) and takes its arguments through the checked conversions
//! below; the code behind them is ordinary safe Rust returning `Result`.

// In the order the header presents them: the client, the package, the machine actions, the
// devices, live response.
pub(crate) mod client;
pub(crate) mod package;
pub(crate) mod action;
pub(crate) mod machine;
pub(crate) mod live_response;

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::{DefenderStatus, Error, Result};

thread_local! {
    /// The message of the last failed call on this thread.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    if message.is_empty() {
        // The common case, after every successful call: no scrubbing, no allocation.
        LAST_ERROR.with(|last| {
            if !last.borrow().is_empty() {
                *last.borrow_mut() = CString::default();
            }
        });
        return;
    }
    // Printable: a NUL or an escape sequence from the service is escaped (`\u0000`, `\u001b`).
    let message = CString::new(crate::redact::for_caller(message, &[])).unwrap_or_default();
    LAST_ERROR.with(|last| *last.borrow_mut() = message);
}

/// Runs an export's body: turns `Err` into its status and message, a panic into
/// `DEFENDER_STATUS_INTERNAL`, and success into an empty message (also when a callback made a
/// refused call meanwhile).
pub(crate) fn boundary(function: &str, body: impl FnOnce() -> Result<()>) -> DefenderStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            set_last_error("");
            DefenderStatus::Ok
        }
        Ok(Err(err)) => {
            set_last_error(err.message());
            err.status()
        }
        Err(panic) => {
            let what = crate::runtime::panic_message(panic.as_ref());
            set_last_error(&format!("internal error in {function}: {what}; this is a bug, please report it"));
            DefenderStatus::Internal
        }
    }
}

/// A required string argument: not NULL, valid UTF-8.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives the call.
pub(crate) unsafe fn required_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Error::invalid_argument(format!("{name} is NULL")));
    }
    // SAFETY: non-NULL, and the caller guarantees NUL termination and lifetime.
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|err| Error::invalid_argument(format!("{name} is not valid UTF-8 (at byte {})", err.valid_up_to())))
}

/// An optional string argument: NULL is `None`; otherwise valid UTF-8.
///
/// # Safety
/// As for `required_str`.
pub(crate) unsafe fn optional_str<'a>(ptr: *const c_char, name: &str) -> Result<Option<&'a str>> {
    if ptr.is_null() { Ok(None) } else { unsafe { required_str(ptr, name) }.map(Some) }
}

/// Checks a required out-parameter before any work is done.
pub(crate) fn required_out<T>(ptr: *mut T, name: &str) -> Result<()> {
    if ptr.is_null() { Err(Error::invalid_argument(format!("{name} is NULL"))) } else { Ok(()) }
}

/// Hands `text` to the caller through `out` (when not NULL), to be freed with `defender_string_free`.
///
/// # Safety
/// `out` is NULL or valid for a write.
pub(crate) unsafe fn write_string(out: *mut *mut c_char, text: String) -> Result<()> {
    if out.is_null() {
        return Ok(());
    }
    let text = CString::new(text).map_err(|_| Error::protocol("the answer holds a NUL character"))?;
    // SAFETY: checked non-NULL; the caller guarantees it is writable.
    unsafe { out.write(text.into_raw()) };
    Ok(())
}

/// The library's version, e.g. `"0.1.0"`: a static string, never freed.
#[unsafe(no_mangle)]
pub extern "C" fn defender_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The name of status `status` without its prefix (`"NOT_READY"` for 2), or `"UNKNOWN"` for a
/// number that is not a `DefenderStatus`: a static string, never freed. Bindings use it rather
/// than copying the table. It takes the plain number, so any value is defined behaviour.
#[unsafe(no_mangle)]
pub extern "C" fn defender_status_name(status: i32) -> *const c_char {
    static NAMES: once_cell::sync::Lazy<Vec<(i32, CString)>> = once_cell::sync::Lazy::new(|| {
        DefenderStatus::ALL
            .iter()
            .map(|status| (*status as i32, CString::new(status.name()).unwrap_or_default()))
            .collect()
    });
    const UNKNOWN: &CStr = c"UNKNOWN";
    catch_unwind(|| NAMES.iter().find(|(code, _)| *code == status).map_or(UNKNOWN.as_ptr(), |(_, name)| name.as_ptr()))
        .unwrap_or(UNKNOWN.as_ptr())
}

/// Frees a string that the library returned (a link, a JSON document). NULL is fine.
/// Never pass a string from anywhere else, and never free the library's strings with `free()`.
///
/// # Safety
/// `s` is NULL or a string returned by this library and not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: the caller passes back a pointer from CString::into_raw, once.
        let _ = catch_unwind(|| drop(unsafe { CString::from_raw(s) }));
    }
}

/// Copies the calling thread's last error message into `buffer`: one sentence saying what
/// failed and, where there are any, the HTTP status, the service's error code and its correlation
/// id. It never holds a secret. It is empty after a call that succeeded.
///
/// The copy is NUL-terminated and cut to fit `buffer_len` (at a UTF-8 character boundary).
/// Returns the message's full length in bytes without the NUL, so a caller can size a buffer:
/// `n = defender_last_error_message(NULL, 0); buf = malloc(n + 1); defender_last_error_message(buf, n + 1);`
///
/// # Safety
/// `buffer` is valid for `buffer_len` bytes, or NULL with `buffer_len` 0.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn defender_last_error_message(buffer: *mut c_char, buffer_len: usize) -> usize {
    catch_unwind(|| {
        LAST_ERROR.with(|last| {
            let last = last.borrow();
            let message = last.to_bytes();
            if !buffer.is_null() && buffer_len > 0 {
                let text = std::str::from_utf8(message).unwrap_or_default();
                let mut fit = message.len().min(buffer_len - 1);
                while !text.is_char_boundary(fit) {
                    fit -= 1;
                }
                // SAFETY: the caller guarantees buffer_len bytes; fit + 1 <= buffer_len.
                unsafe {
                    std::ptr::copy_nonoverlapping(message.as_ptr(), buffer.cast::<u8>(), fit);
                    buffer.add(fit).write(0);
                }
            }
            message.len()
        })
    })
    .unwrap_or(0)
}
