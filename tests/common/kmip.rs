//! Helpers of the KMIP provider's tests: the test key server PyKMIP,
//! started by `scripts/test` (scripts/test.d/kmip.sh), which exports its
//! address and the certificate files as `CMEK_KMIP_*`.
#![allow(dead_code)]

use cmek::provider::{KeyProvider, KmipOptions, KmipProvider, NewKey};
use cmek::KeyRef;

/// True when a missing test server must fail the test rather than skip it.
fn required() -> bool {
    std::env::var("CMEK_REQUIRE_KMS").is_ok_and(|v| v == "1") || std::env::var_os("CI").is_some()
}

/// The test server's options from `CMEK_KMIP_*`, or `None`, after saying
/// so, when the tests may be skipped. With `CMEK_REQUIRE_KMS=1` or `CI`
/// set, a missing server fails the test instead.
pub fn options() -> Option<KmipOptions> {
    match std::env::var("CMEK_KMIP_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => {
            Some(KmipOptions::from_env().expect("CMEK_KMIP_* describe the test server"))
        }
        _ => {
            assert!(
                !required(),
                "CMEK_KMIP_ENDPOINT is not set but the KMIP test server is required; run scripts/test"
            );
            eprintln!("skipped: set CMEK_KMIP_* (scripts/test starts a KMIP test server)");
            None
        }
    }
}

/// A provider for the test server, or `None` as [`options`] says.
pub fn provider() -> Option<KmipProvider> {
    options().map(|o| KmipProvider::new(&o).unwrap())
}

/// A provider for the test server with the client certificate of another
/// identity (`CMEK_KMIP_OTHER_CERT`, `CMEK_KMIP_OTHER_KEY`).
pub fn other_identity(options: &KmipOptions) -> KmipProvider {
    let mut other = options.clone();
    other.cert_file = std::env::var("CMEK_KMIP_OTHER_CERT").unwrap().into();
    other.key_file = std::env::var("CMEK_KMIP_OTHER_KEY").unwrap().into();
    KmipProvider::new(&other).unwrap()
}

/// A new active AES-256 key, through the provider's administration.
pub async fn create_key(p: &KmipProvider, name: &str) -> KeyRef {
    p.admin()
        .unwrap()
        .create_key(&NewKey::named(name))
        .await
        .unwrap()
}
