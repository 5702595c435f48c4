//! Encrypted object storage (features `object-store`, `object-store-013`):
//! [`EncryptedStore`](v014::EncryptedStore), an `object_store::ObjectStore`
//! that makes every object of an inner store a segment of a [`Zone`], and
//! [`ObjectManifestStore`](v014::ObjectManifestStore), a zone manifest (or
//! the key registry's state) kept as an object and replaced with the
//! store's conditional writes.
//!
//! The `object_store` ecosystem is split across two majors, and an adapter
//! on the wrong one cannot be plugged in at all, so both are served by one
//! core:
//!
//! | feature | module | `object_store` | serves, for example |
//! |---|---|---|---|
//! | `object-store` | [`v014`] | 0.14 | SlateDB 0.18 |
//! | `object-store-013` | [`v013`] | 0.13 | DataFusion 55 |
//!
//! Each module re-exports the `object_store` crate it is built on
//! (`v014::object_store`), so a caller names the same types.
//!
//! # What the adapter does
//!
//! * **Writes.** `put` encrypts the payload as one segment under a fresh
//!   DEK; `put_multipart` seals chunks as parts arrive and hands the inner
//!   store parts cut on chunk boundaries, each at least
//!   [`DEFAULT_PART_SIZE`] (the smallest part S3 accepts; see
//!   `with_part_size`), keeping at most one chunk of plaintext besides the
//!   part being filled. `PutMode` (create, update), tags and attributes
//!   pass through. An aborted or abandoned upload leaves nothing readable.
//! * **Segment ids are paths.** Each object's segment id is its path
//!   (`Path::as_ref`), so an object moved or copied by the inner store, or
//!   swapped with another, does not decrypt ([`Error::Integrity`]).
//!   `copy` and `rename` therefore re-encrypt: the object is decrypted as
//!   a stream and encrypted under the destination's id with a fresh DEK, in
//!   bounded memory. A copy in `CopyMode::Create` of an object longer than
//!   one part is staged at a hidden sibling (`NAME.cmek-copy-RANDOM`) and
//!   moved into place with the inner store's own create-only copy, so it
//!   needs an inner store that supports one; shorter objects are written
//!   with a create-only `put`.
//! * **Reads.** Offsets and sizes are plaintext: `get_opts` takes every
//!   `GetRange` form and reports `meta.size` and `range` in plaintext bytes.
//!   A range read fetches the segment's first [`SEGMENT_PREFIX_LEN`] bytes
//!   (its header and stream header; with them the first chunks when the
//!   range starts within [`MERGED_READ_LIMIT`] bytes of the start), then
//!   the whole chunks that hold the range — with the last chunk when the
//!   range reaches the end, so a truncated object is found out — in one
//!   ranged GET conditioned on the first one's ETag. The segment opened
//!   (its DEK unwrapped, its stream key derived) is kept by path and ETag
//!   ([`DEFAULT_OPENED_SEGMENTS`] of them): the next range read of the same
//!   object is the chunks' GET alone, conditioned on that ETag, so a
//!   replaced object is opened again, never read with the old key. Every chunk
//!   authenticates before any of its bytes is returned. A whole-object
//!   `get` streams: chunks are opened as they arrive, a batch of at most
//!   [`MAX_BATCH`] bytes at a time.
//! * **Metadata.** `head` reads the segment's prefix (one small ranged
//!   GET, no key call) and reports the plaintext size its header implies;
//!   a foreign object fails there. `list` cannot read every object: it
//!   reports the size an object of the listed length has at the zone's
//!   chunk size, and an entry whose length no segment has is an error
//!   item. ETags, versions and `last_modified` are the stored object's.
//! * **Chunk sizes.** A ranged read fetches the whole chunks that hold the
//!   range, so the chunk size bounds what a small read costs. Objects are
//!   written at the zone's chunk size unless [`ChunkSizes`] (see
//!   `with_chunk_sizes`) gives their path another: [`ChunkSizes::slatedb`]
//!   writes SSTs in [`BLOCK_CHUNK_SIZE`] chunks. Each object's header
//!   records its chunk size.
//! * **Errors.** A cmek failure reaches the caller as an `object_store`
//!   error whose source is an [`ObjectError`]: the object's path, the
//!   range read, and the [`Error`] (an integrity failure, an unavailable
//!   zone, a foreign or malformed object; [`ObjectError::find`] reaches it
//!   through any wrapper). Transient failures (an unreachable or throttling
//!   KMS) are `Generic`, which engines retry; permanent ones are marked so
//!   that engines do not retry them — a revoked key as `PermissionDenied`,
//!   the rest as `Generic`, both under SlateDB's `NonRetryable` marker
//!   with feature `slatedb` (see [`ObjectError`] and `docs/ENGINES.md`).
//!   A segment naming an EZK newer than the zone holds (written by another
//!   node after a rotation) makes the adapter reload the zone and open it
//!   again, once. The inner store's errors pass through unchanged.
//!
//!
//! # Conformance
//!
//! The `object_store` crate's own conformance tests (its `integration`
//! module) run against the adapter on both majors, over `InMemory`,
//! `LocalFileSystem` and S3 (a moto server): `put_get_delete_list`,
//! `get_opts`, `put_opts`, `list_uses_directories_correctly`,
//! `list_with_delimiter`, `list_with_offset_exclusivity`,
//! `rename_and_copy`, `copy_if_not_exists`, `copy_rename_nonexistent_object`,
//! `stream_get`, `multipart_out_of_order`, `get_nonexistent_object`; with
//! `multipart_race_condition` where the inner store supports it (not
//! `LocalFileSystem`) and `put_get_attributes` over `InMemory` and S3. Left out:
//! `multipart` and `list_paginated` take the lower-level `MultipartStore`
//! and `PaginatedListStore` traits, which the adapter does not implement
//! (parts addressed by index could arrive in any order, while a segment is
//! sealed as one stream); `signing`, `tagging` and `s3_encryption` test
//! S3's own client. Every size and offset those tests check holds in
//! plaintext; ETags and versions are the stored objects'.
//!
//! [`Zone`]: crate::zone::Zone
//! [`Error`]: crate::Error
//! [`Error::Integrity`]: crate::Error::Integrity
//! [`SEGMENT_PREFIX_LEN`]: crate::zone::SEGMENT_PREFIX_LEN

mod cache;
mod chunks;
mod error;
mod opening;
mod sealing;

#[cfg(feature = "object-store-013")]
#[cfg_attr(docsrs, doc(cfg(feature = "object-store-013")))]
pub mod v013;
#[cfg(feature = "object-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "object-store")))]
pub mod v014;

pub(crate) use cache::{Opened, OpenedCache};
pub use chunks::{ChunkSizes, BLOCK_CHUNK_SIZE};
pub(crate) use error::Carrier;
pub use error::{is_retryable, ObjectError};
pub(crate) use opening::{ended_early, ChunkBatches};
pub(crate) use sealing::PartSealer;

/// The `store` name in the `object_store` errors the adapter makes.
pub const STORE_NAME: &str = "cmek";

/// The default smallest part the adapter hands a multipart upload: 5 MiB,
/// the least S3 accepts for any part but the last.
pub const DEFAULT_PART_SIZE: usize = 5 << 20;

/// A range starting within this many bytes of a segment's start is read
/// with its header in one GET.
pub const MERGED_READ_LIMIT: u64 = 256 << 10;

/// How many opened segments an `EncryptedStore` keeps by default (see
/// `with_opened_segments`).
pub const DEFAULT_OPENED_SEGMENTS: usize = 1024;

/// The most ciphertext a streaming read opens at once (on several threads
/// when large): bounds the plaintext buffered per batch.
pub const MAX_BATCH: usize = 4 << 20;
