//! # Kata 15 solution: wait for the flag, not for a change
//!
//! The worker waits with `shutdown.wait_for(|stop| *stop)`. Unlike `changed()`, `wait_for` looks
//! at the current value first, whether or not this receiver has seen it, and only then waits for
//! new values. A dispatcher started after the server began shutting down sees `true` at once and
//! stops; so does a `run` called again after an earlier one already stopped.

use std::future::Future;

use tokio::sync::{mpsc, watch};

/// One webhook to post to a customer's server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Unique per webhook, sent as the idempotency header.
    pub id: u64,
    /// The event name, such as "invoice.paid".
    pub event: String,
}

/// Where a tenant's webhooks go: an HTTP client in production, a fake in the tests.
pub trait Endpoint {
    /// Posts one webhook and resolves once the customer's server has answered.
    fn post(&self, hook: Webhook) -> impl Future<Output = ()>;
}

/// One tenant's webhook worker.
#[derive(Debug)]
pub struct Dispatcher<E> {
    shutdown: watch::Receiver<bool>,
    queue: mpsc::Receiver<Webhook>,
    endpoint: E,
}

impl<E: Endpoint> Dispatcher<E> {
    /// A worker that posts the webhooks of `queue` to `endpoint` until `shutdown` is `true`.
    pub fn new(
        shutdown: watch::Receiver<bool>,
        queue: mpsc::Receiver<Webhook>,
        endpoint: E,
    ) -> Self {
        Dispatcher { shutdown, queue, endpoint }
    }

    /// Posts webhooks until shutdown, and returns how many it posted.
    ///
    /// Shutdown is graceful: a webhook being posted is finished, no new one is taken, and the
    /// rest stay on the queue for the next start. The worker also stops if the queue closes or
    /// the shutdown sender is dropped. The supervisor may drop `run` (to reload the endpoint's
    /// settings, say) and call it again on the same dispatcher.
    ///
    /// # Cancel safety
    ///
    /// Dropping `run` while it waits loses nothing: `wait_for` and `recv` are both cancel safe,
    /// and calling `run` again resumes where it was, shutdown included. Dropping it while a
    /// webhook is being posted abandons that post.
    pub async fn run(&mut self) -> usize {
        let mut posted = 0;
        loop {
            tokio::select! {
                // Shutdown first: once it is requested, no new webhook may be taken.
                biased;
                // Checks the current value before it waits: a flag set before this worker
                // subscribed, or already seen by an earlier `run`, still stops it at once.
                () = shutdown_requested(&mut self.shutdown) => break,
                hook = self.queue.recv() => match hook {
                    Some(hook) => {
                        self.endpoint.post(hook).await;
                        posted += 1;
                    }
                    // Every sender of the queue is gone: the tenant was deleted.
                    None => break,
                },
            }
        }
        posted
    }
}

/// Resolves once the shutdown flag is `true`, now or later, or once it can no longer change.
///
/// # Cancel safety
///
/// Cancel safe, like the `watch::Receiver::wait_for` it wraps: if it is dropped, the value it
/// last looked at was not `true`, and a new call looks again.
async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    // `wait_for` hands back a read guard on the value. Dropping it here, instead of letting
    // `select!` keep it in its output while the other branch posts a webhook, keeps `run`
    // `Send` (a guard is not) and never holds the lock across an `.await`. An `Err` means every
    // sender is gone: nobody can ever ask this worker to keep going, so it stops too.
    let _ = shutdown.wait_for(|stop| *stop).await;
}
