//! The explorer with a line, at every cut and both moments, with the full check, but never at
//! runtime shutdown: it misses the version that gives slots back from a spawned task.

use std::time::Duration;

use connection_limiter::{Backend, Connection, Limiter};

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
    if let Some(kept) = kept {
        if tokio::time::timeout(PATIENCE, limiter.connect()).await.is_ok() {
            return Err("connected past a held connection".into());
        }
        drop(kept);
    }
    let Ok(next) = tokio::time::timeout(PATIENCE, limiter.connect()).await else {
        return Err("a later caller never connected".into());
    };
    if tokio::time::timeout(PATIENCE, limiter.connect()).await.is_ok() {
        return Err("two later callers connected at once".into());
    }
    drop(next);
    Ok(())
}


kata_support::hidden_test! {
    async fn every_cut_gives_back_the_slot() {
        kata_support::assert_cancel_safe(
            fresh,
            contended,
            |limiter, outcome| as_promised(limiter, outcome.completed()),
        )
        .await;
    }
}
