//! Drives the simulator over real loopback HTTP, as the library and the other languages' tests
//! do. One test binary (modules below) keeps linking time down.

mod api;
mod binary;
#[path = "../fixtures/certificate.rs"]
mod certificate;
mod common;
mod control;
mod download;
mod fleet;
mod live_response;
mod sign_in;
