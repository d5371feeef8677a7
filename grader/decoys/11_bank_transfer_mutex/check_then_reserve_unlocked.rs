//! Decoy for kata 11: checks the funds under the lock, lets the lock go while it reserves an audit
//! slot, then locks again and moves the money without checking again.
//!
//! Nothing changes before the last `.await`, so a single transfer is cancel safe. But the check
//! and the debit are no longer one step: two transfers from the same account that both wait for a
//! busy audit log both pass the check, and the second debit overdraws the account (a panic on the
//! subtraction in a debug build, money from nowhere in a release build).

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
    pub async fn transfer(&self, from: &str, to: &str, amount: u64) -> Result<(), TransferError> {
        // Validate first, without holding the lock across the (possibly long) audit wait.
        {
            let accounts = self.accounts.lock().await;
            if !accounts.contains_key(to) {
                return Err(TransferError::UnknownAccount(to.to_string()));
            }
            let balance = *accounts
                .get(from)
                .ok_or_else(|| TransferError::UnknownAccount(from.to_string()))?;
            if balance < amount {
                return Err(TransferError::InsufficientFunds { available: balance });
            }
        }
        let permit = self.audit.reserve().await.map_err(|_| TransferError::AuditLogDown)?;
        let mut accounts = self.accounts.lock().await;
        *accounts.get_mut(from).expect("checked above") -= amount;
        *accounts.get_mut(to).expect("checked above") += amount;
        permit.send(AuditEntry { from: from.to_string(), to: to.to_string(), amount });
        Ok(())
    }
}
