//! The state directory and the key providers built from it.
//!
//! ```text
//! HOME/                    --home, $CMEK_HOME, default ./.cmek (mode 0700)
//!   registry.state         the project key registry (KeyRegistry), unless
//!                          --registry / $CMEK_REGISTRY names another file
//!   local.keys             the local key file (LocalKeyProvider), on first
//!                          use, unless --local-keys / $CMEK_LOCAL_KEYS names
//!                          another file
//!   zones/NAME.manifest    one manifest per zone (FileManifestStore)
//! ```
//!
//! The registry holds each zone's anchor, what its manifest is checked
//! against, and the local key file holds root keys. In the state directory
//! they sit beside the manifests they protect: whoever can write there can
//! put back an old manifest together with an old registry, or plant keys
//! of their own. `--registry FILE` and `--local-keys FILE` keep them apart,
//! where that writer cannot reach; the state directory then holds only
//! what the storage attacker may write. A file kept apart is never filled
//! from the state directory: while `FILE` is missing and the state
//! directory has its own, every command that needs it is refused, so that
//! a file planted in the home (or one left from before the move) is never
//! adopted silently; the operator moves the file once, by hand.
//!
//! Nothing else is kept: AWS credentials come from the standard AWS
//! configuration at every run, a PKCS#11 token's module, label and PIN from
//! `CMEK_PKCS11_*` variables (`crate::pkcs11`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(feature = "pkcs11")]
use cmek::provider::PKCS11_PROVIDER;
use cmek::provider::{
    AwsKmsOptions, AwsKmsProvider, LocalKeyProvider, AWS_KMS_PROVIDER, LOCAL_PROVIDER,
};
use cmek::registry::{KeyRegistry, RegisteredZone};
use cmek::zone::{FileManifestStore, Keyring, ManifestFormat, ManifestStore, Zone, ZoneManifest};
use cmek::{KeyProvider, KeyRef};

use crate::args::Global;
use crate::exit::{io_at, CliResult, Context, Failure};

/// Region of a new local key file when `--region` is not given.
const DEFAULT_LOCAL_REGION: &str = "local";
/// The key registry's file in the state directory.
const REGISTRY_FILE: &str = "registry.state";
/// The local key file's name in the state directory.
const LOCAL_KEYS_FILE: &str = "local.keys";
/// Longest zone name (the library's limit).
const MAX_ZONE_NAME: usize = 256;

/// The key prefixes this build knows, for messages.
fn known_prefixes() -> String {
    let mut known = vec!["local", "aws"];
    if cfg!(feature = "azure-kv") {
        known.push("azure");
    }
    if cfg!(feature = "gcp-kms") {
        known.push("gcp");
    }
    if cfg!(feature = "pkcs11") {
        known.push("pkcs11");
    }
    if cfg!(feature = "kmip") {
        known.push("kmip");
    }
    known.join(", ")
}

/// A key as given on the command line, `PROVIDER:ID`.
#[derive(Debug, Clone)]
pub struct KeyArg {
    /// Its provider kind ([`LOCAL_PROVIDER`], [`AWS_KMS_PROVIDER`], or
    /// `GCP_KMS_PROVIDER`).
    pub kind: &'static str,
    /// Its id there, as the provider names keys.
    pub id: String,
}

impl KeyArg {
    /// Parses `local:NAME`, `aws:ID` (`aws-kms:` is accepted too), and with
    /// their features `azure:URL` (`azure-kv:`),
    /// `gcp:projects/P/locations/L/keyRings/R/cryptoKeys/K` (`gcp-kms:`),
    /// `pkcs11:LABEL` (or `pkcs11:id:HEX`) and `kmip:UID`.
    pub fn parse(s: &str) -> CliResult<Self> {
        let (provider, id) = s.split_once(':').ok_or_else(|| {
            Failure::usage(format!(
                "key {s:?}: expected PROVIDER:ID, e.g. local:root-1 or aws:alias/orders"
            ))
        })?;
        let kind = match provider {
            LOCAL_PROVIDER => LOCAL_PROVIDER,
            "aws" | AWS_KMS_PROVIDER => AWS_KMS_PROVIDER,
            #[cfg(feature = "gcp-kms")]
            "gcp" | cmek::provider::GCP_KMS_PROVIDER => cmek::provider::GCP_KMS_PROVIDER,
            #[cfg(feature = "azure-kv")]
            "azure" | cmek::provider::AZURE_KV_PROVIDER => cmek::provider::AZURE_KV_PROVIDER,
            #[cfg(feature = "pkcs11")]
            PKCS11_PROVIDER => PKCS11_PROVIDER,
            #[cfg(feature = "kmip")]
            cmek::provider::KMIP_PROVIDER => cmek::provider::KMIP_PROVIDER,
            other => {
                return Err(Failure::usage(format!(
                    "key {s:?}: unknown provider {other:?} (expected {})",
                    known_prefixes()
                )))
            }
        };
        if id.is_empty() {
            return Err(Failure::usage(format!("key {s:?}: empty key id")));
        }
        // A name the provider cannot mean is a typo, not an unusable key.
        #[cfg(feature = "gcp-kms")]
        if kind == cmek::provider::GCP_KMS_PROVIDER
            && cmek::provider::gcp::name::CryptoKeyName::parse(id).is_none()
        {
            return Err(Failure::usage(format!(
                "key {s:?}: a Cloud KMS key is named \
                 gcp:projects/P/locations/L/keyRings/R/cryptoKeys/K"
            )));
        }
        Ok(Self {
            kind,
            id: id.to_owned(),
        })
    }

    /// True for a key of the local key file.
    pub fn is_local(&self) -> bool {
        self.kind == LOCAL_PROVIDER
    }
}

/// The state directory and the global options, with providers opened on
/// first use.
pub struct Home {
    dir: PathBuf,
    /// `--registry`: the key registry kept apart from `dir`.
    registry: Option<PathBuf>,
    /// `--local-keys`: the local key file kept apart from `dir`.
    local_keys: Option<PathBuf>,
    global_region: Option<String>,
    endpoint_url: Option<String>,
}

impl Home {
    /// The state directory of `global`; nothing is created yet.
    pub fn new(global: &Global) -> Self {
        Self {
            dir: global.home.clone(),
            registry: global.registry.clone(),
            local_keys: global.local_keys.clone(),
            global_region: global.region.clone(),
            endpoint_url: global.endpoint_url.clone(),
        }
    }

    /// The `--region` option.
    pub fn region(&self) -> Option<&str> {
        self.global_region.as_deref()
    }

    /// Creates the directory (owner-only) if it is missing.
    fn ensure_dir(&self, dir: &Path) -> CliResult {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(|e| io_at(dir, e))
    }

    /// The key registry (an empty one if there is none yet).
    pub fn registry(&self) -> CliResult<KeyRegistry> {
        match &self.registry {
            None => self.ensure_dir(&self.dir)?,
            Some(path) => self.check_apart(path, REGISTRY_FILE, "--registry")?,
        }
        let path = self.registry_path();
        KeyRegistry::open(&path).context(path.display())
    }

    /// Where the key registry is: `--registry`, else in the state directory.
    fn registry_path(&self) -> PathBuf {
        self.registry
            .clone()
            .unwrap_or_else(|| self.dir.join(REGISTRY_FILE))
    }

    /// Where the local key file is: `--local-keys`, else in the state
    /// directory.
    fn local_path(&self) -> PathBuf {
        self.local_keys
            .clone()
            .unwrap_or_else(|| self.dir.join(LOCAL_KEYS_FILE))
    }

    /// A file kept apart at `path` (with `option`, instead of `name` in the
    /// state directory) may be used: its directory exists, and it exists
    /// or the state directory has no `name` of its own, which is never
    /// taken over (see the module docs).
    fn check_apart(&self, path: &Path, name: &str, option: &str) -> CliResult {
        let exists = |p: &Path| match std::fs::symlink_metadata(p) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_at(p, e)),
        };
        if exists(path)? {
            return Ok(());
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(Failure::usage(format!(
                "{option} {}: {} is not a directory",
                path.display(),
                dir.display()
            )));
        }
        let in_home = self.dir.join(name);
        if exists(&in_home)? {
            return Err(Failure::usage(format!(
                "{option} {}: no such file, but the state directory holds one, {}; it is \
                 never taken from there on its own (whoever can write the state directory \
                 could have put it there): once you have checked it is yours, move it with \
                 `mv {} {}`",
                path.display(),
                in_home.display(),
                in_home.display(),
                path.display()
            )));
        }
        Ok(())
    }

    /// The local key file, created (in `--region`, default `local`) if
    /// `create` and there is none.
    pub fn local(&self, create: bool) -> CliResult<LocalKeyProvider> {
        let path = self.local_path();
        match &self.local_keys {
            Some(apart) => self.check_apart(apart, LOCAL_KEYS_FILE, "--local-keys")?,
            None if create => self.ensure_dir(&self.dir)?,
            None => {}
        }
        if create {
            let region = self.region().unwrap_or(DEFAULT_LOCAL_REGION);
            LocalKeyProvider::open_or_create(&path, region).context(path.display())
        } else {
            LocalKeyProvider::open(&path).context(path.display())
        }
    }

    /// The provider of kind `kind`, serving `region` (else `--region`,
    /// else the provider's own default: the standard AWS configuration,
    /// the key file's region). The one place this tool builds providers;
    /// everything else asks the provider through `KeyProvider`.
    pub async fn provider(
        &self,
        kind: &str,
        region: Option<&str>,
    ) -> CliResult<Arc<dyn KeyProvider>> {
        match kind {
            LOCAL_PROVIDER => Ok(Arc::new(self.local(false)?)),
            AWS_KMS_PROVIDER => {
                let options = AwsKmsOptions {
                    region: region.or(self.region()).map(str::to_owned),
                    endpoint_url: self.endpoint_url.clone(),
                    ..AwsKmsOptions::default()
                };
                Ok(Arc::new(AwsKmsProvider::from_env(options).await?))
            }
            // Cloud KMS names keys globally: no region to pick.
            #[cfg(feature = "gcp-kms")]
            cmek::provider::GCP_KMS_PROVIDER => crate::gcp::provider().await,
            #[cfg(feature = "azure-kv")]
            cmek::provider::AZURE_KV_PROVIDER => crate::azure::provider(region.or(self.region())),
            #[cfg(feature = "pkcs11")]
            PKCS11_PROVIDER => crate::pkcs11::provider(region.or(self.region())).await,
            #[cfg(feature = "kmip")]
            cmek::provider::KMIP_PROVIDER => crate::kmip::provider(),
            other => Err(Failure::usage(format!(
                "keys of provider {other:?} cannot be reached by this tool ({})",
                known_prefixes()
            ))),
        }
    }

    /// The provider and full reference for a command-line key. A name that
    /// pins its region (an AWS key ARN) gets a provider of that region
    /// unless `--region` says otherwise.
    pub async fn provider_for(&self, key: &KeyArg) -> CliResult<(Arc<dyn KeyProvider>, KeyRef)> {
        let named_region = cmek::provider::region_named_by(key.kind, &key.id);
        let region = self.region().or(named_region.as_deref());
        let provider = self.provider(key.kind, region).await?;
        let key_ref = provider.key_ref(&key.id);
        Ok((provider, key_ref))
    }

    /// The provider that serves a zone's root key, in the zone's region
    /// (or `--region`).
    pub async fn provider_for_root(
        &self,
        root: &KeyRef,
        zone_region: &str,
    ) -> CliResult<Arc<dyn KeyProvider>> {
        self.provider(root.provider(), Some(self.region().unwrap_or(zone_region)))
            .await
    }

    /// The path of zone `name`'s manifest, after checking the name.
    pub fn zone_path(&self, name: &str) -> CliResult<PathBuf> {
        let ok = !name.is_empty()
            && name.len() <= MAX_ZONE_NAME
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            return Err(Failure::usage(format!(
                "zone name {name:?}: use letters, digits, '.', '_' and '-' (not first)"
            )));
        }
        Ok(self.dir.join("zones").join(format!("{name}.manifest")))
    }

    /// The store for a new zone `name` (its directory created).
    pub fn new_zone_store(&self, name: &str) -> CliResult<Arc<FileManifestStore>> {
        let path = self.zone_path(name)?;
        self.ensure_dir(path.parent().expect("zone paths have a parent"))?;
        Ok(Arc::new(FileManifestStore::new(path)))
    }

    /// Zone `name`'s manifest, read without any provider call.
    pub fn zone_manifest(&self, name: &str) -> CliResult<(ZoneManifest, Arc<FileManifestStore>)> {
        let path = self.zone_path(name)?;
        let store = Arc::new(FileManifestStore::new(path));
        // The store's own read: capped at the largest manifest there can be.
        let Some(bytes) = store.load().context(store.path().display())? else {
            return Err(Failure::usage(format!(
                "no zone {name:?} in {} (create it with `cmek zone create`)",
                self.dir.display()
            )));
        };
        let manifest = ZoneManifest::parse(&bytes).context(store.path().display())?;
        Ok((manifest, store))
    }

    /// Zone `name` as the key registry records it: its id, root key and
    /// the newest manifest generation seen — what its manifest is checked
    /// against, since the manifest file itself could have been put back or
    /// swapped.
    pub fn registered_zone(&self, name: &str) -> CliResult<RegisteredZone> {
        let registry = self.registry()?;
        let mut found = registry.zones().into_iter().filter(|z| z.name == name);
        match (found.next(), found.next()) {
            (Some(zone), None) => Ok(zone),
            (None, _) => Err(Failure::usage(format!(
                "zone {name} is not in the key registry {}: its manifest cannot be checked",
                self.registry_path().display()
            ))),
            (Some(_), Some(_)) => Err(Failure::usage(format!(
                "the key registry names two zones {name}"
            ))),
        }
    }

    /// Opens zone `name`, checked against the registry's record of it: one
    /// provider call per EZK version. A manifest written by an older release
    /// (version 1 or 2) is adopted once — rewritten as an authenticated
    /// version 3 — if the registry has no generation for the zone yet.
    /// Records the zone's new generation in the registry.
    pub async fn open_zone(&self, name: &str) -> CliResult<Zone> {
        let record = self.registered_zone(name)?;
        let (manifest, store) = self.zone_manifest(name)?;
        let provider = self.provider_for_root(&record.key, &record.region).await?;
        let keyring = Keyring::new(provider.clone());
        let anchor = record.anchor();
        let legacy = !manifest_format(store.path())?.is_authenticated();
        let opened = if legacy && record.generation == 0 {
            eprintln!(
                "cmek: zone {name}: adopting a manifest written by an older release \
                 (rewritten as version 3, authenticated)"
            );
            keyring.adopt_legacy_zone(store, &anchor).await
        } else {
            keyring.open_zone(store, &anchor).await
        };
        let zone = match opened {
            Ok(zone) => zone,
            // Wraps an older release wrote and the provider now refuses
            // are taken in only on the operator's explicit word: say how.
            Err(
                e @ cmek::Error::StateRejected {
                    reason: cmek::StateRejection::Mismatch(_),
                    ..
                },
            ) if manifest
                .ezk_versions()
                .any(|(_, r)| provider.is_legacy_wrap(&r.wrapped)) =>
            {
                let mut failure = Failure::from(e).context(format!("zone {name}"));
                failure.message.push_str(&format!(
                    "; if this manifest is the zone's own and nobody else could have written \
                     it since, take its wraps in once with `cmek zone adopt-legacy-wraps {name} --yes`"
                ));
                return Err(failure);
            }
            Err(e) => return Err(Failure::from(e).context(format!("zone {name}"))),
        };
        self.record_zone(&zone)?;
        Ok(zone)
    }

    /// Records zone `zone`'s current root key and generation in the
    /// registry (after every change).
    pub fn record_zone(&self, zone: &Zone) -> CliResult {
        self.registry()?
            .record_zone(&zone.anchor())
            .context("key registry")
    }

    /// Every zone manifest in the state directory, by name (those that do
    /// not parse are left out).
    pub fn zones(&self) -> Vec<(String, ZoneManifest)> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("zones")) else {
            return Vec::new();
        };
        let mut zones: Vec<_> = entries
            .filter_map(|e| {
                let path = e.ok()?.path();
                let name = path.file_name()?.to_str()?.strip_suffix(".manifest")?;
                let bytes = FileManifestStore::new(&path).load().ok()??;
                let manifest = ZoneManifest::parse(&bytes).ok()?;
                Some((name.to_owned(), manifest))
            })
            .collect();
        zones.sort_by(|a, b| a.0.cmp(&b.0));
        zones
    }
}

/// The layout version of the manifest at `path`.
fn manifest_format(path: &Path) -> CliResult<ManifestFormat> {
    let bytes = FileManifestStore::new(path)
        .load()
        .context(path.display())?
        .ok_or_else(|| Failure::usage(format!("{} is gone", path.display())))?;
    ZoneManifest::format_of(&bytes).context(path.display())
}
