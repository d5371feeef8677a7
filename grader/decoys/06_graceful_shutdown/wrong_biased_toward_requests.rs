//! adversarial. Child token per connection, drop guard for teardown, only the wait for the next
//! request raced against shutdown - but `biased;` with the `recv()` branch first, "so that
//! requests the client already sent are drained before we stop".
//! Misbehaves on shutdown while a client keeps its request queue non-empty (a busy client, or a
//! pipelining one): `recv()` is ready on every turn, so the cancelled branch is never reached and
//! the server keeps taking new requests after shutdown began; shutdown never completes while the
//! client keeps sending. Proof: a client that refills
//! its queue forever; shutdown has not finished after 60 s (shipped solution: ~0.5 s). The hidden
//! tests never have a queued request at the moment of shutdown.
//!   result: shutdown not finished after 60 s; shipped solution finishes.
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
    pub fn new(app: A, heartbeat_every: Duration) -> Self {
        Server {
            app: Arc::new(app),
            heartbeat_every,
            token: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.token.is_cancelled()
    }

    pub async fn shutdown(&self) {
        self.token.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    pub fn serve(&self, conn: Connection) {
        let token = self.token.child_token();
        self.tracker.spawn(heartbeat(conn.outgoing.clone(), token.clone(), self.heartbeat_every));
        let app = self.app.clone();
        self.tracker.spawn(handle_requests(app, conn, token));
    }
}

async fn handle_requests<A: App>(app: Arc<A>, mut conn: Connection, token: CancellationToken) {
    let _teardown = token.clone().drop_guard();
    loop {
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

