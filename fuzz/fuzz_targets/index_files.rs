//! Arbitrary bytes as one file of an index (see `common/mod.rs`).
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::index_files(data));
