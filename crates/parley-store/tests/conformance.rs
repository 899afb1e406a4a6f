//! The store conformance story against the in-memory reference model, and the
//! model-based test against it (the model against itself: a check that the test
//! runs, shrinks nothing and agrees with itself).

use std::sync::Arc;

use parley_store::memory::MemoryStore;

/// A fresh, empty in-memory store.
async fn fresh() -> Option<parley_store::conformance::Fresh> {
    Some(parley_store::conformance::Fresh {
        store: Arc::new(MemoryStore::new()),
        keep: Box::new(()),
    })
}

mod conformance {
    parley_store::conformance_tests!(super::fresh);
    parley_store::model_tests!(super::fresh);
}

/// Its `Debug` shows counts, never the hashes it holds.
#[tokio::test]
async fn debug_shows_no_secrets() {
    use parley_store::{AccountStore, User};

    let store = MemoryStore::new();
    store
        .create_user(&User {
            id: parley_api::UserId::random(),
            name: "Secretive".into(),
            email: "secret@example.com".into(),
            handle: None,
            password_hash: "14|8|1|salt|very-secret-hash".into(),
            accent_id: 0,
            locale: "en".into(),
            picture: None,
            created_at: 1,
        })
        .await
        .expect("create");
    let shown = format!("{store:?}");
    assert!(shown.contains("users: 1"), "{shown}");
    assert!(!shown.contains("very-secret-hash"), "{shown}");
    assert!(!shown.contains("secret@example.com"), "{shown}");
}
