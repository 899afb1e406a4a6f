//! The commands about conversations and messages.

use super::*;

/// The commands about messages, verification and backups.
pub(crate) async fn run_messages(command: Command, dir: &Path, json: bool) -> Result<()> {
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
        Command::Reply {
            conv,
            id,
            text,
            confirm,
        } => {
            let mut account = open(dir).await?;
            let c = account.find_conversation(&conv).await?;
            let target = full_id(&mut account, &c, &id).await?;
            let message = account.reply(&c, &target, &text, confirm).await?;
            show(json, &json!({"sent": message, "reply_to": target}), || {
                format!("Replied [{}].", &message[..8])
            });
        }
        Command::Search { text, conv } => {
            let mut account = open(dir).await?;
            let only = match conv {
                Some(conv) => Some(account.find_conversation(&conv).await?),
                None => None,
            };
            let found = account.search(&text, only.as_ref()).await?;
            let offset = local_offset();
            let mut lines = Vec::new();
            for (c, m) in &found {
                let quoted = match &m.reply_to {
                    Some(id) => Some(account.message(c, id).await?),
                    None => None,
                };
                lines.push(format!(
                    "{}  {}  {}",
                    printable(&conversation_name(&account, c), false),
                    when(m.time, offset),
                    message_line(&account, m, quoted.as_ref().map(Option::as_ref))
                ));
            }
            show(
                json,
                &json!(
                    found
                        .iter()
                        .map(|(c, m)| {
                            let mut v = message_json(&account, m);
                            v["conversation"] = json!(c.id);
                            v["conversation_name"] = json!(conversation_name(&account, c));
                            v
                        })
                        .collect::<Vec<_>>()
                ),
                || {
                    if found.is_empty() {
                        return format!("Nothing on this device says {text:?}.");
                    }
                    lines.join("\n")
                },
            );
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
                    if messages.is_empty() {
                        return "No messages yet.".into();
                    }
                    messages
                        .iter()
                        .map(|m| {
                            let quoted = m
                                .reply_to
                                .as_ref()
                                .map(|id| messages.iter().find(|q| &q.id == id));
                            message_line(&account, m, quoted)
                        })
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
                    let identity = account.identity_of(user.id).await?;
                    show(json, &serde_json::to_value(&identity)?, || {
                        let mut lines = vec![
                            format!(
                                "{handle}'s root key: {}{}",
                                identity.root_fingerprint.as_deref().unwrap_or("(none yet)"),
                                if identity.root_verified {
                                    "  verified"
                                } else {
                                    "  not verified: compare it with them"
                                }
                            ),
                            format!(
                                "Safety number (they see the same): {}",
                                identity.safety_number.as_deref().unwrap_or("(none yet)")
                            ),
                            "Devices:".to_owned(),
                        ];
                        lines.extend(identity.devices.iter().map(|d| {
                            format!(
                                "  {} {}  {}{}",
                                d.client,
                                d.fingerprint.as_deref().unwrap_or("?"),
                                if d.verified {
                                    "verified"
                                } else {
                                    "not verified"
                                },
                                if d.flagged { "  INVALID SIGNATURE" } else { "" }
                            )
                        }));
                        lines.join("\n")
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
        Command::Tui { lock_after, notify } => {
            let account = open(dir).await?;
            let options = tui::Options {
                lock_after: lock_after.map(|m| Duration::from_secs(m.saturating_mul(60))),
                notify,
            };
            tui::run(account, options).await?;
        }
        _ => unreachable!("handled in run"),
    }
    Ok(())
}

/// A conversation's name as the list shows it.
pub(crate) fn conversation_name(
    account: &Account, conv: &Qualified<parley_api::ConversationId>,
) -> String {
    account
        .conversation(conv)
        .map(|c| c.name.clone())
        .unwrap_or_default()
}

/// A message id from its first characters (as `history` shows them):
/// `no-such-message` for none, `ambiguous` for several.
pub(crate) async fn full_id(
    account: &mut Account, conv: &Qualified<parley_api::ConversationId>, prefix: &str,
) -> Result<String> {
    let matches: Vec<String> = account
        .history(conv)
        .await?
        .iter()
        .filter(|m| !prefix.is_empty() && m.id.starts_with(prefix))
        .map(|m| m.id.clone())
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(ClientError::Refused {
            label: "no-such-message",
            message: format!(
                "no message {prefix:?} in this conversation: `parley history` shows the ids"
            ),
        }
        .into()),
        _ => Err(ClientError::Refused {
            label: "ambiguous",
            message: format!("{prefix:?} names several messages: give more of the id"),
        }
        .into()),
    }
}
