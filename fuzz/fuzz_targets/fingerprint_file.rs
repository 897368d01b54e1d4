//! Arbitrary bytes as a fingerprint file (see `common/mod.rs`).
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::fingerprint_file(data));
