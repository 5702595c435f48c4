//! Helpers shared by the AWS KMS integration tests.
#![allow(dead_code)]

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::config::{Credentials, SharedCredentialsProvider};
use cmek::provider::{AwsKmsOptions, AwsKmsProvider, KeyProvider, NewKey};

/// An SDK configuration for a test endpoint: static test credentials and
/// the retry and timeout settings of `options`.
pub fn sdk_config(endpoint: &str, region: &str, options: &AwsKmsOptions) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "cmek-tests",
        )))
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(options.max_attempts)
                .with_initial_backoff(options.initial_backoff),
        )
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(options.deadline)
                .operation_attempt_timeout(options.attempt_timeout)
                .connect_timeout(options.connect_timeout)
                .build(),
        )
        .build()
}

/// The KMS test server's endpoint (`CMEK_KMS_ENDPOINT`), or `None`, after
/// saying so, when the tests may be skipped. With `CMEK_REQUIRE_KMS=1` or
/// `CI` set, a missing endpoint fails the test instead.
pub fn endpoint() -> Option<String> {
    match std::env::var("CMEK_KMS_ENDPOINT") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let required = std::env::var("CMEK_REQUIRE_KMS").is_ok_and(|v| v == "1")
                || std::env::var_os("CI").is_some();
            assert!(
                !required,
                "CMEK_KMS_ENDPOINT is not set but a KMS test server is required; run scripts/test"
            );
            eprintln!("skipped: set CMEK_KMS_ENDPOINT (scripts/test starts a KMS test server)");
            None
        }
    }
}

/// A provider for a test endpoint in `region`.
pub fn provider(endpoint: &str, region: &str, options: &AwsKmsOptions) -> AwsKmsProvider {
    AwsKmsProvider::from_sdk_config(&sdk_config(endpoint, region, options)).unwrap()
}

/// A raw SDK client for the test server in `region`, for what cmek does
/// not do and the tests need: aliases, replicas, scheduled deletion.
pub fn client(endpoint: &str, region: &str) -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::new(&sdk_config(endpoint, region, &AwsKmsOptions::default()))
}

/// Creates a symmetric encryption key on the test server through the
/// provider's administration and returns its ARN and key id (the server's
/// administrative calls want the id).
pub async fn create_key_with_id(p: &AwsKmsProvider, multi_region: bool) -> (String, String) {
    let mut new = NewKey::named("cmek integration test");
    if multi_region {
        new = new.multi_region();
    }
    let key = p.admin().unwrap().create_key(&new).await.unwrap();
    let arn = key.key_id().to_owned();
    let id = arn.rsplit('/').next().unwrap().to_owned();
    (arn, id)
}
