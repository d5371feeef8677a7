//! Rendering results: readable text for people, versioned JSON for tools.
//!
//! The JSON report (`--format json`) is an API; its schema is documented in the README and
//! changes only with its `version`.

use serde::Serialize;

use crate::course::Course;
use crate::grade::{Status, UnitResult};
use crate::run::Outcome;
use crate::state::{Progress, State};

/// The JSON report's schema version.
pub const JSON_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub version: u32,
    pub tree: &'a str,
    pub katas: &'a [UnitResult],
    pub summary: Summary,
}

#[derive(Debug, Default, Serialize)]
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
            format!("{} of {} hidden tests fail: {first}", failing.len(), result.tests.len())
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim()
}

/// Writes the readable report.
pub fn human(results: &[UnitResult], summary: &Summary, verbose_failures: bool) -> String {
    let mut out = String::new();
    for result in results {
        let mark = match result.status {
            Status::Passed => "PASS",
            Status::Failed => "FAIL",
            Status::CompileError => "BUILD",
            Status::TimedOut => "TIME",
            Status::Error => "ERROR",
        };
        out.push_str(&format!(
            "{mark:<5} {:<40} {:>3}/{:<3} {}\n",
            result.name,
            result.points,
            result.max_points,
            reason(result)
        ));
        if !verbose_failures || result.status == Status::Passed {
            continue;
        }
        for error in &result.compile_errors {
            out.push_str(&indent(error.trim_end(), 6));
            out.push('\n');
        }
        for test in result.tests.iter().filter(|t| t.status != Outcome::Passed) {
            out.push_str(&format!("      x {}\n", test.name));
            out.push_str(&indent(test.message.trim_end(), 8));
            out.push('\n');
        }
        if result.status != Status::CompileError && result.status != Status::Error {
            out.push_str(&format!("      edit {}\n", result.file));
        }
    }
    out.push_str(&format!(
        "\n{}/{} katas passed, {}/{} points ({:.1}s)\n",
        summary.passed,
        summary.katas,
        summary.points,
        summary.max_points,
        summary.duration_ms as f64 / 1000.0
    ));
    out
}

/// "3/6 done" overall and per level.
pub fn progress_line(course: &Course, state: &State, done: usize) -> String {
    let mut line = format!("{done}/{} done", course.katas.len());
    let levels: Vec<String> = course
        .by_level()
        .into_iter()
        .map(|(level, katas)| {
            let level_done =
                katas.iter().filter(|k| state.progress(course, k) == Progress::Done).count();
            format!("{level} {level_done}/{}", katas.len())
        })
        .collect();
    if !levels.is_empty() {
        line.push_str(&format!(" ({})", levels.join(", ")));
    }
    line
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines().map(|l| format!("{pad}{l}")).collect::<Vec<_>>().join("\n")
}
