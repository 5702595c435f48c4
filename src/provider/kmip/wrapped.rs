//! The KMIP provider's wrapped key (docs/FORMAT.md "KMIP wrapped key"):
//! what the key server's Encrypt returned, with the mode that made it.
//!
//! ```text
//! version  u8 = 1
//! mode     u8 = 1   AES-256-GCM by the server's Encrypt, with
//!                   root_wrap_aad(unique identifier, context) as
//!                   additional data
//! iv_len   u8       12..=16 (the server picks the IV)
//! iv       iv_len bytes
//! tag      16 bytes GCM tag
//! ct       32 bytes the encrypted key
//! ```
//!
//! Parsing treats the bytes as hostile: any other version, mode or length
//! is [`Error::Malformed`]. Mode 2 is kept for a server that can only wrap
//! without additional data (the context then bound with
//! `provider::kit::bind`); no such mode is written yet.

use crate::secret::KEY_LEN;
use crate::{Error, Result};

use super::message::TAG_LEN;

/// The format version.
const VERSION: u8 = 1;
/// Mode 1: AES-256-GCM by the server, the context as additional data.
pub(crate) const MODE_GCM_AAD: u8 = 1;
/// Shortest IV accepted (GCM's 96-bit nonce).
const MIN_IV: usize = 12;
/// Longest IV accepted (PyKMIP picks one block, 16 bytes).
const MAX_IV: usize = 16;

const WHAT: &str = "KMIP wrapped key";

/// A parsed wrapped key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wrapped {
    /// The IV the server chose.
    pub(crate) iv: Vec<u8>,
    /// The GCM tag.
    pub(crate) tag: Vec<u8>,
    /// The encrypted key.
    pub(crate) ciphertext: Vec<u8>,
}

impl Wrapped {
    /// Checks what Encrypt returned and keeps it.
    ///
    /// # Errors
    /// [`Error::Malformed`] (naming the server's response) for lengths this
    /// format cannot hold.
    pub(crate) fn new(iv: Vec<u8>, tag: Vec<u8>, ciphertext: Vec<u8>) -> Result<Self> {
        let what = "KMIP Encrypt response";
        if !(MIN_IV..=MAX_IV).contains(&iv.len()) {
            return Err(Error::malformed(
                what,
                format!("IV of {} bytes, not {MIN_IV} to {MAX_IV}", iv.len()),
            ));
        }
        if tag.len() != TAG_LEN {
            return Err(Error::malformed(
                what,
                format!("tag of {} bytes, not {TAG_LEN}", tag.len()),
            ));
        }
        if ciphertext.len() != KEY_LEN {
            return Err(Error::malformed(
                what,
                format!("ciphertext of {} bytes, not {KEY_LEN}", ciphertext.len()),
            ));
        }
        Ok(Self {
            iv,
            tag,
            ciphertext,
        })
    }

    /// The bytes to persist.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.iv.len() + TAG_LEN + KEY_LEN);
        out.push(VERSION);
        out.push(MODE_GCM_AAD);
        // At most MAX_IV (16), checked in `new`.
        out.push(self.iv.len() as u8);
        out.extend_from_slice(&self.iv);
        out.extend_from_slice(&self.tag);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses persisted bytes.
    ///
    /// # Errors
    /// [`Error::Malformed`] for anything but a version 1, mode 1 wrapped key
    /// of consistent length.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self> {
        let [version, mode, iv_len, rest @ ..] = bytes else {
            return Err(Error::malformed(WHAT, "shorter than its header"));
        };
        if *version != VERSION {
            return Err(Error::malformed(
                WHAT,
                format!("version {version}, this build reads {VERSION}"),
            ));
        }
        if *mode != MODE_GCM_AAD {
            return Err(Error::malformed(WHAT, format!("unknown mode {mode}")));
        }
        let iv_len = usize::from(*iv_len);
        if !(MIN_IV..=MAX_IV).contains(&iv_len) {
            return Err(Error::malformed(WHAT, format!("IV length {iv_len}")));
        }
        if rest.len() != iv_len + TAG_LEN + KEY_LEN {
            return Err(Error::malformed(
                WHAT,
                format!(
                    "{} bytes after the header, expected {}",
                    rest.len(),
                    iv_len + TAG_LEN + KEY_LEN
                ),
            ));
        }
        let (iv, rest) = rest.split_at(iv_len);
        let (tag, ciphertext) = rest.split_at(TAG_LEN);
        Ok(Self {
            iv: iv.to_vec(),
            tag: tag.to_vec(),
            ciphertext: ciphertext.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The known-answer wrapped key of docs/FORMAT.md.
    pub(crate) const VECTOR: &str = "01010c\
        a0a1a2a3a4a5a6a7a8a9aaab\
        b0b1b2b3b4b5b6b7b8b9babbbcbdbebf\
        c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn the_documented_vector_parses_and_re_encodes() {
        let bytes = unhex(VECTOR);
        let w = Wrapped::parse(&bytes).unwrap();
        assert_eq!(w.iv, (0xa0..=0xab).collect::<Vec<u8>>());
        assert_eq!(w.tag, (0xb0..=0xbf).collect::<Vec<u8>>());
        assert_eq!(w.ciphertext, (0xc0..=0xdf).collect::<Vec<u8>>());
        assert_eq!(w.to_bytes(), bytes);
        let built = Wrapped::new(w.iv.clone(), w.tag.clone(), w.ciphertext.clone()).unwrap();
        assert_eq!(built.to_bytes(), bytes);
    }

    #[test]
    fn anything_else_is_malformed() {
        let good = unhex(VECTOR);
        let mut cases: Vec<Vec<u8>> = (0..good.len()).map(|n| good[..n].to_vec()).collect();
        let mut longer = good.clone();
        longer.push(0);
        cases.push(longer);
        for (at, value) in [(0, 2), (0, 0), (1, 2), (1, 0), (2, 11), (2, 17), (2, 16)] {
            let mut b = good.clone();
            b[at] = value;
            cases.push(b);
        }
        for case in cases {
            assert!(
                matches!(Wrapped::parse(&case), Err(Error::Malformed { .. })),
                "{case:02x?}"
            );
        }
        assert!(Wrapped::new(vec![0; 11], vec![0; 16], vec![0; 32]).is_err());
        assert!(Wrapped::new(vec![0; 12], vec![0; 12], vec![0; 32]).is_err());
        assert!(Wrapped::new(vec![0; 16], vec![0; 16], vec![0; 48]).is_err());
        assert_eq!(
            Wrapped::new(vec![0; 16], vec![0; 16], vec![0; 32])
                .unwrap()
                .to_bytes()
                .len(),
            3 + 16 + 16 + 32
        );
    }
}
