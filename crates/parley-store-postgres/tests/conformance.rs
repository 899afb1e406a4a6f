//! The store conformance story against a real PostgreSQL server, in a database of its
//! own. Runs when `PARLEY_TEST_POSTGRES` holds a connection URL (CI sets it).

#![allow(clippy::print_stderr)]

use std::sync::Arc;

use parley_store_postgres::PostgresStore;

/// A fresh database of its own on the server `PARLEY_TEST_POSTGRES` names.
async fn fresh() -> Option<parley_store::conformance::Fresh> {
    let Ok(url) = std::env::var("PARLEY_TEST_POSTGRES") else {
        eprintln!("NOTICE: PARLEY_TEST_POSTGRES is not set; the PostgreSQL store was not tested");
        return None;
    };
    let store = PostgresStore::open_fresh_database(&url)
        .await
        .expect("fresh database");
    Some(parley_store::conformance::Fresh {
        store: Arc::new(store),
        keep: Box::new(()),
    })
}

mod conformance {
    parley_store::conformance_tests!(super::fresh);
    parley_store::model_tests!(super::fresh);
}
