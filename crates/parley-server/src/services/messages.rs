//! Sending: one ciphertext per device, checked against the conversation's devices
//! and delivered in one transaction.
//!
//! The sender gives a ciphertext for every device of every member, its own other
//! devices included. Inside the delivery's transaction the server compares that map
//! with the devices members have at that moment ([`check`]): if any are missing it
//! delivers nothing and answers 412 with what was missing; otherwise it stores one
//! event per device and answers 201, naming the devices it dropped because their
//! users are not members (`redundant`) or because they no longer exist (`deleted`).
//! The server never looks inside a ciphertext; it only checks it is base64.
//!
//! In a group, members with a block between them and the sender (whoever
//! blocked) are left out: not expected, not delivered to, and what was
//! encrypted for them is dropped silently (answering it would reveal the block). A message may write at most
//! [`limits::MAX_MESSAGE_FANOUT_BYTES`] into queues, since its data blob is
//! copied to every device.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use parley_api::{
    ClientId, ClientMap, ConversationId, ConversationKind, EventPayload, MessageSent,
    NewProteusMessage, OffsetDateTime, ProteusMessage, ReportMissing, UserId, limits,
};
use std::sync::Arc;

use parley_api::Qualified;
use parley_store::{ConversationStore, DeliveryPlan, Outgoing, Roster};

use super::Core;
use super::clients::Clients;
use super::connections::Connections;
use super::conversations::{Conversations, Loaded};
use super::notifications::{payload, transient_frame};
use crate::error::{ApiError, ApiResult};
use crate::wakeups::Live;

/// Sends messages.
#[derive(Clone, Debug)]
pub struct Messages {
    core: Core,
    store: Arc<dyn ConversationStore>,
    conversations: Conversations,
    connections: Connections,
    clients: Clients,
}

/// The answer to a send.
#[derive(Debug)]
pub enum Outcome {
    /// Delivered (201).
    Sent(MessageSent),
    /// Devices were missing; nothing was delivered (412).
    Missing(MessageSent),
}

/// A message's ciphertexts, by user and device.
type ByDevice = BTreeMap<UserId, BTreeMap<ClientId, String>>;

/// How a message's devices compare with a conversation's.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Check {
    /// Whether the sender is a member.
    pub sender_is_member: bool,
    /// Devices of members the message lacks (those the report mode counts).
    pub missing: BTreeMap<UserId, Vec<ClientId>>,
    /// Devices the message has that are not the conversation's.
    pub extra: Vec<(UserId, ClientId)>,
    /// Devices to deliver to.
    pub deliver: Vec<(UserId, ClientId)>,
}

/// Compares the devices a message is for with the conversation's `roster`. The
/// sending device itself is never expected.
pub(crate) fn check(
    roster: &Roster, me: UserId, sender: ClientId, given: &ByDevice, report: &ReportMissing,
) -> Check {
    let mut out = Check::default();
    let counts = |user: &UserId| match report {
        ReportMissing::All => true,
        ReportMissing::None => false,
        ReportMissing::Only { users } => users.contains(user),
    };
    for (user, clients) in &roster.members {
        out.sender_is_member |= *user == me;
        let theirs = given.get(user);
        for client in clients {
            if *user == me && *client == sender {
                continue;
            }
            if theirs.is_some_and(|t| t.contains_key(client)) {
                out.deliver.push((*user, *client));
            } else if counts(user) {
                out.missing.entry(*user).or_default().push(*client);
            }
        }
    }
    for (user, clients) in given {
        let known = roster
            .members
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, c)| c.as_slice())
            .unwrap_or_default();
        for client in clients.keys() {
            let expected = known.contains(client) && !(*user == me && *client == sender);
            if !expected {
                out.extra.push((*user, *client));
            }
        }
    }
    out
}

/// A message being sent: what the delivery plan needs, owned so the store may run
/// the plan wherever it commits.
#[derive(Debug)]
struct Message {
    me: UserId,
    sender: ClientId,
    given: ByDevice,
    report: ReportMissing,
    conversation: Qualified<ConversationId>,
    time: OffsetDateTime,
    data: Option<String>,
    /// Members with a block between them and the sender: in a group they are
    /// neither expected nor delivered to, whoever blocked.
    skip: BTreeSet<UserId>,
}

impl Message {
    fn check(&self, roster: &Roster) -> Check {
        if self.skip.is_empty() {
            return check(roster, self.me, self.sender, &self.given, &self.report);
        }
        // Members with a block are neither expected nor delivered to, and
        // what the sender encrypted for them is dropped without a word (as
        // `redundant` it would tell the sender who blocked them).
        let roster = Roster {
            members: roster
                .members
                .iter()
                .filter(|(user, _)| !self.skip.contains(user))
                .cloned()
                .collect(),
        };
        let mut given = self.given.clone();
        given.retain(|user, _| !self.skip.contains(user));
        check(&roster, self.me, self.sender, &given, &self.report)
    }

    /// An upper bound of the bytes this message writes into queues: every
    /// ciphertext, and the data blob once per device it names.
    fn fan_out_bytes(&self) -> usize {
        let data = self.data.as_ref().map_or(0, String::len);
        self.given
            .values()
            .flat_map(BTreeMap::values)
            .map(|text| text.len().saturating_add(data).saturating_add(256))
            .fold(0usize, usize::saturating_add)
    }

    /// The event one device receives.
    fn event_for(&self, user: UserId, client: ClientId) -> EventPayload {
        EventPayload::OtrMessageAdd {
            conversation: self.conversation.clone(),
            from: self.me,
            time: self.time,
            data: ProteusMessage {
                sender: self.sender,
                recipient: client,
                text: self
                    .given
                    .get(&user)
                    .and_then(|c| c.get(&client))
                    .cloned()
                    .unwrap_or_default(),
                data: self.data.clone(),
            },
        }
    }

    /// What to store, or nothing if the sender is not a member or devices are missing.
    fn plan(&self, roster: &Roster) -> Option<Vec<Outgoing>> {
        let c = self.check(roster);
        if !c.sender_is_member || !c.missing.is_empty() {
            return None;
        }
        Some(
            c.deliver
                .iter()
                .map(|(user, client)| Outgoing {
                    user: *user,
                    client: *client,
                    payload: payload(&self.event_for(*user, *client)),
                })
                .collect(),
        )
    }
}

fn base64_ok(s: &str) -> bool {
    base64::engine::general_purpose::STANDARD.decode(s).is_ok()
}

impl Messages {
    /// The service.
    pub fn new(
        core: Core, store: Arc<dyn ConversationStore>, conversations: Conversations,
        connections: Connections, clients: Clients,
    ) -> Self {
        Self {
            core,
            store,
            conversations,
            connections,
            clients,
        }
    }

    /// Sends a Proteus message into a conversation.
    pub async fn post_proteus(
        &self, me: UserId, domain: &str, id: ConversationId, req: NewProteusMessage,
    ) -> ApiResult<Outcome> {
        // Membership is checked by the delivery plan, on the roster it delivers to;
        // only a 1:1 needs its members up front, for the block check (a group
        // needs the sender's blocks).
        let record = self.conversations.record(domain, id).await?;
        self.conversations.require_proteus(me, id).await?;
        if !self.clients.exists(me, req.sender).await? {
            return Err(ApiError::forbidden(
                "unknown-client",
                "the sending device is not one of yours",
            ));
        }
        let mut skip = BTreeSet::new();
        if record.kind == ConversationKind::Group {
            // Read before the delivery commits: a block placed while this
            // message is in flight holds from the next one.
            skip = self.connections.blocked_with(me).await?;
        } else {
            let members = self.store.members(id).await?;
            let conversation = Loaded {
                record,
                members,
                group: None,
            };
            conversation.role_of(me)?;
            for other in conversation.members.iter().filter(|m| m.user != me) {
                if !self.connections.may_talk(me, other.user).await? {
                    return Err(ApiError::forbidden(
                        "blocked",
                        "a block stands between you and this user: nothing was sent",
                    ));
                }
            }
        }
        let generation = req.generation;
        let mut given = ByDevice::new();
        for (domain, users) in req.recipients {
            self.core.local(&domain)?;
            given.extend(users);
        }
        let well_formed = given
            .values()
            .flat_map(BTreeMap::values)
            .chain(req.data.as_ref())
            .all(|c| base64_ok(c));
        if !well_formed {
            return Err(ApiError::bad_request(
                "bad-request",
                "every ciphertext and the data blob are base64",
            ));
        }
        let at = self.core.clock.now();
        let time = OffsetDateTime::from_unix_timestamp(at).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let message = Arc::new(Message {
            me,
            sender: req.sender,
            given,
            report: req.report_missing,
            conversation: self.core.qualified(id),
            time,
            data: req.data,
            skip,
        });
        if message.fan_out_bytes() > limits::MAX_MESSAGE_FANOUT_BYTES {
            return Err(ApiError::too_large(format!(
                "this message would write more than {} MiB into queues: its data blob is copied to every device; send a smaller one",
                limits::MAX_MESSAGE_FANOUT_BYTES / (1024 * 1024)
            )));
        }
        let (roster, delivered) =
            if req.transient {
                let roster = self.store.roster(id).await?.ok_or_else(|| {
                    ApiError::not_found("no-conversation", "no such conversation")
                })?;
                let c = message.check(&roster);
                if !c.sender_is_member || !c.missing.is_empty() {
                    (roster, None)
                } else {
                    for (user, client) in &c.deliver {
                        let frame = transient_frame(&message.event_for(*user, *client), at);
                        let live = Live {
                            client: Some(*client),
                            id: None,
                            frame: frame.into(),
                        };
                        self.core.wakeups.publish(*user, live);
                    }
                    (roster, Some(c.deliver))
                }
            } else {
                let plan: DeliveryPlan = {
                    let message = message.clone();
                    Arc::new(move |roster: &Roster| message.plan(roster))
                };
                let posted = self.store.post(id, at, plan).await?.ok_or_else(|| {
                    ApiError::not_found("no-conversation", "no such conversation")
                })?;
                let delivered = posted.delivered.map(|stored| {
                    let devices: Vec<_> = stored.iter().map(|d| (d.user, d.client)).collect();
                    self.core.announce_stored(at, stored);
                    devices
                });
                (posted.roster, delivered)
            };
        let c = message.check(&roster);
        if !c.sender_is_member {
            return Err(ApiError::forbidden(
                "access-denied",
                "you are not a member of this conversation",
            ));
        }
        let (redundant, deleted) = self.classify(&c.extra).await?;
        let domain = self.core.settings.domain.clone();
        let mut answer = MessageSent {
            time,
            missing: ClientMap::new(),
            redundant,
            deleted,
        };
        match delivered {
            Some(devices) => {
                tracing::debug!(devices = devices.len(), "message delivered");
                if let Some(g) = generation {
                    // After the delivery, and never failing it: a 500 here
                    // would make the sender post the message again. A miss is
                    // made up by the device's next delivered post.
                    if let Err(e) = self.clients.raise_generation(me, req.sender, g).await {
                        tracing::warn!(label = e.label(), "could not record a device's generation");
                    }
                }
                Ok(Outcome::Sent(answer))
            }
            None => {
                if !c.missing.is_empty() {
                    answer.missing.insert(domain, c.missing);
                }
                Ok(Outcome::Missing(answer))
            }
        }
    }

    /// Splits devices that are not the conversation's into those of non-members
    /// (`redundant`) and those that no longer exist (`deleted`).
    async fn classify(&self, extra: &[(UserId, ClientId)]) -> ApiResult<(ClientMap, ClientMap)> {
        let mut redundant = BTreeMap::<UserId, Vec<ClientId>>::new();
        let mut deleted = BTreeMap::<UserId, Vec<ClientId>>::new();
        let mut by_user = BTreeMap::<UserId, Vec<ClientId>>::new();
        for (user, client) in extra {
            by_user.entry(*user).or_default().push(*client);
        }
        for (user, clients) in by_user {
            let existing = self.clients.ids(user).await?;
            for client in clients {
                let map = if existing.contains(&client) {
                    &mut redundant
                } else {
                    &mut deleted
                };
                map.entry(user).or_default().push(client);
            }
        }
        let qualify = |m: BTreeMap<UserId, Vec<ClientId>>| {
            let mut out = ClientMap::new();
            if !m.is_empty() {
                out.insert(self.core.settings.domain.clone(), m);
            }
            out
        };
        Ok((qualify(redundant), qualify(deleted)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: &[u64]) -> Vec<ClientId> {
        n.iter().map(|n| ClientId(*n)).collect()
    }

    fn given(entries: &[(UserId, &[u64])]) -> ByDevice {
        entries
            .iter()
            .map(|(u, cs)| {
                (
                    *u,
                    cs.iter().map(|c| (ClientId(*c), "AA==".into())).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn the_check_names_missing_extra_and_delivered_devices() {
        let (me, bob, eve) = (UserId::random(), UserId::random(), UserId::random());
        let roster = Roster {
            members: vec![(me, ids(&[1, 2])), (bob, ids(&[3, 4]))],
        };
        // My other device and one of Bob's; Bob's second is missing; Eve is not a
        // member; my sending device is never expected.
        let g = given(&[(me, &[1, 2]), (bob, &[3, 9]), (eve, &[5])]);
        let c = check(&roster, me, ClientId(1), &g, &ReportMissing::All);
        assert!(c.sender_is_member);
        assert_eq!(c.missing, BTreeMap::from([(bob, ids(&[4]))]));
        assert_eq!(c.deliver, vec![(me, ClientId(2)), (bob, ClientId(3))]);
        let mut extra = c.extra.clone();
        extra.sort();
        let mut want = vec![(me, ClientId(1)), (bob, ClientId(9)), (eve, ClientId(5))];
        want.sort();
        assert_eq!(extra, want);
        // Report modes.
        let none = check(&roster, me, ClientId(1), &g, &ReportMissing::None);
        assert!(none.missing.is_empty());
        let only_me = ReportMissing::Only { users: vec![me] };
        assert!(
            check(&roster, me, ClientId(1), &g, &only_me)
                .missing
                .is_empty()
        );
        let only_bob = ReportMissing::Only { users: vec![bob] };
        assert_eq!(
            check(&roster, me, ClientId(1), &g, &only_bob).missing.len(),
            1
        );
        // A non-member sender.
        let c = check(&roster, eve, ClientId(5), &g, &ReportMissing::All);
        assert!(!c.sender_is_member);
    }
}
