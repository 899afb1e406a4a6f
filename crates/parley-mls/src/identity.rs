//! A device's MLS identity: its basic credential is its fully qualified
//! client-ID in the whitepaper's URI form,
//! `wireapp:<user id, unpadded base64url>!<client id, hex>@<domain>`.
//! A basic credential proves nothing by itself: the directory binds it to the
//! device that uploads it (see [`crate::key_package`]).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parley_api::{ClientId, UserId};

/// The URI scheme of a client-ID (the whitepaper's).
const SCHEME: &str = "wireapp:";

/// A fully qualified device: user, client and backend domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeviceIdentity {
    /// The device's user.
    pub user: UserId,
    /// The device's client id.
    pub client: ClientId,
    /// The user's backend.
    pub domain: String,
}

impl DeviceIdentity {
    /// The credential's identifier: the client-ID URI, as bytes.
    pub fn credential_identifier(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// Reads a client-ID URI; `None` unless it is exactly one (a 16-byte
    /// user id, a non-empty hex client id without leading zeros, a domain).
    pub fn parse(uri: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(uri).ok()?.strip_prefix(SCHEME)?;
        let (user, rest) = text.split_once('!')?;
        let (client, domain) = rest.split_once('@')?;
        let user: [u8; 16] = URL_SAFE_NO_PAD.decode(user).ok()?.try_into().ok()?;
        let client: ClientId = client.parse().ok()?;
        let me = Self {
            user: UserId(uuid::Uuid::from_bytes(user)),
            client,
            domain: domain.to_owned(),
        };
        // One spelling only: what would not be written back is not read.
        (me.to_string().as_bytes() == uri && !domain.is_empty()).then_some(me)
    }
}

impl fmt::Display for DeviceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}!{}@{}",
            URL_SAFE_NO_PAD.encode(self.user.as_bytes()),
            self.client,
            self.domain
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whitepapers_example_reads_and_writes_back() {
        // wireapp:2XlgqeneTyOPiefTp6R-SA!ce6af3facf225073@example.com, for
        // user d97960a9-e9de-4f23-8f89-e7d3a7a47e48.
        let uri = b"wireapp:2XlgqeneTyOPiefTp6R-SA!ce6af3facf225073@example.com";
        let device = DeviceIdentity::parse(uri).expect("the whitepaper's example");
        assert_eq!(
            device.user.to_string(),
            "d97960a9-e9de-4f23-8f89-e7d3a7a47e48"
        );
        assert_eq!(device.client, ClientId(0xce6a_f3fa_cf22_5073));
        assert_eq!(device.domain, "example.com");
        assert_eq!(device.credential_identifier(), uri);
    }

    #[test]
    fn other_spellings_are_refused() {
        for uri in [
            &b"wireapp:2XlgqeneTyOPiefTp6R-SA!CE6AF3FACF225073@example.com"[..],
            b"wireapp:2XlgqeneTyOPiefTp6R-SA!0ce6af3facf225073@example.com",
            b"wireapp:2XlgqeneTyOPiefTp6R-SA==!ce6af3facf225073@example.com",
            b"wireapp:2XlgqeneTyOPiefTp6R-SA!ce6af3facf225073@",
            b"wireapp:2XlgqeneTyOPiefTp6R!ce6af3facf225073@example.com",
            b"im:2XlgqeneTyOPiefTp6R-SA!ce6af3facf225073@example.com",
            b"wireapp:2XlgqeneTyOPiefTp6R-SA@example.com",
            b"\xffwireapp:",
        ] {
            assert_eq!(
                DeviceIdentity::parse(uri),
                None,
                "{:?}",
                String::from_utf8_lossy(uri)
            );
        }
    }
}
