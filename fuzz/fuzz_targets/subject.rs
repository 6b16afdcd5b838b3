#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shadowcat::tools::fuzzing::subject(data));
