//! The store conformance story against a real PostgreSQL server, in a database of its
//! own. Runs when `PARLEY_TEST_POSTGRES` holds a connection URL (CI sets it).

#![allow(clippy::print_stderr)]

use std::sync::Arc;

use parley_store_postgres::PostgresStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_passes_the_conformance_story() {
    let Ok(url) = std::env::var("PARLEY_TEST_POSTGRES") else {
        eprintln!("NOTICE: PARLEY_TEST_POSTGRES is not set; the PostgreSQL store was not tested");
        return;
    };
    let store = PostgresStore::open_fresh_database(&url)
        .await
        .expect("fresh database");
    parley_store::conformance::run(Arc::new(store)).await;
}
