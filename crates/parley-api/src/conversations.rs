//! Connections, conversations and messages: the shapes of `/v1/connections` and
//! `/v1/conversations`, and of the events they put in device queues.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{ClientId, ConversationId, Qualified, UserId};

/// Where one user stands with another. Each side of a pair has its own status.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ConnectionStatus {
    /// I asked; they have not answered.
    Sent,
    /// They asked; I have not answered.
    Pending,
    /// Connected: we share a 1:1 conversation.
    Accepted,
    /// They asked and I ignored it (they are not told).
    Ignored,
    /// I blocked them: neither can send to the other.
    Blocked,
    /// I withdrew my request.
    Cancelled,
}

impl ConnectionStatus {
    /// Every status.
    pub const ALL: [Self; 6] = [
        Self::Sent,
        Self::Pending,
        Self::Accepted,
        Self::Ignored,
        Self::Blocked,
        Self::Cancelled,
    ];

    /// The status's JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Ignored => "ignored",
            Self::Blocked => "blocked",
            Self::Cancelled => "cancelled",
        }
    }
}

/// `PUT /v1/connections/{domain}/{uid}`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionUpdate {
    /// `accepted`, `ignored`, `blocked` or `cancelled`.
    pub status: ConnectionStatus,
}

/// One side of a connection, as its owner sees it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Connection {
    /// The owner of this side.
    pub from: UserId,
    /// The other user.
    pub to: Qualified<UserId>,
    /// Where `from` stands with `to`.
    pub status: ConnectionStatus,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub last_update: OffsetDateTime,
    /// The 1:1 conversation, once accepted.
    pub conversation: Option<Qualified<ConversationId>>,
}

/// Group or 1:1.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ConversationKind {
    /// A named conversation of up to the member limit.
    Group,
    /// Two connected users.
    One2one,
}

/// How a conversation's messages are protected.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Proteus: one ciphertext per device.
    #[default]
    Proteus,
    /// On its way from Proteus to MLS: messages still go by Proteus, and
    /// the members' devices join the conversation's MLS group beside it;
    /// members change as in Proteus, the group follows.
    Mixed,
    /// MLS (RFC 9420): one ciphertext per group; members change by commits.
    Mls,
}

impl Protocol {
    /// Whether the conversation has an MLS group (`mixed` or `mls`).
    pub fn has_group(self) -> bool {
        matches!(self, Self::Mixed | Self::Mls)
    }

    /// The later of two steps of the one way a conversation goes
    /// (Proteus, mixed, MLS): never back.
    pub fn furthest(self, other: Self) -> Self {
        let step = |p: Self| match p {
            Self::Proteus => 0,
            Self::Mixed => 1,
            Self::Mls => 2,
        };
        if step(other) > step(self) {
            other
        } else {
            self
        }
    }
}

/// `PUT /v1/conversations/{domain}/{id}/protocol`: a group's next step from
/// Proteus to MLS (admins only): `mixed` starts the migration, `mls`
/// finishes it once every member's devices are in the group (or after the
/// backend's `[mls] migration_finalise_after`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProtocolUpdate {
    /// `mixed` or `mls`.
    pub protocol: Protocol,
}

/// A member's rights in a group.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May add and remove members, rename, set the timer and receipt mode.
    Admin,
    /// May send and leave.
    Member,
}

/// A member of a conversation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    /// Who.
    pub id: Qualified<UserId>,
    /// Their role.
    pub role: Role,
}

/// A conversation as a member sees it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Conversation {
    /// Its id.
    pub id: Qualified<ConversationId>,
    /// Group or 1:1.
    #[serde(rename = "type")]
    pub kind: ConversationKind,
    /// The group's name (none for 1:1).
    pub name: Option<String>,
    /// Who created it.
    pub creator: UserId,
    /// Every member, the caller included.
    pub members: Vec<Member>,
    /// Self-deleting timer for every message, in milliseconds.
    pub message_timer: Option<u64>,
    /// Read receipts: 0 off, 1 on.
    pub receipt_mode: u8,
    /// Proteus, mixed (migrating) or MLS.
    #[serde(default)]
    pub protocol: Protocol,
    /// An MLS or mixed conversation's group id, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Its group's epoch (0 until its creator's first commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// When that epoch began.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub epoch_timestamp: Option<OffsetDateTime>,
    /// Its group's cipher suite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher_suite: Option<u16>,
}

/// `POST /v1/conversations`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewConversation {
    /// The group's name (1 to 256 characters).
    pub name: String,
    /// The other members (the creator joins as admin).
    #[serde(default)]
    pub users: Vec<Qualified<UserId>>,
    /// Self-deleting timer in milliseconds.
    #[serde(default)]
    pub message_timer: Option<u64>,
    /// Read receipts: 0 off, 1 on.
    #[serde(default)]
    pub receipt_mode: u8,
    /// `mls` for an MLS conversation: created with its creator alone, whose
    /// first commit adds the others.
    #[serde(default)]
    pub protocol: Protocol,
    /// An MLS conversation's cipher suite (the backend's default if absent).
    #[serde(default)]
    pub cipher_suite: Option<u16>,
}

/// `GET /v1/conversations`: one page, in id order.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationPage {
    /// The conversations.
    pub conversations: Vec<Conversation>,
    /// More follow: ask again with `start` = the last id.
    pub has_more: bool,
}

/// `POST /v1/conversations/{domain}/{id}/members`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddMembers {
    /// Who to add.
    pub users: Vec<Qualified<UserId>>,
    /// Their role (member by default).
    #[serde(default)]
    pub role: Option<Role>,
}

/// `PUT /v1/conversations/{domain}/{id}/members/{domain}/{uid}`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberUpdate {
    /// The new role.
    pub role: Role,
}

/// `PUT /v1/conversations/{domain}/{id}/name`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rename {
    /// 1 to 256 characters.
    pub name: String,
}

/// `PUT /v1/conversations/{domain}/{id}/message-timer`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageTimerUpdate {
    /// Milliseconds, or `null` to turn it off.
    pub message_timer: Option<u64>,
}

/// `PUT /v1/conversations/{domain}/{id}/receipt-mode`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceiptModeUpdate {
    /// 0 off, 1 on.
    pub receipt_mode: u8,
}

/// `POST /v1/conversations/{domain}/{id}/typing`
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TypingStatus {
    /// Started typing.
    Started,
    /// Stopped.
    Stopped,
}

/// `POST /v1/conversations/{domain}/{id}/typing`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Typing {
    /// Started or stopped.
    pub status: TypingStatus,
}

/// Devices, by domain and user: `domain → user → [device]`.
pub type ClientMap = BTreeMap<String, BTreeMap<UserId, Vec<ClientId>>>;

/// Ciphertexts, by domain, user and device: `domain → user → device → base64`.
pub type Recipients = BTreeMap<String, BTreeMap<UserId, BTreeMap<ClientId, String>>>;

/// Which missing devices refuse a message.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum ReportMissing {
    /// Any missing device refuses the message (the default).
    #[default]
    All,
    /// Deliver to whoever is listed; report nothing missing.
    None,
    /// Only missing devices of these users refuse the message.
    Only {
        /// Whose devices must all be there.
        users: Vec<UserId>,
    },
}

/// `POST /v1/conversations/{domain}/{id}/proteus/messages`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewProteusMessage {
    /// The sending device (the caller's).
    pub sender: ClientId,
    /// One ciphertext per device, base64.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub recipients: Recipients,
    /// One payload for everyone, encrypted once, base64; each device's ciphertext
    /// carries its key.
    #[serde(default)]
    pub data: Option<String>,
    /// Deliver only to devices connected now; store nothing.
    #[serde(default)]
    pub transient: bool,
    /// Which missing devices refuse the message.
    #[serde(default)]
    pub report_missing: ReportMissing,
    /// The sending device's send generation (its count of encryptions): once
    /// delivered, the device's generation on the server is at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

/// The answer to a message: 201 when sent, 412 when devices were missing.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageSent {
    /// The server's time for the message.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Devices of members that the message lacked (412: nothing was delivered).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub missing: ClientMap,
    /// Devices of users who are not members: dropped.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub redundant: ClientMap,
    /// Devices that no longer exist: dropped.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub deleted: ClientMap,
}

/// A message as one device receives it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProteusMessage {
    /// The sending device.
    pub sender: ClientId,
    /// The receiving device.
    pub recipient: ClientId,
    /// This device's ciphertext, base64.
    pub text: String,
    /// The shared payload, base64.
    pub data: Option<String>,
}
