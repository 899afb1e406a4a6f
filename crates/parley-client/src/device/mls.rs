//! This device's MLS side: its signature key per cipher suite (registered
//! with the server once), and [`MemberState`], its groups and the private
//! parts of the key packages it published. They are rows of the device's
//! database like the rest of the device: the signature keys one meta row,
//! each group and each key package a row of its own.
//!
//! Operations on groups are [`parley_mls::Member`]'s; this module only hands
//! out a member for a suite, and writes down and reads back what it keeps.

use std::collections::BTreeMap;
use std::time::Duration;

use parley_mls::member::RowKind;
use parley_mls::{CipherSuite, DeviceIdentity, DeviceKeys, Member, MemberState};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::saved::DeviceRow;
use super::{Device, b64, unb64};
use crate::ClientError;
use crate::store::{Table, Tx};

/// How long a key package this device publishes stays valid.
pub(crate) const KEY_PACKAGE_LIFETIME: Duration = Duration::from_secs(28 * 24 * 3600);
/// Key packages the server should hold per suite (the whitepaper's figure).
pub(crate) const KEY_PACKAGES: u64 = 100;
/// Below this many the device tops them up.
pub(crate) const KEY_PACKAGES_LOW: u64 = 50;

/// The meta row holding the signature keys.
const MLS_ROW: &[u8] = b"mls";

/// One suite's signature key and what the server has of it.
#[derive(Clone)]
pub(crate) struct SuiteKeys {
    pub keys: DeviceKeys,
    /// The server has the public key.
    pub registered: bool,
    /// When this device last published its last-resort key package on the
    /// suite (Unix seconds; 0: never): renewed at half its lifetime.
    pub last_resort_at: u64,
}

/// The MLS part of a device.
#[derive(Default)]
pub(crate) struct MlsSide {
    suites: BTreeMap<u16, SuiteKeys>,
    state: MemberState,
}

/// A suite's keys as stored (the secret only while written or read).
#[derive(Serialize, Deserialize)]
struct SavedSuite {
    suite: u16,
    domain: String,
    secret: String,
    public: String,
    registered: bool,
    last_resort_at: u64,
}

impl Drop for SavedSuite {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

fn table(kind: RowKind) -> Table {
    match kind {
        RowKind::Group => Table::MlsGroups,
        RowKind::KeyPackage => Table::MlsKeyPackages,
    }
}

fn damaged() -> ClientError {
    ClientError::Storage("the saved device's MLS state is damaged".into())
}

impl MlsSide {
    /// The rows it is stored as.
    pub(super) fn rows(&self) -> Vec<DeviceRow> {
        let saved: Vec<SavedSuite> = self
            .suites
            .iter()
            .map(|(suite, s)| SavedSuite {
                suite: *suite,
                domain: s.keys.identity().domain.clone(),
                secret: b64(&s.keys.secret_bytes()),
                public: b64(s.keys.public_key()),
                registered: s.registered,
                last_resort_at: s.last_resort_at,
            })
            .collect();
        let mut rows = Vec::new();
        if !saved.is_empty() {
            rows.push((
                Table::Meta,
                MLS_ROW.to_vec(),
                Zeroizing::new(serde_json::to_vec(&saved).expect("saved keys serialize")),
            ));
        }
        for (kind, name, value) in self.state.rows() {
            rows.push((table(kind), name, value));
        }
        rows
    }

    /// Reads it back for the device `user`/`client`.
    pub(super) async fn load(
        tx: &mut Tx, user: parley_api::UserId, client: parley_api::ClientId,
    ) -> Result<Self, ClientError> {
        let mut side = Self::default();
        if let Some(bytes) = tx.get(Table::Meta, MLS_ROW).await? {
            let saved: Vec<SavedSuite> = serde_json::from_slice(&bytes).map_err(|_| damaged())?;
            for s in &saved {
                let identity = DeviceIdentity {
                    user,
                    client,
                    domain: s.domain.clone(),
                };
                let secret = Zeroizing::new(unb64(&s.secret)?);
                let keys = DeviceKeys::restore(
                    identity,
                    CipherSuite(s.suite),
                    &secret,
                    &unb64(&s.public)?,
                );
                side.suites.insert(
                    s.suite,
                    SuiteKeys {
                        keys,
                        registered: s.registered,
                        last_resort_at: s.last_resort_at,
                    },
                );
            }
        }
        for kind in [RowKind::Group, RowKind::KeyPackage] {
            for (_, bytes) in tx.all(table(kind)).await? {
                side.state.load_row(kind, &bytes).map_err(|_| damaged())?;
            }
        }
        Ok(side)
    }
}

impl Device {
    /// This device's keys on `suite`, made on first use (inside a
    /// transaction: committed before the public key is registered).
    pub(crate) fn mls_suite(
        &mut self, domain: &str, suite: CipherSuite,
    ) -> Result<&mut SuiteKeys, ClientError> {
        if !self.mls.suites.contains_key(&suite.0) {
            let identity = DeviceIdentity {
                user: self.user,
                client: self.client,
                domain: domain.to_owned(),
            };
            let keys = DeviceKeys::generate(identity, suite).map_err(|e| ClientError::Refused {
                label: "mls-unsupported-cipher-suite",
                message: e.to_string(),
            })?;
            self.mls.suites.insert(
                suite.0,
                SuiteKeys {
                    keys,
                    registered: false,
                    last_resort_at: 0,
                },
            );
        }
        Ok(self.mls.suites.get_mut(&suite.0).expect("inserted above"))
    }

    /// The suites this device has keys on.
    pub(crate) fn mls_suites(&self) -> Vec<CipherSuite> {
        self.mls.suites.keys().map(|s| CipherSuite(*s)).collect()
    }

    /// This device as a member of its groups on `suite`, if it has keys there.
    pub(crate) fn mls_member(&self, suite: CipherSuite) -> Option<Member> {
        self.mls
            .suites
            .get(&suite.0)
            .map(|s| Member::new(s.keys.clone(), self.mls.state.clone(), KEY_PACKAGE_LIFETIME))
    }

    /// Whether the server has this device's key on `suite` (`None`: no key).
    pub(crate) fn mls_suite_registered(&self, suite: CipherSuite) -> Option<bool> {
        self.mls.suites.get(&suite.0).map(|s| s.registered)
    }

    /// Key packages whose private parts this device holds (published and not
    /// used yet).
    pub(crate) fn mls_key_packages_held(&self) -> usize {
        self.mls.state.key_packages_held()
    }

    /// Drops the private parts of expired key packages.
    pub(crate) fn mls_drop_expired(&self, now: u64) {
        self.mls.state.drop_expired_key_packages(now);
    }

    /// Drops a group's state (this user left it).
    pub(crate) fn mls_forget(&self, group_id: &[u8]) {
        self.mls.state.forget(group_id);
    }

    /// Whether this device is in the group.
    pub(crate) fn mls_in_group(&self, group_id: &[u8]) -> bool {
        self.mls.state.has_group(group_id)
    }
}
