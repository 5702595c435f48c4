//! `cmek`: the operator's command-line tool for the cmek library — root
//! keys, encryption zones, encrypted files, backups and IAM policies, built on the
//! library's public API only.
//!
//! Each command group has its own module; [`exit`] maps every failure to
//! the exit code scripts rely on, in one place.
#![forbid(unsafe_code)]

mod args;
#[cfg(feature = "azure-kv")]
mod azure;
mod backups;
mod chunkwise;
mod exit;
mod files;
#[cfg(feature = "gcp-kms")]
mod gcp;
mod home;
mod info;
mod keys;
#[cfg(feature = "kmip")]
mod kmip;
mod monitor;
mod pipe;
#[cfg(feature = "pkcs11")]
mod pkcs11;
mod policy;
mod progress;
mod zones;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};
use exit::{CliResult, Code, Failure};
use home::Home;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("cmek: error: {failure}");
            failure.code.exit_code()
        }
    }
}

fn run(cli: Cli) -> CliResult {
    // One thread is enough: provider calls are few and sequential, and the
    // file commands run their own I/O threads.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Code::Other, format!("cannot start the runtime: {e}")))?;
    let home = Home::new(&cli.global);
    let quiet = cli.global.quiet;
    runtime.block_on(async {
        match cli.command {
            Command::Key(command) => keys::run(&home, command).await,
            Command::Zone(command) => zones::run(&home, command).await,
            Command::Encrypt(args) => files::encrypt(&home, args, quiet).await,
            Command::Decrypt(args) => files::decrypt(&home, args, quiet).await,
            Command::Inspect(args) => files::inspect(&home, args),
            Command::Rewrap(args) => files::rewrap(&home, args, quiet).await,
            Command::Backup(args) => backups::backup(&home, args, quiet),
            Command::Restore(args) => backups::restore(&home, args, quiet).await,
            Command::Policy(command) => policy::run(&home, command).await,
            Command::Monitor(args) => monitor::run(&home, args).await,
            Command::Info => info::run(),
        }
    })
}
