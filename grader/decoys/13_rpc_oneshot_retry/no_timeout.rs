//! Decoy for kata 13: removes the timeout, so a stuck worker hangs the client for ever.
//!
//! A web shop does not send email from its request handlers. It puts an [`EmailJob`] on a queue,
//! and a mailer worker at the other end renders the template, hands the message to the email
//! provider, and answers on a `oneshot` channel that travelled with the job. [`MailClient`] is the
//! web side of that little RPC: [`MailClient::send_email`] queues the job and waits for the reply.
//!
//! The mailer is sometimes slow (the provider throttles it), so the client gives each attempt
//! `attempt_timeout` and "retries" when it elapses:
//!
//! ```text
//! match timeout(self.attempt_timeout, reply_rx).await {
//!     Ok(reply) => ...,
//!     Err(_elapsed) => continue, // try again with a fresh job and a fresh oneshot
//! }
//! ```
//!
//! `timeout` takes its future by value. When it elapses it drops that future, and here the future
//! *is* the receiver: the only place the worker's reply could ever arrive is destroyed. The worker,
//! meanwhile, is still busy with the first copy of the job. Read `README.md` for the whole story.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

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
    /// # Cancel safety
    ///
    /// Dropping this future after the job was queued loses only the receipt.
    pub async fn send_email(&self, job: EmailJob) -> Result<Receipt, CallError> {
        let (reply, reply_rx) = oneshot::channel();
        self.queue.send(Request { job, reply }).await.map_err(|_| CallError::QueueClosed)?;
        // No timeout, no retry, no duplicate: just wait for the worker, however long it takes.
        // The attempt settings are left in place for the other callers of `MailClient::new`.
        let _ = (self.attempt_timeout, self.attempts);
        reply_rx.await.map_err(|_| CallError::WorkerDropped)
    }
}
