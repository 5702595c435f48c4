//! The cipher loop of `cmek encrypt` and `decrypt`: whole stream chunks
//! sealed or opened straight from the reading thread's buffers into the
//! writing thread's, through the library's `ChunkSealer` and
//! `ChunkOpener`.
//!
//! The reading thread fills each batch to a length that ends on a chunk
//! boundary (however short the reads of a pipe are), so chunks do not
//! straddle batches; the loop does not rely on it, though, and gathers one
//! that does in a small carry buffer. Every other byte is touched once on
//! this thread: no copy in, no copy out. A chunk is sealed as the last
//! one only once it is known that no batch follows, which is why the loop
//! looks one batch ahead.

use std::io::Write;

use cmek::stream::{ChunkOpener, ChunkSealer};

use crate::exit::{CliResult, Context};
use crate::pipe::{Batches, Sink, BUF_LEN};

/// What to name in an error: the operation, the input and the output.
pub struct Names<'a> {
    pub what: &'a str,
    pub input: &'a str,
    pub output: &'a str,
}

/// Chunk lengths that end on chunk boundaries: the first batch holds
/// `first` (a shorter first chunk) plus whole later chunks of `later`
/// bytes, every other batch whole chunks only, each about [`BUF_LEN`].
pub fn batch_lengths(first: usize, later: usize) -> (usize, usize) {
    let per_batch = (BUF_LEN / later).max(1);
    (first + (per_batch - 1) * later, per_batch * later)
}

/// One direction of the cipher, one stream chunk at a time.
pub trait Chunkwise {
    /// Input bytes of the next chunk unless it is the last.
    fn chunk_len(&self) -> usize;
    /// Output room a chunk of `input` bytes needs.
    fn output_len(input: usize) -> usize;
    /// Seals or opens one chunk into `out`; returns the bytes written.
    fn apply(&mut self, input: &[u8], last: bool, out: &mut [u8]) -> cmek::Result<usize>;
    /// True once the last chunk is done.
    fn is_finished(&self) -> bool;
}

impl Chunkwise for ChunkSealer {
    fn chunk_len(&self) -> usize {
        self.plaintext_len()
    }
    fn output_len(input: usize) -> usize {
        input + ChunkSealer::OVERHEAD
    }
    fn apply(&mut self, input: &[u8], last: bool, out: &mut [u8]) -> cmek::Result<usize> {
        self.seal(input, last, out)
    }
    fn is_finished(&self) -> bool {
        ChunkSealer::is_finished(self)
    }
}

impl Chunkwise for ChunkOpener {
    fn chunk_len(&self) -> usize {
        self.sealed_len()
    }
    fn output_len(input: usize) -> usize {
        input.saturating_sub(ChunkSealer::OVERHEAD)
    }
    fn apply(&mut self, input: &[u8], last: bool, out: &mut [u8]) -> cmek::Result<usize> {
        self.open(input, last, out)
    }
    fn is_finished(&self) -> bool {
        ChunkOpener::is_finished(self)
    }
}

/// Cuts the input into chunks of the next chunk's length (the last one
/// shorter) and hands each to `emit` with its last flag. A chunk is last
/// only when nothing follows it; one split across batches is gathered in
/// `carry` first.
struct ChunkCutter {
    carry: Vec<u8>,
}

impl ChunkCutter {
    fn new() -> Self {
        Self { carry: Vec::new() }
    }

    fn feed<S: Chunkwise>(
        &mut self,
        mut data: &[u8],
        more: bool,
        cipher: &mut S,
        emit: &mut dyn FnMut(&mut S, &[u8], bool) -> CliResult,
    ) -> CliResult {
        if !self.carry.is_empty() {
            let take = (cipher.chunk_len() - self.carry.len()).min(data.len());
            self.carry.extend_from_slice(&data[..take]);
            data = &data[take..];
            let end = data.is_empty() && !more;
            if self.carry.len() == cipher.chunk_len() || end {
                emit(cipher, &self.carry, end)?;
                self.carry.clear();
            }
        }
        while !data.is_empty() {
            let len = cipher.chunk_len();
            if data.len() < len && more {
                self.carry.extend_from_slice(data);
                break;
            }
            let take = data.len().min(len);
            emit(cipher, &data[..take], take == data.len() && !more)?;
            data = &data[take..];
        }
        Ok(())
    }
}

/// Seals or opens everything `batches` yields into `sink`, looking one batch
/// ahead to know which chunk is the last.
pub fn run<S: Chunkwise, W: Write + Send + 'static>(
    cipher: &mut S,
    batches: &mut Batches,
    sink: &mut Sink<W>,
    names: &Names<'_>,
    mut progress: impl FnMut(u64),
) -> CliResult {
    let mut emit = |cipher: &mut S, input: &[u8], last: bool| -> CliResult {
        let room = sink
            .reserve(S::output_len(input.len()))
            .context(names.output)?;
        let n = cipher.apply(input, last, room).context(names.what)?;
        sink.commit(n).context(names.output)
    };
    let mut cutter = ChunkCutter::new();
    let mut next = batches.next_batch().context(names.input)?;
    while let Some(batch) = next.take() {
        next = batches.next_batch().context(names.input)?;
        cutter.feed(batch.data(), next.is_some(), cipher, &mut emit)?;
        progress(batch.data().len() as u64);
        batches.recycle(batch);
    }
    if !cipher.is_finished() {
        // No batch at all. Encrypting, that is an empty input: one empty
        // chunk, marked last. Decrypting, a body missing after the
        // headers: opening nothing as the last chunk fails and says so.
        emit(cipher, &[], true)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in with fixed-length chunks, recording what it is given.
    struct Fixed {
        len: usize,
        seen: Vec<(Vec<u8>, bool)>,
    }

    impl Chunkwise for Fixed {
        fn chunk_len(&self) -> usize {
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

    /// Cuts `data` with `ChunkCutter` fed in the given piece sizes.
    fn cut(data: &[u8], pieces: &[usize], chunk_len: usize) -> Vec<(Vec<u8>, bool)> {
        let mut chunks = ChunkCutter::new();
        let mut fixed = Fixed {
            len: chunk_len,
            seen: Vec::new(),
        };
        let mut rest = data;
        let mut i = 0;
        while !rest.is_empty() {
            let n = pieces[i % pieces.len()].min(rest.len());
            let more = n < rest.len();
            chunks
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
                let chunks = cut(&data[..len], pieces, 1000);
                let joined: Vec<u8> = chunks.iter().flat_map(|(r, _)| r.clone()).collect();
                assert_eq!(joined, &data[..len], "{pieces:?} {len}");
                let (last, init) = chunks.split_last().unwrap();
                assert!(last.1, "the final chunk is last");
                assert!(!last.0.is_empty() && last.0.len() <= 1000);
                for (r, l) in init {
                    assert_eq!(r.len(), 1000);
                    assert!(!l);
                }
            }
        }
    }

    #[test]
    fn batches_hold_whole_chunks() {
        let (first, then) = batch_lengths(65_480, 65_520);
        assert_eq!(first, 65_480 + 3 * 65_520);
        assert_eq!(then, 4 * 65_520);
        assert!(then <= BUF_LEN);
        // Chunkwise larger than a buffer: one per batch.
        assert_eq!(batch_lengths(1 << 20, 1 << 20), (1 << 20, 1 << 20));
    }
}
