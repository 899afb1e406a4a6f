//! How records' enums are written in SQL columns, shared by every backend so they
//! cannot disagree.

use parley_api::{ClientClass, ClientType, ConnectionStatus, ConversationKind, Role};

use crate::{ConnectionRecord, ConversationRecord, MemberRecord, Roster, StoreError, StoreResult};

/// `permanent` / `temporary`.
pub fn client_type(kind: ClientType) -> &'static str {
    match kind {
        ClientType::Permanent => "permanent",
        ClientType::Temporary => "temporary",
    }
}

/// Reads [`client_type`]'s form.
pub fn parse_client_type(s: &str) -> StoreResult<ClientType> {
    match s {
        "permanent" => Ok(ClientType::Permanent),
        "temporary" => Ok(ClientType::Temporary),
        _ => Err(StoreError::Backend(format!(
            "unknown client type {s:?} in storage"
        ))),
    }
}

/// `phone` / `tablet` / `desktop` / `legalhold`.
pub fn client_class(class: ClientClass) -> &'static str {
    match class {
        ClientClass::Phone => "phone",
        ClientClass::Tablet => "tablet",
        ClientClass::Desktop => "desktop",
        ClientClass::Legalhold => "legalhold",
    }
}

/// Reads [`client_class`]'s form.
pub fn parse_client_class(s: &str) -> StoreResult<ClientClass> {
    match s {
        "phone" => Ok(ClientClass::Phone),
        "tablet" => Ok(ClientClass::Tablet),
        "desktop" => Ok(ClientClass::Desktop),
        "legalhold" => Ok(ClientClass::Legalhold),
        _ => Err(StoreError::Backend(format!(
            "unknown client class {s:?} in storage"
        ))),
    }
}

/// The [`ConnectionStatus`]'s JSON name.
pub fn connection_status(s: ConnectionStatus) -> &'static str {
    match s {
        ConnectionStatus::Sent => "sent",
        ConnectionStatus::Pending => "pending",
        ConnectionStatus::Accepted => "accepted",
        ConnectionStatus::Ignored => "ignored",
        ConnectionStatus::Blocked => "blocked",
        ConnectionStatus::Cancelled => "cancelled",
    }
}

/// Reads [`connection_status`]'s form.
fn parse_connection_status(s: &str) -> StoreResult<ConnectionStatus> {
    [
        ConnectionStatus::Sent,
        ConnectionStatus::Pending,
        ConnectionStatus::Accepted,
        ConnectionStatus::Ignored,
        ConnectionStatus::Blocked,
        ConnectionStatus::Cancelled,
    ]
    .into_iter()
    .find(|c| connection_status(*c) == s)
    .ok_or_else(|| StoreError::Backend(format!("unknown connection status {s:?} in storage")))
}

/// `group` / `one2one`.
pub fn conversation_kind(k: ConversationKind) -> &'static str {
    match k {
        ConversationKind::Group => "group",
        ConversationKind::One2one => "one2one",
    }
}

/// Reads [`conversation_kind`]'s form.
fn parse_conversation_kind(s: &str) -> StoreResult<ConversationKind> {
    match s {
        "group" => Ok(ConversationKind::Group),
        "one2one" => Ok(ConversationKind::One2one),
        _ => Err(StoreError::Backend(format!(
            "unknown conversation kind {s:?} in storage"
        ))),
    }
}

/// `admin` / `member`.
pub fn role(r: Role) -> &'static str {
    match r {
        Role::Admin => "admin",
        Role::Member => "member",
    }
}

/// Reads [`role`]'s form.
fn parse_role(s: &str) -> StoreResult<Role> {
    match s {
        "admin" => Ok(Role::Admin),
        "member" => Ok(Role::Member),
        _ => Err(StoreError::Backend(format!(
            "unknown role {s:?} in storage"
        ))),
    }
}

/// Timers are kept as signed 64-bit milliseconds.
pub fn timer(ms: Option<u64>) -> Option<i64> {
    ms.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// Reads [`timer`]'s form.
fn parse_timer(v: Option<i64>) -> Option<u64> {
    v.map(|v| u64::try_from(v).unwrap_or(0))
}

/// A `connections` row, selected as [`connection_columns!`](crate::connection_columns).
pub type ConnectionRow = (String, String, String, Option<String>, i64);

/// Reads a [`ConnectionRow`].
pub fn connection(row: ConnectionRow) -> StoreResult<ConnectionRecord> {
    let (from, to, status, conversation, updated_at) = row;
    Ok(ConnectionRecord {
        from: parse_user_id(&from)?,
        to: parse_user_id(&to)?,
        status: parse_connection_status(&status)?,
        conversation: conversation.as_deref().map(parse_user_id).transpose()?,
        updated_at,
    })
}

/// A `conversations` row, selected as
/// [`conversation_columns!`](crate::conversation_columns).
pub type ConversationRow = (
    String,
    String,
    Option<String>,
    String,
    Option<i64>,
    i64,
    i64,
);

/// Reads a [`ConversationRow`].
pub fn conversation(row: ConversationRow) -> StoreResult<ConversationRecord> {
    let (id, kind, name, creator, message_timer, receipt_mode, created_at) = row;
    Ok(ConversationRecord {
        id: parse_user_id(&id)?,
        kind: parse_conversation_kind(&kind)?,
        name,
        creator: parse_user_id(&creator)?,
        message_timer: parse_timer(message_timer),
        receipt_mode: u8::try_from(receipt_mode).unwrap_or(1),
        created_at,
    })
}

/// Reads a `(user_id, role)` row of `conversation_members`.
pub fn member((user, role_name): (String, String)) -> StoreResult<MemberRecord> {
    Ok(MemberRecord {
        user: parse_user_id(&user)?,
        role: parse_role(&role_name)?,
    })
}

/// Builds a roster from `(member, device)` rows ordered by member: a member
/// without devices has one row with no device; a row with no member (an outer
/// join that found none) is skipped.
pub fn roster(rows: Vec<(Option<String>, Option<i64>)>) -> StoreResult<Roster> {
    let mut roster = Roster::default();
    for (user, client) in rows {
        let Some(user) = user else { continue };
        let user = parse_user_id(&user)?;
        if roster.members.last().is_none_or(|(u, _)| *u != user) {
            roster.members.push((user, Vec::new()));
        }
        if let (Some(client), Some((_, clients))) = (client, roster.members.last_mut()) {
            clients.push(parse_client_id(client));
        }
    }
    Ok(roster)
}

/// Client ids are 64 random bits, kept in a signed 64-bit column bit for bit.
pub fn client_id(id: parley_api::ClientId) -> i64 {
    i64::from_ne_bytes(id.0.to_ne_bytes())
}

/// Reads [`client_id`]'s form.
pub fn parse_client_id(v: i64) -> parley_api::ClientId {
    parley_api::ClientId(u64::from_ne_bytes(v.to_ne_bytes()))
}

/// User ids are kept as their hyphenated text.
pub fn parse_user_id(s: &str) -> StoreResult<uuid::Uuid> {
    s.parse()
        .map_err(|_| StoreError::Backend(format!("bad user id {s:?} in storage")))
}
