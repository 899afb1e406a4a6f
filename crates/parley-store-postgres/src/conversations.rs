//! Conversations, members, rosters and message delivery, on PostgreSQL.

use super::*;

#[async_trait]
impl ConversationStore for PostgresStore {
    async fn create_conversation(
        &self,
        conversation: &ConversationRecord,
        members: &[MemberRecord],
        notify: Notify<'_>,
    ) -> StoreResult<()> {
        let mut tx = self.tx().await?;
        insert_conversation(&mut tx, conversation, members).await?;
        let events: Vec<(UserId, &str)> = member_ids(&mut tx, conversation.id)
            .await?
            .into_iter()
            .map(|user| (user, notify.payload))
            .collect();
        fan_out(&mut tx, &events, None, notify.at).await?;
        tx.commit().await.map_err(backend)
    }

    async fn conversation(&self, id: ConversationId) -> StoreResult<Option<ConversationRecord>> {
        let row: Option<ConversationRow> = sqlx::query_as(concat!(
            "SELECT ",
            conversation_columns!("c"),
            " FROM conversations c WHERE c.id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(columns::conversation).transpose()
    }

    async fn members(&self, id: ConversationId) -> StoreResult<Vec<MemberRecord>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT user_id, role FROM conversation_members WHERE conversation_id = $1 \
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
             WHERE m.user_id = $1 AND m.conversation_id > $2 ORDER BY m.conversation_id LIMIT $3"
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
        let mut tx = self.tx().await?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1::BIGINT FROM conversations WHERE id = $1 FOR UPDATE")
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
                    "DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
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
                    "UPDATE conversation_members SET role = $1 WHERE conversation_id = $2 AND user_id = $3",
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
                sqlx::query("UPDATE conversations SET name = $1 WHERE id = $2")
                    .bind(name)
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
            ConversationChange::MessageTimer(ms) => {
                sqlx::query("UPDATE conversations SET message_timer = $1 WHERE id = $2")
                    .bind(timer(*ms))
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
            ConversationChange::ReceiptMode(mode) => {
                sqlx::query("UPDATE conversations SET receipt_mode = $1 WHERE id = $2")
                    .bind(i64::from(*mode))
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
        }
        let events: Vec<(UserId, &str)> = told
            .into_iter()
            .map(|user| (user, notify.payload))
            .collect();
        fan_out(&mut tx, &events, None, notify.at).await?;
        tx.commit().await.map_err(backend)
    }

    async fn roster(&self, id: ConversationId) -> StoreResult<Option<Roster>> {
        let mut tx = self.tx().await?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1::BIGINT FROM conversations WHERE id = $1")
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
        // The conversation's row lock serialises its deliveries with each other
        // and with membership changes (which take it too). The roster is read in
        // a second statement: under READ COMMITTED a statement sees the data as
        // of its own start, so one that waited for the lock would see the
        // members from before a join or leave that committed meanwhile.
        let mut tx = self.tx().await?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1::BIGINT FROM conversations WHERE id = $1 FOR UPDATE")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        if exists.is_none() {
            return Ok(None);
        }
        let rows: Vec<(Option<String>, Option<i64>)> = sqlx::query_as(
            "SELECT m.user_id, c.id FROM conversation_members m \
             LEFT JOIN clients c ON c.user_id = m.user_id \
             WHERE m.conversation_id = $1 \
             ORDER BY m.user_id COLLATE \"C\", c.id",
        )
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let roster = columns::roster(rows)?;
        let Some(outgoing) = plan(&roster) else {
            return Ok(Some(Posted {
                roster,
                delivered: None,
            }));
        };
        let delivered = enqueue_many(&mut tx, outgoing, at).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(Posted {
            roster,
            delivered: Some(delivered),
        }))
    }
}
