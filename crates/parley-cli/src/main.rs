//! `parley`: Parley from the terminal. Every subcommand prints text for people or,
//! with `--json`, one JSON document for scripts; `parley tui` is a chat window.
//!
//! Secrets never go on the command line: the local passphrase, the recovery
//! passphrase, the account password and the backup password come from
//! `PARLEY_PASSPHRASE`, `PARLEY_RECOVERY_PASSPHRASE`, `PARLEY_PASSWORD` and
//! `PARLEY_BACKUP_PASSWORD`, or are asked for.

// A command-line program: printing is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use parley_cli::text::{excerpt, local_offset, printable, when};
use parley_cli::tui;

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use parley_api::{ClientId, Qualified, Register, UserId};
use parley_client::ClientError;
use parley_client::account::{Account, Message, Update};
use parley_client::api::Api;
use serde_json::{Value, json};

mod listen;
mod messages;
mod output;
mod secrets;

use listen::*;
use messages::*;
use output::*;
use secrets::*;

#[derive(Parser)]
#[command(
    name = "parley",
    version,
    about = "Parley: end-to-end encrypted messaging from the terminal",
    after_help = "Secrets come from PARLEY_PASSPHRASE, PARLEY_RECOVERY_PASSPHRASE, PARLEY_PASSWORD and PARLEY_BACKUP_PASSWORD, or are asked for."
)]
struct Cli {
    /// This device's directory: keys, sessions and history, all encrypted.
    #[arg(long, env = "PARLEY_DIR", global = true)]
    dir: Option<PathBuf>,
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show or set the server this device talks to.
    Server {
        /// For example https://parley.example.org.
        url: Option<String>,
    },
    /// Create an account. Without --code, mails a code; run again with it.
    Register {
        /// Your e-mail address.
        #[arg(long)]
        email: String,
        /// Your name as others see it.
        #[arg(long)]
        name: String,
        /// The code from the e-mail.
        #[arg(long)]
        code: Option<String>,
        /// A handle others find you by.
        #[arg(long)]
        handle: Option<String>,
        /// Hardened mode: no recovery passphrase; a recovery code is printed
        /// once, and the server never holds what opens your recovery bundle.
        /// Lose the code and no new device can get your root key.
        #[arg(long)]
        hardened: bool,
    },
    /// Log in and add this device (your root key comes from your recovery bundle).
    Login {
        /// Your e-mail address.
        #[arg(long)]
        email: String,
    },
    /// Log out on this device (keys and history stay, encrypted; `login`
    /// brings it back).
    Logout,
    /// Change your handle or your name.
    Profile {
        /// A new handle others find you by.
        #[arg(long)]
        handle: Option<String>,
        /// A new name as others see it.
        #[arg(long)]
        name: Option<String>,
    },
    /// List your devices, or remove one.
    Devices {
        /// Remove this device (its id).
        #[arg(long)]
        remove: Option<String>,
    },
    /// Ask someone to connect.
    Connect {
        /// Their handle.
        handle: String,
    },
    /// Connection requests waiting for you.
    Requests,
    /// Accept a connection request.
    Accept {
        /// Their handle.
        handle: String,
    },
    /// Your conversations, with unread counts and verification.
    Convs,
    /// Create a group.
    Create {
        /// Its name.
        name: String,
        /// Members' handles.
        members: Vec<String>,
        /// Turn read receipts on.
        #[arg(long)]
        receipts: bool,
        /// An MLS group (one ciphertext per message for the whole group)
        /// instead of Proteus.
        #[arg(long)]
        mls: bool,
    },
    /// Add someone to a group.
    Add {
        /// The conversation (name or id prefix).
        conv: String,
        /// Their handle.
        handle: String,
    },
    /// Remove someone from a group.
    Remove {
        /// The conversation.
        conv: String,
        /// Their handle.
        handle: String,
    },
    /// Move a Proteus group to MLS (admins): it becomes mixed, every member
    /// device that can joins its MLS group, and it becomes MLS once all have
    /// joined; run again to see where it stands.
    Migrate {
        /// The group.
        conv: String,
    },
    /// Leave a group (its history stays on this device).
    Leave {
        /// The group.
        conv: String,
    },
    /// Mute a conversation on this device (or unmute it with --off).
    Mute {
        /// The conversation.
        conv: String,
        /// Unmute.
        #[arg(long)]
        off: bool,
    },
    /// Block someone: neither of you can send to the other. They are not told.
    Block {
        /// Their handle.
        handle: String,
    },
    /// Take a block back (someone you were connected with, or asked by).
    Unblock {
        /// Their handle.
        handle: String,
    },
    /// Send a text.
    Send {
        /// The conversation.
        conv: String,
        /// What to say.
        text: String,
        /// Send even though the conversation is degraded.
        #[arg(long)]
        confirm: bool,
        /// Disappear this many seconds after it is read.
        #[arg(long, value_name = "SECONDS")]
        ephemeral: Option<u64>,
    },
    /// Reply to a message: your text quotes it, and shows as a reply.
    Reply {
        /// The conversation.
        conv: String,
        /// The message id (its first characters, as `history` shows them).
        id: String,
        /// What to say.
        text: String,
        /// Send even though the conversation is degraded.
        #[arg(long)]
        confirm: bool,
    },
    /// Edit one of your messages.
    Edit {
        /// The conversation.
        conv: String,
        /// The message id.
        id: String,
        /// The new text.
        text: String,
    },
    /// Delete a message for you, or (your own) for everyone.
    Delete {
        /// The conversation.
        conv: String,
        /// The message id.
        id: String,
        /// For everyone.
        #[arg(long)]
        everyone: bool,
    },
    /// React to a message (an empty emoji takes it back).
    React {
        /// The conversation.
        conv: String,
        /// The message id.
        id: String,
        /// The emoji.
        emoji: String,
    },
    /// Search the history on this device (case-insensitive; offline too).
    Search {
        /// The words to find.
        text: String,
        /// Only in this conversation.
        #[arg(long)]
        conv: Option<String>,
    },
    /// Knock.
    Knock {
        /// The conversation.
        conv: String,
    },
    /// Show a conversation (this marks it read).
    History {
        /// The conversation.
        conv: String,
        /// Only the last N messages.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Print messages as they arrive.
    Listen {
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<usize>,
        /// Stop after this many seconds.
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Verify a person's device (compare fingerprints first) or root key.
    Verify {
        /// Their handle.
        handle: String,
        /// The device id (with --fingerprint).
        #[arg(long)]
        device: Option<String>,
        /// The device's fingerprint, as they read it to you.
        #[arg(long)]
        fingerprint: Option<String>,
        /// Their root key's fingerprint: trusts every device it signs.
        #[arg(long)]
        root: Option<String>,
    },
    /// Show fingerprints: yours, or a person's devices.
    Fingerprint {
        /// Their handle (yours without it).
        handle: Option<String>,
    },
    /// Start a fresh session with one device of a person.
    Reset {
        /// Their handle.
        handle: String,
        /// The device id.
        device: String,
    },
    /// This device in a conversation's call (MLS conversations): its
    /// group, and the key every participant derives from it.
    Call {
        #[command(subcommand)]
        action: CallAction,
    },
    /// Export or import your history (encrypted with a backup password).
    Backup {
        #[command(subcommand)]
        action: BackupAction,
    },
    /// A terminal chat window (`?` in it lists the keys).
    Tui {
        /// Lock the window after this many minutes without a key; your local
        /// passphrase unlocks it.
        #[arg(long, value_name = "MINUTES", env = "PARLEY_LOCK_AFTER",
              value_parser = clap::value_parser!(u64).range(1..))]
        lock_after: Option<u64>,
        /// Desktop notifications (notify-send; osascript on macOS): where a
        /// message arrived, never what it says.
        #[arg(long, env = "PARLEY_NOTIFY")]
        notify: bool,
    },
}

#[derive(Subcommand)]
enum CallAction {
    /// Join the call (start it if nobody has).
    Join {
        /// The conversation.
        conv: String,
    },
    /// Where this device stands in the call: its epoch and the key's
    /// fingerprint (the same on every participant's device).
    Status {
        /// The conversation.
        conv: String,
    },
    /// Leave the call.
    Leave {
        /// The conversation.
        conv: String,
    },
    /// End the call for everyone (one gone wrong): the next to join starts
    /// it anew.
    Reset {
        /// The conversation.
        conv: String,
    },
}

#[derive(Subcommand)]
enum BackupAction {
    /// Write your history to a file.
    Export {
        /// Where.
        file: PathBuf,
    },
    /// Read a backup you made.
    Import {
        /// The backup file.
        file: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    parley_client::failpoints_from_env();
    let cli = Cli::parse();
    let json = cli.json;
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let label = e
                .downcast_ref::<ClientError>()
                .map_or("error", ClientError::code)
                .to_owned();
            let hint = e
                .downcast_ref::<ClientError>()
                .and_then(hint)
                .unwrap_or_default();
            if json {
                println!("{}", json!({"error": label, "message": format!("{e:#}")}));
            } else {
                eprintln!("parley: {e:#}{hint}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// `parley call …`.
async fn call(dir: &Path, json: bool, action: CallAction) -> Result<()> {
    let mut account = open(dir).await?;
    let key_line = |conv: &str, key: &parley_client::account::CallKey| {
        format!(
            "In the call of {conv}: epoch {}, key {}.",
            key.epoch,
            key.fingerprint()
        )
    };
    match action {
        CallAction::Join { conv } => {
            let id = account.find_conversation(&conv).await?;
            let key = account.join_call(&id).await?;
            show(
                json,
                &json!({"conversation": id.id, "epoch": key.epoch, "key": key.fingerprint()}),
                || key_line(&conv, &key),
            );
        }
        CallAction::Status { conv } => {
            let id = account.find_conversation(&conv).await?;
            if account.call(id.id).is_some() {
                let key = account.call_key(id.id)?;
                show(
                    json,
                    &json!({"conversation": id.id, "epoch": key.epoch, "key": key.fingerprint()}),
                    || key_line(&conv, &key),
                );
            } else {
                show(
                    json,
                    &json!({"conversation": id.id, "in_call": false}),
                    || format!("This device is not in the call of {conv}."),
                );
            }
        }
        CallAction::Leave { conv } => {
            let id = account.find_conversation(&conv).await?;
            account.leave_call(&id).await?;
            show(json, &json!({"left_call": id.id}), || {
                format!("Left the call of {conv}.")
            });
        }
        CallAction::Reset { conv } => {
            let id = account.find_conversation(&conv).await?;
            account.reset_call(&id).await?;
            show(json, &json!({"reset_call": id.id}), || {
                format!("The call of {conv} is reset: the next to join starts it anew.")
            });
        }
    }
    Ok(())
}

async fn open(dir: &Path) -> Result<Account> {
    let mut account = Account::open(dir, &passphrase()?).await?;
    sync_or_offline(&mut account).await?;
    Ok(account)
}

/// Syncs; with the server unreachable, says so and goes on with what is on
/// this device (everything local works offline).
async fn sync_or_offline(account: &mut Account) -> Result<()> {
    match account.sync().await {
        Ok(_) => Ok(()),
        Err(e @ (ClientError::Transport(_) | ClientError::Api { status: 500.., .. })) => {
            eprintln!("Offline ({e}): showing what is on this device.");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

async fn person(account: &mut Account, who: &str) -> Result<Qualified<UserId>> {
    if let Ok(id) = who.parse::<UserId>() {
        return Ok(account.qualified(id));
    }
    account
        .find(who)
        .await
        .with_context(|| format!("nobody has the handle {who:?}"))
}

fn device_id(s: &str) -> Result<ClientId> {
    s.parse()
        .map_err(|_| anyhow!("{s:?} is not a device id (hex, as `parley devices` shows)"))
}

async fn run(cli: Cli) -> Result<()> {
    let dir = cli.dir.clone().unwrap_or_else(default_dir);
    let json = cli.json;
    match cli.command {
        Command::Server { url } => {
            if let Some(url) = url {
                Api::new(&url)?;
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                std::fs::write(server_file(&dir), &url)
                    .with_context(|| format!("writing {}", dir.display()))?;
            }
            let url = saved_server(&dir)?;
            show(json, &json!({"server": url}), || format!("Server: {url}"));
        }
        Command::Register {
            email,
            name,
            code,
            handle,
            hardened,
        } => {
            let server = saved_server(&dir)?;
            let Some(code) = code else {
                Api::new(&server)?.send_activation_code(&email).await?;
                show(json, &json!({"code_sent": email}), || {
                    format!("A code was sent to {email}. Run this again with --code <code>.")
                });
                return Ok(());
            };
            let password = secret("PARLEY_PASSWORD", "Account password")?;
            let passphrase = passphrase()?;
            // The handle is taken with the account, in one step: a taken
            // handle creates nothing, and the same code works with another.
            let register = Register {
                name,
                email,
                email_code: code,
                password,
                handle,
            };
            eprintln!("Creating your keys and registering this device…");
            let (account, recovery_code) = if hardened {
                let mut shown = None;
                // Printed the moment the bundle is stored: whatever fails after,
                // the person has the only key to it.
                let mut show = |code: &parley_client::trust::RecoveryCode| {
                    let text = code.to_text();
                    eprintln!(
                        "Your recovery code (write it down now; it is shown once, and a new \
                         device needs it as PARLEY_RECOVERY_PASSPHRASE):\n  {}",
                        text.as_str()
                    );
                    shown = Some(text);
                };
                let account =
                    Account::register_hardened(&dir, &passphrase, &server, &register, &mut show)
                        .await?;
                (account, shown)
            } else {
                let recovery = recovery_passphrase()?;
                let account =
                    Account::register(&dir, &passphrase, &recovery, &server, &register).await?;
                (account, None)
            };
            let (user, device, fp) = (account.user(), account.device_id(), account.fingerprint());
            show(
                json,
                &json!({"user": user, "device": device, "fingerprint": fp,
                        "root_fingerprint": account.root_fingerprint(),
                        "recovery_code": recovery_code.as_deref()}),
                || format!("Registered. This device is {device}.\nFingerprint: {fp}"),
            );
        }
        Command::Login { email } if Account::holds_device(&dir, &passphrase()?).await? => {
            // After a logout: the same device logs in again.
            let password = secret("PARLEY_PASSWORD", "Account password")?;
            let account = Account::log_in_again(&dir, &passphrase()?, &email, &password).await?;
            let (device, fp) = (account.device_id(), account.fingerprint());
            show(
                json,
                &json!({"user": account.user(), "device": device, "fingerprint": fp, "root_fingerprint": account.root_fingerprint()}),
                || format!("Logged in again. This device is {device}.\nFingerprint: {fp}"),
            );
        }
        Command::Login { email } => {
            let server = saved_server(&dir)?;
            let password = secret("PARLEY_PASSWORD", "Account password")?;
            let passphrase = passphrase()?;
            let recovery = recovery_passphrase()?;
            eprintln!("Logging in, restoring your root key and registering this device…");
            let account =
                Account::login(&dir, &passphrase, &recovery, &server, &email, &password).await?;
            let (device, fp) = (account.device_id(), account.fingerprint());
            show(
                json,
                &json!({"user": account.user(), "device": device, "fingerprint": fp, "root_fingerprint": account.root_fingerprint()}),
                || format!("Logged in. This device is {device}.\nFingerprint: {fp}"),
            );
        }
        Command::Profile { handle, name } => {
            let account = open(&dir).await?;
            if handle.is_none() && name.is_none() {
                bail!("give --handle or --name (or both)");
            }
            if let Some(h) = &handle {
                account.set_handle(h).await?;
            }
            if let Some(n) = &name {
                account.set_name(n).await?;
            }
            show(json, &json!({"handle": handle, "name": name}), || {
                "Profile changed.".into()
            });
        }
        Command::Logout => {
            let account = Account::open(&dir, &passphrase()?).await?;
            account.logout().await?;
            show(json, &json!({"logged_out": true}), || "Logged out.".into());
        }
        Command::Devices { remove } => {
            let mut account = open(&dir).await?;
            if let Some(id) = remove {
                let password = secret("PARLEY_PASSWORD", "Account password")?;
                account.remove_device(device_id(&id)?, &password).await?;
            }
            let devices = account.devices().await?;
            show(json, &serde_json::to_value(&devices)?, || {
                devices
                    .iter()
                    .map(|d| {
                        format!(
                            "{} {}{}{}",
                            d.client,
                            d.fingerprint.as_deref().unwrap_or("(fingerprint unknown)"),
                            if d.this_device { "  (this device)" } else { "" },
                            if d.flagged { "  INVALID SIGNATURE" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Connect { handle } => {
            let mut account = open(&dir).await?;
            let user = person(&mut account, &handle).await?;
            account.connect_to(&user).await?;
            show(json, &json!({"requested": user.id}), || {
                format!("Asked {handle} to connect.")
            });
        }
        Command::Requests => {
            let mut account = open(&dir).await?;
            let requests = account.requests().await?;
            show(
                json,
                &json!(
                    requests
                        .iter()
                        .map(|r| json!({"user": r.user, "name": r.name, "handle": r.handle}))
                        .collect::<Vec<_>>()
                ),
                || {
                    if requests.is_empty() {
                        "No requests.".into()
                    } else {
                        requests
                            .iter()
                            .map(|r| match &r.handle {
                                Some(handle) => format!("{} (@{handle})", r.name),
                                None => format!("{} ({})", r.name, r.user),
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    }
                },
            );
        }
        Command::Accept { handle } => {
            let mut account = open(&dir).await?;
            let user = person(&mut account, &handle).await?;
            let conv = account.accept(&user).await?;
            show(json, &json!({"conversation": conv.id}), || {
                format!("Connected with {handle}.")
            });
        }
        Command::Convs => {
            let mut account = open(&dir).await?;
            let convs: Vec<Value> = account
                .conversations()
                .await?
                .iter()
                .map(|c| {
                    json!({"id": c.id.id, "name": c.name, "kind": c.kind, "members": c.members.len(),
                           "unread": c.unread, "verification": c.verification, "muted": c.muted,
                           "protocol": c.protocol, "epoch": c.epoch})
                })
                .collect();
            show(json, &json!(convs), || {
                convs
                    .iter()
                    .map(|c| {
                        let protocol = match c["epoch"].as_u64() {
                            Some(epoch) if c["protocol"] != "proteus" => {
                                format!(
                                    "{}, epoch {epoch}",
                                    c["protocol"].as_str().unwrap_or_default()
                                )
                            }
                            _ => c["protocol"].as_str().unwrap_or_default().to_owned(),
                        };
                        format!(
                            "{} {:<24} {} unread  [{}] ({protocol}){}",
                            &c["id"].as_str().unwrap_or_default()[..8],
                            c["name"].as_str().unwrap_or_default(),
                            c["unread"],
                            c["verification"].as_str().unwrap_or_default(),
                            if c["muted"] == true { "  muted" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Create {
            name,
            members,
            receipts,
            mls,
        } => {
            let mut account = open(&dir).await?;
            let mut users = Vec::new();
            for m in &members {
                users.push(person(&mut account, m).await?);
            }
            let id = if mls {
                account.create_mls_group(&name, users, receipts).await?
            } else {
                account.create_group(&name, users, receipts).await?
            };
            show(json, &json!({"conversation": id.id}), || {
                format!("Created {name} ({}).", id.id)
            });
        }
        Command::Add { conv, handle } => {
            let mut account = open(&dir).await?;
            let id = account.find_conversation(&conv).await?;
            let user = person(&mut account, &handle).await?;
            account.add_member(&id, user).await?;
            show(json, &json!({"added": handle}), || {
                format!("Added {handle}.")
            });
        }
        Command::Remove { conv, handle } => {
            let mut account = open(&dir).await?;
            let id = account.find_conversation(&conv).await?;
            let user = person(&mut account, &handle).await?;
            account.remove_member(&id, &user).await?;
            show(json, &json!({"removed": handle}), || {
                format!("Removed {handle}.")
            });
        }
        Command::Migrate { conv } => {
            let mut account = open(&dir).await?;
            let id = account.find_conversation(&conv).await?;
            match account.migrate(&id).await? {
                parley_client::account::Migration::Mls => {
                    show(
                        json,
                        &json!({"conversation": id.id, "protocol": "mls"}),
                        || format!("{conv} is an MLS conversation now."),
                    );
                }
                parley_client::account::Migration::Mixed { waiting } => {
                    show(
                        json,
                        &json!({"conversation": id.id, "protocol": "mixed", "waiting": waiting}),
                        || {
                            format!(
                                "{conv} is moving to MLS; messages go by Proteus meanwhile. \
                                 {waiting}. Devices join at their next sync; run `parley \
                                 migrate` again to check."
                            )
                        },
                    );
                }
            }
        }
        Command::Call { action } => call(&dir, json, action).await?,
        Command::Leave { conv } => {
            let mut account = open(&dir).await?;
            let id = account.find_conversation(&conv).await?;
            account.leave(&id).await?;
            show(json, &json!({"left": id.id}), || format!("Left {conv}."));
        }
        Command::Mute { conv, off } => {
            let mut account = open(&dir).await?;
            let id = account.find_conversation(&conv).await?;
            account.set_muted(&id, !off).await?;
            show(json, &json!({"conversation": id.id, "muted": !off}), || {
                format!("{} {conv}.", if off { "Unmuted" } else { "Muted" })
            });
        }
        Command::Block { handle } => {
            let mut account = open(&dir).await?;
            let user = person(&mut account, &handle).await?;
            account.block(&user).await?;
            show(json, &json!({"blocked": user.id}), || {
                format!("Blocked {handle}: neither of you can send to the other.")
            });
        }
        Command::Unblock { handle } => {
            let mut account = open(&dir).await?;
            let user = person(&mut account, &handle).await?;
            account.unblock(&user).await?;
            show(json, &json!({"unblocked": user.id}), || {
                format!("Unblocked {handle}.")
            });
        }
        other => return run_messages(other, &dir, json).await,
    }
    Ok(())
}
