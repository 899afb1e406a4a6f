//! The history: entries stored one row each, grouped by conversation, so a new
//! message costs the same however long the history is; edits, deletes,
//! reactions and receipts applied to the entry they name; self-deleting timers;
//! deleting and expiring shred the row; history backups.

use std::collections::{BTreeMap, BTreeSet};

use parley_api::{ClientId, ConversationId, ConversationKind, Qualified, UserId, Uuid};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{Account, ConversationView, Update, damaged, json};
use crate::ClientError;
use crate::content::{self, Body, Envelope, ReceiptKind};
use crate::store::{Table, Tx};

/// What a history entry is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MessageKind {
    /// A text.
    Text,
    /// A knock.
    Knock,
    /// An asset (its name).
    Asset {
        /// The file's name.
        name: String,
    },
    /// A message that could not be decrypted: shown as such, never dropped.
    Undecryptable {
        /// Why.
        reason: String,
    },
    /// Something the app says (members joined, messages may be missing...).
    System,
    /// Content of a kind this version cannot show.
    Unsupported,
}

/// One history entry.
#[derive(Clone, Serialize, Deserialize)]
pub struct Message {
    /// The content's message id (local ids for system entries).
    pub id: String,
    /// Who sent it.
    pub from: UserId,
    /// From which device.
    pub sender: ClientId,
    /// When the server accepted it (Unix seconds).
    pub time: i64,
    /// What it is.
    #[serde(flatten)]
    pub kind: MessageKind,
    /// The text (empty when deleted).
    pub text: String,
    /// Sent by this user.
    pub mine: bool,
    /// Edited after sending.
    pub edited: bool,
    /// Deleted for everyone.
    pub deleted: bool,
    /// Reactions by user.
    pub reactions: BTreeMap<UserId, String>,
    /// Who has it (for this user's messages).
    pub delivered_to: BTreeSet<UserId>,
    /// Who has read it (for this user's messages, with read receipts on).
    pub read_by: BTreeSet<UserId>,
    /// Self-deleting after this many milliseconds once shown.
    pub expires_after_ms: Option<u64>,
    /// When it disappears (Unix milliseconds), once the timer started.
    pub expires_at: Option<i64>,
    /// Whether this device's user has seen it.
    pub shown: bool,
    /// Users mentioned in the text.
    #[serde(default)]
    pub mentions: Vec<UserId>,
    /// Previews of links in the text, as the sender made them.
    #[serde(default)]
    pub link_previews: Vec<LinkPreview>,
    /// Encrypted and committed, not yet accepted by the server (it is in the
    /// outbox and goes out with the next send or sync).
    #[serde(default)]
    pub pending: bool,
    /// The message this one answers (a reply quotes it), by id; it may not be
    /// on this device.
    #[serde(default)]
    pub reply_to: Option<String>,
}

/// A link preview as shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkPreview {
    /// The URL.
    pub url: String,
    /// The page's title.
    pub title: String,
    /// Its summary.
    pub summary: String,
}

fn annotations(t: &content::Text) -> (Vec<UserId>, Vec<LinkPreview>) {
    (
        t.mentions
            .iter()
            .filter_map(|m| m.user_id.parse().ok())
            .collect(),
        t.link_previews
            .iter()
            .map(|p| LinkPreview {
                url: p.url.clone(),
                title: p.title.clone(),
                summary: p.summary.clone(),
            })
            .collect(),
    )
}

impl Message {
    /// A new entry with no reactions, receipts or timer.
    pub(super) fn entry(
        id: String, (from, sender): (UserId, ClientId), time: i64, kind: MessageKind, text: String,
        shown: bool,
    ) -> Self {
        Self {
            id,
            from,
            sender,
            time,
            kind,
            text,
            mine: false,
            edited: false,
            deleted: false,
            reactions: BTreeMap::new(),
            delivered_to: BTreeSet::new(),
            read_by: BTreeSet::new(),
            expires_after_ms: None,
            expires_at: None,
            shown,
            mentions: Vec::new(),
            link_previews: Vec::new(),
            pending: false,
            reply_to: None,
        }
    }

    /// What to show for it: the text, or what stands for it.
    pub fn body(&self) -> String {
        match &self.kind {
            MessageKind::Text if self.deleted => "(deleted)".to_owned(),
            MessageKind::Knock => "knocks".into(),
            MessageKind::Asset { name } => format!("[file {name}]"),
            MessageKind::Text
            | MessageKind::Undecryptable { .. }
            | MessageKind::System
            | MessageKind::Unsupported => self.text.clone(),
        }
    }

    /// Said by the app rather than a person.
    pub fn is_notice(&self) -> bool {
        matches!(
            self.kind,
            MessageKind::System | MessageKind::Undecryptable { .. } | MessageKind::Unsupported
        )
    }
}

/// Message content is private: `Debug` shows the envelope, not the words.
impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("from", &self.from)
            .field("kind", &self.kind)
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .finish_non_exhaustive()
    }
}

/// The row name of an entry: conversation and message id.
fn entry_name(conversation: ConversationId, id: &str) -> Vec<u8> {
    let mut name = conversation.as_bytes().to_vec();
    name.extend_from_slice(id.as_bytes());
    name
}

/// Reads one entry.
pub(super) async fn load(
    tx: &mut Tx, conversation: ConversationId, id: &str,
) -> Result<Option<Message>, ClientError> {
    tx.get(Table::Messages, &entry_name(conversation, id))
        .await?
        .map(|bytes| serde_json::from_slice(&bytes).map_err(|_| damaged("message")))
        .transpose()
}

/// Writes one entry (a new one goes last).
pub(super) async fn store(
    tx: &mut Tx, conversation: ConversationId, m: &Message,
) -> Result<(), ClientError> {
    tx.put(
        Table::Messages,
        &entry_name(conversation, &m.id),
        Some(conversation.as_bytes()),
        &json(m),
    )
    .await?;
    Ok(())
}

/// Deletes one entry (the row is overwritten on disk: `secure_delete`).
pub(super) async fn shred(
    tx: &mut Tx, conversation: ConversationId, id: &str,
) -> Result<bool, ClientError> {
    tx.delete(Table::Messages, &entry_name(conversation, id))
        .await
}

/// A conversation's whole history, oldest first.
async fn load_all(tx: &mut Tx, conversation: ConversationId) -> Result<Vec<Message>, ClientError> {
    tx.group(Table::Messages, conversation.as_bytes())
        .await?
        .into_iter()
        .map(|(_, bytes)| serde_json::from_slice(&bytes).map_err(|_| damaged("message")))
        .collect()
}

#[derive(Serialize, Deserialize)]
struct Backup {
    user: UserId,
    conversations: Vec<(ConversationView, Vec<Message>)>,
    names: BTreeMap<UserId, String>,
}

/// The most hits a search returns: the newest ones.
pub const MAX_SEARCH_HITS: usize = 500;

impl Account {
    /// Adds an entry to a conversation's history (inside a transaction).
    pub(super) async fn push(
        &mut self, tx: &mut Tx, conversation: &Qualified<ConversationId>, message: Message,
    ) -> Result<(), ClientError> {
        let Some(c) = self.state.conversations.get_mut(&conversation.id) else {
            return Ok(());
        };
        if !message.shown {
            c.unread += 1;
        }
        c.last_activity = c.last_activity.max(message.time);
        if let Some(at) = message.expires_at {
            c.timers.insert(message.id.clone(), at);
        }
        store(tx, conversation.id, &message).await
    }

    /// A notice from the app in a conversation: written with the change's
    /// commit.
    pub(super) fn system(&mut self, id: ConversationId, text: &str) {
        self.notices.push((id, text.to_owned()));
    }

    /// Writes the notices of this change (inside its transaction).
    pub(super) async fn write_notices(&mut self, tx: &mut Tx) -> Result<(), ClientError> {
        let me = self.user();
        for (id, text) in std::mem::take(&mut self.notices) {
            let entry = Message::entry(
                Uuid::new_v4().to_string(),
                (me, ClientId(0)),
                self.now_ms() / 1000,
                MessageKind::System,
                text,
                true,
            );
            self.push(tx, &self.qualified(id), entry).await?;
        }
        Ok(())
    }

    /// Applies content (received, or sent by this device) to the history,
    /// inside a transaction. A duplicate changes nothing.
    pub(super) async fn apply(
        &mut self, tx: &mut Tx, conversation: &Qualified<ConversationId>,
        (from, sender): (UserId, ClientId), time: i64, envelope: &Envelope, pending: bool,
    ) -> Result<Option<Update>, ClientError> {
        let mine = from == self.user();
        let sent_here = mine && sender == self.device_id();
        if !self.state.conversations.contains_key(&conversation.id) {
            return Ok(None);
        }
        let changed = |id: &str| {
            Some(Update::Changed {
                conversation: conversation.clone(),
                id: id.to_owned(),
            })
        };
        let now = self.now_ms();
        let new_entry = |kind: MessageKind, text: String| Message {
            mine,
            pending,
            expires_after_ms: envelope.expires_after_ms,
            // The sender's own copy counts down from sending.
            expires_at: envelope
                .expires_after_ms
                .filter(|_| sent_here)
                .map(|ms| now.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))),
            ..Message::entry(
                envelope.message_id.clone(),
                (from, sender),
                time,
                kind,
                text,
                sent_here,
            )
        };
        let entry = match envelope.body.as_ref() {
            Some(Body::Text(t)) => {
                let (mentions, link_previews) = annotations(t);
                Message {
                    mentions,
                    link_previews,
                    reply_to: t.quote.as_ref().map(|q| q.message_id.clone()),
                    ..new_entry(MessageKind::Text, t.content.clone())
                }
            }
            Some(Body::Knock(_)) => new_entry(MessageKind::Knock, String::new()),
            Some(Body::Asset(a)) => new_entry(
                MessageKind::Asset {
                    name: a.name.clone(),
                },
                format!("{} ({} bytes)", a.name, a.size),
            ),
            None => new_entry(
                MessageKind::Unsupported,
                "This message needs a newer app.".into(),
            ),
            // Unwrapped before it gets here; a nested one is refused.
            Some(Body::External(_)) => return Ok(None),
            Some(Body::Edit(e)) => {
                let Some(mut target) = load(tx, conversation.id, &e.replacing_message_id).await?
                else {
                    return Ok(None);
                };
                // Only the author edits, and only texts.
                if target.from != from || target.kind != MessageKind::Text || target.deleted {
                    return Ok(None);
                }
                let Some(text) = e.text.as_ref() else {
                    return Ok(None);
                };
                target.text = text.content.clone();
                (target.mentions, target.link_previews) = annotations(text);
                target.edited = true;
                store(tx, conversation.id, &target).await?;
                return Ok(changed(&e.replacing_message_id));
            }
            Some(Body::Delete(d)) => {
                let Some(mut target) = load(tx, conversation.id, &d.message_id).await? else {
                    return Ok(None);
                };
                if target.pending && target.from == from && mine {
                    // Deleted before it could go: it never will.
                    self.withdraw(tx, conversation.id, &d.message_id).await?;
                    target.pending = false;
                }
                if d.for_everyone {
                    if target.from != from {
                        return Ok(None);
                    }
                    // The row is rewritten without the words, then the old
                    // bytes are shredded at the next checkpoint.
                    target.deleted = true;
                    target.text.clear();
                    target.reactions.clear();
                    target.mentions.clear();
                    target.link_previews.clear();
                    store(tx, conversation.id, &target).await?;
                } else {
                    // For me: only the user's own devices send this.
                    if !mine {
                        return Ok(None);
                    }
                    shred(tx, conversation.id, &d.message_id).await?;
                    if let Some(c) = self.state.conversations.get_mut(&conversation.id) {
                        c.timers.remove(&d.message_id);
                    }
                }
                return Ok(changed(&d.message_id));
            }
            Some(Body::Reaction(r)) => {
                let Some(mut target) = load(tx, conversation.id, &r.message_id).await? else {
                    return Ok(None);
                };
                if r.emoji.is_empty() {
                    target.reactions.remove(&from);
                } else {
                    target.reactions.insert(from, r.emoji.clone());
                }
                store(tx, conversation.id, &target).await?;
                return Ok(changed(&r.message_id));
            }
            Some(Body::Receipt(r)) => {
                let Ok(kind) = ReceiptKind::try_from(r.kind) else {
                    return Ok(None);
                };
                for id in &r.message_ids {
                    if let Some(mut target) =
                        load(tx, conversation.id, id).await?.filter(|m| m.mine)
                    {
                        target.delivered_to.insert(from);
                        if kind == ReceiptKind::Read {
                            target.read_by.insert(from);
                        }
                        store(tx, conversation.id, &target).await?;
                    }
                }
                return Ok(r.message_ids.first().and_then(|id| changed(id)));
            }
        };
        if load(tx, conversation.id, &entry.id).await?.is_some() {
            return Ok(None); // A duplicate: already in the history.
        }
        let id = entry.id.clone();
        self.push(tx, conversation, entry).await?;
        Ok(Some(Update::Message {
            conversation: conversation.clone(),
            id,
        }))
    }

    /// Shows a conversation: its unread messages count as read, self-deleting
    /// timers start, and read receipts go out when the conversation has them on.
    pub async fn open_conversation(
        &mut self, conversation: &Qualified<ConversationId>,
    ) -> Result<Vec<Message>, ClientError> {
        self.purge_expired().await?;
        // Read receipts are encrypted in this change.
        self.check_generation().await?;
        let mut tx = self.begin().await?;
        let now = self.now_ms();
        let Some(c) = self.state.conversations.get(&conversation.id) else {
            return Err(ClientError::Storage("unknown conversation".into()));
        };
        let receipts = c.receipt_mode == 1;
        let mut messages = load_all(&mut tx, conversation.id).await?;
        let mut newly_read = Vec::new();
        let mut timers = Vec::new();
        for m in &mut messages {
            if m.shown {
                continue;
            }
            m.shown = true;
            if let Some(after) = m.expires_after_ms {
                let at = now.saturating_add(i64::try_from(after).unwrap_or(i64::MAX));
                m.expires_at = Some(at);
                timers.push((m.id.clone(), at));
            }
            if !m.mine
                && matches!(
                    m.kind,
                    MessageKind::Text | MessageKind::Knock | MessageKind::Asset { .. }
                )
            {
                newly_read.push((m.id.clone(), m.from));
            }
            store(&mut tx, conversation.id, m).await?;
        }
        if let Some(c) = self.state.conversations.get_mut(&conversation.id) {
            c.unread = 0;
            c.timers.extend(timers);
        }
        if receipts {
            // Queued with the change, so they go out even if the server is
            // away now.
            let mut by_author: BTreeMap<UserId, Vec<String>> = BTreeMap::new();
            for (id, author) in newly_read {
                by_author.entry(author).or_default().push(id);
            }
            for (author, ids) in by_author {
                self.enqueue_receipt(&mut tx, conversation, ReceiptKind::Read, author, ids)
                    .await?;
            }
        }
        self.commit(tx).await?;
        self.flush_quietly().await?;
        Ok(messages)
    }

    /// The history without marking anything read (local: works offline).
    pub async fn history(
        &mut self, conversation: &Qualified<ConversationId>,
    ) -> Result<Vec<Message>, ClientError> {
        self.purge_expired().await?;
        let mut tx = self.store.read().await?;
        load_all(&mut tx, conversation.id).await
    }

    /// One history entry.
    pub async fn message(
        &mut self, conversation: &Qualified<ConversationId>, id: &str,
    ) -> Result<Option<Message>, ClientError> {
        let mut tx = self.store.read().await?;
        load(&mut tx, conversation.id, id).await
    }

    /// Finds the texts (and file names) that contain `needle`, ignoring case,
    /// in the history on this device: every conversation's, or only
    /// `conversation`'s. Oldest first. Local: works offline. An empty
    /// `needle` is refused (`empty-search`): it would list everything.
    /// (At most [`MAX_SEARCH_HITS`], the newest.)
    pub async fn search(
        &mut self, needle: &str, conversation: Option<&Qualified<ConversationId>>,
    ) -> Result<Vec<(Qualified<ConversationId>, Message)>, ClientError> {
        let needle = needle.trim().to_lowercase();
        if needle.is_empty() {
            return Err(ClientError::Refused {
                label: "empty-search",
                message: "say what to search for".into(),
            });
        }
        self.purge_expired().await?;
        let ids: Vec<Qualified<ConversationId>> = match conversation {
            Some(c) => vec![c.clone()],
            None => self
                .state
                .conversations
                .values()
                .map(|c| c.id.clone())
                .collect(),
        };
        let mut tx = self.store.read().await?;
        let mut found = Vec::new();
        for id in ids {
            for m in load_all(&mut tx, id.id).await? {
                let searchable =
                    !m.deleted && matches!(m.kind, MessageKind::Text | MessageKind::Asset { .. });
                if searchable && m.text.to_lowercase().contains(&needle) {
                    found.push((id.clone(), m));
                }
            }
        }
        // Stable: within a second, each conversation's order stays. Only the
        // newest hits are kept: a one-letter search must not return (and a
        // terminal print) the whole history.
        found.sort_by_key(|(_, m)| m.time);
        let skip = found.len().saturating_sub(MAX_SEARCH_HITS);
        found.drain(..skip);
        Ok(found)
    }

    /// Shreds self-deleting messages whose time is up.
    pub(super) async fn purge_expired(&mut self) -> Result<(), ClientError> {
        self.refresh().await?;
        let now = self.now_ms();
        let due = self
            .state
            .conversations
            .values()
            .any(|c| c.timers.values().any(|at| *at <= now));
        if !due {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        let mut gone = Vec::new();
        for c in self.state.conversations.values_mut() {
            let expired: Vec<String> = c
                .timers
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                c.timers.remove(&id);
                gone.push((c.id.id, id));
            }
        }
        for (conversation, id) in gone {
            shred(&mut tx, conversation, &id).await?;
        }
        self.commit(tx).await
    }

    // --- backups ------------------------------------------------------------------

    /// The conversation history, sealed under a dedicated backup password
    /// ([`crate::backup`]): only this user can import it. Works offline.
    pub async fn export_backup(&mut self, password: &str) -> Result<Vec<u8>, ClientError> {
        self.purge_expired().await?;
        let mut tx = self.store.read().await?;
        let mut conversations = Vec::new();
        for c in self.state.conversations.values() {
            conversations.push((c.clone(), load_all(&mut tx, c.id.id).await?));
        }
        drop(tx);
        let history = Backup {
            user: self.user(),
            conversations,
            names: self.state.names.clone(),
        };
        let json = Zeroizing::new(serde_json::to_vec(&history).expect("history serializes"));
        let (user, password) = (self.user(), Zeroizing::new(password.to_owned()));
        // Argon2 is slow by design: off the async runtime.
        tokio::task::spawn_blocking(move || crate::backup::seal(user, &password, &json))
            .await
            .map_err(|_| ClientError::Crypto("the backup was interrupted".into()))?
    }

    /// Imports a backup made by this user: conversations and messages this
    /// device lacks are added; nothing here is overwritten. Returns how many
    /// messages were added.
    pub async fn import_backup(
        &mut self, bytes: &[u8], password: &str,
    ) -> Result<usize, ClientError> {
        let (user, password) = (self.user(), Zeroizing::new(password.to_owned()));
        let sealed = bytes.to_vec();
        let json =
            tokio::task::spawn_blocking(move || crate::backup::open(&sealed, &password, user))
                .await
                .map_err(|_| ClientError::Crypto("the backup was interrupted".into()))??;
        let backup: Backup = serde_json::from_slice(&json)
            .map_err(|_| ClientError::Decode("the backup's history is damaged".into()))?;
        if backup.user != self.user() {
            return Err(ClientError::Crypto(
                "this backup belongs to another user".into(),
            ));
        }
        let mut tx = self.begin().await?;
        let mut added = 0;
        for (conv, messages) in backup.conversations {
            let id = conv.id.clone();
            self.state
                .conversations
                .entry(conv.id.id)
                .or_insert_with(|| ConversationView {
                    unread: 0,
                    timers: BTreeMap::new(),
                    ..conv.clone()
                });
            for mut m in messages {
                if load(&mut tx, id.id, &m.id).await?.is_none() {
                    m.shown = true;
                    self.push(&mut tx, &id, m).await?;
                    added += 1;
                }
            }
        }
        for (user, name) in backup.names {
            self.state.names.entry(user).or_insert(name);
        }
        self.commit(tx).await?;
        Ok(added)
    }

    /// Whether a conversation is a 1:1.
    pub(super) fn is_one2one(&self, conversation: ConversationId) -> bool {
        self.state
            .conversations
            .get(&conversation)
            .is_some_and(|c| c.kind == ConversationKind::One2one)
    }
}
