//! The store operations both backends share, in SQL that reads the same on
//! SQLite and PostgreSQL (`$1`-style parameters, which both drivers read).
//!
//! Not a module of `parley-store-sql`: each backend compiles these files as
//! its own `ops` module (`#[path]`), with `Store` naming its store type, which
//! implements [`Dialect`](parley_store_sql::Dialect): the few statements whose
//! text differs, its locks, its bulk enqueue and its delivery. So the code is
//! written once and each backend gets it for its own database, with no generic
//! bounds to carry. Owns the store traits' implementations and the one fan-out
//! every change's events go through; must never name a database.

mod accounts;
mod connections;
mod conversations;
mod devices;
mod groups;
mod mls;
mod queues;
mod shared;

/// The backend's store, which these operations implement the store traits for.
use super::Store;

/// The backend's database.
type Db = <Store as parley_store_sql::Dialect>::Db;

/// A transaction on the backend's database.
type Tx = sqlx::Transaction<'static, Db>;
