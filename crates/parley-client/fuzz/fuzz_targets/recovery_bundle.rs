//! `RootKey::open_recovery_bundle` (a blob from the server) on arbitrary bytes:
//! never panics, and refuses key-derivation settings other than its own before
//! deriving a key.
#![no_main]
use libfuzzer_sys::fuzz_target;
use parley_client::trust::RootKey;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let _ = rt.block_on(RootKey::open_recovery_bundle(data, "fuzz"));
});
