//! What the window shows, read from the account: the conversation list and
//! the selected conversation's messages. A snapshot: drawing never waits on
//! the account.

use parley_api::{ConversationId, ConversationKind, Qualified, UserId};
use parley_client::ClientError;
use parley_client::account::{Account, Message};
use parley_client::verification::Verification;

/// One row of the conversation list.
#[derive(Clone, Debug)]
pub struct ConversationRow {
    /// Its id.
    pub id: Qualified<ConversationId>,
    /// Its name.
    pub name: String,
    /// Group or 1:1.
    pub kind: ConversationKind,
    /// Its members, this user included (none once this user left).
    pub members: Vec<UserId>,
    /// Unread messages.
    pub unread: usize,
    /// Its verification state.
    pub verification: Verification,
    /// Muted on this device.
    pub muted: bool,
    /// Proteus or MLS.
    pub protocol: parley_api::Protocol,
}

/// A snapshot of what the account shows.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// Conversations, most recent first.
    pub conversations: Vec<ConversationRow>,
    /// The selected conversation's messages, each with its sender's name.
    pub messages: Vec<(String, Message)>,
    /// Where the selected conversation is in the list now (`None`: it is
    /// gone, or there is none).
    pub selected: Option<usize>,
    /// The first message of the selected conversation not yet shown to the
    /// person (read from the device's history, so it survives restarts).
    pub first_unread: Option<String>,
}

impl View {
    /// Reads the account; `selected` is the conversation whose messages show.
    /// The selection is a conversation, not a row: it stays on the same
    /// conversation however the list re-sorts as messages arrive. With none
    /// yet, the first conversation is selected; one that is gone stays
    /// selected, showing nothing, so that nothing typed goes elsewhere.
    pub async fn of(
        account: &mut Account, selected: &mut Option<Qualified<ConversationId>>,
    ) -> Result<Self, ClientError> {
        let conversations: Vec<ConversationRow> = account
            .conversations()
            .await?
            .into_iter()
            .map(|c| ConversationRow {
                id: c.id.clone(),
                name: c.name.clone(),
                kind: c.kind,
                members: c.members.clone(),
                unread: c.unread,
                verification: c.verification,
                muted: c.muted,
                protocol: c.protocol,
            })
            .collect();
        if selected.is_none() {
            *selected = conversations.first().map(|c| c.id.clone());
        }
        let index = selected
            .as_ref()
            .and_then(|id| conversations.iter().position(|c| &c.id == id));
        let history = match index.and_then(|i| conversations.get(i)) {
            Some(c) => account.history(&c.id).await?,
            None => Vec::new(),
        };
        let first_unread = history
            .iter()
            .find(|m| !m.shown && !m.mine)
            .map(|m| m.id.clone());
        let messages = history
            .into_iter()
            .map(|m| {
                let name = if m.mine {
                    "you".to_owned()
                } else {
                    account.name_of(m.from)
                };
                (name, m)
            })
            .collect();
        Ok(Self {
            conversations,
            messages,
            selected: index,
            first_unread,
        })
    }

    /// The selected conversation's row.
    pub fn conversation(&self) -> Option<&ConversationRow> {
        self.selected.and_then(|i| self.conversations.get(i))
    }

    /// A message of the selected conversation, with its sender's name.
    pub fn message(&self, id: &str) -> Option<&(String, Message)> {
        self.messages.iter().find(|(_, m)| m.id == id)
    }

    /// The messages a person can pick (not the app's notices), oldest first.
    pub(super) fn pickable(&self) -> impl Iterator<Item = &Message> {
        self.messages
            .iter()
            .map(|(_, m)| m)
            .filter(|m| !m.is_notice())
    }
}
