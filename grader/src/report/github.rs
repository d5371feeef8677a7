//! GitHub Actions: `::error` workflow commands that annotate the learner's file, and a Markdown
//! job summary with a progress table.
//!
//! GitHub shows at most 10 error annotations per step, so the grader spends them on the first
//! failing test of each kata (in course order) and says how many it left out.
//!
//! Learner-controlled text must never become a workflow command (`::add-mask::`, `::notice`,
//! `::stop-commands::`): in an annotation it is escaped as GitHub documents (`%`, CR, LF; and `:`,
//! `,` in properties), and the readable log around it is printed between `::stop-commands::TOKEN`
//! and `::TOKEN::` with a token drawn after the tests ran, with `::` at a line's start and `##[`
//! defused as well.

use std::fmt::Write as _;
use std::path::Path;

use super::text::visible;
use super::{Summary, error_location};
use crate::grade::{Status, UnitResult};
use crate::run::Outcome;

/// GitHub's limit on error annotations shown per step.
pub const MAX_ANNOTATIONS: usize = 10;

/// Longest annotation message kept, in bytes; the summary and log carry the rest.
const MAX_MESSAGE: usize = 4096;

/// The annotations, one line each, for a course rooted at `root`.
pub fn annotations(results: &[UnitResult], root: &Path) -> String {
    let failing: Vec<&UnitResult> = results.iter().filter(|r| r.status != Status::Passed).collect();
    let mut out = String::new();
    for result in failing.iter().take(MAX_ANNOTATIONS) {
        // `col` (GitHub's annotation property) only where the explanation placed an `.await`.
        let mut col = String::new();
        let (file, line, title, message) = match result.status {
            Status::CompileError => {
                let error = result.compile_errors.first().map_or("", String::as_str);
                let (file, line) = error_location(error).unwrap_or((result.file.clone(), 1));
                (file, line, format!("{}: does not compile", result.name), error.to_owned())
            }
            _ => {
                // The first failing test that knows where the future was parked, else the first.
                let failing = || result.tests.iter().filter(|t| t.status != Outcome::Passed);
                let test = failing().find(|t| !t.parked.is_empty()).or_else(|| failing().next());
                let title = match test {
                    Some(t) => format!("{}: {}", result.name, t.name),
                    None => result.name.clone(),
                };
                let message = test.map_or_else(|| super::reason(result), |t| t.message.clone());
                // At the `.await` the future was dropped at, when the explanation placed it;
                // else at the `// TODO`.
                let innermost = test.and_then(|t| t.parked.iter().find(|c| c.innermost));
                match innermost.or_else(|| test.and_then(|t| t.parked.last())) {
                    Some(cut) => {
                        col = format!(",col={}", cut.column);
                        (cut.file.clone(), cut.line, title, message)
                    }
                    None => {
                        let line = todo_line(&root.join(&result.file)).unwrap_or(1);
                        (result.file.clone(), line, title, message)
                    }
                }
            }
        };
        let _ = writeln!(
            out,
            "::error file={},line={line}{col},title={}::{}",
            escape_property(&visible(&file)),
            escape_property(&visible(&title)),
            escape_data(&visible(&ellipsize(&message, MAX_MESSAGE)))
        );
    }
    if failing.len() > MAX_ANNOTATIONS {
        let _ = writeln!(
            out,
            "::notice title=more failing katas::{} more kata(s) fail; see the job summary",
            failing.len() - MAX_ANNOTATIONS
        );
    }
    out
}

/// The readable log, with workflow commands switched off around it.
pub fn log(text: &str) -> String {
    let token = token();
    let mut out = format!("::stop-commands::{token}\n");
    for line in text.lines() {
        out.push_str(&defuse(line));
        out.push('\n');
    }
    let _ = writeln!(out, "::{token}::");
    out
}

/// A line that the runner will not read as a command even where commands are on.
pub fn defuse(line: &str) -> String {
    let line = line.replace("##[", "#\u{200b}#[");
    let trimmed = line.trim_start();
    if trimmed.starts_with("::") {
        let pad = line.len() - trimmed.len();
        format!("{}:\u{200b}{}", &line[..pad], &trimmed[1..])
    } else {
        line
    }
}

/// 128 random bits, hex: nothing the learner's code saw can predict it.
fn token() -> String {
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if read.is_err() {
        // Still unknown to code that has exited: the time of day at nanosecond resolution.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        bytes = now.map_or(0, |d| d.as_nanos()).to_le_bytes();
    }
    crate::stage::hash_bytes(&bytes)[..32].to_owned()
}

/// The Markdown job summary.
pub fn summary(results: &[UnitResult], summary: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Cancellation katas: {}/{} passed, {}/{} points\n",
        summary.passed, summary.katas, summary.points, summary.max_points
    );
    let _ = writeln!(out, "| # | kata | level | result | points |");
    let _ = writeln!(out, "| ---: | --- | --- | --- | ---: |");
    for r in results {
        let result =
            if r.status == Status::Passed { "passed".to_owned() } else { super::reason(r) };
        let _ = writeln!(
            out,
            "| {:02} | {} | {} | {} | {}/{} |",
            r.number,
            escape_cell(&r.title),
            r.level,
            escape_cell(&visible(&ellipsize(&result, 300))),
            r.points,
            r.max_points
        );
    }
    let _ = writeln!(out, "| | **total** | | | **{}/{}** |", summary.points, summary.max_points);
    out
}

/// The line of the `// TODO` in the learner's file, where the annotation is most useful.
fn todo_line(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    let index = text.lines().position(|l| l.contains("// TODO"))?;
    u32::try_from(index + 1).ok()
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` cut to at most `max` bytes between two words, with an ellipsis where it was cut.
fn ellipsize(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let cut = truncate(text, max.saturating_sub('…'.len_utf8()));
    let cut = cut.rfind(char::is_whitespace).map_or(cut, |i| &cut[..i]);
    format!("{}…", cut.trim_end())
}

/// Escaping for a workflow command's message.
pub fn escape_data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escaping for a workflow command's property (`file=`, `title=`).
pub fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

fn escape_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_workflow_command_data_and_properties() {
        assert_eq!(escape_data("50% done\r\nnext"), "50%25 done%0D%0Anext");
        assert_eq!(escape_property("a: b, c\n"), "a%3A b%2C c%0A");
    }

    #[test]
    fn learner_text_cannot_start_a_workflow_command() {
        assert_eq!(defuse("::add-mask::x"), ":\u{200b}:add-mask::x");
        assert_eq!(defuse("   ::notice::x"), "   :\u{200b}:notice::x");
        assert_eq!(defuse("a ##[error]b"), "a #\u{200b}#[error]b");
        assert_eq!(defuse("tokio::time"), "tokio::time");
        let log = log("ok\n::stop-commands::abc\n");
        let token = log.lines().next().unwrap().strip_prefix("::stop-commands::").unwrap();
        assert_eq!(token.len(), 32);
        assert!(log.ends_with(&format!("::{token}::\n")));
        assert!(log.lines().skip(1).take(2).all(|l| !l.starts_with("::")), "{log}");
    }

    #[test]
    fn finds_the_location_of_a_compile_error() {
        let error = "error: expected `;`, found `y`\n --> exercises/03_x/src/lib.rs:5:18\n  |";
        assert_eq!(error_location(error), Some(("exercises/03_x/src/lib.rs".into(), 5)));
    }

    #[test]
    fn cuts_between_words_with_an_ellipsis() {
        assert_eq!(ellipsize("the gauge still reads 1", 100), "the gauge still reads 1");
        assert_eq!(ellipsize("the gauge still reads 1", 14), "the gauge…");
        assert!(ellipsize(&"word ".repeat(100), 300).len() <= 300);
    }

    #[test]
    fn truncates_on_a_character_boundary() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
