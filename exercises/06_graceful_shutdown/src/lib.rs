//! # Kata 06: the shutdown token that everybody shares
//!
//! A small request/response server. Each accepted connection gets two tasks: a request handler,
//! and a heartbeat that tells the client every few seconds that the server is alive. The server
//! shuts down gracefully with a `CancellationToken` and a `TaskTracker`: cancel the token, close
//! the tracker, wait for every tracked task to finish.
//!
//! A connection also has to be torn down on its own: a client that sends garbage gets an error
//! and is disconnected, and its heartbeat must stop too. The handler does that by cancelling the
//! token the two tasks share.
//!
//! Two things go wrong. Read `README.md` for the whole story.

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
        // TODO: both problems start here. This token is the server's own (a clone shares it), so
        // when one connection cancels it, every connection and the server stop. And the whole
        // handler is raced against it, so shutdown drops a request that is being answered.
        let token = self.token.clone();
        self.tracker.spawn(heartbeat(conn.outgoing.clone(), token.clone(), self.heartbeat_every));
        let app = self.app.clone();
        self.tracker.spawn(async move {
            // Stop serving this connection as soon as the token is cancelled.
            token.run_until_cancelled(handle_requests(app, conn, &token)).await;
        });
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

/// Answers one connection's requests until the client hangs up or breaks the protocol.
async fn handle_requests<A: App>(app: Arc<A>, mut conn: Connection, token: &CancellationToken) {
    while let Some(message) = conn.incoming.recv().await {
        match message {
            ClientMessage::Request(request) => {
                let id = request.id;
                let body = app.handle(request).await;
                let _ = conn.outgoing.send(ServerMessage::Response { id, body });
            }
            ClientMessage::Malformed(junk) => {
                let _ = conn
                    .outgoing
                    .send(ServerMessage::ProtocolError(format!("cannot parse {junk:?}")));
                // Tear the connection down: this stops its heartbeat as well.
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
