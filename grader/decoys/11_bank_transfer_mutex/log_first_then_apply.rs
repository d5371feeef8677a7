//! Decoy for kata 11: a "write-ahead" transfer that checks the funds, lets the lock go, sends the
//! audit entry, then locks again, checks again and applies the transfer.
//!
//! Cut anywhere, a single transfer logs nothing and moves nothing, so it looks cancel safe. But
//! the entry is logged before the money is known to move: two transfers from the same account that
//! wait for a busy audit log are both logged, and the second is then refused. The audit log holds
//! a transfer that never happened.

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
        // Write-ahead: the audit entry goes out before any balance changes.
        let entry = AuditEntry { from: from.to_string(), to: to.to_string(), amount };
        self.audit.send(entry).await.map_err(|_| TransferError::AuditLogDown)?;

        let mut accounts = self.accounts.lock().await;
        let balance = accounts.get_mut(from).expect("checked above");
        if *balance < amount {
            return Err(TransferError::InsufficientFunds { available: *balance });
        }
        *balance -= amount;
        *accounts.get_mut(to).expect("checked above") += amount;
        Ok(())
    }
}
