//! Conversation verification states, exactly as Wire's whitepaper defines them.
//!
//! A conversation starts non-verified. It is verified when every known device of
//! every participant (this user's own devices included) is verified. A verified
//! conversation whose condition breaks (a new member, a new or unverified device)
//! becomes degraded, not non-verified: the person is told, can still receive, and
//! must either verify the new devices or accept the conversation as non-verified
//! before sending again.
//!
//! This module is the state machine only; which devices count as verified is the
//! account's business (by hand, or signed by a pinned root key).

use serde::{Deserialize, Serialize};

/// A conversation's verification state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verification {
    /// Not every device is verified, and it never was, or the person accepted that.
    NonVerified,
    /// Every known device of every participant is verified.
    Verified,
    /// It was verified and no longer is: sending needs confirmation.
    Degraded,
}

/// The state after re-checking whether every device is verified.
pub fn next(current: Verification, all_verified: bool) -> Verification {
    match (all_verified, current) {
        (true, _) => Verification::Verified,
        (false, Verification::NonVerified) => Verification::NonVerified,
        (false, Verification::Verified | Verification::Degraded) => Verification::Degraded,
    }
}

/// The person accepts a degraded conversation as non-verified.
pub fn accept_degraded(current: Verification) -> Verification {
    match current {
        Verification::Degraded => Verification::NonVerified,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::Verification::*;
    use super::*;

    #[test]
    fn the_whitepapers_transitions() {
        assert_eq!(next(NonVerified, false), NonVerified, "starts non-verified");
        assert_eq!(next(NonVerified, true), Verified);
        assert_eq!(next(Verified, true), Verified);
        assert_eq!(
            next(Verified, false),
            Degraded,
            "a verified conversation degrades"
        );
        assert_eq!(next(Degraded, false), Degraded, "and stays degraded");
        assert_eq!(
            next(Degraded, true),
            Verified,
            "verifying the new devices restores it"
        );
        assert_eq!(accept_degraded(Degraded), NonVerified);
        assert_eq!(accept_degraded(Verified), Verified);
        assert_eq!(next(accept_degraded(Degraded), false), NonVerified);
    }
}
