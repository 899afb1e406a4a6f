//! Parley's client SDK, the part every client and bot uses.
//!
//! [`api::Api`] speaks the HTTP API: typed calls, labelled errors
//! ([`ClientError`]), and access tokens refreshed from the login cookie without the
//! caller noticing. [`device::Device`] is one device's end-to-end encryption: its
//! Proteus identity and prekeys, a session and a pinned identity key per remote
//! device, encrypting and decrypting, with no I/O of its own.
//!
//! [`account::Account`] is what an app or bot holds: one user on one device, with
//! the device's encrypted database ([`store`]), the user trust chain and recovery
//! bundle ([`trust`]), message content ([`content`]), conversation history and
//! verification states ([`verification`]). Every change is one database
//! transaction, committed before anything it produced leaves the device, so any
//! number of processes may share a device and a crash loses nothing.
//!
//! Still to come: MLS.
#![forbid(unsafe_code)]

pub mod account;
pub mod api;
pub mod backup;
pub mod content;
pub(crate) mod device;
mod error;
mod sealed;
pub mod store;
pub mod trust;
pub mod verification;

pub use error::ClientError;

/// Crash points for the kill tests. With the `failpoints` feature, reads
/// `FAILPOINTS` (`name=return;name=return`): at a named point
/// (`send-after-commit`, `send-after-post`, `receive-before-commit`,
/// `receive-after-commit`) the process aborts on the spot, as a SIGKILL would
/// end it. Without the feature (every release build) it does nothing.
pub fn failpoints_from_env() {
    #[cfg(feature = "failpoints")]
    if let Ok(spec) = std::env::var("FAILPOINTS") {
        for item in spec.split(';') {
            if let Some((name, action)) = item.split_once('=') {
                // A bad spec is a test's mistake: it shows as the crash not
                // happening.
                let _ = fail::cfg(name, action);
            }
        }
    }
}
