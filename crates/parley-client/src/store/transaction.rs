//! One transaction over the store: a write transaction takes the database's
//! write lock, a read takes a snapshot. Rows go in sealed and come out opened,
//! each named by a keyed hash of its table and name, and sealed with both as
//! associated data so a row moved elsewhere is refused.
//!
//! This module never knows the passphrase or the storage key, nor what the
//! rows hold.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::sealing::{open, seal};
use super::{Row, RowKey, Store, Table, Tx, db};
use crate::ClientError;

impl Store {
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
}

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
        &self, table: Table, key: &RowKey, value: &[u8],
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
        &mut self, table: Table, name: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, ClientError> {
        let key = self.key(table, name);
        self.get_by_key(table, &key).await
    }

    /// One row by its lookup key.
    pub async fn get_by_key(
        &mut self, table: Table, key: &RowKey,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, ClientError> {
        let value = self.raw(table, key).await?;
        value.map(|v| self.opened(table, key, &v)).transpose()
    }

    /// A row exactly as the file holds it (sealed), for checks that it is gone
    /// from disk after a delete.
    pub async fn sealed(
        &mut self, table: Table, name: &[u8],
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
        &mut self, table: Table, name: &[u8], group: Option<&[u8]>, value: &[u8],
    ) -> Result<RowKey, ClientError> {
        let key = self.key(table, name);
        let group = group.map(|g| self.key(table, g));
        self.put_by_key(table, &key, group.as_ref(), value).await?;
        Ok(key)
    }

    /// Writes a row by its lookup key.
    pub async fn put_by_key(
        &mut self, table: Table, key: &RowKey, group: Option<&RowKey>, value: &[u8],
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
        &self, table: Table, rows: Vec<(Vec<u8>, Vec<u8>)>,
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
