#![no_main]
//! See `lantern_flagger::fuzzing::flag` for the property this checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| lantern_flagger::fuzzing::flag(data));
