//! One session state: the double ratchet between two devices under one session tag.
//!
//! Owns: the root key, the sending chain with its ratchet key pair, up to
//! [`MAX_RECV_CHAINS`] receiving chains (newest first) each keeping up to
//! [`MAX_SKIPPED_KEYS`] skipped message keys, and the pending prekey an initiator
//! repeats until the first reply. Decryption is staged: keys are derived into
//! temporaries, the MAC is checked, and only then is anything committed or any
//! randomness drawn, so a failed decryption changes nothing. Knows nothing about
//! other session states, prekey stores or which state is current.

use std::collections::VecDeque;

use minicbor::{Decoder, data::Type};
use rand_core::CryptoRng;

use crate::cbor::{self, Enc, EncResult};
use crate::error::{DecodeError, ProteusError};
use crate::key_schedule::{self, ChainKey, MessageKeys, RootKey};
use crate::keys::{
    IdentityKey, IdentityKeyPair, KeyPair, PreKey, PreKeyBundle, PreKeyId, PublicKey,
};
use crate::message::{CipherMessage, Envelope, Message, PreKeyMessage, SessionTag};

/// Most message keys a message may skip within one chain.
pub const MAX_COUNTER_GAP: u32 = 1000;
/// Most skipped message keys kept per receiving chain (oldest dropped first).
pub const MAX_SKIPPED_KEYS: usize = 1000;
/// Most receiving chains kept per session state (oldest dropped first).
pub const MAX_RECV_CHAINS: usize = 5;

struct SendChain {
    chain_key: ChainKey,
    ratchet_key: KeyPair,
}

struct RecvChain {
    ratchet_key: PublicKey,
    chain_key: ChainKey,
    /// Oldest first.
    skipped: VecDeque<MessageKeys>,
}

impl RecvChain {
    fn keep_skipped(&mut self, keys: Vec<MessageKeys>) {
        self.skipped.extend(keys);
        let excess = self.skipped.len().saturating_sub(MAX_SKIPPED_KEYS);
        self.skipped.drain(..excess);
    }
}

/// What the initiator repeats in every message until the responder answers.
#[derive(Clone)]
struct PendingPreKey {
    id: PreKeyId,
    base_key: PublicKey,
    /// Whether this state already kept its place against a concurrent peer state.
    won_tie: bool,
}

/// Keys derived for one received message, not yet committed.
struct Staged {
    skipped: Vec<MessageKeys>,
    keys: MessageKeys,
    next: ChainKey,
}

/// Derives from `chain` up to `counter` (which is at or after the chain's position).
fn stage(chain: &ChainKey, counter: u32) -> Result<Staged, ProteusError> {
    let gap = counter - chain.idx();
    if gap > MAX_COUNTER_GAP {
        return Err(ProteusError::TooDistantFuture);
    }
    let mut skipped = Vec::with_capacity(gap as usize);
    let (mut keys, mut next) = chain.step();
    while keys.counter() != counter {
        skipped.push(keys);
        (keys, next) = next.step();
    }
    Ok(Staged {
        skipped,
        keys,
        next,
    })
}

/// Verifies the MAC and decrypts with `keys`.
fn open(
    keys: &MessageKeys, env: &Envelope<'_>, ciphertext: &[u8],
) -> Result<Vec<u8>, ProteusError> {
    if !keys.verify(env.message_bytes, &env.mac) {
        return Err(ProteusError::InvalidSignature);
    }
    let mut plaintext = ciphertext.to_vec();
    keys.apply_keystream(&mut plaintext);
    Ok(plaintext)
}

pub(crate) struct SessionState {
    root_key: RootKey,
    send_chain: SendChain,
    /// Newest first.
    recv_chains: VecDeque<RecvChain>,
    prev_counter: u32,
    pending_prekey: Option<PendingPreKey>,
}

impl SessionState {
    /// The initiator's state from the responder's bundle. `ratchet_key` is the
    /// initiator's first ratchet key pair.
    pub(crate) fn init_as_alice(
        alice: &IdentityKeyPair, alice_base: &KeyPair, bob: &PreKeyBundle, ratchet_key: KeyPair,
    ) -> Result<Self, ProteusError> {
        let master = key_schedule::master_secret_initiator(alice, alice_base, bob)?;
        let (root, chain) = key_schedule::handshake(&master);
        let (root, send) = root.dh_ratchet(&ratchet_key, bob.public_key())?;
        Ok(Self {
            root_key: root,
            send_chain: SendChain {
                chain_key: send,
                ratchet_key,
            },
            recv_chains: VecDeque::from([RecvChain {
                ratchet_key: bob.public_key().clone(),
                chain_key: chain,
                skipped: VecDeque::new(),
            }]),
            prev_counter: 0,
            pending_prekey: Some(PendingPreKey {
                id: bob.prekey_id(),
                base_key: alice_base.public_key().clone(),
                won_tie: false,
            }),
        })
    }

    /// The responder's state from a prekey message.
    pub(crate) fn init_as_bob(
        bob: &IdentityKeyPair, bob_prekey: &PreKey, alice_identity: &IdentityKey,
        alice_base: &PublicKey,
    ) -> Result<Self, ProteusError> {
        let master = key_schedule::master_secret_responder(
            bob,
            bob_prekey,
            alice_identity.public_key(),
            alice_base,
        )?;
        let (root, chain) = key_schedule::handshake(&master);
        Ok(Self {
            root_key: root,
            send_chain: SendChain {
                chain_key: chain,
                ratchet_key: bob_prekey.key_pair().clone(),
            },
            recv_chains: VecDeque::new(),
            prev_counter: 0,
            pending_prekey: None,
        })
    }

    /// Whether this state may keep its place against a state the peer started at
    /// the same time: it was initiated here, has not heard from the peer, and has not
    /// already done so once.
    pub(crate) fn may_win_tie(&self) -> bool {
        self.pending_prekey.as_ref().is_some_and(|p| !p.won_tie)
    }

    /// Records that this state kept its place against a concurrent peer state.
    pub(crate) fn mark_won_tie(&mut self) {
        if let Some(p) = self.pending_prekey.as_mut() {
            p.won_tie = true;
        }
    }

    /// Encrypts one message; the send chain moves on.
    pub(crate) fn encrypt(
        &mut self, tag: SessionTag, local_identity: &IdentityKey, plaintext: &[u8],
    ) -> Vec<u8> {
        let (keys, next) = self.send_chain.chain_key.step();
        let message = CipherMessage {
            session_tag: tag,
            counter: keys.counter(),
            prev_counter: self.prev_counter,
            ratchet_key: *self.send_chain.ratchet_key.public_key().as_bytes(),
            ciphertext: plaintext,
        };
        let message = match &self.pending_prekey {
            None => Message::Plain(message),
            Some(p) => Message::Keyed(PreKeyMessage {
                prekey_id: p.id,
                base_key: p.base_key.clone(),
                identity_key: local_identity.clone(),
                message,
            }),
        };
        let mut bytes = Vec::with_capacity(plaintext.len() + 256);
        message.encode(&mut bytes);
        // The ciphertext is the last field of the encoding: encrypt it in place.
        let start = bytes.len() - plaintext.len();
        keys.apply_keystream(&mut bytes[start..]);
        let mac = keys.mac(&bytes);
        self.send_chain.chain_key = next;
        Envelope::encode(&mac, &bytes)
    }

    /// Decrypts a message of this state. On error nothing changes and `rng` is unused.
    pub(crate) fn decrypt<R: CryptoRng + ?Sized>(
        &mut self, rng: &mut R, env: &Envelope<'_>,
    ) -> Result<Vec<u8>, ProteusError> {
        let msg = env.message.cipher_message();
        let known = self
            .recv_chains
            .iter()
            .position(|c| c.ratchet_key.as_bytes() == &msg.ratchet_key);
        let plaintext = match known {
            Some(i) => self.decrypt_in_chain(i, env, msg)?,
            None => self.decrypt_new_chain(rng, env, msg)?,
        };
        self.pending_prekey = None;
        Ok(plaintext)
    }

    fn decrypt_in_chain(
        &mut self, i: usize, env: &Envelope<'_>, msg: &CipherMessage<'_>,
    ) -> Result<Vec<u8>, ProteusError> {
        let chain = &mut self.recv_chains[i];
        if msg.counter < chain.chain_key.idx() {
            // A late message: only a kept skipped key can open it.
            if chain
                .skipped
                .front()
                .is_some_and(|k| k.counter() > msg.counter)
            {
                return Err(ProteusError::OutdatedMessage);
            }
            let Some(k) = chain
                .skipped
                .iter()
                .position(|k| k.counter() == msg.counter)
            else {
                return Err(ProteusError::DuplicateMessage);
            };
            let plaintext = open(&chain.skipped[k], env, msg.ciphertext)?;
            chain.skipped.remove(k);
            return Ok(plaintext);
        }
        let staged = stage(&chain.chain_key, msg.counter)?;
        let plaintext = open(&staged.keys, env, msg.ciphertext)?;
        chain.chain_key = staged.next;
        chain.keep_skipped(staged.skipped);
        Ok(plaintext)
    }

    fn decrypt_new_chain<R: CryptoRng + ?Sized>(
        &mut self, rng: &mut R, env: &Envelope<'_>, msg: &CipherMessage<'_>,
    ) -> Result<Vec<u8>, ProteusError> {
        let theirs = PublicKey::from_bytes(&msg.ratchet_key)?;
        let (root, recv) = self
            .root_key
            .dh_ratchet(&self.send_chain.ratchet_key, &theirs)?;
        let staged = stage(&recv, msg.counter)?;
        let plaintext = open(&staged.keys, env, msg.ciphertext)?;
        // Authentic: commit the DH ratchet step with a fresh sending ratchet key.
        let ratchet_key = KeyPair::generate(rng);
        let (root, send) = root.dh_ratchet(&ratchet_key, &theirs)?;
        let mut chain = RecvChain {
            ratchet_key: theirs,
            chain_key: staged.next,
            skipped: VecDeque::new(),
        };
        chain.keep_skipped(staged.skipped);
        self.recv_chains.push_front(chain);
        self.recv_chains.truncate(MAX_RECV_CHAINS);
        self.prev_counter = self.send_chain.chain_key.idx();
        self.root_key = root;
        self.send_chain = SendChain {
            chain_key: send,
            ratchet_key,
        };
        Ok(plaintext)
    }

    /// Storage encoding:
    /// `{0: root, 1: {0: chain key, 1: counter, 2: KeyPair}, 2: [RecvChain],
    ///   3: prev_counter, 4: null | {0: prekey id, 1: base key, 2: won tie}}`,
    /// `RecvChain = {0: ratchet key, 1: chain key, 2: counter, 3: [[counter, cipher, mac]]}`.
    pub(crate) fn encode(&self, e: &mut Enc<'_>) -> EncResult {
        e.map(5)?.u8(0)?.bytes(&self.root_key.0)?;
        e.u8(1)?.map(3)?;
        e.u8(0)?.bytes(self.send_chain.chain_key.key())?;
        e.u8(1)?.u32(self.send_chain.chain_key.idx())?;
        e.u8(2)?;
        self.send_chain.ratchet_key.encode(e)?;
        e.u8(2)?.array(self.recv_chains.len() as u64)?;
        for chain in &self.recv_chains {
            e.map(4)?.u8(0)?;
            chain.ratchet_key.encode(e)?;
            e.u8(1)?.bytes(chain.chain_key.key())?;
            e.u8(2)?.u32(chain.chain_key.idx())?;
            e.u8(3)?.array(chain.skipped.len() as u64)?;
            for k in &chain.skipped {
                e.array(3)?
                    .u32(k.counter())?
                    .bytes(k.cipher_key())?
                    .bytes(k.mac_key())?;
            }
        }
        e.u8(3)?.u32(self.prev_counter)?.u8(4)?;
        match &self.pending_prekey {
            None => {
                e.null()?;
            }
            Some(p) => {
                e.map(3)?.u8(0)?.u16(p.id.0)?.u8(1)?;
                p.base_key.encode(e)?;
                e.u8(2)?.bool(p.won_tie)?;
            }
        }
        Ok(())
    }

    pub(crate) fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        const S: &str = "SessionState";
        let (mut root, mut send, mut recv, mut prev, mut pending) = (None, None, None, None, None);
        cbor::read_map(d, S, |key, d| {
            match key {
                0 => root = Some(RootKey(cbor::array::<32>(d, S)?)),
                1 => send = Some(decode_send_chain(d)?),
                2 => {
                    recv = Some(cbor::read_array(
                        d,
                        S,
                        MAX_RECV_CHAINS as u64,
                        decode_recv_chain,
                    )?)
                }
                3 => prev = Some(d.u32()?),
                4 => pending = Some(decode_pending(d)?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(Self {
            root_key: cbor::required(root, S, 0)?,
            send_chain: cbor::required(send, S, 1)?,
            recv_chains: cbor::required(recv, S, 2)?.into(),
            prev_counter: cbor::required(prev, S, 3)?,
            pending_prekey: cbor::required(pending, S, 4)?,
        })
    }
}

fn decode_send_chain(d: &mut Decoder<'_>) -> Result<SendChain, DecodeError> {
    const S: &str = "SendChain";
    let (mut key, mut idx, mut pair) = (None, None, None);
    cbor::read_map(d, S, |k, d| {
        match k {
            0 => key = Some(cbor::array::<32>(d, S)?),
            1 => idx = Some(d.u32()?),
            2 => pair = Some(KeyPair::decode(d)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(SendChain {
        chain_key: ChainKey::new(cbor::required(key, S, 0)?, cbor::required(idx, S, 1)?),
        ratchet_key: cbor::required(pair, S, 2)?,
    })
}

fn decode_recv_chain(d: &mut Decoder<'_>) -> Result<RecvChain, DecodeError> {
    const S: &str = "RecvChain";
    let (mut ratchet, mut key, mut idx, mut skipped) = (None, None, None, None);
    cbor::read_map(d, S, |k, d| {
        match k {
            0 => ratchet = Some(PublicKey::decode(d)?),
            1 => key = Some(cbor::array::<32>(d, S)?),
            2 => idx = Some(d.u32()?),
            3 => {
                skipped = Some(cbor::read_array(d, S, MAX_SKIPPED_KEYS as u64, |d| {
                    if d.array()? != Some(3) {
                        return Err(DecodeError::Inconsistent("skipped message key"));
                    }
                    let counter = d.u32()?;
                    let cipher = cbor::array::<32>(d, S)?;
                    Ok(MessageKeys::from_parts(
                        cipher,
                        cbor::array::<32>(d, S)?,
                        counter,
                    ))
                })?)
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(RecvChain {
        ratchet_key: cbor::required(ratchet, S, 0)?,
        chain_key: ChainKey::new(cbor::required(key, S, 1)?, cbor::required(idx, S, 2)?),
        skipped: cbor::required(skipped, S, 3)?.into(),
    })
}

fn decode_pending(d: &mut Decoder<'_>) -> Result<Option<PendingPreKey>, DecodeError> {
    const S: &str = "PendingPreKey";
    if d.datatype()? == Type::Null {
        d.null()?;
        return Ok(None);
    }
    let (mut id, mut base, mut won_tie) = (None, None, None);
    cbor::read_map(d, S, |k, d| {
        match k {
            0 => id = Some(PreKeyId(d.u16()?)),
            1 => base = Some(PublicKey::decode(d)?),
            2 => won_tie = Some(d.bool()?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(Some(PendingPreKey {
        id: cbor::required(id, S, 0)?,
        base_key: cbor::required(base, S, 1)?,
        won_tie: cbor::required(won_tie, S, 2)?,
    }))
}
