//! How an [`EncryptedStore`](super::v014::EncryptedStore) reports its own
//! failures: [`ObjectError`], a [`crate::Error`] with the object's path and
//! the range read, and the rule that decides which `object_store` variant
//! carries it and whether a retry loop may see it as transient.
//!
//! `object_store` has no portable "do not retry" signal: engines retry
//! `Error::Generic` and stop on a few variants (`NotFound`,
//! `Precondition`, …). An engine that retried an integrity failure would
//! read the same damaged bytes forever, so the adapter classifies each
//! failure by [`ErrorKind`]:
//!
//! | kind | carried as | retried by an engine |
//! |---|---|---|
//! | [`Retry`](ErrorKind::Retry) (KMS unreachable or throttled, a conflict, a zone gated while its KMS is unreachable, a store response cut short) | `Generic` | yes |
//! | [`KeyRevoked`](ErrorKind::KeyRevoked) (key disabled, deleted, access denied) | `PermissionDenied`, marked permanent | no |
//! | [`Corrupt`](ErrorKind::Corrupt), [`InvalidRequest`](ErrorKind::InvalidRequest), [`Bug`](ErrorKind::Bug), [`Stale`](ErrorKind::Stale) after the adapter's own reload | `Generic`, marked permanent | no |
//!
//! "Marked permanent" means the [`ObjectError`] is wrapped, with feature
//! `slatedb`, in `slatedb_common::retry::NonRetryable`, the marker SlateDB's
//! retry loop looks for anywhere in an error's sources (and otherwise stops
//! at nothing but the variants above). Other engines call
//! [`is_retryable`] or [`ObjectError::find`] on the error they got.

use std::error::Error as StdError;
use std::fmt;
use std::ops::Range;

use crate::{Error, ErrorKind};

/// A cmek failure on one object of an `EncryptedStore`: the object's path,
/// the plaintext byte range being read where there was one, and the
/// [`Error`]. It is the source (directly, or under a retry marker; see
/// [`find`](Self::find)) of the `object_store::Error` the adapter returns.
///
/// ```
/// use cmek::object_store::ObjectError;
/// let damaged = cmek::Error::Malformed { what: "object", reason: "too short".into() };
/// let e = ObjectError::new("db/0001.sst", Some(4096..8192), damaged);
/// assert_eq!(e.to_string(), "object db/0001.sst, bytes 4096..8192: malformed object: too short");
/// assert_eq!(e.kind(), cmek::ErrorKind::Corrupt);
/// ```
#[derive(Debug)]
pub struct ObjectError {
    path: String,
    range: Option<Range<u64>>,
    error: Error,
}

impl ObjectError {
    /// `error` on the object at `path`, reading the plaintext bytes `range`.
    pub fn new(path: impl Into<String>, range: Option<Range<u64>>, error: Error) -> Self {
        Self {
            path: path.into(),
            range,
            error,
        }
    }

    /// The object's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The plaintext byte range being read, when the failure happened in a
    /// ranged read.
    pub fn range(&self) -> Option<Range<u64>> {
        self.range.clone()
    }

    /// What went wrong.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// What went wrong, by value.
    pub fn into_error(self) -> Error {
        self.error
    }

    /// What to do about it ([`Error::kind`]).
    pub fn kind(&self) -> ErrorKind {
        self.error.kind()
    }

    /// Whether a retry can succeed: only for [`ErrorKind::Retry`].
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Retry
    }

    /// The `ObjectError` in `err` or its sources (through retry markers and
    /// `std::io::Error` wrappers), if any: how a caller holding an
    /// `object_store::Error` reaches cmek's error.
    pub fn find<'a>(mut err: &'a (dyn StdError + 'static)) -> Option<&'a Self> {
        // Bounded: a source chain that loops must not hang the caller.
        for _ in 0..64 {
            if let Some(found) = err.downcast_ref::<Self>() {
                return Some(found);
            }
            // `io::Error::source` skips the error it wraps; look inside.
            err = match err.downcast_ref::<std::io::Error>() {
                Some(io) => io.get_ref()?,
                None => err.source()?,
            };
        }
        None
    }
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "object {}", self.path)?;
        if let Some(r) = &self.range {
            write!(f, ", bytes {}..{}", r.start, r.end)?;
        }
        write!(f, ": {}", self.error)
    }
}

impl StdError for ObjectError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.error)
    }
}

/// Whether an error from an `EncryptedStore` (or anything wrapping one) is
/// worth retrying: `Some(false)` for cmek's permanent failures (corruption,
/// a revoked key, a refused request, misuse), `Some(true)` for its
/// transient ones, `None` when the error is not cmek's (the inner store's
/// own errors pass through unchanged; judge those as the engine always
/// did).
pub fn is_retryable(err: &(dyn StdError + 'static)) -> Option<bool> {
    ObjectError::find(err).map(ObjectError::is_retryable)
}

/// How the adapter carries an [`ObjectError`] in an `object_store` error:
/// which variant, and whether it is marked permanent.
#[derive(Debug)]
pub(crate) enum Carrier {
    /// `Generic`, left for the engine to retry.
    Transient(ObjectError),
    /// `PermissionDenied`, marked permanent.
    Denied(String, Box<dyn StdError + Send + Sync + 'static>),
    /// `Generic`, marked permanent.
    Permanent(Box<dyn StdError + Send + Sync + 'static>),
}

impl Carrier {
    /// The carrier for `e`.
    pub(crate) fn of(e: ObjectError) -> Self {
        match e.kind() {
            ErrorKind::Retry => Self::Transient(e),
            ErrorKind::KeyRevoked => Self::Denied(e.path.clone(), permanent(e)),
            _ => Self::Permanent(permanent(e)),
        }
    }
}

/// `e`, marked so that engines' retry loops return it at once.
fn permanent(e: ObjectError) -> Box<dyn StdError + Send + Sync + 'static> {
    #[cfg(feature = "slatedb")]
    {
        Box::new(slatedb_common::retry::NonRetryable(Box::new(e)))
    }
    #[cfg(not(feature = "slatedb"))]
    {
        Box::new(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IntegrityFailure;

    fn integrity() -> Error {
        Error::Integrity {
            what: "stream chunk",
            reason: IntegrityFailure::Tampered,
        }
    }

    #[test]
    fn names_the_object_and_range() {
        let e = ObjectError::new("a/b.sst", Some(10..20), integrity());
        assert_eq!(
            e.to_string(),
            "object a/b.sst, bytes 10..20: integrity check failed: stream chunk"
        );
        let e = ObjectError::new("a/b.sst", None, integrity());
        assert_eq!(
            e.to_string(),
            "object a/b.sst: integrity check failed: stream chunk"
        );
    }

    #[test]
    fn classifies_by_kind() {
        let throttled = ObjectError::new(
            "p",
            None,
            Error::Throttled {
                provider: "aws-kms".into(),
            },
        );
        assert!(matches!(Carrier::of(throttled), Carrier::Transient(_)));
        let denied = ObjectError::new(
            "p",
            None,
            Error::AccessDenied {
                key: "k".into(),
                operation: "unwrap",
            },
        );
        assert!(matches!(Carrier::of(denied), Carrier::Denied(p, _) if p == "p"));
        let corrupt = ObjectError::new("p", None, integrity());
        assert!(matches!(Carrier::of(corrupt), Carrier::Permanent(_)));
    }

    #[test]
    fn found_through_wrappers() {
        let Carrier::Permanent(boxed) = Carrier::of(ObjectError::new("p", None, integrity()))
        else {
            panic!("an integrity failure is permanent");
        };
        let io = std::io::Error::other(Wrapper(boxed));
        let found = ObjectError::find(&io).expect("found");
        assert_eq!(found.path(), "p");
        assert_eq!(is_retryable(&io), Some(false));
        assert_eq!(is_retryable(&std::io::Error::other("timeout")), None);
    }

    #[cfg(feature = "slatedb")]
    #[test]
    fn permanent_failures_carry_slatedbs_marker() {
        let Carrier::Permanent(boxed) = Carrier::of(ObjectError::new("p", None, integrity()))
        else {
            panic!("an integrity failure is permanent");
        };
        assert!(slatedb_common::retry::NonRetryable::find(boxed.as_ref()).is_some());
        let Carrier::Transient(e) = Carrier::of(ObjectError::new(
            "p",
            None,
            Error::Throttled {
                provider: "x".into(),
            },
        )) else {
            panic!("throttling is transient");
        };
        assert!(slatedb_common::retry::NonRetryable::find(&e).is_none());
    }

    /// An error that holds another as its source, as engines' own wrappers do.
    #[derive(Debug)]
    struct Wrapper(Box<dyn StdError + Send + Sync + 'static>);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "wrapped: {}", self.0)
        }
    }

    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(self.0.as_ref())
        }
    }
}
