//! The scheduler behind a budget: a token bucket for the provider and one
//! per root key, and the queue of calls waiting for a token, served by
//! priority (with aging) and, within a priority, in arrival order.
//!
//! Waiting calls are granted by whoever holds the lock when tokens are
//! there: the call itself when it arrives, else a driver task that sleeps
//! until the next token is due. The driver runs only while calls wait, so
//! an idle budget costs nothing and needs no background task.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use super::Priority;
use crate::provider::KeyRef;

/// Token counts are kept in floating point; this much below a whole token
/// counts as one, so that rounding never leaves a waiter a hair short.
const EPSILON: f64 = 1e-9;

/// Root buckets kept before full, idle ones are first forgotten; after
/// each sweep the next comes at twice the number left, so that sweeping
/// costs a constant per call however many keys are busy.
const ROOT_BUCKETS_KEPT: usize = 4096;

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub(super) struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    pub(super) fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            rate,
            burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    fn has_token(&self) -> bool {
        self.tokens >= 1.0 - EPSILON
    }

    fn take(&mut self) {
        self.tokens -= 1.0;
    }

    fn is_full(&self) -> bool {
        self.tokens >= self.burst - EPSILON
    }

    /// Time until one whole token is there (zero if it is).
    fn time_to_token(&self) -> Duration {
        if self.has_token() {
            return Duration::ZERO;
        }
        let secs = (1.0 - self.tokens) / self.rate;
        // Rounded up to the next microsecond, so that the wake-up finds the
        // token rather than a hair less.
        Duration::from_secs_f64(secs.min(3600.0)) + Duration::from_micros(1)
    }

    /// Empties the bucket: the provider said it is over its rate.
    fn drain(&mut self) {
        self.tokens = self.tokens.min(0.0);
    }
}

/// A call waiting for a token.
struct Waiter {
    seq: u64,
    root: KeyRef,
    priority: Priority,
    since: Instant,
    grant: oneshot::Sender<()>,
}

/// Where a candidate for the next token comes from.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Queue(usize),
    Parked(KeyRef),
}

/// The settings the scheduler needs.
#[derive(Debug, Clone)]
pub(super) struct Limits {
    pub(super) rate: f64,
    pub(super) burst: f64,
    pub(super) root: Option<(f64, f64)>,
    pub(super) aging: Duration,
}

struct State {
    provider: Bucket,
    roots: HashMap<KeyRef, Bucket>,
    /// Waiting calls by priority, in arrival order.
    queues: [VecDeque<Waiter>; 3],
    /// Waiting calls whose root's bucket was empty when their turn came,
    /// by root, in order: they do not hold up calls on other roots.
    parked: HashMap<KeyRef, VecDeque<Waiter>>,
    next_seq: u64,
    /// When the driver will look next; `None` when it is not running.
    driver_wake: Option<Instant>,
    /// Root buckets kept before the next sweep of full ones.
    sweep_at: usize,
}

/// The shared scheduler of one budget.
pub(super) struct Scheduler {
    limits: Limits,
    state: Mutex<State>,
    wake_driver: Notify,
    depth: AtomicUsize,
    provider_kind: String,
}

/// How a wait for a token ended.
pub(super) enum Wait {
    /// The call may go ahead; it waited this long.
    Granted(Duration),
    /// The deadline passed first.
    TimedOut,
}

impl Scheduler {
    pub(super) fn new(limits: Limits, provider_kind: String) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Self {
            state: Mutex::new(State {
                provider: Bucket::new(limits.rate, limits.burst, now),
                roots: HashMap::new(),
                queues: Default::default(),
                parked: HashMap::new(),
                next_seq: 0,
                driver_wake: None,
                sweep_at: ROOT_BUCKETS_KEPT,
            }),
            limits,
            wake_driver: Notify::new(),
            depth: AtomicUsize::new(0),
            provider_kind,
        })
    }

    /// Calls waiting for a token now.
    pub(super) fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// The provider throttled a call: spend what the bucket has saved, so
    /// that the calls queued behind it wait for new tokens instead of
    /// rushing into the same limit.
    pub(super) fn throttled(&self) {
        let mut state = self.lock();
        let now = Instant::now();
        state.provider.refill(now);
        state.provider.drain();
    }

    /// Waits for a token for a call on `root` at `priority`, until
    /// `deadline`.
    pub(super) async fn acquire(
        self: &Arc<Self>,
        root: &KeyRef,
        priority: Priority,
        deadline: Instant,
    ) -> crate::Result<Wait> {
        let started = Instant::now();
        let receiver = {
            let mut state = self.lock();
            let now = Instant::now();
            // The fast path: nobody waits and both buckets have a token.
            if state.nobody_waits() {
                state.provider.refill(now);
                if state.provider.has_token() && state.root_has_token(&self.limits, root, now) {
                    state.provider.take();
                    state.take_root(root);
                    return Ok(Wait::Granted(Duration::ZERO));
                }
            }
            let (grant, receiver) = oneshot::channel();
            let seq = state.next_seq;
            state.next_seq += 1;
            state.queues[priority.rank()].push_back(Waiter {
                seq,
                root: root.clone(),
                priority,
                since: now,
                grant,
            });
            self.set_depth(self.depth.fetch_add(1, Ordering::Relaxed) + 1);
            state.pass(&self.limits, now);
            self.schedule_driver(&mut state, now)?;
            receiver
        };
        let _depth = DepthGuard(self);
        let mut receiver = receiver;
        match tokio::time::timeout_at(deadline, &mut receiver).await {
            Ok(Ok(())) => Ok(Wait::Granted(started.elapsed())),
            // The scheduler never drops a live waiter's sender without a
            // grant, except when the whole budget is dropped.
            Ok(Err(_)) => Ok(Wait::TimedOut),
            Err(_) => match receiver.try_recv() {
                // Granted just as the deadline passed: use it.
                Ok(()) => Ok(Wait::Granted(started.elapsed())),
                Err(_) => Ok(Wait::TimedOut),
            },
        }
    }

    /// Makes sure the driver runs and wakes up in time for the next token.
    fn schedule_driver(self: &Arc<Self>, state: &mut State, now: Instant) -> crate::Result<()> {
        let Some(wake) = state.next_wake(&self.limits, now) else {
            return Ok(());
        };
        match state.driver_wake {
            Some(current) if current <= wake => {}
            Some(_) => {
                state.driver_wake = Some(wake);
                self.wake_driver.notify_one();
            }
            None => {
                let handle = tokio::runtime::Handle::try_current().map_err(|_| {
                    crate::Error::misuse(
                        "a call budget that has to queue a call needs a tokio runtime",
                    )
                })?;
                state.driver_wake = Some(wake);
                let me = Arc::clone(self);
                handle.spawn(async move { me.drive().await });
            }
        }
        Ok(())
    }

    /// Grants tokens as they come while calls wait; ends when none waits.
    async fn drive(self: Arc<Self>) {
        // If the task is dropped (its runtime shut down), the next waiter
        // must start another driver rather than count on this one.
        struct Stopped<'a>(&'a Scheduler);
        impl Drop for Stopped<'_> {
            fn drop(&mut self) {
                self.0.lock().driver_wake = None;
            }
        }
        let _stopped = Stopped(&self);
        loop {
            let wake = {
                let mut state = self.lock();
                let now = Instant::now();
                state.pass(&self.limits, now);
                match state.next_wake(&self.limits, now) {
                    Some(wake) => {
                        state.driver_wake = Some(wake);
                        wake
                    }
                    None => {
                        state.driver_wake = None;
                        return;
                    }
                }
            };
            // Until the next token is due, or a new waiter needs a look
            // sooner.
            let _ = tokio::time::timeout_at(wake, self.wake_driver.notified()).await;
        }
    }

    fn set_depth(&self, depth: usize) {
        metrics::gauge!(crate::metrics::BUDGET_QUEUE_DEPTH, "provider" => self.provider_kind.clone())
            .set(depth as f64);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Counts a waiting call out of the queue depth however its wait ends
/// (granted, timed out, or abandoned by its caller).
struct DepthGuard<'a>(&'a Scheduler);

impl Drop for DepthGuard<'_> {
    fn drop(&mut self) {
        let depth = self.0.depth.fetch_sub(1, Ordering::Relaxed) - 1;
        self.0.set_depth(depth);
    }
}

impl State {
    fn nobody_waits(&self) -> bool {
        self.queues.iter().all(VecDeque::is_empty) && self.parked.is_empty()
    }

    fn root_has_token(&mut self, limits: &Limits, root: &KeyRef, now: Instant) -> bool {
        let Some((rate, burst)) = limits.root else {
            return true;
        };
        if self.roots.len() > self.sweep_at {
            // A full bucket is the same as a new one: forget those.
            for bucket in self.roots.values_mut() {
                bucket.refill(now);
            }
            self.roots.retain(|_, b| !b.is_full());
            self.sweep_at = (self.roots.len() * 2).max(ROOT_BUCKETS_KEPT);
        }
        let bucket = self
            .roots
            .entry(root.clone())
            .or_insert_with(|| Bucket::new(rate, burst, now));
        bucket.refill(now);
        bucket.has_token()
    }

    fn take_root(&mut self, root: &KeyRef) {
        if let Some(bucket) = self.roots.get_mut(root) {
            bucket.take();
        }
    }

    /// The rank a waiter competes at: its priority's, raised one level for
    /// every `aging` it has waited, so that no priority waits forever.
    fn rank(limits: &Limits, waiter: &Waiter, now: Instant) -> usize {
        let waited = now.saturating_duration_since(waiter.since);
        let steps = if limits.aging.is_zero() {
            0
        } else {
            (waited.as_nanos() / limits.aging.as_nanos()).min(usize::MAX as u128) as usize
        };
        waiter.priority.rank().saturating_sub(steps)
    }

    /// Grants the tokens there are to the waiters first in line.
    fn pass(&mut self, limits: &Limits, now: Instant) {
        self.provider.refill(now);
        if !self.provider.has_token() || self.nobody_waits() {
            return;
        }
        let mut heap: BinaryHeap<Reverse<(usize, u64, Source)>> = BinaryHeap::new();
        for (i, queue) in self.queues.iter().enumerate() {
            if let Some(w) = queue.front() {
                heap.push(Reverse((
                    Self::rank(limits, w, now),
                    w.seq,
                    Source::Queue(i),
                )));
            }
        }
        let parked: Vec<KeyRef> = self.parked.keys().cloned().collect();
        for root in parked {
            if self.root_has_token(limits, &root, now) {
                if let Some(w) = self.parked.get(&root).and_then(VecDeque::front) {
                    heap.push(Reverse((
                        Self::rank(limits, w, now),
                        w.seq,
                        Source::Parked(root),
                    )));
                }
            }
        }
        while self.provider.has_token() {
            let Some(Reverse((_, _, source))) = heap.pop() else {
                break;
            };
            match source {
                Source::Queue(i) => {
                    let Some(waiter) = self.queues[i].pop_front() else {
                        continue;
                    };
                    if !waiter.grant.is_closed() {
                        let root = waiter.root.clone();
                        if self.root_has_token(limits, &root, now) {
                            self.grant(waiter);
                        } else {
                            // Its root is at its own limit: it waits there,
                            // and calls on other roots go ahead.
                            self.parked.entry(root).or_default().push_back(waiter);
                        }
                    }
                    if let Some(w) = self.queues[i].front() {
                        heap.push(Reverse((
                            Self::rank(limits, w, now),
                            w.seq,
                            Source::Queue(i),
                        )));
                    }
                }
                Source::Parked(root) => {
                    let Some(queue) = self.parked.get_mut(&root) else {
                        continue;
                    };
                    let Some(waiter) = queue.pop_front() else {
                        self.parked.remove(&root);
                        continue;
                    };
                    if !waiter.grant.is_closed() {
                        if self.root_has_token(limits, &root, now) {
                            self.grant(waiter);
                        } else {
                            if let Some(queue) = self.parked.get_mut(&root) {
                                queue.push_front(waiter);
                            }
                            continue;
                        }
                    }
                    let more = self.parked.get(&root).is_some_and(|q| !q.is_empty());
                    if !more {
                        self.parked.remove(&root);
                    } else if self.root_has_token(limits, &root, now) {
                        if let Some(w) = self.parked.get(&root).and_then(VecDeque::front) {
                            heap.push(Reverse((
                                Self::rank(limits, w, now),
                                w.seq,
                                Source::Parked(root),
                            )));
                        }
                    }
                }
            }
        }
        // Waiters that gave up are dropped from the front of each queue, so
        // that an abandoned queue does not keep the driver awake.
        for queue in &mut self.queues {
            while queue.front().is_some_and(|w| w.grant.is_closed()) {
                queue.pop_front();
            }
        }
        self.parked.retain(|_, queue| {
            queue.retain(|w| !w.grant.is_closed());
            !queue.is_empty()
        });
    }

    fn grant(&mut self, waiter: Waiter) {
        // A waiter that gave up between the check and here costs nothing:
        // the send fails and the tokens stay.
        if waiter.grant.send(()).is_ok() {
            self.provider.take();
            self.take_root(&waiter.root);
        }
    }

    /// When the next waiter can be served; `None` if nobody waits.
    fn next_wake(&mut self, limits: &Limits, now: Instant) -> Option<Instant> {
        let queued = self.queues.iter().any(|q| !q.is_empty());
        if !queued && self.parked.is_empty() {
            return None;
        }
        let provider = self.provider.time_to_token();
        let mut wait = if queued { provider } else { Duration::MAX };
        for root in self.parked.keys() {
            match self.roots.get_mut(root) {
                Some(bucket) if limits.root.is_some() => {
                    bucket.refill(now);
                    wait = wait.min(provider.max(bucket.time_to_token()));
                }
                _ => wait = wait.min(provider),
            }
        }
        // At least a millisecond apart, so that rounding never spins.
        Some(now + wait.max(Duration::from_millis(1)))
    }
}
