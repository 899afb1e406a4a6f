//! `PreKeyBundle::deserialize` on arbitrary bytes: never panics, and what decodes
//! re-encodes to something that decodes to the same bundle.
#![no_main]
use libfuzzer_sys::fuzz_target;
use parley_proteus::PreKeyBundle;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = PreKeyBundle::deserialize(data) {
        let _ = bundle.verify();
        let again = PreKeyBundle::deserialize(&bundle.serialize()).expect("re-encoding decodes");
        assert_eq!(again, bundle);
    }
});
