//! What a client pays per change: storing one incoming message in the device's
//! database with an empty history and with 100,000 messages of history (it
//! must cost about the same), and encoding and checking message content.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use parley_client::content::{Envelope, seal_external};
use parley_client::store::{Store, Table};

/// One received message as the account stores it: in one write transaction,
/// the cursor row rewritten and one history row added, then committed (with
/// `synchronous = FULL`, so the commit is on disk).
async fn store_one(store: &Store, n: u64) {
    let mut tx = store.begin().await.expect("begin");
    tx.get(Table::Meta, b"device").await.expect("read");
    tx.put(Table::Meta, b"device", None, &[3u8; 600])
        .await
        .expect("cursor");
    let id = format!("incoming-{n}");
    tx.put(
        Table::Messages,
        id.as_bytes(),
        Some(b"conversation"),
        &[5u8; 400],
    )
    .await
    .expect("message");
    tx.commit().await.expect("commit");
}

fn incoming_message(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("store_incoming_message");
    group.sample_size(30);
    for history in [0u32, 100_000] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = rt.block_on(async {
            let store = Store::open(dir.path(), "bench passphrase")
                .await
                .expect("store");
            let mut tx = store.begin().await.expect("begin");
            for i in 0..history {
                let id = format!("old-{i}");
                let group = format!("conversation-{}", i % 20);
                tx.put(
                    Table::Messages,
                    id.as_bytes(),
                    Some(group.as_bytes()),
                    &[9u8; 400],
                )
                .await
                .expect("prefill");
            }
            tx.commit().await.expect("prefill commit");
            store
        });
        let mut n = 0u64;
        group.bench_with_input(BenchmarkId::from_parameter(history), &history, |b, _| {
            b.iter(|| {
                n += 1;
                rt.block_on(store_one(&store, n));
            });
        });
    }
    group.finish();
}

fn content(c: &mut Criterion) {
    let text = Envelope::text("a message of ordinary length, with a few words in it");
    let bytes = text.to_bytes();
    c.bench_function("content_encode", |b| b.iter(|| text.to_bytes()));
    c.bench_function("content_parse", |b| {
        b.iter(|| Envelope::parse(&bytes).expect("valid"));
    });
    let long = Envelope::text(&"x".repeat(64 * 1024));
    c.bench_function("content_seal_external_64k", |b| {
        b.iter(|| seal_external(&long).expect("sealed"));
    });
}

criterion_group!(benches, incoming_message, content);
criterion_main!(benches);
