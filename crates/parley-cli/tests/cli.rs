//! The `parley` binary, run as a person or a script would, against a real
//! server on a loopback port: every step is a separate process with `--json`.

mod support;

use parley_testkit::TestServer;
use serde_json::Value;
use support::Person;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_chat_from_the_command_line() {
    let s = TestServer::start().await;
    let root = tempfile::tempdir().expect("temp dir");
    let alice = Person::new(root.path(), "alice");
    let bob = Person::new(root.path(), "bob");
    alice.register(&s, "alice").await;
    bob.register(&s, "bob").await;

    // Connect.
    alice.ok(&["connect", "bob"]).await;
    let requests = bob.ok(&["requests"]).await;
    assert_eq!(requests[0]["name"], "alice");
    assert_eq!(requests[0]["handle"], "alice");
    assert_eq!(bob.text(&["requests"]).await.trim(), "alice (@alice)");
    bob.ok(&["accept", "alice"]).await;
    let convs = alice.ok(&["convs"]).await;
    assert_eq!(convs[0]["name"], "bob");

    // Talk.
    alice.ok(&["send", "bob", "hi from the command line"]).await;
    let history = bob.ok(&["history", "alice"]).await;
    assert_eq!(history["messages"][0]["text"], "hi from the command line");
    assert_eq!(history["messages"][0]["from_name"], "alice");

    // Listen: a second process prints what arrives while it runs.
    let listener = {
        let dir = bob.dir.clone();
        tokio::spawn(async move {
            Person { dir }
                .run(&["listen", "--count", "1", "--seconds", "30"])
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let sent = alice.ok(&["send", "bob", "are you there?"]).await;
    let out = listener.await.expect("listener");
    let line: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(line["text"], "are you there?");
    assert_eq!(line["id"], sent["sent"]);

    // A group, an edit, a reaction.
    alice.ok(&["create", "team", "bob", "--receipts"]).await;
    let sent = alice.ok(&["send", "team", "standup at 10"]).await;
    let id = sent["sent"].as_str().expect("id")[..8].to_owned();
    alice.ok(&["edit", "team", &id, "standup at 11"]).await;
    bob.ok(&["react", "team", &id, "👍"]).await;
    let history = alice.ok(&["history", "team"]).await;
    let m = &history["messages"][0];
    assert_eq!(
        (m["text"].as_str(), m["edited"].as_bool()),
        (Some("standup at 11"), Some(true))
    );
    // Reactions are keyed by the reacting user's id (names change and repeat).
    let bob_id = alice.ok(&["fingerprint", "bob"]).await["devices"][0]["user"].clone();
    let bob_id = bob_id.as_str().expect("an id");
    assert_eq!(m["reactions"][bob_id], "👍", "{m}");
    // Someone else's message cannot be edited or deleted for everyone: a
    // labelled refusal and a failing exit, not "Edited." and no change.
    assert_eq!(
        bob.fails(&["edit", "team", &id, "mine now"]).await,
        "not-yours"
    );
    assert_eq!(
        bob.fails(&["delete", "team", &id, "--everyone"]).await,
        "not-yours"
    );
    let history = alice.ok(&["history", "team"]).await;
    assert_eq!(history["messages"][0]["text"], "standup at 11", "unchanged");

    // Verify Alice's device by fingerprint: the 1:1 becomes verified.
    let mine = alice.ok(&["fingerprint"]).await;
    let seen = bob.ok(&["fingerprint", "alice"]).await;
    assert_eq!(seen["devices"][0]["fingerprint"], mine["fingerprint"]);
    // Alice's root key as Bob sees it is the one Alice has, and both see one
    // safety number.
    assert_eq!(seen["root_fingerprint"], mine["root_fingerprint"], "{seen}");
    let theirs = alice.ok(&["fingerprint", "bob"]).await;
    assert!(seen["safety_number"].is_string(), "{seen}");
    assert_eq!(seen["safety_number"], theirs["safety_number"]);
    let device = mine["device"].as_str().expect("device").to_owned();
    let wrong = bob
        .fails(&[
            "verify",
            "alice",
            "--device",
            &device,
            "--fingerprint",
            "00ff",
        ])
        .await;
    assert_eq!(wrong, "wrong-fingerprint");
    bob.ok(&[
        "verify",
        "alice",
        "--device",
        &device,
        "--fingerprint",
        mine["fingerprint"].as_str().expect("fp"),
    ])
    .await;
    let convs = bob.ok(&["convs"]).await;
    let one2one = convs
        .as_array()
        .expect("list")
        .iter()
        .find(|c| c["name"] == "alice")
        .expect("the 1:1");
    assert_eq!(one2one["verification"], "verified");

    // Errors a person can act on, with stable labels.
    assert_eq!(
        bob.fails(&["send", "nowhere", "x"]).await,
        "no-such-conversation"
    );
    for not_a_server in ["not-a-url", "ftp://example.com"] {
        assert_eq!(bob.fails(&["server", not_a_server]).await, "bad-url");
    }
    let stranger = Person::new(root.path(), "nobody");
    assert_eq!(stranger.fails(&["convs"]).await, "local-store");

    // Backup: exported, imported by Alice, refused for Bob.
    let file = root.path().join("alice.backup");
    let file = file.to_str().expect("utf-8 path");
    alice.ok(&["backup", "export", file]).await;
    let imported = alice.ok(&["backup", "import", file]).await;
    assert_eq!(imported["imported"], 0, "nothing new on the same device");
    assert_eq!(
        bob.fails(&["backup", "import", file]).await,
        "other-users-backup"
    );
    let wrong = alice
        .run_with(
            &["backup", "import", file],
            &[("PARLEY_BACKUP_PASSWORD", "not the password")],
        )
        .await;
    assert!(!wrong.status.success(), "a wrong backup password fails");
    let said: serde_json::Value = serde_json::from_slice(&wrong.stdout).expect("an error as JSON");
    assert_eq!(said["error"], "wrong-backup-password", "{said}");

    // Devices and logout.
    let devices = alice.ok(&["devices"]).await;
    assert_eq!(devices[0]["this_device"], true);
    alice.ok(&["logout"]).await;
    assert_eq!(alice.fails(&["convs"]).await, "not-logged-in");
    // A logout can be undone: the same device logs in again, with its history;
    // another account's credentials are refused and change nothing.
    assert_eq!(
        alice.fails(&["login", "--email", "bob@example.com"]).await,
        "other-account"
    );
    assert_eq!(alice.fails(&["convs"]).await, "not-logged-in");
    let again = alice.ok(&["login", "--email", "alice@example.com"]).await;
    assert_eq!(again["device"], devices[0]["client"], "the same device");
    let history = alice.ok(&["history", "team"]).await;
    assert_eq!(history["messages"][0]["text"], "standup at 11");
    alice.ok(&["logout"]).await;

    for needle in ["hi from the command line", "standup at 1"] {
        assert!(!s.database_contains(needle.as_bytes()));
    }
}

/// Wickr's hardened mode: the recovery code is printed once, the server never
/// gets what opens the bundle, and a new device needs the code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hardened_account_adds_a_device_only_with_its_recovery_code() {
    let s = TestServer::start().await;
    let root = tempfile::tempdir().expect("temp dir");
    let first = Person::new(root.path(), "dana-1");
    first.ok(&["server", &s.url()]).await;
    let email = "dana@example.com";
    first
        .ok(&["register", "--email", email, "--name", "dana"])
        .await;
    let code = s.code_for(email);
    let v = first
        .ok(&[
            "register",
            "--email",
            email,
            "--name",
            "dana",
            "--code",
            &code,
            "--hardened",
        ])
        .await;
    let recovery = v["recovery_code"]
        .as_str()
        .expect("a recovery code")
        .to_owned();
    let root_fp = v["root_fingerprint"].as_str().expect("root").to_owned();

    let second = Person::new(root.path(), "dana-2");
    second.ok(&["server", &s.url()]).await;
    // The recovery passphrase of the environment is not the code: refused.
    assert_eq!(
        second.fails(&["login", "--email", email]).await,
        "wrong-recovery-passphrase"
    );
    // Nothing of the failed attempt stays: the same directory takes the right
    // code with another local passphrase.
    let retry = second
        .run_with(
            &["login", "--email", email],
            &[
                ("PARLEY_RECOVERY_PASSPHRASE", &recovery),
                ("PARLEY_PASSPHRASE", "dana: a second local passphrase"),
            ],
        )
        .await;
    assert!(
        retry.status.success(),
        "{}",
        String::from_utf8_lossy(&retry.stderr)
    );
    let third = Person::new(root.path(), "dana-3");
    third.ok(&["server", &s.url()]).await;
    let out = third
        .run_with(
            &["login", "--email", email],
            &[("PARLEY_RECOVERY_PASSPHRASE", &recovery)],
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["root_fingerprint"], root_fp.as_str());
}

/// Registration is all or nothing: a taken handle creates no account and no
/// device, and the same code then works with another handle. The handle and
/// the name can be changed later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_handle_leaves_nothing_behind_and_handles_name_conversations() {
    let s = TestServer::start().await;
    let root = tempfile::tempdir().expect("temp dir");
    let ann = Person::new(root.path(), "ann");
    ann.register(&s, "ann").await;
    let other = Person::new(root.path(), "other");
    other.ok(&["server", &s.url()]).await;
    let email = "other@example.com";
    other
        .ok(&["register", "--email", email, "--name", "Other"])
        .await;
    let code = s.code_for(email);
    let register = |handle: &'static str| {
        [
            "register", "--email", email, "--name", "Other", "--code", &code, "--handle", handle,
        ]
        .map(str::to_owned)
    };
    let taken = register("ann");
    let args: Vec<&str> = taken.iter().map(String::as_str).collect();
    assert_eq!(other.fails(&args).await, "handle-exists");
    let free = register("otto");
    let args: Vec<&str> = free.iter().map(String::as_str).collect();
    let v = other.ok(&args).await;
    assert!(v["device"].is_string(), "{v}");
    // Others find the new account by its handle.
    ann.ok(&["connect", "otto"]).await;

    other.ok(&["profile", "--name", "Otto Other"]).await;
    assert_eq!(
        other.fails(&["profile", "--handle", "ann"]).await,
        "handle-exists"
    );
    other.ok(&["profile", "--handle", "otto2"]).await;
    ann.ok(&["connect", "otto2"]).await;
    assert_eq!(ann.fails(&["connect", "otto"]).await, "not-found");

    // A 1:1 answers to the other person's handle, whatever their name; two
    // groups with one name are told apart by id, not guessed.
    other.ok(&["accept", "ann"]).await;
    ann.ok(&["convs"]).await;
    ann.ok(&["send", "otto2", "by handle"]).await;
    ann.ok(&["send", "@otto2", "by @handle"]).await;
    let history = other.ok(&["history", "ann"]).await;
    assert_eq!(
        history["messages"].as_array().map(Vec::len),
        Some(2),
        "{history}"
    );
    ann.ok(&["create", "dup", "otto2"]).await;
    ann.ok(&["create", "dup", "otto2"]).await;
    assert_eq!(ann.fails(&["send", "dup", "?"]).await, "ambiguous");
    assert_eq!(
        ann.fails(&["send", "nobody", "?"]).await,
        "no-such-conversation"
    );
}

/// `parley listen` outlives a server restart: it says it is reconnecting,
/// backs off, and prints what arrives once the server is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_reconnects_when_the_server_restarts() {
    let s = TestServer::start().await;
    let root = tempfile::tempdir().expect("temp dir");
    let (alice, bob) = alice_and_bob(&s, root.path()).await;
    alice.ok(&["convs"]).await;
    let listener = {
        let dir = bob.dir.clone();
        tokio::spawn(async move {
            Person { dir }
                .run(&["listen", "--count", "1", "--seconds", "60"])
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let _s = s.restart(std::time::Duration::from_secs(3)).await;
    alice.ok(&["send", "bob", "after the restart"]).await;
    let out = listener.await.expect("listener");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("reconnecting in"), "{stderr}");
    let line: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(line["text"], "after the restart");
}

/// A reply quotes what it answers; search finds words in the local history;
/// a muted conversation says so; leaving a group keeps its history and stops
/// sending to it; a block stops both sides until it is taken back. Each
/// refusal has its label and a failing exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_search_mute_leave_and_block() {
    let s = TestServer::start().await;
    let root = tempfile::tempdir().expect("temp dir");
    let (alice, bob) = alice_and_bob(&s, root.path()).await;
    alice.ok(&["create", "team", "bob"]).await;
    let sent = alice.ok(&["send", "team", "Standup at 11?"]).await;
    let original = sent["sent"].as_str().expect("id").to_owned();

    // Bob replies by the id's first characters; both see a reply.
    let replied = bob
        .ok(&["reply", "team", &original[..8], "yes, I will be there"])
        .await;
    assert_eq!(replied["reply_to"], original.as_str());
    let history = alice.ok(&["history", "team"]).await;
    let reply = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["text"] == "yes, I will be there")
        .expect("the reply arrived");
    assert_eq!(reply["reply_to"], original.as_str(), "{reply}");
    let text = alice.text(&["history", "team"]).await;
    assert!(
        text.contains("bob (replying to you: \"Standup at 11?\"): yes, I will be there"),
        "{text}"
    );
    // A text of several lines stays one entry: its further lines are indented.
    alice.ok(&["send", "team", "agenda:\n- demo"]).await;
    let text = alice.text(&["history", "team"]).await;
    assert!(text.contains("] you: agenda:\n           - demo"), "{text}");
    assert_eq!(
        bob.fails(&["reply", "team", "00000000", "?"]).await,
        "no-such-message"
    );
    assert_eq!(
        bob.fails(&["react", "team", "ffffffff", "👍"]).await,
        "no-such-message"
    );

    // Search: case-insensitive, everywhere or in one conversation.
    let found = alice.ok(&["search", "STANDUP"]).await;
    let found = found.as_array().expect("a list");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["conversation_name"], "team");
    assert_eq!(found[0]["id"], original.as_str());
    assert_eq!(
        alice.ok(&["search", "standup", "--conv", "bob"]).await,
        serde_json::json!([])
    );
    let text = alice.text(&["search", "will be"]).await;
    assert!(
        text.starts_with("team  ") && text.contains("bob (replying to"),
        "{text}"
    );
    assert_eq!(alice.fails(&["search", " "]).await, "empty-search");

    // Mute is this device's: the list says it.
    alice.ok(&["mute", "team"]).await;
    let convs = alice.ok(&["convs"]).await;
    let team = |convs: &Value| {
        convs
            .as_array()
            .expect("list")
            .iter()
            .find(|c| c["name"] == "team")
            .expect("team")
            .clone()
    };
    assert_eq!(team(&convs)["muted"], true);
    alice.ok(&["mute", "team", "--off"]).await;
    assert_eq!(team(&alice.ok(&["convs"]).await)["muted"], false);

    // Leaving: the history stays; nothing more is sent; a 1:1 is not left.
    assert_eq!(bob.fails(&["leave", "alice"]).await, "one-to-one");
    bob.ok(&["leave", "team"]).await;
    assert_eq!(
        bob.fails(&["send", "team", "still here?"]).await,
        "not-a-member"
    );
    assert_eq!(bob.fails(&["leave", "team"]).await, "not-a-member");
    let kept = bob.ok(&["history", "team"]).await;
    assert_eq!(kept["messages"][0]["text"], "Standup at 11?", "{kept}");
    let text = alice.text(&["history", "team"]).await;
    assert!(text.contains("* bob left."), "{text}");
    alice.ok(&["send", "team", "only me now"]).await;

    // Blocking stops both sides; unblocking brings the 1:1 back.
    alice.ok(&["block", "bob"]).await;
    assert_eq!(bob.fails(&["send", "alice", "hello?"]).await, "blocked");
    assert_eq!(alice.fails(&["send", "bob", "hello?"]).await, "blocked");
    alice.ok(&["unblock", "bob"]).await;
    bob.ok(&["send", "alice", "hello again"]).await;
    let history = alice.ok(&["history", "bob"]).await;
    assert!(
        history["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .any(|m| m["text"] == "hello again"),
        "{history}"
    );
    assert_eq!(alice.fails(&["unblock", "nobody-here"]).await, "not-found");
}

/// Alice and Bob, registered and connected (their 1:1 exists).
async fn alice_and_bob(s: &TestServer, root: &std::path::Path) -> (Person, Person) {
    let alice = Person::new(root, "alice");
    let bob = Person::new(root, "bob");
    alice.register(s, "alice").await;
    bob.register(s, "bob").await;
    alice.ok(&["connect", "bob"]).await;
    bob.ok(&["accept", "alice"]).await;
    (alice, bob)
}
