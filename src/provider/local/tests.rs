use super::*;
use crate::cipher::{sha256, SHA256_LEN};

fn ctx(zone: &str) -> EncryptionContext {
    EncryptionContext::new()
        .with("zone", zone)
        .with("purpose", "ezk")
}

fn new_provider() -> (tempfile::TempDir, LocalKeyProvider) {
    let dir = tempfile::tempdir().unwrap();
    let p = LocalKeyProvider::create(dir.path().join("root.keys"), "eu-west-1").unwrap();
    (dir, p)
}

#[tokio::test]
async fn wrap_unwrap_round_trip_and_context_binding() {
    let (_dir, p) = new_provider();
    let a = p.add_key("a").unwrap();
    let b = p.add_key("b").unwrap();
    assert_eq!(a, KeyRef::new("local", "a", "eu-west-1"));
    let ezk = SecretKey::generate().unwrap();
    let wrapped = p.wrap_key(&a, &ezk, &ctx("z1")).await.unwrap();
    assert_eq!(wrapped.len(), crate::cipher::WRAPPED_KEY_LEN);
    assert_eq!(p.unwrap_key(&a, &wrapped, &ctx("z1")).await.unwrap(), ezk);

    // Another context, another root key, an extra pair: all integrity failures.
    for (root, c) in [
        (&a, ctx("z2")),
        (&b, ctx("z1")),
        (&a, ctx("z1").with("extra", "1")),
        (&a, EncryptionContext::new()),
    ] {
        let err = p.unwrap_key(root, &wrapped, &c).await.unwrap_err();
        assert!(matches!(err, Error::Integrity { .. }), "{err}");
    }
    let garbage = WrappedKey::from_bytes(vec![1u8; 10]);
    let err = p.unwrap_key(&a, &garbage, &ctx("z1")).await.unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err}");
}

#[tokio::test]
async fn states_gate_use() {
    let (_dir, p) = new_provider();
    let a = p.add_key("a").unwrap();
    let ezk = SecretKey::generate().unwrap();
    let wrapped = p.wrap_key(&a, &ezk, &ctx("z")).await.unwrap();
    assert_eq!(p.describe_key(&a).await.unwrap(), KeyState::Enabled);

    for (change, state) in [
        (
            LocalKeyProvider::disable_key as fn(&LocalKeyProvider, &str) -> Result<()>,
            KeyState::Disabled,
        ),
        (
            LocalKeyProvider::schedule_key_deletion,
            KeyState::PendingDeletion,
        ),
    ] {
        change(&p, "a").unwrap();
        assert_eq!(p.describe_key(&a).await.unwrap(), state);
        let err = p.unwrap_key(&a, &wrapped, &ctx("z")).await.unwrap_err();
        assert!(
            matches!(err, Error::KeyUnavailable { state: s, .. } if s == state),
            "{err}"
        );
        let err = p.wrap_key(&a, &ezk, &ctx("z")).await.unwrap_err();
        assert!(
            matches!(err, Error::KeyUnavailable { state: s, .. } if s == state),
            "{err}"
        );
        p.enable_key("a").unwrap();
        assert_eq!(p.unwrap_key(&a, &wrapped, &ctx("z")).await.unwrap(), ezk);
    }

    p.destroy_key("a").unwrap();
    assert_eq!(p.describe_key(&a).await.unwrap(), KeyState::NotFound);
    let err = p.unwrap_key(&a, &wrapped, &ctx("z")).await.unwrap_err();
    assert!(matches!(
        err,
        Error::KeyUnavailable {
            state: KeyState::NotFound,
            ..
        }
    ));
    assert!(matches!(
        p.enable_key("a").unwrap_err(),
        Error::KeyUnavailable { .. }
    ));
}

#[tokio::test]
async fn refuses_foreign_refs_and_bad_ids() {
    let (_dir, p) = new_provider();
    p.add_key("a").unwrap();
    let aws = KeyRef::new("aws-kms", "a", "eu-west-1");
    assert!(matches!(
        p.describe_key(&aws).await.unwrap_err(),
        Error::InvalidArgument(_)
    ));
    let other_region = KeyRef::new("local", "a", "us-east-1");
    let ezk = SecretKey::generate().unwrap();
    assert!(matches!(
        p.wrap_key(&other_region, &ezk, &ctx("z"))
            .await
            .unwrap_err(),
        Error::InvalidArgument(_)
    ));
    assert!(matches!(
        p.add_key("a").unwrap_err(),
        Error::InvalidArgument(_)
    ));
    assert!(p.add_key("").is_err());
    assert!(p.add_key("bad\nid").is_err());
    assert!(p.add_key(&"x".repeat(257)).is_err());
}

#[tokio::test]
async fn survives_reopen_with_states_and_wrap_counts() {
    let (dir, p) = new_provider();
    let a = p.add_key("a").unwrap();
    p.add_key("b").unwrap();
    p.disable_key("b").unwrap();
    let ezk = SecretKey::generate().unwrap();
    let wrapped = p.wrap_key(&a, &ezk, &ctx("z")).await.unwrap();
    p.wrap_key(&a, &ezk, &ctx("z")).await.unwrap();
    let before = p.list_keys();
    drop(p);

    let p = LocalKeyProvider::open(dir.path().join("root.keys")).unwrap();
    assert_eq!(p.region(), "eu-west-1");
    assert_eq!(p.list_keys(), before);
    assert_eq!(before[0].wraps, 2);
    assert_eq!(before[1].state, KeyState::Disabled);
    assert_eq!(p.unwrap_key(&a, &wrapped, &ctx("z")).await.unwrap(), ezk);
    // open_or_create keeps an existing file's keys and region.
    let p2 = LocalKeyProvider::open_or_create(dir.path().join("root.keys"), "other").unwrap();
    assert_eq!(p2.region(), "eu-west-1");
    assert_eq!(p2.list_keys().len(), 2);
    let fresh = LocalKeyProvider::open_or_create(dir.path().join("new.keys"), "r2").unwrap();
    assert!(fresh.list_keys().is_empty());
    assert!(LocalKeyProvider::create(dir.path().join("root.keys"), "x").is_err());
}

#[cfg(unix)]
#[test]
fn key_file_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, p) = new_provider();
    p.add_key("a").unwrap();
    let mode = fs::metadata(p.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

fn sample_file() -> (tempfile::TempDir, Vec<u8>) {
    let (dir, p) = new_provider();
    p.add_key("a").unwrap();
    p.add_key("b").unwrap();
    let bytes = fs::read(p.path()).unwrap();
    (dir, bytes)
}

#[test]
fn every_corruption_is_a_typed_error() {
    let (_dir, good) = sample_file();
    assert!(decode(&good).is_ok());
    for i in 0..good.len() {
        for bit in [0, 3, 7] {
            let mut bad = good.clone();
            bad[i] ^= 1 << bit;
            let err = decode(&bad).unwrap_err();
            assert!(matches!(err, Error::Malformed { .. }), "byte {i}: {err}");
        }
    }
}

#[test]
fn every_truncation_and_extension_is_a_typed_error() {
    let (_dir, good) = sample_file();
    for len in 0..good.len() {
        let err = decode(&good[..len]).unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }), "len {len}: {err}");
    }
    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(
        decode(&longer).unwrap_err(),
        Error::Malformed { .. }
    ));
}

#[test]
fn foreign_files_and_versions_are_named() {
    let err = decode(b"{\"keys\": []}").unwrap_err();
    assert!(
        err.to_string().contains("not a cmek local key file"),
        "{err}"
    );
    let (_dir, good) = sample_file();
    let mut v2 = good.clone();
    v2[9] = 2;
    let err = decode(&v2).unwrap_err();
    assert!(err.to_string().contains("unsupported version 2"), "{err}");
    // A well-formed checksum over a structurally bad body is still refused.
    let mut body = good[..good.len() - SHA256_LEN].to_vec();
    body.push(0xff);
    let sum = sha256(&[&body]);
    body.extend_from_slice(&sum);
    assert!(decode(&body)
        .unwrap_err()
        .to_string()
        .contains("trailing bytes"));
}

#[test]
fn open_reports_corruption_without_touching_the_file() {
    let (dir, mut bytes) = sample_file();
    let path = dir.path().join("root.keys");
    bytes[20] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let err = LocalKeyProvider::open(&path).unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err}");
    // open_or_create must not replace a corrupted file with an empty one.
    assert!(LocalKeyProvider::open_or_create(&path, "eu-west-1").is_err());
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

#[test]
fn failed_write_changes_nothing_in_memory() {
    let (dir, p) = new_provider();
    p.add_key("a").unwrap();
    let before = p.list_keys();
    // Removing the directory makes the next atomic write fail.
    fs::remove_dir_all(dir.path()).unwrap();
    assert!(matches!(p.add_key("b").unwrap_err(), Error::Io { .. }));
    assert!(matches!(p.disable_key("a").unwrap_err(), Error::Io { .. }));
    assert_eq!(p.list_keys(), before);
}

#[tokio::test]
async fn wrap_fails_closed_when_its_count_cannot_be_persisted() {
    let (dir, p) = new_provider();
    let a = p.add_key("a").unwrap();
    fs::remove_dir_all(dir.path()).unwrap();
    let ezk = SecretKey::generate().unwrap();
    let err = p.wrap_key(&a, &ezk, &ctx("z")).await.unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_eq!(p.list_keys()[0].wraps, 0);
}

#[test]
fn debug_never_shows_material() {
    let (_dir, p) = new_provider();
    p.add_key("a").unwrap();
    let material = hex::encode(p.read_keys()["a"].material.expose_secret());
    let shown = format!("{p:?}");
    assert!(shown.contains("REDACTED"), "{shown}");
    assert!(!shown.contains(&material));
}
