//! The gradebook as CSV, written with the `csv` crate (quoting, embedded newlines).
//!
//! `wide` is what an LMS imports: a row per student, a points column per kata in course order,
//! then the total, the maximum, the percentage, the late flag and what was graded. Its first
//! columns are those of earlier graders (`student`, katas, `total`, `max`); new ones come after.
//! `long` is a row per student and kata, with the status and the source hash, for a spreadsheet.
//!
//! A text cell that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, carriage
//! return first) gets a leading `'`, as OWASP advises against CSV injection: a student's name or
//! commit may be anything.

use super::{Gradebook, Row, Same};

/// The wide CSV: a row per student.
pub fn wide(book: &Gradebook) -> anyhow::Result<Vec<u8>> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = vec!["student".into()];
    header.extend(book.columns.iter().map(|c| safe(&c.name)));
    for name in ["total", "max", "percent", "late", "commit", "committed_at", "graded_at", "source"]
    {
        header.push(name.into());
    }
    header.push("identical".into());
    out.write_record(&header)?;
    for row in &book.rows {
        let mut record = vec![safe(&row.name)];
        record.extend(
            book.columns
                .iter()
                .map(|c| row.cells.get(&c.name).map_or(0, |cell| cell.points).to_string()),
        );
        record.push(row.total().to_string());
        record.push(book.max_total().to_string());
        record.push(format!("{:.1}", book.percent(row.total())));
        record.push(late(row.late(book.deadline)).into());
        record.push(safe(row.commit.as_deref().unwrap_or("")));
        record.push(row.committed_at.map(|d| d.to_rfc3339()).unwrap_or_default());
        record.push(safe(row.graded_at.as_deref().unwrap_or("")));
        record.push(safe(row.source.as_deref().unwrap_or("")));
        record.push(safe(&identical(row)));
        out.write_record(&record)?;
    }
    Ok(out.into_inner()?)
}

/// The long CSV: a row per student and kata.
pub fn long(book: &Gradebook) -> anyhow::Result<Vec<u8>> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        "student",
        "kata",
        "number",
        "status",
        "points",
        "max_points",
        "source_sha256",
        "identical_to",
    ])?;
    for row in &book.rows {
        for column in &book.columns {
            let cell = row.cells.get(&column.name);
            let same: Vec<String> =
                cell.map(|c| c.same_as.iter().map(Same::to_string).collect()).unwrap_or_default();
            out.write_record([
                safe(&row.name),
                safe(&column.name),
                column.number.to_string(),
                row.status(&column.name).key().to_owned(),
                cell.map_or(0, |c| c.points).to_string(),
                column.max_points.to_string(),
                cell.and_then(|c| c.source_sha256.as_deref()).map(safe).unwrap_or_default(),
                safe(&same.join("; ")),
            ])?;
        }
    }
    Ok(out.into_inner()?)
}

/// `yes`, `no`, or empty when unknown (no deadline, or no commit date).
pub fn late(late: Option<bool>) -> &'static str {
    match late {
        Some(true) => "yes",
        Some(false) => "no",
        None => "",
    }
}

/// `kata=who+who; kata=who` for every kata with identical sources.
fn identical(row: &Row) -> String {
    let parts: Vec<String> = row
        .flagged()
        .map(|(kata, cell)| {
            let who: Vec<String> = cell
                .same_as
                .iter()
                .map(|s| match s {
                    Same::Reference => "reference".to_owned(),
                    Same::Student(name) => name.clone(),
                })
                .collect();
            format!("{kata}={}", who.join("+"))
        })
        .collect();
    parts.join("; ")
}

/// `text`, with a leading `'` when a spreadsheet would take it for a formula.
fn safe(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formulas_are_defused() {
        assert_eq!(super::safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(super::safe("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(super::safe("alice-b"), "alice-b");
    }
}
