//! Fuzz target bodies (feature `fuzzing`; not a stable API).
//!
//! Each function takes arbitrary bytes and panics only when one of the
//! crate's promises breaks: a parser that panics, a value that does not
//! survive its own encoding, or a decryption that returns plaintext for
//! bytes it did not encrypt. The libFuzzer targets under `fuzz/` call them,
//! and `tests/fuzz_smoke.rs` replays the committed corpus through them in
//! every test run.
//!
//! The file formats end in a SHA-256 checksum, which random bytes almost
//! never match; so each format target parses the input twice: as it is,
//! and with its checksum fixed up, so the fuzzer reaches the fields behind
//! it.

use std::io::{Cursor, Read};

use crate::cipher::sha256;
use crate::secret::SecretKey;
use crate::stream::{
    ChunkOpener, DecryptingReader, Header, Params, RangeDecryptor, SeekableReader, Threads,
};
use crate::zone::{SegmentHeader, ZoneManifest};

/// The names of the targets, as `fuzz/fuzz_targets/<name>.rs` and
/// `fuzz/corpus/<name>/`.
pub const TARGETS: [&str; 7] = [
    "segment_header",
    "zone_manifest",
    "registry_state",
    "key_file",
    "backup_bundle",
    "stream_decrypt",
    "mutated_ciphertext",
];

/// The KMIP provider's target (feature `kmip`), as `fuzz/fuzz_targets/`
/// and `fuzz/corpus/`: TTLV decoding, response reading, wrapped keys.
#[cfg(feature = "kmip")]
pub const KMIP_TARGETS: [&str; 1] = ["kmip_ttlv"];

/// Runs target `name` on `data`.
///
/// # Panics
/// On a broken promise, or for an unknown name.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "segment_header" => segment_header(data),
        "zone_manifest" => zone_manifest(data),
        "registry_state" => registry_state(data),
        "key_file" => key_file(data),
        "backup_bundle" => backup_bundle(data),
        "stream_decrypt" => stream_decrypt(data),
        "mutated_ciphertext" => mutated_ciphertext(data),
        #[cfg(feature = "kmip")]
        "kmip_ttlv" => kmip_ttlv(data),
        other => panic!("no fuzz target {other}"),
    }
}

/// `data` as it is, and `data` with a valid checksum appended.
fn both_framings(data: &[u8]) -> [Vec<u8>; 2] {
    let mut fixed = data.to_vec();
    fixed.extend_from_slice(&sha256(&[data]));
    [data.to_vec(), fixed]
}

/// Segment header parsing (versions 1 and 2): never panics; what parses
/// re-encodes to the same 128 bytes, and yields its wrap's associated data.
pub fn segment_header(data: &[u8]) {
    if let Ok(header) = SegmentHeader::parse(data) {
        let bytes = header.to_bytes();
        assert_eq!(
            &bytes[..],
            &data[..bytes.len()],
            "header re-encodes differently"
        );
        let _ = header.stream_params();
        // What a zone would bind the header's wrap to, for either format.
        let aad = header.dek_aad("fuzz/segment");
        assert!(aad.ends_with(b"fuzz/segment"));
    }
}

/// Zone manifest parsing: never panics; what parses survives a round trip
/// (legacy layouts re-encoded as they were; version 3 resealed under a
/// fixed key, after which its tag verifies under that key only).
pub fn zone_manifest(data: &[u8]) {
    use crate::secret::SecretKey;
    for bytes in both_framings(data) {
        let Ok((m, seal)) = ZoneManifest::parse_sealed(&bytes) else {
            continue;
        };
        if seal.is_authenticated() {
            let key = SecretKey::from_array(&mut [0x42; 32]);
            // Whatever tag the input had, it is not this key's (a forgery
            // would need the EZK), unless the input was sealed under it.
            let _ = seal.verify(&m, &key);
            let resealed = m.seal(&key).expect("a manifest seals");
            let (again, seal) =
                ZoneManifest::parse_sealed(&resealed).expect("a manifest re-parses");
            assert_eq!(again, m, "manifest changes in a round trip");
            seal.verify(&again, &key)
                .expect("a resealed manifest verifies");
            let other = SecretKey::from_array(&mut [0x43; 32]);
            assert!(
                seal.verify(&again, &other).is_err(),
                "the tag depends on the key"
            );
        } else {
            let again = ZoneManifest::parse(&m.to_legacy_bytes()).expect("a manifest re-parses");
            assert_eq!(again, m, "manifest changes in a round trip");
        }
    }
}

/// Key registry state parsing: never panics; what parses survives a round
/// trip.
pub fn registry_state(data: &[u8]) {
    use crate::registry::RegistryState;
    for bytes in both_framings(data) {
        if let Ok(state) = RegistryState::parse(&bytes) {
            let again = RegistryState::parse(&state.to_bytes()).expect("a state re-parses");
            assert_eq!(again, state, "registry state changes in a round trip");
        }
    }
}

/// Local key file parsing: never panics.
pub fn key_file(data: &[u8]) {
    for bytes in both_framings(data) {
        let _ = crate::provider::local::parse_key_file(&bytes);
    }
}

/// Backup bundle manifest and restore state parsing: never panic; a
/// manifest that parses survives a round trip.
pub fn backup_bundle(data: &[u8]) {
    use crate::backup::BundleManifest;
    for bytes in both_framings(data) {
        if let Ok(m) = BundleManifest::parse(&bytes) {
            let again = BundleManifest::parse(&m.to_bytes()).expect("a bundle manifest re-parses");
            assert_eq!(again, m, "bundle manifest changes in a round trip");
        }
        let _ = crate::backup::parse_restore_state(&bytes);
    }
}

const KEY: [u8; 32] = [0x42; 32];
const AAD: &[u8] = b"cmek fuzz";

fn small_params() -> Params {
    Params::new(4096).expect("4 KiB segments are valid")
}

/// Stream decryption of arbitrary bytes under a fixed key: every path must
/// fail, or return nothing (an empty range needs no segment).
pub fn stream_decrypt(data: &[u8]) {
    let key = SecretKey::from_slice(&KEY).expect("32 bytes");
    for params in [small_params(), Params::default()] {
        assert_rejected(&key, params, data, "arbitrary bytes");
    }
    // Ranged reads of the same bytes, for a range drawn from them.
    let params = small_params();
    if data.len() >= crate::stream::HEADER_LEN {
        if let Ok(dec) = RangeDecryptor::new(&key, AAD, params, data, data.len() as u64) {
            let start = u64::from(data[1]) * 97;
            let end = start + u64::from(data[2]) * 131;
            if let Ok(plan) = dec.plan(start..end) {
                let s = plan.chunks.clone();
                if s.end as usize <= data.len() {
                    if let Ok(pt) = dec.decrypt(&plan, &data[s.start as usize..s.end as usize]) {
                        assert!(
                            pt.is_empty(),
                            "a ranged read returned plaintext for forged bytes"
                        );
                    }
                }
            }
        }
    }
}

/// Asserts that no decryption path accepts `ct`.
fn assert_rejected(key: &SecretKey, params: Params, ct: &[u8], what: &str) {
    assert!(
        crate::stream::decrypt_to_bytes(key, AAD, params, ct, Threads::One).is_err(),
        "one-shot decryption accepted {what}"
    );
    let mut out = Vec::new();
    assert!(
        DecryptingReader::new(ct, key, AAD, params)
            .read_to_end(&mut out)
            .is_err(),
        "the streaming reader accepted {what}"
    );
    if let Ok(mut r) = SeekableReader::new(Cursor::new(ct), key, AAD, params) {
        let mut out = Vec::new();
        assert!(
            r.read_to_end(&mut out).is_err(),
            "the seekable reader accepted {what}"
        );
    }
    assert!(
        open_by_segment(key, params, ct).is_err(),
        "the segment opener accepted {what}"
    );
    if let Ok(r) = RangeDecryptor::new(key, AAD, params, ct, ct.len() as u64) {
        assert!(
            r.read_at(ct, 0, &mut vec![0u8; ct.len()]).is_err(),
            "a positional read accepted {what}"
        );
    }
}

/// Decrypts `ct` with [`ChunkOpener`], cutting it the way a caller
/// would: full segments while more bytes follow, then the rest as last.
fn open_by_segment(key: &SecretKey, params: Params, ct: &[u8]) -> crate::Result<Vec<u8>> {
    let mut opener = ChunkOpener::new(key, AAD, params, ct)?;
    let mut rest = &ct[crate::stream::HEADER_LEN..];
    let mut out = Vec::new();
    let mut buf = vec![0u8; params.chunk_size()];
    while !opener.is_finished() {
        let take = rest.len().min(opener.sealed_len());
        let n = opener.open(&rest[..take], take == rest.len(), &mut buf)?;
        out.extend_from_slice(&buf[..n]);
        rest = &rest[take..];
    }
    Ok(out)
}

/// Structure-aware: encrypts a plaintext chosen by the input, applies the
/// input's edits to the ciphertext (bit flips, byte writes, truncation,
/// deletion, duplication, swapped segments), and checks that exactly the
/// unmodified ciphertext decrypts, to exactly the plaintext.
pub fn mutated_ciphertext(data: &[u8]) {
    let mut input = Input(data);
    let params = small_params();
    let key = SecretKey::from_slice(&KEY).expect("32 bytes");
    let len = usize::from(input.u16()) % (5 * 4096);
    let fill = input.u8();
    let plaintext: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ fill)
        .collect();
    let mut salt = [0u8; crate::stream::HEADER_LEN - 1];
    salt.iter_mut().for_each(|b| *b = input.u8());
    let ct_len = params.ciphertext_len(len as u64).expect("small") as usize;
    let mut ct = vec![0u8; ct_len];
    crate::stream::encrypt_with_header(
        &key,
        AAD,
        params,
        Header::from_random(&salt),
        &plaintext,
        &mut ct,
        Threads::One,
    )
    .expect("encrypts");
    let original = ct.clone();

    while let Some(op) = input.next_u8() {
        let at = usize::from(input.u16());
        let n = usize::from(input.u8());
        if ct.is_empty() {
            break;
        }
        let i = at % ct.len();
        match op % 6 {
            0 => ct[i] ^= 1 << (n % 8),
            1 => ct[i] = n as u8,
            2 => ct.truncate(i),
            3 => {
                let end = (i + n + 1).min(ct.len());
                ct.drain(i..end);
            }
            4 => {
                let end = (i + n + 1).min(ct.len());
                let copy = ct[i..end].to_vec();
                ct.splice(i..i, copy);
            }
            _ => {
                // Swap two whole ciphertext chunks (not the first, which
                // is shorter, nor a partial last one).
                let seg = params.chunk_size();
                let count = ct.len() / seg;
                if count >= 3 {
                    let (a, b) = (1 + i % (count - 2), 1 + n % (count - 2));
                    let (x, y) = (a.min(b), a.max(b));
                    let sx = params.ciphertext_start(x as u64) as usize;
                    let sy = params.ciphertext_start(y as u64) as usize;
                    if x != y && sy + seg <= ct.len() {
                        let first = ct[sx..sx + seg].to_vec();
                        ct.copy_within(sy..sy + seg, sx);
                        ct[sy..sy + seg].copy_from_slice(&first);
                    }
                }
            }
        }
    }

    if ct == original {
        let back = crate::stream::decrypt_to_bytes(&key, AAD, params, &ct, Threads::One)
            .expect("the unmodified ciphertext decrypts");
        assert_eq!(&back[..], &plaintext[..]);
        let by_chunk =
            open_by_segment(&key, params, &ct).expect("the segment opener decrypts it too");
        assert_eq!(by_chunk, plaintext);
    } else {
        assert_rejected(&key, params, &ct, "a modified ciphertext");
    }
}

/// A cursor that yields zeros past the end.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn next_u8(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }
    fn u8(&mut self) -> u8 {
        self.next_u8().unwrap_or(0)
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
}

/// `manifest` re-encoded in the unauthenticated layout older releases
/// wrote (version 1 or 2) at `generation`: what a storage attacker can make
/// from a manifest it reads, for tests that such a downgrade is refused.
pub fn legacy_manifest_bytes(manifest: &ZoneManifest, generation: u64) -> Vec<u8> {
    let mut m = manifest.clone();
    m.generation = generation;
    m.to_legacy_bytes()
}

/// KMIP: a key server's bytes are hostile. TTLV decoding never panics and
/// what decodes re-encodes to the same bytes (the encoding is canonical);
/// a decoded message is read as the response to every operation cmek
/// sends, and every payload reader runs on what that yields; the bytes
/// are also parsed as a KMIP wrapped key, which re-encodes identically.
#[cfg(feature = "kmip")]
pub fn kmip_ttlv(data: &[u8]) {
    use crate::provider::kmip::message::{self, Operation};
    use crate::provider::kmip::{ttlv, wrapped::Wrapped};

    if let Some(header) = data.get(..ttlv::HEADER_LEN) {
        let header: [u8; ttlv::HEADER_LEN] = header.try_into().expect("8 bytes");
        if let Ok(len) = ttlv::message_len(&header) {
            assert!((ttlv::HEADER_LEN..=ttlv::MAX_MESSAGE_LEN).contains(&len));
        }
    }
    if let Ok(item) = ttlv::decode(data) {
        assert_eq!(
            item.encode().expect("a decoded message re-encodes"),
            data,
            "TTLV re-encodes differently"
        );
        for op in [
            Operation::Create,
            Operation::GetAttributes,
            Operation::Activate,
            Operation::Revoke,
            Operation::Encrypt,
            Operation::Decrypt,
        ] {
            if let Ok(Ok(payload)) = message::response(&item, op) {
                let _ = message::unique_identifier(&payload);
                if let Ok(d) = message::described(&payload) {
                    let _ = d.unsuitable();
                }
                if let Ok(e) = message::encrypted(&payload) {
                    let _ = Wrapped::new(e.iv, e.tag, e.data);
                }
                let _ = message::decrypted(&payload);
            }
        }
    }
    if let Ok(w) = Wrapped::parse(data) {
        assert_eq!(w.to_bytes(), data, "wrapped key re-encodes differently");
    }
}
