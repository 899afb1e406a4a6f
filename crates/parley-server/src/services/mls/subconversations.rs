//! Subconversations: a call's `conference`, an MLS group of its own beside
//! its conversation's, whose epochs give the call's keys (each participant
//! exports them; the server never sees them).
//!
//! - Only an MLS conversation (not one still mixed) has them, and only the
//!   names in `parley_api::SUBCONVERSATIONS`: a member cannot make the
//!   server keep groups without end.
//! - Asking for one opens it, at epoch 0 and generation 0. Its group id is
//!   the conversation's id, the generation (4 bytes, big-endian) and the
//!   name: it leads to the conversation as a conversation's own does, and a
//!   reset (a new generation) makes a new group nobody can mistake for the
//!   old one.
//! - Any member's device makes its group's first commit (with nobody else
//!   in it) or joins by external commit from the latest group info; nobody
//!   adds anyone. A device leaves by itself: it is out of the group's
//!   delivery at once, and the server proposes its removal, which the next
//!   commit of any participant takes in (`mls-commit-missing-references`
//!   otherwise). The last device to leave resets it (decided under the
//!   conversation's lock: two last leavers cannot both leave it standing). A user who leaves the
//!   conversation, or a deleted device, is removed as from the
//!   conversation's own group (see [`super::removals`]).
//! - Any member resets it (a call that went wrong), naming the group and
//!   epoch they saw: a new generation, empty, at epoch 0; the old group's
//!   devices are told (`conversation.subconversation-reset`). Every write
//!   to a group names its group id, so nothing made for an old generation
//!   lands in a new one.
//!
//! Commits and messages go through the same endpoints as the conversation's
//! own group (the group id says which), and their events name the
//! subconversation.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use parley_api::{
    ClientId, ConversationId, EventPayload, GroupMember, SUBCONVERSATIONS, Subconversation,
    SubconversationReset, UserId,
};
use parley_store::{GroupKey, MlsGroupRecord, Notify, SubconversationLeave};

use super::Mls;
use crate::error::{ApiError, ApiResult};
use crate::services::notifications::payload;

/// The bytes of a subconversation's group id before its name.
const PREFIX: usize = 16 + 4;

/// A subconversation's group id (see the module's documentation).
pub(super) fn group_id(conversation: ConversationId, generation: u32, name: &str) -> Vec<u8> {
    let mut id = Vec::with_capacity(PREFIX + name.len());
    id.extend_from_slice(conversation.0.as_bytes());
    id.extend_from_slice(&generation.to_be_bytes());
    id.extend_from_slice(name.as_bytes());
    id
}

/// The conversation and subconversation a subconversation's group id names;
/// `None` for any other id.
pub(super) fn parse_group_id(group_id: &[u8]) -> Option<(ConversationId, &'static str)> {
    if group_id.len() <= PREFIX {
        return None;
    }
    let conversation: [u8; 16] = group_id[..16].try_into().ok()?;
    let name = SUBCONVERSATIONS
        .iter()
        .find(|n| n.as_bytes() == &group_id[PREFIX..])?;
    Some((ConversationId(uuid::Uuid::from_bytes(conversation)), name))
}

/// A subconversation's name, if it is one a conversation may have.
fn known(name: &str) -> ApiResult<&'static str> {
    SUBCONVERSATIONS
        .iter()
        .find(|n| **n == name)
        .copied()
        .ok_or_else(|| {
            ApiError::bad_request(
                "mls-unknown-subconversation",
                format!(
                    "a conversation's subconversations are {}",
                    SUBCONVERSATIONS.join(", ")
                ),
            )
        })
}

pub(super) fn no_subconversation() -> ApiError {
    ApiError::not_found(
        "no-subconversation",
        "no such subconversation (it may have been reset: ask for it again)",
    )
}

pub(super) fn not_while_mixed() -> ApiError {
    ApiError::bad_request(
        "mls-subconv-unsupported-convtype",
        "a conversation still migrating to MLS has no subconversations",
    )
}

impl Mls {
    /// `GET /v1/conversations/{domain}/{id}/subconversations/{name}`: the
    /// subconversation, opened if it was not.
    pub async fn subconversation(
        &self, me: UserId, domain: &str, id: ConversationId, name: &str,
    ) -> ApiResult<Subconversation> {
        self.core.local(domain)?;
        let name = known(name)?;
        let (_, parent) = self.member_group(me, &GroupKey::of(id)).await?;
        if parent.mixed {
            return Err(not_while_mixed());
        }
        let key = GroupKey::sub(id, name);
        let record = match self.groups.group(&key).await? {
            Some(record) => record,
            None => {
                self.groups
                    .open_subconversation(&MlsGroupRecord {
                        conversation: id,
                        subconversation: Some(name.to_owned()),
                        generation: 0,
                        group_id: group_id(id, 0, name),
                        suite: parent.suite,
                        epoch: 0,
                        epoch_at: self.core.clock.now(),
                        mixed: false,
                    })
                    .await?
            }
        };
        let members = self.groups.devices(&key).await?;
        Ok(Subconversation {
            parent: self.core.qualified(id),
            subconversation: name.to_owned(),
            group_id: B64.encode(&record.group_id),
            epoch: record.epoch,
            epoch_timestamp: parley_api::OffsetDateTime::from_unix_timestamp(record.epoch_at)
                .unwrap_or(parley_api::OffsetDateTime::UNIX_EPOCH),
            cipher_suite: record.suite,
            members: members
                .into_iter()
                .map(|(user, client)| GroupMember {
                    user,
                    client,
                    domain: self.core.settings.domain.clone(),
                })
                .collect(),
        })
    }

    /// `GET /v1/conversations/{domain}/{id}/subconversations/{name}/groupinfo`:
    /// its latest group info, for a device joining by external commit.
    pub async fn subconversation_group_info(
        &self, me: UserId, domain: &str, id: ConversationId, name: &str,
    ) -> ApiResult<Vec<u8>> {
        self.core.local(domain)?;
        self.latest_group_info(me, &GroupKey::sub(id, known(name)?))
            .await
    }

    /// `DELETE /v1/conversations/{domain}/{id}/subconversations/{name}/self`:
    /// the calling device leaves (see the module's documentation). Leaving
    /// one it is not in does nothing.
    pub async fn leave_subconversation(
        &self, me: UserId, device: ClientId, domain: &str, id: ConversationId, name: &str,
    ) -> ApiResult<()> {
        self.core.local(domain)?;
        let name = known(name)?;
        let key = GroupKey::sub(id, name);
        let (_, record) = self.member_group(me, &key).await?;
        let next = group_id(id, record.generation.wrapping_add(1), name);
        let left = self
            .groups
            .leave_subconversation(&key, (me, device), &next, self.core.clock.now())
            .await?;
        match left {
            SubconversationLeave::NotIn => Ok(()),
            SubconversationLeave::Left => {
                // Out of its delivery already: the leave stands whatever
                // becomes of the proposal.
                if let Err(e) = self.propose_removals(&key, &[(me, device)]).await {
                    tracing::warn!(
                        label = e.label(),
                        "MLS: a call leaver's removal not proposed"
                    );
                }
                Ok(())
            }
            SubconversationLeave::Ended => {
                tracing::info!("MLS subconversation ended by its last device");
                Ok(())
            }
        }
    }

    /// `DELETE /v1/conversations/{domain}/{id}/subconversations/{name}`:
    /// resets it if its group is still the one named (see the module's
    /// documentation); its devices are told.
    pub async fn reset_subconversation(
        &self, me: UserId, domain: &str, id: ConversationId, name: &str,
        seen: &SubconversationReset,
    ) -> ApiResult<()> {
        self.core.local(domain)?;
        let name = known(name)?;
        let key = GroupKey::sub(id, name);
        let (_, record) = self.member_group(me, &key).await?;
        let seen_id = B64
            .decode(&seen.group_id)
            .map_err(|_| ApiError::bad_request("bad-request", "group_id is not base64"))?;
        let next = group_id(id, record.generation.wrapping_add(1), name);
        let event = payload(&EventPayload::SubconversationReset {
            conversation: self.core.qualified(id),
            subconversation: name.to_owned(),
            group_id: B64.encode(&seen_id),
            from: me,
        });
        let at = self.core.clock.now();
        let reset = self
            .groups
            .reset_subconversation(
                &key,
                (&seen_id, seen.epoch),
                &next,
                Notify {
                    payload: &event,
                    at,
                },
            )
            .await?;
        let Some(delivered) = reset else {
            return Err(ApiError::conflict(
                "mls-stale-message",
                format!(
                    "the subconversation is at epoch {} of another group than the one named: \
                     ask for it again",
                    record.epoch
                ),
            ));
        };
        self.core.announce_stored(at, delivered);
        tracing::info!("MLS subconversation reset");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subconversation_group_id_names_its_conversation() {
        let conversation = ConversationId(uuid::Uuid::from_bytes([7; 16]));
        let id = group_id(conversation, 3, "conference");
        assert_eq!(id.len(), 16 + 4 + "conference".len());
        assert_eq!(parse_group_id(&id), Some((conversation, "conference")));
        // Every generation is another group.
        assert_ne!(id, group_id(conversation, 4, "conference"));
        // A conversation's own group id, or an unknown name, is none.
        assert_eq!(parse_group_id(&id[..16]), None);
        assert_eq!(parse_group_id(&group_id(conversation, 0, "party")), None);
    }
}
