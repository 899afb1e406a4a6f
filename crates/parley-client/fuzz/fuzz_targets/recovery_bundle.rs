//! `RootKey::open_recovery_bundle` (a blob from the server) on arbitrary bytes:
//! never panics, and refuses costs outside its bounds before deriving a key.
#![no_main]
use libfuzzer_sys::fuzz_target;
use parley_client::trust::RootKey;

fuzz_target!(|data: &[u8]| {
    let _ = RootKey::open_recovery_bundle(data, "fuzz");
});
