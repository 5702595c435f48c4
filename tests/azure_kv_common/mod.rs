//! Shared by the Azure Key Vault tests: the protocol fake's
//! address, CA and token (started by `scripts/test` through
//! `scripts/test.d/azure-kv.sh`), providers for it, its test-only
//! control endpoints, and a forger of wraps under RSA keys ([`forge`]).
#![allow(dead_code)]

pub mod forge;

use std::sync::Arc;

use cmek::provider::azure::{BearerToken, NewKeyType};
use cmek::provider::{AzureKeyVaultOptions, AzureKeyVaultProvider, KeyProvider, NewKey};
use cmek::KeyRef;

/// The region the tests configure (the fake does not know regions).
pub const REGION: &str = "westeurope";

/// The fake: its vault URL, the token it accepts, its CA (PEM).
#[derive(Clone)]
pub struct Fake {
    pub vault: String,
    pub token: String,
    pub ca: Vec<u8>,
}

/// The fake's settings from `CMEK_AZURE_KV_VAULT`, `CMEK_AZURE_KV_TOKEN`
/// and `CMEK_AZURE_KV_CA_FILE`, or `None`, after saying so, when the tests
/// may be skipped. With `CMEK_REQUIRE_KMS=1` or `CI` set, a missing
/// variable fails the test instead.
pub fn fake() -> Option<Fake> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (
        var("CMEK_AZURE_KV_VAULT"),
        var("CMEK_AZURE_KV_TOKEN"),
        var("CMEK_AZURE_KV_CA_FILE"),
    ) {
        (Some(vault), Some(token), Some(ca_file)) => Some(Fake {
            vault,
            token,
            ca: std::fs::read(&ca_file).unwrap_or_else(|e| panic!("{ca_file}: {e}")),
        }),
        _ => {
            let required = std::env::var("CMEK_REQUIRE_KMS").is_ok_and(|v| v == "1")
                || std::env::var_os("CI").is_some();
            assert!(
                !required,
                "CMEK_AZURE_KV_VAULT, CMEK_AZURE_KV_TOKEN or CMEK_AZURE_KV_CA_FILE is not set \
                 but the Key Vault test server is required; run scripts/test"
            );
            eprintln!(
                "skipped: set CMEK_AZURE_KV_VAULT, CMEK_AZURE_KV_TOKEN and CMEK_AZURE_KV_CA_FILE \
                 (scripts/test starts the Key Vault test server)"
            );
            None
        }
    }
}

impl Fake {
    /// Options for the fake: its token, its CA, its vault as the default
    /// vault, and no challenge-domain check (it is reached as 127.0.0.1).
    pub fn options(&self, key_type: NewKeyType) -> AzureKeyVaultOptions {
        let mut options = AzureKeyVaultOptions::new(REGION);
        options.credential = Some(Arc::new(BearerToken::new(self.token.clone())));
        options.ca_certificates_pem = Some(self.ca.clone());
        options.verify_challenge_resource = false;
        options.default_vault = Some(self.vault.clone());
        options.new_key_type = key_type;
        options
    }

    /// An RSA-key provider for the fake.
    pub fn provider(&self) -> Arc<AzureKeyVaultProvider> {
        self.provider_with(NewKeyType::Rsa3072)
    }

    /// A provider for the fake that creates keys of `key_type`.
    pub fn provider_with(&self, key_type: NewKeyType) -> Arc<AzureKeyVaultProvider> {
        Arc::new(AzureKeyVaultProvider::new(self.options(key_type)).unwrap())
    }

    /// A key name no other test uses.
    pub fn unique_name(&self, tag: &str) -> String {
        let mut r = [0u8; 6];
        getrandom::fill(&mut r).unwrap();
        let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
        format!("{tag}-{hex}")
    }

    /// The URL of key `name` (no version).
    pub fn key_url(&self, name: &str) -> String {
        format!("{}/keys/{name}", self.vault)
    }

    /// Creates a new key (or a new version of `name`) and returns its
    /// pinned reference.
    pub async fn create(&self, p: &AzureKeyVaultProvider, name: &str) -> KeyRef {
        p.admin()
            .unwrap()
            .create_key(&NewKey::named(self.key_url(name)))
            .await
            .unwrap()
    }

    fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&self.ca).unwrap())
            .build()
            .unwrap()
    }

    /// The fake's count of API requests so far on key `name` (tests run
    /// concurrently on one server: each counts its own keys).
    pub async fn calls(&self, name: &str) -> u64 {
        let body = self
            .http()
            .get(format!("{}/_fake/calls?key={name}", self.vault))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["total"].as_u64().unwrap()
    }

    /// Makes the fake answer 403 to `op` (or every operation) on key `name`.
    pub async fn deny(&self, name: &str, op: Option<&str>) {
        let mut url = format!("{}/_fake/deny?key={name}", self.vault);
        if let Some(op) = op {
            url.push_str(&format!("&op={op}"));
        }
        let status = self.http().post(url).send().await.unwrap().status();
        assert!(status.is_success(), "{status}");
    }

    /// Undoes every [`deny`](Self::deny) of `name`.
    pub async fn allow(&self, name: &str) {
        let url = format!("{}/_fake/allow?key={name}", self.vault);
        let status = self.http().post(url).send().await.unwrap().status();
        assert!(status.is_success(), "{status}");
    }
}
