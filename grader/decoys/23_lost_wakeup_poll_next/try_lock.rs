//! Decoy for kata 23: uses `try_lock` and `poll_recv`, so no future is dropped, but nothing is registered when busy.
//!
//! A video-transcoding service runs a pool of workers that share one job queue: a single
//! `mpsc::Receiver` behind a `tokio::sync::Mutex`. Workers take turns. The worker holding the lock
//! waits for the next job; the others queue for the lock. Each worker reads jobs through a
//! [`JobFeed`], a hand-written `Stream`, so that it can use stream adapters on it.
//!
//! `poll_next` builds a fresh "lock, then receive" future on every call, polls it once and drops
//! it. Dropping a future that is queued for a lock takes it out of the queue, and with it the
//! waker that was supposed to be woken. Read `README.md` for the whole story.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::{Mutex, mpsc};

/// One transcoding job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: u64,
    pub video: String,
}

/// The queue every worker shares: one receiver, taken in turns.
pub type SharedJobs = Arc<Mutex<mpsc::Receiver<Job>>>;

/// Wraps the receiving end of the job channel so that workers can share it.
pub fn shared(jobs: mpsc::Receiver<Job>) -> SharedJobs {
    Arc::new(Mutex::new(jobs))
}

/// One worker's view of the shared queue: yields jobs until the channel is closed and empty.
#[derive(Debug)]
pub struct JobFeed {
    jobs: SharedJobs,
}

impl JobFeed {
    /// A feed over the shared queue.
    pub fn new(jobs: SharedJobs) -> Self {
        JobFeed { jobs }
    }
}

impl Stream for JobFeed {
    type Item = Job;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Job>> {
        // No future to drop: take the lock without waiting and poll the receiver directly.
        match self.jobs.try_lock() {
            Ok(mut jobs) => jobs.poll_recv(cx),
            // Another worker is receiving; we will get our turn later.
            Err(_) => Poll::Pending,
        }
    }
}
