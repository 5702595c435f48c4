//! Exit codes and error messages: the one place that maps a failure to the
//! code a script sees. Codes are part of the command's interface; never
//! renumber one.

use std::fmt;
use std::io;
use std::path::Path;
use std::process::ExitCode;

use cmek::KeyState;

/// The exit codes, as shown by `cmek --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  other failure (the provider refused for another reason, no randomness,
     a worker thread panicked)
  2  bad usage: wrong arguments, unknown zone or key, a zone manifest not
     found, invalid request, an output path already taken (see --force), a
     --registry or --local-keys file missing while the state directory
     holds its own
  3  integrity failure: modified, truncated or misplaced data, wrong key or
     segment id, a segment of another zone
  4  malformed input: not a cmek file, damaged header or state file, or a
     header naming an EZK version the zone does not have (retired or damaged)
  5  key unavailable: disabled, pending deletion, not found, or failed
     validation; a zone not serving because of it
  6  access denied by the key provider
  7  key provider unreachable or throttled (transient: retry later), also
     when it keeps a zone from serving
  8  refused by a rule: key limit, key in use, region rule
  9  I/O error: missing or unreadable file or directory, disk full
  10  stored state refused: a manifest rolled back or swapped, a journal or
      restore state that is not this zone's or this operation's
  11  conflict: another process changed or holds the same state (retry),
      or replaced an output path while it was opened";

/// What kind of failure ended the command; its discriminant is the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Anything without a more specific code.
    Other = 1,
    /// Wrong arguments or an impossible request.
    Usage = 2,
    /// Authentication of data or keys failed.
    Integrity = 3,
    /// Input that does not parse.
    Malformed = 4,
    /// The key cannot be used in its state.
    KeyUnavailable = 5,
    /// The provider refused for lack of permission.
    AccessDenied = 6,
    /// The provider could not answer now.
    Unreachable = 7,
    /// A registry rule forbids the request.
    Refused = 8,
    /// The operating system failed a file operation.
    Io = 9,
    /// Stored state was refused: rolled back, another zone's, another root
    /// key's, or not this operation's.
    Rejected = 10,
    /// Another process changed or holds the same state: retry.
    Conflict = 11,
}

impl Code {
    /// The process exit code.
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(self as u8)
    }
}

/// The code for a library error: the mapping scripts rely on.
pub fn code_of(error: &cmek::Error) -> Code {
    use cmek::Error as E;
    match error {
        E::Integrity { .. } => Code::Integrity,
        E::Malformed { .. } | E::UnknownEzkVersion { .. } => Code::Malformed,
        E::StateRejected { .. } => Code::Rejected,
        E::Conflict { .. } => Code::Conflict,
        E::KeyUnavailable { .. } | E::KeyValidationFailed { .. } => Code::KeyUnavailable,
        E::ZoneUnavailable { state, .. } => match state {
            KeyState::Unreachable => Code::Unreachable,
            KeyState::AccessDenied => Code::AccessDenied,
            _ => Code::KeyUnavailable,
        },
        E::AccessDenied { .. } => Code::AccessDenied,
        E::ProviderUnreachable { .. } | E::Throttled { .. } => Code::Unreachable,
        E::KeyInUse { .. } | E::LimitExceeded { .. } | E::RegionMismatch { .. } => Code::Refused,
        // A misuse of the library by the tool follows from the arguments
        // it was given (e.g. a reversed range): usage, as before the
        // library told the two apart.
        E::InvalidArgument(_) | E::NotFound { .. } | E::Misuse { .. } => Code::Usage,
        E::Io { .. } => Code::Io,
        // ProviderRejected, WorkerPanicked, Random and variants added later.
        _ => Code::Other,
    }
}

/// A failed command: its code and a message naming what failed and why.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: Code,
    /// The message, without the `cmek: error: ` prefix.
    pub message: String,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Code::Usage, message)
    }

    /// Prefixes the message with what was being done, e.g. the file.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<cmek::Error> for Failure {
    /// The message holds the error's causes too (an SDK's, the operating
    /// system's).
    fn from(error: cmek::Error) -> Self {
        Self::new(code_of(&error), error.report())
    }
}

impl From<io::Error> for Failure {
    /// An I/O error from a stream adapter may carry a library error (an
    /// integrity failure inside a read): that error decides the code.
    fn from(error: io::Error) -> Self {
        match cmek::stream::error_of(&error) {
            Some(inner) => Self::new(code_of(inner), inner.report()),
            None => Self::new(Code::Io, format!("I/O error: {error}")),
        }
    }
}

/// An I/O error on `path`.
pub fn io_at(path: &Path, error: io::Error) -> Failure {
    Failure::from(error).context(path.display())
}

/// Result of a command.
pub type CliResult<T = ()> = Result<T, Failure>;

/// Adds context to the error of a result.
pub trait Context<T> {
    /// Prefixes the error message with `what`.
    fn context(self, what: impl fmt::Display) -> CliResult<T>;
}

impl<T, E: Into<Failure>> Context<T> for Result<T, E> {
    fn context(self, what: impl fmt::Display) -> CliResult<T> {
        self.map_err(|e| e.into().context(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_in_the_help() {
        for code in [
            Code::Other,
            Code::Usage,
            Code::Integrity,
            Code::Malformed,
            Code::KeyUnavailable,
            Code::AccessDenied,
            Code::Unreachable,
            Code::Refused,
            Code::Io,
            Code::Rejected,
            Code::Conflict,
        ] {
            assert!(
                EXIT_CODES_HELP.contains(&format!("\n  {}  ", code as u8)),
                "{code:?}"
            );
        }
    }

    #[test]
    fn new_variants_keep_the_codes_of_their_situations() {
        let zone = cmek::zone::ZoneId::from_bytes([1; 16]);
        let gated = |state| cmek::Error::ZoneUnavailable {
            zone,
            key: "aws-kms:r:k".into(),
            state,
        };
        assert_eq!(code_of(&gated(KeyState::Disabled)), Code::KeyUnavailable);
        assert_eq!(code_of(&gated(KeyState::AccessDenied)), Code::AccessDenied);
        assert_eq!(code_of(&gated(KeyState::Unreachable)), Code::Unreachable);
        let not_found = cmek::Error::NotFound {
            what: "zone manifest",
            location: "x".into(),
        };
        assert_eq!(code_of(&not_found), Code::Usage);
        let misuse = cmek::Error::Misuse {
            what: "reversed range".into(),
        };
        assert_eq!(code_of(&misuse), Code::Usage);
        let panicked = cmek::Error::WorkerPanicked {
            what: "sealing".into(),
        };
        assert_eq!(code_of(&panicked), Code::Other);
        // A panicked pipe thread is not an I/O failure.
        let io = io::Error::other(panicked);
        assert_eq!(Failure::from(io).code, Code::Other);
        let foreign = cmek::Error::Integrity {
            what: "segment header",
            reason: cmek::IntegrityFailure::ForeignZone {
                expected: zone,
                found: cmek::zone::ZoneId::from_bytes([2; 16]),
            },
        };
        assert_eq!(code_of(&foreign), Code::Integrity);
    }

    #[test]
    fn the_message_holds_the_cause() {
        let err = cmek::Error::unreachable("aws-kms", "Decrypt could not be sent")
            .with_source(io::Error::other("connection refused"));
        let failure = Failure::from(err);
        assert_eq!(failure.code, Code::Unreachable);
        assert!(
            failure.message.ends_with(": connection refused"),
            "{failure}"
        );
    }

    #[test]
    fn an_integrity_failure_inside_io_keeps_its_code() {
        let inner = cmek::Error::Integrity {
            what: "segment",
            reason: cmek::IntegrityFailure::Tampered,
        };
        let io = io::Error::new(io::ErrorKind::InvalidData, inner);
        assert_eq!(Failure::from(io).code, Code::Integrity);
        let plain = io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(Failure::from(plain).code, Code::Io);
    }
}
