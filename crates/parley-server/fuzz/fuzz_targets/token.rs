//! Access and user tokens as the server reads them from `Authorization` and
//! the `parley` cookie: any bytes are refused or verified, never a panic, and
//! nothing unsigned is ever accepted.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use parley_server::tokens::{Kind, TokenKeys};

fn keys() -> &'static TokenKeys {
    static KEYS: OnceLock<TokenKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        // One directory for every run: the keys are made once and reused.
        let dir = std::env::temp_dir().join("parley-fuzz-token-keys");
        TokenKeys::load_or_create(&dir).expect("signing keys in a temporary directory")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for kind in [Kind::Access, Kind::User] {
        assert!(
            keys().verify(text, kind, 0).is_err(),
            "a token not signed by these keys was accepted"
        );
    }
});
