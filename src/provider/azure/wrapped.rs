//! The Azure Key Vault provider's wrapped key, version 1 (docs/FORMAT.md,
//! "Azure Key Vault wrapped key"):
//!
//! ```text
//! 0x01 ‖ algorithm (1 byte) ‖ u8(len(key version)) ‖ key version (ASCII)
//!      ‖ salt (16 bytes) ‖ wrapKey result
//! ```
//!
//! The key version is the one that wrapped, so the blob unwraps after the
//! vault made a newer version current; the salt enters the context binding
//! so that wrapping the same key twice never gives the same bytes (AES key
//! wrap is deterministic). Parsing treats the bytes as hostile: every
//! length is checked and anything unexpected is [`Error::Malformed`].

use super::key_id::{valid_version, MAX_VERSION};
use crate::{Error, Result};

/// Format version.
const VERSION: u8 = 0x01;
/// Length of the salt.
pub(crate) const SALT_LEN: usize = 16;
/// What [`Error::Malformed`] names.
const WHAT: &str = "Azure Key Vault wrapped key";

/// The `wrapKey` algorithm, by key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    /// RSA-OAEP with SHA-256 and MGF1-SHA-256 (RSA and RSA-HSM keys).
    RsaOaep256,
    /// AES key wrap, RFC 3394, with a 256-bit key (oct-HSM keys).
    A256Kw,
}

impl Algorithm {
    fn code(self) -> u8 {
        match self {
            Algorithm::RsaOaep256 => 0x01,
            Algorithm::A256Kw => 0x02,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0x01 => Some(Algorithm::RsaOaep256),
            0x02 => Some(Algorithm::A256Kw),
            _ => None,
        }
    }

    /// The algorithm's name in the Key Vault API.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Algorithm::RsaOaep256 => "RSA-OAEP-256",
            Algorithm::A256Kw => "A256KW",
        }
    }

    /// Whether `len` can be this algorithm's output for a 64-byte bound
    /// key: an RSA-2048, -3072 or -4096 block, or 64 bytes plus the 8-byte
    /// integrity block of AES key wrap.
    fn fits(self, len: usize) -> bool {
        match self {
            Algorithm::RsaOaep256 => matches!(len, 256 | 384 | 512),
            Algorithm::A256Kw => len == 72,
        }
    }
}

/// A parsed wrapped key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AzureWrapped {
    pub(crate) algorithm: Algorithm,
    pub(crate) key_version: String,
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) ciphertext: Vec<u8>,
}

impl AzureWrapped {
    /// The bytes to persist.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the service answered with a version or a
    /// result this format cannot hold.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        if !valid_version(&self.key_version) {
            return Err(Error::malformed(
                "Azure Key Vault wrapKey response",
                "the key identifier has no valid version",
            ));
        }
        if !self.algorithm.fits(self.ciphertext.len()) {
            return Err(Error::malformed(
                "Azure Key Vault wrapKey response",
                format!(
                    "a {} result of {} bytes",
                    self.algorithm.as_str(),
                    self.ciphertext.len()
                ),
            ));
        }
        let mut out =
            Vec::with_capacity(3 + self.key_version.len() + SALT_LEN + self.ciphertext.len());
        out.push(VERSION);
        out.push(self.algorithm.code());
        // valid_version bounds the length to MAX_VERSION (64).
        out.push(self.key_version.len() as u8);
        out.extend_from_slice(self.key_version.as_bytes());
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.ciphertext);
        Ok(out)
    }

    /// Parses persisted bytes.
    ///
    /// # Errors
    /// [`Error::Malformed`] for any other layout.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = |why: &str| Error::malformed(WHAT, why);
        let (&version, rest) = bytes.split_first().ok_or_else(|| bad("empty"))?;
        if version != VERSION {
            return Err(bad(&format!("unknown version {version}")));
        }
        let (&code, rest) = rest.split_first().ok_or_else(|| bad("truncated"))?;
        let algorithm =
            Algorithm::from_code(code).ok_or_else(|| bad(&format!("unknown algorithm {code}")))?;
        let (&len, rest) = rest.split_first().ok_or_else(|| bad("truncated"))?;
        let len = usize::from(len);
        if len == 0 || len > MAX_VERSION || rest.len() < len + SALT_LEN {
            return Err(bad("bad key version length"));
        }
        let (key_version, rest) = rest.split_at(len);
        let key_version = std::str::from_utf8(key_version)
            .ok()
            .filter(|v| valid_version(v))
            .ok_or_else(|| bad("the key version is not letters and digits"))?
            .to_owned();
        let (salt, ciphertext) = rest.split_at(SALT_LEN);
        if !algorithm.fits(ciphertext.len()) {
            return Err(bad(&format!(
                "{} bytes cannot be a {} result",
                ciphertext.len(),
                algorithm.as_str()
            )));
        }
        Ok(Self {
            algorithm,
            key_version,
            salt: salt.try_into().expect("split at SALT_LEN"),
            ciphertext: ciphertext.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(algorithm: Algorithm, len: usize) -> AzureWrapped {
        AzureWrapped {
            algorithm,
            key_version: "0123456789abcdef0123456789abcdef".into(),
            salt: [0xa5; SALT_LEN],
            ciphertext: vec![0x5a; len],
        }
    }

    #[test]
    fn the_layout_is_pinned() {
        let w = sample(Algorithm::A256Kw, 72);
        let bytes = w.encode().unwrap();
        let mut expected = vec![0x01, 0x02, 32];
        expected.extend_from_slice(b"0123456789abcdef0123456789abcdef");
        expected.extend_from_slice(&[0xa5; 16]);
        expected.extend_from_slice(&[0x5a; 72]);
        assert_eq!(bytes, expected);
        assert_eq!(bytes.len(), 3 + 32 + 16 + 72);
        assert_eq!(AzureWrapped::decode(&bytes).unwrap(), w);
        for len in [256, 384, 512] {
            let w = sample(Algorithm::RsaOaep256, len);
            let bytes = w.encode().unwrap();
            assert_eq!(bytes[1], 0x01);
            assert_eq!(AzureWrapped::decode(&bytes).unwrap(), w);
        }
    }

    #[test]
    fn hostile_bytes_are_malformed_never_a_panic() {
        // The shortest RSA result: no truncation of it is another valid one.
        let good = sample(Algorithm::RsaOaep256, 256).encode().unwrap();
        // Every truncation and every single-byte change of the header.
        for cut in 0..good.len() {
            assert!(matches!(
                AzureWrapped::decode(&good[..cut]),
                Err(Error::Malformed { .. })
            ));
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(AzureWrapped::decode(&longer).is_err());
        for (at, value) in [
            (0, 2u8),
            (1, 0),
            (1, 3),
            (2, 0),
            (2, 65),
            (2, 200),
            (3, b'-'),
        ] {
            let mut b = good.clone();
            b[at] = value;
            assert!(
                matches!(AzureWrapped::decode(&b), Err(Error::Malformed { .. })),
                "byte {at} = {value}"
            );
        }
        // Arbitrary short inputs.
        for len in 0..80 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 1) as u8).collect();
            let _ = AzureWrapped::decode(&junk);
        }
        // What the service answers is checked before it is persisted.
        assert!(sample(Algorithm::A256Kw, 71).encode().is_err());
        let mut w = sample(Algorithm::RsaOaep256, 384);
        w.key_version = String::new();
        assert!(w.encode().is_err());
    }
}
