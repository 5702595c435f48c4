//! Which AES-256-GCM implementation (engine) encrypts the data, chosen once
//! per process from the CPU, and how an operator overrides the choice.
//!
//! Several engines can be compiled in (features `aws-lc`, `ring`,
//! `rustcrypto`). Their output is byte-identical — the cross-engine
//! property tests and the Wycheproof vectors run against each — so the
//! choice is about speed only:
//!
//! | CPU | engine | why |
//! |-----|--------|-----|
//! | x86-64 with VAES, VPCLMULQDQ and AVX-512 (F, BW, VL) | aws-lc-rs | its AES-GCM uses 512-bit VAES |
//! | x86-64 with VAES, VPCLMULQDQ and AVX2, no AVX-512 (AMD Zen 3, Intel client cores) | `ring` | aws-lc-rs has no VAES code without AVX-512 there; `ring`'s VAES+AVX2 code is about twice as fast on a 64 KiB chunk |
//! | anything else (older x86-64, ARMv8 servers) | aws-lc-rs | at least as fast as the others |
//!
//! `ring` seals and opens in place only: out of place (the one-shot
//! stream) it copies each chunk first, and on one thread its gain over
//! aws-lc-rs at 64 MiB is then gone; it is never measurably slower
//! (docs/PERFORMANCE.md, "AES-GCM engines chosen at run time").
//!
//! Where the preferred engine is not compiled in, the first of aws-lc-rs,
//! `ring`, RustCrypto that is takes its place. A `fips` build always uses
//! aws-lc-rs, the validated module, and refuses any other.
//!
//! The choice is made once, at the first key, and cached. Operators
//! override it with the environment variable [`ENGINE_ENV`]
//! (`CMEK_AES_GCM_ENGINE=aws-lc-rs|ring|rustcrypto|auto`, read once) or
//! with [`set_aes_gcm_engine`]; [`engine_choice`] says which engine is in
//! use and why (the `cmek info` command prints it).
//!
//! ```
//! let choice = cmek::engine::engine_choice();
//! println!("AES-256-GCM on {} ({})", choice.engine, choice.reason);
//! assert!(cmek::engine::AesGcmEngine::compiled_in().contains(&choice.engine));
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use crate::{Error, Result};

/// The environment variable that overrides the automatic choice, read once
/// at the first key: `aws-lc-rs` (or `aws-lc`), `ring`, `rustcrypto`, or
/// `auto` (the default).
pub const ENGINE_ENV: &str = "CMEK_AES_GCM_ENGINE";

/// An AES-256-GCM implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AesGcmEngine {
    /// aws-lc-rs (AWS-LC): AVX-512 VAES on x86-64 where the CPU has it,
    /// the ARMv8 cryptography extensions; the FIPS module in a `fips`
    /// build. Feature `aws-lc`.
    AwsLc,
    /// The `ring` crate: VAES with AVX2 on x86-64. Feature `ring`.
    Ring,
    /// RustCrypto `aes-gcm`, pure Rust. Feature `rustcrypto`.
    RustCrypto,
}

impl AesGcmEngine {
    /// Every engine, in order of preference when the CPU does not decide.
    const ALL: [AesGcmEngine; 3] = [
        AesGcmEngine::AwsLc,
        AesGcmEngine::Ring,
        AesGcmEngine::RustCrypto,
    ];

    /// The engine's name, as [`ENGINE_ENV`] and `cmek info` spell it.
    pub const fn name(self) -> &'static str {
        match self {
            AesGcmEngine::AwsLc => "aws-lc-rs",
            AesGcmEngine::Ring => "ring",
            AesGcmEngine::RustCrypto => "rustcrypto",
        }
    }

    /// Whether this build has the engine.
    pub const fn is_compiled_in(self) -> bool {
        match self {
            AesGcmEngine::AwsLc => cfg!(feature = "aws-lc"),
            AesGcmEngine::Ring => cfg!(feature = "ring"),
            AesGcmEngine::RustCrypto => cfg!(feature = "rustcrypto"),
        }
    }

    /// The engines this build has, in order of preference.
    pub fn compiled_in() -> Vec<AesGcmEngine> {
        Self::ALL
            .into_iter()
            .filter(|e| e.is_compiled_in())
            .collect()
    }

    fn index(self) -> u8 {
        match self {
            AesGcmEngine::AwsLc => 1,
            AesGcmEngine::Ring => 2,
            AesGcmEngine::RustCrypto => 3,
        }
    }

    fn from_index(index: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.index() == index)
    }
}

impl fmt::Display for AesGcmEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AesGcmEngine {
    type Err = Error;

    /// Parses an engine name (`aws-lc-rs` or `aws-lc`, `ring`,
    /// `rustcrypto`), ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "aws-lc-rs" | "aws-lc" => Ok(AesGcmEngine::AwsLc),
            "ring" => Ok(AesGcmEngine::Ring),
            "rustcrypto" => Ok(AesGcmEngine::RustCrypto),
            other => Err(Error::InvalidArgument(format!(
                "unknown AES-GCM engine {other:?} (expected aws-lc-rs, ring or rustcrypto)"
            ))),
        }
    }
}

/// Who chose the engine in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChoiceSource {
    /// The automatic choice, from the CPU's features.
    Cpu,
    /// The environment variable [`ENGINE_ENV`].
    Environment,
    /// A call to [`set_aes_gcm_engine`].
    Api,
}

/// The engine in use and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineChoice {
    /// The engine new keys run on.
    pub engine: AesGcmEngine,
    /// Who chose it.
    pub source: ChoiceSource,
    /// Why, in words: the CPU features that decided, or the override (and
    /// an override that was ignored, with its reason).
    pub reason: String,
}

/// The CPU features the automatic choice looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cpu {
    x86_64: bool,
    aes: bool,
    pclmulqdq: bool,
    avx2: bool,
    vaes: bool,
    vpclmulqdq: bool,
    avx512: bool,
    aarch64_aes: bool,
}

impl Cpu {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            Cpu {
                x86_64: true,
                aes: std::arch::is_x86_feature_detected!("aes"),
                pclmulqdq: std::arch::is_x86_feature_detected!("pclmulqdq"),
                avx2: std::arch::is_x86_feature_detected!("avx2"),
                vaes: std::arch::is_x86_feature_detected!("vaes"),
                vpclmulqdq: std::arch::is_x86_feature_detected!("vpclmulqdq"),
                avx512: std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl"),
                aarch64_aes: false,
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            Cpu {
                aarch64_aes: std::arch::is_aarch64_feature_detected!("aes")
                    && std::arch::is_aarch64_feature_detected!("pmull"),
                ..Cpu::default()
            }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            Cpu::default()
        }
    }

    /// VAES with AVX2 but without AVX-512: where `ring` is fastest.
    fn vaes_without_avx512(&self) -> bool {
        self.x86_64 && self.vaes && self.vpclmulqdq && self.avx2 && !self.avx512
    }

    fn describe(&self) -> String {
        if self.x86_64 {
            let flags = [
                ("aes", self.aes),
                ("pclmulqdq", self.pclmulqdq),
                ("avx2", self.avx2),
                ("vaes", self.vaes),
                ("vpclmulqdq", self.vpclmulqdq),
                ("avx512f+bw+vl", self.avx512),
            ];
            let present: Vec<&str> = flags
                .iter()
                .filter(|(_, on)| *on)
                .map(|(name, _)| *name)
                .collect();
            format!("x86-64 with {}", present.join(" "))
        } else if self.aarch64_aes {
            "aarch64 with aes pmull".to_owned()
        } else {
            std::env::consts::ARCH.to_owned()
        }
    }
}

/// Whether this is a `fips` build: only aws-lc-rs may run.
const FIPS_BUILD: bool = cfg!(feature = "fips");

/// The automatic choice for `cpu` among the engines `compiled` has.
fn automatic(cpu: &Cpu, compiled: impl Fn(AesGcmEngine) -> bool, fips: bool) -> EngineChoice {
    let cpu_text = cpu.describe();
    let choose = |engine: AesGcmEngine, why: String| EngineChoice {
        engine,
        source: ChoiceSource::Cpu,
        reason: why,
    };
    if fips && compiled(AesGcmEngine::AwsLc) {
        return choose(
            AesGcmEngine::AwsLc,
            format!("FIPS build: the validated aws-lc-rs module ({cpu_text})"),
        );
    }
    let preferred = if cpu.vaes_without_avx512() {
        (
            AesGcmEngine::Ring,
            "VAES and AVX2 without AVX-512: ring's VAES code",
        )
    } else if cpu.x86_64 && cpu.vaes && cpu.avx512 {
        (
            AesGcmEngine::AwsLc,
            "VAES with AVX-512: aws-lc-rs's 512-bit code",
        )
    } else {
        (AesGcmEngine::AwsLc, "aws-lc-rs is at least as fast here")
    };
    if compiled(preferred.0) {
        return choose(preferred.0, format!("{} ({cpu_text})", preferred.1));
    }
    let fallback = AesGcmEngine::ALL
        .into_iter()
        .find(|e| compiled(*e))
        .unwrap_or(AesGcmEngine::RustCrypto);
    choose(
        fallback,
        format!(
            "{} is not in this build, {fallback} is ({cpu_text})",
            preferred.0
        ),
    )
}

/// Checks that `engine` may run in this build.
pub(crate) fn allowed(engine: AesGcmEngine) -> Result<()> {
    if !engine.is_compiled_in() {
        return Err(Error::InvalidArgument(format!(
            "AES-GCM engine {engine} is not in this build (it has {})",
            names(&AesGcmEngine::compiled_in())
        )));
    }
    if FIPS_BUILD && engine != AesGcmEngine::AwsLc {
        return Err(Error::InvalidArgument(format!(
            "AES-GCM engine {engine} is not allowed in a FIPS build: only the validated aws-lc-rs module runs"
        )));
    }
    Ok(())
}

fn names(engines: &[AesGcmEngine]) -> String {
    engines
        .iter()
        .map(|e| e.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The choice from the CPU and the environment, made once.
fn detected() -> &'static EngineChoice {
    static DETECTED: OnceLock<EngineChoice> = OnceLock::new();
    DETECTED.get_or_init(|| {
        let auto = automatic(&Cpu::detect(), AesGcmEngine::is_compiled_in, FIPS_BUILD);
        from_environment(std::env::var(ENGINE_ENV).ok().as_deref(), auto)
    })
}

/// Applies the environment's override, if any, to the automatic choice.
fn from_environment(value: Option<&str>, auto: EngineChoice) -> EngineChoice {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return auto;
    };
    if value.eq_ignore_ascii_case("auto") {
        return auto;
    }
    match value
        .parse::<AesGcmEngine>()
        .and_then(|e| allowed(e).map(|()| e))
    {
        Ok(engine) => EngineChoice {
            engine,
            source: ChoiceSource::Environment,
            reason: format!("{ENGINE_ENV}={value}"),
        },
        // An operator's typo must not stop the data path; the choice says
        // it was ignored, and `cmek info` shows it.
        Err(e) => EngineChoice {
            reason: format!("{ENGINE_ENV}={value:?} ignored: {e}; {}", auto.reason),
            ..auto
        },
    }
}

/// The engine set by [`set_aes_gcm_engine`], 0 for none.
static API_CHOICE: AtomicU8 = AtomicU8::new(0);

/// The engine new keys run on.
pub fn aes_gcm_engine() -> AesGcmEngine {
    current()
}

/// The engine used for keys made now (the crate's hot path: one atomic
/// load once the choice is cached).
pub(crate) fn current() -> AesGcmEngine {
    AesGcmEngine::from_index(API_CHOICE.load(Ordering::Relaxed)).unwrap_or(detected().engine)
}

/// The engine in use, who chose it and why.
pub fn engine_choice() -> EngineChoice {
    match AesGcmEngine::from_index(API_CHOICE.load(Ordering::Relaxed)) {
        Some(engine) => EngineChoice {
            engine,
            source: ChoiceSource::Api,
            reason: "set by the application".to_owned(),
        },
        None => detected().clone(),
    }
}

/// Makes keys made from now on run on `engine`, or with `None` returns to
/// the choice from the CPU and [`ENGINE_ENV`]. Keys made before keep their
/// engine; the output is the same either way.
///
/// # Errors
/// [`Error::InvalidArgument`] if `engine` is not compiled in, or is not
/// aws-lc-rs in a `fips` build; the engine in use is then unchanged.
pub fn set_aes_gcm_engine(engine: Option<AesGcmEngine>) -> Result<()> {
    let index = match engine {
        Some(engine) => {
            allowed(engine)?;
            engine.index()
        }
        None => 0,
    };
    API_CHOICE.store(index, Ordering::Relaxed);
    Ok(())
}

/// A one-line description of the CPU features the automatic choice reads,
/// e.g. `x86-64 with aes pclmulqdq avx2 vaes vpclmulqdq`.
pub fn cpu_features() -> String {
    Cpu::detect().describe()
}

/// Whether the cryptography runs in a FIPS 140-3 validated module in FIPS
/// mode: true only in a `fips` build whose aws-lc-rs module reports FIPS
/// mode.
pub fn fips_mode() -> bool {
    #[cfg(feature = "fips")]
    {
        aws_lc_rs::try_fips_mode().is_ok()
    }
    #[cfg(not(feature = "fips"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZEN3: Cpu = Cpu {
        x86_64: true,
        aes: true,
        pclmulqdq: true,
        avx2: true,
        vaes: true,
        vpclmulqdq: true,
        avx512: false,
        aarch64_aes: false,
    };
    const ICELAKE: Cpu = Cpu {
        avx512: true,
        ..ZEN3
    };
    const SKYLAKE: Cpu = Cpu {
        vaes: false,
        vpclmulqdq: false,
        ..ZEN3
    };
    const GRAVITON: Cpu = Cpu {
        x86_64: false,
        aes: false,
        pclmulqdq: false,
        avx2: false,
        vaes: false,
        vpclmulqdq: false,
        avx512: false,
        aarch64_aes: true,
    };

    fn all(_: AesGcmEngine) -> bool {
        true
    }

    #[test]
    fn the_cpu_decides_between_aws_lc_and_ring() {
        assert_eq!(automatic(&ZEN3, all, false).engine, AesGcmEngine::Ring);
        assert_eq!(automatic(&ICELAKE, all, false).engine, AesGcmEngine::AwsLc);
        assert_eq!(automatic(&SKYLAKE, all, false).engine, AesGcmEngine::AwsLc);
        assert_eq!(automatic(&GRAVITON, all, false).engine, AesGcmEngine::AwsLc);
        let zen3 = automatic(&ZEN3, all, false);
        assert_eq!(zen3.source, ChoiceSource::Cpu);
        assert!(zen3.reason.contains("without AVX-512"), "{}", zen3.reason);
    }

    #[test]
    fn a_fips_build_always_takes_aws_lc() {
        for cpu in [ZEN3, ICELAKE, SKYLAKE, GRAVITON] {
            let choice = automatic(&cpu, all, true);
            assert_eq!(choice.engine, AesGcmEngine::AwsLc);
            assert!(choice.reason.starts_with("FIPS build"));
        }
    }

    #[test]
    fn an_engine_not_compiled_in_falls_back_in_order() {
        let no_ring = |e| e != AesGcmEngine::Ring;
        let choice = automatic(&ZEN3, no_ring, false);
        assert_eq!(choice.engine, AesGcmEngine::AwsLc);
        assert!(choice.reason.contains("ring is not in this build"));
        let only_rustcrypto = |e| e == AesGcmEngine::RustCrypto;
        assert_eq!(
            automatic(&ICELAKE, only_rustcrypto, false).engine,
            AesGcmEngine::RustCrypto
        );
    }

    #[test]
    fn the_environment_overrides_and_a_bad_value_is_reported() {
        let auto = automatic(&ICELAKE, AesGcmEngine::is_compiled_in, FIPS_BUILD);
        assert_eq!(from_environment(None, auto.clone()), auto);
        assert_eq!(from_environment(Some(" "), auto.clone()), auto);
        assert_eq!(from_environment(Some("AUTO"), auto.clone()), auto);
        let bad = from_environment(Some("chacha"), auto.clone());
        assert_eq!(bad.engine, auto.engine);
        assert!(bad.reason.contains("ignored"), "{}", bad.reason);
        for engine in AesGcmEngine::compiled_in() {
            let chosen = from_environment(Some(engine.name()), auto.clone());
            if FIPS_BUILD && engine != AesGcmEngine::AwsLc {
                assert_eq!(chosen.engine, AesGcmEngine::AwsLc);
                assert!(chosen.reason.contains("FIPS"), "{}", chosen.reason);
            } else {
                assert_eq!(chosen.engine, engine);
                assert_eq!(chosen.source, ChoiceSource::Environment);
            }
        }
    }

    #[test]
    fn names_parse_back() {
        for engine in AesGcmEngine::ALL {
            assert_eq!(engine.name().parse::<AesGcmEngine>().unwrap(), engine);
        }
        assert_eq!(
            "AWS-LC".parse::<AesGcmEngine>().unwrap(),
            AesGcmEngine::AwsLc
        );
        assert!("aes".parse::<AesGcmEngine>().is_err());
    }

    #[test]
    fn engines_not_compiled_in_are_refused() {
        for engine in AesGcmEngine::ALL {
            let result = allowed(engine);
            let expected =
                engine.is_compiled_in() && (!FIPS_BUILD || engine == AesGcmEngine::AwsLc);
            assert_eq!(result.is_ok(), expected, "{engine}: {result:?}");
        }
    }
}
