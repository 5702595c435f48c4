//! Single flight for unwraps: callers asking to unwrap the same wrapped key
//! under the same root and context at the same time share one provider
//! call.
//!
//! The first caller leads and makes the call; the others wait for its
//! outcome and each gets its own copy (a [`SecretKey::duplicate`], or an
//! error of the same kind). A leader whose caller gives up (its future
//! dropped) hands over: a waiter becomes the new leader, so no waiter is
//! left without an answer.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

use crate::provider::{EncryptionContext, KeyRef, WrappedKey};
use crate::secret::SecretKey;
use crate::Result;

/// What identifies one unwrap: everything the provider's answer depends on.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct FlightKey {
    root: KeyRef,
    wrapped: Bytes,
    context: Vec<u8>,
    legacy: bool,
}

impl FlightKey {
    pub(super) fn new(
        root: &KeyRef,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
        legacy: bool,
    ) -> Self {
        Self {
            root: root.clone(),
            wrapped: wrapped.to_bytes(),
            context: context.canonical_bytes(),
            legacy,
        }
    }
}

type Outcome = Arc<Result<SecretKey>>;
type Slot = watch::Sender<Option<Outcome>>;

/// The unwraps in flight.
#[derive(Default)]
pub(super) struct Flights {
    in_flight: Mutex<HashMap<FlightKey, Slot>>,
}

/// How a caller took part in an unwrap.
pub(super) enum Role {
    /// It made the call.
    Led,
    /// Another caller's call answered it.
    Joined,
}

impl Flights {
    /// Runs `call` for `key`, or waits for the same call made by another
    /// caller and shares its outcome.
    pub(super) async fn run<F, Fut>(&self, key: FlightKey, mut call: F) -> (Result<SecretKey>, Role)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<SecretKey>>,
    {
        loop {
            let joined = {
                let mut in_flight = lock(&self.in_flight);
                match in_flight.get(&key) {
                    Some(slot) => Some(slot.subscribe()),
                    None => {
                        let (slot, _) = watch::channel(None);
                        in_flight.insert(key.clone(), slot);
                        None
                    }
                }
            };
            match joined {
                None => {
                    // Leading: the guard clears the slot however this ends,
                    // which wakes the waiters (with the outcome, or with
                    // nothing if the caller gave up).
                    let guard = Leading {
                        flights: self,
                        key: &key,
                        done: false,
                    };
                    let outcome = call().await;
                    let shared = match &outcome {
                        Ok(secret) => Ok(secret.duplicate()),
                        Err(e) => Err(e.duplicate()),
                    };
                    guard.finish(Arc::new(shared));
                    return (outcome, Role::Led);
                }
                Some(mut receiver) => {
                    match receiver.wait_for(Option::is_some).await {
                        Ok(value) => {
                            let outcome = value.as_ref().map(Arc::clone);
                            drop(value);
                            if let Some(outcome) = outcome {
                                let copy = match outcome.as_ref() {
                                    Ok(secret) => Ok(secret.duplicate()),
                                    Err(e) => Err(e.duplicate()),
                                };
                                return (copy, Role::Joined);
                            }
                        }
                        // The leader gave up: try again, maybe as leader.
                        Err(_) => continue,
                    }
                }
            }
        }
    }

    /// Unwraps in flight now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        lock(&self.in_flight).len()
    }
}

struct Leading<'a> {
    flights: &'a Flights,
    key: &'a FlightKey,
    done: bool,
}

impl Leading<'_> {
    fn finish(mut self, outcome: Outcome) {
        self.done = true;
        let slot = lock(&self.flights.in_flight).remove(self.key);
        if let Some(slot) = slot {
            slot.send_replace(Some(outcome));
        }
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Dropping the slot's sender without a value tells the waiters
            // to take over.
            lock(&self.flights.in_flight).remove(self.key);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
