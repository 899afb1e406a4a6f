//! MLS signature keys and the key package directory, in memory.

use async_trait::async_trait;
use parley_api::{ClientId, UserId};

use super::MemoryStore;
use crate::{KeyPackageRecord, MlsStore, StoreError, StoreResult};

#[async_trait]
impl MlsStore for MemoryStore {
    async fn set_mls_public_key(
        &self,
        user: UserId,
        client: ClientId,
        scheme: u16,
        key: &[u8],
    ) -> StoreResult<()> {
        self.with(|s| {
            let row = s
                .clients
                .get_mut(&(user, client))
                .ok_or(StoreError::NotFound)?;
            let stored = row.mls_keys.entry(scheme).or_insert_with(|| key.to_vec());
            if stored.as_slice() == key {
                Ok(())
            } else {
                Err(StoreError::Conflict("mls-public-key"))
            }
        })
    }

    async fn mls_public_keys(
        &self,
        user: UserId,
        client: ClientId,
    ) -> StoreResult<Vec<(u16, Vec<u8>)>> {
        self.with(|s| {
            Ok(s.clients
                .get(&(user, client))
                .map(|row| row.mls_keys.iter().map(|(k, v)| (*k, v.clone())).collect())
                .unwrap_or_default())
        })
    }

    async fn add_key_packages(&self, packages: &[KeyPackageRecord]) -> StoreResult<()> {
        self.with(|s| {
            // Everything that could refuse, before anything is written.
            if packages
                .iter()
                .any(|p| !s.clients.contains_key(&(p.user, p.client)))
            {
                return Err(StoreError::NotFound);
            }
            let mut seen = std::collections::BTreeSet::new();
            if packages
                .iter()
                .any(|p| s.key_packages.contains_key(&p.reference) || !seen.insert(&p.reference))
            {
                return Err(StoreError::Conflict("key-package"));
            }
            for p in packages {
                s.key_packages.insert(p.reference.clone(), p.clone());
            }
            Ok(())
        })
    }

    async fn count_key_packages(
        &self,
        user: UserId,
        client: ClientId,
        suite: u16,
        now: i64,
    ) -> StoreResult<u64> {
        self.with(|s| {
            let n = s
                .key_packages
                .values()
                .filter(|p| {
                    (p.user, p.client, p.suite) == (user, client, suite) && p.not_after > now
                })
                .count();
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        })
    }

    async fn claim_key_packages(
        &self,
        user: UserId,
        suite: u16,
        except: Option<ClientId>,
        now: i64,
    ) -> StoreResult<Vec<KeyPackageRecord>> {
        self.with(|s| {
            let mut claimed = Vec::new();
            for client in s.device_ids(user) {
                if Some(client) == except {
                    continue;
                }
                let first = s
                    .key_packages
                    .values()
                    .filter(|p| {
                        (p.user, p.client, p.suite) == (user, client, suite) && p.not_after > now
                    })
                    .min_by(|a, b| (a.not_after, &a.reference).cmp(&(b.not_after, &b.reference)))
                    .map(|p| p.reference.clone());
                if let Some(reference) = first {
                    claimed.extend(s.key_packages.remove(&reference));
                }
            }
            Ok(claimed)
        })
    }

    async fn delete_key_packages(
        &self,
        user: UserId,
        client: ClientId,
        references: &[Vec<u8>],
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
