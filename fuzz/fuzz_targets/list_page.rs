//! Fuzzes a page of a list (`GET /api/machines`, `GET /api/machineactions`); the first byte is `$top`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| defender::fuzzing::list_page(data));
