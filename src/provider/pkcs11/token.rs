//! One token behind a PKCS#11 module: the module loaded once per process,
//! the token's slot found by label or id, and a pool of logged-in sessions.
//!
//! Every call here blocks (the module's C functions do); the provider runs
//! them on tokio's blocking pool. A session is used by one thread at a
//! time: the pool hands it out and takes it back. When the token answers
//! that the session is gone or not logged in (`CKR_SESSION_HANDLE_INVALID`,
//! `CKR_SESSION_CLOSED`, `CKR_USER_NOT_LOGGED_IN`, `CKR_DEVICE_REMOVED`,
//! `CKR_TOKEN_NOT_PRESENT`), the operation runs once more on a new,
//! freshly logged-in session; a second failure is the caller's to map
//! (the provider maps it to "unreachable").

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::MechanismType;
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use super::{Pkcs11Pin, TokenSelector, PKCS11_PROVIDER};
use crate::{Error, Result};

/// A module loaded by this process, and the lock that serializes its calls
/// for the providers that ask for it.
type Module = (Pkcs11, Arc<Mutex<()>>);

/// Modules loaded by this process, by path. A module is initialized once
/// and never finalized: `C_Finalize` would end the sessions of every other
/// provider on the same module.
static MODULES: OnceLock<Mutex<HashMap<PathBuf, Module>>> = OnceLock::new();

/// The context of `module`, loaded and initialized on first use.
fn context(module: &Path) -> Result<Module> {
    let modules = MODULES.get_or_init(Default::default);
    let mut modules = modules.lock().unwrap_or_else(|e| e.into_inner());
    let key = module.canonicalize().unwrap_or_else(|_| module.to_owned());
    if let Some(loaded) = modules.get(&key) {
        return Ok(loaded.clone());
    }
    let ctx = Pkcs11::new(&key).map_err(|e| {
        Error::InvalidArgument(format!(
            "cannot load the PKCS#11 module {}: {e}",
            module.display()
        ))
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Another library in this process initialized it: share it.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(Error::unreachable(
                PKCS11_PROVIDER,
                format!("C_Initialize of {} failed", module.display()),
            )
            .with_source(e))
        }
    }
    let loaded = (ctx, Arc::new(Mutex::new(())));
    modules.insert(key, loaded.clone());
    Ok(loaded)
}

/// True for the answers that mean "this session (or the token behind it)
/// is gone": worth one more try on a new session.
pub(super) fn session_lost(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent,
            _
        )
    )
}

/// A token and its session pool.
pub(super) struct Token {
    ctx: Pkcs11,
    module: PathBuf,
    selector: TokenSelector,
    pin: Pkcs11Pin,
    idle: Mutex<Vec<Session>>,
    max_idle: usize,
    /// The module's lock, held for each operation, if the provider asked
    /// for it.
    call_lock: Option<Arc<Mutex<()>>>,
    /// Operations run against the token (each `with_session` call).
    operations: AtomicU64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("module", &self.module)
            .field("token", &self.selector)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// Loads `module` (once per process) and prepares the pool. Makes no
    /// call to the token.
    pub(super) fn new(
        module: &Path,
        selector: TokenSelector,
        pin: Pkcs11Pin,
        max_idle: usize,
        serialize_calls: bool,
    ) -> Result<Self> {
        let (ctx, lock) = context(module)?;
        Ok(Self {
            ctx,
            module: module.to_owned(),
            selector,
            pin,
            idle: Mutex::new(Vec::new()),
            max_idle,
            call_lock: serialize_calls.then_some(lock),
            operations: AtomicU64::new(0),
        })
    }

    /// How many operations ran against the token.
    pub(super) fn operations(&self) -> u64 {
        self.operations.load(Ordering::Relaxed)
    }

    /// The slot holding the token now (a token moved to another slot is
    /// found there).
    pub(super) fn slot(&self) -> Result<Slot> {
        let unreachable = |what: &str, e: CkError| {
            Error::unreachable(PKCS11_PROVIDER, format!("{what} failed")).with_source(e)
        };
        let slots = self
            .ctx
            .get_slots_with_token()
            .map_err(|e| unreachable("C_GetSlotList", e))?;
        match &self.selector {
            TokenSelector::Slot(id) => slots.into_iter().find(|s| s.id() == *id).ok_or_else(|| {
                Error::unreachable(PKCS11_PROVIDER, format!("no token in slot {id}"))
            }),
            TokenSelector::Label(label) => {
                let mut found = Vec::new();
                for slot in slots {
                    match self.ctx.get_token_info(slot) {
                        Ok(info) if info.label().trim_end() == label => found.push(slot),
                        Ok(_) => {}
                        // A token pulled out while listing is not this one.
                        Err(CkError::Pkcs11(RvError::TokenNotPresent, _)) => {}
                        Err(e) => return Err(unreachable("C_GetTokenInfo", e)),
                    }
                }
                match found.as_slice() {
                    [slot] => Ok(*slot),
                    [] => Err(Error::unreachable(
                        PKCS11_PROVIDER,
                        format!("no token labelled {label:?} is present"),
                    )),
                    _ => Err(Error::InvalidArgument(format!(
                        "{} tokens are labelled {label:?}: name the slot instead",
                        found.len()
                    ))),
                }
            }
        }
    }

    /// The mechanisms the token offers, with whether each can encrypt and
    /// decrypt, and wrap and unwrap.
    pub(super) fn mechanisms(&self) -> Result<Vec<(MechanismType, bool, bool)>> {
        let slot = self.slot()?;
        let list = self.ctx.get_mechanism_list(slot).map_err(|e| {
            Error::unreachable(PKCS11_PROVIDER, "C_GetMechanismList failed").with_source(e)
        })?;
        let mut out = Vec::new();
        for mechanism in [MechanismType::AES_GCM, MechanismType::AES_KEY_WRAP_PAD] {
            if !list.contains(&mechanism) {
                continue;
            }
            let info = self.ctx.get_mechanism_info(slot, mechanism).map_err(|e| {
                Error::unreachable(PKCS11_PROVIDER, "C_GetMechanismInfo failed").with_source(e)
            })?;
            out.push((
                mechanism,
                info.encrypt() && info.decrypt(),
                info.wrap() && info.unwrap(),
            ));
        }
        Ok(out)
    }

    /// A new read-write session, logged in as the user.
    fn open_session(&self) -> std::result::Result<Session, TokenError> {
        let slot = self.slot().map_err(TokenError::Cmek)?;
        let session = self.ctx.open_rw_session(slot).map_err(TokenError::Token)?;
        self.login(&session).map_err(TokenError::Token)?;
        Ok(session)
    }

    /// Logs the user in; already logged in (through another session of
    /// this process) is fine.
    fn login(&self, session: &Session) -> std::result::Result<(), CkError> {
        let pin = AuthPin::from(self.pin.expose().to_owned());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Logs the user in on `session` if it is not (someone logged the
    /// application out): a private key is invisible to a public session,
    /// and would look missing.
    fn ensure_login(&self, session: &Session) -> std::result::Result<(), CkError> {
        match session.get_session_info()?.session_state() {
            SessionState::RoPublic | SessionState::RwPublic => self.login(session),
            _ => Ok(()),
        }
    }

    /// Runs `op` on a pooled session, logged in. If the token answers that
    /// the session is lost or logged out, `op` runs once more on a new
    /// session.
    pub(super) fn with_session<T>(
        &self,
        op: impl Fn(&Session) -> std::result::Result<T, TokenError>,
    ) -> std::result::Result<T, TokenError> {
        self.operations.fetch_add(1, Ordering::Relaxed);
        // See `Pkcs11Options::serialize_calls`.
        let _serial = self
            .call_lock
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()));
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let session = match pooled {
            Some(session) => session,
            None => self.open_session()?,
        };
        let first = match self.ensure_login(&session) {
            Ok(()) => op(&session),
            Err(e) => Err(TokenError::Token(e)),
        };
        match first {
            Err(TokenError::Token(e)) if session_lost(&e) => {
                tracing::debug!(error = %e, "PKCS#11 session lost; opening a new one");
                // Closing a lost session fails; there is nothing to release.
                drop(session);
                let session = self.open_session()?;
                let result = op(&session);
                self.give_back(session, &result);
                result
            }
            result => {
                self.give_back(session, &result);
                result
            }
        }
    }

    /// Returns a session to the pool, unless it is lost or the pool full.
    fn give_back<T>(&self, session: Session, result: &std::result::Result<T, TokenError>) {
        if let Err(TokenError::Token(e)) = result {
            if session_lost(e) {
                return;
            }
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(session);
        }
    }
}

/// Why an operation on the token failed: the token's answer (to the
/// operation or to opening a session), or cmek's own error (no slot, a
/// missing key, a bad output).
#[derive(Debug)]
pub(super) enum TokenError {
    /// The token's answer, to be mapped by the caller.
    Token(CkError),
    /// Already an [`Error`].
    Cmek(Error),
}

impl From<CkError> for TokenError {
    fn from(e: CkError) -> Self {
        TokenError::Token(e)
    }
}

impl From<Error> for TokenError {
    fn from(e: Error) -> Self {
        TokenError::Cmek(e)
    }
}
