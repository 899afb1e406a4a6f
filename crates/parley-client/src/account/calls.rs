//! Calls on this device: a conversation's `conference` subconversation, an
//! MLS group of its own whose every epoch gives the call a new key (the
//! exporter, label `exporter`, empty context). The media itself is another
//! program's; this module keeps the group and hands out the key.
//!
//! - **Joining.** The server opens the subconversation on first asking. At
//!   epoch 0 this device makes its group with itself alone (the first
//!   commit); past it, it joins by external commit from the latest group
//!   info. Another device's first commit winning the race makes this one
//!   join instead. Write-ahead as everywhere: the group's state is
//!   committed before the commit leaves the device, and a first commit is
//!   merged only once the server took it; a join the server refused is
//!   forgotten.
//! - **Following.** Commits and proposals of the call's group come through
//!   the queue like the conversation's own (their events name the
//!   subconversation); a device that cannot follow them rejoins at the end
//!   of the sync, and the backend's removals (a device that left, or was
//!   deleted) are committed by whichever participant gets there first. Its
//!   application messages are not conversation content and are dropped.
//! - **Leaving** takes the device out on the server (which proposes its
//!   removal to the others) and forgets the group here. A reset (a call
//!   gone wrong) starts a new group for everyone.
//!
//! The call's group has the server's group id for the subconversation
//! (which changes with every reset); this device keeps it with the
//! conversation.

use parley_api::SubconversationReset;
use parley_mls::{Changes, CipherSuite, MemberError, Processed};
use serde::{Deserialize, Serialize};

use super::mls::{refused, stale, unb64};
use super::*;
use crate::api::MlsPost;

/// The subconversation a call lives in.
pub const CONFERENCE: &str = "conference";

/// Bytes of a call key.
const CALL_KEY_BYTES: usize = 32;

/// Tries of a join that keeps losing races.
const JOIN_ATTEMPTS: usize = 4;

/// A conversation's call as this device is in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallView {
    /// The call's group id (the server's, for this generation).
    pub group_id: Vec<u8>,
    /// Its epoch as this device's group state has it.
    pub epoch: u64,
    /// This device lost track of the call's group: it rejoins at the next
    /// sync.
    #[serde(default)]
    pub rejoin: bool,
    /// A stranger's device is in the call: this device leaves it at the
    /// next sync.
    #[serde(default)]
    pub leave: bool,
}

/// The key of a call at one epoch: every participant derives the same.
pub struct CallKey {
    /// The epoch it is of (a new one with every commit).
    pub epoch: u64,
    /// The secret.
    pub secret: Zeroizing<Vec<u8>>,
}

impl CallKey {
    /// A short digest for people to compare (not the key).
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.secret.as_slice());
        hex::encode(&digest[..8])
    }
}

impl std::fmt::Debug for CallKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallKey")
            .field("epoch", &self.epoch)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Account {
    /// The call of a conversation this device is in, if any.
    pub fn call(&self, conversation: ConversationId) -> Option<&CallView> {
        self.state
            .conversations
            .get(&conversation)
            .and_then(|c| c.call.as_ref())
    }

    /// Joins the conversation's call (see the module's documentation); its
    /// key at the epoch this device came in at.
    pub async fn join_call(
        &mut self, conversation: &Qualified<ConversationId>,
    ) -> Result<CallKey, ClientError> {
        if !self.is_mls(conversation.id) {
            return Err(ClientError::Refused {
                label: "mls-subconv-unsupported-convtype",
                message: "calls are in MLS conversations: migrate this one first".into(),
            });
        }
        for _ in 0..JOIN_ATTEMPTS {
            let sub = match self.api.subconversation(conversation, CONFERENCE).await {
                Ok(sub) => sub,
                // No longer a member, or no call to have: none kept here.
                Err(
                    e @ ClientError::Api {
                        status: 403 | 404, ..
                    },
                ) => {
                    let tx = self.begin().await?;
                    self.drop_call(conversation.id);
                    self.commit(tx).await?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            let group = unb64(&sub.group_id)?;
            let suite = CipherSuite(sub.cipher_suite);
            let me = (self.user(), self.device_id());
            let listed = sub.members.iter().any(|m| (m.user, m.client) == me);
            let first = sub.epoch == 0;
            let server = if first {
                Some(self.server_sender(suite).await?)
            } else {
                None
            };
            let tx = self.begin().await?;
            let member = self.member(suite)?;
            if listed && member.epoch(&group) == Some(sub.epoch) {
                // In already, and following.
                self.set_call(conversation.id, &group, sub.epoch);
                self.commit(tx).await?;
                return self.call_key(conversation.id);
            }
            // The epoch this device knew the group at: an older group info
            // is not taken.
            let known = self
                .call(conversation.id)
                .filter(|c| c.group_id == group)
                .map_or(0, |c| c.epoch);
            // Another generation's group, or one this device lost track of.
            self.drop_call(conversation.id);
            member.state().forget(&group);
            let made = match &server {
                Some(server) => {
                    member.create(&group, server).map_err(|e| refused(&e))?;
                    Some(
                        member
                            .commit(&group, &Changes::default())
                            .map_err(|e| refused(&e))?,
                    )
                }
                None => None,
            };
            // Kept as one to rejoin until the server's answer says it is in:
            // a device that dies after posting (or never hears back) joins
            // again, in place of the leaf it may have, at its next sync.
            self.pending_call(conversation.id, &group);
            self.commit(tx).await?;
            let bundle = match made {
                Some(bundle) => bundle,
                None => {
                    let info = self
                        .api
                        .subconversation_group_info(conversation, CONFERENCE)
                        .await?;
                    let tx = self.begin().await?;
                    let bundle = self
                        .member(suite)?
                        .join_external(&group, known, &info)
                        .map_err(|e| refused(&e))?;
                    self.pending_call(conversation.id, &group);
                    self.commit(tx).await?;
                    bundle
                }
            };
            if let Some(key) = self
                .post_join(conversation, &group, suite, first, bundle)
                .await?
            {
                return Ok(key);
            }
        }
        Err(ClientError::Unsettled)
    }

    /// Posts a first commit or an external join of the call's group: the
    /// key when it took, `None` when another commit won (try again).
    async fn post_join(
        &mut self, conversation: &Qualified<ConversationId>, group: &[u8], suite: CipherSuite,
        first: bool, bundle: Vec<u8>,
    ) -> Result<Option<CallKey>, ClientError> {
        let answer = self
            .api
            .post_mls(self.device_id(), MlsPost::CommitBundle, bundle)
            .await;
        let tx = self.begin().await?;
        let member = self.member(suite)?;
        match answer {
            Ok(epoch) => {
                if first {
                    member.confirm(group).map_err(|e| refused(&e))?;
                }
                self.set_call(conversation.id, group, epoch);
                self.commit(tx).await?;
                self.call_key(conversation.id).map(Some)
            }
            // Unknown whether it arrived: if it did, the server counts
            // this device in. The call stays one to rejoin (in place of that
            // leaf) at the next sync.
            Err(e) if e.is_away() => {
                member.state().forget(group);
                self.commit(tx).await?;
                Err(e)
            }
            // Refused: this device is not in.
            Err(e) => {
                member.state().forget(group);
                self.forget_call(conversation.id);
                self.commit(tx).await?;
                if stale(&e) {
                    return Ok(None);
                }
                Err(e)
            }
        }
    }

    /// The call's key at this device's current epoch.
    pub fn call_key(&self, conversation: ConversationId) -> Result<CallKey, ClientError> {
        let call = self.call(conversation).ok_or(ClientError::Refused {
            label: "not-in-call",
            message: "this device is not in the conversation's call".into(),
        })?;
        let suite = self.suite_of(conversation);
        let secret = self
            .member(suite)?
            .call_key(&call.group_id, CALL_KEY_BYTES)
            .map_err(|e| refused(&e))?;
        Ok(CallKey {
            epoch: call.epoch,
            secret,
        })
    }

    /// Leaves the conversation's call: out on the server, forgotten here.
    pub async fn leave_call(
        &mut self, conversation: &Qualified<ConversationId>,
    ) -> Result<(), ClientError> {
        match self
            .api
            .leave_subconversation(conversation, CONFERENCE, self.device_id())
            .await
        {
            // Not a member (any more), or no such call: nothing to leave.
            Ok(())
            | Err(ClientError::Api {
                status: 403 | 404, ..
            }) => {}
            Err(e) => return Err(e),
        }
        let tx = self.begin().await?;
        self.drop_call(conversation.id);
        self.commit(tx).await
    }

    /// Ends the conversation's call for everyone (one gone wrong): the next
    /// to join starts a new group.
    pub async fn reset_call(
        &mut self, conversation: &Qualified<ConversationId>,
    ) -> Result<(), ClientError> {
        let sub = self.api.subconversation(conversation, CONFERENCE).await?;
        self.api
            .reset_subconversation(
                conversation,
                CONFERENCE,
                &SubconversationReset {
                    group_id: sub.group_id,
                    epoch: sub.epoch,
                },
            )
            .await?;
        let tx = self.begin().await?;
        self.drop_call(conversation.id);
        self.commit(tx).await
    }

    /// A call event from the queue (inside the receive transaction).
    pub(super) fn call_incoming(
        &mut self, conversation: &Qualified<ConversationId>, data: &str,
    ) -> Vec<crate::device::Incoming> {
        let Some(call) = self.call(conversation.id).cloned() else {
            // Not in this conversation's call: none of its business.
            return Vec::new();
        };
        let Ok(bytes) = unb64(data) else {
            return Vec::new();
        };
        let suite = self.suite_of(conversation.id);
        let Some(member) = self.device.mls_member(suite) else {
            return Vec::new();
        };
        // Of another generation's group: not this call's.
        if parley_mls::delivery::MessageIn(&bytes)
            .classify()
            .is_ok_and(|m| m.group_id != call.group_id)
        {
            return Vec::new();
        }
        match member.process(&call.group_id, &bytes) {
            Ok(Processed::Commit { epoch, added, .. }) => {
                self.set_call(conversation.id, &call.group_id, epoch);
                self.check_joiners(conversation, &added);
            }
            Ok(Processed::Removed) => self.drop_call(conversation.id),
            Ok(Processed::Application { .. } | Processed::Proposal)
            | Err(MemberError::Duplicate) => {}
            Err(_) => self.mark_call(conversation.id, |c| c.rejoin = true),
        }
        Vec::new()
    }

    /// A call is its conversation's members': a device of anyone else in
    /// it (the server's doing) is called out, and this device leaves the
    /// call at the end of the sync (its key is shared with a stranger). A
    /// conversation whose members are not known yet is not judged.
    fn check_joiners(
        &mut self, conversation: &Qualified<ConversationId>, added: &[parley_mls::DeviceIdentity],
    ) {
        let Some(view) = self.state.conversations.get(&conversation.id) else {
            return;
        };
        if view.incomplete || view.members.is_empty() {
            return;
        }
        let Some(stranger) = added.iter().find(|d| !view.members.contains(&d.user)) else {
            return;
        };
        let name = self.name_of(stranger.user);
        self.system(
            conversation.id,
            &format!(
                "A device of {name}, who is not a member of this conversation, joined its call: \
                 this device left the call."
            ),
        );
        self.mark_call(conversation.id, |c| c.leave = true);
    }

    /// A call event of the backend's: the call whose group is `group_id`
    /// (base64) was reset. A device in another (the next) keeps it.
    pub(super) fn call_reset(&mut self, conversation: &Qualified<ConversationId>, group_id: &str) {
        let ended = unb64(group_id).ok();
        if self
            .call(conversation.id)
            .is_none_or(|call| Some(&call.group_id) != ended.as_ref())
        {
            return;
        }
        self.drop_call(conversation.id);
        self.system(
            conversation.id,
            "The call was reset: join again to start or join the next one.",
        );
    }

    fn mark_call(&mut self, conversation: ConversationId, mark: impl FnOnce(&mut CallView)) {
        if let Some(call) = self
            .state
            .conversations
            .get_mut(&conversation)
            .and_then(|c| c.call.as_mut())
        {
            mark(call);
        }
    }

    /// After a receive: calls this device lost track of are rejoined, and
    /// the backend's removals in calls are committed.
    pub(super) async fn calls_follow_up(&mut self) -> Result<(), ClientError> {
        let calls: Vec<(Qualified<ConversationId>, CallView)> = self
            .state
            .conversations
            .values()
            .filter_map(|c| Some((c.id.clone(), c.call.clone()?)))
            .collect();
        for (conversation, call) in calls {
            let done = if call.leave {
                self.leave_call(&conversation).await
            } else if call.rejoin {
                Box::pin(self.join_call(&conversation)).await.map(drop)
            } else {
                self.commit_call_proposals(&conversation, &call).await
            };
            match done {
                Err(e) if e.is_away() => return Err(e),
                // One call's trouble does not hold up the rest: tried again
                // at the next sync.
                _ => {}
            }
        }
        Ok(())
    }

    /// Commits the backend's proposals kept in a call's group, if any are
    /// due (write-ahead: pending until the server took it).
    async fn commit_call_proposals(
        &mut self, conversation: &Qualified<ConversationId>, call: &CallView,
    ) -> Result<(), ClientError> {
        let suite = self.suite_of(conversation.id);
        if !self.member(suite)?.proposals_due(&call.group_id) {
            return Ok(());
        }
        let tx = self.begin().await?;
        let bundle = self
            .member(suite)?
            .commit(&call.group_id, &Changes::default())
            .map_err(|e| refused(&e))?;
        self.commit(tx).await?;
        let answer = self
            .api
            .post_mls(self.device_id(), MlsPost::CommitBundle, bundle)
            .await;
        let tx = self.begin().await?;
        let member = self.member(suite)?;
        match answer {
            Ok(_) => {
                let epoch = member.confirm(&call.group_id).map_err(|e| refused(&e))?;
                self.set_call(conversation.id, &call.group_id, epoch);
            }
            // Another participant's commit came first: its commit, in the
            // queue, takes the proposals in.
            Err(e) if !e.is_away() => {
                member.cancel(&call.group_id).map_err(|err| refused(&err))?;
            }
            // Unknown whether it arrived: the call is rejoined.
            Err(_) => {
                member.state().forget(&call.group_id);
                if let Some(c) = self
                    .state
                    .conversations
                    .get_mut(&conversation.id)
                    .and_then(|c| c.call.as_mut())
                {
                    c.rejoin = true;
                }
            }
        }
        self.commit(tx).await
    }

    fn set_call(&mut self, conversation: ConversationId, group: &[u8], epoch: u64) {
        if let Some(c) = self.state.conversations.get_mut(&conversation) {
            // A stranger seen in this group is not forgotten by a commit.
            let leave = c
                .call
                .as_ref()
                .is_some_and(|call| call.group_id == group && call.leave);
            c.call = Some(CallView {
                group_id: group.to_vec(),
                epoch,
                rejoin: false,
                leave,
            });
        }
    }

    /// Records a join about to be posted: a call to rejoin until the
    /// server's answer comes.
    fn pending_call(&mut self, conversation: ConversationId, group: &[u8]) {
        self.set_call(conversation, group, 0);
        self.mark_call(conversation, |c| c.rejoin = true);
    }

    /// Forgets the record of the call (not its group's state).
    fn forget_call(&mut self, conversation: ConversationId) {
        if let Some(c) = self.state.conversations.get_mut(&conversation) {
            c.call = None;
        }
    }

    /// Forgets the call and its group's state.
    fn drop_call(&mut self, conversation: ConversationId) {
        let Some(call) = self.call(conversation).cloned() else {
            return;
        };
        let suite = self.suite_of(conversation);
        if let Some(member) = self.device.mls_member(suite) {
            member.state().forget(&call.group_id);
        }
        self.forget_call(conversation);
    }
}
