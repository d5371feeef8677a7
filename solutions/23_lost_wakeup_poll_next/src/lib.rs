//! # Kata 23 solution: keep the in-flight future between polls
//!
//! A `poll_*` method may only return `Pending` if something will wake the task later. The
//! "something" here is the lock's wait queue or the channel, and each of them wakes the waker
//! that a *live* future registered. So the future must live across calls to `poll_next`.
//! `tokio_util::sync::ReusableBoxFuture` holds it: `poll_next` polls the same future until it
//! completes, and only then replaces it with the next one (reusing its allocation).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures::Stream;
use tokio::sync::{Mutex, mpsc};
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
    /// The in-flight "take our turn, then receive" step. It owns the shared queue and hands it
    /// back when it completes, so the next step can be built from it.
    next: ReusableBoxFuture<'static, (Option<Job>, SharedJobs)>,
}

impl JobFeed {
    /// A feed over the shared queue.
    pub fn new(jobs: SharedJobs) -> Self {
        JobFeed { next: ReusableBoxFuture::new(next_job(jobs)) }
    }
}

/// One step: wait for our turn at the receiver, then for a job, and give the queue back.
async fn next_job(jobs: SharedJobs) -> (Option<Job>, SharedJobs) {
    // The guard is held while we wait for a job: the worker holding the lock is the one that
    // gets the next job, and the others wait their turn in the lock's queue.
    let job = jobs.lock().await.recv().await;
    (job, jobs)
}

impl Stream for JobFeed {
    type Item = Job;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Job>> {
        // Poll the *same* future as last time: it is still in the lock's queue (or registered
        // with the channel), so it will be woken when its turn or a job comes.
        let (job, jobs) = ready!(self.next.poll(cx));
        // Only a completed step is replaced. The new one is not polled yet; it joins the lock's
        // queue on the next call.
        self.next.set(next_job(jobs));
        Poll::Ready(job)
    }
}
