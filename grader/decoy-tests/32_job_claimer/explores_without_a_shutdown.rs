//! The explorer at every cut, with the right check, but never at runtime shutdown: it misses the
//! version whose destructor puts the job back from a spawned task, which never runs then.

use std::sync::Arc;
use std::time::Duration;

use job_claimer::{Job, Journal, Queues};
use kata_support::Outcome;

fn fresh() -> Arc<Queues> {
    let jobs = [(1, "resize-avatar"), (2, "send-digest"), (3, "rebuild-index")]
        .map(|(id, name)| Job { id, name: name.into() });
    Arc::new(Queues::new(jobs, Journal::new(Duration::from_millis(5))))
}

fn ids(jobs: &[Job]) -> Vec<u64> {
    jobs.iter().map(|j| j.id).collect()
}

kata_support::hidden_test! {
    async fn every_cut_leaves_the_queues_as_they_were() {
        kata_support::assert_cancel_safe(
            fresh,
            |queues| async move { queues.claim().await },
            |queues, outcome| async move {
                let seen = (ids(&queues.pending()), ids(&queues.running()));
                let expected = match outcome {
                    Outcome::Cancelled { .. } => (vec![1, 2, 3], vec![]),
                    Outcome::Completed(_) => (vec![2, 3], vec![1]),
                };
                if seen == expected { Ok(()) } else { Err(format!("{seen:?}, expected {expected:?}")) }
            },
        )
        .await;
    }
}
