//! Hidden tests for kata 26: a query dropped between its request and its reply must never make a
//! later query return that reply (or any other request's) as its own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kata_support::{Outcome, assert_cancel_safe, check_property, hidden_test, settle};
use proptest::prelude::*;
use session_client_desync::{Client, Reply};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Join};
use tokio::time::{Instant, sleep, timeout};

/// The client's end of the connection: replies come in on one pipe, requests go out on another.
type Conn = Join<DuplexStream, DuplexStream>;

/// How the fake server behaves.
#[derive(Debug, Clone, Copy)]
struct Server {
    /// How long it thinks before it starts each reply.
    think: Duration,
    /// In how many writes it sends each reply line (each a separate read for the client).
    pieces: usize,
    /// The pause between two pieces of a reply.
    gap: Duration,
    /// How many bytes of requests the connection holds before the client's write has to wait for
    /// the server to read (small: every request goes out in several writes).
    request_buffer: usize,
}

/// A server that answers at once, in one piece.
const PROMPT: Server =
    Server { think: Duration::ZERO, pieces: 1, gap: Duration::ZERO, request_buffer: 4096 };

/// A server that is slow to answer (200 ms), sends every reply in three pieces 10 ms apart, and
/// reads requests four bytes at a time.
const SLOW: Server = Server {
    think: Duration::from_millis(200),
    pieces: 3,
    gap: Duration::from_millis(10),
    request_buffer: 4,
};

/// Every request line the server received, in order, shared with the test.
#[derive(Debug, Clone, Default)]
struct Log {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Log {
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

/// What the server answers to one request line: `GET session:<user>` is `+<user>`, anything else
/// an error that quotes the line.
fn answer(line: &str) -> String {
    match line.strip_prefix("GET session:") {
        // Any user name a client may look up (a marker key such as `__resync_1` too); a request
        // garbled by a half-written one before it has a space or a second `GET` in it.
        Some(user) if !user.is_empty() && !user.contains(char::is_whitespace) => {
            format!("+{user}\r\n")
        }
        _ => format!("-ERR unknown command '{line}'\r\n"),
    }
}

/// The reply a lookup of `user`'s session must get.
fn own_reply(user: &str) -> Reply {
    Reply::Value(user.to_owned())
}

/// Starts the fake server and returns the client's end of the connection.
fn start_server(server: Server) -> (Conn, Log) {
    let (client_out, server_in) = tokio::io::duplex(server.request_buffer);
    let (mut server_out, client_in) = tokio::io::duplex(1 << 16);
    let log = Log::default();
    let seen = log.clone();
    tokio::spawn(async move {
        let mut requests = BufReader::new(server_in);
        let mut line = String::new();
        loop {
            line.clear();
            match requests.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let request = line.trim_end_matches(['\r', '\n']).to_owned();
            let reply = answer(&request);
            seen.lines.lock().unwrap().push(request);
            sleep(server.think).await;
            let bytes = reply.as_bytes();
            let piece = bytes.len().div_ceil(server.pieces.max(1));
            for (i, chunk) in bytes.chunks(piece).enumerate() {
                if i > 0 {
                    sleep(server.gap).await;
                }
                if server_out.write_all(chunk).await.is_err() {
                    return;
                }
            }
        }
    });
    (tokio::io::join(client_in, client_out), log)
}

/// What a query returned, for messages.
fn shown(result: &std::io::Result<Reply>) -> String {
    match result {
        Ok(reply) => format!("Ok({reply:?})"),
        Err(e) => format!("Err({:?}: \"{e}\")", e.kind()),
    }
}

/// Why a reply that is not the query's own came back, from what the server received.
fn diagnosis(log: &Log, asked: &str) -> String {
    let lines = log.lines();
    let garbled: Vec<&String> =
        lines.iter().filter(|l| answer(l).starts_with('-') && l.contains("GET")).collect();
    if let Some(line) = garbled.first() {
        format!(
            "the server received the line {line:?}: the dropped query left half a request on \
             the connection, and the next request was written right after it"
        )
    } else {
        format!(
            "the server received {lines:?} and answered them in order, but the query for \
             `{asked}` read a reply that was left on the connection by a query that was dropped \
             before it read it"
        )
    }
}

/// How long a query after a cut may take (virtual time); the slow server answers in 220 ms.
const PATIENCE: Duration = Duration::from_secs(30);

/// Runs `GET session:<user>` and checks that it returned `user`'s session or an error; `Err` says
/// what it returned instead.
async fn lookup_own_or_error(
    client: &mut Client<Conn>,
    log: &Log,
    user: &str,
    context: &str,
) -> Result<std::io::Result<Reply>, String> {
    let command = format!("GET session:{user}");
    let Ok(result) = timeout(PATIENCE, client.query(&command)).await else {
        return Err(format!(
            "{context}; the next query, `{command}`, was still waiting for its reply after \
             {PATIENCE:?} (the server answers every request within 220 ms). The server received \
             {:?}: a reply the client waits for never comes (it was read already, or the request \
             never got through whole)",
            log.lines()
        ));
    };
    match &result {
        Ok(reply) if *reply == own_reply(user) => Ok(result),
        Err(_) => Ok(result),
        Ok(_) => Err(format!(
            "{context}; the next query, `{command}`, returned {}, which is not its own reply \
             (`+{user}`): {user} would be logged in as somebody else, or not at all. {}. After \
             a cut, a query must get its own reply or an error, never another request's",
            shown(&result),
            diagnosis(log, &command)
        )),
    }
}

hidden_test! {
    /// The web app's request handlers are tasks (`tokio::spawn`) on its multi-thread runtime,
    /// each awaiting `query` on a pooled client: over a connection that is `Send`, `query`'s
    /// future must stay `Send`, as the original is.
    async fn query_can_run_in_a_spawned_request_handler() {
        let (conn, _log) = start_server(PROMPT);
        let mut client = Client::new(conn);
        let lookup = client.query("GET session:alice");
        assert!(
            kata_support::is_send!(lookup),
            "the future returned by `query` (over a connection that is `Send`) is not `Send`, so \
             the web app can no longer `tokio::spawn` a request handler that looks a session up \
             on its multi-thread runtime: it holds something that is not `Send` across an \
             `.await` (an `Rc`, a `Cell` or `RefCell` borrowed by a guard, a drop guard holding \
             a `Box<dyn FnOnce()>` without `+ Send`, a `std` lock guard)"
        );
        let result = lookup.await;
        assert!(
            matches!(&result, Ok(reply) if *reply == own_reply("alice")),
            "nothing was cancelled, yet `GET session:alice` returned {}",
            shown(&result)
        );
    }

    /// Nothing dropped: every lookup gets its own session, from a prompt server and from a slow
    /// one that sends each reply in three pieces, and the client stays usable after each one.
    /// A slow reply is returned the moment its last piece arrives.
    async fn lookups_that_are_never_dropped_get_their_own_replies() {
        for server in [PROMPT, SLOW] {
            let (conn, log) = start_server(server);
            let mut client = Client::new(conn);
            for user in ["alice", "bob", "carol", "alice"] {
                let start = Instant::now();
                let result = client.query(&format!("GET session:{user}")).await;
                let took = start.elapsed();
                assert!(
                    matches!(&result, Ok(reply) if *reply == own_reply(user)),
                    "nothing was cancelled, yet `GET session:{user}` returned {} (the server \
                     received {:?}); a query that is never dropped must get its own reply, \
                     and the client must stay usable after a completed query",
                    shown(&result),
                    log.lines()
                );
                let expected = server.think + server.gap * (server.pieces as u32 - 1);
                assert_eq!(
                    took, expected,
                    "the server sent the reply to `GET session:{user}` in {expected:?}, but the \
                     query returned after {took:?}: return the reply the moment it is complete"
                );
            }
        }
    }

    /// A reply of the server's own kinds, and a command refused by the server: the client parses
    /// them and stays usable.
    async fn a_refused_command_does_not_break_the_client() {
        let (conn, log) = start_server(SLOW);
        let mut client = Client::new(conn);
        let refused = client.query("FLUSHALL").await;
        assert!(
            matches!(&refused, Ok(Reply::Error(message)) if message.contains("FLUSHALL")),
            "the server refused `FLUSHALL` with `-ERR unknown command 'FLUSHALL'`; expected \
             Ok(Reply::Error(..)), got {}",
            shown(&refused)
        );
        let next = client.query("GET session:bob").await;
        assert!(
            matches!(&next, Ok(reply) if *reply == own_reply("bob")),
            "after a refused command (a completed query), `GET session:bob` returned {} (the \
             server received {:?}): the client must stay usable",
            shown(&next),
            log.lines()
        );
    }

    /// The kata's story: the request handler's 50 ms timeout drops alice's lookup while the server
    /// is still thinking (its request went out whole). Bob's lookup on the same connection must
    /// not return alice's session, and neither may the one after it.
    async fn a_lookup_dropped_by_a_timeout_does_not_hand_its_reply_to_the_next() {
        let (conn, log) = start_server(Server { request_buffer: 4096, ..SLOW });
        let mut client = Client::new(conn);
        let first = timeout(Duration::from_millis(50), client.query("GET session:alice")).await;
        assert!(
            first.is_err(),
            "the server answers after 200 ms, so a 50 ms timeout must drop the lookup; it returned \
             {first:?}"
        );
        let context = "a request handler's 50 ms timeout dropped `GET session:alice` after its \
                       request was sent and before the server's reply (at 200 ms) came back";
        for user in ["bob", "carol"] {
            if let Err(seen) = lookup_own_or_error(&mut client, &log, user, context).await {
                panic!("{seen}");
            }
        }
    }

    /// Drop alice's lookup after every possible poll, with a slow server that reads requests four
    /// bytes at a time and sends replies in three pieces: the cut lands before the request went
    /// out, half way through it, while the server thinks, and half way through the reply. Then two
    /// more lookups on the same client, at once or after the connection sat idle for 2 s: each
    /// must get its own session or an error.
    async fn after_a_cut_anywhere_the_next_lookups_get_their_own_reply_or_an_error() {
        type State = (Arc<tokio::sync::Mutex<Client<Conn>>>, Log);
        for idle in [Duration::ZERO, Duration::from_secs(2)] {
        assert_cancel_safe(
            || -> State {
                let (conn, log) = start_server(SLOW);
                (Arc::new(tokio::sync::Mutex::new(Client::new(conn))), log)
            },
            |(client, _): State| async move {
                let mut client = client.lock().await;
                client.query("GET session:alice").await
            },
            move |(client, log): State, outcome| async move {
                let mut client = client.lock().await;
                let context = match outcome {
                    Outcome::Completed(result) => {
                        if !matches!(&result, Ok(reply) if *reply == own_reply("alice")) {
                            return Err(format!(
                                "`GET session:alice` ran to the end and returned {} (the server \
                                 received {:?})",
                                shown(&result),
                                log.lines()
                            ));
                        }
                        "`GET session:alice` ran to the end".to_owned()
                    }
                    Outcome::Cancelled { .. } => {
                        "`GET session:alice` was dropped there".to_owned()
                    }
                };
                settle().await;
                let context = if idle.is_zero() {
                    context
                } else {
                    // A client that heals itself after a while must heal into step, not out of it.
                    sleep(idle).await;
                    format!("{context}, the connection then sat idle for {idle:?}")
                };
                let bob = lookup_own_or_error(&mut client, &log, "bob", &context).await?;
                let context = format!(
                    "{context}, and `GET session:bob` then returned {}",
                    shown(&bob)
                );
                let _carol = lookup_own_or_error(&mut client, &log, "carol", &context).await?;
                Ok(())
            },
        )
        .await;
        }
    }

    /// A property over whole conversations: lookups of random users, each either run to the end or
    /// given a timeout that may cut it anywhere (before, during or after the server's answer), on
    /// servers of random speed and chunking. Every `Ok` reply is the lookup's own; until the first
    /// lookup is cut, every lookup succeeds.
    fn every_ok_reply_belongs_to_its_own_lookup() {
        let users = ["alice", "bob", "carol", "dave"];
        // A timeout of 0 ms cuts the lookup in its first poll, in the middle of writing its request
        // when the connection takes three bytes at a time; a longer one cuts it while the server
        // thinks or while the reply trickles in.
        let deadline = prop_oneof![1 => Just(0u64), 3 => 0u64..300];
        let lookup = (0..users.len(), proptest::option::weighted(0.4, deadline));
        let server = (0u64..250, 1usize..4, 0u64..30, prop_oneof![Just(3usize), Just(4096)]);
        let scenario = (proptest::collection::vec(lookup, 1..8), server);
        check_property(64, scenario, |(lookups, (think, pieces, gap, request_buffer))| async move {
            let server = Server {
                think: Duration::from_millis(think),
                pieces,
                gap: Duration::from_millis(gap),
                request_buffer,
            };
            let (conn, log) = start_server(server);
            let mut client = Client::new(conn);
            let mut story: Vec<String> = Vec::new();
            let mut cut = false;
            for (user, deadline) in lookups {
                let user = users[user];
                let command = format!("GET session:{user}");
                let result = match deadline {
                    Some(ms) => {
                        match timeout(Duration::from_millis(ms), client.query(&command)).await {
                            Ok(result) => result,
                            Err(_) => {
                                story.push(format!("`{command}` dropped by a {ms} ms timeout"));
                                cut = true;
                                continue;
                            }
                        }
                    }
                    None => match timeout(PATIENCE, client.query(&command)).await {
                        Ok(result) => result,
                        Err(_) => {
                            return Err(format!(
                                "after {story:?}, `{command}` was still waiting for its reply \
                                 after {PATIENCE:?} (the server received {:?})",
                                log.lines()
                            ));
                        }
                    },
                };
                let own = matches!(&result, Ok(reply) if *reply == own_reply(user));
                if result.is_ok() && !own {
                    return Err(format!(
                        "after {story:?}, `{command}` returned {}, which is not its own reply \
                         (`+{user}`). {}",
                        shown(&result),
                        diagnosis(&log, &command)
                    ));
                }
                if !cut && !own {
                    return Err(format!(
                        "no lookup had been dropped ({story:?}), yet `{command}` returned {} \
                         (the server received {:?}): a client nobody cancelled must keep \
                         working",
                        shown(&result),
                        log.lines()
                    ));
                }
                story.push(format!("`{command}` returned {}", shown(&result)));
            }
            Ok(())
        });
    }
}
