//! The explorer at every cut and at shutdown, but the check only asks that every job is still
//! somewhere: it misses a job put back at the back of the queue, and a job both pending and
//! running.

use std::sync::Arc;
use std::time::Duration;

use job_claimer::{Job, Journal, Queues};
use kata_support::Outcome;

fn fresh() -> Arc<Queues> {
    let jobs = [(1, "resize-avatar"), (2, "send-digest"), (3, "rebuild-index")]
        .map(|(id, name)| Job { id, name: name.into() });
    Arc::new(Queues::new(jobs, Journal::new(Duration::from_millis(5))))
}

fn nothing_lost(queues: &Queues, _outcome: Outcome<Option<Job>>) -> Result<(), String> {
    let everywhere: Vec<u64> =
        queues.pending().iter().chain(&queues.running()).map(|j| j.id).collect();
    match [1, 2, 3].into_iter().find(|id| !everywhere.contains(id)) {
        Some(id) => Err(format!("job {id} is neither pending nor running")),
        None => Ok(()),
    }
}

kata_support::hidden_test! {
    async fn no_cut_loses_a_job() {
        kata_support::assert_cancel_safe(
            fresh,
            |queues| async move { queues.claim().await },
            |queues, outcome| async move { nothing_lost(&queues, outcome) },
        )
        .await;
    }

    fn no_shutdown_loses_a_job() {
        kata_support::assert_cancel_safe_at_shutdown(
            fresh,
            |queues| async move { queues.claim().await },
            |queues, outcome| nothing_lost(&queues, outcome),
        );
    }
}
