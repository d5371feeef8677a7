//! # Kata 27: the transaction left open
//!
//! A ticketing service keeps its seats in a SQL database and talks to it through this small
//! client, built the way `tokio-postgres` is: a [`Client`] does not own the socket. It queues each
//! statement, with a `oneshot` for the answer, on a channel to the connection task that owns the
//! socket; the server runs the statements in the order they were queued and answers each one.
//! Queueing is synchronous (an unbounded channel never waits), so even a destructor can queue a
//! statement; only waiting for the answer takes an `.await`.
//!
//! ```text
//! client.transaction()   queue "BEGIN"      .await its answer   -> Transaction
//! tx.execute(sql)        queue sql          .await its answer
//! tx.commit()            queue "COMMIT"     .await its answer
//! drop(tx)               queue "ROLLBACK"   (nobody waits: it runs before anything queued later)
//! ```
//!
//! A [`Transaction`] rolls back when it is dropped without a commit, so a request handler that
//! returns early, fails or is cancelled half way never leaves its work half done. Except in one
//! place: [`Client::transaction`] waits for the answer to `BEGIN` before the `Transaction` exists.
//! Read `README.md` for the whole story.

use std::fmt;

use tokio::sync::{mpsc, oneshot};

/// One statement for the connection, and where the server's answer goes.
///
/// In production the other end of the channel is the connection task that owns the socket; in
/// tests it is a scripted server.
#[derive(Debug)]
pub struct Request {
    /// The statement, as the server receives it (`BEGIN`, `UPDATE seats SET ...`).
    pub sql: String,
    /// Where the server sends the number of rows the statement touched, or its error.
    pub reply: oneshot::Sender<Result<u64, DbError>>,
}

/// Why a statement failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbError {
    /// The server refused the statement, with its message.
    Server(String),
    /// The connection is closed: the server went away, or the client will not use it again.
    Closed,
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Server(message) => write!(f, "the server refused the statement: {message}"),
            DbError::Closed => f.write_str("the connection is closed"),
        }
    }
}

impl std::error::Error for DbError {}

/// A client for one connection to the database. A pool hands it to one request handler at a time;
/// whatever one handler leaves on the connection, the next one inherits.
#[derive(Debug)]
pub struct Client {
    requests: mpsc::UnboundedSender<Request>,
}

impl Client {
    /// A client whose statements go to the connection at the other end of `requests`.
    pub fn new(requests: mpsc::UnboundedSender<Request>) -> Client {
        Client { requests }
    }

    /// Queues `sql` on the connection, now, without waiting, and returns the receiver of its
    /// answer. Whatever happens to the receiver, the server runs the statement, after every
    /// statement queued before it and before every statement queued after it.
    fn send(&self, sql: &str) -> Result<oneshot::Receiver<Result<u64, DbError>>, DbError> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request { sql: sql.to_owned(), reply }).map_err(|_| DbError::Closed)?;
        Ok(answer)
    }

    /// Runs one statement outside any transaction (the server commits it on its own) and returns
    /// the number of rows it touched.
    ///
    /// # Errors
    ///
    /// [`DbError::Server`] when the server refuses it, [`DbError::Closed`] when the connection is
    /// gone.
    ///
    /// # Cancel safety
    ///
    /// The statement is queued in the first poll. Dropped after that, the future loses only the
    /// answer: the server still runs the statement.
    pub async fn execute(&self, sql: &str) -> Result<u64, DbError> {
        let answer = self.send(sql)?;
        answer.await.map_err(|_| DbError::Closed)?
    }

    /// Begins a transaction. The [`Transaction`] rolls back when it is dropped; call
    /// [`Transaction::commit`] to keep its work.
    ///
    /// # Errors
    ///
    /// As [`Client::execute`], for the `BEGIN`.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe. `BEGIN` is queued in the first poll and the future then waits for its
    /// answer; the [`Transaction`] that would roll it back only exists once the answer is in. A
    /// future dropped while `BEGIN` is in flight leaves the connection inside a transaction that
    /// nobody owns, and the next user of the connection runs its statements in it.
    pub async fn transaction(&mut self) -> Result<Transaction<'_>, DbError> {
        // TODO: between queueing `BEGIN` and getting its answer, this future can be dropped (a
        // handler's timeout, a client that went away). The server runs the `BEGIN` anyway, and
        // nothing is left to roll it back: the `Transaction` below is never created.
        self.execute("BEGIN").await?;
        Ok(Transaction { client: self, done: false })
    }
}

/// An open transaction on a [`Client`]. Dropped without [`commit`](Transaction::commit) or
/// [`rollback`](Transaction::rollback), it queues a `ROLLBACK` on the connection, at once: the
/// next statement anybody queues runs after it, outside the transaction.
#[derive(Debug)]
pub struct Transaction<'a> {
    client: &'a mut Client,
    /// Set once `COMMIT` or `ROLLBACK` has been queued: nothing is left for `Drop` to do.
    done: bool,
}

impl Transaction<'_> {
    /// Runs one statement inside the transaction and returns the number of rows it touched.
    ///
    /// # Errors
    ///
    /// As [`Client::execute`].
    ///
    /// # Cancel safety
    ///
    /// As [`Client::execute`]: dropped after its first poll, the statement still runs, inside the
    /// transaction; drop the `Transaction` too and it is rolled back with everything else.
    pub async fn execute(&self, sql: &str) -> Result<u64, DbError> {
        self.client.execute(sql).await
    }

    /// Commits the transaction.
    ///
    /// # Errors
    ///
    /// As [`Client::execute`], for the `COMMIT`.
    ///
    /// # Cancel safety
    ///
    /// `COMMIT` is queued in the first poll. Dropped after that, the transaction still commits;
    /// only the answer is lost.
    pub async fn commit(mut self) -> Result<(), DbError> {
        self.done = true;
        self.client.execute("COMMIT").await.map(drop)
    }

    /// Rolls the transaction back.
    ///
    /// # Errors
    ///
    /// As [`Client::execute`], for the `ROLLBACK`.
    ///
    /// # Cancel safety
    ///
    /// `ROLLBACK` is queued in the first poll. Dropped after that, the transaction still rolls
    /// back; only the answer is lost.
    pub async fn rollback(mut self) -> Result<(), DbError> {
        self.done = true;
        self.client.execute("ROLLBACK").await.map(drop)
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Queued, not awaited: a destructor cannot wait, and it does not need to. The
            // `ROLLBACK` is on the connection before anything the next user queues.
            let _ = self.client.send("ROLLBACK");
        }
    }
}
