//! Parley's MLS next to OpenMLS (with its RustCrypto provider) doing the
//! same work on suite 0x0001 (X25519, AES-128-GCM, Ed25519), at group sizes
//! 2, 10, 100 and 1,000: a commit adding one device, processing a commit,
//! joining from a welcome, and an application message encrypted and
//! decrypted. They do not pay for state alike: Parley's `Member` loads its
//! group from the rows it hands to the device's database before every
//! operation and writes it back after (several processes may share a
//! device), while OpenMLS writes its changes to its provider's storage but
//! keeps the group itself in memory. Parley's commit-add-one also decodes
//! and validates the key package each time; OpenMLS is handed a validated
//! one.
//!
//! `cargo bench -p parley-bench-compare --bench openmls`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use openmls::prelude::DeserializeBytes as _;
use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::{
    BasicCredential, Ciphersuite, CredentialWithKey, KeyPackage, LeafNodeParameters,
    MIXED_PLAINTEXT_WIRE_FORMAT_POLICY, MlsGroup, MlsGroupCreateConfig, MlsGroupJoinConfig,
    MlsMessageBodyIn, MlsMessageIn, ProcessedMessageContent, SenderRatchetConfiguration,
    StagedWelcome,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::OpenMlsProvider as _;
use parley_api::{ClientId, UserId};
use parley_mls::delivery::CommitBundle;
use parley_mls::{Changes, CipherSuite, DeviceIdentity, DeviceKeys, Member, MemberState};

const SIZES: [usize; 4] = [2, 10, 100, 1000];
const LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
const GROUP: &[u8] = b"bench group";
const SUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

#[expect(
    clippy::disallowed_methods,
    reason = "mls-rs checks key package lifetimes against the system clock"
)]
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

// --- Parley -----------------------------------------------------------------

fn keys(n: u64) -> DeviceKeys {
    let id = DeviceIdentity {
        user: UserId(uuid::Uuid::from_u128(u128::from(n) + 1)),
        client: ClientId(n + 1),
        domain: "example.com".into(),
    };
    DeviceKeys::generate(id, CipherSuite::X25519_AES128).expect("keys")
}

fn member(n: u64) -> Member {
    Member::new(keys(n), MemberState::default(), LIFETIME)
}

fn key_package(m: &Member) -> Vec<u8> {
    m.key_packages(1, now()).expect("a key package").remove(0)
}

fn welcome_of(bundle: &[u8]) -> Vec<u8> {
    CommitBundle::decode(bundle)
        .expect("bundle")
        .welcome
        .expect("a welcome")
        .0
}

/// A creator and one receiver in a Parley group of `n` (the others only
/// fill it).
fn parley_group(n: usize) -> (Member, Member) {
    let (creator, receiver) = (member(0), member(1));
    let server = parley_mls::RemovalKey::generate(
        CipherSuite::X25519_AES128
            .signature_scheme()
            .expect("a selectable suite"),
    )
    .expect("a key")
    .sender("example.com");
    creator.create(GROUP, &server).expect("created");
    let mut add = vec![key_package(&receiver)];
    add.extend((0..n - 2).map(|i| key_package(&member(1000 + i as u64))));
    let bundle = creator
        .commit(
            GROUP,
            &Changes {
                add,
                remove: Vec::new(),
            },
        )
        .expect("commit");
    creator.confirm(GROUP).expect("merged");
    receiver.join(GROUP, &welcome_of(&bundle)).expect("joins");
    (creator, receiver)
}

fn parley(c: &mut Criterion, n: usize) {
    let mut g = c.benchmark_group("suite-1");
    g.sample_size(10);
    let (creator, receiver) = parley_group(n);
    let extra = key_package(&member(9000));
    g.bench_with_input(BenchmarkId::new("commit-add-one/parley", n), &n, |b, _| {
        b.iter(|| {
            let changes = Changes {
                add: vec![extra.clone()],
                remove: Vec::new(),
            };
            let bundle = creator.commit(GROUP, &changes).expect("commit");
            creator.cancel(GROUP).expect("dropped");
            black_box(bundle)
        });
    });
    // The creator's self-updates, each processed by the receiver: both move
    // on one epoch per iteration.
    g.bench_with_input(BenchmarkId::new("process-commit/parley", n), &n, |b, _| {
        b.iter_batched(
            || {
                let bundle = creator.commit(GROUP, &Changes::default()).expect("update");
                creator.confirm(GROUP).expect("merged");
                CommitBundle::decode(&bundle).expect("bundle").commit
            },
            |commit| black_box(receiver.process(GROUP, &commit).expect("follows")),
            BatchSize::LargeInput,
        );
    });
    g.bench_with_input(BenchmarkId::new("welcome/parley", n), &n, |b, _| {
        b.iter_batched(
            || {
                let joiner = member(5000);
                let changes = Changes {
                    add: vec![key_package(&joiner)],
                    remove: Vec::new(),
                };
                let bundle = creator.commit(GROUP, &changes).expect("commit");
                creator.cancel(GROUP).expect("dropped");
                (joiner, welcome_of(&bundle))
            },
            |(joiner, welcome)| black_box(joiner.join(GROUP, &welcome).expect("joins")),
            BatchSize::LargeInput,
        );
    });
    let text = [7u8; 100];
    g.bench_with_input(BenchmarkId::new("application/parley", n), &n, |b, _| {
        b.iter(|| {
            let m = creator.encrypt(GROUP, &text).expect("encrypts");
            black_box(receiver.process(GROUP, &m).expect("decrypts"))
        });
    });
    g.finish();
}

// --- OpenMLS ----------------------------------------------------------------

/// A device of OpenMLS's: its own provider (its storage holds its groups
/// and key packages' private parts) and signature keys.
struct Device {
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
}

fn device(name: &str) -> Device {
    let provider = OpenMlsRustCrypto::default();
    let signer = SignatureKeyPair::new(SUITE.signature_algorithm()).expect("keys");
    signer.store(provider.storage()).expect("stored");
    let credential = CredentialWithKey {
        credential: BasicCredential::new(name.as_bytes().to_vec()).into(),
        signature_key: signer.to_public_vec().into(),
    };
    Device {
        provider,
        signer,
        credential,
    }
}

fn openmls_key_package(d: &Device) -> KeyPackage {
    KeyPackage::builder()
        .build(SUITE, &d.provider, &d.signer, d.credential.clone())
        .expect("a key package")
        .key_package()
        .clone()
}

/// As Parley's groups are: handshakes in the clear (the Delivery Service
/// checks them), application messages encrypted, the whitepaper's sender
/// ratchet settings.
fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .use_ratchet_tree_extension(true)
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .sender_ratchet_configuration(SenderRatchetConfiguration::new(2, 1000))
        .build()
}

fn joined(d: &Device, welcome: openmls::prelude::MlsMessageOut) -> MlsGroup {
    let bytes = welcome.tls_serialize_detached().expect("encodes");
    let MlsMessageBodyIn::Welcome(welcome) = MlsMessageIn::tls_deserialize_exact_bytes(&bytes)
        .expect("decodes")
        .extract()
    else {
        panic!("not a welcome");
    };
    StagedWelcome::new_from_welcome(&d.provider, &join_config(), welcome, None)
        .expect("staged")
        .into_group(&d.provider)
        .expect("joins")
}

fn process(d: &Device, group: &mut MlsGroup, message: &openmls::prelude::MlsMessageOut) -> bool {
    let bytes = message.tls_serialize_detached().expect("encodes");
    let message = MlsMessageIn::tls_deserialize_exact_bytes(&bytes)
        .expect("decodes")
        .try_into_protocol_message()
        .expect("a protocol message");
    let processed = group
        .process_message(&d.provider, message)
        .expect("processes");
    match processed.into_content() {
        ProcessedMessageContent::StagedCommitMessage(commit) => {
            group
                .merge_staged_commit(&d.provider, *commit)
                .expect("merged");
            true
        }
        ProcessedMessageContent::ApplicationMessage(m) => !m.into_bytes().is_empty(),
        _ => false,
    }
}

fn openmls(c: &mut Criterion, n: usize) {
    let mut g = c.benchmark_group("suite-1");
    g.sample_size(10);
    let (creator, receiver) = (device("creator"), device("receiver"));
    let config = MlsGroupCreateConfig::builder()
        .ciphersuite(SUITE)
        .use_ratchet_tree_extension(true)
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .sender_ratchet_configuration(SenderRatchetConfiguration::new(2, 1000))
        .build();
    let mut group = MlsGroup::new(
        &creator.provider,
        &creator.signer,
        &config,
        creator.credential.clone(),
    )
    .expect("created");
    // (Each its own signature key: OpenMLS refuses two leaves sharing one.)
    let mut add = vec![openmls_key_package(&receiver)];
    add.extend((0..n - 2).map(|i| openmls_key_package(&device(&format!("filler {i}")))));
    let (_, welcome, _) = group
        .add_members(&creator.provider, &creator.signer, &add)
        .expect("commit");
    group
        .merge_pending_commit(&creator.provider)
        .expect("merged");
    let mut theirs = joined(&receiver, welcome);
    let extra = openmls_key_package(&device("extra"));

    g.bench_with_input(BenchmarkId::new("commit-add-one/openmls", n), &n, |b, _| {
        b.iter(|| {
            let out = group
                .add_members(
                    &creator.provider,
                    &creator.signer,
                    std::slice::from_ref(&extra),
                )
                .expect("commit");
            group
                .clear_pending_commit(creator.provider.storage())
                .expect("dropped");
            black_box(out)
        });
    });
    g.bench_with_input(BenchmarkId::new("process-commit/openmls", n), &n, |b, _| {
        b.iter_batched(
            || {
                let out = group
                    .self_update(
                        &creator.provider,
                        &creator.signer,
                        LeafNodeParameters::default(),
                    )
                    .expect("update");
                group
                    .merge_pending_commit(&creator.provider)
                    .expect("merged");
                out.into_contents().0
            },
            |commit| black_box(process(&receiver, &mut theirs, &commit)),
            BatchSize::LargeInput,
        );
    });
    g.bench_with_input(BenchmarkId::new("welcome/openmls", n), &n, |b, _| {
        b.iter_batched(
            || {
                let joiner = device("joiner");
                let (_, welcome, _) = group
                    .add_members(
                        &creator.provider,
                        &creator.signer,
                        &[openmls_key_package(&joiner)],
                    )
                    .expect("commit");
                group
                    .clear_pending_commit(creator.provider.storage())
                    .expect("dropped");
                (joiner, welcome)
            },
            |(joiner, welcome)| black_box(joined(&joiner, welcome)),
            BatchSize::LargeInput,
        );
    });
    let text = [7u8; 100];
    g.bench_with_input(BenchmarkId::new("application/openmls", n), &n, |b, _| {
        b.iter(|| {
            let m = group
                .create_message(&creator.provider, &creator.signer, &text)
                .expect("encrypts");
            black_box(process(&receiver, &mut theirs, &m))
        });
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    for n in SIZES {
        parley(c, n);
        openmls(c, n);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
