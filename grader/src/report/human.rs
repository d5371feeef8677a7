//! The readable report: a line per kata with its one-line reason, then the failing tests and
//! compiler errors, then the summary.

use super::{Summary, indent, reason};
use crate::grade::{Status, UnitResult};
use crate::run::Outcome;

/// Writes the readable report.
pub fn render(results: &[UnitResult], summary: &Summary, verbose_failures: bool) -> String {
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
