//! Progress bars on standard error, drawn only for a person: hidden when
//! standard error is not a terminal, with `--quiet`, and for small inputs.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Inputs smaller than this finish too fast for a bar to help.
const MIN_BYTES: u64 = 64 << 20;

/// Whether bars may be drawn at all.
pub fn enabled(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// A byte-count bar for an input of `len` bytes (`None`: unknown, e.g. a
/// pipe), or a hidden one.
pub fn bytes(quiet: bool, len: Option<u64>, what: &str) -> ProgressBar {
    if !enabled(quiet) || len.is_some_and(|n| n < MIN_BYTES) {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{msg} {spinner} {bytes} {bytes_per_sec}")
                .expect("valid template"),
        ),
    };
    bar.with_message(what.to_owned())
}

/// A count bar for `total` files.
pub fn files(quiet: bool, total: u64, what: &str) -> ProgressBar {
    if !enabled(quiet) {
        return ProgressBar::hidden();
    }
    ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
        .with_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} files eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        )
        .with_message(what.to_owned())
}
