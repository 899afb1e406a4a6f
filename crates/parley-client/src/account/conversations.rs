//! Conversations as this device keeps them: finding one by what a person
//! calls it, creating groups, members and settings, and what the list shows.

use super::*;

impl Account {
    /// Re-reads every conversation's members and settings from the server.
    pub async fn refresh_conversations(&mut self) -> Result<(), ClientError> {
        let all = self.api.conversations().await?;
        self.absorb_conversations(all).await?;
        if self.state.needs_conversations {
            let tx = self.begin().await?;
            self.state.needs_conversations = false;
            self.commit(tx).await?;
        }
        Ok(())
    }

    /// Stores conversations as the server describes them.
    pub(super) async fn absorb_conversations(
        &mut self, all: Vec<Conversation>,
    ) -> Result<(), ClientError> {
        let names = self
            .fetch_names(all.iter().flat_map(|c| c.members.iter().map(|m| m.id.id)))
            .await;
        let tx = self.begin().await?;
        self.state.names.extend(names);
        for c in all {
            self.absorb_one(c);
        }
        self.commit(tx).await
    }

    /// One conversation as the server describes it (inside a transaction).
    pub(super) fn absorb_one(&mut self, c: Conversation) {
        let me = self.user();
        let members: Vec<UserId> = c.members.iter().map(|m| m.id.id).collect();
        let name = match (&c.kind, &c.name) {
            (ConversationKind::Group, Some(n)) => n.clone(),
            _ => members
                .iter()
                .find(|u| **u != me)
                .map(|u| self.name_of(*u))
                .unwrap_or_else(|| "(just you)".into()),
        };
        let entry = self
            .state
            .conversations
            .entry(c.id.id)
            .or_insert_with(|| ConversationView::new(c.id.clone(), c.kind, name.clone()));
        entry.kind = c.kind;
        entry.name = name;
        entry.members = members;
        entry.message_timer = c.message_timer;
        entry.receipt_mode = c.receipt_mode;
        entry.incomplete = false;
        // Proteus, mixed, MLS, never back: a server cannot turn a
        // conversation back to Proteus (and fan out to a device list of its
        // choosing).
        entry.protocol = entry.protocol.furthest(c.protocol);
        entry.cipher_suite = c.cipher_suite.or(entry.cipher_suite);
        if entry.epoch.is_none_or(|e| e == 0) {
            entry.epoch = c.epoch;
        }
        // A member whose device is not in the group (a new device of the
        // user, one that lost its state, or one that was away when its
        // group migrated to MLS) joins by external commit: an MLS group
        // always (one never made is made then), a mixed one once an admin
        // made it.
        entry.rejoin |= match c.protocol {
            parley_api::Protocol::Mls => true,
            parley_api::Protocol::Mixed => c.epoch.is_some_and(|e| e > 0),
            parley_api::Protocol::Proteus => false,
        } && entry.members.contains(&me)
            && !self.device.mls_in_group(c.id.id.as_bytes());
        let id = c.id.id;
        self.recompute(id);
    }

    /// Conversations, most recent activity first (local: works offline).
    pub async fn conversations(&mut self) -> Result<Vec<ConversationView>, ClientError> {
        self.purge_expired().await?;
        let mut all: Vec<ConversationView> = self.state.conversations.values().cloned().collect();
        all.sort_by_key(|c| std::cmp::Reverse(c.last_activity));
        Ok(all)
    }

    /// A conversation named by a person: a group by its name, any by the start
    /// of its id (8 characters or more), a 1:1 by the other person's handle
    /// (`carol` or `@carol`, asked of the server) or, when the server is away,
    /// by their name. A name that someone else chose (a group's, a person's
    /// display name) never wins over a handle that says otherwise: when they
    /// disagree, or two conversations share a name, the answer is `ambiguous`
    /// with their ids, never a guess; none is `no-such-conversation`.
    pub async fn find_conversation(
        &mut self, what: &str,
    ) -> Result<Qualified<ConversationId>, ClientError> {
        let handle = what.strip_prefix('@');
        let what_lower = what.to_lowercase();
        let by_name: Vec<Qualified<ConversationId>> = if handle.is_some() {
            Vec::new()
        } else {
            self.state
                .conversations
                .values()
                .filter(|c| {
                    (what_lower.len() >= 8 && c.id.id.to_string().starts_with(&what_lower))
                        || c.name.to_lowercase() == what_lower
                })
                .map(|c| c.id.clone())
                .collect()
        };
        let by_handle = match self.find(handle.unwrap_or(what)).await {
            Ok(user) => self
                .state
                .conversations
                .values()
                .find(|c| c.kind == ConversationKind::One2one && c.members.contains(&user.id))
                .map(|c| c.id.clone()),
            Err(ClientError::Api { status: 404, .. }) => None,
            // Offline: names are all there is (a 1:1 by handle needs the server).
            Err(e) if e.is_away() && !by_name.is_empty() => None,
            Err(e) => return Err(e),
        };
        let mut candidates = by_name;
        if let Some(one2one) = by_handle
            && !candidates.contains(&one2one)
        {
            candidates.push(one2one);
        }
        match candidates.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(ClientError::Refused {
                label: "no-such-conversation",
                message: format!("no conversation called {what:?}: `parley convs` lists them"),
            }),
            several => {
                let ids: Vec<String> = several
                    .iter()
                    .map(|c| c.id.0.simple().to_string()[..8].to_owned())
                    .collect();
                Err(ClientError::Refused {
                    label: "ambiguous",
                    message: format!(
                        "{what:?} names {} conversations ({}): give the start of the id instead",
                        several.len(),
                        ids.join(", ")
                    ),
                })
            }
        }
    }

    /// One conversation.
    pub fn conversation(&self, id: &Qualified<ConversationId>) -> Option<&ConversationView> {
        self.state.conversations.get(&id.id)
    }

    /// Creates a group with these members.
    pub async fn create_group(
        &mut self, name: &str, users: Vec<Qualified<UserId>>, receipts: bool,
    ) -> Result<Qualified<ConversationId>, ClientError> {
        let c = self
            .api
            .create_conversation(&NewConversation {
                name: name.to_owned(),
                users,
                message_timer: None,
                receipt_mode: u8::from(receipts),
                protocol: parley_api::Protocol::Proteus,
                cipher_suite: None,
            })
            .await?;
        let id = c.id.clone();
        self.absorb_conversations(vec![c]).await?;
        Ok(id)
    }

    /// Adds a member to a group.
    pub async fn add_member(
        &mut self, conversation: &Qualified<ConversationId>, user: Qualified<UserId>,
    ) -> Result<(), ClientError> {
        if self.is_mls(conversation.id) {
            return self.mls_change(conversation, &[user], &[]).await;
        }
        self.api.add_members(conversation, vec![user]).await?;
        let c = self.api.conversation(conversation).await?;
        self.absorb_conversations(vec![c]).await
    }

    /// Removes a member from a group.
    pub async fn remove_member(
        &mut self, conversation: &Qualified<ConversationId>, user: &Qualified<UserId>,
    ) -> Result<(), ClientError> {
        if self.is_mls(conversation.id) {
            return self.mls_change(conversation, &[], &[user.id]).await;
        }
        self.api.remove_member(conversation, user).await?;
        let c = self.api.conversation(conversation).await?;
        self.absorb_conversations(vec![c]).await
    }

    /// Leaves a group: its members and this user's other devices are told,
    /// the history stays on this device, and nothing more can be sent to it
    /// (`not-a-member`). A 1:1 cannot be left (`one-to-one`: block the person
    /// instead); a group already left is `not-a-member`.
    pub async fn leave(
        &mut self, conversation: &Qualified<ConversationId>,
    ) -> Result<(), ClientError> {
        self.refresh().await?;
        let me = self.qualified(self.user());
        match self.state.conversations.get(&conversation.id) {
            None => {
                return Err(ClientError::Refused {
                    label: "no-such-conversation",
                    message: "no such conversation on this device: `parley convs` lists them"
                        .into(),
                });
            }
            Some(c) if c.kind == ConversationKind::One2one => {
                return Err(ClientError::Refused {
                    label: "one-to-one",
                    message: "a 1:1 conversation cannot be left: block the person instead \
                              (`parley block <handle>`)"
                        .into(),
                });
            }
            Some(c) if !c.incomplete && !c.members.contains(&me.id) => {
                return Err(super::send::not_a_member());
            }
            Some(_) => {}
        }
        self.api.remove_member(conversation, &me).await?;
        let tx = self.begin().await?;
        if let Some(c) = self.state.conversations.get_mut(&conversation.id) {
            c.members.clear();
            c.incomplete = false;
        }
        // An MLS group's state goes with it (the server proposes this
        // user's removal; the members commit it).
        self.device.mls_forget(conversation.id.as_bytes());
        self.commit(tx).await
    }

    /// Mutes or unmutes a conversation on this device (local: the list shows
    /// it, and an interface does not call attention to its messages).
    pub async fn set_muted(
        &mut self, conversation: &Qualified<ConversationId>, muted: bool,
    ) -> Result<(), ClientError> {
        let tx = self.begin().await?;
        let Some(c) = self.state.conversations.get_mut(&conversation.id) else {
            self.commit(tx).await?;
            return Err(ClientError::Refused {
                label: "no-such-conversation",
                message: "no such conversation on this device: `parley convs` lists them".into(),
            });
        };
        c.muted = muted;
        self.commit(tx).await
    }

    /// Sends a typing indicator.
    pub async fn typing(
        &self, conversation: &Qualified<ConversationId>, started: bool,
    ) -> Result<(), ClientError> {
        self.api.typing(conversation, started).await
    }
}

impl ConversationView {
    pub(super) fn new(id: Qualified<ConversationId>, kind: ConversationKind, name: String) -> Self {
        Self {
            id,
            kind,
            name,
            members: Vec::new(),
            message_timer: None,
            receipt_mode: 0,
            verification: Verification::NonVerified,
            unread: 0,
            last_activity: 0,
            incomplete: false,
            muted: false,
            protocol: parley_api::Protocol::Proteus,
            cipher_suite: None,
            epoch: None,
            rejoin: false,
            call: None,
            timers: BTreeMap::new(),
        }
    }
}
