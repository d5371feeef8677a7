//! # The connection limiter (kata 33: write the test)
//!
//! A reporting service talks to a database that accepts only a few connections from it. Every
//! request opens its own connection through a `Limiter`, which holds the limit: a caller takes one
//! of the `max` slots (and, when all are taken, waits in line until a connection hangs up and
//! hands its slot over), then dials the database. A `Connection` gives its slot back when it is
//! dropped.
//!
//! Requests are raced against the client going away and wrapped in timeouts, so the future of
//! `connect` can be dropped while it waits in line or while it dials. The limiter promises that a
//! dropped `connect` gives back everything it took (see `Limiter::connect`). This file is the
//! function as it shipped, and it breaks that promise. In this kata you do not fix it: you write
//! the test that would have caught it, in `tests/cancel.rs`. The grader runs your test against
//! this function and against other versions of it, some wrong and some right, that you never see.
//! This file is not yours to edit.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

/// The database, here a fake whose handshake takes a fixed time.
pub struct Backend {
    latency: Duration,
    sessions: AtomicU64,
}

impl Backend {
    /// A database whose handshake takes `latency`. Session ids count from 1.
    pub fn new(latency: Duration) -> Backend {
        Backend { latency, sessions: AtomicU64::new(0) }
    }

    /// Dials: the database picks a session id when the handshake starts, and answers after its
    /// latency. Dropped before it answers, nothing is opened.
    async fn dial(&self) -> u64 {
        let session = self.sessions.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(self.latency).await;
        session
    }
}

/// An open connection. Dropping it hangs up and gives its slot back.
pub struct Connection {
    session: u64,
    limiter: Limiter,
}

impl Connection {
    /// The database's session id for this connection.
    pub fn session(&self) -> u64 {
        self.session
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.limiter.shared.release();
    }
}

/// Keeps at most `max` connections to the backend open (or being dialed) at once. Cloning it
/// gives another handle on the same limit.
#[derive(Clone)]
pub struct Limiter {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    backend: Backend,
    line: Mutex<Line>,
}

#[derive(Debug)]
struct Line {
    /// Slots nobody holds.
    free: usize,
    /// Callers waiting for a slot, first come first served; a slot is handed over by a send.
    waiting: VecDeque<oneshot::Sender<()>>,
}

impl Shared {
    /// Hands a slot to the first caller still waiting, or frees it when nobody waits.
    fn release(&self) {
        let mut line = self.line.lock().unwrap();
        while let Some(next) = line.waiting.pop_front() {
            // A caller that stopped waiting has dropped its receiver: skip it.
            if next.send(()).is_ok() {
                return;
            }
        }
        line.free += 1;
    }
}

impl Limiter {
    /// A limiter of `max` connections to `backend`.
    pub fn new(max: usize, backend: Backend) -> Limiter {
        let line = Line { free: max, waiting: VecDeque::new() };
        Limiter { shared: Arc::new(Shared { backend, line: Mutex::new(line) }) }
    }

    /// Opens a connection: takes a free slot, or waits in line until a connection that hangs up
    /// hands its slot over, then dials the backend.
    ///
    /// # Cancel safety
    ///
    /// The promise: dropped at any point before it completes (also before its first poll), in a
    /// running runtime or when the runtime shuts down, `connect` gives back everything it took,
    /// at once: no time passes on the clock before a later caller can take the slot. Afterwards
    /// the limiter lets exactly as many connections be open at once as if the call had never been
    /// made, whatever the limit: never fewer (a slot kept by nobody), never more (a slot given back
    /// twice). A caller who stops waiting in line does not hold up the callers behind it. The
    /// backend's session ids are not part of the promise: a dial that was cut may have used one.
    ///
    /// As shipped, it does not keep it.
    pub async fn connect(&self) -> Connection {
        let turn = {
            let mut line = self.shared.line.lock().unwrap();
            if line.free > 0 {
                line.free -= 1;
                None
            } else {
                let (hand_over, turn) = oneshot::channel();
                line.waiting.push_back(hand_over);
                Some(turn)
            }
        };
        if let Some(turn) = turn {
            // The connection that hangs up hands its slot straight to us: `free` is not raised.
            turn.await.expect("the limiter outlives its callers");
        }
        let session = self.shared.backend.dial().await;
        Connection { session, limiter: self.clone() }
    }
}

// A test tells versions of `connect` apart by what they do: the public types' `Debug` shows
// nothing private.

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("id", &self.session()).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").finish_non_exhaustive()
    }
}
