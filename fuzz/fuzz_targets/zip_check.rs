//! Fuzzes the check that a download is a readable ZIP.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| defender::fuzzing::zip_check(data));
