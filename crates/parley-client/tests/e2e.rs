//! The SDK against a real server on a loopback port (SQLite in a temporary
//! directory): accounts, devices and Proteus-encrypted messages between three
//! devices, with the server holding nothing but ciphertext.

#![allow(clippy::print_stderr)]

use parley_api::{NewConversation, Qualified, Register};
use parley_client::api::Api;
use parley_client::device::{Device, Incoming, Received, To};
use parley_testkit::TestServer;

const PASSWORD: &str = "Secret-123!";

async fn server() -> TestServer {
    TestServer::start().await
}

/// Registers `name` through the API only (no device yet).
async fn account(s: &TestServer, name: &str) -> Api {
    let api = Api::new(&s.url()).expect("client");
    let email = format!("{name}@example.com");
    api.send_activation_code(&email).await.expect("code sent");
    let register = Register {
        name: name.into(),
        email: email.clone(),
        email_code: s.code_for(&email),
        password: PASSWORD.into(),
    };
    api.register(&register).await.expect("registered");
    api
}
/// The plaintexts of decrypted messages.
/// Sends `text` to every member's devices, approving any new device.
async fn say(
    device: &mut Device,
    api: &Api,
    conv: &Qualified<parley_api::ConversationId>,
    members: &[parley_api::UserId],
    text: &[u8],
) -> parley_api::MessageSent {
    device
        .send(api, conv, To::Members(members), text, None, &mut |_| true)
        .await
        .expect("sent")
}

/// Messages only (decrypted or not), without conversation and device events.
fn msgs(incoming: Vec<Incoming>) -> Vec<Incoming> {
    incoming
        .into_iter()
        .filter(|i| matches!(i, Incoming::Message(_) | Incoming::Undecryptable { .. }))
        .collect()
}

fn texts(incoming: &[Incoming]) -> Vec<Vec<u8>> {
    incoming
        .iter()
        .filter_map(|i| match i {
            Incoming::Message(Received { plaintext, .. }) => Some(plaintext.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_devices_talk_end_to_end_and_the_server_sees_ciphertext() {
    let s = server().await;
    let alice = account(&s, "alice").await;
    let bob = account(&s, "bob").await;
    let mut a1 = Device::register(&alice, PASSWORD, None)
        .await
        .expect("device");
    let mut b1 = Device::register(&bob, PASSWORD, None)
        .await
        .expect("device");
    let mut b2 = Device::register(&bob, PASSWORD, None)
        .await
        .expect("device");
    assert_ne!(b1.fingerprint(), b2.fingerprint());

    let conv = alice
        .create_conversation(&NewConversation {
            name: "plans".into(),
            users: vec![Qualified {
                id: bob.user().expect("logged in"),
                domain: "localhost".into(),
            }],
            message_timer: None,
            receipt_mode: 0,
        })
        .await
        .expect("conversation")
        .id;
    let members = [alice.user().expect("id"), bob.user().expect("id")];

    // No sessions yet: the server names Bob's two devices, Alice claims their
    // prekeys, opens sessions and the message goes through.
    let sent = say(&mut a1, &alice, &conv, &members, b"meet at noon").await;
    assert!(sent.missing.is_empty() && sent.deleted.is_empty());
    assert!(a1.has_session(bob.user().expect("id"), b1.id()));
    for device in [&mut b1, &mut b2] {
        let got = msgs(device.sync(&bob).await.expect("synced"));
        assert_eq!(texts(&got), [b"meet at noon".to_vec()], "{got:?}");
        assert!(matches!(&got[0], Incoming::Message(m) if m.sender == a1.id()));
    }

    // Alice used one of each of Bob's prekeys; topping up puts one back.
    for device in [&mut b1, &mut b2] {
        assert_eq!(bob.prekey_count(device.id()).await.expect("count"), 99);
        assert_eq!(device.top_up_prekeys(&bob).await.expect("topped up"), 1);
        assert_eq!(bob.prekey_count(device.id()).await.expect("count"), 100);
    }

    // Bob answers from one device: Alice and Bob's other device both read it.
    say(&mut b1, &bob, &conv, &members, b"see you").await;
    let at_alice = msgs(a1.sync(&alice).await.expect("synced"));
    assert_eq!(texts(&at_alice), [b"see you".to_vec()]);
    let at_b2 = msgs(b2.sync(&bob).await.expect("synced"));
    assert_eq!(texts(&at_b2), [b"see you".to_vec()]);

    // A message that cannot be decrypted is shown as such, and the next one is read.
    let bogus = parley_api::NewProteusMessage {
        sender: a1.id(),
        recipients: [(
            "localhost".to_owned(),
            [(
                bob.user().expect("id"),
                [(b1.id(), "AAAA".to_owned())].into_iter().collect(),
            )]
            .into_iter()
            .collect(),
        )]
        .into_iter()
        .collect(),
        data: None,
        transient: false,
        report_missing: parley_api::ReportMissing::None,
    };
    alice.post_proteus(&conv, &bogus).await.expect("posted");
    say(&mut a1, &alice, &conv, &members, b"readable").await;
    let got = msgs(b1.sync(&bob).await.expect("synced"));
    assert!(
        matches!(&got[0], Incoming::Undecryptable { sender, .. } if *sender == a1.id()),
        "{got:?}"
    );
    assert_eq!(texts(&got[1..]), [b"readable".to_vec()]);
    msgs(b2.sync(&bob).await.expect("synced"));

    // Sixteen minutes later the access tokens have expired: the client refreshes
    // them from the login cookie without the caller noticing.
    s.running.clock.advance(16 * 60);
    for n in 0..5 {
        let text = format!("ping {n}");
        say(&mut a1, &alice, &conv, &members, text.as_bytes()).await;
        let got = msgs(b1.sync(&bob).await.expect("synced"));
        assert_eq!(texts(&got), [text.into_bytes()]);
    }

    // Live: Bob's first device listens on its socket. After a reconnect it gets
    // what it missed, in order, and nothing twice.
    let mut live = b1.connect(&bob).await.expect("socket");
    say(&mut a1, &alice, &conv, &members, b"live one").await;
    let mut seen = Vec::new();
    while seen.is_empty() {
        let frame = live.next().await.expect("frame").expect("open");
        seen.extend(b1.handle(&frame));
    }
    assert_eq!(texts(&seen), [b"live one".to_vec()]);
    drop(live);
    // Bob's token expires while he is away: reconnecting refreshes it.
    s.running.clock.advance(16 * 60);
    for text in ["missed one", "missed two"] {
        say(&mut a1, &alice, &conv, &members, text.as_bytes()).await;
    }
    let mut live = b1.connect(&bob).await.expect("socket");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let frame = live.next().await.expect("frame").expect("open");
        seen.extend(b1.handle(&frame));
    }
    assert_eq!(
        texts(&seen),
        [b"missed one".to_vec(), b"missed two".to_vec()]
    );
    msgs(b2.sync(&bob).await.expect("synced"));

    // Bob's second device is saved to its encrypted store and restored (as after a
    // restart): it keeps its identity and sessions and reads what arrives next.
    let saved = s.dir().join("bob-device-2");
    let store =
        parley_client::local_store::LocalStore::open(&saved, "bob's passphrase").expect("store");
    store.put("device", &b2.export()).expect("saved");
    let fingerprint = b2.fingerprint();
    drop(b2);
    drop(store);
    let store =
        parley_client::local_store::LocalStore::open(&saved, "bob's passphrase").expect("reopened");
    let mut b2 = Device::import(&store.get("device").expect("read").expect("a saved device"))
        .expect("loaded");
    assert_eq!(b2.fingerprint(), fingerprint);
    say(&mut a1, &alice, &conv, &members, b"after the restart").await;
    let got = msgs(b2.sync(&bob).await.expect("synced"));
    assert_eq!(
        texts(&got).last(),
        Some(&b"after the restart".to_vec()),
        "the restored device decrypts with its restored session"
    );
    assert!(matches!(
        parley_client::local_store::LocalStore::open(&saved, "wrong"),
        Err(parley_client::ClientError::WrongPassphrase)
    ));

    // The server's database holds no plaintext.
    for needle in [
        &b"meet at noon"[..],
        b"see you",
        b"ping 3",
        b"after the restart",
    ] {
        assert!(!s.database_contains(needle), "plaintext on the server");
    }
}
