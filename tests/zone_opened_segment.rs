//! `Zone::open_segment`: one opened segment shared by many threads, reads
//! that fetch and authenticate only the chunks they touch, a truncated or
//! modified segment refused, ranged-GET plans in segment offsets, and what
//! a rewrap or a retirement does to a segment already open.
#![cfg(feature = "testing")]

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use cmek::stream::{Params, ReadAt};
use cmek::testing::MockProvider;
use cmek::zone::{Keyring, MemoryManifestStore};
use cmek::zone::{
    OpenedSegment, RetireConfirmation, Zone, ZoneSpec, SEGMENT_HEADER_LEN, SEGMENT_PREFIX_LEN,
};
use cmek::Error;

const CHUNK: usize = 4096;

async fn zone() -> Zone {
    let kms = Arc::new(MockProvider::new());
    let root = kms.add_key("root");
    Keyring::new(kms)
        .create_zone(
            Arc::new(MemoryManifestStore::new()),
            ZoneSpec {
                stream: Params::new(CHUNK).unwrap(),
                ..ZoneSpec::new("tables", "mock-region-1", root)
            },
        )
        .await
        .unwrap()
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0])
        .collect()
}

fn open(zone: &Zone, id: &str, segment: &[u8]) -> cmek::Result<OpenedSegment> {
    zone.open_segment(id, &segment[..SEGMENT_PREFIX_LEN], segment.len() as u64)
}

/// A source that counts the bytes read from it.
struct Counting<'a> {
    inner: &'a [u8],
    bytes: AtomicU64,
}

impl ReadAt for Counting<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let n = self.inner.read_at(buf, offset)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A small xorshift, so each thread's lookups are reproducible.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn an_opened_segment_is_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<OpenedSegment>();
    shareable::<cmek::stream::RangeDecryptor>();
}

#[tokio::test]
async fn one_opened_segment_serves_four_threads_at_once() {
    let zone = zone().await;
    let pt = plaintext(1_000_003);
    let segment = zone.encrypt_segment("t/1.sst", &pt).unwrap();
    // The same segment as a file (pread) and as shared bytes.
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&segment).unwrap();
    let file = Arc::new(file);
    let opened = Arc::new(open(&zone, "t/1.sst", &segment).unwrap());
    assert_eq!(opened.plaintext_len(), pt.len() as u64);
    assert_eq!(opened.segment_len(), segment.len() as u64);
    assert_eq!(opened.params().chunk_size(), CHUNK);

    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (opened, file, segment, pt) = (
                Arc::clone(&opened),
                Arc::clone(&file),
                segment.clone(),
                pt.clone(),
            );
            std::thread::spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t + 1));
                let mut buf = vec![0u8; 3 * CHUNK];
                for i in 0..300 {
                    // Lengths from nothing to three chunks, some reaching
                    // or starting past the end.
                    let len = rng.below(buf.len() as u64 + 1) as usize;
                    let at = rng.below(pt.len() as u64 + 2 * CHUNK as u64);
                    let n = if i % 2 == 0 {
                        opened.read_at(&*file, at, &mut buf[..len]).unwrap()
                    } else {
                        opened.read_at(&segment, at, &mut buf[..len]).unwrap()
                    };
                    let from = (at as usize).min(pt.len());
                    let to = (at as usize + len).min(pt.len());
                    assert_eq!(n, to - from, "thread {t} read {len} at {at}");
                    assert_eq!(&buf[..n], &pt[from..to], "thread {t} read {len} at {at}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(opened.authenticated_len(&*file).unwrap(), pt.len() as u64);
}

#[tokio::test]
async fn a_read_fetches_only_the_chunks_it_touches() {
    let zone = zone().await;
    let pt = plaintext(100 * CHUNK);
    let segment = zone.encrypt_segment("t/2.sst", &pt).unwrap();
    let opened = open(&zone, "t/2.sst", &segment).unwrap();
    let source = Counting {
        inner: &segment,
        bytes: AtomicU64::new(0),
    };
    // 100 bytes inside one chunk, then 100 bytes across a boundary.
    let first = Params::new(CHUNK).unwrap().first_chunk_plaintext_len() as u64;
    for (at, chunks) in [(first + 10 * (CHUNK as u64 - 16) + 7, 1), (first - 50, 2)] {
        source.bytes.store(0, Ordering::Relaxed);
        let mut buf = [0u8; 100];
        assert_eq!(opened.read_at(&source, at, &mut buf).unwrap(), 100);
        assert_eq!(&buf[..], &pt[at as usize..at as usize + 100]);
        let read = source.bytes.load(Ordering::Relaxed);
        assert!(
            read <= chunks * CHUNK as u64,
            "{read} bytes for {chunks} chunk(s)"
        );
    }
}

#[tokio::test]
async fn a_modified_chunk_is_an_integrity_error_for_the_reads_that_touch_it() {
    let zone = zone().await;
    let pt = plaintext(20 * CHUNK);
    let mut segment = zone.encrypt_segment("t/3.sst", &pt).unwrap().to_vec();
    // A bit of chunk 5's ciphertext (segment offset = header + 5 chunks).
    segment[SEGMENT_HEADER_LEN + 5 * CHUNK + 100] ^= 0x20;
    let opened = open(&zone, "t/3.sst", &segment).unwrap();
    let p = opened.params();
    let chunk5 = p.plaintext_start(5);
    let mut buf = vec![0xaau8; 300];
    for at in [chunk5, chunk5 + 1000, chunk5 - 150] {
        let e = opened.read_at(&segment, at, &mut buf).unwrap_err();
        assert!(matches!(e, Error::Integrity { .. }), "at {at}: {e}");
    }
    // Nothing of the bad chunk reached the buffer: past the authentic
    // bytes of chunk 4, the failed read left what was there (or zeros).
    assert_eq!(&buf[..150], &pt[chunk5 as usize - 150..chunk5 as usize]);
    assert!(
        buf[150..].iter().all(|&b| b == 0xaa) || buf[150..].iter().all(|&b| b == 0),
        "no forged plaintext"
    );
    // Chunks around it still read.
    let n = opened.read_at(&segment, chunk5 - 300, &mut buf).unwrap();
    assert_eq!(&buf[..n], &pt[chunk5 as usize - 300..chunk5 as usize]);
    let after = p.plaintext_start(6);
    assert_eq!(opened.read_at(&segment, after, &mut buf).unwrap(), 300);
    // The wrong segment id does not open at all.
    assert!(matches!(
        open(&zone, "t/other.sst", &segment),
        Err(Error::Integrity { .. })
    ));
}

#[tokio::test]
async fn a_truncated_segment_is_an_error_never_a_short_read() {
    let zone = zone().await;
    let pt = plaintext(10 * CHUNK);
    let segment = zone.encrypt_segment("t/4.sst", &pt).unwrap();
    let p = Params::new(CHUNK).unwrap();
    // Cut at a chunk boundary, opened with the cut length: what is left
    // parses as a shorter segment, but its last chunk is not marked last.
    let cut = SEGMENT_HEADER_LEN + 6 * CHUNK;
    let short = &segment[..cut];
    let opened = open(&zone, "t/4.sst", short).unwrap();
    let claimed = opened.plaintext_len();
    assert!(claimed < pt.len() as u64);
    // Reads short of the cut end still return authentic bytes ...
    let mut buf = [0u8; 1000];
    assert_eq!(opened.read_at(short, 5000, &mut buf).unwrap(), 1000);
    assert_eq!(&buf[..], &pt[5000..6000]);
    // ... but every read reaching the end, and the length, fail.
    for at in [claimed - 10, claimed, claimed + 5000] {
        let e = opened.read_at(short, at, &mut buf).unwrap_err();
        assert!(matches!(e, Error::Integrity { .. }), "at {at}: {e}");
    }
    assert!(matches!(
        opened.authenticated_len(short),
        Err(Error::Integrity { .. })
    ));
    // Cut inside a chunk: a length no segment has, or one whose last chunk
    // does not authenticate.
    for cut in [SEGMENT_HEADER_LEN + 6 * CHUNK + 5, segment.len() - 1] {
        let short = &segment[..cut];
        match open(&zone, "t/4.sst", short) {
            Err(e) => assert!(matches!(e, Error::Malformed { .. }), "cut {cut}: {e}"),
            Ok(opened) => {
                let e = opened
                    .read_at(short, 0, &mut vec![0u8; pt.len()])
                    .unwrap_err();
                assert!(matches!(e, Error::Integrity { .. }), "cut {cut}: {e}");
            }
        }
    }
    // Opened with the full length, read from a source that was cut since.
    let opened = open(&zone, "t/4.sst", &segment).unwrap();
    let e = opened
        .read_at(short, p.plaintext_start(8), &mut buf)
        .unwrap_err();
    assert!(matches!(e, Error::Malformed { .. }), "{e}");
    // A prefix or a length too short to be a segment.
    assert!(matches!(
        zone.open_segment("t/4.sst", &segment[..SEGMENT_PREFIX_LEN - 1], 1 << 20),
        Err(Error::Malformed { .. })
    ));
    assert!(matches!(
        zone.open_segment("t/4.sst", &segment[..SEGMENT_PREFIX_LEN], 100),
        Err(Error::Malformed { .. })
    ));
}

#[tokio::test]
async fn ranged_get_plans_are_in_segment_offsets() {
    let zone = zone().await;
    let pt = plaintext(30 * CHUNK + 123);
    let segment: Bytes = zone.encrypt_segment("t/5.sst", &pt).unwrap();
    let opened = open(&zone, "t/5.sst", &segment).unwrap();
    let len = pt.len() as u64;
    for range in [
        0..1,
        5000..5001,
        10_000..50_000,
        len - 10..len,
        0..len,
        len..len + 9,
    ] {
        let plan = opened.plan(range.clone()).unwrap();
        assert_eq!(
            plan.header,
            SEGMENT_HEADER_LEN as u64..SEGMENT_PREFIX_LEN as u64
        );
        assert_eq!(plan.ciphertext_len, segment.len() as u64);
        let fetched = &segment[plan.chunks.start as usize..plan.chunks.end as usize];
        let got = opened.decrypt_range(&plan, fetched).unwrap();
        let (from, to) = (range.start.min(len) as usize, range.end.min(len) as usize);
        assert_eq!(&got[..], &pt[from..to], "{range:?}");
    }
    // A plan of the bare stream (offsets without the header) is refused.
    let plan = opened.plan(5000..6000).unwrap();
    let mut unshifted = plan.clone();
    unshifted.chunks =
        plan.chunks.start - SEGMENT_HEADER_LEN as u64..plan.chunks.end - SEGMENT_HEADER_LEN as u64;
    let fetched = &segment[unshifted.chunks.start as usize..unshifted.chunks.end as usize];
    assert!(matches!(
        opened.decrypt_range(&unshifted, fetched),
        Err(Error::Misuse { .. })
    ));
    // Fetched bytes from the wrong place do not authenticate.
    assert!(matches!(
        opened.decrypt_range(&plan, fetched),
        Err(Error::Integrity { .. })
    ));
}

#[tokio::test]
async fn an_open_segment_outlives_its_rewrap_and_its_versions_retirement() {
    let zone = zone().await;
    let pt = plaintext(9 * CHUNK);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("6.sst");
    std::fs::write(&path, zone.encrypt_segment("t/6.sst", &pt).unwrap()).unwrap();
    let before = std::fs::read(&path).unwrap();
    let opened = open(&zone, "t/6.sst", &before).unwrap();

    zone.rotate_ezk().await.unwrap();
    zone.rewrap_file("t/6.sst", &path).unwrap();
    zone.retire_ezk(1, RetireConfirmation::NoSegmentUsesIt)
        .await
        .unwrap();

    // The body did not change, and the open segment holds its stream key.
    let file = std::fs::File::open(&path).unwrap();
    let mut buf = vec![0u8; pt.len()];
    assert_eq!(opened.read_at(&file, 0, &mut buf).unwrap(), pt.len());
    assert_eq!(buf, pt);
    // The old header no longer opens; the rewrapped one does.
    assert!(matches!(
        open(&zone, "t/6.sst", &before),
        Err(Error::UnknownEzkVersion {
            version: 1,
            newest: 2
        })
    ));
    let after = std::fs::read(&path).unwrap();
    let reopened = open(&zone, "t/6.sst", &after).unwrap();
    assert_eq!(reopened.read_at(&file, 100, &mut buf[..10]).unwrap(), 10);
    assert_eq!(&buf[..10], &pt[100..110]);
}

/// A source that says it is `claimed` bytes long, whatever it holds.
struct Claims<'a> {
    inner: &'a [u8],
    claimed: Option<u64>,
}

impl ReadAt for Claims<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.inner.read_at(buf, offset)
    }

    fn source_len(&self) -> std::io::Result<Option<u64>> {
        Ok(self.claimed)
    }
}

/// `open_segment_from` reads the prefix and the length itself, from a file
/// (with std's `FileExt` in scope too) or a buffer, and refuses sources too
/// short, shorter than they claim, or without a length.
#[tokio::test]
async fn open_segment_from_a_file_or_buffer_reads_prefix_and_length_itself() {
    #[cfg(unix)]
    #[allow(unused_imports)]
    use std::os::unix::fs::FileExt;

    let zone = zone().await;
    let pt = plaintext(9 * CHUNK + 77);
    let segment = zone.encrypt_segment("t/from.sst", &pt).unwrap();
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&segment).unwrap();
    let file = Arc::new(file);

    let mut want = vec![0u8; 5000];
    let from_bytes = zone.open_segment_from("t/from.sst", &segment).unwrap();
    let from_file = zone.open_segment_from("t/from.sst", &file).unwrap();
    for opened in [&from_bytes, &from_file] {
        assert_eq!(opened.segment_len(), segment.len() as u64);
        assert_eq!(opened.plaintext_len(), pt.len() as u64);
    }
    let mut got = vec![0u8; 5000];
    from_file.read_at(&*file, 30_000, &mut got).unwrap();
    from_bytes.read_at(&segment, 30_000, &mut want).unwrap();
    assert_eq!(got, want);
    assert_eq!(&got[..], &pt[30_000..35_000]);
    assert_eq!(
        from_file.authenticated_len(&*file).unwrap(),
        pt.len() as u64
    );
    // Another id: the header does not open as it.
    assert!(matches!(
        zone.open_segment_from("t/other.sst", &*file),
        Err(Error::Integrity { .. })
    ));

    // Too short to be a segment, whatever the length says.
    for len in [0, 1, SEGMENT_HEADER_LEN, SEGMENT_PREFIX_LEN - 1] {
        let cut = &segment[..len];
        let e = zone.open_segment_from("t/from.sst", cut).unwrap_err();
        assert!(matches!(e, Error::Malformed { .. }), "{len}: {e}");
    }
    // Shorter than the source claims: refused, not read past.
    let liar = Claims {
        inner: &segment[..100],
        claimed: Some(segment.len() as u64),
    };
    let e = zone.open_segment_from("t/from.sst", &liar).unwrap_err();
    assert!(
        matches!(&e, Error::Malformed { reason, .. } if reason.contains("shorter")),
        "{e}"
    );
    // A source that cannot tell its length: the caller gives it.
    let unsized_source = Claims {
        inner: &segment,
        claimed: None,
    };
    let e = zone
        .open_segment_from("t/from.sst", &unsized_source)
        .unwrap_err();
    assert!(matches!(e, Error::Misuse { .. }), "{e}");
    assert_eq!(e.kind(), cmek::ErrorKind::Bug);
}
