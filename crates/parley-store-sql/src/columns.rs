//! How records are written in SQL columns and read back from rows, shared by
//! both backends so they cannot disagree.

use parley_api::{ClientClass, ClientType, ConnectionStatus, ConversationKind, CookieKind, Role};
use parley_store::{
    ClientRecord, ConnectionRecord, ConversationRecord, Cookie, MemberRecord, OneTimeCode,
    PrekeyRecord, QueuedEvent, Roster, StoreError, StoreResult, User,
};

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

/// A [`ConnectionStatus`] is written as its JSON name.
pub fn connection_status(s: ConnectionStatus) -> &'static str {
    s.as_str()
}

/// Reads [`connection_status`]'s form.
fn parse_connection_status(s: &str) -> StoreResult<ConnectionStatus> {
    ConnectionStatus::ALL
        .into_iter()
        .find(|c| c.as_str() == s)
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

/// A `connections` row, selected as [`CONNECTION_COLUMNS`].
pub type ConnectionRow = (String, String, String, Option<String>, i64);

/// Reads a [`ConnectionRow`].
pub fn connection(row: ConnectionRow) -> StoreResult<ConnectionRecord> {
    let (from, to, status, conversation, updated_at) = row;
    Ok(ConnectionRecord {
        from: parse_user_id(&from)?,
        to: parse_user_id(&to)?,
        status: parse_connection_status(&status)?,
        conversation: conversation
            .as_deref()
            .map(parse_conversation_id)
            .transpose()?,
        updated_at,
    })
}

/// A `conversations` row, selected as
/// [`CONVERSATION_COLUMNS`].
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
        id: parse_conversation_id(&id)?,
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
pub fn parse_user_id(s: &str) -> StoreResult<parley_api::UserId> {
    s.parse()
        .map_err(|_| StoreError::Backend(format!("bad user id {s:?} in storage")))
}

/// Conversation ids are kept as their hyphenated text.
pub fn parse_conversation_id(s: &str) -> StoreResult<parley_api::ConversationId> {
    s.parse()
        .map_err(|_| StoreError::Backend(format!("bad conversation id {s:?} in storage")))
}

/// The columns of a [`ConnectionRow`], in order.
#[macro_export]
macro_rules! connection_columns {
    () => {
        "from_id, to_id, status, conversation_id, updated_at"
    };
}

/// The columns of a [`ConversationRow`], in order, of the table aliased `c`.
#[macro_export]
macro_rules! conversation_columns {
    () => {
        "c.id, c.kind, c.name, c.creator, c.message_timer, c.receipt_mode, c.created_at"
    };
}

/// Reads a count the database keeps as a signed integer.
fn count(v: i64, what: &str) -> StoreResult<u32> {
    u32::try_from(v).map_err(|_| StoreError::Backend(format!("{what} {v} in storage")))
}

/// A `users` row.
#[derive(Debug, sqlx::FromRow)]
pub struct UserRow {
    id: String,
    name: String,
    email: String,
    handle: Option<String>,
    password_hash: String,
    accent_id: i32,
    locale: String,
    picture: Option<String>,
    created_at: i64,
}

/// The columns of a [`UserRow`].
#[macro_export]
macro_rules! user_columns {
    () => {
        "id, name, email, handle, password_hash, accent_id, locale, picture, created_at"
    };
}

impl UserRow {
    pub fn record(self) -> StoreResult<User> {
        Ok(User {
            id: parse_user_id(&self.id)?,
            name: self.name,
            email: self.email,
            handle: self.handle,
            password_hash: self.password_hash,
            accent_id: self.accent_id,
            locale: self.locale,
            picture: self.picture,
            created_at: self.created_at,
        })
    }
}

/// A `cookies` row.
#[derive(Debug, sqlx::FromRow)]
pub struct CookieRow {
    user_id: String,
    id: String,
    label: Option<String>,
    persistent: bool,
    created_at: i64,
    expires_at: i64,
}

impl CookieRow {
    pub fn record(self) -> StoreResult<Cookie> {
        Ok(Cookie {
            id: self.id,
            user: parse_user_id(&self.user_id)?,
            label: self.label,
            kind: if self.persistent {
                CookieKind::Persistent
            } else {
                CookieKind::Session
            },
            created_at: self.created_at,
            expires_at: self.expires_at,
        })
    }
}

/// A `clients` row.
#[derive(Debug, sqlx::FromRow)]
pub struct ClientRow {
    user_id: String,
    id: i64,
    kind: String,
    class: String,
    model: Option<String>,
    label: Option<String>,
    cookie_label: Option<String>,
    created_at: i64,
    trust: Option<String>,
}

impl ClientRow {
    pub fn record(self) -> StoreResult<ClientRecord> {
        Ok(ClientRecord {
            user: parse_user_id(&self.user_id)?,
            id: parse_client_id(self.id),
            kind: parse_client_type(&self.kind)?,
            class: parse_client_class(&self.class)?,
            model: self.model,
            label: self.label,
            cookie_label: self.cookie_label,
            created_at: self.created_at,
            trust: self.trust,
        })
    }
}

/// A one-time code's row: `activation_codes` (its `email` read as `key`, no
/// `user_id`) or `password_resets`.
#[derive(Debug, sqlx::FromRow)]
pub struct CodeRow {
    key: String,
    user_id: Option<String>,
    code_hash: Vec<u8>,
    expires_at: i64,
    tries: i64,
}

impl CodeRow {
    pub fn record(self) -> StoreResult<OneTimeCode> {
        Ok(OneTimeCode {
            key: self.key,
            user: self.user_id.as_deref().map(parse_user_id).transpose()?,
            code_hash: self.code_hash,
            expires_at: self.expires_at,
            tries: tries(self.tries)?,
        })
    }
}

/// Reads a tries counter.
pub fn tries(v: i64) -> StoreResult<u32> {
    count(v, "tries")
}

/// Reads an `(id, key)` row of `prekeys`.
pub fn prekey((id, key): (i64, String)) -> StoreResult<PrekeyRecord> {
    Ok(PrekeyRecord {
        id: u16::try_from(id).map_err(|_| StoreError::Backend(format!("prekey id {id}")))?,
        key,
    })
}

/// Reads an `(id, payload, created_at, data)` row of `notifications` joined
/// with the shared message it refers to, if any (its data is added).
pub fn event(
    (id, payload, created_at, data): (i64, String, i64, Option<String>),
) -> StoreResult<QueuedEvent> {
    Ok(QueuedEvent {
        id: event_id(id)?,
        payload: match data {
            Some(data) => parley_store::with_data(&payload, &data),
            None => payload,
        },
        created_at,
    })
}

/// Reads an event id.
pub fn event_id(id: i64) -> StoreResult<u64> {
    u64::try_from(id).map_err(|_| StoreError::Backend(format!("event id {id}")))
}

/// User ids as the JSON array of text that [`Dialect::DEVICES_OF`](crate::Dialect::DEVICES_OF) takes.
pub fn user_ids_json<'a>(users: impl IntoIterator<Item = &'a parley_api::UserId>) -> String {
    let users: Vec<String> = users.into_iter().map(ToString::to_string).collect();
    serde_json::to_string(&users).expect("a list of strings is JSON")
}
