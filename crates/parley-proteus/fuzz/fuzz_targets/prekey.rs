//! `PreKey::deserialize` on arbitrary bytes: never panics; round trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use parley_proteus::PreKey;

fuzz_target!(|data: &[u8]| {
    if let Ok(prekey) = PreKey::deserialize(data) {
        let again = PreKey::deserialize(&prekey.serialize()).expect("re-encoding decodes");
        assert_eq!(again.id(), prekey.id());
        assert_eq!(again.public_key(), prekey.public_key());
    }
});
