//! # Kata 19 solution: shut the flusher down, then wait for it
//!
//! Dropping a runtime cancels every task on it, wherever it is parked. A background task whose
//! work must be finished therefore needs two things from whoever shuts down: a way to *tell* it to
//! stop (a [`CancellationToken`], which works even while request handlers still hold an
//! [`AuditLog`]) and a way to *wait* until it has stopped (a [`TaskTracker`]). `shutdown` does
//! both, and only returns once the flusher has written its final batch; only then may `main`
//! return and drop the runtime.

use std::mem;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{self, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The flusher writes a batch as soon as this many records are waiting.
pub const MAX_BATCH: usize = 100;

/// The flusher writes whatever is waiting at least this often.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// How long the compliance store takes to accept one batch.
pub const WRITE_LATENCY: Duration = Duration::from_millis(20);

/// Records that may wait in the channel between the handlers and the flusher.
const QUEUE_CAPACITY: usize = 1024;

/// One privileged action, as the auditors will read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: u64,
    pub actor: String,
    pub action: String,
}

/// The compliance store (an in-memory fake): an append-only log that takes [`WRITE_LATENCY`] to
/// accept each batch. Clones share one log.
#[derive(Debug, Clone, Default)]
pub struct AuditSink {
    written: Arc<Mutex<Vec<AuditRecord>>>,
}

impl AuditSink {
    /// An empty store.
    pub fn new() -> Self {
        AuditSink::default()
    }

    /// Every record the store has accepted, in the order it accepted them.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.written.lock().expect("audit store lock").clone()
    }

    /// Appends one batch.
    ///
    /// # Cancel safety
    ///
    /// The batch is stored only when the write completes. A write that is dropped before then
    /// stores nothing, and the records it was given are gone.
    pub async fn write_batch(&self, batch: Vec<AuditRecord>) {
        time::sleep(WRITE_LATENCY).await;
        self.written.lock().expect("audit store lock").extend(batch);
    }
}

/// Returned by [`AuditLog::record`] once the audit trail has shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditClosed;

/// The handle request handlers use to record actions. Clones feed the same flusher.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<AuditRecord>,
}

impl AuditLog {
    /// Queues one record for the flusher.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if this future is dropped while the queue is full, the record is not
    /// queued and is lost (it lives inside the dropped `mpsc::Sender::send` future). Handlers await
    /// it to completion.
    pub async fn record(&self, record: AuditRecord) -> Result<(), AuditClosed> {
        self.tx.send(record).await.map_err(|_| AuditClosed)
    }
}

/// The audit trail: a background flusher and the handle that feeds it.
#[derive(Debug)]
pub struct AuditService {
    log: AuditLog,
    /// Cancelled by `shutdown`: asks the flusher to write what it holds and exit.
    stop: CancellationToken,
    /// The flusher's task, so that `shutdown` can wait for it.
    tasks: TaskTracker,
}

impl AuditService {
    /// Starts the flusher on the current runtime.
    ///
    /// # Panics
    ///
    /// Panics when called outside a tokio runtime.
    pub fn start(sink: AuditSink) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        // The flusher runs in the background for the life of the service; the tracker lets
        // `shutdown` wait for it.
        tasks.spawn(flush_loop(rx, sink, stop.clone()));
        AuditService { log: AuditLog { tx }, stop, tasks }
    }

    /// A handle for one request handler.
    pub fn log(&self) -> AuditLog {
        self.log.clone()
    }

    /// Stops the audit trail and waits until every queued record is in the store. `main` returns
    /// (and drops the runtime) right after this.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the sense that matters: the flusher has already been told to stop, and it
    /// finishes its final batch on its own task even if this future is dropped. What a dropped
    /// `shutdown` loses is the *guarantee*: the runtime may then be dropped before the flusher is
    /// done. Await it to completion before returning from `main`.
    pub async fn shutdown(self) {
        // Tell, then wait. Cancelling the token reaches the flusher even while request handlers
        // still hold an `AuditLog` (so the channel is still open). Closing the tracker says "no
        // more tasks are coming"; `wait` returns once it is closed and the flusher has exited.
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Stands in for the server's life: records `records` as the request handlers would, then
    /// shuts down. `main` returns (and drops the runtime) as soon as this does.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a record whose `record` call is dropped is lost (see
    /// [`AuditLog::record`]). `main` awaits it to completion.
    pub async fn run_then_shutdown(self, records: Vec<AuditRecord>) {
        let log = self.log();
        for record in records {
            if log.record(record).await.is_err() {
                break;
            }
        }
        drop(log);
        self.shutdown().await;
    }
}

/// The flusher: collects records into batches and writes each full (or one second old) batch.
/// When `stop` is cancelled it drains the queue, writes a final batch and exits.
async fn flush_loop(mut rx: mpsc::Receiver<AuditRecord>, sink: AuditSink, stop: CancellationToken) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut tick = time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        // Only the waiting is raced against `stop`. A batch write runs inside a branch body,
        // which `select!` never interrupts, so a write in progress always completes.
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            received = rx.recv() => match received {
                Some(record) => {
                    batch.push(record);
                    if batch.len() >= MAX_BATCH {
                        sink.write_batch(mem::take(&mut batch)).await;
                    }
                }
                // Every `AuditLog` is gone: nothing more can arrive.
                None => break,
            },
            _ = tick.tick() => {
                if !batch.is_empty() {
                    sink.write_batch(mem::take(&mut batch)).await;
                }
            }
        }
    }
    // Records already queued were promised to the auditors. Closing the receiver refuses new
    // ones (`record` returns `AuditClosed`) but still hands out those already in the channel.
    rx.close();
    while let Some(record) = rx.recv().await {
        batch.push(record);
        if batch.len() >= MAX_BATCH {
            sink.write_batch(mem::take(&mut batch)).await;
        }
    }
    if !batch.is_empty() {
        sink.write_batch(batch).await;
    }
}
