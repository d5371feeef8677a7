//! The runtimes the explorer's tests run on: seeded, paused, and watched.
//!
//! - **Seeded.** `tokio::select!` picks among ready branches with the runtime's RNG, which tokio
//!   seeds at random unless `Builder::rng_seed` is given (an unstable API: build with
//!   `--cfg tokio_unstable`). Every runtime built here gets a seed, so a result never depends on
//!   luck; running a test body once per seed of [`SEEDS`] finds code that only works for one
//!   branch order.
//! - **Paused.** The clock only moves when every task is idle, so timers fire in virtual time.
//! - **Watched.** Task hooks (also `tokio_unstable`) record which tasks an operation spawned, so the
//!   explorer can tell that a cancelled operation left work running ([`Watch::leftover_tasks`]), and
//!   which threads belong to the blocking pool, so a test can tell that blocking work ran on the
//!   runtime's own thread ([`on_async_thread`]).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::panic::Location;
use std::sync::{Arc, Mutex};

use tokio::runtime::{
    Builder, Handle, LocalOptions, LocalRuntime, RngSeed, Runtime, RuntimeFlavor,
};
use tokio::task::Id;

#[cfg(not(tokio_unstable))]
compile_error!(
    "cancel-explorer needs `--cfg tokio_unstable` (for seeded `select!` order and task hooks): add \
     `[build] rustflags = [\"--cfg\", \"tokio_unstable\"]` to your .cargo/config.toml"
);

/// Eight fixed `select!` seeds, in the order to try them: enough that code which holds for only
/// one branch order at some race meets the other order, few enough that a test body of a few
/// milliseconds run once per seed stays fast.
pub const SEEDS: [u64; 8] = [1, 2, 3, 5, 8, 13, 21, 34];

/// A current-thread runtime with the clock paused, seeded with `seed` and watched.
///
/// # Panics
///
/// If tokio cannot build the runtime (out of file descriptors, say).
pub fn current_thread(seed: u64) -> Runtime {
    let mut builder = Builder::new_current_thread();
    builder.enable_all().start_paused(true);
    build(&mut builder, seed)
}

/// A runtime with `workers` worker threads and the real clock, seeded and watched. Only for tests
/// about real parallelism; scheduling across threads is not deterministic, so the explorer's
/// leftover-task check ([`crate::Options::forbid_leftover_tasks`]) refuses to run on it.
///
/// # Panics
///
/// If tokio cannot build the runtime.
pub fn multi_thread(workers: usize, seed: u64) -> Runtime {
    let mut builder = Builder::new_multi_thread();
    builder.worker_threads(workers).enable_all();
    build(&mut builder, seed)
}

/// A current-thread runtime like [`current_thread`] that can also run `!Send` tasks
/// (`spawn_local`): the explorer parks futures in one to cut them at runtime shutdown.
///
/// # Panics
///
/// If tokio cannot build the runtime.
pub fn local(seed: u64) -> LocalRuntime {
    let mut builder = Builder::new_current_thread();
    builder.enable_all().start_paused(true);
    let watch = configure(&mut builder, seed);
    let runtime =
        builder.build_local(LocalOptions::default()).expect("failed to build the test runtime");
    register(runtime.handle(), watch);
    runtime
}

fn build(builder: &mut Builder, seed: u64) -> Runtime {
    let watch = configure(builder, seed);
    let runtime = builder.build().expect("failed to build the test runtime");
    register(runtime.handle(), watch);
    runtime
}

fn configure(builder: &mut Builder, seed: u64) -> Arc<Mutex<Registry>> {
    let watch = Arc::new(Mutex::new(Registry::default()));
    let (on_spawn, on_end) = (watch.clone(), watch.clone());
    builder
        .rng_seed(RngSeed::from_bytes(&seed.to_le_bytes()))
        .on_thread_start(|| BLOCKING_POOL.with(|b| b.set(true)))
        .on_task_spawn(move |meta| {
            let parent = CURRENT_TASK.with(Cell::get);
            let mut reg = on_spawn.lock().expect("task registry");
            let owned =
                IN_OPERATION.with(Cell::get) || parent.is_some_and(|p| reg.owned.contains_key(&p));
            if owned {
                reg.owned.insert(meta.id(), meta.spawned_at());
            }
        })
        .on_before_task_poll(|meta| {
            CURRENT_TASK.with(|c| c.set(Some(meta.id())));
            crate::trace::enter_task();
        })
        .on_after_task_poll(|_| {
            crate::trace::leave_task();
            CURRENT_TASK.with(|c| c.set(None));
        })
        .on_task_terminate(move |meta| {
            on_end.lock().expect("task registry").owned.remove(&meta.id());
        });
    watch
}

fn register(handle: &Handle, watch: Arc<Mutex<Registry>>) {
    WATCHES.with(|w| w.borrow_mut().insert(handle.id().to_string(), watch));
}

thread_local! {
    /// True on tokio's blocking-pool threads (the only threads a current-thread runtime starts).
    static BLOCKING_POOL: Cell<bool> = const { Cell::new(false) };
    /// The task being polled on this thread, if any.
    static CURRENT_TASK: Cell<Option<Id>> = const { Cell::new(None) };
    /// True while the explorer polls the operation under test on this thread.
    static IN_OPERATION: Cell<bool> = const { Cell::new(false) };
    /// The registries of the runtimes built on this thread, by runtime id.
    static WATCHES: RefCell<BTreeMap<String, Arc<Mutex<Registry>>>> = const { RefCell::new(BTreeMap::new()) };
}

#[derive(Default)]
struct Registry {
    /// Live tasks spawned by the watched operation, or by a task it spawned, with where.
    owned: BTreeMap<Id, &'static Location<'static>>,
}

/// True when the calling code runs on an async worker: inside a runtime, but not on one of tokio's
/// blocking-pool threads. Blocking work (a `std::thread::sleep`, a long computation) belongs on the
/// blocking pool (`spawn_blocking`) or its own thread; run here, it stalls every task of a
/// current-thread runtime. Meaningful on runtimes built by this module.
pub fn on_async_thread() -> bool {
    Handle::try_current().is_ok() && !BLOCKING_POOL.with(Cell::get)
}

/// True when the caller runs on a current-thread runtime (a `local` one included).
pub(crate) fn on_current_thread_runtime() -> bool {
    Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::CurrentThread)
}

/// The task tracking of the runtime the caller runs on, when it was built by this module.
pub(crate) fn watch() -> Option<Watch> {
    let id = Handle::try_current().ok()?.id().to_string();
    WATCHES.with(|w| w.borrow().get(&id).cloned()).map(|registry| Watch { registry })
}

/// The tasks an operation spawned while the explorer polled it.
#[derive(Clone)]
pub(crate) struct Watch {
    registry: Arc<Mutex<Registry>>,
}

impl Watch {
    /// Runs `poll` (a poll of the operation under test, or its drop) with spawns attributed to
    /// the operation.
    pub(crate) fn polling<R>(&self, poll: impl FnOnce() -> R) -> R {
        IN_OPERATION.with(|f| f.set(true));
        let result = poll();
        IN_OPERATION.with(|f| f.set(false));
        result
    }

    /// Forgets every task recorded so far (a new run starts).
    pub(crate) fn reset(&self) {
        self.registry.lock().expect("task registry").owned.clear();
    }

    /// Where the still-running tasks of the operation were spawned, oldest first.
    pub(crate) fn leftover_tasks(&self) -> Vec<&'static Location<'static>> {
        self.registry.lock().expect("task registry").owned.values().copied().collect()
    }
}
