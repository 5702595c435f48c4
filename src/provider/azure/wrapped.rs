//! The Azure Key Vault provider's wrapped key (docs/FORMAT.md, "Azure Key
//! Vault wrapped key"). Version 2, the one written:
//!
//! ```text
//! 0x02 ‖ algorithm (1 byte) ‖ u8(len(key version)) ‖ key version (ASCII)
//!      ‖ salt (16 bytes) ‖ wrapKey result ‖ signature (RSA keys only)
//! ```
//!
//! Under an RSA key, `wrapKey` is RSA-OAEP-256 under the key's *public*
//! half, which anyone can read: a wrap proves nothing about who made it. So
//! every RSA wrap carries a PS256 signature by the same key version (Key
//! Vault `sign`, which needs the private half) over
//! [`AzureWrapped::signed_message`]: the format version, everything before
//! the signature, the key's versionless id and the encryption context.
//! Unwrapping verifies it before `unwrapKey` is called. An `A256KW` wrap
//! (an `oct-HSM` key) needs none: the key is symmetric and never leaves the
//! HSM, so only the key holder can make a wrap it accepts.
//!
//! Version 1 is version 2 without the signature. An `A256KW` wrap of
//! version 1 is read as before; an RSA wrap of version 1 is
//! [legacy](AzureWrapped::is_legacy): anyone could have made it, so the
//! provider refuses it except for an explicit adoption
//! (`Keyring::adopt_legacy_wraps`).
//!
//! The key version is the one that wrapped, so the blob unwraps after the
//! vault made a newer version current; the salt enters the context binding
//! so that wrapping the same key twice never gives the same bytes (AES key
//! wrap is deterministic). Parsing treats the bytes as hostile: every
//! length is checked and anything unexpected is [`Error::Malformed`].

use super::key_id::{valid_version, MAX_VERSION};
use crate::provider::kit::root_wrap_aad;
use crate::provider::EncryptionContext;
use crate::{Error, Result};

/// Length of the salt.
pub(crate) const SALT_LEN: usize = 16;
/// What [`Error::Malformed`] names.
const WHAT: &str = "Azure Key Vault wrapped key";
/// Domain separation of the signed message.
const SIGNED_DOMAIN: &[u8] = b"cmek azure wrap v2\0";

/// The layout version of a wrapped key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// No signature (read only).
    V1,
    /// RSA wraps signed (written).
    V2,
}

impl Format {
    fn byte(self) -> u8 {
        match self {
            Format::V1 => 0x01,
            Format::V2 => 0x02,
        }
    }
}

/// The `wrapKey` algorithm, by key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    /// RSA-OAEP with SHA-256 and MGF1-SHA-256 (RSA and RSA-HSM keys); in
    /// version 2, with a PS256 signature.
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

    /// Whether a wrap with this algorithm carries a signature in version 2:
    /// only when anyone could compute the wrap (RSA's public half).
    pub(crate) fn is_signed(self) -> bool {
        self == Algorithm::RsaOaep256
    }
}

/// A parsed wrapped key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AzureWrapped {
    pub(crate) format: Format,
    pub(crate) algorithm: Algorithm,
    pub(crate) key_version: String,
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) ciphertext: Vec<u8>,
    /// PS256 over [`signed_message`](Self::signed_message): as long as the
    /// RSA result in version 2, empty otherwise.
    pub(crate) signature: Vec<u8>,
}

impl AzureWrapped {
    /// True for a wrap anyone holding the key's public half could have
    /// made: an RSA wrap of version 1, without a signature.
    pub(crate) fn is_legacy(&self) -> bool {
        self.format == Format::V1 && self.algorithm.is_signed()
    }

    /// Everything before the signature.
    fn unsigned_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(3 + self.key_version.len() + SALT_LEN + self.ciphertext.len());
        out.push(self.format.byte());
        out.push(self.algorithm.code());
        // valid_version bounds the length to MAX_VERSION (64).
        out.push(self.key_version.len() as u8);
        out.extend_from_slice(self.key_version.as_bytes());
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// What the key version signs (PS256: Key Vault `sign` is given its
    /// SHA-256): a domain label, every byte of the wrapped key before the
    /// signature (format version, algorithm, key version, salt, `wrapKey`
    /// result), then `u32be(len(id)) ‖ id ‖ canonical(context)` for the
    /// key's versionless id.
    pub(crate) fn signed_message(
        &self,
        versionless_id: &str,
        context: &EncryptionContext,
    ) -> Vec<u8> {
        let mut out = SIGNED_DOMAIN.to_vec();
        out.extend_from_slice(&self.unsigned_bytes());
        out.extend_from_slice(&root_wrap_aad(versionless_id, context));
        out
    }

    /// The bytes to persist.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the service answered with a version, a
    /// result or a signature this format cannot hold.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        const RESPONSE: &str = "Azure Key Vault wrapKey response";
        if !valid_version(&self.key_version) {
            return Err(Error::malformed(
                RESPONSE,
                "the key identifier has no valid version",
            ));
        }
        if !self.algorithm.fits(self.ciphertext.len()) {
            return Err(Error::malformed(
                RESPONSE,
                format!(
                    "a {} result of {} bytes",
                    self.algorithm.as_str(),
                    self.ciphertext.len()
                ),
            ));
        }
        let signed = self.format == Format::V2 && self.algorithm.is_signed();
        let expected_signature = if signed { self.ciphertext.len() } else { 0 };
        if self.signature.len() != expected_signature {
            return Err(Error::malformed(
                "Azure Key Vault sign response",
                format!("a signature of {} bytes", self.signature.len()),
            ));
        }
        let mut out = self.unsigned_bytes();
        out.extend_from_slice(&self.signature);
        Ok(out)
    }

    /// Parses persisted bytes of either version.
    ///
    /// # Errors
    /// [`Error::Malformed`] for any other layout.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = |why: &str| Error::malformed(WHAT, why);
        let (&version, rest) = bytes.split_first().ok_or_else(|| bad("empty"))?;
        let format = match version {
            0x01 => Format::V1,
            0x02 => Format::V2,
            _ => return Err(bad(&format!("unknown version {version}"))),
        };
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
        let (salt, rest) = rest.split_at(SALT_LEN);
        // In version 2 an RSA result is followed by a signature of the same
        // length (both are one block of the key's modulus).
        let (ciphertext, signature) = if format == Format::V2 && algorithm.is_signed() {
            if rest.len() % 2 != 0 {
                return Err(bad("a signed RSA wrap of odd length"));
            }
            rest.split_at(rest.len() / 2)
        } else {
            (rest, &[][..])
        };
        if !algorithm.fits(ciphertext.len()) {
            return Err(bad(&format!(
                "{} bytes cannot be a {} result",
                ciphertext.len(),
                algorithm.as_str()
            )));
        }
        Ok(Self {
            format,
            algorithm,
            key_version,
            salt: salt.try_into().expect("split at SALT_LEN"),
            ciphertext: ciphertext.to_vec(),
            signature: signature.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(algorithm: Algorithm, len: usize) -> AzureWrapped {
        let signed = algorithm.is_signed();
        AzureWrapped {
            format: Format::V2,
            algorithm,
            key_version: "0123456789abcdef0123456789abcdef".into(),
            salt: [0xa5; SALT_LEN],
            ciphertext: vec![0x5a; len],
            signature: if signed { vec![0x3c; len] } else { Vec::new() },
        }
    }

    fn legacy(algorithm: Algorithm, len: usize) -> AzureWrapped {
        AzureWrapped {
            format: Format::V1,
            signature: Vec::new(),
            ..sample(algorithm, len)
        }
    }

    #[test]
    fn the_layout_is_pinned() {
        let w = sample(Algorithm::A256Kw, 72);
        let bytes = w.encode().unwrap();
        let mut expected = vec![0x02, 0x02, 32];
        expected.extend_from_slice(b"0123456789abcdef0123456789abcdef");
        expected.extend_from_slice(&[0xa5; 16]);
        expected.extend_from_slice(&[0x5a; 72]);
        assert_eq!(bytes, expected);
        assert_eq!(bytes.len(), 3 + 32 + 16 + 72);
        assert_eq!(AzureWrapped::decode(&bytes).unwrap(), w);
        for len in [256, 384, 512] {
            let w = sample(Algorithm::RsaOaep256, len);
            let bytes = w.encode().unwrap();
            assert_eq!(bytes[..2], [0x02, 0x01]);
            assert_eq!(bytes.len(), 3 + 32 + 16 + 2 * len);
            assert_eq!(&bytes[bytes.len() - len..], &vec![0x3c; len][..]);
            let back = AzureWrapped::decode(&bytes).unwrap();
            assert_eq!(back, w);
            assert!(!back.is_legacy());
        }
        // Version 1, as earlier releases wrote it: read, and an RSA one is
        // legacy.
        for (algorithm, len) in [(Algorithm::RsaOaep256, 384), (Algorithm::A256Kw, 72)] {
            let w = legacy(algorithm, len);
            let bytes = w.encode().unwrap();
            assert_eq!(bytes[0], 0x01);
            assert_eq!(bytes.len(), 3 + 32 + 16 + len);
            let back = AzureWrapped::decode(&bytes).unwrap();
            assert_eq!(back, w);
            assert_eq!(back.is_legacy(), algorithm == Algorithm::RsaOaep256);
        }
    }

    /// Pins the signed message: docs/FORMAT.md shows its layout.
    #[test]
    fn the_signed_message_is_pinned() {
        let w = AzureWrapped {
            key_version: "v1".into(),
            salt: [0x11; SALT_LEN],
            ..sample(Algorithm::RsaOaep256, 256)
        };
        let ctx = EncryptionContext::new().with("zone", "a");
        let m = w.signed_message("https://v.vault.azure.net/keys/k", &ctx);
        let mut expected = b"cmek azure wrap v2\0".to_vec();
        expected.extend_from_slice(&[0x02, 0x01, 2, b'v', b'1']);
        expected.extend_from_slice(&[0x11; 16]);
        expected.extend_from_slice(&[0x5a; 256]);
        expected.extend_from_slice(&32u32.to_be_bytes());
        expected.extend_from_slice(b"https://v.vault.azure.net/keys/k");
        expected.extend_from_slice(&1u32.to_be_bytes());
        expected.extend_from_slice(&4u32.to_be_bytes());
        expected.extend_from_slice(b"zone");
        expected.extend_from_slice(&1u32.to_be_bytes());
        expected.extend_from_slice(b"a");
        assert_eq!(m, expected);
        // The signature is not part of it; the format version is.
        let mut other = w.clone();
        other.signature = vec![0; 256];
        assert_eq!(
            other.signed_message("https://v.vault.azure.net/keys/k", &ctx),
            m
        );
        other.format = Format::V1;
        assert_ne!(
            other.signed_message("https://v.vault.azure.net/keys/k", &ctx),
            m
        );
        assert_ne!(
            w.signed_message("https://v.vault.azure.net/keys/k2", &ctx),
            m
        );
    }

    #[test]
    fn hostile_bytes_are_malformed_never_a_panic() {
        for good in [
            // The shortest RSA result: no truncation of it is another valid one.
            legacy(Algorithm::RsaOaep256, 256).encode().unwrap(),
            sample(Algorithm::RsaOaep256, 256).encode().unwrap(),
        ] {
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
                (0, 3u8),
                (0, 0),
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
        }
        // A version 2 RSA wrap without its signature is no valid layout.
        let mut unsigned = legacy(Algorithm::RsaOaep256, 384).encode().unwrap();
        unsigned[0] = 0x02;
        assert!(matches!(
            AzureWrapped::decode(&unsigned),
            Err(Error::Malformed { .. })
        ));
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
        let mut w = sample(Algorithm::RsaOaep256, 384);
        w.signature.pop();
        assert!(w.encode().is_err());
        let mut w = sample(Algorithm::A256Kw, 72);
        w.signature = vec![1];
        assert!(w.encode().is_err());
    }
}
