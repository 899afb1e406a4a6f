//! MLS: devices' signature keys and the key package directory.

use async_trait::async_trait;
use parley_api::{ClientId, UserId};
use parley_store::{KeyPackageRecord, MlsStore, StoreError, StoreResult};

use super::{Db, Store, Tx};
use parley_store_sql::Dialect;
use parley_store_sql::columns::{client_id, parse_client_id};

impl Store {
    /// `NotFound` unless the device exists, read inside `tx`.
    async fn device_exists(tx: &mut Tx, user: UserId, client: ClientId) -> StoreResult<()> {
        let known: Option<i64> =
            sqlx::query_scalar("SELECT id FROM clients WHERE user_id = $1 AND id = $2")
                .bind(user.to_string())
                .bind(client_id(client))
                .fetch_optional(&mut **tx)
                .await
                .map_err(Store::error)?;
        known.map(|_| ()).ok_or(StoreError::NotFound)
    }
}

#[async_trait]
impl MlsStore for Store {
    async fn set_mls_public_keys(
        &self, user: UserId, client: ClientId, keys: &[(u16, Vec<u8>)],
    ) -> StoreResult<()> {
        let (_guard, mut tx) = self.user_tx(user).await?;
        Self::device_exists(&mut tx, user, client).await?;
        for (scheme, key) in keys {
            // Set once: an existing key stays, and only the same key is no
            // conflict (which rolls the whole change back).
            sqlx::query(
                "INSERT INTO mls_public_keys (user_id, client_id, scheme, key) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, client_id, scheme) DO NOTHING",
            )
            .bind(user.to_string())
            .bind(client_id(client))
            .bind(i32::from(*scheme))
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(Store::error)?;
            let stored: Vec<u8> = sqlx::query_scalar(
                "SELECT key FROM mls_public_keys \
                 WHERE user_id = $1 AND client_id = $2 AND scheme = $3",
            )
            .bind(user.to_string())
            .bind(client_id(client))
            .bind(i32::from(*scheme))
            .fetch_one(&mut *tx)
            .await
            .map_err(Store::error)?;
            if &stored != key {
                return Err(StoreError::Conflict("mls-public-key"));
            }
        }
        tx.commit().await.map_err(Store::error)
    }

    async fn mls_public_keys(
        &self, user: UserId, client: ClientId,
    ) -> StoreResult<Vec<(u16, Vec<u8>)>> {
        let rows: Vec<(i32, Vec<u8>)> = sqlx::query_as(
            "SELECT scheme, key FROM mls_public_keys WHERE user_id = $1 AND client_id = $2 \
             ORDER BY scheme",
        )
        .bind(user.to_string())
        .bind(client_id(client))
        .fetch_all(self.pool())
        .await
        .map_err(Store::error)?;
        rows.into_iter()
            .map(|(scheme, key)| Ok((number(scheme)?, key)))
            .collect()
    }

    async fn add_key_packages(
        &self, packages: &[KeyPackageRecord], now: i64, max_per_suite: u64,
    ) -> StoreResult<()> {
        let mut devices: Vec<(UserId, ClientId)> =
            packages.iter().map(|p| (p.user, p.client)).collect();
        devices.sort();
        devices.dedup();
        let (_guard, mut tx) = self.write_tx().await?;
        // The users' rows are locked in order: uploads at once for one device
        // count one after the other.
        for (user, client) in &devices {
            Self::lock_user(&mut tx, *user).await?;
            Self::device_exists(&mut tx, *user, *client).await?;
            sqlx::query(
                "DELETE FROM mls_key_packages WHERE user_id = $1 AND client_id = $2 \
                 AND not_after <= $3",
            )
            .bind(user.to_string())
            .bind(client_id(*client))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(Store::error)?;
        }
        // A new last-resort key package replaces the device's last one.
        for p in packages.iter().filter(|p| p.last_resort) {
            sqlx::query(
                "DELETE FROM mls_key_packages WHERE user_id = $1 AND client_id = $2 \
                 AND suite = $3 AND last_resort",
            )
            .bind(p.user.to_string())
            .bind(client_id(p.client))
            .bind(i32::from(p.suite))
            .execute(&mut *tx)
            .await
            .map_err(Store::error)?;
        }
        let mut adding: std::collections::BTreeMap<(UserId, ClientId, u16), u64> =
            std::collections::BTreeMap::new();
        for p in packages.iter().filter(|p| !p.last_resort) {
            *adding.entry((p.user, p.client, p.suite)).or_default() += 1;
        }
        for ((user, client, suite), n) in adding {
            let held: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM mls_key_packages WHERE user_id = $1 AND client_id = $2 \
                 AND suite = $3 AND NOT last_resort",
            )
            .bind(user.to_string())
            .bind(client_id(client))
            .bind(i32::from(suite))
            .fetch_one(&mut *tx)
            .await
            .map_err(Store::error)?;
            if u64::try_from(held).unwrap_or(0).saturating_add(n) > max_per_suite {
                return Err(StoreError::Limit("key-packages"));
            }
        }
        for p in packages {
            sqlx::query(
                "INSERT INTO mls_key_packages \
                 (ref, user_id, client_id, suite, data, not_after, last_resort) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&p.reference)
            .bind(p.user.to_string())
            .bind(client_id(p.client))
            .bind(i32::from(p.suite))
            .bind(&p.data)
            .bind(p.not_after)
            .bind(p.last_resort)
            .execute(&mut *tx)
            .await
            .map_err(|e| match Store::error(e) {
                StoreError::Conflict(_) => StoreError::Conflict("key-package"),
                other => other,
            })?;
        }
        tx.commit().await.map_err(Store::error)
    }

    async fn purge_key_packages(&self, now: i64) -> StoreResult<u64> {
        let (_guard, mut tx) = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM mls_key_packages WHERE not_after <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(Store::error)?;
        tx.commit().await.map_err(Store::error)?;
        Ok(Store::rows_affected(&done))
    }

    async fn count_key_packages(
        &self, user: UserId, client: ClientId, suite: u16, now: i64,
    ) -> StoreResult<u64> {
        let n: Option<(i64,)> = self
            .device_suite_row(
                "SELECT COUNT(*) FROM mls_key_packages WHERE user_id = $1 AND client_id = $2 \
                 AND suite = $3 AND not_after > $4 AND NOT last_resort",
                (user, client, suite, now),
            )
            .await?;
        Ok(n.map_or(0, |(n,)| u64::try_from(n).unwrap_or(0)))
    }

    async fn claim_key_packages(
        &self, user: UserId, suite: u16, except: Option<ClientId>, now: i64,
    ) -> StoreResult<Vec<KeyPackageRecord>> {
        let devices: Vec<i64> = sqlx::query_scalar("SELECT id FROM clients WHERE user_id = $1")
            .bind(user.to_string())
            .fetch_all(self.pool())
            .await
            .map_err(Store::error)?;
        let mut devices: Vec<ClientId> = devices.into_iter().map(parse_client_id).collect();
        devices.sort();
        let mut claimed = Vec::new();
        for client in devices.into_iter().filter(|c| Some(*c) != except) {
            // One statement each, which the dialect makes atomic.
            let key = (user, client, suite, now);
            let row: Option<(Vec<u8>, Vec<u8>, i64)> =
                self.device_suite_row(Store::CLAIM_KEY_PACKAGE, key).await?;
            // None left: the device's last-resort one, which stays.
            let (row, last_resort) = match row {
                Some(row) => (Some(row), false),
                None => (
                    self.device_suite_row(
                        "SELECT ref, data, not_after FROM mls_key_packages WHERE user_id = $1 \
                         AND client_id = $2 AND suite = $3 AND not_after > $4 AND last_resort",
                        key,
                    )
                    .await?,
                    true,
                ),
            };
            if let Some((reference, data, not_after)) = row {
                claimed.push(KeyPackageRecord {
                    reference,
                    user,
                    client,
                    suite,
                    data,
                    not_after,
                    last_resort,
                });
            }
        }
        Ok(claimed)
    }

    async fn delete_key_packages(
        &self, user: UserId, client: ClientId, references: &[Vec<u8>],
    ) -> StoreResult<u64> {
        let (_guard, mut tx) = self.write_tx().await?;
        let mut gone = 0;
        for reference in references {
            let done = sqlx::query(
                "DELETE FROM mls_key_packages WHERE ref = $1 AND user_id = $2 AND client_id = $3",
            )
            .bind(reference)
            .bind(user.to_string())
            .bind(client_id(client))
            .execute(&mut *tx)
            .await
            .map_err(Store::error)?;
            gone += Store::rows_affected(&done);
        }
        tx.commit().await.map_err(Store::error)?;
        Ok(gone)
    }

    async fn mls_removal_key(
        &self, scheme: u16, candidate: (&[u8], &[u8]),
    ) -> StoreResult<(Vec<u8>, Vec<u8>)> {
        let (_guard, mut tx) = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO mls_removal_keys (scheme, secret, public) VALUES ($1, $2, $3) \
             ON CONFLICT (scheme) DO NOTHING",
        )
        .bind(i32::from(scheme))
        .bind(candidate.0)
        .bind(candidate.1)
        .execute(&mut *tx)
        .await
        .map_err(Store::error)?;
        let key: (Vec<u8>, Vec<u8>) =
            sqlx::query_as("SELECT secret, public FROM mls_removal_keys WHERE scheme = $1")
                .bind(i32::from(scheme))
                .fetch_one(&mut *tx)
                .await
                .map_err(Store::error)?;
        tx.commit().await.map_err(Store::error)?;
        Ok(key)
    }
}

/// A scheme or suite number read back.
fn number(v: i32) -> StoreResult<u16> {
    u16::try_from(v).map_err(|_| StoreError::Backend(format!("scheme or suite {v}")))
}

impl Store {
    /// The one row `sql` selects (or deletes and returns) for one device's key
    /// packages on one suite still valid at a time: `$1` user, `$2` device,
    /// `$3` suite, `$4` now.
    async fn device_suite_row<R>(
        &self, sql: &'static str, (user, client, suite, now): (UserId, ClientId, u16, i64),
    ) -> StoreResult<Option<R>>
    where
        R: for<'r> sqlx::FromRow<'r, <Db as sqlx::Database>::Row> + Send + Unpin,
    {
        sqlx::query_as(sql)
            .bind(user.to_string())
            .bind(client_id(client))
            .bind(i32::from(suite))
            .bind(now)
            .fetch_optional(self.pool())
            .await
            .map_err(Store::error)
    }
}
