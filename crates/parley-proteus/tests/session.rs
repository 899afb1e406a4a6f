//! Sessions end to end: set-up, every protocol error, the limits of the seeds,
//! resets, concurrent starts and storage round trips.

#[path = "support/device.rs"]
mod device;

use device::Device;
use parley_proteus::{
    BundleSignature, IdentityKeyPair, KeyPair, MAX_COUNTER_GAP, MAX_RECV_CHAINS,
    MAX_SESSION_STATES, PreKey, PreKeyBundle, PreKeyId, ProteusError, Session,
};

/// Alice opens a session to Bob and Bob answers, so both are established.
fn established() -> (Device, Session, Device, Session) {
    established_between(1, 2)
}

fn established_between(a_seed: u8, b_seed: u8) -> (Device, Session, Device, Session) {
    let mut alice = Device::new(a_seed);
    let mut bob = Device::new(b_seed);
    let mut a = alice.init(&bob.bundle(3));
    let (mut b, hello) = bob.accept(&a.encrypt(b"hello")).expect("prekey message");
    assert_eq!(hello, b"hello");
    assert_eq!(
        alice.decrypt(&mut a, &b.encrypt(b"hi")).expect("reply"),
        b"hi"
    );
    (alice, a, bob, b)
}

fn same_state(s: &Session) -> Vec<u8> {
    s.serialize().to_vec()
}

#[test]
fn first_message_opens_the_session_and_consumes_the_prekey() {
    let mut alice = Device::new(1);
    let mut bob = Device::new(2);
    let bundle = bob.bundle(3);
    let mut a = alice.init(&bundle);
    let first = a.encrypt(b"one");
    let second = a.encrypt(b"two");
    let (mut b, plain) = bob.accept(&first).expect("opens");
    assert_eq!(plain, b"one");
    assert!(
        !bob.prekeys.contains_key(&PreKeyId(3)),
        "used prekey is removed"
    );
    assert_eq!(
        bob.decrypt(&mut b, &second).expect("second prekey message"),
        b"two"
    );
    // Another session from the same (consumed) prekey cannot start.
    let mut eve = Device::new(9);
    let mut e = eve.init(&bundle);
    let err = bob.accept(&e.encrypt(b"x")).expect_err("prekey is gone");
    assert!(
        matches!(err, ProteusError::PreKeyNotFound(PreKeyId(3))),
        "{err}"
    );
    assert_eq!(err.code(), 101);
    assert_eq!(a.remote_identity(), bob.identity.public_key());
    assert_eq!(b.remote_identity(), alice.identity.public_key());
}

#[test]
fn last_resort_prekey_is_never_removed() {
    let mut bob = Device::new(2);
    for seed in 10..13 {
        let mut alice = Device::new(seed);
        let mut a = alice.init(&bob.bundle(u16::MAX));
        let (_, plain) = bob
            .accept(&a.encrypt(b"hi"))
            .expect("last resort works every time");
        assert_eq!(plain, b"hi");
        assert!(bob.prekeys.contains_key(&PreKeyId::LAST_RESORT));
    }
}

#[test]
fn signed_bundles_verify_and_tampered_ones_are_refused() {
    let mut alice = Device::new(1);
    let bob = Device::new(2);
    let signed = bob.signed_bundle(4);
    assert_eq!(signed.verify(), BundleSignature::Valid);
    assert_eq!(bob.bundle(4).verify(), BundleSignature::Absent);
    // Signed by someone else: invalid.
    let mallory = IdentityKeyPair::from_seed(&[7; 32]);
    let prekey = PreKey::from_seed(PreKeyId(4), &[8; 32]);
    let forged = PreKeyBundle::signed(&mallory, &prekey).serialize();
    // Swap the identity for Bob's, keeping Mallory's signature.
    let mut bytes = forged.clone();
    let m = mallory.public_key().public_key().as_bytes().to_vec();
    let pos = bytes
        .windows(32)
        .position(|w| w == m)
        .expect("identity in bundle");
    bytes[pos..pos + 32].copy_from_slice(bob.identity.public_key().public_key().as_bytes());
    let forged = PreKeyBundle::deserialize(&bytes).expect("well-formed");
    assert_eq!(forged.verify(), BundleSignature::Invalid);
    let err = Session::init_from_bundle(&alice.identity, &forged, &mut alice.rng)
        .expect_err("invalid signature refused");
    assert!(matches!(err, ProteusError::InvalidSignature));
    assert_eq!(
        PreKeyBundle::deserialize(&signed.serialize()).expect("round trip"),
        signed
    );
}

#[test]
fn bundle_signature_as_bare_bytes_is_accepted() {
    let bob = Device::new(2);
    let signed = bob.signed_bundle(4);
    let bytes = signed.serialize();
    // Rewrite `4: {0: bytes(64)}` (a1 00 58 40 ..) as `4: bytes(64)` (58 40 ..).
    let at = bytes.len() - 64 - 4;
    assert_eq!(&bytes[at..at + 4], &[0xa1, 0x00, 0x58, 0x40]);
    let mut bare = bytes[..at].to_vec();
    bare.extend_from_slice(&bytes[at + 2..]);
    let decoded = PreKeyBundle::deserialize(&bare).expect("bare signature accepted");
    assert_eq!(decoded.verify(), BundleSignature::Valid);
    assert_eq!(
        decoded.serialize(),
        bytes,
        "written back in the canonical form"
    );
}

#[test]
fn duplicate_message_is_refused_and_changes_nothing() {
    let (_alice, mut a, mut bob, mut b) = established();
    let m = a.encrypt(b"once");
    assert_eq!(bob.decrypt(&mut b, &m).expect("first"), b"once");
    let before = same_state(&b);
    let err = bob.decrypt(&mut b, &m).expect_err("replay");
    assert!(matches!(err, ProteusError::DuplicateMessage), "{err}");
    assert_eq!(err.code(), 209);
    assert_eq!(same_state(&b), before);
}

#[test]
fn out_of_order_within_a_chain_each_key_used_once() {
    let (_alice, mut a, mut bob, mut b) = established();
    let msgs: Vec<_> = (0..10)
        .map(|i| a.encrypt(format!("m{i}").as_bytes()))
        .collect();
    for i in [9, 0, 5, 1, 8, 2, 3, 7, 4, 6] {
        assert_eq!(
            bob.decrypt(&mut b, &msgs[i]).expect("decrypts"),
            format!("m{i}").as_bytes()
        );
    }
    for m in &msgs {
        assert!(matches!(
            bob.decrypt(&mut b, m),
            Err(ProteusError::DuplicateMessage)
        ));
    }
}

#[test]
fn a_gap_of_exactly_1000_is_allowed_and_1001_is_too_distant() {
    let (_alice, mut a, mut bob, mut b) = established();
    let msgs: Vec<_> = (0..=MAX_COUNTER_GAP + 1)
        .map(|i| a.encrypt(&i.to_be_bytes()))
        .collect();
    let before = same_state(&b);
    let err = bob.decrypt(&mut b, &msgs[1001]).expect_err("gap of 1001");
    assert!(matches!(err, ProteusError::TooDistantFuture), "{err}");
    assert_eq!(err.code(), 212);
    assert_eq!(same_state(&b), before, "a refused message changes nothing");
    assert!(
        bob.decrypt(&mut b, &msgs[1000]).is_ok(),
        "gap of exactly 1000"
    );
    assert!(bob.decrypt(&mut b, &msgs[1001]).is_ok());
    assert!(
        bob.decrypt(&mut b, &msgs[0]).is_ok(),
        "skipped keys are kept"
    );
}

#[test]
fn only_1000_skipped_keys_are_kept_then_messages_are_outdated() {
    let (_alice, mut a, mut bob, mut b) = established();
    let msgs: Vec<_> = (0..=2000u32).map(|i| a.encrypt(&i.to_be_bytes())).collect();
    assert!(bob.decrypt(&mut b, &msgs[1000]).is_ok()); // keeps keys 0..=999
    assert!(bob.decrypt(&mut b, &msgs[2000]).is_ok()); // 1001..=1999 push out 0..=998
    let err = bob.decrypt(&mut b, &msgs[5]).expect_err("dropped key");
    assert!(matches!(err, ProteusError::OutdatedMessage), "{err}");
    assert_eq!(err.code(), 208);
    assert!(
        bob.decrypt(&mut b, &msgs[999]).is_ok(),
        "the newest 1000 skipped keys remain"
    );
    assert!(bob.decrypt(&mut b, &msgs[1500]).is_ok());
}

#[test]
fn tampered_message_fails_its_mac_and_changes_nothing() {
    let (_alice, mut a, mut bob, mut b) = established();
    let m = a.encrypt(b"integrity");
    let before = same_state(&b);
    for i in 0..m.len() {
        let mut bad = m.clone();
        bad[i] ^= 0x01;
        assert!(bob.decrypt(&mut b, &bad).is_err(), "byte {i} flipped");
    }
    assert_eq!(same_state(&b), before);
    assert_eq!(
        bob.decrypt(&mut b, &m).expect("original still decrypts"),
        b"integrity"
    );
}

#[test]
fn remote_identity_change_is_refused() {
    let (_alice, _a, mut bob, mut b) = established();
    let mut eve = Device::new(7);
    let mut e = eve.init(&bob.bundle(5));
    let err = bob
        .decrypt(&mut b, &e.encrypt(b"it's me"))
        .expect_err("other identity");
    assert!(matches!(err, ProteusError::RemoteIdentityChanged), "{err}");
    assert_eq!(err.code(), 204);
}

#[test]
fn unknown_session_tag_is_an_invalid_message() {
    let (mut alice, mut a, _bob, _b) = established();
    // Carol and Dave's established session: its tags mean nothing to Alice.
    let (_carol, mut c, _dave, _d) = established_between(3, 4);
    let err = alice
        .decrypt(&mut a, &c.encrypt(b"z"))
        .expect_err("other session");
    assert!(matches!(err, ProteusError::InvalidMessage(_)), "{err}");
    assert_eq!(err.code(), 207);
}

#[test]
fn ping_pong_ratchets_and_old_chains_expire_after_five() {
    let (mut alice, mut a, mut bob, mut b) = established();
    // A message from Bob's current chain, held back.
    let late = b.encrypt(b"late");
    for i in 0..MAX_RECV_CHAINS {
        let m = a.encrypt(format!("a{i}").as_bytes());
        bob.decrypt(&mut b, &m).expect("a->b");
        let m = b.encrypt(format!("b{i}").as_bytes());
        alice.decrypt(&mut a, &m).expect("b->a");
    }
    // Alice has since received five newer chains from Bob: the late one's chain is gone,
    // so its ratchet key looks new, derives the wrong keys and fails its MAC.
    let before = same_state(&a);
    let err = alice.decrypt(&mut a, &late).expect_err("chain dropped");
    assert!(matches!(err, ProteusError::InvalidSignature), "{err}");
    assert_eq!(same_state(&a), before);
}

#[test]
fn a_reset_starts_a_new_state_that_takes_over() {
    let (mut alice, mut a, mut bob, mut b) = established();
    let old_tag = b.session_tag();
    let in_flight = a.encrypt(b"sent before the reset");
    // Bob resets: a fresh session from a new bundle of Alice's.
    let mut b2 = bob.init(&alice.bundle(6));
    let m = b2.encrypt(b"reset");
    assert_eq!(alice.decrypt(&mut a, &m).expect("new state"), b"reset");
    assert_eq!(a.session_tag(), b2.session_tag(), "the new state encrypts");
    assert_eq!(a.state_count(), 2);
    assert_eq!(
        bob.decrypt(&mut b2, &a.encrypt(b"ack")).expect("ack"),
        b"ack"
    );
    // Bob's old session object still opens what was in flight on the old state.
    assert_eq!(
        bob.decrypt(&mut b, &in_flight).expect("old state"),
        b"sent before the reset"
    );
    assert_ne!(old_tag, b2.session_tag());
}

#[test]
fn concurrent_starts_converge_on_the_lower_session_tag() {
    for seed in 0..8u8 {
        let mut alice = Device::new(100 + seed);
        let mut bob = Device::new(200 + seed);
        let mut a = alice.init(&bob.bundle(1));
        let mut b = bob.init(&alice.bundle(1));
        let (ta, tb) = (a.session_tag(), b.session_tag());
        let from_a = a.encrypt(b"from alice");
        let from_b = b.encrypt(b"from bob");
        assert_eq!(
            bob.decrypt(&mut b, &from_a).expect("a's prekey message"),
            b"from alice"
        );
        assert_eq!(
            alice.decrypt(&mut a, &from_b).expect("b's prekey message"),
            b"from bob"
        );
        let winner = ta.min(tb);
        assert_eq!(a.session_tag(), winner);
        assert_eq!(b.session_tag(), winner);
        for i in 0..3 {
            let m = a.encrypt(format!("{i}").as_bytes());
            assert!(bob.decrypt(&mut b, &m).is_ok());
            let m = b.encrypt(format!("{i}").as_bytes());
            assert!(alice.decrypt(&mut a, &m).is_ok());
        }
        assert_eq!((a.session_tag(), b.session_tag()), (winner, winner));
    }
}

#[test]
fn a_peer_that_reset_before_answering_is_followed_not_stuck() {
    for seed in 0..8u8 {
        let mut alice = Device::new(100 + seed);
        let mut bob = Device::new(200 + seed);
        // Bob starts; Alice receives it (consuming her prekey) but never answers.
        let mut b = bob.init(&alice.bundle(1));
        let (_lost, _) = alice.accept(&b.encrypt(b"hello")).expect("opens");
        // Alice resets: a new session from Bob's bundle, state unknown to Bob.
        let mut a = alice.init(&bob.bundle(2));
        bob.decrypt(&mut b, &a.encrypt(b"after reset 1"))
            .expect("new state");
        // Whatever the tie-break said, a second prekey message on Alice's state makes
        // Bob follow it, and the conversation flows.
        bob.decrypt(&mut b, &a.encrypt(b"after reset 2"))
            .expect("same state");
        assert_eq!(b.session_tag(), a.session_tag());
        let reply = b.encrypt(b"reply");
        assert_eq!(
            alice.decrypt(&mut a, &reply).expect("Alice can read it"),
            b"reply"
        );
    }
}

#[test]
fn at_most_100_session_states_are_kept() {
    let (mut alice, _a, mut bob, mut b) = established();
    for _ in 0..(MAX_SESSION_STATES + 5) {
        let mut a = alice.init(&bob.bundle(u16::MAX));
        bob.decrypt(&mut b, &a.encrypt(b"reset"))
            .expect("new state");
        assert_eq!(b.session_tag(), a.session_tag());
    }
    assert_eq!(b.state_count(), MAX_SESSION_STATES);
}

fn chacha20_rng(seed: u64) -> chacha20::ChaCha20Rng {
    use rand_core::SeedableRng;
    chacha20::ChaCha20Rng::seed_from_u64(seed)
}

#[test]
fn sessions_survive_storage_round_trips_mid_conversation() {
    let (mut alice, mut a, mut bob, mut b) = established();
    let held = a.encrypt(b"held back");
    for i in 0..4 {
        let m = a.encrypt(format!("{i}").as_bytes());
        bob.decrypt(&mut b, &m).expect("a->b");
        b = Session::deserialize(&b.serialize()).expect("round trip");
        let m = b.encrypt(format!("{i}").as_bytes());
        alice.decrypt(&mut a, &m).expect("b->a");
        a = Session::deserialize(&a.serialize()).expect("round trip");
    }
    assert_eq!(
        bob.decrypt(&mut b, &held)
            .expect("skipped key survived storage"),
        b"held back"
    );
    assert_eq!(
        Session::deserialize(&b.serialize())
            .expect("rt")
            .serialize(),
        b.serialize()
    );
}

#[test]
fn identities_and_prekeys_round_trip_and_mismatched_halves_are_refused() {
    let id = IdentityKeyPair::from_seed(&[5; 32]);
    let bytes = id.serialize();
    let back = IdentityKeyPair::deserialize(&bytes).expect("round trip");
    assert_eq!(back.public_key(), id.public_key());
    // Replace the public half with another key's.
    let other = IdentityKeyPair::from_seed(&[6; 32]);
    let mut bad = bytes.to_vec();
    let n = bad.len();
    bad[n - 32..].copy_from_slice(other.public_key().public_key().as_bytes());
    assert!(IdentityKeyPair::deserialize(&bad).is_err());

    let pk = PreKey::from_seed(PreKeyId(77), &[9; 32]);
    let back = PreKey::deserialize(&pk.serialize()).expect("round trip");
    assert_eq!(back.id(), PreKeyId(77));
    assert_eq!(back.public_key(), pk.public_key());
    // Debug shows the public key and never the seed, in any of the usual renderings.
    for shown in [
        format!("{id:?}"),
        format!("{pk:?}"),
        format!("{:?}", KeyPair::from_seed(&[5; 32])),
    ] {
        assert!(shown.contains("PublicKey("), "{shown}");
        assert!(
            !shown.contains(&hex::encode([5u8; 8])),
            "seed as hex in {shown}"
        );
        assert!(
            !shown.contains("5, 5, 5, 5"),
            "seed as a byte list in {shown}"
        );
    }
}

#[test]
fn prekey_batches_continue_and_never_produce_the_last_resort_id() {
    let mut rng = chacha20_rng(1);
    let batch = PreKey::generate_batch(65530, 10, &mut rng);
    let ids: Vec<u16> = batch.iter().map(|p| p.id().0).collect();
    assert_eq!(ids, [65530, 65531, 65532, 65533, 65534, 0, 1, 2, 3, 4]);
}

#[test]
fn fingerprints_are_hex_and_grouped_by_four() {
    let id = IdentityKeyPair::from_seed(&[5; 32]);
    let fp = id.public_key().fingerprint();
    assert_eq!(fp.len(), 64);
    assert_eq!(fp, hex::encode(id.public_key().public_key().as_bytes()));
    let human = id.public_key().fingerprint_human();
    assert_eq!(human.split(' ').count(), 16);
    assert_eq!(human.replace(' ', ""), fp);
}

#[test]
fn degenerate_public_keys_are_refused() {
    let mut alice = Device::new(1);
    let bob = IdentityKeyPair::from_seed(&[2; 32]);
    // The identity point (0, 1): a valid encoding of small order.
    let mut small = [0u8; 32];
    small[0] = 1;
    let mut bundle =
        PreKeyBundle::new(bob.public_key(), &PreKey::from_seed(PreKeyId(1), &[3; 32])).serialize();
    let target = PreKey::from_seed(PreKeyId(1), &[3; 32])
        .public_key()
        .as_bytes()
        .to_vec();
    let pos = bundle
        .windows(32)
        .position(|w| w == target)
        .expect("prekey in bundle");
    bundle[pos..pos + 32].copy_from_slice(&small);
    let bundle = PreKeyBundle::deserialize(&bundle).expect("well-formed");
    let err = Session::init_from_bundle(&alice.identity, &bundle, &mut alice.rng)
        .expect_err("degenerate");
    assert!(matches!(err, ProteusError::DegenerateKey), "{err}");
    assert_eq!(err.code(), 100);
}

#[test]
fn an_unanswered_state_wins_a_tie_only_once() {
    let mut ties_seen = 0;
    for seed in 0..16u8 {
        let mut alice = Device::new(100 + seed);
        let mut bob = Device::new(200 + seed);
        // Alice starts; Bob takes her prekey message, then loses that session.
        let mut a = alice.init(&bob.bundle(1));
        let (_lost, _) = bob.accept(&a.encrypt(b"hello")).expect("opens");
        let ours = a.session_tag();
        // Bob starts over twice; Alice's state is still unanswered both times.
        for attempt in 0..2 {
            let mut b = bob.init(&alice.bundle(1 + attempt));
            alice
                .decrypt(&mut a, &b.encrypt(b"fresh start"))
                .expect("new state");
            let kept_ours = a.session_tag() == ours;
            if attempt == 0 {
                assert_eq!(
                    kept_ours,
                    ours < b.session_tag(),
                    "first time: the lower tag wins"
                );
                ties_seen += usize::from(kept_ours);
            } else {
                assert_eq!(
                    a.session_tag(),
                    b.session_tag(),
                    "second time: follow the peer"
                );
                let m = a.encrypt(b"back on track");
                assert_eq!(
                    bob.decrypt(&mut b, &m).expect("Bob can read it"),
                    b"back on track"
                );
            }
        }
    }
    assert!(ties_seen > 0, "some seed exercised a won tie");
}
