//! Receiving, atomically: a batch of events is decrypted, applied to the
//! history and the cursor moved in one transaction, so a crash leaves all of it
//! or none of it, and a message is never shown twice nor lost. Nothing in that
//! transaction touches the network: what needs the server afterwards
//! (conversations to fetch, devices whose signatures to check, prekeys to top
//! up, receipts to post) is recorded in the state and done after the commit,
//! and again at the next sync if it failed.
//!
//! A message that cannot be decrypted changes no session. A duplicate (the same
//! ciphertext posted again after a lost reply) is dropped. Sessions start afresh
//! only on a positive signal: the peer's new prekey message, or the person's
//! reset, which repeated failures suggest to them. A failure alone never resets
//! anything: it is not authenticated, so a server could make it up.

use parley_api::{
    ConnectionStatus, ConversationId, Event, EventPayload, LiveFrame, Protocol, Qualified, UserId,
    Uuid,
};

use super::{Account, ConversationView, Update};

/// People learnt by name for one page's notices at most (a page names a
/// group's members, bounded by its size; a lying server gets no more).
const MAX_NAMES_PER_PAGE: usize = 128;
use crate::ClientError;
use crate::content::{self, Body, Envelope, ReceiptKind};
use crate::device::{ChangedIdentity, Failure, INITIAL_PREKEYS, Incoming, Received};
use crate::store::Tx;

/// Failures in a row after which the person is told how to reset the session.
const FAILURES_TO_TELL: u32 = 3;

impl Account {
    /// Fetches everything new from the server's queue, applies it and commits,
    /// then does what needs the network. Posts the outbox first.
    pub async fn sync(&mut self) -> Result<Vec<Update>, ClientError> {
        self.check_generation().await?;
        self.flush_quietly().await?;
        self.settle_all_pending().await?;
        let mut updates = self.receive_all().await?;
        updates.extend(self.follow_up().await?);
        Ok(updates)
    }

    /// Fetches and applies everything new from the server's queue (no
    /// posting, no follow-up).
    pub(super) async fn receive_all(&mut self) -> Result<Vec<Update>, ClientError> {
        let mut updates = Vec::new();
        loop {
            self.refresh().await?;
            let cursor = self.device.cursor();
            let page = match self.api.notifications(self.device_id(), cursor).await {
                Err(ClientError::Api { label, .. })
                    if label == "notifications-lost" && cursor.is_some() =>
                {
                    updates.extend(self.lost(cursor).await?);
                    continue;
                }
                other => other?,
            };
            updates.extend(self.apply_events(&page.notifications).await?);
            if !page.has_more {
                break;
            }
        }
        Ok(updates)
    }

    /// The events after the cursor were purged: start from what is left, and
    /// say so in every conversation.
    async fn lost(&mut self, cursor: Option<u64>) -> Result<Vec<Update>, ClientError> {
        self.refresh_conversations().await?;
        let tx = self.begin().await?;
        // Another process may have dealt with it already.
        if self.device.cursor() != cursor {
            self.commit(tx).await?;
            return Ok(Vec::new());
        }
        self.device.set_cursor(None);
        self.lost_floor = cursor;
        let ids: Vec<ConversationId> = self.state.conversations.keys().copied().collect();
        for id in ids {
            self.system(
                id,
                "This device was offline too long: messages sent meanwhile may be missing.",
            );
        }
        self.commit(tx).await?;
        Ok(vec![Update::NotificationsLost])
    }

    /// Opens the live socket from this device's cursor, after posting the
    /// outbox and topping up the server's pool of this device's prekeys.
    pub async fn connect(&mut self) -> Result<crate::api::LiveSocket, ClientError> {
        self.check_generation().await?;
        self.flush_quietly().await?;
        self.top_up_prekeys().await?;
        self.refresh().await?;
        self.device.connect(&self.api).await
    }

    /// Handles one frame of the live socket (see [`Account::connect`]).
    pub async fn handle(&mut self, frame: &LiveFrame) -> Result<Vec<Update>, ClientError> {
        let mut updates = match frame {
            LiveFrame::Stored(event) => {
                self.refresh().await?;
                if self
                    .device
                    .cursor()
                    .is_some_and(|c| event.id > c.saturating_add(1))
                {
                    // A gap: an earlier frame was not applied (its change
                    // failed, or it never came). Never skip past it: the
                    // queue is read from the cursor instead.
                    return self.sync().await;
                }
                self.apply_events(std::slice::from_ref(event)).await?
            }
            LiveFrame::Transient(t) => {
                // Decrypting still advances a ratchet: committed, but the
                // cursor stays (transient events are not in the queue).
                let event = Event {
                    id: 0,
                    time: t.time,
                    payload: t.payload.clone(),
                };
                let mut tx = self.begin().await?;
                let mut updates = Vec::new();
                for item in self.incoming(&event) {
                    updates.extend(self.absorb(&mut tx, item).await?);
                }
                self.commit(tx).await?;
                updates
            }
        };
        updates.extend(self.follow_up().await?);
        Ok(updates)
    }

    /// Decrypts and applies events and moves the cursor past them, in one
    /// transaction. Events another process already applied are skipped.
    async fn apply_events(&mut self, events: &[Event]) -> Result<Vec<Update>, ClientError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // The people a notice will name, learnt before the transaction (there
        // is no network call inside it). One that cannot be fetched is named
        // by the start of its id, as before.
        let named: Vec<UserId> = events
            .iter()
            .flat_map(|e| match &e.payload {
                EventPayload::MemberJoin { members, from, .. } => {
                    members.iter().map(|m| m.id.id).chain([*from]).collect()
                }
                EventPayload::MemberLeave { users, from, .. } => {
                    users.iter().map(|u| u.id).chain([*from]).collect()
                }
                _ => Vec::new(),
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .take(MAX_NAMES_PER_PAGE)
            .collect();
        let names = self.fetch_names(named).await;
        let mut tx = self.begin().await?;
        self.state.names.extend(names);
        let mut updates = Vec::new();
        for event in events {
            if self
                .device
                .cursor()
                .or(self.lost_floor)
                .is_some_and(|c| event.id <= c)
            {
                continue;
            }
            for item in self.incoming(event) {
                updates.extend(self.absorb(&mut tx, item).await?);
            }
            self.device.set_cursor(Some(event.id));
        }
        // A device met for the first time changes verification now, before
        // anything is sent back to it.
        self.recompute_all();
        #[cfg(feature = "failpoints")]
        fail::fail_point!("receive-before-commit", |_| std::process::abort());
        self.commit(tx).await?;
        #[cfg(feature = "failpoints")]
        fail::fail_point!("receive-after-commit", |_| std::process::abort());
        Ok(updates)
    }

    /// What an event brings, decrypted by the protocol it is for (inside the
    /// receive transaction).
    fn incoming(&mut self, event: &Event) -> Vec<Incoming> {
        match self.mls_incoming(event) {
            Some(items) => items,
            None => self.device.incoming(event).into_iter().collect(),
        }
    }

    /// What needs the server after a receive: done now, and again next time
    /// for whatever fails (the state says what is still to do).
    pub(super) async fn follow_up(&mut self) -> Result<Vec<Update>, ClientError> {
        let mut updates = Vec::new();
        if self.state.needs_conversations {
            self.refresh_conversations().await?;
        }
        let incomplete: Vec<Qualified<ConversationId>> = self
            .state
            .conversations
            .values()
            .filter(|c| c.incomplete)
            .map(|c| c.id.clone())
            .collect();
        for id in incomplete {
            match self.api.conversation(&id).await {
                Ok(c) => self.absorb_conversations(vec![c]).await?,
                // Not (or no longer) a member: keep the history, stop sending.
                Err(ClientError::Api {
                    status: 403 | 404, ..
                }) => {
                    let tx = self.begin().await?;
                    if let Some(c) = self.state.conversations.get_mut(&id.id) {
                        c.members.clear();
                        c.incomplete = false;
                    }
                    self.commit(tx).await?;
                }
                Err(e) => return Err(e),
            }
            updates.push(Update::Conversation(id));
        }
        let users = self.users_to_refresh();
        if !users.is_empty() {
            self.refresh_devices(&users).await?;
        }
        if self.device.prekeys_held() < usize::from(INITIAL_PREKEYS) {
            self.top_up_prekeys().await?;
        }
        match self.mls_follow_up().await {
            // The server refused a part of MLS's upkeep (a key package made
            // under a clock it disagrees with, a rejoin that lost a race):
            // what is left to do is in the state and tried at the next
            // sync; receiving goes on.
            Err(ClientError::Api { .. }) => {}
            other => other?,
        }
        self.flush_quietly().await?;
        self.purge_expired().await?;
        Ok(updates)
    }

    /// Tops the server's pool of this device's one-time prekeys back up; the
    /// new prekeys are committed before they are uploaded.
    pub async fn top_up_prekeys(&mut self) -> Result<u64, ClientError> {
        let count = self.api.prekey_count(self.device_id()).await?;
        let wanted = u64::from(INITIAL_PREKEYS).saturating_sub(count);
        if wanted == 0 {
            return Ok(0);
        }
        let tx = self.begin().await?;
        let uploads = self.device.new_prekeys(wanted);
        self.commit(tx).await?;
        self.api.upload_prekeys(self.device_id(), uploads).await?;
        Ok(wanted)
    }

    /// Applies one received item (inside the receive transaction).
    async fn absorb(&mut self, tx: &mut Tx, item: Incoming) -> Result<Vec<Update>, ClientError> {
        let mut updates = Vec::new();
        match item {
            Incoming::Message(r) => {
                self.note_device(r.from, r.sender);
                self.ensure_conversation(&r.conversation);
                if let Some(d) = self
                    .state
                    .peers
                    .get_mut(&r.from)
                    .and_then(|p| p.devices.get_mut(&r.sender))
                {
                    d.failures = 0;
                }
                updates.extend(self.absorb_message(tx, &r).await?);
            }
            Incoming::Undecryptable {
                conversation,
                from,
                sender,
                failure,
                reason,
            } => {
                self.note_device(from, sender);
                self.ensure_conversation(&conversation);
                let text = match failure {
                    Failure::Garbage => format!(
                        "A message from device {sender} arrived damaged and could not be read."
                    ),
                    Failure::IdentityChanged(offered) => {
                        if let Some(offered) = offered {
                            self.identities_changed(&[ChangedIdentity {
                                user: from,
                                client: sender,
                                offered,
                            }]);
                        }
                        format!(
                            "A message from device {sender} was refused: it was written with \
                             another identity key than the one this device knows."
                        )
                    }
                    Failure::Session => {
                        let failures = self
                            .state
                            .peers
                            .get_mut(&from)
                            .and_then(|p| p.devices.get_mut(&sender))
                            .map(|d| {
                                d.failures += 1;
                                d.failures
                            })
                            .unwrap_or(1);
                        if failures >= FAILURES_TO_TELL {
                            // Only a person resets: a failure is not authenticated,
                            // so a server could make them up.
                            format!(
                                "Messages from device {sender} failed to decrypt {failures} times \
                                 in a row. If it goes on, reset the session with that device \
                                 (`parley reset`): your next message starts a fresh one."
                            )
                        } else {
                            format!("A message from device {sender} could not be decrypted.")
                        }
                    }
                };
                let id = Uuid::new_v4().to_string();
                let entry = super::Message::entry(
                    id.clone(),
                    (from, sender),
                    self.now_ms() / 1000,
                    super::MessageKind::Undecryptable { reason },
                    text,
                    false,
                );
                self.push(tx, &conversation, entry).await?;
                updates.push(Update::Message { conversation, id });
            }
            Incoming::Event(event) => updates.extend(self.absorb_event(&event.payload)),
        }
        Ok(updates)
    }

    /// A conversation this device does not know yet: kept as incomplete (the
    /// message is stored in it) and fetched after the commit.
    fn ensure_conversation(&mut self, conversation: &Qualified<ConversationId>) {
        self.state
            .conversations
            .entry(conversation.id)
            .or_insert_with(|| {
                let mut c = ConversationView::new(
                    conversation.clone(),
                    parley_api::ConversationKind::Group,
                    "(loading)".into(),
                );
                c.incomplete = true;
                c
            });
    }

    pub(super) fn mark_incomplete(&mut self, conversation: &Qualified<ConversationId>) {
        self.ensure_conversation(conversation);
        if let Some(c) = self.state.conversations.get_mut(&conversation.id) {
            c.incomplete = true;
        }
    }

    /// A stored event other than a message (inside the receive transaction).
    fn absorb_event(&mut self, payload: &EventPayload) -> Vec<Update> {
        let mut updates = Vec::new();
        match payload {
            EventPayload::ConversationCreate { conversation, .. } => {
                // Its name and members are fetched with the next refresh.
                self.mark_incomplete(conversation);
                updates.push(Update::Conversation(conversation.clone()));
            }
            EventPayload::MemberJoin { conversation, .. }
            | EventPayload::MemberLeave { conversation, .. }
            | EventPayload::Rename { conversation, .. }
            | EventPayload::MessageTimerUpdate { conversation, .. }
            | EventPayload::ReceiptModeUpdate { conversation, .. } => {
                if let EventPayload::MemberLeave { users, .. } = payload
                    && users.iter().any(|u| u.id == self.user())
                    && self.has_group(conversation.id)
                {
                    // This user is out: the group's state goes (being added
                    // again brings a welcome, which makes it anew).
                    self.device.mls_forget(conversation.id.as_bytes());
                }
                self.mark_incomplete(conversation);
                let text = match payload {
                    EventPayload::MemberJoin { members, .. } => format!(
                        "{} joined.",
                        members
                            .iter()
                            .map(|m| self.name_of(m.id.id))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    EventPayload::MemberLeave { users, from, .. }
                        if *from != self.user() && users.iter().any(|u| u.id == self.user()) =>
                    {
                        format!("{} removed you.", self.name_of(*from))
                    }
                    EventPayload::MemberLeave { users, .. } => format!(
                        "{} left.",
                        users
                            .iter()
                            .map(|u| if u.id == self.user() {
                                "You".to_owned()
                            } else {
                                self.name_of(u.id)
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    EventPayload::Rename { name, .. } => format!("Renamed to {name}."),
                    EventPayload::MessageTimerUpdate { message_timer, .. } => match message_timer {
                        Some(ms) => format!(
                            "Messages now disappear {} s after they are read.",
                            ms / 1000
                        ),
                        None => "Messages no longer disappear.".into(),
                    },
                    _ => "Read receipts changed.".into(),
                };
                self.system(conversation.id, &text);
                updates.push(Update::Conversation(conversation.clone()));
            }
            EventPayload::ProtocolUpdate {
                conversation,
                from,
                protocol,
            } => {
                self.mark_incomplete(conversation);
                let who = self.name_of(*from);
                let text = match protocol {
                    Protocol::Mixed => format!(
                        "{who} started moving this conversation to MLS: messages go by Proteus \
                         until every device has joined its group."
                    ),
                    Protocol::Mls => "This conversation is MLS now: one ciphertext per message \
                                      for the whole group."
                        .to_owned(),
                    Protocol::Proteus => String::new(),
                };
                if let Some(c) = self.state.conversations.get_mut(&conversation.id) {
                    // Sent from now on by the new protocol.
                    c.protocol = c.protocol.furthest(*protocol);
                }
                if !text.is_empty() {
                    self.system(conversation.id, &text);
                }
                updates.push(Update::Conversation(conversation.clone()));
            }
            EventPayload::Connection { connection } => {
                if let Some(conversation) = &connection.conversation
                    && connection.status == ConnectionStatus::Accepted
                {
                    self.mark_incomplete(conversation);
                    updates.push(Update::Conversation(conversation.clone()));
                }
            }
            EventPayload::ClientAdd { .. } | EventPayload::ClientRemove { .. } => {
                let me = self.user();
                self.peer_mut(me).refresh = true;
            }
            EventPayload::Typing {
                conversation,
                from,
                status,
            } => updates.push(Update::Typing {
                conversation: conversation.clone(),
                from: *from,
                started: *status == parley_api::TypingStatus::Started,
            }),
            _ => {}
        }
        updates
    }

    /// Applies a decrypted message (inside the receive transaction). A text,
    /// knock or asset in a 1:1 gets a delivery receipt, queued in the outbox in
    /// the same transaction.
    async fn absorb_message(
        &mut self, tx: &mut Tx, r: &Received,
    ) -> Result<Option<Update>, ClientError> {
        let conversation = r.conversation.clone();
        let envelope = Envelope::parse(&r.plaintext).and_then(|e| match &e.body {
            Some(Body::External(external)) => content::open_external(
                external,
                r.data.as_deref().ok_or_else(|| {
                    ClientError::Decode("a large message arrived without its shared blob".into())
                })?,
            ),
            _ => Ok(e),
        });
        let envelope = match envelope {
            Ok(e) => e,
            Err(e) => {
                let id = Uuid::new_v4().to_string();
                let entry = super::Message::entry(
                    id.clone(),
                    (r.from, r.sender),
                    r.time.unix_timestamp(),
                    super::MessageKind::Undecryptable {
                        reason: e.to_string(),
                    },
                    "A message arrived that this app cannot read.".into(),
                    false,
                );
                self.push(tx, &conversation, entry).await?;
                return Ok(Some(Update::Message { conversation, id }));
            }
        };
        let mine = r.from == self.user();
        let update = self
            .apply(
                tx,
                &conversation,
                (r.from, r.sender),
                r.time.unix_timestamp(),
                &envelope,
                false,
            )
            .await?;
        let wants_receipt = self.is_one2one(conversation.id)
            && !mine
            && update.is_some()
            && matches!(
                envelope.body,
                Some(Body::Text(_) | Body::Knock(_) | Body::Asset(_))
            );
        if wants_receipt {
            self.enqueue_receipt(
                tx,
                &conversation,
                ReceiptKind::Delivered,
                r.from,
                vec![envelope.message_id.clone()],
            )
            .await?;
        }
        Ok(update)
    }

    /// Users whose device lists are to fetch: devices met in messages, and this
    /// user's own list after a device was added or removed.
    fn users_to_refresh(&self) -> Vec<UserId> {
        let mut users = self.unchecked_users();
        for p in self.state.peers.values() {
            if p.refresh && !users.contains(&p.user) {
                users.push(p.user);
            }
        }
        users
    }
}
