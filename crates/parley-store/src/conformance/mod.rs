//! The one test story every storage backend must pass.
//!
//! Each backend's tests expand [`conformance_tests!`](crate::conformance_tests):
//! one test per scenario, each on a fresh, empty store. The story uses only the
//! store traits, so the same expectations hold for every backend. They also
//! expand [`model_tests!`](crate::model_tests): the [`model`]-based test, random
//! sequences of operations whose every answer must be the reference model's
//! ([`crate::memory::MemoryStore`]).

use std::collections::HashSet;
use std::sync::Arc;

use parley_api::{
    ClientClass, ClientId, ClientType, ConnectionStatus, ConversationId, ConversationKind,
    CookieKind, Role, UserId,
};

use crate::{
    ClientRecord, CodeKind, ConnectionChange, ConnectionRecord, ConversationChange,
    ConversationRecord, Cookie, KeyPackageRecord, MemberRecord, Notify, OneTimeCode, Outgoing,
    PrekeyRecord, ProfileUpdate, Roster, Store, StoreError, User,
};

mod accounts;
mod connections;
mod conversations;
mod devices;
mod groups;
mod mls;
pub mod model;
mod queues;

use accounts::*;
use connections::*;
use conversations::*;
use devices::*;
use groups::*;
use mls::*;
use queues::*;

/// A notification payload for changes whose events the scenario does not look at.
const QUIET: Notify<'static> = Notify {
    payload: "{}",
    at: 1_700_000_000,
};

/// A fresh, empty store for one scenario, with whatever must live as long as
/// it (a temporary directory).
#[derive(Debug)]
pub struct Fresh {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Kept until the scenario ends.
    pub keep: Box<dyn std::any::Any + Send>,
}

/// Every scenario's name, in the order they were written.
pub const SCENARIOS: &[&str] = &[
    "activation_codes",
    "users",
    "cookies",
    "password_resets",
    "concurrent_code_tries",
    "clients",
    "prekey_pool",
    "concurrent_prekey_claims",
    "concurrent_permanent_clients",
    "event_queues",
    "connections",
    "conversations",
    "deliveries",
    "concurrent_deliveries",
    "deliveries_follow_membership",
    "fan_outs_never_deadlock",
    "purges_race_deliveries",
    "push_endpoints",
    "mls_directory",
    "last_resort_key_packages",
    "concurrent_key_package_claims",
    "concurrent_key_package_uploads",
    "trust_chain",
    "mls_groups",
    "concurrent_group_commits",
    "group_proposals",
    "group_migration",
    "subconversations",
    "token_signing_seed",
];

/// Runs one scenario against `store`.
///
/// # Panics
/// When the backend does not do what the scenario expects, or `name` is not
/// one of [`SCENARIOS`].
pub async fn run_one(name: &str, store: Arc<dyn Store>) {
    match name {
        "activation_codes" => activation_codes(&*store).await,
        "users" => users(&*store).await,
        "cookies" => cookies(&*store).await,
        "password_resets" => password_resets(&*store).await,
        "concurrent_code_tries" => concurrent_code_tries(store).await,
        "clients" => clients(&*store).await,
        "prekey_pool" => prekey_pool(&*store).await,
        "concurrent_prekey_claims" => concurrent_prekey_claims(store).await,
        "concurrent_permanent_clients" => concurrent_permanent_clients(store).await,
        "event_queues" => event_queues(&*store).await,
        "connections" => connections(&*store).await,
        "conversations" => conversations(&*store).await,
        "deliveries" => deliveries(&*store).await,
        "concurrent_deliveries" => concurrent_deliveries(store).await,
        "deliveries_follow_membership" => deliveries_follow_membership(store).await,
        "fan_outs_never_deadlock" => fan_outs_never_deadlock(store).await,
        "purges_race_deliveries" => purges_race_deliveries(store).await,
        "push_endpoints" => push_endpoints(&*store).await,
        "mls_directory" => mls_directory(&*store).await,
        "last_resort_key_packages" => last_resort_key_packages(&*store).await,
        "concurrent_key_package_claims" => concurrent_key_package_claims(store).await,
        "concurrent_key_package_uploads" => concurrent_key_package_uploads(store).await,
        "trust_chain" => trust_chain(&*store).await,
        "mls_groups" => mls_groups(&*store).await,
        "concurrent_group_commits" => concurrent_group_commits(store).await,
        "group_proposals" => group_proposals(&*store).await,
        "group_migration" => group_migration(&*store).await,
        "subconversations" => subconversations(&*store).await,
        "token_signing_seed" => token_signing_seed(&*store).await,
        other => panic!("no scenario {other}"),
    }
}

/// One `#[tokio::test]` per scenario, each on a fresh store from `$open` (an
/// async function giving `Option<Fresh>`; `None` skips, after the function
/// has said why), so the first failure does not hide the rest. Also a test
/// that no scenario is left out.
#[macro_export]
macro_rules! conformance_tests {
    ($open:path) => {
        $crate::conformance_tests!(@each $open; activation_codes, users, cookies, password_resets, concurrent_code_tries, clients, prekey_pool, concurrent_prekey_claims, concurrent_permanent_clients, event_queues, connections, conversations, deliveries, concurrent_deliveries, deliveries_follow_membership, fan_outs_never_deadlock, purges_race_deliveries, push_endpoints, mls_directory, last_resort_key_packages, concurrent_key_package_claims, concurrent_key_package_uploads, trust_chain, mls_groups, concurrent_group_commits, group_proposals, group_migration, subconversations, token_signing_seed);
    };
    (@each $open:path; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if let Some(fresh) = $open().await {
                    $crate::conformance::run_one(stringify!($name), fresh.store).await;
                    drop(fresh.keep);
                }
            }
        )*

        #[test]
        fn every_scenario_has_a_test() {
            let listed: &[&str] = &[$(stringify!($name)),*];
            assert_eq!(listed, $crate::conformance::SCENARIOS);
        }
    };
}

/// One `#[test]`, `agrees_with_the_model`, running the model-based test
/// ([`model::run`]): proptest sequences of operations (256, or as many as
/// `PARLEY_MODEL_CASES` says), each on a fresh store from `$open` (the same
/// function as for [`conformance_tests!`](crate::conformance_tests): `None`
/// skips, after the function has said why) and a fresh reference model. The
/// backend needs no dependency of its own: the test builds its own runtime.
#[macro_export]
macro_rules! model_tests {
    ($open:path) => {
        #[test]
        fn agrees_with_the_model() {
            $crate::conformance::model::run($open);
        }
    };
}

fn user(email: &str) -> User {
    User {
        id: UserId::random(),
        name: "Test User".into(),
        email: email.into(),
        handle: None,
        password_hash: "14|8|1|salt|hash".into(),
        accent_id: 0,
        locale: "en".into(),
        picture: None,
        created_at: 1_700_000_000,
    }
}

fn client(user: &User, id: u64, kind: ClientType) -> ClientRecord {
    ClientRecord {
        user: user.id,
        id: ClientId(id),
        kind,
        class: ClientClass::Desktop,
        model: Some("model".into()),
        label: None,
        cookie_label: None,
        created_at: 1_700_000_000,
        trust: None,
    }
}

fn prekeys(ids: impl IntoIterator<Item = u16>) -> Vec<PrekeyRecord> {
    ids.into_iter()
        .map(|id| PrekeyRecord {
            id,
            key: format!("key-{id}"),
        })
        .collect()
}

fn cookie(u: &User, id: &str, kind: CookieKind, at: i64, label: Option<&str>) -> Cookie {
    Cookie {
        id: id.into(),
        user: u.id,
        label: label.map(Into::into),
        kind,
        created_at: at,
        expires_at: at + 1000,
    }
}

/// A user with permanent devices `ids`, each with an empty queue.
async fn user_with_devices(s: &dyn Store, email: &str, ids: &[u64]) -> User {
    let u = user(email);
    s.create_user(&u).await.expect("create");
    for id in ids {
        s.add_client(
            &client(&u, *id, ClientType::Permanent),
            &prekeys([65535]),
            7,
            QUIET,
        )
        .await
        .expect("device");
    }
    u
}

/// The payloads in a device's queue, oldest first, without the [`QUIET`] ones.
async fn payloads(s: &dyn Store, u: &User, client: u64) -> Vec<String> {
    s.events(u.id, ClientId(client), None, 1000)
        .await
        .expect("page")
        .expect("known device")
        .events
        .into_iter()
        .map(|e| e.payload)
        .filter(|p| p != QUIET.payload)
        .collect()
}

/// A delivery plan: `payload` to every device of every member on the roster.
fn to_everyone(payload: impl Into<String>) -> crate::DeliveryPlan {
    let payload: String = payload.into();
    Arc::new(move |r: &Roster| {
        Some(
            r.members
                .iter()
                .flat_map(|(u, cs)| cs.iter().map(move |c| (*u, *c)))
                .map(|(user, client)| Outgoing {
                    user,
                    client,
                    payload: payload.clone(),
                })
                .collect(),
        )
    })
}

/// A group the first of `users` creates with all of them as members.
async fn group_of(s: &dyn Store, users: &[&User]) -> ConversationRecord {
    let conv = group(users[0]);
    let members: Vec<_> = users
        .iter()
        .map(|u| MemberRecord {
            user: u.id,
            role: Role::Member,
        })
        .collect();
    s.create_conversation(&conv, &members, QUIET)
        .await
        .expect("create");
    conv
}

fn group(creator: &User) -> ConversationRecord {
    ConversationRecord {
        id: ConversationId::random(),
        kind: ConversationKind::Group,
        name: Some("group".into()),
        creator: creator.id,
        message_timer: None,
        receipt_mode: 0,
        created_at: 1_700_000_000,
    }
}
