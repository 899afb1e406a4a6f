//! Conversations, members, rosters and message delivery, on SQLite.

use super::*;

#[async_trait]
impl ConversationStore for SqliteStore {
    async fn create_conversation(
        &self,
        conversation: &ConversationRecord,
        members: &[MemberRecord],
        notify: Notify<'_>,
    ) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        insert_conversation(&mut tx, conversation, members).await?;
        for user in member_ids(&mut tx, conversation.id).await? {
            enqueue_for_user(&mut tx, user, None, notify).await?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn conversation(&self, id: ConversationId) -> StoreResult<Option<ConversationRecord>> {
        let row: Option<ConversationRow> = sqlx::query_as(concat!(
            "SELECT ",
            conversation_columns!("c"),
            " FROM conversations c WHERE c.id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(columns::conversation).transpose()
    }

    async fn members(&self, id: ConversationId) -> StoreResult<Vec<MemberRecord>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT user_id, role FROM conversation_members WHERE conversation_id = ? \
             ORDER BY user_id",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.into_iter().map(columns::member).collect()
    }

    async fn conversations_of(
        &self,
        user: UserId,
        after: Option<ConversationId>,
        limit: usize,
    ) -> StoreResult<Vec<ConversationRecord>> {
        let rows: Vec<ConversationRow> = sqlx::query_as(concat!(
            "SELECT ",
            conversation_columns!("c"),
            " FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.user_id = ? AND m.conversation_id > ? ORDER BY m.conversation_id LIMIT ?"
        ))
        .bind(user.to_string())
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.into_iter().map(columns::conversation).collect()
    }

    async fn change_conversation(
        &self,
        id: ConversationId,
        change: &ConversationChange,
        notify: Notify<'_>,
    ) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM conversations WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        let mut told = member_ids(&mut tx, id).await?;
        match change {
            ConversationChange::AddMembers { members, max } => {
                insert_members(&mut tx, id, members).await?;
                let after = member_ids(&mut tx, id).await?;
                if after.len() > *max {
                    return Err(StoreError::Limit("members"));
                }
                told = after;
            }
            ConversationChange::RemoveMember(user) => {
                let gone = sqlx::query(
                    "DELETE FROM conversation_members WHERE conversation_id = ? AND user_id = ?",
                )
                .bind(id.to_string())
                .bind(user.to_string())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                if gone.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
            }
            ConversationChange::SetRole(member) => {
                let changed = sqlx::query(
                    "UPDATE conversation_members SET role = ? WHERE conversation_id = ? AND user_id = ?",
                )
                .bind(role(member.role))
                .bind(id.to_string())
                .bind(member.user.to_string())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                if changed.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
            }
            ConversationChange::Rename(name) => {
                sqlx::query("UPDATE conversations SET name = ? WHERE id = ?")
                    .bind(name)
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
            ConversationChange::MessageTimer(ms) => {
                sqlx::query("UPDATE conversations SET message_timer = ? WHERE id = ?")
                    .bind(timer(*ms))
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
            ConversationChange::ReceiptMode(mode) => {
                sqlx::query("UPDATE conversations SET receipt_mode = ? WHERE id = ?")
                    .bind(i64::from(*mode))
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
        }
        for user in told {
            enqueue_for_user(&mut tx, user, None, notify).await?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn roster(&self, id: ConversationId) -> StoreResult<Option<Roster>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM conversations WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        if exists.is_none() {
            return Ok(None);
        }
        let roster = roster_in(&mut tx, id).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(roster))
    }

    async fn post(
        &self,
        id: ConversationId,
        at: i64,
        plan: DeliveryPlan,
    ) -> StoreResult<Option<Posted>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.deliveries
            .send(PostJob {
                id,
                at,
                plan,
                reply,
            })
            .map_err(|_| StoreError::Backend("the delivery writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Backend("the delivery writer has stopped".into()))?
    }
}
