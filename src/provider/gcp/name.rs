//! Cloud KMS resource names: `projects/P/locations/L/keyRings/R/cryptoKeys/K`.
//!
//! A root key is a CryptoKey, named by its full resource name; its
//! location `L` is where it lives (a region, a multi-region or `global`).
//! Key versions (`.../cryptoKeyVersions/N`) are not root keys: the primary
//! version encrypts, and Decrypt finds the version a ciphertext names.

use std::fmt;

/// A parsed CryptoKey resource name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CryptoKeyName {
    /// The project id (or number).
    pub project: String,
    /// The location id: a region (`europe-west1`), a multi-region
    /// (`europe`, `nam4`) or `global`.
    pub location: String,
    /// The key ring id.
    pub key_ring: String,
    /// The crypto key id.
    pub key: String,
}

/// Longest key ring or crypto key id Cloud KMS accepts.
const MAX_ID: usize = 63;

/// True for a key ring or crypto key id: 1 to 63 letters, digits, `_`, `-`.
pub fn is_resource_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_project(id: &str) -> bool {
    // Project ids, numbers, and domain-scoped ids (`example.com:proj`).
    !id.is_empty()
        && id.len() <= 100
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:".contains(&b))
}

fn is_location(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl CryptoKeyName {
    /// Parses a CryptoKey name; `None` for anything else (a key ring, a
    /// key version, a name with an empty or ill-formed part).
    pub fn parse(s: &str) -> Option<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        let [projects, project, locations, location, rings, key_ring, keys, key] = parts[..] else {
            return None;
        };
        if projects != "projects"
            || locations != "locations"
            || rings != "keyRings"
            || keys != "cryptoKeys"
        {
            return None;
        }
        if !is_project(project)
            || !is_location(location)
            || !is_resource_id(key_ring)
            || !is_resource_id(key)
        {
            return None;
        }
        Some(Self {
            project: project.into(),
            location: location.into(),
            key_ring: key_ring.into(),
            key: key.into(),
        })
    }

    /// The key ring's name, `projects/P/locations/L/keyRings/R`.
    pub fn key_ring_name(&self) -> String {
        format!(
            "projects/{}/locations/{}/keyRings/{}",
            self.project, self.location, self.key_ring
        )
    }
}

impl fmt::Display for CryptoKeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/cryptoKeys/{}", self.key_ring_name(), self.key)
    }
}

/// A parsed key ring name, `projects/P/locations/L/keyRings/R`: where
/// [`KeyAdmin::create_key`](crate::provider::KeyAdmin::create_key) creates keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRingName {
    /// The project id.
    pub project: String,
    /// The location id.
    pub location: String,
    /// The key ring id.
    pub key_ring: String,
}

impl KeyRingName {
    /// Parses a key ring name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        let ["projects", project, "locations", location, "keyRings", key_ring] = parts[..] else {
            return None;
        };
        (is_project(project) && is_location(location) && is_resource_id(key_ring)).then(|| Self {
            project: project.into(),
            location: location.into(),
            key_ring: key_ring.into(),
        })
    }

    /// The location's name, `projects/P/locations/L`, the key ring's parent.
    pub fn parent(&self) -> String {
        format!("projects/{}/locations/{}", self.project, self.location)
    }

    /// The name of key `key` in this ring.
    pub fn key(&self, key: &str) -> CryptoKeyName {
        CryptoKeyName {
            project: self.project.clone(),
            location: self.location.clone(),
            key_ring: self.key_ring.clone(),
            key: key.into(),
        }
    }
}

impl fmt::Display for KeyRingName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/keyRings/{}", self.parent(), self.key_ring)
    }
}

/// The location a key name pins, if it is a CryptoKey name.
pub fn location_of(name: &str) -> Option<String> {
    CryptoKeyName::parse(name).map(|n| n.location)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "projects/acme-1/locations/europe-west1/keyRings/ring_1/cryptoKeys/orders-root";

    #[test]
    fn parses_crypto_key_names_and_prints_them_back() {
        let name = CryptoKeyName::parse(KEY).unwrap();
        assert_eq!(name.project, "acme-1");
        assert_eq!(name.location, "europe-west1");
        assert_eq!(name.key_ring, "ring_1");
        assert_eq!(name.key, "orders-root");
        assert_eq!(name.to_string(), KEY);
        assert_eq!(
            name.key_ring_name(),
            "projects/acme-1/locations/europe-west1/keyRings/ring_1"
        );
        assert_eq!(location_of(KEY).as_deref(), Some("europe-west1"));
        let domain = "projects/example.com:acme/locations/global/keyRings/r/cryptoKeys/k";
        assert!(CryptoKeyName::parse(domain).is_some());
    }

    #[test]
    fn refuses_everything_else() {
        let long = "k".repeat(64);
        let too_long = format!("projects/p/locations/us/keyRings/r/cryptoKeys/{long}");
        for bad in [
            "",
            "alias/orders",
            "projects/p/locations/us/keyRings/r",
            "projects/p/locations/us/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
            "projects/p/locations/us/keyRings/r/cryptoKeys/",
            "projects//locations/us/keyRings/r/cryptoKeys/k",
            "projects/p/locations/US/keyRings/r/cryptoKeys/k",
            "projects/p/locations/us/keyRings/r r/cryptoKeys/k",
            "projects/p/regions/us/keyRings/r/cryptoKeys/k",
            "/projects/p/locations/us/keyRings/r/cryptoKeys/k",
            "arn:aws:kms:us-east-1:111122223333:key/k",
            too_long.as_str(),
        ] {
            assert!(CryptoKeyName::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn key_rings_name_their_keys() {
        let ring = KeyRingName::parse("projects/acme-1/locations/europe/keyRings/cmek").unwrap();
        assert_eq!(ring.parent(), "projects/acme-1/locations/europe");
        assert_eq!(
            ring.key("k1").to_string(),
            "projects/acme-1/locations/europe/keyRings/cmek/cryptoKeys/k1"
        );
        assert_eq!(
            ring.to_string(),
            "projects/acme-1/locations/europe/keyRings/cmek"
        );
        assert!(KeyRingName::parse(KEY).is_none());
        assert!(KeyRingName::parse("projects/p/locations/l").is_none());
    }
}
