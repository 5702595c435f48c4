//! Quickstart on the embedded default: a local key file as the root of trust.
//!
//! Creates a root key, an encryption zone under it, writes a few segments to
//! files, reads them back, rotates the zone key, rewraps the old segments,
//! reopens the zone from its manifest, and prints how many times the key
//! provider was called — never on the data path.
//!
//! `cargo run --example quickstart [DIR]` — without an argument everything
//! lives in a temporary directory that is removed at exit.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use cmek::provider::LocalKeyProvider;
use cmek::zone::{FileManifestStore, Keyring, SegmentHeader, ZoneSpec};
use cmek::{EncryptionContext, Error, KeyProvider, KeyRef, KeyState, SecretKey, WrappedKey};

/// Counts calls to the provider it wraps, to show where the KMS is used.
#[derive(Debug)]
struct Counted<P> {
    inner: P,
    calls: AtomicU64,
}

#[async_trait]
impl<P: KeyProvider> KeyProvider for Counted<P> {
    fn kind(&self) -> &str {
        self.inner.kind()
    }
    fn key_ref(&self, key_id: &str) -> KeyRef {
        self.inner.key_ref(key_id)
    }
    async fn wrap_key(
        &self,
        root: &KeyRef,
        key: &SecretKey,
        ctx: &EncryptionContext,
    ) -> cmek::Result<WrappedKey> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.wrap_key(root, key, ctx).await
    }
    async fn unwrap_key(
        &self,
        root: &KeyRef,
        w: &WrappedKey,
        ctx: &EncryptionContext,
    ) -> cmek::Result<SecretKey> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.unwrap_key(root, w, ctx).await
    }
    async fn describe_key(&self, root: &KeyRef) -> cmek::Result<KeyState> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.describe_key(root).await
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scratch = tempfile::tempdir()?;
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .map_or_else(|| scratch.path().to_path_buf(), PathBuf::from);
    std::fs::create_dir_all(&dir)?;

    // 1. The root of trust: a local key file (0600) holding one root key.
    let local = LocalKeyProvider::open_or_create(dir.join("root.keys"), "local")?;
    let root = local.get_or_add_key("root-1")?;
    println!("root key        {root} in {}", local.path().display());
    let provider = Arc::new(Counted {
        inner: local,
        calls: AtomicU64::new(0),
    });
    let keyring = Keyring::new(provider.clone());

    // 2. A zone: its EZK is wrapped by the root key, its manifest persisted.
    let manifest_path = dir.join(format!("orders-{}.manifest", std::process::id()));
    let store = Arc::new(FileManifestStore::new(&manifest_path));
    let zone = keyring
        .create_zone(
            store.clone(),
            ZoneSpec::new("orders", "local", root.clone()),
        )
        .await?;
    println!(
        "zone            {} ({}), EZK v{}",
        zone.id(),
        manifest_path.display(),
        zone.active_version()
    );
    let calls_after_setup = provider.calls.load(Ordering::Relaxed);

    // 3. Segments: each gets its own DEK, wrapped by the EZK into its header.
    let mut files = Vec::new();
    for i in 0..3 {
        let id = format!("orders/segment-{i:04}");
        let plaintext = format!("rows of segment {i} ").repeat(1000 * (i + 1));
        let path = dir.join(format!("segment-{i:04}.cmek"));
        std::fs::write(&path, zone.encrypt_segment(&id, plaintext.as_bytes())?)?;
        println!(
            "wrote           {id}: {} plaintext bytes -> {}",
            plaintext.len(),
            path.display()
        );
        files.push((id, path, plaintext));
    }
    for (id, path, plaintext) in &files {
        assert_eq!(
            zone.decrypt_segment(id, &std::fs::read(path)?)?,
            plaintext.as_bytes()
        );
    }
    println!("read back       3 segments, bytes equal");
    let data_path_calls = provider.calls.load(Ordering::Relaxed) - calls_after_setup;

    // 4. A segment under the wrong id does not open: ids are bound in.
    let first = std::fs::read(&files[0].1)?;
    match zone.decrypt_segment("orders/segment-9999", &first) {
        Err(e @ Error::Integrity { .. }) => println!("wrong id        refused: {e}"),
        other => return Err(format!("expected an integrity failure, got {other:?}").into()),
    }

    // 5. Rotate the EZK, then rewrap the old segments' headers (bodies untouched).
    let v2 = zone.rotate_ezk().await?;
    let summary = zone.rewrap_files(
        files.iter().map(|(id, path, _)| (id.clone(), path.clone())),
        |p| println!("rewrap          {}/{} {}", p.done, p.total, p.segment_id),
    );
    println!(
        "rotated         EZK v{v2}; rewrapped {} segments",
        summary.rewrapped
    );
    for (_, path, _) in &files {
        assert_eq!(
            SegmentHeader::parse(&std::fs::read(path)?)?.ezk_version(),
            v2
        );
    }

    // 6. Reopen from the manifest, as after a restart: one call per EZK version.
    let before = provider.calls.load(Ordering::Relaxed);
    // The anchor (zone id, root key, manifest generation) is what the
    // engine keeps outside the manifest's storage: it refuses a manifest
    // put back or swapped there.
    let reopened = keyring.open_zone(store, &zone.anchor()).await?;
    println!(
        "reopened        {} EZK versions with {} provider calls",
        reopened.manifest().ezk_versions().count(),
        provider.calls.load(Ordering::Relaxed) - before
    );
    for (id, path, plaintext) in &files {
        assert_eq!(
            reopened.decrypt_segment(id, &std::fs::read(path)?)?,
            plaintext.as_bytes()
        );
    }

    println!(
        "provider calls  {} in all; {} while writing and reading segments",
        provider.calls.load(Ordering::Relaxed),
        data_path_calls
    );
    std::fs::remove_file(&manifest_path)?;
    println!("ok");
    Ok(())
}
