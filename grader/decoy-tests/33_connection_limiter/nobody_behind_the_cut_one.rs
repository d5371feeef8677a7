//! Every cut, at a limit of one and of two, an unpolled drop and the shutdown run, with later
//! callers who all arrive after the cut: it misses a cut connect that gives its slot to the free
//! count past the line, and one that, leaving the line, takes the last place in it. Both only
//! hold up a caller already waiting behind the cut one.

use std::pin::pin;
use std::time::Duration;

use connection_limiter::{Backend, Connection, Limiter};
use tokio::time::{sleep, timeout};

/// Longer than anything in the scenarios takes, and shorter than the story's 2 s timeout: the
/// promise gives a slot back at once, so a caller that has not connected by then has, for the
/// service, not connected at all. On the paused clock it costs nothing.
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
        sleep(Duration::from_millis(10)).await;
        drop(first);
    });
    limiter.connect().await
}

/// The promise, checked by callers who come after the cut, with `max` slots and the connections
/// in `open` still held: exactly as many later callers as there are slots left connect, one more
/// waits for as long as they all hold their connections, and connects when they hang up. A slot
/// kept by nobody shows as a caller who never connects, a slot given back twice as one connection
/// too many. The last caller is kept waiting, never dropped while in line: that would be a cut of
/// its own, not the one under test.
async fn as_promised(limiter: Limiter, max: usize, open: Vec<Connection>) -> Result<(), String> {
    let mut held = Vec::new();
    for n in open.len()..max {
        let Ok(connection) = timeout(PATIENCE, limiter.connect()).await else {
            return Err(format!(
                "with {n} of {max} connections open, a later caller never connected: a slot is \
                 kept by nobody"
            ));
        };
        held.push(connection);
    }
    let mut one_more = pin!(limiter.connect());
    if timeout(PATIENCE, one_more.as_mut()).await.is_ok() {
        return Err(format!(
            "{} connections were open at once, with a limit of {max}: a slot was given back twice",
            max + 1
        ));
    }
    drop(open);
    drop(held);
    if timeout(PATIENCE, one_more.as_mut()).await.is_err() {
        return Err("a caller waiting in line never connected once every connection hung up".into());
    }
    Ok(())
}

kata_support::hidden_test! {
    async fn every_cut_gives_back_the_slot() {
        kata_support::assert_cancel_safe(fresh, contended, |limiter, outcome| {
            as_promised(limiter, 1, outcome.completed().into_iter().collect())
        })
        .await;
    }

    async fn a_limit_of_two_stays_two() {
        // With another slot free while the dial is cut: a bug that gives a slot back only when
        // none is free never shows at a limit of one.
        let two = || Limiter::new(2, Backend::new(Duration::from_millis(5)));
        kata_support::assert_cancel_safe(
            two,
            |limiter| async move { limiter.connect().await },
            |limiter, outcome| as_promised(limiter, 2, outcome.completed().into_iter().collect()),
        )
        .await;
    }

    async fn a_connect_dropped_before_its_first_poll_gives_back_everything() {
        // The explorer's cut before the first poll drops a scenario before it calls `connect`:
        // this drop is made by hand, alone and behind a caller who holds the slot.
        let limiter = fresh();
        let unpolled = limiter.connect();
        drop(unpolled);
        if let Err(seen) = as_promised(limiter.clone(), 1, Vec::new()).await {
            panic!("a connect dropped before its first poll, alone: {seen}");
        }
        let first = limiter.connect().await;
        let unpolled = limiter.connect();
        drop(unpolled);
        if let Err(seen) = as_promised(limiter, 1, vec![first]).await {
            panic!("a connect dropped before its first poll, in line: {seen}");
        }
    }

    fn a_runtime_shutdown_gives_back_the_slot() {
        kata_support::assert_cancel_safe_at_shutdown(fresh, contended, |limiter, outcome| {
            // The runtime is gone: the later callers get one of their own.
            kata_support::runtime::current_thread(1)
                .block_on(as_promised(limiter, 1, outcome.completed().into_iter().collect()))
        });
    }
}
