//! The command line: every command, option and help text, as clap derive
//! types. This module only describes; the commands live in their own
//! modules.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::exit::EXIT_CODES_HELP;

/// Operate cmek by hand: root keys, encryption zones, encrypted files and
/// IAM policies.
///
/// State (the key registry, the local key file and zone manifests) lives in
/// one directory, `--home` (default `./.cmek`, or `$CMEK_HOME`); the key
/// registry, which holds the anchors every zone manifest is checked
/// against, and the local key file can be kept apart from it with
/// `--registry` and `--local-keys`.
#[derive(Debug, Parser)]
#[command(name = "cmek", version, after_long_help = EXIT_CODES_HELP, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Options every command shares.
    #[command(flatten)]
    pub global: Global,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command shares.
#[derive(Debug, Args)]
pub struct Global {
    /// State directory: `registry.state` (the key registry), `local.keys`
    /// (the local key file) and `zones/NAME.manifest` (zone manifests).
    #[arg(long, global = true, env = "CMEK_HOME", default_value = ".cmek")]
    pub home: PathBuf,

    /// The key registry's state file, kept apart from the state directory
    /// (default: `registry.state` in it). It holds the registered keys and
    /// each zone's anchor (zone id, root key, newest manifest generation),
    /// against which every zone manifest is checked: keep it where whoever
    /// can write the manifests and the data cannot, and give it to every
    /// run. Its directory must exist; the file is created on first use,
    /// but never while the state directory still holds a `registry.state`
    /// (move that file here yourself once you have checked it: cmek never
    /// takes a registry from the state directory on its own).
    #[arg(long, global = true, env = "CMEK_REGISTRY", value_name = "FILE")]
    pub registry: Option<PathBuf>,

    /// The local key file, kept apart from the state directory (default:
    /// `local.keys` in it). It holds `local:` root keys in the clear: keep
    /// it where no one else can read or write it. The same rules as for
    /// --registry: its directory must exist, and it is never taken from
    /// the state directory on its own.
    #[arg(long, global = true, env = "CMEK_LOCAL_KEYS", value_name = "FILE")]
    pub local_keys: Option<PathBuf>,

    /// Region. For AWS KMS: the region to call (default: the standard AWS
    /// configuration, or the key ARN's region). For Azure Key Vault: the
    /// vault's Azure region (required: Key Vault does not say). For a new zone: its region
    /// (default: the root key's). For a new local key file: the region its
    /// keys live in (default `local`).
    #[arg(long, global = true)]
    pub region: Option<String>,

    /// An AWS KMS endpoint to use instead of the public one (a VPC
    /// endpoint, or a KMS-compatible test server).
    #[arg(long, global = true, env = "CMEK_AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,

    /// Never draw a progress bar (it is drawn only when standard error is a
    /// terminal anyway).
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

/// The commands. A command group is a variant here, a module of its own
/// beside `main.rs`, and one arm in `main::run`; variants with a subcommand
/// enum (like `Key`) nest their own commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register, check and manage root keys (local key file or AWS KMS).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Create, inspect and rotate encryption zones.
    #[command(subcommand)]
    Zone(ZoneCommand),
    /// Encrypt a file or standard input into a segment (header ‖ body).
    Encrypt(EncryptArgs),
    /// Decrypt a segment, whole or a byte range, to a file or standard output.
    Decrypt(DecryptArgs),
    /// Show a segment's header (no key needed).
    Inspect(InspectArgs),
    /// Move every segment in a directory to its zone's active EZK version
    /// (rewrites headers only; resumable).
    Rewrap(RewrapArgs),
    /// Back up a zone's segment files into a bundle directory (no key
    /// needed; the bundle stays encrypted).
    Backup(BackupArgs),
    /// Restore a backup bundle into a new zone (rewrap or re-encrypt) or to
    /// plaintext files (owner-only), resumable. The backed-up zone's root
    /// key must be one the caller trusts: every registered key by default.
    Restore(RestoreArgs),
    /// Print the IAM policy documents the AWS KMS provider needs (and the
    /// access Azure Key Vault keys need, and the KMIP operations a client
    /// certificate must be allowed).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Check every registered key and gate every zone on its key, once or
    /// on an interval, printing each change (key status, zone
    /// availability). Exits with the key-unavailable, access-denied or
    /// unreachable code if the last check found a key unusable.
    Monitor(MonitorArgs),
    /// Print this build's cryptography: the AES-256-GCM engine in use and
    /// why (CPU features, CMEK_AES_GCM_ENGINE), the engines compiled in,
    /// and whether it runs in FIPS mode.
    Info,
}

/// `cmek monitor`.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Check once, print the states and exit.
    #[arg(long, conflicts_with = "checks")]
    pub once: bool,
    /// Stop after this many checks (default: run until interrupted).
    #[arg(long, value_name = "N")]
    pub checks: Option<u64>,
    /// Seconds between the starts of two checks.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub interval: u64,
    /// Stop serving a zone at the first check that cannot reach its key's
    /// provider (default: serve for the grace period after the last good
    /// check).
    #[arg(long)]
    pub fail_closed: bool,
    /// Grace period, in seconds, while a key's provider is unreachable.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 1800,
        conflicts_with = "fail_closed"
    )]
    pub grace: u64,
    /// Only describe keys; skip the test wrap and unwrap (which also
    /// catches revoked permissions).
    #[arg(long)]
    pub no_test_wrap: bool,
    /// One JSON object per line: each event, then the summary.
    #[arg(long)]
    pub json: bool,
}

/// A root key, written `PROVIDER:ID`: `local:NAME` for a key in the local
/// key file, `aws:ID` for an AWS KMS key id, key ARN or alias, and with
/// their features `azure:URL`, `gcp:NAME`, `pkcs11:LABEL` and `kmip:UID`.
pub const KEY_HELP: &str = "Root key as PROVIDER:ID: `local:NAME` (local key file), \
`aws:ID` (AWS KMS key id, key ARN, `alias/NAME` or alias ARN), \
`azure:URL` (Azure Key Vault key, https://VAULT/keys/NAME[/VERSION], with --region; \
feature azure-kv), \
`gcp:projects/P/locations/L/keyRings/R/cryptoKeys/K` (Google Cloud KMS; feature gcp-kms), \
`pkcs11:LABEL` (`pkcs11:id:HEX`; a key on the PKCS#11 token CMEK_PKCS11_MODULE, CMEK_PKCS11_TOKEN and \
CMEK_PKCS11_PIN_FILE or CMEK_PKCS11_PIN name; feature pkcs11), \
`kmip:UID` (a key on the KMIP server CMEK_KMIP_ENDPOINT, CMEK_KMIP_CA, CMEK_KMIP_CERT and \
CMEK_KMIP_KEY name; feature kmip)";

/// `cmek key ...`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Validate a root key (encrypt, decrypt, describe) and register it.
    /// A `local:` key is created in the local key file first if missing.
    /// At most 20 keys may be registered.
    Add {
        #[arg(help = KEY_HELP)]
        key: String,
        /// A region the key has a replica in (a key its provider
        /// replicates across regions, such as an AWS multi-region key); the
        /// provider confirms each. Repeat for each replica.
        #[arg(long = "replica-region", value_name = "REGION")]
        replica_regions: Vec<String>,
        /// Create a `pkcs11:` key on the token first if there is none by
        /// that label: AES-256, sensitive, not extractable.
        #[arg(long)]
        create: bool,
    },
    /// Run the validation round trip (encrypt, decrypt, describe) and print
    /// each step's outcome. A failed step exits 5, or 6 if access was
    /// denied, or 7 if the provider was unreachable.
    Validate {
        #[arg(help = KEY_HELP)]
        key: String,
    },
    /// List registered keys, the regions they serve and the zones using them.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Disable a key in its provider (through the provider's
    /// administration calls): every zone under it stops opening.
    Disable {
        #[arg(help = KEY_HELP)]
        key: String,
    },
    /// Re-enable a disabled key in its provider.
    Enable {
        #[arg(help = KEY_HELP)]
        key: String,
    },
    /// Remove a key from the registry. Refused while a zone uses it.
    /// The key itself is kept unless `--destroy` is given.
    Delete {
        #[arg(help = KEY_HELP)]
        key: String,
        /// Also destroy a `local:` key's material (crypto-shredding: every
        /// zone ever wrapped by it becomes unreadable). Not for AWS keys.
        #[arg(long)]
        destroy: bool,
    },
}

/// `cmek zone ...`.
#[derive(Debug, Subcommand)]
pub enum ZoneCommand {
    /// Create a zone under a registered root key (one provider call).
    Create {
        /// The zone's name (letters, digits, `.`, `_`, `-`).
        name: String,
        /// The root key, registered first with `cmek key add`.
        #[arg(long, help = KEY_HELP)]
        key: String,
        /// Chunk size of the zone's files, in bytes (4096 to
        /// 16777216).
        #[arg(long, default_value_t = cmek::stream::DEFAULT_CHUNK_SIZE)]
        chunk_size: usize,
    },
    /// Show a zone's manifest (no provider call).
    Show {
        /// The zone's name.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Add a new EZK version and make it active. Run `cmek rewrap` after it
    /// to move existing files to the new version.
    Rotate {
        /// The zone's name.
        name: String,
    },
    /// Rewrap every EZK version under another registered root key of the
    /// same provider. No file changes.
    RotateRoot {
        /// The zone's name.
        name: String,
        /// The new root key.
        #[arg(long, help = KEY_HELP)]
        key: String,
    },
    /// Remove an inactive EZK version for good. Files still under it become
    /// unreadable: rewrap them first.
    RetireVersion {
        /// The zone's name.
        name: String,
        /// The EZK version to retire.
        version: u32,
        /// Refuse if any segment in this directory still uses the version.
        #[arg(long, value_name = "DIR")]
        check_dir: Option<PathBuf>,
        /// Confirm that no segment uses the version any more.
        #[arg(long)]
        yes: bool,
    },
    /// Take in EZK wraps in a format an older release wrote and the
    /// provider now refuses because someone without the root key could
    /// have made them (an unsigned Azure Key Vault RSA wrap), rewrapping
    /// them in the current format; the zone's recorded generation
    /// follows. The manifest is still checked against the zone's record
    /// in the key registry (id, root key, generation), but its legacy
    /// wraps are trusted as stored: anyone who could write the manifest
    /// could have planted an EZK of their own in one, and it would become
    /// the zone's. Run it once, right after upgrading, and only on a
    /// manifest nobody else could have written since the zone was last
    /// used, never in answer to an error on a zone that opened before.
    /// A zone with nothing to take in just opens.
    AdoptLegacyWraps {
        /// The zone's name.
        name: String,
        /// Confirm that the stored manifest is trusted as it is.
        #[arg(long)]
        yes: bool,
    },
}

/// `--force` of `encrypt` and `decrypt`: what happens to an entry already
/// at the output path (without it, any entry there is refused with exit 2).
pub const FORCE_HELP: &str = "Replace what is at the output path. A regular file, a symbolic link (the link itself: what it points to is left alone), a named pipe (FIFO) or a socket is replaced by the new file, renamed over it: output never goes into a pipe or through a link, since anyone who can create entries in the directory can plant one. A device (such as /dev/null) cannot be replaced: it is opened without following a link and written only if it is the device that was checked. A directory is refused. To send output into a pipe, use `-o -` and redirect standard output";

/// `cmek encrypt`.
#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// The zone to encrypt under.
    #[arg(long, short)]
    pub zone: String,
    /// Plaintext file, or `-` for standard input.
    #[arg(default_value = "-")]
    pub input: PathBuf,
    /// Where to write the segment, or `-` for standard output. A file is
    /// created new beside its final name and renamed into place when
    /// complete; nothing already at the name is ever written through (see
    /// --force).
    #[arg(long, short, default_value = "-")]
    pub output: PathBuf,
    /// The segment id bound into the header and body. Default: the output
    /// file's name (required when writing to standard output).
    #[arg(long)]
    pub segment_id: Option<String>,
    #[arg(long, help = FORCE_HELP)]
    pub force: bool,
}

/// `cmek decrypt`.
#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// The zone the segment belongs to.
    #[arg(long, short)]
    pub zone: String,
    /// Segment file, or `-` for standard input.
    #[arg(default_value = "-")]
    pub input: PathBuf,
    /// Where to write the plaintext, or `-` for standard output. A file is
    /// created owner-only (mode 0600, from its creation on, also when
    /// --force replaces a file with other permissions), written beside its
    /// final name and renamed into place only once every byte
    /// authenticated; nothing already at the name is ever written through
    /// (see --force). Standard output gets each chunk once it
    /// authenticated: after a failure (exit 3) it holds the chunks before it.
    #[arg(long, short, default_value = "-")]
    pub output: PathBuf,
    /// The segment id it was encrypted with. Default: the input file's name
    /// (required when reading standard input).
    #[arg(long)]
    pub segment_id: Option<String>,
    /// Decrypt only plaintext bytes START..END (either end may be left
    /// out), reading and authenticating only the chunks that hold them.
    /// Needs a file input.
    #[arg(long, value_name = "START..END")]
    pub range: Option<String>,
    #[arg(long, help = FORCE_HELP)]
    pub force: bool,
}

/// `cmek inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The segment file.
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `cmek rewrap`.
#[derive(Debug, Args)]
pub struct RewrapArgs {
    /// The zone whose segments to rewrap.
    #[arg(long, short)]
    pub zone: String,
    /// Directory of segment files (not descended into); each file's name is
    /// its segment id. Files that are not segments of the zone, and rewrap
    /// journals of other zones, are left alone and listed on standard
    /// error, as are symbolic links (never followed). Each file is locked
    /// while it is rewrapped, so runs on one directory at the same time
    /// take turns file by file.
    pub dir: PathBuf,
}

/// `cmek backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The zone whose segments to back up.
    #[arg(long, short)]
    pub zone: String,
    /// Directory of segment files (not descended into); each file's name is
    /// its segment id. Files that are not segments of the zone are skipped.
    pub dir: PathBuf,
    /// The bundle directory to write (must not hold a backup yet).
    #[arg(long, short)]
    pub output: PathBuf,
}

/// How `cmek restore` restores segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RestoreModeArg {
    /// Into a new zone, DEKs rewrapped, bodies copied (fast).
    Rewrap,
    /// Into a new zone, every segment decrypted and encrypted again.
    Reencrypt,
    /// To plaintext files (mode 0600).
    Plaintext,
}

/// `cmek restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup bundle directory.
    pub bundle: PathBuf,
    /// The destination directory: new or empty, or an interrupted restore
    /// of the same bundle with the same options (resumed). Created
    /// owner-only; an existing one must be ours and writable by no one
    /// else.
    pub dest: PathBuf,
    /// How to restore.
    #[arg(long, value_enum, default_value = "rewrap")]
    pub mode: RestoreModeArg,
    /// The new zone's name (rewrap, reencrypt).
    #[arg(long)]
    pub zone: Option<String>,
    /// The new zone's root key, registered (rewrap, reencrypt).
    #[arg(long, help = KEY_HELP)]
    pub key: Option<String>,
    /// Restore only a backup of this zone (its id, 32 hex digits).
    #[arg(long, value_name = "ZONE_ID")]
    pub source_zone: Option<String>,
    /// A root key the backed-up zone may be under (repeat for several).
    /// Default, unless --source-zone is given: every registered key.
    #[arg(long = "allow-root", value_name = "KEY")]
    pub allow_roots: Vec<String>,
}

/// `cmek policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// What each key's provider needs granted to use it, from the provider:
    /// an IAM role policy for `aws:` keys, the token user's rights for
    /// `pkcs11:` keys.
    Key {
        /// The keys, as PROVIDER:ID.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// The role policy: kms:Encrypt, kms:Decrypt, kms:DescribeKey on exactly
    /// the given key ARNs (default: every registered AWS key given by ARN).
    Role {
        /// KMS key ARNs (list each replica of a multi-region key).
        key_arns: Vec<String>,
    },
    /// For Google Cloud KMS: the IAM role (cloudkms.cryptoKeyVersions.useToEncrypt,
    /// useToDecrypt, cloudkms.cryptoKeys.get) and the keys to grant it on
    /// (default: every registered Cloud KMS key).
    #[cfg(feature = "gcp-kms")]
    Gcp {
        /// Cloud KMS key names (`projects/.../cryptoKeys/K`, or `gcp:` keys).
        keys: Vec<String>,
    },
    /// The access an identity needs on Azure Key Vault keys: the key
    /// permissions of an access policy (get, wrapKey, unwrapKey) or the
    /// Azure role and its data actions (default: every registered Key
    /// Vault key).
    #[cfg(feature = "azure-kv")]
    Azure {
        /// Key URLs, https://VAULT/keys/NAME (an `azure:` prefix is allowed).
        keys: Vec<String>,
    },
    /// The KMIP operations the client certificate must be allowed on the
    /// key server (Encrypt, Decrypt, Get Attributes), on exactly the given
    /// keys (default: every registered KMIP key), as JSON.
    #[cfg(feature = "kmip")]
    Kmip {
        /// The keys' unique identifiers on the key server.
        uids: Vec<String>,
    },
    /// The trust policy letting a principal assume that role.
    Trust {
        /// The principal: an IAM ARN or a 12-digit account id.
        principal: String,
        /// Require this `sts:ExternalId`.
        #[arg(long)]
        external_id: Option<String>,
    },
}
