//! Commands typed in the input line (`/leave`, `/block`, `/new`, …). Each
//! says in the status line what it did, or why not; a refused one leaves the
//! input as typed, to mend.

use parley_api::{ConversationKind, Qualified, UserId};
use parley_client::ClientError;
use parley_client::account::Account;

use super::View;
use super::keys::{find, open_search, report};
use super::state::Ui;

/// The commands, for the help screen: what to type, what it does.
pub(super) const COMMANDS: [(&str, &str); 14] = [
    (
        "/new <handle>",
        "start a 1:1 (asks them to connect, or accepts their request)",
    ),
    (
        "/group [--mls] <name> <handles…>",
        "create a group with these people (--mls: an MLS group)",
    ),
    (
        "/migrate",
        "move this conversation to MLS (a group's admins, either side of a 1:1)",
    ),
    (
        "/call",
        "join this MLS conversation's call (start it if nobody has): its key's fingerprint",
    ),
    ("/hangup", "leave this conversation's call"),
    ("/leave", "leave this group (its history stays here)"),
    ("/mute, /unmute", "mute this conversation on this device"),
    ("/block [handle]", "block them (in a 1:1: the other person)"),
    ("/unblock <handle>", "take a block back"),
    ("/search <words>", "search the history on this device"),
    ("//text", "send a text that starts with /"),
    ("/help", "this screen"),
    ("/quit", "quit"),
    ("Ctrl-K", "knock"),
];

/// Runs the command `line` (without its `/`).
pub(super) async fn run(account: &mut Account, view: &View, ui: &mut Ui, line: &str) {
    let mut words = line.split_whitespace();
    let name = words.next().unwrap_or_default();
    let args: Vec<&str> = words.collect();
    match command(account, view, ui, name, &args).await {
        Ok(said) => {
            ui.input.clear();
            ui.status = said;
        }
        Err(e) => report(ui, Err(e)),
    }
}

fn usage(how: &str) -> ClientError {
    ClientError::Refused {
        label: "usage",
        message: format!("usage: {how}"),
    }
}

fn here(ui: &Ui) -> Result<Qualified<parley_api::ConversationId>, ClientError> {
    ui.selected.clone().ok_or_else(|| ClientError::Refused {
        label: "no-such-conversation",
        message: "no conversation selected".into(),
    })
}

async fn command(
    account: &mut Account, view: &View, ui: &mut Ui, name: &str, args: &[&str],
) -> Result<String, ClientError> {
    let name_here = view
        .conversation()
        .map(|c| c.name.clone())
        .unwrap_or_default();
    Ok(match (name, args) {
        ("help", _) => {
            ui.help = true;
            String::new()
        }
        ("quit", _) => {
            ui.quit = true;
            String::new()
        }
        ("search", []) => {
            open_search(ui);
            String::new()
        }
        ("search", words) => {
            let query = words.join(" ");
            let hits = find(account, &query).await?;
            open_search(ui);
            if let Some(search) = ui.search.as_mut() {
                search.query = query;
                search.editing = false;
                search.index = hits.len().saturating_sub(1);
                search.hits = hits;
            }
            String::new()
        }
        ("leave", []) => {
            account.leave(&here(ui)?).await?;
            format!("You left {name_here}; its history stays on this device.")
        }
        ("leave", _) => return Err(usage("/leave (in the group to leave)")),
        ("migrate", []) => match account.migrate(&here(ui)?).await? {
            parley_client::account::Migration::Mls => {
                format!("{name_here} is an MLS conversation now.")
            }
            parley_client::account::Migration::Mixed { waiting } => format!(
                "{name_here} is moving to MLS (messages go by Proteus meanwhile): {waiting}."
            ),
        },
        ("migrate", _) => return Err(usage("/migrate (in the conversation to move)")),
        ("call", []) => {
            let key = account.join_call(&here(ui)?).await?;
            format!(
                "In the call of {name_here}: epoch {}, key {} (the same on every \
                 participant's device).",
                key.epoch,
                key.fingerprint()
            )
        }
        ("hangup", []) => {
            account.leave_call(&here(ui)?).await?;
            format!("You left the call of {name_here}.")
        }
        ("call" | "hangup", _) => {
            return Err(usage("/call, /hangup (in the conversation of the call)"));
        }
        ("mute" | "unmute", []) => {
            let muted = name == "mute";
            account.set_muted(&here(ui)?, muted).await?;
            format!("{} {name_here}.", if muted { "Muted" } else { "Unmuted" })
        }
        ("block", [handle]) => {
            let user = account.find(handle).await?;
            account.block(&user).await?;
            format!("Blocked {handle}: neither of you can send to the other.")
        }
        ("block", []) => {
            let me = account.user();
            let peer: Option<UserId> = view
                .conversation()
                .filter(|c| c.kind == ConversationKind::One2one)
                .and_then(|c| c.members.iter().copied().find(|u| *u != me));
            let Some(peer) = peer else {
                return Err(usage("/block <handle> (in a group, say whom)"));
            };
            account.block(&account.qualified(peer)).await?;
            format!("Blocked {name_here}: neither of you can send to the other.")
        }
        ("unblock", [handle]) => {
            let user = account.find(handle).await?;
            account.unblock(&user).await?;
            format!("Unblocked {handle}.")
        }
        ("new", [handle]) => {
            let user = account.find(handle).await?;
            let existing = view
                .conversations
                .iter()
                .find(|c| c.kind == ConversationKind::One2one && c.members.contains(&user.id));
            if let Some(c) = existing {
                ui.select(c.id.clone());
                format!("Your conversation with {handle}.")
            } else if account.requests().await?.iter().any(|r| r.user == user.id) {
                let id = account.accept(&user).await?;
                ui.select(id);
                format!("Connected with {handle}.")
            } else {
                account.connect_to(&user).await?;
                format!("Asked {handle} to connect: the conversation appears when they accept.")
            }
        }
        ("group", ["--mls", group, handles @ ..]) if !handles.is_empty() => {
            let mut users = Vec::new();
            for handle in handles {
                users.push(account.find(handle).await?);
            }
            let id = account.create_mls_group(group, users, false).await?;
            ui.select(id);
            format!("Created {group} (MLS).")
        }
        ("group", [group, handles @ ..]) if !handles.is_empty() => {
            let mut users = Vec::new();
            for handle in handles {
                users.push(account.find(handle).await?);
            }
            let id = account.create_group(group, users, false).await?;
            ui.select(id);
            format!("Created {group}.")
        }
        ("new" | "unblock", _) => return Err(usage(&format!("/{name} <handle>"))),
        ("block", _) => return Err(usage("/block [handle]")),
        ("group", _) => return Err(usage("/group [--mls] <name> <handle> [handles…]")),
        _ => {
            return Err(ClientError::Refused {
                label: "unknown-command",
                message: format!("no command /{name}: ? lists them (// sends a text with a /)"),
            });
        }
    })
}
