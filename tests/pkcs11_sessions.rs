//! The PKCS#11 provider when the token changes behind its back (SoftHSM2,
//! set up by `scripts/test.d/pkcs11.sh`): every session of the process
//! closed (a token reset, an HSM fail-over), the user logged out, keys cmek
//! would not make (extractable, not AES-256, two under one label), a token
//! that is not there, a wrong PIN. In a test binary of its own: closing
//! every session of the process would disturb the other PKCS#11 tests.
//!
//! Without the token these tests fail when `CMEK_REQUIRE_KMS=1` or `CI` is
//! set, and otherwise say they were skipped.
#![cfg(feature = "pkcs11")]

#[path = "common/pkcs11.rs"]
mod token;

use cmek::provider::{
    EncryptionContext, KeyProvider, Pkcs11Options, Pkcs11Provider, TokenSelector,
};
use cmek::{Error, KeyState, SecretKey};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

/// The tests of this file one at a time: one closes every session of the
/// process, the others' too.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// This process's own context on the module and the test token's slot.
fn raw(options: &Pkcs11Options) -> (Pkcs11, Slot) {
    let ctx = Pkcs11::new(&options.module).unwrap();
    // The provider initialized the module in this process already.
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let TokenSelector::Label(label) = &options.token else {
        panic!("the test token is named by label");
    };
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == label)
        .unwrap();
    (ctx, slot)
}

/// A logged-in read-write session of the test's own.
fn user_session(ctx: &Pkcs11, slot: Slot) -> Session {
    let session = ctx.open_rw_session(slot).unwrap();
    let pin = std::fs::read_to_string(std::env::var("CMEK_PKCS11_PIN_FILE").unwrap()).unwrap();
    let _ = session.login(
        UserType::User,
        Some(&AuthPin::from(pin.trim_end().to_owned())),
    );
    session
}

/// Closes every session of this process on `slot`, as a token reset does;
/// nobody stays logged in.
fn close_all_sessions(slot: Slot) {
    // The `cryptoki` crate has no call for it: the module's own function.
    let module =
        unsafe { cryptoki_sys::Pkcs11::new(std::env::var("CMEK_PKCS11_MODULE").unwrap()).unwrap() };
    let rv = unsafe { module.C_CloseAllSessions(slot.id() as _) };
    assert_eq!(rv, 0, "C_CloseAllSessions");
}

fn ctx() -> EncryptionContext {
    EncryptionContext::new().with("cmek:zone", "sessions")
}

#[tokio::test]
async fn lost_sessions_and_a_logout_are_recovered_from_once() {
    let _serial = SERIAL.lock().await;
    let Some(options) = token::options() else {
        return;
    };
    let (raw_ctx, slot) = raw(&options);
    let p = Pkcs11Provider::open(options).unwrap();
    let root = token::create_key(&p, "sessions").await;
    let key = SecretKey::generate().unwrap();
    let blob = p.wrap_key(&root, &key, &ctx()).await.unwrap();

    // Every session of this process closed: the pooled ones are invalid
    // and nobody is logged in any more.
    let raw_module =
        unsafe { cryptoki_sys::Pkcs11::new(std::env::var("CMEK_PKCS11_MODULE").unwrap()).unwrap() };
    let rv = unsafe { raw_module.C_CloseAllSessions(slot.id() as _) };
    assert_eq!(rv, 0, "C_CloseAllSessions");
    let before = p.token_operations();
    assert_eq!(p.unwrap_key(&root, &blob, &ctx()).await.unwrap(), key);
    assert_eq!(p.token_operations() - before, 1, "one operation, run twice");

    // Logged out by another part of the process: the provider's sessions
    // are public, where a private key looks missing. It logs in again
    // rather than call the key missing.
    let session = user_session(&raw_ctx, slot);
    session.logout().unwrap();
    assert_eq!(p.describe_key(&root).await.unwrap(), KeyState::Enabled);
    assert_eq!(p.unwrap_key(&root, &blob, &ctx()).await.unwrap(), key);
}

#[tokio::test]
async fn keys_unfit_to_be_roots_are_refused() {
    let _serial = SERIAL.lock().await;
    let Some(options) = token::options() else {
        return;
    };
    let (raw_ctx, slot) = raw(&options);
    let p = Pkcs11Provider::open(options).unwrap();
    let session = user_session(&raw_ctx, slot);
    let aes = |label: &str, len: u64, extractable: bool| {
        session
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen(len.into()),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(extractable),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    Attribute::Wrap(true),
                    Attribute::Unwrap(true),
                    Attribute::Label(label.as_bytes().to_vec()),
                ],
            )
            .unwrap_or_else(|e| panic!("{label} {len} {extractable}: {e}"));
    };
    let extractable = token::unique_label("extractable");
    aes(&extractable, 32, true);
    let short = token::unique_label("aes128");
    aes(&short, 16, false);
    let twice = token::unique_label("twice");
    aes(&twice, 32, false);
    aes(&twice, 32, false);
    let key = SecretKey::generate().unwrap();
    for (label, state, why) in [
        (&extractable, Some(KeyState::Unavailable), "extractable"),
        (&short, Some(KeyState::Unavailable), "256-bit"),
        (&twice, None, "2 secret keys"),
    ] {
        let root = p.key_ref(label);
        match state {
            Some(state) => assert_eq!(p.describe_key(&root).await.unwrap(), state, "{label}"),
            None => assert!(p.describe_key(&root).await.is_err(), "{label}"),
        }
        let err = p.wrap_key(&root, &key, &ctx()).await.unwrap_err();
        assert!(
            matches!(&err, Error::ProviderRejected { message, .. } if message.contains(why)),
            "{label}: {err}"
        );
        assert!(!p.validate_key(&root).await.is_valid());
    }
}

#[tokio::test]
async fn a_missing_token_or_a_wrong_pin_is_said_so() {
    let _serial = SERIAL.lock().await;
    let Some(options) = token::options() else {
        return;
    };
    let mut absent = options.clone();
    absent.token = TokenSelector::Label("cmek-no-such-token".into());
    let err = Pkcs11Provider::open(absent).unwrap_err();
    assert!(matches!(err, Error::ProviderUnreachable { .. }), "{err}");
    assert!(err.is_transient());

    // Nobody of this process logged in (sessions of earlier tests closed):
    // the wrong PIN is refused.
    let (_, slot) = raw(&options);
    close_all_sessions(slot);
    let mut wrong = options.clone();
    wrong.pin = cmek::provider::Pkcs11Pin::new("00000000");
    let err = Pkcs11Provider::open(wrong).unwrap_err();
    assert!(matches!(err, Error::AccessDenied { .. }), "{err}");

    let mut module = options;
    module.module = "/nonexistent/libpkcs11.so".into();
    let err = Pkcs11Provider::open(module).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}
