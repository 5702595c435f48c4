//! `Zone::async_segment_writer` and `Zone::async_segment_reader`: round
//! trips over a `Vec`, a duplex pipe and a file at every chunk boundary
//! and in writes of any size, the same bytes as the blocking calls read
//! and write, modified or cut segments refused with typed errors, and a
//! writer dropped before its shutdown leaving nothing that decrypts.
#![cfg(all(feature = "tokio", feature = "testing"))]

use std::io::{Read, Write};
use std::sync::Arc;

use cmek::stream::{error_of, Params};
use cmek::testing::MockProvider;
use cmek::zone::{Keyring, MemoryManifestStore, Zone, ZoneSpec, SEGMENT_HEADER_LEN};
use cmek::{Error, IntegrityFailure};
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const CHUNK: usize = 4096;

async fn zone_named(name: &str) -> Zone {
    let kms = Arc::new(MockProvider::new());
    let root = kms.add_key("root");
    Keyring::new(kms)
        .create_zone(
            Arc::new(MemoryManifestStore::new()),
            ZoneSpec {
                stream: Params::new(CHUNK).unwrap(),
                ..ZoneSpec::new(name, "mock-region-1", root)
            },
        )
        .await
        .unwrap()
}

async fn zone() -> Zone {
    zone_named("objects").await
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[1])
        .collect()
}

/// Plaintext bytes in the first chunk and in each later one.
fn capacities() -> (usize, usize) {
    let p = Params::new(CHUNK).unwrap();
    (p.first_chunk_plaintext_len(), p.plaintext_chunk_len())
}

/// Lengths at and around every kind of chunk boundary.
fn boundary_lengths() -> Vec<usize> {
    let (first, cap) = capacities();
    vec![
        0,
        1,
        first - 1,
        first,
        first + 1,
        first + cap - 1,
        first + cap,
        first + cap + 1,
        first + 5 * cap + 123,
    ]
}

/// A small xorshift: reproducible write and read sizes.
struct Sizes(u64);

impl Sizes {
    fn next(&mut self, max: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        1 + (self.0 % max as u64) as usize
    }
}

/// Writes `pt` as segment `id` into `sink` in writes of random sizes (up
/// to three chunks) and shuts down.
async fn write_segment<W: AsyncWrite + Unpin>(zone: &Zone, id: &str, sink: W, pt: &[u8]) -> W {
    let mut w = zone.async_segment_writer(id, sink).unwrap();
    let mut sizes = Sizes(pt.len() as u64 + 17);
    let mut at = 0;
    while at < pt.len() {
        let end = (at + sizes.next(3 * CHUNK)).min(pt.len());
        w.write_all(&pt[at..end]).await.unwrap();
        at = end;
    }
    w.shutdown().await.unwrap();
    w.into_inner()
}

/// Reads segment `id` from `source` in reads of random sizes.
async fn read_segment<R: AsyncRead + Unpin>(zone: &Zone, id: &str, source: R) -> Vec<u8> {
    let mut r = zone.async_segment_reader(id, source).await.unwrap();
    let mut sizes = Sizes(99);
    let mut out = Vec::new();
    loop {
        let mut buf = vec![0u8; sizes.next(2 * CHUNK)];
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn round_trips_over_a_vec_at_every_chunk_boundary() {
    let zone = zone().await;
    for len in boundary_lengths() {
        let pt = plaintext(len);
        let segment = write_segment(&zone, "v", Vec::new(), &pt).await;
        assert_eq!(
            segment.len() as u64,
            zone.encrypted_len(len as u64).unwrap(),
            "{len} bytes"
        );
        assert_eq!(read_segment(&zone, "v", &segment[..]).await, pt, "{len}");
    }
}

#[tokio::test]
async fn round_trips_through_a_duplex_pipe() {
    let zone = zone().await;
    for len in boundary_lengths() {
        let pt = plaintext(len);
        // A pipe smaller than a chunk: the writer waits on the reader.
        let (client, server) = tokio::io::duplex(1000);
        let writer = {
            let zone = zone.clone();
            let pt = pt.clone();
            tokio::spawn(async move { drop(write_segment(&zone, "d", client, &pt).await) })
        };
        assert_eq!(read_segment(&zone, "d", server).await, pt, "{len} bytes");
        writer.await.unwrap();
    }
}

#[tokio::test]
async fn round_trips_through_a_file() {
    let zone = zone().await;
    let dir = tempfile::tempdir().unwrap();
    for len in boundary_lengths() {
        let pt = plaintext(len);
        let path = dir.path().join(format!("{len}.seg"));
        let file = tokio::fs::File::create(&path).await.unwrap();
        write_segment(&zone, "f", file, &pt)
            .await
            .sync_all()
            .await
            .unwrap();
        let file = tokio::fs::File::open(&path).await.unwrap();
        assert_eq!(read_segment(&zone, "f", file).await, pt, "{len} bytes");
        // The blocking reader reads the same file.
        let mut back = Vec::new();
        zone.segment_reader("f", std::fs::File::open(&path).unwrap())
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, pt);
    }
}

#[tokio::test]
async fn each_side_reads_what_the_other_writes() {
    let zone = zone().await;
    for len in boundary_lengths() {
        let pt = plaintext(len);

        // Async writer → the blocking whole-segment and streaming reads.
        let segment = write_segment(&zone, "a", Vec::new(), &pt).await;
        assert_eq!(&zone.decrypt_segment("a", &segment).unwrap()[..], &pt[..]);
        let mut back = Vec::new();
        zone.segment_reader("a", &segment[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, pt);

        // The blocking whole-segment and streaming writes → async reader.
        let whole = zone.encrypt_segment("b", &pt).unwrap();
        assert_eq!(read_segment(&zone, "b", &whole[..]).await, pt);
        let mut w = zone.segment_writer("c", Vec::new()).unwrap();
        w.write_all(&pt).unwrap();
        let streamed = w.finish().unwrap();
        assert_eq!(read_segment(&zone, "c", &streamed[..]).await, pt);
    }
}

/// Reads segment `id` to its end with the async reader; the error's
/// `Error`, whether it came from opening the header or from the body.
async fn async_error(zone: &Zone, id: &str, segment: &[u8]) -> Error {
    let mut r = match zone.async_segment_reader(id, segment).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    let mut out = Vec::new();
    let e = r.read_to_end(&mut out).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    let inner = error_of(&e).expect("carries the cmek error").to_string();
    // `?` into a cmek::Result keeps the variant.
    let recovered = Error::from(e);
    assert_eq!(recovered.to_string(), inner);
    recovered
}

#[tokio::test]
async fn a_modified_or_cut_segment_fails_with_a_typed_error() {
    let zone = zone().await;
    let (first, cap) = capacities();
    let pt = plaintext(first + 3 * cap + 50);
    let segment = write_segment(&zone, "t", Vec::new(), &pt).await;
    let body = SEGMENT_HEADER_LEN;

    // A flipped bit in the stream header, in each chunk and in each tag.
    for at in [
        body + 5,
        body + 100,
        body + CHUNK - 1,
        body + CHUNK + 7,
        body + 3 * CHUNK + 2,
        segment.len() - 1,
    ] {
        let mut bad = segment.clone();
        bad[at] ^= 0x10;
        let e = async_error(&zone, "t", &bad).await;
        assert!(
            matches!(e, Error::Integrity { .. } | Error::Malformed { .. }),
            "byte {at}: {e:?}"
        );
    }

    // Cut at each chunk boundary, inside a chunk, or lengthened.
    let mut cuts: Vec<Vec<u8>> = (1..=3)
        .map(|i| segment[..body + i * CHUNK].to_vec())
        .collect();
    cuts.push(segment[..segment.len() - 1].to_vec());
    cuts.push(segment[..body + CHUNK + 100].to_vec());
    cuts.push(segment[..body + 20].to_vec());
    let mut longer = segment.clone();
    longer.push(0);
    cuts.push(longer);
    for bad in &cuts {
        let e = async_error(&zone, "t", bad).await;
        assert!(
            matches!(e, Error::Integrity { .. } | Error::Malformed { .. }),
            "{} bytes: {e:?}",
            bad.len()
        );
    }

    // The header: another segment's id, a modified or cut header, another
    // zone's segment. These fail when the reader is opened.
    assert!(matches!(
        zone.async_segment_reader("other", &segment[..]).await,
        Err(Error::Integrity { .. })
    ));
    let mut bad = segment.clone();
    bad[SEGMENT_HEADER_LEN - 3] ^= 1;
    assert!(zone.async_segment_reader("t", &bad[..]).await.is_err());
    assert!(matches!(
        zone.async_segment_reader("t", &segment[..SEGMENT_HEADER_LEN - 1])
            .await,
        Err(Error::Malformed { .. })
    ));
    let elsewhere = zone_named("elsewhere").await;
    assert!(matches!(
        elsewhere.async_segment_reader("t", &segment[..]).await,
        Err(Error::Integrity {
            reason: IntegrityFailure::ForeignZone { .. },
            ..
        })
    ));
}

#[tokio::test]
async fn a_writer_dropped_without_shutdown_leaves_nothing_that_decrypts() {
    let zone = zone().await;
    let (first, cap) = capacities();

    // Nothing at all is written before the first poll.
    let w = zone.async_segment_writer("n", Vec::new()).unwrap();
    assert!(w.get_ref().is_empty());

    for len in [0, 1, first, first + 1, first + cap, first + 3 * cap + 5] {
        for flush in [false, true] {
            let (client, mut server) = tokio::io::duplex(1000);
            let writer = {
                let zone = zone.clone();
                tokio::spawn(async move {
                    let mut w = zone.async_segment_writer("n", client).unwrap();
                    w.write_all(&plaintext(len)).await.unwrap();
                    if flush {
                        w.flush().await.unwrap();
                    }
                    // Dropped without shutdown.
                })
            };
            let mut written = Vec::new();
            server.read_to_end(&mut written).await.unwrap();
            writer.await.unwrap();
            assert!(
                zone.decrypt_segment("n", &written).is_err(),
                "{len} bytes, flush {flush}: {} written",
                written.len()
            );
            let blocking = zone
                .segment_reader("n", &written[..])
                .and_then(|mut r| Ok(r.read_to_end(&mut Vec::new())?));
            assert!(blocking.is_err());
            if written.len() >= SEGMENT_HEADER_LEN {
                let e = async_error(&zone, "n", &written).await;
                assert!(
                    matches!(e, Error::Integrity { .. } | Error::Malformed { .. }),
                    "{e:?}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Any length, any sequence of write and read sizes: the async writer's
    /// segment reads back through the async reader and is the one the
    /// blocking calls read.
    #[test]
    fn writes_and_reads_of_any_size_round_trip(
        len in 0usize..6 * CHUNK,
        writes in proptest::collection::vec(1usize..3 * CHUNK, 1..10),
        reads in proptest::collection::vec(1usize..2 * CHUNK, 1..10),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let pt = plaintext(len);
        let (segment, back) = rt.block_on(async {
            let zone = zone().await;
            let mut w = zone.async_segment_writer("p", Vec::new()).unwrap();
            let mut at = 0;
            for &n in writes.iter().cycle() {
                if at == pt.len() {
                    break;
                }
                let end = (at + n).min(pt.len());
                w.write_all(&pt[at..end]).await.unwrap();
                at = end;
            }
            w.shutdown().await.unwrap();
            let segment = w.into_inner();

            let mut r = zone.async_segment_reader("p", &segment[..]).await.unwrap();
            let mut back = Vec::new();
            for &n in reads.iter().cycle() {
                let mut buf = vec![0u8; n];
                let got = r.read(&mut buf).await.unwrap();
                if got == 0 {
                    break;
                }
                back.extend_from_slice(&buf[..got]);
            }
            assert_eq!(&zone.decrypt_segment("p", &segment).unwrap()[..], &pt[..]);
            (segment, back)
        });
        prop_assert_eq!(back, pt);
        prop_assert!(segment.len() >= SEGMENT_HEADER_LEN);
    }
}
