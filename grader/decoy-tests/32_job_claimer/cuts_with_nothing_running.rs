//! The obvious full test: the explorer cuts one claim at every poll, in a running runtime and at
//! shutdown, and compares both lists, whole jobs in order, with the promise. But every cut comes
//! on fresh queues (nothing running, jobs queued in id order), the worker never claims again
//! after a cut, and `claim`'s own future is never dropped unpolled. It misses a guard that puts
//! back the first running job instead of its own, a queue put back sorted by id, a stashed claim
//! the next claim resumes, and a job taken when the claim is created.

use std::sync::Arc;
use std::time::Duration;

use job_claimer::{Job, Journal, Queues};
use kata_support::Outcome;

fn jobs() -> Vec<Job> {
    [(1, "resize-avatar"), (2, "send-digest"), (3, "rebuild-index")]
        .map(|(id, name)| Job { id, name: name.into() })
        .to_vec()
}

fn fresh() -> Arc<Queues> {
    Arc::new(Queues::new(jobs(), Journal::new(Duration::from_millis(5))))
}

fn as_promised(queues: &Queues, outcome: Outcome<Option<Job>>) -> Result<(), String> {
    let all = jobs();
    let n = match outcome {
        Outcome::Cancelled { .. } => 0,
        Outcome::Completed(job) if job.as_ref() == Some(&all[0]) => 1,
        Outcome::Completed(job) => return Err(format!("the claim returned {job:?}")),
    };
    let (pending, running) = (queues.pending(), queues.running());
    if pending == all[n..] && running == all[..n] {
        Ok(())
    } else {
        Err(format!("pending is {pending:?} and running is {running:?}"))
    }
}

kata_support::hidden_test! {
    async fn every_cut_leaves_the_queues_as_they_were() {
        kata_support::assert_cancel_safe(
            fresh,
            |queues| async move { queues.claim().await },
            |queues, outcome| async move { as_promised(&queues, outcome) },
        )
        .await;
    }

    fn a_runtime_shutdown_leaves_the_queues_as_they_were() {
        kata_support::assert_cancel_safe_at_shutdown(
            fresh,
            |queues| async move { queues.claim().await },
            |queues, outcome| as_promised(&queues, outcome),
        );
    }
}
