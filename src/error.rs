//! The crate's one error type.
//!
//! Every variant names a condition a caller can act on: retry later
//! ([`Error::ProviderUnreachable`], [`Error::Throttled`]), alert an operator
//! ([`Error::KeyUnavailable`], [`Error::AccessDenied`]), quarantine data
//! ([`Error::Integrity`]), reject input ([`Error::Malformed`]). Messages name
//! keys by their reference, never by their bytes: no variant can hold key
//! material.

use std::io;
use std::path::PathBuf;

use crate::provider::KeyState;

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in cmek.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Authenticated decryption failed: the data was modified, truncated,
    /// moved, or opened with the wrong key or associated data. No plaintext
    /// from the rejected input was released.
    #[error("integrity check failed: {what}")]
    Integrity {
        /// What failed to authenticate (e.g. "wrapped key").
        what: &'static str,
    },

    /// The root key exists but cannot be used in its current state
    /// (disabled, pending deletion, not found, ...).
    #[error("key {key} is unavailable: {state}")]
    KeyUnavailable {
        /// The key's reference, as `provider:region:id`.
        key: String,
        /// The state that makes it unusable.
        state: KeyState,
    },

    /// The provider refused the operation for lack of permission.
    #[error("access denied: {operation} on key {key}")]
    AccessDenied {
        /// The key's reference, as `provider:region:id`.
        key: String,
        /// The refused operation (e.g. "unwrap").
        operation: &'static str,
    },

    /// The provider could not be reached or did not answer in time. The key
    /// may be perfectly healthy: this is not a revocation.
    #[error("key provider {provider} unreachable: {reason}")]
    ProviderUnreachable {
        /// Which provider (e.g. "local", "aws-kms").
        provider: String,
        /// Why, in words (no key material).
        reason: String,
    },

    /// The provider rejected the call because of a request-rate limit.
    #[error("key provider {provider} throttled the request")]
    Throttled {
        /// Which provider.
        provider: String,
    },

    /// A root key was used from a region it cannot serve: only multi-region
    /// keys (with a replica there) work outside their home region.
    #[error(
        "key {key} is in region {key_region} and cannot be used from region {region}: {reason}"
    )]
    RegionMismatch {
        /// The key's reference.
        key: String,
        /// The key's home region.
        key_region: String,
        /// The region it was used from.
        region: String,
        /// Why it cannot serve there.
        reason: &'static str,
    },

    /// The provider refused the call for a reason cmek has no variant for;
    /// `code` is the provider's own error code (e.g. a KMS exception name).
    #[error("key provider {provider} refused the request: {code}: {message}")]
    ProviderRejected {
        /// Which provider.
        provider: String,
        /// The provider's error code.
        code: String,
        /// The provider's message (never holds key material).
        message: String,
    },

    /// A root key failed validation (the provider's encrypt, decrypt,
    /// describe round trip) and was not accepted.
    #[error("key {key} failed validation at {step}: {reason}")]
    KeyValidationFailed {
        /// The key's reference.
        key: String,
        /// The failing step: "encrypt", "decrypt" or "describe".
        step: &'static str,
        /// Why, in words.
        reason: String,
    },

    /// A root key cannot be removed while zones use it.
    #[error("key {key} is in use by {}: {}", if .zones.len() == 1 { "zone" } else { "zones" }, .zones.join(", "))]
    KeyInUse {
        /// The key's reference.
        key: String,
        /// The zones that use it.
        zones: Vec<String>,
    },

    /// Input that does not parse: a bad header, file, length or version.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being parsed (e.g. "wrapped key", "local key file").
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A segment of a backup differs from what the backup recorded (length,
    /// SHA-256), is missing, or does not authenticate. Nothing restored from
    /// it was kept. The segment is named so that an operator can fetch a
    /// good copy of that one file.
    #[error("backup segment {segment:?} failed verification: {reason}")]
    BackupSegmentCorrupt {
        /// The segment's id.
        segment: String,
        /// What failed, in words.
        reason: String,
    },

    /// State read back from storage (a zone manifest, a rewrap journal, a
    /// restore's state file) is well formed but is not what the caller
    /// independently knows to be current: an older generation, another
    /// zone's, another root key's, or not this operation's. It was not used
    /// and nothing was written. Someone may have put back or planted a file:
    /// investigate before overriding.
    #[error("{what} refused: {reason}")]
    StateRejected {
        /// What was refused (e.g. "zone manifest").
        what: &'static str,
        /// Why.
        reason: StateRejection,
    },

    /// Another writer changed shared state (a manifest, a key file, a
    /// registry) after this one read it, or holds it now. Nothing was
    /// written: read again and retry.
    #[error("conflicting update of {what}: {reason}")]
    Conflict {
        /// What was being updated.
        what: &'static str,
        /// What the conflict was.
        reason: String,
    },

    /// A segment header names an EZK version the open zone does not hold.
    /// A version newer than the zone's newest means another process rotated
    /// the zone since it was opened (reload it) or a damaged or foreign
    /// header; an older one was retired, or the header is damaged. Either
    /// way the key provider is not at fault.
    #[error("segment header names EZK version {version}, {}", if .version > .newest { format!("newer than the zone's newest ({newest}): reload the zone; if that persists, the header is damaged or foreign") } else { "which the zone no longer has: retired, or a damaged header".to_string() })]
    UnknownEzkVersion {
        /// The version the header names.
        version: u32,
        /// The newest EZK version the open zone holds.
        newest: u32,
    },

    /// A configured or cryptographic usage limit was reached.
    #[error("limit exceeded: {what} (limit {limit})")]
    LimitExceeded {
        /// Which limit.
        what: &'static str,
        /// Its value.
        limit: u64,
    },

    /// The caller asked for something that cannot be done as asked
    /// (an unknown key id, a duplicate, a mismatched provider).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// An operating-system I/O error, with the path it concerned if any.
    #[error("I/O error{}: {source}", .path.as_ref().map(|p| format!(" on {}", p.display())).unwrap_or_default())]
    Io {
        /// The file or directory concerned, when known.
        path: Option<PathBuf>,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Random,
}

/// Why [`Error::StateRejected`] refused state read back from storage.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateRejection {
    /// Older than the newest state the caller has seen: a rollback.
    Rollback {
        /// The generation found in storage.
        found: u64,
        /// The lowest generation the caller accepts.
        minimum: u64,
    },
    /// It belongs to another zone than the one expected.
    ForeignZone {
        /// The zone the caller expected.
        expected: String,
        /// The zone the state names.
        found: String,
    },
    /// It names another root key than the one the caller knows.
    UnexpectedRoot {
        /// The root key the caller expected.
        expected: String,
        /// The root key the state names.
        found: String,
    },
    /// It does not match the operation resuming it, or was not written by
    /// it (e.g. a restore's spec differs from the state file's).
    Mismatch(String),
}

impl std::fmt::Display for StateRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateRejection::Rollback { found, minimum } => write!(
                f,
                "generation {found} is older than {minimum}, the newest known (rolled back)"
            ),
            StateRejection::ForeignZone { expected, found } => {
                write!(f, "it belongs to zone {found}, not {expected}")
            }
            StateRejection::UnexpectedRoot { expected, found } => {
                write!(f, "it names root key {found}, not {expected}")
            }
            StateRejection::Mismatch(reason) => f.write_str(reason),
        }
    }
}

impl Error {
    /// Builds an [`Error::Malformed`].
    pub(crate) fn malformed(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Malformed {
            what,
            reason: reason.into(),
        }
    }

    /// Builds an [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: Some(path.into()),
            source,
        }
    }

    /// True for failures that may succeed if retried later (unreachable,
    /// throttled), as opposed to definitive answers.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::ProviderUnreachable { .. } | Error::Throttled { .. }
        )
    }
}

impl From<io::Error> for Error {
    fn from(source: io::Error) -> Self {
        Error::Io { path: None, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_error_names_its_path() {
        let e = Error::io(
            "/data/keys",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        let msg = e.to_string();
        assert!(msg.contains("/data/keys"), "{msg}");
        let e: Error = io::Error::from(io::ErrorKind::NotFound).into();
        assert!(!e.to_string().contains(" on "), "{e}");
    }

    #[test]
    fn transient_errors_are_only_unreachable_and_throttled() {
        assert!(Error::Throttled {
            provider: "mock".into()
        }
        .is_transient());
        assert!(Error::ProviderUnreachable {
            provider: "mock".into(),
            reason: "timeout".into()
        }
        .is_transient());
        assert!(!Error::Integrity { what: "x" }.is_transient());
        assert!(!Error::KeyUnavailable {
            key: "k".into(),
            state: KeyState::Disabled
        }
        .is_transient());
    }
}
