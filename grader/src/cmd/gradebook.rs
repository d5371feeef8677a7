//! `grader gradebook RESULTS...`: many students' JSON reports into a CSV (student x kata points)
//! and a Markdown summary with per-kata pass rates, so a teacher sees where the class struggles.
//!
//! A student is named by the report's file stem (`alice.json`), or by its directory when the file
//! has a generic name (`alice/report.json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::cli::GradebookArgs;
use crate::exit;

#[derive(Debug, Deserialize)]
struct Report {
    version: u32,
    katas: Vec<Kata>,
}

#[derive(Debug, Deserialize)]
struct Kata {
    name: String,
    number: u32,
    title: String,
    status: String,
    points: u32,
    max_points: u32,
}

struct Student {
    name: String,
    katas: BTreeMap<String, Kata>,
}

pub fn run(args: &GradebookArgs) -> anyhow::Result<u8> {
    let mut students = Vec::new();
    for path in &args.results {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        let report: Report = serde_json::from_str(&text).with_context(|| {
            format!("{} is not a grader JSON report (`grader check --format json`)", path.display())
        })?;
        if report.version != crate::report::JSON_VERSION {
            bail!(
                "{} is report version {}; this grader reads version 1",
                path.display(),
                report.version
            );
        }
        let katas = report.katas.into_iter().map(|k| (k.name.clone(), k)).collect();
        students.push(Student { name: student_name(path), katas });
    }
    if students.is_empty() {
        bail!(crate::UsageError("no result files given; pass one JSON report per student".into()));
    }
    students.sort_by(|a, b| a.name.cmp(&b.name));

    // Every kata any report mentions, in course order.
    let mut columns: BTreeMap<(u32, String), (String, u32)> = BTreeMap::new();
    for student in &students {
        for kata in student.katas.values() {
            columns.insert((kata.number, kata.name.clone()), (kata.title.clone(), kata.max_points));
        }
    }
    let max_total: u32 = columns.values().map(|(_, max)| max).sum();

    let mut csv = String::from("student");
    for (_, name) in columns.keys() {
        csv.push(',');
        csv.push_str(&csv_field(name));
    }
    csv.push_str(",total,max\n");
    for student in &students {
        csv.push_str(&csv_field(&student.name));
        let mut total = 0;
        for (_, name) in columns.keys() {
            let points = student.katas.get(name).map_or(0, |k| k.points);
            total += points;
            let _ = write!(csv, ",{points}");
        }
        let _ = writeln!(csv, ",{total},{max_total}");
    }

    let mut md = format!("# Gradebook: {} students, {} katas\n\n", students.len(), columns.len());
    md.push_str(
        "| # | kata | passed | pass rate | not submitted |\n| ---: | --- | ---: | ---: | ---: |\n",
    );
    for ((number, name), (title, _)) in &columns {
        let passed = students
            .iter()
            .filter(|s| s.katas.get(name).is_some_and(|k| k.status == "passed"))
            .count();
        let missing = students.iter().filter(|s| !s.katas.contains_key(name)).count();
        let rate = 100.0 * passed as f64 / students.len() as f64;
        let _ = writeln!(
            md,
            "| {number:02} | {title} | {passed}/{} | {rate:.0}% | {missing} |",
            students.len()
        );
    }
    md.push_str("\n| student | points | of |\n| --- | ---: | ---: |\n");
    for student in &students {
        let total: u32 = student.katas.values().map(|k| k.points).sum();
        let _ = writeln!(md, "| {} | {total} | {max_total} |", student.name.replace('|', "\\|"));
    }

    std::fs::write(&args.csv, &csv)
        .with_context(|| format!("failed to write {}", args.csv.display()))?;
    match &args.summary {
        Some(path) => std::fs::write(path, &md)
            .with_context(|| format!("failed to write {}", path.display()))?,
        None => out!("{md}"),
    }
    eprintln!("wrote {} ({} students)", args.csv.display(), students.len());
    Ok(exit::SUCCESS)
}

fn student_name(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let generic = ["report", "results", "result", "grade", "check"];
    if generic.contains(&stem.as_str())
        && let Some(dir) = path.parent().and_then(Path::file_name)
    {
        return dir.to_string_lossy().into_owned();
    }
    stem
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}
