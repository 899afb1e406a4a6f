//! Sending, write-ahead: a message is encrypted for every device the device has
//! a session with, and the advanced sessions, the history entry and an outbox
//! row holding the ciphertexts are committed in one transaction; only then is
//! it posted. After a crash or a lost reply the outbox posts the same
//! ciphertexts again (never a re-encryption from an old state); the receiver
//! drops the duplicate. When the server names missing devices, their prekeys
//! are claimed, sessions opened and the plaintext encrypted for them alone in
//! another committed step.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use parley_api::{
    ClientId, ConversationId, MessageSent, NewProteusMessage, Qualified, ReportMissing, UserId,
    Uuid,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{Account, b64, damaged, history, json};
use crate::ClientError;
use crate::api::{Delivery, MlsPost};
use crate::content::{self, Body, Envelope, ReceiptKind};
use crate::device::flatten;
use crate::store::{Table, Tx};
use crate::verification::Verification;

/// How many times a send follows "devices missing" before giving up.
const SEND_ATTEMPTS: usize = 4;
/// Tries of an outbox entry that keeps failing (not for the server being away)
/// before it is given up.
const POST_TRIES: u32 = 3;

/// The server refused the message itself (not a member, a block, bad input):
/// sending it again cannot help.
fn refused_for_good(e: &ClientError) -> bool {
    matches!(e, ClientError::Api { status, .. } if (400..500).contains(status)) && !e.is_away()
}

/// Sending to a conversation this user left or was removed from.
pub(super) fn not_a_member() -> ClientError {
    ClientError::Refused {
        label: "not-a-member",
        message: "you are no longer a member of this conversation: its history stays \
                  on this device, but nothing can be sent to it"
            .into(),
    }
}

/// An outbox row: a message encrypted and committed, not yet accepted.
#[derive(Serialize, Deserialize)]
struct Pending {
    /// The row's name.
    id: String,
    conversation: Qualified<ConversationId>,
    /// The history entry it carries (none for receipts and delete-for-me).
    entry: Option<String>,
    /// Base64 of the plaintext, for devices the server names later.
    plaintext: String,
    /// Base64 of the shared blob.
    data: Option<String>,
    /// Whose devices it goes to.
    users: Vec<UserId>,
    /// Only these users' devices (the server checks no others).
    only: bool,
    /// New devices are not approved (a verified conversation).
    strict: bool,
    /// Ciphertexts, by user and device.
    recipients: BTreeMap<UserId, BTreeMap<ClientId, String>>,
    /// Failed tries for reasons other than the server being away.
    #[serde(default)]
    tries: u32,
    /// This device's send generation when it was encrypted.
    #[serde(default)]
    generation: u64,
    /// In an MLS conversation: the one message for the whole group, base64
    /// (no per-device ciphertexts).
    #[serde(default)]
    mls: Option<String>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.plaintext);
    }
}

impl Pending {
    fn message(&self, sender: ClientId) -> NewProteusMessage {
        NewProteusMessage {
            sender,
            recipients: BTreeMap::from([(
                self.conversation.domain.clone(),
                self.recipients.clone(),
            )]),
            data: self.data.clone(),
            transient: false,
            generation: Some(self.generation),
            report_missing: if self.only {
                ReportMissing::Only {
                    users: self.users.clone(),
                }
            } else {
                ReportMissing::All
            },
        }
    }
}

/// What a message is for the outbox.
struct Outgoing<'a> {
    conversation: &'a Qualified<ConversationId>,
    users: Vec<UserId>,
    only: bool,
    strict: bool,
    plaintext: &'a [u8],
    data: Option<&'a [u8]>,
    entry: Option<String>,
}

impl Account {
    /// Encrypts a message for every device with a session and puts it in the
    /// outbox (inside the caller's transaction).
    async fn enqueue(&mut self, tx: &mut Tx, out: Outgoing<'_>) -> Result<Pending, ClientError> {
        let mut recipients = BTreeMap::new();
        let (generation, mls) = if self.is_mls(out.conversation.id) {
            (0, Some(self.mls_encrypt(out.conversation, out.plaintext)?))
        } else {
            let generation = self
                .device
                .encrypt_for(&out.users, out.plaintext, &mut recipients);
            (generation, None)
        };
        let pending = Pending {
            id: Uuid::new_v4().to_string(),
            conversation: out.conversation.clone(),
            entry: out.entry,
            plaintext: b64().encode(out.plaintext),
            data: out.data.map(|d| b64().encode(d)),
            users: out.users,
            only: out.only,
            strict: out.strict,
            recipients,
            tries: 0,
            generation,
            mls,
        };
        tx.put(Table::Outbox, pending.id.as_bytes(), None, &json(&pending))
            .await?;
        Ok(pending)
    }

    /// Posts an outbox entry until the server accepts it or refuses it for
    /// good. Each step that changes state commits before the next post, and
    /// first checks the entry is still there: another process on this device
    /// may have settled it meanwhile (`Ok(None)`).
    async fn post(&mut self, mut pending: Pending) -> Result<Option<MessageSent>, ClientError> {
        if pending.mls.is_some() {
            return Box::pin(self.post_mls(pending)).await;
        }
        for _ in 0..SEND_ATTEMPTS {
            let answer = self
                .api
                .post_proteus(&pending.conversation, &pending.message(self.device_id()))
                .await;
            #[cfg(feature = "failpoints")]
            fail::fail_point!("send-after-post", |_| std::process::abort());
            match answer {
                Ok(Delivery::Sent(sent)) => {
                    let mut tx = self.begin().await?;
                    self.forget_deleted(&sent.deleted);
                    self.settle(&mut tx, &pending, true).await?;
                    self.commit(tx).await?;
                    return Ok(Some(sent));
                }
                Ok(Delivery::Missing(answer)) => {
                    let claimed = self.api.claim_prekeys(&answer.missing).await?;
                    let mut tx = self.begin().await?;
                    // Another process on this device may have changed or
                    // settled the entry meanwhile: work on what is stored.
                    let Some(bytes) = tx.get(Table::Outbox, pending.id.as_bytes()).await? else {
                        self.commit(tx).await?;
                        return Ok(None);
                    };
                    pending =
                        serde_json::from_slice(&bytes).map_err(|_| damaged("outbox entry"))?;
                    self.forget_deleted(&answer.deleted);
                    for (user, client) in flatten(&answer.deleted).chain(flatten(&answer.redundant))
                    {
                        if let Some(devices) = pending.recipients.get_mut(&user) {
                            devices.remove(&client);
                        }
                    }
                    pending.recipients.retain(|_, d| !d.is_empty());
                    let strangers: Vec<UserId> = flatten(&answer.missing)
                        .map(|(user, _)| user)
                        .filter(|user| !pending.users.contains(user))
                        .collect();
                    if !strangers.is_empty() {
                        if pending.only || pending.strict {
                            // Only these users, or a verified conversation: the
                            // server does not get to add a reader. The members
                            // are fetched again (a join shows, and counts).
                            if let Some(c) =
                                self.state.conversations.get_mut(&pending.conversation.id)
                            {
                                c.incomplete = true;
                            }
                            if pending.strict {
                                self.settle(&mut tx, &pending, false).await?;
                                self.commit(tx).await?;
                                return Err(ClientError::Degraded);
                            }
                        } else {
                            // A member this device did not know of yet: the
                            // server's roster is the authority for an
                            // unverified conversation.
                            pending.users.extend(strangers);
                            pending.users.sort();
                            pending.users.dedup();
                        }
                    }
                    let opened = self.device.open_sessions(&claimed)?;
                    self.learn_devices(&opened.new);
                    self.identities_changed(&opened.changed);
                    self.recompute_all();
                    if pending.strict && !opened.new.is_empty() {
                        // Nothing goes to a device the person has not approved.
                        self.settle(&mut tx, &pending, false).await?;
                        self.commit(tx).await?;
                        return Err(ClientError::NewDevices(opened.new));
                    }
                    let plaintext = Zeroizing::new(
                        b64()
                            .decode(&pending.plaintext)
                            .map_err(|_| damaged("outbox entry"))?,
                    );
                    let users = pending.users.clone();
                    pending.generation =
                        self.device
                            .encrypt_for(&users, &plaintext, &mut pending.recipients);
                    tx.put(Table::Outbox, pending.id.as_bytes(), None, &json(&pending))
                        .await?;
                    self.commit(tx).await?;
                }
                // The conversation's migration to MLS ended since this was
                // encrypted: the same plaintext goes by MLS, once this device
                // has read the change and is in the group (until then it
                // stays in the outbox: the group is joined at the end of a
                // sync, and the next flush sends it).
                Err(ClientError::Api { label, .. }) if label == "mls-commit-required" => {
                    self.receive_all().await?;
                    if !self.is_mls(pending.conversation.id)
                        || !self.device.mls_in_group(pending.conversation.id.as_bytes())
                    {
                        return Err(ClientError::Unsettled);
                    }
                    let Some(again) = self.encrypt_again_by_mls(&pending.id).await? else {
                        return Ok(None);
                    };
                    return Box::pin(self.post_mls(again)).await;
                }
                // Refused for good: the entry goes, and the person is told.
                Err(e) if refused_for_good(&e) => {
                    let mut tx = self.begin().await?;
                    self.settle(&mut tx, &pending, false).await?;
                    if pending.entry.is_some() {
                        self.system(
                            pending.conversation.id,
                            &format!("A message could not be sent: {e}"),
                        );
                    }
                    self.commit(tx).await?;
                    return Err(e);
                }
                // Unreachable, busy or failing server: it stays in the outbox.
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::Unsettled)
    }

    /// The outbox entry `id` as stored (another process on this device may
    /// have changed or settled it: `None`), its stored plaintext encrypted
    /// again for the group at this device's current epoch, committed before
    /// it is posted.
    async fn encrypt_again_by_mls(&mut self, id: &str) -> Result<Option<Pending>, ClientError> {
        let mut tx = self.begin().await?;
        let Some(bytes) = tx.get(Table::Outbox, id.as_bytes()).await? else {
            self.commit(tx).await?;
            return Ok(None);
        };
        let mut pending: Pending =
            serde_json::from_slice(&bytes).map_err(|_| damaged("outbox entry"))?;
        let plaintext = Zeroizing::new(
            b64()
                .decode(&pending.plaintext)
                .map_err(|_| damaged("outbox entry"))?,
        );
        pending.mls = Some(self.mls_encrypt(&pending.conversation, &plaintext)?);
        pending.recipients.clear();
        tx.put(Table::Outbox, pending.id.as_bytes(), None, &json(&pending))
            .await?;
        self.commit(tx).await?;
        Ok(Some(pending))
    }

    /// Posts an MLS outbox entry: one message for the group. The server
    /// takes it only at the group's current epoch: when the group moved on,
    /// this device follows the commits from its queue and encrypts the
    /// stored plaintext again (committed before it is posted).
    async fn post_mls(&mut self, mut pending: Pending) -> Result<Option<MessageSent>, ClientError> {
        for _ in 0..SEND_ATTEMPTS {
            let message = pending.mls.as_deref().unwrap_or_default();
            let bytes = b64().decode(message).map_err(|_| damaged("outbox entry"))?;
            match self
                .api
                .post_mls(self.device_id(), MlsPost::Message, bytes)
                .await
            {
                Ok(_) => {
                    let mut tx = self.begin().await?;
                    self.settle(&mut tx, &pending, true).await?;
                    self.commit(tx).await?;
                    return Ok(Some(MessageSent {
                        time: parley_api::OffsetDateTime::from_unix_timestamp_nanos(
                            i128::from(self.now_ms()) * 1_000_000,
                        )
                        .unwrap_or(parley_api::OffsetDateTime::UNIX_EPOCH),
                        missing: Default::default(),
                        redundant: Default::default(),
                        deleted: Default::default(),
                    }));
                }
                Err(ClientError::Api { label, .. }) if label == "mls-stale-message" => {
                    self.receive_all().await?;
                    self.settle_pending(&pending.conversation).await?;
                    let Some(again) = self.encrypt_again_by_mls(&pending.id).await? else {
                        return Ok(None);
                    };
                    pending = again;
                }
                Err(e) if refused_for_good(&e) => {
                    let mut tx = self.begin().await?;
                    self.settle(&mut tx, &pending, false).await?;
                    if pending.entry.is_some() {
                        self.system(
                            pending.conversation.id,
                            &format!("A message could not be sent: {e}"),
                        );
                    }
                    self.commit(tx).await?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::Unsettled)
    }

    /// Ends an outbox entry: accepted (its history entry is no longer pending)
    /// or given up (its history entry goes).
    async fn settle(
        &mut self, tx: &mut Tx, pending: &Pending, accepted: bool,
    ) -> Result<(), ClientError> {
        tx.delete(Table::Outbox, pending.id.as_bytes()).await?;
        let Some(id) = &pending.entry else {
            return Ok(());
        };
        let conversation = pending.conversation.id;
        if accepted {
            if let Some(mut m) = history::load(tx, conversation, id).await? {
                m.pending = false;
                history::store(tx, conversation, &m).await?;
            }
        } else {
            history::shred(tx, conversation, id).await?;
        }
        Ok(())
    }

    /// Devices the server reports deleted: their sessions and records go.
    fn forget_deleted(&mut self, deleted: &parley_api::ClientMap) {
        for (user, client) in flatten(deleted) {
            self.device.forget(user, client);
            if let Some(peer) = self.state.peers.get_mut(&user) {
                peer.devices.remove(&client);
            }
        }
    }

    /// Posts what an earlier run committed but could not post (a crash, a lost
    /// reply, a server that was down), oldest first. An entry that keeps
    /// failing for another reason than the server being away is given up after
    /// [`POST_TRIES`] tries, and the person told, so one bad entry never blocks
    /// the rest. Fails only when the server cannot be reached.
    pub async fn flush_outbox(&mut self) -> Result<usize, ClientError> {
        let mut tx = self.store.read().await?;
        let rows = tx.all(Table::Outbox).await?;
        drop(tx);
        let mut sent = 0;
        for (_, bytes) in rows {
            let pending: Pending =
                serde_json::from_slice(&bytes).map_err(|_| damaged("outbox entry"))?;
            let (id, conversation, entry) = (
                pending.id.clone(),
                pending.conversation.clone(),
                pending.entry.clone(),
            );
            match self.post(pending).await {
                Ok(Some(_)) => sent += 1,
                Ok(None) => {}
                // Settled (and said in the history) by `post`.
                Err(ClientError::NewDevices(_) | ClientError::Degraded) => {}
                Err(e) if refused_for_good(&e) => {}
                Err(e) if e.is_away() => return Err(e),
                Err(e) => self.tried(&id, &conversation, entry.is_some(), &e).await?,
            }
        }
        Ok(sent)
    }

    /// Takes a message that is still pending back out of the outbox (it was
    /// deleted before it could go): it is never posted (inside the caller's
    /// transaction).
    pub(super) async fn withdraw(
        &mut self, tx: &mut Tx, conversation: ConversationId, entry: &str,
    ) -> Result<(), ClientError> {
        for (key, bytes) in tx.all(Table::Outbox).await? {
            let pending: Pending =
                serde_json::from_slice(&bytes).map_err(|_| damaged("outbox entry"))?;
            if pending.conversation.id == conversation && pending.entry.as_deref() == Some(entry) {
                tx.delete_by_key(Table::Outbox, &key).await?;
            }
        }
        Ok(())
    }

    /// [`Account::flush_outbox`] where sending is not the point (receiving,
    /// showing): a server that is away leaves the entries queued, and does not
    /// stop what the caller is doing. Only local failures are errors.
    pub(super) async fn flush_quietly(&mut self) -> Result<(), ClientError> {
        match self.flush_outbox().await {
            Err(e) if !e.is_away() => Err(e),
            _ => Ok(()),
        }
    }

    /// Counts a failed try of an outbox entry; the last one gives it up.
    async fn tried(
        &mut self, id: &str, conversation: &Qualified<ConversationId>, has_entry: bool,
        e: &ClientError,
    ) -> Result<(), ClientError> {
        let mut tx = self.begin().await?;
        let Some(bytes) = tx.get(Table::Outbox, id.as_bytes()).await? else {
            return self.commit(tx).await;
        };
        let mut pending: Pending =
            serde_json::from_slice(&bytes).map_err(|_| damaged("outbox entry"))?;
        pending.tries += 1;
        if pending.tries >= POST_TRIES {
            self.settle(&mut tx, &pending, false).await?;
            if has_entry {
                self.system(
                    conversation.id,
                    &format!("A message could not be sent after {POST_TRIES} tries: {e}"),
                );
            }
        } else {
            tx.put(Table::Outbox, id.as_bytes(), None, &json(&pending))
                .await?;
        }
        self.commit(tx).await
    }

    /// Sends content to the conversation's members, write-ahead, and records it
    /// in the history. In a degraded conversation `confirm` must be set.
    async fn send_envelope(
        &mut self, conversation: &Qualified<ConversationId>, envelope: &Envelope, confirm: bool,
    ) -> Result<(), ClientError> {
        self.check_generation().await?;
        // What an earlier run left goes first; with the server away, this one
        // joins it in the outbox.
        self.flush_quietly().await?;
        // Devices met in messages are checked before anything is sent to them.
        // A verified conversation sends nothing while one cannot be checked
        // (the server could hide a device's list to slip it in); an unverified
        // one, which already accepts unchecked devices, is queued.
        let unchecked = self.unchecked_users();
        if !unchecked.is_empty()
            && let Err(e) = self.refresh_devices(&unchecked).await
        {
            let verified = self
                .state
                .conversations
                .get(&conversation.id)
                .is_some_and(|c| c.verification == Verification::Verified);
            if verified || !e.is_away() {
                return Err(e);
            }
        }
        let plaintext = Zeroizing::new(envelope.to_bytes());
        // Large content goes once, as the shared blob; each device gets its key.
        // (An MLS message is one ciphertext for the group: it needs no blob.)
        let (plaintext, data) =
            if plaintext.len() > content::EXTERNAL_THRESHOLD && !self.is_mls(conversation.id) {
                let (small, blob) = content::seal_external(envelope)?;
                (Zeroizing::new(small.to_bytes()), Some(blob))
            } else {
                (plaintext, None)
            };
        if self.is_mls(conversation.id) {
            // A commit of this device's still pending (a crash, a lost
            // reply) decides the epoch this message is encrypted at, and a
            // device that must rejoin (it lost its state, or is a restored
            // copy whose keys the original may have used) does so first.
            self.settle_pending(conversation).await?;
            let must_rejoin = |this: &Self| {
                this.state
                    .conversations
                    .get(&conversation.id)
                    .is_some_and(|c| c.rejoin)
            };
            for _ in 0..SEND_ATTEMPTS {
                if !must_rejoin(self) {
                    break;
                }
                self.rejoin(conversation).await?;
            }
            if must_rejoin(self) {
                // Nothing is sent from a group state the server has not
                // taken: nobody could read it.
                return Err(ClientError::Unsettled);
            }
        }
        for _ in 0..2 {
            let mut tx = self.begin().await?;
            let conv = self
                .state
                .conversations
                .get(&conversation.id)
                .ok_or_else(|| ClientError::Storage("unknown conversation: sync first".into()))?;
            if !conv.incomplete && !conv.members.contains(&self.device.user()) {
                return Err(not_a_member());
            }
            let (members, degraded) = (
                conv.members.clone(),
                conv.verification == Verification::Degraded,
            );
            if degraded {
                if !confirm {
                    return Err(ClientError::Degraded);
                }
                self.accept_degraded_in(&tx, conversation);
            }
            let strict = self
                .state
                .conversations
                .get(&conversation.id)
                .is_some_and(|c| c.verification == Verification::Verified);
            let me = (self.user(), self.device_id());
            let now = self.now_ms() / 1000;
            self.apply(&mut tx, conversation, me, now, envelope, true)
                .await?;
            let pending = self
                .enqueue(
                    &mut tx,
                    Outgoing {
                        conversation,
                        users: members.clone(),
                        only: false,
                        strict,
                        plaintext: &plaintext,
                        data: data.as_deref(),
                        entry: Some(envelope.message_id.clone()),
                    },
                )
                .await?;
            self.commit(tx).await?;
            #[cfg(feature = "failpoints")]
            fail::fail_point!("send-after-commit", |_| std::process::abort());
            match self.post(pending).await {
                Ok(_) => {
                    // Learn what the members' devices publish, once per member.
                    let unlisted: Vec<UserId> = members
                        .iter()
                        .filter(|u| !self.state.peers.get(u).is_some_and(|p| p.listed))
                        .copied()
                        .collect();
                    if !unlisted.is_empty() {
                        // Sent already: a failure here must not read as a
                        // failed send (the person would send it twice).
                        match self.refresh_devices(&unlisted).await {
                            Err(e) if !e.is_away() => return Err(e),
                            _ => {}
                        }
                    }
                    return Ok(());
                }
                // Committed and in the outbox: it is pending (its history entry
                // says so) and goes out with the next send, sync or connect.
                Err(e) if e.is_away() => return Ok(()),
                Err(ClientError::NewDevices(opened)) => {
                    // A verified conversation met new devices: trusted ones (signed
                    // by a pinned root) keep it verified; any other degrades it.
                    let users: BTreeSet<UserId> = opened.iter().map(|n| n.user).collect();
                    self.refresh_devices(&users.into_iter().collect::<Vec<_>>())
                        .await?;
                    let still = self
                        .state
                        .conversations
                        .get(&conversation.id)
                        .is_some_and(|c| c.verification == Verification::Verified);
                    if !still {
                        return Err(ClientError::Degraded);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::Unsettled)
    }

    /// Sends content that is not a history entry to some users' devices only
    /// (receipts, delete-for-me), write-ahead.
    async fn send_only(
        &mut self, conversation: &Qualified<ConversationId>, users: Vec<UserId>, plaintext: &[u8],
    ) -> Result<(), ClientError> {
        self.check_generation().await?;
        let mut tx = self.begin().await?;
        let pending = self
            .enqueue(
                &mut tx,
                Outgoing {
                    conversation,
                    users,
                    only: true,
                    strict: false,
                    plaintext,
                    data: None,
                    entry: None,
                },
            )
            .await?;
        self.commit(tx).await?;
        match self.post(pending).await {
            // Queued: it goes out with the next flush.
            Err(e) if e.is_away() => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Sends a text. In a degraded conversation `confirm` must be set (the person
    /// was asked), which also marks the conversation non-verified. When the
    /// server cannot be reached after the message was committed, it stays
    /// pending ([`Message::pending`](super::Message::pending)) and goes out with
    /// the next send, sync or connect.
    pub async fn send_text(
        &mut self, conversation: &Qualified<ConversationId>, text: &str, confirm: bool,
    ) -> Result<String, ClientError> {
        self.send_rich(conversation, content::Text::plain(text), confirm)
            .await
    }

    /// Sends a text with mentions and link previews (which the sender makes:
    /// recipients never fetch links). [`Account::mention`] helps build one.
    pub async fn send_rich(
        &mut self, conversation: &Qualified<ConversationId>, text: content::Text, confirm: bool,
    ) -> Result<String, ClientError> {
        self.refresh().await?;
        let mut envelope = Envelope::new(Body::Text(text));
        envelope.expires_after_ms = self
            .state
            .conversations
            .get(&conversation.id)
            .and_then(|c| c.message_timer);
        // What a peer would refuse is refused here first.
        Envelope::parse(&envelope.to_bytes())?;
        self.send_and_record(conversation, envelope, confirm).await
    }

    /// Replies to a message of this conversation: a text that quotes it, shown
    /// as such on every device that has the original. Refused before anything
    /// is sent (`no-such-message`) when the message is not in this
    /// conversation or is the app's own notice.
    pub async fn reply(
        &mut self, conversation: &Qualified<ConversationId>, message: &str, text: &str,
        confirm: bool,
    ) -> Result<String, ClientError> {
        let quoted = self.message(conversation, message).await?;
        if quoted.is_none_or(|m| m.is_notice()) {
            return Err(ClientError::Refused {
                label: "no-such-message",
                message: format!("no message {message} in this conversation to reply to"),
            });
        }
        let mut reply = content::Text::plain(text);
        reply.quote = Some(content::Quote {
            message_id: message.to_owned(),
        });
        self.send_rich(conversation, reply, confirm).await
    }

    /// A text mentioning `users`: each `@name` in `content` (their display
    /// name or handle as typed) becomes a mention of that user.
    pub fn mention(content: &str, users: &[(UserId, &str)]) -> content::Text {
        let mut text = content::Text::plain(content);
        for (user, name) in users {
            let needle = format!("@{name}");
            for (start, _) in content.match_indices(&needle) {
                text.mentions.push(content::Mention {
                    start: u32::try_from(start).unwrap_or(u32::MAX),
                    length: u32::try_from(needle.len()).unwrap_or(u32::MAX),
                    user_id: user.to_string(),
                });
            }
        }
        text
    }

    /// Sends a self-deleting text: it disappears `after_ms` after the recipient
    /// first sees it (and from this device once sent).
    pub async fn send_ephemeral(
        &mut self, conversation: &Qualified<ConversationId>, text: &str, after_ms: u64,
        confirm: bool,
    ) -> Result<String, ClientError> {
        let mut envelope = Envelope::text(text);
        envelope.expires_after_ms = Some(after_ms);
        self.send_and_record(conversation, envelope, confirm).await
    }

    /// Refuses, before anything is sent, to change a message that is not
    /// this user's own or is not in this conversation (the other devices would
    /// ignore such a change; reporting success would be a lie).
    async fn own_message(
        &mut self, conversation: &Qualified<ConversationId>, message: &str,
    ) -> Result<(), ClientError> {
        let mut tx = self.begin().await?;
        let found = super::history::load(&mut tx, conversation.id, message).await?;
        self.commit(tx).await?;
        match found {
            Some(m) if m.mine && !m.deleted => Ok(()),
            Some(m) if !m.mine => Err(ClientError::Refused {
                label: "not-yours",
                message: "only the sender may edit a message or delete it for everyone; \
                          delete it for yourself instead"
                    .into(),
            }),
            _ => Err(ClientError::Refused {
                label: "no-such-message",
                message: format!("no message {message} in this conversation"),
            }),
        }
    }

    /// Edits one of this user's texts (`not-yours` for anyone else's).
    pub async fn edit(
        &mut self, conversation: &Qualified<ConversationId>, message: &str, text: &str,
    ) -> Result<String, ClientError> {
        self.own_message(conversation, message).await?;
        let envelope = Envelope::new(Body::Edit(content::Edit {
            replacing_message_id: message.to_owned(),
            text: Some(content::Text::plain(text)),
        }));
        self.send_and_record(conversation, envelope, false).await
    }

    /// Deletes a message for everyone (only this user's own: `not-yours`
    /// otherwise) or only for this user (on all of their devices).
    pub async fn delete(
        &mut self, conversation: &Qualified<ConversationId>, message: &str, for_everyone: bool,
    ) -> Result<(), ClientError> {
        if for_everyone {
            self.own_message(conversation, message).await?;
        }
        let envelope = Envelope::new(Body::Delete(content::Delete {
            message_id: message.to_owned(),
            for_everyone,
        }));
        if for_everyone {
            self.send_and_record(conversation, envelope, false).await?;
        } else {
            // For me: the user's own other devices only; shredded here first.
            let mut tx = self.begin().await?;
            let me = (self.user(), self.device_id());
            let now = self.now_ms() / 1000;
            self.apply(&mut tx, conversation, me, now, &envelope, false)
                .await?;
            self.commit(tx).await?;
            self.send_only(conversation, vec![me.0], &envelope.to_bytes())
                .await?;
        }
        Ok(())
    }

    /// Reacts to a message (an empty emoji takes the reaction back).
    pub async fn react(
        &mut self, conversation: &Qualified<ConversationId>, message: &str, emoji: &str,
    ) -> Result<(), ClientError> {
        let envelope = Envelope::new(Body::Reaction(content::Reaction {
            message_id: message.to_owned(),
            emoji: emoji.to_owned(),
        }));
        self.send_and_record(conversation, envelope, false).await?;
        Ok(())
    }

    /// Knocks.
    pub async fn knock(
        &mut self, conversation: &Qualified<ConversationId>,
    ) -> Result<String, ClientError> {
        let envelope = Envelope::new(Body::Knock(content::Knock { hot: false }));
        self.send_and_record(conversation, envelope, false).await
    }

    async fn send_and_record(
        &mut self, conversation: &Qualified<ConversationId>, envelope: Envelope, confirm: bool,
    ) -> Result<String, ClientError> {
        self.send_envelope(conversation, &envelope, confirm).await?;
        Ok(envelope.message_id)
    }

    /// Queues a receipt to one author in the outbox (inside the caller's
    /// transaction); it is posted with the next flush.
    pub(super) async fn enqueue_receipt(
        &mut self, tx: &mut Tx, conversation: &Qualified<ConversationId>, kind: ReceiptKind,
        author: UserId, message_ids: Vec<String>,
    ) -> Result<(), ClientError> {
        let envelope = Envelope::new(Body::Receipt(content::Receipt {
            kind: kind as i32,
            message_ids,
        }));
        self.enqueue(
            tx,
            Outgoing {
                conversation,
                users: vec![author],
                only: true,
                strict: false,
                plaintext: &envelope.to_bytes(),
                data: None,
                entry: None,
            },
        )
        .await?;
        Ok(())
    }
}
