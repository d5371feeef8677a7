//! Decoy for kata 16: debit first, then credit, refunding the sender if the credit fails.
//!
//! A payments service moves money between customer accounts. The balances live in a [`Ledger`];
//! before money moves, two outside services have their say ([`Checks`]): the risk engine
//! approves money leaving the sender, and compliance screens the recipient (frozen accounts may
//! not receive anything).
//!
//! [`transfer`] runs the two legs of a transfer at the same time, to keep latency down:
//!
//! ```text
//! debit:  place a hold on the sender ─ risk approves (10 ms) ─ capture the hold
//! credit: compliance screens the recipient (1 ms) ─ deposit
//! tokio::try_join!(debit, credit)
//! ```
//!
//! Each leg cleans up after itself when *it* fails. But `try_join!` returns as soon as one leg
//! fails, and it drops the other leg wherever that leg happens to be waiting. Code after a
//! dropped leg's `.await`, its cleanup included, never runs. Read `README.md` for the story.

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

/// Moves `amount` from `from` to `to`, if the risk engine and compliance agree.
///
/// # Cancel safety
///
/// Believed cancel safe by its author.
pub async fn transfer(
    ledger: &Ledger,
    checks: &impl Checks,
    from: &str,
    to: &str,
    amount: u64,
) -> Result<(), TransferError> {
    // One leg after the other, so nothing is dropped half-way; undo the debit if the credit fails.
    let hold = ledger.place_hold(from, amount)?;
    match checks.approve_debit(from, amount).await {
        Ok(()) => ledger.capture(hold),
        Err(declined) => {
            ledger.release(hold);
            return Err(declined);
        }
    }
    match checks.screen_recipient(to).await {
        Ok(()) => {
            ledger.deposit(to, amount);
            Ok(())
        }
        Err(frozen) => {
            // Roll back: give the sender its money back.
            ledger.deposit(from, amount);
            Err(frozen)
        }
    }
}
