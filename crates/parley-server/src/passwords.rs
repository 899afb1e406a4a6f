//! Passwords: the whitepaper's policy, and hashing with scrypt (N=2^14, r=8, p=1,
//! 32-byte random salt, stored as `log2(N)|r|p|salt|hash`, salt and hash base64) or
//! argon2id (PHC string). Old hashes of either kind still verify; a hash that is not
//! what the server now writes is replaced at the next successful login.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{ApiError, ApiResult};

/// Which hash new passwords get.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PasswordHashing {
    /// scrypt N=2^14, r=8, p=1 (the whitepaper's).
    #[default]
    Scrypt,
    /// argon2id with the crate's default parameters.
    Argon2id,
}

const LOG_N: u8 = 14;
const R: u32 = 8;
const P: u32 = 1;
const MAX_LEN: usize = 1024;

/// At least 8 characters with a lower-case letter, an upper-case letter, a digit and
/// a special character (and at most 1024).
pub fn check_policy(password: &str) -> ApiResult<()> {
    let weak = |why: &str| {
        Err(ApiError::bad_request(
            "weak-password",
            format!(
                "{why}: a password needs at least 8 characters with a lower-case and an \
                 upper-case letter, a digit and a special character"
            ),
        ))
    };
    if password.chars().count() < 8 {
        return weak("too short");
    }
    if password.len() > MAX_LEN {
        return Err(ApiError::bad_request("weak-password", "at most 1024 bytes"));
    }
    if !password.chars().any(char::is_lowercase) {
        return weak("no lower-case letter");
    }
    if !password.chars().any(char::is_uppercase) {
        return weak("no upper-case letter");
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        return weak("no digit");
    }
    if !password.chars().any(|c| !c.is_alphanumeric()) {
        return weak("no special character");
    }
    Ok(())
}

fn salt() -> [u8; 32] {
    let mut salt = [0u8; 32];
    getrandom::fill(&mut salt).expect("the operating system provides randomness");
    salt
}

fn scrypt_raw(
    password: &str, salt: &[u8], log_n: u8, r: u32, p: u32,
) -> ApiResult<Zeroizing<[u8; 32]>> {
    let params = scrypt::Params::new(log_n, r, p).map_err(ApiError::internal)?;
    let mut out = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password.as_bytes(), salt, &params, out.as_mut()).map_err(ApiError::internal)?;
    Ok(out)
}

/// Hashes a password with `algorithm` (slow by design: call off the async runtime).
pub fn hash(password: &str, algorithm: PasswordHashing) -> ApiResult<String> {
    let salt = salt();
    match algorithm {
        PasswordHashing::Scrypt => {
            let h = scrypt_raw(password, &salt, LOG_N, R, P)?;
            Ok(format!(
                "{LOG_N}|{R}|{P}|{}|{}",
                B64.encode(salt),
                B64.encode(h.as_ref())
            ))
        }
        PasswordHashing::Argon2id => argon2::Argon2::default()
            .hash_password_with_salt(password.as_bytes(), &salt[..16])
            .map(|h| h.to_string())
            .map_err(ApiError::internal),
    }
}

/// Whether `password` matches `stored` (constant-time comparison), and whether the
/// stored hash should be replaced by one made with `current`.
pub fn verify(password: &str, stored: &str, current: PasswordHashing) -> ApiResult<(bool, bool)> {
    if stored.starts_with("$argon2") {
        let ok = argon2::Argon2::default()
            .verify_password(password.as_bytes(), stored)
            .is_ok();
        return Ok((ok, current != PasswordHashing::Argon2id));
    }
    let parts: Vec<&str> = stored.split('|').collect();
    let [log_n, r, p, salt, expected] = parts.as_slice() else {
        return Err(ApiError::internal("unreadable password hash in storage"));
    };
    let parse = |s: &str| s.parse::<u32>().map_err(ApiError::internal);
    let (log_n, r, p) = (parse(log_n)?, parse(r)?, parse(p)?);
    let salt = B64.decode(salt).map_err(ApiError::internal)?;
    let expected = B64.decode(expected).map_err(ApiError::internal)?;
    let log_n = u8::try_from(log_n).map_err(ApiError::internal)?;
    let got = scrypt_raw(password, &salt, log_n, r, p)?;
    let ok = bool::from(got.as_slice().ct_eq(&expected));
    let outdated = current != PasswordHashing::Scrypt || (log_n, r, p) != (LOG_N, R, P);
    Ok((ok, outdated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_what_is_missing() {
        assert!(check_policy("Secret-123").is_ok());
        for weak in [
            "Sh0rt-",
            "alllower-123",
            "ALLUPPER-123",
            "NoDigits-here",
            "NoSpecial123",
        ] {
            assert_eq!(
                check_policy(weak).map_err(|e| e.label()),
                Err("weak-password"),
                "{weak}"
            );
        }
    }

    #[test]
    fn scrypt_format_and_verification() {
        let h = hash("Secret-123", PasswordHashing::Scrypt).expect("hash");
        assert!(h.starts_with("14|8|1|"));
        assert_eq!(h.split('|').count(), 5);
        assert_eq!(
            verify("Secret-123", &h, PasswordHashing::Scrypt).expect("v"),
            (true, false)
        );
        assert_eq!(
            verify("Secret-124", &h, PasswordHashing::Scrypt).expect("v"),
            (false, false)
        );
        assert_eq!(
            verify("Secret-123", &h, PasswordHashing::Argon2id).expect("v"),
            (true, true)
        );
    }

    #[test]
    fn argon2_hashes_verify_and_are_replaced_when_scrypt_is_configured() {
        let h = hash("Secret-123", PasswordHashing::Argon2id).expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert_eq!(
            verify("Secret-123", &h, PasswordHashing::Argon2id).expect("v"),
            (true, false)
        );
        assert!(!verify("nope", &h, PasswordHashing::Argon2id).expect("v").0);
        assert_eq!(
            verify("Secret-123", &h, PasswordHashing::Scrypt).expect("v"),
            (true, true)
        );
    }
}
