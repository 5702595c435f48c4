//! The KMIP provider against PyKMIP's KMIP server on loopback, over mutual
//! TLS with certificates made for the run (scripts/test.d/kmip.sh, started
//! by `scripts/test`): the conformance suite, key states, errors, and the
//! scenario suite (a zone's life with no KMIP call on the data path, the
//! monitor gating a zone whose key is revoked for good, a backup restored
//! under another key).
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
use cmek::testing::conformance::{self, Fixture, Forgery, Outcome};
use cmek::testing::scenarios;
use cmek::{EncryptionContext, Error, KeyRef, KeyState, Result, SecretKey};

use kmip::create_key;

/// Why no wrap under a KMIP key can be forged.
const NO_PUBLIC_MATERIAL: &str = "no public material: a symmetric AES-256 key on the KMIP \
     server; every wrap is the server's Encrypt with the key, the context authenticated";

/// The report says the forgery check was skipped, and why.
fn skipped_for(report: &conformance::Report, why: &str) {
    match report.outcome("forged_wrap") {
        Some(Outcome::Skipped(s)) if *s == why => {}
        other => panic!("forged_wrap: {other:?}, expected skipped ({why})\n{report}"),
    }
}

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
        // PyKMIP numbers objects from 1; a real server's identifiers are
        // UUIDs. Neither hands out this one.
        self.provider.key_ref("999999999")
    }
    fn disable_is_final(&self) -> bool {
        true
    }
    async fn forge(&self, _: &KeyRef, _: &SecretKey, _: &EncryptionContext) -> Result<Forgery> {
        Ok(Forgery::NoPublicMaterial(NO_PUBLIC_MATERIAL))
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
    skipped_for(&report, NO_PUBLIC_MATERIAL);
}

fn ctx(zone: &str) -> EncryptionContext {
    EncryptionContext::new()
        .with("cmek:zone", zone)
        .with("cmek:purpose", "ezk")
}

#[tokio::test]
async fn states_follow_the_kmip_lifecycle() {
    let Some(p) = kmip::provider() else { return };
    let admin = p.admin().unwrap();
    let key = create_key(&p, "lifecycle").await;
    assert_eq!(p.describe_key(&key).await.unwrap(), KeyState::Enabled);
    // Enabling an Active key changes nothing.
    admin.enable_key(&key).await.unwrap();
    let secret = SecretKey::generate().unwrap();
    let wrapped = p.wrap_key(&key, &secret, &ctx("z")).await.unwrap();
    // The documented layout: version 1, mode 1, the server's IV, tag, key.
    let bytes = wrapped.as_bytes();
    assert_eq!(&bytes[..2], &[1, 1]);
    assert_eq!(bytes.len(), 3 + usize::from(bytes[2]) + 16 + 32);

    // Revoke: Deactivated, which cmek reports as disabled; wrap and unwrap
    // are refused as unavailable, not as an access problem.
    admin.disable_key(&key).await.unwrap();
    admin.disable_key(&key).await.unwrap();
    assert_eq!(p.describe_key(&key).await.unwrap(), KeyState::Disabled);
    for err in [
        p.wrap_key(&key, &secret, &ctx("z")).await.unwrap_err(),
        p.unwrap_key(&key, &wrapped, &ctx("z")).await.unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                Error::KeyUnavailable {
                    state: KeyState::Disabled,
                    ..
                }
            ),
            "{err}"
        );
    }
    // No way back from Deactivated, and the error says what to do.
    let err = admin.enable_key(&key).await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("Deactivated"), "{err}");
    assert!(err.to_string().contains("rotate"), "{err}");
    let report = p.validate_key(&key).await;
    assert_eq!(
        report.first_failure(),
        Some((
            ValidationStep::Encrypt,
            &ValidationFailure::KeyState(KeyState::Disabled)
        ))
    );
    assert_eq!(report.state, Some(KeyState::Disabled));
    // A server has no multi-region keys.
    let err = admin
        .create_key(&NewKey::named("x").multi_region())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

#[tokio::test]
async fn another_identity_is_denied_and_the_region_is_the_servers() {
    let Some(options) = kmip::options() else {
        return;
    };
    let p = KmipProvider::new(&options).unwrap();
    let key = create_key(&p, "owned").await;
    let secret = SecretKey::generate().unwrap();
    let wrapped = p.wrap_key(&key, &secret, &ctx("z")).await.unwrap();

    // PyKMIP lets only an object's owner use it: another client
    // certificate is denied, for every call.
    let other = kmip::other_identity(&options);
    let err = other.wrap_key(&key, &secret, &ctx("z")).await.unwrap_err();
    assert!(matches!(err, Error::AccessDenied { .. }), "{err}");
    let err = other
        .unwrap_key(&key, &wrapped, &ctx("z"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AccessDenied { .. }), "{err}");
    let report = other.validate_key(&key).await;
    assert_eq!(
        report.encrypt,
        StepOutcome::Failed(ValidationFailure::AccessDenied)
    );

    // The key serves the provider's region and no other; a key named in
    // another region is refused before any call.
    assert_eq!(p.region(), options.region);
    assert_eq!(
        p.serves_region(&key, p.region()).await.unwrap(),
        RegionAnswer::Home
    );
    assert!(!p.serves_region(&key, "elsewhere-1").await.unwrap().serves());
    let before = p.requests_sent();
    let foreign = KeyRef::new("kmip", key.key_id(), "elsewhere-1");
    let err = p.wrap_key(&foreign, &secret, &ctx("z")).await.unwrap_err();
    assert!(matches!(err, Error::RegionMismatch { .. }), "{err}");
    assert!(err.to_string().contains("CMEK_KMIP_REGION"), "{err}");
    let local = KeyRef::new("local", key.key_id(), p.region());
    assert!(matches!(
        p.describe_key(&local).await.unwrap_err(),
        Error::InvalidArgument(_)
    ));
    assert_eq!(p.requests_sent(), before, "refused without a call");

    // A provider configured for another region serves that region.
    let mut there = options.clone();
    there.region = "eu-central-1".into();
    let there = KmipProvider::new(&there).unwrap();
    assert_eq!(there.key_ref(key.key_id()).region(), "eu-central-1");
}

#[tokio::test]
async fn tls_failures_and_a_closed_port_are_typed() {
    let Some(options) = kmip::options() else {
        return;
    };
    let key_id = "1";
    let secret = SecretKey::generate().unwrap();

    // The server's certificate checked against another CA: refused, not
    // worth retrying.
    let mut wrong_ca = options.clone();
    wrong_ca.ca_file = std::env::var("CMEK_KMIP_OTHER_CERT").unwrap().into();
    let p = KmipProvider::new(&wrong_ca).unwrap();
    let err = p
        .wrap_key(&p.key_ref(key_id), &secret, &ctx("z"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ProviderRejected { .. }), "{err}");
    assert!(!err.is_transient(), "{err}");

    // The server's certificate under a name it does not carry.
    let mut wrong_name = options.clone();
    wrong_name.server_name = Some("kms.example.net".into());
    let p = KmipProvider::new(&wrong_name).unwrap();
    let err = p.describe_key(&p.key_ref(key_id)).await.unwrap_err();
    assert!(matches!(err, Error::ProviderRejected { .. }), "{err}");

    // Nothing listening: unreachable, and describe says so as a state.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let mut gone = options.clone();
    gone.endpoint = closed.to_string();
    gone.server_name = Some("127.0.0.1".into());
    let p = KmipProvider::new(&gone).unwrap();
    let err = p
        .wrap_key(&p.key_ref(key_id), &secret, &ctx("z"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ProviderUnreachable { .. }), "{err}");
    assert!(err.is_transient());
    assert_eq!(
        p.describe_key(&p.key_ref(key_id)).await.unwrap(),
        KeyState::Unreachable
    );

    // A server that accepts and never answers: the call's deadline.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut stuck = options.clone();
    stuck.endpoint = silent.local_addr().unwrap().to_string();
    stuck.server_name = Some("127.0.0.1".into());
    stuck.call_timeout = Duration::from_millis(300);
    let p = KmipProvider::new(&stuck).unwrap();
    let started = std::time::Instant::now();
    let err = p
        .wrap_key(&p.key_ref(key_id), &secret, &ctx("z"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ProviderUnreachable { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(silent);

    // Configuration errors name the file or variable.
    let mut bad = options.clone();
    bad.key_file = options.ca_file.clone();
    let err = KmipProvider::new(&bad).unwrap_err();
    assert!(err.to_string().contains("ca.pem"), "{err}");
    let mut bad = options.clone();
    bad.endpoint = "no-port".into();
    assert!(matches!(
        KmipProvider::new(&bad).unwrap_err(),
        Error::InvalidArgument(_)
    ));
}

/// The scenario suite's fixture: keys on the server, revoked for good,
/// and the provider's own count of the requests it sends (the server's log
/// cannot tell this test's requests from those of the tests beside it).
struct Scenarios(Arc<KmipProvider>);

#[async_trait]
impl scenarios::Fixture for Scenarios {
    fn provider(&self) -> Arc<dyn KeyProvider> {
        self.0.clone()
    }
    async fn enabled_key(&self) -> Result<KeyRef> {
        Ok(create_key(&self.0, "scenario").await)
    }
    fn disable_is_final(&self) -> bool {
        true
    }
    async fn server_calls(&self, _: &KeyRef) -> Option<u64> {
        Some(self.0.requests_sent())
    }
}

#[tokio::test]
async fn the_kmip_provider_passes_the_scenarios() {
    let Some(p) = kmip::provider() else { return };
    let report = scenarios::run(&Scenarios(Arc::new(p))).await;
    println!("{report}");
    report.assert_all_passed();
}

/// Against a real key server, when `CMEK_KMIP_REAL=1`: the `CMEK_KMIP_*`
/// variables then name that server and a client certificate allowed to
/// create keys there. Runs the conformance suite, which creates about a
/// dozen keys named `conformance-N` (and revokes some): use a test tenant.
/// It fails, never skips, when it cannot run.
#[tokio::test]
async fn real_key_server_round_trip() {
    if std::env::var("CMEK_KMIP_REAL").ok().as_deref() != Some("1") {
        eprintln!("skipped: set CMEK_KMIP_REAL=1 and CMEK_KMIP_* to test a real key server");
        return;
    }
    let provider = KmipProvider::new(
        &KmipOptions::from_env().expect("CMEK_KMIP_REAL=1 needs CMEK_KMIP_* set"),
    )
    .expect("the CMEK_KMIP_* files are usable");
    let fixture = Server {
        provider,
        names: AtomicU32::new(0),
    };
    let report = conformance::run(&fixture).await;
    println!("{report}");
    report.assert_conforms();
}
