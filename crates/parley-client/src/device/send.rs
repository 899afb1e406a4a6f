//! Encrypting: one ciphertext per remote device this device has a session
//! with, and the send generation that counts every outgoing batch so an old
//! copy of the device notices it is behind.
//!
//! This module never opens a session, never posts anything and never knows
//! what the plaintext means.

use std::collections::BTreeMap;

use parley_api::{ClientId, UserId};

use super::{Device, b64};

impl Device {
    /// This device's send generation.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Moves the send generation to at least `generation` (after learning
    /// that another copy of this device got that far).
    pub(crate) fn catch_up_generation(&mut self, generation: u64) {
        self.generation = self.generation.max(generation);
    }

    /// Encrypts `plaintext` for every device of `users` this device has a
    /// session with (not itself), skipping devices already in `done`; counts
    /// one more generation.
    pub(crate) fn encrypt_for(
        &mut self, users: &[UserId], plaintext: &[u8],
        done: &mut BTreeMap<UserId, BTreeMap<ClientId, String>>,
    ) -> u64 {
        // Saturating: the count comes back from the server too, which may lie.
        self.generation = self.generation.saturating_add(1);
        for ((user, client), session) in &mut self.sessions {
            if !users.contains(user) || (*user, *client) == (self.user, self.client) {
                continue;
            }
            let slot = done.entry(*user).or_default();
            if !slot.contains_key(client) {
                slot.insert(*client, b64(&session.encrypt(plaintext)));
            }
        }
        self.generation
    }
}
