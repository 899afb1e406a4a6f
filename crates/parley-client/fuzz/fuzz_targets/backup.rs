//! `backup::open` on arbitrary bytes: never panics; another user's file is
//! refused before the key derivation.
#![no_main]
use libfuzzer_sys::fuzz_target;
use parley_api::UserId;

fuzz_target!(|data: &[u8]| {
    let _ = parley_client::backup::open(data, "fuzz password", UserId::default());
});
