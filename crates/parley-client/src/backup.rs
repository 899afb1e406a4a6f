//! History backups (Wire's "local storage of backups"): the conversation
//! history exported to a file under a dedicated backup password.
//!
//! The key is Argon2i (6 iterations, 128 MiB, one lane) of the password with a
//! random 16-byte salt; the history is sealed with XChaCha20-Poly1305. The file
//! names its user in clear and binds it as associated data, so a backup can be
//! imported only by the same user, and says so before any expensive work.
//!
//! File: `"PARLEYBK" ‖ version(1) ‖ user(16) ‖ salt(16) ‖ nonce(24) ‖ ciphertext ‖ tag`.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::XChaCha20Poly1305;
use parley_api::UserId;
use zeroize::Zeroizing;

use crate::ClientError;

const MAGIC: &[u8; 8] = b"PARLEYBK";
const VERSION: u8 = 1;
const HEADER: usize = 8 + 1 + 16 + 16;
/// Argon2i cost, from the whitepaper: 6 iterations of 128 MiB.
const ITERATIONS: u32 = 6;
const MEMORY_KIB: u32 = 128 * 1024;

fn key(password: &str, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, ClientError> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, 1, Some(32))
        .map_err(|e| ClientError::Crypto(format!("argon2 parameters: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2i, Version::V0x13, params)
        .hash_password_into(password.as_bytes(), salt, key.as_mut())
        .map_err(|e| ClientError::Crypto(format!("argon2: {e}")))?;
    Ok(key)
}

/// Seals `plaintext` (the exported history of `user`) under `password`.
pub fn seal(user: UserId, password: &str, plaintext: &[u8]) -> Result<Vec<u8>, ClientError> {
    if password.chars().count() < 8 {
        return Err(ClientError::Crypto(
            "a backup password needs at least 8 characters".into(),
        ));
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| ClientError::Crypto(format!("no randomness: {e}")))?;
    let mut out = Vec::with_capacity(HEADER + 24 + plaintext.len() + 16);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(user.as_bytes());
    out.extend_from_slice(&salt);
    let key = key(password, &salt)?;
    let sealed = crate::sealed::seal::<XChaCha20Poly1305>(&key, &out[..HEADER], plaintext)
        .ok_or_else(|| ClientError::Crypto("sealing the backup failed".into()))?;
    out.extend(sealed);
    Ok(out)
}

/// Opens a backup of `user`. Another user's backup and a wrong password are
/// told apart, and nothing is decrypted for the former.
pub fn open(bytes: &[u8], password: &str, user: UserId) -> Result<Zeroizing<Vec<u8>>, ClientError> {
    let not_backup = || ClientError::Decode("this file is not a Parley backup".into());
    if bytes.len() < HEADER + 24 + 16 || &bytes[..8] != MAGIC {
        return Err(not_backup());
    }
    if bytes[8] != VERSION {
        return Err(ClientError::Decode(format!(
            "backup format {} is newer than this app",
            bytes[8]
        )));
    }
    if &bytes[9..25] != user.as_bytes() {
        return Err(ClientError::Refused {
            label: "other-users-backup",
            message: "this backup belongs to another user: only its own user can import it".into(),
        });
    }
    let (header, sealed) = bytes.split_at(HEADER);
    let key = key(password, &header[25..])?;
    crate::sealed::open::<XChaCha20Poly1305>(&key, header, sealed).ok_or_else(|| {
        ClientError::Refused {
            label: "wrong-backup-password",
            message: "wrong password for this backup: give the one it was exported with \
                      (PARLEY_BACKUP_PASSWORD)"
                .into(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_user_with_the_password_opens_a_backup() {
        let (me, other) = (UserId::random(), UserId::random());
        let sealed = seal(me, "backup-password", b"history").expect("sealed");
        assert_eq!(
            open(&sealed, "backup-password", me)
                .expect("opens")
                .as_slice(),
            b"history"
        );
        assert_eq!(
            open(&sealed, "wrong-password", me)
                .expect_err("wrong password")
                .code(),
            "wrong-backup-password"
        );
        assert!(
            matches!(open(&sealed, "backup-password", other), Err(ClientError::Refused { label: "other-users-backup", message }) if message.contains("another user"))
        );
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(open(&tampered, "backup-password", me).is_err());
        assert!(open(b"PARLEYBK", "backup-password", me).is_err());
        assert!(seal(me, "short", b"x").is_err(), "weak passwords refused");
    }
}
