//! The cipher loop of `cmek encrypt` and `decrypt`: whole stream segments
//! sealed or opened straight from the reading thread's buffers into the
//! writing thread's, through the library's `SegmentSealer` and
//! `SegmentOpener`.
//!
//! The reading thread fills each chunk to a length that ends on a segment
//! boundary (however short the reads of a pipe are), so segments do not
//! straddle chunks; the loop does not rely on it, though, and gathers one
//! that does in a small carry buffer. Every other byte is touched once on
//! this thread: no copy in, no copy out. A segment is sealed as the last
//! one only once it is known that no chunk follows, which is why the loop
//! looks one chunk ahead.

use std::io::Write;

use cmek::stream::{SegmentOpener, SegmentSealer};

use crate::exit::{CliResult, Context};
use crate::pipe::{Chunks, Sink, BUF_LEN};

/// What to name in an error: the operation, the input and the output.
pub struct Names<'a> {
    pub what: &'a str,
    pub input: &'a str,
    pub output: &'a str,
}

/// Chunk lengths that end on segment boundaries: the first chunk holds
/// `first` (a shorter first segment) plus whole later segments of `later`
/// bytes, every other chunk whole segments only, each about [`BUF_LEN`].
pub fn chunk_lengths(first: usize, later: usize) -> (usize, usize) {
    let per_chunk = (BUF_LEN / later).max(1);
    (first + (per_chunk - 1) * later, per_chunk * later)
}

/// One direction of the cipher, one stream segment at a time.
pub trait Segments {
    /// Input bytes of the next segment unless it is the last.
    fn record_len(&self) -> usize;
    /// Output room a segment of `input` bytes needs.
    fn output_len(input: usize) -> usize;
    /// Seals or opens one segment into `out`; returns the bytes written.
    fn apply(&mut self, input: &[u8], last: bool, out: &mut [u8]) -> cmek::Result<usize>;
    /// True once the last segment is done.
    fn is_finished(&self) -> bool;
}

impl Segments for SegmentSealer {
    fn record_len(&self) -> usize {
        self.plaintext_len()
    }
    fn output_len(input: usize) -> usize {
        input + SegmentSealer::OVERHEAD
    }
    fn apply(&mut self, input: &[u8], last: bool, out: &mut [u8]) -> cmek::Result<usize> {
        self.seal(input, last, out)
    }
    fn is_finished(&self) -> bool {
        SegmentSealer::is_finished(self)
    }
}

impl Segments for SegmentOpener {
    fn record_len(&self) -> usize {
        self.sealed_len()
    }
    fn output_len(input: usize) -> usize {
        input.saturating_sub(SegmentSealer::OVERHEAD)
    }
    fn apply(&mut self, input: &[u8], last: bool, out: &mut [u8]) -> cmek::Result<usize> {
        self.open(input, last, out)
    }
    fn is_finished(&self) -> bool {
        SegmentOpener::is_finished(self)
    }
}

/// Cuts the input into records of the next segment's length (the last one
/// shorter) and hands each to `emit` with its last flag. A record is last
/// only when nothing follows it; one split across chunks is gathered in
/// `carry` first.
struct Records {
    carry: Vec<u8>,
}

impl Records {
    fn new() -> Self {
        Self { carry: Vec::new() }
    }

    fn feed<S: Segments>(
        &mut self,
        mut data: &[u8],
        more: bool,
        segments: &mut S,
        emit: &mut dyn FnMut(&mut S, &[u8], bool) -> CliResult,
    ) -> CliResult {
        if !self.carry.is_empty() {
            let take = (segments.record_len() - self.carry.len()).min(data.len());
            self.carry.extend_from_slice(&data[..take]);
            data = &data[take..];
            let end = data.is_empty() && !more;
            if self.carry.len() == segments.record_len() || end {
                emit(segments, &self.carry, end)?;
                self.carry.clear();
            }
        }
        while !data.is_empty() {
            let len = segments.record_len();
            if data.len() < len && more {
                self.carry.extend_from_slice(data);
                break;
            }
            let take = data.len().min(len);
            emit(segments, &data[..take], take == data.len() && !more)?;
            data = &data[take..];
        }
        Ok(())
    }
}

/// Seals or opens everything `chunks` yields into `sink`, looking one chunk
/// ahead to know which segment is the last.
pub fn run<S: Segments, W: Write + Send + 'static>(
    segments: &mut S,
    chunks: &mut Chunks,
    sink: &mut Sink<W>,
    names: &Names<'_>,
    mut progress: impl FnMut(u64),
) -> CliResult {
    let mut emit = |segments: &mut S, input: &[u8], last: bool| -> CliResult {
        let room = sink
            .reserve(S::output_len(input.len()))
            .context(names.output)?;
        let n = segments.apply(input, last, room).context(names.what)?;
        sink.commit(n).context(names.output)
    };
    let mut records = Records::new();
    let mut next = chunks.next_chunk().context(names.input)?;
    while let Some(chunk) = next.take() {
        next = chunks.next_chunk().context(names.input)?;
        records.feed(chunk.data(), next.is_some(), segments, &mut emit)?;
        progress(chunk.data().len() as u64);
        chunks.recycle(chunk);
    }
    if !segments.is_finished() {
        // No chunk at all. Encrypting, that is an empty input: one empty
        // segment, marked last. Decrypting, a body missing after the
        // headers: opening nothing as the last segment fails and says so.
        emit(segments, &[], true)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in with fixed-length records, recording what it is given.
    struct Fixed {
        len: usize,
        seen: Vec<(Vec<u8>, bool)>,
    }

    impl Segments for Fixed {
        fn record_len(&self) -> usize {
            self.len
        }
        fn output_len(input: usize) -> usize {
            input
        }
        fn apply(&mut self, input: &[u8], last: bool, _: &mut [u8]) -> cmek::Result<usize> {
            self.seen.push((input.to_vec(), last));
            Ok(0)
        }
        fn is_finished(&self) -> bool {
            self.seen.last().is_some_and(|(_, last)| *last)
        }
    }

    /// Cuts `data` with `Records` fed in the given piece sizes.
    fn cut(data: &[u8], pieces: &[usize], record_len: usize) -> Vec<(Vec<u8>, bool)> {
        let mut records = Records::new();
        let mut fixed = Fixed {
            len: record_len,
            seen: Vec::new(),
        };
        let mut rest = data;
        let mut i = 0;
        while !rest.is_empty() {
            let n = pieces[i % pieces.len()].min(rest.len());
            let more = n < rest.len();
            records
                .feed(&rest[..n], more, &mut fixed, &mut |f, r, last| {
                    f.apply(r, last, &mut []).map(|_| ()).map_err(Into::into)
                })
                .unwrap();
            rest = &rest[n..];
            i += 1;
        }
        fixed.seen
    }

    #[test]
    fn records_are_whole_and_only_the_final_one_is_last() {
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        for pieces in [&[10_000][..], &[1000], &[999, 1], &[7, 3000], &[1]] {
            for len in [1, 999, 1000, 1001, 10_000] {
                let records = cut(&data[..len], pieces, 1000);
                let joined: Vec<u8> = records.iter().flat_map(|(r, _)| r.clone()).collect();
                assert_eq!(joined, &data[..len], "{pieces:?} {len}");
                let (last, init) = records.split_last().unwrap();
                assert!(last.1, "the final record is last");
                assert!(!last.0.is_empty() && last.0.len() <= 1000);
                for (r, l) in init {
                    assert_eq!(r.len(), 1000);
                    assert!(!l);
                }
            }
        }
    }

    #[test]
    fn chunks_hold_whole_segments() {
        let (first, then) = chunk_lengths(65_480, 65_520);
        assert_eq!(first, 65_480 + 3 * 65_520);
        assert_eq!(then, 4 * 65_520);
        assert!(then <= BUF_LEN);
        // Segments larger than a buffer: one per chunk.
        assert_eq!(chunk_lengths(1 << 20, 1 << 20), (1 << 20, 1 << 20));
    }
}
