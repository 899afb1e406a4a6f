//! Accounts: activation codes, users, cookies, password resets and the recovery bundle.

use async_trait::async_trait;

use parley_api::{CookieKind, UserId};
use parley_store::{
    AccountStore, CodeKind, Cookie, Notify, OneTimeCode, ProfileUpdate, StoreResult, User,
};

use super::{Store, Tx};
use parley_store_sql::Dialect;
use parley_store_sql::columns::{CodeRow, CookieRow, UserRow};

/// The statements one kind of code is read, counted and forgotten with: each
/// kind has its table, read as one row shape (`CodeRow`), keyed by `$1`.
struct CodeStatements {
    select: &'static str,
    count_try: &'static str,
    delete: &'static str,
}

fn statements(kind: CodeKind) -> CodeStatements {
    match kind {
        CodeKind::Activation => CodeStatements {
            select: "SELECT email AS key, CAST(NULL AS TEXT) AS user_id, code_hash, expires_at, \
                     tries FROM activation_codes WHERE email = $1",
            count_try: "UPDATE activation_codes SET tries = tries + 1 WHERE email = $1 \
                        RETURNING tries",
            delete: "DELETE FROM activation_codes WHERE email = $1",
        },
        CodeKind::PasswordReset => CodeStatements {
            select: "SELECT key, user_id, code_hash, expires_at, tries FROM password_resets \
                     WHERE key = $1",
            count_try: "UPDATE password_resets SET tries = tries + 1 WHERE key = $1 \
                        RETURNING tries",
            delete: "DELETE FROM password_resets WHERE key = $1",
        },
    }
}

/// `SELECT <a user's columns> FROM users WHERE <column> = $1`.
macro_rules! user_where {
    ($column:literal) => {
        concat!(
            "SELECT ",
            parley_store_sql::user_columns!(),
            " FROM users WHERE ",
            $column,
            " = $1"
        )
    };
}

impl Store {
    /// Sets a user's password hash and deletes every cookie of theirs, inside
    /// `tx`: whoever knew the old password is out. `NotFound` for an unknown
    /// user.
    async fn new_password_ends_logins(tx: &mut Tx, user: UserId, hash: &str) -> StoreResult<()> {
        Store::touched(
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                .bind(hash)
                .bind(user.to_string())
                .execute(&mut **tx)
                .await,
        )?;
        sqlx::query("DELETE FROM cookies WHERE user_id = $1")
            .bind(user.to_string())
            .execute(&mut **tx)
            .await
            .map_err(Store::error)?;
        Ok(())
    }

    /// The user `sql` (from `user_where!`) finds by `key`.
    async fn user_where(&self, sql: &'static str, key: &str) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = self.row_by_key(sql, key).await?;
        row.map(UserRow::record).transpose()
    }

    /// Sets one text column of a user's row (`sql` binds the value as `$1` and
    /// the id as `$2`). `NotFound` for an unknown user.
    async fn set_user_column(&self, sql: &'static str, value: &str, id: UserId) -> StoreResult<()> {
        Store::touched(
            sqlx::query(sql)
                .bind(value)
                .bind(id.to_string())
                .execute(self.pool())
                .await,
        )?;
        Ok(())
    }
}

#[async_trait]
impl AccountStore for Store {
    async fn token_signing_seed(&self, candidate: &[u8]) -> StoreResult<Vec<u8>> {
        let (_guard, mut tx) = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO token_signing_key (id, seed) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
        )
        .bind(candidate)
        .execute(&mut *tx)
        .await
        .map_err(Store::error)?;
        let seed: Vec<u8> = sqlx::query_scalar("SELECT seed FROM token_signing_key WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .map_err(Store::error)?;
        tx.commit().await.map_err(Store::error)?;
        Ok(seed)
    }

    async fn put_activation_code(&self, c: &OneTimeCode) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO activation_codes (email, code_hash, expires_at, tries) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (email) DO UPDATE SET code_hash = excluded.code_hash, \
             expires_at = excluded.expires_at, tries = excluded.tries",
        )
        .bind(&c.key)
        .bind(&c.code_hash)
        .bind(c.expires_at)
        .bind(i64::from(c.tries))
        .execute(self.pool())
        .await
        .map_err(Store::error)?;
        Ok(())
    }

    async fn one_time_code(&self, kind: CodeKind, key: &str) -> StoreResult<Option<OneTimeCode>> {
        let row: Option<CodeRow> = self.row_by_key(statements(kind).select, key).await?;
        row.map(CodeRow::record).transpose()
    }

    async fn count_code_try(&self, kind: CodeKind, key: &str) -> StoreResult<u32> {
        self.count_try(statements(kind).count_try, key).await
    }

    async fn delete_code(&self, kind: CodeKind, key: &str) -> StoreResult<()> {
        self.keyed_delete(statements(kind).delete, key).await
    }

    async fn create_user(&self, u: &User) -> StoreResult<()> {
        let (_guard, mut tx) = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO users (id, name, email, handle, password_hash, accent_id, locale, \
             picture, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
        .map_err(Store::error)?;
        sqlx::query("DELETE FROM activation_codes WHERE email = $1")
            .bind(&u.email)
            .execute(&mut *tx)
            .await
            .map_err(Store::error)?;
        tx.commit().await.map_err(Store::error)
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        self.user_where(user_where!("id"), &id.to_string()).await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        self.user_where(user_where!("email"), email).await
    }

    async fn user_by_handle(&self, handle: &str) -> StoreResult<Option<User>> {
        self.user_where(user_where!("handle"), handle).await
    }

    async fn update_profile(
        &self, id: UserId, p: &ProfileUpdate, notify: Notify<'_>,
    ) -> StoreResult<()> {
        let (_guard, mut tx) = self.user_tx(id).await?;
        Store::touched(
            sqlx::query(
                "UPDATE users SET name = COALESCE($1, name), accent_id = COALESCE($2, accent_id), \
             locale = COALESCE($3, locale), picture = CASE WHEN $4 THEN $5 ELSE picture END \
             WHERE id = $6",
            )
            .bind(&p.name)
            .bind(p.accent_id)
            .bind(&p.locale)
            .bind(p.picture.is_some())
            .bind(p.picture.clone().flatten())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await,
        )?;
        Self::fan_out(&mut tx, &[(id, notify.payload)], None, notify.at).await?;
        tx.commit().await.map_err(Store::error)
    }

    async fn set_handle(&self, id: UserId, handle: &str) -> StoreResult<()> {
        self.set_user_column("UPDATE users SET handle = $1 WHERE id = $2", handle, id)
            .await
    }

    async fn set_password(&self, id: UserId, hash: &str) -> StoreResult<()> {
        self.set_user_column(
            "UPDATE users SET password_hash = $1 WHERE id = $2",
            hash,
            id,
        )
        .await
    }

    async fn change_password(&self, id: UserId, hash: &str) -> StoreResult<()> {
        let (_guard, mut tx) = self.user_tx(id).await?;
        Self::new_password_ends_logins(&mut tx, id, hash).await?;
        tx.commit().await.map_err(Store::error)
    }

    async fn delete_user(&self, id: UserId) -> StoreResult<()> {
        // Cookies, devices (with their prekeys and queues), resets, connections and
        // memberships go by ON DELETE CASCADE.
        let (_guard, mut tx) = self.user_tx(id).await?;
        Self::lock_heads(&mut tx, id).await?;
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(Store::error)?;
        tx.commit().await.map_err(Store::error)
    }

    async fn add_cookie(&self, c: &Cookie, max_per_kind: usize) -> StoreResult<()> {
        let persistent = c.kind == CookieKind::Persistent;
        let (_guard, mut tx) = self.user_tx(c.user).await?;
        sqlx::query(
            "INSERT INTO cookies (user_id, id, label, persistent, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(c.user.to_string())
        .bind(&c.id)
        .bind(&c.label)
        .bind(persistent)
        .bind(c.created_at)
        .bind(c.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(Store::error)?;
        sqlx::query(Store::EVICT_COOKIES)
            .bind(c.user.to_string())
            .bind(persistent)
            .bind(i64::try_from(max_per_kind).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(Store::error)?;
        tx.commit().await.map_err(Store::error)
    }

    async fn cookie(&self, user: UserId, id: &str) -> StoreResult<Option<Cookie>> {
        let row: Option<CookieRow> =
            sqlx::query_as("SELECT * FROM cookies WHERE user_id = $1 AND id = $2")
                .bind(user.to_string())
                .bind(id)
                .fetch_optional(self.pool())
                .await
                .map_err(Store::error)?;
        row.map(CookieRow::record).transpose()
    }

    async fn cookies(&self, user: UserId) -> StoreResult<Vec<Cookie>> {
        let rows: Vec<CookieRow> = sqlx::query_as(Store::COOKIES_NEWEST_FIRST)
            .bind(user.to_string())
            .fetch_all(self.pool())
            .await
            .map_err(Store::error)?;
        rows.into_iter().map(CookieRow::record).collect()
    }

    async fn remove_cookie(&self, user: UserId, id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM cookies WHERE user_id = $1 AND id = $2")
            .bind(user.to_string())
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(Store::error)?;
        Ok(())
    }

    async fn remove_cookies_by_label(&self, user: UserId, labels: &[String]) -> StoreResult<u64> {
        let (_guard, mut tx) = self.write_tx().await?;
        let mut removed = 0;
        for label in labels {
            let done = sqlx::query("DELETE FROM cookies WHERE user_id = $1 AND label = $2")
                .bind(user.to_string())
                .bind(label)
                .execute(&mut *tx)
                .await
                .map_err(Store::error)?;
            removed += Store::rows_affected(&done);
        }
        tx.commit().await.map_err(Store::error)?;
        Ok(removed)
    }

    async fn start_password_reset(
        &self, r: &OneTimeCode, now: i64, max_tries: u32,
    ) -> StoreResult<bool> {
        let user = r.reset_user()?;
        let done = sqlx::query(
            "INSERT INTO password_resets (key, user_id, code_hash, expires_at, tries) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO UPDATE SET user_id = excluded.user_id, \
             code_hash = excluded.code_hash, expires_at = excluded.expires_at, tries = excluded.tries \
             WHERE password_resets.expires_at <= $6 OR password_resets.tries >= $7",
        )
        .bind(&r.key)
        .bind(user.to_string())
        .bind(&r.code_hash)
        .bind(r.expires_at)
        .bind(i64::from(r.tries))
        .bind(now)
        .bind(i64::from(max_tries))
        .execute(self.pool())
        .await
        .map_err(Store::error)?;
        Ok(Store::rows_affected(&done) == 1)
    }

    async fn complete_password_reset(
        &self, key: &str, user: UserId, hash: &str,
    ) -> StoreResult<()> {
        let (_guard, mut tx) = self.user_tx(user).await?;
        Store::touched(
            sqlx::query("DELETE FROM password_resets WHERE key = $1 AND user_id = $2")
                .bind(key)
                .bind(user.to_string())
                .execute(&mut *tx)
                .await,
        )?;
        Self::new_password_ends_logins(&mut tx, user, hash).await?;
        tx.commit().await.map_err(Store::error)
    }

    async fn set_recovery_bundle(&self, user: UserId, bundle: Option<&[u8]>) -> StoreResult<()> {
        Store::touched(
            sqlx::query("UPDATE users SET recovery_bundle = $1 WHERE id = $2")
                .bind(bundle)
                .bind(user.to_string())
                .execute(self.pool())
                .await,
        )?;
        Ok(())
    }

    async fn recovery_bundle(&self, user: UserId) -> StoreResult<Option<Vec<u8>>> {
        let row: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT recovery_bundle FROM users WHERE id = $1")
                .bind(user.to_string())
                .fetch_optional(self.pool())
                .await
                .map_err(Store::error)?;
        Ok(row.flatten())
    }
}
