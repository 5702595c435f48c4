//! One-shot encryption under any `Params` into a new buffer, for tests
//! that do not care about reusing buffers.
#![allow(dead_code)]

use cmek::stream::{self, Params, Threads};
use cmek::SecretKey;

/// `stream::encrypt_into` a buffer of the right length.
pub fn encrypt(
    p: Params,
    key: &SecretKey,
    aad: &[u8],
    pt: &[u8],
    threads: Threads,
) -> cmek::Result<Vec<u8>> {
    let mut out = vec![0u8; p.ciphertext_len(pt.len() as u64)? as usize];
    stream::encrypt_into(key, aad, p, pt, &mut out, threads)?;
    Ok(out)
}

/// `stream::decrypt_into` a buffer of the right length.
pub fn decrypt(
    p: Params,
    key: &SecretKey,
    aad: &[u8],
    ct: &[u8],
    threads: Threads,
) -> cmek::Result<Vec<u8>> {
    let mut out = vec![0u8; p.plaintext_len(ct.len() as u64)? as usize];
    stream::decrypt_into(key, aad, p, ct, &mut out, threads)?;
    Ok(out)
}
