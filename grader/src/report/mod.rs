//! Rendering results, one module per format: readable text for people (`human`), versioned JSON
//! for tools (here), JUnit XML for CI test reporters (`junit`), workflow annotations and a job
//! summary for GitHub Actions (`github`), and GitHub Classroom's autograding result
//! (`classroom`).
//!
//! The JSON report is an API; its schema is documented in the README and changes only with its
//! `version`.

pub mod classroom;
pub mod github;
pub mod human;
pub mod junit;
pub mod text;

use serde::Serialize;

use crate::course::Course;
use crate::grade::{Status, UnitResult};
use crate::run::Outcome;
use crate::state::{Standing, State};

/// The JSON report's schema version.
pub const JSON_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub version: u32,
    pub tree: &'a str,
    pub katas: &'a [UnitResult],
    pub summary: Summary,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub katas: usize,
    pub passed: usize,
    pub failed: usize,
    pub compile_error: usize,
    pub timed_out: usize,
    pub error: usize,
    pub points: u32,
    pub max_points: u32,
    pub duration_ms: u64,
}

impl Summary {
    pub fn of(results: &[UnitResult], duration: std::time::Duration) -> Summary {
        let count = |s: Status| results.iter().filter(|r| r.status == s).count();
        Summary {
            katas: results.len(),
            passed: count(Status::Passed),
            failed: count(Status::Failed),
            compile_error: count(Status::CompileError),
            timed_out: count(Status::TimedOut),
            error: count(Status::Error),
            points: results.iter().map(|r| r.points).sum(),
            max_points: results.iter().map(|r| r.max_points).sum(),
            duration_ms: duration.as_millis().try_into().unwrap_or(u64::MAX),
        }
    }
}

/// The one-line reason a kata did not pass.
pub fn reason(result: &UnitResult) -> String {
    if let Some(error) = &result.error {
        return error.clone();
    }
    match result.status {
        Status::Passed => format!("all {} hidden tests pass", result.tests.len()),
        Status::CompileError => {
            let first = result.compile_errors.first().map_or("", |e| first_line(e));
            format!("does not compile: {first}")
        }
        Status::Failed | Status::TimedOut | Status::Error => {
            let failing: Vec<_> =
                result.tests.iter().filter(|t| t.status != Outcome::Passed).collect();
            let first =
                failing.first().map_or(String::new(), |t| first_line(&t.message).to_owned());
            if let Some(advice) = result.advice.as_deref().filter(|_| failing.is_empty()) {
                return first_line(advice).to_owned();
            }
            if !result.variants.is_empty() {
                return format!("{}: {first}", brief(result));
            }
            format!("{} of {} hidden tests fail: {first}", failing.len(), result.tests.len())
        }
    }
}

/// The kata's verdict in a few words, without any test's message (which may say what the fix
/// is): the line of a kata in the readable report, short enough for 60 columns.
pub fn brief(result: &UnitResult) -> String {
    let total = result.tests.len();
    if !result.variants.is_empty() {
        let count = |kind: crate::wtt::VariantKind, good: bool| {
            let of = result.variants.iter().filter(|v| v.kind == kind);
            (of.clone().filter(|v| v.verdict.good() == good).count(), of.count())
        };
        let (caught, wrong) = count(crate::wtt::VariantKind::Wrong, true);
        let (passed, right) = count(crate::wtt::VariantKind::Right, true);
        // Short enough for the 60 columns of a kata line: "caught 4/5, right 3/3".
        return format!("caught {caught}/{wrong}, right {passed}/{right}");
    }
    match result.status {
        Status::Passed if total == 1 => "its test passes".into(),
        Status::Passed => format!("all {total} tests pass"),
        Status::Error => "could not be graded".into(),
        Status::CompileError => human::plural(result.compile_errors.len(), "compile error"),
        Status::Failed | Status::TimedOut => {
            let failing = result.tests.iter().filter(|t| t.status != Outcome::Passed).count();
            let timed_out = result.tests.iter().filter(|t| t.status == Outcome::TimedOut).count();
            // `TIME` before the name says that some timed out.
            if timed_out == failing {
                format!("{failing} of {total} time out")
            } else {
                format!("{failing} of {total} tests fail")
            }
        }
    }
}

/// `path` and `line` from the first `--> path:line:col` of a rendered compiler error.
pub(crate) fn error_location(error: &str) -> Option<(String, u32)> {
    let arrow = error.lines().find_map(|l| l.trim_start().strip_prefix("--> "))?;
    let mut parts = arrow.trim().rsplitn(3, ':');
    let _col = parts.next()?;
    let line = parts.next()?.parse().ok()?;
    Some((parts.next()?.to_owned(), line))
}

pub(crate) fn first_line(text: &str) -> &str {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim()
}

/// "3/6 done" overall and per level.
///
/// One line, `3/29 done (beginner 3/8, intermediate 0/9, ...)`, when it fits 60 columns; else the
/// count alone on the first line and the levels on indented lines under it, each within 60
/// columns, so that a terminal of that width never wraps it mid-word.
pub fn progress_line(course: &Course, state: &State) -> String {
    const WIDTH: usize = 60;
    let mut line = format!("{}/{} done", state.done(course), course.katas.len());
    let levels: Vec<String> = course
        .by_level()
        .into_iter()
        .map(|(level, katas)| {
            let level_done =
                katas.iter().filter(|k| state.progress(course, k) == Standing::Done).count();
            format!("{level} {level_done}/{}", katas.len())
        })
        .collect();
    if levels.is_empty() {
        return line;
    }
    let one_line = format!("{line} ({})", levels.join(", "));
    if one_line.len() <= WIDTH {
        return one_line;
    }
    let mut row = String::new();
    for (i, level) in levels.iter().enumerate() {
        let item = if i + 1 < levels.len() { format!("{level},") } else { level.clone() };
        if !row.is_empty() && 2 + row.len() + 1 + item.len() > WIDTH {
            line.push_str(&format!("\n  {row}"));
            row.clear();
        }
        if !row.is_empty() {
            row.push(' ');
        }
        row.push_str(&item);
    }
    line.push_str(&format!("\n  {row}"));
    line
}

pub(crate) fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines().map(|l| format!("{pad}{l}")).collect::<Vec<_>>().join("\n")
}
