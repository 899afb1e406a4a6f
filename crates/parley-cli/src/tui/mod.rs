//! `parley tui`: a terminal chat. The conversation list with unread counts, a
//! verification shield and mutes; the selected conversation's messages with
//! times, day separators, a marker at the first unread one, replies, receipts,
//! edits and reactions; who is typing; a multi-line input that also takes
//! commands (`/new`, `/group`, `/migrate`, `/call`, `/hangup`, `/leave`,
//! `/block`, `/mute`, `/search`); a message picked with the keyboard to
//! reply to, edit, delete or react to; a search over the history on this
//! device; a help screen on `?`; a lock
//! after a while without a key, opened with the local passphrase; desktop
//! notifications when asked for.
//!
//! [`view`] reads the account, [`state`] is the window's own, [`keys`] and
//! [`commands`] change them, and [`draw`](mod@draw) draws both (a pure
//! function, so tests render it with ratatui's test backend).

mod commands;
pub mod draw;
pub mod keys;
pub mod notify;
pub mod state;
pub mod view;

use std::time::{Duration, Instant};

use anyhow::Result;
use parley_client::ClientError;
use parley_client::account::{Account, Update};
use ratatui::crossterm::event::{self, Event, KeyEventKind};

pub use draw::draw;
pub use keys::on_key;
pub use state::{Compose, Hit, Mode, Search, Ui};
pub use view::{ConversationRow, View};

/// How long a typing indicator shows without a new one.
const TYPING_SHOWN: Duration = Duration::from_secs(6);

/// How the chat runs.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Lock the window after this long without a key (none: never); the
    /// local passphrase unlocks it.
    pub lock_after: Option<Duration>,
    /// Tell the desktop where messages arrive (never what they say).
    pub notify: bool,
}

/// Runs the chat until Ctrl-C.
pub async fn run(mut account: Account, options: Options) -> Result<()> {
    let ui = Ui {
        offset: Some(crate::text::local_offset()),
        lock_after: options.lock_after,
        notify: options.notify,
        ..Ui::default()
    };
    let mut terminal = ratatui::init();
    let result = event_loop(&mut terminal, &mut account, ui).await;
    ratatui::restore();
    result
}

/// Reads what the window shows now. The conversation on screen counts as
/// read (its self-deleting timers start, read receipts go); where its unread
/// messages began stays marked meanwhile. Locked, nothing is on screen, so
/// nothing is read.
pub async fn shown(account: &mut Account, ui: &mut Ui) -> Result<View, ClientError> {
    let view = View::of(account, &mut ui.selected).await?;
    let Some(c) = view.conversation().filter(|c| c.unread > 0 && !ui.locked) else {
        return Ok(view);
    };
    let id = c.id.clone();
    if let Some(first) = view.first_unread.clone() {
        ui.unread_from.entry(id.id).or_insert(first);
    }
    if let Err(e) = account.open_conversation(&id).await {
        ui.status = e.to_string();
    }
    View::of(account, &mut ui.selected).await
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal, account: &mut Account, mut ui: Ui,
) -> Result<()> {
    let (keys_tx, mut keys) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while let Ok(event) = event::read() {
            if keys_tx.send(event).is_err() {
                return;
            }
        }
    });
    let mut socket = account.connect().await?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let view = shown(account, &mut ui).await?;
        terminal.draw(|f| draw(f, &view, &ui))?;
        if ui.quit {
            return Ok(());
        }
        tokio::select! {
            Some(event) = keys.recv() => {
                if let Event::Key(key) = event
                    && key.kind == KeyEventKind::Press
                {
                    on_key(account, &view, &mut ui, key).await;
                }
            }
            frame = socket.next() => match frame {
                Ok(Some(frame)) => {
                    // Nothing is lost on an error: what was received is applied
                    // all or nothing, and a frame after a failed one makes the
                    // account read the queue from its cursor. The person is told.
                    let updates = account.handle(&frame).await.unwrap_or_else(|e| {
                        ui.status = e.to_string();
                        Vec::new()
                    });
                    if ui.notify {
                        for line in notify::notifications(account, &ui, &updates).await {
                            if !notify::show(&line) {
                                ui.notify = false;
                                ui.status = "No desktop notifier (notify-send) could be started: notifications are off".into();
                            }
                        }
                    }
                    for update in updates {
                        if let Update::Typing { conversation, from, started } = update {
                            if started {
                                ui.typing.insert(conversation.id, (account.name_of(from), Instant::now() + TYPING_SHOWN));
                            } else {
                                ui.typing.remove(&conversation.id);
                            }
                        }
                    }
                }
                _ => {
                    ui.status = "Reconnecting…".into();
                    terminal.draw(|f| draw(f, &view, &ui))?;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if account.sync().await.is_ok()
                        && let Ok(s) = account.connect().await
                    {
                        socket = s;
                        ui.status.clear();
                    }
                }
            },
            _ = tick.tick() => ui.lock_if_idle(Instant::now()),
        }
    }
}
