//! One hand-made cut: a second caller gives up (a `timeout`) while it waits in line behind the
//! first, who then hangs up, and a later caller must connect. One cut at one moment: it catches
//! only the version that hands a freed slot to a caller who left, and misses the shipped function.

use std::time::Duration;

use connection_limiter::{Backend, Limiter};

kata_support::hidden_test! {
    async fn a_caller_who_gives_up_in_line_leaks_nothing() {
        let limiter = Limiter::new(1, Backend::new(Duration::from_millis(5)));
        let first = limiter.connect().await;
        let gave_up = tokio::time::timeout(Duration::from_millis(2), limiter.connect()).await;
        assert!(gave_up.is_err(), "the second caller connected while the first held the slot");
        drop(first);
        let later = tokio::time::timeout(Duration::from_secs(1), limiter.connect()).await;
        assert!(later.is_ok(), "a later caller never connected: the slot leaked");
    }
}
