//! Where a future was parked when it was dropped: the cut points of the code under test.
//!
//! A tool that wants to show the `.await` a failing cut dropped a future at builds the code under
//! test with every `.await` marked: `reply.await` becomes `at(12, 9, 15, reply).await` ([`at`]),
//! and every `select!`, `join!` and `try_join!` (which await inside the macro) sits in a block
//! holding a [`Site`], inserted with `syn` so that no line moves. A marked await is listed while
//! it is parked (polled and not finished), so the awaits listed at a cut are exactly the ones the
//! future was parked at, outermost first ([`parked`]); one dropped while parked is recorded as a
//! cut ([`last_cut`]).
//!
//! Only awaits first polled inside [`polling`] (or [`scoped`]) count, tagged with its scope: the
//! explorer polls each run of the future under test in a scope of its own, and a test harness can
//! poll a whole test body in one. Awaits polled elsewhere (a task the code spawned) belong to no
//! scope and are never reported. In an ordinary build nothing is marked, and both lists are empty.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

/// An `.await` in the source under test: a 1-based line and the 1-based columns (in characters) of
/// the first and one past the last character of `.await` (or of a macro's `name!`); `innermost`
/// when nothing else listed with it was parked inside it (written with a trailing `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Point {
    pub line: u32,
    pub column: u32,
    pub end_column: u32,
    pub innermost: bool,
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let star = if self.innermost { "*" } else { "" };
        write!(f, "{}:{}-{}{star}", self.line, self.column, self.end_column)
    }
}

/// Opens the trailer that [`Trailer`] writes after a failure message, for a tool to find.
pub const TRAILER_OPEN: &str = "\n[parked at: ";

/// Opens the trailer that [`LastCut`] writes.
pub const LAST_CUT_OPEN: &str = "\n[last cut at: ";

/// The cut points of a failure, written as `[parked at: 12:9-15 > 30:5-11*]` on a line of its own
/// (in the order the awaits were first polled, the innermost starred), or nothing when there are
/// none (every ordinary build).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trailer(pub Vec<Point>);

impl fmt::Display for Trailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        f.write_str(TRAILER_OPEN)?;
        for (i, point) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" > ")?;
            }
            write!(f, "{point}")?;
        }
        f.write_str("]")
    }
}

/// The `.await`s of the last cut of a scope before a failure, written like [`Trailer`] as
/// `[last cut at: 12:9-15 > 30:5-11*]`, or nothing when there are none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastCut(pub Vec<Point>);

impl fmt::Display for LastCut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        let listed = Trailer(self.0.clone()).to_string();
        f.write_str(LAST_CUT_OPEN)?;
        f.write_str(&listed[TRAILER_OPEN.len()..])
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Counts polls of marked awaits: awaits dropped together in one cut see the same count.
static EVENT: AtomicU64 = AtomicU64::new(0);
/// Awaits dropped before they finished, newest last.
static CUTS: Mutex<Vec<Cut>> = Mutex::new(Vec::new());
/// The most entries [`CUTS`] keeps.
const MAX_CUTS: usize = 256;
static NEXT_SCOPE: AtomicU64 = AtomicU64::new(1);
/// Every live mark of any scope, by id (ids grow with the first poll).
static LIVE: Mutex<BTreeMap<u64, Mark>> = Mutex::new(BTreeMap::new());

/// A marked await or macro: its scope, the mark it was first polled (or entered) inside, if any,
/// and where it is.
#[derive(Debug, Clone, Copy)]
struct Mark {
    scope: u64,
    parent: u64,
    point: Point,
}

/// A marked await dropped while parked: the poll count when it was, its id and mark.
#[derive(Debug, Clone, Copy)]
struct Cut {
    event: u64,
    id: u64,
    mark: Mark,
}

thread_local! {
    static SCOPE: Cell<u64> = const { Cell::new(0) };
    /// The marked awaits being polled on this thread, innermost last.
    static POLLING: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    /// The scopes [`enter_task`] replaced, innermost last.
    static TASK_OUTER: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

fn live() -> std::sync::MutexGuard<'static, BTreeMap<u64, Mark>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// A new mark in the scope being polled on this thread, inside the await being polled; 0 outside
/// any scope.
fn register(point: Point) -> u64 {
    let scope = SCOPE.with(Cell::get);
    if scope == 0 {
        return 0;
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let parent = POLLING.with(|p| p.borrow().last().copied().unwrap_or(0));
    live().insert(id, Mark { scope, parent, point });
    id
}

/// The marks, with the innermost starred: those no other listed mark is inside.
fn with_innermost(marks: &[(u64, Mark)]) -> Vec<Point> {
    marks
        .iter()
        .map(|(id, mark)| Point {
            innermost: !marks.iter().any(|(_, other)| other.parent == *id),
            ..mark.point
        })
        .collect()
}

/// One awaiting macro (`select!`, `join!`) in progress: `Site::enter(..).around(tokio::select! {
/// .. })`; made only by code built with its awaits marked. Listed by [`parked`] while held, never
/// recorded as a cut (a `return` from inside the macro drops it too).
#[derive(Debug)]
#[must_use = "a site marks an await only while it is held"]
pub struct Site {
    id: u64,
}

impl Site {
    /// Marks the macro at `line`, `column`..`end_column` (see [`Point`]) as running, tagged with
    /// the scope being polled on this thread, if any.
    pub fn enter(line: u32, column: u32, end_column: u32) -> Site {
        Site { id: register(Point { line, column, end_column, innermost: false }) }
    }

    /// `value`, once the macro it came from has finished.
    pub fn around<T>(self, value: T) -> T {
        value
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if self.id != 0 {
            live().remove(&self.id);
        }
    }
}

/// An `.await` of the code under test, marked: `at(line, column, end_column, fut).await` behaves as
/// `fut.await`, and while it is parked (polled, not finished) in a scope it is listed by
/// [`parked`]; dropped parked, it is recorded as a cut ([`last_cut`]). The future is boxed, so
/// that the mark needs no pinning of its own.
pub fn at<F: IntoFuture>(line: u32, column: u32, end_column: u32, future: F) -> At<F::IntoFuture> {
    let point = Point { line, column, end_column, innermost: false };
    At { future: Box::pin(future.into_future()), point, id: None, done: false }
}

/// The future [`at`] returns.
#[must_use = "futures do nothing unless polled"]
pub struct At<F> {
    future: Pin<Box<F>>,
    point: Point,
    /// Set at the first poll: `Some(0)` when that poll was outside any scope.
    id: Option<u64>,
    done: bool,
}

impl<F: Future> Future for At<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        EVENT.fetch_add(1, Ordering::Relaxed);
        let id = *this.id.get_or_insert_with(|| register(this.point));
        POLLING.with(|p| p.borrow_mut().push(id));
        // Popped even if the poll panics.
        let _popped = Defer(|| POLLING.with(|p| p.borrow_mut().pop()));
        let poll = this.future.as_mut().poll(cx);
        if poll.is_ready() {
            this.done = true;
            if id != 0 {
                live().remove(&id);
            }
        }
        poll
    }
}

impl<F> Drop for At<F> {
    fn drop(&mut self) {
        let Some(id) = self.id.filter(|id| *id != 0 && !self.done) else {
            return;
        };
        let Some(mark) = live().remove(&id) else {
            return;
        };
        let mut cuts = CUTS.lock().unwrap_or_else(|p| p.into_inner());
        if cuts.len() == MAX_CUTS {
            cuts.remove(0);
        }
        cuts.push(Cut { event: EVENT.load(Ordering::Relaxed), id, mark });
    }
}

/// Runs a closure when dropped.
struct Defer<F: FnMut() -> R, R>(F);

impl<F: FnMut() -> R, R> Drop for Defer<F, R> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// The awaits of `scope` dropped together in its last cut (no marked await was polled between
/// their drops), in the order they were first polled, the innermost starred: where the last
/// future the scope cancelled was parked.
pub fn last_cut(scope: u64) -> Vec<Point> {
    let cuts = CUTS.lock().unwrap_or_else(|p| p.into_inner());
    let Some(last) = cuts.iter().filter(|c| c.mark.scope == scope).map(|c| c.event).max() else {
        return Vec::new();
    };
    let mut found: Vec<(u64, Mark)> = cuts
        .iter()
        .filter(|c| c.mark.scope == scope && c.event == last)
        .map(|c| (c.id, c.mark))
        .collect();
    found.sort_by_key(|(id, _)| *id);
    with_innermost(&found)
}

/// The scope tasks are polled in (see [`in_task`]); 0 for none.
static AMBIENT: AtomicU64 = AtomicU64::new(0);

/// Makes `scope` the one every task is polled in from now on (0: none), so that awaits of code a
/// test spawned count too. A test harness sets it to the scope of the test body it runs.
pub fn set_task_scope(scope: u64) {
    AMBIENT.store(scope, Ordering::SeqCst);
}

/// Sets this thread's scope to the tasks' one ([`set_task_scope`]) until [`leave_task`]: for
/// runtimes whose hooks run before and after a task's poll rather than around it.
pub fn enter_task() {
    let scope = AMBIENT.load(Ordering::SeqCst);
    TASK_OUTER.with(|o| o.borrow_mut().push(SCOPE.with(|s| s.replace(scope))));
}

/// Undoes [`enter_task`].
pub fn leave_task() {
    if let Some(outer) = TASK_OUTER.with(|o| o.borrow_mut().pop()) {
        SCOPE.with(|s| s.set(outer));
    }
}

/// `future`, polled in `scope` ([`polling`]).
pub async fn scoped<F: Future>(scope: u64, future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| polling(scope, || future.as_mut().poll(cx))).await
}

/// A new scope, for one exploration run.
pub fn new_scope() -> u64 {
    NEXT_SCOPE.fetch_add(1, Ordering::Relaxed)
}

/// Runs `poll` with `scope` as this thread's scope, so awaits first polled during it are tagged
/// with it; the previous scope comes back afterwards, even if `poll` panics.
pub fn polling<R>(scope: u64, poll: impl FnOnce() -> R) -> R {
    let outer = SCOPE.with(|s| s.replace(scope));
    let _restored = Defer(move || SCOPE.with(|s| s.set(outer)));
    poll()
}

/// The marks of `scope` alive now, in the order they were first polled, the innermost starred.
pub fn parked(scope: u64) -> Vec<Point> {
    let found: Vec<(u64, Mark)> =
        live().iter().filter(|(_, m)| m.scope == scope).map(|(id, m)| (*id, *m)).collect();
    with_innermost(&found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_await_dropped_while_parked_is_the_last_cut_and_a_finished_one_is_not() {
        use std::task::Waker;
        let cx = &mut Context::from_waker(Waker::noop());
        let scope = new_scope();
        let inner = async { at(7, 20, 26, std::future::pending::<()>()).await };
        let mut fut = Box::pin(at(4, 9, 15, inner));
        assert!(polling(scope, || fut.as_mut().poll(cx)).is_pending());
        assert_eq!(parked(scope).len(), 2);
        drop(fut);
        assert!(parked(scope).is_empty());
        assert_eq!(LastCut(last_cut(scope)).to_string(), "\n[last cut at: 4:9-15 > 7:20-26*]");

        let scope = new_scope();
        let mut done = Box::pin(at(1, 1, 7, async {}));
        assert!(polling(scope, || done.as_mut().poll(cx)).is_ready());
        drop(done);
        assert!(last_cut(scope).is_empty());
        // Polled outside any scope: never listed.
        let mut outside = Box::pin(at(2, 1, 7, std::future::pending::<()>()));
        assert!(outside.as_mut().poll(cx).is_pending());
        drop(outside);
        assert!(last_cut(0).is_empty());
    }

    #[test]
    fn awaits_side_by_side_are_both_innermost_and_an_outer_one_not_yet_polled_is_not_listed() {
        use std::task::Waker;
        let cx = &mut Context::from_waker(Waker::noop());
        let scope = new_scope();
        let legs = async {
            let left = at(2, 5, 11, std::future::pending::<()>());
            let right = at(3, 5, 11, std::future::pending::<()>());
            tokio::join!(left, right);
        };
        // `lower(call.await).await`: the outer await is not polled before the inner one finishes.
        let outer = async {
            let value = at(4, 20, 26, legs).await;
            at(4, 30, 36, async move { value }).await
        };
        let mut fut = Box::pin(outer);
        assert!(polling(scope, || fut.as_mut().poll(cx)).is_pending());
        assert_eq!(
            Trailer(parked(scope)).to_string(),
            "\n[parked at: 4:20-26 > 2:5-11* > 3:5-11*]"
        );
        drop(fut);
        assert_eq!(
            LastCut(last_cut(scope)).to_string(),
            "\n[last cut at: 4:20-26 > 2:5-11* > 3:5-11*]"
        );
    }

    #[test]
    fn a_site_counts_only_inside_its_scope_and_while_held() {
        let outside = Site::enter(1, 1, 7);
        let scope = new_scope();
        let (outer, inner) = polling(scope, || (Site::enter(3, 5, 11), Site::enter(9, 13, 19)));
        drop(outside);
        let points = parked(scope);
        assert_eq!(points.len(), 2);
        // Entered side by side (not inside one another): both innermost.
        assert_eq!(Trailer(points).to_string(), "\n[parked at: 3:5-11* > 9:13-19*]");
        drop(inner);
        assert_eq!(
            parked(scope),
            vec![Point { line: 3, column: 5, end_column: 11, innermost: true }]
        );
        drop(outer);
        assert!(parked(scope).is_empty());
        assert_eq!(Trailer(Vec::new()).to_string(), "");
    }
}
