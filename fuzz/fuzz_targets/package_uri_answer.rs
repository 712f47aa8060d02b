//! Fuzzes getPackageUri's answer: `{"value": "<link>"}`, the link maybe in literal quotes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| defender::fuzzing::package_uri_answer(data));
