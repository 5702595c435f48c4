//! [`ReadAt`]: positional reads through a shared reference, the I/O that
//! [`RangeDecryptor::read_at`](super::RangeDecryptor::read_at) and
//! [`OpenedSegment::read_at`](crate::zone::OpenedSegment::read_at) do.
//!
//! A `Read + Seek` source has one cursor, so it cannot serve two lookups at
//! once; a positional read names its offset and leaves no state behind, so
//! one open file or one buffer serves any number of threads. This module
//! owns that trait and its implementations for files and in-memory
//! buffers; it must not decrypt.

use std::io;
use std::sync::Arc;

use bytes::Bytes;

/// A source of bytes read at explicit offsets through `&self`, so that
/// many threads can read one source at once.
///
/// Implemented for [`std::fs::File`] (`pread` on Unix, `seek_read` on
/// Windows), for in-memory buffers (`[u8]`, `Vec<u8>`, [`Bytes`]), and
/// through `&T`, `Box<T>` and `Arc<T>`. Implement it for anything else that
/// reads at an offset (a memory map, a cache of blocks).
///
/// ```
/// use cmek::stream::ReadAt;
/// let data = b"positional".to_vec();
/// let mut buf = [0u8; 4];
/// data.read_exact_at(&mut buf, 3)?;
/// assert_eq!(&buf, b"itio");
/// assert_eq!(data.read_at(&mut buf, 8)?, 2); // short at the end
/// assert_eq!(data.read_at(&mut buf, 99)?, 0);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// cmek's calls take any `ReadAt` source without the trait in scope:
/// import it only to call its methods yourself. On Unix, std's
/// `std::os::unix::fs::FileExt` gives `File` methods of the same names,
/// so with both traits imported `file.read_exact_at(..)` is ambiguous
/// (error E0034); name the trait in the call instead:
///
/// ```
/// # #[cfg(unix)] {
/// use std::os::unix::fs::FileExt;
/// use cmek::stream::ReadAt;
///
/// let mut file = tempfile::tempfile()?;
/// std::io::Write::write_all(&mut file, b"positional")?;
/// let mut buf = [0u8; 4];
/// ReadAt::read_exact_at(&file, &mut buf, 3)?; // cmek's
/// FileExt::read_exact_at(&file, &mut buf, 3)?; // std's: the same bytes
/// assert_eq!(&buf, b"itio");
/// assert_eq!(ReadAt::source_len(&file)?, Some(10));
/// # }
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait ReadAt {
    /// Reads bytes starting at `offset` into `buf` and returns how many
    /// it read: fewer than `buf.len()` only at the end of the source or
    /// after a partial read, 0 at or past the end.
    ///
    /// # Errors
    /// Whatever the source reports.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Fills `buf` from `offset`, retrying partial and interrupted reads.
    ///
    /// # Errors
    /// [`io::ErrorKind::UnexpectedEof`] if the source ends first (what
    /// `buf` then holds is unspecified); any other error of
    /// [`read_at`](Self::read_at).
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the source ended before the requested bytes",
                    ))
                }
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The source's length in bytes, if it knows it: a file's size, a
    /// buffer's length. [`Zone::open_segment_from`](crate::zone::Zone::open_segment_from)
    /// needs it to find a segment's end. The default is `None`: a source
    /// that cannot tell (its length is then given to
    /// [`Zone::open_segment`](crate::zone::Zone::open_segment)).
    ///
    /// # Errors
    /// Whatever the source reports (a file's metadata call).
    fn source_len(&self) -> io::Result<Option<u64>> {
        Ok(None)
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Some(rest) = usize::try_from(offset).ok().and_then(|at| self.get(at..)) else {
            return Ok(0);
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }

    fn source_len(&self) -> io::Result<Option<u64>> {
        Ok(Some(self.len() as u64))
    }
}

impl ReadAt for Vec<u8> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.as_slice().read_at(buf, offset)
    }

    fn source_len(&self) -> io::Result<Option<u64>> {
        self.as_slice().source_len()
    }
}

impl ReadAt for Bytes {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.as_ref().read_at(buf, offset)
    }

    fn source_len(&self) -> io::Result<Option<u64>> {
        self.as_ref().source_len()
    }
}

/// `pread`: the file's cursor does not move, and threads read at once.
#[cfg(unix)]
impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }

    /// The file's size now (`fstat`).
    fn source_len(&self) -> io::Result<Option<u64>> {
        Ok(Some(self.metadata()?.len()))
    }
}

/// `seek_read`: safe from many threads at once, but it moves the file's
/// cursor, so do not mix it with `Read` on the same handle.
#[cfg(windows)]
impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::windows::fs::FileExt::seek_read(self, buf, offset)
    }

    /// The file's size now.
    fn source_len(&self) -> io::Result<Option<u64>> {
        Ok(Some(self.metadata()?.len()))
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        (**self).read_at(buf, offset)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }

    fn source_len(&self) -> io::Result<Option<u64>> {
        (**self).source_len()
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Box<T> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        (**self).read_at(buf, offset)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }

    fn source_len(&self) -> io::Result<Option<u64>> {
        (**self).source_len()
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Arc<T> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        (**self).read_at(buf, offset)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }

    fn source_len(&self) -> io::Result<Option<u64>> {
        (**self).source_len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Reads at most 3 bytes per call, and is interrupted every other call.
    struct Dribble {
        data: Vec<u8>,
        calls: std::sync::atomic::AtomicUsize,
    }

    impl ReadAt for Dribble {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            use std::sync::atomic::Ordering;
            if self.calls.fetch_add(1, Ordering::Relaxed) % 2 == 1 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(3);
            self.data.read_at(&mut buf[..n], offset)
        }
    }

    fn every_source(data: &[u8]) -> Vec<Box<dyn ReadAt>> {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(data).unwrap();
        vec![
            Box::new(data.to_vec()),
            Box::new(Bytes::copy_from_slice(data)),
            Box::new(Arc::new(data.to_vec())),
            Box::new(Arc::<[u8]>::from(data)),
            Box::new(file),
            Box::new(Dribble {
                data: data.to_vec(),
                calls: 0.into(),
            }),
        ]
    }

    #[test]
    fn every_source_reads_the_same_bytes_and_reports_the_end() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        for (i, source) in every_source(&data).into_iter().enumerate() {
            let mut buf = [0u8; 100];
            source.read_exact_at(&mut buf, 250).unwrap();
            assert_eq!(&buf[..], &data[250..350], "source {i}");
            let e = source.read_exact_at(&mut buf, 950).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "source {i}");
            source.read_exact_at(&mut buf[..0], 5000).unwrap();
            // One read, retried only when interrupted.
            let read_once = |at: u64| loop {
                match source.read_at(&mut [0u8; 1], at) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => break other.unwrap(),
                }
            };
            let len = source.source_len().unwrap();
            // Every source but the one without a length of its own.
            assert_eq!(len, (i < 5).then_some(1000), "source {i}");
            assert_eq!(read_once(1000), 0, "source {i}");
            assert_eq!(read_once(1 << 40), 0, "source {i}");
            assert_eq!(read_once(999), 1, "source {i}");
        }
        // Offsets past what a `usize` holds are past the end of a buffer.
        assert_eq!(data.read_at(&mut [0u8; 1], u64::MAX).unwrap(), 0);
    }

    #[test]
    fn a_file_serves_threads_at_once_without_a_cursor() {
        let data: Vec<u8> = (0..1 << 16).map(|i: u32| (i % 251) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        let file = Arc::new(file);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (file, data) = (&file, &data);
                s.spawn(move || {
                    let mut buf = [0u8; 512];
                    for i in 0..200u64 {
                        let at = (i * 1031 + t * 4099) % (data.len() as u64 - 512);
                        file.read_exact_at(&mut buf, at).unwrap();
                        assert_eq!(&buf[..], &data[at as usize..at as usize + 512]);
                    }
                });
            }
        });
    }
}
