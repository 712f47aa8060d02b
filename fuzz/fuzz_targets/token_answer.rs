//! Fuzzes the token endpoint's answers, success and error.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| defender::fuzzing::token_answer(data));
