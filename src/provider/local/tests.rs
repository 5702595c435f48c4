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
    let before = p.list_keys().unwrap();
    drop(p);

    let p = LocalKeyProvider::open(dir.path().join("root.keys")).unwrap();
    assert_eq!(p.region(), "eu-west-1");
    assert_eq!(p.list_keys().unwrap(), before);
    assert_eq!(before[0].wraps, 2);
    assert_eq!(before[1].state, KeyState::Disabled);
    assert_eq!(p.unwrap_key(&a, &wrapped, &ctx("z")).await.unwrap(), ezk);
    // open_or_create keeps an existing file's keys and region.
    let p2 = LocalKeyProvider::open_or_create(dir.path().join("root.keys"), "other").unwrap();
    assert_eq!(p2.region(), "eu-west-1");
    assert_eq!(p2.list_keys().unwrap().len(), 2);
    let fresh = LocalKeyProvider::open_or_create(dir.path().join("new.keys"), "r2").unwrap();
    assert!(fresh.list_keys().unwrap().is_empty());
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

#[tokio::test]
async fn failed_write_changes_nothing() {
    use crate::fsutil::{faults, Fault, Step};
    let (_dir, p) = new_provider();
    let a = p.add_key("a").unwrap();
    let before = fs::read(p.path()).unwrap();
    for change in [
        (|p: &LocalKeyProvider| p.add_key("b").map(drop)) as fn(&LocalKeyProvider) -> Result<()>,
        |p| p.disable_key("a"),
        |p| p.destroy_key("a"),
    ] {
        faults::arm(Step::Rename, Fault::NoSpace);
        assert!(matches!(change(&p).unwrap_err(), Error::Io { .. }));
        faults::disarm();
        assert_eq!(fs::read(p.path()).unwrap(), before);
        assert_eq!(p.describe_key(&a).await.unwrap(), KeyState::Enabled);
        assert_eq!(p.list_keys().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_deleted_key_file_shreds_its_keys_and_is_not_recreated() {
    let (_dir, p) = new_provider();
    let a = p.add_key("a").unwrap();
    let ezk = SecretKey::generate().unwrap();
    let wrapped = p.wrap_key(&a, &ezk, &ctx("z")).await.unwrap();
    fs::remove_file(p.path()).unwrap();

    // A provider opened before the deletion no longer serves the key.
    assert_eq!(p.describe_key(&a).await.unwrap(), KeyState::NotFound);
    let err = p.unwrap_key(&a, &wrapped, &ctx("z")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::KeyUnavailable {
                state: KeyState::NotFound,
                ..
            }
        ),
        "{err}"
    );
    // Changes, wraps and listings fail rather than start a new file.
    assert!(matches!(p.add_key("b").unwrap_err(), Error::Io { .. }));
    assert!(matches!(
        p.wrap_key(&a, &ezk, &ctx("z")).await.unwrap_err(),
        Error::Io { .. }
    ));
    assert!(matches!(p.list_keys().unwrap_err(), Error::Io { .. }));
    assert!(!p.path().exists());
}

#[tokio::test]
async fn wrap_fails_closed_when_its_count_cannot_be_persisted() {
    use crate::fsutil::{faults, Fault, Step};
    let (_dir, p) = new_provider();
    let a = p.add_key("a").unwrap();
    let ezk = SecretKey::generate().unwrap();
    faults::arm(Step::Rename, Fault::NoSpace);
    let err = p.wrap_key(&a, &ezk, &ctx("z")).await.unwrap_err();
    faults::disarm();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_eq!(p.list_keys().unwrap()[0].wraps, 0);
    p.wrap_key(&a, &ezk, &ctx("z")).await.unwrap();
    assert_eq!(p.list_keys().unwrap()[0].wraps, 1);
}

#[test]
fn debug_never_shows_material() {
    let (_dir, p) = new_provider();
    p.add_key("a").unwrap();
    let material = hex::encode(p.material_for_tests("a").unwrap());
    // The provider keeps no material between calls; what it reads is
    // dropped (and zeroized) at the end of each call.
    let shown = format!("{p:?}");
    assert!(!shown.contains(&material), "{shown}");
    let bytes = material_bytes_debug(&p);
    assert!(!bytes.contains(&material));
}

fn material_bytes_debug(p: &LocalKeyProvider) -> String {
    format!("{:?}", p.load_existing().unwrap())
}

/// The scenario of a service holding the key file while an operator changes
/// it from another provider (as the CLI does): the service's next wrap must
/// not write back its old view.
#[tokio::test]
async fn a_second_provider_on_the_file_loses_no_change_and_sees_every_state() {
    let (dir, service) = new_provider();
    let path = dir.path().join("root.keys");
    let a = service.add_key("a").unwrap();
    let c = service.add_key("c").unwrap();
    let d = service.add_key("d").unwrap();
    let ezk = SecretKey::generate().unwrap();
    let under_a = service.wrap_key(&a, &ezk, &ctx("z")).await.unwrap();
    let under_c = service.wrap_key(&c, &ezk, &ctx("z")).await.unwrap();
    for _ in 0..2 {
        service.wrap_key(&d, &ezk, &ctx("z")).await.unwrap();
    }

    // The operator: destroy A, disable C, add B, and wrap under D.
    let operator = LocalKeyProvider::open(&path).unwrap();
    operator.destroy_key("a").unwrap();
    operator.disable_key("c").unwrap();
    let b = operator.add_key("b").unwrap();
    operator.wrap_key(&d, &ezk, &ctx("z")).await.unwrap();

    // The service wraps again (it stores its count).
    service.wrap_key(&d, &ezk, &ctx("z")).await.unwrap();

    // The file holds every change of both.
    let on_disk = LocalKeyProvider::open(&path).unwrap().list_keys().unwrap();
    let summary: Vec<_> = on_disk
        .iter()
        .map(|k| (k.key.key_id().to_owned(), k.state, k.wraps))
        .collect();
    assert_eq!(
        summary,
        [
            ("b".to_owned(), KeyState::Enabled, 0),
            ("c".to_owned(), KeyState::Disabled, 1),
            ("d".to_owned(), KeyState::Enabled, 4),
        ],
        "A stays destroyed, C disabled, B exists, D counts every wrap"
    );
    assert!(operator.material_for_tests("a").is_none());

    // The service sees the new states, and acts on them.
    assert_eq!(service.describe_key(&a).await.unwrap(), KeyState::NotFound);
    assert_eq!(service.describe_key(&c).await.unwrap(), KeyState::Disabled);
    assert_eq!(service.describe_key(&b).await.unwrap(), KeyState::Enabled);
    assert_eq!(service.list_keys().unwrap(), on_disk);
    for (root, wrapped, state) in [
        (&a, &under_a, KeyState::NotFound),
        (&c, &under_c, KeyState::Disabled),
    ] {
        let err = service
            .unwrap_key(root, wrapped, &ctx("z"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::KeyUnavailable { state: s, .. } if s == state),
            "{err}"
        );
        let err = service.wrap_key(root, &ezk, &ctx("z")).await.unwrap_err();
        assert!(
            matches!(err, Error::KeyUnavailable { state: s, .. } if s == state),
            "{err}"
        );
    }
    let under_b = service.wrap_key(&b, &ezk, &ctx("z")).await.unwrap();
    assert_eq!(
        operator.unwrap_key(&b, &under_b, &ctx("z")).await.unwrap(),
        ezk
    );
    // Nothing the service did brought A back or re-enabled C.
    assert_eq!(operator.describe_key(&a).await.unwrap(), KeyState::NotFound);
    assert_eq!(operator.describe_key(&c).await.unwrap(), KeyState::Disabled);
}

#[test]
fn concurrent_providers_lose_no_key_and_no_wrap() {
    const THREADS: usize = 6;
    const WRAPS: u64 = 5;
    let (dir, first) = new_provider();
    let path = dir.path().join("root.keys");
    let shared = first.add_key("shared").unwrap();
    std::thread::scope(|scope| {
        for i in 0..THREADS {
            let (path, shared) = (&path, &shared);
            scope.spawn(move || {
                let p = LocalKeyProvider::open(path).unwrap();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let ezk = SecretKey::generate().unwrap();
                for j in 0..WRAPS {
                    p.add_key(&format!("k{i}-{j}")).unwrap();
                    rt.block_on(p.wrap_key(shared, &ezk, &ctx("z"))).unwrap();
                }
            });
        }
    });
    let keys = first.list_keys().unwrap();
    assert_eq!(keys.len(), 1 + THREADS * WRAPS as usize, "{keys:?}");
    let shared = keys.iter().find(|k| k.key == shared).unwrap();
    assert_eq!(shared.wraps, THREADS as u64 * WRAPS);
}

#[test]
fn concurrent_open_or_create_all_open_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root.keys");
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let path = &path;
                scope.spawn(move || {
                    let p = LocalKeyProvider::open_or_create(path, "eu-west-1").unwrap();
                    p.add_key(&format!("k{i}")).unwrap();
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    let p = LocalKeyProvider::open(&path).unwrap();
    assert_eq!(p.list_keys().unwrap().len(), 8);
}

#[tokio::test]
async fn wrap_counts_never_go_backwards_when_an_old_file_is_put_back() {
    let (_dir, p) = new_provider();
    let a = p.add_key("a").unwrap();
    let ezk = SecretKey::generate().unwrap();
    for _ in 0..3 {
        p.wrap_key(&a, &ezk, &ctx("z")).await.unwrap();
    }
    let old = fs::read(p.path()).unwrap();
    for _ in 0..2 {
        p.wrap_key(&a, &ezk, &ctx("z")).await.unwrap();
    }
    fs::write(p.path(), &old).unwrap();
    assert_eq!(p.list_keys().unwrap()[0].wraps, 5, "never reports less");
    p.wrap_key(&a, &ezk, &ctx("z")).await.unwrap();
    let reopened = LocalKeyProvider::open(p.path()).unwrap();
    assert_eq!(
        reopened.list_keys().unwrap()[0].wraps,
        6,
        "never stores less"
    );
}

#[tokio::test]
async fn a_key_file_of_another_region_put_in_place_is_refused() {
    let (dir, p) = new_provider();
    let a = p.add_key("a").unwrap();
    let other = LocalKeyProvider::create(dir.path().join("other.keys"), "us-east-1").unwrap();
    other.add_key("a").unwrap();
    fs::rename(other.path(), p.path()).unwrap();
    let planted = fs::read(p.path()).unwrap();

    let rejected = |err: Error| {
        assert!(
            matches!(
                err,
                Error::StateRejected {
                    reason: crate::StateRejection::Mismatch(_),
                    ..
                }
            ),
            "{err}"
        )
    };
    rejected(p.describe_key(&a).await.unwrap_err());
    rejected(p.list_keys().unwrap_err());
    rejected(p.add_key("b").unwrap_err());
    let ezk = SecretKey::generate().unwrap();
    rejected(p.wrap_key(&a, &ezk, &ctx("z")).await.unwrap_err());
    assert_eq!(fs::read(p.path()).unwrap(), planted, "nothing written");
}

#[tokio::test]
async fn an_oversized_key_file_is_refused_before_it_is_read() {
    let (_dir, p) = new_provider();
    let a = p.add_key("a").unwrap();
    let mut big = fs::read(p.path()).unwrap();
    big.resize(usize::try_from(MAX_FILE_LEN).unwrap() + 1, 0);
    fs::write(p.path(), &big).unwrap();
    for err in [
        LocalKeyProvider::open(p.path()).unwrap_err(),
        p.describe_key(&a).await.unwrap_err(),
        p.add_key("b").unwrap_err(),
    ] {
        assert!(matches!(err, Error::LimitExceeded { .. }), "{err}");
    }
    // The cap is the longest well-formed file: a full one still opens.
    let (_dir, full) = new_provider();
    let region = "r".repeat(MAX_REGION_LEN);
    let keys: Keys = (0..MAX_KEYS)
        .map(|i| {
            let id = format!("{i:0>256}");
            let key = LocalKey {
                material: SecretKey::generate().unwrap(),
                state: KeyState::Enabled,
                created_unix: 0,
                wraps: 0,
            };
            (id, key)
        })
        .collect();
    let bytes = encode(&region, &keys);
    assert_eq!(bytes.len() as u64, MAX_FILE_LEN);
    fs::write(full.path(), &bytes).unwrap();
    assert_eq!(
        LocalKeyProvider::open(full.path())
            .unwrap()
            .list_keys()
            .unwrap()
            .len(),
        MAX_KEYS
    );
}

/// A change waits for the lock another holder has (as another process
/// would hold it for its own read-modify-write), and is then made on the
/// file as that holder left it.
#[test]
fn a_change_waits_for_the_lock_and_applies_to_the_newest_file() {
    let (dir, p) = new_provider();
    p.add_key("a").unwrap();
    let lock_path = dir.path().join(".root.keys.lock");
    let held = fsutil::ExclusiveLock::acquire(&lock_path).unwrap();
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| p.disable_key("a"));
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!waiting.is_finished(), "the change waits for the lock");
        // The holder's own change, written while it holds the lock.
        let other = LocalKeyProvider::open(p.path()).unwrap();
        let mut keys = other.load_existing().unwrap();
        keys.insert(
            "b".to_owned(),
            LocalKey {
                material: SecretKey::generate().unwrap(),
                state: KeyState::Enabled,
                created_unix: 0,
                wraps: 0,
            },
        );
        fsutil::write_atomic(p.path(), &encode("eu-west-1", &keys), FILE_MODE).unwrap();
        drop(held);
        waiting.join().unwrap().unwrap();
    });
    let states: Vec<_> = p
        .list_keys()
        .unwrap()
        .into_iter()
        .map(|k| (k.key.key_id().to_owned(), k.state))
        .collect();
    assert_eq!(
        states,
        [
            ("a".to_owned(), KeyState::Disabled),
            ("b".to_owned(), KeyState::Enabled),
        ]
    );
}

#[tokio::test]
async fn get_or_add_key_adds_once_and_then_returns_the_key_as_it_is() {
    let (_dir, p) = new_provider();
    let root = p.get_or_add_key("root").unwrap();
    assert_eq!(root, p.key_ref("root"));
    let wrapped = p
        .wrap_key(&root, &SecretKey::generate().unwrap(), &ctx("z"))
        .await
        .unwrap();
    p.disable_key("root").unwrap();
    let before = std::fs::read(p.path()).unwrap();
    // Found: the same key, in its state, and the file is not written.
    assert_eq!(p.get_or_add_key("root").unwrap(), root);
    assert_eq!(std::fs::read(p.path()).unwrap(), before);
    assert_eq!(p.describe_key(&root).await.unwrap(), KeyState::Disabled);
    p.enable_key("root").unwrap();
    p.unwrap_key(&root, &wrapped, &ctx("z")).await.unwrap();
    assert_eq!(p.list_keys().unwrap().len(), 1);
    // Bad ids are refused as by add_key; a deleted file is not recreated.
    for bad in ["", &"x".repeat(MAX_ID_LEN + 1)] {
        assert!(
            matches!(p.get_or_add_key(bad), Err(Error::InvalidArgument(_))),
            "{bad:?}"
        );
    }
    std::fs::remove_file(p.path()).unwrap();
    let err = p.get_or_add_key("other").unwrap_err();
    assert!(
        matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    assert!(!p.path().exists());
}

/// Providers that all miss the key, then all wait on the file's lock:
/// one adds it, the others find it under the lock, and every one of them
/// wraps under the same key material.
#[test]
fn racing_get_or_add_key_makes_one_key_for_every_caller() {
    const CALLERS: usize = 8;
    let (dir, first) = new_provider();
    let held = fsutil::ExclusiveLock::acquire(&dir.path().join(".root.keys.lock")).unwrap();
    let ezk = SecretKey::generate().unwrap();
    let wrapped: Vec<_> = std::thread::scope(|scope| {
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| {
                let (path, ezk) = (first.path(), &ezk);
                scope.spawn(move || {
                    let p = LocalKeyProvider::open(path).unwrap();
                    let root = p.get_or_add_key("root").unwrap();
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    rt.block_on(p.wrap_key(&root, ezk, &ctx("z"))).unwrap()
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(
            callers.iter().all(|c| !c.is_finished()),
            "every caller missed the key and waits for the lock"
        );
        drop(held);
        callers.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let keys = first.list_keys().unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].wraps, CALLERS as u64);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for w in &wrapped {
        let back = rt
            .block_on(first.unwrap_key(&keys[0].key, w, &ctx("z")))
            .unwrap();
        assert_eq!(back, ezk);
    }
}
