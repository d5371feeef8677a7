//! The scenario with a line, cut by hand-made timeouts at a handful of instants (in the first dial,
//! in the wait, in the second dial) with the full check, but no shutdown. A timeout fires while
//! the caller still waits, never between the hand-over and the poll that takes it: it misses the
//! version that loses a slot handed to a caller cut then, and the spawned release.

use std::pin::pin;
use std::time::Duration;

use connection_limiter::{Backend, Connection, Limiter};
use tokio::time::timeout;

const PATIENCE: Duration = Duration::from_secs(1);

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

async fn as_promised(limiter: Limiter, kept: Option<Connection>) -> Result<(), String> {
    let mut one = pin!(limiter.connect());
    let mut two = pin!(limiter.connect());
    if let Some(kept) = kept {
        if timeout(PATIENCE, one.as_mut()).await.is_ok() {
            return Err("a later caller connected while the completed connect's connection was \
                        open, with a limit of one"
                .into());
        }
        drop(kept);
    }
    let Ok(first) = timeout(PATIENCE, one.as_mut()).await else {
        return Err("a later caller never connected: a slot is kept by nobody".into());
    };
    if timeout(PATIENCE, two.as_mut()).await.is_ok() {
        return Err("two later callers were connected at once, with a limit of one: a slot was \
                    given back twice"
            .into());
    }
    drop(first);
    if timeout(PATIENCE, two.as_mut()).await.is_err() {
        return Err("a second later caller never connected once the first hung up".into());
    }
    Ok(())
}

kata_support::hidden_test! {
    async fn a_scenario_cut_at_any_of_five_instants_gives_back_the_slot() {
        for ms in [2, 4, 8, 12, 18] {
            let limiter = fresh();
            let cut = tokio::time::timeout(Duration::from_millis(ms), contended(limiter.clone())).await;
            assert!(cut.is_err(), "the scenario finished within {ms} ms");
            if let Err(seen) = as_promised(limiter, None).await {
                panic!("cut after {ms} ms: {seen}");
            }
        }
    }
}
