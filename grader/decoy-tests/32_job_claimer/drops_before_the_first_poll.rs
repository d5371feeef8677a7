//! Cancels the claim before its first poll only. That catches the one version that takes the job
//! when the claim is created; in every other version a future that never ran did nothing, so it
//! catches no other bug.

use std::sync::Arc;
use std::time::Duration;

use job_claimer::{Job, Journal, Queues};

fn fresh() -> Arc<Queues> {
    let jobs = [(1, "resize-avatar"), (2, "send-digest"), (3, "rebuild-index")]
        .map(|(id, name)| Job { id, name: name.into() });
    Arc::new(Queues::new(jobs, Journal::new(Duration::from_millis(5))))
}

kata_support::hidden_test! {
    async fn a_dropped_claim_loses_nothing() {
        let queues = fresh();
        let claim = queues.claim();
        drop(claim);
        assert_eq!(queues.pending().len(), 3, "a dropped claim lost a job");
        assert!(queues.running().is_empty(), "a dropped claim left a job running");
    }
}
