#![no_main]
//! See `lantern_flagger::fuzzing::lexicon` for the property this checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| lantern_flagger::fuzzing::lexicon(data));
