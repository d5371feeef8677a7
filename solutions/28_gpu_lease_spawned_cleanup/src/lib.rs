//! # Kata 28 solution: the GPU lease that always comes back
//!
//! A proving service runs zero-knowledge proofs on a machine with a few GPUs. A [`GpuPool`] lends
//! one GPU to each job as a [`GpuLease`]; the job uploads its program's proving key to the GPU
//! and runs the proof there. Before the next job may use that GPU, the device server has to reset
//! it: the old proving key fills most of its memory, and belongs to somebody else.
//!
//! A reset is a request to the device server, so it is `async`, and `Drop` cannot await. The
//! exercise's `Drop` spawned a task to reset the GPU and give it back; a runtime that shuts down
//! drops that task unrun, and with no runtime at all `tokio::spawn` panics. Here `Drop` does only
//! what is synchronous and always possible: it gives the GPU back at once, marked as needing a
//! reset. The async part is owed by the pool, and the next [`GpuPool::acquire`] that takes a
//! marked GPU pays it before handing the GPU out.
//!
//! The device server is an in-memory fake ([`DeviceServer`]) with the timing of the real one;
//! its docs say exactly when each request takes effect. It is not what you fix. Read `README.md`
//! for the whole story.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time;

/// How long the device server takes to upload a proving key to a GPU.
pub const LOAD_TIME: Duration = Duration::from_millis(30);

/// How long a proof takes on a GPU.
pub const PROVE_TIME: Duration = Duration::from_millis(120);

/// How long the device server takes to reset a GPU (free and wipe its memory).
pub const RESET_TIME: Duration = Duration::from_millis(200);

/// One GPU of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GpuId(pub usize);

impl fmt::Display for GpuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gpu{}", self.0)
    }
}

/// A finished proof: which program it proves, and the GPU it ran on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub program: String,
    pub gpu: GpuId,
}

/// What the device server refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceError {
    /// The GPU still holds another program's proving key, and there is no room for a second one.
    OutOfMemory { gpu: GpuId, resident: String },
    /// A proof was asked of a GPU that does not hold the program's proving key.
    NotLoaded { gpu: GpuId, program: String },
    /// There is no such GPU.
    NoSuchGpu(GpuId),
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::OutOfMemory { gpu, resident } => {
                write!(f, "{gpu} is out of memory: it still holds the proving key of `{resident}`")
            }
            DeviceError::NotLoaded { gpu, program } => {
                write!(f, "{gpu} does not hold the proving key of `{program}`")
            }
            DeviceError::NoSuchGpu(gpu) => write!(f, "there is no {gpu}"),
        }
    }
}

impl std::error::Error for DeviceError {}

/// The device server (an in-memory fake): it owns the GPUs and runs every request on them. Clones
/// share the same GPUs, and it works from any runtime, or none for the synchronous
/// [`DeviceServer::resident`].
#[derive(Debug, Clone)]
pub struct DeviceServer {
    /// What each GPU's memory holds: the program whose proving key is on it, if any.
    memory: Arc<Mutex<Vec<Option<String>>>>,
}

impl DeviceServer {
    /// A server with `gpus` GPUs, all with their memory free.
    pub fn new(gpus: usize) -> Self {
        DeviceServer { memory: Arc::new(Mutex::new(vec![None; gpus])) }
    }

    /// Every GPU of the server.
    pub fn gpus(&self) -> Vec<GpuId> {
        (0..self.lock().len()).map(GpuId).collect()
    }

    /// The program whose proving key is in `gpu`'s memory, if any (`None` also for a GPU that
    /// does not exist).
    pub fn resident(&self, gpu: GpuId) -> Option<String> {
        self.lock().get(gpu.0).cloned().flatten()
    }

    /// Uploads `program`'s proving key to `gpu` ([`LOAD_TIME`]). The memory is taken at once;
    /// the upload then takes its time.
    ///
    /// # Errors
    ///
    /// [`DeviceError::OutOfMemory`] if the GPU still holds another program's key (it was not
    /// reset since), [`DeviceError::NoSuchGpu`].
    ///
    /// # Cancel safety
    ///
    /// Dropped after its first poll, the GPU's memory holds part of the key: the GPU needs a
    /// reset all the same.
    pub async fn load(&self, gpu: GpuId, program: &str) -> Result<(), DeviceError> {
        {
            let mut memory = self.lock();
            let slot = memory.get_mut(gpu.0).ok_or(DeviceError::NoSuchGpu(gpu))?;
            match slot {
                Some(resident) if resident != program => {
                    return Err(DeviceError::OutOfMemory { gpu, resident: resident.clone() });
                }
                _ => *slot = Some(program.to_owned()),
            }
        }
        time::sleep(LOAD_TIME).await;
        Ok(())
    }

    /// Runs the proof of `program` on `gpu`, which must hold its proving key ([`PROVE_TIME`]).
    ///
    /// # Errors
    ///
    /// [`DeviceError::NotLoaded`] if the key is not on the GPU, [`DeviceError::NoSuchGpu`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropped, the proof is simply not made; the key stays on the GPU.
    pub async fn prove(&self, gpu: GpuId, program: &str) -> Result<Proof, DeviceError> {
        if self.lock().get(gpu.0).ok_or(DeviceError::NoSuchGpu(gpu))?.as_deref() != Some(program) {
            return Err(DeviceError::NotLoaded { gpu, program: program.to_owned() });
        }
        time::sleep(PROVE_TIME).await;
        Ok(Proof { program: program.to_owned(), gpu })
    }

    /// Resets `gpu`: its memory is freed once the reset is done ([`RESET_TIME`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropped before it completes, nothing was freed, and a new reset starts over.
    pub async fn reset(&self, gpu: GpuId) {
        time::sleep(RESET_TIME).await;
        if let Some(slot) = self.lock().get_mut(gpu.0) {
            *slot = None;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Option<String>>> {
        self.memory.lock().expect("device server lock")
    }
}

/// The GPUs of one device server, lent to one job at a time. Clones share the pool. It needs no
/// runtime of its own: a blocking client builds it once and calls it from a runtime per call.
#[derive(Debug, Clone)]
pub struct GpuPool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    server: DeviceServer,
    /// The GPUs nobody holds, each with whether it must be reset before a job may use it.
    idle: Mutex<Vec<Idle>>,
    /// One permit per idle GPU, so that `acquire` can wait for one.
    available: Semaphore,
}

/// An idle GPU, and whether a job may have left its proving key on it.
#[derive(Debug, Clone, Copy)]
struct Idle {
    gpu: GpuId,
    needs_reset: bool,
}

impl Shared {
    /// Puts `gpu` back among the idle GPUs and wakes a job waiting for one. Synchronous, and it
    /// needs no runtime: a `Drop` can always call it, even during a shutdown or after one.
    fn give_back(&self, gpu: GpuId, needs_reset: bool) {
        self.idle.lock().expect("pool lock").push(Idle { gpu, needs_reset });
        self.available.add_permits(1);
    }

    /// Takes an idle GPU (there is one for every permit), a reset one if there is any.
    fn take_idle(&self) -> Idle {
        let mut idle = self.idle.lock().expect("pool lock");
        let at = idle.iter().position(|i| !i.needs_reset).or(idle.len().checked_sub(1));
        idle.remove(at.expect("a permit per idle GPU"))
    }
}

impl GpuPool {
    /// A pool of every GPU of `server`, all of them idle and reset.
    pub fn new(server: DeviceServer) -> Self {
        let gpus = server.gpus();
        let available = Semaphore::new(gpus.len());
        let idle = gpus.into_iter().map(|gpu| Idle { gpu, needs_reset: false }).collect();
        GpuPool { shared: Arc::new(Shared { server, idle: Mutex::new(idle), available }) }
    }

    /// The device server the pool's GPUs belong to.
    pub fn server(&self) -> &DeviceServer {
        &self.shared.server
    }

    /// Waits until a GPU is idle, resets it if the job before left its memory in use, and lends
    /// it out until the lease is dropped.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropped while it waits for a GPU, it has taken none; dropped during the
    /// reset, the GPU goes back to the pool still marked as needing one.
    pub async fn acquire(&self) -> GpuLease {
        let permit = self.shared.available.acquire().await.expect("the pool is never closed");
        permit.forget();
        let Idle { gpu, needs_reset } = self.shared.take_idle();
        // The lease owns the GPU from here on, before the reset's `.await`: if this future is
        // dropped during the reset, the lease's `Drop` gives the GPU back, marked again.
        let lease = GpuLease { shared: Arc::clone(&self.shared), gpu };
        if needs_reset {
            self.shared.server.reset(gpu).await;
        }
        lease
    }

    /// Proves `program` on a GPU of the pool: lease one, upload the proving key, run the proof.
    /// The lease ends when this returns (or is dropped), and the GPU goes back to the pool.
    ///
    /// # Errors
    ///
    /// What the device server refused.
    ///
    /// # Cancel safety
    ///
    /// Dropped part-way, the proof is lost (nothing else can be done with half a proof), and the
    /// lease is dropped with it: the GPU goes back to the pool at once, to be reset by the next
    /// job that takes it. That holds inside a running runtime, during its shutdown and after it.
    pub async fn prove(&self, program: &str) -> Result<Proof, DeviceError> {
        let lease = self.acquire().await;
        self.server().load(lease.gpu(), program).await?;
        self.server().prove(lease.gpu(), program).await
    }
}

/// One GPU lent to one job. Dropping the lease gives the GPU back to the pool at once, marked as
/// needing a reset.
#[derive(Debug)]
pub struct GpuLease {
    shared: Arc<Shared>,
    gpu: GpuId,
}

impl GpuLease {
    /// The GPU this lease holds.
    pub fn gpu(&self) -> GpuId {
        self.gpu
    }
}

impl Drop for GpuLease {
    fn drop(&mut self) {
        // Nothing async here, and no task: a destructor may run inside a running runtime, while
        // the runtime shuts down (tasks spawned then are dropped unrun), or after it is gone
        // (`tokio::spawn` panics). The job may have left its proving key on the GPU, so the reset
        // is owed; the next `acquire` that takes this GPU does it.
        self.shared.give_back(self.gpu, true);
    }
}
