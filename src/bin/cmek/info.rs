//! `cmek info`: what this build's cryptography runs on.

use cmek::engine::{self, AesGcmEngine};

use crate::exit::CliResult;

/// Prints the version, the AES-256-GCM engine in use with the reason, the
/// engines compiled in, the CPU features the choice read, and FIPS mode.
pub fn run() -> CliResult {
    let choice = engine::engine_choice();
    let compiled: Vec<&str> = AesGcmEngine::compiled_in()
        .into_iter()
        .map(AesGcmEngine::name)
        .collect();
    println!("cmek {}", env!("CARGO_PKG_VERSION"));
    println!("aes-gcm engine: {}", choice.engine);
    println!("chosen because: {}", choice.reason);
    println!("engines compiled in: {}", compiled.join(", "));
    println!("cpu: {}", engine::cpu_features());
    println!(
        "fips mode: {}",
        if engine::fips_mode() { "yes" } else { "no" }
    );
    Ok(())
}
