//! Hidden tests for kata 25: wherever `save` is dropped (by a deadline, a caller, or a deploy that
//! shuts the runtime down), the index lists the document exactly when its file exists, no
//! temporary file is left, and a reader, through the index or straight from the disk, sees the old
//! version or the new one in full.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use capstone_document_store::{DocStore, FakeFs, Index, STEP, WRITE_CHUNK};
use kata_support::runtime::{self, SEEDS};
use kata_support::{
    Options, Outcome, assert_cancel_safe_with, check_property, explore_at_shutdown, hidden_test,
    settle,
};
use proptest::prelude::*;

const ID: &str = "invoice-42";
const OLD: &[u8] = br#"{"invoice":42,"total":"80.00","status":"draft"}"#;
const NEW: &[u8] = br#"{"invoice":42,"total":"99.50","status":"sent","lines":3}"#;

/// Time for work the store may have shielded in a task of its own to finish before the state is
/// judged; the fake disk needs a few milliseconds per step.
const LET_SHIELDED_WORK_FINISH: Duration = Duration::from_secs(1);

/// How long the disk stalls in [`save_through_a_stall`], in one jump of the paused clock: 2^62 ms,
/// some 146 million years, beyond any deadline a save could sensibly set itself (a month, a
/// century, `Duration::MAX` clamped by tokio to some 30 years). A runtime's clock counts
/// milliseconds in a `u64`, so it can jump this far three times at most: one jump per runtime.
const FAR_END: Duration = kata_support::time::FAR_END;

/// A stall as a test message says it: `7 day(s)`, or `146 million years`.
fn spoken(stall: Duration) -> String {
    const DAY: f64 = 24.0 * 3600.0;
    const YEAR: f64 = 365.0 * DAY;
    match stall.as_secs_f64() {
        secs if secs >= 1e6 * YEAR => format!("{:.0} million years", secs / YEAR / 1e6),
        secs if secs >= DAY => format!("{:.0} day(s)", secs / DAY),
        _ => format!("{stall:?}"),
    }
}

type State = (DocStore, FakeFs, Index);

fn empty_store() -> State {
    let (fs, index) = (FakeFs::new(), Index::new());
    (DocStore::new(fs.clone(), index.clone()), fs, index)
}

/// A store that already holds version `OLD` of the document, saved and indexed.
fn store_with_old_version() -> State {
    let path = DocStore::final_path(ID);
    let fs = FakeFs::preloaded([(path.as_str(), OLD)]);
    let index = Index::preloaded([(ID, path.as_str())]);
    (DocStore::new(fs.clone(), index.clone()), fs, index)
}

/// Cuts by the clock as well as after every poll: a `save` that waits on work it handed to a task
/// is polled only when that work is done, and only the clock can cut it in the middle.
fn every_cut() -> Options {
    Options::default().cut_every(Duration::from_millis(1))
}

/// The invariants a reader relies on, checked after a (possibly cancelled) save.
fn check_consistent(
    fs: &FakeFs,
    index: &Index,
    old: Option<&[u8]>,
    new: &[u8],
) -> Result<(), String> {
    check_consistent_beside(fs, index, old, new, &[])
}

/// [`check_consistent`] on a disk that also holds the documents `others` (their own files may
/// stay; they are checked by the caller).
fn check_consistent_beside(
    fs: &FakeFs,
    index: &Index,
    old: Option<&[u8]>,
    new: &[u8],
    others: &[&str],
) -> Result<(), String> {
    let path = DocStore::final_path(ID);
    let others: Vec<String> = others.iter().map(|id| DocStore::final_path(id)).collect();
    let listed = index.contains(ID);
    let on_disk = fs.exists(&path);
    if listed && !on_disk {
        return Err(format!(
            "the index lists `{ID}` but {path} does not exist: every reader now gets \"document \
             missing\". Either the index entry was made before the file was in place and the \
             save was dropped in between, or the file was deleted after the entry was made (an \
             `Index::insert` dropped after its first poll has still inserted: cancelled does not \
             mean \"did not happen\")"
        ));
    }
    if on_disk && !listed {
        if old.is_some_and(|old| fs.read(&path).as_deref() == Some(old)) {
            return Err(format!(
                "{path} still holds the previous version, but the index no longer lists `{ID}`: \
                 the save removed the entry of a document that was in place and never put it \
                 back. Nobody can find the document now"
            ));
        }
        return Err(format!(
            "{path} exists but the index does not list `{ID}`: an orphan document nobody can \
             find. The file was put in place, and the index entry never followed (or was \
             removed)"
        ));
    }
    let leftovers: Vec<String> =
        fs.paths().into_iter().filter(|p| *p != path && !others.contains(p)).collect();
    if !leftovers.is_empty() {
        let and_others = if others.is_empty() { "" } else { " and the other documents' files" };
        return Err(format!(
            "{leftovers:?} left behind on the disk, which should hold only {path}{and_others}: \
             the save created a file that nothing deleted. Over a day of cancelled saves the disk fills \
             with them"
        ));
    }
    if let Some(content) = fs.read(&path) {
        let is_old = old.is_some_and(|old| content == old);
        if !is_old && content != new {
            return Err(format!(
                "{path} holds {} bytes that are neither the previous version nor the new one in \
                 full: {:?}",
                content.len(),
                String::from_utf8_lossy(&content)
            ));
        }
    }
    if old.is_some() && !listed {
        return Err(format!(
            "the previous version of `{ID}` is gone: a save that is dropped must leave the old \
             document in place"
        ));
    }
    Ok(())
}

/// How long the reader keeps looking after the save returned or was cut.
const READER_WATCHES: Duration = Duration::from_millis(100);

/// One save watched by a reader: of a new document or a replacement, with a note of `len` bytes,
/// cut by a deadline after `deadline_ms` (or never).
#[derive(Clone)]
struct Watched {
    replace: bool,
    len: usize,
    deadline_ms: Option<u64>,
}

impl Watched {
    /// The document saved: a small JSON object around a note of `len` bytes.
    fn body(&self) -> Vec<u8> {
        format!(r#"{{"invoice":42,"note":"{}"}}"#, "x".repeat(self.len)).into_bytes()
    }
}

/// Read by a learner as "the smallest failing scenario: ...", so it says what the scenario is.
impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.replace { "replacing a document" } else { "saving a new document" };
        write!(f, "{what} with a body of {} bytes, ", self.body().len())?;
        match self.deadline_ms {
            Some(ms) => write!(f, "under a deadline of {ms} ms"),
            None => write!(f, "with no deadline"),
        }
    }
}

fn watched_saves() -> impl Strategy<Value = Watched> {
    (any::<bool>(), 1usize..80, proptest::option::of(0u64..60))
        .prop_map(|(replace, len, deadline_ms)| Watched { replace, len, deadline_ms })
}

/// What a reader may see of the document: the previous version or the new one, in full, and an
/// index entry only with its file. The reader looks through the index (`load`) and also opens
/// `docs/<id>.json` by its path, as a backup job or a file server would.
fn check_reader_view(
    store: &DocStore,
    fs: &FakeFs,
    index: &Index,
    old: Option<&[u8]>,
    new: &[u8],
) -> Result<(), String> {
    let path = DocStore::final_path(ID);
    if let Some(content) = fs.read(&path)
        && !old.is_some_and(|old| content == old)
        && content != new
    {
        let listed = if index.contains(ID) { "already listed" } else { "did not list" };
        return Err(format!(
            "it opened {path} directly and found {} bytes, neither the previous version nor the \
             new one ({} bytes) in full: half a file under the document's own name, which a \
             backup job would copy (the index {listed} `{ID}` at that moment)",
            content.len(),
            new.len()
        ));
    }
    let listed = index.contains(ID);
    match store.load(ID) {
        None if listed => {
            Err(format!("the index listed `{ID}` but load() found no file: \"document missing\""))
        }
        None if old.is_some() => Err("load() found no document, although the previous version \
            must stay readable until the new one replaces it"
            .to_owned()),
        None => Ok(()),
        Some(content) if old.is_some_and(|old| content == old) || content == new => Ok(()),
        Some(content) => Err(format!(
            "load() returned {} bytes that are neither the previous version nor the new one in \
             full",
            content.len()
        )),
    }
}

/// What a deploy at one instant left behind: how the save ended before the runtime went.
enum Deployed {
    /// `save` returned before the deploy, with this result.
    Returned(std::io::Result<()>),
    /// `save` was still running when the runtime shut down.
    Cut,
}

/// A request handler calls `save` in a task of its own; a deploy shuts the runtime down `at`
/// into the save, once every task that was ready at that instant has run (so the runtime is
/// idle: every task waits for a timer or for another task). Nothing runs after the shutdown,
/// neither the handler's task nor any task the save spawned. Returns how the save ended, or the
/// panic that the shutdown raised.
fn deploy_at(seed: u64, fresh: fn() -> State, at: Duration) -> Result<(State, Deployed), String> {
    let rt = runtime::local(seed);
    let state = rt.block_on(async { fresh() });
    let returned = Arc::new(Mutex::new(None));
    {
        let ((store, _, _), returned) = (state.clone(), returned.clone());
        rt.spawn_local(async move {
            let result = store.save(ID, NEW).await;
            *returned.lock().expect("result lock") = Some(result);
        });
    }
    rt.block_on(async {
        tokio::time::sleep(at).await;
        settle().await;
    });
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let shutdown = std::panic::catch_unwind(AssertUnwindSafe(move || drop(rt)));
    std::panic::set_hook(hook);
    if let Err(panic) = shutdown {
        let panic = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        return Err(format!("the runtime's shutdown panicked: {panic}"));
    }
    let ended = returned.lock().expect("result lock").take();
    Ok((state, ended.map_or(Deployed::Cut, Deployed::Returned)))
}

/// A request handler polls `save` (every millisecond of virtual time, as a task would be polled,
/// and as often as `save` needs), and a deploy shuts the runtime down right after the poll number
/// `cut_after`, before any other task gets to run: a task spawned in that poll is dropped without
/// ever being polled. `parked` says whether `save` is parked in a task at the shutdown, or dropped
/// after the runtime is gone. Returns the state, how the save ended, and whether the save ended
/// before that poll (then there is nothing further to cut).
fn deploy_right_after_poll(
    seed: u64,
    fresh: fn() -> State,
    cut_after: usize,
    parked: bool,
) -> Result<(State, Deployed, bool), String> {
    let rt = runtime::local(seed);
    let state = rt.block_on(async { fresh() });
    let mut save: Pin<Box<dyn Future<Output = std::io::Result<()>>>> = {
        let _in = rt.handle().enter();
        let (store, _, _) = state.clone();
        Box::pin(async move { store.save(ID, NEW).await })
    };
    let (ended, finished_early) = rt.block_on(async {
        let mut polls = 0;
        loop {
            let poll = std::future::poll_fn(|cx| Poll::Ready(save.as_mut().poll(cx))).await;
            polls += 1;
            if let Poll::Ready(result) = poll {
                return (Deployed::Returned(result), polls < cut_after);
            }
            if polls >= cut_after {
                return (Deployed::Cut, false);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let shutdown = std::panic::catch_unwind(AssertUnwindSafe(move || {
        if parked {
            rt.spawn_local(async move {
                let _parked = save;
                std::future::pending::<()>().await;
            });
            drop(rt);
        } else {
            drop(rt);
            drop(save);
        }
    }));
    std::panic::set_hook(hook);
    if let Err(panic) = shutdown {
        let panic = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        return Err(format!("the runtime's shutdown panicked: {panic}"));
    }
    Ok((state, ended, finished_early))
}

/// The next version, saved by a retry right after a cut.
const RETRY: &[u8] = br#"{"invoice":42,"total":"99.50","status":"sent","lines":3,"retry":1}"#;

/// What a save cut by a deadline left to run: the rest of a task it spawned, or the cancellation
/// of a task it told to stop, which the runtime carries out the next time it gets to that task.
///
/// On a multi-thread runtime a retry may start on another worker thread before that happens. Two
/// paused runtimes stand for the two threads, deterministically: `first` runs the save until it
/// is cut `cut_ms` into its work (dropped between two of `first`'s turns, so nothing it left runs
/// yet), and `other` runs the retry, a request handler's task. Then, every millisecond of virtual
/// time, `other` runs first and `first` right after it, until the retry returns. Returns what
/// went wrong, if anything.
fn retry_on_another_worker(seed: u64, fresh: fn() -> State, cut_ms: u64) -> Result<(), String> {
    use std::cell::RefCell;
    use std::rc::Rc;

    let tick = Duration::from_millis(1);
    let (first, other) = (runtime::local(seed), runtime::local(seed));
    let (store, fs, index) = fresh();
    let mut save: Pin<Box<dyn Future<Output = std::io::Result<()>>>> = {
        let store = store.clone();
        Box::pin(async move { store.save(ID, NEW).await })
    };
    // Polled every millisecond, as a handler's task polls it, up to the cut.
    let finished = first.block_on(async {
        let start = tokio::time::Instant::now();
        loop {
            let poll = std::future::poll_fn(|cx| Poll::Ready(save.as_mut().poll(cx))).await;
            if poll.is_ready() {
                return true;
            }
            if start.elapsed() >= Duration::from_millis(cut_ms) {
                return false;
            }
            tokio::time::sleep(tick).await;
        }
    });
    {
        // The deadline drops `save`; `first` does not get another turn before the retry starts.
        let _in = first.handle().enter();
        drop(save);
    }
    let retried = Rc::new(RefCell::new(None));
    {
        let (store, retried) = (store.clone(), retried.clone());
        let mut retry: Pin<Box<dyn Future<Output = ()>>> = Box::pin(async move {
            let result = store.save(ID, RETRY).await;
            *retried.borrow_mut() = Some(result);
        });
        // The retry starts at once: its first poll comes straight after the drop, before any
        // thread runs anything else, so a cleanup the drop left to run later (on a thread of its
        // own, say) meets the retry's files, as it does on a busy server.
        let first_poll = {
            let _in = other.handle().enter();
            retry.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        };
        if first_poll.is_pending() {
            other.spawn_local(retry);
        }
    }
    let cut = if finished { "finished before its deadline" } else { "cut" };
    let what = format!(
        "a save was {cut} {cut_ms} ms into its work, and a retry with the next version started \
         at once on another worker thread, which each millisecond ran the retry's work before \
         the save's own thread ran whatever the cut save had left to run (a multi-thread runtime \
         may order them so)"
    );
    let mut result = None;
    for _ in 0..1000 {
        other.block_on(async { tokio::time::sleep(tick).await });
        first.block_on(async { tokio::time::sleep(tick).await });
        result = retried.borrow_mut().take();
        if result.is_some() {
            break;
        }
    }
    let Some(result) = result else {
        return Err(format!("{what}; the retry had not returned a second later"));
    };
    if let Err(e) = result {
        return Err(format!(
            "{what}; the retry failed ({:?}: {e}). Disk: {:?}. Something the cut save left behind (a \
             task still running, or one told to stop that had not stopped yet) ran after the \
             retry had started, and deleted or moved the retry's temporary file",
            e.kind(),
            fs.paths()
        ));
    }
    let seen = |when: &str| -> Result<(), String> {
        match store.load(ID) {
            Some(doc) if doc == RETRY => {}
            other => {
                return Err(format!(
                    "{what}; the retry returned Ok, but {when} load() returned {:?}, not the \
                     retry's version",
                    other.map(|d| String::from_utf8_lossy(&d).into_owned())
                ));
            }
        }
        check_consistent(&fs, &index, None, RETRY)
            .map_err(|e| format!("{what}; the retry returned Ok, and {when}: {e}"))
    };
    seen("right after it returned")?;
    other.block_on(async { tokio::time::sleep(LET_SHIELDED_WORK_FINISH).await });
    first.block_on(async { tokio::time::sleep(LET_SHIELDED_WORK_FINISH).await });
    seen("a second after it returned")
}

/// How long the reader keeps looking after overlapping saves have all returned or been cut.
const OVERLAP_READER_WATCHES: Duration = Duration::from_millis(30);

/// One of several saves of the same document that overlap (two requests, a client's retry racing
/// a request still running on another connection): it starts `start_ms` into the scenario, saves
/// `body`, and is cut by a deadline `cut_ms` after its start (or never).
struct Overlapping {
    start_ms: u64,
    body: Vec<u8>,
    cut_ms: Option<u64>,
}

/// Describes a scenario of overlapping saves for a failure message.
fn describe_overlap(replace: bool, saves: &[Overlapping]) -> String {
    let what = if replace { "replacing a document" } else { "saving a new document" };
    let each: Vec<String> = saves
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let cut = match s.cut_ms {
                Some(ms) => format!("cut by a deadline {ms} ms after its start"),
                None => "not cut".to_owned(),
            };
            let body = match saves[..i].iter().position(|earlier| earlier.body == s.body) {
                Some(j) => format!("the same body as save {}", j + 1),
                None => format!("{} bytes of {:?}", s.body.len(), s.body[0] as char),
            };
            format!("save {} of {body} starting at {} ms, {cut}", i + 1, s.start_ms)
        })
        .collect();
    format!("{what} with {} saves of it overlapping ({})", saves.len(), each.join("; "))
}

/// Whether `content` is one of the versions a reader may find: the previous one or one of the
/// overlapping saves' bodies, in full.
fn is_whole_version(content: &[u8], old: Option<&[u8]>, saves: &[Overlapping]) -> bool {
    old.is_some_and(|old| content == old) || saves.iter().any(|s| content == s.body.as_slice())
}

/// Where overlapping saves run, as the requests of a real server do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handlers {
    /// Through clones of one store, polled together by the test body (no task of their own).
    OneStore,
    /// Each through a store of its own, `DocStore::new` over the same disk and index (a store
    /// built per request handler, or per worker).
    StoreEach,
    /// Each in a task of its own (`tokio::spawn`), as request handlers are.
    TaskEach,
    /// All in one spawned task, polled together (one connection task serving pipelined or HTTP/2
    /// requests, or a batch endpoint joining them).
    OneTask,
    /// Each polled on a thread of its own, as the handlers of a multi-thread runtime are on
    /// different worker threads.
    ThreadEach,
}

impl std::fmt::Display for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Handlers::OneStore => "through one store",
            Handlers::StoreEach => {
                "each through a store of its own built with `DocStore::new` over the same disk \
                 and index"
            }
            Handlers::TaskEach => "each in a spawned task of its own",
            Handlers::OneTask => "all in one spawned task (one connection serving both requests)",
            Handlers::ThreadEach => "each on a worker thread of its own",
        })
    }
}

/// Runs one scenario of overlapping saves on a runtime of its own, with the next seed (each
/// scenario once, the seeds spread over them), and fails the test with what was observed.
fn overlap_case(case: &mut usize, replace: bool, saves: &[Overlapping]) {
    overlap_case_in(case, Handlers::OneStore, replace, saves);
}

/// [`overlap_case`], with the saves run as `handlers` says.
fn overlap_case_in(case: &mut usize, handlers: Handlers, replace: bool, saves: &[Overlapping]) {
    let seed = SEEDS[*case % SEEDS.len()];
    *case += 1;
    let seen = runtime::current_thread(seed).block_on(run_overlapping(handlers, replace, saves));
    if let Err(seen) = seen {
        let how = match handlers {
            Handlers::OneStore => String::new(),
            other => format!(", {other}"),
        };
        panic!("{}{how}: {seen}", describe_overlap(replace, saves));
    }
}

/// What one overlapping save returned: `None` if its deadline cut it.
type SaveEnd = Option<std::io::Result<()>>;

/// One overlapping save that is `Send`, ready to run in a task or on a thread of its own.
type SaveFuture = Pin<Box<dyn Future<Output = SaveEnd> + Send>>;

/// One overlapping save, boxed as it is: `Send` or not. A `save` whose future is not `Send` fails
/// `save_can_run_in_a_spawned_handler`; here it still runs where no `Send` is needed, and a
/// `Send` bound would keep the hidden tests from compiling at all.
enum BoxedSave {
    Sendable(SaveFuture),
    Local(Pin<Box<dyn Future<Output = SaveEnd>>>),
}

/// A save's future that `kata_support::is_send!` found `Send`, where its type was concrete,
/// wrapped so that it can be boxed as `Send` in code that cannot name that type. A `Send` bound
/// on the learner's future would keep the hidden tests from compiling at all for a `save` whose
/// future is not `Send`.
struct CheckedSend<F>(F);

// SAFETY: only built (in `run_overlapping`) for a future made of `DocStore::save`'s future,
// which `is_send!` found `Send`, and of values that are `Send`.
unsafe impl<F> Send for CheckedSend<F> {}

impl<F: Future> Future for CheckedSend<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        // SAFETY: the inner future is never moved out of the pinned wrapper.
        unsafe { self.map_unchecked_mut(|wrapped| &mut wrapped.0) }.poll(cx)
    }
}

/// Polls `saves` together until each has ended, as `handlers` says, and returns what each
/// returned.
async fn drive_saves(handlers: Handlers, saves: Vec<BoxedSave>) -> Result<Vec<SaveEnd>, String> {
    if matches!(handlers, Handlers::OneStore | Handlers::StoreEach) {
        let local: Vec<Pin<Box<dyn Future<Output = SaveEnd>>>> = saves
            .into_iter()
            .map(|save| match save {
                BoxedSave::Sendable(save) => save as Pin<Box<dyn Future<Output = SaveEnd>>>,
                BoxedSave::Local(save) => save,
            })
            .collect();
        return Ok(poll_together(local).await);
    }
    let mut sendable = Vec::new();
    for save in saves {
        match save {
            BoxedSave::Sendable(save) => sendable.push(save),
            BoxedSave::Local(_) => {
                return Err(format!(
                    "the future returned by `save` is not `Send`, so a request handler cannot run \
                     it {handlers}"
                ));
            }
        }
    }
    Ok(match handlers {
        Handlers::OneStore | Handlers::StoreEach => unreachable!("run above"),
        Handlers::OneTask => {
            tokio::spawn(poll_together(sendable)).await.expect("the saves' task panicked")
        }
        Handlers::TaskEach => {
            let tasks: Vec<_> = sendable.into_iter().map(tokio::spawn).collect();
            let mut ended = Vec::new();
            for task in tasks {
                ended.push(task.await.expect("a save's task panicked"));
            }
            ended
        }
        Handlers::ThreadEach => poll_on_threads(sendable).await,
    })
}

/// Polls every save in turn, in the calling task, until each has ended.
async fn poll_together<F: Future<Output = SaveEnd> + ?Sized>(
    mut running: Vec<Pin<Box<F>>>,
) -> Vec<SaveEnd> {
    let mut ended: Vec<Option<SaveEnd>> = running.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (fut, end) in running.iter_mut().zip(ended.iter_mut()) {
            if end.is_none()
                && let Poll::Ready(result) = fut.as_mut().poll(cx)
            {
                *end = Some(result);
            }
        }
        if ended.iter().all(Option::is_some) { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    drop(running);
    ended.into_iter().map(|end| end.expect("every save ended")).collect()
}

/// Polls each save on a thread of its own (within this runtime, whose handle each thread enters),
/// one poll at a time and in turn, so the scenario is the same on every run: only the thread a
/// save is polled on differs, as it does for handlers on a multi-thread runtime.
async fn poll_on_threads(saves: Vec<SaveFuture>) -> Vec<SaveEnd> {
    use std::sync::mpsc;
    use std::task::Waker;
    let handle = tokio::runtime::Handle::current();
    let mut workers: Vec<_> = saves
        .into_iter()
        .map(|mut save| {
            let (poll_tx, poll_rx) = mpsc::channel::<Waker>();
            let (seen_tx, seen_rx) = mpsc::channel::<Poll<SaveEnd>>();
            let handle = handle.clone();
            let thread = std::thread::spawn(move || {
                let _runtime = handle.enter();
                while let Ok(waker) = poll_rx.recv() {
                    let seen = save.as_mut().poll(&mut std::task::Context::from_waker(&waker));
                    let done = seen.is_ready();
                    if seen_tx.send(seen).is_err() || done {
                        break;
                    }
                }
                // A save that did not end is dropped here, on its own thread.
                drop(save);
            });
            (poll_tx, seen_rx, thread)
        })
        .collect();
    let mut ended: Vec<Option<SaveEnd>> = workers.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for ((poll_tx, seen_rx, _), end) in workers.iter_mut().zip(ended.iter_mut()) {
            if end.is_some() {
                continue;
            }
            poll_tx.send(cx.waker().clone()).expect("a save's thread is gone");
            match seen_rx.recv().expect("a save panicked on its thread") {
                Poll::Ready(result) => *end = Some(result),
                Poll::Pending => {}
            }
        }
        if ended.iter().all(Option::is_some) { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    for (poll_tx, _, thread) in workers {
        drop(poll_tx);
        thread.join().expect("a save's thread panicked");
    }
    ended.into_iter().map(|end| end.expect("every save ended")).collect()
}

/// Runs overlapping saves of one document where `handlers` says, with a reader looking every millisecond,
/// and judges what every save returned and what the store holds at every moment and after.
async fn run_overlapping(
    handlers: Handlers,
    replace: bool,
    saves: &[Overlapping],
) -> Result<(), String> {
    let (store, fs, index) = if replace { store_with_old_version() } else { empty_store() };
    let old = replace.then_some(OLD);
    let path = DocStore::final_path(ID);
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (fs, index, done) = (fs.clone(), index.clone(), done.clone());
        let store = store.clone();
        let versions: Vec<Vec<u8>> = saves.iter().map(|s| s.body.clone()).collect();
        let path = path.clone();
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            while !done.load(Ordering::SeqCst) {
                let ms = start.elapsed().as_millis();
                let whole = |c: &[u8]| {
                    old.is_some_and(|old| c == old) || versions.iter().any(|v| c == v.as_slice())
                };
                if let Some(content) = fs.read(&path)
                    && !whole(&content)
                {
                    return Err(format!(
                        "a reader opened {path} {ms} ms in and found {} bytes that are none of \
                         the versions in full: {:?}",
                        content.len(),
                        String::from_utf8_lossy(&content)
                    ));
                }
                if index.contains(ID) && store.load(ID).is_none() {
                    return Err(format!(
                        "a reader {ms} ms in found `{ID}` in the index but no file: \"document \
                         missing\""
                    ));
                }
                if old.is_some() && store.load(ID).is_none() {
                    return Err(format!(
                        "a reader {ms} ms in found no document where the previous version stood"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Ok(())
        })
    };
    // Every save polled in turn, so the scenario is the same on every run.
    let save_is_send = kata_support::is_send!(store.save(ID, b""));
    // What `load` returned right after a save returned Ok (in the same poll), if it was neither
    // that save's version nor that of a save that overlapped it.
    let not_in_place: Arc<std::sync::Mutex<Vec<(usize, Option<Vec<u8>>)>>> = Arc::default();
    // Which saves have started and which have ended, as each save sees it.
    let lifetimes: Arc<std::sync::Mutex<(Vec<bool>, Vec<bool>)>> =
        Arc::new(std::sync::Mutex::new((vec![false; saves.len()], vec![false; saves.len()])));
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(saves.iter().map(|s| s.body.clone()).collect());
    let running: Vec<BoxedSave> = saves
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let store = match handlers {
                Handlers::StoreEach => DocStore::new(fs.clone(), index.clone()),
                _ => store.clone(),
            };
            let (start_ms, cut_ms, body) = (s.start_ms, s.cut_ms, s.body.clone());
            let (not_in_place, lifetimes, bodies) =
                (not_in_place.clone(), lifetimes.clone(), bodies.clone());
            let save = async move {
                tokio::time::sleep(Duration::from_millis(start_ms)).await;
                // The saves that had ended before this one started did not overlap it.
                let ended_before = {
                    let mut lifetimes = lifetimes.lock().expect("lifetimes");
                    lifetimes.0[i] = true;
                    lifetimes.1.clone()
                };
                let ended = match cut_ms {
                    Some(ms) => {
                        tokio::time::timeout(Duration::from_millis(ms), store.save(ID, &body))
                            .await
                            .ok()
                    }
                    None => Some(store.save(ID, &body).await),
                };
                let mut lifetimes = lifetimes.lock().expect("lifetimes");
                if let Some(Ok(())) = ended {
                    // Right then, in the same poll: its own version is in place, or that of a
                    // save that overlapped it and renamed its file after this one's rename.
                    let seen = store.load(ID);
                    let overlapped = |j: usize| lifetimes.0[j] && !ended_before[j];
                    let fine = seen.as_deref().is_some_and(|seen| {
                        seen == body
                            || (0..bodies.len()).any(|j| overlapped(j) && seen == bodies[j])
                    });
                    if !fine {
                        not_in_place.lock().expect("not in place").push((i, seen));
                    }
                }
                lifetimes.1[i] = true;
                ended
            };
            if save_is_send {
                BoxedSave::Sendable(Box::pin(CheckedSend(save)))
            } else {
                BoxedSave::Local(Box::pin(save))
            }
        })
        .collect();
    let ended = drive_saves(handlers, running).await?;
    // The reader goes on looking while work a save handed to a task may still run.
    tokio::time::sleep(OVERLAP_READER_WATCHES).await;
    done.store(true, Ordering::SeqCst);
    tokio::time::sleep(LET_SHIELDED_WORK_FINISH).await;
    reader.await.map_err(|e| format!("the reader panicked: {e}"))??;
    for (i, end) in ended.into_iter().enumerate() {
        if let Some(Err(e)) = end {
            return Err(format!(
                "save {} failed: {e}. Another save of the same document got in its way (two \
                 saves writing, renaming or deleting the same temporary file). Disk: {:?}",
                i + 1,
                fs.paths()
            ));
        }
    }
    if let Some((i, seen)) = not_in_place.lock().expect("not in place").first() {
        return Err(format!(
            "save {} returned Ok, but load() right then returned {}, neither its version nor that \
             of a save that overlapped it: when a save returns Ok its version has gone in (and \
             only a save running beside it may have replaced it since), however many saves of \
             the document run",
            i + 1,
            match seen {
                Some(doc) => format!("{:?}", String::from_utf8_lossy(doc)),
                None => "no document".to_owned(),
            }
        ));
    }
    let listed = index.contains(ID);
    let leftovers: Vec<String> = fs.paths().into_iter().filter(|p| *p != path).collect();
    if !leftovers.is_empty() {
        return Err(format!(
            "once every save had ended, {leftovers:?} was left on the disk, which should hold \
             only {path}"
        ));
    }
    match fs.read(&path) {
        None => {
            return Err(format!(
                "once every save had ended, {path} does not exist (the index {} `{ID}`), \
                 although a save that was not cut returned Ok",
                if listed { "lists" } else { "does not list" }
            ));
        }
        Some(content) => {
            if !listed {
                return Err(format!("{path} exists but the index does not list `{ID}`"));
            }
            // At least one save of every scenario is not cut and returned Ok, so the previous
            // version must be gone and one of the new ones in place.
            if !is_whole_version(&content, None, saves) {
                return Err(format!(
                    "once every save had ended, every one that was not cut having returned Ok, \
                     {path} holds {} bytes that are not one of the saved versions in full: {:?}",
                    content.len(),
                    String::from_utf8_lossy(&content)
                ));
            }
        }
    }
    Ok(())
}

/// How many saves of one document the burst runs at once. Above 65 536, so that a counter that
/// comes round again after 2^16 names gives two running saves one name; and enough that among as
/// many random names of 26 bits or fewer two are all but certainly equal (about 36 equal pairs
/// expected among 26-bit names, so all are distinct with probability e^-36 < 10^-15), while 64
/// random bits collide with probability under 10^-9 (the solution README says where the line is).
const BURST: usize = 70_000;

/// Runs `count` saves of one new document at once, each in a task of its own (a local task, so
/// that a `save` whose future is not `Send` runs too), all started in the same instant, none cut,
/// and judges what each returned and what the store holds once all have ended.
async fn burst_of_saves(count: usize) -> Result<(), String> {
    let (store, fs, index) = empty_store();
    let local = tokio::task::LocalSet::new();
    // Each save that returned Ok while `load` right then returned another version.
    let not_in_place: std::rc::Rc<std::cell::RefCell<Vec<(usize, Option<Vec<u8>>)>>> =
        std::rc::Rc::default();
    let saves: Vec<_> = (0..count)
        .map(|i| {
            let store = store.clone();
            let not_in_place = not_in_place.clone();
            local.spawn_local(async move {
                let body = i.to_string();
                store.save(ID, body.as_bytes()).await?;
                // Right then, in the same poll: its own version is in place, or that of another
                // save of the burst (all of them overlap).
                let seen = store.load(ID);
                let of_the_burst = seen
                    .as_deref()
                    .and_then(|doc| std::str::from_utf8(doc).ok())
                    .and_then(|text| text.parse::<usize>().ok().filter(|n| text == n.to_string()))
                    .is_some_and(|n| n < count);
                if !of_the_burst {
                    not_in_place.borrow_mut().push((i, seen));
                }
                Ok(())
            })
        })
        .collect();
    let failed: Vec<(usize, std::io::Error)> = local
        .run_until(async {
            let mut failed = Vec::new();
            for (i, save) in saves.into_iter().enumerate() {
                if let Err(e) = save.await.expect("a save's task panicked") {
                    failed.push((i, e));
                }
            }
            failed
        })
        .await;
    tokio::time::sleep(LET_SHIELDED_WORK_FINISH).await;
    if let Some((i, e)) = failed.first() {
        return Err(format!(
            "{} of the {count} saves failed, expected every one to return Ok (save {}: {e}). \
             Two saves that ran at the same time got in each other's way (writing, renaming or \
             deleting one temporary file): a save's temporary name must be its own for as long \
             as it runs, among however many saves run at once",
            failed.len(),
            i + 1
        ));
    }
    if let Some((i, seen)) = not_in_place.borrow().first() {
        return Err(format!(
            "{} of the {count} saves returned Ok while load() right then returned none of the \
             burst's versions (save {}: {}): when a save returns Ok its version has gone in (and \
             only a save running beside it may have replaced it since), however many saves of \
             the document run",
            not_in_place.borrow().len(),
            i + 1,
            match seen {
                Some(doc) => format!("{:?}", String::from_utf8_lossy(doc)),
                None => "no document".to_owned(),
            }
        ));
    }
    let path = DocStore::final_path(ID);
    let leftovers: Vec<String> = fs.paths().into_iter().filter(|p| *p != path).collect();
    if !leftovers.is_empty() {
        return Err(format!(
            "once every save had returned Ok, {} other files were left on the disk (first: {:?}), \
             which should hold only {path}",
            leftovers.len(),
            leftovers.first()
        ));
    }
    let content = fs.read(&path).unwrap_or_default();
    let whole = std::str::from_utf8(&content)
        .ok()
        .and_then(|text| text.parse::<usize>().ok())
        .is_some_and(|i| i < count && content == i.to_string().as_bytes());
    if !whole || !index.contains(ID) {
        return Err(format!(
            "once every save had returned Ok, {path} holds {:?} (indexed: {}), expected one of \
             the saved versions in full, indexed",
            String::from_utf8_lossy(&content),
            index.contains(ID)
        ));
    }
    Ok(())
}

/// Overlapping saves of one document with staggered lifetimes: some start after others have
/// returned while others are still running. A property over such schedules, run as `handlers`
/// says.
struct Staggered {
    handlers: Handlers,
    replace: bool,
    saves: Vec<Overlapping>,
}

/// Read by a learner as "the smallest failing scenario: ...", so it says what the scenario is.
impl std::fmt::Debug for Staggered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, {}", describe_overlap(self.replace, &self.saves), self.handlers)
    }
}

/// Three to six saves of one document, each starting in the first 50 ms and taking up to 65 ms
/// (up to 160 bytes), any but one maybe cut by a deadline, some re-sending the body of an earlier
/// one (a client's retry of a request that may still be running, and may yet be cut); through one
/// store, a store each, a task each, or one task.
fn staggered_saves() -> impl Strategy<Value = Staggered> {
    let handlers = prop_oneof![
        Just(Handlers::OneStore),
        Just(Handlers::StoreEach),
        Just(Handlers::TaskEach),
        Just(Handlers::OneTask),
    ];
    let save = (
        0u64..50,
        1usize..=160,
        proptest::option::weighted(0.25, 0u64..70),
        proptest::option::weighted(0.3, any::<prop::sample::Index>()),
    );
    let schedule = proptest::collection::vec(save, 3..=6);
    (handlers, any::<bool>(), schedule, any::<prop::sample::Index>()).prop_map(
        |(handlers, replace, drawn, uncut)| {
            // One save is never cut, so the document must end as one of the new versions.
            let uncut = uncut.index(drawn.len());
            let mut saves: Vec<Overlapping> = Vec::with_capacity(drawn.len());
            for (i, ((start_ms, len, cut_ms, resend), letter)) in
                drawn.into_iter().zip(b'A'..).enumerate()
            {
                let body = match resend {
                    Some(of) if i > 0 => saves[of.index(i)].body.clone(),
                    _ => vec![letter; len],
                };
                saves.push(Overlapping {
                    start_ms,
                    body,
                    cut_ms: if i == uncut { None } else { cut_ms },
                });
            }
            Staggered { handlers, replace, saves }
        },
    )
}

/// Documents stored beside `invoice-42`, whose ids extend its id or are plain numbers: ids a
/// document service really holds, and every one of them a file `docs/<id>.json`.
const NEIGHBOURS: &[&str] = &[
    "invoice-42-0",
    "invoice-42-1",
    "invoice-42-7",
    "invoice-42.0",
    "invoice-42.1",
    "invoice-42.tmp",
    "invoice-42-tmp",
    "invoice-420",
    "invoice-4",
    "42",
    "0",
    "1",
    "7",
    "tmp",
];

/// The neighbour that is saved (not cut) while `invoice-42` is.
const SAVED_NEIGHBOUR: &str = "invoice-42-1";

/// Version `version` of the neighbour `id`.
fn neighbour_body(id: &str, version: u32) -> Vec<u8> {
    format!(r#"{{"id":"{id}","version":{version}}}"#).into_bytes()
}

/// The document whose file `path` is, if it is one: every id names a document, stored at
/// `docs/<id>.json`.
fn document_at(path: &str) -> Option<&str> {
    let id = path.strip_prefix("docs/")?.strip_suffix(".json")?;
    (!id.contains('/')).then_some(id)
}

/// A store holding every neighbour (version 1), and the previous version of `invoice-42` if
/// `replace`.
fn store_with_neighbours(replace: bool) -> State {
    let mut files: Vec<(String, Vec<u8>)> =
        NEIGHBOURS.iter().map(|id| (DocStore::final_path(id), neighbour_body(id, 1))).collect();
    let mut entries: Vec<(&str, String)> =
        NEIGHBOURS.iter().map(|id| (*id, DocStore::final_path(id))).collect();
    if replace {
        files.push((DocStore::final_path(ID), OLD.to_vec()));
        entries.push((ID, DocStore::final_path(ID)));
    }
    let fs = FakeFs::preloaded(files.iter().map(|(p, b)| (p.as_str(), b.as_slice())));
    let index = Index::preloaded(entries.iter().map(|(id, p)| (*id, p.as_str())));
    (DocStore::new(fs.clone(), index.clone()), fs, index)
}

/// What a reader of the other documents may see while `invoice-42` and `invoice-42-1` are saved:
/// every other document indexed and whole as it was (`invoice-42-1` its previous version or its
/// new one, or only its new one once `neighbour_saved`), and no file under the name of a document
/// that nobody saved.
fn check_neighbours(
    store: &DocStore,
    fs: &FakeFs,
    index: &Index,
    neighbour_saved: bool,
) -> Result<(), String> {
    for id in NEIGHBOURS {
        let path = DocStore::final_path(id);
        let (old, new) = (neighbour_body(id, 1), neighbour_body(id, 2));
        let allowed: &[&[u8]] = match *id {
            SAVED_NEIGHBOUR if neighbour_saved => &[&new],
            SAVED_NEIGHBOUR => &[&old, &new],
            _ => &[&old],
        };
        if index.path_of(id).as_deref() != Some(path.as_str()) {
            return Err(format!(
                "the index no longer lists document `{id}` at {path} (it says {:?}): saving \
                 `{ID}` changed another document's entry",
                index.path_of(id)
            ));
        }
        match (fs.read(&path), store.load(id)) {
            (Some(on_disk), Some(loaded))
                if allowed.contains(&on_disk.as_slice()) && on_disk == loaded => {}
            (on_disk, _) => {
                return Err(format!(
                    "document `{id}` ({path}) held {:?} instead of {}: saving `{ID}` wrote, \
                     moved or deleted another document's file",
                    on_disk.map(|c| String::from_utf8_lossy(&c).into_owned()),
                    allowed
                        .iter()
                        .map(|c| format!("{:?}", String::from_utf8_lossy(c)))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ));
            }
        }
    }
    for path in fs.paths() {
        if let Some(doc) = document_at(&path)
            && doc != ID
            && !NEIGHBOURS.contains(&doc)
        {
            return Err(format!(
                "{path} appeared on the disk, the file of document `{doc}`, which nobody saved: \
                 a save wrote under another document's name (every id names a document, at \
                 `docs/<id>.json`). Had `{doc}` been stored, its readers would have found it \
                 overwritten, and the index would have listed a file that is not its own"
            ));
        }
    }
    Ok(())
}

/// Saves `invoice-42` (a new document, or a replacement if `replace`), cut by a deadline after
/// `cut_ms` or not, while `invoice-42-1` is saved too (not cut) and the other neighbours stay
/// stored, with a reader looking at all of them every millisecond; then judges the end state.
async fn save_beside_neighbours(replace: bool, cut_ms: Option<u64>) -> Result<(), String> {
    let (store, fs, index) = store_with_neighbours(replace);
    let old = replace.then_some(OLD);
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, fs, index, done) = (store.clone(), fs.clone(), index.clone(), done.clone());
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            while !done.load(Ordering::SeqCst) {
                check_reader_view(&store, &fs, &index, old, NEW)
                    .and_then(|()| check_neighbours(&store, &fs, &index, false))
                    .map_err(|seen| {
                        format!("a reader looking {} ms in: {seen}", start.elapsed().as_millis())
                    })?;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Ok::<(), String>(())
        })
    };
    let neighbour_new = neighbour_body(SAVED_NEIGHBOUR, 2);
    let neighbour = async {
        tokio::time::sleep(Duration::from_millis(2)).await;
        store.save(SAVED_NEIGHBOUR, &neighbour_new).await
    };
    let mine = async {
        match cut_ms {
            Some(ms) => {
                tokio::time::timeout(Duration::from_millis(ms), store.save(ID, NEW)).await.ok()
            }
            None => Some(store.save(ID, NEW).await),
        }
    };
    let (mine, neighbour) = tokio::join!(mine, neighbour);
    tokio::time::sleep(OVERLAP_READER_WATCHES).await;
    done.store(true, Ordering::SeqCst);
    tokio::time::sleep(LET_SHIELDED_WORK_FINISH).await;
    reader.await.map_err(|e| format!("the reader panicked: {e}"))??;
    neighbour.map_err(|e| format!("the save of `{SAVED_NEIGHBOUR}` (not cut) failed: {e}"))?;
    if let Some(result) = mine {
        result.map_err(|e| format!("the save of `{ID}` (not cut) failed: {e}"))?;
        if store.load(ID).as_deref() != Some(NEW) {
            return Err(format!("save() of `{ID}` returned Ok but load() does not return it"));
        }
    }
    check_neighbours(&store, &fs, &index, true)
        .map_err(|seen| format!("once both saves had ended: {seen}"))?;
    check_consistent_beside(&fs, &index, old, NEW, NEIGHBOURS)
        .map_err(|seen| format!("once both saves had ended: {seen}"))
}

/// Saves `NEW` in a task of its own, nobody cutting it, while the disk stalls for [`FAR_END`]
/// once the save has run for `after`: the clock jumps to the stall's end in one go, with nothing
/// run meanwhile. The save must return `Ok` and store its version. On a runtime of its own: one
/// runtime's clock can jump this far only a few times.
async fn save_through_a_stall(fresh: fn() -> State, after: Duration) {
    let (store, fs, index) = fresh();
    let old = fs.read(&DocStore::final_path(ID));
    let local = tokio::task::LocalSet::new();
    // A local task, so that the test asks nothing of `save` but to run.
    let save = {
        let store = store.clone();
        local.spawn_local(async move { store.save(ID, NEW).await })
    };
    let saved = local
        .run_until(async move {
            tokio::task::yield_now().await;
            if !after.is_zero() {
                tokio::time::sleep(after).await;
            }
            // Nothing runs during the stall: the clock jumps to its end at once.
            tokio::time::advance(FAR_END).await;
            tokio::time::timeout(Duration::from_secs(60), save).await
        })
        .await;
    let when = match after {
        Duration::ZERO => "on its first step".to_owned(),
        after => format!("once the save had run for {after:?}"),
    };
    let stall = format!("whose disk stalled for {} {when}", spoken(FAR_END));
    match saved {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => panic!(
            "a save that nobody cut, {stall}, failed: {e} (kind {:?}), expected Ok: only the \
             caller decides when a save is cut, however long the disk takes (a deadline of the \
             save's own, however generous, is reached)",
            e.kind()
        ),
        Ok(Err(e)) => panic!("a save that nobody cut, {stall}, panicked: {e}"),
        Err(_) => panic!(
            "a save that nobody cut, {stall}, had not returned a minute after the disk came back"
        ),
    }
    assert_eq!(
        store.load(ID).as_deref(),
        Some(NEW),
        "save() returned Ok, {stall}, but load() does not return the new document"
    );
    check_consistent(&fs, &index, old.as_deref(), NEW)
        .unwrap_or_else(|seen| panic!("after a save {stall}: {seen}"));
}

/// A large document (a contract with its attachments inlined): `len` bytes of JSON, tagged
/// `version`.
fn large_document(version: u32, len: usize) -> Vec<u8> {
    let head = format!(r#"{{"contract":7,"version":{version},"text":""#);
    let pad = len - head.len() - 2;
    let mut doc = head.into_bytes();
    doc.extend((0..pad).map(|i| b"abcdefghijklmnop"[i % 16]));
    doc.extend_from_slice(br#""}"#);
    doc
}

/// A large document saved (new, or over the previous version) while a reader looks at every step
/// of the disk, through the index and at `docs/<id>.json` by its path; cut by a deadline after
/// `cut` (or never) and then retried at once with `retry`, as a client does after a timeout.
async fn save_large_document(
    replace: bool,
    len: usize,
    cut: Option<Duration>,
    retry: &[u8],
) -> Result<(), String> {
    let (store, fs, index) = if replace { store_with_old_version() } else { empty_store() };
    let old = replace.then_some(OLD);
    let body = large_document(1, len);
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, fs, index, body, done) =
            (store.clone(), fs.clone(), index.clone(), body.clone(), done.clone());
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            while !done.load(Ordering::SeqCst) {
                if let Err(seen) = check_reader_view(&store, &fs, &index, old, &body) {
                    return Err(format!(
                        "a reader looking {} ms into the save: {seen}",
                        start.elapsed().as_millis()
                    ));
                }
                // One look per step of the fake disk (16 bytes every 5 ms).
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(())
        })
    };
    let saved = match cut {
        Some(cut) => tokio::time::timeout(cut, store.save(ID, &body)).await.ok(),
        None => Some(store.save(ID, &body).await),
    };
    done.store(true, Ordering::SeqCst);
    reader.await.map_err(|e| format!("the reader panicked: {e}"))??;
    let Some(cut) = cut else {
        saved.expect("not cut").map_err(|e| format!("save failed: {e}"))?;
        if store.load(ID).as_deref() != Some(&body[..]) {
            return Err("save() returned Ok but load() does not return the new document".into());
        }
        return check_consistent(&fs, &index, old, &body);
    };
    if saved.is_some() {
        return Err(format!("the save of {len} bytes returned within {cut:?}: the test is wrong"));
    }
    store.save(ID, retry).await.map_err(|e| {
        format!("the save was cut {cut:?} in, and a retry with the next version failed: {e}")
    })?;
    for (when, wait) in [
        ("right after the retry returned", Duration::ZERO),
        ("a minute later", Duration::from_secs(60)),
    ] {
        tokio::time::sleep(wait).await;
        let seen = store.load(ID);
        if seen.as_deref() != Some(retry) {
            return Err(format!(
                "the save was cut {cut:?} in, a retry with the next version ({} bytes) started at \
                 once and returned Ok, but {when} load() returned {}, not the retry's version: \
                 work of the cut save went on after it was cut and replaced or mixed with the \
                 retry's",
                retry.len(),
                match seen {
                    Some(doc) => format!("{} bytes", doc.len()),
                    None => "no document".to_owned(),
                }
            ));
        }
        check_consistent(&fs, &index, None, retry)
            .map_err(|e| format!("the save was cut {cut:?} in and retried at once; {when}: {e}"))?;
    }
    Ok(())
}

hidden_test! {
    /// Request handlers run as tasks of their own (`tokio::spawn`) on a multi-thread runtime,
    /// so `save`'s future must stay `Send`, as it is now.
    async fn save_can_run_in_a_spawned_handler() {
        let (store, _fs, _index) = empty_store();
        let save = store.save(ID, NEW);
        assert!(
            kata_support::is_send!(save),
            "the future returned by `save` is not `Send`, so a request handler can no longer \
             `tokio::spawn` it: it holds something that is not `Send` (a `Cell` or `RefCell` \
             borrowed by a guard, an `Rc`, a `std` lock guard) across an `.await`"
        );
        save.await.expect("save failed");
        assert_eq!(store.load(ID).as_deref(), Some(NEW), "save() returned Ok but load() does not return the document");
    }

    /// A save cut by a deadline (or a caller that hangs up) after every possible poll and every
    /// millisecond, and retried at once with the next version, as a client does after a
    /// timeout: the retry must succeed, and from then on the store holds the retry's version,
    /// whole, and nothing else. Work of the cut save must not mix with the retry's.
    async fn a_save_retried_right_after_a_cut_stores_the_retry() {
        for fresh in [empty_store as fn() -> State, store_with_old_version] {
            assert_cancel_safe_with(
                every_cut(),
                fresh,
                |(store, _, _): State| async move { store.save(ID, NEW).await },
                |(store, fs, index), outcome: Outcome<std::io::Result<()>>| async move {
                    let cut = if outcome.is_cancelled() { "cut" } else { "finished" };
                    let retried = store.save(ID, RETRY).await;
                    let seen = |when: &str| -> Result<(), String> {
                        match store.load(ID) {
                            Some(doc) if doc == RETRY => {}
                            other => {
                                return Err(format!(
                                    "a save was {cut}, a retry with the next version started at \
                                     once and returned Ok, but {when} load() returned {:?}, not \
                                     the retry's version: work of the first save went on after \
                                     it was {cut} and overwrote or mixed with the retry's (a \
                                     detached task writing the same temporary file, say)",
                                    other.map(|d| String::from_utf8_lossy(&d).into_owned())
                                ));
                            }
                        }
                        check_consistent(&fs, &index, None, RETRY)
                            .map_err(|e| format!("after a save was {cut} and retried at once, {when}: {e}"))
                    };
                    if let Err(e) = retried {
                        return Err(format!(
                            "a save was {cut}, and a retry with the next version, started at \
                             once, failed: {e}. Work of the first save went on after it was \
                             {cut} and got in the retry's way (a detached task renaming or \
                             deleting the same temporary file, say). Disk: {:?}",
                            fs.paths()
                        ));
                    }
                    seen("right after the retry returned")?;
                    tokio::time::sleep(LET_SHIELDED_WORK_FINISH).await;
                    seen("a second after the retry returned")
                },
            )
            .await;
        }
    }

    /// The same cut and retry as on a multi-thread runtime, where the retry can start on another
    /// worker thread before the cut save's thread has run what that save left to run: at every
    /// millisecond of the save, the retry must still succeed and store its version, alone.
    fn a_retry_that_starts_before_the_cut_save_is_cleaned_up_stores_the_retry() {
        let cases: [(&str, fn() -> State); 2] =
            [("saving a new document", empty_store), ("replacing a document", store_with_old_version)];
        // A whole save is one step of the fake disk per chunk written, and one each for the sync,
        // the rename and the index log; the last cuts fall after its end.
        let steps = NEW.len().div_ceil(WRITE_CHUNK) as u32 + 3;
        let span_ms = (STEP * (steps + 1)).as_millis() as u64;
        for (what, fresh) in cases {
            for cut_ms in 0..=span_ms {
                let seed = SEEDS[cut_ms as usize % SEEDS.len()];
                if let Err(seen) = retry_on_another_worker(seed, fresh, cut_ms) {
                    panic!("{what}: {seen}");
                }
            }
        }
    }

    /// Nothing cancelled: once `save` returns, the document is indexed, readable and complete,
    /// and no temporary file is left.
    async fn save_then_load_returns_the_document() {
        let (store, fs, index) = empty_store();
        store.save(ID, NEW).await.expect("save failed");
        assert_eq!(
            store.load(ID).as_deref(),
            Some(NEW),
            "right after save() returns, load() must return the document: a save that returns \
             before the document is stored lies to its caller"
        );
        if let Err(seen) = check_consistent(&fs, &index, None, NEW) {
            panic!("with nothing cancelled, {seen}");
        }
    }

    /// A new document, with `save` dropped after every possible poll.
    async fn a_new_document_survives_a_drop_at_every_await() {
        assert_cancel_safe_with(
            every_cut(),
            empty_store,
            |(store, _, _): State| async move { store.save(ID, NEW).await },
            |(store, fs, index), outcome: Outcome<std::io::Result<()>>| async move {
                tokio::time::sleep(LET_SHIELDED_WORK_FINISH).await;
                check_consistent(&fs, &index, None, NEW)?;
                if let Some(result) = outcome.completed() {
                    result.map_err(|e| format!("save failed: {e}"))?;
                    if store.load(ID).as_deref() != Some(NEW) {
                        return Err("save() returned Ok but load() does not return the document"
                            .to_owned());
                    }
                }
                Ok(())
            },
        )
        .await;
    }

    /// Replacing an existing document, with `save` dropped after every possible poll: the old
    /// version must survive any drop before the commit, whole.
    async fn replacing_a_document_survives_a_drop_at_every_await() {
        assert_cancel_safe_with(
            every_cut(),
            store_with_old_version,
            |(store, _, _): State| async move { store.save(ID, NEW).await },
            |(store, fs, index), outcome: Outcome<std::io::Result<()>>| async move {
                tokio::time::sleep(LET_SHIELDED_WORK_FINISH).await;
                check_consistent(&fs, &index, Some(OLD), NEW)?;
                if let Some(result) = outcome.completed() {
                    result.map_err(|e| format!("save failed: {e}"))?;
                    if store.load(ID).as_deref() != Some(NEW) {
                        return Err("save() returned Ok but load() returns the old version"
                            .to_owned());
                    }
                }
                Ok(())
            },
        )
        .await;
    }

    /// A reader looks at the document every millisecond while it is saved (and the save may be
    /// cut by a deadline): at no moment, not only after the save, may it find the id indexed
    /// without its file, a partial file, or no document where the previous version stood.
    fn a_reader_looking_at_any_moment_sees_the_old_or_the_new_document() {
        check_property(48, watched_saves(), |watched| async move {
            let (store, fs, index) =
                if watched.replace { store_with_old_version() } else { empty_store() };
            let old = watched.replace.then_some(OLD);
            let body = watched.body();
            let done = Arc::new(AtomicBool::new(false));
            let reader = {
                let (store, fs, index, body, done) =
                    (store.clone(), fs.clone(), index.clone(), body.clone(), done.clone());
                tokio::spawn(async move {
                    let start = tokio::time::Instant::now();
                    while !done.load(Ordering::SeqCst) {
                        if let Err(seen) = check_reader_view(&store, &fs, &index, old, &body) {
                            return Err(format!(
                                "a reader looking {} ms into the save: {seen}",
                                start.elapsed().as_millis()
                            ));
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Ok(())
                })
            };
            let saved = match watched.deadline_ms {
                Some(ms) => {
                    tokio::time::timeout(Duration::from_millis(ms), store.save(ID, &body)).await.ok()
                }
                None => Some(store.save(ID, &body).await),
            };
            // The reader keeps looking while work the save handed to a task may still run (a save
            // takes about 50 ms here), then the state is judged once that work has surely ended.
            tokio::time::sleep(READER_WATCHES).await;
            done.store(true, Ordering::SeqCst);
            tokio::time::sleep(LET_SHIELDED_WORK_FINISH).await;
            reader.await.map_err(|e| format!("the reader panicked: {e}"))??;
            check_consistent(&fs, &index, old, &body)?;
            if let Some(result) = saved {
                result.map_err(|e| format!("save failed: {e}"))?;
                if store.load(ID).as_deref() != Some(&body[..]) {
                    return Err("save() returned Ok but load() does not return the new document"
                        .to_owned());
                }
            }
            Ok(())
        });
    }

    /// A deploy shuts the runtime down with `save` parked in a task, after every possible poll,
    /// or drops `save` after the runtime is gone: no task runs any more, and the store must still
    /// be left as after any other drop, for a new document and for a replacement.
    fn a_save_cut_by_a_deploy_leaves_the_store_consistent() {
        let cases: [(&str, fn() -> State, Option<&'static [u8]>); 2] = [
            ("saving a new document", empty_store, None),
            ("replacing a document", store_with_old_version, Some(OLD)),
        ];
        for (what, fresh, old) in cases {
            let explored = explore_at_shutdown(
                fresh,
                |(store, _, _): State| async move { store.save(ID, NEW).await },
                |(store, fs, index), outcome: Outcome<std::io::Result<()>>| {
                    check_consistent(&fs, &index, old, NEW)?;
                    if let Some(result) = outcome.completed() {
                        result.map_err(|e| format!("save failed: {e}"))?;
                        if store.load(ID).as_deref() != Some(NEW) {
                            return Err("save() returned Ok but load() does not return the new \
                                document"
                                .to_owned());
                        }
                    }
                    Ok(())
                },
            );
            if let Err(failure) = explored {
                panic!("{what}, {failure}");
            }
        }
    }

    /// A deploy by the clock: a request handler calls `save` in its task, and the runtime shuts
    /// down at every millisecond of virtual time from the start of the save to its end. Wherever
    /// the save's work is at that instant, in `save` itself or in a task it spawned, the shutdown
    /// drops it and nothing runs after it, and the store must be left as after any other drop.
    fn a_deploy_at_any_moment_of_the_save_leaves_the_store_consistent() {
        let cases: [(&str, fn() -> State, Option<&'static [u8]>); 2] = [
            ("saving a new document", empty_store, None),
            ("replacing a document", store_with_old_version, Some(OLD)),
        ];
        // A whole save is one step of the fake disk per chunk written, and one each for the sync,
        // the rename and the index log; the last instants fall after its end.
        let steps = NEW.len().div_ceil(WRITE_CHUNK) as u32 + 3;
        let span_ms = (STEP * (steps + 1)).as_millis() as u64;
        for (what, fresh, old) in cases {
            for at_ms in 0..=span_ms {
                // Two seeds per instant, a different pair at each: every step of the save lasts
                // five instants, so it meets all eight seeds, and the test stays short.
                let i = at_ms as usize;
                for seed in [SEEDS[i % SEEDS.len()], SEEDS[(i + 3) % SEEDS.len()]] {
                    let at = Duration::from_millis(at_ms);
                    let seen = deploy_at(seed, fresh, at).and_then(|((store, fs, index), ended)| {
                        check_consistent(&fs, &index, old, NEW)?;
                        match ended {
                            Deployed::Returned(result) => {
                                result.map_err(|e| format!("save failed: {e}"))?;
                                if store.load(ID).as_deref() != Some(NEW) {
                                    return Err("save() returned Ok but load() does not return \
                                        the new document"
                                        .to_owned());
                                }
                            }
                            Deployed::Cut => {}
                        }
                        Ok(())
                    });
                    if let Err(seen) = seen {
                        panic!(
                            "{what}: a request handler called save() in its task, and a deploy \
                             shut the runtime down {at_ms} ms into the save, wherever the save \
                             and every task it spawned were waiting (nothing runs after a \
                             shutdown): {seen}"
                        );
                    }
                }
            }
        }
    }

    /// A deploy right after any poll of `save`, before any other task runs: on a runtime with
    /// several threads the shutdown can come between the poll that put the document in place
    /// and the first poll of a task that poll spawned, and the store must still be consistent.
    fn a_deploy_right_after_any_poll_of_save_leaves_the_store_consistent() {
        let cases: [(&str, fn() -> State, Option<&'static [u8]>); 2] = [
            ("saving a new document", empty_store, None),
            ("replacing a document", store_with_old_version, Some(OLD)),
        ];
        for (what, fresh, old) in cases {
            for cut_after in 1..2000 {
                let mut finished = false;
                for parked in [true, false] {
                    let seed = SEEDS[cut_after % SEEDS.len()];
                    let seen = deploy_right_after_poll(seed, fresh, cut_after, parked).and_then(
                        |((store, fs, index), ended, early)| {
                            finished = early;
                            check_consistent(&fs, &index, old, NEW)?;
                            if let Deployed::Returned(result) = ended {
                                result.map_err(|e| format!("save failed: {e}"))?;
                                if store.load(ID).as_deref() != Some(NEW) {
                                    return Err("save() returned Ok but load() does not return \
                                        the new document"
                                        .to_owned());
                                }
                            }
                            Ok(())
                        },
                    );
                    if let Err(seen) = seen {
                        let dropped = if parked {
                            "with save() parked in its task"
                        } else {
                            "and save() was dropped after the runtime was gone"
                        };
                        panic!(
                            "{what}: a deploy shut the runtime down right after poll {cut_after} \
                             of save(), before any other task ran (a task spawned during that \
                             poll was dropped without ever running), {dropped}: {seen}"
                        );
                    }
                }
                if finished {
                    break;
                }
            }
        }
    }
    /// Two saves of the same document that overlap (a client's retry racing the request it
    /// retries, still running on another connection), not cut, starting together or a few
    /// milliseconds apart: both return Ok, a reader looking every millisecond finds a whole
    /// version, and at the end the document is one of the two, whole, with nothing else on disk.
    fn two_overlapping_saves_of_one_document_each_store_a_whole_version() {
        let mut case = 0;
        for replace in [false, true] {
            for start_b in [0, 1, 3, 7, 12, 20] {
                for (len_a, len_b) in [(64, 64), (40, 70)] {
                    let saves = [
                        Overlapping { start_ms: 0, body: vec![b'A'; len_a], cut_ms: None },
                        Overlapping { start_ms: start_b, body: vec![b'B'; len_b], cut_ms: None },
                    ];
                    overlap_case(&mut case, replace, &saves);
                }
            }
        }
    }

    /// Two overlapping saves of one document, one of them cut by a deadline at every millisecond
    /// (the other not): the cut one may leave the store as it was or have stored its version, but
    /// it must not get in the way of the other, which returns Ok with its version in place; every
    /// moment and at the end, the document is a whole version, with nothing else on disk. With
    /// different bodies, and with the same body (a client's retry racing the very request it
    /// retries, and the request, or the retry, cut by its deadline).
    fn an_overlapping_save_cut_at_any_moment_does_not_spoil_the_other() {
        let (len_a, len_b): (usize, usize) = (64, 48);
        // A save of 64 bytes is four chunks, a sync, a rename and an index log: 35 ms.
        let span_ms = (STEP * (len_a.div_ceil(WRITE_CHUNK) as u32 + 4)).as_millis() as u64;
        let mut case = 0;
        // (replacing, when the second save starts, whether the first or the second is cut)
        let rows = [(false, 0, true), (true, 6, false), (false, 3, false), (true, 2, true)];
        for (replace, start_b, cut_first) in rows {
            for same_body in [false, true] {
                let body_b = if same_body { vec![b'A'; len_a] } else { vec![b'B'; len_b] };
                for cut_ms in 0..=span_ms {
                    let (cut_a, cut_b) =
                        if cut_first { (Some(cut_ms), None) } else { (None, Some(cut_ms)) };
                    let saves = [
                        Overlapping { start_ms: 0, body: vec![b'A'; len_a], cut_ms: cut_a },
                        Overlapping { start_ms: start_b, body: body_b.clone(), cut_ms: cut_b },
                    ];
                    overlap_case(&mut case, replace, &saves);
                }
            }
        }
    }

    /// Three overlapping saves of one document, staggered, and the same with the middle one cut
    /// at every millisecond: the uncut ones return Ok, and every moment and at the end the
    /// document is a whole version, with nothing else on disk.
    fn three_overlapping_saves_of_one_document_each_store_a_whole_version() {
        let span_ms = (STEP * (64usize.div_ceil(WRITE_CHUNK) as u32 + 4)).as_millis() as u64;
        let mut case = 0;
        for replace in [false, true] {
            for cut in std::iter::once(None).chain((0..=span_ms).step_by(2).map(Some)) {
                let saves = [
                    Overlapping { start_ms: 0, body: vec![b'A'; 64], cut_ms: None },
                    Overlapping { start_ms: 4, body: vec![b'B'; 56], cut_ms: cut },
                    Overlapping { start_ms: 9, body: vec![b'C'; 72], cut_ms: None },
                ];
                overlap_case(&mut case, replace, &saves);
            }
        }
    }

    /// Two overlapping saves of one document from two request handlers as a real server runs
    /// them: through two stores built over one disk, in a task each, in one connection's task,
    /// or on two worker threads; with different bodies, and with the same body (a client's retry
    /// of the very request that is still running). Both return Ok, a reader looking every
    /// millisecond finds a whole version, and at the end the document is one of them, whole,
    /// with nothing else on disk.
    fn overlapping_saves_from_any_two_handlers_each_store_a_whole_version() {
        let mut case = 0;
        for handlers in
            [Handlers::StoreEach, Handlers::TaskEach, Handlers::OneTask, Handlers::ThreadEach]
        {
            for replace in [false, true] {
                for start_b in [0, 3, 12] {
                    for body_b in [b'B', b'A'] {
                        let saves = [
                            Overlapping { start_ms: 0, body: vec![b'A'; 64], cut_ms: None },
                            Overlapping { start_ms: start_b, body: vec![body_b; 64], cut_ms: None },
                        ];
                        overlap_case_in(&mut case, handlers, replace, &saves);
                    }
                }
            }
        }
    }

    /// Overlapping saves of one document whose lifetimes are staggered: a save starts after
    /// another has returned while a third is still running, and a burst of 300 at once. A name a
    /// finished save has given up may not be given to a new save while one that is still running
    /// holds it: every save that is not cut returns Ok, a reader finds a whole version every
    /// millisecond, and the document ends as one of the saved versions.
    fn overlapping_saves_that_start_after_others_have_returned_each_store_a_whole_version() {
        let mut case = 0;
        // A short save and a long one, then a third that starts after the short one has returned
        // (20 ms) while the long one is still writing (until 66 ms); and the same with the long
        // save first, and with a run of short saves while the long one writes.
        let schedules: [&[(u64, usize)]; 3] = [
            &[(0, 16), (1, 160), (25, 32)],
            &[(0, 160), (1, 16), (26, 32)],
            &[(0, 16), (1, 160), (25, 16), (46, 16), (47, 32)],
        ];
        for handlers in [
            Handlers::OneStore,
            Handlers::StoreEach,
            Handlers::TaskEach,
            Handlers::OneTask,
            Handlers::ThreadEach,
        ] {
            for replace in [false, true] {
                for schedule in schedules {
                    let saves: Vec<Overlapping> = schedule
                        .iter()
                        .zip(b'A'..)
                        .map(|(&(start_ms, len), letter)| Overlapping {
                            start_ms,
                            body: vec![letter; len],
                            cut_ms: None,
                        })
                        .collect();
                    overlap_case_in(&mut case, handlers, replace, &saves);
                }
            }
        }
        // A burst: 300 saves of one document, each in a task of its own, all started in the
        // first 10 ms and all still running at 10 ms. Every one needs a name of its own at once.
        let burst: Vec<Overlapping> = (0..300)
            .map(|i| Overlapping {
                start_ms: i % 10,
                body: format!(r#"{{"save":{i},"pad":"{}"}}"#, "x".repeat(i as usize % 32))
                    .into_bytes(),
                cut_ms: None,
            })
            .collect();
        let seen = runtime::current_thread(SEEDS[0]).block_on(run_overlapping(
            Handlers::TaskEach,
            false,
            &burst,
        ));
        if let Err(seen) = seen {
            panic!(
                "saving a new document with 300 saves of it overlapping (each in a spawned task \
                 of its own, all started in the first 10 ms, none cut): {seen}"
            );
        }
    }

    /// The same over many generated schedules of staggered saves (a property).
    fn overlapping_saves_on_any_staggered_schedule_each_store_a_whole_version() {
        check_property(48, staggered_saves(), |staggered| async move {
            run_overlapping(staggered.handlers, staggered.replace, &staggered.saves).await
        });
    }

    /// The reader and cut-and-retry checks with documents of 20 KB and more (1 280 steps of the
    /// fake disk, 6.4 s), new and replacing: a reader who opens `docs/<id>.json` by its path at
    /// any step finds nothing, the previous version or the new one in full; and a save cut at the
    /// start, early, halfway or near its end, then retried at once with the next version (small,
    /// or large), leaves the retry's version in place, alone, then and a minute later.
    async fn a_large_document_is_never_half_visible_and_a_retry_after_its_cut_stays() {
        let ms = Duration::from_millis;
        let small_retry = RETRY;
        let large_retry = large_document(2, 24 * 1024);
        const HALFWAY: Duration = Duration::from_millis(3_000);
        let cuts = [None, Some(ms(1)), Some(ms(100)), Some(HALFWAY), Some(ms(6_390))];
        for replace in [false, true] {
            for len in [20 * 1024 + 7, 33 * 1024] {
                for cut in cuts {
                    // The larger document: nobody cutting it, and cut halfway (retried large).
                    if len > 32 * 1024 && !matches!(cut, None | Some(HALFWAY)) {
                        continue;
                    }
                    let retry: &[u8] = if len > 32 * 1024 { &large_retry } else { small_retry };
                    if let Err(why) = save_large_document(replace, len, cut, retry).await {
                        panic!(
                            "{} of {len} bytes{}: {why}",
                            if replace { "replacing a document with one" } else { "saving a new document" },
                            match cut {
                                Some(cut) => format!(", cut by a deadline after {cut:?}"),
                                None => ", nobody cutting it".to_owned(),
                            }
                        );
                    }
                }
            }
        }
    }

    /// Documents past the sizes a store might special-case (64 KiB, 256 KiB: a big attachment
    /// written in place "to spare the disk a second copy"): a reader looking at every step finds
    /// nothing, the previous version or the new one in full, and a save cut in the middle, then
    /// retried at once, leaves the retry's version in place, alone. Cut once each, in the middle
    /// (the cost is the steps; a save nobody cuts is the 40 KB test's).
    async fn a_document_past_64_kib_is_never_half_visible_and_a_retry_after_its_cut_stays() {
        // Halfway through the writing of a 64 KiB document (16 bytes a step), and a second into
        // a 256 KiB one (a quarter of a minute's writing would show no more).
        let halfway = STEP * u32::try_from((64 * 1024) / WRITE_CHUNK / 2).expect("a few steps");
        let second = Duration::from_secs(1);
        for (replace, len, cut) in [
            (true, 64 * 1024 + 7, Some(halfway)),
            (false, 64 * 1024 + 7, Some(halfway)),
            (true, 256 * 1024 + 7, Some(second)),
            (false, 256 * 1024 + 7, Some(second)),
        ] {
            if let Err(why) = save_large_document(replace, len, cut, RETRY).await {
                panic!(
                    "{} of {len} bytes{}: {why}",
                    if replace { "replacing a document with one" } else { "saving a new document" },
                    match cut {
                        Some(cut) => format!(", cut by a deadline after {cut:?}"),
                        None => ", nobody cutting it".to_owned(),
                    }
                );
            }
        }
    }

    /// A burst far larger than the 300 above: 70 000 saves of one document at once, none cut.
    /// Every one needs a name no other running save has, so names that come round (a counter
    /// that wraps at 2^16) or that are drawn from too few random bits (26 or fewer) are given
    /// twice.
    fn a_burst_of_seventy_thousand_saves_gives_every_save_a_name_of_its_own() {
        let seen = runtime::current_thread(SEEDS[0]).block_on(burst_of_saves(BURST));
        if let Err(seen) = seen {
            panic!(
                "saving a new document with {BURST} saves of it running at once (each in a task \
                 of its own, all started in the same instant, none cut): {seen}"
            );
        }
    }

    /// A save that nobody cuts returns `Ok`, however long the disk takes: a 40 KB document
    /// (2 560 steps of the fake disk, 12.8 s). Only the caller decides when a save is cut; a save
    /// that gives up by itself (a deadline of its own, however generous) fails a caller who set
    /// none.
    async fn a_save_nobody_cuts_returns_ok_however_long_the_disk_takes() {
        let big: Vec<u8> = (0..40 * 1024).map(|i| b"0123456789abcdef"[i % 16]).collect();
        for fresh in [empty_store as fn() -> State, store_with_old_version] {
            let (store, fs, index) = fresh();
            let old = fs.read(&DocStore::final_path(ID));
            let start = tokio::time::Instant::now();
            let saved = store.save(ID, &big).await;
            assert!(
                saved.is_ok(),
                "a save of a 40 KB document that nobody cut returned {saved:?} after {:?} of disk \
                 time, expected Ok: only the caller decides when a save is cut, however long the \
                 disk takes",
                start.elapsed()
            );
            assert!(
                store.load(ID) == Some(big.clone()),
                "save() of a 40 KB document returned Ok but load() does not return it"
            );
            check_consistent(&fs, &index, old.as_deref(), &big)
                .unwrap_or_else(|seen| panic!("after a 40 KB save returned Ok: {seen}"));
        }
    }

    /// A save whose disk stalls (a hung network mount) for 146 million years, reached in one jump
    /// of the paused clock, on its first poll or in the middle of any step of the solution's save,
    /// nobody cutting it, returns `Ok` with its version in place. Only the caller decides when a
    /// save is cut; a deadline of the save's own, around the whole save or around several of its
    /// steps, however generous, fails a caller who set none. Once per `select!` seed, each stall
    /// on a runtime of its own.
    fn a_save_returns_ok_however_long_its_disk_stalls() {
        let steps = NEW.len().div_ceil(WRITE_CHUNK) as u32 + 3;
        let mid_step = (0..steps).map(|step| STEP * step + Duration::from_millis(1));
        let afters: Vec<Duration> = [Duration::ZERO].into_iter().chain(mid_step).collect();
        for seed in SEEDS {
            for fresh in [empty_store as fn() -> State, store_with_old_version] {
                for &after in &afters {
                    runtime::current_thread(seed).block_on(save_through_a_stall(fresh, after));
                }
            }
        }
    }

    /// Saving `invoice-42` (cut by a deadline at every millisecond, or not) while `invoice-42-1`
    /// is saved too and documents whose ids extend its id or are numbers are stored: a reader
    /// looking every millisecond finds every other document indexed and whole, no file appears
    /// under the name of a document nobody saved, and at the end both saves stored their version.
    fn saving_a_document_leaves_every_other_document_alone() {
        let span_ms = (STEP * (NEW.len().div_ceil(WRITE_CHUNK) as u32 + 4)).as_millis() as u64;
        let mut case = 0;
        for replace in [false, true] {
            for cut_ms in std::iter::once(None).chain((0..=span_ms).map(Some)) {
                let seed = SEEDS[case % SEEDS.len()];
                case += 1;
                let seen = runtime::current_thread(seed)
                    .block_on(save_beside_neighbours(replace, cut_ms));
                if let Err(seen) = seen {
                    let what = if replace { "replacing" } else { "saving the new document" };
                    let cut = match cut_ms {
                        Some(ms) => format!("cut by a deadline after {ms} ms"),
                        None => "not cut".to_owned(),
                    };
                    panic!(
                        "{what} `{ID}` ({cut}) while `{SAVED_NEIGHBOUR}` was saved too, with \
                         documents {NEIGHBOURS:?} stored beside it: {seen}"
                    );
                }
            }
        }
    }
}
