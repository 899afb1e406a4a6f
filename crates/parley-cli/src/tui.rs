//! `parley tui`: a terminal chat. The conversation list with unread counts and a
//! verification shield, the selected conversation's messages with receipts,
//! edits and reactions, who is typing, an input line and a help bar.
//!
//! Drawing is a pure function of a [`View`] (a snapshot of the account) and the
//! [`Ui`] state, so tests render it with ratatui's test backend.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use parley_api::{ConversationId, Qualified};
use parley_client::ClientError;
use parley_client::account::{Account, Message, MessageKind, Update};
use parley_client::verification::Verification;
use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph, Wrap};

/// How long a typing indicator shows without a new one.
const TYPING_SHOWN: Duration = Duration::from_secs(6);

/// One row of the conversation list.
#[derive(Clone, Debug)]
pub struct ConversationRow {
    /// Its id.
    pub id: Qualified<ConversationId>,
    /// Its name.
    pub name: String,
    /// Unread messages.
    pub unread: usize,
    /// Its verification state.
    pub verification: Verification,
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
}

impl View {
    /// Reads the account; `selected` is the conversation whose messages show.
    /// The selection is a conversation, not a row: it stays on the same
    /// conversation however the list re-sorts as messages arrive. With none
    /// yet, the first conversation is selected; one that is gone stays
    /// selected, showing nothing, so that nothing typed goes elsewhere.
    pub async fn of(
        account: &mut Account,
        selected: &mut Option<Qualified<ConversationId>>,
    ) -> Result<Self, ClientError> {
        let conversations: Vec<ConversationRow> = account
            .conversations()
            .await?
            .into_iter()
            .map(|c| ConversationRow {
                id: c.id.clone(),
                name: c.name.clone(),
                unread: c.unread,
                verification: c.verification,
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
        })
    }
}

/// The interface's own state.
#[derive(Debug, Default)]
pub struct Ui {
    /// The selected conversation: what is shown, and where a message typed
    /// goes.
    pub selected: Option<Qualified<ConversationId>>,
    /// What is being typed.
    pub input: String,
    /// The last thing to tell the person (errors, confirmations).
    pub status: String,
    /// A send was refused because the conversation is degraded; Ctrl-Y sends it.
    pub confirm_pending: bool,
    /// Who is typing where, until when.
    pub typing: HashMap<ConversationId, (String, Instant)>,
    quit: bool,
    typing_sent: Option<Instant>,
}

fn shield(v: Verification) -> Span<'static> {
    match v {
        Verification::Verified => Span::styled("✔ ", Style::default().fg(Color::Blue)),
        Verification::Degraded => Span::styled("⚠ ", Style::default().fg(Color::Red)),
        Verification::NonVerified => Span::raw("  "),
    }
}

fn message_spans(name: &str, m: &Message) -> Line<'static> {
    let body = m.body();
    let mut spans = Vec::new();
    if matches!(
        m.kind,
        MessageKind::System | MessageKind::Undecryptable { .. }
    ) {
        spans.push(Span::styled(
            format!("* {body}"),
            Style::default().add_modifier(Modifier::ITALIC),
        ));
    } else {
        spans.push(Span::styled(
            format!("{name}: "),
            Style::default().add_modifier(Modifier::BOLD),
        ));
        spans.push(Span::raw(body));
    }
    if m.edited {
        spans.push(Span::styled(
            " (edited)",
            Style::default().fg(Color::DarkGray),
        ));
    }
    if !m.reactions.is_empty() {
        let r: String = m.reactions.values().cloned().collect();
        spans.push(Span::raw(format!(" {r}")));
    }
    if m.expires_after_ms.is_some() {
        spans.push(Span::styled(" ⏱", Style::default().fg(Color::DarkGray)));
    }
    if m.mine && !m.deleted {
        let receipt = if !m.read_by.is_empty() {
            " ✓✓ read"
        } else if !m.delivered_to.is_empty() {
            " ✓ delivered"
        } else {
            ""
        };
        spans.push(Span::styled(receipt, Style::default().fg(Color::DarkGray)));
    }
    Line::from(spans)
}

/// Draws the whole window.
pub fn draw(frame: &mut Frame<'_>, view: &View, ui: &Ui) {
    let [main, input, help] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let [list_area, messages_area] =
        Layout::horizontal([Constraint::Length(28), Constraint::Min(10)]).areas(main);

    let items: Vec<ListItem<'_>> = view
        .conversations
        .iter()
        .map(|c| {
            let mut spans = vec![shield(c.verification), Span::raw(c.name.clone())];
            if c.unread > 0 {
                spans.push(Span::styled(
                    format!(" ({})", c.unread),
                    Style::default().add_modifier(Modifier::BOLD),
                ));
            }
            ListItem::new(Line::from(spans))
        })
        .collect();
    let mut state = ListState::default().with_selected(view.selected);
    frame.render_stateful_widget(
        List::new(items)
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title("Conversations"),
            )
            .highlight_style(Style::default().add_modifier(Modifier::REVERSED)),
        list_area,
        &mut state,
    );

    let selected = view.selected.and_then(|i| view.conversations.get(i));
    let title = selected.map_or_else(
        || "No conversation yet: connect with someone (parley connect)".to_owned(),
        |c| match c.verification {
            Verification::Verified => format!("{} — verified", c.name),
            Verification::Degraded => {
                format!("{} — DEGRADED: a new device is not verified", c.name)
            }
            Verification::NonVerified => c.name.clone(),
        },
    );
    let mut lines: Vec<Line<'_>> = view
        .messages
        .iter()
        .map(|(name, m)| message_spans(name, m))
        .collect();
    if let Some(c) = selected
        && let Some((who, until)) = ui.typing.get(&c.id.id)
        && *until > Instant::now()
    {
        lines.push(Line::styled(
            format!("{who} is typing…"),
            Style::default().fg(Color::DarkGray),
        ));
    }
    let height = usize::from(messages_area.height.saturating_sub(2));
    let skip = lines.len().saturating_sub(height);
    frame.render_widget(
        Paragraph::new(lines.split_off(skip))
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(title)),
        messages_area,
    );

    let input_title = if ui.status.is_empty() {
        "Message".to_owned()
    } else {
        ui.status.clone()
    };
    frame.render_widget(
        Paragraph::new(ui.input.as_str())
            .block(Block::default().borders(Borders::ALL).title(input_title)),
        input,
    );
    let help_text = if ui.confirm_pending {
        "Ctrl-Y send anyway · Esc cancel"
    } else {
        "↑/↓ conversation · Enter send · Ctrl-K knock · Ctrl-C quit"
    };
    frame.render_widget(
        Paragraph::new(help_text).style(Style::default().add_modifier(Modifier::REVERSED)),
        help,
    );
}

/// Runs the chat until Ctrl-C.
pub async fn run(mut account: Account) -> Result<()> {
    let mut terminal = ratatui::init();
    let result = event_loop(&mut terminal, &mut account).await;
    ratatui::restore();
    result
}

async fn event_loop(terminal: &mut ratatui::DefaultTerminal, account: &mut Account) -> Result<()> {
    let (keys_tx, mut keys) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while let Ok(event) = event::read() {
            if keys_tx.send(event).is_err() {
                return;
            }
        }
    });
    let mut ui = Ui::default();
    let mut socket = account.connect().await?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let mut view = View::of(account, &mut ui.selected).await?;
        // The shown conversation counts as read (and its self-deleting timers start).
        if let Some(c) = view.selected.and_then(|i| view.conversations.get(i))
            && c.unread > 0
        {
            if let Err(e) = account.open_conversation(&c.id).await {
                ui.status = e.to_string();
            }
            view = View::of(account, &mut ui.selected).await?;
        }
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
            _ = tick.tick() => {}
        }
    }
}

/// Applies one key press: moves the selection, edits the input line, sends.
/// A message goes to the selected conversation, whatever the list shows now.
pub async fn on_key(account: &mut Account, view: &View, ui: &mut Ui, key: KeyEvent) {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let conversation = ui.selected.clone();
    let step = |by: isize| {
        let last = view.conversations.len().checked_sub(1)?;
        let at = view
            .selected
            .map_or(0, |i| i.saturating_add_signed(by).min(last));
        view.conversations.get(at).map(|c| c.id.clone())
    };
    match key.code {
        KeyCode::Char('c') if ctrl => ui.quit = true,
        KeyCode::Up => {
            if let Some(id) = step(-1) {
                ui.selected = Some(id);
            }
        }
        KeyCode::Down | KeyCode::Tab => {
            if let Some(id) = step(1) {
                ui.selected = Some(id);
            }
        }
        KeyCode::Esc => {
            ui.confirm_pending = false;
            ui.status.clear();
        }
        KeyCode::Char('k') if ctrl => {
            if let Some(c) = conversation {
                report(ui, account.knock(&c).await.map(|_| ()));
            }
        }
        KeyCode::Char('y') if ctrl && ui.confirm_pending => {
            if let Some(c) = conversation {
                ui.confirm_pending = false;
                let text = std::mem::take(&mut ui.input);
                report(ui, account.send_text(&c, &text, true).await.map(|_| ()));
            }
        }
        KeyCode::Enter if !ui.input.trim().is_empty() => {
            if let Some(c) = conversation {
                match account.send_text(&c, &ui.input, false).await {
                    Err(ClientError::Degraded) => {
                        ui.confirm_pending = true;
                        ui.status =
                            "Not sent: a device in this conversation is not verified".into();
                    }
                    other => {
                        if other.is_ok() {
                            ui.input.clear();
                        }
                        report(ui, other.map(|_| ()));
                    }
                }
                let _ = account.typing(&c, false).await;
                ui.typing_sent = None;
            }
        }
        KeyCode::Backspace => {
            ui.input.pop();
        }
        KeyCode::Char(ch) if !ctrl => {
            ui.input.push(ch);
            if let Some(c) = conversation
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

fn report(ui: &mut Ui, result: Result<(), ClientError>) {
    ui.status = match result {
        Ok(()) => String::new(),
        Err(e) => format!("Error: {e}"),
    };
}
