//! Decoy for kata 23: keeps the in-flight future, but creates and polls the next step as soon as
//! a job is yielded, "to keep its place in the lock's queue". Wrong: a worker busy with a long job
//! then holds the receiver through its unpolled step, and a job that arrives while the other
//! worker is idle waits for the busy one (uneven job lengths show it; equal ones hide it).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::{Mutex, OwnedMutexGuard, mpsc};

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

#[allow(dead_code)]
type LockFut = Pin<Box<dyn Future<Output = OwnedMutexGuard<mpsc::Receiver<Job>>> + Send>>;
#[allow(dead_code)]
type StepFut = Pin<Box<dyn Future<Output = Option<Job>> + Send>>;

/// One worker's view of the shared queue: yields jobs until the channel is closed and empty.
pub struct JobFeed {
    jobs: SharedJobs,
    next: StepFut,
}

impl std::fmt::Debug for JobFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobFeed").finish_non_exhaustive()
    }
}

fn step(jobs: SharedJobs) -> StepFut {
    Box::pin(async move { jobs.lock().await.recv().await })
}

impl JobFeed {
    /// A feed over the shared queue.
    pub fn new(jobs: SharedJobs) -> Self {
        let next = step(jobs.clone());
        JobFeed { jobs, next }
    }
}

impl Stream for JobFeed {
    type Item = Job;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Job>> {
        let this = &mut *self;
        let job = match this.next.as_mut().poll(cx) {
            Poll::Ready(job) => job,
            Poll::Pending => return Poll::Pending,
        };
        // Start the next turn right away, so we keep our place in the lock's queue.
        this.next = step(this.jobs.clone());
        if let Poll::Ready(early) = this.next.as_mut().poll(cx) {
            // Ready at once: keep the result for the next call.
            this.next = Box::pin(async move { early });
        }
        Poll::Ready(job)
    }
}
