//! MLS conversations through the SDK, against a real server on a loopback
//! port, on SQLite and (with `PARLEY_TEST_POSTGRES`) PostgreSQL: a group of
//! three people and four devices made by one commit, messages both ways,
//! two commits on one epoch (the loser catches up and retries), a removed
//! member reading nothing more, a new device joining by external commit, a
//! device that lost or fell behind its group state repairing itself (and
//! saying so), and a commit whose reply never came settled after a restart.

use std::path::PathBuf;

use parley_api::{ConversationId, Protocol, Qualified, Register};
use parley_client::account::{Account, Message, MessageKind};
use parley_client::api::Api;
use parley_client::store::{Store, Table};
use parley_testkit::{Backend, TestServer};

const PASSWORD: &str = "Secret-123!";
const PASSPHRASE: &str = "a long local passphrase";
const RECOVERY: &str = "violet harbour sings under copper rain";

struct World {
    server: TestServer,
    dirs: tempfile::TempDir,
}

impl World {
    /// A server on `backend` (`None`, with a notice, where it cannot run).
    async fn on(backend: Backend) -> Option<Self> {
        Some(Self {
            server: TestServer::start_on(backend, |_| {}).await?,
            dirs: tempfile::tempdir().expect("temp dir"),
        })
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

    async fn device(&self, name: &str, n: u32) -> Account {
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

async fn connect(a: &mut Account, b: &mut Account) {
    let b_id = a.qualified(b.user());
    let a_id = b.qualified(a.user());
    a.connect_to(&b_id).await.expect("requested");
    b.accept(&a_id).await.expect("accepted");
}

/// The texts of a conversation's history, in order.
async fn texts(a: &mut Account, c: &Qualified<ConversationId>) -> Vec<String> {
    a.sync().await.expect("synced");
    history(a, c)
        .await
        .iter()
        .filter(|m| matches!(m.kind, MessageKind::Text))
        .map(|m| m.text.clone())
        .collect()
}

async fn history(a: &mut Account, c: &Qualified<ConversationId>) -> Vec<Message> {
    a.history(c).await.expect("history")
}

fn epoch(a: &Account, c: &Qualified<ConversationId>) -> Option<u64> {
    a.conversation(c).and_then(|v| v.epoch)
}

/// Makes the device's stored group state what `rows` says (an earlier copy,
/// or none: the state lost), as a crash or a bad restore would leave it.
async fn set_group_rows(dir: &std::path::Path, rows: &[([u8; 32], Vec<u8>)]) {
    let store = Store::open(dir, PASSPHRASE).await.expect("opens");
    let mut tx = store.begin().await.expect("begins");
    for (key, _) in tx.all(Table::MlsGroups).await.expect("rows") {
        tx.delete_by_key(Table::MlsGroups, &key)
            .await
            .expect("deleted");
    }
    for (key, value) in rows {
        tx.put_by_key(Table::MlsGroups, key, None, value)
            .await
            .expect("written");
    }
    tx.commit().await.expect("committed");
    store.close().await;
}

async fn group_rows(dir: &std::path::Path) -> Vec<([u8; 32], Vec<u8>)> {
    let store = Store::open(dir, PASSPHRASE).await.expect("opens");
    let mut tx = store.read().await.expect("reads");
    let rows = tx
        .all(Table::MlsGroups)
        .await
        .expect("rows")
        .into_iter()
        .map(|(k, v)| (k, v.to_vec()))
        .collect();
    drop(tx);
    store.close().await;
    rows
}

async fn story(backend: Backend) {
    let Some(w) = World::on(backend).await else {
        return;
    };
    let mut ann = w.register("ann").await;
    let mut ann2 = w.device("ann", 2).await;
    let mut bob = w.register("bob").await;
    let mut cid = w.register("cid").await;
    connect(&mut ann, &mut bob).await;
    connect(&mut ann, &mut cid).await;
    let (bob_id, cid_id) = (ann.qualified(bob.user()), ann.qualified(cid.user()));

    // One commit makes the group: Ann's other device, Bob and Cid.
    let c = ann
        .create_mls_group("plans", vec![bob_id.clone(), cid_id.clone()], false)
        .await
        .expect("created");
    let view = ann.conversation(&c).expect("known").clone();
    assert_eq!((view.protocol, view.epoch), (Protocol::Mls, Some(1)));
    assert_eq!(view.members.len(), 3);
    ann.send_text(&c, "hello", false).await.expect("sent");
    for device in [&mut ann2, &mut bob, &mut cid] {
        assert_eq!(texts(device, &c).await, ["hello"]);
        assert_eq!(epoch(device, &c), Some(1));
        assert_eq!(
            device.conversation(&c).map(|v| v.protocol),
            Some(Protocol::Mls)
        );
    }
    bob.send_text(&c, "hi all", false).await.expect("sent");
    assert_eq!(texts(&mut ann, &c).await, ["hello", "hi all"]);

    // Two commits on epoch 1: Bob's wins; Ann's is refused as stale, she
    // follows Bob's commit from her queue and succeeds on epoch 2.
    assert_eq!(bob.mls_update(&c).await.expect("bob's update"), 2);
    assert_eq!(ann.mls_update(&c).await.expect("ann's update, retried"), 3);
    for device in [&mut ann2, &mut bob, &mut cid] {
        device.sync().await.expect("synced");
        assert_eq!(epoch(device, &c), Some(3));
    }

    // Cid is removed and reads nothing that follows.
    ann.remove_member(&c, &cid_id).await.expect("removed");
    assert_eq!(ann.conversation(&c).map(|v| v.members.len()), Some(2));
    ann.send_text(&c, "without cid", false).await.expect("sent");
    assert_eq!(texts(&mut cid, &c).await, ["hello", "hi all"]);
    assert_eq!(
        texts(&mut bob, &c).await,
        ["hello", "hi all", "without cid"]
    );
    // Bob's history says so, from the commit itself.
    assert!(
        history(&mut bob, &c)
            .await
            .iter()
            .any(|m| m.text == "Removed from the group: cid (1 device)."),
        "{:?}",
        history(&mut bob, &c).await
    );

    // A new device of Bob's joins his group by external commit by itself.
    let mut bob2 = w.device("bob", 2).await;
    bob2.sync().await.expect("synced");
    assert!(!bob2.conversation(&c).expect("known").rejoin);
    ann.send_text(&c, "hello bob's phone", false)
        .await
        .expect("sent");
    assert_eq!(texts(&mut bob2, &c).await, ["hello bob's phone"]);
    assert!(
        history(&mut bob2, &c)
            .await
            .iter()
            .any(|m| m.text.contains("joined the group"))
    );
    assert_eq!(
        texts(&mut bob, &c).await.last().map(String::as_str),
        Some("hello bob's phone")
    );
    assert!(
        history(&mut ann, &c)
            .await
            .iter()
            .any(|m| m.text == "A new device of bob joined the group.")
    );

    // Ann's second device falls behind: its group state goes back to an
    // old copy while Ann commits. It rejoins, says messages may be missing,
    // and reads what follows.
    let ann2_dir = w.dir("ann-2");
    ann2.sync().await.expect("synced");
    let old = group_rows(&ann2_dir).await;
    assert_eq!(ann.mls_update(&c).await.expect("update"), 6);
    ann2.sync().await.expect("synced");
    assert_eq!(epoch(&ann2, &c), Some(6));
    ann2.close().await;
    set_group_rows(&ann2_dir, &old).await;
    assert_eq!(ann.mls_update(&c).await.expect("update"), 7);
    let mut ann2 = Account::open(&ann2_dir, PASSPHRASE).await.expect("opens");
    ann2.sync().await.expect("synced and rejoined");
    assert!(!ann2.conversation(&c).expect("known").rejoin);
    assert!(
        history(&mut ann2, &c)
            .await
            .iter()
            .any(|m| m.text.contains("may be missing"))
    );
    bob.send_text(&c, "still there?", false)
        .await
        .expect("sent");
    assert_eq!(
        texts(&mut ann2, &c).await.last().map(String::as_str),
        Some("still there?")
    );

    // Bob's device loses its group state altogether: the same repair.
    let bob_dir = w.dir("bob-1");
    bob.close().await;
    set_group_rows(&bob_dir, &[]).await;
    let mut bob = Account::open(&bob_dir, PASSPHRASE).await.expect("opens");
    ann.send_text(&c, "bob?", false).await.expect("sent");
    bob.sync().await.expect("synced and rejoined");
    assert!(
        history(&mut bob, &c)
            .await
            .iter()
            .any(|m| m.text.contains("may be missing"))
    );
    ann.send_text(&c, "welcome back", false)
        .await
        .expect("sent");
    assert_eq!(
        texts(&mut bob, &c).await.last().map(String::as_str),
        Some("welcome back")
    );
    for device in [&mut ann, &mut ann2, &mut bob2] {
        assert_eq!(
            texts(device, &c).await.last().map(String::as_str),
            Some("welcome back")
        );
    }

    // Bob deletes his phone: the server proposes its removal, and the
    // first member's device to sync commits it, nobody doing anything.
    let epoch_before = epoch(&ann, &c).expect("an epoch");
    bob.remove_device(bob2.device_id(), PASSWORD)
        .await
        .expect("deleted");
    ann.sync().await.expect("synced");
    assert_eq!(epoch(&ann, &c), Some(epoch_before + 1));
    for device in [&mut ann2, &mut bob] {
        device.sync().await.expect("synced");
        assert_eq!(epoch(device, &c), Some(epoch_before + 1));
        assert!(
            history(device, &c)
                .await
                .iter()
                .any(|m| m.text == "Removed from the group: bob (1 device)."),
            "{:?}",
            history(device, &c).await
        );
    }

    // Bob leaves: the server proposes his devices' removal, a member
    // commits it, and he reads nothing that follows.
    bob.leave(&c).await.expect("left");
    ann2.sync().await.expect("synced");
    assert_eq!(epoch(&ann2, &c), Some(epoch_before + 2));
    ann.send_text(&c, "without bob", false).await.expect("sent");
    assert_eq!(
        texts(&mut ann2, &c).await.last().map(String::as_str),
        Some("without bob")
    );
    ann.sync().await.expect("synced");
    assert_eq!(ann.conversation(&c).map(|v| v.members.len()), Some(1));
    assert!(
        !texts(&mut bob, &c)
            .await
            .contains(&"without bob".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mls_conversations_on_sqlite() {
    story(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mls_conversations_on_postgres() {
    story(Backend::Postgres).await;
}

/// A Proteus group moves to MLS while one device lags: Cid's second device
/// is away the whole time. Only an admin starts it, one step at a time;
/// while mixed, messages go by Proteus; Ann's device makes the group with
/// every device (the away one by its key package), which ends the
/// migration at once. Bob, who has not heard, sends by Proteus: refused, his
/// message goes by MLS. The away device comes back and reads it all in
/// order: Proteus, then its welcome, then MLS; and writes by MLS. (A device
/// without key packages, which keeps a group mixed until it joins by
/// external commit, is the server's test: every device this SDK enrols is
/// ready for MLS.)
async fn migration(backend: Backend) {
    let Some(w) = World::on(backend).await else {
        return;
    };
    let mut ann = w.register("ann").await;
    let mut bob = w.register("bob").await;
    let mut cid = w.register("cid").await;
    connect(&mut ann, &mut bob).await;
    connect(&mut ann, &mut cid).await;
    let (bob_id, cid_id) = (ann.qualified(bob.user()), ann.qualified(cid.user()));
    let c = ann
        .create_group("migrating", vec![bob_id, cid_id], false)
        .await
        .expect("created");
    ann.send_text(&c, "by proteus", false).await.expect("sent");
    for device in [&mut bob, &mut cid] {
        assert_eq!(texts(device, &c).await, ["by proteus"]);
    }
    // Cid's second device: it logs in, then is away.
    let mut cid2 = w.device("cid", 2).await;

    // Only an admin starts it, and one step at a time.
    let refused = bob.migrate(&c).await.expect_err("bob is no admin");
    assert!(
        matches!(&refused, parley_client::ClientError::Api { status: 403, label, .. } if label == "action-denied"),
        "{refused:?}"
    );
    let early = ann.api().set_protocol(&c, Protocol::Mls).await;
    assert!(
        matches!(&early, Err(parley_client::ClientError::Api { status: 403, label, .. }) if label == "mls-invalid-protocol-transition"),
        "{early:?}"
    );
    ann.api()
        .set_protocol(&c, Protocol::Mixed)
        .await
        .expect("mixed");
    let empty = ann.api().set_protocol(&c, Protocol::Mls).await;
    assert!(
        matches!(&empty, Err(parley_client::ClientError::Api { status: 409, label, .. }) if label == "mls-migration-criteria-not-satisfied"),
        "{empty:?}"
    );

    // Mixed: messages still go by Proteus, to every device.
    bob.sync().await.expect("synced");
    assert_eq!(
        bob.conversation(&c).map(|v| v.protocol),
        Some(Protocol::Mixed)
    );
    bob.send_text(&c, "still proteus", false)
        .await
        .expect("sent");
    assert_eq!(texts(&mut cid, &c).await, ["by proteus", "still proteus"]);
    assert_eq!(
        cid.conversation(&c).map(|v| v.protocol),
        Some(Protocol::Mixed)
    );

    // Ann's device makes the group with all four devices: done at once.
    assert_eq!(
        ann.migrate(&c).await.expect("migrated"),
        parley_client::account::Migration::Mls
    );
    let view = ann.conversation(&c).expect("known").clone();
    assert_eq!((view.protocol, view.epoch), (Protocol::Mls, Some(1)));

    // Bob has not heard: his message, encrypted by Proteus, is refused and
    // goes by MLS.
    bob.send_text(&c, "switched", false).await.expect("sent");
    let view = bob.conversation(&c).expect("known").clone();
    assert_eq!((view.protocol, view.epoch), (Protocol::Mls, Some(1)));
    assert_eq!(
        texts(&mut cid, &c).await,
        ["by proteus", "still proteus", "switched"]
    );

    // The away device comes back: it reads everything in order, and
    // writes by MLS.
    assert_eq!(texts(&mut cid2, &c).await, ["still proteus", "switched"]);
    let view = cid2.conversation(&c).expect("known").clone();
    assert_eq!((view.protocol, view.epoch), (Protocol::Mls, Some(1)));
    cid2.send_text(&c, "from the laggard", false)
        .await
        .expect("sent");
    for device in [&mut ann, &mut bob] {
        assert_eq!(
            texts(device, &c).await.last().map(String::as_str),
            Some("from the laggard")
        );
    }
    assert!(
        history(&mut cid2, &c)
            .await
            .iter()
            .any(|m| m.text.starts_with("This conversation is MLS now")),
        "{:?}",
        history(&mut cid2, &c).await
    );
    assert_eq!(
        ann.migrate(&c).await.expect("done"),
        parley_client::account::Migration::Mls
    );
    let back = ann.api().set_protocol(&c, Protocol::Mixed).await;
    assert!(
        matches!(&back, Err(parley_client::ClientError::Api { status: 403, label, .. }) if label == "mls-invalid-protocol-transition"),
        "{back:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proteus_group_migrates_with_a_device_lagging_on_sqlite() {
    migration(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proteus_group_migrates_with_a_device_lagging_on_postgres() {
    migration(Backend::Postgres).await;
}

/// On each of the five suites a backend may be configured with, devices
/// publish key packages on it and new groups use it: a group of two people
/// and three devices, messages both ways, a self-update, a removal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_on_every_suite_the_backend_may_choose() {
    for suite in parley_mls::CipherSuite::SELECTABLE {
        let server = TestServer::start_on(Backend::Sqlite, |settings| {
            settings.mls_default_suite = suite;
        })
        .await
        .expect("SQLite");
        let w = World {
            server,
            dirs: tempfile::tempdir().expect("temp dir"),
        };
        let mut ann = w.register("ann").await;
        let mut bob = w.register("bob").await;
        let mut bob2 = w.device("bob", 2).await;
        connect(&mut ann, &mut bob).await;
        let bob_id = ann.qualified(bob.user());
        let c = ann
            .create_mls_group("suites", vec![bob_id.clone()], false)
            .await
            .expect("created");
        let view = ann.conversation(&c).expect("known").clone();
        assert_eq!(view.cipher_suite, Some(suite.0), "{suite}");
        ann.send_text(&c, "hello", false).await.expect("sent");
        assert_eq!(texts(&mut bob, &c).await, ["hello"], "{suite}");
        assert_eq!(texts(&mut bob2, &c).await, ["hello"], "{suite}");
        bob2.send_text(&c, "hi", false).await.expect("sent");
        assert_eq!(texts(&mut ann, &c).await, ["hello", "hi"], "{suite}");
        assert_eq!(bob.mls_update(&c).await.expect("update"), 2, "{suite}");
        ann.remove_member(&c, &bob_id).await.expect("removed");
        ann.send_text(&c, "alone", false).await.expect("sent");
        assert_eq!(texts(&mut bob2, &c).await, ["hello", "hi"], "{suite}");
    }
}

/// A commit whose reply never came (the server went down) stays pending;
/// the next operation settles it against the server: here the server never
/// had it, so it is dropped, and the group goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_without_an_answer_is_settled_later() {
    let w = World {
        server: TestServer::start().await,
        dirs: tempfile::tempdir().expect("temp dir"),
    };
    let mut ann = w.register("ann").await;
    let mut bob = w.register("bob").await;
    connect(&mut ann, &mut bob).await;
    let bob_id = ann.qualified(bob.user());
    let c = ann
        .create_mls_group("g", vec![bob_id], false)
        .await
        .expect("created");
    bob.sync().await.expect("synced");
    let World {
        server,
        dirs: _dirs,
    } = w;
    let restarted = tokio::spawn(server.restart(std::time::Duration::from_secs(3)));
    // Until the server is down.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ann.api().conversation(&c).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never stopped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let e = ann.mls_update(&c).await.expect_err("no server");
    assert!(e.is_away(), "{e}");
    let _server = restarted.await.expect("restarted");
    // The next sync settles it: the server never had it, so it is dropped.
    ann.sync().await.expect("synced");
    assert_eq!(epoch(&ann, &c), Some(1));
    assert_eq!(ann.mls_update(&c).await.expect("update"), 2);
    ann.send_text(&c, "after the outage", false)
        .await
        .expect("sent");
    assert_eq!(texts(&mut bob, &c).await, ["after the outage"]);
    assert_eq!(epoch(&bob, &c), Some(2));
}

fn call_epoch(a: &Account, c: &Qualified<ConversationId>) -> Option<u64> {
    a.call(c.id).map(|call| call.epoch)
}

fn call_secret(a: &Account, c: &Qualified<ConversationId>) -> Vec<u8> {
    a.call_key(c.id).expect("in the call").secret.to_vec()
}

/// A call in an MLS conversation: Ann starts it, Bob's devices join; every
/// participant derives one key per epoch, and each commit moves it on. Bob's
/// first device leaves and the others commit its removal by themselves at
/// their next sync; it derives nothing more. The conversation's messages go
/// on meanwhile. A reset ends the call for everyone: the next to join starts
/// a new one, and a device still holding the old one joins that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_an_mls_conversation() {
    let Some(w) = World::on(Backend::Sqlite).await else {
        return;
    };
    let mut ann = w.register("ann").await;
    let mut bob = w.register("bob").await;
    connect(&mut ann, &mut bob).await;
    let mut bob2 = w.device("bob", 2).await;
    let bob_id = ann.qualified(bob.user());
    let c = ann
        .create_mls_group("calls", vec![bob_id], false)
        .await
        .expect("created");
    for device in [&mut bob, &mut bob2] {
        device.sync().await.expect("synced");
    }

    let started = ann.join_call(&c).await.expect("started");
    assert_eq!(started.epoch, 1);
    assert!(!format!("{started:?}").contains(&format!("{:?}", started.secret.as_slice())));
    let joined = bob.join_call(&c).await.expect("joined");
    assert_eq!(joined.epoch, 2);
    ann.sync().await.expect("synced");
    assert_eq!(call_epoch(&ann, &c), Some(2));
    assert_eq!(call_secret(&ann, &c), joined.secret.to_vec());
    let at_two = call_secret(&ann, &c);
    // Asking again changes nothing.
    assert_eq!(bob.join_call(&c).await.expect("in").epoch, 2);

    let third = bob2.join_call(&c).await.expect("joined");
    assert_eq!(third.epoch, 3);
    for device in [&mut ann, &mut bob] {
        device.sync().await.expect("synced");
        assert_eq!(call_epoch(device, &c), Some(3));
        assert_eq!(call_secret(device, &c), third.secret.to_vec());
    }
    assert_ne!(third.secret.to_vec(), at_two);
    // The conversation goes on beside its call.
    ann.send_text(&c, "during the call", false)
        .await
        .expect("sent");
    assert_eq!(texts(&mut bob2, &c).await, ["during the call"]);

    // Bob's first device leaves; Ann's next sync commits its removal.
    bob.leave_call(&c).await.expect("left");
    assert!(bob.call(c.id).is_none());
    ann.sync().await.expect("synced");
    assert_eq!(call_epoch(&ann, &c), Some(4));
    bob2.sync().await.expect("synced");
    assert_eq!(call_epoch(&bob2, &c), Some(4));
    assert_eq!(call_secret(&ann, &c), call_secret(&bob2, &c));
    bob.sync().await.expect("synced");
    assert!(bob.call(c.id).is_none());

    // A reset ends it for everyone in it (told, and said in the
    // conversation); Ann starts a new one, and Bob's second device joins.
    ann.reset_call(&c).await.expect("reset");
    assert!(ann.call(c.id).is_none());
    bob2.sync().await.expect("synced");
    assert!(bob2.call(c.id).is_none());
    assert!(
        history(&mut bob2, &c)
            .await
            .iter()
            .any(|m| m.text.starts_with("The call was reset")),
        "{:?}",
        history(&mut bob2, &c).await
    );
    assert_eq!(ann.join_call(&c).await.expect("started").epoch, 1);
    let again = bob2.join_call(&c).await.expect("joined");
    assert_eq!(again.epoch, 2);
    ann.sync().await.expect("synced");
    assert_eq!(call_secret(&ann, &c), again.secret.to_vec());
}
