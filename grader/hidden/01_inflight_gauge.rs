//! Hidden tests for kata 01: the in-flight gauge must come down however `forward` ends (return,
//! backend panic, cancellation, in any order among concurrent requests), a full gateway sheds on
//! the first poll (also when the requests were all created before any was polled, and however
//! busy the handler's task is), the backend's own panic comes out of `forward`, the backend call
//! must stop when the client leaves, and clones of a gateway share one gauge and one limit.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use futures::FutureExt;
use inflight_gauge::{Gateway, Shed};
use kata_support::{DropFlag, Gate, Outcome, assert_cancel_safe, check_property, hidden_test};
use proptest::prelude::*;
use tokio_test::{assert_pending, task};

/// Several requests in flight at once, and the order in which they end: each index is a request,
/// `true` means its backend answers, `false` means its client leaves.
fn endings() -> impl Strategy<Value = Vec<(usize, bool)>> {
    (2usize..=5).prop_flat_map(|n| {
        (Just((0..n).collect::<Vec<_>>()).prop_shuffle(), prop::collection::vec(any::<bool>(), n))
            .prop_map(|(order, answers)| order.into_iter().zip(answers).collect())
    })
}

/// Requests created together before any of them is polled (as `join!` or a `FuturesUnordered`
/// filled up front does): the gateway's limit, how many requests exceed it, and the order in
/// which the requests are first polled.
fn built_before_polled() -> impl Strategy<Value = (usize, Vec<usize>)> {
    (1usize..=4, 1usize..=3).prop_flat_map(|(limit, extra)| {
        (Just(limit), Just((0..limit + extra).collect::<Vec<_>>()).prop_shuffle())
    })
}

/// One step of a session in which every handler holds its own clone of one gateway (as a handler
/// spawned with `tokio::spawn` must): clone one of the handles, send a request through one, or
/// end one of the requests in flight (`true`: its backend answers; `false`: its client leaves).
#[derive(Debug, Clone)]
enum CloneStep {
    Clone(prop::sample::Index),
    Request(prop::sample::Index),
    End(prop::sample::Index, bool),
}

/// The gateway's limit, how many clones the handlers make before any request (each a clone of
/// the one before, so clones of clones too), and the steps that follow.
fn clone_sessions() -> impl Strategy<Value = (usize, usize, Vec<CloneStep>)> {
    let step = prop_oneof![
        1 => any::<prop::sample::Index>().prop_map(CloneStep::Clone),
        3 => any::<prop::sample::Index>().prop_map(CloneStep::Request),
        2 => (any::<prop::sample::Index>(), any::<bool>()).prop_map(|(i, a)| CloneStep::End(i, a)),
    ];
    (1usize..=3, 1usize..=3, prop::collection::vec(step, 1..16))
}

/// One step of a session in which handlers create requests and poll them later (a handler that
/// creates its request, then awaits the client's body or another future before polling it): create
/// a request, give one of the created requests its first poll, let one that waits at the backend be
/// answered, or drop one (its client leaves), whether it was ever polled or not.
#[derive(Debug, Clone)]
enum LaterStep {
    Create,
    Poll(prop::sample::Index),
    Answer(prop::sample::Index),
    Drop(prop::sample::Index),
}

/// The gateway's limit and the steps of a created-then-polled-later session.
fn created_then_polled_later() -> impl Strategy<Value = (usize, Vec<LaterStep>)> {
    let step = prop_oneof![
        3 => Just(LaterStep::Create),
        3 => any::<prop::sample::Index>().prop_map(LaterStep::Poll),
        1 => any::<prop::sample::Index>().prop_map(LaterStep::Answer),
        2 => any::<prop::sample::Index>().prop_map(LaterStep::Drop),
    ];
    (1usize..=3, prop::collection::vec(step, 1..24))
}

/// How many handles (the gateway and its clones) a clone session may hold.
const MAX_HANDLES: usize = 6;

/// Says what a gauge reading that should be `expected` shows: requests still counted, or a gauge
/// lowered more times than it was raised (an `AtomicUsize` that went below zero wraps around).
fn describe_gauge(seen: usize, expected: usize) -> String {
    if seen > usize::MAX / 2 && usize::MAX - seen >= 1 << 20 {
        // No test raises or lowers the gauge more than a few hundred thousand times.
        format!(
            "but the gauge reads {seen} (expected {expected}): no test raises or lowers it more \
             than a few hundred thousand times, so that reading is not a count of requests in \
             flight, nor of a gauge lowered too often; `in_flight` must say how many requests \
             are in flight, whatever the limit"
        )
    } else if seen > usize::MAX / 2 {
        let below = usize::MAX - seen + 1;
        format!(
            "but the gauge went below zero (it reads {seen}, that is {below} under 0; expected \
             {expected}): it was lowered more times than it was raised"
        )
    } else if seen > expected {
        format!(
            "but the gauge still counts {} request(s) too many (it reads {seen}, expected \
             {expected}): it was not lowered for a request that ended",
            seen - expected
        )
    } else {
        format!(
            "but the gauge reads {seen} (expected {expected}): {} request(s) still waiting are \
             not counted",
            expected - seen
        )
    }
}

/// A typed panic payload, as a backend client might throw with `std::panic::panic_any`.
#[derive(Debug, PartialEq)]
struct BackendBug(u32);

/// After a request at a full gateway answered `Pending` on its first poll: gives the scheduler a
/// turn, lets one request in flight end (if there is one), and polls the waiting request again.
/// Says what that showed, for the failure message.
async fn admit_late<A, B>(
    backends: &[Gate],
    in_flight: &mut [task::Spawn<A>],
    late: &mut task::Spawn<B>,
) -> String
where
    A: std::future::Future,
    B: std::future::Future<Output = Result<i32, Shed>>,
{
    tokio::task::yield_now().await;
    let (Some(backend), Some(first)) = (backends.first(), in_flight.first_mut()) else {
        return format!(
            " (after a turn of the scheduler, its next poll returned {:?})",
            late.poll()
        );
    };
    backend.open();
    if first.poll().is_pending() {
        return String::new();
    }
    match late.poll() {
        Poll::Ready(Ok(_)) => "; a request in flight then ended, and the next poll forwarded the \
                               waiting request late"
            .to_string(),
        again => format!(
            "; a request in flight then ended, and the next poll of the waiting request returned \
             {again:?}"
        ),
    }
}

/// Forwards `count` requests in a row through one gateway built with `limit`, each polled once,
/// all in one turn of the calling task, each answered by its backend at once: every one must be
/// answered on that poll, and the gauge read 0 after them. Call it inside a runtime.
fn forwards_in_a_row(limit: usize, count: usize) {
    let gateway = Gateway::new(limit);
    for n in 0..count {
        let response = task::spawn(gateway.forward(async move { n })).poll();
        assert!(
            response == Poll::Ready(Ok(n)),
            "a gateway built with limit {limit}: request {} of {count} that one handler forwarded \
             in a row, in one turn of its task, each answered by the backend at once before the \
             next began, returned {response:?} on its first poll, expected Ready(Ok({n})): a \
             gateway with room is not full, and a request whose backend has answered is \
             answered on that same poll, however many requests the handler has sent without \
             yielding",
            n + 1
        );
    }
    let gauge = gateway.in_flight();
    assert!(gauge == 0, "after {count} requests in a row, {}", describe_gauge(gauge, 0));
}

/// How many backend panics in a row the long-run test sends: the floor the exercise README states
/// (each costs an unwind, so panics stop sooner than the other endings).
const PANICS_IN_A_ROW: usize = 1 << 14;

/// How many requests abandoned at the backend, dropped before their first poll, or shed at a full
/// gateway the long-run test sends in a row: the floor the exercise README states.
const ENDINGS_IN_A_ROW: usize = 1 << 17;

/// How many requests in a row the long-run test lets wait ten minutes at the backend before their
/// clients leave: the floor the exercise README states (each costs a step of the paused clock, so
/// this run stops sooner).
const LATE_ABANDONS_IN_A_ROW: usize = 1 << 12;

/// A backend call that crashes with a typed payload, as a backend client's `panic_any` does.
fn crash(bug: BackendBug) -> i32 {
    std::panic::panic_any(bug)
}

/// After a run of one kind of ending (`run` says which), a request to a healthy backend through
/// `handle` of a gateway with every one of its `limit` slots free must be forwarded and answered
/// on its first poll, and the gauge read 0.
fn forwarded_after_a_run(handle: &Gateway, name: &str, limit: usize, run: &str) {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let reached = Arc::new(AtomicUsize::new(0));
    let calls = reached.clone();
    let request = std::pin::pin!(handle.forward(async move {
        calls.fetch_add(1, Ordering::SeqCst);
        200
    }));
    let answer = request.poll(&mut cx);
    assert!(
        answer == Poll::Ready(Ok(200)),
        "after {run}, a request to a healthy backend through {name} (a gateway with every one of \
         its {limit} slots free) returned {answer:?} on its first poll (it reached the backend: \
         {}), expected Ready(Ok(200)): `Shed` means that `limit` requests are in flight, nothing \
         else, so no run of crashed, abandoned or shed requests, however long, makes a gateway \
         with room shed (a gateway keeps no circuit breaker)",
        reached.load(Ordering::SeqCst) > 0
    );
    let gauge = handle.in_flight();
    assert!(gauge == 0, "after {run} and one answered request, {}", describe_gauge(gauge, 0));
}

hidden_test! {
    /// The gateway's handlers are tasks (`tokio::spawn`) on a multi-thread runtime, and each
    /// awaits `forward`: for a backend call that is `Send`, `forward`'s future must stay `Send`,
    /// as the original is.
    async fn forward_can_run_in_a_spawned_handler() {
        let gateway = Gateway::new(2);
        let forward = gateway.forward(async { "recommendations for bob" });
        assert!(
            kata_support::is_send!(forward),
            "the future returned by `forward` (for a backend call that is `Send`) is not `Send`, \
             so the gateway can no longer `tokio::spawn` a request's handler on its multi-thread \
             runtime: it holds something that is not `Send` across the `.await` (a drop guard \
             holding a `Box<dyn FnOnce()>` without `+ Send`, an `Rc`, a `Cell` or `RefCell` \
             borrowed by a guard, a `std` lock guard)"
        );
        assert_eq!(forward.await, Ok("recommendations for bob"));
        assert_eq!(gateway.in_flight(), 0, "after a completed request the gauge must read 0");
    }

    /// Nothing cancelled: the response comes back and the gauge returns to 0.
    async fn forwards_and_lowers_the_gauge() {
        let gateway = Gateway::new(2);
        let response = gateway.forward(async { "recommendations for alice" }).await;
        assert_eq!(response, Ok("recommendations for alice"));
        assert_eq!(gateway.in_flight(), 0, "after a completed request the gauge must read 0");
    }

    /// The ends of the limit's range. A gateway built with limit 0 (a backend being drained) sheds
    /// every request, on its first poll, without calling the backend; one built with
    /// `usize::MAX` ("no limit") is built without panicking and forwards.
    async fn the_limit_holds_at_both_ends_of_its_range() {
        let drained = Gateway::new(0);
        let called = Arc::new(AtomicUsize::new(0));
        let calls = called.clone();
        let mut request = task::spawn(drained.forward(async move {
            calls.fetch_add(1, Ordering::SeqCst);
        }));
        match request.poll() {
            Poll::Ready(Err(Shed)) => {}
            Poll::Ready(Ok(())) => panic!(
                "a gateway built with limit 0 (a backend being drained) forwarded a request: at \
                 most 0 requests may reach the backend, so every request must be shed"
            ),
            Poll::Pending => panic!(
                "a gateway built with limit 0 made a request wait instead of shedding it on its \
                 first poll"
            ),
        }
        drop(request);
        assert_eq!(
            called.load(Ordering::SeqCst),
            0,
            "a gateway built with limit 0 called the backend for a request it shed"
        );
        let gauge = drained.in_flight();
        assert!(gauge == 0, "after a request shed by a drained gateway, {}", describe_gauge(gauge, 0));

        let open = match std::panic::catch_unwind(|| Gateway::new(usize::MAX)) {
            Ok(gateway) => gateway,
            Err(payload) => {
                let why = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                panic!(
                    "`Gateway::new(usize::MAX)` (a gateway with no limit in practice) panicked \
                     ({why}): `new` takes any `usize` as the limit. (A `tokio::sync::Semaphore` \
                     holds at most `Semaphore::MAX_PERMITS` permits: clamp the limit to it.)"
                )
            }
        };
        let backend = Gate::closed();
        let held = backend.clone();
        let mut first = task::spawn(open.forward(async move { held.pass().await }));
        assert_pending!(first.poll());
        let gauge = open.in_flight();
        assert!(gauge == 1, "with no limit and one request waiting, {}", describe_gauge(gauge, 1));
        let second = open.forward(async { "cached page" }).await;
        assert_eq!(second, Ok("cached page"), "a gateway with no limit shed a request");
        backend.open();
        assert!(first.poll().is_ready());
        let gauge = open.in_flight();
        assert!(gauge == 0, "after every request ended, {}", describe_gauge(gauge, 0));
    }

    /// A gateway with room never sheds, however many requests one handler forwards in a row
    /// without ever waiting (a batch answered from a cache): room is a count, not a matter of how
    /// busy the task has been.
    async fn a_gateway_with_room_forwards_any_number_of_requests_in_a_row() {
        for limit in [1, 1000, usize::MAX] {
            forwards_in_a_row(limit, 300);
        }
    }

    /// Further out: 5000 requests in a row from one handler, past any count (1024, 4096) after
    /// which a gateway might give the runtime a turn of its own accord: each is still forwarded
    /// and answered on its first poll. (On one seed: the test above varies the seeds.)
    fn thousands_of_requests_in_a_row_are_each_answered_on_their_first_poll() {
        kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]).block_on(async {
            for limit in [1, usize::MAX] {
                forwards_in_a_row(limit, 5000);
            }
        });
    }

    /// Far out: a million requests in a row (2^20) from one handler through one gateway with
    /// limit 1, and 2^17 with no limit, past any count after which a gateway might give the
    /// runtime a turn of its own accord: each is forwarded and answered on its first poll. Each
    /// request is polled once with a no-op waker, inside the runtime (a `yield_now` would still
    /// show as `Pending`), so the test stays cheap.
    fn a_million_requests_in_a_row_are_each_answered_on_their_first_poll() {
        kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]).block_on(async {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            for (limit, count) in [(1, 1usize << 20), (usize::MAX, 1 << 17)] {
                let gateway = Gateway::new(limit);
                for n in 0..count {
                    let request = std::pin::pin!(gateway.forward(std::future::ready(n)));
                    let response = request.poll(&mut cx);
                    assert!(
                        response == Poll::Ready(Ok(n)),
                        "a gateway built with limit {limit}: request {} of {count} that one \
                         handler forwarded in a row, in one turn of its task, each answered by \
                         the backend at once before the next began, returned {response:?} on its \
                         first poll, expected Ready(Ok({n})): a request whose backend has \
                         answered is answered on that same poll, however many requests the \
                         handler has sent without yielding",
                        n + 1
                    );
                }
                let gauge = gateway.in_flight();
                assert!(gauge == 0, "after {count} requests in a row, {}", describe_gauge(gauge, 0));
            }
        });
    }

    /// A backend that streams a long answer wakes its request a million times (2^20) before it
    /// answers: the request keeps its slot through every one of those polls. Polled by hand with
    /// a no-op waker, so that the test stays cheap.
    fn a_request_woken_a_million_times_keeps_its_slot() {
        const WAKES: usize = 1 << 20;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let gateway = Gateway::new(1);
        let mut polls = 0;
        let mut request = Box::pin(gateway.forward(std::future::poll_fn(move |_| {
            polls += 1;
            if polls <= WAKES { Poll::Pending } else { Poll::Ready(200) }
        })));
        for _ in 0..WAKES {
            assert!(
                request.as_mut().poll(&mut cx).is_pending(),
                "the request finished before its backend answered"
            );
        }
        let gauge = gateway.in_flight();
        assert!(
            gauge == 1,
            "a request whose backend woke it {WAKES} times and has not answered yet is still in \
             flight, {}",
            describe_gauge(gauge, 1)
        );
        let mut late = Box::pin(gateway.forward(async { 200 }));
        let answer = late.as_mut().poll(&mut cx);
        assert!(
            answer == Poll::Ready(Err(Shed)),
            "a request holds the only slot (its backend has woken it {WAKES} times, with no \
             answer yet); one more request arrived and its first poll returned {answer:?}, \
             expected Ready(Err(Shed)): a request that waits long is slow, not gone"
        );
        drop(late);
        assert_eq!(request.as_mut().poll(&mut cx), Poll::Ready(Ok(200)), "the backend answered 200");
        drop(request);
        let gauge = gateway.in_flight();
        assert!(gauge == 0, "after the streamed request ended, {}", describe_gauge(gauge, 0));
    }

    /// No run of one kind of ending, however long, makes a gateway with room shed: backend panics
    /// (16,384 in a row), requests abandoned by their clients while they wait at the backend,
    /// requests dropped before their first poll, and requests shed at a full gateway (131,072 in
    /// a row each), and requests abandoned after ten minutes at the backend (4,096 in a row),
    /// through a gateway and its clone in turn. Every request of a run is checked as
    /// it ends (the backend's panic unwinds out of `forward`, an abandoned request was forwarded,
    /// a shed one reached no backend, the gauge is exact), so a breaker is caught when it trips;
    /// and after each run a request to a healthy backend is forwarded. Polled by hand with a no-op
    /// waker on one seed's runtime, the panic hook silenced while the backend crashes, so the
    /// test stays cheap.
    fn long_runs_of_one_kind_of_ending_never_make_a_gateway_with_room_shed() {
        kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]).block_on(async {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let limit = 4;
            let gateway = Gateway::new(limit);
            let clone = gateway.clone();
            let handles = [("the gateway", &gateway), ("its clone", &clone)];

            let run = format!("{ENDINGS_IN_A_ROW} requests in a row abandoned by their clients \
                               while they waited at the backend");
            for n in 0..ENDINGS_IN_A_ROW {
                let (name, handle) = handles[n % 2];
                let reached = Arc::new(AtomicUsize::new(0));
                let calls = reached.clone();
                let request = std::pin::pin!(handle.forward(async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await
                }));
                let answer = request.poll(&mut cx);
                assert!(
                    answer.is_pending() && reached.load(Ordering::SeqCst) > 0,
                    "request {} of a run of requests abandoned by their clients while they waited \
                     at the backend, sent through {name} (every one of the gateway's {limit} \
                     slots free), returned {answer:?} on its first poll (it reached the backend: \
                     {}), expected Pending (forwarded): a gateway with room forwards, however \
                     many clients left before (a slow backend is the caller's to judge; `Shed` \
                     means that `limit` requests are in flight)",
                    n + 1,
                    reached.load(Ordering::SeqCst) > 0
                );
                let gauge = handle.in_flight();
                let waits = describe_gauge(gauge, 1);
                assert!(gauge == 1, "request {} of {run} waits, {waits}", n + 1);
            }
            let gauge = gateway.in_flight();
            assert!(gauge == 0, "after {run}, {}", describe_gauge(gauge, 0));
            for (name, handle) in handles {
                forwarded_after_a_run(handle, name, limit, &run);
            }

            let run = format!(
                "{LATE_ABANDONS_IN_A_ROW} requests in a row abandoned by their clients after ten \
                 minutes at the backend"
            );
            for n in 0..LATE_ABANDONS_IN_A_ROW {
                let (name, handle) = handles[n % 2];
                let mut request = Box::pin(handle.forward(std::future::pending::<()>()));
                let first = request.as_mut().poll(&mut cx);
                tokio::time::advance(Duration::from_secs(600)).await;
                let later = request.as_mut().poll(&mut cx);
                assert!(
                    first.is_pending() && later.is_pending(),
                    "request {} of a run of requests abandoned by their clients after ten minutes \
                     at a slow backend, sent through {name} (every one of the gateway's {limit} \
                     slots free), returned {first:?} on its first poll and {later:?} ten \
                     minutes later, expected Pending both times (forwarded, still waiting): a \
                     gateway with room forwards, however many clients gave up on the backend \
                     before (a slow backend is the caller's to judge)",
                    n + 1
                );
            }
            let gauge = gateway.in_flight();
            assert!(gauge == 0, "after {run}, {}", describe_gauge(gauge, 0));
            for (name, handle) in handles {
                forwarded_after_a_run(handle, name, limit, &run);
            }

            let run = format!("{ENDINGS_IN_A_ROW} requests in a row dropped before their first \
                               poll (their clients left first)");
            for n in 0..ENDINGS_IN_A_ROW {
                drop(handles[n % 2].1.forward(std::future::pending::<()>()));
            }
            let gauge = gateway.in_flight();
            assert!(gauge == 0, "after {run}, {}", describe_gauge(gauge, 0));
            for (name, handle) in handles {
                forwarded_after_a_run(handle, name, limit, &run);
            }

            let run = format!("{PANICS_IN_A_ROW} backend panics in a row");
            // The backend's own panic messages would bury the test's: silence them for the run.
            let hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(|_| {}));
            let mut failure = None;
            for n in 0..PANICS_IN_A_ROW {
                let (name, handle) = handles[n % 2];
                let bug = BackendBug(u32::try_from(n).expect("a count of panics fits a u32"));
                let expected = format!("{bug:?}");
                let mut request = std::pin::pin!(handle.forward(async move { crash(bug) }));
                let polled =
                    std::panic::catch_unwind(AssertUnwindSafe(|| request.as_mut().poll(&mut cx)));
                let seen = match polled {
                    Err(payload) => match payload.downcast_ref::<BackendBug>() {
                        Some(bug) if format!("{bug:?}") == expected => None,
                        Some(bug) => Some(format!("unwound with the payload {bug:?}")),
                        None => Some("unwound with a panic that is not the backend's".to_string()),
                    },
                    Ok(answer) => Some(format!("returned {answer:?}")),
                };
                if let Some(seen) = seen {
                    failure = Some(format!(
                        "request {} of a run of requests in a row to a backend that panics (with \
                         {expected}) when first polled, sent through {name} (every one of the \
                         gateway's {limit} slots free), {seen} on its first poll instead of \
                         unwinding with the backend's panic: a crashed backend is not a full \
                         gateway, however many crashed before (a gateway keeps no circuit \
                         breaker; `Shed` means that `limit` requests are in flight)",
                        n + 1
                    ));
                    break;
                }
                let gauge = handle.in_flight();
                if gauge != 0 {
                    failure = Some(format!(
                        "request {} of {run} unwound, {}",
                        n + 1,
                        describe_gauge(gauge, 0)
                    ));
                    break;
                }
            }
            std::panic::set_hook(hook);
            if let Some(failure) = failure {
                panic!("{failure}");
            }
            for (name, handle) in handles {
                forwarded_after_a_run(handle, name, limit, &run);
            }

            // A full gateway sheds run after run, and has room again as soon as a slot frees.
            let full = Gateway::new(1);
            let full_clone = full.clone();
            let handles = [("the gateway", &full), ("its clone", &full_clone)];
            let mut holder = Box::pin(full.forward(std::future::pending::<()>()));
            assert!(
                holder.as_mut().poll(&mut cx).is_pending(),
                "a request at an idle gateway with limit 1 was not forwarded"
            );
            let run = format!("{ENDINGS_IN_A_ROW} requests in a row shed at a full gateway");
            for n in 0..ENDINGS_IN_A_ROW {
                let (name, handle) = handles[n % 2];
                let reached = Arc::new(AtomicUsize::new(0));
                let calls = reached.clone();
                let request = std::pin::pin!(handle.forward(async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    200
                }));
                let answer = request.poll(&mut cx);
                assert!(
                    answer == Poll::Ready(Err(Shed)) && !reached.load(Ordering::SeqCst) > 0,
                    "limit 1, one request waiting at the backend: request {} of a run of \
                     requests shed in a row, sent through {name}, returned {answer:?} on its \
                     first poll (it reached the backend: {}), expected Ready(Err(Shed)): the \
                     gateway is still full, however many requests were shed before (a long run \
                     of sheds is a slow backend, not a leaked gauge)",
                    n + 1,
                    reached.load(Ordering::SeqCst) > 0
                );
            }
            let gauge = full.in_flight();
            let waits = describe_gauge(gauge, 1);
            assert!(gauge == 1, "after {run}, one request still waits, {waits}");
            drop(holder);
            for (name, handle) in handles {
                let run = format!("{run}, and the one request in flight abandoned");
                forwarded_after_a_run(handle, name, 1, &run);
            }
        });
    }

    /// The far end of the limit's range, with requests at once rather than in a row: a gateway
    /// built with a large limit (100 000) takes exactly that many requests waiting together at a
    /// slow backend and sheds the next, and one built with `usize::MAX` ("no limit in practice")
    /// takes 140 000 waiting together and sheds none. A limit is not capped below what `new` was
    /// given (to a 16-bit metric, say). Each request is polled once with a no-op waker, so no
    /// runtime is needed and the test stays cheap.
    fn a_large_limit_is_the_limit_with_every_request_at_once() {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        for (limit, waiting) in [(100_000usize, 100_000usize), (usize::MAX, 140_000)] {
            let what = if limit == usize::MAX {
                "no limit (`usize::MAX`)".to_string()
            } else {
                format!("limit {limit}")
            };
            let gateway = Gateway::new(limit);
            let mut in_flight = Vec::with_capacity(waiting);
            for index in 0..waiting {
                let mut request = Box::pin(gateway.forward(std::future::pending::<()>()));
                match request.as_mut().poll(&mut cx) {
                    Poll::Pending => in_flight.push(request),
                    answer => panic!(
                        "a gateway built with {what} had {index} request(s) waiting at a slow \
                         backend, and the next request's first poll returned {answer:?}, expected \
                         Pending (forwarded): it has room for {} more, so it is not full. The \
                         limit is what `new` was given, however large (it is not capped)",
                        limit - index
                    ),
                }
            }
            let gauge = gateway.in_flight();
            assert!(
                gauge == waiting,
                "a gateway built with {what} has {waiting} requests waiting at a slow backend, {}",
                describe_gauge(gauge, waiting)
            );
            if limit == waiting {
                let mut late = Box::pin(gateway.forward(async { 200 }));
                let answer = late.as_mut().poll(&mut cx);
                assert!(
                    answer == Poll::Ready(Err(Shed)),
                    "a gateway built with {what} has {waiting} requests waiting at a slow backend, \
                     and one more request's first poll returned {answer:?}, expected \
                     Ready(Err(Shed)): at most `limit` requests may be forwarded at once"
                );
            }
            drop(in_flight);
            let gauge = gateway.in_flight();
            assert!(
                gauge == 0,
                "with {what}, after {waiting} requests waiting at once were abandoned by their \
                 clients, {}",
                describe_gauge(gauge, 0)
            );
        }
    }

    /// A limit is the number `new` was given, whatever its size: gateways built with limits just
    /// at and past the powers of two where narrower integers end (2^8, 2^16, 2^31, 2^32, 2^48,
    /// 2^63, each plus 0 to 3, and `usize::MAX - 1`) have room for far more than four requests, so
    /// four requests waiting at once are all forwarded. A limit of 2^32 + 1 is not a limit of 1.
    /// Each request is polled once with a no-op waker: the test costs a few hundred polls.
    fn a_limit_past_any_narrower_integer_is_still_the_limit() {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut limits = Vec::new();
        for bits in [8u32, 16, 31, 32, 48, 63] {
            for extra in 0..4u64 {
                if let Ok(limit) = usize::try_from((1u64 << bits) + extra) {
                    limits.push((limit, format!("2^{bits} + {extra}")));
                }
            }
        }
        limits.push((usize::MAX - 1, "usize::MAX - 1".to_string()));
        for (limit, written) in limits {
            let gateway = Gateway::new(limit);
            let mut in_flight = Vec::new();
            for index in 0..4 {
                let mut request = Box::pin(gateway.forward(std::future::pending::<()>()));
                match request.as_mut().poll(&mut cx) {
                    Poll::Pending => in_flight.push(request),
                    answer => panic!(
                        "a gateway built with limit {limit} ({written}) had {index} request(s) \
                         waiting at a slow backend, and the next request's first poll returned \
                         {answer:?}, expected Pending (forwarded): it has room for {} more, so it \
                         is not full. The limit is the number `new` was given, whatever its size",
                        limit - index
                    ),
                }
            }
            let gauge = gateway.in_flight();
            assert!(
                gauge == 4,
                "a gateway built with limit {limit} ({written}) has 4 requests waiting at a slow \
                 backend, {}",
                describe_gauge(gauge, 4)
            );
            drop(in_flight);
            let gauge = gateway.in_flight();
            assert!(
                gauge == 0,
                "with limit {limit} ({written}), after 4 requests waiting at once were abandoned \
                 by their clients, {}",
                describe_gauge(gauge, 0)
            );
        }
    }

    /// A slow backend is still a backend: requests that hold every slot for minutes, hours, a
    /// day, a year, thirty or a million (a paused clock makes that free) are still in flight, and polled
    /// again then, still waiting. A request arriving then is shed, the gauge still counts the
    /// slow ones, and when they end it reads 0. A gateway that takes a long-quiet full gauge for
    /// leaked units and resets it lets more than `limit` requests through, and then lowers the
    /// gauge below zero; one that gives a slot back, or sheds a request, after some time at the
    /// backend takes a slow request for a gone one.
    async fn a_slow_backend_keeps_its_slots_however_long_it_takes() {
        const YEAR: u64 = 365 * 86_400;
        // Up to a million years, in one jump of the paused clock: no horizon a gateway could
        // set itself for "a request that old is gone" lies past it.
        let waits = [61u64, 600, 3600, 86_400, YEAR, 30 * YEAR, 1_000_000 * YEAR];
        for (step, wait_s) in waits.into_iter().enumerate() {
            let limit = 1 + step % 3;
            let gateway = Gateway::new(limit);
            let backends: Vec<Gate> = (0..limit).map(|_| Gate::closed()).collect();
            let mut in_flight: Vec<_> = backends
                .iter()
                .map(|backend| {
                    let held = backend.clone();
                    task::spawn(gateway.forward(async move { held.pass().await }))
                })
                .collect();
            for request in &mut in_flight {
                assert_pending!(request.poll());
            }
            tokio::time::advance(Duration::from_secs(wait_s)).await;
            for request in &mut in_flight {
                let answer = request.poll();
                assert!(
                    answer.is_pending(),
                    "limit {limit}: a request has waited {wait_s} s for a slow backend that has \
                     not answered, and when polled then it returned {answer:?}: a request that \
                     waits long is slow, not gone, however long the backend takes"
                );
            }
            let gauge = gateway.in_flight();
            assert!(
                gauge == limit,
                "limit {limit}: {limit} request(s) have waited {wait_s} s for a slow backend and \
                 are still in flight, {}",
                describe_gauge(gauge, limit)
            );
            let reached = Arc::new(AtomicUsize::new(0));
            let calls = reached.clone();
            let mut late = task::spawn(gateway.forward(async move {
                calls.fetch_add(1, Ordering::SeqCst);
                200
            }));
            let answer = late.poll();
            let reached = reached.load(Ordering::SeqCst);
            assert!(
                answer == Poll::Ready(Err(Shed)) && reached == 0,
                "limit {limit}: {limit} request(s) have held every slot for {wait_s} s, still \
                 waiting for a slow backend; one more request arrived and its first poll returned \
                 {answer:?} (it reached the backend: {}), expected Ready(Err(Shed)): at most \
                 `limit` requests may be forwarded at once, however long the backend takes (a \
                 request that waits long is slow, not gone)",
                reached > 0
            );
            drop(late);
            for backend in &backends {
                backend.open();
            }
            for request in &mut in_flight {
                assert!(request.poll().is_ready(), "a request whose backend answered did not finish");
            }
            drop(in_flight);
            let gauge = gateway.in_flight();
            assert!(
                gauge == 0,
                "limit {limit}: after the slow request(s) ended ({wait_s} s at the backend), {}",
                describe_gauge(gauge, 0)
            );
        }
    }

    /// A backend that streams its answer wakes its request again and again before it answers (a
    /// chunked body, 30,000 wakes here). Each wake is a poll of `forward`, and the request is
    /// still in flight through all of them: it keeps its slot, a request arriving then is shed,
    /// and the gauge reads 0 once it ends.
    async fn a_request_woken_many_times_by_its_backend_keeps_its_slot() {
        const WAKES: usize = 30_000;
        let gateway = Gateway::new(1);
        let polls = Arc::new(AtomicUsize::new(0));
        let seen = polls.clone();
        let mut request = task::spawn(gateway.forward(std::future::poll_fn(move |cx| {
            if seen.fetch_add(1, Ordering::SeqCst) < WAKES {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(200)
            }
        })));
        while polls.load(Ordering::SeqCst) < WAKES {
            assert!(request.poll().is_pending(), "the request finished before its backend answered");
        }
        let gauge = gateway.in_flight();
        assert!(
            gauge == 1,
            "a request whose backend woke it {WAKES} times and has not answered yet is still in \
             flight, {}",
            describe_gauge(gauge, 1)
        );
        let mut late = task::spawn(gateway.forward(async { 200 }));
        let answer = late.poll();
        assert!(
            answer == Poll::Ready(Err(Shed)),
            "a request holds the only slot (its backend has woken it {WAKES} times, with no \
             answer yet); one more request arrived and its first poll returned {answer:?}, \
             expected Ready(Err(Shed))"
        );
        drop(late);
        assert_eq!(request.poll(), Poll::Ready(Ok(200)), "the backend answered 200");
        let gauge = gateway.in_flight();
        assert!(gauge == 0, "after the streamed request ended, {}", describe_gauge(gauge, 0));
    }

    /// The gauge measures load: it must read 1 while the backend is busy, and shed past the limit.
    async fn counts_requests_while_they_are_in_flight() {
        let gateway = Gateway::new(1);
        let backend = Gate::closed();
        let held = backend.clone();
        let mut first = task::spawn(gateway.forward(async move { held.pass().await }));
        assert_pending!(first.poll());
        let gauge = gateway.in_flight();
        assert!(
            gauge == 1,
            "one request waits for the backend, {} (a gauge that does not count a waiting request \
             hides the load from the shedder)",
            describe_gauge(gauge, 1)
        );
        let mut second = task::spawn(gateway.forward(async {}));
        match second.poll() {
            Poll::Ready(Err(Shed)) => {}
            Poll::Ready(Ok(())) => panic!(
                "with limit 1 and one request in flight, a second request was forwarded; it must \
                 be shed"
            ),
            Poll::Pending => panic!(
                "with limit 1 and one request in flight, a second request waited for room instead \
                 of being shed at once: a full gateway answers \"503, try later\" straight away"
            ),
        }
        drop(second);
        assert_eq!(gateway.in_flight(), 1, "a shed request must leave the gauge as it found it");
        backend.open();
        assert!(first.poll().is_ready());
        assert_eq!(gateway.in_flight(), 0);
    }

    /// "Shed at once" holds at any time of day. A production clock is never aligned to a whole
    /// millisecond, so the test moves the paused clock to odd instants (some a fraction of a
    /// millisecond past one) before a request arrives at a full gateway: its first poll must
    /// answer `Err(Shed)`, and a slot freed before its next poll must not let it in late.
    async fn a_full_gateway_sheds_on_the_first_poll_at_any_instant() {
        for (step, offset_us) in [0u64, 1, 250, 500, 999, 1000, 1001, 1500, 2750].into_iter().enumerate() {
            let limit = 1 + step % 3;
            tokio::time::advance(Duration::from_micros(offset_us)).await;
            let gateway = Gateway::new(limit);
            let backends: Vec<Gate> = (0..limit).map(|_| Gate::closed()).collect();
            let mut in_flight: Vec<_> = backends
                .iter()
                .map(|backend| {
                    let held = backend.clone();
                    task::spawn(gateway.forward(async move { held.pass().await }))
                })
                .collect();
            for request in &mut in_flight {
                assert_pending!(request.poll());
            }
            let mut late = task::spawn(gateway.forward(async { 200 }));
            let first = late.poll();
            if first == Poll::Ready(Err(Shed)) {
                continue;
            }
            assert!(
                first.is_pending(),
                "limit {limit}: with {limit} request(s) in flight, one more request was forwarded \
                 ({first:?}); it must be shed"
            );
            backends[0].open();
            assert!(in_flight[0].poll().is_ready(), "a request whose backend answered did not finish");
            let second = late.poll();
            panic!(
                "limit {limit}, the clock {offset_us} µs on: a request arriving at a full gateway \
                 was not shed on its first poll (it returned Pending, waiting for room); one \
                 request then ended, and the next poll of the waiting one returned {second:?}{}: a \
                 full gateway answers \"503, try later\" straight away, at any instant",
                if second.is_ready() && second != Poll::Ready(Err(Shed)) {
                    ", so it was forwarded late"
                } else {
                    ""
                }
            );
        }
    }

    /// "Shed at once" holds however busy the handler is. A handler that fans a batch out to a full
    /// gateway polls request after request without ever yielding to the scheduler, and a handler
    /// may have done plenty of other work in the same turn (tokio's cooperative budget spent):
    /// each request must still be shed on its first poll, not made to wait a turn for room.
    async fn a_full_gateway_sheds_on_the_first_poll_however_busy_the_handler_is() {
        for limit in [0usize, 1, 3] {
            let gateway = Gateway::new(limit);
            let backends: Vec<Gate> = (0..limit).map(|_| Gate::closed()).collect();
            let mut in_flight: Vec<_> = backends
                .iter()
                .map(|backend| {
                    let held = backend.clone();
                    task::spawn(gateway.forward(async move { held.pass().await }))
                })
                .collect();
            for request in &mut in_flight {
                assert_pending!(request.poll());
            }
            // A flood of requests from one handler, each polled once, no yield in between.
            for n in 1..=300 {
                let mut late = task::spawn(gateway.forward(async { 200 }));
                match late.poll() {
                    Poll::Ready(Err(Shed)) => {}
                    Poll::Ready(Ok(_)) => panic!(
                        "limit {limit}: with {limit} request(s) in flight, request {n} of a flood \
                         from one handler was forwarded; it must be shed"
                    ),
                    Poll::Pending => {
                        let late_admit = admit_late(&backends, &mut in_flight, &mut late).await;
                        panic!(
                            "limit {limit}: a handler sent a flood of requests to a full gateway \
                             ({limit} in flight), polling each once without yielding to the \
                             scheduler; requests 1 to {} were shed, but request {n} returned \
                             Pending on its first poll instead of being shed{late_admit}: a full \
                             gateway answers \"503, try later\" straight away, however many \
                             requests the handler has sent in the same turn (does `forward` \
                             yield, or wait on something that counts against tokio's \
                             cooperative budget, before it sheds?)",
                            n - 1
                        );
                    }
                }
            }
            // The handler's task has used up its cooperative budget on other work before the next
            // request arrives.
            let mut spent = 0;
            while task::spawn(tokio::task::consume_budget()).poll().is_ready() {
                spent += 1;
                assert!(spent < 100_000, "tokio's cooperative budget never ran out");
            }
            let mut late = task::spawn(gateway.forward(async { 200 }));
            match late.poll() {
                Poll::Ready(Err(Shed)) => {}
                Poll::Ready(Ok(_)) => {
                    panic!("limit {limit}: with {limit} request(s) in flight, a request was forwarded")
                }
                Poll::Pending => {
                    let late_admit = admit_late(&backends, &mut in_flight, &mut late).await;
                    panic!(
                        "limit {limit}: a request arrived at a full gateway ({limit} in flight) in \
                         a handler that had already done a lot of work in the same turn (its \
                         task's cooperative budget was spent), and returned Pending on its first \
                         poll instead of being shed{late_admit}: a full gateway answers \"503, try \
                         later\" straight away, however busy the handler is; shedding needs no \
                         `.await` at all (`forward` must not wait on anything, a yield, a \
                         semaphore's `acquire` or a timer, before it sheds)"
                    );
                }
            }
            tokio::task::yield_now().await;
            for backend in &backends {
                backend.open();
            }
            for request in &mut in_flight {
                assert!(request.poll().is_ready(), "a request whose backend answered did not finish");
            }
            drop(in_flight);
            let gauge = gateway.in_flight();
            assert!(gauge == 0, "after every request ended, {}", describe_gauge(gauge, 0));
        }
    }

    /// Every path through `forward` polled by a busy handler: the explorer cuts each request
    /// after every poll, and also makes each poll with the handler's task out of cooperative
    /// budget (or nearly). Gateways with room (limits 1, 2, 1000, `usize::MAX`) and backends that
    /// answer at once, after a timer (30 ms, 50 min), after waking the request a few times, or
    /// panic after a timer; and a drained gateway (limit 0) that sheds. A request whose backend
    /// has answered is answered on that same poll, whatever budget the task has left (it is not
    /// held back, still counted, while its answer waits); a backend's panic comes out at once; a
    /// shed comes on the first poll; and the gauge is back to 0 after every cut.
    async fn every_path_answers_on_the_poll_its_answer_is_ready_however_busy_the_handler() {
        #[derive(Debug, Clone, Copy)]
        enum Backend {
            AtOnce,
            After(Duration),
            Wakes(usize),
            PanicsAfter(Duration),
        }
        let backends = [
            Backend::AtOnce,
            Backend::After(Duration::from_millis(30)),
            Backend::After(Duration::from_secs(50 * 60)),
            Backend::Wakes(3),
            Backend::PanicsAfter(Duration::from_millis(30)),
        ];
        let mut configs: Vec<(usize, Backend)> = vec![(0, Backend::AtOnce)];
        for limit in [1, 2, 1000, usize::MAX] {
            configs.extend(backends.iter().map(|&backend| (limit, backend)));
        }
        for (limit, backend) in configs {
            let scene = format!(
                "a gateway built with limit {limit}, a backend that {}",
                match backend {
                    Backend::AtOnce => "answers 200 at once".to_string(),
                    Backend::After(t) => format!("answers 200 after {t:?}"),
                    Backend::Wakes(n) => format!("wakes the request {n} times, then answers 200"),
                    Backend::PanicsAfter(t) => format!("panics after {t:?}"),
                }
            );
            let explored = kata_support::explore(
                || (Gateway::new(limit), Arc::new(AtomicUsize::new(0))),
                |(gateway, answered): (Gateway, Arc<AtomicUsize>)| async move {
                    let call = async move {
                        match backend {
                            Backend::AtOnce => {}
                            Backend::After(t) | Backend::PanicsAfter(t) => {
                                tokio::time::sleep(t).await
                            }
                            Backend::Wakes(n) => {
                                let mut woken = 0;
                                std::future::poll_fn(|cx| {
                                    if woken == n {
                                        return Poll::Ready(());
                                    }
                                    woken += 1;
                                    cx.waker().wake_by_ref();
                                    Poll::Pending
                                })
                                .await
                            }
                        }
                        answered.fetch_add(1, Ordering::SeqCst);
                        if let Backend::PanicsAfter(_) = backend {
                            std::panic::panic_any(BackendBug(42));
                        }
                        200
                    };
                    AssertUnwindSafe(gateway.forward(call))
                        .catch_unwind()
                        .await
                        .map_err(|payload| payload.downcast_ref::<BackendBug>().is_some())
                },
                |(gateway, answered), outcome| async move {
                    let answered = answered.load(Ordering::SeqCst) > 0;
                    let gauge = gateway.in_flight();
                    if gauge != 0 {
                        return Err(format!("the request ended, {}", describe_gauge(gauge, 0)));
                    }
                    match outcome {
                        Outcome::Cancelled { polls } if limit == 0 && polls > 0 => Err(format!(
                            "a request at a full gateway was still waiting after {polls} poll(s) \
                             when its client left, instead of being shed on its first poll: a \
                             full gateway answers \"503, try later\" straight away, however busy \
                             the handler is"
                        )),
                        Outcome::Cancelled { .. } if answered => Err(
                            "the backend had already answered when `forward` was last polled, \
                             yet that poll returned Pending, and the request was dropped still \
                             waiting, its answer lost (and its slot held until then): a request \
                             whose backend has answered is answered on that same poll, however \
                             busy the handler's task is"
                                .to_string(),
                        ),
                        Outcome::Cancelled { .. } => Ok(()),
                        Outcome::Completed(Ok(Err(Shed))) if limit == 0 => Ok(()),
                        Outcome::Completed(Ok(Ok(200))) if limit > 0 => Ok(()),
                        Outcome::Completed(Err(true))
                            if matches!(backend, Backend::PanicsAfter(_)) =>
                        {
                            Ok(())
                        }
                        Outcome::Completed(Err(_)) => {
                            Err("`forward` unwound with a panic that is not the backend's".into())
                        }
                        Outcome::Completed(Ok(answer)) => {
                            Err(format!("`forward` answered {answer:?}, expected the backend's"))
                        }
                    }
                },
            )
            .await;
            if let Err(failure) = explored {
                panic!("{scene}: {failure}");
            }
        }
    }

    /// Requests created before any of them is polled, then polled in any order: exactly `limit`
    /// of them reach the backend and the others are shed, whichever moment a fix counts a request
    /// at (when `forward` is called or when it is first polled).
    fn requests_created_together_never_exceed_the_limit() {
        check_property(64, built_before_polled(), |(limit, poll_order)| async move {
            let n = poll_order.len();
            let gateway = Gateway::new(limit);
            let backend = Gate::closed();
            let reached = Arc::new(AtomicUsize::new(0));
            let mut requests: Vec<_> = (0..n)
                .map(|_| {
                    let backend = backend.clone();
                    let reached = reached.clone();
                    task::spawn(gateway.forward(async move {
                        reached.fetch_add(1, Ordering::SeqCst);
                        backend.pass().await;
                    }))
                })
                .collect();
            let (mut waiting, mut shed) = (0, 0);
            for &index in &poll_order {
                match requests[index].poll() {
                    Poll::Pending => waiting += 1,
                    Poll::Ready(Err(Shed)) => shed += 1,
                    Poll::Ready(Ok(())) => {
                        return Err(format!(
                            "request {index} finished before its backend answered"
                        ));
                    }
                }
            }
            let (gauge, reached) = (gateway.in_flight(), reached.load(Ordering::SeqCst));
            if reached > limit || waiting != limit || shed != n - limit || gauge != limit {
                return Err(format!(
                    "limit {limit}: {n} requests were created before any was polled, then each \
                     polled once; {reached} reached the backend, {waiting} wait for it, {shed} \
                     were shed and the gauge reads {gauge}, expected {limit} forwarded (and \
                     counted) and {} shed: at most `limit` requests may be forwarded at once, \
                     however they were created",
                    n - limit
                ));
            }
            drop(requests);
            match gateway.in_flight() {
                0 => Ok(()),
                gauge => Err(format!(
                    "every request was abandoned by its client, {}",
                    describe_gauge(gauge, 0)
                )),
            }
        });
    }

    /// Requests created at any moment and polled later, in any order, some dropped before their
    /// first poll: after every step the gauge never exceeds the limit, counts every request that
    /// waits at the backend, and counts nothing for a request created while the gateway was full
    /// (it will be shed) nor for one dropped before it was polled. A fix may count a request from
    /// the moment `forward` is called or from its first poll; the test accepts both.
    fn requests_polled_later_hold_nothing_they_will_not_use() {
        check_property(64, created_then_polled_later(), |(limit, steps)| async move {
            struct Request<F> {
                id: usize,
                backend: Gate,
                reached: Arc<AtomicUsize>,
                task: task::Spawn<F>,
                /// Whether it was polled (and forwarded) yet.
                polled: bool,
                /// Whether the gauge was under the limit when the request was created.
                room_at_creation: bool,
            }
            let gateway = Gateway::new(limit);
            let mut requests = Vec::new();
            let mut story = vec![format!("a gateway with limit {limit}")];
            let mut next_id = 0;
            for step in steps {
                let waiting = requests.iter().filter(|r: &&Request<_>| r.polled).count();
                match step {
                    LaterStep::Create => {
                        let room_at_creation = gateway.in_flight() < limit;
                        let backend = Gate::closed();
                        let held = backend.clone();
                        let reached = Arc::new(AtomicUsize::new(0));
                        let calls = reached.clone();
                        let task = task::spawn(gateway.forward(async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            held.pass().await;
                        }));
                        story.push(format!(
                            "request {next_id} is created (not polled) with {waiting} request(s) \
                             waiting at the backend"
                        ));
                        requests.push(Request {
                            id: next_id,
                            backend,
                            reached,
                            task,
                            polled: false,
                            room_at_creation,
                        });
                        next_id += 1;
                    }
                    LaterStep::Poll(i) => {
                        let unpolled: Vec<usize> =
                            (0..requests.len()).filter(|&k| !requests[k].polled).collect();
                        if unpolled.is_empty() {
                            continue;
                        }
                        let k = unpolled[i.index(unpolled.len())];
                        let request = &mut requests[k];
                        let id = request.id;
                        match request.task.poll() {
                            Poll::Pending => {
                                if !request.room_at_creation && waiting >= limit {
                                    return Err(format!(
                                        "{}; then request {id}, created while the gateway was \
                                         full and first polled with {waiting} request(s) waiting \
                                         at the backend (limit {limit}), was forwarded, expected \
                                         shed: there was no room when it was created nor when it was first polled",
                                        story.join(", ")
                                    ));
                                }
                                request.polled = true;
                                story.push(format!("request {id} is first polled and forwarded"));
                            }
                            Poll::Ready(Err(Shed)) => {
                                let reached = request.reached.load(Ordering::SeqCst) > 0;
                                if (request.room_at_creation && waiting < limit) || reached {
                                    return Err(format!(
                                        "{}; then request {id}, created while there was room and \
                                         first polled with {waiting} request(s) waiting at the \
                                         backend (limit {limit}), was shed (it reached the \
                                         backend: {reached}), expected forwarded: there was room \
                                         both when it was created and when it was first polled",
                                        story.join(", ")
                                    ));
                                }
                                requests.remove(k);
                                story.push(format!("request {id} is first polled and shed"));
                            }
                            Poll::Ready(Ok(())) => {
                                return Err(format!(
                                    "{}; then request {id} finished before its backend answered",
                                    story.join(", ")
                                ));
                            }
                        }
                    }
                    LaterStep::Answer(i) => {
                        let polled: Vec<usize> =
                            (0..requests.len()).filter(|&k| requests[k].polled).collect();
                        if polled.is_empty() {
                            continue;
                        }
                        let k = polled[i.index(polled.len())];
                        let mut request = requests.remove(k);
                        request.backend.open();
                        if request.task.poll() != Poll::Ready(Ok(())) {
                            return Err(format!(
                                "{}; then the backend answered request {}, and it did not finish",
                                story.join(", "),
                                request.id
                            ));
                        }
                        story.push(format!("request {} is answered", request.id));
                    }
                    LaterStep::Drop(i) => {
                        if requests.is_empty() {
                            continue;
                        }
                        let request = requests.remove(i.index(requests.len()));
                        story.push(if request.polled {
                            format!("the client of request {} leaves", request.id)
                        } else {
                            format!(
                                "the client of request {} leaves before it was ever polled",
                                request.id
                            )
                        });
                    }
                }
                let waiting = requests.iter().filter(|r| r.polled).count();
                let may_hold = requests.iter().filter(|r| !r.polled && r.room_at_creation).count();
                let gauge = gateway.in_flight();
                if gauge > limit || gauge < waiting || gauge > waiting + may_hold {
                    let not_polled = requests.len() - waiting;
                    return Err(format!(
                        "{}; then the gauge reads {gauge} with {waiting} request(s) waiting at the \
                         backend and {not_polled} created but not yet polled ({may_hold} of them \
                         created while there was room), limit {limit}: expected between {} and \
                         {}: the gauge counts every request waiting at the backend, never more \
                         than the limit, and nothing for a request that will be shed or that was \
                         dropped before its first poll",
                        story.join(", "),
                        waiting,
                        (waiting + may_hold).min(limit)
                    ));
                }
            }
            drop(requests);
            match gateway.in_flight() {
                0 => Ok(()),
                gauge => Err(format!(
                    "{}; then every request ended, {}",
                    story.join(", "),
                    describe_gauge(gauge, 0)
                )),
            }
        });
    }

    /// Cancelled at every point `forward` can be cancelled, the gauge must be back at 0.
    async fn gauge_returns_to_zero_at_every_cancellation_point() {
        assert_cancel_safe(
            || Gateway::new(4),
            |gateway: Gateway| async move {
                gateway
                    .forward(async {
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    })
                    .await
            },
            |gateway, _| async move {
                match gateway.in_flight() {
                    0 => Ok(()),
                    n => Err(format!("the request ended, {}", describe_gauge(n, 0))),
                }
            },
        )
        .await;
    }

    /// A request can be cancelled before it is ever polled: `select!` drops a branch it never
    /// polled when another one (the client hanging up) is ready first, and a caller may build
    /// requests and then drop them all. Such a request must leave nothing counted.
    async fn a_request_dropped_before_its_first_poll_leaves_the_gauge_at_zero() {
        for limit in 1..=3 {
            let gateway = Gateway::new(limit);
            let unpolled: Vec<_> =
                (0..limit).map(|_| gateway.forward(std::future::pending::<()>())).collect();
            drop(unpolled);
            let gauge = gateway.in_flight();
            assert_eq!(
                gauge,
                0,
                "limit {limit}: {limit} requests were created and dropped before their first \
                 poll (as a `select!` drops a branch it never polled), {}",
                describe_gauge(gauge, 0)
            );
            let (hung_up, client) = tokio::sync::oneshot::channel::<()>();
            drop(hung_up);
            tokio::select! {
                biased;
                _ = client => {}
                _ = gateway.forward(async { 200 }) => {
                    panic!("the `select!` polled the request although the client had gone first");
                }
            }
            let gauge = gateway.in_flight();
            assert_eq!(
                gauge,
                0,
                "limit {limit}: a handler's `select!` saw its client gone before it polled the \
                 request, and dropped the request unpolled, {}",
                describe_gauge(gauge, 0)
            );
            let mut requests: Vec<_> =
                (0..limit).map(|_| task::spawn(gateway.forward(std::future::pending::<()>()))).collect();
            for (index, request) in requests.iter_mut().enumerate() {
                assert!(
                    request.poll().is_pending(),
                    "limit {limit}: after requests dropped before their first poll, request \
                     {index} of {limit} was shed (or ended) at once: a gateway with no request \
                     in flight must take `limit` new ones"
                );
            }
            assert_eq!(gateway.in_flight(), limit, "limit {limit}: {limit} requests wait for the backend");
        }
    }

    /// A client that disconnects `limit` times must not lock everybody out.
    async fn cancelled_requests_do_not_exhaust_the_limit() {
        let gateway = Gateway::new(3);
        for _ in 0..3 {
            let mut request = task::spawn(gateway.forward(std::future::pending::<()>()));
            assert_pending!(request.poll());
            drop(request);
        }
        let response = gateway.forward(async { 200 }).await;
        assert_eq!(
            response,
            Ok(200),
            "after 3 cancelled requests a gateway with limit 3 shed a request: the cancelled ones \
             still count as in flight"
        );
    }

    /// When the client leaves, the backend call must be dropped with `forward`, not left running.
    async fn drops_the_backend_call_when_the_client_leaves() {
        let gateway = Gateway::new(2);
        let (flag, probe) = DropFlag::new();
        let backend = Gate::closed();
        let call = {
            let backend = backend.clone();
            async move {
                let _flag = flag;
                backend.pass().await;
            }
        };
        let mut request = task::spawn(gateway.forward(call));
        assert_pending!(request.poll());
        drop(request);
        kata_support::settle().await;
        assert!(
            probe.is_dropped(),
            "the client left but the backend call is still running: it was detached instead of \
             cancelled, so the gateway keeps working for nobody"
        );
        assert_eq!(gateway.in_flight(), 0, "the client left; the gauge must read 0 at once");
    }

    /// A backend that panics unwinds through `forward`, at its first poll or a later one, with
    /// every kind of payload a backend's panic carries: a literal message (`&'static str`), a
    /// formatted one (`String`), one that mentions a timeout, and a typed value
    /// (`panic_any`). The panic that reaches the handler must be the backend's own, its payload
    /// untouched in type and value (so a handler can tell what crashed), and the gauge must come
    /// down on the way out.
    async fn a_backend_panic_comes_out_whole_and_lowers_the_gauge() {
        #[derive(Debug, Clone, Copy)]
        enum Payload {
            Literal,
            Formatted,
            MentionsTimeout,
            Typed,
        }
        /// Says what a panic's payload is, as a handler that downcasts it would see it.
        fn describe(payload: &(dyn std::any::Any + Send)) -> String {
            if let Some(s) = payload.downcast_ref::<&'static str>() {
                format!("a `&'static str` payload {s:?}")
            } else if let Some(s) = payload.downcast_ref::<String>() {
                format!("a `String` payload {s:?}")
            } else if let Some(bug) = payload.downcast_ref::<BackendBug>() {
                format!("a `{bug:?}` payload")
            } else {
                "a payload of another type".to_string()
            }
        }
        use Payload::{Formatted, Literal, MentionsTimeout, Typed};
        for payload_kind in [Literal, Formatted, MentionsTimeout, Typed] {
            for yields_first in [false, true] {
                let gateway = Gateway::new(2);
                let when = if yields_first { "after waiting once" } else { "on its first poll" };
                let shard = 7;
                let crashed = AssertUnwindSafe(gateway.forward(async move {
                    if yields_first {
                        tokio::task::yield_now().await;
                    }
                    match payload_kind {
                        Payload::Literal => panic!("db down"),
                        Payload::Formatted => panic!("db shard {shard} down"),
                        Payload::MentionsTimeout => {
                            panic!("db shard {shard} timed out after 30s (timeout)")
                        }
                        Payload::Typed => std::panic::panic_any(BackendBug(42)),
                    }
                }))
                .catch_unwind()
                .await;
                let expected = match payload_kind {
                    Payload::Literal => "a `&'static str` payload \"db down\"".to_string(),
                    Payload::Formatted => format!("a `String` payload \"db shard {shard} down\""),
                    Payload::MentionsTimeout => format!(
                        "a `String` payload \"db shard {shard} timed out after 30s (timeout)\""
                    ),
                    Payload::Typed => "a `BackendBug(42)` payload".to_string(),
                };
                let payload = match crashed {
                    Ok(result) => panic!(
                        "the backend call panicked {when} with {expected}, but `forward` \
                         returned {result:?} instead of unwinding: the panic must reach the \
                         handler (a gateway with room is not full, so it is not a shed)"
                    ),
                    Err(payload) => payload,
                };
                let seen = describe(&*payload);
                assert!(
                    seen == expected,
                    "the backend call panicked {when} with {expected}, but what came out of \
                     `forward` was {seen}: the backend's panic was caught and replaced (or \
                     rewritten), so the handler cannot tell what crashed. Let the backend's panic \
                     unwind through `forward` as it is, whatever its payload (or resume it with \
                     that very payload)"
                );
                assert_eq!(
                    gateway.in_flight(),
                    0,
                    "the backend panicked {when} and `forward` unwound, but the gauge still counts \
                     the request (expected 0)"
                );
                assert_eq!(
                    gateway.forward(async { 200 }).await,
                    Ok(200),
                    "after a backend panic the gateway must still forward requests"
                );
            }
        }
    }

    /// Handlers share one gateway by cloning it, and "clones share one gauge": a request waiting
    /// through one clone counts on every clone, and the limit is one limit for all of them. With
    /// limit 2, a request through the gateway and one through a clone of its clone fill it: every
    /// handle (and a clone made then) reads 2 and sheds the next request, whichever handle it goes
    /// through; once the requests end, every handle reads 0 and forwards again.
    async fn clones_share_one_gauge_and_one_limit() {
        let gateway = Gateway::new(2);
        let clone = gateway.clone();
        let clone_of_clone = clone.clone();
        let backends = [Gate::closed(), Gate::closed()];
        let held = backends[0].clone();
        let mut first = task::spawn(gateway.forward(async move { held.pass().await }));
        assert_pending!(first.poll());
        let handles = [
            ("the gateway", &gateway),
            ("its clone", &clone),
            ("a clone of that clone", &clone_of_clone),
        ];
        for (name, handle) in handles {
            let gauge = handle.in_flight();
            assert!(
                gauge == 1,
                "limit 2: one request waits at the backend, forwarded through the gateway, and \
                 {name} reads {gauge}, expected 1: clones share one gauge, so a request forwarded \
                 through any of them counts on every one"
            );
        }
        let held = backends[1].clone();
        let mut second = task::spawn(clone_of_clone.forward(async move { held.pass().await }));
        let answer = second.poll();
        assert!(
            answer.is_pending(),
            "limit 2: one request waits, forwarded through the gateway; a second one, through a \
             clone of its clone, returned {answer:?} on its first poll, expected Pending \
             (forwarded): there is room for one more"
        );
        let made_now = gateway.clone();
        let handles = [
            ("the gateway", &gateway),
            ("its clone", &clone),
            ("a clone of that clone", &clone_of_clone),
            ("a clone made while both wait", &made_now),
        ];
        for (name, handle) in handles {
            let gauge = handle.in_flight();
            assert!(
                gauge == 2,
                "limit 2: two requests wait at the backend, one forwarded through the gateway and \
                 one through a clone of its clone, and {name} reads {gauge}, expected 2: clones \
                 share one gauge, so each reads every request in flight, whichever clone it went \
                 through"
            );
            let reached = Arc::new(AtomicUsize::new(0));
            let calls = reached.clone();
            let mut late = task::spawn(handle.forward(async move {
                calls.fetch_add(1, Ordering::SeqCst);
                200
            }));
            let answer = late.poll();
            assert!(
                answer == Poll::Ready(Err(Shed)) && reached.load(Ordering::SeqCst) == 0,
                "limit 2: two requests wait at the backend, one forwarded through the gateway and \
                 one through a clone of its clone; one more request, through {name}, returned \
                 {answer:?} on its first poll (it reached the backend: {}), expected \
                 Ready(Err(Shed)): the limit is one limit for the gateway and all its clones, so \
                 at most 2 requests are forwarded at once however many handlers hold a clone",
                reached.load(Ordering::SeqCst) > 0
            );
        }
        backends[0].open();
        assert!(first.poll().is_ready(), "a request whose backend answered did not finish");
        drop(first);
        drop(second);
        for (name, handle) in handles {
            let gauge = handle.in_flight();
            assert!(
                gauge == 0,
                "limit 2: of the two requests forwarded through the gateway and a clone of its \
                 clone, one was answered and the other abandoned by its client; then {name} reads \
                 {gauge}, expected 0: clones share one gauge"
            );
            assert_eq!(
                handle.forward(async { 200 }).await,
                Ok(200),
                "limit 2: after every request ended, a request through {name} was shed"
            );
        }
    }

    /// Any number of handlers, each with its own clone (some of them clones of clones, some made
    /// while requests are in flight), forward requests and see them end in any order: after every
    /// step each handle reads the number of requests in flight through all of them, and a request
    /// through any handle is forwarded while there is room under the one limit and shed when
    /// there is none.
    fn requests_through_any_clones_keep_one_gauge() {
        check_property(64, clone_sessions(), |(limit, up_front, steps)| async move {
            let handles: [std::cell::OnceCell<Gateway>; MAX_HANDLES] = Default::default();
            let handle = |h: usize| handles[h].get().expect("a handle that was made");
            let _ = handles[0].set(Gateway::new(limit));
            let mut made = 1;
            let mut story = vec![format!("a gateway with limit {limit} (handle 0)")];
            for from in 0..up_front {
                let _ = handles[made].set(handle(from).clone());
                story.push(format!("handle {made} is a clone of handle {from}"));
                made += 1;
            }
            let mut in_flight = Vec::new();
            for step in steps {
                match step {
                    CloneStep::Clone(i) => {
                        if made == MAX_HANDLES {
                            continue;
                        }
                        let from = i.index(made);
                        let _ = handles[made].set(handle(from).clone());
                        story.push(format!(
                            "handle {made} is a clone of handle {from}, made with {} request(s) in \
                             flight",
                            in_flight.len()
                        ));
                        made += 1;
                    }
                    CloneStep::Request(i) => {
                        let via = i.index(made);
                        let backend = Gate::closed();
                        let held = backend.clone();
                        let reached = Arc::new(AtomicUsize::new(0));
                        let calls = reached.clone();
                        let mut request = task::spawn(handle(via).forward(async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            held.pass().await;
                        }));
                        let answer = request.poll();
                        let waiting = in_flight.len();
                        if waiting < limit {
                            if answer.is_ready() {
                                return Err(format!(
                                    "{}; then a request through handle {via}, with {waiting} \
                                     request(s) in flight through all handles and a limit of \
                                     {limit}, returned {answer:?} on its first poll, expected \
                                     Pending (forwarded): there is room",
                                    story.join(", ")
                                ));
                            }
                            story.push(format!("a request through handle {via} is forwarded"));
                            in_flight.push((via, backend, request));
                        } else {
                            let reached = reached.load(Ordering::SeqCst) > 0;
                            if answer != Poll::Ready(Err(Shed)) || reached {
                                return Err(format!(
                                    "{}; then a request through handle {via}, with {waiting} \
                                     request(s) in flight through all handles and a limit of \
                                     {limit}, returned {answer:?} on its first poll (it reached \
                                     the backend: {reached}), expected Ready(Err(Shed)): the limit \
                                     is one limit for the gateway and all its clones",
                                    story.join(", ")
                                ));
                            }
                            story.push(format!("a request through handle {via} is shed"));
                        }
                    }
                    CloneStep::End(i, answered) => {
                        if in_flight.is_empty() {
                            continue;
                        }
                        let ended = i.index(in_flight.len());
                        let (via, backend, mut request) = in_flight.remove(ended);
                        if answered {
                            backend.open();
                            if request.poll().is_pending() {
                                return Err(format!(
                                    "{}; then the backend answered a request forwarded through \
                                     handle {via}, and the request did not finish",
                                    story.join(", ")
                                ));
                            }
                            story.push(format!("the request through handle {via} is answered"));
                        } else {
                            story.push(format!(
                                "the client of the request through handle {via} leaves"
                            ));
                        }
                        drop(request);
                    }
                }
                let waiting = in_flight.len();
                for h in 0..made {
                    let gauge = handle(h).in_flight();
                    if gauge != waiting {
                        return Err(format!(
                            "{}; then handle {h} reads {gauge}, expected {waiting}, the requests \
                             in flight through all handles: clones share one gauge, so each \
                             reads every request in flight, whichever clone it went through",
                            story.join(", ")
                        ));
                    }
                }
            }
            drop(in_flight);
            for h in 0..made {
                let gauge = handle(h).in_flight();
                if gauge != 0 {
                    return Err(format!(
                        "{}; then every request ended, and handle {h} {}",
                        story.join(", "),
                        describe_gauge(gauge, 0)
                    ));
                }
            }
            Ok(())
        });
    }

    /// Concurrent requests end in any order, some answered and some abandoned by their clients;
    /// after each one ends the gauge must count exactly the requests still waiting.
    fn concurrent_requests_ending_in_any_order_keep_the_gauge_exact() {
        check_property(64, endings(), |endings| async move {
            let n = endings.len();
            let gateway = Gateway::new(n);
            let mut backends = Vec::new();
            let mut requests = Vec::new();
            for _ in 0..n {
                let backend = Gate::closed();
                let held = backend.clone();
                let mut request = task::spawn(gateway.forward(async move { held.pass().await }));
                if request.poll().is_ready() {
                    return Err("a request finished before its backend answered".to_string());
                }
                backends.push(backend);
                requests.push(Some(request));
            }
            if gateway.in_flight() != n {
                return Err(format!(
                    "{n} requests wait for the backend, but the gauge reads {}",
                    gateway.in_flight()
                ));
            }
            let mut still_waiting = n;
            for (index, answered) in endings {
                let mut request = requests[index].take().expect("each request ends once");
                let how = if answered {
                    backends[index].open();
                    if !request.poll().is_ready() {
                        return Err(format!("request {index} did not finish once its backend answered"));
                    }
                    "was answered"
                } else {
                    "was abandoned by its client"
                };
                drop(request);
                still_waiting -= 1;
                let gauge = gateway.in_flight();
                if gauge != still_waiting {
                    return Err(format!(
                        "after request {index} {how}, {still_waiting} request(s) still wait for the \
                         backend, {}",
                        describe_gauge(gauge, still_waiting)
                    ));
                }
            }
            Ok(())
        });
    }
}
