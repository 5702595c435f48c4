//! Running async work to completion from blocking code, for the parts of
//! cmek that sit behind a synchronous interface (a manifest store on an
//! object store, Parquet's key retriever).
//!
//! Inside a multi-threaded tokio runtime the work runs with
//! `block_in_place`; outside any runtime, on a current-thread runtime of
//! the caller's own, made on first use. Inside a current-thread runtime it
//! cannot block without stalling that runtime, so it fails with
//! [`Error::Misuse`] instead.

use std::future::Future;
use std::sync::OnceLock;

use crate::{Error, Result};

/// A private runtime, made the first time blocking code outside any
/// runtime needs one (its error kept as text: a runtime that cannot start
/// is reported to every caller).
#[derive(Debug, Default)]
pub(crate) struct Blocker {
    runtime: OnceLock<std::result::Result<tokio::runtime::Runtime, String>>,
}

impl Blocker {
    /// Runs `work` to completion; `misuse` is the message for a caller on a
    /// current-thread runtime.
    pub(crate) fn block_on<T>(
        &self,
        misuse: &'static str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| handle.block_on(work))
            }
            Ok(_) => Err(Error::misuse(misuse)),
            Err(_) => {
                let runtime = self.runtime.get_or_init(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())
                });
                match runtime {
                    Ok(rt) => rt.block_on(work),
                    Err(e) => Err(Error::Io {
                        path: None,
                        source: std::io::Error::other(format!("cannot start a runtime: {e}")),
                    }),
                }
            }
        }
    }
}
