//! The user trust chain (Wickr's): each user has a root identity key (Ed25519)
//! that signs each of their devices' identity keys. The signature is published
//! with the device, so a peer who has verified the root key once trusts every
//! device it signs. The root key travels between a user's devices in the
//! recovery bundle, which the server stores as an opaque blob.
//!
//! This module owns the wire shapes and the exact bytes that are signed. It knows
//! no cryptography: the server checks signatures with `ed25519-dalek`, and the
//! client makes them.

use serde::{Deserialize, Serialize};

/// Domain separation for device signatures.
pub const DEVICE_SIGNATURE_LABEL: &[u8] = b"parley device identity v1";

/// A device's identity key signed by its user's root key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceTrust {
    /// The device's Proteus identity key: base64 of the 32-byte Ed25519 public key.
    pub identity_key: String,
    /// The user's root identity key: base64 of the 32-byte Ed25519 public key.
    pub root_key: String,
    /// Base64 of the 64-byte Ed25519 signature by the root key over
    /// [`device_signature_message`].
    pub signature: String,
}

/// The bytes a root key signs for one device: the label, the user's id (16
/// bytes) and the device's identity key (32 bytes). Binding the user id stops a
/// signature being replayed onto another account.
pub fn device_signature_message(user: crate::UserId, identity_key: &[u8; 32]) -> Vec<u8> {
    let mut message = Vec::with_capacity(DEVICE_SIGNATURE_LABEL.len() + 16 + 32);
    message.extend_from_slice(DEVICE_SIGNATURE_LABEL);
    message.extend_from_slice(user.as_bytes());
    message.extend_from_slice(identity_key);
    message
}

/// `PUT /v1/self/recovery-bundle` and its `GET`: an opaque encrypted blob.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecoveryBundle {
    /// Base64 of the encrypted bundle (at most
    /// [`crate::limits::MAX_RECOVERY_BUNDLE`] bytes once decoded).
    pub bundle: String,
}
