//! A group conversation's way from Proteus to MLS, the one Wire takes:
//! `proteus`, then `mixed`, then `mls`, never back.
//!
//! - **Start** (`PUT …/protocol` `mixed`, an admin): the conversation gets
//!   its group beside it (the conversation's id as group id, the backend's
//!   default suite, epoch 0). Its messages still go by Proteus and its
//!   members still change as a Proteus conversation's do; the group
//!   follows. An admin's device makes the group's first commit, adding the
//!   members' devices it can (those with key packages); the others join by
//!   external commit when they can. A commit in a mixed group adds only
//!   devices of members and removes only what the server proposed (an
//!   admin removes a member from the conversation, and the server proposes
//!   the removal of their devices), and no user is held to all or none of
//!   their devices: partial is what mixed means.
//! - **End** (`mls`): once every device of every member is in the group,
//!   or from `[mls] migration_finalise_after` on (whichever comes first),
//!   at an admin's request (else 409 `mls-migration-criteria-not-satisfied`,
//!   saying how many devices are still out) and by itself at the commit that
//!   brings the last device in. From then on Proteus messages are refused
//!   and members change by commit. A device left outside gets nothing of
//!   the conversation until it joins by external commit, which its user's
//!   membership allows at any time.
//!
//! Every member's devices hear each step (`conversation.protocol-update`).
//!
//! A 1:1 conversation goes the same way, by either of its two members: its
//! group never holds anyone else, and while a block stands between them
//! neither's MLS messages are taken (as with Proteus).

use std::collections::BTreeSet;

use parley_api::{ConversationId, EventPayload, Protocol, UserId};
use parley_store::{GroupKey, MlsGroupRecord};

use super::Mls;
use crate::error::{ApiError, ApiResult};
use crate::services::conversations::Loaded;
use crate::services::notifications::payload;

fn name(p: Protocol) -> &'static str {
    match p {
        Protocol::Proteus => "proteus",
        Protocol::Mixed => "mixed",
        Protocol::Mls => "mls",
    }
}

/// Devices of members the group does not hold yet, of how many; and
/// whether the group has had its first commit.
struct Outside {
    missing: usize,
    of: usize,
    started: bool,
}

impl Outside {
    /// Whether the migration may end: the group made, and every device in
    /// it or the deadline passed.
    fn done(&self, past_deadline: bool) -> bool {
        self.started && (self.missing == 0 || past_deadline)
    }
}

impl Mls {
    /// `PUT /v1/conversations/{domain}/{id}/protocol` (see the module's
    /// documentation). Asking for the step the conversation is at changes
    /// nothing.
    pub async fn set_protocol(
        &self, me: UserId, domain: &str, id: ConversationId, protocol: Protocol,
    ) -> ApiResult<()> {
        let loaded = self.conversations.load(domain, id).await?;
        // (Both members of a 1:1 are its admins.)
        loaded.require_admin(me)?;
        self.no_block_in_one2one(me, &loaded).await?;
        let current = loaded.protocol();
        match (current, protocol) {
            _ if current == protocol => Ok(()),
            (Protocol::Proteus, Protocol::Mixed) => self.start_migration(me, &loaded).await,
            (Protocol::Mixed, Protocol::Mls) => {
                let outside = self.outside(&loaded).await?;
                if !outside.started {
                    return Err(ApiError::conflict(
                        "mls-migration-criteria-not-satisfied",
                        "the group has no members yet: an admin's device makes its first commit",
                    ));
                }
                if !outside.done(self.past_deadline()) {
                    return Err(ApiError::conflict(
                        "mls-migration-criteria-not-satisfied",
                        format!(
                            "{} of the members' {} devices are not in the group yet: the \
                             conversation becomes MLS once they join{}",
                            outside.missing,
                            outside.of,
                            match self.core.settings.mls_migration_finalise_after {
                                Some(at) => format!(" (or from {} on)", rfc3339(at)),
                                None => String::new(),
                            }
                        ),
                    ));
                }
                self.finish_migration(me, &loaded).await
            }
            _ => Err(ApiError::forbidden(
                "mls-invalid-protocol-transition",
                format!(
                    "a conversation goes from proteus to mixed to mls, one step at a time: \
                     this one is {}, so {} is not its next step",
                    name(current),
                    name(protocol)
                ),
            )),
        }
    }

    /// After a commit to a mixed group: the migration ends by itself when
    /// the group now holds every member's devices (or the deadline passed).
    /// Failures are logged: the commit stands.
    pub(super) async fn finish_if_complete(&self, me: UserId, id: ConversationId) {
        let done = async {
            let loaded = self
                .conversations
                .load(&self.core.settings.domain, id)
                .await?;
            if loaded.protocol() != Protocol::Mixed {
                return Ok(());
            }
            if self.outside(&loaded).await?.done(self.past_deadline()) {
                self.finish_migration(me, &loaded).await?;
            }
            ApiResult::Ok(())
        };
        if let Err(e) = done.await {
            tracing::warn!(label = e.label(), "MLS: a finished migration was not ended");
        }
    }

    async fn start_migration(&self, me: UserId, loaded: &Loaded) -> ApiResult<()> {
        let id = loaded.record.id;
        let group = MlsGroupRecord {
            conversation: id,
            subconversation: None,
            generation: 0,
            // As for a new MLS conversation: its id names its group.
            group_id: id.0.as_bytes().to_vec(),
            suite: self.core.settings.mls_default_suite.0,
            epoch: 0,
            epoch_at: self.core.clock.now(),
            mixed: true,
        };
        let event = payload(&EventPayload::ProtocolUpdate {
            conversation: self.core.qualified(id),
            from: me,
            protocol: Protocol::Mixed,
        });
        // Another admin's start may have come first: the same either way.
        if self
            .groups
            .start_migration(&group, self.core.notify(&event))
            .await?
        {
            self.announce(loaded);
            tracing::info!(suite = group.suite, "migration to MLS started");
        }
        Ok(())
    }

    async fn finish_migration(&self, me: UserId, loaded: &Loaded) -> ApiResult<()> {
        let id = loaded.record.id;
        let event = payload(&EventPayload::ProtocolUpdate {
            conversation: self.core.qualified(id),
            from: me,
            protocol: Protocol::Mls,
        });
        if self
            .groups
            .finish_migration(id, self.core.notify(&event))
            .await?
        {
            self.announce(loaded);
            tracing::info!("migration to MLS finished");
        }
        Ok(())
    }

    fn announce(&self, loaded: &Loaded) {
        let users: Vec<UserId> = loaded.members.iter().map(|m| m.user).collect();
        self.core.announce_users(&users);
    }

    fn past_deadline(&self) -> bool {
        self.core
            .settings
            .mls_migration_finalise_after
            .is_some_and(|at| self.core.clock.now() >= at)
    }

    /// The members' devices the group does not hold.
    async fn outside(&self, loaded: &Loaded) -> ApiResult<Outside> {
        let id = loaded.record.id;
        let in_group: BTreeSet<_> = self
            .groups
            .devices(&GroupKey::of(id))
            .await?
            .into_iter()
            .collect();
        let (mut missing, mut of) = (0, 0);
        for member in &loaded.members {
            for client in self.clients.ids(member.user).await? {
                of += 1;
                if !in_group.contains(&(member.user, client)) {
                    missing += 1;
                }
            }
        }
        let started = loaded.group.as_ref().is_some_and(|g| g.epoch > 0);
        Ok(Outside {
            missing,
            of,
            started,
        })
    }
}

fn rfc3339(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| at.to_string())
}
