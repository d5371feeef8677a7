//! One hand-made cut, early: a timeout shorter than the journal's append. It catches the shipped
//! function, but not a version that is wrong only at the second await, puts the job back in the
//! wrong place or twice, or loses it only at runtime shutdown; and it counts jobs, not order.

use std::sync::Arc;
use std::time::Duration;

use job_claimer::{Job, Journal, Queues};

fn fresh() -> Arc<Queues> {
    let jobs = [(1, "resize-avatar"), (2, "send-digest"), (3, "rebuild-index")]
        .map(|(id, name)| Job { id, name: name.into() });
    Arc::new(Queues::new(jobs, Journal::new(Duration::from_millis(5))))
}

kata_support::hidden_test! {
    async fn a_claim_that_times_out_loses_nothing() {
        let queues = fresh();
        let timed_out = tokio::time::timeout(Duration::from_millis(1), queues.claim()).await;
        assert!(timed_out.is_err(), "the claim finished within 1 ms");
        kata_support::settle().await;
        assert_eq!(queues.pending().len(), 3, "a claim that timed out lost a job");
        assert!(queues.running().is_empty(), "a claim that timed out left a job running");
    }
}
