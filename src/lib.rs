//! `defender`: collect and download Microsoft Defender for Endpoint investigation packages.
//!
//! The product is the C ABI in [`ffi`] (header `include/defender.h`), used from C, C# and the
//! PowerShell module. Behind it:
//! - [`client`]: options, connection pool, token cache and cancellation shared by a client's calls;
//! - [`runtime`]: the process-wide tokio runtime, with callbacks pumped on the caller's thread;
//! - [`auth`]: sign-in; [`service`]: the Defender API; [`download`]: the download engine;
//! - [`config`], [`cloud`], [`error`], [`redact`], [`http`]: the plumbing they share.

pub mod auth;
pub mod client;
pub mod cloud;
pub mod config;
pub mod download;
pub mod error;
pub mod ffi;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod redact;
pub mod retry;
pub mod runtime;
pub mod service;

pub use error::{DefenderStatus, Error, Result};
pub use ffi::action::*;
pub use ffi::client::*;
pub use ffi::machine::*;
pub use ffi::package::*;
pub use ffi::{defender_last_error_message, defender_status_name, defender_string_free, defender_version};
pub use runtime::DefenderLogLevel;
