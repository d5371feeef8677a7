//! # Kata 13 solution: one job, one receiver, patient waiting
//!
//! The client queues the job exactly once and keeps the oneshot receiver for the whole call. Each
//! attempt awaits `&mut reply_rx` under `timeout`: when the attempt elapses, `timeout` drops only
//! the borrow, the receiver survives, and the next attempt goes on waiting for the *same* reply.
//! An elapsed attempt means "slow", not "lost"; after `attempts` of them the worker is considered
//! stuck and the client gives up.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

/// One email for the mailer worker to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailJob {
    /// Unique per job; the worker logs it and puts it in the receipt.
    pub id: u64,
    /// The recipient's address.
    pub to: String,
    /// Which template to render ("order-confirmation", "password-reset", ...).
    pub template: String,
}

/// The worker's answer: the email left the building.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The [`EmailJob::id`] this receipt is for.
    pub job_id: u64,
    /// The email provider's id for the message, for support tickets.
    pub message_id: String,
}

/// What travels on the job queue: the job and the channel the worker answers on.
#[derive(Debug)]
pub struct Request {
    /// The job to run.
    pub job: EmailJob,
    /// Where the worker sends the receipt once the email is sent.
    pub reply: oneshot::Sender<Receipt>,
}

/// Why [`MailClient::send_email`] has no receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// The job queue is closed: no worker is running.
    QueueClosed,
    /// The worker took the job and dropped it without answering (it crashed).
    WorkerDropped,
    /// No answer within `attempts × attempt_timeout`: the worker is stuck. Give up.
    TimedOut,
}

/// The web side of the mailer queue.
#[derive(Debug, Clone)]
pub struct MailClient {
    queue: mpsc::Sender<Request>,
    attempt_timeout: Duration,
    attempts: u32,
}

impl MailClient {
    /// A client that waits `attempt_timeout` per attempt and makes at most `attempts` attempts,
    /// so it gives up on a stuck worker after `attempts × attempt_timeout`.
    pub fn new(queue: mpsc::Sender<Request>, attempt_timeout: Duration, attempts: u32) -> Self {
        MailClient { queue, attempt_timeout, attempts: attempts.max(1) }
    }

    /// Queues `job` for the mailer worker and waits for its receipt.
    ///
    /// The job is queued once. A worker that is slower than `attempt_timeout` is waited for, up
    /// to `attempts × attempt_timeout` in all; only then does the call give up with `TimedOut`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the sense that matters here: dropping this future never queues the job
    /// twice. If it is dropped after the job was queued, the email is still sent once and only
    /// the receipt is lost (there is nobody left to read it). If it is dropped while waiting for
    /// room on the queue, the job was never queued.
    pub async fn send_email(&self, job: EmailJob) -> Result<Receipt, CallError> {
        let (reply, mut reply_rx) = oneshot::channel();
        self.queue.send(Request { job, reply }).await.map_err(|_| CallError::QueueClosed)?;

        for _attempt in 0..self.attempts {
            // `&mut reply_rx`, not `reply_rx`: when this attempt elapses `timeout` drops the
            // borrow, and the receiver (with the worker's eventual reply) stays with us.
            match timeout(self.attempt_timeout, &mut reply_rx).await {
                Ok(Ok(receipt)) => return Ok(receipt),
                Ok(Err(_)) => return Err(CallError::WorkerDropped),
                // Slow, not lost: the job is still on the worker's desk. Keep waiting for it.
                Err(_elapsed) => continue,
            }
        }
        Err(CallError::TimedOut)
    }
}
