//! How a device joins an account: registering a new account, logging a new
//! device in, enrolling it (the user's root key opened from the recovery
//! bundle, or made and sealed into one for a user without devices), and
//! logging the same device in again after a logout.
//!
//! This module never sends or receives a message, and never makes a new root
//! key for an account that already has devices.

use std::collections::HashMap;
use std::path::Path;

use parley_api::{Login, Register};

use super::{ACCOUNT_ROW, Account, State, system_clock};
use crate::ClientError;
use crate::api::Api;
use crate::device::Device;
use crate::store::{Store, Table};
use crate::trust::{self, RootKey};

/// How the root key is kept for the user's next devices.
enum Recovery<'a> {
    /// In a bundle the server keeps, opened with this passphrase.
    Passphrase(&'a str),
    /// Hardened: in a bundle whose key only the user keeps. The code is handed
    /// to this callback the moment the bundle is on the server, before
    /// anything else can fail.
    Hardened(&'a mut (dyn FnMut(&trust::RecoveryCode) + Send)),
}

/// Runs a first enrolment into `dir`. When it fails and the database was
/// made by this attempt, the database goes again: nothing is left that a
/// second attempt (perhaps with another local passphrase) would stumble on.
/// It goes only if it still holds no account when read with this attempt's
/// passphrase: another process enrolling into the same directory meanwhile
/// (with another passphrase, or already finished) keeps its database.
async fn first_enrolment<T>(
    dir: &Path, passphrase: &str,
    attempt: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    let made_here = !dir.join(crate::store::DB_FILE).exists();
    let result = attempt.await;
    if result.is_err() && made_here && !Account::holds_device(dir, passphrase).await.unwrap_or(true)
    {
        for suffix in ["", "-wal", "-shm"] {
            let file = dir.join(format!("{}{suffix}", crate::store::DB_FILE));
            // Best effort: what cannot go is what was there before (the error
            // the person sees is the attempt's own).
            let _ = std::fs::remove_file(&file);
        }
    }
    result
}

/// What to do when enrolling a device finds no recovery bundle.
fn no_bundle_with_devices() -> ClientError {
    ClientError::Api {
        status: 404,
        label: "no-recovery-bundle".into(),
        message: "this account already has devices but the server has no recovery bundle for \
                  it, so this device cannot get the account's root key. Log in on one of your \
                  existing devices and remove the others there, or ask your administrator; a \
                  new root key is never made for an account that has devices."
            .into(),
    }
}

impl Account {
    /// Creates the account on the server (the e-mail `code` came from
    /// [`Api::send_activation_code`]), enrols the user (a new root key, saved to
    /// the server in a recovery bundle sealed with `recovery`) and registers this
    /// device in `dir`, whose database `passphrase` protects.
    pub async fn register(
        dir: &Path, passphrase: &str, recovery: &str, server: &str, register: &Register,
    ) -> Result<Self, ClientError> {
        trust::check_passphrase_strength(recovery)?;
        Self::register_with(
            dir,
            passphrase,
            server,
            register,
            Recovery::Passphrase(recovery),
        )
        .await
    }

    /// [`Account::register`] in Wickr's hardened mode: the key that opens the
    /// recovery bundle never goes to the server. `show_code` gets the recovery
    /// code as soon as the bundle is stored, before anything else can fail: it
    /// is the only way to add another device, so the person must see it and
    /// write it down. [`Account::login`] takes it where a recovery passphrase
    /// would go.
    pub async fn register_hardened(
        dir: &Path, passphrase: &str, server: &str, register: &Register,
        show_code: &mut (dyn FnMut(&trust::RecoveryCode) + Send),
    ) -> Result<Self, ClientError> {
        Self::register_with(
            dir,
            passphrase,
            server,
            register,
            Recovery::Hardened(show_code),
        )
        .await
    }

    /// Creates the account on the server and enrols this device.
    async fn register_with(
        dir: &Path, passphrase: &str, server: &str, register: &Register, recovery: Recovery<'_>,
    ) -> Result<Self, ClientError> {
        first_enrolment(dir, passphrase, async {
            let store = Self::fresh_store(dir, passphrase).await?;
            let api = Api::new(server)?;
            api.register(register).await?;
            Self::enrol(api, store, recovery, &register.password).await
        })
        .await
    }

    /// Logs in and registers this device in `dir`. The root key comes from the
    /// recovery bundle, opened with `recovery` (the recovery passphrase, or the
    /// recovery code of a hardened account); a user without a bundle and
    /// without devices is enrolled now.
    pub async fn login(
        dir: &Path, passphrase: &str, recovery: &str, server: &str, email: &str, password: &str,
    ) -> Result<Self, ClientError> {
        first_enrolment(dir, passphrase, async {
            let store = Self::fresh_store(dir, passphrase).await?;
            let api = Api::new(server)?;
            api.login(&password_login(email, password)).await?;
            Self::enrol(api, store, Recovery::Passphrase(recovery), password)
                .await
                .map_err(|e| match e {
                    // The local store opened: what did not open is the bundle.
                    ClientError::WrongPassphrase => ClientError::Refused {
                        label: "wrong-recovery-passphrase",
                        message: "the recovery passphrase (or recovery code) does not open your \
                                  recovery bundle; nothing was registered: log in again with the \
                                  right one and the same local passphrase"
                            .into(),
                    },
                    other => other,
                })
        })
        .await
    }

    async fn fresh_store(dir: &Path, passphrase: &str) -> Result<Store, ClientError> {
        let store = Store::open(dir, passphrase).await?;
        let mut tx = store.read().await?;
        if tx.get(Table::Meta, ACCOUNT_ROW).await?.is_some() {
            return Err(ClientError::Storage(format!(
                "{} already holds a device: use it, or choose another directory",
                dir.display()
            )));
        }
        Ok(store)
    }

    async fn enrol(
        api: Api, store: Store, recovery: Recovery<'_>, password: &str,
    ) -> Result<Self, ClientError> {
        let root = match api.recovery_bundle().await? {
            Some(bundle) => {
                let Recovery::Passphrase(secret) = recovery else {
                    return Err(ClientError::Storage(
                        "this account already has a recovery bundle: log in instead".into(),
                    ));
                };
                RootKey::open_recovery_bundle(&bundle, secret).await?
            }
            None => {
                // A 404 from a server that has our devices is a server that
                // lost or withholds the bundle: a new root would fork the user.
                if !api.clients().await?.is_empty() {
                    return Err(no_bundle_with_devices());
                }
                let root = RootKey::generate()?;
                match recovery {
                    Recovery::Passphrase(p) => {
                        trust::check_passphrase_strength(p)?;
                        api.put_recovery_bundle(&root.seal_recovery_bundle(p).await?)
                            .await?;
                    }
                    Recovery::Hardened(show_code) => {
                        let (bundle, code) = root.seal_hardened_bundle()?;
                        api.put_recovery_bundle(&bundle).await?;
                        show_code(&code);
                    }
                }
                root
            }
        };
        let user = api.user().ok_or(ClientError::NotLoggedIn)?;
        let domain = api.self_profile().await?.qualified_id.domain;
        let mut account = Self {
            state: State {
                server: api.base().to_owned(),
                domain,
                login: api.login_state(),
                ..State::default()
            },
            api,
            device: Device::generate(user),
            store,
            root: Some(root),
            clock: system_clock(),
            written: HashMap::new(),
            seen_version: None,
            stale: false,
            notices: Vec::new(),
            shred_due: false,
            generation_checked: false,
            key_packages_checked: false,
            mls_suite: None,
            lost_floor: None,
        };
        // The keys are on disk before the server publishes any of them.
        let tx = account.store.begin().await?;
        account.commit(tx).await?;
        let request = account.device.registration(password, account.root.as_ref());
        let client = account.api.add_client(&request).await?;
        let tx = account.begin().await?;
        account.device.set_id(client.id);
        // What the account already has is fetched now, or by the next sync if
        // the server is away: the device is registered either way.
        account.state.needs_conversations = true;
        // This user's own devices count for every conversation's verification.
        let me = account.user();
        account.peer_mut(me).refresh = true;
        account.commit(tx).await?;
        let _ = account.follow_up().await;
        Ok(account)
    }

    /// Whether `dir` holds a device of an account (logged in or not). A
    /// database without an account (a first login or registration that
    /// failed before the device was saved) is not one: it takes a new login.
    pub async fn holds_device(dir: &Path, passphrase: &str) -> Result<bool, ClientError> {
        if !dir.join(crate::store::DB_FILE).exists() {
            return Ok(false);
        }
        let store = Store::open(dir, passphrase).await?;
        let mut tx = store.read().await?;
        let found = tx.get(Table::Meta, ACCOUNT_ROW).await?.is_some();
        drop(tx);
        store.close().await;
        Ok(found)
    }

    /// Logs the device saved in `dir` in again after a logout (or after its
    /// login was ended by a password change elsewhere): the same device, keys
    /// and history, with a new login. Refused (`other-account`) when the
    /// credentials are another account's.
    pub async fn log_in_again(
        dir: &Path, passphrase: &str, email: &str, password: &str,
    ) -> Result<Self, ClientError> {
        let mut account = Self::open_device(dir, passphrase).await?;
        let api = Api::new(&account.state.server)?;
        api.login(&password_login(email, password)).await?;
        if api.user() != Some(account.user()) {
            // Not this device's account: that login is not kept.
            let _ = api.logout().await;
            return Err(ClientError::Refused {
                label: "other-account",
                message: format!(
                    "{} holds a device of another account: log in with that account's \
                     e-mail, or use another directory",
                    dir.display()
                ),
            });
        }
        let tx = account.begin().await?;
        account.state.login = api.login_state();
        account.api = api;
        account.commit(tx).await?;
        Ok(account)
    }
}

/// The login a device makes with its user's e-mail and password: persistent,
/// labelled "parley".
fn password_login(email: &str, password: &str) -> Login {
    Login {
        email: Some(email.to_owned()),
        password: password.to_owned(),
        label: Some("parley".into()),
        persist: true,
        ..Login::default()
    }
}
