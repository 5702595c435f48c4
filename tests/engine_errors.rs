//! Errors as a storage engine sees them: its own functions return
//! `cmek::Result` and use `?` on the stream adapters' `Read`/`Write`
//! errors, then decide what to do from `Error::kind`.

use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use cmek::provider::LocalKeyProvider;
use cmek::zone::{Keyring, MemoryManifestStore, Zone, ZoneSpec, SEGMENT_HEADER_LEN};
use cmek::{Error, ErrorKind, IntegrityFailure};

async fn zone(dir: &tempfile::TempDir) -> Zone {
    let local = LocalKeyProvider::create(dir.path().join("keys"), "local").unwrap();
    let root = local.add_key("root").unwrap();
    Keyring::new(Arc::new(local))
        .create_zone(
            Arc::new(MemoryManifestStore::new()),
            ZoneSpec::new("orders", "local", root),
        )
        .await
        .unwrap()
}

/// An engine's read path: everything through `?`.
fn read_segment(zone: &Zone, id: &str, stored: &[u8]) -> cmek::Result<Vec<u8>> {
    let mut r = zone.segment_reader(id, stored)?;
    let mut plain = Vec::new();
    r.read_to_end(&mut plain)?;
    Ok(plain)
}

/// An engine's ranged read: seek, then read exactly.
fn read_range(zone: &Zone, id: &str, stored: &[u8], at: u64, len: usize) -> cmek::Result<Vec<u8>> {
    let mut r = zone.segment_seekable(id, Cursor::new(stored))?;
    r.seek(SeekFrom::Start(at))?;
    let mut out = vec![0u8; len];
    r.read_exact(&mut out)?;
    Ok(out)
}

/// An engine's write path into a sink it owns.
fn write_segment<W: Write>(zone: &Zone, id: &str, plain: &[u8], sink: W) -> cmek::Result<W> {
    let mut w = zone.segment_writer(id, sink)?;
    w.write_all(plain)?;
    w.finish()
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

#[tokio::test]
async fn a_tampered_body_read_through_question_mark_is_an_integrity_failure() {
    let dir = tempfile::tempdir().unwrap();
    let zone = zone(&dir).await;
    let plain = data(300_000);
    let stored = zone.encrypt_segment("orders/1", &plain).unwrap();
    assert_eq!(read_segment(&zone, "orders/1", &stored).unwrap(), plain);

    // A bit flipped deep in the body: the header opens, a later chunk
    // does not authenticate inside `read_to_end`.
    let mut tampered = stored.to_vec();
    let at = tampered.len() - 1000;
    tampered[at] ^= 0x01;
    for err in [
        read_segment(&zone, "orders/1", &tampered).unwrap_err(),
        read_range(&zone, "orders/1", &tampered, 290_000, 5000).unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                Error::Integrity {
                    reason: IntegrityFailure::Tampered,
                    ..
                }
            ),
            "not an I/O error: {err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(!err.is_transient());
    }

    // Cut at a chunk boundary or inside one: corrupt either way.
    for cut in [SEGMENT_HEADER_LEN + 40 + 65_536, stored.len() - 1] {
        let err = read_segment(&zone, "orders/1", &stored[..cut]).unwrap_err();
        assert!(
            matches!(err, Error::Integrity { .. } | Error::Malformed { .. }),
            "cut at {cut}: {err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::Corrupt, "cut at {cut}");
    }
}

/// A sink whose writes time out.
#[derive(Debug)]
struct SlowDisk;

impl Write for SlowDisk {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the disk did not answer",
        ))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn an_io_failure_of_the_engines_own_sink_stays_io() {
    let dir = tempfile::tempdir().unwrap();
    let zone = zone(&dir).await;
    let err = write_segment(&zone, "orders/2", &data(100_000), SlowDisk).unwrap_err();
    assert!(
        matches!(&err, Error::Io { source, .. } if source.kind() == io::ErrorKind::TimedOut),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Retry);
    let stored = write_segment(&zone, "orders/2", &data(100_000), Vec::new()).unwrap();
    assert_eq!(
        read_segment(&zone, "orders/2", &stored).unwrap(),
        data(100_000)
    );
}
