//! Hidden tests for kata 11: however a transfer ends (done, refused, or dropped at any `.await`),
//! the money in the bank is conserved and the audit log matches the balances.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bank_transfer_mutex::{AuditEntry, Bank, TransferError};
use kata_support::{Outcome, assert_cancel_safe, check_property, hidden_test};
use proptest::prelude::*;
use tokio::sync::mpsc;

const ALICE: u64 = 10_000;
const BOB: u64 = 2_500;
const AMOUNT: u64 = 3_000;

/// An entry already waiting in the audit channel before the test starts (it keeps a channel of
/// capacity 1 full until the drainer runs).
fn earlier_entry() -> AuditEntry {
    AuditEntry { from: "carol".into(), to: "dave".into(), amount: 1 }
}

fn alice_to_bob() -> AuditEntry {
    AuditEntry { from: "alice".into(), to: "bob".into(), amount: AMOUNT }
}

/// A bank whose audit channel (capacity 1) is full; a drainer empties it after 10 ms and then
/// writes every entry to the returned log, as the compliance writer does.
fn bank_with_busy_audit_log() -> (Arc<Bank>, Arc<Mutex<Vec<AuditEntry>>>) {
    bank_with_audit_log_busy_for(Duration::from_millis(10))
}

/// A bank whose audit channel (capacity 1) is full; a drainer empties it after `busy` and then
/// writes every entry to the returned log.
fn bank_with_audit_log_busy_for(busy: Duration) -> (Arc<Bank>, Arc<Mutex<Vec<AuditEntry>>>) {
    let (tx, mut rx) = mpsc::channel(1);
    tx.try_send(earlier_entry()).expect("the audit channel has room for the earlier entry");
    let bank = Arc::new(Bank::new(&[("alice", ALICE), ("bob", BOB)], tx));
    let log = Arc::new(Mutex::new(Vec::new()));
    let written = log.clone();
    tokio::spawn(async move {
        tokio::time::sleep(busy).await;
        while let Some(entry) = rx.recv().await {
            written.lock().unwrap().push(entry);
        }
    });
    (bank, log)
}

/// A hundred thousand years: how long the tests ask the audit log to stay busy (on the paused clock,
/// where it costs next to nothing). tokio ends a `sleep` that long at about thirty years
/// (`kata_support::time::FAR_END`), so the log makes room then; the far end itself is
/// `a_busy_log_is_waited_for_however_far_the_clock_goes`.
const AGES: Duration = Duration::from_secs(100_000 * 365 * 24 * 3600);

/// The accounts of the contention property and their opening balances, in cents.
const BRANCH: [(&str, u64); 3] = [("alice", 100), ("bob", 50), ("carol", 0)];

/// Several transfers started together while the audit log is busy for some seconds or minutes
/// (up to 55, far longer than any handler's timeout: a log that is only busy must be waited
/// for, however long): they all wait for it at once, and finish in whatever order its slots
/// free up. Each is `(from, to, amount)` over [`BRANCH`]; amounts of exactly 50 and 100 often
/// spend a whole balance, some transfers are of zero cents (which go through and are logged
/// like any other), and about one transfer in four goes from an account to itself.
fn overlapping_transfers() -> impl Strategy<Value = (u64, Vec<(usize, usize, u64)>)> {
    let amount = prop_oneof![4 => 1..=90u64, 1 => Just(0u64), 1 => Just(50u64), 1 => Just(100u64)];
    let step = prop_oneof![3 => 1..3usize, 1 => Just(0usize)];
    let transfer = (0..3usize, step, amount)
        .prop_map(|(from, step, amount)| (from, (from + step) % 3, amount));
    // The longest stays below the hour after which `check_property` calls a scenario stalled.
    let busy_secs = prop_oneof![2 => Just(0u64), 3 => 1..=600u64, 1 => 600..=3_300u64];
    (busy_secs, proptest::collection::vec(transfer, 2..=5))
}

/// Runs the overlapping transfers and returns what was seen when the bank and its audit log
/// disagree: money created or lost, an overdraft, a refused transfer that was logged, a completed
/// one that was not. The transfers run as local tasks, so a `transfer` future need not be `Send`.
async fn run_overlapping(
    (busy_secs, transfers): (u64, Vec<(usize, usize, u64)>),
) -> Result<(), String> {
    tokio::task::LocalSet::new().run_until(overlap(busy_secs, transfers)).await
}

async fn overlap(busy_secs: u64, transfers: Vec<(usize, usize, u64)>) -> Result<(), String> {
    let (tx, mut rx) = mpsc::channel(1);
    tx.try_send(earlier_entry()).expect("the audit channel has room for the earlier entry");
    let bank = Arc::new(Bank::new(&BRANCH, tx));
    let mut handles = Vec::new();
    for &(from, to, amount) in &transfers {
        let bank = bank.clone();
        let (from, to) = (BRANCH[from].0, BRANCH[to].0);
        handles
            .push(tokio::task::spawn_local(async move { bank.transfer(from, to, amount).await }));
    }
    // Every transfer gets to run up to its wait for the audit log before any room frees up.
    kata_support::settle().await;
    midway(&bank, &transfers).await?;
    let busy = Duration::from_secs(busy_secs);
    let compliance = tokio::spawn(async move {
        tokio::time::sleep(busy).await;
        let mut log = Vec::new();
        while let Some(entry) = rx.recv().await {
            log.push(entry);
        }
        log
    });
    let mut results = Vec::new();
    for (handle, transfer) in handles.into_iter().zip(&transfers) {
        match handle.await {
            Ok(result) => results.push(result),
            Err(_) => {
                return Err(format!(
                    "the transfer {transfer:?} (from, to, amount; accounts 0 alice, 1 bob, 2 \
                     carol) panicked while it overlapped with the others, all waiting for the \
                     busy audit log"
                ));
            }
        }
    }
    let mut balances = Vec::new();
    for (name, _) in BRANCH {
        balances.push(bank.balance(name).await.unwrap_or(0));
    }
    drop(bank);
    let logged = compliance.await.map_err(|_| "the compliance writer failed".to_string())?;
    let logged: Vec<AuditEntry> = logged.into_iter().filter(|e| *e != earlier_entry()).collect();

    let total: u64 = balances.iter().sum();
    let opening: u64 = BRANCH.iter().map(|(_, cents)| cents).sum();
    if total != opening {
        return Err(format!(
            "after the transfers the accounts hold {balances:?} cents, {total} in all, expected \
             {opening}: transfers that overlapped while the audit log was busy created or lost \
             money"
        ));
    }
    // Replayed in order from the opening balances, the audit log must never overdraw an account
    // and must end at the balances the bank shows.
    let mut replay: Vec<u64> = BRANCH.iter().map(|(_, cents)| *cents).collect();
    let index = |name: &str| BRANCH.iter().position(|(n, _)| *n == name);
    for entry in &logged {
        let (Some(from), Some(to)) = (index(&entry.from), index(&entry.to)) else {
            return Err(format!("the audit log holds {entry:?}, which names no account"));
        };
        if replay[from] < entry.amount {
            return Err(format!(
                "the audit log, replayed in order, overdraws {}: it holds {logged:?}; a transfer \
                 that the balances could not cover was logged",
                entry.from
            ));
        }
        replay[from] -= entry.amount;
        replay[to] += entry.amount;
    }
    if replay != balances {
        return Err(format!(
            "the audit log {logged:?}, replayed from the opening balances, gives {replay:?}, but \
             the accounts hold {balances:?}: the log does not match the money that moved"
        ));
    }
    let mut completed: Vec<AuditEntry> = Vec::new();
    for (result, &(from, to, amount)) in results.iter().zip(&transfers) {
        match result {
            Ok(()) => completed.push(AuditEntry {
                from: BRANCH[from].0.into(),
                to: BRANCH[to].0.into(),
                amount,
            }),
            Err(TransferError::InsufficientFunds { available }) if *available < amount => {}
            Err(TransferError::InsufficientFunds { available }) => {
                return Err(format!(
                    "a transfer of {amount} cents from {} was refused with \
                     `InsufficientFunds {{ available: {available} }}`: the account held enough \
                     (an account may spend its whole balance; only less than the amount is \
                     insufficient)",
                    BRANCH[from].0
                ));
            }
            Err(TransferError::AuditLogDown) => {
                return Err(format!(
                    "a transfer was refused with `AuditLogDown` while the audit log was only busy \
                     (its receiver was alive, and made room after {busy:?}): a busy audit log \
                     must be waited for, however long, not reported as down"
                ));
            }
            Err(other) => return Err(format!("a transfer was refused with {other:?}")),
        }
    }
    let key = |e: &AuditEntry| (e.from.clone(), e.to.clone(), e.amount);
    let mut in_log = logged.clone();
    in_log.sort_by_key(key);
    completed.sort_by_key(key);
    if in_log != completed {
        return Err(format!(
            "the transfers that returned `Ok` were {completed:?}, but the audit log holds \
             {in_log:?}: every completed transfer must be logged once, and no refused one"
        ));
    }
    Ok(())
}

/// Polls `future` once: `Some` with its output if it finished in that poll, `None` if it had to
/// wait (it is then dropped, which a balance read or a transfer must allow at any `.await`).
async fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        std::task::Poll::Ready(output) => std::task::Poll::Ready(Some(output)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

/// Looks at the bank while every transfer waits for the full audit log, before any of them can
/// have completed: each balance must still read as it opened (a balance the lock keeps from being
/// read at this moment shows nothing, and that is fine), and a transfer of an account's whole
/// opening balance, tried once and given up, must not be refused for lack of funds.
async fn midway(bank: &Bank, transfers: &[(usize, usize, u64)]) -> Result<(), String> {
    for (index, &(name, opening)) in BRANCH.iter().enumerate() {
        if let Some(seen) = poll_once(bank.balance(name)).await {
            if seen != Some(opening) {
                return Err(format!(
                    "while the transfers {transfers:?} (from, to, amount; accounts 0 alice, 1 bob, \
                     2 carol) all waited for the full audit log, so that none of them could have \
                     completed yet, the balance of {name} read {seen:?}, expected Some({opening}): \
                     a transfer changed a balance before it could complete, and a reconciliation \
                     run at that moment finds money that has not moved (or has vanished)"
                ));
            }
        }
        let to = BRANCH[(index + 1) % BRANCH.len()].0;
        if let Some(Err(TransferError::InsufficientFunds { available })) =
            poll_once(bank.transfer(name, to, opening)).await
        {
            return Err(format!(
                "while the transfers {transfers:?} (from, to, amount; accounts 0 alice, 1 bob, 2 \
                 carol) all waited for the full audit log, so that none of them could have \
                 completed yet, a transfer of {opening} cents from {name} to {to} was refused with \
                 `InsufficientFunds {{ available: {available} }}`: {name} still held its opening \
                 {opening} cents, and money a waiting transfer may never move was already \
                 counted as gone"
            ));
        }
    }
    Ok(())
}

/// How many 1-cent transfers [`opposite_transfers_polled_together_all_finish`] starts, half from
/// alice to bob and half from bob to alice.
const OPPOSITE: usize = 200;

/// A transfer future, boxed so that many can be polled from one task.
type Transfer<'a> = std::pin::Pin<Box<dyn Future<Output = Result<(), TransferError>> + 'a>>;

/// Starts [`OPPOSITE`] transfers of 1 cent between alice and bob, alternating directions, and
/// polls them all from this one task, as a handler that serves a batch of requests with a
/// `join_all` does, until every one has finished or an hour of the paused clock has passed. The
/// order of the polls alternates from round to round (front to back, then back to front), and
/// each round first spends `(round + shift) % 4` units of the task's cooperative budget, so that
/// across rounds and shifts the budget runs out at every step of a transfer: a transfer is left
/// waiting at each of its `.await`s while the transfers after it in the round are polled.
/// Returns the error message when some of them never finished, or failed.
async fn opposite_transfers(shift: usize) -> Result<(), String> {
    let (tx, mut rx) = mpsc::channel(OPPOSITE);
    let drainer = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let bank = Bank::new(&[("alice", ALICE), ("bob", ALICE)], tx);
    let mut transfers: Vec<Transfer<'_>> = (0..OPPOSITE)
        .map(|i| {
            let (from, to) = if i % 2 == 0 { ("alice", "bob") } else { ("bob", "alice") };
            Box::pin(bank.transfer(from, to, 1)) as Transfer<'_>
        })
        .collect();
    let mut results: Vec<Option<Result<(), TransferError>>> = vec![None; OPPOSITE];
    let mut round = 0usize;
    let all = std::future::poll_fn(|cx| {
        round += 1;
        for _ in 0..(round + shift) % 4 {
            let spend = std::pin::pin!(tokio::task::consume_budget());
            let _ = spend.poll(cx);
        }
        for k in 0..OPPOSITE {
            let i = if round % 2 == 1 { k } else { OPPOSITE - 1 - k };
            if results[i].is_none() {
                if let std::task::Poll::Ready(result) = transfers[i].as_mut().poll(cx) {
                    results[i] = Some(result);
                }
            }
        }
        if results.iter().all(Option::is_some) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    });
    let finished = tokio::time::timeout(Duration::from_secs(3600), all).await.is_ok();
    drop(transfers);
    drainer.abort();
    if !finished {
        let waiting = results.iter().filter(|r| r.is_none()).count();
        return Err(format!(
            "{OPPOSITE} transfers of 1 cent between alice and bob, half of them each way, were \
             started together and polled by one handler (as a `join_all` does); after an hour \
             {waiting} of them had still not finished, and nothing was left to wake them: \
             transfers going opposite ways between the same two accounts waited for each other \
             for ever"
        ));
    }
    if let Some(Err(refusal)) = results.iter().flatten().find(|r| r.is_err()) {
        return Err(format!(
            "{OPPOSITE} transfers of 1 cent between alice and bob (each holding {ALICE} cents), \
             half of them each way, were started together and polled by one handler, and one \
             was refused with {refusal:?}: every one of them must go through"
        ));
    }
    let seen = balances(&bank).await;
    if seen != (ALICE, ALICE) {
        return Err(format!(
            "after {} transfers of 1 cent from alice to bob and as many from bob to alice, all \
             completed, alice holds {} and bob {} (expected {ALICE} each)",
            OPPOSITE / 2,
            seen.0,
            seen.1
        ));
    }
    Ok(())
}

/// How many units of the task's cooperative budget [`log_gone_while_waiting`] spends before a
/// poll, at most: every count from none to past a whole budget (tokio's is 128 units), so that
/// some count leaves the transfer waiting at each of its `.await`s in turn.
const MOST_SPENT: usize = 160;

/// Polls `transfer` once from this task after spending `spent` units of the task's cooperative
/// budget (from a fresh one), so that the poll runs out of budget at a chosen step of the
/// transfer, as it does for one of the many transfers a `join_all` handler polls: a transfer can
/// be left waiting at an `.await` (the lock's included) whose resource was free.
async fn poll_after_spending(transfer: &mut Transfer<'_>, spent: usize) -> bool {
    // A fresh budget: the task is polled again after it yields.
    tokio::task::yield_now().await;
    std::future::poll_fn(|cx| {
        for _ in 0..spent {
            let spend = std::pin::pin!(tokio::task::consume_budget());
            let _ = spend.poll(cx);
        }
        std::task::Poll::Ready(transfer.as_mut().poll(cx).is_pending())
    })
    .await
}

/// A transfer of `amount` cents from `from` to `to` (alice or bob: one that moves money, one of
/// zero cents, or one from alice to herself) is left waiting after a poll that ran out of budget
/// after `spent` units (with `full`, on an audit log that was full at its first poll and has made
/// room since); then the compliance writer takes what the log holds and goes away (the receiver
/// is dropped). The transfer must then be refused with nothing moved, or have gone through with
/// its entry in the log before the log went. Returns what was seen otherwise.
async fn log_gone_while_waiting(
    (from, to, amount): (&str, &str, u64),
    full: bool,
    spent: usize,
) -> Result<(), String> {
    let (tx, mut rx) = mpsc::channel(1);
    if full {
        tx.try_send(earlier_entry()).expect("the audit channel has room for the earlier entry");
    }
    let bank = Bank::new(&[("alice", ALICE), ("bob", BOB)], tx);
    let mut transfer: Transfer<'_> = Box::pin(bank.transfer(from, to, amount));
    let mut when = String::from("the audit log had room");
    if full {
        if !poll_after_spending(&mut transfer, 0).await {
            return Ok(());
        }
        // The compliance writer takes the earlier entry: the log has room again.
        let _ = rx.try_recv();
        when = String::from("the audit log was full at its first poll and had made room since");
    }
    if !poll_after_spending(&mut transfer, spent).await {
        return Ok(());
    }
    let mut logged = Vec::new();
    while let Ok(entry) = rx.try_recv() {
        logged.push(entry);
    }
    drop(rx);
    let result = tokio::time::timeout(Duration::from_secs(3600), transfer).await;
    let (alice, bob) = balances(&bank).await;
    let entry = AuditEntry { from: from.into(), to: to.into(), amount };
    let was_logged = logged.contains(&entry);
    let mut after = [("alice", ALICE), ("bob", BOB)];
    for (name, balance) in &mut after {
        if *name == from {
            *balance -= amount;
        }
        if *name == to {
            *balance += amount;
        }
    }
    let moved = (alice, bob) == (after[0].1, after[1].1);
    let untouched = (alice, bob) == (ALICE, BOB);
    match result {
        Ok(Ok(())) if moved && was_logged => Ok(()),
        Ok(Err(TransferError::AuditLogDown)) if untouched && !was_logged => Ok(()),
        Err(_) => Err(format!(
            "a transfer of {amount} cents from {from} to {to} ({when}) was left waiting at an \
             `.await` when its task's cooperative budget ran out after {spent} units, and the \
             audit log went away (its receiver was dropped) while it waited; an hour later it \
             had still not returned: with the audit log gone, it must be refused"
        )),
        Ok(result) => Err(format!(
            "a transfer of {amount} cents from {from} to {to} ({when}) was left waiting at an \
             `.await` when its task's cooperative budget ran out after {spent} units, and the \
             audit log went away (its receiver was dropped) while it waited, having received \
             {logged:?} from it; when polled again, the transfer returned {result:?}, and alice \
             holds {alice} and bob {bob}: expected `Err(AuditLogDown)` with alice at {ALICE} \
             and bob at {BOB} (nothing moved), or `Ok(())` with its entry in the log before the \
             log went (a transfer of zero cents or to oneself is logged like any other: an `Ok` \
             with nothing logged is an unaudited transfer). A log that goes away while a \
             transfer waits (for a slot or for the lock) must be noticed after the wait, right \
             where the money moves, whatever the amount, or a transfer goes through that no \
             audit log records"
        )),
    }
}

async fn balances(bank: &Bank) -> (u64, u64) {
    (bank.balance("alice").await.unwrap_or(0), bank.balance("bob").await.unwrap_or(0))
}

hidden_test! {
    /// Several transfers wait for a busy audit log at once: no overdraft gets through, no money is
    /// created or lost, and the audit log, replayed in order, gives the balances.
    fn overlapping_transfers_keep_the_books_straight() {
        check_property(64, overlapping_transfers(), run_overlapping);
    }

    /// Transfers going opposite ways between the same two accounts, started together and polled
    /// by one handler, all finish: none waits for another for ever.
    async fn opposite_transfers_polled_together_all_finish() {
        for shift in 0..4 {
            if let Err(message) = opposite_transfers(shift).await {
                panic!("{message}");
            }
        }
    }

    /// Two transfers wait for a full audit log of capacity 1; the compliance writer then takes
    /// one entry at a time, each as soon as it is there. Both transfers must finish within a few
    /// turns: a freed slot must be used, not handed back and forth between the waiting transfers
    /// (a livelock keeps the runtime busy, so the paused clock never moves and nothing else
    /// would ever end the wait). The transfers are polled by hand, one after the other, every
    /// turn.
    async fn two_transfers_waiting_for_one_slot_both_finish() {
        const TURNS: usize = 50;
        let (tx, mut rx) = mpsc::channel(1);
        tx.try_send(earlier_entry()).expect("the audit channel has room for the earlier entry");
        let bank = Bank::new(&[("alice", ALICE), ("bob", BOB)], tx);
        let mut transfers = [
            tokio_test::task::spawn(bank.transfer("alice", "bob", 1)),
            tokio_test::task::spawn(bank.transfer("bob", "alice", 1)),
        ];
        let mut results: [Option<Result<(), TransferError>>; 2] = [None, None];
        let mut logged = Vec::new();
        for (transfer, result) in transfers.iter_mut().zip(results.iter_mut()) {
            if let std::task::Poll::Ready(done) = transfer.poll() {
                *result = Some(done);
            }
        }
        let mut turns = 0;
        while results.iter().any(Option::is_none) && turns < TURNS {
            turns += 1;
            // The compliance writer takes what is there, which frees the slot.
            while let Ok(entry) = rx.try_recv() {
                logged.push(entry);
            }
            kata_support::settle().await;
            for (transfer, result) in transfers.iter_mut().zip(results.iter_mut()) {
                if result.is_none() {
                    if let std::task::Poll::Ready(done) = transfer.poll() {
                        *result = Some(done);
                    }
                }
            }
        }
        drop(transfers);
        while let Ok(entry) = rx.try_recv() {
            logged.push(entry);
        }
        assert!(
            results.iter().all(|r| *r == Some(Ok(()))),
            "two transfers of 1 cent (alice to bob, bob to alice) waited for a full audit log \
             of capacity 1, and the compliance writer then took each entry as soon as it was \
             there, freeing the slot every turn. After {turns} turns the transfers stood at \
             {results:?} (None: still waiting) and the log had received {logged:?}. Expected \
             both `Ok(())` within a few turns: the slot that freed was passed back and forth \
             between the waiting transfers and never used, so the wait never ends (a busy \
             runtime, so no timer ever fires either)"
        );
    }

    /// The audit log goes away while a transfer waits, at each of its `.await`s in turn (its
    /// task's cooperative budget runs out there, on a log with room or one that has just made
    /// room), for a transfer that moves money, one of zero cents and one to oneself: the transfer
    /// is refused with nothing moved, never `Ok` with nothing logged.
    async fn a_log_that_goes_while_a_transfer_waits_refuses_it() {
        let kinds = [("alice", "bob", AMOUNT), ("alice", "bob", 0), ("alice", "alice", AMOUNT)];
        for kind in kinds {
            for full in [false, true] {
                for spent in 0..=MOST_SPENT {
                    if let Err(message) = log_gone_while_waiting(kind, full, spent).await {
                        panic!("{message}");
                    }
                }
            }
        }
    }

    /// The service shares one bank across the request handlers it spawns on its multi-thread
    /// runtime (an `Arc<Bank>` in each `tokio::spawn`): `Bank` must stay `Sync`, and the futures
    /// of `transfer` and `balance` `Send`, as the original's are.
    async fn a_bank_can_be_shared_by_spawned_handlers() {
        let (tx, mut rx) = mpsc::channel(8);
        let bank = Bank::new(&[("alice", ALICE), ("bob", BOB)], tx);
        let mut not_shareable = Vec::new();
        // A shared reference is `Send` exactly when what it points to is `Sync`.
        if !kata_support::is_send!(&bank) {
            not_shareable.push("`Bank` is not `Sync`");
        }
        let moving = bank.transfer("alice", "bob", AMOUNT);
        if !kata_support::is_send!(moving) {
            not_shareable.push("the future returned by `transfer` is not `Send`");
        }
        let outcome = moving.await;
        let reading = bank.balance("alice");
        if !kata_support::is_send!(reading) {
            not_shareable.push("the future returned by `balance` is not `Send`");
        }
        let alice = reading.await;
        assert!(
            not_shareable.is_empty(),
            "{}: the service can no longer share one bank (an `Arc<Bank>`) across the request \
             handlers it `tokio::spawn`s on its multi-thread runtime. Transfers run \
             concurrently, on several threads: the balances need a lock that threads can share \
             (a `RefCell` or `Cell` is for one thread), and no `.await` may hold something that \
             is not `Send` (an `Rc`, a `RefCell` borrow, a `std` lock guard)",
            not_shareable.join(", and ")
        );
        assert_eq!(outcome, Ok(()), "nothing was cancelled: the transfer must go through");
        assert_eq!(alice, Some(ALICE - AMOUNT), "alice sent {AMOUNT} of her {ALICE} cents");
        assert_eq!(rx.try_recv().ok(), Some(alice_to_bob()), "the transfer must be audited");
    }

    /// Nothing cancelled: the money moves and the transfer is logged.
    async fn transfers_and_audits() {
        let (tx, mut rx) = mpsc::channel(8);
        let bank = Bank::new(&[("alice", ALICE), ("bob", BOB)], tx);
        assert_eq!(bank.transfer("alice", "bob", AMOUNT).await, Ok(()));
        assert_eq!(balances(&bank).await, (ALICE - AMOUNT, BOB + AMOUNT));
        assert_eq!(rx.try_recv().ok(), Some(alice_to_bob()), "the transfer must be audited");
        assert!(rx.try_recv().is_err(), "one transfer must make exactly one audit entry");
    }

    /// A transfer from an account to itself moves nothing: it goes through, the balance stays
    /// as it was, and it is logged once.
    async fn a_transfer_to_oneself_changes_nothing() {
        let (tx, mut rx) = mpsc::channel(8);
        let bank = Bank::new(&[("alice", ALICE), ("bob", BOB)], tx);
        let result = bank.transfer("alice", "alice", AMOUNT).await;
        assert_eq!(
            result,
            Ok(()),
            "alice holds {ALICE} cents and sends {AMOUNT} to herself: she holds enough, so the \
             transfer must go through"
        );
        let (alice, bob) = balances(&bank).await;
        assert_eq!(
            (alice, bob),
            (ALICE, BOB),
            "after a transfer of {AMOUNT} cents from alice to alice, alice holds {alice} and bob \
             {bob} (expected {ALICE} and {BOB}): a transfer from an account to itself must leave \
             every balance as it was"
        );
        let entry = AuditEntry { from: "alice".into(), to: "alice".into(), amount: AMOUNT };
        assert_eq!(rx.try_recv().ok(), Some(entry), "the transfer must be audited");
        assert!(rx.try_recv().is_err(), "one transfer must make exactly one audit entry");
    }

    /// A transfer of zero cents is a transfer like any other: between known accounts it goes
    /// through (even from an empty account), changes no balance, and is logged once.
    async fn a_transfer_of_zero_cents_is_logged() {
        let (tx, mut rx) = mpsc::channel(8);
        let bank = Bank::new(&[("alice", ALICE), ("bob", BOB), ("carol", 0)], tx);
        for (from, to) in [("alice", "bob"), ("carol", "alice")] {
            let result = bank.transfer(from, to, 0).await;
            assert_eq!(
                result,
                Ok(()),
                "a transfer of 0 cents from {from} to {to} must go through: {from} holds at least \
                 the amount"
            );
            let (alice, bob) = balances(&bank).await;
            assert_eq!(
                (alice, bob),
                (ALICE, BOB),
                "after a transfer of 0 cents from {from} to {to}, alice holds {alice} and bob \
                 {bob} (expected {ALICE} and {BOB})"
            );
            let entry = AuditEntry { from: from.into(), to: to.into(), amount: 0 };
            let logged = rx.try_recv().ok();
            assert_eq!(
                logged,
                Some(entry),
                "a transfer of 0 cents from {from} to {to} returned `Ok`, and the audit log got \
                 {logged:?}: every transfer that goes through is logged, whatever its amount"
            );
            assert!(rx.try_recv().is_err(), "one transfer must make exactly one audit entry");
        }
    }

    /// A refused transfer changes nothing and logs nothing. When several refusals apply (an
    /// unknown recipient and too little money), any one of them may be returned.
    async fn refuses_an_overdraft_without_a_trace() {
        let (tx, mut rx) = mpsc::channel(8);
        let bank = Bank::new(&[("alice", ALICE), ("bob", BOB)], tx);
        let unknown = || TransferError::UnknownAccount("mallory".into());
        let overdraft = TransferError::InsufficientFunds { available: ALICE };
        let mut refusals =
            vec![("an overdraft", "alice", "bob", ALICE + 1, vec![overdraft.clone()])];
        // Whatever the amount, zero cents included, a transfer naming an unknown account is
        // refused: no money would move, but the bank must not vouch for an account it lacks.
        for amount in [500, 1, 0] {
            refusals.extend([
                ("a transfer to an unknown recipient", "alice", "mallory", amount, vec![unknown()]),
                ("a transfer from an unknown sender", "mallory", "bob", amount, vec![unknown()]),
                ("a transfer from an unknown account to itself", "mallory", "mallory", amount,
                    vec![unknown()]),
            ]);
        }
        // Two reasons to refuse it: which one is returned is free.
        refusals.push((
            "an overdraft to an unknown recipient",
            "alice",
            "mallory",
            ALICE + 1,
            vec![unknown(), overdraft],
        ));
        for (case, from, to, amount, allowed) in refusals {
            let result = bank.transfer(from, to, amount).await;
            assert!(
                result.as_ref().is_err_and(|refusal| allowed.contains(refusal)),
                "{case} ({from} to {to}, {amount} cents) must be refused with {}, and it returned \
                 {result:?}",
                allowed.iter().map(|r| format!("`Err({r:?})`")).collect::<Vec<_>>().join(" or ")
            );
            let (alice, bob) = balances(&bank).await;
            assert_eq!(
                (alice, bob),
                (ALICE, BOB),
                "{case} ({from} to {to}, {amount} cents) was refused, but alice now holds {alice} \
                 and bob {bob} (expected {ALICE} and {BOB}): the refusal came after a balance \
                 changed, and a refused transfer must move no money"
            );
            let logged = rx.try_recv().ok();
            assert_eq!(logged, None, "{case} was refused, but the audit log got {logged:?}");
        }
    }

    /// Amounts and balances at the far end of `u64`, on either side of 2^63 and up to `u64::MAX`
    /// cents, are judged like any other: a transfer goes through when the sender holds the amount
    /// (its whole balance included) and is refused, moving nothing and logging nothing, when it
    /// holds less. No total in these banks exceeds `u64::MAX`, so no credit can overflow.
    async fn amounts_at_the_far_end_of_u64_are_judged_like_any_other() {
        const HALF: u64 = 1 << 63;
        const MAX: u64 = u64::MAX;
        let short = |available| Err(TransferError::InsufficientFunds { available });
        // (alice's and bob's opening balances, from, to, amount, expected answer)
        let cases: [(u64, u64, &str, &str, u64, Result<(), TransferError>); 18] = [
            (100, 0, "alice", "bob", MAX - 9, short(100)),
            (100, 0, "alice", "bob", MAX, short(100)),
            (100, 0, "alice", "bob", HALF, short(100)),
            (100, 0, "alice", "bob", HALF + 50, short(100)),
            (100, 0, "alice", "bob", HALF - 1, short(100)),
            (0, MAX - 1, "alice", "bob", MAX, short(0)),
            (100, 0, "alice", "alice", MAX - 9, short(100)),
            (HALF - 1, 0, "alice", "bob", HALF, short(HALF - 1)),
            (MAX - 10, 10, "alice", "bob", MAX - 9, short(MAX - 10)),
            (MAX - 10, 10, "alice", "bob", MAX - 10, Ok(())),
            (MAX, 0, "alice", "bob", MAX, Ok(())),
            (MAX, 0, "alice", "bob", 1, Ok(())),
            (MAX - 1, 0, "alice", "bob", HALF, Ok(())),
            (HALF + 100, 0, "alice", "bob", 50, Ok(())),
            (HALF, 0, "alice", "bob", HALF, Ok(())),
            (HALF, HALF - 1, "bob", "alice", HALF - 1, Ok(())),
            (0, MAX, "bob", "alice", MAX, Ok(())),
            (HALF + 100, 0, "alice", "alice", 100, Ok(())),
        ];
        for (alice, bob, from, to, amount, expected) in cases {
            let (tx, mut rx) = mpsc::channel(8);
            let bank = Bank::new(&[("alice", alice), ("bob", bob)], tx);
            let scene = format!(
                "alice holds {alice} cents and bob {bob}; a transfer of {amount} cents from {from} \
                 to {to}"
            );
            let result = bank.transfer(from, to, amount).await;
            assert_eq!(
                result, expected,
                "{scene} returned {result:?}; expected {expected:?}: a transfer is refused for \
                 lack of funds only when the sender holds less than the amount, whatever the \
                 amounts, up to `u64::MAX` cents"
            );
            let after = balances(&bank).await;
            let moved = match (&expected, from, to) {
                (Ok(()), "alice", "bob") => (alice - amount, bob + amount),
                (Ok(()), "bob", "alice") => (alice + amount, bob - amount),
                _ => (alice, bob),
            };
            assert_eq!(
                after, moved,
                "{scene} returned {result:?}, and alice and bob then held {after:?} cents; \
                 expected {moved:?} (the amount moved once, or nothing moved)"
            );
            let logged = rx.try_recv().ok();
            let entry = AuditEntry { from: from.into(), to: to.into(), amount };
            let wanted = expected.is_ok().then_some(entry);
            assert_eq!(
                logged, wanted,
                "{scene} returned {result:?}, and the audit log got {logged:?}: a transfer that \
                 goes through is logged once, and a refused one not at all"
            );
            assert!(rx.try_recv().is_err(), "{scene}: one transfer made two audit entries");
        }
    }

    /// A busy audit log makes the transfer wait, not fail, however long it stays busy: here as
    /// long as one tokio `sleep` lasts (about thirty years), next to nothing on the paused clock.
    async fn waits_for_a_busy_audit_log() {
        let busy = AGES;
        let (bank, log) = bank_with_audit_log_busy_for(busy);
        let started = tokio::time::Instant::now();
        let result = bank.transfer("alice", "bob", AMOUNT).await;
        let waited = started.elapsed();
        assert_eq!(
            result,
            Ok(()),
            "the audit log was busy (full, its receiver alive) and made room after {busy:?}; the \
             transfer returned {result:?} after {waited:?}: a busy audit log must be waited for, \
             however long, and only a log that is gone refuses the transfer"
        );
        assert_eq!(balances(&bank).await, (ALICE - AMOUNT, BOB + AMOUNT));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(*log.lock().unwrap(), [earlier_entry(), alice_to_bob()]);
    }

    /// The far end of "however long it stays busy": the audit log stays full, its receiver alive,
    /// while the paused clock jumps a hundred million years at once (past any bound a bank could
    /// set on its wait for the log, short of one tokio cannot represent; a `sleep` that long
    /// would be capped by tokio at about thirty years), and the transfer, polled then, is still
    /// waiting, not refused; when the log makes room it goes through.
    async fn a_busy_log_is_waited_for_however_far_the_clock_goes() {
        const FAR: Duration = Duration::from_secs(100_000_000 * 365 * 24 * 3600);
        let (tx, mut rx) = mpsc::channel(1);
        tx.try_send(earlier_entry()).expect("the audit channel has room for the earlier entry");
        let bank = Bank::new(&[("alice", ALICE), ("bob", BOB)], tx);
        let mut transfer = tokio_test::task::spawn(bank.transfer("alice", "bob", AMOUNT));
        assert!(transfer.poll().is_pending(), "the audit log is full, so the transfer must wait");
        tokio::time::advance(FAR).await;
        let waited = transfer.poll();
        assert!(
            waited.is_pending(),
            "the audit log stayed busy (full, its receiver alive) for {FAR:?}, and the transfer, \
             polled then, returned {waited:?}: a busy audit log must be waited for, however long \
             it stays busy; only a log that is gone refuses the transfer (the caller's own \
             timeout is the only one that may give up)"
        );
        assert_eq!(rx.recv().await, Some(earlier_entry()));
        let result = transfer.poll();
        assert!(
            result == std::task::Poll::Ready(Ok(())),
            "the audit log made room after {FAR:?} of being busy, and the transfer, polled then, \
             returned {result:?}; expected it to go through"
        );
        drop(transfer);
        assert_eq!(balances(&bank).await, (ALICE - AMOUNT, BOB + AMOUNT));
        assert_eq!(rx.recv().await, Some(alice_to_bob()));
    }

    /// An account may spend its whole balance: only less than the amount is insufficient.
    async fn spends_a_whole_balance() {
        let (tx, mut rx) = mpsc::channel(8);
        let bank = Bank::new(&[("alice", ALICE), ("bob", BOB)], tx);
        let result = bank.transfer("bob", "alice", BOB).await;
        assert_eq!(
            result,
            Ok(()),
            "bob holds {BOB} cents and sends exactly {BOB}: he holds enough, so the transfer must \
             go through"
        );
        assert_eq!(balances(&bank).await, (ALICE + BOB, 0));
        let entry = AuditEntry { from: "bob".into(), to: "alice".into(), amount: BOB };
        assert_eq!(rx.try_recv().ok(), Some(entry), "the transfer must be audited");
    }

    /// With the audit log gone, a transfer must be refused before any money moves.
    async fn refuses_to_move_money_when_the_audit_log_is_down() {
        let (tx, rx) = mpsc::channel(8);
        drop(rx);
        let bank = Bank::new(&[("alice", ALICE), ("bob", BOB)], tx);
        let result = bank.transfer("alice", "bob", AMOUNT).await;
        let (alice, bob) = balances(&bank).await;
        assert_eq!(
            result,
            Err(TransferError::AuditLogDown),
            "the audit log is down, so the transfer must be refused (no money moves unaudited)"
        );
        assert_eq!(
            (alice, bob),
            (ALICE, BOB),
            "the transfer was refused because the audit log is down, but alice now holds {alice} \
             and bob {bob} (expected {ALICE} and {BOB}): the refusal came after the debit, and \
             an early return between the debit and the credit leaves the money half moved, just \
             like a cancellation there"
        );
    }

    /// Drop the transfer after every poll: money is conserved, the log matches the balances, and
    /// nothing changes afterwards (the dropped transfer does not go on once the log makes room).
    async fn money_is_conserved_at_every_cancellation_point() {
        type Shared = (Arc<Bank>, Arc<Mutex<Vec<AuditEntry>>>);
        assert_cancel_safe(
            bank_with_busy_audit_log,
            |(bank, _): Shared| async move { bank.transfer("alice", "bob", AMOUNT).await },
            |(bank, log): Shared, outcome| async move {
                if let Outcome::Completed(Err(e)) = &outcome {
                    return Err(format!("the transfer failed without being cancelled: {e:?}"));
                }
                // The balances as the transfer left them when it ended (or was dropped).
                let at_the_end = balances(&bank).await;
                // Let the audit log make room and the compliance writer catch up with whatever
                // was sent.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let (alice, bob) = balances(&bank).await;
                if outcome.is_cancelled() && (alice, bob) != at_the_end {
                    return Err(format!(
                        "when the transfer was dropped, alice held {} and bob {}; once the audit \
                         log made room, alice held {alice} and bob {bob}: the dropped transfer \
                         went on after it was dropped. A transfer the caller gave up on (its \
                         timeout fired, the client hung up) must change nothing afterwards, or \
                         the client's retry moves the money twice",
                        at_the_end.0, at_the_end.1
                    ));
                }
                let logged: Vec<AuditEntry> =
                    log.lock().unwrap().iter().filter(|e| **e != earlier_entry()).cloned().collect();
                let total = alice + bob;
                if total != ALICE + BOB {
                    return Err(format!(
                        "alice holds {alice} and bob {bob}: the bank holds {total} cents, expected \
                         {}. The transfer was dropped between its two balance changes, while it \
                         waited at an `.await` with the money half moved",
                        ALICE + BOB
                    ));
                }
                // A transfer dropped before it returned must have changed nothing: its caller
                // never got `Ok`, so the client retries, and money that moved anyway (while the
                // caller was not polling the transfer) moves twice.
                if outcome.is_cancelled() && at_the_end != (ALICE, BOB) {
                    return Err(format!(
                        "the transfer was dropped before it returned, and alice already held {} \
                         and bob {} (expected {ALICE} and {BOB}): the money moved although the \
                         caller never got `Ok`, so the client's retry moves it twice: the transfer \
                         went on in the background while its caller was not polling it",
                        at_the_end.0, at_the_end.1
                    ));
                }
                let moved = (alice, bob) == (ALICE - AMOUNT, BOB + AMOUNT);
                let untouched = (alice, bob) == (ALICE, BOB);
                match (moved, untouched, logged.as_slice()) {
                    (true, _, [entry]) if *entry == alice_to_bob() => Ok(()),
                    (_, true, []) => Ok(()),
                    (true, _, other) => Err(format!(
                        "the money moved, but the audit log holds {other:?} for it (expected \
                         exactly one entry)"
                    )),
                    (_, true, other) => Err(format!(
                        "no money moved, but the audit log holds {other:?}: a transfer that did \
                         not happen was audited"
                    )),
                    _ => Err(format!("alice holds {alice} and bob {bob}: a partial transfer")),
                }
            },
        )
        .await;
    }
}
