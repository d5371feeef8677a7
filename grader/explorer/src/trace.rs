//! Where a future was parked when it was dropped: the cut points of the code under test.
//!
//! A tool that wants to show the `.await` a failing cut dropped a future at builds the code under
//! test with every `.await` (and every `select!`, `join!` and `try_join!`, which await inside the
//! macro) wrapped in a block that holds a [`Site`] for as long as that await runs, for example
//! `({ let _site = Site::enter(12, 9, 15); reply.await })`, inserted with `syn` so that no line
//! moves. A `Site` lives in the future's state while the future is parked at it and is dropped
//! when the await finishes or the future is dropped, so the sites alive at a cut are exactly the
//! awaits the future was parked at, outermost first.
//!
//! The explorer polls the future under test inside [`polling`], which tags every site made during
//! that poll with the exploration's scope; before it drops the future it reads the scope's sites
//! with [`parked`]. Sites made elsewhere (a task the code spawned, a second caller) belong to no
//! scope and are never reported. In an ordinary build no code makes a `Site`, and [`parked`] is
//! empty.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// An `.await` in the source under test: a 1-based line and the 1-based columns (in characters) of
/// the first and one past the last character of `.await` (or of a macro's `name!`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Point {
    pub line: u32,
    pub column: u32,
    pub end_column: u32,
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}-{}", self.line, self.column, self.end_column)
    }
}

/// Opens the trailer that [`Trailer`] writes after a failure message, for a tool to find.
pub const TRAILER_OPEN: &str = "\n[parked at: ";

/// The cut points of a failure, written as `[parked at: 12:9-15 > 30:5-11]` on a line of its own
/// (outermost first), or nothing when there are none (every ordinary build).
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

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static NEXT_SCOPE: AtomicU64 = AtomicU64::new(1);
/// Every live site of any scope, by id (ids grow, so an outer await sorts before an inner one).
static LIVE: Mutex<BTreeMap<u64, (u64, Point)>> = Mutex::new(BTreeMap::new());

thread_local! {
    static SCOPE: Cell<u64> = const { Cell::new(0) };
}

/// One `.await` in progress; made only by code built with its awaits marked.
#[derive(Debug)]
#[must_use = "a site marks an await only while it is held"]
pub struct Site {
    id: u64,
}

impl Site {
    /// Marks the await at `line`, `column`..`end_column` (see [`Point`]) as running, tagged with
    /// the scope being polled on this thread, if any.
    pub fn enter(line: u32, column: u32, end_column: u32) -> Site {
        let scope = SCOPE.with(Cell::get);
        if scope == 0 {
            return Site { id: 0 };
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let point = Point { line, column, end_column };
        LIVE.lock().unwrap_or_else(|p| p.into_inner()).insert(id, (scope, point));
        Site { id }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if self.id != 0 {
            LIVE.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
        }
    }
}

/// A new scope, for one exploration run.
pub fn new_scope() -> u64 {
    NEXT_SCOPE.fetch_add(1, Ordering::Relaxed)
}

/// Runs `poll` with `scope` as this thread's scope, so sites made during it are tagged with it.
pub fn polling<R>(scope: u64, poll: impl FnOnce() -> R) -> R {
    let outer = SCOPE.with(|s| s.replace(scope));
    let result = poll();
    SCOPE.with(|s| s.set(outer));
    result
}

/// The sites of `scope` alive now, outermost first.
pub fn parked(scope: u64) -> Vec<Point> {
    let live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
    live.values().filter(|(s, _)| *s == scope).map(|(_, point)| *point).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_counts_only_inside_its_scope_and_while_held() {
        let outside = Site::enter(1, 1, 7);
        let scope = new_scope();
        let (outer, inner) = polling(scope, || (Site::enter(3, 5, 11), Site::enter(9, 13, 19)));
        drop(outside);
        let points = parked(scope);
        assert_eq!(points.len(), 2);
        assert_eq!(Trailer(points).to_string(), "\n[parked at: 3:5-11 > 9:13-19]");
        drop(inner);
        assert_eq!(parked(scope), vec![Point { line: 3, column: 5, end_column: 11 }]);
        drop(outer);
        assert!(parked(scope).is_empty());
        assert_eq!(Trailer(Vec::new()).to_string(), "");
    }
}
