//! Parley's HTTP API types: ids, request and response bodies and error labels.
//!
//! One definition shared by the server, the client SDK and bots, so the two ends of
//! a request cannot drift apart. Knows nothing about storage, HTTP frameworks or
//! cryptography: only shapes and their JSON form.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
pub use time::OffsetDateTime;
pub use uuid::Uuid;

mod conversations;
pub use conversations::*;
mod trust;
pub use trust::*;
mod mls;
pub use mls::*;
mod events;
pub use events::*;

/// Declares an id that is a random UUID v4 underneath, as its own type so
/// that one kind of id is never taken for another. Written and read as the
/// hyphenated lowercase UUID; ordered as that text is.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        #[cfg_attr(
            feature = "openapi",
            derive(utoipa::ToSchema),
            schema(value_type = String, format = Uuid)
        )]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new random id.
            pub fn random() -> Self {
                Self(Uuid::new_v4())
            }

            /// The id's 16 bytes.
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::from_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// A user id: a random UUID v4.
    UserId
);
uuid_id!(
    /// A conversation id: a random UUID v4.
    ConversationId
);

/// A device (client) id: random 64 bits, written as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, example = "deadbeef0042"))]
pub struct ClientId(pub u64);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({self})")
    }
}

impl FromStr for ClientId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(ClientId)
    }
}

impl Serialize for ClientId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClientId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom("a client id is lowercase hex"))
    }
}

/// An id qualified by the backend domain it lives on (`id@domain`).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Qualified<T> {
    /// The id on its backend.
    pub id: T,
    /// The backend's domain.
    pub domain: String,
}

/// Every error the API returns: `{"code": 403, "label": "access-denied", "message": "…"}`.
/// `label` is stable per cause; `message` is for people.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The HTTP status code.
    pub code: u16,
    /// A stable label naming the cause.
    pub label: String,
    /// What went wrong, for a person to act on.
    pub message: String,
}

/// `POST /v1/activate/send`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SendActivationCode {
    /// Where the code goes.
    pub email: String,
}

/// `POST /v1/register`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Register {
    /// Display name.
    pub name: String,
    /// The e-mail address the code was sent to.
    pub email: String,
    /// The 6-digit code from the e-mail.
    pub email_code: String,
    /// The new password.
    pub password: String,
    /// A handle to take with the account, in the same step: if it is taken
    /// (409 `handle-exists`) nothing is created and the code still works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
}

/// `POST /v1/login`: by e-mail or handle.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Login {
    /// E-mail address (or give `handle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Handle (or give `email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    /// The password.
    pub password: String,
    /// A label for the cookie, so it can be removed later by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// A persistent (1 year) rather than session (1 week) cookie.
    #[serde(default)]
    pub persist: bool,
}

/// The answer to login, registration and token refresh.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessToken {
    /// The bearer token for every other request.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
    /// Whose token it is.
    pub user: UserId,
}

/// `GET /v1/self`
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SelfProfile {
    /// The user's qualified id.
    pub qualified_id: Qualified<UserId>,
    /// Display name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// Unique handle, once set.
    pub handle: Option<String>,
    /// Accent colour.
    pub accent_id: i32,
    /// Locale, e.g. `en`.
    pub locale: String,
    /// Picture asset reference.
    pub picture: Option<String>,
}

/// `GET /v1/users/{domain}/{id}` and `GET /v1/handles/{handle}`: what others see.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserProfile {
    /// The user's qualified id.
    pub qualified_id: Qualified<UserId>,
    /// Display name.
    pub name: String,
    /// Unique handle, once set.
    pub handle: Option<String>,
    /// Accent colour.
    pub accent_id: i32,
    /// Picture asset reference.
    pub picture: Option<String>,
}

/// `PUT /v1/self`: only the fields given change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateProfile {
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Accent colour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accent_id: Option<i32>,
    /// Locale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Picture asset reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
}

/// `PUT /v1/self/handle`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetHandle {
    /// 2–256 characters of `a-z0-9_.-`.
    pub handle: String,
}

/// `PUT /v1/self/password`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangePassword {
    /// The current password.
    pub old_password: String,
    /// The new password.
    pub new_password: String,
}

/// A request that re-authenticates with the password (`DELETE /v1/self`,
/// `DELETE /v1/clients/{id}`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasswordConfirmation {
    /// The account's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// Whether a cookie outlives the session.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum CookieKind {
    /// One year.
    Persistent,
    /// One week.
    Session,
}

/// One login of a user (`GET /v1/cookies`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CookieInfo {
    /// The cookie's id.
    pub id: String,
    /// Its label, if the login gave one.
    pub label: Option<String>,
    /// Persistent or session.
    pub kind: CookieKind,
    /// When it was issued.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When it expires.
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
}

/// `GET /v1/cookies`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CookieList {
    /// Newest first.
    pub cookies: Vec<CookieInfo>,
}

/// `POST /v1/cookies/remove`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RemoveCookies {
    /// Remove the cookies with these labels.
    pub labels: Vec<String>,
    /// The account's password.
    pub password: String,
}

/// `POST /v1/password-reset`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasswordResetRequest {
    /// The account's e-mail address.
    pub email: String,
}

/// `POST /v1/password-reset/complete`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasswordResetComplete {
    /// The reset key from the e-mail.
    pub key: String,
    /// The reset code from the e-mail.
    pub code: String,
    /// The new password.
    pub password: String,
}

/// Permanent devices count against the limit of 7; one temporary device may exist.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ClientType {
    /// A device the user keeps.
    Permanent,
    /// A one-off session, replaced by the next temporary one.
    Temporary,
}

/// What kind of device.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ClientClass {
    /// A phone.
    Phone,
    /// A tablet.
    Tablet,
    /// A desktop or laptop.
    Desktop,
    /// A legal-hold device.
    Legalhold,
}

/// A prekey as the server keeps it: an id and the base64 of the device's serialized
/// Proteus prekey bundle, stored as given.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Prekey {
    /// `0..=65534`, or 65535 for the last-resort prekey.
    pub id: u16,
    /// Base64 of the serialized prekey bundle.
    pub key: String,
}

/// `POST /v1/clients`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewClient {
    /// Permanent or temporary.
    #[serde(rename = "type")]
    pub kind: ClientType,
    /// What kind of device.
    pub class: ClientClass,
    /// Device model, shown to the user.
    #[serde(default)]
    pub model: Option<String>,
    /// A label the user chose.
    #[serde(default)]
    pub label: Option<String>,
    /// The label of the cookie this device logged in with; removing the device
    /// removes those cookies too.
    #[serde(default)]
    pub cookie_label: Option<String>,
    /// The account's password (required when the account has one).
    #[serde(default)]
    pub password: Option<String>,
    /// One-time prekeys.
    pub prekeys: Vec<Prekey>,
    /// The last-resort prekey (id 65535).
    pub last_prekey: Prekey,
    /// The device's identity key signed by the user's root key.
    #[serde(default)]
    pub trust: Option<DeviceTrust>,
}

/// A device as its owner sees it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Client {
    /// The device id.
    pub id: ClientId,
    /// Permanent or temporary.
    #[serde(rename = "type")]
    pub kind: ClientType,
    /// What kind of device.
    pub class: ClientClass,
    /// Device model.
    pub model: Option<String>,
    /// The user's label.
    pub label: Option<String>,
    /// The cookie label it logged in with.
    pub cookie_label: Option<String>,
    /// When it was registered.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// The device's identity key signed by the user's root key.
    #[serde(default)]
    pub trust: Option<DeviceTrust>,
}

/// A device as anyone sees it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicClient {
    /// The device id.
    pub id: ClientId,
    /// What kind of device.
    pub class: ClientClass,
    /// The device's identity key signed by the user's root key.
    #[serde(default)]
    pub trust: Option<DeviceTrust>,
}

/// `POST /v1/clients/{id}/prekeys`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadPrekeys {
    /// Prekeys to add (an existing id is replaced).
    pub prekeys: Vec<Prekey>,
}

/// `PUT /v1/clients/{id}/push`: where to POST a content-free wake-up when an event
/// is stored for the device and it has no open socket (a UnifiedPush endpoint).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushEndpoint {
    /// An `https://` URL.
    pub url: String,
}

/// `POST /v1/clients/{id}/generation`, both ways: the highest send generation a
/// device has reported. A device's copy restored from an old backup finds the
/// server ahead of it, and knows its sessions may already have used the chain
/// positions it holds.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Generation {
    /// The generation.
    pub generation: u64,
}

/// `GET /v1/clients/{id}/prekeys`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrekeyCount {
    /// Unused one-time prekeys (the last-resort prekey not counted).
    pub count: u64,
}

/// `GET /v1/users/{domain}/{uid}/prekeys/{client}`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientPrekey {
    /// The device.
    pub client: ClientId,
    /// A claimed prekey (or the last-resort one when the pool is empty).
    pub prekey: Prekey,
}

/// `POST /v1/users/list-prekeys`: domain → user → devices; the answer has the same
/// shape with a prekey (or `null` for an unknown device) per device.
pub type PrekeyRequest = BTreeMap<String, BTreeMap<UserId, Vec<ClientId>>>;

/// The answer to [`PrekeyRequest`].
pub type PrekeyMap = BTreeMap<String, BTreeMap<UserId, BTreeMap<ClientId, Option<Prekey>>>>;

/// Limits from the seeds, shared by server and clients.
pub mod limits {
    /// MLS key packages in one upload.
    pub const MAX_KEY_PACKAGES_PER_UPLOAD: usize = 128;
    /// MLS key packages a device may have in the directory on one suite.
    pub const MAX_KEY_PACKAGES_PER_DEVICE: u64 = 512;
    /// The longest an MLS key package may stay valid, in seconds (90 days).
    pub const MAX_KEY_PACKAGE_LIFETIME: u64 = 90 * 24 * 3600;
    /// Permanent devices per user.
    pub const MAX_PERMANENT_CLIENTS: usize = 7;
    /// Persistent cookies per user (and as many session cookies).
    pub const MAX_COOKIES_PER_KIND: usize = 32;
    /// The last-resort prekey's id.
    pub const LAST_RESORT_PREKEY: u16 = u16::MAX;
    /// Most prekeys in one upload.
    pub const MAX_PREKEYS_PER_UPLOAD: usize = 200;
    /// Most devices in one `list-prekeys` request.
    pub const MAX_CLIENTS_PER_PREKEY_CLAIM: usize = 500;
    /// Events per page of `GET /v1/notifications` (at most).
    pub const MAX_NOTIFICATION_PAGE: usize = 1000;
    /// Most bytes of events in one notification page (a page holds at least one
    /// event whatever its size).
    pub const MAX_NOTIFICATION_PAGE_BYTES: usize = 1024 * 1024;
    /// Most bytes one message may write into queues in all: its ciphertexts,
    /// plus its data blob once per device (the blob is copied to every device).
    /// A full group (500 members, 8 devices each) can still get a 12 KiB blob.
    pub const MAX_MESSAGE_FANOUT_BYTES: usize = 64 * 1024 * 1024;
    /// Most users one request may add to a group.
    pub const MAX_MEMBERS_PER_ADD: usize = 64;
    /// Events are kept this many days.
    pub const NOTIFICATION_RETENTION_DAYS: i64 = 28;
    /// Members of a group, unless the server is configured otherwise.
    pub const MAX_CONVERSATION_MEMBERS: usize = 500;
    /// Conversations per page of `GET /v1/conversations` (at most).
    pub const MAX_CONVERSATION_PAGE: usize = 500;
    /// A group name's length in characters.
    pub const MAX_CONVERSATION_NAME: usize = 256;
    /// A recovery bundle's size in bytes.
    pub const MAX_RECOVERY_BUNDLE: usize = 16 * 1024;
    /// Access tokens live 15 minutes.
    pub const ACCESS_TOKEN_SECONDS: u64 = 15 * 60;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_lowercase_hex_in_json() {
        let id = ClientId(0xdead_beef_0042);
        let json = serde_json::to_string(&id).expect("serializes");
        assert_eq!(json, "\"deadbeef0042\"");
        assert_eq!(serde_json::from_str::<ClientId>(&json).expect("parses"), id);
        assert!(serde_json::from_str::<ClientId>("\"not-hex\"").is_err());
    }

    #[test]
    fn live_frames_tell_stored_from_transient_events() {
        let stored = r#"{"id":7,"time":"2026-11-23T10:00:00Z","payload":{"type":"user.client-remove","client":"ab"}}"#;
        let transient = r#"{"transient":true,"time":"2026-11-23T10:00:00Z","payload":{"type":"conversation.typing","conversation":{"id":"00000000-0000-4000-8000-000000000000","domain":"d"},"from":"00000000-0000-4000-8000-000000000001","status":"started"}}"#;
        match serde_json::from_str::<LiveFrame>(stored).expect("parses") {
            LiveFrame::Stored(e) => assert_eq!(e.id, 7),
            other => panic!("stored event read as {other:?}"),
        }
        match serde_json::from_str::<LiveFrame>(transient).expect("parses") {
            LiveFrame::Transient(t) => assert!(matches!(t.payload, EventPayload::Typing { .. })),
            other => panic!("transient event read as {other:?}"),
        }
    }

    #[test]
    fn new_client_uses_type_on_the_wire() {
        let json = r#"{"type":"permanent","class":"desktop","prekeys":[],"last_prekey":{"id":65535,"key":"AA=="}}"#;
        let c: NewClient = serde_json::from_str(json).expect("parses");
        assert_eq!(c.kind, ClientType::Permanent);
        assert!(c.password.is_none());
    }
}
