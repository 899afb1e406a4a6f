//! `Envelope::decode` on arbitrary bytes: never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = parley_proteus::Envelope::decode(data) {
        let _ = (
            env.session_tag(),
            env.identity_key(),
            env.is_prekey_message(),
        );
    }
});
