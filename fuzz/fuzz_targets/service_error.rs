//! Fuzzes the API's error bodies, as they become an error message.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| defender::fuzzing::service_error(data));
