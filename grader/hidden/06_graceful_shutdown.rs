//! Hidden tests for kata 06: a protocol error tears down one connection and nothing else;
//! shutdown reaches every connection, lets the request in flight finish, and still does when the
//! `shutdown` future itself is dropped part way.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use graceful_shutdown::{App, ClientMessage, Connection, Request, Server, ServerMessage};
use kata_support::{Outcome, assert_cancel_safe, hidden_test};
use tokio::sync::mpsc::{self, WeakUnboundedSender};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};
use tokio_test::task;

const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long the application takes to answer a request.
const WORK: Duration = Duration::from_millis(500);
/// How long the application keeps a `/held` request unfinished before the test lets it finish: a
/// thousand years, longer than any grace period or time limit a server could have (free on a
/// paused clock).
const AGES: Duration = Duration::from_secs(1000 * 365 * 24 * 3600);
/// A heartbeat period for tests that let ages pass: a beat a year keeps the run short.
const YEARLY: Duration = Duration::from_secs(365 * 24 * 3600);

/// An application that takes `WORK` to answer, or, for a `/held` path, finishes only when the
/// test adds a permit to `held` (however much time passes before that), or tells `panicking` and
/// panics (a bug in one endpoint): for a `/panic-on-call` path when `handle` is called, before it
/// returns its future; for a `/panic-later` path `WORK` into that future; for any other `/panic`
/// path on the future's first poll.
#[derive(Debug)]
struct SlowApp {
    held: Arc<Semaphore>,
    /// Set when the work on a `/held` request was dropped before it finished.
    held_dropped: Arc<AtomicBool>,
    /// Notified just before the application panics, as a client would learn of the failure.
    panicking: Arc<Notify>,
}

impl SlowApp {
    fn new() -> SlowApp {
        SlowApp {
            held: Arc::new(Semaphore::new(0)),
            held_dropped: Arc::new(AtomicBool::new(false)),
            panicking: Arc::new(Notify::new()),
        }
    }
}

/// Sets its flag if dropped while armed: the work it sits in was dropped half way.
struct Unfinished(Arc<AtomicBool>, bool);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if self.1 {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

impl App for SlowApp {
    fn handle(&self, request: Request) -> impl Future<Output = String> + Send {
        if request.path.starts_with("/panic-on-call") {
            self.panicking.notify_one();
            panic!(
                "(the test's application panics on purpose when called for {}, before it returns \
                 its future: a bug in one endpoint)",
                request.path
            );
        }
        let held = self.held.clone();
        let dropped = self.held_dropped.clone();
        let panicking = self.panicking.clone();
        async move {
            if request.path.starts_with("/panic-later") {
                sleep(WORK).await;
            }
            if request.path.starts_with("/panic") {
                panicking.notify_one();
                panic!(
                    "(the test's application panics on purpose while answering {}: a bug in one \
                     endpoint)",
                    request.path
                );
            }
            if request.path.starts_with("/held") {
                let mut unfinished = Unfinished(dropped, true);
                let _permit = held.acquire().await.expect("the test never closes the gate");
                unfinished.1 = false;
            } else {
                sleep(WORK).await;
            }
            format!("contents of {}", request.path)
        }
    }
}

/// Every way `App::handle` panics in the tests: the path of the request, and when it panics.
const PANICS: [(&str, &str); 3] = [
    ("/panic-on-call/report.pdf", "when it was called, before it returned its future"),
    ("/panic/report.pdf", "on the first poll of the future it returned"),
    ("/panic-later/report.pdf", "half a second into the future it returned"),
];

/// Tasks alive on the test's runtime (the test body itself is not one of them).
fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

/// The client's end of one connection: it sends messages and records what the server sent
/// until the server closed the connection.
struct Client {
    requests: mpsc::Sender<ClientMessage>,
    received: Arc<Mutex<Vec<ServerMessage>>>,
    reader: JoinHandle<()>,
    /// Counts the server's senders of this connection without keeping it open.
    outgoing: WeakUnboundedSender<ServerMessage>,
}

impl Client {
    fn connect(server: &Server<SlowApp>) -> Client {
        Client::connect_with_queued(server, Vec::new())
    }

    /// Connects with `queued` already waiting in the connection's request channel when it is
    /// handed to `serve`. A server may refuse the connection outright (drop it in `serve`).
    fn connect_with_queued(server: &Server<SlowApp>, queued: Vec<ClientMessage>) -> Client {
        let (requests, incoming) = mpsc::channel(8);
        for message in queued {
            requests.try_send(message).expect("a new connection has room for a request");
        }
        let (outgoing, mut from_server) = mpsc::unbounded_channel();
        let weak = outgoing.downgrade();
        server.serve(Connection { incoming, outgoing });
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        // Ends when every task of the connection has dropped its sender: the connection closed.
        let reader = tokio::spawn(async move {
            while let Some(message) = from_server.recv().await {
                log.lock().expect("log lock").push(message);
            }
        });
        Client { requests, received, reader, outgoing: weak }
    }

    async fn send(&self, message: ClientMessage) {
        self.requests.send(message).await.expect("the connection's request channel has room");
    }

    async fn request(&self, id: u64, path: &str) {
        let path = path.to_owned();
        self.send(ClientMessage::Request(Request { id, path })).await;
    }

    fn is_closed(&self) -> bool {
        self.reader.is_finished()
    }

    /// How many of the server's handles on this connection are still alive: each task of the
    /// connection holds one until it is done. Read at once, with no task run in between.
    fn server_handles(&self) -> usize {
        self.outgoing.strong_count()
    }

    fn response(&self, id: u64) -> Option<String> {
        let received = self.received.lock().expect("log lock");
        received.iter().find_map(|m| match m {
            ServerMessage::Response { id: got, body } if *got == id => Some(body.clone()),
            _ => None,
        })
    }

    fn count(&self, wanted: fn(&ServerMessage) -> bool) -> usize {
        let received = self.received.lock().expect("log lock");
        received.iter().filter(|m| wanted(m)).count()
    }

    fn heartbeats(&self) -> usize {
        self.count(|m| matches!(m, ServerMessage::Heartbeat))
    }
}

/// Shuts the server down under a generous paused-clock deadline.
async fn shut_down(server: &Server<SlowApp>, what: &str) {
    shut_down_within(server, what, Duration::from_secs(60)).await;
}

/// Shuts the server down under the paused-clock deadline `deadline`.
async fn shut_down_within(server: &Server<SlowApp>, what: &str, deadline: Duration) {
    if timeout(deadline, server.shutdown()).await.is_err() {
        panic!(
            "shutdown never finished ({what}): {deadline:?} after it began, some connection task was \
             still running: a connection task that never heard of the shutdown, or heard of it \
             only between requests while it was waiting for the next one (an idle connection \
             waits in its receive, so the shutdown must reach it there)"
        );
    }
}

/// A server with one connection whose request is being answered, and one idle connection.
#[derive(Clone)]
struct Rig {
    server: Arc<Server<SlowApp>>,
    busy: Arc<Client>,
    idle: Arc<Client>,
}

impl Rig {
    fn new() -> Rig {
        let server = Server::new(SlowApp::new(), HEARTBEAT);
        let busy = Client::connect(&server);
        let idle = Client::connect(&server);
        busy.requests
            .try_send(ClientMessage::Request(Request { id: 7, path: "/report.pdf".into() }))
            .expect("a fresh connection has room for a request");
        Rig { server: Arc::new(server), busy: Arc::new(busy), idle: Arc::new(idle) }
    }
}

hidden_test! {
    /// Nothing cancelled: requests are answered and heartbeats keep coming. (And the public API
    /// is kept with the traits its types had: a `Server` over a `Debug` application is `Debug`.)
    async fn serves_requests_and_heartbeats() {
        let server = Server::new(SlowApp::new(), HEARTBEAT);
        assert!(
            kata_support::is_debug!(server),
            "a `Server` over an application that is `Debug` is no longer `Debug`: keep the \
             public API as it is, with the traits its types had (a service logs `{{server:?}}`, \
             and derives `Debug` for structs that hold one)"
        );
        let client = Client::connect(&server);
        client.request(1, "/index.html").await;
        sleep(Duration::from_millis(3500)).await;
        assert_eq!(
            client.response(1).as_deref(),
            Some("contents of /index.html"),
            "a request on a healthy server must be answered"
        );
        assert!(
            client.heartbeats() >= 3,
            "in 3.5 s a heartbeat every {HEARTBEAT:?} means 3 heartbeats; the client got {}",
            client.heartbeats()
        );
        assert!(!client.is_closed(), "a healthy connection was closed");
        shut_down(&server, "one idle connection").await;
    }

    /// Heartbeats come one per period and no faster: never two closer together than
    /// `heartbeat_every`, on an idle connection, around a request answered for 4.5 s and around
    /// requests answered back to back, and at least one per period (six in 6.5 s). A beat that
    /// fell due while a request was answered is sent then, not saved up and sent in a burst with
    /// others once the answer is out: the client counts on the beats' rhythm.
    async fn heartbeats_come_one_per_period_never_closer() {
        use tokio::time::{Instant, sleep_until};
        let scenarios = [
            "on an idle connection",
            "around a request taken at 0.3 s and answered at 4.8 s",
            "around six requests taken at 0.3 s and answered back to back, 0.5 s each",
        ];
        for (scenario, what) in scenarios.iter().enumerate() {
            let app = SlowApp::new();
            let held = app.held.clone();
            let server = Server::new(app, HEARTBEAT);
            let (requests, incoming) = mpsc::channel(8);
            let (outgoing, mut from_server) = mpsc::unbounded_channel();
            let start = Instant::now();
            server.serve(Connection { incoming, outgoing });
            // Ends when the connection closes, with the moment of each heartbeat.
            let beats = tokio::spawn(async move {
                let mut beats = Vec::new();
                while let Some(message) = from_server.recv().await {
                    if message == ServerMessage::Heartbeat {
                        beats.push(start.elapsed());
                    }
                }
                beats
            });
            sleep_until(start + Duration::from_millis(300)).await;
            let request = |id: u64, path: &str| {
                let request = Request { id, path: path.to_owned() };
                requests.try_send(ClientMessage::Request(request)).expect("room for a request");
            };
            match scenario {
                0 => {}
                1 => {
                    request(1, "/held/export.csv");
                    sleep_until(start + Duration::from_millis(4_800)).await;
                    held.add_permits(1);
                }
                _ => (1..=6).for_each(|id| request(id, "/index.html")),
            }
            sleep_until(start + Duration::from_millis(6_500)).await;
            shut_down(&server, what).await;
            drop(requests);
            let beats = beats.await.expect("the test's reader does not panic");
            let too_close = beats.windows(2).find(|pair| pair[1] - pair[0] < HEARTBEAT);
            if let Some(pair) = too_close {
                panic!(
                    "a heartbeat every {HEARTBEAT:?}, {what}: the client got heartbeats at \
                     {beats:?}, two of them only {:?} apart; expected one per period, never two \
                     closer together than {HEARTBEAT:?} (beats that fell due while a request was \
                     answered are sent when they fall due, not made up in a burst afterwards)",
                    pair[1] - pair[0]
                );
            }
            assert!(
                beats.len() >= 6,
                "a heartbeat every {HEARTBEAT:?}, {what}: in 6.5 s the client got heartbeats at \
                 {beats:?}; expected one per period, at least 6"
            );
        }
    }

    /// The runtime is busy elsewhere for a while (another task hogs the thread: the clock moves
    /// on while no task of the connection runs), across two beats or ten, on an idle connection
    /// or while a request is answered. When the heartbeat runs again, a beat it missed goes out
    /// late and the next one a period after it: never two closer together than a period, not
    /// the missed beats made up back to back. Each busy spell ends at least 100 ms after a beat
    /// fell due (a beat a few milliseconds late may keep its schedule, as tokio's `Interval`
    /// does).
    async fn heartbeats_stay_a_period_apart_after_the_runtime_was_busy() {
        use tokio::time::{Instant, sleep_until};
        let ms = Duration::from_millis;
        // (what, a request held from 0.3 s until the end of the busy spell, busy from, until)
        let scenarios = [
            ("on an idle connection", false, ms(300), ms(2_500)),
            ("on an idle connection", false, ms(1_500), ms(11_750)),
            ("while a request was being answered", true, ms(300), ms(2_500)),
            ("while a request was being answered", true, ms(2_100), ms(6_400)),
        ];
        for (what, with_request, busy_from, busy_until) in scenarios {
            let app = SlowApp::new();
            let held = app.held.clone();
            let server = Server::new(app, HEARTBEAT);
            let (requests, incoming) = mpsc::channel(8);
            let (outgoing, mut from_server) = mpsc::unbounded_channel();
            let start = Instant::now();
            server.serve(Connection { incoming, outgoing });
            let beats = tokio::spawn(async move {
                let mut beats = Vec::new();
                while let Some(message) = from_server.recv().await {
                    if message == ServerMessage::Heartbeat {
                        beats.push(start.elapsed());
                    }
                }
                beats
            });
            sleep_until(start + ms(300)).await;
            if with_request {
                let request = Request { id: 1, path: "/held/export.csv".into() };
                requests.try_send(ClientMessage::Request(request)).expect("room for a request");
            }
            sleep_until(start + busy_from).await;
            tokio::time::advance(busy_until - busy_from).await;
            if with_request {
                held.add_permits(1);
            }
            let end = busy_until + HEARTBEAT * 4 + HEARTBEAT / 2;
            sleep_until(start + end).await;
            let setting = format!(
                "a heartbeat every {HEARTBEAT:?}, {what}, and the runtime busy elsewhere from \
                 {busy_from:?} until {busy_until:?} (no task of the connection could run)"
            );
            shut_down(&server, &setting).await;
            drop(requests);
            let beats = beats.await.expect("the test's reader does not panic");
            let too_close = beats.windows(2).find(|pair| pair[1] - pair[0] < HEARTBEAT);
            if let Some(pair) = too_close {
                panic!(
                    "{setting}: the client got heartbeats at {beats:?}, two of them only {:?} \
                     apart; expected never two closer together than {HEARTBEAT:?}, also after \
                     the runtime was busy: a beat missed then goes out late, and the next one a \
                     period after it, not the missed beats made up back to back",
                    pair[1] - pair[0]
                );
            }
            let after: Vec<Duration> = beats.iter().copied().filter(|at| *at >= busy_until).collect();
            assert!(
                after.len() >= 4 && after[0] <= busy_until + HEARTBEAT,
                "{setting}: the client got heartbeats at {beats:?}; expected one within a period \
                 of the runtime being free again, and one a period after that, at least 4 by \
                 {end:?}"
            );
        }
    }

    /// The runtime is busy elsewhere just around a beat and frees up a little after it fell due:
    /// a nanosecond, half a millisecond or a nanosecond short of a millisecond past 5 ms, 6 ms,
    /// 60 ms, 101 ms, most of a period, or an hour late; with the connection served on a tick of
    /// tokio's timer or between two. Whatever the lateness beyond the few milliseconds tokio's
    /// `Interval` forgives (5 ms, to the nanosecond), the late beat goes out late and the next one
    /// a full period after it: no lateness is small enough to keep the old grid.
    async fn a_beat_late_by_any_amount_pushes_the_next_one_a_period_on() {
        use tokio::time::{Instant, sleep_until};
        let ms = Duration::from_millis;
        let ns = Duration::from_nanos;
        let latenesses = [
            ns(5_000_001),
            ns(5_500_001),
            ns(5_999_999),
            ms(6),
            ms(7),
            ms(15),
            ms(30),
            ms(60),
            ms(99),
            ms(100),
            ms(101),
            ms(150),
            ms(250),
            ms(500),
            ms(999),
            HEARTBEAT * 3600 + ms(6),
        ];
        let offsets = [Duration::ZERO, ns(300_001)];
        // A tick of tokio's timer: the runtime's timer started counting then.
        let origin = Instant::now();
        for (offset, late) in offsets.into_iter().flat_map(|o| latenesses.map(|l| (o, l))) {
            // The paused clock moves from tick to tick keeping how far past one it is.
            let into_tick =
                Duration::from_nanos(((Instant::now() - origin).as_nanos() % 1_000_000) as u64);
            let step =
                if offset >= into_tick { offset - into_tick } else { offset + ms(1) - into_tick };
            tokio::time::advance(step).await;
            let server = Server::new(SlowApp::new(), HEARTBEAT);
            let (requests, incoming) = mpsc::channel(8);
            let (outgoing, mut from_server) = mpsc::unbounded_channel();
            let start = Instant::now();
            server.serve(Connection { incoming, outgoing });
            let beats = tokio::spawn(async move {
                let mut beats = Vec::new();
                while let Some(message) = from_server.recv().await {
                    if message == ServerMessage::Heartbeat {
                        beats.push(start.elapsed());
                    }
                }
                beats
            });
            // Busy from 50 ms before the beat due at 2 s until `late` after it.
            let busy_from = ms(1_950);
            let busy_until = HEARTBEAT * 2 + late;
            sleep_until(start + busy_from).await;
            // To the nanosecond: a wait from between two ticks lands on the later one.
            tokio::time::advance(start + busy_until - Instant::now()).await;
            sleep_until(start + busy_until + HEARTBEAT * 2 + HEARTBEAT / 2).await;
            let setting = format!(
                "a heartbeat every {HEARTBEAT:?}, the connection served {offset:?} past a tick \
                 of tokio's timer, and the runtime busy elsewhere from {busy_from:?} until \
                 {busy_until:?} after that (the beat due at 2s could go out only {late:?} late)"
            );
            shut_down(&server, &setting).await;
            drop(requests);
            let beats = beats.await.expect("the test's reader does not panic");
            let too_close = beats.windows(2).find(|pair| pair[1] - pair[0] < HEARTBEAT);
            if let Some(pair) = too_close {
                panic!(
                    "{setting}: the client got heartbeats at {beats:?}, two of them only {:?} \
                     apart; expected the late beat to go out late and the next one a full period \
                     after it, however little the beat was late (more than 5 ms): never two \
                     closer together than {HEARTBEAT:?}",
                    pair[1] - pair[0]
                );
            }
            let after: Vec<Duration> = beats.iter().copied().filter(|at| *at >= busy_until).collect();
            assert!(
                after.len() >= 2 && after[0] <= busy_until + HEARTBEAT,
                "{setting}: the client got heartbeats at {beats:?}; expected one within a period \
                 of the runtime being free again, and one a period after that"
            );
        }
    }

    /// `is_shutting_down()` is false until `shutdown` begins, and true from its first poll on:
    /// while it waits for the request in flight, after it returned, and after a `shutdown`
    /// future was dropped part way (a signal handler that gave up at its deadline: the wind-down
    /// goes on, and the server is shutting down all the same).
    async fn is_shutting_down_from_the_moment_shutdown_begins() {
        for drop_it in [false, true] {
            let app = SlowApp::new();
            let held = app.held.clone();
            let server = Server::new(app, HEARTBEAT);
            let client = Client::connect(&server);
            client.request(7, "/held/export.csv").await;
            sleep(WORK / 5).await;
            assert!(
                !server.is_shutting_down(),
                "a request was being answered and nobody had called `shutdown`, but \
                 `is_shutting_down()` was already true"
            );
            let mut first = Some(Box::pin(server.shutdown()));
            sleep(WORK / 5).await;
            assert!(
                !server.is_shutting_down(),
                "a `shutdown` future had been made but not yet polled, and `is_shutting_down()` \
                 was already true: shutdown begins at the first poll of `shutdown`, not when the \
                 future is made"
            );
            if let Some(first) = first.as_mut() {
                assert!(
                    timeout(Duration::from_secs(1), first).await.is_err(),
                    "`shutdown` returned while a request was still being answered"
                );
            }
            let check = |when: &str| {
                assert!(
                    server.is_shutting_down(),
                    "`is_shutting_down()` was false {when}; expected true: it is true from the \
                     moment `shutdown` has begun (its first poll), while it waits for the \
                     wind-down, after it returned, and after a `shutdown` future was dropped"
                );
            };
            check("once `shutdown` had begun and was waiting for the answer to the request in flight");
            if drop_it {
                first = None;
                check("once a `shutdown` that had begun was dropped (a signal handler giving up at its deadline)");
                sleep(Duration::from_secs(10)).await;
                check("10 s after a `shutdown` that had begun was dropped, with the request in flight still being answered");
            }
            held.add_permits(1);
            match first {
                Some(first) => {
                    if timeout(Duration::from_secs(60), first).await.is_err() {
                        panic!(
                            "the request in flight was let finish, but a minute later \
                             `shutdown` had still not returned"
                        );
                    }
                }
                None => shut_down(&server, "after a first `shutdown` was dropped").await,
            }
            check("after `shutdown` returned");
            assert!(client.response(7).is_some(), "shutdown returned, but request 7 was never answered");
        }
    }

    /// A `shutdown` future made but never polled begins nothing: an accept loop's `select!`
    /// branch `_ = server.shutdown(), if stop_requested` evaluates `server.shutdown()` even while
    /// its condition is false, and never polls it; a future made and dropped; one made and kept.
    /// The server goes on as before: `is_shutting_down()` stays false, a connection served before
    /// them and one served after still answer their requests and get their heartbeats, and a
    /// real `shutdown` later winds everything down.
    async fn a_shutdown_future_never_polled_shuts_nothing_down() {
        let server = Server::new(SlowApp::new(), HEARTBEAT);
        let before = Client::connect(&server);
        let stop_requested = false;
        tokio::select! {
            _ = server.shutdown(), if stop_requested => unreachable!("the branch is disabled"),
            _ = sleep(Duration::from_millis(10)) => {}
        }
        drop(server.shutdown());
        let made = server.shutdown();
        let after = Client::connect(&server);
        sleep(WORK / 5).await;
        let shutting_down = server.is_shutting_down();
        before.request(1, "/report.pdf").await;
        after.request(2, "/report.pdf").await;
        sleep(WORK + HEARTBEAT * 2).await;
        let served = |client: &Client, id: u64| {
            format!(
                "{}, answered: {}, {} heartbeat(s)",
                if client.is_closed() { "closed" } else { "open" },
                client.response(id).is_some(),
                client.heartbeats()
            )
        };
        let fine = |client: &Client, id: u64| {
            !client.is_closed() && client.response(id).is_some() && client.heartbeats() >= 2
        };
        assert!(
            !shutting_down && fine(&before, 1) && fine(&after, 2),
            "`shutdown()` futures were made and never polled (a `select!` branch disabled by its \
             condition, one dropped at once, one kept): `is_shutting_down()` was then \
             {shutting_down}; {:?} later, a connection served before them was {}, one served \
             after them {}. Expected false, and both open, answered, with a heartbeat a second: \
             shutdown begins at the first poll of `shutdown`, not when the future is made",
            WORK + HEARTBEAT * 2,
            served(&before, 1),
            served(&after, 2)
        );
        drop(made);
        shut_down(&server, "after `shutdown` futures that were never polled").await;
        assert!(
            before.is_closed() && after.is_closed(),
            "`shutdown` returned with a connection still open"
        );
    }

    /// Heartbeats keep their period over its whole range: a millisecond (tokio's timer
    /// resolution), 100 ms, a second and a half, two days, twenty years. Around a request
    /// answered from the start until 4.5 periods in (a single period's beat for 1 ms: until 4
    /// periods), at least one beat a period comes (six by 6.5 periods), and never two closer
    /// together than the period. The clock moves in steps of a quarter period, so a heartbeat
    /// that wakes more often costs no more.
    async fn heartbeats_keep_their_period_over_its_whole_range() {
        use tokio::time::Instant;
        let periods = [
            (Duration::from_millis(1), "1 ms"),
            (Duration::from_millis(100), "100 ms"),
            (Duration::from_millis(1_500), "1.5 s"),
            (Duration::from_secs(2 * 24 * 3600), "2 days"),
            (Duration::from_secs(20 * 365 * 24 * 3600), "20 years"),
        ];
        for (period, name) in periods {
            // On the timer's millisecond grid, so that a quarter period is a whole step of it.
            sleep(Duration::from_millis(1)).await;
            let per = if period >= Duration::from_millis(4) { 4 } else { 1 };
            let step = period / per;
            let app = SlowApp::new();
            let held = app.held.clone();
            let server = Server::new(app, period);
            let (requests, incoming) = mpsc::channel(8);
            let (outgoing, mut from_server) = mpsc::unbounded_channel();
            let start = Instant::now();
            server.serve(Connection { incoming, outgoing });
            let log = tokio::spawn(async move {
                let mut beats = Vec::new();
                let mut answered = false;
                while let Some(message) = from_server.recv().await {
                    match message {
                        ServerMessage::Heartbeat => beats.push(start.elapsed()),
                        ServerMessage::Response { id: 1, .. } => answered = true,
                        _ => {}
                    }
                }
                (beats, answered)
            });
            let request = Request { id: 1, path: "/held/export.csv".into() };
            requests.try_send(ClientMessage::Request(request)).expect("room for a request");
            // The connection's tasks start, and take the request, before the clock moves.
            kata_support::settle().await;
            let release = 4 * per + per / 2;
            for k in 1..=(6 * per + per / 2) {
                tokio::time::advance(step).await;
                kata_support::settle().await;
                if k == release {
                    held.add_permits(1);
                    kata_support::settle().await;
                }
            }
            let what = format!("a heartbeat every {name}, around a request answered from the start until {:?} in", step * release);
            shut_down(&server, &what).await;
            drop(requests);
            let (beats, answered) = log.await.expect("the test's reader does not panic");
            let too_close = beats.windows(2).find(|pair| pair[1] - pair[0] < period);
            if let Some(pair) = too_close {
                panic!(
                    "{what}: the client got heartbeats at {beats:?}, two of them only {:?} apart; \
                     expected never two closer together than {name}",
                    pair[1] - pair[0]
                );
            }
            assert!(
                beats.len() >= 6,
                "{what}: by {:?} the client got {} heartbeat(s), at {beats:?}; expected one every \
                 {name}, at least 6: heartbeats keep their period over its whole range, short or \
                 long (none is too short to keep, nor too long to be worth a task)",
                step * (6 * per + per / 2),
                beats.len()
            );
            assert!(answered, "{what}: the request was never answered");
        }
    }

    /// A heartbeat period out at the far end of its range: a thousand years, 146 million years,
    /// `u64::MAX` seconds, `Duration::MAX` less a nanosecond, and `Duration::MAX`. The server
    /// never panics; no beat comes before the period is up, or before tokio's far future (about
    /// 30 years, the longest a tokio timer waits), whichever is earlier (one as soon as the
    /// connection is served is up to the server); a beat comes once a thousand-year period is up;
    /// a request held for decades is still answered; a torn-down connection and a shutdown still
    /// stop at once.
    async fn a_heartbeat_period_at_the_far_end_of_its_range() {
        use tokio::time::Instant;
        const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
        const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
        let panics = Arc::new(Mutex::new(Vec::<String>::new()));
        let previous: Arc<Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Send + Sync>> =
            Arc::new(std::panic::take_hook());
        {
            let (panics, previous) = (panics.clone(), previous.clone());
            std::panic::set_hook(Box::new(move |info| {
                let payload = info.payload();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|m| m.to_string())
                    .or(payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                panics.lock().expect("panic log lock").push(format!("{message} ({:?})", info.location()));
                previous(info);
            }));
        }
        let periods = [
            (1000 * YEAR, "a thousand years"),
            (kata_support::time::FAR_END, "146 million years"),
            (Duration::from_secs(u64::MAX), "u64::MAX seconds"),
            (Duration::MAX - Duration::from_nanos(1), "Duration::MAX less a nanosecond"),
            (Duration::MAX, "Duration::MAX"),
        ];
        for (period, name) in periods {
            let app = SlowApp::new();
            let held = app.held.clone();
            let server = Server::new(app, period);
            let (requests, incoming) = mpsc::channel(8);
            let (outgoing, mut from_server) = mpsc::unbounded_channel();
            let start = Instant::now();
            server.serve(Connection { incoming, outgoing });
            let beats = Arc::new(Mutex::new(Vec::new()));
            let answered = Arc::new(AtomicBool::new(false));
            let log = {
                let (beats, answered) = (beats.clone(), answered.clone());
                tokio::spawn(async move {
                    while let Some(message) = from_server.recv().await {
                        match message {
                            ServerMessage::Heartbeat => beats.lock().expect("log lock").push(start.elapsed()),
                            ServerMessage::Response { id: 1, .. } => answered.store(true, Ordering::SeqCst),
                            _ => {}
                        }
                    }
                })
            };
            let request = Request { id: 1, path: "/held/export.csv".into() };
            requests.try_send(ClientMessage::Request(request)).expect("room for a request");
            kata_support::settle().await;
            let no_panic = |when: &str| {
                let seen = panics.lock().expect("panic log lock").clone();
                assert!(
                    seen.is_empty(),
                    "a heartbeat every {name}: {when}, the server had panicked: {seen:?}. A \
                     period may be anything up to `Duration::MAX`; a period longer than tokio's \
                     far future (about 30 years) may beat then, as tokio's own timers do, but \
                     nothing may overflow"
                );
            };
            no_panic("once the connection was served");
            tokio::time::advance(FAR_FUTURE - Duration::from_secs(1)).await;
            kata_support::settle().await;
            no_panic("with a request held for 30 years less a second");
            let early: Vec<Duration> =
                beats.lock().expect("log lock").iter().copied().filter(|at| !at.is_zero()).collect();
            assert!(
                early.is_empty(),
                "a heartbeat every {name}: the client got heartbeats at {early:?}, before the \
                 period was up and before tokio's far future (about 30 years)"
            );
            assert!(
                !answered.load(Ordering::SeqCst) && !log.is_finished() && !server.is_shutting_down(),
                "a heartbeat every {name}, a request held for 30 years less a second: the request \
                 was answered ({}) or the connection closed ({}) or the server shutting down ({}), \
                 expected none of them: the request is still being answered",
                answered.load(Ordering::SeqCst),
                log.is_finished(),
                server.is_shutting_down()
            );
            let due = period == 1000 * YEAR;
            let until = if due { period + Duration::from_secs(1) } else { FAR_FUTURE + Duration::from_secs(1) };
            tokio::time::advance(until - (FAR_FUTURE - Duration::from_secs(1))).await;
            kata_support::settle().await;
            no_panic(&format!("{} into the connection", kata_support::time::spoken(until)));
            let count = beats.lock().expect("log lock").len();
            assert!(
                !due || count >= 1,
                "a heartbeat every {name}: {} into the connection the client had got no \
                 heartbeat; expected one once the period was up (none is too long to keep)",
                kata_support::time::spoken(until)
            );
            held.add_permits(1);
            kata_support::settle().await;
            assert!(
                answered.load(Ordering::SeqCst),
                "a heartbeat every {name}: a request held for {} and then let finish was not \
                 answered",
                kata_support::time::spoken(until)
            );
            // Garbage on a second connection: torn down at once.
            let (bad, incoming) = mpsc::channel(8);
            let (outgoing, _from_bad) = mpsc::unbounded_channel();
            let weak = outgoing.downgrade();
            server.serve(Connection { incoming, outgoing });
            bad.try_send(ClientMessage::Malformed("GARBAGE".into())).expect("room");
            kata_support::settle().await;
            assert!(
                weak.strong_count() == 0,
                "a heartbeat every {name}: a connection served {} in sent garbage, and once every \
                 task that could run had run, with no virtual time passing, {} task(s) of it were \
                 still running: a torn-down connection stops at once, whatever the period",
                kata_support::time::spoken(until),
                weak.strong_count()
            );
            let began = Instant::now();
            let shutdown = server.shutdown();
            tokio::pin!(shutdown);
            let ended = timeout(Duration::from_secs(1), &mut shutdown).await.is_ok();
            assert!(
                ended && began.elapsed().is_zero(),
                "a heartbeat every {name}: `shutdown` of a server whose only connection was idle \
                 took {:?} of virtual time (finished: {ended}); expected it to return at once",
                began.elapsed()
            );
            drop(requests);
            no_panic("after the shutdown");
        }
        drop(std::panic::take_hook());
        std::panic::set_hook(Box::new(move |info| previous(info)));
    }

    /// One client breaks the protocol: its connection closes (heartbeat included), and nothing
    /// else does.
    async fn a_protocol_error_closes_only_that_connection() {
        let server = Server::new(SlowApp::new(), HEARTBEAT);
        let bad = Client::connect(&server);
        let mut good = Client::connect(&server);
        bad.send(ClientMessage::Malformed(
            "\u{16}\u{3}\u{1} (a TLS hello)".into(),
        ))
        .await;
        sleep(Duration::from_millis(10)).await;

        assert!(
            !server.is_shutting_down(),
            "one client sent garbage, and the whole server began shutting down: the connection \
             cancelled the server's own token (a clone of a token is the same token)"
        );
        let mut good_closing = task::spawn(&mut good.reader);
        assert!(
            good_closing.poll().is_pending(),
            "connection 2 was closed because connection 1 sent garbage"
        );
        drop(good_closing);
        good.request(2, "/index.html").await;
        sleep(WORK * 2).await;
        assert!(
            good.response(2).is_some(),
            "connection 2 stopped answering requests after connection 1's protocol error"
        );

        assert_eq!(
            bad.count(|m| matches!(m, ServerMessage::ProtocolError(_))),
            1,
            "the client that sent garbage must get one ProtocolError"
        );
        sleep(Duration::from_secs(10)).await;
        assert!(
            bad.is_closed(),
            "10 s after its protocol error, connection 1 is still open: its heartbeat task is \
             still running ({} heartbeats so far). Tearing down a connection means cancelling \
             that connection's token, so that both of its tasks stop",
            bad.heartbeats()
        );
        assert!(!good.is_closed(), "connection 2 must still be open");
        shut_down(&server, "after one connection was torn down").await;
    }

    /// A torn-down connection and a shut-down server stop at once, whatever the heartbeat period:
    /// once the connection's handler has ended (after a protocol error, or a hang-up), no task
    /// of that connection is left, with no virtual time passing; and `shutdown` of a server whose
    /// connections are idle returns with no virtual time passing and no task of any connection
    /// left. A heartbeat that only looks at the token when it wakes (for a beat, or to poll)
    /// takes time; one that outlives its connection unseen leaves a task behind.
    async fn a_connection_stops_at_once_whatever_the_heartbeat_period() {
        for period in [HEARTBEAT, Duration::from_secs(3600)] {
            for hang_up in [false, true] {
                let server = Server::new(SlowApp::new(), period);
                let before = alive_tasks();
                let (_idle, incoming) = mpsc::channel::<ClientMessage>(8);
                let (outgoing, _from_idle) = mpsc::unbounded_channel();
                server.serve(Connection { incoming, outgoing });
                // However many tasks a connection runs, and whenever it spawns them.
                kata_support::settle().await;
                let idle_tasks = alive_tasks() - before;
                let (closing, incoming) = mpsc::channel(8);
                let (outgoing, mut from_closing) = mpsc::unbounded_channel();
                server.serve(Connection { incoming, outgoing });
                // Past the first beat, half way to the next one.
                sleep(period + period / 2).await;
                let how = if hang_up {
                    drop(closing);
                    "the client hung up"
                } else {
                    closing
                        .send(ClientMessage::Malformed("\u{16}\u{3}\u{1} (a TLS hello)".into()))
                        .await
                        .expect("the connection's request channel has room");
                    loop {
                        match from_closing.recv().await {
                            Some(ServerMessage::Heartbeat) => continue,
                            Some(ServerMessage::ProtocolError(_)) => break,
                            other => panic!(
                                "a client that sent garbage got {other:?} instead of a ProtocolError"
                            ),
                        }
                    }
                    "the client sent garbage and got its ProtocolError"
                };
                // Every task that is ready runs; the clock does not move.
                kata_support::settle().await;
                let left = alive_tasks().saturating_sub(before + idle_tasks);
                assert!(
                    left == 0,
                    "heartbeat every {period:?}: {how}, and once every task that could run had \
                     run, with no virtual time passing, {left} task(s) of that connection were \
                     still running. A torn-down connection stops both of its tasks at once: a \
                     heartbeat that notices only when it next wakes (for a beat, or to look at \
                     the token or its channel) lives on after its connection is over"
                );
                let began = tokio::time::Instant::now();
                if timeout(period * 2, server.shutdown()).await.is_err() {
                    panic!(
                        "heartbeat every {period:?}: `shutdown` of a server whose other \
                         connection was idle had not returned {:?} later",
                        period * 2
                    );
                }
                let took = began.elapsed();
                let left = alive_tasks() - before;
                assert!(
                    took.is_zero() && left == 0,
                    "heartbeat every {period:?}: `shutdown` of a server whose only open \
                     connection was idle took {took:?} of virtual time and returned with {left} \
                     connection task(s) still running; it should return at once, with every \
                     task gone. A shutdown reaches a heartbeat at once only where the heartbeat \
                     waits on the token, not when it next wakes to look at it"
                );
            }
        }
    }

    /// The client code runs in a task of its own (as an admin handler would): it learns that its
    /// connection's handler has ended and calls `shutdown` at once, while the closing
    /// connection's heartbeat may not have run since. The handler ends however it can: the
    /// client sent garbage and read the `ProtocolError`; `App::handle` panicked, when called or
    /// in its future (the client learns of it as the panic begins); or the client sent a
    /// request, hung up and read the answer. When `shutdown` returns, that connection is closed
    /// too, with no other task run in between. The end comes at once, or after the connection sat idle for a while (its
    /// heartbeat waiting for its next tick, or having sent one already).
    async fn shutdown_right_after_a_handler_ends_closes_that_connection() {
        let mut endings = vec![("garbage", ""), ("hang-up", "")];
        endings.extend(PANICS);
        for (ending, when) in endings {
            for idle in [Duration::ZERO, Duration::from_millis(300), Duration::from_millis(1500)] {
                let checked = tokio::spawn(async move {
                    let app = SlowApp::new();
                    let panicking = app.panicking.clone();
                    let server = Server::new(app, HEARTBEAT);
                    let (requests, incoming) = mpsc::channel(8);
                    let (outgoing, mut from_server) = mpsc::unbounded_channel();
                    let weak = outgoing.downgrade();
                    server.serve(Connection { incoming, outgoing });
                    if !idle.is_zero() {
                        sleep(idle).await;
                    }
                    let how = match ending {
                        "garbage" => {
                            requests
                                .send(ClientMessage::Malformed("\u{16}\u{3}\u{1} (a TLS hello)".into()))
                                .await
                                .expect("the connection's request channel has room");
                            let answer = loop {
                                match from_server.recv().await {
                                    Some(ServerMessage::Heartbeat) => continue,
                                    other => break other,
                                }
                            };
                            assert!(
                                matches!(answer, Some(ServerMessage::ProtocolError(_))),
                                "a client that sent garbage got {answer:?} instead of a \
                                 ProtocolError"
                            );
                            "sent garbage, read its ProtocolError".to_owned()
                        }
                        "hang-up" => {
                            let request = Request { id: 3, path: "/last.txt".into() };
                            requests
                                .send(ClientMessage::Request(request))
                                .await
                                .expect("the connection's request channel has room");
                            drop(requests);
                            let answer = loop {
                                match from_server.recv().await {
                                    Some(ServerMessage::Heartbeat) => continue,
                                    other => break other,
                                }
                            };
                            assert!(
                                matches!(answer, Some(ServerMessage::Response { id: 3, .. })),
                                "a client that sent a request and hung up got {answer:?} \
                                 instead of its answer"
                            );
                            "sent a request, hung up, read the answer".to_owned()
                        }
                        path => {
                            let request = Request { id: 13, path: path.into() };
                            requests
                                .send(ClientMessage::Request(request))
                                .await
                                .expect("the connection's request channel has room");
                            panicking.notified().await;
                            format!(
                                "sent a request on which `App::handle` panicked {when}, learnt of \
                                 the panic"
                            )
                        }
                    };
                    server.shutdown().await;
                    let still_running = weak.strong_count();
                    assert_eq!(
                        still_running,
                        0,
                        "a client {} {how} and called `shutdown` at once; `shutdown` returned, \
                         but {still_running} task(s) of that connection were still running (its \
                         heartbeat, say), so the connection was still open. `shutdown` waits \
                         for every connection task, however its handler ended, only if each \
                         one was spawned on the tracker (a task that is only aborted, or told to \
                         stop, when the handler ends has merely been asked to stop, and may not \
                         have stopped yet; and a tracked task that awaits it on its way out \
                         never gets there when `App::handle` panics)",
                        if idle.is_zero() {
                            "that had just connected".to_string()
                        } else {
                            format!("whose connection had been idle for {idle:?}")
                        }
                    );
                });
                if let Err(error) = checked.await {
                    std::panic::resume_unwind(error.into_panic());
                }
            }
        }
    }

    /// Shutdown reaches every connection, even idle ones, and waits for them.
    async fn shutdown_reaches_every_connection() {
        let server = Server::new(SlowApp::new(), HEARTBEAT);
        let clients: Vec<Client> = (0..3).map(|_| Client::connect(&server)).collect();
        sleep(Duration::from_millis(10)).await;
        shut_down(&server, "three idle connections").await;
        for (i, client) in clients.iter().enumerate() {
            assert_eq!(
                client.server_handles(),
                0,
                "shutdown returned, but {} task(s) of connection {} were still running (its \
                 heartbeat, say). `shutdown` waits for every connection task only if each one \
                 was spawned on the tracker",
                client.server_handles(),
                i + 1
            );
        }
        kata_support::settle().await;
        for (i, client) in clients.iter().enumerate() {
            assert!(
                client.is_closed(),
                "shutdown returned, but connection {} is still open",
                i + 1
            );
        }
    }

    /// A request being answered when shutdown begins is answered before `shutdown` returns,
    /// however long it takes: here the application holds it unfinished for a thousand years of
    /// virtual time (`AGES`), then 146 million years more (as far as the paused clock goes, in
    /// one jump), longer than any grace period, before it lets it finish. `shutdown`
    /// is still waiting then, and returns with the answer sent once the work is done.
    async fn shutdown_lets_the_request_in_flight_finish() {
        let app = SlowApp::new();
        let (held, dropped) = (app.held.clone(), app.held_dropped.clone());
        let server = Server::new(app, YEARLY);
        let client = Client::connect(&server);
        client.request(7, "/held/export.csv").await;
        sleep(WORK / 5).await;
        let began = tokio::time::Instant::now();
        let shutdown = server.shutdown();
        tokio::pin!(shutdown);
        if timeout(AGES, &mut shutdown).await.is_ok() {
            let waited = began.elapsed();
            kata_support::settle().await;
            let seen = if dropped.load(Ordering::SeqCst) {
                "the work on the request had been dropped half way, so its answer can never come"
            } else {
                "the work on the request was still going on, but nothing waited for it any more: \
                 once `shutdown` returns the process exits, and the answer is lost"
            };
            panic!(
                "shutdown began 100 ms into a request the application had not finished yet, and \
                 `shutdown` returned {waited:?} later without its answer: {seen}. Graceful means \
                 a request already taken is answered, and `shutdown` waits for that answer \
                 however long it takes: no grace period, no time limit"
            );
        }
        // Then on to the far end of the clock, in one jump: no grace period, however long.
        tokio::time::advance(kata_support::time::FAR_END).await;
        kata_support::settle().await;
        if timeout(Duration::ZERO, &mut shutdown).await.is_ok() {
            panic!(
                "shutdown began 100 ms into a request the application had not finished yet; \
                 `shutdown` was still waiting {AGES:?} later, but returned without its answer \
                 once the clock jumped on by {} (as far as it goes): graceful means a request \
                 already taken is answered, and `shutdown` waits for that answer however long \
                 it takes: no grace period, no time limit, however far",
                kata_support::time::spoken(kata_support::time::FAR_END)
            );
        }
        held.add_permits(1);
        if timeout(Duration::from_secs(60), &mut shutdown).await.is_err() {
            panic!(
                "the request in flight when shutdown began was let finish after {AGES:?}, but a \
                 minute later `shutdown` had still not returned"
            );
        }
        assert!(
            client.response(7).is_some(),
            "the request in flight when shutdown began was let finish after {AGES:?}, and \
             `shutdown` returned, but the client had no answer to it{}",
            if dropped.load(Ordering::SeqCst) {
                ": its work had been dropped half way"
            } else {
                ""
            }
        );
        kata_support::settle().await;
        assert!(client.is_closed(), "shutdown returned, but the connection is still open");
    }

    /// Shutdown begins while one request is being answered and three more wait behind it:
    /// queued after it was taken, or all four queued at once before the handler ran (so a
    /// handler that takes several at a time, `recv_many`, has them all in hand). Either way the
    /// one being answered is answered, the others are not, and the connection closes.
    async fn shutdown_takes_no_queued_request() {
        for queued_together in [false, true] {
            let server = Server::new(SlowApp::new(), HEARTBEAT);
            let client = Client::connect(&server);
            if queued_together {
                // No `.await` between the four sends: the handler finds all four at once.
                for (id, path) in [(7, "/report.pdf"), (8, "/queued.txt"), (9, "/queued.txt"), (10, "/queued.txt")] {
                    client
                        .requests
                        .try_send(ClientMessage::Request(Request { id, path: path.into() }))
                        .expect("a new connection has room for four requests");
                }
                sleep(WORK / 5).await;
            } else {
                client.request(7, "/report.pdf").await;
                sleep(WORK / 5).await;
                for id in 8..=10 {
                    client.request(id, "/queued.txt").await;
                }
            }
            let how = if queued_together {
                "four requests sent together, the first in flight"
            } else {
                "one request in flight, three queued behind it"
            };
            shut_down(&server, how).await;
            kata_support::settle().await;
            assert!(
                client.response(7).is_some(),
                "{how}: shutdown returned, but the request being answered when it began had no \
                 answer yet"
            );
            let taken: Vec<u64> = (8..=10).filter(|&id| client.response(id).is_some()).collect();
            assert!(
                taken.is_empty(),
                "{how}: shutdown began while request 7 was being answered and requests 8..=10 \
                 were still waiting to be answered; the server then answered {taken:?} as well. \
                 Once shutdown has begun, the server must start no new request, even one \
                 already queued or already received with the one in flight (a client that \
                 keeps sending would otherwise keep the server from ever shutting down)"
            );
            assert!(
                client.is_closed(),
                "{how}: shutdown returned, but the connection is still open"
            );
        }
    }

    /// Idle connections: each client queues a request and shutdown begins before any handler
    /// has run again, so a request and the shutdown are both there when a handler wakes. The
    /// request is not taken, on any connection, whichever order `select!` tries.
    async fn shutdown_takes_no_request_queued_on_an_idle_connection() {
        let server = Server::new(SlowApp::new(), HEARTBEAT);
        let clients: Vec<Client> = (0..4).map(|_| Client::connect(&server)).collect();
        sleep(Duration::from_millis(10)).await;
        // No `.await` between the requests and the first poll of `shutdown`: no handler runs
        // in between.
        for (i, client) in clients.iter().enumerate() {
            client
                .requests
                .try_send(ClientMessage::Request(Request { id: i as u64, path: "/queued.txt".into() }))
                .expect("an idle connection has room for a request");
        }
        shut_down(&server, "four idle connections, one request queued on each").await;
        kata_support::settle().await;
        let taken: Vec<usize> =
            (0..clients.len()).filter(|&i| clients[i].response(i as u64).is_some()).collect();
        assert!(
            taken.is_empty(),
            "four idle connections each had one request queued when shutdown began, and the \
             connection(s) {taken:?} took and answered it anyway. A handler woken by both a \
             request and the shutdown must see the shutdown first, every time (`biased;` with \
             the token on top; a check of `is_cancelled()` before a random `select!`, or \
             `run_until_cancelled`, which prefers the future once it has started, lets the \
             request through)"
        );
    }

    /// Heartbeats go on while a request is being answered (the client counts on them to know
    /// the server is alive, above all while it waits for a slow answer), and stop at once when
    /// shutdown begins, although the request in flight is still being answered and `shutdown`
    /// waits for its answer.
    async fn heartbeats_go_on_during_a_request_and_stop_when_shutdown_begins() {
        let app = SlowApp::new();
        let held = app.held.clone();
        let server = Server::new(app, HEARTBEAT);
        let client = Client::connect(&server);
        client.request(7, "/held/export.csv").await;
        let busy_for = HEARTBEAT * 4 + HEARTBEAT / 2;
        sleep(busy_for).await;
        kata_support::settle().await;
        let during = client.heartbeats();
        assert!(
            during >= 4,
            "a request was being answered for {busy_for:?} (the application had not finished \
             it), with a heartbeat due every {HEARTBEAT:?}, and the client got {during} \
             heartbeat(s) in that time; expected 4. The heartbeat tells the client the server is \
             alive, also while it works on a request: a client that hears nothing for seconds \
             takes the server for dead and drops the connection, answer and all"
        );
        assert!(
            client.response(7).is_none(),
            "the application had not finished request 7, but the client already had an answer"
        );
        let shutdown = server.shutdown();
        tokio::pin!(shutdown);
        let watched = HEARTBEAT * 5;
        if timeout(watched, &mut shutdown).await.is_ok() {
            panic!(
                "shutdown began while request 7 was being answered, and `shutdown` returned \
                 before the application had finished it: graceful means its answer is sent \
                 before `shutdown` returns"
            );
        }
        kata_support::settle().await;
        let after = client.heartbeats() - during;
        assert!(
            after == 0,
            "shutdown began while request 7 was being answered, and in the {watched:?} that \
             `shutdown` then waited for its answer the client got {after} more heartbeat(s) \
             (expected none): a shutdown stops the connection's heartbeat at once, even while \
             its request in flight is still being answered; only that answer is still owed"
        );
        held.add_permits(1);
        if timeout(Duration::from_secs(60), &mut shutdown).await.is_err() {
            panic!(
                "the request in flight when shutdown began was let finish, but a minute later \
                 `shutdown` had still not returned"
            );
        }
        assert!(
            client.response(7).is_some(),
            "shutdown returned, but the request in flight when it began was never answered"
        );
        kata_support::settle().await;
        assert!(client.is_closed(), "shutdown returned, but the connection is still open");
    }

    /// A bug in the application makes `App::handle` panic: when it is called (before it returns
    /// its future), on the future's first poll, or later in that future. The runtime catches the
    /// panic and the connection's handler ends. That connection closes at once, heartbeat
    /// included (whatever the heartbeat period, and with no virtual time passing once the panic
    /// began), and nothing else does.
    async fn a_panic_in_the_application_closes_that_connection() {
        for (path, when) in PANICS {
            for period in [HEARTBEAT, Duration::from_secs(3600)] {
                let app = SlowApp::new();
                let panicking = app.panicking.clone();
                let server = Server::new(app, period);
                kata_support::settle().await;
                let before = alive_tasks();
                let other = Client::connect(&server);
                // However many tasks a connection runs, and whenever it spawns them (with the
                // test's reader of that connection).
                kata_support::settle().await;
                let per_connection = alive_tasks() - before;
                let crashing = Client::connect(&server);
                // The heartbeat waits for its tick: past the first beat of a heartbeat a second,
                // a quarter of the way to the next one, so that a panic half a second later comes
                // before it (an hourly one waits for its first: a fix that wakes often would make
                // an hour and more of virtual time cost seconds).
                sleep(HEARTBEAT + HEARTBEAT / 4).await;
                crashing.request(13, path).await;
                panicking.notified().await;
                // Every task that is ready runs; the clock does not move.
                kata_support::settle().await;
                let handles = crashing.server_handles();
                let left = alive_tasks().saturating_sub(before + per_connection).max(handles);
                assert!(
                    left == 0 && crashing.is_closed(),
                    "heartbeat every {period:?}: `App::handle` panicked {when}, which ended the \
                     connection's handler, and once every task that could run had run, with no \
                     virtual time passing, {left} task(s) of that connection were still running \
                     and the connection was {}. However the handler ends (a hang-up, a protocol \
                     error, a shutdown, or a panic, where no code after it runs, wherever in \
                     `App::handle` it comes), the connection is over and its heartbeat must stop \
                     at once",
                    if crashing.is_closed() { "closed" } else { "still open" }
                );
                assert!(
                    !server.is_shutting_down() && !other.is_closed(),
                    "heartbeat every {period:?}: the application panicked {when} on one \
                     connection, and that closed another connection or began a shutdown"
                );
                shut_down(&server, "after the application panicked on one connection").await;
            }
        }
    }

    /// The accept loop and the shutdown race: a connection is handed to `serve` after shutdown
    /// began (while `shutdown` waits for a request in flight, or after it returned), with a
    /// request already queued. Its request is not started, it closes at once, and a `shutdown`
    /// still waiting returns once the request in flight is done.
    async fn a_connection_served_after_shutdown_began_starts_no_request() {
        for while_waiting in [true, false] {
            let app = SlowApp::new();
            let held = app.held.clone();
            let server = Server::new(app, HEARTBEAT);
            let busy = Client::connect(&server);
            busy.request(7, "/held/export.csv").await;
            sleep(WORK / 5).await;
            let shutdown = server.shutdown();
            tokio::pin!(shutdown);
            let when = if while_waiting {
                assert!(
                    timeout(Duration::from_millis(10), &mut shutdown).await.is_err(),
                    "`shutdown` returned while a request was still being answered"
                );
                "while `shutdown` was waiting for a request in flight"
            } else {
                held.add_permits(1);
                if timeout(Duration::from_secs(60), &mut shutdown).await.is_err() {
                    panic!(
                        "the request in flight when shutdown began was let finish, but a \
                         minute later `shutdown` had still not returned"
                    );
                }
                "after `shutdown` had returned"
            };
            let late = Client::connect_with_queued(
                &server,
                vec![ClientMessage::Request(Request { id: 8, path: "/late.txt".into() })],
            );
            kata_support::settle().await;
            let left = late.server_handles();
            sleep(WORK * 2).await;
            let sent = late.received.lock().expect("log lock").clone();
            assert!(
                sent.is_empty(),
                "a connection was handed to `serve` {when} (the accept loop and the shutdown \
                 race), and the server sent it {sent:?}: once shutdown has begun nothing goes \
                 out on a connection served from then on, no answer and no heartbeat (not even \
                 a first one sent as soon as it is served); it closes at once"
            );
            assert!(
                late.response(8).is_none(),
                "a connection was handed to `serve` {when} (the accept loop and the shutdown \
                 race), with one request queued, and the server answered it: once shutdown has \
                 begun, no new request is started, also on a connection served from then on. \
                 Such a connection must hear of the shutdown from the start"
            );
            assert!(
                left == 0 && late.is_closed(),
                "a connection was handed to `serve` {when}; once every task that could run had \
                 run, {left} task(s) of it were still running ({} heartbeat(s) sent to it since), \
                 and {:?} later it was {}: a connection served after shutdown began must close \
                 at once",
                late.heartbeats(),
                WORK * 2,
                if late.is_closed() { "closed" } else { "still open" }
            );
            if while_waiting {
                held.add_permits(1);
                if timeout(Duration::from_secs(60), &mut shutdown).await.is_err() {
                    panic!(
                        "a connection was handed to `serve` {when}, and a minute after the \
                         request in flight was let finish `shutdown` had still not returned"
                    );
                }
                assert!(
                    busy.response(7).is_some(),
                    "shutdown returned, but the request in flight when it began was never \
                     answered"
                );
            }
        }
    }

    /// A client hangs up (it drops its end) without breaking the protocol: its connection
    /// closes, heartbeat included, and the request it sent before hanging up is still answered.
    async fn a_hang_up_closes_that_connection() {
        let server = Server::new(SlowApp::new(), HEARTBEAT);
        let Client {
            requests,
            received,
            reader,
            outgoing,
        } = Client::connect(&server);
        let other = Client::connect(&server);
        requests
            .send(ClientMessage::Request(Request {
                id: 3,
                path: "/last.txt".into(),
            }))
            .await
            .expect("the connection's request channel has room");
        drop(requests);
        sleep(Duration::from_secs(10)).await;
        let heartbeats = received
            .lock()
            .expect("log lock")
            .iter()
            .filter(|m| matches!(m, ServerMessage::Heartbeat))
            .count();
        let answered = received
            .lock()
            .expect("log lock")
            .iter()
            .any(|m| matches!(m, ServerMessage::Response { id: 3, .. }));
        assert!(
            answered,
            "the request a client sent just before hanging up was never answered"
        );
        let still_running = outgoing.strong_count();
        assert!(
            reader.is_finished(),
            "10 s after the client hung up, its connection is still open ({heartbeats} \
             heartbeats sent since; {still_running} of its tasks still hold the connection). {}",
            if still_running >= 2 {
                "Its request handler never ended: it did not notice the hang-up. `recv()` \
                 returning `None` means the client hung up; in a `select!`, a branch whose \
                 pattern (`Some(message)`) does not match is disabled and the `select!` goes on \
                 waiting on the other branches"
            } else {
                "Its request handler has ended, but the heartbeat has not: when a connection's \
                 handler ends, for any reason, the connection is over and its heartbeat must \
                 stop too"
            }
        );
        assert!(
            !server.is_shutting_down() && !other.is_closed(),
            "one client hung up, and that closed another connection or began a shutdown"
        );
        shut_down(&server, "after one client hung up").await;
    }

    /// The process gives shutdown a hard deadline, so the `shutdown` future itself may be
    /// dropped at any point. Once it has started, every connection must still wind down, and the
    /// request in flight must still be answered.
    async fn an_interrupted_shutdown_still_winds_down() {
        assert_cancel_safe(
            Rig::new,
            |rig: Rig| async move {
                sleep(WORK / 5).await;
                rig.server.shutdown().await;
            },
            |rig, outcome| async move {
                let started = rig.server.is_shutting_down();
                if let Outcome::Completed(()) = outcome {
                    if !started {
                        return Err("shutdown returned, but the server is not shutting down".into());
                    }
                }
                sleep(Duration::from_secs(60)).await;
                let answered = rig.busy.response(7).is_some();
                let verdict = if !answered {
                    Err("the request in flight when shutdown began was never answered".to_owned())
                } else if started && !(rig.busy.is_closed() && rig.idle.is_closed()) {
                    Err(
                        format!(
                            "shutdown began (and its `shutdown` future was dropped), but a minute \
                             later {} task(s) of the busy connection and {} of the idle one were \
                             still running: once the server's token is cancelled, every task of \
                             every connection must stop on its own, with no more help from the \
                             dropped `shutdown` future",
                            rig.busy.server_handles(),
                            rig.idle.server_handles()
                        ),
                    )
                } else {
                    Ok(())
                };
                if !started {
                    shut_down(&rig.server, "cleaning up after the explorer").await;
                }
                verdict
            },
        )
        .await;
    }

    /// `shutdown` is called again once shutdown has begun: by `main`, waiting for the wind-down
    /// after the signal handler gave up on its own `shutdown` at a deadline (that future
    /// dropped), or by a second caller while the first still waits. Every call keeps the
    /// promises, not only the first: it returns only once the request in flight is answered
    /// (however long that takes) and every connection is closed. Also with nothing in flight,
    /// after a first `shutdown` polled once and dropped: the second returns with every idle
    /// connection closed.
    async fn every_call_to_shutdown_waits_for_the_wind_down() {
        for first_dropped in [true, false] {
            let app = SlowApp::new();
            let held = app.held.clone();
            let server = Server::new(app, HEARTBEAT);
            let busy = Client::connect(&server);
            let idle = Client::connect(&server);
            busy.request(7, "/held/export.csv").await;
            sleep(WORK / 5).await;
            let mut first = Some(Box::pin(server.shutdown()));
            if let Some(first) = first.as_mut() {
                assert!(
                    timeout(Duration::from_secs(1), first).await.is_err(),
                    "`shutdown` returned while a request was still being answered"
                );
            }
            let how = if first_dropped {
                first = None;
                "a first `shutdown` was given 1 s and then dropped (a deadline), and `shutdown` \
                 was called again"
            } else {
                "a first `shutdown` was given 1 s and then given up on (kept, not polled again \
                 until the second returned), and `shutdown` was called again"
            };
            let second = server.shutdown();
            tokio::pin!(second);
            let waited = Duration::from_secs(10);
            if timeout(waited, &mut second).await.is_ok() {
                panic!(
                    "{how} while a request was being answered: the second call returned at once \
                     (the request answered: {}, {} connection task(s) still running), while the \
                     application had not finished the request yet. Every call to `shutdown` \
                     returns only once the request in flight is answered and every connection \
                     is closed, not only the first",
                    busy.response(7).is_some(),
                    busy.server_handles() + idle.server_handles()
                );
            }
            held.add_permits(1);
            if timeout(Duration::from_secs(60), &mut second).await.is_err() {
                let left = busy.server_handles() + idle.server_handles();
                panic!(
                    "{how}; the request in flight was let finish, but a minute later the second \
                     `shutdown` had still not returned (the request answered: {}, {left} \
                     connection task(s) still running)",
                    busy.response(7).is_some()
                );
            }
            let left = busy.server_handles() + idle.server_handles();
            assert!(
                busy.response(7).is_some() && left == 0,
                "{how}: the second call returned with the request in flight answered: {}, and \
                 {left} connection task(s) still running (expected the answer sent and none)",
                busy.response(7).is_some()
            );
            if let Some(first) = first
                && timeout(Duration::from_secs(60), first).await.is_err()
            {
                panic!(
                    "{how}: the second call returned, but the first, polled again, was still \
                     waiting a minute later"
                );
            }
        }

        // Nothing in flight, and an hour between heartbeats: the first `shutdown` is polled once
        // (it begins) and dropped; the second must still wait until each idle connection closed.
        let server = Server::new(SlowApp::new(), Duration::from_secs(3600));
        let clients: Vec<Client> = (0..3).map(|_| Client::connect(&server)).collect();
        sleep(Duration::from_millis(10)).await;
        let mut first = task::spawn(server.shutdown());
        let _ = first.poll();
        drop(first);
        let began = tokio::time::Instant::now();
        if timeout(Duration::from_secs(60), server.shutdown()).await.is_err() {
            panic!(
                "three idle connections; a first `shutdown` was polled once and dropped, and a \
                 second `shutdown` had not returned a minute later"
            );
        }
        let left: usize = clients.iter().map(Client::server_handles).sum();
        assert!(
            left == 0,
            "three idle connections; a first `shutdown` was polled once and dropped, and a second \
             `shutdown` returned after {:?} with {left} connection task(s) still running: every \
             call to `shutdown` returns only once every connection is closed",
            began.elapsed()
        );
    }

    /// A heartbeat falls due in the very instant the connection ends (shutdown begins, or the
    /// handler, running late, answers a request and sends a `ProtocolError` in that instant): the
    /// heartbeat task wakes to both, and must not send a beat once the connection is over. Both
    /// orders: the end comes before the heartbeat task runs in that instant, or after it ran once
    /// or a few times.
    async fn no_heartbeat_once_the_connection_is_over_even_when_one_falls_due_then() {
        use tokio::time::{Instant, sleep_until};
        let raw = |server: &Server<SlowApp>| {
            let (requests, incoming) = mpsc::channel(8);
            let (outgoing, from_server) = mpsc::unbounded_channel();
            server.serve(Connection { incoming, outgoing });
            (requests, from_server)
        };
        // Whether the test registers its wake-up early or just before: it changes which of the
        // tasks woken in the same instant runs first.
        for registered_late in [false, true] {
            let start = Instant::now();
            let server = Server::new(SlowApp::new(), HEARTBEAT);
            let (_requests, mut from_server) = raw(&server);
            if registered_late {
                sleep_until(start + HEARTBEAT * 5 / 2).await;
            }
            sleep_until(start + HEARTBEAT * 3).await;
            // Everything sent before shutdown began.
            while from_server.try_recv().is_ok() {}
            shut_down(&server, "one idle connection, at the instant a heartbeat falls due").await;
            let mut after = Vec::new();
            while let Ok(message) = from_server.try_recv() {
                after.push(message);
            }
            assert!(
                !after.contains(&ServerMessage::Heartbeat),
                "a heartbeat every {HEARTBEAT:?}, and shutdown began at 3 s, the very instant a \
                 heartbeat fell due; after it began the server still sent {after:?} (expected no \
                 heartbeat): a shutdown stops the heartbeat at once, also when a beat is due in \
                 that same instant"
            );

            // A request taken at 2.45 s (its answer is due at 2.95 s), and garbage queued behind
            // it. The runtime is busy from 2.9 s to 3 s (the clock jumps while no task runs):
            // when it is free again, the handler's answer and the beat are both due, and the
            // handler answers and reads the garbage before the heartbeat task gets its turn.
            let start = Instant::now();
            let server = Server::new(SlowApp::new(), HEARTBEAT);
            let (requests, mut from_server) = raw(&server);
            sleep_until(start + HEARTBEAT * 3 - HEARTBEAT / 20 - WORK).await;
            let request = Request { id: 1, path: "/index.html".into() };
            requests.try_send(ClientMessage::Request(request)).expect("room for a request");
            requests.try_send(ClientMessage::Malformed("GARBAGE".into())).expect("room");
            sleep_until(start + HEARTBEAT * 3 - HEARTBEAT / 10).await;
            tokio::time::advance(HEARTBEAT / 10).await;
            let mut seen = Vec::new();
            let closed = timeout(Duration::from_secs(10), async {
                while let Some(message) = from_server.recv().await {
                    seen.push(message);
                }
            })
            .await;
            let error = seen.iter().position(|m| matches!(m, ServerMessage::ProtocolError(_)));
            let Some(error) = error else {
                panic!("garbage after a request, and the server sent {seen:?}: no ProtocolError");
            };
            assert!(
                error + 1 == seen.len(),
                "a heartbeat every {HEARTBEAT:?}; a request due to be answered at 2.95 s with \
                 garbage queued behind it, and the runtime busy from 2.9 s until 3 s, the very \
                 instant a beat fell due, so that the handler ran first and tore the connection \
                 down while the beat was due: the server sent {seen:?}, something after the \
                 ProtocolError (expected nothing): a torn-down connection stops its heartbeat \
                 at once, also when a beat is due in that same instant"
            );
            assert!(closed.is_ok(), "the connection was not closed 10 s after the garbage");
            shut_down(&server, "no connection left").await;
        }

        // The other order: in that instant the heartbeat task runs first, once or a few times
        // (the test hands the runtime `turns` turns, each letting every ready task run once), and
        // only then does the connection end: shutdown begins, or a request held until then is
        // let finish with garbage queued behind it, so that the handler answers and tears the
        // connection down. A beat the heartbeat has begun on goes out before the end, or not at
        // all: nothing after it.
        for turns in 1..=3 {
            for teardown in [false, true] {
                let start = Instant::now();
                let app = SlowApp::new();
                let held = app.held.clone();
                let server = Server::new(app, HEARTBEAT);
                let (requests, mut from_server) = raw(&server);
                if teardown {
                    sleep_until(start + HEARTBEAT * 5 / 2).await;
                    let request = Request { id: 1, path: "/held/report.pdf".into() };
                    requests.try_send(ClientMessage::Request(request)).expect("room for a request");
                    requests.try_send(ClientMessage::Malformed("GARBAGE".into())).expect("room");
                }
                sleep_until(start + HEARTBEAT * 3).await;
                for _ in 0..turns {
                    tokio::task::yield_now().await;
                }
                let mut before = Vec::new();
                while let Ok(message) = from_server.try_recv() {
                    before.push(message);
                }
                let (end, after) = if teardown {
                    held.add_permits(1);
                    let mut seen = Vec::new();
                    let closed = timeout(Duration::from_secs(10), async {
                        while let Some(message) = from_server.recv().await {
                            seen.push(message);
                        }
                    })
                    .await;
                    assert!(closed.is_ok(), "the connection was not closed 10 s after the garbage");
                    let error = seen.iter().position(|m| matches!(m, ServerMessage::ProtocolError(_)));
                    let Some(error) = error else {
                        panic!("garbage after a request, and the server sent {seen:?}: no ProtocolError");
                    };
                    let after = seen.split_off(error + 1);
                    before.extend(seen);
                    ("the request was let finish and the handler answered it and sent the \
                      ProtocolError for the garbage queued behind it", after)
                } else {
                    shut_down(&server, "one idle connection, at the instant a heartbeat falls due")
                        .await;
                    let mut after = Vec::new();
                    while let Ok(message) = from_server.try_recv() {
                        after.push(message);
                    }
                    ("shutdown began", after)
                };
                assert!(
                    after.is_empty(),
                    "a heartbeat every {HEARTBEAT:?}; at 3 s, the very instant a beat fell due, \
                     the connection's tasks had {turns} turn(s) to run, and then {end}: before \
                     that the server sent {before:?}, and after it {after:?} (expected nothing \
                     after it). A torn-down or shut-down connection sends no heartbeat from the \
                     moment it ends, also when the heartbeat had already begun on a beat due in \
                     that same instant: that beat goes out before the end, or not at all"
                );
                shut_down(&server, "no connection left").await;
            }
        }
    }

    /// Shutdown begins in the very instant a beat falls due, whatever the connection is doing
    /// then: idle; taking a request that arrives in that instant; answering one (held
    /// unfinished); or sending an answer that became ready in that instant. The runtime was busy
    /// until then (the clock jumped while no task ran), so every task of the connection wakes to
    /// the due beat, and the test body, the runtime's main future, runs first. Shutdown begins
    /// before any task of the connection runs, or after they had one, two or three turns. No
    /// heartbeat goes out once shutdown has begun (one the heartbeat had begun on goes out
    /// before), the answer owed is sent, and the request that arrived with the shutdown is not
    /// started.
    async fn no_heartbeat_once_shutdown_began_whatever_the_connection_was_doing() {
        use tokio::time::{Instant, sleep_until};
        let states = [
            "idle",
            "taking a request that arrived in that instant",
            "answering a request",
            "sending an answer that became ready in that instant",
        ];
        for (state, what) in states.iter().enumerate() {
            for turns in 0..=3 {
                let start = Instant::now();
                let app = SlowApp::new();
                let held = app.held.clone();
                let server = Server::new(app, HEARTBEAT);
                let (requests, incoming) = mpsc::channel(8);
                let (outgoing, mut from_server) = mpsc::unbounded_channel();
                server.serve(Connection { incoming, outgoing });
                let request = |id: u64, path: &str| {
                    let request = Request { id, path: path.to_owned() };
                    requests.try_send(ClientMessage::Request(request)).expect("room for a request");
                };
                if state >= 2 {
                    sleep_until(start + HEARTBEAT * 5 / 2).await;
                    request(1, "/held/export.csv");
                }
                // Busy from 2.9 s until 3 s, the instant a beat falls due: no task runs while the
                // clock jumps, and then this body runs first, the beat's timer having fired.
                sleep_until(start + HEARTBEAT * 3 - HEARTBEAT / 10).await;
                tokio::time::advance(HEARTBEAT / 10).await;
                for _ in 0..turns {
                    tokio::task::yield_now().await;
                }
                match state {
                    1 => request(2, "/arrived.txt"),
                    3 => held.add_permits(1),
                    _ => {}
                }
                let mut before = Vec::new();
                while let Ok(message) = from_server.try_recv() {
                    before.push(message);
                }
                // No `.await` between the look at what was sent and the first poll of `shutdown`.
                let shutdown = server.shutdown();
                tokio::pin!(shutdown);
                if state == 2 {
                    let watched = HEARTBEAT * 5 / 2;
                    if timeout(watched, &mut shutdown).await.is_ok() {
                        panic!(
                            "shutdown began at 3 s while request 1 was being answered, and \
                             `shutdown` returned before the application had finished it"
                        );
                    }
                    held.add_permits(1);
                }
                if timeout(Duration::from_secs(60), &mut shutdown).await.is_err() {
                    panic!(
                        "a heartbeat every {HEARTBEAT:?}, shutdown began at 3 s with the \
                         connection {what}; a minute later `shutdown` had not returned"
                    );
                }
                let mut after = Vec::new();
                while let Ok(message) = from_server.try_recv() {
                    after.push(message);
                }
                let setting = format!(
                    "a heartbeat every {HEARTBEAT:?}; the runtime was busy until 3 s, the very \
                     instant a beat fell due, the connection {what}, and shutdown began when its \
                     tasks had had {turns} turn(s) in that instant: before that the server sent \
                     {before:?}, and once shutdown had begun {after:?}"
                );
                assert!(
                    !after.contains(&ServerMessage::Heartbeat),
                    "{setting}: a heartbeat after shutdown began (expected none). A shutdown \
                     stops the heartbeat at once, also when a beat is due in that same instant, \
                     whatever the connection is doing: a beat the heartbeat has begun on goes out \
                     before the shutdown, or not at all"
                );
                let answered = |id: u64| {
                    before
                        .iter()
                        .chain(&after)
                        .any(|m| matches!(m, ServerMessage::Response { id: got, .. } if *got == id))
                };
                assert!(
                    state < 2 || answered(1),
                    "{setting}: the request in flight when shutdown began was never answered"
                );
                assert!(
                    !answered(2),
                    "{setting}: the request that arrived in the instant shutdown began was \
                     answered; once shutdown has begun, no new request is started"
                );
            }
        }
    }

    /// "None is too long to keep", to the far end of the clock: with a heartbeat every ten
    /// thousand years, a million years, or 146 million years (as far as the paused clock goes),
    /// a connection with a request held unfinished has had a beat once the period is up (the
    /// clock jumps there at once; a beat at tokio's far future, about 30 years, counts too).
    /// A server that keeps no heartbeat for periods over some bound, however far, fails here.
    async fn a_heartbeat_of_any_period_comes_once_the_period_is_up() {
        const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
        for (period, name) in [
            (10_000 * YEAR, "ten thousand years"),
            (1_000_000 * YEAR, "million years"),
            (kata_support::time::FAR_END, "146 million years"),
        ] {
            let app = SlowApp::new();
            let held = app.held.clone();
            let server = Server::new(app, period);
            let (requests, incoming) = mpsc::channel(8);
            let (outgoing, mut from_server) = mpsc::unbounded_channel();
            server.serve(Connection { incoming, outgoing });
            let request = Request { id: 1, path: "/held/export.csv".into() };
            requests.try_send(ClientMessage::Request(request)).expect("room for a request");
            kata_support::settle().await;
            let until = period + Duration::from_secs(1);
            tokio::time::advance(until).await;
            kata_support::settle().await;
            let (mut beats, mut answered) = (0usize, false);
            while let Ok(message) = from_server.try_recv() {
                match message {
                    ServerMessage::Heartbeat => beats += 1,
                    ServerMessage::Response { id: 1, .. } => answered = true,
                    _ => {}
                }
            }
            assert!(
                beats >= 1 && !answered,
                "a heartbeat every {name}, a request held unfinished: {} into the connection \
                 the client had got {beats} heartbeat(s) (answered: {answered}); expected at \
                 least one once the period was up, and the request still being answered: no \
                 period is too long to keep",
                kata_support::time::spoken(until)
            );
            held.add_permits(1);
            let shutdown = server.shutdown();
            tokio::pin!(shutdown);
            let ended = timeout(Duration::from_secs(1), &mut shutdown).await.is_ok();
            assert!(ended, "a heartbeat every {name}: `shutdown` did not return within 1 s");
            drop(requests);
        }
    }
}
