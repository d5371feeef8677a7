//! # Kata 26 solution: a client that knows when it is out of step
//!
//! A web app keeps its login sessions in a small Redis-like key-value server. Each request handler
//! borrows a [`Client`] from a pool and asks `GET session:<token>`; the server answers with one
//! line. The client speaks the simplest protocol there is: one request line out, one reply line
//! back, in order, on one connection.
//!
//! ```text
//! write "GET session:alice\r\n"   ->   server
//! read  "+alice\r\n"              <-   server
//! ```
//!
//! Nothing on the wire says which request a reply belongs to: the client knows only because
//! replies come back in the order the requests went out. The handlers wrap every lookup in a 50 ms
//! `tokio::time::timeout`. When the timeout drops [`Client::query`] after its request went out
//! and before its reply came back, the reply is still on its way, and the connection goes back to
//! the pool one reply behind. Read `README.md` for the whole story.

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// One reply line from the server, without its `\r\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+<text>`: a value (a session's user, `OK`, `PONG`).
    Value(String),
    /// `:<n>`: a number (`INCR`, `EXISTS`, `TTL`).
    Integer(i64),
    /// `_`: no value under that key.
    Nil,
    /// `-<message>`: the server refused the command.
    Error(String),
}

impl Reply {
    /// Parses one reply line (without its line ending).
    ///
    /// # Errors
    ///
    /// `InvalidData` when the line is not a reply this client knows.
    pub fn parse(line: &str) -> io::Result<Reply> {
        let invalid =
            || io::Error::new(io::ErrorKind::InvalidData, format!("not a reply line: {line:?}"));
        let mut chars = line.chars();
        let kind = chars.next().ok_or_else(invalid)?;
        let rest = chars.as_str();
        match kind {
            '+' => Ok(Reply::Value(rest.to_owned())),
            '-' => Ok(Reply::Error(rest.to_owned())),
            ':' => rest.parse().map(Reply::Integer).map_err(|_| invalid()),
            '_' if rest.is_empty() => Ok(Reply::Nil),
            _ => Err(invalid()),
        }
    }
}

/// A client for one connection to the key-value server.
#[derive(Debug)]
pub struct Client<S> {
    stream: BufReader<S>,
    /// Set before a query writes its request, cleared once its reply has been read. Still set
    /// when a query starts: an earlier query was dropped (or failed) half way, and the connection
    /// may hold half a request or an unread reply.
    in_flight: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// A client on an open connection. The server answers every request line with one reply
    /// line, in order.
    pub fn new(stream: S) -> Self {
        Client { stream: BufReader::new(stream), in_flight: false }
    }

    /// Sends `command` (one line, without its line ending: `GET session:alice`) and returns the
    /// server's reply to it.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a command with a line break in it, `UnexpectedEof` when the server
    /// closed the connection, `InvalidData` for a reply line this client cannot parse, and any
    /// error of the connection itself.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the sense a connection can be: dropping the future never makes a later call
    /// return the wrong reply. If it is dropped after it started writing and before it read its
    /// whole reply, the reply is lost, and the client is *poisoned*: every later call returns an
    /// error (`BrokenPipe`, "connection out of step ...") without touching the connection, so the
    /// pool discards it. Dropped before its first poll, it changes nothing.
    pub async fn query(&mut self, command: &str) -> io::Result<Reply> {
        if command.contains(['\r', '\n']) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a command is one line"));
        }
        if self.in_flight {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "connection out of step: an earlier query was dropped or failed before its reply \
                 was read; discard this connection and open a new one",
            ));
        }
        // From the first byte written until the reply is read, the connection is between a
        // request and its reply. If this future is dropped anywhere in there, the mark stays.
        self.in_flight = true;
        let request = format!("{command}\r\n");
        self.stream.write_all(request.as_bytes()).await?;
        self.stream.flush().await?;

        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        // The whole reply line has been read: the connection is in step again, whatever the line
        // says.
        self.in_flight = false;
        Reply::parse(line.trim_end_matches(['\r', '\n']))
    }
}
