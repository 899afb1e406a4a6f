//! The encrypted local store (Wickr's "encrypted local storage"): one directory per
//! device, every record sealed with XChaCha20-Poly1305 under a key derived from the
//! user's passphrase with scrypt, so the files at rest reveal nothing: not the
//! content, not the record names, only their number and rough sizes.
//!
//! Layout: `store.json` holds the KDF salt and parameters and a sealed check value
//! (a wrong passphrase fails to open it, and says so); each record is a file named by
//! an HMAC of its name. A record file is `version ‖ nonce(24) ‖ ciphertext ‖ tag`, with
//! the record's name as associated data, so files cannot be swapped for each other.
//! Writes go to a temporary file that is synced and renamed over the old one, and the
//! directory is synced: a crash leaves the old record or the new one, never half.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::ClientError;

/// Format version of record files.
const RECORD_VERSION: u8 = 1;
/// The metadata file.
const META: &str = "store.json";
/// What the check value seals.
const CHECK: &[u8] = b"parley local store v1";
/// scrypt cost for new stores: N = 2^15, r = 8, p = 1 (32 MiB, ~0.1 s).
const LOG_N: u8 = 15;

#[derive(Serialize, Deserialize)]
struct Meta {
    version: u8,
    kdf: String,
    log_n: u8,
    r: u32,
    p: u32,
    salt: String,
    check: String,
}

/// An open store. Holds the derived keys (zeroized on drop; never in `Debug`).
pub struct LocalStore {
    dir: PathBuf,
    seal: Key,
    names: Key,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> ClientError {
    ClientError::Storage(format!("{what} {}: {e}", path.display()))
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn random<const N: usize>() -> Result<[u8; N], ClientError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| ClientError::Storage(format!("no randomness: {e}")))?;
    Ok(b)
}

/// A 256-bit key, wiped when dropped.
type Key = Zeroizing<[u8; 32]>;

/// The sealing key and the naming key from the passphrase.
fn derive(
    passphrase: &str,
    salt: &[u8],
    log_n: u8,
    r: u32,
    p: u32,
) -> Result<(Key, Key), ClientError> {
    let params = scrypt::Params::new(log_n, r, p)
        .map_err(|_| ClientError::Storage("the store's scrypt parameters are invalid".into()))?;
    let mut out = Zeroizing::new([0u8; 64]);
    scrypt::scrypt(passphrase.as_bytes(), salt, &params, out.as_mut())
        .map_err(|_| ClientError::Storage("scrypt failed".into()))?;
    let mut seal = Zeroizing::new([0u8; 32]);
    let mut names = Zeroizing::new([0u8; 32]);
    seal.copy_from_slice(&out[..32]);
    names.copy_from_slice(&out[32..]);
    Ok((seal, names))
}

fn sealed(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, ClientError> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce_bytes = random::<24>()?;
    let nonce = XNonce::from(nonce_bytes);
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| ClientError::Storage("sealing failed".into()))?;
    let mut out = Vec::with_capacity(1 + 24 + ciphertext.len());
    out.push(RECORD_VERSION);
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

fn opened(key: &[u8; 32], aad: &[u8], bytes: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let (&version, rest) = bytes.split_first()?;
    if version != RECORD_VERSION || rest.len() < 24 + 16 {
        return None;
    }
    let (nonce, ciphertext) = rest.split_at(24);
    let nonce = XNonce::try_from(nonce).ok()?;
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(
            &nonce,
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(|e| io("creating", &tmp, e))?;
    f.write_all(bytes).map_err(|e| io("writing", &tmp, e))?;
    f.sync_all().map_err(|e| io("syncing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io("replacing", path, e))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("syncing", dir, e))
}

impl LocalStore {
    /// Opens the store in `dir`, creating it (and the directory) if there is none.
    /// A wrong passphrase for an existing store is [`ClientError::WrongPassphrase`].
    pub fn open(dir: &Path, passphrase: &str) -> Result<Self, ClientError> {
        let meta_path = dir.join(META);
        if !meta_path.exists() {
            return Self::create(dir, passphrase);
        }
        let text = fs::read_to_string(&meta_path).map_err(|e| io("reading", &meta_path, e))?;
        let meta: Meta = serde_json::from_str(&text).map_err(|e| {
            ClientError::Storage(format!("{} is damaged: {e}", meta_path.display()))
        })?;
        if meta.version != 1 || meta.kdf != "scrypt" {
            return Err(ClientError::Storage(format!(
                "{} is from a newer version of Parley",
                meta_path.display()
            )));
        }
        let salt = b64()
            .decode(&meta.salt)
            .map_err(|_| ClientError::Storage("the store's salt is damaged".into()))?;
        let check = b64()
            .decode(&meta.check)
            .map_err(|_| ClientError::Storage("the store's check value is damaged".into()))?;
        let (seal, names) = derive(passphrase, &salt, meta.log_n, meta.r, meta.p)?;
        match opened(&seal, b"check", &check) {
            Some(value) if value.as_slice() == CHECK => Ok(Self {
                dir: dir.to_owned(),
                seal,
                names,
            }),
            _ => Err(ClientError::WrongPassphrase),
        }
    }

    fn create(dir: &Path, passphrase: &str) -> Result<Self, ClientError> {
        fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
        let salt = random::<16>()?;
        let (r, p) = (8, 1);
        let (seal, names) = derive(passphrase, &salt, LOG_N, r, p)?;
        let meta = Meta {
            version: 1,
            kdf: "scrypt".into(),
            log_n: LOG_N,
            r,
            p,
            salt: b64().encode(salt),
            check: b64().encode(sealed(&seal, b"check", CHECK)?),
        };
        let text = serde_json::to_string_pretty(&meta).expect("metadata serializes");
        write_atomically(dir, &dir.join(META), text.as_bytes())?;
        Ok(Self {
            dir: dir.to_owned(),
            seal,
            names,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(self.names.as_ref())
            .expect("any key length");
        mac.update(name.as_bytes());
        let tag = mac.finalize().into_bytes();
        self.dir.join(format!("{}.rec", hex::encode(&tag[..16])))
    }

    /// Stores a record, replacing any with the same name.
    pub fn put(&self, name: &str, value: &[u8]) -> Result<(), ClientError> {
        let bytes = sealed(&self.seal, name.as_bytes(), value)?;
        write_atomically(&self.dir, &self.path(name), &bytes)
    }

    /// A record, if there is one. A record that does not open (damaged, or moved
    /// from another name) is an error, never silently empty.
    pub fn get(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, ClientError> {
        let path = self.path(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("reading", &path, e)),
        };
        opened(&self.seal, name.as_bytes(), &bytes)
            .map(Some)
            .ok_or_else(|| ClientError::Storage(format!("the record {name:?} is damaged")))
    }

    /// Deletes a record (nothing if there is none).
    pub fn delete(&self, name: &str) -> Result<(), ClientError> {
        let path = self.path(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("deleting", &path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(store: &LocalStore, name: &str) -> Option<Vec<u8>> {
        store.get(name).expect("get").map(|v| v.to_vec())
    }

    #[test]
    fn records_round_trip_and_survive_reopening() {
        let dir = tempfile::tempdir().expect("dir");
        let store = LocalStore::open(dir.path(), "correct horse").expect("created");
        store.put("identity", b"secret key bytes").expect("put");
        store.put("identity", b"newer key bytes").expect("replace");
        store.put("session/bob", b"ratchet state").expect("put");
        assert_eq!(store.get("missing").expect("get"), None);
        drop(store);
        let store = LocalStore::open(dir.path(), "correct horse").expect("reopened");
        assert_eq!(read(&store, "identity"), Some(b"newer key bytes".to_vec()));
        store.delete("identity").expect("delete");
        assert_eq!(store.get("identity").expect("get"), None);
    }

    #[test]
    fn a_wrong_passphrase_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("dir");
        LocalStore::open(dir.path(), "right").expect("created");
        assert!(matches!(
            LocalStore::open(dir.path(), "wrong"),
            Err(ClientError::WrongPassphrase)
        ));
    }

    #[test]
    fn files_at_rest_reveal_neither_content_nor_names() {
        let dir = tempfile::tempdir().expect("dir");
        let store = LocalStore::open(dir.path(), "pass").expect("created");
        store
            .put("session/alice@example.com", b"the plaintext history")
            .expect("put");
        for entry in fs::read_dir(dir.path()).expect("list") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            assert!(
                !name.contains("alice") && !name.contains("session"),
                "{name}"
            );
            let bytes = fs::read(&path).expect("read");
            for needle in [&b"plaintext"[..], b"alice", b"pass"] {
                assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{name}");
            }
        }
    }

    #[test]
    fn tampered_or_swapped_records_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let store = LocalStore::open(dir.path(), "pass").expect("created");
        store.put("a", b"first").expect("put");
        store.put("b", b"second").expect("put");
        // Swap the files: each is bound to its name.
        let (pa, pb) = (store.path("a"), store.path("b"));
        let (a, b) = (fs::read(&pa).expect("a"), fs::read(&pb).expect("b"));
        fs::write(&pa, &b).expect("swap");
        fs::write(&pb, &a).expect("swap");
        assert!(matches!(store.get("a"), Err(ClientError::Storage(_))));
        // Flip one bit.
        let mut c = a.clone();
        let last = c.len() - 1;
        c[last] ^= 1;
        fs::write(&pb, &c).expect("flip");
        assert!(matches!(store.get("b"), Err(ClientError::Storage(_))));
    }

    #[test]
    fn an_interrupted_write_leaves_the_old_record() {
        let dir = tempfile::tempdir().expect("dir");
        let store = LocalStore::open(dir.path(), "pass").expect("created");
        store.put("history", b"old").expect("put");
        // A crash after writing the temporary file but before the rename.
        let tmp = store.path("history").with_extension("tmp");
        fs::write(&tmp, b"half a reco").expect("partial");
        assert_eq!(read(&store, "history"), Some(b"old".to_vec()));
        store.put("history", b"new").expect("put after the crash");
        assert_eq!(read(&store, "history"), Some(b"new".to_vec()));
    }
}
