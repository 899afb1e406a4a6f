//! MLS groups, the Delivery Service's part: commit bundles, group messages
//! and group info.
//!
//! Every commit is checked against the group the server follows
//! (`parley_mls::delivery::TrackedGroup`) before anything is stored:
//! - it verifies against the current epoch (else 409 `mls-stale-message`);
//!   of two commits on one epoch the store applies exactly one;
//! - it was made by the calling device;
//! - every device it adds (or whose key it changes) is a device of this
//!   backend holding the signature key it registered for the group's scheme
//!   (else 403 `mls-identity-mismatch`);
//! - it leaves each user it touches with all of their MLS devices in the
//!   group or none (else 409 `mls-client-mismatch`);
//! - adding or removing another user's devices is for admins, adding a user
//!   needs a connection, and a device joining by external commit must be of
//!   a user already in the conversation;
//! - its group info describes the new epoch exactly (so external joins work);
//! - it includes every removal the server proposed (else 400
//!   `mls-commit-missing-references`; see [`super::removals`]), which is
//!   any member's to commit, never makes a member leave the conversation,
//!   and does not hold the device's user to all or none;
//! - it leaves the group's external senders as they were (else 400
//!   `mls-missing-external-sender`).
//!
//! The conversation's members follow the group: a user whose first device a
//! commit adds joins, one whose last device it removes leaves. Removing a
//! device that no longer exists is any member's to do. An application
//! message is stored once and queued for every device in the group but the
//! sender, if it is of the current epoch. A member's proposals are refused
//! (`mls-unsupported-proposal`): changes are committed with their proposals
//! inline; the server's own removal proposals are the only ones by
//! reference.
//!
//! The checks' CPU work runs off the runtime's threads, one per core at a
//! time, and a device may post 100 commits in five minutes.
//!
//! A mixed conversation's group (on its way from Proteus) follows other
//! rules: see [`super::migration`].
//!
//! The group's first commit comes from its creator at epoch 0, when the
//! server has no state yet: the server starts following the group from the
//! commit's group info (whose tree it verifies) and checks its members as
//! above, all of them counting as added. The group must name the backend's
//! removal key for its scheme as its one external sender (else 400
//! `mls-missing-external-sender`).

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use parley_api::{ClientId, ConversationId, ConversationKind, EventPayload, MlsSent, Role, UserId};
use parley_mls::delivery::{
    AppliedCommit, CommitBundle, DeliveryError, Leaf, MessageIn, MessageKind, TrackedGroup,
};
use parley_mls::{CipherSuite, DeviceIdentity, ServerSender};
use parley_store::{
    GroupCommit, GroupKey, GroupWrite, MemberRecord, MlsGroupRecord, SharedMessage,
};

use super::Mls;
use crate::error::{ApiError, ApiResult};
use crate::services::notifications::payload;

/// The largest commit bundle accepted: a commit adding hundreds of devices
/// carries a welcome entry per device and the whole ratchet tree.
/// (2 MiB, axum's own limit for a body read whole, holds a tree of well over
/// a thousand devices.)
pub(crate) const MAX_COMMIT_BUNDLE_BYTES: usize = 2 * 1024 * 1024;

/// The largest group message accepted.
pub(crate) const MAX_GROUP_MESSAGE_BYTES: usize = crate::transport::MAX_BODY_BYTES;

/// Epochs before the current one whose application messages are still
/// taken: none. A message is accepted only at the group's current epoch, so
/// every device in the group when it is delivered can read it (a device that
/// joined at the current epoch has no older keys); a sender that is behind
/// gets `mls-stale-message`, follows the commits and encrypts again.
const PAST_EPOCHS: u64 = 0;

fn refused(e: &DeliveryError) -> ApiError {
    let message = e.to_string();
    match e {
        DeliveryError::Stale { .. } => ApiError::conflict(e.label(), message),
        DeliveryError::UnknownIdentity => ApiError::forbidden(e.label(), message),
        _ => ApiError::bad_request(e.label(), message),
    }
}

fn stale(current: u64) -> ApiError {
    ApiError::conflict(
        "mls-stale-message",
        format!("the group is at epoch {current}: process what came before and try again"),
    )
}

fn admins_only() -> ApiError {
    ApiError::forbidden(
        "action-denied",
        "only an admin adds or removes other users' devices",
    )
}

fn identity_mismatch(message: impl Into<String>) -> ApiError {
    ApiError::forbidden("mls-identity-mismatch", message)
}

fn not_in_group() -> ApiError {
    ApiError::forbidden(
        "access-denied",
        "the sending device is not in this conversation's group",
    )
}

/// The group a group id names: a conversation's own (its 16 bytes are the
/// conversation's id) or a subconversation's (see
/// [`super::subconversations`]).
fn group_of(group_id: &[u8]) -> ApiResult<GroupKey> {
    if let Some((conversation, name)) = super::subconversations::parse_group_id(group_id) {
        return Ok(GroupKey::sub(conversation, name));
    }
    let bytes: [u8; 16] = group_id.try_into().map_err(|_| no_group())?;
    Ok(GroupKey::of(ConversationId(uuid::Uuid::from_bytes(bytes))))
}

fn no_group() -> ApiError {
    ApiError::not_found("no-conversation", "no MLS conversation has this group")
}

impl Mls {
    /// A group, with the caller checked as a member of its conversation:
    /// 404 for an unknown or non-MLS conversation, or a subconversation not
    /// opened. A subconversation's conversation is an MLS one, not mixed.
    pub(super) async fn member_group(
        &self, me: UserId, key: &GroupKey,
    ) -> ApiResult<(crate::services::conversations::Loaded, MlsGroupRecord)> {
        let loaded = self
            .conversations
            .load(&self.core.settings.domain, key.conversation)
            .await?;
        loaded.role_of(me)?;
        let group = loaded.group.clone().ok_or_else(no_group)?;
        if key.subconversation.is_none() {
            return Ok((loaded, group));
        }
        if group.mixed {
            return Err(super::subconversations::not_while_mixed());
        }
        let sub = self
            .groups
            .group(key)
            .await?
            .ok_or_else(super::subconversations::no_subconversation)?;
        Ok((loaded, sub))
    }

    /// `POST /v1/mls/commit-bundles`: checks and applies a commit (see the
    /// module's documentation).
    pub async fn commit_bundle(
        &self, me: UserId, device: ClientId, body: &[u8],
    ) -> ApiResult<MlsSent> {
        if body.len() > MAX_COMMIT_BUNDLE_BYTES {
            return Err(ApiError::too_large(format!(
                "a commit bundle is at most {MAX_COMMIT_BUNDLE_BYTES} bytes"
            )));
        }
        let bundle = CommitBundle::decode(body).map_err(|e| refused(&e))?;
        let group_id =
            parley_mls::delivery::group_id_of(&bundle.commit).map_err(|e| refused(&e))?;
        let key = group_of(&group_id)?;
        let conversation = key.conversation;
        let call = key.subconversation.is_some();
        // The state (and its revision) before the members: a member removed
        // after this read moves the revision, so the commit is then stale.
        let state = self.groups.state(&key).await?;
        let (loaded, group) = self.member_group(me, &key).await?;
        if group.group_id != group_id {
            return Err(no_group());
        }
        // A block in a 1:1 stops commits too: they reach the other's devices.
        self.no_block_in_one2one(me, &loaded).await?;
        self.commits
            .check(&format!("{me}/{device}"), self.core.clock.now())
            .map_err(ApiError::rate_limited)?;
        let now = u64::try_from(self.core.clock.now()).unwrap_or_default();
        let suite = CipherSuite(group.suite);
        let revision = state.as_ref().map_or(0, |st| st.revision);
        if state.as_ref().is_some_and(|st| st.epoch != group.epoch) {
            // A commit landed between the two reads: the caller retries.
            return Err(stale(group.epoch.max(state.map_or(0, |st| st.epoch))));
        }
        // The first commit is the creator's; a mixed conversation's, any
        // admin's (see `super::migration`); a subconversation's, any
        // member's (whoever starts the call).
        let first_by_me = if call {
            true
        } else if group.mixed {
            loaded.role_of(me)? == Role::Admin
        } else {
            me == loaded.record.creator
        };
        if state.is_none() && !first_by_me {
            return Err(ApiError::forbidden(
                "action-denied",
                if group.mixed {
                    "an admin makes the group's first commit"
                } else {
                    "the group's creator makes its first commit"
                },
            ));
        }
        let sender = self.identity(me, device);
        let server = self.server_sender(suite).await?;
        let (commit, group_info) = (bundle.commit.clone(), bundle.group_info.clone());
        let checked_id = group_id.clone();
        let verified = self
            .on_cpu(move || {
                verify(
                    state.map(|st| st.state),
                    &commit,
                    &group_info,
                    &checked_id,
                    suite,
                    (&sender, &server),
                    now,
                )
            })
            .await?;
        let (tracked, applied) = verified?;
        if applied.committer.device != self.identity(me, device) {
            return Err(identity_mismatch("the commit was made by another device"));
        }
        let roles: BTreeMap<UserId, Role> =
            loaded.members.iter().map(|m| (m.user, m.role)).collect();
        let (needs_admin, join, leave) = if call {
            // A call's group changes its conversation's members never.
            self.check_call_commit(suite, &applied).await?;
            (false, Vec::new(), Vec::new())
        } else {
            let needs_admin = self
                .check_commit(me, (suite, group.mixed), &roles, &tracked, &applied)
                .await?;
            let (join, leave) = if group.mixed {
                // The conversation's members change the Proteus way.
                (Vec::new(), Vec::new())
            } else {
                membership(&roles, &tracked, &applied)?
            };
            if loaded.record.kind == ConversationKind::One2one
                && !(join.is_empty() && leave.is_empty())
            {
                return Err(ApiError::forbidden(
                    "invalid-op",
                    "a 1:1 conversation's group holds its two members' devices, nobody else's",
                ));
            }
            let max = self.core.settings.max_conversation_members;
            // Those who leave are members: no underflow.
            if roles.len() + join.len() - leave.len() > max {
                return Err(ApiError::forbidden(
                    "too-many-members",
                    format!("a conversation has at most {max} members"),
                ));
            }
            (needs_admin, join, leave)
        };
        let device_of = |l: &Leaf| (l.device.user, l.device.client);
        let added: Vec<_> = applied.added.iter().map(device_of).collect();
        let removed: Vec<_> = applied.removed.iter().map(device_of).collect();
        let commit_data = B64.encode(&bundle.commit);
        let welcome_data = bundle.welcome.as_ref().map(|w| B64.encode(&w.0));
        let qualified = self.core.qualified(conversation);
        let commit_event = payload(&EventPayload::MlsMessageAdd {
            conversation: qualified.clone(),
            subconversation: key.subconversation.clone(),
            from: me,
            client: device,
            data: String::new(),
        });
        let welcome_event = payload(&EventPayload::MlsWelcome {
            conversation: qualified,
            from: me,
            data: String::new(),
        });
        let at = self.core.clock.now();
        let state = tracked.snapshot();
        let write = self
            .groups
            .commit(&GroupCommit {
                group: key.clone(),
                group_id: &group_id,
                from_epoch: group.epoch,
                from_revision: revision,
                epoch: applied.epoch,
                at,
                state: &state,
                group_info: &bundle.group_info,
                join: &join,
                leave: &leave,
                sender: (me, device),
                admin: needs_admin.then_some(me),
                added: &added,
                removed: &removed,
                commit: SharedMessage {
                    payload: &commit_event,
                    data: &commit_data,
                },
                welcome: welcome_data.as_deref().map(|data| SharedMessage {
                    payload: &welcome_event,
                    data,
                }),
            })
            .await?;
        self.delivered(write, at)?;
        if group.mixed && !call {
            self.finish_if_complete(me, conversation).await;
        }
        // An external commit cannot take the server's proposals in: they are
        // made again on the epoch it made. In a call, so is the removal of
        // any leaf out of its delivery (a leave whose proposal was lost).
        let mut again: BTreeSet<(UserId, ClientId)> =
            applied.lapsed.iter().map(|d| (d.user, d.client)).collect();
        if call {
            again.extend(self.strays(&key, &tracked).await);
        }
        if !again.is_empty() {
            let again: Vec<_> = again.into_iter().collect();
            if let Err(e) = self.propose_removals(&key, &again).await {
                tracing::warn!(label = e.label(), "MLS: removals not proposed again");
            }
        }
        tracing::info!(
            epoch = applied.epoch,
            added = added.len(),
            removed = removed.len(),
            "MLS commit applied"
        );
        Ok(MlsSent {
            epoch: applied.epoch,
        })
    }

    /// The rules a verified commit must also follow (see the module's
    /// documentation); whether it needs the caller to be an admin (which the
    /// store checks again in the commit's transaction).
    async fn check_commit(
        &self, me: UserId, (suite, mixed): (CipherSuite, bool), roles: &BTreeMap<UserId, Role>,
        tracked: &TrackedGroup, applied: &AppliedCommit,
    ) -> ApiResult<bool> {
        let scheme = self.check_identities(suite, applied).await?;
        // Whom the commit touches, besides the caller's own user.
        let touched: BTreeSet<UserId> = applied
            .added
            .iter()
            .chain(&applied.removed)
            .map(|l| l.device.user)
            .collect();
        // Removing a device that no longer exists (the device or its account
        // was deleted) is any member's to do, unless it makes a member leave
        // the conversation: a user whose account is gone is a member no more.
        let remaining: BTreeSet<UserId> = tracked
            .members()
            .map_err(|e| refused(&e))?
            .into_iter()
            .map(|l| l.device.user)
            .collect();
        let mut others = applied.added.iter().any(|l| l.device.user != me);
        // A removal the server proposed is anyone's to commit.
        for leaf in applied
            .removed
            .iter()
            .filter(|l| l.device.user != me && !applied.server_removed.contains(l))
        {
            let user = leaf.device.user;
            let existing = self.clients.exists(user, leaf.device.client).await?;
            // (A device of someone no longer a member is any admin's to
            // take out.)
            if mixed && existing && roles.contains_key(&user) {
                return Err(ApiError::forbidden(
                    "action-denied",
                    "in a mixed conversation an admin removes a member from the conversation \
                     (DELETE …/members/…), and the server proposes their devices' removal",
                ));
            }
            others |= existing || (roles.contains_key(&user) && !remaining.contains(&user));
        }
        if mixed
            && let Some(stranger) = applied
                .added
                .iter()
                .find(|l| !roles.contains_key(&l.device.user))
        {
            return Err(ApiError::forbidden(
                "mls-not-in-conversation",
                format!(
                    "{} is not a member: a mixed conversation's group takes only members' \
                     devices (add the user to the conversation first)",
                    stranger.device.user
                ),
            ));
        }
        if applied.external {
            if !roles.contains_key(&me) || others {
                return Err(ApiError::forbidden(
                    "action-denied",
                    "an external commit only brings a device of a member into the group",
                ));
            }
        } else if others && roles.get(&me) != Some(&Role::Admin) {
            return Err(admins_only());
        }
        for user in applied.added.iter().map(|l| l.device.user) {
            if user != me
                && !roles.contains_key(&user)
                && !self.connections.may_add(me, user).await?
            {
                return Err(ApiError::forbidden(
                    "not-connected",
                    format!("{user} cannot be added: you are not connected with them"),
                ));
            }
        }
        let members = tracked.members().map_err(|e| refused(&e))?;
        // A mixed group takes each device as it comes (see `super::migration`).
        for user in touched.into_iter().filter(|_| !mixed) {
            // A user touched only by the server's removals (a device deleted
            // while another is yet to join) is not held to all or none: no
            // commit could take the removal in otherwise.
            if applied
                .added
                .iter()
                .chain(&applied.removed)
                .filter(|l| l.device.user == user)
                .all(|l| applied.server_removed.contains(l))
            {
                continue;
            }
            // Devices whose removal the server proposes again are as good as
            // gone.
            let in_group: BTreeSet<ClientId> = members
                .iter()
                .filter(|l| l.device.user == user && !applied.lapsed.contains(&l.device))
                .map(|l| l.device.client)
                .collect();
            if in_group.is_empty() {
                continue;
            }
            let capable = self.mls_devices(user, scheme.number).await?;
            if in_group != capable {
                return Err(ApiError::conflict(
                    "mls-client-mismatch",
                    format!(
                        "a commit adds or removes all of a user's MLS devices: {user} has {} \
                         and the group would hold {}",
                        capable.len(),
                        in_group.len()
                    ),
                ));
            }
        }
        Ok(others && !applied.external)
    }

    /// Every device a commit adds (or whose key it changes) is a device of
    /// this backend holding the signature key it registered for the
    /// group's scheme; the scheme.
    async fn check_identities(
        &self, suite: CipherSuite, applied: &AppliedCommit,
    ) -> ApiResult<parley_mls::SignatureScheme> {
        let scheme = suite
            .signature_scheme()
            .expect("a group's suite is a selectable one");
        for leaf in applied.added.iter().chain(&applied.rekeyed) {
            if leaf.device.domain != self.core.settings.domain {
                return Err(identity_mismatch(format!(
                    "{} is not a device of this backend",
                    leaf.device
                )));
            }
            let keys = self
                .store
                .mls_public_keys(leaf.device.user, leaf.device.client)
                .await?;
            let registered = keys.iter().find(|(s, _)| *s == scheme.number);
            if registered.is_none_or(|(_, key)| *key != leaf.signature_key) {
                return Err(identity_mismatch(format!(
                    "{} has not registered this signature key",
                    leaf.device
                )));
            }
        }
        Ok(scheme)
    }

    /// A call's leaves whose devices are out of its delivery (they left, or
    /// their user left the conversation): their removal is due. (Read after
    /// the commit; a failure to read proposes nothing.)
    async fn strays(&self, key: &GroupKey, tracked: &TrackedGroup) -> Vec<(UserId, ClientId)> {
        let (Ok(delivered), Ok(leaves)) = (self.groups.devices(key).await, tracked.members())
        else {
            tracing::warn!("MLS: a call's devices not read after a commit");
            return Vec::new();
        };
        leaves
            .into_iter()
            .map(|l| (l.device.user, l.device.client))
            .filter(|d| !delivered.contains(d))
            .collect()
    }

    /// The rules of a commit to a subconversation's group: a device comes
    /// in only by itself (the group's first commit, or an external commit),
    /// and goes only by the server's proposal (it left, was deleted, or its
    /// user left the conversation) or in its own rejoin.
    async fn check_call_commit(
        &self, suite: CipherSuite, applied: &AppliedCommit,
    ) -> ApiResult<()> {
        self.check_identities(suite, applied).await?;
        let committer = &applied.committer.device;
        if applied.added.iter().any(|l| l.device != *committer) {
            return Err(ApiError::forbidden(
                "action-denied",
                "a device joins a subconversation by itself (by external commit)",
            ));
        }
        let own_rejoin = |l: &Leaf| applied.external && l.device == *committer;
        if applied
            .removed
            .iter()
            .any(|l| !applied.server_removed.contains(l) && !own_rejoin(l))
        {
            return Err(ApiError::forbidden(
                "action-denied",
                "a device leaves a subconversation by itself (DELETE …/self); only the \
                 backend's removals are committed by others",
            ));
        }
        Ok(())
    }

    /// A user's devices that registered a key for `scheme`.
    async fn mls_devices(&self, user: UserId, scheme: u16) -> ApiResult<BTreeSet<ClientId>> {
        let mut capable = BTreeSet::new();
        for client in self.clients.ids(user).await? {
            let keys = self.store.mls_public_keys(user, client).await?;
            if keys.iter().any(|(s, _)| *s == scheme) {
                capable.insert(client);
            }
        }
        Ok(capable)
    }

    /// What a group on `suite` must name as its external sender.
    async fn server_sender(&self, suite: CipherSuite) -> ApiResult<ServerSender> {
        Ok(self
            .removal_key(suite)
            .await?
            .sender(&self.core.settings.domain))
    }

    fn identity(&self, user: UserId, client: ClientId) -> DeviceIdentity {
        DeviceIdentity {
            user,
            client,
            domain: self.core.settings.domain.clone(),
        }
    }

    /// After a group write: its events go out live; a refusal becomes its
    /// answer.
    fn delivered(&self, write: GroupWrite, at: i64) -> ApiResult<()> {
        match write {
            GroupWrite::Done(delivered) => {
                self.core.announce_stored(at, delivered);
                Ok(())
            }
            GroupWrite::Stale(current) => Err(stale(current)),
            GroupWrite::NotMember => Err(not_in_group()),
            GroupWrite::NotAdmin => Err(admins_only()),
            // Not every member's devices are in the group yet.
            GroupWrite::Mixed => Err(ApiError::conflict(
                "mls-mixed-conversation",
                "this conversation is migrating to MLS: its messages still go by Proteus",
            )),
        }
    }

    /// `POST /v1/mls/messages`: an application message or a proposal, stored
    /// once and queued for the group's other devices.
    pub async fn message(&self, me: UserId, device: ClientId, body: &[u8]) -> ApiResult<MlsSent> {
        if body.len() > MAX_GROUP_MESSAGE_BYTES {
            return Err(ApiError::too_large(format!(
                "a group message is at most {MAX_GROUP_MESSAGE_BYTES} bytes"
            )));
        }
        let message = MessageIn(body).classify().map_err(|e| refused(&e))?;
        if message.kind != MessageKind::Application {
            return Err(ApiError::bad_request(
                "mls-unsupported-proposal",
                "proposals by reference are not taken yet: commit the change with its \
                 proposals inline",
            ));
        }
        let key = group_of(&message.group_id)?;
        let conversation = key.conversation;
        // (A group's message pays one read, of its record; a stranger hears
        // what the store would say.)
        if let Some(loaded) = self
            .conversations
            .load_one2one(&self.core.settings.domain, conversation)
            .await?
        {
            if loaded.group.is_none() {
                return Err(no_group());
            }
            loaded.role_of(me).map_err(|_| not_in_group())?;
            self.no_block_in_one2one(me, &loaded).await?;
        }
        let event = payload(&EventPayload::MlsMessageAdd {
            conversation: self.core.qualified(conversation),
            subconversation: key.subconversation.clone(),
            from: me,
            client: device,
            data: String::new(),
        });
        let data = B64.encode(body);
        let at = self.core.clock.now();
        // The store checks, under the conversation's lock, that the group
        // exists, the epoch is recent and the sending device is in the group.
        let write = self
            .groups
            .post(
                (&key, &message.group_id),
                message.epoch,
                PAST_EPOCHS,
                (me, device),
                SharedMessage {
                    payload: &event,
                    data: &data,
                },
                at,
            )
            .await
            .map_err(|e| match e {
                // (A reset subconversation's former group is no group.)
                parley_store::StoreError::NotFound if key.subconversation.is_some() => {
                    super::subconversations::no_subconversation()
                }
                parley_store::StoreError::NotFound => no_group(),
                other => other.into(),
            })?;
        self.delivered(write, at)?;
        Ok(MlsSent {
            epoch: message.epoch,
        })
    }

    /// In a 1:1, nothing goes (messages, commits, a migration) while a
    /// block stands between its two members, as with Proteus. A group's
    /// messages are one ciphertext for every device, so blocks there are the
    /// devices' to apply.
    pub(super) async fn no_block_in_one2one(
        &self, me: UserId, loaded: &crate::services::conversations::Loaded,
    ) -> ApiResult<()> {
        if loaded.record.kind != ConversationKind::One2one {
            return Ok(());
        }
        for other in loaded.members.iter().filter(|m| m.user != me) {
            if !self.connections.may_talk(me, other.user).await? {
                return Err(ApiError::forbidden(
                    "blocked",
                    "a block stands between you and this user: nothing was sent",
                ));
            }
        }
        Ok(())
    }

    /// `GET /v1/conversations/{domain}/{id}/groupinfo`: the latest group
    /// info, for a member's device joining by external commit.
    pub async fn group_info(
        &self, me: UserId, domain: &str, conversation: ConversationId,
    ) -> ApiResult<Vec<u8>> {
        self.core.local(domain)?;
        self.latest_group_info(me, &GroupKey::of(conversation))
            .await
    }

    /// A group's latest group info, for a member of its conversation (a
    /// conversation's own group or a subconversation's).
    pub(super) async fn latest_group_info(&self, me: UserId, key: &GroupKey) -> ApiResult<Vec<u8>> {
        self.member_group(me, key).await?;
        let state = self.groups.state(key).await?;
        state.map(|st| st.group_info).ok_or_else(|| {
            ApiError::not_found(
                "mls-missing-group-info",
                "the group has no group info yet: its first commit is not made",
            )
        })
    }
}

/// The conversation's membership after a commit: users whose first device
/// the commit adds join (as members); users whose last device it removes
/// leave. Users it does not touch stay as they are, so a user whose account
/// is gone is never brought back.
fn membership(
    roles: &BTreeMap<UserId, Role>, tracked: &TrackedGroup, applied: &AppliedCommit,
) -> ApiResult<(Vec<MemberRecord>, Vec<UserId>)> {
    let in_group: BTreeSet<UserId> = tracked
        .members()
        .map_err(|e| refused(&e))?
        .into_iter()
        .map(|l| l.device.user)
        .collect();
    let join: BTreeSet<UserId> = applied
        .added
        .iter()
        .map(|l| l.device.user)
        .filter(|u| !roles.contains_key(u))
        .collect();
    // The server's removals never make a member leave (a user who left, or
    // whose account went, is a member no more already).
    let leave: BTreeSet<UserId> = applied
        .removed
        .iter()
        .filter(|l| !applied.server_removed.contains(l))
        .map(|l| l.device.user)
        .filter(|u| roles.contains_key(u) && !in_group.contains(u))
        .collect();
    Ok((
        join.into_iter()
            .map(|user| MemberRecord {
                user,
                role: Role::Member,
            })
            .collect(),
        leave.into_iter().collect(),
    ))
}

/// The CPU part of a commit's check (see the module's documentation): from
/// the stored state, or at epoch 0 from the commit's group info.
fn verify(
    state: Option<Vec<u8>>, commit: &[u8], group_info: &[u8], group_id: &[u8], suite: CipherSuite,
    (sender, server): (&DeviceIdentity, &ServerSender), now: u64,
) -> ApiResult<(TrackedGroup, AppliedCommit)> {
    let Some(state) = state else {
        // The creator's first commit: the server follows the group from the
        // group info of epoch 1, which the commit from epoch 0 made.
        if parley_mls::delivery::epoch_of(commit).map_err(|e| refused(&e))? != 0 {
            return Err(stale(0));
        }
        let tracked =
            TrackedGroup::start(group_info, group_id, suite, now).map_err(|e| refused(&e))?;
        if tracked.external_senders() != [server.clone()] {
            return Err(refused(&DeliveryError::NoServerSender));
        }
        if tracked.epoch() != 1 {
            return Err(ApiError::bad_request(
                "mls-group-info-mismatch",
                "the first commit makes epoch 1: its group info must be of epoch 1",
            ));
        }
        let leaves = tracked.members().map_err(|e| refused(&e))?;
        let committer = leaves
            .iter()
            .find(|l| l.device == *sender)
            .cloned()
            .ok_or_else(|| identity_mismatch("the calling device is not in the group"))?;
        let applied = AppliedCommit {
            epoch: 1,
            committer,
            external: false,
            added: leaves,
            removed: Vec::new(),
            rekeyed: Vec::new(),
            server_removed: Vec::new(),
            lapsed: Vec::new(),
        };
        return Ok((tracked, applied));
    };
    let mut tracked = TrackedGroup::load(&state)
        .map_err(|e| ApiError::internal(format!("a stored group state: {e}")))?;
    let senders = tracked.external_senders();
    let applied = tracked.apply_commit(commit, now).map_err(|e| refused(&e))?;
    // Nobody takes the backend's removals away (or swaps its key).
    if tracked.external_senders() != senders {
        return Err(refused(&DeliveryError::NoServerSender));
    }
    tracked
        .check_group_info(group_info, now)
        .map_err(|e| refused(&e))?;
    Ok((tracked, applied))
}
