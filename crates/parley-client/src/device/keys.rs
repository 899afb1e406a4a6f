//! This device's own keys: its Proteus identity, its one-time and last-resort
//! prekeys (made, published as signed bundles, topped up), the registration
//! that takes them to the server, and the ids and fingerprint that name it.
//!
//! This module never knows a remote device, a session or the database.

use std::collections::HashMap;

use getrandom::SysRng;
use parley_api::{ClientClass, ClientId, ClientType, NewClient, Prekey, UserId};
use parley_proteus::{IdentityKeyPair, PreKey, PreKeyBundle, PreKeyId};
use rand_core::UnwrapErr;

use super::{Device, b64};

/// One-time prekeys a device keeps on the server.
pub(crate) const INITIAL_PREKEYS: u16 = 100;

impl Device {
    /// New keys for a device that is not registered yet: an identity, a batch of
    /// one-time prekeys and the last-resort prekey. The caller saves them before
    /// [`Device::registration`] goes to the server, so no published key is ever
    /// one this device could lose.
    pub(crate) fn generate(user: UserId) -> Self {
        let mut rng = UnwrapErr(SysRng);
        let identity = IdentityKeyPair::generate(&mut rng);
        let mut prekeys: HashMap<PreKeyId, PreKey> =
            PreKey::generate_batch(0, INITIAL_PREKEYS, &mut rng)
                .into_iter()
                .map(|p| (p.id(), p))
                .collect();
        let last = PreKey::last_resort(&mut rng);
        prekeys.insert(last.id(), last);
        Self {
            user,
            client: ClientId(0),
            identity,
            prekeys,
            sessions: HashMap::new(),
            pins: HashMap::new(),
            cursor: None,
            next_prekey: INITIAL_PREKEYS,
            generation: 0,
            mls: Default::default(),
            rng,
        }
    }

    fn public(&self, p: &PreKey) -> Prekey {
        Prekey {
            id: p.id().0,
            key: b64(&PreKeyBundle::signed(&self.identity, p).serialize()),
        }
    }

    /// The registration request for this device's keys (the account's password
    /// is required). With the user's root key, the identity key is signed.
    pub(crate) fn registration(
        &self, password: &str, root: Option<&crate::trust::RootKey>,
    ) -> NewClient {
        let mut uploads: Vec<Prekey> = self
            .prekeys
            .values()
            .filter(|p| !p.id().is_last_resort())
            .map(|p| self.public(p))
            .collect();
        uploads.sort_by_key(|p| p.id);
        let last = self
            .prekeys
            .get(&PreKeyId::LAST_RESORT)
            .expect("a generated device has its last-resort prekey");
        NewClient {
            kind: ClientType::Permanent,
            class: ClientClass::Desktop,
            model: Some("parley-client".into()),
            label: None,
            cookie_label: None,
            password: Some(password.to_owned()),
            prekeys: uploads,
            last_prekey: self.public(last),
            trust: root.map(|r| r.sign_device(self.user, &self.identity_key())),
        }
    }

    /// The id the server gave this device.
    pub(crate) fn set_id(&mut self, client: ClientId) {
        self.client = client;
    }

    /// Whether the server has given this device an id yet.
    pub(crate) fn is_registered(&self) -> bool {
        self.client != ClientId(0)
    }

    /// New one-time prekeys so that this device holds `wanted` more; the caller
    /// commits them, then uploads what this returns.
    pub(crate) fn new_prekeys(&mut self, wanted: u64) -> Vec<Prekey> {
        let mut uploads = Vec::new();
        for _ in 0..wanted {
            let id = PreKeyId(self.next_prekey);
            self.next_prekey = (self.next_prekey + 1) % parley_api::limits::LAST_RESORT_PREKEY;
            let prekey = PreKey::generate(id, &mut self.rng);
            uploads.push(self.public(&prekey));
            self.prekeys.insert(id, prekey);
        }
        uploads
    }

    /// How many one-time prekeys this device holds (it falls when a peer starts
    /// a session with one).
    pub(crate) fn prekeys_held(&self) -> usize {
        self.prekeys.len().saturating_sub(1)
    }

    /// This device's id.
    pub(crate) fn id(&self) -> ClientId {
        self.client
    }

    /// This device's identity fingerprint (hex).
    pub(crate) fn fingerprint(&self) -> String {
        self.identity.public_key().fingerprint()
    }

    /// This device's identity key.
    pub(crate) fn identity_key(&self) -> [u8; 32] {
        *self.identity.public_key().public_key().as_bytes()
    }

    /// The owner.
    pub(crate) fn user(&self) -> UserId {
        self.user
    }
}
