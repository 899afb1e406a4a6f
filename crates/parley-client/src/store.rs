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
//! This module knows nothing of what the rows hold.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row as _, Sqlite};
use zeroize::Zeroizing;

use crate::ClientError;

/// The database file in a device directory.
pub const DB_FILE: &str = "parley.db";
/// What the previous format (one sealed record per file) left in a directory.
const OLD_FORMAT: &str = "store.json";
/// Format version of sealed values.
const VALUE_VERSION: u8 = 1;
/// What the wrapped storage key is bound to.
const KEYRING_AAD: &[u8] = b"parley device store keyring v1";

/// Argon2id cost for new stores: 64 MiB, 3 passes, one lane.
const ARGON2_M_KIB: u32 = 64 * 1024;
const ARGON2_T: u32 = 3;
const ARGON2_P: u32 = 1;

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
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 8] = [
        Table::Meta,
        Table::Prekeys,
        Table::Sessions,
        Table::Identities,
        Table::Peers,
        Table::Conversations,
        Table::Messages,
        Table::Outbox,
    ];

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
        }
    }
}

/// A keyed hash naming a row.
pub type RowKey = [u8; 32];

/// The sealing and lookup keys, wiped when dropped.
struct Keys {
    seal: Zeroizing<[u8; 32]>,
    lookup: Zeroizing<[u8; 32]>,
}

impl Keys {
    fn from_storage_key(storage: &[u8; 32]) -> Self {
        let hk = hkdf::Hkdf::<Sha256>::new(None, storage);
        let mut seal = Zeroizing::new([0u8; 32]);
        let mut lookup = Zeroizing::new([0u8; 32]);
        hk.expand(b"parley device store seal v1", seal.as_mut())
            .expect("32 bytes is a valid HKDF length");
        hk.expand(b"parley device store lookup v1", lookup.as_mut())
            .expect("32 bytes is a valid HKDF length");
        Self { seal, lookup }
    }
}

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

fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, ClientError> {
    let mut b = Zeroizing::new([0u8; N]);
    getrandom::fill(b.as_mut()).map_err(|e| ClientError::Storage(format!("no randomness: {e}")))?;
    Ok(b)
}

/// The passphrase key, computed off the async runtime (Argon2id takes a
/// noticeable fraction of a second by design). Settings outside what this
/// client accepts are refused before anything is allocated.
pub(crate) async fn passphrase_key(
    passphrase: &str,
    salt: Vec<u8>,
    m_kib: u32,
    t: u32,
    p: u32,
) -> Result<Zeroizing<[u8; 32]>, ClientError> {
    // A tampered file must not make us allocate gigabytes or spin for hours.
    if !(8 * 1024..=1024 * 1024).contains(&m_kib) || !(1..=10).contains(&t) || !(1..=4).contains(&p)
    {
        return Err(ClientError::Storage(
            "the store's key-derivation settings are outside what this client accepts".into(),
        ));
    }
    let passphrase = Zeroizing::new(passphrase.as_bytes().to_vec());
    tokio::task::spawn_blocking(move || {
        let params = argon2::Params::new(m_kib, t, p, Some(32))
            .map_err(|_| ClientError::Storage("invalid Argon2id settings".into()))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(&passphrase, &salt, key.as_mut())
            .map_err(|_| ClientError::Storage("Argon2id failed".into()))?;
        Ok(key)
    })
    .await
    .map_err(|_| ClientError::Storage("the key derivation was interrupted".into()))?
}

fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, ClientError> {
    let nonce = random::<24>()?;
    let ciphertext = XChaCha20Poly1305::new(key.into())
        .encrypt(
            &XNonce::from(*nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| ClientError::Storage("sealing failed".into()))?;
    let mut out = Vec::with_capacity(1 + 24 + ciphertext.len());
    out.push(VALUE_VERSION);
    out.extend_from_slice(nonce.as_ref());
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

fn open(key: &[u8; 32], aad: &[u8], bytes: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let (&version, rest) = bytes.split_first()?;
    if version != VALUE_VERSION {
        return None;
    }
    let (nonce, ciphertext) = rest.split_at_checked(24)?;
    let nonce = XNonce::try_from(nonce).ok()?;
    XChaCha20Poly1305::new(key.into())
        .decrypt(
            &nonce,
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS keyring (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        salt BLOB NOT NULL, m_kib INTEGER NOT NULL, t INTEGER NOT NULL, p INTEGER NOT NULL,
        wrapped BLOB NOT NULL)",
    // Which file this database was made in (device and inode), to notice a copy.
    "CREATE TABLE IF NOT EXISTS origin (
        id INTEGER PRIMARY KEY CHECK (id = 1), file BLOB NOT NULL)",
];

/// The file's identity on disk: a copy restored from a backup is another
/// file, even with the same bytes. `None` where the platform does not say.
fn file_identity(path: &Path) -> Option<Vec<u8>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(path).ok()?;
        let mut id = m.dev().to_be_bytes().to_vec();
        id.extend_from_slice(&m.ino().to_be_bytes());
        Some(id)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

fn table_sql(table: &str) -> [String; 2] {
    [
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                key_h BLOB NOT NULL UNIQUE,
                grp BLOB,
                value BLOB NOT NULL)"
        ),
        format!("CREATE INDEX IF NOT EXISTS {table}_grp ON {table} (grp, seq)"),
    ]
}

/// Creates whatever table is missing (a database made by an earlier version
/// gains the tables added since).
async fn schema(conn: &mut sqlx::SqliteConnection) -> Result<(), ClientError> {
    let mut statements: Vec<String> = SCHEMA.iter().map(|s| (*s).to_owned()).collect();
    for t in Table::ALL {
        statements.extend(table_sql(t.name()));
    }
    for s in statements {
        sqlx::query(sqlx::AssertSqlSafe(s))
            .execute(&mut *conn)
            .await
            .map_err(|e| db("cannot set up the database", e))?;
    }
    Ok(())
}

/// The keyring row: the wrapped storage key and how to unwrap it.
struct Keyring {
    salt: Vec<u8>,
    m_kib: i64,
    t: i64,
    p: i64,
    wrapped: Vec<u8>,
}

impl Keyring {
    /// The storage key, with the passphrase.
    async fn unwrap(self, passphrase: &str) -> Result<Zeroizing<[u8; 32]>, ClientError> {
        let bad = || ClientError::Storage("the keyring is damaged".into());
        let key = passphrase_key(
            passphrase,
            self.salt,
            u32::try_from(self.m_kib).map_err(|_| bad())?,
            u32::try_from(self.t).map_err(|_| bad())?,
            u32::try_from(self.p).map_err(|_| bad())?,
        )
        .await?;
        let storage = open(&key, KEYRING_AAD, &self.wrapped).ok_or(ClientError::WrongPassphrase)?;
        Ok(Zeroizing::new(
            <[u8; 32]>::try_from(storage.as_slice()).map_err(|_| bad())?,
        ))
    }
}

/// The keyring, if the database has one yet.
async fn keyring(conn: &mut sqlx::SqliteConnection) -> Result<Option<Keyring>, ClientError> {
    let exists: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'keyring'",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| db("cannot read the database", e))?;
    if exists == 0 {
        return Ok(None);
    }
    let row = sqlx::query("SELECT salt, m_kib, t, p, wrapped FROM keyring WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| db("cannot read the keyring", e))?;
    Ok(row.map(|row| Keyring {
        salt: row.get(0),
        m_kib: row.get(1),
        t: row.get(2),
        p: row.get(3),
        wrapped: row.get(4),
    }))
}

/// Only the user may enter the directory or read the database: the directory
/// becomes 0700 and the database file is created (or kept) 0600; SQLite gives
/// its journal files the database's permissions.
fn owner_only(dir: &Path, db_file: &Path) -> Result<(), ClientError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let fail = |what: &Path, e: std::io::Error| {
            ClientError::Storage(format!("cannot make {} private: {e}", what.display()))
        };
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail(dir, e))?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(db_file)
            .map_err(|e| fail(db_file, e))?;
        std::fs::set_permissions(db_file, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| fail(db_file, e))?;
    }
    #[cfg(not(unix))]
    let _ = (dir, db_file);
    Ok(())
}

impl Store {
    /// Sets up a new database: its tables, and a storage key wrapped under the
    /// passphrase (unless another process just did, under the same lock).
    async fn create(
        pool: &SqlitePool,
        passphrase: &str,
    ) -> Result<Zeroizing<[u8; 32]>, ClientError> {
        let mut tx = pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| db("the database stayed busy", e))?;
        schema(&mut tx).await?;
        if let Some(k) = keyring(&mut tx).await? {
            let storage = k.unwrap(passphrase).await?;
            tx.commit()
                .await
                .map_err(|e| db("cannot set up the database", e))?;
            return Ok(storage);
        }
        let storage = random::<32>()?;
        let salt = random::<16>()?.to_vec();
        let key =
            passphrase_key(passphrase, salt.clone(), ARGON2_M_KIB, ARGON2_T, ARGON2_P).await?;
        let wrapped = seal(&key, KEYRING_AAD, storage.as_ref())?;
        sqlx::query(
            "INSERT INTO keyring (id, salt, m_kib, t, p, wrapped) VALUES (1, ?, ?, ?, ?, ?)",
        )
        .bind(salt)
        .bind(i64::from(ARGON2_M_KIB))
        .bind(i64::from(ARGON2_T))
        .bind(i64::from(ARGON2_P))
        .bind(wrapped)
        .execute(&mut *tx)
        .await
        .map_err(|e| db("cannot write the keyring", e))?;
        tx.commit()
            .await
            .map_err(|e| db("cannot set up the database", e))?;
        Ok(storage)
    }

    /// Opens the device's database in `dir` (created if missing), with the
    /// passphrase that protects it. A wrong passphrase is
    /// [`ClientError::WrongPassphrase`]; a directory of the previous format is
    /// refused with what to do.
    pub async fn open(dir: &Path, passphrase: &str) -> Result<Self, ClientError> {
        if dir.join(OLD_FORMAT).exists() {
            return Err(ClientError::Storage(format!(
                "{} holds a device saved by an older Parley, which this version does not read. \
                 Log in again into a new directory (`parley login` with another PARLEY_DIR), \
                 then remove the old device with `parley devices --remove`.",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| ClientError::Storage(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(DB_FILE);
        owner_only(dir, &path)?;
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| db("database address", e))?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Write-ahead sending relies on a commit being on disk before the
            // ciphertext leaves.
            .synchronous(SqliteSynchronous::Full)
            .pragma("secure_delete", "ON")
            // The log shrinks back to nothing whenever it is reset, so old
            // page images (earlier session states) do not linger in it.
            .pragma("journal_size_limit", "0")
            .busy_timeout(Duration::from_secs(60));
        // One connection: `data_version` and transactions are per connection.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|e| db(&format!("cannot open {}", path.display()), e))?;
        // An existing store is unlocked without holding the write lock: the
        // key derivation is slow by design, and other processes go on.
        let existing = {
            let mut conn = pool
                .acquire()
                .await
                .map_err(|e| db("cannot open the database", e))?;
            keyring(&mut conn).await?
        };
        let storage = match existing {
            Some(k) => k.unwrap(passphrase).await?,
            None => Self::create(&pool, passphrase).await?,
        };
        let mut tx = pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| db("the database stayed busy", e))?;
        schema(&mut tx).await?;
        let here = file_identity(&path);
        let recorded: Option<Vec<u8>> = sqlx::query_scalar("SELECT file FROM origin WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| db("cannot read the database", e))?;
        let copied = match (&recorded, &here) {
            (Some(before), Some(now)) => before != now,
            (None, Some(now)) => {
                sqlx::query("INSERT INTO origin (id, file) VALUES (1, ?)")
                    .bind(now.clone())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db("cannot write the database", e))?;
                false
            }
            (_, None) => false,
        };
        tx.commit()
            .await
            .map_err(|e| db("cannot set up the database", e))?;
        Ok(Self {
            pool,
            keys: Arc::new(Keys::from_storage_key(&storage)),
            dir: dir.to_owned(),
            copied,
        })
    }

    /// Whether this database is not the file it was made in: restored from a
    /// copy (or moved to another disk). Its sessions may be behind chain
    /// positions the original already used.
    pub fn is_copy(&self) -> bool {
        self.copied
    }

    /// Records this file as the database's own, once the caller has dealt
    /// with it being a copy.
    pub async fn adopt_file(&mut self) -> Result<(), ClientError> {
        if let Some(here) = file_identity(&self.dir.join(DB_FILE)) {
            sqlx::query("UPDATE origin SET file = ? WHERE id = 1")
                .bind(here)
                .execute(&self.pool)
                .await
                .map_err(|e| db("cannot write the database", e))?;
        }
        self.copied = false;
        Ok(())
    }

    /// Rewraps the storage key under a new passphrase; nothing else changes.
    pub async fn change_passphrase(&self, old: &str, new: &str) -> Result<(), ClientError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT salt, m_kib, t, p, wrapped FROM keyring WHERE id = 1")
            .fetch_one(&mut *tx.tx)
            .await
            .map_err(|e| db("cannot read the keyring", e))?;
        let bad = || ClientError::Storage("the keyring is damaged".into());
        let old_key = passphrase_key(
            old,
            row.get(0),
            u32::try_from(row.get::<i64, _>(1)).map_err(|_| bad())?,
            u32::try_from(row.get::<i64, _>(2)).map_err(|_| bad())?,
            u32::try_from(row.get::<i64, _>(3)).map_err(|_| bad())?,
        )
        .await?;
        let wrapped: Vec<u8> = row.get(4);
        let storage = open(&old_key, KEYRING_AAD, &wrapped).ok_or(ClientError::WrongPassphrase)?;
        let salt = random::<16>()?.to_vec();
        let key = passphrase_key(new, salt.clone(), ARGON2_M_KIB, ARGON2_T, ARGON2_P).await?;
        sqlx::query(
            "UPDATE keyring SET salt = ?, m_kib = ?, t = ?, p = ?, wrapped = ? WHERE id = 1",
        )
        .bind(salt)
        .bind(i64::from(ARGON2_M_KIB))
        .bind(i64::from(ARGON2_T))
        .bind(i64::from(ARGON2_P))
        .bind(seal(&key, KEYRING_AAD, &storage)?)
        .execute(&mut *tx.tx)
        .await
        .map_err(|e| db("cannot write the keyring", e))?;
        tx.commit().await?;
        // The old wrapping must not stay in the log.
        self.shred().await?;
        Ok(())
    }

    /// Starts the one write transaction of a change: other processes' writers
    /// wait until it commits or is dropped (rolled back).
    pub async fn begin(&self) -> Result<Tx, ClientError> {
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| db("the database stayed busy", e))?;
        Ok(Tx {
            tx,
            keys: self.keys.clone(),
            deleted: false,
        })
    }

    /// Starts a read: a consistent snapshot, no lock on writers.
    pub async fn read(&self) -> Result<Tx, ClientError> {
        let tx = self
            .pool
            .begin_with("BEGIN DEFERRED")
            .await
            .map_err(|e| db("cannot read the database", e))?;
        Ok(Tx {
            tx,
            keys: self.keys.clone(),
            deleted: false,
        })
    }

    /// Moves everything in the write-ahead log into the database and empties
    /// the log, so rows deleted with `secure_delete` are gone from every file.
    /// `false` when another process's open read kept part of the log: the
    /// caller tries again later.
    pub async fn shred(&self) -> Result<bool, ClientError> {
        let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| db("cannot checkpoint the database", e))?;
        Ok(busy == 0)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Closes the database (and its write-ahead log) cleanly.
    pub async fn close(&self) {
        self.pool.close().await;
    }
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

impl Tx {
    /// The keyed hash naming a row `name` of `table`.
    pub fn key(&self, table: Table, name: &[u8]) -> RowKey {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.keys.lookup.as_ref())
            .expect("HMAC takes any key length");
        mac.update(table.name().as_bytes());
        mac.update(&[0]);
        mac.update(name);
        mac.finalize().into_bytes().into()
    }

    fn aad(table: Table, key: &RowKey) -> Vec<u8> {
        let mut aad = table.name().as_bytes().to_vec();
        aad.push(0);
        aad.extend_from_slice(key);
        aad
    }

    fn opened(
        &self,
        table: Table,
        key: &RowKey,
        value: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        open(&self.keys.seal, &Self::aad(table, key), value).ok_or_else(|| {
            ClientError::Storage(format!("a row of {} is damaged or was moved", table.name()))
        })
    }

    /// `PRAGMA data_version`: changes whenever another connection (another
    /// process) commits.
    pub async fn data_version(&mut self) -> Result<i64, ClientError> {
        sqlx::query_scalar("PRAGMA data_version")
            .fetch_one(&mut *self.tx)
            .await
            .map_err(|e| db("cannot read the database", e))
    }

    /// One row by name.
    pub async fn get(
        &mut self,
        table: Table,
        name: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, ClientError> {
        let key = self.key(table, name);
        self.get_by_key(table, &key).await
    }

    /// One row by its lookup key.
    pub async fn get_by_key(
        &mut self,
        table: Table,
        key: &RowKey,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, ClientError> {
        let value = self.raw(table, key).await?;
        value.map(|v| self.opened(table, key, &v)).transpose()
    }

    /// A row exactly as the file holds it (sealed), for checks that it is gone
    /// from disk after a delete.
    pub async fn sealed(
        &mut self,
        table: Table,
        name: &[u8],
    ) -> Result<Option<Vec<u8>>, ClientError> {
        let key = self.key(table, name);
        self.raw(table, &key).await
    }

    async fn raw(&mut self, table: Table, key: &RowKey) -> Result<Option<Vec<u8>>, ClientError> {
        let sql = format!("SELECT value FROM {} WHERE key_h = ?", table.name());
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(key.as_slice())
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(|e| db("cannot read the database", e))
    }

    /// Writes a row (a new one goes last in its group's order; a changed one
    /// keeps its place).
    pub async fn put(
        &mut self,
        table: Table,
        name: &[u8],
        group: Option<&[u8]>,
        value: &[u8],
    ) -> Result<RowKey, ClientError> {
        let key = self.key(table, name);
        let group = group.map(|g| self.key(table, g));
        self.put_by_key(table, &key, group.as_ref(), value).await?;
        Ok(key)
    }

    /// Writes a row by its lookup key.
    pub async fn put_by_key(
        &mut self,
        table: Table,
        key: &RowKey,
        group: Option<&RowKey>,
        value: &[u8],
    ) -> Result<(), ClientError> {
        let sealed = seal(&self.keys.seal, &Self::aad(table, key), value)?;
        let sql = format!(
            "INSERT INTO {} (key_h, grp, value) VALUES (?, ?, ?) \
             ON CONFLICT (key_h) DO UPDATE SET grp = excluded.grp, value = excluded.value",
            table.name()
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key.as_slice())
            .bind(group.map(|g| g.to_vec()))
            .bind(sealed)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| db("cannot write the database", e))?;
        Ok(())
    }

    /// Deletes a row; whether it was there.
    pub async fn delete(&mut self, table: Table, name: &[u8]) -> Result<bool, ClientError> {
        let key = self.key(table, name);
        self.delete_by_key(table, &key).await
    }

    /// Deletes a row by its lookup key.
    pub async fn delete_by_key(&mut self, table: Table, key: &RowKey) -> Result<bool, ClientError> {
        let sql = format!("DELETE FROM {} WHERE key_h = ?", table.name());
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key.as_slice())
            .execute(&mut *self.tx)
            .await
            .map_err(|e| db("cannot write the database", e))?;
        // History entries are what a person deletes: those are shredded.
        // (Other rows are replaced as a matter of course; what they held is
        // still in the history, or was never content.)
        self.deleted |= table == Table::Messages && done.rows_affected() > 0;
        Ok(done.rows_affected() > 0)
    }

    /// Whether this transaction deleted history entries (the caller shreds
    /// after the commit).
    pub fn deleted_messages(&self) -> bool {
        self.deleted
    }

    /// Every row of a table, in insertion order.
    pub async fn all(&mut self, table: Table) -> Result<Vec<Row>, ClientError> {
        let sql = format!("SELECT key_h, value FROM {} ORDER BY seq", table.name());
        let rows: Vec<(Vec<u8>, Vec<u8>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(|e| db("cannot read the database", e))?;
        self.open_rows(table, rows)
    }

    /// Every row of one group (`name` as given to [`Tx::put`]), in insertion
    /// order.
    pub async fn group(&mut self, table: Table, name: &[u8]) -> Result<Vec<Row>, ClientError> {
        let group = self.key(table, name);
        let sql = format!(
            "SELECT key_h, value FROM {} WHERE grp = ? ORDER BY seq",
            table.name()
        );
        let rows: Vec<(Vec<u8>, Vec<u8>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(group.as_slice())
            .fetch_all(&mut *self.tx)
            .await
            .map_err(|e| db("cannot read the database", e))?;
        self.open_rows(table, rows)
    }

    fn open_rows(
        &self,
        table: Table,
        rows: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Vec<Row>, ClientError> {
        rows.into_iter()
            .map(|(k, v)| {
                let key: RowKey = k.as_slice().try_into().map_err(|_| {
                    ClientError::Storage(format!("a row of {} is damaged", table.name()))
                })?;
                Ok((key, self.opened(table, &key, &v)?))
            })
            .collect()
    }

    /// Makes the transaction's changes durable.
    pub async fn commit(self) -> Result<(), ClientError> {
        self.tx
            .commit()
            .await
            .map_err(|e| db("cannot commit to the database", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<Vec<u8>> {
        std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| std::fs::read(e.expect("entry").path()).unwrap_or_default())
            .collect()
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn only_the_owner_can_read_the_directory_and_its_files() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().expect("dir");
        let dir = root.path().join("device");
        std::fs::create_dir_all(&dir).expect("a directory made with the default mode");
        let store = Store::open(&dir, "a passphrase").await.expect("open");
        let mut tx = store.begin().await.expect("begin");
        tx.put(Table::Messages, b"m1", None, b"words")
            .await
            .expect("put");
        tx.commit().await.expect("commit");
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for entry in std::fs::read_dir(&dir).expect("read") {
            let path = entry.expect("entry").path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }

    #[tokio::test]
    async fn rows_round_trip_reopen_and_refuse_a_wrong_passphrase() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path(), "a passphrase").await.expect("open");
        let mut tx = store.begin().await.expect("begin");
        tx.put(
            Table::Messages,
            b"m1",
            Some(b"zebra chat"),
            b"first secret words",
        )
        .await
        .expect("put");
        tx.put(Table::Messages, b"m2", Some(b"zebra chat"), b"second")
            .await
            .expect("put");
        tx.put(Table::Messages, b"m3", Some(b"other"), b"third")
            .await
            .expect("put");
        tx.commit().await.expect("commit");
        store.close().await;

        let store = Store::open(dir.path(), "a passphrase")
            .await
            .expect("reopen");
        let mut tx = store.read().await.expect("read");
        let group = tx
            .group(Table::Messages, b"zebra chat")
            .await
            .expect("group");
        assert_eq!(
            group.iter().map(|(_, v)| v.to_vec()).collect::<Vec<_>>(),
            vec![b"first secret words".to_vec(), b"second".to_vec()]
        );
        assert_eq!(
            tx.get(Table::Messages, b"m3")
                .await
                .expect("get")
                .map(|v| v.to_vec()),
            Some(b"third".to_vec())
        );
        assert!(tx.get(Table::Meta, b"m3").await.expect("get").is_none());
        drop(tx);
        store.close().await;
        assert!(matches!(
            Store::open(dir.path(), "another passphrase").await,
            Err(ClientError::WrongPassphrase)
        ));
        for file in files(dir.path()) {
            assert!(!contains(&file, b"secret words"), "no plaintext at rest");
            assert!(!contains(&file, b"zebra"), "no names at rest");
        }
    }

    #[tokio::test]
    async fn swapped_rows_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path(), "a passphrase").await.expect("open");
        let mut tx = store.begin().await.expect("begin");
        tx.put(Table::Meta, b"a", None, b"one").await.expect("put");
        tx.put(Table::Meta, b"b", None, b"two").await.expect("put");
        tx.commit().await.expect("commit");
        let mut tx = store.begin().await.expect("begin");
        let (a, b) = (tx.key(Table::Meta, b"a"), tx.key(Table::Meta, b"b"));
        sqlx::query(
            "UPDATE meta SET value = (SELECT value FROM meta WHERE key_h = ?) WHERE key_h = ?",
        )
        .bind(b.as_slice())
        .bind(a.as_slice())
        .execute(&mut *tx.tx)
        .await
        .expect("swap");
        assert!(
            tx.get(Table::Meta, b"a").await.is_err(),
            "moved value refused"
        );
        assert!(tx.get(Table::Meta, b"b").await.is_ok());
    }

    #[tokio::test]
    async fn a_new_passphrase_rewraps_the_key_and_the_data_stays() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path(), "old passphrase")
            .await
            .expect("open");
        let mut tx = store.begin().await.expect("begin");
        tx.put(Table::Meta, b"a", None, b"kept").await.expect("put");
        tx.commit().await.expect("commit");
        assert!(matches!(
            store.change_passphrase("wrong", "new passphrase").await,
            Err(ClientError::WrongPassphrase)
        ));
        store
            .change_passphrase("old passphrase", "new passphrase")
            .await
            .expect("change");
        store.close().await;
        assert!(matches!(
            Store::open(dir.path(), "old passphrase").await,
            Err(ClientError::WrongPassphrase)
        ));
        let store = Store::open(dir.path(), "new passphrase")
            .await
            .expect("open");
        let mut tx = store.read().await.expect("read");
        assert_eq!(
            tx.get(Table::Meta, b"a")
                .await
                .expect("get")
                .map(|v| v.to_vec()),
            Some(b"kept".to_vec())
        );
    }

    #[tokio::test]
    async fn a_deleted_row_leaves_no_trace_in_any_file() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path(), "a passphrase").await.expect("open");
        let mut tx = store.begin().await.expect("begin");
        tx.put(Table::Messages, b"gone", Some(b"c"), b"shred me")
            .await
            .expect("put");
        tx.put(Table::Messages, b"kept", Some(b"c"), b"keep me")
            .await
            .expect("put");
        tx.commit().await.expect("commit");
        store.shred().await.expect("checkpoint");
        let mut tx = store.read().await.expect("read");
        let key = tx.key(Table::Messages, b"gone");
        let sealed: Vec<u8> = sqlx::query_scalar("SELECT value FROM messages WHERE key_h = ?")
            .bind(key.as_slice())
            .fetch_one(&mut *tx.tx)
            .await
            .expect("sealed row");
        drop(tx);
        assert!(
            files(dir.path())
                .iter()
                .any(|f| contains(f, &sealed[1..40])),
            "the sealed row is on disk before the delete (the check can fail)"
        );
        let mut tx = store.begin().await.expect("begin");
        assert!(tx.delete(Table::Messages, b"gone").await.expect("delete"));
        tx.commit().await.expect("commit");
        store.shred().await.expect("shred");
        for file in files(dir.path()) {
            assert!(!contains(&file, &sealed[1..40]), "the sealed row is gone");
        }
    }

    #[tokio::test]
    async fn a_directory_of_the_previous_format_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join(OLD_FORMAT), b"{}").expect("old");
        let e = Store::open(dir.path(), "p").await.expect_err("refused");
        assert!(e.to_string().contains("Log in again"), "{e}");
    }

    #[tokio::test]
    async fn hostile_key_derivation_settings_are_refused() {
        let e = passphrase_key("p", vec![0; 16], 4 * 1024 * 1024, 3, 1)
            .await
            .expect_err("4 GiB refused");
        assert!(matches!(e, ClientError::Storage(_)));
    }
}
