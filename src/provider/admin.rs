//! Key administration a provider may offer ([`KeyAdmin`]): create, enable
//! and disable root keys. Zones never need it; operators' tools and tests
//! do, and reach it through [`KeyProvider::admin`](super::KeyProvider::admin)
//! rather than through a vendor's client.

use async_trait::async_trait;

use super::KeyRef;
use crate::Result;

/// What a new root key should be. Build it with [`NewKey::named`] or
/// [`NewKey::unnamed`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewKey {
    name: Option<String>,
    multi_region: bool,
}

impl NewKey {
    /// A key named `name` (the local key file's key id; a description in
    /// AWS KMS, which names keys itself).
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            multi_region: false,
        }
    }

    /// A key the provider names.
    pub fn unnamed() -> Self {
        Self::default()
    }

    /// Asks for a key that can be replicated to other regions, where the
    /// provider offers such keys.
    pub fn multi_region(mut self) -> Self {
        self.multi_region = true;
        self
    }

    /// The name asked for, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// True if a multi-region key was asked for.
    pub fn is_multi_region(&self) -> bool {
        self.multi_region
    }
}

/// Administration of a provider's root keys. Every method may be slow (a
/// network round trip) and maps its failures as the provider's
/// [`KeyProvider`](super::KeyProvider) calls do.
#[async_trait]
pub trait KeyAdmin: Send + Sync {
    /// Creates an enabled root key and returns its reference.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a
    /// request the provider cannot honor (a name it needs and did not get,
    /// a name already taken, a multi-region key where it has none);
    /// provider errors as they come.
    async fn create_key(&self, new: &NewKey) -> Result<KeyRef>;

    /// Enables `key` (an alias names the key it points to).
    ///
    /// # Errors
    /// [`Error::KeyUnavailable`](crate::Error::KeyUnavailable) for a key
    /// that does not exist or is being deleted; provider errors.
    async fn enable_key(&self, key: &KeyRef) -> Result<()>;

    /// Disables `key`: every zone under it stops opening.
    ///
    /// # Errors
    /// As [`enable_key`](Self::enable_key).
    async fn disable_key(&self, key: &KeyRef) -> Result<()>;
}
