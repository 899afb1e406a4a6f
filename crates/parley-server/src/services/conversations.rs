//! Group conversations: creation, members and roles, name, self-deleting timer and
//! receipt mode, leaving, and typing indicators.
//!
//! Only users connected with the adder may be put into a group. Events name the
//! conversation rather than carry it: a client fetches what it needs, so a group
//! of hundreds does not copy its member list into thousands of queues.
//!
//! Admins change a group; anyone may leave. Every change is stored with its
//! `conversation.*` event for each device of every member (a removed member
//! included) in one transaction. Typing goes only to open sockets and is never
//! stored. A user who is not a member is refused with 403 whatever they ask.

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use parley_api::{
    AddMembers, Conversation, ConversationId, ConversationKind, ConversationPage, EventPayload,
    Member, NewConversation, OffsetDateTime, Protocol, Qualified, Role, TypingStatus, UserId,
    limits,
};
use parley_store::{
    ConversationChange, ConversationRecord, ConversationStore, GroupKey, MemberRecord,
    MlsGroupRecord, StoreError,
};

use super::Core;
use super::connections::Connections;
use super::groups::Groups;
use super::notifications::payload;
use crate::error::{ApiError, ApiResult};
use crate::wakeups::Live;

/// The longest self-deleting timer: a year, in milliseconds.
const MAX_TIMER_MS: u64 = 366 * 24 * 3600 * 1000;

/// Conversations and their members.
#[derive(Clone, Debug)]
pub struct Conversations {
    core: Core,
    store: Arc<dyn ConversationStore>,
    connections: Connections,
    groups: Groups,
}

/// A conversation with its members, as read for a check.
#[derive(Debug)]
pub struct Loaded {
    /// Settings.
    pub record: ConversationRecord,
    /// Members.
    pub members: Vec<MemberRecord>,
    /// Its MLS group, for an MLS or mixed conversation.
    pub group: Option<MlsGroupRecord>,
}

impl Loaded {
    /// The caller's role, or 403 if they are not a member.
    pub fn role_of(&self, user: UserId) -> ApiResult<Role> {
        self.members
            .iter()
            .find(|m| m.user == user)
            .map(|m| m.role)
            .ok_or_else(not_a_member)
    }

    /// Proteus, mixed or MLS.
    pub fn protocol(&self) -> Protocol {
        match &self.group {
            None => Protocol::Proteus,
            Some(g) if g.mixed => Protocol::Mixed,
            Some(_) => Protocol::Mls,
        }
    }

    /// Refuses a change the Proteus way to an MLS conversation, whose
    /// members change only by commits (a mixed one's change the Proteus way).
    pub fn require_proteus(&self) -> ApiResult<()> {
        if self.protocol() == Protocol::Mls {
            return Err(commit_required());
        }
        Ok(())
    }

    /// Refuses anyone but an admin (a non-member as a non-member).
    pub fn require_admin(&self, user: UserId) -> ApiResult<()> {
        if self.role_of(user)? != Role::Admin {
            return Err(ApiError::forbidden(
                "action-denied",
                "only an admin of this conversation may do this",
            ));
        }
        Ok(())
    }
}

/// A new group's record, as `me` asked for it.
fn new_group(me: UserId, name: String, req: &NewConversation, now: i64) -> ConversationRecord {
    ConversationRecord {
        id: ConversationId::random(),
        kind: ConversationKind::Group,
        name: Some(name),
        creator: me,
        message_timer: req.message_timer,
        receipt_mode: req.receipt_mode,
        created_at: now,
    }
}

fn commit_required() -> ApiError {
    ApiError::conflict(
        "mls-commit-required",
        "this is an MLS conversation: its members change by commit \
         (POST /v1/mls/commit-bundles) and its messages go through POST /v1/mls/messages",
    )
}

fn not_a_member() -> ApiError {
    ApiError::forbidden("access-denied", "you are not a member of this conversation")
}

fn check_name(name: &str) -> ApiResult<String> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > limits::MAX_CONVERSATION_NAME {
        return Err(ApiError::bad_request(
            "invalid-name",
            format!(
                "a conversation name is 1 to {} characters",
                limits::MAX_CONVERSATION_NAME
            ),
        ));
    }
    Ok(name.to_owned())
}

fn check_timer(ms: Option<u64>) -> ApiResult<()> {
    if ms.is_some_and(|ms| !(1000..=MAX_TIMER_MS).contains(&ms)) {
        return Err(ApiError::bad_request(
            "invalid-timer",
            "the self-deleting timer is 1 second to 366 days, in milliseconds",
        ));
    }
    Ok(())
}

fn check_receipt_mode(mode: u8) -> ApiResult<()> {
    if mode > 1 {
        return Err(ApiError::bad_request(
            "invalid-receipt-mode",
            "receipt_mode is 0 (off) or 1 (on)",
        ));
    }
    Ok(())
}

impl Conversations {
    /// The service.
    pub fn new(
        core: Core, store: Arc<dyn ConversationStore>, connections: Connections, groups: Groups,
    ) -> Self {
        Self {
            core,
            store,
            connections,
            groups,
        }
    }

    /// A conversation's settings; 404 if there is none.
    pub async fn record(&self, domain: &str, id: ConversationId) -> ApiResult<ConversationRecord> {
        self.core.local(domain)?;
        self.store
            .conversation(id)
            .await?
            .ok_or_else(|| ApiError::not_found("no-conversation", "no such conversation"))
    }

    /// A conversation and its members; 404 if there is none.
    pub async fn load(&self, domain: &str, id: ConversationId) -> ApiResult<Loaded> {
        let record = self.record(domain, id).await?;
        let members = self.store.members(id).await?;
        let group = self.groups.group(&GroupKey::of(id)).await?;
        Ok(Loaded {
            record,
            members,
            group,
        })
    }

    /// A 1:1 conversation and its members; `None` when the conversation is
    /// a group or is not there (a store failure is an error).
    pub async fn load_one2one(
        &self, domain: &str, id: ConversationId,
    ) -> ApiResult<Option<Loaded>> {
        self.core.local(domain)?;
        let Some(record) = self.store.conversation(id).await? else {
            return Ok(None);
        };
        if record.kind != ConversationKind::One2one {
            return Ok(None);
        }
        let members = self.store.members(id).await?;
        let group = self.groups.group(&GroupKey::of(id)).await?;
        Ok(Some(Loaded {
            record,
            members,
            group,
        }))
    }

    /// Refuses a Proteus message to an MLS conversation (a non-member as a
    /// non-member, so that what the conversation is does not show); a mixed
    /// one's messages are Proteus still.
    pub async fn require_proteus(&self, me: UserId, id: ConversationId) -> ApiResult<()> {
        if self
            .groups
            .group(&GroupKey::of(id))
            .await?
            .is_some_and(|g| !g.mixed)
        {
            let members = self.store.members(id).await?;
            if members.iter().all(|m| m.user != me) {
                return Err(not_a_member());
            }
            return Err(commit_required());
        }
        Ok(())
    }

    fn to_api(&self, c: Loaded) -> Conversation {
        let protocol = c.protocol();
        Conversation {
            id: self.core.qualified(c.record.id),
            kind: c.record.kind,
            name: c.record.name,
            creator: c.record.creator,
            members: c
                .members
                .into_iter()
                .map(|m| Member {
                    id: self.core.qualified(m.user),
                    role: m.role,
                })
                .collect(),
            message_timer: c.record.message_timer,
            receipt_mode: c.record.receipt_mode,
            protocol,
            group_id: c.group.as_ref().map(|g| B64.encode(&g.group_id)),
            epoch: c.group.as_ref().map(|g| g.epoch),
            epoch_timestamp: c
                .group
                .as_ref()
                .and_then(|g| OffsetDateTime::from_unix_timestamp(g.epoch_at).ok()),
            cipher_suite: c.group.as_ref().map(|g| g.suite),
        }
    }

    /// Local users to add: existing, not the caller, and connected with the
    /// caller (a stranger cannot be put into a group, and a block ends it).
    async fn resolve_users(
        &self, me: UserId, users: &[Qualified<UserId>],
    ) -> ApiResult<BTreeSet<UserId>> {
        let mut out = BTreeSet::new();
        for u in users {
            self.core.local(&u.domain)?;
            if u.id == me || !out.insert(u.id) {
                continue;
            }
            // Connections go when an account goes, so this also refuses
            // users who do not exist, without telling them apart. (Read
            // before the change commits: a block landing in between takes
            // effect from the next change.)
            if !self.connections.may_add(me, u.id).await? {
                return Err(ApiError::forbidden(
                    "not-connected",
                    format!("{} cannot be added: you are not connected with them", u.id),
                ));
            }
        }
        Ok(out)
    }

    /// Creates a group with the caller as admin.
    pub async fn create(&self, me: UserId, req: &NewConversation) -> ApiResult<Conversation> {
        let name = check_name(&req.name)?;
        check_timer(req.message_timer)?;
        check_receipt_mode(req.receipt_mode)?;
        let max = self.core.settings.max_conversation_members;
        if req.users.len() >= max {
            return Err(too_many_members(max));
        }
        match req.protocol {
            Protocol::Mls => return self.create_mls(me, name, req).await,
            Protocol::Mixed => {
                return Err(ApiError::bad_request(
                    "bad-request",
                    "a conversation starts as proteus or mls: mixed is a step of a group's \
                     migration (PUT …/protocol)",
                ));
            }
            Protocol::Proteus => {}
        }
        if req.cipher_suite.is_some() {
            return Err(ApiError::bad_request(
                "bad-request",
                "a cipher suite is for MLS conversations (protocol: mls)",
            ));
        }
        let others = self.resolve_users(me, &req.users).await?;
        let record = new_group(me, name, req, self.core.clock.now());
        let mut members = vec![MemberRecord {
            user: me,
            role: Role::Admin,
        }];
        members.extend(others.iter().map(|user| MemberRecord {
            user: *user,
            role: Role::Member,
        }));
        members.sort_by_key(|m| m.user);
        let conversation = self.to_api(Loaded {
            record: record.clone(),
            members: members.clone(),
            group: None,
        });
        let event = payload(&EventPayload::ConversationCreate {
            conversation: conversation.id.clone(),
            from: me,
        });
        self.store
            .create_conversation(&record, &members, self.core.notify(&event))
            .await
            .map_err(|e| match e {
                StoreError::NotFound => ApiError::not_found("not-found", "a user is gone"),
                other => other.into(),
            })?;
        let users: Vec<UserId> = members.iter().map(|m| m.user).collect();
        self.core.announce_users(&users);
        tracing::info!(members = members.len(), "conversation created");
        Ok(conversation)
    }

    /// Creates an MLS conversation: the caller alone, as admin, with a group
    /// at epoch 0 on the requested suite (the backend's default if none);
    /// the caller's first commit adds the others.
    async fn create_mls(
        &self, me: UserId, name: String, req: &NewConversation,
    ) -> ApiResult<Conversation> {
        if !req.users.is_empty() {
            return Err(ApiError::bad_request(
                "mls-members-by-commit",
                "an MLS conversation starts with its creator alone: add the others with \
                 the first commit",
            ));
        }
        let settings = &self.core.settings;
        let suite = match req.cipher_suite {
            None => settings.mls_default_suite,
            Some(n) => parley_mls::CipherSuite(n),
        };
        if !settings.mls_allowed_suites.contains(&suite) {
            return Err(ApiError::bad_request(
                "mls-unsupported-cipher-suite",
                format!("cipher suite {suite} is not allowed on this backend"),
            ));
        }
        let now = self.core.clock.now();
        let record = new_group(me, name, req, now);
        let creator = MemberRecord {
            user: me,
            role: Role::Admin,
        };
        let group = MlsGroupRecord {
            conversation: record.id,
            subconversation: None,
            generation: 0,
            // The conversation's id names its group: unique, and a commit's
            // group id leads straight to its conversation.
            group_id: record.id.0.as_bytes().to_vec(),
            suite: suite.0,
            epoch: 0,
            epoch_at: now,
            mixed: false,
        };
        let conversation = self.to_api(Loaded {
            record: record.clone(),
            members: vec![creator],
            group: Some(group.clone()),
        });
        let event = payload(&EventPayload::ConversationCreate {
            conversation: conversation.id.clone(),
            from: me,
        });
        self.groups
            .create(&record, creator, &group, self.core.notify(&event))
            .await?;
        self.core.announce_users(&[me]);
        tracing::info!(suite = suite.0, "MLS conversation created");
        Ok(conversation)
    }

    /// One conversation the caller is a member of.
    pub async fn get(
        &self, me: UserId, domain: &str, id: ConversationId,
    ) -> ApiResult<Conversation> {
        let c = self.load(domain, id).await?;
        c.role_of(me)?;
        Ok(self.to_api(c))
    }

    /// The caller's conversations in id order, after `start`.
    pub async fn list(
        &self, me: UserId, start: Option<ConversationId>, size: Option<usize>,
    ) -> ApiResult<ConversationPage> {
        let size = size.unwrap_or(100);
        if size == 0 || size > limits::MAX_CONVERSATION_PAGE {
            return Err(ApiError::bad_request(
                "bad-request",
                format!("size is 1 to {}", limits::MAX_CONVERSATION_PAGE),
            ));
        }
        let mut records = self.store.conversations_of(me, start, size + 1).await?;
        let has_more = records.len() > size;
        records.truncate(size);
        let mut conversations = Vec::with_capacity(records.len());
        for record in records {
            let members = self.store.members(record.id).await?;
            let group = self.groups.group(&GroupKey::of(record.id)).await?;
            conversations.push(self.to_api(Loaded {
                record,
                members,
                group,
            }));
        }
        Ok(ConversationPage {
            conversations,
            has_more,
        })
    }

    /// Applies a change an admin of a group may make, with its event.
    async fn admin_change(
        &self, me: UserId, c: &Loaded, change: ConversationChange, event: EventPayload,
    ) -> ApiResult<()> {
        c.require_admin(me)?;
        self.group_change(c, change, event).await
    }

    async fn group_change(
        &self, c: &Loaded, change: ConversationChange, event: EventPayload,
    ) -> ApiResult<()> {
        if c.record.kind != ConversationKind::Group {
            return Err(one2one_is_fixed());
        }
        let event = payload(&event);
        let max = self.core.settings.max_conversation_members;
        self.store
            .change_conversation(c.record.id, &change, self.core.notify(&event))
            .await
            .map_err(|e| match e {
                StoreError::Limit(_) => too_many_members(max),
                StoreError::NotFound => ApiError::not_found("not-found", "not a member, or gone"),
                other => other.into(),
            })?;
        let mut told: Vec<UserId> = c.members.iter().map(|m| m.user).collect();
        if let ConversationChange::AddMembers { members, .. } = &change {
            told.extend(members.iter().map(|m| m.user));
        }
        self.core.announce_users(&told);
        Ok(())
    }

    /// Adds members (admins only).
    pub async fn add_members(
        &self, me: UserId, domain: &str, id: ConversationId, req: &AddMembers,
    ) -> ApiResult<()> {
        let c = self.load(domain, id).await?;
        // Membership and role first: nothing about the conversation or the
        // users named may show to someone not allowed to add.
        c.require_admin(me)?;
        c.require_proteus()?;
        if c.record.kind != ConversationKind::Group {
            return Err(one2one_is_fixed());
        }
        let max = self.core.settings.max_conversation_members;
        if req.users.len() > limits::MAX_MEMBERS_PER_ADD {
            // Each new member is named in the event every member's devices
            // get: the number per request bounds what one request writes.
            return Err(ApiError::bad_request(
                "too-many-users",
                format!(
                    "add at most {} users per request",
                    limits::MAX_MEMBERS_PER_ADD
                ),
            ));
        }
        let mut users = self.resolve_users(me, &req.users).await?;
        users.retain(|u| c.members.iter().all(|m| m.user != *u));
        if users.is_empty() {
            return Ok(());
        }
        let role = req.role.unwrap_or(Role::Member);
        let members: Vec<MemberRecord> = users
            .iter()
            .map(|user| MemberRecord { user: *user, role })
            .collect();
        let event = EventPayload::MemberJoin {
            conversation: self.core.qualified(id),
            from: me,
            members: members
                .iter()
                .map(|m| Member {
                    id: self.core.qualified(m.user),
                    role: m.role,
                })
                .collect(),
        };
        let change = ConversationChange::AddMembers { members, max };
        self.admin_change(me, &c, change, event).await
    }

    /// The user's MLS conversations (every page of them).
    pub async fn mls_of(&self, user: UserId) -> ApiResult<Vec<ConversationId>> {
        let mut found = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.conversations_of(user, after, 500).await?;
            let Some(last) = page.last() else {
                return Ok(found);
            };
            after = Some(last.id);
            for record in &page {
                if self.groups.group(&GroupKey::of(record.id)).await?.is_some() {
                    found.push(record.id);
                }
            }
        }
    }

    /// Removes a member: an admin removing anyone, or anyone leaving. In an
    /// MLS conversation members change by commit, but leaving is the
    /// server's to follow up (and in a mixed one, any removal): `Ok(true)`
    /// says the caller (the MLS service) must now propose the removal of the
    /// user's devices.
    pub async fn remove_member(
        &self, me: UserId, domain: &str, id: ConversationId, who: &Qualified<UserId>,
    ) -> ApiResult<bool> {
        let c = self.load(domain, id).await?;
        self.core.local(&who.domain)?;
        c.role_of(me)?;
        let mls = c.group.is_some();
        if mls && who.id != me {
            c.require_proteus()?;
        }
        let event = EventPayload::MemberLeave {
            conversation: self.core.qualified(id),
            from: me,
            users: vec![who.clone()],
        };
        let change = ConversationChange::RemoveMember(who.id);
        if who.id == me {
            self.group_change(&c, change, event).await?;
            Ok(mls)
        } else {
            self.admin_change(me, &c, change, event).await?;
            Ok(mls)
        }
    }

    /// Changes a member's role (admins only).
    pub async fn set_role(
        &self, me: UserId, domain: &str, id: ConversationId, who: &Qualified<UserId>, role: Role,
    ) -> ApiResult<()> {
        let c = self.load(domain, id).await?;
        self.core.local(&who.domain)?;
        let event = EventPayload::MemberUpdate {
            conversation: self.core.qualified(id),
            from: me,
            member: Member {
                id: who.clone(),
                role,
            },
        };
        let change = ConversationChange::SetRole(MemberRecord { user: who.id, role });
        self.admin_change(me, &c, change, event).await
    }

    /// Renames a group (admins only).
    pub async fn rename(
        &self, me: UserId, domain: &str, id: ConversationId, name: &str,
    ) -> ApiResult<()> {
        let name = check_name(name)?;
        let c = self.load(domain, id).await?;
        let event = EventPayload::Rename {
            conversation: self.core.qualified(id),
            from: me,
            name: name.clone(),
        };
        self.admin_change(me, &c, ConversationChange::Rename(name), event)
            .await
    }

    /// Sets the conversation-wide self-deleting timer (admins only).
    pub async fn set_message_timer(
        &self, me: UserId, domain: &str, id: ConversationId, ms: Option<u64>,
    ) -> ApiResult<()> {
        check_timer(ms)?;
        let event = |conversation| EventPayload::MessageTimerUpdate {
            conversation,
            from: me,
            message_timer: ms,
        };
        self.set_setting(me, domain, id, ConversationChange::MessageTimer(ms), event)
            .await
    }

    /// Sets the receipt mode (admins only).
    pub async fn set_receipt_mode(
        &self, me: UserId, domain: &str, id: ConversationId, mode: u8,
    ) -> ApiResult<()> {
        check_receipt_mode(mode)?;
        let event = |conversation| EventPayload::ReceiptModeUpdate {
            conversation,
            from: me,
            receipt_mode: mode,
        };
        self.set_setting(me, domain, id, ConversationChange::ReceiptMode(mode), event)
            .await
    }

    /// Applies a setting an admin changes, with the event `event` makes for
    /// the conversation.
    async fn set_setting(
        &self, me: UserId, domain: &str, id: ConversationId, change: ConversationChange,
        event: impl FnOnce(Qualified<ConversationId>) -> EventPayload,
    ) -> ApiResult<()> {
        let c = self.load(domain, id).await?;
        let event = event(self.core.qualified(id));
        self.admin_change(me, &c, change, event).await
    }

    /// Tells the other members' open sockets that the caller started or stopped
    /// typing. Nothing is stored.
    pub async fn typing(
        &self, me: UserId, domain: &str, id: ConversationId, status: TypingStatus,
    ) -> ApiResult<()> {
        let c = self.load(domain, id).await?;
        c.role_of(me)?;
        let frame: Arc<str> = crate::services::notifications::transient_frame(
            &EventPayload::Typing {
                conversation: self.core.qualified(id),
                from: me,
                status,
            },
            self.core.clock.now(),
        )
        .into();
        let blocked = self.connections.blocked_with(me).await?;
        for m in c
            .members
            .iter()
            .filter(|m| m.user != me && !blocked.contains(&m.user))
        {
            self.core.wakeups.publish(
                m.user,
                Live {
                    client: None,
                    id: None,
                    frame: frame.clone(),
                },
            );
        }
        Ok(())
    }
}

fn one2one_is_fixed() -> ApiError {
    ApiError::forbidden("invalid-op", "a 1:1 conversation cannot be changed")
}

fn too_many_members(max: usize) -> ApiError {
    ApiError::forbidden(
        "too-many-members",
        format!("a conversation has at most {max} members"),
    )
}
