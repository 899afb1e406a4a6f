//! Events: what a device's queue and its socket tell it.

use serde::{Deserialize, Serialize};

use super::*;

/// What happened, as a device's queue tells it (`type` names the event).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type")]
pub enum EventPayload {
    /// A new device was added to the user's account.
    #[serde(rename = "user.client-add")]
    ClientAdd {
        /// The new device.
        client: Client,
    },
    /// One of the user's devices was removed.
    #[serde(rename = "user.client-remove")]
    ClientRemove {
        /// The removed device.
        client: ClientId,
    },
    /// The user's profile changed (only the changed fields are given).
    #[serde(rename = "user.update")]
    UserUpdate {
        /// Whose profile.
        user: UserId,
        /// The changed fields.
        update: UpdateProfile,
    },
    /// A connection changed: a request arrived, was accepted, blocked, …
    #[serde(rename = "user.connection")]
    Connection {
        /// The receiving user's side of it.
        connection: Connection,
    },
    /// The user was made a member of a new conversation. The event names it;
    /// its name and members are fetched (`GET /v1/conversations/…`), so that
    /// a group of hundreds does not write its member list into every device's
    /// queue.
    #[serde(rename = "conversation.create")]
    ConversationCreate {
        /// The conversation.
        conversation: Qualified<ConversationId>,
        /// Who made it.
        from: UserId,
    },
    /// An MLS message for a group this device is in: a commit, a proposal
    /// or an application message (stored once for the whole group).
    #[serde(rename = "conversation.mls-message-add")]
    MlsMessageAdd {
        /// Where.
        conversation: Qualified<ConversationId>,
        /// The subconversation whose group it is of (`conference`); none for
        /// the conversation's own group.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subconversation: Option<String>,
        /// Whose device sent it.
        from: UserId,
        /// The sending device.
        client: ClientId,
        /// The MLS message, base64.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        data: String,
    },
    /// This device was added to an MLS group: the welcome to join it.
    #[serde(rename = "conversation.mls-welcome")]
    MlsWelcome {
        /// Where.
        conversation: Qualified<ConversationId>,
        /// Who added it.
        from: UserId,
        /// The welcome, base64.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        data: String,
    },
    /// Users joined.
    #[serde(rename = "conversation.member-join")]
    MemberJoin {
        /// Where.
        conversation: Qualified<ConversationId>,
        /// Who added them.
        from: UserId,
        /// The new members.
        members: Vec<Member>,
    },
    /// Users left or were removed.
    #[serde(rename = "conversation.member-leave")]
    MemberLeave {
        /// Where.
        conversation: Qualified<ConversationId>,
        /// Who removed them (themselves when they left).
        from: UserId,
        /// Who is gone.
        users: Vec<Qualified<UserId>>,
    },
    /// A member's role changed.
    #[serde(rename = "conversation.member-update")]
    MemberUpdate {
        /// Where.
        conversation: Qualified<ConversationId>,
        /// Who changed it.
        from: UserId,
        /// The member with the new role.
        member: Member,
    },
    /// The conversation took its next step from Proteus to MLS.
    #[serde(rename = "conversation.protocol-update")]
    ProtocolUpdate {
        /// Where.
        conversation: Qualified<ConversationId>,
        /// Who started it, or whose commit completed it.
        from: UserId,
        /// `mixed` or `mls`.
        protocol: crate::Protocol,
    },
    /// A subconversation (a call) was reset: the group this device was in
    /// is gone; joining again starts or joins its next one.
    #[serde(rename = "conversation.subconversation-reset")]
    SubconversationReset {
        /// Where.
        conversation: Qualified<ConversationId>,
        /// Which subconversation (`conference`).
        subconversation: String,
        /// The group that ended, base64 (a device already in the next one
        /// keeps it).
        group_id: String,
        /// Who reset it.
        from: UserId,
    },
    /// The group was renamed.
    #[serde(rename = "conversation.rename")]
    Rename {
        /// Where.
        conversation: Qualified<ConversationId>,
        /// Who renamed it.
        from: UserId,
        /// The new name.
        name: String,
    },
    /// The self-deleting timer changed.
    #[serde(rename = "conversation.message-timer-update")]
    MessageTimerUpdate {
        /// Where.
        conversation: Qualified<ConversationId>,
        /// Who changed it.
        from: UserId,
        /// Milliseconds, or none.
        message_timer: Option<u64>,
    },
    /// The receipt mode changed.
    #[serde(rename = "conversation.receipt-mode-update")]
    ReceiptModeUpdate {
        /// Where.
        conversation: Qualified<ConversationId>,
        /// Who changed it.
        from: UserId,
        /// 0 off, 1 on.
        receipt_mode: u8,
    },
    /// An encrypted message for this device.
    #[serde(rename = "conversation.otr-message-add")]
    OtrMessageAdd {
        /// Where.
        conversation: Qualified<ConversationId>,
        /// The sending user.
        from: UserId,
        /// The server's time for the message.
        #[serde(with = "time::serde::rfc3339")]
        time: OffsetDateTime,
        /// The ciphertext for this device.
        data: ProteusMessage,
    },
    /// Someone started or stopped typing (sent live only, never stored).
    #[serde(rename = "conversation.typing")]
    Typing {
        /// Where.
        conversation: Qualified<ConversationId>,
        /// Who.
        from: UserId,
        /// Started or stopped.
        status: TypingStatus,
    },
    /// An event this version does not know: skip it.
    #[serde(other)]
    Unknown,
}

/// One event in a device's queue.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Orders the event within the device's queue; pass it as `since` to continue.
    pub id: u64,
    /// When it was stored.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// What happened.
    pub payload: EventPayload,
}

/// An event sent only to open sockets, never stored (typing, transient messages):
/// it has no queue id. On a socket, frames with `"transient": true` are these;
/// the others are [`Event`]s.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransientEvent {
    /// Always `true`.
    pub transient: bool,
    /// When it was sent.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// What happened.
    pub payload: EventPayload,
}

/// One frame of `GET /v1/await`: a stored event or a transient one.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum LiveFrame {
    /// Not stored: no id.
    Transient(TransientEvent),
    /// From the device's queue.
    Stored(Event),
}

/// `GET /v1/notifications`
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotificationPage {
    /// Events after `since`, oldest first.
    pub notifications: Vec<Event>,
    /// More events follow: ask again with the last id as `since`.
    pub has_more: bool,
}

/// The 404 answer when events after `since` were purged: the error, and the events
/// that are still there. The device must resynchronise its conversations.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotificationsLost {
    /// 404.
    pub code: u16,
    /// `notifications-lost`.
    pub label: String,
    /// For people.
    pub message: String,
    /// What is still there, oldest first.
    pub notifications: Vec<Event>,
    /// More events follow.
    pub has_more: bool,
}
