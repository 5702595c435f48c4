//! Segments through tokio's `AsyncWrite` and `AsyncRead` (feature
//! `tokio`): [`Zone::async_segment_writer`] and
//! [`Zone::async_segment_reader`], the async forms of
//! [`Zone::segment_writer`] and [`Zone::segment_reader`], for engines that
//! move segments over async I/O (an object store's multipart upload or
//! GET body, a socket, a tokio `File`).
//!
//! This module owns only how a segment's header meets the stream's async
//! adapters ([`AsyncEncryptingWriter`], [`AsyncDecryptingReader`]): the
//! header goes out before the stream and is read and opened before it,
//! and the zone's availability gate goes with the stream. The byte
//! layout is the blocking one's, so each side reads what the other
//! writes. Like the rest of the data path it makes no provider call.

use ::tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::data::NewSegment;
use super::header::SEGMENT_HEADER_LEN;
use super::Zone;
use crate::stream::{AsyncDecryptingReader, AsyncEncryptingWriter};
use crate::{Error, Result};

impl Zone {
    /// A writer of a new segment into `sink`, for async I/O: the
    /// [`segment_writer`](Self::segment_writer) of tokio's `AsyncWrite`.
    ///
    /// The segment header is queued, not written: it goes to `sink` first,
    /// at the writer's first `write`, `flush` or `shutdown`, and the
    /// stream follows it. **Call `shutdown()`**
    /// (`AsyncWriteExt::shutdown`): it seals the last chunk, writes it and
    /// shuts `sink` down; then the segment is complete, and
    /// [`into_inner`](AsyncEncryptingWriter::into_inner) returns `sink`. A
    /// writer dropped before its shutdown completed leaves in `sink` at
    /// most the header and whole chunks none of which is marked last,
    /// which every reader refuses: never a shorter segment that decrypts.
    ///
    /// Each `poll_write` handed more than a chunk while nothing is
    /// buffered seals that chunk straight from the caller's bytes, with no
    /// copy first (see [`AsyncEncryptingWriter`]); memory stays at one
    /// chunk whatever the segment's length. A zone that becomes
    /// unavailable stops the writer at its next chunk, the last one
    /// included, with an `io::Error` carrying
    /// [`Error::ZoneUnavailable`] (see
    /// [`stream::error_of`](crate::stream::error_of)).
    ///
    /// No await: the DEK is drawn and wrapped here, as
    /// [`segment_writer`](Self::segment_writer) does, with the same rare
    /// exception: after many segments (2^16 in a process, then more) the
    /// zone records its next block of DEK wraps in its manifest, one
    /// blocking write through the zone's [`ManifestStore`](super::ManifestStore).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use cmek::provider::LocalKeyProvider;
    /// # use cmek::zone::{Keyring, MemoryManifestStore, ZoneSpec};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let provider = LocalKeyProvider::create(dir.path().join("root.keys"), "local")?;
    /// # let root = provider.add_key("root")?;
    /// # let zone = Keyring::new(Arc::new(provider))
    /// #     .create_zone(Arc::new(MemoryManifestStore::new()), ZoneSpec::new("orders", "local", root))
    /// #     .await?;
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// // Write a segment into a tokio file...
    /// let path = dir.path().join("000007.log");
    /// let file = tokio::fs::File::create(&path).await?;
    /// let mut w = zone.async_segment_writer("000007.log", file)?;
    /// w.write_all(b"put k1 v1\n").await?;
    /// w.write_all(b"put k2 v2\n").await?;
    /// w.shutdown().await?; // seals the last chunk: without it, nothing decrypts
    /// w.into_inner().sync_all().await?;
    ///
    /// // ...and read it back.
    /// let file = tokio::fs::File::open(&path).await?;
    /// let mut r = zone.async_segment_reader("000007.log", file).await?;
    /// let mut log = String::new();
    /// r.read_to_string(&mut log).await?;
    /// assert_eq!(log, "put k1 v1\nput k2 v2\n");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`encrypt_segment`](Self::encrypt_segment):
    /// [`Error::ZoneUnavailable`] while the zone does not serve,
    /// [`Error::LimitExceeded`] past the EZK's wrap limit,
    /// [`Error::Random`]. Writing the header happens later, in the
    /// writer's polls, and fails there.
    pub fn async_segment_writer<W: AsyncWrite + Unpin>(
        &self,
        segment_id: &str,
        sink: W,
    ) -> Result<AsyncEncryptingWriter<W>> {
        let NewSegment {
            header,
            dek,
            params,
            stream_header,
        } = self.new_segment(segment_id, None)?;
        let aad = self.body_aad(segment_id);
        Ok(
            AsyncEncryptingWriter::with_header(sink, &dek, &aad, params, stream_header)?
                .with_prefix(&header.to_bytes())
                .with_gate(self.gate()),
        )
    }

    /// Reads a segment's header from `source` (at its start), opens it and
    /// returns a reader of the segment's plaintext, for async I/O: the
    /// [`segment_reader`](Self::segment_reader) of tokio's `AsyncRead`.
    ///
    /// Awaiting it reads only the [`SEGMENT_HEADER_LEN`] header bytes;
    /// opening the header makes no provider call. The reader then
    /// releases plaintext only from chunks that authenticated, and reports
    /// the end of the segment only after its last chunk did, so a segment
    /// cut short, even at a chunk boundary, is an error, never a short
    /// read. Its errors are `io::Error`s carrying the [`Error`] — most
    /// often [`Error::Integrity`] or [`Error::Malformed`] (kind
    /// `InvalidData`), [`Error::ZoneUnavailable`] once the zone stops
    /// serving (kind `PermissionDenied`, or `TimedOut` while its KMS
    /// cannot be reached, at the next chunk); get it with
    /// [`stream::error_of`](crate::stream::error_of), or `?` into a
    /// [`crate::Result`]. See [`async_segment_writer`](Self::async_segment_writer)
    /// for an example.
    ///
    /// # Errors
    /// As [`decrypt_segment`](Self::decrypt_segment) for the header;
    /// [`Error::Malformed`] if `source` ends inside it; [`Error::Io`] if it
    /// cannot be read.
    pub async fn async_segment_reader<R: AsyncRead + Unpin>(
        &self,
        segment_id: &str,
        mut source: R,
    ) -> Result<AsyncDecryptingReader<R>> {
        let mut bytes = [0u8; SEGMENT_HEADER_LEN];
        source
            .read_exact(&mut bytes)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    Error::malformed("segment header", "truncated")
                }
                _ => Error::from(e),
            })?;
        let (dek, params) = self.open_header(segment_id, &bytes)?;
        let aad = self.body_aad(segment_id);
        Ok(AsyncDecryptingReader::new(source, &dek, &aad, params).with_gate(self.gate()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ::tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::provider::KeyState;
    use crate::stream::{error_of, Params};
    use crate::testing::MockProvider;
    use crate::zone::{Keyring, MemoryManifestStore, ZoneSpec};

    async fn zone() -> Zone {
        let kms = Arc::new(MockProvider::new());
        let root = kms.add_key("root");
        Keyring::new(kms)
            .create_zone(
                Arc::new(MemoryManifestStore::new()),
                ZoneSpec {
                    stream: Params::new(4096).unwrap(),
                    ..ZoneSpec::new("logs", "mock-region-1", root)
                },
            )
            .await
            .unwrap()
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(29) ^ 3).collect()
    }

    fn is_unavailable(e: &std::io::Error) -> bool {
        e.kind() == std::io::ErrorKind::PermissionDenied
            && matches!(error_of(e), Some(Error::ZoneUnavailable { .. }))
    }

    /// A writer open while the zone stops serving fails at its next chunk,
    /// its last one too, and writes nothing that decrypts; new writers are
    /// refused.
    #[tokio::test]
    async fn an_unavailable_zone_stops_the_async_writer() {
        let zone = zone().await;
        let mut w = zone.async_segment_writer("w", Vec::new()).unwrap();
        w.write_all(&data(10_000)).await.unwrap();
        zone.mark_unavailable(KeyState::Disabled);
        let e = w.write_all(&data(10_000)).await.unwrap_err();
        assert!(is_unavailable(&e), "{e:?}");
        let e = w.shutdown().await.unwrap_err();
        assert!(is_unavailable(&e), "{e:?}");
        assert!(matches!(
            zone.async_segment_writer("x", Vec::new()),
            Err(Error::ZoneUnavailable { .. })
        ));

        // What reached the sink is whole chunks, none the last.
        let written = w.into_inner();
        assert!(zone.recover().await.unwrap());
        assert!(zone.decrypt_segment("w", &written).is_err());

        // A writer that ends before the zone stops is refused its last
        // chunk, and can finish once the zone serves again.
        let mut w = zone.async_segment_writer("v", Vec::new()).unwrap();
        w.write_all(b"tail").await.unwrap();
        zone.mark_unavailable(KeyState::Disabled);
        assert!(is_unavailable(&w.shutdown().await.unwrap_err()));
        assert!(zone.recover().await.unwrap());
        w.shutdown().await.unwrap();
        assert_eq!(
            &zone.decrypt_segment("v", &w.into_inner()).unwrap()[..],
            b"tail"
        );
    }

    /// A reader open while the zone stops serving fails at its next chunk
    /// without releasing more plaintext, goes on once the zone serves
    /// again, and new readers are refused meanwhile.
    #[tokio::test]
    async fn an_unavailable_zone_stops_the_async_reader() {
        let zone = zone().await;
        let plain = data(20_000);
        let segment = zone.encrypt_segment("r", &plain).unwrap();
        let mut r = zone.async_segment_reader("r", &segment[..]).await.unwrap();
        let mut first = vec![0u8; 100];
        r.read_exact(&mut first).await.unwrap();
        assert_eq!(first, plain[..100]);

        zone.mark_unavailable(KeyState::Disabled);
        let mut rest = Vec::new();
        // The first chunk's remaining plaintext was authenticated already;
        // the next chunk is refused.
        let e = r.read_to_end(&mut rest).await.unwrap_err();
        assert!(is_unavailable(&e), "{e:?}");
        assert!(rest.len() < 4096, "nothing past the first chunk");
        assert!(matches!(
            zone.async_segment_reader("r", &segment[..]).await,
            Err(Error::ZoneUnavailable { .. })
        ));

        assert!(zone.recover().await.unwrap());
        let mut tail = Vec::new();
        r.read_to_end(&mut tail).await.unwrap();
        let mut all = first;
        all.extend_from_slice(&rest);
        all.extend_from_slice(&tail);
        assert_eq!(all, plain);
    }

    #[test]
    fn the_reader_future_and_the_adapters_are_send() {
        fn send<T: Send>(_: &T) {}
        let rt = ::tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let zone = rt.block_on(zone());
        let source: &[u8] = &[];
        send(&zone.async_segment_reader("s", source));
        send(&zone.async_segment_writer("s", Vec::new()).unwrap());
    }
}
