//! Decoy for kata 11: computes both new balances under the lock, lets the lock go while it reserves
//! an audit slot, then locks again and writes the balances it computed.
//!
//! A single transfer is cancel safe: nothing is written before the last `.await`. But the balances
//! written were read before the wait. Two transfers from the same account that wait for a busy
//! audit log both start from the same balance, and the second overwrites the first: a debit is
//! lost and money appears, while the audit log records both transfers.

use std::collections::HashMap;

use tokio::sync::{Mutex, mpsc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub from: String,
    pub to: String,
    pub amount: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferError {
    UnknownAccount(String),
    InsufficientFunds { available: u64 },
    AuditLogDown,
}

#[derive(Debug)]
pub struct Bank {
    accounts: Mutex<HashMap<String, u64>>,
    audit: mpsc::Sender<AuditEntry>,
}

fn check(
    accounts: &HashMap<String, u64>,
    from: &str,
    to: &str,
    amount: u64,
) -> Result<u64, TransferError> {
    if !accounts.contains_key(to) {
        return Err(TransferError::UnknownAccount(to.to_string()));
    }
    let balance =
        *accounts.get(from).ok_or_else(|| TransferError::UnknownAccount(from.to_string()))?;
    if balance < amount {
        return Err(TransferError::InsufficientFunds { available: balance });
    }
    Ok(balance)
}

impl Bank {
    pub fn new(accounts: &[(&str, u64)], audit: mpsc::Sender<AuditEntry>) -> Self {
        let accounts = accounts.iter().map(|(name, cents)| (name.to_string(), *cents)).collect();
        Bank { accounts: Mutex::new(accounts), audit }
    }

    pub async fn balance(&self, account: &str) -> Option<u64> {
        self.accounts.lock().await.get(account).copied()
    }

    pub async fn transfer(&self, from: &str, to: &str, amount: u64) -> Result<(), TransferError> {
        // Check and compute the new balances while holding the lock, then let it go while the
        // audit log is busy.
        let (new_from, new_to) = {
            let accounts = self.accounts.lock().await;
            let from_balance = check(&accounts, from, to, amount)?;
            (from_balance - amount, accounts[to] + amount)
        };
        let permit = self.audit.reserve().await.map_err(|_| TransferError::AuditLogDown)?;
        // Apply: no `.await` between the two changes and the audit entry.
        let mut accounts = self.accounts.lock().await;
        accounts.insert(from.to_string(), new_from);
        accounts.insert(to.to_string(), new_to);
        permit.send(AuditEntry { from: from.to_string(), to: to.to_string(), amount });
        Ok(())
    }
}
