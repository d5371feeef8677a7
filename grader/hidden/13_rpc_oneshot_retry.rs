//! Hidden tests for kata 13: a slow mailer must send each email once and the client must get its
//! receipt; a stuck mailer must still make the client give up.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use kata_support::{
    Options, Outcome, assert_cancel_safe, assert_cancel_safe_with, hidden_test, settle,
};
use rpc_oneshot_retry::{CallError, EmailJob, MailClient, Receipt, Request};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until, timeout};

/// What the fake mailer did, shared with the test.
#[derive(Debug, Clone, Default)]
struct Log {
    inner: Arc<Mutex<LogInner>>,
}

#[derive(Debug, Default)]
struct LogInner {
    /// How many times each job id reached the worker (was taken off the queue).
    received: HashMap<u64, usize>,
    /// How many times each job id was sent to the provider.
    sent: HashMap<u64, usize>,
    /// Receipts the worker could not deliver because the receiver was gone.
    lost_receipts: usize,
}

impl Log {
    fn sent(&self, id: u64) -> usize {
        self.inner.lock().unwrap().sent.get(&id).copied().unwrap_or(0)
    }

    fn received(&self, id: u64) -> usize {
        self.inner.lock().unwrap().received.get(&id).copied().unwrap_or(0)
    }

    fn lost_receipts(&self) -> usize {
        self.inner.lock().unwrap().lost_receipts
    }
}

/// How the fake mailer behaves.
#[derive(Debug, Clone, Copy)]
enum Mailer {
    /// Sends each email after this long, one job at a time, and answers.
    Takes(Duration),
    /// Takes the job and never answers, keeping the reply sender (a stuck worker).
    Stuck,
    /// Takes the job and, after this long, drops it without answering (a worker that crashed; it
    /// may have sent the email before it did).
    Crashes(Duration),
    /// Takes the job and, after this long, its task ends (it crashed): the job's reply sender and
    /// the queue's receiver are dropped together.
    CrashesAndQuits(Duration),
    /// Takes the job and at once stops taking new ones (it is shutting down gracefully: the
    /// queue's receiver is dropped), then, after this long, sends the email and answers.
    ClosesIntakeThenAnswers(Duration),
}

/// Starts a fake mailer worker on a queue of capacity 8 and returns its sender and log.
fn start_mailer(behaviour: Mailer) -> (mpsc::Sender<Request>, Log) {
    let (queue, mut jobs) = mpsc::channel::<Request>(8);
    let log = Log::default();
    let worker_log = log.clone();
    tokio::spawn(async move {
        let mut stuck = Vec::new();
        while let Some(Request { job, reply }) = jobs.recv().await {
            *worker_log.inner.lock().unwrap().received.entry(job.id).or_default() += 1;
            match behaviour {
                Mailer::Takes(work) => {
                    sleep(work).await;
                    *worker_log.inner.lock().unwrap().sent.entry(job.id).or_default() += 1;
                    let receipt = Receipt { job_id: job.id, message_id: format!("msg-{}", job.id) };
                    if reply.send(receipt).is_err() {
                        worker_log.inner.lock().unwrap().lost_receipts += 1;
                    }
                }
                Mailer::Stuck => stuck.push(reply),
                Mailer::Crashes(after) => {
                    sleep(after).await;
                    drop(reply);
                }
                Mailer::ClosesIntakeThenAnswers(work) => {
                    drop(jobs);
                    sleep(work).await;
                    *worker_log.inner.lock().unwrap().sent.entry(job.id).or_default() += 1;
                    let receipt = Receipt { job_id: job.id, message_id: format!("msg-{}", job.id) };
                    if reply.send(receipt).is_err() {
                        worker_log.inner.lock().unwrap().lost_receipts += 1;
                    }
                    return;
                }
                Mailer::CrashesAndQuits(after) => {
                    sleep(after).await;
                    drop(reply);
                    drop(jobs);
                    return;
                }
            }
        }
    });
    (queue, log)
}

/// When the late mailer of [`start_late_mailer`] starts taking jobs.
const LATE_START: Duration = Duration::from_secs(1);

/// A queue of capacity 1, already full with another shopper's email (job 1), and a mailer that
/// only starts taking jobs at [`LATE_START`] (it is still being deployed), then needs 300 ms per
/// email. Until then, a call waits for room on the queue.
fn start_late_mailer() -> (mpsc::Sender<Request>, Log) {
    let (queue, mut jobs) = mpsc::channel::<Request>(1);
    let (earlier, _) = tokio::sync::oneshot::channel();
    queue
        .try_send(Request { job: job(1), reply: earlier })
        .expect("the queue has room for the earlier job");
    let log = Log::default();
    let worker_log = log.clone();
    tokio::spawn(async move {
        sleep(LATE_START).await;
        while let Some(Request { job, reply }) = jobs.recv().await {
            sleep(Duration::from_millis(300)).await;
            *worker_log.inner.lock().unwrap().sent.entry(job.id).or_default() += 1;
            let receipt = Receipt { job_id: job.id, message_id: format!("msg-{}", job.id) };
            if reply.send(receipt).is_err() {
                worker_log.inner.lock().unwrap().lost_receipts += 1;
            }
        }
    });
    (queue, log)
}

std::thread_local! {
    /// Whether a panic on this thread is expected, and reported by the test in its own words.
    static QUIET_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `call` in a task and returns its output, or the message it panicked with. The panic's own
/// report is held back (on this thread, while the call runs), so that the test's failure message,
/// which says in what scenario the call panicked, is the one the learner sees first.
async fn run_caught<T: Send + 'static>(
    call: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET_PANICS.with(|quiet| quiet.get()) {
                previous(info);
            }
        }));
    });
    QUIET_PANICS.with(|quiet| quiet.set(true));
    let joined = tokio::spawn(call).await;
    QUIET_PANICS.with(|quiet| quiet.set(false));
    joined.map_err(|e| {
        let e = e.into_panic();
        e.downcast_ref::<&str>()
            .map(|m| m.to_string())
            .or_else(|| e.downcast_ref::<String>().cloned())
            .unwrap_or_default()
    })
}

/// Whether a call's task gets the thread: see [`spawn_starvable`].
#[derive(Clone, Default)]
struct RuntimeGate {
    inner: Arc<Mutex<GateState>>,
}

#[derive(Default)]
struct GateState {
    shut: bool,
    /// The task's waker from a wake that came while the gate was shut.
    woken: Option<Waker>,
}

impl RuntimeGate {
    /// The task is still woken (its timers fire, the answer comes) but does not poll the call.
    fn shut(&self) {
        self.inner.lock().unwrap().shut = true;
    }

    /// The task gets the thread again, and polls the call at once if it was woken meanwhile.
    fn open(&self) {
        let woken = {
            let mut state = self.inner.lock().unwrap();
            state.shut = false;
            state.woken.take()
        };
        if let Some(waker) = woken {
            waker.wake();
        }
    }
}

/// Runs `call` in a task of its own that polls it only while the returned gate is open: with the
/// gate shut, the call is stuck where it was, as when other requests keep a busy runtime's thread.
fn spawn_starvable<T: Send + 'static>(
    call: impl Future<Output = T> + Send + 'static,
) -> (tokio::task::JoinHandle<T>, RuntimeGate) {
    let gate = RuntimeGate::default();
    let task_gate = gate.clone();
    let task = tokio::spawn(async move {
        let mut call = std::pin::pin!(call);
        std::future::poll_fn(|cx| {
            {
                let mut state = task_gate.inner.lock().unwrap();
                if state.shut {
                    state.woken = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
            call.as_mut().poll(cx)
        })
        .await
    });
    (task, gate)
}

fn job(id: u64) -> EmailJob {
    EmailJob { id, to: "alice@example.com".into(), template: "order-confirmation".into() }
}

const ATTEMPT: Duration = Duration::from_secs(1);
const ATTEMPTS: u32 = 3;

/// The most calls made at once on clones of one client: more than any limit of calls in flight
/// (a bulkhead) a client would plausibly set itself, powers of two and round thousands included.
const MANY_CALLS: u64 = 1100;

/// A mailer that takes one job at a time and answers each `work` after taking it, with a message
/// id of its own for every job it takes (`msg-7-1`, `msg-7-2`, ...: two jobs for the same email
/// get two receipts); it notes each job it takes (id, instant from `start`).
fn start_counting_mailer(
    work: Option<Duration>,
    start: Instant,
) -> (mpsc::Sender<Request>, Arc<Mutex<Vec<(u64, Duration)>>>) {
    let (queue, mut jobs) = mpsc::channel::<Request>(8);
    let taken = Arc::new(Mutex::new(Vec::new()));
    let mailer_taken = taken.clone();
    tokio::spawn(async move {
        let mut stuck = Vec::new();
        while let Some(Request { job, reply }) = jobs.recv().await {
            let nth = {
                let mut taken = mailer_taken.lock().unwrap();
                taken.push((job.id, start.elapsed()));
                taken.len()
            };
            match work {
                Some(work) => {
                    sleep(work).await;
                    let _ = reply.send(Receipt {
                        job_id: job.id,
                        message_id: format!("msg-{}-{nth}", job.id),
                    });
                }
                None => stuck.push(reply),
            }
        }
    });
    (queue, taken)
}

/// A long run of failures on one client and its clones: `stuck` calls in a row on a stuck
/// mailer, then `crashed` on a mailer that crashes at once, then `answered` on a mailer that
/// answers at once. However many calls failed before it, and however the failures went, each call
/// queues its own job at once and ends as on a fresh client: `TimedOut` at the end of its own
/// budget, `WorkerDropped` or its receipt at once.
async fn a_long_run_of_failed_calls(stuck: u64, crashed: u64, answered: u64) {
    let attempt = ATTEMPT / 10;
    let budget = attempt * ATTEMPTS;
    let (queue, mut jobs) = mpsc::channel::<Request>(8);
    let taken = Arc::new(Mutex::new(Vec::new()));
    let mailer_taken = taken.clone();
    let start = Instant::now();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(Request { job, reply }) = jobs.recv().await {
            mailer_taken.lock().unwrap().push((job.id, start.elapsed()));
            if job.id <= stuck {
                held.push(reply);
            } else if job.id <= stuck + crashed {
                drop(reply);
            } else {
                let _ =
                    reply.send(Receipt { job_id: job.id, message_id: format!("msg-{}", job.id) });
            }
        }
    });
    let client = MailClient::new(queue, attempt, ATTEMPTS);
    for id in 1..=stuck + crashed + answered {
        let clone = client.clone();
        let caller = if id % 2 == 0 { &clone } else { &client };
        let called_at = start.elapsed();
        let taken_before = taken.lock().unwrap().len();
        let outcome = timeout(Duration::from_secs(60), caller.send_email(job(id))).await;
        let waited = start.elapsed() - called_at;
        // Only this call's job can have been taken since it started (the calls before it
        // ended with their jobs taken at once): the log's tail, not the whole run.
        let queued: Vec<Duration> = taken.lock().unwrap()[taken_before..]
            .iter()
            .filter(|(job, _)| *job == id)
            .map(|(_, at)| *at - called_at)
            .collect();
        let (expected, ok) = if id <= stuck {
            (
                format!("`Err(TimedOut)` at the end of its own budget, {budget:?}"),
                outcome == Ok(Err(CallError::TimedOut))
                    && waited >= budget
                    && waited <= budget + Duration::from_millis(10),
            )
        } else if id <= stuck + crashed {
            (
                "`Err(WorkerDropped)` at once".to_string(),
                outcome == Ok(Err(CallError::WorkerDropped)) && waited.is_zero(),
            )
        } else {
            let receipt = Ok(Receipt { job_id: id, message_id: format!("msg-{id}") });
            (format!("{receipt:?} at once"), outcome == Ok(receipt) && waited.is_zero())
        };
        let returned = match outcome {
            Ok(outcome) => format!("returned {outcome:?} after {waited:?}"),
            Err(_) => format!("was still waiting after {waited:?}"),
        };
        let took = match queued.as_slice() {
            [] => "never got the job".to_string(),
            [at] => format!("got the job {at:?} after the call started"),
            more => format!("got the job {} times, at {more:?} into the call", more.len()),
        };
        let before = if id <= stuck {
            format!("{} call(s) before it on a stuck mailer", id - 1)
        } else if id <= stuck + crashed {
            format!(
                "{stuck} calls on a stuck mailer, then {} on one that crashed at once",
                id - 1 - stuck
            )
        } else {
            format!(
                "{stuck} calls on a stuck mailer, {crashed} on one that crashed at once, then \
                 {} answered at once",
                id - 1 - stuck - crashed
            )
        };
        assert!(
            ok && queued == [Duration::ZERO],
            "one client (a budget of {ATTEMPTS} attempts of {attempt:?}) and its clones made \
             calls one after another, the queue having room each time: {before}. Call {id}: \
             the mailer {took}, and the call {returned}. Expected the job taken once, at \
             once, and {expected}, as on a fresh client: however many calls failed before \
             it, a call queues its own job and waits its own budget"
        );
    }
}

/// How the calls and the other sender of [`line_up_for_room`] join the queue's line.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// One a millisecond: call 1 at 0 ms, the other sender's first job at 1 ms, call 2 at 2 ms ...
    EveryMillisecond,
    /// All in one instant, each once the one before has had its turn to start waiting.
    OneAfterAnother,
}

/// What [`line_up_for_room`] saw: the job ids in the order the mailer took them, the order due
/// (job 0, then every job in the order its sender joined the line), and the calls that did not
/// return their receipt at the moment the queue made room (job id, outcome, when it returned).
type LineUp = (Vec<u64>, Vec<u64>, Vec<(u64, Result<Receipt, CallError>, Duration)>);

/// The queue (capacity 1) holds job 0; `callers` calls on clones of one client (jobs 1 to
/// `callers`) and another sender (jobs `others_from + 1` on) take turns joining its line at
/// `pace`; the mailer starts taking jobs at `room_at` (from the start) and answers each at once.
async fn line_up_for_room(callers: u64, others_from: u64, pace: Pace, room_at: Duration) -> LineUp {
    let (queue, mut jobs) = mpsc::channel::<Request>(1);
    let (earlier, _) = tokio::sync::oneshot::channel();
    queue
        .try_send(Request { job: job(0), reply: earlier })
        .expect("the queue has room for the earlier job");
    let taken = Arc::new(Mutex::new(vec![]));
    let mailer_taken = taken.clone();
    let start = Instant::now();
    tokio::spawn(async move {
        sleep(room_at).await;
        while let Some(Request { job, reply }) = jobs.recv().await {
            mailer_taken.lock().unwrap().push(job.id);
            let message_id = format!("msg-{}", job.id);
            let _ = reply.send(Receipt { job_id: job.id, message_id });
        }
    });
    let client = MailClient::new(queue.clone(), ATTEMPT, ATTEMPTS);
    let mut expected = vec![0];
    let mut calls = Vec::new();
    let mut others = Vec::new();
    for k in 0..callers * 2 {
        match pace {
            Pace::EveryMillisecond => sleep_until(start + Duration::from_millis(k)).await,
            Pace::OneAfterAnother => settle().await,
        }
        let id = if k % 2 == 0 { k / 2 + 1 } else { others_from + k / 2 + 1 };
        expected.push(id);
        if k % 2 == 0 {
            let client = client.clone();
            calls.push(tokio::spawn(async move {
                let outcome = client.send_email(job(id)).await;
                (id, outcome, start.elapsed())
            }));
        } else {
            let queue = queue.clone();
            let (other, _) = tokio::sync::oneshot::channel();
            others.push(tokio::spawn(async move {
                let _ = queue.send(Request { job: job(id), reply: other }).await;
            }));
        }
    }
    drop(queue);
    let mut wrong = Vec::new();
    for call in calls {
        let (id, outcome, at) = timeout(Duration::from_secs(60), call)
            .await
            .expect("send_email did not return within 60 s (virtual)")
            .expect("send_email panicked");
        let receipt = Ok(Receipt { job_id: id, message_id: format!("msg-{id}") });
        if outcome != receipt || at != room_at {
            wrong.push((id, outcome, at));
        }
    }
    for other in others {
        let _ = other.await;
    }
    settle().await;
    let order = taken.lock().unwrap().clone();
    (order, expected, wrong)
}

hidden_test! {
    /// Nothing slow: the receipt comes back the moment the worker answers, and the email is sent
    /// once.
    async fn a_fast_worker_sends_once_and_answers() {
        let work = Duration::from_millis(150);
        let (queue, log) = start_mailer(Mailer::Takes(work));
        let client = MailClient::new(queue, ATTEMPT, ATTEMPTS);
        let start = Instant::now();
        let receipt = client.send_email(job(7)).await;
        let waited = start.elapsed();
        assert_eq!(
            receipt,
            Ok(Receipt { job_id: 7, message_id: "msg-7".into() }),
            "a worker that answers in 150 ms must produce a receipt"
        );
        assert_eq!(
            waited, work,
            "the worker answered {work:?} in, but the client returned the receipt only after \
             {waited:?}: the receipt must be returned the moment it arrives"
        );
        assert_eq!(log.sent(7), 1, "the email must be sent exactly once");
    }

    /// The kata's bug: the worker needs 2 s, each attempt waits 1 s. The email must still be sent
    /// once, and the client must get the receipt of that one run.
    async fn a_slow_worker_sends_once_and_the_client_gets_the_receipt() {
        let work = Duration::from_secs(2);
        let (queue, log) = start_mailer(Mailer::Takes(work));
        let client = MailClient::new(queue, ATTEMPT, ATTEMPTS);
        let start = Instant::now();
        let outcome = timeout(Duration::from_secs(60), client.send_email(job(7)))
            .await
            .expect("send_email did not return within 60 s (virtual) although the worker answers after 2 s");
        let waited = start.elapsed();

        // Let the worker finish anything still queued before counting.
        sleep(Duration::from_secs(30)).await;
        let sent = log.sent(7);
        assert_eq!(
            sent,
            1,
            "the worker takes 2 s and each attempt waits 1 s: the customer got {sent} copies of \
             the email and {} receipt(s) were thrown away (the worker's `reply.send` found no \
             receiver). An elapsed attempt did not stop the worker, so queueing the job again \
             duplicates it; and `timeout(.., reply_rx)` drops the receiver it owns when it \
             elapses, so the receipt of the first run has nowhere to go",
            log.lost_receipts()
        );
        assert_eq!(
            outcome,
            Ok(Receipt { job_id: 7, message_id: "msg-7".into() }),
            "the worker answered after 2 s, well inside the client's 3 attempts of 1 s, but the \
             client did not return its receipt: an elapsed attempt must mean \"slow\", not \"lost\""
        );
        assert_eq!(
            waited, work,
            "the worker answered {work:?} in, but the client returned the receipt only after \
             {waited:?}: the receipt must be returned the moment it arrives"
        );
    }

    /// A stuck worker must not hang the web request: the client gives up after
    /// `attempts × attempt_timeout`.
    async fn a_stuck_worker_makes_the_client_give_up() {
        let (queue, _log) = start_mailer(Mailer::Stuck);
        let client = MailClient::new(queue, ATTEMPT, ATTEMPTS);
        let start = Instant::now();
        let outcome = timeout(Duration::from_secs(60), client.send_email(job(7))).await;
        let Ok(outcome) = outcome else {
            panic!(
                "the worker took the job and never answered, and send_email was still waiting after \
                 60 s (virtual): without a deadline a stuck worker hangs the web request for ever. \
                 Keep a timeout, just do not let it destroy the receiver"
            );
        };
        assert_eq!(outcome, Err(CallError::TimedOut), "a worker that never answers must end in TimedOut");
        let waited = start.elapsed();
        assert!(
            waited <= ATTEMPT * ATTEMPTS + Duration::from_millis(10),
            "the client must give up within attempts × attempt_timeout = 3 s; it waited {waited:?}"
        );
    }

    /// A worker that drops the job (at once, or after an attempt has elapsed; its task going on,
    /// or ending with it) is reported as `WorkerDropped` the moment it drops it, and gets the job
    /// only once: it may have sent the email before it crashed.
    async fn a_crashed_worker_is_reported_at_once() {
        for crash_after in [Duration::ZERO, ATTEMPT + ATTEMPT / 2] {
            for quits in [false, true] {
                let mailer = if quits {
                    Mailer::CrashesAndQuits(crash_after)
                } else {
                    Mailer::Crashes(crash_after)
                };
                let (queue, log) = start_mailer(mailer);
                let client = MailClient::new(queue, ATTEMPT, ATTEMPTS);
                let mut when = if crash_after.is_zero() {
                    "at once".to_string()
                } else {
                    format!("{crash_after:?} in")
                };
                if quits {
                    when.push_str(
                        " as its task ended (the job's reply sender and the queue's receiver \
                         were dropped together)",
                    );
                }
                let call = run_caught(async move {
                    let start = Instant::now();
                    let outcome = client.send_email(job(7)).await;
                    (outcome, start.elapsed())
                });
                let (outcome, waited) = match call.await {
                    Ok(done) => done,
                    Err(message) => {
                        panic!(
                            "the worker took the job and dropped it without answering {when}, and \
                             send_email panicked ({message:?}) instead of returning \
                             `Err(WorkerDropped)`"
                        );
                    }
                };
                assert_eq!(
                    outcome,
                    Err(CallError::WorkerDropped),
                    "the worker took the job and dropped it without answering {when}: the job was \
                     queued and taken, so this is `WorkerDropped` (the worker may have sent the \
                     email), not a closed queue or a timeout"
                );
                assert_eq!(
                    waited, crash_after,
                    "the worker dropped the job {when}, but the client reported \
                     `WorkerDropped` only after {waited:?}: a dropped reply sender means the worker \
                     will never answer, so report it straight away"
                );
                sleep(Duration::from_secs(30)).await;
                let received = log.received(7);
                assert_eq!(
                    received, 1,
                    "the worker dropped the job {when}, and received it {received} times \
                     in all: a worker that crashes may already have sent the email, so the job \
                     must not be queued again"
                );
            }
        }
    }

    /// A worker shutting down gracefully takes the job, stops taking new ones (its end of the
    /// queue is dropped) and still sends the email and answers, quickly or after several
    /// attempts: the client returns that receipt the moment it comes, not `QueueClosed`.
    async fn a_worker_that_stops_taking_jobs_still_answers_the_one_it_took() {
        for work in [Duration::ZERO, Duration::from_millis(150), 2 * ATTEMPT] {
            let (queue, log) = start_mailer(Mailer::ClosesIntakeThenAnswers(work));
            let client = MailClient::new(queue, ATTEMPT, ATTEMPTS);
            let start = Instant::now();
            let outcome = timeout(Duration::from_secs(60), client.send_email(job(7)))
                .await
                .expect("send_email did not return within 60 s (virtual)");
            let waited = start.elapsed();
            sleep(Duration::from_secs(30)).await;
            let setting = format!(
                "the worker took the job, stopped taking new ones at once (it is shutting down: \
                 the queue's receiver was dropped), and sent the email and its receipt {work:?} \
                 later"
            );
            let receipt = Receipt { job_id: 7, message_id: "msg-7".into() };
            let why = match &outcome {
                Ok(got) if *got == receipt && waited > work => format!(
                    "the receipt came {:?} late: it must be returned the moment the worker \
                     sends it",
                    waited - work
                ),
                Err(CallError::QueueClosed) => "the job was queued and taken, so its receipt is \
                    coming: a closed queue means only that no new job can be queued (a shopper \
                    told `QueueClosed` retries, and gets the email twice)"
                    .to_string(),
                Err(CallError::TimedOut) => format!(
                    "the worker answered {work:?} in, inside the client's budget of {ATTEMPTS} \
                     attempts of {ATTEMPT:?}, so the client must wait for that receipt"
                ),
                Err(CallError::WorkerDropped) => "the worker never dropped the job: it kept the \
                    reply sender and answered on it"
                    .to_string(),
                Ok(_) => format!("expected {receipt:?} the moment the worker sent it"),
            };
            assert!(
                outcome == Ok(receipt.clone()) && waited == work,
                "{setting}; the client returned {outcome:?} after {waited:?}: {why}"
            );
            assert_eq!(log.sent(7), 1, "{setting}; the email must be sent exactly once");
        }
    }

    /// The mailer is alive but stuck (it takes no job), with the queue full, for the whole of
    /// the call's budget or longer, before it takes the job and answers in 150 ms: that is a
    /// stuck worker, not a closed queue. The client may give up with `TimedOut` (a budget counted
    /// from the start of the call) or wait for room and return the receipt (a budget counted from
    /// the queueing), but must not report `QueueClosed`: the queue was open all along. A
    /// `TimedOut` must come by the end of the budget counted from the start (the only count under
    /// which the call can give up before its job is on the queue), and then a job still waiting
    /// for room at that instant must never get onto the queue: a call that gave up on it must not
    /// queue it afterwards (the email is sent while the shop says "could not confirm", and the
    /// shopper's retry sends it twice).
    async fn a_queue_full_past_the_budget_is_not_reported_closed() {
        let budget = ATTEMPT * ATTEMPTS;
        let full_for = [
            budget / 2,
            budget - ATTEMPT / 10,
            budget,
            budget + ATTEMPT / 10,
            budget * 3,
        ];
        for full_for in full_for {
            let (queue, mut jobs) = mpsc::channel::<Request>(1);
            let (earlier, _) = tokio::sync::oneshot::channel();
            queue
                .try_send(Request { job: job(1), reply: earlier })
                .expect("the queue has room for the earlier job");
            let taken = Arc::new(Mutex::new(Vec::new()));
            let mailer_taken = taken.clone();
            let mailer = tokio::spawn(async move {
                sleep(full_for).await;
                while let Some(Request { job, reply }) = jobs.recv().await {
                    mailer_taken.lock().unwrap().push(job.id);
                    sleep(Duration::from_millis(150)).await;
                    let _ = reply.send(Receipt { job_id: job.id, message_id: format!("msg-{}", job.id) });
                }
            });
            let client = MailClient::new(queue, ATTEMPT, ATTEMPTS);
            let start = Instant::now();
            let outcome = timeout(Duration::from_secs(60), client.send_email(job(7))).await;
            let waited = start.elapsed();
            let Ok(outcome) = outcome else {
                panic!(
                    "the queue was full for {full_for:?} and the mailer then answered every job \
                     in 150 ms, yet send_email was still waiting after {waited:?}"
                );
            };
            // Let the mailer take whatever is left on the queue: the client (the queue's only
            // sender) is gone, so it ends once the queue is empty.
            drop(client);
            let _ = timeout(full_for + Duration::from_secs(60), mailer).await;
            let job_7_taken = taken.lock().unwrap().contains(&7);
            let receipt = Ok(Receipt { job_id: 7, message_id: "msg-7".into() });
            assert!(
                outcome == receipt || outcome == Err(CallError::TimedOut),
                "the mailer was alive but took no job for {full_for:?}, so the queue (capacity 1) \
                 stayed full, open all along; the client's budget is {ATTEMPTS} attempts of \
                 {ATTEMPT:?}. It returned {outcome:?} after {waited:?}, expected the receipt or \
                 `Err(TimedOut)`: `QueueClosed` means no worker at all, and a full queue means a \
                 worker that is busy or stuck"
            );
            if outcome == Err(CallError::TimedOut) {
                let queued_after_giving_up = job_7_taken && full_for > waited;
                assert!(
                    waited <= budget && !queued_after_giving_up,
                    "the mailer was alive but took no job for {full_for:?}, so the queue \
                     (capacity 1) stayed full until then; the client's budget is {ATTEMPTS} \
                     attempts of {ATTEMPT:?}. It returned `Err(TimedOut)` after {waited:?}, and \
                     the mailer {} the call's job (7) afterwards. Expected either the receipt \
                     (the budget counted from the queueing: the job got onto the queue at \
                     {full_for:?} and was answered 300 ms later), or `Err(TimedOut)` by \
                     {budget:?} (counted from the start of the call) with the job never queued \
                     once the call gave up: a call that has given up on its job must not queue \
                     it afterwards (the shop says \"could not confirm\", the email goes out \
                     anyway, and the shopper's retry sends it twice)",
                    if job_7_taken { "still got" } else { "never got" }
                );
            }
        }
    }

    /// No worker at all: the queue is closed.
    async fn a_closed_queue_is_reported() {
        let (queue, jobs) = mpsc::channel::<Request>(1);
        drop(jobs);
        let client = MailClient::new(queue, ATTEMPT, ATTEMPTS);
        let outcome = client.send_email(job(7)).await;
        assert_eq!(
            outcome,
            Err(CallError::QueueClosed),
            "no worker is running (the job queue's receiver is gone), so the job could not even \
             be queued: expected `Err(QueueClosed)`, got {outcome:?}"
        );
    }

    /// The queue's state changes while a call waits. Its mailer goes (it exits without taking a
    /// job, crashes on the job ahead of the call's with its task ending, or shuts down gracefully
    /// while busy with that job, dropping its end of the queue and the jobs on it) at instants
    /// spread over the budget: just after the call started, inside each attempt, at an attempt's
    /// end, just before and after the budget's end. A call still waiting for room on the full
    /// queue reports `QueueClosed` at that instant: no worker is left, and its job was never
    /// queued. A call whose job was on the queue, not yet taken, reports `WorkerDropped` at that
    /// instant: the job went with the queue, its reply sender dropped unanswered, and the client
    /// cannot tell that from a worker that took the job and crashed (and may have sent the email).
    /// Once the budget is over, the call has given up with `TimedOut` (or, waiting for room with
    /// its budget counted from the queueing, reports `QueueClosed` when the queue closes).
    async fn the_queue_closing_while_a_call_waits_is_reported_at_that_instant() {
        #[derive(Debug, Clone, Copy, PartialEq)]
        enum Goes {
            /// The mailer, alive but taking no job, exits without taking any.
            Untaken,
            /// The mailer took the job ahead, then crashes on it, its task ending.
            CrashesOnTheJobAhead,
            /// The mailer took the job ahead, then stops taking jobs, still holding that one.
            StopsTakingJobs,
        }
        let ms = Duration::from_millis;
        let budget = ATTEMPT * ATTEMPTS;
        let instants = [
            Duration::ZERO,
            ms(1),
            ms(505),
            ATTEMPT,
            ms(1_037),
            ms(2_505),
            budget - ms(1),
            budget + ATTEMPT / 2,
        ];
        for queued in [false, true] {
            for goes in [Goes::Untaken, Goes::CrashesOnTheJobAhead, Goes::StopsTakingJobs] {
                for at in instants {
                    // A queue of capacity 1 is full with the job ahead (or with another one behind
                    // it, once the mailer took it); one of capacity 8 has room for the call's job.
                    let (queue, mut jobs) = mpsc::channel::<Request>(if queued { 8 } else { 1 });
                    let (earlier, _earlier_rx) = tokio::sync::oneshot::channel();
                    queue
                        .try_send(Request { job: job(1), reply: earlier })
                        .expect("the queue has room for the job ahead");
                    let mut taken = None;
                    if goes != Goes::Untaken {
                        taken = Some(jobs.try_recv().expect("the job ahead is on the queue"));
                        if !queued {
                            let (other, _) = tokio::sync::oneshot::channel();
                            queue
                                .try_send(Request { job: job(2), reply: other })
                                .expect("the queue has room for another shopper's job");
                        }
                    }
                    let waiting = queue.max_capacity() - queue.capacity();
                    let watch = queue.clone();
                    let client = MailClient::new(queue, ATTEMPT, ATTEMPTS);
                    let start = Instant::now();
                    let call = tokio::spawn(async move {
                        let outcome = client.send_email(job(7)).await;
                        (outcome, start.elapsed())
                    });
                    settle().await;
                    let call_job_on_queue = watch.max_capacity() - watch.capacity() > waiting;
                    drop(watch);
                    sleep_until(start + at).await;
                    let how = match goes {
                        Goes::Untaken => {
                            drop(jobs);
                            "the mailer, alive but taking no job, exited without taking any (the \
                             queue's receiver was dropped, and the jobs on it with it)"
                        }
                        Goes::CrashesOnTheJobAhead => {
                            drop(taken.take());
                            drop(jobs);
                            "the mailer crashed on the job ahead (another shopper's email, which \
                             it had taken) and its task ended: that job's reply sender and the \
                             queue's receiver (and the jobs on it) were dropped together"
                        }
                        Goes::StopsTakingJobs => {
                            drop(jobs);
                            "the mailer, busy with the job ahead (another shopper's email), shut \
                             down gracefully: it stopped taking jobs (the queue's receiver was \
                             dropped, and the jobs on it with it) and kept the one it held"
                        }
                    };
                    let joined = timeout(ATTEMPT * 60, call).await;
                    drop(taken);
                    let setting = if queued {
                        format!(
                            "The queue had room, and the call's job {} on it at once, behind \
                             the job ahead; {at:?} into the call, {how}",
                            if call_job_on_queue { "was" } else { "was not" }
                        )
                    } else {
                        format!(
                            "The queue (capacity 1) was full and the call waited for room; \
                             {at:?} into the call, {how}"
                        )
                    };
                    let (outcome, waited) = match joined {
                        Ok(Ok(done)) => done,
                        Ok(Err(failed)) => panic!(
                            "{setting}. The call panicked ({failed}) instead of returning an \
                             error"
                        ),
                        Err(_) => panic!(
                            "{setting}. The call was still waiting 60 s (virtual) later: a \
                             closed queue, or a job dropped with it, is an answer, and the \
                             client's budget is {ATTEMPTS} attempts of {ATTEMPT:?}"
                        ),
                    };
                    let (ok, expected) = if at < budget && queued {
                        (
                            outcome == Err(CallError::WorkerDropped)
                                && waited == at
                                && call_job_on_queue,
                            format!(
                                "the job on the queue at once, then `Err(WorkerDropped)` at \
                                 {at:?}: the job went with the queue unanswered (its reply sender \
                                 was dropped), and the client cannot tell that from a worker that \
                                 took it and crashed, which may have sent the email, so it \
                                 reports it as such, straight away (`QueueClosed` would tell the \
                                 shopper the job was never queued, and `TimedOut` that a worker \
                                 is alive but stuck)"
                            ),
                        )
                    } else if at < budget {
                        (
                            outcome == Err(CallError::QueueClosed) && waited == at,
                            format!(
                                "`Err(QueueClosed)` at {at:?}: no worker is left to take the \
                                 job, which never got onto the queue. That is a closed queue, \
                                 reported the instant it closes (`TimedOut` says a worker is alive \
                                 but stuck, and `WorkerDropped` that a worker may have sent the \
                                 email)"
                            ),
                        )
                    } else {
                        let gave_up = outcome == Err(CallError::TimedOut)
                            && waited >= budget
                            && waited <= budget + ms(10);
                        let closed = outcome == Err(CallError::QueueClosed) && waited == at;
                        (
                            gave_up || (!queued && closed),
                            format!(
                                "`Err(TimedOut)` at the end of the budget, {budget:?}, while the \
                                 mailer was still there{}",
                                if queued {
                                    String::new()
                                } else {
                                    format!(
                                        " (or, with the budget counted from the queueing, \
                                         `Err(QueueClosed)` at {at:?}, when the queue closed)"
                                    )
                                }
                            ),
                        )
                    };
                    assert!(
                        ok,
                        "{setting}. The call returned {outcome:?} after {waited:?}, expected \
                         {expected}"
                    );
                }
            }
        }
    }

    /// The web request is cancelled while the queue is full: a call dropped before its job got
    /// onto the queue must never queue it; one dropped after has it sent once. Cut at every poll
    /// and every 100 ms of the wait.
    async fn a_call_dropped_while_the_queue_is_full_never_queues_its_job() {
        assert_cancel_safe_with(
            Options::default().cut_every(Duration::from_millis(100)),
            || {
                let (queue, log) = start_late_mailer();
                (MailClient::new(queue, ATTEMPT, ATTEMPTS), log, Instant::now())
            },
            |(client, _, _): (MailClient, Log, Instant)| async move {
                client.send_email(job(7)).await
            },
            |(_client, log, started), outcome| async move {
                let cut_at = started.elapsed();
                let cancelled = outcome.is_cancelled();
                if let Outcome::Completed(Err(e)) = outcome {
                    return Err(format!("the call failed without being cancelled: {e:?}"));
                }
                sleep(Duration::from_secs(30)).await;
                settle().await;
                let sent = log.sent(7);
                if cancelled && cut_at < LATE_START && sent != 0 {
                    return Err(format!(
                        "the call was dropped {cut_at:?} in, while the queue was still full (the \
                         mailer only starts at {LATE_START:?}), yet the email was later sent \
                         {sent} time(s): a call dropped before its job is on the queue must \
                         never queue it (the shopper may retry, and get it twice)"
                    ));
                }
                if sent > 1 {
                    return Err(format!("the email was sent {sent} times (expected at most once)"));
                }
                Ok(())
            },
        )
        .await;
    }

    /// The web request itself may be cancelled (the shopper closes the tab). Cut `send_email` at
    /// every await: whatever happens to the receipt, the email must be sent at most once.
    async fn a_cancelled_call_never_queues_the_email_twice() {
        assert_cancel_safe(
            || {
                let (queue, log) = start_mailer(Mailer::Takes(Duration::from_millis(2500)));
                (MailClient::new(queue, ATTEMPT, ATTEMPTS), log)
            },
            |(client, _log): (MailClient, Log)| async move { client.send_email(job(7)).await },
            |(_client, log), _outcome| async move {
                sleep(Duration::from_secs(30)).await;
                settle().await;
                match log.sent(7) {
                    0 | 1 => Ok(()),
                    n => Err(format!(
                        "the email was sent {n} times (expected at most once): every elapsed \
                         attempt queued the job again"
                    )),
                }
            },
        )
        .await;
    }

    /// The shopper closes the tab, then the same web server sends another shopper's email with
    /// the same client. Cut the first call at every await: the next call must queue its own job
    /// and return that job's receipt, whatever the dropped call left behind.
    async fn the_next_call_after_a_cancelled_one_sends_its_own_job() {
        assert_cancel_safe(
            || {
                let (queue, log) = start_mailer(Mailer::Takes(Duration::from_millis(1200)));
                (MailClient::new(queue, ATTEMPT, ATTEMPTS), log, Instant::now())
            },
            |(client, _, _): (MailClient, Log, Instant)| async move {
                client.send_email(job(7)).await
            },
            |(client, log, started), outcome| async move {
                let cut_at = started.elapsed();
                let first = if outcome.is_cancelled() {
                    format!("the call for job 7 was dropped {cut_at:?} in")
                } else {
                    "the call for job 7 ran to the end".to_string()
                };
                let next = client.send_email(job(8)).await;
                sleep(Duration::from_secs(30)).await;
                settle().await;
                let received = log.received(8);
                let expected = Ok(Receipt { job_id: 8, message_id: "msg-8".into() });
                if next != expected || received != 1 {
                    let why = if received > 1 {
                        "a call queues its job once: an elapsed attempt did not stop the worker, \
                         so queueing the job again duplicates it"
                    } else if received == 0 {
                        "each call queues its own job and returns that job's receipt: nothing a \
                         dropped call left behind may stand in for the next one"
                    } else {
                        "the mailer needs 1.2 s per email, so even behind job 7 it answers job 8 \
                         within the client's 3 attempts of 1 s: the client must return that \
                         receipt"
                    };
                    return Err(format!(
                        "{first}; the next call on the same client, for job 8, returned \
                         {next:?}, and the mailer received job 8 {received} time(s): {why}"
                    ));
                }
                let sent = log.sent(7);
                if sent > 1 {
                    return Err(format!(
                        "{first}; the email of job 7 was sent {sent} times (expected at most once)"
                    ));
                }
                Ok(())
            },
        )
        .await;
    }

    /// The mailer answers (or crashes) at many instants spread over the whole budget: just at,
    /// just after and well after each attempt boundary. Whenever it answers, the client returns
    /// the receipt at that very instant; whenever it drops the job, the client reports
    /// `WorkerDropped` at that very instant.
    async fn the_answer_is_returned_the_instant_it_comes_at_any_point_of_the_budget() {
        let offsets = [0, 1, 5, 250, 999];
        for attempt in 0..ATTEMPTS {
            for offset in offsets {
                let at = ATTEMPT * attempt + Duration::from_millis(offset);
                for crashes in [false, true] {
                    let mailer = if crashes { Mailer::Crashes(at) } else { Mailer::Takes(at) };
                    let (queue, log) = start_mailer(mailer);
                    let client = MailClient::new(queue, ATTEMPT, ATTEMPTS);
                    let start = Instant::now();
                    let outcome = timeout(Duration::from_secs(60), client.send_email(job(7)))
                        .await
                        .expect("send_email did not return within 60 s (virtual)");
                    let waited = start.elapsed();
                    let (what, expected) = if crashes {
                        ("dropped the job without answering", Err(CallError::WorkerDropped))
                    } else {
                        (
                            "sent the email and its receipt",
                            Ok(Receipt { job_id: 7, message_id: "msg-7".into() }),
                        )
                    };
                    assert!(
                        outcome == expected && waited == at,
                        "the worker took the job at once and {what} {at:?} in (the client has \
                         {ATTEMPTS} attempts of {ATTEMPT:?}); the client returned {outcome:?} \
                         after {waited:?}, expected {expected:?} at {at:?}: whenever the worker \
                         answers within the budget, the client must see it that very instant, \
                         not when its next wait ends"
                    );
                    sleep(Duration::from_secs(30)).await;
                    let received = log.received(7);
                    assert_eq!(
                        received, 1,
                        "the worker {what} {at:?} in, and received the job {received} times: \
                         the job must be queued once"
                    );
                }
            }
        }
    }

    /// The shopper closes the tab, then reloads and the web server sends the SAME email again
    /// (same job id) with the same client. Cut the first call at every await: the retry is a new
    /// call, so it must queue its own job (once) and return that job's receipt, whatever the
    /// dropped call left behind.
    async fn a_retry_of_the_same_job_after_a_cancelled_call_queues_it_again() {
        assert_cancel_safe(
            || {
                let (queue, log) = start_mailer(Mailer::Takes(Duration::from_millis(1200)));
                let watch = queue.clone();
                (MailClient::new(queue, ATTEMPT, ATTEMPTS), log, watch, Instant::now())
            },
            |(client, _, _, _): (MailClient, Log, mpsc::Sender<Request>, Instant)| async move {
                client.send_email(job(7)).await
            },
            |(client, log, watch, started), outcome| async move {
                let cut_at = started.elapsed();
                let first = if outcome.is_cancelled() {
                    format!("the call for job 7 was dropped {cut_at:?} in")
                } else {
                    "the call for job 7 ran to the end".to_string()
                };
                // Jobs of the first call: taken by the mailer, or still waiting on the queue.
                let queued_before = log.received(7) + (watch.max_capacity() - watch.capacity());
                drop(watch);
                let retry = timeout(Duration::from_secs(60), client.send_email(job(7))).await;
                sleep(Duration::from_secs(30)).await;
                settle().await;
                let received = log.received(7);
                let expected = Ok(Receipt { job_id: 7, message_id: "msg-7".into() });
                let Ok(retry) = retry else {
                    return Err(format!(
                        "{first}; the shopper's retry of job 7 on the same client was still \
                         waiting after 60 s (virtual) although the mailer answers every email in \
                         1.2 s"
                    ));
                };
                if retry != expected || received != queued_before + 1 {
                    let why = if received <= queued_before {
                        "the retry is a new call: it must queue its own job and return that \
                         job's receipt; nothing a dropped call left behind may stand in for it, \
                         even for the same job id"
                    } else if received > queued_before + 1 {
                        "a call queues its job once: an elapsed attempt did not stop the worker, \
                         so queueing the job again duplicates it"
                    } else {
                        "the mailer needs 1.2 s per email, so even behind the first job it \
                         answers the retry within the client's 3 attempts of 1 s: the client \
                         must return that receipt"
                    };
                    return Err(format!(
                        "{first}, having queued it {queued_before} time(s); the retry of job 7 on \
                         the same client returned {retry:?}, and the mailer received job 7 \
                         {} more time(s) after the cut: {why}",
                        received as isize - queued_before as isize
                    ));
                }
                Ok(())
            },
        )
        .await;
    }

    /// The worker answers (or crashes) inside the budget, but the call's task stops getting the
    /// thread (a busy runtime: other requests keep it) at some point of the budget: right after it
    /// queued its job, or a quarter into any attempt, having run through the attempts before as
    /// usual. It gets to run again only after the budget has ended. The answer is already there
    /// when the call looks, so it is the call's answer, whichever attempt the call was in: the
    /// client gives up only on a worker that has not answered. (Attempts of 100 ms here, so
    /// that a client that wakes often costs little while its task runs.)
    async fn an_answer_inside_the_budget_is_returned_even_if_the_call_runs_late() {
        let ms = Duration::from_millis;
        let attempt = ATTEMPT / 10;
        let budget = attempt * ATTEMPTS;
        let quarter_into_each_attempt = (0..ATTEMPTS).map(|k| attempt * k + attempt / 4);
        for stall_at in std::iter::once(Duration::ZERO).chain(quarter_into_each_attempt) {
            for answer_at in [stall_at + attempt / 4, budget - ms(1)] {
                for late in [ms(1), attempt / 10, budget] {
                    for crashes in [false, true] {
                        let (queue, mut jobs) = mpsc::channel::<Request>(8);
                        let client = MailClient::new(queue, attempt, ATTEMPTS);
                        let start = Instant::now();
                        let (call, gate) = spawn_starvable(async move {
                            client.send_email(job(7)).await
                        });
                        let Ok(Some(Request { reply, .. })) = timeout(ms(1), jobs.recv()).await
                        else {
                            panic!("the queue had room, yet send_email did not queue its job");
                        };
                        sleep_until(start + stall_at).await;
                        // From here on the call's task is woken as usual but does not get the
                        // thread until the budget has ended.
                        gate.shut();
                        sleep_until(start + answer_at).await;
                        let (what, expected) = if crashes {
                            drop(reply);
                            ("dropped the job without answering", Err(CallError::WorkerDropped))
                        } else {
                            let receipt = Receipt { job_id: 7, message_id: "msg-7".into() };
                            let _ = reply.send(receipt.clone());
                            ("sent the email and its receipt", Ok(receipt))
                        };
                        sleep_until(start + budget + late).await;
                        gate.open();
                        let outcome = timeout(Duration::from_secs(60), call)
                            .await
                            .expect("send_email did not return within 60 s (virtual)")
                            .expect("send_email panicked");
                        let ran_until = if stall_at.is_zero() {
                            "until it had queued its job".to_string()
                        } else {
                            format!(
                                "as usual until {stall_at:?} (attempt {} of {ATTEMPTS})",
                                stall_at.as_millis() / attempt.as_millis() + 1
                            )
                        };
                        assert!(
                            outcome == expected,
                            "the worker took the job at once and {what} {answer_at:?} in, inside \
                             the client's budget of {ATTEMPTS} attempts of {attempt:?}; the \
                             call's task ran {ran_until}, then got to run again only {late:?} \
                             after the budget ended (a busy runtime), and returned {outcome:?}, \
                             expected {expected:?}. The answer was already there when the call \
                             looked, so it is the call's answer, whichever attempt the call was \
                             in: a client that gives up on a worker that has answered tells the \
                             shop \"not confirmed\" for an email that was sent (or calls a crash \
                             a stuck worker)"
                        );
                    }
                }
            }
        }
    }

    /// The queue is full and the call waits for room; 1 ms later another part of the shop (the
    /// newsletter service, with a plain `send`) waits for room on the same queue. The mailer
    /// starts taking jobs at instants off any round grid and answers each at once. The call's
    /// job gets onto the queue the instant room frees, ahead of the sender that came after it,
    /// and its receipt comes at that instant.
    async fn a_call_waiting_for_room_is_queued_in_turn_the_instant_room_frees() {
        let ms = Duration::from_millis;
        for room_at in [ms(7), ms(505), ms(999), ATTEMPT + ms(37), ATTEMPT * 2 + ms(1)] {
            let (queue, mut jobs) = mpsc::channel::<Request>(1);
            let (earlier, _) = tokio::sync::oneshot::channel();
            queue
                .try_send(Request { job: job(1), reply: earlier })
                .expect("the queue has room for the earlier job");
            let taken = Arc::new(Mutex::new(Vec::new()));
            let mailer_taken = taken.clone();
            tokio::spawn(async move {
                sleep(room_at).await;
                while let Some(Request { job, reply }) = jobs.recv().await {
                    mailer_taken.lock().unwrap().push(job.id);
                    let _ = reply.send(Receipt { job_id: job.id, message_id: format!("msg-{}", job.id) });
                }
            });
            let client = MailClient::new(queue.clone(), ATTEMPT, ATTEMPTS);
            let call = tokio::spawn(async move {
                let start = Instant::now();
                let outcome = client.send_email(job(7)).await;
                (outcome, start.elapsed())
            });
            sleep(Duration::from_millis(1)).await;
            let (other, _) = tokio::sync::oneshot::channel();
            let newsletter = tokio::spawn(async move {
                let _ = queue.send(Request { job: job(2), reply: other }).await;
            });
            let (outcome, waited) = timeout(Duration::from_secs(60), call)
                .await
                .expect("send_email did not return within 60 s (virtual)")
                .expect("send_email panicked");
            let _ = newsletter.await;
            settle().await;
            let order = taken.lock().unwrap().clone();
            let receipt = Ok(Receipt { job_id: 7, message_id: "msg-7".into() });
            let position = |id| order.iter().position(|taken| *taken == id);
            // A client that starts a new wait for room at each attempt may rejoin the line at
            // its back then, so the order is checked only for room that frees in the first one.
            let in_turn = room_at >= ATTEMPT
                || matches!((position(7), position(2)), (Some(ours), Some(theirs)) if ours < theirs);
            assert!(
                outcome == receipt && waited == room_at && in_turn,
                "the queue (capacity 1) was full; the call started waiting for room at 0 s and \
                 another sender (the newsletter service) 1 ms later; the mailer started taking \
                 jobs at {room_at:?} and answered each at once. The mailer took the jobs in the \
                 order {order:?} (job 1 was already queued, job 7 is the call's, job 2 the other \
                 sender's), and the call returned {outcome:?} after {waited:?}. Expected job 7 \
                 taken before job 2 and the receipt at {room_at:?}: a call that waits for room \
                 gets onto the queue the instant room frees for it, and a sender that started \
                 waiting after it does not go first (on a busy queue, it would be overtaken for \
                 ever)"
            );
        }
    }

    /// The queue is full, and web requests call `send_email` on clones of one client one after
    /// another, each waiting for room; between each two of them another part of the shop (the
    /// newsletter service, with a plain `send`) starts waiting for room too. The mailer starts
    /// taking jobs inside the first attempt and answers each at once. Every call keeps its own
    /// place in the queue's line: the jobs are taken in the order their senders started waiting,
    /// and each call's receipt comes the instant room frees. One call must not hold another's
    /// place (a lock or a few permits shared by the clones around the wait for room put the
    /// later calls behind every other sender that came meanwhile). 64 calls, more than any
    /// such limit a client would plausibly set itself.
    async fn calls_on_clones_waiting_for_room_keep_their_places_among_other_senders() {
        let ms = Duration::from_millis;
        let room_at = ms(505);
        for callers in [2u64, 64] {
            let (order, expected, wrong) =
                line_up_for_room(callers, 1000, Pace::EveryMillisecond, room_at).await;
            let who = |id: u64| {
                if id == 0 {
                    "job 0 (already queued)".to_string()
                } else if id > 1000 {
                    format!("the other sender's job {id} (waiting from {:?})", ms(2 * (id - 1001) + 1))
                } else {
                    format!("call {id}'s job (waiting from {:?})", ms(2 * (id - 1)))
                }
            };
            let overtaken = order.iter().zip(&expected).find(|(seen, due)| seen != due).map(
                |(seen, due)| format!("{} was taken where {} was due", who(*seen), who(*due)),
            );
            let wrong_shown: Vec<_> = wrong.iter().take(4).collect();
            assert!(
                overtaken.is_none() && order.len() == expected.len() && wrong.is_empty(),
                "the queue (capacity 1) was full; {callers} calls on clones of one client (jobs 1 \
                 to {callers}) started waiting for room at 0, 2, 4 ms ..., and another sender \
                 (jobs 1001 on) at 1, 3, 5 ms ...; the mailer started taking jobs at {room_at:?} \
                 and answered each at once. First out of turn: {}; the mailer took {} of {} \
                 jobs; {} call(s) did not return their receipt at {room_at:?} (first ones: \
                 {wrong_shown:?}). Expected every job taken in the order its sender started \
                 waiting, and each call's receipt at {room_at:?}: a call that waits for room \
                 keeps its own place in the queue's line, and no call of the same client may \
                 hold it for it (the senders that came meanwhile go first, and on a busy queue \
                 a call is overtaken again and again)",
                overtaken.unwrap_or_else(|| "none".to_string()),
                order.len(),
                expected.len(),
                wrong.len()
            );
        }
    }

    /// The same, with 1,100 calls on clones of one client waiting for room one after another,
    /// and another sender joining the line between each two of them: past any turnstile of 64,
    /// 256 or 1,024 calls a client might put around the wait for room (the README states 1,100
    /// as the floor of any limit on calls in flight). One `select!` seed, for cost.
    fn a_thousand_calls_waiting_for_room_keep_their_places_among_other_senders() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let ms = Duration::from_millis;
            let room_at = ms(505);
            for callers in [1100u64] {
                let (order, expected, wrong) =
                    line_up_for_room(callers, 1_000_000, Pace::OneAfterAnother, room_at).await;
                let who = |id: u64| {
                    if id == 0 {
                        "job 0 (already queued)".to_string()
                    } else if id > 1_000_000 {
                        let after = id - 1_000_000;
                        format!("the other sender's job {id} (waiting after call {after})")
                    } else {
                        format!("call {id}'s job")
                    }
                };
                let overtaken = order.iter().zip(&expected).find(|(seen, due)| seen != due).map(
                    |(seen, due)| format!("{} was taken where {} was due", who(*seen), who(*due)),
                );
                let wrong_shown: Vec<_> = wrong.iter().take(4).collect();
                assert!(
                    overtaken.is_none() && order.len() == expected.len() && wrong.is_empty(),
                    "the queue (capacity 1) was full; {callers} calls on clones of one client \
                     (jobs 1 to {callers}) started waiting for room one after another, and \
                     another sender (jobs 1000001 on) between each two of them; the mailer \
                     started taking jobs at {room_at:?} and answered each at once. First out of \
                     turn: {}; the mailer took {} of {} jobs; {} call(s) did not return their \
                     receipt at {room_at:?} (first ones: {wrong_shown:?}). Expected every job \
                     taken in the order its sender started waiting, and each call's receipt at \
                     {room_at:?}: a call that waits for room keeps its own place in the queue's \
                     line, and no call of the same client may hold it for it, however many wait",
                    overtaken.unwrap_or_else(|| "none".to_string()),
                    order.len(),
                    expected.len(),
                    wrong.len()
                );
            }
        });
    }

    /// The queue is full until an instant inside the budget, off any round grid; the mailer then
    /// takes the call's job at once and is stuck. The client may count its budget from the start
    /// of the call or from the moment its job got onto the queue, but its `TimedOut` must come by
    /// the end of the later of those two budgets: a stuck worker must not hang the web request.
    async fn a_call_queued_late_gives_up_by_the_end_of_its_budget() {
        let ms = Duration::from_millis;
        let budget = ATTEMPT * ATTEMPTS;
        for room_at in [ms(505), ATTEMPT + ms(37), ATTEMPT + ms(900), ATTEMPT * 2 + ms(505)] {
            let (queue, mut jobs) = mpsc::channel::<Request>(1);
            let (earlier, _) = tokio::sync::oneshot::channel();
            queue
                .try_send(Request { job: job(1), reply: earlier })
                .expect("the queue has room for the earlier job");
            let taken_at = Arc::new(Mutex::new(None));
            let mailer_taken = taken_at.clone();
            let start = Instant::now();
            tokio::spawn(async move {
                sleep(room_at).await;
                let mut stuck = Vec::new();
                while let Some(Request { job, reply }) = jobs.recv().await {
                    if job.id == 7 {
                        *mailer_taken.lock().unwrap() = Some(start.elapsed());
                    }
                    stuck.push(reply);
                }
            });
            let client = MailClient::new(queue, ATTEMPT, ATTEMPTS);
            let outcome = timeout(Duration::from_secs(60), client.send_email(job(7))).await;
            let waited = start.elapsed();
            let taken = *taken_at.lock().unwrap();
            let latest = taken.map_or(budget, |queued| (queued + budget).max(budget));
            assert!(
                outcome == Ok(Err(CallError::TimedOut)) && waited <= latest,
                "the queue (capacity 1) was full until {room_at:?}; the mailer then took the \
                 call's job (at {taken:?}) and never answered. The client's budget is {ATTEMPTS} \
                 attempts of {ATTEMPT:?}, counted from the start of the call or from the moment \
                 the job got onto the queue: it must give up by {latest:?} at the latest. It \
                 returned {outcome:?} after {waited:?}: a stuck worker must not hang the web \
                 request past the budget"
            );
        }
    }

    /// Several web requests share one client (clones of it), and the worker is stuck: each call's
    /// job gets onto the queue (which has room) at once, and each call gives up at the end of its
    /// own budget, not after another call's. A busy shop makes many calls at once (64, then
    /// 1100, more than any limit of calls in flight a client would plausibly set itself: a
    /// "bulkhead" of 32, 128 or 1024 keeps the rest of the jobs off the queue until the calls give
    /// up).
    async fn concurrent_calls_on_one_client_each_keep_their_own_budget() {
        let budget = ATTEMPT * ATTEMPTS;
        for callers in [2u64, 3, 64, MANY_CALLS] {
            let (queue, mut jobs) = mpsc::channel::<Request>(MANY_CALLS as usize);
            let taken = Arc::new(Mutex::new(Vec::new()));
            let mailer_taken = taken.clone();
            let start = Instant::now();
            tokio::spawn(async move {
                let mut stuck = Vec::new();
                while let Some(Request { job, reply }) = jobs.recv().await {
                    mailer_taken.lock().unwrap().push((job.id, start.elapsed()));
                    stuck.push(reply);
                }
            });
            let client = MailClient::new(queue, ATTEMPT, ATTEMPTS);
            let calls: Vec<_> = (1..=callers)
                .map(|id| {
                    let client = client.clone();
                    tokio::spawn(async move {
                        let outcome = client.send_email(job(id)).await;
                        (id, outcome, start.elapsed())
                    })
                })
                .collect();
            let mut ended = Vec::new();
            for call in calls {
                let ended_call = timeout(Duration::from_secs(60), call)
                    .await
                    .map(|joined| joined.expect("send_email panicked"));
                ended.push(ended_call);
            }
            let taken = taken.lock().unwrap().clone();
            let all_taken_at_once = taken.len() == callers as usize
                && taken.iter().all(|(_, at)| at.is_zero());
            // Only the jobs that went wrong, and only the first few of them, so that a thousand
            // calls give a short message.
            let first_few = |wrong: Vec<String>| match wrong.len() {
                0 => "none".to_string(),
                n if n <= 4 => wrong.join(", "),
                n => format!("{}, and {} more", wrong[..4].join(", "), n - 4),
            };
            let late = first_few(
                taken
                    .iter()
                    .filter(|(_, at)| !at.is_zero())
                    .map(|(job, at)| format!("job {job} at {at:?}"))
                    .collect(),
            );
            let not_taken = first_few(
                (1..=callers)
                    .filter(|id| !taken.iter().any(|(job, _)| job == id))
                    .map(|id| format!("job {id}"))
                    .collect(),
            );
            let ended: Vec<_> = ended
                .into_iter()
                .filter(|ended| {
                    !matches!(ended, Ok((_, Err(CallError::TimedOut), waited))
                        if *waited <= budget + Duration::from_millis(10))
                })
                .map(|ended| match ended {
                    Ok((id, outcome, at)) => format!("job {id}'s call: {outcome:?} at {at:?}"),
                    Err(_) => "a call still waiting after 60 s".to_string(),
                })
                .collect();
            let all_in_budget = ended.is_empty();
            let ended = first_few(ended);
            assert!(
                all_taken_at_once && all_in_budget,
                "{callers} web requests called send_email at once on clones of one client (jobs \
                 1 to {callers}); the queue had room for all of them and the mailer took every \
                 job it got and never answered. The mailer took these jobs late: {late}; never \
                 took these: {not_taken}; and these calls did not end in `Err(TimedOut)` by the \
                 budget: {ended}. Expected \
                 every job taken at 0 s and every call to end in `Err(TimedOut)` by {budget:?}: one call must not \
                 keep another's job off a queue with room, or make it wait out another call's \
                 budget before its own starts (a stuck worker must not hang the web requests)"
            );
        }
    }
    /// One client and its clones serve one web request after another, and the mailer changes
    /// from one email to the next: fast, slow, stuck, crashed. Each call queues its own job at
    /// once and ends as a call on a fresh client would: a receipt or a crash the instant it comes,
    /// `TimedOut` at the end of its own budget. What an earlier call saw must not make a later one
    /// wait longer, give up sooner, or fail without asking the worker (an adaptive timeout, a
    /// circuit breaker: those are the caller's policy, not `send_email`'s). (Attempts of 100 ms
    /// here, so that a client that wakes often costs little.)
    async fn each_call_on_a_client_ends_as_the_first_whatever_the_calls_before_it_saw() {
        let ms = Duration::from_millis;
        let attempt = ATTEMPT / 10;
        let budget = attempt * ATTEMPTS;
        let script = [
            Mailer::Takes(ms(150)),
            Mailer::Takes(budget - attempt / 2),
            Mailer::Stuck,
            Mailer::Stuck,
            Mailer::Stuck,
            Mailer::Takes(Duration::ZERO),
            Mailer::Crashes(attempt + attempt / 2),
            Mailer::Takes(ms(5)),
            Mailer::Takes(ms(5)),
            Mailer::Takes(budget - ms(1)),
            Mailer::Stuck,
            Mailer::Crashes(Duration::ZERO),
            Mailer::Crashes(Duration::ZERO),
            Mailer::Takes(attempt + ms(1)),
        ];
        let (queue, mut jobs) = mpsc::channel::<Request>(8);
        let taken = Arc::new(Mutex::new(Vec::new()));
        let mailer_taken = taken.clone();
        let start = Instant::now();
        tokio::spawn(async move {
            let mut stuck = Vec::new();
            while let Some(Request { job, reply }) = jobs.recv().await {
                mailer_taken.lock().unwrap().push((job.id, start.elapsed()));
                let Some(behaviour) = usize::try_from(job.id - 1).ok().and_then(|i| script.get(i))
                else {
                    continue;
                };
                match *behaviour {
                    Mailer::Takes(work) => {
                        sleep(work).await;
                        let receipt =
                            Receipt { job_id: job.id, message_id: format!("msg-{}", job.id) };
                        let _ = reply.send(receipt);
                    }
                    Mailer::Stuck => stuck.push(reply),
                    Mailer::Crashes(after) => {
                        sleep(after).await;
                        drop(reply);
                    }
                    _ => unreachable!("the script uses only these"),
                }
            }
        });
        let client = MailClient::new(queue, attempt, ATTEMPTS);
        let mut before = Vec::new();
        for (id, behaviour) in (1u64..).zip(script) {
            // Every other call on a clone: a web server shares one client across its requests.
            let clone;
            let caller = if id % 2 == 0 {
                clone = client.clone();
                &clone
            } else {
                &client
            };
            let called_at = start.elapsed();
            let outcome = timeout(Duration::from_secs(60), caller.send_email(job(id))).await;
            let waited = start.elapsed() - called_at;
            let queued: Vec<Duration> = taken
                .lock()
                .unwrap()
                .iter()
                .filter(|(job, _)| *job == id)
                .map(|(_, at)| *at - called_at)
                .collect();
            let receipt = Ok(Receipt { job_id: id, message_id: format!("msg-{id}") });
            let (mailer, ok) = match behaviour {
                Mailer::Takes(work) => (
                    format!("answer job {id} {work:?} after taking it"),
                    outcome == Ok(receipt.clone()) && waited == work,
                ),
                Mailer::Crashes(after) => (
                    format!("drop job {id} without answering {after:?} after taking it"),
                    outcome == Ok(Err(CallError::WorkerDropped)) && waited == after,
                ),
                _ => (
                    format!("take job {id} and never answer"),
                    outcome == Ok(Err(CallError::TimedOut))
                        && waited >= budget
                        && waited <= budget + ms(10),
                ),
            };
            let expected = match behaviour {
                Mailer::Takes(work) => format!("{receipt:?} at {work:?}"),
                Mailer::Crashes(after) => format!("`Err(WorkerDropped)` at {after:?}"),
                _ => format!("`Err(TimedOut)` at the end of the call's own budget, {budget:?}"),
            };
            let returned = match outcome {
                Ok(outcome) => format!("returned {outcome:?} after {waited:?}"),
                Err(_) => format!("was still waiting after {waited:?}"),
            };
            let took = match queued.as_slice() {
                [] => "never got the job".to_string(),
                [at] => format!("got the job {at:?} after the call started"),
                more => format!("got the job {} times, at {more:?} into the call", more.len()),
            };
            let history = if before.is_empty() {
                "had had no job".to_string()
            } else {
                format!("was to {}", before.join(", then "))
            };
            assert!(
                ok && queued == [Duration::ZERO],
                "one client (a budget of {ATTEMPTS} attempts of {attempt:?}) and its clones made \
                 calls one after another, the queue having room each time. Before call {id}, the \
                 mailer {history}. Call {id}: the mailer was to {mailer}; it {took}, and the call \
                 {returned}. Expected the job taken once, at once, and {expected}, as on a \
                 fresh client: a call queues its own job and waits its own budget, whatever the \
                 calls before it saw (a slow mailer, a stuck one, a crash)"
            );
            before.push(mailer);
        }
    }

    /// A long run of failures on one client and its clones: 200 calls in a row on a stuck
    /// mailer, then 200 on a mailer that crashes at once, then 20 on a mailer that answers at
    /// once. However many calls failed before it, each call queues its own job at once and ends
    /// as on a fresh client.
    async fn a_long_run_of_failed_calls_changes_nothing_for_the_next_one() {
        a_long_run_of_failed_calls(200, 200, 20).await;
    }

    /// The same, ten thousand calls long: 4,000 calls in a row on a stuck mailer (past any
    /// circuit breaker's count), then 4,000 on one that crashes at once, then 2,000 answered at
    /// once. One `select!` seed: each call costs its budget's timers, and the test above varies
    /// the seeds.
    fn ten_thousand_calls_in_a_row_each_end_as_on_a_fresh_client() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(a_long_run_of_failed_calls(4_000, 4_000, 2_000));
    }

    /// A handler creates the call's future and awaits it only later: after seconds of other
    /// work, after a whole other call on the same client, or a week later. The call starts
    /// when its future is first polled: it queues its job then, and its budget counts from
    /// then, so a mailer that answers within the budget sees its receipt returned, and a stuck
    /// one makes the call give up a whole budget after its first poll, not before.
    async fn a_call_starts_when_its_future_is_first_polled() {
        let ms = Duration::from_millis;
        let budget = ATTEMPT * ATTEMPTS;
        let week = Duration::from_secs(7 * 24 * 3600);
        let scenarios = [
            ("5 s of other work", ms(5_000), false, Some(ms(1_500))),
            ("5 s of other work", ms(5_000), false, None),
            ("a week", week, false, Some(budget - ms(1))),
            ("another call on the same client, to its end", Duration::ZERO, true, Some(ms(2_500))),
            ("another call on the same client, to its end", Duration::ZERO, true, None),
        ];
        for (meanwhile, delay, other_call, work) in scenarios {
            let start = Instant::now();
            let (queue, taken) = start_counting_mailer(work, start);
            let client = MailClient::new(queue, ATTEMPT, ATTEMPTS);
            let call = client.send_email(job(1));
            if other_call {
                let _ = timeout(Duration::from_secs(60), client.send_email(job(2))).await;
            }
            sleep(delay).await;
            let first_poll = start.elapsed();
            let outcome = timeout(Duration::from_secs(60), call).await;
            let waited = start.elapsed() - first_poll;
            let queued: Vec<Duration> = taken
                .lock()
                .unwrap()
                .iter()
                .filter(|(job, _)| *job == 1)
                .map(|(_, at)| *at)
                .collect();
            let (mailer, expected, ok) = match work {
                Some(work) => {
                    let receipt = Ok(Receipt { job_id: 1, message_id: "msg-1-1".into() });
                    let receipt = if other_call {
                        Ok(Receipt { job_id: 1, message_id: "msg-1-2".into() })
                    } else {
                        receipt
                    };
                    (
                        format!("answers each job {work:?} after taking it"),
                        format!("the job's receipt {work:?} after the first poll"),
                        outcome == Ok(receipt) && waited == work,
                    )
                }
                None => (
                    "never answers".to_string(),
                    format!("`Err(TimedOut)` a whole budget ({budget:?}) after the first poll"),
                    outcome == Ok(Err(CallError::TimedOut))
                        && waited >= budget
                        && waited <= budget + ms(10),
                ),
            };
            let returned = match outcome {
                Ok(outcome) => format!("returned {outcome:?} {waited:?} after its first poll"),
                Err(_) => format!("was still waiting {waited:?} after its first poll"),
            };
            assert!(
                ok && queued == [first_poll],
                "a handler created a call's future at 0 s and awaited it only after \
                 {meanwhile}, at {first_poll:?}, with a mailer that {mailer} (a budget of \
                 {ATTEMPTS} attempts of {ATTEMPT:?}). The mailer took the call's job at \
                 {queued:?}, and the call {returned}. Expected the job taken once, at the first \
                 poll, and {expected}: a call starts when its future is first polled, not when \
                 `send_email` is called"
            );
        }
    }

    /// The shopper reloads in another tab: two or three web requests call `send_email` for the
    /// same job (the same id, the same email) while the first call still waits, on one client and
    /// on its clones. Each is a call of its own: it queues its own job at once, returns the
    /// receipt of that job the instant the mailer answers it, or gives up at the end of its own
    /// budget on a stuck mailer. (If the same email must not go out twice, that is the worker's
    /// idempotency key, not the client's.)
    async fn calls_at_once_for_the_same_job_each_queue_it_and_wait_their_own_budget() {
        let ms = Duration::from_millis;
        let budget = ATTEMPT * ATTEMPTS;
        for work in [Some(ms(500)), None] {
            let start = Instant::now();
            let (queue, taken) = start_counting_mailer(work, start);
            let client = MailClient::new(queue, ATTEMPT, ATTEMPTS);
            let starts = [Duration::ZERO, ms(250), ATTEMPT + ms(500)];
            let calls: Vec<_> = starts
                .iter()
                .map(|&at| {
                    let client = client.clone();
                    tokio::spawn(async move {
                        sleep_until(start + at).await;
                        let outcome = client.send_email(job(7)).await;
                        (outcome, start.elapsed())
                    })
                })
                .collect();
            let mut ended = Vec::new();
            for call in calls {
                let outcome = timeout(Duration::from_secs(60), call)
                    .await
                    .map(|joined| joined.expect("send_email panicked"));
                ended.push(outcome);
            }
            let taken = taken.lock().unwrap().clone();
            // What each call should have seen: its own job taken when the mailer is free, and
            // answered `work` later, or `TimedOut` at the end of its own budget.
            let mut free_at = Duration::ZERO;
            let mut expected = Vec::new();
            for (nth, &at) in (1..).zip(&starts) {
                expected.push(match work {
                    Some(work) => {
                        let answered = at.max(free_at) + work;
                        free_at = answered;
                        let receipt = Receipt { job_id: 7, message_id: format!("msg-7-{nth}") };
                        Ok((Ok(receipt), answered))
                    }
                    None => Ok((Err(CallError::TimedOut), at + budget)),
                });
            }
            let taken_at: Vec<Duration> = taken.iter().map(|&(_, at)| at).collect();
            let jobs_ok = match work {
                Some(_) => taken.len() == starts.len(),
                None => taken_at == starts,
            };
            let mailer = match work {
                Some(work) => format!(
                    "a mailer that takes one job at a time and answers each {work:?} after taking \
                     it, with a message id of its own per job it takes"
                ),
                None => "a stuck mailer (it takes every job and never answers)".to_string(),
            };
            assert!(
                jobs_ok && ended == expected,
                "the shopper reloaded in other tabs: three calls for the same job 7 started at \
                 {starts:?} on clones of one client (a budget of {ATTEMPTS} attempts of \
                 {ATTEMPT:?}), with {mailer}. The mailer took job 7 at {taken_at:?}; the calls \
                 ended (outcome, instant) as {ended:?}, expected {expected:?}. Each call queues \
                 its own job at once and waits for that job's receipt, for its own budget, even \
                 when another call is sending the same email: a call that waits on another \
                 call's job gives up at the end of that call's budget, or returns a receipt it \
                 did not ask for"
            );
        }
    }

    /// A web server shares one client (or its clones) across the request handlers it spawns on
    /// its multi-thread runtime: `MailClient` must stay `Send` and `Sync`, and `send_email`'s
    /// future `Send`, as the original's are.
    async fn a_client_can_be_shared_by_spawned_handlers() {
        let (queue, _log) = start_mailer(Mailer::Takes(Duration::ZERO));
        let client = MailClient::new(queue, ATTEMPT, ATTEMPTS);
        let mut not_shareable = Vec::new();
        if !kata_support::is_send!(client) {
            not_shareable.push("`MailClient` is not `Send`");
        }
        // A shared reference is `Send` exactly when what it points to is `Sync`.
        if !kata_support::is_send!(&client) {
            not_shareable.push("`MailClient` is not `Sync`");
        }
        let call = client.send_email(job(7));
        if !kata_support::is_send!(call) {
            not_shareable.push("the future returned by `send_email` is not `Send`");
        }
        let outcome = call.await;
        assert!(
            not_shareable.is_empty(),
            "{}: the web server can no longer share one client across the request handlers it \
             `tokio::spawn`s on its multi-thread runtime. A call holds nothing across an \
             `.await` that is not `Send` (an `Rc`, a `RefCell` borrow, a `std` lock guard), and \
             what the client's clones share needs a lock that threads can share",
            not_shareable.join(", and ")
        );
        let receipt = Receipt { job_id: 7, message_id: "msg-7".into() };
        assert_eq!(outcome, Ok(receipt), "a fast mailer answered: the call must return its receipt");
    }

    /// Clients built at the short end of what `MailClient::new` takes: attempts of no time at all
    /// (a client that does not wait for the receipt), none, one or three of them, and no attempt
    /// or one of a second. No call may panic: with no time to wait, a call on a stuck mailer
    /// gives up with `TimedOut` at once; with one attempt, it returns a receipt that comes within
    /// it, or gives up at its end. (The long end, `u32::MAX` daily attempts, is
    /// `the_budget_is_the_clients_own_attempts_times_attempt_timeout`'s.)
    async fn clients_built_with_no_time_or_no_attempt_answer_or_give_up() {
        #[derive(Debug, Clone, Copy)]
        enum Expect {
            /// `Err(TimedOut)`, no sooner than the first and no later than the second.
            TimedOut(Duration, Duration),
            /// The receipt, at this instant.
            Receipt(Duration),
        }
        let ms = Duration::from_millis;
        let year = Duration::from_secs(365 * 24 * 3600);
        let zero = Duration::ZERO;
        let cases = [
            (zero, 0, None, Expect::TimedOut(zero, zero)),
            (zero, 1, None, Expect::TimedOut(zero, zero)),
            (zero, ATTEMPTS, None, Expect::TimedOut(zero, zero)),
            (ATTEMPT, 0, None, Expect::TimedOut(zero, ATTEMPT + ms(10))),
            (ATTEMPT, 1, Some(ATTEMPT - ms(1)), Expect::Receipt(ATTEMPT - ms(1))),
            (ATTEMPT, 1, None, Expect::TimedOut(ATTEMPT, ATTEMPT + ms(10))),
        ];
        for (attempt, attempts, answer_at, expect) in cases {
            let mailer = match answer_at {
                Some(at) => Mailer::Takes(at),
                None => Mailer::Stuck,
            };
            let (queue, log) = start_mailer(mailer);
            let client = MailClient::new(queue, attempt, attempts);
            let start = Instant::now();
            let outcome = run_caught(async move {
                let outcome = timeout(year, client.send_email(job(7))).await;
                (outcome, start.elapsed())
            })
            .await;
            settle().await;
            let mailer = match answer_at {
                Some(at) => format!("took the job at once and answered {at:?} in"),
                None => "took the job at once and never answered".to_string(),
            };
            let setting = format!(
                "a client of {attempts} attempt(s) of {attempt:?}; the mailer {mailer}, and got \
                 the job {} time(s)",
                log.received(7)
            );
            let (outcome, waited) = match outcome {
                Ok(seen) => seen,
                Err(panic) => panic!(
                    "{setting}. The call panicked ({panic:?}) instead of returning: \
                     `MailClient::new` takes any attempt length, `Duration::ZERO` included, and \
                     any number of attempts, and a call on such a client must not panic (with no \
                     time to wait, it gives up at once when the worker has not answered)"
                ),
            };
            let returned = match &outcome {
                Ok(outcome) => format!("returned {outcome:?} after {waited:?}"),
                Err(_) => format!("was still waiting after {waited:?}"),
            };
            let (ok, expected) = match expect {
                Expect::TimedOut(from, by) => (
                    outcome == Ok(Err(CallError::TimedOut)) && waited >= from && waited <= by,
                    format!("`Err(TimedOut)` after {from:?} to {by:?} (its budget)"),
                ),
                Expect::Receipt(at) => {
                    let receipt = Receipt { job_id: 7, message_id: "msg-7".into() };
                    (
                        outcome == Ok(Ok(receipt.clone())) && waited == at,
                        format!("{receipt:?} at {at:?}, the instant the mailer answered"),
                    )
                }
            };
            assert!(
                ok && log.received(7) <= 1,
                "{setting}. The call {returned}, expected the job once at most and {expected}: a \
                 call waits its client's own attempts × attempt_timeout, whatever they are"
            );
        }
    }

    /// Clients built with other budgets than 3 attempts of 1 s: five attempts of a second, three
    /// of twenty seconds, forty of 250 ms, two of an hour, a year of daily attempts, and as many
    /// daily attempts as a `u32` holds. A mailer that answers just before the end of the budget
    /// (or, for the last, two years in) must see its receipt returned the instant it answers; a
    /// stuck one must make the call give up at the end of its budget, not before (a hard cap on
    /// the wait, or on the attempts, is not the client's to add).
    async fn the_budget_is_the_clients_own_attempts_times_attempt_timeout() {
        let ms = Duration::from_millis;
        let day = Duration::from_secs(24 * 3600);
        let clients = [
            (ATTEMPT, 5),
            (ATTEMPT * 20, 3),
            (ms(250), 40),
            (Duration::from_secs(3600), 2),
            (day, 365),
            (day, u32::MAX),
        ];
        for (attempt, attempts) in clients {
            let budget = attempt * attempts;
            // Daily attempts for as long as a `u32` counts them: a budget of millions of years,
            // so only a mailer that answers (two years in) ends the call.
            let answers = if attempts == u32::MAX {
                vec![Some(day * 730 + day / 2)]
            } else {
                vec![Some(budget - attempt / 2), Some(budget - ms(1)), None]
            };
            for answer_at in answers {
                let mailer = match answer_at {
                    Some(at) => Mailer::Takes(at),
                    None => Mailer::Stuck,
                };
                let (queue, log) = start_mailer(mailer);
                let client = MailClient::new(queue, attempt, attempts);
                let start = Instant::now();
                let outcome = timeout(day * 800, client.send_email(job(7))).await;
                let waited = start.elapsed();
                let (ok, expected) = match answer_at {
                    Some(at) => {
                        let receipt = Receipt { job_id: 7, message_id: "msg-7".into() };
                        (
                            outcome == Ok(Ok(receipt.clone())) && waited == at,
                            format!("{receipt:?} at {at:?}, the instant the mailer answered"),
                        )
                    }
                    None => (
                        outcome == Ok(Err(CallError::TimedOut))
                            && waited >= budget
                            && waited <= budget + ms(10),
                        format!("`Err(TimedOut)` at the end of the budget, {budget:?}"),
                    ),
                };
                let mailer = match answer_at {
                    Some(at) => format!("took the job at once and answered {at:?} in"),
                    None => "took the job at once and never answered".to_string(),
                };
                let returned = match outcome {
                    Ok(outcome) => format!("returned {outcome:?} after {waited:?}"),
                    Err(_) => format!("was still waiting after {waited:?}"),
                };
                assert!(
                    ok && log.received(7) == 1,
                    "a client of {attempts} attempts of {attempt:?} (a budget of {budget:?}); the \
                     mailer {mailer}, and got the job {} time(s). The call {returned}, expected \
                     the job once and {expected}: a call waits its client's own attempts × \
                     attempt_timeout, whatever they are, no longer and no shorter",
                    log.received(7)
                );
            }
        }
    }

    /// Budgets far past the longest one above that a mailer can end, up to the floor the README
    /// states (a hundred thousand years): one attempt of 2^30 s to 2^41 s, or of a millisecond
    /// under the floor, against a mailer that takes the job and never answers. The call gives up
    /// with `TimedOut` when its budget has run out, or at tokio's 30-year `sleep` limit for a
    /// longer one, never in between (a cap of the call's own, say the budget kept in a `u32` of
    /// seconds, gives up there) and never not at all. One `select!` seed, since nothing here is
    /// ready at the same moment as anything else.
    fn a_budget_short_of_a_hundred_thousand_years_ends_at_its_end() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let secs = Duration::from_secs;
            let sleep_limit = kata_support::time::SLEEP_LIMIT;
            for budget in kata_support::time::waits_short_of_a_hundred_thousand_years() {
                let (queue, log) = start_mailer(Mailer::Stuck);
                let client = MailClient::new(queue, budget, 1);
                let start = Instant::now();
                let outcome = timeout(budget + secs(24 * 3600), client.send_email(job(7))).await;
                let waited = start.elapsed();
                let on_time = waited == budget || (budget > sleep_limit && waited == sleep_limit);
                assert!(
                    outcome == Ok(Err(CallError::TimedOut)) && on_time && log.received(7) == 1,
                    "a client of one attempt of {budget:?}; the mailer took the job ({} time(s)) \
                     and never answered. The call {}; expected the job once and `Err(TimedOut)` \
                     after {budget:?} (or after {sleep_limit:?}, where tokio's `sleep` stops), \
                     never in between: the budget is the client's, with no cap of the call's \
                     own, and any budget under a hundred thousand years runs out",
                    log.received(7),
                    match outcome {
                        Ok(outcome) => format!("returned {outcome:?} after {waited:?}"),
                        Err(_) => format!("was still waiting a day after its budget, {waited:?}"),
                    }
                );
            }
        });
    }

    /// A call with no time to wait, or some, on a queue with no worker at all reports
    /// `QueueClosed` at once; with no time to wait on a queue with room, it still queues its job
    /// (once), then gives up with `TimedOut` at once. Giving up does not skip the queue: the
    /// budget bounds the wait for the answer, not the call's duty to ask.
    async fn a_call_with_no_time_to_wait_still_queues_its_job_or_finds_the_queue_closed() {
        let zero = Duration::ZERO;
        let clients =
            [(zero, 0), (zero, 1), (zero, ATTEMPTS), (ATTEMPT, ATTEMPTS), (Duration::from_micros(1), 1000)];
        for (attempt, attempts) in clients {
            let client = format!("a client of {attempts} attempt(s) of {attempt:?}");
            let (queue, jobs) = mpsc::channel::<Request>(4);
            drop(jobs);
            let start = Instant::now();
            let outcome = run_caught(async move {
                let outcome = timeout(ATTEMPT * 60, MailClient::new(queue, attempt, attempts).send_email(job(7))).await;
                (outcome, start.elapsed())
            })
            .await;
            assert!(
                matches!(outcome, Ok((Ok(Err(CallError::QueueClosed)), waited)) if waited == zero),
                "{client}, on a queue with no worker at all (its receiver is gone): the call \
                 ended {outcome:?} (outcome, time taken), expected `Err(QueueClosed)` at once: \
                 the job could not be queued, whatever the budget, and `TimedOut` would tell the \
                 shop a mailer is running but stuck"
            );
            if attempt != zero {
                continue;
            }
            let (queue, mut jobs) = mpsc::channel::<Request>(4);
            let start = Instant::now();
            let outcome = run_caught(async move {
                let outcome = timeout(ATTEMPT * 60, MailClient::new(queue, attempt, attempts).send_email(job(7))).await;
                (outcome, start.elapsed())
            })
            .await;
            let mut queued = 0;
            while let Ok(request) = jobs.try_recv() {
                assert_eq!(request.job, job(7), "{client}: a job other than the call's was queued");
                queued += 1;
            }
            assert!(
                matches!(outcome, Ok((Ok(Err(CallError::TimedOut)), waited)) if waited == zero)
                    && queued == 1,
                "{client} (no time to wait), on a queue with room whose mailer had not taken \
                 anything yet: the call ended {outcome:?} (outcome, time taken) with its job \
                 queued {queued} time(s), expected `Err(TimedOut)` at once with the job queued \
                 once: a call with no time to wait for the answer still asks (it queues its job), \
                 it only does not wait"
            );
        }
    }

    /// Attempts that are not a whole number of milliseconds (forty of 250.5 ms, a thousand of
    /// 1 µs): tokio's timer counts whole milliseconds, so each attempt may end up to a tick late.
    /// A stuck mailer makes the call give up no sooner than `attempts × attempt_timeout` and no
    /// later than with each attempt rounded up to the next millisecond; an answer inside the
    /// budget is returned at that instant.
    async fn attempts_of_a_fraction_of_a_millisecond_give_up_within_a_tick_each() {
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        let cases = [(us(250_500), 40, Some(ms(10_019))), (us(250_500), 40, Some(ms(5_000))), (us(250_500), 40, None), (us(1), 1000, None), (us(1_500), 3, None)];
        for (attempt, attempts, answer_at) in cases {
            let budget = attempt * attempts;
            let ticked = ms(attempt.as_nanos().div_ceil(1_000_000) as u64) * attempts;
            let mailer = match answer_at {
                Some(at) => Mailer::Takes(at),
                None => Mailer::Stuck,
            };
            let (queue, log) = start_mailer(mailer);
            let client = MailClient::new(queue, attempt, attempts);
            let start = Instant::now();
            let outcome = timeout(ticked + ATTEMPT * 60, client.send_email(job(7))).await;
            let waited = start.elapsed();
            let (ok, expected) = match answer_at {
                Some(at) => {
                    let receipt = Receipt { job_id: 7, message_id: "msg-7".into() };
                    (
                        outcome == Ok(Ok(receipt.clone())) && waited == at,
                        format!("{receipt:?} at {at:?}, the instant the mailer answered"),
                    )
                }
                None => (
                    outcome == Ok(Err(CallError::TimedOut))
                        && waited >= budget
                        && waited <= ticked + ms(10),
                    format!(
                        "`Err(TimedOut)` no sooner than the budget, {budget:?}, and no later \
                         than {ticked:?} (each attempt rounded up to tokio's 1 ms tick)"
                    ),
                ),
            };
            let mailer = match answer_at {
                Some(at) => format!("took the job at once and answered {at:?} in"),
                None => "took the job at once and never answered".to_string(),
            };
            let returned = match outcome {
                Ok(outcome) => format!("returned {outcome:?} after {waited:?}"),
                Err(_) => format!("was still waiting after {waited:?}"),
            };
            assert!(
                ok && log.received(7) == 1,
                "a client of {attempts} attempts of {attempt:?} (a budget of {budget:?}); the \
                 mailer {mailer}, and got the job {} time(s). The call {returned}, expected the \
                 job once and {expected}",
                log.received(7)
            );
        }
    }

    /// Attempts whose length is not a whole number of microseconds, and budgets that end just
    /// past a millisecond: the budget is `attempts × attempt_timeout` to the nanosecond, and
    /// tokio's timer may only make it end later (up to a tick per attempt), never sooner. Three
    /// kinds of client: attempts 1 ns past a whole millisecond (one of 1 s + 1 ns, three of
    /// 250 ms + 1 ns, a thousand of 1 ms + 1 ns); attempts of an odd number of nanoseconds whose
    /// budget ends 1 ns past a whole millisecond (3, 7, 1001 and 9999 of them); and ten thousand
    /// attempts of 100.999 µs (a budget of 1009.99 ms), whose fractions add up to ten
    /// milliseconds. A stuck mailer must make the call give up no sooner than the budget: a
    /// budget or an attempt short by even a nanosecond (whatever unit it was counted in) ends
    /// on the tick before it. A mailer that answers inside the budget gets its receipt returned
    /// at that instant. One `select!` seed, since nothing here is ready at the same moment as
    /// anything else; the longest client costs ten thousand ticks of the paused clock to a
    /// per-attempt `timeout`, a few milliseconds.
    fn attempts_with_a_sub_microsecond_part_never_give_up_before_the_budget() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let ms = Duration::from_millis;
            let ns = Duration::from_nanos;
            let cases = [
                // Each attempt 1 ns past a whole millisecond.
                (ns(1_000_000_001), 1, None),
                (ns(250_000_001), 3, None),
                (ns(1_000_001), 1000, None),
                // An odd number of nanoseconds, so not a whole number of any unit of a
                // millisecond (10 ns, 100 ns, 1 µs, 10 µs, ...); the budget ends 1 ns past a
                // whole millisecond (3 × 333.666667 ms = 1001 ms + 1 ns, and so on).
                (ns(333_666_667), 3, None),
                (ns(142_857_143), 7, None),
                (ns(999_001), 1001, None),
                (ns(989_999), 9999, None),
                // Ten thousand attempts of 100.999 µs: 1009.99 ms.
                (ns(100_999), 10_000, None),
                (ns(100_999), 10_000, Some(ms(1005))),
            ];
            for (attempt, attempts, answer_at) in cases {
                let budget = attempt * attempts;
                let ticked = ms(attempt.as_nanos().div_ceil(1_000_000) as u64) * attempts;
                let mailer = match answer_at {
                    Some(at) => Mailer::Takes(at),
                    None => Mailer::Stuck,
                };
                let (queue, log) = start_mailer(mailer);
                let client = MailClient::new(queue, attempt, attempts);
                let start = Instant::now();
                let outcome = timeout(ticked + ATTEMPT * 60, client.send_email(job(7))).await;
                let waited = start.elapsed();
                let (ok, expected) = match answer_at {
                    Some(at) => {
                        let receipt = Receipt { job_id: 7, message_id: "msg-7".into() };
                        (
                            outcome == Ok(Ok(receipt.clone())) && waited == at,
                            format!("{receipt:?} at {at:?}, the instant the mailer answered"),
                        )
                    }
                    None => (
                        outcome == Ok(Err(CallError::TimedOut))
                            && waited >= budget
                            && waited <= ticked + ms(10),
                        format!(
                            "`Err(TimedOut)` no sooner than the budget, {budget:?} to the \
                             nanosecond, and no later than {ticked:?} (each attempt rounded up \
                             to tokio's 1 ms tick)"
                        ),
                    ),
                };
                let mailer = match answer_at {
                    Some(at) => format!("took the job at once and answered {at:?} in"),
                    None => "took the job at once and never answered".to_string(),
                };
                let early = if outcome.is_ok() && waited < budget {
                    format!(", {:?} before its budget ran out", budget - waited)
                } else {
                    String::new()
                };
                let returned = match outcome {
                    Ok(outcome) => format!("returned {outcome:?} after {waited:?}"),
                    Err(_) => format!("was still waiting after {waited:?}"),
                };
                assert!(
                    ok && log.received(7) == 1,
                    "a client of {attempts} attempts of {attempt:?} (a budget of {budget:?}); \
                     the mailer {mailer}, and got the job {} time(s). The call {returned}{early}, \
                     expected the job once and {expected}: a call may give up late by tokio's \
                     tick, never before attempts × attempt_timeout, to the nanosecond",
                    log.received(7)
                );
            }
        });
    }
}
