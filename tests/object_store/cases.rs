//! The encrypted object store's tests, compiled once per supported
//! `object_store` major: `super::os` is the `object_store` crate and
//! `super::adapter` the matching `cmek::object_store` module.

use std::sync::Arc;

use cmek::provider::LocalKeyProvider;
use cmek::zone::{Keyring, MemoryManifestStore, Zone, ZoneSpec};

use super::adapter::EncryptedStore;
use super::os::integration::*;
use super::os::local::LocalFileSystem;
use super::os::memory::InMemory;
use super::os::path::Path;
use super::os::{ObjectStore, ObjectStoreExt};

/// A zone on a local key file in `dir`, at chunk size `chunk`.
async fn zone_in(dir: &std::path::Path, chunk: Option<usize>) -> Zone {
    let provider = LocalKeyProvider::create(dir.join("root.keys"), "local").unwrap();
    let root = provider.add_key("root").unwrap();
    let mut spec = ZoneSpec::new("objects", "local", root);
    if let Some(c) = chunk {
        spec.stream = cmek::stream::Params::new(c).unwrap();
    }
    Keyring::new(Arc::new(provider))
        .create_zone(Arc::new(MemoryManifestStore::new()), spec)
        .await
        .unwrap()
}

/// The object_store crate's own conformance tests that apply to a store
/// with conditional updates, over `InMemory`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_over_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    // A small chunk size, so that the tests' objects span many chunks.
    let store = EncryptedStore::new(InMemory::new(), zone_in(dir.path(), Some(4096)).await);
    put_get_delete_list(&store).await;
    put_get_attributes(&store).await;
    get_opts(&store).await;
    put_opts(&store, true).await;
    list_uses_directories_correctly(&store).await;
    list_with_delimiter(&store).await;
    list_with_offset_exclusivity(&store).await;
    rename_and_copy(&store).await;
    copy_if_not_exists(&store).await;
    copy_rename_nonexistent_object(&store).await;
    stream_get(&store).await;
    multipart_race_condition(&store, true).await;
    multipart_out_of_order(&store).await;
    let err = get_nonexistent_object(&store, None).await.unwrap_err();
    assert!(matches!(err, super::os::Error::NotFound { .. }), "{err}");
}

/// The same over `LocalFileSystem`, which has no conditional updates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_over_local_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let inner = LocalFileSystem::new_with_prefix(root.path()).unwrap();
    let store = EncryptedStore::new(inner, zone_in(dir.path(), Some(4096)).await);
    put_get_delete_list(&store).await;
    get_opts(&store).await;
    put_opts(&store, false).await;
    list_uses_directories_correctly(&store).await;
    list_with_delimiter(&store).await;
    list_with_offset_exclusivity(&store).await;
    rename_and_copy(&store).await;
    copy_if_not_exists(&store).await;
    copy_rename_nonexistent_object(&store).await;
    stream_get(&store).await;
    multipart_out_of_order(&store).await;
}

/// What is stored is ciphertext under the object's path: not the
/// plaintext, and not readable at another path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_objects_are_segments_bound_to_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let zone = zone_in(dir.path(), None).await;
    let store = EncryptedStore::new(InMemory::new(), zone.clone());
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let a = Path::from("t/a");
    store.put(&a, data.clone().into()).await.unwrap();
    let stored = store.inner().get(&a).await.unwrap().bytes().await.unwrap();
    assert_eq!(
        stored.len() as u64,
        zone.encrypted_len(data.len() as u64).unwrap()
    );
    assert!(stored.windows(64).all(|w| w != &data[..64]));
    assert_eq!(
        &zone.decrypt_segment("t/a", &stored).unwrap()[..],
        &data[..]
    );

    // The inner store's own copy moves the ciphertext, not the binding.
    let b = Path::from("t/b");
    store.inner().copy(&a, &b).await.unwrap();
    let err = store.get(&b).await.unwrap_err();
    assert_cmek(&err, |e| matches!(e, cmek::Error::Integrity { .. }));
    let err = store.get_range(&b, 10..20).await.unwrap_err();
    assert_cmek(&err, |e| matches!(e, cmek::Error::Integrity { .. }));

    // The adapter's copy re-encrypts under the new path.
    store.copy(&a, &b).await.unwrap();
    assert_eq!(store.get(&b).await.unwrap().bytes().await.unwrap(), data);
}

/// A foreign (unencrypted) object is a clear error on every read path,
/// never its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_objects_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = EncryptedStore::new(InMemory::new(), zone_in(dir.path(), None).await);
    for (name, bytes) in [
        ("empty", Vec::new()),
        ("short", b"hello".to_vec()),
        ("long", vec![b'x'; 100_000]),
    ] {
        let p = Path::from(name);
        store.inner().put(&p, bytes.into()).await.unwrap();
        let err = store.get(&p).await.unwrap_err();
        assert_cmek(&err, |e| matches!(e, cmek::Error::Malformed { .. }));
        let err = store.head(&p).await.unwrap_err();
        assert_cmek(&err, |e| matches!(e, cmek::Error::Malformed { .. }));
        let err = store.get_range(&p, 0..1).await.unwrap_err();
        assert_cmek(&err, |e| matches!(e, cmek::Error::Malformed { .. }));
        let err = store.get_ranges(&p, &[0..1]).await.unwrap_err();
        assert_cmek(&err, |e| matches!(e, cmek::Error::Malformed { .. }));
    }
}

/// `err` is a `Generic` error from the adapter whose source is a cmek
/// error satisfying `check`.
fn assert_cmek(err: &super::os::Error, check: impl Fn(&cmek::Error) -> bool) {
    let super::os::Error::Generic { store, source } = err else {
        panic!("not a cmek error: {err:?}");
    };
    assert_eq!(*store, cmek::object_store::STORE_NAME);
    let inner = source
        .downcast_ref::<cmek::Error>()
        .unwrap_or_else(|| panic!("source is not a cmek::Error: {source:?}"));
    assert!(check(inner), "unexpected cmek error: {inner:?}");
}

/// Keeps the import of `ObjectStore` used for the trait objects above.
#[allow(dead_code)]
fn _is_object_store<S: ObjectStore>(_: &S) {}
