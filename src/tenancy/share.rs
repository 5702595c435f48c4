//! One failed open, told to every caller that waited for it.
//!
//! [`Error`] is not `Clone` (its sources are boxed `std::error::Error`s),
//! so each waiter gets a copy made here: the same variant and fields, so
//! that [`Error::kind`] and every match an engine makes on it come out the
//! same; a source becomes its message, with an I/O error's kind kept.

use std::error::Error as _;
use std::io;

use crate::Error;

/// A copy of `e` for one more waiter.
pub(super) fn copy_error(e: &Error) -> Error {
    let source_text = || -> Option<Box<dyn std::error::Error + Send + Sync>> {
        e.source()
            .map(|s| Box::new(io::Error::other(s.to_string())) as _)
    };
    match e {
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
            provider, reason, ..
        } => Error::ProviderUnreachable {
            provider: provider.clone(),
            reason: reason.clone(),
            source: source_text(),
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
            ..
        } => Error::ProviderRejected {
            provider: provider.clone(),
            code: code.clone(),
            message: message.clone(),
            source: source_text(),
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
            source: io::Error::new(source.kind(), source.to_string()),
        },
        Error::Random => Error::Random,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, KeyState};

    #[test]
    fn copies_keep_the_variant_the_kind_and_the_message() {
        let errors = [
            Error::Throttled {
                provider: "mock".into(),
            },
            Error::unreachable("mock", "down").with_source(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "connection refused",
            )),
            Error::KeyUnavailable {
                key: "k".into(),
                state: KeyState::Disabled,
            },
            Error::Io {
                path: None,
                source: io::Error::new(io::ErrorKind::TimedOut, "slow disk"),
            },
            Error::NotFound {
                what: "zone",
                location: "catalog".into(),
            },
        ];
        for e in &errors {
            let copy = copy_error(e);
            assert_eq!(copy.kind(), e.kind(), "{e}");
            assert_eq!(copy.to_string(), e.to_string());
            assert_eq!(
                copy.source().map(ToString::to_string),
                e.source().map(ToString::to_string)
            );
            assert_eq!(
                std::mem::discriminant(&copy),
                std::mem::discriminant(e),
                "{e}"
            );
        }
        assert_eq!(copy_error(&errors[0]).kind(), ErrorKind::Retry);
    }
}
