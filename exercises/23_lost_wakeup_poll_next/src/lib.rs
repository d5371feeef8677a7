//! # Kata 23: the worker feed that never wakes up
//!
//! A video-transcoding service runs a pool of workers that share one job queue: a single
//! `mpsc::Receiver` behind a `tokio::sync::Mutex`. Workers take turns. The worker holding the lock
//! waits for the next job; the others queue for the lock. Each worker reads jobs through a
//! [`JobFeed`], a hand-written `Stream`, so that it can use stream adapters on it.
//!
//! `poll_next` builds a fresh "lock, then receive" future on every call, polls it once and drops
//! it. Dropping a future that is queued for a lock takes it out of the queue, and with it the
//! waker that was supposed to be woken. Read `README.md` for the whole story.

use std::future::Future;
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
        let jobs = self.jobs.clone();
        // Take our turn at the receiver, then wait for the next job.
        let mut next = Box::pin(async move { jobs.lock().await.recv().await });
        // TODO: `next` is dropped when this function returns. If it returned `Pending`, it was
        // queued for the lock (or waiting for a job) and had left this task's waker there to be
        // woken later. Dropping it takes it out of the queue, and the waker with it: nobody will
        // ever wake this worker again. The in-flight future must outlive this call.
        next.as_mut().poll(cx)
    }
}
