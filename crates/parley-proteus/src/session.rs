//! A Proteus session between this device and one remote device.
//!
//! Owns: the session states (at most [`MAX_SESSION_STATES`], each under its session
//! tag), which one encrypts, starting a session from a bundle or from a received
//! prekey message, and removing used prekeys from the caller's store. Knows nothing
//! about where sessions, identities or prekeys are stored, nor about time: storage is
//! the [`PreKeyStore`] trait and randomness an `rng` argument.
//!
//! Which state encrypts. The peer encrypts with the state it considers current, so
//! the state that last decrypted a message from the peer becomes ours too (as in
//! Wire's Proteus): after a reset, a late message or a lost state, the peer's next
//! message brings both sides back onto a state they share. A prekey message with a
//! new session tag from the same identity starts a new state, which takes over the
//! same way, with one exception, the Status spec's rule for concurrent sessions:
//! when our current state is one we initiated and has not yet heard from the peer,
//! both sides started a session at once, and both keep the state whose session tag
//! is first in byte order, so they converge on one state without another round trip.
//! (Status orders by "the symmetric key"; the session tag is the value both sides
//! see that names the state, and comparing it reveals nothing secret.) In a genuine
//! concurrent start each side meets exactly one competing state, so our unanswered
//! state keeps its place at most once: a second new state from the peer while ours
//! is still unanswered means the peer is starting over because it cannot use ours
//! (it reset after taking our prekey), and we follow it.
//!
//! What no rule here can fix: messages carry no order, so a late prekey message of a
//! session its sender has since deleted looks exactly like a fresh one, and both
//! sides can end up on states the other no longer has. The client recovers as the
//! seeds say: after a message it cannot open, it starts a fresh session
//! ([`Session::init_from_bundle`]) and sends on it; the tie-break above keeps two
//! simultaneous recoveries from looping.

use std::collections::HashMap;
use std::convert::Infallible;

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::cbor;
use crate::error::{DecodeError, ProteusError};
use crate::keys::BundleSignature;
use crate::keys::{IdentityKey, IdentityKeyPair, KeyPair, PreKey, PreKeyBundle, PreKeyId};
use crate::message::{Envelope, Message, PreKeyMessage, SessionTag};
use crate::state::SessionState;

/// Most session states one session keeps (the oldest other than the current one is
/// dropped first).
pub const MAX_SESSION_STATES: usize = 100;

/// Where a device keeps its own prekeys' secrets.
pub trait PreKeyStore {
    /// The store's failure.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The prekey with this id, if the store still has it.
    fn prekey(&mut self, id: PreKeyId) -> Result<Option<PreKey>, Self::Error>;

    /// Forgets a used one-time prekey. Never called for the last-resort prekey.
    fn remove(&mut self, id: PreKeyId) -> Result<(), Self::Error>;
}

/// An in-memory store, for tests and simple tools.
impl PreKeyStore for HashMap<PreKeyId, PreKey> {
    type Error = Infallible;

    fn prekey(&mut self, id: PreKeyId) -> Result<Option<PreKey>, Infallible> {
        Ok(self.get(&id).cloned())
    }

    fn remove(&mut self, id: PreKeyId) -> Result<(), Infallible> {
        HashMap::remove(self, &id);
        Ok(())
    }
}

/// The end-to-end encrypted session with one remote device.
pub struct Session {
    local_identity: IdentityKey,
    remote_identity: IdentityKey,
    current: SessionTag,
    /// Oldest first; tags unique; `current` is among them.
    states: Vec<(SessionTag, SessionState)>,
}

impl Session {
    /// Starts a session as the initiator from the remote device's prekey bundle.
    /// A bundle whose signature is present but invalid is refused.
    ///
    /// Draws, in order, 32 bytes for the base key, 32 for the first ratchet key and 16
    /// for the session tag from `rng`.
    pub fn init_from_bundle<R: CryptoRng + ?Sized>(
        local: &IdentityKeyPair, bundle: &PreKeyBundle, rng: &mut R,
    ) -> Result<Self, ProteusError> {
        if bundle.verify() == BundleSignature::Invalid {
            return Err(ProteusError::InvalidSignature);
        }
        let base = KeyPair::generate(rng);
        let ratchet = KeyPair::generate(rng);
        let state = SessionState::init_as_alice(local, &base, bundle, ratchet)?;
        let tag = SessionTag::generate(rng);
        Ok(Self {
            local_identity: local.public_key().clone(),
            remote_identity: bundle.identity_key().clone(),
            current: tag,
            states: vec![(tag, state)],
        })
    }

    /// Starts a session as the responder from a received prekey message, returning
    /// the session and the message's plaintext. The used prekey is removed from
    /// `store` unless it is the last-resort prekey.
    pub fn init_from_message<S, R>(
        local: &IdentityKeyPair, store: &mut S, rng: &mut R, envelope: &[u8],
    ) -> Result<(Self, Vec<u8>), ProteusError>
    where
        S: PreKeyStore + ?Sized,
        R: CryptoRng + ?Sized,
    {
        let env = Envelope::decode(envelope)?;
        let Message::Keyed(pm) = &env.message else {
            return Err(ProteusError::InvalidMessage(
                "a session can only start from a prekey message",
            ));
        };
        let (state, plaintext) = state_from_prekey_message(local, store, rng, &env, pm)?;
        let tag = pm.message.session_tag;
        let session = Self {
            local_identity: local.public_key().clone(),
            remote_identity: pm.identity_key.clone(),
            current: tag,
            states: vec![(tag, state)],
        };
        Ok((session, plaintext))
    }

    /// Encrypts a message to the remote device with the current session state.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let tag = self.current;
        let (_, state) = self
            .states
            .iter_mut()
            .find(|(t, _)| *t == tag)
            .expect("the current session state is always kept");
        state.encrypt(tag, &self.local_identity, plaintext)
    }

    /// Decrypts a message from the remote device. A prekey message with a new
    /// session tag starts a new session state (see the module documentation for
    /// which state then encrypts). On error the session is unchanged.
    pub fn decrypt<S, R>(
        &mut self, local: &IdentityKeyPair, store: &mut S, rng: &mut R, envelope: &[u8],
    ) -> Result<Vec<u8>, ProteusError>
    where
        S: PreKeyStore + ?Sized,
        R: CryptoRng + ?Sized,
    {
        let env = Envelope::decode(envelope)?;
        let tag = env.session_tag();
        if let Message::Keyed(pm) = &env.message {
            if pm.identity_key != self.remote_identity {
                return Err(ProteusError::RemoteIdentityChanged);
            }
            if self.state_mut(tag).is_none() {
                if local.public_key() != &self.local_identity {
                    return Err(ProteusError::LocalIdentityMismatch);
                }
                let (state, plaintext) = state_from_prekey_message(local, store, rng, &env, pm)?;
                self.adopt(tag, state);
                return Ok(plaintext);
            }
        }
        let state = self.state_mut(tag).ok_or(ProteusError::InvalidMessage(
            "no session state with this session tag",
        ))?;
        let plaintext = state.decrypt(rng, &env)?;
        // The peer is using this state: so do we.
        self.current = tag;
        Ok(plaintext)
    }

    /// This device's identity key.
    pub fn local_identity(&self) -> &IdentityKey {
        &self.local_identity
    }

    /// The remote device's identity key.
    pub fn remote_identity(&self) -> &IdentityKey {
        &self.remote_identity
    }

    /// The tag of the session state that encrypts.
    pub fn session_tag(&self) -> SessionTag {
        self.current
    }

    /// How many session states are kept.
    pub fn state_count(&self) -> usize {
        self.states.len()
    }

    fn state_mut(&mut self, tag: SessionTag) -> Option<&mut SessionState> {
        self.states
            .iter_mut()
            .find(|(t, _)| *t == tag)
            .map(|(_, s)| s)
    }

    /// Adds a state started by the peer and decides which state encrypts.
    fn adopt(&mut self, tag: SessionTag, state: SessionState) {
        let current = self.current;
        let keep_ours = match self.state_mut(current) {
            Some(ours) if ours.may_win_tie() && current < tag => {
                ours.mark_won_tie();
                true
            }
            _ => false,
        };
        if !keep_ours {
            self.current = tag;
        }
        self.states.push((tag, state));
        if self.states.len() > MAX_SESSION_STATES {
            let current = self.current;
            let oldest = self
                .states
                .iter()
                .position(|(t, _)| *t != current)
                .expect("more than one state is kept");
            self.states.remove(oldest);
        }
    }

    /// Storage encoding (versioned):
    /// `{0: version 1, 1: local IdentityKey, 2: remote IdentityKey, 3: current tag,
    ///   4: [[tag, SessionState]]}`, states oldest first.
    /// The result holds every session secret and is zeroized when dropped.
    pub fn serialize(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(cbor::encode_to_vec(512 * self.states.len(), |e| {
            e.map(5)?.u8(0)?.u8(1)?.u8(1)?;
            self.local_identity.encode(e)?;
            e.u8(2)?;
            self.remote_identity.encode(e)?;
            e.u8(3)?.bytes(&self.current.0)?;
            e.u8(4)?.array(self.states.len() as u64)?;
            for (tag, state) in &self.states {
                e.array(2)?.bytes(&tag.0)?;
                state.encode(e)?;
            }
            Ok(())
        }))
    }

    /// Reads [`Session::serialize`]'s encoding, checking its invariants.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, DecodeError> {
        const S: &str = "Session";
        cbor::decode_all(bytes, |d| {
            let (mut version, mut local, mut remote, mut current, mut states) =
                (None, None, None, None, None);
            cbor::read_map(d, S, |key, d| {
                match key {
                    0 => version = Some(cbor::version(d, S, 1)?),
                    1 => local = Some(IdentityKey::decode(d)?),
                    2 => remote = Some(IdentityKey::decode(d)?),
                    3 => current = Some(SessionTag(cbor::array::<16>(d, S)?)),
                    4 => {
                        states = Some(cbor::read_array(d, S, MAX_SESSION_STATES as u64, |d| {
                            if d.array()? != Some(2) {
                                return Err(DecodeError::Inconsistent("session state entry"));
                            }
                            let tag = SessionTag(cbor::array::<16>(d, S)?);
                            Ok((tag, SessionState::decode(d)?))
                        })?)
                    }
                    _ => return Ok(false),
                }
                Ok(true)
            })?;
            cbor::required(version, S, 0)?;
            let session = Self {
                local_identity: cbor::required(local, S, 1)?,
                remote_identity: cbor::required(remote, S, 2)?,
                current: cbor::required(current, S, 3)?,
                states: cbor::required(states, S, 4)?,
            };
            let tags_unique = session
                .states
                .iter()
                .enumerate()
                .all(|(i, (t, _))| session.states[..i].iter().all(|(u, _)| u != t));
            let has_current = session.states.iter().any(|(t, _)| *t == session.current);
            if !tags_unique || !has_current {
                return Err(DecodeError::Inconsistent("session states"));
            }
            Ok(session)
        })
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("local_identity", &self.local_identity)
            .field("remote_identity", &self.remote_identity)
            .field("current", &self.current)
            .field("states", &self.states.len())
            .finish()
    }
}

/// The responder's half of X3DH: a new state from a prekey message, its first
/// plaintext, and the used prekey removed (unless last resort) — only on success.
fn state_from_prekey_message<S, R>(
    local: &IdentityKeyPair, store: &mut S, rng: &mut R, env: &Envelope<'_>, pm: &PreKeyMessage<'_>,
) -> Result<(SessionState, Vec<u8>), ProteusError>
where
    S: PreKeyStore + ?Sized,
    R: CryptoRng + ?Sized,
{
    let store_error = |e: S::Error| ProteusError::PreKeyStore(Box::new(e));
    let prekey = store
        .prekey(pm.prekey_id)
        .map_err(store_error)?
        .ok_or(ProteusError::PreKeyNotFound(pm.prekey_id))?;
    let mut state = SessionState::init_as_bob(local, &prekey, &pm.identity_key, &pm.base_key)?;
    let plaintext = state.decrypt(rng, env)?;
    if !pm.prekey_id.is_last_resort() {
        store.remove(pm.prekey_id).map_err(store_error)?;
    }
    Ok((state, plaintext))
}
