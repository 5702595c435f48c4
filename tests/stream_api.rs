//! Behaviour of the stream API beyond round trips: unfinished writers,
//! authenticated lengths, range plans, bounded work per random read,
//! threads, and the async adapters.

mod one_shot;

use std::io::{Cursor, Read, Seek, SeekFrom, Write};

use cmek::stream::{self, DecryptingReader, EncryptingWriter, Params, SeekableReader, Threads};
use cmek::{Error, SecretKey};

fn key() -> SecretKey {
    SecretKey::from_slice(&[9; 32]).unwrap()
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 253) as u8).collect()
}

#[test]
fn writer_output_equals_one_shot_layout_and_decrypts() {
    let p = Params::new(4096).unwrap();
    let pt = data(50_000);
    let mut w = EncryptingWriter::new(Vec::new(), &key(), b"ad", p).unwrap();
    for chunk in pt.chunks(1000) {
        w.write_all(chunk).unwrap();
    }
    let ct = w.finish().unwrap();
    assert_eq!(ct.len() as u64, p.ciphertext_len(pt.len() as u64).unwrap());
    assert_eq!(
        &one_shot::decrypt(p, &key(), b"ad", &ct, Threads::One).unwrap()[..],
        &pt[..]
    );
}

#[test]
fn writer_dropped_without_finish_leaves_nothing_that_decrypts() {
    let p = Params::new(4096).unwrap();
    for n in [0usize, 1, 4040, 4041, 8120, 8121, 20_000] {
        let mut sink = Vec::new();
        {
            let mut w = EncryptingWriter::new(&mut sink, &key(), b"ad", p).unwrap();
            w.write_all(&data(n)).unwrap();
            w.flush().unwrap();
            // Dropped here, without finish().
        }
        let e = one_shot::decrypt(p, &key(), b"ad", &sink, Threads::One).unwrap_err();
        assert!(
            matches!(e, Error::Integrity { .. } | Error::Malformed { .. }),
            "{n}: {e}"
        );
        let mut out = Vec::new();
        let e = DecryptingReader::new(&sink[..], &key(), b"ad", p)
            .read_to_end(&mut out)
            .unwrap_err();
        assert!(stream::error_of(&e).is_some(), "{n}: {e}");
    }
}

#[test]
fn writer_reports_inner_failures_and_stays_failed() {
    struct Failing(usize);
    impl Write for Failing {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("disk full"));
            }
            let n = b.len().min(self.0);
            self.0 -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let p = Params::new(4096).unwrap();
    let mut w = EncryptingWriter::new(Failing(5000), &key(), b"", p).unwrap();
    let e = w.write_all(&data(20_000)).unwrap_err();
    assert_eq!(e.to_string(), "disk full");
    assert!(w.write(b"more").is_err());
    assert!(matches!(w.finish(), Err(Error::Io { .. })));
}

#[test]
fn seeking_from_the_end_authenticates_the_last_chunk() {
    let p = Params::new(4096).unwrap();
    let pt = data(3 * 4096);
    let ct = one_shot::encrypt(p, &key(), b"", &pt, Threads::One).unwrap();
    let mut r = SeekableReader::new(Cursor::new(&ct[..]), &key(), b"", p).unwrap();
    assert_eq!(r.chunks_decrypted(), 0);
    assert_eq!(r.seek(SeekFrom::End(-10)).unwrap(), pt.len() as u64 - 10);
    assert_eq!(r.chunks_decrypted(), 1, "the last chunk was opened");
    let mut tail = Vec::new();
    r.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, &pt[pt.len() - 10..]);

    // Cut at a chunk boundary: the length looks valid but is not.
    let cut = 2 * 4096;
    assert!(p.plaintext_len(cut as u64).is_ok());
    let mut r = SeekableReader::new(Cursor::new(&ct[..cut]), &key(), b"", p).unwrap();
    let e = r.seek(SeekFrom::End(0)).unwrap_err();
    assert!(
        matches!(stream::error_of(&e), Some(Error::Integrity { .. })),
        "{e}"
    );
    assert!(matches!(r.len(), Err(Error::Integrity { .. })));
    // Reading at or past the claimed end must not report a clean EOF either.
    let mut buf = [0u8; 16];
    assert!(r
        .read_at(p.plaintext_len(cut as u64).unwrap(), &mut buf)
        .is_err());
    assert!(r.read_at(1 << 40, &mut buf).is_err());
    // The authentic part is still readable at random.
    assert_eq!(r.read_at(100, &mut buf).unwrap(), 16);
    assert_eq!(&buf, &pt[100..116]);
}

#[test]
fn seekable_reader_starts_at_the_inner_position() {
    let p = Params::new(4096).unwrap();
    let pt = data(10_000);
    let ct = one_shot::encrypt(p, &key(), b"", &pt, Threads::One).unwrap();
    let mut file = b"prefix of another format".to_vec();
    let skip = file.len() as u64;
    file.extend_from_slice(&ct);
    let mut cur = Cursor::new(file);
    cur.seek(SeekFrom::Start(skip)).unwrap();
    let mut r = SeekableReader::new(cur, &key(), b"", p).unwrap();
    assert_eq!(r.len().unwrap(), pt.len() as u64);
    let mut buf = vec![0u8; 5000];
    r.read_exact_at_checked(4000, &mut buf, &pt);
}

trait ReadAtCheck {
    fn read_exact_at_checked(&mut self, at: u64, buf: &mut [u8], pt: &[u8]);
}
impl<R: Read + Seek> ReadAtCheck for SeekableReader<R> {
    fn read_exact_at_checked(&mut self, at: u64, buf: &mut [u8], pt: &[u8]) {
        let n = self.read_at(at, buf).unwrap();
        assert_eq!(n, buf.len());
        assert_eq!(buf, &pt[at as usize..at as usize + n]);
    }
}

/// A `Read + Seek` that counts the bytes fetched through it.
struct Counting<R> {
    inner: R,
    bytes: u64,
}
impl<R: Read> Read for Counting<R> {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(b)?;
        self.bytes += n as u64;
        Ok(n)
    }
}
impl<R: Seek> Seek for Counting<R> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(to)
    }
}

#[test]
fn a_random_4k_read_opens_at_most_two_chunks() {
    for seg in [4096usize, 65536] {
        let p = Params::new(seg).unwrap();
        let pt = data(16 << 20);
        let ct = one_shot::encrypt(p, &key(), b"", &pt, Threads::Auto).unwrap();
        let src = Counting {
            inner: Cursor::new(&ct[..]),
            bytes: 0,
        };
        let mut r = SeekableReader::new(src, &key(), b"", p).unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut buf = [0u8; 4096];
        for _ in 0..200 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = state % (pt.len() as u64 - 4096);
            let before_chunks = r.chunks_decrypted();
            let fetched_before = r.get_ref().bytes;
            assert_eq!(r.read_at(at, &mut buf).unwrap(), 4096);
            assert_eq!(&buf[..], &pt[at as usize..at as usize + 4096]);
            let opened = r.chunks_decrypted() - before_chunks;
            assert!(opened <= 2, "opened {opened} chunks");
            let fetched = r.get_ref().bytes - fetched_before;
            assert!(fetched <= 2 * seg as u64, "fetched {fetched} bytes");
        }
    }
}

#[test]
fn range_plans_fetch_only_the_touched_chunks() {
    let p = Params::new(4096).unwrap();
    let pt = data(100_000);
    let ct = one_shot::encrypt(p, &key(), b"obj", &pt, Threads::One).unwrap();
    let len = ct.len() as u64;
    let dec = stream::RangeDecryptor::new(&key(), b"obj", p, &ct[..40], len).unwrap();
    let cases = [
        (0u64, 0u64),
        (0, 1),
        (4039, 4041),
        (4040, 4040 + 4080),
        (50_000, 54_096),
        (99_990, 100_000),
        (99_990, 200_000),
        (100_000, 100_000),
        (150_000, 150_001),
        (5, 5),
    ];
    for (s, e) in cases {
        let plan = p.ciphertext_range(s..e, len).unwrap();
        assert_eq!(plan, dec.plan(s..e).unwrap());
        assert_eq!(plan.header, 0..40);
        let (cs, ce) = (s.min(pt.len() as u64), e.min(pt.len() as u64));
        assert_eq!(plan.plaintext, cs..ce);
        let touched = (plan.chunks.end - plan.chunks.start).div_ceil(4096);
        let needed = if cs < ce {
            (ce - cs).div_ceil(4080) + 1
        } else {
            1
        };
        assert!(touched <= needed, "{s}..{e}: {touched} chunks");
        let fetched = &ct[plan.chunks.start as usize..plan.chunks.end as usize];
        let got = dec.decrypt(&plan, fetched).unwrap();
        assert_eq!(&got[..], &pt[cs as usize..ce as usize], "{s}..{e}");
    }
    // Past the end, the plan covers the last chunk so the end is proven.
    let plan = p.ciphertext_range(200_000..300_000, len).unwrap();
    assert_eq!(plan.chunks.end, len);
    // A reversed range, a forged plan and a short fetch are refused.
    assert!(matches!(
        p.ciphertext_range(std::ops::Range { start: 10, end: 5 }, len),
        Err(Error::Misuse { .. })
    ));
    let mut forged = dec.plan(0..10).unwrap();
    forged.first_chunk = 1;
    assert!(matches!(
        dec.decrypt(&forged, &ct[40..4096]),
        Err(Error::Misuse { .. })
    ));
    let plan = dec.plan(0..10).unwrap();
    assert!(matches!(
        dec.decrypt(&plan, &ct[40..4000]),
        Err(Error::Malformed { .. })
    ));
    assert!(matches!(
        p.ciphertext_range(0..1, 4096 + 10),
        Err(Error::Malformed { .. })
    ));
}

#[test]
fn threaded_one_shot_matches_single_threaded() {
    let p = Params::new(4096).unwrap();
    let pt = data((6 << 20) + 12_345);
    for threads in [
        Threads::One,
        Threads::Auto,
        Threads::AtMost(4.try_into().unwrap()),
    ] {
        let ct = one_shot::encrypt(p, &key(), b"t", &pt, threads).unwrap();
        for t2 in [Threads::One, Threads::AtMost(3.try_into().unwrap())] {
            assert_eq!(
                &one_shot::decrypt(p, &key(), b"t", &ct, t2).unwrap()[..],
                &pt[..]
            );
        }
        // A bad chunk anywhere fails a threaded decrypt and leaves no
        // plaintext in the caller's buffer.
        let mut bad = ct.to_vec();
        let at = bad.len() * 3 / 4;
        bad[at] ^= 1;
        let mut out = vec![0u8; pt.len()];
        let e = stream::decrypt_into(
            &key(),
            b"t",
            p,
            &bad,
            &mut out,
            Threads::AtMost(4.try_into().unwrap()),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Integrity { .. }));
        assert!(out.iter().all(|&b| b == 0));
    }
    let mut small = vec![0u8; 10];
    assert!(matches!(
        stream::encrypt_into(&key(), b"", p, b"abc", &mut small, Threads::One),
        Err(Error::Misuse { .. })
    ));
}

#[test]
fn default_entry_points_round_trip() {
    let pt = data(300_000);
    let ct = stream::encrypt(&key(), b"x", &pt).unwrap();
    assert_eq!(
        ct.len() as u64,
        Params::default().ciphertext_len(pt.len() as u64).unwrap()
    );
    assert_eq!(&stream::decrypt(&key(), b"x", &ct).unwrap()[..], &pt[..]);
    assert!(matches!(
        stream::decrypt(&key(), b"y", &ct),
        Err(Error::Integrity { .. })
    ));
}

#[cfg(feature = "tokio")]
mod async_adapters {
    use super::*;
    use cmek::stream::{AsyncDecryptingReader, AsyncEncryptingWriter};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn async_round_trip_matches_blocking_format() {
        let p = Params::new(4096).unwrap();
        for n in [0usize, 1, 4040, 4041, 8120, 8121, 50_000] {
            let pt = data(n);
            let mut w = AsyncEncryptingWriter::new(Vec::new(), &key(), b"a", p).unwrap();
            for chunk in pt.chunks(3000) {
                w.write_all(chunk).await.unwrap();
            }
            w.shutdown().await.unwrap();
            let ct = w.into_inner();
            assert_eq!(
                &one_shot::decrypt(p, &key(), b"a", &ct, Threads::One).unwrap()[..],
                &pt[..]
            );
            let mut r = AsyncDecryptingReader::new(&ct[..], &key(), b"a", p);
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, pt);
        }
    }

    #[tokio::test]
    async fn async_writer_without_shutdown_does_not_decrypt() {
        let p = Params::new(4096).unwrap();
        let (client, mut server) = tokio::io::duplex(1024);
        let writer = tokio::spawn(async move {
            let mut w = AsyncEncryptingWriter::new(client, &key(), b"a", p).unwrap();
            w.write_all(&data(10_000)).await.unwrap();
            w.flush().await.unwrap();
            // Dropped without shutdown.
        });
        let mut ct = Vec::new();
        server.read_to_end(&mut ct).await.unwrap();
        writer.await.unwrap();
        assert!(one_shot::decrypt(p, &key(), b"a", &ct, Threads::One).is_err());
        let mut r = AsyncDecryptingReader::new(&ct[..], &key(), b"a", p);
        let e = r.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert!(stream::error_of(&e).is_some());
    }

    #[tokio::test]
    async fn async_reader_rejects_tampering() {
        let p = Params::new(4096).unwrap();
        let pt = data(10_000);
        let mut ct = one_shot::encrypt(p, &key(), b"a", &pt, Threads::One)
            .unwrap()
            .to_vec();
        ct[5000] ^= 4;
        let mut r = AsyncDecryptingReader::new(&ct[..], &key(), b"a", p);
        let mut got = Vec::new();
        let e = r.read_to_end(&mut got).await.unwrap_err();
        assert!(matches!(
            stream::error_of(&e),
            Some(Error::Integrity { .. })
        ));
        assert_eq!(got, &pt[..p.first_chunk_plaintext_len()]);
    }
}
