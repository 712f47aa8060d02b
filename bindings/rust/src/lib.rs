//! `defender-native`: a safe Rust caller of the library's C ABI. Every call goes through the
//! exported functions of `include/defender.h`, exactly as a C program makes it: strings in as
//! NUL-terminated UTF-8, results out as JSON text freed with `defender_string_free`, errors read
//! back with `defender_last_error_message`. It checks that contract as it goes (a message after
//! every failure and none after success) and panics when the library breaks it.
//!
//! The command line (`cli/`), the Rust integration tests (`tests/`) and the benchmark (`bench/`)
//! reach the library through it.

use std::ffi::{CStr, CString, c_char, c_void};
use std::fmt;
use std::path::Path;
use std::ptr;

use defender::*;
use serde_json::Value;

/// The ABI's types that this binding's calls take and give.
pub use defender::{
    DefenderAssertionCallback, DefenderClient, DefenderLogCallback, DefenderLogLevel, DefenderPhase,
    DefenderPhaseCallback, DefenderPhaseEvent, DefenderStatus,
};

/// A failed call: its status and the thread's last error message.
#[derive(Debug, PartialEq)]
pub struct Failure {
    pub status: DefenderStatus,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?})", self.message, self.status)
    }
}

impl std::error::Error for Failure {}

/// A status's name (`"NOT_READY"`), from the library.
pub fn status_name(status: i32) -> &'static str {
    unsafe { CStr::from_ptr(defender_status_name(status)) }.to_str().expect("names are ASCII")
}

/// The library's options, each key with its one line (what it does, takes and its default), in
/// the library's order: `defender_option_name` and `defender_option_doc` up to their NULL.
pub fn options() -> Vec<(&'static str, &'static str)> {
    let text = |ptr: *const c_char| {
        (!ptr.is_null()).then(|| unsafe { CStr::from_ptr(ptr) }.to_str().expect("option texts are UTF-8"))
    };
    (0..).map_while(|i| Some((text(defender_option_name(i))?, text(defender_option_doc(i))?))).collect()
}

/// The calling thread's last error message, read the way the header documents.
pub fn last_error() -> String {
    unsafe {
        let len = defender_last_error_message(ptr::null_mut(), 0);
        let mut buffer = vec![0u8; len + 1];
        let again = defender_last_error_message(buffer.as_mut_ptr().cast(), buffer.len());
        assert_eq!(len, again, "the message length changed between two reads");
        CStr::from_bytes_with_nul(&buffer).unwrap().to_str().expect("messages are UTF-8").to_owned()
    }
}

fn check(status: DefenderStatus) -> Result<(), Failure> {
    let message = last_error();
    if status == DefenderStatus::Ok {
        assert!(message.is_empty(), "a message after success: {message}");
        Ok(())
    } else {
        assert!(!message.is_empty(), "no message after {status:?}");
        Err(Failure { status, message })
    }
}

/// Takes a string the library returned, and frees it the way the header says.
unsafe fn take_string(s: *mut c_char) -> String {
    assert!(!s.is_null());
    let text = unsafe { CStr::from_ptr(s) }.to_str().unwrap().to_owned();
    unsafe { defender_string_free(s) };
    text
}

fn c(text: &str) -> CString {
    CString::new(text).unwrap()
}

/// A `DefenderClient`, freed on drop.
pub struct Client(*mut DefenderClient);

// SAFETY: the C ABI allows one client to be used from many threads at once.
unsafe impl Send for Client {}
unsafe impl Sync for Client {}

impl Drop for Client {
    fn drop(&mut self) {
        unsafe { defender_client_free(self.0) }
    }
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    pub fn new() -> Self {
        let mut client = ptr::null_mut();
        check(unsafe { defender_client_new(&mut client) }).unwrap();
        Self(client)
    }

    pub fn raw(&self) -> *mut DefenderClient {
        self.0
    }

    pub fn set(&self, key: &str, value: Option<&str>) -> Result<(), Failure> {
        let key = c(key);
        let value = value.map(c);
        check(unsafe { defender_client_set(self.0, key.as_ptr(), value.as_ref().map_or(ptr::null(), |v| v.as_ptr())) })
    }

    /// The `aud` a client assertion for this client must carry.
    pub fn assertion_audience(&self) -> Result<String, Failure> {
        let mut audience = ptr::null_mut();
        check(unsafe { defender_client_assertion_audience(self.0, &mut audience) })?;
        Ok(unsafe { take_string(audience) })
    }

    /// Sends the library's log lines to `callback` (None: nowhere).
    pub fn set_log_callback(&self, callback: DefenderLogCallback) {
        check(unsafe { defender_client_set_log_callback(self.0, callback, ptr::null_mut()) }).unwrap();
    }

    /// A client for calls of their own: this one's options and callbacks as they are now, its
    /// token and connection pool shared (`defender_client_clone`).
    pub fn try_clone(&self) -> Result<Client, Failure> {
        let mut clone = ptr::null_mut();
        check(unsafe { defender_client_clone(self.0, &mut clone) })?;
        Ok(Self(clone))
    }

    /// Reports every later call's phases to `callback` with `user_data` (None: nowhere).
    ///
    /// # Safety
    /// `user_data` stays valid for `callback` while calls on this client run.
    pub unsafe fn set_phase_callback(&self, callback: DefenderPhaseCallback, user_data: *mut c_void) {
        check(unsafe { defender_client_set_phase_callback(self.0, callback, user_data) }).unwrap();
    }

    /// Signs in with client assertions from `callback` with `user_data` (None: not any more).
    ///
    /// # Safety
    /// `user_data` stays valid for `callback` while calls on this client run.
    pub unsafe fn set_assertion_callback(&self, callback: DefenderAssertionCallback, user_data: *mut c_void) {
        check(unsafe { defender_client_set_assertion_callback(self.0, callback, user_data) }).unwrap();
    }

    pub fn sign_in(&self) -> Result<(), Failure> {
        check(unsafe { defender_client_sign_in(self.0) })
    }

    /// What the client is connected to (`defender_client_connection_info`); signs in first.
    pub fn connection_info(&self) -> Result<Value, Failure> {
        let mut info = ptr::null_mut();
        check(unsafe { defender_client_connection_info(self.0, &mut info) })?;
        Ok(serde_json::from_str(&unsafe { take_string(info) }).unwrap())
    }

    pub fn cancel(&self) {
        check(unsafe { defender_client_cancel(self.0) }).unwrap();
    }

    pub fn package_uri(&self, action_id: &str) -> Result<String, Failure> {
        let id = c(action_id);
        let mut uri = ptr::null_mut();
        check(unsafe { defender_get_package_uri(self.0, id.as_ptr(), &mut uri) })?;
        Ok(unsafe { take_string(uri) })
    }

    pub fn machine_action(&self, action_id: &str) -> Result<Value, Failure> {
        let id = c(action_id);
        let mut json = ptr::null_mut();
        check(unsafe { defender_get_machine_action(self.0, id.as_ptr(), &mut json) })?;
        Ok(serde_json::from_str(&unsafe { take_string(json) }).unwrap())
    }

    pub fn collect(&self, machine_id: &str, comment: Option<&str>) -> Result<Value, Failure> {
        self.with_comment(defender_collect_investigation_package, machine_id, comment)
    }

    pub fn wait(&self, action_id: &str) -> Result<Value, Failure> {
        let id = c(action_id);
        let mut json = ptr::null_mut();
        check(unsafe { defender_wait_for_action(self.0, id.as_ptr(), &mut json) })?;
        Ok(serde_json::from_str(&unsafe { take_string(json) }).unwrap())
    }

    /// A device by id or computer name.
    pub fn machine(&self, id_or_name: &str) -> Result<Value, Failure> {
        let id_or_name = c(id_or_name);
        let mut json = ptr::null_mut();
        check(unsafe { defender_get_machine(self.0, id_or_name.as_ptr(), &mut json) })?;
        Ok(serde_json::from_str(&unsafe { take_string(json) }).unwrap())
    }

    /// Devices passing `filter` (OData, verbatim), at most `max_items` (0: all).
    pub fn machines(&self, filter: Option<&str>, max_items: u32) -> Result<Vec<Value>, Failure> {
        self.list(defender_list_machines, filter, max_items)
    }

    /// Machine actions passing `filter` (OData, verbatim), newest first, at most `max_items` (0: all).
    pub fn machine_actions(&self, filter: Option<&str>, max_items: u32) -> Result<Vec<Value>, Failure> {
        self.list(defender_list_machine_actions, filter, max_items)
    }

    fn list(
        &self,
        function: unsafe extern "C" fn(*const DefenderClient, *const c_char, u32, *mut *mut c_char) -> DefenderStatus,
        filter: Option<&str>,
        max_items: u32,
    ) -> Result<Vec<Value>, Failure> {
        let filter = filter.map(c);
        let mut json = ptr::null_mut();
        check(unsafe { function(self.0, filter.as_ref().map_or(ptr::null(), |f| f.as_ptr()), max_items, &mut json) })?;
        Ok(serde_json::from_str(&unsafe { take_string(json) }).unwrap())
    }

    pub fn cancel_action(&self, action_id: &str, comment: Option<&str>) -> Result<Value, Failure> {
        self.with_comment(defender_cancel_machine_action, action_id, comment)
    }

    /// A call on one id with an optional comment (NULL: the library's default), answering JSON.
    fn with_comment(
        &self,
        function: unsafe extern "C" fn(
            *const DefenderClient,
            *const c_char,
            *const c_char,
            *mut *mut c_char,
        ) -> DefenderStatus,
        id: &str,
        comment: Option<&str>,
    ) -> Result<Value, Failure> {
        let id = c(id);
        let comment = comment.map(c);
        let mut json = ptr::null_mut();
        check(unsafe {
            function(self.0, id.as_ptr(), comment.as_ref().map_or(ptr::null(), |c| c.as_ptr()), &mut json)
        })?;
        Ok(serde_json::from_str(&unsafe { take_string(json) }).unwrap())
    }

    /// Downloads to `destination`; `progress` gets (done, total) and returns true to cancel.
    pub fn download(
        &self,
        action_id: &str,
        destination: &Path,
        progress: Option<&mut dyn FnMut(u64, u64) -> bool>,
    ) -> Result<Value, Failure> {
        unsafe extern "C" fn trampoline(user_data: *mut c_void, done: u64, total: u64) -> i32 {
            let progress = unsafe { &mut *user_data.cast::<&mut dyn FnMut(u64, u64) -> bool>() };
            i32::from(progress(done, total))
        }
        let id = c(action_id);
        let destination = c(destination.to_str().unwrap());
        let mut result = ptr::null_mut();
        let status = match progress {
            Some(mut progress) => unsafe {
                let user_data: *mut &mut dyn FnMut(u64, u64) -> bool = &mut progress;
                defender_download_package(
                    self.0,
                    id.as_ptr(),
                    destination.as_ptr(),
                    Some(trampoline),
                    user_data.cast(),
                    &mut result,
                )
            },
            None => unsafe {
                defender_download_package(self.0, id.as_ptr(), destination.as_ptr(), None, ptr::null_mut(), &mut result)
            },
        };
        check(status)?;
        Ok(serde_json::from_str(&unsafe { take_string(result) }).unwrap())
    }
}

/// What the caller of `Client::download_many` hears while the batch runs.
#[derive(Default)]
pub struct BatchCallbacks<'a> {
    /// (index, bytes done, bytes total); returns true to cancel the batch.
    pub progress: Option<&'a mut dyn FnMut(usize, u64, u64) -> bool>,
    /// (index, status, the item's result).
    pub item_done: Option<&'a mut dyn FnMut(usize, DefenderStatus, Value)>,
}

impl Client {
    /// Downloads the packages of `action_ids` into `folder`; returns one result per item, in order.
    pub fn download_many(
        &self,
        action_ids: &[&str],
        folder: &Path,
        callbacks: BatchCallbacks<'_>,
    ) -> Result<Vec<Value>, Failure> {
        let ids: Vec<CString> = action_ids.iter().map(|id| c(id)).collect();
        let id_pointers: Vec<*const c_char> = ids.iter().map(|id| id.as_ptr()).collect();
        let folder = c(folder.to_str().unwrap());
        self.batch(callbacks, |progress, item_done, user_data, results| unsafe {
            defender_download_packages(
                self.0,
                id_pointers.as_ptr(),
                id_pointers.len(),
                folder.as_ptr(),
                progress,
                item_done,
                user_data,
                results,
            )
        })
    }

    /// Brings back the files of `requests_json` (`[{"machine": ..., "path": ...}]`) into
    /// `folder`, each in a live response session; returns one result per item, in order.
    pub fn get_files(
        &self,
        requests_json: &str,
        folder: &Path,
        callbacks: BatchCallbacks<'_>,
    ) -> Result<Vec<Value>, Failure> {
        let requests = c(requests_json);
        let folder = c(folder.to_str().unwrap());
        self.batch(callbacks, |progress, item_done, user_data, results| unsafe {
            defender_get_files(self.0, requests.as_ptr(), folder.as_ptr(), progress, item_done, user_data, results)
        })
    }

    /// A batch call with `callbacks` behind the C callbacks, answering its results' array.
    fn batch(
        &self,
        mut callbacks: BatchCallbacks<'_>,
        call: impl FnOnce(
            DefenderBatchProgressCallback,
            DefenderBatchItemCallback,
            *mut c_void,
            *mut *mut c_char,
        ) -> DefenderStatus,
    ) -> Result<Vec<Value>, Failure> {
        unsafe extern "C" fn on_progress(user_data: *mut c_void, index: usize, done: u64, total: u64) -> i32 {
            let callbacks = unsafe { &mut *user_data.cast::<BatchCallbacks<'_>>() };
            let progress = callbacks.progress.as_mut().expect("registered only with a progress callback");
            i32::from(progress(index, done, total))
        }
        unsafe extern "C" fn on_item(
            user_data: *mut c_void,
            index: usize,
            status: DefenderStatus,
            json: *const c_char,
        ) {
            let callbacks = unsafe { &mut *user_data.cast::<BatchCallbacks<'_>>() };
            let item_done = callbacks.item_done.as_mut().expect("registered only with an item callback");
            let json = unsafe { CStr::from_ptr(json) }.to_str().expect("item results are UTF-8");
            item_done(index, status, serde_json::from_str(json).expect("item results are JSON"));
        }
        let progress = callbacks.progress.is_some().then_some(on_progress as _);
        let item_done = callbacks.item_done.is_some().then_some(on_item as _);
        let user_data: *mut BatchCallbacks<'_> = &mut callbacks;
        let mut results = ptr::null_mut();
        check(call(progress, item_done, user_data.cast(), &mut results))?;
        Ok(serde_json::from_str(&unsafe { take_string(results) }).unwrap())
    }
}

/// Live Response: sessions, their results, the library.
impl Client {
    /// Starts a live response session of `commands_json` on a device (and, with
    /// `wait_timeout_ms`, waits for it to end); answers its machine action.
    pub fn run_live_response(
        &self,
        machine_id_or_name: &str,
        commands_json: &str,
        comment: Option<&str>,
    ) -> Result<Value, Failure> {
        let (machine, commands, comment) = (c(machine_id_or_name), c(commands_json), comment.map(c));
        let mut json = ptr::null_mut();
        check(unsafe {
            defender_run_live_response(
                self.0,
                machine.as_ptr(),
                commands.as_ptr(),
                comment.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
                &mut json,
            )
        })?;
        Ok(serde_json::from_str(&unsafe { take_string(json) }).unwrap())
    }

    /// A fresh link to command `index`'s result of session `action_id`.
    pub fn live_response_result_uri(&self, action_id: &str, index: u32) -> Result<String, Failure> {
        let id = c(action_id);
        let mut uri = ptr::null_mut();
        check(unsafe { defender_get_live_response_result_uri(self.0, id.as_ptr(), index, &mut uri) })?;
        Ok(unsafe { take_string(uri) })
    }

    /// Downloads command `index`'s result of session `action_id` to `destination`; `progress`
    /// gets (done, total) and returns true to cancel.
    pub fn download_live_response_result(
        &self,
        action_id: &str,
        index: u32,
        destination: &Path,
        progress: Option<&mut dyn FnMut(u64, u64) -> bool>,
    ) -> Result<Value, Failure> {
        unsafe extern "C" fn trampoline(user_data: *mut c_void, done: u64, total: u64) -> i32 {
            let progress = unsafe { &mut *user_data.cast::<&mut dyn FnMut(u64, u64) -> bool>() };
            i32::from(progress(done, total))
        }
        let id = c(action_id);
        let destination = c(destination.to_str().unwrap());
        let mut result = ptr::null_mut();
        let status = match progress {
            Some(mut progress) => unsafe {
                let user_data: *mut &mut dyn FnMut(u64, u64) -> bool = &mut progress;
                defender_download_live_response_result(
                    self.0,
                    id.as_ptr(),
                    index,
                    destination.as_ptr(),
                    Some(trampoline),
                    user_data.cast(),
                    &mut result,
                )
            },
            None => unsafe {
                defender_download_live_response_result(
                    self.0,
                    id.as_ptr(),
                    index,
                    destination.as_ptr(),
                    None,
                    ptr::null_mut(),
                    &mut result,
                )
            },
        };
        check(status)?;
        Ok(serde_json::from_str(&unsafe { take_string(result) }).unwrap())
    }

    /// Puts the file at `path` in the live response library; answers the library file.
    pub fn upload_library_file(
        &self,
        path: &Path,
        description: &str,
        parameters_description: Option<&str>,
        has_parameters: bool,
        override_if_exists: bool,
    ) -> Result<Value, Failure> {
        let (path, description) = (c(path.to_str().unwrap()), c(description));
        let parameters = parameters_description.map(c);
        let mut json = ptr::null_mut();
        check(unsafe {
            defender_upload_library_file(
                self.0,
                path.as_ptr(),
                description.as_ptr(),
                parameters.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
                i32::from(has_parameters),
                i32::from(override_if_exists),
                &mut json,
            )
        })?;
        Ok(serde_json::from_str(&unsafe { take_string(json) }).unwrap())
    }

    /// The live response library's files, as the service describes them.
    pub fn library_files(&self) -> Result<Vec<Value>, Failure> {
        let mut json = ptr::null_mut();
        check(unsafe { defender_list_library_files(self.0, &mut json) })?;
        Ok(serde_json::from_str(&unsafe { take_string(json) }).unwrap())
    }

    /// Removes `file_name` from the live response library.
    pub fn delete_library_file(&self, file_name: &str) -> Result<(), Failure> {
        let name = c(file_name);
        check(unsafe { defender_delete_library_file(self.0, name.as_ptr()) })
    }
}
