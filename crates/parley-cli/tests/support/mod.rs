//! Running the `parley` binary as a person would, for the CLI tests.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Output;

use parley_testkit::TestServer;
use serde_json::Value;

pub const PASSWORD: &str = "Secret-123!";

/// One person's device directory, driven through the binary.
pub struct Person {
    /// The device directory.
    pub dir: PathBuf,
}

impl Person {
    pub fn new(root: &Path, name: &str) -> Self {
        Self {
            dir: root.join(name),
        }
    }

    /// Runs `parley --json <args>` for this person in a blocking thread.
    pub async fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[]).await
    }

    /// Runs with extra environment (crash points).
    pub async fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
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
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null());
        tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs"))
            .await
            .expect("joined")
    }

    /// Runs `parley <args>` (text for people, not JSON) and expects success;
    /// what it printed.
    pub async fn text(&self, args: &[&str]) -> String {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_parley"));
        cmd.args(args)
            .env("PARLEY_DIR", &self.dir)
            .env("PARLEY_PASSPHRASE", "local passphrase")
            .stdin(std::process::Stdio::null());
        let out = tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs"))
            .await
            .expect("joined");
        assert!(
            out.status.success(),
            "parley {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and expects success; the JSON it printed.
    pub async fn ok(&self, args: &[&str]) -> Value {
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
    pub async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(!out.status.success(), "parley {args:?} should fail");
        let v: Value = serde_json::from_slice(&out.stdout).expect("an error as JSON");
        v["error"].as_str().expect("a label").to_owned()
    }

    pub async fn register(&self, s: &TestServer, name: &str) {
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
