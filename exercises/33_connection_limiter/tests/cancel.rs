//! Your cancellation test for `Limiter::connect` (kata 33). Read the README first.
//!
//! The grader builds this file against the shipped `connect` and against other versions of it,
//! some wrong and some right. It passes when every test here passes against every right version
//! and at least one test fails against every wrong one. Declare tests inside `hidden_test!`: an
//! `async fn` runs on a paused, seeded tokio runtime; a plain `fn` builds its own runtimes (as
//! `assert_cancel_safe_at_shutdown` does).

use std::time::Duration;

use connection_limiter::{Backend, Limiter};

/// A fresh limiter for one run: one connection at a time, to a backend whose handshake takes 5 ms.
fn fresh() -> Limiter {
    Limiter::new(1, Backend::new(Duration::from_millis(5)))
}

kata_support::hidden_test! {
    async fn a_connect_is_cancel_safe() {
        // TODO: cancel `connect` at every point it can be cancelled, also while it waits in line
        // behind another caller, and check after each cut what the README says must hold. As it
        // stands, this test only opens one connection, alone, so it passes against every
        // version, the broken ones too: it catches nothing.
        let limiter = fresh();
        let connection = limiter.connect().await;
        assert_eq!(connection.session(), 1);
    }
}
