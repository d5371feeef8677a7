//! Decoy for kata 16: the credit leg deposits early and a guard takes it back; the deposit is spendable before the risk engine answers.
//!
//! Category: adversarial.
//! Fix: saga style: both legs still act at once under `try_join!`; the debit leg's hold is
//! guarded (released on drop), and the credit leg deposits at 1 ms and returns a guard that takes
//! the deposit back (place a hold on bob and capture it, all synchronous) if the transfer does
//! not commit, including when the leg's output is dropped by `try_join!` or the caller.
//! Misbehaves: the deposit is visible and spendable for up to 9 ms before the risk engine has
//! spoken. If bob spends it in the meantime (another transfer bob -> carol, or a card payment),
//! the compensation finds nothing to take back, `place_hold` fails, and the guard silently gives up
//! (Drop cannot report): alice keeps her 100, bob's spending stands, money created. Undo is not
//! the same as never having done it. The hidden tests run one transfer on a private ledger, so
//! nothing ever spends the provisional deposit.
//! Scenario (paused clock): alice 100, bob 0, carol 0; transfer alice->bob 30 with risk declining
//! at 10 ms; at 5 ms bob sends carol 30 (checks instant): alice 100, bob 0, carol 30, total 130.
//! Passes the hidden tests as they stand. Shown wrong by a deterministic test:
//! `compensation_cannot_take_back_a_spent_deposit`: (solution total 100, bob's spend refused; this fix total 130)
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

/// Why a transfer did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferError {
    /// The sender's available balance (balance minus holds) is below the amount.
    InsufficientFunds,
    /// No such account.
    UnknownAccount,
    /// The risk engine refused to let the money leave the sender.
    Declined,
    /// Compliance froze the recipient's account.
    RecipientFrozen,
}

/// Money reserved on an account by [`Ledger::place_hold`]: it still counts in the balance, but
/// it is no longer available. Every hold must end in [`Ledger::capture`] or [`Ledger::release`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct HoldId(u64);

#[derive(Debug, Default)]
struct Account {
    balance: u64,
    held: u64,
}

#[derive(Debug, Default)]
struct Books {
    accounts: HashMap<String, Account>,
    holds: HashMap<u64, (String, u64)>,
    next_hold: u64,
}

/// The account books. Every method is a short synchronous update under a lock.
#[derive(Debug, Default)]
pub struct Ledger {
    books: Mutex<Books>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Ledger::default()
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().expect("ledger lock")
    }

    /// Opens `account` with an opening balance.
    pub fn open(&self, account: &str, balance: u64) {
        self.books().accounts.insert(account.to_owned(), Account { balance, held: 0 });
    }

    /// The account's balance, holds included (0 for an unknown account).
    pub fn balance(&self, account: &str) -> u64 {
        self.books().accounts.get(account).map_or(0, |a| a.balance)
    }

    /// What the account can spend: its balance minus its holds.
    pub fn available(&self, account: &str) -> u64 {
        self.books().accounts.get(account).map_or(0, |a| a.balance - a.held)
    }

    /// Holds placed and neither captured nor released.
    pub fn open_holds(&self) -> usize {
        self.books().holds.len()
    }

    /// All the money in the ledger: a transfer must never change it.
    pub fn total(&self) -> u64 {
        self.books().accounts.values().map(|a| a.balance).sum()
    }

    /// Reserves `amount` on `account`, if it is available.
    pub fn place_hold(&self, account: &str, amount: u64) -> Result<HoldId, TransferError> {
        let mut books = self.books();
        let entry = books.accounts.get_mut(account).ok_or(TransferError::UnknownAccount)?;
        if entry.balance - entry.held < amount {
            return Err(TransferError::InsufficientFunds);
        }
        entry.held += amount;
        let id = books.next_hold;
        books.next_hold += 1;
        books.holds.insert(id, (account.to_owned(), amount));
        Ok(HoldId(id))
    }

    /// Takes the held money out of the account for good.
    pub fn capture(&self, hold: HoldId) {
        let mut books = self.books();
        let (account, amount) = books.holds.remove(&hold.0).expect("a hold is ended once");
        let entry = books.accounts.get_mut(&account).expect("held account");
        entry.held -= amount;
        entry.balance -= amount;
    }

    /// Gives the held money back to the account's available balance.
    pub fn release(&self, hold: HoldId) {
        let mut books = self.books();
        let (account, amount) = books.holds.remove(&hold.0).expect("a hold is ended once");
        books.accounts.get_mut(&account).expect("held account").held -= amount;
    }

    /// Adds `amount` to `account`.
    pub fn deposit(&self, account: &str, amount: u64) {
        self.books().accounts.entry(account.to_owned()).or_default().balance += amount;
    }
}

/// The outside services a transfer must ask first. Neither changes any balance.
pub trait Checks {
    /// The risk engine: may `amount` leave `from`? `Err(Declined)` if not.
    fn approve_debit(
        &self,
        from: &str,
        amount: u64,
    ) -> impl Future<Output = Result<(), TransferError>>;

    /// Compliance: may `to` receive money? `Err(RecipientFrozen)` if not.
    fn screen_recipient(&self, to: &str) -> impl Future<Output = Result<(), TransferError>>;
}


/// Owns a hold: releases it when dropped, unless it was captured.
struct HoldGuard<'a> {
    ledger: &'a Ledger,
    hold: Option<HoldId>,
}

impl HoldGuard<'_> {
    fn capture(mut self) {
        if let Some(hold) = self.hold.take() {
            self.ledger.capture(hold);
        }
    }
}

impl Drop for HoldGuard<'_> {
    fn drop(&mut self) {
        if let Some(hold) = self.hold.take() {
            self.ledger.release(hold);
        }
    }
}

/// A deposit made early; taken back (by holding and capturing it on the recipient) when dropped
/// unless the transfer committed.
struct ProvisionalCredit<'a> {
    ledger: &'a Ledger,
    to: &'a str,
    amount: u64,
    committed: bool,
}

impl Drop for ProvisionalCredit<'_> {
    fn drop(&mut self) {
        if !self.committed {
            if let Ok(hold) = self.ledger.place_hold(self.to, self.amount) {
                self.ledger.capture(hold);
            }
        }
    }
}

pub async fn transfer(
    ledger: &Ledger,
    checks: &impl Checks,
    from: &str,
    to: &str,
    amount: u64,
) -> Result<(), TransferError> {
    // Both legs run at once as before, but each can be undone synchronously: the hold by
    // releasing it, the deposit by taking it back.
    let debit = async {
        let hold = HoldGuard { ledger, hold: Some(ledger.place_hold(from, amount)?) };
        checks.approve_debit(from, amount).await?;
        Ok::<_, TransferError>(hold)
    };
    let credit = async {
        checks.screen_recipient(to).await?;
        ledger.deposit(to, amount);
        Ok::<_, TransferError>(ProvisionalCredit { ledger, to, amount, committed: false })
    };
    let (hold, mut credit) = tokio::try_join!(debit, credit)?;
    hold.capture();
    credit.committed = true;
    Ok(())
}
