//! MLS groups as stored: each MLS conversation's group head (id, suite, epoch,
//! and its subconversations' beside it;
//! the observer's state, the latest group info), its devices, and its
//! messages, each stored once. Owns the [`GroupStore`]; decides nothing: the
//! MLS service checks every commit and message before it comes here, and the
//! conversations service reads a group's head to show it.

use std::sync::Arc;

use parley_api::{ClientId, ConversationId, UserId};
use parley_store::{
    ConversationRecord, GroupCommit, GroupKey, GroupProposals, GroupState, GroupStore, GroupWrite,
    MemberRecord, MlsGroupRecord, Notify, SharedMessage, StoreResult, SubconversationLeave,
};

/// The groups of MLS conversations.
#[derive(Clone, Debug)]
pub struct Groups {
    store: Arc<dyn GroupStore>,
}

impl Groups {
    /// The service.
    pub fn new(store: Arc<dyn GroupStore>) -> Self {
        Self { store }
    }

    /// A conversation's group, if it is an MLS conversation, or a
    /// subconversation's, once opened.
    pub async fn group(&self, group: &GroupKey) -> StoreResult<Option<MlsGroupRecord>> {
        self.store.mls_group(group).await
    }

    /// A group's state and latest group info, once its creator committed.
    pub async fn state(&self, group: &GroupKey) -> StoreResult<Option<GroupState>> {
        self.store.mls_group_state(group).await
    }

    /// The devices in a group.
    pub async fn devices(&self, group: &GroupKey) -> StoreResult<Vec<(UserId, ClientId)>> {
        self.store.group_devices(group).await
    }

    /// A conversation's subconversations.
    pub async fn subconversations(
        &self, conversation: ConversationId,
    ) -> StoreResult<Vec<MlsGroupRecord>> {
        self.store.subconversations(conversation).await
    }

    /// Opens a subconversation (see [`GroupStore::open_subconversation`]).
    pub async fn open_subconversation(
        &self, group: &MlsGroupRecord,
    ) -> StoreResult<MlsGroupRecord> {
        self.store.open_subconversation(group).await
    }

    /// Resets a subconversation (see [`GroupStore::reset_subconversation`]).
    pub async fn reset_subconversation(
        &self, group: &GroupKey, at_epoch: (&[u8], u64), next_group_id: &[u8], notify: Notify<'_>,
    ) -> StoreResult<Option<Vec<parley_store::Delivered>>> {
        self.store
            .reset_subconversation(group, at_epoch, next_group_id, notify)
            .await
    }

    /// A device leaves a subconversation (see
    /// [`GroupStore::leave_subconversation`]).
    pub async fn leave_subconversation(
        &self, group: &GroupKey, device: (UserId, ClientId), next_group_id: &[u8], at: i64,
    ) -> StoreResult<SubconversationLeave> {
        self.store
            .leave_subconversation(group, device, next_group_id, at)
            .await
    }

    /// Creates an MLS conversation with its creator alone, at epoch 0.
    pub async fn create(
        &self, conversation: &ConversationRecord, creator: MemberRecord, group: &MlsGroupRecord,
        notify: Notify<'_>,
    ) -> StoreResult<()> {
        self.store
            .create_mls_conversation(conversation, creator, group, notify)
            .await
    }

    /// Starts a group's migration from Proteus (see
    /// [`GroupStore::start_migration`]).
    pub async fn start_migration(
        &self, group: &MlsGroupRecord, notify: Notify<'_>,
    ) -> StoreResult<bool> {
        self.store.start_migration(group, notify).await
    }

    /// Ends a mixed conversation's migration (see
    /// [`GroupStore::finish_migration`]).
    pub async fn finish_migration(
        &self, conversation: ConversationId, notify: Notify<'_>,
    ) -> StoreResult<bool> {
        self.store.finish_migration(conversation, notify).await
    }

    /// Applies a checked commit (see [`GroupStore::commit_group`]).
    pub async fn commit(&self, commit: &GroupCommit<'_>) -> StoreResult<GroupWrite> {
        self.store.commit_group(commit).await
    }

    /// Stores the server's own proposals (see [`GroupStore::propose_group`]).
    pub async fn propose(&self, p: &GroupProposals<'_>) -> StoreResult<GroupWrite> {
        self.store.propose_group(p).await
    }

    /// Stores and queues a checked message (see
    /// [`GroupStore::post_group_message`]).
    pub async fn post(
        &self, group: (&GroupKey, &[u8]), epoch: u64, past_epochs: u64, sender: (UserId, ClientId),
        message: SharedMessage<'_>, at: i64,
    ) -> StoreResult<GroupWrite> {
        self.store
            .post_group_message(group, epoch, past_epochs, sender, message, at)
            .await
    }
}
