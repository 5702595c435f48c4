//! Reading and writing on their own threads, so file I/O overlaps the
//! cipher instead of taking turns with it.
//!
//! The library's stream adapters are sequential and run on the calling
//! thread; on a two-core machine, a read or write system call (a copy from
//! or into the page cache) would otherwise stall encryption. Data moves in
//! [`BUF_LEN`] buffers through bounded channels of [`DEPTH`] buffers each,
//! and used buffers go back to be refilled, so memory stays at a few
//! megabytes whatever the input's length.

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{self, JoinHandle};

/// Bytes per buffer handed between threads.
pub const BUF_LEN: usize = 1 << 20;
/// Buffers in flight per direction.
const DEPTH: usize = 4;

/// Reads `R` on its own thread; yields its data in buffers.
pub struct Chunks {
    full: Receiver<io::Result<Vec<u8>>>,
    empty: SyncSender<Vec<u8>>,
    reader: Option<JoinHandle<()>>,
}

impl Chunks {
    /// Starts reading `source` on a new thread.
    pub fn spawn<R: Read + Send + 'static>(mut source: R) -> Self {
        let (full_tx, full) = sync_channel::<io::Result<Vec<u8>>>(DEPTH);
        // Room for every buffer that can exist, so returning one never blocks.
        let (empty, empty_rx) = sync_channel::<Vec<u8>>(DEPTH + 2);
        let reader = thread::spawn(move || loop {
            let mut buf = empty_rx
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(BUF_LEN));
            buf.resize(BUF_LEN, 0);
            let mut filled = 0;
            // Fill the buffer (pipes return little at a time) or reach EOF.
            let result = loop {
                match source.read(&mut buf[filled..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        filled += n;
                        if filled == BUF_LEN {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            buf.truncate(filled);
            let end = filled < BUF_LEN || result.is_err();
            let sent = match result {
                Ok(()) if filled == 0 => true,
                Ok(()) => full_tx.send(Ok(buf)).is_ok(),
                Err(e) => full_tx.send(Err(e)).is_ok(),
            };
            if end || !sent {
                break;
            }
        });
        Self {
            full,
            empty,
            reader: Some(reader),
        }
    }

    /// The next buffer of data, `None` at the end.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        match self.full.recv() {
            Ok(result) => result.map(Some),
            Err(_) => {
                // The thread ended: join it so a panic there is not lost.
                if let Some(reader) = self.reader.take() {
                    if reader.join().is_err() {
                        return Err(io::Error::other("the reading thread failed"));
                    }
                }
                Ok(None)
            }
        }
    }

    /// Returns a used buffer for refilling.
    pub fn recycle(&self, buf: Vec<u8>) {
        let _ = self.empty.try_send(buf);
    }
}

/// `Read` over [`Chunks`], for the library's decrypting readers.
pub struct ChunkReader {
    chunks: Chunks,
    current: Vec<u8>,
    pos: usize,
    done: bool,
    /// Bytes handed out so far.
    pub consumed: u64,
}

impl ChunkReader {
    /// Reads `chunks` as one byte stream.
    pub fn new(chunks: Chunks) -> Self {
        Self {
            chunks,
            current: Vec::new(),
            pos: 0,
            done: false,
            consumed: 0,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.chunks.next_chunk()? {
                None => {
                    self.done = true;
                    return Ok(0);
                }
                Some(next) => {
                    let used = std::mem::replace(&mut self.current, next);
                    self.chunks.recycle(used);
                    self.pos = 0;
                }
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        self.consumed += n as u64;
        Ok(n)
    }
}

/// Writes to `W` on its own thread; collects writes into buffers.
pub struct Sink<W: Write + Send + 'static> {
    current: Vec<u8>,
    full: Option<SyncSender<Vec<u8>>>,
    empty: Receiver<Vec<u8>>,
    writer: Option<JoinHandle<io::Result<W>>>,
}

impl<W: Write + Send + 'static> Sink<W> {
    /// Starts a writing thread for `sink`.
    pub fn spawn(mut sink: W) -> Self {
        let (full, full_rx) = sync_channel::<Vec<u8>>(DEPTH);
        let (empty_tx, empty) = sync_channel::<Vec<u8>>(DEPTH + 2);
        let writer = thread::spawn(move || {
            for mut buf in full_rx {
                sink.write_all(&buf)?;
                buf.clear();
                let _ = empty_tx.try_send(buf);
            }
            sink.flush()?;
            Ok(sink)
        });
        Self {
            current: Vec::with_capacity(BUF_LEN),
            full: Some(full),
            empty,
            writer: Some(writer),
        }
    }

    fn send_current(&mut self) -> io::Result<()> {
        let next = self
            .empty
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BUF_LEN));
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
                .unwrap_or_else(|_| Err(io::Error::other("the writing thread failed"))),
            None => Err(io::Error::other("the writing thread already stopped")),
        }
    }

    /// Reads once from `source` straight into the pending buffer (saving the
    /// copy a `write` would make). Returns the bytes read; 0 at its end.
    pub fn fill_from<R: Read>(&mut self, source: &mut R) -> io::Result<usize> {
        let start = self.current.len();
        self.current.resize(BUF_LEN, 0);
        let n = loop {
            match source.read(&mut self.current[start..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        self.current.truncate(start + *n.as_ref().unwrap_or(&0));
        let n = n?;
        if self.current.len() == BUF_LEN {
            self.send_current()?;
        }
        Ok(n)
    }

    /// Writes what is buffered, waits for the thread, and returns `W`.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.current.is_empty() {
            self.send_current()?;
        }
        self.join()
    }
}

impl<W: Write + Send + 'static> Write for Sink<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = BUF_LEN - self.current.len();
        let n = data.len().min(room);
        self.current.extend_from_slice(&data[..n]);
        if self.current.len() == BUF_LEN {
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
            let mut reader = ChunkReader::new(Chunks::spawn(std::io::Cursor::new(data.clone())));
            let mut sink = Sink::spawn(Vec::new());
            std::io::copy(&mut reader, &mut sink).unwrap();
            assert_eq!(reader.consumed, len as u64);
            assert_eq!(sink.finish().unwrap(), data, "{len}");
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
