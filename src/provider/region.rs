//! Which regions a root key serves: [`RegionAnswer`], the provider's answer
//! to "can this key be used from region R?".

use super::kit::region_mismatch;
use super::KeyRef;
use crate::{Error, Result};

/// A provider's answer to "does root key K serve region R?"
/// ([`KeyProvider::serves_region`](super::KeyProvider::serves_region)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegionAnswer {
    /// The key lives in the region: it is used there under its own name.
    Home,
    /// A replica of the key lives in the region and unwraps what the key
    /// wrapped; it is used there under this name.
    Replica(KeyRef),
    /// The key cannot be used from the region; the reason says what the
    /// operator must do instead.
    NotServed(&'static str),
}

impl RegionAnswer {
    /// The answer a name gives: the reference from
    /// [`key_in_region`](super::KeyProvider::key_in_region), or its
    /// refusal.
    ///
    /// # Errors
    /// Any error other than [`Error::RegionMismatch`], unchanged.
    pub fn from_name(named: Result<KeyRef>, root: &KeyRef) -> Result<Self> {
        match named {
            Ok(key) if key.region() == root.region() => Ok(RegionAnswer::Home),
            Ok(key) => Ok(RegionAnswer::Replica(key)),
            Err(Error::RegionMismatch { reason, .. }) => Ok(RegionAnswer::NotServed(reason)),
            Err(e) => Err(e),
        }
    }

    /// True unless the key cannot be used from the region.
    pub fn serves(&self) -> bool {
        !matches!(self, RegionAnswer::NotServed(_))
    }

    /// The reference to use `root` under in `region`, or why it cannot be.
    ///
    /// # Errors
    /// [`Error::RegionMismatch`] with the provider's reason if the key does
    /// not serve `region`.
    pub fn require(self, root: &KeyRef, region: &str) -> Result<KeyRef> {
        match self {
            RegionAnswer::Home => Ok(root.clone()),
            RegionAnswer::Replica(key) => Ok(key),
            RegionAnswer::NotServed(reason) => Err(region_mismatch(root, region, reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_from_names() {
        let root = KeyRef::new("p", "k", "r1");
        assert_eq!(
            RegionAnswer::from_name(Ok(root.clone()), &root).unwrap(),
            RegionAnswer::Home
        );
        let replica = KeyRef::new("p", "k", "r2");
        let answer = RegionAnswer::from_name(Ok(replica.clone()), &root).unwrap();
        assert_eq!(answer, RegionAnswer::Replica(replica.clone()));
        assert!(answer.serves());
        assert_eq!(answer.require(&root, "r2").unwrap(), replica);
        let no = RegionAnswer::from_name(Err(region_mismatch(&root, "r3", "why")), &root).unwrap();
        assert_eq!(no, RegionAnswer::NotServed("why"));
        assert!(!no.serves());
        let err = no.require(&root, "r3").unwrap_err();
        assert!(
            matches!(&err, Error::RegionMismatch { region, reason: "why", .. } if region == "r3"),
            "{err}"
        );
        assert!(RegionAnswer::from_name(Err(Error::Random), &root).is_err());
    }
}
