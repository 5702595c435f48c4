//! Reading and writing on their own threads, so file I/O overlaps the
//! cipher instead of taking turns with it.
//!
//! The cipher runs on the calling thread; on a two-core machine, a read or
//! write system call (a copy from or into the page cache) would otherwise
//! stall encryption. Data moves in buffers of about [`BUF_LEN`] through
//! bounded channels of [`DEPTH`] buffers each, and used buffers go back to
//! be refilled, so memory stays at a few megabytes whatever the input's
//! length. The cipher reads the reading thread's buffers in place and
//! writes into the writing thread's ([`Sink::reserve`]), so neither side
//! copies on its way through.

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{self, JoinHandle};

/// Bytes per buffer handed between threads. Small enough that a buffer is
/// still in cache when the other thread takes it: 1 MiB buffers made a
/// 1 GiB encrypt about 25% slower than 256 KiB ones (128 KiB was no faster).
pub const BUF_LEN: usize = 256 << 10;
/// Buffers in flight per direction.
const DEPTH: usize = 4;
/// Alignment of a buffer's data: the kernel copies to and from the page
/// cache several times slower into an address that is not page-aligned (a
/// 1 GiB read took 4× the system time of `dd` before buffers were aligned).
const ALIGN: usize = 4096;

/// A buffer (of [`BUF_LEN`] bytes unless a caller needs more) whose data
/// starts at a page boundary.
pub struct Buf {
    mem: Vec<u8>,
    off: usize,
    len: usize,
    cap: usize,
}

impl Buf {
    fn new() -> Self {
        Self::with_capacity(BUF_LEN)
    }

    fn with_capacity(cap: usize) -> Self {
        let mem = vec![0u8; cap + ALIGN];
        // Byte pointers can always be aligned; 0 is a safe fallback.
        let off = mem.as_ptr().align_offset(ALIGN).min(ALIGN);
        Self {
            mem,
            off,
            len: 0,
            cap,
        }
    }

    /// The bytes it holds.
    pub fn data(&self) -> &[u8] {
        &self.mem[self.off..self.off + self.len]
    }

    /// The room after the bytes it holds.
    fn space(&mut self) -> &mut [u8] {
        &mut self.mem[self.off + self.len..self.off + self.cap]
    }

    fn is_full(&self) -> bool {
        self.len == self.cap
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    /// Copies as much of `data` as fits; returns how much.
    fn extend_from(&mut self, data: &[u8]) -> usize {
        let space = self.space();
        let n = data.len().min(space.len());
        space[..n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }
}

/// Reads `R` on its own thread; yields its data in buffers.
pub struct Batches {
    full: Receiver<io::Result<Buf>>,
    empty: SyncSender<Buf>,
    reader: Option<JoinHandle<()>>,
}

impl Batches {
    /// Starts reading `source` on a new thread: a first batch of `first`
    /// bytes, then batches of `then` bytes (the last one shorter), however
    /// little each read returns. A caller whose chunks have known lengths
    /// gets batches that end on chunk boundaries.
    pub fn spawn_sized<R: Read + Send + 'static>(mut source: R, first: usize, then: usize) -> Self {
        let cap = first.max(then).max(1);
        let (full_tx, full) = sync_channel::<io::Result<Buf>>(DEPTH);
        // Room for every buffer that can exist, so returning one never blocks.
        let (empty, empty_rx) = sync_channel::<Buf>(DEPTH + 2);
        let reader = thread::spawn(move || {
            let mut want = first.max(1);
            loop {
                let mut buf = empty_rx
                    .try_recv()
                    .unwrap_or_else(|_| Buf::with_capacity(cap));
                buf.clear();
                // Fill the batch (pipes return little at a time) or reach EOF.
                let result = loop {
                    let room = want - buf.len;
                    match source.read(&mut buf.space()[..room]) {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            buf.len += n;
                            if buf.len == want {
                                break Ok(());
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                let end = buf.len < want || result.is_err();
                let sent = match result {
                    Ok(()) if buf.len == 0 => true,
                    Ok(()) => full_tx.send(Ok(buf)).is_ok(),
                    Err(e) => full_tx.send(Err(e)).is_ok(),
                };
                if end || !sent {
                    break;
                }
                want = then.max(1);
            }
        });
        Self {
            full,
            empty,
            reader: Some(reader),
        }
    }

    /// The next buffer of data, `None` at the end.
    pub fn next_batch(&mut self) -> io::Result<Option<Buf>> {
        match self.full.recv() {
            Ok(result) => result.map(Some),
            Err(_) => {
                // The thread ended: join it so a panic there is not lost.
                if let Some(reader) = self.reader.take() {
                    if reader.join().is_err() {
                        return Err(panicked("reading the input"));
                    }
                }
                Ok(None)
            }
        }
    }

    /// Returns a used buffer for refilling.
    pub fn recycle(&self, buf: Buf) {
        let _ = self.empty.try_send(buf);
    }
}

/// The error for a thread of this module that panicked: not an I/O
/// failure, whatever the `io::Error` around it says (exit code 1).
fn panicked(what: &'static str) -> io::Error {
    io::Error::other(cmek::Error::WorkerPanicked { what: what.into() })
}

/// Writes to `W` on its own thread; collects writes into buffers.
pub struct Sink<W: Write + Send + 'static> {
    current: Buf,
    full: Option<SyncSender<Buf>>,
    empty: Receiver<Buf>,
    writer: Option<JoinHandle<io::Result<W>>>,
}

impl<W: Write + Send + 'static> Sink<W> {
    /// Starts a writing thread for `sink`.
    pub fn spawn(mut sink: W) -> Self {
        let (full, full_rx) = sync_channel::<Buf>(DEPTH);
        let (empty_tx, empty) = sync_channel::<Buf>(DEPTH + 2);
        let writer = thread::spawn(move || {
            for mut buf in full_rx {
                sink.write_all(buf.data())?;
                buf.clear();
                let _ = empty_tx.try_send(buf);
            }
            sink.flush()?;
            Ok(sink)
        });
        Self {
            current: Buf::new(),
            full: Some(full),
            empty,
            writer: Some(writer),
        }
    }

    fn send_current(&mut self) -> io::Result<()> {
        let next = self.empty.try_recv().unwrap_or_else(|_| Buf::new());
        let buf = std::mem::replace(&mut self.current, next);
        let sent = self.full.as_ref().is_some_and(|tx| tx.send(buf).is_ok());
        if sent {
            Ok(())
        } else {
            // The thread stopped: its error says why.
            Err(self
                .join()
                .err()
                .unwrap_or_else(|| io::Error::other("the writing thread stopped early")))
        }
    }

    fn join(&mut self) -> io::Result<W> {
        self.full = None;
        match self.writer.take() {
            Some(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(panicked("writing the output"))),
            None => Err(io::Error::other("the writing thread already stopped")),
        }
    }

    /// Room for at least `n` bytes at the end of the pending buffer
    /// (sending it on first if it has less), to be written in place and
    /// then [`commit`](Self::commit)ted: a producer that can write into a
    /// buffer saves the copy a `write` would make.
    pub fn reserve(&mut self, n: usize) -> io::Result<&mut [u8]> {
        if self.current.cap - self.current.len < n {
            if self.current.len > 0 {
                self.send_current()?;
            }
            if self.current.cap < n {
                self.current = Buf::with_capacity(n);
            }
        }
        Ok(self.current.space())
    }

    /// Marks `n` bytes written into the room [`reserve`](Self::reserve)
    /// gave.
    pub fn commit(&mut self, n: usize) -> io::Result<()> {
        debug_assert!(n <= self.current.cap - self.current.len);
        self.current.len += n;
        if self.current.is_full() {
            self.send_current()?;
        }
        Ok(())
    }

    /// Writes what is buffered, waits for the thread, and returns `W`.
    pub fn finish(mut self) -> io::Result<W> {
        if self.current.len > 0 {
            self.send_current()?;
        }
        self.join()
    }
}

impl<W: Write + Send + 'static> Write for Sink<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.current.extend_from(data);
        if self.current.is_full() {
            self.send_current()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // The data reaches `W` at `finish`; a flush in between would only
        // cost a partial buffer.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_pass_through_unchanged_at_every_size() {
        for len in [0, 1, BUF_LEN - 1, BUF_LEN, BUF_LEN + 1, 3 * BUF_LEN + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
            let mut batches =
                Batches::spawn_sized(std::io::Cursor::new(data.clone()), BUF_LEN, BUF_LEN);
            let mut sink = Sink::spawn(Vec::new());
            let mut read = 0;
            while let Some(batch) = batches.next_batch().unwrap() {
                read += batch.data().len();
                sink.write_all(batch.data()).unwrap();
                batches.recycle(batch);
            }
            assert_eq!(read, len);
            assert_eq!(sink.finish().unwrap(), data, "{len}");
        }
    }

    #[test]
    fn sized_batches_end_where_asked_and_reserved_room_passes_through() {
        // A reader that returns a few bytes at a time, like a pipe.
        struct Trickle(std::io::Cursor<Vec<u8>>);
        impl Read for Trickle {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = out.len().min(1000);
                self.0.read(&mut out[..n])
            }
        }
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let mut batches =
            Batches::spawn_sized(Trickle(std::io::Cursor::new(data.clone())), 7000, 30_000);
        let mut sizes = Vec::new();
        let mut sink = Sink::spawn(Vec::new());
        while let Some(batch) = batches.next_batch().unwrap() {
            sizes.push(batch.data().len());
            // Through reserve/commit, in pieces larger than a buffer's room.
            for piece in batch.data().chunks(5000) {
                let room = sink.reserve(piece.len()).unwrap();
                room[..piece.len()].copy_from_slice(piece);
                sink.commit(piece.len()).unwrap();
            }
            batches.recycle(batch);
        }
        assert_eq!(sizes, [7000, 30_000, 30_000, 30_000, 3000]);
        assert_eq!(sink.finish().unwrap(), data);
        // A reservation larger than a whole buffer gets its own.
        let mut sink = Sink::spawn(Vec::new());
        let room = sink.reserve(BUF_LEN + 10).unwrap();
        assert!(room.len() >= BUF_LEN + 10);
        room[..BUF_LEN + 10].fill(7);
        sink.commit(BUF_LEN + 10).unwrap();
        assert_eq!(sink.finish().unwrap(), vec![7u8; BUF_LEN + 10]);
    }

    #[test]
    fn buffers_start_on_a_page() {
        for _ in 0..4 {
            let buf = Buf::new();
            assert_eq!(buf.data().as_ptr() as usize % ALIGN, 0);
        }
    }

    #[test]
    fn a_write_error_reaches_the_caller() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut sink = Sink::spawn(Full);
        let data = vec![0u8; 8 * BUF_LEN];
        let err = sink
            .write_all(&data)
            .err()
            .or_else(|| sink.finish().err())
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    }
}
