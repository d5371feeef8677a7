//! Hidden tests for kata 21: dropping the `outgoing` stream at any point must leave every message
//! either delivered or still in the queue, in order, exactly once.

use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kata_support::time::spoken;
use kata_support::{
    Options, Outcome, assert_cancel_safe_at_shutdown, assert_cancel_safe_with, hidden_test,
};
use queue_unfold::{Message, Queue, RateLimiter, outgoing};
use tokio::time::Instant;
use tokio_test::task;

fn message(id: u64) -> Message {
    Message {
        id,
        to: format!("reader-{id}@example.com"),
        subject: "This week in async Rust".to_owned(),
    }
}

/// Three messages in the order they were queued. The ids are the producers' own numbers and do
/// not grow with arrival, so a queue put back "by id" is out of order: only the queue's own order
/// is the order.
const THREE: [u64; 3] = [3, 1, 2];

/// Ten messages in the order they were queued (ids not ascending, as in `THREE`).
const TEN: [u64; 10] = [4, 9, 1, 7, 2, 10, 5, 3, 8, 6];

/// The longest queue, as the README states: the backlog of the longest drain, far past any
/// "bounded work per stream" a fix might pick (a thousand, 10 000, 65 536, 100 000 messages),
/// about 0.1 s of CPU; the drop test at this length too.
const LONG_QUEUE: u64 = 1 << 17;

/// How far the slowest send of [`a_stream_has_no_deadline_of_its_own`] moves the paused clock,
/// in one jump: 2^62 ms, some 146 million years, beyond any deadline a stream could sensibly set
/// itself. The jump costs no CPU.
const FAR_END: Duration = kata_support::time::FAR_END;

fn queue_of(ids: impl IntoIterator<Item = u64>) -> Queue {
    let queue = Queue::new();
    for id in ids {
        queue.push(message(id));
    }
    queue
}

/// The backlog of the cut, order and rate tests that run at a large size too: far past any batch
/// a fix might take "only when the queue is long" (16, 64, 1000 messages). Cheap: the tests that
/// use it yield a dozen messages or so and drop the rest with the stream.
const BACKLOG: u64 = 5_000;

/// `BACKLOG` ids in the order they were queued, not ascending (a fixed scramble, so that a queue
/// put back "by id" is out of order here too).
fn backlog_ids() -> Vec<u64> {
    scrambled_ids(BACKLOG)
}

/// `len` ids, 1 to `len`, in a fixed scramble (a permutation for `BACKLOG` and `LONG_QUEUE`).
fn scrambled_ids(len: u64) -> Vec<u64> {
    (0..len).map(|n| (n * 2_654_435_761) % len + 1).collect()
}

/// A queue holding `ids` with empty addresses: the large tests build many of them.
fn bare_queue_of(ids: &[u64]) -> Queue {
    let queue = Queue::new();
    for &id in ids {
        queue.push(Message { id, to: String::new(), subject: String::new() });
    }
    queue
}

/// Whether `yielded` (each once) followed by `queued` accounts for `expected` exactly once, with
/// the queue in its original order. Cheap for a long queue and a few yields.
fn accounted_in_order(yielded: &[u64], queued: &[u64], expected: &[u64]) -> bool {
    let once: std::collections::HashSet<u64> = yielded.iter().copied().collect();
    once.len() == yielded.len()
        && yielded.len() + queued.len() == expected.len()
        && expected.iter().filter(|id| !once.contains(id)).eq(queued.iter())
}

/// Shows a long list by its ends.
fn brief(ids: &[u64]) -> String {
    if ids.len() <= 24 {
        return format!("{ids:?}");
    }
    format!("{:?} .. {:?} ({} in all)", &ids[..12], &ids[ids.len() - 4..], ids.len())
}

/// What the dispatcher has handed to the email provider so far.
#[derive(Debug, Clone, Default)]
struct Sent(Arc<Mutex<Vec<u64>>>);

impl Sent {
    fn push(&self, id: u64) {
        self.0.lock().expect("sent lock").push(id);
    }

    fn ids(&self) -> Vec<u64> {
        self.0.lock().expect("sent lock").clone()
    }
}

/// Every message must be sent or still queued, in order, exactly once.
fn check_accounted(sent: &Sent, queue: &Queue, expected: &[u64]) -> Result<(), String> {
    let sent = sent.ids();
    let queued = queue.ids();
    let all: Vec<u64> = sent.iter().chain(&queued).copied().collect();
    if all == expected {
        return Ok(());
    }
    let lost: Vec<u64> = expected.iter().filter(|id| !all.contains(id)).copied().collect();
    if !lost.is_empty() {
        return Err(format!(
            "message(s) {lost:?} are gone: not sent (sent {sent:?}) and no longer in the queue \
             (queued {queued:?}). The stream took them from the queue before waiting for a \
             rate-limit slot and was dropped during that wait; whatever held the message then \
             (the stream's state, a future, or a task whose result nobody reads) lost it"
        ));
    }
    let twice: Vec<u64> = expected
        .iter()
        .filter(|id| all.iter().filter(|seen| seen == id).count() > 1)
        .copied()
        .collect();
    if !twice.is_empty() {
        return Err(format!(
            "sent {sent:?}, then queued {queued:?}: message(s) {twice:?} appear twice. The stream \
             had already yielded them to the dispatcher, and when it was dropped after that (while \
             the dispatcher was still sending the last one, before it asked for the next), they \
             went back into the queue, so they are (or will be) sent again. Once yielded, a \
             message belongs to the dispatcher; expected {expected:?} exactly once"
        ));
    }
    Err(format!(
        "sent {sent:?}, then queued {queued:?}: expected {expected:?} (the order they were queued \
         in) exactly once and in that order. Messages put back after a drop must go to the head \
         of the queue, where they came from, in the order they were queued, whatever their ids"
    ))
}

/// The dispatcher's `provider.send(message).await`: the email provider takes 50 ms per message.
async fn provider_send(sent: &Sent, message: Message) {
    sent.push(message.id);
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// How long the provider takes for each send of one dispatcher: `first_ms` for its first send,
/// `then_ms` for every later one.
#[derive(Debug, Clone, Copy)]
struct SendTimes {
    first_ms: u64,
    then_ms: u64,
}

impl std::fmt::Display for SendTimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first_ms == self.then_ms {
            write!(f, "{} ms per send", self.first_ms)
        } else {
            write!(
                f,
                "{} ms for its first send and {} ms for each later one",
                self.first_ms, self.then_ms
            )
        }
    }
}

/// One round of the several-dispatchers test: `dispatchers` streams over clones of one queue of
/// six messages and one limiter, each sending what it is given with a provider that takes
/// `sends`; panics with what was sent if a message was not sent exactly once, or if two messages
/// went out less than one rate-limit slot apart.
async fn several_dispatchers(
    dispatchers: usize,
    per_second: u32,
    sends: SendTimes,
    slot_just_taken: bool,
) {
    let expected: Vec<u64> = (1..=6).collect();
    let queue = queue_of(1..=6);
    let limiter = RateLimiter::per_second(per_second);
    let start = Instant::now();
    let mut taken_before = None;
    if slot_just_taken {
        // Another instance has just used a slot: every dispatcher starts by waiting.
        limiter.acquire().await;
        taken_before = Some(Instant::now());
    }
    let mut tasks = Vec::new();
    for _ in 0..dispatchers {
        let (queue, limiter) = (queue.clone(), limiter.clone());
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut stream = pin!(outgoing(queue.clone(), limiter));
            while let Some(m) = stream.next().await {
                let send_ms = if sent.is_empty() { sends.first_ms } else { sends.then_ms };
                sent.push((m.id, Instant::now()));
                tokio::time::sleep(Duration::from_millis(send_ms)).await;
            }
            // What was still queued the moment this dispatcher's stream ended.
            (sent, queue.ids(), Instant::now())
        }));
    }
    let mut each = Vec::new();
    let mut ends = Vec::new();
    for task in tasks {
        let (sent, left, ended_at) = task.await.expect("a dispatcher panicked");
        each.push(sent);
        ends.push((left, ended_at - start));
    }
    let setup = format!(
        "{dispatchers} dispatcher(s) drained clones of one queue [1, 2, 3, 4, 5, 6] through clones \
         of one limiter ({per_second} per second{}), with a provider that takes {sends} and \
         nothing cancelled",
        if slot_just_taken { ", a slot just taken" } else { "" }
    );
    let ids: Vec<Vec<u64>> =
        each.iter().map(|sent| sent.iter().map(|(id, _)| *id).collect()).collect();
    let mut all: Vec<u64> = ids.iter().flatten().copied().collect();
    all.sort_unstable();
    if all != expected || !queue.is_empty() {
        let twice: Vec<u64> = expected
            .iter()
            .filter(|id| all.iter().filter(|seen| seen == id).count() > 1)
            .copied()
            .collect();
        let queued = queue.ids();
        let never: Vec<u64> = expected
            .iter()
            .filter(|id| !all.contains(id) && !queued.contains(id))
            .copied()
            .collect();
        panic!(
            "{setup}. Each dispatcher was given {ids:?}, and {queued:?} is still queued: sent \
             twice {twice:?}, neither sent nor queued {never:?}. Each message must be sent \
             exactly once, by whichever dispatcher's stream took it from the queue"
        );
    }

    // Each stream runs until the queue is empty: a dispatcher whose stream ends with mail still
    // queued idles for the rest of its window while the others carry its share.
    if let Some((which, (left, at))) =
        ends.iter().enumerate().find(|(_, (left, _))| !left.is_empty())
    {
        let name = (b'A' + which as u8) as char;
        panic!(
            "{setup}. Dispatcher {name}'s stream ended (returned None) at {at:?} while the queue \
             still held {left:?}; each dispatcher was given {ids:?}. Every stream must keep \
             yielding until the queue is empty, even when another dispatcher took the message it \
             was waiting to send: a stream that ends with mail waiting leaves its drain window \
             idle"
        );
    }

    // One message per slot: whichever dispatcher yields it, no two messages (nor a message and
    // the slot another instance had just taken) may be closer than one slot.
    let spacing = Duration::from_secs(1) / per_second;
    let mut yields: Vec<(Duration, Option<u64>)> =
        taken_before.map(|at| (at - start, None)).into_iter().collect();
    yields.extend(each.iter().flatten().map(|(id, at)| (*at - start, Some(*id))));
    yields.sort_by_key(|(at, _)| *at);
    for pair in yields.windows(2) {
        let ((before_at, before), (after_at, after)) = (pair[0], pair[1]);
        if after_at - before_at < spacing {
            let before = match before {
                Some(id) => format!("message {id} was yielded at {before_at:?}"),
                None => format!("another instance took a slot at {before_at:?}"),
            };
            let after = after.expect("only the first entry has no message");
            panic!(
                "{setup}. {before} and message {after} at {after_at:?}, only {:?} later: the \
                 limiter allows one message per slot of {spacing:?} to all dispatchers together, \
                 so expected at least {spacing:?} between any two. (Yield instants, first \
                 dispatcher first: {:?})",
                after_at - before_at,
                each.iter()
                    .map(|sent| sent.iter().map(|(id, at)| (*id, *at - start)).collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            );
        }
    }
}

/// One round of the backlog rate test: `dispatchers` streams over clones of one queue of
/// [`BACKLOG`] messages and one limiter, each sending what it is given with a provider that takes
/// `sends`, until a drain window ends (a `timeout` drops every stream, wherever it is parked).
/// Returns what went wrong: a message lost, sent twice or out of order, a stream that ended with
/// mail queued, too little sent, or two messages closer than one slot.
async fn dispatchers_on_a_backlog(
    dispatchers: usize,
    per_second: u32,
    sends: SendTimes,
    slot_just_taken: bool,
) -> Result<(), String> {
    const WANTED: usize = 6;
    let expected = backlog_ids();
    let queue = bare_queue_of(&expected);
    let limiter = RateLimiter::per_second(per_second);
    let spacing = Duration::from_secs(1) / per_second;
    let start = Instant::now();
    let mut taken_before = None;
    if slot_just_taken {
        limiter.acquire().await;
        taken_before = Some(Duration::ZERO);
    }
    // Long enough for a dozen slots after the slowest first send.
    let window = Duration::from_millis(sends.first_ms) + spacing * 12;
    let yields: Arc<Mutex<Vec<(char, u64, Duration)>>> = Arc::default();
    let ended_early: Arc<Mutex<Option<(char, usize)>>> = Arc::default();
    let mut tasks = Vec::new();
    for n in 0..dispatchers {
        let name = (b'A' + n as u8) as char;
        let (queue, limiter) = (queue.clone(), limiter.clone());
        let (yields, ended_early) = (yields.clone(), ended_early.clone());
        tasks.push(tokio::spawn(async move {
            let mut first = true;
            let _ = tokio::time::timeout_at(start + window, async {
                let mut stream = pin!(outgoing(queue.clone(), limiter));
                while let Some(m) = stream.next().await {
                    yields.lock().expect("yields lock").push((name, m.id, start.elapsed()));
                    let send_ms = if first { sends.first_ms } else { sends.then_ms };
                    first = false;
                    tokio::time::sleep(Duration::from_millis(send_ms)).await;
                }
                let left = queue.ids().len();
                if left > 0 {
                    ended_early.lock().expect("ended lock").get_or_insert((name, left));
                }
            })
            .await;
        }));
    }
    for task in tasks {
        task.await.expect("a dispatcher panicked");
    }
    let yields = yields.lock().expect("yields lock").clone();
    let setup = format!(
        "{dispatchers} dispatcher(s) drained clones of one queue of {BACKLOG} messages (a backlog; \
         ids as queued: {}) through clones of one limiter ({per_second} per second{}), with a \
         provider that takes {sends}, until a drain window of {window:?} dropped their streams. \
         Yields (dispatcher, message, instant): {yields:?}",
        brief(&expected),
        if slot_just_taken { ", a slot just taken" } else { "" }
    );
    if let Some((name, left)) = *ended_early.lock().expect("ended lock") {
        return Err(format!(
            "{setup}. Dispatcher {name}'s stream ended (returned None) with {left} messages still \
             queued: a stream keeps yielding until the queue is empty, however long the backlog"
        ));
    }
    let queued = queue.ids();
    let ids: Vec<u64> = yields.iter().map(|(_, id, _)| *id).collect();
    if !accounted_in_order(&ids, &queued, &expected) {
        let mut all: Vec<u64> = ids.iter().chain(&queued).copied().collect();
        all.sort_unstable();
        let mut every = expected.clone();
        every.sort_unstable();
        if all != every {
            let mut seen = std::collections::HashMap::<u64, usize>::new();
            for id in &all {
                *seen.entry(*id).or_default() += 1;
            }
            let lost: Vec<u64> =
                expected.iter().filter(|id| !seen.contains_key(id)).copied().collect();
            let twice: Vec<u64> =
                expected.iter().filter(|id| seen.get(id) > Some(&1)).copied().collect();
            return Err(format!(
                "{setup}. The queue now reads {}: lost (neither yielded nor queued) {}, yielded \
                 or queued twice {}. Every message must be yielded exactly once or still be \
                 queued",
                brief(&queued),
                brief(&lost),
                brief(&twice)
            ));
        }
        let in_order: Vec<u64> = expected.iter().filter(|id| !ids.contains(id)).copied().collect();
        return Err(format!(
            "{setup}. Nothing is lost, but the queue now reads {}, where {} was expected: the \
             messages no dispatcher yielded must stay in the order they were queued in, whatever \
             order the streams are dropped in",
            brief(&queued),
            brief(&in_order)
        ));
    }
    if yields.len() < WANTED {
        return Err(format!(
            "{setup}. Only {} message(s) were yielded in the window, where one per slot makes at \
             least {WANTED}: a long backlog must not slow the stream down",
            yields.len()
        ));
    }
    let mut by_time: Vec<(Duration, Option<(char, u64)>)> =
        taken_before.map(|at| (at, None)).into_iter().collect();
    by_time.extend(yields.iter().map(|(name, id, at)| (*at, Some((*name, *id)))));
    by_time.sort_by_key(|(at, _)| *at);
    for pair in by_time.windows(2) {
        let ((before_at, before), (after_at, after)) = (pair[0], pair[1]);
        if after_at - before_at < spacing {
            let before = match before {
                Some((name, id)) => format!("{name} yielded message {id} at {before_at:?}"),
                None => format!("another instance took a slot at {before_at:?}"),
            };
            let (name, id) = after.expect("only the first entry has no message");
            return Err(format!(
                "{setup}. {before}, and {name} yielded message {id} at {after_at:?}, only {:?} \
                 later: the limiter allows one message per slot of {spacing:?} to all dispatchers \
                 together, however long the backlog and however late a slow send left the stream",
                after_at - before_at
            ));
        }
    }
    Ok(())
}

/// Every order of `0..n`.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for rest in permutations(n - 1) {
        for at in 0..=rest.len() {
            let mut order = rest.clone();
            order.insert(at, n - 1);
            all.push(order);
        }
    }
    all
}

/// One round of the dropped-dispatchers test: `dispatchers` streams over clones of one queue
/// holding `expected` and one limiter (4 per second, a slot just taken) are polled by hand every
/// 50 ms of virtual time; at `drop_at` they are all dropped, in `order`. Returns what went wrong.
async fn dispatchers_dropped_together(
    expected: &[u64],
    dispatchers: usize,
    drop_at: Duration,
    order: &[usize],
) -> Result<(), String> {
    let queue = bare_queue_of(expected);
    let limiter = RateLimiter::per_second(4);
    // Another instance has just used a slot: every dispatcher starts by waiting.
    limiter.acquire().await;
    let start = Instant::now();
    let mut streams: Vec<_> = (0..dispatchers)
        .map(|_| Some(task::spawn(outgoing(queue.clone(), limiter.clone()))))
        .collect();
    let mut sent = Vec::new();
    loop {
        for stream in &mut streams {
            while let Some(live) = stream {
                match live.poll_next() {
                    std::task::Poll::Ready(Some(m)) => sent.push(m.id),
                    std::task::Poll::Ready(None) => {
                        *stream = None;
                        let queued = queue.ids();
                        if !queued.is_empty() {
                            return Err(format!(
                                "{dispatchers} dispatchers took turns on clones of one queue {} \
                                 and one limiter (4 per second, a slot just taken); at {:?}, \
                                 before any drop, a dispatcher's stream ended (returned None) \
                                 while the queue still held {} (yielded so far: {sent:?}). Every \
                                 stream must keep yielding until the queue is empty, even when \
                                 another dispatcher took the message it was waiting to send",
                                brief(expected),
                                start.elapsed(),
                                brief(&queued)
                            ));
                        }
                    }
                    std::task::Poll::Pending => break,
                }
            }
        }
        if start.elapsed() >= drop_at {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for &which in order {
        drop(streams[which].take());
    }
    let queued = queue.ids();
    if accounted_in_order(&sent, &queued, expected) {
        return Ok(());
    }
    let mut all: Vec<u64> = sent.iter().chain(&queued).copied().collect();
    all.sort_unstable();
    let mut every = expected.to_vec();
    every.sort_unstable();
    let position: std::collections::HashMap<u64, usize> =
        expected.iter().enumerate().map(|(at, id)| (*id, at)).collect();
    // What is still queued, in the order it was queued in.
    let in_order: Vec<u64> = {
        let mut left = queued.clone();
        left.sort_by_key(|id| position.get(id).copied());
        left
    };
    let names: Vec<char> = order.iter().map(|&which| (b'A' + which as u8) as char).collect();
    let setup = format!(
        "{dispatchers} dispatchers (A, B, ..., each polled first in that order) took turns on \
         clones of one queue {} (in the order queued; the ids are the producers' own) and one \
         limiter (4 per second, a slot just taken); at {drop_at:?} their streams were dropped \
         together (a shutdown), in the order {names:?}. They had yielded {sent:?}, and the queue \
         now reads {}",
        brief(expected),
        brief(&queued)
    );
    let seen: std::collections::HashSet<u64> = all.iter().copied().collect();
    let lost: Vec<u64> = expected.iter().filter(|id| !seen.contains(id)).copied().collect();
    if !lost.is_empty() {
        return Err(format!(
            "{setup}: message(s) {} are neither yielded nor queued, lost with a dropped stream",
            brief(&lost)
        ));
    }
    if all != every {
        return Err(format!(
            "{setup}: some message is both yielded and queued, or queued twice; expected each of \
             {} exactly once",
            brief(expected)
        ));
    }
    let (early, late) = queued
        .windows(2)
        .map(|pair| (pair[0], pair[1]))
        .find(|(before, after)| position.get(before) > position.get(after))
        .expect("a queue out of order has a pair out of order");
    Err(format!(
        "{setup}: every message is there, but the queue is out of its original order: message \
         {early} now stands before message {late}, which was queued before it; expected {}. \
         After a drop, the messages no dispatcher yielded must be in the queue in the order they \
         were queued in (not sorted by id), whatever order the dispatchers are dropped in",
        brief(&in_order)
    ))
}

/// One round of the one-dropped test: `dispatchers` dispatchers (A, B, ...) drain clones of one
/// queue of eight messages through clones of one limiter (4 per second, a slot just taken), each
/// with a provider that takes `send_ms` per send. At `drop_at` dispatcher `which` alone is shut
/// down (its task aborted, its stream dropped while it waits for a slot), a new dispatcher starts
/// in its place, and the rest run on. Returns what went wrong.
async fn one_dispatcher_dropped_among_several(
    dispatchers: usize,
    which: usize,
    drop_at: Duration,
    send_ms: u64,
) -> Result<(), String> {
    let expected: Vec<u64> = (1..=8).collect();
    let queue = queue_of(1..=8);
    let limiter = RateLimiter::per_second(4);
    // Another instance has just used a slot: every dispatcher starts by waiting.
    limiter.acquire().await;
    let start = Instant::now();
    let yields: Arc<Mutex<Vec<(char, u64, Duration)>>> = Arc::default();
    let dispatcher = |name: char| {
        let (queue, limiter, yields) = (queue.clone(), limiter.clone(), yields.clone());
        tokio::spawn(async move {
            let mut stream = pin!(outgoing(queue, limiter));
            while let Some(m) = stream.next().await {
                yields.lock().expect("yields lock").push((name, m.id, start.elapsed()));
                tokio::time::sleep(Duration::from_millis(send_ms)).await;
            }
        })
    };
    let mut tasks: Vec<_> =
        (0..dispatchers).map(|n| dispatcher((b'A' + n as u8) as char)).collect();
    tokio::time::sleep_until(start + drop_at).await;
    let dropped = tasks.remove(which);
    dropped.abort();
    // Returns once the aborted task's future, and the stream in it, has been dropped.
    let _ = dropped.await;
    let newcomer = (b'A' + dispatchers as u8) as char;
    tasks.push(dispatcher(newcomer));
    for task in tasks {
        task.await.expect("a dispatcher panicked");
    }
    let yields = yields.lock().expect("yields lock").clone();
    let dropped_name = (b'A' + which as u8) as char;
    let setup = format!(
        "{dispatchers} dispatchers (A, B, ...) drained clones of one queue [1, ..., 8] through \
         clones of one limiter (4 per second, a slot just taken), with a provider that takes \
         {send_ms} ms per send; at {drop_at:?} dispatcher {dropped_name} alone was shut down (its \
         task aborted, its stream dropped wherever it was parked) and a new dispatcher \
         {newcomer} started, the others running on. Yields (dispatcher, message, instant): \
         {yields:?}"
    );
    let mut all: Vec<u64> = yields.iter().map(|(_, id, _)| *id).collect();
    all.sort_unstable();
    if all != expected || !queue.is_empty() {
        return Err(format!(
            "{setup}, and {:?} is still queued: each message must be sent exactly once",
            queue.ids()
        ));
    }
    let spacing = Duration::from_secs(1) / 4;
    let mut by_time = yields.clone();
    by_time.sort_by_key(|(_, _, at)| *at);
    for pair in by_time.windows(2) {
        let ((a, first, first_at), (b, second, second_at)) = (pair[0], pair[1]);
        if second_at - first_at < spacing {
            return Err(format!(
                "{setup}: {a} yielded message {first} at {first_at:?} and {b} message {second} at \
                 {second_at:?}, only {:?} later. The rate limit is one message per slot of \
                 {spacing:?} for all dispatchers together, also after one of them was dropped \
                 while it waited: a dropped wait may cost a slot, but must not hand out a slot \
                 that another dispatcher still waits for",
                second_at - first_at
            ));
        }
    }
    Ok(())
}

/// Another dispatcher, polled first on every turn, claims slot after slot of the shared limiter:
/// `turns` slots 100 ms apart, the last one `last_gap` after the one before it. The stream may
/// win a slot now and then, or lose the race for each one; either way it must not end while
/// mail is still queued. When the other dispatcher stops, the stream yields the rest, and what
/// it yielded, followed by what is still queued, is the queue's original order.
async fn lose_slot_after_slot(turns: usize, last_gap: Duration) {
    let queue = queue_of(THREE);
    let limiter = RateLimiter::per_second(10);
    let other_limiter = limiter.clone();
    let mut other = Some(task::spawn(async move {
        loop {
            other_limiter.acquire().await;
        }
    }));
    let mut stream = task::spawn(outgoing(queue.clone(), limiter.clone()));
    let mut yielded = Vec::new();
    let mut ended = false;
    // The other dispatcher's turns, then some turns without it.
    for turn in 0..turns + 20 {
        if turn == turns {
            other = None;
        }
        if let Some(other) = other.as_mut() {
            let _ = other.poll();
        }
        match stream.poll_next() {
            std::task::Poll::Ready(Some(m)) => yielded.push(m.id),
            std::task::Poll::Ready(None) => {
                ended = true;
                break;
            }
            std::task::Poll::Pending => {}
        }
        let pause = if turn + 1 == turns { last_gap } else { Duration::from_millis(100) };
        tokio::time::advance(pause).await;
    }
    let left = queue.ids();
    let all: Vec<u64> = yielded.iter().chain(&left).copied().collect();
    let when = |n: usize| match n {
        0 => "before it yielded anything".to_owned(),
        n => format!("after it yielded {yielded:?} ({n} message(s))"),
    };
    if ended && !left.is_empty() {
        panic!(
            "another dispatcher (polled first) claimed slot after slot of the shared limiter, \
             and the stream ended {} with {left:?} still queued: a stream keeps running until \
             the queue is empty, however many slots in a row another dispatcher takes (here \
             up to {turns}, the last after {last_gap:?}) and however long that lasts",
            when(yielded.len())
        );
    }
    if all != THREE || !left.is_empty() {
        panic!(
            "another dispatcher (polled first) claimed slot after slot of the shared limiter \
             for {turns} slots (the last after {last_gap:?}), then stopped, and the stream was \
             polled for 20 more slots: expected it to yield all of {THREE:?}, in order, but it \
             yielded {yielded:?} and {left:?} is still queued"
        );
    }
}

hidden_test! {
    /// Nothing cancelled: every message comes out, in order, one rate-limit slot apart.
    async fn sends_every_message_in_order_at_the_rate_limit() {
        let queue = queue_of(1..=3);
        let start = Instant::now();
        let sent: Vec<u64> = outgoing(queue.clone(), RateLimiter::per_second(10))
            .map(|m| m.id)
            .collect()
            .await;
        assert_eq!(sent, [1, 2, 3], "the stream must yield the queue head first");
        assert!(queue.is_empty(), "the queue must be drained");
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(200),
            "3 messages at 10 per second take at least 200 ms, but took {elapsed:?}: the rate \
             limit was skipped"
        );
    }

    /// Two producers number their mail alike (the newsletter and the billing service each count
    /// from 1), so one queue holds messages with the same id: each is a message of its own. A
    /// stream yields every one, in the queue's order; and a stream dropped after two yields
    /// leaves the rest, which the next stream yields.
    async fn messages_that_share_an_id_are_each_sent() {
        let from = |id: u64, producer: &str| Message {
            id,
            to: format!("reader-{id}@{producer}.example.com"),
            subject: format!("{producer} #{id}"),
        };
        let queued = [
            from(3, "newsletter"),
            from(1, "newsletter"),
            from(1, "billing"),
            from(2, "billing"),
            from(3, "billing"),
            from(3, "billing"),
        ];
        let show = |ms: &[Message]| ms.iter().map(|m| m.subject.clone()).collect::<Vec<_>>();
        for cut_after in [None, Some(2)] {
            let queue = Queue::new();
            for m in &queued {
                queue.push(m.clone());
            }
            let limiter = RateLimiter::per_second(10);
            let mut sent = Vec::new();
            {
                let mut stream = pin!(outgoing(queue.clone(), limiter.clone()));
                while let Some(m) = stream.next().await {
                    sent.push(m);
                    if Some(sent.len()) == cut_after {
                        break;
                    }
                }
            }
            if cut_after.is_some() {
                let mut stream = pin!(outgoing(queue.clone(), limiter));
                while let Some(m) = stream.next().await {
                    sent.push(m);
                }
            }
            assert!(
                sent == queued && queue.is_empty(),
                "the queue held {:?} (ids {:?}: two producers number their mail alike){}; the \
                 dispatcher was given {:?}, and {:?} is still queued. Every message must be sent \
                 once, in the queue's order, whatever its id: a message that shares an id with \
                 another is a message of its own",
                show(&queued),
                queued.iter().map(|m| m.id).collect::<Vec<_>>(),
                match cut_after {
                    Some(n) => format!(
                        ", its first stream was dropped after {n} yields and a new one drained \
                         the rest"
                    ),
                    None => String::new(),
                },
                show(&sent),
                queue.ids()
            );
        }
    }

    /// The dispatcher drained with the stream dropped after every possible poll, also while the
    /// provider is sending the message just yielded: nothing may be lost, reordered or sent twice.
    async fn dropping_the_stream_at_any_point_loses_no_message() {
        // Also cut every 100 ms of virtual time: a wait handed to a task of its own is polled
        // only when the task is done, and only the clock cuts it in the middle.
        assert_cancel_safe_with(
            Options::default().cut_every(Duration::from_millis(100)),
            || (queue_of(THREE), RateLimiter::per_second(2), Sent::default()),
            |(queue, limiter, sent): (Queue, RateLimiter, Sent)| async move {
                let mut stream = pin!(outgoing(queue, limiter));
                while let Some(m) = stream.next().await {
                    provider_send(&sent, m).await;
                }
            },
            |(queue, _, sent), outcome: Outcome<()>| async move {
                check_accounted(&sent, &queue, &THREE)?;
                if !outcome.is_cancelled() && !queue.is_empty() {
                    return Err(format!(
                        "the stream ended with messages {:?} still queued",
                        queue.ids()
                    ));
                }
                Ok(())
            },
        )
        .await;
    }

    /// Shutdown drops the dispatcher while its stream waits for the first slot: a new dispatcher
    /// must start with that same message.
    async fn a_new_stream_starts_with_the_message_the_dropped_one_was_waiting_to_send() {
        let queue = queue_of(THREE);
        let limiter = RateLimiter::per_second(1);
        // Another dispatcher instance just used the slot; the next one is a second away.
        limiter.acquire().await;

        let mut stream = task::spawn(outgoing(queue.clone(), limiter.clone()));
        if let std::task::Poll::Ready(yielded) = stream.poll_next() {
            let yielded = yielded.map(|m| m.id);
            panic!(
                "another dispatcher had just taken the rate-limit slot (the next one is a second \
                 away), yet the stream's first poll yielded {yielded:?} at once instead of \
                 waiting for a slot: every message the stream yields takes a slot of the shared \
                 limiter first"
            );
        }
        drop(stream);
        let after = queue.ids();
        if after != THREE {
            let mut sorted = after.clone();
            sorted.sort_unstable();
            if sorted == [1, 2, 3] {
                panic!(
                    "the stream was dropped while it waited for a rate-limit slot, and the queue \
                     now reads {after:?} instead of {THREE:?} (the order the messages were queued \
                     in; their ids are not ascending): every message is still there, but out of \
                     order. Whatever the stream had taken must go back where it came from, at \
                     the head and in the order it was queued, whatever its id"
                );
            }
            panic!(
                "the stream was dropped while it waited for a rate-limit slot, before it yielded \
                 anything, and right after the drop the queue reads {after:?} instead of \
                 {THREE:?}: the message it took before the wait is not back at the head of the \
                 queue. It must be back by the time the drop returns; lost with the dropped \
                 stream's state, or handed to work that has not run yet, it is not there for \
                 the next stream"
            );
        }

        let mut restarted = pin!(outgoing(queue.clone(), limiter));
        let first = restarted.next().await.map(|m| m.id);
        assert_eq!(
            first,
            Some(THREE[0]),
            "after a drop, a new stream must yield the head of the queue, message {}, first",
            THREE[0]
        );
    }

    /// Another dispatcher, polled first on every turn, claims slot after slot of the shared
    /// limiter for a long time: a thousand slots 100 ms apart, then one more after a week, or
    /// after the far end of the paused clock (one jump). The stream may win a slot now and then
    /// (a limiter that serves its waiters in turn, or books ahead), or lose the race for each
    /// one; either way it must not end while mail is still queued, however long it waits.
    async fn a_stream_that_loses_slot_after_slot_to_another_dispatcher_does_not_end() {
        lose_slot_after_slot(1_000, Duration::from_secs(7 * 24 * 3600)).await;
        lose_slot_after_slot(1_000, FAR_END).await;
    }

    /// Further out: 16 384 slots in a row taken by the other dispatcher, past any number of lost
    /// races after which a stream might give up (on one seed: the test above varies them, and a
    /// thousand turns cost about a millisecond).
    fn a_stream_that_loses_16_384_races_in_a_row_does_not_end() {
        kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0])
            .block_on(lose_slot_after_slot(1 << 14, Duration::from_millis(100)));
    }

    /// The dispatcher is restarted every 1.3 s drain window (a `timeout` around the consuming
    /// loop). Over enough windows every message goes out exactly once, in order.
    async fn drain_windows_send_every_message_exactly_once() {
        let queue = queue_of(1..=5);
        let limiter = RateLimiter::per_second(1);
        let sent = Sent::default();
        for _window in 0..20 {
            let mut stream = pin!(outgoing(queue.clone(), limiter.clone()));
            let drained = tokio::time::timeout(Duration::from_millis(1300), async {
                while let Some(m) = stream.next().await {
                    sent.push(m.id);
                }
            })
            .await;
            if drained.is_ok() {
                break;
            }
        }
        if let Err(seen) = check_accounted(&sent, &queue, &[1, 2, 3, 4, 5]) {
            panic!("after dispatching in 1.3 s windows, {seen}");
        }
        assert!(
            queue.is_empty(),
            "20 drain windows were not enough to send 5 messages at 1 per second; still \
             queued: {:?}",
            queue.ids()
        );
    }

    /// Short drain windows (130 ms at 10 messages per second) that end while the dispatcher awaits
    /// the provider's send of the message it was just given: that message was sent, and no later
    /// window may send it again.
    async fn a_window_that_ends_during_the_provider_send_sends_nothing_twice() {
        let queue = queue_of(1..=5);
        let limiter = RateLimiter::per_second(10);
        let sent = Sent::default();
        for _window in 0..40 {
            let mut stream = pin!(outgoing(queue.clone(), limiter.clone()));
            let drained = tokio::time::timeout(Duration::from_millis(130), async {
                while let Some(m) = stream.next().await {
                    provider_send(&sent, m).await;
                }
            })
            .await;
            if drained.is_ok() {
                break;
            }
        }
        if let Err(seen) = check_accounted(&sent, &queue, &[1, 2, 3, 4, 5]) {
            panic!(
                "after dispatching in 130 ms windows, with a provider that takes 50 ms per \
                 send, {seen}"
            );
        }
        assert!(
            queue.is_empty(),
            "40 drain windows of 130 ms were not enough to send 5 messages at 10 per second; \
             still queued: {:?}",
            queue.ids()
        );
    }

    /// One, two or three dispatchers drain clones of one queue through clones of one limiter (a
    /// deploy overlaps the old instance and the new one), nothing cancelled, over a range of send
    /// times (also one slow send, then fast ones) and rates (from 3 to a million a second): each
    /// message must be sent exactly once, by one of them, and no two messages may go out closer
    /// than one slot.
    async fn several_dispatchers_on_one_queue_send_every_message_exactly_once() {
        let sends = [(0, 0), (50, 50), (150, 150), (250, 250), (350, 0), (1100, 0)];
        for dispatchers in [1, 2, 3] {
            // Slots of whole milliseconds and not (333.33 ms, 142.86 ms), and slots shorter than
            // the timer's millisecond (500 us, 1 us): one message per slot, whatever its length.
            for per_second in [10, 3, 7, 2_000, 1_000_000] {
                for (first_ms, then_ms) in sends {
                    for slot_just_taken in [false, true] {
                        let sends = SendTimes { first_ms, then_ms };
                        several_dispatchers(dispatchers, per_second, sends, slot_just_taken).await;
                    }
                }
            }
        }
    }

    /// The same dispatchers and send times over a backlog of thousands, in drain windows that end
    /// while the streams wait: a long queue changes nothing. Each message is yielded once or stays
    /// queued in its order, no stream ends with mail queued, and no two messages go out closer
    /// than one slot, also after a slow send.
    async fn a_long_backlog_keeps_the_rate_limit_and_the_order() {
        let sends = [(0, 0), (250, 250), (1100, 0)];
        for dispatchers in [1, 2, 3] {
            for per_second in [4] {
                for (first_ms, then_ms) in sends {
                    for slot_just_taken in [false, true] {
                        let sends = SendTimes { first_ms, then_ms };
                        let round =
                            dispatchers_on_a_backlog(dispatchers, per_second, sends, slot_just_taken);
                        if let Err(seen) = round.await {
                            panic!("{seen}");
                        }
                    }
                }
            }
        }
    }

    /// Two or three dispatchers over one queue (ten messages, then a backlog of thousands) are
    /// dropped together (a shutdown drops them in whatever order), at several moments and in every
    /// order: nothing may be lost, and the queue must still be in its original order.
    async fn dispatchers_dropped_together_in_any_order_keep_the_queue_in_order() {
        // Ten messages, and a backlog far past any batch a fix might take only on a long queue.
        for expected in [TEN.to_vec(), backlog_ids()] {
            for dispatchers in [2, 3] {
                for drop_ms in [0, 100, 300, 550] {
                    // The backlog at two moments: each round builds and reads a long queue.
                    if expected.len() > TEN.len() && !matches!(drop_ms, 100 | 550) {
                        continue;
                    }
                    for order in permutations(dispatchers) {
                        let drop_at = Duration::from_millis(drop_ms);
                        let round = dispatchers_dropped_together(&expected, dispatchers, drop_at, &order);
                        if let Err(seen) = round.await {
                            panic!("{seen}");
                        }
                    }
                }
            }
        }
    }

    /// The longest queue the README allows, `LONG_QUEUE` messages (a campaign to the whole list),
    /// in a scrambled order: one or two dispatchers are dropped together, in every order, while
    /// they wait for their next slot, having yielded one message or two. Nothing may be lost and
    /// the queue must still be in its original order: whatever a fix does only past some length
    /// of queue, that length is at most this. One seed: each round builds and reads the whole
    /// queue.
    fn dispatchers_dropped_on_the_longest_queue_keep_it_in_order() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let expected = scrambled_ids(LONG_QUEUE);
            for dispatchers in [1, 2] {
                for drop_ms in [300, 550] {
                    for order in permutations(dispatchers) {
                        let drop_at = Duration::from_millis(drop_ms);
                        let round = dispatchers_dropped_together(&expected, dispatchers, drop_at, &order);
                        if let Err(seen) = round.await {
                            panic!("{seen}");
                        }
                    }
                }
            }
        });
    }

    /// The stream runs until the queue is empty: mail queued after the stream was created (before
    /// its first poll, and while the dispatcher sends) goes out in the same window.
    async fn mail_queued_after_the_stream_was_created_goes_out_in_the_same_window() {
        let queue = queue_of([1]);
        let mut stream = pin!(outgoing(queue.clone(), RateLimiter::per_second(10)));
        queue.push(message(2));
        queue.push(message(3));
        let mut sent = Vec::new();
        while let Some(m) = stream.next().await {
            sent.push(m.id);
            if m.id == 1 {
                queue.push(message(4));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if sent != [1, 2, 3, 4] || !queue.is_empty() {
            panic!(
                "the stream was created over a queue holding [1]; 2 and 3 were queued before its \
                 first poll, and 4 while the dispatcher sent 1. The stream yielded {sent:?} and \
                 ended with {:?} still queued; expected [1, 2, 3, 4] and an empty queue. The \
                 stream yields one message per slot until the queue is empty, mail queued after \
                 it was created included: a dispatcher whose stream ends early idles for the rest \
                 of its window with mail waiting",
                queue.ids()
            );
        }
    }

    /// The stream runs until the queue is empty whichever message the dispatcher is sending when
    /// more mail arrives, the last one included: a queue of 1 to 20 messages, and one more queued
    /// while the first, a middle or the last message is being sent.
    async fn mail_queued_while_the_last_message_is_sent_goes_out_before_the_stream_ends() {
        for len in 1..=20_u64 {
            let mut moments = vec![1, len / 2 + 1, len];
            moments.dedup();
            for during in moments {
                let late = 100 + during;
                let queue = queue_of(1..=len);
                let mut stream = pin!(outgoing(queue.clone(), RateLimiter::per_second(10)));
                let mut sent = Vec::new();
                while let Some(m) = stream.next().await {
                    sent.push(m.id);
                    if m.id == during {
                        queue.push(message(late));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let want: Vec<u64> = (1..=len).chain([late]).collect();
                if sent != want || !queue.is_empty() {
                    let which = if during == len { "the last one" } else { "an earlier one" };
                    panic!(
                        "the stream was created over a queue of {len} message(s) [1..={len}], and \
                         {late} was queued while the dispatcher sent message {during} ({which}). \
                         The stream yielded {sent:?} and ended with {:?} still queued; expected \
                         {want:?} and an empty queue. Nothing was cancelled: the stream must run \
                         until the queue is empty, whatever it yielded last and however many \
                         messages that was, or the dispatcher idles for the rest of its window \
                         with mail waiting",
                        queue.ids()
                    );
                }
            }
        }
    }

    /// Nothing cancelled, but the provider is stuck on each send (an outage): a week, a year, a
    /// century, then the far end of the paused clock in one jump. The stream has no deadline of its
    /// own, however far off, and yields every message before it ends.
    async fn a_stream_has_no_deadline_of_its_own() {
        const DAY: u64 = 24 * 3600;
        const QUEUED: [u64; 6] = [3, 1, 2, 6, 5, 4];
        let slow = [7 * DAY, 365 * DAY, 100 * 365 * DAY].map(Duration::from_secs);
        let mut sends = slow.into_iter().chain([FAR_END]);
        let queue = queue_of(QUEUED);
        let mut stream = pin!(outgoing(queue.clone(), RateLimiter::per_second(10)));
        let start = Instant::now();
        let mut sent = Vec::new();
        while let Some(m) = stream.next().await {
            sent.push(m.id);
            match sends.next() {
                // One jump: a sleep this long would cost the timer wheel a step per two years.
                Some(FAR_END) => tokio::time::advance(FAR_END).await,
                Some(send) => tokio::time::sleep(send).await,
                None => {}
            }
        }
        if sent != QUEUED || !queue.is_empty() {
            panic!(
                "with {QUEUED:?} queued and a provider that took a week, a year, a century, then \
                 {} (one jump of the paused clock) for its first four sends, nothing cancelled, \
                 the stream yielded {sent:?} and ended after {} with {:?} still queued; expected \
                 {QUEUED:?} and an empty queue. The stream runs until the queue is empty, however \
                 long that takes: it has no deadline of its own, however far off, and only the \
                 dispatcher's window and shutdown end it early",
                spoken(FAR_END),
                spoken(start.elapsed()),
                queue.ids()
            );
        }
    }

    /// One stream, nothing cancelled, over a long backlog (a newsletter to a big list) and a rate
    /// so high that the limiter never waits: the stream must yield every message, in order, and
    /// end only when the queue is empty, however many messages that is.
    fn one_stream_drains_a_long_queue_to_the_end() {
        // One `select!` seed is enough: the test races nothing itself, and it is the longest
        // drain of the kata.
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            const LONG: u64 = LONG_QUEUE;
            let queue = Queue::new();
            for id in 0..LONG {
                queue.push(Message { id, to: String::new(), subject: String::new() });
            }
            let mut stream = pin!(outgoing(queue.clone(), RateLimiter::per_second(u32::MAX)));
            let mut yielded = 0_u64;
            while let Some(m) = stream.next().await {
                if m.id != yielded {
                    panic!(
                        "one stream over a queue of {LONG} messages, nothing cancelled: message \
                         {yielded} was due next (the queue's order), but the stream yielded {}",
                        m.id
                    );
                }
                yielded += 1;
            }
            let left = queue.ids().len();
            if yielded != LONG || left != 0 {
                panic!(
                    "one stream over a queue of {LONG} messages, nothing cancelled, at a rate so \
                     high that the limiter never waits: the stream yielded {yielded} and ended \
                     with {left} still queued; expected all {LONG} and an empty queue. A stream \
                     runs until the queue is empty, however long it is: one that stops after a \
                     fixed number of messages leaves the dispatcher idle for the rest of its \
                     window with mail waiting"
                );
            }
        });
    }

    /// A deploy stops one dispatcher of several while it waits for a slot, and a new one starts:
    /// the others run on, and no two messages may go out closer than one slot.
    async fn one_dispatcher_dropped_while_others_run_keeps_the_rate_limit() {
        for dispatchers in [2, 3] {
            for which in 0..dispatchers {
                for drop_ms in [100, 300] {
                    for send_ms in [0, 50] {
                        let drop_at = Duration::from_millis(drop_ms);
                        let round =
                            one_dispatcher_dropped_among_several(dispatchers, which, drop_at, send_ms);
                        if let Err(seen) = round.await {
                            panic!("{seen}");
                        }
                    }
                }
            }
        }
    }

    /// A deploy shuts the runtime down while the dispatcher's stream waits for a slot, or drops
    /// the stream after the runtime is gone: every message must still be sent or queued, in
    /// order.
    fn a_stream_dropped_at_runtime_shutdown_loses_no_message() {
        assert_cancel_safe_at_shutdown(
            || (queue_of(THREE), RateLimiter::per_second(2), Sent::default()),
            |(queue, limiter, sent): (Queue, RateLimiter, Sent)| async move {
                let mut stream = Box::pin(outgoing(queue, limiter));
                while let Some(m) = stream.next().await {
                    sent.push(m.id);
                }
            },
            |(queue, _, sent), _outcome: Outcome<()>| check_accounted(&sent, &queue, &THREE),
        );
    }
}
