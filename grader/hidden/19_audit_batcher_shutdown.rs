//! Hidden tests for kata 19: every audit record must be in the store once `shutdown` returns, even
//! though `main` drops the runtime (cancelling every task on it) right after.

use std::time::Duration;

use audit_batcher_shutdown::{AuditRecord, AuditService, AuditSink, FLUSH_EVERY, MAX_BATCH};
use kata_support::hidden_test;

/// Long enough, in virtual time, for any correct shutdown; a shutdown still pending after this
/// is waiting for something that will never happen.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(600);

/// Why a shutdown that never returns hangs.
const HANGS: &str = "shutdown waits for something that never happens. Was the flusher told to \
                     stop? A `TaskTracker`'s `wait` only returns once the tracker is closed \
                     (`close()`) and its tasks have exited";

fn record(id: u64) -> AuditRecord {
    AuditRecord {
        id,
        actor: format!("operator-{}", id % 3),
        action: format!("refund order {}", 9000 + id),
    }
}

fn records(range: std::ops::Range<u64>) -> Vec<AuditRecord> {
    range.map(record).collect()
}

/// A paused current-thread runtime, like the one `main` runs on (but with virtual time).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("failed to build a runtime")
}

/// Compares the store with what was recorded, naming the missing ids as ranges.
fn check_store(sink: &AuditSink, expected: &[AuditRecord], when: &str) -> Result<(), String> {
    let stored = sink.records();
    if stored == expected {
        return Ok(());
    }
    let missing: Vec<u64> = expected.iter().filter(|r| !stored.contains(r)).map(|r| r.id).collect();
    if missing.is_empty() {
        return Err(format!(
            "{when}, the store holds {} records for {} recorded: some were written twice or out \
             of order",
            stored.len(),
            expected.len()
        ));
    }
    Err(format!(
        "{when}, the compliance store holds {} of {} audit records; missing ids {}",
        expected.len() - missing.len(),
        expected.len(),
        ranges(&missing)
    ))
}

fn ranges(ids: &[u64]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let start = ids[i];
        let mut end = start;
        while i + 1 < ids.len() && ids[i + 1] == end + 1 {
            i += 1;
            end = ids[i];
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}..={end}") });
        i += 1;
    }
    parts.join(", ")
}

hidden_test! {
    /// Nothing shuts down: full batches and the once-a-second flush reach the store, in order.
    async fn batches_records_while_the_service_runs() {
        let sink = AuditSink::new();
        let service = AuditService::start(sink.clone());
        let log = service.log();
        let expected = records(0..250);
        for r in expected.clone() {
            log.record(r).await.expect("the audit trail is running");
        }
        tokio::time::sleep(FLUSH_EVERY * 3).await;
        if let Err(seen) = check_store(&sink, &expected, "while the service runs") {
            panic!("{seen}: the flusher must write full batches and flush the rest every second");
        }
        drop(service);
    }

    /// `main` returns right after `run_then_shutdown`, dropping the runtime: every record must
    /// already be in the store by then.
    fn every_record_survives_shutdown_and_the_runtime_drop() {
        let sink = AuditSink::new();
        let expected = records(0..(MAX_BATCH as u64 + 5));
        let rt = runtime();
        let finished = rt.block_on({
            let sink = sink.clone();
            let expected = expected.clone();
            async move {
                let service = AuditService::start(sink);
                tokio::time::timeout(SHUTDOWN_LIMIT, service.run_then_shutdown(expected)).await
            }
        });
        assert!(
            finished.is_ok(),
            "run_then_shutdown() had not returned after {} s of virtual time: {HANGS}",
            SHUTDOWN_LIMIT.as_secs()
        );
        // What `main` does when it returns: the runtime, and every task still on it, is dropped.
        drop(rt);
        if let Err(seen) = check_store(&sink, &expected, "after shutdown and the runtime drop") {
            panic!(
                "{seen}. shutdown() returned before the flusher had written them, so dropping the \
                 runtime cancelled the flusher at its `.await` and the records it held were lost. \
                 shutdown() must tell the flusher to stop and wait until it has finished"
            );
        }
    }

    /// The flusher is in the middle of writing a full batch when shutdown starts: that batch must
    /// not be cut short, and the records queued behind it must follow.
    fn a_batch_being_written_at_shutdown_is_not_lost() {
        let sink = AuditSink::new();
        let full = records(0..MAX_BATCH as u64);
        let late = records(MAX_BATCH as u64..MAX_BATCH as u64 + 7);
        let rt = runtime();
        let finished = rt.block_on({
            let sink = sink.clone();
            let (full, late) = (full.clone(), late.clone());
            async move {
                let service = AuditService::start(sink);
                let log = service.log();
                for r in full {
                    log.record(r).await.expect("the audit trail is running");
                }
                // Let the flusher take the full batch and start writing it (a write takes 20 ms).
                tokio::time::sleep(Duration::from_millis(1)).await;
                for r in late {
                    log.record(r).await.expect("the audit trail is running");
                }
                drop(log);
                tokio::time::timeout(SHUTDOWN_LIMIT, service.shutdown()).await
            }
        });
        assert!(
            finished.is_ok(),
            "shutdown() had not returned after {} s of virtual time: {HANGS}",
            SHUTDOWN_LIMIT.as_secs()
        );
        drop(rt);
        let expected: Vec<AuditRecord> = full.into_iter().chain(late).collect();
        if let Err(seen) = check_store(
            &sink,
            &expected,
            "shutdown began while a full batch was being written; after the runtime drop",
        ) {
            panic!(
                "{seen}. The first {MAX_BATCH} were inside a `write_batch` already in progress \
                 when shutdown began. Whatever cancels that write loses them: dropping the \
                 runtime before the flusher is done, or racing the write itself against the stop \
                 signal. Wait for the flusher, and race only its waiting against the stop signal"
            );
        }
    }

    /// A request handler still holds an `AuditLog` (a slow connection), so the channel never
    /// closes on its own: shutdown must still stop the flusher, and not hang.
    async fn shutdown_does_not_wait_for_handlers_to_hang_up() {
        let sink = AuditSink::new();
        let service = AuditService::start(sink.clone());
        let lingering = service.log();
        let expected = records(0..5);
        for r in expected.clone() {
            lingering.record(r).await.expect("the audit trail is running");
        }
        let shutdown = tokio::time::timeout(SHUTDOWN_LIMIT, service.shutdown()).await;
        assert!(
            shutdown.is_ok(),
            "shutdown() had not returned after {} s of virtual time while a request handler \
             still held an AuditLog: it waits for the flusher, but the flusher only stops when the \
             channel closes, and a live AuditLog keeps it open. Tell the flusher to stop \
             explicitly (a CancellationToken)",
            SHUTDOWN_LIMIT.as_secs()
        );
        if let Err(seen) = check_store(&sink, &expected, "when shutdown() returned") {
            panic!(
                "{seen}: shutdown() returned before the flusher wrote its final batch; `main` \
                 drops the runtime right after, which would cancel the flusher"
            );
        }
        drop(lingering);
    }
}
