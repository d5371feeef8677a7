//! # The connection limiter, fixed (kata 33)
//!
//! The solution's `connect`: a slot is a value, `Slot`, that gives itself back when dropped,
//! wherever it is then: in the caller's future while it dials, inside the channel that handed it
//! to a waiting caller who was cut before taking it, or returned by a send that found the caller
//! gone. So a cut at any `.await`, or a runtime shutdown, cannot lose a slot or free one twice.

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
    _slot: Slot,
}

impl Connection {
    /// The database's session id for this connection.
    pub fn session(&self) -> u64 {
        self.session
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
    waiting: VecDeque<oneshot::Sender<Slot>>,
}

/// One of the limiter's slots, held. Dropped, it goes to the first caller still waiting in line,
/// or back to the free slots: wherever it is dropped, it is given back once.
#[derive(Debug)]
struct Slot {
    shared: Arc<Shared>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let next = {
            let mut line = self.shared.line.lock().unwrap();
            match line.waiting.pop_front() {
                Some(next) => next,
                None => {
                    line.free += 1;
                    return;
                }
            }
        };
        // Sent outside the lock: a caller that stopped waiting has dropped its receiver, the send
        // hands the slot back, and dropping it here tries the next caller in line.
        let _ = next.send(Slot { shared: Arc::clone(&self.shared) });
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
    /// The slot is held by a `Slot` from the moment it is taken or handed over: a `connect` cut
    /// while dialing drops it, and a caller cut after a slot was sent to it drops the receiver
    /// with the slot inside; either way the slot goes to the next caller in line or is freed.
    pub async fn connect(&self) -> Connection {
        let taken = {
            let mut line = self.shared.line.lock().unwrap();
            if line.free > 0 {
                line.free -= 1;
                Ok(Slot { shared: Arc::clone(&self.shared) })
            } else {
                let (hand_over, turn) = oneshot::channel();
                line.waiting.push_back(hand_over);
                Err(turn)
            }
        };
        let slot = match taken {
            Ok(slot) => slot,
            Err(turn) => turn.await.expect("the limiter outlives its callers"),
        };
        let session = self.shared.backend.dial().await;
        Connection { session, _slot: slot }
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
