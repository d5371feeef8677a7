//! Hidden tests for kata 15: a dispatcher must stop when the shutdown flag is set, including a
//! dispatcher started after it was set and a `run` called again after an earlier one stopped;
//! it must notice at once, without polling. Only `true` stops it, also for a `run` called again
//! after a shutdown that was called off.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use kata_support::{assert_cancel_safe, hidden_test, settle};
use shutdown_watch_missed::{Dispatcher, Endpoint, Webhook};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, timeout};
use tokio_test::{assert_pending, assert_ready_eq, task};

/// A customer's server that answers each webhook after `latency` and records what it got, and
/// every post it saw start (a post cut short starts and is never received).
#[derive(Debug, Clone)]
struct FakeServer {
    latency: Duration,
    received: Arc<Mutex<Vec<u64>>>,
    started: Arc<Mutex<Vec<u64>>>,
}

impl FakeServer {
    fn new(latency: Duration) -> Self {
        FakeServer { latency, received: Arc::default(), started: Arc::default() }
    }

    fn received(&self) -> Vec<u64> {
        self.received.lock().unwrap().clone()
    }

    fn started(&self) -> Vec<u64> {
        self.started.lock().unwrap().clone()
    }
}

impl Endpoint for FakeServer {
    fn post(&self, hook: Webhook) -> impl Future<Output = ()> {
        let latency = self.latency;
        let received = self.received.clone();
        let started = self.started.clone();
        async move {
            started.lock().unwrap().push(hook.id);
            sleep(latency).await;
            received.lock().unwrap().push(hook.id);
        }
    }
}

/// A customer's server that holds webhook 1 until the test opens its gate (however long that
/// takes, on the paused clock), answers every other webhook at once, and notes what it got and
/// any post dropped before its answer.
#[derive(Debug, Clone)]
struct GatedServer {
    gate: watch::Receiver<bool>,
    received: Arc<Mutex<Vec<u64>>>,
    abandoned: Arc<Mutex<Vec<u64>>>,
}

/// Notes a post dropped before the server answered it.
struct Unanswered(Option<(u64, Arc<Mutex<Vec<u64>>>)>);

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some((id, abandoned)) = self.0.take() {
            abandoned.lock().unwrap().push(id);
        }
    }
}

impl Endpoint for GatedServer {
    fn post(&self, hook: Webhook) -> impl Future<Output = ()> {
        let mut gate = self.gate.clone();
        let received = self.received.clone();
        let abandoned = self.abandoned.clone();
        async move {
            let mut unanswered = Unanswered(Some((hook.id, abandoned)));
            if hook.id == 1 {
                let _ = gate.wait_for(|open| *open).await;
            }
            unanswered.0 = None;
            received.lock().unwrap().push(hook.id);
        }
    }
}

fn hook(id: u64) -> Webhook {
    Webhook { id, event: "invoice.paid".into() }
}

/// A queue holding webhooks `ids`; the sender is returned so the queue stays open.
fn queue_with(
    ids: impl IntoIterator<Item = u64>,
) -> (mpsc::Sender<Webhook>, mpsc::Receiver<Webhook>) {
    let (tx, rx) = mpsc::channel(64);
    for id in ids {
        tx.try_send(hook(id)).expect("queue has room");
    }
    (tx, rx)
}

const POST: Duration = Duration::from_millis(10);

/// How many webhooks are still waiting on a queue of capacity 64, seen from its sender.
fn still_queued(queue: &mpsc::Sender<Webhook>) -> usize {
    queue.max_capacity() - queue.capacity()
}

/// Queues webhook `id` for the test, and says so if the queue was closed: only the worker's side
/// (the dispatcher, which owns the receiver) can have closed it.
fn enqueue(queue: &mpsc::Sender<Webhook>, id: u64, setting: impl FnOnce() -> String) {
    match queue.try_send(hook(id)) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Closed(_)) => panic!(
            "{}; then webhook {id} could not be queued: the tenant's queue was closed. The \
             dispatcher closed its queue when it stopped for the shutdown, and a shutdown that is \
             called off leaves the tenant unable to get any webhook: stopping for a shutdown must \
             leave the queue as it was, for the next `run`",
            setting()
        ),
        Err(mpsc::error::TrySendError::Full(_)) => panic!("{}; the queue was full", setting()),
    }
}

/// When the shutdown that is later called off stops the first `run`.
#[derive(Debug, Clone, Copy)]
enum StoppedWhen {
    /// The flag was already `true` when `run` was called.
    BeforeRun,
    /// The flag was set while `run` waited on an empty queue.
    WhileIdle,
    /// The flag was set half-way through a post.
    WhilePosting,
}

impl StoppedWhen {
    fn describe(self) -> &'static str {
        match self {
            StoppedWhen::BeforeRun => "the flag was already `true` when it was called",
            StoppedWhen::WhileIdle => "the flag was set while it waited",
            StoppedWhen::WhilePosting => "the flag was set while it posted a webhook",
        }
    }
}

/// How long the customer's server of [`a_slow_post_is_finished_whatever_happens_meanwhile`] takes
/// to answer each webhook: a year (on the paused clock, where it costs nothing), longer than any
/// bound a worker could set on a post or on a graceful shutdown.
const SLOW_POST: Duration = Duration::from_secs(365 * 24 * 3600);

/// A long duration as the test's messages show it: in seconds and in days.
fn in_days(duration: Duration) -> String {
    format!("{duration:?} ({:.3} days)", duration.as_secs_f64() / 86_400.0)
}

/// What happens to the shutdown flag while the first of two slow posts is under way.
#[derive(Debug, Clone, Copy)]
enum DuringSlowPost {
    /// Nothing: the flag stays `false` until the second post is half done.
    Nothing,
    /// The flag is set a second into the first post.
    Shutdown,
    /// The flag is set a second into the first post and sent back as `false` half-way through
    /// it (the deploy was called off); it is set again half-way through the second post.
    CalledOff,
    /// The shutdown sender is dropped a second into the first post (the server is exiting).
    SenderDropped,
}

impl DuringSlowPost {
    fn describe(self) -> &'static str {
        match self {
            DuringSlowPost::Nothing => {
                "the flag stayed `false` until the second post was half done, and was then set"
            }
            DuringSlowPost::Shutdown => "the flag was set a second into the first post",
            DuringSlowPost::CalledOff => {
                "the flag was set a second into the first post, sent back as `false` half-way \
                 through it (the deploy was called off), and set again half-way through the \
                 second post"
            }
            DuringSlowPost::SenderDropped => {
                "the shutdown sender was dropped a second into the first post (the server is \
                 exiting)"
            }
        }
    }

    /// How many of the two webhooks must be posted (the rest stay on the queue).
    fn posted(self) -> u64 {
        match self {
            DuringSlowPost::Nothing | DuringSlowPost::CalledOff => 2,
            DuringSlowPost::Shutdown | DuringSlowPost::SenderDropped => 1,
        }
    }
}

/// How far [`an_idle_worker_sleeps_and_reacts_at_once`] moves the paused clock in one jump: 2^62
/// ms, some 146 million years, beyond any deadline a worker could sensibly set, in one step that
/// costs nothing when no timer is set. (Not to the end of tokio's count, where it puts deadlines
/// too far to count: its timer wheel moves a far deadline about two years per step, so a worker
/// holding one would make the jump cost seconds.)
const FAR_END: Duration = kata_support::time::FAR_END;

/// Where the worker of [`an_idle_worker_sleeps_and_reacts_at_once`] waits idle.
#[derive(Debug, Clone, Copy)]
enum Idle {
    /// From its first poll, with an empty queue.
    FromTheStart,
    /// Once it has posted a webhook.
    AfterAPost,
    /// Once it has posted a webhook during which the flag was set and called off again.
    AfterACalledOffShutdown,
}

impl Idle {
    fn describe(self) -> &'static str {
        match self {
            Idle::FromTheStart => "From its first poll on an empty queue",
            Idle::AfterAPost => "After posting webhook 1",
            Idle::AfterACalledOffShutdown => {
                "After posting webhook 1, during which the flag was set and called off again"
            }
        }
    }
}

/// How many times in a row [`poll_until_idle`] polls a worker that wakes itself again each time
/// before it calls it a spin.
const SELF_WAKES: usize = 64;

/// Polls the worker by hand until it is idle (waiting for something, with no wake pending) or
/// done, and returns that last poll; `None` if it was still waking itself after [`SELF_WAKES`]
/// polls in a row (a spin: it never goes idle).
///
/// A worker may wake itself to run again, a `yield_now` after a post to let other tenants'
/// workers have the thread: on any executor a task that wakes itself is polled again at once,
/// so such a wake is not a wake while idle. After each pending poll the wakes that poll made
/// are let land (the test's task yields; no time passes, so no timer can fire meanwhile), and
/// the worker is polled again while it is woken. A wake that comes later, with the clock moved
/// on, is one the worker got while idle.
async fn poll_until_idle<F: Future>(run: &mut task::Spawn<F>) -> Option<Poll<F::Output>> {
    for _ in 0..SELF_WAKES {
        let poll = run.poll();
        if poll.is_ready() {
            return Some(poll);
        }
        settle().await;
        if !run.is_woken() {
            return Some(poll);
        }
    }
    None
}

/// [`poll_until_idle`], failing the test, in `setting`'s words, if the worker never goes idle.
async fn run_until_idle<F: Future>(run: &mut task::Spawn<F>, setting: &str) -> Poll<F::Output> {
    poll_until_idle(run).await.unwrap_or_else(|| {
        panic!(
            "{setting}: polled {SELF_WAKES} times in a row with no time passing, the worker woke \
             itself up again every time; expected it to go idle, waiting for a webhook or the \
             flag (a worker that never goes idle spins, busy, for nothing)"
        )
    })
}

hidden_test! {
    /// Nothing unusual: the worker posts what is queued, then stops when the flag is set.
    async fn posts_webhooks_until_shutdown() {
        let (shutdown, _) = watch::channel(false);
        let (_queue, rx) = queue_with([1, 2, 3]);
        let server = FakeServer::new(POST);
        let mut dispatcher = Dispatcher::new(shutdown.subscribe(), rx, server.clone());
        let stopped = AtomicBool::new(false);
        let run = async {
            let posted = dispatcher.run().await;
            stopped.store(true, Ordering::SeqCst);
            posted
        };
        let supervisor = async {
            sleep(Duration::from_secs(1)).await;
            assert_eq!(server.received(), [1, 2, 3], "the three queued webhooks must be posted");
            assert!(
                !stopped.load(Ordering::SeqCst),
                "the worker stopped although nobody asked it to"
            );
            shutdown.send_replace(true);
            Instant::now()
        };
        let (posted, shutdown_at) = timeout(Duration::from_secs(60), async { tokio::join!(run, supervisor) })
            .await
            .expect("the worker did not stop within 60 s (virtual) of the shutdown");
        assert_eq!(posted, 3, "run must report the 3 webhooks it posted");
        assert_eq!(
            shutdown_at.elapsed(),
            Duration::ZERO,
            "an idle worker must stop as soon as the flag is set"
        );
    }

    /// A shutdown during a post lets that post finish, then stops: no new webhook is taken, and
    /// every webhook not posted is still on the queue for the next start (one more arrives during
    /// that post). Tried with 1, 2 and 5 webhooks queued, during the first, second or third post.
    async fn a_shutdown_during_a_post_finishes_it_and_takes_no_more() {
        for queued in [1u64, 2, 5] {
            for during in 1..=queued.min(3) {
                let (shutdown, _) = watch::channel(false);
                let (queue, rx) = queue_with(1..=queued);
                let server = FakeServer::new(POST);
                let mut dispatcher = Dispatcher::new(shutdown.subscribe(), rx, server.clone());
                let (trigger, late) = (shutdown.clone(), queue.clone());
                let post_starts = POST * (during as u32 - 1);
                tokio::spawn(async move {
                    sleep(post_starts + POST / 4).await;
                    late.try_send(hook(100)).expect("queue has room");
                    sleep(POST / 4).await;
                    trigger.send_replace(true);
                });
                let posted = timeout(Duration::from_secs(60), dispatcher.run()).await.expect(
                    "the worker did not stop within 60 s (virtual) of a shutdown sent while it \
                     worked",
                );
                let received = server.received();
                let expected: Vec<u64> = (1..=during).collect();
                let left = still_queued(&queue);
                let should_be_left = (queued - during + 1) as usize;
                assert!(
                    posted == during as usize && received == expected && left == should_be_left,
                    "{queued} webhook(s) were queued, the shutdown came while webhook {during} was \
                     being posted, and webhook 100 had arrived during that post: that post must \
                     finish, no new webhook be taken, and the {should_be_left} not posted stay \
                     on the queue for the next start. The server received {received:?}, `run` \
                     reported {posted} posted, and {left} webhook(s) were left on the queue (a \
                     webhook taken off the queue and not posted is lost when the process exits)"
                );
            }
        }
    }

    /// The kata's bug: the server is already shutting down when a tenant's first webhook arrives
    /// and its dispatcher is started. The dispatcher must stop at once and post nothing.
    async fn a_worker_started_after_shutdown_stops_at_once() {
        let (shutdown, _) = watch::channel(false);
        shutdown.send_replace(true);
        let (_queue, rx) = queue_with([1, 2]);
        let server = FakeServer::new(POST);
        let mut dispatcher = Dispatcher::new(shutdown.subscribe(), rx, server.clone());
        let start = Instant::now();
        let outcome = timeout(Duration::from_secs(60), dispatcher.run()).await;
        let posted = server.received();
        let Ok(count) = outcome else {
            panic!(
                "the shutdown flag was already `true` when this worker subscribed, and after 60 s \
                 (virtual) it was still running (it posted {posted:?}). A receiver made by \
                 `subscribe()` has already seen the current value, so `changed()` waits for a \
                 *new* send that never comes; the server's shutdown hangs on this worker"
            );
        };
        assert!(
            posted.is_empty() && count == 0,
            "the server was shutting down before this worker started, yet it posted {posted:?}: \
             no webhook may be taken after shutdown"
        );
        assert_eq!(start.elapsed(), Duration::ZERO, "a worker started after shutdown must stop at once");
    }

    /// Waiting for shutdown must not cost anything: an idle worker is not woken by timers, however
    /// long it stays idle (at the start, after a post, after a shutdown called off within a post),
    /// and it reacts to the flag the moment it is set, not at its next check. An hour of minutes
    /// first, then one jump of the paused clock past any deadline a worker could sensibly set: a
    /// check every day, every year or every thousand years wakes it as surely as one a minute. A
    /// worker that wakes itself (a yield after a post) is polled again at once, as by any
    /// executor, until it is idle: only a wake that finds it idle counts.
    async fn an_idle_worker_sleeps_and_reacts_at_once() {
        for idle in [Idle::FromTheStart, Idle::AfterAPost, Idle::AfterACalledOffShutdown] {
            let (shutdown, _) = watch::channel(false);
            let (queue, rx) = queue_with([]);
            let server = FakeServer::new(POST);
            let mut dispatcher = Dispatcher::new(shutdown.subscribe(), rx, server.clone());
            let setting = idle.describe();
            let mut run = task::spawn(dispatcher.run());
            assert_pending!(run_until_idle(&mut run, setting).await);
            if !matches!(idle, Idle::FromTheStart) {
                queue.try_send(hook(1)).expect("queue has room");
                assert_pending!(run_until_idle(&mut run, setting).await);
                if matches!(idle, Idle::AfterACalledOffShutdown) {
                    shutdown.send_replace(true);
                    shutdown.send_replace(false);
                }
                sleep(POST * 2).await;
                if run.is_woken() {
                    assert_pending!(
                        run_until_idle(&mut run, setting).await,
                        "the worker stopped although nobody asked it to"
                    );
                }
                assert_eq!(server.received(), [1], "{setting}: webhook 1 was not posted");
            }

            // Only a wake that finds the worker idle counts; the polls it then takes to go idle
            // again (it may wake itself, a yield, once or more) do not.
            let mut wakeups = 0;
            for _ in 0..60 {
                sleep(Duration::from_secs(60)).await;
                if run.is_woken() {
                    wakeups += 1;
                    assert_pending!(
                        run_until_idle(&mut run, setting).await,
                        "the worker stopped although nobody asked it to"
                    );
                }
            }
            assert_eq!(
                wakeups,
                0,
                "{}, an idle worker was woken {wakeups} times in an hour with nothing to do (no \
                 webhook came and the flag never changed): a timer woke it. An idle worker must \
                 sleep until a webhook or the flag wakes it; a timer in the worker wakes every \
                 worker of every tenant for nothing (and a flag checked on a timer is heard up to \
                 one period late)",
                idle.describe()
            );

            // Every timer is due once the clock has jumped this far: one wake is enough to tell.
            tokio::time::advance(FAR_END).await;
            assert!(
                !run.is_woken(),
                "{setting}, an idle worker stayed idle for an hour and then for {:.0} million \
                 years (the paused clock, in one jump past any deadline a worker could sensibly \
                 set), with no webhook and the flag never changed: it was woken by the jump. A \
                 timer woke it: a check once a day, a year or a millennium is still a timer. An \
                 idle worker must sleep until a webhook or the flag wakes it, however long that \
                 takes",
                FAR_END.as_secs_f64() / (365.0 * 86_400.0 * 1e6)
            );
            shutdown.send_replace(true);
            assert!(
                run.is_woken(),
                "{setting}: setting the shutdown flag must wake the worker at once"
            );
            assert_ready_eq!(
                run.poll(),
                usize::from(!matches!(idle, Idle::FromTheStart)),
                "woken by the shutdown, the worker must stop right away"
            );
        }
    }

    /// The supervisor may drop `run` at any point and call it again. Cut the first run at every
    /// await; once the flag is set, a `run` called again on the same dispatcher must stop at once,
    /// including after a first run that stopped because of that same shutdown.
    async fn a_restarted_run_still_sees_the_shutdown() {
        assert_cancel_safe(
            || {
                let (shutdown, _) = watch::channel(false);
                let (queue, rx) = queue_with([1, 2, 3, 4]);
                let server = FakeServer::new(POST);
                let dispatcher = Dispatcher::new(shutdown.subscribe(), rx, server.clone());
                let trigger = shutdown.clone();
                tokio::spawn(async move {
                    sleep(POST * 2 + POST / 2).await;
                    trigger.send_replace(true);
                });
                (Arc::new(tokio::sync::Mutex::new(dispatcher)), server, shutdown, queue)
            },
            |(dispatcher, ..)| async move { dispatcher.lock().await.run().await },
            |(dispatcher, server, shutdown, queue), outcome| async move {
                // Keep the flag's sender and the queue's sender alive for the whole check: a worker
                // also stops when either is dropped, which would hide the bug.
                let queue_left = queue.clone();
                let _senders = (shutdown, queue);
                // Well after the shutdown; then the supervisor calls `run` again.
                sleep(Duration::from_secs(1)).await;
                let before = server.received().len();
                let start = Instant::now();
                let mut dispatcher = dispatcher.lock().await;
                let again = timeout(Duration::from_secs(60), dispatcher.run()).await;
                let after = server.received().len();
                match again {
                    Err(_) => Err(format!(
                        "the shutdown flag was set, but a `run` called again did not stop within \
                         60 s (virtual) and posted {} more webhook(s): the first `run` had \
                         already seen the flag change, so `changed()` in the new `run` waits for \
                         another change that never comes",
                        after - before
                    )),
                    Ok(_) if after > before => Err(format!(
                        "after shutdown a `run` called again posted {} more webhook(s)",
                        after - before
                    )),
                    Ok(_) if start.elapsed() > Duration::ZERO => Err(format!(
                        "after shutdown a `run` called again took {:?} to stop; it must stop at once",
                        start.elapsed()
                    )),
                    Ok(_) => {
                        // Every webhook was posted or is still on the queue; a `run` dropped in
                        // the middle of a post may have abandoned that one.
                        let left = still_queued(&queue_left);
                        let may_lose = usize::from(outcome.is_cancelled());
                        let cut = match may_lose {
                            1 => " (one more may be the post that was cut)",
                            _ => "",
                        };
                        if after + left + may_lose >= 4 {
                            Ok(())
                        } else {
                            Err(format!(
                                "4 webhooks were queued; after the shutdown {after} had been \
                                 posted and {left} were left on the queue{cut}: the others were \
                                 taken off the queue and never posted, and are lost when the \
                                 process exits. A worker takes a webhook only to post it now"
                            ))
                        }
                    }
                }
            },
        )
        .await;
        settle().await;
    }

    /// The supervisor drops `run` in the middle of a post (to reload the endpoint's settings) and
    /// calls it again: the cut abandons that post for good. Cut while posting the first, second
    /// or third of three webhooks, then the tenant is deleted (its queue closes) and `run` is
    /// called again: it posts the webhooks still queued, and no webhook's post starts twice.
    async fn a_post_cut_short_is_not_posted_again() {
        let cuts = [(Duration::ZERO, 1), (POST / 2, 1), (POST + POST / 2, 2), (POST * 5 / 2, 3)];
        for (cut_at, cut_post) in cuts {
            let (shutdown, _) = watch::channel(false);
            let (queue, rx) = queue_with([1, 2, 3]);
            let server = FakeServer::new(POST);
            let mut dispatcher = Dispatcher::new(shutdown.subscribe(), rx, server.clone());
            let first = timeout(cut_at, dispatcher.run()).await;
            let setting = format!(
                "webhooks 1, 2 and 3 were queued; `run` was cut {cut_at:?} in, during the post of \
                 webhook {cut_post}; the tenant was then deleted (its queue closed) and `run` \
                 called again"
            );
            assert!(first.is_err(), "{setting}: the first `run` returned before it was cut");
            drop(queue);
            let again = timeout(Duration::from_secs(60), dispatcher.run()).await;
            let started = server.started();
            assert!(
                again.is_ok(),
                "{setting}: the second `run` did not return within 60 s (virtual) of a closed \
                 queue; the customer's server saw posts start for {started:?}"
            );
            let twice: Vec<u64> =
                (1..=3).filter(|id| started.iter().filter(|s| *s == id).count() > 1).collect();
            assert!(
                twice.is_empty(),
                "{setting}. The customer's server saw posts start for {started:?}: webhook(s) \
                 {twice:?} posted twice. A cut abandons the post it interrupts: the worker keeps \
                 no webhook in its memory to post again later, and the next `run` posts only \
                 what is on the queue"
            );
            assert_eq!(
                started,
                [1, 2, 3],
                "{setting}: every webhook still on the queue must be posted, in order"
            );
        }
    }

    /// The server spawns each tenant's worker with `tokio::spawn` on its multi-threaded runtime:
    /// `run`'s future must stay `Send`.
    async fn run_can_be_spawned() {
        let (shutdown, _) = watch::channel(true);
        let (_queue, rx) = queue_with([]);
        let mut dispatcher = Dispatcher::new(shutdown.subscribe(), rx, FakeServer::new(POST));
        let run = dispatcher.run();
        assert!(
            kata_support::is_send!(run),
            "the future returned by `run` is not `Send`, so the server can no longer \
             `tokio::spawn` a tenant's worker: it holds something that is not `Send` (a lock \
             guard, an `Rc`, a `watch::Ref`) across an `.await`"
        );
        let posted = timeout(Duration::from_secs(60), run).await;
        assert_eq!(posted, Ok(0), "a worker whose shutdown flag was already set must stop at once");
    }

    /// Shutdown set before the worker started, with an empty queue and with webhooks waiting: it
    /// stops at once, takes nothing off the queue, and leaves it all for the next start.
    async fn a_worker_started_after_shutdown_leaves_the_queue_alone() {
        for waiting in [0, 2] {
            let (shutdown, _) = watch::channel(false);
            shutdown.send_replace(true);
            let (queue, rx) = queue_with(1..=waiting);
            let server = FakeServer::new(POST);
            let mut dispatcher = Dispatcher::new(shutdown.subscribe(), rx, server.clone());
            let outcome = timeout(Duration::from_secs(60), dispatcher.run()).await;
            let left = still_queued(&queue);
            let Ok(count) = outcome else {
                panic!(
                    "the shutdown flag was already `true` when this worker started, with {waiting} \
                     webhook(s) queued, and after 60 s (virtual) it was still running (it posted \
                     {:?}, {left} still queued)",
                    server.received()
                );
            };
            assert!(
                count == 0 && server.received().is_empty() && left == waiting as usize,
                "the shutdown flag was already `true` when this worker started, with {waiting} \
                 webhook(s) queued: it must take none of them, but it posted {:?} and left {left} \
                 on the queue (a webhook taken off the queue and not posted is lost)",
                server.received()
            );
        }
    }

    /// The shutdown sender is dropped (the coordinator is gone), before `run` or while it waits,
    /// with the queue still open: the worker stops.
    async fn a_dropped_shutdown_sender_stops_the_worker() {
        let (shutdown, _) = watch::channel(false);
        let (_queue, rx) = queue_with([]);
        let mut dispatcher = Dispatcher::new(shutdown.subscribe(), rx, FakeServer::new(POST));
        drop(shutdown);
        // Polled by hand, so that a worker that never goes idle (it wakes itself up again at
        // once, a spin) is seen as such, not left to the per-test timeout: a busy task keeps the
        // paused clock from moving, so a virtual timeout would never fire.
        let mut run = task::spawn(dispatcher.run());
        let mut polls = 0;
        let stopped = loop {
            polls += 1;
            if run.poll().is_ready() {
                break true;
            }
            if !run.is_woken() {
                // Idle, waiting for something: give it a minute of the paused clock.
                sleep(Duration::from_secs(60)).await;
                break run.is_woken() && run.poll().is_ready();
            }
            assert!(
                polls < 10,
                "the shutdown sender was dropped before `run` was called (the queue still open \
                 and empty); polled {polls} times, the worker was still running, and it woke \
                 itself up again at once every time: it spins, busy and never stopping, instead \
                 of stopping (nobody can ever ask it to stop any more)"
            );
        };
        drop(run);
        assert!(
            stopped,
            "the shutdown sender was dropped before `run` was called (the queue still open and \
             empty), and after 60 s (virtual) the worker was still running: nobody can ever ask \
             it to stop any more, so it must stop"
        );

        let (shutdown, _) = watch::channel(false);
        let (_queue, rx) = queue_with([]);
        let mut dispatcher = Dispatcher::new(shutdown.subscribe(), rx, FakeServer::new(POST));
        let mut run = task::spawn(dispatcher.run());
        assert_pending!(
            run_until_idle(&mut run, "the queue open and empty, the flag `false`").await,
            "the worker stopped although nobody asked it to"
        );
        drop(shutdown);
        sleep(Duration::from_secs(60)).await;
        assert!(
            run.is_woken() && run.poll().is_ready(),
            "the shutdown sender was dropped while the worker waited (the queue still open and \
             empty), and 60 s (virtual) later the worker was still running"
        );
    }

    /// The shutdown sender is dropped (the server's main task is exiting) with webhooks queued,
    /// before `run` or while it posts: the worker stops as for a shutdown, finishing the post it
    /// is in and taking no new webhook; the rest stay on the queue for the next start.
    async fn a_dropped_shutdown_sender_leaves_the_queued_webhooks() {
        for during_post in [None, Some(1u64), Some(2)] {
            let (shutdown, _) = watch::channel(false);
            let (queue, rx) = queue_with(1..=4);
            let server = FakeServer::new(POST);
            let mut dispatcher = Dispatcher::new(shutdown.subscribe(), rx, server.clone());
            let when = match during_post {
                None => {
                    drop(shutdown);
                    "before `run` was called".to_string()
                }
                Some(post) => {
                    tokio::spawn(async move {
                        sleep(POST * (post as u32 - 1) + POST / 2).await;
                        drop(shutdown);
                    });
                    format!("while webhook {post} was being posted")
                }
            };
            let start = Instant::now();
            let outcome = timeout(Duration::from_secs(60), dispatcher.run()).await;
            let took = start.elapsed();
            let received = server.received();
            let left = still_queued(&queue);
            let posted = during_post.unwrap_or(0);
            let expected: Vec<u64> = (1..=posted).collect();
            assert!(
                outcome == Ok(posted as usize)
                    && received == expected
                    && left == (4 - posted) as usize
                    && took == POST * posted as u32,
                "4 webhooks were queued and the shutdown sender was dropped {when} (the server \
                 is exiting: nobody can ask the worker anything any more), the queue still open: \
                 the worker must stop as for a shutdown, finishing the post it is in and taking \
                 no new webhook, so that the rest stay on the queue for the next start. It \
                 returned {outcome:?} after {took:?}, the server received {received:?}, and \
                 {left} webhook(s) were left on the queue (the process is killed soon after its \
                 main task exits: a backlog posted now is cut off mid-way)"
            );
        }
    }

    /// The flag is sent again as `false` (a cancelled deploy re-asserts "keep running"), while the
    /// worker is idle and while it posts: `watch` wakes every receiver on each send, whatever the
    /// value, and the worker must keep going; only a `true` stops it.
    async fn a_false_flag_does_not_stop_the_worker() {
        let (shutdown, _) = watch::channel(false);
        let (queue, rx) = queue_with([]);
        let server = FakeServer::new(POST);
        let mut dispatcher = Dispatcher::new(shutdown.subscribe(), rx, server.clone());
        let setting = "the shutdown flag was sent as `false`, while the worker waited and while \
                       it posted";
        let mut run = task::spawn(dispatcher.run());
        assert_pending!(
            run_until_idle(&mut run, setting).await,
            "the worker stopped although nobody asked it to"
        );
        shutdown.send_replace(false);
        if run.is_woken() {
            assert_pending!(
                run_until_idle(&mut run, setting).await,
                "the shutdown flag was sent as `false` while the worker was idle, and the worker \
                 stopped: only `true` asks it to stop"
            );
        }
        queue.try_send(hook(1)).expect("queue has room");
        queue.try_send(hook(2)).expect("queue has room");
        for _ in 0..4 {
            sleep(POST / 2).await;
            // Half-way through a post (webhook 1, then webhook 2), `false` is sent again.
            shutdown.send_replace(false);
            if run.is_woken() {
                assert_pending!(
                    run_until_idle(&mut run, setting).await,
                    "the shutdown flag was sent as `false` while the worker posted, and the worker \
                     stopped after posting {:?}: only `true` asks it to stop",
                    server.received()
                );
            }
        }
        sleep(Duration::from_secs(1)).await;
        if run.is_woken() {
            assert_pending!(
                run_until_idle(&mut run, setting).await,
                "the worker stopped although the flag was never `true`"
            );
        }
        assert_eq!(
            server.received(),
            [1, 2],
            "webhooks 1 and 2 were queued while the flag was `false` (sent again as `false` \
             meanwhile): both must be posted"
        );
        shutdown.send_replace(true);
        assert!(run.is_woken(), "setting the shutdown flag must wake the worker at once");
        assert_ready_eq!(run.poll(), 2, "woken by the shutdown, the worker must stop right away");
    }

    /// A deploy started and called off within one post: during the post of webhook 1 (of three
    /// queued) the flag is sent as `true` and then `false` again, at one instant or a fifth of a
    /// post apart. What decides is the flag when that post is done: `false`, so the worker
    /// carries on with webhooks 2 and 3; `true` (after `false`, `true`), so it stops and leaves
    /// them on the queue.
    async fn a_shutdown_called_off_within_a_post_does_not_stop_the_worker() {
        let cases: [&[bool]; 5] =
            [&[true, false], &[true, true, false], &[true, false, false], &[false, true], &[
                true, false, true,
            ]];
        for values in cases {
            for apart in [false, true] {
                let (shutdown, _) = watch::channel(false);
                let (queue, rx) = queue_with(1..=3);
                let server = FakeServer::new(POST);
                let mut dispatcher = Dispatcher::new(shutdown.subscribe(), rx, server.clone());
                let trigger = shutdown.clone();
                tokio::spawn(async move {
                    if !apart {
                        sleep(POST / 2).await;
                    }
                    for value in values {
                        if apart {
                            sleep(POST / 5).await;
                        }
                        trigger.send_replace(*value);
                    }
                    // Long after every webhook could have been posted: stop for good.
                    sleep(POST * 10).await;
                    trigger.send_replace(true);
                });
                let posted = timeout(Duration::from_secs(60), dispatcher.run()).await.expect(
                    "the worker did not stop within 60 s (virtual) of a shutdown sent while it \
                     waited",
                );
                let stops = values.last() == Some(&true);
                let expected: &[u64] = if stops { &[1] } else { &[1, 2, 3] };
                let received = server.received();
                let left = still_queued(&queue);
                let when = if apart { "a fifth of a post apart" } else { "at one instant" };
                let what = if stops {
                    "was `true` when that post was done, so the worker must finish it, take no \
                     new webhook and leave webhooks 2 and 3 on the queue"
                } else {
                    "was back to `false` when that post was done (a deploy started and called \
                     off while the worker posted), so the worker must carry on and post webhooks \
                     2 and 3; only a flag that is `true` stops it"
                };
                assert!(
                    received == expected && posted == expected.len() && left == 3 - expected.len(),
                    "webhooks 1, 2 and 3 were queued; while webhook 1 was being posted the \
                     shutdown flag was sent as {values:?}, {when}. The flag {what}. The server \
                     received {received:?} before the final shutdown, `run` reported {posted} \
                     posted, and {left} webhook(s) were left on the queue"
                );
            }
        }
    }

    /// A shutdown that is called off: `run` stops for the flag (already set when it was called,
    /// set while it waits, or set while it posts), then the flag is sent back as `false` (the
    /// deploy was called off) and the supervisor calls `run` again with webhooks queued. The flag
    /// is `false`, so the new `run` posts them and stops only at the next `true`; twice over on
    /// the same dispatcher.
    async fn a_run_after_a_called_off_shutdown_posts_again() {
        for when in [StoppedWhen::BeforeRun, StoppedWhen::WhileIdle, StoppedWhen::WhilePosting] {
            let (shutdown, _) = watch::channel(false);
            let (queue, rx) = queue_with([]);
            let server = FakeServer::new(POST);
            let mut dispatcher = Dispatcher::new(shutdown.subscribe(), rx, server.clone());
            let mut next_id = 1;
            for round in 1..=2 {
                let how = when.describe();
                // The previous round ended with the flag `true`; this round's shutdown comes
                // `when` says, so a flag that is not yet set is called off first.
                shutdown.send_replace(matches!(when, StoppedWhen::BeforeRun));
                let stop = async {
                    match when {
                        StoppedWhen::BeforeRun => {}
                        StoppedWhen::WhileIdle => {
                            sleep(Duration::from_secs(1)).await;
                            shutdown.send_replace(true);
                        }
                        StoppedWhen::WhilePosting => {
                            enqueue(&queue, next_id, || {
                                format!(
                                    "round {round}: an earlier `run` stopped for a shutdown, which \
                                     was called off (the flag sent back as `false`)"
                                )
                            });
                            next_id += 1;
                            sleep(POST / 2).await;
                            shutdown.send_replace(true);
                        }
                    }
                };
                let first = async { tokio::join!(dispatcher.run(), stop) };
                let first = timeout(Duration::from_secs(60), first).await;
                assert!(
                    first.is_ok(),
                    "round {round}: {how}, and `run` did not stop within 60 s (virtual)"
                );

                // The deploy is called off; the supervisor starts the worker again.
                shutdown.send_replace(false);
                let called_off = [next_id, next_id + 1];
                next_id += 2;
                for id in called_off {
                    enqueue(&queue, id, || {
                        format!(
                            "round {round}: `run` stopped for shutdown ({how}), and the shutdown \
                             was called off (the flag sent back as `false`)"
                        )
                    });
                }
                let before = server.received();
                let stopped = AtomicBool::new(false);
                let run = async {
                    let posted = dispatcher.run().await;
                    stopped.store(true, Ordering::SeqCst);
                    posted
                };
                let supervisor = async {
                    sleep(Duration::from_secs(1)).await;
                    let new: Vec<u64> = server.received()[before.len()..].to_vec();
                    let still_running = !stopped.load(Ordering::SeqCst);
                    assert!(
                        new == called_off && still_running,
                        "round {round}: `run` stopped for shutdown ({how}); then the shutdown was \
                         called off (the flag sent back as `false`) and `run` was called again \
                         with webhooks {called_off:?} queued. One second later it had posted \
                         {new:?} and {}. Only `true` stops the worker: with the flag `false` a \
                         new `run` carries on, whatever an earlier `run` saw",
                        if still_running { "was still running" } else { "had returned" }
                    );
                    shutdown.send_replace(true);
                };
                let again = async { tokio::join!(run, supervisor) };
                let again = timeout(Duration::from_secs(60), again).await;
                let Ok((posted, ())) = again else {
                    panic!(
                        "round {round}: after a called-off shutdown, the flag was set again and \
                         `run` did not stop within 60 s (virtual)"
                    );
                };
                assert_eq!(
                    posted, 2,
                    "round {round}: the `run` started after the called-off shutdown posted \
                     {called_off:?} and must report 2 posted"
                );
            }
        }
    }

    /// A customer's server that is slow but alive (it takes a year to answer each webhook): the
    /// worker finishes every post it starts, with the flag `false`, through a shutdown, through
    /// a shutdown called off, and through the shutdown sender being dropped. A post cut short
    /// (a timeout on the post, a grace period on the shutdown) has taken a webhook off the queue
    /// that is never posted.
    async fn a_slow_post_is_finished_whatever_happens_meanwhile() {
        for during in [
            DuringSlowPost::Nothing,
            DuringSlowPost::Shutdown,
            DuringSlowPost::CalledOff,
            DuringSlowPost::SenderDropped,
        ] {
            let (shutdown, _) = watch::channel(false);
            let (queue, rx) = queue_with([1, 2]);
            let server = FakeServer::new(SLOW_POST);
            let mut dispatcher = Dispatcher::new(shutdown.subscribe(), rx, server.clone());
            let second = Duration::from_secs(1);
            tokio::spawn(async move {
                match during {
                    DuringSlowPost::Nothing => {
                        sleep(SLOW_POST + SLOW_POST / 2).await;
                        shutdown.send_replace(true);
                    }
                    DuringSlowPost::Shutdown => {
                        sleep(second).await;
                        shutdown.send_replace(true);
                    }
                    DuringSlowPost::CalledOff => {
                        sleep(second).await;
                        shutdown.send_replace(true);
                        sleep(SLOW_POST / 2 - second).await;
                        shutdown.send_replace(false);
                        sleep(SLOW_POST).await;
                        shutdown.send_replace(true);
                    }
                    DuringSlowPost::SenderDropped => {
                        sleep(second).await;
                        drop(shutdown);
                    }
                }
                // Keep the sender (when it is not the one dropped) until the worker is done.
                sleep(SLOW_POST * 4).await;
            });
            let start = Instant::now();
            let outcome = timeout(SLOW_POST * 3, dispatcher.run()).await;
            let took = start.elapsed();
            let received = server.received();
            let left = still_queued(&queue);
            let posted = during.posted();
            let expected: Vec<u64> = (1..=posted).collect();
            let expected_took = SLOW_POST * posted as u32;
            assert!(
                outcome == Ok(posted as usize)
                    && received == expected
                    && left == (2 - posted) as usize
                    && took == expected_took,
                "webhooks 1 and 2 were queued, and the customer's server takes {} to answer \
                 each (slow but alive); {}. The worker must finish every post it starts, \
                 however long the server takes, and take no new webhook once the flag is `true` \
                 (or its sender gone) when a post is done: `run` should return {posted} after \
                 {}, the server receive {expected:?}, and {} webhook(s) stay on \
                 the queue. It returned {outcome:?} after {}, the server received \
                 {received:?}, and {left} webhook(s) were left on the queue: a post cut short \
                 (by a timeout on the post or a grace period on the shutdown) has taken its \
                 webhook off the queue, and it is never posted",
                in_days(SLOW_POST),
                during.describe(),
                in_days(expected_took),
                2 - posted,
                in_days(took),
            );
        }
    }

    /// The far end of a slow post: the customer's server holds webhook 1 for 146 million years
    /// (one jump of the paused clock, past any timeout on a post or grace period on a shutdown a
    /// worker could set) and then answers. With the flag `false`, through a shutdown, a shutdown
    /// called off and a dropped shutdown sender, the post is still under way when the server
    /// answers (never dropped), and the worker then goes on as after any post: webhook 2 is
    /// posted, or stays on the queue after a shutdown.
    async fn a_post_is_never_given_up_however_long_it_takes() {
        for during in [
            DuringSlowPost::Nothing,
            DuringSlowPost::Shutdown,
            DuringSlowPost::CalledOff,
            DuringSlowPost::SenderDropped,
        ] {
            let (shutdown, _) = watch::channel(false);
            let (open, gate) = watch::channel(false);
            let (queue, rx) = queue_with([1, 2]);
            let server = GatedServer { gate, received: Arc::default(), abandoned: Arc::default() };
            let mut dispatcher = Dispatcher::new(shutdown.subscribe(), rx, server.clone());
            let setting = format!(
                "webhooks 1 and 2 were queued, and the customer's server held webhook 1 for {} \
                 (slow but alive); {}",
                kata_support::time::spoken(FAR_END),
                during.describe().replace("half-way through it", "a second later").replace(
                    " and set again half-way through the second post",
                    ""
                )
            );
            let mut run = task::spawn(dispatcher.run());
            assert_pending!(run_until_idle(&mut run, &setting).await);
            let mut shutdown = Some(shutdown);
            tokio::time::advance(Duration::from_secs(1)).await;
            match during {
                DuringSlowPost::Nothing => {}
                DuringSlowPost::Shutdown => {
                    shutdown.as_ref().unwrap().send_replace(true);
                }
                DuringSlowPost::CalledOff => {
                    shutdown.as_ref().unwrap().send_replace(true);
                    let _ = run_until_idle(&mut run, &setting).await;
                    tokio::time::advance(Duration::from_secs(1)).await;
                    shutdown.as_ref().unwrap().send_replace(false);
                }
                DuringSlowPost::SenderDropped => shutdown = None,
            }
            let early = run_until_idle(&mut run, &setting).await;
            tokio::time::advance(FAR_END).await;
            let late = run_until_idle(&mut run, &setting).await;
            let (received, abandoned) =
                (server.received.lock().unwrap().clone(), server.abandoned.lock().unwrap().clone());
            assert!(
                early.is_pending() && late.is_pending() && received.is_empty()
                    && abandoned.is_empty(),
                "{setting}. Before the server answered, `run` was {} and the server had \
                 received {received:?}, with post(s) of {abandoned:?} dropped unanswered; \
                 expected `run` still posting webhook 1: the worker finishes every post it \
                 starts, however long the server takes (a post cut short by a timeout or a \
                 grace period has taken its webhook off the queue for nothing)",
                if early.is_ready() || late.is_ready() { "finished" } else { "still pending" },
            );
            open.send_replace(true);
            let after = run_until_idle(&mut run, &setting).await;
            let posted = during.posted();
            let (outcome, expected_outcome) = match during {
                DuringSlowPost::Nothing | DuringSlowPost::CalledOff => {
                    let idle = after.is_pending();
                    shutdown.as_ref().unwrap().send_replace(true);
                    let done = run_until_idle(&mut run, &setting).await;
                    (
                        format!(
                            "{} after the answer, then {done:?} once the flag was set",
                            if idle { "idle" } else { "done" }
                        ),
                        idle && done == std::task::Poll::Ready(2),
                    )
                }
                DuringSlowPost::Shutdown | DuringSlowPost::SenderDropped => {
                    let seen = format!("{after:?} once the server answered");
                    (seen, after == std::task::Poll::Ready(1))
                }
            };
            let received = server.received.lock().unwrap().clone();
            let expected: Vec<u64> = (1..=posted).collect();
            let left = still_queued(&queue);
            assert!(
                expected_outcome && received == expected && left == (2 - posted) as usize,
                "{setting}. `run` was {outcome}, the server received {received:?} and {left} \
                 webhook(s) stayed on the queue; expected it to finish webhook 1's post whenever \
                 the server answered, then {}, the server receiving {expected:?}",
                if posted == 2 {
                    "post webhook 2 and wait idle until the flag is set (returning 2)"
                } else {
                    "take no new webhook (returning 1), webhook 2 staying on the queue"
                }
            );
        }
    }

    /// A long backlog: 10,000 webhooks queued (past any batch a worker might take off the queue
    /// at once when the backlog is long), the customer's server taking 2 ms each, and the flag
    /// set a millisecond into post 5,001. The worker posts them one by one, finishes that
    /// post and takes no new webhook: `run` returns 5,001 and the other 4,999 are still on the
    /// queue (none waits in the worker's memory, which the process loses when it exits). One
    /// `select!` seed: nothing here is ready at the same moment as anything else.
    fn a_long_backlog_is_posted_one_by_one_and_left_on_the_queue_at_shutdown() {
        const QUEUED: u64 = 10_000;
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let (shutdown, _) = watch::channel(false);
            let (queue, rx) = mpsc::channel(QUEUED as usize);
            for id in 1..=QUEUED {
                queue.try_send(hook(id)).expect("queue has room");
            }
            let server = FakeServer::new(Duration::from_millis(2));
            let mut dispatcher = Dispatcher::new(shutdown.subscribe(), rx, server.clone());
            tokio::spawn(async move {
                sleep(Duration::from_millis(10_001)).await;
                shutdown.send_replace(true);
                sleep(Duration::from_secs(3600)).await;
            });
            let outcome = timeout(Duration::from_secs(60), dispatcher.run()).await;
            let received = server.received();
            let left = still_queued(&queue);
            let in_order = received.iter().copied().eq(1..=received.len() as u64);
            assert!(
                outcome == Ok(5_001) && received.len() == 5_001 && in_order && left == 4_999,
                "{QUEUED} webhooks were queued, the customer's server takes 2 ms to answer each, \
                 and the flag was set a millisecond into the post of webhook 5001: `run` \
                 returned {outcome:?}, the server received {} webhook(s){}, and {left} stayed on \
                 the queue; expected `run` to return 5001 once that post was done, the server \
                 to receive webhooks 1 to 5001 in order, and the other 4999 to stay on the queue \
                 (a webhook taken off the queue and not posted is lost when the process exits)",
                received.len(),
                if in_order { " in order" } else { ", not 1, 2, 3, ... in order" },
            );
        });
    }

    /// The flag is set and a webhook arrives at the same moment while the worker is idle: both
    /// are ready when it wakes, and the shutdown wins, every time.
    async fn a_shutdown_and_a_webhook_at_once_take_no_webhook() {
        for round in 0..8 {
            let (shutdown, _) = watch::channel(false);
            let (queue, rx) = queue_with([]);
            let server = FakeServer::new(POST);
            let mut dispatcher = Dispatcher::new(shutdown.subscribe(), rx, server.clone());
            let mut run = task::spawn(dispatcher.run());
            assert_pending!(
                run_until_idle(&mut run, "the queue empty, the flag `false`").await,
                "the worker stopped although nobody asked it to"
            );
            shutdown.send_replace(true);
            queue.try_send(hook(1)).expect("queue has room");
            let outcome = timeout(Duration::from_secs(60), run).await;
            let left = still_queued(&queue);
            assert!(
                matches!(outcome, Ok(0)) && server.received().is_empty() && left == 1,
                "round {round}: the shutdown flag was set and webhook 1 queued at the same moment \
                 while the worker was idle; it must stop without taking the webhook, but it \
                 posted {:?} and left {left} webhook(s) queued",
                server.received()
            );
        }
    }
    /// The queue closes (every sender dropped: the tenant was deleted) while the shutdown flag is
    /// `false` and its sender alive: before the first poll of `run`, while it waits, and while
    /// it posts. The worker posts what is still queued and stops, without waiting for a shutdown
    /// that may never come.
    async fn a_closed_queue_stops_the_worker_without_a_shutdown() {
        const IDLE_BEFORE_CLOSE: Duration = Duration::from_millis(5);
        #[derive(Debug, Clone, Copy)]
        enum Closed {
            BeforeRun,
            BeforeFirstPoll,
            WhileIdle,
            DuringPost(u64),
        }
        for queued in [0u64, 1, 3] {
            for closed in [
                Closed::BeforeRun,
                Closed::BeforeFirstPoll,
                Closed::WhileIdle,
                Closed::DuringPost(1),
                Closed::DuringPost(3),
            ] {
                let when = match closed {
                    Closed::BeforeRun => "before `run` was called".to_owned(),
                    Closed::BeforeFirstPoll => {
                        "after `run` was called and before its future was first polled".to_owned()
                    }
                    Closed::WhileIdle => "while the worker waited on the empty queue".to_owned(),
                    Closed::DuringPost(n) if n <= queued => {
                        format!("while webhook {n} was being posted")
                    }
                    Closed::DuringPost(_) => continue,
                };
                if matches!(closed, Closed::WhileIdle) && queued > 0 {
                    continue;
                }
                let (shutdown, _) = watch::channel(false);
                let (queue, rx) = queue_with(1..=queued);
                let server = FakeServer::new(POST);
                let mut dispatcher = Dispatcher::new(shutdown.subscribe(), rx, server.clone());
                let start = Instant::now();
                let outcome = match closed {
                    Closed::BeforeRun => {
                        drop(queue);
                        timeout(Duration::from_secs(60), dispatcher.run()).await
                    }
                    Closed::BeforeFirstPoll => {
                        let run = timeout(Duration::from_secs(60), dispatcher.run());
                        drop(queue);
                        run.await
                    }
                    Closed::WhileIdle | Closed::DuringPost(_) => {
                        let at = match closed {
                            Closed::DuringPost(n) => POST * (n as u32 - 1) + POST / 2,
                            _ => IDLE_BEFORE_CLOSE,
                        };
                        tokio::spawn(async move {
                            sleep(at).await;
                            drop(queue);
                        });
                        timeout(Duration::from_secs(60), dispatcher.run()).await
                    }
                };
                let took = start.elapsed();
                let received = server.received();
                let expected: Vec<u64> = (1..=queued).collect();
                let expected_took = match closed {
                    Closed::WhileIdle => IDLE_BEFORE_CLOSE,
                    _ => POST * queued as u32,
                };
                let seen = match outcome {
                    Err(_) => format!(
                        "60 s (virtual) later `run` had not returned (the server received \
                         {received:?}): it waits for a shutdown that nobody has asked for, and \
                         the tenant's worker never ends"
                    ),
                    Ok(posted) => format!(
                        "`run` returned {posted} after {took:?}, the server received {received:?}"
                    ),
                };
                assert!(
                    outcome == Ok(queued as usize) && received == expected && took == expected_took,
                    "{queued} webhook(s) were queued and the queue was closed {when} (every \
                     sender dropped: the tenant was deleted), the shutdown flag still `false` and \
                     its sender alive: the worker must post what is still queued and stop, \
                     returning {queued} after {expected_took:?}. {seen}"
                );
                drop(shutdown);
            }
        }
    }
    /// The queue is closed (the tenant was deleted) and a shutdown comes too: the flag set before
    /// `run`, or set or its sender dropped during a post, with the queue closed before `run` or
    /// during that post. A closed queue does not outrank a shutdown: the worker finishes the post
    /// it is in and takes no new webhook.
    async fn a_closed_queue_still_obeys_the_shutdown() {
        #[derive(Debug, Clone, Copy)]
        enum Stop {
            FlagBeforeRun,
            SenderDroppedBeforeRun,
            FlagDuringFirstPost,
            SenderDroppedDuringFirstPost,
        }
        for queue_closed_before_run in [true, false] {
            for stop in [
                Stop::FlagBeforeRun,
                Stop::SenderDroppedBeforeRun,
                Stop::FlagDuringFirstPost,
                Stop::SenderDroppedDuringFirstPost,
            ] {
                let (shutdown, _) = watch::channel(false);
                let (queue, rx) = queue_with(1..=4);
                let server = FakeServer::new(POST);
                let mut dispatcher = Dispatcher::new(shutdown.subscribe(), rx, server.clone());
                let (closed_when, queue_at) = if queue_closed_before_run {
                    drop(queue);
                    ("before `run` was called", None)
                } else {
                    ("a quarter into the post of webhook 1", Some((POST / 4, queue)))
                };
                let (stop_when, expected): (&str, Vec<u64>) = match stop {
                    Stop::FlagBeforeRun => {
                        shutdown.send_replace(true);
                        ("the shutdown flag was set before `run` was called", vec![])
                    }
                    Stop::SenderDroppedBeforeRun => {
                        ("the shutdown sender was dropped before `run` was called", vec![])
                    }
                    Stop::FlagDuringFirstPost => {
                        ("the shutdown flag was set half-way through the post of webhook 1", vec![
                            1,
                        ])
                    }
                    Stop::SenderDroppedDuringFirstPost => (
                        "the shutdown sender was dropped half-way through the post of webhook 1",
                        vec![1],
                    ),
                };
                if let Some((at, queue)) = queue_at {
                    tokio::spawn(async move {
                        sleep(at).await;
                        drop(queue);
                    });
                }
                match stop {
                    Stop::FlagBeforeRun => {}
                    Stop::SenderDroppedBeforeRun => drop(shutdown),
                    Stop::FlagDuringFirstPost => {
                        tokio::spawn(async move {
                            sleep(POST / 2).await;
                            shutdown.send_replace(true);
                            // Kept alive until well after the worker should have stopped.
                            sleep(Duration::from_secs(3600)).await;
                            drop(shutdown);
                        });
                    }
                    Stop::SenderDroppedDuringFirstPost => {
                        tokio::spawn(async move {
                            sleep(POST / 2).await;
                            drop(shutdown);
                        });
                    }
                }
                let outcome = timeout(Duration::from_secs(60), dispatcher.run()).await;
                let received = server.received();
                let seen = match outcome {
                    Err(_) => format!(
                        "60 s (virtual) later `run` had not returned (the server received \
                         {received:?})"
                    ),
                    Ok(posted) => format!("`run` returned {posted}, the server received {received:?}"),
                };
                assert!(
                    outcome == Ok(expected.len()) && received == expected,
                    "webhooks 1 to 4 were queued, the queue was closed {closed_when} (every sender \
                     dropped: the tenant was deleted), and {stop_when}: a closed queue does not \
                     outrank a shutdown, so the worker must finish the post it is in, take no new \
                     webhook, and return {} having posted {expected:?}. {seen}",
                    expected.len()
                );
            }
        }
    }
}
