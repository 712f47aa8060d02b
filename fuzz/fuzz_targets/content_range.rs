//! Fuzzes a `Content-Range` header of a resumed download.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| defender::fuzzing::content_range(data));
