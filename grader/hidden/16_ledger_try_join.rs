//! Hidden tests for kata 16: however a transfer ends (a failed check on either leg, or the caller
//! dropping it at any await), no hold is left open and the money has either moved or not.

use std::sync::Arc;
use std::time::Duration;

use kata_support::{Outcome, assert_cancel_safe, hidden_test};
use ledger_try_join::{Checks, Ledger, TransferError, transfer};
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
        "{what}, and a hold is still open: {}. Whatever placed it was dropped (as `try_join!` \
         drops the debit leg at its `.await` on the risk engine) before a capture or release ran",
        describe(ledger)
    );
    assert_eq!(
        (ledger.balance("alice"), ledger.balance("bob")),
        (100, 0),
        "{what}, so no money may move, but {}",
        describe(ledger)
    );
}

hidden_test! {
    /// Nothing fails: the money moves and no hold is left.
    async fn a_transfer_moves_the_money() {
        let ledger = books();
        assert_eq!(transfer(&ledger, &all_clear(), "alice", "bob", 30).await, Ok(()));
        assert_eq!(ledger.balance("alice"), 70, "{}", describe(&ledger));
        assert_eq!(ledger.balance("bob"), 30, "{}", describe(&ledger));
        assert_eq!(ledger.available("alice"), 70, "{}", describe(&ledger));
        assert_eq!(ledger.open_holds(), 0, "{}", describe(&ledger));
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
                match books {
                    (70, 30, 0) => Ok(()),
                    (100, 0, 0) if !completed => Ok(()),
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
