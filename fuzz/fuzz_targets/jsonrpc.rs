#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shadowcat::fuzzing::jsonrpc(data));
