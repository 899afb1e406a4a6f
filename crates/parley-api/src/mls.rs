//! MLS's Delivery and Authentication Service: a device's signature keys and
//! the key package directory (under `/v1/mls/…`, in Wire's shapes). Binary
//! values travel as standard base64; cipher suites as `0x0002`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use time::OffsetDateTime;

use crate::{ClientId, ConversationId, Qualified, UserId};

/// `PUT /v1/clients/{id}/mls-public-keys`: a device's MLS signature keys by
/// scheme name (`ed25519`, `ecdsa_secp256r1_sha256`, `ecdsa_secp384r1_sha384`,
/// `ecdsa_secp521r1_sha512`), base64. Each is set once.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MlsPublicKeys {
    /// Keys by scheme name.
    pub mls_public_keys: BTreeMap<String, String>,
}

/// `GET /v1/mls/config`: the backend's MLS settings (`[mls]`): the cipher
/// suite new groups use and devices publish key packages on, and the suites
/// it allows.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MlsSettings {
    /// The default suite's number (`0x0002`, P-256, unless configured).
    pub default_cipher_suite: u16,
    /// The suites allowed, by number.
    pub allowed_cipher_suites: Vec<u16>,
    /// From when a mixed conversation may become MLS although some of its
    /// members' devices are not in its group yet (they join later by
    /// external commit); none: only once every device is in.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub migration_finalise_after: Option<time::OffsetDateTime>,
}

/// `GET /v1/mls/public-keys`: the backend's removal keys (the external
/// sender every MLS group names, RFC 9420 §12.1.8.1) by signature scheme
/// name, base64.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MlsRemovalKeys {
    /// Keys by scheme name.
    pub removal: BTreeMap<String, String>,
}

/// `POST /v1/mls/key-packages/self/{client}`: key packages to publish, each a
/// base64 MLS message.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyPackageUpload {
    /// The key packages.
    pub key_packages: Vec<String>,
}

/// `DELETE /v1/mls/key-packages/self/{client}`: key packages to withdraw, by
/// reference (base64).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyPackageRefs {
    /// References.
    pub key_packages: Vec<String>,
}

/// `GET /v1/mls/key-packages/self/{client}/count`
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyPackageCount {
    /// Key packages still valid on the suite.
    pub count: u64,
}

/// The query naming a cipher suite (`?ciphersuite=0x0002`; the backend's
/// default when absent).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct SuiteQuery {
    /// The cipher suite, as `0x0002` or `2`.
    pub ciphersuite: Option<String>,
}

/// `POST /v1/mls/key-packages/claim/{domain}/{user}`: its query.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct ClaimQuery {
    /// The cipher suite, as `0x0002` or `2`.
    pub ciphersuite: Option<String>,
    /// The caller's own device, left out when claiming for one's own user.
    pub skip_own: Option<ClientId>,
}

/// One claimed key package.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClaimedKeyPackage {
    /// Whose device.
    pub user: UserId,
    /// The user's backend.
    pub domain: String,
    /// Which device.
    pub client: ClientId,
    /// The MLS message, base64.
    pub key_package: String,
    /// Its reference, base64.
    pub key_package_ref: String,
    /// The device's last-resort key package, handed out because it had no
    /// other: others may have been given it too (RFC 9420 §16.8).
    #[serde(default)]
    pub last_resort: bool,
}

/// The answer to a claim: one key package per device that had one.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyPackageBundle {
    /// The key packages.
    pub key_packages: Vec<ClaimedKeyPackage>,
}

/// `POST /v1/mls/commit-bundles` and `POST /v1/mls/messages`: the sending
/// device (a device-bound token's own when absent).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct SenderQuery {
    /// The sending device.
    pub client: Option<ClientId>,
}

/// What a commit bundle or group message did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MlsSent {
    /// The group's epoch now.
    pub epoch: u64,
}

/// The subconversations a conversation may have: `conference`, the group
/// of a call's participants (its epochs give the call's keys).
pub const SUBCONVERSATIONS: &[&str] = &["conference"];

/// `GET /v1/conversations/{domain}/{id}/subconversations/{name}`: a
/// subconversation, with an MLS group of its own beside its conversation's
/// (opened, at epoch 0, on first asking). Its group id changes with every
/// reset.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Subconversation {
    /// The conversation it belongs to.
    pub parent: Qualified<ConversationId>,
    /// Its name (`conference`).
    pub subconversation: String,
    /// Its group id, base64.
    pub group_id: String,
    /// Its group's epoch: 0 until a device creates the group; a device
    /// joins a group past epoch 0 by external commit.
    pub epoch: u64,
    /// When that epoch began.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub epoch_timestamp: OffsetDateTime,
    /// Its cipher suite (its conversation's).
    pub cipher_suite: u16,
    /// The devices in its group.
    pub members: Vec<GroupMember>,
}

/// A device in an MLS group.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupMember {
    /// Its user.
    pub user: UserId,
    /// The device.
    pub client: ClientId,
    /// Its backend.
    pub domain: String,
}

/// `DELETE /v1/conversations/{domain}/{id}/subconversations/{name}`: resets
/// the subconversation if its group is still this one at this epoch (else
/// 409 `mls-stale-message`): a new group id, epoch 0, nobody in it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubconversationReset {
    /// The group id it has, base64.
    pub group_id: String,
    /// The epoch it is at.
    pub epoch: u64,
}

/// The media type of MLS bodies: commit bundles, group messages, group info.
pub const MLS_MEDIA_TYPE: &str = "message/mls";
