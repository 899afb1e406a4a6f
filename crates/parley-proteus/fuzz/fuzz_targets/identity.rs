//! `IdentityKeyPair::deserialize` on arbitrary bytes: never panics; round trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use parley_proteus::IdentityKeyPair;

fuzz_target!(|data: &[u8]| {
    if let Ok(id) = IdentityKeyPair::deserialize(data) {
        let again = IdentityKeyPair::deserialize(&id.serialize()).expect("re-encoding decodes");
        assert_eq!(again.public_key(), id.public_key());
    }
});
