//! The database file in the device directory: opening it (the directory and
//! file kept private, WAL mode, `secure_delete`, the storage key unlocked or
//! made), noticing that it is a copy of the file it was made in, and emptying
//! the write-ahead log so deleted rows are gone from every file.
//!
//! This module never knows how values are sealed or what the rows hold.

use std::path::Path;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::keyring::keyring;
use super::schema::schema;
use super::sealing::Keys;
use super::{DB_FILE, OLD_FORMAT, Store, db};
use crate::ClientError;

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
