//! MLS speed as a device pays it: Parley's [`Member`] (which loads a group's
//! state before each operation and writes it back after, so that it can be
//! committed to the device's database) next to the same mls-rs calls on a
//! group held in memory, at group sizes 2, 10, 100 and 1,000 on the default
//! suite (0x0002): a commit adding one device, processing a commit, joining
//! from a welcome, and an application message encrypted and decrypted.
//!
//! `cargo bench -p parley-mls`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use mls_rs::client_builder::MlsConfig;
use mls_rs::{Client, ExtensionList, Group, MlsMessage};
use parley_api::{ClientId, UserId};
use parley_mls::delivery::CommitBundle;
use parley_mls::{Changes, CipherSuite, DeviceIdentity, DeviceKeys, Member, MemberState};

const SIZES: [usize; 4] = [2, 10, 100, 1000];
const LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
const GROUP: &[u8] = b"bench group";

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

fn keys(n: u64) -> DeviceKeys {
    let id = DeviceIdentity {
        user: UserId(uuid::Uuid::from_u128(u128::from(n) + 1)),
        client: ClientId(n + 1),
        domain: "example.com".into(),
    };
    DeviceKeys::generate(id, CipherSuite::DEFAULT).expect("keys")
}

/// Key packages of `count` devices that only fill the group.
fn filler(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            keys(1000 + i as u64)
                .key_packages(1, now(), LIFETIME)
                .expect("a key package")
                .remove(0)
        })
        .collect()
}

fn copy(m: &Member) -> Member {
    let state = MemberState::default();
    for (kind, _, bytes) in m.state().rows() {
        state.load_row(kind, &bytes).expect("reads back");
    }
    Member::new(m.keys().clone(), state, LIFETIME)
}

/// Parley's side: a creator and one receiver in a group of `n`.
fn parley_group(n: usize) -> (Member, Member) {
    let creator = Member::new(keys(0), MemberState::default(), LIFETIME);
    let receiver = Member::new(keys(1), MemberState::default(), LIFETIME);
    let server = parley_mls::RemovalKey::generate(
        CipherSuite::DEFAULT
            .signature_scheme()
            .expect("a selectable suite"),
    )
    .expect("a key")
    .sender("example.com");
    creator.create(GROUP, &server).expect("created");
    let mut add = receiver.key_packages(1, now()).expect("kp");
    add.extend(filler(n - 2));
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
    let welcome = CommitBundle::decode(&bundle)
        .expect("bundle")
        .welcome
        .expect("welcome");
    receiver.join(GROUP, &welcome.0).expect("joins");
    (creator, receiver)
}

/// The raw side: the same group with mls-rs's groups held in memory.
fn raw_group<C: MlsConfig + Clone>(
    creator: &Client<C>, receiver: &Client<C>, n: usize,
) -> (Group<C>, Group<C>) {
    let mut group = creator
        .create_group_with_id(
            GROUP.to_vec(),
            ExtensionList::new(),
            ExtensionList::new(),
            None,
        )
        .expect("created");
    let mut builder = group.commit_builder();
    let own = receiver
        .generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
        .expect("kp");
    builder = builder.add_member(own).expect("add");
    for kp in filler(n - 2) {
        builder = builder
            .add_member(MlsMessage::from_bytes(&kp).expect("kp"))
            .expect("add");
    }
    let out = builder.build().expect("commit");
    group.apply_pending_commit().expect("merged");
    let (joined, _) = receiver
        .join_group(None, &out.welcome_messages[0], None)
        .expect("joins");
    (group, joined)
}

/// A device's key package that no group of the bench holds.
fn one_more() -> Vec<u8> {
    keys(9000)
        .key_packages(1, now(), LIFETIME)
        .expect("a key package")
        .remove(0)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("mls");
    g.sample_size(20);
    for n in SIZES {
        let (creator, receiver) = parley_group(n);
        let (raw_creator_client, raw_receiver_client) =
            (keys(0).member(LIFETIME), keys(1).member(LIFETIME));
        let (mut raw_creator, raw_receiver) =
            raw_group(&raw_creator_client, &raw_receiver_client, n);
        let kp = one_more();
        let kp_message = MlsMessage::from_bytes(&kp).expect("kp");

        g.bench_with_input(BenchmarkId::new("commit-add-one/parley", n), &n, |b, _| {
            b.iter(|| {
                let bundle = creator
                    .commit(
                        GROUP,
                        &Changes {
                            add: vec![kp.clone()],
                            remove: Vec::new(),
                        },
                    )
                    .expect("commit");
                creator.cancel(GROUP).expect("dropped");
                black_box(bundle)
            });
        });
        g.bench_with_input(BenchmarkId::new("commit-add-one/mls-rs", n), &n, |b, _| {
            b.iter(|| {
                let out = raw_creator
                    .commit_builder()
                    .add_member(kp_message.clone())
                    .expect("add")
                    .build()
                    .expect("commit");
                raw_creator.clear_pending_commit();
                black_box(out)
            });
        });

        // A self-update by the creator, processed by the receiver.
        let update = creator.commit(GROUP, &Changes::default()).expect("update");
        creator.cancel(GROUP).expect("dropped");
        let update = CommitBundle::decode(&update).expect("bundle").commit;
        let raw_update = raw_creator
            .commit_builder()
            .build()
            .expect("update")
            .commit_message;
        raw_creator.clear_pending_commit();
        g.bench_with_input(BenchmarkId::new("process-commit/parley", n), &n, |b, _| {
            b.iter_batched(
                || copy(&receiver),
                |r| black_box(r.process(GROUP, &update).expect("follows")),
                BatchSize::LargeInput,
            );
        });
        g.bench_with_input(BenchmarkId::new("process-commit/mls-rs", n), &n, |b, _| {
            b.iter_batched(
                || raw_receiver.clone(),
                |mut r| {
                    black_box(
                        r.process_incoming_message(raw_update.clone())
                            .expect("follows"),
                    )
                },
                BatchSize::LargeInput,
            );
        });

        // Joining from a welcome (a fresh device each time).
        g.bench_with_input(BenchmarkId::new("welcome/parley", n), &n, |b, _| {
            b.iter_batched(
                || {
                    let joiner = Member::new(keys(5000), MemberState::default(), LIFETIME);
                    let kp = joiner.key_packages(1, now()).expect("kp");
                    let bundle = creator
                        .commit(
                            GROUP,
                            &Changes {
                                add: kp,
                                remove: Vec::new(),
                            },
                        )
                        .expect("commit");
                    creator.cancel(GROUP).expect("dropped");
                    let welcome = CommitBundle::decode(&bundle)
                        .expect("bundle")
                        .welcome
                        .expect("welcome");
                    (joiner, welcome.0)
                },
                |(joiner, welcome)| black_box(joiner.join(GROUP, &welcome).expect("joins")),
                BatchSize::LargeInput,
            );
        });
        g.bench_with_input(BenchmarkId::new("welcome/mls-rs", n), &n, |b, _| {
            b.iter_batched(
                || {
                    let joiner = keys(5000).member(LIFETIME);
                    let kp = joiner
                        .generate_key_package_message(
                            ExtensionList::new(),
                            ExtensionList::new(),
                            None,
                        )
                        .expect("kp");
                    let out = raw_creator
                        .commit_builder()
                        .add_member(kp)
                        .expect("add")
                        .build()
                        .expect("commit");
                    raw_creator.clear_pending_commit();
                    (joiner, out.welcome_messages[0].clone())
                },
                |(joiner, welcome)| {
                    black_box(joiner.join_group(None, &welcome, None).expect("joins"))
                },
                BatchSize::LargeInput,
            );
        });

        // An application message of 100 bytes, encrypted and decrypted.
        let text = [7u8; 100];
        g.bench_with_input(BenchmarkId::new("application/parley", n), &n, |b, _| {
            b.iter(|| {
                let m = creator.encrypt(GROUP, &text).expect("encrypts");
                black_box(receiver.process(GROUP, &m).expect("decrypts"))
            });
        });
        let mut raw_receiver = raw_receiver;
        g.bench_with_input(BenchmarkId::new("application/mls-rs", n), &n, |b, _| {
            b.iter(|| {
                let m = raw_creator
                    .encrypt_application_message(&text, Vec::new())
                    .expect("encrypts");
                black_box(raw_receiver.process_incoming_message(m).expect("decrypts"))
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
