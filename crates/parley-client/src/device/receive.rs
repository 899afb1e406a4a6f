//! Receiving: the queue cursor, the live socket that resumes from it, and
//! decrypting what arrives. A message that cannot be decrypted changes no
//! session and no prekey, and is reported with why; a duplicate is dropped.
//!
//! This module never knows what the plaintext means, and never replaces a
//! pinned identity: a prekey message that decrypts pins the key of a device
//! met for the first time; one from a device pinned to another key is refused.

use parley_api::{ClientId, ConversationId, Event, EventPayload, Qualified, UserId};
use parley_proteus::{ProteusError, Session};

use super::{Device, unb64};
use crate::ClientError;
use crate::api::Api;

/// A decrypted message.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Received {
    /// Where.
    pub conversation: Qualified<ConversationId>,
    /// The sending user.
    pub from: UserId,
    /// The sending device.
    pub sender: ClientId,
    /// When the server accepted it.
    pub time: parley_api::OffsetDateTime,
    /// The message's shared blob (sent once for every device), if any.
    pub data: Option<Vec<u8>>,
    /// What they wrote.
    pub plaintext: Vec<u8>,
}

/// Why a message could not be decrypted: what it means for the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Not a Proteus message at all (damaged, or injected by the server): says
    /// nothing about the session.
    Garbage,
    /// A well-formed message that does not decrypt with the session.
    Session,
    /// The sender's identity key is not the one pinned for that device (the
    /// key it offered, when the message carried one).
    IdentityChanged(Option<[u8; 32]>),
}

/// What arrived for this device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A message, decrypted.
    Message(Received),
    /// A message that could not be decrypted: shown as such, with who sent it, so
    /// nothing is lost silently. Nothing was changed by it.
    Undecryptable {
        /// Where.
        conversation: Qualified<ConversationId>,
        /// The sending user.
        from: UserId,
        /// The sending device.
        sender: ClientId,
        /// What kind of failure.
        failure: Failure,
        /// Why.
        reason: String,
    },
    /// Any other stored event (conversation and device changes), for the caller's
    /// state.
    Event(Event),
}

/// Message content is private: `Debug` shows who and where, not what.
impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("conversation", &self.conversation)
            .field("from", &self.from)
            .field("sender", &self.sender)
            .field(
                "plaintext",
                &format_args!("<{} bytes>", self.plaintext.len()),
            )
            .finish()
    }
}

impl Device {
    /// The queue cursor: the last event applied.
    pub(crate) fn cursor(&self) -> Option<u64> {
        self.cursor
    }

    /// Moves the cursor (only ever inside the transaction that applies what
    /// was received up to it).
    pub(crate) fn set_cursor(&mut self, cursor: Option<u64>) {
        self.cursor = cursor;
    }

    /// Decrypts an event if it is a message for this device: `Ok(None)` for
    /// anything else and for a duplicate. On error nothing changed.
    fn receive(&mut self, event: &Event) -> Result<Option<Received>, (Failure, String)> {
        let EventPayload::OtrMessageAdd {
            conversation,
            from,
            data,
            ..
        } = &event.payload
        else {
            return Ok(None);
        };
        if data.recipient != self.client {
            return Ok(None);
        }
        let envelope = unb64(&data.text).map_err(|e| (Failure::Garbage, e.to_string()))?;
        // Bytes that are not even base64 are refused before a key is spent on
        // the message. (A well-formed but swapped blob still costs the key: the
        // blob's own key and hash are inside the plaintext.)
        let blob = data
            .data
            .as_deref()
            .map(unb64)
            .transpose()
            .map_err(|e| (Failure::Garbage, e.to_string()))?;
        let failed = |e: ProteusError| {
            let failure = match e {
                ProteusError::Decode(_) => Failure::Garbage,
                ProteusError::RemoteIdentityChanged => Failure::IdentityChanged(None),
                _ => Failure::Session,
            };
            (
                failure,
                format!(
                    "cannot decrypt a message from device {} of {from}: {e}",
                    data.sender
                ),
            )
        };
        let key = (*from, data.sender);
        let plaintext = match self.sessions.get_mut(&key) {
            Some(session) => {
                match session.decrypt(&self.identity, &mut self.prekeys, &mut self.rng, &envelope) {
                    Ok(p) => p,
                    Err(ProteusError::DuplicateMessage) => return Ok(None),
                    // The key such a message claims is not authenticated (the
                    // session refuses it before decrypting): it is reported,
                    // and pins nothing. Only a prekey message that decrypts
                    // proves a new key.
                    Err(e) => return Err(failed(e)),
                }
            }
            None => {
                // A refused message must not cost a prekey: work on a copy.
                let mut prekeys = self.prekeys.clone();
                let (session, plaintext) = Session::init_from_message(
                    &self.identity,
                    &mut prekeys,
                    &mut self.rng,
                    &envelope,
                )
                .map_err(failed)?;
                let offered = *session.remote_identity().public_key().as_bytes();
                if self.pins.get(&key).is_some_and(|pinned| *pinned != offered) {
                    return Err((
                        Failure::IdentityChanged(Some(offered)),
                        format!(
                            "device {} of {from} wrote with another identity key than the one pinned for it",
                            data.sender
                        ),
                    ));
                }
                self.pins.insert(key, offered);
                self.prekeys = prekeys;
                self.sessions.insert(key, session);
                plaintext
            }
        };
        Ok(Some(Received {
            conversation: conversation.clone(),
            from: *from,
            sender: data.sender,
            time: event.time,
            data: blob,
            plaintext,
        }))
    }

    /// A decrypted message, an undecryptable one, the event itself, or nothing
    /// (a duplicate, or a message for another device).
    pub(crate) fn incoming(&mut self, event: &Event) -> Option<Incoming> {
        match self.receive(event) {
            Ok(Some(message)) => Some(Incoming::Message(message)),
            Ok(None) if matches!(event.payload, EventPayload::OtrMessageAdd { .. }) => None,
            Ok(None) => Some(Incoming::Event(event.clone())),
            Err((failure, reason)) => match &event.payload {
                EventPayload::OtrMessageAdd {
                    conversation,
                    from,
                    data,
                    ..
                } => Some(Incoming::Undecryptable {
                    conversation: conversation.clone(),
                    from: *from,
                    sender: data.sender,
                    failure,
                    reason,
                }),
                _ => None,
            },
        }
    }

    /// Opens this device's live socket from where it left off: what it missed
    /// arrives first, in order, then live events.
    pub(crate) async fn connect(&self, api: &Api) -> Result<crate::api::LiveSocket, ClientError> {
        api.connect_live(self.client, Some(self.cursor.unwrap_or(0)))
            .await
    }
}
