//! The explorer with a line, at every cut and at shutdown, but the check only asks that a later
//! caller connects: it misses a slot given back twice, which lets two callers connect at once.

use std::time::Duration;

use connection_limiter::{Backend, Connection, Limiter};

fn fresh() -> Limiter {
    Limiter::new(1, Backend::new(Duration::from_millis(5)))
}

async fn contended(limiter: Limiter) -> Connection {
    let first = limiter.connect().await;
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(first);
    });
    limiter.connect().await
}

async fn a_later_caller_connects(limiter: Limiter, kept: Option<Connection>) -> Result<(), String> {
    drop(kept);
    match tokio::time::timeout(Duration::from_secs(1), limiter.connect()).await {
        Ok(_) => Ok(()),
        Err(_) => Err("a later caller never connected: a slot leaked".into()),
    }
}

kata_support::hidden_test! {
    async fn every_cut_gives_back_the_slot() {
        kata_support::assert_cancel_safe(
            fresh,
            contended,
            |limiter, outcome| a_later_caller_connects(limiter, outcome.completed()),
        )
        .await;
    }

    fn a_runtime_shutdown_gives_back_the_slot() {
        kata_support::assert_cancel_safe_at_shutdown(fresh, contended, |limiter, outcome| {
            kata_support::runtime::current_thread(1)
                .block_on(a_later_caller_connects(limiter, outcome.completed()))
        });
    }
}
