//! Decoy for kata 11: releases the lock while it waits for the audit log, then locks again to credit.
//!
//! A small bank's ledger service keeps its balances in memory behind a `tokio::sync::Mutex`, and
//! every transfer must appear in the audit log, an `mpsc` channel drained by a task that writes
//! to the compliance store. To keep the audit log in the same order as the balance changes, the
//! transfer sends its audit entry while it still holds the lock:
//!
//! ```text
//! let mut accounts = self.accounts.lock().await;
//! debit `from`;
//! self.audit.send(entry).await?;   // the audit log may be busy: this can wait
//! credit `to`;
//! ```
//!
//! The HTTP layer wraps every request in a `timeout`, and a client can hang up at any time; both
//! drop the `transfer` future wherever it is waiting. Read `README.md` for what that costs.

use std::collections::HashMap;

use tokio::sync::{Mutex, mpsc};

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// The account debited.
    pub from: String,
    /// The account credited.
    pub to: String,
    /// The amount moved, in cents.
    pub amount: u64,
}

/// Why a transfer was refused. A refused transfer changes no balance and logs nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferError {
    /// No account has this name.
    UnknownAccount(String),
    /// The `from` account holds less than the amount.
    InsufficientFunds {
        /// What the account holds, in cents.
        available: u64,
    },
    /// The audit log is gone (its receiver was dropped): no money may move unaudited.
    AuditLogDown,
}

/// The ledger: balances in cents, and the audit log every transfer is written to.
#[derive(Debug)]
pub struct Bank {
    accounts: Mutex<HashMap<String, u64>>,
    audit: mpsc::Sender<AuditEntry>,
}

impl Bank {
    /// A bank with these accounts and opening balances (in cents), auditing into `audit`.
    pub fn new(accounts: &[(&str, u64)], audit: mpsc::Sender<AuditEntry>) -> Self {
        let accounts = accounts.iter().map(|(name, cents)| (name.to_string(), *cents)).collect();
        Bank { accounts: Mutex::new(accounts), audit }
    }

    /// The balance of `account` in cents, or `None` if there is no such account.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads. Dropped while waiting for the lock, it gives up its place in
    /// the lock's queue and nothing else.
    pub async fn balance(&self, account: &str) -> Option<u64> {
        self.accounts.lock().await.get(account).copied()
    }

    /// Moves `amount` cents from `from` to `to` and writes the transfer to the audit log.
    ///
    /// Waits when the audit log is busy (its channel is full).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if the future is dropped while it waits for the audit log, `from` has been
    /// debited, `to` is never credited, and nothing is logged. The money is simply gone.
    pub async fn transfer(&self, from: &str, to: &str, amount: u64) -> Result<(), TransferError> {
        let mut accounts = self.accounts.lock().await;
        if !accounts.contains_key(to) {
            return Err(TransferError::UnknownAccount(to.to_string()));
        }
        let balance = accounts
            .get_mut(from)
            .ok_or_else(|| TransferError::UnknownAccount(from.to_string()))?;
        if *balance < amount {
            return Err(TransferError::InsufficientFunds { available: *balance });
        }
        *balance -= amount;
        // Never hold the lock across an `.await`: release it while the audit log is busy.
        drop(accounts);
        let entry = AuditEntry { from: from.to_string(), to: to.to_string(), amount };
        self.audit.send(entry).await.map_err(|_| TransferError::AuditLogDown)?;
        let mut accounts = self.accounts.lock().await;
        *accounts.get_mut(to).expect("checked above") += amount;
        Ok(())
    }
}
