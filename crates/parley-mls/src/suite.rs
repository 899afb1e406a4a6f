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
}
