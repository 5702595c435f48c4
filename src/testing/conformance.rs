//! The provider conformance suite: one set of checks every [`KeyProvider`]
//! must pass, whoever wrote it.
//!
//! cmek's zones, registry, monitor and backups rely on what providers
//! promise — that a context is bound, that a disabled key is refused with
//! [`Error::KeyUnavailable`], that a definitive answer is not mistaken for
//! a transient one, that a key serves the regions its provider says. The
//! suite checks those promises on a live provider through a small
//! [`Fixture`] that makes the keys it needs. This crate runs it against the
//! local key file, [`MockProvider`](super::MockProvider), AWS KMS, Cloud
//! KMS, Azure Key Vault, PKCS#11 and KMIP (on test servers); a new provider
//! runs it too:
//!
//! ```
//! use cmek::provider::KeyProvider;
//! use cmek::testing::conformance::{self, Fixture};
//! use cmek::testing::MockProvider;
//! use cmek::KeyRef;
//!
//! struct Mock(MockProvider, std::sync::atomic::AtomicU32);
//!
//! #[async_trait::async_trait]
//! impl Fixture for Mock {
//!     fn provider(&self) -> &dyn KeyProvider {
//!         &self.0
//!     }
//!     async fn enabled_key(&self) -> cmek::Result<KeyRef> {
//!         let n = self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
//!         Ok(self.0.add_key(&format!("key-{n}")))
//!     }
//!     fn missing_key(&self) -> KeyRef {
//!         self.0.key_ref("never-created")
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let fixture = Mock(MockProvider::new(), Default::default());
//! let report = conformance::run(&fixture).await;
//! report.assert_conforms();
//! # }
//! ```
//!
//! One check is an attack: `forged_wrap` hands the provider wrapped keys
//! made by a forger who holds only what the provider makes public (an RSA
//! key's public half), in every format the provider reads, and requires
//! each to be refused. Only the key holder may make a wrap a provider
//! accepts. A fixture supplies the forger through [`Fixture::forge`], or
//! says why there is nothing to forge with (a symmetric key inside a KMS or
//! HSM); the report then says so.
//!
//! Every check runs, whatever failed before it, and the [`Report`] names
//! each one's outcome. A check a test server cannot pass (it does not
//! model what the real service does) is waived only through [`Deviations`],
//! and the report says so.

use std::fmt;

use async_trait::async_trait;

use crate::provider::{
    EncryptionContext, KeyProvider, KeyRef, KeyState, RegionAnswer, StepOutcome, ValidationFailure,
    ValidationStep, WrappedKey,
};
use crate::secret::SecretKey;
use crate::{Error, Result};

/// What the suite needs from the provider under test: the provider, and
/// keys in known states.
#[async_trait]
pub trait Fixture: Send + Sync {
    /// The provider under test.
    fn provider(&self) -> &dyn KeyProvider;

    /// A new enabled root key, not used by any other call (the suite
    /// disables some of the keys it gets).
    async fn enabled_key(&self) -> Result<KeyRef>;

    /// Enables or disables `key`. The default goes through the provider's
    /// [`admin`](KeyProvider::admin); a fixture whose provider has none
    /// overrides it.
    async fn set_enabled(&self, key: &KeyRef, enabled: bool) -> Result<()> {
        let admin = self.provider().admin().ok_or_else(|| {
            Error::InvalidArgument(
                "the provider has no admin(): the fixture must implement set_enabled".into(),
            )
        })?;
        if enabled {
            admin.enable_key(key).await
        } else {
            admin.disable_key(key).await
        }
    }

    /// A new key that exists and is disabled. The default takes an
    /// [`enabled_key`](Self::enabled_key) and disables it.
    async fn disabled_key(&self) -> Result<KeyRef> {
        let key = self.enabled_key().await?;
        self.set_enabled(&key, false).await?;
        Ok(key)
    }

    /// A reference, of this provider's kind and region, to a key that does
    /// not exist.
    fn missing_key(&self) -> KeyRef;

    /// An alias that points to `key`, for a provider with aliases; `None`
    /// (the default) skips the alias checks.
    async fn alias_for(&self, key: &KeyRef) -> Result<Option<KeyRef>> {
        let _ = key;
        Ok(None)
    }

    /// A key replicated to other regions, and those regions, for a
    /// provider with replicas; `None` (the default) skips the replica
    /// checks.
    async fn replicated_key(&self) -> Result<Option<ReplicatedKey>> {
        Ok(None)
    }

    /// A region no key of the fixture serves.
    fn unserved_region(&self) -> String {
        "conformance-nowhere-1".into()
    }

    /// What a test server is known not to model; the checks it would fail
    /// are waived and reported so. None by default.
    fn deviations(&self) -> Deviations {
        Deviations::default()
    }

    /// Wrapped keys of `key` under `root` with `context`, made the way
    /// someone who holds only the provider's public material would make
    /// them (without the root key's secret), in each format the provider
    /// reads — the current one and any legacy one — exactly as the provider
    /// would accept them if it were forgeable. Or, for a provider whose
    /// keys have no public material, why not
    /// ([`Forgery::NoPublicMaterial`]).
    ///
    /// The default says the fixture supplies no forger; the check is then
    /// skipped, and the report says so.
    async fn forge(
        &self,
        root: &KeyRef,
        key: &SecretKey,
        context: &EncryptionContext,
    ) -> Result<Forgery> {
        let _ = (root, key, context);
        Ok(Forgery::NoPublicMaterial(
            "the fixture supplies no forger and does not say whether the provider's keys have \
             public material (Fixture::forge)",
        ))
    }

    /// True for a provider whose disabled keys can never be enabled again
    /// (KMIP: a revoked key stays Deactivated). The suite then checks that
    /// enabling one fails, instead of using it again, and reports the
    /// check waived. False by default.
    fn disable_is_final(&self) -> bool {
        false
    }
}

/// What a forger made of a provider's public material (see
/// [`Fixture::forge`]).
#[derive(Debug, Clone)]
pub enum Forgery {
    /// Wrapped keys made without the root key's secret.
    Wraps(Vec<ForgedWrap>),
    /// The provider's keys have no public material to forge a wrap with;
    /// says why (e.g. "a symmetric key inside the KMS: every wrap is made
    /// by the KMS").
    NoPublicMaterial(&'static str),
}

/// One wrapped key made without the root key's secret.
#[derive(Debug, Clone)]
pub struct ForgedWrap {
    /// What it is, for the report (e.g. "format 1, RSA-OAEP-256 under the
    /// public half").
    pub label: String,
    /// The forged bytes.
    pub wrapped: WrappedKey,
    /// True if it is in a legacy format the provider reads only for
    /// adoption ([`KeyProvider::is_legacy_wrap`]). The check then also
    /// requires [`KeyProvider::unwrap_legacy_key`] to return the forged
    /// key: proof that the forgery is faithful, so that its refusal by
    /// [`KeyProvider::unwrap_key`] is the provider's doing.
    pub legacy: bool,
}

/// A key and the regions, besides its own, it has a replica in.
#[derive(Debug, Clone)]
pub struct ReplicatedKey {
    /// The key, named in its home region.
    pub key: KeyRef,
    /// Regions it has a replica in (at least one).
    pub replica_regions: Vec<String>,
}

/// Behaviour of a test server that differs from the service it stands for.
/// Each one waives the checks it would fail; the report lists them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deviations {
    /// Wrap and unwrap still work under a disabled key (only describe
    /// reports the state), as on the moto KMS server.
    pub key_state_not_enforced: bool,
    /// A key wrapped under another root key is refused with
    /// [`Error::AccessDenied`] instead of an integrity failure, as on the
    /// moto KMS server.
    pub wrong_key_is_access_denied: bool,
}

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every assertion held.
    Passed,
    /// Not run: the fixture offers nothing to check it with (e.g. a
    /// provider without aliases).
    Skipped(&'static str),
    /// Some assertions were waived for a declared deviation; the rest held.
    Waived(&'static str),
    /// An assertion failed; says which and what was seen.
    Failed(String),
}

/// The outcome of every check, in the order they ran.
#[derive(Debug, Clone)]
pub struct Report {
    /// The provider kind under test.
    pub provider: String,
    /// Each check's name and outcome.
    pub checks: Vec<(&'static str, Outcome)>,
}

impl Report {
    /// The failed checks and why.
    pub fn failures(&self) -> Vec<(&'static str, &str)> {
        self.checks
            .iter()
            .filter_map(|(name, outcome)| match outcome {
                Outcome::Failed(why) => Some((*name, why.as_str())),
                _ => None,
            })
            .collect()
    }

    /// True if no check failed.
    pub fn conforms(&self) -> bool {
        self.failures().is_empty()
    }

    /// The outcome of check `name`, if it ran.
    pub fn outcome(&self, name: &str) -> Option<&Outcome> {
        self.checks.iter().find(|(n, _)| *n == name).map(|(_, o)| o)
    }

    /// Panics, listing every failed check, unless all passed (or were
    /// skipped or waived).
    ///
    /// # Panics
    /// If any check failed.
    pub fn assert_conforms(&self) {
        assert!(self.conforms(), "{self}");
    }

    /// Panics, listing every outcome, unless every check ran and passed:
    /// none failed, skipped or waived.
    ///
    /// # Panics
    /// If any check did not pass.
    pub fn assert_all_passed(&self) {
        assert!(
            self.checks.iter().all(|(_, o)| *o == Outcome::Passed),
            "{self}"
        );
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failed = self.failures().len();
        writeln!(
            f,
            "provider {:?}: {} checks, {failed} failed",
            self.provider,
            self.checks.len()
        )?;
        for (name, outcome) in &self.checks {
            match outcome {
                Outcome::Passed => writeln!(f, "  {name}: passed")?,
                Outcome::Skipped(why) => writeln!(f, "  {name}: skipped ({why})")?,
                Outcome::Waived(why) => writeln!(f, "  {name}: passed, part waived ({why})")?,
                Outcome::Failed(why) => writeln!(f, "  {name}: FAILED: {why}")?,
            }
        }
        Ok(())
    }
}

/// Runs every check against `fixture`'s provider. Never panics on a
/// provider's failure: see the [`Report`] (or call
/// [`Report::assert_conforms`]).
pub async fn run<F: Fixture + ?Sized>(fixture: &F) -> Report {
    let mut checks = Vec::new();
    macro_rules! check {
        ($name:literal, $body:expr) => {
            let outcome = match $body.await {
                Ok(outcome) => outcome,
                Err(why) => Outcome::Failed(why),
            };
            checks.push(($name, outcome));
        };
    }
    check!("key_ref", key_ref(fixture));
    check!("round_trip", round_trip(fixture));
    check!("context_binding", context_binding(fixture));
    check!("wrong_key", wrong_key(fixture));
    check!("modified_blob", modified_blob(fixture));
    check!("disabled_key", disabled_key(fixture));
    check!("missing_key", missing_key(fixture));
    check!("validation", validation(fixture));
    check!("home_region", home_region(fixture));
    check!("replica_regions", replica_regions(fixture));
    check!("other_kind", other_kind(fixture));
    check!("generate_key", generate_key(fixture));
    check!("resolve_key", resolve_key(fixture));
    check!("forged_wrap", forged_wrap(fixture));
    Report {
        provider: fixture.provider().kind().to_owned(),
        checks,
    }
}

/// What a check returns: its outcome, or why it failed.
pub(super) type Check = std::result::Result<Outcome, String>;

fn context(zone: &str) -> EncryptionContext {
    EncryptionContext::new()
        .with("cmek:zone", zone)
        .with("cmek:purpose", "conformance")
}

/// `Err(what)` unless `ok`.
pub(super) fn ensure(ok: bool, what: impl FnOnce() -> String) -> std::result::Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

/// The value of a call that must succeed.
pub(super) fn must<T>(step: &str, result: Result<T>) -> std::result::Result<T, String> {
    result.map_err(|e| format!("{step}: unexpected error: {e}"))
}

/// The error of a call that must fail, checked to be definitive (not
/// transient) and accepted by `kind`.
pub(super) fn must_fail<T>(
    step: &str,
    result: Result<T>,
    expected: &str,
    kind: impl FnOnce(&Error) -> bool,
) -> std::result::Result<Error, String> {
    match result {
        Ok(_) => Err(format!("{step}: succeeded, expected {expected}")),
        Err(e) if !kind(&e) => Err(format!("{step}: expected {expected}, got: {e}")),
        Err(e) if e.is_transient() => Err(format!(
            "{step}: a definitive refusal reported as transient: {e}"
        )),
        Err(e) => Ok(e),
    }
}

fn is_integrity(e: &Error) -> bool {
    matches!(e, Error::Integrity { .. })
}

fn is_integrity_or_malformed(e: &Error) -> bool {
    matches!(e, Error::Integrity { .. } | Error::Malformed { .. })
}

fn is_refusal_of_a_forgery(e: &Error) -> bool {
    matches!(
        e,
        Error::Integrity { .. } | Error::Malformed { .. } | Error::StateRejected { .. }
    )
}

fn is_unavailable(state: KeyState) -> impl Fn(&Error) -> bool {
    move |e| matches!(e, Error::KeyUnavailable { state: s, .. } if *s == state)
}

async fn wrapped<F: Fixture + ?Sized>(
    fixture: &F,
    zone: &str,
) -> std::result::Result<(KeyRef, SecretKey, WrappedKey), String> {
    let p = fixture.provider();
    let root = must("create an enabled key", fixture.enabled_key().await)?;
    let key = must("generate a test key", SecretKey::generate())?;
    let blob = must("wrap", p.wrap_key(&root, &key, &context(zone)).await)?;
    Ok((root, key, blob))
}

async fn key_ref<F: Fixture + ?Sized>(fixture: &F) -> Check {
    let p = fixture.provider();
    let root = must("create an enabled key", fixture.enabled_key().await)?;
    ensure(root.provider() == p.kind(), || {
        format!("the fixture's key {root} is not of kind {:?}", p.kind())
    })?;
    let named = p.key_ref(root.key_id());
    ensure(named == root, || {
        format!("key_ref({:?}) is {named}, not {root}", root.key_id())
    })?;
    Ok(Outcome::Passed)
}

async fn round_trip<F: Fixture + ?Sized>(fixture: &F) -> Check {
    let p = fixture.provider();
    let (root, key, blob) = wrapped(fixture, "round-trip").await?;
    let back = must(
        "unwrap",
        p.unwrap_key(&root, &blob, &context("round-trip")).await,
    )?;
    ensure(back == key, || "unwrap returned another key".into())?;
    let secret = key.expose_secret();
    ensure(
        !blob.as_bytes().windows(secret.len()).any(|w| w == secret),
        || "the wrapped key holds the key in the clear".into(),
    )?;
    let again = must(
        "wrap again",
        p.wrap_key(&root, &key, &context("round-trip")).await,
    )?;
    ensure(again != blob, || {
        "wrapping the same key twice gave the same bytes (no fresh nonce)".into()
    })?;
    Ok(Outcome::Passed)
}

async fn context_binding<F: Fixture + ?Sized>(fixture: &F) -> Check {
    let p = fixture.provider();
    let (root, _, blob) = wrapped(fixture, "bound").await?;
    let cases = [
        ("another value", context("other")),
        ("no context", EncryptionContext::new()),
        ("an extra pair", context("bound").with("extra", "1")),
    ];
    for (what, ctx) in cases {
        must_fail(
            &format!("unwrap with {what}"),
            p.unwrap_key(&root, &blob, &ctx).await,
            "an integrity failure",
            is_integrity,
        )?;
    }
    Ok(Outcome::Passed)
}

async fn wrong_key<F: Fixture + ?Sized>(fixture: &F) -> Check {
    let p = fixture.provider();
    let (_, _, blob) = wrapped(fixture, "wrong-key").await?;
    let other = must("create another key", fixture.enabled_key().await)?;
    let result = p.unwrap_key(&other, &blob, &context("wrong-key")).await;
    if fixture.deviations().wrong_key_is_access_denied {
        must_fail(
            "unwrap under another key",
            result,
            "an integrity failure or access denied",
            |e| is_integrity(e) || matches!(e, Error::AccessDenied { .. }),
        )?;
        return Ok(Outcome::Waived(
            "another key's wrapped key may be refused as access denied",
        ));
    }
    must_fail(
        "unwrap under another key",
        result,
        "an integrity failure",
        is_integrity,
    )?;
    Ok(Outcome::Passed)
}

async fn modified_blob<F: Fixture + ?Sized>(fixture: &F) -> Check {
    let p = fixture.provider();
    let (root, _, blob) = wrapped(fixture, "modified").await?;
    let bytes = blob.as_bytes();
    let flip = |at: usize| {
        let mut b = bytes.to_vec();
        b[at] ^= 0x01;
        WrappedKey::from_bytes(b)
    };
    let cases = [
        ("last byte flipped", flip(bytes.len() - 1)),
        ("middle byte flipped", flip(bytes.len() / 2)),
        (
            "last byte cut off",
            WrappedKey::from_bytes(bytes[..bytes.len() - 1].to_vec()),
        ),
    ];
    for (what, modified) in cases {
        must_fail(
            &format!("unwrap with the {what}"),
            p.unwrap_key(&root, &modified, &context("modified")).await,
            "an integrity failure or a malformed blob",
            is_integrity_or_malformed,
        )?;
    }
    Ok(Outcome::Passed)
}

async fn disabled_key<F: Fixture + ?Sized>(fixture: &F) -> Check {
    let p = fixture.provider();
    let (root, key, blob) = wrapped(fixture, "disabled").await?;
    must("disable the key", fixture.set_enabled(&root, false).await)?;
    let state = must("describe", p.describe_key(&root).await)?;
    ensure(state == KeyState::Disabled, || {
        format!("describe of a disabled key says {state}")
    })?;
    let fresh = must("create a disabled key", fixture.disabled_key().await)?;
    let state = must("describe", p.describe_key(&fresh).await)?;
    ensure(state == KeyState::Disabled, || {
        format!("describe of the fixture's disabled key says {state}")
    })?;
    let outcome = if fixture.deviations().key_state_not_enforced {
        Outcome::Waived("wraps and unwraps under a disabled key are not refused")
    } else {
        must_fail(
            "wrap under a disabled key",
            p.wrap_key(&root, &key, &context("disabled")).await,
            "key unavailable (disabled)",
            is_unavailable(KeyState::Disabled),
        )?;
        must_fail(
            "unwrap under a disabled key",
            p.unwrap_key(&root, &blob, &context("disabled")).await,
            "key unavailable (disabled)",
            is_unavailable(KeyState::Disabled),
        )?;
        Outcome::Passed
    };
    if fixture.disable_is_final() {
        ensure(fixture.set_enabled(&root, true).await.is_err(), || {
            "enabling a key whose disabling is final did not fail".into()
        })?;
        let state = must("describe", p.describe_key(&root).await)?;
        ensure(state == KeyState::Disabled, || {
            format!("describe after a refused enable says {state}")
        })?;
        return Ok(Outcome::Waived(
            "disabling is final for this provider: the key is not used again",
        ));
    }
    must(
        "enable the key again",
        fixture.set_enabled(&root, true).await,
    )?;
    let back = must(
        "unwrap after enabling again",
        p.unwrap_key(&root, &blob, &context("disabled")).await,
    )?;
    ensure(back == key, || {
        "unwrap after enabling again returned another key".into()
    })?;
    Ok(outcome)
}

async fn missing_key<F: Fixture + ?Sized>(fixture: &F) -> Check {
    let p = fixture.provider();
    let missing = fixture.missing_key();
    let state = must("describe a missing key", p.describe_key(&missing).await)?;
    ensure(state == KeyState::NotFound, || {
        format!("describe of a missing key says {state}")
    })?;
    let key = must("generate a test key", SecretKey::generate())?;
    must_fail(
        "wrap under a missing key",
        p.wrap_key(&missing, &key, &context("missing")).await,
        "key unavailable (not found)",
        is_unavailable(KeyState::NotFound),
    )?;
    Ok(Outcome::Passed)
}

async fn validation<F: Fixture + ?Sized>(fixture: &F) -> Check {
    let p = fixture.provider();
    let root = must("create an enabled key", fixture.enabled_key().await)?;
    let ok = p.validate_key(&root).await;
    ensure(ok.is_valid() && ok.state == Some(KeyState::Enabled), || {
        format!("validation of an enabled key: {ok}")
    })?;
    ensure(
        ok.steps()
            .iter()
            .all(|(_, outcome)| **outcome == StepOutcome::Passed),
        || format!("validation of an enabled key skipped a step: {ok}"),
    )?;
    ensure(ok.key == root, || {
        format!("the report names {}, not {root}", ok.key)
    })?;

    let missing = p.validate_key(&fixture.missing_key()).await;
    let expected = ValidationFailure::KeyState(KeyState::NotFound);
    ensure(
        missing.first_failure() == Some((ValidationStep::Encrypt, &expected))
            && missing.decrypt == StepOutcome::Skipped
            && missing.state == Some(KeyState::NotFound),
        || format!("validation of a missing key: {missing}"),
    )?;

    let disabled = must("create a disabled key", fixture.disabled_key().await)?;
    let report = p.validate_key(&disabled).await;
    let expected = ValidationFailure::KeyState(KeyState::Disabled);
    ensure(
        !report.is_valid()
            && report.describe == StepOutcome::Failed(expected.clone())
            && report.state == Some(KeyState::Disabled),
        || format!("validation of a disabled key: {report}"),
    )?;
    if fixture.deviations().key_state_not_enforced {
        return Ok(Outcome::Waived("a disabled key's encrypt step may pass"));
    }
    ensure(
        report.first_failure() == Some((ValidationStep::Encrypt, &expected)),
        || format!("validation of a disabled key does not fail at encrypt: {report}"),
    )?;
    Ok(Outcome::Passed)
}

async fn home_region<F: Fixture + ?Sized>(fixture: &F) -> Check {
    let p = fixture.provider();
    let root = must("create an enabled key", fixture.enabled_key().await)?;
    let home = must(
        "serves_region(home)",
        p.serves_region(&root, root.region()).await,
    )?;
    ensure(home == RegionAnswer::Home, || {
        format!("a key in its own region is answered {home:?}")
    })?;
    let named = must("key_in_region(home)", p.key_in_region(&root, root.region()))?;
    ensure(named == root, || {
        format!("a key in its own region is named {named}")
    })?;
    let nowhere = fixture.unserved_region();
    let answer = must(
        "serves_region(elsewhere)",
        p.serves_region(&root, &nowhere).await,
    )?;
    let RegionAnswer::NotServed(reason) = answer else {
        return Err(format!(
            "a key with no replica is answered {answer:?} for {nowhere}"
        ));
    };
    ensure(!reason.is_empty(), || "an empty reason".into())?;
    must_fail(
        "require(elsewhere)",
        answer.require(&root, &nowhere),
        "a region mismatch",
        |e| matches!(e, Error::RegionMismatch { .. }),
    )?;
    Ok(Outcome::Passed)
}

async fn replica_regions<F: Fixture + ?Sized>(fixture: &F) -> Check {
    let p = fixture.provider();
    let Some(replicated) = must("create a replicated key", fixture.replicated_key().await)? else {
        return Ok(Outcome::Skipped("the fixture has no replicated key"));
    };
    let root = &replicated.key;
    ensure(!replicated.replica_regions.is_empty(), || {
        "the replicated key has no replica region".into()
    })?;
    let key = must("generate a test key", SecretKey::generate())?;
    let blob = must("wrap", p.wrap_key(root, &key, &context("replica")).await)?;
    for region in &replicated.replica_regions {
        let answer = must(
            &format!("serves_region({region})"),
            p.serves_region(root, region).await,
        )?;
        let RegionAnswer::Replica(replica) = answer else {
            return Err(format!(
                "the key's replica in {region} is answered {answer:?}"
            ));
        };
        ensure(replica.region() == region, || {
            format!("the replica in {region} is named {replica}")
        })?;
        let named = must(
            &format!("key_in_region({region})"),
            p.key_in_region(root, region),
        )?;
        ensure(named == replica, || {
            format!("key_in_region names {named}, serves_region {replica}")
        })?;
        let back = must(
            &format!("unwrap under the replica in {region}"),
            p.unwrap_key(&replica, &blob, &context("replica")).await,
        )?;
        ensure(back == key, || {
            format!("the replica in {region} unwrapped another key")
        })?;
    }
    let nowhere = fixture.unserved_region();
    let answer = must(
        "serves_region(elsewhere)",
        p.serves_region(root, &nowhere).await,
    )?;
    ensure(!answer.serves(), || {
        format!("a replicated key is answered {answer:?} for {nowhere}, where it has no replica")
    })?;
    Ok(Outcome::Passed)
}

async fn other_kind<F: Fixture + ?Sized>(fixture: &F) -> Check {
    let p = fixture.provider();
    let root = must("create an enabled key", fixture.enabled_key().await)?;
    let foreign = KeyRef::new(format!("not-{}", p.kind()), root.key_id(), root.region());
    let key = must("generate a test key", SecretKey::generate())?;
    must_fail(
        "wrap under another kind's key",
        p.wrap_key(&foreign, &key, &context("kind")).await,
        "a refusal",
        |_| true,
    )?;
    must_fail(
        "describe another kind's key",
        p.describe_key(&foreign).await,
        "a refusal",
        |_| true,
    )?;
    Ok(Outcome::Passed)
}

async fn generate_key<F: Fixture + ?Sized>(fixture: &F) -> Check {
    let p = fixture.provider();
    let root = must("create an enabled key", fixture.enabled_key().await)?;
    let (a, wrapped_a) = must(
        "generate_key",
        p.generate_key(&root, &context("generated")).await,
    )?;
    let (b, _) = must(
        "generate_key again",
        p.generate_key(&root, &context("generated")).await,
    )?;
    ensure(a != b, || "two generated keys are equal".into())?;
    let back = must(
        "unwrap a generated key",
        p.unwrap_key(&root, &wrapped_a, &context("generated")).await,
    )?;
    ensure(back == a, || {
        "a generated key unwraps to another key".into()
    })?;
    must_fail(
        "unwrap a generated key with another context",
        p.unwrap_key(&root, &wrapped_a, &context("other")).await,
        "an integrity failure",
        is_integrity,
    )?;
    Ok(Outcome::Passed)
}

async fn resolve_key<F: Fixture + ?Sized>(fixture: &F) -> Check {
    let p = fixture.provider();
    let root = must("create an enabled key", fixture.enabled_key().await)?;
    let resolved = must("resolve a key", p.resolve_key(&root).await)?;
    ensure(resolved == root, || {
        format!("a key resolves to {resolved}, not itself")
    })?;
    let Some(alias) = must("create an alias", fixture.alias_for(&root).await)? else {
        return Ok(Outcome::Skipped("the fixture has no aliases"));
    };
    let resolved = must("resolve an alias", p.resolve_key(&alias).await)?;
    ensure(resolved == root, || {
        format!("alias {alias} resolves to {resolved}, not {root}")
    })?;
    let key = must("generate a test key", SecretKey::generate())?;
    let blob = must(
        "wrap through the alias",
        p.wrap_key(&alias, &key, &context("alias")).await,
    )?;
    let back = must(
        "unwrap under the key",
        p.unwrap_key(&root, &blob, &context("alias")).await,
    )?;
    ensure(back == key, || {
        "what the alias wrapped unwraps to another key under its key".into()
    })?;
    Ok(Outcome::Passed)
}

async fn forged_wrap<F: Fixture + ?Sized>(fixture: &F) -> Check {
    let p = fixture.provider();
    let root = must("create an enabled key", fixture.enabled_key().await)?;
    let key = must("generate a test key", SecretKey::generate())?;
    let ctx = context("forged");
    let wraps = match must("forge", fixture.forge(&root, &key, &ctx).await)? {
        Forgery::NoPublicMaterial(why) => return Ok(Outcome::Skipped(why)),
        Forgery::Wraps(wraps) => wraps,
    };
    ensure(!wraps.is_empty(), || {
        "the forger made no wrapped key".into()
    })?;
    let genuine = must("wrap", p.wrap_key(&root, &key, &ctx).await)?;
    ensure(!p.is_legacy_wrap(&genuine), || {
        "a wrap the provider just made is called legacy".into()
    })?;
    for forged in &wraps {
        let label = &forged.label;
        ensure(p.is_legacy_wrap(&forged.wrapped) == forged.legacy, || {
            format!(
                "forged wrap ({label}): is_legacy_wrap says {}",
                !forged.legacy
            )
        })?;
        if forged.legacy {
            let adopted = must(
                &format!("unwrap_legacy_key of the forged wrap ({label})"),
                p.unwrap_legacy_key(&root, &forged.wrapped, &ctx).await,
            )?;
            ensure(adopted == key, || {
                format!("the forged wrap ({label}) is not faithful: adoption unwraps another key")
            })?;
        }
        must_fail(
            &format!("unwrap of a forged wrap ({label})"),
            p.unwrap_key(&root, &forged.wrapped, &ctx).await,
            "a refusal (integrity failure, malformed blob or rejected state)",
            is_refusal_of_a_forgery,
        )?;
    }
    Ok(Outcome::Passed)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::testing::MockProvider;

    /// The mock, optionally broken in one way, to show the suite catches it.
    #[derive(Debug)]
    struct Subject {
        mock: MockProvider,
        next: AtomicU32,
        /// Wraps and unwraps with an empty context, whatever is asked.
        ignores_context: bool,
        /// Reports every refusal as the provider being unreachable.
        all_transient: bool,
        /// Also unwraps `PLAIN ‖ key`, which anyone can make, and its
        /// fixture forges one.
        forgeable: bool,
    }

    impl Subject {
        fn new() -> Self {
            Self {
                mock: MockProvider::new(),
                next: AtomicU32::new(0),
                ignores_context: false,
                all_transient: false,
                forgeable: false,
            }
        }

        fn context<'a>(
            &self,
            given: &'a EncryptionContext,
        ) -> std::borrow::Cow<'a, EncryptionContext> {
            if self.ignores_context {
                std::borrow::Cow::Owned(EncryptionContext::new())
            } else {
                std::borrow::Cow::Borrowed(given)
            }
        }

        fn map<T>(&self, result: Result<T>) -> Result<T> {
            result.map_err(|e| {
                if self.all_transient {
                    Error::unreachable("mock", "every error made transient").with_source(e)
                } else {
                    e
                }
            })
        }
    }

    #[async_trait]
    impl KeyProvider for Subject {
        fn kind(&self) -> &str {
            self.mock.kind()
        }
        fn key_ref(&self, key_id: &str) -> KeyRef {
            self.mock.key_ref(key_id)
        }
        async fn wrap_key(
            &self,
            root: &KeyRef,
            key: &SecretKey,
            context: &EncryptionContext,
        ) -> Result<WrappedKey> {
            let context = self.context(context);
            self.map(self.mock.wrap_key(root, key, &context).await)
        }
        async fn unwrap_key(
            &self,
            root: &KeyRef,
            wrapped: &WrappedKey,
            context: &EncryptionContext,
        ) -> Result<SecretKey> {
            if self.forgeable {
                if let Some(key) = wrapped.as_bytes().strip_prefix(b"PLAIN") {
                    return SecretKey::from_slice(key);
                }
            }
            let context = self.context(context);
            self.map(self.mock.unwrap_key(root, wrapped, &context).await)
        }
        async fn describe_key(&self, root: &KeyRef) -> Result<KeyState> {
            self.mock.describe_key(root).await
        }
        fn admin(&self) -> Option<&dyn crate::provider::KeyAdmin> {
            self.mock.admin()
        }
    }

    #[async_trait]
    impl Fixture for Subject {
        fn provider(&self) -> &dyn KeyProvider {
            self
        }
        async fn enabled_key(&self) -> Result<KeyRef> {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            Ok(self.mock.add_key(&format!("key-{n}")))
        }
        fn missing_key(&self) -> KeyRef {
            self.mock.key_ref("missing")
        }
        async fn forge(
            &self,
            _root: &KeyRef,
            key: &SecretKey,
            _context: &EncryptionContext,
        ) -> Result<Forgery> {
            if !self.forgeable {
                return Ok(Forgery::NoPublicMaterial(
                    "no public material: a symmetric key inside the mock",
                ));
            }
            let mut bytes = b"PLAIN".to_vec();
            bytes.extend_from_slice(key.expose_secret());
            Ok(Forgery::Wraps(vec![ForgedWrap {
                label: "the key in the clear".into(),
                wrapped: WrappedKey::from_bytes(bytes),
                legacy: false,
            }]))
        }
    }

    #[tokio::test]
    async fn a_faithful_provider_conforms() {
        let report = run(&Subject::new()).await;
        report.assert_conforms();
        assert_eq!(report.checks.len(), 14);
        assert_eq!(report.outcome("round_trip"), Some(&Outcome::Passed));
        // No aliases or replicas in this fixture: said, not hidden.
        assert!(matches!(
            report.outcome("resolve_key"),
            Some(Outcome::Skipped(_))
        ));
        assert!(matches!(
            report.outcome("replica_regions"),
            Some(Outcome::Skipped(_))
        ));
        // Nothing to forge with: said, and why.
        assert!(matches!(
            report.outcome("forged_wrap"),
            Some(Outcome::Skipped(why)) if why.contains("no public material")
        ));
    }

    #[tokio::test]
    async fn a_provider_that_accepts_a_forged_wrap_fails() {
        let subject = Subject {
            forgeable: true,
            ..Subject::new()
        };
        let report = run(&subject).await;
        let failed: Vec<_> = report.failures().iter().map(|(n, _)| *n).collect();
        assert_eq!(failed, ["forged_wrap"], "{report}");
        assert!(
            report.to_string().contains("succeeded, expected a refusal"),
            "{report}"
        );
    }

    #[tokio::test]
    async fn a_fixture_without_a_forger_is_reported_as_such() {
        struct Silent(Subject);
        #[async_trait]
        impl Fixture for Silent {
            fn provider(&self) -> &dyn KeyProvider {
                &self.0
            }
            async fn enabled_key(&self) -> Result<KeyRef> {
                self.0.enabled_key().await
            }
            fn missing_key(&self) -> KeyRef {
                self.0.missing_key()
            }
        }
        let report = run(&Silent(Subject::new())).await;
        report.assert_conforms();
        assert!(matches!(
            report.outcome("forged_wrap"),
            Some(Outcome::Skipped(why)) if why.contains("supplies no forger")
        ));
    }

    #[tokio::test]
    async fn a_provider_that_ignores_the_context_fails() {
        let subject = Subject {
            ignores_context: true,
            ..Subject::new()
        };
        let report = run(&subject).await;
        assert!(!report.conforms());
        let failed: Vec<_> = report.failures().iter().map(|(n, _)| *n).collect();
        assert_eq!(failed, ["context_binding", "generate_key"], "{report}");
        let text = report.to_string();
        assert!(text.contains("context_binding: FAILED"), "{text}");
        let panic = std::panic::catch_unwind(|| report.assert_conforms());
        assert!(panic.is_err());
    }

    #[tokio::test]
    async fn a_provider_that_calls_every_refusal_transient_fails() {
        let subject = Subject {
            all_transient: true,
            ..Subject::new()
        };
        let report = run(&subject).await;
        let failed: Vec<_> = report.failures().iter().map(|(n, _)| *n).collect();
        for check in [
            "context_binding",
            "wrong_key",
            "modified_blob",
            "disabled_key",
            "missing_key",
        ] {
            assert!(failed.contains(&check), "{check} not caught: {report}");
        }
    }

    #[tokio::test]
    async fn deviations_waive_only_what_they_name() {
        struct Lenient(Subject);
        #[async_trait]
        impl Fixture for Lenient {
            fn provider(&self) -> &dyn KeyProvider {
                &self.0
            }
            async fn enabled_key(&self) -> Result<KeyRef> {
                self.0.enabled_key().await
            }
            fn missing_key(&self) -> KeyRef {
                self.0.missing_key()
            }
            fn deviations(&self) -> Deviations {
                Deviations {
                    key_state_not_enforced: true,
                    wrong_key_is_access_denied: true,
                }
            }
        }
        let report = run(&Lenient(Subject::new())).await;
        report.assert_conforms();
        for check in ["wrong_key", "disabled_key", "validation"] {
            assert!(
                matches!(report.outcome(check), Some(Outcome::Waived(_))),
                "{check}: {report}"
            );
        }
        assert_eq!(report.outcome("context_binding"), Some(&Outcome::Passed));
    }
}
