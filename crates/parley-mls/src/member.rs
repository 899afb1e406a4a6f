//! A device's side of its MLS groups: the groups it is in, the private parts
//! of the key packages it published, and every operation a member does
//! (create, commit, join from a welcome or by external commit, encrypt,
//! process what arrives).
//!
//! **State is passed in and handed back.** Everything mls-rs keeps lives in
//! [`MemberState`]: one record per group (its state with any pending commit,
//! and the secrets of the last [`PAST_EPOCHS`] epochs) and one per key
//! package. The caller (the client's encrypted database) loads it, runs an
//! operation, writes back [`MemberState::rows`] and commits *before* anything
//! the operation produced leaves the device. A commit is therefore first
//! *pending*: [`Member::commit`] keeps it in the group's state, and only
//! [`Member::confirm`] (after the server accepted it) merges it, or
//! [`Member::cancel`] (after the server refused it) drops it. A device that
//! dies in between finds the pending commit on its next start and learns
//! from the server's group info which of the two happened
//! ([`Member::settle`]).
//!
//! **The backend's removals.** A group is created naming the backend as its
//! external sender ([`crate::removal`]). A Remove proposal from it is kept
//! in the group's state (any other proposal is read and dropped: the
//! server relays no member's proposals) and goes, by reference, into this
//! device's next commit; [`Member::proposals_due`] says when a commit of
//! them alone is this device's to make.
//!
//! This module knows no storage, no HTTP and no conversation: groups are
//! named by their MLS group id, devices by [`DeviceIdentity`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mls_rs::client_builder::MlsConfig;
use mls_rs::extension::built_in::ExternalSendersExt;
use mls_rs::extension::recommended::LastResortKeyPackageExt;
use mls_rs::group::proposal::Proposal;
use mls_rs::group::{CommitEffect, ProposalSender, ReceivedMessage};
use mls_rs::identity::Credential;
use mls_rs::mls_rs_codec::{self, MlsDecode, MlsEncode, MlsSize};
use mls_rs::{
    Client, ExtensionList, Group, GroupStateStorage, KeyPackageStorage, MlsMessage, WireFormat,
};
use mls_rs_core::group::{EpochRecord, GroupState};
use mls_rs_core::key_package::KeyPackageData;
use zeroize::Zeroizing;

use crate::delivery::{CommitBundle, WelcomeBytes};
use crate::device::{DeviceError, DeviceKeys};
use crate::identity::DeviceIdentity;
use crate::removal::{ServerSender, external_removals};

/// Past epochs whose secrets a member keeps, so a message sent just before a
/// commit still decrypts (the whitepaper's setting).
pub const PAST_EPOCHS: usize = 3;

/// Why a member operation failed. Nothing in the state changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemberError {
    /// The device is in no such group.
    #[error("this device is not in the group")]
    UnknownGroup,
    /// The message is for an epoch this device's state does not have (it
    /// missed commits, or the message is too old): only a rejoin helps.
    #[error("the message is for epoch {message}, this device is at epoch {ours}")]
    WrongEpoch {
        /// The message's epoch.
        message: u64,
        /// This device's epoch.
        ours: u64,
    },
    /// The bytes are not an MLS message of the expected kind.
    #[error("not an MLS message of the expected kind")]
    Malformed,
    /// A device to remove is not in the group.
    #[error("{0} is not in the group")]
    NotAMember(DeviceIdentity),
    /// A message already read (its key is used up).
    #[error("the message was read already")]
    Duplicate,
    /// A commit of this device's is waiting for the server's answer (another
    /// process of the device may be posting it): settle it first.
    #[error("a commit of this device is still waiting for the server's answer")]
    CommitPending,
    /// A welcome or group info for another group than the one expected, or
    /// a welcome for a group this device is already in.
    #[error("the message is for another group, or one this device is already in")]
    UnexpectedGroup,
    /// A group info older than the epoch this device already knew.
    #[error("the group info is for epoch {got}, older than epoch {known}")]
    OldGroupInfo {
        /// Its epoch.
        got: u64,
        /// The epoch already known.
        known: u64,
    },
    /// mls-rs refused (a signature, a key, a lifetime, a policy).
    #[error("MLS: {0}")]
    Mls(String),
}

fn mls(e: impl std::fmt::Display) -> MemberError {
    MemberError::Mls(e.to_string())
}

impl From<DeviceError> for MemberError {
    fn from(e: DeviceError) -> Self {
        MemberError::Mls(e.to_string())
    }
}

/// One group's stored state.
#[derive(Clone, Default)]
struct SavedGroup {
    state: Zeroizing<Vec<u8>>,
    epochs: BTreeMap<u64, Zeroizing<Vec<u8>>>,
}

/// A stored group as bytes (the codec's view; zeroized once written).
#[derive(MlsSize, MlsEncode, MlsDecode)]
struct GroupRecord {
    #[mls_codec(with = "mls_rs_codec::byte_vec")]
    id: Vec<u8>,
    #[mls_codec(with = "mls_rs_codec::byte_vec")]
    state: Vec<u8>,
    epochs: Vec<EpochEntry>,
}

/// A stored key package's private parts, with its reference.
#[derive(MlsSize, MlsEncode, MlsDecode)]
struct KeyPackageRecord {
    #[mls_codec(with = "mls_rs_codec::byte_vec")]
    id: Vec<u8>,
    #[mls_codec(with = "mls_rs_codec::byte_vec")]
    data: Vec<u8>,
}

#[derive(MlsSize, MlsEncode, MlsDecode)]
struct EpochEntry {
    id: u64,
    #[mls_codec(with = "mls_rs_codec::byte_vec")]
    data: Vec<u8>,
}

impl zeroize::Zeroize for GroupRecord {
    fn zeroize(&mut self) {
        self.state.zeroize();
        for e in &mut self.epochs {
            e.data.zeroize();
        }
    }
}

#[derive(Default)]
struct Inner {
    groups: BTreeMap<Vec<u8>, SavedGroup>,
    key_packages: BTreeMap<Vec<u8>, Zeroizing<Vec<u8>>>,
}

/// Everything a device's MLS groups and key packages keep: secrets, so
/// `Debug` shows counts only. Clones share the same state.
#[derive(Clone, Default)]
pub struct MemberState(Arc<Mutex<Inner>>);

impl std::fmt::Debug for MemberState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        write!(
            f,
            "MemberState({} groups, {} key packages)",
            inner.groups.len(),
            inner.key_packages.len()
        )
    }
}

/// Which kind of record a row of [`MemberState::rows`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKind {
    /// A group, named by its group id.
    Group,
    /// A key package's private parts, named by its reference.
    KeyPackage,
}

impl MemberState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every record, to be written to the device's database.
    pub fn rows(&self) -> Vec<(RowKind, Vec<u8>, Zeroizing<Vec<u8>>)> {
        let inner = self.lock();
        let mut rows = Vec::new();
        for (id, group) in &inner.groups {
            let mut record = GroupRecord {
                id: id.clone(),
                state: group.state.to_vec(),
                epochs: group
                    .epochs
                    .iter()
                    .map(|(id, data)| EpochEntry {
                        id: *id,
                        data: data.to_vec(),
                    })
                    .collect(),
            };
            let bytes = Zeroizing::new(
                record
                    .mls_encode_to_vec()
                    .expect("encoding byte vectors cannot fail"),
            );
            zeroize::Zeroize::zeroize(&mut record);
            rows.push((RowKind::Group, id.clone(), bytes));
        }
        for (id, data) in &inner.key_packages {
            let mut record = KeyPackageRecord {
                id: id.clone(),
                data: data.to_vec(),
            };
            let bytes = Zeroizing::new(
                record
                    .mls_encode_to_vec()
                    .expect("encoding byte vectors cannot fail"),
            );
            zeroize::Zeroize::zeroize(&mut record.data);
            rows.push((RowKind::KeyPackage, id.clone(), bytes));
        }
        rows
    }

    /// Takes back a record written by [`MemberState::rows`] (its value: the
    /// record names itself).
    pub fn load_row(&self, kind: RowKind, bytes: &[u8]) -> Result<(), MemberError> {
        let mut inner = self.lock();
        match kind {
            RowKind::Group => {
                let mut record =
                    GroupRecord::mls_decode(&mut &*bytes).map_err(|_| MemberError::Malformed)?;
                let group = SavedGroup {
                    state: Zeroizing::new(std::mem::take(&mut record.state)),
                    epochs: record
                        .epochs
                        .iter_mut()
                        .map(|e| (e.id, Zeroizing::new(std::mem::take(&mut e.data))))
                        .collect(),
                };
                inner.groups.insert(record.id, group);
            }
            RowKind::KeyPackage => {
                let mut record = KeyPackageRecord::mls_decode(&mut &*bytes)
                    .map_err(|_| MemberError::Malformed)?;
                let data = Zeroizing::new(std::mem::take(&mut record.data));
                KeyPackageData::mls_decode(&mut data.as_slice())
                    .map_err(|_| MemberError::Malformed)?;
                inner.key_packages.insert(record.id, data);
            }
        }
        Ok(())
    }

    /// Forgets everything (before loading a fresh copy from the database).
    pub fn clear(&self) {
        *self.lock() = Inner::default();
    }

    /// Whether the device holds a group.
    pub fn has_group(&self, group_id: &[u8]) -> bool {
        self.lock().groups.contains_key(group_id)
    }

    fn take(&self, group_id: &[u8]) -> Option<SavedGroup> {
        self.lock().groups.remove(group_id)
    }

    /// Drops a group (the device left or was removed).
    pub fn forget(&self, group_id: &[u8]) {
        self.lock().groups.remove(group_id);
    }

    /// Key packages whose private parts are held (published, not yet used).
    pub fn key_packages_held(&self) -> usize {
        self.lock().key_packages.len()
    }

    /// Drops the private parts of key packages that expired before `now`
    /// (Unix seconds): nobody can join with them any more.
    pub fn drop_expired_key_packages(&self, now: u64) {
        self.lock().key_packages.retain(|_, bytes| {
            KeyPackageData::mls_decode(&mut bytes.as_slice()).is_ok_and(|k| k.expiration > now)
        });
    }
}

impl GroupStateStorage for MemberState {
    type Error = Infallible;

    fn state(&self, group_id: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, Infallible> {
        Ok(self.lock().groups.get(group_id).map(|g| g.state.clone()))
    }

    fn epoch(&self, group_id: &[u8], epoch: u64) -> Result<Option<Zeroizing<Vec<u8>>>, Infallible> {
        Ok(self
            .lock()
            .groups
            .get(group_id)
            .and_then(|g| g.epochs.get(&epoch).cloned()))
    }

    fn write(
        &mut self, state: GroupState, inserts: Vec<EpochRecord>, updates: Vec<EpochRecord>,
    ) -> Result<(), Infallible> {
        let mut inner = self.lock();
        let group = inner.groups.entry(state.id).or_default();
        group.state = state.data;
        for e in inserts.into_iter().chain(updates) {
            group.epochs.insert(e.id, e.data);
        }
        while group.epochs.len() > PAST_EPOCHS {
            group.epochs.pop_first();
        }
        Ok(())
    }

    fn max_epoch_id(&self, group_id: &[u8]) -> Result<Option<u64>, Infallible> {
        Ok(self
            .lock()
            .groups
            .get(group_id)
            .and_then(|g| g.epochs.keys().next_back().copied()))
    }
}

impl KeyPackageStorage for MemberState {
    type Error = Infallible;

    fn delete(&mut self, id: &[u8]) -> Result<(), Infallible> {
        self.lock().key_packages.remove(id);
        Ok(())
    }

    fn insert(&mut self, id: Vec<u8>, pkg: KeyPackageData) -> Result<(), Infallible> {
        let bytes = Zeroizing::new(
            pkg.mls_encode_to_vec()
                .expect("encoding a key package's data cannot fail"),
        );
        self.lock().key_packages.insert(id, bytes);
        Ok(())
    }

    fn get(&self, id: &[u8]) -> Result<Option<KeyPackageData>, Infallible> {
        Ok(self
            .lock()
            .key_packages
            .get(id)
            .and_then(|b| KeyPackageData::mls_decode(&mut b.as_slice()).ok()))
    }
}

/// What changes a commit makes.
#[derive(Clone, Debug, Default)]
pub struct Changes {
    /// Key packages (MLS messages) of devices to add.
    pub add: Vec<Vec<u8>>,
    /// Devices to remove.
    pub remove: Vec<DeviceIdentity>,
}

/// What arrived in a group, processed. `Debug` never shows a plaintext.
pub enum Processed {
    /// An application message, decrypted.
    Application {
        /// The device that sent it (its leaf's credential).
        sender: DeviceIdentity,
        /// The plaintext.
        plaintext: Zeroizing<Vec<u8>>,
    },
    /// A commit moved the group to `epoch`.
    Commit {
        /// The new epoch.
        epoch: u64,
        /// Devices it added (for an external commit: the device that joined
        /// by itself).
        added: Vec<DeviceIdentity>,
        /// Devices it removed.
        removed: Vec<DeviceIdentity>,
        /// It was an external commit.
        external: bool,
    },
    /// A commit removed this device: the group is forgotten.
    Removed,
    /// A proposal: the backend's removal of a device, kept for the next
    /// commit (see [`Member::proposals_due`]), or another, dropped.
    Proposal,
}

impl std::fmt::Debug for Processed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Application { sender, plaintext } => {
                write!(f, "Application({sender}, <{} bytes>)", plaintext.len())
            }
            Self::Commit { epoch, .. } => write!(f, "Commit(epoch {epoch})"),
            Self::Removed => f.write_str("Removed"),
            Self::Proposal => f.write_str("Proposal"),
        }
    }
}

/// One device as a member of its groups (see the module's documentation).
pub struct Member {
    keys: DeviceKeys,
    state: MemberState,
    lifetime: Duration,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Member({:?}, {:?})", self.keys, self.state)
    }
}

fn identity_of(credential: &Credential) -> Option<DeviceIdentity> {
    match credential {
        Credential::Basic(b) => DeviceIdentity::parse(&b.identifier),
        _ => None,
    }
}

fn message(bytes: &[u8]) -> Result<MlsMessage, MemberError> {
    MlsMessage::from_bytes(bytes).map_err(|_| MemberError::Malformed)
}

fn to_bytes(m: &MlsMessage) -> Result<Vec<u8>, MemberError> {
    m.to_bytes().map_err(mls)
}

impl Member {
    /// The member signing with `keys`, over `state`; key packages it makes
    /// live for `lifetime`.
    pub fn new(keys: DeviceKeys, state: MemberState, lifetime: Duration) -> Self {
        Self {
            keys,
            state,
            lifetime,
        }
    }

    /// The state it works on.
    pub fn state(&self) -> &MemberState {
        &self.state
    }

    /// The signature key this member signs with.
    pub fn keys(&self) -> &DeviceKeys {
        &self.keys
    }

    fn client(&self) -> Client<impl MlsConfig + use<>> {
        self.keys.member_with(self.state.clone(), self.lifetime)
    }

    fn group(&self, group_id: &[u8]) -> Result<Group<impl MlsConfig + use<>>, MemberError> {
        if !self.state.has_group(group_id) {
            return Err(MemberError::UnknownGroup);
        }
        self.client().load_group(group_id).map_err(mls)
    }

    /// `count` key packages valid from `now` (Unix seconds); their private
    /// parts are in the state, which must be stored before they are
    /// published.
    pub fn key_packages(&self, count: usize, now: u64) -> Result<Vec<Vec<u8>>, MemberError> {
        (0..count)
            .map(|_| self.key_package(ExtensionList::default(), now))
            .collect()
    }

    /// A last-resort key package (RFC 9420 §16.8): the directory hands it
    /// out again whenever this device has no other, so the device stays
    /// addable. Its private parts are in the state, as for any other.
    pub fn last_resort_key_package(&self, now: u64) -> Result<Vec<u8>, MemberError> {
        let mut extensions = ExtensionList::default();
        extensions.set_from(LastResortKeyPackageExt).map_err(mls)?;
        self.key_package(extensions, now)
    }

    fn key_package(&self, extensions: ExtensionList, now: u64) -> Result<Vec<u8>, MemberError> {
        self.client()
            .generate_key_package_message(extensions, ExtensionList::default(), Some(now.into()))
            .and_then(|m| m.to_bytes())
            .map_err(mls)
    }

    /// A new group with this device alone, at epoch 0, naming `server` as
    /// its external sender (the backend's removal key for the suite).
    pub fn create(&self, group_id: &[u8], server: &ServerSender) -> Result<(), MemberError> {
        let mut context = ExtensionList::default();
        context
            .set_from(ExternalSendersExt::new(vec![server.signing_identity()]))
            .map_err(mls)?;
        let mut group = self
            .client()
            .create_group_with_id(group_id.to_vec(), context, ExtensionList::default(), None)
            .map_err(mls)?;
        group.write_to_storage().map_err(mls)
    }

    /// The group's epoch, if this device is in it.
    pub fn epoch(&self, group_id: &[u8]) -> Option<u64> {
        self.group(group_id).ok().map(|g| g.current_epoch())
    }

    /// The devices in the group.
    pub fn members(&self, group_id: &[u8]) -> Result<Vec<DeviceIdentity>, MemberError> {
        let group = self.group(group_id)?;
        Ok(group
            .roster()
            .members_iter()
            .filter_map(|m| identity_of(&m.signing_identity.credential))
            .collect())
    }

    /// Whether the group holds the backend's removal proposals for this
    /// device to commit: some are kept, and none removes this device (a
    /// member cannot commit its own removal; another member will).
    pub fn proposals_due(&self, group_id: &[u8]) -> bool {
        let Ok(group) = self.group(group_id) else {
            return false;
        };
        let me = group.current_member_index();
        let removals = removals_in(&group);
        !removals.is_empty() && !removals.contains(&me)
    }

    /// Whether the group has a commit of this device's the server has not
    /// answered yet.
    pub fn has_pending(&self, group_id: &[u8]) -> bool {
        self.group(group_id).is_ok_and(|g| g.has_pending_commit())
    }

    /// A commit making `changes` (none: a self-update, new keys for this
    /// device's leaf), as the bundle the server takes. It stays pending in the
    /// state until [`Member::confirm`] or [`Member::cancel`].
    pub fn commit(&self, group_id: &[u8], changes: &Changes) -> Result<Vec<u8>, MemberError> {
        let mut group = self.group(group_id)?;
        if group.has_pending_commit() {
            return Err(MemberError::CommitPending);
        }
        let indexes = changes
            .remove
            .iter()
            .map(|device| {
                group
                    .roster()
                    .members_iter()
                    .find(|m| identity_of(&m.signing_identity.credential).as_ref() == Some(device))
                    .map(|m| m.index)
                    .ok_or_else(|| MemberError::NotAMember(device.clone()))
            })
            .collect::<Result<Vec<u32>, MemberError>>()?;
        // A removal the backend proposed already goes in by reference.
        let proposed = removals_in(&group);
        let mut builder = group.commit_builder();
        for kp in &changes.add {
            builder = builder.add_member(message(kp)?).map_err(mls)?;
        }
        for index in indexes.into_iter().filter(|i| !proposed.contains(i)) {
            builder = builder.remove_member(index).map_err(mls)?;
        }
        let out = builder.build().map_err(mls)?;
        let welcome = out
            .welcome_messages
            .first()
            .map(to_bytes)
            .transpose()?
            .map(WelcomeBytes);
        let bundle = CommitBundle {
            commit: to_bytes(&out.commit_message)?,
            welcome,
            group_info: to_bytes(out.external_commit_group_info.as_ref().ok_or_else(|| {
                MemberError::Mls("mls-rs made no group info for the commit".into())
            })?)?,
        };
        group.write_to_storage().map_err(mls)?;
        Ok(bundle.encode())
    }

    /// The server accepted this device's pending commit: merged. The new
    /// epoch.
    pub fn confirm(&self, group_id: &[u8]) -> Result<u64, MemberError> {
        let mut group = self.group(group_id)?;
        group.apply_pending_commit().map_err(mls)?;
        group.write_to_storage().map_err(mls)?;
        Ok(group.current_epoch())
    }

    /// The server refused this device's pending commit: dropped.
    pub fn cancel(&self, group_id: &[u8]) -> Result<(), MemberError> {
        let mut group = self.group(group_id)?;
        group.clear_pending_commit();
        group.write_to_storage().map_err(mls)
    }

    /// A pending commit found after a restart, settled against the server's
    /// latest group info: merged if the server's epoch is the one it made
    /// (the same transcript), dropped otherwise. Whether it was merged.
    pub fn settle(&self, group_id: &[u8], group_info: &[u8]) -> Result<bool, MemberError> {
        let info = message(group_info)?
            .into_group_info()
            .ok_or(MemberError::Malformed)?;
        let mut group = self.group(group_id)?;
        if !group.has_pending_commit() {
            return Ok(false);
        }
        let theirs = info.group_context();
        let mut merged = self.group(group_id)?;
        merged.apply_pending_commit().map_err(mls)?;
        let ours = merged.context();
        if theirs.epoch == ours.epoch
            && theirs.confirmed_transcript_hash == ours.confirmed_transcript_hash
        {
            merged.write_to_storage().map_err(mls)?;
            Ok(true)
        } else {
            group.clear_pending_commit();
            group.write_to_storage().map_err(mls)?;
            Ok(false)
        }
    }

    /// Joins group `group_id` from a welcome: its epoch. A welcome for
    /// another group, or for a group this device is already in, is refused
    /// before anything is written (it must not replace a group's state). The
    /// key package it used is deleted from the state.
    pub fn join(&self, group_id: &[u8], welcome: &[u8]) -> Result<u64, MemberError> {
        let welcome = message(welcome)?;
        if welcome.wire_format() != WireFormat::Welcome {
            return Err(MemberError::Malformed);
        }
        if self.state.has_group(group_id) {
            return Err(MemberError::UnexpectedGroup);
        }
        let (mut group, _) = self
            .client()
            .join_group(None, &welcome, None)
            .map_err(mls)?;
        if group.group_id() != group_id {
            return Err(MemberError::UnexpectedGroup);
        }
        group.write_to_storage().map_err(mls)?;
        Ok(group.current_epoch())
    }

    /// Joins (or rejoins, replacing this device's old leaf) a group by
    /// external commit from its latest group info: the group's state is
    /// replaced by the joined one, and the bundle to post is returned. If the
    /// server refuses it, the device is not in the group: try again from the
    /// newer group info.
    pub fn join_external(
        &self, group_id: &[u8], known_epoch: u64, group_info: &[u8],
    ) -> Result<Vec<u8>, MemberError> {
        let info = message(group_info)?;
        let context = info
            .as_group_info()
            .ok_or(MemberError::Malformed)?
            .group_context();
        if context.group_id != group_id {
            return Err(MemberError::UnexpectedGroup);
        }
        // A server replaying an old group info (one that still held a
        // removed member) is refused.
        if context.epoch < known_epoch {
            return Err(MemberError::OldGroupInfo {
                got: context.epoch,
                known: known_epoch,
            });
        }
        let group_id = group_id.to_vec();
        // Still in the tree under an old leaf (this device lost its state or
        // missed commits): rejoin in its place, removing the old leaf.
        let old = crate::delivery::leaf_index_in(&info, self.keys.identity());
        let mut builder = self.client().external_commit_builder().map_err(mls)?;
        if let Some(old) = old {
            builder = builder.with_removal(old);
        }
        // The joined group starts its own record of epochs: the old state
        // goes first, and comes back if the join cannot be made.
        let saved = self.state.take(&group_id);
        let (mut group, commit) = match builder.build(info) {
            Ok(joined) => joined,
            Err(e) => {
                if let Some(saved) = saved {
                    self.state.lock().groups.insert(group_id, saved);
                }
                return Err(mls(e));
            }
        };
        let group_info = group
            .group_info_message_allowing_ext_commit(true)
            .map_err(mls)?;
        let bundle = CommitBundle {
            commit: to_bytes(&commit)?,
            welcome: None,
            group_info: to_bytes(&group_info)?,
        };
        group.write_to_storage().map_err(mls)?;
        Ok(bundle.encode())
    }

    /// An application message for the group.
    pub fn encrypt(&self, group_id: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, MemberError> {
        let mut group = self.group(group_id)?;
        let m = group
            .encrypt_application_message(plaintext, Vec::new())
            .map_err(mls)?;
        group.write_to_storage().map_err(mls)?;
        to_bytes(&m)
    }

    /// Processes a message the group's queue delivered. On error nothing
    /// changed; [`MemberError::WrongEpoch`] means only a rejoin helps.
    pub fn process(&self, group_id: &[u8], bytes: &[u8]) -> Result<Processed, MemberError> {
        let m = message(bytes)?;
        let mut group = self.group(group_id)?;
        let ours = group.current_epoch();
        let roster = |g: &Group<_>| -> Vec<DeviceIdentity> {
            g.roster()
                .members_iter()
                .filter_map(|m| identity_of(&m.signing_identity.credential))
                .collect()
        };
        let before = roster(&group);
        let kept = removals_in(&group);
        let epoch = m.epoch().ok_or(MemberError::Malformed)?;
        let processed = group.process_incoming_message(m).map_err(|e| {
            if epoch > ours {
                MemberError::WrongEpoch {
                    message: epoch,
                    ours,
                }
            } else if matches!(e, mls_rs::error::MlsError::KeyMissing(_)) {
                // Its key was used already: the same message again (a
                // re-post after a lost reply, or a replay).
                MemberError::Duplicate
            } else {
                mls(e)
            }
        })?;
        let out = match processed {
            ReceivedMessage::ApplicationMessage(a) => {
                let sender = group
                    .member_at_index(a.sender_index)
                    .and_then(|m| identity_of(&m.signing_identity.credential))
                    .ok_or_else(|| MemberError::Mls("the sender's leaf names no device".into()))?;
                Processed::Application {
                    sender,
                    plaintext: Zeroizing::new(a.data().to_vec()),
                }
            }
            ReceivedMessage::Commit(c) => match c.effect {
                CommitEffect::Removed { .. } => {
                    self.state.forget(group_id);
                    return Ok(Processed::Removed);
                }
                _ => {
                    let after = roster(&group);
                    Processed::Commit {
                        epoch: group.current_epoch(),
                        added: after
                            .iter()
                            .filter(|d| !before.contains(d))
                            .cloned()
                            .collect(),
                        removed: before
                            .iter()
                            .filter(|d| !after.contains(d))
                            .cloned()
                            .collect(),
                        external: c.is_external,
                    }
                }
            },
            // The backend's removal is kept for the next commit; anything
            // else (the server relays no member's proposals) is not: the
            // state is left as it was.
            // One kept per leaf: a lying server's repeats do not grow the
            // state.
            ReceivedMessage::Proposal(p) => match (&p.sender, &p.proposal) {
                (ProposalSender::External(_), Proposal::Remove(r))
                    if !kept.contains(&r.to_remove()) =>
                {
                    Processed::Proposal
                }
                _ => return Ok(Processed::Proposal),
            },
            _ => return Err(MemberError::Malformed),
        };
        group.write_to_storage().map_err(mls)?;
        Ok(out)
    }

    /// The secret a call in the group uses at this epoch (the exporter,
    /// label `exporter`, empty context).
    pub fn call_key(&self, group_id: &[u8], len: usize) -> Result<Zeroizing<Vec<u8>>, MemberError> {
        let group = self.group(group_id)?;
        let secret = group.export_secret(b"exporter", &[], len).map_err(mls)?;
        Ok(Zeroizing::new(secret.as_bytes().to_vec()))
    }
}

/// The leaves the backend's kept proposals remove.
fn removals_in<C: MlsConfig>(group: &Group<C>) -> Vec<u32> {
    let cached = group.get_cached_proposals();
    external_removals(cached.iter().map(|p| (p.sender(), p.proposal())))
}

#[cfg(test)]
mod tests;
