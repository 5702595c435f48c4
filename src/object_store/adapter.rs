//! [`EncryptedStore`]: an `ObjectStore` whose objects are segments of a
//! zone. This file is compiled once per supported `object_store` major
//! (`super::os` names it); what differs between majors lives in the
//! parent's `split`/`join`, and everything that does not depend on the
//! major in [`crate::object_store`].

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, BoxStream, StreamExt};

use super::os::path::Path;
use super::os::{
    CopyMode, CopyOptions, GetOptions, GetRange, GetResult, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, UploadPart,
};
use super::{join, split, Payload};
use crate::object_store::{
    ended_early, Carrier, ChunkBatches, ChunkSizes, ObjectError, Opened, OpenedCache, PartSealer,
    DEFAULT_OPENED_SEGMENTS, DEFAULT_PART_SIZE, MERGED_READ_LIMIT, STORE_NAME,
};
use crate::stream::{CiphertextRange, Params};
use crate::zone::{OpenedSegment, Zone, SEGMENT_HEADER_LEN, SEGMENT_PREFIX_LEN};

type OsResult<T> = std::result::Result<T, super::os::Error>;

/// An `ObjectStore` that encrypts every object it writes as a segment of
/// `zone` (segment id: the object's path) and decrypts and authenticates
/// every byte it returns. See the [module docs](crate::object_store) for
/// what each operation does and costs.
///
/// ```
/// # use std::sync::Arc;
/// # use cmek::provider::LocalKeyProvider;
/// # use cmek::zone::{Keyring, MemoryManifestStore, ZoneSpec};
#[doc = concat!("use cmek::object_store::", version_module!(), "::EncryptedStore;")]
#[doc = concat!("use cmek::object_store::", version_module!(), "::object_store::{")]
/// #     memory::InMemory, path::Path, ObjectStore, ObjectStoreExt, GetOptions, GetRange};
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let provider = LocalKeyProvider::create(dir.path().join("root.keys"), "local")?;
/// # let root = provider.add_key("root")?;
/// # let zone = Keyring::new(Arc::new(provider))
/// #     .create_zone(Arc::new(MemoryManifestStore::new()), ZoneSpec::new("lake", "local", root))
/// #     .await?;
/// let store = EncryptedStore::new(InMemory::new(), zone);
/// let path = Path::from("tables/orders/part-0.parquet");
/// store.put(&path, vec![7u8; 1_000_000].into()).await?;
///
/// // Plaintext offsets and sizes; only the chunks holding the range are fetched.
/// let tail = store.get_range(&path, 999_000..1_000_000).await?;
/// assert_eq!(&tail[..], &[7u8; 1000][..]);
/// assert_eq!(store.head(&path).await?.size, 1_000_000);
/// # Ok(()) }
/// ```
pub struct EncryptedStore<S> {
    inner: S,
    zone: Zone,
    part_size: usize,
    opened: OpenedCache,
    chunk_sizes: ChunkSizes,
}

impl<S: ObjectStore> EncryptedStore<S> {
    /// Encrypts every object of `inner` under `zone`.
    pub fn new(inner: S, zone: Zone) -> Self {
        Self {
            inner,
            zone,
            part_size: DEFAULT_PART_SIZE,
            opened: OpenedCache::new(DEFAULT_OPENED_SEGMENTS),
            chunk_sizes: ChunkSizes::default(),
        }
    }

    /// Writes each new object in the chunk size `sizes` gives its path
    /// (default: the zone's for every object). A ranged read fetches the
    /// whole chunks holding the range, so engines that read small blocks
    /// at any offset want small chunks for those objects:
    /// [`ChunkSizes::slatedb`] for SlateDB. Objects already written keep
    /// the chunk size their header records.
    #[must_use]
    pub fn with_chunk_sizes(mut self, sizes: ChunkSizes) -> Self {
        self.chunk_sizes = sizes;
        self
    }

    /// The chunk-size rules new objects are written with.
    pub fn chunk_sizes(&self) -> &ChunkSizes {
        &self.chunk_sizes
    }

    /// What a listing reports sizes by.
    fn listing_sizes(&self) -> ListingSizes {
        ListingSizes {
            zone: self.zone.stream_params(),
            rules: self.chunk_sizes.clone(),
        }
    }

    /// The chunk layout a new object at `location` is written with.
    fn params_for(&self, location: &Path) -> Params {
        self.chunk_sizes
            .for_path(location.as_ref())
            .unwrap_or_else(|| self.zone.stream_params())
    }

    /// Keeps at most `count` opened segments for later range reads of the
    /// same objects (default [`DEFAULT_OPENED_SEGMENTS`]; 0 keeps none).
    /// Each holds its segment's stream key, zeroized when dropped, and a
    /// few hundred bytes; when full, all are forgotten.
    #[must_use]
    pub fn with_opened_segments(mut self, count: usize) -> Self {
        self.opened = OpenedCache::new(count);
        self
    }

    /// How many opened segments are kept now.
    pub fn opened_segments(&self) -> usize {
        self.opened.len()
    }

    /// Hands multipart uploads parts of at least `bytes` (but the last),
    /// cut on chunk boundaries: the inner store's smallest part or more
    /// (default [`DEFAULT_PART_SIZE`]). Each upload buffers one such part.
    #[must_use]
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(1);
        self
    }

    /// The inner store, holding ciphertext.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The zone every object belongs to.
    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// Runs `start`, a call that starts a new segment; if it fails because
    /// another node changed the zone (its DEK-wrap reservation lost a
    /// race with a rotation), reloads the zone and tries again, a few
    /// times.
    async fn starting_segment<T>(
        &self,
        location: &Path,
        start: impl Fn() -> crate::Result<T>,
    ) -> OsResult<T> {
        let at = At::new(location, None);
        let mut tries = 0;
        loop {
            match start() {
                Err(crate::Error::Conflict { .. }) if tries < RELOADS => {
                    tries += 1;
                    self.zone.reload().await.map_err(|e| at.fail(e))?;
                }
                other => return other.map_err(|e| at.fail(e)),
            }
        }
    }

    /// Opens the segment at `location` from its first bytes `prefix` and
    /// stored length. A segment under an EZK newer than the zone holds was
    /// written by another node after a rotation: the zone is reloaded and
    /// the segment opened again, once.
    async fn open(
        &self,
        at: &At,
        location: &Path,
        prefix: &[u8],
        size: u64,
    ) -> OsResult<OpenedSegment> {
        // The object is long enough to hold the headers but the response
        // held fewer: the connection was cut, the data is not damaged.
        if prefix.len() < SEGMENT_PREFIX_LEN && size >= SEGMENT_PREFIX_LEN as u64 {
            return Err(at.fail(ended_early()));
        }
        match self.zone.open_segment(location.as_ref(), prefix, size) {
            Err(e) if e.kind() == crate::ErrorKind::Stale => {
                self.zone.reload().await.map_err(|e| at.fail(e))?;
                self.zone
                    .open_segment(location.as_ref(), prefix, size)
                    .map_err(|e| at.fail(e))
            }
            other => other.map_err(|e| at.fail(e)),
        }
    }

    /// The end of the first GET for `range`: the segment's prefix and,
    /// when the range's chunks end within [`MERGED_READ_LIMIT`] of the
    /// start (at the zone's chunk size), those chunks too.
    fn first_read_end(&self, location: &Path, range: Option<&GetRange>) -> u64 {
        let prefix = SEGMENT_PREFIX_LEN as u64;
        let params = self.params_for(location);
        let end_chunk = match range {
            Some(GetRange::Bounded(r)) if r.end > r.start => params.chunk_of(r.end - 1).0,
            _ => return prefix,
        };
        let end = SEGMENT_HEADER_LEN as u64 + params.ciphertext_start(end_chunk + 1);
        if end <= MERGED_READ_LIMIT {
            end.max(prefix)
        } else {
            prefix
        }
    }

    /// Streams and decrypts the whole object.
    async fn get_whole(&self, location: &Path, mut options: GetOptions) -> OsResult<GetResult> {
        options.range = None;
        let (meta, attributes, extras, mut body) =
            split(self.inner.get_opts(location, options).await?);
        let mut prefix = BytesMut::with_capacity(SEGMENT_PREFIX_LEN);
        let mut rest = Bytes::new();
        while prefix.len() < SEGMENT_PREFIX_LEN {
            let Some(piece) = body.next().await else {
                break;
            };
            let mut piece = piece?;
            let take = (SEGMENT_PREFIX_LEN - prefix.len()).min(piece.len());
            prefix.extend_from_slice(&piece[..take]);
            rest = piece.split_off(take);
        }
        let at = At::new(location, None);
        let segment = Arc::new(self.open(&at, location, &prefix, meta.size).await?);
        let plain_len = segment.plaintext_len();
        let plan = segment.plan(0..plain_len).map_err(|e| at.fail(e))?;
        let payload = decrypting(at, segment, &plan, rest, body)?;
        Ok(join(
            ObjectMeta {
                size: plain_len,
                ..meta
            },
            0..plain_len,
            attributes,
            extras,
            payload,
        ))
    }

    /// Reads the segment's prefix (with the range's first chunks when they
    /// are near), then the chunks holding `options.range`.
    async fn get_ranged(&self, location: &Path, options: GetOptions) -> OsResult<GetResult> {
        if let Some(range) = &options.range {
            range
                .is_valid()
                .map_err(|e| At::new(location, None).invalid_range(e))?;
        }
        // If the object is replaced between the two GETs, the second one
        // fails its ETag precondition: start over once, unless the caller
        // set its own precondition.
        let mut attempts = if options.if_match.is_some() { 1 } else { 2 };
        loop {
            attempts -= 1;
            match self.try_get_ranged(location, &options).await {
                Err(super::os::Error::Precondition { .. }) if attempts > 0 => continue,
                other => return other,
            }
        }
    }

    async fn try_get_ranged(&self, location: &Path, options: &GetOptions) -> OsResult<GetResult> {
        if let Some(hit) = self.opened_for(location, options) {
            match self.get_opened(location, options, &hit).await {
                Ok(Some(result)) => return Ok(result),
                Ok(None) => {}
                Err(super::os::Error::Precondition { .. }) => {
                    // Replaced since it was opened: open it again.
                    self.opened.remove(location.as_ref());
                }
                Err(e) => return Err(e),
            }
        }
        let first_end = self.first_read_end(location, options.range.as_ref());
        let mut first = options.clone();
        first.head = false;
        first.range = Some(GetRange::Bounded(0..first_end));
        let fetched = match self.inner.get_opts(location, first).await {
            Ok(r) => r,
            Err(e) => return Err(self.explain_failed_read(location, e).await),
        };
        let (meta, attributes, extras, body) = split(fetched);
        let at = At::new(location, bounded(options.range.as_ref()));
        let fetched = collect(&at, body, first_end).await?;
        let segment = Arc::new(self.open(&at, location, &fetched, meta.size).await?);
        self.keep_opened(location, &meta, &segment);
        let plain_len = segment.plaintext_len();
        let plain_meta = ObjectMeta {
            size: plain_len,
            ..meta.clone()
        };
        if options.head {
            let empty: Payload = stream::empty().boxed();
            return Ok(join(plain_meta, 0..plain_len, attributes, extras, empty));
        }
        let want = match &options.range {
            Some(r) => r.as_range(plain_len).map_err(|e| at.invalid_range(e))?,
            None => 0..plain_len,
        };
        let at = At::new(location, Some(want.clone()));
        let plan = segment.plan(want).map_err(|e| at.fail(e))?;
        let chunks = plan.chunks.clone();
        let body: Payload = if chunks.is_empty() {
            stream::empty().boxed()
        } else if chunks.end <= fetched.len() as u64 {
            let piece = fetched.slice(chunks.start as usize..chunks.end as usize);
            stream::once(async move { Ok(piece) }).boxed()
        } else {
            let (_, _, _, body) = split(
                self.inner
                    .get_opts(location, self.same_object(&meta, options, chunks))
                    .await?,
            );
            body
        };
        let payload = decrypting(at, segment, &plan, Bytes::new(), body)?;
        Ok(join(
            plain_meta,
            plan.plaintext.clone(),
            attributes,
            extras,
            payload,
        ))
    }

    /// The kept opened segment of `location`, if there is one and a read
    /// with `options` may use it.
    fn opened_for(&self, location: &Path, options: &GetOptions) -> Option<Opened> {
        if options.head {
            return None; // metadata comes from the store, fresh
        }
        let hit = self.opened.get(location.as_ref())?;
        match &options.if_match {
            Some(tag) if *tag != hit.e_tag => None,
            _ => Some(hit),
        }
    }

    /// Keeps `segment`, opened from the object `meta` describes, if the
    /// store gave it an ETag to check later reads against.
    fn keep_opened(&self, location: &Path, meta: &ObjectMeta, segment: &Arc<OpenedSegment>) {
        if let Some(e_tag) = &meta.e_tag {
            self.opened.insert(
                location.as_ref(),
                Opened {
                    e_tag: e_tag.clone(),
                    size: meta.size,
                    segment: Arc::clone(segment),
                },
            );
        }
    }

    /// A range read through a kept opened segment: one GET of the chunks,
    /// conditioned on the ETag it was opened at. `None` when the range
    /// needs no chunk or does not fit the kept length (the slow path
    /// answers those with fresh metadata).
    async fn get_opened(
        &self,
        location: &Path,
        options: &GetOptions,
        hit: &Opened,
    ) -> OsResult<Option<GetResult>> {
        let plain_len = hit.segment.plaintext_len();
        let want = match &options.range {
            Some(r) => match r.as_range(plain_len) {
                Ok(w) => w,
                Err(_) => return Ok(None),
            },
            None => 0..plain_len,
        };
        let at = At::new(location, Some(want.clone()));
        let plan = hit.segment.plan(want).map_err(|e| at.fail(e))?;
        if plan.chunks.is_empty() {
            return Ok(None);
        }
        let conditions = GetOptions {
            if_match: Some(hit.e_tag.clone()),
            range: Some(GetRange::Bounded(plan.chunks.clone())),
            head: false,
            ..options.clone()
        };
        let (meta, attributes, extras, body) =
            split(self.inner.get_opts(location, conditions).await?);
        if meta.size != hit.size {
            return Ok(None);
        }
        let payload = decrypting(at, Arc::clone(&hit.segment), &plan, Bytes::new(), body)?;
        Ok(Some(join(
            ObjectMeta {
                size: plain_len,
                ..meta
            },
            plan.plaintext.clone(),
            attributes,
            extras,
            payload,
        )))
    }

    /// The plaintext of each of `ranges` of the opened `segment`: one GET
    /// per run of nearby chunk ranges, each conditioned on `e_tag` (or
    /// `version`) so that all come from the object `segment` was opened
    /// from.
    async fn read_ranges(
        &self,
        location: &Path,
        segment: &Arc<OpenedSegment>,
        e_tag: Option<String>,
        version: Option<String>,
        ranges: &[Range<u64>],
    ) -> OsResult<Vec<Bytes>> {
        let plain_len = segment.plaintext_len();
        let mut plans = Vec::with_capacity(ranges.len());
        for r in ranges {
            let at = At::new(location, Some(r.clone()));
            let want = GetRange::Bounded(r.clone())
                .as_range(plain_len)
                .map_err(|e| at.invalid_range(e))?;
            plans.push(segment.plan(want).map_err(|e| at.fail(e))?);
        }
        let mut spans: Vec<Range<u64>> = plans
            .iter()
            .map(|p| p.chunks.clone())
            .filter(|c| !c.is_empty())
            .collect();
        spans.sort_by_key(|c| c.start);
        let mut merged: Vec<Range<u64>> = Vec::new();
        for c in spans {
            match merged.last_mut() {
                Some(m) if c.start <= m.end.saturating_add(COALESCE_GAP) => {
                    m.end = m.end.max(c.end)
                }
                _ => merged.push(c),
            }
        }
        let mut fetched = Vec::with_capacity(merged.len());
        for span in &merged {
            let options = GetOptions {
                if_match: e_tag.clone(),
                version: version.clone(),
                range: Some(GetRange::Bounded(span.clone())),
                ..GetOptions::default()
            };
            let (_, _, _, body) = split(self.inner.get_opts(location, options).await?);
            let at = At::new(location, None);
            let bytes = collect(&at, body, span.end - span.start).await?;
            if (bytes.len() as u64) < span.end - span.start {
                return Err(at.fail(ended_early()));
            }
            fetched.push((span.clone(), bytes));
        }
        let mut out = Vec::with_capacity(plans.len());
        for plan in &plans {
            let piece = if plan.chunks.is_empty() {
                Bytes::new()
            } else {
                let (span, bytes) = fetched
                    .iter()
                    .find(|(s, _)| s.start <= plan.chunks.start && plan.chunks.end <= s.end)
                    .expect("every chunk range lies in a merged span");
                bytes.slice(
                    (plan.chunks.start - span.start) as usize
                        ..(plan.chunks.end - span.start) as usize,
                )
            };
            let at = At::new(location, Some(plan.plaintext.clone()));
            out.push(open_range(&at, segment, plan, piece)?);
        }
        Ok(out)
    }

    /// Options for a further GET of `range` of the object `meta`
    /// describes, failing if it was replaced since.
    fn same_object(
        &self,
        meta: &ObjectMeta,
        options: &GetOptions,
        range: Range<u64>,
    ) -> GetOptions {
        GetOptions {
            if_match: meta.e_tag.clone().or_else(|| options.if_match.clone()),
            version: meta.version.clone().or_else(|| options.version.clone()),
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        }
    }

    /// A failed first read of an object: if the object exists but is too
    /// short to be a segment (a ranged read of an empty object fails in
    /// most stores), says so; otherwise the store's error.
    async fn explain_failed_read(
        &self,
        location: &Path,
        err: super::os::Error,
    ) -> super::os::Error {
        if matches!(
            err,
            super::os::Error::NotFound { .. }
                | super::os::Error::Precondition { .. }
                | super::os::Error::NotModified { .. }
        ) {
            return err;
        }
        let head = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        match self.inner.get_opts(location, head).await {
            Ok(r) if r.meta.size < SEGMENT_PREFIX_LEN as u64 => {
                At::new(location, None).fail(crate::Error::malformed(
                    "object",
                    format!(
                        "{} bytes, fewer than a segment's headers: not an encrypted object",
                        r.meta.size
                    ),
                ))
            }
            _ => err,
        }
    }

    /// Encrypts the plaintext `body` as the object `segment_id` and writes
    /// it at `location`: one `put` if it fits one part, else a multipart
    /// upload. Memory: one part.
    async fn upload_stream(
        &self,
        location: &Path,
        segment_id: &Path,
        mut body: Payload,
        mode: PutMode,
    ) -> OsResult<PutResult> {
        let params = self.params_for(segment_id);
        let mut sealer = self
            .starting_segment(location, || {
                PartSealer::new(&self.zone, segment_id.as_ref(), params, self.part_size)
            })
            .await?;
        let at = At::new(location, None);
        let mut upload: Option<Box<dyn MultipartUpload>> = None;
        let result = async {
            while let Some(piece) = body.next().await {
                let mut parts = Vec::new();
                sealer
                    .push(&piece?, &mut |p| parts.push(p))
                    .map_err(|e| at.fail(e))?;
                for part in parts {
                    if upload.is_none() {
                        if !matches!(mode, PutMode::Overwrite) {
                            return Err(not_supported(
                                "a conditional write longer than one part (multipart uploads cannot be conditional)",
                            ));
                        }
                        upload = Some(self.inner.put_multipart(location).await?);
                    }
                    let up = upload.as_mut().expect("just set");
                    up.put_part(part.into()).await?;
                }
            }
            let last = sealer.finish().map_err(|e| at.fail(e))?;
            match upload.as_mut() {
                None => {
                    let opts = PutOptions {
                        mode,
                        ..PutOptions::default()
                    };
                    self.inner.put_opts(location, last.into(), opts).await
                }
                Some(up) => {
                    up.put_part(last.into()).await?;
                    up.complete().await
                }
            }
        }
        .await;
        if result.is_err() {
            if let Some(mut up) = upload {
                // Best effort: the upload never completed, so nothing is
                // readable either way.
                let _ = up.abort().await;
            }
        }
        result
    }

    /// Copies by re-encrypting: the segment id is the path.
    async fn reencrypt(&self, from: &Path, to: &Path, mode: CopyMode) -> OsResult<()> {
        let source = self.get_whole(from, GetOptions::default()).await?;
        let ciphertext_fits_one_part = self
            .params_for(to)
            .ciphertext_len(source.meta.size)
            .is_ok_and(|len| len + SEGMENT_HEADER_LEN as u64 <= self.part_size as u64);
        let (_, _, _, body) = split(source);
        match mode {
            CopyMode::Overwrite => {
                self.upload_stream(to, to, body, PutMode::Overwrite).await?;
            }
            CopyMode::Create if ciphertext_fits_one_part => {
                self.upload_stream(to, to, body, PutMode::Create)
                    .await
                    .map_err(|e| match e {
                        super::os::Error::Precondition { path, source } => {
                            super::os::Error::AlreadyExists { path, source }
                        }
                        other => other,
                    })?;
            }
            CopyMode::Create => {
                // Staged beside the target under the target's id, then put
                // in place with the inner store's create-only copy.
                let staged = staging_path(to).map_err(|e| At::new(to, None).fail(e))?;
                let copied = async {
                    self.upload_stream(&staged, to, body, PutMode::Overwrite)
                        .await?;
                    self.inner
                        .copy_opts(
                            &staged,
                            to,
                            CopyOptions {
                                mode: CopyMode::Create,
                                ..CopyOptions::default()
                            },
                        )
                        .await
                }
                .await;
                let removed = self.inner.delete(&staged).await;
                copied?;
                removed?;
            }
        }
        Ok(())
    }
}

impl<S> fmt::Display for EncryptedStore<S>
where
    S: fmt::Display,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptedStore({}, zone {})", self.inner, self.zone.id())
    }
}

impl<S: fmt::Debug> fmt::Debug for EncryptedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedStore")
            .field("inner", &self.inner)
            .field("zone", &self.zone.id())
            .field("part_size", &self.part_size)
            .finish()
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for EncryptedStore<S> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> OsResult<PutResult> {
        let plaintext: Bytes = match payload.iter().count() {
            0 => Bytes::new(),
            1 => payload.iter().next().cloned().unwrap_or_default(),
            _ => {
                let mut all = Vec::with_capacity(payload.content_length());
                for piece in &payload {
                    all.extend_from_slice(piece);
                }
                Bytes::from(all)
            }
        };
        let params = self.params_for(location);
        let ciphertext = self
            .starting_segment(location, || {
                self.zone
                    .encrypt_segment_with(location.as_ref(), &plaintext, params)
            })
            .await?;
        self.inner.put_opts(location, ciphertext.into(), opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> OsResult<Box<dyn MultipartUpload>> {
        let params = self.params_for(location);
        let sealer = self
            .starting_segment(location, || {
                PartSealer::new(&self.zone, location.as_ref(), params, self.part_size)
            })
            .await?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(EncryptedUpload {
            inner,
            sealer: Some(sealer),
            failed: false,
            at: At::new(location, None),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> OsResult<GetResult> {
        if options.range.is_none() && !options.head {
            self.get_whole(location, options).await
        } else {
            self.get_ranged(location, options).await
        }
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> OsResult<Vec<Bytes>> {
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        for r in ranges {
            GetRange::Bounded(r.clone())
                .is_valid()
                .map_err(|e| At::new(location, Some(r.clone())).invalid_range(e))?;
        }
        // Through the kept opened segment if there is one; if the object
        // was replaced since, open it again.
        let kept = self
            .opened_for(location, &GetOptions::default())
            .filter(|hit| ranges.iter().all(|r| r.start < hit.segment.plaintext_len()));
        if let Some(hit) = kept {
            let tag = hit.e_tag.clone();
            match self
                .read_ranges(location, &hit.segment, Some(tag), None, ranges)
                .await
            {
                Err(super::os::Error::Precondition { .. }) => self.opened.remove(location.as_ref()),
                other => return other,
            }
        }
        let first = GetOptions {
            range: Some(GetRange::Bounded(0..SEGMENT_PREFIX_LEN as u64)),
            ..GetOptions::default()
        };
        let fetched = match self.inner.get_opts(location, first).await {
            Ok(r) => r,
            Err(e) => return Err(self.explain_failed_read(location, e).await),
        };
        let (meta, _, _, body) = split(fetched);
        let at = At::new(location, None);
        let prefix = collect(&at, body, SEGMENT_PREFIX_LEN as u64).await?;
        let segment = Arc::new(self.open(&at, location, &prefix, meta.size).await?);
        self.keep_opened(location, &meta, &segment);
        self.read_ranges(location, &segment, meta.e_tag, meta.version, ranges)
            .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, OsResult<Path>>,
    ) -> BoxStream<'static, OsResult<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, OsResult<ObjectMeta>> {
        let sizes = self.listing_sizes();
        self.inner
            .list(prefix)
            .map(move |meta| meta.and_then(|m| sizes.listed(m)))
            .boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, OsResult<ObjectMeta>> {
        let sizes = self.listing_sizes();
        self.inner
            .list_with_offset(prefix, offset)
            .map(move |meta| meta.and_then(|m| sizes.listed(m)))
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> OsResult<ListResult> {
        let mut result = self.inner.list_with_delimiter(prefix).await?;
        let objects = std::mem::take(&mut result.objects);
        let sizes = self.listing_sizes();
        result.objects = objects
            .into_iter()
            .map(|m| sizes.listed(m))
            .collect::<OsResult<_>>()?;
        Ok(result)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> OsResult<()> {
        self.reencrypt(from, to, options.mode).await
    }
}

/// How many times a write reloads a zone another node changed.
const RELOADS: u32 = 3;

/// Ciphertext ranges of one `get_ranges` call closer than this are
/// fetched in one GET.
const COALESCE_GAP: u64 = 1 << 20;

/// What [`EncryptedStore::put_multipart_opts`] returns: seals each part's
/// plaintext as it is handed in and passes whole ciphertext parts on.
struct EncryptedUpload {
    inner: Box<dyn MultipartUpload>,
    sealer: Option<PartSealer>,
    failed: bool,
    /// The object, for errors.
    at: At,
}

impl fmt::Debug for EncryptedUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedUpload")
            .field("inner", &self.inner)
            .field("parts", &self.sealer.as_ref().map(PartSealer::parts_done))
            .field("failed", &self.failed)
            .finish()
    }
}

#[async_trait]
impl MultipartUpload for EncryptedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let Self {
            inner,
            sealer,
            failed,
            at,
        } = self;
        let Some(sealer) = sealer.as_mut().filter(|_| !*failed) else {
            let e = at.fail(crate::Error::misuse(
                "the upload failed or was completed; start a new one",
            ));
            return Box::pin(async move { Err(e) });
        };
        // Each part goes to the inner upload as soon as it is sealed.
        let mut uploads: Vec<UploadPart> = Vec::new();
        let mut sealed = Ok(());
        for piece in &data {
            sealed = sealer.push(piece, &mut |part| uploads.push(inner.put_part(part.into())));
            if sealed.is_err() {
                break;
            }
        }
        if let Err(e) = sealed {
            *failed = true;
            let e = at.fail(e);
            return Box::pin(async move { Err(e) });
        }
        Box::pin(async move {
            for u in uploads {
                u.await?;
            }
            Ok(())
        })
    }

    async fn complete(&mut self) -> OsResult<PutResult> {
        let sealer = match self.sealer.take() {
            Some(s) if !self.failed => s,
            _ => {
                return Err(self.at.fail(crate::Error::misuse(
                    "the upload failed or was completed; start a new one",
                )))
            }
        };
        let last = sealer.finish().map_err(|e| {
            self.failed = true;
            self.at.fail(e)
        })?;
        self.inner.put_part(last.into()).await?;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> OsResult<()> {
        self.sealer = None;
        self.inner.abort().await
    }
}

/// A stream of the plaintext of `plan`, opening its ciphertext: `first`,
/// then `body`, one batch at a time (the next piece is read only when the
/// last is used up).
fn decrypting(
    at: At,
    segment: Arc<OpenedSegment>,
    plan: &CiphertextRange,
    first: Bytes,
    body: Payload,
) -> OsResult<Payload> {
    let mut batches = ChunkBatches::new(segment, plan);
    batches.push(first).map_err(|e| at.fail(e))?;
    Ok(stream::try_unfold(
        (batches, body, at),
        |(mut batches, mut body, at)| async move {
            loop {
                if let Some(out) = batches.next_batch().map_err(|e| at.fail(e))? {
                    if out.is_empty() {
                        continue;
                    }
                    return Ok(Some((out, (batches, body, at))));
                }
                match body.next().await {
                    Some(piece) => batches.push(piece?).map_err(|e| at.fail(e))?,
                    None => {
                        batches.finish().map_err(|e| at.fail(e))?;
                        return Ok(None);
                    }
                }
            }
        },
    )
    .boxed())
}

/// The plaintext of `plan` from its whole ciphertext `fetched`.
fn open_range(
    at: &At,
    segment: &Arc<OpenedSegment>,
    plan: &CiphertextRange,
    fetched: Bytes,
) -> OsResult<Bytes> {
    let mut batches = ChunkBatches::new(Arc::clone(segment), plan);
    batches.push(fetched).map_err(|e| at.fail(e))?;
    let mut pieces = Vec::new();
    while let Some(piece) = batches.next_batch().map_err(|e| at.fail(e))? {
        pieces.push(piece);
    }
    batches.finish().map_err(|e| at.fail(e))?;
    Ok(match pieces.len() {
        0 => Bytes::new(),
        1 => pieces.pop().expect("one piece"),
        _ => Bytes::from(pieces.concat()),
    })
}

/// All of a byte stream that answers a request for at most `max` bytes;
/// a store that sends more is refused as soon as it does (what storage
/// returns is not trusted to be what was asked for).
async fn collect(at: &At, mut body: Payload, max: u64) -> OsResult<Bytes> {
    let mut first: Option<Bytes> = None;
    let mut more = BytesMut::new();
    let mut total = 0u64;
    while let Some(piece) = body.next().await {
        let piece = piece?;
        total += piece.len() as u64;
        if total > max {
            return Err(at.fail(crate::Error::malformed(
                "object",
                format!("the store returned more than the {max} bytes asked for"),
            )));
        }
        match &first {
            None => first = Some(piece),
            Some(f) => {
                if more.is_empty() {
                    more.extend_from_slice(f);
                }
                more.extend_from_slice(&piece);
            }
        }
    }
    Ok(if more.is_empty() {
        first.unwrap_or_default()
    } else {
        more.freeze()
    })
}

/// What a listing needs to report plaintext sizes: the chunk size each
/// path's objects are written with.
struct ListingSizes {
    zone: Params,
    rules: ChunkSizes,
}

impl ListingSizes {
    /// A listed object's metadata with its plaintext size at the chunk size
    /// its path is written with (a listing reads no object).
    fn listed(&self, meta: ObjectMeta) -> OsResult<ObjectMeta> {
        let params = self
            .rules
            .for_path(meta.location.as_ref())
            .unwrap_or(self.zone);
        let plain =
            size_at(params, meta.size).map_err(|e| At::new(&meta.location, None).fail(e))?;
        Ok(ObjectMeta {
            size: plain,
            ..meta
        })
    }
}

/// The plaintext length of a segment `size` bytes long with `params`.
fn size_at(params: crate::stream::Params, size: u64) -> crate::Result<u64> {
    let Some(body) = size.checked_sub(SEGMENT_HEADER_LEN as u64) else {
        return Err(crate::Error::malformed(
            "object",
            format!("{size} bytes is shorter than a segment header: not an encrypted object"),
        ));
    };
    params.plaintext_len(body)
}

/// The hidden sibling a create-only copy is staged at.
fn staging_path(to: &Path) -> crate::Result<Path> {
    let mut random = [0u8; 8];
    crate::cipher::fill_random(&mut random)?;
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Path::from(format!("{to}.cmek-copy-{suffix}")))
}

/// A cmek error as the `object_store` error that carries it.
/// The object (and plaintext range) an operation is about: what every
/// error the adapter makes names.
#[derive(Clone, Debug)]
struct At {
    path: Path,
    range: Option<Range<u64>>,
}

impl At {
    fn new(path: &Path, range: Option<Range<u64>>) -> Self {
        Self {
            path: path.clone(),
            range,
        }
    }

    /// `e` as the `object_store` error that carries it (see
    /// [`ObjectError`] for which variant, and which are marked permanent).
    fn fail(&self, e: crate::Error) -> super::os::Error {
        let e = ObjectError::new(self.path.as_ref(), self.range.clone(), e);
        match Carrier::of(e) {
            Carrier::Transient(e) => super::os::Error::Generic {
                store: STORE_NAME,
                source: Box::new(e),
            },
            Carrier::Denied(path, source) => super::os::Error::PermissionDenied { path, source },
            Carrier::Permanent(source) => super::os::Error::Generic {
                store: STORE_NAME,
                source,
            },
        }
    }

    /// A range the caller asked for that the object cannot serve: the same
    /// request fails the same way, so it is not worth a retry.
    fn invalid_range(&self, e: impl std::fmt::Display) -> super::os::Error {
        self.fail(crate::Error::InvalidArgument(format!("range: {e}")))
    }
}

/// A `GetRange`'s plaintext bounds when it names them outright.
fn bounded(range: Option<&GetRange>) -> Option<Range<u64>> {
    match range {
        Some(GetRange::Bounded(r)) => Some(r.clone()),
        _ => None,
    }
}

fn not_supported(what: &str) -> super::os::Error {
    super::os::Error::NotSupported {
        source: what.to_string().into(),
    }
}
