//! # cmek — envelope encryption at rest with customer-managed keys
//!
//! `cmek` is a library for storage engines that must keep data encrypted at rest
//! under keys their customers control. It implements a three-level envelope
//! hierarchy:
//!
//! ```text
//! KMS key (the customer's; never leaves the KMS)
//!   └─ wraps ─> EZK  encryption-zone key, one per zone (database, cluster, tenant)
//!                 └─ wraps ─> DEK  data encryption key, one per segment (file, object)
//!                               └─ encrypts ─> segment data, AES-256-GCM chunks
//! ```
//!
//! The KMS is slow and rate-limited, so it is called when a zone is opened,
//! rotated or re-checked — never per segment.
//!
//! ## Layers
//!
//! Each module owns one layer; lower layers never import higher ones.
//!
//! * [`secret`] — key material: zeroized on drop, redacted `Debug`, constant-time
//!   equality.
//! * `cipher` (crate-private) — AES-256-GCM, key wrapping, HKDF-SHA256, on
//!   one of two interchangeable backends (aws-lc-rs or RustCrypto).
//! * [`provider`] — the [`KeyProvider`] trait implemented by
//!   every root of trust, and the local key-file provider.
//! * [`stream`] — the segment body: Tink-compatible streaming AES-256-GCM in
//!   chunks, one-shot, `Read`/`Write`/`Seek` adapters, positional reads
//!   through `&self` and ranged access.
//! * [`zone`] — encryption zones: EZK versions under a root key, per-segment
//!   DEKs in self-describing headers, rotation and rewrap.
//! * [`budget`] — a call budget for a provider: token buckets per provider
//!   and per root key, priorities, backoff on throttling, coalesced unwraps.
//! * [`registry`] — the project key registry: key limit, validation, region
//!   rule, no removal of a key in use.
//! * `object_store` (features `object-store`, `object-store-013`) — an
//!   `object_store::ObjectStore` whose objects are segments of a zone, read
//!   by authenticated ranges, and zone state kept as objects.
//! * `parquet` (feature `parquet`) — Parquet modular encryption under
//!   master keys of any provider: the key tools' KMS client and key
//!   material.
//! * [`tenancy`] — many zones in one process: a [`ZoneSet`](tenancy::ZoneSet)
//!   opens zones on demand from the engine's catalog, single-flight,
//!   bounded by count and bytes, evicting idle zones.
//! * [`backup`] — backups of encrypted zones and their restore into a new
//!   zone (rewrapped or re-encrypted) or to plaintext, across regions.
//! * `testing` (feature `testing`) — an in-memory provider that counts calls and
//!   injects faults, the provider conformance suite and the scenario suite
//!   (zones, the key monitor and backups on a provider's keys).
//!
//! Errors from every layer are one enum, [`Error`], whose variants a caller can
//! act on.
//!
//! ## Cargo features
//!
//! On docs.rs, which documents every feature but `fuzzing`, each
//! feature-gated item names the feature it needs.
//!
//! | feature | default | what it adds | what it pulls in |
//! |---|---|---|---|
//! | `aws-lc` | yes | the fast cipher backend on aws-lc-rs (AES-256-GCM, HKDF-SHA256, SHA-256); the default backend when both are enabled | `aws-lc-rs` (builds C and assembly: needs a C compiler) |
//! | `ring` | yes | a second AES-256-GCM engine on `ring`, chosen at run time on x86-64 CPUs with VAES and AVX2 but no AVX-512 (`engine`) | `ring` (builds C and assembly) |
//! | `fips` | no | aws-lc-rs's FIPS 140-3 module in FIPS mode, and only it: the engine is aws-lc-rs whatever the CPU, key wraps take their nonce and keys their bytes from the module (docs/FIPS.md); a build mode, not an addition: the test suite's feature set leaves it out | `aws-lc-fips-sys` (needs CMake and Go to build) |
//! | `rustcrypto` | no | the pure-Rust cipher backend on RustCrypto; the default backend when `aws-lc` is off | `aes-gcm`, `hkdf`, `sha2` |
//! | `aws-kms` | yes | `provider::AwsKmsProvider` and `provider::aws` (ARNs, IAM policy documents) | `aws-config`, `aws-sdk-kms` and their HTTPS client (rustls on aws-lc-rs: C even without `aws-lc`), `serde_json` |
//! | `gcp-kms` | no | `provider::GcpKmsProvider` and `provider::gcp` (Cloud KMS key names, the location table, the IAM document); in the CLI, `gcp:` keys and `cmek policy gcp` | `google-cloud-kms-v1` (HTTP/JSON; its long-running-operations dependency brings `tonic` and `prost`), `google-cloud-auth`, `google-cloud-gax`, `google-cloud-wkt`, `http`, `crc32c`, `serde_json`, with rustls on aws-lc-rs; needs Rust 1.91 |
//! | `azure-kv` | no | `provider::AzureKeyVaultProvider` and `provider::azure` (Azure Key Vault and Managed HSM keys, the access document, `BearerToken`); the CLI's `azure:` keys | `azure_security_keyvault_keys`, `azure_identity`, `azure_core`, `reqwest` (rustls on aws-lc-rs), `serde_json` |
//! | `pkcs11` | no | `provider::Pkcs11Provider` and `provider::pkcs11`: an AES-256 key in an HSM or any PKCS#11 token as the root of trust (AES-GCM or AES key wrap with padding, chosen from the token); in the `cmek` tool, `pkcs11:` keys (docs/PKCS11.md) | `cryptoki` (loads the vendor's module at run time; links no C library) |
//! | `kmip` | no | `provider::KmipProvider` and `provider::kmip`: a key on a KMIP 1.4 key server over mutual TLS (its own TTLV client), and `kmip:UID` keys in the `cmek` tool | `rustls` and `tokio-rustls` (on aws-lc-rs, as the AWS SDK's: C even without `aws-lc`), tokio's `net` |
//! | `tokio` | no | `stream::AsyncEncryptingWriter` and `stream::AsyncDecryptingReader` (`AsyncWrite`/`AsyncRead`), and the zone's `Zone::async_segment_writer` and `Zone::async_segment_reader` | tokio's `io-util` |
//! | `object-store` | no | `object_store::v014`: `EncryptedStore`, an `ObjectStore` on `object_store` 0.14 (SlateDB 0.18) that encrypts every object of an inner store as a zone segment, and `ObjectManifestStore`, zone or registry state kept as an object | `object_store` 0.14 (no cloud backend: bring your own), `futures-util`, tokio's multi-threaded runtime |
//! | `object-store-013` | no | the same on `object_store` 0.13 (DataFusion 55), `object_store::v013` | `object_store` 0.13, `futures-util`, tokio's multi-threaded runtime |
//! | `slatedb` | no | `object-store`, with the adapter's permanent errors (corruption, a revoked key, a refused request) marked with SlateDB's `NonRetryable`, so SlateDB returns them instead of retrying forever (`object_store::ObjectError`) | `slatedb-common` (its `retry` marker only) |
//! | `parquet` | no | `parquet`: Parquet modular encryption with master keys of any key provider — a KMS client for Parquet's key-management tools, their key material (readable by PyArrow and parquet-java), gated by the registry and the monitor, and master-key rotation of external key material (docs/PARQUET.md) | `parquet` (its `encryption` feature, on `ring`), `serde_json`, `base64` |
//! | `testing` | no | `testing::MockProvider`, an in-memory key provider that counts calls and injects faults, for tests and benchmarks; `testing::conformance` and `testing::scenarios`, the suites every provider runs | nothing |
//! | `cli` | yes | the `cmek` operator command-line tool (`src/bin/cmek`); no library API of its own | `aws-kms`, `clap`, `indicatif`, `serde_json`, tokio's runtime |
//! | `fuzzing` | no | the fuzz targets' bodies (for `fuzz/`) and the crate-private cipher primitives (for the cipher and stream benches); hidden, not a stable API | nothing |
//!
//! `object-store-any` is the core the two object-store features share;
//! either turns it on, and it adds nothing usable alone.
//!
//! At least one cipher backend must be enabled. Without C:
//! `cargo build --no-default-features --features rustcrypto`; without the
//! AWS SDK: `--no-default-features --features aws-lc`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// docs.rs: each feature-gated item says which features it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

// `ring` is an extra AES-GCM engine, not a backend of its own: SHA-256 and
// HKDF come from one of these two.
#[cfg(not(any(feature = "aws-lc", feature = "rustcrypto")))]
compile_error!("cmek needs a cipher backend: enable feature `aws-lc` (default) or `rustcrypto`");

pub mod backup;
#[cfg(any(feature = "object-store-any", feature = "parquet"))]
mod blocking;
pub mod budget;
// The primitives are not API: envelopes are. Fuzz targets and the cipher
// benches reach them through the unstable `fuzzing` feature.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod cipher;
#[cfg(not(feature = "fuzzing"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod cipher;
mod codec;
pub mod engine;
mod error;
#[cfg(test)]
mod fault_tests;
mod fsutil;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(test)]
mod hygiene_tests;
pub mod metrics;
pub mod monitor;
#[cfg(feature = "object-store-any")]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "object-store", feature = "object-store-013")))
)]
pub mod object_store;
#[cfg(feature = "parquet")]
#[cfg_attr(docsrs, doc(cfg(feature = "parquet")))]
pub mod parquet;
pub mod provider;
pub mod registry;
pub mod secret;
pub mod stream;
pub mod tenancy;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod zone;

pub use error::{Error, ErrorKind, IntegrityFailure, Result, StateRejection};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
pub use provider::{EncryptionContext, KeyProvider, KeyRef, KeyState, WrappedKey};
pub use secret::SecretKey;
