//! Hidden tests for kata 28: a GPU whose lease was dropped comes back to the pool, reset, however
//! the lease was dropped: inside a running runtime, by a runtime shutting down, or after the
//! runtime is gone; and dropping a lease never panics.

use std::panic::AssertUnwindSafe;
use std::sync::{Mutex, Once};
use std::time::Duration;

use gpu_lease_spawned_cleanup::{
    DeviceError, DeviceServer, GpuPool, LOAD_TIME, PROVE_TIME, Proof, RESET_TIME,
};
use kata_support::runtime::{self, SEEDS};
use kata_support::{Outcome, assert_cancel_safe, assert_cancel_safe_at_shutdown, hidden_test};
use tokio::time::{sleep, timeout};

/// How long a job may wait for a GPU before the test calls it lost (virtual time). A GPU comes
/// back within a reset (200 ms) of the job before it ending, or a proof (350 ms with its reset and
/// upload) when every GPU is busy.
const PATIENCE: Duration = Duration::from_secs(2);

/// A pool of `gpus` GPUs on a fresh device server. Each case of a test starts here, so this is
/// also where the record of the case's first panic starts over.
fn fresh_pool(gpus: usize) -> (GpuPool, DeviceServer) {
    record_the_first_panic();
    let server = DeviceServer::new(gpus);
    (GpuPool::new(server.clone()), server)
}

/// What the device server's GPUs hold, for messages: `gpu0: "batch-1", gpu1: free`.
fn memory(server: &DeviceServer) -> String {
    let gpus: Vec<String> = server
        .gpus()
        .into_iter()
        .map(|gpu| match server.resident(gpu) {
            Some(program) => format!("{gpu} holds `{program}`"),
            None => format!("{gpu} is free"),
        })
        .collect();
    gpus.join(", ")
}

/// How a job of the tests takes its GPU: through `prove`, or through `acquire`, uploading its key
/// itself (a job of the service that drives the device server directly).
#[derive(Debug, Clone, Copy)]
enum Job {
    Prove,
    Lease,
}

impl Job {
    /// The job, as a learner reads it in a message.
    fn call(self, program: &str) -> String {
        match self {
            Job::Prove => format!("`prove({program:?})`"),
            Job::Lease => format!("a job for `{program}` that called `acquire()`"),
        }
    }
}

/// Runs one job within [`PATIENCE`], and says what went wrong otherwise.
async fn job_within_patience(
    pool: &GpuPool,
    server: &DeviceServer,
    job: Job,
    program: &str,
) -> Result<Proof, String> {
    let call = job.call(program);
    let proved = match job {
        Job::Prove => timeout(PATIENCE, pool.prove(program)).await,
        Job::Lease => {
            timeout(PATIENCE, async {
                let lease = pool.acquire().await;
                let gpu = lease.gpu();
                if let Some(resident) = server.resident(gpu) {
                    return Err(DeviceError::OutOfMemory { gpu, resident });
                }
                server.load(gpu, program).await?;
                server.prove(gpu, program).await
            })
            .await
        }
    };
    match proved {
        Ok(Ok(proof)) if proof.program == program => Ok(proof),
        Ok(Ok(proof)) => {
            Err(format!("{call} returned a proof of `{}`, not of its own program", proof.program))
        }
        Ok(Err(DeviceError::OutOfMemory { gpu, resident })) => Err(format!(
            "{call} was lent {gpu} with the proving key of `{resident}` still in its memory: a \
             GPU was lent to the next job before it was reset"
        )),
        Ok(Err(e)) => Err(format!("{call} failed: {e}")),
        Err(_) => Err(format!(
            "{call} waited {PATIENCE:?} for a GPU and got none (a reset takes {RESET_TIME:?}); \
             the device server says {}: a GPU did not come back to the pool in that time (the \
             test's clock is paused and moves only with the jobs' runtime)",
            memory(server)
        )),
    }
}

/// Proves `program` on the pool within [`PATIENCE`], and says what went wrong otherwise.
async fn prove_within_patience(
    pool: &GpuPool,
    server: &DeviceServer,
    program: &str,
) -> Result<Proof, String> {
    job_within_patience(pool, server, Job::Prove, program).await
}

/// Runs `jobs` at once, each a task of its own on the current runtime, and says what went wrong
/// with the first that failed. A job that panicked is reported with its own panic message, the
/// first panic before the ones it caused: a panic while the pool's lock is held poisons it, and
/// every later job then panics with a bare `PoisonError`.
async fn jobs_at_once(
    pool: &GpuPool,
    server: &DeviceServer,
    jobs: &[(Job, &str)],
) -> Result<(), String> {
    let tasks: Vec<_> = jobs
        .iter()
        .map(|&(job, program)| {
            let (pool, server, program) = (pool.clone(), server.clone(), program.to_owned());
            tokio::spawn(async move { job_within_patience(&pool, &server, job, &program).await })
        })
        .collect();
    let mut failed = None;
    let mut panics = Vec::new();
    for (&(job, program), task) in jobs.iter().zip(tasks) {
        match task.await {
            Ok(Ok(_)) => {}
            Ok(Err(seen)) => {
                failed.get_or_insert(seen);
            }
            Err(e) => match e.try_into_panic() {
                Ok(payload) => panics.push((job.call(program), panic_text(payload.as_ref()))),
                Err(e) => {
                    failed.get_or_insert(format!(
                        "{} ended without a result: {e}",
                        job.call(program)
                    ));
                }
            },
        }
    }
    // The panics that are not about a poisoned lock came first: they poisoned it.
    panics.sort_by_key(|(_, panic)| panic.contains("PoisonError"));
    if let Some((call, panic)) = panics.first() {
        let mut seen = format!("{call} panicked in your code: {panic}");
        for (call, panic) in &panics[1..] {
            seen.push_str(&format!("; then {call} panicked: {panic}"));
        }
        if panics.iter().any(|(_, panic)| panic.contains("PoisonError")) {
            let first = FIRST_PANIC.lock().unwrap_or_else(|e| e.into_inner()).clone();
            seen.push_str(&match first {
                Some(first) if panic.contains("PoisonError") => format!(
                    " (a `PoisonError` is a lock poisoned by an earlier panic in your code; the \
                     first panic of this case was: {first})"
                ),
                _ => {
                    " (a `PoisonError` is a lock poisoned by an earlier panic in your code)".into()
                }
            });
        }
        return Err(seen);
    }
    failed.map_or(Ok(()), Err)
}

/// The first panic of the current case (message and place), whoever caught it: a panic in a task
/// is caught by its runtime, and only a later `PoisonError` may show.
static FIRST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Forgets the last case's first panic, and records panics from now on (the harness's panic hook
/// still runs first).
fn record_the_first_panic() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            hook(info);
            let message = panic_text(info.payload());
            let at = info.location().map(|l| format!(" (at {l})")).unwrap_or_default();
            let mut first = FIRST_PANIC.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert(format!("{message}{at}"));
        }));
    });
    *FIRST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// `one GPU`, `2 GPUs`: a count for a message.
fn count(n: usize, what: &str) -> String {
    if n == 1 { format!("one {what}") } else { format!("{n} {what}s") }
}

/// `the next job`, `the next 2 jobs at once`: the jobs after a scenario, for a message.
fn next_jobs(n: usize) -> String {
    if n == 1 { "the next job".into() } else { format!("the next {n} jobs at once") }
}

/// The message of a panic's payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// The next two jobs, at once: one through `prove`, one through `acquire`. On a pool of one GPU
/// they take turns, so this is whether the GPU came back, reset, with one permit for it; on two
/// GPUs, whether both came back.
async fn next_two_jobs(pool: &GpuPool, server: &DeviceServer) -> Result<(), String> {
    jobs_at_once(pool, server, &[(Job::Prove, "next-1"), (Job::Lease, "next-2")]).await
}

/// The same, on a runtime of their own: the next call of a blocking client, or the next process
/// of a deploy, after the runtime the lease lived in is gone.
fn next_two_jobs_on_a_new_runtime(pool: &GpuPool, server: &DeviceServer) -> Result<(), String> {
    runtime::current_thread(SEEDS[0]).block_on(next_two_jobs(pool, server))
}

/// Runs `f` with the panic hook silenced, and returns the panic's message if it panicked.
fn quietly(f: impl FnOnce()) -> Result<(), String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.map_err(|payload| panic_text(payload.as_ref()))
}

/// What a worker of the proving service does: two batches in a row, on the same pool.
async fn two_batches(pool: GpuPool) -> Result<Proof, DeviceError> {
    pool.prove("rollup-batch-1").await?;
    pool.prove("rollup-batch-2").await
}

/// The check after a worker's two batches: the second batch's proof if it finished.
fn check_outcome(outcome: Outcome<Result<Proof, DeviceError>>) -> Result<(), String> {
    match outcome {
        Outcome::Completed(Ok(proof)) if proof.program == "rollup-batch-2" => Ok(()),
        Outcome::Completed(Ok(proof)) => {
            Err(format!("the second batch returned a proof of `{}`", proof.program))
        }
        Outcome::Completed(Err(e)) => Err(format!("nothing was cut, yet a batch failed: {e}")),
        Outcome::Cancelled { .. } => Ok(()),
    }
}

hidden_test! {
    /// Nothing dropped part-way, in a running runtime: jobs one after the other, through `prove`
    /// and through `acquire` (a job that uploads its key itself), then three at once on two GPUs
    /// (the third waits for a GPU to come back). Every proof is its own, and every job is lent a
    /// GPU with its memory free.
    async fn proofs_on_a_running_service_each_get_a_reset_gpu() {
        let (pool, server) = fresh_pool(2);
        let one_by_one = [
            (Job::Prove, "batch-1"),
            (Job::Prove, "batch-2"),
            (Job::Lease, "batch-3"),
            (Job::Lease, "batch-4"),
            (Job::Prove, "batch-5"),
        ];
        for job in one_by_one {
            if let Err(seen) = jobs_at_once(&pool, &server, &[job]).await {
                panic!("nothing was cancelled, one job after the other: {seen}");
            }
        }
        let three = [(Job::Prove, "batch-6"), (Job::Lease, "batch-7"), (Job::Prove, "batch-8")];
        if let Err(seen) = jobs_at_once(&pool, &server, &three).await {
            panic!("nothing was cancelled, three jobs at once on two GPUs: {seen}");
        }
    }

    /// In a running runtime, a worker's two batches are dropped after every possible poll (a
    /// request timeout, a `select!` on a cancel signal): waiting for the GPU, uploading the key,
    /// proving, resetting. The GPU comes back, reset, for the next two jobs.
    async fn a_job_cut_anywhere_while_the_runtime_runs_gives_its_gpu_back() {
        assert_cancel_safe(
            || fresh_pool(1),
            |(pool, _)| two_batches(pool),
            |(pool, server), outcome| async move {
                check_outcome(outcome)?;
                next_two_jobs(&pool, &server).await
            },
        )
        .await;
    }

    /// The kata's story: a deploy shuts the runtime down while a worker's batch holds the GPU,
    /// after every possible poll; or the worker's future outlives its runtime and is dropped
    /// after it. Dropping it must not panic, and the next jobs, on a new runtime, get the GPU.
    fn a_job_cut_by_runtime_shutdown_or_dropped_after_it_gives_its_gpu_back() {
        assert_cancel_safe_at_shutdown(
            || fresh_pool(1),
            |(pool, _)| two_batches(pool),
            |(pool, server), outcome| {
                check_outcome(outcome)?;
                next_two_jobs_on_a_new_runtime(&pool, &server)
            },
        );
    }

    /// A blocking client (`prove_blocking`) builds its pool once, outside any runtime, and a
    /// runtime for each call, dropped when the call returns. Nothing is cancelled by anyone, yet
    /// every call ends with a runtime shutdown. Five calls on two GPUs must all get a GPU.
    fn a_blocking_client_with_a_runtime_per_call_never_loses_a_gpu() {
        let (pool, server) = fresh_pool(2);
        for call in 1..=5 {
            let program = format!("block-{call}");
            let rt = runtime::current_thread(SEEDS[call % SEEDS.len()]);
            let seen = rt.block_on(prove_within_patience(&pool, &server, &program));
            if let Err(panic) = quietly(move || drop(rt)) {
                panic!(
                    "call {call} of a blocking client proved `{program}`, and dropping its \
                     runtime when the call returned panicked: {panic}"
                );
            }
            if let Err(seen) = seen {
                panic!(
                    "a blocking client on two GPUs, with a runtime built for each call and \
                     dropped when it returns: call {call}: {seen}. The calls before it had all \
                     returned their proofs, and each dropped its lease while its runtime still \
                     ran, just before that runtime was dropped"
                );
            }
        }
    }

    /// A lease handed out by one blocking call (its runtime dropped when the call returned) is
    /// dropped later, outside any runtime, with a program's key on its GPU. The drop must not
    /// panic (a panic during unwinding aborts the process), and the GPU must come back, reset.
    fn a_lease_dropped_after_its_runtime_is_gone_neither_panics_nor_is_lost() {
        let (pool, server) = fresh_pool(1);
        let rt = runtime::current_thread(SEEDS[0]);
        let lease = rt.block_on(async {
            let lease = pool.acquire().await;
            server.load(lease.gpu(), "rollup-batch-1").await.expect("a free GPU takes a key");
            lease
        });
        drop(rt);
        if let Err(panic) = quietly(move || drop(lease)) {
            panic!(
                "a GpuLease dropped after its runtime was gone panicked: {panic}. A process that \
                 has finished its work dies on the way out (and a panic in a destructor during \
                 unwinding aborts it)"
            );
        }
        if let Err(seen) = next_two_jobs_on_a_new_runtime(&pool, &server) {
            panic!("a GpuLease was dropped outside any runtime; on a new runtime, the next two jobs at once: {seen}");
        }
    }

    /// A deploy at any moment: a worker proves three batches in a row on one GPU, and the runtime
    /// shuts down at every 10 ms of virtual time from its start to past its end, wherever the
    /// worker (or any task it left) is then: uploading, proving, resetting, waiting for the GPU.
    /// After each, the next jobs on a new runtime get the GPU.
    fn a_deploy_at_any_moment_never_loses_the_gpu() {
        let batch = LOAD_TIME + PROVE_TIME + RESET_TIME;
        let span = (batch * 3 + RESET_TIME).as_millis() as u64;
        for (i, at_ms) in (0..=span).step_by(10).enumerate() {
            let (pool, server) = fresh_pool(1);
            let rt = runtime::current_thread(SEEDS[i % SEEDS.len()]);
            let worker = pool.clone();
            rt.spawn(async move {
                for program in ["batch-1", "batch-2", "batch-3"] {
                    let _ = worker.prove(program).await;
                }
            });
            rt.block_on(async { sleep(Duration::from_millis(at_ms)).await });
            if let Err(panic) = quietly(move || drop(rt)) {
                panic!(
                    "a deploy shut the runtime down {at_ms} ms into a worker's three batches, \
                     and the shutdown panicked: {panic}"
                );
            }
            if let Err(seen) = next_two_jobs_on_a_new_runtime(&pool, &server) {
                panic!(
                    "a deploy shut the runtime down {at_ms} ms into a worker's three batches on \
                     one GPU (each takes {batch:?} with its reset); on a new runtime, the next two jobs \
                     at once: {seen}"
                );
            }
        }
    }

    /// A deploy while every GPU is busy: three workers, each proving two batches, share two
    /// GPUs (one of them always waiting for a GPU), and the runtime shuts down at every 10 ms of
    /// virtual time until past the end. After each, two jobs at once on a new runtime must get
    /// both GPUs.
    fn a_deploy_while_every_gpu_is_busy_never_loses_one() {
        let batch = LOAD_TIME + PROVE_TIME + RESET_TIME;
        let span = (batch * 4 + RESET_TIME).as_millis() as u64;
        for (i, at_ms) in (0..=span).step_by(10).enumerate() {
            let (pool, server) = fresh_pool(2);
            let rt = runtime::current_thread(SEEDS[(i + 3) % SEEDS.len()]);
            for worker in 1..=3 {
                let pool = pool.clone();
                rt.spawn(async move {
                    for batch in 1..=2 {
                        let _ = pool.prove(&format!("worker-{worker}-batch-{batch}")).await;
                    }
                });
            }
            rt.block_on(async { sleep(Duration::from_millis(at_ms)).await });
            if let Err(panic) = quietly(move || drop(rt)) {
                panic!(
                    "a deploy shut the runtime down {at_ms} ms into three workers' batches on \
                     two GPUs, and the shutdown panicked: {panic}"
                );
            }
            if let Err(seen) = next_two_jobs_on_a_new_runtime(&pool, &server) {
                panic!(
                    "a deploy shut the runtime down {at_ms} ms into three workers' batches on two \
                     GPUs (two batches each); on a new runtime, two jobs at once: {seen}"
                );
            }
        }
    }

    /// Jobs waiting for a GPU give up (a timeout, a `select!`) just as GPUs come back: every lease
    /// is dropped while jobs wait, and each waiting job is dropped right after a lease, before it
    /// is polled again, or all of them after every lease. Whatever a returned GPU was promised
    /// to, it must not leave the pool with a job that gave up: the next jobs get every GPU.
    async fn a_job_that_gives_up_waiting_as_a_gpu_comes_back_takes_no_gpu_away() {
        for gpus in 1..=2 {
            for waiting in 1..=3 {
                for interleaved in [true, false] {
                    let (pool, server) = fresh_pool(gpus);
                    let mut leases = Vec::new();
                    for _ in 0..gpus {
                        leases.push(pool.acquire().await);
                    }
                    let mut waiters: Vec<_> =
                        (0..waiting).map(|_| tokio_test::task::spawn(pool.acquire())).collect();
                    for waiter in &mut waiters {
                        assert!(
                            waiter.poll().is_pending(),
                            "every GPU is lent, yet `acquire()` returned a lease at once"
                        );
                    }
                    let mut waiters = waiters.into_iter();
                    for lease in leases {
                        drop(lease);
                        if interleaved {
                            drop(waiters.next());
                        }
                    }
                    drop(waiters);
                    let jobs = [(Job::Prove, "next-1"), (Job::Lease, "next-2")];
                    if let Err(seen) = jobs_at_once(&pool, &server, &jobs[..gpus]).await {
                        let order = if interleaved {
                            "each dropped right after a lease was"
                        } else {
                            "dropped after every lease was"
                        };
                        panic!(
                            "{}, all lent, and {} waiting in `acquire()`; the leases were dropped, \
                             and the waiting jobs gave up ({order}, before being polled again). \
                             Then {}: {seen}",
                            count(gpus, "GPU"),
                            count(waiting, "job"),
                            next_jobs(gpus),
                        );
                    }
                }
            }
        }
    }

    /// A deploy while jobs wait for a GPU: jobs that hold every GPU and two jobs waiting for one,
    /// spawned in either order, and the runtime shuts down. Whatever the shutdown drops first, a
    /// GPU must not leave the pool with a waiting job: on a new runtime, the next jobs at once get
    /// every GPU.
    fn a_deploy_while_jobs_wait_for_a_gpu_loses_none() {
        for gpus in 1..=2 {
            for waiters_first in [false, true] {
                let (pool, server) = fresh_pool(gpus);
                let rt = runtime::current_thread(SEEDS[gpus]);
                let hold = |pool: GpuPool| async move {
                    let _lease = pool.acquire().await;
                    std::future::pending::<()>().await;
                };
                let wait = |pool: GpuPool| async move {
                    // Comes after the holders, whichever task was spawned first.
                    sleep(Duration::from_millis(1)).await;
                    let _lease = pool.acquire().await;
                    std::future::pending::<()>().await;
                };
                rt.block_on(async {
                    if waiters_first {
                        for _ in 0..2 {
                            tokio::spawn(wait(pool.clone()));
                        }
                    }
                    for _ in 0..gpus {
                        tokio::spawn(hold(pool.clone()));
                    }
                    if !waiters_first {
                        for _ in 0..2 {
                            tokio::spawn(wait(pool.clone()));
                        }
                    }
                    sleep(Duration::from_millis(10)).await;
                });
                if let Err(panic) = quietly(move || drop(rt)) {
                    panic!(
                        "a deploy shut the runtime down while {} held every GPU and two waited \
                         for one, and the shutdown panicked: {panic}",
                        count(gpus, "job"),
                    );
                }
                let jobs = [(Job::Prove, "next-1"), (Job::Lease, "next-2")];
                let next = runtime::current_thread(SEEDS[0])
                    .block_on(jobs_at_once(&pool, &server, &jobs[..gpus]));
                if let Err(seen) = next {
                    panic!(
                        "a deploy shut the runtime down while {} held every GPU and two waited \
                         for one (the waiting jobs spawned {}); on a new runtime, {}: {seen}",
                        count(gpus, "job"),
                        if waiters_first { "first" } else { "last" },
                        next_jobs(gpus),
                    );
                }
            }
        }
    }
}
