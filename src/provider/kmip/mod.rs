//! The KMIP provider: a key on a KMIP key server (an enterprise key
//! manager, or an HSM with a KMIP interface) as the root of trust, over
//! mutual TLS (feature `kmip`). docs/KMIP.md is the operator's guide.
//!
//! * **Wrap / unwrap** are the server's Encrypt / Decrypt with AES-256-GCM
//!   under the root key, the server choosing the IV, and
//!   `root_wrap_aad(unique identifier, context)` (the encoding the local
//!   provider authenticates) as the additional data: the context is bound
//!   by the server's own GCM tag. The [`WrappedKey`] is cmek's versioned
//!   format around IV, tag and ciphertext (docs/FORMAT.md "KMIP wrapped
//!   key"). New keys are generated locally and encrypted (the default
//!   [`generate_key`](KeyProvider::generate_key)).
//! * **Key identifiers** are the server's Unique Identifiers, as Create
//!   returned them; there are no aliases.
//! * **States** come from Get Attributes: Active is
//!   [`KeyState::Enabled`]; Pre-Active and Deactivated are
//!   [`KeyState::Disabled`]; Compromised is [`KeyState::Unavailable`];
//!   Destroyed and Destroyed Compromised are [`KeyState::NotFound`] (the
//!   key material is gone). A server refusing Encrypt or Decrypt with
//!   Permission Denied is asked for the key's state once more, so that a
//!   key that is not Active is reported as unavailable in its state rather
//!   than as an access problem.
//! * **Administration** ([`KeyProvider::admin`]): create is Create (an
//!   AES-256 key for Encrypt and Decrypt) then Activate; disable is Revoke
//!   (reason Cessation of Operation), after which the key is Deactivated;
//!   enable is Activate, which KMIP allows only from Pre-Active: a
//!   Deactivated key cannot be made Active again, and enabling one fails
//!   with [`Error::InvalidArgument`] saying so. Disabling is therefore
//!   final: rotate zones to a new key instead of disabling the old one
//!   until the rotation is done.
//! * **Regions**: a key server is where it is. The provider serves the one
//!   region it is configured with ([`KmipOptions::region`],
//!   `CMEK_KMIP_REGION`), and its keys serve only that region.
//! * **Faults**: a server that cannot be reached or does not answer within
//!   [`KmipOptions::call_timeout`] is [`Error::ProviderUnreachable`]; a TLS
//!   handshake refused by either side is [`Error::ProviderRejected`]; KMIP
//!   result reasons map to distinct variants (see docs/KMIP.md). No call is
//!   retried.
//!
//! This module owns everything KMIP: the TTLV codec, the messages, the
//! wrapped-key format. It must not cache keys or retry.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::kit::{check_kind, region_mismatch, root_wrap_aad};
use super::{EncryptionContext, KeyAdmin, KeyProvider, KeyRef, KeyState, NewKey, WrappedKey};
use crate::secret::SecretKey;
use crate::{Error, Result};

pub(crate) mod message;
mod transport;
pub(crate) mod ttlv;
pub(crate) mod wrapped;

use message::{reason, Described, Failure, ObjectState, Operation};
use transport::Transport;
use ttlv::Item;
use wrapped::Wrapped;

/// Provider kind of [`KmipProvider`] in a [`KeyRef`].
pub const KMIP_PROVIDER: &str = "kmip";

/// The region of a provider whose configuration names none.
pub const DEFAULT_KMIP_REGION: &str = "kmip";

/// Why a KMIP key cannot be used from another region.
const ELSEWHERE: &str = "a KMIP key server serves the one region it is configured for \
     (CMEK_KMIP_REGION): use a key of a key server configured for that region";

/// Where the key server is and how to authenticate to it. Build it with
/// [`new`](Self::new) or [`from_env`](Self::from_env), then set fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KmipOptions {
    /// The server, `HOST:PORT` (KMIP's registered port is 5696).
    pub endpoint: String,
    /// The name the server's certificate must carry; `None` takes the
    /// endpoint's host.
    pub server_name: Option<String>,
    /// PEM file of the CA certificate(s) the server's certificate must
    /// chain to (only these: the system's roots are not used).
    pub ca_file: PathBuf,
    /// PEM file of the client certificate (chain) presented to the server.
    pub cert_file: PathBuf,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1
    /// or SEC1, unencrypted; keep it readable by the service only).
    pub key_file: PathBuf,
    /// The region this key server serves.
    pub region: String,
    /// Upper bound for establishing a connection.
    pub connect_timeout: Duration,
    /// Upper bound for one call: connection, handshake, request, response.
    pub call_timeout: Duration,
}

impl KmipOptions {
    /// Options for the server at `endpoint` with the given CA, client
    /// certificate and key files; region [`DEFAULT_KMIP_REGION`], 3 s to
    /// connect, 10 s per call.
    pub fn new(
        endpoint: impl Into<String>,
        ca_file: impl Into<PathBuf>,
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            server_name: None,
            ca_file: ca_file.into(),
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            region: DEFAULT_KMIP_REGION.into(),
            connect_timeout: Duration::from_secs(3),
            call_timeout: Duration::from_secs(10),
        }
    }

    /// Options from the environment: `CMEK_KMIP_ENDPOINT`, `CMEK_KMIP_CA`,
    /// `CMEK_KMIP_CERT`, `CMEK_KMIP_KEY` (required), `CMEK_KMIP_SERVER_NAME`
    /// and `CMEK_KMIP_REGION` (optional); the rest as [`new`](Self::new).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming a required variable that is unset
    /// or empty.
    pub fn from_env() -> Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let required = |name: &str| {
            var(name).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{name} is not set (a KMIP provider needs CMEK_KMIP_ENDPOINT, \
                     CMEK_KMIP_CA, CMEK_KMIP_CERT and CMEK_KMIP_KEY)"
                ))
            })
        };
        let mut options = Self::new(
            required("CMEK_KMIP_ENDPOINT")?,
            required("CMEK_KMIP_CA")?,
            required("CMEK_KMIP_CERT")?,
            required("CMEK_KMIP_KEY")?,
        );
        options.server_name = var("CMEK_KMIP_SERVER_NAME");
        if let Some(region) = var("CMEK_KMIP_REGION") {
            options.region = region;
        }
        Ok(options)
    }
}

/// Root keys on a KMIP key server. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct KmipProvider {
    transport: Transport,
    region: String,
    requests: Arc<AtomicU64>,
}

impl KmipProvider {
    /// A provider for the server `options` names. Reads the certificate
    /// and key files now; makes no call.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an endpoint, server name or file
    /// that cannot be used (the message names it); [`Error::Io`] for a
    /// file that cannot be read.
    pub fn new(options: &KmipOptions) -> Result<Self> {
        if options.region.is_empty() {
            return Err(Error::InvalidArgument(
                "KMIP provider region is empty".into(),
            ));
        }
        let transport = Transport::new(
            &options.endpoint,
            options.server_name.as_deref(),
            &options.ca_file,
            &options.cert_file,
            &options.key_file,
            options.connect_timeout,
            options.call_timeout,
        )?;
        Ok(Self {
            transport,
            region: options.region.clone(),
            requests: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A provider from [`KmipOptions::from_env`].
    ///
    /// # Errors
    /// As [`KmipOptions::from_env`] and [`new`](Self::new).
    pub fn from_env() -> Result<Self> {
        Self::new(&KmipOptions::from_env()?)
    }

    /// The region this provider serves.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// How many requests this provider (and its clones) sent to the key
    /// server so far, answered or not: for metrics, and for tests that a
    /// data path makes none.
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The reference of the key with unique identifier `uid`, in this
    /// provider's region.
    pub fn key_ref(&self, uid: &str) -> KeyRef {
        KeyRef::new(KMIP_PROVIDER, uid, &self.region)
    }

    /// The unique identifier to send for `root`, which must be a KMIP key
    /// of this provider's region.
    fn uid_of<'a>(&self, root: &'a KeyRef) -> Result<&'a str> {
        check_kind(KMIP_PROVIDER, root)?;
        if root.region() != self.region {
            return Err(region_mismatch(root, &self.region, ELSEWHERE));
        }
        Ok(root.key_id())
    }

    /// Sends `request` for `operation`; the payload, or the server's
    /// refusal.
    async fn call(
        &self,
        request: Item,
        operation: Operation,
    ) -> Result<std::result::Result<Item, Failure>> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = self.transport.call(&request, operation.name()).await?;
        message::response(&response, operation)
    }

    /// Sends `request`; a refusal becomes an error for key `root`.
    async fn call_ok(&self, request: Item, operation: Operation, root: &KeyRef) -> Result<Item> {
        match self.call(request, operation).await? {
            Ok(payload) => Ok(payload),
            Err(failure) => Err(self.refusal(failure, operation, root).await),
        }
    }

    /// The error for a refused operation. Permission Denied on a key
    /// operation is looked into with one Get Attributes: a key that is not
    /// Active is unavailable in its state, not an access problem.
    async fn refusal(&self, failure: Failure, operation: Operation, root: &KeyRef) -> Error {
        if failure.reason == reason::PERMISSION_DENIED
            && matches!(operation, Operation::Encrypt | Operation::Decrypt)
        {
            if let Ok(Ok(payload)) = self
                .call(
                    message::get_attributes(root.key_id()),
                    Operation::GetAttributes,
                )
                .await
            {
                if let Ok(d) = message::described(&payload) {
                    let state = map_state(d.state);
                    if state != KeyState::Enabled {
                        return Error::KeyUnavailable {
                            key: root.to_string(),
                            state,
                        };
                    }
                }
            }
        }
        map_failure(&failure, operation, root)
    }

    /// Get Attributes of `root`.
    async fn described(&self, root: &KeyRef) -> Result<Described> {
        let uid = self.uid_of(root)?;
        let payload = self
            .call_ok(message::get_attributes(uid), Operation::GetAttributes, root)
            .await?;
        message::described(&payload)
    }
}

/// The operations a service's client certificate must be allowed on its
/// keys: what cmek calls on the data's behalf. Creating, activating and
/// revoking keys are the operator's and are not granted here.
pub const SERVICE_OPERATIONS: [&str; 3] = ["Encrypt", "Decrypt", "Get Attributes"];

/// The access document for keys `uids`: a JSON object naming the KMIP
/// operations ([`SERVICE_OPERATIONS`]) the client certificate cmek presents
/// must be allowed on exactly these objects. KMIP servers express access
/// policy each in their own way (an operation policy, a group, a role):
/// this is what to grant, to be written in the server's own terms.
///
/// # Errors
/// [`Error::InvalidArgument`] for an empty list or an empty identifier.
pub fn access_policy(uids: &[&str]) -> Result<String> {
    if uids.is_empty() || uids.iter().any(|u| u.is_empty()) {
        return Err(Error::InvalidArgument(
            "an access policy needs at least one KMIP unique identifier, none empty".into(),
        ));
    }
    let list = |items: &mut dyn Iterator<Item = &str>| {
        items
            .map(|i| format!("\"{}\"", json_escape(i)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Ok(format!(
        "{{\n  \"provider\": \"kmip\",\n  \"protocol\": \"KMIP {}.{}\",\n  \
         \"operations\": [{}],\n  \"unique_identifiers\": [{}]\n}}",
        message::PROTOCOL_VERSION.0,
        message::PROTOCOL_VERSION.1,
        list(&mut SERVICE_OPERATIONS.iter().copied()),
        list(&mut uids.iter().copied()),
    ))
}

/// `s` as the inside of a JSON string.
fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// Maps a KMIP refusal onto cmek's errors.
fn map_failure(failure: &Failure, operation: Operation, root: &KeyRef) -> Error {
    let key = root.to_string();
    match failure.reason {
        reason::ITEM_NOT_FOUND => Error::KeyUnavailable {
            key,
            state: KeyState::NotFound,
        },
        reason::PERMISSION_DENIED | reason::AUTHENTICATION_NOT_SUCCESSFUL => Error::AccessDenied {
            key,
            operation: operation.name(),
        },
        reason::CRYPTOGRAPHIC_FAILURE if operation == Operation::Decrypt => {
            Error::tampered("KMIP ciphertext (wrong key, wrong context or modified)")
        }
        // PyKMIP reports a GCM tag mismatch as General Failure: on
        // Decrypt it is read as the integrity failure it almost always is;
        // the server's message is logged.
        reason::GENERAL_FAILURE if operation == Operation::Decrypt => {
            tracing::warn!(
                key = %root,
                message = %failure.message,
                "KMIP Decrypt failed with General Failure: read as an integrity failure"
            );
            Error::tampered("KMIP ciphertext (wrong key, wrong context or modified)")
        }
        code => Error::rejected(
            KMIP_PROVIDER,
            format!("{} ({code:#x})", reason::name(code)),
            format!("{}: {}", operation.name(), failure.message),
        ),
    }
}

/// The cmek state of a KMIP object state.
fn map_state(state: ObjectState) -> KeyState {
    match state {
        ObjectState::Active => KeyState::Enabled,
        ObjectState::PreActive | ObjectState::Deactivated => KeyState::Disabled,
        ObjectState::Compromised => KeyState::Unavailable,
        ObjectState::Destroyed | ObjectState::DestroyedCompromised => KeyState::NotFound,
    }
}

#[async_trait]
impl KeyProvider for KmipProvider {
    fn kind(&self) -> &str {
        KMIP_PROVIDER
    }

    fn key_ref(&self, key_id: &str) -> KeyRef {
        KmipProvider::key_ref(self, key_id)
    }

    /// A KMIP key serves only the region of its provider.
    fn key_in_region(&self, root: &KeyRef, region: &str) -> Result<KeyRef> {
        check_kind(KMIP_PROVIDER, root)?;
        if root.region() == region {
            Ok(root.clone())
        } else {
            Err(region_mismatch(root, region, ELSEWHERE))
        }
    }

    fn admin(&self) -> Option<&dyn KeyAdmin> {
        Some(self)
    }

    /// [`access_policy`] on the keys' unique identifiers.
    fn access_policy(&self, keys: &[KeyRef]) -> Result<Option<String>> {
        for key in keys {
            check_kind(KMIP_PROVIDER, key)?;
        }
        let uids: Vec<&str> = keys.iter().map(KeyRef::key_id).collect();
        access_policy(&uids).map(Some)
    }

    async fn wrap_key(
        &self,
        root: &KeyRef,
        key: &SecretKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey> {
        let uid = self.uid_of(root)?;
        let aad = root_wrap_aad(uid, context);
        let payload = self
            .call_ok(
                message::encrypt(uid, key.expose_secret(), &aad),
                Operation::Encrypt,
                root,
            )
            .await?;
        let out = message::encrypted(&payload)?;
        let wrapped = Wrapped::new(out.iv, out.tag, out.data)?;
        Ok(WrappedKey::from_bytes(wrapped.to_bytes()))
    }

    async fn unwrap_key(
        &self,
        root: &KeyRef,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<SecretKey> {
        let uid = self.uid_of(root)?;
        let parsed = Wrapped::parse(wrapped.as_bytes())?;
        let aad = root_wrap_aad(uid, context);
        let payload = self
            .call_ok(
                message::decrypt(uid, &parsed.ciphertext, &parsed.iv, &aad, &parsed.tag),
                Operation::Decrypt,
                root,
            )
            .await?;
        let plaintext = message::decrypted(&payload)?;
        SecretKey::from_slice(&plaintext)
    }

    /// Get Attributes: the state, mapped as the [module docs](self) say.
    /// A key that is not an AES-256 symmetric key allowed to Encrypt and
    /// Decrypt is [`Error::InvalidArgument`] saying why.
    async fn describe_key(&self, root: &KeyRef) -> Result<KeyState> {
        match self.described(root).await {
            Ok(d) => {
                if let Some(why) = d.unsuitable() {
                    return Err(Error::InvalidArgument(format!(
                        "KMIP object {} cannot be a cmek root key: {why}",
                        root.key_id()
                    )));
                }
                Ok(map_state(d.state))
            }
            Err(Error::KeyUnavailable {
                state: KeyState::NotFound,
                ..
            }) => Ok(KeyState::NotFound),
            Err(Error::ProviderUnreachable { .. }) => Ok(KeyState::Unreachable),
            Err(other) => Err(other),
        }
    }
}

/// Create + Activate, Revoke, and Activate (from Pre-Active only).
#[async_trait]
impl KeyAdmin for KmipProvider {
    /// Create (AES-256, usage Encrypt and Decrypt, the name as a KMIP Name
    /// attribute) and Activate. A multi-region key is refused: a key server
    /// has no replicas.
    async fn create_key(&self, new: &NewKey) -> Result<KeyRef> {
        if new.is_multi_region() {
            return Err(Error::InvalidArgument(
                "a KMIP key server has no multi-region keys".into(),
            ));
        }
        let placeholder = self.key_ref("(new key)");
        let payload = self
            .call_ok(message::create(new.name()), Operation::Create, &placeholder)
            .await?;
        let key = self.key_ref(&message::unique_identifier(&payload)?);
        self.call_ok(
            message::on_object(Operation::Activate, key.key_id()),
            Operation::Activate,
            &key,
        )
        .await?;
        tracing::info!(key = %key, "created and activated KMIP key");
        Ok(key)
    }

    /// Activate a Pre-Active key; an Active key is left as it is. A
    /// Deactivated or Compromised key cannot be activated again (KMIP has
    /// no way back): [`Error::InvalidArgument`].
    async fn enable_key(&self, key: &KeyRef) -> Result<()> {
        let d = self.described(key).await?;
        match d.state {
            ObjectState::Active => Ok(()),
            ObjectState::PreActive => {
                self.call_ok(
                    message::on_object(Operation::Activate, key.key_id()),
                    Operation::Activate,
                    key,
                )
                .await?;
                Ok(())
            }
            ObjectState::Destroyed | ObjectState::DestroyedCompromised => {
                Err(Error::KeyUnavailable {
                    key: key.to_string(),
                    state: KeyState::NotFound,
                })
            }
            state @ (ObjectState::Deactivated | ObjectState::Compromised) => {
                Err(Error::InvalidArgument(format!(
                    "KMIP key {key} is {}: KMIP cannot make it Active again. Create a new \
                     key, add it, and rotate the zones' root key to it",
                    state.name()
                )))
            }
        }
    }

    /// Revoke (Cessation of Operation): the key becomes Deactivated, for
    /// good. A key already Deactivated is left as it is.
    async fn disable_key(&self, key: &KeyRef) -> Result<()> {
        let d = self.described(key).await?;
        if d.state == ObjectState::Deactivated {
            return Ok(());
        }
        self.call_ok(message::revoke(key.key_id()), Operation::Revoke, key)
            .await?;
        tracing::info!(key = %key, "revoked KMIP key (Deactivated)");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::message::tag;
    use super::*;

    /// A response message answering `op` with `status` and `items`.
    fn response(op: Operation, status: u32, items: Vec<Item>) -> Item {
        let mut batch = vec![
            Item::enumeration(tag::OPERATION, op as u32),
            Item::enumeration(tag::RESULT_STATUS, status),
        ];
        batch.extend(items);
        Item::structure(
            tag::RESPONSE_MESSAGE,
            vec![
                Item::structure(
                    tag::RESPONSE_HEADER,
                    vec![
                        Item::structure(
                            tag::PROTOCOL_VERSION,
                            vec![
                                Item::integer(tag::PROTOCOL_VERSION_MAJOR, 1),
                                Item::integer(tag::PROTOCOL_VERSION_MINOR, 4),
                            ],
                        ),
                        Item {
                            tag: 0x420092,
                            value: ttlv::Value::DateTime(1_700_000_000),
                        },
                        Item::integer(tag::BATCH_COUNT, 1),
                    ],
                ),
                Item::structure(tag::BATCH_ITEM, batch),
            ],
        )
    }

    fn payload(items: Vec<Item>) -> Item {
        Item::structure(tag::RESPONSE_PAYLOAD, items)
    }

    fn attribute(name: &str, value: ttlv::Value) -> Item {
        Item::structure(
            tag::ATTRIBUTE,
            vec![
                Item::text(tag::ATTRIBUTE_NAME, name),
                Item {
                    tag: tag::ATTRIBUTE_VALUE,
                    value,
                },
            ],
        )
    }

    /// Seeds for the `kmip_ttlv` fuzz target: a response to each
    /// operation as a KMIP 1.4 server sends it, a refusal, requests, and
    /// the wrapped-key vector of docs/FORMAT.md.
    fn seeds() -> Vec<Vec<u8>> {
        let uid = || Item::text(tag::UNIQUE_IDENTIFIER, "42");
        let mut messages = vec![
            response(
                Operation::Create,
                0,
                vec![payload(vec![Item::enumeration(tag::OBJECT_TYPE, 2), uid()])],
            ),
            response(Operation::Activate, 0, vec![payload(vec![uid()])]),
            response(Operation::Revoke, 0, vec![payload(vec![uid()])]),
            response(
                Operation::GetAttributes,
                0,
                vec![payload(vec![
                    uid(),
                    attribute("State", ttlv::Value::Enumeration(2)),
                    attribute("Object Type", ttlv::Value::Enumeration(2)),
                    attribute("Cryptographic Algorithm", ttlv::Value::Enumeration(3)),
                    attribute("Cryptographic Length", ttlv::Value::Integer(256)),
                    attribute("Cryptographic Usage Mask", ttlv::Value::Integer(12)),
                ])],
            ),
            response(
                Operation::Encrypt,
                0,
                vec![payload(vec![
                    uid(),
                    Item::bytes(tag::DATA, &[0xc0; 32]),
                    Item::bytes(tag::IV_COUNTER_NONCE, &[0xa0; 16]),
                    Item::bytes(tag::AUTHENTICATED_ENCRYPTION_TAG, &[0xb0; 16]),
                ])],
            ),
            response(
                Operation::Decrypt,
                0,
                vec![payload(vec![uid(), Item::bytes(tag::DATA, &[0x11; 32])])],
            ),
            response(
                Operation::Decrypt,
                1,
                vec![
                    Item::enumeration(tag::RESULT_REASON, reason::CRYPTOGRAPHIC_FAILURE),
                    Item::text(tag::RESULT_MESSAGE, "tag mismatch"),
                ],
            ),
            message::create(Some("orders")),
            message::get_attributes("42"),
            message::encrypt("42", &[1; 32], b"aad"),
            message::decrypt("42", &[1; 32], &[2; 12], b"aad", &[3; 16]),
            message::revoke("42"),
        ]
        .into_iter()
        .map(|m| m.encode().unwrap())
        .collect::<Vec<_>>();
        messages.push(
            Wrapped::new(vec![0xa0; 12], vec![0xb0; 16], vec![0xc0; 32])
                .unwrap()
                .to_bytes(),
        );
        messages
    }

    #[test]
    fn the_seeds_read_as_responses() {
        let seeds = seeds();
        let get = ttlv::decode(&seeds[3]).unwrap();
        let d = message::described(
            &message::response(&get, Operation::GetAttributes)
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(d.state, ObjectState::Active);
        assert_eq!(d.unsuitable(), None);
        let enc = ttlv::decode(&seeds[4]).unwrap();
        let e = message::encrypted(
            &message::response(&enc, Operation::Encrypt)
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        assert!(Wrapped::new(e.iv, e.tag, e.data).is_ok());
        let refused = ttlv::decode(&seeds[6]).unwrap();
        let failure = message::response(&refused, Operation::Decrypt)
            .unwrap()
            .unwrap_err();
        assert_eq!(failure.reason, reason::CRYPTOGRAPHIC_FAILURE);
        #[cfg(feature = "fuzzing")]
        for seed in &seeds {
            crate::fuzzing::kmip_ttlv(seed);
        }
    }

    #[test]
    #[ignore = "rewrites the committed seed corpus of the kmip_ttlv fuzz target"]
    fn write_kmip_seed_corpus() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/kmip_ttlv");
        std::fs::create_dir_all(&dir).unwrap();
        for (i, seed) in seeds().iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
        }
    }

    #[test]
    fn access_policies_name_the_operations_and_keys() {
        let doc = access_policy(&["1", "a\"b"]).unwrap();
        assert!(
            doc.contains(r#""operations": ["Encrypt", "Decrypt", "Get Attributes"]"#),
            "{doc}"
        );
        assert!(
            doc.contains(r#""unique_identifiers": ["1", "a\"b"]"#),
            "{doc}"
        );
        assert!(doc.contains("KMIP 1.4"), "{doc}");
        assert!(access_policy(&[]).is_err());
        assert!(access_policy(&[""]).is_err());
        assert_eq!(json_escape("a\\\n"), "a\\\\\\u000a");
    }

    #[test]
    fn states_map_as_documented() {
        assert_eq!(map_state(ObjectState::Active), KeyState::Enabled);
        assert_eq!(map_state(ObjectState::PreActive), KeyState::Disabled);
        assert_eq!(map_state(ObjectState::Deactivated), KeyState::Disabled);
        assert_eq!(map_state(ObjectState::Compromised), KeyState::Unavailable);
        assert_eq!(map_state(ObjectState::Destroyed), KeyState::NotFound);
        assert_eq!(
            map_state(ObjectState::DestroyedCompromised),
            KeyState::NotFound
        );
    }

    #[test]
    fn refusals_map_to_distinct_errors() {
        let root = KeyRef::new(KMIP_PROVIDER, "7", "kmip");
        let failure = |reason| Failure {
            reason,
            message: "m".into(),
        };
        assert!(matches!(
            map_failure(&failure(reason::ITEM_NOT_FOUND), Operation::Encrypt, &root),
            Error::KeyUnavailable {
                state: KeyState::NotFound,
                ..
            }
        ));
        assert!(matches!(
            map_failure(
                &failure(reason::PERMISSION_DENIED),
                Operation::Encrypt,
                &root
            ),
            Error::AccessDenied {
                operation: "Encrypt",
                ..
            }
        ));
        for r in [reason::CRYPTOGRAPHIC_FAILURE, reason::GENERAL_FAILURE] {
            assert!(matches!(
                map_failure(&failure(r), Operation::Decrypt, &root),
                Error::Integrity { .. }
            ));
            assert!(matches!(
                map_failure(&failure(r), Operation::Encrypt, &root),
                Error::ProviderRejected { .. }
            ));
        }
        let err = map_failure(&failure(0x07), Operation::Create, &root);
        assert!(err.to_string().contains("Invalid Field"), "{err}");
    }
}
