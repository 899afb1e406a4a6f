//! MLS conversations on this device: its signature key registered and its
//! key packages kept topped up, groups created and changed by commits,
//! what the queue delivers processed in order, and repair.
//!
//! **Write-ahead, as everywhere.** A key package's private parts are
//! committed before it is published. A commit is made *pending* in the
//! group's state, committed, then posted, and merged only once the server
//! accepted it (dropped when refused; on `mls-stale-message` the device
//! catches up from its queue and tries again on the new epoch). A device
//! that dies in between finds the pending commit on its next start and
//! settles it against the server's group info: merged if the server's epoch
//! is the one it made, dropped otherwise.
//!
//! **Repair, visible.** A message for an epoch this device cannot follow (it
//! missed commits, or its state was lost) marks the conversation; after the
//! receive commits, the device rejoins by external commit from the server's
//! latest group info, in place of its old leaf, and says in the conversation
//! that messages may be missing. Nobody has to do anything.
//!
//! **The backend's removals.** Every group names the backend's removal key
//! (read from `GET /v1/mls/public-keys`) as its external sender. The
//! backend's proposals to remove a deleted device or a user who left are
//! kept in the group's state and committed at the end of the sync that read
//! them, by whichever member's device gets there first (the others find
//! them committed); any commit of this device takes them in too.
//!
//! The group of a conversation has the conversation's id as its group id
//! (the server's rule), so no mapping is kept.

use parley_api::{Event, EventPayload, MlsPublicKeys, Protocol};
use parley_mls::{Changes, CipherSuite, DeviceIdentity, Member, MemberError, Processed};

use super::*;
use crate::api::MlsPost;
use crate::device::{
    Failure, Incoming, KEY_PACKAGE_LIFETIME, KEY_PACKAGES, KEY_PACKAGES_LOW, Received,
};

/// Where a group's migration from Proteus to MLS stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Migration {
    /// Mixed still: messages go by Proteus until the devices named in
    /// `waiting` (the server's words) have joined.
    Mixed {
        /// What it waits for.
        waiting: String,
    },
    /// MLS.
    Mls,
}

/// Tries of a commit that keeps losing the race to other members' commits.
const COMMIT_ATTEMPTS: usize = 4;

fn group_id(conversation: &Qualified<ConversationId>) -> Vec<u8> {
    conversation.id.as_bytes().to_vec()
}

pub(super) fn unb64(text: &str) -> Result<Vec<u8>, ClientError> {
    b64()
        .decode(text)
        .map_err(|e| ClientError::Decode(format!("not base64: {e}")))
}

pub(super) fn refused(e: &MemberError) -> ClientError {
    ClientError::Refused {
        label: "mls-error",
        message: e.to_string(),
    }
}

pub(super) fn stale(e: &ClientError) -> bool {
    matches!(e, ClientError::Api { label, .. } if label == "mls-stale-message")
}

fn missing_removals(e: &ClientError) -> bool {
    matches!(e, ClientError::Api { label, .. } if label == "mls-commit-missing-references")
}

impl Account {
    /// The suite of an MLS conversation (the backend's default when not
    /// known yet).
    pub(super) fn suite_of(&self, conversation: ConversationId) -> CipherSuite {
        self.state
            .conversations
            .get(&conversation)
            .and_then(|c| c.cipher_suite)
            .map_or(CipherSuite::DEFAULT, CipherSuite)
    }

    /// What a new group on `suite` names as its external sender: the
    /// backend's removal key for the suite's scheme.
    pub(super) async fn server_sender(
        &self, suite: CipherSuite,
    ) -> Result<parley_mls::ServerSender, ClientError> {
        let scheme = suite.signature_scheme().ok_or(ClientError::Refused {
            label: "mls-unsupported-cipher-suite",
            message: format!("cipher suite {suite} is not one this client uses"),
        })?;
        let keys = self.api.removal_keys().await?;
        let key = keys
            .removal
            .get(scheme.name)
            .and_then(|k| b64().decode(k).ok())
            .filter(|k| k.len() == scheme.key_len)
            .ok_or_else(|| {
                ClientError::Decode(format!("the backend has no {} removal key", scheme.name))
            })?;
        Ok(parley_mls::ServerSender {
            domain: self.qualified(self.user()).domain,
            key,
        })
    }

    /// This device as a member on `suite` (taken after `begin`: a reload
    /// replaces the device).
    pub(super) fn member(&self, suite: CipherSuite) -> Result<Member, ClientError> {
        self.device.mls_member(suite).ok_or(ClientError::Refused {
            label: "mls-not-set-up",
            message: format!("this device has no MLS key on cipher suite {suite}"),
        })
    }

    /// The backend's default suite (`[mls] default_suite`), asked once per
    /// process: new groups use it and this device publishes key packages on
    /// it.
    async fn backend_suite(&mut self) -> Result<CipherSuite, ClientError> {
        if let Some(suite) = self.mls_suite {
            return Ok(suite);
        }
        let suite = CipherSuite(self.api.mls_settings().await?.default_cipher_suite);
        if !suite.is_selectable() {
            return Err(ClientError::Refused {
                label: "mls-unsupported-cipher-suite",
                message: format!("the backend's MLS suite {suite} is not one this client knows"),
            });
        }
        self.mls_suite = Some(suite);
        Ok(suite)
    }

    /// Makes this device ready for MLS on the backend's default suite: its
    /// signature key made (and committed) and registered, its key packages
    /// topped up. Done at enrolment, and again until it succeeds.
    pub async fn setup_mls(&mut self) -> Result<(), ClientError> {
        let suite = self.backend_suite().await?;
        let domain = self.domain();
        let tx = self.begin().await?;
        let keys = self.device.mls_suite(&domain, suite)?;
        let (registered, public) = (keys.registered, b64().encode(keys.keys.public_key()));
        self.commit(tx).await?;
        if !registered {
            let scheme = suite
                .signature_scheme()
                .expect("a selectable suite has a signature scheme");
            let keys = MlsPublicKeys {
                mls_public_keys: [(scheme.name.to_owned(), public)].into(),
            };
            self.api
                .put_mls_public_keys(self.device_id(), &keys)
                .await?;
            let tx = self.begin().await?;
            self.device.mls_suite(&domain, suite)?.registered = true;
            self.commit(tx).await?;
        }
        self.top_up_key_packages(suite).await
    }

    /// Keeps [`KEY_PACKAGES`] key packages on the server, topped up below
    /// [`KEY_PACKAGES_LOW`] by the server's count (asked once per process,
    /// and whenever this device holds fewer than that many unused ones), and
    /// one last-resort key package, renewed at half its lifetime, so the
    /// device stays addable. Expired private parts are dropped.
    async fn top_up_key_packages(&mut self, suite: CipherSuite) -> Result<(), ClientError> {
        let domain = self.domain();
        let now = u64::try_from(self.now_ms() / 1000).unwrap_or_default();
        let renew_at = self.device.mls_suite(&domain, suite)?.last_resort_at
            + KEY_PACKAGE_LIFETIME.as_secs() / 2;
        let last_resort_due = now >= renew_at;
        let held = self.device.mls_key_packages_held() as u64;
        if held >= KEY_PACKAGES_LOW && !last_resort_due && self.key_packages_checked {
            return Ok(());
        }
        let count = self
            .api
            .key_package_count(self.device_id(), suite.0)
            .await?;
        self.key_packages_checked = true;
        let wanted = if count < KEY_PACKAGES_LOW {
            KEY_PACKAGES - count
        } else {
            0
        };
        let tx = self.begin().await?;
        self.device.mls_drop_expired(now);
        if wanted == 0 && !last_resort_due {
            return self.commit(tx).await;
        }
        let member = self.member(suite)?;
        let mut packages = member
            .key_packages(usize::try_from(wanted).unwrap_or_default(), now)
            .map_err(|e| refused(&e))?;
        if last_resort_due {
            packages.push(
                member
                    .last_resort_key_package(now)
                    .map_err(|e| refused(&e))?,
            );
        }
        // The private parts are on disk before the server hands anything out.
        self.commit(tx).await?;
        let packages = packages.iter().map(|p| b64().encode(p)).collect();
        self.api
            .upload_key_packages(self.device_id(), packages)
            .await?;
        if last_resort_due {
            let tx = self.begin().await?;
            self.device.mls_suite(&domain, suite)?.last_resort_at = now;
            self.commit(tx).await?;
        }
        Ok(())
    }

    /// Creates an MLS group with these members (every device of each, and
    /// this user's other devices): the conversation, then the group, then
    /// the first commit.
    pub async fn create_mls_group(
        &mut self, name: &str, users: Vec<Qualified<UserId>>, receipts: bool,
    ) -> Result<Qualified<ConversationId>, ClientError> {
        self.setup_mls().await?;
        let suite = self.backend_suite().await?;
        let server = self.server_sender(suite).await?;
        let c = self
            .api
            .create_conversation(&NewConversation {
                name: name.to_owned(),
                users: Vec::new(),
                message_timer: None,
                receipt_mode: u8::from(receipts),
                protocol: Protocol::Mls,
                cipher_suite: Some(suite.0),
            })
            .await?;
        let id = c.id.clone();
        #[cfg(feature = "failpoints")]
        fail::fail_point!("mls-create-after-server", |_| std::process::abort());
        let tx = self.begin().await?;
        self.member(suite)?
            .create(&group_id(&id), &server)
            .map_err(|e| refused(&e))?;
        // Its members are read back after the first commit adds them (until
        // then it is this user alone, which must not read as verified).
        let mut view = ConversationView::new(id.clone(), c.kind, name.to_owned());
        view.protocol = Protocol::Mls;
        view.cipher_suite = Some(suite.0);
        view.epoch = Some(0);
        view.incomplete = true;
        self.state.conversations.insert(id.id, view);
        self.commit(tx).await?;
        let mut add = vec![self.qualified(self.user())];
        add.extend(users);
        self.mls_change(&id, &add, &[]).await?;
        Ok(id)
    }

    /// Takes a Proteus group to MLS, as far as it can go now (an admin's
    /// step; see the server's rule): the conversation becomes `mixed`, this
    /// device makes its group with every member's devices that can join
    /// (those with key packages), and it becomes `mls` once every device is
    /// in (or the backend's deadline passed). The others join by themselves
    /// at their next sync, and the commit that brings the last one in ends
    /// the migration; until then messages go by Proteus, and calling this
    /// again tries to end it. Says where the conversation stands.
    pub async fn migrate(
        &mut self, conversation: &Qualified<ConversationId>,
    ) -> Result<Migration, ClientError> {
        // A first commit whose answer never came (the process died after
        // posting it) is settled before anything is decided from the epoch.
        self.settle_pending(conversation).await?;
        let mut c = self.api.conversation(conversation).await?;
        if c.protocol == Protocol::Proteus {
            self.api.set_protocol(conversation, Protocol::Mixed).await?;
            c = self.api.conversation(conversation).await?;
        }
        let epoch = c.epoch;
        let protocol = c.protocol;
        let members: Vec<Qualified<UserId>> = c.members.iter().map(|m| m.id.clone()).collect();
        self.absorb_conversations(vec![c]).await?;
        if protocol == Protocol::Mixed {
            self.setup_mls().await?;
            let group = group_id(conversation);
            if epoch == Some(0) {
                // The group's first commit (again, if an earlier try made
                // the group here but never got its commit taken).
                let suite = self.suite_of(conversation.id);
                if !self.device.mls_in_group(&group) {
                    let server = self.server_sender(suite).await?;
                    let tx = self.begin().await?;
                    self.member(suite)?
                        .create(&group, &server)
                        .map_err(|e| refused(&e))?;
                    self.commit(tx).await?;
                }
                // This user first (its other devices), then the others.
                let me = self.qualified(self.user());
                let mut add = vec![me.clone()];
                add.extend(members.into_iter().filter(|u| *u != me));
                self.mls_change(conversation, &add, &[]).await?;
            } else if !self.device.mls_in_group(&group) {
                self.rejoin(conversation).await?;
            }
            match self.api.set_protocol(conversation, Protocol::Mls).await {
                Ok(()) => {}
                Err(ClientError::Api { label, message, .. })
                    if label == "mls-migration-criteria-not-satisfied" =>
                {
                    return Ok(Migration::Mixed { waiting: message });
                }
                Err(e) => return Err(e),
            }
        }
        let c = self.api.conversation(conversation).await?;
        let protocol = c.protocol;
        self.absorb_conversations(vec![c]).await?;
        Ok(match protocol {
            Protocol::Mls => Migration::Mls,
            _ => Migration::Mixed {
                waiting: "the conversation is not MLS yet".into(),
            },
        })
    }

    /// New keys for this device's leaf (post-compromise security): the
    /// group's new epoch.
    pub async fn mls_update(
        &mut self, conversation: &Qualified<ConversationId>,
    ) -> Result<u64, ClientError> {
        self.mls_commit(conversation, &[], &[], false).await
    }

    /// Adds users (every device of each) to an MLS group, or removes them.
    pub(super) async fn mls_change(
        &mut self, conversation: &Qualified<ConversationId>, add: &[Qualified<UserId>],
        remove: &[UserId],
    ) -> Result<(), ClientError> {
        self.mls_commit(conversation, add, remove, false).await?;
        let c = self.api.conversation(conversation).await?;
        self.absorb_conversations(vec![c]).await
    }

    /// One commit, write-ahead (see the module's documentation); retried on
    /// a new epoch when another member's commit won, or when the server
    /// proposed a removal this device had not read yet. With
    /// `proposals_only`, a commit of the backend's kept proposals, made only
    /// while some are due (another member's commit may have taken them).
    async fn mls_commit(
        &mut self, conversation: &Qualified<ConversationId>, add: &[Qualified<UserId>],
        remove: &[UserId], proposals_only: bool,
    ) -> Result<u64, ClientError> {
        let suite = self.suite_of(conversation.id);
        let group = group_id(conversation);
        self.settle_pending(conversation).await?;
        for _ in 0..COMMIT_ATTEMPTS {
            if proposals_only && !self.member(suite)?.proposals_due(&group) {
                return Ok(self.member(suite)?.epoch(&group).unwrap_or_default());
            }
            let mut changes = Changes::default();
            for user in add {
                let skip = (user.id == self.user()).then_some(self.device_id());
                let claimed = self.api.claim_key_packages(user, suite.0, skip).await?;
                for p in claimed.key_packages {
                    let bytes = unb64(&p.key_package)?;
                    // The server hands out key packages: one that names
                    // another device than the one claimed for this user is
                    // never committed (it would add a reader of its choosing).
                    let names = parley_mls::KeyPackageIn(bytes.clone()).device();
                    let claimed_for = parley_mls::DeviceIdentity {
                        user: user.id,
                        client: p.client,
                        domain: user.domain.clone(),
                    };
                    if names.as_ref() != Some(&claimed_for) || p.user != user.id {
                        return Err(ClientError::Refused {
                            label: "mls-identity-mismatch",
                            message: format!(
                                "the server handed out a key package for {} that names another \
                                 device: nothing was changed",
                                user.id
                            ),
                        });
                    }
                    changes.add.push(bytes);
                }
            }
            let tx = self.begin().await?;
            let member = self.member(suite)?;
            for user in remove {
                changes.remove.extend(
                    member
                        .members(&group)
                        .map_err(|e| refused(&e))?
                        .into_iter()
                        .filter(|d| d.user == *user),
                );
            }
            let bundle = member.commit(&group, &changes).map_err(|e| refused(&e))?;
            self.commit(tx).await?;
            #[cfg(feature = "failpoints")]
            fail::fail_point!("mls-commit-before-post", |_| std::process::abort());
            let answer = self
                .api
                .post_mls(self.device_id(), MlsPost::CommitBundle, bundle)
                .await;
            #[cfg(feature = "failpoints")]
            fail::fail_point!("mls-commit-after-post", |_| std::process::abort());
            match answer {
                Ok(_) => {
                    let tx = self.begin().await?;
                    let epoch = self
                        .member(suite)?
                        .confirm(&group)
                        .map_err(|e| refused(&e))?;
                    self.set_epoch(conversation.id, epoch);
                    self.commit(tx).await?;
                    return Ok(epoch);
                }
                // Unknown whether it arrived: it stays pending, settled by
                // the next operation or sync.
                Err(e) if e.is_away() => return Err(e),
                Err(e) => {
                    let tx = self.begin().await?;
                    self.member(suite)?
                        .cancel(&group)
                        .map_err(|err| refused(&err))?;
                    self.commit(tx).await?;
                    if !stale(&e) && !missing_removals(&e) {
                        return Err(e);
                    }
                    // Another commit won, or the server proposed a removal
                    // since: follow it, then try again.
                    self.sync().await?;
                }
            }
        }
        Err(ClientError::Unsettled)
    }

    fn set_epoch(&mut self, conversation: ConversationId, epoch: u64) {
        if let Some(c) = self.state.conversations.get_mut(&conversation) {
            c.epoch = Some(epoch);
        }
    }

    /// A commit of this device still pending (it died, or lost the reply,
    /// between posting and merging): settled against the server's group
    /// info, and the conversation read again when it was merged. No longer
    /// a member (403, 404): the commit and the group are dropped.
    pub(super) async fn settle_pending(
        &mut self, conversation: &Qualified<ConversationId>,
    ) -> Result<(), ClientError> {
        let suite = self.suite_of(conversation.id);
        let group = group_id(conversation);
        let pending = self
            .device
            .mls_member(suite)
            .is_some_and(|m| m.has_pending(&group));
        if !pending {
            return Ok(());
        }
        let info = match self.api.group_info(conversation).await {
            Ok(info) => Some(info),
            Err(ClientError::Api {
                status: 403 | 404, ..
            }) => None,
            Err(e) => return Err(e),
        };
        let tx = self.begin().await?;
        let member = self.member(suite)?;
        let mut merged = false;
        if member.has_pending(&group) {
            match &info {
                Some(info) => {
                    merged = member.settle(&group, info).map_err(|e| refused(&e))?;
                    if let Some(epoch) = member.epoch(&group) {
                        self.set_epoch(conversation.id, epoch);
                    }
                }
                None => member.state().forget(&group),
            }
        }
        self.commit(tx).await?;
        if merged {
            let c = self.api.conversation(conversation).await?;
            self.absorb_conversations(vec![c]).await?;
        }
        Ok(())
    }

    /// Settles every pending commit (before receiving: what arrives after a
    /// merged commit is of its epoch).
    pub(super) async fn settle_all_pending(&mut self) -> Result<(), ClientError> {
        let mls: Vec<Qualified<ConversationId>> = self
            .state
            .conversations
            .values()
            .filter(|c| c.protocol.has_group())
            .map(|c| c.id.clone())
            .collect();
        for id in mls {
            match self.settle_pending(&id).await {
                Err(e) if e.is_away() => return Err(e),
                // One conversation's trouble does not hold up the others.
                _ => {}
            }
        }
        Ok(())
    }

    /// An MLS event from the queue, processed (inside the receive
    /// transaction): `None` when it is not an MLS event. A message this
    /// device cannot follow marks its conversation for a rejoin.
    pub(super) fn mls_incoming(&mut self, event: &Event) -> Option<Vec<Incoming>> {
        match &event.payload {
            EventPayload::MlsWelcome {
                conversation, data, ..
            } => {
                if self.device.mls_in_group(&group_id(conversation)) {
                    // Already in (it rejoined meanwhile): an older epoch's
                    // welcome changes nothing.
                    return Some(Vec::new());
                }
                let group = group_id(conversation);
                let joined = unb64(data).ok().and_then(|welcome| {
                    self.device.mls_suites().into_iter().find_map(|s| {
                        Some((s, self.device.mls_member(s)?.join(&group, &welcome).ok()?))
                    })
                });
                // Fetched again; one this device could not join is rejoined
                // if the server says it is an MLS conversation of its user.
                self.mark_incomplete(conversation);
                if let Some((suite, epoch)) = joined {
                    let c = self
                        .state
                        .conversations
                        .get_mut(&conversation.id)
                        .expect("marked above");
                    // Mixed or MLS: the conversation read again says which.
                    c.protocol = c.protocol.furthest(Protocol::Mixed);
                    c.cipher_suite = Some(suite.0);
                    c.epoch = Some(epoch);
                    c.rejoin = false;
                }
                Some(Vec::new())
            }
            EventPayload::SubconversationReset {
                conversation,
                group_id,
                ..
            } => {
                self.call_reset(conversation, group_id);
                Some(Vec::new())
            }
            EventPayload::MlsMessageAdd {
                conversation,
                subconversation,
                from,
                client,
                data,
            } => {
                if (*from, *client) == (self.user(), self.device_id()) {
                    return Some(Vec::new());
                }
                if subconversation.is_some() {
                    return Some(self.call_incoming(conversation, data));
                }
                Some(self.mls_message(event, conversation, *from, *client, data))
            }
            _ => None,
        }
    }

    fn mls_message(
        &mut self, event: &Event, conversation: &Qualified<ConversationId>, from: UserId,
        client: ClientId, data: &str,
    ) -> Vec<Incoming> {
        let suite = self.suite_of(conversation.id);
        let group = group_id(conversation);
        let undecryptable = |reason: String| {
            vec![Incoming::Undecryptable {
                conversation: conversation.clone(),
                from,
                sender: client,
                failure: Failure::Session,
                reason,
            }]
        };
        let Ok(bytes) = unb64(data) else {
            return undecryptable("an MLS message that is not base64".into());
        };
        let Some(member) = self.device.mls_member(suite) else {
            return undecryptable(format!("this device has no MLS key on suite {suite}"));
        };
        // Only a conversation known as MLS is rejoined; one that is not (or
        // not known yet) is fetched, and rejoined if the server says so.
        let rejoin = |this: &mut Self| {
            let mls = this.has_group(conversation.id);
            this.mark_incomplete(conversation);
            if mls && let Some(c) = this.state.conversations.get_mut(&conversation.id) {
                c.rejoin = true;
            }
        };
        if !self.device.mls_in_group(&group) {
            // A member the server knows, without the group's state here.
            rejoin(self);
            return Vec::new();
        }
        match member.process(&group, &bytes) {
            Ok(Processed::Application { sender, plaintext }) => vec![Incoming::Message(Received {
                conversation: conversation.clone(),
                // The credential in the group says who wrote it.
                from: sender.user,
                sender: sender.client,
                time: event.time,
                data: None,
                plaintext: plaintext.to_vec(),
            })],
            Ok(Processed::Commit {
                epoch,
                added,
                removed,
                external,
            }) => {
                self.roster_notice(conversation, &added, &removed, external);
                self.mark_incomplete(conversation);
                self.set_epoch(conversation.id, epoch);
                Vec::new()
            }
            Ok(Processed::Removed) => {
                self.mark_incomplete(conversation);
                Vec::new()
            }
            // Read already (a re-post after a lost reply): dropped, as in
            // Proteus.
            Ok(Processed::Proposal) | Err(MemberError::Duplicate) => Vec::new(),
            Err(MemberError::WrongEpoch { .. } | MemberError::UnknownGroup) => {
                rejoin(self);
                Vec::new()
            }
            Err(e) => undecryptable(format!(
                "cannot read an MLS message from device {client}: {e}"
            )),
        }
    }

    /// Says in the conversation who a commit brought in and took out, from
    /// the commit itself (signed in the group, not the server's word): a
    /// device the server slipped in shows. A device that joined by itself
    /// while its user is not a member is called out.
    fn roster_notice(
        &mut self, conversation: &Qualified<ConversationId>, added: &[DeviceIdentity],
        removed: &[DeviceIdentity], external: bool,
    ) {
        let count = |devices: &[DeviceIdentity]| {
            let mut by_user: BTreeMap<UserId, usize> = BTreeMap::new();
            for d in devices {
                *by_user.entry(d.user).or_default() += 1;
            }
            by_user
                .into_iter()
                .map(|(user, n)| {
                    let s = if n == 1 { "" } else { "s" };
                    format!("{} ({n} device{s})", self.name_of(user))
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let members = self
            .state
            .conversations
            .get(&conversation.id)
            .map(|c| c.members.clone())
            .unwrap_or_default();
        let mut notes = Vec::new();
        if external {
            for d in added {
                let name = self.name_of(d.user);
                notes.push(if members.contains(&d.user) {
                    format!("A new device of {name} joined the group.")
                } else {
                    format!(
                        "A device of {name}, who is not a member of this conversation, joined \
                         the group by itself."
                    )
                });
            }
        } else if !added.is_empty() {
            notes.push(format!("Added to the group: {}.", count(added)));
        }
        if !removed.is_empty() {
            notes.push(format!("Removed from the group: {}.", count(removed)));
        }
        for note in notes {
            self.system(conversation.id, &note);
        }
    }

    /// What MLS needs from the server after a receive: pending commits
    /// settled, groups this device lost rejoined, key packages topped up.
    pub(super) async fn mls_follow_up(&mut self) -> Result<(), ClientError> {
        let suite = self.backend_suite().await?;
        let registered = self.device.mls_suite_registered(suite).unwrap_or(false);
        if !registered {
            self.setup_mls().await?;
        }
        let mls: Vec<(Qualified<ConversationId>, bool)> = self
            .state
            .conversations
            .values()
            .filter(|c| c.protocol.has_group())
            .map(|c| (c.id.clone(), c.rejoin))
            .collect();
        for (id, rejoin) in mls {
            let done = match self.settle_pending(&id).await {
                Ok(()) if rejoin => self.rejoin(&id).await,
                Ok(()) if self.proposals_due(&id) => {
                    // (Boxed: a commit that loses a race syncs, which comes
                    // here again, until the proposals are taken.)
                    Box::pin(self.mls_commit(&id, &[], &[], true))
                        .await
                        .map(drop)
                }
                other => other,
            };
            match done {
                Err(e) if e.is_away() => return Err(e),
                // One conversation's trouble does not hold up the others: it
                // is tried again at the next sync.
                _ => {}
            }
        }
        self.calls_follow_up().await?;
        for suite in self.device.mls_suites() {
            self.top_up_key_packages(suite).await?;
        }
        Ok(())
    }

    /// Whether the backend's removal proposals wait in the conversation's
    /// group for this device to commit.
    fn proposals_due(&self, conversation: &Qualified<ConversationId>) -> bool {
        self.device
            .mls_member(self.suite_of(conversation.id))
            .is_some_and(|m| m.proposals_due(&group_id(conversation)))
    }

    /// Rejoins a group by external commit (see the module's documentation).
    pub(super) async fn rejoin(
        &mut self, conversation: &Qualified<ConversationId>,
    ) -> Result<(), ClientError> {
        let suite = self.suite_of(conversation.id);
        let info = match self.api.group_info(conversation).await {
            Ok(info) => info,
            // The conversation was made but its group never was (its
            // creator's device died in between): made now, with this user's
            // devices (only the creator's first commit is taken). A mixed
            // conversation's is made by `migrate`.
            Err(ClientError::Api {
                status: 404, label, ..
            }) if label == "mls-missing-group-info" && self.is_mls(conversation.id) => {
                let server = self.server_sender(suite).await?;
                let tx = self.begin().await?;
                let group = group_id(conversation);
                if !self.device.mls_in_group(&group) {
                    self.member(suite)?
                        .create(&group, &server)
                        .map_err(|e| refused(&e))?;
                }
                if let Some(c) = self.state.conversations.get_mut(&conversation.id) {
                    c.rejoin = false;
                }
                self.commit(tx).await?;
                let me = self.qualified(self.user());
                // (Boxed: a commit that loses a race syncs, which may come here.)
                return Box::pin(self.mls_change(conversation, &[me], &[])).await;
            }
            // No longer a member, or no group: nothing to rejoin.
            Err(ClientError::Api {
                status: 403 | 404, ..
            }) => {
                let tx = self.begin().await?;
                if let Some(c) = self.state.conversations.get_mut(&conversation.id) {
                    c.rejoin = false;
                }
                return self.commit(tx).await;
            }
            Err(e) => return Err(e),
        };
        let tx = self.begin().await?;
        // A device with history here lost its state; one without is new
        // (and so is one joining a group migrating from Proteus).
        let lost = self.device.mls_in_group(&group_id(conversation))
            || self
                .state
                .conversations
                .get(&conversation.id)
                .is_some_and(|c| c.last_activity != 0 && c.protocol == Protocol::Mls);
        let known = self
            .state
            .conversations
            .get(&conversation.id)
            .and_then(|c| c.epoch)
            .unwrap_or(0);
        let bundle = self
            .member(suite)?
            .join_external(&group_id(conversation), known, &info)
            .map_err(|e| refused(&e))?;
        self.commit(tx).await?;
        match self
            .api
            .post_mls(self.device_id(), MlsPost::CommitBundle, bundle)
            .await
        {
            Ok(epoch) => {
                let tx = self.begin().await?;
                if let Some(c) = self.state.conversations.get_mut(&conversation.id) {
                    c.rejoin = false;
                    c.epoch = Some(epoch);
                }
                self.system(
                    conversation.id,
                    if lost {
                        "This device lost track of the group's keys and rejoined it: messages \
                         sent meanwhile may be missing."
                    } else {
                        "This device joined the group: messages sent before it came are not \
                         readable on it."
                    },
                );
                self.commit(tx).await
            }
            // The group moved on meanwhile: the next sync tries again.
            Err(e) if stale(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Encrypts content for an MLS group (inside the sending transaction):
    /// the message to post, base64.
    pub(super) fn mls_encrypt(
        &mut self, conversation: &Qualified<ConversationId>, plaintext: &[u8],
    ) -> Result<String, ClientError> {
        let suite = self.suite_of(conversation.id);
        let bytes = self
            .member(suite)?
            .encrypt(&group_id(conversation), plaintext)
            .map_err(|e| refused(&e))?;
        Ok(b64().encode(bytes))
    }

    /// Whether a conversation has an MLS group (mixed or MLS).
    pub(super) fn has_group(&self, conversation: ConversationId) -> bool {
        self.state
            .conversations
            .get(&conversation)
            .is_some_and(|c| c.protocol.has_group())
    }

    /// Whether a conversation is an MLS one (its messages go by MLS).
    pub(super) fn is_mls(&self, conversation: ConversationId) -> bool {
        self.state
            .conversations
            .get(&conversation)
            .is_some_and(|c| c.protocol == Protocol::Mls)
    }
}
