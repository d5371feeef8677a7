//! Asks more than the README promises: that a dropped claim leaves no journal line. A claim cut
//! while syncing has appended its line in every version, the right ones too, so this test fails
//! against them all: it catches every bug and falsely fails every right version.

use std::sync::Arc;
use std::time::Duration;

use job_claimer::{Job, Journal, Queues};
use kata_support::Outcome;

fn fresh() -> Arc<Queues> {
    let jobs = [(1, "resize-avatar"), (2, "send-digest"), (3, "rebuild-index")]
        .map(|(id, name)| Job { id, name: name.into() });
    Arc::new(Queues::new(jobs, Journal::new(Duration::from_millis(5))))
}

kata_support::hidden_test! {
    async fn a_dropped_claim_leaves_no_trace() {
        kata_support::assert_cancel_safe(
            fresh,
            |queues| async move { queues.claim().await },
            |queues, outcome| async move {
                let lines = queues.journal().lines();
                match outcome {
                    Outcome::Cancelled { .. } if !lines.is_empty() => {
                        Err(format!("a dropped claim left {lines:?} in the journal"))
                    }
                    _ => Ok(()),
                }
            },
        )
        .await;
    }
}
