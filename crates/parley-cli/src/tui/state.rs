//! The window's own state: what is selected, typed, picked, searched and
//! scrolled. Nothing here is the account's; the account is read into a
//! [`View`](super::View).

use std::cell::Cell;
use std::collections::HashMap;
use std::time::Instant;

use parley_api::{ConversationId, Qualified};

/// What the keys do now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Typing a message (the keys edit the input line).
    #[default]
    Compose,
    /// Picking a message to reply to, edit, delete or react to.
    Browse,
}

/// What Enter does with the input line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Compose {
    /// Sends a new message.
    #[default]
    Message,
    /// Sends a reply quoting this message.
    Reply(String),
    /// Replaces this message's text.
    Edit(String),
    /// Reacts to this message with the emoji typed.
    React(String),
}

/// One message a search found.
#[derive(Clone, Debug)]
pub struct Hit {
    /// Where.
    pub conversation: Qualified<ConversationId>,
    /// The conversation's name.
    pub conversation_name: String,
    /// The message's id.
    pub message: String,
    /// When (Unix seconds).
    pub time: i64,
    /// Who wrote it.
    pub who: String,
    /// What it says.
    pub text: String,
}

/// A search over the history on this device.
#[derive(Clone, Debug, Default)]
pub struct Search {
    /// What is searched for.
    pub query: String,
    /// The query is being typed (Enter runs it).
    pub editing: bool,
    /// What the last run found, oldest first.
    pub hits: Vec<Hit>,
    /// The hit picked.
    pub index: usize,
}

/// Something secret being typed: `Debug` shows its length only, and it is
/// wiped when dropped (its buffer is made large once, so typing does not
/// leave copies behind in freed memory).
pub(super) struct Typed(pub(super) zeroize::Zeroizing<String>);

impl Default for Typed {
    fn default() -> Self {
        Self(zeroize::Zeroizing::new(String::with_capacity(256)))
    }
}

impl std::fmt::Debug for Typed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} characters>", self.0.chars().count())
    }
}

/// The interface's own state.
#[derive(Debug, Default)]
pub struct Ui {
    /// The selected conversation: what is shown, and where a message typed
    /// goes.
    pub selected: Option<Qualified<ConversationId>>,
    /// What is being typed (several lines with Alt+Enter).
    pub input: String,
    /// The last thing to tell the person (errors, confirmations).
    pub status: String,
    /// A send was refused because the conversation is degraded; Ctrl-Y sends it.
    pub confirm_pending: bool,
    /// Who is typing where, until when.
    pub typing: HashMap<ConversationId, (String, Instant)>,
    /// What the keys do now.
    pub mode: Mode,
    /// What Enter does with the input line.
    pub compose: Compose,
    /// The message picked with the keyboard (by id).
    pub picked: Option<String>,
    /// A delete of the picked message waits for "for everyone" or "for me".
    pub deleting: Option<String>,
    /// Rows scrolled back from the newest message.
    pub scroll: usize,
    /// The help screen is open.
    pub help: bool,
    /// A search is open.
    pub search: Option<Search>,
    /// Where the "new" marker goes in each conversation opened in this run:
    /// the first message that was unread when it was opened.
    pub unread_from: HashMap<ConversationId, String>,
    /// Times are shown at this offset from UTC (none: in UTC).
    pub offset: Option<time::UtcOffset>,
    /// Lock the window after this long without a key (none: never).
    pub lock_after: Option<std::time::Duration>,
    /// Desktop notifications are on.
    pub notify: bool,
    /// Locked: nothing shows until the local passphrase is typed.
    pub locked: bool,
    /// The passphrase being typed to unlock (never drawn, never in `Debug`).
    pub(super) unlock: Typed,
    /// The last key pressed (the lock counts from it).
    pub(super) last_key: Option<Instant>,
    pub(super) quit: bool,
    pub(super) typing_sent: Option<Instant>,
    /// The message pane's height and how far back it can scroll, as last
    /// drawn (paging and clamping use them).
    pub(super) page: Cell<usize>,
    pub(super) max_scroll: Cell<usize>,
}

impl Ui {
    /// The offset from UTC times are shown at.
    pub fn offset(&self) -> time::UtcOffset {
        self.offset.unwrap_or(time::UtcOffset::UTC)
    }

    /// Locks the window when no key came for [`Ui::lock_after`] by `now`.
    pub fn lock_if_idle(&mut self, now: Instant) {
        let since = *self.last_key.get_or_insert(now);
        if let Some(after) = self.lock_after
            && now.saturating_duration_since(since) >= after
        {
            self.locked = true;
        }
    }

    /// Back to typing a new message: nothing picked, no reply or edit pending.
    pub(super) fn reset_compose(&mut self) {
        if matches!(self.compose, Compose::Edit(_) | Compose::React(_)) {
            // The old text or the emoji is no new message.
            self.input.clear();
        }
        self.mode = Mode::Compose;
        self.compose = Compose::Message;
        self.picked = None;
        self.deleting = None;
    }

    /// Another conversation is selected: what belonged to the last one goes.
    pub(super) fn select(&mut self, id: Qualified<ConversationId>) {
        if self.selected.as_ref() != Some(&id) {
            self.selected = Some(id);
            // A "send anyway?" was asked of the last conversation: Ctrl-Y
            // must never send the text here, past this one's own check.
            self.confirm_pending = false;
            self.reset_compose();
            self.scroll = 0;
            self.unread_from.clear();
        }
    }
}
