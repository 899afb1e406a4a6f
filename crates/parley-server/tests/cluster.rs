//! Several server nodes on one PostgreSQL database, waking each other's
//! sockets through NATS (`nats_url`) and signing tokens with one key: a device
//! on one node hears, live, what was stored through another, a transient
//! event sent through a third, and a logout made through a third. Runs when `PARLEY_TEST_POSTGRES` and
//! `PARLEY_TEST_NATS` (a `nats://` URL) are both set, as `.ci/run` sets them;
//! skipped with a notice otherwise.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Backend, GENEROUS, TestServer, client_id, close_reason, next_event};

/// The NATS server to use, or a notice.
#[expect(
    clippy::print_stderr,
    reason = "a skipped test says so where the test runner shows it"
)]
fn nats() -> Option<String> {
    let url = std::env::var("PARLEY_TEST_NATS").ok();
    if url.is_none() {
        eprintln!("NOTICE: PARLEY_TEST_NATS is not set: the several-node tests are skipped");
    }
    url
}

/// Waits until a node says it is ready (its database and NATS answer).
async fn ready(s: &TestServer) {
    for _ in 0..100 {
        let resp = s
            .http
            .get(format!("{}/v1/ready", s.base))
            .send()
            .await
            .expect("request");
        if resp.status() == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("a node did not get ready in ten seconds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_wake_each_others_sockets() {
    support::init();
    let Some(url) = nats() else {
        return;
    };
    let with_nats = |s: &mut parley_server::config::Settings| {
        s.nats_url = Some(parley_server::config::NatsUrl(url.clone()));
    };
    let Some(a) = TestServer::start_with(Backend::Postgres, GENEROUS, with_nats).await else {
        return;
    };
    let b = a.another_node(with_nats).await;
    let c = a.another_node(with_nats).await;
    for node in [&a, &b, &c] {
        ready(node).await;
        let (st, v) = node.get("/v1/health", "").await;
        assert_eq!(st, 200, "{v}");
    }

    // Ann and Bob register through different nodes; Bob listens on B, Ann
    // on C.
    let ann = a.register("ann@example.com").await;
    let bob = b.register("bob@example.com").await;
    // Each node has signing keys of its own on disk; they sign with the one
    // in the database, so a token from B works on A and C.
    for node in [&a, &c] {
        let (st, v) = node.get("/v1/self", &bob.token).await;
        assert_eq!(st, 200, "{v}");
    }
    a.connect_users(&ann, &bob).await;
    let (st, v) = a.add_client(&ann, "permanent", [1]).await;
    assert_eq!(st, 201, "{v}");
    let ann_device = client_id(&v);
    let (st, v) = b.add_client(&bob, "permanent", [1]).await;
    assert_eq!(st, 201, "{v}");
    let bob_device = client_id(&v);
    let mut bob_ws = b.connect(&bob.token, bob_device, None).await;
    let mut ann_ws = c.connect(&ann.token, ann_device, None).await;

    // Stored through A: Bob's socket on B hears it.
    let (st, v) = a
        .post(
            "/v1/conversations",
            Some(&ann.token),
            json!({"name": "across", "users": [{"id": bob.id, "domain": "localhost"}]}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let conv = v["id"]["id"].as_str().expect("an id").to_owned();
    let event = next_event(&mut bob_ws).await;
    assert_eq!(event["payload"]["type"], "conversation.create", "{event}");

    // A message stored through A for Bob's device, which has no socket on A
    // (A wakes him elsewhere): his socket on B reads it at once.
    let recipients = json!({"localhost": {bob.id.to_string(): {bob_device.to_string(): "AAEC"}}});
    let (st, v) = a
        .post(
            &format!("/v1/conversations/localhost/{conv}/proteus/messages"),
            Some(&ann.token),
            json!({"sender": ann_device, "recipients": recipients}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let event = next_event(&mut bob_ws).await;
    assert_eq!(
        event["payload"]["type"], "conversation.otr-message-add",
        "{event}"
    );
    assert_eq!(event["payload"]["data"]["text"], "AAEC", "{event}");

    // A transient event through A reaches Ann's socket on C (it exists only
    // live: no store to catch up from).
    let (st, v) = a
        .post(
            &format!("/v1/conversations/localhost/{conv}/typing"),
            Some(&bob.token),
            json!({"status": "started"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let typing = loop {
        let event = next_event(&mut ann_ws).await;
        if event["payload"]["type"] == "conversation.typing" {
            break event;
        }
    };
    assert_eq!(typing["transient"], true, "{typing}");

    // Bob logs out through C: his socket on B closes.
    assert_eq!(c.with_cookie("/v1/access/logout", &bob.cookie).await.0, 200);
    assert_eq!(
        close_reason(&mut bob_ws, false).await.as_deref(),
        Some("logged-out")
    );

    // A node whose NATS cannot be reached serves, but is not ready.
    let cut_off = a
        .another_node(|s| {
            s.nats_url = Some(parley_server::config::NatsUrl("nats://127.0.0.1:9".into()));
        })
        .await;
    let (st, v) = cut_off.get("/v1/health", "").await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = cut_off.get("/v1/ready", "").await;
    assert_eq!(
        (st.as_u16(), v["label"].as_str()),
        (503, Some("not-ready")),
        "{v}"
    );
}
