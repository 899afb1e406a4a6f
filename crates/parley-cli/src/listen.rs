//! `parley listen`: messages as they arrive, reconnecting when the server goes away.

use super::*;

/// Prints messages as they arrive on the live socket, reconnecting (and
/// catching up) when it drops.
pub(crate) async fn listen(
    dir: &Path, json: bool, count: Option<usize>, seconds: Option<u64>,
) -> Result<()> {
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
            let updates = match account.handle(&frame).await {
                Ok(updates) => updates,
                // The server went away while this frame was handled:
                // reconnect. What it applied before failing is in the
                // history but not printed here.
                Err(e) if e.is_away() => break,
                Err(e) => return Err(e.into()),
            };
            if print(&mut account, updates, json, &mut printed, count).await? {
                return Ok(());
            }
        }
        // The socket closed: catch up through the queue (printing what it
        // brings), then reconnect. With the server away, the next
        // connection's catch-up does it instead.
        match account.sync().await {
            Ok(updates) => {
                if print(&mut account, updates, json, &mut printed, count).await? {
                    return Ok(());
                }
            }
            Err(e) if e.is_away() => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Prints the messages among `updates`; true once `count` are printed.
async fn print(
    account: &mut Account, updates: Vec<Update>, json: bool, printed: &mut usize,
    count: Option<usize>,
) -> Result<bool> {
    for update in updates {
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
            let mut v = message_json(account, &m);
            v["conversation"] = json!(conversation.id);
            v["conversation_name"] = json!(name);
            println!("{v}");
        } else {
            let quoted = match &m.reply_to {
                Some(id) => Some(account.message(&conversation, id).await?),
                None => None,
            };
            println!(
                "{name}: {}",
                message_line(account, &m, quoted.as_ref().map(Option::as_ref))
            );
        }
        std::io::stdout().flush().ok();
        *printed += 1;
        if count.is_some_and(|c| *printed >= c) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Waiting between reconnections: 1 s, doubling up to 30 s, said on stderr.
#[derive(Debug)]
pub(crate) struct Backoff {
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
