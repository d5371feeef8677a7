//! Hidden tests for kata 28: a GPU whose lease was dropped comes back to the pool, reset, however
//! the lease was dropped: inside a running runtime, by a runtime shutting down, or after the
//! runtime is gone; and dropping a lease never panics.

use std::panic::AssertUnwindSafe;
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

/// A pool of `gpus` GPUs on a fresh device server.
fn fresh_pool(gpus: usize) -> (GpuPool, DeviceServer) {
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

/// Proves `program` on the pool within [`PATIENCE`], and says what went wrong otherwise.
async fn prove_within_patience(
    pool: &GpuPool,
    server: &DeviceServer,
    program: &str,
) -> Result<Proof, String> {
    match timeout(PATIENCE, pool.prove(program)).await {
        Ok(Ok(proof)) if proof.program == program => Ok(proof),
        Ok(Ok(proof)) => Err(format!(
            "`prove({program:?})` returned a proof of `{}`, not of its own program",
            proof.program
        )),
        Ok(Err(DeviceError::OutOfMemory { gpu, resident })) => Err(format!(
            "`prove({program:?})` was lent {gpu} with the proving key of `{resident}` still in its \
             memory (DeviceError::OutOfMemory): a GPU went back to the pool without being reset, \
             and the next job got it"
        )),
        Ok(Err(e)) => Err(format!("`prove({program:?})` failed: {e}")),
        Err(_) => Err(format!(
            "`prove({program:?})` waited {PATIENCE:?} for a GPU and got none (a reset takes \
             {RESET_TIME:?}); the device server says {}: a GPU never came back to the pool",
            memory(server)
        )),
    }
}

/// The next jobs, one after the other, each within [`PATIENCE`]: with a pool of one GPU, this is
/// whether the GPU came back, reset.
async fn next_jobs(pool: &GpuPool, server: &DeviceServer, programs: &[&str]) -> Result<(), String> {
    for program in programs {
        prove_within_patience(pool, server, program).await?;
    }
    Ok(())
}

/// The same, on a runtime of their own: the next call of a blocking client, or the next process
/// of a deploy, after the runtime the lease lived in is gone.
fn next_jobs_on_a_new_runtime(
    pool: &GpuPool,
    server: &DeviceServer,
    programs: &[&str],
) -> Result<(), String> {
    runtime::current_thread(SEEDS[0]).block_on(next_jobs(pool, server, programs))
}

/// Two jobs at once on a runtime of their own: with a pool of two GPUs, whether both came back.
fn two_jobs_at_once_on_a_new_runtime(pool: &GpuPool, server: &DeviceServer) -> Result<(), String> {
    runtime::current_thread(SEEDS[0]).block_on(async {
        let (a, b) = tokio::join!(
            prove_within_patience(pool, server, "next-1"),
            prove_within_patience(pool, server, "next-2"),
        );
        a.and(b).map(|_| ())
    })
}

/// Runs `f` with the panic hook silenced, and returns the panic's message if it panicked.
fn quietly(f: impl FnOnce()) -> Result<(), String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned())
    })
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
    /// Nothing dropped part-way, in a running runtime: batches one after the other, then three at
    /// once on two GPUs (the third waits for a GPU to come back). Every proof is its own, and
    /// every job gets a GPU with its memory free.
    async fn proofs_on_a_running_service_each_get_a_reset_gpu() {
        let (pool, server) = fresh_pool(2);
        for program in ["batch-1", "batch-2", "batch-3", "batch-4"] {
            if let Err(seen) = prove_within_patience(&pool, &server, program).await {
                panic!("nothing was cancelled, one job after the other: {seen}");
            }
        }
        let (a, b, c) = tokio::join!(
            prove_within_patience(&pool, &server, "batch-5"),
            prove_within_patience(&pool, &server, "batch-6"),
            prove_within_patience(&pool, &server, "batch-7"),
        );
        for seen in [a, b, c] {
            if let Err(seen) = seen {
                panic!("nothing was cancelled, three jobs at once on two GPUs: {seen}");
            }
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
                next_jobs(&pool, &server, &["next-1", "next-2"]).await
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
                next_jobs_on_a_new_runtime(&pool, &server, &["next-1", "next-2"])
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
                     ran; whatever a lease leaves to a task of that runtime is dropped, unrun, \
                     with the runtime"
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
        if let Err(seen) = next_jobs_on_a_new_runtime(&pool, &server, &["next-1", "next-2"]) {
            panic!("a GpuLease was dropped outside any runtime; on a new runtime, {seen}");
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
            if let Err(seen) = next_jobs_on_a_new_runtime(&pool, &server, &["next-1", "next-2"]) {
                panic!(
                    "a deploy shut the runtime down {at_ms} ms into a worker's three batches on \
                     one GPU (each takes {batch:?} with its reset); on a new runtime, {seen}"
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
            if let Err(seen) = two_jobs_at_once_on_a_new_runtime(&pool, &server) {
                panic!(
                    "a deploy shut the runtime down {at_ms} ms into three workers' batches on two \
                     GPUs (two batches each); on a new runtime, two jobs at once: {seen}"
                );
            }
        }
    }
}
