//! Probes a hidden test plants in the code under test: drop flags and gates.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Semaphore;

/// Set when the value it guards is dropped; move the flag into a future to learn whether the
/// future was dropped (cancelled) or ran to completion.
#[derive(Debug)]
pub struct DropFlag {
    dropped: Arc<AtomicBool>,
}

/// The test's side of a [`DropFlag`].
#[derive(Debug, Clone)]
pub struct DropProbe {
    dropped: Arc<AtomicBool>,
}

impl DropFlag {
    /// A flag and the probe that watches it.
    pub fn new() -> (DropFlag, DropProbe) {
        let dropped = Arc::new(AtomicBool::new(false));
        (DropFlag { dropped: dropped.clone() }, DropProbe { dropped })
    }
}

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

impl DropProbe {
    /// True once the flag has been dropped.
    pub fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::SeqCst)
    }
}

/// A gate the test opens: code awaiting [`Gate::pass`] stays pending until [`Gate::open`].
#[derive(Debug, Clone)]
pub struct Gate {
    permits: Arc<Semaphore>,
}

impl Gate {
    /// A closed gate.
    pub fn closed() -> Self {
        Gate { permits: Arc::new(Semaphore::new(0)) }
    }

    /// Lets every current and future waiter through.
    pub fn open(&self) {
        self.permits.close();
    }

    /// Lets exactly one waiter through.
    pub fn admit_one(&self) {
        self.permits.add_permits(1);
    }

    /// Waits until the gate admits this caller.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped wait consumes no admission.
    pub async fn pass(&self) {
        if let Ok(permit) = self.permits.acquire().await {
            permit.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_flag_reports_the_drop() {
        let (flag, probe) = DropFlag::new();
        assert!(!probe.is_dropped());
        drop(flag);
        assert!(probe.is_dropped());
    }

    #[tokio::test]
    async fn a_closed_gate_holds_until_opened() {
        let gate = Gate::closed();
        let mut waiter = tokio_test::task::spawn(gate.pass());
        tokio_test::assert_pending!(waiter.poll());
        gate.admit_one();
        assert!(waiter.is_woken());
        tokio_test::assert_ready!(waiter.poll());
    }
}
