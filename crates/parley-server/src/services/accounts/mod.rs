//! Accounts: registration by e-mail code, login, tokens and cookies, profiles,
//! handles, password change and reset, account deletion.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use parley_api::{
    AccessToken, ClientId, CookieInfo, CookieKind, Login, OffsetDateTime, RecoveryBundle, Register,
    SelfProfile, UpdateProfile, UserId, UserProfile, limits,
};
use parley_store::{AccountStore, CodeKind, Cookie, OneTimeCode, ProfileUpdate, StoreError, User};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::notifications::payload;
use super::{Core, random};
use crate::error::{ApiError, ApiResult};
use crate::passwords;
use crate::tokens::{Claims, Kind};

/// Codes by e-mail are valid for 14 days.
pub(crate) const ACTIVATION_CODE_SECONDS: i64 = 14 * 24 * 3600;
/// Wrong tries that invalidate a code.
pub(crate) const MAX_CODE_TRIES: u32 = 3;
/// A password reset is valid for one hour.
pub(crate) const PASSWORD_RESET_SECONDS: i64 = 3600;
/// Persistent cookies last a year, session cookies a week.
pub(crate) const PERSISTENT_COOKIE_SECONDS: i64 = 365 * 24 * 3600;
/// See [`PERSISTENT_COOKIE_SECONDS`].
pub(crate) const SESSION_COOKIE_SECONDS: i64 = 7 * 24 * 3600;

/// A login's result: the access token and the user token for the cookie.
#[derive(Debug)]
pub struct LoggedIn {
    /// The answer body.
    pub access: AccessToken,
    /// The user token (cookie value).
    pub user_token: String,
    /// Cookie lifetime in seconds.
    pub cookie_seconds: i64,
}

/// Accounts.
#[derive(Clone, Debug)]
pub struct Accounts {
    core: Core,
    store: Arc<dyn AccountStore>,
    hashing: Arc<HashGate>,
}

/// Password hashing is the server's most expensive work (and what a flood of
/// logins costs): at most one hash per permit runs, a bounded number wait, and
/// the rest are told to come back (503 with `Retry-After`), so memory stays
/// bounded whatever arrives.
#[derive(Debug)]
struct HashGate {
    permits: tokio::sync::Semaphore,
    waiting: std::sync::atomic::AtomicUsize,
    max_waiting: usize,
    /// A hash no password matches, with the configured algorithm, checked for
    /// unknown accounts so they take as long as known ones.
    dummy: tokio::sync::OnceCell<String>,
}

/// How a login names the account.
enum Account {
    Email(String),
    Handle(String),
}

/// The one answer for a user id that names nobody.
pub(super) fn user_not_found() -> ApiError {
    ApiError::not_found("not-found", "no such user")
}

fn invalid_credentials() -> ApiError {
    ApiError::forbidden("invalid-credentials", "wrong e-mail, handle or password")
}

fn invalid_code() -> ApiError {
    ApiError::forbidden(
        "invalid-code",
        "the code is wrong, expired or used up; request a new one",
    )
}

/// Lower-case, trimmed, and plausibly an address.
pub(crate) fn normalise_email(email: &str) -> ApiResult<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        })
        && email.parse::<lettre::Address>().is_ok();
    if !valid {
        return Err(ApiError::bad_request(
            "invalid-email",
            "not a valid e-mail address",
        ));
    }
    Ok(email)
}

fn check_name(name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 128 {
        return Err(ApiError::bad_request(
            "invalid-name",
            "a name has 1 to 128 characters",
        ));
    }
    Ok(name.to_owned())
}

/// 2–256 characters of `a-z0-9_.-`.
pub(crate) fn check_handle(handle: &str) -> ApiResult<()> {
    let ok = (2..=256).contains(&handle.len())
        && handle
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if !ok {
        return Err(ApiError::bad_request(
            "invalid-handle",
            "a handle has 2 to 256 characters of a-z, 0-9, '_', '.' and '-'",
        ));
    }
    Ok(())
}

/// What a presented one-time code (e-mail code, password-reset code) is worth.
#[derive(Debug, PartialEq, Eq)]
enum CodeCheck {
    /// Right, in time, tries left.
    Valid,
    /// Expired or out of tries: delete it.
    Dead,
    /// Wrong (the try was counted before the comparison).
    Wrong,
}

/// The one rule for stored codes: hashed, compared in constant time, dead once
/// expired or beyond [`MAX_CODE_TRIES`] tries. `tries` counts this one: every
/// try is counted before it is compared, so guesses sent at once cannot share
/// a try.
fn check_code(given: &str, hash: &[u8], expires_at: i64, tries: u32, now: i64) -> CodeCheck {
    if expires_at <= now || tries > MAX_CODE_TRIES {
        CodeCheck::Dead
    } else if bool::from(sha256(given.trim().as_bytes()).ct_eq(hash)) {
        CodeCheck::Valid
    } else {
        CodeCheck::Wrong
    }
}

fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

fn to_time(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl Accounts {
    /// The service.
    pub fn new(core: Core, store: Arc<dyn AccountStore>) -> Self {
        let concurrency = core.settings.password_hash_concurrency.max(1);
        let hashing = Arc::new(HashGate {
            permits: tokio::sync::Semaphore::new(concurrency),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            max_waiting: concurrency * 4,
            dummy: tokio::sync::OnceCell::new(),
        });
        Self {
            core,
            store,
            hashing,
        }
    }

    /// A turn to hash: waits behind at most [`HashGate::max_waiting`] others,
    /// or answers 503.
    async fn hash_turn(&self) -> ApiResult<tokio::sync::SemaphorePermit<'_>> {
        use std::sync::atomic::Ordering;
        let gate = &*self.hashing;
        if gate.waiting.fetch_add(1, Ordering::SeqCst) >= gate.max_waiting {
            gate.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::busy(1));
        }
        let permit = gate.permits.acquire().await;
        gate.waiting.fetch_sub(1, Ordering::SeqCst);
        permit.map_err(ApiError::internal)
    }

    /// The dummy hash (made once, off the runtime, with the configured
    /// algorithm).
    async fn dummy_hash(&self) -> ApiResult<&str> {
        self.hashing
            .dummy
            .get_or_try_init(|| async {
                let never = hex::encode(random::<16>());
                self.hash_password(&never).await
            })
            .await
            .map(String::as_str)
    }

    async fn hash_password(&self, password: &str) -> ApiResult<String> {
        let _turn = self.hash_turn().await?;
        let password = zeroize::Zeroizing::new(password.to_owned());
        let algorithm = self.core.settings.password_hashing;
        tokio::task::spawn_blocking(move || passwords::hash(&password, algorithm))
            .await
            .map_err(ApiError::internal)?
    }

    /// Whether `password` matches a stored hash, and whether the hash is outdated
    /// (slow by design: runs off the async runtime).
    async fn verify_hash(&self, stored: &str, password: &str) -> ApiResult<(bool, bool)> {
        let _turn = self.hash_turn().await?;
        let (p, stored) = (
            zeroize::Zeroizing::new(password.to_owned()),
            stored.to_owned(),
        );
        let algorithm = self.core.settings.password_hashing;
        tokio::task::spawn_blocking(move || passwords::verify(&p, &stored, algorithm))
            .await
            .map_err(ApiError::internal)?
    }

    /// Checks a user's password; on success with an outdated hash, re-hashes it.
    pub async fn check_password(&self, user: &User, password: &str) -> ApiResult<()> {
        let (ok, outdated) = self.verify_hash(&user.password_hash, password).await?;
        if !ok {
            return Err(invalid_credentials());
        }
        if outdated {
            let hash = self.hash_password(password).await?;
            self.store.set_password(user.id, &hash).await?;
        }
        Ok(())
    }

    async fn user(&self, id: UserId) -> ApiResult<User> {
        self.store
            .user(id)
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid-token", "the account no longer exists"))
    }

    /// Sends a fresh 6-digit code to an address not yet registered. For an
    /// address that has an account the answer is the same (so addresses cannot
    /// be probed) and its owner gets a mail saying so instead of a code.
    pub async fn send_activation_code(&self, email: &str, address: &str) -> ApiResult<()> {
        let email = normalise_email(email)?;
        self.core.limit(&format!("activate:{email}"), address)?;
        if self.store.user_by_email(&email).await?.is_some() {
            let body = "Someone asked to create a Parley account with this address, which \
                        already has one. If it was you, log in, or reset your password if \
                        you forgot it. If it was not you, nothing changed and you need do \
                        nothing.\n"
                .to_owned();
            return self
                .core
                .mailer
                .send(&email, "Your Parley account", body)
                .await;
        }
        let n = u32::from_le_bytes(random::<4>()) % 1_000_000;
        let code = format!("{n:06}");
        self.store
            .put_activation_code(&OneTimeCode {
                key: email.clone(),
                user: None,
                code_hash: sha256(code.as_bytes()),
                expires_at: self.core.clock.now() + ACTIVATION_CODE_SECONDS,
                tries: 0,
            })
            .await?;
        let body = format!(
            "Your Parley verification code is {code}.\n\nIt is valid for 14 days. If you did \
             not ask for it, ignore this message.\n"
        );
        self.core
            .mailer
            .send(&email, "Your Parley verification code", body)
            .await
    }

    /// Creates an account from a verified address and logs it in.
    pub async fn register(&self, req: &Register, address: &str) -> ApiResult<LoggedIn> {
        let email = normalise_email(&req.email)?;
        let name = check_name(&req.name)?;
        self.core.limit(&format!("code:{email}"), address)?;
        self.redeem_code(CodeKind::Activation, &email, &req.email_code)
            .await?;
        passwords::check_policy(&req.password)?;
        if let Some(handle) = &req.handle {
            check_handle(handle)?;
        }
        let user = User {
            id: UserId::random(),
            name,
            email,
            handle: req.handle.clone(),
            password_hash: self.hash_password(&req.password).await?,
            accent_id: 0,
            locale: "en".into(),
            picture: None,
            created_at: self.core.clock.now(),
        };
        self.store.create_user(&user).await?;
        tracing::info!(user = %user.id, "account created");
        self.new_cookie(user.id, None, true).await
    }

    /// Logs in by e-mail or handle. The attempt is counted before anything is looked
    /// up, and an unknown account costs the same password check as a known one, so
    /// neither the answer nor its timing tells whether an account exists.
    pub async fn login(&self, req: &Login, address: &str) -> ApiResult<LoggedIn> {
        super::check_label("label", req.label.as_deref())?;
        let account = match (&req.email, &req.handle) {
            (Some(email), None) => Account::Email(normalise_email(email)?),
            (None, Some(handle)) => Account::Handle(handle.trim().to_lowercase()),
            _ => {
                return Err(ApiError::bad_request(
                    "bad-request",
                    "give either an e-mail address or a handle",
                ));
            }
        };
        let key = match &account {
            Account::Email(e) | Account::Handle(e) => format!("login:{e}"),
        };
        self.core.limit(&key, address)?;
        let user = match &account {
            Account::Email(e) => self.store.user_by_email(e).await?,
            Account::Handle(h) => self.store.user_by_handle(h).await?,
        };
        let Some(user) = user else {
            let dummy = self.dummy_hash().await?.to_owned();
            self.verify_hash(&dummy, &req.password).await?;
            return Err(invalid_credentials());
        };
        // One limit per account whichever name it was reached by: guesses by
        // handle and by e-mail add up. (The name's own count above came first,
        // before anything was looked up.)
        let other = match &account {
            Account::Email(_) => user.handle.as_deref().map(|h| format!("login:{h}")),
            Account::Handle(_) => Some(format!("login:{}", user.email)),
        };
        if let Some(other) = other {
            self.core.count_account_attempt(&other)?;
        }
        self.check_password(&user, &req.password).await?;
        self.new_cookie(user.id, req.label.clone(), req.persist)
            .await
    }

    async fn new_cookie(
        &self, user: UserId, label: Option<String>, persist: bool,
    ) -> ApiResult<LoggedIn> {
        let now = self.core.clock.now();
        let (kind, seconds) = if persist {
            (CookieKind::Persistent, PERSISTENT_COOKIE_SECONDS)
        } else {
            (CookieKind::Session, SESSION_COOKIE_SECONDS)
        };
        let cookie = Cookie {
            id: hex::encode(random::<16>()),
            user,
            label,
            kind,
            created_at: now,
            expires_at: now + seconds,
        };
        self.store
            .add_cookie(&cookie, limits::MAX_COOKIES_PER_KIND)
            .await?;
        let user_token = self.core.tokens.issue(&Claims {
            kind: Kind::User,
            user,
            expires: cookie.expires_at,
            connection: u64::from_le_bytes(random::<8>()),
            client: None,
            cookie: Some(cookie.id.clone()),
        });
        Ok(LoggedIn {
            access: self.access_token(user, None, cookie.id),
            user_token,
            cookie_seconds: seconds,
        })
    }

    /// An access token of the login `cookie` (named in it, so that a socket
    /// opened with it closes when that login ends).
    fn access_token(&self, user: UserId, client: Option<ClientId>, cookie: String) -> AccessToken {
        let seconds = limits::ACCESS_TOKEN_SECONDS;
        let token = self.core.tokens.issue(&Claims {
            kind: Kind::Access,
            user,
            expires: self.core.clock.now() + i64::try_from(seconds).unwrap_or(900),
            connection: u64::from_le_bytes(random::<8>()),
            client,
            cookie: Some(cookie),
        });
        AccessToken {
            access_token: token,
            token_type: "Bearer".into(),
            expires_in: seconds,
            user,
        }
    }

    async fn valid_cookie(&self, user_token: &str) -> ApiResult<Claims> {
        let claims = self
            .core
            .tokens
            .verify(user_token, Kind::User, self.core.clock.now())
            .map_err(|e| {
                ApiError::forbidden("invalid-credentials", format!("{e}: log in again"))
            })?;
        let id = claims.cookie.as_deref().unwrap_or_default();
        if self.store.cookie(claims.user, id).await?.is_none() {
            return Err(ApiError::forbidden(
                "invalid-credentials",
                "logged out: log in again",
            ));
        }
        Ok(claims)
    }

    /// The login behind a user token, if it is valid and not revoked (403
    /// otherwise): the first half of a refresh.
    pub async fn check_login(&self, user_token: &str) -> ApiResult<Claims> {
        self.valid_cookie(user_token).await
    }

    /// A new access token for a login [`Accounts::check_login`] accepted,
    /// bound to `client` if given (the caller checks the device is the
    /// user's: devices are not this service's).
    pub fn access_for(&self, login: &Claims, client: Option<ClientId>) -> AccessToken {
        self.access_token(login.user, client, login.cookie.clone().unwrap_or_default())
    }

    /// Whether a user exists.
    pub async fn exists(&self, id: UserId) -> ApiResult<bool> {
        Ok(self.store.user(id).await?.is_some())
    }

    /// Revokes the cookie behind a user token.
    pub async fn logout(&self, user_token: &str) -> ApiResult<()> {
        let claims = self.valid_cookie(user_token).await?;
        let id = claims.cookie.unwrap_or_default();
        self.store.remove_cookie(claims.user, &id).await?;
        self.core.wakeups.logins_changed(claims.user);
        Ok(())
    }

    /// Whether the login an access token came from still stands (its cookie
    /// was not removed by a logout, a password change or reset, or the
    /// account's deletion). Asked by open sockets when the user's logins change.
    pub async fn login_stands(&self, access: &Claims) -> ApiResult<bool> {
        let id = access.cookie.as_deref().unwrap_or_default();
        Ok(self.store.cookie(access.user, id).await?.is_some())
    }

    /// Checks an access token (signature and expiry; no database).
    pub fn authenticate(&self, bearer: &str) -> ApiResult<Claims> {
        self.core
            .tokens
            .verify(bearer, Kind::Access, self.core.clock.now())
            .map_err(|e| {
                ApiError::unauthorized("invalid-token", format!("{e}: refresh it at /v1/access"))
            })
    }

    /// The user's own profile.
    pub async fn self_profile(&self, id: UserId) -> ApiResult<SelfProfile> {
        let u = self.user(id).await?;
        Ok(SelfProfile {
            qualified_id: self.core.qualified(u.id),
            name: u.name,
            email: u.email,
            handle: u.handle,
            accent_id: u.accent_id,
            locale: u.locale,
            picture: u.picture,
        })
    }

    /// Changes profile fields.
    pub async fn update_profile(&self, id: UserId, req: &UpdateProfile) -> ApiResult<()> {
        let name = req.name.as_deref().map(check_name).transpose()?;
        if req
            .locale
            .as_ref()
            .is_some_and(|l| l.is_empty() || l.len() > 32)
        {
            return Err(ApiError::bad_request(
                "bad-request",
                "a locale has 1 to 32 characters",
            ));
        }
        if req.picture.as_ref().is_some_and(|p| p.len() > 512) {
            return Err(ApiError::bad_request(
                "bad-request",
                "a picture reference is too long",
            ));
        }
        let update = ProfileUpdate {
            name,
            accent_id: req.accent_id,
            locale: req.locale.clone(),
            picture: req.picture.clone().map(Some),
        };
        let event = payload(&parley_api::EventPayload::UserUpdate {
            user: id,
            update: req.clone(),
        });
        self.store
            .update_profile(id, &update, self.core.notify(&event))
            .await?;
        self.core.announce_users(&[id]);
        Ok(())
    }

    /// Stores the user's recovery bundle (opaque: encrypted by the client).
    pub async fn set_recovery_bundle(&self, id: UserId, bundle: &RecoveryBundle) -> ApiResult<()> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&bundle.bundle)
            .map_err(|_| {
                ApiError::bad_request("invalid-recovery-bundle", "bundle must be base64")
            })?;
        if bytes.is_empty() || bytes.len() > limits::MAX_RECOVERY_BUNDLE {
            return Err(ApiError::bad_request(
                "invalid-recovery-bundle",
                format!(
                    "a recovery bundle holds 1 to {} bytes",
                    limits::MAX_RECOVERY_BUNDLE
                ),
            ));
        }
        self.store
            .set_recovery_bundle(id, Some(&bytes))
            .await
            .map_err(|e| match e {
                StoreError::NotFound => user_not_found(),
                e => e.into(),
            })
    }

    /// The user's recovery bundle.
    pub async fn recovery_bundle(&self, id: UserId) -> ApiResult<RecoveryBundle> {
        let bytes = self.store.recovery_bundle(id).await?.ok_or_else(|| {
            ApiError::not_found(
                "no-recovery-bundle",
                "this account has no recovery bundle yet: create one on a device that has the root key",
            )
        })?;
        Ok(RecoveryBundle {
            bundle: base64::engine::general_purpose::STANDARD.encode(bytes),
        })
    }

    /// Sets the user's unique handle.
    pub async fn set_handle(&self, id: UserId, handle: &str) -> ApiResult<()> {
        check_handle(handle)?;
        self.store.set_handle(id, handle).await?;
        Ok(())
    }

    fn public(&self, u: User) -> UserProfile {
        UserProfile {
            qualified_id: self.core.qualified(u.id),
            name: u.name,
            handle: u.handle,
            accent_id: u.accent_id,
            picture: u.picture,
        }
    }

    /// Another user's public profile.
    pub async fn user_profile(&self, domain: &str, id: UserId) -> ApiResult<UserProfile> {
        self.core.local(domain)?;
        let u = self.store.user(id).await?;
        u.map(|u| self.public(u)).ok_or_else(user_not_found)
    }

    /// A user by handle.
    pub async fn by_handle(&self, handle: &str) -> ApiResult<UserProfile> {
        let u = self.store.user_by_handle(&handle.to_lowercase()).await?;
        u.map(|u| self.public(u))
            .ok_or_else(|| ApiError::not_found("not-found", "no such handle"))
    }

    /// Re-authenticates with the password (for device and account changes); returns
    /// the user, so callers need not load them again.
    pub async fn confirm_password(&self, id: UserId, password: Option<&str>) -> ApiResult<User> {
        let password = password.ok_or_else(|| {
            ApiError::forbidden("missing-auth", "this change needs your password")
        })?;
        let user = self.user(id).await?;
        self.check_password(&user, password).await?;
        Ok(user)
    }

    /// Changes the password and ends every login, then logs the caller in
    /// afresh (a new cookie): whoever else knew the old password is out.
    pub async fn change_password(&self, id: UserId, old: &str, new: &str) -> ApiResult<LoggedIn> {
        self.confirm_password(id, Some(old)).await?;
        passwords::check_policy(new)?;
        let hash = self.hash_password(new).await?;
        self.store.change_password(id, &hash).await?;
        self.core.wakeups.logins_changed(id);
        tracing::info!(user = %id, "password changed: every login ended");
        self.new_cookie(id, None, true).await
    }

    /// Deletes the account with its devices, prekeys and cookies.
    pub async fn delete(&self, id: UserId, password: Option<&str>) -> ApiResult<()> {
        self.confirm_password(id, password).await?;
        self.store.delete_user(id).await?;
        self.core.wakeups.logins_changed(id);
        tracing::info!(user = %id, "account deleted");
        Ok(())
    }

    /// The user's logins.
    pub async fn cookies(&self, id: UserId) -> ApiResult<Vec<CookieInfo>> {
        let cookies = self.store.cookies(id).await?;
        Ok(cookies
            .into_iter()
            .map(|c| CookieInfo {
                id: c.id,
                label: c.label,
                kind: c.kind,
                created: to_time(c.created_at),
                expires: to_time(c.expires_at),
            })
            .collect())
    }

    /// Removes logins by label.
    pub async fn remove_cookies(
        &self, id: UserId, labels: &[String], password: &str,
    ) -> ApiResult<()> {
        self.confirm_password(id, Some(password)).await?;
        self.store.remove_cookies_by_label(id, labels).await?;
        self.core.wakeups.logins_changed(id);
        Ok(())
    }

    /// Starts a password reset: mails a key and code when the address has an
    /// account. Answers the same either way, so addresses cannot be probed.
    pub async fn request_password_reset(&self, email: &str, address: &str) -> ApiResult<()> {
        let email = normalise_email(email)?;
        self.core.limit(&format!("reset:{email}"), address)?;
        let Some(user) = self.store.user_by_email(&email).await? else {
            return Ok(());
        };
        let key = B64.encode(Sha256::digest(user.id.as_bytes()));
        let code = B64.encode(random::<24>());
        let now = self.core.clock.now();
        let started = self
            .store
            .start_password_reset(
                &OneTimeCode {
                    key: key.clone(),
                    user: Some(user.id),
                    code_hash: sha256(code.as_bytes()),
                    expires_at: now + PASSWORD_RESET_SECONDS,
                    tries: 0,
                },
                now,
                MAX_CODE_TRIES,
            )
            .await?;
        if !started {
            // One is pending: its code stands, with the tries it has left.
            // The answer is the same, so nobody learns a reset is under way.
            return Ok(());
        }
        let body = format!(
            "To choose a new Parley password, use\n\nkey: {key}\ncode: {code}\n\nwithin one \
             hour. If you did not ask for this, ignore this message: your password is unchanged.\n"
        );
        let sent = self
            .core
            .mailer
            .send(&email, "Reset your Parley password", body)
            .await;
        if sent.is_err() {
            // Nobody got the code: a later request must be able to start again.
            self.store
                .delete_code(CodeKind::PasswordReset, &key)
                .await?;
        }
        sent
    }

    /// Completes a reset: new password, every login dropped.
    pub async fn complete_password_reset(
        &self, key: &str, code: &str, password: &str, address: &str,
    ) -> ApiResult<()> {
        self.core.limit(&format!("reset-code:{key}"), address)?;
        let reset = self.redeem_code(CodeKind::PasswordReset, key, code).await?;
        let user = reset.reset_user()?;
        passwords::check_policy(password)?;
        let hash = self.hash_password(password).await?;
        self.store.complete_password_reset(key, user, &hash).await?;
        self.core.wakeups.logins_changed(user);
        Ok(())
    }

    /// Checks a one-time code given for `key`: the try is counted before the
    /// comparison (so guesses at once cannot share one), and a code that is
    /// dead, or wrong on its last try, is forgotten. Every failure is the same
    /// `invalid-code`. The caller consumes a valid code with its change.
    async fn redeem_code(&self, kind: CodeKind, key: &str, given: &str) -> ApiResult<OneTimeCode> {
        let code = self
            .store
            .one_time_code(kind, key)
            .await?
            .ok_or_else(invalid_code)?;
        let now = self.core.clock.now();
        let tries = match self.store.count_code_try(kind, key).await {
            Ok(tries) => tries,
            Err(StoreError::NotFound) => return Err(invalid_code()),
            Err(e) => return Err(e.into()),
        };
        let forget = match check_code(given, &code.code_hash, code.expires_at, tries, now) {
            CodeCheck::Valid => return Ok(code),
            CodeCheck::Dead => true,
            CodeCheck::Wrong => tries >= MAX_CODE_TRIES,
        };
        if forget {
            self.store.delete_code(kind, key).await?;
        }
        Err(invalid_code())
    }
}

#[cfg(test)]
mod tests;
