//! Fuzzes a managed identity endpoint's answers, success and error.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| defender::fuzzing::managed_identity_answer(data));
