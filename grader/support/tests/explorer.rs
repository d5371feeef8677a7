//! The explorer must catch a known cancel-unsafe future and pass a known cancel-safe one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kata_support::{Gate, Outcome, explore};

/// A job queue with `queued` jobs and a count of finished ones: every job is queued or finished.
#[derive(Clone)]
struct Jobs {
    queued: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
}

fn fresh() -> Jobs {
    Jobs { queued: Arc::new(AtomicUsize::new(3)), finished: Arc::new(AtomicUsize::new(0)) }
}

async fn conserved(jobs: Jobs, _: Outcome<()>) -> Result<(), String> {
    let total = jobs.queued.load(Ordering::SeqCst) + jobs.finished.load(Ordering::SeqCst);
    if total == 3 { Ok(()) } else { Err(format!("{total} of 3 jobs accounted for")) }
}

/// Takes a job off the queue, then awaits: a drop in between loses the job.
async fn unsafe_worker(jobs: Jobs) {
    while jobs.queued.load(Ordering::SeqCst) > 0 {
        jobs.queued.fetch_sub(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(10)).await;
        jobs.finished.fetch_add(1, Ordering::SeqCst);
    }
}

/// Awaits first, then moves the job in one synchronous step.
async fn safe_worker(jobs: Jobs) {
    while jobs.queued.load(Ordering::SeqCst) > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        jobs.queued.fetch_sub(1, Ordering::SeqCst);
        jobs.finished.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn catches_a_cancel_unsafe_future_at_its_first_await() {
    let failure = explore(fresh, unsafe_worker, conserved).await.unwrap_err();
    assert_eq!(failure.cancelled_after, Some(1));
    assert_eq!(failure.polls, 4);
    assert_eq!(
        failure.to_string(),
        "cancelled after poll 1 of 4, while still waiting: 2 of 3 jobs accounted for"
    );
}

#[tokio::test(start_paused = true)]
async fn passes_a_cancel_safe_future_at_every_point() {
    let report = explore(fresh, safe_worker, conserved).await.unwrap();
    assert_eq!(report.full_run_polls, 4);
    assert_eq!(
        report.cuts_checked, 17,
        "one cut before the first poll; two moments after each later poll; and each poll made \
         with no budget left, then one unit more while it spends them all (2 runs for the first \
         poll and the last, 3 for the two that finish a job and start the next)"
    );
}

#[tokio::test(start_paused = true)]
async fn reports_a_future_that_is_wrong_without_cancellation() {
    let failure = explore(
        fresh,
        |jobs: Jobs| async move {
            jobs.queued.store(0, Ordering::SeqCst);
        },
        conserved,
    )
    .await
    .unwrap_err();
    assert_eq!(failure.cancelled_after, None);
    assert!(failure.to_string().starts_with("without any cancellation (1 polls)"), "{failure}");
}

#[tokio::test(start_paused = true)]
async fn reports_a_stalled_future_instead_of_hanging() {
    let gate = Gate::closed();
    let failure = explore(
        || gate.clone(),
        |gate: Gate| async move { gate.pass().await },
        |_, _| async { Ok(()) },
    )
    .await
    .unwrap_err();
    assert_eq!(
        failure.to_string(),
        "without any cancellation (1 polls): the operation stalled: never woken after poll 1"
    );
}

#[tokio::test(start_paused = true)]
async fn waits_for_the_waker_instead_of_spinning() {
    // One hour of virtual sleep is still two polls: the explorer waits for the timer's wakeup.
    let report = explore(
        || (),
        |()| tokio::time::sleep(Duration::from_secs(3599)),
        |(), _| async { Ok(()) },
    )
    .await
    .unwrap();
    assert_eq!(report.full_run_polls, 2);
}

#[tokio::test(start_paused = true)]
async fn lets_spawned_helpers_run_between_polls() {
    let gate = Gate::closed();
    let report = explore(
        || gate.clone(),
        |gate: Gate| async move {
            let opener = gate.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                opener.admit_one();
            });
            gate.pass().await;
        },
        |_, _| async { Ok(()) },
    )
    .await
    .unwrap();
    assert_eq!(report.full_run_polls, 2);
}
