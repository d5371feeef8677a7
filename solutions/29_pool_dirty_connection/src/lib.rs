//! # Kata 29 solution: the pool that hands out a dirty connection
//!
//! A loyalty-points service keeps its wallets in a SQL database. Every request handler borrows a
//! connection from a small [`Pool`] ([`Pool::get`] returns a [`Pooled`] guard), runs its
//! statements on it, and lets the guard go: the guard's `Drop` gives the connection back to the
//! pool, and the next request gets it without paying for a new session.
//!
//! A [`Conn`] owns its socket, the way `diesel_async`'s connections do: a statement is written to
//! the socket, and its reply is read from it. The server answers the statements in the order they
//! were sent, and a reply does not say which statement it answers.
//!
//! ```text
//! conn.execute(sql)           send sql        .await the next reply
//! conn.transaction(&[..])     BEGIN, each statement, COMMIT, each awaited in turn
//! drop(pooled)                the connection goes back to the pool (or is discarded)
//! ```
//!
//! The solution: a connection knows when it is in the middle of an operation. `execute` marks it
//! before the statement goes out and clears the mark only once the reply was read, so the mark
//! covers exactly the window in which a dropped future leaves a reply on the socket, or a `BEGIN`
//! or `COMMIT` whose outcome nobody saw. The guard's `Drop` discards such a connection, freeing
//! its slot, as it already discarded one inside a transaction. Read `README.md` for why.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, mpsc};

/// What the server answers to one statement: its command tag (`BEGIN`, `UPDATE 1`), the value a
/// `SELECT` selected, or the server's error.
pub type Reply = Result<String, DbError>;

/// One connection's socket to the database. Statements go out in order, and their replies come
/// back in the same order; whatever is sent is run by the server, whether or not anybody reads
/// its reply. Dropping the socket closes the connection: the server ends the session, which rolls
/// back a transaction it left open.
///
/// In production it is a TCP stream; in tests, a scripted server.
#[derive(Debug)]
pub struct Socket {
    /// Where statements are written (sending never waits).
    pub statements: mpsc::UnboundedSender<String>,
    /// Where the server's replies arrive, one per statement, in order.
    pub replies: mpsc::UnboundedReceiver<Reply>,
}

/// Why a statement failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbError {
    /// The server refused the statement, with its message.
    Server(String),
    /// The connection is closed.
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

/// One connection to the database: one session on the server.
#[derive(Debug)]
pub struct Conn {
    socket: Socket,
    /// Whether the session is inside a transaction that [`Conn::transaction`] opened.
    in_transaction: bool,
    /// A statement was sent and its reply not read yet. Set before the statement goes out,
    /// cleared only once its reply was read: a future dropped in between leaves it set, and the
    /// connection is then out of step with its socket.
    awaiting_reply: bool,
}

impl Conn {
    /// A connection over `socket`, outside any transaction.
    pub fn new(socket: Socket) -> Conn {
        Conn { socket, in_transaction: false, awaiting_reply: false }
    }

    /// Whether the connection is inside a transaction that [`Conn::transaction`] began and did
    /// not end.
    pub fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    /// Whether the connection may be lent to somebody else as it is: no transaction open, no
    /// reply owed.
    fn is_clean(&self) -> bool {
        !self.in_transaction && !self.awaiting_reply
    }

    /// Sends one statement and returns the server's reply to it. Outside a transaction, the
    /// server commits the statement on its own.
    ///
    /// # Errors
    ///
    /// [`DbError::Server`] when the server refuses it, [`DbError::Closed`] when the connection is
    /// gone.
    ///
    /// # Cancel safety
    ///
    /// The statement is sent in the first poll, and the server runs it. Dropped after that, the
    /// future loses the reply, which stays on the socket; the connection remembers that it is
    /// owed, and the pool discards it rather than lend it again.
    pub async fn execute(&mut self, sql: &str) -> Result<String, DbError> {
        // Marked before anything can be sent, and before the first `.await`: there is no moment
        // at which a reply is owed and the mark is not set.
        self.awaiting_reply = true;
        self.socket.statements.send(sql.to_owned()).map_err(|_| DbError::Closed)?;
        let reply = self.socket.replies.recv().await.ok_or(DbError::Closed)?;
        // A closed connection keeps its mark, so the pool discards it too.
        self.awaiting_reply = false;
        reply
    }

    /// Runs `statements` in one transaction: `BEGIN`, each statement, then `COMMIT`. If the server
    /// refuses a statement, the transaction is rolled back and the error returned.
    ///
    /// # Errors
    ///
    /// As [`Conn::execute`], for whichever statement failed.
    ///
    /// # Cancel safety
    ///
    /// Dropped part-way, the transaction is neither committed nor rolled back here, and a reply
    /// may be left unread; the connection says so ([`Conn::execute`] marks every statement until
    /// its reply is read), and the pool discards it: closing the session rolls back a transaction
    /// that was not committed. A `COMMIT` already sent may still commit; either way the work is
    /// all or nothing.
    pub async fn transaction(&mut self, statements: &[&str]) -> Result<(), DbError> {
        self.execute("BEGIN").await?;
        self.in_transaction = true;
        for sql in statements {
            if let Err(refused) = self.execute(sql).await {
                let rolled_back = self.execute("ROLLBACK").await;
                self.in_transaction = false;
                rolled_back?;
                return Err(refused);
            }
        }
        let committed = self.execute("COMMIT").await;
        self.in_transaction = false;
        committed.map(drop)
    }
}

/// A pool of at most `max_size` connections, each lent to one request at a time. Clones share the
/// pool.
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    /// Opens a new connection's socket.
    connect: Box<dyn Fn() -> Socket + Send + Sync>,
    /// The connections nobody holds, ready for the next request.
    idle: Mutex<Vec<Conn>>,
    /// One permit per connection the pool may still lend: an idle one, or one it may open.
    slots: Semaphore,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &self.shared.idle.lock().expect("pool lock").len())
            .field("free_slots", &self.shared.slots.available_permits())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Puts `conn` among the idle connections and frees its slot.
    fn give_back(&self, conn: Conn) {
        self.idle.lock().expect("pool lock").push(conn);
        self.slots.add_permits(1);
    }

    /// Closes `conn` (the server ends its session) and frees its slot, so that the pool may open
    /// a new connection in its place.
    fn discard(&self, conn: Conn) {
        drop(conn);
        self.slots.add_permits(1);
    }
}

impl Pool {
    /// A pool that opens up to `max_size` connections with `connect`, when it needs them.
    pub fn new(max_size: usize, connect: impl Fn() -> Socket + Send + Sync + 'static) -> Pool {
        let shared = Shared {
            connect: Box::new(connect),
            idle: Mutex::default(),
            slots: Semaphore::new(max_size),
        };
        Pool { shared: Arc::new(shared) }
    }

    /// Waits for a free slot and lends a connection: an idle one if there is any, otherwise a new
    /// one. The connection goes back to the pool when the [`Pooled`] guard is dropped.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropped while it waits for a slot, it has taken nothing.
    pub async fn get(&self) -> Pooled {
        let slot = self.shared.slots.acquire().await.expect("the pool is never closed");
        slot.forget();
        let idle = self.shared.idle.lock().expect("pool lock").pop();
        let conn = idle.unwrap_or_else(|| Conn::new((self.shared.connect)()));
        Pooled { conn: Some(conn), shared: Arc::clone(&self.shared) }
    }
}

/// A connection lent by the [`Pool`]. Use it as a [`Conn`]; dropping it gives the connection back.
pub struct Pooled {
    conn: Option<Conn>,
    shared: Arc<Shared>,
}

impl fmt::Debug for Pooled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pooled").field("conn", &self.conn).finish_non_exhaustive()
    }
}

impl Deref for Pooled {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("the connection is lent until the guard is dropped")
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("the connection is lent until the guard is dropped")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        // The guard is dropped wherever the handler's future was dropped, possibly in the middle
        // of an operation. Nothing here may wait (a destructor cannot), and nothing needs to:
        // closing the connection ends the session on the server, which rolls back what was left
        // open, and the slot is freed either way so that the pool can open a new connection.
        if conn.is_clean() {
            self.shared.give_back(conn);
        } else {
            self.shared.discard(conn);
        }
    }
}
