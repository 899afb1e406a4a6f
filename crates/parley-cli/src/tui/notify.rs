//! Desktop notifications, off unless asked for (`parley tui --notify`): a line
//! saying where a message arrived, never what it says (a notifier may log or
//! show it on a locked screen), through the desktop's notifier: `notify-send`,
//! or `osascript` on macOS.

use parley_client::account::{Account, Update};

use super::state::Ui;

/// What to tell the desktop about these updates: one line per conversation
/// where someone else's message arrived, unless it is muted or on screen.
pub async fn notifications(account: &mut Account, ui: &Ui, updates: &[Update]) -> Vec<String> {
    let mut lines = Vec::new();
    for update in updates {
        let Update::Message { conversation, id } = update else {
            continue;
        };
        if !ui.locked && ui.selected.as_ref() == Some(conversation) {
            continue;
        }
        let Some(name) = account
            .conversation(conversation)
            .filter(|c| !c.muted)
            .map(|c| c.name.clone())
        else {
            continue;
        };
        let Ok(Some(m)) = account.message(conversation, id).await else {
            continue;
        };
        // The name is a peer's choice: shown as text, with nothing a notifier
        // could take for markup.
        let name = crate::text::printable(&name, false).replace(['<', '>', '&'], "");
        let line = format!("New message in {name}");
        if !m.mine && !m.is_notice() && !lines.contains(&line) {
            lines.push(line);
        }
    }
    lines
}

/// Shows a line on the desktop; false when no notifier could be started.
pub fn show(line: &str) -> bool {
    let mut command = if cfg!(target_os = "macos") {
        let mut c = std::process::Command::new("osascript");
        c.arg("-e").arg(format!(
            "display notification {line:?} with title \"Parley\""
        ));
        c
    } else {
        let mut c = std::process::Command::new("notify-send");
        c.args(["--app-name=Parley", "Parley", line]);
        c
    };
    let started = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match started {
        Ok(mut child) => {
            // Reaped off the event loop, so no notifier is left a zombie.
            std::thread::spawn(move || child.wait());
            true
        }
        Err(_) => false,
    }
}
