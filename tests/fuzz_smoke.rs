//! A short smoke of every fuzz target, in every test run: the committed
//! corpus (`fuzz/corpus/<target>/`, seeds plus what fuzzing found), bit
//! flips of each corpus file, and random inputs, through the same target
//! bodies libFuzzer runs (`cmek::fuzzing`). Crashes that fuzzing found are
//! kept in the corpus, so they stay fixed.
//!
//! `cargo test --features fuzzing,testing --test fuzz_smoke -- --ignored`
//! rewrites the seeds from the known-answer vectors.
#![cfg(all(feature = "fuzzing", feature = "testing"))]

use std::fs;
use std::path::{Path, PathBuf};

use cmek::fuzzing::{run, TARGETS};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn vector(path: &str) -> Vec<u8> {
    fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/vectors")
            .join(path),
    )
    .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A small deterministic generator for inputs (not for keys).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn replay_corpus_flips_and_random_inputs() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for target in TARGETS {
        replay(target, &mut rng);
    }
}

#[cfg(feature = "kmip")]
#[test]
fn replay_the_kmip_corpus_flips_and_random_inputs() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    for target in cmek::fuzzing::KMIP_TARGETS {
        replay(target, &mut rng);
    }
}

/// Target `target` on its committed corpus, single-bit flips of each
/// corpus file, and random inputs.
fn replay(target: &str, rng: &mut XorShift) {
    let dir = corpus_dir(target);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus for {target}");
    for file in &files {
        let data = fs::read(file).unwrap();
        run(target, &data);
        // A few single-bit flips of each corpus file.
        for _ in 0..16 {
            if data.is_empty() {
                break;
            }
            let mut flipped = data.clone();
            let bit = rng.next() as usize % (data.len() * 8);
            flipped[bit / 8] ^= 1 << (bit % 8);
            run(target, &flipped);
        }
    }
    for _ in 0..500 {
        let len = rng.next() as usize % 600;
        run(target, &rng.bytes(len));
    }
}

/// The checksum-framed formats: a seed as the file, and as its body (the
/// targets append the checksum themselves).
fn framed_seeds(file: Vec<u8>) -> Vec<Vec<u8>> {
    let body = file[..file.len() - 32].to_vec();
    vec![file, body]
}

#[test]
#[ignore = "rewrites the committed seed corpus"]
fn write_seed_corpus() {
    let segments: Vec<Vec<u8>> = ["a", "b", "c"]
        .iter()
        .map(|s| vector(&format!("zone/segment-{s}.cmek")))
        .collect();
    let mut seeds: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "segment_header",
            // The vectors' version 1 headers, the same as version 2, and
            // the version 2 known-answer header of docs/FORMAT.md.
            segments
                .iter()
                .map(|s| s[..128].to_vec())
                .chain(std::iter::once(as_v2(&segments[0][..128])))
                .chain(std::iter::once(hex::decode(V2_HEADER).unwrap()))
                .collect(),
        ),
        (
            "zone_manifest",
            // The committed version 1 manifest and the version 3
            // known-answer manifest of docs/FORMAT.md.
            framed_seeds(vector("zone/zone.manifest"))
                .into_iter()
                .chain(framed_seeds(hex::decode(V3_MANIFEST).unwrap()))
                .collect(),
        ),
        ("key_file", framed_seeds(vector("zone/root.keys"))),
        (
            "backup_bundle",
            framed_seeds(vector("backup/backup.manifest"))
                .into_iter()
                .chain(framed_seeds(vector("backup/restore.state")))
                .collect(),
        ),
        // Ciphertexts under other keys: still to be rejected.
        (
            "stream_decrypt",
            segments.iter().map(|s| s[128..].to_vec()).collect(),
        ),
        (
            "mutated_ciphertext",
            vec![
                vec![0, 0, 0],
                vec![0x10, 0x00, 7, 1, 2, 3, 0, 0, 5, 2, 0, 9, 1],
                vec![0x4f, 0xff, 3, 9, 5, 0, 1, 2, 3, 4],
            ],
        ),
    ];
    seeds.push(("registry_state", framed_seeds(registry_state())));
    for (target, files) in seeds {
        let dir = corpus_dir(target);
        fs::create_dir_all(&dir).unwrap();
        for (i, data) in files.iter().enumerate() {
            fs::write(dir.join(format!("seed-{i}")), data).unwrap();
        }
    }
}

/// The zone manifest known-answer vector, version 3 (docs/FORMAT.md).
const V3_MANIFEST: &str =
    "434d454b2d5a4d46000303030303030303030303030303030303030303030303030303030303030303030000\
    000000000005000000006553f100000000006553f16400066f726465727300056c6f63616c00056c6f63616c\
    0006726f6f742d3100056c6f63616c000000001000000000020000000100000002000000006553f102000000\
    0000020000003d02020202020202020202020202020202020202020202020202020202020202020202020202\
    02020202020202020202020202020202020202020202020290d97438c91bf406de445757eabccecffb7447db\
    a46ddea616b8f87dd3de84fe3a7578dda5779d21b7e48f4d05a3bd3ae81581579df0a9e36ad4b726e8b2cc95";

/// The segment header known-answer vector, version 2 (docs/FORMAT.md).
const V2_HEADER: &str = "434d4b5302000000101112131415161718191a1b1c1d1e1f0000000300010000\
    01a0a1a2a3a4a5a6a7a8a9aaaba6593e6e018e44f82a2ccd984b378e9120fd0b\
    43c6e2143bc4577cdd23f62b5ecfc7dbf9a2f0c98f671bdfbe371ebdc66db5fe\
    fcc97760e185131a35997ab784a5074d10f10cd997689bd12afba14b7b000000";

/// `header` with its version byte set to 2 (well formed; its wrap does not
/// open, which parsing does not check).
fn as_v2(header: &[u8]) -> Vec<u8> {
    let mut out = header.to_vec();
    out[4] = 2;
    out
}

/// A registry state with keys and zones, through the public API.
fn registry_state() -> Vec<u8> {
    use cmek::registry::KeyRegistry;
    use cmek::testing::MockProvider;
    use cmek::zone::ZoneId;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.state");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let kms = MockProvider::new();
        let registry = KeyRegistry::open(&path).unwrap();
        let a = kms.add_key("a");
        registry.add_key(&kms, a.clone(), &[]).await.unwrap();
        registry.add_key(&kms, kms.add_key("b"), &[]).await.unwrap();
        registry
            .register_zone(ZoneId::from_bytes([7; 16]), "orders", a.region(), &a)
            .unwrap();
    });
    fs::read(&path).unwrap()
}
