//! `Session::decrypt` on arbitrary bytes in an established session: never panics,
//! and a refused message leaves the session exactly as it was.
#![no_main]
use std::collections::HashMap;
use std::sync::OnceLock;

use chacha20::ChaCha20Rng;
use libfuzzer_sys::fuzz_target;
use parley_proteus::{IdentityKeyPair, PreKey, PreKeyBundle, PreKeyId, Session};
use rand_core::SeedableRng;

struct Fixture {
    bob: IdentityKeyPair,
    bob_prekeys: HashMap<PreKeyId, PreKey>,
    bob_session: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut rng = ChaCha20Rng::from_seed([7; 32]);
        let alice = IdentityKeyPair::generate(&mut rng);
        let bob = IdentityKeyPair::generate(&mut rng);
        let prekeys: Vec<PreKey> = PreKey::generate_batch(0, 4, &mut rng);
        let mut bob_prekeys: HashMap<_, _> = prekeys.iter().map(|p| (p.id(), p.clone())).collect();
        let mut a = Session::init_from_bundle(
            &alice,
            &PreKeyBundle::new(bob.public_key(), &prekeys[0]),
            &mut rng,
        )
        .expect("valid bundle");
        let (mut b, _) =
            Session::init_from_message(&bob, &mut bob_prekeys, &mut rng, &a.encrypt(b"hi"))
                .expect("opens");
        a.decrypt(&alice, &mut HashMap::new(), &mut rng, &b.encrypt(b"yo"))
            .expect("reply");
        Fixture {
            bob,
            bob_prekeys,
            bob_session: b.serialize().to_vec(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let mut session = Session::deserialize(&f.bob_session).expect("fixture decodes");
    let mut prekeys = f.bob_prekeys.clone();
    let mut rng = ChaCha20Rng::from_seed([9; 32]);
    if session
        .decrypt(&f.bob, &mut prekeys, &mut rng, data)
        .is_err()
    {
        assert_eq!(
            session.serialize().as_slice(),
            f.bob_session.as_slice(),
            "refused input changed the session"
        );
    }
});
