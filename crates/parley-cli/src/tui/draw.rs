//! Drawing: a pure function of a [`View`] and the [`Ui`] state, so tests
//! render it with ratatui's test backend. Messages carry their time, days are
//! separated, the first unread message is marked, replies show what they
//! quote, and long lines are wrapped here so that scrolling counts real rows.

use std::time::Instant;

use parley_client::account::Message;
use parley_client::verification::Verification;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph, Wrap};
use time::OffsetDateTime;
use time::macros::format_description;

use super::View;
use super::commands::COMMANDS;
use super::keys::QUICK_REACTIONS;
use super::state::{Compose, Mode, Search, Ui};
use crate::text::{excerpt, when};

/// The most lines the input box grows to.
const INPUT_LINES: usize = 6;

fn dim() -> Style {
    Style::default().fg(Color::DarkGray)
}

fn shield(v: Verification) -> Span<'static> {
    match v {
        Verification::Verified => Span::styled("✔ ", Style::default().fg(Color::Blue)),
        Verification::Degraded => Span::styled("⚠ ", Style::default().fg(Color::Red)),
        Verification::NonVerified => Span::raw("  "),
    }
}

/// A message's lines: `HH:MM name: text`, its further lines indented, and
/// what happened to it (edited, reactions, receipts) at the end.
fn message_lines(name: &str, m: &Message, clock: &str) -> Vec<Line<'static>> {
    let body = m.body();
    let mut texts = body.split('\n');
    let first = texts.next().unwrap_or_default().to_owned();
    let mut first_line = vec![Span::styled(format!("{clock} "), dim())];
    if m.is_notice() {
        first_line.push(Span::styled(
            format!("* {first}"),
            Style::default().add_modifier(Modifier::ITALIC),
        ));
    } else {
        first_line.push(Span::styled(
            format!("{name}: "),
            Style::default().add_modifier(Modifier::BOLD),
        ));
        first_line.push(Span::raw(first));
    }
    let indent = " ".repeat(clock.chars().count() + 1);
    let mut lines = vec![first_line];
    lines.extend(texts.map(|t| vec![Span::raw(format!("{indent}{t}"))]));
    let last = lines.last_mut().expect("a first line");
    if m.edited {
        last.push(Span::styled(" (edited)", dim()));
    }
    if !m.reactions.is_empty() {
        let r: String = m.reactions.values().cloned().collect();
        last.push(Span::raw(format!(" {r}")));
    }
    if m.expires_after_ms.is_some() {
        last.push(Span::styled(" ⏱", dim()));
    }
    if m.pending {
        last.push(Span::styled(" (not sent yet)", dim()));
    } else if m.mine && !m.deleted {
        let receipt = if !m.read_by.is_empty() {
            " ✓✓ read"
        } else if !m.delivered_to.is_empty() {
            " ✓ delivered"
        } else {
            ""
        };
        last.push(Span::styled(receipt, dim()));
    }
    lines.into_iter().map(Line::from).collect()
}

/// The line above a reply: whom and what it answers.
fn quote_line(view: &View, id: &str, clock: &str) -> Line<'static> {
    let indent = " ".repeat(clock.chars().count() + 1);
    let quoted = match view.message(id) {
        Some((who, q)) => format!("↱ {who}: {}", excerpt(&q.body(), 60)),
        None => "↱ a message not on this device".to_owned(),
    };
    Line::styled(
        format!("{indent}{quoted}"),
        dim().add_modifier(Modifier::ITALIC),
    )
}

/// Splits a line into rows of at most `width` columns.
pub(super) fn wrap(line: Line<'static>, width: usize) -> Vec<Line<'static>> {
    if width == 0 || line.width() <= width {
        return vec![line];
    }
    let base = line.style;
    let mut rows = Vec::new();
    let mut row: Vec<Span<'static>> = Vec::new();
    let mut used = 0;
    for span in &line.spans {
        for g in span.styled_graphemes(base) {
            let w = Span::raw(g.symbol).width();
            if used + w > width && used > 0 {
                rows.push(Line::from(std::mem::take(&mut row)));
                used = 0;
            }
            match row.last_mut() {
                Some(last) if last.style == g.style => last.content.to_mut().push_str(g.symbol),
                _ => row.push(Span::styled(g.symbol.to_owned(), g.style)),
            }
            used += w;
        }
    }
    if !row.is_empty() {
        rows.push(Line::from(row));
    }
    rows
}

/// The message pane's rows, and where the picked message is among them.
fn message_rows(
    view: &View, ui: &Ui, width: usize,
) -> (Vec<Line<'static>>, Option<(usize, usize)>) {
    let day_format = format_description!("[weekday], [day padding:none] [month repr:long] [year]");
    let clock_format = format_description!("[hour]:[minute]");
    let conversation = view.conversation().map(|c| c.id.id);
    let unread_from = conversation
        .and_then(|c| ui.unread_from.get(&c))
        .or(view.first_unread.as_ref());
    let mut rows = Vec::new();
    let mut picked = None;
    let mut day = None;
    for (name, m) in &view.messages {
        let at = OffsetDateTime::from_unix_timestamp(m.time)
            .map(|t| t.to_offset(ui.offset()))
            .ok();
        if let Some(at) = at
            && day != Some(at.date())
        {
            day = Some(at.date());
            let label = at.format(&day_format).unwrap_or_default();
            rows.push(Line::styled(format!("──── {label} ────"), dim()));
        }
        if unread_from == Some(&m.id) {
            rows.push(Line::styled(
                "──── new ────",
                Style::default().fg(Color::Red),
            ));
        }
        let clock = at
            .and_then(|t| t.format(&clock_format).ok())
            .unwrap_or_else(|| "--:--".into());
        let start = rows.len();
        let mut lines = Vec::new();
        if let Some(id) = &m.reply_to {
            lines.push(quote_line(view, id, &clock));
        }
        lines.extend(message_lines(name, m, &clock));
        let is_picked = ui.picked.as_deref() == Some(m.id.as_str());
        for line in lines {
            let line = if is_picked {
                line.patch_style(Style::default().add_modifier(Modifier::REVERSED))
            } else {
                line
            };
            rows.extend(wrap(line, width));
        }
        if is_picked {
            picked = Some((start, rows.len()));
        }
    }
    (rows, picked)
}

/// Draws the whole window.
pub fn draw(frame: &mut Frame<'_>, view: &View, ui: &Ui) {
    if ui.locked {
        draw_lock(frame, ui);
        return;
    }
    let input_lines = ui.input.split('\n').count().clamp(1, INPUT_LINES);
    let input_height = u16::try_from(input_lines + 2).unwrap_or(3);
    let [main, input, help] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(input_height),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let [list_area, messages_area] =
        Layout::horizontal([Constraint::Length(28), Constraint::Min(10)]).areas(main);

    draw_list(frame, view, list_area);
    match &ui.search {
        Some(search) => draw_search(frame, search, ui, messages_area),
        None => draw_messages(frame, view, ui, messages_area),
    }
    draw_input(frame, view, ui, input, input_lines);
    frame.render_widget(
        Paragraph::new(help_bar(ui)).style(Style::default().add_modifier(Modifier::REVERSED)),
        help,
    );
    if ui.help {
        draw_help(frame);
    }
}

/// The lock screen: nothing of the conversations, the passphrase as dots.
fn draw_lock(frame: &mut Frame<'_>, ui: &Ui) {
    let said = if ui.status.is_empty() {
        "Type this device's local passphrase, then Enter.".to_owned()
    } else {
        ui.status.clone()
    };
    let lines = vec![
        Line::raw(said),
        Line::raw(""),
        Line::raw(format!(
            "Passphrase: {}",
            "•".repeat(ui.unlock.0.chars().count())
        )),
        Line::styled("Ctrl-C quits", dim()),
    ];
    popup(frame, 64, 6, "Parley is locked", lines);
}

/// A bordered box of `lines` under `title`, `width` × `height` at most,
/// centred over whatever is below it.
fn popup(frame: &mut Frame<'_>, width: u16, height: u16, title: &str, lines: Vec<Line<'_>>) {
    let area = frame.area();
    let (width, height) = (width.min(area.width), height.min(area.height));
    let at = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, at);
    frame.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(title)),
        at,
    );
}

fn draw_list(frame: &mut Frame<'_>, view: &View, area: Rect) {
    let items: Vec<ListItem<'_>> = view
        .conversations
        .iter()
        .map(|c| {
            let mut spans = vec![shield(c.verification), Span::raw(c.name.clone())];
            if c.unread > 0 {
                let style = if c.muted {
                    dim()
                } else {
                    Style::default().add_modifier(Modifier::BOLD)
                };
                spans.push(Span::styled(format!(" ({})", c.unread), style));
            }
            match c.protocol {
                parley_api::Protocol::Mls => spans.push(Span::styled(" mls", dim())),
                parley_api::Protocol::Mixed => spans.push(Span::styled(" mixed", dim())),
                parley_api::Protocol::Proteus => {}
            }
            if c.muted {
                spans.push(Span::styled(" muted", dim()));
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
        area,
        &mut state,
    );
}

fn draw_messages(frame: &mut Frame<'_>, view: &View, ui: &Ui, area: Rect) {
    let selected = view.conversation();
    let mut title = selected.map_or_else(
        || "No conversation yet: /new <handle> starts one".to_owned(),
        |c| match c.verification {
            Verification::Verified => format!("{} — verified", c.name),
            Verification::Degraded => {
                format!("{} — DEGRADED: a new device is not verified", c.name)
            }
            Verification::NonVerified => c.name.clone(),
        },
    );
    let width = usize::from(area.width.saturating_sub(2));
    let height = usize::from(area.height.saturating_sub(2));
    let (mut rows, picked) = message_rows(view, ui, width);
    if let Some(c) = selected
        && let Some((who, until)) = ui.typing.get(&c.id.id)
        && *until > Instant::now()
    {
        rows.push(Line::styled(format!("{who} is typing…"), dim()));
    }
    let newest = rows.len().saturating_sub(height);
    ui.page.set(height.saturating_sub(1).max(1));
    ui.max_scroll.set(newest);
    let mut skip = newest - ui.scroll.min(newest);
    if let Some((first, end)) = picked {
        if first < skip {
            skip = first;
        } else if end > skip + height {
            skip = end.saturating_sub(height).min(newest);
        }
    }
    if skip < newest {
        title.push_str(" · scrolled back (End: newest)");
    }
    let shown: Vec<Line<'static>> = rows.into_iter().skip(skip).take(height).collect();
    frame.render_widget(
        Paragraph::new(shown).block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
}

fn draw_search(frame: &mut Frame<'_>, search: &Search, ui: &Ui, area: Rect) {
    let title = if search.editing {
        format!("Search this device: {}▏ (Enter)", search.query)
    } else {
        format!(
            "{} found for {:?} · ↑/↓ · Enter: go there · Esc: close",
            search.hits.len(),
            search.query
        )
    };
    let height = usize::from(area.height.saturating_sub(2));
    let mut lines: Vec<Line<'static>> = search
        .hits
        .iter()
        .enumerate()
        .map(|(i, hit)| {
            let line = Line::from(vec![
                Span::styled(
                    format!(
                        "{} · {} · ",
                        hit.conversation_name,
                        when(hit.time, ui.offset())
                    ),
                    dim(),
                ),
                Span::styled(
                    format!("{}: ", hit.who),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::raw(hit.text.clone()),
            ]);
            if i == search.index && !search.editing {
                line.patch_style(Style::default().add_modifier(Modifier::REVERSED))
            } else {
                line
            }
        })
        .collect();
    if lines.is_empty() && !search.editing {
        lines.push(Line::styled("Nothing on this device says that.", dim()));
    }
    let skip = (search.index + 1).saturating_sub(height);
    frame.render_widget(
        Paragraph::new(lines.split_off(skip.min(lines.len())))
            .block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
}

fn draw_input(frame: &mut Frame<'_>, view: &View, ui: &Ui, area: Rect, lines: usize) {
    let about = |id: &str| {
        view.message(id).map_or_else(String::new, |(who, m)| {
            format!("{who}: {}", excerpt(&m.body(), 40))
        })
    };
    let title = if !ui.status.is_empty() {
        ui.status.clone()
    } else {
        match &ui.compose {
            Compose::Message => "Message".to_owned(),
            Compose::Reply(id) => format!("Reply to {} (Esc: cancel)", about(id)),
            Compose::Edit(_) => "Edit your message (Esc: cancel)".to_owned(),
            Compose::React(id) => format!("React to {} with (Esc: cancel)", about(id)),
        }
    };
    // The newest lines of a long input.
    let all: Vec<&str> = ui.input.split('\n').collect();
    let shown = all[all.len().saturating_sub(lines)..].join("\n");
    frame.render_widget(
        Paragraph::new(shown)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
}

fn help_bar(ui: &Ui) -> String {
    if ui.help {
        "Any key closes the help".into()
    } else if ui.search.is_some() {
        "Esc close · Enter search / go there · ↑/↓ pick".into()
    } else if ui.confirm_pending {
        "Ctrl-Y send anyway · Esc cancel".into()
    } else if ui.deleting.is_some() {
        "e delete for everyone · m delete just for me · any other key keeps it".into()
    } else if ui.mode == Mode::Browse {
        "r reply · e edit · d delete · 1-5 react · + emoji · ↑/↓ pick · / search · Esc back".into()
    } else {
        "? help · Ctrl-C quit · Enter send · Alt+Enter new line · ↑/↓ conversation · Alt+↑ pick a message · PgUp/PgDn scroll"
            .into()
    }
}

/// The help screen: every key and command.
fn draw_help(frame: &mut Frame<'_>) {
    let keys: [(&str, &str); 13] = [
        ("Enter", "send (a /command runs)"),
        ("Alt+Enter, Shift+Enter, Ctrl-J", "new line"),
        ("↑/↓, Tab", "previous / next conversation"),
        ("Tab after @", "complete a member's name (a mention)"),
        (
            "PgUp/PgDn, Home/End",
            "scroll back / forward, oldest / newest",
        ),
        ("Alt+↑ or Ctrl-P", "pick a message (then ↑/↓)"),
        ("  r / e / d", "reply / edit / delete the picked message"),
        ("  1-5, 0, +", "react (quick picks, take back, any emoji)"),
        (
            "Ctrl-F, or / when picking",
            "search the history on this device",
        ),
        ("Ctrl-Y", "send anyway to a degraded conversation"),
        ("Esc", "cancel a reply, an edit, a pick"),
        ("?, F1", "this help (with nothing typed)"),
        ("Ctrl-C", "quit"),
    ];
    let reactions = QUICK_REACTIONS.join(" ");
    let mut lines: Vec<Line<'static>> = vec![Line::styled(
        "Keys",
        Style::default().add_modifier(Modifier::BOLD),
    )];
    let row = |k: &str, what: &str| {
        Line::from(vec![
            Span::styled(format!("{k:<31}"), Style::default().fg(Color::Cyan)),
            Span::raw(what.to_owned()),
        ])
    };
    lines.extend(keys.iter().map(|(k, w)| row(k, w)));
    lines.push(Line::styled(
        format!("Quick reactions 1-5: {reactions}"),
        dim(),
    ));
    lines.push(Line::styled(
        "Commands",
        Style::default().add_modifier(Modifier::BOLD),
    ));
    lines.extend(COMMANDS.iter().map(|(k, w)| row(k, w)));
    let height = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
    popup(frame, 96, height, "Help (any key closes)", lines);
}
