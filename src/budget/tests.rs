//! The budget on the mock provider, in tokio's paused time: priorities
//! under contention, aging, per-key limits, backoff on throttling, the
//! bounded wait, coalescing and the queue depth.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::testing::{Fault, MockProvider, Operation};
use crate::ErrorKind;

fn ctx(zone: &str) -> EncryptionContext {
    EncryptionContext::new().with("zone", zone)
}

/// A mock with one key, behind a budget of `config`.
fn setup(config: BudgetConfig) -> (Arc<MockProvider>, Arc<BudgetedProvider>, KeyRef) {
    let mock = Arc::new(MockProvider::new());
    let root = mock.add_key("root");
    let budget = BudgetedProvider::new(mock.clone(), config);
    (mock, budget, root)
}

/// One call a second, no saved calls, no aging unless asked.
fn slow(aging: Duration) -> BudgetConfig {
    BudgetConfig {
        calls_per_second: 1.0,
        burst: 1,
        per_root: None,
        aging,
        max_wait: Duration::from_secs(3600),
        ..BudgetConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn opens_go_before_checks_and_checks_before_administration() {
    let (mock, budget, root) = setup(slow(Duration::ZERO));
    let (_, wrapped) = mock.generate_key(&root, &ctx("z")).await.unwrap();
    // Spend the one saved call, so that every call below queues.
    budget.describe_key(&root).await.unwrap();

    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    // Arrival order: administration, checks, opens.
    for (i, priority) in [Priority::Admin, Priority::Check, Priority::Open]
        .into_iter()
        .enumerate()
    {
        for n in 0..3 {
            let (budget, root, wrapped, order) =
                (budget.clone(), root.clone(), wrapped.clone(), order.clone());
            tasks.push(tokio::spawn(with_priority(priority, async move {
                // Distinct contexts (and keys) so no two unwraps coalesce.
                match priority {
                    Priority::Open => {
                        let _ = budget.unwrap_key(&root, &wrapped, &ctx("z")).await;
                    }
                    _ => {
                        budget.describe_key(&root).await.unwrap();
                    }
                }
                order.lock().unwrap().push((priority, i * 3 + n));
            })));
            // Let it queue before the next one arrives.
            tokio::task::yield_now().await;
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let order: Vec<Priority> = order.lock().unwrap().iter().map(|(p, _)| *p).collect();
    // The three opens coalesce into one call: it goes first, whatever
    // arrived before it.
    assert_eq!(order[..3], [Priority::Open; 3], "{order:?}");
    assert_eq!(order[3..6], [Priority::Check; 3], "{order:?}");
    assert_eq!(order[6..], [Priority::Admin; 3], "{order:?}");
}

#[tokio::test(start_paused = true)]
async fn calls_outside_a_scope_take_their_operations_priority() {
    let (mock, budget, root) = setup(slow(Duration::ZERO));
    let (_, wrapped) = mock.generate_key(&root, &ctx("z")).await.unwrap();
    budget.describe_key(&root).await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let wrap = {
        let (budget, root, order) = (budget.clone(), root.clone(), order.clone());
        tokio::spawn(async move {
            let key = SecretKey::generate().unwrap();
            budget.wrap_key(&root, &key, &ctx("w")).await.unwrap();
            order.lock().unwrap().push("wrap");
        })
    };
    tokio::task::yield_now().await;
    let describe = {
        let (budget, root, order) = (budget.clone(), root.clone(), order.clone());
        tokio::spawn(async move {
            budget.describe_key(&root).await.unwrap();
            order.lock().unwrap().push("describe");
        })
    };
    tokio::task::yield_now().await;
    let unwrap = {
        let (budget, root, order) = (budget.clone(), root.clone(), order.clone());
        tokio::spawn(async move {
            budget.unwrap_key(&root, &wrapped, &ctx("z")).await.unwrap();
            order.lock().unwrap().push("unwrap");
        })
    };
    for t in [wrap, describe, unwrap] {
        t.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), ["unwrap", "describe", "wrap"]);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_call_rises_with_age_so_none_starves() {
    let aging = Duration::from_secs(2);
    let (_mock, budget, root) = setup(slow(aging));
    budget.describe_key(&root).await.unwrap();
    let start = Instant::now();
    let admin = {
        let (budget, root) = (budget.clone(), root.clone());
        tokio::spawn(with_priority(Priority::Admin, async move {
            budget.describe_key(&root).await.unwrap();
            start.elapsed()
        }))
    };
    tokio::task::yield_now().await;
    // A flood of opens, far more than the budget serves in the test.
    let mut opens = Vec::new();
    for _ in 0..50 {
        let (budget, root) = (budget.clone(), root.clone());
        opens.push(tokio::spawn(with_priority(Priority::Open, async move {
            budget.describe_key(&root).await.unwrap();
        })));
    }
    let waited = admin.await.unwrap();
    // Two aging steps make it an open, and it arrived before all of them:
    // it goes at the first token after that, not after the flood.
    assert!(waited <= 2 * aging + Duration::from_secs(1), "{waited:?}");
    assert!(
        waited >= 2 * aging,
        "it jumped the queue at once: {waited:?}"
    );
    let served = opens.iter().filter(|t| t.is_finished()).count();
    assert!(
        served < 50,
        "the administration call waited for the whole flood"
    );
    for t in opens {
        t.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn a_key_at_its_own_limit_does_not_hold_up_other_keys() {
    let config = BudgetConfig {
        calls_per_second: 100.0,
        burst: 100,
        per_root: Some((1.0, 1)),
        max_wait: Duration::from_secs(60),
        ..BudgetConfig::default()
    };
    let (mock, budget, a) = setup(config);
    let b = mock.add_key("other");
    let start = Instant::now();
    budget.describe_key(&a).await.unwrap();
    let second_a = {
        let (budget, a) = (budget.clone(), a.clone());
        tokio::spawn(async move {
            budget.describe_key(&a).await.unwrap();
            start.elapsed()
        })
    };
    tokio::task::yield_now().await;
    budget.describe_key(&b).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO, "key b waited behind key a");
    let waited = second_a.await.unwrap();
    assert!(waited >= Duration::from_millis(999), "{waited:?}");
    assert!(waited <= Duration::from_millis(1100), "{waited:?}");
    assert_eq!(mock.calls(Operation::Describe), 3);
}

#[tokio::test(start_paused = true)]
async fn throttling_is_retried_with_backoff_and_never_reaches_the_caller() {
    let (mock, budget, root) = setup(BudgetConfig::default());
    let (ezk, wrapped) = mock.generate_key(&root, &ctx("z")).await.unwrap();
    mock.inject_fault(Fault::Throttled, Some(Operation::Unwrap), Some(4));
    let start = Instant::now();
    let back = budget.unwrap_key(&root, &wrapped, &ctx("z")).await.unwrap();
    assert_eq!(back, ezk);
    assert_eq!(mock.calls(Operation::Unwrap), 5);
    // Four pauses, each at most 100, 200, 400, 800 ms: at most 1.5 s in
    // all, and jitter makes any of them as short as zero.
    assert!(
        start.elapsed() <= Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_throttle_spends_the_saved_calls_of_everyone() {
    let config = BudgetConfig {
        calls_per_second: 10.0,
        burst: 10,
        per_root: None,
        ..BudgetConfig::default()
    };
    let (mock, budget, root) = setup(config);
    mock.inject_fault(Fault::Throttled, Some(Operation::Describe), Some(1));
    budget.describe_key(&root).await.unwrap();
    // The bucket had nine calls left; the throttle emptied it, so the next
    // call waits for a new token instead of going at once.
    let start = Instant::now();
    budget.describe_key(&root).await.unwrap();
    assert!(start.elapsed() > Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_wait_past_max_wait_is_a_typed_transient_error() {
    // Throttled for good: the call gives up at max_wait with the count.
    let config = BudgetConfig {
        max_wait: Duration::from_secs(10),
        ..BudgetConfig::default()
    };
    let (mock, budget, root) = setup(config);
    mock.inject_fault(Fault::Throttled, Some(Operation::Describe), None);
    let start = Instant::now();
    let err = budget.describe_key(&root).await.unwrap_err();
    assert!(
        start.elapsed() <= Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    match &err {
        Error::BudgetExhausted {
            provider,
            priority,
            throttled,
            ..
        } => {
            assert_eq!(provider, "mock");
            assert_eq!(*priority, Priority::Check);
            assert!(*throttled >= 3, "{throttled}");
        }
        other => panic!("expected BudgetExhausted, got {other}"),
    }
    assert_eq!(err.kind(), ErrorKind::Retry);
    mock.clear_faults();

    // Queued behind a budget that cannot serve it in time.
    let config = BudgetConfig {
        max_wait: Duration::from_millis(500),
        ..slow(Duration::ZERO)
    };
    let (mock, budget, root) = setup(config);
    budget.describe_key(&root).await.unwrap();
    let start = Instant::now();
    let err = budget.describe_key(&root).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(500));
    assert!(
        matches!(err, Error::BudgetExhausted { throttled: 0, .. }),
        "{err}"
    );
    assert_eq!(
        mock.calls(Operation::Describe),
        1,
        "the timed-out call was made"
    );
    assert_eq!(budget.queue_depth(), 0);
    // The token it did not get is still there for the next call.
    tokio::time::sleep(Duration::from_millis(500)).await;
    budget.describe_key(&root).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn other_errors_are_not_retried() {
    let (mock, budget, root) = setup(BudgetConfig::default());
    mock.inject_fault(Fault::Unreachable, Some(Operation::Wrap), Some(1));
    let key = SecretKey::generate().unwrap();
    let err = budget.wrap_key(&root, &key, &ctx("z")).await.unwrap_err();
    assert!(matches!(err, Error::ProviderUnreachable { .. }), "{err}");
    mock.inject_fault(Fault::AccessDenied, Some(Operation::Wrap), Some(1));
    let err = budget.wrap_key(&root, &key, &ctx("z")).await.unwrap_err();
    assert!(matches!(err, Error::AccessDenied { .. }), "{err}");
    assert_eq!(mock.calls(Operation::Wrap), 2);
}

#[tokio::test(start_paused = true)]
async fn identical_unwraps_in_flight_share_one_call() {
    let (mock, budget, root) = setup(BudgetConfig::default());
    mock.set_latency(Duration::from_millis(20));
    let (ezk, wrapped) = mock.generate_key(&root, &ctx("z")).await.unwrap();
    let (_, other) = mock.generate_key(&root, &ctx("y")).await.unwrap();
    mock.reset_calls();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (budget, root) = (budget.clone(), root.clone());
        let (wrapped, zone) = if i % 4 == 0 {
            (other.clone(), "y")
        } else {
            (wrapped.clone(), "z")
        };
        tasks.push(tokio::spawn(async move {
            budget.unwrap_key(&root, &wrapped, &ctx(zone)).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let key = t.await.unwrap().unwrap();
        if i % 4 != 0 {
            assert_eq!(key, ezk);
        }
    }
    // One call per distinct (root, wrap, context).
    assert_eq!(mock.calls(Operation::Unwrap), 2);
    assert_eq!(budget.flights.len(), 0);

    // The same wrap with another context is another call (and fails).
    let err = budget
        .unwrap_key(&root, &wrapped, &ctx("elsewhere"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert_eq!(mock.calls(Operation::Unwrap), 3);
}

#[tokio::test(start_paused = true)]
async fn a_shared_failure_reaches_every_caller_with_its_kind() {
    let (mock, budget, root) = setup(BudgetConfig::default());
    mock.set_latency(Duration::from_millis(20));
    let (_, wrapped) = mock.generate_key(&root, &ctx("z")).await.unwrap();
    mock.disable_key("root");
    mock.reset_calls();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (budget, root, wrapped) = (budget.clone(), root.clone(), wrapped.clone());
            tokio::spawn(async move { budget.unwrap_key(&root, &wrapped, &ctx("z")).await })
        })
        .collect();
    for t in tasks {
        let err = t.await.unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                Error::KeyUnavailable {
                    state: KeyState::Disabled,
                    ..
                }
            ),
            "{err}"
        );
    }
    assert_eq!(mock.calls(Operation::Unwrap), 1);
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_gives_up_hands_over_to_a_waiter() {
    let (mock, budget, root) = setup(BudgetConfig::default());
    mock.set_latency(Duration::from_millis(100));
    let (ezk, wrapped) = mock.generate_key(&root, &ctx("z")).await.unwrap();
    mock.reset_calls();
    let leader = {
        let (budget, root, wrapped) = (budget.clone(), root.clone(), wrapped.clone());
        tokio::spawn(async move { budget.unwrap_key(&root, &wrapped, &ctx("z")).await })
    };
    tokio::task::yield_now().await;
    let follower = {
        let (budget, root, wrapped) = (budget.clone(), root.clone(), wrapped.clone());
        tokio::spawn(async move { budget.unwrap_key(&root, &wrapped, &ctx("z")).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    leader.abort();
    assert_eq!(follower.await.unwrap().unwrap(), ezk);
    assert_eq!(mock.calls(Operation::Unwrap), 2);
}

#[tokio::test(start_paused = true)]
async fn the_queue_depth_counts_waiting_calls() {
    let (_mock, budget, root) = setup(slow(Duration::ZERO));
    assert_eq!(budget.queue_depth(), 0);
    budget.describe_key(&root).await.unwrap();
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let (budget, root) = (budget.clone(), root.clone());
            tokio::spawn(async move { budget.describe_key(&root).await })
        })
        .collect();
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    assert_eq!(budget.queue_depth(), 5);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(budget.queue_depth(), 3);
    // Callers that give up leave the queue.
    for t in &tasks {
        t.abort();
    }
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    assert_eq!(budget.queue_depth(), 0);
}

#[test]
fn jitter_stays_within_its_bound() {
    for _ in 0..100 {
        assert!(jitter(Duration::from_millis(10)) <= Duration::from_millis(10));
    }
    assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
}

#[test]
fn out_of_range_settings_are_clamped() {
    let limits = BudgetConfig {
        calls_per_second: f64::NAN,
        burst: 0,
        per_root: Some((-1.0, 0)),
        ..BudgetConfig::default()
    }
    .limits();
    assert_eq!(limits.rate, 1.0);
    assert_eq!(limits.burst, 1.0);
    assert_eq!(limits.root, Some((1.0, 1.0)));
}

#[tokio::test(start_paused = true)]
async fn a_restart_storm_is_served_without_errors() {
    // 20,000 opens over 2,000 keys at 1,000 calls a second, with the
    // provider throttling now and then: every call succeeds, none sees
    // `Throttled`, and the whole storm takes about 20 s of (paused) time.
    let config = BudgetConfig {
        calls_per_second: 1000.0,
        burst: 100,
        per_root: Some((20.0, 20)),
        max_wait: Duration::from_secs(120),
        ..BudgetConfig::default()
    };
    let mock = Arc::new(MockProvider::new());
    let keys: Vec<KeyRef> = (0..2000).map(|i| mock.add_key(&format!("k{i}"))).collect();
    let budget = BudgetedProvider::new(mock.clone(), config);
    mock.inject_fault(Fault::Throttled, Some(Operation::Describe), Some(50));
    let start = Instant::now();
    let tasks: Vec<_> = (0..20_000)
        .map(|i| {
            let (budget, key) = (budget.clone(), keys[i % keys.len()].clone());
            tokio::spawn(with_priority(Priority::Open, async move {
                budget.describe_key(&key).await
            }))
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(19), "{took:?}");
    assert!(took <= Duration::from_secs(25), "{took:?}");
    assert_eq!(mock.calls(Operation::Describe), 20_050);
    assert_eq!(budget.queue_depth(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_validation_goes_at_administration_priority() {
    let (_mock, budget, root) = setup(slow(Duration::ZERO));
    budget.describe_key(&root).await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let validation = {
        let (budget, root, order) = (budget.clone(), root.clone(), order.clone());
        tokio::spawn(async move {
            let report = budget.validate_key(&root).await;
            order.lock().unwrap().push("validation");
            report
        })
    };
    tokio::task::yield_now().await;
    let check = {
        let (budget, root, order) = (budget.clone(), root.clone(), order.clone());
        tokio::spawn(async move {
            budget.describe_key(&root).await.unwrap();
            order.lock().unwrap().push("check");
        })
    };
    check.await.unwrap();
    assert!(validation.await.unwrap().is_valid());
    assert_eq!(*order.lock().unwrap(), ["check", "validation"]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn waits_depth_throttles_and_coalescing_are_recorded() {
    let recorded = crate::metrics::test_recorder::Recorded::default();
    let _guard = metrics::set_default_local_recorder(&recorded);
    let (mock, budget, root) = setup(slow(Duration::ZERO));
    mock.set_latency(Duration::from_millis(10));
    let (_, wrapped) = mock.generate_key(&root, &ctx("z")).await.unwrap();
    budget.describe_key(&root).await.unwrap();
    // Three identical unwraps queue behind the spent bucket and share a call.
    let context = ctx("z");
    let unwraps = (0..3).map(|_| budget.unwrap_key(&root, &wrapped, &context));
    let depth_seen = async {
        tokio::task::yield_now().await;
        recorded.gauge("cmek_budget_queue_depth{provider=mock}")
    };
    let (results, depth) = tokio::join!(futures_util::future::join_all(unwraps), depth_seen);
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(depth, 1.0, "one call waits; the other two wait on it");
    assert_eq!(
        recorded.gauge("cmek_budget_queue_depth{provider=mock}"),
        0.0
    );
    assert_eq!(
        recorded.counter("cmek_budget_coalesced_unwraps_total{provider=mock}"),
        2
    );
    assert_eq!(
        recorded.samples("cmek_budget_wait_seconds{provider=mock,priority=open}"),
        1
    );
    mock.inject_fault(Fault::Throttled, Some(Operation::Describe), Some(2));
    budget.describe_key(&root).await.unwrap();
    assert_eq!(
        recorded.counter("cmek_budget_throttled_retries_total{provider=mock,operation=describe}"),
        2
    );
    // Labels never name a key.
    assert!(recorded.names().iter().all(|n| !n.contains("root")));
}

#[test]
fn a_budget_outlives_the_runtime_that_drove_it() {
    let (_mock, budget, root) = setup(BudgetConfig {
        max_wait: Duration::from_secs(5),
        ..slow(Duration::ZERO)
    });
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    };
    // The first runtime leaves a call queued (its driver asleep) and ends.
    runtime().block_on(async {
        budget.describe_key(&root).await.unwrap();
        let (b, r) = (budget.clone(), root.clone());
        tokio::spawn(async move { b.describe_key(&r).await });
        tokio::task::yield_now().await;
    });
    // The next runtime's calls are still served.
    runtime().block_on(async {
        budget.describe_key(&root).await.unwrap();
        budget.describe_key(&root).await.unwrap();
    });
}
