//! The provider conformance suite (`cmek::testing::conformance`) run against
//! every provider in this crate, one named test each: the local key file,
//! the mock, and AWS KMS on a KMS-compatible server on loopback (moto,
//! started by `scripts/test`; `CMEK_KMS_ENDPOINT`); Cloud KMS, Azure Key
//! Vault, PKCS#11 and KMIP run it in their own test files. None of these
//! roots has public material to forge a wrap with: each fixture says why,
//! and the report's `forged_wrap` line shows it. Without that server the
//! AWS run fails when `CMEK_REQUIRE_KMS=1` or `CI` is set, and otherwise
//! says it was skipped.
#![cfg(feature = "testing")]

#[cfg(feature = "aws-kms")]
mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use cmek::provider::{KeyProvider, LocalKeyProvider};
use cmek::testing::conformance::{self, Fixture, Forgery, Outcome, ReplicatedKey};
use cmek::testing::scenarios;
use cmek::testing::MockProvider;
use cmek::{EncryptionContext, KeyRef, Result, SecretKey};

/// Why no wrap under a local key file's root can be forged.
const LOCAL_NO_PUBLIC_MATERIAL: &str = "no public material: a local root key is a symmetric \
     AES-256 key in the key file, and whoever can read the file holds the key itself";
/// Why no wrap under the mock's root can be forged.
const MOCK_NO_PUBLIC_MATERIAL: &str =
    "no public material: a mock root key is a symmetric AES-256 key held in memory";

/// The report says the forgery check was skipped, and why.
fn skipped_for(report: &conformance::Report, why: &str) {
    match report.outcome("forged_wrap") {
        Some(Outcome::Skipped(s)) if *s == why => {}
        other => panic!("forged_wrap: {other:?}, expected skipped ({why})\n{report}"),
    }
}

/// Key names unique within one fixture.
#[derive(Default)]
struct Names(AtomicU32);

impl Names {
    fn next(&self) -> String {
        format!("conformance-{}", self.0.fetch_add(1, Ordering::Relaxed))
    }
}

struct Local {
    _dir: tempfile::TempDir,
    provider: LocalKeyProvider,
    names: Names,
}

#[async_trait]
impl Fixture for Local {
    fn provider(&self) -> &dyn KeyProvider {
        &self.provider
    }
    async fn enabled_key(&self) -> Result<KeyRef> {
        self.provider.add_key(&self.names.next())
    }
    fn missing_key(&self) -> KeyRef {
        self.provider.key_ref("never-created")
    }
    async fn forge(&self, _: &KeyRef, _: &SecretKey, _: &EncryptionContext) -> Result<Forgery> {
        Ok(Forgery::NoPublicMaterial(LOCAL_NO_PUBLIC_MATERIAL))
    }
}

#[tokio::test]
async fn the_local_key_file_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let provider = LocalKeyProvider::create(dir.path().join("root.keys"), "local-1").unwrap();
    let fixture = Local {
        _dir: dir,
        provider,
        names: Names::default(),
    };
    let report = conformance::run(&fixture).await;
    report.assert_conforms();
    assert_eq!(report.provider, "local");
    assert_eq!(report.outcome("disabled_key"), Some(&Outcome::Passed));
    skipped_for(&report, LOCAL_NO_PUBLIC_MATERIAL);
    println!("{report}");
}

struct Mock {
    provider: MockProvider,
    names: Names,
}

#[async_trait]
impl Fixture for Mock {
    fn provider(&self) -> &dyn KeyProvider {
        &self.provider
    }
    async fn enabled_key(&self) -> Result<KeyRef> {
        Ok(self.provider.add_key(&self.names.next()))
    }
    fn missing_key(&self) -> KeyRef {
        self.provider.key_ref("never-created")
    }
    async fn alias_for(&self, key: &KeyRef) -> Result<Option<KeyRef>> {
        Ok(self
            .provider
            .add_alias(&format!("alias/{}", self.names.next()), key.key_id()))
    }
    async fn forge(&self, _: &KeyRef, _: &SecretKey, _: &EncryptionContext) -> Result<Forgery> {
        Ok(Forgery::NoPublicMaterial(MOCK_NO_PUBLIC_MATERIAL))
    }
    async fn replicated_key(&self) -> Result<Option<ReplicatedKey>> {
        let name = self.names.next();
        let key = self.provider.add_multi_region_key(&name);
        assert!(self.provider.replicate_key(&name, "mock-region-2"));
        Ok(Some(ReplicatedKey {
            key,
            replica_regions: vec!["mock-region-2".into()],
        }))
    }
}

#[tokio::test]
async fn the_mock_provider_conforms() {
    let fixture = Mock {
        provider: MockProvider::new(),
        names: Names::default(),
    };
    let report = conformance::run(&fixture).await;
    report.assert_conforms();
    // Aliases and replicas are checked, not skipped.
    for check in [
        "resolve_key",
        "replica_regions",
        "disabled_key",
        "wrong_key",
    ] {
        assert_eq!(report.outcome(check), Some(&Outcome::Passed), "{report}");
    }
    skipped_for(&report, MOCK_NO_PUBLIC_MATERIAL);
    println!("{report}");
}

/// The scenario suite's fixture for a provider with an admin: new keys
/// by name, disabled and enabled through the admin.
struct Scenarios<P> {
    provider: Arc<P>,
    names: Names,
    add: fn(&P, &str) -> Result<KeyRef>,
}

#[async_trait]
impl<P: KeyProvider + 'static> scenarios::Fixture for Scenarios<P> {
    fn provider(&self) -> Arc<dyn KeyProvider> {
        self.provider.clone()
    }
    async fn enabled_key(&self) -> Result<KeyRef> {
        (self.add)(&self.provider, &self.names.next())
    }
}

#[tokio::test]
async fn the_local_key_file_passes_the_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    let provider = LocalKeyProvider::create(dir.path().join("root.keys"), "local-1").unwrap();
    let report = scenarios::run(&Scenarios {
        provider: Arc::new(provider),
        names: Names::default(),
        add: LocalKeyProvider::add_key,
    })
    .await;
    report.assert_all_passed();
    assert_eq!(report.checks.len(), 3, "{report}");
}

#[tokio::test]
async fn the_mock_provider_passes_the_scenarios() {
    let report = scenarios::run(&Scenarios {
        provider: Arc::new(MockProvider::new()),
        names: Names::default(),
        add: |m: &MockProvider, name: &str| Ok(m.add_key(name)),
    })
    .await;
    report.assert_all_passed();
}

#[cfg(feature = "aws-kms")]
mod aws {
    use super::*;
    use cmek::provider::{AwsKmsOptions, AwsKmsProvider, NewKey};
    use cmek::testing::conformance::Deviations;

    const REGION: &str = "us-east-1";
    /// Why no wrap under an AWS KMS key can be forged.
    const NO_PUBLIC_MATERIAL: &str = "no public material: a symmetric key inside AWS KMS; \
         every wrap is a KMS Encrypt call with the key, the context authenticated";
    const REPLICA_REGION: &str = "eu-west-1";

    struct Aws {
        url: String,
        provider: AwsKmsProvider,
    }

    impl Aws {
        async fn create(&self, new: &NewKey) -> Result<KeyRef> {
            self.provider.admin().unwrap().create_key(new).await
        }
    }

    /// A key's id, the last part of its ARN.
    fn key_id(key: &KeyRef) -> &str {
        key.key_id().rsplit('/').next().unwrap()
    }

    #[async_trait]
    impl Fixture for Aws {
        fn provider(&self) -> &dyn KeyProvider {
            &self.provider
        }
        async fn enabled_key(&self) -> Result<KeyRef> {
            self.create(&NewKey::named("conformance")).await
        }
        fn missing_key(&self) -> KeyRef {
            self.provider
                .key_ref("11111111-2222-3333-4444-555555555555")
        }
        async fn alias_for(&self, key: &KeyRef) -> Result<Option<KeyRef>> {
            let alias = format!("alias/cmek-conformance-{}", key_id(key));
            common::client(&self.url, REGION)
                .create_alias()
                .alias_name(&alias)
                .target_key_id(key_id(key))
                .send()
                .await
                .unwrap();
            Ok(Some(self.provider.key_ref(&alias)))
        }
        async fn replicated_key(&self) -> Result<Option<ReplicatedKey>> {
            let key = self
                .create(&NewKey::named("conformance").multi_region())
                .await?;
            common::client(&self.url, REGION)
                .replicate_key()
                .key_id(key_id(&key))
                .replica_region(REPLICA_REGION)
                .send()
                .await
                .unwrap();
            Ok(Some(ReplicatedKey {
                key,
                replica_regions: vec![REPLICA_REGION.into()],
            }))
        }
        async fn forge(&self, _: &KeyRef, _: &SecretKey, _: &EncryptionContext) -> Result<Forgery> {
            Ok(Forgery::NoPublicMaterial(NO_PUBLIC_MATERIAL))
        }
        /// What the moto server does not model (docs/AWS_KMS.md).
        fn deviations(&self) -> Deviations {
            Deviations {
                key_state_not_enforced: true,
                wrong_key_is_access_denied: true,
            }
        }
    }

    #[tokio::test]
    async fn aws_kms_on_the_test_server_conforms() {
        let Some(url) = common::endpoint() else {
            return;
        };
        let provider = common::provider(&url, REGION, &AwsKmsOptions::default());
        let fixture = Aws { url, provider };
        let report = conformance::run(&fixture).await;
        report.assert_conforms();
        for check in ["resolve_key", "replica_regions", "context_binding"] {
            assert_eq!(report.outcome(check), Some(&Outcome::Passed), "{report}");
        }
        skipped_for(&report, NO_PUBLIC_MATERIAL);
        println!("{report}");
    }
    struct AwsScenarios(Arc<AwsKmsProvider>);

    #[async_trait]
    impl scenarios::Fixture for AwsScenarios {
        fn provider(&self) -> Arc<dyn KeyProvider> {
            self.0.clone()
        }
        async fn enabled_key(&self) -> Result<KeyRef> {
            self.0
                .admin()
                .unwrap()
                .create_key(&NewKey::named("scenario"))
                .await
        }
        /// moto answers Decrypt under a disabled key (docs/AWS_KMS.md); its
        /// DescribeKey, which the monitor asks, reports the state.
        fn deviations(&self) -> Deviations {
            Deviations {
                key_state_not_enforced: true,
                wrong_key_is_access_denied: true,
            }
        }
    }

    #[tokio::test]
    async fn aws_kms_on_the_test_server_passes_the_scenarios() {
        let Some(url) = common::endpoint() else {
            return;
        };
        let provider = common::provider(&url, REGION, &AwsKmsOptions::default());
        let report = scenarios::run(&AwsScenarios(Arc::new(provider))).await;
        report.assert_conforms();
        // Only the refusal to open under a disabled key is waived.
        assert_eq!(
            report.outcome("monitor_cycle"),
            Some(&Outcome::Passed),
            "{report}"
        );
        assert_eq!(
            report.outcome("backup_restore"),
            Some(&Outcome::Passed),
            "{report}"
        );
        assert!(
            matches!(report.outcome("zone_life"), Some(Outcome::Waived(_))),
            "{report}"
        );
        println!("{report}");
    }
}
