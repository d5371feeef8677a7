//! The reference test without its claim dropped by hand before the first poll: the explorer's
//! cut before the first poll drops `two_claims`'s future before `claim()` is called, so a version
//! that takes the job when the claim is created, and guards it only once polled, passes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use job_claimer::{Job, Journal, Queues};
use kata_support::Outcome;

/// Four jobs, queued out of id order (so that a queue put back in id order shows), with names (so
/// that a job put back changed shows).
fn jobs() -> Vec<Job> {
    [(7, "resize-avatar"), (3, "send-digest"), (5, "rebuild-index"), (9, "send-invoice")]
        .map(|(id, name)| Job { id, name: name.into() })
        .to_vec()
}

/// A worker: its queues, and every job its claims returned, in order.
#[derive(Clone)]
struct Worker {
    queues: Arc<Queues>,
    ran: Arc<Mutex<Vec<Job>>>,
}

/// A fresh worker for one run: four jobs pending, nothing running, nothing returned.
fn fresh() -> Worker {
    let queues = Queues::new(jobs(), Journal::new(Duration::from_millis(5)));
    Worker { queues: Arc::new(queues), ran: Arc::default() }
}

/// The worker's loop, for two rounds: each claim's job is recorded as the claim returns. A cut in
/// the second claim comes with a job already running.
fn two_claims(worker: Worker) -> impl Future<Output = ()> + 'static {
    async move {
        for _ in 0..2 {
            let job = worker.queues.claim().await;
            worker.ran.lock().unwrap().extend(job);
        }
    }
}

/// The promise, after any number of claims that returned and at most one that was cut: the
/// claims that returned got the front jobs, in order, and the queues are exactly as those claims
/// left them (whole jobs, both lists, in order), as if the cut claim had never been made. Returns
/// how many claims returned.
fn as_promised(worker: &Worker) -> Result<usize, String> {
    let all = jobs();
    let ran = worker.ran.lock().unwrap().clone();
    let n = ran.len();
    if ran != all[..n] {
        return Err(format!("the claims returned {ran:?}, not the front jobs {:?}", &all[..n]));
    }
    let (pending, running) = (worker.queues.pending(), worker.queues.running());
    if pending != all[n..] || running != all[..n] {
        return Err(format!(
            "after {n} claim(s) returned, pending is {pending:?} and running is {running:?}; \
             expected pending {:?} and running {:?}",
            &all[n..],
            &all[..n]
        ));
    }
    Ok(n)
}

/// The promise after a cut of `two_claims` (or after both claims completed).
fn after_the_loop(worker: &Worker, outcome: &Outcome<()>) -> Result<usize, String> {
    let n = as_promised(worker)?;
    if outcome.is_cancelled() || n == 2 {
        Ok(n)
    } else {
        Err(format!("both claims completed, but only {n} returned a job, with four pending"))
    }
}

/// The claim after a cut (the worker's next round) must take the front job as any claim does.
async fn and_the_next_claim(worker: &Worker, n: usize) -> Result<(), String> {
    let job = worker.queues.claim().await;
    worker.ran.lock().unwrap().extend(job);
    match as_promised(worker) {
        Ok(m) if m == n + 1 => Ok(()),
        Ok(_) => Err(format!("after {n} claim(s), the next claim returned no job")),
        Err(seen) => Err(format!("then the next claim: {seen}")),
    }
}

kata_support::hidden_test! {
    async fn every_cut_leaves_the_queues_as_they_were() {
        kata_support::assert_cancel_safe(fresh, two_claims, |worker, outcome| async move {
            let n = after_the_loop(&worker, &outcome)?;
            and_the_next_claim(&worker, n).await
        })
        .await;
    }

    fn a_runtime_shutdown_leaves_the_queues_as_they_were() {
        kata_support::assert_cancel_safe_at_shutdown(fresh, two_claims, |worker, outcome| {
            after_the_loop(&worker, &outcome).map(drop)
        });
    }
}
