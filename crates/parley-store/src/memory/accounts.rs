//! Accounts: activation codes, users, cookies, password resets and the recovery
//! bundle, in memory.

use std::cmp::Reverse;

use async_trait::async_trait;
use parley_api::UserId;

use super::{CookieRow, MemoryStore, State, UserRow, missing_parent};
use crate::{
    AccountStore, CodeKind, Cookie, Notify, OneTimeCode, ProfileUpdate, StoreError, StoreResult,
    User,
};

/// Counts one try of a code: `tries + 1`, as the SQL `RETURNING tries` gives it.
fn one_more_try(tries: &mut u32) -> StoreResult<u32> {
    *tries = tries
        .checked_add(1)
        .ok_or_else(|| StoreError::Backend(format!("tries {}", u64::from(*tries) + 1)))?;
    Ok(*tries)
}

impl State {
    fn create_user(&mut self, u: &User) -> StoreResult<()> {
        // SQLite checks the unique indexes in this order: handle, e-mail, id.
        if u.handle.as_ref().is_some_and(|handle| {
            self.users
                .values()
                .any(|r| r.user.handle.as_ref() == Some(handle))
        }) {
            return Err(StoreError::Conflict("handle"));
        }
        if self.users.values().any(|r| r.user.email == u.email) {
            return Err(StoreError::Conflict("email"));
        }
        if self.user_exists(u.id) {
            return Err(StoreError::Conflict("record"));
        }
        self.users.insert(
            u.id,
            UserRow {
                user: u.clone(),
                recovery_bundle: None,
            },
        );
        self.codes.remove(&(CodeKind::Activation, u.email.clone()));
        Ok(())
    }

    fn user_mut(&mut self, id: UserId) -> StoreResult<&mut User> {
        self.users
            .get_mut(&id)
            .map(|r| &mut r.user)
            .ok_or(StoreError::NotFound)
    }

    fn remove_cookies_of(&mut self, user: UserId) {
        self.cookies.retain(|(u, _), _| *u != user);
    }

    /// Deletes a user and, as `ON DELETE CASCADE` does, their cookies, resets,
    /// devices (with prekeys, queues and push endpoints), connections either
    /// way and memberships. Conversations stay (their creator is not a key).
    fn delete_user(&mut self, id: UserId) {
        self.users.remove(&id);
        self.remove_cookies_of(id);
        self.codes.retain(|_, code| code.user != Some(id));
        self.clients.retain(|(u, _), _| *u != id);
        self.key_packages.retain(|_, p| p.user != id);
        self.connections
            .retain(|(from, to), _| *from != id && *to != id);
        for conversation in self.conversations.values_mut() {
            conversation.members.remove(&id);
        }
    }

    fn add_cookie(&mut self, c: &Cookie, max_per_kind: usize) -> StoreResult<()> {
        if !self.user_exists(c.user) {
            return Err(missing_parent());
        }
        let key = (c.user, c.id.clone());
        if self.cookies.contains_key(&key) {
            return Err(StoreError::Conflict("record"));
        }
        let seq = self.next_seq();
        self.cookies.insert(
            key,
            CookieRow {
                cookie: c.clone(),
                seq,
            },
        );
        // Beyond the limit, the oldest of the kind go (newest first: created_at
        // DESC, rowid DESC).
        let mut same_kind: Vec<(i64, u64, String)> = self
            .cookies
            .iter()
            .filter(|((u, _), row)| *u == c.user && row.cookie.kind == c.kind)
            .map(|((_, id), row)| (row.cookie.created_at, row.seq, id.clone()))
            .collect();
        same_kind.sort_by_key(|&(created_at, seq, _)| Reverse((created_at, seq)));
        for (_, _, id) in same_kind.into_iter().skip(max_per_kind) {
            self.cookies.remove(&(c.user, id));
        }
        Ok(())
    }

    /// A user's cookies, newest first (created_at DESC, rowid DESC).
    fn cookies_of(&self, user: UserId) -> Vec<Cookie> {
        let mut rows: Vec<&CookieRow> = self
            .cookies
            .iter()
            .filter(|((u, _), _)| *u == user)
            .map(|(_, row)| row)
            .collect();
        rows.sort_by_key(|r| Reverse((r.cookie.created_at, r.seq)));
        rows.into_iter().map(|r| r.cookie.clone()).collect()
    }

    fn remove_cookies_by_label(&mut self, user: UserId, labels: &[String]) -> u64 {
        let mut removed = 0u64;
        for label in labels {
            let before = self.cookies.len();
            self.cookies.retain(|(u, _), row| {
                !(*u == user && row.cookie.label.as_deref() == Some(label.as_str()))
            });
            removed += u64::try_from(before - self.cookies.len()).unwrap_or(u64::MAX);
        }
        removed
    }

    fn start_password_reset(
        &mut self, r: &OneTimeCode, now: i64, max_tries: u32,
    ) -> StoreResult<bool> {
        let user = r.reset_user()?;
        let key = (CodeKind::PasswordReset, r.key.clone());
        // An upsert whose update applies only to a reset that is no longer live.
        if self
            .codes
            .get(&key)
            .is_some_and(|old| old.expires_at > now && old.tries < max_tries)
        {
            return Ok(false);
        }
        if !self.user_exists(user) {
            return Err(missing_parent());
        }
        self.codes.insert(key, r.clone());
        Ok(true)
    }

    fn complete_password_reset(&mut self, key: &str, user: UserId, hash: &str) -> StoreResult<()> {
        let key = (CodeKind::PasswordReset, key.to_owned());
        if self.codes.get(&key).is_none_or(|r| r.user != Some(user)) {
            return Err(StoreError::NotFound);
        }
        self.codes.remove(&key);
        if let Some(row) = self.users.get_mut(&user) {
            row.user.password_hash = hash.to_owned();
        }
        self.remove_cookies_of(user);
        Ok(())
    }
}

#[async_trait]
impl AccountStore for MemoryStore {
    async fn token_signing_seed(&self, candidate: &[u8]) -> StoreResult<Vec<u8>> {
        self.with(|s| {
            Ok(s.token_seed
                .get_or_insert_with(|| candidate.to_vec())
                .clone())
        })
    }

    async fn put_activation_code(&self, code: &OneTimeCode) -> StoreResult<()> {
        self.with(|s| {
            s.codes
                .insert((CodeKind::Activation, code.key.clone()), code.clone());
            Ok(())
        })
    }

    async fn one_time_code(&self, kind: CodeKind, key: &str) -> StoreResult<Option<OneTimeCode>> {
        self.with(|s| Ok(s.codes.get(&(kind, key.to_owned())).cloned()))
    }

    async fn count_code_try(&self, kind: CodeKind, key: &str) -> StoreResult<u32> {
        self.with(|s| {
            let code = s
                .codes
                .get_mut(&(kind, key.to_owned()))
                .ok_or(StoreError::NotFound)?;
            one_more_try(&mut code.tries)
        })
    }

    async fn delete_code(&self, kind: CodeKind, key: &str) -> StoreResult<()> {
        self.with(|s| {
            s.codes.remove(&(kind, key.to_owned()));
            Ok(())
        })
    }

    async fn create_user(&self, user: &User) -> StoreResult<()> {
        self.with(|s| s.create_user(user))
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        self.with(|s| Ok(s.users.get(&id).map(|r| r.user.clone())))
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        self.with(|s| {
            Ok(s.users
                .values()
                .find(|r| r.user.email == email)
                .map(|r| r.user.clone()))
        })
    }

    async fn user_by_handle(&self, handle: &str) -> StoreResult<Option<User>> {
        self.with(|s| {
            Ok(s.users
                .values()
                .find(|r| r.user.handle.as_deref() == Some(handle))
                .map(|r| r.user.clone()))
        })
    }

    async fn update_profile(
        &self, id: UserId, update: &ProfileUpdate, notify: Notify<'_>,
    ) -> StoreResult<()> {
        self.with(|s| {
            let user = s.user_mut(id)?;
            if let Some(name) = &update.name {
                user.name = name.clone();
            }
            if let Some(accent_id) = update.accent_id {
                user.accent_id = accent_id;
            }
            if let Some(locale) = &update.locale {
                user.locale = locale.clone();
            }
            if let Some(picture) = &update.picture {
                user.picture = picture.clone();
            }
            s.enqueue_for_user(id, None, notify);
            Ok(())
        })
    }

    async fn set_handle(&self, id: UserId, handle: &str) -> StoreResult<()> {
        self.with(|s| {
            if !s.user_exists(id) {
                return Err(StoreError::NotFound);
            }
            if s.users
                .values()
                .any(|r| r.user.id != id && r.user.handle.as_deref() == Some(handle))
            {
                return Err(StoreError::Conflict("handle"));
            }
            s.user_mut(id)?.handle = Some(handle.to_owned());
            Ok(())
        })
    }

    async fn set_password(&self, id: UserId, password_hash: &str) -> StoreResult<()> {
        self.with(|s| {
            s.user_mut(id)?.password_hash = password_hash.to_owned();
            Ok(())
        })
    }

    async fn change_password(&self, id: UserId, password_hash: &str) -> StoreResult<()> {
        self.with(|s| {
            s.user_mut(id)?.password_hash = password_hash.to_owned();
            s.remove_cookies_of(id);
            Ok(())
        })
    }

    async fn delete_user(&self, id: UserId) -> StoreResult<()> {
        self.with(|s| {
            s.delete_user(id);
            Ok(())
        })
    }

    async fn add_cookie(&self, cookie: &Cookie, max_per_kind: usize) -> StoreResult<()> {
        self.with(|s| s.add_cookie(cookie, max_per_kind))
    }

    async fn cookie(&self, user: UserId, id: &str) -> StoreResult<Option<Cookie>> {
        self.with(|s| {
            Ok(s.cookies
                .get(&(user, id.to_owned()))
                .map(|r| r.cookie.clone()))
        })
    }

    async fn cookies(&self, user: UserId) -> StoreResult<Vec<Cookie>> {
        self.with(|s| Ok(s.cookies_of(user)))
    }

    async fn remove_cookie(&self, user: UserId, id: &str) -> StoreResult<()> {
        self.with(|s| {
            s.cookies.remove(&(user, id.to_owned()));
            Ok(())
        })
    }

    async fn remove_cookies_by_label(&self, user: UserId, labels: &[String]) -> StoreResult<u64> {
        self.with(|s| Ok(s.remove_cookies_by_label(user, labels)))
    }

    async fn start_password_reset(
        &self, reset: &OneTimeCode, now: i64, max_tries: u32,
    ) -> StoreResult<bool> {
        self.with(|s| s.start_password_reset(reset, now, max_tries))
    }

    async fn complete_password_reset(
        &self, key: &str, user: UserId, password_hash: &str,
    ) -> StoreResult<()> {
        self.with(|s| s.complete_password_reset(key, user, password_hash))
    }

    async fn set_recovery_bundle(&self, user: UserId, bundle: Option<&[u8]>) -> StoreResult<()> {
        self.with(|s| {
            let row = s.users.get_mut(&user).ok_or(StoreError::NotFound)?;
            row.recovery_bundle = bundle.map(<[u8]>::to_vec);
            Ok(())
        })
    }

    async fn recovery_bundle(&self, user: UserId) -> StoreResult<Option<Vec<u8>>> {
        self.with(|s| Ok(s.users.get(&user).and_then(|r| r.recovery_bundle.clone())))
    }
}
