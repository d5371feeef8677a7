//! # The job claimer (kata 32: write the test)
//!
//! A background-job service runs its jobs on workers. The scheduler puts new jobs at the back of
//! the pending queue; a worker claims the job at the front: it takes the job off the queue,
//! records the claim in its journal (an append-only file: append the line, then sync it to disk),
//! and moves the job to its list of running jobs.
//!
//! A worker's claim is raced against its shutdown signal and wrapped in a timeout, so the future
//! of `claim` can be dropped at either `.await`. The service promises that a dropped claim leaves
//! the queues as they were (see `Queues::claim`). This file is the function as it shipped, and it
//! breaks that promise. In this kata you do not fix it: you write the test that would have caught
//! it, in `tests/cancel.rs`. The grader runs your test against this function and against other
//! versions of it, some wrong and some right, that you never see. This file is not yours to edit.

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
    /// As shipped, it does not keep it.
    pub async fn claim(&self) -> Option<Job> {
        let job = self.pending.lock().unwrap().pop_front()?;
        self.journal.append(format!("claim {}", job.id)).await;
        self.journal.sync().await;
        self.running.lock().unwrap().push(job.clone());
        Some(job)
    }
}
