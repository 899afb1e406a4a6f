//! MLS's Authentication and Delivery Service, as far as it goes yet: each
//! device's signature keys and the key package directory.
//!
//! - A device registers one signature key per scheme, once.
//! - Key packages are checked (`parley_mls::KeyPackageIn::validate`) before
//!   they are stored: a suite the configuration allows (`[mls]`), mls-rs's signature, leaf node and
//!   lifetime checks, a basic credential naming the uploading device, the
//!   device's registered signature key for that scheme (a device must register
//!   it first), a lifetime of at most 90 days. An upload is all or none.
//!   A key package with the last-resort extension (RFC 9420 §16.8) replaces
//!   the device's last one on its suite, is not counted, and is handed out,
//!   never used up, when the device has no other (the claim says so).
//!   Expired key packages go at the next upload of their device and at the
//!   server's purge; a device holds at most 512 valid ones per suite, counted
//!   in the store's transaction. A key package is at most 16 KiB, an upload is
//!   checked only if it could fit, and at most one upload per core is checked
//!   at a time; a device may upload 30 times in five minutes.
//! - Claims follow the prekey rule: only of users one is related to (the same
//!   user, connected, or in a conversation together), and at most
//!   `limits.prekey_claims` per claimer and user in five minutes (one's own
//!   user is not counted). Each key package is handed out once; the caller's
//!   own device is skipped (a device-bound token's device by default).
//!
//! - Groups: [`groups`] (commit bundles, group messages, group info).
//! - Proteus to MLS: [`migration`] (a group's `mixed` step and its end).
//! - The backend's removals: [`removals`] (its removal keys, and the
//!   removal of deleted devices and of users who leave).
//! - Calls: [`subconversations`] (a conversation's `conference` group).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use parley_api::{ClaimedKeyPackage, ClientId, KeyPackageBundle, MlsPublicKeys, UserId, limits};
use parley_mls::{
    CipherSuite, DeviceIdentity, KeyPackageCheck, KeyPackageError, KeyPackageIn, SignatureScheme,
};
use parley_store::{KeyPackageRecord, MlsStore, StoreError};

use tokio::sync::Semaphore;

use super::Core;
use super::clients::Clients;
use super::connections::Connections;
use super::conversations::Conversations;
use super::groups::Groups;

pub(crate) mod groups;
pub(crate) mod migration;
pub(crate) mod removals;
pub(crate) mod subconversations;
use crate::error::{ApiError, ApiResult};
use crate::ratelimit::RateLimiter;

/// The largest key package accepted, in bytes (one is well under 2 KiB).
const MAX_KEY_PACKAGE_BYTES: usize = 16 * 1024;

/// Uploads one device may make in five minutes.
const UPLOADS_PER_DEVICE: u32 = 30;

/// Commit bundles one device may post in five minutes.
const COMMITS_PER_DEVICE: u32 = 100;

/// The MLS service.
#[derive(Clone, Debug)]
pub struct Mls {
    core: Core,
    store: Arc<dyn MlsStore>,
    clients: Clients,
    connections: Connections,
    conversations: Conversations,
    groups: Groups,
    /// Uploads and commits being checked at once (signature checks are CPU work).
    checking: Arc<Semaphore>,
    uploads: Arc<RateLimiter>,
    claims: Arc<RateLimiter>,
    /// Commit bundles per device.
    commits: Arc<RateLimiter>,
    /// The backend's removal keys by scheme number, read (or made) once.
    removal: Arc<tokio::sync::OnceCell<std::collections::BTreeMap<u16, parley_mls::RemovalKey>>>,
}

fn client_not_found() -> ApiError {
    ApiError::not_found("client-not-found", "no such device")
}

/// A key package refused, as the API says it.
fn refused(index: usize, e: &KeyPackageError) -> ApiError {
    let message = format!("key package {index}: {e}");
    match e {
        KeyPackageError::IdentityMismatch => ApiError::forbidden(e.label(), message),
        _ => ApiError::bad_request(e.label(), message),
    }
}

fn too_large() -> ApiError {
    ApiError::bad_request(
        "mls-protocol-error",
        format!("a key package is at most {MAX_KEY_PACKAGE_BYTES} bytes"),
    )
}

fn too_many() -> ApiError {
    ApiError::bad_request(
        "too-many-key-packages",
        format!(
            "a device keeps at most {} key packages per cipher suite",
            limits::MAX_KEY_PACKAGES_PER_DEVICE
        ),
    )
}

fn base64(what: &str, text: &str) -> ApiResult<Vec<u8>> {
    B64.decode(text)
        .map_err(|_| ApiError::bad_request("bad-request", format!("{what} is not base64")))
}

impl Mls {
    /// The service.
    pub fn new(
        core: Core, store: Arc<dyn MlsStore>, clients: Clients, connections: Connections,
        conversations: Conversations, groups: Groups,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let claims = Arc::new(RateLimiter::new(core.settings.limits.prekey_claims, 300));
        Self {
            core,
            store,
            clients,
            connections,
            conversations,
            groups,
            checking: Arc::new(Semaphore::new(cores)),
            uploads: Arc::new(RateLimiter::new(UPLOADS_PER_DEVICE, 300)),
            commits: Arc::new(RateLimiter::new(COMMITS_PER_DEVICE, 300)),
            claims,
            removal: Arc::default(),
        }
    }

    /// Deletes the key packages that expired; how many went.
    pub async fn purge_expired(&self) -> parley_store::StoreResult<u64> {
        let purged = self.store.purge_key_packages(self.core.clock.now()).await?;
        if purged > 0 {
            tracing::info!(purged, "expired key packages purged");
        }
        Ok(purged)
    }

    /// `GET /v1/mls/config`: the default suite, the allowed ones, and from
    /// when a migration may finish with devices left out.
    pub fn settings(&self) -> parley_api::MlsSettings {
        parley_api::MlsSettings {
            default_cipher_suite: self.core.settings.mls_default_suite.0,
            allowed_cipher_suites: self.allowed().iter().map(|s| s.0).collect(),
            migration_finalise_after: self
                .core
                .settings
                .mls_migration_finalise_after
                .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok()),
        }
    }

    /// Runs CPU work (signature and tree checks, signing) off the runtime's
    /// threads, one piece per core at a time.
    async fn on_cpu<T: Send + 'static>(
        &self, work: impl FnOnce() -> T + Send + 'static,
    ) -> ApiResult<T> {
        let permit = self
            .checking
            .clone()
            .acquire_owned()
            .await
            .map_err(ApiError::internal)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(ApiError::internal)
    }

    /// The backend's removal key for `suite`'s signature scheme.
    async fn removal_key(&self, suite: CipherSuite) -> ApiResult<parley_mls::RemovalKey> {
        let scheme = suite
            .signature_scheme()
            .expect("a group's suite is a selectable one");
        Ok(self
            .removal_keys()
            .await?
            .get(&scheme.number)
            .expect("a key for every scheme")
            .clone())
    }

    /// The suites this backend allows (`[mls] allowed_suites`).
    fn allowed(&self) -> &[CipherSuite] {
        &self.core.settings.mls_allowed_suites
    }

    /// Reads a `ciphersuite` query: the default when absent; refused when it
    /// is not one this backend allows.
    pub fn suite(&self, query: Option<&str>) -> ApiResult<CipherSuite> {
        let Some(text) = query else {
            return Ok(self.core.settings.mls_default_suite);
        };
        let suite = CipherSuite::parse(text).ok_or_else(|| {
            ApiError::bad_request("bad-request", "ciphersuite is a number such as 0x0002")
        })?;
        if self.allowed().contains(&suite) {
            Ok(suite)
        } else {
            Err(ApiError::bad_request(
                "mls-unsupported-cipher-suite",
                format!("cipher suite {suite} is not allowed on this backend"),
            ))
        }
    }

    /// Registers a device's signature keys, each once per scheme.
    pub async fn set_public_keys(
        &self, user: UserId, client: ClientId, keys: &MlsPublicKeys,
    ) -> ApiResult<()> {
        let mut checked = Vec::new();
        for (name, key) in &keys.mls_public_keys {
            let scheme = SignatureScheme::named(name).ok_or_else(|| {
                ApiError::bad_request("bad-request", format!("unknown signature scheme {name:?}"))
            })?;
            let key = base64("an MLS public key", key)?;
            if key.len() != scheme.key_len {
                return Err(ApiError::bad_request(
                    "bad-request",
                    format!("an {name} key is {} bytes", scheme.key_len),
                ));
            }
            checked.push((scheme.number, key));
        }
        match self.store.set_mls_public_keys(user, client, &checked).await {
            Ok(()) => Ok(()),
            Err(StoreError::NotFound) => Err(client_not_found()),
            Err(StoreError::Conflict(_)) => Err(ApiError::bad_request(
                "mls-duplicate-public-key",
                "this device already has another key for one of these schemes",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks and publishes key packages of one device, all or none.
    pub async fn upload(
        &self, user: UserId, client: ClientId, packages: &[String],
    ) -> ApiResult<()> {
        if packages.is_empty() || packages.len() > limits::MAX_KEY_PACKAGES_PER_UPLOAD {
            return Err(ApiError::bad_request(
                "bad-request",
                format!(
                    "upload 1 to {} key packages at a time",
                    limits::MAX_KEY_PACKAGES_PER_UPLOAD
                ),
            ));
        }
        // Base64 of 16 KiB is under 22 KiB: longer text is refused unread.
        if packages
            .iter()
            .any(|p| p.len() > MAX_KEY_PACKAGE_BYTES / 3 * 4 + 4)
        {
            return Err(too_large());
        }
        let bytes = packages
            .iter()
            .map(|p| base64("a key package", p))
            .collect::<ApiResult<Vec<_>>>()?;
        if bytes.iter().any(|b| b.len() > MAX_KEY_PACKAGE_BYTES) {
            return Err(too_large());
        }
        if !self.clients.exists(user, client).await? {
            return Err(client_not_found());
        }
        let now = self.core.clock.now();
        self.uploads
            .check(&format!("{user}:{client}"), now)
            .map_err(ApiError::rate_limited)?;
        // Refused before the signature checks when it could not fit anyway
        // (the store counts again, in its transaction).
        let mut adding: std::collections::BTreeMap<CipherSuite, u64> = Default::default();
        for b in &bytes {
            if let Some(suite) = KeyPackageIn(b.clone()).suite() {
                *adding.entry(suite).or_default() += 1;
            }
        }
        for (suite, n) in adding {
            let have = self
                .store
                .count_key_packages(user, client, suite.0, now)
                .await?;
            if have.saturating_add(n) > limits::MAX_KEY_PACKAGES_PER_DEVICE {
                return Err(too_many());
            }
        }
        let keys = self.store.mls_public_keys(user, client).await?;
        let device = DeviceIdentity {
            user,
            client,
            domain: self.core.settings.domain.clone(),
        };
        let now = u64::try_from(now).unwrap_or(0);
        let allowed = self.allowed().to_vec();
        let valid = self
            .on_cpu(move || {
                bytes
                    .into_iter()
                    .enumerate()
                    .map(|(i, b)| {
                        let package = KeyPackageIn(b);
                        let suite = package
                            .suite()
                            .ok_or_else(|| refused(i, &KeyPackageError::Malformed))?;
                        let scheme = suite
                            .signature_scheme()
                            .filter(|_| allowed.contains(&suite))
                            .ok_or_else(|| refused(i, &KeyPackageError::SuiteNotAllowed(suite)))?;
                        let registered = keys
                            .iter()
                            .find(|(n, _)| *n == scheme.number)
                            .map(|(_, k)| k.clone());
                        let Some(registered) = registered else {
                            return Err(ApiError::forbidden(
                                "mls-signature-key-missing",
                                format!(
                                    "key package {i}: register this device's MLS signature key for \
                                 its cipher suite first (PUT /v1/clients/{{id}}/mls-public-keys)"
                                ),
                            ));
                        };
                        package
                            .validate(&KeyPackageCheck {
                                device: &device,
                                signature_key: Some(&registered),
                                allowed: &allowed,
                                now,
                                max_lifetime: limits::MAX_KEY_PACKAGE_LIFETIME,
                            })
                            .map_err(|e| refused(i, &e))
                    })
                    .collect::<ApiResult<Vec<_>>>()
            })
            .await??;
        let records: Vec<KeyPackageRecord> = valid
            .into_iter()
            .map(|v| KeyPackageRecord {
                reference: v.reference,
                user,
                client,
                suite: v.suite.0,
                data: v.bytes,
                not_after: i64::try_from(v.not_after).unwrap_or(i64::MAX),
                last_resort: v.last_resort,
            })
            .collect();
        let mut last_resort_suites: Vec<u16> = records
            .iter()
            .filter(|r| r.last_resort)
            .map(|r| r.suite)
            .collect();
        let n = last_resort_suites.len();
        last_resort_suites.sort_unstable();
        last_resort_suites.dedup();
        if last_resort_suites.len() != n {
            return Err(ApiError::bad_request(
                "bad-request",
                "at most one last-resort key package per cipher suite",
            ));
        }
        match self
            .store
            .add_key_packages(
                &records,
                self.core.clock.now(),
                limits::MAX_KEY_PACKAGES_PER_DEVICE,
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::NotFound) => Err(client_not_found()),
            Err(StoreError::Limit(_)) => Err(too_many()),
            Err(StoreError::Conflict(_)) => Err(ApiError::bad_request(
                "mls-duplicate-key-package",
                "a key package was uploaded before",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// A device's valid key packages on a suite.
    pub async fn count(
        &self, user: UserId, client: ClientId, suite: CipherSuite,
    ) -> ApiResult<u64> {
        Ok(self
            .store
            .count_key_packages(user, client, suite.0, self.core.clock.now())
            .await?)
    }

    /// Withdraws key packages of one device by reference; how many went.
    pub async fn delete(
        &self, user: UserId, client: ClientId, references: &[String],
    ) -> ApiResult<u64> {
        if references.len() > limits::MAX_KEY_PACKAGES_PER_DEVICE as usize {
            return Err(ApiError::bad_request("bad-request", "too many references"));
        }
        let references = references
            .iter()
            .map(|r| base64("a key package reference", r))
            .collect::<ApiResult<Vec<_>>>()?;
        Ok(self
            .store
            .delete_key_packages(user, client, &references)
            .await?)
    }

    /// Claims one key package of each of `user`'s devices for `me` (the
    /// caller's `own` device skipped).
    pub async fn claim(
        &self, me: UserId, domain: &str, user: UserId, suite: CipherSuite, own: Option<ClientId>,
    ) -> ApiResult<KeyPackageBundle> {
        self.core.local(domain)?;
        if !self.connections.related(me, user).await? {
            return Err(ApiError::forbidden(
                "not-related",
                "you may claim key packages only of people you are connected or in a \
                 conversation with",
            ));
        }
        if me != user {
            self.claims
                .check(&format!("{me}:{user}"), self.core.clock.now())
                .map_err(ApiError::rate_limited)?;
        }
        let except = if me == user { own } else { None };
        let claimed = self
            .store
            .claim_key_packages(user, suite.0, except, self.core.clock.now())
            .await?;
        Ok(KeyPackageBundle {
            key_packages: claimed
                .into_iter()
                .map(|p| ClaimedKeyPackage {
                    user: p.user,
                    domain: self.core.settings.domain.clone(),
                    client: p.client,
                    key_package: B64.encode(&p.data),
                    key_package_ref: B64.encode(&p.reference),
                    last_resort: p.last_resort,
                })
                .collect(),
        })
    }
}
