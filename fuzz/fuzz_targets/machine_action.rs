//! Fuzzes a MachineAction as `GET /api/machineactions/{id}` answers it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| defender::fuzzing::machine_action(data));
