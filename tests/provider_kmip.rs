//! The KMIP provider against PyKMIP's KMIP server on loopback, over mutual
//! TLS with certificates made for the run (scripts/test.d/kmip.sh, started
//! by `scripts/test`): the conformance suite, key states, errors, a zone's
//! lifecycle, the monitor, a backup restored, and no KMIP call on the data
//! path.
//!
//! The server's address and the certificate files come from `CMEK_KMIP_*`.
//! Without them these tests fail when `CMEK_REQUIRE_KMS=1` or `CI` is set,
//! and otherwise say they were skipped.
//!
//! `real_key_server_round_trip` runs against a real key server instead,
//! only when `CMEK_KMIP_REAL=1` (see docs/KMIP.md).
#![cfg(all(feature = "kmip", feature = "testing"))]

#[path = "common/kmip.rs"]
mod kmip;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cmek::provider::{
    KeyProvider, KmipOptions, KmipProvider, NewKey, RegionAnswer, StepOutcome, ValidationFailure,
    ValidationStep,
};
use cmek::testing::conformance::{self, Fixture, Outcome};
use cmek::zone::{Keyring, MemoryManifestStore, ZoneSpec};
use cmek::{EncryptionContext, Error, KeyRef, KeyState, SecretKey};

struct Server {
    provider: KmipProvider,
    names: AtomicU32,
}

#[async_trait]
impl Fixture for Server {
    fn provider(&self) -> &dyn KeyProvider {
        &self.provider
    }
    async fn enabled_key(&self) -> cmek::Result<KeyRef> {
        let n = self.names.fetch_add(1, Ordering::Relaxed);
        self.provider
            .admin()
            .unwrap()
            .create_key(&NewKey::named(format!("conformance-{n}")))
            .await
    }
    fn missing_key(&self) -> KeyRef {
        self.provider.key_ref("999999999")
    }
    fn disable_is_final(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn the_kmip_provider_conforms() {
    let Some(provider) = kmip::provider() else {
        return;
    };
    let fixture = Server {
        provider,
        names: AtomicU32::new(0),
    };
    let report = conformance::run(&fixture).await;
    println!("{report}");
    report.assert_conforms();
    assert_eq!(report.provider, "kmip");
    for check in [
        "round_trip",
        "context_binding",
        "wrong_key",
        "modified_blob",
        "validation",
    ] {
        assert_eq!(report.outcome(check), Some(&Outcome::Passed), "{report}");
    }
    // Revoking is final in KMIP: the suite checked that enabling again fails.
    assert!(
        matches!(report.outcome("disabled_key"), Some(Outcome::Waived(_))),
        "{report}"
    );
}
