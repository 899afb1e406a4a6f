//! Devices: registration and removal, prekeys, send generations and push endpoints.

use async_trait::async_trait;

use parley_api::{ClientId, ClientType, UserId};
use parley_store::{
    AddedClient, ClientRecord, DeviceStore, Notify, PrekeyRecord, StoreError, StoreResult,
};

use super::{Db, Store};
use parley_store_sql::Dialect;
use parley_store_sql::columns::{
    ClientRow, client_class, client_id, client_type, parse_client_id, parse_user_id, prekey,
};

#[async_trait]
impl DeviceStore for Store {
    async fn add_client(
        &self, c: &ClientRecord, prekeys: &[PrekeyRecord], max_permanent: usize, notify: Notify<'_>,
    ) -> StoreResult<AddedClient> {
        let (_guard, mut tx) = self.user_tx(c.user).await?;
        let mut added = AddedClient::default();
        match c.kind {
            ClientType::Permanent => {
                let count: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM clients WHERE user_id = $1 AND kind = 'permanent'",
                )
                .bind(c.user.to_string())
                .fetch_one(&mut *tx)
                .await
                .map_err(Store::error)?;
                if usize::try_from(count).unwrap_or(usize::MAX) >= max_permanent {
                    return Err(StoreError::TooManyClients);
                }
            }
            ClientType::Temporary => {
                let old: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM clients WHERE user_id = $1 AND kind = 'temporary'",
                )
                .bind(c.user.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(Store::error)?;
                if let Some(old) = old {
                    Self::remove_client(&mut tx, c.user, parse_client_id(old)).await?;
                    added.replaced = Some(parse_client_id(old));
                }
            }
        }
        sqlx::query(
            "INSERT INTO clients (user_id, id, kind, class, model, label, cookie_label, created_at, trust) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(c.user.to_string())
        .bind(client_id(c.id))
        .bind(client_type(c.kind))
        .bind(client_class(c.class))
        .bind(&c.model)
        .bind(&c.label)
        .bind(&c.cookie_label)
        .bind(c.created_at)
        .bind(&c.trust)
        .execute(&mut *tx)
        .await
        .map_err(Store::error)?;
        Self::insert_prekeys(&mut tx, c.user, c.id, prekeys).await?;
        sqlx::query("INSERT INTO queue_heads (user_id, client_id) VALUES ($1, $2)")
            .bind(c.user.to_string())
            .bind(client_id(c.id))
            .execute(&mut *tx)
            .await
            .map_err(Store::error)?;
        Self::fan_out(
            &mut tx,
            &[(c.user, notify.payload)],
            Some((c.user, c.id)),
            notify.at,
        )
        .await?;
        tx.commit().await.map_err(Store::error)?;
        Ok(added)
    }

    async fn clients(&self, user: UserId) -> StoreResult<Vec<ClientRecord>> {
        let rows: Vec<ClientRow> = sqlx::query_as(Store::CLIENTS_OLDEST_FIRST)
            .bind(user.to_string())
            .fetch_all(self.pool())
            .await
            .map_err(Store::error)?;
        rows.into_iter().map(ClientRow::record).collect()
    }

    async fn client(&self, user: UserId, id: ClientId) -> StoreResult<Option<ClientRecord>> {
        let row: Option<ClientRow> =
            sqlx::query_as("SELECT * FROM clients WHERE user_id = $1 AND id = $2")
                .bind(user.to_string())
                .bind(client_id(id))
                .fetch_optional(self.pool())
                .await
                .map_err(Store::error)?;
        row.map(ClientRow::record).transpose()
    }

    async fn delete_client(
        &self, user: UserId, id: ClientId, notify: Notify<'_>,
    ) -> StoreResult<()> {
        let (_guard, mut tx) = self.user_tx(user).await?;
        Self::lock_heads(&mut tx, user).await?;
        if !Self::remove_client(&mut tx, user, id).await? {
            return Err(StoreError::NotFound);
        }
        Self::fan_out(&mut tx, &[(user, notify.payload)], None, notify.at).await?;
        tx.commit().await.map_err(Store::error)
    }

    async fn add_prekeys(
        &self, user: UserId, client: ClientId, prekeys: &[PrekeyRecord],
    ) -> StoreResult<()> {
        let (_guard, mut tx) = self.write_tx().await?;
        Self::require_client(&mut tx, user, client).await?;
        Self::insert_prekeys(&mut tx, user, client, prekeys).await?;
        tx.commit().await.map_err(Store::error)
    }

    async fn count_prekeys(&self, user: UserId, client: ClientId) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM prekeys WHERE user_id = $1 AND client_id = $2 AND id <> 65535",
        )
        .bind(user.to_string())
        .bind(client_id(client))
        .fetch_one(self.pool())
        .await
        .map_err(Store::error)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn raise_generation(
        &self, user: UserId, client: ClientId, generation: u64,
    ) -> StoreResult<Option<u64>> {
        let g: Option<i64> = sqlx::query_scalar(Store::RAISE_GENERATION)
            .bind(i64::try_from(generation).unwrap_or(i64::MAX))
            .bind(user.to_string())
            .bind(client_id(client))
            .fetch_optional(self.pool())
            .await
            .map_err(Store::error)?;
        Ok(g.map(|g| u64::try_from(g).unwrap_or(0)))
    }

    async fn claim_prekey(
        &self, user: UserId, client: ClientId, one_time: bool,
    ) -> StoreResult<Option<PrekeyRecord>> {
        // One statement, which the dialect makes atomic.
        if one_time {
            let claimed: Option<(i64, String)> = sqlx::query_as(Store::CLAIM_ONE_TIME_PREKEY)
                .bind(user.to_string())
                .bind(client_id(client))
                .fetch_optional(self.pool())
                .await
                .map_err(Store::error)?;
            if let Some(row) = claimed {
                return prekey(row).map(Some);
            }
        }
        let last: Option<(i64, String)> = sqlx::query_as(
            "SELECT id, key FROM prekeys WHERE user_id = $1 AND client_id = $2 AND id = 65535",
        )
        .bind(user.to_string())
        .bind(client_id(client))
        .fetch_optional(self.pool())
        .await
        .map_err(Store::error)?;
        last.map(prekey).transpose()
    }

    async fn set_push_endpoint(
        &self, user: UserId, client: ClientId, url: Option<&str>,
    ) -> StoreResult<()> {
        let (_guard, mut tx) = self.write_tx().await?;
        Self::require_client(&mut tx, user, client).await?;
        match url {
            Some(url) => sqlx::query(
                "INSERT INTO push_endpoints (user_id, client_id, url) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id, client_id) DO UPDATE SET url = excluded.url",
            )
            .bind(user.to_string())
            .bind(client_id(client))
            .bind(url),
            None => sqlx::query("DELETE FROM push_endpoints WHERE user_id = $1 AND client_id = $2")
                .bind(user.to_string())
                .bind(client_id(client)),
        }
        .execute(&mut *tx)
        .await
        .map_err(Store::error)?;
        tx.commit().await.map_err(Store::error)
    }

    async fn push_endpoints(
        &self, devices: &[(UserId, ClientId)],
    ) -> StoreResult<Vec<(UserId, ClientId, String)>> {
        let mut found = std::collections::HashMap::new();
        // A statement per 256 devices: well within both databases' limits
        // on parameters.
        for chunk in devices.chunks(256) {
            let mut query = sqlx::QueryBuilder::<Db>::new(
                "SELECT user_id, client_id, url FROM push_endpoints WHERE (user_id, client_id) IN (",
            );
            query.push_values(chunk, |mut row, &(user, client)| {
                row.push_bind(user.to_string()).push_bind(client_id(client));
            });
            query.push(")");
            let rows: Vec<(String, i64, String)> = query
                .build_query_as()
                .fetch_all(self.pool())
                .await
                .map_err(Store::error)?;
            for (user, client, url) in rows {
                found.insert((parse_user_id(&user)?, parse_client_id(client)), url);
            }
        }
        Ok(devices
            .iter()
            .filter_map(|&(user, client)| Some((user, client, found.remove(&(user, client))?)))
            .collect())
    }
}
