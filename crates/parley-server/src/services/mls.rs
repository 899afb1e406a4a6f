//! MLS's Authentication and Delivery Service, as far as it goes yet: each
//! device's signature keys and the key package directory.
//!
//! - A device registers one signature key per scheme, once.
//! - Key packages are checked (`parley_mls::KeyPackageIn::validate`) before
//!   they are stored: an allowed suite, mls-rs's signature, leaf node and
//!   lifetime checks, a basic credential naming the uploading device, the
//!   device's registered signature key for that scheme (a device must register
//!   it first), a lifetime of at most 90 days. An upload is all or none.
//! - Claims follow the prekey rule: only of users one is related to (the same
//!   user, connected, or in a conversation together). Each key package is
//!   handed out once; the caller's own device is skipped.
//!
//! Groups, commits and welcomes come with the rest of the MLS issue.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use parley_api::{ClaimedKeyPackage, ClientId, KeyPackageBundle, MlsPublicKeys, UserId, limits};
use parley_mls::{
    CipherSuite, DeviceIdentity, KeyPackageCheck, KeyPackageError, KeyPackageIn, SignatureScheme,
};
use parley_store::{KeyPackageRecord, MlsStore, StoreError};

use super::Core;
use super::connections::Connections;
use crate::error::{ApiError, ApiResult};

/// The MLS service.
#[derive(Clone, Debug)]
pub struct Mls {
    core: Core,
    store: Arc<dyn MlsStore>,
    connections: Connections,
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

fn base64(what: &str, text: &str) -> ApiResult<Vec<u8>> {
    B64.decode(text)
        .map_err(|_| ApiError::bad_request("bad-request", format!("{what} is not base64")))
}

impl Mls {
    /// The service.
    pub fn new(core: Core, store: Arc<dyn MlsStore>, connections: Connections) -> Self {
        Self {
            core,
            store,
            connections,
        }
    }

    /// The suites this backend allows (all the selectable ones, for now).
    fn allowed(&self) -> &'static [CipherSuite] {
        &CipherSuite::SELECTABLE
    }

    /// Reads a `ciphersuite` query: the default when absent; refused when it
    /// is not one this backend allows.
    pub fn suite(&self, query: Option<&str>) -> ApiResult<CipherSuite> {
        let Some(text) = query else {
            return Ok(CipherSuite::DEFAULT);
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
        &self,
        user: UserId,
        client: ClientId,
        keys: &MlsPublicKeys,
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
            checked.push((scheme, key));
        }
        for (scheme, key) in checked {
            match self
                .store
                .set_mls_public_key(user, client, scheme.number, &key)
                .await
            {
                Ok(()) => {}
                Err(StoreError::NotFound) => return Err(client_not_found()),
                Err(StoreError::Conflict(_)) => {
                    return Err(ApiError::bad_request(
                        "mls-duplicate-public-key",
                        format!("this device already has an {} key", scheme.name),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Checks and publishes key packages of one device, all or none.
    pub async fn upload(
        &self,
        user: UserId,
        client: ClientId,
        packages: &[String],
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
        let bytes = packages
            .iter()
            .map(|p| base64("a key package", p))
            .collect::<ApiResult<Vec<_>>>()?;
        let keys = self.store.mls_public_keys(user, client).await?;
        let device = DeviceIdentity {
            user,
            client,
            domain: self.core.settings.domain.clone(),
        };
        let now = u64::try_from(self.core.clock.now()).unwrap_or(0);
        let allowed = self.allowed();
        // Signature checks are CPU work: off the runtime.
        let valid = tokio::task::spawn_blocking(move || {
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
                            allowed,
                            now,
                            max_lifetime: limits::MAX_KEY_PACKAGE_LIFETIME,
                        })
                        .map_err(|e| refused(i, &e))
                })
                .collect::<ApiResult<Vec<_>>>()
        })
        .await
        .map_err(ApiError::internal)??;
        for suite in valid.iter().map(|v| v.suite) {
            let have = self
                .store
                .count_key_packages(user, client, suite.0, self.core.clock.now())
                .await?;
            let adding = valid.iter().filter(|v| v.suite == suite).count() as u64;
            if have + adding > limits::MAX_KEY_PACKAGES_PER_DEVICE {
                return Err(ApiError::bad_request(
                    "too-many-key-packages",
                    format!(
                        "a device keeps at most {} key packages per cipher suite",
                        limits::MAX_KEY_PACKAGES_PER_DEVICE
                    ),
                ));
            }
        }
        let records: Vec<KeyPackageRecord> = valid
            .into_iter()
            .map(|v| KeyPackageRecord {
                reference: v.reference,
                user,
                client,
                suite: v.suite.0,
                data: v.bytes,
                not_after: i64::try_from(v.not_after).unwrap_or(i64::MAX),
            })
            .collect();
        match self.store.add_key_packages(&records).await {
            Ok(()) => Ok(()),
            Err(StoreError::NotFound) => Err(client_not_found()),
            Err(StoreError::Conflict(_)) => Err(ApiError::bad_request(
                "mls-duplicate-key-package",
                "a key package was uploaded before",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// A device's valid key packages on a suite.
    pub async fn count(
        &self,
        user: UserId,
        client: ClientId,
        suite: CipherSuite,
    ) -> ApiResult<u64> {
        Ok(self
            .store
            .count_key_packages(user, client, suite.0, self.core.clock.now())
            .await?)
    }

    /// Withdraws key packages of one device by reference; how many went.
    pub async fn delete(
        &self,
        user: UserId,
        client: ClientId,
        references: &[String],
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
        &self,
        me: UserId,
        domain: &str,
        user: UserId,
        suite: CipherSuite,
        own: Option<ClientId>,
    ) -> ApiResult<KeyPackageBundle> {
        self.core.local(domain)?;
        if !self.connections.related(me, user).await? {
            return Err(ApiError::forbidden(
                "not-related",
                "you may claim key packages only of people you are connected or in a \
                 conversation with",
            ));
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
                })
                .collect(),
        })
    }
}
