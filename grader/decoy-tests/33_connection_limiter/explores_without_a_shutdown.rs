//! The explorer with a line, at every cut and both moments, with the full check, but never at
//! runtime shutdown: it misses the version that gives slots back from a spawned task.

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
    async fn every_cut_gives_back_the_slot() {
        kata_support::assert_cancel_safe(
            fresh,
            contended,
            |limiter, outcome| as_promised(limiter, outcome.completed()),
        )
        .await;
    }
}
