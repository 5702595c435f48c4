//! The SoftHSM2 token the PKCS#11 tests run against, from the environment
//! `scripts/test.d/pkcs11.sh` exports (`CMEK_PKCS11_MODULE`,
//! `CMEK_PKCS11_TOKEN`, `CMEK_PKCS11_PIN_FILE`, `SOFTHSM2_CONF`).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use cmek::provider::{
    KeyProvider, NewKey, Pkcs11Options, Pkcs11Provider, WrapMechanism, PKCS11_PROVIDER,
};
use cmek::KeyRef;

/// The token's options, or `None`, after saying so, when the tests may be
/// skipped. With `CMEK_REQUIRE_KMS=1` or `CI` set, a missing token fails
/// the test instead.
pub fn options() -> Option<Pkcs11Options> {
    match std::env::var("CMEK_PKCS11_MODULE") {
        Ok(module) if !module.is_empty() => {
            Some(Pkcs11Options::from_env().expect("the PKCS#11 test environment is complete"))
        }
        _ => {
            let required = std::env::var("CMEK_REQUIRE_KMS").is_ok_and(|v| v == "1")
                || std::env::var_os("CI").is_some();
            assert!(
                !required,
                "CMEK_PKCS11_MODULE is not set but a PKCS#11 test token is required; \
                 run scripts/test (scripts/test.d/pkcs11.sh sets up SoftHSM2)"
            );
            eprintln!(
                "skipped: set CMEK_PKCS11_MODULE (scripts/test.d/pkcs11.sh sets up SoftHSM2)"
            );
            None
        }
    }
}

/// A provider on the test token, with `mechanism` forced (or chosen by the
/// token when `None`).
pub fn provider(mechanism: Option<WrapMechanism>) -> Option<Pkcs11Provider> {
    let mut options = options()?;
    options.mechanism = mechanism;
    Some(Pkcs11Provider::open(options).expect("the PKCS#11 test token opens"))
}

/// A label no other test of this process or of an earlier run uses.
pub fn unique_label(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "cmek-{tag}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Enables or disables `key` through the provider's administration.
pub async fn set_enabled(p: &dyn KeyProvider, key: &KeyRef, enabled: bool) -> cmek::Result<()> {
    let admin = p.admin().unwrap();
    if enabled {
        admin.enable_key(key).await
    } else {
        admin.disable_key(key).await
    }
}

/// A new root key on the token, through the provider's administration.
pub async fn create_key(p: &Pkcs11Provider, tag: &str) -> KeyRef {
    let key = p
        .admin()
        .unwrap()
        .create_key(&NewKey::named(unique_label(tag)))
        .await
        .unwrap();
    assert_eq!(key.provider(), PKCS11_PROVIDER);
    key
}
