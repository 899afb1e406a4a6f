//! The keys: what each does while typing, while picking a message, in a
//! search and on the help screen. A message goes to the selected
//! conversation, whatever the list shows now.

use std::time::{Duration, Instant};

use parley_client::ClientError;
use parley_client::account::{Account, MessageKind};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::View;
use super::commands;
use super::state::{Compose, Hit, Mode, Search, Ui};
use crate::text::excerpt;

/// The reactions on 1 to 5 while a message is picked (0 takes one's own back).
pub const QUICK_REACTIONS: [&str; 5] = ["👍", "❤️", "😂", "😮", "😢"];

/// Applies one key press.
pub async fn on_key(account: &mut Account, view: &View, ui: &mut Ui, key: KeyEvent) {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        ui.quit = true;
        return;
    }
    ui.last_key = Some(Instant::now());
    if ui.locked {
        unlock_key(account, ui, key).await;
        return;
    }
    if ui.help {
        // Any key closes the help screen.
        ui.help = false;
        return;
    }
    if ui.search.is_some() {
        search_key(account, ui, key).await;
        return;
    }
    match ui.mode {
        Mode::Browse => browse_key(account, view, ui, key).await,
        Mode::Compose => compose_key(account, view, ui, key).await,
    }
}

/// Keys on the lock screen: the local passphrase, then Enter.
async fn unlock_key(account: &mut Account, ui: &mut Ui, key: KeyEvent) {
    match key.code {
        KeyCode::Enter => {
            let typed = std::mem::take(&mut ui.unlock).0;
            match account.check_passphrase(&typed).await {
                Ok(()) => {
                    ui.locked = false;
                    ui.status.clear();
                }
                Err(ClientError::WrongPassphrase) => {
                    ui.status = "Wrong passphrase: type this device's local passphrase".into();
                }
                Err(e) => report(ui, Err(e)),
            }
        }
        KeyCode::Backspace => {
            ui.unlock.0.pop();
        }
        KeyCode::Esc => ui.unlock.0.clear(),
        KeyCode::Char(ch) => ui.unlock.0.push(ch),
        _ => {}
    }
}

/// Keys while typing.
async fn compose_key(account: &mut Account, view: &View, ui: &mut Ui, key: KeyEvent) {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    let shift = key.modifiers.contains(KeyModifiers::SHIFT);
    match key.code {
        KeyCode::Up if alt || ctrl => pick_step(view, ui, -1),
        KeyCode::Char('p') if ctrl => pick_step(view, ui, -1),
        KeyCode::Up => step_conversation(view, ui, -1),
        KeyCode::BackTab => step_conversation(view, ui, -1),
        KeyCode::Tab if complete_mention(account, view, ui) => {}
        KeyCode::Down | KeyCode::Tab => step_conversation(view, ui, 1),
        KeyCode::PageUp => {
            ui.scroll = ui
                .scroll
                .saturating_add(ui.page.get().max(1))
                .min(ui.max_scroll.get());
        }
        KeyCode::PageDown => ui.scroll = ui.scroll.saturating_sub(ui.page.get().max(1)),
        KeyCode::Home => ui.scroll = ui.max_scroll.get(),
        KeyCode::End => ui.scroll = 0,
        KeyCode::F(1) => ui.help = true,
        KeyCode::Char('?') if ui.input.is_empty() => ui.help = true,
        KeyCode::Char('f') if ctrl => open_search(ui),
        KeyCode::Esc => {
            if ui.compose != Compose::Message {
                ui.reset_compose();
            }
            ui.confirm_pending = false;
            ui.status.clear();
        }
        KeyCode::Char('k') if ctrl => {
            if let Some(c) = ui.selected.clone() {
                report(ui, account.knock(&c).await.map(|_| ()));
            }
        }
        KeyCode::Char('y') if ctrl && ui.confirm_pending => submit(account, view, ui, true).await,
        KeyCode::Enter if alt || shift => ui.input.push('\n'),
        KeyCode::Char('j') if ctrl => ui.input.push('\n'),
        KeyCode::Enter if !ui.input.trim().is_empty() => submit(account, view, ui, false).await,
        KeyCode::Backspace => {
            ui.input.pop();
        }
        KeyCode::Char(ch) if !ctrl => {
            ui.input.push(ch);
            if let Some(c) = ui.selected.clone()
                && !ui.input.starts_with('/')
                && ui
                    .typing_sent
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(3))
            {
                ui.typing_sent = Some(Instant::now());
                let _ = account.typing(&c, true).await;
            }
        }
        _ => {}
    }
}

/// Enter: a command (`/…`; `//` sends a text that starts with `/`), or the
/// message, reply, edit or reaction being written.
async fn submit(account: &mut Account, view: &View, ui: &mut Ui, confirm: bool) {
    let text = ui.input.clone();
    if ui.compose == Compose::Message
        && let Some(line) = text.strip_prefix('/')
        && !line.starts_with('/')
    {
        commands::run(account, view, ui, line).await;
        return;
    }
    let Some(c) = ui.selected.clone() else {
        ui.status = "No conversation selected: /new <handle> starts one".into();
        return;
    };
    let result = match ui.compose.clone() {
        Compose::Message => {
            // `//…` is a text that starts with `/`.
            let text = text.strip_prefix('/').unwrap_or(&text);
            // `@name` of a member becomes a mention of them.
            let me = account.user();
            let names: Vec<_> = view
                .conversation()
                .map(|row| row.members.as_slice())
                .unwrap_or_default()
                .iter()
                .filter(|u| **u != me)
                .map(|u| (*u, account.name_of(*u)))
                .collect();
            let names: Vec<_> = names.iter().map(|(u, n)| (*u, n.as_str())).collect();
            let rich = Account::mention(text, &names);
            account.send_rich(&c, rich, confirm).await.map(|_| ())
        }
        Compose::Reply(id) => account.reply(&c, &id, &text, confirm).await.map(|_| ()),
        Compose::Edit(id) => account.edit(&c, &id, &text).await.map(|_| ()),
        Compose::React(id) => account.react(&c, &id, text.trim()).await,
    };
    match result {
        Err(ClientError::Degraded) => {
            ui.confirm_pending = true;
            ui.status = "Not sent: a device in this conversation is not verified".into();
        }
        Ok(()) => {
            ui.input.clear();
            ui.reset_compose();
            ui.confirm_pending = false;
            ui.status.clear();
            ui.scroll = 0;
        }
        Err(e) => report(ui, Err(e)),
    }
    let _ = account.typing(&c, false).await;
    ui.typing_sent = None;
}

/// Keys while a message is picked.
async fn browse_key(account: &mut Account, view: &View, ui: &mut Ui, key: KeyEvent) {
    let Some(picked) = ui.picked.clone() else {
        ui.reset_compose();
        return;
    };
    if let Some(id) = ui.deleting.take() {
        let everyone = match key.code {
            KeyCode::Char('e') => Some(true),
            KeyCode::Char('m') => Some(false),
            _ => None,
        };
        match (everyone, ui.selected.clone()) {
            (Some(everyone), Some(c)) => {
                let result = account.delete(&c, &id, everyone).await;
                if result.is_ok() {
                    ui.reset_compose();
                    ui.status = "Deleted.".into();
                } else {
                    report(ui, result);
                }
            }
            _ => ui.status = "Kept.".into(),
        }
        return;
    }
    let Some((who, message)) = view.message(&picked) else {
        ui.reset_compose();
        return;
    };
    match key.code {
        KeyCode::Up | KeyCode::Char('k') => pick_step(view, ui, -1),
        KeyCode::Down | KeyCode::Char('j') => pick_step(view, ui, 1),
        KeyCode::PageUp => pick_step(view, ui, -10),
        KeyCode::PageDown => pick_step(view, ui, 10),
        KeyCode::Home => pick_step(view, ui, isize::MIN),
        KeyCode::End => {
            ui.reset_compose();
            ui.scroll = 0;
        }
        KeyCode::Esc | KeyCode::Char('i') => {
            ui.reset_compose();
            ui.status.clear();
        }
        KeyCode::Char('r') => {
            ui.mode = Mode::Compose;
            ui.compose = Compose::Reply(picked);
            ui.status.clear();
        }
        KeyCode::Char('e') => {
            if message.mine && message.kind == MessageKind::Text && !message.deleted {
                ui.input = message.text.clone();
                ui.mode = Mode::Compose;
                ui.compose = Compose::Edit(picked);
                ui.status.clear();
            } else {
                ui.status = "Only your own texts can be edited".into();
            }
        }
        KeyCode::Char('d') => {
            ui.deleting = Some(picked);
            ui.status = if message.mine && !message.deleted {
                "Delete this message? e: for everyone · m: just for me · any other key keeps it"
            } else {
                "Delete this message for you? m: yes · any other key keeps it"
            }
            .into();
        }
        KeyCode::Char(n @ '0'..='5') => {
            let emoji = match n.to_digit(10).and_then(|d| d.checked_sub(1)) {
                Some(i) => QUICK_REACTIONS.get(i as usize).copied().unwrap_or_default(),
                None => "",
            };
            if let Some(c) = ui.selected.clone() {
                report(ui, account.react(&c, &picked, emoji).await);
            }
        }
        KeyCode::Char('+') => {
            ui.input.clear();
            ui.mode = Mode::Compose;
            ui.compose = Compose::React(picked);
            ui.status = format!("React to {who}'s message: type an emoji, then Enter");
        }
        KeyCode::Char('/') => open_search(ui),
        KeyCode::Char('?') | KeyCode::F(1) => ui.help = true,
        _ => {}
    }
}

/// Keys in a search: typing the query, then moving through what it found.
async fn search_key(account: &mut Account, ui: &mut Ui, key: KeyEvent) {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let Some(search) = ui.search.as_mut() else {
        return;
    };
    match key.code {
        KeyCode::Esc => ui.search = None,
        KeyCode::Enter if search.editing => {
            let query = search.query.clone();
            match find(account, &query).await {
                Ok(hits) => {
                    search.index = hits.len().saturating_sub(1);
                    search.hits = hits;
                    search.editing = false;
                    ui.status.clear();
                }
                Err(e) => report(ui, Err(e)),
            }
        }
        KeyCode::Enter => {
            if let Some(hit) = search.hits.get(search.index).cloned() {
                ui.search = None;
                ui.select(hit.conversation);
                ui.picked = Some(hit.message);
                ui.mode = Mode::Browse;
                ui.status.clear();
            }
        }
        KeyCode::Up => search.index = search.index.saturating_sub(1),
        KeyCode::Down => {
            search.index = (search.index + 1).min(search.hits.len().saturating_sub(1));
        }
        KeyCode::Backspace => {
            search.editing = true;
            search.query.pop();
        }
        KeyCode::Char(ch) if !ctrl => {
            search.editing = true;
            search.query.push(ch);
        }
        _ => {}
    }
}

/// Opens an empty search.
pub(super) fn open_search(ui: &mut Ui) {
    ui.search = Some(Search {
        editing: true,
        ..Search::default()
    });
}

/// Searches the history on this device.
pub(super) async fn find(account: &mut Account, query: &str) -> Result<Vec<Hit>, ClientError> {
    let found = account.search(query, None).await?;
    Ok(found
        .into_iter()
        .map(|(c, m)| Hit {
            conversation_name: account
                .conversation(&c)
                .map(|v| v.name.clone())
                .unwrap_or_default(),
            conversation: c,
            who: if m.mine {
                "you".to_owned()
            } else {
                account.name_of(m.from)
            },
            time: m.time,
            text: excerpt(&m.body(), 200),
            message: m.id,
        })
        .collect())
}

/// Moves the picked message by `by` (the newest when none is picked; past
/// the newest, back to typing).
fn pick_step(view: &View, ui: &mut Ui, by: isize) {
    let ids: Vec<&str> = view.pickable().map(|m| m.id.as_str()).collect();
    let Some(last) = ids.len().checked_sub(1) else {
        ui.status = "No message to pick here yet".into();
        return;
    };
    let at = ui
        .picked
        .as_deref()
        .and_then(|p| ids.iter().position(|id| *id == p));
    let next = match at {
        // Alt+↑ from typing picks the newest message.
        None if by < 0 => Some(last),
        None => None,
        Some(i) if by > 0 && i == last => None,
        Some(i) => Some(i.saturating_add_signed(by).min(last)),
    };
    match next.and_then(|i| ids.get(i)) {
        Some(id) => {
            ui.picked = Some((*id).to_owned());
            ui.mode = Mode::Browse;
            ui.deleting = None;
        }
        None => ui.reset_compose(),
    }
}

/// Selects the conversation `by` rows away in the list.
fn step_conversation(view: &View, ui: &mut Ui, by: isize) {
    let Some(last) = view.conversations.len().checked_sub(1) else {
        return;
    };
    let at = view
        .selected
        .map_or(0, |i| i.saturating_add_signed(by).min(last));
    if let Some(c) = view.conversations.get(at) {
        ui.select(c.id.clone());
    }
}

/// Tab after `@` and the start of a name: completes it from the
/// conversation's members (true when there was an `@` word to complete).
fn complete_mention(account: &Account, view: &View, ui: &mut Ui) -> bool {
    // The last word, whatever the width of the space before it (U+00A0 and
    // U+3000 are more than one byte).
    let word = ui
        .input
        .rsplit(char::is_whitespace)
        .next()
        .unwrap_or_default();
    let start = ui.input.len() - word.len();
    let Some(partial) = ui.input[start..].strip_prefix('@') else {
        return false;
    };
    let partial = partial.to_lowercase();
    let me = account.user();
    let mut names: Vec<String> = view
        .conversation()
        .map(|c| c.members.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|u| **u != me)
        .map(|u| account.name_of(*u))
        .filter(|n| n.to_lowercase().starts_with(&partial))
        .collect();
    names.sort();
    names.dedup();
    match names.as_slice() {
        [one] => {
            ui.input.truncate(start);
            ui.input.push('@');
            ui.input.push_str(one);
            ui.input.push(' ');
            ui.status.clear();
        }
        [] => ui.status = format!("Nobody here is called @{partial}…"),
        several => ui.status = format!("@{partial}… could be {}", several.join(", ")),
    }
    true
}

/// Says how an action went in the status line.
pub(super) fn report(ui: &mut Ui, result: Result<(), ClientError>) {
    ui.status = match result {
        Ok(()) => String::new(),
        Err(e) => format!("Error: {e}"),
    };
}
