//! Devices: registration and removal, prekeys, send generations and push endpoints, on SQLite.

use super::*;

#[async_trait]
impl DeviceStore for SqliteStore {
    async fn add_client(
        &self,
        c: &ClientRecord,
        prekeys: &[PrekeyRecord],
        max_permanent: usize,
        notify: Notify<'_>,
    ) -> StoreResult<AddedClient> {
        let (_writer, mut tx) = self.write_tx().await?;
        let mut added = AddedClient::default();
        match c.kind {
            ClientType::Permanent => {
                let count: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM clients WHERE user_id = ? AND kind = 'permanent'",
                )
                .bind(c.user.to_string())
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
                if usize::try_from(count).unwrap_or(usize::MAX) >= max_permanent {
                    return Err(StoreError::TooManyClients);
                }
            }
            ClientType::Temporary => {
                let old: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM clients WHERE user_id = ? AND kind = 'temporary'",
                )
                .bind(c.user.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
                if let Some(old) = old {
                    remove_client(&mut tx, c.user, parse_client_id(old)).await?;
                    added.replaced = Some(parse_client_id(old));
                }
            }
        }
        sqlx::query(
            "INSERT INTO clients (user_id, id, kind, class, model, label, cookie_label, created_at, trust) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .map_err(backend)?;
        insert_prekeys(&mut tx, c.user, c.id, prekeys).await?;
        sqlx::query("INSERT INTO queue_heads (user_id, client_id) VALUES (?, ?)")
            .bind(c.user.to_string())
            .bind(client_id(c.id))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        enqueue_for_user(&mut tx, c.user, Some(c.id), notify).await?;
        tx.commit().await.map_err(backend)?;
        Ok(added)
    }

    async fn clients(&self, user: UserId) -> StoreResult<Vec<ClientRecord>> {
        let rows =
            sqlx::query("SELECT * FROM clients WHERE user_id = ? ORDER BY created_at, rowid")
                .bind(user.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
        rows.iter().map(client_row).collect()
    }

    async fn client(&self, user: UserId, id: ClientId) -> StoreResult<Option<ClientRecord>> {
        let row = sqlx::query("SELECT * FROM clients WHERE user_id = ? AND id = ?")
            .bind(user.to_string())
            .bind(client_id(id))
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(client_row).transpose()
    }

    async fn delete_client(
        &self,
        user: UserId,
        id: ClientId,
        notify: Notify<'_>,
    ) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        if !remove_client(&mut tx, user, id).await? {
            return Err(StoreError::NotFound);
        }
        enqueue_for_user(&mut tx, user, None, notify).await?;
        tx.commit().await.map_err(backend)
    }

    async fn add_prekeys(
        &self,
        user: UserId,
        client: ClientId,
        prekeys: &[PrekeyRecord],
    ) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        require_client(&mut tx, user, client).await?;
        insert_prekeys(&mut tx, user, client, prekeys).await?;
        tx.commit().await.map_err(backend)
    }

    async fn count_prekeys(&self, user: UserId, client: ClientId) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM prekeys WHERE user_id = ? AND client_id = ? AND id <> 65535",
        )
        .bind(user.to_string())
        .bind(client_id(client))
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn raise_generation(
        &self,
        user: UserId,
        client: ClientId,
        generation: u64,
    ) -> StoreResult<Option<u64>> {
        let g: Option<i64> = sqlx::query_scalar(
            "UPDATE clients SET generation = MAX(generation, ?) WHERE user_id = ? AND id = ? RETURNING generation",
        )
        .bind(i64::try_from(generation).unwrap_or(i64::MAX))
        .bind(user.to_string())
        .bind(client_id(client))
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(g.map(|g| u64::try_from(g).unwrap_or(0)))
    }

    async fn claim_prekey(
        &self,
        user: UserId,
        client: ClientId,
        one_time: bool,
    ) -> StoreResult<Option<PrekeyRecord>> {
        // One statement: SQLite runs it under the write lock, so it is atomic.
        if one_time {
            let claimed = sqlx::query(
                "DELETE FROM prekeys WHERE rowid = (SELECT rowid FROM prekeys \
                 WHERE user_id = ?1 AND client_id = ?2 AND id <> 65535 ORDER BY id LIMIT 1) \
                 RETURNING id, key",
            )
            .bind(user.to_string())
            .bind(client_id(client))
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
            if let Some(row) = claimed {
                return prekey_row(&row).map(Some);
            }
        }
        let last = sqlx::query(
            "SELECT id, key FROM prekeys WHERE user_id = ? AND client_id = ? AND id = 65535",
        )
        .bind(user.to_string())
        .bind(client_id(client))
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        last.as_ref().map(prekey_row).transpose()
    }

    async fn set_push_endpoint(
        &self,
        user: UserId,
        client: ClientId,
        url: Option<&str>,
    ) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        require_client(&mut tx, user, client).await?;
        match url {
            Some(url) => sqlx::query(
                "INSERT INTO push_endpoints (user_id, client_id, url) VALUES (?, ?, ?) \
                 ON CONFLICT (user_id, client_id) DO UPDATE SET url = excluded.url",
            )
            .bind(user.to_string())
            .bind(client_id(client))
            .bind(url),
            None => sqlx::query("DELETE FROM push_endpoints WHERE user_id = ? AND client_id = ?")
                .bind(user.to_string())
                .bind(client_id(client)),
        }
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn push_endpoint(&self, user: UserId, client: ClientId) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT url FROM push_endpoints WHERE user_id = ? AND client_id = ?")
            .bind(user.to_string())
            .bind(client_id(client))
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }
}
