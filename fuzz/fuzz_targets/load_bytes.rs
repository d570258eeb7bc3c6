//! Arbitrary bytes as a model file (most fail the magic, version or CRC
//! checks: the seed corpus of real files gets the fuzzer past them).
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::exercise(data));
