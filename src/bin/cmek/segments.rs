//! The cipher loop of `cmek encrypt` and `decrypt`: whole stream segments
//! sealed or opened straight from the reading thread's buffers into the
//! writing thread's, through the library's `SegmentSealer` and
//! `SegmentOpener`.
//!
//! The reading thread cuts its chunks on segment boundaries, so a segment
//! almost never straddles two chunks; one that does (a short read from a
//! pipe) is gathered in a small carry buffer. Everything else touches each
//! byte once on this thread: no copy in, no copy out. A segment is sealed as
//! the last one only once the next chunk is known to be empty, which is why
//! the loop looks one chunk ahead.

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

/// Feeds every chunk to `each` with a flag telling whether another chunk
/// follows, returning each chunk for reuse.
fn for_each_chunk(
    chunks: &mut Chunks,
    names: &Names<'_>,
    mut each: impl FnMut(&[u8], bool) -> CliResult,
) -> CliResult {
    let mut next = chunks.next_chunk().context(names.input)?;
    while let Some(chunk) = next.take() {
        next = chunks.next_chunk().context(names.input)?;
        each(chunk.data(), next.is_some())?;
        chunks.recycle(chunk);
    }
    Ok(())
}

/// Cuts the input into records of `record_len()` bytes (the last one
/// shorter) and hands each to `record` with its last flag. A record is last
/// only when nothing follows it.
struct Records {
    carry: Vec<u8>,
}

impl Records {
    fn new() -> Self {
        Self { carry: Vec::new() }
    }

    fn feed(
        &mut self,
        mut data: &[u8],
        more: bool,
        record_len: &dyn Fn() -> usize,
        record: &mut dyn FnMut(&[u8], bool) -> CliResult,
    ) -> CliResult {
        if !self.carry.is_empty() {
            let take = (record_len() - self.carry.len()).min(data.len());
            self.carry.extend_from_slice(&data[..take]);
            data = &data[take..];
            let end = data.is_empty() && !more;
            if self.carry.len() == record_len() || end {
                record(&self.carry, end)?;
                self.carry.clear();
            }
        }
        while !data.is_empty() {
            let len = record_len();
            if data.len() < len && more {
                self.carry.extend_from_slice(data);
                break;
            }
            let take = data.len().min(len);
            record(&data[..take], take == data.len() && !more)?;
            data = &data[take..];
        }
        Ok(())
    }

    /// What is left when the input ended without a record marked last:
    /// nothing, unless the input never came (no chunk at all).
    fn rest(&self) -> &[u8] {
        &self.carry
    }
}

/// Seals everything `chunks` yields into `sink`.
pub fn seal_all<W: Write + Send + 'static>(
    sealer: &mut SegmentSealer,
    chunks: &mut Chunks,
    sink: &mut Sink<W>,
    names: &Names<'_>,
    mut progress: impl FnMut(u64),
) -> CliResult {
    let mut records = Records::new();
    let sealer = std::cell::RefCell::new(sealer);
    let mut seal = |plaintext: &[u8], last: bool| -> CliResult {
        let room = sink
            .reserve(plaintext.len() + SegmentSealer::OVERHEAD)
            .context(names.output)?;
        let n = sealer
            .borrow_mut()
            .seal(plaintext, last, room)
            .context(names.what)?;
        sink.commit(n).context(names.output)
    };
    let record_len = || sealer.borrow().plaintext_len();
    for_each_chunk(chunks, names, |data, more| {
        records.feed(data, more, &record_len, &mut seal)?;
        progress(data.len() as u64);
        Ok(())
    })?;
    if !sealer.borrow().is_finished() {
        // An empty input: one empty segment, marked last.
        seal(records.rest(), true)?;
    }
    Ok(())
}

/// Opens every sealed segment `chunks` yields into `sink`.
pub fn open_all<W: Write + Send + 'static>(
    opener: &mut SegmentOpener,
    chunks: &mut Chunks,
    sink: &mut Sink<W>,
    names: &Names<'_>,
    mut progress: impl FnMut(u64),
) -> CliResult {
    let mut records = Records::new();
    let opener = std::cell::RefCell::new(opener);
    let mut open = |sealed: &[u8], last: bool| -> CliResult {
        let room = sink
            .reserve(sealed.len().saturating_sub(SegmentSealer::OVERHEAD))
            .context(names.output)?;
        let n = opener
            .borrow_mut()
            .open(sealed, last, room)
            .context(names.what)?;
        sink.commit(n).context(names.output)
    };
    let record_len = || opener.borrow().sealed_len();
    for_each_chunk(chunks, names, |data, more| {
        records.feed(data, more, &record_len, &mut open)?;
        progress(data.len() as u64);
        Ok(())
    })?;
    if !opener.borrow().is_finished() {
        // No body at all after the headers: opening nothing as the last
        // segment fails, and names why.
        open(records.rest(), true)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cuts `data` with `Records` fed in the given piece sizes.
    fn cut(data: &[u8], pieces: &[usize], record_len: usize) -> Vec<(Vec<u8>, bool)> {
        let mut records = Records::new();
        let mut out = Vec::new();
        let mut rest = data;
        let mut i = 0;
        while !rest.is_empty() {
            let n = pieces[i % pieces.len()].min(rest.len());
            let more = n < rest.len();
            records
                .feed(&rest[..n], more, &|| record_len, &mut |r, last| {
                    out.push((r.to_vec(), last));
                    Ok(())
                })
                .unwrap();
            rest = &rest[n..];
            i += 1;
        }
        out
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
