//! # Kata 11 solution: wait first, then move the money in one step
//!
//! A transfer does all of its waiting before it touches a balance. It first reserves a slot in
//! the audit log (`Sender::reserve`), then takes the lock, and only then, with no `.await` left,
//! checks, debits, credits and writes the audit entry through the reserved permit. Dropped at
//! either `.await`, a transfer has changed nothing.

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
    /// Cancel safe: dropped while it waits for the audit log or for the lock, a transfer has
    /// changed no balance and logged nothing (it only loses its place in those queues). Once it
    /// holds both, it finishes without another `.await`.
    pub async fn transfer(&self, from: &str, to: &str, amount: u64) -> Result<(), TransferError> {
        // All the waiting comes first. A reserved permit guarantees the audit entry can be
        // written later without waiting; dropping it (on cancellation or a refusal below)
        // gives the slot back.
        let permit = self.audit.reserve().await.map_err(|_| TransferError::AuditLogDown)?;
        let mut accounts = self.accounts.lock().await;

        // From here on there is no `.await`: the checks, both balance changes and the audit
        // entry happen in one step that nothing can cut in half.
        // The audit log may have gone while this transfer waited for the lock: a permit to a
        // log that is gone writes nowhere, so look again before any money moves.
        if self.audit.is_closed() {
            return Err(TransferError::AuditLogDown);
        }
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
        *accounts.get_mut(to).expect("checked above") += amount;
        // Sent while the lock is held, so the log's order is the order of the balance changes.
        permit.send(AuditEntry { from: from.to_string(), to: to.to_string(), amount });
        Ok(())
    }
}
