//! [`ParquetKms`]: the KMS client of Parquet's key tools over a cmek key
//! provider, gated by the registry and the monitor.

use std::future::Future;
use std::sync::Arc;

use super::key::DataKey;
use super::material::{decode_base64, encode_base64};
use crate::monitor::KeyMonitor;
use crate::provider::{EncryptionContext, KeyProvider, KeyRef, WrappedKey};
use crate::registry::KeyRegistry;
use crate::secret::{SecretKey, KEY_LEN};
use crate::{Error, Result, StateRejection};

/// The prefix of the wrapped-key strings [`ParquetKms`] writes: version 1
/// of the format (`docs/PARQUET.md`, `docs/FORMAT.md`).
pub const WRAPPED_KEY_PREFIX: &str = "cmek1";

/// The encryption context's `cmek:purpose` value for Parquet keys.
pub const PARQUET_KEY_PURPOSE: &str = "parquet-key";

/// The longest master key id accepted (a KMS key ARN is under 300 bytes).
const MAX_MASTER_KEY_ID_LEN: usize = 2048;
/// The longest wrapped-key string accepted (a KMS ciphertext blob of a
/// 32-byte key is under 300 bytes; RSA wraps under 1 KiB).
const MAX_WRAPPED_KEY_LEN: usize = 16 << 10;

/// The encryption context a Parquet key of `len` bytes is wrapped with:
/// `cmek:purpose` = `parquet-key`, `cmek:key-length` = `len` in decimal.
pub fn parquet_key_context(len: usize) -> EncryptionContext {
    EncryptionContext::new()
        .with("cmek:purpose", PARQUET_KEY_PURPOSE)
        .with("cmek:key-length", len.to_string())
}

/// The KMS client of Parquet's key-management tools, on any
/// [`KeyProvider`]: wraps and unwraps Parquet data keys and key-encryption
/// keys under *master keys*, which are the provider's keys named as the
/// provider names them (a master key id is what
/// [`KeyProvider::key_ref`] takes: an AWS KMS key id, ARN or alias, a Cloud
/// KMS key name, a local key's name, ...).
///
/// # The wrapped-key string
///
/// Parquet stores what a KMS client returns as a string. This client's is
///
/// ```text
/// cmek1:<n>:<base64 of the provider's WrappedKey bytes>
/// ```
///
/// where `<n>` is the Parquet key's length in bytes (16, 24 or 32, in
/// decimal) and base64 is the standard alphabet with padding. The provider
/// wraps a 32-byte key: the Parquet key followed by `32 - n` zero bytes,
/// with the encryption context of [`parquet_key_context`]
/// (`cmek:purpose=parquet-key`, `cmek:key-length=<n>`). Unwrapping checks
/// that the padding is zero and that `<n>` is the length the context
/// bound. For AWS KMS, the `WrappedKey` bytes are KMS's `CiphertextBlob`
/// of `Encrypt` with that plaintext and that context, so a client in any
/// language can read and write these strings (`docs/PARQUET.md` has one in
/// Python).
///
/// # Gates
///
/// Before any provider call the master key is checked, as zones check
/// their root keys: with [`with_registry`](Self::with_registry), it must be
/// in the project's key registry (which validated it and counts it against
/// the key limit: [`register_master_key`](Self::register_master_key));
/// with [`with_monitor`](Self::with_monitor), it is watched, and refused
/// with [`Error::KeyUnavailable`] while the monitor's last check found it
/// unusable. A file names its master keys itself: the registry gate is
/// what keeps a planted file from making this client call the KMS with
/// keys the project never registered.
///
/// # Sync and async
///
/// The `async` methods are the client; the `_blocking` ones run them to
/// completion from blocking code: inside a multi-threaded tokio runtime
/// with `block_in_place`, outside any runtime on a runtime of the
/// client's own; inside a current-thread runtime they fail with
/// [`Error::Misuse`] (blocking would stall it). Parquet's key retriever is
/// blocking, so reading goes through the blocking form.
#[derive(Clone)]
pub struct ParquetKms {
    provider: Arc<dyn KeyProvider>,
    registry: Option<Arc<KeyRegistry>>,
    monitor: Option<Arc<KeyMonitor>>,
    blocker: Arc<crate::blocking::Blocker>,
}

impl std::fmt::Debug for ParquetKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetKms")
            .field("provider", &self.provider.kind())
            .field("registry", &self.registry.is_some())
            .field("monitor", &self.monitor.is_some())
            .finish_non_exhaustive()
    }
}

impl ParquetKms {
    /// A client of `provider`'s keys, without gates.
    pub fn new(provider: Arc<dyn KeyProvider>) -> Self {
        Self {
            provider,
            registry: None,
            monitor: None,
            blocker: Arc::default(),
        }
    }

    /// Only master keys registered in `registry` may be used (see the
    /// type's docs).
    pub fn with_registry(mut self, registry: Arc<KeyRegistry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Master keys are watched by `monitor` and refused while it reports
    /// them unusable (see the type's docs).
    pub fn with_monitor(mut self, monitor: Arc<KeyMonitor>) -> Self {
        self.monitor = Some(monitor);
        self
    }

    /// The provider.
    pub fn provider(&self) -> &Arc<dyn KeyProvider> {
        &self.provider
    }

    /// The reference of master key `master_key_id` (no call).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty or overlong id.
    pub fn master_key_ref(&self, master_key_id: &str) -> Result<KeyRef> {
        if master_key_id.is_empty() || master_key_id.len() > MAX_MASTER_KEY_ID_LEN {
            return Err(Error::InvalidArgument(format!(
                "a Parquet master key id is 1 to {MAX_MASTER_KEY_ID_LEN} bytes long, not {}",
                master_key_id.len()
            )));
        }
        Ok(self.provider.key_ref(master_key_id))
    }

    /// Registers master key `master_key_id` in the registry given to
    /// [`with_registry`](Self::with_registry), as zones' keys are: validated
    /// by a round trip, within the registry's key limit; idempotent
    /// ([`KeyRegistry::get_or_add`]).
    ///
    /// # Errors
    /// [`Error::Misuse`] without a registry; as
    /// [`KeyRegistry::get_or_add`] otherwise
    /// ([`Error::LimitExceeded`], [`Error::KeyValidationFailed`], ...).
    pub async fn register_master_key(&self, master_key_id: &str) -> Result<KeyRef> {
        let registry = self
            .registry
            .as_ref()
            .ok_or_else(|| Error::misuse("register_master_key needs with_registry"))?;
        let key = self.master_key_ref(master_key_id)?;
        registry
            .get_or_add(self.provider.as_ref(), key.clone(), &[])
            .await?;
        Ok(key)
    }

    /// Checks the gates for `master_key_id` and returns its reference.
    /// `from_file` says the id was read from a file (refused as state
    /// rather than as an argument when unregistered).
    pub(crate) fn gate(&self, master_key_id: &str, from_file: bool) -> Result<KeyRef> {
        let key = self.master_key_ref(master_key_id)?;
        if let Some(registry) = &self.registry {
            if registry.key(&key).is_none() {
                // Another process may have registered it since.
                registry.reload()?;
            }
            if registry.key(&key).is_none() {
                let reason = format!(
                    "master key {key} is not in the project's key registry: register it first"
                );
                return Err(if from_file {
                    Error::StateRejected {
                        what: "Parquet master key",
                        reason: StateRejection::Mismatch(reason),
                    }
                } else {
                    Error::InvalidArgument(reason)
                });
            }
        }
        if let Some(monitor) = &self.monitor {
            monitor.watch_key(key.clone(), self.provider.clone());
            if let Some(state) = monitor.key_status(&key) {
                if !state.is_usable() {
                    return Err(Error::KeyUnavailable {
                        key: key.to_string(),
                        state,
                    });
                }
            }
        }
        Ok(key)
    }

    /// Wraps `key` under master key `master_key_id`: the wrapped-key string
    /// Parquet stores (format in the type's docs).
    ///
    /// # Errors
    /// The gates' errors; the provider's ([`Error::KeyUnavailable`],
    /// [`Error::AccessDenied`], [`Error::ProviderUnreachable`], ...).
    pub async fn wrap_key(&self, key: &DataKey, master_key_id: &str) -> Result<String> {
        let root = self.gate(master_key_id, false)?;
        let n = key.len();
        let mut padded = [0u8; KEY_LEN];
        padded[..n].copy_from_slice(key.expose_secret());
        let secret = SecretKey::from_array(&mut padded);
        let wrapped = self
            .provider
            .wrap_key(&root, &secret, &parquet_key_context(n))
            .await?;
        Ok(format!(
            "{WRAPPED_KEY_PREFIX}:{n}:{}",
            encode_base64(wrapped.as_bytes())
        ))
    }

    /// Unwraps a wrapped-key string made by [`wrap_key`](Self::wrap_key)
    /// (here or by another client of the same format) under master key
    /// `master_key_id`. Both come from a file: they are checked as hostile.
    ///
    /// # Errors
    /// [`Error::Malformed`] for a string not in the format; the gates'
    /// errors; the provider's ([`Error::Integrity`] for a wrap under
    /// another key or context, [`Error::KeyUnavailable`] for a disabled
    /// key, [`Error::ProviderUnreachable`], ...); [`Error::Integrity`] if
    /// the padding is not zero.
    pub async fn unwrap_key(&self, wrapped: &str, master_key_id: &str) -> Result<DataKey> {
        let (n, blob) = parse_wrapped(wrapped)?;
        let root = self.gate(master_key_id, true)?;
        let secret = self
            .provider
            .unwrap_key(
                &root,
                &WrappedKey::from_bytes(blob),
                &parquet_key_context(n),
            )
            .await?;
        let bytes = secret.expose_secret();
        if bytes[n..].iter().fold(0u8, |acc, b| acc | b) != 0 {
            return Err(Error::tampered("Parquet wrapped key (padding)"));
        }
        DataKey::from_slice(&bytes[..n])
    }

    /// [`wrap_key`](Self::wrap_key) from blocking code (see the type's
    /// docs).
    ///
    /// # Errors
    /// As [`wrap_key`](Self::wrap_key); [`Error::Misuse`] inside a
    /// current-thread runtime.
    pub fn wrap_key_blocking(&self, key: &DataKey, master_key_id: &str) -> Result<String> {
        self.block_on(self.wrap_key(key, master_key_id))
    }

    /// [`unwrap_key`](Self::unwrap_key) from blocking code (see the type's
    /// docs).
    ///
    /// # Errors
    /// As [`unwrap_key`](Self::unwrap_key); [`Error::Misuse`] inside a
    /// current-thread runtime.
    pub fn unwrap_key_blocking(&self, wrapped: &str, master_key_id: &str) -> Result<DataKey> {
        self.block_on(self.unwrap_key(wrapped, master_key_id))
    }

    /// Runs `work` to completion from blocking code.
    pub(crate) fn block_on<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        self.blocker.block_on(
            "the Parquet KMS client cannot block inside a current-thread tokio runtime: \
             use a multi-threaded runtime, or its async methods",
            work,
        )
    }
}

/// Splits a wrapped-key string into the key length and the provider's
/// bytes.
fn parse_wrapped(wrapped: &str) -> Result<(usize, Vec<u8>)> {
    const WHAT: &str = "Parquet wrapped key";
    if wrapped.len() > MAX_WRAPPED_KEY_LEN {
        return Err(Error::LimitExceeded {
            what: "Parquet wrapped key length",
            limit: MAX_WRAPPED_KEY_LEN as u64,
        });
    }
    let mut parts = wrapped.splitn(3, ':');
    let (Some(prefix), Some(len), Some(blob)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Error::malformed(
            WHAT,
            format!("not {WRAPPED_KEY_PREFIX}:<length>:<base64>"),
        ));
    };
    if prefix != WRAPPED_KEY_PREFIX {
        return Err(Error::malformed(
            WHAT,
            format!("prefix {prefix:?} is not {WRAPPED_KEY_PREFIX}: written by another KMS client"),
        ));
    }
    let n: usize = match len {
        "16" => 16,
        "24" => 24,
        "32" => 32,
        _ => {
            return Err(Error::malformed(
                WHAT,
                format!("key length {len:?} is not 16, 24 or 32"),
            ))
        }
    };
    let bytes = decode_base64(blob, "wrapped key")?;
    if bytes.is_empty() {
        return Err(Error::malformed(WHAT, "empty"));
    }
    Ok((n, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MockProvider;

    fn kms() -> (ParquetKms, Arc<MockProvider>) {
        let mock = Arc::new(MockProvider::new());
        mock.add_key("mk1");
        mock.add_key("mk2");
        (ParquetKms::new(mock.clone()), mock)
    }

    #[tokio::test]
    async fn wraps_every_key_length_and_binds_the_master_key() {
        let (kms, _) = kms();
        for len in [16, 24, 32] {
            let key = DataKey::generate(len).unwrap();
            let wrapped = kms.wrap_key(&key, "mk1").await.unwrap();
            assert!(wrapped.starts_with(&format!("cmek1:{len}:")), "{wrapped}");
            assert_eq!(kms.unwrap_key(&wrapped, "mk1").await.unwrap(), key);
            assert!(kms.unwrap_key(&wrapped, "mk2").await.is_err());
        }
    }

    /// The string's layout as docs/FORMAT.md gives it: the prefix, the
    /// length, and base64 of what the provider wrapped: the key padded
    /// with zeros to 32 bytes, under the documented context.
    #[tokio::test]
    async fn the_wrapped_string_is_the_documented_layout() {
        let (kms, mock) = kms();
        let key = DataKey::from_slice(b"0123456789abcdef").unwrap();
        let wrapped = kms.wrap_key(&key, "mk1").await.unwrap();
        let blob = wrapped.strip_prefix("cmek1:16:").unwrap();
        let bytes = WrappedKey::from_bytes(decode_base64(blob, "t").unwrap());
        let context = EncryptionContext::new()
            .with("cmek:purpose", "parquet-key")
            .with("cmek:key-length", "16");
        let inner = mock
            .unwrap_key(&mock.key_ref("mk1"), &bytes, &context)
            .await
            .unwrap();
        let mut expected = [0u8; 32];
        expected[..16].copy_from_slice(b"0123456789abcdef");
        assert_eq!(inner.expose_secret(), &expected);
        assert_eq!(parse_wrapped("cmek1:24:AQID").unwrap(), (24, vec![1, 2, 3]));

        // A wrap whose padding is not zero is refused.
        let mut padded = [0x5au8; 32];
        let secret = SecretKey::from_array(&mut padded);
        let forged = mock
            .wrap_key(&mock.key_ref("mk1"), &secret, &context)
            .await
            .unwrap();
        let text = format!("cmek1:16:{}", encode_base64(forged.as_bytes()));
        let err = kms.unwrap_key(&text, "mk1").await.unwrap_err();
        assert!(matches!(err, Error::Integrity { .. }), "{err}");
    }

    #[tokio::test]
    async fn the_length_is_bound_by_the_context() {
        let (kms, _) = kms();
        let key = DataKey::generate(16).unwrap();
        let wrapped = kms.wrap_key(&key, "mk1").await.unwrap();
        let forged = wrapped.replacen("cmek1:16:", "cmek1:32:", 1);
        let err = kms.unwrap_key(&forged, "mk1").await.unwrap_err();
        assert!(matches!(err, Error::Integrity { .. }), "{err}");
    }

    #[tokio::test]
    async fn hostile_strings_are_malformed() {
        let (kms, mock) = kms();
        for bad in [
            "",
            "cmek1",
            "cmek1:16",
            "cmek2:16:AAAA",
            "cmek1:17:AAAA",
            "cmek1:016:AAAA",
            "cmek1:16:",
            "cmek1:16:!!",
            "AQIDBA==",
        ] {
            let err = kms.unwrap_key(bad, "mk1").await.unwrap_err();
            assert!(matches!(err, Error::Malformed { .. }), "{bad}: {err}");
        }
        let long = format!("cmek1:16:{}", "A".repeat(MAX_WRAPPED_KEY_LEN));
        assert!(matches!(
            kms.unwrap_key(&long, "mk1").await,
            Err(Error::LimitExceeded { .. })
        ));
        assert!(matches!(
            kms.unwrap_key("cmek1:16:AAAA", "").await,
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(mock.total_calls(), 0, "no provider call for a bad string");
    }

    #[test]
    fn blocking_forms_work_outside_a_runtime() {
        let (kms, _) = kms();
        let key = DataKey::generate(32).unwrap();
        let wrapped = kms.wrap_key_blocking(&key, "mk2").unwrap();
        assert_eq!(kms.unwrap_key_blocking(&wrapped, "mk2").unwrap(), key);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn blocking_inside_a_current_thread_runtime_is_misuse() {
        let (kms, _) = kms();
        let key = DataKey::generate(32).unwrap();
        assert!(matches!(
            kms.wrap_key_blocking(&key, "mk1"),
            Err(Error::Misuse { .. })
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocking_inside_a_multi_thread_runtime_works() {
        let (kms, _) = kms();
        let key = DataKey::generate(16).unwrap();
        let wrapped = kms.wrap_key_blocking(&key, "mk1").unwrap();
        assert_eq!(kms.unwrap_key_blocking(&wrapped, "mk1").unwrap(), key);
    }
}
