//! The backend's removals: MLS groups lose the devices nobody else would
//! take out.
//!
//! A member cannot commit its own removal and a deleted device commits
//! nothing, so the server proposes those removals itself, as the external
//! sender every group names (`parley_mls::removal`): when a device is
//! deleted (alone or with its account) and when a user leaves an MLS
//! conversation. A proposal is stored once, queued for the group's devices
//! (the event's `from` and `client` name the device it removes), and kept in
//! the observer's state; the next commit of any member must include it
//! (`mls-commit-missing-references`), and committing it is any member's to
//! do. A user who leaves is a member no more at once, and their devices get
//! nothing more of the group from then on.
//!
//! A proposal is made for the group's current epoch; a commit that lands
//! first makes it stale, and it is made again on the new epoch. One an
//! external commit left out is made again after it. The keys, one per
//! signature scheme, are made by the first node that needs them and kept in
//! the store, so every node signs with the same.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use parley_api::{ClientId, ConversationId, EventPayload, MlsRemovalKeys, Qualified, UserId};
use parley_mls::{DeviceIdentity, RemovalKey, SignatureScheme};
use parley_store::{GroupKey, GroupProposals, GroupWrite, MlsGroupRecord, SharedMessage};

use super::Mls;
use crate::error::{ApiError, ApiResult};
use crate::services::notifications::payload;

/// Tries of a proposal that keeps losing the race to members' commits.
const PROPOSE_ATTEMPTS: usize = 5;

impl Mls {
    /// The backend's removal keys by scheme number: the stored ones, or new
    /// ones stored now.
    pub(super) async fn removal_keys(&self) -> ApiResult<&BTreeMap<u16, RemovalKey>> {
        self.removal
            .get_or_try_init(|| async {
                let mut keys = BTreeMap::new();
                for scheme in SignatureScheme::ALL {
                    let candidate = RemovalKey::generate(scheme)
                        .map_err(|e| ApiError::internal(e.to_string()))?;
                    let (secret, public) = self
                        .store
                        .mls_removal_key(
                            scheme.number,
                            (&candidate.secret_bytes(), candidate.public_key()),
                        )
                        .await?;
                    let key = RemovalKey::restore(scheme, &secret, &public)
                        .map_err(|e| ApiError::internal(e.to_string()))?;
                    keys.insert(scheme.number, key);
                }
                Ok(keys)
            })
            .await
    }

    /// `GET /v1/mls/public-keys`: the removal keys every group must name as
    /// its external sender, by scheme name.
    pub async fn public_keys(&self) -> ApiResult<MlsRemovalKeys> {
        let keys = self.removal_keys().await?;
        Ok(MlsRemovalKeys {
            removal: keys
                .values()
                .map(|k| (k.scheme().name.to_owned(), B64.encode(k.public_key())))
                .collect(),
        })
    }

    /// `DELETE /v1/conversations/{domain}/{id}/members/{domain}/{user}`:
    /// as the conversations service has it; a user leaving an MLS
    /// conversation (out of its groups' delivery with the membership
    /// change, its subconversations' too) also has their devices' removal
    /// proposed in each. The leave stands whatever becomes of the proposals
    /// (logged).
    pub async fn remove_member(
        &self, me: UserId, domain: &str, id: ConversationId, who: &Qualified<UserId>,
    ) -> ApiResult<()> {
        // Read before the leave takes them out of the groups' delivery.
        let mut theirs = Vec::new();
        for key in self.groups_of(id).await? {
            let devices: Vec<(UserId, ClientId)> = self
                .groups
                .devices(&key)
                .await?
                .into_iter()
                .filter(|(user, _)| *user == who.id)
                .collect();
            theirs.push((key, devices));
        }
        if self
            .conversations
            .remove_member(me, domain, id, who)
            .await?
        {
            for (key, devices) in theirs.iter().filter(|(_, d)| !d.is_empty()) {
                if let Err(e) = self.propose_removals(key, devices).await {
                    tracing::warn!(
                        label = e.label(),
                        "MLS: a leaver's removal was not proposed"
                    );
                }
            }
        }
        Ok(())
    }

    /// A conversation's groups: its own, then its subconversations'.
    async fn groups_of(&self, conversation: ConversationId) -> ApiResult<Vec<GroupKey>> {
        let mut keys = vec![GroupKey::of(conversation)];
        keys.extend(
            self.groups
                .subconversations(conversation)
                .await?
                .iter()
                .map(MlsGroupRecord::key),
        );
        Ok(keys)
    }

    /// The user's MLS conversations, to be read before their account goes
    /// (after it, they are in none).
    pub async fn conversations_of(&self, user: UserId) -> ApiResult<Vec<ConversationId>> {
        self.conversations.mls_of(user).await
    }

    /// Devices gone (deleted, or with their account): their removal is
    /// proposed in each group of `conversations` (subconversations too)
    /// that holds them. Failures are logged, not returned: the deletion
    /// itself is done.
    pub async fn devices_gone(
        &self, user: UserId, clients: &[ClientId], conversations: &[ConversationId],
    ) {
        let gone: Vec<(UserId, ClientId)> = clients.iter().map(|c| (user, *c)).collect();
        for conversation in conversations {
            let keys = match self.groups_of(*conversation).await {
                Ok(keys) => keys,
                Err(e) => {
                    tracing::warn!(label = e.label(), "MLS: a conversation's groups unread");
                    continue;
                }
            };
            for key in keys {
                if let Err(e) = self.propose_removals(&key, &gone).await {
                    tracing::warn!(
                        label = e.label(),
                        "MLS: the removal of a deleted device could not be proposed"
                    );
                }
            }
        }
    }

    /// Proposes the removal of `devices` from a group (those in it and not
    /// proposed already), again on a new epoch when a commit lands first.
    pub(super) async fn propose_removals(
        &self, group_key: &GroupKey, devices: &[(UserId, ClientId)],
    ) -> ApiResult<()> {
        let Some(group) = self.groups.group(group_key).await? else {
            return Ok(());
        };
        let conversation = group_key.conversation;
        let key = self
            .removal_key(parley_mls::CipherSuite(group.suite))
            .await?;
        let sender = key.sender(&self.core.settings.domain);
        let qualified = self.core.qualified(conversation);
        for _ in 0..PROPOSE_ATTEMPTS {
            let Some(state) = self.groups.state(group_key).await? else {
                // No commit yet: the group is its creator alone.
                return Ok(());
            };
            // Loading, signing and the snapshot are CPU work.
            let (key, sender) = (key.clone(), sender.clone());
            let devices = devices.to_vec();
            let domain = self.core.settings.domain.clone();
            let bytes = state.state.clone();
            let signed = self
                .on_cpu(move || propose(&bytes, &devices, &domain, &key, &sender))
                .await??;
            let Some((made, epoch, snapshot)) = signed else {
                return Ok(());
            };
            let events: Vec<String> = made
                .iter()
                .map(|(user, client, _)| {
                    payload(&EventPayload::MlsMessageAdd {
                        conversation: qualified.clone(),
                        subconversation: group_key.subconversation.clone(),
                        from: *user,
                        client: *client,
                        data: String::new(),
                    })
                })
                .collect();
            let proposals: Vec<SharedMessage<'_>> = made
                .iter()
                .zip(&events)
                .map(|((_, _, data), event)| SharedMessage {
                    payload: event,
                    data,
                })
                .collect();
            let at = self.core.clock.now();
            let write = self
                .groups
                .propose(&GroupProposals {
                    group: group_key.clone(),
                    group_id: &group.group_id,
                    epoch,
                    revision: state.revision,
                    at,
                    state: &snapshot,
                    proposals: &proposals,
                })
                .await?;
            match write {
                GroupWrite::Done(delivered) => {
                    self.core.announce_stored(at, delivered);
                    tracing::info!(proposals = made.len(), "MLS removals proposed");
                    return Ok(());
                }
                GroupWrite::Stale(_) => {}
                GroupWrite::NotMember | GroupWrite::NotAdmin | GroupWrite::Mixed => {
                    return Err(ApiError::internal("a proposal has no sender to check"));
                }
            }
        }
        Err(ApiError::conflict(
            "mls-stale-message",
            "the group kept changing: the removal was not proposed",
        ))
    }
}

/// Proposals made: each with the device it removes, then the epoch and the
/// observer state that keeps them.
type Signed = (Vec<(UserId, ClientId, String)>, u64, Vec<u8>);

/// The removal of `devices` (those in the group, not proposed already) as
/// `sender`, on the group `state` holds. `None` when there is nothing to
/// propose, or the group names no backend to propose as (one made before
/// the server's removals: its members remove devices themselves).
fn propose(
    state: &[u8], devices: &[(UserId, ClientId)], domain: &str, key: &RemovalKey,
    sender: &parley_mls::ServerSender,
) -> ApiResult<Option<Signed>> {
    let mut tracked = parley_mls::delivery::TrackedGroup::load(state)
        .map_err(|e| ApiError::internal(format!("a stored group state: {e}")))?;
    let mut made = Vec::new();
    for &(user, client) in devices {
        let device = DeviceIdentity {
            user,
            client,
            domain: domain.to_owned(),
        };
        match tracked.propose_remove(&device, key, sender) {
            Ok(Some(proposal)) => made.push((user, client, B64.encode(proposal))),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "MLS: a removal could not be proposed");
                return Ok(None);
            }
        }
    }
    if made.is_empty() {
        return Ok(None);
    }
    Ok(Some((made, tracked.epoch(), tracked.snapshot())))
}
