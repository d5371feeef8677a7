//! Decoy for kata 23: keeps its lock future between polls, but holds the lock only to poll the receiver once.
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
use std::task::{Context, Poll, ready};

use futures::Stream;
use tokio::sync::{Mutex, OwnedMutexGuard, mpsc};
use tokio_util::sync::ReusableBoxFuture;

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
    /// Our place in the lock's queue, kept between polls.
    turn: ReusableBoxFuture<'static, OwnedMutexGuard<mpsc::Receiver<Job>>>,
}

impl JobFeed {
    /// A feed over the shared queue.
    pub fn new(jobs: SharedJobs) -> Self {
        let turn = ReusableBoxFuture::new(jobs.clone().lock_owned());
        JobFeed { jobs, turn }
    }
}

impl Stream for JobFeed {
    type Item = Job;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Job>> {
        let mut jobs = ready!(self.turn.poll(cx));
        // Queue up for the next turn, and let the other workers have the receiver while we
        // wait for a job: never hold a lock while waiting.
        let next_turn = self.jobs.clone().lock_owned();
        self.turn.set(next_turn);
        jobs.poll_recv(cx)
    }
}
