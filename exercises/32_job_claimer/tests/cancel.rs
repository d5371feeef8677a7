//! Your cancellation test for `Queues::claim` (kata 32). Read the README first.
//!
//! The grader builds this file against the shipped `claim` and against other versions of it, some
//! wrong and some right. It passes when every test here passes against every right version and
//! at least one test fails against every wrong one. Declare tests inside `hidden_test!`: an
//! `async fn` runs on a paused, seeded tokio runtime; a plain `fn` builds its own runtimes (as
//! `assert_cancel_safe_at_shutdown` does).

use std::sync::Arc;
use std::time::Duration;

use job_claimer::{Job, Journal, Queues};

/// Fresh queues for one run: three jobs pending, nothing running.
fn fresh() -> Arc<Queues> {
    let jobs = [(1, "resize-avatar"), (2, "send-digest"), (3, "rebuild-index")]
        .map(|(id, name)| Job { id, name: name.into() });
    Arc::new(Queues::new(jobs, Journal::new(Duration::from_millis(5))))
}

kata_support::hidden_test! {
    async fn a_claim_is_cancel_safe() {
        // TODO: cancel `claim` at every point it can be cancelled, and check after each cut what
        // the README says must hold. As it stands, this test only runs one claim to the end, so
        // it passes against every version, the broken ones too: it catches nothing.
        let queues = fresh();
        let job = queues.claim().await.expect("a job is pending");
        assert_eq!(job.id, 1);
    }
}
