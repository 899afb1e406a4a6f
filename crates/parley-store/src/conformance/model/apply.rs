//! Applying an operation of the small world to a store, and its answer.

use std::sync::Arc;

use parley_api::{
    ClientClass, ClientId, ClientType, ConnectionStatus, ConversationId, ConversationKind,
    CookieKind, Role, UserId,
};

use super::world::{
    COOKIES, Change, EMAILS, GONE_DEVICE, HANDLES, LABELS, MAX_COOKIES_PER_KIND,
    MAX_PERMANENT_DEVICES, MAX_RESET_TRIES, Op, STATUSES, Step, USERS, conversation_id, pick,
    reset_key, user_id,
};
use super::{Answer, Refusal, Value};
use crate::{
    ClientRecord, CodeKind, ConnectionChange, ConnectionRecord, ConversationChange,
    ConversationRecord, Cookie, DeliveryPlan, MemberRecord, Notify, OneTimeCode, Outgoing,
    PrekeyRecord, ProfileUpdate, Roster, Store, StoreError, StoreResult, User,
};

fn notify(payload: &str, at: i64) -> Notify<'_> {
    Notify { payload, at }
}

fn unit((): ()) -> Value {
    Value::Unit
}

/// A store's result as an answer; `Err` with the message for a backend failure.
fn answer<T>(result: StoreResult<T>, value: impl FnOnce(T) -> Value) -> Result<Answer, String> {
    match result {
        Ok(v) => Ok(Ok(value(v))),
        Err(StoreError::Conflict(what)) => Ok(Err(Refusal::Conflict(what))),
        Err(StoreError::NotFound) => Ok(Err(Refusal::NotFound)),
        Err(StoreError::TooManyClients) => Ok(Err(Refusal::TooManyClients)),
        Err(StoreError::Limit(what)) => Ok(Err(Refusal::Limit(what))),
        Err(StoreError::Backend(e)) => Err(e),
    }
}

fn new_user(user: u8, email: u8) -> User {
    User {
        id: user_id(user),
        name: format!("user {}", usize::from(user) % USERS.len()),
        email: pick(&EMAILS, email).to_owned(),
        handle: None,
        password_hash: "hash".into(),
        accent_id: 0,
        locale: "en".into(),
        picture: None,
        created_at: 1,
    }
}

fn new_device(
    user: u8, client: u64, temporary: bool, at: i64, cookie_label: Option<u8>,
) -> ClientRecord {
    ClientRecord {
        user: user_id(user),
        id: ClientId(client),
        kind: if temporary {
            ClientType::Temporary
        } else {
            ClientType::Permanent
        },
        class: ClientClass::Desktop,
        model: None,
        label: Some(format!("device {client}")),
        cookie_label: cookie_label.map(|l| pick(&LABELS, l).to_owned()),
        created_at: at,
        trust: None,
    }
}

/// Prekeys with keys naming the step that uploaded them, so a replaced key shows.
fn new_prekeys(ids: &[u16], step: usize) -> Vec<PrekeyRecord> {
    ids.iter()
        .map(|id| PrekeyRecord {
            id: *id,
            key: format!("key-{id}-{step}"),
        })
        .collect()
}

fn connection_change(from: u8, to: u8, step: &Step, at: i64, payload: &str) -> ConnectionChange {
    use ConnectionStatus::{Accepted, Blocked, Cancelled, Pending, Sent};
    let (a, b) = (user_id(from), user_id(to));
    let side = |from: UserId,
                to: UserId,
                status: ConnectionStatus,
                conversation: Option<ConversationId>| ConnectionRecord {
        from,
        to,
        status,
        conversation,
        updated_at: at,
    };
    match step {
        Step::Request => ConnectionChange {
            sides: vec![
                (side(a, b, Sent, None), None),
                (side(b, a, Pending, None), None),
            ],
            conversation: None,
            notify: vec![(b, payload.to_owned())],
            at,
        },
        Step::Accept { conversation } => {
            let id = conversation_id(*conversation);
            let one2one = ConversationRecord {
                id,
                kind: ConversationKind::One2one,
                name: None,
                creator: a,
                message_timer: None,
                receipt_mode: 0,
                created_at: at,
            };
            let members = vec![
                MemberRecord {
                    user: a,
                    role: Role::Admin,
                },
                MemberRecord {
                    user: b,
                    role: Role::Admin,
                },
            ];
            ConnectionChange {
                sides: vec![
                    (side(a, b, Accepted, Some(id)), Some(Pending)),
                    (side(b, a, Accepted, Some(id)), Some(Sent)),
                ],
                conversation: Some((one2one, members)),
                notify: vec![(a, payload.to_owned()), (b, payload.to_owned())],
                at,
            }
        }
        Step::Block { expect } => ConnectionChange {
            sides: vec![(
                side(a, b, Blocked, None),
                expect.map(|e| pick(&STATUSES, e)),
            )],
            conversation: None,
            notify: Vec::new(),
            at,
        },
        Step::Cancel => ConnectionChange {
            sides: vec![
                (side(a, b, Cancelled, None), Some(Sent)),
                (side(b, a, Cancelled, None), Some(Pending)),
            ],
            conversation: None,
            notify: vec![(b, payload.to_owned())],
            at,
        },
    }
}

fn conversation_change(change: &Change) -> ConversationChange {
    match change {
        Change::AddMembers { members, max } => ConversationChange::AddMembers {
            members: members
                .iter()
                .map(|u| MemberRecord {
                    user: user_id(*u),
                    role: Role::Member,
                })
                .collect(),
            max: *max,
        },
        Change::RemoveMember(u) => ConversationChange::RemoveMember(user_id(*u)),
        Change::SetRole { user, admin } => ConversationChange::SetRole(MemberRecord {
            user: user_id(*user),
            role: if *admin { Role::Admin } else { Role::Member },
        }),
        Change::Rename(n) => ConversationChange::Rename(format!("name {n}")),
        Change::MessageTimer(ms) => ConversationChange::MessageTimer(*ms),
        Change::ReceiptMode(mode) => ConversationChange::ReceiptMode(*mode),
    }
}

/// `payload` to every device on the roster but the sender's, and to a device
/// that does not exist (it gets none); nothing at all if `refuse`.
fn delivery_plan(sender: UserId, device: ClientId, payload: String, refuse: bool) -> DeliveryPlan {
    Arc::new(move |roster: &Roster| {
        if refuse {
            return None;
        }
        let mut out: Vec<Outgoing> = roster
            .members
            .iter()
            .flat_map(|(user, devices)| devices.iter().map(move |c| (*user, *c)))
            .filter(|&(user, client)| !(user == sender && client == device))
            .map(|(user, client)| Outgoing {
                user,
                client,
                payload: payload.clone(),
            })
            .collect();
        out.push(Outgoing {
            user: sender,
            client: ClientId(GONE_DEVICE),
            payload: payload.clone(),
        });
        Some(out)
    })
}

/// Applies one operation (the `step`th) to a store.
pub(super) async fn apply(s: &dyn Store, step: usize, op: &Op) -> Result<Answer, String> {
    let payload = format!(r#"{{"step":{step}}}"#);
    match op {
        Op::PutActivationCode { email, tag } => {
            let code = OneTimeCode {
                key: pick(&EMAILS, *email).to_owned(),
                user: None,
                code_hash: vec![*tag; 4],
                expires_at: 100,
                tries: 0,
            };
            answer(s.put_activation_code(&code).await, unit)
        }
        Op::CountActivationTry { email } => answer(
            s.count_code_try(CodeKind::Activation, pick(&EMAILS, *email))
                .await,
            Value::Tries,
        ),
        Op::ActivationCode { email } => answer(
            s.one_time_code(CodeKind::Activation, pick(&EMAILS, *email))
                .await,
            Value::Code,
        ),
        Op::CreateUser { user, email } => {
            answer(s.create_user(&new_user(*user, *email)).await, unit)
        }
        Op::User { user } => answer(s.user(user_id(*user)).await, Value::User),
        Op::UserByEmail { email } => {
            answer(s.user_by_email(pick(&EMAILS, *email)).await, Value::User)
        }
        Op::UserByHandle { handle } => {
            answer(s.user_by_handle(pick(&HANDLES, *handle)).await, Value::User)
        }
        Op::SetHandle { user, handle } => answer(
            s.set_handle(user_id(*user), pick(&HANDLES, *handle)).await,
            unit,
        ),
        Op::UpdateProfile {
            user,
            name,
            picture,
            at,
        } => {
            let update = ProfileUpdate {
                name: name.map(|n| format!("name {n}")),
                accent_id: None,
                locale: None,
                picture: picture.map(|p| p.map(|a| format!("asset-{a}"))),
            };
            answer(
                s.update_profile(user_id(*user), &update, notify(&payload, *at))
                    .await,
                unit,
            )
        }
        Op::ChangePassword { user, tag } => answer(
            s.change_password(user_id(*user), &format!("hash-{tag}"))
                .await,
            unit,
        ),
        Op::SetRecoveryBundle { user, bundle } => {
            let bundle = bundle.map(|b| vec![b; 3]);
            answer(
                s.set_recovery_bundle(user_id(*user), bundle.as_deref())
                    .await,
                unit,
            )
        }
        Op::RecoveryBundle { user } => {
            answer(s.recovery_bundle(user_id(*user)).await, Value::Bundle)
        }
        Op::DeleteUser { user } => answer(s.delete_user(user_id(*user)).await, unit),
        Op::AddCookie {
            user,
            cookie,
            persistent,
            at,
            label,
        } => {
            let cookie = Cookie {
                id: pick(&COOKIES, *cookie).to_owned(),
                user: user_id(*user),
                label: label.map(|l| pick(&LABELS, l).to_owned()),
                kind: if *persistent {
                    CookieKind::Persistent
                } else {
                    CookieKind::Session
                },
                created_at: *at,
                expires_at: *at + 100,
            };
            answer(s.add_cookie(&cookie, MAX_COOKIES_PER_KIND).await, unit)
        }
        Op::RemoveCookie { user, cookie } => answer(
            s.remove_cookie(user_id(*user), pick(&COOKIES, *cookie))
                .await,
            unit,
        ),
        Op::RemoveCookiesByLabel { user, label } => answer(
            s.remove_cookies_by_label(user_id(*user), &[pick(&LABELS, *label).to_owned()])
                .await,
            Value::Count,
        ),
        Op::Cookies { user } => answer(s.cookies(user_id(*user)).await, Value::Cookies),
        Op::StartPasswordReset {
            user,
            tag,
            expires_at,
            now,
        } => {
            let reset = OneTimeCode {
                key: reset_key(*user),
                user: Some(user_id(*user)),
                code_hash: vec![*tag; 4],
                expires_at: *expires_at,
                tries: 0,
            };
            answer(
                s.start_password_reset(&reset, *now, MAX_RESET_TRIES).await,
                Value::Bool,
            )
        }
        Op::CountPasswordResetTry { user } => answer(
            s.count_code_try(CodeKind::PasswordReset, &reset_key(*user))
                .await,
            Value::Tries,
        ),
        Op::CompletePasswordReset { user, by } => answer(
            s.complete_password_reset(&reset_key(*user), user_id(*by), "reset-hash")
                .await,
            unit,
        ),
        Op::DeletePasswordReset { user } => answer(
            s.delete_code(CodeKind::PasswordReset, &reset_key(*user))
                .await,
            unit,
        ),
        Op::PasswordReset { user } => answer(
            s.one_time_code(CodeKind::PasswordReset, &reset_key(*user))
                .await,
            Value::Code,
        ),
        Op::AddClient {
            user,
            client,
            temporary,
            at,
            prekeys,
            cookie_label,
        } => {
            let device = new_device(*user, *client, *temporary, *at, *cookie_label);
            answer(
                s.add_client(
                    &device,
                    &new_prekeys(prekeys, step),
                    MAX_PERMANENT_DEVICES,
                    notify(&payload, *at),
                )
                .await,
                Value::Added,
            )
        }
        Op::DeleteClient { user, client, at } => answer(
            s.delete_client(user_id(*user), ClientId(*client), notify(&payload, *at))
                .await,
            unit,
        ),
        Op::Clients { user } => answer(s.clients(user_id(*user)).await, Value::Clients),
        Op::AddPrekeys {
            user,
            client,
            prekeys,
        } => answer(
            s.add_prekeys(
                user_id(*user),
                ClientId(*client),
                &new_prekeys(prekeys, step),
            )
            .await,
            unit,
        ),
        Op::ClaimPrekey {
            user,
            client,
            one_time,
        } => answer(
            s.claim_prekey(user_id(*user), ClientId(*client), *one_time)
                .await,
            Value::Prekey,
        ),
        Op::CountPrekeys { user, client } => answer(
            s.count_prekeys(user_id(*user), ClientId(*client)).await,
            Value::Count,
        ),
        Op::RaiseGeneration {
            user,
            client,
            generation,
        } => answer(
            s.raise_generation(user_id(*user), ClientId(*client), *generation)
                .await,
            Value::Generation,
        ),
        Op::SetPushEndpoint { user, client, url } => {
            let url = url.map(|u| format!("https://push.example/{u}"));
            answer(
                s.set_push_endpoint(user_id(*user), ClientId(*client), url.as_deref())
                    .await,
                unit,
            )
        }
        Op::PushEndpoint { user, client } => answer(
            s.push_endpoints(&[(user_id(*user), ClientId(*client))])
                .await
                .map(|found| found.into_iter().next().map(|(_, _, url)| url)),
            Value::Endpoint,
        ),
        Op::Events {
            user,
            client,
            since,
            limit,
        } => answer(
            s.events(user_id(*user), ClientId(*client), *since, *limit)
                .await,
            Value::Page,
        ),
        Op::LastEvent { user, client } => answer(
            s.last_event(user_id(*user), ClientId(*client)).await,
            Value::Event,
        ),
        Op::PurgeEvents { before } => answer(s.purge_events(*before).await, Value::Count),
        Op::Connect { from, to, step, at } => {
            let change = connection_change(*from, *to, step, *at, &payload);
            answer(s.change_connection(&change).await, unit)
        }
        Op::Connection { from, to } => answer(
            s.connection(user_id(*from), user_id(*to)).await,
            Value::Connection,
        ),
        Op::Connections { user } => answer(s.connections(user_id(*user)).await, Value::Connections),
        Op::BlocksInvolving { user } => {
            // The trait leaves the order open.
            answer(s.blocks_involving(user_id(*user)).await, |mut ids| {
                ids.sort();
                Value::Users(ids)
            })
        }
        Op::ShareConversation { a, b } => answer(
            s.share_conversation(user_id(*a), user_id(*b)).await,
            Value::Bool,
        ),
        Op::CreateConversation {
            conversation,
            creator,
            members,
            at,
        } => {
            let record = ConversationRecord {
                id: conversation_id(*conversation),
                kind: ConversationKind::Group,
                name: Some("group".into()),
                creator: user_id(*creator),
                message_timer: None,
                receipt_mode: 0,
                created_at: *at,
            };
            let members: Vec<MemberRecord> = members
                .iter()
                .map(|(user, admin)| MemberRecord {
                    user: user_id(*user),
                    role: if *admin { Role::Admin } else { Role::Member },
                })
                .collect();
            answer(
                s.create_conversation(&record, &members, notify(&payload, *at))
                    .await,
                unit,
            )
        }
        Op::ChangeConversation {
            conversation,
            change,
            at,
        } => answer(
            s.change_conversation(
                conversation_id(*conversation),
                &conversation_change(change),
                notify(&payload, *at),
            )
            .await,
            unit,
        ),
        Op::Conversation { conversation } => answer(
            s.conversation(conversation_id(*conversation)).await,
            Value::Conversation,
        ),
        Op::Members { conversation } => answer(
            s.members(conversation_id(*conversation)).await,
            Value::Members,
        ),
        Op::Roster { conversation } => answer(
            s.roster(conversation_id(*conversation)).await,
            Value::Roster,
        ),
        Op::ConversationsOf { user, after, limit } => answer(
            s.conversations_of(user_id(*user), after.map(conversation_id), *limit)
                .await,
            Value::Conversations,
        ),
        Op::Post {
            conversation,
            sender,
            client,
            at,
            refuse,
        } => {
            let plan = delivery_plan(user_id(*sender), ClientId(*client), payload, *refuse);
            answer(
                s.post(conversation_id(*conversation), *at, plan).await,
                Value::Posted,
            )
        }
    }
}
