//! The state of a root key as a provider reports it.

use std::fmt;

/// The state of a root key.
///
/// Only [`KeyState::Enabled`] allows wrapping and unwrapping. The other
/// states distinguish *why* a key cannot be used, because the right reaction
/// differs: a disabled key may come back, a key pending deletion will not
/// unless someone cancels the deletion, an unreachable provider says nothing
/// about the key at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyState {
    /// Usable.
    Enabled,
    /// Disabled by its owner; can be re-enabled.
    Disabled,
    /// Scheduled for deletion; unusable until the deletion is cancelled.
    PendingDeletion,
    /// Created without key material, waiting for an import (AWS KMS).
    PendingImport,
    /// The provider reports the key unusable for another reason (e.g. the
    /// custom key store behind it is disconnected).
    Unavailable,
    /// The provider does not know this key (deleted, or never existed).
    NotFound,
    /// The key exists but the caller may no longer use it (a permission
    /// was revoked). Reported by checks that try the key, not by describe.
    AccessDenied,
    /// The provider could not be asked; the key's real state is unknown.
    Unreachable,
}

impl KeyState {
    /// True if keys can be wrapped and unwrapped under a root key in this state.
    pub fn is_usable(self) -> bool {
        self == KeyState::Enabled
    }

    /// A stable lowercase name (for logs, files and CLIs).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "enabled",
            KeyState::Disabled => "disabled",
            KeyState::PendingDeletion => "pending-deletion",
            KeyState::PendingImport => "pending-import",
            KeyState::Unavailable => "unavailable",
            KeyState::NotFound => "not-found",
            KeyState::AccessDenied => "access-denied",
            KeyState::Unreachable => "unreachable",
        }
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
