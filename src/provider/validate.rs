//! Key validation: the round trip a console runs before it accepts a root key.
//!
//! [`KeyProvider::validate_key`](super::KeyProvider::validate_key) wraps a
//! throwaway key (the provider's encrypt), unwraps it (decrypt), compares, and
//! describes the root key, recording each step's outcome separately so the
//! report says *which* permission or state fails — "access denied on
//! decrypt" rather than "invalid key".

use std::fmt;

use super::{KeyRef, KeyState};
use crate::Error;

/// One step of the validation round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValidationStep {
    /// Wrapping a test key (AWS KMS `Encrypt`).
    Encrypt,
    /// Unwrapping it again and comparing (AWS KMS `Decrypt`).
    Decrypt,
    /// Reading the key's state (AWS KMS `DescribeKey`).
    Describe,
}

impl ValidationStep {
    /// Lowercase name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationStep::Encrypt => "encrypt",
            ValidationStep::Decrypt => "decrypt",
            ValidationStep::Describe => "describe",
        }
    }
}

/// Why a step failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValidationFailure {
    /// The caller lacks the permission for this step.
    AccessDenied,
    /// The key is in a state that forbids use (or does not exist).
    KeyState(KeyState),
    /// The provider could not be reached or rate-limited the call.
    Unreachable(String),
    /// Decrypt returned a different key than was encrypted, or refused the
    /// ciphertext it had just produced.
    RoundTripMismatch,
    /// The key is in another region and cannot be used from this one.
    WrongRegion(String),
    /// Anything else, in words.
    Other(String),
}

impl ValidationFailure {
    /// Classifies an error from a provider call.
    pub fn from_error(error: &Error) -> Self {
        match error {
            Error::AccessDenied { .. } => ValidationFailure::AccessDenied,
            Error::KeyUnavailable { state, .. } => ValidationFailure::KeyState(*state),
            Error::ProviderUnreachable { reason, source, .. } => ValidationFailure::Unreachable(
                crate::error::with_causes(reason.clone(), source.as_deref().map(|s| s as _)),
            ),
            Error::Throttled { .. } => ValidationFailure::Unreachable("throttled".into()),
            Error::BudgetExhausted { .. } => {
                ValidationFailure::Unreachable("no slot in the call budget".into())
            }
            Error::Integrity { .. } => ValidationFailure::RoundTripMismatch,
            Error::RegionMismatch { .. } => ValidationFailure::WrongRegion(error.to_string()),
            other => ValidationFailure::Other(other.to_string()),
        }
    }
}

impl fmt::Display for ValidationFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValidationFailure::AccessDenied => f.write_str("access denied"),
            ValidationFailure::KeyState(state) => write!(f, "key is {state}"),
            ValidationFailure::Unreachable(reason) => write!(f, "provider unreachable: {reason}"),
            ValidationFailure::RoundTripMismatch => {
                f.write_str("decrypt did not return what encrypt was given")
            }
            ValidationFailure::WrongRegion(why) => f.write_str(why),
            ValidationFailure::Other(why) => f.write_str(why),
        }
    }
}

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// The step succeeded.
    Passed,
    /// The step failed, and why.
    Failed(ValidationFailure),
    /// The step could not run because an earlier one failed (decrypt needs
    /// the output of encrypt).
    Skipped,
}

/// The result of validating a root key: each step's outcome and the state
/// the provider reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValidation {
    /// The key that was validated.
    pub key: KeyRef,
    /// Outcome of the encrypt step.
    pub encrypt: StepOutcome,
    /// Outcome of the decrypt step.
    pub decrypt: StepOutcome,
    /// Outcome of the describe step. Passed only if the key is enabled.
    pub describe: StepOutcome,
    /// The state describe reported, if it answered.
    pub state: Option<KeyState>,
}

impl KeyValidation {
    /// True if every step passed.
    pub fn is_valid(&self) -> bool {
        self.steps().iter().all(|(_, o)| **o == StepOutcome::Passed)
    }

    /// The steps in the order they ran, with their outcomes.
    pub fn steps(&self) -> [(ValidationStep, &StepOutcome); 3] {
        [
            (ValidationStep::Encrypt, &self.encrypt),
            (ValidationStep::Decrypt, &self.decrypt),
            (ValidationStep::Describe, &self.describe),
        ]
    }

    /// The first failing step and its reason, if any.
    pub fn first_failure(&self) -> Option<(ValidationStep, &ValidationFailure)> {
        self.steps().into_iter().find_map(|(step, o)| match o {
            StepOutcome::Failed(why) => Some((step, why)),
            _ => None,
        })
    }
}

impl fmt::Display for KeyValidation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.first_failure() {
            None => write!(f, "key {} is valid", self.key),
            Some((step, why)) => write!(f, "key {} failed {}: {why}", self.key, step.as_str()),
        }
    }
}
