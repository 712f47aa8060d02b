//! `defender`: collect and download Microsoft Defender for Endpoint investigation packages.
//!
//! The product is the C ABI in [`ffi`] (header `include/defender.h`), used from C, C# and the
//! PowerShell module. Behind it:
//! - [`client`]: options, connection pool, token cache and cancellation shared by a client's calls;
//! - [`runtime`]: the process-wide tokio runtime, with callbacks pumped on the caller's thread;
//! - [`auth`]: sign-in; [`service`]: the Defender API; [`download`]: the download engine;
//! - [`config`], [`cloud`], [`error`], [`redact`], [`http`]: the plumbing they share.

#![warn(unreachable_pub)]

mod auth;
mod client;
mod cloud;
mod config;
mod download;
mod error;
mod ffi;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod redact;
mod retry;
mod runtime;
mod service;

pub use error::DefenderStatus;
pub use ffi::action::*;
pub use ffi::client::*;
pub use ffi::live_response::*;
pub use ffi::machine::*;
pub use ffi::package::*;
pub use ffi::{defender_last_error_message, defender_status_name, defender_string_free, defender_version};
pub use runtime::DefenderLogLevel;
