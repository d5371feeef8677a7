//! The gradebook as a Markdown summary: each kata's pass rate and statuses (where the class
//! struggles), each student's points, late flag and identical sources, and the files left out.
//! Its first columns are those of earlier graders; new ones come after.

use std::fmt::Write as _;

use super::{Gradebook, Same, Status};

/// The summary.
pub fn render(book: &Gradebook) -> String {
    let students = book.rows.len();
    let mut md = format!("# Gradebook: {students} students, {} katas\n\n", book.columns.len());
    md.push_str(
        "| # | kata | passed | pass rate | not attempted | failed | compile error | timed out | \
         grader error |\n| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for column in &book.columns {
        let count = |status| book.count(&column.name, status);
        let _ = writeln!(
            md,
            "| {:02} | {} | {}/{students} | {:.0}% | {} | {} | {} | {} | {} |",
            column.number,
            escape(&column.title),
            book.passed(&column.name),
            book.pass_rate(&column.name),
            count(Status::NotAttempted),
            count(Status::Failed),
            count(Status::CompileError),
            count(Status::TimedOut),
            count(Status::Error),
        );
    }

    let max = book.max_total();
    md.push_str(
        "\n| student | points | of | percent | late | commit | identical sources |\n\
         | --- | ---: | ---: | ---: | --- | --- | --- |\n",
    );
    for row in &book.rows {
        let identical: Vec<String> = row
            .flagged()
            .map(|(kata, cell)| {
                let who: Vec<String> =
                    cell.same_as.iter().map(|s| escape(&s.to_string())).collect();
                format!("{} = {}", escape(kata), who.join(", "))
            })
            .collect();
        let commit = match (&row.commit, row.committed_at) {
            (Some(c), Some(d)) => format!("`{}` ({})", escape_code(c), d.to_rfc3339()),
            (Some(c), None) => format!("`{}`", escape_code(c)),
            (None, Some(d)) => d.to_rfc3339(),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {max} | {:.0}% | {} | {commit} | {} |",
            escape(&row.name),
            row.total(),
            book.percent(row.total()),
            super::csv_export::late(row.late(book.deadline)),
            identical.join("; "),
        );
    }

    md.push('\n');
    if let Some(deadline) = book.deadline {
        let late = book.rows.iter().filter(|r| r.late(Some(deadline)) == Some(true)).count();
        let unknown = book.rows.iter().filter(|r| r.committed_at.is_none()).count();
        let _ = writeln!(
            md,
            "Deadline {}: {late} late, {unknown} without a commit date. Note: {}.\n",
            deadline.to_rfc3339(),
            super::LATE_NOTE
        );
    }
    let flagged = book.rows.iter().filter(|r| r.flagged().next().is_some()).count();
    if flagged > 0 {
        let reference = book
            .rows
            .iter()
            .flat_map(|r| r.flagged())
            .filter(|(_, c)| c.same_as.contains(&Same::Reference))
            .count();
        let _ = writeln!(
            md,
            "Identical sources: {flagged} student(s), {reference} kata(s) identical to the \
             reference solution. Note: {}.\n",
            super::SAME_NOTE
        );
    }
    if !book.compared_with_reference {
        md.push_str(
            "Sources were not compared with the reference solutions: no course was found \
             (run the gradebook inside the course, or pass --root).\n\n",
        );
    }
    for row in book.rows.iter().filter(|r| r.error.is_some()) {
        let why = row.error.as_deref().unwrap_or_default();
        let _ = writeln!(md, "- not graded: {}: {}", escape(&row.name), escape(why));
    }
    if book.course_hashes().len() > 1 {
        let _ = writeln!(
            md,
            "- warning: the files were graded with {} different versions of the course",
            book.course_hashes().len()
        );
    }
    for skipped in &book.skipped {
        let _ = writeln!(
            md,
            "- skipped {}: {}",
            escape(&skipped.file.display().to_string()),
            escape(&skipped.why)
        );
    }
    md
}

/// `text` made inert in a Markdown table cell: no table break, HTML, link, emphasis or control
/// character.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in crate::report::text::visible(text).chars() {
        match c {
            '\n' | '\t' => out.push(' '),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '|' | '\\' | '`' | '*' | '_' | '[' | ']' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// `text` inside a code span: no backtick or table break.
fn escape_code(text: &str) -> String {
    crate::report::text::visible(text).replace(['`', '\n'], "'").replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    #[test]
    fn student_text_cannot_break_the_table_or_inject_html() {
        assert_eq!(super::escape("a|b<script>\n"), "a\\|b&lt;script&gt; ");
        assert_eq!(super::escape("[x](javascript:1)"), "\\[x\\](javascript:1)");
    }
}
