//! Hidden tests for kata 19: every audit record must be in the store once `shutdown` returns, even
//! though `main` drops the runtime (cancelling every task on it) right after.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use audit_batcher_shutdown::{
    AuditClosed, AuditLog, AuditRecord, AuditService, AuditSink, FLUSH_EVERY, MAX_BATCH,
    WRITE_LATENCY,
};
use kata_support::runtime::{self, SEEDS};
use kata_support::time::spoken;
use kata_support::{check_property, hidden_test};
use proptest::prelude::*;
use tokio::sync::Notify;

/// Long enough, in virtual time, for any correct shutdown; a shutdown still pending after this
/// is waiting for something that will never happen.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(600);

/// How long the property waits for a shutdown: well past the writes it may take.
const PROPERTY_LIMIT: Duration = Duration::from_secs(10);

/// How many records the queue between the handlers and the flusher holds (the exercise's
/// private `QUEUE_CAPACITY`, also stated in the README).
const QUEUE_CAPACITY: usize = 1024;

/// Why a shutdown that never returns hangs.
const HANGS: &str = "shutdown waits for something that never happens. Was the flusher told to \
                     stop? A `TaskTracker`'s `wait` only returns once the tracker is closed \
                     (`close()`) and its tasks have exited";

fn record(id: u64) -> AuditRecord {
    AuditRecord {
        id,
        actor: format!("operator-{}", id % 3),
        action: format!("refund order {}", id.wrapping_add(9000)),
    }
}

fn records(range: std::ops::Range<u64>) -> Vec<AuditRecord> {
    range.map(record).collect()
}

/// A paused current-thread runtime, like the one `main` runs on (but with virtual time).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("failed to build a runtime")
}

/// Compares the store with what was recorded, naming the missing ids as ranges.
fn check_store(sink: &AuditSink, expected: &[AuditRecord], when: &str) -> Result<(), String> {
    let stored = sink.records();
    if stored == expected {
        return Ok(());
    }
    let missing: Vec<u64> = expected.iter().filter(|r| !stored.contains(r)).map(|r| r.id).collect();
    if missing.is_empty() {
        return Err(format!(
            "{when}, the store holds {} records for {} recorded: some were written twice or out \
             of order",
            stored.len(),
            expected.len()
        ));
    }
    Err(format!(
        "{when}, the compliance store holds {} of {} audit records; missing ids {}",
        expected.len() - missing.len(),
        expected.len(),
        ranges(&missing)
    ))
}

fn ranges(ids: &[u64]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let start = ids[i];
        let mut end = start;
        while i + 1 < ids.len() && end.checked_add(1) == Some(ids[i + 1]) {
            i += 1;
            end = ids[i];
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}..={end}") });
        i += 1;
    }
    parts.join(", ")
}

/// Tasks alive on the test's runtime (those of the test itself included).
fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

/// The ids of `records`, as ranges.
fn ids(records: &[AuditRecord]) -> String {
    ranges(&records.iter().map(|r| r.id).collect::<Vec<_>>())
}

/// Watches the store every virtual millisecond, like an auditor tailing the append-only log, and
/// returns what it saw when two writes were in progress at once: appends that land less than
/// half a write's latency apart, or more than one batch landing in the same millisecond. Stops
/// watching after `AUDITOR_WATCHES` (a right fix is done by then; a slow one is judged elsewhere),
/// or when aborted.
fn watch_appends(sink: AuditSink) -> tokio::task::JoinHandle<Option<String>> {
    tokio::spawn(async move {
        let mut seen = 0;
        let mut last: Option<(tokio::time::Instant, Vec<AuditRecord>)> = None;
        let start = tokio::time::Instant::now();
        while start.elapsed() < AUDITOR_WATCHES {
            let stored = sink.records();
            if stored.len() > seen {
                let now = tokio::time::Instant::now();
                let landed = stored[seen..].to_vec();
                if landed.len() > MAX_BATCH {
                    return Some(format!(
                        "{} records (ids {}) landed in the store within the same millisecond, \
                         more than one batch of {MAX_BATCH}: two writes were in progress at once \
                         (or one write held more than a batch)",
                        landed.len(),
                        ids(&landed)
                    ));
                }
                if let Some((at, before)) = &last {
                    let gap = now - *at;
                    if gap < WRITE_LATENCY / 2 {
                        return Some(format!(
                            "the store received ids {} and, only {gap:?} later, ids {}, while one \
                             write takes {WRITE_LATENCY:?}: two writes were in progress at once",
                            ids(before),
                            ids(&landed)
                        ));
                    }
                }
                seen = stored.len();
                last = Some((now, landed));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        None
    })
}

/// How long the auditor of `watch_appends` tails the store.
const AUDITOR_WATCHES: Duration = Duration::from_millis(400);

/// Notified when a hand-polled `record` call is woken.
#[derive(Default)]
struct Woken {
    notify: Notify,
}

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.notify.notify_one();
    }
}

/// One request handler's `record` call, polled by hand: a handler on a busy worker thread, which
/// runs again only some time after it was woken (on a multi-threaded runtime, its thread may be
/// busy with other requests).
struct BusyHandler {
    call: Pin<Box<dyn Future<Output = Result<(), AuditClosed>> + Send>>,
    woken: Arc<Woken>,
    id: u64,
}

impl BusyHandler {
    fn new(log: AuditLog, id: u64) -> Self {
        // Unconstrained: polled by hand, the call must not run out of the test task's
        // cooperative budget and look as if it waited for room.
        let call =
            Box::pin(tokio::task::unconstrained(async move { log.record(record(id)).await }));
        BusyHandler { call, woken: Arc::default(), id }
    }

    fn poll(&mut self) -> Poll<Result<(), AuditClosed>> {
        let waker = Waker::from(self.woken.clone());
        self.call.as_mut().poll(&mut Context::from_waker(&waker))
    }

    /// Runs the call to the end, polling it `lag` after each wake-up.
    async fn finish(mut self, lag: Duration) -> Result<(), AuditClosed> {
        loop {
            if let Poll::Ready(result) = self.poll() {
                return result;
            }
            self.woken.notify.notified().await;
            tokio::time::sleep(lag).await;
        }
    }
}

/// One run of `a_record_waiting_for_room_at_shutdown_is_written_or_refused`: a handler's `record`
/// waits for room in a full queue as shutdown begins, and its worker runs it again `lag` after it
/// is woken.
async fn busy_handler_at_shutdown(lag: Duration) {
    let sink = AuditSink::new();
    let service = AuditService::start(sink.clone());
    let log = service.log();
    tokio::task::yield_now().await;
    let mut acked = Vec::new();
    for id in 0..MAX_BATCH as u64 {
        log.record(record(id)).await.expect("the audit trail is running");
        acked.push(record(id));
    }
    // The flusher takes the full batch and spends 20 ms writing it; the queue fills.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let mut parked = None;
    for id in MAX_BATCH as u64..20_000 {
        let mut call = BusyHandler::new(log.clone(), id);
        match call.poll() {
            Poll::Ready(Ok(())) => acked.push(record(id)),
            Poll::Ready(Err(AuditClosed)) => {
                panic!("record {id} was refused before shutdown")
            }
            Poll::Pending => {
                parked = Some(call);
                break;
            }
        }
    }
    drop(log);
    // Without a bounded queue no `record` ever waits for room: nothing to check here.
    let Some(parked) = parked else { return };
    let parked_id = parked.id;
    let ((done, stored), outcome) = tokio::join!(
        async {
            let done = tokio::time::timeout(SHUTDOWN_LIMIT, service.shutdown()).await;
            (done, sink.records())
        },
        async { tokio::time::timeout(SHUTDOWN_LIMIT, parked.finish(lag)).await.ok() }
    );
    assert!(
        done.is_ok(),
        "shutdown() had not returned after {} s of virtual time: {HANGS}",
        SHUTDOWN_LIMIT.as_secs()
    );
    let waiting = format!(
        "a handler's `record` (id {parked_id}) was waiting for room in the full queue \
         when shutdown began, on a busy worker that ran it again {} ms after it was woken",
        lag.as_millis()
    );
    let Some(outcome) = outcome else {
        panic!(
            "{waiting}; {} s later it had still neither been accepted nor refused",
            SHUTDOWN_LIMIT.as_secs()
        );
    };
    let stored_ids: HashSet<u64> = stored.iter().map(|r| r.id).collect();
    if outcome.is_ok() {
        assert!(
            stored_ids.contains(&parked_id),
            "{waiting}. It returned Ok(()), but the record was not in the store when \
             shutdown() returned: acknowledged, and never written. A record must be \
             written before shutdown returns, or refused with Err(AuditClosed); on a \
             multi-threaded runtime a handler's thread can be this late"
        );
        acked.push(record(parked_id));
    }
    let missing: Vec<u64> =
        acked.iter().map(|r| r.id).filter(|id| !stored_ids.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{waiting}; when shutdown() returned the store held {} of the {} acknowledged \
         records; missing ids {}",
        acked.len() - missing.len(),
        acked.len(),
        ranges(&missing)
    );
    assert!(
        stored == acked,
        "{waiting}; the store holds the acknowledged records out of order (or twice): \
         ids {}",
        ids(&stored)
    );
}

/// One run of `shutdown_stops_a_handler_recording_into_a_full_queue`: `handlers` request handlers
/// keep their own `AuditLog`s and record back to back, starting `lead_ms` before shutdown.
async fn handlers_recording_into_a_full_queue(handlers: u64, lead_ms: u64) {
    let sink = AuditSink::new();
    let service = AuditService::start(sink.clone());
    let acked = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..handlers)
        .map(|h| {
            let (log, acked) = (service.log(), acked.clone());
            tokio::spawn(async move {
                // Far more than shutdown leaves room for; a fix that never makes a handler wait
                // for room would otherwise keep this loop (and the clock) going for ever.
                for id in h * 100_000..h * 100_000 + 20_000 / handlers {
                    if log.record(record(id)).await.is_err() {
                        return;
                    }
                    acked.lock().unwrap().push(record(id));
                }
                // Still holding its log, as a handler on a slow connection would.
                tokio::time::sleep(SHUTDOWN_LIMIT * 2).await;
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(lead_ms)).await;
    let left = acked.lock().unwrap().len().saturating_sub(sink.records().len());
    // The records left, one full queue, and one record each handler may have in flight.
    let writes = (left + QUEUE_CAPACITY + handlers as usize).div_ceil(MAX_BATCH) as u32 + 2;
    let limit = WRITE_LATENCY * writes;
    let who = if handlers == 1 {
        "a handler holding its own AuditLog".to_owned()
    } else {
        format!("{handlers} handlers, each holding its own AuditLog,")
    };
    let setting = format!(
        "{who} recorded back to back for {lead_ms} ms before shutdown began, until refused; {} \
         records were accepted by then, {left} not yet in the store (the queue holds \
         {QUEUE_CAPACITY})",
        acked.lock().unwrap().len()
    );
    let done = tokio::time::timeout(limit, service.shutdown()).await;
    if done.is_err() {
        for task in &tasks {
            task.abort();
        }
        panic!(
            "{setting}. shutdown() had not returned after {limit:?} of virtual time, the time to \
             write those and one more full queue in batches of {MAX_BATCH}; meanwhile the store \
             grew to {} records. Shutdown must stop the flusher however full the queue is when it \
             begins, and however many handlers still record eagerly",
            sink.records().len()
        );
    }
    let stored = sink.records();
    let mut still_accepted = 0;
    for task in tasks {
        if tokio::time::timeout(Duration::from_secs(1), task).await.is_err() {
            still_accepted += 1;
        }
    }
    let acked = acked.lock().unwrap().clone();
    let stored_ids: HashSet<u64> = stored.iter().map(|r| r.id).collect();
    let missing: Vec<u64> =
        acked.iter().map(|r| r.id).filter(|id| !stored_ids.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{setting}. When shutdown() returned, the store held {} of the {} records the handlers \
         got Ok(()) for; missing ids {}",
        acked.len() - missing.len(),
        acked.len(),
        ranges(&missing)
    );
    assert!(
        still_accepted == 0,
        "{setting}. A second after shutdown() returned, {still_accepted} handler(s) were still \
         having their `record` calls accepted (or still waiting): they must be refused with \
         Err(AuditClosed) once the audit trail has shut down"
    );
    assert!(
        stored == acked,
        "{setting}; the store holds the acknowledged records out of order (or twice): ids {}",
        ids(&stored)
    );
}

/// A request handler that holds its own `AuditLog` while shutdown runs.
#[derive(Debug, Clone, Copy)]
enum Handler {
    /// Holds the log and records nothing (a slow connection): the flusher sits idle.
    Idle,
    /// Records one record every so many milliseconds until it is refused.
    Every(u64),
    /// Records this many records back to back, without a pause, until it is refused.
    Burst(u64),
}

/// When shutdown comes: after a first burst of records, a pause (0: the flusher just gets a
/// turn), a second burst sent without a pause, and perhaps a handler holding its own log, which
/// has been running for `lead_ms` when shutdown begins (`None`: not yet at all; `Some(0)`: it
/// just got a turn).
#[derive(Debug, Clone, Copy)]
struct Scenario {
    first: u64,
    pause_ms: u64,
    second: u64,
    handler: Option<Handler>,
    lead_ms: Option<u64>,
}

fn handlers() -> impl Strategy<Value = Option<Handler>> {
    prop_oneof![
        Just(None),
        Just(Some(Handler::Idle)),
        (1u64..=30).prop_map(|every| Some(Handler::Every(every))),
        (3000u64..=6000).prop_map(|count| Some(Handler::Burst(count))),
    ]
}

fn scenarios() -> impl Strategy<Value = Scenario> {
    // A second burst of none at all leaves the flusher idle (parked, with no record to wake it)
    // when shutdown begins.
    let pause_ms = prop_oneof![Just(0u64), 1u64..=1500];
    let second = prop_oneof![Just(0u64), 1u64..=130];
    // A handler recording back to back for a while fills the queue before shutdown begins.
    let lead_ms = prop_oneof![Just(None), Just(Some(0u64)), (1u64..=50).prop_map(Some)];
    (0u64..=130, pause_ms, second, handlers(), lead_ms).prop_map(
        |(first, pause_ms, second, handler, lead_ms)| Scenario {
            first,
            pause_ms,
            second,
            handler,
            lead_ms: handler.and(lead_ms),
        },
    )
}

std::thread_local! {
    /// Panics seen on this thread, where the test's runtime runs the service's tasks too.
    static PANICS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts the panics on this thread from now on ([`panics_seen`]); each is still reported as
/// usual.
fn count_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.with(|seen| seen.set(seen.get() + 1));
            previous(info);
        }));
    });
}

/// How many panics [`count_panics`] has seen on this thread.
fn panics_seen() -> usize {
    PANICS.with(|seen| seen.get())
}

/// What a runtime-edge scenario lets go of last (see
/// [`nothing_panics_when_dropped_at_a_runtime_edge`]).
#[derive(Debug, Clone, Copy)]
enum Dropped {
    /// The service, never shut down (then the handler's `AuditLog`).
    Service,
    /// The handler's `AuditLog`, the last handle, after the service was dropped on the runtime.
    LastLog,
    /// A `shutdown` future polled once (the flusher told to stop), before it returned.
    ShutdownStarted,
    /// A `shutdown` future never polled.
    ShutdownUnpolled,
}

impl Dropped {
    const ALL: [Dropped; 4] =
        [Dropped::Service, Dropped::LastLog, Dropped::ShutdownStarted, Dropped::ShutdownUnpolled];

    fn describe(self) -> &'static str {
        match self {
            Dropped::Service => "the service, without shutdown(), then the handler's AuditLog",
            Dropped::LastLog => {
                "the handler's AuditLog, the last handle (the service was dropped on the runtime)"
            }
            Dropped::ShutdownStarted => "a shutdown() future polled once, before it returned",
            Dropped::ShutdownUnpolled => "a shutdown() future never polled",
        }
    }
}

/// A service with a handler's `AuditLog`, `held` records acknowledged (and a millisecond for the
/// flusher to take them), on the runtime the caller runs this on.
async fn service_with_records(sink: &AuditSink, held: u64) -> (AuditService, AuditLog) {
    let service = AuditService::start(sink.clone());
    let log = service.log();
    tokio::task::yield_now().await;
    for id in 0..held {
        log.record(record(id)).await.expect("the audit trail is running");
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    (service, log)
}

/// Prepares what `dropped` lets go of, on `rt` (the service, log and records made inside it).
fn hold(
    rt: &tokio::runtime::Runtime,
    sink: &AuditSink,
    held: u64,
    dropped: Dropped,
) -> Box<dyn std::any::Any> {
    let (service, log) = rt.block_on(service_with_records(sink, held));
    match dropped {
        // A tuple's fields drop in order: the service first, then the log.
        Dropped::Service => Box::new((service, log)),
        Dropped::LastLog => {
            rt.block_on(async move { drop(service) });
            Box::new(log)
        }
        Dropped::ShutdownStarted | Dropped::ShutdownUnpolled => {
            rt.block_on(async move { drop(log) });
            let mut shutdown: Pin<Box<dyn Future<Output = ()>>> = Box::pin(service.shutdown());
            if let Dropped::ShutdownStarted = dropped {
                rt.block_on(std::future::poll_fn(|cx| {
                    let _ = shutdown.as_mut().poll(cx);
                    Poll::Ready(())
                }));
            }
            Box::new(shutdown)
        }
    }
}

/// A task to spawn if its future is `Send` (`spawn_it` on `&SpawnIfSend`, autoref picking
/// [`SpawnSend`] when it applies); one that is not (a fix already failing
/// `shutdown_can_run_in_a_spawned_signal_handler`) is dropped at once instead, so that the tests
/// still build.
struct SpawnIfSend<F>(std::cell::Cell<Option<F>>);

trait SpawnSend {
    fn spawn_it(&self);
}

impl<F: Future<Output = ()> + Send + 'static> SpawnSend for SpawnIfSend<F> {
    fn spawn_it(&self) {
        if let Some(task) = self.0.take() {
            tokio::spawn(task);
        }
    }
}

#[allow(dead_code, reason = "picked only for a task that is not `Send`")]
trait DropInstead {
    fn spawn_it(&self);
}

impl<F> DropInstead for &SpawnIfSend<F> {
    fn spawn_it(&self) {
        drop(self.0.take());
    }
}

/// Prepares what `dropped` lets go of on `rt`, held by a task parked there (a shutdown future
/// polled by it once, or never).
fn hold_in_a_task(rt: &tokio::runtime::Runtime, sink: &AuditSink, held: u64, dropped: Dropped) {
    let (service, log) = rt.block_on(service_with_records(sink, held));
    rt.block_on(async move {
        match dropped {
            Dropped::Service => {
                (&SpawnIfSend(std::cell::Cell::new(Some(Parked(service, log))))).spawn_it();
            }
            Dropped::LastLog => {
                drop(service);
                (&SpawnIfSend(std::cell::Cell::new(Some(Parked(log, ()))))).spawn_it();
            }
            Dropped::ShutdownStarted => {
                drop(log);
                (&SpawnIfSend(std::cell::Cell::new(Some(service.shutdown())))).spawn_it();
            }
            Dropped::ShutdownUnpolled => {
                drop(log);
                let shutdown = Box::pin(service.shutdown());
                (&SpawnIfSend(std::cell::Cell::new(Some(Parked(shutdown, ()))))).spawn_it();
            }
        }
        tokio::task::yield_now().await;
    });
}

/// A task that holds what it is given and never finishes: parked until the runtime drops it.
/// (A struct, not an `async` block, so that whether it is `Send` is known where it is spawned.)
#[allow(dead_code, reason = "held only to be dropped with the task")]
struct Parked<A, B>(A, B);

impl<A, B> Future for Parked<A, B> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

/// Drops `value` and returns how many panics that took (caught, so that the test can say so).
fn panics_dropping<T>(value: T) -> usize {
    let before = panics_seen();
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(value)));
    panics_seen() - before
}

hidden_test! {
    /// Shutdown at any moment: with a batch held, a batch being written, records still queued,
    /// and a handler that keeps its `AuditLog` and records during and after shutdown. Every
    /// `record` that returned `Ok(())` is in the store, in the order recorded, when shutdown has
    /// returned; every `record` after that returns `Err(AuditClosed)`.
    fn every_acknowledged_record_is_stored_in_order() {
        check_property(40, scenarios(), |scenario| async move {
            let sink = AuditSink::new();
            let service = AuditService::start(sink.clone());
            let log = service.log();
            let acked = Arc::new(Mutex::new(Vec::new()));
            // The service has been up a moment before the first request: the flusher is waiting.
            tokio::task::yield_now().await;
            for id in 0..scenario.first {
                log.record(record(id)).await.map_err(|_| format!("record {id} was refused before shutdown"))?;
                acked.lock().unwrap().push(record(id));
            }
            if scenario.pause_ms == 0 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(scenario.pause_ms)).await;
            }
            for id in scenario.first..scenario.first + scenario.second {
                log.record(record(id)).await.map_err(|_| format!("record {id} was refused before shutdown"))?;
                acked.lock().unwrap().push(record(id));
            }
            // A request handler keeps its own `AuditLog`: idle, recording now and then, or
            // recording back to back; it records until it is refused.
            let handler = scenario.handler.map(|handler| {
                let (log, acked) = (log.clone(), acked.clone());
                tokio::spawn(async move {
                    let (count, every) = match handler {
                        Handler::Idle => {
                            // Holds its log past the end of shutdown, recording nothing.
                            tokio::time::sleep(SHUTDOWN_LIMIT * 2).await;
                            drop(log);
                            return;
                        }
                        Handler::Every(every) => (u64::MAX - 10_000, Some(every)),
                        Handler::Burst(count) => (count, None),
                    };
                    for id in 10_000..10_000 + count {
                        if log.record(record(id)).await.is_err() {
                            break;
                        }
                        acked.lock().unwrap().push(record(id));
                        if let Some(every) = every {
                            tokio::time::sleep(Duration::from_millis(every)).await;
                        }
                    }
                })
            });
            match scenario.lead_ms {
                None => {}
                Some(0) => tokio::task::yield_now().await,
                Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            }
            // What is left to write when shutdown begins: every acknowledged record not yet in
            // the store (a batch being written is not in it yet).
            let stored_at_start = sink.records().len();
            let left = acked.lock().unwrap().len().saturating_sub(stored_at_start);
            let describe_handler = || {
                let lead = match scenario.lead_ms {
                    None => "as shutdown began".to_owned(),
                    Some(0) => "just before shutdown began".to_owned(),
                    Some(ms) => format!("{ms} ms before shutdown began"),
                };
                let accepted = acked.lock().unwrap().iter().filter(|r| r.id >= 10_000).count();
                match scenario.handler {
                    None => "no handler was recording".to_owned(),
                    Some(Handler::Idle) => {
                        "a handler held an AuditLog but recorded nothing (the flusher was idle)"
                            .to_owned()
                    }
                    Some(Handler::Every(every)) => format!(
                        "a handler holding its own AuditLog started recording one record every \
                         {every} ms {lead}"
                    ),
                    Some(Handler::Burst(count)) => format!(
                        "a handler holding its own AuditLog started recording {count} records \
                         back to back {lead}, of which {accepted} were accepted (the queue holds \
                         {QUEUE_CAPACITY})"
                    ),
                }
            };
            let began = tokio::time::Instant::now();
            // Far beyond the time the writes left can take (checked below); a handler recording
            // all along would make a longer wait costly.
            tokio::time::timeout(PROPERTY_LIMIT, service.shutdown()).await.map_err(|_| {
                format!(
                    "shutdown() had not returned after {} s of virtual time; {}: the flusher \
                     was never stopped, or shutdown waits for something else that never \
                     happens. Shutdown must stop the flusher however full the queue is, while \
                     handlers still hold an AuditLog",
                    PROPERTY_LIMIT.as_secs(),
                    describe_handler()
                )
            })?;
            let took = began.elapsed();
            // The writes that are left, one more for a handler's record that slips in as
            // shutdown begins, and one for a batch already being written. A handler recording
            // back to back may fill the whole queue (1024 records) while the flusher is busy
            // writing as shutdown begins; those are acknowledged and must be written too.
            let slipped = match scenario.handler {
                Some(Handler::Burst(_)) => QUEUE_CAPACITY,
                _ => 0,
            };
            let writes = (left + slipped).div_ceil(MAX_BATCH) as u32 + 2;
            if took > WRITE_LATENCY * writes {
                let written = sink.records().len().saturating_sub(stored_at_start);
                let handler = describe_handler();
                return Err(format!(
                    "shutdown() took {took:?} of virtual time; {handler}. {left} acknowledged \
                     record(s) were not yet in the store when it began ({slipped} more may slip \
                     into the queue as it begins), which is at most {writes} writes of \
                     {WRITE_LATENCY:?} ({:?}) in batches of up to {MAX_BATCH}; meanwhile the \
                     store received {written} record(s), in {} writes' worth of time. Shutdown \
                     must return as soon as the records left are written, in full batches: it \
                     was late because it waited for something else (a pause, the next \
                     once-a-second flush, a handler's burst to end), or because the records left \
                     were written in more, smaller batches than needed",
                    WRITE_LATENCY * writes,
                    took.as_millis() / WRITE_LATENCY.as_millis()
                ));
            }
            let stored_at_return = sink.records();
            let after = log.record(record(99_999)).await;
            if after != Err(AuditClosed) {
                return Err(format!(
                    "after shutdown() returned, `record` on a handler's AuditLog answered {after:?}: \
                     the record is accepted but nothing will ever write it. It must be refused \
                     with Err(AuditClosed)"
                ));
            }
            if let Some(handler) = handler {
                // The handler is refused at its next record; give it the time to get there.
                let _ = tokio::time::timeout(Duration::from_secs(1), handler).await;
            }
            let acked = acked.lock().unwrap().clone();
            let missing: Vec<u64> =
                acked.iter().filter(|r| !stored_at_return.contains(r)).map(|r| r.id).collect();
            if !missing.is_empty() {
                return Err(format!(
                    "when shutdown() returned, the store held {} of the {} records whose `record` \
                     returned Ok(()); missing ids {}. An acknowledged record must be written \
                     before shutdown returns, or refused with Err(AuditClosed)",
                    acked.len() - missing.len(),
                    acked.len(),
                    ranges(&missing)
                ));
            }
            if stored_at_return != acked {
                let ids: Vec<u64> = stored_at_return.iter().map(|r| r.id).collect();
                return Err(format!(
                    "the store holds the acknowledged records out of order (or twice): ids {}; \
                     an audit trail is append-only, in the order recorded",
                    ranges(&ids)
                ));
            }
            Ok(())
        });
    }

    /// The deploy's signal handler runs in a spawned task on a multi-thread runtime
    /// (`tokio::spawn(async move { ctrl_c().await; service.shutdown().await })`), so the futures
    /// of `shutdown` and `run_then_shutdown` stay `Send`, as the original ones are, with records
    /// queued and a handler still holding its `AuditLog`.
    async fn shutdown_can_run_in_a_spawned_signal_handler() {
        let sink = AuditSink::new();
        let service = AuditService::start(sink.clone());
        let log = service.log();
        let expected = records(0..150);
        for r in expected.clone() {
            log.record(r).await.expect("the audit trail is running");
        }
        let shutdown = service.shutdown();
        let other = AuditService::start(AuditSink::new());
        let run = other.run_then_shutdown(records(0..3));
        let not_send: Vec<&str> = [
            (!kata_support::is_send!(shutdown)).then_some("`shutdown`'s future"),
            (!kata_support::is_send!(run)).then_some("`run_then_shutdown`'s future"),
        ]
        .into_iter()
        .flatten()
        .collect();
        assert!(
            not_send.is_empty(),
            "{} not `Send`, so the deploy can no longer shut the \
             service down from a signal handler it `tokio::spawn`s on its multi-thread runtime: \
             it holds something that is not `Send` across an `.await` (a `std` lock guard, an \
             `Rc`, a `RefCell` borrow). Expected every one of them `Send`, as the original ones are",
            match not_send.as_slice() {
                [one] => format!("{one} is"),
                _ => format!("{} are", not_send.join(" and ")),
            }
        );
        run.await;
        shutdown.await;
        if let Err(seen) = check_store(&sink, &expected, "when `shutdown` returned") {
            panic!("{seen}");
        }
        drop(log);
    }

    /// Nothing shuts down: full batches and the once-a-second flush reach the store, in order.
    async fn batches_records_while_the_service_runs() {
        let sink = AuditSink::new();
        let service = AuditService::start(sink.clone());
        let log = service.log();
        let expected = records(0..250);
        for r in expected.clone() {
            log.record(r).await.expect("the audit trail is running");
        }
        tokio::time::sleep(FLUSH_EVERY * 3).await;
        if let Err(seen) = check_store(&sink, &expected, "while the service runs") {
            panic!("{seen}: the flusher must write full batches and flush the rest every second");
        }
        drop(service);
    }

    /// A record is data, whatever its id or text: ids at the far ends (`0`, `u64::MAX`), the same
    /// id twice, an empty actor and action, an actor and action that read like a command
    /// (`shutdown`, `stop`, `__shutdown__`, ...), control characters, 64 KiB of text. Each is
    /// stored like any other, in a timed flush and in a full batch, and the service keeps running
    /// after it: nothing a handler records stops the audit trail, only `shutdown` does.
    async fn a_record_with_any_id_is_stored_like_any_other() {
        let blank = |id: u64| AuditRecord { id, actor: String::new(), action: String::new() };
        let mut odd =
            vec![record(u64::MAX), record(0), blank(u64::MAX), record(u64::MAX - 1), blank(0)];
        // Texts a stop signal hidden in a record would plausibly use, as actor and action.
        let commands = [
            "shutdown", "SHUTDOWN", "stop", "STOP", "close", "quit", "exit", "__shutdown__",
            "__stop__", "__audit_service_shutdown__", "<shutdown>", "\0", "\u{4}", "\u{1b}", "\n",
        ];
        let long = "x".repeat(64 * 1024);
        for (k, text) in commands.into_iter().chain([long.as_str()]).enumerate() {
            let id = [u64::MAX, 0, 7000 + k as u64][k % 3];
            odd.push(AuditRecord { id, actor: text.to_owned(), action: text.to_owned() });
        }
        let sink = AuditSink::new();
        let service = AuditService::start(sink.clone());
        let log = service.log();
        tokio::task::yield_now().await;
        let mut expected = Vec::new();
        // First alone, flushed by the timer; then spread through a full batch and a part batch,
        // with time for the flusher to take each one before the next arrives.
        let mut rounds = vec![odd.to_vec()];
        let mut mixed = records(1..MAX_BATCH as u64 + 40);
        let spacing = mixed.len() / odd.len();
        for (k, r) in odd.iter().enumerate() {
            mixed.insert(k * (spacing + 1), r.clone());
        }
        rounds.push(mixed);
        for (round, sent) in rounds.into_iter().enumerate() {
            for r in sent {
                let id = r.id;
                let answer = log.record(r.clone()).await;
                assert!(
                    answer.is_ok(),
                    "while the service ran (nobody had called shutdown), `record` of a record with \
                     id {id} answered {answer:?}, after {} record(s) with ids at the far ends (0, \
                     u64::MAX), or an empty actor, or an actor and action such as `shutdown`, \
                     `stop` or a control character had been accepted: a record is data, never a \
                     stop signal, and the audit trail runs until `shutdown`",
                    expected.iter().filter(|e| odd.contains(e)).count()
                );
                expected.push(r);
                if round == 1 {
                    tokio::task::yield_now().await;
                }
            }
            tokio::time::sleep(FLUSH_EVERY * 3).await;
            if let Err(seen) = check_store(&sink, &expected, "while the service ran") {
                panic!(
                    "{seen}. The records sent included ids at the far ends (0, u64::MAX), the \
                     same id twice, an empty actor, actors and actions such as `shutdown`, `stop` \
                     and control characters, and 64 KiB of text, and each `record` returned \
                     Ok(()): every one must be written like any other, however its id or text \
                     looks"
                );
            }
        }
        drop(log);
        let shutdown = tokio::time::timeout(SHUTDOWN_LIMIT, service.shutdown()).await;
        assert!(
            shutdown.is_ok(),
            "shutdown() had not returned after {} s of virtual time: {HANGS}",
            SHUTDOWN_LIMIT.as_secs()
        );
        if let Err(seen) = check_store(&sink, &expected, "when shutdown() returned") {
            panic!("{seen}");
        }
    }

    /// Nothing shuts down, and records trickle in, never a whole second apart: the once-a-second
    /// flush still writes each of them within two seconds of its `record` returning.
    async fn a_steady_trickle_is_flushed_every_second() {
        let lag_limit = FLUSH_EVERY * 2;
        let gap_patterns: [&[u64]; 4] = [&[500], &[999], &[300, 700, 950, 100], &[10, 990]];
        for gaps in gap_patterns {
            let sink = AuditSink::new();
            let service = AuditService::start(sink.clone());
            let log = service.log();
            let start = tokio::time::Instant::now();
            let mut recorded: Vec<(tokio::time::Instant, AuditRecord)> = Vec::new();
            let mut id = 0;
            while start.elapsed() < Duration::from_secs(6) {
                let stored = sink.records();
                if let Some((at, late)) =
                    recorded.iter().find(|(at, r)| at.elapsed() >= lag_limit && !stored.contains(r))
                {
                    panic!(
                        "records trickled in every {gaps:?} ms (cycling), never a whole second \
                         apart, and nothing shut down: record {} was still not in the store {:?} \
                         after its `record` returned (the store held {} of the {} records \
                         recorded). The flusher must write what is waiting at least once a second \
                         even while records keep arriving, not only after a quiet second",
                        late.id,
                        at.elapsed(),
                        stored.len(),
                        recorded.len()
                    );
                }
                let r = record(id);
                log.record(r.clone()).await.expect("the audit trail is running");
                recorded.push((tokio::time::Instant::now(), r));
                let gap = gaps[id as usize % gaps.len()];
                tokio::time::sleep(Duration::from_millis(gap)).await;
                id += 1;
            }
            drop(log);
            drop(service);
        }
    }

    /// Nothing shuts down, and the service sits idle, then one record comes: after an idle spell
    /// of any length (a second and a few nanoseconds, a few seconds, a minute, an hour, a night
    /// of 8 hours, each lived second by second on the paused clock; then a week in one jump of
    /// the clock), that record is in the store within two seconds of its `record` returning, as
    /// any other: the flusher writes what is waiting at least once a second, however long nothing
    /// came before. One seed: the night alone is 28,800 seconds of the flusher's timer.
    fn a_record_after_an_idle_spell_is_stored_within_two_seconds() {
        runtime::current_thread(runtime::SEEDS[0]).block_on(async {
            let sink = AuditSink::new();
            let service = AuditService::start(sink.clone());
            let log = service.log();
            let spells = [
                Duration::new(1, 7),
                Duration::new(2, 500_000_001),
                Duration::new(3, 333),
                Duration::new(61, 300_000_000),
                Duration::new(3600, 500_000_003),
                Duration::new(8 * 3600, 700_000_000),
                Duration::from_secs(7 * 86_400),
            ];
            for (id, idle) in spells.into_iter().enumerate() {
                let in_one_jump = idle >= Duration::from_secs(86_400);
                if in_one_jump {
                    tokio::time::advance(idle).await;
                } else {
                    tokio::time::sleep(idle).await;
                }
                let r = record(id as u64);
                log.record(r.clone()).await.expect("the audit trail is running");
                let recorded = tokio::time::Instant::now();
                while !sink.records().contains(&r) && recorded.elapsed() < FLUSH_EVERY * 2 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                assert!(
                    sink.records().contains(&r),
                    "nothing shut down; the service had been idle for {idle:?}{} when record {} \
                     came; it was still not in the store {:?} after its `record` returned, \
                     expected within {:?}. The flusher must write what is waiting at least once \
                     a second, however long the service was idle before",
                    if in_one_jump { " (one jump of the clock)" } else { "" },
                    r.id,
                    recorded.elapsed(),
                    FLUSH_EVERY * 2
                );
            }
            drop(log);
            drop(service);
        });
    }

    /// `main` returns right after `run_then_shutdown`, dropping the runtime: every record must
    /// already be in the store by then.
    fn every_record_survives_shutdown_and_the_runtime_drop() {
        let sink = AuditSink::new();
        let expected = records(0..(MAX_BATCH as u64 + 5));
        let rt = runtime();
        let finished = rt.block_on({
            let sink = sink.clone();
            let expected = expected.clone();
            async move {
                let service = AuditService::start(sink);
                tokio::time::timeout(SHUTDOWN_LIMIT, service.run_then_shutdown(expected)).await
            }
        });
        assert!(
            finished.is_ok(),
            "run_then_shutdown() had not returned after {} s of virtual time: {HANGS}",
            SHUTDOWN_LIMIT.as_secs()
        );
        // What `main` does when it returns: the runtime, and every task still on it, is dropped.
        drop(rt);
        if let Err(seen) = check_store(&sink, &expected, "after shutdown and the runtime drop") {
            panic!(
                "{seen}. Every one of them was recorded before shutdown() was called; shutdown() \
                 must return only once the flusher has written all of them, because dropping the \
                 runtime right after cancels whatever is still running"
            );
        }
    }

    /// The flusher is in the middle of writing a full batch when shutdown starts: that batch must
    /// not be cut short, and the records queued behind it must follow.
    fn a_batch_being_written_at_shutdown_is_not_lost() {
        let sink = AuditSink::new();
        let full = records(0..MAX_BATCH as u64);
        let late = records(MAX_BATCH as u64..MAX_BATCH as u64 + 7);
        let rt = runtime();
        let finished = rt.block_on({
            let sink = sink.clone();
            let (full, late) = (full.clone(), late.clone());
            async move {
                let service = AuditService::start(sink);
                let log = service.log();
                for r in full {
                    log.record(r).await.expect("the audit trail is running");
                }
                // Let the flusher take the full batch and start writing it (a write takes 20 ms).
                tokio::time::sleep(Duration::from_millis(1)).await;
                for r in late {
                    log.record(r).await.expect("the audit trail is running");
                }
                drop(log);
                tokio::time::timeout(SHUTDOWN_LIMIT, service.shutdown()).await
            }
        });
        assert!(
            finished.is_ok(),
            "shutdown() had not returned after {} s of virtual time: {HANGS}",
            SHUTDOWN_LIMIT.as_secs()
        );
        drop(rt);
        let expected: Vec<AuditRecord> = full.into_iter().chain(late).collect();
        if let Err(seen) = check_store(
            &sink,
            &expected,
            "shutdown began while a full batch was being written; after the runtime drop",
        ) {
            panic!(
                "{seen}. The first {MAX_BATCH} were inside a `write_batch` already in progress \
                 when shutdown began. Whatever cancels that write loses them: dropping the \
                 runtime before the flusher is done, or racing the write itself against the stop \
                 signal. Wait for the flusher, and race only its waiting against the stop signal"
            );
        }
    }

    /// A request handler still holds an `AuditLog` (a slow connection), so the channel never
    /// closes on its own: shutdown must still stop the flusher, and not hang.
    async fn shutdown_does_not_wait_for_handlers_to_hang_up() {
        let sink = AuditSink::new();
        let service = AuditService::start(sink.clone());
        let lingering = service.log();
        let expected = records(0..5);
        for r in expected.clone() {
            lingering.record(r).await.expect("the audit trail is running");
        }
        let shutdown = tokio::time::timeout(SHUTDOWN_LIMIT, service.shutdown()).await;
        assert!(
            shutdown.is_ok(),
            "shutdown() had not returned after {} s of virtual time while a request handler \
             still held an AuditLog, so the channel never closed: the flusher never stopped, or \
             never saw the stop signal. A flusher that stops only when the channel closes waits \
             for every handler; a stop signal sent while the flusher is busy writing (and not \
             waiting for it) must not be lost (`Notify::notify_waiters` keeps no permit; a \
             `CancellationToken` stays cancelled)",
            SHUTDOWN_LIMIT.as_secs()
        );
        if let Err(seen) = check_store(&sink, &expected, "when shutdown() returned") {
            panic!(
                "{seen}: these were recorded before shutdown() was called and were not in the \
                 store when it returned; `main` drops the runtime right after"
            );
        }
        drop(lingering);
    }

    /// The service is dropped without `shutdown` (a server lets go of it while request handlers
    /// still finish) and the runtime runs on; the flusher is idle, holds a part batch, or is
    /// writing a full batch with records queued behind it. A handler still holding an `AuditLog`
    /// records a few more, 300 ms apart, then lets go of it. Dropping the service is not a
    /// shutdown, and nothing waits for it: the trail may run on for the handler or stop with the
    /// service (refusing the handler's records with `AuditClosed`), either is fine; but every
    /// record acknowledged with `Ok(())` is written, in order, nothing the service started
    /// panics, and once every handle is gone no task of the service is left running.
    async fn a_service_dropped_without_shutdown_writes_what_it_acknowledged() {
        count_panics();
        let tasks_before = alive_tasks();
        for (held, queued) in [(0u64, 0u64), (40, 0), (MAX_BATCH as u64, 30)] {
            for more in [0u64, 5] {
                let panics_before = panics_seen();
                let sink = AuditSink::new();
                let service = AuditService::start(sink.clone());
                let log = service.log();
                tokio::task::yield_now().await;
                let mut acked = Vec::new();
                for id in 0..held {
                    log.record(record(id)).await.expect("the audit trail is running");
                    acked.push(record(id));
                }
                // The flusher takes what was recorded (and starts writing a full batch).
                tokio::time::sleep(Duration::from_millis(1)).await;
                for id in held..held + queued {
                    log.record(record(id)).await.expect("the audit trail is running");
                    acked.push(record(id));
                }
                drop(service);
                let mut refused = 0;
                for id in 1000..1000 + more {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    match log.record(record(id)).await {
                        Ok(()) => acked.push(record(id)),
                        Err(AuditClosed) => refused += 1,
                    }
                }
                drop(log);
                tokio::time::sleep(FLUSH_EVERY * 2).await;
                let flusher = match (held, queued) {
                    (0, _) => "was idle, holding nothing".to_owned(),
                    (held, 0) => format!("held {held} records"),
                    (held, queued) => format!(
                        "was writing a full batch of {held} records, {queued} more queued behind it"
                    ),
                };
                let setting = format!(
                    "The service was dropped without shutdown() while its flusher {flusher}, and \
                     the runtime ran on; a handler still holding an AuditLog then recorded {more} \
                     more record(s), 300 ms apart ({} accepted, {refused} refused), and let go of \
                     it. Dropping the service is not a shutdown, and nothing waits for it: the \
                     trail may run on for the handler or stop with the service, either is fine, \
                     but",
                    more - refused
                );
                if let Err(seen) = check_store(&sink, &acked, "two seconds after that") {
                    panic!(
                        "{setting} a record acknowledged with Ok(()) must be written while the \
                         runtime runs (the original code writes what it holds once the last \
                         handle is gone). {seen}"
                    );
                }
                let panics = panics_seen() - panics_before;
                assert!(
                    panics == 0,
                    "{setting} nothing may panic: {panics} panic(s) on the service's runtime \
                     (see the report above; a `oneshot::Receiver` polled again after it \
                     completed, for one, panics)"
                );
                let left = alive_tasks().saturating_sub(tasks_before);
                assert!(
                    left == 0,
                    "{setting} once every handle is gone the trail is over: two seconds later, \
                     {left} task(s) the service started were still running"
                );
            }
        }
    }

    /// Every drop the kata has (the service without `shutdown`, the last `AuditLog`, a `shutdown`
    /// future started or not) at the runtime's edges: outside its context while it is alive (a
    /// `main` that builds its runtime by hand and lets go of the service outside `block_on`),
    /// after it is gone, and inside a task when the runtime shuts down. Nothing panics anywhere,
    /// and while a runtime runs again, every record acknowledged is written.
    fn nothing_panics_when_dropped_at_a_runtime_edge() {
        count_panics();
        for held in [40u64, MAX_BATCH as u64 + 30] {
            for dropped in Dropped::ALL {
                let what = dropped.describe();
                let acked = records(0..held);
                // Outside the runtime's context, the runtime alive, then run again.
                let sink = AuditSink::new();
                let rt = runtime();
                let value = hold(&rt, &sink, held, dropped);
                let panics = panics_dropping(value);
                let setting = format!(
                    "{held} records acknowledged, then {what} dropped outside the runtime's \
                     context while the runtime was alive (a `main` that builds its runtime by \
                     hand and lets go of it outside `block_on`)"
                );
                assert!(
                    panics == 0,
                    "{setting}: {panics} panic(s) (see the report above); expected none: dropping \
                     the service, a handle or a shutdown never panics, wherever it happens (a \
                     `Drop` that needs a runtime's context, `tokio::spawn` in it for one, panics \
                     there)"
                );
                rt.block_on(async { tokio::time::sleep(FLUSH_EVERY * 2).await });
                // A shutdown dropped part way through may lose what it took over (its own
                // cancel-safety section says so); only a service dropped without one owes this.
                let started = matches!(dropped, Dropped::ShutdownStarted);
                if let (false, Err(seen)) = (
                    started,
                    check_store(&sink, &acked, "once the runtime ran two seconds more"),
                ) {
                    panic!(
                        "{setting}: every record acknowledged is still written while the runtime \
                         runs. {seen}"
                    );
                }
                drop(rt);

                // After the runtime is gone.
                let sink = AuditSink::new();
                let rt = runtime();
                let value = hold(&rt, &sink, held, dropped);
                drop(rt);
                let panics = panics_dropping(value);
                assert!(
                    panics == 0,
                    "{held} records acknowledged, then the runtime dropped, and {what} dropped \
                     after it, with no runtime left: {panics} panic(s) (see the report above); \
                     expected none: dropping the service, a handle or a shutdown never panics, \
                     wherever it happens (a `Drop` that needs a runtime, `tokio::spawn` in it for \
                     one, panics there)"
                );

                // Inside a task parked when the runtime shuts down.
                let sink = AuditSink::new();
                let rt = runtime();
                hold_in_a_task(&rt, &sink, held, dropped);
                let panics = panics_dropping(rt);
                assert!(
                    panics == 0,
                    "{held} records acknowledged, then {what} held by a task parked when the \
                     runtime was dropped (`main` returning): {panics} panic(s) while the runtime \
                     shut down (see the report above); expected none: dropping the service, a \
                     handle or a shutdown never panics, wherever it happens"
                );
            }
        }
    }

    /// A quiet shutdown: the flusher is parked (waiting for records or for its tick) with a part
    /// batch held, or with nothing at all, and nothing else is queued or being written. Shutdown
    /// must take exactly the one write of what is held, or no time at all when nothing is held:
    /// the flusher is told at once, not found at its next look. Shutdown begins at many moments
    /// after the last record (so that any periodic look falls between them), while a handler
    /// still holds an idle `AuditLog` or not, and, with nothing held, also between two ticks of
    /// the clock's millisecond.
    async fn a_quiet_shutdown_takes_only_the_write_it_needs() {
        let leads_ms = [0u64, 1, 3, 7, 13, 35, 501, 1021];
        // Every timer fires on a whole millisecond counted from here.
        let origin = tokio::time::Instant::now();
        for held in [0u64, 3, 99] {
            for lead_ms in leads_ms {
                for holder in [true, false] {
                    // A write's timer rounds to the millisecond: only an empty shutdown is also
                    // timed between two of them.
                    let grids: &[bool] = if held == 0 { &[false, true] } else { &[false] };
                    for &off_grid in grids {
                        let sink = AuditSink::new();
                        let service = AuditService::start(sink.clone());
                        let log = service.log();
                        tokio::task::yield_now().await;
                        let expected = records(0..held);
                        for r in expected.clone() {
                            log.record(r).await.expect("the audit trail is running");
                        }
                        // The flusher takes them and parks again; after the once-a-second flush
                        // (at 1 s, done by 1.02 s) they are already in the store.
                        if lead_ms == 0 {
                            tokio::task::yield_now().await;
                        } else {
                            tokio::time::sleep(Duration::from_millis(lead_ms)).await;
                        }
                        let stored = sink.records().len() as u64;
                        if off_grid {
                            tokio::time::advance(Duration::from_micros(300)).await;
                        }
                        let lingering = holder.then(|| log.clone());
                        drop(log);
                        let (writes, what) = if stored == held {
                            (0, "nothing left to write (the flusher held no records)".to_owned())
                        } else {
                            (1, format!("{} record(s) held by the flusher, one write", held - stored))
                        };
                        let setting = format!(
                            "{held} record(s) recorded, then {}{}{}; shutdown began with {what}, \
                             and nothing else queued or being written",
                            if lead_ms == 0 {
                                "the flusher got a turn".to_owned()
                            } else {
                                format!("{lead_ms} ms of quiet")
                            },
                            if off_grid { " and 300 µs" } else { "" },
                            if holder {
                                " (a request handler still held an idle AuditLog)"
                            } else {
                                ""
                            },
                        );
                        let began = tokio::time::Instant::now();
                        let done = tokio::time::timeout(SHUTDOWN_LIMIT, service.shutdown()).await;
                        let took = began.elapsed();
                        assert!(
                            done.is_ok(),
                            "{setting}: shutdown() had not returned after {} s of virtual time: \
                             {HANGS}",
                            SHUTDOWN_LIMIT.as_secs()
                        );
                        if let Err(seen) = check_store(&sink, &expected, "when shutdown() returned")
                        {
                            panic!("{setting}: {seen}");
                        }
                        let needs = WRITE_LATENCY * writes;
                        assert!(
                            took == needs,
                            "{setting}. shutdown() returned {took:?} after it began, with every \
                             record in the store; expected exactly {needs:?} ({writes} write(s) \
                             of {WRITE_LATENCY:?}), returning as soon as the flusher was done. \
                             The flusher did not stop when shutdown told it to, but only when it \
                             next woke up on its own (a stop flag looked at every few \
                             milliseconds, or at the next tick): shutdown waited for a pause. It \
                             must reach a parked flusher at once, whenever it begins"
                        );
                        drop(lingering);
                        // Back on a whole millisecond for the next run.
                        let off = (tokio::time::Instant::now() - origin).as_nanos() % 1_000_000;
                        if off != 0 {
                            let back = Duration::from_nanos(1_000_000 - off as u64);
                            tokio::time::advance(back).await;
                        }
                    }
                }
            }
        }
    }

    /// One, two or three handlers keep their own `AuditLog`s and record back to back until they
    /// are refused, so the queue is full when shutdown begins and some handler is always waiting
    /// for room. Shutdown must still stop the flusher and return once what was acknowledged is
    /// written (at most the records left plus one full queue), and every handler must then be
    /// refused.
    async fn shutdown_stops_a_handler_recording_into_a_full_queue() {
        // The queue is full a moment after the handlers start; the property above tries other
        // leads with one handler.
        for (handlers, lead_ms) in [(1, 5), (2, 5), (3, 30)] {
            handlers_recording_into_a_full_queue(handlers, lead_ms).await;
        }
    }

    /// Whole batches, and shutdown at once or while the last of them is being written: every
    /// record is in the store when shutdown returns, and no task the service started is still
    /// running (`main` drops the runtime next, which would cancel it).
    async fn every_full_batch_is_stored_when_shutdown_returns() {
        for batches in [1u64, 2, 3] {
            for pause_ms in [0u64, 1, 19] {
                let before = alive_tasks();
                let sink = AuditSink::new();
                let service = AuditService::start(sink.clone());
                let log = service.log();
                tokio::task::yield_now().await;
                let expected = records(0..batches * MAX_BATCH as u64);
                for r in expected.clone() {
                    log.record(r).await.expect("the audit trail is running");
                }
                if pause_ms == 0 {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                }
                drop(log);
                let when = if pause_ms == 0 {
                    "right after the last record".to_owned()
                } else {
                    format!("{pause_ms} ms after the last record")
                };
                let shutdown = tokio::time::timeout(SHUTDOWN_LIMIT, service.shutdown()).await;
                assert!(
                    shutdown.is_ok(),
                    "shutdown() had not returned after {} s of virtual time: {HANGS}",
                    SHUTDOWN_LIMIT.as_secs()
                );
                let left = alive_tasks().saturating_sub(before);
                if let Err(seen) = check_store(
                    &sink,
                    &expected,
                    &format!(
                        "{} records ({batches} full batch(es)) were recorded and shutdown began \
                         {when}; when shutdown() returned",
                        expected.len()
                    ),
                ) {
                    panic!(
                        "{seen}. A batch whose write had started but not finished when shutdown \
                         began must be in the store before shutdown returns: `main` drops the \
                         runtime right after, and every task still running is cancelled with it"
                    );
                }
                assert!(
                    left == 0,
                    "{} records ({batches} full batch(es)) were recorded and shutdown began {when}: \
                     when shutdown() returned, {left} task(s) started by the service were still \
                     running. `main` drops the runtime right after, which cancels them wherever \
                     they are: whatever they still had to do is lost",
                    expected.len()
                );
            }
        }
    }

    /// An auditor tails the store during the run and the shutdown: two writes are never in
    /// progress at once. Concurrent appends to an append-only store land in whatever order the
    /// store finishes them; the fake keeps them in order only because every write takes exactly
    /// `WRITE_LATENCY`.
    async fn the_store_never_has_two_writes_in_progress() {
        // (records, pause, more records, the more sent in one go, wait before shutdown). Sent in
        // one go, without yielding to the flusher, the second burst is queued behind the part
        // batch the flusher holds: shutdown then finds it there at once, or the flusher meets it
        // while the service still runs.
        let scenarios: [(u64, u64, u64, bool, u64); 8] = [
            (250, 0, 0, false, 0),
            (100, 1, 150, false, 0),
            (200, 70, 0, false, 0),
            (40, 1, 200, true, 0),
            (70, 1, 31, true, 0),
            (99, 1, 160, true, 0),
            (40, 1, 200, true, 120),
            (99, 1, 160, true, 120),
        ];
        for (first, pause_ms, second, in_one_go, settle_ms) in scenarios {
            let sink = AuditSink::new();
            let tailing = watch_appends(sink.clone());
            let service = AuditService::start(sink.clone());
            let log = service.log();
            tokio::task::yield_now().await;
            let expected = records(0..first + second);
            for r in &expected[..first as usize] {
                log.record(r.clone()).await.expect("the audit trail is running");
            }
            if pause_ms == 0 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            }
            let more = async {
                for r in &expected[first as usize..] {
                    log.record(r.clone()).await.expect("the audit trail is running");
                }
            };
            if in_one_go {
                tokio::task::unconstrained(more).await;
            } else {
                more.await;
            }
            drop(log);
            tokio::time::sleep(Duration::from_millis(settle_ms)).await;
            let shutdown = tokio::time::timeout(SHUTDOWN_LIMIT, service.shutdown()).await;
            assert!(
                shutdown.is_ok(),
                "shutdown() had not returned after {} s of virtual time: {HANGS}",
                SHUTDOWN_LIMIT.as_secs()
            );
            // Give the auditor a last look.
            tokio::time::sleep(Duration::from_millis(2)).await;
            let seen = if tailing.is_finished() {
                tailing.await.expect("the auditor task panicked")
            } else {
                tailing.abort();
                None
            };
            if let Some(seen) = seen {
                let sent = if in_one_go { " sent in one go" } else { "" };
                let then = if settle_ms == 0 {
                    "then shutdown at once".to_string()
                } else {
                    format!("then {settle_ms} ms of the service running before shutdown")
                };
                panic!(
                    "{first} records, a pause of {pause_ms} ms, {second} more{sent}, {then}: \
                     {seen}. Concurrent appends may land in either order in a real store (this \
                     fake keeps them in order only because every write takes exactly \
                     {WRITE_LATENCY:?}): the audit trail stays in the order recorded only when \
                     each write starts after the previous one has finished"
                );
            }
            if let Err(seen) = check_store(&sink, &expected, "when shutdown() returned") {
                panic!("{seen}");
            }
        }
    }

    /// The store is slow: the clock jumps ahead (as when the store, or the whole machine, stalls)
    /// while the flusher writes during shutdown. Shutdown still returns only once every record is
    /// in the store: it waits for the flusher, not for a time limit.
    async fn shutdown_waits_for_a_slow_store() {
        // Up to two years, and then the far end: 2^62 ms, some 146 million years, past any
        // shutdown budget a fix could set (15 min, a day, a year, 200 years). On a paused clock
        // one jump costs the same however long it is (a single `sleep` that long would end at 30
        // years: tokio caps it, `advance` does not). Three batches are still queued behind the
        // stalled write, so a budget that expires during the jump has writes left to cut short.
        // The far end is reached twice (at 1 and 30 ms): tokio counts the paused clock in u64
        // milliseconds, which four such jumps would overflow.
        let stalls = [600, 5_000, 60_000, 300_000, 7 * 24 * 3_600_000, 730 * 24 * 3_600_000, 1 << 62]
            .map(Duration::from_millis);
        for stall in stalls {
            for at_ms in [1u64, 30] {
                let sink = AuditSink::new();
                let service = AuditService::start(sink.clone());
                let log = service.log();
                tokio::task::yield_now().await;
                let expected = records(0..350);
                for r in &expected[..MAX_BATCH] {
                    log.record(r.clone()).await.expect("the audit trail is running");
                }
                // The flusher takes the full batch and starts writing it.
                tokio::time::sleep(Duration::from_millis(1)).await;
                for r in &expected[MAX_BATCH..] {
                    log.record(r.clone()).await.expect("the audit trail is running");
                }
                drop(log);
                let mut shutdown = std::pin::pin!(async {
                    service.shutdown().await;
                    sink.records()
                });
                let stalled = async {
                    tokio::time::sleep(Duration::from_millis(at_ms)).await;
                    tokio::time::advance(stall).await;
                };
                // The test's own time limit starts after the stall: a timer set beyond the far
                // end would cost the timer wheel a step per two years of the jump.
                let early = tokio::select! {
                    stored = &mut shutdown => Some(stored),
                    () = stalled => None,
                };
                let (done, stored) = match early {
                    Some(stored) => (true, stored),
                    None => match tokio::time::timeout(SHUTDOWN_LIMIT, &mut shutdown).await {
                        Ok(stored) => (true, stored),
                        Err(_) => (false, sink.records()),
                    },
                };
                assert!(
                    done,
                    "shutdown() had not returned {} s of virtual time after a stall of \
                     {}: {HANGS}",
                    SHUTDOWN_LIMIT.as_secs(),
                    spoken(stall)
                );
                let stored_ids: HashSet<u64> = stored.iter().map(|r| r.id).collect();
                let missing: Vec<u64> =
                    expected.iter().map(|r| r.id).filter(|id| !stored_ids.contains(id)).collect();
                assert!(
                    missing.is_empty(),
                    "{at_ms} ms into shutdown, with 350 records to write, the clock jumped \
                     {} while the flusher was writing (as if the store, or the whole \
                     machine, had stalled that long). When shutdown() returned, the store held \
                     {} of the 350 records; missing ids {}. `main` drops the runtime right after, \
                     so they are lost: shutdown must wait for the flusher however long the store \
                     takes, not for a time limit",
                    spoken(stall),
                    350 - missing.len(),
                    ranges(&missing)
                );
                assert!(
                    stored == expected,
                    "after a stall of {} during shutdown the store holds every record, but out of \
                     order (or twice): ids {}",
                    spoken(stall),
                    ids(&stored)
                );
            }
        }
    }

    /// A handler's `record` is waiting for room in a full queue as shutdown begins, on a busy
    /// worker that runs it again only some time (0 to 290 ms) after it is woken. It must end
    /// either written before shutdown returned or refused with `Err(AuditClosed)`. One run per
    /// lag, each on a runtime with the next `select!` seed.
    fn a_record_waiting_for_room_at_shutdown_is_written_or_refused() {
        // Writes take 20 ms and start on a 20 ms grid: a lag of 10 + 20k ms wakes the handler in
        // the middle of each write of the drain.
        let lags = std::iter::once(0).chain((10..=290).step_by(20));
        for (run, lag_ms) in lags.enumerate() {
            let seed = SEEDS[run % SEEDS.len()];
            let lag = Duration::from_millis(lag_ms);
            runtime::current_thread(seed).block_on(busy_handler_at_shutdown(lag));
        }
    }
}
