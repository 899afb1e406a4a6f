//! Known-answer support: replaying a session from fixed seeds.
//!
//! Owns: the replay rule of the known-answer vectors (`tests/vectors/sessions.json`),
//! a scripted RNG that hands out given seeds in order, and the X3DH master secret for
//! comparison. Used by the vectors test, the `vectors` example that writes them, and
//! anyone checking another implementation against them. A messenger never needs it.

use std::collections::HashMap;
use std::convert::Infallible;

use rand_core::{TryCryptoRng, TryRng};
use zeroize::Zeroizing;

use crate::{
    IdentityKeyPair, KeyPair, PreKey, PreKeyBundle, PreKeyId, ProteusError, Session, key_schedule,
};

/// The 96-byte X3DH master secret as the initiator computes it.
pub fn master_secret(
    alice: &IdentityKeyPair, alice_base: &KeyPair, bob: &PreKeyBundle,
) -> Result<Zeroizing<[u8; 96]>, ProteusError> {
    key_schedule::master_secret_initiator(alice, alice_base, bob)
}

/// An "RNG" that returns the given bytes in order and panics when they run out.
/// Only for reproducing known answers: it is not random.
#[derive(Debug, Default)]
pub struct ScriptedRng {
    bytes: Vec<u8>,
    pos: usize,
}

impl ScriptedRng {
    /// Hands out `chunks` concatenated.
    pub fn new<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Self {
        Self {
            bytes: chunks.into_iter().flatten().copied().collect(),
            pos: 0,
        }
    }

    /// Bytes handed out so far.
    pub fn consumed(&self) -> usize {
        self.pos
    }
}

impl TryRng for ScriptedRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        let end = self.pos + dst.len();
        assert!(end <= self.bytes.len(), "the scripted RNG ran out of seeds");
        dst.copy_from_slice(&self.bytes[self.pos..end]);
        self.pos = end;
        Ok(())
    }
}

impl TryCryptoRng for ScriptedRng {}

/// Who sends a message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Party {
    /// The initiator.
    Alice,
    /// The responder.
    Bob,
}

/// One known-answer case, decoded from its JSON form.
#[derive(Clone, Debug)]
pub struct Case {
    /// Alice's identity seed.
    pub alice_identity_seed: [u8; 32],
    /// Bob's identity seed.
    pub bob_identity_seed: [u8; 32],
    /// The id of the prekey Alice uses.
    pub bob_prekey_id: u16,
    /// That prekey's seed.
    pub bob_prekey_seed: [u8; 32],
    /// Alice's base key seed.
    pub alice_base_seed: [u8; 32],
    /// Alice's ratchet key seeds, in the order she makes them.
    pub alice_ratchet_seeds: Vec<[u8; 32]>,
    /// Bob's ratchet key seeds, in the order he makes them.
    pub bob_ratchet_seeds: Vec<[u8; 32]>,
    /// The session tag Alice chooses.
    pub session_tag: [u8; 16],
    /// The messages in sending order.
    pub messages: Vec<(Party, Vec<u8>)>,
    /// Delivery order (indices into `messages`); `None` means sending order.
    pub deliver_order: Option<Vec<usize>>,
}

/// What a replay produced.
#[derive(Debug)]
pub struct Transcript {
    /// The X3DH master secret.
    pub master_secret: Zeroizing<[u8; 96]>,
    /// Each message's envelope, in sending order.
    pub envelopes: Vec<Vec<u8>>,
    /// How many of Alice's ratchet seeds were used (her first one included).
    pub alice_ratchet_seeds_used: usize,
    /// How many of Bob's ratchet seeds were used.
    pub bob_ratchet_seeds_used: usize,
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The case itself is malformed.
    #[error("invalid case: {0}")]
    InvalidCase(&'static str),
    /// A protocol operation failed.
    #[error("message {index}: {source}")]
    Protocol {
        /// The message being sent or delivered.
        index: usize,
        /// What failed.
        source: ProteusError,
    },
    /// A delivered message decrypted to something else.
    #[error("message {0} decrypted to a different plaintext")]
    WrongPlaintext(usize),
}

/// Replays a case. Walks the delivery order; before delivering message `k`, the
/// parties send, in index order, every message not yet sent whose index is at most
/// `k`; after the last delivery the remaining messages are sent. Alice's RNG hands out
/// her base seed, her first ratchet seed, the session tag, then her other ratchet
/// seeds; Bob's hands out his ratchet seeds.
pub fn replay(case: &Case) -> Result<Transcript, ReplayError> {
    let n = case.messages.len();
    let order: Vec<usize> = case
        .deliver_order
        .clone()
        .unwrap_or_else(|| (0..n).collect());
    let mut seen = vec![false; n];
    for &k in &order {
        if k >= n || std::mem::replace(&mut seen[k], true) {
            return Err(ReplayError::InvalidCase(
                "deliver_order is not a set of message indices",
            ));
        }
    }
    let first = case
        .alice_ratchet_seeds
        .first()
        .ok_or(ReplayError::InvalidCase("no ratchet seed for Alice"))?;
    if case.messages.first().map(|m| m.0) != Some(Party::Alice) {
        return Err(ReplayError::InvalidCase("Alice sends first"));
    }

    let alice = IdentityKeyPair::from_seed(&case.alice_identity_seed);
    let bob = IdentityKeyPair::from_seed(&case.bob_identity_seed);
    let prekey = PreKey::from_seed(PreKeyId(case.bob_prekey_id), &case.bob_prekey_seed);
    let bundle = PreKeyBundle::new(bob.public_key(), &prekey);
    let master = master_secret(&alice, &KeyPair::from_seed(&case.alice_base_seed), &bundle)
        .map_err(|source| ReplayError::Protocol { index: 0, source })?;

    let mut alice_rng = ScriptedRng::new(
        [case.alice_base_seed.as_slice(), first, &case.session_tag]
            .into_iter()
            .chain(case.alice_ratchet_seeds[1..].iter().map(|s| s.as_slice())),
    );
    let mut bob_rng = ScriptedRng::new(case.bob_ratchet_seeds.iter().map(|s| s.as_slice()));
    let mut bob_store = HashMap::from([(prekey.id(), prekey.clone())]);
    let mut alice_session = Session::init_from_bundle(&alice, &bundle, &mut alice_rng)
        .map_err(|source| ReplayError::Protocol { index: 0, source })?;
    let mut bob_session: Option<Session> = None;

    let mut envelopes: Vec<Vec<u8>> = Vec::with_capacity(n);
    let send = |upto: usize,
                envelopes: &mut Vec<Vec<u8>>,
                alice_session: &mut Session,
                bob_session: &mut Option<Session>|
     -> Result<(), ReplayError> {
        while envelopes.len() < (upto + 1).min(n) {
            let (from, plaintext) = &case.messages[envelopes.len()];
            let envelope = match from {
                Party::Alice => alice_session.encrypt(plaintext),
                Party::Bob => bob_session
                    .as_mut()
                    .ok_or(ReplayError::InvalidCase(
                        "Bob sends before he received anything",
                    ))?
                    .encrypt(plaintext),
            };
            envelopes.push(envelope);
        }
        Ok(())
    };

    for &k in &order {
        send(k, &mut envelopes, &mut alice_session, &mut bob_session)?;
        let protocol = |source| ReplayError::Protocol { index: k, source };
        let (from, expected) = &case.messages[k];
        let plaintext = match (from, bob_session.as_mut()) {
            (Party::Alice, None) => {
                let (session, plaintext) =
                    Session::init_from_message(&bob, &mut bob_store, &mut bob_rng, &envelopes[k])
                        .map_err(protocol)?;
                bob_session = Some(session);
                plaintext
            }
            (Party::Alice, Some(session)) => session
                .decrypt(&bob, &mut bob_store, &mut bob_rng, &envelopes[k])
                .map_err(protocol)?,
            (Party::Bob, _) => alice_session
                .decrypt(&alice, &mut HashMap::new(), &mut alice_rng, &envelopes[k])
                .map_err(protocol)?,
        };
        if &plaintext != expected {
            return Err(ReplayError::WrongPlaintext(k));
        }
    }
    send(n, &mut envelopes, &mut alice_session, &mut bob_session)?;

    Ok(Transcript {
        master_secret: master,
        envelopes,
        alice_ratchet_seeds_used: (alice_rng.consumed() - 32 - 16) / 32,
        bob_ratchet_seeds_used: bob_rng.consumed() / 32,
    })
}
