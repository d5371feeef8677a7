//! The gradebook as one self-contained HTML page, a class dashboard a teacher opens from disk: a
//! students x katas heatmap (status and points per cell), the pass rate per kata and the score
//! distribution as inline SVG, then the flags (late, identical sources, files left out).
//!
//! Nothing is fetched: styles and the small sorting script are inline, and a Content Security
//! Policy forbids every network request. Every string from a result file goes through [`escape`],
//! since a student's name or a forged file's kata title may be markup.

use std::fmt::Write as _;

use super::{Gradebook, Same, Status};

const STYLE: &str = "
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1b1f24; }
h1 { margin: 0 0 .2em; } h2 { margin-top: 1.6em; font-size: 1.15em; }
.meta, .note { color: #57606a; } .note { font-size: .9em; max-width: 60em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #d0d7de; padding: .25em .5em; text-align: center; white-space: nowrap; }
thead th { background: #f6f8fa; cursor: pointer; position: sticky; top: 0; }
tbody th { text-align: left; font-weight: 600; }
.passed { background: #2da44e; color: #fff; } .failed { background: #fa8072; }
.compile_error { background: #bf3989; color: #fff; } .timed_out { background: #e3b341; }
.error { background: #8c959f; color: #fff; } .not_attempted { background: #fff; color: #8c959f; }
.same { outline: 3px dashed #0969da; outline-offset: -3px; }
td.late { color: #cf222e; font-weight: 700; }
.legend span { display: inline-block; padding: .1em .6em; margin-right: .4em; border: 1px solid #d0d7de; }
svg text { font: 12px system-ui, sans-serif; fill: #1b1f24; }
.scroll { overflow-x: auto; }
";

/// Sorts the heatmap by a clicked column (numbers by `data-value`), and marks the page as
/// scripted so a test can tell the script ran to its end.
const SCRIPT: &str = "
(function () {
  var table = document.getElementById('grades');
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, index) {
    th.title = th.title ? th.title + ' (click to sort)' : 'click to sort';
    th.addEventListener('click', function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var descending = th.getAttribute('aria-sort') === 'ascending';
      var key = function (row) {
        var cell = row.cells[index];
        var value = cell.getAttribute('data-value');
        return value === null ? cell.textContent : Number(value);
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var order = x < y ? -1 : x > y ? 1 : 0;
        return descending ? -order : order;
      });
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', descending ? 'descending' : 'ascending');
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
  document.body.setAttribute('data-ready', 'yes');
})();
";

/// The page.
pub fn render(book: &Gradebook) -> String {
    let students = book.rows.len();
    let katas = book.columns.len();
    let max = book.max_total();
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Gradebook: {students} students, {katas} katas</title>\n<style>{STYLE}</style>\n\
         </head>\n<body>\n<h1>Gradebook</h1>\n<p class=\"meta\">{students} students, {katas} \
         katas, {max} points in all."
    );
    if let Some(deadline) = book.deadline {
        let _ = write!(page, " Deadline {}.", escape(&deadline.to_rfc3339()));
    }
    page.push_str("</p>\n");
    heatmap(&mut page, book);
    pass_rates(&mut page, book);
    distribution(&mut page, book);
    flags(&mut page, book);
    let _ = write!(page, "<script>{SCRIPT}</script>\n</body>\n</html>\n");
    page
}

fn heatmap(page: &mut String, book: &Gradebook) {
    page.push_str("<h2 id=\"heatmap\">Students &times; katas</h2>\n<p class=\"legend\">");
    for status in Status::ALL {
        let _ = write!(page, "<span class=\"{}\">{}</span>", status.key(), status.label());
    }
    page.push_str(
        "<span class=\"same\">dashed: identical sources</span></p>\n<div class=\"scroll\">\
         <table id=\"grades\">\n<thead><tr><th scope=\"col\">student</th>",
    );
    for column in &book.columns {
        let _ = write!(
            page,
            "<th scope=\"col\" title=\"{}: {} ({} points)\">{:02}</th>",
            escape(&column.name),
            escape(&column.title),
            column.max_points,
            column.number
        );
    }
    page.push_str(
        "<th scope=\"col\">total</th><th scope=\"col\">%</th><th scope=\"col\">late</th>\
         <th scope=\"col\">commit</th></tr></thead>\n<tbody>\n",
    );
    for row in &book.rows {
        let mut about = format!("result file {}", row.file.display());
        if let Some(source) = &row.source {
            about.push_str(&format!("; source {source}"));
        }
        if let Some(graded) = &row.graded_at {
            about.push_str(&format!("; graded {graded}"));
        }
        let _ = write!(
            page,
            "<tr><th scope=\"row\" title=\"{}\">{}</th>",
            escape(&about),
            escape(&row.name)
        );
        for column in &book.columns {
            let status = row.status(&column.name);
            let cell = row.cells.get(&column.name);
            let points = cell.map_or(0, |c| c.points);
            let same: Vec<String> =
                cell.map(|c| c.same_as.iter().map(Same::to_string).collect()).unwrap_or_default();
            let mut title = format!(
                "{}: {}, {points}/{} points",
                column.name,
                status.label(),
                column.max_points
            );
            if !same.is_empty() {
                title.push_str(&format!("; identical to {}", same.join(", ")));
            }
            let class = if same.is_empty() { "" } else { " same" };
            let shown =
                if status == Status::NotAttempted { "&ndash;".into() } else { points.to_string() };
            let _ = write!(
                page,
                "<td class=\"{}{class}\" data-value=\"{points}\" title=\"{}\">{shown}</td>",
                status.key(),
                escape(&title)
            );
        }
        let late = row.late(book.deadline);
        let commit = row.commit.as_deref().map(|c| c.chars().take(12).collect::<String>());
        let _ = writeln!(
            page,
            "<td data-value=\"{total}\">{total}</td><td data-value=\"{percent:.1}\">{percent:.0}%</td>\
             <td class=\"{}\">{}</td><td title=\"{}\">{}</td></tr>",
            if late == Some(true) { "late" } else { "" },
            super::csv_export::late(late),
            escape(&row.committed_at.map(|d| d.to_rfc3339()).unwrap_or_default()),
            escape(&commit.unwrap_or_default()),
            total = row.total(),
            percent = book.percent(row.total()),
        );
    }
    page.push_str("</tbody>\n<tfoot><tr><th scope=\"row\">pass rate</th>");
    for column in &book.columns {
        let _ = write!(page, "<td>{:.0}%</td>", book.pass_rate(&column.name));
    }
    let _ = writeln!(
        page,
        "<td colspan=\"4\">max {}</td></tr></tfoot>\n</table></div>",
        book.max_total()
    );
}

fn pass_rates(page: &mut String, book: &Gradebook) {
    const BAR: usize = 22;
    let height = 20 + BAR * book.columns.len();
    let _ = writeln!(
        page,
        "<h2 id=\"pass-rate\">Pass rate per kata</h2>\n<svg role=\"img\" width=\"640\" \
         height=\"{height}\" viewBox=\"0 0 640 {height}\" aria-label=\"pass rate per kata\">"
    );
    for (i, column) in book.columns.iter().enumerate() {
        let rate = book.pass_rate(&column.name);
        let y = 10 + i * BAR;
        let _ = writeln!(
            page,
            "<g><title>{}: {}/{} passed</title><text x=\"0\" y=\"{}\">{:02} {}</text>\
             <rect x=\"260\" y=\"{}\" width=\"{:.1}\" height=\"16\" fill=\"#2da44e\"></rect>\
             <text x=\"{:.1}\" y=\"{}\">{rate:.0}%</text></g>",
            escape(&column.name),
            book.passed(&column.name),
            book.rows.len(),
            y + 13,
            column.number,
            escape(&truncate(&column.title, 36)),
            y,
            rate * 3.0,
            266.0 + rate * 3.0,
            y + 13,
        );
    }
    page.push_str("</svg>\n");
}

fn distribution(page: &mut String, book: &Gradebook) {
    let bins = book.distribution();
    let tallest = bins.iter().copied().max().unwrap_or(0).max(1);
    page.push_str(
        "<h2 id=\"distribution\">Score distribution</h2>\n<svg role=\"img\" width=\"640\" \
         height=\"200\" viewBox=\"0 0 640 200\" aria-label=\"students per score band\">\n",
    );
    for (i, &count) in bins.iter().enumerate() {
        let h = 150.0 * count as f64 / tallest as f64;
        let x = 10 + i * 62;
        let band =
            if i == 9 { "90-100%".to_owned() } else { format!("{}-{}%", i * 10, i * 10 + 9) };
        let _ = writeln!(
            page,
            "<g><title>{band}: {count} student(s)</title><rect x=\"{x}\" y=\"{:.1}\" width=\"54\" \
             height=\"{h:.1}\" fill=\"#0969da\"></rect><text x=\"{}\" y=\"{:.1}\">{count}</text>\
             <text x=\"{x}\" y=\"192\">{band}</text></g>",
            170.0 - h,
            x + 20,
            165.0 - h,
        );
    }
    page.push_str("</svg>\n");
}

fn flags(page: &mut String, book: &Gradebook) {
    page.push_str("<h2 id=\"flags\">Flags</h2>\n<ul>\n");
    for row in &book.rows {
        for (kata, cell) in row.flagged() {
            let who: Vec<String> = cell.same_as.iter().map(|s| escape(&s.to_string())).collect();
            let _ = writeln!(
                page,
                "<li>{}: {} is identical to {}</li>",
                escape(&row.name),
                escape(kata),
                who.join(", ")
            );
        }
        if row.late(book.deadline) == Some(true) {
            let _ = writeln!(page, "<li>{}: committed after the deadline</li>", escape(&row.name));
        }
        if let Some(why) = &row.error {
            let _ = writeln!(page, "<li>{}: not graded: {}</li>", escape(&row.name), escape(why));
        }
    }
    for skipped in &book.skipped {
        let _ = writeln!(
            page,
            "<li>skipped {}: {}</li>",
            escape(&skipped.file.display().to_string()),
            escape(&skipped.why)
        );
    }
    if book.course_hashes().len() > 1 {
        let _ = writeln!(
            page,
            "<li>the files were graded with {} different versions of the course</li>",
            book.course_hashes().len()
        );
    }
    page.push_str("</ul>\n");
    let _ = writeln!(page, "<p class=\"note\">Note: {}.</p>", super::SAME_NOTE);
    if book.deadline.is_some() {
        let _ = writeln!(page, "<p class=\"note\">Note: {}.</p>", super::LATE_NOTE);
    }
    if !book.compared_with_reference {
        page.push_str(
            "<p class=\"note\">Sources were not compared with the reference solutions: no course \
             was found.</p>\n",
        );
    }
}

fn truncate(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        text.to_owned()
    } else {
        text.chars().take(chars - 1).chain(['…']).collect()
    }
}

/// `text` as HTML text or an attribute value: markup characters as entities, control characters
/// as visible escapes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in crate::report::text::visible(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_is_text() {
        assert_eq!(
            super::escape("<img src=x onerror='alert(1)'>&\"\u{1b}"),
            "&lt;img src=x onerror=&#39;alert(1)&#39;&gt;&amp;&quot;\\u{1b}"
        );
    }
}
