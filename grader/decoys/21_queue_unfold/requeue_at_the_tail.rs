//! Decoy for kata 21: a drop guard that puts an unsent message back, but at the tail of the queue.
//!
//! A newsletter service sends its outgoing email from a queue. The email provider allows only so
//! many messages per second, so the consumer is a `Stream` that yields one message per free slot
//! of a [`RateLimiter`]. The dispatcher consumes it with `while let Some(m) = stream.next().await`.
//!
//! The dispatcher does not run for ever. It runs inside a `select!` against the shutdown signal,
//! and it is restarted for every drain window, so the stream is dropped whenever shutdown or the
//! end of a window arrives. Dropping a stream drops whatever its unfinished `unfold` future was
//! holding. Read `README.md` for the whole story.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use futures::stream;
use tokio::time::{self, Instant};

/// One outgoing email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u64,
    pub to: String,
    pub subject: String,
}

/// The outgoing-mail queue (an in-memory fake of the broker). Clones share one queue.
#[derive(Debug, Clone, Default)]
pub struct Queue {
    messages: Arc<Mutex<VecDeque<Message>>>,
}

impl Queue {
    /// An empty queue.
    pub fn new() -> Self {
        Queue::default()
    }

    /// Appends a message at the tail.
    pub fn push(&self, message: Message) {
        self.lock().push_back(message);
    }

    /// Puts a message that was taken but not handled back at the *head*, where it came from.
    pub fn requeue(&self, message: Message) {
        self.lock().push_front(message);
    }

    /// Takes the message at the head. Once taken, it exists only where the caller keeps it.
    pub fn pop(&self) -> Option<Message> {
        self.lock().pop_front()
    }

    /// True when no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The ids of the waiting messages, head first.
    pub fn ids(&self) -> Vec<u64> {
        self.lock().iter().map(|m| m.id).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Message>> {
        self.messages.lock().expect("queue lock")
    }
}

/// The provider's rate limit: at most `n` messages per second, evenly spaced. Clones share the
/// limit.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    spacing: Duration,
    last_slot: Arc<Mutex<Option<Instant>>>,
}

impl RateLimiter {
    /// A limiter that hands out `n` slots per second; the first one is free at once.
    pub fn per_second(n: u32) -> Self {
        assert!(n > 0, "a rate limit must allow at least one message per second");
        RateLimiter { spacing: Duration::from_secs(1) / n, last_slot: Arc::new(Mutex::new(None)) }
    }

    /// Waits for the next free slot and claims it.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a slot is claimed only when the wait is over, so a wait that is dropped
    /// claims nothing and costs nothing.
    pub async fn acquire(&self) {
        loop {
            let free_at = self.free_at();
            time::sleep_until(free_at).await;
            // Claim the slot with no `.await` between the check and the claim. Another clone
            // may have claimed it while we slept; then wait for the next one.
            let mut last = self.last_slot.lock().expect("rate limiter lock");
            let now = Instant::now();
            if last.is_none_or(|at| at + self.spacing <= now) {
                *last = Some(now);
                return;
            }
        }
    }

    fn free_at(&self) -> Instant {
        let last = self.last_slot.lock().expect("rate limiter lock");
        match *last {
            Some(at) => at + self.spacing,
            None => Instant::now(),
        }
    }
}

/// The messages to send: one per free rate-limit slot, head of the queue first, until the queue
/// is empty.
///
/// # Cancel safety
///
/// Not cancel safe. A cancelled `next()` is harmless, because the stream keeps its unfinished
/// step for the next call. But if the *stream* is dropped while it waits for a slot, the message
/// it already took from the queue is lost: it is neither sent nor in the queue any more.
pub fn outgoing(
    queue: Queue,
    limiter: RateLimiter,
) -> impl Stream<Item = Message> + Send + 'static {
    stream::unfold((queue, limiter), |(queue, limiter)| async move {
        let message = queue.pop()?;
        // If the stream is dropped during the wait, the guard puts the message back.
        let guard = PutBack { queue: queue.clone(), message: Some(message) };
        limiter.acquire().await;
        let message = guard.disarm();
        Some((message, (queue, limiter)))
    })
}

/// Returns a message to the queue unless it was handed out.
struct PutBack {
    queue: Queue,
    message: Option<Message>,
}

impl PutBack {
    fn disarm(mut self) -> Message {
        self.message.take().expect("the message is still held")
    }
}

impl Drop for PutBack {
    fn drop(&mut self) {
        if let Some(message) = self.message.take() {
            self.queue.push(message);
        }
    }
}
