//! Arbitrary bytes through the decoder and the front end (see
//! `common/mod.rs`).
//!
//! The library catches panics inside third-party decoders (symphonia,
//! opus-pure) and reports them as damaged data; this target lets those
//! unwind to that guard (and lists each place once on stderr), while a
//! panic anywhere else aborts as a crash.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::sync::{Mutex, Once};

use libfuzzer_sys::fuzz_target;

static HOOK: Once = Once::new();
static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn third_party(file: &str) -> bool {
    ["symphonia", "opus-pure", "opus_pure"]
        .iter()
        .any(|c| file.contains(c))
}

fn install_hook() {
    HOOK.call_once(|| {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| match info.location() {
            Some(loc) if third_party(loc.file()) => {
                let place = format!("{}:{}", loc.file(), loc.line());
                let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
                if seen.get_or_insert_with(HashSet::new).insert(place.clone()) {
                    eprintln!("refrain-fuzz: caught third-party panic at {place}: {info}");
                }
            }
            _ => abort(info),
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    install_hook();
    common::decode(data);
});
