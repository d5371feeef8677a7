//! Hidden tests for kata 05: an attempt that misses its deadline must be stopped, not detached,
//! so that a retry, a `TimedOut` or a cancelled checkout never leaves a charge running behind it;
//! at most one attempt of a payment runs at a time; and a gateway client that panics comes back as
//! `GatewayCrashed`, without retrying and without the panic escaping `pay`. One checkout serves
//! several customers at once, each as if alone; a dropped or finished `pay` leaves nothing behind
//! that answers for the next one; a `pay` dropped without a running runtime stops quietly; and a
//! checkout makes exactly the attempts it was given, each run where `abort` can stop it, and with
//! any deadline up to `Duration::MAX`.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::Duration;

use card_charge_timeout::{Card, ChargeId, Checkout, Declined, Gateway, PayError};
use futures::FutureExt;
use kata_support::{
    Options, Outcome, assert_cancel_safe_at_shutdown, assert_cancel_safe_with, check_property,
    hidden_test,
};
use proptest::prelude::*;
use tokio::time::{Instant, sleep, sleep_until, timeout};

/// Every attempt gets this long.
const DEADLINE: Duration = Duration::from_secs(1);
/// Long enough for any abandoned attempt in these tests to finish, if it is still running.
const AFTERWARDS: Duration = Duration::from_secs(60);

/// How a fake gateway answers its n-th request.
#[derive(Debug, Clone, Copy)]
enum Reply {
    /// Charges the card after this much processing time. With no processing time, it charges in
    /// its very first poll, without ever returning `Pending`.
    ChargeAfter(Duration),
    /// Declines after this much processing time.
    DeclineAfter(Duration),
    /// Charges the card after this much processing time, then panics (say, parsing the reply).
    /// With no processing time, it charges and panics in its very first poll, without ever
    /// returning `Pending`.
    ChargeThenPanic(Duration),
    /// The same, with a panic of this kind.
    ChargeThenPanicWith(Duration, ClientPanic),
    /// Never answers.
    Hang,
}

/// The payloads a gateway client's panic may carry.
#[derive(Debug, Clone, Copy)]
enum ClientPanic {
    /// A literal message (a `&'static str` payload).
    Literal,
    /// A formatted message (a `String` payload).
    Formatted,
    /// A literal message that says the client timed out.
    TimeoutLiteral,
    /// A formatted message that says the client timed out.
    TimeoutFormatted,
    /// A typed value, thrown with `std::panic::panic_any`.
    Typed,
}

impl ClientPanic {
    const ALL: [ClientPanic; 5] = [
        ClientPanic::Literal,
        ClientPanic::Formatted,
        ClientPanic::TimeoutLiteral,
        ClientPanic::TimeoutFormatted,
        ClientPanic::Typed,
    ];

    fn describe(self) -> &'static str {
        match self {
            ClientPanic::Literal => "a literal message",
            ClientPanic::Formatted => "a formatted message",
            ClientPanic::TimeoutLiteral => "the literal message \"request timed out\"",
            ClientPanic::TimeoutFormatted => {
                "a formatted message saying the request timed out reading the reply"
            }
            ClientPanic::Typed => "a typed payload (`panic_any`)",
        }
    }

    fn raise(self, request: usize) -> ! {
        match self {
            ClientPanic::Literal => panic!("gateway client: unexpected end of reply"),
            ClientPanic::Formatted => panic!("gateway client: bad reply to request {request}"),
            ClientPanic::TimeoutLiteral => panic!("gateway client: request timed out"),
            ClientPanic::TimeoutFormatted => panic!(
                "gateway client: request {request} timed out reading the gateway's reply \
                 (timeout after 30s)"
            ),
            ClientPanic::Typed => std::panic::panic_any(ClientFault(request)),
        }
    }
}

/// A typed panic payload, as a gateway client might throw with `std::panic::panic_any`.
#[derive(Debug)]
struct ClientFault(#[allow(dead_code)] usize);

/// The smallest whole number of milliseconds not under `d`: tokio's timer counts whole
/// milliseconds of the runtime's clock and rounds every deadline up to the next one.
fn whole_ms_up(d: Duration) -> Duration {
    let ns = d.as_nanos().div_ceil(1_000_000) * 1_000_000;
    Duration::from_nanos(u64::try_from(ns).expect("a short deadline"))
}

/// How far past a tick of tokio's timer the paused clock is, `origin` being a tick (the instant
/// the test started, when the runtime's timer started counting).
fn in_tick(origin: Instant) -> Duration {
    let nanos = (Instant::now() - origin).as_nanos() % 1_000_000;
    Duration::from_nanos(u64::try_from(nanos).expect("under a millisecond"))
}

/// Moves the paused clock forward, by under a millisecond, to `offset` past a tick.
async fn move_into_tick(origin: Instant, offset: Duration) {
    let ms = Duration::from_millis(1);
    let step = offset + ms - in_tick(origin);
    tokio::time::advance(if step >= ms { step - ms } else { step }).await;
}

/// What an attempt's charge future did before it ended, as far as it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Charged,
    ChargedThenPanicked,
    Declined,
}

/// Counts the attempts whose charge future still exists: raised when the gateway is asked, lowered
/// when that future is dropped (finished, or stopped).
struct Live {
    attempts: Arc<AtomicUsize>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.attempts.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A gateway that follows a script, one reply per request (the last reply repeats), and counts
/// the charges it actually made.
#[derive(Debug, Clone)]
struct FakeGateway {
    script: Arc<Vec<Reply>>,
    requests: Arc<AtomicUsize>,
    charges: Arc<AtomicUsize>,
    /// Attempts whose charge future has not been dropped yet.
    live: Arc<AtomicUsize>,
    /// The first request sent while an earlier attempt was still running, if any.
    overlap: Arc<Mutex<Option<String>>>,
    /// What each request's charge future answered, by request index, if it got that far.
    answers: Arc<Mutex<Vec<(usize, Answer)>>>,
    /// The task that first polled each request's charge future (`None`: outside any task).
    polled_by: Arc<Mutex<Vec<(usize, Option<tokio::task::Id>)>>>,
    /// The thread that first polled each request's charge future.
    polled_on: Arc<Mutex<Vec<(usize, std::thread::ThreadId)>>>,
}

impl FakeGateway {
    fn new(script: &[Reply]) -> Self {
        FakeGateway {
            script: Arc::new(script.to_vec()),
            requests: Arc::default(),
            charges: Arc::default(),
            live: Arc::default(),
            overlap: Arc::default(),
            answers: Arc::default(),
            polled_by: Arc::default(),
            polled_on: Arc::default(),
        }
    }

    /// What request `n` (counted from 0) answered, if its charge future got that far.
    fn answer(&self, n: usize) -> Option<Answer> {
        let answers = self.answers.lock().expect("answers lock");
        answers.iter().find(|(request, _)| *request == n).map(|(_, answer)| *answer)
    }

    /// Says how a request overlapped an earlier attempt that was still running, if one did.
    fn overlap(&self) -> Option<String> {
        self.overlap.lock().expect("overlap lock").clone()
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn charges(&self) -> usize {
        self.charges.load(Ordering::SeqCst)
    }
}

impl Gateway for FakeGateway {
    fn charge(
        &self,
        _card: &Card,
        _amount_cents: u64,
    ) -> impl Future<Output = Result<ChargeId, Declined>> + Send + 'static {
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        let reply = self.script[n.min(self.script.len() - 1)];
        let charges = self.charges.clone();
        let answers = self.answers.clone();
        let polled_by = self.polled_by.clone();
        let polled_on = self.polled_on.clone();
        let answered = move |answer| answers.lock().expect("answers lock").push((n, answer));
        let running = self.live.fetch_add(1, Ordering::SeqCst);
        if running > 0 {
            let mut overlap = self.overlap.lock().expect("overlap lock");
            overlap.get_or_insert(format!(
                "request {} was sent while {running} earlier attempt(s) had not stopped yet",
                n + 1
            ));
        }
        let live = Live { attempts: self.live.clone() };
        // The gateway starts processing when the request is sent, not when the attempt's task
        // first runs: its processing clock is started (registered with the timer) right here.
        let mut processing = Box::pin(sleep(match reply {
            Reply::ChargeAfter(delay)
            | Reply::DeclineAfter(delay)
            | Reply::ChargeThenPanic(delay)
            | Reply::ChargeThenPanicWith(delay, _) => delay,
            Reply::Hang => Duration::ZERO,
        }));
        let _ = processing.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        async move {
            let _live = live;
            polled_by.lock().expect("polled_by lock").push((n, tokio::task::try_id()));
            polled_on.lock().expect("polled_on lock").push((n, std::thread::current().id()));
            match reply {
                Reply::ChargeAfter(delay) => {
                    if !delay.is_zero() {
                        processing.await;
                    }
                    charges.fetch_add(1, Ordering::SeqCst);
                    answered(Answer::Charged);
                    Ok(ChargeId(n as u64))
                }
                Reply::DeclineAfter(_) => {
                    processing.await;
                    answered(Answer::Declined);
                    Err(Declined)
                }
                Reply::ChargeThenPanic(delay) => {
                    if !delay.is_zero() {
                        processing.await;
                    }
                    charges.fetch_add(1, Ordering::SeqCst);
                    answered(Answer::ChargedThenPanicked);
                    panic!(
                        "the gateway client panicked parsing the reply to a charge; if this \
                         panic is what failed the test, it escaped `pay` instead of coming back \
                         from the attempt's task as `PayError::GatewayCrashed`"
                    )
                }
                Reply::ChargeThenPanicWith(delay, payload) => {
                    if !delay.is_zero() {
                        processing.await;
                    }
                    charges.fetch_add(1, Ordering::SeqCst);
                    answered(Answer::ChargedThenPanicked);
                    payload.raise(n)
                }
                Reply::Hang => std::future::pending().await,
            }
        }
    }
}

fn card() -> Card {
    Card { token: "tok_visa_4242".into() }
}

fn checkout(gateway: &FakeGateway) -> Checkout<FakeGateway> {
    Checkout::new(gateway.clone(), DEADLINE, 3)
}

const FAST: Reply = Reply::ChargeAfter(Duration::from_millis(200));
const SLOW: Reply = Reply::ChargeAfter(Duration::from_secs(5));

/// The shared checkout and gateway of one explored run.
#[derive(Clone)]
struct Rig {
    checkout: Arc<Checkout<FakeGateway>>,
    gateway: FakeGateway,
}

impl Rig {
    /// A fresh gateway that answers the attempts in `script`'s order, and a checkout on it.
    fn new(script: &[Reply]) -> Self {
        let gateway = FakeGateway::new(script);
        Rig { checkout: Arc::new(checkout(&gateway)), gateway }
    }

    /// The same with a checkout built with `deadline` and `attempts`.
    fn configured(script: &[Reply], deadline: Duration, attempts: u32) -> Self {
        let gateway = FakeGateway::new(script);
        Rig { checkout: Arc::new(Checkout::new(gateway.clone(), deadline, attempts)), gateway }
    }
}

/// Long enough, after a cut, for any attempt of [`checkout_classes`] that was left running to
/// charge the card: the slowest charges 59 min 5 s after its request.
const LONG_AFTERWARDS: Duration = Duration::from_secs(2 * 3600);

/// A checkout of every class the API allows, with a gateway script under which `pay` ends: the
/// deadline (zero, a second, minutes, just under and at an hour, hours, days, a thousand years,
/// `u64::MAX` seconds, `Duration::MAX`), the attempts (one, two, three, `u32::MAX`), and the
/// replies. Attempts that miss a deadline under an hour are followed by one that answers inside
/// it; a deadline of an hour or more is met by the first attempt (5 s), so that no wait in the
/// run is longer than the explorer waits for a wakeup.
fn checkout_classes() -> Vec<(Duration, u32, Vec<Reply>)> {
    let secs = Duration::from_secs;
    const HOUR: u64 = 3600;
    const DAY: u64 = 24 * HOUR;
    const YEAR: u64 = 365 * DAY;
    let mut classes = Vec::new();
    for attempts in [1u32, 2, 3, u32::MAX] {
        if attempts <= 3 {
            // No time at all: every attempt times out at once (4 billion of them would not).
            classes.push((Duration::ZERO, attempts, vec![SLOW]));
        }
        for deadline in [secs(1), secs(90), secs(59 * 60)] {
            let missed = Reply::ChargeAfter(deadline + secs(5));
            let mut script = vec![missed; attempts.min(3) as usize - 1];
            script.push(Reply::ChargeAfter(deadline / 2));
            classes.push((deadline, attempts, script));
        }
        let long = [
            secs(HOUR),
            secs(2 * HOUR),
            secs(400 * DAY),
            secs(1000 * YEAR),
            secs(u64::MAX),
            Duration::MAX,
        ];
        for deadline in long {
            classes.push((deadline, attempts, vec![Reply::ChargeAfter(secs(5)), FAST]));
        }
    }
    classes
}

/// Checked the moment `pay` returned `TimedOut`, before the test yields: every attempt must have
/// stopped already. `TimedOut` promises that nothing was charged, and an attempt that was only
/// asked to stop (aborted, or its handle dropped) could still charge on another worker thread.
fn assert_stopped_when_pay_gave_up(gateway: &FakeGateway, what: &str) {
    let live = gateway.live.load(Ordering::SeqCst);
    assert!(
        live == 0,
        "{what}, and `pay` returned `TimedOut`; at that moment {live} attempt(s) had not stopped \
         yet (the last attempt was asked to stop, or its handle dropped, but `pay` did not wait \
         until it had stopped). On a multi-threaded runtime that attempt can still charge the \
         card after the customer was told nothing was charged: stop the last attempt and await \
         it before giving up, as before a retry"
    );
}

/// A gateway that several customers share, as one checkout shares it in production. Each card
/// has a script of its own (one reply per request for that card, the last reply repeating), every
/// charge gets a fresh `ChargeId` and is recorded with the card it went to, and a request for a
/// card while an earlier attempt for the same card has not stopped is recorded as an overlap.
#[derive(Clone)]
struct SharedGateway {
    scripts: Arc<HashMap<String, Vec<Reply>>>,
    /// Requests so far, per card.
    requests: Arc<Mutex<HashMap<String, usize>>>,
    /// Every charge made, in order: the card and the id the gateway gave it.
    charges: Arc<Mutex<Vec<(String, ChargeId)>>>,
    /// Attempts per card whose charge future has not been dropped yet.
    live: Arc<Mutex<HashMap<String, usize>>>,
    overlap: Arc<Mutex<Option<String>>>,
}

/// Lowers a card's count of live attempts when that attempt's charge future is dropped.
struct LiveFor {
    card: String,
    live: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for LiveFor {
    fn drop(&mut self) {
        if let Some(n) = self.live.lock().expect("live lock").get_mut(&self.card) {
            *n -= 1;
        }
    }
}

impl SharedGateway {
    fn new(scripts: HashMap<String, Vec<Reply>>) -> Self {
        SharedGateway {
            scripts: Arc::new(scripts),
            requests: Arc::default(),
            charges: Arc::default(),
            live: Arc::default(),
            overlap: Arc::default(),
        }
    }

    fn requests_for(&self, card: &str) -> usize {
        self.requests.lock().expect("requests lock").get(card).copied().unwrap_or(0)
    }

    fn charges(&self) -> Vec<(String, ChargeId)> {
        self.charges.lock().expect("charges lock").clone()
    }
}

impl Gateway for SharedGateway {
    fn charge(
        &self,
        card: &Card,
        _amount_cents: u64,
    ) -> impl Future<Output = Result<ChargeId, Declined>> + Send + 'static {
        let token = card.token.clone();
        let n = {
            let mut requests = self.requests.lock().expect("requests lock");
            let n = requests.entry(token.clone()).or_default();
            *n += 1;
            *n - 1
        };
        let script = self.scripts.get(&token).map(Vec::as_slice).unwrap_or(&[Reply::Hang]);
        let reply = script[n.min(script.len() - 1)];
        {
            let mut live = self.live.lock().expect("live lock");
            let running = live.entry(token.clone()).or_default();
            if *running > 0 {
                self.overlap.lock().expect("overlap lock").get_or_insert(format!(
                    "request {} for card {token} was sent while an earlier attempt for that \
                     card had not stopped yet",
                    n + 1
                ));
            }
            *running += 1;
        }
        let live = LiveFor { card: token.clone(), live: self.live.clone() };
        let charges = self.charges.clone();
        // The gateway starts processing when the request is sent.
        let sent = Instant::now();
        async move {
            let _live = live;
            match reply {
                Reply::ChargeAfter(delay) => {
                    tokio::time::sleep_until(sent + delay).await;
                    let mut charges = charges.lock().expect("charges lock");
                    let id = ChargeId(charges.len() as u64 + 100);
                    charges.push((token, id));
                    Ok(id)
                }
                Reply::DeclineAfter(delay) => {
                    tokio::time::sleep_until(sent + delay).await;
                    Err(Declined)
                }
                Reply::Hang => std::future::pending().await,
                Reply::ChargeThenPanic(_) | Reply::ChargeThenPanicWith(..) => {
                    unreachable!("not scripted for a shared gateway")
                }
            }
        }
    }
}

/// What one customer, paying alone, gets from a checkout with `DEADLINE` and 3 attempts, given
/// the gateway's script for that card: the answer and how long after its start `pay` returns.
/// Scripts never answer at the very instant of a deadline.
fn alone(script: &[Reply]) -> (Result<(), PayError>, Duration) {
    let mut elapsed = Duration::ZERO;
    for attempt in 0..3 {
        match script[attempt.min(script.len() - 1)] {
            Reply::ChargeAfter(d) if d < DEADLINE => return (Ok(()), elapsed + d),
            Reply::DeclineAfter(d) if d < DEADLINE => {
                return (Err(PayError::Declined), elapsed + d);
            }
            _ => elapsed += DEADLINE,
        }
    }
    (Err(PayError::TimedOut), elapsed)
}

/// A reply for a shared gateway: a charge or a decline well within the deadline, a charge long
/// after it, or none at all. Never one on the deadline itself.
fn reply() -> impl Strategy<Value = Reply> {
    let ms = Duration::from_millis;
    prop_oneof![
        (1..1000u64).prop_map(move |t| Reply::ChargeAfter(ms(t))),
        (1..1000u64).prop_map(move |t| Reply::DeclineAfter(ms(t))),
        Just(SLOW),
        Just(Reply::Hang),
    ]
}

/// Two or three customers, each starting at an offset (ms) with a script of one to three replies.
fn customers() -> impl Strategy<Value = Vec<(u64, Vec<Reply>)>> {
    proptest::collection::vec((0..1500u64, proptest::collection::vec(reply(), 1..=3)), 2..=3)
}

/// Runs the customers of one scenario at once through one checkout, and checks that each was
/// served as if alone: the same answer, at the same moment, charged once with its own charge (or
/// not at all), and never two attempts in flight for one card.
async fn customers_pay_at_once(customers: Vec<(u64, Vec<Reply>)>) -> Result<(), String> {
    let token = |i: usize| format!("tok_customer_{}", i + 1);
    let scripts = customers.iter().enumerate().map(|(i, (_, script))| (token(i), script.clone()));
    let gateway = SharedGateway::new(scripts.collect());
    let paying = Checkout::new(gateway.clone(), DEADLINE, 3);
    let begin = Instant::now();
    let paid = futures::future::join_all(customers.iter().enumerate().map(|(i, (at, _))| {
        let paying = &paying;
        async move {
            let card = Card { token: token(i) };
            let start = begin + Duration::from_millis(*at);
            tokio::time::sleep_until(start).await;
            let paid = paying.pay(&card, 4200 + i as u64).await;
            (paid, start.elapsed())
        }
    }))
    .await;
    sleep(AFTERWARDS).await;
    let charges = gateway.charges();
    // Each card's charges, and each charge's card, looked up once (a rush has thousands).
    let mut by_card: HashMap<&str, Vec<ChargeId>> = HashMap::new();
    for (c, id) in &charges {
        by_card.entry(c.as_str()).or_default().push(*id);
    }
    let owners: HashMap<u64, &str> = charges.iter().map(|(c, id)| (id.0, c.as_str())).collect();
    for (i, ((at, script), (paid, took))) in customers.iter().zip(paid).enumerate() {
        let card = token(i);
        let who = format!(
            "customer {} (card {card}, paying {at} ms in, gateway replies {script:?} for that \
             card)",
            i + 1
        );
        let (expected, expected_took) = alone(script);
        let theirs: Vec<ChargeId> = by_card.get(card.as_str()).cloned().unwrap_or_default();
        let requests = gateway.requests_for(&card);
        let seen = format!(
            "{who} was answered {paid:?} after {took:?}, with {requests} request(s) sent for \
             that card and its card charged {} time(s) {theirs:?}",
            theirs.len()
        );
        match (paid, expected) {
            (Ok(id), Ok(())) if theirs == [id] => {}
            (Ok(id), _) if !theirs.contains(&id) => {
                let owner = owners.get(&id.0).copied();
                return Err(format!(
                    "{seen}: the charge it was told about went to {}, not to its own card",
                    owner.unwrap_or("no card at all")
                ));
            }
            (Err(e), Err(x)) if e == x && theirs.is_empty() => {}
            _ => {
                return Err(format!(
                    "{seen}. Paying alone, with the same gateway replies, it would have been \
                     answered {expected:?} after {expected_took:?} and charged {} time(s)",
                    usize::from(expected.is_ok())
                ));
            }
        }
        if took != expected_took {
            return Err(format!(
                "{seen}. Paying alone it would have been answered after {expected_took:?}: each \
                 customer's attempts keep their own deadlines, whoever else is paying through \
                 the same checkout"
            ));
        }
    }
    if let Some(overlap) = gateway.overlap.lock().expect("overlap lock").clone() {
        return Err(format!("several customers paid at once, and {overlap}"));
    }
    Ok(())
}

/// How many customers [`a_sale_of_thousands_on_one_checkout_serves_each_as_if_alone`] sends
/// through one checkout at once: far above any limit on payments in flight a checkout might keep
/// (a limit above it is not caught, see the solution README).
const SALE: usize = 5_000;

/// Pays once through a gateway that charges at once, and checks that every charge future was
/// polled on this thread, the tests' runtime's only one: a charge polled on another thread was
/// polled by a task the runtime cannot abort (tokio's blocking pool), whose timing is the
/// machine's, not the paused clock's.
async fn attempts_run_where_abort_can_stop_them() -> Result<(), String> {
    let gateway = FakeGateway::new(&[Reply::ChargeAfter(Duration::ZERO)]);
    let paid = checkout(&gateway).pay(&card(), 4200).await;
    if paid != Ok(ChargeId(0)) {
        return Err(format!("a gateway that charges at once: `pay` returned {paid:?}"));
    }
    let here = std::thread::current().id();
    let polled_on = gateway.polled_on.lock().expect("polled_on lock").clone();
    match polled_on.iter().find(|(_, thread)| *thread != here) {
        None => Ok(()),
        Some((n, _)) => Err(format!(
            "request {}'s charge future was polled on a thread other than the runtime's (by a \
             task on tokio's blocking pool, from `spawn_blocking`?): `abort` cannot stop a \
             blocking task once it runs, so an attempt that misses its deadline would not be \
             stopped: it could still charge the card, and `pay` awaiting it would wait as long \
             as the gateway takes. Run each attempt as an async task (`tokio::spawn`)",
            n + 1
        )),
    }
}

/// Pays through a checkout built with `attempts` attempts of [`DEADLINE`], against a gateway that
/// never answers its first `answered - 1` requests and charges the card 200 ms into request
/// `answered`: `pay` keeps trying, one attempt after another, and reports that charge.
async fn keeps_trying_until_the_gateway_answers(attempts: u32, answered: usize) {
    let mut script = vec![Reply::Hang; answered - 1];
    script.push(FAST);
    let gateway = FakeGateway::new(&script);
    let paying = Checkout::new(gateway.clone(), DEADLINE, attempts);
    let start = Instant::now();
    let paid = paying.pay(&card(), 4200).await;
    let took = start.elapsed();
    let (requests, charges) = (gateway.requests(), gateway.charges());
    let expected = Ok(ChargeId(answered as u64 - 1));
    let after = DEADLINE * (answered as u32 - 1) + Duration::from_millis(200);
    assert!(
        paid == expected && took == after && requests == answered && charges == 1,
        "a checkout built with {attempts} attempts of {DEADLINE:?}, against a gateway that \
         never answers its first {} requests and charges the card 200 ms into request \
         {answered}, answered {paid:?} after {took:?}, with {requests} request(s) and \
         {charges} charge(s); expected {expected:?} after {after:?}, with {answered} \
         requests and 1 charge: a checkout makes the attempts it was given, however many \
         (the number is never capped)",
        answered - 1
    );
}

hidden_test! {
    /// Nothing cancelled, a fast gateway: one request, one charge. (And the public API is kept
    /// with the traits its types had: a `Checkout` over a `Debug` gateway is `Debug`.)
    async fn a_fast_gateway_charges_once() {
        let gateway = FakeGateway::new(&[FAST]);
        let paying = checkout(&gateway);
        assert!(
            kata_support::is_debug!(paying),
            "a `Checkout` over a gateway that is `Debug` is no longer `Debug`: keep the public \
             API as it is, with the traits its types had (a shop logs `{{checkout:?}}`, and \
             derives `Debug` for structs that hold one)"
        );
        let paid = paying.pay(&card(), 4200).await;
        assert_eq!(paid, Ok(ChargeId(0)));
        sleep(AFTERWARDS).await;
        assert_eq!(
            gateway.charges(),
            1,
            "one successful checkout must charge the card once"
        );
    }

    /// A declined card is final: no retry.
    async fn a_declined_card_is_not_retried() {
        let gateway = FakeGateway::new(&[Reply::DeclineAfter(Duration::from_millis(200))]);
        let paid = checkout(&gateway).pay(&card(), 4200).await;
        assert_eq!(paid, Err(PayError::Declined));
        let requests = gateway.requests();
        assert_eq!(
            requests, 1,
            "the gateway declined the card on the first request (after 200 ms), and pay() \
             returned {paid:?}, but the gateway received {requests} requests in all (a request \
             is made when `charge` is called, whether or not its future is ever polled): a \
             declined card is final, so no further request may be made, neither a retry after \
             the decline nor one prepared before the first answer came"
        );
    }

    /// The first attempt is slow and misses its deadline; the retry succeeds. The slow attempt
    /// must not charge the card as well.
    async fn a_retry_after_a_timeout_charges_exactly_once() {
        let gateway = FakeGateway::new(&[SLOW, FAST]);
        let paid = checkout(&gateway).pay(&card(), 4200).await;
        assert_eq!(
            paid,
            Ok(ChargeId(1)),
            "the first attempt (5 s) misses its 1 s deadline, and the retry (200 ms) succeeds"
        );
        sleep(AFTERWARDS).await;
        let charges = gateway.charges();
        assert_eq!(
            charges, 1,
            "the customer was charged {charges} times for one order. The first attempt missed \
             its deadline, `timeout` dropped its `JoinHandle`, and the task went on to charge \
             the card anyway: dropping a `JoinHandle` detaches the task, it does not cancel it"
        );
    }

    /// Every attempt is slow: checkout reports `TimedOut`, which promises that nothing was
    /// charged. No abandoned attempt may charge afterwards.
    async fn timed_out_means_not_charged() {
        let gateway = FakeGateway::new(&[SLOW]);
        let paid = checkout(&gateway).pay(&card(), 4200).await;
        assert_eq!(
            paid,
            Err(PayError::TimedOut),
            "every attempt (5 s) missed its 1 s deadline"
        );
        assert_stopped_when_pay_gave_up(&gateway, "every attempt (5 s) missed its 1 s deadline");
        sleep(AFTERWARDS).await;
        let charges = gateway.charges();
        assert_eq!(
            charges, 0,
            "checkout told the customer the payment timed out, but a minute later the card had \
             been charged {charges} time(s): the attempts that missed their deadlines were \
             detached, not stopped, and finished in the background"
        );
    }

    /// A gateway that never answers must not hang the checkout.
    async fn a_hung_gateway_does_not_hang_checkout() {
        let gateway = FakeGateway::new(&[Reply::Hang]);
        let start = Instant::now();
        let paying = checkout(&gateway);
        let Ok(paid) = timeout(Duration::from_secs(3600), paying.pay(&card(), 4200)).await else {
            panic!(
                "checkout never returned while the gateway hung: after an hour it was still \
                 waiting. Each attempt must keep its {DEADLINE:?} deadline"
            );
        };
        assert_eq!(paid, Err(PayError::TimedOut));
        assert_stopped_when_pay_gave_up(&gateway, "the gateway never answered");
        assert!(
            start.elapsed() <= DEADLINE * 3 + Duration::from_millis(100),
            "three attempts with a {DEADLINE:?} deadline took {:?}",
            start.elapsed()
        );
        assert_eq!(
            gateway.requests(),
            3,
            "a checkout makes 3 attempts before it gives up"
        );
    }

    /// However long the deadline, a gateway that never answers gets `TimedOut` when the
    /// attempts' deadlines have run out, not never: deadlines of decades, centuries and ten
    /// thousand years (on the paused clock, where they cost next to nothing) are deadlines like
    /// any other, so no length past some threshold may mean "no deadline". tokio's `sleep` waits
    /// at most about 30 years, so for a longer deadline each attempt may be stopped then, or when
    /// its deadline has run out, and never between. At the very end of the range
    /// (`Duration::MAX` and values next to it, where `Instant::now() + deadline` overflows), `pay`
    /// must not panic, and is still waiting on its first attempt after a hundred years unless it
    /// stopped its attempts at tokio's 30-year limit and answered `TimedOut`.
    async fn a_hung_gateway_times_out_however_long_the_deadline() {
        const YEAR: u64 = 365 * 24 * 3600;
        let secs = Duration::from_secs;
        // The longest a tokio `sleep` waits (`tokio::time::sleep` saturates there).
        let sleep_limit = secs(30 * YEAR);
        const ATTEMPTS: u32 = 2;
        let finite = [
            secs(20 * YEAR + 1),
            secs(25 * YEAR),
            secs(30 * YEAR - 1),
            sleep_limit,
            secs(30 * YEAR + 1),
            secs(40 * YEAR),
            secs(100 * YEAR),
            secs(1000 * YEAR),
            secs(10_000 * YEAR),
        ];
        for deadline in finite {
            let gateway = FakeGateway::new(&[Reply::Hang]);
            let paying = Checkout::new(gateway.clone(), deadline, ATTEMPTS);
            let scene = format!(
                "a checkout with a deadline of {deadline:?} and {ATTEMPTS} attempts, against a \
                 gateway that never answers"
            );
            let start = Instant::now();
            let patience = deadline * ATTEMPTS + secs(24 * 3600);
            let Ok(paid) = timeout(patience, paying.pay(&card(), 4200)).await else {
                panic!(
                    "{scene}: `pay` had not answered a day after both deadlines ran out, with {} \
                     request(s) sent; expected `TimedOut` after {:?}. A deadline of decades or \
                     more is still a deadline that runs out, not \"no deadline\"",
                    gateway.requests(),
                    deadline * ATTEMPTS
                );
            };
            let took = start.elapsed();
            assert_stopped_when_pay_gave_up(&gateway, &scene);
            let on_time = took == deadline * ATTEMPTS
                || (deadline > sleep_limit && took == sleep_limit * ATTEMPTS);
            let requests = gateway.requests();
            assert!(
                paid == Err(PayError::TimedOut) && on_time && requests == ATTEMPTS as usize,
                "{scene}: `pay` answered {paid:?} after {took:?}, with {requests} request(s); \
                 expected `TimedOut` after {:?} (or after {:?}, where tokio's `sleep` stops, for \
                 a longer deadline), with {ATTEMPTS} requests",
                deadline * ATTEMPTS,
                sleep_limit * ATTEMPTS
            );
        }
        let very_end = [
            Duration::MAX,
            Duration::MAX - Duration::from_nanos(1),
            secs(u64::MAX),
            secs(u64::MAX - 1),
            secs(i64::MAX.unsigned_abs()),
        ];
        for deadline in very_end {
            let gateway = FakeGateway::new(&[Reply::Hang]);
            let paying = Arc::new(Checkout::new(gateway.clone(), deadline, ATTEMPTS));
            let scene = format!(
                "a checkout with a deadline of {deadline:?} (no deadline to speak of) and \
                 {ATTEMPTS} attempts, against a gateway that never answers"
            );
            let start = Instant::now();
            let call = tokio::spawn(async move {
                let paid = paying.pay(&card(), 4200).await;
                (paid, start.elapsed())
            });
            sleep(secs(100 * YEAR)).await;
            if !call.is_finished() {
                let (requests, live) = (gateway.requests(), gateway.live.load(Ordering::SeqCst));
                assert!(
                    requests == 1 && live == 1,
                    "{scene}: after a hundred years `pay` was still waiting, with {requests} \
                     request(s) sent and {live} attempt(s) running; expected its first attempt \
                     still running, alone"
                );
                call.abort();
                continue;
            }
            let (paid, took) = match call.await {
                Ok(answer) => answer,
                Err(error) => {
                    let why = match error.try_into_panic() {
                        Ok(payload) => payload
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| payload.downcast_ref::<String>().cloned())
                            .unwrap_or_default(),
                        Err(error) => error.to_string(),
                    };
                    panic!(
                        "{scene}: `pay` panicked ({why}), taking the request handler down with \
                         it: the deadline may be any `Duration`, up to `Duration::MAX`"
                    );
                }
            };
            let (requests, live) = (gateway.requests(), gateway.live.load(Ordering::SeqCst));
            assert!(
                paid == Err(PayError::TimedOut)
                    && took == sleep_limit * ATTEMPTS
                    && requests == ATTEMPTS as usize
                    && live == 0,
                "{scene}: `pay` answered {paid:?} after {took:?}, with {requests} request(s) and \
                 {live} attempt(s) still running; expected it still waiting after a hundred \
                 years, or `TimedOut` after {:?} (each attempt stopped where tokio's `sleep` \
                 stops), with {ATTEMPTS} requests and every attempt stopped",
                sleep_limit * ATTEMPTS
            );
        }
    }

    /// The customer closes the tab: the web server drops `pay` at any point. Whatever the point,
    /// no attempt may go on to charge the card after that.
    async fn a_dropped_checkout_charges_nothing_afterwards() {
        assert_cancel_safe_with(
            Options::default().forbid_leftover_tasks(),
            || Rig::new(&[SLOW, SLOW, FAST]),
            |rig: Rig| async move { rig.checkout.pay(&card(), 4200).await },
            |rig, outcome| async move {
                // Charges made by attempts that had finished before the cut are fair; any charge
                // after it comes from an attempt that was left running.
                let before = rig.gateway.charges();
                sleep(AFTERWARDS).await;
                let charges = rig.gateway.charges();
                let late = charges - before;
                match outcome {
                    Outcome::Completed(Ok(_)) if charges == 1 => Ok(()),
                    Outcome::Completed(Ok(_)) => Err(format!(
                        "checkout succeeded and the card was charged {charges} times: the \
                         attempts that missed their deadlines finished in the background"
                    )),
                    Outcome::Completed(Err(e)) => Err(format!(
                        "checkout failed with {e:?}; its third attempt succeeds"
                    )),
                    Outcome::Cancelled { .. } if late == 0 => Ok(()),
                    Outcome::Cancelled { polls } => Err(format!(
                        "the customer left and the checkout was dropped after poll {polls}, yet \
                         {late} charge(s) went through after that: the running attempt was only \
                         detached when its `JoinHandle` was dropped. Abort it when the handle is \
                         dropped (`AbortOnDropHandle`)"
                    )),
                }
            },
        )
        .await;
    }

    /// The customer closes the tab at any point, whatever the checkout was built with: a deadline
    /// of zero, seconds, minutes, hours, years or `Duration::MAX`, and one, two, three or
    /// `u32::MAX` attempts. Dropping `pay` stops the running attempt in every configuration (a
    /// long deadline, "no deadline", or a single attempt is no reason to leave it running): no
    /// charge goes through after the drop, and no attempt's task is still running once the drop
    /// has settled. Each configuration runs on a runtime of its own, the `select!` seeds taken in
    /// turn.
    fn a_dropped_checkout_of_any_configuration_charges_nothing_afterwards() {
        for (index, (deadline, attempts, script)) in checkout_classes().into_iter().enumerate() {
            let seed = kata_support::runtime::SEEDS[index % kata_support::runtime::SEEDS.len()];
            let runtime = kata_support::runtime::current_thread(seed);
            let config = format!(
                "a checkout built with a deadline of {deadline:?} and {attempts} attempt(s), the \
                 gateway replying {script:?}"
            );
            let explored = runtime.block_on(kata_support::explore_with(
                Options::default().forbid_leftover_tasks(),
                || Rig::configured(&script, deadline, attempts),
                |rig: Rig| async move { rig.checkout.pay(&card(), 4200).await },
                |rig, outcome| async move {
                    let before = rig.gateway.charges();
                    sleep(LONG_AFTERWARDS).await;
                    let charges = rig.gateway.charges();
                    let late = charges - before;
                    match outcome {
                        Outcome::Completed(Ok(_)) if charges == 1 => Ok(()),
                        Outcome::Completed(Err(PayError::TimedOut))
                            if deadline.is_zero() && charges == 0 =>
                        {
                            Ok(())
                        }
                        Outcome::Completed(paid) => Err(format!(
                            "checkout answered {paid:?} and the card was charged {charges} \
                             time(s); the last attempt answers inside its deadline"
                        )),
                        Outcome::Cancelled { .. } if late == 0 => Ok(()),
                        Outcome::Cancelled { polls } => Err(format!(
                            "the customer left and the checkout was dropped after poll {polls}, \
                             yet {late} charge(s) went through after that: the running attempt \
                             was left running when `pay` was dropped. Whatever the deadline and \
                             the number of attempts, dropping `pay` must stop it"
                        )),
                    }
                },
            ));
            if let Err(failure) = explored {
                panic!("{config}: {failure}");
            }
        }
    }

    /// A checkout with a deadline of hours, days or years that retries: the first attempts never
    /// answer and miss their deadlines, the next answers 5 s after its request. The customer
    /// closes the tab at instants spread over the whole run, in the first attempt, in the second,
    /// in the third: no charge goes through after the drop, and no attempt is still running an
    /// hour later. (The explorer above cuts these checkouts only inside their first attempt: it
    /// waits at most an hour for a wakeup.)
    async fn a_dropped_checkout_with_a_long_deadline_charges_nothing_after_any_retry() {
        let secs = Duration::from_secs;
        const HOUR: u64 = 3600;
        const YEAR: u64 = 365 * 24 * HOUR;
        for deadline in [secs(2 * HOUR), secs(400 * 24 * HOUR), secs(12 * YEAR)] {
            for attempts in [2u32, 3, u32::MAX] {
                let hung = attempts.min(3) as usize - 1;
                let mut script = vec![Reply::Hang; hung];
                script.push(Reply::ChargeAfter(secs(5)));
                let mut cuts = vec![Duration::ZERO, secs(1)];
                for retry in 1..=hung as u32 {
                    cuts.push(deadline * retry + secs(1));
                }
                for cut in cuts {
                    let gateway = FakeGateway::new(&script);
                    let paying = Checkout::new(gateway.clone(), deadline, attempts);
                    let card = card();
                    {
                        let mut pay = std::pin::pin!(paying.pay(&card, 4200));
                        tokio::select! {
                            biased;
                            paid = &mut pay => panic!(
                                "a checkout built with a deadline of {deadline:?} and {attempts} \
                                 attempt(s), the gateway replying {script:?}, answered {paid:?} \
                                 before the drop at {cut:?}"
                            ),
                            () = sleep(cut) => {}
                        }
                    }
                    sleep(LONG_AFTERWARDS).await;
                    let (charges, live) = (gateway.charges(), gateway.live.load(Ordering::SeqCst));
                    assert!(
                        (charges, live) == (0, 0),
                        "a checkout built with a deadline of {deadline:?} and {attempts} \
                         attempt(s), the gateway replying {script:?}: the customer left and \
                         `pay` was dropped {cut:?} in, with no charge made; two hours later the \
                         card had been charged {charges} time(s) and {live} attempt(s) had not \
                         stopped, expected (0, 0): dropping `pay` stops the running attempt, \
                         whether it is the first or a retry, however long the deadline"
                    );
                }
            }
        }
    }

    /// The customer closes the tab at the very instant a gateway's answer is due: the attempt's
    /// processing time is up, but its task has not had its turn yet when the web server drops
    /// `pay` (polled directly, as a request handler polls it). Whether the answer is the first
    /// attempt's, a retry's, or one landing on the deadline, and whatever the `select!` order, no
    /// charge may go through after the drop: the customer has left without an answer.
    async fn a_checkout_dropped_the_instant_an_answer_is_due_charges_nothing_afterwards() {
        let ms = Duration::from_millis;
        // The script, and the instant (from the start of checkout) at which the answer it
        // leads to is due.
        let scenes: [(&[Reply], Duration, &str); 6] = [
            (&[Reply::ChargeAfter(ms(1))], ms(1), "the first attempt's charge"),
            (&[FAST], ms(200), "the first attempt's charge"),
            (
                &[Reply::ChargeAfter(DEADLINE), FAST],
                DEADLINE,
                "the first attempt's charge, landing on its deadline",
            ),
            (
                &[SLOW, FAST],
                DEADLINE + ms(200),
                "the retry's charge, after the first attempt missed its deadline",
            ),
            (&[SLOW, SLOW, FAST], DEADLINE * 2 + ms(200), "the third attempt's charge"),
            (
                &[Reply::ChargeThenPanic(ms(200))],
                ms(200),
                "a charge whose gateway client then panics",
            ),
        ];
        for (script, due, what) in scenes {
            let gateway = FakeGateway::new(script);
            let paying = checkout(&gateway);
            let card = card();
            let start = Instant::now();
            {
                let mut pay = std::pin::pin!(paying.pay(&card, 4200));
                tokio::select! {
                    biased;
                    () = tokio::time::sleep_until(start + due) => {}
                    paid = &mut pay => panic!(
                        "checkout answered {paid:?} after {:?}, before {what} was due at {due:?}",
                        start.elapsed()
                    ),
                }
                // The customer leaves now: `pay` is dropped at the end of this block.
            }
            let before = gateway.charges();
            sleep(AFTERWARDS).await;
            let late = gateway.charges() - before;
            assert!(
                late == 0,
                "the customer left at the very instant {what} was due ({due:?} after checkout \
                 began), and checkout was dropped then, before the attempt had run again; yet \
                 {late} charge(s) went through after the drop. The card of a customer who got no \
                 answer was charged: the attempt carried on once `pay` was gone"
            );
            let live = gateway.live.load(Ordering::SeqCst);
            assert!(
                live == 0,
                "the customer left at the very instant {what} was due, and a minute after \
                 checkout was dropped {live} attempt(s) had still not stopped"
            );
        }
    }

    /// The gateway client panics after the gateway charged the card. `pay` must report
    /// `GatewayCrashed` (the attempt's task isolates the panic), not retry (the card may well be
    /// charged), and not let the panic escape into the request handler.
    /// The same with a client that charges and panics in its very first poll (the gateway
    /// answered at once): however early the panic comes, the card may be charged.
    async fn a_panicking_gateway_client_is_gateway_crashed() {
        for (processing, when) in [
            (Duration::from_millis(200), "after 200 ms of processing"),
            (Duration::ZERO, "in its very first poll, the gateway having answered at once"),
        ] {
            for payload in ClientPanic::ALL {
                let gateway =
                    FakeGateway::new(&[Reply::ChargeThenPanicWith(processing, payload), FAST]);
                let paying = checkout(&gateway);
                let paid = AssertUnwindSafe(paying.pay(&card(), 4200)).catch_unwind().await;
                let what = payload.describe();
                let Ok(paid) = paid else {
                    panic!(
                        "the gateway client charged the card and panicked {when}, with {what}, \
                         and the panic escaped `pay` and took the request handler down with it: \
                         the attempt must run in a task of its own, whose panic comes back as a \
                         `JoinError` and is reported as `GatewayCrashed`"
                    );
                };
                sleep(AFTERWARDS).await;
                let seen = (paid, gateway.requests(), gateway.charges());
                assert_eq!(
                    seen,
                    (Err(PayError::GatewayCrashed), 1, 1),
                    "the gateway client charged the card and then panicked {when}, with {what}: \
                     expected `GatewayCrashed` after that one request, with no retry (a client \
                     that panics may already have charged the card, whenever it panics and \
                     whatever its panic says); seen (answer, requests, charges)"
                );
            }
        }
    }

    /// With retries, the slow attempt must have stopped before the next request goes out: two
    /// requests in flight for one order is how a card gets charged twice.
    async fn an_attempt_stops_before_the_next_one_starts() {
        let gateway = FakeGateway::new(&[SLOW, SLOW, FAST]);
        let paid = checkout(&gateway).pay(&card(), 4200).await;
        assert_eq!(paid, Ok(ChargeId(2)), "the third attempt (200 ms) succeeds");
        if let Some(overlap) = gateway.overlap() {
            panic!(
                "{overlap}: an attempt that missed its deadline must have stopped (its task \
                 aborted and finished) before checkout retries; asking a task to abort is not \
                 the same as it having stopped"
            );
        }
        sleep(AFTERWARDS).await;
        assert_eq!(gateway.charges(), 1, "one successful checkout must charge the card once");
    }

    /// The first attempt answers at the very instant its deadline passes: the gateway's answer
    /// and the deadline are ready together, and which one `pay` sees first depends on poll order
    /// (`pay` polled by the test itself or from a task of its own) and on `select!` order (each
    /// seed tries another). An answer that got through counts as it would have a moment earlier:
    /// a charge is reported and not retried, a client that charged and then panicked is
    /// `GatewayCrashed` and not retried, a decline is `Declined` and not retried. Only an attempt
    /// stopped before it answered may be retried, and never while it has not stopped.
    async fn an_answer_landing_on_the_deadline_counts() {
        let answers = [
            Reply::ChargeAfter(DEADLINE),
            Reply::ChargeThenPanic(DEADLINE),
            Reply::DeclineAfter(DEADLINE),
        ];
        for first in answers {
            for in_a_task in [false, true] {
                let gateway = FakeGateway::new(&[first, FAST]);
                let paying = Arc::new(checkout(&gateway));
                let how = if in_a_task { "from a task of its own" } else { "directly" };
                let paid = if in_a_task {
                    let paying = paying.clone();
                    match tokio::spawn(async move { paying.pay(&card(), 4200).await }).await {
                        Ok(paid) => paid,
                        Err(_) => panic!(
                            "the first attempt's gateway client panicked at the instant its \
                             {DEADLINE:?} deadline passed, and the panic escaped `pay` (polled \
                             {how}) instead of coming back as `GatewayCrashed`"
                        ),
                    }
                } else {
                    paying.pay(&card(), 4200).await
                };
                sleep(AFTERWARDS).await;
                let (requests, charges) = (gateway.requests(), gateway.charges());
                let answered = gateway.answer(0);
                let what = match answered {
                    Some(Answer::Charged) => "charged the card",
                    Some(Answer::ChargedThenPanicked) => {
                        "charged the card and then its gateway client panicked"
                    }
                    Some(Answer::Declined) => "was declined",
                    None => "was stopped before it answered",
                };
                let scene = format!(
                    "at the instant its {DEADLINE:?} deadline passed, the first attempt {what} \
                     (`pay` polled {how})"
                );
                if let Some(overlap) = gateway.overlap() {
                    panic!("{scene}, and {overlap}");
                }
                let expected = match answered {
                    Some(Answer::Charged) => (Ok(ChargeId(0)), 1, 1),
                    Some(Answer::ChargedThenPanicked) => (Err(PayError::GatewayCrashed), 1, 1),
                    Some(Answer::Declined) => (Err(PayError::Declined), 1, 0),
                    // Stopped before it did anything: the retry (200 ms) charges.
                    None => (Ok(ChargeId(1)), 2, 1),
                };
                let why = match answered {
                    Some(_) => {
                        ". The first attempt answered before it stopped: its answer counts as it \
                         would have a moment earlier, and there must be no retry"
                    }
                    None => "",
                };
                assert!(
                    (paid, requests, charges) == expected,
                    "{scene}; checkout answered {paid:?} after {requests} request(s), and the \
                     card was charged {charges} time(s). Expected {:?} after {} request(s) and \
                     {} charge(s){why}",
                    expected.0,
                    expected.1,
                    expected.2
                );
            }
        }
    }

    /// Every attempt runs in a task of its own, as the team decided after a gateway client took a
    /// request handler down: the gateway's charge future is never polled by the task that runs
    /// `pay`, whether `pay` runs in a task or is polled directly.
    async fn every_attempt_runs_in_a_task_of_its_own() {
        for in_a_task in [false, true] {
            let gateway = FakeGateway::new(&[SLOW, FAST]);
            let paying = Arc::new(checkout(&gateway));
            let (paid, pay_task) = if in_a_task {
                let paying = paying.clone();
                let task = tokio::spawn(async move { paying.pay(&card(), 4200).await });
                let id = task.id();
                (task.await.expect("pay does not panic"), Some(id))
            } else {
                (paying.pay(&card(), 4200).await, tokio::task::try_id())
            };
            assert_eq!(paid, Ok(ChargeId(1)), "the first attempt (5 s) misses its 1 s deadline");
            let polled_by = gateway.polled_by.lock().expect("polled_by lock").clone();
            for (n, task) in polled_by {
                let how = if in_a_task { "from a task of its own" } else { "directly by the test" };
                assert!(
                    task.is_some() && task != pay_task,
                    "request {}'s charge future was polled by whatever polls `pay` itself \
                     (`pay` polled {how}), not by a task of its own: keep each attempt in a \
                     spawned task, the isolation the team chose for a third-party client that \
                     once panicked",
                    n + 1
                );
            }
        }
    }

    /// An attempt must be a task that `abort` can stop. A task on tokio's blocking pool
    /// (`spawn_blocking`, with the charge driven by `Handle::block_on`) is one of its own, but
    /// once it runs nothing can stop it: an attempt that missed its deadline would charge on,
    /// and `pay` awaiting it would wait for it. The tests' runtime has one thread, so a charge
    /// future polled on any other thread was not polled by a task the runtime can abort. The
    /// gateway here answers at once, so nothing waits for the clock.
    async fn every_attempt_runs_where_abort_can_stop_it() {
        attempts_run_where_abort_can_stop_them().await.unwrap_or_else(|seen| panic!("{seen}"));
    }

    /// One checkout serves every customer of the shop (`pay` takes `&self`). Two or three
    /// customers pay through it at once, starting at different moments, each card with its own
    /// gateway behaviour (quick, slow, declined, hung): each must be served exactly as if paying
    /// alone, with the same answer at the same moment, its own card charged once for a success
    /// and never otherwise, and never two attempts in flight for one card.
    fn several_customers_on_one_checkout_are_each_served_as_if_alone() {
        check_property(64, customers(), customers_pay_at_once);
    }

    /// A sale opens: 120 customers pay through one checkout at once, with every kind of gateway
    /// behaviour. Nothing in the task limits how many payments one checkout has in flight, so
    /// each must still be served exactly as if paying alone (a checkout-wide limit of any size
    /// below the rush makes the customers past it wait their turn, and answers them late).
    async fn a_rush_of_customers_on_one_checkout_are_each_served_as_if_alone() {
        let ms = Duration::from_millis;
        let scripts = [
            vec![Reply::Hang],
            vec![Reply::ChargeAfter(ms(300))],
            vec![SLOW, Reply::ChargeAfter(ms(10))],
            vec![Reply::DeclineAfter(ms(5))],
            vec![SLOW, SLOW, SLOW],
        ];
        let rush = (0..120u64).map(|i| (i % 7, scripts[i as usize % scripts.len()].clone()));
        if let Err(seen) = customers_pay_at_once(rush.collect()).await {
            panic!("120 customers paid through one checkout at once: {seen}");
        }
    }

    /// A big sale opens: thousands of customers pay through one checkout at once. A checkout
    /// limits nothing about how many payments it has in flight, so no limit of any size below
    /// the rush (256, 1000, 1024 payments "so the gateway is not hammered") may make the
    /// customers past it wait their turn: each is answered exactly as if paying alone. (On one
    /// `select!` seed: the rush of 120 above varies the seeds.)
    fn a_sale_of_thousands_on_one_checkout_serves_each_as_if_alone() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let ms = Duration::from_millis;
            let scripts = [
                vec![Reply::ChargeAfter(ms(300))],
                vec![Reply::DeclineAfter(ms(5))],
                vec![SLOW, Reply::ChargeAfter(ms(10))],
                vec![Reply::Hang],
            ];
            let rush = (0..SALE).map(|i| (i as u64 % 3, scripts[i % scripts.len()].clone()));
            if let Err(seen) = customers_pay_at_once(rush.collect()).await {
                panic!("{SALE} customers paid through one checkout at once: {seen}");
            }
        });
    }

    /// One customer places two or three orders of the same price with the same card at once (two
    /// browser tabs, or a second order placed while the first is still paying), through one
    /// checkout. The API has no order key, so a checkout cannot tell a second order from a double
    /// click: each `pay` is a payment of its own, answered exactly as if alone, at the same moment,
    /// with a charge of its own. None is refused, merged with another or queued behind it.
    async fn the_same_card_paying_several_times_at_once_is_served_as_if_alone() {
        let starts = [Duration::ZERO, Duration::ZERO, Duration::from_millis(50)];
        let gateway = FakeGateway::new(&[FAST]);
        let paying = checkout(&gateway);
        let begin = Instant::now();
        let paid = futures::future::join_all(starts.iter().map(|&at| {
            let paying = &paying;
            async move {
                sleep_until(begin + at).await;
                let paid = paying.pay(&card(), 4200).await;
                (at, paid, begin.elapsed() - at)
            }
        }))
        .await;
        sleep(AFTERWARDS).await;
        let (requests, charges) = (gateway.requests(), gateway.charges());
        let mut ids: Vec<ChargeId> = paid.iter().filter_map(|(_, p, _)| p.ok()).collect();
        ids.sort_by_key(|id| id.0);
        ids.dedup();
        let answered: Vec<String> = paid
            .iter()
            .enumerate()
            .map(|(i, (at, p, took))| {
                format!("payment {} (paying {at:?} in) was answered {p:?} after {took:?}", i + 1)
            })
            .collect();
        let as_if_alone = paid.iter().all(|(_, p, took)| p.is_ok() && *took == Duration::from_millis(200));
        assert!(
            as_if_alone && ids.len() == starts.len() && requests == starts.len() && charges == starts.len(),
            "the same card paid the same amount {} times at once through one checkout, the gateway \
             charging each request after 200 ms: {}; the gateway got {requests} request(s) and made \
             {charges} charge(s). Paying alone, each would have been answered Ok after 200 ms with \
             a charge of its own: with no order key in the API, a checkout cannot tell a second \
             order from a double click, so it must not refuse, merge or queue a payment because \
             another with the same card is in flight (the gateway's idempotency key is the place \
             for that)",
            starts.len(),
            answered.join(", ")
        );
    }

    /// A deadline of zero is a deadline, not "none": each attempt gets no time at all, so a
    /// gateway that needs any processing time misses every one. `pay` answers `TimedOut` at
    /// once, and the card is never charged.
    async fn a_zero_deadline_gives_each_attempt_no_time() {
        // Where an attempt runs on another thread, whether it starts before its abort is the
        // machine's race, not the test's: such a fix fails here, the same way every run.
        attempts_run_where_abort_can_stop_them().await.unwrap_or_else(|seen| panic!("{seen}"));
        let gateway = FakeGateway::new(&[SLOW, SLOW, SLOW]);
        let paying = Checkout::new(gateway.clone(), Duration::ZERO, 3);
        let start = Instant::now();
        let paid = timeout(Duration::from_secs(3600), paying.pay(&card(), 4200)).await;
        let took = start.elapsed();
        assert!(
            matches!(paid, Ok(Err(PayError::TimedOut))) && took.is_zero(),
            "with a deadline of zero, each attempt has no time, and the gateway takes 5 s: `pay` \
             must answer `TimedOut` at once, but it answered {paid:?} after {took:?} (an hour \
             means it had not answered yet)"
        );
        assert_stopped_when_pay_gave_up(&gateway, "every attempt had a deadline of zero");
        sleep(AFTERWARDS).await;
        let charges = gateway.charges();
        assert_eq!(
            charges, 0,
            "checkout told the customer the payment timed out (a deadline of zero), but a minute \
             later the card had been charged {charges} time(s)"
        );
    }

    /// The customer closes the tab at any point (or `pay` finishes), then pays again with the same
    /// card for the same amount on the same checkout: a second order, or a retry of the one that
    /// got no answer. It must go to the gateway and charge the card once more, with a charge of
    /// its own, whatever the first `pay` left behind.
    async fn paying_again_after_a_dropped_or_finished_pay_charges_once_more() {
        assert_cancel_safe_with(
            Options::default(),
            || Rig::new(&[SLOW, SLOW, FAST]),
            |rig: Rig| async move { rig.checkout.pay(&card(), 4200).await },
            |rig, outcome| async move {
                let first = match &outcome {
                    Outcome::Completed(paid) => format!("the first `pay` answered {paid:?}"),
                    Outcome::Cancelled { .. } => "the first `pay` was dropped".to_string(),
                };
                let (requests, charges) = (rig.gateway.requests(), rig.gateway.charges());
                let again = rig.checkout.pay(&card(), 4200).await;
                sleep(AFTERWARDS).await;
                let sent = rig.gateway.requests() - requests;
                let charged = rig.gateway.charges() - charges;
                match again {
                    // The fake gateway's ids are request numbers: a new request, a new id.
                    Ok(ChargeId(id)) if id as usize >= requests && charged == 1 => Ok(()),
                    again => Err(format!(
                        "{first}; then the same card paid the same amount again on the same \
                         checkout, and that `pay` answered {again:?} after {sent} new request(s) \
                         to the gateway, with {charged} new charge(s). A new payment must reach \
                         the gateway and charge the card once, with a charge of its own"
                    )),
                }
            },
        )
        .await;
    }

    /// A deploy shuts the runtime down while a `pay` is parked, or a request's future is dropped
    /// after its runtime is gone (a server's last requests): dropping `pay` there must stop the
    /// running attempt without panicking, and nothing may be charged by an attempt cut short.
    fn a_pay_dropped_at_runtime_shutdown_or_outside_a_runtime_stops_quietly() {
        assert_cancel_safe_at_shutdown(
            || Rig::new(&[SLOW, SLOW, FAST]),
            |rig: Rig| async move { rig.checkout.pay(&card(), 4200).await },
            |rig, outcome| {
                let charges = rig.gateway.charges();
                let live = rig.gateway.live.load(Ordering::SeqCst);
                match outcome {
                    Outcome::Completed(Ok(_)) if charges == 1 => Ok(()),
                    Outcome::Completed(paid) => Err(format!(
                        "checkout answered {paid:?} and the card was charged {charges} time(s); \
                         its third attempt charges once"
                    )),
                    Outcome::Cancelled { .. } if charges <= 1 && live == 0 => Ok(()),
                    Outcome::Cancelled { .. } => Err(format!(
                        "after `pay` was dropped, the card had been charged {charges} time(s) \
                         and {live} attempt(s) had not stopped"
                    )),
                }
            },
        );
    }

    /// `pay` polled inside a runtime and then dropped outside its context while the runtime
    /// lives on and keeps running (a future polled through `Runtime::block_on` and then dropped
    /// by its owner, or handed to a plain thread and dropped there): the customer has left, so
    /// the running attempt must stop, and nothing may be charged afterwards.
    fn a_pay_dropped_outside_the_runtime_while_it_runs_on_charges_nothing() {
        for cut in [0, 500, 1500, 2100].map(Duration::from_millis) {
            for on_a_plain_thread in [false, true] {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .start_paused(true)
                    .build()
                    .expect("a runtime");
                let gateway = FakeGateway::new(&[SLOW, SLOW, FAST]);
                let paying = checkout(&gateway);
                let card = card();
                let mut pay = Box::pin(paying.pay(&card, 4200));
                let early = runtime.block_on(async {
                    let started = Instant::now();
                    let mut early = None;
                    tokio::select! {
                        biased;
                        paid = pay.as_mut() => early = Some(paid),
                        _ = sleep(cut) => {}
                    }
                    (early, started.elapsed())
                });
                if let (Some(paid), took) = early {
                    panic!(
                        "the first two attempts take 5 s (1 s deadline) and the third 200 ms, \
                         but `pay` answered {paid:?} after {took:?}, before the drop at {cut:?}"
                    );
                }
                let where_ = if on_a_plain_thread {
                    std::thread::scope(|scope| {
                        scope.spawn(move || drop(pay)).join().expect("the drop does not panic")
                    });
                    "on a plain thread"
                } else {
                    drop(pay);
                    "outside the runtime's context"
                };
                runtime.block_on(async { sleep(AFTERWARDS).await });
                let (charges, live) = (gateway.charges(), gateway.live.load(Ordering::SeqCst));
                assert_eq!(
                    (charges, live),
                    (0, 0),
                    "`pay` was polled in the runtime for {cut:?} and then dropped {where_}, \
                     while the runtime lived on and ran for another minute: the customer left, \
                     so the running attempt must stop there (`abort` needs no runtime context). \
                     Expected (charges, attempts still running) = (0, 0), seen"
                );
            }
        }
    }

    /// Deadlines that are not whole seconds: a nanosecond, under a millisecond, a few
    /// milliseconds, an odd number of nanoseconds, a fraction of a millisecond over ten, under a
    /// second, a second and a half; and `pay` started on a tick of tokio's timer, or a nanosecond,
    /// an odd fraction of a millisecond, or a nanosecond short of a millisecond past one. tokio's
    /// timer counts whole milliseconds and rounds the instant a deadline runs out up to the next
    /// one, so the deadline is due at that tick (`due`, after the start), and the checkout keeps
    /// it there, rounding nothing itself (not the duration to whole milliseconds either, which
    /// lands a tick later when `pay` starts between two): an answer ready in the charge's first
    /// poll, or on the tick before `due`, is that attempt's answer, at that moment; an attempt
    /// still running at `due` is stopped then and never charges (`TimedOut` at `due` with one
    /// attempt), and the retry (answering at once) is the answer. Each case is one jump of the
    /// paused clock.
    async fn fractional_deadlines_are_kept_to_the_millisecond() {
        let ms = Duration::from_millis;
        let deadlines = [
            Duration::from_nanos(1),
            Duration::from_micros(500),
            ms(2),
            Duration::from_nanos(7_654_321),
            Duration::from_micros(10_500),
            ms(250),
            ms(999),
            ms(1500),
            ms(2750),
        ];
        let offsets = [0, 1, 300_001, 999_999].map(Duration::from_nanos);
        let origin = Instant::now();
        for (offset, deadline) in offsets.into_iter().flat_map(|o| deadlines.map(|d| (o, d))) {
            // Every wait from a moment `offset` past a tick takes `whole_ms_up(offset + wait)`
            // on the paused clock (which moves from tick to tick, keeping that offset).
            let due = whole_ms_up(offset + deadline);
            // Lands on the tick after `due`.
            let late = Reply::ChargeAfter(due + ms(1) - offset);
            let at_once = Reply::ChargeAfter(Duration::ZERO);
            // (script, attempts, the answer expected and when, requests, charges)
            let mut cases = vec![(vec![at_once], 1, Ok(ChargeId(0)), Some(Duration::ZERO), 1, 1)];
            if due > ms(1) + offset {
                // Lands on the tick before `due`.
                let inside = due - ms(1);
                let charged = Reply::ChargeAfter(inside - offset);
                let declined = Reply::DeclineAfter(inside - offset);
                cases.push((vec![charged], 1, Ok(ChargeId(0)), Some(inside), 1, 1));
                cases.push((vec![declined], 1, Err(PayError::Declined), Some(inside), 1, 0));
            }
            cases.push((vec![late], 1, Err(PayError::TimedOut), Some(due), 1, 0));
            cases.push((vec![late, at_once], 2, Ok(ChargeId(1)), Some(due), 2, 1));
            for (script, attempts, expected, when, expected_requests, expected_charges) in cases {
                move_into_tick(origin, offset).await;
                let gateway = FakeGateway::new(&script);
                let paying = Checkout::new(gateway.clone(), deadline, attempts);
                let start = Instant::now();
                let paid = paying.pay(&card(), 4200).await;
                let took = start.elapsed();
                sleep(AFTERWARDS).await;
                let (requests, charges) = (gateway.requests(), gateway.charges());
                let describe = |reply: &Reply| match *reply {
                    Reply::ChargeAfter(d) if d.is_zero() => "charges in its first poll".to_string(),
                    Reply::ChargeAfter(d) => format!("charges after {d:?}"),
                    Reply::DeclineAfter(d) => format!("declines after {d:?}"),
                    _ => unreachable!("not scripted here"),
                };
                let replies: Vec<String> = script
                    .iter()
                    .enumerate()
                    .map(|(i, reply)| format!("attempt {} {}", i + 1, describe(reply)))
                    .collect();
                let scene = format!(
                    "a checkout with a deadline of {deadline:?} and {attempts} attempt(s), `pay` \
                     starting {offset:?} past a tick of tokio's timer (so due {due:?} after the \
                     start, tokio rounding the instant it runs out up to the next tick), against \
                     a gateway where {}",
                    replies.join(", then ")
                );
                if let Some(overlap) = gateway.overlap() {
                    panic!("{scene}: {overlap}");
                }
                let at = when.map(|t| format!(" after {t:?}")).unwrap_or_default();
                assert!(
                    paid == expected
                        && when.is_none_or(|t| t == took)
                        && requests == expected_requests
                        && charges == expected_charges,
                    "{scene}: checkout answered {paid:?} after {took:?}, with {requests} \
                     request(s), and a minute later the card had been charged {charges} time(s). \
                     Expected {expected:?}{at}, with {expected_requests} request(s) and \
                     {expected_charges} charge(s): the deadline is the one the checkout was \
                     given, rounded no further than tokio's timer rounds it, so an answer inside \
                     it counts and an attempt still running when it runs out is stopped then, \
                     before it charges"
                );
            }
        }
    }

    /// A `pay` made now and awaited later (a handler builds it, runs a fraud check, then awaits
    /// it), a fraction of a millisecond, a second, or a week later: nothing happens until it is
    /// first polled, not even the first request, and each attempt gets its whole deadline from
    /// when it is sent. A fast answer is charged, a slow first attempt is stopped a deadline
    /// after the first poll and retried, and a gateway that never answers gets `TimedOut` a
    /// deadline after the first poll.
    async fn a_pay_awaited_later_gives_each_attempt_its_whole_deadline() {
        let ms = Duration::from_millis;
        let week = Duration::from_secs(7 * 24 * 3600);
        let origin = Instant::now();
        let waits = [Duration::from_nanos(300_001), ms(999), ms(2000), week];
        for wait in waits {
            // (script, attempts, the answer expected, requests, charges)
            let cases = [
                (vec![FAST], 1, Ok(ChargeId(0)), 1, 1),
                (vec![SLOW, FAST], 2, Ok(ChargeId(1)), 2, 1),
                (vec![Reply::Hang], 1, Err(PayError::TimedOut), 1, 0),
            ];
            for (script, attempts, expected, expected_requests, expected_charges) in cases {
                let gateway = FakeGateway::new(&script);
                let paying = Checkout::new(gateway.clone(), DEADLINE, attempts);
                let card = card();
                let pay = paying.pay(&card, 4200);
                tokio::time::advance(wait).await;
                let sent_early = gateway.requests();
                let start = Instant::now();
                // Every wait from here takes `whole_ms_up(offset + wait)` on the paused clock.
                let offset = in_tick(origin);
                let due = whole_ms_up(offset + DEADLINE);
                let fast = whole_ms_up(offset + ms(200));
                let when = match script[0] {
                    Reply::Hang => due,
                    Reply::ChargeAfter(_) if attempts == 1 => fast,
                    _ => due + fast,
                };
                let paid = pay.await;
                let took = start.elapsed();
                sleep(AFTERWARDS).await;
                let (requests, charges) = (gateway.requests(), gateway.charges());
                assert!(
                    sent_early == 0
                        && paid == expected
                        && took == when
                        && requests == expected_requests
                        && charges == expected_charges,
                    "a `pay` made, then first awaited {wait:?} later, on a checkout with a \
                     deadline of {DEADLINE:?} and {attempts} attempt(s), against a gateway that \
                     answers {script:?}: {sent_early} request(s) went out before it was awaited, \
                     it answered {paid:?} {took:?} after it was first polled, with {requests} \
                     request(s), and a minute later the card had been charged {charges} time(s). \
                     Expected no request before the first poll, then {expected:?} after \
                     {when:?}, with {expected_requests} request(s) and {expected_charges} \
                     charge(s): each attempt's deadline runs from when it is sent, which is \
                     when `pay` is first polled, not when it was made"
                );
            }
        }
    }

    /// The far end of the deadline's range: a checkout whose attempts may take hours, days, or as
    /// long as they need (`Duration::MAX`, for a gateway that guarantees an answer). An attempt
    /// answering well inside such a deadline is that attempt's answer, at that moment, with one
    /// request and no retry: the deadline is never capped, and `pay` never panics on it.
    async fn the_longest_deadlines_are_waited_in_full() {
        const HOUR: u64 = 3600;
        const DAY: u64 = 24 * HOUR;
        const YEAR: u64 = 365 * DAY;
        let secs = Duration::from_secs;
        let cases = [
            (secs(2 * HOUR), secs(90 * 60)),
            (secs(400 * DAY), secs(399 * DAY)),
            (secs(1000 * YEAR), secs(20 * YEAR)),
            (secs(u64::MAX), secs(20 * YEAR)),
            (Duration::MAX, secs(20 * YEAR)),
        ];
        for (deadline, answer_after) in cases {
            for reply in [Reply::ChargeAfter(answer_after), Reply::DeclineAfter(answer_after)] {
                let gateway = FakeGateway::new(&[reply, FAST]);
                let paying = Arc::new(Checkout::new(gateway.clone(), deadline, 3));
                let start = Instant::now();
                let paid = tokio::spawn(async move { paying.pay(&card(), 4200).await }).await;
                let took = start.elapsed();
                let answer = match reply {
                    Reply::DeclineAfter(_) => "declines",
                    _ => "charges the card",
                };
                let scene = format!(
                    "a checkout with a deadline of {deadline:?} per attempt, against a gateway that \
                     {answer} after {answer_after:?}"
                );
                let paid = match paid {
                    Ok(paid) => paid,
                    Err(error) => {
                        let why = match error.try_into_panic() {
                            Ok(payload) => payload
                                .downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| payload.downcast_ref::<String>().cloned())
                                .unwrap_or_default(),
                            Err(error) => error.to_string(),
                        };
                        panic!(
                            "{scene}: `pay` panicked ({why}) after {took:?}, taking the request \
                             handler down with it. The deadline may be any `Duration`, up to \
                             `Duration::MAX` (no deadline to speak of), and `pay` must then \
                             wait for the answer, not panic (`Instant::now() + deadline` \
                             overflows there; `timeout` and `sleep` saturate it)"
                        );
                    }
                };
                let expected = match reply {
                    Reply::DeclineAfter(_) => Err(PayError::Declined),
                    _ => Ok(ChargeId(0)),
                };
                let (requests, charges) = (gateway.requests(), gateway.charges());
                let charged = usize::from(expected.is_ok());
                assert!(
                    paid == expected && took == answer_after && requests == 1 && charges == charged,
                    "{scene}: checkout answered {paid:?} after {took:?}, with {requests} \
                     request(s) and {charges} charge(s); expected {expected:?} after \
                     {answer_after:?}, with 1 request and {charged} charge(s): an answer inside \
                     the deadline is the attempt's answer, however long the deadline (it is \
                     never capped)"
                );
            }
        }
    }

    /// `Checkout::new(gateway, deadline, attempts)` gives each of its `attempts` attempts the
    /// deadline. Against a gateway that never answers, a checkout built with 0 to 4, 8 or 20
    /// attempts sends exactly that many requests and answers `TimedOut` after that many deadlines;
    /// with none (a checkout switched off) no request goes out at all, since any request may charge
    /// a card.
    async fn a_checkout_makes_exactly_the_attempts_it_was_given() {
        for attempts in (0..=4u32).chain([8, 20]) {
            let gateway = FakeGateway::new(&[Reply::Hang]);
            let paying = Checkout::new(gateway.clone(), DEADLINE, attempts);
            let start = Instant::now();
            let paid = paying.pay(&card(), 4200).await;
            let took = start.elapsed();
            let requests = gateway.requests();
            assert!(
                paid == Err(PayError::TimedOut)
                    && requests == attempts as usize
                    && took == DEADLINE * attempts,
                "a checkout built with {attempts} attempt(s) of {DEADLINE:?}, against a gateway \
                 that never answers, answered {paid:?} after {took:?} and sent {requests} \
                 request(s); expected `TimedOut` after {:?} and {attempts} request(s): each \
                 request may charge a card, so a checkout makes exactly the attempts it was given",
                DEADLINE * attempts
            );
        }
    }
    /// The far end of the attempts' range: a checkout built with many attempts (50, or
    /// `u32::MAX` for "retry until the gateway answers") keeps trying, one attempt after another,
    /// against a gateway that answers only its 50th or 1000th request: `pay` reports that charge,
    /// after that many deadlines, with one charge. The number of attempts is what `new` was
    /// given, never capped below it.
    async fn a_checkout_with_many_attempts_keeps_trying_until_the_gateway_answers() {
        for (attempts, answered) in [(50u32, 50usize), (u32::MAX, 1000)] {
            keeps_trying_until_the_gateway_answers(attempts, answered).await;
        }
    }

    /// Further out, at the floor the README states for any cap on attempts (8,192): a checkout
    /// built with `u32::MAX` attempts against a gateway that answers only its 8,192nd request,
    /// past a cap of 1000, 4096 or 5000 attempts "so that a misconfigured checkout cannot hammer
    /// the gateway": `pay` still reports that charge. (On one `select!` seed: each attempt costs a
    /// spawned task, and the test above varies the seeds.)
    fn a_checkout_retrying_until_answered_is_not_capped_at_thousands_of_attempts() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(keeps_trying_until_the_gateway_answers(u32::MAX, 8_192));
    }

    /// The floor of "no deadline": a deadline shorter than a hundred thousand years is a deadline
    /// that runs out (README: only from a hundred thousand years up may `pay` wait on its first
    /// attempt for good). Deadlines a millisecond under that floor, and at every power of two of
    /// seconds a fix might take for "no deadline" below it (2^30 s to 2^41 s), one attempt,
    /// against a gateway that never answers: `pay` answers `TimedOut` when the deadline has run
    /// out (or at tokio's 30-year `sleep` limit), with the attempt stopped. One `select!` seed,
    /// since nothing here is ready at the same moment as anything else.
    fn deadlines_short_of_a_hundred_thousand_years_run_out() {
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let secs = Duration::from_secs;
            let sleep_limit = kata_support::time::SLEEP_LIMIT;
            for deadline in kata_support::time::waits_short_of_a_hundred_thousand_years() {
                let gateway = FakeGateway::new(&[Reply::Hang]);
                let paying = Checkout::new(gateway.clone(), deadline, 1);
                let scene = format!(
                    "a checkout with a deadline of {deadline:?} and one attempt, against a \
                     gateway that never answers"
                );
                let start = Instant::now();
                let Ok(paid) = timeout(deadline + secs(24 * 3600), paying.pay(&card(), 4200)).await
                else {
                    panic!(
                        "{scene}: `pay` had not answered a day after the deadline ran out, with \
                         {} request(s) sent; expected `TimedOut` after {deadline:?}. Only a \
                         deadline of a hundred thousand years or more may be taken as \
                         \"no deadline\": any shorter one runs out",
                        gateway.requests()
                    );
                };
                let took = start.elapsed();
                assert_stopped_when_pay_gave_up(&gateway, &scene);
                let on_time = took == deadline || (deadline > sleep_limit && took == sleep_limit);
                assert!(
                    paid == Err(PayError::TimedOut) && on_time && gateway.requests() == 1,
                    "{scene}: `pay` answered {paid:?} after {took:?}, with {} request(s); \
                     expected `TimedOut` after {deadline:?} (or after {sleep_limit:?}, where \
                     tokio's `sleep` stops), with 1 request",
                    gateway.requests()
                );
            }
        });
    }

    /// A long run of payments on one checkout: 10,000 `pay` calls in a row, one attempt of a
    /// 2 ms each, against a gateway that never answers them, then one it answers 1 ms into the
    /// attempt. Every call sends its request and answers `TimedOut` when its own
    /// deadline runs out, with its attempt stopped (however many timed out before it: no count
    /// of them makes a later `pay` give up sooner or skip the gateway), and the last reports its
    /// charge. One `select!` seed: nothing here is ready at the same moment as anything else.
    fn ten_thousand_timed_out_payments_in_a_row_each_get_their_attempt() {
        const PAYMENTS: usize = 10_000;
        let runtime = kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]);
        runtime.block_on(async {
            let deadline = Duration::from_millis(2);
            let mut script = vec![Reply::Hang; PAYMENTS];
            script.push(Reply::ChargeAfter(Duration::from_millis(1)));
            let gateway = FakeGateway::new(&script);
            let paying = Checkout::new(gateway.clone(), deadline, 1);
            for i in 0..PAYMENTS {
                let start = Instant::now();
                let paid = paying.pay(&card(), 4200).await;
                let took = start.elapsed();
                let (requests, live) = (gateway.requests(), gateway.live.load(Ordering::SeqCst));
                assert!(
                    paid == Err(PayError::TimedOut) && took == deadline && requests == i + 1
                        && live == 0,
                    "payment {} of {PAYMENTS} in a row on one checkout (one attempt of \
                     {deadline:?}, a gateway that never answers) answered {paid:?} after \
                     {took:?}, with {requests} request(s) sent in all and {live} attempt(s) \
                     still running; expected `TimedOut` after {deadline:?}, its own request sent \
                     ({} in all) and stopped, however many payments timed out before it",
                    i + 1,
                    i + 1
                );
            }
            let start = Instant::now();
            let paid = paying.pay(&card(), 4200).await;
            let took = start.elapsed();
            let expected = Ok(ChargeId(PAYMENTS as u64));
            assert!(
                paid == expected && took == Duration::from_millis(1) && gateway.charges() == 1,
                "after {PAYMENTS} timed-out payments in a row, a payment the gateway charges \
                 1 ms into its attempt answered {paid:?} after {took:?}, with {} charge(s); \
                 expected {expected:?} after 1ms, with 1 charge",
                gateway.charges()
            );
        });
    }

    /// A request handler that bridges into async with `Runtime::block_on` polls `pay`, and then a
    /// bug elsewhere in the handler panics while `pay` is still waiting. The unwind drops the
    /// `block_on` future, and `pay` with it, while the thread is panicking: the customer got no
    /// answer, so the running attempt must stop then too, and nothing may be charged afterwards
    /// while the runtime lives on. (A drop guard that does nothing while
    /// `std::thread::panicking()` leaves the attempt running.)
    fn a_pay_dropped_by_a_panicking_handler_charges_nothing() {
        /// What the handler's own bug panics with.
        struct HandlerBug;
        for cut in [0, 500, 1500, 2100].map(Duration::from_millis) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .expect("a runtime");
            let gateway = FakeGateway::new(&[SLOW, SLOW, FAST]);
            let paying = checkout(&gateway);
            let card = card();
            let crashed = std::panic::catch_unwind(AssertUnwindSafe(|| {
                runtime.block_on(async {
                    let started = Instant::now();
                    let mut pay = std::pin::pin!(paying.pay(&card, 4200));
                    tokio::select! {
                        biased;
                        paid = pay.as_mut() => return (paid, started.elapsed()),
                        _ = sleep(cut) => {}
                    }
                    std::panic::panic_any(HandlerBug)
                })
            }));
            match crashed {
                Ok((paid, took)) => panic!(
                    "the first two attempts take 5 s (1 s deadline) and the third 200 ms, but \
                     `pay` answered {paid:?} after {took:?}, before the handler's panic at {cut:?}"
                ),
                Err(payload) => assert!(
                    payload.is::<HandlerBug>(),
                    "the handler polled `pay` for {cut:?} and then panicked with a bug of its \
                     own, but another panic came out of `Runtime::block_on` (did dropping `pay` \
                     during the unwind panic?)"
                ),
            }
            runtime.block_on(async { sleep(AFTERWARDS).await });
            let (charges, live) = (gateway.charges(), gateway.live.load(Ordering::SeqCst));
            assert_eq!(
                (charges, live),
                (0, 0),
                "a handler polled `pay` through `Runtime::block_on` for {cut:?} and then panicked \
                 with a bug of its own; the unwind dropped `pay` while the thread was panicking, \
                 and the runtime lived on for another minute. The customer got no answer, so \
                 the running attempt must stop on that drop too (do not skip the abort while \
                 `std::thread::panicking()`). Expected (charges, attempts still running) = \
                 (0, 0), seen"
            );
        }
    }
}
