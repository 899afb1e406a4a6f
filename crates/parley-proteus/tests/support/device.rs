//! A test device: an identity, its prekeys and a deterministic RNG.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;

use chacha20::ChaCha20Rng;
use parley_proteus::{IdentityKeyPair, PreKey, PreKeyBundle, PreKeyId, ProteusError, Session};
use rand_core::SeedableRng;

pub struct Device {
    pub identity: IdentityKeyPair,
    pub prekeys: HashMap<PreKeyId, PreKey>,
    pub rng: ChaCha20Rng,
}

impl Device {
    pub fn new(seed: u8) -> Self {
        let mut rng = ChaCha20Rng::from_seed([seed; 32]);
        let identity = IdentityKeyPair::generate(&mut rng);
        let mut prekeys: HashMap<_, _> = PreKey::generate_batch(0, 10, &mut rng)
            .into_iter()
            .map(|p| (p.id(), p))
            .collect();
        let last = PreKey::last_resort(&mut rng);
        prekeys.insert(last.id(), last);
        Self {
            identity,
            prekeys,
            rng,
        }
    }

    pub fn bundle(&self, id: u16) -> PreKeyBundle {
        PreKeyBundle::new(self.identity.public_key(), &self.prekeys[&PreKeyId(id)])
    }

    pub fn signed_bundle(&self, id: u16) -> PreKeyBundle {
        PreKeyBundle::signed(&self.identity, &self.prekeys[&PreKeyId(id)])
    }

    pub fn init(&mut self, bundle: &PreKeyBundle) -> Session {
        Session::init_from_bundle(&self.identity, bundle, &mut self.rng).expect("bundle is valid")
    }

    pub fn accept(&mut self, envelope: &[u8]) -> Result<(Session, Vec<u8>), ProteusError> {
        Session::init_from_message(&self.identity, &mut self.prekeys, &mut self.rng, envelope)
    }

    pub fn decrypt(
        &mut self, session: &mut Session, envelope: &[u8],
    ) -> Result<Vec<u8>, ProteusError> {
        session.decrypt(&self.identity, &mut self.prekeys, &mut self.rng, envelope)
    }
}
