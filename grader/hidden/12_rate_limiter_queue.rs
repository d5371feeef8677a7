//! Hidden tests for kata 12: callers get tokens in the order they started waiting, however many
//! status ticks interrupt their wait, and the status lines keep coming.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use kata_support::{Options, Outcome, assert_cancel_safe_with, check_property, hidden_test};
use proptest::prelude::*;
use rate_limiter_queue::{LimiterClosed, RateLimiter, STATUS_EVERY};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_test::{assert_pending, task};

/// Starts a caller that waits for its turn and then notes its name (and when it got the token).
fn caller(
    limiter: &Arc<RateLimiter>,
    name: &'static str,
    served: &Arc<Mutex<Vec<&'static str>>>,
) -> JoinHandle<Result<(), LimiterClosed>> {
    let limiter = limiter.clone();
    let served = served.clone();
    tokio::spawn(async move {
        limiter.wait_turn(name).await?;
        served.lock().unwrap().push(name);
        Ok(())
    })
}

/// When the refill task of the cut test adds its one token.
const REFILL_AT: Duration = Duration::from_millis(2500);

/// A caller's wait that notes how many status lines name the caller at the instant it is
/// dropped, before anything the wait's own drop does: a line written while the wait is being
/// dropped comes after the caller stopped waiting.
struct NotedAtDrop<F> {
    wait: Pin<Box<F>>,
    limiter: Arc<RateLimiter>,
    lines_at_drop: Arc<Mutex<Option<usize>>>,
}

impl<F: Future> Future for NotedAtDrop<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.wait.as_mut().poll(cx)
    }
}

impl<F> Drop for NotedAtDrop<F> {
    fn drop(&mut self) {
        // Runs before the fields, so before the wait itself is dropped.
        *self.lines_at_drop.lock().unwrap() = Some(lines_of(&self.limiter, "invoice-sync"));
    }
}

/// How many status lines name `client`.
fn lines_of(limiter: &RateLimiter, client: &str) -> usize {
    limiter.status_lines().iter().filter(|line| line.contains(client)).count()
}

/// Callers that start waiting at different times and tokens that come at other times: each is an
/// offset in units of 100 ms, tokens half a unit later, so no token comes at the very instant a
/// caller starts or writes a status line. One token per caller; tokens may come before anyone
/// waits, and up to 12 s in, long after the first status lines. The third list names the client
/// each caller waits for (`invoice-0` ...): often several callers share one, as the requests of
/// one service do.
fn arrivals() -> impl Strategy<Value = (Vec<u64>, Vec<u64>, Vec<usize>)> {
    (2..=4usize).prop_flat_map(|callers| {
        (
            proptest::collection::btree_set(0..40u64, callers)
                .prop_map(|starts| starts.into_iter().collect::<Vec<_>>()),
            proptest::collection::vec(0..120u64, callers),
            proptest::collection::vec(0..callers, callers),
        )
    })
}

/// How many status lines the callers waiting as `name` should have written by `now`: one per
/// `STATUS_EVERY` each of them has waited, until it was served. `started` and `served` are each
/// caller's start and (if any) the instant it was served; `names` its client name.
fn lines_due(
    name: &str,
    names: &[String],
    started: &[Instant],
    served: &[(usize, Instant)],
    now: Instant,
) -> usize {
    let mut due = 0;
    for (i, (caller, &start)) in names.iter().zip(started).enumerate() {
        if caller != name || start > now {
            continue;
        }
        let end = served.iter().find(|(served, _)| *served == i).map_or(now, |(_, at)| *at);
        due += (end.duration_since(start).as_millis() / STATUS_EVERY.as_millis()) as usize;
    }
    due
}

/// Runs the callers and the refills of one scenario; the callers must be served in the order they
/// started waiting, each writing one status line per `STATUS_EVERY` it waited.
async fn serve_in_order(
    (starts, refills, clients): (Vec<u64>, Vec<u64>, Vec<usize>),
) -> Result<(), String> {
    let unit = Duration::from_millis(100);
    let limiter = Arc::new(RateLimiter::new());
    // The callers served so far (by their index, in the order they started), and when.
    let served: Arc<Mutex<Vec<(usize, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    // Tokens added so far, and the most callers ever served with fewer tokens than that.
    let added = Arc::new(Mutex::new(0usize));
    let overserved = Arc::new(Mutex::new(None));
    // The first client seen, as a token came, with fewer or more status lines than its callers
    // had waited periods so far: the lines must come while a caller waits, each on its own
    // schedule, not when it is served.
    let behind = Arc::new(Mutex::new(None));
    let begin = Instant::now();
    let names: Vec<String> = clients.iter().map(|client| format!("invoice-{client}")).collect();
    let started: Vec<Instant> = starts.iter().map(|&at| begin + unit * at as u32).collect();
    // Names each caller in a message: its index, its client, when it started.
    let who = {
        let names = names.clone();
        move |i: usize| {
            format!("caller {i} ({}, started at {:?})", names[i], unit * starts[i] as u32)
        }
    };
    for &at in &refills {
        let (limiter, added, served) = (limiter.clone(), added.clone(), served.clone());
        let (behind, names, started) = (behind.clone(), names.clone(), started.clone());
        tokio::spawn(async move {
            sleep_until(begin + unit * at as u32 + unit / 2).await;
            let now = Instant::now();
            for name in &names {
                let expected = lines_due(name, &names, &started, &served.lock().unwrap(), now);
                let written = lines_of(&limiter, name);
                if written != expected {
                    behind.lock().unwrap().get_or_insert(format!(
                        "at {:?}, before a token came, the callers waiting as {name} (callers \
                         as client, start time: {:?}) had written {written} status line(s) \
                         between them, expected {expected}: a waiting caller writes its line \
                         every {STATUS_EVERY:?} it has itself waited, counted from when it \
                         started, while it waits, not only once it is served or polled for \
                         another reason: {:?}",
                        now - begin,
                        names
                            .iter()
                            .zip(&started)
                            .map(|(n, s)| (n, *s - begin))
                            .collect::<Vec<_>>(),
                        limiter.status_lines()
                    ));
                }
            }
            *added.lock().unwrap() += 1;
            limiter.refill(1);
        });
    }
    let mut callers = Vec::new();
    for (i, (name, &at)) in names.iter().zip(&started).enumerate() {
        let (limiter, served, name) = (limiter.clone(), served.clone(), name.clone());
        let (added, overserved) = (added.clone(), overserved.clone());
        callers.push(tokio::spawn(async move {
            sleep_until(at).await;
            let result = limiter.wait_turn(&name).await;
            let mut served = served.lock().unwrap();
            served.push((i, Instant::now()));
            let added = *added.lock().unwrap();
            if result.is_ok() && served.len() > added {
                overserved.lock().unwrap().get_or_insert((served.clone(), added));
            }
            result
        }));
    }
    let timeline = |served: &[(usize, Instant)]| -> Vec<String> {
        served.iter().map(|&(i, at)| format!("{} served at {:?}", who(i), at - begin)).collect()
    };
    for caller in callers {
        match timeout(Duration::from_secs(60), caller).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(LimiterClosed))) => return Err("a caller was told the limiter closed".into()),
            Ok(Err(_)) => return Err("a caller panicked".into()),
            Err(_) => {
                let served = served.lock().unwrap().clone();
                return Err(format!(
                    "there was one token per caller, but a minute later only {:?} had been \
                     served",
                    timeline(&served)
                ));
            }
        }
    }
    if let Some(behind) = behind.lock().unwrap().clone() {
        return Err(behind);
    }
    if let Some((served, added)) = overserved.lock().unwrap().clone() {
        return Err(format!(
            "{} callers had been served ({:?}) when only {added} token(s) had been added: each \
             caller served must take one token for its API call, and not give it back for the \
             next caller",
            served.len(),
            timeline(&served)
        ));
    }
    let served = served.lock().unwrap().clone();
    // When each caller was served, in the order they started waiting. Two callers served at the
    // same instant (two tokens at once) may note it in either order.
    let when = |i: usize| served.iter().find(|(served, _)| *served == i).map(|(_, at)| *at);
    for earlier in 0..names.len().saturating_sub(1) {
        let later = earlier + 1;
        let (Some(first), Some(second)) = (when(earlier), when(later)) else {
            return Err(format!("a caller was not served: {:?}", timeline(&served)));
        };
        if second < first {
            return Err(format!(
                "{} started waiting before {}, but was served only after it ({:?}): a token \
                 went to a caller who had waited less, so the earlier caller lost its place in \
                 the queue while it waited",
                who(earlier),
                who(later),
                timeline(&served)
            ));
        }
    }
    let end = Instant::now();
    for name in &names {
        let expected = lines_due(name, &names, &started, &served, end);
        let written = lines_of(&limiter, name);
        if written != expected {
            return Err(format!(
                "the callers waiting as {name} ({:?}) wrote {written} status lines between them, \
                 expected {expected} (each one line every {STATUS_EVERY:?} it has itself waited, \
                 counted from when it started): {:?}",
                timeline(&served),
                limiter.status_lines()
            ));
        }
    }
    Ok(())
}

/// A wait cut short after `cut` units of 100 ms (and a half), a retry under the same client name
/// `gap` units later, and a token `second` units (and a half) into the retry.
fn retries() -> impl Strategy<Value = (u64, u64, u64)> {
    (1..40u64, 0..120u64, 0..40u64)
}

/// A caller's wait is cut (its timeout fires), and the same client waits again later: the retry
/// is a new wait, and writes one status line per `STATUS_EVERY` it has itself waited.
async fn retry_after_a_cut((cut, gap, second): (u64, u64, u64)) -> Result<(), String> {
    let unit = Duration::from_millis(100);
    let limiter = RateLimiter::new();
    let first_wait = unit * cut as u32 + unit / 2;
    if timeout(first_wait, limiter.wait_turn("invoice-sync")).await.is_ok() {
        return Err("a wait returned, but no token had been added".into());
    }
    let expected_first = (first_wait.as_millis() / STATUS_EVERY.as_millis()) as usize;
    let after_cut = lines_of(&limiter, "invoice-sync");
    if after_cut != expected_first {
        return Err(format!(
            "a caller waited {first_wait:?} for a token, then its timeout dropped the wait; it had \
             written {after_cut} status line(s), expected {expected_first}: {:?}",
            limiter.status_lines()
        ));
    }
    tokio::time::sleep(unit * gap as u32).await;
    let retried = Instant::now();
    let mut retry = std::pin::pin!(limiter.wait_turn("invoice-sync"));
    let before_token = unit * second as u32 + unit / 2;
    if timeout(before_token, retry.as_mut()).await.is_ok() {
        return Err("a wait returned, but no token had been added".into());
    }
    let expected = expected_first + (before_token.as_millis() / STATUS_EVERY.as_millis()) as usize;
    let written = lines_of(&limiter, "invoice-sync");
    if written != expected {
        return Err(format!(
            "invoice-sync waited {first_wait:?}, was cut by its timeout, and {:?} later waited \
             again under the same name; {before_token:?} into the retry (no token yet) it had \
             written {} status line(s) for the retry, expected {} (one per {STATUS_EVERY:?} the \
             retry itself waited: a new wait starts counting afresh, whatever an earlier wait \
             of the same client left behind): {:?}",
            unit * gap as u32,
            written as i64 - expected_first as i64,
            expected - expected_first,
            limiter.status_lines()
        ));
    }
    limiter.refill(1);
    match timeout(STATUS_EVERY * 60, retry).await {
        Ok(Ok(())) => {}
        Ok(Err(LimiterClosed)) => return Err("the retry was told the limiter closed".into()),
        Err(_) => {
            return Err(format!(
                "a token came {before_token:?} into the retry, and the retry, the only caller \
                 waiting, was not served a minute later"
            ));
        }
    }
    let written = lines_of(&limiter, "invoice-sync");
    if written != expected || retried.elapsed() != before_token {
        return Err(format!(
            "the retry was served {:?} after it started ({before_token:?} expected) with {written} \
             status line(s) written in all, expected {expected}: {:?}",
            retried.elapsed(),
            limiter.status_lines()
        ));
    }
    Ok(())
}

/// The periods of the long stall in [`caller_polled_late`]: ten minutes, far more lines than a
/// flood guard would let a wait write at once, and more than one poll's cooperative budget.
const LONG_STALL: u32 = 600;

/// Polls a waiting caller, moves the clock `periods` periods and a half on in one step before it
/// is polled again (as when its task ran late), and expects one status line per period: also for
/// the periods that passed while it was not polled. A wait that has more lines to write than one
/// poll's cooperative budget allows may write them over several polls, each of which it asks for
/// (its task is woken); they are all due at once.
async fn caller_polled_late(periods: u32) {
    let limiter = RateLimiter::new();
    let mut wait = task::spawn(limiter.wait_turn("invoice-sync"));
    assert_pending!(wait.poll());
    // Whatever the wait handed to tasks of its own gets to run; the clock stays put.
    kata_support::settle().await;
    let stall = STATUS_EVERY * periods + STATUS_EVERY / 2;
    tokio::time::advance(stall).await;
    kata_support::settle().await;
    assert_pending!(wait.poll());
    // The wait is polled again as long as it asks to be (while it catches up), and no more.
    for _ in 0..periods {
        kata_support::settle().await;
        if !wait.is_woken() {
            break;
        }
        assert_pending!(wait.poll());
    }
    kata_support::settle().await;
    let lines = limiter.status_lines();
    let shown = if lines.len() > 6 {
        format!("{:?} .. {:?}", &lines[..3], &lines[lines.len() - 3..])
    } else {
        format!("{lines:?}")
    };
    assert_eq!(
        lines.len(),
        periods as usize,
        "the caller started waiting at 0 s, was not polled again until the clock had moved on \
         {stall:?} in one step (as when its task ran late), and had then written {} status \
         line(s), expected {periods} (one per {STATUS_EVERY:?} it waited, also for every period \
         that passed while it was not polled, however many: a wait that skips or caps the lines \
         it missed tells the on-call engineer it waited less than it did): {shown}",
        lines.len()
    );
    limiter.refill(1);
    kata_support::settle().await;
    assert!(
        wait.poll().is_ready(),
        "a token came and the runtime then ran every task that was ready, but the waiting \
         caller, polled again, was still pending: it was not served with the token"
    );
    assert_eq!(
        limiter.status_lines().len(),
        periods as usize,
        "a caller served writes no more lines"
    );
}

/// What reaches a caller while its task is not polled, in [`ended_after_a_stall`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meanwhile {
    /// Its token comes: `wait_turn` returns `Ok`.
    Token,
    /// The limiter is closed: `wait_turn` returns `Err(LimiterClosed)`.
    Close,
}

/// When the token comes in [`ended_after_a_stall`], and when the caller is polled again, in
/// periods (each and a half): a short stall, and the review's ten minutes with the token halfway.
const STALLS: [(u32, u32); 2] = [(2, 4), (300, LONG_STALL)];

/// When the limiter is closed in [`ended_after_a_stall`], and when the caller is polled again, in
/// periods (each and a half).
const CLOSES: [(u32, u32); 2] = [(2, 5), (300, LONG_STALL)];

/// Polls a waiting caller, then moves the clock `after` periods and a half on, adds a token (or
/// closes the limiter), and moves it on to `periods` periods and a half before the caller is polled
/// again (its task ran late, and its token, or the close, came meanwhile). The caller waited until
/// its `wait_turn` returns: it owes one status line per period up to then, `periods` of them, all
/// written before it returns, `Ok` or `Err`, whatever order the token (or the close) and the
/// overdue lines are looked at in.
async fn ended_after_a_stall(meanwhile: Meanwhile, after: u32, periods: u32) {
    let limiter = RateLimiter::new();
    let mut wait = task::spawn(limiter.wait_turn("invoice-sync"));
    assert_pending!(wait.poll());
    kata_support::settle().await;
    let came_at = STATUS_EVERY * after + STATUS_EVERY / 2;
    let stall = STATUS_EVERY * periods + STATUS_EVERY / 2;
    tokio::time::advance(came_at).await;
    match meanwhile {
        Meanwhile::Token => limiter.refill(1),
        Meanwhile::Close => limiter.close(),
    }
    tokio::time::advance(stall - came_at).await;
    kata_support::settle().await;
    // The wait is polled again as long as it asks to be (while it catches up), until it returns.
    let mut result = None;
    for _ in 0..=periods {
        if let Poll::Ready(ended) = wait.poll() {
            result = Some(ended);
            break;
        }
        kata_support::settle().await;
        if !wait.is_woken() {
            break;
        }
    }
    let lines = limiter.status_lines();
    let shown = if lines.len() > 6 {
        format!("{:?} .. {:?}", &lines[..3], &lines[lines.len() - 3..])
    } else {
        format!("{lines:?}")
    };
    let what = match meanwhile {
        Meanwhile::Token => "its token came",
        Meanwhile::Close => "the limiter was closed",
    };
    let story = format!(
        "the caller started waiting at 0 s, {what} at {came_at:?} while its task was not polled \
         (as when its task ran late), and it was polled again only at {stall:?}"
    );
    match (meanwhile, result) {
        (Meanwhile::Token, Some(Ok(()))) | (Meanwhile::Close, Some(Err(LimiterClosed))) => {}
        (Meanwhile::Token, Some(Err(LimiterClosed))) => {
            panic!("{story}: it was told the limiter closed")
        }
        (Meanwhile::Close, Some(Ok(()))) => {
            panic!("{story}: it returned `Ok` (served), but no token ever came")
        }
        (Meanwhile::Token, None) => panic!(
            "{story}, and again for as long as it asked to be, but it was still pending: it was \
             not served with the token that was there for it (status lines: {shown})"
        ),
        (Meanwhile::Close, None) => panic!(
            "{story}, and again for as long as it asked to be, but it was still pending: it was \
             not released with `Err(LimiterClosed)` (status lines: {shown})"
        ),
    }
    let (returned, unseen) = match meanwhile {
        Meanwhile::Token => ("was served", "a token it has not yet taken does not end its wait"),
        Meanwhile::Close => (
            "returned `Err(LimiterClosed)`",
            "a close it has not yet seen ends its wait no more than a token it has not yet taken",
        ),
    };
    assert_eq!(
        lines.len(),
        periods as usize,
        "{story}: it {returned} having written {} status line(s), expected {periods} (one per \
         {STATUS_EVERY:?} from when it started waiting until its `wait_turn` returned, each \
         written before it returns: {unseen}, and a caller that returns first tells the on-call \
         engineer it waited less than it did): {shown}",
        lines.len()
    );
}

/// How many periods (and a half) the caller of [`a_caller_dropped_while_it_catches_up`] is not
/// polled for, its token coming halfway: more lines than one poll's cooperative budget lets a wait
/// write, so a wait that awaits anything while it catches up returns `Pending` on the way, and can
/// be dropped there.
const CATCH_UP: u32 = 150;

/// Polls `wait` once, whatever it returns.
async fn poll_once<F: Future>(wait: Pin<&mut F>) -> Poll<F::Output> {
    let mut wait = Some(wait);
    std::future::poll_fn(|cx| Poll::Ready(wait.take().expect("polled once").poll(cx))).await
}

/// Whether a caller's wait is held back, and the waker to call when it is let go.
#[derive(Default)]
struct Hold {
    held: bool,
    waker: Option<Waker>,
}

/// A caller's wait that the test can hold back: while held, it is not polled at all (as when its
/// task runs late on a busy runtime), though the clock and every other task go on.
struct Holdable<F> {
    wait: Pin<Box<F>>,
    hold: Arc<Mutex<Hold>>,
}

impl<F: Future> Future for Holdable<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        {
            let mut hold = self.hold.lock().unwrap();
            if hold.held {
                hold.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
        self.wait.as_mut().poll(cx)
    }
}

/// Lets a held wait go: its task is polled again (if anything woke it meanwhile) at once.
fn let_go(hold: &Mutex<Hold>) {
    let waker = {
        let mut hold = hold.lock().unwrap();
        hold.held = false;
        hold.waker.take()
    };
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// One caller's wait, in units of 100 ms: `runs` are `(prompt, held)` pairs, the wait polled
/// promptly by the runtime for `prompt` units, then not polled at all for `held` units (its task
/// ran late); then it is polled promptly for `tail` units. `close`: its wait ends by the close of
/// the limiter, not a token; `in_hold`: that comes half a unit into the last hold (while the wait is
/// not polled), not half a unit after the tail. Holds are rarely a whole number of periods, so
/// each late poll lands somewhere inside a period.
type LatePolls = (Vec<(u64, u64)>, u64, bool, bool);

/// Scenarios for [`late_polls_keep_the_schedule`].
fn late_polls() -> impl Strategy<Value = LatePolls> {
    (proptest::collection::vec((0..25u64, 1..35u64), 1..=2), 0..25u64, any::<bool>(), any::<bool>())
}

/// A caller's wait that is held back (not polled) now and then, and polled promptly otherwise:
/// after each late poll its status lines stay on its own schedule, one every `STATUS_EVERY`
/// counted from when it started waiting, each when its period is up. Checked halfway through every
/// unit in which the wait is polled promptly, and when its wait returns.
async fn late_polls_keep_the_schedule(
    (runs, tail, close, in_hold): LatePolls,
) -> Result<(), String> {
    let unit = Duration::from_millis(100);
    let limiter = Arc::new(RateLimiter::new());
    let hold = Arc::new(Mutex::new(Hold::default()));
    let begin = Instant::now();
    let waiting = limiter.clone();
    let wait = async move { waiting.wait_turn("invoice-sync").await };
    let wait = Holdable { wait: Box::pin(wait), hold: hold.clone() };
    let caller = tokio::spawn(async move {
        let ended = wait.await;
        (ended, Instant::now())
    });
    // The caller starts waiting at 0 s; the clock does not move until it has been polled.
    kata_support::settle().await;
    let due = |at: Instant| ((at - begin).as_millis() / STATUS_EVERY.as_millis()) as usize;
    let what = if close { "the limiter was closed" } else { "its token came" };
    // The spans in which the wait was not polled, for the messages.
    let mut held: Vec<(Duration, Duration)> = Vec::new();
    let story = |held: &[(Duration, Duration)]| {
        format!(
            "the caller started waiting at 0 s; its task was not polled from {} (as when its task \
             runs late), and was polled promptly otherwise",
            held.iter()
                .map(|(from, to)| format!("{from:?} to {to:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    // Halfway through each of `units` units from `from`, the lines written so far.
    let prompt = |from: Instant, units: u64, held: Vec<(Duration, Duration)>| {
        let limiter = limiter.clone();
        async move {
            for k in 0..units {
                let at = from + unit * k as u32 + unit / 2;
                sleep_until(at).await;
                let (written, expected) = (lines_of(&limiter, "invoice-sync"), due(at));
                if written != expected {
                    return Err(format!(
                        "{}; at {:?}, still waiting, it had written {written} status line(s), \
                         expected {expected}: after a late poll a caller's lines stay on its own \
                         schedule, one each time a {STATUS_EVERY:?} counted from when it started \
                         waiting is up, not a period after it was polled again, and none are \
                         lost: {:?}",
                        story(&held),
                        at - begin,
                        limiter.status_lines()
                    ));
                }
            }
            Ok(())
        }
    };
    let end_it = || if close { limiter.close() } else { limiter.refill(1) };
    let mut now = begin;
    let mut ended_at = None;
    for (i, &(promptly, held_for)) in runs.iter().enumerate() {
        prompt(now, promptly, held.clone()).await?;
        now += unit * promptly as u32;
        sleep_until(now).await;
        hold.lock().unwrap().held = true;
        let from = now - begin;
        if in_hold && i + 1 == runs.len() {
            sleep_until(now + unit / 2).await;
            end_it();
        }
        now += unit * held_for as u32;
        sleep_until(now).await;
        held.push((from, now - begin));
        let_go(&hold);
        if in_hold && i + 1 == runs.len() {
            ended_at = Some(now);
        }
    }
    let ended_at = match ended_at {
        Some(at) => at,
        None => {
            prompt(now, tail, held.clone()).await?;
            let at = now + unit * tail as u32 + unit / 2;
            sleep_until(at).await;
            let (written, expected) = (lines_of(&limiter, "invoice-sync"), due(at));
            if written != expected {
                return Err(format!(
                    "{}; at {:?}, still waiting, it had written {written} status line(s), \
                     expected {expected}: after a late poll a caller's lines stay on its own \
                     schedule, one each time a {STATUS_EVERY:?} counted from when it started \
                     waiting is up, and none are lost: {:?}",
                    story(&held),
                    at - begin,
                    limiter.status_lines()
                ));
            }
            end_it();
            at
        }
    };
    let story = format!("{}; {what} at {:?}", story(&held), ended_at - begin);
    let (ended, returned) = match timeout(STATUS_EVERY * 60, caller).await {
        Ok(Ok(ended)) => ended,
        Ok(Err(_)) => return Err(format!("{story}, and the caller panicked")),
        Err(_) => return Err(format!("{story}, and the caller was still waiting a minute later")),
    };
    match (close, ended) {
        (false, Ok(())) | (true, Err(LimiterClosed)) => {}
        (false, Err(LimiterClosed)) => {
            return Err(format!("{story}: it was told the limiter closed, but it never was"));
        }
        (true, Ok(())) => {
            return Err(format!("{story}: it returned `Ok` (served), but no token ever came"));
        }
    }
    let (written, expected) = (lines_of(&limiter, "invoice-sync"), due(ended_at));
    if returned != ended_at || written != expected {
        return Err(format!(
            "{story}; its `wait_turn` returned at {:?} with {written} status line(s) written, \
             expected at {:?} with {expected} (one per {STATUS_EVERY:?} from when it started \
             waiting until it returned, each on its own schedule, also after a late poll): {:?}",
            returned - begin,
            ended_at - begin,
            limiter.status_lines()
        ));
    }
    Ok(())
}

/// The README's floor for a flood guard: a wait may cap the status lines it writes for one stall,
/// but never below 2^17 of them. A caller not polled for this many periods writes every line.
const CATCH_UP_FLOOR: u32 = 1 << 17;

/// How caller A of [`first_in_line_after_a_long_wait`] waits: polled promptly by the runtime all
/// along, or not polled at all from 0.5 s on until its wait is nearly over (its task ran late),
/// with its token coming halfway through that stall or after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LongWait {
    /// Polled promptly; the token comes `periods` periods and 0.75 in.
    Prompt,
    /// Not polled until `periods` periods and 0.25 in; the token comes halfway through the stall.
    TokenInStall,
    /// Not polled until `periods` periods and 0.25 in; the token comes half a period later.
    TokenAfterStall,
}

/// Caller A starts waiting at 0 s and caller B at 0.5 s; B's task is then not polled again (it is
/// in line, but its task ran late). A waits `periods` periods and more, as `how` says, and one
/// token comes: it is A's, however long A has waited, and A returns with one status line per
/// period it waited, however many.
async fn first_in_line_after_a_long_wait(how: LongWait, periods: u32) -> Result<(), String> {
    let limiter = Arc::new(RateLimiter::new());
    let begin = Instant::now();
    let (hold_a, hold_b) =
        (Arc::new(Mutex::new(Hold::default())), Arc::new(Mutex::new(Hold::default())));
    let start = |name: &'static str, hold: &Arc<Mutex<Hold>>| {
        let waiting = limiter.clone();
        let wait = async move { waiting.wait_turn(name).await };
        let wait = Holdable { wait: Box::pin(wait), hold: hold.clone() };
        tokio::spawn(async move {
            let ended = wait.await;
            (ended, Instant::now())
        })
    };
    let a = start("invoice-sync", &hold_a);
    kata_support::settle().await;
    sleep_until(begin + STATUS_EVERY / 2).await;
    let b = start("checkout", &hold_b);
    kata_support::settle().await;
    hold_b.lock().unwrap().held = true;
    let long = STATUS_EVERY * periods;
    let (let_go_at, token_at) = match how {
        LongWait::Prompt => (None, long + STATUS_EVERY * 3 / 4),
        LongWait::TokenInStall => (Some(long + STATUS_EVERY / 4), long / 2 + STATUS_EVERY / 4),
        LongWait::TokenAfterStall => (Some(long + STATUS_EVERY / 4), long + STATUS_EVERY * 3 / 4),
    };
    if let_go_at.is_some() {
        hold_a.lock().unwrap().held = true;
    }
    let mut events = vec![(token_at, "token")];
    if let Some(at) = let_go_at {
        events.push((at, "let go"));
    }
    events.sort();
    for (at, event) in events {
        sleep_until(begin + at).await;
        match event {
            "token" => limiter.refill(1),
            _ => let_go(&hold_a),
        }
    }
    let served_at = let_go_at.map_or(token_at, |at| at.max(token_at));
    let story = match let_go_at {
        None => format!(
            "caller A (invoice-sync) started waiting at 0 s and caller B (checkout) at 0.5 s, \
             B's task not polled again after that (B still in line); A's task was polled \
             promptly, and one token came at {token_at:?}"
        ),
        Some(at) => format!(
            "caller A (invoice-sync) started waiting at 0 s and caller B (checkout) at 0.5 s, \
             B's task not polled again after that (B still in line); A's task was not polled \
             from 0.5 s to {at:?} (as when its task runs late), and one token came at \
             {token_at:?}"
        ),
    };
    let ended = timeout(STATUS_EVERY * 60, a).await;
    b.abort();
    let (ended, returned) = match ended {
        Ok(Ok(ended)) => ended,
        Ok(Err(_)) => return Err(format!("{story}, and caller A panicked")),
        Err(_) => {
            return Err(format!(
                "{story}. A minute later A was still waiting: the token went to B, who started \
                 waiting after A. A lost its place in the queue somewhere in its long wait; \
                 callers are served in the order they started waiting, however long they wait"
            ));
        }
    };
    if ended != Ok(()) {
        return Err(format!("{story}: A returned {ended:?}, but the limiter was never closed"));
    }
    let (written, expected) = (lines_of(&limiter, "invoice-sync"), periods as usize);
    if returned - begin != served_at || written != expected {
        return Err(format!(
            "{story}: A's `wait_turn` returned at {:?} with {written} status line(s) written, \
             expected at {served_at:?} with {expected} (one per {STATUS_EVERY:?} it waited, \
             however many, also for the periods in which its task was not polled)",
            returned - begin
        ));
    }
    Ok(())
}

/// Lines the long waits of [`waits_write_their_own_lines`] write between them: two waits of
/// [`CATCH_UP_FLOOR`] periods each.
const TWO_LONG_WAITS: usize = 2 * CATCH_UP_FLOOR as usize;

/// Two callers of one client (A, B) wait [`CATCH_UP_FLOOR`] periods each at the same time, their
/// tasks not polled for nearly all of it (a day and a half in one jump of the clock), and are
/// served; then that client waits again (C), and another client (D) with it, 3.5 periods each.
/// Every wait writes all the lines it owes, whatever other waits wrote before it or beside it,
/// and `status_lines` keeps every line written: a flood guard counted over the waits of one
/// client or of the whole limiter, or a log that keeps only the newest lines, of any size below
/// the 262 150 lines written in all, fails. (A fix keeping such a count in a `static` fails
/// alike: this runs once, in a process of its own.)
async fn waits_write_their_own_lines() -> Result<(), String> {
    let limiter = Arc::new(RateLimiter::new());
    let begin = Instant::now();
    let start = |name: &'static str, hold: &Arc<Mutex<Hold>>| {
        let waiting = limiter.clone();
        let wait = async move { waiting.wait_turn(name).await };
        tokio::spawn(Holdable { wait: Box::pin(wait), hold: hold.clone() })
    };
    let holds: Vec<Arc<Mutex<Hold>>> = (0..4).map(|_| Arc::default()).collect();
    let a = start("invoice-sync", &holds[0]);
    kata_support::settle().await;
    sleep_until(begin + STATUS_EVERY / 2).await;
    let b = start("invoice-sync", &holds[1]);
    kata_support::settle().await;
    for hold in &holds[..2] {
        hold.lock().unwrap().held = true;
    }
    let long = STATUS_EVERY * CATCH_UP_FLOOR;
    sleep_until(begin + long + STATUS_EVERY / 4).await;
    for hold in &holds[..2] {
        let_go(hold);
    }
    sleep_until(begin + long + STATUS_EVERY * 3 / 4).await;
    limiter.refill(2);
    let story = format!(
        "callers A and B, both invoice-sync, started waiting at 0 s and 0.5 s, their tasks not \
         polled from 0.5 s to {:?} (a day and a half, as when their tasks run late), and two \
         tokens came at {:?}",
        long + STATUS_EVERY / 4,
        long + STATUS_EVERY * 3 / 4
    );
    for (name, wait) in [("A", a), ("B", b)] {
        match timeout(STATUS_EVERY * 60, wait).await {
            Ok(Ok(Ok(()))) => {}
            other => return Err(format!("{story}; {name} then ended with {other:?}, not served")),
        }
    }
    let written = limiter.status_lines().len();
    if written != TWO_LONG_WAITS {
        return Err(format!(
            "{story}: once both were served the limiter held {written} status line(s), expected \
             {TWO_LONG_WAITS}, {CATCH_UP_FLOOR} each (one per {STATUS_EVERY:?} it waited). A \
             wait may cap the lines it writes itself, never below {CATCH_UP_FLOOR}; the lines \
             other waits write beside it, of its client or another, do not count towards it"
        ));
    }
    let again = begin + long + STATUS_EVERY * 3 / 2;
    sleep_until(again).await;
    let c = start("invoice-sync", &holds[2]);
    let d = start("checkout", &holds[3]);
    sleep_until(again + STATUS_EVERY * 7 / 2).await;
    let lines = limiter.status_lines();
    let count = |client: &str| lines.iter().filter(|line| line.contains(client)).count();
    let seen = (lines.len(), count("invoice-sync"), count("checkout"));
    let expected = (TWO_LONG_WAITS + 6, TWO_LONG_WAITS + 3, 3);
    if seen != expected {
        return Err(format!(
            "callers A and B, both invoice-sync, started waiting at 0 s and 0.5 s, their tasks \
             not polled from 0.5 s to {:?} (a day and a half), and were served at {:?}, each \
             with its {CATCH_UP_FLOOR} status lines; then, at {:?}, caller C (invoice-sync again) \
             and caller D (checkout) started waiting. 3.5 periods later `status_lines()` held \
             {} line(s), {} of invoice-sync and {} of checkout; expected {}, {} and {}: A's and \
             B's lines, then 3 of C's and 3 of D's. A wait writes one line per {STATUS_EVERY:?} \
             it has itself waited, whatever other waits wrote before it or beside it, of its \
             client or another (a flood guard counts only the wait's own lines), and the limiter \
             keeps every line written, oldest first, dropping none to make room for newer ones",
            long + STATUS_EVERY / 4,
            long + STATUS_EVERY * 3 / 4,
            again - begin,
            seen.0,
            seen.1,
            seen.2,
            expected.0,
            expected.1,
            expected.2
        ));
    }
    drop(lines);
    limiter.refill(2);
    for (name, wait) in [("C", c), ("D", d)] {
        match timeout(STATUS_EVERY * 60, wait).await {
            Ok(Ok(Ok(()))) => {}
            other => {
                return Err(format!(
                    "callers C and D waited 3.5 periods, then two tokens came; {name} then ended \
                     with {other:?}, not served"
                ));
            }
        }
    }
    Ok(())
}

/// Caller A's `wait_turn` is built at 0 s but first polled only `gap` later (the handler built its
/// wait, did other work, then awaited it); caller B starts waiting a quarter period before A's
/// first poll. A starts waiting at that first poll: its first line is due a period after it, not
/// after the call, and B, who started waiting first, gets the first token.
async fn built_before_it_waits(gap: Duration) -> Result<(), String> {
    let limiter = Arc::new(RateLimiter::new());
    let served = Arc::new(Mutex::new(Vec::new()));
    let begin = Instant::now();
    let polled = begin + gap;
    let a = {
        let (limiter, served) = (limiter.clone(), served.clone());
        tokio::spawn(async move {
            let wait = limiter.wait_turn("invoice-sync");
            sleep_until(polled).await;
            wait.await?;
            served.lock().unwrap().push("invoice-sync");
            Ok::<(), LimiterClosed>(())
        })
    };
    sleep_until(polled - STATUS_EVERY / 4).await;
    let b = caller(&limiter, "checkout", &served);
    let story = format!(
        "caller A (invoice-sync) had its `wait_turn` built at 0 s but first polled (started \
         waiting) only at {gap:?}; caller B (checkout) started waiting at {:?}",
        gap - STATUS_EVERY / 4
    );
    let lines_at = |at: Duration, expected: (usize, usize)| {
        let seen = (lines_of(&limiter, "invoice-sync"), lines_of(&limiter, "checkout"));
        if seen == expected {
            return Ok(());
        }
        let lines = limiter.status_lines();
        let shown = if lines.len() > 6 {
            format!("{:?} .. {:?}", &lines[..3], &lines[lines.len() - 3..])
        } else {
            format!("{lines:?}")
        };
        Err(format!(
            "{story}. At {at:?} A had written {} status line(s) and B {}, expected {} and {} \
             (one per {STATUS_EVERY:?} each has waited since its wait was first polled: a \
             `wait_turn` built but not yet polled is not waiting, it has no place in line and \
             owes no line for that time): {shown}",
            seen.0, seen.1, expected.0, expected.1
        ))
    };
    for (after_poll, expected) in [
        (Duration::ZERO, (0, 0)),
        (STATUS_EVERY * 7 / 10, (0, 0)),
        (STATUS_EVERY * 16 / 10, (1, 1)),
    ] {
        sleep_until(polled + after_poll).await;
        kata_support::settle().await;
        lines_at(gap + after_poll, expected)?;
    }
    limiter.refill(1);
    kata_support::settle().await;
    let first = served.lock().unwrap().clone();
    if first != ["checkout"] {
        return Err(format!(
            "{story}. One token came at {:?} and {first:?} had been served, expected [\"checkout\"]: \
             callers are served in the order they started waiting, and A started only at its \
             first poll, after B",
            gap + STATUS_EVERY * 16 / 10
        ));
    }
    sleep_until(polled + STATUS_EVERY * 22 / 10).await;
    limiter.refill(1);
    for handle in [a, b] {
        match timeout(STATUS_EVERY * 60, handle).await {
            Ok(Ok(Ok(()))) => {}
            other => {
                return Err(format!("{story}. A second token came, but a caller ended {other:?}"));
            }
        }
    }
    lines_at(gap + STATUS_EVERY * 22 / 10, (2, 1))
}

/// Callers whose waits are first polled at one instant of the clock: how many callers; whose wait
/// each poll is (a caller's first appearance is its first poll, and a caller may be polled again
/// and again before one first polled earlier is polled again); how many tokens are there before
/// anyone waits (fewer than callers).
type FirstPolls = (usize, Vec<usize>, usize);

/// Scenarios for [`served_in_the_order_first_polled`].
fn first_polls() -> impl Strategy<Value = FirstPolls> {
    (2..=4usize).prop_flat_map(|callers| {
        (Just(callers), proptest::collection::vec(0..callers, 1..=12), 0..callers)
    })
}

/// The client of each caller of [`served_in_the_order_first_polled`].
const CLIENTS: [&str; 4] = ["invoice-sync", "checkout", "refunds", "payouts"];

/// How often each caller is polled in a row once every caller has been polled: enough for a wait
/// that polls its way through a few steps before it queues to get there, before the callers first
/// polled earlier are polled again.
const POLLS_IN_A_ROW: usize = 8;

/// Polls caller `i`'s wait once, unless it has ended; notes its first poll and how it ended.
fn poll_caller<F: Future<Output = Result<(), LimiterClosed>>>(
    waits: &mut [task::Spawn<F>],
    ended: &mut [Option<Result<(), LimiterClosed>>],
    first_polled: &mut Vec<usize>,
    i: usize,
) {
    if ended[i].is_some() {
        return;
    }
    if !first_polled.contains(&i) {
        first_polled.push(i);
    }
    if let Poll::Ready(outcome) = waits[i].poll() {
        ended[i] = Some(outcome);
    }
}

/// Callers first polled at one instant, in the order of `polls` (each caller not named there
/// after them), `ready` tokens there before any of them; then every caller polled
/// [`POLLS_IN_A_ROW`] times in a row, the one first polled last first, and one token after
/// another: the callers must be served in the order of their first polls, the first `ready` of
/// them by the tokens already there.
async fn served_in_the_order_first_polled(
    (callers, polls, ready): FirstPolls,
) -> Result<(), String> {
    let limiter = RateLimiter::new();
    limiter.refill(ready);
    let mut waits: Vec<_> =
        CLIENTS[..callers].iter().map(|client| task::spawn(limiter.wait_turn(client))).collect();
    let mut ended = vec![None; callers];
    let mut first_polled = Vec::new();
    for &i in &polls {
        poll_caller(&mut waits, &mut ended, &mut first_polled, i);
    }
    for i in 0..callers {
        if !first_polled.contains(&i) {
            poll_caller(&mut waits, &mut ended, &mut first_polled, i);
        }
    }
    kata_support::settle().await;
    for &i in first_polled.clone().iter().rev() {
        for _ in 0..POLLS_IN_A_ROW {
            poll_caller(&mut waits, &mut ended, &mut first_polled, i);
        }
    }
    let name = |i: &usize| CLIENTS[*i];
    let story = format!(
        "{} callers' waits were first polled in the order {:?}, all at one instant of the clock \
         (polls in turn: {:?}, then any caller not yet polled, then each caller polled \
         {POLLS_IN_A_ROW} times in a row, the one first polled last first), with {ready} \
         token(s) there before anyone waited and one more at a time after that",
        callers,
        first_polled.iter().map(name).collect::<Vec<_>>(),
        polls.iter().map(name).collect::<Vec<_>>(),
    );
    for tokens in ready..=callers {
        if tokens > ready {
            limiter.refill(1);
        }
        // Every caller still waiting is polled, the one first polled last first, until nothing
        // more comes of it.
        for _ in 0..2 {
            kata_support::settle().await;
            for &i in first_polled.clone().iter().rev() {
                poll_caller(&mut waits, &mut ended, &mut first_polled, i);
            }
        }
        if let Some(i) = ended.iter().position(|e| *e == Some(Err(LimiterClosed))) {
            return Err(format!(
                "{story}: {} was told the limiter closed, but it never was",
                CLIENTS[i]
            ));
        }
        let served: Vec<_> =
            first_polled.iter().filter(|&&i| ended[i].is_some()).map(name).collect();
        let expected: Vec<_> = first_polled[..tokens.min(callers)].iter().map(name).collect();
        if served != expected {
            return Err(format!(
                "{story}. Once {tokens} token(s) had come, {served:?} had been served, expected \
                 {expected:?}: a caller starts waiting, and takes its place in line, at its first \
                 poll, so a caller first polled after another is served after it, however often \
                 it is polled before the other is polled again"
            ));
        }
    }
    Ok(())
}

hidden_test! {
    /// Callers whose waits are first polled at one instant, in any order, each polled again any
    /// number of times before the ones first polled earlier are polled again (invoice-sync, then
    /// checkout twice, then invoice-sync): they are served in the order of their first polls.
    fn callers_first_polled_at_one_instant_are_served_in_that_order() {
        check_property(64, first_polls(), served_in_the_order_first_polled);
    }

    /// The same, fixed: A polled, B polled twice, A again (and with three callers, C twice, B
    /// again, A again), with no token there and with one.
    async fn a_caller_first_polled_first_is_served_first_however_the_others_are_polled() {
        for scenario in [
            (2, vec![0, 1, 1, 0], 0),
            (2, vec![0, 1, 1, 0], 1),
            (3, vec![0, 1, 2, 2, 1, 0], 0),
            (3, vec![0, 1, 2, 2, 1, 0], 2),
        ] {
            if let Err(seen) = served_in_the_order_first_polled(scenario).await {
                panic!("{seen}");
            }
        }
    }

    /// A `wait_turn` built at one instant and first polled later (half a period, and an hour and
    /// a half period): the caller starts waiting at that first poll, for its place in line and
    /// for its status lines.
    async fn a_wait_built_before_it_is_awaited_starts_at_its_first_poll() {
        for gap in [STATUS_EVERY / 2, STATUS_EVERY * 3600 + STATUS_EVERY / 2] {
            if let Err(seen) = built_before_it_waits(gap).await {
                panic!("{seen}");
            }
        }
    }

    /// Callers that start at any times and tokens that come at any times: callers are served in
    /// the order they started waiting, however long they wait, with a status line per period.
    fn callers_are_served_in_order_whenever_tokens_come() {
        check_property(64, arrivals(), serve_in_order);
    }

    /// A wait cut short by its caller's timeout, and a retry under the same client name later:
    /// the retry writes one status line per period it has itself waited.
    fn a_retry_after_a_cut_counts_its_own_wait() {
        check_property(32, retries(), retry_after_a_cut);
    }

    /// A caller whose task runs late now and then (not polled for a while, each time rarely a whole
    /// number of periods), and is polled promptly otherwise: its lines stay on the schedule of its
    /// own start, each when its period is up, and it returns with one line per period waited.
    fn a_caller_polled_late_stays_on_its_own_schedule() {
        check_property(32, late_polls(), late_polls_keep_the_schedule);
    }

    /// The same, fixed: not polled from 0 s to 2.5 s (the token at 3.25 s), and for ten minutes
    /// and 0.3 s (then its token, or the close, 1.25 s later).
    async fn a_caller_polled_late_keeps_its_schedule_after_a_long_stall() {
        let one = |held: u64, tail: u64, close: bool| (vec![(0, held)], tail, close, false);
        for scenario in [one(25, 7, false), one(6003, 12, false), one(6003, 12, true)] {
            if let Err(seen) = late_polls_keep_the_schedule(scenario).await {
                panic!("{seen}");
            }
        }
    }

    /// A waiting caller dropped at any point (while queued, or just after a token was handed to
    /// it): the token goes to the next caller, the dropped caller's status lines stop, and it
    /// leaves no task behind.
    async fn a_dropped_wait_passes_the_token_on_and_goes_quiet() {
        type Noted = (Arc<RateLimiter>, Arc<Mutex<Option<usize>>>);
        assert_cancel_safe_with(
            Options::default().forbid_leftover_tasks().cut_every(Duration::from_millis(100)),
            || {
                let limiter = Arc::new(RateLimiter::new());
                let refill = limiter.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(REFILL_AT).await;
                    refill.refill(1);
                });
                (limiter, Arc::new(Mutex::new(None)))
            },
            |(limiter, lines_at_drop): Noted| {
                let waiting = limiter.clone();
                let wait = async move { waiting.wait_turn("invoice-sync").await };
                NotedAtDrop { wait: Box::pin(wait), limiter, lines_at_drop }
            },
            |(limiter, lines_at_drop): Noted, outcome| async move {
                match outcome {
                    Outcome::Completed(Ok(())) => return Ok(()),
                    Outcome::Completed(Err(LimiterClosed)) => {
                        return Err("the wait failed, but the limiter was never closed".into());
                    }
                    Outcome::Cancelled { .. } => {}
                }
                // The lines written when the wait was dropped, before its own drop ran.
                let lines_at_cut = lines_at_drop.lock().unwrap().expect("the wait was dropped");
                let next = limiter.clone();
                let checkout = tokio::spawn(async move { next.wait_turn("checkout").await });
                match timeout(REFILL_AT + STATUS_EVERY * 10, checkout).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(LimiterClosed))) => {
                        return Err("the next caller was told the limiter closed".into());
                    }
                    Ok(Err(_)) => return Err("the next caller panicked".into()),
                    Err(_) => {
                        return Err(format!(
                            "the next caller, who started waiting after the dropped one, had \
                             waited {:?} with nothing, though one token came at {REFILL_AT:?}: the \
                             token was not handed on to the caller still waiting. A dropped wait \
                             must neither take the token nor hold up the callers behind it",
                            REFILL_AT + STATUS_EVERY * 10
                        ));
                    }
                }
                let lines_now = lines_of(&limiter, "invoice-sync");
                if lines_now != lines_at_cut {
                    return Err(format!(
                        "the caller stopped waiting with {lines_at_cut} status lines written, but \
                         {} more came after that, while its wait was being dropped or after it \
                         was gone (a caller that stops waiting writes no more lines, not even a \
                         last one as it leaves): {:?}",
                        lines_now - lines_at_cut,
                        limiter.status_lines()
                    ));
                }
                Ok(())
            },
        )
        .await;
    }

    /// A caller polled late, whose token came while it was not polled, dropped after any poll of
    /// its catch-up (before its `wait_turn` returned): the token goes to the next caller, the
    /// dropped caller's lines stop, and it leaves no task behind.
    async fn a_caller_dropped_while_it_catches_up_takes_no_token() {
        type Noted = (Arc<RateLimiter>, Arc<Mutex<Option<usize>>>, Arc<AtomicBool>);
        let token_at = STATUS_EVERY * (CATCH_UP / 2) + STATUS_EVERY / 2;
        let stall = STATUS_EVERY * CATCH_UP + STATUS_EVERY / 2;
        let story = format!(
            "the caller started waiting at 0 s, its token came at {token_at:?} while its task was \
             not polled (as when its task ran late), and it was polled again from {stall:?} on"
        );
        assert_cancel_safe_with(
            Options::default().forbid_leftover_tasks(),
            || (Arc::new(RateLimiter::new()), Arc::new(Mutex::new(None)), Arc::default()),
            |(limiter, lines_at_drop, refilled): Noted| {
                let waiting = limiter.clone();
                let wait = async move {
                    let mut wait = std::pin::pin!(waiting.wait_turn("invoice-sync"));
                    if let Poll::Ready(ended) = poll_once(wait.as_mut()).await {
                        return ended;
                    }
                    // The caller's task does not run again until `stall`; its token comes meanwhile.
                    tokio::time::advance(token_at).await;
                    waiting.refill(1);
                    refilled.store(true, Ordering::SeqCst);
                    tokio::time::advance(stall - token_at).await;
                    wait.await
                };
                NotedAtDrop { wait: Box::pin(wait), limiter, lines_at_drop }
            },
            |(limiter, lines_at_drop, refilled): Noted, outcome| {
                let story = story.clone();
                async move {
                    match outcome {
                        Outcome::Completed(Ok(())) => return Ok(()),
                        Outcome::Completed(Err(LimiterClosed)) => {
                            return Err(format!(
                                "{story}: it was told the limiter closed, but it never was"
                            ));
                        }
                        Outcome::Cancelled { .. } => {}
                    }
                    let lines_at_cut = lines_at_drop.lock().unwrap().expect("the wait was dropped");
                    // A wait dropped before its task stalled never saw the token come: it comes now.
                    let token_came = refilled.load(Ordering::SeqCst);
                    if !token_came {
                        limiter.refill(1);
                    }
                    let next = limiter.clone();
                    let checkout = tokio::spawn(async move { next.wait_turn("checkout").await });
                    match timeout(STATUS_EVERY * 10, checkout).await {
                        Ok(Ok(Ok(()))) => {}
                        Ok(Ok(Err(LimiterClosed))) => {
                            return Err("the next caller was told the limiter closed".into());
                        }
                        Ok(Err(_)) => return Err("the next caller panicked".into()),
                        Err(_) if token_came => {
                            return Err(format!(
                                "{story}; it was dropped before its `wait_turn` returned, with \
                                 {lines_at_cut} of the {CATCH_UP} lines it owed written, and the \
                                 next caller then waited {:?} with nothing: the dropped caller \
                                 took the token with it. A caller that stops waiting before its \
                                 `wait_turn` returns has not been served, even while it still \
                                 catches up on its lines, and must leave the token to the next \
                                 caller",
                                STATUS_EVERY * 10
                            ));
                        }
                        Err(_) => {
                            return Err(format!(
                                "the caller was dropped before its token came, and the next \
                                 caller then waited {:?} with nothing, though a token came: the \
                                 token was not handed on to the caller still waiting",
                                STATUS_EVERY * 10
                            ));
                        }
                    }
                    let lines_now = lines_of(&limiter, "invoice-sync");
                    if lines_now != lines_at_cut {
                        return Err(format!(
                            "{story}; it stopped waiting with {lines_at_cut} status lines \
                             written, but {} more came after that, while its wait was being \
                             dropped or after it was gone (a caller that stops waiting writes no \
                             more lines, not even the ones it still owed)",
                            lines_now - lines_at_cut,
                        ));
                    }
                    Ok(())
                }
            },
        )
        .await;
    }

    /// The billing service's jobs and checkout requests run in tasks of their own
    /// (`tokio::spawn`) on its multi-thread runtime, all waiting on one limiter (an
    /// `Arc<RateLimiter>`): `RateLimiter` must stay `Sync` and `wait_turn`'s future `Send`, as the
    /// original's are.
    async fn a_limiter_can_be_shared_by_spawned_callers() {
        let limiter = RateLimiter::new();
        limiter.refill(1);
        let mut not_shareable = Vec::new();
        // A shared reference is `Send` exactly when what it points to is `Sync`.
        if !kata_support::is_send!(&limiter) {
            not_shareable.push("`RateLimiter` is not `Sync`");
        }
        let wait = limiter.wait_turn("invoice-sync");
        if !kata_support::is_send!(wait) {
            not_shareable.push("the future returned by `wait_turn` is not `Send`");
        }
        let outcome = wait.await;
        assert!(
            not_shareable.is_empty(),
            "{}: the billing service can no longer share one limiter across the tasks it \
             `tokio::spawn`s on its multi-thread runtime. A waiting caller holds nothing across \
             an `.await` that is not `Send` (an `Rc`, a `RefCell` borrow, a `std` lock guard), \
             and what the limiter keeps needs a lock that threads can share",
            not_shareable.join(", and ")
        );
        assert_eq!(outcome, Ok(()), "a token was there: the caller must get it");
    }

    /// A token is there: the caller gets it at once, with no status line.
    async fn takes_an_available_token_at_once() {
        let limiter = RateLimiter::new();
        limiter.refill(1);
        let start = Instant::now();
        assert_eq!(limiter.wait_turn("invoice-sync").await, Ok(()));
        assert_eq!(start.elapsed(), Duration::ZERO, "a token was available: no waiting");
        assert!(limiter.status_lines().is_empty(), "nobody waited, so no status line");
    }

    /// A caller that waits writes a status line every `STATUS_EVERY`.
    async fn writes_a_status_line_while_waiting() {
        let limiter = Arc::new(RateLimiter::new());
        let served = Arc::default();
        let start = Instant::now();
        let a = caller(&limiter, "invoice-sync", &served);
        // Look at the lines halfway through each period while the caller still waits, with nobody polling
        // its wait but the runtime.
        for half_periods in [1u32, 3, 5] {
            sleep_until(start + STATUS_EVERY * half_periods / 2).await;
            let waited = start.elapsed();
            let expected = (half_periods / 2) as usize;
            let lines = limiter.status_lines();
            assert_eq!(
                lines.len(),
                expected,
                "the caller had been waiting for {waited:?}, with no token yet, and had written \
                 {} status line(s), expected {expected} (one every {STATUS_EVERY:?} while it \
                 waits, each written when its period is up, not when the caller is served): \
                 {lines:?}",
                lines.len()
            );
        }
        limiter.refill(1);
        assert_eq!(a.await.expect("the caller panicked"), Ok(()));
        let lines = limiter.status_lines();
        assert_eq!(
            lines.len(),
            2,
            "a caller that waited 2.5 status periods should have written 2 status lines, one \
             every {STATUS_EVERY:?}; it wrote {lines:?}"
        );
        assert!(
            lines.iter().all(|l| l.contains("invoice-sync")),
            "each status line must name the waiting caller: {lines:?}"
        );
    }

    /// A waiting caller that is polled late (its task did not run while the clock moved 2.5
    /// periods on in one step, or ten minutes) still writes one status line per period it
    /// waited, however many periods it missed.
    async fn a_caller_polled_late_writes_a_line_per_period_waited() {
        for periods in [2u32, LONG_STALL] {
            caller_polled_late(periods).await;
        }
    }

    /// A waiting caller whose token came while it was not polled (its task ran late) writes, before
    /// it is served, one status line per period until it is served, however many.
    async fn a_caller_served_late_writes_every_line_it_owes_first() {
        for (token_after, periods) in STALLS {
            ended_after_a_stall(Meanwhile::Token, token_after, periods).await;
        }
    }

    /// A waiting caller released by a close that came while it was not polled (its task ran late)
    /// writes, before it returns its error, one status line per period until it returns, however
    /// many.
    async fn a_caller_closed_late_writes_every_line_it_owes_first() {
        for (closed_after, periods) in CLOSES {
            ended_after_a_stall(Meanwhile::Close, closed_after, periods).await;
        }
    }

    /// The caller who has waited longest gets the next token, status ticks or not.
    async fn serves_callers_in_the_order_they_started_waiting() {
        let limiter = Arc::new(RateLimiter::new());
        let served = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let a = caller(&limiter, "A", &served);
        sleep_until(start + STATUS_EVERY / 2).await;
        let b = caller(&limiter, "B", &served);
        // By now A has had two status ticks (at 1 s and 2 s) and B one (at 1.5 s).
        sleep_until(start + STATUS_EVERY * 2 + STATUS_EVERY * 4 / 10).await;
        limiter.refill(1);
        kata_support::settle().await;
        let after_one = served.lock().unwrap().clone();
        assert_eq!(
            after_one.len(),
            1,
            "one token came at 2.4 s, so one caller should have been served, but {after_one:?} \
             were: a caller served must take its token for its API call, not give it back"
        );
        sleep_until(start + STATUS_EVERY * 3 + STATUS_EVERY / 5).await;
        limiter.refill(1);
        for handle in [a, b] {
            assert_eq!(handle.await.expect("a caller panicked"), Ok(()));
        }
        let order = served.lock().unwrap().clone();
        assert_eq!(
            order,
            ["A", "B"],
            "caller A started waiting at 0 s and caller B at 0.5 s, so the first token (at 2.4 s) \
             was A's, but the order served was {order:?}: A lost its place in the semaphore's \
             queue. A place in that queue belongs to a pending `acquire()` future. Drop it (as \
             `select!` drops its losing branch on every status tick) and the next `acquire()` \
             joins at the back; never wait in one (polling `try_acquire`) and there is no place \
             to keep."
        );
        let lines = limiter.status_lines();
        assert!(
            lines.iter().filter(|l| l.contains('A')).count() >= 2,
            "caller A waited 2.4 s, so it should have written at least 2 status lines: {lines:?}"
        );
    }

    /// A caller who stops waiting (its `wait_turn` is dropped) must not take a token.
    async fn a_caller_who_gives_up_takes_no_token() {
        let limiter = Arc::new(RateLimiter::new());
        let served = Arc::new(Mutex::new(Vec::new()));
        let mut gave_up = task::spawn(limiter.wait_turn("A"));
        assert_pending!(gave_up.poll());
        drop(gave_up);
        let b = caller(&limiter, "B", &served);
        kata_support::settle().await;
        limiter.refill(1);
        let waited = timeout(STATUS_EVERY * 60, b).await;
        assert!(
            matches!(waited, Ok(Ok(Ok(())))),
            "caller A stopped waiting (its `wait_turn` future was dropped) before the token came, \
             so the token should have gone to B, who was still waiting; B was still waiting a \
             minute later: the token was not handed on to B. A dropped wait must leave nothing \
             behind that takes the token or holds up the callers who came after it."
        );
    }

    /// Closing the limiter releases every waiter with an error.
    async fn closing_releases_waiters() {
        let limiter = Arc::new(RateLimiter::new());
        let served = Arc::new(Mutex::new(Vec::new()));
        let a = caller(&limiter, "A", &served);
        tokio::time::sleep(STATUS_EVERY * 3).await;
        limiter.close();
        assert_eq!(a.await.expect("the caller panicked"), Err(LimiterClosed));
    }

    /// A caller that waits an hour, polled promptly, with a later caller in line behind it: the
    /// token is still the first caller's, and it returns with one status line per period waited.
    async fn a_caller_keeps_its_place_however_long_it_waits() {
        if let Err(seen) = first_in_line_after_a_long_wait(LongWait::Prompt, 3600).await {
            panic!("{seen}");
        }
    }

    /// The same over a day in which the first caller's task is not polled at all, its token coming
    /// after that stall, or over [`CATCH_UP_FLOOR`] periods (a day and a half) with its token
    /// coming during it: the token is still the first caller's, and it returns with every status
    /// line it owes, 86 400 or 131 072, so that a flood guard capping the lines of one stall
    /// anywhere below the README's floor fails. (On one seed's runtime: every run pays for the
    /// lines, and no branch is left to chance.)
    fn a_caller_kept_waiting_for_a_day_keeps_its_place() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        for (how, periods) in
            [(LongWait::TokenInStall, CATCH_UP_FLOOR), (LongWait::TokenAfterStall, 86_400)]
        {
            if let Err(seen) = runtime.block_on(first_in_line_after_a_long_wait(how, periods)) {
                panic!("{seen}");
            }
        }
    }

    /// Many lines written by many waits: two waits of one client, each of [`CATCH_UP_FLOOR`]
    /// periods at the same time, then that client again and another one: every wait writes all
    /// its own lines, and the limiter keeps them all (262 150). (On one seed's runtime: every run
    /// pays for the lines.)
    fn each_wait_writes_its_own_lines_whatever_other_waits_wrote() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        if let Err(seen) = runtime.block_on(waits_write_their_own_lines()) {
            panic!("{seen}");
        }
    }
}
