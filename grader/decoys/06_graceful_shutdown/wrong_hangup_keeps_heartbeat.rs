//! WRONG FIX (kata 06): child token per connection, only `recv` raced (biased, token first), and
//! the handler cancels its child token explicitly on a protocol error, but not when the client
//! hangs up (and no drop guard).
//!
//! Scenario where it misbehaves: the client closes its side (its request sender is dropped) while
//! still reading what the server sends. The handler returns on `recv() == None`, but the heartbeat
//! task keeps its token and its `outgoing` sender, so it sends a heartbeat every period until the
//! server shuts down, and the connection ("closed once every sender of `outgoing` is dropped")
//! never closes. Same if `App::handle` panics: the handler task dies and the heartbeat lives on.
//! Right outcome: when the handler ends, for any reason, the heartbeat stops and the connection
//! closes. (The README's task list names only the protocol error explicitly; the doc of
//! `handle_requests` and `Connection` imply the rest.)
//!
//! Proven: yes, paused-clock probe (round1/tools/probes/p06.rs): 10 heartbeats in the 10 s after the
//! hang-up, connection still open (the shipped solution: closed, 0 heartbeats).

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
    loop {
        let message = tokio::select! {
            biased;
            _ = token.cancelled() => return,
            message = conn.incoming.recv() => message,
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
                // Tear this connection down: cancels our child token, so the heartbeat stops.
                token.cancel();
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
