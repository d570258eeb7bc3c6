//! Structure-aware: the input's body (everything but the 4-byte CRC
//! trailer) gets its CRC recomputed, so every mutation the fuzzer makes to
//! a real file's fields reaches the decoder and the plan instead of dying
//! at the checksum.
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let body = &data[..data.len() - 4];
    let mut file = body.to_vec();
    file.extend_from_slice(&tinygen_runtime::crc32(body).to_le_bytes());
    common::exercise(&file);
});
