//! What a command prints: JSON for scripts, a line for people, and what a person can do about an error.

use super::*;

/// What a person can do about an error.
pub(crate) fn hint(e: &ClientError) -> Option<&'static str> {
    Some(match e {
        ClientError::Degraded | ClientError::NewDevices(_) => {
            "\n  Verify the new devices (`parley fingerprint <handle>`, `parley verify`) or send with --confirm."
        }
        ClientError::NotLoggedIn => "\n  Run `parley login --email <you>`.",
        ClientError::WrongPassphrase => {
            "\n  Check PARLEY_PASSPHRASE (this device) or PARLEY_RECOVERY_PASSPHRASE (a new device)."
        }
        ClientError::WeakPassphrase(_) => {
            "\n  Choose a longer PARLEY_RECOVERY_PASSPHRASE: four or more unrelated words."
        }
        ClientError::Transport(_) => {
            "\n  Is the server running? `parley server` shows which one this device uses."
        }
        _ => return None,
    })
}

/// Prints a JSON document or the text for people.
pub(crate) fn show(json: bool, value: &Value, text: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        println!("{}", text());
    }
}

/// A message for scripts: times in Unix seconds, people by id (names change
/// and repeat; `from_name` is for showing).
pub(crate) fn message_json(account: &Account, m: &Message) -> Value {
    json!({
        "id": m.id,
        "from": m.from,
        "from_name": account.name_of(m.from),
        "sender_device": m.sender,
        "time": m.time,
        "kind": m.kind,
        "text": m.text,
        "mine": m.mine,
        "edited": m.edited,
        "deleted": m.deleted,
        "reactions": m.reactions.iter().map(|(u, e)| (u.to_string(), e.clone())).collect::<std::collections::BTreeMap<_, _>>(),
        "delivered_to": m.delivered_to.len(),
        "read_by": m.read_by.len(),
        "expires_at": m.expires_at.map(|ms| ms.div_euclid(1000)),
        "pending": m.pending,
        "reply_to": m.reply_to,
    })
}

/// A message for people: `[id] who: text (extras)`. A reply says what it
/// answers: `quoted` is `Some(Some(original))`, or `Some(None)` when the
/// original is not on this device.
pub(crate) fn message_line(
    account: &Account, m: &Message, quoted: Option<Option<&Message>>,
) -> String {
    let who = if m.mine {
        "you".to_owned()
    } else {
        printable(&account.name_of(m.from), false)
    };
    let short = printable(&m.id.chars().take(8).collect::<String>(), false);
    if m.is_notice() {
        // A notice is nobody's words: no name in front of it.
        return format!("[{short}] * {}", printable(&m.body(), false));
    }
    // Further lines of a text are indented under the first, so that no
    // line of it reads as an entry of its own.
    let body = printable(&m.body(), true).replace('\n', "\n           ");
    let mut extras = Vec::new();
    if m.edited {
        extras.push("edited".to_owned());
    }
    if !m.reactions.is_empty() {
        extras.push(printable(
            &m.reactions.values().cloned().collect::<Vec<_>>().join(""),
            false,
        ));
    }
    if m.mine && !m.read_by.is_empty() {
        extras.push(format!("read by {}", m.read_by.len()));
    } else if m.mine && !m.delivered_to.is_empty() {
        extras.push("delivered".into());
    }
    if m.expires_after_ms.is_some() {
        extras.push("self-deleting".into());
    }
    let extras = if extras.is_empty() {
        String::new()
    } else {
        format!("  ({})", extras.join(", "))
    };
    let reply = match quoted {
        None => String::new(),
        Some(Some(q)) => format!(
            " (replying to {}: {:?})",
            if q.mine {
                "you".to_owned()
            } else {
                printable(&account.name_of(q.from), false)
            },
            excerpt(&q.body(), 40)
        ),
        Some(None) => " (replying to a message not on this device)".into(),
    };
    format!("[{short}] {who}{reply}: {body}{extras}")
}
