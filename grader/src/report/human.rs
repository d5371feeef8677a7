//! The readable report: a line per kata with its one-line reason, then what to look at for each
//! kata that did not pass (compiler errors with the learner's file and line first, failing tests
//! with their messages, where to read next), then the summary. Learner-controlled text goes
//! through `text::visible`: it is shown, never obeyed by the terminal.

use super::text::{visible, visible_colored};
use super::{Summary, error_location, indent, reason};
use crate::grade::{Status, UnitResult};
use crate::run::Outcome;
use crate::style;

/// Compiler errors shown per kata; the rest are counted.
const MAX_ERRORS: usize = 3;

pub fn render(results: &[UnitResult], summary: &Summary) -> String {
    // Compiler text keeps the compiler's colours when colour is on; nothing else does.
    let compiler = |t: &str| if style::enabled() { visible_colored(t) } else { visible(t) };
    let mut out = String::new();
    for result in results {
        let mark = match result.status {
            Status::Passed => style::good("PASS "),
            Status::Failed => style::bad("FAIL "),
            Status::CompileError => style::bad("BUILD"),
            Status::TimedOut => style::bad("TIME "),
            Status::Error => style::warn("ERROR"),
        };
        out.push_str(&format!(
            "{mark} {:<40} {:>3}/{:<3} {}\n",
            result.name,
            result.points,
            result.max_points,
            compiler(&reason(result))
        ));
        if result.status == Status::Passed {
            continue;
        }
        for error in result.compile_errors.iter().take(MAX_ERRORS) {
            if let Some((file, line)) = error_location(error) {
                let message = error.lines().next().unwrap_or_default();
                out.push_str(&format!(
                    "      {}\n",
                    style::bold(&compiler(&format!("{file}:{line}: {message}")))
                ));
            }
            out.push_str(&indent(&compiler(error.trim_end()), 8));
            out.push('\n');
        }
        if result.compile_errors.len() > MAX_ERRORS {
            out.push_str(&format!(
                "      ... and {} more errors\n",
                result.compile_errors.len() - MAX_ERRORS
            ));
        }
        for test in result.tests.iter().filter(|t| t.status != Outcome::Passed) {
            out.push_str(&format!(
                "      {} {}\n",
                style::bad("x"),
                style::bold(&visible(&test.name))
            ));
            out.push_str(&indent(&visible(test.message.trim_end()), 8));
            out.push('\n');
        }
        if matches!(result.status, Status::Failed | Status::TimedOut) {
            out.push_str(&format!("      edit {}\n", result.file));
            if let Some(readme) = result.file.strip_suffix("src/lib.rs") {
                out.push_str(&format!("      read {readme}README.md, \"Why it breaks\"\n"));
            }
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
