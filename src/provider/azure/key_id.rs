//! Azure Key Vault key identifiers: `https://HOST[:PORT]/keys/NAME[/VERSION]`.
//!
//! A key is named by its vault's URL and its name; a version pins one
//! version of it. Parsing is strict and makes no call: the scheme must be
//! `https`, the path exactly `keys/NAME` or `keys/NAME/VERSION`, with no
//! query, fragment or user info. Key Vault treats host names and key names
//! case-insensitively, so the canonical form lowercases both (versions are
//! kept as given: the service generates them in lowercase hex).

use std::fmt;

use crate::{Error, Result};

/// Longest key name Key Vault accepts.
const MAX_NAME: usize = 127;
/// Longest version accepted (the service generates 32 hex digits).
pub(crate) const MAX_VERSION: usize = 64;

/// A parsed key identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyId {
    /// `https://host[:port]`, lowercased, no trailing slash.
    vault: String,
    /// The key name, lowercased.
    name: String,
    /// The pinned version, if any.
    version: Option<String>,
}

impl KeyId {
    /// Parses `s`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] saying what is wrong.
    pub(crate) fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::InvalidArgument(format!(
                "{s:?} is not an Azure Key Vault key identifier \
                 (https://VAULT/keys/NAME[/VERSION]): {why}"
            ))
        };
        let rest = s
            .strip_prefix("https://")
            .ok_or_else(|| bad("it must start with https://"))?;
        if rest.contains(['?', '#', '@']) {
            return Err(bad("no query, fragment or user info"));
        }
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("no /keys/NAME path"))?;
        if !valid_authority(authority) {
            return Err(bad("invalid host or port"));
        }
        let path = path.strip_suffix('/').unwrap_or(path);
        let mut parts = path.split('/');
        if parts.next() != Some("keys") {
            return Err(bad("the path must start with /keys/"));
        }
        let name = parts.next().unwrap_or_default();
        if name.is_empty()
            || name.len() > MAX_NAME
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(bad("a key name is 1 to 127 letters, digits and dashes"));
        }
        let version = match parts.next() {
            None => None,
            Some(v) if valid_version(v) => Some(v.to_owned()),
            Some(_) => return Err(bad("a key version is 1 to 64 letters and digits")),
        };
        if parts.next().is_some() {
            return Err(bad("nothing may follow the version"));
        }
        Ok(Self {
            vault: format!("https://{}", authority.to_ascii_lowercase()),
            name: name.to_ascii_lowercase(),
            version,
        })
    }

    /// The vault URL, `https://host[:port]`.
    pub(crate) fn vault(&self) -> &str {
        &self.vault
    }

    /// The key name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The pinned version, if any.
    pub(crate) fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The same key pinned to `version`.
    pub(crate) fn with_version(&self, version: &str) -> Self {
        Self {
            version: Some(version.to_owned()),
            ..self.clone()
        }
    }

    /// The identifier without a version: what a context is bound to, so
    /// that every version of the key binds the same way.
    pub(crate) fn versionless(&self) -> String {
        format!("{}/keys/{}", self.vault, self.name)
    }

    /// True for a Managed HSM (`*.managedhsm.azure.net` and the other
    /// clouds' Managed HSM domains).
    pub(crate) fn is_managed_hsm(&self) -> bool {
        let host = self.vault.trim_start_matches("https://");
        let host = host.split(':').next().unwrap_or(host);
        host.contains(".managedhsm.")
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.versionless())?;
        if let Some(v) = &self.version {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A version as the service names them (and as the wrapped-key format
/// stores them).
pub(crate) fn valid_version(v: &str) -> bool {
    !v.is_empty() && v.len() <= MAX_VERSION && v.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn valid_authority(authority: &str) -> bool {
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && !host.starts_with(['.', '-'])
        && !host.ends_with('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n != 0));
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_canonicalizes() {
        let id = KeyId::parse("https://MyVault.vault.azure.net/keys/Orders").unwrap();
        assert_eq!(id.vault(), "https://myvault.vault.azure.net");
        assert_eq!(id.name(), "orders");
        assert_eq!(id.version(), None);
        assert_eq!(
            id.to_string(),
            "https://myvault.vault.azure.net/keys/orders"
        );
        assert!(!id.is_managed_hsm());

        let id = KeyId::parse(
            "https://hsm1.managedhsm.azure.net/keys/k-1/0123456789abcdef0123456789abcdef/",
        )
        .unwrap();
        assert_eq!(id.version(), Some("0123456789abcdef0123456789abcdef"));
        assert!(id.is_managed_hsm());
        assert_eq!(
            id.versionless(),
            "https://hsm1.managedhsm.azure.net/keys/k-1"
        );
        let local = KeyId::parse("https://127.0.0.1:8443/keys/a").unwrap();
        assert_eq!(local.vault(), "https://127.0.0.1:8443");
        assert_eq!(
            local.with_version("v2").to_string(),
            "https://127.0.0.1:8443/keys/a/v2"
        );
        // Canonical forms parse to themselves.
        assert_eq!(KeyId::parse(&id.to_string()).unwrap(), id);
    }

    #[test]
    fn refuses_what_is_not_a_key_identifier() {
        for bad in [
            "",
            "orders",
            "http://v.vault.azure.net/keys/k",
            "https://v.vault.azure.net",
            "https://v.vault.azure.net/",
            "https://v.vault.azure.net/secrets/k",
            "https://v.vault.azure.net/keys/",
            "https://v.vault.azure.net/keys/k_1",
            "https://v.vault.azure.net/keys/k/v/x",
            "https://v.vault.azure.net/keys/k/v-1",
            "https://v.vault.azure.net/keys/k?api-version=7.5",
            "https://v.vault.azure.net/keys/k#f",
            "https://u@v.vault.azure.net/keys/k",
            "https://v.vault.azure.net:0/keys/k",
            "https://v.vault.azure.net:99999/keys/k",
            "https://:443/keys/k",
            "https://.v/keys/k",
        ] {
            assert!(
                matches!(KeyId::parse(bad), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
        let long = format!("https://v.vault.azure.net/keys/{}", "a".repeat(128));
        assert!(KeyId::parse(&long).is_err());
        let long = format!("https://v.vault.azure.net/keys/k/{}", "a".repeat(65));
        assert!(KeyId::parse(&long).is_err());
    }
}
