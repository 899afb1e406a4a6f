//! MLS (RFC 9420) objects as Parley checks them, over mls-rs and the system
//! OpenSSL (`mls-rs-crypto-openssl`). No MLS is written here: this crate owns
//! Parley's rules *about* MLS objects (which cipher suites, what a device's
//! credential says, when a key package is acceptable to the directory) and
//! turns untrusted bytes into checked values. It knows no storage, no HTTP
//! and no clock: the time is passed in.
//!
//! - [`suite`]: the cipher suites a backend may allow, and its default.
//! - [`identity`]: a device's basic credential, the whitepaper's client-ID URI.
//! - [`key_package`]: [`KeyPackageIn`] (bytes from a device) becomes a
//!   [`ValidKeyPackage`] only through [`KeyPackageIn::validate`].
//! - [`delivery`]: a group as the server follows it (an external observer):
//!   commit bundles checked against the current epoch, what each commit
//!   changed, application messages classified.
//! - [`device`]: a device's signature key on a suite, and the key packages
//!   it publishes.
//! - [`removal`]: the backend as the groups' external sender, proposing
//!   removals of deleted devices and users who left.
//! - [`member`]: a device's groups: create, commit (pending until the server
//!   accepts), join by welcome or external commit, encrypt and process, with
//!   all state passed in and handed back for the device's store.

#![forbid(unsafe_code)]

pub mod delivery;
pub mod device;
pub mod identity;
pub mod key_package;
pub mod member;
pub mod removal;
pub mod suite;

pub use device::DeviceKeys;
pub use identity::DeviceIdentity;
pub use key_package::{KeyPackageCheck, KeyPackageError, KeyPackageIn, ValidKeyPackage};
pub use member::{Changes, Member, MemberError, MemberState, Processed};
pub use removal::{RemovalKey, ServerSender};
pub use suite::{CipherSuite, SignatureScheme};
