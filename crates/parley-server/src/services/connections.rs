//! Connections: two users must be connected before they share a 1:1 conversation.
//!
//! Each user owns one side of a pair (`sent`/`pending`, `accepted`, `ignored`,
//! `blocked`, `cancelled`). A request writes both sides; acceptance writes both and
//! creates the 1:1 conversation in the same transaction; ignoring and blocking
//! change only the actor's side and tell the other user nothing. Every change is a
//! compare-and-set on both sides, so two people acting at once cannot leave a pair
//! half-changed; a lost race is simply re-read and re-decided.
//!
//! The rules of who may reach whom live here and nowhere else:
//! [`Connections::may_talk`] (no block: a 1:1 conversation or a message),
//! [`Connections::may_add`] (connected: adding to a group),
//! [`Connections::related`] (claiming prekeys) and [`Connections::blocked_with`]
//! (whom a group message skips). Team-mates will pass `may_add` and `related`
//! when teams arrive.

use parley_api::{
    Connection, ConnectionStatus, ConversationKind, EventPayload, OffsetDateTime, Role, UserId,
};
use std::sync::Arc;

use parley_store::{
    ConnectionChange, ConnectionRecord, ConnectionStore, ConversationRecord, MemberRecord,
    StoreError,
};

use super::Core;
use super::accounts::Accounts;
use super::notifications::payload;
use crate::error::{ApiError, ApiResult};

/// How often a change lost to a concurrent one is re-decided before giving up.
const ATTEMPTS: usize = 4;

/// Connection requests and their answers.
#[derive(Clone, Debug)]
pub struct Connections {
    core: Core,
    store: Arc<dyn ConnectionStore>,
    accounts: Accounts,
}

/// What a decision writes.
struct Decision {
    mine: ConnectionStatus,
    theirs: Option<ConnectionStatus>,
    /// Tell the other user (their side changed in a way they may know).
    tell_them: bool,
    /// Create (or reuse) the 1:1 conversation.
    one2one: bool,
}

impl Connections {
    /// The service.
    pub fn new(core: Core, store: Arc<dyn ConnectionStore>, accounts: Accounts) -> Self {
        Self {
            core,
            store,
            accounts,
        }
    }

    fn to_api(&self, r: &ConnectionRecord) -> Connection {
        Connection {
            from: r.from,
            to: self.core.qualified(r.to),
            status: r.status,
            last_update: OffsetDateTime::from_unix_timestamp(r.updated_at)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            conversation: r.conversation.map(|c| self.core.qualified(c)),
        }
    }

    /// The caller's sides, most recently changed first.
    pub async fn list(&self, me: UserId) -> ApiResult<Vec<Connection>> {
        let sides = self.store.connections(me).await?;
        Ok(sides.iter().map(|r| self.to_api(r)).collect())
    }

    /// The caller's side with one user.
    pub async fn get(&self, me: UserId, domain: &str, other: UserId) -> ApiResult<Connection> {
        self.core.local(domain)?;
        let side = self.store.connection(me, other).await?;
        side.map(|r| self.to_api(&r)).ok_or_else(no_connection)
    }

    /// Whether neither of two users has blocked the other.
    pub async fn may_talk(&self, a: UserId, b: UserId) -> ApiResult<bool> {
        let blocked =
            |s: Option<ConnectionRecord>| s.is_some_and(|r| r.status == ConnectionStatus::Blocked);
        Ok(!blocked(self.store.connection(a, b).await?)
            && !blocked(self.store.connection(b, a).await?))
    }

    /// Whether `me` may add `other` to a group: they are connected (both sides
    /// accepted, so neither has blocked the other since).
    pub async fn may_add(&self, me: UserId, other: UserId) -> ApiResult<bool> {
        let accepted =
            |s: Option<ConnectionRecord>| s.is_some_and(|r| r.status == ConnectionStatus::Accepted);
        Ok(accepted(self.store.connection(me, other).await?)
            && accepted(self.store.connection(other, me).await?))
    }

    /// Whether `me` and `other` know each other well enough for `me` to claim
    /// `other`'s prekeys: the same user, connected, or in a conversation
    /// together, and no block between them.
    pub async fn related(&self, me: UserId, other: UserId) -> ApiResult<bool> {
        if me == other {
            return Ok(true);
        }
        if !self.may_talk(me, other).await? {
            return Ok(false);
        }
        Ok(self.may_add(me, other).await? || self.store.share_conversation(me, other).await?)
    }

    /// The users between whom and `me` a block stands, whoever blocked: inside
    /// a group, messages between them are not delivered.
    pub async fn blocked_with(&self, me: UserId) -> ApiResult<std::collections::BTreeSet<UserId>> {
        Ok(self.store.blocks_involving(me).await?.into_iter().collect())
    }

    /// Checks that the other user is local, exists and is not the caller.
    async fn check_other(&self, me: UserId, domain: &str, other: UserId) -> ApiResult<()> {
        self.core.local(domain)?;
        if me == other {
            return Err(ApiError::bad_request(
                "invalid-user",
                "you cannot connect to yourself",
            ));
        }
        if !self.accounts.exists(other).await? {
            return Err(super::accounts::user_not_found());
        }
        Ok(())
    }

    /// Sends a connection request (or accepts theirs, if they asked first).
    pub async fn request(&self, me: UserId, domain: &str, other: UserId) -> ApiResult<Connection> {
        self.check_other(me, domain, other).await?;
        self.change(me, other, |mine, theirs| {
            use ConnectionStatus::*;
            let theirs_blocked = theirs == Some(Blocked);
            Ok(match mine {
                Some(Sent | Accepted) => None,
                Some(Blocked) => {
                    return Err(ApiError::forbidden(
                        "connection-blocked",
                        "you blocked this user: accept the connection to unblock them",
                    ));
                }
                Some(Pending) => Some(accept_decision()),
                None | Some(Ignored | Cancelled) => Some(Decision {
                    mine: Sent,
                    // Whoever blocked us is not told, and stays blocked.
                    theirs: if theirs_blocked {
                        theirs
                    } else {
                        Some(Pending)
                    },
                    tell_them: !theirs_blocked,
                    one2one: false,
                }),
            })
        })
        .await
    }

    /// Answers or changes a connection: `accepted`, `ignored`, `blocked` or
    /// `cancelled`.
    pub async fn update(
        &self, me: UserId, domain: &str, other: UserId, status: ConnectionStatus,
    ) -> ApiResult<Connection> {
        self.check_other(me, domain, other).await?;
        self.change(me, other, move |mine, theirs| {
            use ConnectionStatus::*;
            if mine == Some(status) {
                return Ok(None);
            }
            let only_mine = |status| Decision {
                mine: status,
                theirs,
                tell_them: false,
                one2one: false,
            };
            match (status, mine) {
                // Blocking needs no connection: anyone may be blocked.
                (Blocked, _) => Ok(Some(only_mine(Blocked))),
                (_, None) => Err(no_connection()),
                (Accepted, Some(Pending | Ignored | Blocked))
                    if matches!(theirs, Some(Sent | Accepted)) =>
                {
                    Ok(Some(accept_decision()))
                }
                (Ignored, Some(Pending)) => Ok(Some(only_mine(Ignored))),
                (Cancelled, Some(Sent)) => Ok(Some(Decision {
                    mine: Cancelled,
                    theirs: if theirs == Some(Pending) {
                        Some(Cancelled)
                    } else {
                        theirs
                    },
                    tell_them: theirs == Some(Pending),
                    one2one: false,
                })),
                (_, Some(from)) => Err(ApiError::forbidden(
                    "invalid-transition",
                    format!(
                        "a connection that is {} cannot become {}",
                        from.as_str(),
                        status.as_str()
                    ),
                )),
            }
        })
        .await
    }

    /// Reads both sides, decides, and writes if nothing changed in between
    /// (re-deciding a few times if something did).
    async fn change(
        &self, me: UserId, other: UserId,
        decide: impl Fn(
            Option<ConnectionStatus>,
            Option<ConnectionStatus>,
        ) -> ApiResult<Option<Decision>>,
    ) -> ApiResult<Connection> {
        for _ in 0..ATTEMPTS {
            let mine = self.store.connection(me, other).await?;
            let theirs = self.store.connection(other, me).await?;
            let Some(d) = decide(
                mine.as_ref().map(|r| r.status),
                theirs.as_ref().map(|r| r.status),
            )?
            else {
                return mine.map(|r| self.to_api(&r)).ok_or_else(no_connection);
            };
            let now = self.core.clock.now();
            let existing = mine
                .as_ref()
                .and_then(|r| r.conversation)
                .or_else(|| theirs.as_ref().and_then(|r| r.conversation));
            let mut conversation = None;
            let mut conversation_id = existing;
            if d.one2one && existing.is_none() {
                let record = ConversationRecord {
                    id: parley_api::ConversationId::random(),
                    kind: ConversationKind::One2one,
                    name: None,
                    creator: me,
                    message_timer: None,
                    receipt_mode: 0,
                    created_at: now,
                };
                conversation_id = Some(record.id);
                let members = [me, other].map(|user| MemberRecord {
                    user,
                    role: Role::Admin,
                });
                conversation = Some((record, members.to_vec()));
            }
            let my_side = ConnectionRecord {
                from: me,
                to: other,
                status: d.mine,
                conversation: conversation_id,
                updated_at: now,
            };
            let mut sides = vec![(my_side.clone(), mine.as_ref().map(|r| r.status))];
            let mut notify = vec![(
                me,
                payload(&EventPayload::Connection {
                    connection: self.to_api(&my_side),
                }),
            )];
            if let Some(status) = d
                .theirs
                .filter(|s| Some(*s) != theirs.as_ref().map(|r| r.status))
            {
                let their_side = ConnectionRecord {
                    from: other,
                    to: me,
                    status,
                    conversation: conversation_id,
                    updated_at: now,
                };
                if d.tell_them {
                    notify.push((
                        other,
                        payload(&EventPayload::Connection {
                            connection: self.to_api(&their_side),
                        }),
                    ));
                }
                sides.push((their_side, theirs.as_ref().map(|r| r.status)));
            }
            let told: Vec<UserId> = notify.iter().map(|(u, _)| *u).collect();
            let change = ConnectionChange {
                sides,
                conversation,
                notify,
                at: now,
            };
            match self.store.change_connection(&change).await {
                Ok(()) => {
                    self.core.announce_users(&told);
                    tracing::info!(status = ?d.mine, "connection changed");
                    return Ok(self.to_api(&my_side));
                }
                Err(StoreError::Conflict("connection")) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict(
            "connection-changed",
            "the connection kept changing; try again",
        ))
    }
}

fn accept_decision() -> Decision {
    Decision {
        mine: ConnectionStatus::Accepted,
        theirs: Some(ConnectionStatus::Accepted),
        tell_them: true,
        one2one: true,
    }
}

fn no_connection() -> ApiError {
    ApiError::not_found("no-connection", "you have no connection with this user")
}
