//! Decoy for kata 16: the debit leg captures as soon as the risk engine approves; wrong when compliance is the slower check and refuses.
//!
//! WRONG: guards the hold, moves the deposit after `try_join!`, but still captures the hold
//! inside the debit leg as soon as the risk engine approves. Correct only while compliance
//! answers before the risk engine (1 ms vs 10 ms in the story); `transfer` is generic over
//! `Checks`, and the README promises "however it ends".
//!
//! Scenario: a compliance service that answers at 20 ms (slower than risk at 10 ms) and refuses
//! bob: at 10 ms the debit leg captures 30 from alice, at 20 ms compliance refuses, `try_join!`
//! returns RecipientFrozen. Alice lost 30, bob got nothing (total 70). Same if the caller drops
//! the transfer between 10 ms and 20 ms. Right: nothing moves (total 100).
//! Proven by /tmp/r4p/scratch/tests/t16.rs (test `capture_in_leg_slow_compliance`).

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


struct PendingHold<'a> {
    ledger: &'a Ledger,
    hold: Option<HoldId>,
}

impl PendingHold<'_> {
    fn capture(mut self) {
        if let Some(hold) = self.hold.take() {
            self.ledger.capture(hold);
        }
    }
}

impl Drop for PendingHold<'_> {
    fn drop(&mut self) {
        if let Some(hold) = self.hold.take() {
            self.ledger.release(hold);
        }
    }
}


/// Moves `amount` from `from` to `to`, if the risk engine and compliance agree.
pub async fn transfer(
    ledger: &Ledger,
    checks: &impl Checks,
    from: &str,
    to: &str,
    amount: u64,
) -> Result<(), TransferError> {
    let debit = async {
        let hold = PendingHold { ledger, hold: Some(ledger.place_hold(from, amount)?) };
        checks.approve_debit(from, amount).await?;
        hold.capture();
        Ok::<(), TransferError>(())
    };
    tokio::try_join!(debit, checks.screen_recipient(to))?;
    ledger.deposit(to, amount);
    Ok(())
}
