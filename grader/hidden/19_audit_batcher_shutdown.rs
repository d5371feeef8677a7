//! Hidden tests for kata 19: every audit record must be in the store once `shutdown` returns, even
//! though `main` drops the runtime (cancelling every task on it) right after.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use audit_batcher_shutdown::{
    AuditClosed, AuditRecord, AuditService, AuditSink, FLUSH_EVERY, MAX_BATCH, WRITE_LATENCY,
};
use kata_support::{check_property, hidden_test};
use proptest::prelude::*;

/// Long enough, in virtual time, for any correct shutdown; a shutdown still pending after this
/// is waiting for something that will never happen.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(600);

/// How many records the queue between the handlers and the flusher holds (the exercise's
/// private `QUEUE_CAPACITY`, also stated in the README).
const QUEUE_CAPACITY: usize = 1024;

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

/// A request handler that holds its own `AuditLog` while shutdown runs.
#[derive(Debug, Clone, Copy)]
enum Handler {
    /// Holds the log and records nothing (a slow connection): the flusher sits idle.
    Idle,
    /// Records one record every so many milliseconds until it is refused.
    Every(u64),
    /// Records this many records back to back, without a pause, until it is refused.
    Burst(u64),
}

/// When shutdown comes: after a first burst of records, a pause (0: the flusher just gets a
/// turn), a second burst sent without a pause, and perhaps a handler holding its own log.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    first: u64,
    pause_ms: u64,
    second: u64,
    handler: Option<Handler>,
}

fn handlers() -> impl Strategy<Value = Option<Handler>> {
    prop_oneof![
        Just(None),
        Just(Some(Handler::Idle)),
        (1u64..=30).prop_map(|every| Some(Handler::Every(every))),
        (3000u64..=6000).prop_map(|count| Some(Handler::Burst(count))),
    ]
}

fn scenarios() -> impl Strategy<Value = Scenario> {
    // A second burst of none at all leaves the flusher idle (parked, with no record to wake it)
    // when shutdown begins.
    let pause_ms = prop_oneof![Just(0u64), 1u64..=1500];
    let second = prop_oneof![Just(0u64), 1u64..=130];
    (0u64..=130, pause_ms, second, handlers()).prop_map(|(first, pause_ms, second, handler)| {
        Scenario { first, pause_ms, second, handler }
    })
}

hidden_test! {
    /// Shutdown at any moment: with a batch held, a batch being written, records still queued,
    /// and a handler that keeps its `AuditLog` and records during and after shutdown. Every
    /// `record` that returned `Ok(())` is in the store, in the order recorded, when shutdown has
    /// returned; every `record` after that returns `Err(AuditClosed)`.
    fn every_acknowledged_record_is_stored_in_order() {
        check_property(40, scenarios(), |scenario| async move {
            let sink = AuditSink::new();
            let service = AuditService::start(sink.clone());
            let log = service.log();
            let acked = Arc::new(Mutex::new(Vec::new()));
            // The service has been up a moment before the first request: the flusher is waiting.
            tokio::task::yield_now().await;
            for id in 0..scenario.first {
                log.record(record(id)).await.map_err(|_| format!("record {id} was refused before shutdown"))?;
                acked.lock().unwrap().push(record(id));
            }
            if scenario.pause_ms == 0 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(scenario.pause_ms)).await;
            }
            for id in scenario.first..scenario.first + scenario.second {
                log.record(record(id)).await.map_err(|_| format!("record {id} was refused before shutdown"))?;
                acked.lock().unwrap().push(record(id));
            }
            // A request handler keeps its own `AuditLog`: idle, recording now and then, or
            // recording back to back; it records until it is refused.
            let handler = scenario.handler.map(|handler| {
                let (log, acked) = (log.clone(), acked.clone());
                tokio::spawn(async move {
                    let (count, every) = match handler {
                        Handler::Idle => {
                            // Holds its log past the end of shutdown, recording nothing.
                            tokio::time::sleep(SHUTDOWN_LIMIT * 2).await;
                            drop(log);
                            return;
                        }
                        Handler::Every(every) => (u64::MAX - 10_000, Some(every)),
                        Handler::Burst(count) => (count, None),
                    };
                    for id in 10_000..10_000 + count {
                        if log.record(record(id)).await.is_err() {
                            break;
                        }
                        acked.lock().unwrap().push(record(id));
                        if let Some(every) = every {
                            tokio::time::sleep(Duration::from_millis(every)).await;
                        }
                    }
                })
            });
            // What is left to write when shutdown begins: every acknowledged record not yet in
            // the store (a batch being written is not in it yet).
            let stored_at_start = sink.records().len();
            let left = acked.lock().unwrap().len().saturating_sub(stored_at_start);
            let began = tokio::time::Instant::now();
            tokio::time::timeout(SHUTDOWN_LIMIT, service.shutdown())
                .await
                .map_err(|_| format!("shutdown() had not returned after {} s", SHUTDOWN_LIMIT.as_secs()))?;
            let took = began.elapsed();
            // The writes that are left, one more for a handler's record that slips in as
            // shutdown begins, and one for a batch already being written. A handler recording
            // back to back may fill the whole queue (1024 records) while the flusher is busy
            // writing as shutdown begins; those are acknowledged and must be written too.
            let slipped = match scenario.handler {
                Some(Handler::Burst(_)) => QUEUE_CAPACITY,
                _ => 0,
            };
            let writes = (left + slipped).div_ceil(MAX_BATCH) as u32 + 2;
            if took > WRITE_LATENCY * writes {
                let written = sink.records().len().saturating_sub(stored_at_start);
                let handler = match scenario.handler {
                    None => "no handler was recording".to_owned(),
                    Some(Handler::Idle) => {
                        "a handler held an AuditLog but recorded nothing (the flusher was idle)"
                            .to_owned()
                    }
                    Some(Handler::Every(every)) => {
                        format!("a handler was recording one record every {every} ms")
                    }
                    Some(Handler::Burst(count)) => format!(
                        "a handler had started recording {count} records back to back, of \
                         which {} were accepted",
                        acked.lock().unwrap().iter().filter(|r| r.id >= 10_000).count()
                    ),
                };
                return Err(format!(
                    "shutdown() took {took:?} of virtual time; {handler}. {left} acknowledged \
                     record(s) were not yet in the store when it began ({slipped} more may slip \
                     into the queue as it begins), which is at most {writes} writes of \
                     {WRITE_LATENCY:?} ({:?}) in batches of up to {MAX_BATCH}; meanwhile the \
                     store received {written} record(s), in {} writes' worth of time. Shutdown \
                     must return as soon as the records left are written, in full batches: it \
                     was late because it waited for something else (a pause, the next \
                     once-a-second flush, a handler's burst to end), or because the records left \
                     were written in more, smaller batches than needed",
                    WRITE_LATENCY * writes,
                    took.as_millis() / WRITE_LATENCY.as_millis()
                ));
            }
            let stored_at_return = sink.records();
            let after = log.record(record(99_999)).await;
            if after != Err(AuditClosed) {
                return Err(format!(
                    "after shutdown() returned, `record` on a handler's AuditLog answered {after:?}: \
                     the record is accepted but nothing will ever write it. It must be refused \
                     with Err(AuditClosed)"
                ));
            }
            if let Some(handler) = handler {
                // The handler is refused at its next record; give it the time to get there.
                let _ = tokio::time::timeout(Duration::from_secs(1), handler).await;
            }
            let acked = acked.lock().unwrap().clone();
            let missing: Vec<u64> =
                acked.iter().filter(|r| !stored_at_return.contains(r)).map(|r| r.id).collect();
            if !missing.is_empty() {
                return Err(format!(
                    "when shutdown() returned, the store held {} of the {} records whose `record` \
                     returned Ok(()); missing ids {}. An acknowledged record must be written \
                     before shutdown returns, or refused with Err(AuditClosed)",
                    acked.len() - missing.len(),
                    acked.len(),
                    ranges(&missing)
                ));
            }
            if stored_at_return != acked {
                let ids: Vec<u64> = stored_at_return.iter().map(|r| r.id).collect();
                return Err(format!(
                    "the store holds the acknowledged records out of order (or twice): ids {}; \
                     an audit trail is append-only, in the order recorded",
                    ranges(&ids)
                ));
            }
            Ok(())
        });
    }

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
                "{seen}. Every one of them was recorded before shutdown() was called; shutdown() \
                 must return only once the flusher has written all of them, because dropping the \
                 runtime right after cancels whatever is still running"
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
             still held an AuditLog, so the channel never closed: the flusher never stopped, or \
             never saw the stop signal. A flusher that stops only when the channel closes waits \
             for every handler; a stop signal sent while the flusher is busy writing (and not \
             waiting for it) must not be lost (`Notify::notify_waiters` keeps no permit; a \
             `CancellationToken` stays cancelled)",
            SHUTDOWN_LIMIT.as_secs()
        );
        if let Err(seen) = check_store(&sink, &expected, "when shutdown() returned") {
            panic!(
                "{seen}: these were recorded before shutdown() was called and were not in the \
                 store when it returned; `main` drops the runtime right after"
            );
        }
        drop(lingering);
    }
}
