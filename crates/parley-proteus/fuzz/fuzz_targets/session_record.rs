//! `Session::deserialize` on arbitrary bytes: never panics; a decoded session
//! re-encodes to the same bytes' meaning and can encrypt.
#![no_main]
use libfuzzer_sys::fuzz_target;
use parley_proteus::Session;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut session) = Session::deserialize(data) {
        let bytes = session.serialize();
        let again = Session::deserialize(&bytes).expect("re-encoding decodes");
        assert_eq!(again.serialize(), bytes);
        let _ = session.encrypt(b"fuzz");
    }
});
