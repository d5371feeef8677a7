//! The reference test for `Queues::claim` (kata 32): it catches every wrong version the grader
//! keeps and passes every right one. See the solution README for why each part is there.

use std::sync::Arc;
use std::time::Duration;

use job_claimer::{Job, Journal, Queues};
use kata_support::Outcome;

fn jobs() -> Vec<Job> {
    [(1, "resize-avatar"), (2, "send-digest"), (3, "rebuild-index")]
        .map(|(id, name)| Job { id, name: name.into() })
        .to_vec()
}

/// Fresh queues for one run: three jobs pending (more than one, so that a job put back in the
/// wrong place shows), nothing running.
fn fresh() -> Arc<Queues> {
    Arc::new(Queues::new(jobs(), Journal::new(Duration::from_millis(5))))
}

/// The promise, checked after every cut and after a completed claim: the queues are exactly as
/// they were (order included), or the front job moved to `running` and was returned.
fn as_promised(queues: &Queues, outcome: Outcome<Option<Job>>) -> Result<(), String> {
    let (pending, running) = (queues.pending(), queues.running());
    let ids = |jobs: &[Job]| jobs.iter().map(|j| j.id).collect::<Vec<_>>();
    let expected = match outcome {
        Outcome::Cancelled { .. } => (ids(&jobs()), Vec::new()),
        Outcome::Completed(job) => {
            let job = job.ok_or("the claim returned no job, with three pending")?;
            if job.id != 1 {
                return Err(format!("the claim returned job {}, not the front job 1", job.id));
            }
            (vec![2, 3], vec![1])
        }
    };
    if (ids(&pending), ids(&running)) == expected {
        Ok(())
    } else {
        Err(format!(
            "pending is {:?} and running is {:?}; expected pending {:?} and running {:?}",
            ids(&pending),
            ids(&running),
            expected.0,
            expected.1
        ))
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
