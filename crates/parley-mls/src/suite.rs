//! The cipher suites (RFC 9420 §17.1) a Parley backend may allow: the
//! whitepaper's cloud suite and on-premises choices, plus 0x0003.

use std::fmt;

/// An MLS cipher suite, by its registered number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CipherSuite(pub u16);

impl CipherSuite {
    /// `MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519`.
    pub const X25519_AES128: Self = Self(0x0001);
    /// `MLS_128_DHKEMP256_AES128GCM_SHA256_P256`: the whitepaper's cloud suite,
    /// and the default.
    pub const P256_AES128: Self = Self(0x0002);
    /// `MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519`.
    pub const X25519_CHACHA20: Self = Self(0x0003);
    /// `MLS_256_DHKEMP521_AES256GCM_SHA512_P521`.
    pub const P521_AES256: Self = Self(0x0005);
    /// `MLS_256_DHKEMP384_AES256GCM_SHA384_P384`.
    pub const P384_AES256: Self = Self(0x0007);

    /// Every suite a backend may be configured to allow.
    pub const SELECTABLE: [Self; 5] = [
        Self::X25519_AES128,
        Self::P256_AES128,
        Self::X25519_CHACHA20,
        Self::P521_AES256,
        Self::P384_AES256,
    ];

    /// The suite used when a configuration names none.
    pub const DEFAULT: Self = Self::P256_AES128;

    /// Whether a backend may allow this suite at all.
    pub fn is_selectable(self) -> bool {
        Self::SELECTABLE.contains(&self)
    }

    pub(crate) fn to_mls(self) -> mls_rs::CipherSuite {
        mls_rs::CipherSuite::new(self.0)
    }

    /// The signature scheme of a selectable suite.
    pub fn signature_scheme(self) -> Option<SignatureScheme> {
        match self {
            Self::X25519_AES128 | Self::X25519_CHACHA20 => Some(SignatureScheme::ED25519),
            Self::P256_AES128 => Some(SignatureScheme::P256),
            Self::P521_AES256 => Some(SignatureScheme::P521),
            Self::P384_AES256 => Some(SignatureScheme::P384),
            _ => None,
        }
    }

    /// Reads `0x0002` or `2`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.strip_prefix("0x") {
            Some(hex) => u16::from_str_radix(hex, 16).ok().map(Self),
            None => text.parse().ok().map(Self),
        }
    }
}

/// A signature scheme (TLS `SignatureScheme` numbers, Wire's names): a device
/// registers one MLS signature key per scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SignatureScheme {
    /// Its registered number.
    pub number: u16,
    /// Its name in the API.
    pub name: &'static str,
    /// The length of its public key in bytes (uncompressed points for ECDSA).
    pub key_len: usize,
}

impl SignatureScheme {
    const fn new(number: u16, name: &'static str, key_len: usize) -> Self {
        Self {
            number,
            name,
            key_len,
        }
    }

    /// Ed25519 (suites 0x0001 and 0x0003).
    pub const ED25519: Self = Self::new(0x0807, "ed25519", 32);
    /// ECDSA over P-256 with SHA-256 (suite 0x0002).
    pub const P256: Self = Self::new(0x0403, "ecdsa_secp256r1_sha256", 65);
    /// ECDSA over P-384 with SHA-384 (suite 0x0007).
    pub const P384: Self = Self::new(0x0503, "ecdsa_secp384r1_sha384", 97);
    /// ECDSA over P-521 with SHA-512 (suite 0x0005).
    pub const P521: Self = Self::new(0x0603, "ecdsa_secp521r1_sha512", 133);

    /// Every scheme of a selectable suite.
    pub const ALL: [Self; 4] = [Self::ED25519, Self::P256, Self::P384, Self::P521];

    /// The scheme with this API name.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name == name)
    }

    /// The scheme with this number.
    pub fn numbered(number: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.number == number)
    }
}

impl fmt::Display for CipherSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whitepapers_suites_are_selectable_and_others_are_not() {
        for n in [1, 2, 3, 5, 7] {
            assert!(CipherSuite(n).is_selectable(), "{n}");
        }
        for n in [0, 4, 6, 8, 0xffff] {
            assert!(!CipherSuite(n).is_selectable(), "{n}");
        }
        assert_eq!(CipherSuite::DEFAULT.to_string(), "0x0002");
    }

    #[test]
    fn suites_read_back_and_name_their_scheme() {
        for suite in CipherSuite::SELECTABLE {
            assert_eq!(CipherSuite::parse(&suite.to_string()), Some(suite));
            assert_eq!(CipherSuite::parse(&suite.0.to_string()), Some(suite));
            let scheme = suite.signature_scheme().expect("a scheme");
            assert_eq!(SignatureScheme::named(scheme.name), Some(scheme));
            assert_eq!(SignatureScheme::numbered(scheme.number), Some(scheme));
        }
        assert_eq!(CipherSuite::parse("0x"), None);
        assert_eq!(CipherSuite::parse("65536"), None);
        assert_eq!(CipherSuite(4).signature_scheme(), None);
    }
}
