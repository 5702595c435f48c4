//! One key's check: describe it and, optionally, try it; and the
//! resolution of a zone's root key alias.

use std::future::Future;

use super::MonitorConfig;
use crate::budget::{current_priority, with_priority, Priority};
use crate::provider::{EncryptionContext, KeyProvider, KeyRef, KeyState};
use crate::secret::SecretKey;
use crate::zone::unavailable_key_state;
use crate::{Error, Result};

/// Checks `key` once: describe, then (if usable and configured) a wrap and
/// unwrap of a throwaway key. Never fails: every outcome is a state, and a
/// check that outlasts [`MonitorConfig::check_timeout`] is
/// [`KeyState::Unreachable`].
pub(super) async fn check_key(
    provider: &dyn KeyProvider,
    key: &KeyRef,
    config: &MonitorConfig,
) -> KeyState {
    // Through a call budget, a check waits behind opens on the data path.
    tokio::time::timeout(
        config.check_timeout,
        in_check_scope(check_key_untimed(provider, key, config)),
    )
    .await
    .unwrap_or(KeyState::Unreachable)
}

async fn check_key_untimed(
    provider: &dyn KeyProvider,
    key: &KeyRef,
    config: &MonitorConfig,
) -> KeyState {
    let described = match with_retries(config, || provider.describe_key(key)).await {
        Ok(KeyState::Unreachable) => {
            // Describe reports an unreachable provider as a state, not an
            // error; give it the same retries as an error.
            match retry_unreachable_describe(provider, key, config).await {
                Ok(state) => state,
                Err(e) => return state_of_error(&e),
            }
        }
        Ok(state) => state,
        Err(e) => return state_of_error(&e),
    };
    if !described.is_usable() || !config.test_wrap {
        return described;
    }
    match test_round_trip(provider, key, config).await {
        Ok(()) => KeyState::Enabled,
        Err(e) => state_of_error(&e),
    }
}

/// The key `alias` points to now, with the retries and the time bound of a
/// key check.
pub(super) async fn resolve_alias(
    provider: &dyn KeyProvider,
    alias: &KeyRef,
    config: &MonitorConfig,
) -> Result<KeyRef> {
    tokio::time::timeout(
        config.check_timeout,
        in_check_scope(with_retries(config, || provider.resolve_key(alias))),
    )
    .await
    .unwrap_or_else(|_| {
        Err(Error::unreachable(
            alias.provider(),
            "alias resolution timed out",
        ))
    })
}

/// Runs `work` at [`Priority::Check`] in a call budget, unless the caller
/// chose a priority already.
async fn in_check_scope<F: Future>(work: F) -> F::Output {
    match current_priority() {
        Some(_) => work.await,
        None => with_priority(Priority::Check, work).await,
    }
}

/// Describes again after `Unreachable`, up to `config.retries` times.
async fn retry_unreachable_describe(
    provider: &dyn KeyProvider,
    key: &KeyRef,
    config: &MonitorConfig,
) -> Result<KeyState> {
    let mut pause = config.retry_backoff;
    for _ in 0..config.retries {
        tokio::time::sleep(pause).await;
        pause = pause.saturating_mul(2);
        match provider.describe_key(key).await? {
            KeyState::Unreachable => continue,
            state => return Ok(state),
        }
    }
    Ok(KeyState::Unreachable)
}

/// Wraps a fresh throwaway key under `key` and unwraps it again.
async fn test_round_trip(
    provider: &dyn KeyProvider,
    key: &KeyRef,
    config: &MonitorConfig,
) -> Result<()> {
    let context = EncryptionContext::new().with("cmek:purpose", "availability-check");
    let probe = SecretKey::generate()?;
    let wrapped = with_retries(config, || provider.wrap_key(key, &probe, &context)).await?;
    let back = with_retries(config, || provider.unwrap_key(key, &wrapped, &context)).await?;
    if back != probe {
        return Err(Error::tampered(
            "availability check round trip (the key returned other bytes)",
        ));
    }
    Ok(())
}

/// Runs `call`, retrying transient failures with a doubling pause.
async fn with_retries<T, F, Fut>(config: &MonitorConfig, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut pause = config.retry_backoff;
    let mut attempt = 0;
    loop {
        match call().await {
            Err(e) if e.is_transient() && attempt < config.retries => {
                attempt += 1;
                tracing::debug!(target: "cmek::monitor", error = %e.report(), attempt, "retrying key check");
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2);
            }
            other => return other,
        }
    }
}

/// The state a failed check puts the key in. Errors that say nothing about
/// availability (a provider rejecting the request, a round trip returning
/// other bytes) count as unusable: the monitor fails closed on surprises.
fn state_of_error(error: &Error) -> KeyState {
    unavailable_key_state(error).unwrap_or_else(|| {
        tracing::warn!(target: "cmek::monitor", error = %error.report(), "key check failed unexpectedly");
        KeyState::Unavailable
    })
}
