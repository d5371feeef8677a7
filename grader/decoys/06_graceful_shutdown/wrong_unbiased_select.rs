//! WRONG FIX (kata 06, borderline): the shipped solution without `biased;`.
//!
//! What it does: child token per connection, `select! { _ = token.cancelled() => return,
//! msg = incoming.recv() => msg }` (tokio picks a random branch first), answers outside the race,
//! drop guard for the heartbeat.
//!
//! Scenario where it misbehaves: shutdown begins while request 1 is being answered and request 2
//! is already queued. After answering 1, both branches are ready; half the time `recv` wins and
//! request 2 is *taken and answered after shutdown began* (and with 3 queued requests, ~7/8 of
//! runs take at least one more). README: "stop *taking* new requests". Right outcome: only 1 is
//! answered. Depends on select!'s random order, so it is luck-prone.
//!
//! Proven: yes, paused-clock probe (round1/tools/probes/p06.rs): 37/64 runs answered queued
//! requests after shutdown began (the shipped solution: 0/64).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, interval_at};
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

    /// Shuts down gracefully: stops every connection and waits until all their tasks are done.
    pub async fn shutdown(&self) {
        self.token.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Starts serving one accepted connection: spawns its request handler and its heartbeat.
    pub fn serve(&self, conn: Connection) {
        let token = self.token.child_token();
        self.tracker.spawn(heartbeat(conn.outgoing.clone(), token.clone(), self.heartbeat_every));
        let app = self.app.clone();
        self.tracker.spawn(handle_requests(app, conn, token));
    }
}

/// Answers one connection's requests.
async fn handle_requests<A: App>(app: Arc<A>, mut conn: Connection, token: CancellationToken) {
    // However this task ends, the connection is over: stop its heartbeat too.
    let _teardown = token.clone().drop_guard();
    loop {
        // Only the wait for the next request is raced against shutdown. `recv` is cancel safe:
        // if the token wins, no request was taken off the connection. (tokio picks the first
        //  branch at random.)
        let message = tokio::select! {
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
    let mut ticks = interval_at(Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = ticks.tick() => {
                if outgoing.send(ServerMessage::Heartbeat).is_err() {
                    return;
                }
            }
        }
    }
}
