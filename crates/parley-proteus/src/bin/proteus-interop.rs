//! `proteus-interop`: Parley's Proteus behind a line protocol on stdin/stdout, so any
//! other Proteus implementation can be paired with it by an outside test.
//!
//! One command per line; byte strings in lowercase hex; numbers (prekey ids) in
//! decimal or `0x`-prefixed hex. Each command gets exactly one reply line:
//! `ok [result ...]` or `err <code> <Name>` (codes as Wire's clients show them; the
//! driver's own: 1 BadCommand, 2 UnknownSession, 3 DecodeError, 4 NoIdentity).
//!
//! | command | reply |
//! |---|---|
//! | `new-identity` | `ok <identity public key>` (forgets prekeys and sessions) |
//! | `load-identity <identity>` | `ok <identity public key>` |
//! | `save-identity` | `ok <identity>` (the serialized identity key pair) |
//! | `new-prekey <id>` | `ok <bundle>` |
//! | `last-resort-prekey` | `ok <bundle>` (id 65535) |
//! | `init-from-bundle <bundle>` | `ok <session id>` |
//! | `init-from-message <envelope>` | `ok <session id> <plaintext>` |
//! | `encrypt <session id> <plaintext>` | `ok <envelope>` |
//! | `decrypt <session id> <envelope>` | `ok <plaintext>` |
//! | `save-session <session id>` | `ok <session>` |
//! | `load-session <session>` | `ok <session id>` |
//! | `fingerprint-remote <session id>` | `ok <remote identity public key>` |
//! | `fingerprint-local` | `ok <identity public key>` |
//!
//! An empty plaintext is an empty (or absent) argument, and an empty result leaves
//! `ok ` followed by nothing.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, Write};

use getrandom::SysRng;
use parley_proteus::{IdentityKeyPair, PreKey, PreKeyBundle, PreKeyId, ProteusError, Session};
use rand_core::UnwrapErr;

type Reply = Result<String, (u16, &'static str)>;

const NO_IDENTITY: (u16, &str) = (4, "NoIdentity");
const UNKNOWN_SESSION: (u16, &str) = (2, "UnknownSession");

struct Driver {
    identity: Option<IdentityKeyPair>,
    prekeys: HashMap<PreKeyId, PreKey>,
    sessions: BTreeMap<String, Session>,
    next_session: u32,
    rng: UnwrapErr<SysRng>,
}

fn protocol(e: ProteusError) -> (u16, &'static str) {
    (e.code(), e.name())
}

fn unhex(arg: Option<&str>) -> Result<Vec<u8>, (u16, &'static str)> {
    hex::decode(arg.unwrap_or("")).map_err(|_| (3, "DecodeError"))
}

fn number(arg: Option<&str>) -> Result<u16, (u16, &'static str)> {
    let arg = arg.ok_or((1, "BadCommand"))?;
    match arg.strip_prefix("0x") {
        Some(hex) => u16::from_str_radix(hex, 16),
        None => arg.parse(),
    }
    .map_err(|_| (1, "BadCommand"))
}

impl Driver {
    fn add_session(&mut self, session: Session) -> String {
        let id = format!("{:08x}", self.next_session);
        self.next_session += 1;
        self.sessions.insert(id.clone(), session);
        id
    }

    fn new_prekey(&mut self, id: PreKeyId) -> Reply {
        let prekey = PreKey::generate(id, &mut self.rng);
        let identity = self.identity.as_ref().ok_or(NO_IDENTITY)?;
        let bundle = PreKeyBundle::new(identity.public_key(), &prekey);
        self.prekeys.insert(id, prekey);
        Ok(hex::encode(bundle.serialize()))
    }

    fn handle(&mut self, line: &str) -> Reply {
        let mut words = line.split_whitespace();
        let command = words.next().unwrap_or("");
        let (a, b) = (words.next(), words.next());
        match command {
            "new-identity" => {
                let identity = IdentityKeyPair::generate(&mut self.rng);
                let public = identity.public_key().fingerprint();
                self.identity = Some(identity);
                self.prekeys.clear();
                self.sessions.clear();
                Ok(public)
            }
            "load-identity" => {
                let identity =
                    IdentityKeyPair::deserialize(&unhex(a)?).map_err(|e| protocol(e.into()))?;
                let public = identity.public_key().fingerprint();
                self.identity = Some(identity);
                Ok(public)
            }
            "save-identity" => Ok(hex::encode(
                self.identity.as_ref().ok_or(NO_IDENTITY)?.serialize(),
            )),
            "fingerprint-local" => Ok(self
                .identity
                .as_ref()
                .ok_or(NO_IDENTITY)?
                .public_key()
                .fingerprint()),
            "new-prekey" => self.new_prekey(PreKeyId(number(a)?)),
            "last-resort-prekey" => self.new_prekey(PreKeyId::LAST_RESORT),
            "init-from-bundle" => {
                let bundle =
                    PreKeyBundle::deserialize(&unhex(a)?).map_err(|e| protocol(e.into()))?;
                let identity = self.identity.as_ref().ok_or(NO_IDENTITY)?;
                let session = Session::init_from_bundle(identity, &bundle, &mut self.rng)
                    .map_err(protocol)?;
                Ok(self.add_session(session))
            }
            "init-from-message" => {
                let identity = self.identity.as_ref().ok_or(NO_IDENTITY)?;
                let (session, plaintext) = Session::init_from_message(
                    identity,
                    &mut self.prekeys,
                    &mut self.rng,
                    &unhex(a)?,
                )
                .map_err(protocol)?;
                Ok(format!(
                    "{} {}",
                    self.add_session(session),
                    hex::encode(plaintext)
                ))
            }
            "encrypt" => {
                let plaintext = unhex(b)?;
                let session = self
                    .sessions
                    .get_mut(a.unwrap_or(""))
                    .ok_or(UNKNOWN_SESSION)?;
                Ok(hex::encode(session.encrypt(&plaintext)))
            }
            "decrypt" => {
                let envelope = unhex(b)?;
                let identity = self.identity.as_ref().ok_or(NO_IDENTITY)?;
                let session = self
                    .sessions
                    .get_mut(a.unwrap_or(""))
                    .ok_or(UNKNOWN_SESSION)?;
                let plaintext = session
                    .decrypt(identity, &mut self.prekeys, &mut self.rng, &envelope)
                    .map_err(protocol)?;
                Ok(hex::encode(plaintext))
            }
            "save-session" => {
                let session = self.sessions.get(a.unwrap_or("")).ok_or(UNKNOWN_SESSION)?;
                Ok(hex::encode(session.serialize()))
            }
            "load-session" => {
                let session = Session::deserialize(&unhex(a)?).map_err(|e| protocol(e.into()))?;
                Ok(self.add_session(session))
            }
            "fingerprint-remote" => {
                let session = self.sessions.get(a.unwrap_or("")).ok_or(UNKNOWN_SESSION)?;
                Ok(session.remote_identity().fingerprint())
            }
            _ => Err((1, "BadCommand")),
        }
    }
}

fn main() -> io::Result<()> {
    let mut driver = Driver {
        identity: None,
        prekeys: HashMap::new(),
        sessions: BTreeMap::new(),
        next_session: 0,
        rng: UnwrapErr(SysRng),
    };
    let stdin = io::stdin();
    let mut out = io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match driver.handle(&line) {
            Ok(result) => writeln!(out, "ok {result}")?,
            Err((code, name)) => writeln!(out, "err {code} {name}")?,
        }
        out.flush()?;
    }
    Ok(())
}
