//! The one test story every storage backend must pass.
//!
//! Each backend's tests call [`run`] with a fresh, empty store. The story uses only
//! the [`Store`] trait, so the same expectations hold for every backend.

use std::collections::HashSet;
use std::sync::Arc;

use parley_api::{
    ClientClass, ClientId, ClientType, ConnectionStatus, ConversationKind, CookieKind, Role, UserId,
};
use uuid::Uuid;

use crate::{
    ActivationCode, ClientRecord, ConnectionChange, ConnectionRecord, ConversationChange,
    ConversationRecord, Cookie, MemberRecord, Notify, Outgoing, PasswordReset, PrekeyRecord,
    ProfileUpdate, Roster, Store, StoreError, User,
};

/// A notification payload for changes whose events the scenario does not look at.
const QUIET: Notify<'static> = Notify {
    payload: "{}",
    at: 1_700_000_000,
};

/// Runs every scenario against `store`. Panics with the scenario's name on failure.
pub async fn run(store: Arc<dyn Store>) {
    activation_codes(&*store).await;
    users(&*store).await;
    cookies(&*store).await;
    password_resets(&*store).await;
    clients(&*store).await;
    prekey_pool(&*store).await;
    concurrent_prekey_claims(store.clone()).await;
    concurrent_permanent_clients(store.clone()).await;
    event_queues(&*store).await;
    connections(&*store).await;
    conversations(&*store).await;
    deliveries(&*store).await;
    concurrent_deliveries(store.clone()).await;
    deliveries_follow_membership(store.clone()).await;
    fan_outs_never_deadlock(store.clone()).await;
    push_endpoints(&*store).await;
    trust_chain(&*store).await;
}

fn user(email: &str) -> User {
    User {
        id: Uuid::new_v4(),
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

async fn activation_codes(s: &dyn Store) {
    let code = ActivationCode {
        email: "a@example.com".into(),
        code_hash: vec![1; 32],
        expires_at: 100,
        tries: 0,
    };
    s.put_activation_code(&code).await.expect("put");
    assert_eq!(
        s.activation_code("a@example.com").await.expect("get"),
        Some(code.clone())
    );
    assert_eq!(
        s.count_activation_try("a@example.com").await.expect("fail"),
        1
    );
    assert_eq!(
        s.count_activation_try("a@example.com").await.expect("fail"),
        2
    );
    let newer = ActivationCode {
        code_hash: vec![2; 32],
        ..code.clone()
    };
    s.put_activation_code(&newer).await.expect("replace");
    let got = s
        .activation_code("a@example.com")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        (got.code_hash, got.tries),
        (vec![2; 32], 0),
        "a new code replaces the old"
    );
    s.delete_activation_code("a@example.com")
        .await
        .expect("delete");
    assert_eq!(s.activation_code("a@example.com").await.expect("get"), None);
    assert_eq!(
        s.activation_code("nobody@example.com").await.expect("get"),
        None
    );
}

async fn users(s: &dyn Store) {
    let code = ActivationCode {
        email: "u@example.com".into(),
        code_hash: vec![1; 32],
        expires_at: 100,
        tries: 0,
    };
    s.put_activation_code(&code).await.expect("put code");
    let u = user("u@example.com");
    s.create_user(&u).await.expect("create");
    assert_eq!(
        s.activation_code("u@example.com").await.expect("get"),
        None,
        "code consumed"
    );
    assert_eq!(s.user(u.id).await.expect("get"), Some(u.clone()));
    assert_eq!(
        s.user_by_email("u@example.com").await.expect("get"),
        Some(u.clone())
    );
    let dup = user("u@example.com");
    assert!(matches!(
        s.create_user(&dup).await,
        Err(StoreError::Conflict("email"))
    ));
    assert_eq!(
        s.user(dup.id).await.expect("get"),
        None,
        "the refused user was not stored"
    );

    s.update_profile(
        u.id,
        &ProfileUpdate {
            name: Some("New Name".into()),
            picture: Some(Some("asset-1".into())),
            ..ProfileUpdate::default()
        },
        QUIET,
    )
    .await
    .expect("update");
    let got = s.user(u.id).await.expect("get").expect("present");
    assert_eq!(
        (got.name.as_str(), got.picture.as_deref()),
        ("New Name", Some("asset-1"))
    );
    assert_eq!(got.locale, "en", "untouched fields stay");
    assert!(matches!(
        s.update_profile(Uuid::new_v4(), &ProfileUpdate::default(), QUIET)
            .await,
        Err(StoreError::NotFound)
    ));

    s.set_handle(u.id, "alice").await.expect("handle");
    assert_eq!(
        s.user_by_handle("alice").await.expect("get").map(|u| u.id),
        Some(u.id)
    );
    s.set_handle(u.id, "alice")
        .await
        .expect("setting your own handle again is fine");
    let other = user("other@example.com");
    s.create_user(&other).await.expect("create");
    assert!(matches!(
        s.set_handle(other.id, "alice").await,
        Err(StoreError::Conflict("handle"))
    ));
    s.set_password(other.id, "new-hash")
        .await
        .expect("password");
    assert_eq!(
        s.user(other.id)
            .await
            .expect("get")
            .expect("present")
            .password_hash,
        "new-hash"
    );

    // Deleting a user removes everything of theirs.
    s.add_client(
        &client(&other, 1, ClientType::Permanent),
        &prekeys([1, 65535]),
        7,
        QUIET,
    )
    .await
    .expect("client");
    s.add_cookie(&cookie(&other, "c1", CookieKind::Session, 1, None), 32)
        .await
        .expect("cookie");
    s.delete_user(other.id).await.expect("delete");
    assert_eq!(s.user(other.id).await.expect("get"), None);
    assert!(s.clients(other.id).await.expect("clients").is_empty());
    assert!(s.cookies(other.id).await.expect("cookies").is_empty());
    assert_eq!(
        s.claim_prekey(other.id, ClientId(1)).await.expect("claim"),
        None
    );
    assert_eq!(
        s.user_by_email("other@example.com").await.expect("get"),
        None
    );
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

async fn cookies(s: &dyn Store) {
    let u = user("cookies@example.com");
    s.create_user(&u).await.expect("create");
    for i in 0..5 {
        let c = cookie(
            &u,
            &format!("p{i}"),
            CookieKind::Persistent,
            i,
            Some("laptop"),
        );
        s.add_cookie(&c, 3).await.expect("add");
    }
    s.add_cookie(&cookie(&u, "s0", CookieKind::Session, 10, Some("phone")), 3)
        .await
        .expect("add");
    let ids: Vec<String> = s
        .cookies(u.id)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        ids,
        ["s0", "p4", "p3", "p2"],
        "newest first; oldest persistent ones dropped"
    );
    assert!(s.cookie(u.id, "p0").await.expect("get").is_none());
    assert_eq!(
        s.cookie(u.id, "p4").await.expect("get").map(|c| c.kind),
        Some(CookieKind::Persistent)
    );
    s.remove_cookie(u.id, "p4").await.expect("remove");
    assert!(s.cookie(u.id, "p4").await.expect("get").is_none());
    let removed = s
        .remove_cookies_by_label(u.id, &["laptop".into()])
        .await
        .expect("by label");
    assert_eq!(removed, 2);
    let ids: Vec<String> = s
        .cookies(u.id)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["s0"]);
}

async fn password_resets(s: &dyn Store) {
    let u = user("reset@example.com");
    s.create_user(&u).await.expect("create");
    s.add_cookie(&cookie(&u, "c", CookieKind::Persistent, 1, None), 32)
        .await
        .expect("cookie");
    let reset = PasswordReset {
        key: "key-1".into(),
        user: u.id,
        code_hash: vec![3; 32],
        expires_at: 500,
        tries: 0,
    };
    assert!(s.start_password_reset(&reset, 100, 3).await.expect("put"));
    assert_eq!(
        s.password_reset("key-1").await.expect("get"),
        Some(reset.clone())
    );
    assert_eq!(s.count_password_reset_try("key-1").await.expect("fail"), 1);
    // A second request while the first is live changes nothing: not the
    // code, not the tries.
    let second = PasswordReset {
        code_hash: vec![4; 32],
        ..reset.clone()
    };
    assert!(!s.start_password_reset(&second, 100, 3).await.expect("kept"));
    let kept = s
        .password_reset("key-1")
        .await
        .expect("get")
        .expect("there");
    assert_eq!((kept.code_hash, kept.tries), (vec![3; 32], 1));
    // Once its tries are used up, or it expired, a new one replaces it.
    s.count_password_reset_try("key-1").await.expect("try");
    s.count_password_reset_try("key-1").await.expect("try");
    assert!(
        s.start_password_reset(&second, 100, 3)
            .await
            .expect("replace")
    );
    let replaced = s
        .password_reset("key-1")
        .await
        .expect("get")
        .expect("there");
    assert_eq!((replaced.code_hash, replaced.tries), (vec![4; 32], 0));
    assert!(!s.start_password_reset(&reset, 499, 3).await.expect("live"));
    assert!(
        s.start_password_reset(&reset, 500, 3)
            .await
            .expect("expired")
    );
    s.complete_password_reset("key-1", u.id, "reset-hash")
        .await
        .expect("complete");
    assert_eq!(s.password_reset("key-1").await.expect("get"), None);
    assert_eq!(
        s.user(u.id)
            .await
            .expect("get")
            .expect("present")
            .password_hash,
        "reset-hash"
    );
    assert!(
        s.cookies(u.id).await.expect("cookies").is_empty(),
        "every cookie dropped"
    );
    assert!(s.start_password_reset(&reset, 100, 3).await.expect("put"));
    s.delete_password_reset("key-1").await.expect("delete");
    assert_eq!(s.password_reset("key-1").await.expect("get"), None);
}

async fn clients(s: &dyn Store) {
    let u = user("clients@example.com");
    s.create_user(&u).await.expect("create");
    let c1 = client(&u, 1, ClientType::Permanent);
    assert_eq!(
        s.add_client(&c1, &prekeys([0, 1, 65535]), 2, QUIET)
            .await
            .expect("add"),
        Default::default()
    );
    s.add_client(
        &client(&u, 2, ClientType::Permanent),
        &prekeys([65535]),
        2,
        QUIET,
    )
    .await
    .expect("add");
    let third = client(&u, 3, ClientType::Permanent);
    assert!(matches!(
        s.add_client(&third, &prekeys([65535]), 2, QUIET).await,
        Err(StoreError::TooManyClients)
    ));
    assert_eq!(
        s.client(u.id, ClientId(3)).await.expect("get"),
        None,
        "nothing written"
    );
    assert_eq!(
        s.claim_prekey(u.id, ClientId(3)).await.expect("claim"),
        None
    );

    let t1 = client(&u, 10, ClientType::Temporary);
    assert_eq!(
        s.add_client(&t1, &prekeys([65535]), 2, QUIET)
            .await
            .expect("temp")
            .replaced,
        None
    );
    let t2 = client(&u, 11, ClientType::Temporary);
    let added = s
        .add_client(&t2, &prekeys([5, 65535]), 2, QUIET)
        .await
        .expect("temp");
    assert_eq!(
        added.replaced,
        Some(ClientId(10)),
        "a new temporary device replaces the old"
    );
    let ids: Vec<ClientId> = s
        .clients(u.id)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, [ClientId(1), ClientId(2), ClientId(11)]);
    assert_eq!(s.client(u.id, ClientId(1)).await.expect("get"), Some(c1));

    // Deleting a device drops its prekeys and the cookies with its cookie label.
    let mut labelled = client(&u, 20, ClientType::Temporary);
    labelled.cookie_label = Some("tablet".into());
    s.add_client(&labelled, &prekeys([1, 65535]), 2, QUIET)
        .await
        .expect("add");
    s.add_cookie(&cookie(&u, "t", CookieKind::Session, 1, Some("tablet")), 32)
        .await
        .expect("c");
    s.add_cookie(&cookie(&u, "o", CookieKind::Session, 2, Some("other")), 32)
        .await
        .expect("c");
    s.delete_client(u.id, ClientId(20), QUIET)
        .await
        .expect("delete");
    assert_eq!(s.client(u.id, ClientId(20)).await.expect("get"), None);
    assert_eq!(
        s.claim_prekey(u.id, ClientId(20)).await.expect("claim"),
        None
    );
    let left: Vec<String> = s
        .cookies(u.id)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(left, ["o"]);
    assert!(matches!(
        s.delete_client(u.id, ClientId(20), QUIET).await,
        Err(StoreError::NotFound)
    ));
}

async fn prekey_pool(s: &dyn Store) {
    let u = user("prekeys@example.com");
    s.create_user(&u).await.expect("create");
    s.add_client(
        &client(&u, 7, ClientType::Permanent),
        &prekeys([3, 1, 2, 65535]),
        7,
        QUIET,
    )
    .await
    .expect("add");
    assert_eq!(s.count_prekeys(u.id, ClientId(7)).await.expect("count"), 3);
    // The send generation only rises.
    for (raise, now) in [(5, 5), (3, 5), (0, 5), (9, 9)] {
        assert_eq!(
            s.raise_generation(u.id, ClientId(7), raise)
                .await
                .expect("raise"),
            Some(now)
        );
    }
    assert_eq!(
        s.raise_generation(u.id, ClientId(8), 1)
            .await
            .expect("unknown"),
        None
    );
    let mut claimed = Vec::new();
    for _ in 0..3 {
        claimed.push(
            s.claim_prekey(u.id, ClientId(7))
                .await
                .expect("claim")
                .expect("known")
                .id,
        );
    }
    claimed.sort_unstable();
    assert_eq!(claimed, [1, 2, 3], "each one-time prekey once");
    assert_eq!(s.count_prekeys(u.id, ClientId(7)).await.expect("count"), 0);
    for _ in 0..2 {
        let last = s
            .claim_prekey(u.id, ClientId(7))
            .await
            .expect("claim")
            .expect("known");
        assert_eq!(
            last,
            PrekeyRecord {
                id: 65535,
                key: "key-65535".into()
            }
        );
    }
    s.add_prekeys(u.id, ClientId(7), &prekeys([8, 9]))
        .await
        .expect("upload");
    s.add_prekeys(
        u.id,
        ClientId(7),
        &[PrekeyRecord {
            id: 9,
            key: "replaced".into(),
        }],
    )
    .await
    .expect("replace");
    assert_eq!(s.count_prekeys(u.id, ClientId(7)).await.expect("count"), 2);
    assert!(matches!(
        s.add_prekeys(u.id, ClientId(99), &prekeys([1])).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        s.claim_prekey(u.id, ClientId(99)).await.expect("claim"),
        None
    );
}

async fn concurrent_prekey_claims(s: Arc<dyn Store>) {
    const PREKEYS: u16 = 60;
    const CLAIMS: usize = 96;
    let u = user("race@example.com");
    s.create_user(&u).await.expect("create");
    let keys = prekeys((0..PREKEYS).chain([65535]));
    s.add_client(&client(&u, 1, ClientType::Permanent), &keys, 7, QUIET)
        .await
        .expect("add");
    let tasks: Vec<_> = (0..CLAIMS)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.claim_prekey(u.id, ClientId(1)).await })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut last_resort = 0;
    for t in tasks {
        let prekey = t
            .await
            .expect("task")
            .expect("claim")
            .expect("known device");
        if prekey.id == 65535 {
            last_resort += 1;
        } else {
            assert!(
                seen.insert(prekey.id),
                "prekey {} handed out twice",
                prekey.id
            );
        }
    }
    assert_eq!(
        seen.len(),
        PREKEYS as usize,
        "every one-time prekey claimed once"
    );
    assert_eq!(last_resort, CLAIMS - PREKEYS as usize);
}

async fn concurrent_permanent_clients(s: Arc<dyn Store>) {
    let u = user("many-devices@example.com");
    s.create_user(&u).await.expect("create");
    let tasks: Vec<_> = (0..12u64)
        .map(|i| {
            let s = s.clone();
            let c = client(&u, 100 + i, ClientType::Permanent);
            tokio::spawn(async move { s.add_client(&c, &prekeys([65535]), 7, QUIET).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => ok += 1,
            Err(StoreError::TooManyClients) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(ok, 7, "exactly the limit, however the adds interleave");
    assert_eq!(s.clients(u.id).await.expect("list").len(), 7);
}

async fn event_queues(s: &dyn Store) {
    let u = user("events@example.com");
    s.create_user(&u).await.expect("create");
    let at = |t: i64| Notify { payload: "", at: t };
    s.add_client(
        &client(&u, 1, ClientType::Permanent),
        &prekeys([65535]),
        7,
        at(10),
    )
    .await
    .expect("first device");
    assert!(
        s.events(u.id, ClientId(1), None, 10)
            .await
            .expect("page")
            .expect("known")
            .events
            .is_empty()
    );
    // A second device: the first is told, in the same transaction.
    let added = Notify {
        payload: r#"{"type":"user.client-add"}"#,
        at: 20,
    };
    s.add_client(
        &client(&u, 2, ClientType::Permanent),
        &prekeys([65535]),
        7,
        added,
    )
    .await
    .expect("second device");
    let page = s
        .events(u.id, ClientId(1), None, 10)
        .await
        .expect("page")
        .expect("known");
    assert_eq!(page.events.len(), 1);
    assert_eq!(
        (page.events[0].id, page.events[0].payload.as_str()),
        (1, added.payload)
    );
    assert!(
        s.events(u.id, ClientId(2), None, 10)
            .await
            .expect("page")
            .expect("known")
            .events
            .is_empty()
    );
    // Profile updates reach every device; ids count up per device.
    for t in 0..5 {
        let update = Notify {
            payload: r#"{"type":"user.update"}"#,
            at: 30 + t,
        };
        s.update_profile(u.id, &ProfileUpdate::default(), update)
            .await
            .expect("update");
    }
    let page = s
        .events(u.id, ClientId(1), Some(1), 3)
        .await
        .expect("page")
        .expect("known");
    assert_eq!(
        page.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    assert!(page.has_more && !page.lost);
    let page = s
        .events(u.id, ClientId(1), Some(4), 3)
        .await
        .expect("page")
        .expect("known");
    assert_eq!((page.events.len(), page.has_more), (2, false));
    assert_eq!(
        s.last_event(u.id, ClientId(2))
            .await
            .expect("last")
            .map(|e| e.id),
        Some(5)
    );
    assert_eq!(
        s.events(u.id, ClientId(9), None, 10).await.expect("page"),
        None,
        "unknown device"
    );
    // Purging old events: a cursor before them is "lost", with what is still there.
    // Device 1: the add (at 20) and the updates at 30-32; device 2: the updates at 30-32.
    assert_eq!(s.purge_events(33).await.expect("purge"), 4 + 3);
    let page = s
        .events(u.id, ClientId(1), Some(1), 10)
        .await
        .expect("page")
        .expect("known");
    assert!(page.lost);
    assert_eq!(page.events.iter().map(|e| e.id).collect::<Vec<_>>(), [5, 6]);
    let page = s
        .events(u.id, ClientId(1), Some(4), 10)
        .await
        .expect("page")
        .expect("known");
    assert!(!page.lost, "a cursor just before what remains lost nothing");
    let page = s
        .events(u.id, ClientId(1), Some(99), 10)
        .await
        .expect("page")
        .expect("known");
    assert!(page.lost, "a cursor from the future is not this queue's");
    // Removing a device tells the others and drops its queue.
    let removed = Notify {
        payload: r#"{"type":"user.client-remove"}"#,
        at: 40,
    };
    s.delete_client(u.id, ClientId(2), removed)
        .await
        .expect("delete");
    assert_eq!(
        s.last_event(u.id, ClientId(1))
            .await
            .expect("last")
            .map(|e| e.payload),
        Some(removed.payload.to_owned())
    );
    assert_eq!(
        s.events(u.id, ClientId(2), None, 10).await.expect("page"),
        None
    );
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

fn group(creator: &User) -> ConversationRecord {
    ConversationRecord {
        id: Uuid::new_v4(),
        kind: ConversationKind::Group,
        name: Some("group".into()),
        creator: creator.id,
        message_timer: None,
        receipt_mode: 0,
        created_at: 1_700_000_000,
    }
}

async fn connections(s: &dyn Store) {
    let a = user_with_devices(s, "conn-a@example.com", &[1]).await;
    let b = user_with_devices(s, "conn-b@example.com", &[1, 2]).await;
    let side = |from: &User, to: &User, status| ConnectionRecord {
        from: from.id,
        to: to.id,
        status,
        conversation: None,
        updated_at: 5,
    };
    let request = ConnectionChange {
        sides: vec![
            (side(&a, &b, ConnectionStatus::Sent), None),
            (side(&b, &a, ConnectionStatus::Pending), None),
        ],
        conversation: None,
        notify: vec![(b.id, "request".into())],
        at: 5,
    };
    s.change_connection(&request).await.expect("request");
    assert_eq!(
        s.connection(a.id, b.id).await.expect("read"),
        Some(side(&a, &b, ConnectionStatus::Sent))
    );
    assert_eq!(payloads(s, &b, 1).await, ["request"]);
    assert_eq!(payloads(s, &b, 2).await, ["request"]);
    assert!(payloads(s, &a, 1).await.is_empty());
    // The same change again: the sides are no longer as expected; nothing changes.
    assert!(matches!(
        s.change_connection(&request).await,
        Err(StoreError::Conflict("connection"))
    ));
    assert_eq!(payloads(s, &b, 1).await.len(), 1);
    // Acceptance creates the 1:1 conversation with the change.
    let one2one = ConversationRecord {
        kind: ConversationKind::One2one,
        name: None,
        ..group(&a)
    };
    let members = vec![
        MemberRecord {
            user: a.id,
            role: Role::Admin,
        },
        MemberRecord {
            user: b.id,
            role: Role::Admin,
        },
    ];
    let accepted = |from: &User, to: &User, before| {
        (
            ConnectionRecord {
                conversation: Some(one2one.id),
                ..side(from, to, ConnectionStatus::Accepted)
            },
            Some(before),
        )
    };
    s.change_connection(&ConnectionChange {
        sides: vec![
            accepted(&b, &a, ConnectionStatus::Pending),
            accepted(&a, &b, ConnectionStatus::Sent),
        ],
        conversation: Some((one2one.clone(), members.clone())),
        notify: vec![(a.id, "accepted".into()), (b.id, "accepted".into())],
        at: 6,
    })
    .await
    .expect("accept");
    assert_eq!(
        s.conversation(one2one.id).await.expect("read"),
        Some(one2one.clone())
    );
    assert_eq!(s.members(one2one.id).await.expect("members").len(), 2);
    assert_eq!(payloads(s, &a, 1).await, ["accepted"]);
    let mine = s.connections(b.id).await.expect("list");
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0].status, mine[0].conversation),
        (ConnectionStatus::Accepted, Some(one2one.id))
    );
    // Who shares a conversation, and who is blocked, both ways.
    let c = user_with_devices(s, "conn-c@example.com", &[1]).await;
    assert!(s.share_conversation(a.id, b.id).await.expect("read"));
    assert!(s.share_conversation(b.id, a.id).await.expect("read"));
    assert!(!s.share_conversation(a.id, c.id).await.expect("read"));
    assert!(s.blocks_involving(a.id).await.expect("read").is_empty());
    s.change_connection(&ConnectionChange {
        sides: vec![(
            ConnectionRecord {
                conversation: Some(one2one.id),
                ..side(&b, &a, ConnectionStatus::Blocked)
            },
            Some(ConnectionStatus::Accepted),
        )],
        conversation: None,
        notify: vec![],
        at: 7,
    })
    .await
    .expect("block");
    assert_eq!(
        s.blocks_involving(a.id).await.expect("read"),
        [b.id],
        "blocked"
    );
    assert_eq!(
        s.blocks_involving(b.id).await.expect("read"),
        [a.id],
        "blocker"
    );
    assert!(s.blocks_involving(c.id).await.expect("read").is_empty());
    // Deleting a user takes their connections and memberships with them.
    s.delete_user(a.id).await.expect("delete");
    assert!(s.connections(b.id).await.expect("list").is_empty());
    assert!(s.blocks_involving(b.id).await.expect("read").is_empty());
    assert!(!s.share_conversation(a.id, b.id).await.expect("read"));
    assert_eq!(
        s.roster(one2one.id).await.expect("roster"),
        Some(Roster {
            members: vec![(b.id, vec![ClientId(1), ClientId(2)])]
        })
    );
}

async fn conversations(s: &dyn Store) {
    let a = user_with_devices(s, "conv-a@example.com", &[1]).await;
    let b = user_with_devices(s, "conv-b@example.com", &[1]).await;
    let c = user_with_devices(s, "conv-c@example.com", &[1]).await;
    let conv = group(&a);
    let event = |payload| Notify { payload, at: 7 };
    s.create_conversation(
        &conv,
        &[
            MemberRecord {
                user: a.id,
                role: Role::Admin,
            },
            MemberRecord {
                user: b.id,
                role: Role::Member,
            },
        ],
        event("created"),
    )
    .await
    .expect("create");
    assert_eq!(payloads(s, &a, 1).await, ["created"]);
    assert_eq!(payloads(s, &b, 1).await, ["created"]);
    assert!(payloads(s, &c, 1).await.is_empty());
    // A member that does not exist: nothing is created.
    let ghost = group(&a);
    assert!(
        s.create_conversation(
            &ghost,
            &[MemberRecord {
                user: Uuid::new_v4(),
                role: Role::Member
            }],
            QUIET
        )
        .await
        .is_err()
    );
    assert_eq!(s.conversation(ghost.id).await.expect("read"), None);
    // Adding beyond the limit changes nothing.
    let add_c = ConversationChange::AddMembers {
        members: vec![MemberRecord {
            user: c.id,
            role: Role::Member,
        }],
        max: 2,
    };
    assert!(matches!(
        s.change_conversation(conv.id, &add_c, event("joined"))
            .await,
        Err(StoreError::Limit("members"))
    ));
    assert_eq!(s.members(conv.id).await.expect("members").len(), 2);
    assert_eq!(payloads(s, &a, 1).await.len(), 1);
    let add_c = ConversationChange::AddMembers {
        members: vec![MemberRecord {
            user: c.id,
            role: Role::Member,
        }],
        max: 3,
    };
    s.change_conversation(conv.id, &add_c, event("joined"))
        .await
        .expect("add");
    assert_eq!(payloads(s, &c, 1).await, ["joined"]);
    s.change_conversation(
        conv.id,
        &ConversationChange::Rename("renamed".into()),
        event("renamed"),
    )
    .await
    .expect("rename");
    s.change_conversation(
        conv.id,
        &ConversationChange::MessageTimer(Some(60_000)),
        QUIET,
    )
    .await
    .expect("timer");
    s.change_conversation(conv.id, &ConversationChange::ReceiptMode(1), QUIET)
        .await
        .expect("receipts");
    s.change_conversation(
        conv.id,
        &ConversationChange::SetRole(MemberRecord {
            user: b.id,
            role: Role::Admin,
        }),
        QUIET,
    )
    .await
    .expect("role");
    let now = s
        .conversation(conv.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        (now.name.as_deref(), now.message_timer, now.receipt_mode),
        (Some("renamed"), Some(60_000), 1)
    );
    assert!(
        s.members(conv.id)
            .await
            .expect("members")
            .contains(&MemberRecord {
                user: b.id,
                role: Role::Admin
            })
    );
    // The removed member is told too; then they are gone.
    s.change_conversation(
        conv.id,
        &ConversationChange::RemoveMember(c.id),
        event("left"),
    )
    .await
    .expect("remove");
    assert_eq!(
        payloads(s, &c, 1).await.last().map(String::as_str),
        Some("left")
    );
    assert!(matches!(
        s.change_conversation(conv.id, &ConversationChange::RemoveMember(c.id), QUIET)
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.change_conversation(
            Uuid::new_v4(),
            &ConversationChange::Rename("x".into()),
            QUIET
        )
        .await,
        Err(StoreError::NotFound)
    ));
    // Paging a user's conversations in id order.
    let mut ids = vec![conv.id];
    for _ in 0..4 {
        let more = group(&b);
        s.create_conversation(
            &more,
            &[MemberRecord {
                user: b.id,
                role: Role::Admin,
            }],
            QUIET,
        )
        .await
        .expect("create");
        ids.push(more.id);
    }
    ids.sort();
    let first = s.conversations_of(b.id, None, 3).await.expect("page");
    let rest = s
        .conversations_of(b.id, first.last().map(|c| c.id), 3)
        .await
        .expect("page");
    let seen: Vec<_> = first.iter().chain(&rest).map(|c| c.id).collect();
    assert_eq!(seen, ids);
    assert_eq!(s.conversations_of(c.id, None, 10).await.expect("page"), []);
}

async fn deliveries(s: &dyn Store) {
    let a = user_with_devices(s, "post-a@example.com", &[1, 2]).await;
    let b = user_with_devices(s, "post-b@example.com", &[1]).await;
    let conv = group(&a);
    s.create_conversation(
        &conv,
        &[
            MemberRecord {
                user: a.id,
                role: Role::Admin,
            },
            MemberRecord {
                user: b.id,
                role: Role::Member,
            },
        ],
        QUIET,
    )
    .await
    .expect("create");
    let mut expected = vec![
        (a.id, vec![ClientId(1), ClientId(2)]),
        (b.id, vec![ClientId(1)]),
    ];
    expected.sort();
    assert_eq!(
        s.roster(conv.id).await.expect("roster"),
        Some(Roster {
            members: expected.clone()
        })
    );
    assert_eq!(s.roster(Uuid::new_v4()).await.expect("roster"), None);
    // A refused plan writes nothing and returns the roster it saw.
    let posted = s
        .post(conv.id, 9, Arc::new(|_| None))
        .await
        .expect("post")
        .expect("known");
    assert_eq!((posted.roster.members, posted.delivered), (expected, None));
    assert!(payloads(s, &b, 1).await.is_empty(), "nothing delivered");
    // A plan addressing every device but the sender's; one device that is gone.
    let (a_id, b_id) = (a.id, b.id);
    let plan: crate::DeliveryPlan = Arc::new(move |r: &Roster| {
        let mut out: Vec<Outgoing> = r
            .members
            .iter()
            .flat_map(|(u, cs)| cs.iter().map(move |c| (*u, *c)))
            .filter(|(u, c)| !(*u == a_id && *c == ClientId(1)))
            .map(|(user, client)| Outgoing {
                user,
                client,
                payload: format!("to {client}"),
            })
            .collect();
        out.push(Outgoing {
            user: b_id,
            client: ClientId(77),
            payload: "lost".into(),
        });
        Some(out)
    });
    let posted = s
        .post(conv.id, 9, plan.clone())
        .await
        .expect("post")
        .expect("known");
    let mut delivered: Vec<_> = posted
        .delivered
        .expect("delivered")
        .into_iter()
        .map(|d| (d.user, d.client))
        .collect();
    delivered.sort();
    let mut want = vec![(a.id, ClientId(2)), (b.id, ClientId(1))];
    want.sort();
    assert_eq!(delivered, want);
    assert_eq!(
        payloads(s, &a, 2).await.last().map(String::as_str),
        Some("to 2")
    );
    assert_eq!(
        payloads(s, &b, 1).await.last().map(String::as_str),
        Some("to 1")
    );
    assert!(
        s.post(Uuid::new_v4(), 9, plan)
            .await
            .expect("post")
            .is_none()
    );
    // A removed device leaves the roster at once.
    s.delete_client(a.id, ClientId(2), QUIET)
        .await
        .expect("delete");
    let roster = s.roster(conv.id).await.expect("roster").expect("known");
    assert!(roster.members.contains(&(a.id, vec![ClientId(1)])));
}

/// Many senders at once in one conversation: nothing is lost and every device's
/// queue holds the messages in the same order.
async fn concurrent_deliveries(s: Arc<dyn Store>) {
    let a = user_with_devices(&*s, "race-a@example.com", &[1, 2]).await;
    let b = user_with_devices(&*s, "race-b@example.com", &[1, 2]).await;
    let c = user_with_devices(&*s, "race-c@example.com", &[1]).await;
    let conv = group(&a);
    let members: Vec<_> = [&a, &b, &c]
        .iter()
        .map(|u| MemberRecord {
            user: u.id,
            role: Role::Member,
        })
        .collect();
    s.create_conversation(&conv, &members, QUIET)
        .await
        .expect("create");
    let tasks: Vec<_> = (0..48)
        .map(|n| {
            let s = s.clone();
            tokio::spawn(async move {
                let plan = to_everyone(format!("m{n}"));
                s.post(conv.id, 10, plan).await
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("post").expect("known");
    }
    let order = payloads(&*s, &a, 1).await;
    assert_eq!(order.len(), 48, "48 messages");
    assert_eq!(order.iter().collect::<HashSet<_>>().len(), 48, "each once");
    for (u, d) in [(&a, 2), (&b, 1), (&b, 2), (&c, 1)] {
        assert_eq!(
            payloads(&*s, u, d).await,
            order,
            "one order for every device"
        );
    }
}

/// Posts racing a member who joins and leaves: every message goes to exactly
/// the members at the moment it is stored. A post waiting for the conversation
/// while a join or leave commits must see the members after it (on PostgreSQL,
/// a roster read in the statement that waited for the lock would not).
async fn deliveries_follow_membership(s: Arc<dyn Store>) {
    let a = user_with_devices(&*s, "churn-a@example.com", &[1]).await;
    let b = user_with_devices(&*s, "churn-b@example.com", &[1]).await;
    let c = user_with_devices(&*s, "churn-c@example.com", &[1]).await;
    let conv = group(&a);
    let member = |u: &User| MemberRecord {
        user: u.id,
        role: Role::Member,
    };
    s.create_conversation(&conv, &[member(&a), member(&b), member(&c)], QUIET)
        .await
        .expect("create");
    let posters: Vec<_> = (0..6)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..40 {
                    let plan = to_everyone(format!("m{t}-{i}"));
                    s.post(conv.id, 10, plan)
                        .await
                        .expect("post")
                        .expect("known");
                }
            })
        })
        .collect();
    let churn = {
        let s = s.clone();
        let c = member(&c);
        tokio::spawn(async move {
            for _ in 0..12 {
                s.change_conversation(
                    conv.id,
                    &ConversationChange::RemoveMember(c.user),
                    Notify {
                        payload: "left",
                        at: 10,
                    },
                )
                .await
                .expect("leave");
                tokio::task::yield_now().await;
                s.change_conversation(
                    conv.id,
                    &ConversationChange::AddMembers {
                        members: vec![c],
                        max: 10,
                    },
                    Notify {
                        payload: "joined",
                        at: 10,
                    },
                )
                .await
                .expect("join");
                tokio::task::yield_now().await;
            }
        })
    };
    for t in posters {
        t.await.expect("poster");
    }
    churn.await.expect("churn");
    // Alice's queue holds every message and every join and leave, in the one
    // order they were stored: what Carol should have is what came while she
    // was a member.
    let mut expected = Vec::new();
    let mut inside = true;
    for p in payloads(&*s, &a, 1).await {
        match p.as_str() {
            "left" => inside = false,
            "joined" => inside = true,
            _ if inside => expected.push(p),
            _ => {}
        }
    }
    let got: Vec<String> = payloads(&*s, &c, 1)
        .await
        .into_iter()
        .filter(|p| p != "left" && p != "joined")
        .collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "Carol got {} messages; {} were stored while she was a member",
        got.len(),
        expected.len()
    );
    assert_eq!(got, expected, "exactly the messages of her membership");
}

/// Events for two users stored while deliveries reach the same two: every
/// fan-out locks queue heads in one order, whatever order its caller names the
/// users in, so none deadlocks (PostgreSQL would abort one with 40P01).
async fn fan_outs_never_deadlock(s: Arc<dyn Store>) {
    let x = user_with_devices(&*s, "lock-x@example.com", &[1, 2]).await;
    let y = user_with_devices(&*s, "lock-y@example.com", &[1, 2]).await;
    // The caller names the later one first.
    let (first, second) = if x.id.to_string() > y.id.to_string() {
        (x.id, y.id)
    } else {
        (y.id, x.id)
    };
    let conv = group(&x);
    let member = |u: UserId| MemberRecord {
        user: u,
        role: Role::Member,
    };
    s.create_conversation(&conv, &[member(x.id), member(y.id)], QUIET)
        .await
        .expect("create");
    let changes = {
        let s = s.clone();
        tokio::spawn(async move {
            for _ in 0..60 {
                let change = ConnectionChange {
                    sides: Vec::new(),
                    conversation: None,
                    notify: vec![(first, "told".into()), (second, "told".into())],
                    at: 5,
                };
                s.change_connection(&change).await.expect("no deadlock");
            }
        })
    };
    let posts = {
        let s = s.clone();
        tokio::spawn(async move {
            for _ in 0..60 {
                let plan = to_everyone("posted");
                s.post(conv.id, 5, plan)
                    .await
                    .expect("no deadlock")
                    .expect("known");
            }
        })
    };
    changes.await.expect("changes");
    posts.await.expect("posts");
    for (u, d) in [(&x, 1), (&x, 2), (&y, 1), (&y, 2)] {
        assert_eq!(payloads(&*s, u, d).await.len(), 120, "every event stored");
    }
}

async fn push_endpoints(s: &dyn Store) {
    let a = user_with_devices(s, "push@example.com", &[1]).await;
    assert_eq!(
        s.push_endpoint(a.id, ClientId(1)).await.expect("read"),
        None
    );
    s.set_push_endpoint(a.id, ClientId(1), Some("https://push.example/1"))
        .await
        .expect("set");
    s.set_push_endpoint(a.id, ClientId(1), Some("https://push.example/2"))
        .await
        .expect("replace");
    assert_eq!(
        s.push_endpoint(a.id, ClientId(1))
            .await
            .expect("read")
            .as_deref(),
        Some("https://push.example/2")
    );
    assert!(matches!(
        s.set_push_endpoint(a.id, ClientId(9), Some("https://x"))
            .await,
        Err(StoreError::NotFound)
    ));
    s.set_push_endpoint(a.id, ClientId(1), None)
        .await
        .expect("remove");
    assert_eq!(
        s.push_endpoint(a.id, ClientId(1)).await.expect("read"),
        None
    );
}

async fn trust_chain(s: &dyn Store) {
    let u = user("trust@example.com");
    s.create_user(&u).await.expect("create");
    let signed = ClientRecord {
        trust: Some(r#"{"root_key":"r","signature":"s"}"#.into()),
        ..client(&u, 4, ClientType::Permanent)
    };
    s.add_client(&signed, &prekeys([65535]), 7, QUIET)
        .await
        .expect("device");
    let stored = s.client(u.id, ClientId(4)).await.expect("read");
    assert_eq!(
        stored.as_ref().and_then(|c| c.trust.as_deref()),
        signed.trust.as_deref()
    );
    assert_eq!(s.clients(u.id).await.expect("list"), vec![signed]);

    assert_eq!(s.recovery_bundle(u.id).await.expect("read"), None);
    s.set_recovery_bundle(u.id, Some(&[1, 2, 3]))
        .await
        .expect("set");
    s.set_recovery_bundle(u.id, Some(&[0, 255, 7, 9]))
        .await
        .expect("replace");
    assert_eq!(
        s.recovery_bundle(u.id).await.expect("read"),
        Some(vec![0, 255, 7, 9])
    );
    assert!(matches!(
        s.set_recovery_bundle(Uuid::new_v4(), Some(&[1])).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.recovery_bundle(Uuid::new_v4()).await.expect("read"), None);
    s.set_recovery_bundle(u.id, None).await.expect("remove");
    assert_eq!(s.recovery_bundle(u.id).await.expect("read"), None);
}
