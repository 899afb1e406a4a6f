//! MLS groups as the Delivery Service keeps them: each MLS conversation's
//! group (its id, suite, epoch, the server's observer state and the latest
//! group info), and the group messages, each stored **once** and referred to
//! by every recipient device's queue. Owned by the MLS service.
//!
//! Knows no MLS: the observer state and group info are opaque bytes the MLS
//! service has checked (`parley_mls::delivery`); a message's data is the
//! base64 text every device receives.

use async_trait::async_trait;
use parley_api::{ClientId, ConversationId, UserId};

use crate::{ConversationRecord, Delivered, MemberRecord, Notify, StoreResult};

/// Which group of a conversation: its own, or one of its subconversations'
/// (a call's `conference`), each with its own group, epoch and members.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    /// The conversation.
    pub conversation: ConversationId,
    /// `None`: the conversation's own group; a name: a subconversation's.
    pub subconversation: Option<String>,
}

impl GroupKey {
    /// A conversation's own group.
    pub fn of(conversation: ConversationId) -> Self {
        Self {
            conversation,
            subconversation: None,
        }
    }

    /// A subconversation's group.
    pub fn sub(conversation: ConversationId, name: &str) -> Self {
        Self {
            conversation,
            subconversation: Some(name.to_owned()),
        }
    }

    /// The subconversation's name as the SQL backends keep it (`""` for the
    /// conversation's own group).
    pub fn sub_name(&self) -> &str {
        self.subconversation.as_deref().unwrap_or("")
    }
}

/// An MLS group, as far as a conversation shows it (its
/// state is read apart: [`GroupStore::mls_group_state`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MlsGroupRecord {
    /// Its conversation.
    pub conversation: ConversationId,
    /// `None` for the conversation's own group, else its subconversation.
    pub subconversation: Option<String>,
    /// How many times the subconversation was reset (its group id names
    /// it); 0 for a conversation's own group.
    pub generation: u32,
    /// The MLS group id (unique).
    pub group_id: Vec<u8>,
    /// Its cipher suite.
    pub suite: u16,
    /// Its epoch (0 until its creator's first commit).
    pub epoch: u64,
    /// When that epoch began, Unix seconds.
    pub epoch_at: i64,
    /// A group conversation migrating from Proteus: its messages still go
    /// by Proteus, its members change as a Proteus conversation's do, and
    /// the group follows.
    pub mixed: bool,
}

impl MlsGroupRecord {
    /// Which group this is.
    pub fn key(&self) -> GroupKey {
        GroupKey {
            conversation: self.conversation,
            subconversation: self.subconversation.clone(),
        }
    }
}

/// What the server keeps of a group once its creator committed: its
/// observer's state and the latest group info (each as large as the ratchet
/// tree).
#[derive(Clone, PartialEq, Eq)]
pub struct GroupState {
    /// The epoch they are of.
    pub epoch: u64,
    /// How many times the state was written (commits and the server's
    /// proposals): a write made from this state applies only while it is
    /// still this one.
    pub revision: u64,
    /// The server's observer state.
    pub state: Vec<u8>,
    /// The latest group info, for external joins.
    pub group_info: Vec<u8>,
}

impl std::fmt::Debug for GroupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupState")
            .field("epoch", &self.epoch)
            .field("revision", &self.revision)
            .field("state_bytes", &self.state.len())
            .field("group_info_bytes", &self.group_info.len())
            .finish()
    }
}

/// A group message to store once and queue for many devices: `payload` is
/// the event as JSON without its data (what each queue holds), `data` the
/// message as base64 (stored once). A device reading its queue gets the
/// payload with `"data"` added.
#[derive(Clone, Copy, Debug)]
pub struct SharedMessage<'a> {
    /// The event without its data, a JSON object.
    pub payload: &'a str,
    /// The message, base64.
    pub data: &'a str,
}

/// A commit the MLS service has verified, to apply atomically.
#[derive(Clone, Debug)]
pub struct GroupCommit<'a> {
    /// The group.
    pub group: GroupKey,
    /// Its group id: nothing changes unless the group still has it (a
    /// subconversation reset meanwhile has another).
    pub group_id: &'a [u8],
    /// The epoch the commit was made in: nothing changes unless the group is
    /// still there.
    pub from_epoch: u64,
    /// The state's revision it was checked against (0 before the first
    /// commit): nothing changes unless it is still that one (a proposal of
    /// the server's may have come in between).
    pub from_revision: u64,
    /// The epoch it makes.
    pub epoch: u64,
    /// Unix seconds.
    pub at: i64,
    /// The observer state at the new epoch.
    pub state: &'a [u8],
    /// The new epoch's group info.
    pub group_info: &'a [u8],
    /// Users who become members of the conversation.
    pub join: &'a [MemberRecord],
    /// Users who stop being members.
    pub leave: &'a [UserId],
    /// The committing device: a device of the group, or one the commit adds
    /// (the creator's first commit, an external join). It gets no copy.
    pub sender: (UserId, ClientId),
    /// A user who must be an admin of the conversation for the commit to
    /// apply (one that changes other users' devices), checked in its
    /// transaction.
    pub admin: Option<UserId>,
    /// Devices the commit adds to the group.
    pub added: &'a [(UserId, ClientId)],
    /// Devices it removes.
    pub removed: &'a [(UserId, ClientId)],
    /// The commit, for every device of the group before it.
    pub commit: SharedMessage<'a>,
    /// The welcome, for the added devices.
    pub welcome: Option<SharedMessage<'a>>,
}

/// The server's own proposals to a group (removals), to store at once.
#[derive(Clone, Debug)]
pub struct GroupProposals<'a> {
    /// The group.
    pub group: GroupKey,
    /// Its group id: nothing changes unless the group still has it.
    pub group_id: &'a [u8],
    /// The epoch they were made in: nothing changes unless the group is
    /// still at it.
    pub epoch: u64,
    /// The state's revision they were made from: nothing changes unless it
    /// is still that one.
    pub revision: u64,
    /// Unix seconds.
    pub at: i64,
    /// The observer state that keeps them.
    pub state: &'a [u8],
    /// The proposals, each for every device of the group.
    pub proposals: &'a [SharedMessage<'a>],
}

/// What a write to a group did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupWrite {
    /// Stored and queued: the events, with their data, for live delivery.
    Done(Vec<Delivered>),
    /// The group is at another epoch (this one).
    Stale(u64),
    /// The sending device is not in the group.
    NotMember,
    /// The user who had to be an admin is not (any more).
    NotAdmin,
    /// The group is mixed (migrating from Proteus): it takes no
    /// application messages.
    Mixed,
}

/// What a device's leaving a subconversation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubconversationLeave {
    /// The device was not in its delivery: nothing changed.
    NotIn,
    /// The device is out of its delivery; others remain (the server now
    /// proposes its removal from the group).
    Left,
    /// It was the last one: the subconversation was reset.
    Ended,
}

/// MLS groups and their messages. Owned by the MLS service.
#[async_trait]
pub trait GroupStore: Send + Sync + std::fmt::Debug + 'static {
    /// Creates an MLS conversation with its creator as the only member and
    /// its group at epoch 0, and queues `notify` for the creator's devices,
    /// all at once.
    async fn create_mls_conversation(
        &self, conversation: &ConversationRecord, creator: MemberRecord, group: &MlsGroupRecord,
        notify: Notify<'_>,
    ) -> StoreResult<()>;
    /// Starts a group conversation's migration from Proteus: its group
    /// (`mixed`, at epoch 0) is made beside it, and `notify` queued for
    /// every member's devices, all at once. `Ok(false)`, changing nothing,
    /// when it has a group already; `NotFound` when the conversation is gone.
    async fn start_migration(
        &self, group: &MlsGroupRecord, notify: Notify<'_>,
    ) -> StoreResult<bool>;
    /// Ends a mixed conversation's migration (MLS from now on), with
    /// `notify` queued for every member's devices, all at once; the group's
    /// revision moves (a commit checked under the mixed rules is stale).
    /// `Ok(false)`, changing nothing, when it is not mixed.
    async fn finish_migration(
        &self, conversation: ConversationId, notify: Notify<'_>,
    ) -> StoreResult<bool>;
    /// A group: a conversation's own, if it is an MLS or mixed
    /// conversation, or a subconversation's, once opened.
    async fn mls_group(&self, group: &GroupKey) -> StoreResult<Option<MlsGroupRecord>>;
    /// A group's state, once its creator committed.
    async fn mls_group_state(&self, group: &GroupKey) -> StoreResult<Option<GroupState>>;
    /// The devices in a group, in (user, device) order.
    async fn group_devices(&self, group: &GroupKey) -> StoreResult<Vec<(UserId, ClientId)>>;
    /// A conversation's subconversations, by name.
    async fn subconversations(
        &self, conversation: ConversationId,
    ) -> StoreResult<Vec<MlsGroupRecord>>;
    /// Opens a subconversation (`group`, at epoch 0 and generation 0) unless
    /// it is open already; the subconversation as it is. `NotFound` when the
    /// conversation is gone.
    async fn open_subconversation(&self, group: &MlsGroupRecord) -> StoreResult<MlsGroupRecord>;
    /// Resets a subconversation whose group is still `group_id` at `epoch`:
    /// its next generation starts empty at epoch 0 (state revision 0, as a
    /// new group) under `next_group_id`, and the old group's devices get
    /// nothing more of it but `notify`, queued for each of them. `None`,
    /// changing nothing, when it is at another group or epoch; else the
    /// events queued.
    async fn reset_subconversation(
        &self, group: &GroupKey, (group_id, epoch): (&[u8], u64), next_group_id: &[u8],
        notify: Notify<'_>,
    ) -> StoreResult<Option<Vec<Delivered>>>;
    /// A device leaves a subconversation, decided under the conversation's
    /// lock: out of its delivery, or, the last one there, the
    /// subconversation reset to `next_group_id` at `at` (see
    /// [`SubconversationLeave`]).
    async fn leave_subconversation(
        &self, group: &GroupKey, device: (UserId, ClientId), next_group_id: &[u8], at: i64,
    ) -> StoreResult<SubconversationLeave>;
    /// Applies a verified commit, all or nothing: the group's new state,
    /// group info and devices, the users who join and leave the
    /// conversation, the commit queued for the group's devices before it
    /// (but the sender, and a device it removes and adds again), the welcome
    /// for the added devices (a subconversation's commit: its sender must
    /// be of a member of the conversation, else `NotMember`). `Stale` if the
    /// group is no longer at `from_epoch` and `from_revision` (of two
    /// concurrent commits exactly one applies), or it is mixed and a device
    /// it adds is of a user who is not (any more) a member of the
    /// conversation; `NotMember` if the sender is neither in the group nor
    /// added by the commit; `NotAdmin` if `admin` is not an admin;
    /// `NotFound` for a conversation without a group, or a group with
    /// another id.
    async fn commit_group(&self, commit: &GroupCommit<'_>) -> StoreResult<GroupWrite>;
    /// Stores a group message once and queues it for every device of the
    /// group but `sender`, if the sender is in the group (`NotMember`
    /// otherwise, before anything else is said), the group is not mixed
    /// (`Mixed`) and its epoch is `epoch` or at most `past_epochs` after it
    /// (`Stale` otherwise). `NotFound` for a conversation without a group,
    /// or a group with another id than `group_id`.
    async fn post_group_message(
        &self, (group, group_id): (&GroupKey, &[u8]), epoch: u64, past_epochs: u64,
        sender: (UserId, ClientId), message: SharedMessage<'_>, at: i64,
    ) -> StoreResult<GroupWrite>;
    /// Applies the server's proposals, all or nothing: the observer state
    /// that keeps them, and each proposal stored once and queued for the
    /// group's devices. (A user who leaves is out of the group's delivery
    /// with the membership change itself.)
    /// `Stale` if the group is no longer at `epoch` and `revision` (a commit
    /// or other proposals came first);
    /// `NotFound` for a conversation without a group state, or a group with
    /// another id.
    async fn propose_group(&self, p: &GroupProposals<'_>) -> StoreResult<GroupWrite>;
}

/// A stored event with its shared message's data added: the payload is a
/// JSON object the server wrote (it ends in `}`), the data base64 (nothing
/// to escape).
pub fn with_data(payload: &str, data: &str) -> String {
    let open = payload.trim_end().strip_suffix('}').unwrap_or(payload);
    let separator = if open.trim_end().ends_with('{') {
        ""
    } else {
        ","
    };
    format!("{open}{separator}\"data\":\"{data}\"}}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn data_is_added_as_the_last_field() {
        let full = super::with_data(r#"{"type":"x","n":1}"#, "AAE=");
        let value: serde_json::Value = serde_json::from_str(&full).expect("json");
        assert_eq!(value["data"], "AAE=");
        assert_eq!(value["n"], 1);
        assert_eq!(super::with_data("{}", "AA=="), r#"{"data":"AA=="}"#);
    }
}
