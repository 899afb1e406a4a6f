//! The `parley` binary, run as a person or a script would, against a real
//! server on a loopback port: every step is a separate process with `--json`.

use std::path::{Path, PathBuf};
use std::process::Output;

use parley_testkit::TestServer;
use serde_json::Value;

const PASSWORD: &str = "Secret-123!";

struct Person {
    dir: PathBuf,
}

impl Person {
    fn new(root: &Path, name: &str) -> Self {
        Self {
            dir: root.join(name),
        }
    }

    /// Runs `parley --json <args>` for this person in a blocking thread.
    async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_parley"));
        cmd.arg("--json")
            .args(args)
            .env("PARLEY_DIR", &self.dir)
            .env("PARLEY_PASSPHRASE", "local passphrase")
            .env(
                "PARLEY_RECOVERY_PASSPHRASE",
                "violet harbour sings under copper rain",
            )
            .env("PARLEY_PASSWORD", PASSWORD)
            .env("PARLEY_BACKUP_PASSWORD", "backup password")
            .stdin(std::process::Stdio::null());
        tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs"))
            .await
            .expect("joined")
    }

    /// Runs and expects success; the JSON it printed.
    async fn ok(&self, args: &[&str]) -> Value {
        let out = self.run(args).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "parley {args:?} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("parley {args:?} printed no JSON ({e}): {stdout}"))
    }

    /// Runs and expects failure; the error label.
    async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(!out.status.success(), "parley {args:?} should fail");
        let v: Value = serde_json::from_slice(&out.stdout).expect("an error as JSON");
        v["error"].as_str().expect("a label").to_owned()
    }

    async fn register(&self, s: &TestServer, name: &str) {
        self.ok(&["server", &s.url()]).await;
        let email = format!("{name}@example.com");
        let v = self
            .ok(&["register", "--email", &email, "--name", name])
            .await;
        assert_eq!(v["code_sent"], email.as_str());
        let code = s.code_for(&email);
        let v = self
            .ok(&[
                "register", "--email", &email, "--name", name, "--code", &code, "--handle", name,
            ])
            .await;
        assert!(v["fingerprint"].as_str().is_some_and(|f| f.len() == 79));
    }
}

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
    assert_eq!(m["reactions"]["bob"], "👍");

    // Verify Alice's device by fingerprint: the 1:1 becomes verified.
    let mine = alice.ok(&["fingerprint"]).await;
    let seen = bob.ok(&["fingerprint", "alice"]).await;
    assert_eq!(seen[0]["fingerprint"], mine["fingerprint"]);
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
    assert_eq!(wrong, "crypto");
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
    assert_eq!(bob.fails(&["send", "nowhere", "x"]).await, "local-store");
    let stranger = Person::new(root.path(), "nobody");
    assert_eq!(stranger.fails(&["convs"]).await, "local-store");

    // Backup: exported, imported by Alice, refused for Bob.
    let file = root.path().join("alice.backup");
    let file = file.to_str().expect("utf-8 path");
    alice.ok(&["backup", "export", file]).await;
    let imported = alice.ok(&["backup", "import", file]).await;
    assert_eq!(imported["imported"], 0, "nothing new on the same device");
    assert_eq!(bob.fails(&["backup", "import", file]).await, "crypto");

    // Devices and logout.
    let devices = alice.ok(&["devices"]).await;
    assert_eq!(devices[0]["this_device"], true);
    alice.ok(&["logout"]).await;
    assert_eq!(alice.fails(&["convs"]).await, "not-logged-in");

    for needle in ["hi from the command line", "standup at 1"] {
        assert!(!s.database_contains(needle.as_bytes()));
    }
}
