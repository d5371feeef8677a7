//! Where the future was parked when a cut broke it: the `.await` in the learner's own source.
//!
//! A failing cut says "cancelled after poll 1 of 3"; the learner wants the line. When a check
//! fails at a cut and `grade::Options::explain` is on, the grader builds the learner's `src/lib.rs`
//! once more, in the set [`SET`], with every `.await` (and every `select!`, `join!`, `try_join!`)
//! wrapped in a block that holds a `kata_support::trace::Site` while the await runs
//! ([`instrument`]). The rewrite only inserts text inside lines, so line numbers do not move; the
//! sites carry the original line and columns. The explorer lists the sites alive when it drops the
//! future, outermost first, after its failure message ([`take_trailer`]), and the failing test of
//! the first build gets them as its [`Cut`]s, rendered the way rustc renders a note ([`render`]).
//!
//! The explanation is best effort: a source that does not parse, or whose rewrite does not
//! compile, or a test that fails differently the second time, keeps its verdict and message and
//! gets no cut. Compile errors always come from the learner's real source (the first build).

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use proc_macro2::LineColumn;
use serde::{Deserialize, Serialize};
use syn::spanned::Spanned;
use syn::visit::{self, Visit};

/// The generated workspace the explanation build uses.
pub const SET: &str = "explain";

/// Bumped when [`instrument`] changes, so a staged copy written by an older grader is rewritten.
pub const VERSION: u32 = 2;

/// The openings of the trailers the explorer and the test harness write after a failure message
/// (`cancel_explorer::trace::{TRAILER_OPEN, LAST_CUT_OPEN}`).
const TRAILER_OPEN: &str = "\n[parked at: ";
const LAST_CUT_OPEN: &str = "\n[last cut at: ";

/// When the future was parked at the listed `.await`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parked {
    /// The explorer dropped it there, and that cut broke the check.
    Cut,
    /// It stalled there: never woken.
    Stalled,
    /// The test dropped it there, the last time it cancelled the code under test before failing.
    LastCut,
}

/// One `.await` (or awaiting macro) the future was parked at when it was dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cut {
    /// The learner's file, relative to the course root (`exercises/NN_slug/src/lib.rs`).
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters, of the `.` of `.await` (or of a macro's name).
    pub column: u32,
    /// 1-based column one past the end of `.await` (or of the macro's `!`).
    pub end_column: u32,
    /// The line itself, as it was built.
    pub text: String,
    /// Nothing else listed was parked inside this one: where the future really waited (several
    /// when it waited at awaits side by side, as in a `join!`).
    pub innermost: bool,
}

/// Rewrites `source` so that every await records where it is while it runs; `None` when it does
/// not parse (the first build has reported why).
pub fn instrument(source: &str) -> Option<String> {
    let file = syn::parse_file(source).ok()?;
    let mut finder = Finder::default();
    finder.visit_file(&file);
    let lines = LineStarts::new(source);
    let mut inserts: Vec<(usize, u8, isize, String)> = Vec::new();
    for wrap in &finder.wraps {
        let start = lines.offset(source, wrap.start)?;
        let end = lines.offset(source, wrap.end)?;
        let (line, column, end_column) =
            (wrap.mark.0.line, wrap.mark.0.column + 1, wrap.mark.1.column + 1);
        let (open, close) = match wrap.kind {
            Kind::Await => {
                (format!("::kata_support::trace::at({line}, {column}, {end_column}, "), ")")
            }
            Kind::Macro { semicolon } => (
                format!(
                    "::kata_support::trace::Site::enter({line}, {column}, {end_column}).around("
                ),
                if semicolon { ");" } else { ")" },
            ),
        };
        // At one offset: closings before openings, inner closings first, outer openings first.
        inserts.push((start, 1, -(end as isize), open));
        inserts.push((end, 0, -(start as isize), close.to_owned()));
    }
    inserts.sort_by_key(|a| (a.0, a.1, a.2));
    let mut out = String::with_capacity(source.len() + inserts.len() * 80);
    let mut at = 0;
    for (offset, _, _, text) in inserts {
        out.push_str(&source[at..offset]);
        out.push_str(&text);
        at = offset;
    }
    out.push_str(&source[at..]);
    Some(out)
}

/// Takes the explorer's (or the harness's) trailer off a failure message: the message without it,
/// the points (line, column, end column) it listed, outermost first, and whether it was a cut's
/// (the explorer's) or the test's last cut.
pub fn take_trailer(message: &str) -> (String, Vec<Point>, Option<Parked>) {
    let found = [(TRAILER_OPEN, Parked::Cut), (LAST_CUT_OPEN, Parked::LastCut)]
        .into_iter()
        .find_map(|(open, kind)| Some((message.find(open)?, open, kind)));
    let Some((at, open, kind)) = found else {
        return (message.to_owned(), Vec::new(), None);
    };
    let rest = &message[at + open.len()..];
    let Some(close) = rest.find(']') else {
        return (message.to_owned(), Vec::new(), None);
    };
    let points = rest[..close]
        .split(" > ")
        .filter_map(|point| {
            let (point, innermost) = match point.strip_suffix('*') {
                Some(point) => (point, true),
                None => (point, false),
            };
            let (line, columns) = point.split_once(':')?;
            let (column, end) = columns.split_once('-')?;
            let (line, column, end_column) =
                (line.parse().ok()?, column.parse().ok()?, end.parse().ok()?);
            Some(Point { line, column, end_column, innermost })
        })
        .collect();
    let mut kept = message[..at].to_owned();
    kept.push_str(&rest[close + 1..]);
    let kind = if kind == Parked::Cut && is_stall(&kept) { Parked::Stalled } else { kind };
    (kept, points, Some(kind))
}

/// How the explorer words the moment of a cut.
const CUT_WORDS: [&str; 3] = ["after poll ", "before its first poll", "into the run"];

/// Whether a failure message says the future stalled (was never woken) rather than was cut.
pub fn is_stall(message: &str) -> bool {
    cut_phrase(message).is_some() && message.contains("never woken after poll")
}

/// The cut's words in a failure message, from the sentence naming the moment to its colon
/// (`after poll 1 of 3, while still waiting`): the same cut in both builds has the same phrase,
/// although paths and columns in the rest of the message may differ.
pub fn cut_phrase(message: &str) -> Option<&str> {
    let at = CUT_WORDS.iter().filter_map(|w| message.find(w)).min()?;
    let rest = &message[at..];
    Some(rest.split_once(':').map_or(rest, |(phrase, _)| phrase))
}

/// The cuts at `points` of `source` (the learner's file, shown as `file`).
pub fn cuts(file: &str, source: &str, points: &[Point]) -> Vec<Cut> {
    points
        .iter()
        .filter_map(|p| {
            let text = source.lines().nth(usize::try_from(p.line).ok()?.checked_sub(1)?)?;
            Some(Cut {
                file: file.to_owned(),
                line: p.line,
                column: p.column,
                end_column: p.end_column,
                text: text.to_owned(),
                innermost: p.innermost,
            })
        })
        .collect()
}

/// A point of a trailer: line, columns, and whether it is innermost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub line: u32,
    pub column: u32,
    pub end_column: u32,
    pub innermost: bool,
}

/// The cuts as a rustc-style note: the file and line, the line, and a caret under each `.await`,
/// the innermost ones first, labelled "dropped here" (or "parked here" for a future that stalled).
pub fn render(cuts: &[Cut], when: Parked, color: bool) -> String {
    if cuts.is_empty() {
        return String::new();
    }
    let (title, here) = match when {
        Parked::Cut => ("the future was dropped while parked here", "dropped here"),
        Parked::Stalled => ("the future was parked here and never woken", "parked here"),
        Parked::LastCut => (
            "the last cut before the test failed: a future of your code was dropped while parked \
             here",
            "dropped here",
        ),
    };
    // Where it waited first (the `-->` line), each place once with how many futures waited
    // there; then the awaits and macros those were inside, by line.
    let mut shown: Vec<(&Cut, usize)> = Vec::new();
    for cut in cuts {
        let same = |c: &&mut (&Cut, usize)| {
            (c.0.line, c.0.column, c.0.innermost) == (cut.line, cut.column, cut.innermost)
        };
        match shown.iter_mut().find(same) {
            Some(entry) => entry.1 += 1,
            None => shown.push((cut, 1)),
        }
    }
    shown.sort_by_key(|(c, _)| (!c.innermost, c.line, c.column));
    let mut group = Group::with_title(Level::NOTE.primary_title(title));
    // The learner's line is shown, never obeyed by the terminal.
    let texts: Vec<String> =
        shown.iter().map(|(c, _)| crate::report::text::visible(&c.text)).collect();
    let labels: Vec<String> = shown
        .iter()
        .zip(&texts)
        .map(|((cut, count), text)| {
            let (start, end) = byte_range(text, cut.column, cut.end_column);
            let is_macro = text[start..end].ends_with('!');
            match (cut.innermost, *count) {
                (true, 1) => here.to_owned(),
                (true, n) => format!("{here}: {n} futures waited here at once"),
                (false, _) if is_macro => "inside this macro".to_owned(),
                (false, _) => "inside this `.await`".to_owned(),
            }
        })
        .collect();
    for (i, (cut, _)) in shown.iter().enumerate() {
        let (start, end) = byte_range(&texts[i], cut.column, cut.end_column);
        let kind = if cut.innermost { AnnotationKind::Primary } else { AnnotationKind::Context };
        group = group.element(
            Snippet::source(texts[i].as_str())
                .line_start(cut.line as usize)
                .path(cut.file.as_str())
                .annotation(kind.span(start..end).label(labels[i].as_str())),
        );
    }
    let renderer = if color { Renderer::styled() } else { Renderer::plain() };
    let mut out = renderer.render(&[group]);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// The byte range of 1-based character columns `column`..`end` of `text`, clamped to it.
fn byte_range(text: &str, column: u32, end: u32) -> (usize, usize) {
    let at = |col: u32| {
        let skip = (col as usize).saturating_sub(1);
        text.char_indices().nth(skip).map_or(text.len(), |(i, _)| i)
    };
    let (start, end) = (at(column), at(end));
    (start.min(end), end)
}

/// One thing to wrap: `start..end` of the source and the marked token.
struct Wrap {
    start: LineColumn,
    end: LineColumn,
    mark: (LineColumn, LineColumn),
    kind: Kind,
}

/// An `.await` (its base is wrapped in `trace::at(..)`, so that nothing else about it changes), or
/// an awaiting macro (passed through `trace::Site::enter(..).around(..)`, which needs a `;` after
/// it where a brace macro stood as a statement of its own before the end of its block).
enum Kind {
    Await,
    Macro { semicolon: bool },
}

#[derive(Default)]
struct Finder {
    wraps: Vec<Wrap>,
}

/// Macros that await inside their expansion.
fn awaits(mac: &syn::Macro) -> bool {
    mac.path.segments.last().is_some_and(|last| {
        matches!(last.ident.to_string().as_str(), "select" | "select_biased" | "join" | "try_join")
    })
}

impl Finder {
    fn mac(&mut self, mac: &syn::Macro, semicolon: bool) {
        if !awaits(mac) {
            return;
        }
        let end = match &mac.delimiter {
            syn::MacroDelimiter::Paren(d) => d.span.close().end(),
            syn::MacroDelimiter::Brace(d) => d.span.close().end(),
            syn::MacroDelimiter::Bracket(d) => d.span.close().end(),
        };
        self.wraps.push(Wrap {
            start: mac.path.span().start(),
            end,
            mark: (mac.path.span().start(), mac.bang_token.span.end()),
            kind: Kind::Macro { semicolon },
        });
    }
}

impl<'ast> Visit<'ast> for Finder {
    fn visit_expr_await(&mut self, node: &'ast syn::ExprAwait) {
        self.wraps.push(Wrap {
            start: node.base.span().start(),
            end: node.dot_token.span.start(),
            mark: (node.dot_token.span.start(), node.await_token.span.end()),
            kind: Kind::Await,
        });
        visit::visit_expr_await(self, node);
    }

    fn visit_expr_macro(&mut self, node: &'ast syn::ExprMacro) {
        self.mac(&node.mac, false);
        visit::visit_expr_macro(self, node);
    }

    fn visit_block(&mut self, block: &'ast syn::Block) {
        let last = block.stmts.len().saturating_sub(1);
        for (i, stmt) in block.stmts.iter().enumerate() {
            match stmt {
                // `tokio::select! { .. }` standing as a statement without a `;`: the call that
                // replaces it needs one, unless it is the block's value.
                syn::Stmt::Macro(node) => {
                    self.mac(&node.mac, node.semi_token.is_none() && i != last);
                    visit::visit_stmt_macro(self, node);
                }
                _ => self.visit_stmt(stmt),
            }
        }
    }
}

/// Byte offsets of line starts, to turn a (line, character column) into a byte offset.
struct LineStarts(Vec<usize>);

impl LineStarts {
    fn new(source: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        LineStarts(starts)
    }

    fn offset(&self, source: &str, at: LineColumn) -> Option<usize> {
        let start = *self.0.get(at.line.checked_sub(1)?)?;
        let line = &source[start..];
        let within = line.char_indices().nth(at.column).map_or(line.len(), |(i, _)| i);
        Some(start + within)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_await_is_wrapped_on_its_own_line() {
        let source = "async fn f(rx: &mut R) -> u8 {\n    let a = rx.recv().await?;\n    \
                      g(h().await.x().await)\n}\n";
        let out = instrument(source).unwrap();
        assert_eq!(out.lines().count(), source.lines().count());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], "    let a = ::kata_support::trace::at(2, 22, 28, rx.recv()).await?;");
        assert_eq!(
            lines[2],
            "    g(::kata_support::trace::at(3, 20, 26, ::kata_support::trace::at(3, 10, 16, \
             h()).await.x()).await)"
        );
        syn::parse_file(&out).unwrap();
    }

    #[test]
    fn an_awaiting_macro_passes_through_a_site_and_unicode_columns_are_characters() {
        let source = "async fn f() -> u8 {\n    let é = 1; tokio::select! {\n        _ = a() => {}\n    \
                      }\n    let x = tokio::join!(a(), b());\n    tokio::select! { _ = a() => 1 }\n}\n";
        let out = instrument(source).unwrap();
        assert_eq!(out.lines().count(), source.lines().count());
        assert!(out.contains(
            "let é = 1; ::kata_support::trace::Site::enter(2, 16, 30).around(tokio::select! {"
        ));
        // A statement before the end of its block gets its `;`; the block's value does not.
        assert!(out.contains("    });\n"), "{out}");
        assert!(out.contains(
            "let x = ::kata_support::trace::Site::enter(5, 13, 25).around(tokio::join!(a(), b()));"
        ));
        assert!(out.contains("    ::kata_support::trace::Site::enter(6, 5, 19).around(tokio::select! { _ = a() => 1 })\n}"), "{out}");
        syn::parse_file(&out).unwrap();
        assert_eq!(instrument("fn ("), None);
    }

    #[test]
    fn every_kata_source_of_the_course_rewrites_to_the_same_lines() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut awaits = 0;
        for tree in ["exercises", "solutions"] {
            for kata in std::fs::read_dir(root.join(tree)).unwrap().flatten() {
                let path = kata.path().join("src/lib.rs");
                let source = std::fs::read_to_string(&path).unwrap();
                let out = instrument(&source).unwrap_or_else(|| panic!("{}", path.display()));
                assert_eq!(out.lines().count(), source.lines().count(), "{}", path.display());
                syn::parse_file(&out).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                awaits += out.matches("::kata_support::trace::at(").count();
            }
        }
        assert!(awaits > 100, "only {awaits} awaits marked in the course");
    }

    #[test]
    fn the_trailer_comes_off_and_gives_its_points() {
        let (message, points, when) =
            take_trailer("cancelled after poll 1 of 3: lost\n[parked at: 3:5-11 > 9:13-19]");
        assert_eq!(message, "cancelled after poll 1 of 3: lost");
        let at =
            |line, column, end_column, innermost| Point { line, column, end_column, innermost };
        assert_eq!(points, vec![at(3, 5, 11, false), at(9, 13, 19, false)]);
        assert_eq!(when, Some(Parked::Cut));
        let (message, points, when) = take_trailer("the line was lost\n[last cut at: 4:1-7*]");
        assert_eq!(
            (message.as_str(), points, when),
            ("the line was lost", vec![at(4, 1, 7, true)], Some(Parked::LastCut))
        );
        let stalled = "without any cancellation (2 polls): the operation stalled: never woken after \
                       poll 2\n[parked at: 8:3-9]";
        assert_eq!(take_trailer(stalled).2, Some(Parked::Stalled));
        assert_eq!(take_trailer("plain").1, Vec::new());
    }

    #[test]
    fn a_cut_renders_as_a_note_under_the_await_the_innermost_first() {
        let source = "fn a() {}\n    let reply = inner.call(request).await;\n    \
                      tokio::join!(one, two);\n";
        let at =
            |line, column, end_column, innermost| Point { line, column, end_column, innermost };
        let points = [at(3, 5, 17, false), at(2, 36, 42, true), at(2, 36, 42, true)];
        let text = render(&cuts("exercises/01/src/lib.rs", source, &points), Parked::Cut, false);
        assert!(text.contains("--> exercises/01/src/lib.rs:2:36"), "{text}");
        assert!(text.contains("^^^^^^ dropped here: 2 futures waited here at once"), "{text}");
        assert!(text.contains("let reply = inner.call(request).await;"), "{text}");
        assert!(text.contains("inside this macro"), "{text}");
    }
}
