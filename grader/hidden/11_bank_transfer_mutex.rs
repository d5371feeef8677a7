//! Hidden tests for kata 11: however a transfer ends (done, refused, or dropped at any `.await`),
//! the money in the bank is conserved and the audit log matches the balances.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bank_transfer_mutex::{AuditEntry, Bank, TransferError};
use kata_support::{Outcome, assert_cancel_safe, hidden_test};
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
    let (tx, mut rx) = mpsc::channel(1);
    tx.try_send(earlier_entry()).expect("the audit channel has room for the earlier entry");
    let bank = Arc::new(Bank::new(&[("alice", ALICE), ("bob", BOB)], tx));
    let log = Arc::new(Mutex::new(Vec::new()));
    let written = log.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        while let Some(entry) = rx.recv().await {
            written.lock().unwrap().push(entry);
        }
    });
    (bank, log)
}

async fn balances(bank: &Bank) -> (u64, u64) {
    (bank.balance("alice").await.unwrap_or(0), bank.balance("bob").await.unwrap_or(0))
}

hidden_test! {
    /// Nothing cancelled: the money moves and the transfer is logged.
    async fn transfers_and_audits() {
        let (tx, mut rx) = mpsc::channel(8);
        let bank = Bank::new(&[("alice", ALICE), ("bob", BOB)], tx);
        assert_eq!(bank.transfer("alice", "bob", AMOUNT).await, Ok(()));
        assert_eq!(balances(&bank).await, (ALICE - AMOUNT, BOB + AMOUNT));
        assert_eq!(rx.try_recv().ok(), Some(alice_to_bob()), "the transfer must be audited");
        assert!(rx.try_recv().is_err(), "one transfer must make exactly one audit entry");
    }

    /// A refused transfer changes nothing and logs nothing.
    async fn refuses_an_overdraft_without_a_trace() {
        let (tx, mut rx) = mpsc::channel(8);
        let bank = Bank::new(&[("alice", ALICE), ("bob", BOB)], tx);
        assert_eq!(
            bank.transfer("alice", "bob", ALICE + 1).await,
            Err(TransferError::InsufficientFunds { available: ALICE })
        );
        assert_eq!(
            bank.transfer("alice", "mallory", 1).await,
            Err(TransferError::UnknownAccount("mallory".into()))
        );
        assert_eq!(balances(&bank).await, (ALICE, BOB), "a refused transfer must move no money");
        assert!(rx.try_recv().is_err(), "a refused transfer must not be audited");
    }

    /// A busy audit log makes the transfer wait, not fail.
    async fn waits_for_a_busy_audit_log() {
        let (bank, log) = bank_with_busy_audit_log();
        assert_eq!(bank.transfer("alice", "bob", AMOUNT).await, Ok(()));
        assert_eq!(balances(&bank).await, (ALICE - AMOUNT, BOB + AMOUNT));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(*log.lock().unwrap(), [earlier_entry(), alice_to_bob()]);
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

    /// Drop the transfer after every poll: money is conserved and the log matches the balances.
    async fn money_is_conserved_at_every_cancellation_point() {
        type Shared = (Arc<Bank>, Arc<Mutex<Vec<AuditEntry>>>);
        assert_cancel_safe(
            bank_with_busy_audit_log,
            |(bank, _): Shared| async move { bank.transfer("alice", "bob", AMOUNT).await },
            |(bank, log): Shared, outcome| async move {
                if let Outcome::Completed(Err(e)) = &outcome {
                    return Err(format!("the transfer failed without being cancelled: {e:?}"));
                }
                // Let the compliance writer catch up with whatever was sent.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let (alice, bob) = balances(&bank).await;
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
