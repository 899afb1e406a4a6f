//! A group as the Delivery Service (the server) follows it.
//!
//! The server is no member of any group: it holds mls-rs's external observer
//! of each one (its public ratchet tree and group context, never a secret), so
//! that it can check a commit before fanning it out. This module turns
//! untrusted bytes from a device into checked facts:
//! - [`CommitBundle`]: what a device posts to change a group (a commit, the
//!   welcome for the devices it adds, the new epoch's group info), decoded;
//! - [`TrackedGroup`]: the observer, started from a group's first group info,
//!   kept as a snapshot, advanced only by a commit that verifies against the
//!   current epoch, reporting which devices came, went or changed keys;
//! - [`MessageIn`]: an application message or proposal, classified (group,
//!   epoch, kind) without being readable.
//!
//! The server's own removal proposals ([`TrackedGroup::propose_remove`],
//! signed with its [`RemovalKey`]) are kept in the observer's state; a
//! member's commit must include every one of them (else
//! `mls-commit-missing-references`). An external commit cannot (RFC 9420
//! §12.4.3.2): the ones it leaves out are reported as lapsed, for the server
//! to propose again at the new epoch.
//!
//! Who may do what (admins, whole users, registered keys) is the server's
//! policy, decided from these facts; this module knows no storage and no HTTP,
//! and the time is passed in.

use std::collections::BTreeMap;

use mls_rs::external_client::builder::{
    ExternalBaseConfig, WithCryptoProvider, WithIdentityProvider,
};
use mls_rs::external_client::{
    ExternalClient, ExternalGroup, ExternalReceivedMessage, ExternalSnapshot,
};
use mls_rs::group::{CommitEffect, ContentType, Member};
use mls_rs::identity::Credential;
use mls_rs::identity::basic::BasicIdentityProvider;
use mls_rs::mls_rs_codec::{self, MlsDecode, MlsEncode, MlsSize};
use mls_rs::time::MlsTime;
use mls_rs::{MlsMessage, MlsMessageDescription, WireFormat};
use mls_rs_crypto_openssl::OpensslCryptoProvider;

use mls_rs::extension::built_in::ExternalSendersExt;

use crate::identity::DeviceIdentity;
use crate::removal::{RemovalKey, ServerSender, external_removals};
use crate::suite::CipherSuite;

/// Why a group message was refused. Each has a stable [`label`](Self::label).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryError {
    /// Not the MLS message it should be (or not an MLS message at all).
    #[error("not a valid MLS message of the expected kind")]
    Malformed,
    /// A message for another group than the conversation's.
    #[error("the message is for another group")]
    WrongGroup,
    /// Made for an epoch that is not the group's current one.
    #[error("the group is at epoch {current}; the message is for epoch {got}")]
    Stale {
        /// The group's epoch.
        current: u64,
        /// The message's.
        got: u64,
    },
    /// A commit or proposal the server cannot read (encrypted handshake).
    #[error("handshake messages must be public messages")]
    NotPublic,
    /// A member whose credential is not a Parley device.
    #[error("a member's credential is not a device of this backend")]
    UnknownIdentity,
    /// mls-rs refused it: a signature, the tree, a proposal.
    #[error("the MLS message does not verify: {0}")]
    Invalid(String),
    /// The group info does not describe the epoch the commit made.
    #[error("the group info does not match the new epoch")]
    GroupInfoMismatch,
    /// A commit that leaves out removals the server proposed.
    #[error("the commit does not include the removals the server proposed: process them first")]
    MissingReferences,
    /// A new group that does not name the server as its external sender.
    #[error("the group must name this backend's removal key as its external sender")]
    NoServerSender,
}

impl DeliveryError {
    /// The error's stable label (Wire's where Wire has one).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Malformed | Self::Invalid(_) | Self::NotPublic => "mls-protocol-error",
            Self::WrongGroup => "mls-group-conversation-mismatch",
            Self::Stale { .. } => "mls-stale-message",
            Self::UnknownIdentity => "mls-identity-mismatch",
            Self::GroupInfoMismatch => "mls-group-info-mismatch",
            Self::MissingReferences => "mls-commit-missing-references",
            Self::NoServerSender => "mls-missing-external-sender",
        }
    }
}

/// What a device posts to change a group, TLS-encoded (RFC 9420's
/// presentation language): the commit, the welcome for the devices it adds
/// (if any), and the group info of the epoch it makes, which the server keeps
/// for external joins.
#[derive(Clone, Debug, PartialEq, Eq, MlsSize, MlsEncode, MlsDecode)]
pub struct CommitBundle {
    /// The commit, an MLS public message.
    #[mls_codec(with = "mls_rs_codec::byte_vec")]
    pub commit: Vec<u8>,
    /// The welcome, an MLS message.
    pub welcome: Option<WelcomeBytes>,
    /// The new epoch's group info, an MLS message, with the ratchet tree.
    #[mls_codec(with = "mls_rs_codec::byte_vec")]
    pub group_info: Vec<u8>,
}

/// A welcome's bytes inside a [`CommitBundle`].
#[derive(Clone, Debug, PartialEq, Eq, MlsSize, MlsEncode, MlsDecode)]
pub struct WelcomeBytes(#[mls_codec(with = "mls_rs_codec::byte_vec")] pub Vec<u8>);

impl CommitBundle {
    /// Decodes a bundle; every part must be an MLS message of its kind.
    pub fn decode(bytes: &[u8]) -> Result<Self, DeliveryError> {
        let bundle = Self::mls_decode(&mut &*bytes).map_err(|_| DeliveryError::Malformed)?;
        let kind = |b: &[u8]| MlsMessage::from_bytes(b).map(|m| m.wire_format()).ok();
        if kind(&bundle.commit) != Some(WireFormat::PublicMessage) {
            return Err(
                if kind(&bundle.commit) == Some(WireFormat::PrivateMessage) {
                    DeliveryError::NotPublic
                } else {
                    DeliveryError::Malformed
                },
            );
        }
        if kind(&bundle.group_info) != Some(WireFormat::GroupInfo) {
            return Err(DeliveryError::Malformed);
        }
        if let Some(welcome) = &bundle.welcome
            && kind(&welcome.0) != Some(WireFormat::Welcome)
        {
            return Err(DeliveryError::Malformed);
        }
        Ok(bundle)
    }

    /// The bundle's bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.mls_encode_to_vec()
            .expect("encoding byte vectors cannot fail")
    }
}

/// The group a handshake or application message is for.
pub fn group_id_of(message: &[u8]) -> Result<Vec<u8>, DeliveryError> {
    MlsMessage::from_bytes(message)
        .ok()
        .and_then(|m| m.group_id().map(<[u8]>::to_vec))
        .ok_or(DeliveryError::Malformed)
}

/// The epoch a handshake or application message was made in.
pub fn epoch_of(message: &[u8]) -> Result<u64, DeliveryError> {
    MlsMessage::from_bytes(message)
        .ok()
        .and_then(|m| m.epoch())
        .ok_or(DeliveryError::Malformed)
}

/// A member of a group: a device and the signature key its leaf holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Leaf {
    /// The device its credential names.
    pub device: DeviceIdentity,
    /// The leaf's signature key.
    pub signature_key: Vec<u8>,
}

/// What a verified commit changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedCommit {
    /// The epoch the commit made.
    pub epoch: u64,
    /// Who made it (for an external commit, the device that joined).
    pub committer: Leaf,
    /// Whether it was an external commit (a device joining by itself).
    pub external: bool,
    /// Devices added.
    pub added: Vec<Leaf>,
    /// Devices removed.
    pub removed: Vec<Leaf>,
    /// Devices whose leaf now holds another signature key.
    pub rekeyed: Vec<Leaf>,
    /// Of the removed devices, those the server had proposed to remove.
    pub server_removed: Vec<Leaf>,
    /// Devices the server had proposed to remove that an external commit
    /// left in the group: to be proposed again.
    pub lapsed: Vec<DeviceIdentity>,
}

type ObserverConfig = WithIdentityProvider<
    BasicIdentityProvider,
    WithCryptoProvider<OpensslCryptoProvider, ExternalBaseConfig>,
>;

fn observer() -> ExternalClient<ObserverConfig> {
    ExternalClient::builder()
        .crypto_provider(OpensslCryptoProvider::new())
        .identity_provider(BasicIdentityProvider)
        .build()
}

/// The leaf `device` holds in the tree a group info carries, if any (a
/// device rejoining by external commit replaces it). The time for lifetime
/// checks is the system's, as for any member.
pub(crate) fn leaf_index_in(group_info: &MlsMessage, device: &DeviceIdentity) -> Option<u32> {
    let group = observer()
        .observe_group(group_info.clone(), None, None)
        .ok()?;
    group
        .roster()
        .members_iter()
        .find(|m| leaf(m).is_ok_and(|l| &l.device == device))
        .map(|m| m.index)
}

/// The server's view of one group (see the module's documentation).
pub struct TrackedGroup {
    group: ExternalGroup<ObserverConfig>,
}

impl std::fmt::Debug for TrackedGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrackedGroup(epoch {})", self.epoch())
    }
}

impl TrackedGroup {
    /// Starts following a group from a group info that carries its ratchet
    /// tree (its first, as the creator posts it). The group info's signature
    /// and the whole tree are verified; it must be for `group_id` on `suite`.
    pub fn start(
        group_info: &[u8], group_id: &[u8], suite: CipherSuite, now: u64,
    ) -> Result<Self, DeliveryError> {
        let message = MlsMessage::from_bytes(group_info).map_err(|_| DeliveryError::Malformed)?;
        if message.wire_format() != WireFormat::GroupInfo {
            return Err(DeliveryError::Malformed);
        }
        if message.group_id() != Some(group_id) {
            return Err(DeliveryError::WrongGroup);
        }
        if message.cipher_suite().map(u16::from) != Some(suite.0) {
            return Err(DeliveryError::Invalid("another cipher suite".into()));
        }
        let group = observer()
            .observe_group(message, None, Some(MlsTime::from(now)))
            .map_err(|e| DeliveryError::Invalid(e.to_string()))?;
        let tracked = Self { group };
        tracked.members()?;
        Ok(tracked)
    }

    /// The group as [`snapshot`](Self::snapshot) left it.
    pub fn load(snapshot: &[u8]) -> Result<Self, DeliveryError> {
        let snapshot =
            ExternalSnapshot::from_bytes(snapshot).map_err(|_| DeliveryError::Malformed)?;
        let group = observer()
            .load_group(snapshot)
            .map_err(|e| DeliveryError::Invalid(e.to_string()))?;
        Ok(Self { group })
    }

    /// The state to keep, ratchet tree included.
    pub fn snapshot(&self) -> Vec<u8> {
        self.group
            .snapshot()
            .to_bytes()
            .expect("a group state the observer built encodes")
    }

    /// The group's current epoch.
    pub fn epoch(&self) -> u64 {
        self.group.group_context().epoch
    }

    /// The external senders the group names (none for a group made before
    /// the server's removals).
    pub fn external_senders(&self) -> Vec<ServerSender> {
        let Ok(Some(ext)) = self
            .group
            .group_context()
            .extensions
            .get_as::<ExternalSendersExt>()
        else {
            return Vec::new();
        };
        ext.allowed_senders
            .iter()
            .filter_map(|s| match &s.credential {
                Credential::Basic(b) => Some(ServerSender {
                    domain: String::from_utf8(b.identifier().to_vec()).ok()?,
                    key: s.signature_key.as_bytes().to_vec(),
                }),
                _ => None,
            })
            .collect()
    }

    /// The leaves the server's kept proposals remove.
    fn pending_removals(&self) -> Vec<u32> {
        let cached = self.group.get_cached_proposals();
        external_removals(cached.iter().map(|p| (p.sender(), p.proposal())))
    }

    /// The devices the server proposed to remove at this epoch.
    pub fn pending(&self) -> Result<Vec<DeviceIdentity>, DeliveryError> {
        let leaves = self.leaves()?;
        Ok(self
            .pending_removals()
            .iter()
            .filter_map(|i| leaves.get(i).map(|l| l.device.clone()))
            .collect())
    }

    /// The server's proposal to remove `device`, signed with `key` as
    /// `sender` (which the group must name), kept in this state. `None`
    /// when the device is not in the group or its removal is proposed
    /// already.
    pub fn propose_remove(
        &mut self, device: &DeviceIdentity, key: &RemovalKey, sender: &ServerSender,
    ) -> Result<Option<Vec<u8>>, DeliveryError> {
        let Some(index) = self
            .group
            .roster()
            .members_iter()
            .find(|m| leaf(m).is_ok_and(|l| l.device == *device))
            .map(|m| m.index)
        else {
            return Ok(None);
        };
        if self.pending_removals().contains(&index) {
            return Ok(None);
        }
        let invalid = |e: mls_rs::error::MlsError| DeliveryError::Invalid(e.to_string());
        let proposer = ExternalClient::builder()
            .crypto_provider(OpensslCryptoProvider::new())
            .identity_provider(BasicIdentityProvider)
            .signer(key.secret().clone(), sender.signing_identity())
            .build();
        let mut group = proposer
            .load_group(self.group.snapshot())
            .map_err(invalid)?;
        let proposal = group.propose_remove(index, Vec::new()).map_err(|e| {
            if matches!(
                e,
                mls_rs::error::MlsError::ExternalProposalsDisabled
                    | mls_rs::error::MlsError::InvalidExternalSigningIdentity
            ) {
                DeliveryError::NoServerSender
            } else {
                invalid(e)
            }
        })?;
        self.group = observer().load_group(group.snapshot()).map_err(invalid)?;
        Ok(Some(proposal.to_bytes().map_err(invalid)?))
    }

    /// The group's members, in leaf order. `UnknownIdentity` if a credential
    /// is not a device's client-ID.
    pub fn members(&self) -> Result<Vec<Leaf>, DeliveryError> {
        self.group
            .roster()
            .members_iter()
            .map(|m| leaf(&m))
            .collect()
    }

    /// Verifies `commit` against the current epoch and advances to the epoch
    /// it makes, returning what it changed; on any error the group is as it
    /// was. `now` bounds the lifetimes of key packages it adds.
    pub fn apply_commit(
        &mut self, commit: &[u8], now: u64,
    ) -> Result<AppliedCommit, DeliveryError> {
        let message = MlsMessage::from_bytes(commit).map_err(|_| DeliveryError::Malformed)?;
        match message.description() {
            MlsMessageDescription::PublicProtocolMessage {
                group_id,
                epoch_id,
                content_type: ContentType::Commit,
                ..
            } => {
                if group_id != self.group.group_context().group_id() {
                    return Err(DeliveryError::WrongGroup);
                }
                if epoch_id != self.epoch() {
                    return Err(DeliveryError::Stale {
                        current: self.epoch(),
                        got: epoch_id,
                    });
                }
            }
            MlsMessageDescription::PrivateProtocolMessage { .. } => {
                return Err(DeliveryError::NotPublic);
            }
            _ => return Err(DeliveryError::Malformed),
        }
        let before = self.leaves()?;
        let pending = self.pending_removals();
        // Work on a copy: a commit that verifies but whose tree names a
        // stranger leaves the group untouched.
        let mut next = self.group.clone();
        let received = next
            .process_incoming_message_with_time(message, MlsTime::from(now))
            .map_err(|e| DeliveryError::Invalid(e.to_string()))?;
        let ExternalReceivedMessage::Commit(description) = received else {
            return Err(DeliveryError::Malformed);
        };
        let after = Self { group: next };
        let now_leaves = after.leaves()?;
        let committer = now_leaves
            .get(&description.committer)
            .cloned()
            .ok_or(DeliveryError::Malformed)?;
        let mut applied = AppliedCommit {
            epoch: after.epoch(),
            committer,
            external: description.is_external,
            added: Vec::new(),
            removed: Vec::new(),
            rekeyed: Vec::new(),
            server_removed: Vec::new(),
            lapsed: Vec::new(),
        };
        // The server's removals this commit applied, by the proposals
        // themselves (a leaf index may be reused by a device added in the
        // same commit).
        let taken: Vec<u32> = match &description.effect {
            CommitEffect::NewEpoch(epoch)
            | CommitEffect::Removed {
                new_epoch: epoch, ..
            } => external_removals(
                epoch
                    .applied_proposals
                    .iter()
                    .map(|p| (&p.sender, &p.proposal)),
            ),
            CommitEffect::ReInit(_) => Vec::new(),
        };
        for (index, was) in &before {
            match now_leaves.get(index) {
                Some(now) if now.device == was.device => {
                    if now.signature_key != was.signature_key {
                        applied.rekeyed.push(now.clone());
                    }
                }
                _ => applied.removed.push(was.clone()),
            }
            if taken.contains(index) {
                applied.server_removed.push(was.clone());
            } else if pending.contains(index) {
                applied.lapsed.push(was.device.clone());
            }
        }
        if !applied.lapsed.is_empty() && !applied.external {
            return Err(DeliveryError::MissingReferences);
        }
        for (index, now) in &now_leaves {
            if before.get(index).is_none_or(|was| was.device != now.device) {
                applied.added.push(now.clone());
            }
        }
        *self = after;
        Ok(applied)
    }

    /// Checks that `group_info` describes this group's current epoch
    /// exactly (so a device joining from it joins the group the server
    /// follows): its signature, its tree, and the same group context.
    pub fn check_group_info(&self, group_info: &[u8], now: u64) -> Result<(), DeliveryError> {
        let message = MlsMessage::from_bytes(group_info).map_err(|_| DeliveryError::Malformed)?;
        if message.wire_format() != WireFormat::GroupInfo {
            return Err(DeliveryError::Malformed);
        }
        let observed = observer()
            .observe_group(message, None, Some(MlsTime::from(now)))
            .map_err(|_| DeliveryError::GroupInfoMismatch)?;
        if observed.group_context() != self.group.group_context()
            || observed.tree_hash() != self.group.tree_hash()
        {
            return Err(DeliveryError::GroupInfoMismatch);
        }
        Ok(())
    }

    fn leaves(&self) -> Result<BTreeMap<u32, Leaf>, DeliveryError> {
        self.group
            .roster()
            .members_iter()
            .map(|m| Ok((m.index, leaf(&m)?)))
            .collect()
    }
}

fn leaf(member: &Member) -> Result<Leaf, DeliveryError> {
    let Credential::Basic(basic) = &member.signing_identity.credential else {
        return Err(DeliveryError::UnknownIdentity);
    };
    let device = DeviceIdentity::parse(basic.identifier()).ok_or(DeliveryError::UnknownIdentity)?;
    Ok(Leaf {
        device,
        signature_key: member.signing_identity.signature_key.as_bytes().to_vec(),
    })
}

/// What kind of group message a [`MessageIn`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// An application message (always a private message).
    Application,
    /// A proposal, public.
    Proposal,
}

/// An application message or a proposal from a device, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassifiedMessage {
    /// Its group.
    pub group_id: Vec<u8>,
    /// The epoch it was made in.
    pub epoch: u64,
    /// Application message or proposal.
    pub kind: MessageKind,
}

/// Bytes a device posts as a group message (not a commit: commits come in a
/// [`CommitBundle`]).
#[derive(Clone, Debug)]
pub struct MessageIn<'a>(pub &'a [u8]);

impl MessageIn<'_> {
    /// What the message is, as far as the server can tell: application
    /// messages must be private (encrypted), proposals public (the server
    /// checks them when the commit that applies them comes).
    pub fn classify(&self) -> Result<ClassifiedMessage, DeliveryError> {
        let message = MlsMessage::from_bytes(self.0).map_err(|_| DeliveryError::Malformed)?;
        let (group_id, epoch, kind) = match message.description() {
            MlsMessageDescription::PrivateProtocolMessage {
                group_id,
                epoch_id,
                content_type: ContentType::Application,
            } => (group_id.to_vec(), epoch_id, MessageKind::Application),
            MlsMessageDescription::PublicProtocolMessage {
                group_id,
                epoch_id,
                content_type: ContentType::Proposal,
                ..
            } => (group_id.to_vec(), epoch_id, MessageKind::Proposal),
            MlsMessageDescription::PrivateProtocolMessage { .. } => {
                return Err(DeliveryError::NotPublic);
            }
            _ => return Err(DeliveryError::Malformed),
        };
        Ok(ClassifiedMessage {
            group_id,
            epoch,
            kind,
        })
    }
}

#[cfg(test)]
mod tests;
