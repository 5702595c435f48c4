//! The crate's one error type.
//!
//! Every variant names a condition a caller can act on, and
//! [`Error::kind`] says which action in one call ([`ErrorKind`]): retry
//! later ([`Error::ProviderUnreachable`], [`Error::Throttled`],
//! [`Error::Conflict`], a zone gated while its KMS is unreachable), reload
//! the zone ([`Error::UnknownEzkVersion`] above the zone's newest), tell the
//! key's owner ([`Error::KeyUnavailable`], [`Error::AccessDenied`]),
//! quarantine data ([`Error::Integrity`], [`Error::Malformed`],
//! [`Error::StateRejected`]), reject the request
//! ([`Error::InvalidArgument`], [`Error::NotFound`]), or fix the calling
//! code ([`Error::Misuse`]). Messages name keys by their reference, never
//! by their bytes: no variant can hold key material.
//!
//! Failures of a provider's SDK or of the operating system keep their cause:
//! [`std::error::Error::source`] walks from the variant to the SDK or I/O
//! error, and [`Error::report`] prints the whole chain on one line.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::provider::{KeyState, ValidationFailure};
use crate::zone::ZoneId;

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in cmek.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Authenticated decryption failed, or a check made before it: the data
    /// was modified, truncated, moved, or opened with the wrong key or
    /// associated data ([`IntegrityFailure::Tampered`]), or a segment was
    /// handed to another zone than the one its header names
    /// ([`IntegrityFailure::ForeignZone`]). No plaintext from the rejected
    /// input was released.
    #[error("integrity check failed: {what}{}", .reason.suffix())]
    Integrity {
        /// What failed to authenticate (e.g. "wrapped key").
        what: &'static str,
        /// What the check can tell about the failure.
        reason: IntegrityFailure,
    },

    /// The root key exists but cannot be used in its current state
    /// (disabled, pending deletion, not found, ...), as the key provider
    /// answered a call.
    #[error("key {key} is unavailable: {state}")]
    KeyUnavailable {
        /// The key's reference, as `provider:region:id`.
        key: String,
        /// The state that makes it unusable.
        state: KeyState,
    },

    /// The zone does not serve data: it was marked unavailable (by a
    /// [`KeyMonitor`](crate::monitor::KeyMonitor), or opened with
    /// [`Keyring::open_zone_gated`](crate::zone::Keyring::open_zone_gated))
    /// because its root key was last seen in `state`, and holds no key
    /// material. With [`KeyState::Unreachable`] the key may be perfectly
    /// healthy — its provider could not be asked — and the zone serves again
    /// once a check reaches it: that is an outage, not a revocation (see
    /// [`Error::kind`]).
    #[error("zone {zone} does not serve data: {}", zone_unavailable_reason(.key, *.state))]
    ZoneUnavailable {
        /// The zone.
        zone: ZoneId,
        /// Its root key's reference, as `provider:region:id`.
        key: String,
        /// The state the root key was last seen in.
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
    /// may be perfectly healthy: this is not a revocation. Build it with
    /// [`Error::unreachable`].
    #[error("key provider {provider} unreachable: {reason}")]
    ProviderUnreachable {
        /// Which provider (e.g. "local", "aws-kms").
        provider: String,
        /// Why, in words (no key material).
        reason: String,
        /// The SDK's or transport's own error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },

    /// The provider rejected the call because of a request-rate limit.
    #[error("key provider {provider} throttled the request")]
    Throttled {
        /// Which provider.
        provider: String,
    },

    /// A provider call waited for its turn in a call budget
    /// ([`BudgetedProvider`](crate::budget::BudgetedProvider)) longer than
    /// the budget's `max_wait`, counting the pauses after the provider
    /// throttled it, and was not made (or its last attempt was throttled).
    /// Nothing is wrong with the key: the provider is overloaded or the
    /// budget too small for the load. Retry later.
    #[error("key provider {provider}: no {priority} call slot within {waited:?} (call budget exhausted{})", if *.throttled > 0 { format!("; throttled {} times", .throttled) } else { String::new() })]
    BudgetExhausted {
        /// Which provider.
        provider: String,
        /// The priority the call waited at.
        priority: crate::budget::Priority,
        /// How long it waited in all.
        waited: std::time::Duration,
        /// How many of its attempts the provider throttled.
        throttled: u32,
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
    /// Build it with [`Error::rejected`].
    #[error("key provider {provider} refused the request: {code}: {message}")]
    ProviderRejected {
        /// Which provider.
        provider: String,
        /// The provider's error code.
        code: String,
        /// The provider's message (never holds key material).
        message: String,
        /// The SDK's own error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },

    /// A root key failed validation (the provider's encrypt, decrypt,
    /// describe round trip) and was not accepted.
    #[error("key {key} failed validation at {step}: {failure}")]
    KeyValidationFailed {
        /// The key's reference.
        key: String,
        /// The failing step: "encrypt", "decrypt" or "describe".
        step: &'static str,
        /// Why the step failed: an unreachable provider is worth retrying,
        /// a denied permission or a disabled key is not.
        failure: ValidationFailure,
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
    /// the zone since this handle read its manifest:
    /// [`Zone::reload`](crate::zone::Zone::reload) and try again (if it
    /// persists after a reload, the header is damaged or foreign). An older
    /// one was retired, or the header is damaged. Either way the key
    /// provider is not at fault.
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

    /// The request cannot be done as asked: an unknown or duplicate key id,
    /// an unknown zone, a mismatched provider, a value out of range. The
    /// same request fails the same way; the calling code is not at fault
    /// (that is [`Error::Misuse`]).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// What the request names does not exist where it was looked for:
    /// e.g. a [`ManifestStore`](crate::zone::ManifestStore) that holds no
    /// zone manifest. For a zone the caller holds an anchor of, its manifest
    /// was lost or removed: restore it from a copy; do not create a new zone
    /// in its place (its segments would not open there).
    #[error("{what} not found: {location}")]
    NotFound {
        /// What was looked for (e.g. "zone manifest").
        what: &'static str,
        /// Where it was looked for.
        location: String,
    },

    /// The calling code broke an API contract: an output buffer of the
    /// wrong length, a reversed range, a chunk sealed after the last one,
    /// a range plan made for another stream. A bug to fix, never worth a
    /// retry; nothing was changed.
    #[error("API misuse: {what}")]
    Misuse {
        /// What the caller did wrong.
        what: String,
    },

    /// A worker thread panicked (a multi-threaded one-shot encryption or
    /// decryption, a batch rewrap's or a backup restore's workers). A bug,
    /// not a problem with the data: nothing it was writing was kept as
    /// done, and no plaintext of the input was released.
    #[error("a worker thread panicked: {what}")]
    WorkerPanicked {
        /// What the thread was doing (and the panic's message, if known).
        what: String,
    },

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

/// What an [`Error::Integrity`] check can tell about a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntegrityFailure {
    /// The bytes did not authenticate: modified, truncated, reordered,
    /// moved onto another segment or id, or opened with the wrong key or
    /// associated data. Authenticated encryption cannot tell these apart.
    Tampered,
    /// A segment header names another zone than the one asked to open it,
    /// checked before any decryption: a routing bug in the caller, or a
    /// segment moved between zones. The header's zone id is authenticated
    /// only by that other zone, so `found` is where the segment *claims* to
    /// belong.
    ForeignZone {
        /// The zone asked to open the segment.
        expected: ZoneId,
        /// The zone the header names.
        found: ZoneId,
    },
}

impl IntegrityFailure {
    /// What [`Error::Integrity`]'s message adds after `what`.
    fn suffix(&self) -> String {
        match self {
            IntegrityFailure::Tampered => String::new(),
            IntegrityFailure::ForeignZone { .. } => format!(": {self}"),
        }
    }
}

impl fmt::Display for IntegrityFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntegrityFailure::Tampered => f.write_str("the data did not authenticate"),
            IntegrityFailure::ForeignZone { expected, found } => write!(
                f,
                "it belongs to another zone ({found}), not to zone {expected}"
            ),
        }
    }
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

impl fmt::Display for StateRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

/// What to do about an [`Error`]: the answer of [`Error::kind`]. Every
/// error has exactly one.
///
/// | kind | errors |
/// |---|---|
/// | `Retry` | `ProviderUnreachable`, `Throttled`, `BudgetExhausted`, `Conflict`; `KeyUnavailable`, `ZoneUnavailable` with [`KeyState::Unreachable`]; `KeyValidationFailed` on an unreachable provider; `Io` of a transient kind (interrupted, would block, timed out, connection reset, aborted or refused, not connected) |
/// | `Stale` | `UnknownEzkVersion` newer than the zone's newest |
/// | `KeyRevoked` | `KeyUnavailable`, `ZoneUnavailable` with any other state; `AccessDenied`; `KeyValidationFailed` for a denied permission, an unusable key state or a round trip returning other bytes |
/// | `Corrupt` | `Integrity`, `Malformed`, `BackupSegmentCorrupt`, `StateRejected`; `UnknownEzkVersion` at or below the zone's newest |
/// | `InvalidRequest` | `InvalidArgument`, `NotFound`, `LimitExceeded`, `KeyInUse`, `RegionMismatch`, `ProviderRejected`; `KeyValidationFailed` for a wrong region or another reason |
/// | `Bug` | `Misuse`, `WorkerPanicked` |
/// | `System` | `Io` of any other kind, `Random` |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Nothing is wrong with the data, the key or the request: the key
    /// provider could not be reached or throttled the call, another writer
    /// changed shared state first (re-read it), a zone is gated while its
    /// KMS cannot be reached, or an I/O call failed in a transient way. Try
    /// again later, with backoff.
    Retry,
    /// This zone handle is behind another process: a segment names an EZK
    /// version newer than any it holds. Call
    /// [`Zone::reload`](crate::zone::Zone::reload), then try again once; if
    /// the error persists, treat it as [`Corrupt`](Self::Corrupt).
    Stale,
    /// The root key's owner withdrew it, or it cannot be used as it is:
    /// disabled, pending deletion or import, deleted, access denied. Stop
    /// serving what it protects and tell the key's owner. The data is
    /// intact and serves again once the key is restored; retrying before
    /// that does not help.
    KeyRevoked,
    /// Stored bytes or state are damaged, forged or misplaced: a segment
    /// that does not authenticate, a header that does not parse, a manifest
    /// rolled back or swapped, a segment handed to another zone. Quarantine
    /// it and fetch a good copy; never retry it as it is.
    Corrupt,
    /// The request cannot be done as asked: an unknown or duplicate id, a
    /// missing zone manifest, a value out of range, a registry rule, a
    /// usage limit (an EZK at its wrap limit needs a rotation first).
    /// Report it to whoever asked; the same request fails the same way.
    InvalidRequest,
    /// A bug: the calling code broke an API contract, or a worker thread
    /// panicked. Fix the code; do not retry.
    Bug,
    /// The machine failed: an I/O error that is not transient (disk full,
    /// permission denied, missing file), or no randomness. Fix the
    /// environment; the same call may then succeed.
    System,
}

impl Error {
    /// Builds an [`Error::Malformed`].
    pub(crate) fn malformed(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Malformed {
            what,
            reason: reason.into(),
        }
    }

    /// An [`Error::Integrity`] for bytes that did not authenticate
    /// ([`IntegrityFailure::Tampered`]).
    pub fn tampered(what: &'static str) -> Self {
        Error::Integrity {
            what,
            reason: IntegrityFailure::Tampered,
        }
    }

    /// Builds an [`Error::Misuse`].
    pub(crate) fn misuse(what: impl Into<String>) -> Self {
        Error::Misuse { what: what.into() }
    }

    /// Builds an [`Error::Io`] for `path`. An I/O error that carries an
    /// [`Error`] (as the stream adapters' errors do) is that error.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        match carried(source) {
            Ok(inner) => inner,
            Err(source) => Error::Io {
                path: Some(path.into()),
                source,
            },
        }
    }

    /// An [`Error::ProviderUnreachable`] for `provider`, without a cause;
    /// add the SDK's error with [`with_source`](Self::with_source).
    pub fn unreachable(provider: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::ProviderUnreachable {
            provider: provider.into(),
            reason: reason.into(),
            source: None,
        }
    }

    /// An [`Error::ProviderRejected`] for `provider`, without a cause; add
    /// the SDK's error with [`with_source`](Self::with_source).
    pub fn rejected(
        provider: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::ProviderRejected {
            provider: provider.into(),
            code: code.into(),
            message: message.into(),
            source: None,
        }
    }

    /// Attaches `cause` as the [`source`](std::error::Error::source) of an
    /// [`Error::ProviderUnreachable`] or [`Error::ProviderRejected`]. The
    /// other variants keep no foreign cause and are returned unchanged.
    pub fn with_source(
        mut self,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        match &mut self {
            Error::ProviderUnreachable { source, .. } | Error::ProviderRejected { source, .. } => {
                *source = Some(cause.into());
            }
            _ => {}
        }
        self
    }

    /// A copy of this error for another waiter on the same outcome (a
    /// coalesced provider call answers every caller that joined it): the
    /// same variant and fields, so [`kind`](Self::kind) and the message are
    /// the same. A foreign cause ([`source`](std::error::Error::source))
    /// cannot be copied and is kept as text in the copy's message.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Integrity { what, reason } => Error::Integrity {
                what,
                reason: reason.clone(),
            },
            Error::KeyUnavailable { key, state } => Error::KeyUnavailable {
                key: key.clone(),
                state: *state,
            },
            Error::ZoneUnavailable { zone, key, state } => Error::ZoneUnavailable {
                zone: *zone,
                key: key.clone(),
                state: *state,
            },
            Error::AccessDenied { key, operation } => Error::AccessDenied {
                key: key.clone(),
                operation,
            },
            Error::ProviderUnreachable {
                provider,
                reason,
                source,
            } => Error::ProviderUnreachable {
                provider: provider.clone(),
                reason: with_causes(reason.clone(), source.as_deref().map(|s| s as _)),
                source: None,
            },
            Error::Throttled { provider } => Error::Throttled {
                provider: provider.clone(),
            },
            Error::BudgetExhausted {
                provider,
                priority,
                waited,
                throttled,
            } => Error::BudgetExhausted {
                provider: provider.clone(),
                priority: *priority,
                waited: *waited,
                throttled: *throttled,
            },
            Error::RegionMismatch {
                key,
                key_region,
                region,
                reason,
            } => Error::RegionMismatch {
                key: key.clone(),
                key_region: key_region.clone(),
                region: region.clone(),
                reason,
            },
            Error::ProviderRejected {
                provider,
                code,
                message,
                source,
            } => Error::ProviderRejected {
                provider: provider.clone(),
                code: code.clone(),
                message: with_causes(message.clone(), source.as_deref().map(|s| s as _)),
                source: None,
            },
            Error::KeyValidationFailed { key, step, failure } => Error::KeyValidationFailed {
                key: key.clone(),
                step,
                failure: failure.clone(),
            },
            Error::KeyInUse { key, zones } => Error::KeyInUse {
                key: key.clone(),
                zones: zones.clone(),
            },
            Error::Malformed { what, reason } => Error::Malformed {
                what,
                reason: reason.clone(),
            },
            Error::BackupSegmentCorrupt { segment, reason } => Error::BackupSegmentCorrupt {
                segment: segment.clone(),
                reason: reason.clone(),
            },
            Error::StateRejected { what, reason } => Error::StateRejected {
                what,
                reason: reason.clone(),
            },
            Error::Conflict { what, reason } => Error::Conflict {
                what,
                reason: reason.clone(),
            },
            Error::UnknownEzkVersion { version, newest } => Error::UnknownEzkVersion {
                version: *version,
                newest: *newest,
            },
            Error::LimitExceeded { what, limit } => Error::LimitExceeded {
                what,
                limit: *limit,
            },
            Error::InvalidArgument(what) => Error::InvalidArgument(what.clone()),
            Error::NotFound { what, location } => Error::NotFound {
                what,
                location: location.clone(),
            },
            Error::Misuse { what } => Error::Misuse { what: what.clone() },
            Error::WorkerPanicked { what } => Error::WorkerPanicked { what: what.clone() },
            Error::Io { path, source } => Error::Io {
                path: path.clone(),
                source: io::Error::new(
                    source.kind(),
                    with_causes(source.to_string(), std::error::Error::source(source)),
                ),
            },
            Error::Random => Error::Random,
        }
    }

    /// What to do about this error; see [`ErrorKind`] for the table.
    ///
    /// ```
    /// use cmek::{Error, ErrorKind};
    /// let err = Error::unreachable("aws-kms", "Decrypt timed out");
    /// assert_eq!(err.kind(), ErrorKind::Retry);
    /// assert!(err.is_transient());
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::ProviderUnreachable { .. }
            | Error::Throttled { .. }
            | Error::BudgetExhausted { .. }
            | Error::Conflict { .. } => ErrorKind::Retry,
            Error::KeyUnavailable { state, .. } | Error::ZoneUnavailable { state, .. } => {
                kind_of_key_state(*state)
            }
            Error::AccessDenied { .. } => ErrorKind::KeyRevoked,
            Error::KeyValidationFailed { failure, .. } => match failure {
                ValidationFailure::Unreachable(_) => ErrorKind::Retry,
                ValidationFailure::KeyState(state) => kind_of_key_state(*state),
                ValidationFailure::AccessDenied | ValidationFailure::RoundTripMismatch => {
                    ErrorKind::KeyRevoked
                }
                _ => ErrorKind::InvalidRequest,
            },
            Error::UnknownEzkVersion { version, newest } if version > newest => ErrorKind::Stale,
            Error::Integrity { .. }
            | Error::Malformed { .. }
            | Error::BackupSegmentCorrupt { .. }
            | Error::StateRejected { .. }
            | Error::UnknownEzkVersion { .. } => ErrorKind::Corrupt,
            Error::InvalidArgument(_)
            | Error::NotFound { .. }
            | Error::LimitExceeded { .. }
            | Error::KeyInUse { .. }
            | Error::RegionMismatch { .. }
            | Error::ProviderRejected { .. } => ErrorKind::InvalidRequest,
            Error::Misuse { .. } | Error::WorkerPanicked { .. } => ErrorKind::Bug,
            Error::Io { source, .. } if is_transient_io(source.kind()) => ErrorKind::Retry,
            Error::Io { .. } | Error::Random => ErrorKind::System,
        }
    }

    /// True for failures that may succeed if retried later, as opposed to
    /// definitive answers: exactly the errors whose [`kind`](Self::kind) is
    /// [`ErrorKind::Retry`]. A zone gated because its KMS could not be
    /// reached is transient; one gated because its key is disabled is not.
    pub fn is_transient(&self) -> bool {
        self.kind() == ErrorKind::Retry
    }

    /// The message followed by every cause in its
    /// [`source`](std::error::Error::source) chain, `": "`-separated, on one
    /// line: what a log line or a command-line tool shows. A cause whose
    /// message is already part of the text is not repeated.
    ///
    /// ```
    /// use std::io;
    /// let err = cmek::Error::unreachable("aws-kms", "Decrypt could not be sent")
    ///     .with_source(io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused"));
    /// assert_eq!(
    ///     err.report(),
    ///     "key provider aws-kms unreachable: Decrypt could not be sent: connection refused"
    /// );
    /// ```
    pub fn report(&self) -> String {
        report(self)
    }
}

/// `error`'s message and every cause in its source chain, `": "`-separated,
/// skipping a cause whose message the text already holds.
fn report(error: &dyn std::error::Error) -> String {
    with_causes(error.to_string(), error.source())
}

/// `text` followed by `cause` and its own causes, as [`Error::report`]
/// writes them.
pub(crate) fn with_causes(text: String, cause: Option<&dyn std::error::Error>) -> String {
    let mut out = text;
    let mut next = cause;
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

fn kind_of_key_state(state: KeyState) -> ErrorKind {
    match state {
        KeyState::Unreachable => ErrorKind::Retry,
        _ => ErrorKind::KeyRevoked,
    }
}

/// I/O failures worth retrying as they are.
fn is_transient_io(kind: io::ErrorKind) -> bool {
    use io::ErrorKind as K;
    matches!(
        kind,
        K::Interrupted
            | K::WouldBlock
            | K::TimedOut
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::ConnectionRefused
            | K::NotConnected
    )
}

fn zone_unavailable_reason(key: &str, state: KeyState) -> String {
    match state {
        KeyState::Unreachable => format!(
            "the provider of its root key {key} could not be reached (an outage, not a \
             revocation: it serves again once a check reaches the key)"
        ),
        state => format!("its root key {key} is {state}"),
    }
}

/// The [`Error`] an I/O error carries (as the stream adapters' errors do),
/// or the I/O error itself.
fn carried(source: io::Error) -> std::result::Result<Error, io::Error> {
    if !source.get_ref().is_some_and(|e| e.is::<Error>()) {
        return Err(source);
    }
    let inner = source.into_inner().expect("checked above");
    Ok(*inner.downcast::<Error>().expect("checked above"))
}

impl From<io::Error> for Error {
    /// An I/O error, or the [`Error`] it carries: a stream adapter's
    /// `Read`/`Write` error that was an integrity failure stays
    /// [`Error::Integrity`] through `?`, not [`Error::Io`].
    fn from(source: io::Error) -> Self {
        carried(source).unwrap_or_else(|source| Error::Io { path: None, source })
    }
}

impl From<Error> for io::Error {
    /// An [`Error`] as an [`io::Error`], for `?` in code that returns
    /// [`io::Result`] — what the stream adapters' `Read` and `Write`
    /// methods return too. The `io::Error` carries the [`Error`] itself:
    /// [`stream::error_of`](crate::stream::error_of) borrows it back and
    /// `From<io::Error> for Error` recovers it, variant and all. Its
    /// [`io::ErrorKind`] follows [`Error::kind`], so that code which looks
    /// only at the kind still acts rightly:
    ///
    /// | [`Error::kind`] | [`io::ErrorKind`] |
    /// |---|---|
    /// | `Retry` | `TimedOut`: the kind retry loops retry |
    /// | `Stale` | `StaleNetworkFileHandle`: reopen the handle (here, [`Zone::reload`](crate::zone::Zone::reload)) |
    /// | `KeyRevoked` | `PermissionDenied` |
    /// | `Corrupt` | `InvalidData` |
    /// | `InvalidRequest` | `InvalidInput`; `NotFound` for [`Error::NotFound`] |
    /// | `Bug` | `InvalidInput` for [`Error::Misuse`]; `Other` for [`Error::WorkerPanicked`] |
    /// | `System` | [`Error::Io`]'s own kind; `Other` for [`Error::Random`] |
    ///
    /// An [`Error::Io`] without a path is its own `io::Error`, unchanged; one
    /// with a path keeps its kind and carries the [`Error`], path included.
    ///
    /// ```
    /// use std::io;
    ///
    /// fn read_block() -> io::Result<Vec<u8>> {
    ///     Err(cmek::Error::tampered("segment chunk"))?
    /// }
    /// let err = read_block().unwrap_err();
    /// assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    /// assert!(matches!(cmek::Error::from(err), cmek::Error::Integrity { .. }));
    /// ```
    fn from(err: Error) -> Self {
        if let Error::Io { path: None, source } = err {
            return source;
        }
        let kind = match &err {
            Error::Io { source, .. } => source.kind(),
            Error::NotFound { .. } => io::ErrorKind::NotFound,
            Error::Misuse { .. } => io::ErrorKind::InvalidInput,
            _ => match err.kind() {
                ErrorKind::Retry => io::ErrorKind::TimedOut,
                ErrorKind::Stale => io::ErrorKind::StaleNetworkFileHandle,
                ErrorKind::KeyRevoked => io::ErrorKind::PermissionDenied,
                ErrorKind::Corrupt => io::ErrorKind::InvalidData,
                ErrorKind::InvalidRequest => io::ErrorKind::InvalidInput,
                ErrorKind::Bug | ErrorKind::System => io::ErrorKind::Other,
            },
        };
        io::Error::new(kind, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ValidationFailure;
    use std::error::Error as _;

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
    fn an_error_carried_in_io_comes_back_out() {
        let carried =
            || io::Error::new(io::ErrorKind::InvalidData, Error::tampered("stream chunk"));
        for e in [Error::from(carried()), Error::io("/data/seg", carried())] {
            assert!(
                matches!(
                    e,
                    Error::Integrity {
                        what: "stream chunk",
                        reason: IntegrityFailure::Tampered
                    }
                ),
                "{e:?}"
            );
        }
        // Another error inside an io::Error stays I/O, kind and all.
        let other = io::Error::new(io::ErrorKind::TimedOut, "slow disk");
        let e = Error::from(other);
        assert!(
            matches!(&e, Error::Io { source, .. } if source.kind() == io::ErrorKind::TimedOut),
            "{e:?}"
        );
        assert_eq!(e.kind(), ErrorKind::Retry);
    }

    #[test]
    fn sources_walk_to_the_cause() {
        let cause = io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused");
        let e = Error::unreachable("aws-kms", "Decrypt could not be sent").with_source(cause);
        let source = e.source().expect("a source");
        assert_eq!(
            source.downcast_ref::<io::Error>().map(io::Error::kind),
            Some(io::ErrorKind::ConnectionRefused)
        );
        assert_eq!(
            e.report(),
            "key provider aws-kms unreachable: Decrypt could not be sent: connection refused"
        );
        let e = Error::rejected("aws-kms", "InvalidKeyUsageException", "not for encryption")
            .with_source(io::Error::other("the SDK's error"));
        assert!(e.source().is_some());
        assert!(Error::unreachable("p", "r").source().is_none());
        // Variants without a slot are returned as they were.
        assert!(Error::Random
            .with_source(io::Error::other("x"))
            .source()
            .is_none());
        // An I/O error shows its cause once, not twice.
        let e = Error::io("/x", io::Error::other("disk on fire"));
        assert_eq!(e.report(), "I/O error on /x: disk on fire");
    }

    #[test]
    fn every_variant_has_one_kind() {
        use ErrorKind as K;
        let zone = ZoneId::from_bytes([1; 16]);
        let state_error = |state| Error::KeyUnavailable {
            key: "k".into(),
            state,
        };
        let gated = |state| Error::ZoneUnavailable {
            zone,
            key: "k".into(),
            state,
        };
        let validation = |failure| Error::KeyValidationFailed {
            key: "k".into(),
            step: "encrypt",
            failure,
        };
        let io_error = |kind| Error::Io {
            path: None,
            source: io::Error::from(kind),
        };
        let table = [
            (Error::tampered("x"), K::Corrupt),
            (
                Error::Integrity {
                    what: "segment header",
                    reason: IntegrityFailure::ForeignZone {
                        expected: zone,
                        found: ZoneId::from_bytes([2; 16]),
                    },
                },
                K::Corrupt,
            ),
            (state_error(KeyState::Disabled), K::KeyRevoked),
            (state_error(KeyState::PendingDeletion), K::KeyRevoked),
            (state_error(KeyState::NotFound), K::KeyRevoked),
            (state_error(KeyState::Unreachable), K::Retry),
            (gated(KeyState::Disabled), K::KeyRevoked),
            (gated(KeyState::AccessDenied), K::KeyRevoked),
            (gated(KeyState::Unreachable), K::Retry),
            (
                Error::AccessDenied {
                    key: "k".into(),
                    operation: "unwrap",
                },
                K::KeyRevoked,
            ),
            (Error::unreachable("p", "timeout"), K::Retry),
            (
                Error::Throttled {
                    provider: "p".into(),
                },
                K::Retry,
            ),
            (
                Error::RegionMismatch {
                    key: "k".into(),
                    key_region: "a".into(),
                    region: "b".into(),
                    reason: "r",
                },
                K::InvalidRequest,
            ),
            (Error::rejected("p", "Code", "m"), K::InvalidRequest),
            (
                validation(ValidationFailure::Unreachable("t".into())),
                K::Retry,
            ),
            (validation(ValidationFailure::AccessDenied), K::KeyRevoked),
            (
                validation(ValidationFailure::KeyState(KeyState::Disabled)),
                K::KeyRevoked,
            ),
            (
                validation(ValidationFailure::KeyState(KeyState::Unreachable)),
                K::Retry,
            ),
            (
                validation(ValidationFailure::RoundTripMismatch),
                K::KeyRevoked,
            ),
            (
                validation(ValidationFailure::WrongRegion("w".into())),
                K::InvalidRequest,
            ),
            (
                Error::KeyInUse {
                    key: "k".into(),
                    zones: vec!["z".into()],
                },
                K::InvalidRequest,
            ),
            (Error::malformed("x", "y"), K::Corrupt),
            (
                Error::BackupSegmentCorrupt {
                    segment: "s".into(),
                    reason: "r".into(),
                },
                K::Corrupt,
            ),
            (
                Error::StateRejected {
                    what: "zone manifest",
                    reason: StateRejection::Rollback {
                        found: 1,
                        minimum: 2,
                    },
                },
                K::Corrupt,
            ),
            (
                Error::Conflict {
                    what: "zone manifest",
                    reason: "r".into(),
                },
                K::Retry,
            ),
            (
                Error::UnknownEzkVersion {
                    version: 3,
                    newest: 2,
                },
                K::Stale,
            ),
            (
                Error::UnknownEzkVersion {
                    version: 1,
                    newest: 2,
                },
                K::Corrupt,
            ),
            (
                Error::LimitExceeded {
                    what: "w",
                    limit: 1,
                },
                K::InvalidRequest,
            ),
            (Error::InvalidArgument("dup".into()), K::InvalidRequest),
            (
                Error::NotFound {
                    what: "zone manifest",
                    location: "memory".into(),
                },
                K::InvalidRequest,
            ),
            (Error::misuse("reversed range"), K::Bug),
            (
                Error::WorkerPanicked {
                    what: "sealing".into(),
                },
                K::Bug,
            ),
            (io_error(io::ErrorKind::Interrupted), K::Retry),
            (io_error(io::ErrorKind::TimedOut), K::Retry),
            (io_error(io::ErrorKind::NotFound), K::System),
            (io_error(io::ErrorKind::PermissionDenied), K::System),
            (Error::Random, K::System),
            (
                Error::BudgetExhausted {
                    provider: "p".into(),
                    priority: crate::budget::Priority::Open,
                    waited: std::time::Duration::from_secs(30),
                    throttled: 2,
                },
                K::Retry,
            ),
        ];
        for (error, kind) in table {
            assert_eq!(error.kind(), kind, "{error:?}");
            assert_eq!(error.is_transient(), kind == K::Retry, "{error:?}");
            // A copy for another waiter says the same and asks for the same.
            let copy = error.duplicate();
            assert_eq!(copy.kind(), kind, "{error:?}");
            assert_eq!(copy.report(), error.report(), "{error:?}");
        }
    }

    #[test]
    fn into_io_picks_the_kind_by_action_and_carries_the_error() {
        use io::ErrorKind as Io;
        let zone = ZoneId::from_bytes([3; 16]);
        let gated = |state| Error::ZoneUnavailable {
            zone,
            key: "k".into(),
            state,
        };
        let table = [
            (Error::tampered("chunk"), Io::InvalidData),
            (Error::malformed("header", "short"), Io::InvalidData),
            (gated(KeyState::Disabled), Io::PermissionDenied),
            (gated(KeyState::Unreachable), Io::TimedOut),
            (Error::unreachable("aws-kms", "timeout"), Io::TimedOut),
            (
                Error::Conflict {
                    what: "zone manifest",
                    reason: "r".into(),
                },
                Io::TimedOut,
            ),
            (
                Error::UnknownEzkVersion {
                    version: 3,
                    newest: 2,
                },
                Io::StaleNetworkFileHandle,
            ),
            (
                Error::UnknownEzkVersion {
                    version: 1,
                    newest: 2,
                },
                Io::InvalidData,
            ),
            (Error::InvalidArgument("x".into()), Io::InvalidInput),
            (
                Error::NotFound {
                    what: "zone manifest",
                    location: "/m".into(),
                },
                Io::NotFound,
            ),
            (Error::misuse("reversed range"), Io::InvalidInput),
            (
                Error::WorkerPanicked {
                    what: "sealing".into(),
                },
                Io::Other,
            ),
            (Error::Random, Io::Other),
            (
                Error::io("/data/seg", io::Error::from(Io::StorageFull)),
                Io::StorageFull,
            ),
        ];
        for (error, io_kind) in table {
            let (text, kind) = (error.to_string(), error.kind());
            let io_error = io::Error::from(error);
            assert_eq!(io_error.kind(), io_kind, "{text}");
            assert_eq!(
                crate::stream::error_of(&io_error).map(Error::kind),
                Some(kind),
                "{text}"
            );
            // And back: the same error, not an I/O one.
            let back = Error::from(io_error);
            assert_eq!((back.to_string(), back.kind()), (text, kind));
        }
        // An I/O error without a path is itself, nothing wrapped around it.
        let plain = io::Error::new(Io::TimedOut, "slow disk");
        let io_error = io::Error::from(Error::from(plain));
        assert!(crate::stream::error_of(&io_error).is_none());
        assert_eq!(
            (io_error.kind(), io_error.to_string()),
            (Io::TimedOut, "slow disk".into())
        );
    }

    #[test]
    fn a_gated_zone_says_whether_it_is_an_outage() {
        let zone = ZoneId::from_bytes([7; 16]);
        let outage = Error::ZoneUnavailable {
            zone,
            key: "aws-kms:eu-west-1:k".into(),
            state: KeyState::Unreachable,
        };
        assert!(outage.to_string().contains("not a revocation"), "{outage}");
        let revoked = Error::ZoneUnavailable {
            zone,
            key: "aws-kms:eu-west-1:k".into(),
            state: KeyState::Disabled,
        };
        assert!(revoked.to_string().contains("is disabled"), "{revoked}");
    }

    #[test]
    fn a_foreign_segment_names_both_zones() {
        let (a, b) = (
            ZoneId::from_bytes([0xaa; 16]),
            ZoneId::from_bytes([0xbb; 16]),
        );
        let e = Error::Integrity {
            what: "segment header",
            reason: IntegrityFailure::ForeignZone {
                expected: b,
                found: a,
            },
        };
        let msg = e.to_string();
        assert!(
            msg.contains(&a.to_string()) && msg.contains(&b.to_string()),
            "{msg}"
        );
        assert_eq!(
            Error::tampered("stream chunk").to_string(),
            "integrity check failed: stream chunk"
        );
    }
}
