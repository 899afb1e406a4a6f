//! The `proteus-interop` binary, driven as an outside test would: two processes, one
//! per device, talking only through the line protocol.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

struct Driver {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Driver {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_proteus-interop"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the driver binary starts");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one command and returns the reply line.
    fn call(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").expect("driver reads commands");
        self.stdin.flush().expect("flush");
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).expect("driver replies");
        reply.trim_end_matches('\n').to_owned()
    }

    /// Sends a command that must succeed and returns its results.
    fn ok(&mut self, line: &str) -> Vec<String> {
        let reply = self.call(line);
        let mut words = reply.split(' ');
        assert_eq!(words.next(), Some("ok"), "{line:?} -> {reply:?}");
        words.map(str::to_owned).collect()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_drivers_open_a_session_and_talk_both_ways() {
    let mut alice = Driver::start();
    let mut bob = Driver::start();
    let alice_key = alice.ok("new-identity").remove(0);
    let bob_key = bob.ok("new-identity").remove(0);
    let bundle = bob.ok("new-prekey 7").remove(0);

    let sa = alice.ok(&format!("init-from-bundle {bundle}")).remove(0);
    let hello = hex::encode("hello bob");
    let env = alice.ok(&format!("encrypt {sa} {hello}")).remove(0);
    let reply = bob.ok(&format!("init-from-message {env}"));
    let (sb, plain) = (&reply[0], &reply[1]);
    assert_eq!(plain, &hello);
    assert_eq!(bob.ok(&format!("fingerprint-remote {sb}"))[0], alice_key);
    assert_eq!(alice.ok(&format!("fingerprint-remote {sa}")), [bob_key]);

    // The prekey is gone: the same message cannot open a second session.
    assert_eq!(
        bob.call(&format!("init-from-message {env}")),
        "err 101 PreKeyNotFound"
    );
    // A replay into the existing session is a duplicate.
    assert_eq!(
        bob.call(&format!("decrypt {sb} {env}")),
        "err 209 DuplicateMessage"
    );

    for i in 0..5 {
        let text = hex::encode(format!("ping {i}"));
        let env = bob.ok(&format!("encrypt {sb} {text}")).remove(0);
        assert_eq!(alice.ok(&format!("decrypt {sa} {env}"))[0], text);
        let env = alice.ok(&format!("encrypt {sa} {text}")).remove(0);
        assert_eq!(bob.ok(&format!("decrypt {sb} {env}"))[0], text);
    }

    // Sessions and identities survive save and load, even into a new process.
    let saved_identity = bob.ok("save-identity").remove(0);
    let saved_session = bob.ok(&format!("save-session {sb}")).remove(0);
    drop(bob);
    let mut bob = Driver::start();
    bob.ok(&format!("load-identity {saved_identity}"));
    let sb = bob.ok(&format!("load-session {saved_session}")).remove(0);
    let env = alice
        .ok(&format!("encrypt {sa} {}", hex::encode("after restart")))
        .remove(0);
    assert_eq!(
        bob.ok(&format!("decrypt {sb} {env}")),
        [hex::encode("after restart")]
    );

    // An empty plaintext is an empty argument and an empty result.
    let env = alice.ok(&format!("encrypt {sa}")).remove(0);
    assert_eq!(bob.call(&format!("decrypt {sb} {env}")), "ok ");
}

#[test]
fn the_last_resort_prekey_serves_many_sessions() {
    let mut bob = Driver::start();
    bob.ok("new-identity");
    let bundle = bob.ok("last-resort-prekey").remove(0);
    for _ in 0..3 {
        let mut alice = Driver::start();
        alice.ok("new-identity");
        let sa = alice.ok(&format!("init-from-bundle {bundle}")).remove(0);
        let env = alice.ok(&format!("encrypt {sa} 00ff")).remove(0);
        assert_eq!(bob.ok(&format!("init-from-message {env}"))[1], "00ff");
    }
}

#[test]
fn bad_input_gets_an_error_line_not_a_crash() {
    let mut d = Driver::start();
    assert_eq!(d.call("save-identity"), "err 4 NoIdentity");
    d.ok("new-identity");
    assert_eq!(d.call("frobnicate"), "err 1 BadCommand");
    assert_eq!(d.call("new-prekey seventy"), "err 1 BadCommand");
    assert_eq!(d.call("init-from-bundle zz"), "err 3 DecodeError");
    assert_eq!(d.call("init-from-bundle a0"), "err 3 DecodeError");
    assert_eq!(d.call("decrypt 12345678 00"), "err 2 UnknownSession");
    assert_eq!(d.call("init-from-message a0"), "err 3 DecodeError");
    // Still alive.
    assert_eq!(d.ok("new-prekey 0x2a").len(), 1);
}
