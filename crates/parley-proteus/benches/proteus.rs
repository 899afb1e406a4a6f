//! Proteus speed: session set-up, encrypt+decrypt in an established session (1 KiB and
//! 64 KiB, one way) and ping-pong (a DH ratchet step per message); and the primitives
//! they are made of (X25519, ChaCha20 over 1 KiB, HMAC-SHA256 over 1 KiB).
//!
//! `cargo bench -p parley-proteus`
//!
//! vodozemac's Olm doing the same work, for comparison, is measured apart, in
//! `parley-bench-compare` (so that no build of this crate compiles vodozemac).

use std::collections::HashMap;
use std::hint::black_box;

use chacha20::ChaCha20Legacy;
use chacha20::ChaCha20Rng;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use parley_proteus::{IdentityKeyPair, PreKey, PreKeyBundle, PreKeyId, Session};
use rand_core::SeedableRng;
use sha2::Sha256;

const KIB: usize = 1024;

struct Pair {
    alice: IdentityKeyPair,
    bob: IdentityKeyPair,
    a: Session,
    b: Session,
    rng: ChaCha20Rng,
    none: HashMap<PreKeyId, PreKey>,
}

fn established() -> Pair {
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
    Pair {
        alice,
        bob,
        a,
        b,
        rng,
        none: HashMap::new(),
    }
}

fn primitives(c: &mut Criterion) {
    let mut g = c.benchmark_group("primitives");
    let secret = x25519_dalek::StaticSecret::from([7u8; 32]);
    let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([9u8; 32]));
    g.bench_function("x25519", |b| {
        b.iter(|| black_box(&secret).diffie_hellman(black_box(&public)))
    });
    let ed = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]).verifying_key();
    g.bench_function("edwards_mul_clamped_to_montgomery", |b| {
        b.iter(|| {
            black_box(ed.to_edwards())
                .mul_clamped(black_box([7u8; 32]))
                .to_montgomery()
        })
    });
    g.bench_function("ed25519_decompress", |b| {
        b.iter(|| ed25519_dalek::VerifyingKey::from_bytes(black_box(ed.as_bytes())))
    });
    g.bench_function("ed25519_keygen", |b| {
        b.iter(|| ed25519_dalek::SigningKey::from_bytes(black_box(&[3u8; 32])).verifying_key())
    });
    let mut data = vec![0u8; KIB];
    g.throughput(Throughput::Bytes(KIB as u64));
    g.bench_function("chacha20_1KiB", |b| {
        b.iter(|| {
            let mut c = ChaCha20Legacy::new(&[1u8; 32].into(), &[0u8; 8].into());
            c.apply_keystream(black_box(&mut data));
        })
    });
    g.bench_function("hmac_sha256_1KiB", |b| {
        b.iter(|| {
            let mut m =
                <Hmac<Sha256> as KeyInit>::new_from_slice(&[2u8; 32]).expect("any key length");
            m.update(black_box(&data));
            black_box(m.finalize())
        })
    });
    // The per-message key schedule: a chain step is HMAC-SHA256 over one byte (twice,
    // from one keyed state) and HKDF-SHA256 to 64 bytes.
    g.throughput(Throughput::Elements(1));
    g.bench_function("hmac_sha256_1B", |b| {
        b.iter(|| {
            let mut m =
                <Hmac<Sha256> as KeyInit>::new_from_slice(&[2u8; 32]).expect("any key length");
            m.update(black_box(b"0"));
            black_box(m.finalize())
        })
    });
    g.bench_function("hkdf_sha256_64B", |b| {
        b.iter(|| {
            let mut okm = [0u8; 64];
            hkdf::Hkdf::<Sha256>::new(Some(&[]), black_box(&[3u8; 32]))
                .expand(b"hash_ratchet", &mut okm)
                .expect("64 bytes");
            black_box(okm)
        })
    });
    g.finish();
}

fn proteus(c: &mut Criterion) {
    let mut g = c.benchmark_group("proteus");
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    let alice = IdentityKeyPair::generate(&mut rng);
    let bob = IdentityKeyPair::generate(&mut rng);
    let bundle = PreKeyBundle::new(bob.public_key(), &PreKey::generate(PreKeyId(1), &mut rng));
    g.bench_function("setup_from_bundle", |b| {
        b.iter(|| Session::init_from_bundle(&alice, black_box(&bundle), &mut rng).expect("bundle"))
    });
    for size in [KIB, 64 * KIB] {
        let mut p = established();
        let plaintext = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(
            BenchmarkId::new("encrypt_decrypt_one_way", size),
            &plaintext,
            |b, pt| {
                b.iter(|| {
                    let env = p.a.encrypt(black_box(pt));
                    p.b.decrypt(&p.bob, &mut p.none, &mut p.rng, &env)
                        .expect("decrypts")
                })
            },
        );
    }
    let mut p = established();
    let plaintext = vec![0x5au8; KIB];
    g.throughput(Throughput::Bytes(2 * KIB as u64));
    g.bench_function("ping_pong_1KiB", |b| {
        b.iter(|| {
            let env = p.a.encrypt(black_box(&plaintext));
            p.b.decrypt(&p.bob, &mut p.none, &mut p.rng, &env)
                .expect("a->b");
            let env = p.b.encrypt(black_box(&plaintext));
            p.a.decrypt(&p.alice, &mut p.none, &mut p.rng, &env)
                .expect("b->a")
        })
    });
    g.finish();
}

criterion_group!(benches, primitives, proteus);
criterion_main!(benches);
