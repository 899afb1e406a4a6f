//! The storage key and the passphrase that guards it: the Argon2id derivation
//! of the passphrase key (with the settings this client accepts), the keyring
//! row holding the storage key wrapped under it, making that row for a new
//! database and rewrapping it for a new passphrase.
//!
//! This module never knows the sealing or lookup keys, nor what any row of a
//! table holds: it hands the storage key on, and keeps only its wrapping.

use sqlx::Row as _;
use sqlx::sqlite::SqlitePool;
use zeroize::Zeroizing;

use super::schema::schema;
use super::sealing::{open, random, seal};
use super::{Store, db};
use crate::ClientError;

/// What the wrapped storage key is bound to.
const KEYRING_AAD: &[u8] = b"parley device store keyring v1";

/// Argon2id cost for new stores: 64 MiB, 3 passes, one lane.
const ARGON2_M_KIB: u32 = 64 * 1024;
const ARGON2_T: u32 = 3;
const ARGON2_P: u32 = 1;

/// The passphrase key, computed off the async runtime (Argon2id takes a
/// noticeable fraction of a second by design). Settings outside what this
/// client accepts are refused before anything is allocated.
pub(crate) async fn passphrase_key(
    passphrase: &str, salt: Vec<u8>, m_kib: u32, t: u32, p: u32,
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

/// The keyring row: the wrapped storage key and how to unwrap it.
pub(super) struct Keyring {
    salt: Vec<u8>,
    m_kib: i64,
    t: i64,
    p: i64,
    wrapped: Vec<u8>,
}

impl Keyring {
    /// The storage key, with the passphrase.
    pub(super) async fn unwrap(self, passphrase: &str) -> Result<Zeroizing<[u8; 32]>, ClientError> {
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
pub(super) async fn keyring(
    conn: &mut sqlx::SqliteConnection,
) -> Result<Option<Keyring>, ClientError> {
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

impl Store {
    /// Sets up a new database: its tables, and a storage key wrapped under the
    /// passphrase (unless another process just did, under the same lock).
    pub(super) async fn create(
        pool: &SqlitePool, passphrase: &str,
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

    /// Whether `passphrase` unwraps this database's storage key (an app lock
    /// asks): [`ClientError::WrongPassphrase`] when it does not. Reads only:
    /// a database whose keyring is gone is refused, never made anew.
    pub async fn check_passphrase(&self, passphrase: &str) -> Result<(), ClientError> {
        let mut tx = self.read().await?;
        let ring = keyring(&mut tx.tx)
            .await?
            .ok_or_else(|| ClientError::Storage("this device's keyring is gone".into()))?;
        drop(tx);
        ring.unwrap(passphrase).await.map(drop)
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
}
