//! Secret hygiene: no key material in any rendering the crate produces.
//!
//! A full run — create, write (one-shot, streaming, seekable), rotate,
//! rewrap, rotate the root, back up and restore (rewrap and plaintext),
//! revoke and re-enable the key under the monitor,
//! reopen, fail in every way — runs under a `tracing` subscriber that
//! records everything at TRACE level. Then every root key, EZK and DEK of
//! the run is looked for in that output and in the `Debug` and `Display`
//! of every public value and error the run produced, raw, in hex (both
//! cases) and in base64 (standard and URL-safe, at every alignment).

use std::io::{Cursor, Read, Write};
use std::sync::{Arc, Mutex};

use base64::Engine;

use crate::monitor::{KeyMonitor, MonitorConfig};
use crate::provider::{EncryptionContext, KeyProvider, LocalKeyProvider};
use crate::registry::KeyRegistry;
use crate::secret::{SecretKey, KEY_LEN};
use crate::zone::{FileManifestStore, Keyring, SegmentHeader, ZoneSpec, SEGMENT_HEADER_LEN};
use crate::{Error, KeyState};

/// Everything written through `tracing`, as bytes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The encodings a key could leak in.
fn encodings(secret: &[u8; KEY_LEN]) -> Vec<(String, Vec<u8>)> {
    let mut found = vec![
        ("raw".to_owned(), secret.to_vec()),
        ("hex".to_owned(), hex::encode(secret).into_bytes()),
        ("HEX".to_owned(), hex::encode_upper(secret).into_bytes()),
        // Debug of a byte array: "[1, 2, ...]" — the first 8 bytes.
        (
            "debug".to_owned(),
            format!("{:?}", &secret[..8])
                .trim_end_matches(']')
                .as_bytes()
                .to_vec(),
        ),
    ];
    // Inside a longer base64 text the key starts at one of three offsets
    // from a 3-byte group; its whole groups then encode the same way.
    for shift in 0..3 {
        for (name, engine) in [
            ("base64", &base64::engine::general_purpose::STANDARD_NO_PAD),
            (
                "base64url",
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ),
        ] {
            let text = engine.encode(&secret[shift..]);
            let whole = (KEY_LEN - shift) / 3 * 4;
            found.push((format!("{name}+{shift}"), text.as_bytes()[..whole].to_vec()));
        }
    }
    found
}

fn assert_absent(haystack: &[u8], what: &str, secrets: &[[u8; KEY_LEN]]) {
    for (i, secret) in secrets.iter().enumerate() {
        for (encoding, needle) in encodings(secret) {
            assert!(
                !haystack.windows(needle.len()).any(|w| w == needle),
                "secret #{i} appears {encoding}-encoded in {what}"
            );
        }
    }
}

#[tokio::test]
async fn no_key_material_in_any_output() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The process-wide default, not a scoped one: tests on other threads
    // register the same callsites, and with only a scoped subscriber a
    // callsite first seen elsewhere may stay disabled here. Other tests'
    // events land in the capture too, which only widens the search.
    tracing::subscriber::set_global_default(subscriber)
        .expect("no other test sets a global subscriber");

    let dir = tempfile::tempdir().unwrap();
    let mut rendered: Vec<String> = Vec::new();
    let mut render = |v: &dyn std::fmt::Debug| rendered.push(format!("{v:?} {v:#?}"));
    let mut errors: Vec<Error> = Vec::new();

    // Roots of trust and the registry.
    let local = Arc::new(LocalKeyProvider::create(dir.path().join("root.keys"), "local").unwrap());
    let root = local.add_key("root-1").unwrap();
    let root2 = local.add_key("root-2").unwrap();
    let registry = KeyRegistry::open(dir.path().join("registry.state")).unwrap();
    registry
        .add_key(local.as_ref(), root.clone(), &[])
        .await
        .unwrap();
    registry
        .add_key(local.as_ref(), root2.clone(), &[])
        .await
        .unwrap();
    let validation = local.validate_key(&root).await;
    render(&validation);
    render(&validation.to_string());

    // A zone and its segments, every way.
    let keyring = Keyring::new(local.clone());
    let store = Arc::new(FileManifestStore::new(dir.path().join("zone.manifest")));
    let mut spec = ZoneSpec::new("orders", "local", root.clone());
    spec.stream = crate::stream::Params::new(4096).unwrap();
    render(&spec);
    let zone = keyring.create_zone(store.clone(), spec).await.unwrap();
    registry
        .register_zone(zone.id(), "orders", "local", &root)
        .unwrap();
    let data = vec![0x5au8; 10_000];
    let one_shot = zone.encrypt_segment("seg-1", &data).unwrap();
    let mut writer = zone.segment_writer("seg-2", Vec::new()).unwrap();
    writer.write_all(&data).unwrap();
    render(&writer);
    let streamed = writer.finish().unwrap();
    let mut reader = zone.segment_reader("seg-2", &streamed[..]).unwrap();
    render(&reader);
    let mut back = Vec::new();
    reader.read_to_end(&mut back).unwrap();
    let mut seekable = zone
        .segment_seekable("seg-1", Cursor::new(&one_shot[..]))
        .unwrap();
    render(&seekable);
    seekable.read_at(5000, &mut [0u8; 100]).unwrap();
    let header = SegmentHeader::parse(&one_shot[..SEGMENT_HEADER_LEN]).unwrap();
    render(&header);
    let mut secrets = zone.secrets_for_tests(&[("seg-1", &one_shot), ("seg-2", &streamed)]);

    // Rotation, rewrap, root rotation.
    zone.rotate_ezk().await.unwrap();
    let path = dir.path().join("seg-1.bin");
    std::fs::write(&path, &one_shot).unwrap();
    render(&zone.rewrap_file("seg-1", &path).unwrap());
    zone.rotate_root(root2.clone()).await.unwrap();
    registry.set_zone_key(zone.id(), &root2).unwrap();
    let third = zone.encrypt_segment("seg-3", b"after rotation").unwrap();
    secrets.extend(zone.secrets_for_tests(&[("seg-3", &third)]));

    // A backup, and its restore into a new zone and to plaintext.
    let third_path = dir.path().join("seg-3.bin");
    std::fs::write(&third_path, &third).unwrap();
    let bundle = crate::backup::create_backup(
        &zone.manifest(),
        [("seg-1", path.clone()), ("seg-3", third_path)],
        dir.path().join("backup"),
        |p| render(p),
    )
    .unwrap();
    render(bundle.manifest());
    let restored = crate::backup::Restore::rewrap(
        bundle.dir(),
        dir.path().join("restored"),
        keyring.clone(),
        crate::backup::SourceTrust::zone(zone.id()),
        keyring.clone(),
        ZoneSpec::new("orders-restored", "local", root.clone()),
    )
    .run(|p| render(p))
    .await
    .unwrap();
    render(&restored);
    secrets.extend(restored.zone.as_ref().unwrap().secrets_for_tests(&[]));
    let plain = crate::backup::Restore::plaintext(
        bundle.dir(),
        dir.path().join("plain"),
        keyring.clone(),
        crate::backup::SourceTrust::roots([root2.clone()]),
        "local",
    )
    .run(|p| render(p))
    .await
    .unwrap();
    render(&plain);

    // Revocation and restoration under the monitor.
    let monitor = KeyMonitor::new(MonitorConfig::default());
    let mut events = monitor.subscribe();
    monitor.watch_zone(&zone);
    monitor.watch_key(root.clone(), local.clone());
    render(&monitor.check_now().await);
    local.disable_key("root-2").unwrap();
    render(&monitor.check_now().await);
    errors.push(zone.decrypt_segment("seg-3", &third).unwrap_err());
    local.enable_key("root-2").unwrap();
    render(&monitor.check_now().await);
    while let Ok(event) = events.try_recv() {
        render(&event);
        render(&event.to_string());
    }
    render(&monitor);

    // Every failure the run can produce.
    let mut tampered = third.to_vec();
    tampered[SEGMENT_HEADER_LEN + 50] ^= 1;
    errors.push(zone.decrypt_segment("seg-3", &tampered).unwrap_err());
    errors.push(zone.decrypt_segment("seg-9", &third).unwrap_err());
    errors.push(zone.decrypt_segment("seg-3", &third[..100]).unwrap_err());
    errors.push(registry.remove_key(&root2).unwrap_err());
    let ctx = EncryptionContext::new().with("cmek:purpose", "test");
    let wrapped = local
        .wrap_key(&root, &SecretKey::generate().unwrap(), &ctx)
        .await
        .unwrap();
    render(&wrapped);
    render(&ctx);
    errors.push(
        local
            .unwrap_key(&root2, &wrapped, &EncryptionContext::new())
            .await
            .unwrap_err(),
    );
    local.schedule_key_deletion("root-1").unwrap();
    errors.push(
        local
            .wrap_key(&root, &SecretKey::generate().unwrap(), &ctx)
            .await
            .unwrap_err(),
    );
    assert!(matches!(
        errors[0],
        Error::ZoneUnavailable {
            state: KeyState::Disabled,
            ..
        }
    ));

    // A reopen after a restart.
    let reopened = keyring
        .open_zone(store.clone(), &zone.anchor())
        .await
        .unwrap();
    render(&reopened);
    render(&reopened.manifest());
    render(&keyring);
    render(&local);
    render(&registry);
    render(&registry.keys());
    render(&registry.zones());
    render(&SecretKey::generate().unwrap());
    secrets.push(local.material_for_tests("root-1").unwrap());
    secrets.push(local.material_for_tests("root-2").unwrap());

    for e in &errors {
        let mut chain = format!("{e} | {e:?}");
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            chain.push_str(&format!(" | {s} | {s:?}"));
            source = s.source();
        }
        rendered.push(chain);
    }

    let log = captured.0.lock().unwrap().clone();
    let log_text = String::from_utf8_lossy(&log);
    // The run logged what it did (the check is not vacuous).
    for expected in [
        "created zone",
        "rotated EZK",
        "rotated root key",
        "key status changed",
        "zone availability changed",
        "registered root key",
        "restore",
    ] {
        assert!(
            log_text.contains(expected),
            "no {expected:?} in the log:\n{log_text}"
        );
    }
    assert!(secrets.len() >= 7, "{}", secrets.len());
    assert_absent(&log, "the tracing output", &secrets);
    assert_absent(
        rendered.join("\n").as_bytes(),
        "Debug/Display output",
        &secrets,
    );
}

#[test]
fn the_search_finds_keys_in_every_encoding() {
    // The search itself must be able to fail: plant a key each way.
    let key = [0xa7u8; KEY_LEN];
    let mut varied = key;
    for (i, b) in varied.iter_mut().enumerate() {
        *b = b.wrapping_mul(i as u8 + 3);
    }
    for secret in [key, varied] {
        for prefix in ["", "x", "xy"] {
            let planted = [
                [prefix.as_bytes(), &secret[..]].concat(),
                format!("{prefix}{}", hex::encode(secret)).into_bytes(),
                format!("{prefix}{}", hex::encode_upper(secret)).into_bytes(),
                format!("{secret:?}").into_bytes(),
                base64::engine::general_purpose::STANDARD
                    .encode([prefix.as_bytes(), &secret[..], b"tail"].concat())
                    .into_bytes(),
                base64::engine::general_purpose::URL_SAFE
                    .encode([prefix.as_bytes(), &secret[..]].concat())
                    .into_bytes(),
            ];
            for haystack in planted {
                let found = std::panic::catch_unwind(|| assert_absent(&haystack, "t", &[secret]));
                assert!(
                    found.is_err(),
                    "missed {:?}",
                    String::from_utf8_lossy(&haystack)
                );
            }
        }
    }
}
