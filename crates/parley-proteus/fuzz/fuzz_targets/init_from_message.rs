//! `Session::init_from_message` on arbitrary bytes: never panics, and a refused
//! message leaves the prekey store untouched.
#![no_main]
use std::collections::HashMap;

use chacha20::ChaCha20Rng;
use libfuzzer_sys::fuzz_target;
use parley_proteus::{IdentityKeyPair, PreKey, Session};
use rand_core::SeedableRng;

fuzz_target!(|data: &[u8]| {
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    let bob = IdentityKeyPair::from_seed(&[1; 32]);
    let mut prekeys: HashMap<_, _> = PreKey::generate_batch(0, 2, &mut rng)
        .into_iter()
        .map(|p| (p.id(), p))
        .collect();
    if Session::init_from_message(&bob, &mut prekeys, &mut rng, data).is_err() {
        assert_eq!(prekeys.len(), 2);
    }
});
