//! The small world of the model-based test: its users, addresses, devices and
//! conversations, the operations on it with their strategies, and the reads of
//! everything done after a sequence.

use ::proptest::arbitrary::any;
use ::proptest::collection::vec;
use ::proptest::prop_oneof;
use ::proptest::sample::select;
use ::proptest::strategy::{Just, Strategy};
use parley_api::{ConnectionStatus, ConversationId, UserId};
use uuid::Uuid;

/// The longest sequence [`ops`] generates.
pub const MAX_OPS: usize = 40;

/// The users: their ids sort (as text) in the order 1, 2, 0.
pub(super) const USERS: [UserId; 3] = [
    UserId(Uuid::from_u128(0xc0de_0000_0000_4000_8000_0000_0000_0001)),
    UserId(Uuid::from_u128(0x3a11_0000_0000_4000_8000_0000_0000_0002)),
    UserId(Uuid::from_u128(0x9b0b_0000_0000_4000_8000_0000_0000_0003)),
];

/// The conversations: their ids sort (as text) in the order 1, 0.
pub(super) const CONVERSATIONS: [ConversationId; 2] = [
    ConversationId(Uuid::from_u128(0x7c00_0000_0000_4000_8000_0000_0000_0001)),
    ConversationId(Uuid::from_u128(0x1c00_0000_0000_4000_8000_0000_0000_0002)),
];

pub(super) const EMAILS: [&str; 3] = ["ann@example.com", "ben@example.com", "cat@example.com"];
pub(super) const HANDLES: [&str; 2] = ["ann", "ben"];
pub(super) const COOKIES: [&str; 3] = ["c0", "c1", "c2"];
pub(super) const LABELS: [&str; 2] = ["laptop", "phone"];
pub(super) const PREKEY_IDS: [u16; 4] = [0, 1, 2, 65535];
pub(super) const STATUSES: [ConnectionStatus; 4] = [
    ConnectionStatus::Sent,
    ConnectionStatus::Pending,
    ConnectionStatus::Accepted,
    ConnectionStatus::Blocked,
];
/// Device ids are 1 to 4; a delivery also addresses this one, which never exists.
pub(super) const GONE_DEVICE: u64 = 9;
pub(super) const MAX_COOKIES_PER_KIND: usize = 2;
pub(super) const MAX_PERMANENT_DEVICES: usize = 2;
pub(super) const MAX_RESET_TRIES: u32 = 2;

/// One operation on the small world; numbers index the world's users, e-mails,
/// handles, cookies, labels and conversations (modulo their count).
#[derive(Clone, Debug)]
pub enum Op {
    PutActivationCode {
        email: u8,
        tag: u8,
    },
    CountActivationTry {
        email: u8,
    },
    ActivationCode {
        email: u8,
    },
    CreateUser {
        user: u8,
        email: u8,
    },
    User {
        user: u8,
    },
    UserByEmail {
        email: u8,
    },
    UserByHandle {
        handle: u8,
    },
    SetHandle {
        user: u8,
        handle: u8,
    },
    UpdateProfile {
        user: u8,
        name: Option<u8>,
        picture: Option<Option<u8>>,
        at: i64,
    },
    ChangePassword {
        user: u8,
        tag: u8,
    },
    SetRecoveryBundle {
        user: u8,
        bundle: Option<u8>,
    },
    RecoveryBundle {
        user: u8,
    },
    DeleteUser {
        user: u8,
    },
    AddCookie {
        user: u8,
        cookie: u8,
        persistent: bool,
        at: i64,
        label: Option<u8>,
    },
    RemoveCookie {
        user: u8,
        cookie: u8,
    },
    RemoveCookiesByLabel {
        user: u8,
        label: u8,
    },
    Cookies {
        user: u8,
    },
    /// A reset keyed by its user, refused while one is live (2 tries).
    StartPasswordReset {
        user: u8,
        tag: u8,
        expires_at: i64,
        now: i64,
    },
    CountPasswordResetTry {
        user: u8,
    },
    /// Completes `user`'s reset, claiming it for `by`.
    CompletePasswordReset {
        user: u8,
        by: u8,
    },
    DeletePasswordReset {
        user: u8,
    },
    PasswordReset {
        user: u8,
    },
    /// At most 2 permanent devices.
    AddClient {
        user: u8,
        client: u64,
        temporary: bool,
        at: i64,
        prekeys: Vec<u16>,
        cookie_label: Option<u8>,
    },
    DeleteClient {
        user: u8,
        client: u64,
        at: i64,
    },
    Clients {
        user: u8,
    },
    AddPrekeys {
        user: u8,
        client: u64,
        prekeys: Vec<u16>,
    },
    ClaimPrekey {
        user: u8,
        client: u64,
        one_time: bool,
    },
    CountPrekeys {
        user: u8,
        client: u64,
    },
    RaiseGeneration {
        user: u8,
        client: u64,
        generation: u64,
    },
    SetPushEndpoint {
        user: u8,
        client: u64,
        url: Option<u8>,
    },
    PushEndpoint {
        user: u8,
        client: u64,
    },
    Events {
        user: u8,
        client: u64,
        since: Option<u64>,
        limit: usize,
    },
    LastEvent {
        user: u8,
        client: u64,
    },
    PurgeEvents {
        before: i64,
    },
    /// A connection change between two different users.
    Connect {
        from: u8,
        to: u8,
        step: Step,
        at: i64,
    },
    Connection {
        from: u8,
        to: u8,
    },
    Connections {
        user: u8,
    },
    BlocksInvolving {
        user: u8,
    },
    ShareConversation {
        a: u8,
        b: u8,
    },
    /// A group; each member with whether they are an admin.
    CreateConversation {
        conversation: u8,
        creator: u8,
        members: Vec<(u8, bool)>,
        at: i64,
    },
    ChangeConversation {
        conversation: u8,
        change: Change,
        at: i64,
    },
    Conversation {
        conversation: u8,
    },
    Members {
        conversation: u8,
    },
    Roster {
        conversation: u8,
    },
    ConversationsOf {
        user: u8,
        after: Option<u8>,
        limit: usize,
    },
    /// A message from `sender`'s device `client` to every device on the roster
    /// but that one (and to one that does not exist); `refuse`: the plan
    /// delivers nothing.
    Post {
        conversation: u8,
        sender: u8,
        client: u64,
        at: i64,
        refuse: bool,
    },
}

/// A connection change, as the connections service makes them.
#[derive(Clone, Debug)]
pub enum Step {
    /// `from` asks `to`: both sides new (`sent` and `pending`); `to` is told.
    Request,
    /// `from` accepts `to`'s request, creating their 1:1 conversation with this id.
    Accept {
        /// Index of the conversation id.
        conversation: u8,
    },
    /// `from` blocks `to`, whose side must have the expected status (index into
    /// sent, pending, accepted, blocked; `None`: no side yet).
    Block {
        /// The status `from`'s side must have.
        expect: Option<u8>,
    },
    /// `from` withdraws their request; `to` is told.
    Cancel,
}

/// A change to a conversation.
#[derive(Clone, Debug)]
pub enum Change {
    /// Adds members (as members) up to `max`.
    AddMembers {
        /// Indexes of the users.
        members: Vec<u8>,
        /// The member limit.
        max: usize,
    },
    /// Removes a member.
    RemoveMember(u8),
    /// Gives a member a role.
    SetRole {
        /// Index of the user.
        user: u8,
        /// Admin or member.
        admin: bool,
    },
    /// Renames the conversation.
    Rename(u8),
    /// Sets the self-deleting timer.
    MessageTimer(Option<u64>),
    /// Sets the receipt mode.
    ReceiptMode(u8),
}

/// Random sequences of up to [`MAX_OPS`] operations.
pub fn ops() -> impl Strategy<Value = Vec<Op>> {
    vec(op(), 1..=MAX_OPS)
}

fn index(count: u8) -> std::ops::Range<u8> {
    0..count
}

fn device() -> std::ops::RangeInclusive<u64> {
    1..=4
}

fn time() -> std::ops::Range<i64> {
    0..10
}

fn prekey_ids() -> impl Strategy<Value = Vec<u16>> {
    vec(select(PREKEY_IDS.to_vec()), 0..4)
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::Request),
        index(2).prop_map(|conversation| Step::Accept { conversation }),
        ::proptest::option::of(index(4)).prop_map(|expect| Step::Block { expect }),
        Just(Step::Cancel),
    ]
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (vec(index(3), 1..3), 1usize..=3)
            .prop_map(|(members, max)| Change::AddMembers { members, max }),
        index(3).prop_map(Change::RemoveMember),
        (index(3), any::<bool>()).prop_map(|(user, admin)| Change::SetRole { user, admin }),
        index(2).prop_map(Change::Rename),
        select(vec![None, Some(60_000), Some(u64::MAX)]).prop_map(Change::MessageTimer),
        index(2).prop_map(Change::ReceiptMode),
    ]
}

/// One operation, writes weighted above reads.
fn op() -> impl Strategy<Value = Op> {
    use ::proptest::option::of;
    prop_oneof![
        // Accounts.
        1 => (index(3), index(3)).prop_map(|(email, tag)| Op::PutActivationCode { email, tag }),
        1 => index(3).prop_map(|email| Op::CountActivationTry { email }),
        1 => index(3).prop_map(|email| Op::ActivationCode { email }),
        4 => (index(3), index(3)).prop_map(|(user, email)| Op::CreateUser { user, email }),
        1 => index(3).prop_map(|user| Op::User { user }),
        1 => index(3).prop_map(|email| Op::UserByEmail { email }),
        1 => index(2).prop_map(|handle| Op::UserByHandle { handle }),
        2 => (index(3), index(2)).prop_map(|(user, handle)| Op::SetHandle { user, handle }),
        2 => (index(3), of(index(2)), of(of(index(2))), time()).prop_map(
            |(user, name, picture, at)| Op::UpdateProfile { user, name, picture, at }
        ),
        1 => (index(3), index(3)).prop_map(|(user, tag)| Op::ChangePassword { user, tag }),
        1 => (index(3), of(index(3)))
            .prop_map(|(user, bundle)| Op::SetRecoveryBundle { user, bundle }),
        1 => index(3).prop_map(|user| Op::RecoveryBundle { user }),
        1 => index(3).prop_map(|user| Op::DeleteUser { user }),
        3 => (index(3), index(3), any::<bool>(), time(), of(index(2))).prop_map(
            |(user, cookie, persistent, at, label)| Op::AddCookie {
                user,
                cookie,
                persistent,
                at,
                label,
            }
        ),
        1 => (index(3), index(3)).prop_map(|(user, cookie)| Op::RemoveCookie { user, cookie }),
        1 => (index(3), index(2))
            .prop_map(|(user, label)| Op::RemoveCookiesByLabel { user, label }),
        1 => index(3).prop_map(|user| Op::Cookies { user }),
        2 => (index(3), index(3), time(), time()).prop_map(|(user, tag, expires_at, now)| {
            Op::StartPasswordReset {
                user,
                tag,
                expires_at,
                now,
            }
        }),
        1 => index(3).prop_map(|user| Op::CountPasswordResetTry { user }),
        1 => (index(3), index(3)).prop_map(|(user, by)| Op::CompletePasswordReset { user, by }),
        1 => index(3).prop_map(|user| Op::DeletePasswordReset { user }),
        1 => index(3).prop_map(|user| Op::PasswordReset { user }),
        // Devices.
        5 => (index(3), device(), any::<bool>(), time(), prekey_ids(), of(index(2))).prop_map(
            |(user, client, temporary, at, prekeys, cookie_label)| Op::AddClient {
                user,
                client,
                temporary,
                at,
                prekeys,
                cookie_label,
            }
        ),
        2 => (index(3), device(), time())
            .prop_map(|(user, client, at)| Op::DeleteClient { user, client, at }),
        1 => index(3).prop_map(|user| Op::Clients { user }),
        2 => (index(3), device(), prekey_ids())
            .prop_map(|(user, client, prekeys)| Op::AddPrekeys { user, client, prekeys }),
        3 => (index(3), device(), any::<bool>())
            .prop_map(|(user, client, one_time)| Op::ClaimPrekey { user, client, one_time }),
        1 => (index(3), device()).prop_map(|(user, client)| Op::CountPrekeys { user, client }),
        1 => (index(3), device(), 0u64..6).prop_map(|(user, client, generation)| {
            Op::RaiseGeneration {
                user,
                client,
                generation,
            }
        }),
        1 => (index(3), device(), of(index(2)))
            .prop_map(|(user, client, url)| Op::SetPushEndpoint { user, client, url }),
        1 => (index(3), device()).prop_map(|(user, client)| Op::PushEndpoint { user, client }),
        // Queues.
        4 => (index(3), device(), of(0u64..8), 1usize..=3).prop_map(
            |(user, client, since, limit)| Op::Events {
                user,
                client,
                since,
                limit,
            }
        ),
        1 => (index(3), device()).prop_map(|(user, client)| Op::LastEvent { user, client }),
        2 => (0i64..12).prop_map(|before| Op::PurgeEvents { before }),
        // Connections: `to` is never `from`.
        4 => (index(3), 1u8..3, step(), time()).prop_map(|(from, other, step, at)| Op::Connect {
            from,
            to: (from + other) % 3,
            step,
            at,
        }),
        1 => (index(3), index(3)).prop_map(|(from, to)| Op::Connection { from, to }),
        1 => index(3).prop_map(|user| Op::Connections { user }),
        1 => index(3).prop_map(|user| Op::BlocksInvolving { user }),
        1 => (index(3), index(3)).prop_map(|(a, b)| Op::ShareConversation { a, b }),
        // Conversations.
        3 => (index(2), index(3), vec((index(3), any::<bool>()), 0..4), time()).prop_map(
            |(conversation, creator, members, at)| Op::CreateConversation {
                conversation,
                creator,
                members,
                at,
            }
        ),
        4 => (index(2), change(), time()).prop_map(|(conversation, change, at)| {
            Op::ChangeConversation {
                conversation,
                change,
                at,
            }
        }),
        1 => index(2).prop_map(|conversation| Op::Conversation { conversation }),
        1 => index(2).prop_map(|conversation| Op::Members { conversation }),
        1 => index(2).prop_map(|conversation| Op::Roster { conversation }),
        1 => (index(3), of(index(2)), 1usize..=3)
            .prop_map(|(user, after, limit)| Op::ConversationsOf { user, after, limit }),
        5 => (index(2), index(3), device(), time(), ::proptest::bool::weighted(0.1)).prop_map(
            |(conversation, sender, client, at, refuse)| Op::Post {
                conversation,
                sender,
                client,
                at,
                refuse,
            }
        ),
    ]
}

/// Every read of the whole world, done after the sequence.
pub(super) fn observations() -> Vec<Op> {
    let mut ops = Vec::new();
    for email in 0..3 {
        ops.push(Op::ActivationCode { email });
        ops.push(Op::UserByEmail { email });
    }
    for handle in 0..2 {
        ops.push(Op::UserByHandle { handle });
    }
    for user in 0..3 {
        ops.extend([
            Op::User { user },
            Op::RecoveryBundle { user },
            Op::Cookies { user },
            Op::PasswordReset { user },
            Op::Clients { user },
            Op::Connections { user },
            Op::BlocksInvolving { user },
            Op::ConversationsOf {
                user,
                after: None,
                limit: 10,
            },
        ]);
        for client in device() {
            ops.extend([
                Op::Events {
                    user,
                    client,
                    since: None,
                    limit: 1000,
                },
                Op::LastEvent { user, client },
                Op::CountPrekeys { user, client },
                Op::PushEndpoint { user, client },
            ]);
        }
        for other in 0..3 {
            ops.push(Op::Connection {
                from: user,
                to: other,
            });
            ops.push(Op::ShareConversation { a: user, b: other });
        }
    }
    for conversation in 0..2 {
        ops.extend([
            Op::Conversation { conversation },
            Op::Members { conversation },
            Op::Roster { conversation },
        ]);
    }
    ops
}

pub(super) fn pick<T: Copy>(items: &[T], i: u8) -> T {
    items[usize::from(i) % items.len()]
}

pub(super) fn user_id(i: u8) -> UserId {
    pick(&USERS, i)
}

pub(super) fn conversation_id(i: u8) -> ConversationId {
    pick(&CONVERSATIONS, i)
}

pub(super) fn reset_key(user: u8) -> String {
    format!("reset-{}", usize::from(user) % USERS.len())
}
