//! Decoy for kata 16: funds checked up front, nothing reserved, `expect` at the commit; a second concurrent transfer panics.
//!
//! WRONG: "nothing changes before the commit": probes the funds up front (place a hold and
//! release it at once, to fail fast on InsufficientFunds/UnknownAccount), runs both checks, then
//! commits with `place_hold(..).expect("funds were checked")`. Nothing is reserved while the
//! checks run, so the funds can be gone by the commit.
//!
//! Scenario: alice 100; two concurrent transfers alice->bob 80 and alice->carol 80. Both pass
//! the probe at t=0, both checks pass at 10 ms; the first commits, the second panics in
//! `expect` instead of returning InsufficientFunds (the books stay consistent, but the request
//! dies with a panic). Right: the second returns Err(InsufficientFunds). (With `?` instead of
//! `expect` this design would be correct.) Proven by /tmp/r4p/scratch/tests/t16.rs (test `precheck_concurrent`).

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
pub async fn transfer(
    ledger: &Ledger,
    checks: &impl Checks,
    from: &str,
    to: &str,
    amount: u64,
) -> Result<(), TransferError> {
    // Fail fast: is the money there at all?
    ledger.release(ledger.place_hold(from, amount)?);
    tokio::try_join!(checks.approve_debit(from, amount), checks.screen_recipient(to))?;
    // Commit: no await from here on.
    let hold = ledger.place_hold(from, amount).expect("funds were checked before the checks");
    ledger.capture(hold);
    ledger.deposit(to, amount);
    Ok(())
}
