//! A device's state under the ways people actually run it: a `listen` in one
//! terminal while sends run in others, and processes that die at the worst
//! moment (aborted at named crash points, as a SIGKILL would end them). After
//! each, nothing is lost, nothing is shown twice, and no message key is used
//! twice: the peer decrypts every message.

mod support;

use std::collections::BTreeMap;

use parley_client::store::{Store, Table};
use parley_testkit::TestServer;
use serde_json::Value;
use support::Person;

/// Ann and Ben, connected, with their 1:1 conversation.
async fn ann_and_ben(s: &TestServer, root: &std::path::Path) -> (Person, Person) {
    let ann = Person::new(root, "ann");
    let ben = Person::new(root, "ben");
    ann.register(s, "ann").await;
    ben.register(s, "ben").await;
    ann.ok(&["connect", "ben"]).await;
    ben.ok(&["accept", "ann"]).await;
    (ann, ben)
}

/// How many times each text appears in a history, and whether anything in it
/// could not be decrypted.
fn census(history: &Value) -> (BTreeMap<String, usize>, Vec<String>) {
    let mut counts = BTreeMap::new();
    let mut unreadable = Vec::new();
    for m in history["messages"].as_array().expect("messages") {
        match m["kind"]["kind"].as_str() {
            Some("text") => {
                *counts
                    .entry(m["text"].as_str().unwrap_or_default().to_owned())
                    .or_insert(0) += 1;
            }
            Some("undecryptable") => unreadable.push(m.to_string()),
            _ => {}
        }
    }
    (counts, unreadable)
}

/// Each text is in the census exactly once.
fn once(census: &BTreeMap<String, usize>, texts: impl IntoIterator<Item = String>, whose: &str) {
    for text in texts {
        assert_eq!(
            census.get(&text),
            Some(&1),
            "{text:?} at {whose}: {census:?}"
        );
    }
}

/// A conversation as `parley convs` lists it, by name.
async fn conversation(person: &Person, name: &str) -> Value {
    let convs = person.ok(&["convs"]).await;
    convs
        .as_array()
        .expect("a list")
        .iter()
        .find(|c| c["name"] == name)
        .expect("listed")
        .clone()
}

/// Runs a command that must die at a crash point.
async fn crashes(person: &Person, args: &[&str], point: &str) {
    let spec = format!("{point}=return");
    let out = person.run_with(args, &[("FAILPOINTS", &spec)]).await;
    assert!(
        !out.status.success() && out.status.code().is_none(),
        "parley {args:?} should have been killed at {point}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_and_twenty_senders_share_one_device() {
    let s = TestServer::start().await;
    let root = tempfile::tempdir().expect("temp dir");
    let (ann, ben) = ann_and_ben(&s, root.path()).await;
    let carol = Person::new(root.path(), "carol");
    carol.register(&s, "carol").await;
    carol.ok(&["connect", "ben"]).await;
    ben.ok(&["accept", "carol"]).await;

    // Ben keeps a listener open on his device...
    let listener = {
        let dir = ben.dir.clone();
        tokio::spawn(async move { Person { dir }.run(&["listen", "--seconds", "15"]).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // ...while twenty sends run from other terminals on the same device, and
    // Carol writes to him (so the listener and the senders, which sync first,
    // all apply what arrives: each message exactly once).
    let mut sends = Vec::new();
    for i in 0..20 {
        let dir = ben.dir.clone();
        sends.push(tokio::spawn(async move {
            Person { dir }.ok(&["send", "ann", &format!("P{i}")]).await
        }));
    }
    for i in 0..10 {
        carol.ok(&["send", "ben", &format!("C{i}")]).await;
    }
    for send in sends {
        send.await.expect("a send ran");
    }
    let out = listener.await.expect("listener");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Ann decrypts every one of the twenty: no chain position was used twice
    // (a reused key would arrive as a duplicate or fail to decrypt).
    let (at_ann, unreadable) = census(&ann.ok(&["history", "ben"]).await);
    assert!(unreadable.is_empty(), "{unreadable:?}");
    once(&at_ann, (0..20).map(|i| format!("P{i}")), "Ann");
    // Ben's own history has all twenty and all of Carol's, once each.
    let (at_ben, unreadable) = census(&ben.ok(&["history", "ann"]).await);
    assert!(unreadable.is_empty(), "{unreadable:?}");
    once(&at_ben, (0..20).map(|i| format!("P{i}")), "Ben");
    let (from_carol, _) = census(&ben.ok(&["history", "carol"]).await);
    once(
        &from_carol,
        (0..10).map(|i| format!("C{i}")),
        "Ben from Carol",
    );
    // And the conversation goes on both ways.
    ann.ok(&["send", "ben", "all twenty arrived"]).await;
    let (at_ben, _) = census(&ben.ok(&["history", "ann"]).await);
    assert_eq!(at_ben.get("all twenty arrived"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_while_sending_or_receiving_loses_and_repeats_nothing() {
    let s = TestServer::start().await;
    let root = tempfile::tempdir().expect("temp dir");
    let (ann, ben) = ann_and_ben(&s, root.path()).await;
    ben.ok(&["send", "ann", "before"]).await;
    ann.ok(&["history", "ben"]).await;

    // Killed after the encrypted message was committed, before it was posted:
    // the next run posts the same ciphertext from the outbox.
    crashes(
        &ben,
        &["send", "ann", "committed, not posted"],
        "send-after-commit",
    )
    .await;
    let history = ben.ok(&["history", "ann"]).await;
    assert!(
        history["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .any(|m| m["text"] == "committed, not posted" && m["pending"] == false),
        "posted from the outbox by the next run: {history}"
    );
    // Killed after the server accepted it, before the reply was recorded: the
    // next run posts the same ciphertext again, and Ann drops the duplicate.
    crashes(
        &ben,
        &["send", "ann", "posted, not recorded"],
        "send-after-post",
    )
    .await;
    let (at_ben, _) = census(&ben.ok(&["history", "ann"]).await);
    ben.ok(&["send", "ann", "after the crashes"]).await;

    // Ann: killed after decrypting but before committing, then after
    // committing: each message is applied exactly once.
    crashes(&ann, &["history", "ben"], "receive-before-commit").await;
    ben.ok(&["send", "ann", "one more"]).await;
    crashes(&ann, &["history", "ben"], "receive-after-commit").await;
    let (at_ann, unreadable) = census(&ann.ok(&["history", "ben"]).await);
    assert!(unreadable.is_empty(), "{unreadable:?}");
    for text in [
        "before",
        "committed, not posted",
        "posted, not recorded",
        "after the crashes",
        "one more",
    ] {
        assert_eq!(at_ann.get(text), Some(&1), "{text:?} at Ann: {at_ann:?}");
    }
    for text in ["before", "committed, not posted", "posted, not recorded"] {
        assert_eq!(at_ben.get(text), Some(&1), "{text:?} at Ben: {at_ben:?}");
    }
    // Nothing is left pending on Ben's device, and the conversation goes on.
    let history = ben.ok(&["history", "ann"]).await;
    assert!(
        history["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .all(|m| m["pending"] != true),
        "{history}"
    );
    ann.ok(&["send", "ben", "still talking"]).await;
    let (at_ben, unreadable) = census(&ben.ok(&["history", "ann"]).await);
    assert!(unreadable.is_empty(), "{unreadable:?}");
    assert_eq!(at_ben.get("still talking"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_conversations_work_with_the_server_down() {
    let s = TestServer::start().await;
    let root = tempfile::tempdir().expect("temp dir");
    let (ann, ben) = ann_and_ben(&s, root.path()).await;
    ann.ok(&["send", "ben", "kept on the device"]).await;
    ben.ok(&["history", "ann"]).await;
    s.stop().await;
    let (at_ben, _) = census(&ben.ok(&["history", "ann"]).await);
    assert_eq!(at_ben.get("kept on the device"), Some(&1));
    let convs = ben.ok(&["convs"]).await;
    assert_eq!(convs[0]["name"], "ann");
    ben.ok(&["fingerprint"]).await;
    // A message written now is committed and waits in the outbox, shown as
    // pending (the crash tests show the outbox going out later).
    let sent = ben.ok(&["send", "ann", "written offline"]).await;
    assert_eq!(sent["pending"], true, "{sent}");
    let history = ben.ok(&["history", "ann"]).await;
    let entry = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["text"] == "written offline")
        .cloned()
        .expect("in the history");
    assert_eq!(entry["pending"], true);

    // Deleted before it could go, it never will: its outbox entry is gone too.
    let id = sent["sent"].as_str().expect("id")[..8].to_owned();
    ben.ok(&["delete", "ann", &id]).await;
    let (at_ben, _) = census(&ben.ok(&["history", "ann"]).await);
    assert_eq!(at_ben.get("written offline"), None);
    let store = Store::open(&ben.dir, "local passphrase")
        .await
        .expect("ben's store");
    let mut tx = store.read().await.expect("read");
    let queued: Vec<Value> = tx
        .all(Table::Outbox)
        .await
        .expect("outbox")
        .iter()
        .map(|(_, row)| serde_json::from_slice(row).expect("an outbox row"))
        .collect();
    let full_id = sent["sent"].as_str().expect("id");
    assert!(
        queued.iter().all(|row| row["entry"] != full_id),
        "withdrawn from the outbox: {queued:?}"
    );
}

/// Ann's device dies while adding Carol to an MLS group: once before the
/// commit is posted (the server never had it: dropped at the next start),
/// once after the server took it (merged at the next start). Either way the
/// group goes on: everyone reads what follows, nothing is unreadable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_killed_in_the_middle_of_a_commit_recovers() {
    let s = TestServer::start().await;
    let root = tempfile::tempdir().expect("temp dir");
    let (ann, ben) = ann_and_ben(&s, root.path()).await;
    let carol = Person::new(root.path(), "carol");
    carol.register(&s, "carol").await;
    ann.ok(&["connect", "carol"]).await;
    carol.ok(&["accept", "ann"]).await;
    ann.ok(&["create", "--mls", "plans", "ben"]).await;

    // Dead between the server making the conversation and the device making
    // its group: the next start makes the group.
    crashes(
        &ann,
        &["create", "--mls", "orphan", "ben"],
        "mls-create-after-server",
    )
    .await;
    let out = ann.run(&["listen", "--seconds", "1"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ann.ok(&["add", "orphan", "ben"]).await;
    ann.ok(&["send", "orphan", "found"]).await;
    let (at_ben, unreadable) = census(&ben.ok(&["history", "orphan"]).await);
    assert!(unreadable.is_empty(), "{unreadable:?}");
    once(&at_ben, ["found".to_owned()], "Ben");

    crashes(&ann, &["add", "plans", "carol"], "mls-commit-before-post").await;
    ann.ok(&["send", "plans", "before"]).await;
    crashes(&ann, &["add", "plans", "carol"], "mls-commit-after-post").await;
    ann.ok(&["send", "plans", "after"]).await;

    let plans = conversation(&ann, "plans").await;
    assert_eq!(
        (
            plans["protocol"].as_str(),
            plans["epoch"].as_u64(),
            plans["members"].as_u64()
        ),
        (Some("mls"), Some(2), Some(3)),
        "{plans}"
    );
    let (at_ben, unreadable) = census(&ben.ok(&["history", "plans"]).await);
    assert!(unreadable.is_empty(), "{unreadable:?}");
    once(&at_ben, ["before".to_owned(), "after".to_owned()], "Ben");
    let (at_carol, unreadable) = census(&carol.ok(&["history", "plans"]).await);
    assert!(unreadable.is_empty(), "{unreadable:?}");
    once(&at_carol, ["after".to_owned()], "Carol");

    // Carol leaves: the server proposes her removal, a member's next sync
    // commits it, and she reads nothing that follows.
    carol.ok(&["leave", "plans"]).await;
    let out = ben.run(&["listen", "--seconds", "1"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ann.ok(&["send", "plans", "without carol"]).await;
    let (at_ben, unreadable) = census(&ben.ok(&["history", "plans"]).await);
    assert!(unreadable.is_empty(), "{unreadable:?}");
    once(&at_ben, ["without carol".to_owned()], "Ben");
    let (at_carol, _) = census(&carol.ok(&["history", "plans"]).await);
    assert!(!at_carol.contains_key("without carol"), "{at_carol:?}");
    let plans = conversation(&ann, "plans").await;
    assert_eq!(
        (plans["epoch"].as_u64(), plans["members"].as_u64()),
        (Some(3), Some(2)),
        "{plans}"
    );
}

/// `parley migrate` moves a Proteus group to MLS: only its admin may, every
/// device (all of them ready for MLS) is in the group at once, and what
/// was written before and after reads the same; a 1:1 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_moves_to_mls_from_the_command_line() {
    let s = TestServer::start().await;
    let root = tempfile::tempdir().expect("temp dir");
    let (ann, ben) = ann_and_ben(&s, root.path()).await;
    ann.ok(&["create", "old", "ben"]).await;
    ann.ok(&["send", "old", "by proteus"]).await;
    ben.ok(&["history", "old"]).await;
    assert_eq!(ben.fails(&["migrate", "old"]).await, "action-denied");
    let out = ann.ok(&["migrate", "old"]).await;
    assert_eq!(out["protocol"], "mls", "{out}");
    let old = conversation(&ann, "old").await;
    assert_eq!(
        (old["protocol"].as_str(), old["epoch"].as_u64()),
        (Some("mls"), Some(1)),
        "{old}"
    );
    ann.ok(&["send", "old", "by mls"]).await;
    let (at_ben, unreadable) = census(&ben.ok(&["history", "old"]).await);
    assert!(unreadable.is_empty(), "{unreadable:?}");
    once(
        &at_ben,
        ["by proteus".to_owned(), "by mls".to_owned()],
        "Ben",
    );
    let old = conversation(&ben, "old").await;
    assert_eq!(old["protocol"].as_str(), Some("mls"), "{old}");

    // A 1:1 goes the same way, by either of the two.
    let out = ben.ok(&["migrate", "ann"]).await;
    assert_eq!(out["protocol"], "mls", "{out}");
    ann.ok(&["send", "ben", "one to one by mls"]).await;
    let (at_ben, unreadable) = census(&ben.ok(&["history", "ann"]).await);
    assert!(unreadable.is_empty(), "{unreadable:?}");
    once(&at_ben, ["one to one by mls".to_owned()], "Ben");
    assert_eq!(
        conversation(&ann, "ben").await["protocol"].as_str(),
        Some("mls")
    );

    // A call in the group: both devices show one key, which leaving moves
    // on for the one who stays.
    let started = ann.ok(&["call", "join", "old"]).await;
    let joined = ben.ok(&["call", "join", "old"]).await;
    assert_eq!(joined["epoch"], 2, "{joined}");
    let at_ann = ann.ok(&["call", "status", "old"]).await;
    assert_eq!(
        (at_ann["epoch"].as_u64(), started["epoch"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(at_ann["key"], joined["key"], "{at_ann} {joined}");
    ben.ok(&["call", "leave", "old"]).await;
    assert_eq!(ben.ok(&["call", "status", "old"]).await["in_call"], false);
    let after = ann.ok(&["call", "status", "old"]).await;
    assert_eq!(after["epoch"], 3, "{after}");
    assert_ne!(after["key"], joined["key"]);
}
