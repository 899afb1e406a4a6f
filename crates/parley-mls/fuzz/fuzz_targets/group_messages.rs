//! What a device posts to a group, as the Delivery Service reads it: commit
//! bundles, messages and first group infos are refused or read without a
//! panic, and a bundle that decodes encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_mls::CipherSuite;
use parley_mls::delivery::{CommitBundle, MessageIn, TrackedGroup, epoch_of, group_id_of};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(bundle) = CommitBundle::decode(bytes) {
        assert_eq!(bundle.encode(), bytes);
        let _ = group_id_of(&bundle.commit);
        let _ = epoch_of(&bundle.commit);
    }
    let _ = MessageIn(bytes).classify();
    if let Ok(group) = TrackedGroup::start(bytes, &[7; 16], CipherSuite::DEFAULT, 1_800_000_000) {
        assert!(group.members().is_ok());
    }
});
