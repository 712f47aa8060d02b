//! Fuzzes the JSON result the batch builds for an item, from service text.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| defender::fuzzing::batch_result(data));
