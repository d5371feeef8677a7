//! Hidden tests for kata 15: a dispatcher must stop when the shutdown flag is set, including a
//! dispatcher started after it was set and a `run` called again after an earlier one stopped;
//! it must notice at once, without polling.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kata_support::{assert_cancel_safe, hidden_test, settle};
use shutdown_watch_missed::{Dispatcher, Endpoint, Webhook};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, timeout};
use tokio_test::{assert_pending, assert_ready_eq, task};

/// A customer's server that answers each webhook after `latency` and records what it got.
#[derive(Debug, Clone)]
struct FakeServer {
    latency: Duration,
    received: Arc<Mutex<Vec<u64>>>,
}

impl FakeServer {
    fn new(latency: Duration) -> Self {
        FakeServer { latency, received: Arc::default() }
    }

    fn received(&self) -> Vec<u64> {
        self.received.lock().unwrap().clone()
    }
}

impl Endpoint for FakeServer {
    fn post(&self, hook: Webhook) -> impl Future<Output = ()> {
        let latency = self.latency;
        let received = self.received.clone();
        async move {
            sleep(latency).await;
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

    /// A shutdown during a post lets that post finish, then stops: no new webhook is taken.
    async fn a_shutdown_during_a_post_finishes_it_and_takes_no_more() {
        let (shutdown, _) = watch::channel(false);
        let (_queue, rx) = queue_with([1, 2, 3]);
        let server = FakeServer::new(POST);
        let mut dispatcher = Dispatcher::new(shutdown.subscribe(), rx, server.clone());
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            sleep(POST / 2).await;
            trigger.send_replace(true);
        });
        let posted = timeout(Duration::from_secs(60), dispatcher.run())
            .await
            .expect("the worker did not stop within 60 s (virtual) of a shutdown sent while it worked");
        assert_eq!(posted, 1);
        assert_eq!(server.received(), [1], "after the shutdown no new webhook may be taken");
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

    /// Waiting for shutdown must not cost anything: an idle worker is not woken by timers, and it
    /// reacts to the flag the moment it is set, not at its next check.
    async fn an_idle_worker_sleeps_and_reacts_at_once() {
        let (shutdown, _) = watch::channel(false);
        let (_queue, rx) = queue_with([]);
        let server = FakeServer::new(POST);
        let mut dispatcher = Dispatcher::new(shutdown.subscribe(), rx, server);
        let mut run = task::spawn(dispatcher.run());
        assert_pending!(run.poll());

        let mut wakeups = 0;
        for _ in 0..60 {
            sleep(Duration::from_secs(60)).await;
            while run.is_woken() {
                wakeups += 1;
                assert_pending!(run.poll(), "the worker stopped although nobody asked it to");
            }
        }
        assert_eq!(
            wakeups, 0,
            "an idle worker was woken {wakeups} times in an hour with nothing to do: it polls the \
             flag on a timer. Polling delays shutdown by up to one period and wakes every worker of \
             every tenant for nothing; wait on the watch channel instead"
        );
        shutdown.send_replace(true);
        assert!(run.is_woken(), "setting the shutdown flag must wake the worker at once");
        assert_ready_eq!(run.poll(), 0, "woken by the shutdown, the worker must stop right away");
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
            |(dispatcher, server, shutdown, queue), _outcome| async move {
                // Keep the flag's sender and the queue's sender alive for the whole check: a worker
                // also stops when either is dropped, which would hide the bug.
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
                    Ok(_) => Ok(()),
                }
            },
        )
        .await;
        settle().await;
    }
}
