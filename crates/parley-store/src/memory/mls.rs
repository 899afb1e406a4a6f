//! MLS signature keys and the key package directory, in memory.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use parley_api::{ClientId, UserId};

use super::MemoryStore;
use crate::{KeyPackageRecord, MlsStore, StoreError, StoreResult};

#[async_trait]
impl MlsStore for MemoryStore {
    async fn set_mls_public_keys(
        &self, user: UserId, client: ClientId, keys: &[(u16, Vec<u8>)],
    ) -> StoreResult<()> {
        self.with(|s| {
            let row = s
                .clients
                .get_mut(&(user, client))
                .ok_or(StoreError::NotFound)?;
            if keys
                .iter()
                .any(|(scheme, key)| row.mls_keys.get(scheme).is_some_and(|k| k != key))
            {
                return Err(StoreError::Conflict("mls-public-key"));
            }
            for (scheme, key) in keys {
                row.mls_keys.entry(*scheme).or_insert_with(|| key.clone());
            }
            Ok(())
        })
    }

    async fn mls_public_keys(
        &self, user: UserId, client: ClientId,
    ) -> StoreResult<Vec<(u16, Vec<u8>)>> {
        self.with(|s| {
            Ok(s.clients
                .get(&(user, client))
                .map(|row| row.mls_keys.iter().map(|(k, v)| (*k, v.clone())).collect())
                .unwrap_or_default())
        })
    }

    async fn add_key_packages(
        &self, packages: &[KeyPackageRecord], now: i64, max_per_suite: u64,
    ) -> StoreResult<()> {
        self.with(|s| {
            // Everything that could refuse, before anything is written.
            if packages
                .iter()
                .any(|p| !s.clients.contains_key(&(p.user, p.client)))
            {
                return Err(StoreError::NotFound);
            }
            let devices: BTreeSet<(UserId, ClientId)> =
                packages.iter().map(|p| (p.user, p.client)).collect();
            let live =
                |p: &KeyPackageRecord| !devices.contains(&(p.user, p.client)) || p.not_after > now;
            // A new last-resort key package replaces the device's last one.
            let replaced: BTreeSet<(UserId, ClientId, u16)> = packages
                .iter()
                .filter(|p| p.last_resort)
                .map(|p| (p.user, p.client, p.suite))
                .collect();
            let stays = |p: &KeyPackageRecord| {
                live(p) && !(p.last_resort && replaced.contains(&(p.user, p.client, p.suite)))
            };
            let mut seen = BTreeSet::new();
            if packages.iter().any(|p| {
                s.key_packages.get(&p.reference).is_some_and(stays) || !seen.insert(&p.reference)
            }) {
                return Err(StoreError::Conflict("key-package"));
            }
            let mut held: BTreeMap<(UserId, ClientId, u16), u64> = BTreeMap::new();
            for p in s
                .key_packages
                .values()
                .filter(|p| stays(p) && !p.last_resort)
            {
                *held.entry((p.user, p.client, p.suite)).or_default() += 1;
            }
            for p in packages.iter().filter(|p| !p.last_resort) {
                let n = held.entry((p.user, p.client, p.suite)).or_default();
                *n += 1;
                if *n > max_per_suite && devices.contains(&(p.user, p.client)) {
                    return Err(StoreError::Limit("key-packages"));
                }
            }
            s.key_packages.retain(|_, p| stays(p));
            for p in packages {
                s.key_packages.insert(p.reference.clone(), p.clone());
            }
            Ok(())
        })
    }

    async fn purge_key_packages(&self, now: i64) -> StoreResult<u64> {
        self.with(|s| {
            let before = s.key_packages.len();
            s.key_packages.retain(|_, p| p.not_after > now);
            Ok(u64::try_from(before - s.key_packages.len()).unwrap_or(u64::MAX))
        })
    }

    async fn count_key_packages(
        &self, user: UserId, client: ClientId, suite: u16, now: i64,
    ) -> StoreResult<u64> {
        self.with(|s| {
            let n = s
                .key_packages
                .values()
                .filter(|p| {
                    (p.user, p.client, p.suite) == (user, client, suite)
                        && p.not_after > now
                        && !p.last_resort
                })
                .count();
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        })
    }

    async fn claim_key_packages(
        &self, user: UserId, suite: u16, except: Option<ClientId>, now: i64,
    ) -> StoreResult<Vec<KeyPackageRecord>> {
        self.with(|s| {
            let mut claimed = Vec::new();
            for client in s.device_ids(user) {
                if Some(client) == except {
                    continue;
                }
                let valid = |p: &&KeyPackageRecord| {
                    (p.user, p.client, p.suite) == (user, client, suite) && p.not_after > now
                };
                let first = s
                    .key_packages
                    .values()
                    .filter(valid)
                    .filter(|p| !p.last_resort)
                    .min_by(|a, b| (a.not_after, &a.reference).cmp(&(b.not_after, &b.reference)))
                    .map(|p| p.reference.clone());
                match first {
                    Some(reference) => claimed.extend(s.key_packages.remove(&reference)),
                    // None left: the device's last-resort one, which stays.
                    None => claimed.extend(
                        s.key_packages
                            .values()
                            .filter(valid)
                            .find(|p| p.last_resort)
                            .cloned(),
                    ),
                }
            }
            Ok(claimed)
        })
    }

    async fn mls_removal_key(
        &self, scheme: u16, candidate: (&[u8], &[u8]),
    ) -> StoreResult<(Vec<u8>, Vec<u8>)> {
        self.with(|s| {
            Ok(s.removal_keys
                .entry(scheme)
                .or_insert_with(|| (candidate.0.to_vec(), candidate.1.to_vec()))
                .clone())
        })
    }

    async fn delete_key_packages(
        &self, user: UserId, client: ClientId, references: &[Vec<u8>],
    ) -> StoreResult<u64> {
        self.with(|s| {
            let mut gone = 0;
            for reference in references {
                if s.key_packages
                    .get(reference)
                    .is_some_and(|p| (p.user, p.client) == (user, client))
                {
                    s.key_packages.remove(reference);
                    gone += 1;
                }
            }
            Ok(gone)
        })
    }
}
