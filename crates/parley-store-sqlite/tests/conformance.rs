//! The store conformance story against a real SQLite file.

use std::sync::Arc;

use parley_store_sqlite::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_passes_the_conformance_story() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("parley.db"))
        .await
        .expect("opens");
    parley_store::conformance::run(Arc::new(store)).await;
}

#[tokio::test]
async fn reopening_keeps_the_data_and_does_not_reapply_migrations() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("parley.db");
    {
        let store = SqliteStore::open(&path).await.expect("opens");
        parley_store::Store::put_activation_code(
            &store,
            &parley_store::ActivationCode {
                email: "x@example.com".into(),
                code_hash: vec![1],
                expires_at: 1,
                tries: 0,
            },
        )
        .await
        .expect("put");
    }
    let store = SqliteStore::open(&path).await.expect("reopens");
    let code = parley_store::Store::activation_code(&store, "x@example.com")
        .await
        .expect("get");
    assert!(code.is_some());
}
