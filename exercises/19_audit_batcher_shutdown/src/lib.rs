//! # Kata 19: the audit batcher that loses its last batch
//!
//! A payments service keeps an audit trail: every privileged action (a refund, a limit change)
//! becomes an [`AuditRecord`]. Writing each record to the compliance store on its own would be too
//! slow, so a background *flusher* task collects them and writes them in batches: as soon as
//! [`MAX_BATCH`] records are waiting, and otherwise once every [`FLUSH_EVERY`].
//!
//! The server's `main` ends like this:
//!
//! ```text
//! service.shutdown().await;
//! // return from main: the runtime is dropped
//! ```
//!
//! Dropping a runtime cancels every task still on it: each task is dropped at the `.await` it is
//! parked at, and the code after that `.await` never runs. Whatever the flusher was holding when
//! `main` returned never reaches the store. Read `README.md` for the whole story.

use std::mem;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{self, MissedTickBehavior};

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
}

impl AuditService {
    /// Starts the flusher on the current runtime.
    ///
    /// # Panics
    ///
    /// Panics when called outside a tokio runtime.
    pub fn start(sink: AuditSink) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        // The flusher runs in the background for the life of the service.
        tokio::spawn(flush_loop(rx, sink));
        AuditService { log: AuditLog { tx } }
    }

    /// A handle for one request handler.
    pub fn log(&self) -> AuditLog {
        self.log.clone()
    }

    /// Stops the audit trail. `main` returns (and drops the runtime) right after this.
    ///
    /// # Cancel safety
    ///
    /// Returns at once, so there is nothing to cancel; but see the TODO: returning is not the
    /// same as the flusher having finished.
    pub async fn shutdown(self) {
        // Our sender is dropped here. Once every request handler has dropped its `AuditLog` too,
        // the channel closes, the flusher sees `None`, writes what it holds and exits.
        //
        // TODO: that all happens *later*, on the flusher's task. `main` returns as soon as this
        // function does, the runtime is dropped, and the flusher is cancelled wherever it is
        // parked. Tell the flusher to stop (even if some handler still holds an `AuditLog`) and
        // wait here until it has written its final batch.
        drop(self.log);
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
async fn flush_loop(mut rx: mpsc::Receiver<AuditRecord>, sink: AuditSink) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut tick = time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
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
    if !batch.is_empty() {
        sink.write_batch(batch).await;
    }
}
