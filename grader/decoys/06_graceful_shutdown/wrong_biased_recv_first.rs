//! WRONG FIX (kata 06): child token per connection, only `recv` raced against the token, but the
//! `select!` is `biased;` with the *receive first*.
//!
//! What it does: `serve` gives each connection `child_token()`; the handler loops on
//! `select! { biased; msg = incoming.recv() => .., _ = token.cancelled() => return }` and answers
//! each request outside the race; a drop guard stops the heartbeat when the handler ends.
//!
//! Scenario where it misbehaves: shutdown begins while request 1 is being answered and requests
//! 2..=4 are already queued on the connection (or a client keeps pipelining a new request as each
//! answer arrives). After answering 1, the receive branch is polled first and is always ready, so
//! the handler keeps *taking and answering new requests* after shutdown began; with a client that
//! pipelines continuously, `shutdown` never completes. README: "stop *taking* new requests, finish
//! the ones already taken". Right outcome: request 1 is answered, 2..=4 are not started, and the
//! connection closes.
//!
//! Proven: yes, paused-clock probe (round1/tools/probes/p06.rs): with 1 in flight and 2..=4 queued
//! at shutdown, 64/64 runs answer all four (the shipped solution: only 1, 0/64).

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

/// Answers one connection's requests until the client hangs up, breaks the protocol, or shutdown.
async fn handle_requests<A: App>(app: Arc<A>, mut conn: Connection, token: CancellationToken) {
    let _teardown = token.clone().drop_guard();
    loop {
        // Requests first, so that no request that reached us is ever dropped.
        let message = tokio::select! {
            biased;
            message = conn.incoming.recv() => message,
            _ = token.cancelled() => return,
        };
        match message {
            None => return,
            Some(ClientMessage::Request(request)) => {
                let id = request.id;
                let body = app.handle(request).await;
                let _ = conn.outgoing.send(ServerMessage::Response { id, body });
            }
            Some(ClientMessage::Malformed(junk)) => {
                let _ = conn
                    .outgoing
                    .send(ServerMessage::ProtocolError(format!("cannot parse {junk:?}")));
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
