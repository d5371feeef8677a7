//! Hidden tests for kata 29: a connection whose borrower was dropped in the middle of an operation
//! (a `BEGIN` or any statement sent and its reply unread, a transaction open, a `COMMIT` whose
//! reply is on its way) is never lent to the next request as it is: the pool discards it, freeing
//! its slot, or repairs it first. A connection that ran to the end is reused.
//!
//! The fake server is PostgreSQL in miniature, one session per connection: it runs a session's
//! statements in the order they were sent and answers each in turn (`BEGIN`, `COMMIT`, `UPDATE 1`,
//! or the value a `SELECT` selects), a statement outside a transaction commits on its own, `BEGIN`
//! inside one is answered with a warning and changes nothing, and a session whose socket is
//! dropped ends, rolling back its open transaction. It records every statement, the session and
//! transaction it ran in, and what it answered, and the most sessions the pool held open at once
//! (a session is held open until the pool drops its socket), checked against the pool's size.
//! A statement the server took survives a runtime shut down under it (the shutdown tests).

use std::cell::Cell;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kata_support::runtime::{self, SEEDS};
use kata_support::{
    Outcome, assert_cancel_safe, check_property, explore_at_shutdown, hidden_test, settle,
};
use pool_dirty_connection::{DbError, Pool, Reply, Socket};
use proptest::prelude::*;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until, timeout};

/// What became of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Open,
    Committed,
    RolledBack,
}

impl Fate {
    fn shown(self) -> &'static str {
        match self {
            Fate::Open => "still open",
            Fate::Committed => "committed",
            Fate::RolledBack => "rolled back",
        }
    }
}

/// One statement the server ran.
#[derive(Debug, Clone)]
struct Executed {
    session: usize,
    sql: String,
    /// The transaction it ran in (numbered from 1), or `None`: outside any, committed on its own.
    txn: Option<usize>,
    warning: Option<&'static str>,
    answer: String,
}

const ALREADY_IN_PROGRESS: &str = "there is already a transaction in progress";

#[derive(Debug, Default)]
struct Session {
    /// The transaction the session is in.
    current: Option<usize>,
    /// Its socket was dropped, and the session ended.
    ended: bool,
}

/// The server's record of every session.
#[derive(Debug, Default)]
struct Db {
    log: Vec<Executed>,
    txns: Vec<Fate>,
    sessions: Vec<Session>,
    /// The sessions whose sockets the client held open at once, at the most crowded moment (first
    /// reached), numbered from 1. The number only grows when a session opens, so it is taken then.
    most_open_at_once: Vec<usize>,
}

impl Db {
    fn run(&mut self, session: usize, sql: &str) -> Reply {
        let current = self.sessions[session].current;
        let (txn, warning, answer) = match sql {
            "BEGIN" => match current {
                Some(open) => (Some(open), Some(ALREADY_IN_PROGRESS), "BEGIN".to_owned()),
                None => {
                    self.txns.push(Fate::Open);
                    let n = self.txns.len();
                    self.sessions[session].current = Some(n);
                    (Some(n), None, "BEGIN".to_owned())
                }
            },
            "COMMIT" | "ROLLBACK" => match self.sessions[session].current.take() {
                Some(n) => {
                    let fate = if sql == "COMMIT" { Fate::Committed } else { Fate::RolledBack };
                    self.txns[n - 1] = fate;
                    (Some(n), None, sql.to_owned())
                }
                None => (None, Some("there is no transaction in progress"), sql.to_owned()),
            },
            _ => {
                let answer = if let Some(rest) = sql.strip_prefix("SELECT '") {
                    rest.trim_end_matches('\'').to_owned()
                } else if sql.starts_with("INSERT") {
                    "INSERT 0 1".to_owned()
                } else {
                    "UPDATE 1".to_owned()
                };
                (current, None, answer)
            }
        };
        self.log.push(Executed {
            session: session + 1,
            sql: sql.to_owned(),
            txn,
            warning,
            answer: answer.clone(),
        });
        Ok(answer)
    }

    fn end_session(&mut self, session: usize) {
        if let Some(n) = self.sessions[session].current.take() {
            self.txns[n - 1] = Fate::RolledBack;
        }
        self.sessions[session].ended = true;
    }

    fn fate(&self, txn: usize) -> Fate {
        self.txns[txn - 1]
    }

    /// The statements the server ran for `who` (they name `'who'`), in order.
    fn of<'a>(&'a self, who: &'a str) -> impl Iterator<Item = &'a Executed> + 'a {
        let name = format!("'{who}'");
        self.log.iter().filter(move |e| e.sql.contains(&name))
    }

    /// Every statement the server ran, for messages.
    fn transcript(&self) -> String {
        let lines: Vec<String> = self
            .log
            .iter()
            .map(|e| {
                let place = match e.txn {
                    Some(n) => format!("in transaction {n}"),
                    None => "outside any transaction".to_owned(),
                };
                let warning = e.warning.map(|w| format!(", WARNING: {w}")).unwrap_or_default();
                format!("session {}: `{}` ({place}{warning}) -> {:?}", e.session, e.sql, e.answer)
            })
            .collect();
        let fates: Vec<String> = (1..=self.txns.len())
            .map(|n| format!("transaction {n} {}", self.fate(n).shown()))
            .collect();
        let fates = if fates.is_empty() { "no transaction".to_owned() } else { fates.join(", ") };
        format!(
            "The server ran [{}]; {fates}; {} session(s) opened.",
            lines.join(", "),
            self.sessions.len()
        )
    }
}

/// The server end of one connection.
#[derive(Debug)]
struct Line {
    session: usize,
    statements: Mutex<mpsc::UnboundedReceiver<String>>,
    /// The statement the server took and has not answered yet: kept here, not in the task serving
    /// it, so that a runtime shut down while the server works on it does not lose it.
    taken: Mutex<Option<String>>,
    replies: mpsc::UnboundedSender<Reply>,
}

impl Line {
    /// The client still holds its socket (the pool has not closed the connection).
    fn held_open(&self) -> bool {
        !self.replies.is_closed()
    }
}

/// The fake server: every session's record, and the server end of every connection, kept outside
/// any runtime so that a new runtime can serve what an old one left (the shutdown test).
#[derive(Debug, Clone)]
struct Server {
    db: Arc<Mutex<Db>>,
    lines: Arc<Mutex<Vec<Arc<Line>>>>,
    latency: Duration,
}

impl Server {
    fn new(latency: Duration) -> Server {
        Server { db: Arc::default(), lines: Arc::default(), latency }
    }

    fn db(&self) -> MutexGuard<'_, Db> {
        self.db.lock().unwrap()
    }

    /// Opens a session and returns the client's end of its socket. Called by the pool, inside the
    /// runtime that serves the session.
    fn connect(&self) -> Socket {
        let (statements, queue) = mpsc::unbounded_channel();
        let (replies, answers) = mpsc::unbounded_channel();
        let session = {
            let mut db = self.db();
            db.sessions.push(Session::default());
            db.sessions.len() - 1
        };
        let line = Arc::new(Line {
            session,
            statements: Mutex::new(queue),
            taken: Mutex::default(),
            replies,
        });
        let open = {
            let mut lines = self.lines.lock().unwrap();
            lines.push(line.clone());
            self.open_sessions_of(&lines)
        };
        let mut db = self.db();
        if open.len() > db.most_open_at_once.len() {
            db.most_open_at_once = open;
        }
        drop(db);
        self.serve(line);
        Socket { statements, replies: answers }
    }

    /// The sessions (numbered from 1) whose sockets the client holds open.
    fn open_sessions_of(&self, lines: &[Arc<Line>]) -> Vec<usize> {
        lines.iter().filter(|l| l.held_open()).map(|l| l.session + 1).collect()
    }

    /// The sessions (numbered from 1) whose sockets the client holds open now.
    fn open_sessions(&self) -> Vec<usize> {
        self.open_sessions_of(&self.lines.lock().unwrap())
    }

    /// How long (virtual time) the requests after a cut may take, connection included:
    /// [`PATIENCE`] on the story's servers, more on a slower one.
    fn patience(&self) -> Duration {
        PATIENCE.max(self.latency * 150)
    }

    /// Serves one session on the current runtime: each statement is answered `latency` after
    /// it is taken, in order; a closed socket ends the session.
    fn serve(&self, line: Arc<Line>) {
        let (db, latency) = (self.db.clone(), self.latency);
        tokio::spawn(async move {
            loop {
                let taken = line.taken.lock().unwrap().clone();
                let sql = match taken {
                    Some(sql) => sql,
                    None => {
                        let next =
                            poll_fn(|cx| line.statements.lock().unwrap().poll_recv(cx)).await;
                        let Some(sql) = next else {
                            db.lock().unwrap().end_session(line.session);
                            return;
                        };
                        *line.taken.lock().unwrap() = Some(sql.clone());
                        sql
                    }
                };
                if !latency.is_zero() {
                    sleep(latency).await;
                }
                let reply = db.lock().unwrap().run(line.session, &sql);
                *line.taken.lock().unwrap() = None;
                let _ = line.replies.send(reply);
            }
        });
    }

    /// Serves every session still open on the current runtime (after the one that served them
    /// was shut down).
    fn restart(&self) {
        let lines: Vec<Arc<Line>> = self.lines.lock().unwrap().clone();
        let ended: Vec<bool> = self.db().sessions.iter().map(|s| s.ended).collect();
        for line in lines {
            if !ended[line.session] {
                self.serve(line);
            }
        }
    }

    /// A pool of `max_size` connections to this server.
    fn pool(&self, max_size: usize) -> Pool {
        let server = self.clone();
        Pool::new(max_size, move || server.connect())
    }
}

/// How long the server takes per statement in the story: the database has a slow minute.
const SLOW: Duration = Duration::from_millis(200);
/// How long the server takes per statement where the explorer cuts.
const LATENCY: Duration = Duration::from_millis(20);
/// How long (virtual time) a request after a cut may take, connection included.
const PATIENCE: Duration = Duration::from_secs(30);

/// The story's request handler: a customer redeems 50 points for a coffee. It looks the customer
/// up (a statement on its own), then debits the wallet and records the redemption in one
/// transaction.
async fn redeem(pool: &Pool, who: &str) -> Result<(), DbError> {
    let mut conn = pool.get().await;
    let found = conn.execute(&format!("SELECT '{who}'")).await?;
    if found != who {
        return Err(DbError::Server(format!("looked up '{who}' and the reply was {found:?}")));
    }
    let debit = format!("UPDATE wallets SET points = points - 50 WHERE customer = '{who}'");
    let record = format!("INSERT INTO redemptions (customer, reward) VALUES ('{who}', 'coffee')");
    conn.transaction(&[&debit, &record]).await
}

/// A statement a request runs on its own, outside any transaction.
fn on_its_own(who: &str) -> String {
    format!("UPDATE wallets SET last_seen = now() WHERE customer = '{who}'")
}

/// One request that is not in a transaction: look `who` up, then run a statement on its own.
/// Sets `lent` once the pool lent it a connection.
async fn plain_request(pool: &Pool, who: &str, lent: &Cell<bool>) -> Result<(), String> {
    let mut conn = pool.get().await;
    lent.set(true);
    let select = format!("SELECT '{who}'");
    match conn.execute(&select).await {
        Ok(found) if found == who => {}
        Ok(found) => {
            return Err(format!(
                "{who}'s request ran `{select}` and read the reply {found:?}: the reply to a \
                 statement somebody else sent on that connection, which stayed unread on its \
                 socket when that borrower's future was dropped"
            ));
        }
        Err(e) => {
            return Err(format!(
                "{who}'s request ran `{select}` and got Err({e:?}): the pool lent it a \
                 connection that could not serve it (a request after a cut must get a clean \
                 connection, not an error)"
            ));
        }
    }
    let statement = on_its_own(who);
    match conn.execute(&statement).await {
        Ok(tag) if tag == "UPDATE 1" => Ok(()),
        other => Err(format!("{who}'s request ran `{statement}` and got {other:?}")),
    }
}

/// Every statement of `who`, a request that runs its statements on its own, ran outside any
/// transaction.
fn ran_on_its_own(db: &Db, who: &str) -> Result<(), String> {
    let Some(e) = db.of(who).find(|e| e.txn.is_some()) else { return Ok(()) };
    let n = e.txn.unwrap_or_default();
    Err(format!(
        "{who}'s request ran `{}` on its own, but the server ran it inside transaction {n} (now \
         {}), which a dropped borrower had begun on that connection: the pool lent the \
         connection with the transaction still open",
        e.sql,
        db.fate(n).shown()
    ))
}

/// The statements of `who`'s transaction all ran in one transaction holding nothing else; returns
/// its fate (`None`: none ran).
fn ran_in_its_own_transaction(db: &Db, who: &str) -> Result<Option<Fate>, String> {
    let mut txn = None;
    for e in db.of(who).filter(|e| !e.sql.starts_with("SELECT")) {
        let Some(n) = e.txn else {
            return Err(format!(
                "{who}'s `{}` ran outside any transaction, so it cannot be undone with the rest \
                 of {who}'s transaction",
                e.sql
            ));
        };
        if txn.is_some_and(|t| t != n) {
            return Err(format!("{who}'s statements ran in two transactions"));
        }
        txn = Some(n);
    }
    let Some(n) = txn else { return Ok(None) };
    let name = format!("'{who}'");
    let stranger = db.log.iter().find(|e| {
        e.txn == Some(n)
            && !e.sql.contains(&name)
            && !["BEGIN", "COMMIT", "ROLLBACK"].contains(&&*e.sql)
    });
    if let Some(e) = stranger {
        return Err(format!(
            "transaction {n} held {who}'s statements and also `{}`, from another request that \
             was lent the connection with the transaction still open",
            e.sql
        ));
    }
    Ok(Some(db.fate(n)))
}

/// No `BEGIN` ran inside a transaction that was already open.
fn no_begin_inside_a_transaction(db: &Db) -> Result<(), String> {
    match db.log.iter().find(|e| e.sql == "BEGIN" && e.warning == Some(ALREADY_IN_PROGRESS)) {
        None => Ok(()),
        Some(e) => Err(format!(
            "a `BEGIN` was answered \"WARNING: {ALREADY_IN_PROGRESS}\": session {} was lent \
             while still inside transaction {}, begun by a borrower whose future was dropped",
            e.session,
            e.txn.unwrap_or_default()
        )),
    }
}

/// After a handler ran (to the end or cut), the next requests: two at once, each a lookup and a
/// statement on its own, then a whole `redeem` for dan. All must succeed on clean connections
/// within the server's patience; afterwards nothing is left open, no open session sits in a
/// transaction, and the pool never held more connections than its size.
async fn next_requests_get_clean_connections(
    pool: &Pool,
    server: &Server,
    max_size: usize,
) -> Result<(), String> {
    let patience = server.patience();
    let lent = [Cell::new(false), Cell::new(false)];
    let done = [Cell::new(false), Cell::new(false)];
    let request = |i: usize, who: &'static str| {
        let (lent, done) = (&lent[i], &done[i]);
        async move {
            let result = plain_request(pool, who, lent).await;
            done.set(true);
            result
        }
    };
    let both =
        timeout(patience, async { tokio::join!(request(0, "bob"), request(1, "cat")) }).await;
    let context = format!("a pool of {max_size} connection(s); then two requests came at once");
    match both {
        Err(_) => {
            let who = ["bob", "cat"];
            let waiting: Vec<&str> = (0..2).filter(|&i| !lent[i].get()).map(|i| who[i]).collect();
            let stuck: Vec<&str> =
                (0..2).filter(|&i| lent[i].get() && !done[i].get()).map(|i| who[i]).collect();
            let seen = if waiting.is_empty() {
                format!(
                    "{} had a connection, and still waited for a reply that never comes",
                    stuck.join(" and ")
                )
            } else if !stuck.is_empty() {
                format!(
                    "{} still waited for a connection from the pool, while {} had one and still \
                     waited for a reply that never comes",
                    waiting.join(" and "),
                    stuck.join(" and ")
                )
            } else {
                let open = server.open_sessions();
                let open = if open.is_empty() {
                    "no connection open".to_owned()
                } else {
                    format!("{} connection(s) open ({})", open.len(), sessions_named(&open))
                };
                format!(
                    "{} still waited for a connection from the pool, though no other request held \
                     one and the pool held {open}: the pool lent no more (a connection was \
                     closed, dropped, or handed to a request that had gone, without its slot \
                     coming back), so it believes it is at its size limit and will never lend \
                     again",
                    waiting.join(" and "),
                )
            };
            return Err(format!(
                "{context}; after {patience:?}, {seen}. {}",
                server.db().transcript()
            ));
        }
        Ok((bob, cat)) => {
            for result in [bob, cat] {
                result
                    .map_err(|seen| format!("{context}; {seen}. {}", server.db().transcript()))?;
            }
        }
    }
    {
        let db = server.db();
        for who in ["bob", "cat"] {
            ran_on_its_own(&db, who)
                .map_err(|seen| format!("{context}; {seen}. {}", db.transcript()))?;
        }
    }
    let dan = match timeout(patience, redeem(pool, "dan")).await {
        Ok(result) => result,
        Err(_) => {
            return Err(format!(
                "{context}, then dan's `redeem` was still waiting after {patience:?}. {}",
                server.db().transcript()
            ));
        }
    };
    let context = format!("{context}, then dan's `redeem` returned {dan:?}");
    let db = server.db();
    let fail = |seen: String| format!("{context}; {seen}. {}", db.transcript());
    no_begin_inside_a_transaction(&db).map_err(fail)?;
    let fate = ran_in_its_own_transaction(&db, "dan").map_err(fail)?;
    if dan.is_err() || fate != Some(Fate::Committed) {
        return Err(fail(format!(
            "dan's `redeem` must succeed on a clean connection and commit its work, which is {}",
            fate.map_or("not there", Fate::shown)
        )));
    }
    drop(db);
    nothing_left_open(server, max_size).await.map_err(|seen| format!("{context}; {seen}"))
}

/// Once every request is done (the server gets its turn with whatever was closed or is still
/// queued), no session is inside a transaction, and the pool never held more than `max_size`
/// connections open at once.
async fn nothing_left_open(server: &Server, max_size: usize) -> Result<(), String> {
    settle().await;
    sleep(server.patience()).await;
    let db = server.db();
    let fail = |seen: String| format!("{seen}. {}", db.transcript());
    if let Some((n, s)) = db.sessions.iter().enumerate().find(|(_, s)| s.current.is_some()) {
        return Err(fail(format!(
            "every request was done, and {:?} later session {} is still inside transaction {} \
             (\"idle in transaction\", holding the locks of what it wrote), which nobody will end",
            server.patience(),
            n + 1,
            s.current.unwrap_or_default()
        )));
    }
    if let [held @ .., opened] = db.most_open_at_once.as_slice()
        && held.len() >= max_size
    {
        return Err(fail(format!(
            "the pool of {max_size} connection(s) held {} connections open at once: it opened \
             session {opened} while it still held {} open, so it could lend more connections at \
             once than its size allows",
            held.len() + 1,
            sessions_named(held)
        )));
    }
    Ok(())
}

/// `sessions 1 and 2`, for messages.
fn sessions_named(sessions: &[usize]) -> String {
    let numbers: Vec<String> = sessions.iter().map(ToString::to_string).collect();
    match numbers.as_slice() {
        [] => "none".to_owned(),
        [one] => format!("session {one}"),
        [rest @ .., last] => format!("sessions {} and {last}", rest.join(", ")),
    }
}

/// The cut handler `ann`'s work: its lookup on its own, its transaction all or nothing, never
/// left open, and committed if `redeem` returned Ok.
fn handler_work_is_all_or_nothing(
    db: &Db,
    completed: Option<&Result<(), DbError>>,
) -> Result<(), String> {
    if let Some(e) = db.of("ann").find(|e| e.sql.starts_with("SELECT") && e.txn.is_some()) {
        return Err(format!(
            "ann's lookup `{}` ran inside transaction {}, which it never began",
            e.sql,
            e.txn.unwrap_or_default()
        ));
    }
    let fate = ran_in_its_own_transaction(db, "ann")?;
    match (completed, fate) {
        (Some(Ok(())), Some(Fate::Committed)) => Ok(()),
        (Some(Ok(())), _) => Err(format!(
            "`redeem` returned Ok, but ann's work is {}",
            fate.map_or("not there", Fate::shown)
        )),
        (Some(Err(e)), _) => {
            Err(format!("nothing was cancelled, yet `redeem` returned Err({e:?})"))
        }
        (None, Some(Fate::Open)) => Err("ann's transaction is still open".to_owned()),
        (None, _) => Ok(()),
    }
}

type Shared = (Pool, Server);

fn context_of<T>(outcome: &Outcome<T>) -> &'static str {
    match outcome {
        Outcome::Completed(_) => "`redeem` ran to the end",
        Outcome::Cancelled { .. } => {
            "ann's `redeem` was dropped there, holding its pooled connection"
        }
    }
}

/// The whole check after one handler ran (to the end or cut).
async fn after_the_handler(
    (pool, server): Shared,
    max_size: usize,
    completed: Option<Result<(), DbError>>,
    context: &str,
) -> Result<(), String> {
    next_requests_get_clean_connections(&pool, &server, max_size)
        .await
        .map_err(|seen| format!("{context}; {seen}"))?;
    let db = server.db();
    handler_work_is_all_or_nothing(&db, completed.as_ref())
        .map_err(|seen| format!("{context}; {seen}. {}", db.transcript()))
}

/// Runs `redeem` for ann under a timeout of `cut_after` on a slow server, and checks that it was
/// cut.
async fn ann_cut_after(pool: &Pool, server: &Server, cut_after: Duration) -> Result<(), String> {
    match timeout(cut_after, redeem(pool, "ann")).await {
        Err(_) => Ok(()),
        Ok(result) => Err(format!(
            "a {cut_after:?} timeout must drop ann's `redeem` on a server that answers in \
             {:?}, yet it returned {result:?}. {}",
            server.latency,
            server.db().transcript()
        )),
    }
}

/// What ann's `redeem` was waiting for `cut_after` into it on the slow server.
fn waiting_for(cut_after: Duration, latency: Duration) -> &'static str {
    match cut_after.as_millis() / latency.as_millis() {
        0 => "the reply to its lookup, `SELECT 'ann'`",
        1 => "the reply to its `BEGIN`",
        2 => "the reply to its `UPDATE`, inside its transaction",
        3 => "the reply to its `INSERT`, inside its transaction",
        _ => "the reply to its `COMMIT`",
    }
}

/// What one request of the property does.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A lookup and a statement on its own.
    Plain,
    /// The story's `redeem`.
    Redeem,
}

/// One request of the property, its outcome (`None`: its timeout dropped it), and what it was.
type Ran = (String, Kind, Option<Result<(), String>>);

/// Runs one request of the property under its timeout (none: [`PATIENCE`]).
async fn run_request(pool: &Pool, who: String, kind: Kind, cut_after: Option<u64>) -> Ran {
    let limit = cut_after.map_or(PATIENCE, Duration::from_millis);
    let work = async {
        match kind {
            Kind::Plain => plain_request(pool, &who, &Cell::new(false)).await,
            Kind::Redeem => redeem(pool, &who)
                .await
                .map_err(|e| format!("{who}'s `redeem` returned Err({e:?})")),
        }
    };
    let outcome = match timeout(limit, work).await {
        Ok(result) => Some(result),
        Err(_) if cut_after.is_some() => None,
        Err(_) => Some(Err(format!("{who}'s request was still waiting after {PATIENCE:?}"))),
    };
    (who, kind, outcome)
}

/// What the server did for one request of the property is what it asked for: a plain request's
/// statements outside any transaction; a `redeem`'s lookup outside, its work all or nothing in a
/// transaction of its own, committed if it returned `Ok`, never left open.
fn request_ran_as_asked(db: &Db, (who, kind, outcome): &Ran) -> Result<(), String> {
    match kind {
        Kind::Plain => ran_on_its_own(db, who),
        Kind::Redeem => {
            if let Some(e) = db.of(who).find(|e| e.sql.starts_with("SELECT") && e.txn.is_some()) {
                return Err(format!(
                    "{who}'s lookup `{}` ran inside transaction {}, which it never began",
                    e.sql,
                    e.txn.unwrap_or_default()
                ));
            }
            let fate = ran_in_its_own_transaction(db, who)?;
            let ok = matches!(outcome, Some(Ok(())));
            if fate == Some(Fate::Open) || (ok && fate != Some(Fate::Committed)) {
                return Err(format!(
                    "{who}'s `redeem` {}, and its work is {}",
                    if ok { "returned Ok" } else { "was dropped" },
                    fate.map_or("not there", Fate::shown)
                ));
            }
            Ok(())
        }
    }
}

/// Which run of its body this is. The harness runs an async test body once per seed of [`SEEDS`],
/// in order, in a process of its own; a test with many cases spreads them over the seeds (case
/// `i` on run `i % SEEDS.len()`) instead of running every case under every seed, so that each
/// case runs once and the test stays fast. The counter is the test's own, and only counts.
fn this_run(runs: &AtomicUsize) -> usize {
    runs.fetch_add(1, Ordering::SeqCst) % SEEDS.len()
}

/// The cases of `cases` that run `run` takes.
fn share<T>(cases: impl IntoIterator<Item = T>, run: usize) -> impl Iterator<Item = T> {
    cases.into_iter().enumerate().filter(move |(i, _)| i % SEEDS.len() == run).map(|(_, case)| case)
}

hidden_test! {
    /// Nothing cancelled: requests one after the other and two at once succeed, `redeem` commits
    /// its work, and a connection that ran to the end goes back to the pool and is reused (one
    /// after the other, the requests share one session).
    async fn requests_nobody_cancels_succeed_and_reuse_their_connection() {
        for latency in [Duration::ZERO, SLOW] {
            for max_size in [1, 2] {
                let server = Server::new(latency);
                let pool = server.pool(max_size);
                let ann = redeem(&pool, "ann").await;
                let lent = Cell::new(false);
                let eve = plain_request(&pool, "eve", &lent).await;
                let fay = redeem(&pool, "fay").await;
                let db = server.db();
                let context = format!(
                    "nothing was cancelled (a pool of {max_size}, the server answers in \
                     {latency:?}): ann's `redeem` returned {ann:?}, then eve's request \
                     returned {eve:?}, then fay's `redeem` returned {fay:?}"
                );
                if let Err(seen) = eve {
                    panic!("{context}; {seen}. {}", db.transcript());
                }
                for (who, result) in [("ann", &ann), ("fay", &fay)] {
                    let fate = ran_in_its_own_transaction(&db, who)
                        .unwrap_or_else(|seen| panic!("{context}; {seen}. {}", db.transcript()));
                    assert!(
                        result.is_ok() && fate == Some(Fate::Committed),
                        "{context}; {who}'s work is {}. {}",
                        fate.map_or("not there", Fate::shown),
                        db.transcript()
                    );
                }
                assert_eq!(
                    db.sessions.len(),
                    1,
                    "{context}; the three requests came one after the other and each ran to the \
                     end, so the pool should have lent the same connection each time, but the \
                     server saw {} sessions: a connection that finished cleanly was thrown away \
                     instead of reused. {}",
                    db.sessions.len(),
                    db.transcript()
                );
                drop(db);
                next_requests_get_clean_connections(&pool, &server, max_size)
                    .await
                    .unwrap_or_else(|seen| panic!("nothing was cancelled; {seen}"));
            }
        }
    }

    /// The web framework runs each request handler in a task of its own (`tokio::spawn`) on its
    /// multi-thread runtime, and a handler holds its `Pooled` guard across every `.await`: the
    /// guard and every future of the pool's API must stay `Send`, as the original's are.
    async fn a_handler_with_a_pooled_connection_can_run_in_a_spawned_task() {
        let server = Server::new(Duration::ZERO);
        let pool = server.pool(1);
        let mut not_send = Vec::new();
        let get = pool.get();
        if !kata_support::is_send!(get) {
            not_send.push("the future returned by `Pool::get`");
        }
        let mut conn = get.await;
        if !kata_support::is_send!(conn) {
            not_send.push("the `Pooled` guard");
        }
        let lookup = conn.execute("SELECT 'ann'");
        if !kata_support::is_send!(lookup) {
            not_send.push("the future returned by `Conn::execute`");
        }
        lookup.await.expect("nothing was cancelled: the lookup must succeed");
        let debit = ["UPDATE wallets SET points = points - 50 WHERE who = 'ann'"];
        let work = conn.transaction(&debit);
        if !kata_support::is_send!(work) {
            not_send.push("the future returned by `Conn::transaction`");
        }
        work.await.expect("nothing was cancelled: the transaction must commit");
        drop(conn);
        assert!(
            not_send.is_empty(),
            "{} not `Send`, so the web framework can no longer run a handler that holds a pooled \
             connection in a spawned task: it holds something that is not `Send` across an \
             `.await` (an `Rc`, a `Cell` or `RefCell` shared by reference, a drop guard holding a \
             `Box<dyn FnOnce()>` without `+ Send`, a `std` lock guard)",
            match not_send.as_slice() {
                [one] => format!("{one} is"),
                many => format!("{} are", many.join(", ")),
            }
        );
    }

    /// The kata's story: the database has a slow minute (200 ms per statement), and the handler's
    /// 50 ms timeout drops `redeem` while the reply to its lookup is on its way. The next requests
    /// must get clean connections: nobody may read ann's reply.
    async fn a_handler_timed_out_during_its_lookup_leaves_no_reply_for_the_next_request() {
        for max_size in [1, 2] {
            let server = Server::new(SLOW);
            let pool = server.pool(max_size);
            let cut_after = Duration::from_millis(50);
            if let Err(seen) = ann_cut_after(&pool, &server, cut_after).await {
                panic!("{seen}");
            }
            let context = format!(
                "a {cut_after:?} timeout dropped ann's `redeem` while it waited for {}",
                waiting_for(cut_after, SLOW)
            );
            if let Err(seen) = after_the_handler((pool, server), max_size, None, &context).await {
                panic!("{seen}");
            }
        }
    }

    /// The handler's timeout fires while `COMMIT` is in flight: the server commits ann's work,
    /// and its reply is still on the way. The next requests must get clean connections (nobody
    /// reads `COMMIT`), and ann's work is committed whole.
    async fn a_handler_cut_while_the_reply_to_commit_is_unread_leaves_a_clean_pool() {
        for max_size in [1, 2] {
            let server = Server::new(SLOW);
            let pool = server.pool(max_size);
            let cut_after = Duration::from_millis(900);
            if let Err(seen) = ann_cut_after(&pool, &server, cut_after).await {
                panic!("{seen}");
            }
            let context = format!(
                "a {cut_after:?} timeout dropped ann's `redeem` while it waited for {}",
                waiting_for(cut_after, SLOW)
            );
            let state = (pool, server.clone());
            if let Err(seen) = after_the_handler(state, max_size, None, &context).await {
                panic!("{seen}");
            }
            let db = server.db();
            let fate = ran_in_its_own_transaction(&db, "ann")
                .unwrap_or_else(|seen| panic!("{context}; {seen}. {}", db.transcript()));
            assert_eq!(
                fate,
                Some(Fate::Committed),
                "{context}; the `COMMIT` was on the wire, so the server must commit ann's work \
                 whatever became of the connection, but it is {}. {}",
                fate.map_or("not there", Fate::shown),
                db.transcript()
            );
        }
    }

    /// A timeout drops `redeem` at every 50 ms of its life on the slow server: during its lookup,
    /// its `BEGIN`, each statement of its transaction and its `COMMIT` (each cut under one seed).
    /// The next requests must get clean connections each time.
    async fn a_handler_timed_out_at_any_moment_leaves_a_clean_pool() {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let cuts = (50..1000).step_by(50).map(Duration::from_millis);
        for cut_after in share(cuts, this_run(&RUNS)) {
            let server = Server::new(SLOW);
            let pool = server.pool(1);
            if let Err(seen) = ann_cut_after(&pool, &server, cut_after).await {
                panic!("{seen}");
            }
            let context = format!(
                "a {cut_after:?} timeout dropped ann's `redeem` while it waited for {}",
                waiting_for(cut_after, SLOW)
            );
            if let Err(seen) = after_the_handler((pool, server), 1, None, &context).await {
                panic!("{seen}");
            }
        }
    }

    /// Drop `redeem` after every possible poll, at both moments (still waiting, and woken): before
    /// it had a connection, during its lookup, its `BEGIN`, each statement, its `COMMIT`. On a
    /// pool of one connection (at its size limit while the handler holds it) and of two (on
    /// alternate seeds, four in all). The next requests get clean connections, and ann's work is
    /// all or nothing, never left open.
    async fn after_a_cut_anywhere_the_next_requests_get_clean_connections() {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let run = this_run(&RUNS);
        // The explorer already tries every cut, and nothing here draws on the seed (no
        // `select!`): four runs, two per pool size, keep the test fast.
        if run >= 4 {
            return;
        }
        let max_size = 1 + run % 2;
        assert_cancel_safe(
            || {
                let server = Server::new(LATENCY);
                (server.pool(max_size), server)
            },
            |(pool, _): Shared| async move { redeem(&pool, "ann").await },
            |state: Shared, outcome| async move {
                let context = context_of(&outcome);
                let completed = outcome.completed();
                after_the_handler(state, max_size, completed, context).await
            },
        )
        .await;
    }

    /// The story's cut (during `BEGIN`), then the next request is cut too: a timeout of 0 to
    /// 400 ms (every 25 ms, each under one seed) drops it while it waits for a connection, while
    /// the pool may be cleaning up what ann left, or while its own lookup is in flight. The
    /// requests after it must still get clean connections from the pool of one.
    async fn a_next_request_cut_too_leaves_the_pool_clean_and_unstarved() {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let cuts = (0..=400).step_by(25).map(Duration::from_millis);
        for cut_next in share(cuts, this_run(&RUNS)) {
            let server = Server::new(SLOW);
            let pool = server.pool(1);
            let cut_ann = Duration::from_millis(250);
            if let Err(seen) = ann_cut_after(&pool, &server, cut_ann).await {
                panic!("{seen}");
            }
            let lent = Cell::new(false);
            let eve = timeout(cut_next, plain_request(&pool, "eve", &lent)).await;
            let context = format!(
                "a {cut_ann:?} timeout dropped ann's `redeem` while it waited for {}, then a \
                 {cut_next:?} timeout {} eve's request",
                waiting_for(cut_ann, SLOW),
                if eve.is_err() { "dropped" } else { "let through" }
            );
            if let Ok(Err(seen)) = &eve {
                panic!("{context}; {seen}. {}", server.db().transcript());
            }
            if let Err(seen) = after_the_handler((pool, server), 1, None, &context).await {
                panic!("{seen}");
            }
        }
    }

    /// A request that gives up waiting for a connection (a timeout while another request holds
    /// the only one) takes no slot with it: once the holder is done, the next requests get
    /// connections.
    async fn a_request_that_gives_up_waiting_for_a_connection_takes_no_slot() {
        let server = Server::new(SLOW);
        let pool = server.pool(1);
        let holder = pool.get().await;
        let gave_up = timeout(Duration::from_millis(100), pool.get()).await;
        assert!(
            gave_up.is_err(),
            "the pool of one lent a second connection while the first was held"
        );
        drop(holder);
        let context = "a request gave up waiting for the pool's only connection while another \
                       request held it, which then gave it back unused";
        if let Err(seen) = after_the_handler((pool, server), 1, None, context).await {
            panic!("{seen}");
        }
    }

    /// A deploy: the runtime shuts down with `redeem` parked in a task, or the handler is dropped
    /// after the runtime is gone, after every possible poll, on a pool of one. Dropping it must
    /// not panic, and on a new runtime (the server still running the sessions that are open) the
    /// next requests get clean connections from the same pool.
    fn a_handler_dropped_at_shutdown_or_outside_a_runtime_leaves_a_clean_pool() {
        let explored = explore_at_shutdown(
            || {
                let server = Server::new(Duration::ZERO);
                (server.pool(1), server)
            },
            |(pool, _): Shared| async move { redeem(&pool, "ann").await },
            |state: Shared, outcome| {
                let context = match outcome {
                    Outcome::Completed(_) => "`redeem` ran to the end",
                    Outcome::Cancelled { .. } => {
                        "ann's `redeem` was dropped there, holding its pooled connection, where no \
                         runtime runs any more (a task spawned now never runs, and outside a \
                         runtime `spawn` panics)"
                    }
                };
                let completed = outcome.completed();
                runtime::current_thread(SEEDS[0]).block_on(async {
                    state.1.restart();
                    after_the_handler(state, 1, completed, context).await
                })
            },
        );
        if let Err(failure) = explored {
            panic!("{failure}");
        }
    }

    /// A server much slower than the story's (2 s, 90 s or 2 h a statement: a lock wait, a
    /// database in trouble): a timeout drops `redeem` during its lookup, its `BEGIN`, each
    /// statement or its `COMMIT`, on a pool of one and of two (each case under one seed). A reply
    /// that is owed is owed however long it takes: the next requests must still read their own
    /// replies and run outside any transaction.
    async fn a_handler_timed_out_on_a_much_slower_server_leaves_a_clean_pool() {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let latencies = [Duration::from_secs(2), Duration::from_secs(90), Duration::from_secs(7200)];
        let cases = latencies
            .into_iter()
            .flat_map(|latency| (0..5).map(move |k| (latency, latency * k + latency / 4)))
            .flat_map(|(latency, cut)| [1, 2].map(|max_size| (latency, cut, max_size)));
        for (latency, cut_after, max_size) in share(cases, this_run(&RUNS)) {
            let server = Server::new(latency);
            let pool = server.pool(max_size);
            if let Err(seen) = ann_cut_after(&pool, &server, cut_after).await {
                panic!("{seen}");
            }
            let context = format!(
                "the server takes {latency:?} a statement; a {cut_after:?} timeout dropped ann's \
                 `redeem` while it waited for {}",
                waiting_for(cut_after, latency)
            );
            if let Err(seen) = after_the_handler((pool, server), max_size, None, &context).await {
                panic!("{seen}");
            }
        }
    }

    /// A timeout drops `redeem` at every 50 ms of its life on the slow server while bob holds the
    /// pool's other connection and gives it back last, on a pool of two and of three (each case
    /// under one seed). Then the next requests come one after the other, a plain request and a
    /// `redeem`, and both succeed on clean connections. Once they are done, no session on the
    /// server is left inside a transaction, whichever connection the pool lent them.
    async fn a_handler_cut_while_another_holds_a_connection_leaves_no_session_in_a_transaction() {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let cases = [2, 3].into_iter().flat_map(|max_size| {
            (50..1000).step_by(50).map(move |ms| (max_size, Duration::from_millis(ms)))
        });
        for (max_size, cut_after) in share(cases, this_run(&RUNS)) {
            let server = Server::new(SLOW);
            let pool = server.pool(max_size);
            let bob_leaves = Instant::now() + Duration::from_millis(1100);
            let bob = async {
                let mut conn = pool.get().await;
                let found = conn.execute("SELECT 'bob'").await;
                sleep_until(bob_leaves).await;
                found
            };
            let (ann, bob) = tokio::join!(ann_cut_after(&pool, &server, cut_after), bob);
            if let Err(seen) = ann {
                panic!("{seen}");
            }
            let context = format!(
                "a pool of {max_size}; a {cut_after:?} timeout dropped ann's `redeem` while it \
                 waited for {}, and bob, who had the other connection, gave it back {:?} later; \
                 then cat's request and dan's `redeem` came one after the other",
                waiting_for(cut_after, SLOW),
                Duration::from_millis(1100) - cut_after
            );
            assert_eq!(
                bob,
                Ok("bob".to_owned()),
                "{context}; bob's lookup on his own connection failed. {}",
                server.db().transcript()
            );
            let patience = server.patience();
            let cat = timeout(patience, plain_request(&pool, "cat", &Cell::new(false))).await;
            let dan = timeout(patience, redeem(&pool, "dan")).await;
            let context = format!("{context}; cat's returned {cat:?}, dan's {dan:?}");
            if !matches!((&cat, &dan), (Ok(Ok(())), Ok(Ok(())))) {
                panic!("{context}; both must succeed on clean connections. {}", {
                    server.db().transcript()
                });
            }
            if let Err(seen) = nothing_left_open(&server, max_size).await {
                panic!("{context}; {seen}");
            }
            let db = server.db();
            for check in [ran_on_its_own(&db, "cat"), handler_work_is_all_or_nothing(&db, None)] {
                check.unwrap_or_else(|seen| panic!("{context}; {seen}. {}", db.transcript()));
            }
        }
    }

    /// A deploy while the pool may still be busy with what a cut left behind: a timeout drops
    /// `redeem` during its lookup, its `BEGIN`, a statement or its `COMMIT` on the slow server,
    /// the runtime runs on for 0 to 300 ms (the pool may be cleaning up, or reading the replies
    /// owed) and then shuts down. On a new runtime (the server still running the sessions that are
    /// open), the next requests get clean connections from the same pool of one.
    fn a_runtime_shut_down_soon_after_a_cut_leaves_a_clean_pool() {
        let cuts = [50, 250, 450, 650, 850].map(Duration::from_millis);
        let run_on = [0, 1, 10, 100, 300].map(Duration::from_millis);
        let cases = cuts.into_iter().flat_map(|cut| run_on.map(|on| (cut, on)));
        for (i, (cut_after, ran_on)) in cases.enumerate() {
            let server = Server::new(SLOW);
            let pool = server.pool(1);
            let seed = SEEDS[i % SEEDS.len()];
            let first = runtime::current_thread(seed);
            let cut = first.block_on(async {
                let cut = ann_cut_after(&pool, &server, cut_after).await;
                sleep(ran_on).await;
                cut
            });
            drop(first);
            if let Err(seen) = cut {
                panic!("{seen}");
            }
            let shut_down = if ran_on.is_zero() {
                "right then the runtime shut down".to_owned()
            } else {
                format!("{ran_on:?} later the runtime shut down")
            };
            let context = format!(
                "a {cut_after:?} timeout dropped ann's `redeem` while it waited for {}; \
                 {shut_down}, and the pool went on serving on a new runtime",
                waiting_for(cut_after, SLOW)
            );
            let checked = runtime::current_thread(seed).block_on(async {
                server.restart();
                after_the_handler((pool, server), 1, None, &context).await
            });
            if let Err(seen) = checked {
                panic!("{seen}");
            }
        }
    }

    /// A property over whole afternoons of the service (32 generated cases): a pool of one to three
    /// connections, a server that takes 0 to 150 ms per statement, and up to four waves of one to
    /// three requests at once, each a plain request or a `redeem`, some dropped by a timeout of 0
    /// to 800 ms. Every request that is not dropped succeeds with its own replies, whatever was
    /// dropped before it; every request's statements ran as it asked (a `redeem`'s work all or
    /// nothing, in a transaction of its own); and the requests after the last wave get clean
    /// connections.
    fn every_request_that_is_not_dropped_gets_a_clean_connection() {
        let request = (
            prop_oneof![Just(Kind::Plain), Just(Kind::Redeem)],
            proptest::option::weighted(0.5, 0u64..800),
        );
        let wave = proptest::collection::vec(request, 1..4);
        let scenario = (1usize..4, 0u64..150, proptest::collection::vec(wave, 1..5));
        check_property(32, scenario, |(max_size, latency, waves)| async move {
            let server = Server::new(Duration::from_millis(latency));
            let pool = server.pool(max_size);
            let mut story: Vec<String> = Vec::new();
            let mut ran: Vec<Ran> = Vec::new();
            for (w, wave) in waves.into_iter().enumerate() {
                let requests = wave.into_iter().enumerate().map(|(i, (kind, cut_after))| {
                    run_request(&pool, format!("u{w}r{i}"), kind, cut_after)
                });
                for (who, kind, outcome) in futures::future::join_all(requests).await {
                    let told = match &outcome {
                        None => format!("{who} ({kind:?}) dropped by its timeout"),
                        Some(Ok(())) => format!("{who} ({kind:?}) succeeded"),
                        Some(Err(seen)) => {
                            return Err(format!(
                                "after {story:?}, a request that was not dropped failed: \
                                 {seen}. {}",
                                server.db().transcript()
                            ));
                        }
                    };
                    story.push(told);
                    ran.push((who, kind, outcome));
                }
            }
            let context = format!("after {story:?}");
            next_requests_get_clean_connections(&pool, &server, max_size)
                .await
                .map_err(|seen| format!("{context}; {seen}"))?;
            let db = server.db();
            no_begin_inside_a_transaction(&db)
                .map_err(|seen| format!("{context}; {seen}. {}", db.transcript()))?;
            for request in &ran {
                request_ran_as_asked(&db, request)
                    .map_err(|seen| format!("{context}; {seen}. {}", db.transcript()))?;
            }
            Ok(())
        });
    }
}
