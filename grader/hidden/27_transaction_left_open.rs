//! Hidden tests for kata 27: a request handler dropped at any point, while its `BEGIN` is in flight
//! included, must never leave the connection inside a transaction that the next user of the
//! connection then runs its statements in.
//!
//! The fake server behind the client is PostgreSQL in miniature: it runs the statements in the
//! order they were queued, a statement outside a transaction commits on its own, `BEGIN` inside a
//! transaction and `COMMIT`/`ROLLBACK` outside one are answered with a warning and change nothing,
//! and a session that ends (the client is dropped, as a pool drops a connection it discards) rolls
//! back its open transaction. It records every statement it ran and the transaction it ran in.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use kata_support::{
    Outcome, assert_cancel_safe, check_property, explore_at_shutdown, hidden_test, settle,
};
use proptest::prelude::*;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};
use transaction_left_open::{Client, DbError, Request};

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
    sql: String,
    /// The transaction it ran in (numbered from 1), or `None`: outside any, committed on its own.
    txn: Option<usize>,
    /// The warning the server answered with, as PostgreSQL does.
    warning: Option<&'static str>,
}

const ALREADY_IN_PROGRESS: &str = "there is already a transaction in progress";

/// The server side of one connection: one session.
#[derive(Debug, Default)]
struct Db {
    log: Vec<Executed>,
    /// The fate of transaction `n` is `txns[n - 1]`.
    txns: Vec<Fate>,
    /// The transaction the session is in.
    current: Option<usize>,
    /// The client side closed the connection, and the session ended.
    ended: bool,
}

impl Db {
    fn run(&mut self, sql: &str) -> Result<u64, DbError> {
        let (txn, warning, rows) = match sql {
            "BEGIN" => match self.current {
                Some(open) => (Some(open), Some(ALREADY_IN_PROGRESS), 0),
                None => {
                    self.txns.push(Fate::Open);
                    self.current = Some(self.txns.len());
                    (self.current, None, 0)
                }
            },
            "COMMIT" | "ROLLBACK" => match self.current.take() {
                Some(n) => {
                    let fate = if sql == "COMMIT" { Fate::Committed } else { Fate::RolledBack };
                    self.txns[n - 1] = fate;
                    (Some(n), None, 0)
                }
                None => (None, Some("there is no transaction in progress"), 0),
            },
            _ => (self.current, None, 1),
        };
        self.log.push(Executed { sql: sql.to_owned(), txn, warning });
        Ok(rows)
    }

    fn end_session(&mut self) {
        if let Some(n) = self.current.take() {
            self.txns[n - 1] = Fate::RolledBack;
        }
        self.ended = true;
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
                format!("`{}` ({place}{warning})", e.sql)
            })
            .collect();
        let fates: Vec<String> = (1..=self.txns.len())
            .map(|n| format!("transaction {n} {}", self.fate(n).shown()))
            .collect();
        format!("The server ran [{}]; {}.", lines.join(", "), fates.join(", "))
    }
}

/// The fake server and the connection's queue, shared with the test: what was queued when a
/// runtime shut down can still be read and run afterwards, as the connection would have.
#[derive(Debug, Clone)]
struct Server {
    db: Arc<Mutex<Db>>,
    queue: Arc<Mutex<mpsc::UnboundedReceiver<Request>>>,
}

impl Server {
    fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        self.db.lock().unwrap()
    }

    /// Runs, without a runtime, whatever is still queued on the connection.
    fn drain(&self) {
        loop {
            let next = self.queue.lock().unwrap().try_recv();
            let Ok(request) = next else { return };
            let answer = self.db().run(&request.sql);
            let _ = request.reply.send(answer);
        }
    }
}

/// Starts a server that answers each statement `latency` after it takes it off the queue, and
/// returns a client on its connection.
fn start(latency: Duration) -> (Client, Server) {
    let (requests, queue) = mpsc::unbounded_channel();
    let server = Server { db: Arc::default(), queue: Arc::new(Mutex::new(queue)) };
    let (db, queue) = (server.db.clone(), server.queue.clone());
    tokio::spawn(async move {
        loop {
            let next = poll_fn(|cx| queue.lock().unwrap().poll_recv(cx)).await;
            let Some(request) = next else {
                db.lock().unwrap().end_session();
                return;
            };
            sleep(latency).await;
            let answer = db.lock().unwrap().run(&request.sql);
            let _ = request.reply.send(answer);
        }
    });
    (Client::new(requests), server)
}

/// How long the server takes per statement in the story: the database has a slow minute.
const SLOW: Duration = Duration::from_millis(200);
/// The request handler's timeout in the story.
const HANDLER_TIMEOUT: Duration = Duration::from_millis(50);
/// How long the server takes per statement where the explorer cuts.
const LATENCY: Duration = Duration::from_millis(20);
/// How long (virtual time) a statement after a cut may take; the server answers in 200 ms.
const PATIENCE: Duration = Duration::from_secs(30);

/// The story's request handler: hold a seat for a user, in one transaction.
async fn hold_seat(client: &mut Client, seat: &str, user: &str) -> Result<(), DbError> {
    let tx = client.transaction().await?;
    tx.execute(&format!("UPDATE seats SET held_by = '{user}' WHERE seat = '{seat}'")).await?;
    tx.execute(&format!("INSERT INTO holds (seat, held_by) VALUES ('{seat}', '{user}')")).await?;
    tx.commit().await
}

/// A statement a request runs on its own, outside any transaction.
fn on_its_own(who: &str) -> String {
    format!("UPDATE accounts SET last_seen = now() WHERE name = '{who}'")
}

/// Every statement the server ran for `who`, a request that runs its statements on its own, ran
/// outside any transaction.
fn ran_on_its_own(db: &Db, who: &str, context: &str) -> Result<(), String> {
    let Some(e) = db.of(who).find(|e| e.txn.is_some()) else { return Ok(()) };
    let n = e.txn.unwrap_or_default();
    let consequence = match db.fate(n) {
        Fate::Open => {
            "it is not saved, and the rows it touched stay locked for as long as the connection \
             sits in the pool"
        }
        Fate::RolledBack => {
            "a ROLLBACK queued after it threw it away, although the request was told it had \
             succeeded"
        }
        Fate::Committed => "it was saved only when another handler's COMMIT came",
    };
    Err(format!(
        "{context}; then a request ran `{}` on its own, outside any transaction, but the server \
         ran it inside transaction {n}, which an earlier `BEGIN` had opened and nothing had ended \
         by then: {consequence}. However the owner of a transaction goes away (its \
         `transaction()` future dropped while `BEGIN` is in flight, or before its first poll, a \
         `Transaction` dropped without `commit`, a handler that panicked), something must queue \
         the `ROLLBACK` (or retire the connection) before anybody else uses the connection. {}",
        e.sql,
        db.transcript()
    ))
}

/// The statements the server ran for `who`, a handler that works in one transaction, all ran in
/// one transaction that holds nothing else; returns its fate (`None`: none ran).
fn ran_in_its_own_transaction(db: &Db, who: &str, context: &str) -> Result<Option<Fate>, String> {
    let mut txn = None;
    for e in db.of(who) {
        let Some(n) = e.txn else {
            return Err(format!(
                "{context}; the handler's `{}` ran outside any transaction: its transaction had \
                 already been rolled back (or never begun), so its statements each committed on \
                 their own and can no longer be undone together. {}",
                e.sql,
                db.transcript()
            ));
        };
        if txn.is_some_and(|t| t != n) {
            return Err(format!(
                "{context}; the handler's statements ran in two transactions ({} and {n}): its \
                 work is no longer all or nothing. {}",
                txn.unwrap_or_default(),
                db.transcript()
            ));
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
            "{context}; transaction {n} held the handler's statements and also `{}`, which is \
             not the handler's. {}",
            e.sql,
            db.transcript()
        ));
    }
    Ok(Some(db.fate(n)))
}

/// No `BEGIN` ran inside a transaction that was already open.
fn no_begin_inside_a_transaction(db: &Db, context: &str) -> Result<(), String> {
    match db.log.iter().find(|e| e.sql == "BEGIN" && e.warning == Some(ALREADY_IN_PROGRESS)) {
        None => Ok(()),
        Some(e) => Err(format!(
            "{context}; a later `transaction()` sent its `BEGIN`, and the server answered \
             \"WARNING: {ALREADY_IN_PROGRESS}\": it was still in transaction {}, which a \
             dropped handler had opened. The new transaction is not a transaction of its own: \
             its work joins the stale one. {}",
            e.txn.unwrap_or_default(),
            db.transcript()
        )),
    }
}

/// The pool's last word on a connection: if the client refused a request, the pool discards it
/// (drops it, which ends the session); either way, no transaction may be left open.
async fn pool_takes_it_back(
    slot: &mut Option<Client>,
    server: &Server,
    refused: bool,
    context: &str,
) -> Result<(), String> {
    if refused {
        drop(slot.take());
        // The server runs what is still queued, then sees the connection closed.
        settle().await;
        sleep(PATIENCE).await;
    }
    let db = server.db();
    if let Some(n) = db.current {
        return Err(format!(
            "{context}; the connection sits in the pool inside transaction {n} (\"idle in \
             transaction\"): nobody will end it, and whatever it touched stays locked. {}",
            db.transcript()
        ));
    }
    if refused && !db.ended {
        return Err(format!(
            "{context}; the client refused a request and the pool dropped it, but the connection \
             stayed open: something the client left behind (a spawned task?) still holds it. {}",
            db.transcript()
        ));
    }
    Ok(())
}

/// After the handler ran (to the end or cut), two requests come at once (both are queued before
/// either is answered) and each run a statement on its own; then the pool takes the connection
/// back.
async fn next_requests_run_on_their_own(
    slot: &mut Option<Client>,
    server: &Server,
    context: &str,
) -> Result<(), String> {
    let Some(client) = slot.as_ref() else {
        return pool_takes_it_back(slot, server, true, context).await;
    };
    let (bob, cat) = (on_its_own("bob"), on_its_own("cat"));
    let answers =
        timeout(PATIENCE, async { tokio::join!(client.execute(&bob), client.execute(&cat)) }).await;
    let refused = match answers {
        Ok((bob, cat)) => bob.is_err() || cat.is_err(),
        Err(_) => {
            return Err(format!(
                "{context}; the next two requests, `{bob}` and `{cat}`, which came at once, were \
                 still waiting for their answers after {PATIENCE:?} (the server answers in \
                 {SLOW:?} at most). {}",
                server.db().transcript()
            ));
        }
    };
    let context = format!("{context}, and the next two requests came at once");
    for who in ["bob", "cat"] {
        ran_on_its_own(&server.db(), who, &context)?;
    }
    pool_takes_it_back(slot, server, refused, &context).await
}

/// The handler `ann`'s work after it ran to the end (`completed`) or was cut: all or nothing, in
/// a transaction of its own, committed if it returned `Ok`, and never left open.
fn handler_work_is_all_or_nothing(
    db: &Db,
    completed: Option<&Result<(), DbError>>,
    context: &str,
) -> Result<(), String> {
    let fate = ran_in_its_own_transaction(db, "ann", context)?;
    match (completed, fate) {
        (Some(Ok(())), Some(Fate::Committed)) | (None, None | Some(Fate::RolledBack)) => Ok(()),
        (None, Some(Fate::Committed)) => Ok(()),
        (Some(Ok(())), _) => Err(format!(
            "{context}; `hold_seat` returned Ok, but its work is {}. {}",
            fate.map_or("not there", Fate::shown),
            db.transcript()
        )),
        (Some(Err(e)), _) => Err(format!(
            "nothing was cancelled, yet `hold_seat` returned Err({e:?}). {}",
            db.transcript()
        )),
        (None, Some(Fate::Open)) => Err(format!(
            "{context}; the handler's work is in a transaction that is still open. {}",
            db.transcript()
        )),
    }
}

type Shared = (Arc<tokio::sync::Mutex<Option<Client>>>, Server);

fn fresh() -> Shared {
    let (client, server) = start(LATENCY);
    (Arc::new(tokio::sync::Mutex::new(Some(client))), server)
}

async fn hold_ann_seat((client, _): Shared) -> Result<(), DbError> {
    let mut slot = client.lock().await;
    let client = slot.as_mut().expect("the client is in its slot");
    hold_seat(client, "12A", "ann").await
}

fn context_of(outcome: &Outcome<Result<(), DbError>>) -> &'static str {
    match outcome {
        Outcome::Completed(_) => "`hold_seat` ran to the end",
        Outcome::Cancelled { .. } => "the handler `hold_seat` was dropped there",
    }
}

/// Polls `fut` once, with no runtime and a waker that does nothing.
fn poll_once<F: Future>(fut: F) -> Poll<F::Output> {
    pin!(fut).poll(&mut Context::from_waker(Waker::noop()))
}

/// Fails the test with what it saw.
fn fail<T>(seen: String) -> T {
    panic!("{seen}")
}

/// What one request of the property does.
#[derive(Debug, Clone, Copy)]
enum Work {
    /// One statement on its own.
    OnItsOwn,
    /// A transaction with this many statements, ended this way.
    InTransaction { statements: usize, ending: Ending },
}

/// How a transaction of the property ends.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Commit,
    Rollback,
    /// The `Transaction` is dropped (the handler returned early).
    Drop,
}

/// One request of the property, as a handler would write it; its statements name `'who'`.
async fn run_work(client: &mut Client, work: Work, who: &str) -> Result<(), DbError> {
    match work {
        Work::OnItsOwn => client.execute(&on_its_own(who)).await.map(drop),
        Work::InTransaction { statements, ending } => {
            let tx = client.transaction().await?;
            for seat in 0..statements {
                tx.execute(&format!("UPDATE seats SET held_by = '{who}' WHERE seat = '{seat}'"))
                    .await?;
            }
            match ending {
                Ending::Commit => tx.commit().await,
                Ending::Rollback => tx.rollback().await,
                Ending::Drop => {
                    drop(tx);
                    Ok(())
                }
            }
        }
    }
}

/// What the handler of the panic test panics with; the hook does not print it.
const PLANNED_PANIC: &str = "the handler panicked on purpose, inside its transaction";

/// The story's handler, up to its `UPDATE`, then a bug: it panics with its transaction open.
async fn panics_inside_its_transaction(client: &mut Client) -> Result<(), DbError> {
    let tx = client.transaction().await?;
    tx.execute("UPDATE seats SET held_by = 'ann' WHERE seat = '12A'").await?;
    std::panic::panic_any(PLANNED_PANIC)
}

/// Keeps the panic hook from printing the planned panic (any other panic is printed as before).
fn quiet_planned_panics() {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&PLANNED_PANIC) {
                hook(info);
            }
        }));
    });
}

hidden_test! {
    /// Nothing dropped: a statement on its own commits on its own; a transaction's statements run
    /// in it and are committed by `commit`, thrown away by `rollback` and by dropping the
    /// `Transaction`; the client stays usable after each; nothing is left open.
    async fn transactions_nobody_cancels_commit_or_roll_back_their_work() {
        for latency in [Duration::ZERO, SLOW] {
            let (mut client, server) = start(latency);
            let context = "nothing was cancelled";
            let bob = client.execute(&on_its_own("bob")).await;
            assert_eq!(
                bob,
                Ok(1),
                "nothing was cancelled, yet `{}` returned {bob:?}",
                on_its_own("bob")
            );
            ran_on_its_own(&server.db(), "bob", context).unwrap_or_else(fail);

            let ann = hold_seat(&mut client, "12A", "ann").await;
            handler_work_is_all_or_nothing(&server.db(), Some(&ann), context).unwrap_or_else(fail);

            let tx = client.transaction().await.expect("nothing was cancelled: BEGIN must succeed");
            tx.execute("UPDATE seats SET held_by = 'eve' WHERE seat = '14C'")
                .await
                .expect("a statement in a transaction");
            tx.rollback().await.expect("nothing was cancelled: ROLLBACK must succeed");
            {
                let tx =
                    client.transaction().await.expect("nothing was cancelled: BEGIN must succeed");
                tx.execute("UPDATE seats SET held_by = 'fay' WHERE seat = '14D'")
                    .await
                    .expect("a statement in a transaction");
                // The handler returns early: the `Transaction` is dropped.
            }
            let gus = client.execute(&on_its_own("gus")).await;
            assert_eq!(
                gus,
                Ok(1),
                "nothing was cancelled, yet `{}` returned {gus:?}",
                on_its_own("gus")
            );

            let db = server.db();
            for (who, how) in [("eve", "`rollback()`"), ("fay", "dropping the `Transaction`")] {
                match ran_in_its_own_transaction(&db, who, context).unwrap_or_else(fail) {
                    Some(Fate::RolledBack) => {}
                    fate => panic!(
                        "nothing was cancelled: a transaction ended by {how} must be rolled back, \
                         but its work is {}. {}",
                        fate.map_or("not there", Fate::shown),
                        db.transcript()
                    ),
                }
            }
            ran_on_its_own(&db, "gus", context).unwrap_or_else(fail);
            no_begin_inside_a_transaction(&db, context).unwrap_or_else(fail);
            assert!(
                db.current.is_none(),
                "nothing was cancelled, yet the connection is left inside transaction {:?}. {}",
                db.current,
                db.transcript()
            );
        }
    }

    /// The web framework runs each request handler in a task of its own (`tokio::spawn`) on its
    /// multi-thread runtime, so every future of the client's API must stay `Send`, as the
    /// original's are: a handler awaits each of them.
    async fn every_future_of_the_client_can_run_in_a_spawned_handler() {
        let (mut client, _server) = start(Duration::ZERO);
        let mut not_send = Vec::new();
        let ann = on_its_own("ann");
        let alone = client.execute(&ann);
        if !kata_support::is_send!(alone) {
            not_send.push("`Client::execute`");
        }
        alone.await.expect("nothing was cancelled: a statement on its own must succeed");
        for ending in ["commit", "rollback"] {
            let begin = client.transaction();
            if !kata_support::is_send!(begin) && !not_send.contains(&"`Client::transaction`") {
                not_send.push("`Client::transaction`");
            }
            let tx = begin.await.expect("nothing was cancelled: BEGIN must succeed");
            let inside = tx.execute("UPDATE seats SET held_by = 'bob' WHERE seat = '12B'");
            if !kata_support::is_send!(inside) && !not_send.contains(&"`Transaction::execute`") {
                not_send.push("`Transaction::execute`");
            }
            inside.await.expect("nothing was cancelled: a statement in a transaction");
            if ending == "commit" {
                let end = tx.commit();
                if !kata_support::is_send!(end) {
                    not_send.push("`Transaction::commit`");
                }
                end.await.expect("nothing was cancelled: COMMIT must succeed");
            } else {
                let end = tx.rollback();
                if !kata_support::is_send!(end) {
                    not_send.push("`Transaction::rollback`");
                }
                end.await.expect("nothing was cancelled: ROLLBACK must succeed");
            }
        }
        assert!(
            not_send.is_empty(),
            "the future returned by {} is not `Send`, so the web framework can no longer run a \
             handler that awaits it in a spawned task: it holds something that is not `Send` \
             across an `.await` (an `Rc`, a `Cell` or `RefCell` shared by reference, a drop guard \
             holding a `Box<dyn FnOnce()>` without `+ Send`, a `std` lock guard)",
            not_send.join(", ")
        );
    }

    /// The kata's story: the handler's 50 ms timeout drops `hold_seat` while its `BEGIN` is in
    /// flight (the database takes 200 ms per statement). The next two requests on the same
    /// connection come at once, and each runs a statement on its own.
    async fn a_handler_timed_out_during_begin_leaves_no_transaction_for_the_next_request() {
        let (client, server) = start(SLOW);
        let mut slot = Some(client);
        let held = timeout(HANDLER_TIMEOUT, async {
            hold_seat(slot.as_mut().expect("client"), "12A", "ann").await
        })
        .await;
        assert!(
            held.is_err(),
            "the database takes 200 ms per statement, so a 50 ms timeout must drop `hold_seat`; it \
             returned {held:?}"
        );
        let context = "the handler's 50 ms timeout dropped `hold_seat` while its `BEGIN` was in \
                       flight (the server answers in 200 ms)";
        if let Err(seen) = next_requests_run_on_their_own(&mut slot, &server, context).await {
            panic!("{seen}");
        }
        if let Err(seen) = handler_work_is_all_or_nothing(&server.db(), None, context) {
            panic!("{seen}");
        }
    }

    /// Drop `hold_seat` after every possible poll, at both moments: before `BEGIN` went out, while
    /// it is in flight, once it was answered, during each statement and during `COMMIT`. Then two
    /// requests run a statement each on their own: they must run outside any transaction (or be
    /// refused, and the pool discards the connection), and the handler's work must be all or
    /// nothing, never left open.
    async fn after_a_cut_anywhere_the_next_requests_run_outside_any_transaction() {
        assert_cancel_safe(fresh, hold_ann_seat, |(client, server): Shared, outcome| async move {
            let context = context_of(&outcome);
            let completed = match &outcome {
                Outcome::Completed(result) => Some(result.clone()),
                Outcome::Cancelled { .. } => None,
            };
            let mut slot = client.lock().await;
            next_requests_run_on_their_own(&mut slot, &server, context).await?;
            let db = server.db();
            handler_work_is_all_or_nothing(&db, completed.as_ref(), context)
        })
        .await;
    }

    /// A second transaction on the same connection after a cut: another customer's `hold_seat`
    /// takes the connection. Its work must run in a transaction of its own (opened by its own
    /// `BEGIN`, not the stale one) and be committed, or be refused.
    async fn after_a_cut_anywhere_the_next_transaction_is_its_own() {
        assert_cancel_safe(fresh, hold_ann_seat, |(client, server): Shared, outcome| async move {
            let context = context_of(&outcome);
            let mut slot = client.lock().await;
            let Some(next) = slot.as_mut() else { return Err("the client is gone".to_owned()) };
            let dan = match timeout(PATIENCE, hold_seat(next, "12B", "dan")).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(format!(
                        "{context}; the next handler's `hold_seat` was still waiting after \
                         {PATIENCE:?}. {}",
                        server.db().transcript()
                    ));
                }
            };
            {
                let db = server.db();
                let context =
                    format!("{context}, and the next `hold_seat` (dan's) returned {dan:?}");
                no_begin_inside_a_transaction(&db, &context)?;
                let fate = ran_in_its_own_transaction(&db, "dan", &context)?;
                if dan.is_ok() && fate != Some(Fate::Committed) {
                    return Err(format!(
                        "{context}, but dan's work is {}. {}",
                        fate.map_or("not there", Fate::shown),
                        db.transcript()
                    ));
                }
            }
            pool_takes_it_back(&mut slot, &server, dan.is_err(), context).await?;
            handler_work_is_all_or_nothing(&server.db(), None, context)
        })
        .await;
    }

    /// The story's cut, and then the next request is cut too: a timeout of 0 to 400 ms (every
    /// 25 ms) drops its `execute` while the stale `BEGIN` may still be in flight. The two requests
    /// after it, which come at once, must still run their statements outside any transaction (or
    /// be refused, and the pool discards the connection).
    async fn a_next_request_cut_too_leaves_no_transaction_for_the_ones_after_it() {
        for cut_after in (0..=400).step_by(25) {
            let (client, server) = start(SLOW);
            let mut slot = Some(client);
            let held = timeout(HANDLER_TIMEOUT, async {
                hold_seat(slot.as_mut().expect("client"), "12A", "ann").await
            })
            .await;
            assert!(held.is_err(), "a 50 ms timeout must drop `hold_seat`; it returned {held:?}");
            let eve = on_its_own("eve");
            let next = timeout(
                Duration::from_millis(cut_after),
                slot.as_ref().expect("client").execute(&eve),
            )
            .await;
            let context = format!(
                "the handler's 50 ms timeout dropped `hold_seat` while its `BEGIN` was in flight \
                 (the server answers in 200 ms), and a {cut_after} ms timeout then {} the next \
                 request, `{eve}`",
                if next.is_err() { "dropped" } else { "let through" }
            );
            let result = match next {
                Ok(Err(_)) => pool_takes_it_back(&mut slot, &server, true, &context).await,
                Ok(Ok(_)) | Err(_) => {
                    next_requests_run_on_their_own(&mut slot, &server, &context).await
                }
            };
            let result = result
                .and_then(|()| ran_on_its_own(&server.db(), "eve", &context))
                .and_then(|()| handler_work_is_all_or_nothing(&server.db(), None, &context));
            if let Err(seen) = result {
                panic!("{seen}");
            }
        }
    }

    /// A `transaction()` future dropped before its first poll: built and dropped unawaited, or
    /// built by a `select!` whose other branch was ready first. Nothing may be left open: the two
    /// requests after it, which come at once, run their statements outside any transaction (or
    /// are refused, and the pool discards the connection).
    async fn a_transaction_future_dropped_before_its_first_poll_leaves_nothing_open() {
        for latency in [Duration::ZERO, SLOW] {
            for how in [
                "built and dropped unawaited",
                "built by a `select!` whose other branch was ready, and dropped",
            ] {
                let (mut client, server) = start(latency);
                if how.starts_with("built and") {
                    drop(client.transaction());
                } else {
                    tokio::select! {
                        biased;
                        () = std::future::ready(()) => {}
                        tx = client.transaction() => drop(tx),
                    }
                }
                // The connection task gets its turn before the next request comes.
                settle().await;
                let context = format!(
                    "a `transaction()` future was {how} before its first poll (the server \
                     answers in {latency:?})"
                );
                let mut slot = Some(client);
                if let Err(seen) = next_requests_run_on_their_own(&mut slot, &server, &context).await
                {
                    panic!("{seen}");
                }
            }
        }
    }

    /// A handler that panics inside its transaction, after its `UPDATE`, in a task of its own: the
    /// panic is caught per task (as a web server catches it per request) and the client goes back
    /// to the pool. The `Transaction` is dropped while the panic unwinds; the two requests after
    /// it, which come at once, must run their statements outside any transaction (or be refused),
    /// and the panicked handler's work must be rolled back.
    async fn a_handler_that_panics_inside_its_transaction_leaves_nothing_open() {
        quiet_planned_panics();
        for latency in [Duration::ZERO, SLOW] {
            let (client, server) = start(latency);
            let shared = Arc::new(tokio::sync::Mutex::new(Some(client)));
            let handler = tokio::spawn({
                let shared = shared.clone();
                async move {
                    let mut slot = shared.lock().await;
                    panics_inside_its_transaction(slot.as_mut().expect("client")).await
                }
            });
            let joined = handler.await;
            let context = format!(
                "a handler panicked inside its transaction, after its `UPDATE` (the server answers \
                 in {latency:?}), and its task caught the panic"
            );
            match joined {
                Err(e) if e.is_panic() => {}
                other => panic!(
                    "the handler should have panicked inside its transaction, but its task \
                     returned {other:?}. {}",
                    server.db().transcript()
                ),
            }
            let mut slot = shared.lock().await;
            let result = next_requests_run_on_their_own(&mut slot, &server, &context)
                .await
                .and_then(|()| handler_work_is_all_or_nothing(&server.db(), None, &context));
            if let Err(seen) = result {
                panic!("{seen}");
            }
        }
    }

    /// A deploy: the runtime shuts down with `hold_seat` parked in a task, or the handler is
    /// dropped after the runtime is gone, after every possible poll. Its destructors must not
    /// panic there, and what they leave on the connection must end its transaction (or the client
    /// must refuse the next request): the connection's queue is run afterwards, as the connection
    /// would have, and a request on its own follows.
    fn a_handler_dropped_at_shutdown_or_outside_a_runtime_leaves_no_transaction_open() {
        let explored =
            explore_at_shutdown(fresh, hold_ann_seat, |(client, server): Shared, outcome| {
                let context = match outcome {
                    Outcome::Completed(_) => "`hold_seat` ran to the end",
                    Outcome::Cancelled { .. } => {
                        "the handler `hold_seat` was dropped there, where no runtime runs any \
                         more (a task spawned now never runs, and outside a runtime `spawn` \
                         panics: only what the destructors queue themselves reaches the \
                         connection)"
                    }
                };
                server.drain();
                let mut slot =
                    client.try_lock().map_err(|_| "the client is still locked".to_owned())?;
                let refused = match slot.as_ref() {
                    None => true,
                    Some(client) => {
                        let sql = on_its_own("bob");
                        let mut answer = Box::pin(client.execute(&sql));
                        match poll_once(answer.as_mut()) {
                            Poll::Ready(result) => result.is_err(),
                            Poll::Pending => {
                                server.drain();
                                matches!(poll_once(answer.as_mut()), Poll::Ready(Err(_)))
                            }
                        }
                    }
                };
                ran_on_its_own(&server.db(), "bob", context)?;
                if refused {
                    drop(slot.take());
                    server.db().end_session();
                }
                let db = server.db();
                if let Some(n) = db.current {
                    return Err(format!(
                        "{context}; the connection is left inside transaction {n}, which \
                         nothing will end. {}",
                        db.transcript()
                    ));
                }
                ran_in_its_own_transaction(&db, "ann", context).map(drop)
            });
        if let Err(failure) = explored {
            panic!("{failure}");
        }
    }

    /// A property over whole conversations on one connection (64 generated cases): up to seven
    /// requests, each a statement on its own or a transaction of up to two statements ended by
    /// `commit`, `rollback` or a drop, some cut by a timeout of 0 to 400 ms, on a server that
    /// takes 0 to 150 ms per statement. Statements on their own always run outside any
    /// transaction; a transaction's work is all or nothing, in a transaction of its own, committed
    /// exactly when it returned Ok from `commit`; no `BEGIN` runs inside an open transaction;
    /// nothing is left open; until the first cut, every request succeeds.
    fn every_request_gets_a_transaction_of_its_own_or_none() {
        let ending = prop_oneof![Just(Ending::Commit), Just(Ending::Rollback), Just(Ending::Drop)];
        let work = prop_oneof![
            1 => Just(Work::OnItsOwn),
            3 => (0usize..3, ending)
                .prop_map(|(statements, ending)| Work::InTransaction { statements, ending }),
        ];
        let request = (work, proptest::option::weighted(0.4, 0u64..400));
        let scenario = (proptest::collection::vec(request, 1..8), 0u64..150);
        check_property(64, scenario, |(requests, latency)| async move {
            let (client, server) = start(Duration::from_millis(latency));
            let mut slot = Some(client);
            let mut story: Vec<String> = Vec::new();
            let mut cut = false;
            let mut ended: Vec<(String, Work, Option<Result<(), DbError>>)> = Vec::new();
            for (i, (work, deadline)) in requests.into_iter().enumerate() {
                let who = format!("u{i}");
                let client = slot.as_mut().expect("client");
                let limit = deadline.map_or(PATIENCE, Duration::from_millis);
                let result = match timeout(limit, run_work(client, work, &who)).await {
                    Ok(result) => Some(result),
                    Err(_) if deadline.is_some() => None,
                    Err(_) => {
                        return Err(format!(
                            "after {story:?}, request {who} ({work:?}) was still waiting after \
                             {PATIENCE:?}. {}",
                            server.db().transcript()
                        ));
                    }
                };
                match &result {
                    None => {
                        story.push(format!(
                            "{who} ({work:?}) dropped by a {}ms timeout",
                            deadline.unwrap_or_default()
                        ));
                        cut = true;
                    }
                    Some(r) => {
                        if !cut && r.is_err() {
                            return Err(format!(
                                "no request had been dropped ({story:?}), yet {who} ({work:?}) \
                                 returned {r:?}. {}",
                                server.db().transcript()
                            ));
                        }
                        story.push(format!("{who} ({work:?}) returned {r:?}"));
                    }
                }
                ended.push((who, work, result));
            }
            let context = format!("after {story:?}");
            let last = match timeout(
                PATIENCE,
                slot.as_ref().expect("client").execute(&on_its_own("last")),
            )
            .await
            {
                Ok(result) => result,
                Err(_) => {
                    return Err(format!(
                        "{context}, a statement on its own was still waiting after \
                         {PATIENCE:?}. {}",
                        server.db().transcript()
                    ));
                }
            };
            ran_on_its_own(&server.db(), "last", &context)?;
            pool_takes_it_back(&mut slot, &server, last.is_err(), &context).await?;
            let db = server.db();
            no_begin_inside_a_transaction(&db, &context)?;
            for (who, work, result) in ended {
                let context = format!("{context}: request {who} ({work:?})");
                match work {
                    Work::OnItsOwn => ran_on_its_own(&db, &who, &context)?,
                    Work::InTransaction { ending, .. } => {
                        let fate = ran_in_its_own_transaction(&db, &who, &context)?;
                        let committed = fate == Some(Fate::Committed);
                        let must_commit =
                            matches!((ending, &result), (Ending::Commit, Some(Ok(()))));
                        let may_commit =
                            must_commit || (matches!(ending, Ending::Commit) && result.is_none());
                        let wrong = fate == Some(Fate::Open)
                            || (must_commit && fate.is_some() && !committed)
                            || (committed && !may_commit);
                        if wrong {
                            return Err(format!(
                                "{context}: its work is {}. {}",
                                fate.map_or("not there", Fate::shown),
                                db.transcript()
                            ));
                        }
                    }
                }
            }
            Ok(())
        });
    }
}
