//! The gradebook: many students' result files (`grader check --format json`, or `grader grade`'s
//! per-student files) combined into one table of students x katas, then written as a CSV for an
//! LMS (`csv_export`), a Markdown summary (`markdown`) and a self-contained HTML dashboard
//! (`html`). `load` reads the files; this module decides each cell's status and flags.
//!
//! Result files are untrusted input twice over: a malformed one is skipped with a warning (never
//! the whole gradebook lost), and every string in one may come from a student (a name, a commit,
//! a kata title in a forged file), so every output escapes what it shows.

pub mod csv_export;
pub mod html;
pub mod load;
pub mod markdown;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use chrono::{DateTime, FixedOffset};

/// What a student's work on a kata came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Every hidden test passed.
    Passed,
    /// Some hidden test failed.
    Failed,
    /// The sources did not compile (or could not be staged).
    CompileError,
    /// Some hidden test ran out of time.
    TimedOut,
    /// The grader could not grade the kata (its own failure, not the student's).
    Error,
    /// No work: the kata is missing from the result file, or its sources are the exercise as
    /// shipped.
    NotAttempted,
}

impl Status {
    /// Every status, in the order outputs list them.
    pub const ALL: [Status; 6] = [
        Status::Passed,
        Status::Failed,
        Status::CompileError,
        Status::TimedOut,
        Status::Error,
        Status::NotAttempted,
    ];

    /// The machine-readable name (the JSON report's, plus `not_attempted`).
    pub fn key(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::CompileError => "compile_error",
            Status::TimedOut => "timed_out",
            Status::Error => "error",
            Status::NotAttempted => "not_attempted",
        }
    }

    /// The name people read.
    pub fn label(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::CompileError => "compile error",
            Status::TimedOut => "timed out",
            Status::Error => "grader error",
            Status::NotAttempted => "not attempted",
        }
    }

    /// A report's status string; `None` for one this grader does not know.
    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.key() == text).or(match text {
            "not_submitted" | "untouched" => Some(Status::NotAttempted),
            _ => None,
        })
    }
}

/// A kata: a column of the gradebook.
#[derive(Debug, Clone)]
pub struct Column {
    pub number: u32,
    pub name: String,
    pub title: String,
    pub max_points: u32,
}

/// Whose sources a student's sources for a kata are byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Same {
    /// The course's reference solution.
    Reference,
    /// Another student's, by name.
    Student(String),
}

impl std::fmt::Display for Same {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Same::Reference => f.write_str("the reference solution"),
            Same::Student(name) => f.write_str(name),
        }
    }
}

/// A student's result for one kata.
#[derive(Debug, Clone)]
pub struct Cell {
    pub status: Status,
    pub points: u32,
    /// SHA-256 of the staged sources, when the result file carries it.
    pub source_sha256: Option<String>,
    /// The sources identical to these, when any.
    pub same_as: Vec<Same>,
}

/// A student: a row of the gradebook.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    /// The result file it was read from.
    pub file: PathBuf,
    /// Where the submission came from (a directory, a repository), when known.
    pub source: Option<String>,
    /// The commit graded, when known.
    pub commit: Option<String>,
    /// The commit's date (set by the student's clock: a hint, not proof).
    pub committed_at: Option<DateTime<FixedOffset>>,
    /// When it was graded, as the result file says.
    pub graded_at: Option<String>,
    /// The course the file was graded with, when known.
    pub course_hash: Option<String>,
    /// Why the submission could not be graded at all (unreachable, say).
    pub error: Option<String>,
    /// Cells by kata name; a kata missing here is not attempted.
    pub cells: BTreeMap<String, Cell>,
}

impl Row {
    /// The points earned, over every kata.
    pub fn total(&self) -> u32 {
        self.cells.values().map(|c| c.points).sum()
    }

    /// The student's status on `kata` (missing: not attempted).
    pub fn status(&self, kata: &str) -> Status {
        self.cells.get(kata).map_or(Status::NotAttempted, |c| c.status)
    }

    /// Whether the commit is dated after `deadline`; `None` when either is unknown.
    pub fn late(&self, deadline: Option<DateTime<FixedOffset>>) -> Option<bool> {
        Some(self.committed_at? > deadline?)
    }

    /// Every kata whose sources are identical to someone else's or the reference's.
    pub fn flagged(&self) -> impl Iterator<Item = (&String, &Cell)> {
        self.cells.iter().filter(|(_, c)| !c.same_as.is_empty())
    }
}

/// A result file that was left out, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub file: PathBuf,
    pub why: String,
}

/// The course's own sources per kata, by hash: the exercise as shipped (untouched work) and the
/// reference solution (a copy of it).
#[derive(Debug, Default, Clone)]
pub struct Reference {
    pub exercises: HashMap<String, String>,
    pub solutions: HashMap<String, String>,
}

/// Students x katas, with the flags worked out.
#[derive(Debug, Clone)]
pub struct Gradebook {
    /// Every kata any file mentions, in course order.
    pub columns: Vec<Column>,
    /// Students by name.
    pub rows: Vec<Row>,
    pub deadline: Option<DateTime<FixedOffset>>,
    pub skipped: Vec<Skipped>,
    /// Whether sources were compared with the course's reference solutions.
    pub compared_with_reference: bool,
}

impl Gradebook {
    /// Builds the gradebook from the rows `load` read: fills in the columns, marks untouched
    /// exercises as not attempted, and flags identical sources.
    pub fn new(
        mut rows: Vec<Row>,
        skipped: Vec<Skipped>,
        reference: Option<&Reference>,
        deadline: Option<DateTime<FixedOffset>>,
        columns: Vec<Column>,
    ) -> Gradebook {
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        let untouched = |kata: &str, hash: &str| {
            reference.and_then(|r| r.exercises.get(kata)).is_some_and(|h| h == hash)
        };
        // Who handed in which sources, per kata; the untouched exercise is everyone's.
        let mut by_hash: HashMap<(&str, String), Vec<String>> = HashMap::new();
        for row in &mut rows {
            for (kata, cell) in &mut row.cells {
                let Some(hash) = &cell.source_sha256 else { continue };
                if untouched(kata, hash) {
                    if cell.status != Status::Passed {
                        cell.status = Status::NotAttempted;
                    }
                    continue;
                }
                by_hash.entry((kata.as_str(), hash.clone())).or_default().push(row.name.clone());
            }
        }
        let by_hash: HashMap<(String, String), Vec<String>> =
            by_hash.into_iter().map(|((k, h), names)| ((k.to_owned(), h), names)).collect();
        for row in &mut rows {
            for (kata, cell) in &mut row.cells {
                let Some(hash) = &cell.source_sha256 else { continue };
                if untouched(kata, hash) {
                    continue;
                }
                if reference.and_then(|r| r.solutions.get(kata)).is_some_and(|h| h == hash) {
                    cell.same_as.push(Same::Reference);
                }
                if let Some(names) = by_hash.get(&(kata.clone(), hash.clone())) {
                    let others = names.iter().filter(|n| **n != row.name);
                    cell.same_as.extend(others.map(|n| Same::Student(n.clone())));
                }
            }
        }
        Gradebook { columns, rows, deadline, skipped, compared_with_reference: reference.is_some() }
    }

    /// The points of every kata together.
    pub fn max_total(&self) -> u32 {
        self.columns.iter().map(|c| c.max_points).sum()
    }

    /// `points` as a percentage of [`Self::max_total`] (0 when the course is worth nothing).
    pub fn percent(&self, points: u32) -> f64 {
        match self.max_total() {
            0 => 0.0,
            max => 100.0 * f64::from(points) / f64::from(max),
        }
    }

    /// How many students passed `kata`.
    pub fn passed(&self, kata: &str) -> usize {
        self.rows.iter().filter(|r| r.status(kata) == Status::Passed).count()
    }

    /// How many students have `status` on `kata`.
    pub fn count(&self, kata: &str, status: Status) -> usize {
        self.rows.iter().filter(|r| r.status(kata) == status).count()
    }

    /// The share of students who passed `kata`, in percent.
    pub fn pass_rate(&self, kata: &str) -> f64 {
        match self.rows.len() {
            0 => 0.0,
            n => 100.0 * self.passed(kata) as f64 / n as f64,
        }
    }

    /// Students per tenth of the maximum score: `[0, 10)`, ..., `[90, 100]` percent.
    pub fn distribution(&self) -> [usize; 10] {
        let mut bins = [0; 10];
        for row in &self.rows {
            let bin = (self.percent(row.total()) / 10.0).floor() as usize;
            bins[bin.min(9)] += 1;
        }
        bins
    }

    /// The distinct `course_hash`es the files were graded with (more than one: mixed grading).
    pub fn course_hashes(&self) -> Vec<&str> {
        let mut hashes: Vec<&str> =
            self.rows.iter().filter_map(|r| r.course_hash.as_deref()).collect();
        hashes.sort_unstable();
        hashes.dedup();
        hashes
    }
}

/// What every output says about lateness: the commit date comes from the student's machine.
pub const LATE_NOTE: &str = "late compares the commit's date with the deadline; commit dates are \
     set by the student's own clock and can be forged, so treat a late flag (or its absence) as a \
     hint to check, not proof";

/// What every output says about identical sources.
pub const SAME_NOTE: &str = "identical means byte-for-byte the same staged sources (SHA-256) as \
     the reference solution or another student's; untouched exercises are not counted";
