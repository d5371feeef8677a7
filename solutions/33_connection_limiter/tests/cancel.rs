//! The reference test for `Limiter::connect` (kata 33): it catches every wrong version the grader
//! keeps and passes every right one. See the solution README for why each part is there.

use std::pin::pin;
use std::time::Duration;

use connection_limiter::{Backend, Connection, Limiter};
use tokio::time::timeout;

/// Longer than anything in the scenario takes (on the paused clock it costs nothing): a caller
/// that has not connected by then never will.
const PATIENCE: Duration = Duration::from_secs(1);

/// A fresh limiter for one run: one connection at a time, so a second caller always waits in
/// line; the backend's handshake takes 5 ms.
fn fresh() -> Limiter {
    Limiter::new(1, Backend::new(Duration::from_millis(5)))
}

/// The scenario the explorer cuts: a first caller connects and hangs up 10 ms later, from a task
/// of its own, while a second caller (the future that is cut) waits in line for the slot, is
/// handed it, and dials. Its cuts fall in the first caller's dial, in the second caller's wait
/// (still waiting, and handed the slot but not yet polled) and in the second caller's dial.
async fn contended(limiter: Limiter) -> Connection {
    let first = limiter.connect().await;
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(first);
    });
    limiter.connect().await
}

/// The promise, checked with two callers who come after the cut: with the connection a completed
/// scenario returned still open, the first of them does not connect; once it is gone (or when the
/// scenario was cut), the first connects, the second waits for as long as the first holds its connection and
/// connects when it hangs up. A slot kept by nobody shows as a caller who never connects, a slot
/// given back twice as two connections at once. The later callers are kept waiting, never
/// dropped while in line: that would be a cut of their own, not the one under test.
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

    fn a_runtime_shutdown_gives_back_the_slot() {
        kata_support::assert_cancel_safe_at_shutdown(fresh, contended, |limiter, outcome| {
            // The runtime is gone: the later callers get one of their own.
            kata_support::runtime::current_thread(1)
                .block_on(as_promised(limiter, outcome.completed()))
        });
    }
}
