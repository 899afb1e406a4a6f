//! Accounts: activation codes, users, cookies, password resets and the recovery bundle, on SQLite.

use super::*;

#[async_trait]
impl AccountStore for SqliteStore {
    async fn put_activation_code(&self, c: &ActivationCode) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO activation_codes (email, code_hash, expires_at, tries) VALUES (?, ?, ?, ?) \
             ON CONFLICT (email) DO UPDATE SET code_hash = excluded.code_hash, \
             expires_at = excluded.expires_at, tries = excluded.tries",
        )
        .bind(&c.email)
        .bind(&c.code_hash)
        .bind(c.expires_at)
        .bind(i64::from(c.tries))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn activation_code(&self, email: &str) -> StoreResult<Option<ActivationCode>> {
        let row = sqlx::query("SELECT * FROM activation_codes WHERE email = ?")
            .bind(email)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| {
            Ok(ActivationCode {
                email: r.try_get("email").map_err(backend)?,
                code_hash: r.try_get("code_hash").map_err(backend)?,
                expires_at: r.try_get("expires_at").map_err(backend)?,
                tries: tries(&r)?,
            })
        })
        .transpose()
    }

    async fn count_activation_try(&self, email: &str) -> StoreResult<u32> {
        let row = sqlx::query(
            "UPDATE activation_codes SET tries = tries + 1 WHERE email = ? RETURNING tries",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .ok_or(StoreError::NotFound)?;
        tries(&row)
    }

    async fn delete_activation_code(&self, email: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM activation_codes WHERE email = ?")
            .bind(email)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn create_user(&self, u: &User) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO users (id, name, email, handle, password_hash, accent_id, locale, \
             picture, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(u.id.to_string())
        .bind(&u.name)
        .bind(&u.email)
        .bind(&u.handle)
        .bind(&u.password_hash)
        .bind(u.accent_id)
        .bind(&u.locale)
        .bind(&u.picture)
        .bind(u.created_at)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("DELETE FROM activation_codes WHERE email = ?")
            .bind(&u.email)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(user_row).transpose()
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE email = ?")
            .bind(email)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(user_row).transpose()
    }

    async fn user_by_handle(&self, handle: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE handle = ?")
            .bind(handle)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(user_row).transpose()
    }

    async fn update_profile(
        &self,
        id: UserId,
        p: &ProfileUpdate,
        notify: Notify<'_>,
    ) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE users SET name = COALESCE(?, name), accent_id = COALESCE(?, accent_id), \
             locale = COALESCE(?, locale), picture = CASE WHEN ? THEN ? ELSE picture END \
             WHERE id = ?",
        )
        .bind(&p.name)
        .bind(p.accent_id)
        .bind(&p.locale)
        .bind(p.picture.is_some())
        .bind(p.picture.clone().flatten())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        enqueue_for_user(&mut tx, id, None, notify).await?;
        tx.commit().await.map_err(backend)
    }

    async fn set_handle(&self, id: UserId, handle: &str) -> StoreResult<()> {
        let done = sqlx::query("UPDATE users SET handle = ? WHERE id = ?")
            .bind(handle)
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn set_password(&self, id: UserId, hash: &str) -> StoreResult<()> {
        let done = sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
            .bind(hash)
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn change_password(&self, id: UserId, hash: &str) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        let done = sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
            .bind(hash)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query("DELETE FROM cookies WHERE user_id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn delete_user(&self, id: UserId) -> StoreResult<()> {
        // Cookies, devices (with their prekeys) and resets go by ON DELETE CASCADE.
        sqlx::query("DELETE FROM users WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn add_cookie(&self, c: &Cookie, max_per_kind: usize) -> StoreResult<()> {
        let persistent = c.kind == CookieKind::Persistent;
        let (_writer, mut tx) = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO cookies (user_id, id, label, persistent, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(c.user.to_string())
        .bind(&c.id)
        .bind(&c.label)
        .bind(persistent)
        .bind(c.created_at)
        .bind(c.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query(
            "DELETE FROM cookies WHERE user_id = ?1 AND persistent = ?2 AND id NOT IN \
             (SELECT id FROM cookies WHERE user_id = ?1 AND persistent = ?2 \
              ORDER BY created_at DESC, rowid DESC LIMIT ?3)",
        )
        .bind(c.user.to_string())
        .bind(persistent)
        .bind(i64::try_from(max_per_kind).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn cookie(&self, user: UserId, id: &str) -> StoreResult<Option<Cookie>> {
        let row = sqlx::query("SELECT * FROM cookies WHERE user_id = ? AND id = ?")
            .bind(user.to_string())
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(cookie_row).transpose()
    }

    async fn cookies(&self, user: UserId) -> StoreResult<Vec<Cookie>> {
        let rows = sqlx::query(
            "SELECT * FROM cookies WHERE user_id = ? ORDER BY created_at DESC, rowid DESC",
        )
        .bind(user.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(cookie_row).collect()
    }

    async fn remove_cookie(&self, user: UserId, id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM cookies WHERE user_id = ? AND id = ?")
            .bind(user.to_string())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn remove_cookies_by_label(&self, user: UserId, labels: &[String]) -> StoreResult<u64> {
        let (_writer, mut tx) = self.write_tx().await?;
        let mut removed = 0;
        for label in labels {
            removed += sqlx::query("DELETE FROM cookies WHERE user_id = ? AND label = ?")
                .bind(user.to_string())
                .bind(label)
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
        }
        tx.commit().await.map_err(backend)?;
        Ok(removed)
    }

    async fn start_password_reset(
        &self,
        r: &PasswordReset,
        now: i64,
        max_tries: u32,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO password_resets (key, user_id, code_hash, expires_at, tries) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET user_id = excluded.user_id, \
             code_hash = excluded.code_hash, expires_at = excluded.expires_at, tries = excluded.tries \
             WHERE password_resets.expires_at <= ? OR password_resets.tries >= ?",
        )
        .bind(&r.key)
        .bind(r.user.to_string())
        .bind(&r.code_hash)
        .bind(r.expires_at)
        .bind(i64::from(r.tries))
        .bind(now)
        .bind(i64::from(max_tries))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn password_reset(&self, key: &str) -> StoreResult<Option<PasswordReset>> {
        let row = sqlx::query("SELECT * FROM password_resets WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| {
            Ok(PasswordReset {
                key: r.try_get("key").map_err(backend)?,
                user: parse_user_id(&r.try_get::<String, _>("user_id").map_err(backend)?)?,
                code_hash: r.try_get("code_hash").map_err(backend)?,
                expires_at: r.try_get("expires_at").map_err(backend)?,
                tries: tries(&r)?,
            })
        })
        .transpose()
    }

    async fn count_password_reset_try(&self, key: &str) -> StoreResult<u32> {
        let row = sqlx::query(
            "UPDATE password_resets SET tries = tries + 1 WHERE key = ? RETURNING tries",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .ok_or(StoreError::NotFound)?;
        tries(&row)
    }

    async fn delete_password_reset(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM password_resets WHERE key = ?")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn complete_password_reset(
        &self,
        key: &str,
        user: UserId,
        hash: &str,
    ) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        let gone = sqlx::query("DELETE FROM password_resets WHERE key = ? AND user_id = ?")
            .bind(key)
            .bind(user.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if gone.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
            .bind(hash)
            .bind(user.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM cookies WHERE user_id = ?")
            .bind(user.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn set_recovery_bundle(&self, user: UserId, bundle: Option<&[u8]>) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        let updated = sqlx::query("UPDATE users SET recovery_bundle = ? WHERE id = ?")
            .bind(bundle)
            .bind(user.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await.map_err(backend)
    }

    async fn recovery_bundle(&self, user: UserId) -> StoreResult<Option<Vec<u8>>> {
        let row: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT recovery_bundle FROM users WHERE id = ?")
                .bind(user.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        Ok(row.flatten())
    }
}
