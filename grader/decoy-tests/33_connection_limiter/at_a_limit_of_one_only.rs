//! The reference's checks, a caller behind the cut one and an unpolled drop included, all at a
//! limit of one: it misses a cut dial that gives its slot back only when no other slot is free,
//! which is always so with one slot and loses a slot with two.

use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connection_limiter::{Backend, Connection, Limiter};
use tokio::task::JoinHandle;
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

/// A limiter and the caller who waits in line behind the one that is cut.
#[derive(Clone)]
struct Line {
    limiter: Limiter,
    behind: Arc<Mutex<Option<JoinHandle<Connection>>>>,
}

fn fresh_line() -> Line {
    Line { limiter: fresh(), behind: Arc::new(Mutex::new(None)) }
}

/// `contended`, with a third caller who joins the line 1 ms after the second (the future that is
/// cut), from a task of its own, and stays. A tick at 2 ms polls the second caller once more
/// after the third joined, so its cuts while still waiting also fall with someone behind it.
async fn three_in_line(line: Line) -> Connection {
    let limiter = line.limiter;
    let first = limiter.connect().await;
    tokio::spawn(async move {
        sleep(Duration::from_millis(10)).await;
        drop(first);
    });
    let third = limiter.clone();
    let behind = tokio::spawn(async move {
        sleep(Duration::from_millis(1)).await;
        third.connect().await
    });
    *line.behind.lock().unwrap() = Some(behind);
    let (second, ()) = tokio::join!(limiter.connect(), sleep(Duration::from_millis(2)));
    second
}

/// The caller behind the cut one, if it was there, is not held up: it connects (once a completed
/// run's connection hangs up, not before), and then the promise holds with its connection open.
async fn nobody_held_up(line: Line, kept: Option<Connection>) -> Result<(), String> {
    let Some(mut behind) = line.behind.lock().unwrap().take() else {
        // Cut before the third caller was there: the promise as for two.
        return as_promised(line.limiter, 1, kept.into_iter().collect()).await;
    };
    if let Some(kept) = kept {
        if timeout(PATIENCE, &mut behind).await.is_ok() {
            return Err("the caller behind connected while the completed connect's connection \
                        was open, with a limit of one"
                .into());
        }
        drop(kept);
    }
    let third = match timeout(PATIENCE, behind).await {
        Ok(Ok(third)) => third,
        Ok(Err(failed)) => {
            return Err(format!("the caller waiting behind the cut one failed: {failed}"));
        }
        Err(_) => {
            return Err("the caller waiting behind the cut one never connected: it is held up \
                        by a caller who left"
                .into());
        }
    };
    as_promised(line.limiter, 1, vec![third]).await
}

kata_support::hidden_test! {
    async fn every_cut_gives_back_the_slot() {
        kata_support::assert_cancel_safe(fresh, contended, |limiter, outcome| {
            as_promised(limiter, 1, outcome.completed().into_iter().collect())
        })
        .await;
    }

    async fn a_cut_holds_up_nobody_behind_it() {
        kata_support::assert_cancel_safe(fresh_line, three_in_line, |line, outcome| {
            nobody_held_up(line, outcome.completed())
        })
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
