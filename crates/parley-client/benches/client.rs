//! What a client pays per change: sealing and atomically writing the account
//! record (it grows with the history), and encoding and checking message content.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use parley_client::content::{Envelope, seal_external};
use parley_client::local_store::LocalStore;

fn local_store(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalStore::open(dir.path(), "bench passphrase").expect("store");
    let mut group = c.benchmark_group("local_store_put");
    for size in [4 * 1024, 256 * 1024, 4 * 1024 * 1024] {
        let record = vec![7u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &record, |b, record| {
            b.iter(|| store.put("account", record).expect("written"));
        });
    }
    group.finish();
    c.bench_function("local_store_open_scrypt", |b| {
        b.iter(|| LocalStore::open(dir.path(), "bench passphrase").expect("opens"));
    });
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

criterion_group!(benches, local_store, content);
criterion_main!(benches);
