//! Parley's Proteus and vodozemac's Olm, Matrix's double ratchet, side by side doing
//! the same work in an established session, each with its wire encoding: 1 KiB
//! encrypted and decrypted one way, and 1 KiB ping-pong (a DH ratchet step per
//! message). Proteus alone, with set-up, 64 KiB and the primitives, is
//! `cargo bench -p parley-proteus`.
//!
//! `cargo bench -p parley-bench-compare`

use std::collections::HashMap;
use std::hint::black_box;

use chacha20::ChaCha20Rng;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use parley_proteus::{IdentityKeyPair, PreKey, PreKeyBundle, PreKeyId, Session};
use rand_core::SeedableRng;
use vodozemac::olm::{Account, OlmMessage, SessionConfig};

const KIB: usize = 1024;

struct Proteus {
    alice: IdentityKeyPair,
    bob: IdentityKeyPair,
    a: Session,
    b: Session,
    rng: ChaCha20Rng,
    none: HashMap<PreKeyId, PreKey>,
}

fn proteus_established() -> Proteus {
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let alice = IdentityKeyPair::generate(&mut rng);
    let bob = IdentityKeyPair::generate(&mut rng);
    let prekey = PreKey::generate(PreKeyId(1), &mut rng);
    let mut store = HashMap::from([(prekey.id(), prekey.clone())]);
    let mut a = Session::init_from_bundle(
        &alice,
        &PreKeyBundle::new(bob.public_key(), &prekey),
        &mut rng,
    )
    .expect("bundle");
    let (mut b, _) =
        Session::init_from_message(&bob, &mut store, &mut rng, &a.encrypt(b"hi")).expect("opens");
    a.decrypt(&alice, &mut HashMap::new(), &mut rng, &b.encrypt(b"yo"))
        .expect("reply");
    Proteus {
        alice,
        bob,
        a,
        b,
        rng,
        none: HashMap::new(),
    }
}

fn olm_established() -> (vodozemac::olm::Session, vodozemac::olm::Session) {
    let alice = Account::new();
    let mut bob = Account::new();
    bob.generate_one_time_keys(1);
    let otk = *bob.one_time_keys().values().next().expect("one key");
    let mut a = alice
        .create_outbound_session(SessionConfig::version_1(), bob.curve25519_key(), otk)
        .expect("outbound");
    let OlmMessage::PreKey(m) = a.encrypt(b"hi").expect("encrypts") else {
        unreachable!("the first message is a pre-key message")
    };
    let mut b = bob
        .create_inbound_session(SessionConfig::version_1(), alice.curve25519_key(), &m)
        .expect("inbound")
        .session;
    let reply = b.encrypt(b"yo").expect("encrypts");
    a.decrypt(&reply).expect("reply");
    (a, b)
}

/// Olm's encrypt, its wire bytes, and decrypt from those bytes.
fn olm_send(
    from: &mut vodozemac::olm::Session, to: &mut vodozemac::olm::Session, pt: &[u8],
) -> Vec<u8> {
    let (kind, bytes) = from.encrypt(pt).expect("encrypts").to_parts();
    let msg = OlmMessage::from_parts(kind, black_box(&bytes)).expect("parses");
    to.decrypt(&msg).expect("decrypts")
}

fn one_way(c: &mut Criterion) {
    let mut g = c.benchmark_group("encrypt_decrypt_one_way_1KiB");
    let plaintext = vec![0x5au8; KIB];
    g.throughput(Throughput::Bytes(KIB as u64));
    let mut p = proteus_established();
    g.bench_function("proteus", |bench| {
        bench.iter(|| {
            let env = p.a.encrypt(black_box(&plaintext));
            p.b.decrypt(&p.bob, &mut p.none, &mut p.rng, &env)
                .expect("decrypts")
        })
    });
    let (mut a, mut b) = olm_established();
    g.bench_function("vodozemac_olm", |bench| {
        bench.iter(|| olm_send(&mut a, &mut b, black_box(&plaintext)))
    });
    g.finish();
}

fn ping_pong(c: &mut Criterion) {
    let mut g = c.benchmark_group("ping_pong_1KiB");
    let plaintext = vec![0x5au8; KIB];
    g.throughput(Throughput::Bytes(2 * KIB as u64));
    let mut p = proteus_established();
    g.bench_function("proteus", |bench| {
        bench.iter(|| {
            let env = p.a.encrypt(black_box(&plaintext));
            p.b.decrypt(&p.bob, &mut p.none, &mut p.rng, &env)
                .expect("a->b");
            let env = p.b.encrypt(black_box(&plaintext));
            p.a.decrypt(&p.alice, &mut p.none, &mut p.rng, &env)
                .expect("b->a")
        })
    });
    let (mut a, mut b) = olm_established();
    g.bench_function("vodozemac_olm", |bench| {
        bench.iter(|| {
            olm_send(&mut a, &mut b, black_box(&plaintext));
            olm_send(&mut b, &mut a, black_box(&plaintext))
        })
    });
    g.finish();
}

criterion_group!(benches, one_way, ping_pong);
criterion_main!(benches);
