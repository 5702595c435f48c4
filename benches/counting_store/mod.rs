//! A store that counts what its inner store's reads return, for the
//! benches that compare the bytes and GETs an engine's reads cost.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use object_store_014::path::Path;
use object_store_014::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// An inner store that counts the bytes its `get`s return.
#[derive(Debug)]
pub struct Counting {
    inner: Arc<dyn ObjectStore>,
    /// Bytes the GETs returned.
    pub fetched: Arc<AtomicU64>,
    /// GETs served (ranged or not, `get_ranges` calls counted as one).
    pub gets: Arc<AtomicU64>,
}

impl Counting {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            fetched: Arc::new(AtomicU64::new(0)),
            gets: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl std::fmt::Display for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store_014::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store_014::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store_014::Result<GetResult> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let r = self.inner.get_opts(location, options).await?;
        let (meta, range, attributes, extensions) = (
            r.meta.clone(),
            r.range.clone(),
            r.attributes.clone(),
            r.extensions.clone(),
        );
        let fetched = Arc::clone(&self.fetched);
        let body = r
            .into_stream()
            .inspect(move |piece| {
                if let Ok(p) = piece {
                    fetched.fetch_add(p.len() as u64, Ordering::Relaxed);
                }
            })
            .boxed();
        Ok(GetResult {
            payload: GetResultPayload::Stream(body),
            meta,
            range,
            attributes,
            extensions,
        })
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store_014::Result<Vec<Bytes>> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let r = self.inner.get_ranges(location, ranges).await?;
        let n: usize = r.iter().map(Bytes::len).sum();
        self.fetched.fetch_add(n as u64, Ordering::Relaxed);
        Ok(r)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store_014::Result<Path>>,
    ) -> BoxStream<'static, object_store_014::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> BoxStream<'static, object_store_014::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&Path>,
    ) -> object_store_014::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store_014::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
