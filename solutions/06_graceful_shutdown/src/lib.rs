//! # Kata 06 solution: a child token per connection, and requests that finish
//!
//! Each connection gets `server_token.child_token()`. Cancelling a child stops that connection's
//! two tasks and nothing else; cancelling the server's token cancels every child, so shutdown
//! still reaches every connection. And the token no longer races the whole handler: it only
//! races the wait for the *next* request (`recv`, which is cancel safe). A request that has been
//! read is answered, shutdown or not, and `TaskTracker::wait` waits for that answer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// One request from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: u64,
    pub path: String,
}

/// What a client sends, as the protocol decoder hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// A well-formed request.
    Request(Request),
    /// Bytes that are not a request: a protocol error. The connection must be closed.
    Malformed(String),
}

/// What the server sends to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// The answer to the request with this `id`.
    Response { id: u64, body: String },
    /// "Still here."
    Heartbeat,
    /// The client broke the protocol; the server closes the connection after this.
    ProtocolError(String),
}

/// One accepted connection: decoded messages in, messages to send out.
///
/// The connection is closed once every sender of `outgoing` is dropped, that is when all of
/// its tasks have finished.
#[derive(Debug)]
pub struct Connection {
    pub incoming: mpsc::Receiver<ClientMessage>,
    pub outgoing: mpsc::UnboundedSender<ServerMessage>,
}

/// The application behind the server.
pub trait App: Send + Sync + 'static {
    /// Answers one request. May take a while (a database query, say).
    fn handle(&self, request: Request) -> impl Future<Output = String> + Send;
}

/// The server: its connections' tasks, and the means to shut them all down.
#[derive(Debug)]
pub struct Server<A> {
    app: Arc<A>,
    heartbeat_every: Duration,
    /// Cancelled when the server shuts down.
    token: CancellationToken,
    /// Every connection task, so that shutdown can wait for them.
    tracker: TaskTracker,
}

impl<A: App> Server<A> {
    /// A server running `app`, sending each client a heartbeat every `heartbeat_every`.
    pub fn new(app: A, heartbeat_every: Duration) -> Self {
        Server {
            app: Arc::new(app),
            heartbeat_every,
            token: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }

    /// True once shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Starts serving one accepted connection: spawns its request handler and its heartbeat.
    pub fn serve(&self, conn: Connection) {
        // This connection's own token: cancelling it stops this connection's tasks only, while
        // cancelling the server's token cancels it too.
        let token = self.token.child_token();
        self.tracker.spawn(heartbeat(conn.outgoing.clone(), token.clone(), self.heartbeat_every));
        let app = self.app.clone();
        self.tracker.spawn(handle_requests(app, conn, token));
    }

    /// Shuts down gracefully: stops every connection and waits until all their tasks are done.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the shutdown is signalled on the first poll, before any `.await`; dropping
    /// this future afterwards only stops the waiting, and the connections wind down regardless.
    pub async fn shutdown(&self) {
        self.token.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Answers one connection's requests until the client hangs up, breaks the protocol, or the
/// connection's token is cancelled.
async fn handle_requests<A: App>(app: Arc<A>, mut conn: Connection, token: CancellationToken) {
    // However this task ends, the connection is over: stop its heartbeat too.
    let _teardown = token.clone().drop_guard();
    loop {
        // Only the wait for the next request is raced against shutdown. `recv` is cancel safe:
        // if the token wins, no request was taken off the connection. `biased` makes a pending
        // shutdown win over a request that is already queued.
        let message = tokio::select! {
            biased;
            _ = token.cancelled() => return,
            message = conn.incoming.recv() => message,
        };
        match message {
            // The client hung up.
            None => return,
            Some(ClientMessage::Request(request)) => {
                // Not raced against anything: a request that was read gets its answer.
                let id = request.id;
                let body = app.handle(request).await;
                let _ = conn.outgoing.send(ServerMessage::Response { id, body });
            }
            Some(ClientMessage::Malformed(junk)) => {
                let _ = conn
                    .outgoing
                    .send(ServerMessage::ProtocolError(format!("cannot parse {junk:?}")));
                // Returning drops `_teardown`, which cancels this connection's token (and only
                // it), so the heartbeat stops as well.
                return;
            }
        }
    }
}

/// Sends a heartbeat every `every` until the token is cancelled or the client is gone.
async fn heartbeat(
    outgoing: mpsc::UnboundedSender<ServerMessage>,
    token: CancellationToken,
    every: Duration,
) {
    // The first beat a period from now, or in about 30 years (tokio's far future, the longest
    // any of its timers waits) for a longer period: `Instant::now() + every` alone would
    // overflow, and panic, for a period near `Duration::MAX`.
    let first = Instant::now() + every.min(Duration::from_secs(30 * 365 * 24 * 3600));
    let mut ticks = interval_at(first, every);
    // A beat missed while the runtime was busy elsewhere goes out late, and the next one a
    // period after it: the default (`Burst`) would send the missed beats back to back.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // The token first: when a beat falls due in the same instant as the connection ends
            // (the task wakes to both), the connection is over and no beat is sent.
            biased;
            _ = token.cancelled() => return,
            _ = ticks.tick() => {
                if outgoing.send(ServerMessage::Heartbeat).is_err() {
                    return;
                }
            }
        }
    }
}
