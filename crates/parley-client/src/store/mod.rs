//! The device's encrypted database (Wickr's "encrypted local storage").
//!
//! One SQLite file per device directory, in WAL mode with `secure_delete` on, so
//! several processes on one device share it safely: any number read, and every
//! change runs in one `BEGIN IMMEDIATE` transaction, so two writers take turns.
//!
//! **Keys.** A random 256-bit storage key is made once. It is kept only wrapped
//! (XChaCha20-Poly1305) under a key derived from the passphrase with Argon2id, so
//! changing the passphrase rewraps one key. From the storage key, HKDF gives a
//! sealing key and a lookup key.
//!
//! **Rows.** Every table has the same shape: `key_h` (an HMAC of the row's name
//! under the lookup key, so names are never on disk), an optional `grp` (an HMAC
//! too: which conversation a message belongs to), and `value`, sealed with the
//! table and `key_h` as associated data so rows cannot be swapped. `seq` keeps
//! insertion order (history order).
//!
//! **Shredding.** `secure_delete` overwrites deleted rows in the database file,
//! and [`Store::shred`] truncates the write-ahead log, so a deleted row is gone
//! from every file in the directory, with or without the passphrase.
//!
//! The parts: `file` opens the database file (and shreds it), `schema` lays
//! out its tables, `keyring` keeps the storage key wrapped under the
//! passphrase, `sealing` seals and opens values, and `transaction` reads and
//! writes sealed rows.
//!
//! This module knows nothing of what the rows hold.

mod file;
mod keyring;
mod schema;
mod sealing;
mod transaction;

use std::path::PathBuf;
use std::sync::Arc;

use sqlx::Sqlite;
use sqlx::sqlite::SqlitePool;
use zeroize::Zeroizing;

use crate::ClientError;

pub(crate) use keyring::passphrase_key;
use sealing::Keys;

/// The database file in a device directory.
pub const DB_FILE: &str = "parley.db";
/// What the previous format (one sealed record per file) left in a directory.
const OLD_FORMAT: &str = "store.json";

/// The tables. Each holds one concept; see the account for what is in them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Small records: the account, this device's identity, the cursor.
    Meta,
    /// This device's one-time and last-resort prekeys.
    Prekeys,
    /// One Proteus session per remote device.
    Sessions,
    /// The identity key pinned for each remote device.
    Identities,
    /// What is known of each user (name, devices, pinned root key).
    Peers,
    /// Conversations (without their history).
    Conversations,
    /// History entries, grouped by conversation.
    Messages,
    /// Messages encrypted and committed but not yet accepted by the server.
    Outbox,
    /// This device's MLS groups, one row each.
    MlsGroups,
    /// The private parts of the MLS key packages this device published.
    MlsKeyPackages,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 10] = [
        Table::Meta,
        Table::Prekeys,
        Table::Sessions,
        Table::Identities,
        Table::Peers,
        Table::Conversations,
        Table::Messages,
        Table::Outbox,
        Table::MlsGroups,
        Table::MlsKeyPackages,
    ];

    /// Whether the account keeps the whole table in memory (the small state),
    /// as opposed to reading rows when needed (history, outbox).
    pub fn held_in_memory(self) -> bool {
        !matches!(self, Table::Messages | Table::Outbox)
    }

    fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Prekeys => "prekeys",
            Table::Sessions => "sessions",
            Table::Identities => "identities",
            Table::Peers => "peers",
            Table::Conversations => "conversations",
            Table::Messages => "messages",
            Table::Outbox => "outbox",
            Table::MlsGroups => "mls_groups",
            Table::MlsKeyPackages => "mls_key_packages",
        }
    }
}

/// A keyed hash naming a row.
pub type RowKey = [u8; 32];

/// The open database. Holds the derived keys (never in `Debug`).
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    keys: Arc<Keys>,
    dir: PathBuf,
    copied: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn db(what: &str, e: sqlx::Error) -> ClientError {
    ClientError::Storage(format!("{what}: {e}"))
}

/// One transaction over the store: sealed rows in, sealed rows out.
pub struct Tx {
    tx: sqlx::Transaction<'static, Sqlite>,
    keys: Arc<Keys>,
    deleted: bool,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

/// A row read back: its lookup key and its opened value.
pub type Row = (RowKey, Zeroizing<Vec<u8>>);

#[cfg(test)]
mod tests;
