//! Hidden tests for kata 31: `Journal::append` says `Ok` only once its transaction has landed in
//! the file, whole, and reports a write the disk refused; and whatever point an append is dropped
//! at (a deadline, a deploy), the next append leaves the journal holding whole transactions only:
//! never one written after a torn one.
//!
//! The disk is the kata's `FakeDisk`, which lands a file's writes on a "blocking pool" one
//! `WRITE_TIME` after they were handed over, as `tokio::fs::File` does; the learner's
//! `BufWriter` is tokio's own. The 8 runs of an async test (one per seed) use disks of different
//! speeds (`WRITE_TIMES`), so that a repair which waits by the clock for a dropped write is not
//! the same as one that waits for the write itself.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use buffered_bytes_lost::{FakeDisk, Journal, Transaction, WRITE_TIME};
use kata_support::runtime::{self, SEEDS};
use kata_support::{Outcome, assert_cancel_safe, assert_cancel_safe_at_shutdown, hidden_test};
use tokio::sync::Mutex;

const PATH: &str = "orders.journal";

/// How long a write takes on the disk, in each of the 8 runs of a test (one per seed): the kata's
/// `WRITE_TIME` mostly, and slower disks. A write in flight lands when the disk is done with it.
const WRITE_TIMES: [Duration; 8] = [
    WRITE_TIME,
    Duration::from_millis(3),
    WRITE_TIME,
    Duration::from_millis(40),
    WRITE_TIME,
    Duration::from_millis(250),
    Duration::from_micros(1500),
    Duration::from_secs(1),
];

/// The write time of this run of the test: the next of `WRITE_TIMES`, one per call (each async
/// test calls it once per run, at its start, so the runs of a test cycle through them in order).
fn this_runs_write_time() -> Duration {
    thread_local! {
        static RUN: Cell<usize> = const { Cell::new(0) };
    }
    RUN.with(|run| {
        let n = run.get();
        run.set(n + 1);
        WRITE_TIMES[n % WRITE_TIMES.len()]
    })
}

/// `on a disk whose writes take 40ms`, for a message.
fn on_disk(write_time: Duration) -> String {
    format!("on a disk whose writes take {write_time:?}")
}

/// A transaction of `puts` order lines (each line of the journal is about 80 bytes, so 70 puts
/// are more than one 4 KiB write of the file, and 110 more than a default 8 KiB `BufWriter`).
fn txn(id: u64, puts: usize) -> Transaction {
    let puts = (0..puts)
        .map(|i| {
            let qty = i % 7 + 1;
            let sku = id * 1000 + i as u64;
            let value = format!(
                "sku-{sku:06}-qty-{qty}-from-warehouse-{:02}-dock-{:03}-standard",
                i % 13,
                i % 101
            );
            (format!("order-{id}-line-{i:04}"), value)
        })
        .collect();
    Transaction { id, puts }
}

/// `t.encode()`, computed once per transaction of the tests (the checks run thousands of times).
fn encoded(t: &Transaction) -> Rc<Vec<u8>> {
    thread_local! {
        static CACHE: RefCell<HashMap<(u64, usize), Rc<Vec<u8>>>> = RefCell::new(HashMap::new());
    }
    CACHE.with(|cache| {
        Rc::clone(
            cache.borrow_mut().entry((t.id, t.puts.len())).or_insert_with(|| Rc::new(t.encode())),
        )
    })
}

/// How the journal's bytes read to a replay that knows the transactions `known`: whole ones in
/// order, or where and how it stops.
fn replay(bytes: &[u8], known: &[&Transaction]) -> Result<Vec<u64>, String> {
    let known: Vec<(u64, Rc<Vec<u8>>)> = known.iter().map(|t| (t.id, encoded(t))).collect();
    let mut ids = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if let Some((id, bytes)) = known.iter().find(|(_, bytes)| rest.starts_with(bytes)) {
            ids.push(*id);
            at += bytes.len();
            continue;
        }
        let before = if ids.is_empty() {
            "at its start".to_owned()
        } else {
            format!("after {}", list(&ids))
        };
        let torn = known
            .iter()
            .map(|(id, bytes)| ((id, bytes), common_prefix(rest, bytes)))
            .max_by_key(|&(_, n)| n)
            .filter(|&(_, n)| n > 0);
        return Err(match torn {
            Some(((id, whole), n)) if n < rest.len() => {
                let after = &rest[n..];
                let follows = match known.iter().find(|(_, bytes)| after.starts_with(bytes)) {
                    Some((next, _)) => format!("transaction {next} whole right after it"),
                    None => format!("{} more bytes after it", after.len()),
                };
                format!(
                    "{before}, transaction {id} torn after {n} of its {} bytes (byte {at} of {}), \
                     and {follows}",
                    whole.len(),
                    bytes.len()
                )
            }
            Some(((id, whole), n)) => format!(
                "{before}, transaction {id} torn after {n} of its {} bytes, at the end (byte {at} \
                 of {})",
                whole.len(),
                bytes.len()
            ),
            None => format!("{before}, {} bytes that are no transaction", rest.len()),
        });
    }
    Ok(ids)
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// `transactions 1, 2 and 3`, for a message.
fn list(ids: &[u64]) -> String {
    match ids {
        [] => "no transaction".into(),
        [one] => format!("transaction {one}"),
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(u64::to_string).collect();
            format!("transactions {} and {last}", init.join(", "))
        }
    }
}

/// Checks that the journal reads as `acked` (in order), then the cut transaction whole or not at
/// all, then `next`: what replay must find once `next` was appended after a cut.
fn holds_after_the_cut(
    disk: &FakeDisk,
    acked: &[&Transaction],
    cut: &Transaction,
    next: &Transaction,
    when: &str,
) -> Result<(), String> {
    let bytes = disk.read(PATH).unwrap_or_default();
    let mut known: Vec<&Transaction> = acked.to_vec();
    known.push(cut);
    known.push(next);
    let ids = replay(&bytes, &known).map_err(|stops| {
        format!(
            "{when}, replay of the journal stops {stops}. Replay stops at a torn transaction, so \
             transaction {}, which the client was told is saved, is lost at the next start",
            next.id
        )
    })?;
    let acked_ids: Vec<u64> = acked.iter().map(|t| t.id).collect();
    let rest = ids.strip_prefix(acked_ids.as_slice());
    let fine = match rest {
        Some([only]) => *only == next.id,
        Some([first, second]) => *first == cut.id && *second == next.id,
        _ => false,
    };
    if fine {
        Ok(())
    } else {
        Err(format!(
            "{when}, the journal holds {}; expected {}, then transaction {} whole or not at all, \
             then transaction {}",
            list(&ids),
            list(&acked_ids),
            cut.id,
            next.id
        ))
    }
}

/// The journal of one case, on `disk`, whose file already holds `first`. The journal sits behind
/// a lock so that the test can append again after the explorer dropped an append.
fn fresh_journal(first: &Transaction, disk: FakeDisk) -> (Arc<Mutex<Journal>>, FakeDisk) {
    disk.put(PATH, &first.encode());
    (Arc::new(Mutex::new(Journal::new(disk.clone(), PATH))), disk)
}

/// Appends `next` after an append that was dropped (or finished), and checks the journal both
/// at once (`Ok` means landed) and once every write in flight has landed (nothing lands late).
async fn append_next_and_check(
    journal: &Mutex<Journal>,
    disk: &FakeDisk,
    acked: &[&Transaction],
    cut: &Transaction,
    next: &Transaction,
    what: &str,
) -> Result<(), String> {
    let appended = journal.lock().await.append(next).await;
    if let Err(e) = appended {
        return Err(format!(
            "{what}; then `append(transaction {})` failed: {e}, though the disk has room for it \
             once the torn transaction is cut off",
            next.id
        ));
    }
    holds_after_the_cut(
        disk,
        acked,
        cut,
        next,
        &format!("{what}; then `append(transaction {})` returned Ok, and at that moment", next.id),
    )?;
    disk.finish_writes();
    holds_after_the_cut(
        disk,
        acked,
        cut,
        next,
        &format!(
            "{what}; then `append(transaction {})` returned Ok, and once every write in flight \
             had landed",
            next.id
        ),
    )
}

/// The kata's story, for a transaction 2 of `puts` lines: a request's deadline drops `append`
/// after every possible poll (both moments), while its lines are in the `BufWriter` or in a write
/// the file has in flight. Then the service appends again, the same transaction (a retry) or the
/// next request's. That append must return `Ok`, and the journal must hold transaction 1, the cut
/// transaction whole or not at all, and the new one, at once and once every write has landed.
async fn cut_anywhere_then_append_again(puts: usize) {
    let write_time = this_runs_write_time();
    let first = txn(1, 3);
    let cut = txn(2, puts);
    for next in [txn(3, 5), cut.clone()] {
        let retry = if next.id == cut.id {
            "the same transaction again (a retry)"
        } else {
            "the next request's transaction"
        };
        assert_cancel_safe(
            || fresh_journal(&first, FakeDisk::with_write_time(write_time, None)),
            |(journal, _)| {
                let cut = cut.clone();
                async move { journal.lock_owned().await.append(&cut).await }
            },
            |(journal, disk), outcome| {
                let (first, cut, next) = (first.clone(), cut.clone(), next.clone());
                async move {
                    match outcome {
                        Outcome::Completed(Ok(())) => {
                            let now = disk.read(PATH).unwrap_or_default();
                            let whole = [first.encode(), cut.encode()].concat();
                            if now != whole {
                                return Err(format!(
                                    "nothing was cut, `append` returned Ok, and the \
                                         file held {} of the {} bytes it should",
                                    now.len(),
                                    whole.len()
                                ));
                            }
                            Ok(())
                        }
                        Outcome::Completed(Err(e)) => {
                            Err(format!("nothing was cut, and `append` failed: {e}"))
                        }
                        Outcome::Cancelled { .. } => {
                            append_next_and_check(
                                &journal,
                                &disk,
                                &[&first],
                                &cut,
                                &next,
                                &format!(
                                    "{}, `append(transaction 2)` ({} bytes) was dropped, \
                                     and the service appended {retry}",
                                    on_disk(write_time),
                                    cut.encode().len()
                                ),
                            )
                            .await
                        }
                    }
                }
            },
        )
        .await;
    }
}

/// The full-disk case: the disk has room for `room` bytes of `cut` after `first`; `append(cut)`
/// is dropped after every possible poll (or returns the error), then `append(next)` must return
/// `Ok` with the journal whole.
async fn full_disk_cut_anywhere(
    write_time: Duration,
    first: &Transaction,
    cut: &Transaction,
    next: &Transaction,
    room: usize,
) {
    let capacity = first.encode().len() + room;
    let len = cut.encode().len();
    assert_cancel_safe(
        || fresh_journal(first, FakeDisk::with_write_time(write_time, Some(capacity))),
        |(journal, _)| {
            let cut = cut.clone();
            async move { journal.lock_owned().await.append(&cut).await }
        },
        |(journal, disk), outcome| {
            let (first, cut, next) = (first.clone(), cut.clone(), next.clone());
            async move {
                let what = match outcome {
                    Outcome::Completed(Ok(())) => {
                        return Err(format!(
                            "{}, the disk had room for {room} of the {len} bytes of \
                             transaction 2, and `append(transaction 2)` returned Ok",
                            on_disk(write_time)
                        ));
                    }
                    Outcome::Completed(Err(_)) => format!(
                        "{}, `append(transaction 2)` failed: the disk had room for only {room} \
                         of its {len} bytes",
                        on_disk(write_time)
                    ),
                    Outcome::Cancelled { .. } => format!(
                        "{}, `append(transaction 2)` was dropped, and the disk had room for \
                         only {room} of its {len} bytes",
                        on_disk(write_time)
                    ),
                };
                append_next_and_check(&journal, &disk, &[&first], &cut, &next, &what).await
            }
        },
    )
    .await;
}

/// One deploy of the busy-service test: `append(cut)` starts on a runtime that runs on for
/// `ran_on` (virtual time), then shuts down with the append parked in its task (`in_a_task`) or
/// is dropped first, the append after it; the blocking pool finishes its writes; `append(next)`
/// runs on a new runtime. `Ok(true)` when the append had finished before the shutdown.
fn deploy_after(
    first: &Transaction,
    cut: &Transaction,
    next: &Transaction,
    ran_on: Duration,
    in_a_task: bool,
) -> Result<bool, String> {
    let rt = runtime::local(SEEDS[0]);
    let (journal, disk) = rt.block_on(async { fresh_journal(first, FakeDisk::new()) });
    let appending = {
        let (journal, cut) = (Arc::clone(&journal), cut.clone());
        async move { journal.lock_owned().await.append(&cut).await }
    };
    let result: Rc<RefCell<Option<io::Result<()>>>> = Rc::default();
    let (how, dropped) = if in_a_task {
        let slot = Rc::clone(&result);
        rt.spawn_local(async move {
            let appended = appending.await;
            *slot.borrow_mut() = Some(appended);
        });
        rt.block_on(async { tokio::time::sleep(ran_on).await });
        let dropped = std::panic::catch_unwind(AssertUnwindSafe(move || drop(rt)));
        ("the append was parked in its task", dropped)
    } else {
        let mut appending = Box::pin(appending);
        let appended = rt.block_on(async {
            tokio::select! {
                biased;
                appended = &mut appending => Some(appended),
                () = tokio::time::sleep(ran_on) => None,
            }
        });
        *result.borrow_mut() = appended;
        drop(rt);
        let dropped = std::panic::catch_unwind(AssertUnwindSafe(move || drop(appending)));
        ("the append was dropped after the runtime was gone", dropped)
    };
    let ran = if ran_on.is_zero() {
        "the runtime shut down as soon as it had started".to_owned()
    } else {
        format!("the runtime ran on for {ran_on:?} after it started, then shut down")
    };
    let what = format!(
        "a deploy came while `append(transaction 2)` ({} bytes) was under way: {ran}, and {how}",
        cut.encode().len()
    );
    if dropped.is_err() {
        return Err(format!("{what}; that drop panicked"));
    }
    disk.finish_writes();
    let completed = match result.borrow_mut().take() {
        Some(Ok(())) => true,
        Some(Err(e)) => return Err(format!("nothing was cut, and `append` failed: {e}")),
        None => false,
    };
    let what = if completed {
        "`append(transaction 2)` returned Ok before a deploy shut the runtime down".to_owned()
    } else {
        what
    };
    let what = format!("{what}, and on a new runtime the service appended transaction 3");
    runtime::current_thread(SEEDS[0]).block_on(append_next_and_check(
        &journal,
        &disk,
        &[first],
        cut,
        next,
        &what,
    ))?;
    Ok(completed)
}

hidden_test! {
    /// The order service handles each request in a task of its own (`tokio::spawn`) on its
    /// multi-thread runtime, and each awaits `append` on the shared journal, so `append`'s future
    /// must stay `Send`, as the original is.
    async fn append_can_run_in_a_spawned_request_handler() {
        let disk = FakeDisk::new();
        let mut journal = Journal::new(disk.clone(), PATH);
        let first = txn(1, 3);
        let appending = journal.append(&first);
        assert!(
            kata_support::is_send!(appending),
            "the future returned by `append` is not `Send`, so the order service can no longer \
             `tokio::spawn` a request handler that appends to the journal on its multi-thread \
             runtime: it holds something that is not `Send` across an `.await` (an `Rc`, a \
             shared borrow of a `Cell` or `RefCell`, a drop guard holding a `Box<dyn FnOnce()>` \
             without `+ Send`, a `std` lock guard)"
        );
        if let Err(e) = appending.await {
            panic!("nothing was cut, and `append(transaction 1)` failed: {e}");
        }
        assert_eq!(disk.read(PATH).unwrap_or_default(), first.encode(), "the journal must hold it");
    }

    /// Nothing cut: transactions of every size, one after the other, from an empty journal. When
    /// `append` returns `Ok`, the file holds the transaction whole already, without waiting for
    /// the blocking pool: the caller tells the client "saved" at that moment.
    async fn appends_with_nothing_cut_are_whole_in_the_file_when_append_returns() {
        let disk = FakeDisk::new();
        let mut journal = Journal::new(disk.clone(), PATH);
        let txns = [txn(1, 3), txn(2, 70), txn(3, 170), txn(4, 1), txn(5, 110)];
        let mut expected = Vec::new();
        for t in &txns {
            if let Err(e) = journal.append(t).await {
                panic!("nothing was cut, and `append(transaction {})` failed: {e}", t.id);
            }
            expected.extend_from_slice(&t.encode());
            let now = disk.read(PATH).unwrap_or_default();
            if now != expected {
                panic!(
                    "nothing was cut: `append(transaction {})` ({} bytes) returned Ok, but at \
                     that moment the file held {} of the {} bytes it should ({} writes still \
                     in flight): Ok came before the file's last write had landed",
                    t.id,
                    t.encode().len(),
                    now.len(),
                    expected.len(),
                    disk.in_flight()
                );
            }
        }
    }

    /// The disk fills up while a transaction is written: its last write, its first, or one in
    /// the middle lands only in part and fails with `StorageFull`. `append` must return that
    /// error, not `Ok`: the client must not be told "saved".
    async fn a_write_the_disk_refuses_is_reported_not_ok() {
        for puts in [3, 70, 170] {
            let big = txn(2, puts);
            let len = big.encode().len();
            for short_by in [1, len / 2, len - 1] {
                let first = txn(1, 3);
                let disk = FakeDisk::with_capacity(first.encode().len() + len - short_by);
                let mut journal = Journal::new(disk.clone(), PATH);
                journal.append(&first).await.expect("the first transaction fits");
                let appended = journal.append(&big).await;
                disk.finish_writes();
                if appended.is_ok() {
                    let held = disk.read(PATH).unwrap_or_default().len() - first.encode().len();
                    panic!(
                        "the disk had room for {} of the {len} bytes of transaction 2, and \
                         `append(transaction 2)` returned Ok: the file holds {held} of them. The \
                         write error was swallowed, and the client is told \"saved\"",
                        len - short_by
                    );
                }
            }
        }
    }

    /// The kata's story, with a transaction of 5 KiB: it fits in the `BufWriter`, and the file
    /// writes it in two pieces when it is flushed.
    async fn a_5_kib_append_cut_anywhere_then_the_next_leaves_only_whole_transactions() {
        cut_anywhere_then_append_again(70).await;
    }

    /// The kata's story, with a transaction of 13 KiB: more than the `BufWriter` holds, so part
    /// of it goes to the file while the rest is still being written.
    async fn a_13_kib_append_cut_anywhere_then_the_next_leaves_only_whole_transactions() {
        cut_anywhere_then_append_again(170).await;
    }

    /// The disk fills up while transaction 2 is written, and `append` is dropped at every point
    /// (or returns the error). The write error belongs to transaction 2, which was never said to
    /// be saved: the next append, of a small transaction that fits once transaction 2's bytes
    /// are cut off, must return `Ok` with the journal whole. Transaction 2 is 5 KiB (it fits in
    /// a `BufWriter`'s buffer) or 13 KiB (it does not), and the disk refuses its first write, one
    /// in the middle, or its last: a cut can find the refused write in flight while lines of the
    /// transaction still wait in a buffer.
    async fn a_failed_write_of_a_dropped_append_does_not_fail_the_next() {
        let write_time = this_runs_write_time();
        let first = txn(1, 3);
        let next = txn(3, 2);
        for puts in [70, 170] {
            let cut = txn(2, puts);
            let len = cut.encode().len();
            for room in [1000, len / 2, len - 100] {
                full_disk_cut_anywhere(write_time, &first, &cut, &next, room).await;
            }
        }
    }

    /// An append is dropped while it cleans up after an earlier dropped one: a deadline cuts
    /// transaction 2 half way, and the append that follows is itself dropped after every
    /// possible poll. The append after that must still leave only whole transactions.
    async fn an_append_cut_while_it_cleans_up_after_a_cut_one() {
        let write_time = this_runs_write_time();
        let first = txn(1, 3);
        let torn = txn(2, 170);
        let second = txn(3, 60);
        let next = txn(4, 5);
        let cut_at = write_time * 3 / 2;
        assert_cancel_safe(
            || {
                let (journal, disk) =
                    fresh_journal(&first, FakeDisk::with_write_time(write_time, None));
                (journal, disk, Arc::new(AtomicBool::new(false)))
            },
            |(journal, _, third_started)| {
                let (torn, second) = (torn.clone(), second.clone());
                async move {
                    let mut journal = journal.lock_owned().await;
                    let dropped = tokio::time::timeout(cut_at, journal.append(&torn)).await;
                    assert!(
                        dropped.is_err(),
                        "a 13 KiB transaction takes more than one and a half writes"
                    );
                    third_started.store(true, Ordering::SeqCst);
                    journal.append(&second).await
                }
            },
            |(journal, disk, third_started), outcome| {
                let (first, torn, second, next) =
                    (first.clone(), torn.clone(), second.clone(), next.clone());
                async move {
                    let deadline = format!(
                        "{}, a deadline dropped `append(transaction 2)` {cut_at:?} in (half way)",
                        on_disk(write_time)
                    );
                    let what = match outcome {
                        Outcome::Completed(Err(e)) => {
                            return Err(format!(
                                "{deadline}, then `append(transaction 3)` failed: {e}"
                            ));
                        }
                        Outcome::Completed(Ok(())) => {
                            format!("{deadline}, then `append(transaction 3)` returned Ok")
                        }
                        Outcome::Cancelled { .. } if third_started.load(Ordering::SeqCst) => {
                            format!("{deadline}, then `append(transaction 3)` was dropped too")
                        }
                        Outcome::Cancelled { .. } => format!(
                            "{}, `append(transaction 2)` was dropped before its deadline",
                            on_disk(write_time)
                        ),
                    };
                    // Transactions 2 and 3 may each be there whole or not at all.
                    let appended = journal.lock().await.append(&next).await;
                    if let Err(e) = appended {
                        return Err(format!("{what}; then `append(transaction 4)` failed: {e}"));
                    }
                    disk.finish_writes();
                    let bytes = disk.read(PATH).unwrap_or_default();
                    let ids = replay(&bytes, &[&first, &torn, &second, &next]).map_err(|stops| {
                        format!(
                            "{what}; then `append(transaction 4)` returned Ok; replay of the \
                             journal stops {stops}"
                        )
                    })?;
                    let fine = ids.first() == Some(&1)
                        && ids.last() == Some(&4)
                        && ids.iter().all(|id| [1, 2, 3, 4].contains(id));
                    if fine {
                        Ok(())
                    } else {
                        Err(format!(
                            "{what}; then `append(transaction 4)` returned Ok; the journal holds {}",
                            list(&ids)
                        ))
                    }
                }
            },
        )
        .await;
    }

    /// A deploy: the runtime shuts down while `append` is parked after every possible poll, or
    /// the append is dropped after its runtime is gone. The blocking pool finishes the writes it
    /// had (a runtime waits for them), and the service starts again, on a new runtime, with the
    /// same journal, and appends the next transaction. The journal must hold whole
    /// transactions only.
    fn an_append_cut_by_a_deploy_then_the_next_leaves_only_whole_transactions() {
        let first = txn(1, 3);
        let cut = txn(2, 170);
        let next = txn(3, 5);
        assert_cancel_safe_at_shutdown(
            || fresh_journal(&first, FakeDisk::new()),
            |(journal, _)| {
                let cut = cut.clone();
                async move { journal.lock_owned().await.append(&cut).await.map_err(|e| e.kind()) }
            },
            |(journal, disk), outcome: Outcome<Result<(), io::ErrorKind>>| {
                disk.finish_writes();
                match outcome {
                    Outcome::Completed(Ok(())) => return Ok(()),
                    Outcome::Completed(Err(e)) => {
                        return Err(format!("nothing was cut, and `append` failed: {e}"));
                    }
                    Outcome::Cancelled { .. } => {}
                }
                runtime::current_thread(SEEDS[0]).block_on(append_next_and_check(
                    &journal,
                    &disk,
                    &[&first],
                    &cut,
                    &next,
                    "a deploy shut the runtime down during `append(transaction 2)`, and on a new \
                     runtime the service appended transaction 3",
                ))
            },
        );
    }

    /// A deploy while the service is busy: `append(transaction 2)` is under way, and the
    /// runtime runs on for a while (other requests, timers) before it shuts down, with the
    /// append still parked in its task, or with the append dropped after the runtime is gone.
    /// Whatever the append had started by then (on the runtime, in a task of its own) stops
    /// where it is; the blocking pool finishes its writes. The runtime runs on for every quarter
    /// of a write time until the append would have finished. On a new runtime, with the same
    /// journal, the next append must return `Ok` with the journal whole.
    fn an_append_cut_by_a_deploy_while_the_runtime_runs_on_leaves_only_whole_transactions() {
        let first = txn(1, 3);
        let cut = txn(2, 170);
        let next = txn(3, 5);
        for step in 0..200u32 {
            let ran_on = WRITE_TIME / 4 * step;
            let mut finished = true;
            for in_a_task in [true, false] {
                match deploy_after(&first, &cut, &next, ran_on, in_a_task) {
                    Ok(completed) => finished &= completed,
                    Err(seen) => panic!("{seen}"),
                }
            }
            if finished {
                return;
            }
        }
        // An append still under way after 50 ms has been cut every quarter of a write time
        // along the way: that is enough.
    }
}
