//! `parley`: Parley from the terminal. Every subcommand prints text for people or,
//! with `--json`, one JSON document for scripts; `parley tui` is a chat window.
//!
//! Secrets never go on the command line: the local passphrase, the recovery
//! passphrase, the account password and the backup password come from
//! `PARLEY_PASSPHRASE`, `PARLEY_RECOVERY_PASSPHRASE`, `PARLEY_PASSWORD` and
//! `PARLEY_BACKUP_PASSWORD`, or are asked for.

// A command-line program: printing is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use parley_cli::tui;

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use parley_api::{ClientId, Qualified, Register, Uuid};
use parley_client::ClientError;
use parley_client::account::{Account, Message, Update};
use parley_client::api::Api;
use serde_json::{Value, json};

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
    /// Export or import your history (encrypted with a backup password).
    Backup {
        #[command(subcommand)]
        action: BackupAction,
    },
    /// A terminal chat window.
    Tui,
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

/// What a person can do about an error.
fn hint(e: &ClientError) -> Option<&'static str> {
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

fn default_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/parley/default")
}

/// A secret from the environment, or asked for on the terminal without
/// echoing it (from a pipe, the first line of standard input).
fn secret(var: &str, prompt: &str) -> Result<String> {
    use std::io::IsTerminal as _;
    if let Ok(v) = std::env::var(var) {
        return Ok(v);
    }
    let line = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("{prompt}: ")).context("reading from the terminal")?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading standard input")?;
        line
    };
    let line = line.trim_end_matches(['\r', '\n']).to_owned();
    if line.is_empty() {
        bail!("{prompt} is required (or set {var})");
    }
    Ok(line)
}

fn passphrase() -> Result<String> {
    secret("PARLEY_PASSPHRASE", "Local passphrase")
}

/// The recovery passphrase seals the user's root key on the server; it is not
/// the local one, so a stolen laptop's passphrase does not open the account.
fn recovery_passphrase() -> Result<String> {
    secret("PARLEY_RECOVERY_PASSPHRASE", "Recovery passphrase")
}

fn server_file(dir: &Path) -> PathBuf {
    dir.join("server")
}

fn saved_server(dir: &Path) -> Result<String> {
    std::fs::read_to_string(server_file(dir))
        .map(|s| s.trim().to_owned())
        .map_err(|_| anyhow!("no server set for this device: run `parley server <url>` first"))
}

/// Prints a JSON document or the text for people.
fn show(json: bool, value: &Value, text: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        println!("{}", text());
    }
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

async fn person(account: &mut Account, who: &str) -> Result<Qualified<Uuid>> {
    if let Ok(id) = Uuid::parse_str(who) {
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

fn message_json(account: &Account, m: &Message) -> Value {
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
        "reactions": m.reactions.iter().map(|(u, e)| (account.name_of(*u), e.clone())).collect::<std::collections::BTreeMap<_, _>>(),
        "delivered_to": m.delivered_to.len(),
        "read_by": m.read_by.len(),
        "expires_at": m.expires_at,
        "pending": m.pending,
    })
}

fn message_line(account: &Account, m: &Message) -> String {
    let who = if m.mine {
        "you".to_owned()
    } else {
        account.name_of(m.from)
    };
    let body = if m.is_notice() {
        format!("* {}", m.body())
    } else {
        m.body()
    };
    let mut extras = Vec::new();
    if m.edited {
        extras.push("edited".to_owned());
    }
    if !m.reactions.is_empty() {
        extras.push(m.reactions.values().cloned().collect::<Vec<_>>().join(""));
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
    let short = &m.id[..m.id.len().min(8)];
    format!("[{short}] {who}: {body}{extras}")
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
        Command::Login { email } if Account::holds_device(&dir) => {
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
                        .map(|(id, name)| json!({"user": id, "name": name}))
                        .collect::<Vec<_>>()
                ),
                || {
                    if requests.is_empty() {
                        "No requests.".into()
                    } else {
                        requests
                            .iter()
                            .map(|(id, name)| format!("{name} ({id})"))
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
                           "unread": c.unread, "verification": c.verification})
                })
                .collect();
            show(json, &json!(convs), || {
                convs
                    .iter()
                    .map(|c| {
                        format!(
                            "{} {:<24} {} unread  [{}]",
                            &c["id"].as_str().unwrap_or_default()[..8],
                            c["name"].as_str().unwrap_or_default(),
                            c["unread"],
                            c["verification"].as_str().unwrap_or_default()
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
        } => {
            let mut account = open(&dir).await?;
            let mut users = Vec::new();
            for m in &members {
                users.push(person(&mut account, m).await?);
            }
            let id = account.create_group(&name, users, receipts).await?;
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
        other => return run_messages(other, &dir, json).await,
    }
    Ok(())
}

/// The commands about messages, verification and backups.
async fn run_messages(command: Command, dir: &Path, json: bool) -> Result<()> {
    match command {
        Command::Send {
            conv,
            text,
            confirm,
            ephemeral,
        } => {
            let mut account = open(dir).await?;
            let id = account.find_conversation(&conv).await?;
            let message = match ephemeral {
                Some(secs) => {
                    account
                        .send_ephemeral(&id, &text, secs.saturating_mul(1000), confirm)
                        .await?
                }
                None => account.send_text(&id, &text, confirm).await?,
            };
            let pending = account
                .message(&id, &message)
                .await?
                .is_some_and(|m| m.pending);
            show(json, &json!({"sent": message, "pending": pending}), || {
                if pending {
                    format!(
                        "Queued [{}]: the server cannot be reached now; it goes out with your \
                         next command.",
                        &message[..8]
                    )
                } else {
                    format!("Sent [{}].", &message[..8])
                }
            });
        }
        Command::Edit { conv, id, text } => {
            let mut account = open(dir).await?;
            let c = account.find_conversation(&conv).await?;
            let target = full_id(&mut account, &c, &id).await?;
            account.edit(&c, &target, &text).await?;
            show(json, &json!({"edited": target}), || "Edited.".into());
        }
        Command::Delete { conv, id, everyone } => {
            let mut account = open(dir).await?;
            let c = account.find_conversation(&conv).await?;
            let target = full_id(&mut account, &c, &id).await?;
            account.delete(&c, &target, everyone).await?;
            show(
                json,
                &json!({"deleted": target, "for_everyone": everyone}),
                || "Deleted.".into(),
            );
        }
        Command::React { conv, id, emoji } => {
            let mut account = open(dir).await?;
            let c = account.find_conversation(&conv).await?;
            let target = full_id(&mut account, &c, &id).await?;
            account.react(&c, &target, &emoji).await?;
            show(json, &json!({"reacted": target}), || "Reacted.".into());
        }
        Command::Knock { conv } => {
            let mut account = open(dir).await?;
            let c = account.find_conversation(&conv).await?;
            let id = account.knock(&c).await?;
            show(json, &json!({"sent": id}), || "Knocked.".into());
        }
        Command::History { conv, limit } => {
            let mut account = open(dir).await?;
            let c = account.find_conversation(&conv).await?;
            let mut messages = account.open_conversation(&c).await?;
            if let Some(limit) = limit {
                let skip = messages.len().saturating_sub(limit);
                messages.drain(..skip);
            }
            let verification = account.conversation(&c).map(|v| v.verification);
            show(
                json,
                &json!({"verification": verification,
                        "messages": messages.iter().map(|m| message_json(&account, m)).collect::<Vec<_>>()}),
                || {
                    messages
                        .iter()
                        .map(|m| message_line(&account, m))
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
        Command::Listen { count, seconds } => listen(dir, json, count, seconds).await?,
        Command::Verify {
            handle,
            device,
            fingerprint,
            root,
        } => {
            let mut account = open(dir).await?;
            let user = person(&mut account, &handle).await?;
            match (device, fingerprint, root) {
                (_, _, Some(root)) => account.verify_user(user.id, &root).await?,
                (Some(device), Some(fingerprint), None) => {
                    account
                        .verify_device(user.id, device_id(&device)?, &fingerprint)
                        .await?;
                }
                _ => {
                    bail!("say what you compared: --device <id> --fingerprint <fp>, or --root <fp>")
                }
            }
            show(json, &json!({"verified": handle}), || {
                format!("Verified {handle}.")
            });
        }
        Command::Fingerprint { handle } => {
            let mut account = open(dir).await?;
            match handle {
                None => {
                    let (fp, root) = (account.fingerprint(), account.root_fingerprint());
                    show(
                        json,
                        &json!({"device": account.device_id(), "fingerprint": fp, "root_fingerprint": root}),
                        || {
                            format!(
                                "This device: {fp}\nYour root key: {}",
                                root.as_deref().unwrap_or("(none)")
                            )
                        },
                    );
                }
                Some(handle) => {
                    let user = person(&mut account, &handle).await?;
                    let devices = account.peer_devices(user.id).await?;
                    show(json, &serde_json::to_value(&devices)?, || {
                        devices
                            .iter()
                            .map(|d| {
                                format!(
                                    "{} {}  {}{}",
                                    d.client,
                                    d.fingerprint.as_deref().unwrap_or("?"),
                                    if d.verified {
                                        "verified"
                                    } else {
                                        "not verified"
                                    },
                                    if d.flagged { "  INVALID SIGNATURE" } else { "" }
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    });
                }
            }
        }
        Command::Reset { handle, device } => {
            let mut account = open(dir).await?;
            let user = person(&mut account, &handle).await?;
            account.reset_session(user.id, device_id(&device)?).await?;
            show(json, &json!({"reset": device}), || {
                "The next message starts a fresh session.".into()
            });
        }
        Command::Backup { action } => {
            let mut account = open(dir).await?;
            let password = secret("PARLEY_BACKUP_PASSWORD", "Backup password")?;
            match action {
                BackupAction::Export { file } => {
                    eprintln!("Encrypting your history (this takes a few seconds)…");
                    let bytes = account.export_backup(&password).await?;
                    std::fs::write(&file, bytes)
                        .with_context(|| format!("writing {}", file.display()))?;
                    show(json, &json!({"exported": file}), || {
                        format!("History written to {}.", file.display())
                    });
                }
                BackupAction::Import { file } => {
                    let bytes = std::fs::read(&file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    eprintln!("Decrypting the backup…");
                    let added = account.import_backup(&bytes, &password).await?;
                    show(json, &json!({"imported": added}), || {
                        format!("{added} messages imported.")
                    });
                }
            }
        }
        Command::Tui => {
            let account = open(dir).await?;
            tui::run(account).await?;
        }
        _ => unreachable!("handled in run"),
    }
    Ok(())
}

/// A message id from its first characters (as `history` shows them).
async fn full_id(account: &mut Account, conv: &Qualified<Uuid>, prefix: &str) -> Result<String> {
    let matches: Vec<String> = account
        .history(conv)
        .await?
        .iter()
        .filter(|m| m.id.starts_with(prefix))
        .map(|m| m.id.clone())
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no message {prefix} in this conversation"),
        _ => bail!("{prefix} names several messages: give more of the id"),
    }
}

/// Prints messages as they arrive on the live socket, reconnecting (and
/// catching up) when it drops.
async fn listen(dir: &Path, json: bool, count: Option<usize>, seconds: Option<u64>) -> Result<()> {
    // No sync first: what arrived while nobody listened comes through the
    // socket's catch-up, and is printed too.
    let mut account = Account::open(dir, &passphrase()?).await?;
    let deadline = seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut printed = 0;
    let mut backoff = Backoff::default();
    if !json {
        eprintln!("Listening… (Ctrl-C to stop)");
    }
    loop {
        let mut socket = match account.connect().await {
            Ok(socket) => {
                if backoff.failed {
                    eprintln!("parley: reconnected");
                }
                backoff = Backoff::default();
                socket
            }
            Err(e) if e.is_away() => {
                if !backoff.wait(&e, deadline).await {
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        loop {
            let next = socket.next();
            let frame = match deadline {
                Some(d) => match tokio::time::timeout_at(d, next).await {
                    Ok(frame) => frame,
                    Err(_) => return Ok(()),
                },
                None => next.await,
            };
            // A broken socket is the server going away: reconnect below.
            let Ok(Some(frame)) = frame else { break };
            for update in account.handle(&frame).await? {
                let Update::Message { conversation, id } = update else {
                    continue;
                };
                let Some(m) = account.message(&conversation, &id).await? else {
                    continue;
                };
                let name = account
                    .conversation(&conversation)
                    .map(|c| c.name.clone())
                    .unwrap_or_default();
                if json {
                    let mut v = message_json(&account, &m);
                    v["conversation"] = json!(conversation.id);
                    v["conversation_name"] = json!(name);
                    println!("{v}");
                } else {
                    println!("{name}: {}", message_line(&account, &m));
                }
                std::io::stdout().flush().ok();
                printed += 1;
                if count.is_some_and(|c| printed >= c) {
                    return Ok(());
                }
            }
        }
        // The socket closed: catch up through the queue, then reconnect. With
        // the server away, the next connection's catch-up does it instead.
        match account.sync().await {
            Ok(_) => {}
            Err(e) if e.is_away() => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waiting between reconnections: 1 s, doubling up to 30 s, said on stderr.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    failed: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: Duration::from_secs(1),
            failed: false,
        }
    }
}

impl Backoff {
    /// Waits before the next try; false when the deadline comes first.
    async fn wait(&mut self, why: &ClientError, deadline: Option<tokio::time::Instant>) -> bool {
        eprintln!("parley: {why}; reconnecting in {} s", self.next.as_secs());
        self.failed = true;
        let until = tokio::time::Instant::now() + self.next;
        self.next = (self.next * 2).min(Duration::from_secs(30));
        match deadline {
            Some(d) if d <= until => {
                tokio::time::sleep_until(d).await;
                false
            }
            _ => {
                tokio::time::sleep_until(until).await;
                true
            }
        }
    }
}
