//! Hidden tests for kata 23: a `JobFeed` that returns `Pending` must be woken when its turn at
//! the shared receiver comes, or a job arrives, and must not wake itself otherwise.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use kata_support::hidden_test;
use lost_wakeup_poll_next::{Job, JobFeed, shared};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_test::{assert_pending, assert_ready, task};

fn job(id: u64) -> Job {
    Job { id, video: format!("uploads/clip-{id}.mov") }
}

/// Polls of one feed that yielded nothing; past this, the feed is spinning.
const SPIN_LIMIT: usize = 10_000;

/// Wraps a worker's feed: ends it (and raises `spun`) if it is polled `SPIN_LIMIT` times in a row
/// without yielding, which only a feed that keeps waking itself can do.
struct Watched {
    feed: JobFeed,
    idle_polls: usize,
    spun: Arc<AtomicBool>,
}

impl Stream for Watched {
    type Item = Job;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Job>> {
        let this = &mut *self;
        match Pin::new(&mut this.feed).poll_next(cx) {
            Poll::Pending => {
                this.idle_polls += 1;
                if this.idle_polls >= SPIN_LIMIT {
                    this.spun.store(true, Ordering::SeqCst);
                    return Poll::Ready(None);
                }
                Poll::Pending
            }
            ready => {
                this.idle_polls = 0;
                ready
            }
        }
    }
}

hidden_test! {
    /// Nothing contended: queued jobs come out in order, and an empty queue wakes the feed when
    /// a job arrives.
    async fn yields_jobs_and_wakes_when_one_arrives() {
        let (tx, rx) = mpsc::channel(8);
        let mut feed = task::spawn(JobFeed::new(shared(rx)));
        tx.send(job(1)).await.expect("the queue is open");
        assert_eq!(assert_ready!(feed.poll_next()), Some(job(1)));
        assert_pending!(feed.poll_next(), "the queue is empty: the feed must wait");
        tx.send(job(2)).await.expect("the queue is open");
        assert!(
            feed.is_woken(),
            "a job arrived, but the feed waiting on the empty queue was not woken"
        );
        assert_eq!(assert_ready!(feed.poll_next()), Some(job(2)));
        drop(tx);
        assert_eq!(
            assert_ready!(feed.poll_next()),
            None,
            "the channel is closed and empty: the feed must end"
        );
    }

    /// Another worker holds the receiver. The feed must wait without spinning, and be woken when
    /// the other worker lets go.
    async fn a_feed_waiting_for_its_turn_is_woken_when_the_turn_comes() {
        let (tx, rx) = mpsc::channel(8);
        let jobs = shared(rx);
        let other_worker = jobs.clone().lock_owned().await;

        let mut feed = task::spawn(JobFeed::new(jobs.clone()));
        assert_pending!(
            feed.poll_next(),
            "another worker holds the receiver: the feed must wait for its turn"
        );
        assert!(
            !feed.is_woken(),
            "the feed woke its own task although nothing changed: it is busy-polling, burning a \
             CPU for as long as another worker holds the receiver. Return `Pending` only with a \
             waker registered somewhere that will fire, and do not wake yourself"
        );

        tx.send(job(7)).await.expect("the queue is open");
        drop(other_worker);
        assert!(
            feed.is_woken(),
            "the wakeup was lost: in poll 1 the feed returned `Pending` while another worker \
             held the receiver, but when that worker let go, nothing woke this one. A lock \
             future that is dropped leaves the lock's queue and takes its waker with it, and \
             `try_lock` never joins the queue at all. Keep the in-flight future between calls \
             to `poll_next`"
        );
        assert_eq!(assert_ready!(feed.poll_next()), Some(job(7)));
    }

    /// Two workers share the queue; jobs arrive one by one and each takes a second. Both
    /// workers must get work, and all four jobs must be done in little more than two seconds.
    async fn two_workers_share_the_queue() {
        let (tx, rx) = mpsc::channel(8);
        let jobs = shared(rx);
        let (done_tx, mut done) = mpsc::unbounded_channel();
        let spun = Arc::new(AtomicBool::new(false));
        let handled = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
        for (worker, count) in handled.iter().enumerate() {
            let mut feed = Watched {
                feed: JobFeed::new(jobs.clone()),
                idle_polls: 0,
                spun: spun.clone(),
            };
            let (done_tx, count) = (done_tx.clone(), count.clone());
            tokio::spawn(async move {
                while let Some(job) = feed.next().await {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = done_tx.send((worker, job.id));
                }
            });
        }
        drop(done_tx);

        let start = Instant::now();
        for id in 1..=4 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            tx.send(job(id)).await.expect("the queue is open");
        }
        let mut finished = Vec::new();
        let all_done = tokio::time::timeout(Duration::from_secs(60), async {
            while finished.len() < 4 {
                match done.recv().await {
                    Some(entry) => finished.push(entry),
                    None => break,
                }
            }
        })
        .await;
        assert!(
            !spun.load(Ordering::SeqCst),
            "a worker's feed was polled {SPIN_LIMIT} times without yielding a job: it wakes \
             itself while it waits (busy-polling)"
        );
        assert!(
            all_done.is_ok() && finished.len() == 4,
            "after 60 s only {} of 4 jobs were done ({finished:?}): the workers stopped being \
             woken",
            finished.len()
        );
        let counts = [
            handled[0].load(Ordering::SeqCst),
            handled[1].load(Ordering::SeqCst),
        ];
        if let Some(idle) = counts.iter().position(|&n| n == 0) {
            panic!(
                "worker {idle} never got a job, although jobs waited while worker {} was busy \
                 (jobs done per worker: {counts:?}, finished after {:?}). Worker {idle} went to \
                 sleep in `poll_next` and its wakeup was lost: the future it had queued for the \
                 lock was dropped, or it waited on the channel without holding the lock, and the \
                 other worker's next poll replaced its waker (a channel receiver remembers only \
                 the last waker that polled it)",
                1 - idle,
                start.elapsed()
            );
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed <= Duration::from_millis(2500),
            "two workers took {elapsed:?} for four 1-second jobs: they did not work in parallel"
        );
        drop(tx);
    }
}
