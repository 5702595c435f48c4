//! The AES-256-GCM engine chosen at run time (`cmek::engine`): the API that
//! overrides it, streams that interoperate across engines, the FIPS build's
//! module, and `cmek info`, which reports the choice.
//!
//! The engine is process wide, so everything that sets it is one test.

use cmek::engine::{self, AesGcmEngine, ChoiceSource};
use cmek::stream::{self, Params, Threads};
use cmek::SecretKey;

/// The engines this build may run: the ones compiled in, in a `fips`
/// build aws-lc-rs only.
fn allowed() -> Vec<AesGcmEngine> {
    AesGcmEngine::compiled_in()
        .into_iter()
        .filter(|e| !cfg!(feature = "fips") || *e == AesGcmEngine::AwsLc)
        .collect()
}

#[test]
fn engines_are_chosen_by_the_api_and_their_streams_interoperate() {
    let key = SecretKey::from_slice(&[0x42; 32]).unwrap();
    let plaintext: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let params = Params::new(4096).unwrap();

    let mut streams = Vec::new();
    for engine in allowed() {
        engine::set_aes_gcm_engine(Some(engine)).unwrap();
        assert_eq!(engine::aes_gcm_engine(), engine);
        let choice = engine::engine_choice();
        assert_eq!((choice.engine, choice.source), (engine, ChoiceSource::Api));
        let mut out = vec![0u8; params.ciphertext_len(plaintext.len() as u64).unwrap() as usize];
        stream::encrypt_into(&key, b"aad", params, &plaintext, &mut out, Threads::Auto).unwrap();
        streams.push((engine, out));
    }
    // Every engine reads every engine's stream, and refuses it under other
    // associated data.
    for reader in allowed() {
        engine::set_aes_gcm_engine(Some(reader)).unwrap();
        for (writer, ciphertext) in &streams {
            let mut back = vec![0u8; plaintext.len()];
            stream::decrypt_into(&key, b"aad", params, ciphertext, &mut back, Threads::One)
                .unwrap_or_else(|e| panic!("{reader} reading {writer}'s stream: {e}"));
            assert!(back == plaintext, "{reader} reading {writer}'s stream");
            assert!(stream::decrypt_into(
                &key,
                b"other",
                params,
                ciphertext,
                &mut back,
                Threads::One
            )
            .is_err());
        }
    }

    // Engines the build does not allow are refused and change nothing.
    let before = engine::aes_gcm_engine();
    for engine in [
        AesGcmEngine::AwsLc,
        AesGcmEngine::Ring,
        AesGcmEngine::RustCrypto,
    ] {
        if !allowed().contains(&engine) {
            let e = engine::set_aes_gcm_engine(Some(engine)).unwrap_err();
            assert!(matches!(e, cmek::Error::InvalidArgument(_)), "{e}");
            assert_eq!(engine::aes_gcm_engine(), before);
        }
    }

    // Back to the automatic choice.
    engine::set_aes_gcm_engine(None).unwrap();
    let choice = engine::engine_choice();
    assert_ne!(choice.source, ChoiceSource::Api);
    assert!(allowed().contains(&choice.engine));
    assert!(!choice.reason.is_empty());
}

#[cfg(feature = "fips")]
#[test]
fn the_fips_build_runs_in_fips_mode_on_aws_lc() {
    assert!(engine::fips_mode(), "aws-lc-rs does not report FIPS mode");
    assert_eq!(allowed(), vec![AesGcmEngine::AwsLc]);
    assert!(
        engine::engine_choice().reason.contains("FIPS")
            || engine::engine_choice().source != ChoiceSource::Cpu
    );
}

#[cfg(not(feature = "fips"))]
#[test]
fn other_builds_do_not_claim_fips_mode() {
    assert!(!engine::fips_mode());
}

/// `cmek info` names the engine in use and honours CMEK_AES_GCM_ENGINE.
#[cfg(feature = "cli")]
#[test]
fn cmek_info_reports_the_engine_and_the_override() {
    use std::process::Command;
    let info = |value: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cmek"));
        cmd.arg("info").env_remove(engine::ENGINE_ENV);
        if let Some(value) = value {
            cmd.env(engine::ENGINE_ENV, value);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let auto = info(None);
    assert!(auto.contains("aes-gcm engine: "), "{auto}");
    assert!(auto.contains("fips mode: no"), "{auto}");
    for engine in allowed() {
        let forced = info(Some(engine.name()));
        assert!(
            forced.contains(&format!("aes-gcm engine: {engine}\n")),
            "{forced}"
        );
        assert!(
            forced.contains(&format!("{}={engine}", engine::ENGINE_ENV)),
            "{forced}"
        );
    }
    let bad = info(Some("des"));
    assert!(bad.contains("ignored"), "{bad}");
}
