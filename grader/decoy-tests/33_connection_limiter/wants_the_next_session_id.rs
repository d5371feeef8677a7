//! Asks more than the README promises: that a cut `connect` leaves no trace at the backend, so
//! that the next caller gets the next session id. A dial that was cut has used one in every
//! version, the right ones too, so this test fails against them all.

use std::time::Duration;

use connection_limiter::{Backend, Limiter};

kata_support::hidden_test! {
    async fn a_cut_connect_leaves_no_trace() {
        kata_support::assert_cancel_safe(
            || Limiter::new(1, Backend::new(Duration::from_millis(5))),
            |limiter| async move { limiter.connect().await },
            |limiter, outcome| async move {
                let used = if outcome.is_cancelled() { 0 } else { 1 };
                drop(outcome);
                let next = limiter.connect().await;
                if next.session() == used + 1 {
                    Ok(())
                } else {
                    Err(format!("the next connection is session {}, not {}", next.session(), used + 1))
                }
            },
        )
        .await;
    }
}
