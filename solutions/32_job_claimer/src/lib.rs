//! # The job claimer (kata 32: the function, fixed)
//!
//! The function the kata's test is written for, as it should have shipped: a claim holds the job
//! it took off the queue in a guard until the claim is on disk, and the guard's destructor puts it
//! back at the front of the queue when the claim is dropped before then. The reference test for
//! it is `tests/cancel.rs`; the README says why it catches every wrong version.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A job waiting to run, or running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: u64,
    pub name: String,
}

/// The claims journal: an append-only file, here in memory, with the latency of a disk.
#[derive(Debug)]
pub struct Journal {
    lines: Mutex<Vec<String>>,
    synced: Mutex<usize>,
    latency: Duration,
}

impl Journal {
    /// An empty journal whose appends and syncs each take `latency`.
    pub fn new(latency: Duration) -> Journal {
        Journal { lines: Mutex::new(Vec::new()), synced: Mutex::new(0), latency }
    }

    /// Appends a line (not yet on disk).
    ///
    /// # Cancel safety
    ///
    /// Dropped before it finishes, the line is not appended; appending again is fine.
    pub async fn append(&self, line: String) {
        tokio::time::sleep(self.latency).await;
        self.lines.lock().unwrap().push(line);
    }

    /// Puts every appended line on disk.
    ///
    /// # Cancel safety
    ///
    /// Dropped before it finishes, nothing new is on disk; syncing again is fine.
    pub async fn sync(&self) {
        tokio::time::sleep(self.latency).await;
        let appended = self.lines.lock().unwrap().len();
        *self.synced.lock().unwrap() = appended;
    }

    /// Every line appended so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

/// One worker's view of the job queues.
#[derive(Debug)]
pub struct Queues {
    /// Shared with the scheduler, which pushes new jobs at the back.
    pending: Arc<Mutex<VecDeque<Job>>>,
    running: Mutex<Vec<Job>>,
    journal: Journal,
}

impl Queues {
    /// Queues with `jobs` pending, in order, and nothing running.
    pub fn new(jobs: impl IntoIterator<Item = Job>, journal: Journal) -> Queues {
        Queues {
            pending: Arc::new(Mutex::new(jobs.into_iter().collect())),
            running: Mutex::new(Vec::new()),
            journal,
        }
    }

    /// The pending jobs, front first.
    pub fn pending(&self) -> Vec<Job> {
        self.pending.lock().unwrap().iter().cloned().collect()
    }

    /// The running jobs, in the order they were claimed.
    pub fn running(&self) -> Vec<Job> {
        self.running.lock().unwrap().clone()
    }

    /// The claims journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Claims the job at the front of the queue: records the claim in the journal (append, then
    /// sync) and moves the job from `pending` to the end of `running`. Returns the job, or `None`
    /// when nothing is pending.
    ///
    /// # Cancel safety
    ///
    /// The promise: dropped at any point before it completes, a claim leaves `pending` and
    /// `running` exactly as they were (the job still at the front of the queue, in its place), in
    /// a running runtime and when the runtime shuts down alike. A journal line for a claim that
    /// was then dropped may stay: the journal is reconciled on restart.
    ///
    /// The job taken off the queue is held by a guard until the claim is on disk; a claim dropped
    /// before then puts it back at the front of the queue, in the guard's destructor.
    pub async fn claim(&self) -> Option<Job> {
        let job = self.pending.lock().unwrap().pop_front()?;
        let mut requeue = Requeue { pending: &self.pending, job: Some(job) };
        let id = requeue.job.as_ref().map_or(0, |job| job.id);
        self.journal.append(format!("claim {id}")).await;
        self.journal.sync().await;
        // No `.await` from here on: the move to `running` cannot be cut in half.
        let job = requeue.job.take().expect("the guard holds the job until here");
        self.running.lock().unwrap().push(job.clone());
        Some(job)
    }
}

/// Puts a claimed job back at the front of the queue when dropped still holding it: a claim that
/// was cut before it was on disk.
struct Requeue<'a> {
    pending: &'a Mutex<VecDeque<Job>>,
    job: Option<Job>,
}

impl Drop for Requeue<'_> {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            self.pending.lock().unwrap().push_front(job);
        }
    }
}
