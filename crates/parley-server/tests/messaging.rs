//! Black-box tests of connections, conversations and message fan-out over HTTP and
//! WebSocket on loopback, on SQLite and (when `PARLEY_TEST_POSTGRES` is set)
//! PostgreSQL.

mod support;

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use parley_api::{ClientId, UserId};
use reqwest::Method;
use serde_json::{Value, json};
use support::{TestServer, User, Ws, client_id, close_reason, next_event};
use uuid::Uuid;

on_both_stores!(crate::support::GENEROUS =>
    three_users_one_offline_fan_out_and_catch_up,
    connections_blocking_and_the_one_to_one,
    admins_members_and_group_settings,
    concurrent_senders_lose_nothing_and_share_one_order,
    typing_and_transient_messages_reach_open_sockets_only,
    offline_devices_get_a_push_wake_up,
    a_stalled_socket_is_cut_and_recovers_by_fetching,
    groups_take_only_connections_and_blocks_hold_inside_them,
    a_message_that_would_flood_queues_is_refused,
    live_frames_stop_when_the_token_expires,
);

fn label(v: &Value) -> &str {
    v["label"].as_str().unwrap_or_default()
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A registered user with devices.
struct Person {
    user: User,
    devices: Vec<ClientId>,
}

async fn person(s: &TestServer, email: &str, devices: usize) -> Person {
    let user = s.register(email).await;
    let mut ids = Vec::new();
    for n in 0..devices {
        let (st, v) = s.add_client(&user, "permanent", [n as u16]).await;
        assert_eq!(st, 201, "{v}");
        ids.push(client_id(&v));
    }
    Person { user, devices: ids }
}

/// Connects two people (a request and its acceptance) unless they are already.
async fn connect_pair(s: &TestServer, a: &Person, b: &Person) {
    let (_, side) = s
        .get(
            &format!("/v1/connections/localhost/{}", b.user.id),
            &a.user.token,
        )
        .await;
    if side["status"] == "accepted" {
        return;
    }
    s.connect_users(&a.user, &b.user).await;
}

/// A group `by` makes with `with` (connected with each first: only connected
/// users may be added).
async fn create_group(s: &TestServer, by: &Person, name: &str, with: &[&Person]) -> Uuid {
    for p in with {
        connect_pair(s, by, p).await;
    }
    let users: Vec<Value> = with
        .iter()
        .map(|p| json!({"id": p.user.id, "domain": "localhost"}))
        .collect();
    let (st, v) = s
        .post(
            "/v1/conversations",
            Some(&by.user.token),
            json!({"name": name, "users": users}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    v["id"]["id"].as_str().expect("id").parse().expect("uuid")
}

/// Sends from `sender` with one ciphertext per listed device (`"{text} for {device}"`).
async fn send(
    s: &TestServer, from: &Person, sender: ClientId, conv: Uuid, to: &[(UserId, ClientId)],
    text: &str,
) -> (reqwest::StatusCode, Value) {
    let mut recipients: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (user, client) in to {
        recipients
            .entry(user.to_string())
            .or_default()
            .insert(client.to_string(), b64(&format!("{text} for {client}")));
    }
    s.post(
        &format!("/v1/conversations/localhost/{conv}/proteus/messages"),
        Some(&from.user.token),
        json!({"sender": sender, "recipients": {"localhost": recipients}}),
    )
    .await
}

/// Every device of these people, except `but`.
fn devices_of(people: &[&Person], but: Option<ClientId>) -> Vec<(UserId, ClientId)> {
    people
        .iter()
        .flat_map(|p| p.devices.iter().map(|d| (p.user.id, *d)))
        .filter(|(_, d)| Some(*d) != but)
        .collect()
}

/// The next frame of a given event type, skipping others.
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let e = next_event(ws).await;
        if e["payload"]["type"] == kind {
            return e;
        }
    }
}

/// A device's whole queue (page by page: pages are bounded in bytes).
async fn queue(s: &TestServer, p: &Person, device: ClientId) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let since = all
            .last()
            .and_then(|e: &Value| e["id"].as_u64())
            .map(|id| format!("&since={id}"))
            .unwrap_or_default();
        let (st, v) = s
            .get(
                &format!("/v1/notifications?client={device}&size=1000{since}"),
                &p.user.token,
            )
            .await;
        assert_eq!(st, 200, "{v}");
        all.extend(v["notifications"].as_array().expect("events").clone());
        if v["has_more"] == false {
            return all;
        }
    }
}

fn decoded_text(event: &Value) -> String {
    let text = event["payload"]["data"]["text"].as_str().expect("text");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64");
    String::from_utf8(bytes).expect("utf-8")
}

fn device_map(v: &Value) -> HashMap<String, Vec<String>> {
    v["localhost"]
        .as_object()
        .map(|users| {
            users
                .iter()
                .map(|(u, cs)| {
                    let mut cs: Vec<String> = cs
                        .as_array()
                        .expect("devices")
                        .iter()
                        .map(|c| c.as_str().expect("id").to_owned())
                        .collect();
                    cs.sort();
                    (u.clone(), cs)
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn three_users_one_offline_fan_out_and_catch_up(s: &TestServer) {
    let alice = person(s, "alice@example.com", 2).await;
    let bob = person(s, "bob@example.com", 1).await;
    let carol = person(s, "carol@example.com", 1).await;
    let dave = person(s, "dave@example.com", 1).await;
    let (a1, a2, b1, c1) = (
        alice.devices[0],
        alice.devices[1],
        bob.devices[0],
        carol.devices[0],
    );
    let mut ws_a2 = s.connect(&alice.user.token, a2, None).await;
    let mut ws_b1 = s.connect(&bob.user.token, b1, None).await;
    // Carol is offline.
    let conv = create_group(s, &alice, "Plans", &[&bob, &carol]).await;
    let created = next_of(&mut ws_b1, "conversation.create").await;
    // The event names the conversation; its members are fetched, not copied
    // into every device's queue.
    assert_eq!(created["payload"]["conversation"]["id"], conv.to_string());
    assert_eq!(created["payload"]["from"], alice.user.id.to_string());
    assert!(created["payload"].get("members").is_none(), "{created}");
    assert!(created.to_string().len() < 400, "{created}");
    next_of(&mut ws_a2, "conversation.create").await;

    // Alice forgets her own second device: 412 names exactly it; nothing delivered.
    let last_b1 = queue(s, &bob, b1).await.len();
    let everyone_but_a2: Vec<_> = devices_of(&[&bob, &carol], None);
    let (st, v) = send(s, &alice, a1, conv, &everyone_but_a2, "hello").await;
    assert_eq!(st, 412, "{v}");
    assert_eq!(
        device_map(&v["missing"]),
        HashMap::from([(alice.user.id.to_string(), vec![a2.to_string()])])
    );
    assert_eq!(queue(s, &bob, b1).await.len(), last_b1, "nothing delivered");

    // Everyone, plus a non-member's device and a device that does not exist.
    let ghost = ClientId(0xdead);
    let mut to = devices_of(&[&alice, &bob, &carol], Some(a1));
    to.push((dave.user.id, dave.devices[0]));
    to.push((bob.user.id, ghost));
    let (st, v) = send(s, &alice, a1, conv, &to, "hello").await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        device_map(&v["redundant"]),
        HashMap::from([(dave.user.id.to_string(), vec![dave.devices[0].to_string()])])
    );
    assert_eq!(
        device_map(&v["deleted"]),
        HashMap::from([(bob.user.id.to_string(), vec![ghost.to_string()])])
    );
    assert!(v["time"].is_string());
    // Each online device gets its own ciphertext, live.
    let got = next_of(&mut ws_b1, "conversation.otr-message-add").await;
    assert_eq!(decoded_text(&got), format!("hello for {b1}"));
    assert_eq!(got["payload"]["data"]["sender"], a1.to_string());
    assert_eq!(got["payload"]["from"], alice.user.id.to_string());
    let got = next_of(&mut ws_a2, "conversation.otr-message-add").await;
    assert_eq!(decoded_text(&got), format!("hello for {a2}"));
    assert!(
        queue(s, &dave, dave.devices[0])
            .await
            .iter()
            .all(|e| e["payload"]["type"] != "conversation.otr-message-add"),
        "the non-member got nothing"
    );

    // Bob answers; then Carol comes online and catches up in order.
    let to = devices_of(&[&alice, &carol], None);
    let (st, v) = send(s, &bob, b1, conv, &to, "hi all").await;
    assert_eq!(st, 201, "{v}");
    let mut ws_c1 = s.connect(&carol.user.token, c1, Some(0)).await;
    let first = next_of(&mut ws_c1, "conversation.create").await;
    let second = next_event(&mut ws_c1).await;
    assert_eq!(decoded_text(&second), format!("hello for {c1}"));
    let third = next_event(&mut ws_c1).await;
    assert_eq!(decoded_text(&third), format!("hi all for {c1}"));
    assert!(first["id"].as_u64() < second["id"].as_u64());
    assert!(second["id"].as_u64() < third["id"].as_u64());
    // …and then live.
    let (st, _) = send(
        s,
        &alice,
        a1,
        conv,
        &devices_of(&[&alice, &bob, &carol], Some(a1)),
        "live",
    )
    .await;
    assert_eq!(st, 201);
    assert_eq!(
        decoded_text(&next_event(&mut ws_c1).await),
        format!("live for {c1}")
    );

    // A non-member cannot send, read or change the conversation.
    let (st, v) = send(s, &dave, dave.devices[0], conv, &to, "intrude").await;
    assert_eq!((st.as_u16(), label(&v)), (403, "access-denied"), "{v}");
    let (st, _) = s
        .get(
            &format!("/v1/conversations/localhost/{conv}"),
            &dave.user.token,
        )
        .await;
    assert_eq!(st, 403);
    // Not even an add that would change nothing tells a stranger who is in it.
    let (st, v) = s
        .post(
            &format!("/v1/conversations/localhost/{conv}/members"),
            Some(&dave.user.token),
            json!({"users": [{"id": bob.user.id, "domain": "localhost"}]}),
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (403, "access-denied"), "{v}");
    // Nor can anyone send from a device that is not theirs.
    let (st, v) = send(s, &bob, a1, conv, &to, "spoof").await;
    assert_eq!((st.as_u16(), label(&v)), (403, "unknown-client"));
    // Garbage ciphertext is refused.
    let (st, v) = s
        .post(
            &format!("/v1/conversations/localhost/{conv}/proteus/messages"),
            Some(&bob.user.token),
            json!({"sender": b1, "recipients": {"localhost": {alice.user.id.to_string(): {a1.to_string(): "not base64!"}}}}),
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (400, "bad-request"));
    let (st, _) = send(s, &alice, a1, Uuid::new_v4(), &to, "nowhere").await;
    assert_eq!(st, 404);

    // Carol deletes her account: her device leaves the conversation at once, and a
    // message still addressed to it reports it deleted.
    let (st, v, _) = s
        .call(
            Method::DELETE,
            "/v1/self",
            Some(&carol.user.token),
            Some(json!({"password": support::PASSWORD})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let to = devices_of(&[&alice, &bob, &carol], Some(a1));
    let (st, v) = send(s, &alice, a1, conv, &to, "after").await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        device_map(&v["deleted"]),
        HashMap::from([(carol.user.id.to_string(), vec![c1.to_string()])])
    );
    // And Bob's removed device: reported deleted, no longer expected.
    let extra = {
        let (st, v) = s.add_client(&bob.user, "permanent", [9]).await;
        assert_eq!(st, 201, "{v}");
        client_id(&v)
    };
    let (st, v) = send(s, &alice, a1, conv, &to, "missing new").await;
    assert_eq!(st, 412, "Bob's new device is expected: {v}");
    let (st, v, _) = s
        .call(
            Method::DELETE,
            &format!("/v1/clients/{extra}"),
            Some(&bob.user.token),
            Some(json!({"password": support::PASSWORD})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let mut to = devices_of(&[&alice, &bob], Some(a1));
    to.push((bob.user.id, extra));
    let (st, v) = send(s, &alice, a1, conv, &to, "gone").await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        device_map(&v["deleted"]),
        HashMap::from([(bob.user.id.to_string(), vec![extra.to_string()])])
    );
}

async fn connect_users(s: &TestServer, from: &Person, to: &Person) -> Value {
    let (st, v) = s
        .post(
            &format!("/v1/connections/localhost/{}", to.user.id),
            Some(&from.user.token),
            json!({}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    v
}

async fn set_connection(s: &TestServer, by: &Person, other: &Person, status: &str) -> (u16, Value) {
    let (st, v, _) = s
        .call(
            Method::PUT,
            &format!("/v1/connections/localhost/{}", other.user.id),
            Some(&by.user.token),
            Some(json!({"status": status})),
        )
        .await;
    (st.as_u16(), v)
}

async fn connections_blocking_and_the_one_to_one(s: &TestServer) {
    let alice = person(s, "ann@example.com", 1).await;
    let bob = person(s, "ben@example.com", 1).await;
    let carol = person(s, "cat@example.com", 1).await;
    let mut ws_bob = s.connect(&bob.user.token, bob.devices[0], None).await;

    let sent = connect_users(s, &alice, &bob).await;
    assert_eq!(sent["status"], "sent");
    let request = next_of(&mut ws_bob, "user.connection").await;
    assert_eq!(request["payload"]["connection"]["status"], "pending");
    assert_eq!(
        request["payload"]["connection"]["to"]["id"],
        alice.user.id.to_string()
    );
    // No 1:1 before acceptance; a second request changes nothing.
    assert!(sent["conversation"].is_null());
    assert_eq!(connect_users(s, &alice, &bob).await["status"], "sent");
    // Alice cannot accept her own request.
    let (st, v) = set_connection(s, &alice, &bob, "accepted").await;
    assert_eq!((st, label(&v)), (403, "invalid-transition"));

    let (st, accepted) = set_connection(s, &bob, &alice, "accepted").await;
    assert_eq!(st, 200, "{accepted}");
    assert_eq!(accepted["status"], "accepted");
    let conv: Uuid = accepted["conversation"]["id"]
        .as_str()
        .expect("1:1 created")
        .parse()
        .expect("uuid");
    let (st, mine) = s
        .get(
            &format!("/v1/connections/localhost/{}", bob.user.id),
            &alice.user.token,
        )
        .await;
    assert_eq!((st.as_u16(), &mine["status"]), (200, &json!("accepted")));
    assert_eq!(mine["conversation"]["id"], conv.to_string());
    let (st, one) = s
        .get(
            &format!("/v1/conversations/localhost/{conv}"),
            &bob.user.token,
        )
        .await;
    assert_eq!((st.as_u16(), &one["type"]), (200, &json!("one2one")));

    // They talk.
    let (st, v) = send(
        s,
        &alice,
        alice.devices[0],
        conv,
        &devices_of(&[&bob], None),
        "hey",
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let got = next_of(&mut ws_bob, "conversation.otr-message-add").await;
    assert_eq!(decoded_text(&got), format!("hey for {}", bob.devices[0]));
    // A 1:1 takes no members.
    let (st, v) = s
        .post(
            &format!("/v1/conversations/localhost/{conv}/members"),
            Some(&alice.user.token),
            json!({"users": [{"id": carol.user.id, "domain": "localhost"}]}),
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (403, "invalid-op"));

    // Bob blocks Alice: neither can send in the 1:1, and she cannot add him to a group.
    let (st, v) = set_connection(s, &bob, &alice, "blocked").await;
    assert_eq!((st, &v["status"]), (200, &json!("blocked")));
    for (from, to) in [(&alice, &bob), (&bob, &alice)] {
        let (st, v) = send(
            s,
            from,
            from.devices[0],
            conv,
            &devices_of(&[to], None),
            "?",
        )
        .await;
        assert_eq!((st.as_u16(), label(&v)), (403, "blocked"), "{v}");
    }
    let (st, v) = s
        .post(
            "/v1/conversations",
            Some(&alice.user.token),
            json!({"name": "sneaky", "users": [{"id": bob.user.id, "domain": "localhost"}]}),
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (403, "not-connected"));
    // Alice's side is unchanged: she is not told.
    let (_, mine) = s
        .get(
            &format!("/v1/connections/localhost/{}", bob.user.id),
            &alice.user.token,
        )
        .await;
    assert_eq!(mine["status"], "accepted");
    // Unblocking restores the 1:1.
    let (st, v) = set_connection(s, &bob, &alice, "accepted").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["conversation"]["id"], conv.to_string(), "the same 1:1");
    let (st, _) = send(
        s,
        &alice,
        alice.devices[0],
        conv,
        &devices_of(&[&bob], None),
        "back",
    )
    .await;
    assert_eq!(st, 201);

    // Carol's request is ignored; she still sees it as sent. Then she withdraws it.
    connect_users(s, &carol, &bob).await;
    let (st, v) = set_connection(s, &bob, &carol, "ignored").await;
    assert_eq!((st, &v["status"]), (200, &json!("ignored")));
    let (_, hers) = s
        .get(
            &format!("/v1/connections/localhost/{}", bob.user.id),
            &carol.user.token,
        )
        .await;
    assert_eq!(hers["status"], "sent");
    let (st, v) = set_connection(s, &carol, &bob, "cancelled").await;
    assert_eq!((st, &v["status"]), (200, &json!("cancelled")));
    let (st, list) = s.get("/v1/connections", &bob.user.token).await;
    assert_eq!(st, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    // Bad requests.
    let (st, v) = s
        .post(
            &format!("/v1/connections/localhost/{}", alice.user.id),
            Some(&alice.user.token),
            json!({}),
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (400, "invalid-user"));
    let (st, _) = s
        .post(
            &format!("/v1/connections/localhost/{}", Uuid::new_v4()),
            Some(&alice.user.token),
            json!({}),
        )
        .await;
    assert_eq!(st, 404);
    let (st, v) = set_connection(s, &alice, &carol, "accepted").await;
    assert_eq!((st, label(&v)), (404, "no-connection"));
    let (st, v) = set_connection(s, &alice, &carol, "pending").await;
    assert_eq!(st, 404, "{v}");
}

async fn admins_members_and_group_settings(s: &TestServer) {
    let alice = person(s, "amy@example.com", 1).await;
    let bob = person(s, "bill@example.com", 1).await;
    let others = [
        person(s, "o1@example.com", 1).await,
        person(s, "o2@example.com", 1).await,
        person(s, "o3@example.com", 1).await,
        person(s, "o4@example.com", 1).await,
    ];
    let conv = create_group(s, &alice, "Team", &[&bob]).await;
    for o in &others {
        connect_pair(s, &alice, o).await;
    }
    let path = |rest: &str| format!("/v1/conversations/localhost/{conv}{rest}");
    let mut ws_bob = s.connect(&bob.user.token, bob.devices[0], None).await;

    // A member may not change the group.
    let (st, v, _) = s
        .call(
            Method::PUT,
            &path("/name"),
            Some(&bob.user.token),
            Some(json!({"name": "Mine"})),
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (403, "action-denied"));
    // The admin renames, sets the timer and the receipt mode; members are told.
    for (rest, body, kind) in [
        ("/name", json!({"name": "Team Two"}), "conversation.rename"),
        (
            "/message-timer",
            json!({"message_timer": 60_000}),
            "conversation.message-timer-update",
        ),
        (
            "/receipt-mode",
            json!({"receipt_mode": 1}),
            "conversation.receipt-mode-update",
        ),
    ] {
        let (st, v, _) = s
            .call(
                Method::PUT,
                &path(rest),
                Some(&alice.user.token),
                Some(body),
            )
            .await;
        assert_eq!(st, 200, "{rest}: {v}");
        next_of(&mut ws_bob, kind).await;
    }
    let (_, c) = s.get(&path(""), &bob.user.token).await;
    assert_eq!(
        (&c["name"], &c["message_timer"], &c["receipt_mode"]),
        (&json!("Team Two"), &json!(60_000), &json!(1))
    );
    for (rest, body) in [
        ("/name", json!({"name": "  "})),
        ("/message-timer", json!({"message_timer": 5})),
        ("/receipt-mode", json!({"receipt_mode": 7})),
    ] {
        let (st, v, _) = s
            .call(
                Method::PUT,
                &path(rest),
                Some(&alice.user.token),
                Some(body),
            )
            .await;
        assert_eq!(st, 400, "{rest}: {v}");
    }
    // The member limit (5 on test servers): two, then three more is one too many.
    let add = |ps: &[&Person]| json!({"users": ps.iter().map(|p| json!({"id": p.user.id, "domain": "localhost"})).collect::<Vec<_>>()});
    let (st, v) = s
        .post(
            &path("/members"),
            Some(&alice.user.token),
            add(&[&others[0], &others[1], &others[2], &others[3]]),
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (403, "too-many-members"), "{v}");
    let (_, c) = s.get(&path(""), &alice.user.token).await;
    assert_eq!(
        c["members"].as_array().map(Vec::len),
        Some(2),
        "nothing changed"
    );
    let (st, v) = s
        .post(
            &path("/members"),
            Some(&alice.user.token),
            add(&[&others[0], &others[1], &others[2]]),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let joined = next_of(&mut ws_bob, "conversation.member-join").await;
    assert_eq!(
        joined["payload"]["members"].as_array().map(Vec::len),
        Some(3)
    );
    // Bob may not add or remove; the admin makes him one; he removes someone.
    let (st, _, _) = s
        .call(
            Method::DELETE,
            &path(&format!("/members/localhost/{}", others[0].user.id)),
            Some(&bob.user.token),
            None,
        )
        .await;
    assert_eq!(st, 403);
    let (st, v, _) = s
        .call(
            Method::PUT,
            &path(&format!("/members/localhost/{}", bob.user.id)),
            Some(&alice.user.token),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let mut ws_o0 = s
        .connect(&others[0].user.token, others[0].devices[0], None)
        .await;
    let (st, _, _) = s
        .call(
            Method::DELETE,
            &path(&format!("/members/localhost/{}", others[0].user.id)),
            Some(&bob.user.token),
            None,
        )
        .await;
    assert_eq!(st, 200);
    let left = next_of(&mut ws_o0, "conversation.member-leave").await;
    assert_eq!(
        left["payload"]["users"][0]["id"],
        others[0].user.id.to_string(),
        "the removed one is told"
    );
    let (st, _) = s.get(&path(""), &others[0].user.token).await;
    assert_eq!(st, 403, "no longer a member");
    // Anyone may leave.
    let (st, _, _) = s
        .call(
            Method::DELETE,
            &path(&format!("/members/localhost/{}", others[1].user.id)),
            Some(&others[1].user.token),
            None,
        )
        .await;
    assert_eq!(st, 200);
    let (_, c) = s.get(&path(""), &alice.user.token).await;
    assert_eq!(c["members"].as_array().map(Vec::len), Some(3));

    // Paging Alice's conversations: three groups and her five 1:1s.
    create_group(s, &alice, "Second", &[]).await;
    create_group(s, &alice, "Third", &[]).await;
    let mut seen = std::collections::HashSet::new();
    let mut start = String::new();
    loop {
        let (st, page) = s
            .get(
                &format!("/v1/conversations?size=3{start}"),
                &alice.user.token,
            )
            .await;
        assert_eq!(st, 200, "{page}");
        let ids: Vec<&str> = page["conversations"]
            .as_array()
            .expect("conversations")
            .iter()
            .map(|c| c["id"]["id"].as_str().expect("id"))
            .collect();
        assert!(ids.len() <= 3);
        for id in &ids {
            assert!(seen.insert((*id).to_owned()), "{id} on two pages");
        }
        if page["has_more"] == false {
            break;
        }
        start = format!("&start={}", ids.last().expect("a full page"));
    }
    assert_eq!(seen.len(), 8);
    let (st, _) = s.get("/v1/conversations?size=0", &alice.user.token).await;
    assert_eq!(st, 400);
}

async fn concurrent_senders_lose_nothing_and_share_one_order(s: &TestServer) {
    let alice = person(s, "ava@example.com", 2).await;
    let bob = person(s, "bo@example.com", 1).await;
    let carol = person(s, "cy@example.com", 1).await;
    let conv = create_group(s, &alice, "Busy", &[&bob, &carol]).await;
    let everyone = [&alice, &bob, &carol];
    let senders = [
        (&alice, alice.devices[0]),
        (&bob, bob.devices[0]),
        (&carol, carol.devices[0]),
    ];
    const EACH: usize = 15;
    let sends = senders.iter().flat_map(|(p, d)| {
        (0..EACH).map(move |n| {
            let to = devices_of(&everyone, Some(*d));
            async move {
                let (st, v) = send(s, p, *d, conv, &to, &format!("{d}-{n}")).await;
                assert_eq!(st, 201, "{v}");
            }
        })
    });
    futures_util::future::join_all(sends).await;
    // Every device has every message not its own, exactly once, and any two devices
    // saw the messages they share in the same order.
    let mut orders: Vec<Vec<String>> = Vec::new();
    for p in everyone {
        for d in &p.devices {
            let texts: Vec<String> = queue(s, p, *d)
                .await
                .iter()
                .filter(|e| e["payload"]["type"] == "conversation.otr-message-add")
                .map(|e| {
                    decoded_text(e)
                        .split(" for ")
                        .next()
                        .expect("tag")
                        .to_owned()
                })
                .collect();
            let own = if senders.iter().any(|(_, sd)| sd == d) {
                EACH
            } else {
                0
            };
            assert_eq!(texts.len(), 3 * EACH - own, "device {d}");
            let unique: std::collections::HashSet<_> = texts.iter().collect();
            assert_eq!(unique.len(), texts.len(), "each once");
            orders.push(texts);
        }
    }
    for a in &orders {
        for b in &orders {
            let common_a: Vec<_> = a.iter().filter(|t| b.contains(t)).collect();
            let common_b: Vec<_> = b.iter().filter(|t| a.contains(t)).collect();
            assert_eq!(common_a, common_b, "one order for every device");
        }
    }
}

async fn typing_and_transient_messages_reach_open_sockets_only(s: &TestServer) {
    let alice = person(s, "tia@example.com", 1).await;
    let bob = person(s, "tom@example.com", 1).await;
    let conv = create_group(s, &alice, "Chat", &[&bob]).await;
    let mut ws_bob = s.connect(&bob.user.token, bob.devices[0], None).await;
    let before = queue(s, &bob, bob.devices[0]).await.len();
    let (st, v) = s
        .post(
            &format!("/v1/conversations/localhost/{conv}/typing"),
            Some(&alice.user.token),
            json!({"status": "started"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let typing = next_event(&mut ws_bob).await;
    assert_eq!(typing["transient"], true);
    assert!(typing["id"].is_null());
    assert_eq!(typing["payload"]["type"], "conversation.typing");
    assert_eq!(typing["payload"]["status"], "started");
    // A transient message: live only.
    let mut recipients = BTreeMap::new();
    recipients.insert(
        bob.user.id.to_string(),
        BTreeMap::from([(bob.devices[0].to_string(), b64("call ringing"))]),
    );
    let (st, v) = s
        .post(
            &format!("/v1/conversations/localhost/{conv}/proteus/messages"),
            Some(&alice.user.token),
            json!({"sender": alice.devices[0], "recipients": {"localhost": recipients}, "transient": true}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let live = next_event(&mut ws_bob).await;
    assert_eq!(
        (&live["transient"], &live["payload"]["type"]),
        (&json!(true), &json!("conversation.otr-message-add"))
    );
    assert_eq!(decoded_text(&live), "call ringing");
    assert_eq!(
        queue(s, &bob, bob.devices[0]).await.len(),
        before,
        "nothing stored"
    );
    // Typing from a non-member is refused.
    let stranger = person(s, "tess@example.com", 0).await;
    let (st, _) = s
        .post(
            &format!("/v1/conversations/localhost/{conv}/typing"),
            Some(&stranger.user.token),
            json!({"status": "started"}),
        )
        .await;
    assert_eq!(st, 403);
}

/// A one-route HTTP server on loopback that counts the wake-ups it receives.
async fn push_receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/up/{token}",
        axum::routing::post(move |body: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(body);
                axum::http::StatusCode::CREATED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/up/device-token"), rx)
}

async fn offline_devices_get_a_push_wake_up(s: &TestServer) {
    let alice = person(s, "pia@example.com", 1).await;
    let bob = person(s, "pete@example.com", 1).await;
    let conv = create_group(s, &alice, "Push", &[&bob]).await;
    let (url, mut pushes) = push_receiver().await;
    let b1 = bob.devices[0];
    let push_path = format!("/v1/clients/{b1}/push");
    let set = |body: Value| s.call(Method::PUT, &push_path, Some(&bob.user.token), Some(body));
    let (st, v, _) = set(json!({"url": "ftp://push.example/x"})).await;
    assert_eq!((st.as_u16(), label(&v)), (400, "invalid-push-endpoint"));
    let (st, v, _) = set(json!({"url": url})).await;
    assert_eq!(st, 200, "{v}");
    // Bob is offline: a content-free wake-up arrives.
    let to = devices_of(&[&bob], None);
    let (st, _) = send(s, &alice, alice.devices[0], conv, &to, "wake").await;
    assert_eq!(st, 201);
    let body = tokio::time::timeout(std::time::Duration::from_secs(10), pushes.recv())
        .await
        .expect("a wake-up in time")
        .expect("body");
    assert_eq!(body, parley_server::push::WAKE_UP_BODY);
    assert!(!body.contains("wake for"), "no content");
    // Wake-ups still on their way while Bob was offline (the group's creation
    // is pushed too, by a task that may run after the endpoint was set) are
    // not this check's business: let them land and drop them.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    while pushes.try_recv().is_ok() {}
    // Online, no push: the socket gets the event and the receiver nothing.
    let mut ws = s.connect(&bob.user.token, b1, None).await;
    let (st, _) = send(s, &alice, alice.devices[0], conv, &to, "online").await;
    assert_eq!(st, 201);
    next_of(&mut ws, "conversation.otr-message-add").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        pushes.try_recv().is_err(),
        "no wake-up for a connected device"
    );
    // Removing the endpoint stops wake-ups.
    drop(ws);
    let (st, _, _) = s
        .call(
            Method::DELETE,
            &format!("/v1/clients/{b1}/push"),
            Some(&bob.user.token),
            None,
        )
        .await;
    assert_eq!(st, 200);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (st, _) = send(s, &alice, alice.devices[0], conv, &to, "quiet").await;
    assert_eq!(st, 201);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(pushes.try_recv().is_err(), "no endpoint, no wake-up");
}

async fn a_stalled_socket_is_cut_and_recovers_by_fetching(s: &TestServer) {
    use futures_util::StreamExt;
    let alice = person(s, "sal@example.com", 1).await;
    let bob = person(s, "stu@example.com", 1).await;
    let conv = create_group(s, &alice, "Big", &[&bob]).await;
    let b1 = bob.devices[0];
    let start = queue(s, &bob, b1).await.len();
    // Bob's socket stops reading. Alice sends far more than the socket buffers hold.
    let mut ws = s.connect(&bob.user.token, b1, None).await;
    let big = "x".repeat(180 * 1024);
    const SENT: usize = 80;
    for n in 0..SENT {
        let (st, v) = send(
            s,
            &alice,
            alice.devices[0],
            conv,
            &devices_of(&[&bob], None),
            &format!("{n:03}{big}"),
        )
        .await;
        assert_eq!(st, 201, "{v}");
    }
    // The server cuts the socket (2 s send timeout on test servers) instead of
    // buffering; reading now yields what was in flight, then the end.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let mut received = 0;
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_)))) => received += 1,
            Ok(Some(Ok(_))) => {}
            Ok(None | Some(Err(_))) => break,
            Err(_) => panic!("the stalled socket was not closed"),
        }
    }
    assert!(
        received < SENT,
        "the socket was cut before it got everything ({received})"
    );
    // Bob catches up by fetching: everything is there, in order.
    let events = queue(s, &bob, b1).await;
    let texts: Vec<String> = events[start..]
        .iter()
        .map(|e| decoded_text(e)[..3].to_owned())
        .collect();
    let want: Vec<String> = (0..SENT).map(|n| format!("{n:03}")).collect();
    assert_eq!(texts, want);
}

async fn groups_take_only_connections_and_blocks_hold_inside_them(s: &TestServer) {
    let alice = person(s, "gia@example.com", 1).await;
    let bob = person(s, "gus@example.com", 1).await;
    let carol = person(s, "gwen@example.com", 1).await;
    let stranger = person(s, "gil@example.com", 1).await;
    let conv = create_group(s, &alice, "Club", &[&bob]).await;
    let members = format!("/v1/conversations/localhost/{conv}/members");
    let one = |id: UserId| json!({"users": [{"id": id, "domain": "localhost"}]});

    // A stranger cannot be put into a group, at creation or later; an id
    // nobody has gets the same answer, so ids cannot be probed.
    for id in [stranger.user.id, UserId::random()] {
        let (st, v) = s.post(&members, Some(&alice.user.token), one(id)).await;
        assert_eq!((st.as_u16(), label(&v)), (403, "not-connected"), "{v}");
        let (st, v) = s
            .post(
                "/v1/conversations",
                Some(&alice.user.token),
                json!({"name": "x", "users": [{"id": id, "domain": "localhost"}]}),
            )
            .await;
        assert_eq!((st.as_u16(), label(&v)), (403, "not-connected"), "{v}");
    }
    assert!(
        queue(s, &stranger, stranger.devices[0])
            .await
            .iter()
            .all(|e| e["payload"]["type"] != "conversation.create"
                && e["payload"]["type"] != "conversation.member-join"),
        "the stranger's queue got nothing"
    );
    // A connection may be added.
    connect_pair(s, &alice, &carol).await;
    let (st, v) = s
        .post(&members, Some(&alice.user.token), one(carol.user.id))
        .await;
    assert_eq!(st, 200, "{v}");
    // One request adds at most 64 users (each is named in every member's event).
    let many: Vec<Value> = (0..65)
        .map(|_| json!({"id": Uuid::new_v4(), "domain": "localhost"}))
        .collect();
    let (st, v) = s
        .post(&members, Some(&alice.user.token), json!({"users": many}))
        .await;
    assert_eq!((st.as_u16(), label(&v)), (400, "too-many-users"), "{v}");

    // Bob blocks Alice. In the group neither reaches the other: she need not
    // encrypt for him, what she does encrypt is dropped without a word (the
    // answer must not reveal the block), and the same the other way. Carol
    // hears both.
    let (st, v) = set_connection(s, &bob, &alice, "blocked").await;
    assert_eq!(st, 200, "{v}");
    let bob_before = queue(s, &bob, bob.devices[0]).await.len();
    let (st, v) = send(
        s,
        &alice,
        alice.devices[0],
        conv,
        &devices_of(&[&carol], None),
        "only carol",
    )
    .await;
    assert_eq!(st, 201, "bob is not missing: {v}");
    let (st, v) = send(
        s,
        &alice,
        alice.devices[0],
        conv,
        &devices_of(&[&bob, &carol], None),
        "both",
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert!(
        device_map(&v["redundant"]).is_empty(),
        "the answer does not tell Alice that Bob blocked her: {v}"
    );
    assert_eq!(
        queue(s, &bob, bob.devices[0]).await.len(),
        bob_before,
        "nothing from Alice reached Bob"
    );
    let alice_before = queue(s, &alice, alice.devices[0]).await.len();
    let (st, v) = send(
        s,
        &bob,
        bob.devices[0],
        conv,
        &devices_of(&[&alice, &carol], None),
        "from bob",
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        queue(s, &alice, alice.devices[0]).await.len(),
        alice_before,
        "nothing from Bob reached Alice"
    );
    let texts: Vec<String> = queue(s, &carol, carol.devices[0])
        .await
        .iter()
        .filter(|e| e["payload"]["type"] == "conversation.otr-message-add")
        .map(decoded_text)
        .collect();
    let c1 = carol.devices[0];
    assert_eq!(
        texts,
        [
            format!("only carol for {c1}"),
            format!("both for {c1}"),
            format!("from bob for {c1}")
        ]
    );
    // Unblocked, they reach each other again.
    let (st, _) = set_connection(s, &bob, &alice, "accepted").await;
    assert_eq!(st, 200);
    let (st, v) = send(
        s,
        &alice,
        alice.devices[0],
        conv,
        &devices_of(&[&carol], None),
        "again",
    )
    .await;
    assert_eq!(st, 412, "Bob is expected again: {v}");
}

async fn a_message_that_would_flood_queues_is_refused(s: &TestServer) {
    let alice = person(s, "fay@example.com", 1).await;
    let bob = person(s, "fin@example.com", 1).await;
    let conv = create_group(s, &alice, "Flood", &[&bob]).await;
    // A 96 KiB data blob named for 600 devices would write about 75 MiB.
    let blob = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 96 * 1024]);
    let mut devices = serde_json::Map::new();
    for n in 0..600u64 {
        devices.insert(format!("{:x}", 0x1000 + n), json!(b64("x")));
    }
    devices.insert(bob.devices[0].to_string(), json!(b64("x")));
    let before = queue(s, &bob, bob.devices[0]).await.len();
    let (st, v) = s
        .post(
            &format!("/v1/conversations/localhost/{conv}/proteus/messages"),
            Some(&alice.user.token),
            json!({"sender": alice.devices[0], "data": blob,
                   "recipients": {"localhost": {bob.user.id.to_string(): devices}}}),
        )
        .await;
    assert_eq!((st.as_u16(), label(&v)), (413, "too-large"), "{v}");
    assert_eq!(queue(s, &bob, bob.devices[0]).await.len(), before);
    // The same blob for the one real device goes through.
    let (st, v) = s
        .post(
            &format!("/v1/conversations/localhost/{conv}/proteus/messages"),
            Some(&alice.user.token),
            json!({"sender": alice.devices[0], "data": blob,
                   "recipients": {"localhost": {bob.user.id.to_string(): {bob.devices[0].to_string(): b64("x")}}}}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
}

/// A socket delivers no live frame once its token has expired by the server's
/// clock: the check on live frames in `routes/live.rs`, alone. The socket
/// first reads the group's creation and then sits until every wake-up of that
/// creation has landed, so no catch-up (which checks the token too) can close
/// it before the typing notice arrives; and the expiry timer runs on the
/// runtime's clock, which the test's clock does not move.
async fn live_frames_stop_when_the_token_expires(s: &TestServer) {
    use futures_util::StreamExt;
    let alice = person(s, "lia@example.com", 1).await;
    let bob = person(s, "lou@example.com", 1).await;
    let mut ws_bob = s.connect(&bob.user.token, bob.devices[0], None).await;
    let conv = create_group(s, &alice, "Chat", &[&bob]).await;
    next_of(&mut ws_bob, "conversation.create").await;
    // Quiet: a late wake-up is read (an empty catch-up) while the token stands.
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(700), ws_bob.next()).await;
    assert!(quiet.is_err(), "nothing more arrives: {quiet:?}");
    s.running.clock.advance(16 * 60);
    let token = s.with_cookie("/v1/access", &alice.user.cookie).await.1["access_token"]
        .as_str()
        .expect("a fresh token for alice")
        .to_owned();
    let (st, v) = s
        .post(
            &format!("/v1/conversations/localhost/{conv}/typing"),
            Some(&token),
            json!({"status": "started"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        close_reason(&mut ws_bob, true).await.as_deref(),
        Some("token-expired")
    );
}
