//! Fuzzes a `Retry-After` header, and the retry policy's verdict on it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| defender::fuzzing::retry_after(data));
