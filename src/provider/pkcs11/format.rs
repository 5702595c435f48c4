//! The PKCS#11 provider's wrapped key: a versioned envelope around what the
//! token produced (docs/FORMAT.md, "PKCS#11 wrapped key").
//!
//! ```text
//! version (1 byte, 0x01) ‖ mechanism (1 byte) ‖ body
//!   mechanism 0x01, AES-GCM:       IV (12) ‖ encrypted key (32) ‖ tag (16)
//!   mechanism 0x02, AES key wrap with padding: the token's wrap of the
//!                   64-byte bound key followed by 16 random bytes (88
//!                   bytes, or 96 for a token that pads to a whole block
//!                   before wrapping)
//! ```
//!
//! Parsing treats the bytes as hostile: every length is checked before it
//! is used, and anything unexpected is [`Error::Malformed`], never a panic.
//! Nothing here talks to a token.

use crate::{Error, Result};

/// The one version this module writes and reads.
pub(super) const VERSION: u8 = 0x01;
/// Mechanism code of AES-GCM (`CKM_AES_GCM`).
pub(super) const MECH_AES_GCM: u8 = 0x01;
/// Mechanism code of AES key wrap with padding (`CKM_AES_KEY_WRAP_PAD`).
pub(super) const MECH_AES_KWP: u8 = 0x02;
/// GCM IV length: 96 bits.
pub(super) const GCM_IV_LEN: usize = 12;
/// GCM tag length: 128 bits.
pub(super) const GCM_TAG_LEN: usize = 16;
/// Length of the encrypted key under GCM.
const GCM_KEY_LEN: usize = 32;
/// Random bytes wrapped after the bound key, so that wrapping the same key
/// twice gives different bytes (AES key wrap is deterministic).
pub(super) const KWP_SALT_LEN: usize = 16;
/// RFC 5649 wrap of the bound key and the salt (80 bytes).
const KWP_LEN: usize = 88;
/// The same wrapped by a token that pads to a whole block first.
const KWP_PADDED_LEN: usize = 96;

const WHAT: &str = "PKCS#11 wrapped key";

/// A parsed wrapped key, borrowing the bytes it came from.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Wrapped<'a> {
    /// AES-GCM: the IV and the encrypted key followed by its tag.
    Gcm {
        /// The 96-bit IV.
        iv: [u8; GCM_IV_LEN],
        /// Encrypted key ‖ tag (48 bytes).
        sealed: &'a [u8],
    },
    /// AES key wrap with padding of the bound key.
    Kwp {
        /// What the token's wrap returned.
        wrapped: &'a [u8],
    },
}

impl<'a> Wrapped<'a> {
    /// Parses `bytes`.
    ///
    /// # Errors
    /// [`Error::Malformed`] for an empty or short input, another version,
    /// an unknown mechanism or a body of the wrong length.
    pub(super) fn parse(bytes: &'a [u8]) -> Result<Self> {
        let [version, mechanism, body @ ..] = bytes else {
            return Err(Error::malformed(WHAT, "shorter than its header"));
        };
        if *version != VERSION {
            return Err(Error::malformed(
                WHAT,
                format!("version {version} (this build reads version {VERSION})"),
            ));
        }
        match *mechanism {
            MECH_AES_GCM => {
                if body.len() != GCM_IV_LEN + GCM_KEY_LEN + GCM_TAG_LEN {
                    return Err(Error::malformed(
                        WHAT,
                        format!("an AES-GCM body of {} bytes, not 60", body.len()),
                    ));
                }
                let (iv, sealed) = body.split_at(GCM_IV_LEN);
                let mut iv_bytes = [0u8; GCM_IV_LEN];
                iv_bytes.copy_from_slice(iv);
                Ok(Wrapped::Gcm {
                    iv: iv_bytes,
                    sealed,
                })
            }
            MECH_AES_KWP => {
                if body.len() != KWP_LEN && body.len() != KWP_PADDED_LEN {
                    return Err(Error::malformed(
                        WHAT,
                        format!(
                            "an AES key wrap body of {} bytes, not {KWP_LEN} or {KWP_PADDED_LEN}",
                            body.len()
                        ),
                    ));
                }
                Ok(Wrapped::Kwp { wrapped: body })
            }
            other => Err(Error::malformed(
                WHAT,
                format!("unknown mechanism code {other:#04x}"),
            )),
        }
    }

    /// The encoding of this wrapped key.
    pub(super) fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        match self {
            Wrapped::Gcm { iv, sealed } => {
                out.push(MECH_AES_GCM);
                out.extend_from_slice(iv);
                out.extend_from_slice(sealed);
            }
            Wrapped::Kwp { wrapped } => {
                out.push(MECH_AES_KWP);
                out.extend_from_slice(wrapped);
            }
        }
        out
    }
}

/// Checks what a token's GCM encryption returned before it is stored.
pub(super) fn check_gcm_output(sealed: &[u8]) -> Result<()> {
    if sealed.len() == GCM_KEY_LEN + GCM_TAG_LEN {
        Ok(())
    } else {
        Err(Error::malformed(
            "PKCS#11 AES-GCM output",
            format!("{} bytes, not 48", sealed.len()),
        ))
    }
}

/// Checks what a token's key wrap returned before it is stored.
pub(super) fn check_kwp_output(wrapped: &[u8]) -> Result<()> {
    if wrapped.len() == KWP_LEN || wrapped.len() == KWP_PADDED_LEN {
        Ok(())
    } else {
        Err(Error::malformed(
            "PKCS#11 AES key wrap output",
            format!("{} bytes, not {KWP_LEN} or {KWP_PADDED_LEN}", wrapped.len()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts_round_trip() {
        let sealed = [7u8; 48];
        let gcm = Wrapped::Gcm {
            iv: [1u8; 12],
            sealed: &sealed,
        };
        let bytes = gcm.to_bytes();
        assert_eq!(bytes.len(), 62);
        assert_eq!(&bytes[..2], &[0x01, 0x01]);
        assert_eq!(Wrapped::parse(&bytes).unwrap(), gcm);

        for len in [88, 96] {
            let body = vec![9u8; len];
            let kwp = Wrapped::Kwp { wrapped: &body };
            let bytes = kwp.to_bytes();
            assert_eq!(&bytes[..2], &[0x01, 0x02]);
            assert_eq!(bytes.len(), 2 + len);
            assert_eq!(Wrapped::parse(&bytes).unwrap(), kwp);
        }
    }

    #[test]
    fn the_layout_is_pinned() {
        // A wrapped key as the format section documents it, byte by byte.
        let hex = "0101a0a1a2a3a4a5a6a7a8a9aaab\
                   000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\
                   f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let Wrapped::Gcm { iv, sealed } = Wrapped::parse(&bytes).unwrap() else {
            panic!("not GCM");
        };
        assert_eq!(iv, *b"\xa0\xa1\xa2\xa3\xa4\xa5\xa6\xa7\xa8\xa9\xaa\xab");
        assert_eq!(sealed[0], 0x00);
        assert_eq!(sealed[32], 0xf0);
        assert_eq!(sealed.len(), 48);
    }

    #[test]
    fn hostile_bytes_are_malformed_not_panics() {
        let good_gcm = Wrapped::Gcm {
            iv: [0; 12],
            sealed: &[0; 48],
        }
        .to_bytes();
        let good_kwp = Wrapped::Kwp { wrapped: &[0; 88] }.to_bytes();
        let mut cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x01],
            vec![0x02, 0x01],
            vec![0x00, 0x01],
            vec![0x01, 0x00],
            vec![0x01, 0x03],
            vec![0x01, 0xff, 0, 0, 0],
        ];
        for good in [&good_gcm, &good_kwp] {
            for cut in 0..good.len() {
                cases.push(good[..cut].to_vec());
            }
            let mut longer = good.clone();
            longer.push(0);
            cases.push(longer);
            let mut other_version = good.clone();
            other_version[0] = 0x02;
            cases.push(other_version);
        }
        // A GCM body under the key-wrap code and the reverse.
        let mut swapped = good_gcm.clone();
        swapped[1] = MECH_AES_KWP;
        cases.push(swapped);
        let mut swapped = good_kwp.clone();
        swapped[1] = MECH_AES_GCM;
        cases.push(swapped);
        for case in cases {
            assert!(
                matches!(Wrapped::parse(&case), Err(Error::Malformed { .. })),
                "{case:02x?}"
            );
        }
        assert!(check_gcm_output(&[0; 47]).is_err());
        assert!(check_gcm_output(&[0; 48]).is_ok());
        assert!(check_kwp_output(&[0; 72]).is_err());
        assert!(check_kwp_output(&[0; 96]).is_ok());
    }
}
