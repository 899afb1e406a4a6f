//! The SDK as an app uses it, against a real server on a loopback port: three
//! people (Alice with two devices, Carol offline for a while) chatting 1:1 and in
//! a group, with edits, deletes, reactions, receipts, a self-deleting message,
//! verification (by fingerprint and by root key) turning conversations verified
//! and then degraded, a session reset, a device restored from the recovery
//! bundle, and a backup exported and imported.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;

use parley_api::{
    ConversationId, EventPayload, NewProteusMessage, Qualified, Register, ReportMissing,
};
use parley_client::ClientError;
use parley_client::account::{Account, Message, MessageKind, Update};
use parley_client::api::Api;
use parley_client::store::{Store, Table};
use parley_client::verification::Verification;
use parley_testkit::TestServer;

const PASSWORD: &str = "Secret-123!";
const PASSPHRASE: &str = "a long local passphrase";
const RECOVERY: &str = "violet harbour sings under copper rain";

struct World {
    server: TestServer,
    dirs: tempfile::TempDir,
}

/// Connects two accounts: `a` asks, `b` accepts (only connections may be
/// put into a group).
async fn connect(a: &mut Account, b: &mut Account) {
    let b_id = a.qualified(b.user());
    let a_id = b.qualified(a.user());
    a.connect_to(&b_id).await.expect("requested");
    b.accept(&a_id).await.expect("accepted");
}

impl World {
    async fn start() -> Self {
        Self {
            server: TestServer::start().await,
            dirs: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Alice and Bob, registered and connected, in a new group `name` that
    /// Alice made.
    async fn alice_and_bob_in(&self, name: &str) -> (Account, Account, Qualified<ConversationId>) {
        let mut alice = self.register("alice").await;
        let mut bob = self.register("bob").await;
        connect(&mut alice, &mut bob).await;
        let bob_id = alice.find("bob").await.expect("found");
        let group = alice
            .create_group(name, vec![bob_id], false)
            .await
            .expect("created");
        (alice, bob, group)
    }
    fn dir(&self, name: &str) -> PathBuf {
        self.dirs.path().join(name)
    }

    async fn register(&self, name: &str) -> Account {
        let email = format!("{name}@example.com");
        Api::new(&self.server.url())
            .expect("client")
            .send_activation_code(&email)
            .await
            .expect("code sent");
        let register = Register {
            name: name.into(),
            email: email.clone(),
            email_code: self.server.code_for(&email),
            password: PASSWORD.into(),
            handle: None,
        };
        let account = Account::register(
            &self.dir(&format!("{name}-1")),
            PASSPHRASE,
            RECOVERY,
            &self.server.url(),
            &register,
        )
        .await
        .expect("registered");
        account.set_handle(name).await.expect("handle");
        account
    }

    async fn second_device(&self, name: &str, n: u32) -> Account {
        Account::login(
            &self.dir(&format!("{name}-{n}")),
            PASSPHRASE,
            RECOVERY,
            &self.server.url(),
            &format!("{name}@example.com"),
            PASSWORD,
        )
        .await
        .expect("logged in on a new device")
    }
}

fn texts(history: &[Message]) -> Vec<String> {
    history
        .iter()
        .filter(|m| matches!(m.kind, MessageKind::Text))
        .map(|m| m.text.clone())
        .collect()
}

fn find<'a>(history: &'a [Message], text: &str) -> &'a Message {
    history
        .iter()
        .find(|m| m.text == text)
        .unwrap_or_else(|| panic!("no message {text:?} in {history:?}"))
}

async fn prekeys_on_server(account: &Account) -> u64 {
    account
        .api()
        .prekey_count(account.device_id())
        .await
        .expect("count")
}

fn qualified<T>(id: T) -> Qualified<T> {
    Qualified {
        id,
        domain: "localhost".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_people_chat_verify_and_recover() {
    let w = World::start().await;
    let mut alice = w.register("alice").await;
    let mut bob = w.register("bob").await;
    let mut carol = w.register("carol").await;

    // --- 1:1: connect, accept, talk, delivery receipts ---------------------------
    let bob_id = alice.find("@bob").await.expect("found");
    alice.connect_to(&bob_id).await.expect("requested");
    let requests = bob.requests().await.expect("requests");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].name, "alice");
    assert_eq!(requests[0].handle.as_deref(), Some("alice"));
    let one2one = bob
        .accept(&qualified(alice.user()))
        .await
        .expect("accepted");
    alice.sync().await.expect("synced");
    let hello = alice
        .send_text(&one2one, "hello bob", false)
        .await
        .expect("sent");
    let updates = bob.sync().await.expect("synced");
    assert!(
        updates
            .iter()
            .any(|u| matches!(u, Update::Message { id, .. } if *id == hello)),
        "{updates:?}"
    );
    assert_eq!(
        bob.conversation(&one2one).expect("known").unread,
        1,
        "unread until shown"
    );
    let seen = bob.open_conversation(&one2one).await.expect("opened");
    assert_eq!(texts(&seen), ["hello bob"]);
    assert_eq!(bob.conversation(&one2one).expect("known").unread, 0);
    alice.sync().await.expect("synced");
    let mine = alice.history(&one2one).await.expect("history");
    assert!(
        find(&mine, "hello bob").delivered_to.contains(&bob.user()),
        "bob's device sent a delivery receipt in the 1:1"
    );

    // --- Alice's second device comes from the recovery bundle --------------------
    let mut alice2 = w.second_device("alice", 2).await;
    assert_eq!(alice2.root_fingerprint(), alice.root_fingerprint());
    assert!(
        Account::login(
            &w.dir("alice-wrong"),
            PASSPHRASE,
            "not the recovery passphrase",
            &w.server.url(),
            "alice@example.com",
            PASSWORD
        )
        .await
        .is_err_and(|e| e.code() == "wrong-recovery-passphrase"),
        "the bundle does not open with another passphrase, and the error says which"
    );
    let own = alice.devices().await.expect("devices");
    assert!(
        own.len() >= 2 && own.iter().all(|d| d.verified && !d.flagged),
        "a user's own devices are signed by their root key: {own:?}"
    );

    // --- A group with read receipts; Carol is offline --------------------------
    connect(&mut alice, &mut carol).await;
    let carol_id = alice.find("carol").await.expect("found");
    let group = alice
        .create_group("team", vec![bob_id.clone(), carol_id.clone()], true)
        .await
        .expect("created");
    bob.sync().await.expect("synced");
    alice2.sync().await.expect("synced");
    let mut rich = Account::mention("@bob see https://parley.example", &[(bob.user(), "bob")]);
    rich.link_previews
        .push(parley_client::content::LinkPreview {
            url: "https://parley.example".into(),
            url_offset: 9,
            title: "Parley".into(),
            summary: "Messaging".into(),
        });
    let rich_id = alice.send_rich(&group, rich, false).await.expect("sent");
    let plan = alice
        .send_text(&group, "the plan", false)
        .await
        .expect("sent");
    let typo = alice
        .send_text(&group, "teh typo", false)
        .await
        .expect("sent");
    alice.edit(&group, &typo, "the typo").await.expect("edited");
    bob.sync().await.expect("synced");
    let oops = bob.send_text(&group, "oops", false).await.expect("sent");
    bob.delete(&group, &oops, true).await.expect("deleted");
    bob.react(&group, &plan, "👍").await.expect("reacted");
    let read = bob.open_conversation(&group).await.expect("opened");
    let rich = read
        .iter()
        .find(|m| m.id == rich_id)
        .expect("the rich text");
    assert_eq!(rich.mentions, [bob.user()]);
    assert_eq!(rich.link_previews[0].title, "Parley");
    let read: Vec<Message> = read.into_iter().filter(|m| m.id != rich_id).collect();
    assert_eq!(texts(&read), ["the plan", "the typo", ""]);
    assert!(find(&read, "the typo").edited);
    assert!(read.iter().any(|m| m.id == oops && m.deleted));
    alice.sync().await.expect("synced");
    let at_alice = alice.history(&group).await.expect("history");
    let plan_here = at_alice.iter().find(|m| m.id == plan).expect("plan");
    assert_eq!(
        plan_here.reactions.get(&bob.user()).map(String::as_str),
        Some("👍")
    );
    assert!(
        plan_here.read_by.contains(&bob.user()),
        "read receipt, the group has them on"
    );
    assert!(
        at_alice
            .iter()
            .any(|m| m.id == oops && m.deleted && m.text.is_empty())
    );
    // Alice's other device saw her own messages too.
    alice2.sync().await.expect("synced");
    assert_eq!(
        texts(&alice2.history(&group).await.expect("history"))[1..3],
        ["the plan", "the typo"]
    );

    // Bob deletes Alice's message for himself only: gone on his devices only.
    bob.delete(&group, &plan, false)
        .await
        .expect("deleted for me");
    assert!(
        !bob.history(&group)
            .await
            .expect("history")
            .iter()
            .any(|m| m.id == plan)
    );
    assert!(
        alice
            .history(&group)
            .await
            .expect("history")
            .iter()
            .any(|m| m.id == plan)
    );

    // --- A self-deleting message --------------------------------------------------
    alice
        .send_ephemeral(&one2one, "burn after reading", 300, false)
        .await
        .expect("sent");
    bob.sync().await.expect("synced");
    assert!(
        texts(&bob.history(&one2one).await.expect("history"))
            .contains(&"burn after reading".into()),
        "kept until shown"
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(
        texts(&bob.history(&one2one).await.expect("history"))
            .contains(&"burn after reading".into()),
        "the timer starts when it is shown, not when it arrives"
    );
    bob.open_conversation(&one2one).await.expect("shown");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(
        !texts(&bob.history(&one2one).await.expect("history"))
            .contains(&"burn after reading".into())
    );
    drop(bob);
    let mut bob = Account::open(&w.dir("bob-1"), PASSPHRASE)
        .await
        .expect("reopened");
    assert!(
        !texts(&bob.history(&one2one).await.expect("history"))
            .contains(&"burn after reading".into()),
        "removed from the local store too"
    );

    // --- Verification by fingerprint: verified, then degraded -------------------
    // Bob compares Alice's devices' fingerprints with what she sees.
    for device in bob.peer_devices(alice.user()).await.expect("devices") {
        let fingerprint = device.fingerprint.expect("known");
        bob.verify_device(alice.user(), device.client, &fingerprint)
            .await
            .expect("verified");
    }
    assert!(
        bob.verify_device(alice.user(), alice.device_id(), "0000 1111")
            .await
            .is_err(),
        "a fingerprint that does not match is refused"
    );
    assert_eq!(
        bob.conversation(&one2one).expect("known").verification,
        Verification::Verified
    );
    // Alice adds a third device: Bob's next message finds it, and the
    // conversation degrades. Nothing is sent without confirmation.
    let mut alice3 = w.second_device("alice", 3).await;
    let refused = bob.send_text(&one2one, "secret", false).await;
    assert!(matches!(refused, Err(ClientError::Degraded)), "{refused:?}");
    assert_eq!(
        bob.conversation(&one2one).expect("known").verification,
        Verification::Degraded
    );
    assert!(
        matches!(
            bob.send_text(&one2one, "secret", false).await,
            Err(ClientError::Degraded)
        ),
        "still degraded"
    );
    bob.send_text(&one2one, "confirmed", true)
        .await
        .expect("sent once confirmed");
    assert_eq!(
        bob.conversation(&one2one).expect("known").verification,
        Verification::NonVerified
    );
    alice3.sync().await.expect("synced");
    assert_eq!(
        texts(&alice3.history(&one2one).await.expect("history")),
        ["confirmed"]
    );
    assert!(
        !texts(&alice.history(&one2one).await.expect("history")).contains(&"secret".into()),
        "the refused message never left"
    );

    // --- Verification by root key: new signed devices stay trusted ---------------
    let carol_root = carol.root_fingerprint().expect("root");
    bob.verify_user(carol.user(), &carol_root)
        .await
        .expect("pinned");
    let alice_root = alice.root_fingerprint().expect("root");
    bob.verify_user(alice.user(), &alice_root)
        .await
        .expect("pinned");
    bob.peer_devices(bob.user()).await.expect("own devices");
    assert_eq!(
        bob.conversation(&group).expect("known").verification,
        Verification::Verified,
        "every device of every member is signed by a verified root key"
    );
    let mut carol2 = w.second_device("carol", 2).await;
    bob.send_text(&group, "still verified", false)
        .await
        .expect("a device signed by a pinned root key needs no new check");
    assert_eq!(
        bob.conversation(&group).expect("known").verification,
        Verification::Verified
    );
    carol2.sync().await.expect("synced");
    assert_eq!(
        texts(&carol2.history(&group).await.expect("history")),
        ["still verified"]
    );

    // A long text goes once, as the shared blob, not once per device.
    let long = "a long read. ".repeat(1000);
    alice.send_text(&group, &long, false).await.expect("sent");

    // --- Carol comes online: everything, in order ---------------------------------
    carol.sync().await.expect("synced");
    assert_eq!(
        texts(&carol.history(&group).await.expect("history")),
        [
            "@bob see https://parley.example",
            "the plan",
            "the typo",
            "",
            "still verified",
            long.as_str()
        ]
    );

    // --- A session reset ------------------------------------------------------------
    assert!(
        bob.reset_session(alice.user(), alice.device_id())
            .await
            .expect("reset")
    );
    bob.send_text(&one2one, "fresh session", false)
        .await
        .expect("sent with a new session");
    alice.sync().await.expect("synced");
    assert!(
        texts(&alice.history(&one2one).await.expect("history")).contains(&"fresh session".into())
    );

    // --- A backup, exported and imported -----------------------------------------
    let backup = alice
        .export_backup("backup password")
        .await
        .expect("exported");
    let mut alice4 = w.second_device("alice", 4).await;
    assert!(alice4.history(&group).await.expect("history").is_empty());
    assert_eq!(
        alice4
            .import_backup(&backup, "wrong password")
            .await
            .expect_err("a wrong password")
            .code(),
        "wrong-backup-password"
    );
    assert!(
        bob.import_backup(&backup, "backup password").await.is_err(),
        "only Alice can import Alice's backup"
    );
    let added = alice4
        .import_backup(&backup, "backup password")
        .await
        .expect("imported");
    assert!(added >= 4, "{added}");
    assert_eq!(
        texts(&alice4.history(&group).await.expect("history"))[1..3],
        ["the plan", "the typo"]
    );

    // --- Removing a device -------------------------------------------------------------
    let third = alice3.device_id();
    alice.remove_device(third, PASSWORD).await.expect("removed");
    assert!(
        !alice
            .devices()
            .await
            .expect("devices")
            .iter()
            .any(|d| d.client == third),
        "gone from the list"
    );
    bob.send_text(&one2one, "after the removal", false)
        .await
        .expect("sent");
    assert!(
        !bob.peer_devices(alice.user())
            .await
            .expect("devices")
            .iter()
            .any(|d| d.client == third),
        "peers drop it too"
    );

    // The local store reveals nothing at rest: no text, no names.
    for entry in std::fs::read_dir(w.dir("bob-1")).expect("bob's directory") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("file");
        for needle in ["hello bob", "the plan", "alice", "team"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} in bob's local store"
            );
        }
    }

    // --- Log out ------------------------------------------------------------------------
    alice4.logout().await.expect("logged out");
    assert!(matches!(
        Account::open(&w.dir("alice-4"), PASSPHRASE).await,
        Err(ClientError::NotLoggedIn)
    ));

    // The server holds no plaintext.
    for needle in [
        "hello bob",
        "the plan",
        "burn after reading",
        "fresh session",
    ] {
        assert!(!w.server.database_contains(needle.as_bytes()), "{needle}");
    }
}

/// A device away longer than the server keeps events is told, resynchronises its
/// conversations, and reads what comes next; its prekeys are topped up when it
/// connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_away_too_long_is_told_and_carries_on() {
    let w = World::start().await;
    let (mut alice, mut bob, group) = w.alice_and_bob_in("club").await;
    alice.send_text(&group, "one", false).await.expect("sent");
    bob.sync().await.expect("synced");
    assert_eq!(texts(&bob.history(&group).await.expect("history")), ["one"]);

    // Bob is away for 29 days; the server keeps events for 28.
    alice
        .send_text(&group, "lost in time", false)
        .await
        .expect("sent");
    w.server.running.clock.advance(29 * 24 * 3600);
    // What the server's own task does once a minute.
    w.server
        .running
        .purge_expired_events()
        .await
        .expect("purged");
    alice.send_text(&group, "after", false).await.expect("sent");
    let updates = bob.sync().await.expect("synced");
    assert!(
        updates
            .iter()
            .any(|u| matches!(u, Update::NotificationsLost)),
        "{updates:?}"
    );
    let history = bob.history(&group).await.expect("history");
    assert_eq!(texts(&history), ["one", "after"]);
    assert!(
        history
            .iter()
            .any(|m| m.kind == MessageKind::System && m.text.contains("may be missing")),
        "the person is told"
    );

    // Connecting tops the prekey pool back up (Alice's new device used one).
    let mut alice2 = w.second_device("alice", 2).await;
    let _ = alice2.sync().await.expect("synced");
    alice2
        .send_text(&group, "from my laptop", false)
        .await
        .expect("sent");
    let before = prekeys_on_server(&bob).await;
    assert!(
        before < 100,
        "alice's new device claimed one of bob's prekeys"
    );
    let _socket = bob.connect().await.expect("connected");
    assert_eq!(prekeys_on_server(&bob).await, 100);

    // Reading a message that started a session puts the used prekey back too.
    let mut alice3 = w.second_device("alice", 3).await;
    alice3
        .send_text(&group, "from my phone", false)
        .await
        .expect("sent");
    assert_eq!(prekeys_on_server(&bob).await, 99);
    bob.sync().await.expect("synced");
    assert_eq!(prekeys_on_server(&bob).await, 100);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("target directory");
    for entry in std::fs::read_dir(from).expect("source directory") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copied");
    }
}

/// Status's partitioned device and Wire's out-of-sync sessions: Bob's device
/// comes back from an old copy of its store, so its sessions are behind Alice's.
/// What it cannot decrypt is shown, not dropped, and the next exchange runs on a
/// fresh session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_restored_from_an_old_copy_recovers_with_a_fresh_session() {
    let w = World::start().await;
    let (mut alice, mut bob, group) = w.alice_and_bob_in("pair").await;
    alice.send_text(&group, "one", false).await.expect("sent");
    bob.sync().await.expect("synced");

    // An old copy of Bob's device, taken now.
    let old = w.dir("bob-old");
    copy_dir(&w.dir("bob-1"), &old);

    // The conversation moves on, each side turning the ratchet twice.
    bob.send_text(&group, "two", false).await.expect("sent");
    alice.sync().await.expect("synced");
    alice.send_text(&group, "three", false).await.expect("sent");
    bob.sync().await.expect("synced");
    bob.send_text(&group, "four", false).await.expect("sent");
    alice.sync().await.expect("synced");
    drop(bob);

    // Bob's device is restored from the old copy: it reads "three" again from
    // the queue, but its ratchet now differs from the one Alice knows.
    std::fs::remove_dir_all(w.dir("bob-1")).expect("removed");
    copy_dir(&old, &w.dir("bob-1"));
    let mut bob = Account::open(&w.dir("bob-1"), PASSPHRASE)
        .await
        .expect("restored");
    bob.sync().await.expect("synced");
    alice.send_text(&group, "five", false).await.expect("sent");
    bob.sync().await.expect("synced");
    let history = bob.history(&group).await.expect("history");
    assert!(
        history
            .iter()
            .any(|m| matches!(m.kind, MessageKind::Undecryptable { .. })),
        "what the old sessions cannot read is shown as such: {history:?}"
    );

    // Bob writes first: his restored device noticed it is a copy and dropped
    // its sessions, so it starts a fresh one instead of reusing a message key;
    // Alice takes it over, and from then on both sides read each other again.
    bob.send_text(&group, "back again", false)
        .await
        .expect("sent");
    alice.sync().await.expect("synced");
    let at_alice = alice.history(&group).await.expect("history");
    assert!(
        texts(&at_alice).contains(&"back again".into()),
        "{at_alice:?}"
    );
    assert!(
        !at_alice
            .iter()
            .any(|m| matches!(m.kind, MessageKind::Undecryptable { .. })),
        "no key was reused: {at_alice:?}"
    );
    alice
        .send_text(&group, "welcome back", false)
        .await
        .expect("sent");
    bob.sync().await.expect("synced");
    assert_eq!(
        texts(&bob.history(&group).await.expect("history"))
            .last()
            .map(String::as_str),
        Some("welcome back")
    );
}

/// A verified conversation degrades the moment a message arrives from a device
/// nobody verified, before anything is sent back to it; receipts reach only
/// the author.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_from_a_new_device_degrades_before_anything_is_sent_to_it() {
    let w = World::start().await;
    let mut alice = w.register("alice").await;
    let mut bob = w.register("bob").await;
    let mut carol = w.register("carol").await;
    connect(&mut alice, &mut bob).await;
    connect(&mut alice, &mut carol).await;
    let bob_id = alice.find("bob").await.expect("found");
    let carol_id = alice.find("carol").await.expect("found");
    let group = alice
        .create_group("trio", vec![bob_id, carol_id], true)
        .await
        .expect("created");
    bob.sync().await.expect("synced");
    carol.sync().await.expect("synced");
    for user in [alice.user(), carol.user()] {
        for d in bob.peer_devices(user).await.expect("devices") {
            bob.verify_device(user, d.client, &d.fingerprint.expect("known"))
                .await
                .expect("verified");
        }
    }
    assert_eq!(
        bob.conversation(&group).expect("known").verification,
        Verification::Verified
    );

    // Alice writes from a new device Bob never verified.
    let mut alice2 = w.second_device("alice", 2).await;
    alice2.sync().await.expect("synced");
    alice2
        .send_text(&group, "from my new laptop", false)
        .await
        .expect("sent");
    bob.sync().await.expect("synced");
    assert_eq!(
        bob.conversation(&group).expect("known").verification,
        Verification::Degraded,
        "a message from an unverified device degrades the conversation"
    );
    assert!(matches!(
        bob.send_text(&group, "secret", false).await,
        Err(ClientError::Degraded)
    ));

    // Bob reads it: the read receipt goes to Alice, not to Carol.
    bob.open_conversation(&group).await.expect("read");
    alice2.sync().await.expect("synced");
    let at_alice = alice2.history(&group).await.expect("history");
    assert!(
        find(&at_alice, "from my new laptop")
            .read_by
            .contains(&bob.user())
    );
    let carol_queue = carol
        .api()
        .notifications(carol.device_id(), None)
        .await
        .expect("queue");
    let from_bob = carol_queue
        .notifications
        .iter()
        .filter(|e| {
            matches!(&e.payload, parley_api::EventPayload::OtrMessageAdd { from, .. } if *from == bob.user())
        })
        .count();
    assert_eq!(from_bob, 0, "receipts reach only the author");
}

/// What a lying server can inject into a device's queue, a replayed ciphertext
/// and bytes that are not Proteus at all, is shown or dropped and resets no
/// session: the next messages both ways run on the same sessions (no prekey is
/// claimed for a new one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_duplicates_and_garbage_reset_nothing() {
    let w = World::start().await;
    let (mut alice, mut bob, group) = w.alice_and_bob_in("pair").await;
    alice.send_text(&group, "one", false).await.expect("sent");
    bob.sync().await.expect("synced");
    bob.send_text(&group, "hi alice", false)
        .await
        .expect("sent");
    alice.sync().await.expect("synced");

    // The ciphertext of "one" as Bob's queue holds it.
    let queue = bob
        .api()
        .notifications(bob.device_id(), None)
        .await
        .expect("queue");
    let original = queue
        .notifications
        .iter()
        .find_map(|e| match &e.payload {
            EventPayload::OtrMessageAdd { data, .. } => Some(data.text.clone()),
            _ => None,
        })
        .expect("a message in Bob's queue");
    for text in [original, "bm90IHByb3RldXMgYXQgYWxs".to_owned()] {
        let message = NewProteusMessage {
            sender: alice.device_id(),
            recipients: BTreeMap::from([(
                group.domain.clone(),
                BTreeMap::from([(bob.user(), BTreeMap::from([(bob.device_id(), text)]))]),
            )]),
            data: None,
            transient: false,
            report_missing: ReportMissing::Only {
                users: vec![bob.user()],
            },
            generation: None,
        };
        alice
            .api()
            .post_proteus(&group, &message)
            .await
            .expect("the server routes it");
    }
    bob.sync().await.expect("synced");
    let history = bob.history(&group).await.expect("history");
    assert_eq!(
        texts(&history),
        ["one", "hi alice"],
        "the replay is not shown again"
    );
    let unreadable = history
        .iter()
        .filter(|m| matches!(m.kind, MessageKind::Undecryptable { .. }))
        .count();
    assert_eq!(unreadable, 1, "the garbage is shown once: {history:?}");

    alice.send_text(&group, "two", false).await.expect("sent");
    bob.sync().await.expect("synced");
    bob.send_text(&group, "three", false).await.expect("sent");
    alice.sync().await.expect("synced");
    assert_eq!(
        texts(&bob.history(&group).await.expect("history")),
        ["one", "hi alice", "two", "three"]
    );
    assert_eq!(
        texts(&alice.history(&group).await.expect("history")),
        ["one", "hi alice", "two", "three"]
    );
    // Bob's "three" went on the old session: a reset would have made it a
    // prekey message (one that starts a new session).
    let last_from_bob = alice
        .api()
        .notifications(alice.device_id(), None)
        .await
        .expect("queue")
        .notifications
        .iter()
        .rev()
        .find_map(|e| match &e.payload {
            EventPayload::OtrMessageAdd { from, data, .. } if *from == bob.user() => {
                Some(data.text.clone())
            }
            _ => None,
        })
        .expect("bob wrote");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(last_from_bob)
        .expect("base64");
    let envelope = parley_proteus::Envelope::decode(&bytes).expect("a Proteus envelope");
    assert!(
        envelope.sender_identity().is_none(),
        "no session was reset: Bob's reply is not a prekey message"
    );
}

/// A server that answers "no recovery bundle" for an account that has devices
/// cannot make a new device fork the user's root key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolling_without_a_bundle_when_devices_exist_is_refused() {
    let w = World::start().await;
    let alice = w.register("alice").await;
    let root = alice.root_fingerprint();
    drop(alice);
    // The server loses (or withholds) the bundle.
    let db = w.server.dir().join("parley.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("server database");
    sqlx::query("UPDATE users SET recovery_bundle = NULL")
        .execute(&pool)
        .await
        .expect("bundle gone");
    pool.close().await;
    let e = Account::login(
        &w.dir("alice-2"),
        PASSPHRASE,
        RECOVERY,
        &w.server.url(),
        "alice@example.com",
        PASSWORD,
    )
    .await
    .expect_err("refused");
    assert_eq!(e.code(), "no-recovery-bundle", "{e}");
    assert!(e.to_string().contains("existing devices"), "{e}");
    // Nothing was uploaded: the first device still holds the only root.
    let alice = Account::open(&w.dir("alice-1"), PASSPHRASE)
        .await
        .expect("reopened");
    assert_eq!(alice.root_fingerprint(), root);
    assert!(
        alice
            .api()
            .recovery_bundle()
            .await
            .expect("asked")
            .is_none()
    );
}

/// The row as the database holds it (sealed), to look for it in the files.
async fn sealed_row(dir: &std::path::Path, conversation: ConversationId, id: &str) -> Vec<u8> {
    let store = Store::open(dir, PASSPHRASE).await.expect("store");
    let mut tx = store.read().await.expect("read");
    let mut name = conversation.as_bytes().to_vec();
    name.extend_from_slice(id.as_bytes());
    let sealed = tx
        .sealed(Table::Messages, &name)
        .await
        .expect("read")
        .expect("the row exists");
    drop(tx);
    store.close().await;
    sealed
}

fn on_disk(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).expect("dir").any(|e| {
        std::fs::read(e.expect("entry").path())
            .is_ok_and(|hay| hay.windows(needle.len()).any(|w| w == needle))
    })
}

/// After a delete and after a self-deleting message expires, no file of the
/// device holds the message's row, so nothing on disk decrypts to it, with the
/// passphrase or without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_and_expired_messages_are_shredded() {
    let w = World::start().await;
    let (mut alice, mut bob, group) = w.alice_and_bob_in("pair").await;
    let deleted = alice
        .send_text(&group, "delete me", false)
        .await
        .expect("sent");
    let expiring = alice
        .send_ephemeral(&group, "burn me", 1_000, false)
        .await
        .expect("sent");
    bob.sync().await.expect("synced");
    let dir = w.dir("bob-1");
    let rows = [
        sealed_row(&dir, group.id, &deleted).await,
        sealed_row(&dir, group.id, &expiring).await,
    ];
    for row in &rows {
        assert!(
            on_disk(&dir, &row[1..41]),
            "the check can fail: the row is on disk"
        );
    }

    bob.delete(&group, &deleted, false)
        .await
        .expect("deleted for me");
    bob.open_conversation(&group).await.expect("shown");
    let now = now_ms();
    bob.set_clock(std::sync::Arc::new(move || now + 5_000));
    let left = bob.history(&group).await.expect("history");
    assert!(texts(&left).is_empty(), "{left:?}");
    for row in &rows {
        assert!(
            !on_disk(&dir, &row[1..41]),
            "the row is gone from every file"
        );
    }
}

#[expect(clippy::disallowed_methods, reason = "the client reads the wall clock")]
fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("fits")
}

/// With a user's root key pinned, a new device it signs keeps the conversation
/// verified, even when that device writes first (its signature is checked right
/// after the message is applied, before anything is sent back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_signed_by_a_pinned_root_keeps_the_conversation_verified() {
    let w = World::start().await;
    let (alice, mut bob, group) = w.alice_and_bob_in("pair").await;
    bob.sync().await.expect("synced");
    let root = alice.root_fingerprint().expect("alice has a root key");
    bob.verify_user(alice.user(), &root).await.expect("pinned");
    assert_eq!(
        bob.conversation(&group).expect("known").verification,
        Verification::Verified
    );

    let mut alice2 = w.second_device("alice", 2).await;
    alice2.sync().await.expect("synced");
    alice2
        .send_text(&group, "my new laptop writes first", false)
        .await
        .expect("sent");
    bob.sync().await.expect("synced");
    assert_eq!(
        bob.conversation(&group).expect("known").verification,
        Verification::Verified,
        "signed by the pinned root: still verified"
    );
    let history = bob.history(&group).await.expect("history");
    assert!(texts(&history).contains(&"my new laptop writes first".to_owned()));
    assert!(
        !history
            .iter()
            .any(|m| m.text.contains("no longer verified")),
        "never degraded on the way: {history:?}"
    );
    bob.send_text(&group, "welcome, new laptop", false)
        .await
        .expect("sent without confirmation");
    alice2.sync().await.expect("synced");
    assert!(
        texts(&alice2.history(&group).await.expect("history"))
            .contains(&"welcome, new laptop".to_owned())
    );
}

/// An old copy written back over the live files (same file, same inode, as
/// `cp backup/* dir/` or a snapshot rollback does): the file looks like the
/// device's own, but the server knows the device got further, so the copy
/// drops its sessions before it encrypts anything and the peer reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_restored_over_the_same_file_notices_through_the_server() {
    let w = World::start().await;
    let (mut alice, bob, group) = w.alice_and_bob_in("pair").await;
    alice.send_text(&group, "one", false).await.expect("sent");
    let dir = w.dir("bob-1");
    let mut bob = bob;
    bob.sync().await.expect("synced");
    bob.close().await;
    let old: Vec<(std::path::PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("bob's directory")
        .map(|e| {
            let path = e.expect("entry").path();
            let bytes = std::fs::read(&path).expect("file");
            (path, bytes)
        })
        .collect();

    let mut bob = Account::open(&dir, PASSPHRASE).await.expect("reopened");
    bob.send_text(&group, "two", false).await.expect("sent");
    bob.send_text(&group, "three", false).await.expect("sent");
    alice.sync().await.expect("synced");
    bob.close().await;

    // Written back into the same files.
    for entry in std::fs::read_dir(&dir).expect("bob's directory") {
        let path = entry.expect("entry").path();
        if !old.iter().any(|(p, _)| *p == path) {
            std::fs::remove_file(&path).expect("removed");
        }
    }
    for (path, bytes) in &old {
        std::fs::write(path, bytes).expect("written back in place");
    }

    let mut bob = Account::open(&dir, PASSPHRASE).await.expect("restored");
    bob.send_text(&group, "back from the copy", false)
        .await
        .expect("sent");
    alice.sync().await.expect("synced");
    let at_alice = alice.history(&group).await.expect("history");
    assert_eq!(
        texts(&at_alice),
        ["one", "two", "three", "back from the copy"],
        "no key was used twice: {at_alice:?}"
    );
    assert!(
        !at_alice
            .iter()
            .any(|m| matches!(m.kind, MessageKind::Undecryptable { .. })),
        "{at_alice:?}"
    );
    alice
        .send_text(&group, "welcome back", false)
        .await
        .expect("sent");
    bob.sync().await.expect("synced");
    assert!(
        texts(&bob.history(&group).await.expect("history")).contains(&"welcome back".to_owned())
    );
}

/// A reply names what it answers (one to a message not in the conversation is
/// refused). Search reads every conversation on the device, ignoring case. A member removed by the admin is told who
/// removed them, and their device refuses to send there (`not-a-member`)
/// before anything reaches the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_search_and_a_removed_member() {
    let w = World::start().await;
    let (mut alice, mut bob, group) = w.alice_and_bob_in("club").await;
    let original = alice
        .send_text(&group, "Who brings the cake?", false)
        .await
        .expect("sent");
    bob.sync().await.expect("synced");
    let refused = bob.reply(&group, &uuid_like(), "me", false).await;
    assert_eq!(
        refused.expect_err("no such message").code(),
        "no-such-message"
    );
    let reply = bob
        .reply(&group, &original, "me!", false)
        .await
        .expect("replied");
    alice.sync().await.expect("synced");
    let history = alice.history(&group).await.expect("history");
    assert_eq!(
        find(&history, "me!").reply_to.as_deref(),
        Some(original.as_str())
    );
    assert_eq!(find(&history, "me!").id, reply);

    let found = alice.search("CAKE", None).await.expect("searched");
    assert_eq!(found.len(), 1);
    assert_eq!(
        (&found[0].0, found[0].1.id.as_str()),
        (&group, original.as_str())
    );
    assert!(
        alice
            .search("cake", Some(&group))
            .await
            .expect("searched")
            .len()
            == 1
    );
    let empty = alice.search("  ", None).await;
    assert_eq!(empty.expect_err("refused").code(), "empty-search");

    let bob_id = alice.find("bob").await.expect("found");
    alice.remove_member(&group, &bob_id).await.expect("removed");
    bob.sync().await.expect("synced");
    let history = bob.history(&group).await.expect("history");
    assert!(
        history
            .iter()
            .any(|m| m.kind == MessageKind::System && m.text == "alice removed you."),
        "{:?}",
        history.iter().map(|m| &m.text).collect::<Vec<_>>()
    );
    let refused = bob.send_text(&group, "still here?", false).await;
    assert_eq!(refused.expect_err("removed").code(), "not-a-member");
    assert_eq!(
        bob.leave(&group).await.expect_err("already out").code(),
        "not-a-member"
    );
}

/// A message id no history holds.
fn uuid_like() -> String {
    "00000000-0000-4000-8000-000000000000".to_owned()
}

/// A join notice names the newcomer even to a member who never met them: the
/// name is learnt before the page is applied, never shown as the start of an
/// id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_notice_names_someone_never_met() {
    let w = World::start().await;
    let (mut alice, mut bob, group) = w.alice_and_bob_in("club").await;
    let mut carol = w.register("carol").await;
    connect(&mut alice, &mut carol).await;
    let carol_id = alice.find("carol").await.expect("found");
    alice.add_member(&group, carol_id).await.expect("added");
    bob.sync().await.expect("synced");
    let notices: Vec<String> = bob
        .history(&group)
        .await
        .expect("history")
        .iter()
        .filter(|m| m.is_notice())
        .map(|m| m.body())
        .collect();
    assert!(notices.iter().any(|n| n == "carol joined."), "{notices:?}");
}
