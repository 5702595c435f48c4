//! The Cloud KMS provider's wrapped key (docs/FORMAT.md, "Cloud KMS wrapped
//! key"): Cloud KMS's ciphertext behind a small versioned header.
//!
//! ```text
//! "GK" ‖ version = 0x01 ‖ u16be(n) ‖ ciphertext (n bytes, 1 ≤ n ≤ MAX_CIPHERTEXT)
//! ```
//!
//! The ciphertext is Cloud KMS's own (it names the key version that made
//! it); the header lets cmek refuse bytes that are not this provider's, or
//! are cut short, before any call. Parsing treats the bytes as hostile:
//! anything else is [`Error::Malformed`], never a panic.

use crate::{Error, Result};

/// The first two bytes.
const MAGIC: &[u8; 2] = b"GK";
/// The format version this module writes and reads.
const VERSION: u8 = 1;
/// Header length: magic, version, length.
const HEADER: usize = 5;
/// Longest ciphertext kept (a 32-byte key's is far shorter; zone manifests
/// take wrapped keys of up to 4096 bytes).
pub const MAX_CIPHERTEXT: usize = 4096 - HEADER;

const WHAT: &str = "Cloud KMS wrapped key";

/// The wrapped key for `ciphertext`.
///
/// # Errors
/// [`Error::Malformed`] for an empty ciphertext or one longer than
/// [`MAX_CIPHERTEXT`] (Cloud KMS answered something no 32-byte key encrypts to).
pub fn encode(ciphertext: &[u8]) -> Result<Vec<u8>> {
    let n = ciphertext.len();
    if n == 0 || n > MAX_CIPHERTEXT {
        return Err(Error::malformed(
            "Cloud KMS Encrypt response",
            format!("a ciphertext of {n} bytes"),
        ));
    }
    let mut out = Vec::with_capacity(HEADER + n);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(ciphertext);
    Ok(out)
}

/// The ciphertext inside a wrapped key.
///
/// # Errors
/// [`Error::Malformed`] for bytes that are not a version 1 wrapped key of
/// this provider, or whose length disagrees with its header.
pub fn decode(bytes: &[u8]) -> Result<&[u8]> {
    if bytes.len() < HEADER {
        return Err(Error::malformed(WHAT, "shorter than its header"));
    }
    if &bytes[..2] != MAGIC {
        return Err(Error::malformed(WHAT, "not a Cloud KMS wrapped key"));
    }
    if bytes[2] != VERSION {
        return Err(Error::malformed(
            WHAT,
            format!("unknown version {}", bytes[2]),
        ));
    }
    let n = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
    let ciphertext = &bytes[HEADER..];
    if n == 0 || n > MAX_CIPHERTEXT || ciphertext.len() != n {
        return Err(Error::malformed(
            WHAT,
            format!(
                "the header says {n} bytes of ciphertext, {} follow",
                ciphertext.len()
            ),
        ));
    }
    Ok(ciphertext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_pinned() {
        // docs/FORMAT.md, "Cloud KMS wrapped key".
        let wrapped = encode(b"\x0a\x24kms-ciphertext").unwrap();
        assert_eq!(hex(&wrapped), "474b0100100a246b6d732d63697068657274657874");
        assert_eq!(decode(&wrapped).unwrap(), b"\x0a\x24kms-ciphertext");
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hostile_bytes_are_malformed() {
        let good = encode(&[7u8; 100]).unwrap();
        let mut cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"GK".to_vec(),
            b"GK\x01\x00".to_vec(),
            b"GK\x01\x00\x00".to_vec(),
            good[..good.len() - 1].to_vec(),
            [&good[..], b"x"].concat(),
        ];
        let mut other_magic = good.clone();
        other_magic[0] = b'A';
        cases.push(other_magic);
        let mut other_version = good.clone();
        other_version[2] = 2;
        cases.push(other_version);
        let mut huge = b"GK\x01\xff\xff".to_vec();
        huge.resize(5 + 0xffff, 0);
        cases.push(huge);
        for case in cases {
            assert!(
                matches!(decode(&case), Err(Error::Malformed { .. })),
                "{} bytes",
                case.len()
            );
        }
        assert!(encode(&[]).is_err());
        assert!(encode(&vec![0; MAX_CIPHERTEXT + 1]).is_err());
        assert_eq!(
            decode(&encode(&vec![1; MAX_CIPHERTEXT]).unwrap())
                .unwrap()
                .len(),
            MAX_CIPHERTEXT
        );
    }
}
