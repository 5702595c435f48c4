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
        let err = store.get_ranges(&p, &[0..1, 2..3]).await.unwrap_err();
        assert_cmek(&err, |e| matches!(e, cmek::Error::Malformed { .. }));
    }
}

/// `err` is a `Generic` error from the adapter, about an object, whose
/// cmek error satisfies `check`: permanent (not worth a retry), since
/// every check here is about damaged or foreign bytes.
fn assert_cmek(err: &super::os::Error, check: impl Fn(&cmek::Error) -> bool) {
    let super::os::Error::Generic { store, .. } = err else {
        panic!("not a cmek error: {err:?}");
    };
    assert_eq!(*store, cmek::object_store::STORE_NAME);
    let found = cmek::object_store::ObjectError::find(err)
        .unwrap_or_else(|| panic!("no cmek::object_store::ObjectError in {err:?}"));
    assert!(!found.path().is_empty(), "{found}");
    assert!(
        err.to_string().contains(found.path()),
        "the error names its object: {err}"
    );
    assert_eq!(cmek::object_store::is_retryable(err), Some(false), "{err}");
    assert!(check(found.error()), "unexpected cmek error: {found:?}");
}

// ---------------------------------------------------------------------
// S3, on the moto server the test script runs (for KMS, which serves S3 on
// the same port).
// ---------------------------------------------------------------------

use super::s3::{s3_store, unique};

/// The conformance tests over S3 on the test server: conditional
/// updates, create-only copies (by a create-only put), multipart uploads
/// with S3's 5 MiB smallest part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_over_s3() {
    let Some(endpoint) = super::common::endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = EncryptedStore::new(s3_store(&endpoint), zone_in(dir.path(), Some(4096)).await);
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

/// Ranged reads, a large multipart object and a create-only copy longer
/// than one part (staged, then moved in with S3's own create-only copy,
/// which the test server's default configuration lacks: a clear
/// `NotSupported`-style error and no object left behind) on S3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_over_s3() {
    let Some(endpoint) = super::common::endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = EncryptedStore::new(s3_store(&endpoint), zone_in(dir.path(), None).await);
    let data: Vec<u8> = (0..12_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let path = Path::from("big/object");
    let mut upload = store.put_multipart(&path).await.unwrap();
    for piece in data.chunks(3_000_001) {
        upload.put_part(piece.to_vec().into()).await.unwrap();
    }
    upload.complete().await.unwrap();
    assert_eq!(store.head(&path).await.unwrap().size, data.len() as u64);
    assert_eq!(store.get(&path).await.unwrap().bytes().await.unwrap(), data);
    for r in [
        0..1,
        65_000..70_000,
        11_999_000..12_000_000,
        5_242_000..5_243_000,
    ] {
        let got = store
            .get_range(&path, r.start as u64..r.end as u64)
            .await
            .unwrap();
        assert_eq!(&got[..], &data[r]);
    }
    let copy = Path::from("big/copy");
    store.copy(&path, &copy).await.unwrap();
    assert_eq!(store.get(&copy).await.unwrap().bytes().await.unwrap(), data);
    let other = Path::from("big/other");
    match store.copy_if_not_exists(&path, &other).await {
        Ok(()) => assert_eq!(
            store.get(&other).await.unwrap().bytes().await.unwrap(),
            data
        ),
        Err(e) => {
            assert!(
                matches!(
                    e,
                    super::os::Error::NotSupported { .. } | super::os::Error::NotImplemented { .. }
                ),
                "{e}"
            );
            let listed: Vec<_> = store
                .inner()
                .list(Some(&Path::from("big")))
                .map_ok(|m| m.location)
                .try_collect()
                .await
                .unwrap();
            assert_eq!(listed.len(), 2, "the staged copy is removed: {listed:?}");
        }
    }
}

use futures_util::TryStreamExt;

// ---------------------------------------------------------------------
// Properties: every range form against the plain store's answer; tampered,
// truncated and swapped objects never yield wrong plaintext.
// ---------------------------------------------------------------------

mod properties {
    use std::ops::Range;

    use bytes::Bytes;
    use proptest::prelude::*;

    use super::super::os::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
    use super::*;

    const CHUNK: usize = 4096;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// An object's length: often near chunk boundaries.
    fn object_len() -> impl Strategy<Value = usize> {
        let first = CHUNK - 40 - 16;
        let later = CHUNK - 16;
        prop_oneof![
            0usize..40_000,
            (0usize..6, 0usize..3)
                .prop_map(move |(k, d)| (first + k * later + d).saturating_sub(1)),
        ]
    }

    /// Any range form, including empty, inverted, past the end and
    /// ending on chunk boundaries.
    fn get_range(len: usize) -> impl Strategy<Value = GetRange> {
        let len = len as u64;
        let boundary = move |k: u64| ((CHUNK - 56) as u64 + k * (CHUNK - 16) as u64).min(len + 10);
        prop_oneof![
            (0..len + 10, 0..len + 10).prop_map(|(a, b)| GetRange::Bounded(a..b)),
            (0..len + 10, 0u64..9000).prop_map(|(a, n)| GetRange::Bounded(a..a + n)),
            (0u64..10, 0u64..10)
                .prop_map(move |(a, b)| GetRange::Bounded(boundary(a)..boundary(b))),
            (0..len + 10).prop_map(GetRange::Offset),
            (0..len + 10).prop_map(GetRange::Suffix),
            (0u64..10).prop_map(move |k| GetRange::Suffix(boundary(k))),
        ]
    }

    fn case() -> impl Strategy<Value = (Vec<u8>, Vec<GetRange>, Vec<Range<u64>>)> {
        object_len().prop_flat_map(|len| {
            (
                proptest::collection::vec(any::<u8>(), len),
                proptest::collection::vec(get_range(len), 1..6),
                proptest::collection::vec(
                    (0..len as u64 + 5, 1u64..9000).prop_map(|(a, n)| a..a + n),
                    0..5,
                ),
            )
        })
    }

    /// What a store answers for `range`: the bytes, the range and size it
    /// reports, or that it failed.
    async fn answer(
        store: &dyn ObjectStore,
        path: &Path,
        range: &GetRange,
    ) -> Option<(Bytes, Range<u64>, u64)> {
        let opts = GetOptions {
            range: Some(range.clone()),
            ..GetOptions::default()
        };
        let r = store.get_opts(path, opts).await.ok()?;
        let (reported, size) = (r.range.clone(), r.meta.size);
        Some((r.bytes().await.ok()?, reported, size))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Every `GetRange` and `get_ranges` call answers exactly as the
        /// plain store holding the plaintext does (bytes, reported range
        /// and size, or an error).
        #[test]
        fn ranges_read_as_the_plaintext_store((data, ranges, many) in case()) {
            let rt = runtime();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let plain = InMemory::new();
                let store = EncryptedStore::new(InMemory::new(), zone_in(dir.path(), Some(CHUNK)).await);
                let path = Path::from("p/object");
                plain.put(&path, PutPayload::from(data.clone())).await.unwrap();
                store.put(&path, PutPayload::from(data.clone())).await.unwrap();
                for r in &ranges {
                    let want = answer(&plain, &path, r).await;
                    let got = answer(&store, &path, r).await;
                    let same = got.as_ref().map(|(_, r, n)| (r.clone(), *n)) == want.as_ref().map(|(_, r, n)| (r.clone(), *n))
                        && got.as_ref().map(|g| &g.0) == want.as_ref().map(|w| &w.0);
                    prop_assert!(same, "range {}: got {:?}, want {:?}", r,
                        got.as_ref().map(|(b, r, n)| (b.len(), r.clone(), *n)),
                        want.as_ref().map(|(b, r, n)| (b.len(), r.clone(), *n)));
                }
                let want = plain.get_ranges(&path, &many).await.ok();
                let got = store.get_ranges(&path, &many).await.ok();
                prop_assert!(got == want, "ranges {:?}: got {:?} pieces, want {:?}", many,
                    got.as_ref().map(|g| g.len()), want.as_ref().map(|w| w.len()));
                let whole = store.get(&path).await.unwrap().bytes().await.unwrap();
                prop_assert!(whole[..] == data[..], "whole object differs");
                prop_assert_eq!(store.head(&path).await.unwrap().size, data.len() as u64);
                Ok(())
            })?;
        }

        /// A tampered (one byte flipped anywhere), truncated or swapped
        /// object fails a whole read and every read that touches the
        /// damage; no read returns other bytes than the plaintext's.
        #[test]
        fn damaged_objects_never_yield_wrong_plaintext(
            (data, ranges, many) in case(),
            damage in 0usize..3,
            at in any::<prop::sample::Index>(),
        ) {
            let rt = runtime();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let store = EncryptedStore::new(InMemory::new(), zone_in(dir.path(), Some(CHUNK)).await);
                let path = Path::from("p/object");
                store.put(&path, PutPayload::from(data.clone())).await.unwrap();
                let stored = store.inner().get(&path).await.unwrap().bytes().await.unwrap();
                let damaged: Vec<u8> = match damage {
                    0 => {
                        let mut d = stored.to_vec();
                        d[at.index(stored.len())] ^= 0x20;
                        d
                    }
                    1 => stored[..at.index(stored.len())].to_vec(),
                    _ => {
                        // Another object of the same length, stored here.
                        let other = Path::from("p/other");
                        store.put(&other, PutPayload::from(data.clone())).await.unwrap();
                        store.inner().get(&other).await.unwrap().bytes().await.unwrap().to_vec()
                    }
                };
                store.inner().put(&path, PutPayload::from(damaged)).await.unwrap();
                let whole = match store.get(&path).await {
                    Ok(r) => r.bytes().await,
                    Err(e) => Err(e),
                };
                prop_assert!(whole.is_err(), "a damaged object read whole");
                let plain = InMemory::new();
                plain.put(&path, PutPayload::from(data.clone())).await.unwrap();
                // A read that does not reach the end cannot know the
                // object was cut short, so the size it reports may be the
                // damaged one; its bytes and range must be right.
                for r in &ranges {
                    if let Some((bytes, range, _)) = answer(&store, &path, r).await {
                        let want = answer(&plain, &path, r).await.map(|(b, r, _)| (b, r));
                        prop_assert!(Some((bytes, range)) == want, "range {} read wrong bytes", r);
                    }
                }
                if let Ok(got) = store.get_ranges(&path, &many).await {
                    let want = plain.get_ranges(&path, &many).await.ok();
                    prop_assert!(Some(got) == want, "ranges {:?} read wrong bytes", many);
                }
                Ok(())
            })?;
        }
    }
}

// ---------------------------------------------------------------------
// Streaming and multipart behaviour.
// ---------------------------------------------------------------------

/// A multipart upload cut anywhere reads back whole; parts handed to the
/// inner store are whole chunks of at least the part size; an aborted
/// upload leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_parts_are_whole_chunks_and_abort_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let zone = zone_in(dir.path(), Some(4096)).await;
    let recorder = Recorder::default();
    let store = EncryptedStore::new(recorder.clone(), zone.clone()).with_part_size(10_000);
    let data: Vec<u8> = (0..100_003u32).map(|i| (i % 253) as u8).collect();
    let path = Path::from("m/one");
    let mut upload = store.put_multipart(&path).await.unwrap();
    for piece in [
        &data[..1],
        &data[1..4095],
        &data[4095..50_000],
        &data[50_000..],
    ] {
        upload.put_part(piece.to_vec().into()).await.unwrap();
    }
    upload.complete().await.unwrap();
    assert_eq!(store.get(&path).await.unwrap().bytes().await.unwrap(), data);
    let parts = recorder.parts();
    assert!(parts.len() >= 5, "{parts:?}");
    let header = cmek::zone::SEGMENT_HEADER_LEN + cmek::stream::HEADER_LEN;
    for (i, &len) in parts.iter().enumerate() {
        if i + 1 < parts.len() {
            assert!(len >= 10_000, "part {i} has {len} bytes");
            let body = if i == 0 { len - header } else { len };
            assert_eq!(
                (body + if i == 0 { 40 } else { 0 }) % 4096,
                0,
                "part {i} ends inside a chunk"
            );
        }
    }

    let aborted = Path::from("m/aborted");
    let mut upload = store.put_multipart(&aborted).await.unwrap();
    upload.put_part(vec![1u8; 30_000].into()).await.unwrap();
    upload.abort().await.unwrap();
    assert!(matches!(
        store.head(&aborted).await.unwrap_err(),
        super::os::Error::NotFound { .. }
    ));
}

/// An `InMemory` store that records the length of each multipart part it
/// is handed.
#[derive(Debug, Clone, Default)]
struct Recorder {
    inner: Arc<InMemory>,
    parts: Arc<std::sync::Mutex<Vec<usize>>>,
    gets: Arc<std::sync::atomic::AtomicUsize>,
    fetched: Arc<std::sync::atomic::AtomicU64>,
}

impl Recorder {
    fn parts(&self) -> Vec<usize> {
        self.parts.lock().unwrap().clone()
    }

    /// GETs served so far (ranged or not).
    fn gets(&self) -> usize {
        self.gets.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stored bytes the GETs served so far returned.
    fn fetched(&self) -> u64 {
        self.fetched.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl std::fmt::Display for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recorder")
    }
}

#[async_trait::async_trait]
impl ObjectStore for Recorder {
    async fn put_opts(
        &self,
        location: &Path,
        payload: super::os::PutPayload,
        opts: super::os::PutOptions,
    ) -> super::os::Result<super::os::PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: super::os::PutMultipartOptions,
    ) -> super::os::Result<Box<dyn super::os::MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(RecordedUpload {
            inner,
            parts: Arc::clone(&self.parts),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: super::os::GetOptions,
    ) -> super::os::Result<super::os::GetResult> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let head = options.head;
        let result = self.inner.get_opts(location, options).await?;
        if !head {
            self.fetched.fetch_add(
                result.range.end - result.range.start,
                std::sync::atomic::Ordering::SeqCst,
            );
        }
        Ok(result)
    }

    fn delete_stream(
        &self,
        locations: futures_util::stream::BoxStream<'static, super::os::Result<Path>>,
    ) -> futures_util::stream::BoxStream<'static, super::os::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> futures_util::stream::BoxStream<'static, super::os::Result<super::os::ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&Path>,
    ) -> super::os::Result<super::os::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: super::os::CopyOptions,
    ) -> super::os::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[derive(Debug)]
struct RecordedUpload {
    inner: Box<dyn super::os::MultipartUpload>,
    parts: Arc<std::sync::Mutex<Vec<usize>>>,
}

#[async_trait::async_trait]
impl super::os::MultipartUpload for RecordedUpload {
    fn put_part(&mut self, data: super::os::PutPayload) -> super::os::UploadPart {
        self.parts.lock().unwrap().push(data.content_length());
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> super::os::Result<super::os::PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> super::os::Result<()> {
        self.inner.abort().await
    }
}

// ---------------------------------------------------------------------
// The zone manifest as an object, shared by nodes.
// ---------------------------------------------------------------------

/// Two nodes (separate zone handles, separate manifest-store handles on
/// one store) rotating one zone at once: the loser of each race gets a
/// conflict, reloads and retries; no rotation is lost and every segment
/// written meanwhile decrypts.
async fn racing_rotations_lose_nothing(inner: Arc<dyn ObjectStore>) {
    use cmek::zone::ManifestStore;
    let dir = tempfile::tempdir().unwrap();
    let provider =
        Arc::new(LocalKeyProvider::create(dir.path().join("root.keys"), "local").unwrap());
    let root = provider.add_key("root").unwrap();
    let keyring = Keyring::new(provider.clone());
    let manifest_path = Path::from(format!("zones/{}/manifest", unique()));
    let store_a = Arc::new(super::adapter::ObjectManifestStore::new(
        Arc::clone(&inner),
        manifest_path.clone(),
    ));
    let zone_a = keyring
        .create_zone(store_a.clone(), ZoneSpec::new("shared", "local", root))
        .await
        .unwrap();
    let anchor = zone_a.anchor();
    let store_b = Arc::new(super::adapter::ObjectManifestStore::new(
        Arc::clone(&inner),
        manifest_path.clone(),
    ));
    let zone_b = keyring.open_zone(store_b.clone(), &anchor).await.unwrap();
    assert!(store_b.load().unwrap().is_some());

    const ROTATIONS: u32 = 6;
    let node = |zone: Zone, name: &'static str| {
        tokio::spawn(async move {
            let mut written = Vec::new();
            let mut conflicts = 0u32;
            let mut done = 0;
            while done < ROTATIONS {
                match zone.rotate_ezk().await {
                    Ok(_) => done += 1,
                    Err(cmek::Error::Conflict { .. }) => {
                        conflicts += 1;
                        zone.reload().await.unwrap();
                    }
                    Err(e) => panic!("{name}: {e}"),
                }
                // A segment's DEK-wrap reservation can lose to the other
                // node's rotation too: reload and retry, as for a rotation.
                let id = format!("{name}-{done}-{conflicts}");
                let segment = loop {
                    match zone.encrypt_segment(&id, id.as_bytes()) {
                        Ok(s) => break s,
                        Err(cmek::Error::Conflict { .. }) => zone.reload().await.unwrap(),
                        Err(e) => panic!("{name}: {e}"),
                    }
                };
                written.push((id, segment));
            }
            (written, conflicts)
        })
    };
    let (a, b) = tokio::join!(node(zone_a.clone(), "a"), node(zone_b.clone(), "b"));
    let ((written_a, _), (written_b, _)) = (a.unwrap(), b.unwrap());

    let fresh = keyring
        .open_zone(
            Arc::new(super::adapter::ObjectManifestStore::new(
                Arc::clone(&inner),
                manifest_path.clone(),
            )),
            &anchor,
        )
        .await
        .unwrap();
    assert_eq!(
        fresh.manifest().newest_version(),
        1 + 2 * ROTATIONS,
        "every rotation of both nodes is in the manifest"
    );
    for (id, segment) in written_a.iter().chain(&written_b) {
        assert_eq!(
            &fresh.decrypt_segment(id, segment).unwrap()[..],
            id.as_bytes()
        );
    }

    // An encrypted store on a node whose zone handle went stale (opened
    // before another node's rotation, no wraps reserved yet) reloads by
    // itself when its first object's wrap reservation loses to it.
    let objects = Arc::new(InMemory::new());
    let stale_zone = keyring
        .open_zone(
            Arc::new(super::adapter::ObjectManifestStore::new(
                Arc::clone(&inner),
                manifest_path.clone(),
            )),
            &anchor,
        )
        .await
        .unwrap();
    let stale = EncryptedStore::new(Arc::clone(&objects), stale_zone.clone());
    zone_a.reload().await.unwrap();
    zone_a.rotate_ezk().await.unwrap();
    let before = stale_zone.manifest().newest_version();
    for i in 0..3 {
        let p = Path::from(format!("x/after-{i}"));
        stale.put(&p, b"after".to_vec().into()).await.unwrap();
        fresh.reload().await.unwrap();
        let reader = EncryptedStore::new(Arc::clone(&objects), fresh.clone());
        assert_eq!(
            &reader.get(&p).await.unwrap().bytes().await.unwrap()[..],
            b"after"
        );
    }
    assert_eq!(
        stale_zone.manifest().newest_version(),
        before + 1,
        "the store reloaded the zone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_rotations_over_in_memory() {
    racing_rotations_lose_nothing(Arc::new(InMemory::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_rotations_over_s3() {
    let Some(endpoint) = super::common::endpoint() else {
        return;
    };
    racing_rotations_lose_nothing(Arc::new(s3_store(&endpoint))).await;
}

/// A store without conditional updates refuses to hold a manifest's
/// replacement (typed), and never overwrites it blindly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_store_needs_conditional_writes() {
    use cmek::zone::ManifestStore;
    let root = tempfile::tempdir().unwrap();
    let local: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(root.path()).unwrap());
    let store = super::adapter::ObjectManifestStore::new(local, Path::from("m"));
    store.replace(None, b"first").unwrap();
    assert_eq!(store.load().unwrap().as_deref(), Some(&b"first"[..]));
    let err = store.replace(Some(b"first"), b"second").unwrap_err();
    assert!(matches!(err, cmek::Error::Misuse { .. }), "{err:?}");
    let err = store.replace(Some(b"other"), b"second").unwrap_err();
    assert!(matches!(err, cmek::Error::Conflict { .. }), "{err:?}");
    let err = store.replace(None, b"second").unwrap_err();
    assert!(matches!(err, cmek::Error::Conflict { .. }), "{err:?}");
    assert_eq!(store.load().unwrap().as_deref(), Some(&b"first"[..]));
}

/// Inside a current-thread runtime the blocking manifest store cannot
/// run: a typed error, not a hang or a panic.
#[tokio::test(flavor = "current_thread")]
async fn manifest_store_refuses_a_current_thread_runtime() {
    use cmek::zone::ManifestStore;
    let store =
        super::adapter::ObjectManifestStore::new(Arc::new(InMemory::new()), Path::from("m"));
    let err = store.load().unwrap_err();
    assert!(matches!(err, cmek::Error::Misuse { .. }), "{err:?}");
}

/// Outside any runtime it runs on its own.
#[test]
fn manifest_store_works_outside_a_runtime() {
    use cmek::zone::ManifestStore;
    let store =
        super::adapter::ObjectManifestStore::new(Arc::new(InMemory::new()), Path::from("m"));
    store.replace(None, b"one").unwrap();
    store.replace(Some(b"one"), b"two").unwrap();
    assert_eq!(store.load().unwrap().as_deref(), Some(&b"two"[..]));
}

/// The key registry's state as an object: two nodes (each its own
/// registry and store handle) adding keys at once up to the limit keep the
/// limit and lose no key.
async fn racing_registries_keep_the_limit(inner: Arc<dyn ObjectStore>) {
    use cmek::registry::KeyRegistry;
    const LIMIT: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let provider =
        Arc::new(LocalKeyProvider::create(dir.path().join("root.keys"), "local").unwrap());
    let path = Path::from(format!("registry/{}", unique()));
    let open = || {
        let store = super::adapter::ObjectManifestStore::new(Arc::clone(&inner), path.clone());
        Arc::new(KeyRegistry::open_in_with_limit(Arc::new(store), LIMIT).unwrap())
    };
    let node = |registry: Arc<KeyRegistry>, name: &'static str| {
        let provider = Arc::clone(&provider);
        tokio::spawn(async move {
            let mut added = Vec::new();
            for i in 0..LIMIT {
                let key = provider.add_key(&format!("{name}-{i}")).unwrap();
                match registry.add_key(provider.as_ref(), key.clone(), &[]).await {
                    Ok(()) => added.push(key),
                    Err(cmek::Error::LimitExceeded { .. }) => {}
                    Err(e) => panic!("{name}: {e}"),
                }
            }
            added
        })
    };
    let (a, b) = tokio::join!(node(open(), "a"), node(open(), "b"));
    let mut added: Vec<_> = a.unwrap().into_iter().chain(b.unwrap()).collect();
    added.sort();
    let mut stored: Vec<_> = open().keys().into_iter().map(|k| k.key).collect();
    stored.sort();
    assert_eq!(
        stored, added,
        "every key whose add succeeded is stored, and no other"
    );
    assert_eq!(stored.len(), LIMIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_registries_over_in_memory() {
    racing_registries_keep_the_limit(Arc::new(InMemory::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_registries_over_s3() {
    let Some(endpoint) = super::common::endpoint() else {
        return;
    };
    racing_registries_keep_the_limit(Arc::new(s3_store(&endpoint))).await;
}

/// A range read of an object read before is one GET (its opened segment is
/// kept, keyed by ETag); once the object is replaced — by the adapter, or
/// under it by the inner store — the next read opens it again and never
/// uses the old key on the new bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_opened_segments_save_a_get_and_follow_replacements() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let store = EncryptedStore::new(recorder.clone(), zone_in(dir.path(), Some(4096)).await);
    let path = Path::from("k/object");
    let first: Vec<u8> = (0..400_000u32).map(|i| (i % 241) as u8).collect();
    store.put(&path, first.clone().into()).await.unwrap();

    let before = recorder.gets();
    assert_eq!(
        &store.get_range(&path, 350_000..350_100).await.unwrap()[..],
        &first[350_000..350_100]
    );
    assert_eq!(
        recorder.gets() - before,
        2,
        "headers, then chunks (far from the start)"
    );
    assert_eq!(store.opened_segments(), 1);
    let before = recorder.gets();
    assert_eq!(
        &store.get_range(&path, 10_000..10_100).await.unwrap()[..],
        &first[10_000..10_100]
    );
    let pieces = store
        .get_ranges(&path, &[5..9, 390_000..390_010])
        .await
        .unwrap();
    assert_eq!(&pieces[1][..], &first[390_000..390_010]);
    assert_eq!(recorder.gets() - before, 2, "one GET per read: chunks only");

    // Replaced through the adapter, longer: the kept segment is stale.
    let second: Vec<u8> = (0..600_000u32).map(|i| (i % 239) as u8).collect();
    store.put(&path, second.clone().into()).await.unwrap();
    assert_eq!(
        &store.get_range(&path, 350_000..350_100).await.unwrap()[..],
        &second[350_000..350_100]
    );
    assert_eq!(
        &store.get_range(&path, 550_000..550_100).await.unwrap()[..],
        &second[550_000..550_100]
    );
    let pieces = store
        .get_ranges(&path, &[580_000..580_010, 0..1])
        .await
        .unwrap();
    assert_eq!(&pieces[0][..], &second[580_000..580_010]);

    // Swapped under the adapter for another object's bytes: refused.
    let other = Path::from("k/other");
    store.put(&other, second.clone().into()).await.unwrap();
    let swapped = store
        .inner()
        .get(&other)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    store.inner().put(&path, swapped.into()).await.unwrap();
    let err = store.get_range(&path, 350_000..350_100).await.unwrap_err();
    assert_cmek(&err, |e| matches!(e, cmek::Error::Integrity { .. }));

    // Keeping none works the same, one GET more per read.
    let other_dir = tempfile::tempdir().unwrap();
    let none = EncryptedStore::new(recorder.clone(), zone_in(other_dir.path(), None).await)
        .with_opened_segments(0);
    let p = Path::from("k/none");
    none.put(&p, first.clone().into()).await.unwrap();
    for _ in 0..2 {
        let before = recorder.gets();
        assert_eq!(&none.get_range(&p, 7..9).await.unwrap()[..], &first[7..9]);
        assert_eq!(
            recorder.gets() - before,
            1,
            "headers and chunks in one merged GET"
        );
        let before = recorder.gets();
        assert_eq!(
            &none.get_range(&p, 350_000..350_001).await.unwrap()[..],
            &first[350_000..350_001]
        );
        assert_eq!(recorder.gets() - before, 2);
    }
    assert_eq!(none.opened_segments(), 0);
}

/// A store that sends more bytes than each GET asked for: every read path
/// refuses the answer (typed), none hangs, panics or returns plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_sends_too_much_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let zone = zone_in(dir.path(), Some(4096)).await;
    let honest = EncryptedStore::new(Arc::new(InMemory::new()), zone.clone());
    let path = Path::from("lie/object");
    let data = vec![9u8; 500_000];
    honest.put(&path, data.clone().into()).await.unwrap();
    let liar = EncryptedStore::new(Liar::new(Arc::clone(honest.inner())), zone);
    let whole = match liar.get(&path).await {
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    };
    assert_cmek(&whole.unwrap_err(), |e| {
        matches!(e, cmek::Error::Malformed { .. })
    });
    for r in [0..10, 300_000..300_010, 499_990..500_000] {
        let err = liar.get_range(&path, r).await.unwrap_err();
        assert_cmek(&err, |e| matches!(e, cmek::Error::Malformed { .. }));
    }
    let err = liar
        .get_ranges(&path, &[0..10, 400_000..400_010])
        .await
        .unwrap_err();
    assert_cmek(&err, |e| matches!(e, cmek::Error::Malformed { .. }));
    let err = liar.head(&path).await.unwrap_err();
    assert_cmek(&err, |e| matches!(e, cmek::Error::Malformed { .. }));
}

/// A response cut short (a dropped connection) is transient: the adapter
/// says so, names the object and range, and the same read succeeds once
/// the store answers whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_cut_short_is_transient() {
    let dir = tempfile::tempdir().unwrap();
    let zone = zone_in(dir.path(), Some(4096)).await;
    let honest = EncryptedStore::new(Arc::new(InMemory::new()), zone.clone());
    let path = Path::from("cut/object");
    let data: Vec<u8> = (0..500_000u32).map(|i| (i % 253) as u8).collect();
    honest.put(&path, data.clone().into()).await.unwrap();
    let liar = Liar::new(Arc::clone(honest.inner()));
    let mode = Arc::clone(&liar.mode);
    let store = EncryptedStore::new(liar, zone);
    let set = |m| mode.store(m, std::sync::atomic::Ordering::SeqCst);
    // Opened (and kept) while the store answers whole.
    set(Liar::HONEST);
    assert_eq!(
        &store.get_range(&path, 0..10).await.unwrap()[..],
        &data[..10]
    );
    set(Liar::CUT);
    // One range: named. Several, fetched in one GET: the object only.
    for (err, range) in [
        (
            store.get_range(&path, 300_000..300_100).await.unwrap_err(),
            Some(300_000..300_100),
        ),
        (
            store
                .get_ranges(&path, &[100_000..100_010, 400_000..400_010])
                .await
                .unwrap_err(),
            None,
        ),
    ] {
        assert!(matches!(err, super::os::Error::Generic { .. }), "{err:?}");
        assert_eq!(cmek::object_store::is_retryable(&err), Some(true), "{err}");
        let found = cmek::object_store::ObjectError::find(&err).unwrap();
        assert_eq!(found.path(), "cut/object");
        assert_eq!(found.range(), range, "{found}");
    }
    set(Liar::HONEST);
    assert_eq!(
        &store.get_range(&path, 300_000..300_100).await.unwrap()[..],
        &data[300_000..300_100]
    );
    // Cut inside the segment's headers, on a store that has not opened the
    // object yet: transient too, for a ranged read and a whole one.
    let liar = Liar::new(Arc::clone(honest.inner()));
    liar.mode
        .store(Liar::CUT, std::sync::atomic::Ordering::SeqCst);
    let fresh = EncryptedStore::new(liar, store.zone().clone());
    let ranged = fresh.get_range(&path, 300_000..300_100).await.unwrap_err();
    let whole = match fresh.get(&path).await {
        Ok(r) => r.bytes().await.unwrap_err(),
        Err(e) => e,
    };
    for err in [ranged, whole] {
        assert_eq!(cmek::object_store::is_retryable(&err), Some(true), "{err}");
        let found = cmek::object_store::ObjectError::find(&err).unwrap();
        assert_eq!(found.path(), "cut/object");
    }
}

/// A store that lies about what it holds, as `mode` says: appends 64 KiB
/// of garbage to every GET's body ([`Liar::OVERLONG`], the default), ends
/// every body half-way ([`Liar::CUT`]), or tells the truth
/// ([`Liar::HONEST`]).
#[derive(Debug)]
struct Liar {
    inner: Arc<InMemory>,
    mode: Arc<std::sync::atomic::AtomicU8>,
}

impl Liar {
    const OVERLONG: u8 = 0;
    const CUT: u8 = 1;
    const HONEST: u8 = 2;

    fn new(inner: Arc<InMemory>) -> Self {
        Self {
            inner,
            mode: Arc::new(std::sync::atomic::AtomicU8::new(Self::OVERLONG)),
        }
    }
}

impl std::fmt::Display for Liar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Liar")
    }
}

#[async_trait::async_trait]
impl ObjectStore for Liar {
    async fn put_opts(
        &self,
        location: &Path,
        payload: super::os::PutPayload,
        opts: super::os::PutOptions,
    ) -> super::os::Result<super::os::PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: super::os::PutMultipartOptions,
    ) -> super::os::Result<Box<dyn super::os::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: super::os::GetOptions,
    ) -> super::os::Result<super::os::GetResult> {
        use futures_util::StreamExt;
        let mut r = self.inner.get_opts(location, options).await?;
        let empty = futures_util::stream::empty().boxed();
        let body =
            match std::mem::replace(&mut r.payload, super::os::GetResultPayload::Stream(empty)) {
                super::os::GetResultPayload::Stream(s) => s,
                #[allow(unreachable_patterns)]
                _ => unreachable!("InMemory streams"),
            };
        let mode = self.mode.load(std::sync::atomic::Ordering::SeqCst);
        if mode == Self::HONEST {
            r.payload = super::os::GetResultPayload::Stream(body);
        } else if mode == Self::CUT {
            let whole = r.range.end - r.range.start;
            let mut left = whole / 2;
            let half = body.map(move |piece| {
                piece.map(|mut p| {
                    let take = (p.len() as u64).min(left);
                    left -= take;
                    p.truncate(take as usize);
                    p
                })
            });
            r.payload = super::os::GetResultPayload::Stream(half.boxed());
        } else {
            let garbage =
                futures_util::stream::once(async { Ok(bytes::Bytes::from(vec![0x5a; 65_536])) });
            r.payload = super::os::GetResultPayload::Stream(body.chain(garbage).boxed());
        }
        Ok(r)
    }

    fn delete_stream(
        &self,
        locations: futures_util::stream::BoxStream<'static, super::os::Result<Path>>,
    ) -> futures_util::stream::BoxStream<'static, super::os::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> futures_util::stream::BoxStream<'static, super::os::Result<super::os::ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&Path>,
    ) -> super::os::Result<super::os::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: super::os::CopyOptions,
    ) -> super::os::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// One node rotates the zone's root key while another rotates its EZK,
/// through one manifest object: both changes land. A node that finds the
/// zone under a root its anchor does not name is refused until it is
/// handed the new anchor (out of band, as an engine's control plane
/// would) and reopens.
async fn racing_root_and_ezk_rotations_lose_nothing(inner: Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let provider =
        Arc::new(LocalKeyProvider::create(dir.path().join("root.keys"), "local").unwrap());
    let old_root = provider.add_key("old").unwrap();
    let new_root = provider.add_key("new").unwrap();
    let keyring = Keyring::new(provider.clone());
    let path = Path::from(format!("zones/{}/manifest", unique()));
    let store = || -> Arc<dyn cmek::zone::ManifestStore> {
        Arc::new(super::adapter::ObjectManifestStore::new(
            Arc::clone(&inner),
            path.clone(),
        ))
    };
    let zone_a = keyring
        .create_zone(store(), ZoneSpec::new("shared", "local", old_root))
        .await
        .unwrap();
    let anchor = zone_a.anchor();
    let zone_b = keyring.open_zone(store(), &anchor).await.unwrap();
    let before = zone_a.encrypt_segment("before", b"before").unwrap();
    let (new_anchor_tx, new_anchor_rx) = tokio::sync::oneshot::channel();

    let a = {
        let zone = zone_a.clone();
        let new_root = new_root.clone();
        tokio::spawn(async move {
            loop {
                match zone.rotate_root(new_root.clone()).await {
                    Ok(()) => break,
                    Err(cmek::Error::Conflict { .. }) => zone.reload().await.unwrap(),
                    Err(e) => panic!("a: {e}"),
                }
            }
            // b may have finished without needing it (its rotation landed
            // first); then nobody is listening.
            let _ = new_anchor_tx.send(zone.anchor());
            zone
        })
    };
    let b = {
        let keyring = Arc::clone(&keyring);
        let store = store();
        tokio::spawn(async move {
            let mut zone = zone_b;
            let mut new_anchor = Some(new_anchor_rx);
            loop {
                match zone.rotate_ezk().await {
                    Ok(_) => break,
                    Err(cmek::Error::Conflict { .. }) => match zone.reload().await {
                        Ok(()) => {}
                        Err(cmek::Error::StateRejected { .. }) => {
                            // Re-rooted elsewhere: only the new anchor opens it.
                            let anchor = new_anchor.take().unwrap().await.unwrap();
                            zone = keyring
                                .open_zone(Arc::clone(&store), &anchor)
                                .await
                                .unwrap();
                        }
                        Err(e) => panic!("b reload: {e}"),
                    },
                    Err(e) => panic!("b: {e}"),
                }
            }
            zone
        })
    };
    let (zone_a, zone_b) = (a.await.unwrap(), b.await.unwrap());
    zone_a.reload().await.unwrap();
    let fresh = keyring.open_zone(store(), &zone_a.anchor()).await.unwrap();
    assert_eq!(fresh.root(), new_root, "the root rotation landed");
    assert_eq!(
        fresh.manifest().newest_version(),
        2,
        "the EZK rotation landed"
    );
    assert_eq!(
        &fresh.decrypt_segment("before", &before).unwrap()[..],
        b"before"
    );
    // Node b's handle may predate the root rotation (if its EZK rotation
    // landed first): its next wrap reservation finds the new root, and it
    // reopens with the new anchor.
    let after = match zone_b.encrypt_segment("after", b"after") {
        Ok(s) => s,
        Err(cmek::Error::Conflict { .. } | cmek::Error::StateRejected { .. }) => {
            let reopened = keyring.open_zone(store(), &zone_a.anchor()).await.unwrap();
            reopened.encrypt_segment("after", b"after").unwrap()
        }
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        &fresh.decrypt_segment("after", &after).unwrap()[..],
        b"after"
    );
    // The old root no longer opens the zone: its anchor is refused.
    let err = keyring.open_zone(store(), &anchor).await.unwrap_err();
    assert!(matches!(err, cmek::Error::StateRejected { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_root_and_ezk_rotations_over_in_memory() {
    for _ in 0..4 {
        racing_root_and_ezk_rotations_lose_nothing(Arc::new(InMemory::new())).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_root_and_ezk_rotations_over_s3() {
    let Some(endpoint) = super::common::endpoint() else {
        return;
    };
    racing_root_and_ezk_rotations_lose_nothing(Arc::new(s3_store(&endpoint))).await;
}

/// A create-only copy longer than one part is staged beside its target
/// and moved in with the inner store's own create-only copy: it reads
/// back, a second one is refused as existing, and no staged object is
/// left either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_create_only_copies_are_staged_and_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let zone = zone_in(dir.path(), Some(4096)).await;
    let inners: Vec<Arc<dyn ObjectStore>> = vec![
        Arc::new(InMemory::new()),
        Arc::new(LocalFileSystem::new_with_prefix(root.path()).unwrap()),
    ];
    for inner in inners {
        let store = EncryptedStore::new(inner, zone.clone()).with_part_size(10_000);
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 233) as u8).collect();
        let from = Path::from("c/from");
        let to = Path::from("c/to");
        store.put(&from, data.clone().into()).await.unwrap();
        store.copy_if_not_exists(&from, &to).await.unwrap();
        assert_eq!(store.get(&to).await.unwrap().bytes().await.unwrap(), data);
        let err = store.copy_if_not_exists(&from, &to).await.unwrap_err();
        assert!(
            matches!(err, super::os::Error::AlreadyExists { .. }),
            "{err}"
        );
        let mut listed: Vec<String> = store
            .inner()
            .list(Some(&Path::from("c")))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        listed.sort();
        assert_eq!(listed, ["c/from", "c/to"], "no staged copy is left");
        store
            .rename_if_not_exists(&to, &Path::from("c/moved"))
            .await
            .unwrap();
        assert_eq!(
            store
                .get(&Path::from("c/moved"))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
            data
        );
        assert!(matches!(
            store.head(&to).await.unwrap_err(),
            super::os::Error::NotFound { .. }
        ));
    }
}

/// Objects whose path a `ChunkSizes` rule names are written in its chunk
/// size: a small read of one fetches little more than it asks for, while
/// other objects keep the zone's chunk size; listings, heads and reads
/// report every object's plaintext exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_sizes_by_path_bound_what_small_reads_fetch() {
    use cmek::object_store::{ChunkSizes, BLOCK_CHUNK_SIZE};
    use cmek::stream::Params;
    use futures_util::StreamExt;

    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let zone = zone_in(dir.path(), None).await; // 64 KiB chunks
    let store =
        EncryptedStore::new(recorder.clone(), zone.clone()).with_chunk_sizes(ChunkSizes::slatedb());
    let plain = EncryptedStore::new(recorder.clone(), zone);
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let sst = Path::from("db/compacted/01.sst");
    let manifest = Path::from("db/manifest/01.manifest");
    let big = Path::from("db/other.bin");
    store.put(&sst, data.clone().into()).await.unwrap();
    store
        .put(&manifest, data[..100_000].to_vec().into())
        .await
        .unwrap();
    plain.put(&big, data.clone().into()).await.unwrap();

    let block = Params::new(BLOCK_CHUNK_SIZE).unwrap();
    let stored = store.inner().head(&sst).await.unwrap().size;
    assert_eq!(
        stored,
        cmek::zone::SEGMENT_HEADER_LEN as u64 + block.ciphertext_len(1_000_000).unwrap()
    );
    let stored_manifest = store.inner().head(&manifest).await.unwrap().size;
    assert_eq!(
        stored_manifest,
        cmek::zone::SEGMENT_HEADER_LEN as u64 + Params::default().ciphertext_len(100_000).unwrap()
    );

    // Sizes: listed (from stored lengths, by the rules), heads, reads.
    let mut listed: Vec<(String, u64)> = store
        .list(Some(&Path::from("db")))
        .map(|m| {
            let m = m.unwrap();
            (m.location.to_string(), m.size)
        })
        .collect()
        .await;
    listed.sort();
    assert_eq!(
        listed,
        vec![
            ("db/compacted/01.sst".to_string(), 1_000_000),
            ("db/manifest/01.manifest".to_string(), 100_000),
            ("db/other.bin".to_string(), 1_000_000),
        ]
    );
    assert_eq!(store.head(&sst).await.unwrap().size, 1_000_000);

    // A 4 KiB block at an odd offset, once the object is opened: about
    // 5 KiB fetched at 1 KiB chunks, 64 KiB or more at the zone's.
    let r = 500_001..504_097;
    assert_eq!(
        &store.get_range(&sst, r.clone()).await.unwrap()[..],
        &data[500_001..504_097]
    );
    let before = recorder.fetched();
    assert_eq!(
        &store.get_range(&sst, r.clone()).await.unwrap()[..],
        &data[500_001..504_097]
    );
    let small = recorder.fetched() - before;
    assert!(
        small <= 4096 + 2 * BLOCK_CHUNK_SIZE as u64,
        "{small} bytes fetched for a 4 KiB read at 1 KiB chunks"
    );
    let _ = plain.get_range(&big, r.clone()).await.unwrap();
    let before = recorder.fetched();
    assert_eq!(
        &plain.get_range(&big, r).await.unwrap()[..],
        &data[500_001..504_097]
    );
    assert!(recorder.fetched() - before >= 64 * 1024);

    // Whole reads, multipart writes and copies take the rules too.
    assert_eq!(
        &store.get(&sst).await.unwrap().bytes().await.unwrap()[..],
        &data[..]
    );
    let mut upload = store
        .put_multipart(&Path::from("db/wal/02.sst"))
        .await
        .unwrap();
    upload
        .put_part(data[..300_000].to_vec().into())
        .await
        .unwrap();
    upload.complete().await.unwrap();
    let stored = store
        .inner()
        .head(&Path::from("db/wal/02.sst"))
        .await
        .unwrap()
        .size;
    assert_eq!(
        stored,
        cmek::zone::SEGMENT_HEADER_LEN as u64 + block.ciphertext_len(300_000).unwrap()
    );
    store
        .copy(&big, &Path::from("db/copied.sst"))
        .await
        .unwrap();
    let stored = store
        .inner()
        .head(&Path::from("db/copied.sst"))
        .await
        .unwrap()
        .size;
    assert_eq!(
        stored,
        cmek::zone::SEGMENT_HEADER_LEN as u64 + block.ciphertext_len(1_000_000).unwrap()
    );
    assert_eq!(
        &store
            .get_range(&Path::from("db/copied.sst"), 999_000..1_000_000)
            .await
            .unwrap()[..],
        &data[999_000..]
    );
}

/// A zone whose root key was revoked answers every read with
/// `PermissionDenied`, naming the object, and never as something to retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_permission_denied_and_permanent() {
    use cmek::monitor::{KeyMonitor, MonitorConfig};
    use cmek::provider::KeyProvider;

    let dir = tempfile::tempdir().unwrap();
    let provider =
        Arc::new(LocalKeyProvider::create(dir.path().join("root.keys"), "local").unwrap());
    let root = provider.add_key("root").unwrap();
    let zone = Keyring::new(provider.clone())
        .create_zone(
            Arc::new(MemoryManifestStore::new()),
            ZoneSpec::new("objects", "local", root.clone()),
        )
        .await
        .unwrap();
    let store = EncryptedStore::new(InMemory::new(), zone.clone());
    let path = Path::from("t/part-0");
    store.put(&path, vec![5u8; 10_000].into()).await.unwrap();

    let monitor = KeyMonitor::new(MonitorConfig::default());
    monitor.watch_key(root, provider.clone() as Arc<dyn KeyProvider>);
    monitor.watch_zone(&zone);
    provider.disable_key("root").unwrap();
    monitor.check_now().await;
    assert!(!zone.is_available());

    for err in [
        store.get(&path).await.unwrap_err(),
        store.get_range(&path, 10..20).await.unwrap_err(),
        store
            .put(&Path::from("t/part-1"), vec![1u8; 10].into())
            .await
            .unwrap_err(),
    ] {
        let super::os::Error::PermissionDenied { path: named, .. } = &err else {
            panic!("not PermissionDenied: {err:?}");
        };
        assert!(named.starts_with("t/part-"), "{named}");
        assert_eq!(cmek::object_store::is_retryable(&err), Some(false), "{err}");
        let found = cmek::object_store::ObjectError::find(&err).unwrap();
        assert_eq!(found.kind(), cmek::ErrorKind::KeyRevoked, "{found}");
    }
}

/// A segment written by another node after it rotated the zone's EZK names
/// a version this node's zone does not hold yet: the adapter reloads the
/// zone and reads it, instead of failing or asking the engine to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_under_a_newer_ezk_reloads_the_zone() {
    let dir = tempfile::tempdir().unwrap();
    let provider = LocalKeyProvider::create(dir.path().join("root.keys"), "local").unwrap();
    let root = provider.add_key("root").unwrap();
    let keyring = Keyring::new(Arc::new(provider));
    let manifests = Arc::new(MemoryManifestStore::new());
    let zone_a = keyring
        .create_zone(manifests.clone(), ZoneSpec::new("objects", "local", root))
        .await
        .unwrap();
    let zone_b = keyring
        .open_zone(manifests.clone(), &zone_a.anchor())
        .await
        .unwrap();
    let inner = Arc::new(InMemory::new());
    let node_a = EncryptedStore::new(inner.clone(), zone_a.clone());
    let node_b = EncryptedStore::new(inner.clone(), zone_b.clone());

    zone_b.rotate_ezk().await.unwrap();
    let path = Path::from("after-rotation");
    node_b.put(&path, vec![3u8; 70_000].into()).await.unwrap();
    assert!(zone_a.active_version() < zone_b.active_version());
    assert_eq!(
        &node_a.get_range(&path, 100..200).await.unwrap()[..],
        &[3u8; 100][..]
    );
    assert_eq!(zone_a.active_version(), zone_b.active_version());
    assert_eq!(
        node_a
            .get(&path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len(),
        70_000
    );
}

/// A zone whose manifest object is missing is named by that object's path
/// and store, not by the manifest store's debug form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_manifest_object_is_named_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let zone = zone_in(dir.path(), None).await;
    let anchor = zone.anchor();
    let provider = LocalKeyProvider::open(dir.path().join("root.keys")).unwrap();
    let keyring = Keyring::new(Arc::new(provider));
    let store = Arc::new(super::adapter::ObjectManifestStore::new(
        Arc::new(InMemory::new()),
        Path::from("zones/orders.manifest"),
    ));
    let err = keyring.open_zone(store, &anchor).await.unwrap_err();
    assert!(matches!(err, cmek::Error::NotFound { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("object zones/orders.manifest in InMemory"),
        "{text}"
    );
    assert!(!text.contains("ObjectManifestStore"), "{text}");
}
