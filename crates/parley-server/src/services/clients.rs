//! Devices and their prekeys: registration within the limits, listing, removal,
//! uploads, counts and claims. A claimed prekey is gone; the last-resort one is
//! handed out when the pool is empty and never removed.
//!
//! Prekeys are claimed only by users related to their owner (see
//! [`Connections::related`]), and one claimer takes at most
//! `limits.prekey_claims` (5) one-time prekeys of a device in five minutes;
//! beyond that it gets the last-resort prekey. Nobody can empty a pool, and
//! nobody is refused a session.

use std::collections::{BTreeMap, HashSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use parley_api::{
    Client, ClientId, ClientPrekey, DeviceTrust, EventPayload, NewClient, OffsetDateTime, Prekey,
    PrekeyMap, PrekeyRequest, PublicClient, UserId, limits,
};
use parley_store::{ClientRecord, DeviceStore, PrekeyRecord};

use std::sync::Arc;

use super::accounts::Accounts;
use super::connections::Connections;
use super::notifications::payload;
use super::{Core, random};
use crate::error::{ApiError, ApiResult};
use crate::ratelimit::RateLimiter;

/// Devices and prekeys.
#[derive(Clone, Debug)]
pub struct Clients {
    core: Core,
    store: Arc<dyn DeviceStore>,
    accounts: Accounts,
    connections: Connections,
    claims: Arc<RateLimiter>,
}

fn not_related() -> ApiError {
    ApiError::forbidden(
        "not-related",
        "you may claim prekeys only of people you are connected or in a conversation with",
    )
}

fn client_not_found() -> ApiError {
    ApiError::not_found("client-not-found", "no such device")
}

/// A store error about one device: "not found" means the device.
fn device_error(e: parley_store::StoreError) -> ApiError {
    match e {
        parley_store::StoreError::NotFound => client_not_found(),
        e => e.into(),
    }
}

/// Checks prekeys: base64 keys of sane size, ids unique, one-time ids only.
fn check_prekeys(prekeys: &[Prekey]) -> ApiResult<Vec<PrekeyRecord>> {
    if prekeys.len() > limits::MAX_PREKEYS_PER_UPLOAD {
        return Err(ApiError::bad_request(
            "too-many-prekeys",
            format!("at most {} prekeys at once", limits::MAX_PREKEYS_PER_UPLOAD),
        ));
    }
    let mut seen = HashSet::new();
    prekeys
        .iter()
        .map(|p| {
            if p.id == limits::LAST_RESORT_PREKEY {
                return Err(ApiError::bad_request(
                    "bad-prekey",
                    "id 65535 is the last-resort prekey: send it as last_prekey",
                ));
            }
            if !seen.insert(p.id) {
                return Err(ApiError::bad_request(
                    "bad-prekey",
                    format!("prekey {} twice", p.id),
                ));
            }
            check_key(p)
        })
        .collect()
}

fn check_key(p: &Prekey) -> ApiResult<PrekeyRecord> {
    if p.key.is_empty() || p.key.len() > 2048 || B64.decode(&p.key).is_err() {
        return Err(ApiError::bad_request(
            "bad-prekey",
            format!("prekey {}: the key must be base64 of at most 1.5 KiB", p.id),
        ));
    }
    Ok(PrekeyRecord {
        id: p.id,
        key: p.key.clone(),
    })
}

/// Checks a device's trust-chain signature (the root key really signed this
/// identity key for this user) and returns it as stored. Clients check it again
/// themselves; the server refuses garbage so nobody stores it.
fn check_trust(user: UserId, trust: &DeviceTrust) -> ApiResult<String> {
    let invalid = |why: &str| ApiError::bad_request("invalid-device-signature", why.to_owned());
    let key = |field: &str, value: &str| -> ApiResult<[u8; 32]> {
        B64.decode(value)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| invalid(&format!("{field} must be base64 of 32 bytes")))
    };
    let identity = key("identity_key", &trust.identity_key)?;
    let root = ed25519_dalek::VerifyingKey::from_bytes(&key("root_key", &trust.root_key)?)
        .map_err(|_| invalid("root_key is not an Ed25519 public key"))?;
    let signature = B64
        .decode(&trust.signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| ed25519_dalek::Signature::from_bytes(&b))
        .ok_or_else(|| invalid("signature must be base64 of 64 bytes"))?;
    root.verify_strict(
        &parley_api::device_signature_message(user, &identity),
        &signature,
    )
    .map_err(|_| invalid("the root key did not sign this identity key for this user"))?;
    Ok(serde_json::to_string(trust).expect("a DeviceTrust serializes"))
}

/// Reads the stored trust column (written by [`check_trust`]).
fn stored_trust(c: &ClientRecord) -> Option<DeviceTrust> {
    let json = c.trust.as_deref()?;
    serde_json::from_str(json)
        .inspect_err(|_| tracing::warn!(client = %c.id, "unreadable stored device signature"))
        .ok()
}

fn to_api(c: ClientRecord) -> Client {
    let trust = stored_trust(&c);
    Client {
        trust,
        id: c.id,
        kind: c.kind,
        class: c.class,
        model: c.model,
        label: c.label,
        cookie_label: c.cookie_label,
        time: OffsetDateTime::from_unix_timestamp(c.created_at)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
    }
}

fn to_prekey(p: PrekeyRecord) -> Prekey {
    Prekey {
        id: p.id,
        key: p.key,
    }
}

impl Clients {
    /// The service.
    pub fn new(
        core: Core, store: Arc<dyn DeviceStore>, accounts: Accounts, connections: Connections,
    ) -> Self {
        let claims = Arc::new(RateLimiter::new(core.settings.limits.prekey_claims, 300));
        Self {
            core,
            store,
            accounts,
            connections,
            claims,
        }
    }

    /// Counts a claim of `user`'s device `id` by `me`: whether it may take a
    /// one-time prekey. Beyond the limit the claimer gets the last-resort
    /// prekey instead, so a session can still start but nobody can empty the
    /// pool (and a client that claims too eagerly keeps working).
    fn may_take_one_time(&self, me: UserId, user: UserId, id: ClientId) -> bool {
        // A user's own devices are not counted: nothing to protect there, and
        // no limiter entries for made-up device ids of one's own.
        if me == user {
            return true;
        }
        self.claims
            .check(&format!("{me}:{user}:{id}"), self.core.clock.now())
            .is_ok()
    }

    /// Registers a device (password re-authentication) and tells the user by e-mail.
    pub async fn add(&self, user: UserId, req: &NewClient) -> ApiResult<Client> {
        let mut prekeys = check_prekeys(&req.prekeys)?;
        if req.last_prekey.id != limits::LAST_RESORT_PREKEY {
            return Err(ApiError::bad_request(
                "bad-prekey",
                "last_prekey must have id 65535",
            ));
        }
        prekeys.push(check_key(&req.last_prekey)?);
        for (what, value) in [
            ("model", &req.model),
            ("label", &req.label),
            ("cookie_label", &req.cookie_label),
        ] {
            super::check_label(what, value.as_deref())?;
        }
        let trust = req
            .trust
            .as_ref()
            .map(|t| check_trust(user, t))
            .transpose()?;
        let owner = self
            .accounts
            .confirm_password(user, req.password.as_deref())
            .await?;
        let record = ClientRecord {
            trust,
            user,
            id: ClientId(u64::from_le_bytes(random::<8>())),
            kind: req.kind,
            class: req.class,
            model: req.model.clone(),
            label: req.label.clone(),
            cookie_label: req.cookie_label.clone(),
            created_at: self.core.clock.now(),
        };
        let event = payload(&EventPayload::ClientAdd {
            client: to_api(record.clone()),
        });
        let notify = self.core.notify(&event);
        let added = self
            .store
            .add_client(&record, &prekeys, limits::MAX_PERMANENT_CLIENTS, notify)
            .await?;
        self.core.announce_users(&[user]);
        tracing::info!(%user, client = %record.id, replaced = ?added.replaced, "device added");
        let body = format!(
            "A new device was added to your Parley account:\n\n  {} ({})\n\nIf this was \
             not you, remove the device and change your password now.\n",
            record.model.as_deref().unwrap_or("unnamed device"),
            record.id,
        );
        let subject = "New device on your account";
        if let Err(e) = self.core.mailer.send(&owner.email, subject, body).await {
            tracing::warn!(label = e.label(), "could not send the new-device e-mail");
        }
        Ok(to_api(record))
    }

    /// The user's devices.
    pub async fn list(&self, user: UserId) -> ApiResult<Vec<Client>> {
        Ok(self
            .store
            .clients(user)
            .await?
            .into_iter()
            .map(to_api)
            .collect())
    }

    /// One of the user's devices.
    pub async fn get(&self, user: UserId, id: ClientId) -> ApiResult<Client> {
        self.store
            .client(user, id)
            .await?
            .map(to_api)
            .ok_or_else(client_not_found)
    }

    /// Whether the user has this device.
    pub async fn exists(&self, user: UserId, id: ClientId) -> ApiResult<bool> {
        Ok(self.store.client(user, id).await?.is_some())
    }

    /// The ids of the user's devices.
    pub async fn ids(&self, user: UserId) -> ApiResult<Vec<ClientId>> {
        Ok(self
            .store
            .clients(user)
            .await?
            .iter()
            .map(|c| c.id)
            .collect())
    }

    /// Removes one of the user's devices (password re-authentication).
    pub async fn remove(
        &self, user: UserId, id: ClientId, password: Option<&str>,
    ) -> ApiResult<()> {
        self.store
            .client(user, id)
            .await?
            .ok_or_else(client_not_found)?;
        self.accounts.confirm_password(user, password).await?;
        let event = payload(&EventPayload::ClientRemove { client: id });
        self.store
            .delete_client(user, id, self.core.notify(&event))
            .await
            .inspect(|()| self.core.announce_users(&[user]))
            .map_err(device_error)
    }

    /// Sets or (with `None`) removes one of the user's devices' push endpoint.
    pub async fn set_push_endpoint(
        &self, user: UserId, id: ClientId, url: Option<&str>,
    ) -> ApiResult<()> {
        if let Some(url) = url {
            crate::push::check_endpoint(url, self.core.settings.push_allow_http)
                .map_err(|e| ApiError::bad_request("invalid-push-endpoint", e.0))?;
            crate::push::check_destination(url, self.core.settings.push_allow_private)
                .await
                .map_err(|e| ApiError::bad_request("invalid-push-endpoint", e.0))?;
        }
        self.store
            .set_push_endpoint(user, id, url)
            .await
            .map_err(device_error)
    }

    /// Anyone's devices (ids and classes only).
    pub async fn public_list(&self, domain: &str, user: UserId) -> ApiResult<Vec<PublicClient>> {
        self.core.local(domain)?;
        let clients = self.store.clients(user).await?;
        Ok(clients
            .into_iter()
            .map(|c| PublicClient {
                trust: stored_trust(&c),
                id: c.id,
                class: c.class,
            })
            .collect())
    }

    /// Adds prekeys to one of the user's devices.
    pub async fn upload_prekeys(
        &self, user: UserId, id: ClientId, prekeys: &[Prekey],
    ) -> ApiResult<()> {
        let records = check_prekeys(prekeys)?;
        self.store
            .add_prekeys(user, id, &records)
            .await
            .map_err(device_error)
    }

    /// Unused one-time prekeys of one of the user's devices.
    pub async fn count_prekeys(&self, user: UserId, id: ClientId) -> ApiResult<u64> {
        self.store
            .client(user, id)
            .await?
            .ok_or_else(client_not_found)?;
        Ok(self.store.count_prekeys(user, id).await?)
    }

    /// Raises one of the user's devices' send generation and returns it.
    pub async fn raise_generation(
        &self, user: UserId, id: ClientId, generation: u64,
    ) -> ApiResult<u64> {
        self.store
            .raise_generation(user, id, generation)
            .await?
            .ok_or_else(client_not_found)
    }

    /// Claims a prekey of a device of someone `me` is related to (403
    /// `not-related` otherwise, whether or not the device exists).
    pub async fn claim(
        &self, me: UserId, domain: &str, user: UserId, id: ClientId,
    ) -> ApiResult<ClientPrekey> {
        self.core.local(domain)?;
        if !self.connections.related(me, user).await? {
            return Err(not_related());
        }
        let one_time = self.may_take_one_time(me, user, id);
        let prekey = self
            .store
            .claim_prekey(user, id, one_time)
            .await?
            .ok_or_else(client_not_found)?;
        Ok(ClientPrekey {
            client: id,
            prekey: to_prekey(prekey),
        })
    }

    /// Claims prekeys for many users' devices at once: `null` for unknown
    /// devices and for every device of a user `me` is not related to (a
    /// sender's view of a group may be behind; one stranger must not fail the
    /// rest). Beyond the claim limit for a device, its last-resort prekey.
    pub async fn claim_many(&self, me: UserId, request: &PrekeyRequest) -> ApiResult<PrekeyMap> {
        // Each user costs lookups whether or not devices are named for them.
        let total: usize = request
            .values()
            .flat_map(|users| users.values())
            .map(|devices| devices.len().max(1))
            .sum();
        if total > limits::MAX_CLIENTS_PER_PREKEY_CLAIM {
            return Err(ApiError::bad_request(
                "too-many-clients",
                format!(
                    "at most {} devices per request",
                    limits::MAX_CLIENTS_PER_PREKEY_CLAIM
                ),
            ));
        }
        // Who may be claimed from, before any prekey is taken.
        let mut related = HashSet::new();
        for (domain, users) in request {
            self.core.local(domain)?;
            for user in users.keys() {
                if self.connections.related(me, *user).await? {
                    related.insert(*user);
                }
            }
        }
        let mut answer = PrekeyMap::new();
        for (domain, users) in request {
            let mut by_user = BTreeMap::new();
            for (user, clients) in users {
                let mut by_client = BTreeMap::new();
                for client in clients {
                    let prekey = if related.contains(user) {
                        let one_time = self.may_take_one_time(me, *user, *client);
                        self.store.claim_prekey(*user, *client, one_time).await?
                    } else {
                        None
                    };
                    by_client.insert(*client, prekey.map(to_prekey));
                }
                by_user.insert(*user, by_client);
            }
            answer.insert(domain.clone(), by_user);
        }
        Ok(answer)
    }
}
