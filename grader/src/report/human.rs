//! The readable report: a short line per kata, then details for the katas the learner is working
//! on (compiler errors as the compiler wrote them, failing tests with their messages, where to
//! read next), then the summary. Learner-controlled text goes through `text::visible`: it is
//! shown, never obeyed by the terminal.
//!
//! A first check on a fresh clone fails every kata; details for all of them were 228 lines, some
//! giving away fixes before the learner had read the story (issue 13). So details are for the
//! katas `Detail` names: those on the command line, else the current one.

use super::text::{visible, visible_colored};
use super::{Summary, brief};
use crate::grade::{Status, UnitResult};
use crate::run::Outcome;
use crate::style;

/// Compiler errors shown per kata; the rest are counted.
const MAX_ERRORS: usize = 3;

/// Which katas get details below their line.
#[derive(Debug, Clone, Copy)]
pub enum Detail<'a> {
    /// Every kata that did not pass (named on the command line, or a machine's log).
    All,
    /// Only this kata (the current one); the others get their line.
    Only(Option<&'a str>),
}

impl Detail<'_> {
    fn wants(&self, name: &str) -> bool {
        match self {
            Detail::All => true,
            Detail::Only(only) => *only == Some(name),
        }
    }
}

/// The report for `results`, with details as `detail` says.
pub fn render(results: &[UnitResult], summary: &Summary, detail: Detail<'_>) -> String {
    // Compiler text keeps the compiler's colours when colour is on; nothing else does.
    let compiler = |t: &str| if style::enabled() { visible_colored(t) } else { visible(t) };
    let width = results.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    let mut undetailed = Vec::new();
    for result in results {
        let mark = match result.status {
            Status::Passed => style::good("PASS "),
            Status::Failed => style::bad("FAIL "),
            Status::CompileError => style::bad("BUILD"),
            Status::TimedOut => style::bad("TIME "),
            Status::Error => style::warn("ERROR"),
        };
        out.push_str(&format!(
            "{mark} {:<width$} {:>2}/{:<2} {}\n",
            result.name,
            result.points,
            result.max_points,
            visible(&brief(result))
        ));
        if result.status == Status::Passed {
            continue;
        }
        if !detail.wants(&result.name) {
            undetailed.push(result.number);
            continue;
        }
        if let Some(error) = &result.error {
            out.push_str(&super::indent(&visible(error), 6));
            out.push('\n');
        }
        for error in result.compile_errors.iter().take(MAX_ERRORS) {
            out.push_str(&super::indent(&compiler(error.trim_end()), 6));
            out.push('\n');
        }
        let more = result.compile_errors.len().saturating_sub(MAX_ERRORS);
        if more > 0 {
            out.push_str(&format!("      ... and {}\n", plural(more, "more error")));
        }
        if !result.variants.is_empty() {
            out.push_str(&variants(result));
        }
        if let Some(advice) = &result.advice {
            out.push_str(&super::indent(&visible(advice), 6));
            out.push('\n');
        }
        let tests = result.tests.iter().filter(|_| result.variants.is_empty());
        for test in tests.filter(|t| t.status != Outcome::Passed) {
            out.push_str(&format!(
                "      {} {}\n",
                style::bad("x"),
                style::bold(&visible(&test.name))
            ));
            out.push_str(&super::indent(&visible(test.message.trim_end()), 8));
            out.push('\n');
            if !test.parked.is_empty() {
                let when = test.parked_when.unwrap_or(crate::explain::Parked::Cut);
                let note = crate::explain::render(&test.parked, when, style::enabled());
                out.push_str(&super::indent(note.trim_end(), 8));
                out.push('\n');
            }
        }
        if matches!(result.status, Status::Failed | Status::TimedOut) {
            out.push_str(&format!("      edit {}\n", result.file));
            let folder = result.file.strip_suffix("src/lib.rs");
            if let Some(readme) = folder.or(result.file.strip_suffix("tests/cancel.rs")) {
                out.push_str(&format!("      read {readme}README.md\n"));
            }
            let stuck = if crate::invoked::watching() {
                "press h".to_owned()
            } else {
                format!("`{}`", crate::invoked::command(&format!("hint {}", result.number)))
            };
            out.push_str(&format!("      stuck? {stuck}\n"));
        }
    }
    if let Some(first) = undetailed.first() {
        out.push_str(&format!(
            "\n{}\n",
            style::dim(&format!(
                "one kata's details: `{}`",
                crate::invoked::command(&format!("check {first}"))
            ))
        ));
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

/// A write-the-test kata's versions of the function, one line each: what the learner's test did
/// against it and the one line that describes it (never its source); under a right version it
/// failed, what the test said.
fn variants(result: &UnitResult) -> String {
    let width = result.variants.iter().map(|v| v.name.len()).max().unwrap_or(0);
    let label = result.variants.iter().map(|v| v.verdict.label().len()).max().unwrap_or(0);
    let mut out =
        format!("      your test against {} versions of the function:\n", result.variants.len());
    for variant in &result.variants {
        let (mark, label) = if variant.verdict.good() {
            (" ".to_owned(), style::good(&format!("{:<label$}", variant.verdict.label())))
        } else {
            (style::bad("x"), style::bad(&format!("{:<label$}", variant.verdict.label())))
        };
        let kind = match variant.kind {
            crate::wtt::VariantKind::Wrong => "wrong",
            crate::wtt::VariantKind::Right => "right",
        };
        out.push_str(&format!(
            "      {mark} {label} {kind} {:<width$}  {}\n",
            visible(&variant.name),
            visible(&variant.description)
        ));
        if variant.verdict == crate::wtt::Verdict::FalselyFailed
            && let Some(test) = variant.failed_tests.first()
        {
            let said = format!("`{}`: {}", test.name, test.message.trim_end());
            out.push_str(&super::indent(&visible(&said), 10));
            out.push('\n');
        }
    }
    out
}

/// `n thing` or `n things`.
pub fn plural(n: usize, thing: &str) -> String {
    if n == 1 { format!("{n} {thing}") } else { format!("{n} {thing}s") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::course::Level;
    use crate::grade::TestResult;

    fn result(status: Status, outcomes: &[Outcome]) -> UnitResult {
        UnitResult {
            // The course's longest name.
            name: "20_compaction_blocking_guard".into(),
            number: 20,
            title: "t".into(),
            level: Level::Advanced,
            status,
            points: 0,
            max_points: 30,
            file: "exercises/20_compaction_blocking_guard/src/lib.rs".into(),
            compile_errors: if status == Status::CompileError {
                vec!["error: a".into(), "error: b".into()]
            } else {
                Vec::new()
            },
            warnings: Vec::new(),
            tests: outcomes
                .iter()
                .map(|&status| TestResult {
                    name: "t".into(),
                    status,
                    message: "m".into(),
                    parked: Vec::new(),
                    parked_when: None,
                    duration_ms: 1,
                })
                .collect(),
            source_hash: None,
            variants: Vec::new(),
            advice: None,
            kind: Default::default(),
            error: None,
        }
    }

    #[test]
    fn a_kata_line_fits_sixty_columns() {
        let (pass, fail, time) = (Outcome::Passed, Outcome::Failed, Outcome::TimedOut);
        let results = [
            result(Status::Passed, &[pass, pass, pass]),
            result(Status::Failed, &[fail, fail, pass, pass, pass, pass, pass, pass, pass, pass]),
            result(Status::TimedOut, &[time, time, pass]),
            result(Status::TimedOut, &[fail, fail, time, pass, pass, pass, pass, pass, pass, pass]),
            result(Status::CompileError, &[]),
            result(Status::Error, &[]),
        ];
        let summary = Summary::of(&results, std::time::Duration::from_secs(12));
        let text = render(&results, &summary, Detail::Only(None));
        for line in text.lines() {
            assert!(line.chars().count() <= 60, "`{line}`");
        }
        assert!(text.contains("2 of 10 tests fail"), "{text}");
        assert!(text.contains("2 of 3 time out"), "{text}");
        assert!(text.contains("TIME  20_compaction_blocking_guard  0/30 3 of 10 tests fail"));
        assert!(text.contains("2 compile errors"), "{text}");
    }

    #[test]
    fn a_write_the_test_kata_lists_its_versions_by_description_only() {
        use crate::wtt::{VariantKind, VariantResult, Verdict};
        let mut result = result(Status::Failed, &[]);
        let failed = TestResult {
            name: "every_cut".into(),
            status: Outcome::Failed,
            message: "cancelled after poll 1 of 3: pending is [2, 3]".into(),
            duration_ms: 1,
            parked: Vec::new(),
            parked_when: None,
        };
        result.variants = [
            ("shipped", VariantKind::Wrong, Verdict::Caught, "loses the job"),
            ("at_back", VariantKind::Wrong, Verdict::Missed, "puts it back at the back"),
            ("solution", VariantKind::Right, Verdict::FalselyFailed, "a guard puts it back"),
        ]
        .map(|(name, kind, verdict, description)| VariantResult {
            name: name.into(),
            kind,
            verdict,
            description: description.into(),
            failed_tests: vec![failed.clone()],
        })
        .to_vec();
        result.advice = Some("your test fails against 1 right version(s)".into());
        let summary = Summary::of(std::slice::from_ref(&result), std::time::Duration::ZERO);
        let text = render(std::slice::from_ref(&result), &summary, Detail::All);
        assert!(text.contains("caught 1/2, right 0/1"), "{text}");
        assert!(text.contains("  caught         wrong shipped   loses the job"), "{text}");
        assert!(
            text.contains("x missed         wrong at_back   puts it back at the back"),
            "{text}"
        );
        assert!(text.contains("x falsely failed right solution  a guard puts it back"), "{text}");
        assert!(text.contains("`every_cut`: cancelled after poll 1 of 3: pending is [2, 3]"));
        assert!(text.contains("your test fails against 1 right version(s)"), "{text}");
    }

    #[test]
    fn counts_agree_with_their_nouns() {
        assert_eq!(plural(1, "more error"), "1 more error");
        assert_eq!(plural(2, "more error"), "2 more errors");
    }
}
