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

/// Whether the value of an expression is `Send`, told at run time: `is_send!(future)` is `true`
/// when the type is `Send` and `false` when it is not, where a `Send` bound would stop the hidden
/// tests from compiling. A test can then fail with a sentence about what the learner's future
/// holds across an `.await`, instead of the learner meeting a trait-bound error in a file they
/// cannot read. The value is only borrowed.
///
/// It works by method lookup (autoref specialization): [`send_probe::SendProbe`] is implemented
/// for `Probe<F>` only when `F: Send` and is found first; [`send_probe::AnyProbe`] on
/// `&Probe<F>` is the fallback. So it must be a macro, expanded where the type is concrete.
#[macro_export]
macro_rules! is_send {
    ($value:expr) => {{
        #[allow(unused_imports)]
        use $crate::probe::send_probe::{AnyProbe as _, SendProbe as _};
        (&$crate::probe::send_probe::Probe::of(&$value)).is_send()
    }};
}

/// The two traits and the marker [`is_send!`](crate::is_send) expands to; not for direct use.
#[doc(hidden)]
pub mod send_probe {
    use std::marker::PhantomData;

    /// A zero-sized stand-in for a value of type `F`.
    pub struct Probe<F>(PhantomData<F>);

    impl<F> Probe<F> {
        /// The probe for `value`'s type.
        pub fn of(_value: &F) -> Self {
            Probe(PhantomData)
        }
    }

    /// Found first, and only when `F: Send`.
    pub trait SendProbe {
        /// `true`: the type is `Send`.
        fn is_send(&self) -> bool {
            true
        }
    }

    impl<F: Send> SendProbe for Probe<F> {}

    /// The fallback for every type.
    pub trait AnyProbe {
        /// `false`: the type is not `Send`.
        fn is_send(&self) -> bool {
            false
        }
    }

    impl<F> AnyProbe for &Probe<F> {}
}

/// Whether the value of an expression is `Debug`, told at run time, as [`is_send!`](crate::is_send)
/// tells `Send`: `is_debug!(server)` is `true` when the type is `Debug` and `false` when it is not.
/// A kata whose README counts the traits of its public types as part of the API checks them with
/// it, so that a fix which drops a `#[derive(Debug)]` fails a test with a sentence instead of
/// failing to build the hidden tests. The value is only borrowed.
#[macro_export]
macro_rules! is_debug {
    ($value:expr) => {{
        #[allow(unused_imports)]
        use $crate::probe::debug_probe::{AnyProbe as _, DebugProbe as _};
        (&$crate::probe::debug_probe::Probe::of(&$value)).is_debug()
    }};
}

/// The two traits and the marker [`is_debug!`](crate::is_debug) expands to; not for direct use.
#[doc(hidden)]
pub mod debug_probe {
    use std::marker::PhantomData;

    /// A zero-sized stand-in for a value of type `T`.
    pub struct Probe<T>(PhantomData<T>);

    impl<T> Probe<T> {
        /// The probe for `value`'s type.
        pub fn of(_value: &T) -> Self {
            Probe(PhantomData)
        }
    }

    /// Found first, and only when `T: Debug`.
    pub trait DebugProbe {
        /// `true`: the type is `Debug`.
        fn is_debug(&self) -> bool {
            true
        }
    }

    impl<T: std::fmt::Debug> DebugProbe for Probe<T> {}

    /// The fallback for every type.
    pub trait AnyProbe {
        /// `false`: the type is not `Debug`.
        fn is_debug(&self) -> bool {
            false
        }
    }

    impl<T> AnyProbe for &Probe<T> {}
}

#[cfg(test)]
mod debug_probe_tests {
    #[test]
    fn tells_a_debug_type_from_one_that_is_not() {
        struct Plain;
        #[derive(Debug)]
        struct Shown;
        assert!(crate::is_debug!(Shown));
        assert!(!crate::is_debug!(Plain));
    }
}
