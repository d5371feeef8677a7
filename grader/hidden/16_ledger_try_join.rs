//! Hidden tests for kata 16: however a transfer ends (a failed check on either leg, or the caller
//! dropping it at any await), no hold is left open and the money has either moved or not.

use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use kata_support::{
    Gate, Outcome, assert_cancel_safe, check_property, explore, hidden_test, settle,
};
use ledger_try_join::{Checks, Ledger, TransferError, transfer};
use proptest::prelude::*;
use tokio::time::sleep;

/// Outside services that answer after a fixed delay with a fixed verdict.
#[derive(Debug, Clone, Copy)]
struct FakeChecks {
    risk: (Duration, Result<(), TransferError>),
    compliance: (Duration, Result<(), TransferError>),
}

impl Checks for FakeChecks {
    fn approve_debit(
        &self,
        _from: &str,
        _amount: u64,
    ) -> impl Future<Output = Result<(), TransferError>> {
        let (delay, verdict) = self.risk;
        async move {
            sleep(delay).await;
            verdict
        }
    }

    fn screen_recipient(&self, _to: &str) -> impl Future<Output = Result<(), TransferError>> {
        let (delay, verdict) = self.compliance;
        async move {
            sleep(delay).await;
            verdict
        }
    }
}

const RISK: Duration = Duration::from_millis(10);
const COMPLIANCE: Duration = Duration::from_millis(1);

fn all_clear() -> FakeChecks {
    FakeChecks { risk: (RISK, Ok(())), compliance: (COMPLIANCE, Ok(())) }
}

/// After a transfer from alice ended as it did (`how`), the next one: alice sends bob all she
/// has, and it goes through within a second (its checks answer in 10 ms). Whatever the
/// transfer before it left behind, in the books or beside them, must not stop it.
async fn the_next_transfer_goes_through(ledger: &Ledger, how: &str) -> Result<(), String> {
    let (alice, bob) = (ledger.available("alice"), ledger.balance("bob"));
    let next = tokio::time::timeout(
        Duration::from_secs(1),
        transfer(ledger, &all_clear(), "alice", "bob", alice),
    )
    .await;
    let books = (ledger.balance("alice"), ledger.balance("bob"), ledger.open_holds());
    if next != Ok(Ok(())) || books != (0, bob + alice, 0) {
        let next = match next {
            Ok(outcome) => format!("returned {outcome:?}"),
            Err(_) => "was still pending a second later".to_owned(),
        };
        return Err(format!(
            "{how}; then alice sent bob all she had ({alice}), both checks approving within \
             10 ms, and that transfer {next} (the books: {}). Expected Ok(()) and the money moved: \
             however a transfer ended, it leaves nothing behind that stops the next one",
            describe(ledger)
        ));
    }
    Ok(())
}

/// alice has 100, bob has 0.
fn books() -> Ledger {
    let ledger = Ledger::new();
    ledger.open("alice", 100);
    ledger.open("bob", 0);
    ledger
}

/// Describes the books for a failure message.
fn describe(ledger: &Ledger) -> String {
    format!(
        "alice has {} ({} available), bob has {}, {} hold(s) open",
        ledger.balance("alice"),
        ledger.available("alice"),
        ledger.balance("bob"),
        ledger.open_holds()
    )
}

/// Checks the books are exactly as before the transfer.
fn assert_untouched(ledger: &Ledger, what: &str) {
    assert_eq!(
        ledger.open_holds(),
        0,
        "{what}, and a hold is still open: {}. The hold was neither captured nor released, so \
         alice's money stays reserved for ever",
        describe(ledger)
    );
    assert_eq!(
        (ledger.balance("alice"), ledger.balance("bob")),
        (100, 0),
        "{what}, so no money may move, but {}",
        describe(ledger)
    );
}

/// One timing of the two outside services, and what they answer.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    alice_has: u64,
    risk_ms: u64,
    risk_approves: bool,
    compliance_ms: u64,
    compliance_clears: bool,
}

/// Outside services that, at the moment each answers, look at the books: while either of them
/// has not answered yet, no balance may have changed.
#[derive(Clone)]
struct WatchingChecks {
    scenario: Scenario,
    ledger: Arc<Ledger>,
    seen: Arc<Mutex<Option<String>>>,
}

impl WatchingChecks {
    async fn answer(
        &self,
        who: &str,
        delay_ms: u64,
        verdict: Result<(), TransferError>,
    ) -> Result<(), TransferError> {
        sleep(Duration::from_millis(delay_ms)).await;
        let books = (self.ledger.balance("alice"), self.ledger.balance("bob"));
        let before = (self.scenario.alice_has, 0);
        let mut seen = self.seen.lock().unwrap();
        if books != before && seen.is_none() {
            *seen = Some(format!(
                "when {who} answered ({delay_ms} ms), before its verdict was known, alice already \
                 had {} and bob {} (before the transfer: alice {}, bob 0). Money \
                 may only move once both checks passed: a provisional deposit can be spent before \
                 it is taken back, a provisional debit is missing if the transfer fails",
                books.0, books.1, before.0
            ));
        }
        verdict
    }
}

impl Checks for WatchingChecks {
    fn approve_debit(
        &self,
        _from: &str,
        _amount: u64,
    ) -> impl Future<Output = Result<(), TransferError>> {
        let verdict =
            if self.scenario.risk_approves { Ok(()) } else { Err(TransferError::Declined) };
        let this = self.clone();
        async move { this.answer("the risk engine", this.scenario.risk_ms, verdict).await }
    }

    fn screen_recipient(&self, _to: &str) -> impl Future<Output = Result<(), TransferError>> {
        let verdict = if self.scenario.compliance_clears {
            Ok(())
        } else {
            Err(TransferError::RecipientFrozen)
        };
        let this = self.clone();
        async move { this.answer("compliance", this.scenario.compliance_ms, verdict).await }
    }
}

fn scenarios() -> impl Strategy<Value = Scenario> {
    (prop_oneof![Just(100u64), Just(20u64)], 0u64..=20, any::<bool>(), 0u64..=20, any::<bool>())
        .prop_map(|(alice_has, risk_ms, risk_approves, compliance_ms, compliance_clears)| {
            Scenario { alice_has, risk_ms, risk_approves, compliance_ms, compliance_clears }
        })
}

/// Checks the books after a transfer of 30 in `scenario` ended as `outcome`.
fn check_books(
    scenario: Scenario,
    ledger: &Ledger,
    outcome: Outcome<Result<(), TransferError>>,
) -> Result<(), String> {
    let start = scenario.alice_has;
    let moved = (start.wrapping_sub(30), 30, 0);
    let untouched = (start, 0, 0);
    let books = (ledger.balance("alice"), ledger.balance("bob"), ledger.open_holds());
    if ledger.open_holds() > 0 {
        return Err(format!("a hold is still open: {}", describe(ledger)));
    }
    if books != untouched && books != moved {
        return Err(format!(
            "half a transfer: {} (the ledger holds {}, expected {start})",
            describe(ledger),
            ledger.total()
        ));
    }
    match outcome {
        Outcome::Completed(Ok(())) if books != moved => {
            Err(format!("`transfer` returned Ok(()) but {}", describe(ledger)))
        }
        Outcome::Completed(Err(error)) if books != untouched => Err(format!(
            "`transfer` returned Err({error:?}) but the money moved: {}",
            describe(ledger)
        )),
        Outcome::Completed(Err(error))
            if start >= 30 && scenario.risk_approves && scenario.compliance_clears =>
        {
            Err(format!(
                "alice had {start}, the risk engine approved the debit after {} ms and compliance \
                 cleared bob after {} ms, yet `transfer` returned Err({error:?}) and {}. A \
                 transfer both checks approved must go through, however long each took to answer \
                 (up to 20 ms)",
                scenario.risk_ms,
                scenario.compliance_ms,
                describe(ledger)
            ))
        }
        Outcome::Completed(Ok(()))
            if start < 30 || !scenario.risk_approves || !scenario.compliance_clears =>
        {
            Err(format!("`transfer` returned Ok(()) although it had to fail: {}", describe(ledger)))
        }
        _ => Ok(()),
    }
}

/// A bug in one outside service's client: it panics instead of answering.
#[derive(Debug, Clone, Copy)]
struct PanicScenario {
    /// Which check panics: the risk engine (`true`) or compliance (`false`).
    risk_panics: bool,
    /// Panics when called, before returning its future (a bug in building the request).
    on_call: bool,
    panic_ms: u64,
    other_ms: u64,
    other_approves: bool,
}

/// Outside services, one of which panics.
struct PanickingChecks(PanicScenario);

impl PanickingChecks {
    fn answer(
        &self,
        panics: bool,
        verdict: Result<(), TransferError>,
    ) -> impl Future<Output = Result<(), TransferError>> + use<> {
        let s = self.0;
        if panics && s.on_call {
            panic!("the client library panicked while building its request");
        }
        let delay = if panics { s.panic_ms } else { s.other_ms };
        let verdict = if panics || s.other_approves { Ok(()) } else { verdict };
        async move {
            sleep(Duration::from_millis(delay)).await;
            if panics {
                panic!("the client library panicked while parsing the answer");
            }
            verdict
        }
    }

    fn describe(&self) -> String {
        let s = self.0;
        let (broken, other) = if s.risk_panics {
            ("the risk engine's", "compliance")
        } else {
            ("compliance's", "the risk engine")
        };
        let when = if s.on_call {
            "as soon as it was called".to_owned()
        } else {
            format!("after {} ms", s.panic_ms)
        };
        let verdict = if s.other_approves { "approved" } else { "refused" };
        format!("{broken} client panicked {when}, and {other} {verdict} after {} ms", s.other_ms)
    }
}

impl Checks for PanickingChecks {
    fn approve_debit(
        &self,
        _from: &str,
        _amount: u64,
    ) -> impl Future<Output = Result<(), TransferError>> {
        self.answer(self.0.risk_panics, Err(TransferError::Declined))
    }

    fn screen_recipient(&self, _to: &str) -> impl Future<Output = Result<(), TransferError>> {
        self.answer(!self.0.risk_panics, Err(TransferError::RecipientFrozen))
    }
}

fn panic_scenarios() -> impl Strategy<Value = PanicScenario> {
    (any::<bool>(), prop::bool::weighted(0.2), 0u64..=20, 0u64..=20, any::<bool>()).prop_map(
        |(risk_panics, on_call, panic_ms, other_ms, other_approves)| PanicScenario {
            risk_panics,
            on_call,
            panic_ms,
            other_ms,
            other_approves,
        },
    )
}

/// What one failing transfer in [`ReasonScenario`] may answer: every reason that applies.
#[derive(Debug, Clone, Copy)]
struct ReasonScenario {
    /// The sender is alice (`true`), or "mallory", whom the ledger does not have.
    sender_known: bool,
    /// The sender sends to itself instead of to bob.
    to_self: bool,
    alice_has: u64,
    amount: u64,
    risk_ms: u64,
    risk_approves: bool,
    compliance_ms: u64,
    compliance_clears: bool,
}

impl ReasonScenario {
    fn from(&self) -> &'static str {
        if self.sender_known { "alice" } else { "mallory" }
    }

    fn to(&self) -> &'static str {
        if self.to_self { self.from() } else { "bob" }
    }

    /// The reasons a transfer may give for failing; none: it must go through.
    fn reasons(&self) -> Vec<TransferError> {
        let mut reasons = Vec::new();
        if !self.sender_known {
            reasons.push(TransferError::UnknownAccount);
        } else if self.amount > self.alice_has {
            reasons.push(TransferError::InsufficientFunds);
        }
        if !self.risk_approves {
            reasons.push(TransferError::Declined);
        }
        if !self.compliance_clears {
            reasons.push(TransferError::RecipientFrozen);
        }
        reasons
    }

    fn describe(&self) -> String {
        let sender = if self.sender_known {
            format!("alice (who has {})", self.alice_has)
        } else {
            "mallory (the ledger has no such account)".to_owned()
        };
        let recipient = if self.to_self { "herself" } else { "bob" };
        let risk = if self.risk_approves { "approved" } else { "declined" };
        let compliance = if self.compliance_clears { "cleared" } else { "froze" };
        format!(
            "{sender} sent {} to {recipient}; the risk engine {risk} after {} ms and compliance \
             {compliance} the recipient after {} ms",
            self.amount, self.risk_ms, self.compliance_ms
        )
    }
}

impl Checks for ReasonScenario {
    fn approve_debit(
        &self,
        _from: &str,
        _amount: u64,
    ) -> impl Future<Output = Result<(), TransferError>> {
        let verdict = if self.risk_approves { Ok(()) } else { Err(TransferError::Declined) };
        let delay = Duration::from_millis(self.risk_ms);
        async move {
            sleep(delay).await;
            verdict
        }
    }

    fn screen_recipient(&self, _to: &str) -> impl Future<Output = Result<(), TransferError>> {
        let verdict =
            if self.compliance_clears { Ok(()) } else { Err(TransferError::RecipientFrozen) };
        let delay = Duration::from_millis(self.compliance_ms);
        async move {
            sleep(delay).await;
            verdict
        }
    }
}

fn reason_scenarios() -> impl Strategy<Value = ReasonScenario> {
    (
        (
            prop::bool::weighted(0.75),
            prop::bool::weighted(0.3),
            prop_oneof![Just(100u64), Just(20u64)],
        ),
        prop::sample::select(vec![0u64, 20, 30, 100, 130]),
        (0u64..=20, prop::bool::weighted(0.7), 0u64..=20, prop::bool::weighted(0.7)),
    )
        .prop_map(
            |(
                (sender_known, to_self, alice_has),
                amount,
                (risk_ms, risk_approves, compliance_ms, compliance_clears),
            )| ReasonScenario {
                sender_known,
                to_self,
                alice_has,
                amount,
                risk_ms,
                risk_approves,
                compliance_ms,
                compliance_clears,
            },
        )
}

/// One of several transfers from alice (who has 100) that run at once, with all checks approving.
#[derive(Debug, Clone, Copy)]
struct RacingTransfer {
    /// alice sends to herself instead of to bob.
    to_self: bool,
    amount: u64,
    risk_ms: u64,
    compliance_ms: u64,
}

impl RacingTransfer {
    fn to(&self) -> &'static str {
        if self.to_self { "alice" } else { "bob" }
    }

    fn describe(&self) -> String {
        let recipient = if self.to_self { "herself" } else { "bob" };
        format!(
            "{} to {recipient} (risk {} ms, compliance {} ms)",
            self.amount, self.risk_ms, self.compliance_ms
        )
    }

    fn checks(&self) -> FakeChecks {
        FakeChecks {
            risk: (Duration::from_millis(self.risk_ms), Ok(())),
            compliance: (Duration::from_millis(self.compliance_ms), Ok(())),
        }
    }
}

/// Two or three transfers from alice at once, the first of them to herself.
fn racing_transfers() -> impl Strategy<Value = Vec<RacingTransfer>> {
    let one = |to_self: prop::strategy::BoxedStrategy<bool>| {
        (to_self, prop::sample::select(vec![40u64, 60, 80]), 0u64..=20, 0u64..=20).prop_map(
            |(to_self, amount, risk_ms, compliance_ms)| RacingTransfer {
                to_self,
                amount,
                risk_ms,
                compliance_ms,
            },
        )
    };
    (one(Just(true).boxed()), prop::collection::vec(one(any::<bool>().boxed()), 1..=2)).prop_map(
        |(first, rest)| {
            let mut all = vec![first];
            all.extend(rest);
            all
        },
    )
}

/// Whether the ledger has an account for `name`, asked through the ledger alone: a hold of 0
/// is refused with `UnknownAccount` exactly when it has none (and is released at once).
fn has_account(ledger: &Ledger, name: &str) -> bool {
    match ledger.place_hold(name, 0) {
        Ok(hold) => {
            ledger.release(hold);
            true
        }
        Err(_) => false,
    }
}

/// A transfer from alice (who has 100) to carol, whom the ledger has no account for yet.
#[derive(Debug, Clone, Copy)]
struct NewRecipient {
    amount: u64,
    risk_ms: u64,
    risk_approves: bool,
    compliance_ms: u64,
    compliance_clears: bool,
}

impl NewRecipient {
    fn describe(&self) -> String {
        let risk = if self.risk_approves { "approved" } else { "declined" };
        let compliance = if self.compliance_clears { "cleared" } else { "froze" };
        format!(
            "alice (100) sent {} to carol, who had no account; the risk engine {risk} after {} ms \
             and compliance {compliance} carol after {} ms",
            self.amount, self.risk_ms, self.compliance_ms
        )
    }
}

/// Outside services that, at the moment each answers, look whether carol has an account yet:
/// while a check has not answered, the books are as before the transfer, carol's absence
/// included.
#[derive(Clone)]
struct NewRecipientChecks {
    scenario: NewRecipient,
    ledger: Arc<Ledger>,
    seen: Arc<Mutex<Option<String>>>,
}

impl NewRecipientChecks {
    async fn answer(
        &self,
        who: &str,
        delay_ms: u64,
        verdict: Result<(), TransferError>,
    ) -> Result<(), TransferError> {
        sleep(Duration::from_millis(delay_ms)).await;
        let mut seen = self.seen.lock().unwrap();
        if has_account(&self.ledger, "carol") && seen.is_none() {
            *seen = Some(format!(
                "{}; when {who} answered ({delay_ms} ms), before its verdict was known, carol \
                 already had an account (with {}). Expected the books exactly as before the \
                 transfer, where carol has none, until both checks passed",
                self.scenario.describe(),
                self.ledger.balance("carol")
            ));
        }
        verdict
    }
}

impl Checks for NewRecipientChecks {
    fn approve_debit(
        &self,
        _from: &str,
        _amount: u64,
    ) -> impl Future<Output = Result<(), TransferError>> {
        let verdict =
            if self.scenario.risk_approves { Ok(()) } else { Err(TransferError::Declined) };
        let this = self.clone();
        async move { this.answer("the risk engine", this.scenario.risk_ms, verdict).await }
    }

    fn screen_recipient(&self, _to: &str) -> impl Future<Output = Result<(), TransferError>> {
        let verdict = if self.scenario.compliance_clears {
            Ok(())
        } else {
            Err(TransferError::RecipientFrozen)
        };
        let this = self.clone();
        async move { this.answer("compliance", this.scenario.compliance_ms, verdict).await }
    }
}

fn new_recipients() -> impl Strategy<Value = NewRecipient> {
    (prop_oneof![Just(0u64), Just(30u64)], 0u64..=20, any::<bool>(), 0u64..=20, any::<bool>())
        .prop_map(|(amount, risk_ms, risk_approves, compliance_ms, compliance_clears)| {
            NewRecipient { amount, risk_ms, risk_approves, compliance_ms, compliance_clears }
        })
}

/// How long a slow check takes, as said in a failure message.
const SLOW: [(Duration, &str); 8] = [
    (Duration::from_millis(21), "21 ms"),
    (Duration::from_millis(150), "150 ms"),
    (Duration::from_secs(2), "2 s"),
    (Duration::from_secs(45), "45 s"),
    (Duration::from_secs(10 * 60), "10 minutes"),
    (Duration::from_secs(24 * 3600), "a day"),
    (Duration::from_secs(7 * 24 * 3600), "a week"),
    (Duration::from_secs(400 * 24 * 3600), "400 days"),
];

/// The far end of the paused clock: 2^62 ms, some 146 million years. A check that answers only
/// there is past any deadline a fix could set (a single `sleep` that long would end at 30 years:
/// tokio caps it, so the far end is reached with `advance`, in one jump, at no cost).
const FAR_END: Duration = kata_support::time::FAR_END;

/// After the far end the clock moves on in this many more jumps of [`FAR_STEP`] (some 36,000
/// years each), so that a limit counted in wake-ups of a timer (give up after 200 yearly looks)
/// runs out too.
const FAR_STEPS: usize = 256;
const FAR_STEP: Duration = Duration::from_millis(1 << 50);

/// Outside services whose slow checks answer only when the test opens `gate`, after it has moved
/// the paused clock to the far end; the others answer after a fixed delay.
#[derive(Debug, Clone)]
struct FarChecks {
    /// (answers only at the far end, verdict)
    risk: (bool, Result<(), TransferError>),
    compliance: (bool, Result<(), TransferError>),
    gate: Gate,
}

impl FarChecks {
    fn answer(
        &self,
        (far, verdict): (bool, Result<(), TransferError>),
        delay: Duration,
    ) -> impl Future<Output = Result<(), TransferError>> + use<> {
        let gate = self.gate.clone();
        async move {
            if far {
                gate.pass().await;
            } else {
                sleep(delay).await;
            }
            verdict
        }
    }
}

impl Checks for FarChecks {
    fn approve_debit(
        &self,
        _from: &str,
        _amount: u64,
    ) -> impl Future<Output = Result<(), TransferError>> {
        self.answer(self.risk, RISK)
    }

    fn screen_recipient(&self, _to: &str) -> impl Future<Output = Result<(), TransferError>> {
        self.answer(self.compliance, COMPLIANCE)
    }
}

/// Moves the paused clock to the far end ([`FAR_END`] in one jump, then [`FAR_STEPS`] jumps of
/// [`FAR_STEP`]) while the transfers wait, and only then sets `opened` and opens `gate`.
async fn go_to_the_far_end_then_open(gate: &Gate, opened: &Cell<bool>) {
    settle().await;
    tokio::time::advance(FAR_END).await;
    for _ in 0..FAR_STEPS {
        tokio::time::advance(FAR_STEP).await;
    }
    opened.set(true);
    gate.open();
}

hidden_test! {
    /// The timings vary in production: either check may answer first, and either may refuse.
    /// Over many timings, and cut after every poll: no hold stays open, the money moves entirely
    /// or not at all, and no balance changes while a check has not answered.
    fn any_timing_of_the_checks_keeps_the_books_whole() {
        check_property(48, scenarios(), |scenario| async move {
            let seen = Arc::new(Mutex::new(None::<String>));
            let watcher = seen.clone();
            let report = explore(
                || {
                    let ledger = Ledger::new();
                    ledger.open("alice", scenario.alice_has);
                    ledger.open("bob", 0);
                    Arc::new(ledger)
                },
                |ledger: Arc<Ledger>| {
                    let checks =
                        WatchingChecks { scenario, ledger: ledger.clone(), seen: watcher.clone() };
                    async move { transfer(&ledger, &checks, "alice", "bob", 30).await }
                },
                |ledger, outcome| {
                    let early = seen.lock().unwrap().take();
                    async move {
                        sleep(Duration::from_secs(1)).await;
                        match early {
                            Some(early) => Err(early),
                            None => check_books(scenario, &ledger, outcome),
                        }
                    }
                },
            )
            .await;
            report.map(|_| ()).map_err(|failure| failure.to_string())
        });
    }

    /// "However it ends" includes a panic: a client library with a bug panics instead of
    /// answering. The panic may reach the caller, but it may not leave a hold open or move any
    /// money. Nor is it a refusal: an error names a reason that applies, so the only error that
    /// may come back is the other check's own refusal. Either check panicking, when called or
    /// while awaited, before or after the other answers.
    fn a_panicking_check_leaves_no_hold_open() {
        // The reviewer's case: compliance crashes at 1 ms, the risk engine approves at 10 ms.
        let fixed = [false, true].map(|risk_panics| PanicScenario {
            risk_panics,
            on_call: false,
            panic_ms: 1,
            other_ms: 10,
            other_approves: true,
        });
        let strategy = prop_oneof![
            1 => Just(fixed[0]),
            1 => Just(fixed[1]),
            6 => panic_scenarios(),
        ];
        check_property(48, strategy, |scenario| async move {
            let ledger = books();
            let checks = PanickingChecks(scenario);
            let ran = std::panic::AssertUnwindSafe(transfer(&ledger, &checks, "alice", "bob", 30))
                .catch_unwind()
                .await;
            // Long after every check would have answered: nothing comes back to clean up later.
            sleep(Duration::from_secs(1)).await;
            let ended = match ran {
                Ok(Ok(())) => "`transfer` returned Ok(())".to_owned(),
                Ok(Err(error)) => format!("`transfer` returned Err({error:?})"),
                Err(_) => "the panic unwound out of `transfer`".to_owned(),
            };
            let what = checks.describe();
            if ledger.open_holds() > 0 {
                return Err(format!(
                    "{what}; {ended}, and a hold is still open: {}. A panic is one more way \
                     for a transfer to end, and alice's money stays reserved for ever",
                    describe(&ledger)
                ));
            }
            if (ledger.balance("alice"), ledger.balance("bob")) != (100, 0) || matches!(ran, Ok(Ok(()))) {
                return Err(format!(
                    "{what}; {ended}, and {}. A check that panicked approved nothing, so no \
                     money may move",
                    describe(&ledger)
                ));
            }
            // What the other check may have refused; the crashed one refused nothing.
            let (crashed, other_refusal) = if scenario.risk_panics {
                ("the risk engine", TransferError::RecipientFrozen)
            } else {
                ("compliance", TransferError::Declined)
            };
            if let Ok(Err(error)) = &ran
                && (scenario.other_approves || *error != other_refusal)
            {
                let applies = if scenario.other_approves {
                    "the panic itself (it may reach the caller)".to_owned()
                } else {
                    format!("the panic, or Err({other_refusal:?}), the other check's refusal")
                };
                return Err(format!(
                    "{what}; {ended}, a reason that does not apply: {crashed}'s client crashed, \
                     it refused nothing. Expected {applies}; an error names a reason that applies"
                ));
            }
            the_next_transfer_goes_through(&ledger, &format!("{what}; {ended}")).await
        });
    }

    /// `transfer` has no deadline of its own: a caller that cannot wait drops it, which its cancel
    /// safety makes harmless. However long a check takes to answer (one sleep of the paused clock,
    /// up to 400 days; the far end has a test of its own), its answer decides: a late approval moves the money, a late refusal is
    /// reported as that refusal.
    async fn a_slow_check_decides_however_long_it_takes() {
        let approve = Ok(());
        let declined = Err(TransferError::Declined);
        let frozen = Err(TransferError::RecipientFrozen);
        for (slow, said) in SLOW {
            // (risk, compliance, what the transfer must return)
            let cases = [
                ((slow, approve), (COMPLIANCE, approve), approve),
                ((RISK, approve), (slow, approve), approve),
                ((slow, approve), (slow, approve), approve),
                ((slow, declined), (COMPLIANCE, approve), declined),
                ((RISK, approve), (slow, frozen), frozen),
            ];
            for (risk, compliance, expected) in cases {
                let ledger = books();
                let checks = FakeChecks { risk, compliance };
                let outcome = transfer(&ledger, &checks, "alice", "bob", 30).await;
                let took = |(delay, _): (Duration, _)| match delay == slow {
                    true => said.to_owned(),
                    false => format!("{} ms", delay.as_millis()),
                };
                let setting = format!(
                    "the risk engine {} after {} and compliance {} bob after {}",
                    if risk.1.is_ok() { "approved" } else { "declined" },
                    took(risk),
                    if compliance.1.is_ok() { "cleared" } else { "froze" },
                    took(compliance)
                );
                let books = (ledger.balance("alice"), ledger.balance("bob"), ledger.open_holds());
                let right_books = if expected.is_ok() { (70, 30, 0) } else { (100, 0, 0) };
                assert!(
                    outcome == expected && books == right_books,
                    "alice (100) sent 30 to bob; {setting}. Expected {expected:?} with alice at \
                     {} and bob at {}, but `transfer` returned {outcome:?} and {}. A slow check \
                     is not a refusal: `transfer` has no deadline of its own (a caller that \
                     cannot wait drops it, and nothing is lost), so the answer that finally comes \
                     decides",
                    right_books.0,
                    right_books.1,
                    describe(&ledger)
                );
            }
        }
    }

    /// However long a check takes, `transfer` has no deadline of its own: a check that answers
    /// only at the far end of the paused clock (146 million years, and on in more jumps, past any
    /// limit a fix could set or count) still decides. The test moves the clock there while the
    /// check is pending, and only then lets it answer.
    async fn a_check_that_answers_at_the_far_end_still_decides() {
        let approve = Ok(());
        let declined = Err(TransferError::Declined);
        let frozen = Err(TransferError::RecipientFrozen);
        // (risk, compliance, what the transfer must return); `true`: answers at the far end.
        let cases = [
            ((true, approve), (false, approve), approve),
            ((false, approve), (true, approve), approve),
            ((true, approve), (true, approve), approve),
            ((true, declined), (false, approve), declined),
            ((false, approve), (true, frozen), frozen),
        ];
        let (gate, opened) = (Gate::closed(), Cell::new(false));
        let ledgers: Vec<Ledger> = cases.iter().map(|_| books()).collect();
        let all = futures::future::join_all(cases.iter().zip(&ledgers).map(
            |(&(risk, compliance, _), ledger)| {
                let checks = FarChecks { risk, compliance, gate: gate.clone() };
                let opened = &opened;
                async move {
                    let outcome = transfer(ledger, &checks, "alice", "bob", 30).await;
                    (outcome, !opened.get())
                }
            },
        ));
        let (outcomes, ()) = tokio::join!(all, go_to_the_far_end_then_open(&gate, &opened));
        for (((risk, compliance, expected), (outcome, early)), ledger) in
            cases.into_iter().zip(outcomes).zip(&ledgers)
        {
            let took = |far: bool, fixed: Duration| match far {
                true => "146 million years (and on)".to_owned(),
                false => format!("{} ms", fixed.as_millis()),
            };
            let setting = format!(
                "the risk engine {} after {} and compliance {} bob after {}",
                if risk.1.is_ok() { "approved" } else { "declined" },
                took(risk.0, RISK),
                if compliance.1.is_ok() { "cleared" } else { "froze" },
                took(compliance.0, COMPLIANCE)
            );
            let when = if early {
                " before the slow check had answered"
            } else {
                ""
            };
            let books = (ledger.balance("alice"), ledger.balance("bob"), ledger.open_holds());
            let right_books = if expected.is_ok() { (70, 30, 0) } else { (100, 0, 0) };
            assert!(
                outcome == expected && books == right_books,
                "alice (100) sent 30 to bob; {setting}. Expected {expected:?} with alice at {} \
                 and bob at {}, but `transfer` returned {outcome:?}{when} and {}. A slow check is \
                 not a refusal, however slow: `transfer` has no deadline of its own (a caller \
                 that cannot wait drops it, and nothing is lost), so the answer that finally \
                 comes decides",
                right_books.0,
                right_books.1,
                describe(ledger)
            );
        }
    }

    /// A recipient the ledger has no account for yet is not a reason to refuse: the deposit opens
    /// its account, as the original `transfer` did. The learner fixes cancel safety, not who may
    /// receive money; only the checks decide that.
    async fn a_recipient_without_an_account_yet_receives_the_money() {
        // (amount, risk after, compliance after, compliance clears)
        let cases = [
            (30, RISK, COMPLIANCE, true),
            (30, COMPLIANCE, RISK, true),
            (100, RISK, COMPLIANCE, true),
            (0, RISK, COMPLIANCE, true),
            (30, RISK, COMPLIANCE, false),
        ];
        for (amount, risk_after, compliance_after, clears) in cases {
            let ledger = Ledger::new();
            ledger.open("alice", 100);
            let verdict = if clears { Ok(()) } else { Err(TransferError::RecipientFrozen) };
            let checks =
                FakeChecks { risk: (risk_after, Ok(())), compliance: (compliance_after, verdict) };
            let outcome = transfer(&ledger, &checks, "alice", "carol", amount).await;
            sleep(Duration::from_secs(1)).await;
            let books = (ledger.balance("alice"), ledger.balance("carol"), ledger.open_holds());
            let right_books = if clears { (100 - amount, amount, 0) } else { (100, 0, 0) };
            assert!(
                outcome == verdict && books == right_books && ledger.total() == 100,
                "alice (100) sent {amount} to carol, who has no account yet; the risk engine \
                 approved after {} ms and compliance {} carol after {} ms. Expected {verdict:?} \
                 with alice at {} and carol at {}, but `transfer` returned {outcome:?}, alice has \
                 {}, carol {}, {} hold(s) open. A recipient is opened by the deposit \
                 (`Ledger::deposit`), as before the fix: only the checks decide who may receive",
                risk_after.as_millis(),
                if clears { "cleared" } else { "froze" },
                compliance_after.as_millis(),
                right_books.0,
                right_books.1,
                books.0,
                books.1,
                books.2
            );
        }
    }

    /// A recipient's account is part of the books too: a transfer that went through opens it
    /// (even for an amount of 0, as the original `transfer` did), and one that did not (refused,
    /// or dropped before the money moved) leaves carol without one, as if it had never been
    /// asked; nor does she have one while a check is pending. Over many timings and verdicts,
    /// cut after every poll.
    fn a_new_recipient_has_an_account_only_once_the_money_moved() {
        check_property(32, new_recipients(), |scenario| async move {
            let seen = Arc::new(Mutex::new(None::<String>));
            let watcher = seen.clone();
            let report = explore(
                || {
                    let ledger = Ledger::new();
                    ledger.open("alice", 100);
                    Arc::new(ledger)
                },
                |ledger: Arc<Ledger>| {
                    let checks = NewRecipientChecks {
                        scenario,
                        ledger: ledger.clone(),
                        seen: watcher.clone(),
                    };
                    async move {
                        transfer(&ledger, &checks, "alice", "carol", scenario.amount).await
                    }
                },
                |ledger, outcome| {
                    let early = seen.lock().unwrap().take();
                    async move {
                        sleep(Duration::from_secs(1)).await;
                        if let Some(early) = early {
                            return Err(early);
                        }
                        let opened = has_account(&ledger, "carol");
                        let moved = ledger.balance("alice") == 100 - scenario.amount
                            && ledger.balance("carol") == scenario.amount
                            && ledger.open_holds() == 0;
                        let (expected, how) = match &outcome {
                            Outcome::Completed(Ok(())) => {
                                (Some(true), "returned Ok(())".to_owned())
                            }
                            Outcome::Completed(Err(error)) => {
                                (Some(false), format!("returned Err({error:?})"))
                            }
                            // Dropped: with money on the way, carol's account says whether it
                            // arrived; a transfer of 0 dropped at its last await may or may not
                            // have gone through.
                            Outcome::Cancelled { polls } if scenario.amount > 0 => {
                                (Some(moved), format!("was dropped after poll {polls}"))
                            }
                            Outcome::Cancelled { .. } => (None, String::new()),
                        };
                        match expected {
                            Some(expected) if expected != opened => Err(format!(
                                "{}; `transfer` {how}, alice has {}, carol {}, {} hold(s) open. \
                                 Expected carol {} an account, seen {}: {}",
                                scenario.describe(),
                                ledger.balance("alice"),
                                ledger.balance("carol"),
                                ledger.open_holds(),
                                if expected { "to have" } else { "to have no" },
                                if opened { "one" } else { "none" },
                                if expected {
                                    "a transfer that went through opens the recipient's account, \
                                     even for 0, as the original `transfer` did"
                                } else {
                                    "a transfer that did not go through leaves the books as they \
                                     were, and carol had no account"
                                }
                            )),
                            _ => Ok(()),
                        }
                    }
                },
            )
            .await;
            report.map(|_| ()).map_err(|failure| failure.to_string())
        });
    }

    /// `Ok(())` means both checks approved and the money moved, even for an amount of 0 or a
    /// transfer to oneself; an error names a reason that applies (an unknown sender, missing
    /// funds, the risk engine's refusal, compliance's), any of them when several do.
    fn every_answer_names_what_happened() {
        check_property(96, reason_scenarios(), |scenario| async move {
            let ledger = Ledger::new();
            ledger.open("alice", scenario.alice_has);
            ledger.open("bob", 0);
            let outcome =
                transfer(&ledger, &scenario, scenario.from(), scenario.to(), scenario.amount).await;
            // Long after every check answered: nothing comes back to change the books later.
            sleep(Duration::from_secs(1)).await;
            let reasons = scenario.reasons();
            let what = scenario.describe();
            let moved = scenario.sender_known && !scenario.to_self && reasons.is_empty();
            let books = (ledger.balance("alice"), ledger.balance("bob"), ledger.open_holds());
            let expected_books = if moved {
                (scenario.alice_has - scenario.amount, scenario.amount, 0)
            } else {
                (scenario.alice_has, 0, 0)
            };
            let seen = format!(
                "alice has {} ({} available), bob has {}, {} hold(s) open, the ledger holds {}",
                books.0,
                ledger.available("alice"),
                books.1,
                books.2,
                ledger.total()
            );
            match outcome {
                Ok(()) if !reasons.is_empty() => {
                    return Err(format!(
                        "{what}; `transfer` returned Ok(()) ({seen}), but it had to fail with one \
                         of {reasons:?}. Ok(()) says both checks approved and the money moved, \
                         even for an amount of 0 or a transfer to oneself"
                    ));
                }
                Err(error) if reasons.is_empty() => {
                    return Err(format!(
                        "{what}; nothing stood in the way, yet `transfer` returned Err({error:?}) \
                         ({seen})"
                    ));
                }
                Err(error) if !reasons.contains(&error) => {
                    return Err(format!(
                        "{what}; `transfer` returned Err({error:?}), which is not what happened: \
                         expected one of {reasons:?} ({seen})"
                    ));
                }
                _ => {}
            }
            if books != expected_books
                || ledger.total() != scenario.alice_has
                || ledger.available("alice") != books.0
            {
                return Err(format!(
                    "{what}; `transfer` returned {outcome:?}, and {seen}: expected alice at {} \
                     and bob at {}, with no hold open",
                    expected_books.0, expected_books.1
                ));
            }
            Ok(())
        });
    }

    /// Two transfers from alice at once that together exceed her balance: one goes through, the
    /// other is refused with `InsufficientFunds` (not a panic), and no money is created.
    async fn two_transfers_from_one_sender_cannot_overdraw() {
        let ledger = Ledger::new();
        ledger.open("alice", 100);
        ledger.open("bob", 0);
        ledger.open("carol", 0);
        let checks = all_clear();
        let both = async {
            tokio::join!(
                transfer(&ledger, &checks, "alice", "bob", 80),
                transfer(&ledger, &checks, "alice", "carol", 80)
            )
        };
        // The learner's own panic message would hide what the test saw; say it here instead.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let ran = std::panic::AssertUnwindSafe(both).catch_unwind().await;
        std::panic::set_hook(hook);
        let (to_bob, to_carol) = match ran {
            Ok(results) => results,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                // A panic of Rust's own, not an overdraw: name it, so the learner looks there.
                let resumed = if message.contains("resumed after completion") {
                    " That is Rust's panic for a future polled again after it had finished: a \
                     check (or the transfer's own future) was awaited or polled once more after \
                     it had already returned its answer, for example by a `select!` loop whose \
                     branch for a finished check was not disabled."
                } else {
                    ""
                };
                panic!(
                    "two transfers of 80 from alice (who has 100) ran at once and one of them \
                     panicked with {message:?}. Expected one to go through and the other to be \
                     refused with Err(InsufficientFunds); a transfer never panics.{resumed}"
                )
            }
        };
        let seen = format!(
            "to bob {to_bob:?}, to carol {to_carol:?}; alice has {}, bob {}, carol {}, {} hold(s) open",
            ledger.balance("alice"),
            ledger.balance("bob"),
            ledger.balance("carol"),
            ledger.open_holds()
        );
        let refused = [to_bob, to_carol].iter().filter(|r| **r == Err(TransferError::InsufficientFunds)).count();
        let done = [to_bob, to_carol].iter().filter(|r| r.is_ok()).count();
        assert!(
            refused == 1 && done == 1 && ledger.total() == 100 && ledger.open_holds() == 0
                && ledger.balance("alice") == 20,
            "two transfers of 80 from alice (who has 100) at once: expected one to go through and \
             the other to be refused with InsufficientFunds, but {seen}"
        );
    }

    /// Transfers from alice at once that fit in her balance together, 2, 3 or 65 of them, some
    /// to herself, with their checks answering in every order: none lacks the funds, so each
    /// goes through (an error names a reason that applies), and the books end as they should.
    async fn transfers_from_one_sender_that_fit_together_all_go_through() {
        let t = |to_self, amount, risk_ms, compliance_ms| RacingTransfer {
            to_self,
            amount,
            risk_ms,
            compliance_ms,
        };
        let mut many: Vec<RacingTransfer> =
            (0..64).map(|i| t(i % 5 == 0, 1, i % 20, (i * 7) % 20)).collect();
        many.push(t(false, 36, 3, 3));
        let scenarios = [
            vec![t(false, 50, 10, 1), t(false, 50, 1, 10)],
            vec![t(true, 40, 10, 10), t(false, 40, 1, 1)],
            vec![t(false, 40, 1, 1), t(true, 60, 10, 10)],
            vec![t(true, 30, 0, 20), t(false, 30, 20, 0), t(false, 40, 5, 5)],
            many,
        ];
        for transfers in scenarios {
            let ledger = books();
            let outcomes = futures::future::join_all(
                transfers.iter().map(|t| async { transfer(&ledger, &t.checks(), "alice", t.to(), t.amount).await }),
            )
            .await;
            let moved: u64 = transfers.iter().filter(|t| !t.to_self).map(|t| t.amount).sum();
            let what = if transfers.len() > 3 {
                format!(
                    "alice (who has 100) sent at once {} transfers, 100 in all, among them {}",
                    transfers.len(),
                    transfers.iter().take(3).map(RacingTransfer::describe).collect::<Vec<_>>().join(", ")
                )
            } else {
                format!(
                    "alice (who has 100) sent at once {}",
                    transfers.iter().map(RacingTransfer::describe).collect::<Vec<_>>().join(", ")
                )
            };
            let refused: Vec<String> = transfers
                .iter()
                .zip(&outcomes)
                .filter(|(_, outcome)| outcome.is_err())
                .map(|(t, outcome)| format!("{} answered {outcome:?}", t.describe()))
                .collect();
            assert!(
                refused.is_empty(),
                "{what}: together they fit in her balance, so each must go through, but {} of \
                 them did not: {}. An error names a reason that applies, and alice had the money",
                refused.len(),
                refused.join("; ")
            );
            let books = (ledger.balance("alice"), ledger.balance("bob"), ledger.open_holds());
            assert!(
                books == (100 - moved, moved, 0) && ledger.available("alice") == 100 - moved,
                "{what}: each went through, so alice must end with {} and bob with {moved}, with \
                 no hold open, but {}",
                100 - moved,
                describe(&ledger)
            );
        }
    }

    /// More transfers from one sender at once than any cap a ledger might put on the transfers
    /// in flight (1024, 4096): 5 000 payments of 1 cent from alice, who has 5 000, every fifth to
    /// herself, with their checks answering after 1 to 3 ms, in every order. Together they fit in
    /// her balance, so each goes through, and no hold is left open. (One runtime, not one per
    /// seed: the transfers are many, and their order is the timers'.)
    fn five_thousand_transfers_at_once_that_fit_all_go_through() {
        const MANY: u64 = 5_000;
        kata_support::runtime::current_thread(kata_support::runtime::SEEDS[0]).block_on(async {
            let ledger = Ledger::new();
            ledger.open("alice", MANY);
            ledger.open("bob", 0);
            let transfers: Vec<RacingTransfer> = (0..MANY)
                .map(|i| RacingTransfer {
                    to_self: i % 5 == 0,
                    amount: 1,
                    risk_ms: 1 + i % 3,
                    compliance_ms: 1 + (i * 7) % 3,
                })
                .collect();
            let outcomes = futures::future::join_all(transfers.iter().map(|t| async {
                transfer(&ledger, &t.checks(), "alice", t.to(), t.amount).await
            }))
            .await;
            let refused: Vec<String> = transfers
                .iter()
                .enumerate()
                .zip(&outcomes)
                .filter(|(_, outcome)| outcome.is_err())
                .map(|((n, t), outcome)| format!("transfer {} ({}) answered {outcome:?}", n + 1, t.describe()))
                .collect();
            assert!(
                refused.is_empty(),
                "alice (who has {MANY}) sent {MANY} transfers of 1 at once: together they fit in \
                 her balance, so each must go through (another transfer in progress is no reason \
                 to refuse one), but {} of them did not, the first: {}",
                refused.len(),
                refused.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            );
            let moved = transfers.iter().filter(|t| !t.to_self).count() as u64;
            let books = (ledger.balance("alice"), ledger.balance("bob"), ledger.open_holds());
            assert!(
                books == (MANY - moved, moved, 0),
                "alice sent {MANY} transfers of 1 at once, {moved} of them to bob, and each went \
                 through, so alice must end with {} and bob with {moved}, with no hold open, but {}",
                MANY - moved,
                describe(&ledger)
            );
        });
    }

    /// A transfer to oneself moves the money out and back in: like any other, it goes through
    /// only if alice has the amount available when it does. Several transfers from alice at once,
    /// one to herself: replaying the ones that went through in the order they finished never
    /// overdraws her, and the books end as that replay says.
    fn a_transfer_to_oneself_needs_the_money_when_it_goes_through() {
        // The case a funds check made only at the start misses: alice->alice is still waiting
        // when alice->bob has taken the money.
        let fixed = vec![
            RacingTransfer { to_self: true, amount: 60, risk_ms: 10, compliance_ms: 10 },
            RacingTransfer { to_self: false, amount: 60, risk_ms: 1, compliance_ms: 1 },
        ];
        let strategy = prop_oneof![1 => Just(fixed), 7 => racing_transfers()];
        check_property(64, strategy, |transfers| async move {
            let ledger = books();
            let start = tokio::time::Instant::now();
            let finished = std::cell::RefCell::new(Vec::new());
            let all = futures::future::join_all(transfers.iter().enumerate().map(|(i, t)| {
                let (ledger, finished) = (&ledger, &finished);
                async move {
                    let outcome = transfer(ledger, &t.checks(), "alice", t.to(), t.amount).await;
                    finished.borrow_mut().push((i, start.elapsed().as_millis()));
                    outcome
                }
            }));
            let ran = std::panic::AssertUnwindSafe(all).catch_unwind().await;
            let what = format!(
                "alice (who has 100) sent at once {}",
                transfers.iter().map(RacingTransfer::describe).collect::<Vec<_>>().join(", ")
            );
            let Ok(outcomes) = ran else {
                return Err(format!(
                    "{what}; a transfer panicked. Expected each one to go through or be refused \
                     with Err(InsufficientFunds); a transfer never panics"
                ));
            };
            sleep(Duration::from_secs(1)).await;
            let answers = outcomes.iter().map(|o| format!("{o:?}")).collect::<Vec<_>>().join(", ");
            if outcomes.iter().any(|o| o.is_err() && *o != Err(TransferError::InsufficientFunds))
                || outcomes.iter().all(Result::is_err)
            {
                return Err(format!(
                    "{what}; they answered {answers}. Expected each to go through or be refused \
                     with Err(InsufficientFunds), and the first to take the money to go through"
                ));
            }
            let total: u64 = transfers.iter().map(|t| t.amount).sum();
            if total <= 100 && outcomes.iter().any(Result::is_err) {
                return Err(format!(
                    "{what}; they answered {answers}. Together they move {total}, which alice \
                     has: none of them can lack the funds, so each must go through (an error \
                     names a reason that applies)"
                ));
            }
            let (mut alice, mut bob) = (100u64, 0u64);
            for &(i, at_ms) in finished.borrow().iter() {
                let t = transfers[i];
                if outcomes[i].is_err() {
                    continue;
                }
                if t.amount > alice {
                    return Err(format!(
                        "{what}; they answered {answers}. The transfer of {} went through when it \
                         finished at {at_ms} ms, but the transfers that had gone through before it \
                         left alice only {alice}: the money it moved was not there when it moved \
                         (a transfer to herself moves her money out and back in, and needs it \
                         available like any other)",
                        t.describe()
                    ));
                }
                if !t.to_self {
                    alice -= t.amount;
                    bob += t.amount;
                }
            }
            let books = (ledger.balance("alice"), ledger.balance("bob"), ledger.open_holds());
            if books != (alice, bob, 0) || ledger.available("alice") != alice {
                return Err(format!(
                    "{what}; they answered {answers}, so alice must end with {alice} and bob with \
                     {bob}, with no hold open, but {}",
                    describe(&ledger)
                ));
            }
            Ok(())
        });
    }

    /// The payments service handles each transfer request in a task of its own (`tokio::spawn`)
    /// on a multi-thread runtime, so with checks whose futures are `Send`, `transfer`'s future
    /// must stay `Send`, as the original is.
    async fn transfer_can_run_in_a_spawned_request_handler() {
        let ledger = books();
        let checks = all_clear();
        let moving = transfer(&ledger, &checks, "alice", "bob", 30);
        assert!(
            kata_support::is_send!(moving),
            "the future returned by `transfer` (with checks whose futures are `Send`) is not \
             `Send`, so the payments service can no longer `tokio::spawn` a transfer request's \
             handler on its multi-thread runtime: it holds something that is not `Send` across \
             an `.await` (a drop guard holding a `Box<dyn FnOnce()>` without `+ Send` or an \
             `Rc`, a `Cell` or `RefCell` borrowed by a guard, a `std` lock guard)"
        );
        let outcome = moving.await;
        assert!(
            outcome == Ok(()) && ledger.open_holds() == 0,
            "alice (100) sent 30 to bob with both checks clearing it, so the transfer must return \
             Ok(()) and leave no hold, but it returned {outcome:?} and {}",
            describe(&ledger)
        );
    }

    /// Nothing fails: the money moves and no hold is left.
    async fn a_transfer_moves_the_money() {
        let ledger = books();
        let outcome = transfer(&ledger, &all_clear(), "alice", "bob", 30).await;
        assert!(
            outcome == Ok(())
                && (ledger.balance("alice"), ledger.balance("bob"), ledger.available("alice"))
                    == (70, 30, 70)
                && ledger.open_holds() == 0,
            "alice (100) sent 30 to bob; compliance cleared bob after 1 ms and the risk engine \
             approved the debit after 10 ms, so the transfer must return Ok(()) with alice at 70 \
             and bob at 30, but it returned {outcome:?} and {}",
            describe(&ledger)
        );
    }

    /// A sender without the money is refused and nothing changes.
    async fn insufficient_funds_changes_nothing() {
        let ledger = books();
        let outcome = transfer(&ledger, &all_clear(), "alice", "bob", 130).await;
        assert_eq!(outcome, Err(TransferError::InsufficientFunds));
        assert_untouched(&ledger, "alice cannot send 130");
    }

    /// The kata's bug: compliance refuses bob after 1 ms while the debit leg waits 10 ms for the
    /// risk engine with alice's money on hold.
    async fn a_frozen_recipient_leaves_no_hold_behind() {
        let ledger = books();
        let checks = FakeChecks {
            risk: (RISK, Ok(())),
            compliance: (COMPLIANCE, Err(TransferError::RecipientFrozen)),
        };
        let outcome = transfer(&ledger, &checks, "alice", "bob", 30).await;
        // Long after the risk engine would have answered: a dropped leg never comes back.
        sleep(Duration::from_secs(1)).await;
        assert_eq!(outcome, Err(TransferError::RecipientFrozen));
        assert_untouched(
            &ledger,
            "bob's account is frozen (compliance said so at 1 ms) so the transfer failed",
        );
    }

    /// The other half: compliance clears bob at 1 ms, the risk engine declines at 10 ms. Bob must
    /// not keep money that never left alice.
    async fn a_declined_debit_credits_nobody() {
        let ledger = books();
        let checks = FakeChecks {
            risk: (RISK, Err(TransferError::Declined)),
            compliance: (COMPLIANCE, Ok(())),
        };
        let outcome = transfer(&ledger, &checks, "alice", "bob", 30).await;
        assert_eq!(outcome, Err(TransferError::Declined));
        assert_eq!(
            ledger.total(),
            100,
            "the risk engine declined the debit at 10 ms, but the credit leg had already \
             deposited at 1 ms: {} (the ledger holds {} instead of 100). Money may only arrive \
             once it is certain to leave",
            describe(&ledger),
            ledger.total()
        );
        assert_untouched(&ledger, "the risk engine declined the transfer");
    }

    /// The caller may drop a transfer at any await (its request timed out). Cut it after every
    /// poll: no hold may stay open, and the money has either moved entirely or not at all.
    async fn a_cancelled_transfer_leaves_no_trace() {
        assert_cancel_safe(
            || Arc::new(books()),
            |ledger: Arc<Ledger>| async move {
                transfer(&ledger, &all_clear(), "alice", "bob", 30).await
            },
            |ledger, outcome| async move {
                sleep(Duration::from_secs(1)).await;
                let books = (ledger.balance("alice"), ledger.balance("bob"), ledger.open_holds());
                let completed = matches!(outcome, Outcome::Completed(Ok(())));
                let whole = books == (70, 30, 0) || (books == (100, 0, 0) && !completed);
                match books {
                    _ if whole => {
                        let how = if books.0 == 70 {
                            "a transfer of 30 from alice went through"
                        } else {
                            "a transfer of 30 from alice was dropped before it went through"
                        };
                        the_next_transfer_goes_through(&ledger, how).await
                    }
                    _ if ledger.open_holds() > 0 => Err(format!(
                        "the transfer was dropped and a hold is still open: {}; alice's money \
                         stays reserved for ever",
                        describe(&ledger)
                    )),
                    _ => Err(format!(
                        "half a transfer: {}, the ledger holds {} (expected alice 70 and bob 30, \
                         or alice 100 and bob 0, with 100 in all)",
                        describe(&ledger),
                        ledger.total()
                    )),
                }
            },
        )
        .await;
    }
}
