//! Decoy for kata 15: `mark_changed()` when the worker is built, then `changed()`: a second `run` still hangs.
//!
//! A SaaS platform notifies its customers' servers with webhooks. Each tenant has a
//! [`Dispatcher`]: a worker that takes [`Webhook`]s off the tenant's queue and posts them to the
//! customer's [`Endpoint`], one at a time. Dispatchers are started lazily, when a tenant's first
//! webhook shows up, and they all listen to one shutdown flag, a `tokio::sync::watch` channel
//! that the server flips to `true` when it is asked to stop:
//!
//! ```text
//! let dispatcher = Dispatcher::new(shutdown_tx.subscribe(), queue, endpoint);
//! ```
//!
//! The worker waits for the flag with `shutdown.changed()`. But `changed()` does not ask "is the
//! flag set?"; it asks "has the flag been *sent again* since I last looked?". A receiver made by
//! `subscribe()` has already looked at the current value. A dispatcher started after the flag
//! was flipped waits for a change that never comes, and the server's shutdown hangs. Read
//! `README.md` for the whole story.

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
        // Force one initial notification, so the first `changed()` looks at the current value.
        let mut shutdown = shutdown;
        shutdown.mark_changed();
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
    /// Dropping `run` while it waits loses nothing: both waits in its `select!` are cancel safe.
    /// Dropping it while a webhook is being posted abandons that post. The bug here is not a
    /// cancellation but a missed notification: a shutdown sent before this receiver subscribed
    /// (or already seen by an earlier `run`) is never noticed.
    pub async fn run(&mut self) -> usize {
        let mut posted = 0;
        loop {
            tokio::select! {
                // Shutdown first: once it is requested, no new webhook may be taken.
                biased;
                changed = self.shutdown.changed() => {
                    if changed.is_err() || *self.shutdown.borrow_and_update() {
                        break;
                    }
                }
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
