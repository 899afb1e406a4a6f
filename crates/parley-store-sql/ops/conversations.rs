//! Conversations, members, rosters and message delivery.

use async_trait::async_trait;

use parley_api::{ConversationId, UserId};
use parley_store::{
    ConversationChange, ConversationRecord, ConversationStore, DeliveryPlan, MemberRecord, Notify,
    Posted, Roster, StoreError, StoreResult,
};

use super::Store;
use parley_store_sql::Dialect;
use parley_store_sql::columns::{self, ConversationRow, role, timer};

#[async_trait]
impl ConversationStore for Store {
    async fn create_conversation(
        &self, conversation: &ConversationRecord, members: &[MemberRecord], notify: Notify<'_>,
    ) -> StoreResult<()> {
        let (_guard, mut tx) = self.write_tx().await?;
        Self::insert_conversation(&mut tx, conversation, members).await?;
        let events: Vec<(UserId, &str)> = Self::member_ids(&mut tx, conversation.id)
            .await?
            .into_iter()
            .map(|user| (user, notify.payload))
            .collect();
        Self::fan_out(&mut tx, &events, None, notify.at).await?;
        tx.commit().await.map_err(Store::error)
    }

    async fn conversation(&self, id: ConversationId) -> StoreResult<Option<ConversationRecord>> {
        let row: Option<ConversationRow> = self
            .row_by_key(
                concat!(
                    "SELECT ",
                    parley_store_sql::conversation_columns!(),
                    " FROM conversations c WHERE c.id = $1"
                ),
                &id.to_string(),
            )
            .await?;
        row.map(columns::conversation).transpose()
    }

    async fn members(&self, id: ConversationId) -> StoreResult<Vec<MemberRecord>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT user_id, role FROM conversation_members WHERE conversation_id = $1 \
             ORDER BY user_id",
        )
        .bind(id.to_string())
        .fetch_all(self.pool())
        .await
        .map_err(Store::error)?;
        rows.into_iter().map(columns::member).collect()
    }

    async fn conversations_of(
        &self, user: UserId, after: Option<ConversationId>, limit: usize,
    ) -> StoreResult<Vec<ConversationRecord>> {
        let rows: Vec<ConversationRow> = sqlx::query_as(concat!(
            "SELECT ",
            parley_store_sql::conversation_columns!(),
            " FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.user_id = $1 AND m.conversation_id > $2 ORDER BY m.conversation_id LIMIT $3"
        ))
        .bind(user.to_string())
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(Store::error)?;
        rows.into_iter().map(columns::conversation).collect()
    }

    async fn change_conversation(
        &self, id: ConversationId, change: &ConversationChange, notify: Notify<'_>,
    ) -> StoreResult<()> {
        let (_guard, mut tx) = self.write_tx().await?;
        let exists: Option<i64> = sqlx::query_scalar(Store::LOCK_CONVERSATION)
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(Store::error)?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        let mut told = Self::member_ids(&mut tx, id).await?;
        match change {
            ConversationChange::AddMembers { members, max } => {
                Self::insert_members(&mut tx, id, members).await?;
                let after = Self::member_ids(&mut tx, id).await?;
                if after.len() > *max {
                    return Err(StoreError::Limit("members"));
                }
                told = after;
            }
            ConversationChange::RemoveMember(user) => {
                Store::touched(sqlx::query(
                    "DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
                )
                .bind(id.to_string())
                .bind(user.to_string())
                .execute(&mut *tx)
                .await)?;
                // In an MLS conversation the user's devices get nothing more
                // of the group from now on, and a commit checked before this
                // is stale (the group's revision moves).
                sqlx::query(
                    "DELETE FROM mls_group_devices WHERE conversation_id = $1 AND user_id = $2",
                )
                .bind(id.to_string())
                .bind(user.to_string())
                .execute(&mut *tx)
                .await
                .map_err(Store::error)?;
                // (Before the group's first commit there is no state to
                // move on from: its revision stays 0.)
                sqlx::query(
                    "UPDATE mls_groups SET revision = revision + 1 \
                     WHERE conversation_id = $1 AND state IS NOT NULL",
                )
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(Store::error)?;
            }
            ConversationChange::SetRole(member) => {
                Store::touched(sqlx::query(
                    "UPDATE conversation_members SET role = $1 WHERE conversation_id = $2 AND user_id = $3",
                )
                .bind(role(member.role))
                .bind(id.to_string())
                .bind(member.user.to_string())
                .execute(&mut *tx)
                .await)?;
            }
            ConversationChange::Rename(name) => {
                sqlx::query("UPDATE conversations SET name = $1 WHERE id = $2")
                    .bind(name)
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(Store::error)?;
            }
            ConversationChange::MessageTimer(ms) => {
                sqlx::query("UPDATE conversations SET message_timer = $1 WHERE id = $2")
                    .bind(timer(*ms))
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(Store::error)?;
            }
            ConversationChange::ReceiptMode(mode) => {
                sqlx::query("UPDATE conversations SET receipt_mode = $1 WHERE id = $2")
                    .bind(i64::from(*mode))
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(Store::error)?;
            }
        }
        let events: Vec<(UserId, &str)> = told
            .into_iter()
            .map(|user| (user, notify.payload))
            .collect();
        Self::fan_out(&mut tx, &events, None, notify.at).await?;
        tx.commit().await.map_err(Store::error)
    }

    async fn roster(&self, id: ConversationId) -> StoreResult<Option<Roster>> {
        let mut tx = self.pool().begin().await.map_err(Store::error)?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT CAST(1 AS BIGINT) FROM conversations WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(Store::error)?;
        if exists.is_none() {
            return Ok(None);
        }
        let roster = Self::roster_in(&mut tx, id).await?;
        tx.commit().await.map_err(Store::error)?;
        Ok(Some(roster))
    }

    async fn post(
        &self, id: ConversationId, at: i64, plan: DeliveryPlan,
    ) -> StoreResult<Option<Posted>> {
        self.deliver(id, at, plan).await
    }
}
