//! `Envelope::parse` (message content from a peer) on arbitrary bytes: never
//! panics, and what it accepts re-encodes to the same content.
#![no_main]
use libfuzzer_sys::fuzz_target;
use parley_client::content::Envelope;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::parse(data) {
        let again = Envelope::parse(&envelope.to_bytes()).expect("re-encoding parses");
        assert_eq!(again, envelope);
    }
});
