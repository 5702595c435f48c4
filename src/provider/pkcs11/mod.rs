//! The PKCS#11 provider: an AES-256 key inside a hardware security module
//! (or any PKCS#11 token) as the root of trust, through the `cryptoki`
//! crate (feature `pkcs11`). docs/PKCS11.md is the operator's guide.
//!
//! * **Root keys** are AES-256 secret keys on the token, sensitive and
//!   never extractable; cmek refuses to use a key that is not
//!   (`Error::ProviderRejected`, code `unsuitable key`). A key is named by
//!   its label (`CKA_LABEL`), or by its id as `id:HEX` (`CKA_ID`); two
//!   keys answering to one name are refused, not guessed between.
//! * **Wrap / unwrap** use one of two mechanisms, chosen when the provider
//!   opens from what the token offers (`C_GetMechanismList`,
//!   `C_GetMechanismInfo`), preferring the first, or forced through
//!   [`Pkcs11Options::mechanism`]:
//!   - [`WrapMechanism::AesGcm`]: `C_Encrypt` / `C_Decrypt` with
//!     `CKM_AES_GCM`, a fresh 96-bit IV from cmek's CSPRNG per wrap (or the
//!     token's, if it replaces it), a 128-bit tag, and the root key's id and
//!     the encryption context as associated data;
//!   - [`WrapMechanism::AesKeyWrapPad`]: `C_WrapKey` / `C_UnwrapKey` with
//!     `CKM_AES_KEY_WRAP_PAD` (AES key wrap with padding, RFC 5649), which
//!     takes no associated data: the key is wrapped as a *bound key*
//!     (`provider::kit::bind`), its digest of the key id and context checked
//!     after unwrapping, followed by 16 random bytes so that two wraps of
//!     one key differ. It travels through the token as a short-lived
//!     session object, destroyed after the call.
//!
//!   The mechanism is recorded in the wrapped key (docs/FORMAT.md,
//!   "PKCS#11 wrapped key"), so a key wrapped under either unwraps
//!   whatever the provider prefers now.
//! * **States**: a key that is missing is `NotFound`; a key whose usage
//!   attributes for the provider's mechanism (`CKA_ENCRYPT` and
//!   `CKA_DECRYPT` for GCM, `CKA_WRAP` and `CKA_UNWRAP` for key wrap) are
//!   not both true is `Disabled`; an unsuitable key is `Unavailable`; a
//!   token that cannot be reached (removed, sessions lost twice) is
//!   `Unreachable`.
//! * **Administration** ([`KeyProvider::admin`]): `C_GenerateKey`
//!   (`CKM_AES_KEY_GEN`, 32 bytes, a token object, private, sensitive, not
//!   extractable, with the label given and a random id), and enable /
//!   disable by `C_SetAttributeValue` of the four usage attributes.
//! * **Sessions**: a pool of read-write sessions logged in as the user
//!   (`CKU_USER`); a session lost or logged out is replaced and the call
//!   made once more. Every PKCS#11 call runs on tokio's blocking pool
//!   (`spawn_blocking`), never on the async executor.
//! * **Regions**: an HSM is where it is. A key serves exactly the region
//!   configured for its provider ([`Pkcs11Options::region`], default
//!   `"local"`), and no other.
//!
//! This module is the only place in cmek that knows PKCS#11. It must not
//! cache keys, handles or answers: zones own caching and coalescing. Its
//! one retry is the reopen of a lost session described above.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use zeroize::Zeroizing;

use super::kit::{self, check_kind, fill_random, region_mismatch, root_wrap_aad};
use super::{EncryptionContext, KeyAdmin, KeyProvider, KeyRef, KeyState, NewKey, WrappedKey};
use crate::secret::{SecretKey, KEY_LEN};
use crate::{Error, Result};

mod format;
mod token;

use format::{Wrapped, GCM_IV_LEN, GCM_TAG_LEN, KWP_SALT_LEN};
use token::{Token, TokenError};

/// Provider kind of [`Pkcs11Provider`] in a [`KeyRef`].
pub const PKCS11_PROVIDER: &str = "pkcs11";

/// The region a provider serves unless configured otherwise.
pub const DEFAULT_PKCS11_REGION: &str = "local";

/// Why a key cannot be used from another region.
const ONE_REGION: &str = "a PKCS#11 key lives in its token, which serves only the region its \
     provider is configured for: use a key of a token in that region";

/// Which token of a module to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSelector {
    /// The token with this label (`CK_TOKEN_INFO.label`, trailing blanks
    /// ignored), in whichever slot it is.
    Label(String),
    /// The token in the slot with this id.
    Slot(u64),
}

/// How keys are wrapped under the root key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WrapMechanism {
    /// `CKM_AES_GCM` through `C_Encrypt` / `C_Decrypt`; the context is the
    /// associated data. Preferred.
    AesGcm,
    /// `CKM_AES_KEY_WRAP_PAD` (RFC 5649) through `C_WrapKey` /
    /// `C_UnwrapKey`; the context is bound into the wrapped bytes.
    AesKeyWrapPad,
}

impl WrapMechanism {
    /// The PKCS#11 name of the mechanism.
    pub fn as_str(self) -> &'static str {
        match self {
            WrapMechanism::AesGcm => "CKM_AES_GCM",
            WrapMechanism::AesKeyWrapPad => "CKM_AES_KEY_WRAP_PAD",
        }
    }

    /// Parses `gcm` or `kwp` (or the PKCS#11 names), ignoring case.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for anything else.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "gcm" | "aes-gcm" | "ckm_aes_gcm" => Ok(WrapMechanism::AesGcm),
            "kwp" | "aes-kwp" | "ckm_aes_key_wrap_pad" => Ok(WrapMechanism::AesKeyWrapPad),
            _ => Err(Error::InvalidArgument(format!(
                "PKCS#11 wrap mechanism {s:?}: expected gcm or kwp"
            ))),
        }
    }

    fn mechanism_type(self) -> MechanismType {
        match self {
            WrapMechanism::AesGcm => MechanismType::AES_GCM,
            WrapMechanism::AesKeyWrapPad => MechanismType::AES_KEY_WRAP_PAD,
        }
    }

    /// The usage attributes a root key needs for this mechanism, as
    /// (wrap side, unwrap side) names.
    fn attributes(self) -> (&'static str, &'static str) {
        match self {
            WrapMechanism::AesGcm => ("CKA_ENCRYPT", "CKA_DECRYPT"),
            WrapMechanism::AesKeyWrapPad => ("CKA_WRAP", "CKA_UNWRAP"),
        }
    }
}

impl std::fmt::Display for WrapMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The token user's PIN. Wiped on drop, never printed. Take it from an
/// environment variable or a file, never from a command line.
#[derive(Clone)]
pub struct Pkcs11Pin(Zeroizing<String>);

impl Pkcs11Pin {
    /// A PIN the caller already holds.
    pub fn new(pin: impl Into<String>) -> Self {
        Self(Zeroizing::new(pin.into()))
    }

    /// The PIN in environment variable `var`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if it is unset, empty or not UTF-8.
    pub fn from_env(var: &str) -> Result<Self> {
        match std::env::var(var) {
            Ok(pin) if !pin.is_empty() => Ok(Self::new(pin)),
            _ => Err(Error::InvalidArgument(format!(
                "the PKCS#11 PIN variable {var} is unset or empty"
            ))),
        }
    }

    /// The PIN in the file at `path`, without a trailing line break. On
    /// Unix the file must not be readable by group or others.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be read; [`Error::InvalidArgument`] if it
    /// is empty, not UTF-8, or readable by others.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(Error::InvalidArgument(format!(
                    "the PKCS#11 PIN file {} is readable by others: chmod 600 it",
                    path.display()
                )));
            }
        }
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| Error::io(path, e))?);
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            Error::InvalidArgument(format!(
                "the PKCS#11 PIN file {} is not UTF-8",
                path.display()
            ))
        })?;
        let pin = text.trim_end_matches(['\n', '\r']);
        if pin.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "the PKCS#11 PIN file {} is empty",
                path.display()
            )));
        }
        Ok(Self::new(pin))
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Pkcs11Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pkcs11Pin(redacted)")
    }
}

/// How to reach a token and use it. Build it with [`Pkcs11Options::new`]
/// or [`Pkcs11Options::from_env`], then set fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Pkcs11Options {
    /// The PKCS#11 module (shared library) of the HSM vendor.
    pub module: PathBuf,
    /// Which token of the module.
    pub token: TokenSelector,
    /// The token user's PIN.
    pub pin: Pkcs11Pin,
    /// The region keys of this token serve (default `"local"`).
    pub region: String,
    /// The wrap mechanism to use; `None` (the default) chooses from what
    /// the token offers, preferring AES-GCM.
    pub mechanism: Option<WrapMechanism>,
    /// Sessions kept open between calls (default 4); more are opened under
    /// concurrent calls and closed after them.
    pub max_idle_sessions: usize,
    /// Let one operation at a time run on this module in this process,
    /// among the providers that set it (sessions are still pooled, and
    /// calls still run off the async executor). Off by default: an HSM
    /// takes concurrent calls on separate sessions, as PKCS#11 allows.
    /// SoftHSM2 2.6 does not reliably (an object created while other
    /// threads use the token may fail with `CKR_GENERAL_ERROR` or
    /// `CKR_TEMPLATE_INCONSISTENT`), so its tests set it.
    pub serialize_calls: bool,
}

impl Pkcs11Options {
    /// Options for `token` of `module` with `pin`, and the defaults.
    pub fn new(module: impl Into<PathBuf>, token: TokenSelector, pin: Pkcs11Pin) -> Self {
        Self {
            module: module.into(),
            token,
            pin,
            region: DEFAULT_PKCS11_REGION.to_owned(),
            mechanism: None,
            max_idle_sessions: 4,
            serialize_calls: false,
        }
    }

    /// Options from the environment: `CMEK_PKCS11_MODULE` (the module's
    /// path), `CMEK_PKCS11_TOKEN` (the token label) or `CMEK_PKCS11_SLOT`
    /// (a slot id), `CMEK_PKCS11_PIN` or `CMEK_PKCS11_PIN_FILE` (a file
    /// holding the PIN), and optionally `CMEK_PKCS11_REGION`,
    /// `CMEK_PKCS11_MECHANISM` (`gcm` or `kwp`) and
    /// `CMEK_PKCS11_SERIALIZE` (`1`: see
    /// [`serialize_calls`](Self::serialize_calls)).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the variable that is missing or
    /// wrong; the errors of [`Pkcs11Pin::from_file`].
    pub fn from_env() -> Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let module = var("CMEK_PKCS11_MODULE").ok_or_else(|| {
            Error::InvalidArgument(
                "set CMEK_PKCS11_MODULE to the path of the PKCS#11 module".into(),
            )
        })?;
        let token = match (var("CMEK_PKCS11_TOKEN"), var("CMEK_PKCS11_SLOT")) {
            (Some(label), None) => TokenSelector::Label(label),
            (None, Some(slot)) => TokenSelector::Slot(slot.parse().map_err(|_| {
                Error::InvalidArgument(format!("CMEK_PKCS11_SLOT {slot:?} is not a slot id"))
            })?),
            (Some(_), Some(_)) => {
                return Err(Error::InvalidArgument(
                    "set one of CMEK_PKCS11_TOKEN and CMEK_PKCS11_SLOT, not both".into(),
                ))
            }
            (None, None) => {
                return Err(Error::InvalidArgument(
                    "set CMEK_PKCS11_TOKEN to the token label (or CMEK_PKCS11_SLOT)".into(),
                ))
            }
        };
        let pin = match (var("CMEK_PKCS11_PIN"), var("CMEK_PKCS11_PIN_FILE")) {
            (Some(_), None) => Pkcs11Pin::from_env("CMEK_PKCS11_PIN")?,
            (None, Some(path)) => Pkcs11Pin::from_file(path)?,
            (Some(_), Some(_)) => {
                return Err(Error::InvalidArgument(
                    "set one of CMEK_PKCS11_PIN and CMEK_PKCS11_PIN_FILE, not both".into(),
                ))
            }
            (None, None) => {
                return Err(Error::InvalidArgument(
                    "set CMEK_PKCS11_PIN_FILE (or CMEK_PKCS11_PIN) to the token user's PIN".into(),
                ))
            }
        };
        let mut options = Self::new(module, token, pin);
        if let Some(region) = var("CMEK_PKCS11_REGION") {
            options.region = region;
        }
        if let Some(mechanism) = var("CMEK_PKCS11_MECHANISM") {
            options.mechanism = Some(WrapMechanism::parse(&mechanism)?);
        }
        options.serialize_calls = var("CMEK_PKCS11_SERIALIZE").as_deref() == Some("1");
        Ok(options)
    }
}

/// Root keys in a PKCS#11 token. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Pkcs11Provider {
    token: Arc<Token>,
    region: String,
    mechanism: WrapMechanism,
}

impl Pkcs11Provider {
    /// Loads the module (once per process), finds the token, logs in and
    /// chooses the wrap mechanism. Blocks on the token: from async code,
    /// call it through `tokio::task::spawn_blocking` (or
    /// [`open_async`](Self::open_async)).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a module that does not load, an
    /// empty region, or a token that offers neither mechanism (or not the
    /// one forced); [`Error::ProviderUnreachable`] if the token is not
    /// present; [`Error::AccessDenied`] for a wrong PIN.
    pub fn open(options: Pkcs11Options) -> Result<Self> {
        if options.region.is_empty() {
            return Err(Error::InvalidArgument("an empty PKCS#11 region".into()));
        }
        let token = Token::new(
            &options.module,
            options.token.clone(),
            options.pin,
            options.max_idle_sessions.max(1),
            options.serialize_calls,
        )?;
        let offered = token.mechanisms()?;
        let usable = |m: WrapMechanism| {
            offered.iter().any(|(t, crypt, wrap)| {
                *t == m.mechanism_type()
                    && match m {
                        WrapMechanism::AesGcm => *crypt,
                        WrapMechanism::AesKeyWrapPad => *wrap,
                    }
            })
        };
        let mechanism = match options.mechanism {
            Some(m) if usable(m) => m,
            Some(m) => {
                return Err(Error::InvalidArgument(format!(
                    "the PKCS#11 token does not offer {m} for this use"
                )))
            }
            None => [WrapMechanism::AesGcm, WrapMechanism::AesKeyWrapPad]
                .into_iter()
                .find(|m| usable(*m))
                .ok_or_else(|| {
                    Error::InvalidArgument(
                        "the PKCS#11 token offers neither CKM_AES_GCM nor CKM_AES_KEY_WRAP_PAD"
                            .into(),
                    )
                })?,
        };
        // Log in now, so that a wrong PIN shows at once.
        let placeholder = KeyRef::new(PKCS11_PROVIDER, "(login)", &options.region);
        token
            .with_session(|_| Ok(()))
            .map_err(|e| map_error(e, &placeholder, "login"))?;
        tracing::debug!(token = ?options.token, %mechanism, "opened PKCS#11 token");
        Ok(Self {
            token: Arc::new(token),
            region: options.region,
            mechanism,
        })
    }

    /// [`open`](Self::open) on tokio's blocking pool.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub async fn open_async(options: Pkcs11Options) -> Result<Self> {
        tokio::task::spawn_blocking(move || Self::open(options))
            .await
            .map_err(|_| {
                Error::unreachable(PKCS11_PROVIDER, "opening the token did not complete")
            })?
    }

    /// The mechanism new keys are wrapped with.
    pub fn mechanism(&self) -> WrapMechanism {
        self.mechanism
    }

    /// The region this provider serves.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// How many operations (each one or a few PKCS#11 calls on a session)
    /// this provider, and every clone of it, ran against the token. For
    /// tests and metrics: the data path of an open zone adds none.
    pub fn token_operations(&self) -> u64 {
        self.token.operations()
    }

    /// The reference of the key named `key_id` (a label, or `id:HEX`) in
    /// this provider's region.
    pub fn key_ref(&self, key_id: &str) -> KeyRef {
        KeyRef::new(PKCS11_PROVIDER, key_id, &self.region)
    }

    /// Checks that `root` is this provider's and serves its region.
    fn check_root(&self, root: &KeyRef) -> Result<KeyName> {
        self.key_in_region(root, &self.region)?;
        KeyName::parse(root.key_id())
    }

    /// Runs `op` on a pooled session, on the blocking pool, and maps its
    /// failure for `root` and `operation`.
    async fn run<T: Send + 'static>(
        &self,
        root: &KeyRef,
        operation: &'static str,
        op: impl Fn(&Session) -> std::result::Result<T, TokenError> + Send + 'static,
    ) -> Result<T> {
        let token = Arc::clone(&self.token);
        let result = tokio::task::spawn_blocking(move || token.with_session(op))
            .await
            .map_err(|_| {
                Error::unreachable(PKCS11_PROVIDER, format!("{operation} did not complete"))
            })?;
        result.map_err(|e| map_error(e, root, operation))
    }
}

/// How a key is named on the token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyName {
    /// `CKA_LABEL`.
    Label(String),
    /// `CKA_ID`, given as `id:HEX`.
    Id(Vec<u8>),
}

impl KeyName {
    fn parse(key_id: &str) -> Result<Self> {
        if let Some(hex) = key_id.strip_prefix("id:") {
            let valid =
                !hex.is_empty() && hex.len() % 2 == 0 && hex.bytes().all(|b| b.is_ascii_hexdigit());
            if !valid {
                return Err(Error::InvalidArgument(format!(
                    "PKCS#11 key {key_id:?}: an id is an even number of hex digits"
                )));
            }
            let id = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
                .collect::<std::result::Result<Vec<u8>, _>>()
                .map_err(|_| Error::InvalidArgument(format!("PKCS#11 key {key_id:?}")))?;
            Ok(KeyName::Id(id))
        } else if key_id.is_empty() {
            Err(Error::InvalidArgument("an empty PKCS#11 key label".into()))
        } else {
            Ok(KeyName::Label(key_id.to_owned()))
        }
    }

    fn attribute(&self) -> Attribute {
        match self {
            KeyName::Label(label) => Attribute::Label(label.as_bytes().to_vec()),
            KeyName::Id(id) => Attribute::Id(id.clone()),
        }
    }
}

/// What cmek reads of a root key.
#[derive(Debug, Clone, Copy, Default)]
struct KeyAttributes {
    aes: bool,
    len: Option<usize>,
    sensitive: bool,
    extractable: bool,
    encrypt: bool,
    decrypt: bool,
    wrap: bool,
    unwrap: bool,
}

impl KeyAttributes {
    /// Why the key must not be a root key, if it must not.
    fn unsuitable(&self) -> Option<&'static str> {
        if !self.aes {
            Some("it is not an AES key")
        } else if self.len != Some(KEY_LEN) {
            Some("it is not a 256-bit key")
        } else if !self.sensitive {
            Some("it is not sensitive (CKA_SENSITIVE is false)")
        } else if self.extractable {
            Some("it is extractable (CKA_EXTRACTABLE is true)")
        } else {
            None
        }
    }

    /// True if both usage attributes `mechanism` needs are set.
    fn allows(&self, mechanism: WrapMechanism) -> bool {
        match mechanism {
            WrapMechanism::AesGcm => self.encrypt && self.decrypt,
            WrapMechanism::AesKeyWrapPad => self.wrap && self.unwrap,
        }
    }

    fn state(&self, mechanism: WrapMechanism) -> KeyState {
        if self.unsuitable().is_some() {
            KeyState::Unavailable
        } else if self.allows(mechanism) {
            KeyState::Enabled
        } else {
            KeyState::Disabled
        }
    }
}

/// The key named `name` and its attributes; `None` if there is none.
fn find_key(
    session: &Session,
    name: &KeyName,
) -> std::result::Result<Option<(ObjectHandle, KeyAttributes)>, TokenError> {
    let found =
        session.find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY), name.attribute()])?;
    let handle = match found.as_slice() {
        [] => return Ok(None),
        [handle] => *handle,
        more => {
            return Err(TokenError::Cmek(Error::rejected(
                PKCS11_PROVIDER,
                "ambiguous key",
                format!(
                    "{} secret keys on the token answer to {name:?}: give each key a \
                     unique label, or name it by id",
                    more.len()
                ),
            )))
        }
    };
    let mut attrs = KeyAttributes::default();
    for attribute in session.get_attributes(
        handle,
        &[
            AttributeType::KeyType,
            AttributeType::ValueLen,
            AttributeType::Sensitive,
            AttributeType::Extractable,
            AttributeType::Encrypt,
            AttributeType::Decrypt,
            AttributeType::Wrap,
            AttributeType::Unwrap,
        ],
    )? {
        match attribute {
            Attribute::KeyType(t) => attrs.aes = t == KeyType::AES,
            Attribute::ValueLen(len) => attrs.len = Some(usize::from(len)),
            Attribute::Sensitive(v) => attrs.sensitive = v,
            Attribute::Extractable(v) => attrs.extractable = v,
            Attribute::Encrypt(v) => attrs.encrypt = v,
            Attribute::Decrypt(v) => attrs.decrypt = v,
            Attribute::Wrap(v) => attrs.wrap = v,
            Attribute::Unwrap(v) => attrs.unwrap = v,
            _ => {}
        }
    }
    Ok(Some((handle, attrs)))
}

/// The handle of root key `name` if it exists, is suitable and allows
/// `mechanism`.
fn usable_key(
    session: &Session,
    name: &KeyName,
    key: &str,
    mechanism: WrapMechanism,
) -> std::result::Result<ObjectHandle, TokenError> {
    let Some((handle, attrs)) = find_key(session, name)? else {
        return Err(TokenError::Cmek(Error::KeyUnavailable {
            key: key.to_owned(),
            state: KeyState::NotFound,
        }));
    };
    if let Some(why) = attrs.unsuitable() {
        return Err(TokenError::Cmek(unsuitable(key, why)));
    }
    if !attrs.allows(mechanism) {
        return Err(TokenError::Cmek(Error::KeyUnavailable {
            key: key.to_owned(),
            state: KeyState::Disabled,
        }));
    }
    Ok(handle)
}

fn unsuitable(key: &str, why: &str) -> Error {
    Error::rejected(
        PKCS11_PROVIDER,
        "unsuitable key",
        format!(
            "key {key} cannot be a root key: {why}; a root key is an AES-256 key that is \
             sensitive and not extractable"
        ),
    )
}

/// The template of the session object a bound key passes through.
fn bound_key_template(value: Option<&[u8]>) -> Vec<Attribute> {
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
    ];
    if let Some(value) = value {
        template.push(Attribute::Value(value.to_vec()));
    }
    template
}

/// Destroys a session object, logging (not failing) if the token refuses:
/// a session object ends with its session anyway.
fn destroy(session: &Session, object: ObjectHandle) {
    if let Err(e) = session.destroy_object(object) {
        tracing::warn!(error = %e, "PKCS#11: could not destroy a session object");
    }
}

/// The answer of an unwrapping call (`C_Decrypt` under GCM, `C_UnwrapKey`)
/// that failed: `CKR_GENERAL_ERROR` is read as an integrity failure, as
/// SoftHSM2 answers a tag or integrity check that fails with it (the
/// standard's `CKR_ENCRYPTED_DATA_INVALID` and `CKR_WRAPPED_KEY_INVALID`
/// are mapped so by [`map_error`]).
fn refused_as_tampered(e: CkError) -> TokenError {
    match e {
        CkError::Pkcs11(RvError::GeneralError, _) => {
            TokenError::Cmek(Error::tampered("wrapped key"))
        }
        e => TokenError::Token(e),
    }
}

/// Maps a token failure onto the crate's errors.
fn map_error(err: TokenError, root: &KeyRef, operation: &'static str) -> Error {
    let e = match err {
        TokenError::Cmek(e) => return e,
        TokenError::Token(e) => e,
    };
    let key = root.to_string();
    let CkError::Pkcs11(rv, function) = &e else {
        return Error::rejected(PKCS11_PROVIDER, "cryptoki", format!("{operation}: {e}"))
            .with_source(e);
    };
    let code = format!("{rv:?}");
    match rv {
        RvError::SessionHandleInvalid
        | RvError::SessionClosed
        | RvError::SessionCount
        | RvError::DeviceRemoved
        | RvError::DeviceError
        | RvError::DeviceMemory
        | RvError::TokenNotPresent
        | RvError::TokenNotRecognized
        | RvError::CryptokiNotInitialized
        | RvError::FunctionFailed
        | RvError::HostMemory => {
            Error::unreachable(PKCS11_PROVIDER, format!("{operation}: {function}: {code}"))
                .with_source(e)
        }
        RvError::UserNotLoggedIn
        | RvError::PinIncorrect
        | RvError::PinInvalid
        | RvError::PinLenRange
        | RvError::PinExpired
        | RvError::PinLocked
        | RvError::UserPinNotInitialized => Error::AccessDenied { key, operation },
        RvError::KeyFunctionNotPermitted => Error::KeyUnavailable {
            key,
            state: KeyState::Disabled,
        },
        RvError::ObjectHandleInvalid
        | RvError::KeyHandleInvalid
        | RvError::WrappingKeyHandleInvalid
        | RvError::UnwrappingKeyHandleInvalid => Error::KeyUnavailable {
            key,
            state: KeyState::NotFound,
        },
        RvError::EncryptedDataInvalid
        | RvError::EncryptedDataLenRange
        | RvError::WrappedKeyInvalid
        | RvError::WrappedKeyLenRange => Error::tampered("wrapped key"),
        _ => Error::rejected(
            PKCS11_PROVIDER,
            code,
            format!("{function} refused {operation} on key {key}"),
        )
        .with_source(e),
    }
}

#[async_trait]
impl KeyProvider for Pkcs11Provider {
    fn kind(&self) -> &str {
        PKCS11_PROVIDER
    }

    fn key_ref(&self, key_id: &str) -> KeyRef {
        Pkcs11Provider::key_ref(self, key_id)
    }

    /// A key serves its own region only: a token has no replicas.
    fn key_in_region(&self, root: &KeyRef, region: &str) -> Result<KeyRef> {
        check_kind(PKCS11_PROVIDER, root)?;
        if root.region() == region {
            Ok(root.clone())
        } else {
            Err(region_mismatch(root, region, ONE_REGION))
        }
    }

    fn admin(&self) -> Option<&dyn KeyAdmin> {
        Some(self)
    }

    /// What the token user needs, in words: PKCS#11 has no policy
    /// document to attach.
    fn access_policy(&self, keys: &[KeyRef]) -> Result<Option<String>> {
        if keys.is_empty() {
            return Err(Error::InvalidArgument("no key to grant access to".into()));
        }
        for key in keys {
            self.check_root(key)?;
        }
        let names: Vec<&str> = keys.iter().map(KeyRef::key_id).collect();
        let (wrap, unwrap) = self.mechanism.attributes();
        Ok(Some(format!(
            "PKCS#11 token access for cmek (region {region}):\n\
             - log in as the token user (CKU_USER) with the PIN, in read-write sessions;\n\
             - keys {keys}: CKK_AES, 256 bits, CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE true, \
             CKA_EXTRACTABLE false;\n\
             - on those keys {wrap} and {unwrap} true, for mechanism {mechanism};\n\
             - calls: C_FindObjects, C_GetAttributeValue, {calls}.\n\
             Administration (cmek key add --create, key enable, key disable) also needs \
             C_GenerateKey (CKM_AES_KEY_GEN) and C_SetAttributeValue on those attributes.",
            region = self.region,
            keys = names.join(", "),
            mechanism = self.mechanism,
            calls = match self.mechanism {
                WrapMechanism::AesGcm => "C_Encrypt, C_Decrypt",
                WrapMechanism::AesKeyWrapPad =>
                    "C_CreateObject and C_DestroyObject (session objects), C_WrapKey, C_UnwrapKey, \
                     C_GetAttributeValue of the unwrapped session object",
            },
        )))
    }

    async fn wrap_key(
        &self,
        root: &KeyRef,
        key: &SecretKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey> {
        let name = self.check_root(root)?;
        let key_label = root.to_string();
        let mechanism = self.mechanism;
        let bytes = match mechanism {
            WrapMechanism::AesGcm => {
                let aad = root_wrap_aad(root.key_id(), context);
                let plaintext = key.duplicate();
                self.run(root, "wrap", move |session| {
                    let handle = usable_key(session, &name, &key_label, mechanism)?;
                    let mut iv = [0u8; GCM_IV_LEN];
                    fill_random(&mut iv)?;
                    let sealed = {
                        let params =
                            GcmParams::new(&mut iv, &aad, (GCM_TAG_LEN as u64 * 8).into())?;
                        session.encrypt(
                            &Mechanism::AesGcm(params),
                            handle,
                            plaintext.expose_secret(),
                        )?
                    };
                    // A token may replace the IV with its own; `iv` holds
                    // the one it used.
                    format::check_gcm_output(&sealed)?;
                    Ok(Wrapped::Gcm {
                        iv,
                        sealed: &sealed,
                    }
                    .to_bytes())
                })
                .await?
            }
            WrapMechanism::AesKeyWrapPad => {
                // Sized up front: growing would leave a copy unwiped.
                let mut salted =
                    Zeroizing::new(Vec::with_capacity(kit::BOUND_KEY_LEN + KWP_SALT_LEN));
                salted.extend_from_slice(kit::bind(key, root.key_id(), context).as_bytes());
                let mut salt = [0u8; KWP_SALT_LEN];
                fill_random(&mut salt)?;
                salted.extend_from_slice(&salt);
                self.run(root, "wrap", move |session| {
                    let handle = usable_key(session, &name, &key_label, mechanism)?;
                    let object = session.create_object(&bound_key_template(Some(&salted)))?;
                    let wrapped = session.wrap_key(&Mechanism::AesKeyWrapPad, handle, object);
                    destroy(session, object);
                    let wrapped = wrapped?;
                    format::check_kwp_output(&wrapped)?;
                    Ok(Wrapped::Kwp { wrapped: &wrapped }.to_bytes())
                })
                .await?
            }
        };
        Ok(WrappedKey::from_bytes(bytes))
    }

    async fn unwrap_key(
        &self,
        root: &KeyRef,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<SecretKey> {
        let name = self.check_root(root)?;
        let key_label = root.to_string();
        let blob = wrapped.to_bytes();
        // Parse before calling the token: a malformed blob costs no call.
        Wrapped::parse(&blob)?;
        let key_id = root.key_id().to_owned();
        let context = context.clone();
        self.run(root, "unwrap", move |session| {
            match Wrapped::parse(&blob)? {
                Wrapped::Gcm { mut iv, sealed } => {
                    let handle = usable_key(session, &name, &key_label, WrapMechanism::AesGcm)?;
                    let aad = root_wrap_aad(&key_id, &context);
                    let params = GcmParams::new(&mut iv, &aad, (GCM_TAG_LEN as u64 * 8).into())?;
                    let plaintext = Zeroizing::new(
                        session
                            .decrypt(&Mechanism::AesGcm(params), handle, sealed)
                            .map_err(refused_as_tampered)?,
                    );
                    Ok(SecretKey::from_slice(&plaintext)?)
                }
                Wrapped::Kwp { wrapped } => {
                    let handle =
                        usable_key(session, &name, &key_label, WrapMechanism::AesKeyWrapPad)?;
                    let object = session
                        .unwrap_key(
                            &Mechanism::AesKeyWrapPad,
                            handle,
                            wrapped,
                            &bound_key_template(None),
                        )
                        .map_err(refused_as_tampered)?;
                    let value = session.get_attributes(object, &[AttributeType::Value]);
                    destroy(session, object);
                    let value = value?.into_iter().find_map(|a| match a {
                        Attribute::Value(v) => Some(Zeroizing::new(v)),
                        _ => None,
                    });
                    let value = value.ok_or_else(|| {
                        Error::malformed("PKCS#11 unwrapped key", "the token returned no value")
                    })?;
                    // The bound key, then the salt (not checked: the
                    // wrap authenticates it).
                    if value.len() != kit::BOUND_KEY_LEN + KWP_SALT_LEN {
                        return Err(Error::tampered("wrapped key").into());
                    }
                    Ok(kit::unbind(
                        &value[..kit::BOUND_KEY_LEN],
                        &key_id,
                        &context,
                    )?)
                }
            }
        })
        .await
    }

    async fn describe_key(&self, root: &KeyRef) -> Result<KeyState> {
        let name = self.check_root(root)?;
        let mechanism = self.mechanism;
        let key = root.to_string();
        let result = self
            .run(root, "describe", move |session| {
                Ok(match find_key(session, &name)? {
                    None => KeyState::NotFound,
                    Some((_, attrs)) => {
                        if let Some(why) = attrs.unsuitable() {
                            tracing::warn!(%key, why, "PKCS#11 key unsuitable as a root key");
                        }
                        attrs.state(mechanism)
                    }
                })
            })
            .await;
        match result {
            Err(Error::ProviderUnreachable { .. }) => Ok(KeyState::Unreachable),
            other => other,
        }
    }
}

/// `C_GenerateKey` for a new root key; enable and disable by setting the
/// four usage attributes.
#[async_trait]
impl KeyAdmin for Pkcs11Provider {
    async fn create_key(&self, new: &NewKey) -> Result<KeyRef> {
        if new.is_multi_region() {
            return Err(Error::InvalidArgument(
                "a PKCS#11 token has no multi-region keys".into(),
            ));
        }
        let label = new
            .name()
            .ok_or_else(|| Error::InvalidArgument("a new PKCS#11 key needs a label".into()))?
            .to_owned();
        if !matches!(KeyName::parse(&label)?, KeyName::Label(_)) {
            return Err(Error::InvalidArgument(format!(
                "name a new PKCS#11 key by a label, not {label:?}"
            )));
        }
        let key = self.key_ref(&label);
        let mut id = [0u8; 16];
        fill_random(&mut id)?;
        let shown = key.to_string();
        self.run(&key, "create", move |session| {
            let name = KeyName::Label(label.clone());
            if find_key(session, &name)?.is_some() {
                return Err(TokenError::Cmek(Error::InvalidArgument(format!(
                    "a key labelled {label:?} exists already on the token"
                ))));
            }
            session.generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen((KEY_LEN as u64).into()),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Modifiable(true),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    Attribute::Wrap(true),
                    Attribute::Unwrap(true),
                    Attribute::Sign(false),
                    Attribute::Verify(false),
                    Attribute::Derive(false),
                    Attribute::Label(label.as_bytes().to_vec()),
                    Attribute::Id(id.to_vec()),
                ],
            )?;
            Ok(())
        })
        .await?;
        tracing::info!(key = %shown, "created PKCS#11 key");
        Ok(key)
    }

    async fn enable_key(&self, key: &KeyRef) -> Result<()> {
        self.set_usage(key, true).await
    }

    async fn disable_key(&self, key: &KeyRef) -> Result<()> {
        self.set_usage(key, false).await
    }
}

impl Pkcs11Provider {
    async fn set_usage(&self, key: &KeyRef, enabled: bool) -> Result<()> {
        let name = self.check_root(key)?;
        let shown = key.to_string();
        self.run(
            key,
            if enabled { "enable" } else { "disable" },
            move |session| {
                let Some((handle, _)) = find_key(session, &name)? else {
                    return Err(TokenError::Cmek(Error::KeyUnavailable {
                        key: shown.clone(),
                        state: KeyState::NotFound,
                    }));
                };
                session.update_attributes(
                    handle,
                    &[
                        Attribute::Encrypt(enabled),
                        Attribute::Decrypt(enabled),
                        Attribute::Wrap(enabled),
                        Attribute::Unwrap(enabled),
                    ],
                )?;
                Ok(())
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_labels_or_hex_ids() {
        assert_eq!(
            KeyName::parse("root-1").unwrap(),
            KeyName::Label("root-1".into())
        );
        assert_eq!(
            KeyName::parse("id:0aFF").unwrap(),
            KeyName::Id(vec![0x0a, 0xff])
        );
        for bad in ["", "id:", "id:abc", "id:zz", "id:0g"] {
            assert!(
                matches!(KeyName::parse(bad), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn mechanisms_parse_by_short_and_pkcs11_names() {
        assert_eq!(WrapMechanism::parse("GCM").unwrap(), WrapMechanism::AesGcm);
        assert_eq!(
            WrapMechanism::parse("ckm_aes_key_wrap_pad").unwrap(),
            WrapMechanism::AesKeyWrapPad
        );
        assert!(WrapMechanism::parse("cbc").is_err());
    }

    #[test]
    fn states_follow_the_usage_attributes_of_the_mechanism() {
        let good = KeyAttributes {
            aes: true,
            len: Some(32),
            sensitive: true,
            extractable: false,
            encrypt: true,
            decrypt: true,
            wrap: false,
            unwrap: false,
        };
        assert_eq!(good.state(WrapMechanism::AesGcm), KeyState::Enabled);
        assert_eq!(good.state(WrapMechanism::AesKeyWrapPad), KeyState::Disabled);
        let half = KeyAttributes {
            decrypt: false,
            ..good
        };
        assert_eq!(half.state(WrapMechanism::AesGcm), KeyState::Disabled);
        for bad in [
            KeyAttributes { aes: false, ..good },
            KeyAttributes {
                len: Some(16),
                ..good
            },
            KeyAttributes {
                sensitive: false,
                ..good
            },
            KeyAttributes {
                extractable: true,
                ..good
            },
        ] {
            assert!(bad.unsuitable().is_some(), "{bad:?}");
            assert_eq!(bad.state(WrapMechanism::AesGcm), KeyState::Unavailable);
        }
    }

    #[test]
    fn token_answers_map_to_actionable_errors() {
        let root = KeyRef::new(PKCS11_PROVIDER, "k", "local");
        let map = |rv| {
            map_error(
                TokenError::Token(CkError::Pkcs11(rv, cryptoki::context::Function::Decrypt)),
                &root,
                "unwrap",
            )
        };
        assert!(matches!(
            map(RvError::DeviceRemoved),
            Error::ProviderUnreachable { .. }
        ));
        assert!(matches!(
            map(RvError::SessionHandleInvalid),
            Error::ProviderUnreachable { .. }
        ));
        assert!(matches!(
            map(RvError::PinIncorrect),
            Error::AccessDenied { .. }
        ));
        assert!(matches!(
            map(RvError::KeyFunctionNotPermitted),
            Error::KeyUnavailable {
                state: KeyState::Disabled,
                ..
            }
        ));
        assert!(matches!(
            map(RvError::EncryptedDataInvalid),
            Error::Integrity { .. }
        ));
        assert!(matches!(
            map(RvError::MechanismInvalid),
            Error::ProviderRejected { .. }
        ));
    }

    #[test]
    fn pins_are_redacted_and_pin_files_private() {
        assert_eq!(
            format!("{:?}", Pkcs11Pin::new("1234")),
            "Pkcs11Pin(redacted)"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        std::fs::write(&path, "4321\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                Pkcs11Pin::from_file(&path),
                Err(Error::InvalidArgument(_))
            ));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert_eq!(Pkcs11Pin::from_file(&path).unwrap().expose(), "4321");
        assert!(Pkcs11Pin::from_file(dir.path().join("none")).is_err());
    }
}
