//! Helpers for the Google Cloud KMS tests: the protocol fake's address
//! (`CMEK_GCP_KMS_ENDPOINT`, started by `scripts/test`), providers on it,
//! and its test-only controls (`/_fake/...`: call counter, denied
//! permissions, injected failures and damaged answers, version states).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use cmek::provider::{GcpCredentials, GcpKmsOptions, GcpKmsProvider, KeyProvider, NewKey};
use cmek::KeyRef;

/// The project every test key lives in.
pub const PROJECT: &str = "cmek-tests";

/// The fake's endpoint, or `None`, after saying so, when the tests may be
/// skipped. With `CMEK_REQUIRE_KMS=1` or `CI` set, a missing endpoint fails
/// the test instead.
pub fn endpoint() -> Option<String> {
    match std::env::var("CMEK_GCP_KMS_ENDPOINT") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let required = std::env::var("CMEK_REQUIRE_KMS").is_ok_and(|v| v == "1")
                || std::env::var_os("CI").is_some();
            assert!(
                !required,
                "CMEK_GCP_KMS_ENDPOINT is not set but the Cloud KMS fake is required; run scripts/test"
            );
            eprintln!(
                "skipped: set CMEK_GCP_KMS_ENDPOINT (scripts/test starts the Cloud KMS fake)"
            );
            None
        }
    }
}

/// The bearer token the fake wants (`CMEK_GCP_KMS_ACCESS_TOKEN`), if any.
pub fn token() -> Option<String> {
    std::env::var("CMEK_GCP_KMS_ACCESS_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
}

/// The key ring name for `location`.
pub fn ring(location: &str) -> String {
    format!("projects/{PROJECT}/locations/{location}/keyRings/tests")
}

/// A provider on the fake that creates keys in the ring of `location`.
pub async fn provider(endpoint: &str, location: &str) -> GcpKmsProvider {
    GcpKmsProvider::new(GcpKmsOptions {
        endpoint: Some(endpoint.to_owned()),
        credentials: token().map_or(GcpCredentials::Anonymous, GcpCredentials::AccessToken),
        timeout: Duration::from_secs(5),
        key_ring: Some(ring(location)),
    })
    .await
    .unwrap()
}

/// A new enabled key in the provider's ring.
pub async fn create_key(p: &GcpKmsProvider) -> KeyRef {
    p.admin()
        .unwrap()
        .create_key(&NewKey::unnamed())
        .await
        .unwrap()
}

/// The fake's controls and raw API, over plain HTTP/1.1.
pub struct Fake {
    addr: String,
}

impl Fake {
    /// The fake at `endpoint` (`http://HOST:PORT`).
    pub fn new(endpoint: &str) -> Self {
        Self {
            addr: endpoint
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned(),
        }
    }

    /// Sends one request; returns the status code and the body.
    pub fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let auth = token()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    fn control(&self, path: &str, body: &str) {
        let (status, answer) = self.request("POST", path, body);
        assert_eq!(status, 200, "{path}: {answer}");
    }

    /// API calls naming `key` (or one of its versions) so far.
    pub fn calls(&self, key: &KeyRef) -> u64 {
        let (status, body) = self.request("GET", &format!("/_fake/calls?key={}", key.key_id()), "");
        assert_eq!(status, 200, "{body}");
        let digits: String = body.chars().filter(char::is_ascii_digit).collect();
        digits.parse().unwrap()
    }

    /// Denies (or allows again) `permission` on `key`.
    pub fn deny(&self, key: &KeyRef, permission: &str, denied: bool) {
        self.control(
            "/_fake/deny",
            &format!(
                r#"{{"key":"{}","permission":"{permission}","denied":{denied}}}"#,
                key.key_id()
            ),
        );
    }

    /// Damages `field` in the next `count` answers about `key`.
    pub fn corrupt(&self, key: &KeyRef, field: &str, count: u32) {
        self.control(
            "/_fake/corrupt",
            &format!(
                r#"{{"key":"{}","field":"{field}","count":{count}}}"#,
                key.key_id()
            ),
        );
    }

    /// Answers the next `count` calls about `key` with `status`.
    pub fn fail(&self, key: &KeyRef, status: &str, count: u32) {
        self.control(
            "/_fake/fail",
            &format!(
                r#"{{"key":"{}","status":"{status}","count":{count}}}"#,
                key.key_id()
            ),
        );
    }

    /// Sets version `n` of `key` to `state`.
    pub fn set_version_state(&self, key: &KeyRef, n: u32, state: &str) {
        self.control(
            "/_fake/version-state",
            &format!(
                r#"{{"version":"{}/cryptoKeyVersions/{n}","state":"{state}"}}"#,
                key.key_id()
            ),
        );
    }

    /// Cloud KMS rotation: creates a new version of `key` and makes it
    /// the primary (CreateCryptoKeyVersion, UpdateCryptoKeyPrimaryVersion);
    /// returns its number.
    pub fn rotate(&self, key: &KeyRef) -> u32 {
        let (status, body) = self.request(
            "POST",
            &format!("/v1/{}/cryptoKeyVersions", key.key_id()),
            "{}",
        );
        assert_eq!(status, 200, "{body}");
        let n: u32 = body
            .split("/cryptoKeyVersions/")
            .nth(1)
            .unwrap()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap();
        let (status, body) = self.request(
            "POST",
            &format!("/v1/{}:updatePrimaryVersion", key.key_id()),
            &format!(r#"{{"cryptoKeyVersionId":"{n}"}}"#),
        );
        assert_eq!(status, 200, "{body}");
        n
    }
}
